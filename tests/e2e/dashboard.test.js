// Browser tests of the dashboard (issue 3): the real `tend up`, Debian's chromium, playwright-core.
// Run through ./run.sh, which installs what is missing and builds tend first.
'use strict';
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, test } = require('node:test');
const h = require('./harness');
const { api, demo, freePort, row, rowStatus, server, until } = h;

let browser;
before(async () => { browser = await h.launchBrowser(); });
after(async () => { if (browser) await browser.close(); });

/**
 * Runs `body` against a fresh tend on `servers` with a page open on its dashboard. The temporary
 * folder (config, state, logs, tend's output) is removed on success and kept on failure.
 */
async function withTend(name, servers, body, env = {}) {
  const dir = h.tempDir(name);
  const ctx = { dir, config: h.writeConfig(dir, servers), tend: null, page: null, children: [] };
  let ok = false;
  try {
    ctx.tend = await h.startTend(dir, ctx.config, '127.0.0.1:0', env);
    ctx.page = await h.openPage(browser, ctx.tend.url);
    await ctx.page.locator('tbody.srv').first().waitFor();
    await body(ctx);
    assert.deepEqual(ctx.page.problems, [], 'no script errors and no CSP violations');
    ok = true;
  } finally {
    if (ctx.page) await ctx.page.close().catch(() => {});
    await h.stopTend(ctx.tend);
    for (const child of ctx.children) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    if (ok) fs.rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`# evidence kept in ${dir}\n`);
  }
}

const button = (page, id, name) => row(page, id).getByRole('button', { name: `${name} ${id}`, exact: true });
const text = (locator) => locator.textContent().then((t) => t.trim());
const statusIs = (page, id, want, timeout = 5000) =>
  until(`${id} to show ${want}`, () => rowStatus(page, id), (s) => s === want, timeout);

/** A listener outside tend, in its own process, so tend can find and kill it. */
async function orphanListener(ctx, port) {
  const child = spawn(process.execPath, ['-e',
    `require('net').createServer().listen(${port}, '127.0.0.1', () => console.log('listening'))`],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  ctx.children.push(child);
  await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => { if (String(d).includes('listening')) resolve(); });
    child.once('exit', (code) => reject(new Error(`orphan listener exited (${code})`)));
  });
  return child;
}

test('clicking Start shows the server running within a second, without a reload', { timeout: 60000 }, async (t) => {
  const port = await freePort();
  await withTend('start', [{ id: 'web', command: demo(port), ports: [port], autostart: false }], async ({ page, tend }) => {
    await statusIs(page, 'web', 'stopped');
    assert.equal(await text(row(page, 'web').locator('.c-pid')), '—');
    assert.equal(await button(page, 'web', 'Stop').isDisabled(), true, 'Stop makes no sense when stopped');
    await page.evaluate(() => { window.notReloaded = true; });

    const clicked = Date.now();
    await button(page, 'web', 'Start').click();
    await statusIs(page, 'web', 'running', 1000);
    t.diagnostic(`running shown ${Date.now() - clicked} ms after the click`);

    const s = await server(tend, 'web');
    assert.equal(await text(row(page, 'web').locator('.c-pid')), String(s.pid));
    await until('port shown open', () => text(row(page, 'web').locator('.port')), (t) => t === `${port}open`);
    await until('uptime ticking', () => text(row(page, 'web').locator('.c-uptime')), (t) => /^\d+s$/.test(t));
    assert.equal(await button(page, 'web', 'Start').isDisabled(), true);
    assert.equal(await button(page, 'web', 'Stop').isDisabled(), false);
    await until('the result shown', () => text(row(page, 'web').locator('.msg')), (t) => t.startsWith('Started web'));
    assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');
  });
});

test('a start that fails shows the reason in the row and the timeline', { timeout: 60000 }, async () => {
  const servers = [{ id: 'broken', command: 'sleep 1000', cwd: 'no-such-folder', autostart: false, restart: 'no' }];
  await withTend('spawn-failed', servers, async ({ page }) => {
    await statusIs(page, 'broken', 'stopped');
    await button(page, 'broken', 'Start').click();
    await until('the failure shown', () => text(row(page, 'broken').locator('.msg.error')),
      (t) => t.startsWith('Start broken failed: ') && t.length > 'Start broken failed: '.length);
    await statusIs(page, 'broken', 'crashed');
    await page.locator('#timeline li[data-kind="processError"]', { hasText: 'broken' }).waitFor();
    assert.equal(await button(page, 'broken', 'Start').isDisabled(), false, 'it can be tried again');
  });
});

test('an unhealthy server shows why in its row and the timeline, and recovers', { timeout: 60000 }, async () => {
  const port = await freePort();
  // Answers with the status written in ./status (200 without it); tend probes /healthz.
  const script = `const fs = require('fs');
    require('http').createServer((req, res) => {
      let code = 200;
      try { code = Number(fs.readFileSync('status', 'utf8')) || 200; } catch (e) { code = 200; }
      res.writeHead(code); res.end();
    }).listen(${port}, '127.0.0.1');`;
  const servers = [{ id: 'api', command: [process.execPath, '-e', script], ports: [port],
    health: { http: '/healthz', failures: 1, interval_ms: 200 } }];
  await withTend('unhealthy', servers, async ({ page, dir }) => {
    await statusIs(page, 'api', 'running');
    const notice = row(page, 'api').locator('.notice.health');
    assert.equal(await notice.isHidden(), true, 'no notice while it answers');
    fs.writeFileSync(path.join(dir, 'status'), '503');
    await statusIs(page, 'api', 'unhealthy');
    await until('the reason shown', () => text(notice), (t) => t === 'Unhealthy: HTTP 503 from /healthz');
    await page.locator('#timeline li[data-kind="healthChanged"]', { hasText: 'HTTP 503 from /healthz' }).waitFor();
    fs.writeFileSync(path.join(dir, 'status'), '200');
    await statusIs(page, 'api', 'running');
    await until('the notice gone', () => notice.isHidden(), (hidden) => hidden === true);
  });
});

test('clicking Stop stops the server', { timeout: 60000 }, async () => {
  const port = await freePort();
  await withTend('stop', [{ id: 'web', command: demo(port), ports: [port] }], async ({ page, tend }) => {
    await statusIs(page, 'web', 'running');
    const { pid } = await server(tend, 'web');
    await button(page, 'web', 'Stop').click();
    await statusIs(page, 'web', 'stopped');
    assert.equal(await text(row(page, 'web').locator('.c-pid')), '—');
    assert.equal(h.isAlive(pid), false, 'the process is gone');
    await until('port shown closed', () => text(row(page, 'web').locator('.port')), (t) => t === `${port}closed`);
    assert.equal(await button(page, 'web', 'Start').isDisabled(), false);
    assert.equal(await button(page, 'web', 'Stop').isDisabled(), true);
    await page.locator('#timeline li[data-kind="serverStopped"]', { hasText: 'web' }).waitFor();
  });
});

test('clicking Restart gives the server a new PID', { timeout: 60000 }, async () => {
  const port = await freePort();
  await withTend('restart', [{ id: 'web', command: demo(port), ports: [port] }], async ({ page, tend }) => {
    await statusIs(page, 'web', 'running');
    const before = await text(row(page, 'web').locator('.c-pid'));
    assert.match(before, /^\d+$/);
    await button(page, 'web', 'Restart').click();
    const after = await until('a new PID in the row', () => text(row(page, 'web').locator('.c-pid')),
      (t) => /^\d+$/.test(t) && t !== before);
    await statusIs(page, 'web', 'running');
    assert.equal(String((await server(tend, 'web')).pid), after);
    await until('the result shown', () => text(row(page, 'web').locator('.msg')), (t) => t.startsWith('Restarted web'));
  });
});

test('a child killed with SIGKILL from outside shows as died in its row and the timeline', { timeout: 60000 }, async () => {
  const servers = [
    { id: 'sleeper', command: ['sleep', '1000'], restart: 'no' },
    { id: 'phoenix', command: ['sleep', '1000'] }, // restart: on-failure (the default)
  ];
  await withTend('died', servers, async ({ page, tend }) => {
    await statusIs(page, 'sleeper', 'running');
    const { pid } = await server(tend, 'sleeper');
    process.kill(pid, 'SIGKILL');
    await statusIs(page, 'sleeper', 'crashed');
    const died = row(page, 'sleeper').locator('.died');
    await died.waitFor();
    assert.match(await text(died), /^Server died \(SIGKILL\)/);
    assert.equal(await text(row(page, 'sleeper').locator('.c-exit')), 'SIGKILL');
    const entry = page.locator('#timeline li[data-kind="processDied"]', { hasText: 'sleeper' });
    await entry.waitFor();
    assert.match(await text(entry), new RegExp(`died: SIGKILL \\(PID ${pid}\\)`));

    // A server that the restart policy brings straight back still shows that it died.
    await statusIs(page, 'phoenix', 'running');
    const first = await server(tend, 'phoenix');
    process.kill(first.pid, 'SIGKILL');
    await until('phoenix restarted', () => server(tend, 'phoenix'), (s) => s.status === 'running' && s.pid !== first.pid);
    await until('the death noted in the row', () => text(row(page, 'phoenix').locator('.died')),
      (t) => t.startsWith('Server died (SIGKILL)') && t.endsWith('running again'));
    await until('restarts counted', () => text(row(page, 'phoenix').locator('.c-restarts')), (t) => t === '1');
    await page.locator('#timeline li[data-kind="processDied"]', { hasText: 'phoenix' }).waitFor();
  });
});

test('an orphan on a configured port shows a warning, and Kill orphan removes it after confirming', { timeout: 60000 }, async () => {
  const port = await freePort();
  await withTend('orphan', [{ id: 'web', command: demo(port), ports: [port], autostart: false }], async (ctx) => {
    const { page } = ctx;
    await statusIs(page, 'web', 'stopped');
    const orphan = await orphanListener(ctx, port);
    const warning = row(page, 'web').locator('.orphan');
    await warning.waitFor();
    assert.match(await text(warning), new RegExp(`^Port ${port} is held by PID ${orphan.pid}, which tend does not manage`));

    // Starting behind the orphan is refused, and the reason (naming the PID) is shown.
    await button(page, 'web', 'Start').click();
    await until('the refusal shown', () => text(row(page, 'web').locator('.msg.error')),
      (t) => t.includes(String(orphan.pid)));

    // The confirmation is a real dialog: opened by keyboard, Cancel focused, Escape cancels.
    // Named after its server, as Start, Stop and Restart are (issue 10).
    const kill = button(page, 'web', 'Kill orphan on');
    assert.equal(await kill.getAttribute('aria-label'), 'Kill orphan on web');
    await kill.focus();
    await page.keyboard.press('Enter');
    const dialog = page.locator('dialog#confirm');
    await until('dialog open', () => dialog.evaluate((d) => d.open), (v) => v === true);
    assert.match(await text(dialog), new RegExp(`PID ${orphan.pid}`));
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Cancel');
    await page.keyboard.press('Escape');
    await until('dialog closed', () => dialog.evaluate((d) => d.open), (v) => v === false);
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Kill orphan', 'focus returns');
    assert.equal(h.isAlive(orphan.pid), true, 'Cancel kills nothing');

    await kill.click();
    await dialog.getByRole('button', { name: 'Kill', exact: true }).click();
    assert.equal(await h.exited(orphan, 5000), true, 'the orphan process is gone');
    await warning.waitFor({ state: 'hidden' });
    await until('the result shown', () => text(row(page, 'web').locator('.msg')),
      (t) => t.startsWith(`Killed orphan PID ${orphan.pid}`));
    await page.locator('#timeline li[data-kind="orphanKilled"]', { hasText: String(orphan.pid) }).waitFor();
  });
});

test('an orphan that is the server\'s own lost process says so, and Adopt takes it over', { timeout: 60000 }, async () => {
  const port = await freePort();
  await withTend('adopt', [{ id: 'web', command: demo(port), ports: [port], autostart: false }], async (ctx) => {
    const { page, tend, dir } = ctx;
    await statusIs(page, 'web', 'stopped');
    // What tend would have started, started without it: own session, TEND_SERVER_ID, the same
    // argv and folder. (A lost child: tend's state gone while it ran.)
    const [program, ...args] = demo(port);
    const lost = spawn(program, args, {
      cwd: dir, detached: true, stdio: 'ignore', env: { ...process.env, TEND_SERVER_ID: 'web' },
    });
    ctx.children.push(lost);
    const warning = row(page, 'web').locator('.orphan');
    await until('the orphan shown as adoptable', () => text(warning),
      (t) => t.includes(`It is web's own process (same id, command and folder; started`), 10000);
    assert.match(await text(warning), new RegExp(`^Port ${port} is held by PID ${lost.pid}`));

    const adopt = button(page, 'web', 'Adopt orphan on');
    assert.equal(await adopt.getAttribute('aria-label'), 'Adopt orphan on web');
    await adopt.click();
    await warning.waitFor({ state: 'hidden' });
    await statusIs(page, 'web', 'running', 5000);
    assert.equal(await text(row(page, 'web').locator('.c-pid')), String(lost.pid), 'the same process');
    await until('the result shown', () => text(row(page, 'web').locator('.msg')),
      (t) => t.startsWith(`Adopted PID ${lost.pid}`));
    const s = await server(tend, 'web');
    assert.equal(s.adopted, true);
    assert.equal(s.pid, lost.pid);
    // Stopped like any adopted server.
    await button(page, 'web', 'Stop').click();
    await statusIs(page, 'web', 'stopped', 10000);
    assert.equal(await h.exited(lost, 5000), true, 'the adopted process is stopped');
  });
});

test('the first paint shows the servers without the event stream or any request', { timeout: 60000 }, async () => {
  // See: issue 10 (a headless `chromium --screenshot` showed an empty table on "connecting").
  const port = await freePort();
  const servers = [
    { id: 'web', command: demo(port), ports: [port] },
    { id: 'idle', command: 'sleep 1000', autostart: false },
  ];
  await withTend('first-paint', servers, async (ctx) => {
    await statusIs(ctx.page, 'web', 'running');
    const page = await browser.context.newPage();
    try {
      // Neither the event stream nor any API request ever answers: what the page shows at its
      // load event can only come from the page itself.
      const held = [];
      await page.route((url) => url.pathname.startsWith('/api/'), (route) => { held.push(route.request().url()); });
      await page.goto(ctx.tend.url, { waitUntil: 'load' });
      const shown = await page.evaluate(() => [...document.querySelectorAll('tbody.srv')].map((t) =>
        `${t.dataset.id}:${t.querySelector('.badge').textContent}`));
      assert.deepEqual(shown, ['web:running', 'idle:stopped'], 'rows at the load event');
      assert.equal(await page.locator('#conn').getAttribute('data-state'), 'connecting');
      assert.equal(await page.evaluate(() => document.body.classList.contains('stale')), false,
        'a fresh snapshot is not shown as stale');
      assert.equal(await text(page.locator('#counts')), '2 servers1 running1 stopped');
      assert.ok(held.some((u) => u.includes('/api/events')), `the stream was asked for: ${held}`);
      // The picture a headless screenshot takes is of those rows.
      const png = await page.screenshot();
      assert.ok(png.length > 0);
    } finally {
      await page.close();
    }
  });
});

test('the log panel shows what the child prints, follows, pauses and filters', { timeout: 60000 }, async () => {
  const port = await freePort();
  await withTend('logs', [{ id: 'web', command: demo(port), ports: [port] }], async ({ page, tend }) => {
    await statusIs(page, 'web', 'running');
    const lastLogged = async () => {
      const { lines } = await api(tend, 'GET', '/api/servers/web/logs?lines=5');
      return lines[lines.length - 1];
    };
    const first = await until('the child to print a line', lastLogged, (l) => typeof l === 'string' && l.length > 0);

    await button(page, 'web', 'Logs of').click();
    const panel = row(page, 'web').locator('.logpanel');
    const lines = panel.locator('.line');
    const shown = () => lines.allTextContents();
    await until('the printed line in the panel', shown, (all) => all.includes(first));

    // Live follow: a line printed after the panel opened arrives without a reload.
    const later = await until('a newer line', lastLogged, (l) => l && l !== first);
    await until('the newer line in the panel', shown, (all) => all.includes(later));

    // Pause holds new lines back and counts them; Resume shows them.
    await panel.getByRole('button', { name: 'Pause' }).click();
    const held = await lines.count();
    await until('lines held while paused', () => text(panel.locator('.loginfo')), (t) => /^paused — [1-9]\d* new$/.test(t));
    assert.equal(await lines.count(), held, 'nothing appended while paused');
    await panel.getByRole('button', { name: 'Resume' }).click();
    await until('held lines shown', () => lines.count(), (n) => n > held);

    // Search filters case-insensitively; clearing it shows everything again.
    const search = panel.getByRole('searchbox');
    await search.fill(later.toUpperCase());
    const visible = () => panel.locator('.line:not([hidden])').allTextContents();
    await until('only matching lines', visible, (v) => v.length >= 1 && v.every((l) => l.toLowerCase().includes(later.toLowerCase())));
    await search.fill('no line contains this');
    await until('nothing matches', visible, (v) => v.length === 0);
    await search.fill('');
    await until('all lines again', visible, (v) => v.length > 1);

    await panel.getByRole('button', { name: 'Close logs of web' }).click();
    await panel.waitFor({ state: 'detached' });
  });
});

/** Reads a server-sent event stream until `stop(event)` says so, or the deadline. */
async function readEvents(url, headers, stop, timeout = 5000) {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeout);
  const events = [];
  try {
    const res = await fetch(url, { headers, signal: ac.signal });
    let buf = '';
    for await (const chunk of res.body) {
      buf += Buffer.from(chunk).toString('utf8');
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const ev = { event: 'message', id: null, data: '' };
        for (const line of block.split('\n')) {
          const m = /^(\w+): ?(.*)$/.exec(line);
          if (!m) continue;
          if (m[1] === 'event') ev.event = m[2];
          if (m[1] === 'id') ev.id = m[2];
          if (m[1] === 'data') ev.data += m[2];
        }
        if (ev.id === null && !ev.data) continue; // retry: or a comment
        events.push(ev);
        if (stop(ev, events)) return events;
      }
    }
  } catch (err) {
    if (err.name !== 'AbortError') throw err;
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return events;
}

test('a page opened later shows what happened before, also before tend restarted, marked as earlier', { timeout: 90000 }, async () => {
  const servers = [
    { id: 'db', command: ['sleep', '1000'], restart: 'no' },
    { id: 'idle', command: ['sleep', '1000'], autostart: false },
  ];
  await withTend('history', servers, async (ctx) => {
    const { pid } = await until('db running', () => server(ctx.tend, 'db'), (s) => s.status === 'running');
    await ctx.page.close();
    ctx.page = null;
    // Nobody is looking when it dies; then tend itself restarts.
    process.kill(pid, 'SIGKILL');
    await until('db crashed', () => server(ctx.tend, 'db'), (s) => s.status === 'crashed');
    const listen = `127.0.0.1:${ctx.tend.port}`;
    await h.stopTend(ctx.tend);
    ctx.tend = await h.startTend(ctx.dir, ctx.config, listen);

    ctx.page = await h.openPage(browser, ctx.tend.url);
    const page = ctx.page;
    await page.locator('#timeline .ev-earlier').waitFor();
    const died = page.locator('#timeline li.earlier[data-kind="processDied"]', { hasText: 'db' });
    await died.waitFor();
    assert.match(await text(died), new RegExp(`died: SIGKILL \\(PID ${pid}\\)`));
    // The death happened in tend's previous run: both starts of tend are there, and the stop.
    assert.equal(await page.locator('#timeline li.earlier[data-kind="tendStarted"]').count(), 2);
    assert.equal(await page.locator('#timeline li.earlier[data-kind="tendStopping"]').count(), 1);
    assert.equal(await page.locator('#timeline-empty').isHidden(), true);
    // Earlier events sit below the marker; a live one comes in above it, and none twice.
    await api(ctx.tend, 'POST', '/api/servers/idle?action=start');
    const live = page.locator('#timeline li:not(.earlier)[data-kind="serverStarted"]', { hasText: 'idle' });
    await live.waitFor();
    const order = await page.evaluate(() => [...document.querySelectorAll('#timeline li')]
      .map((li) => (li.classList.contains('ev-earlier') ? 'marker' : li.classList.contains('earlier') ? 'earlier' : 'live')));
    const marker = order.indexOf('marker');
    assert.ok(order.slice(0, marker).every((k) => k === 'live'), order.join(','));
    assert.ok(order.slice(marker + 1).every((k) => k === 'earlier'), order.join(','));
    const times = await page.locator('#timeline li.earlier time').evaluateAll((ts) => ts.map((t) => t.dateTime));
    assert.ok(times.every((t, i) => i === 0 || t <= times[i - 1]), `newest first: ${times}`);
  });
});

test('the page reconnects after tend restarts, and the data catches up', { timeout: 90000 }, async () => {
  const port = await freePort();
  await withTend('reconnect', [{ id: 'web', command: demo(port), ports: [port] }], async (ctx) => {
    const { page } = ctx;
    const conn = page.locator('#conn');
    await statusIs(page, 'web', 'running');
    await until('live', () => conn.getAttribute('data-state'), (s) => s === 'live');
    const oldPid = await text(row(page, 'web').locator('.c-pid'));
    const [snapshot] = await readEvents(`${ctx.tend.base}/api/events`, {}, () => true);
    assert.equal(snapshot.event, 'servers');

    const listen = `127.0.0.1:${ctx.tend.port}`;
    await h.stopTend(ctx.tend);
    await until('reconnecting', () => conn.getAttribute('data-state'), (s) => s === 'reconnecting');
    await page.locator('#stale').waitFor();
    assert.equal(await page.evaluate(() => document.body.classList.contains('stale')), true, 'rows marked stale');

    ctx.tend = await h.startTend(ctx.dir, ctx.config, listen);
    await until('live again', () => conn.getAttribute('data-state'), (s) => s === 'live', 15000);
    await page.locator('#stale').waitFor({ state: 'hidden' });
    const newPid = await until('the new PID', () => text(row(page, 'web').locator('.c-pid')),
      (t) => /^\d+$/.test(t) && t !== oldPid);
    await statusIs(page, 'web', 'running');
    assert.equal(String((await server(ctx.tend, 'web')).pid), newPid);
    // What happened while the page had no stream comes from the history, in its place: the
    // new tend's start (before any client could connect) and the new process's.
    await page.locator('#timeline li:not(.earlier)[data-kind="tendStarted"]').waitFor();
    const started = page.locator('#timeline li:not(.earlier)[data-kind="serverStarted"]', { hasText: 'web' });
    await until('the new start in the timeline', () => started.allTextContents(),
      (all) => all.some((t) => t.includes(`PID ${newPid}`)));
    const ids = await page.locator('#timeline li[data-event-id]').evaluateAll((lis) => lis.map((li) => Number(li.dataset.eventId)));
    assert.ok(ids.every((id, i) => i === 0 || id < ids[i - 1]), `newest first, none twice: ${ids}`);

    // A client resuming with an id of the previous tend cannot get those events replayed by the
    // new one: it must be sent a fresh snapshot (docs/DESIGN.md §5).
    const isState = (ev) => ev.event !== 'stats' && ev.event !== 'log'; // samples carry no id
    const got = (await readEvents(`${ctx.tend.base}/api/events`, { 'Last-Event-ID': snapshot.id }, isState))
      .filter(isState).map((ev) => `${ev.event}#${ev.id}`);
    assert.ok(got.length > 0 && got[0].startsWith('servers#'),
      `resuming with Last-Event-ID ${snapshot.id} (an id of the previous tend) must start with a fresh ` +
      `servers snapshot; got [${got.join(', ')}]`);
  });
});

test('a screenshot of servers in mixed states, for the README', { timeout: 90000 }, async () => {
  const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
  // Shell commands that find tend on PATH read better in the picture than absolute paths.
  const demoCmd = (port) => `tend serve-demo --port ${port} --print-every-ms 200`;
  const servers = [
    { id: 'web', command: demoCmd(p1), ports: [p1] },
    { id: 'api', command: demoCmd(p2), ports: [p2] },
    { id: 'worker', command: 'sleep 1000' },
    { id: 'db', command: demoCmd(p3), ports: [p3], autostart: false },
    { id: 'mailer', command: 'echo "cannot reach smtp"; exit 3', max_restarts: 2, backoff_ms: 50 },
    { id: 'cron', command: 'sleep 1000', restart: 'no' },
  ];
  const env = { PATH: `${path.dirname(h.TEND)}:${process.env.PATH}` };
  await withTend('screenshot', servers, async (ctx) => {
    const { page, tend } = ctx;
    await page.setViewportSize({ width: 1280, height: 800 });
    for (const id of ['web', 'api', 'worker', 'cron']) await statusIs(page, id, 'running');
    await statusIs(page, 'mailer', 'fatal', 10000);
    await button(page, 'api', 'Restart').click();
    await until('api restarted', () => text(row(page, 'api').locator('.msg')), (t) => t.startsWith('Restarted'));
    await statusIs(page, 'api', 'running');
    process.kill((await server(tend, 'cron')).pid, 'SIGKILL');
    await statusIs(page, 'cron', 'crashed');
    await orphanListener(ctx, p3);
    await row(page, 'db').locator('.orphan').waitFor();
    // Enough health rounds for the sparklines to show a trend.
    await until('sparklines drawn', () => row(page, 'web').locator('.c-mem polyline').getAttribute('points'),
      (pts) => pts && pts.split(' ').length >= 30, 20000);

    await page.mouse.move(0, 0); // no hover highlight in the picture
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    // Into target/, so `make test` leaves the checkout as it found it; `make screenshot`
    // copies it to docs/ for the README.
    const file = path.join(h.ROOT, 'target', 'e2e', 'dashboard.png');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await page.screenshot({ path: file });
    assert.ok(fs.statSync(file).size > 10000);

    // Phone width: cards stack, nothing scrolls sideways; the dark theme applies.
    await page.setViewportSize({ width: 375, height: 800 });
    await until('no sideways scroll at 375px', () => page.evaluate(() => document.documentElement.scrollWidth), (w) => w <= 375);
    const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.notEqual(dark, light);
  }, env);
});

test('with a token, the printed link signs the browser in and the dashboard works under it', { timeout: 60000 }, async () => {
  // Issue 4: the cookie set by /?token=… must carry fetches and the event stream, and the
  // browser's same-origin POSTs must pass the Origin check.
  const dir = h.tempDir('auth');
  const port = await freePort();
  const file = h.writeConfig(dir, [{ id: 'web', command: demo(port), ports: [port], autostart: false }]);
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  config.auth_token = 'e2e-0123456789abcdef';
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  const tend = await h.startTend(dir, file);
  let ok = false;
  let page;
  try {
    assert.match(tend.url, /\/\?token=e2e-0123456789abcdef$/, 'tend up prints the sign-in link');
    await browser.context.clearCookies();
    const anonymous = await h.openPage(browser, `${tend.base}/`);
    assert.equal(await anonymous.locator('form input[name="token"]').count(), 1, 'a login page without the cookie');
    assert.equal(await anonymous.locator('script').count(), 0, 'the login page has no script');
    await anonymous.close();

    page = await h.openPage(browser, tend.url);
    await page.locator('tbody.srv').first().waitFor();
    assert.equal(new URL(page.url()).search, '', 'the token left the address bar');
    const cookies = await browser.context.cookies(tend.base);
    const cookie = cookies.find((c) => c.name === 'tend_token');
    assert.ok(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', JSON.stringify(cookies));
    await until('live', () => text(page.locator('#conn')).catch(() => ''), (t) => /live/i.test(t));
    await button(page, 'web', 'Start').click();
    await statusIs(page, 'web', 'running');
    await button(page, 'web', 'Stop').click();
    await statusIs(page, 'web', 'stopped');
    assert.deepEqual(page.problems, [], 'no script errors and no CSP violations');
    ok = true;
  } finally {
    if (page) await page.close().catch(() => {});
    await browser.context.clearCookies();
    await h.stopTend(tend);
    if (ok) fs.rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`# evidence kept in ${dir}\n`);
  }
});

test('Reload config adds a row and drops a removed one without a page reload', { timeout: 60000 }, async () => {
  const sleeper = (id) => ({ id, command: ['sleep', '1000'] });
  await withTend('reload', [sleeper('keep'), sleeper('old')], async ({ page, dir, config }) => {
    await statusIs(page, 'keep', 'running');
    await statusIs(page, 'old', 'running');
    const keptPid = await text(row(page, 'keep').locator('.c-pid'));
    await page.evaluate(() => { window.notReloaded = true; });

    h.writeConfig(dir, [sleeper('keep'), sleeper('fresh')]);
    await page.getByRole('button', { name: 'Reload config', exact: true }).click();
    await statusIs(page, 'fresh', 'running');
    await until('the removed row to go', () => row(page, 'old').count(), (n) => n === 0);
    const ids = await page.locator('tbody.srv').evaluateAll((bodies) => bodies.map((b) => b.dataset.id));
    assert.deepEqual(ids, ['keep', 'fresh'], 'rows in config order');
    assert.equal(await text(row(page, 'keep').locator('.c-pid')), keptPid, 'keep was not touched');
    const result = page.locator('#reload-result');
    await until('the plan shown', () => text(result),
      (t) => t.includes('added: fresh') && t.includes('removed: old') && t.includes('unchanged: keep'));
    await until('the timeline note', () => text(page.locator('#timeline li[data-kind="configReloaded"]').first()),
      (t) => t.includes('added fresh') && t.includes('removed old'));

    // An invalid file: nothing changes and each problem is listed with its position.
    fs.writeFileSync(config, '{"servers": [\n  {"id": "keep", "command": "x", "typo": 1}\n]}\n');
    await page.getByRole('button', { name: 'Reload config', exact: true }).click();
    await until('the error shown', () => result.getAttribute('class'), (c) => c.includes('error'));
    const problem = await text(result.locator('li').first());
    assert.ok(problem.startsWith(`${config}:2:`) && problem.includes('typo'), problem);
    assert.deepEqual(
      await page.locator('tbody.srv').evaluateAll((bodies) => bodies.map((b) => b.dataset.id)),
      ['keep', 'fresh']);
    assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');
  });
});

test('a watched server says what it watches and when it restarts next, and the timeline names the changed file', { timeout: 60000 }, async () => {
  const servers = [{
    id: 'dev', command: 'exec sleep 1000',
    watch: { paths: ['src'], debounce_ms: 50 }, restart_every: '1h',
  }];
  const dir = h.tempDir('watch-src');
  fs.mkdirSync(path.join(dir, 'src', 'lib'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'src', 'app.js'), 'v1');
  // withTend makes its own folder: the server's cwd points at this one.
  servers[0].cwd = dir;
  await withTend('watch', servers, async ({ page, tend }) => {
    await statusIs(page, 'dev', 'running');
    const flags = row(page, 'dev').locator('.flags');
    await until('the watch shown', () => text(flags.locator('.watching')), (t) => t === 'watching 2 paths');
    const s = await server(tend, 'dev');
    const at = new Date(s.plannedRestart.at);
    const hhmm = `${String(at.getHours()).padStart(2, '0')}:${String(at.getMinutes()).padStart(2, '0')}`;
    const planned = await text(flags.locator('.planned'));
    // An hour from now is on another day near midnight: then the date is shown too.
    if (at.toDateString() === new Date().toDateString()) assert.equal(planned, `next planned restart at ${hhmm}`);
    else assert.match(planned, /^next planned restart at /);
    assert.match(await flags.locator('.planned').getAttribute('title'), /restart_every 1h/);

    fs.writeFileSync(path.join(dir, 'src', 'lib', 'util.js'), 'v2');
    await page.locator('#timeline li[data-kind="plannedRestart"]', { hasText: 'src/lib/util.js changed' }).waitFor();
    await until('a new PID', () => server(tend, 'dev'), (n) => n.status === 'running' && n.pid !== s.pid);
  });
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a group restarts from its header, shows its merged log, and the status filter stays in the URL', { timeout: 90000 }, async () => {
  const [pApi, pDb, pWeb] = [await freePort(), await freePort(), await freePort()];
  const servers = [
    { id: 'api', command: demo(pApi), ports: [pApi], group: 'backend', depends_on: ['db'] },
    { id: 'db', command: demo(pDb), ports: [pDb], group: 'backend' },
    { id: 'web', command: demo(pWeb), ports: [pWeb] },
    { id: 'idle', command: 'exec sleep 1000', autostart: false },
  ];
  await withTend('groups', servers, async ({ page, tend }) => {
    for (const id of ['api', 'db', 'web']) await statusIs(page, id, 'running');
    const head = page.locator('tbody.grp[data-group="backend"]');
    await until('the group counts', () => text(head.locator('.gcounts')),
      (t) => t === '2 servers · 2 running · 0 not running');
    // Config order inside the group; the server without a group comes under "no group".
    const order = await page.locator('#servers tbody').evaluateAll((bodies) =>
      bodies.map((b) => (b.classList.contains('grp') ? `[${b.dataset.group || '-'}]` : b.dataset.id)));
    assert.deepEqual(order, ['[backend]', 'api', 'db', '[-]', 'web', 'idle']);

    const before = { api: (await server(tend, 'api')).pid, db: (await server(tend, 'db')).pid, web: (await server(tend, 'web')).pid };
    await head.getByRole('button', { name: 'Restart group backend', exact: true }).click();
    await until('the group restarted', () => text(head.locator('.msg')), (t) => t === 'Restarted group backend');
    for (const id of ['api', 'db']) {
      await statusIs(page, id, 'running');
      const after = await server(tend, id);
      assert.notEqual(after.pid, before[id], `${id} got a new process`);
      assert.equal(await text(row(page, id).locator('.c-pid')), String(after.pid));
    }
    assert.equal((await server(tend, 'web')).pid, before.web, 'web is in no group and kept its process');

    // The group's log: both members' lines, each behind its name.
    await head.getByRole('button', { name: 'Logs of group backend', exact: true }).click();
    const panel = head.locator('.logpanel');
    await until('both members in the merged log', () => panel.locator('.line').allTextContents(),
      (lines) => lines.some((l) => l.startsWith('api | ')) && lines.some((l) => l.startsWith('db  | ')));
    await panel.getByRole('button', { name: 'Close logs of group backend' }).click();

    // Stopping more than one server asks first; Cancel stops nothing.
    const stop = head.getByRole('button', { name: 'Stop group backend', exact: true });
    const dialog = page.locator('dialog#confirm');
    await stop.click();
    await until('dialog open', () => dialog.evaluate((d) => d.open), (v) => v === true);
    assert.match(await text(dialog), /Stop group backend\?.*2 servers: api, db/s);
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    assert.equal((await server(tend, 'api')).status, 'running', 'Cancel stops nothing');
    await stop.click();
    await dialog.getByRole('button', { name: 'Stop all', exact: true }).click();
    for (const id of ['api', 'db']) await statusIs(page, id, 'stopped');
    await until('the group counts', () => text(head.locator('.gcounts')),
      (t) => t === '2 servers · 0 running · 2 not running');
    assert.equal(await text(dialog.locator('h2')), 'Kill orphan?', 'the dialog is the orphan one again');

    // Filter by status: only the stopped rows stay, and the URL keeps the filter.
    const visible = () => page.locator('#servers tbody.srv:not([hidden])').evaluateAll((b) => b.map((x) => x.dataset.id));
    await page.locator('#filter').fill('stopped');
    await until('only stopped rows', visible, (ids) => ids.join() === 'api,db,idle');
    assert.equal(new URL(page.url()).searchParams.get('filter'), 'stopped');
    await page.goto(page.url());
    await until('the filter restored from the URL', visible, (ids) => ids.join() === 'api,db,idle');
    assert.equal(await page.locator('#filter').inputValue(), 'stopped');
    assert.equal(await page.locator('tbody.grp[data-group="backend"]').isVisible(), true);
    await page.locator('#filter').fill('group:backend running');
    await until('no match', visible, (ids) => ids.length === 0);
    assert.equal(await page.locator('#filter-empty').isVisible(), true);
    await page.locator('#filter').fill('');
    await until('every row', visible, (ids) => ids.length === 4);
    assert.equal(new URL(page.url()).searchParams.get('filter'), null);
  });
});
