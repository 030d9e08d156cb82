// Test harness for the browser tests: runs the real `tend up` on a generated config, drives
// Debian's chromium through playwright-core, and cleans up by PID / process group only.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
const TEND = process.env.TEND_BIN || path.join(ROOT, 'target', 'debug', 'tend');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const START_DEADLINE_MS = 15000;

// ---------- waiting ----------

/** Polls `probe` until `accept(value)` holds; throws with the last value seen at the deadline. */
async function until(what, probe, accept = Boolean, timeout = 5000) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await probe();
      lastError = undefined;
      if (accept(last)) return last;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const seen = lastError ? `error: ${lastError.message}` : `last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (${seen})`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Resolves when the child exits, or false at the deadline. */
function exited(child, timeout) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeout);
    child.once('exit', () => { clearTimeout(timer); resolve(true); });
  });
}

function isAlive(pid) {
  try { process.kill(pid, 0); return true; } catch (err) { return err.code === 'EPERM'; }
}

// ---------- ports and folders ----------

/** A port that was free a moment ago: bind 127.0.0.1:0, read it, close. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

let dirCounter = 0;
function tempDir(name) {
  const dir = path.join(os.tmpdir(), 'tend-e2e', `${name.replace(/[^\w.-]+/g, '_')}-${process.pid}-${dirCounter++}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

// ---------- tend ----------

/** The built-in demo server: listens on 127.0.0.1:port and prints a line every 200 ms. */
function demo(port) {
  return [TEND, 'serve-demo', '--port', String(port), '--print-every-ms', '200'];
}

function writeConfig(dir, servers) {
  const config = {
    listen: '127.0.0.1:0',
    state_file: path.join(dir, 'state.json'),
    log_dir: path.join(dir, 'logs'),
    health_interval_ms: 200,
    auth_token: 'none',
    servers,
  };
  const file = path.join(dir, 'tend.json');
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/**
 * Starts `tend up` in its own process group and waits for the dashboard URL it prints.
 * Its output is kept in `<dir>/tend-N.log` as evidence for a failed test.
 */
async function startTend(dir, configFile, listen = '127.0.0.1:0', extraEnv = {}) {
  const n = fs.readdirSync(dir).filter((f) => f.startsWith('tend-')).length;
  const logFile = path.join(dir, `tend-${n}.log`);
  const log = fs.createWriteStream(logFile);
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'debug', ...extraEnv };
  delete env.TEND_TOKEN; // the config says "auth_token": "none"; a token here would win
  const child = spawn(TEND, ['up', '--config', configFile, '--listen', listen], {
    cwd: dir,
    detached: true, // its own process group, so cleanup can signal the group by id
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let output = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(
      `tend printed no dashboard URL within ${START_DEADLINE_MS} ms; output:\n${output}`)), START_DEADLINE_MS);
    const scan = (chunk) => {
      const text = chunk.toString();
      output += text;
      log.write(text);
      const m = /http:\/\/127\.0\.0\.1:(\d+)\/\S*/.exec(output);
      if (m) { clearTimeout(timer); resolve(new URL(m[0])); }
    };
    child.stdout.on('data', scan);
    child.stderr.on('data', scan);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`tend exited (${sig || code}) before printing its URL; output:\n${output}`));
    });
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
  child.stdout.on('data', (c) => log.write(c));
  child.stderr.on('data', (c) => log.write(c));
  const base = `${url.protocol}//${url.host}`;
  return { child, pid: child.pid, base, port: Number(url.port), url: url.href, logFile, pids: new Set() };
}

/** SIGTERM to tend's PID, a deadline, then SIGKILL to its group. Never by name. */
async function stopTend(tend, timeout = 8000) {
  if (!tend || tend.stopped) return;
  tend.stopped = true;
  try { await api(tend, 'GET', '/api/servers').then((l) => l.forEach((s) => s.pid && tend.pids.add(s.pid))); } catch (_) { /* gone */ }
  const { child } = tend;
  try { process.kill(child.pid, 'SIGTERM'); } catch (_) { /* already gone */ }
  if (!(await exited(child, timeout))) {
    try { process.kill(-child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
    await exited(child, 2000);
  }
  // A supervised child runs in its own session (docs/DESIGN.md §7): if tend could not stop it, end its
  // group here so a failed test leaves nothing behind.
  for (const pid of tend.pids) {
    if (pid > 1 && isAlive(pid)) { try { process.kill(-pid, 'SIGKILL'); } catch (_) { /* gone */ } }
  }
}

async function api(tend, method, p, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(tend.base + p, init);
  const data = await res.json();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

async function server(tend, id) {
  const s = await api(tend, 'GET', `/api/servers/${id}`);
  if (s.pid) tend.pids.add(s.pid);
  return s;
}

// ---------- browser ----------

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function launchBrowser() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tend-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A new page that records console errors and page errors (a CSP violation shows up there). */
async function openPage(browser, url) {
  const page = await browser.context.newPage();
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    const text = msg.text();
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(text)) page.problems.push(`console: ${text}`);
  });
  await page.goto(url);
  return page;
}

/** The row (a <tbody>) of one server. */
function row(page, id) {
  return page.locator(`tbody.srv[data-id="${id}"]`);
}

async function rowStatus(page, id) {
  return row(page, id).locator('.badge').textContent();
}

module.exports = {
  ROOT, TEND, api, demo, exited, freePort, isAlive, launchBrowser, openPage, row, rowStatus,
  server, startTend, stopTend, tempDir, until, writeConfig,
};
