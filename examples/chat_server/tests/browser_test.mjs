#!/usr/bin/env node
// Browser test of examples/chat_server: two chat_server processes on one Redis, the page in
// Debian's Chromium driven by playwright-core. Its last steps (before the SIGTERM one) are a
// Redis outage: two more chat_server processes on a throwaway redis-server of the test's own,
// which it SIGKILLs and restarts (never the Redis named by REDIS_HOST / REDIS_PORT).
//
//   REDIS_HOST=127.0.0.1 REDIS_PORT=6379 \
//     node browser_test.mjs --server /path/to/chat_server [--artifacts DIR] [--screenshots-to DIR]
//
// Needs /usr/bin/chromium (apt-get install -y chromium), redis-server on PATH and this
// directory's node_modules (npm ci). It never downloads a browser and never skips: anything
// missing is a failure.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const PRESENCE_TTL_MS = 3000;
const LISTEN_TIMEOUT_MS = 20000;
const WAIT_MS = 5000;                 // default bound of every wait
const NAVIGATION_MS = 30000;          // page loads (goto, reload): no latency claim, and slow when
                                      // CI compiles beside the test (a 5 s bound failed once)
const LATENCY_BUDGET_MS = 500;        // step 3: alice's click -> bob's badge
const HISTORY_COUNT = 30;             // step 4
const PAGE_SIZE = 20;
const OUTAGE_LATENCY_BUDGET_MS = 1000;  // Redis down: carol's click -> the message on dave's page
const OUTAGE_DETECT_MS = 5000;        // SIGKILL of Redis -> /health 503 "memory"
const RECOVERY_MS = 15000;            // redis-server restarted -> /health 200 "redis", nothing pending

// ------------------------------------------------------------------ arguments and environment

function usage() {
  return 'usage: node browser_test.mjs --server /path/to/chat_server [--artifacts DIR] [--screenshots-to DIR]\n' +
    '       (REDIS_HOST and REDIS_PORT in the environment: the Redis both servers share)';
}

function die(message) {
  process.stderr.write(`browser test: FAIL: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const out = { server: null, artifacts: null, screenshotsTo: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) die(`${a} needs a value\n${usage()}`);
      return v;
    };
    if (a === '--server') out.server = value();
    else if (a === '--artifacts') out.artifacts = value();
    else if (a === '--screenshots-to') out.screenshotsTo = value();
    else if (a === '-h' || a === '--help') { process.stdout.write(usage() + '\n'); process.exit(0); }
    else die(`unknown argument ${a}\n${usage()}`);
  }
  if (!out.server) die(`--server is required\n${usage()}`);
  return out;
}

const args = parseArgs(process.argv.slice(2));
const REDIS_HOST = process.env.REDIS_HOST;
const REDIS_PORT = process.env.REDIS_PORT;
if (!REDIS_HOST || !REDIS_PORT) {
  die('REDIS_HOST and REDIS_PORT must be set: the Redis server both chat_server processes share ' +
      '(e.g. a throwaway `redis-server --port 7400 --save "" --appendonly no`)');
}
if (!/^\d+$/.test(REDIS_PORT)) die(`REDIS_PORT is not a port number: ${REDIS_PORT}`);

const serverBin = path.resolve(args.server);
try {
  fs.accessSync(serverBin, fs.constants.X_OK);
} catch {
  die(`the server binary ${serverBin} does not exist or is not executable (build the chat_server example first)`);
}
try {
  fs.accessSync(CHROMIUM, fs.constants.X_OK);
} catch {
  die(`${CHROMIUM} is missing: install Debian's Chromium with \`apt-get install -y chromium\` ` +
      '(the test never downloads a browser)');
}

// The outage steps start (and SIGKILL) a redis-server of their own.
function onPath(cmd) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch { /* not here */ }
  }
  return null;
}
const REDIS_SERVER = onPath('redis-server');
if (!REDIS_SERVER) {
  die('redis-server is not on PATH: the outage steps start a throwaway redis-server of their own ' +
      'and kill it (never the one of REDIS_HOST / REDIS_PORT); install it (`apt-get install -y redis-server`)');
}

const pkgDir = path.join(HERE, 'node_modules', 'playwright-core');
if (!fs.existsSync(path.join(pkgDir, 'package.json'))) {
  die(`playwright-core is not installed: run \`npm ci\` in ${HERE}`);
}
{
  const want = JSON.parse(fs.readFileSync(path.join(HERE, 'package.json'), 'utf8')).dependencies['playwright-core'];
  const have = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version;
  if (want !== have) die(`node_modules has playwright-core ${have}, package.json pins ${want}: run \`npm ci\` in ${HERE}`);
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  die(`cannot load playwright-core (${e.message}): run \`npm ci\` in ${HERE}`);
}

const artifacts = path.resolve(args.artifacts || fs.mkdtempSync(path.join(os.tmpdir(), 'chat-browser-test-')));
fs.mkdirSync(artifacts, { recursive: true });
const prefix = `bt${process.pid}`;
const redisUrl = `redis://${REDIS_HOST}:${REDIS_PORT}`;
console.log(`browser test: server ${serverBin}`);
console.log(`browser test: redis ${redisUrl}, prefix ${prefix}, artifacts ${artifacts}`);

// ------------------------------------------------------------------ servers

const servers = [];

// `redis` and `prefix` default to the fixture's Redis and the test's prefix.
function startServer(label, { port = 0, redis = redisUrl, prefix: keyPrefix = prefix } = {}) {
  const argv = ['--port', String(port), '--redis', redis, '--presence-ttl-ms', String(PRESENCE_TTL_MS),
    '--prefix', keyPrefix];
  const srv = {
    label, argv, url: null, stdout: '', stderr: '', exit: null,
    child: spawn(serverBin, argv, { stdio: ['ignore', 'pipe', 'pipe'] }),
  };
  srv.exited = new Promise((resolve) => srv.child.on('exit', (code, signal) => {
    srv.exit = { code, signal };
    if (!srv.stopping) {
      srv.diedEarly = signal ? `killed by ${signal}` : `exit code ${code}`;
      console.log(`browser test: server ${label} died: ${srv.diedEarly} (not stopped by the test)`);
    }
    resolve(srv.exit);
  }));
  servers.push(srv);
  srv.child.stdout.setEncoding('utf8');
  srv.child.stderr.setEncoding('utf8');
  srv.child.stderr.on('data', (d) => { srv.stderr += d; });
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve(srv);
    };
    const timer = setTimeout(() => finish(new Error(
      `server ${label} printed no "listening on http://HOST:PORT/" line within ${LISTEN_TIMEOUT_MS / 1000} s\n` +
      `  command: ${serverBin} ${argv.join(' ')}\n${indent('stdout', srv.stdout)}${indent('stderr', srv.stderr)}`)),
    LISTEN_TIMEOUT_MS);
    srv.child.stdout.on('data', (d) => {
      srv.stdout += d;
      const m = /listening on (http:\/\/[^\s/]+)\/?/.exec(srv.stdout);
      if (m && !srv.url) { srv.url = m[1]; finish(); }
    });
    srv.child.on('error', (e) => finish(new Error(`server ${label} did not start: ${e.message}`)));
    srv.child.on('exit', (code, signal) => finish(new Error(
      `server ${label} exited (code ${code}, signal ${signal}) before listening\n` +
      `  command: ${serverBin} ${argv.join(' ')}\n${indent('stdout', srv.stdout)}${indent('stderr', srv.stderr)}`)));
  });
}

function indent(title, text) {
  if (!text.trim()) return `  ${title}: (empty)\n`;
  return `  ${title}:\n` + text.trimEnd().split('\n').slice(-60).map((l) => '    ' + l).join('\n') + '\n';
}

async function stopServer(srv, timeoutMs = 5000) {
  if (srv.exit) return srv.exit;
  srv.stopping = true;
  srv.child.kill('SIGTERM');
  const t = setTimeout(() => { if (!srv.exit) srv.child.kill('SIGKILL'); }, timeoutMs);
  const exit = await srv.exited;
  clearTimeout(t);
  return exit;
}

function saveServerLogs() {
  for (const srv of servers) {
    try {
      fs.writeFileSync(path.join(artifacts, `server-${srv.label}.log`),
        `# ${serverBin} ${srv.argv.join(' ')}\n# exit: ${JSON.stringify(srv.exit)}\n` +
        `# ---- stdout\n${srv.stdout}\n# ---- stderr\n${srv.stderr}`);
    } catch { /* best effort */ }
  }
}

// ------------------------------------------------------------------ the outage steps' own redis-server

// Every redis-server the test started (the outage steps'), and the directory of their data.
// The fixture's Redis (REDIS_HOST / REDIS_PORT) is never started, stopped or killed here.
const redises = [];
let redisDir = null;

// A free loopback port (free now: the redis-server binds it right after).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A redis-server on 127.0.0.1:`port` whose data survives a restart (AOF, fsync at every write,
// in `dir`); resolves once it answers PING.
async function startRedis(label, port, dir, timeoutMs = 5000) {
  const argv = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--daemonize', 'no', '--logfile', ''];
  const r = {
    label, argv, port, out: '', exit: null,
    child: spawn(REDIS_SERVER, argv, { stdio: ['ignore', 'pipe', 'pipe'] }),
  };
  redises.push(r);
  r.exited = new Promise((resolve) => {
    r.child.on('exit', (code, signal) => { r.exit = { code, signal }; resolve(r.exit); });
    r.child.on('error', (e) => { r.exit = { error: e.message }; resolve(r.exit); });
  });
  for (const s of [r.child.stdout, r.child.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d) => { r.out += d; });
  }
  const t0 = Date.now();
  for (;;) {
    if (r.exit) {
      throw new StepFailure(`redis-server ${label} exited before answering PING (${JSON.stringify(r.exit)})\n` +
        `  command: ${REDIS_SERVER} ${argv.map((a) => a === '' ? "''" : a).join(' ')}\n${indent('output', r.out)}`);
    }
    try {
      await pingRedis('127.0.0.1', port, 500);
      return r;
    } catch { /* not yet */ }
    if (Date.now() - t0 > timeoutMs) {
      throw new StepFailure(`redis-server ${label} on 127.0.0.1:${port} does not answer PING after ${timeoutMs} ms\n${indent('output', r.out)}`);
    }
    await sleep(50);
  }
}

async function killRedis(r, signal = 'SIGKILL') {
  if (r.exit) return r.exit;
  r.child.kill(signal);
  return r.exited;
}

async function stopRedises() {
  await Promise.all(redises.map((r) => killRedis(r)));
  for (const r of redises) {
    try {
      fs.writeFileSync(path.join(artifacts, `${r.label}.log`),
        `# ${REDIS_SERVER} ${r.argv.map((a) => a === '' ? "''" : a).join(' ')}\n# exit: ${JSON.stringify(r.exit)}\n${r.out}`);
    } catch { /* best effort */ }
  }
  removeRedisDir();
}

function removeRedisDir() {
  if (!redisDir) return;
  try { fs.rmSync(redisDir, { recursive: true, force: true }); } catch { /* best effort */ }
  redisDir = null;
}

// ------------------------------------------------------------------ cleanup, also on signals

let browser = null;
const users = new Map();              // label -> {name, context, page, frames: [], closed}
let cleaning = null;
let interrupted = null;               // the signal that stopped the run

function cleanup() {
  if (cleaning) return cleaning;
  cleaning = (async () => {
    for (const u of users.values()) saveFrames(u);
    if (browser) {
      await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
      browser = null;
    }
    await Promise.all(servers.map((s) => stopServer(s, 3000)));
    saveServerLogs();
    await stopRedises();
  })();
  return cleaning;
}

process.on('exit', () => {
  for (const s of [...servers, ...redises]) if (!s.exit) { try { s.child.kill('SIGKILL'); } catch { /* gone */ } }
  removeRedisDir();
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = sig;
    process.stderr.write(`browser test: ${sig}: stopping the servers and the browser\n`);
    cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

// ------------------------------------------------------------------ browser helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pageErrors = [];

async function newUser(label, name, srv) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  // events: the parsed frames the page received, [{n, m}] (n counts from 1; see waitEvent).
  const u = { label, name, srv, context, page, frames: [], events: [], eventSeq: 0, closed: false };
  const t0 = Date.now();
  const log = (line) => {
    u.frames.push(`${String(Date.now() - t0).padStart(7)} ${line}`);
    if (u.frames.length > 20000) u.frames.splice(0, 5000);
  };
  page.on('websocket', (ws) => {
    log(`== open ${ws.url()}`);
    ws.on('framesent', (f) => log(`>> ${f.payload}`));
    ws.on('framereceived', (f) => {
      log(`<< ${f.payload}`);
      let m = null;
      try { m = JSON.parse(f.payload); } catch { /* not JSON: in the log only */ }
      if (m && typeof m === 'object') {
        u.events.push({ n: ++u.eventSeq, m });
        if (u.events.length > 20000) u.events.splice(0, 5000);
      }
    });
    ws.on('socketerror', (e) => log(`== socket error ${e}`));
    ws.on('close', () => log('== close'));
  });
  page.on('pageerror', (e) => { pageErrors.push(`${label}: ${e.message}`); log(`!! page error ${e.message}`); });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') log(`!! console.${m.type()} ${m.text()}`); });
  page.setDefaultTimeout(WAIT_MS);
  page.setDefaultNavigationTimeout(NAVIGATION_MS);
  users.set(label, u);
  await page.goto(srv.url + '/');
  return u;
}

function saveFrames(u) {
  try { fs.writeFileSync(path.join(artifacts, `ws-${u.label}.log`), u.frames.join('\n') + '\n'); } catch { /* best effort */ }
}

class StepFailure extends Error {}

// Waits until `fn(arg)` is truthy in the page; on timeout, fails with `what` and the page's
// state as `describe(arg)` sees it.
async function until(u, what, fn, arg, { timeout = WAIT_MS, describe } = {}) {
  try {
    return await u.page.waitForFunction(fn, arg, { timeout, polling: 20 });
  } catch (e) {
    let state = '';
    if (describe) {
      try { state = `; ${u.label} sees: ${await u.page.evaluate(describe, arg)}`; } catch { /* page gone */ }
    }
    throw new StepFailure(`${u.label}: ${what} (waited ${timeout} ms)${state}` +
      (e.name === 'TimeoutError' ? '' : ` [${e.message.split('\n')[0]}]`));
  }
}

// In-page describers for failure messages.
// (Functions given to the page are sent as source: plain arrow functions, never bound ones.)
const listUsers = ([sel]) => JSON.stringify(Array.from(document.querySelectorAll(sel + ' > li')).map((l) => l.getAttribute('data-user')));
const listRooms = ([sel]) => `${sel}=${JSON.stringify(Array.from(document.querySelectorAll(sel + ' > li')).map((l) => l.getAttribute('data-room')))}` +
  ` #error=${JSON.stringify(document.getElementById('error').textContent)}`;
const describeMessages = () => JSON.stringify({
  title: document.getElementById('room-title').textContent,
  status: document.getElementById('status').textContent,
  error: document.getElementById('error').textContent,
  loadOlder: !document.getElementById('load-older').hasAttribute('hidden'),
  texts: Array.from(document.querySelectorAll('#messages > li.msg')).map((l) => l.querySelector('.text')?.textContent),
});

const hasUser = ([sel, name]) => Array.from(document.querySelectorAll(sel + ' > li')).some((l) => l.getAttribute('data-user') === name);
const hasRoom = ([sel, id]) => Array.from(document.querySelectorAll(sel + ' > li')).some((l) => l.getAttribute('data-room') === id);
const lacksRoom = ([sel, id]) => !Array.from(document.querySelectorAll(sel + ' > li')).some((l) => l.getAttribute('data-room') === id);

function roomLi(u, sel, id) {
  return u.page.locator(`${sel} > li[data-room="${id}"]`);
}

async function texts(u) {
  return u.page.evaluate(() => Array.from(document.querySelectorAll('#messages > li.msg')).map((l) => ({
    id: l.getAttribute('data-id'),
    from: l.querySelector('.from')?.textContent,
    text: l.querySelector('.text')?.textContent,
  })));
}

// Waits until the page has received an event, after the `after`-th (u.eventSeq when the action
// began), for which `pred(event)` holds; returns it.
async function waitEvent(u, what, pred, { after = 0, timeout = WAIT_MS } = {}) {
  const t0 = Date.now();
  for (;;) {
    const hit = u.events.find((e) => e.n > after && pred(e.m));
    if (hit) return hit.m;
    if (Date.now() - t0 >= timeout) {
      const seen = u.events.filter((e) => e.n > after).map((e) => e.m.ev + (e.m.code ? `/${e.m.code}` : ''));
      throw new StepFailure(`${u.label}: ${what} (waited ${timeout} ms); events received meanwhile: ${JSON.stringify(seen.slice(-30))}`);
    }
    await sleep(20);
  }
}

async function login(u) {
  await u.page.fill('#login-name', u.name);
  await u.page.click('#login-btn');
  await until(u, `"${u.name}" in #me after login`,
    (name) => document.getElementById('me').textContent === name, u.name,
    { describe: () => `#me=${JSON.stringify(document.getElementById('me').textContent)} #error=${JSON.stringify(document.getElementById('error').textContent)} #status=${document.getElementById('status').textContent}` });
  await until(u, 'the login form hidden after welcome',
    () => document.getElementById('login-name').offsetParent === null, null);
  await until(u, '#status "connected"', () => document.getElementById('status').textContent === 'connected', null,
    { describe: () => document.getElementById('status').textContent });
}

async function openRoom(u, id, title) {
  await roomLi(u, '#rooms-mine', id).click();
  await until(u, `room "${id}" open (#room-title "${title}")`,
    ([t]) => document.getElementById('room-title').textContent === t && !document.getElementById('composer').disabled,
    [title], { describe: describeMessages });
}

// Sends `text` in the open room and waits for it to come back in the sender's #messages.
async function sendMessage(u, text, how = 'enter') {
  await u.page.fill('#composer', text);
  if (how === 'enter') await u.page.press('#composer', 'Enter');
  else await u.page.click('#send-btn');
  await until(u, `own message ${JSON.stringify(text)} shown in #messages`,
    (t) => {
      const items = document.querySelectorAll('#messages > li.msg');
      const last = items[items.length - 1];
      return last && last.querySelector('.text').textContent === t;
    }, text, { describe: describeMessages });
}

// ------------------------------------------------------------------ steps

const results = [];

async function step(title, fn) {
  const n = results.length + 1;
  const t0 = performance.now();
  try {
    const detail = await fn();
    const ms = Math.round(performance.now() - t0);
    results.push({ n, title, ms });
    console.log(`step ${n}: ${title}: ok in ${ms} ms${detail ? ` (${detail})` : ''}`);
  } catch (e) {
    const ms = Math.round(performance.now() - t0);
    e.stepLine = `step ${n}: ${title}: FAILED after ${ms} ms`;
    throw e;
  }
}

async function screenshot(u, file) {
  const p = path.join(artifacts, file);
  await u.page.screenshot({ path: p });
  return p;
}

// PING the Redis the servers are given: without it they would each serve from memory, alone.
function pingRedis(host, port, timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port: Number(port) });
    let got = '';
    const fail = (why) => { sock.destroy(); reject(new StepFailure(`Redis at ${host}:${port} does not answer PING (${why}): REDIS_HOST / REDIS_PORT must name a running redis-server`)); };
    const timer = setTimeout(() => fail('timeout'), timeoutMs);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      got += d;
      if (got.includes('\r\n')) {
        clearTimeout(timer);
        sock.end();
        if (got.startsWith('+PONG')) resolve(); else fail(`answer ${JSON.stringify(got.trim())}`);
      }
    });
    sock.on('error', (e) => { clearTimeout(timer); fail(e.message); });
  });
}

// GET /health: {status, mode (of the JSON), text}.
async function getHealth(srv) {
  const res = await fetch(srv.url + '/health', { signal: AbortSignal.timeout(2000) });
  const text = (await res.text()).trim();
  let body = null;
  try { body = JSON.parse(text); } catch { /* shown as text */ }
  return { status: res.status, mode: body && body.mode, text };
}

// GET /metrics: the rediskit_chat_messages_* gauges, {sent, queued, stored_late, pending, dropped}.
async function messageMetrics(srv) {
  const res = await fetch(srv.url + '/metrics', { signal: AbortSignal.timeout(2000) });
  const text = await res.text();
  const out = {};
  for (const m of text.matchAll(/^rediskit_chat_messages_(\w+)(?:\{[^}]*\})? (\S+)$/gm)) out[m[1]] = Number(m[2]);
  for (const k of ['queued', 'stored_late', 'pending', 'dropped']) {
    if (!Number.isFinite(out[k])) throw new StepFailure(`server ${srv.label}: /metrics (${res.status}) has no rediskit_chat_messages_${k}`);
  }
  return out;
}

// Polls /health and /metrics of `srvs` every 100 ms until `check(health, metrics, srv)` returns null
// for each (else it returns what is wrong); returns the time it took. Fails after `timeout` ms
// with what each server still showed.
async function pollServers(what, srvs, check, timeout) {
  const t0 = performance.now();
  for (;;) {
    const wrong = await Promise.all(srvs.map(async (srv) => {
      if (srv.exit) return `${srv.label}: the server is gone (${JSON.stringify(srv.exit)})`;
      try {
        const h = await getHealth(srv);
        const m = await messageMetrics(srv);
        const why = check(h, m, srv);
        return why && `${srv.label}: ${why} (/health ${h.status} ${h.text}; rediskit_chat_messages_* ${JSON.stringify(m)})`;
      } catch (e) {
        return `${srv.label}: ${e.message}`;
      }
    }));
    if (wrong.every((w) => !w)) return Math.round(performance.now() - t0);
    if (performance.now() - t0 > timeout) {
      throw new StepFailure(`${what}: still not so after ${timeout} ms:\n  ${wrong.filter(Boolean).join('\n  ')}`);
    }
    await sleep(100);
  }
}

const onRedis = (h) => (h.status === 200 && h.mode === 'redis' ? null : 'expected /health 200 with "mode":"redis"');
const onMemory = (h) => (h.status === 503 && h.mode === 'memory' ? null : 'expected /health 503 with "mode":"memory"');

async function main() {
  await pingRedis(REDIS_HOST, REDIS_PORT);
  // Two processes on one Redis, same prefix: one service.
  const [A, B] = await Promise.all([startServer('A'), startServer('B')]);
  console.log(`browser test: server A ${A.url}, server B ${B.url}`);
  for (const srv of [A, B]) {
    const page = await fetch(srv.url + '/');
    const body = await page.text();
    if (page.status !== 200 || !body.includes('id="login-name"')) {
      throw new StepFailure(`server ${srv.label}: GET / answered ${page.status} without the page (no id="login-name")`);
    }
    const served = await (await fetch(srv.url + '/app.js')).text();
    let local = null;
    try { local = fs.readFileSync(path.join(HERE, '..', 'static', 'app.js'), 'utf8'); } catch { /* not in the source tree */ }
    if (local !== null && served !== local) {
      console.log(`browser test: note: server ${srv.label} serves an app.js that differs from examples/chat_server/static/app.js (--static?)`);
    }
    const health = await fetch(srv.url + '/health');
    const h = await health.text();
    console.log(`browser test: server ${srv.label} /health ${health.status} ${h.trim()}`);
  }

  // SIGINT and SIGTERM are this script's (cleanup() closes the browser): playwright's own handlers
  // would exit at once, before the servers and the outage's redis-server are stopped.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'],
    handleSIGINT: false, handleSIGTERM: false });
  console.log(`browser test: Chromium ${browser.version()}, playwright-core ${JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version}`);

  let alice, bob, helene;

  await step('alice (A) and bob (B) log in and see each other online', async () => {
    [alice, bob] = await Promise.all([newUser('alice', 'alice', A), newUser('bob', 'bob', B)]);
    await Promise.all([login(alice), login(bob)]);
    for (const [u, other] of [[alice, bob], [bob, alice]]) {
      for (const name of [u.name, other.name]) {
        await until(u, `"${name}" in #online-list`, hasUser, ['#online-list', name], { describe: listUsers });
      }
    }
  });

  await step('alice creates room "dev"; bob sees it and joins', async () => {
    await alice.page.fill('#room-new-id', 'dev');
    await alice.page.fill('#room-new-name', 'Development');
    await alice.page.click('#room-create-btn');
    await until(alice, 'room "dev" in #rooms-mine after create_room', hasRoom, ['#rooms-mine', 'dev'],
      { describe: listRooms });
    await until(alice, 'room "dev" not in #rooms-all once created', lacksRoom, ['#rooms-all', 'dev']);
    await until(bob, 'room "dev" in #rooms-all (room_created from process A)', hasRoom, ['#rooms-all', 'dev'],
      { describe: listRooms });
    await roomLi(bob, '#rooms-all', 'dev').locator('button.join').click();
    await until(bob, 'room "dev" in #rooms-mine after join', hasRoom, ['#rooms-mine', 'dev'],
      { describe: listRooms });
    await until(bob, 'room "dev" gone from #rooms-all after join', lacksRoom, ['#rooms-all', 'dev']);
  });

  let latency = null;
  const firstText = 'hello from alice';
  await step(`alice sends a message in dev; bob's badge becomes 1 in < ${LATENCY_BUDGET_MS} ms; bob opens dev`, async () => {
    await openRoom(alice, 'dev', 'Development');
    const badge = (u) => u.page.evaluate(() => {
      const b = document.querySelector('#rooms-mine > li[data-room="dev"] .badge');
      return b ? { text: b.textContent, hidden: b.hasAttribute('hidden') } : null;
    });
    const before = await badge(bob);
    if (!before || before.text !== '' || !before.hidden) {
      throw new StepFailure(`bob: dev's badge should be empty and hidden before alice's message, is ${JSON.stringify(before)}`);
    }
    // Both timestamps are taken in the pages (one machine, one clock): alice's click on #send-btn
    // and the mutation that makes bob's badge read "1".
    await bob.page.evaluate(() => {
      window.__badgeAt = null;
      const check = () => {
        const b = document.querySelector('#rooms-mine > li[data-room="dev"] .badge');
        if (window.__badgeAt === null && b && b.textContent === '1' && !b.hasAttribute('hidden')) window.__badgeAt = Date.now();
      };
      new MutationObserver(check).observe(document.getElementById('rooms-mine'),
        { subtree: true, childList: true, characterData: true, attributes: true });
    });
    await alice.page.fill('#composer', firstText);
    await alice.page.evaluate(() => {
      window.__clickAt = null;
      document.getElementById('send-btn').addEventListener('click', () => { window.__clickAt = Date.now(); }, { capture: true, once: true });
    });
    const tNode = performance.now();
    await alice.page.click('#send-btn');
    await until(bob, 'dev\'s badge in #rooms-mine reads "1" (dev not open)',
      () => window.__badgeAt !== null, null,
      { describe: () => JSON.stringify(Array.from(document.querySelectorAll('#rooms-mine > li')).map((l) => [l.getAttribute('data-room'), l.querySelector('.badge')?.textContent, l.querySelector('.badge')?.hasAttribute('hidden')])) });
    const nodeMs = Math.round(performance.now() - tNode);
    const clickAt = await alice.page.evaluate(() => window.__clickAt);
    const badgeAt = await bob.page.evaluate(() => window.__badgeAt);
    if (clickAt === null) throw new StepFailure('alice: the click on #send-btn was not seen by the page');
    latency = badgeAt - clickAt;
    if (latency >= LATENCY_BUDGET_MS) {
      throw new StepFailure(`alice's click (process A) to bob's badge (process B) took ${latency} ms, the budget is ${LATENCY_BUDGET_MS} ms`);
    }
    await until(alice, `own message "${firstText}" in #messages`,
      (t) => Array.from(document.querySelectorAll('#messages > li.msg .text')).some((x) => x.textContent === t), firstText,
      { describe: describeMessages });

    await openRoom(bob, 'dev', 'Development');
    await until(bob, `alice's message "${firstText}" in #messages after opening dev`,
      (t) => Array.from(document.querySelectorAll('#messages > li.msg')).some((l) =>
        l.querySelector('.text')?.textContent === t && l.querySelector('.from')?.textContent === 'alice'), firstText,
      { describe: describeMessages });
    await until(bob, 'dev\'s badge empty and hidden once dev is open',
      () => {
        const b = document.querySelector('#rooms-mine > li[data-room="dev"] .badge');
        return b && b.textContent === '' && b.hasAttribute('hidden');
      }, null);
    return `click to badge ${latency} ms in the pages, ${nodeMs} ms seen from the test`;
  });

  const numbered = Array.from({ length: HISTORY_COUNT }, (_, i) => `message ${String(i + 1).padStart(2, '0')}`);
  await step(`history: ${HISTORY_COUNT} more messages; bob reloads, sees the newest ${PAGE_SIZE}, loads the older ones`, async () => {
    for (const text of numbered) await sendMessage(alice, text, 'enter');
    // Bob has dev open: they all arrive live. A reload logs him back in with the stored token.
    await until(bob, `the last numbered message live in #messages`,
      (t) => Array.from(document.querySelectorAll('#messages > li.msg .text')).some((x) => x.textContent === t),
      numbered[numbered.length - 1], { describe: describeMessages });
    const token = await bob.page.evaluate(() => sessionStorage.getItem('rediskit-chat.token'));
    if (!token) throw new StepFailure('bob: no session token in sessionStorage after welcome');
    await bob.page.reload();
    await until(bob, '"bob" in #me after the reload (login by the stored token)',
      () => document.getElementById('me').textContent === 'bob', null,
      { describe: () => `#me=${JSON.stringify(document.getElementById('me').textContent)} #status=${document.getElementById('status').textContent} #error=${document.getElementById('error').textContent}` });
    await until(bob, 'room "dev" in #rooms-mine after the reload', hasRoom, ['#rooms-mine', 'dev']);
    await roomLi(bob, '#rooms-mine', 'dev').click();
    const expectNewest = numbered.slice(-PAGE_SIZE);
    await until(bob, `the newest ${PAGE_SIZE} messages in #messages`,
      (want) => {
        const got = Array.from(document.querySelectorAll('#messages > li.msg .text')).map((x) => x.textContent);
        return got.length === want.length && got.every((t, i) => t === want[i]);
      }, expectNewest, { describe: describeMessages });
    await sleep(200);   // nothing else may arrive
    const first = await texts(bob);
    if (first.length !== PAGE_SIZE) throw new StepFailure(`bob: ${first.length} messages shown after opening dev, expected ${PAGE_SIZE}`);
    if (await bob.page.locator('#load-older').getAttribute('hidden') !== null) {
      throw new StepFailure('bob: #load-older is hidden although dev has older messages');
    }
    let clicks = 0;
    while (await bob.page.locator('#load-older').getAttribute('hidden') === null) {
      if (++clicks > 5) throw new StepFailure(`bob: #load-older still visible after ${clicks - 1} clicks: ${JSON.stringify((await texts(bob)).map((x) => x.text))}`);
      const count = (await texts(bob)).length;
      await bob.page.click('#load-older');
      await until(bob, `#load-older click ${clicks}: older messages prepended or #load-older hidden`,
        (n) => document.querySelectorAll('#messages > li.msg').length > n || document.getElementById('load-older').hasAttribute('hidden'),
        count, { describe: describeMessages });
      await until(bob, `#load-older click ${clicks}: the history answer handled`,
        () => !document.getElementById('load-older').disabled || document.getElementById('load-older').hasAttribute('hidden'), null);
    }
    const all = await texts(bob);
    const want = [firstText, ...numbered];
    const got = all.map((x) => x.text);
    if (got.length !== want.length || got.some((t, i) => t !== want[i])) {
      throw new StepFailure(`bob: after loading the older messages #messages is\n  ${JSON.stringify(got)}\nexpected\n  ${JSON.stringify(want)}`);
    }
    const ids = all.map((x) => x.id);
    if (new Set(ids).size !== ids.length || ids.some((id) => !id)) {
      throw new StepFailure(`bob: message ids not unique or missing: ${JSON.stringify(ids)}`);
    }
    const from = new Set(all.map((x) => x.from));
    if (from.size !== 1 || !from.has('alice')) throw new StepFailure(`bob: .from of the messages is ${JSON.stringify([...from])}, expected only "alice"`);
    return `${all.length} messages in order after ${clicks} click(s) on #load-older`;
  });

  await step('search: "Hélène" logs in (A); bob types "hel" and finds her', async () => {
    helene = await newUser('helene', 'Hélène', A);
    await login(helene);
    await bob.page.click('#search');
    await bob.page.locator('#search').pressSequentially('hel', { delay: 40 });
    const t0 = performance.now();
    await until(bob, '"Hélène" in #search-results for "hel"', hasUser, ['#search-results', 'Hélène'],
      { describe: listUsers });
    return `results ${Math.round(performance.now() - t0)} ms after the last key`;
  });

  const lastText = 'on it, @alice: the build is green again';
  await step('typing line, @bob mention notification, and no HTML from message text', async () => {
    const before = Number(await bob.page.textContent('#notif-count'));
    if (!Number.isFinite(before)) throw new StepFailure(`bob: #notif-count is not a number: ${await bob.page.textContent('#notif-count')}`);
    await alice.page.click('#composer');
    await alice.page.locator('#composer').pressSequentially('@bob look', { delay: 20 });
    await until(bob, '#typing reads "alice is typing…"',
      () => document.getElementById('typing').textContent === 'alice is typing…', null,
      { describe: () => JSON.stringify(document.getElementById('typing').textContent) });
    const text = '@bob look <img src=x onerror="window.__xss=1"><b>bold?</b> & done';
    await alice.page.fill('#composer', text);
    await alice.page.click('#send-btn');
    await until(bob, 'the mention message shown as text in #messages',
      (t) => Array.from(document.querySelectorAll('#messages > li.msg .text')).some((x) => x.textContent === t), text,
      { describe: describeMessages });
    await until(bob, `#notif-count >= ${before + 1} after the mention`,
      (n) => Number(document.getElementById('notif-count').textContent) >= n, before + 1,
      { describe: () => `#notif-count=${document.getElementById('notif-count').textContent}` });
    await until(bob, 'a li.notification in #notifications', () => document.querySelectorAll('#notifications > li.notification').length >= 1, null);
    await until(bob, '#typing cleared after alice\'s message', () => document.getElementById('typing').textContent === '', null,
      { timeout: 4000, describe: () => JSON.stringify(document.getElementById('typing').textContent) });
    // bob answers: a conversation on both screenshots, and a mention the other way.
    await sendMessage(bob, lastText, 'enter');
    await until(alice, 'bob\'s answer in #messages',
      (t) => Array.from(document.querySelectorAll('#messages > li.msg')).some((l) =>
        l.querySelector('.text')?.textContent === t && l.querySelector('.from')?.textContent === 'bob'),
      lastText, { describe: describeMessages });
    await until(alice, '#notif-count >= 1 after bob\'s mention', () => Number(document.getElementById('notif-count').textContent) >= 1, null,
      { describe: () => `#notif-count=${document.getElementById('notif-count').textContent}` });
    for (const u of [alice, bob]) {
      const bad = await u.page.evaluate(() => ({
        xss: window.__xss !== undefined,
        elements: document.querySelectorAll('#messages img, #messages b, #notifications img, #notifications b').length,
      }));
      if (bad.xss || bad.elements) throw new StepFailure(`${u.label}: message text became HTML (${JSON.stringify(bad)})`);
    }
    return `#notif-count ${await bob.page.textContent('#notif-count')}`;
  });

  // Something to see: dev with messages on both sides, bob's search and notifications.
  for (const u of [alice, bob]) {
    await u.page.evaluate(() => { const s = document.getElementById('scroller'); s.scrollTop = s.scrollHeight; });
  }
  const shots = [await screenshot(alice, 'alice.png'), await screenshot(bob, 'bob.png')];
  if (args.screenshotsTo) {
    fs.mkdirSync(args.screenshotsTo, { recursive: true });
    for (const s of shots) fs.copyFileSync(s, path.join(args.screenshotsTo, path.basename(s)));
    console.log(`browser test: screenshots copied to ${path.resolve(args.screenshotsTo)}`);
  }

  await step(`bob closes his page; alice sees him go offline within ${PRESENCE_TTL_MS} ms`, async () => {
    await until(alice, '"bob" in #online-list before he leaves', hasUser, ['#online-list', 'bob'], { describe: listUsers });
    await alice.page.evaluate(() => {
      window.__bobGoneAt = null;
      const check = () => {
        const gone = !Array.from(document.querySelectorAll('#online-list > li')).some((l) => l.getAttribute('data-user') === 'bob');
        if (gone && window.__bobGoneAt === null) window.__bobGoneAt = Date.now();
      };
      new MutationObserver(check).observe(document.getElementById('online-list'), { subtree: true, childList: true, attributes: true });
    });
    const closedAt = Date.now();
    await bob.page.close();
    bob.closed = true;
    await until(alice, `"bob" gone from #online-list within ${PRESENCE_TTL_MS} ms`,
      () => window.__bobGoneAt !== null, ['#online-list'], { timeout: PRESENCE_TTL_MS, describe: listUsers });
    const ms = (await alice.page.evaluate(() => window.__bobGoneAt)) - closedAt;
    await until(alice, '"bob" not online in dev\'s #members', () => {
      const li = Array.from(document.querySelectorAll('#members > li')).find((l) => l.getAttribute('data-user') === 'bob');
      return li && !li.classList.contains('online');
    }, null, { describe: () => JSON.stringify(Array.from(document.querySelectorAll('#members > li')).map((l) => [l.getAttribute('data-user'), l.className])) });
    return `offline after ${ms} ms`;
  });

  await step('server A restarts on its port; alice and Hélène reconnect with their tokens', async () => {
    const port = new URL(A.url).port;
    // SIGTERM: close frames to the sockets (the pages start reconnecting), then exit 0. A server
    // still running after 5 s is killed so that the reconnect is checked anyway; the step fails
    // at its end.
    const exit = await stopServer(A);
    for (const u of [alice, helene]) {
      await until(u, '#status "reconnecting…" once server A is gone',
        () => document.getElementById('status').textContent === 'reconnecting…', null,
        { describe: () => document.getElementById('status').textContent });
    }
    const t0 = performance.now();
    const A2 = await startServer('A2', { port });
    for (const u of [alice, helene]) {
      await until(u, '#status "connected" after the restart', () => document.getElementById('status').textContent === 'connected', null,
        { timeout: 15000, describe: () => document.getElementById('status').textContent });
      await until(u, `"${u.name}" in #me after the reconnect`, (n) => document.getElementById('me').textContent === n, u.name);
    }
    await until(alice, 'dev reopened with its messages after the reconnect',
      (t) => document.getElementById('room-title').textContent === 'Development' &&
        Array.from(document.querySelectorAll('#messages > li.msg .text')).some((x) => x.textContent === t),
      lastText, { describe: describeMessages });
    await sendMessage(alice, 'back again', 'click');
    if (exit.code !== 0) {
      throw new StepFailure(`server A did not exit cleanly on SIGTERM: ${exit.signal === 'SIGKILL' ? 'still running 5 s after SIGTERM, killed' : JSON.stringify(exit)} ` +
        '(PROTOCOL.md: SIGTERM closes the sockets and exits 0). The pages reconnected to the restarted server fine.');
    }
    return `reconnected ${Math.round(performance.now() - t0)} ms after the restart began (${A2.url})`;
  });

  await outageSteps();

  await step('every server stops on SIGTERM with exit code 0', async () => {
    const live = servers.filter((s) => !s.exit);
    const exits = await Promise.all(live.map((s) => stopServer(s, 5000)));
    const bad = live.map((s, i) => [s.label, exits[i]]).filter(([, e]) => e.code !== 0);
    if (bad.length) {
      throw new StepFailure('not a clean exit (PROTOCOL.md: SIGTERM closes the sockets and exits 0): ' +
        bad.map(([l, e]) => `${l} ${e.signal === 'SIGKILL' ? 'still running 5 s after SIGTERM, killed' : JSON.stringify(e)}`).join('; '));
    }
    return live.map((s) => s.label).join(', ');
  });

  if (pageErrors.length) throw new StepFailure(`uncaught errors in the page:\n  ${pageErrors.join('\n  ')}`);
  return latency;
}

// The Redis outage. Two more processes, C and D, on a redis-server of the test's own (AOF, fsync
// at every write, so that its data survives the SIGKILL and the restart on the same port and
// dir): carol and dave on C, frank on D, in room "ops". Redis is killed: each process serves its
// own users from memory (a message reaches the members on the same process, `sent` says
// "stored": false), new logins get `unavailable`, /health is 503 "memory". Redis is restarted:
// /health 200 "redis", the outage messages stored in order (rediskit_chat_messages_pending 0),
// and dave's reload shows each of them once in the history.
async function outageSteps() {
  const ROOM = 'ops';
  const TITLE = 'Operations';
  const keyPrefix = `${prefix}out`;
  const before = 'carol, before the outage';
  const during = ['carol, during the outage', 'dave, during the outage', 'frank on D, during the outage'];
  const after = 'carol, after the outage';
  const sentIds = new Map();          // text -> the id of its `sent` answer
  let redis, C, D, carol, dave, frank, erin;

  const shown = (u, text, from) => until(u, `${JSON.stringify(text)} from ${from} in #messages`,
    ([t, f]) => Array.from(document.querySelectorAll('#messages > li.msg')).some((l) =>
      l.querySelector('.text')?.textContent === t && l.querySelector('.from')?.textContent === f),
    [text, from], { describe: describeMessages });

  // Waits for the `sent` answer to a `send` made after the `mark`-th event; checks its "stored".
  const checkSent = async (u, mark, text, stored) => {
    const m = await waitEvent(u, `the "sent" answer to ${JSON.stringify(text)}`,
      (e) => e.ev === 'sent' || e.ev === 'error', { after: mark });
    if (m.ev === 'error') {
      throw new StepFailure(`${u.label}: sending ${JSON.stringify(text)} on process ${u.srv.label} was refused: ` +
        `${m.code}: ${m.message}`);
    }
    if (m.stored !== stored) {
      throw new StepFailure(`${u.label}: the "sent" answer to ${JSON.stringify(text)} has "stored": ${JSON.stringify(m.stored)}, ` +
        `expected ${stored}${stored ? '' : ' (Redis is down: delivered on this process now, stored when Redis is back)'}: ${JSON.stringify(m)}`);
    }
    sentIds.set(text, String(m.id));
  };
  const send = async (u, text, stored) => {
    const mark = u.eventSeq;
    await u.page.fill('#composer', text);
    await u.page.press('#composer', 'Enter');
    await checkSent(u, mark, text, stored);
    await shown(u, text, u.name);
  };

  await step('outage setup: a redis-server of the test\'s own (AOF), servers C and D on it; carol, dave (C) and frank (D) in room "ops"', async () => {
    redisDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-outage-redis-'));
    const port = await freePort();
    redis = await startRedis('redis-outage-1', port, redisDir);
    const url = `redis://127.0.0.1:${port}`;
    [C, D] = await Promise.all([startServer('C', { redis: url, prefix: keyPrefix }), startServer('D', { redis: url, prefix: keyPrefix })]);
    await pollServers('C and D on Redis at start', [C, D], onRedis, WAIT_MS);
    [carol, dave, frank] = await Promise.all([newUser('carol', 'carol', C), newUser('dave', 'dave', C), newUser('frank', 'frank', D)]);
    await Promise.all([login(carol), login(dave), login(frank)]);
    await carol.page.fill('#room-new-id', ROOM);
    await carol.page.fill('#room-new-name', TITLE);
    await carol.page.click('#room-create-btn');
    await until(carol, `room "${ROOM}" in #rooms-mine after create_room`, hasRoom, ['#rooms-mine', ROOM], { describe: listRooms });
    for (const u of [dave, frank]) {
      await until(u, `room "${ROOM}" in #rooms-all`, hasRoom, ['#rooms-all', ROOM], { describe: listRooms });
      await roomLi(u, '#rooms-all', ROOM).locator('button.join').click();
      await until(u, `room "${ROOM}" in #rooms-mine after join`, hasRoom, ['#rooms-mine', ROOM], { describe: listRooms });
    }
    for (const u of [carol, dave, frank]) await openRoom(u, ROOM, TITLE);
    await send(carol, before, true);
    await Promise.all([shown(dave, before, 'carol'), shown(frank, before, 'carol')]);
    return `redis-server pid ${redis.child.pid} on 127.0.0.1:${port}, dir ${redisDir}; C ${C.url}, D ${D.url}`;
  });

  let latency = null;
  await step(`redis-server SIGKILLed: /health 503 "memory"; carol's message reaches dave (same process) in < ${OUTAGE_LATENCY_BUDGET_MS} ms ` +
      'with "stored": false; D keeps serving frank; a new login gets "unavailable"', async () => {
    const exit = await killRedis(redis, 'SIGKILL');
    if (exit.signal !== 'SIGKILL') throw new StepFailure(`redis-server ${redis.label} was gone before the SIGKILL: ${JSON.stringify(exit)}\n${indent('output', redis.out)}`);
    const detectMs = await pollServers('C and D on memory once Redis is killed', [C, D], onMemory, OUTAGE_DETECT_MS);

    // Both timestamps are taken in the pages: carol's click on #send-btn and the mutation that
    // shows her message on dave's page.
    await dave.page.evaluate((t) => {
      window.__outageSeenAt = null;
      const check = () => {
        if (window.__outageSeenAt === null &&
            Array.from(document.querySelectorAll('#messages > li.msg .text')).some((x) => x.textContent === t)) {
          window.__outageSeenAt = Date.now();
        }
      };
      new MutationObserver(check).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });
    }, during[0]);
    const mark = carol.eventSeq;
    await carol.page.fill('#composer', during[0]);
    await carol.page.evaluate(() => {
      window.__clickAt = null;
      document.getElementById('send-btn').addEventListener('click', () => { window.__clickAt = Date.now(); }, { capture: true, once: true });
    });
    await carol.page.click('#send-btn');
    await checkSent(carol, mark, during[0], false);
    await until(dave, `carol's message ${JSON.stringify(during[0])} in #messages while Redis is down`,
      () => window.__outageSeenAt !== null, null, { describe: describeMessages });
    const clickAt = await carol.page.evaluate(() => window.__clickAt);
    if (clickAt === null) throw new StepFailure('carol: the click on #send-btn was not seen by the page');
    latency = (await dave.page.evaluate(() => window.__outageSeenAt)) - clickAt;
    if (latency >= OUTAGE_LATENCY_BUDGET_MS) {
      throw new StepFailure(`Redis down: carol's click to her message on dave's page (both on process C) took ${latency} ms, ` +
        `the budget is ${OUTAGE_LATENCY_BUDGET_MS} ms`);
    }
    await shown(carol, during[0], 'carol');
    await send(dave, during[1], false);
    await shown(carol, during[1], 'dave');
    await send(frank, during[2], false);   // D, on its own memory: frank sees his message

    erin = await newUser('erin', 'erin', C);
    const emark = erin.eventSeq;
    await erin.page.fill('#login-name', erin.name);
    await erin.page.click('#login-btn');
    const refused = await waitEvent(erin, 'an answer to her login while Redis is down',
      (e) => e.ev === 'welcome' || e.ev === 'error', { after: emark });
    if (refused.ev !== 'error' || refused.code !== 'unavailable') {
      throw new StepFailure(`erin: a login while Redis is down got ${JSON.stringify(refused)}, expected an error with code "unavailable"`);
    }
    await until(erin, '#error with data-code "unavailable" and the login form shown again',
      () => document.getElementById('error').getAttribute('data-code') === 'unavailable' &&
        !document.getElementById('error').hasAttribute('hidden') &&
        document.getElementById('login-name').offsetParent !== null, null,
      { describe: () => `#error=${JSON.stringify(document.getElementById('error').textContent)} data-code=${document.getElementById('error').getAttribute('data-code')} ` +
        `login form ${document.getElementById('login-name').offsetParent === null ? 'hidden' : 'shown'} #me=${JSON.stringify(document.getElementById('me').textContent)}` });
    await screenshot(erin, 'outage-erin-refused.png');

    const queued = { C: 2, D: 1 };
    await pollServers('still on memory, the outage messages queued', [C, D], (h, m, srv) => onMemory(h) ||
      (m.queued === queued[srv.label] && m.pending === queued[srv.label] ? null
        : `expected rediskit_chat_messages_queued and _pending ${queued[srv.label]}`), 0);
    return `/health 503 "memory" ${detectMs} ms after the SIGKILL; carol's click to dave's page ${latency} ms; ` +
      `login refused: ${JSON.stringify(refused.message)}`;
  });

  await step(`redis-server restarted on its port and dir: C and D back on "redis", nothing pending, within ${RECOVERY_MS / 1000} s; ` +
      'dave reloads: each outage message once, in order; logins and live delivery across processes again', async () => {
    const t0 = performance.now();
    redis = await startRedis('redis-outage-2', redis.port, redisDir);
    const backMs = await pollServers('C and D back on Redis with the outage messages stored', [C, D],
      (h, m) => onRedis(h) ||
        (m.pending === 0 && m.stored_late >= 1 ? null : 'expected rediskit_chat_messages_pending 0 and _stored_late >= 1'),
      RECOVERY_MS);
    const back = Math.round(performance.now() - t0);
    const late = {};
    for (const srv of [C, D]) {
      const m = await messageMetrics(srv);
      late[srv.label] = m.stored_late;
      if (m.stored_late !== m.queued || m.dropped !== 0) {
        throw new StepFailure(`server ${srv.label}: of ${m.queued} messages sent while Redis was down, ${m.stored_late} were stored ` +
          `late and ${m.dropped} dropped (expected all stored, none dropped): ${JSON.stringify(m)}`);
      }
    }

    // The history comes from Redis: the `opened` answer itself (the page drops a repeated id,
    // the frame does not), then the page.
    const mark = dave.eventSeq;
    await dave.page.reload();
    const answer = await waitEvent(dave, 'an answer to the login by token after the reload',
      (e) => e.ev === 'welcome' || e.ev === 'error', { after: mark });
    if (answer.ev === 'error') {
      await sleep(300);   // the page's next try (a login by name) and its answer, for the report
      const next = dave.events.filter((e) => e.n > mark && e.m !== answer && e.m.ev === 'error')
        .map((e) => `${e.m.code}: ${e.m.message}`);
      throw new StepFailure(`dave: with Redis back (C: /health 200 "redis"), the login by token after the reload was refused: ` +
        `${answer.code}: ${answer.message}` + (next.length ? `; the page's next login got ${JSON.stringify(next)}` : ''));
    }
    await until(dave, '"dave" in #me after the reload (login by the stored token)',
      () => document.getElementById('me').textContent === 'dave', null,
      { describe: () => `#me=${JSON.stringify(document.getElementById('me').textContent)} #status=${document.getElementById('status').textContent} #error=${document.getElementById('error').textContent}` });
    const opened = await waitEvent(dave, `the "opened" answer for "${ROOM}" after the reload`,
      (e) => (e.ev === 'opened' && e.room === ROOM) || e.ev === 'error', { after: mark });
    if (opened.ev === 'error') throw new StepFailure(`dave: reopening "${ROOM}" after the reload failed: ${opened.code}: ${opened.message}`);
    const want = [before, ...during];
    const history = (opened.messages || []).map((x) => ({ id: String(x.id), text: x.text, from: x.from && x.from.name }));
    for (const t of during) {
      const n = history.filter((x) => x.text === t).length;
      if (n !== 1) {
        throw new StepFailure(`dave: ${JSON.stringify(t)} is ${n} times in the history of "${ROOM}" once Redis is back, expected once: ` +
          JSON.stringify(history));
      }
    }
    const got = history.map((x) => x.text);
    if (got.length !== want.length || got.some((t, i) => t !== want[i])) {
      throw new StepFailure(`dave: the history of "${ROOM}" once Redis is back is\n  ${JSON.stringify(got)}\nexpected (in the order sent)\n  ${JSON.stringify(want)}`);
    }
    for (const x of history) {
      if (x.id !== sentIds.get(x.text)) {
        throw new StepFailure(`dave: ${JSON.stringify(x.text)} has id ${x.id} in the history, but its "sent" answer said ${sentIds.get(x.text)}`);
      }
    }
    await until(dave, `#messages of "${ROOM}" after the reload: ${JSON.stringify(want)}`,
      (w) => {
        const t = Array.from(document.querySelectorAll('#messages > li.msg .text')).map((x) => x.textContent);
        return t.length === w.length && t.every((x, i) => x === w[i]);
      }, want, { describe: describeMessages });
    await screenshot(dave, 'outage-dave-history.png');

    await login(erin);   // refused during the outage
    const mark2 = carol.eventSeq;
    await carol.page.fill('#composer', after);
    await carol.page.press('#composer', 'Enter');
    await checkSent(carol, mark2, after, true);
    await Promise.all([shown(dave, after, 'carol'), shown(frank, after, 'carol')]);   // frank: on D, through Redis
    return `back on "redis" with nothing pending ${back} ms after the restart began (${backMs} ms of polling); ` +
      `stored late: C ${late.C}, D ${late.D}`;
  });
}

// ------------------------------------------------------------------ run

let failed = null;
try {
  await main();
} catch (e) {
  failed = e;
  if (e.stepLine && !interrupted) console.log(e.stepLine);
  for (const u of interrupted ? [] : users.values()) {
    if (u.closed) continue;
    try { await u.page.screenshot({ path: path.join(artifacts, `failure-${u.label}.png`) }); } catch { /* page gone */ }
  }
} finally {
  await cleanup();
}

if (interrupted) await new Promise(() => {});   // the signal handler exits
if (failed) {
  const msg = failed instanceof StepFailure ? failed.message : (failed.stack || String(failed));
  process.stderr.write(`browser test: FAIL: ${msg}\n`);
  for (const srv of servers) {
    const how = srv.diedEarly ? `died during the test (${srv.diedEarly})` : `exit ${JSON.stringify(srv.exit)}`;
    process.stderr.write(`browser test: server ${srv.label} (${srv.url || 'not listening'}): ${how}\n`);
    if (srv.stderr.trim()) process.stderr.write(indent('stderr', srv.stderr));
  }
  process.stderr.write(`browser test: artifacts (WebSocket frames, server logs, screenshots) in ${artifacts}\n`);
  process.exit(1);
}
console.log(`browser test: artifacts in ${artifacts}`);
console.log(`browser test: ${results.length} steps passed`);
process.exit(0);
