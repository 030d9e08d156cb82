// tend dashboard. Plain ES2020, no framework, no build step; served by tend at /app.js.
// Contracts: docs/DESIGN.md §4 (API) and §5 (Server-Sent Events). A strict CSP applies, so this file
// never writes markup: every node is built with createElement and filled with textContent.
// Loaded as a module: strict, deferred and with its own scope.
const HISTORY = 60; // sparkline points per server (one per health round)
const TIMELINE_MAX = 200;
const LOG_MAX = 2000; // lines kept in an open log panel
const LOG_INITIAL = 200;
const OFFLINE_AFTER_MS = 10000;
const MESSAGE_MS = 6000; // how long a success message stays in a row
const RECOVERED_MS = 60000; // how long "died, running again" stays in a row
const SVG = 'http://www.w3.org/2000/svg';
const STATUSES = ['running', 'starting', 'unhealthy', 'stopping', 'backoff', 'crashed', 'fatal',
  'exited', 'stopped'];
const TICKING = new Set(['running', 'starting', 'unhealthy']);
const CAN_START = (st) => !['running', 'starting', 'unhealthy', 'stopping'].includes(st);
const CAN_STOP = (st) => st !== 'stopped' && st !== 'exited'; // docs/DESIGN.md §8a: backoff/fatal may be stopped
const CAN_RESTART = (st) => st !== 'stopping';

const $ = (id) => document.getElementById(id);
const table = $('servers');
const rows = new Map(); // id -> row
let gotSnapshot = false;
let seq = 0; // counts stream updates, so an HTTP reply never overwrites a newer event
const touched = new Map(); // id -> seq of the last stream update of that server
let signedOut = false;
let openLog = null; // at most one log panel: each holds an SSE connection of the browser's six

// ---------- small helpers ----------
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function button(label, cls, onClick) {
  const b = el('button', 'btn' + (cls ? ' ' + cls : ''), label);
  b.type = 'button';
  b.addEventListener('click', onClick);
  return b;
}
function setText(node, text) {
  const t = String(text);
  if (node.textContent !== t) node.textContent = t;
}
const pad = (n) => String(n).padStart(2, '0');
function clock(d) {
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function duration(ms) {
  let s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  let m = Math.floor(s / 60); s %= 60;
  if (m < 60) return `${m}m ${pad(s)}s`;
  let h = Math.floor(m / 60); m %= 60;
  if (h < 24) return `${h}h ${pad(m)}m`;
  const d = Math.floor(h / 24); h %= 24;
  return `${d}d ${h}h`;
}
function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}
const percent = (p) => `${p < 10 ? p.toFixed(1) : Math.round(p)}%`;
const exitText = (code, signal) => signal || (code !== null && code !== undefined ? `exit ${code}` : '');
const hasProcess = (s) => s.pid !== null && s.pid !== undefined &&
  ['running', 'starting', 'unhealthy', 'stopping'].includes(s.status);

let announceTimer = 0;
function announce(text) {
  const region = $('announce');
  region.textContent = '';
  clearTimeout(announceTimer);
  // A fresh text node after a tick makes screen readers speak a repeated message again.
  announceTimer = setTimeout(() => { region.textContent = text; }, 50);
}

// ---------- HTTP ----------
class ApiError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
}
async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (_) {
    throw new ApiError(0, 'tend is not reachable', 'network');
  }
  if (res.status === 401) {
    showSignedOut();
    throw new ApiError(401, 'Not signed in', 'unauthorized');
  }
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const msg = data && typeof data.error === 'string' ? data.error : `HTTP ${res.status}`;
    throw new ApiError(res.status, msg, data && data.code);
  }
  return data;
}
const serverPath = (id) => `/api/servers/${encodeURIComponent(id)}`;

function showSignedOut() {
  if (signedOut) return;
  signedOut = true;
  $('auth').hidden = false;
  $('servers-section').hidden = true;
  $('timeline-section').hidden = true;
  if (openLog) closeLogs();
  if (source) { source.close(); source = null; }
  clearTimeout(reconnectTimer);
  setConn('offline');
}

// ---------- server rows ----------
function cell(cls, label) {
  const td = el('td', cls);
  td.dataset.label = label; // shown as a caption in the stacked (narrow) layout
  return td;
}
function spark(title) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', '0 0 60 16');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('aria-hidden', 'true');
  const t = document.createElementNS(SVG, 'title');
  t.textContent = title;
  const line = document.createElementNS(SVG, 'polyline');
  svg.append(t, line);
  return svg;
}
function drawSpark(svg, values, floorZero) {
  const line = svg.lastChild;
  if (values.length < 2) { line.setAttribute('points', ''); return; }
  let min = floorZero ? 0 : Math.min(...values);
  let max = Math.max(...values);
  if (floorZero) max = Math.max(max, 1);
  if (max - min < 1e-9) { min -= 1; max += 1; }
  const step = 60 / (HISTORY - 1);
  const x0 = 60 - (values.length - 1) * step;
  line.setAttribute('points', values.map((v, i) =>
    `${(x0 + i * step).toFixed(1)},${(15 - ((v - min) / (max - min)) * 14).toFixed(1)}`).join(' '));
}

function makeRow(id) {
  const r = { id, s: null, busy: null, killing: false, died: null, message: null, msgTimer: 0,
    cpu: [], mem: [], histPid: undefined, e: {} };
  const e = r.e;
  r.tbody = el('tbody', 'srv');
  r.tbody.dataset.id = id;
  const tr = el('tr', 'main');
  const name = cell('c-name', 'Server');
  e.id = el('span', 'sid', id);
  e.cmd = el('span', 'cmd');
  name.append(e.id, e.cmd);
  const status = cell('c-status', 'Status');
  e.badge = el('span', 'badge');
  e.badgeText = el('span');
  e.badge.append(el('span', 'dot'), e.badgeText);
  e.flags = el('span', 'flags');
  status.append(e.badge, e.flags);
  e.pid = cell('num c-pid', 'PID');
  e.uptime = cell('num c-uptime', 'Uptime');
  e.restarts = cell('num c-restarts', 'Restarts');
  e.exit = cell('c-exit', 'Exit');
  e.ports = cell('c-ports', 'Ports');
  const cpu = cell('c-cpu', 'CPU');
  e.cpuText = el('span', 'metric');
  e.cpuSpark = spark('CPU, recent rounds');
  cpu.append(e.cpuText, e.cpuSpark);
  const mem = cell('c-mem', 'Memory');
  e.memText = el('span', 'metric');
  e.memSpark = spark('Memory, recent rounds');
  mem.append(e.memText, e.memSpark);
  const actions = cell('c-actions', 'Actions');
  e.start = button('Start', 'start', () => act(r, 'start'));
  e.stop = button('Stop', 'stop', () => act(r, 'stop'));
  e.restart = button('Restart', 'restart', () => act(r, 'restart'));
  e.logs = button('Logs', 'logs', () => (openLog && openLog.r === r ? closeLogs() : openLogs(r)));
  e.logs.setAttribute('aria-expanded', 'false');
  for (const b of [e.start, e.stop, e.restart]) b.setAttribute('aria-label', `${b.textContent} ${id}`);
  e.logs.setAttribute('aria-label', `Logs of ${id}`);
  actions.append(e.start, e.stop, e.restart, e.logs);
  tr.append(name, status, e.pid, e.uptime, e.restarts, e.exit, e.ports, cpu, mem, actions);

  // The detail row holds notices, the action result and the log panel; hidden when empty.
  e.extra = el('tr', 'extra');
  const td = el('td');
  td.colSpan = 10;
  e.died = el('p', 'notice bad died');
  e.orphan = el('div', 'notice warn orphan');
  e.orphanText = el('span');
  e.kill = button('Kill orphan', 'danger small', () => killOrphan(r));
  e.kill.setAttribute('aria-label', `Kill orphan on ${id}`); // named like Start/Stop/Restart
  // Only for an orphan that is provably this server's own lost process (server.adoptable).
  e.adopt = button('Adopt', 'small', () => adoptOrphan(r));
  e.adopt.setAttribute('aria-label', `Adopt orphan on ${id}`);
  e.orphan.append(e.orphanText, e.adopt, e.kill);
  e.health = el('p', 'notice warn health');
  e.lastError = el('p', 'notice muted last-error');
  e.msg = el('p', 'msg');
  e.logSlot = el('div', 'log-slot');
  td.append(e.died, e.orphan, e.health, e.lastError, e.msg, e.logSlot);
  e.extra.append(td);
  r.tbody.append(tr, e.extra);
  return r;
}

function orphanPort(s) {
  const held = (s.ports || []).find((p) => p.ownerPid === s.orphanedPid);
  return held ? held.port : (s.ports && s.ports[0] ? s.ports[0].port : null);
}

// Why a live server is not running: its health check's last word, or its closed ports.
function healthText(s) {
  const h = s.health;
  if (s.status === 'unhealthy') {
    if (h && !h.ok) return `Unhealthy: ${h.detail}`;
    const closed = (s.ports || []).filter((p) => !p.open).map((p) => p.port);
    return closed.length ? `Unhealthy: port ${closed.join(', ')} closed` : 'Unhealthy';
  }
  if (s.status === 'starting' && h && !h.ready) return `Not ready: ${h.detail}`;
  return '';
}

function render(r) {
  const s = r.s;
  const e = r.e;
  setText(e.cmd, s.command || '');
  e.cmd.title = s.command || '';
  e.badge.dataset.status = s.status;
  setText(e.badgeText, s.status);
  r.tbody.dataset.status = s.status;
  e.flags.replaceChildren();
  if (s.adopted) e.flags.append(el('span', 'flag', 'adopted'));
  if (s.orphaned) e.flags.append(el('span', 'flag warn', 'orphan'));
  for (const flag of planFlags(s)) e.flags.append(flag);
  setText(e.pid, hasProcess(s) ? s.pid : '—');
  tickUptime(r, Date.now());
  setText(e.restarts, s.restarts || 0);
  setText(e.exit, hasProcess(s) ? '—' : exitText(s.exitCode, s.exitSignal) || '—');

  e.ports.replaceChildren();
  if (!s.ports || !s.ports.length) e.ports.append(el('span', 'muted', '—'));
  for (const p of s.ports || []) {
    const item = el('span', 'port');
    item.dataset.open = p.open ? 'true' : 'false';
    item.append(el('span', 'dot'), el('span', 'pnum', p.port), el('span', 'pstate', p.open ? 'open' : 'closed'));
    item.title = p.ownerPid ? `port ${p.port} held by PID ${p.ownerPid}` : `port ${p.port}`;
    e.ports.append(item);
  }
  renderMetrics(r);
  const st = s.status;
  e.start.disabled = !!r.busy || !CAN_START(st);
  e.stop.disabled = !!r.busy || !CAN_STOP(st);
  e.restart.disabled = !!r.busy || !CAN_RESTART(st);
  r.tbody.classList.toggle('busy', !!r.busy);

  if (r.died) {
    const how = exitText(r.died.exitCode, r.died.exitSignal);
    setText(e.died, `Server died${how ? ` (${how})` : ''} at ${clock(r.died.at)}` +
      (r.died.pid ? ` — PID ${r.died.pid}` : '') + (r.died.recovered ? '; running again' : ''));
    e.died.classList.toggle('bad', !r.died.recovered);
    e.died.classList.toggle('warn', !!r.died.recovered);
  }
  e.died.hidden = !r.died;
  if (s.orphaned) {
    const port = orphanPort(s);
    const verdict = s.adoptable
      ? ` It is ${r.id}'s own process (${s.adoptable.evidence}): Adopt takes it over.`
      : (s.notAdoptable ? ` Not adoptable: ${s.notAdoptable}.` : '');
    setText(e.orphanText, `${port !== null ? `Port ${port}` : 'A port'} is held by PID ${s.orphanedPid}, ` +
      `which tend does not manage.${verdict}`);
  }
  e.orphan.hidden = !s.orphaned;
  e.adopt.hidden = !s.adoptable;
  e.adopt.disabled = !!r.adopting || !s.adoptable;
  e.kill.disabled = r.killing || !s.orphanedPid;
  const why = hasProcess(s) ? healthText(s) : '';
  setText(e.health, why);
  e.health.hidden = !why;
  setText(e.lastError, s.lastError ? `Last error: ${s.lastError}` : '');
  e.lastError.hidden = !s.lastError || !!r.died;
  setText(e.msg, r.message ? r.message.text : '');
  e.msg.classList.toggle('error', !!(r.message && r.message.error));
  e.msg.hidden = !r.message;
  e.extra.hidden = e.died.hidden && e.orphan.hidden && e.health.hidden && e.lastError.hidden &&
    e.msg.hidden &&
    !(openLog && openLog.r === r);
}

/** "watching 12 paths" and "next planned restart at 04:00": what tend will restart it for. */
function planFlags(s) {
  const flags = [];
  if (s.watch) {
    const n = s.watch.paths || 0;
    const f = el('span', s.watch.error ? 'flag warn watching' : 'flag watching', `watching ${n} path${n === 1 ? '' : 's'}`);
    f.title = s.watch.error ? `Not every folder is watched: ${s.watch.error}` : 'Restarts when a watched file changes';
    flags.push(f);
  }
  if (s.plannedRestart && hasProcess(s)) {
    const at = new Date(s.plannedRestart.at);
    const today = at.toDateString() === new Date().toDateString();
    const when = today ? `${pad(at.getHours())}:${pad(at.getMinutes())}` : at.toLocaleString();
    const f = el('span', 'flag planned', `next planned restart at ${when}`);
    f.title = `${at.toLocaleString()} (${s.plannedRestart.by})`;
    flags.push(f);
  }
  return flags;
}

function renderMetrics(r) {
  const s = r.s;
  const live = hasProcess(s);
  setText(r.e.cpuText, live && typeof s.cpuPercent === 'number' ? percent(s.cpuPercent) : '—');
  setText(r.e.memText, live && typeof s.rssBytes === 'number' ? bytes(s.rssBytes) : '—');
  // The figures are the whole process group's; say so, and how many processes that is.
  const group = live && typeof s.processes === 'number'
    ? `${s.processes} process${s.processes === 1 ? '' : 'es'} (the server's process group)` : '';
  r.e.cpuText.title = group;
  r.e.memText.title = group;
  drawSpark(r.e.cpuSpark, live ? r.cpu : [], true);
  drawSpark(r.e.memSpark, live ? r.mem : [], false);
}

function tickUptime(r, now) {
  const s = r.s;
  const ticking = TICKING.has(s.status) && typeof s.startTime === 'number';
  setText(r.e.uptime, ticking ? duration(now - s.startTime) : '—');
}

function applyServer(s, fromStream) {
  if (!s || typeof s.id !== 'string') return;
  if (fromStream) touched.set(s.id, ++seq);
  let r = rows.get(s.id);
  if (!r) {
    r = makeRow(s.id);
    rows.set(s.id, r);
    table.append(r.tbody);
  }
  if (r.histPid !== s.pid) { r.cpu = []; r.mem = []; r.histPid = s.pid; }
  if (s.status === 'running' && r.died && !r.died.recovered) {
    // Back up (often at once, by the restart policy): keep a quieter note for a minute so a
    // death is not lost in a blink.
    r.died.recovered = true;
    const died = r.died;
    setTimeout(() => { if (r.died === died) { r.died = null; render(r); } }, RECOVERED_MS);
  }
  r.s = s;
  render(r);
}

function replaceAll(list, fromStream) {
  if (!Array.isArray(list)) return;
  gotSnapshot = true;
  const seen = new Set();
  for (const s of list) { applyServer(s, fromStream); seen.add(s.id); }
  for (const [id, r] of rows) {
    if (seen.has(id)) continue;
    if (openLog && openLog.r === r) closeLogs();
    r.tbody.remove();
    rows.delete(id);
  }
  // Re-append only when the order differs: moving a node would drop keyboard focus.
  const current = [...table.tBodies];
  const wanted = groupLayout(list);
  if (current.some((t, i) => t !== wanted[i])) for (const t of wanted) table.append(t);
  $('empty').hidden = list.length > 0;
  table.hidden = list.length === 0;
  counts();
}

function counts() {
  refreshGroups();
  const n = {};
  for (const r of rows.values()) n[r.s.status] = (n[r.s.status] || 0) + 1;
  const box = $('counts');
  box.replaceChildren(el('span', 'total', `${rows.size} server${rows.size === 1 ? '' : 's'}`));
  for (const st of STATUSES) {
    if (!n[st]) continue;
    const c = el('span', 'count');
    c.dataset.status = st;
    c.append(el('span', 'dot'), `${n[st]} ${st}`);
    box.append(c);
  }
}

function applyStats(list) {
  if (!Array.isArray(list)) return;
  for (const st of list) {
    const r = rows.get(st && st.id);
    if (!r) continue;
    r.s = { ...r.s, cpuPercent: st.cpuPercent, rssBytes: st.rssBytes, processes: st.processes };
    if (typeof st.cpuPercent === 'number') r.cpu.push(st.cpuPercent);
    if (typeof st.rssBytes === 'number') r.mem.push(st.rssBytes);
    if (r.cpu.length > HISTORY) r.cpu.splice(0, r.cpu.length - HISTORY);
    if (r.mem.length > HISTORY) r.mem.splice(0, r.mem.length - HISTORY);
    renderMetrics(r);
  }
}

setInterval(() => {
  const now = Date.now();
  for (const r of rows.values()) tickUptime(r, now);
}, 1000);

// ---------- actions ----------
const VERBS = { start: ['Starting', 'Started'], stop: ['Stopping', 'Stopped'], restart: ['Restarting', 'Restarted'] };

function say(r, text, error) {
  clearTimeout(r.msgTimer);
  r.message = { text, error: !!error };
  if (!error) r.msgTimer = setTimeout(() => { r.message = null; render(r); }, MESSAGE_MS);
  if (r.s) render(r);
}

const keyboardFocus = () => !!document.activeElement && document.activeElement.matches(':focus-visible');
function refocus(r, wasKeyboard) {
  // A disabled button loses focus; hand a keyboard user the next useful action of the row.
  const a = document.activeElement;
  if (!wasKeyboard || (a && a !== document.body)) return;
  const next = [r.e.start, r.e.stop, r.e.restart, r.e.logs].find((b) => !b.disabled);
  if (next) next.focus();
}

async function act(r, action) {
  if (r.busy) return;
  const [doing, done] = VERBS[action];
  const kb = keyboardFocus();
  r.busy = action;
  say(r, `${doing} ${r.id}…`);
  clearTimeout(r.msgTimer);
  const mark = ++seq;
  try {
    const s = await api('POST', `${serverPath(r.id)}?action=${action}`, {});
    // An event that arrived meanwhile may be newer than the reply: then the stream wins.
    if (s && s.id === r.id && !((touched.get(r.id) || 0) > mark)) { applyServer(s); counts(); }
    const text = `${done} ${r.id}${s && s.pid && action !== 'stop' ? ` (PID ${s.pid})` : ''}`;
    r.busy = null;
    say(r, text);
    announce(text);
  } catch (err) {
    r.busy = null;
    const text = `${action[0].toUpperCase()}${action.slice(1)} ${r.id} failed: ${err.message}`;
    say(r, text, true);
    announce(text);
  }
  refocus(r, kb);
}

// ---------- orphan kill with confirmation ----------
function confirmKill(text) {
  const dialog = $('confirm');
  const back = document.activeElement;
  setText($('confirm-text'), text);
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (back && back.isConnected && !back.disabled) back.focus();
      resolve(dialog.returnValue === 'kill');
    }, { once: true });
    dialog.showModal();
  });
}

async function killOrphan(r) {
  const s = r.s;
  const pid = s.orphanedPid;
  if (!pid || r.killing) return;
  const port = orphanPort(s);
  const ok = await confirmKill(`PID ${pid} holds ${port !== null ? `port ${port}` : 'a port'} of ${r.id} ` +
    'and is not managed by tend. tend sends it SIGTERM, then SIGKILL after 1 s.');
  if (!ok) return;
  const kb = keyboardFocus();
  r.killing = true;
  say(r, `Killing PID ${pid}…`);
  clearTimeout(r.msgTimer);
  try {
    const res = await api('DELETE', '/api/kill', { id: r.id, pid });
    r.killing = false;
    const text = `Killed orphan PID ${res && res.pid ? res.pid : pid}${res && res.signal ? ` (${res.signal})` : ''}`;
    say(r, text);
    announce(text);
  } catch (err) {
    r.killing = false;
    const text = `Kill PID ${pid} failed: ${err.message}`;
    say(r, text, true);
    announce(text);
  }
  refocus(r, kb);
}

// ---------- orphan adoption ----------
// No confirmation: nothing is signalled, and a refusal (409) says which check failed.
async function adoptOrphan(r) {
  const found = r.s.adoptable;
  if (!found || r.adopting) return;
  const kb = keyboardFocus();
  r.adopting = true;
  say(r, `Adopting PID ${found.pid}…`);
  clearTimeout(r.msgTimer);
  try {
    const res = await api('POST', `${serverPath(r.id)}?action=adopt`);
    r.adopting = false;
    const text = `Adopted PID ${res && res.pid ? res.pid : found.pid}: ${r.id} is managed by tend again`;
    say(r, text);
    announce(text);
  } catch (err) {
    r.adopting = false;
    const text = `Adopt PID ${found.pid} failed: ${err.message}`;
    say(r, text, true);
    announce(text);
  }
  refocus(r, kb);
}

// ---------- timeline ----------
const TIMELINE = {
  serverStarted: (d) => ['ok', `started${d.pid ? ` (PID ${d.pid})` : ''}`],
  serverStopped: (d) => [d.forced ? 'warn' : 'info',
    `stopped${d.pid ? ` (PID ${d.pid})` : ''}${d.forced ? ' — needed SIGKILL' : ''}`],
  processDied: (d) => ['bad', `died${exitText(d.exitCode, d.exitSignal) ? `: ${exitText(d.exitCode, d.exitSignal)}` : ''}` +
    `${d.pid ? ` (PID ${d.pid})` : ''}`],
  processError: (d) => ['bad', `failed to start: ${d.error || 'unknown error'}`],
  statusChange: (d) => [['crashed', 'fatal'].includes(d.to) ? 'bad' : d.to === 'unhealthy' ? 'warn' : 'muted',
    `${d.from} → ${d.to}`],
  orphanDetected: (d) => ['warn', `orphan PID ${d.pid || '?'} holds port ${d.port}`],
  orphanCleared: (d) => ['ok', `orphan PID ${d.pid || '?'} no longer holds port ${d.port}`],
  orphanKilled: (d) => ['info', `orphan PID ${d.pid} killed${d.signal ? ` (${d.signal})` : ''}`],
  configReloaded: (d) => ['info', `reloaded: ${planSummary(d)}`],
  healthChanged: (d) => [d.ok ? 'ok' : 'warn', `health check ${d.ok ? 'passes' : 'failed'}: ${d.detail}`],
  memoryExceeded: (d) => ['warn', `memory ${mib(d.rssBytes)} over ${mib(d.limitBytes)}: restarting`],
  plannedRestart: (d) => ['info', d.trigger === 'watch'
    ? `${d.pid ? 'restarting' : 'starting'}: ${d.detail}` : `planned restart (${d.detail})`],
  tendStarted: (d) => ['info', `tend ${d.version || ''} started${d.pid ? ` (PID ${d.pid})` : ''}`],
  tendStopping: (d) => ['info', `tend stopping (${d.signal || 'asked to'})`],
  stateWriteFailed: (d) => ['bad', `state file write failed: ${d.error}`],
  alert: (d) => [d.result === 'sent' ? 'muted' : d.result === 'heldBack' ? 'muted' : 'warn',
    `alert ${d.alert} via ${d.target} (rule ${d.rule}): ${ALERT_RESULT[d.result] || d.result}` +
    `${d.detail ? ` — ${d.detail}` : ''}`],
};
const ALERT_RESULT = { sent: 'sent', failed: 'failed', heldBack: 'held back', dropped: 'dropped' };
/** Event ids already in the timeline (live or from the history), so none shows twice. */
const shownIds = new Set();
function mib(bytes) { return `${Math.round((bytes || 0) / 1048576)} MiB`; }

function timelineItem(kind, d, at, who) {
  const [level, text] = TIMELINE[kind](d);
  const li = el('li', `ev ${level}`);
  li.dataset.kind = kind;
  // An event of an earlier day says which day.
  const today = new Date().toDateString() === at.toDateString();
  const time = el('time', 'when', today ? clock(at) : `${at.toLocaleDateString()} ${clock(at)}`);
  time.dateTime = at.toISOString();
  li.append(time, el('span', 'who', who), el('span', 'what', text));
  return li;
}

/** The newest event id the timeline has (from the stream or the history). */
let newestId = 0;
function noteId(eventId) {
  if (!eventId) return false;
  if (shownIds.has(eventId)) return true;
  shownIds.add(eventId);
  newestId = Math.max(newestId, Number(eventId) || 0);
  return false;
}

function addTimeline(kind, d, eventId) {
  if (noteId(eventId)) return;
  const who = typeof d.id === 'string' ? d.id : 'tend';
  const list = $('timeline');
  const li = timelineItem(kind, d, new Date(), who);
  if (eventId) li.dataset.eventId = eventId;
  list.prepend(li);
  while (list.children.length > TIMELINE_MAX) list.lastChild.remove();
  $('timeline-empty').hidden = true;
}

/** After the stream was lost (tend restarting, a network gap), the events the page missed,
 *  from the history, each in its place by id. */
async function fillGap() {
  if (!newestId) return;
  let history;
  try {
    history = await api('GET', `/api/history?after=${newestId}&limit=${TIMELINE_MAX}`);
  } catch (_) { return; }
  const list = $('timeline');
  for (const e of (history && Array.isArray(history.events) ? history.events : [])) {
    const id = String(e.id);
    if (!TIMELINE[e.event] || noteId(id)) continue;
    const who = e.server || (e.event === 'configReloaded' ? 'config' : 'tend');
    const li = timelineItem(e.event, e.data || {}, new Date(e.at), who);
    li.dataset.eventId = id;
    // Newest first: before the first older event, else above the earlier ones.
    const older = [...list.children].find((c) => (c.dataset.eventId && Number(c.dataset.eventId) < e.id)
      || c.classList.contains('ev-earlier'));
    list.insertBefore(li, older || null);
  }
  while (list.children.length > TIMELINE_MAX) list.lastChild.remove();
  if (list.children.length) $('timeline-empty').hidden = true;
}

/** What happened before this page opened (tend keeps the last events in its history, also
 *  across its own restarts): below the live events, marked as earlier. */
async function loadHistory() {
  let history;
  try {
    history = await api('GET', `/api/history?limit=${TIMELINE_MAX}`);
  } catch (_) { return; /* the live timeline still works */ }
  const events = (history && Array.isArray(history.events) ? history.events : [])
    .filter((e) => TIMELINE[e.event] && !shownIds.has(String(e.id)));
  if (!events.length) return;
  const list = $('timeline');
  const marker = el('li', 'ev-earlier', 'Earlier — before this page opened');
  marker.setAttribute('role', 'separator');
  list.append(marker);
  for (const e of events.reverse()) {
    noteId(String(e.id));
    const who = e.server || (e.event === 'configReloaded' ? 'config' : 'tend');
    const li = timelineItem(e.event, e.data || {}, new Date(e.at), who);
    li.classList.add('earlier');
    li.dataset.eventId = String(e.id);
    list.append(li);
  }
  while (list.children.length > TIMELINE_MAX) list.lastChild.remove();
  $('timeline-empty').hidden = true;
}
$('timeline-clear').addEventListener('click', () => {
  $('timeline').replaceChildren();
  $('timeline-empty').hidden = false;
});

function onTimeline(kind, d, eventId) {
  if (kind === 'configReloaded') {
    // Rows come and go with the `servers` snapshot sent before it; this is the note of why.
    if (d && typeof d === 'object') addTimeline(kind, { ...d, id: 'config' }, eventId);
    return;
  }
  if (!d || typeof d !== 'object') return;
  // tend's own events (and alerts about no server) have no server id.
  if (typeof d.id !== 'string') {
    if (['tendStarted', 'tendStopping', 'stateWriteFailed', 'alert'].includes(kind)) addTimeline(kind, d, eventId);
    return;
  }
  addTimeline(kind, d, eventId);
  const r = rows.get(d.id);
  if (!r) return;
  if (kind === 'processDied') {
    r.died = { exitCode: d.exitCode, exitSignal: d.exitSignal, pid: d.pid, at: new Date() };
    announce(`${d.id} died${exitText(d.exitCode, d.exitSignal) ? ` (${exitText(d.exitCode, d.exitSignal)})` : ''}`);
    render(r);
  } else if (kind === 'processError') {
    announce(`${d.id} failed to start: ${d.error}`);
  }
}

// ---------- config reload ----------
const PLAN_LISTS = ['added', 'removed', 'restarted', 'updated', 'unchanged'];
const planIds = (plan, key) => (Array.isArray(plan[key]) ? plan[key] : []);

/** "added c; removed b; 2 unchanged": the timeline's one line for a reload. */
function planSummary(plan) {
  const parts = [];
  for (const key of PLAN_LISTS) {
    const ids = planIds(plan, key);
    if (!ids.length) continue;
    parts.push(key === 'unchanged' ? `${ids.length} unchanged` : `${key} ${ids.join(', ')}`);
  }
  return parts.join('; ') || 'no servers';
}

/** One line per non-empty list, each id with why it moved. */
function planLines(plan) {
  const why = plan.changes && typeof plan.changes === 'object' ? plan.changes : {};
  const lines = [];
  for (const key of PLAN_LISTS) {
    const ids = planIds(plan, key);
    if (ids.length) lines.push(`${key}: ${ids.map((id) => (why[id] ? `${id} (${why[id]})` : id)).join(', ')}`);
  }
  const kept = planIds(plan, 'needsTendRestart');
  if (kept.length) lines.push(`changed, but kept until tend restarts: ${kept.join(', ')}`);
  return lines;
}

function showReload(title, lines, error) {
  setText($('reload-title'), title);
  $('reload-lines').replaceChildren(...lines.map((line) => el('li', null, line)));
  $('reload-result').classList.toggle('error', error);
  $('reload-result').hidden = false;
}

async function reloadConfig() {
  const b = $('reload');
  if (b.disabled) return;
  b.disabled = true;
  setText(b, 'Reloading…');
  try {
    const plan = await api('POST', '/api/reload', {});
    showReload(`Reloaded ${plan.config}`, planLines(plan), false);
    announce(`Config reloaded: ${planSummary(plan)}`);
  } catch (err) {
    // An invalid config: the first line says nothing changed, each problem follows on its own.
    const [first, ...problems] = err.message.split('\n');
    showReload(`Reload failed: ${first}`, problems, true);
    announce(`Reload failed: ${first}`);
  } finally {
    b.disabled = false;
    setText(b, 'Reload config');
  }
}
$('reload').addEventListener('click', reloadConfig);
$('reload-dismiss').addEventListener('click', () => { $('reload-result').hidden = true; $('reload').focus(); });

// ---------- connection ----------
let source = null;
let conn = 'connecting';
let offlineTimer = 0;
let reconnectTimer = 0;
let backoff = 1000;

function setConn(state) {
  conn = state;
  const box = $('conn');
  box.dataset.state = state;
  setText($('conn-text'), signedOut ? 'signed out' : state);
  // The embedded snapshot is fresh while the first connection opens; data goes stale only
  // once a connection is lost.
  const stale = gotSnapshot && (state === 'reconnecting' || state === 'offline');
  document.body.classList.toggle('stale', stale);
  $('stale').hidden = !stale;
}

function parse(ev) {
  try { return JSON.parse(ev.data); } catch (_) { return null; }
}

function connect() {
  if (signedOut) return;
  const es = new EventSource('/api/events');
  source = es;
  es.addEventListener('open', () => {
    if (source !== es) return;
    // After a gap, fetch the list too: the snapshot or replay should cover it, but a restarted
    // tend numbers its events anew and may not know what this page missed.
    if (conn !== 'connecting') { resync(); fillGap(); }
    backoff = 1000;
    clearTimeout(offlineTimer);
    offlineTimer = 0;
    setConn('live');
  });
  es.addEventListener('error', () => {
    if (source !== es) return;
    if (conn !== 'offline') setConn('reconnecting');
    if (!offlineTimer) {
      offlineTimer = setTimeout(() => { offlineTimer = 0; if (conn !== 'live') setConn('offline'); },
        OFFLINE_AFTER_MS);
    }
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (an HTTP error such as 401 or 503): ask why, then try again later.
      es.close();
      source = null;
      resync();
      clearTimeout(reconnectTimer);
      reconnectTimer = setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    }
  });
  es.addEventListener('servers', (ev) => replaceAll(parse(ev), true));
  es.addEventListener('server', (ev) => { applyServer(parse(ev), true); counts(); });
  es.addEventListener('stats', (ev) => applyStats(parse(ev)));
  for (const kind of Object.keys(TIMELINE)) {
    es.addEventListener(kind, (ev) => onTimeline(kind, parse(ev), ev.lastEventId));
  }
}

async function resync() {
  const mark = ++seq;
  try {
    const list = await api('GET', '/api/servers');
    if (!gotSnapshot) { replaceAll(list); return; }
    // Apply only servers that no stream event touched while the request was out.
    for (const s of list) if (!((touched.get(s.id) || 0) > mark)) applyServer(s);
    counts();
  } catch (_) { /* a 401 switched the view; anything else: the next connect tells */ }
}

// ---------- log panel ----------
function openLogs(r) {
  if (openLog) closeLogs();
  const id = r.id;
  const lp = { r, lines: [], queue: [], pending: [], early: [], loaded: false, paused: false, query: '',
    stick: true, shown: 0, frame: 0 };
  const panel = el('section', 'logpanel');
  panel.setAttribute('aria-label', `Logs of ${id}`);
  const bar = el('div', 'logbar');
  const title = el('h3', null, `Logs — ${id}`);
  lp.search = el('input', 'logsearch');
  lp.search.type = 'search';
  lp.search.placeholder = 'Filter lines';
  lp.search.setAttribute('aria-label', `Filter log lines of ${id}`);
  lp.search.addEventListener('input', () => { lp.query = lp.search.value.toLowerCase(); refilter(lp); });
  lp.pause = button('Pause', 'small', () => togglePause(lp));
  lp.info = el('span', 'loginfo muted');
  const close = button('Close', 'small', () => closeLogs(true));
  close.setAttribute('aria-label', `Close logs of ${id}`);
  bar.append(title, lp.search, lp.pause, lp.info, close);
  lp.view = el('div', 'logview');
  lp.view.setAttribute('role', 'log');
  lp.view.setAttribute('aria-live', 'off'); // a busy log would drown a screen reader
  lp.view.tabIndex = 0;
  lp.view.addEventListener('scroll', () => {
    const v = lp.view;
    lp.stick = v.scrollHeight - v.scrollTop - v.clientHeight < 8;
  });
  panel.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && !(ev.target === lp.search && lp.search.value)) closeLogs(true);
  });
  panel.append(bar, lp.view);
  lp.panel = panel;
  r.e.logSlot.append(panel);
  r.e.logs.setAttribute('aria-expanded', 'true');
  r.e.logs.classList.add('on');
  openLog = lp;
  (r.redraw || render)(r);
  setText(lp.info, 'loading…');

  // Subscribe first and hold live lines until the backlog is in, so nothing falls in between.
  const feed = r.feed || serverFeed(id);
  lp.es = new EventSource(feed.stream);
  lp.es.addEventListener('log', (ev) => {
    const line = feed.live(parse(ev));
    if (line === null) return;
    if (lp.loaded) addLine(lp, line); else lp.early.push(line);
  });
  api('GET', feed.backlog).then((d) => {
    const backlog = feed.lines(d);
    // Drop live lines already in the backlog: the longest backlog tail that starts `early`.
    let k = Math.min(backlog.length, lp.early.length);
    while (k > 0 && !lp.early.slice(0, k).every((l, i) => l === backlog[backlog.length - k + i])) k--;
    lp.loaded = true;
    for (const l of backlog.concat(lp.early.slice(k))) addLine(lp, l);
    lp.early = [];
    info(lp);
  }).catch((err) => {
    lp.loaded = true;
    for (const l of lp.early) addLine(lp, l);
    setText(lp.info, `could not load: ${err.message}`);
  });
}

function closeLogs(restoreFocus) {
  const lp = openLog;
  if (!lp) return;
  openLog = null;
  lp.es.close();
  cancelAnimationFrame(lp.frame);
  const hadFocus = lp.panel.contains(document.activeElement);
  lp.panel.remove();
  lp.r.e.logs.setAttribute('aria-expanded', 'false');
  lp.r.e.logs.classList.remove('on');
  if (restoreFocus || hadFocus) lp.r.e.logs.focus();
  (lp.r.redraw || render)(lp.r);
}

function fillLine(lp, div, text) {
  const q = lp.query;
  const at = q ? text.toLowerCase().indexOf(q) : -1;
  div.hidden = !!q && at < 0;
  if (!div.hidden) lp.shown++;
  if (at < 0) { div.textContent = text; return; }
  const parts = [];
  let from = 0;
  const low = text.toLowerCase();
  for (let i = at; i >= 0; i = low.indexOf(q, from)) {
    parts.push(text.slice(from, i), el('mark', null, text.slice(i, i + q.length)));
    from = i + q.length;
  }
  parts.push(text.slice(from));
  div.replaceChildren(...parts);
}

// Lines are queued and drawn once per frame, so a chatty server costs one layout per frame.
function addLine(lp, text) {
  const q = lp.paused ? lp.pending : lp.queue;
  q.push(text);
  if (q.length > LOG_MAX) q.splice(0, q.length - LOG_MAX);
  if (!lp.frame) lp.frame = requestAnimationFrame(() => flushLines(lp));
}

function flushLines(lp) {
  lp.frame = 0;
  const batch = lp.queue;
  lp.queue = [];
  const frag = document.createDocumentFragment();
  for (const text of batch) {
    const div = el('div', 'line');
    fillLine(lp, div, text);
    frag.append(div);
    lp.lines.push(text);
  }
  lp.view.append(frag);
  while (lp.lines.length > LOG_MAX) {
    lp.lines.shift();
    if (!lp.view.firstChild.hidden) lp.shown--;
    lp.view.firstChild.remove();
  }
  if (lp.stick) lp.view.scrollTop = lp.view.scrollHeight;
  info(lp);
}

function refilter(lp) {
  let i = 0;
  lp.shown = 0;
  for (const div of lp.view.children) fillLine(lp, div, lp.lines[i++]);
  if (lp.stick) lp.view.scrollTop = lp.view.scrollHeight;
  info(lp);
}

function togglePause(lp) {
  lp.paused = !lp.paused;
  setText(lp.pause, lp.paused ? 'Resume' : 'Pause');
  if (lp.paused) {
    cancelAnimationFrame(lp.frame); // what arrived before the click is shown now, not later
    flushLines(lp);
  } else {
    lp.queue.push(...lp.pending.splice(0));
    lp.stick = true;
    flushLines(lp);
  }
}

function info(lp) {
  let text;
  if (lp.paused) text = `paused — ${lp.pending.length} new`;
  else if (lp.query) text = `${lp.shown} of ${lp.lines.length} lines`;
  else text = `${lp.lines.length} lines`;
  setText(lp.info, text);
}

/** Where one server's log panel reads: its own log, lines as they are. */
function serverFeed(id) {
  return {
    stream: `/api/events?logs=${encodeURIComponent(id)}`,
    backlog: `${serverPath(id)}/logs?lines=${LOG_INITIAL}`,
    live: (d) => (d && d.id === id && typeof d.line === 'string' ? d.line : null),
    lines: (d) => (d && Array.isArray(d.lines) ? d.lines : []),
  };
}

// ---------- groups, filter (issue 15) ----------
// Servers with a "group" are shown under a header row per group (first appearance in the
// config), with the group's counts, actions on the whole group and its merged log; the rest
// follow under "no group". A filter box narrows the rows by id, group or status and is kept in
// the URL (?filter=), so a filtered view can be bookmarked.
const groupHeads = new Map(); // group name ('' for no group) -> header object
const filterBox = $('filter');

function makeGroupHead(name) {
  const g = { name, tbody: el('tbody', 'grp'), busy: null, e: {} };
  const e = g.e;
  g.tbody.dataset.group = name;
  const tr = el('tr', 'grp-head');
  const td = el('td');
  td.colSpan = 10;
  e.title = el('span', 'gname', name || 'no group');
  e.counts = el('span', 'gcounts muted');
  td.append(e.title, e.counts);
  if (name) {
    e.start = button('Start', 'small', () => actGroup(g, 'start'));
    e.stop = button('Stop', 'small', () => actGroup(g, 'stop'));
    e.restart = button('Restart', 'small', () => actGroup(g, 'restart'));
    e.logs = button('Logs', 'small logs', () => {
      if (openLog && openLog.r === g) { closeLogs(); return; }
      g.feed = groupFeed(g); // the members as they are now
      openLogs(g);
    });
    e.logs.setAttribute('aria-expanded', 'false');
    for (const b of [e.start, e.stop, e.restart]) b.setAttribute('aria-label', `${b.textContent} group ${name}`);
    e.logs.setAttribute('aria-label', `Logs of group ${name}`);
    const actions = el('span', 'gactions');
    actions.append(e.start, e.stop, e.restart, e.logs);
    td.append(actions);
  }
  tr.append(td);
  e.extra = el('tr', 'extra');
  const xtd = el('td');
  xtd.colSpan = 10;
  e.msg = el('p', 'msg');
  e.logSlot = el('div', 'log-slot');
  xtd.append(e.msg, e.logSlot);
  e.extra.append(xtd);
  g.tbody.append(tr, e.extra);
  // The log panel code knows servers; a group is one too, as far as it is concerned.
  g.id = `group ${name}`;
  g.redraw = renderGroupHead;
  return g;
}

const membersOf = (name) => [...rows.values()].filter((r) => (r.s.group || '') === name);

function groupFeed(g) {
  const ids = membersOf(g.name).map((r) => r.id);
  const width = Math.max(0, ...ids.map((id) => id.length));
  const prefix = (d) => `${d.id.padEnd(width)} | ${d.line}`;
  return {
    stream: `/api/events?group=${encodeURIComponent(g.name)}`,
    backlog: `/api/logs?group=${encodeURIComponent(g.name)}&lines=${LOG_INITIAL}`,
    live: (d) => (d && ids.includes(d.id) && typeof d.line === 'string' ? prefix(d) : null),
    lines: (d) => (d && Array.isArray(d.lines) ? d.lines.map(prefix) : []),
  };
}

/** The tbodies in display order: each group's header then its members; then the rest. */
function groupLayout(list) {
  const order = [];
  const byGroup = new Map();
  for (const s of list) {
    const name = typeof s.group === 'string' ? s.group : '';
    if (!byGroup.has(name)) { byGroup.set(name, []); if (name) order.push(name); }
    byGroup.get(name).push(rows.get(s.id).tbody);
  }
  if (!order.length) {
    for (const g of groupHeads.values()) dropGroupHead(g);
    return byGroup.get('') || [];
  }
  if (byGroup.has('')) order.push('');
  for (const [name, g] of groupHeads) if (!byGroup.has(name)) dropGroupHead(g);
  const wanted = [];
  for (const name of order) {
    if (!groupHeads.has(name)) groupHeads.set(name, makeGroupHead(name));
    wanted.push(groupHeads.get(name).tbody, ...byGroup.get(name));
  }
  return wanted;
}

function dropGroupHead(g) {
  if (openLog && openLog.r === g) closeLogs();
  g.tbody.remove();
  groupHeads.delete(g.name);
}

function renderGroupHead(g) {
  const members = membersOf(g.name);
  const up = members.filter((r) => r.s.status === 'running').length;
  setText(g.e.counts, `${members.length} server${members.length === 1 ? '' : 's'} · ${up} running · ` +
    `${members.length - up} not running`);
  g.tbody.dataset.up = String(up);
  g.tbody.dataset.down = String(members.length - up);
  if (g.name) {
    g.e.start.disabled = !!g.busy || !members.some((r) => CAN_START(r.s.status));
    g.e.stop.disabled = !!g.busy || !members.some((r) => CAN_STOP(r.s.status));
    g.e.restart.disabled = !!g.busy || !members.some((r) => CAN_RESTART(r.s.status));
  }
  setText(g.e.msg, g.message ? g.message.text : '');
  g.e.msg.classList.toggle('error', !!(g.message && g.message.error));
  g.e.msg.hidden = !g.message;
  g.e.extra.hidden = g.e.msg.hidden && !(openLog && openLog.r === g);
}

/** Does server `s` match every word of the filter? `status:x`, `group:x` and `id:x` narrow a
 *  word to one field; a bare word matches a status exactly, or part of an id or group. */
function matchesFilter(s, words) {
  return words.every((w) => {
    const [field, value] = w.includes(':') ? w.split(/:(.*)/s) : ['', w];
    const id = s.id.toLowerCase();
    const group = (s.group || '').toLowerCase();
    if (field === 'status') return s.status === value;
    if (field === 'group') return group === value;
    if (field === 'id') return id.includes(value);
    return s.status === w || id.includes(w) || (!!group && group.includes(w));
  });
}

function refreshGroups() {
  const words = filterBox.value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const r of rows.values()) {
    const hide = !!r.s && !matchesFilter(r.s, words);
    if (r.tbody.hidden !== hide) r.tbody.hidden = hide;
    if (!hide) shown++;
  }
  for (const g of groupHeads.values()) {
    renderGroupHead(g);
    g.tbody.hidden = membersOf(g.name).every((r) => r.tbody.hidden);
  }
  $('filter-empty').hidden = shown > 0 || rows.size === 0;
}

function onFilterInput() {
  const url = new URL(location.href);
  const value = filterBox.value.trim();
  if (value) url.searchParams.set('filter', value); else url.searchParams.delete('filter');
  history.replaceState(history.state, '', url);
  refreshGroups();
}
filterBox.value = new URL(location.href).searchParams.get('filter') || '';
filterBox.addEventListener('input', onFilterInput);

function confirmAction(title, text, okLabel) {
  const heading = $('confirm-h');
  const ok = $('confirm').querySelector('button[value="kill"]');
  const was = [heading.textContent, ok.textContent];
  heading.textContent = title;
  ok.textContent = okLabel;
  return confirmKill(text).finally(() => { [heading.textContent, ok.textContent] = was; });
}

async function actGroup(g, action) {
  if (g.busy) return;
  const members = membersOf(g.name);
  if (action === 'stop' && members.length > 1) {
    const ok = await confirmAction(`Stop group ${g.name}?`,
      `This stops ${members.length} servers: ${members.map((r) => r.id).join(', ')}.`, 'Stop all');
    if (!ok) return;
  }
  const [doing, done] = VERBS[action];
  g.busy = action;
  g.message = { text: `${doing} group ${g.name}…` };
  renderGroupHead(g);
  const mark = ++seq;
  try {
    const list = await api('POST', `/api/servers?action=${action}&group=${encodeURIComponent(g.name)}`, {});
    for (const s of Array.isArray(list) ? list : []) {
      if (!((touched.get(s.id) || 0) > mark)) applyServer(s);
    }
    g.message = { text: `${done} group ${g.name}` };
  } catch (err) {
    g.message = { text: `${action[0].toUpperCase()}${action.slice(1)} group ${g.name} failed: ${err.message}`, error: true };
  }
  g.busy = null;
  announce(g.message.text);
  const shown = g.message;
  if (!shown.error) setTimeout(() => { if (g.message === shown) { g.message = null; renderGroupHead(g); } }, MESSAGE_MS);
  counts();
}

// ---------- start ----------
/** The server list tend embedded in the page, so the first paint shows the servers without
 *  waiting for the event stream or a request (null when tend could not give it in time). */
function embeddedSnapshot() {
  const block = $('snapshot');
  if (!block) return null;
  try { return JSON.parse(block.textContent); } catch (_) { return null; }
}

setConn('connecting');
const snapshot = embeddedSnapshot();
if (Array.isArray(snapshot)) replaceAll(snapshot);
resync();
connect();
loadHistory();
