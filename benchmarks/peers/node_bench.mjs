// node_bench: the Node.js clients the seed system runs on, on the workloads of
// benchmarks/connection_bench.cpp (same keys, same data, same timing, same output format).
//
//   node node_bench.mjs --client ioredis|ioredis-auto|node-redis5|node-redis6
//                       [--port P] [--host H] [--seconds S] [--repeat R] [--warmup S]
//                       [--only name,name...]
//
// Clients (versions pinned in package.json; benchmarks/run_all.sh runs `npm ci`):
//   ioredis       ioredis 6, default options (no auto-pipelining)
//   ioredis-auto  ioredis 6 with enableAutoPipelining: true
//   node-redis5   redis (node-redis) 5, default options
//   node-redis6   redis (node-redis) 6 with commandOptions: { timeout: undefined } (its default
//                 5 s per-command timeout arms a timer per command and costs ~7x on callers_N)
// Workloads, all on ONE client (one connection):
//   rtt_1              one async loop awaiting one GET at a time: ops/s, p50/p99 latency
//   callers_N          N = 1, 16, 64, 256 async loops on the client, each awaiting GETs
//   batch_100_hgetall  100 HGETALL of 6-field profile hashes pipelined, replies as objects
//                      (ioredis: client.pipeline().hgetall() x 100 .exec(); node-redis: 100
//                      hGetAll issued in one tick and awaited with Promise.all, which node-redis
//                      writes as one pipeline)
// Each workload: a warm-up, then `repeat` timed runs of `seconds`; the median run is reported
// with the min-max spread, one line per workload:
//   workload=callers_64 unit=ops ops_per_s=... min=... max=... runs=...
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);

const opt = {
  client: '', host: process.env.REDIS_HOST || '127.0.0.1', port: Number(process.env.REDIS_PORT || 6379),
  seconds: 2, repeat: 5, warmup: 1, only: null,
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const a = argv[i], v = argv[i + 1];
  if (v === undefined) usage();
  if (a === '--client') opt.client = v;
  else if (a === '--host') opt.host = v;
  else if (a === '--port') opt.port = Number(v);
  else if (a === '--seconds') opt.seconds = Number(v);
  else if (a === '--repeat') opt.repeat = Number(v);
  else if (a === '--warmup') opt.warmup = Number(v);
  else if (a === '--only') opt.only = v.split(',').filter(Boolean);
  else usage();
}
function usage() {
  console.error('usage: node_bench.mjs --client ioredis|ioredis-auto|node-redis5|node-redis6 ' +
                '[--port P] [--host H] [--seconds S] [--repeat R] [--warmup S] [--only a,b]');
  process.exit(2);
}
if (!(opt.repeat >= 1 && opt.seconds > 0 && opt.port > 0)) usage();

const GET_KEY = 'rediskit:bench:get';
const HASHES = 100;
const userKey = (i) => `rediskit:bench:user:${i}`;
const USER_KEYS = Array.from({ length: HASHES }, (_, i) => userKey(i));

// ---- the clients, behind one small interface ---------------------------------------------------
async function open(kind) {
  if (kind === 'ioredis' || kind === 'ioredis-auto') {
    const { Redis } = require('ioredis');
    const c = new Redis({ host: opt.host, port: opt.port, enableAutoPipelining: kind === 'ioredis-auto',
                          lazyConnect: true, maxRetriesPerRequest: 0 });
    await c.connect();
    return {
      version: require('ioredis/package.json').version,
      get: (k) => c.get(k),
      set: (k, v) => c.set(k, v),
      hset: (k, obj) => c.hset(k, obj),
      batch: async (keys) => {
        const p = c.pipeline();
        for (const k of keys) p.hgetall(k);
        const res = await p.exec();
        const out = new Array(res.length);
        for (let i = 0; i < res.length; ++i) {
          if (res[i][0]) throw res[i][0];
          out[i] = res[i][1];
        }
        return out;
      },
      close: () => c.quit(),
    };
  }
  if (kind === 'node-redis5' || kind === 'node-redis6') {
    const pkg = kind === 'node-redis5' ? 'redis5' : 'redis6';
    const { createClient } = require(pkg);
    const options = { socket: { host: opt.host, port: opt.port } };
    if (kind === 'node-redis6') options.commandOptions = { timeout: undefined };
    const c = createClient(options);
    c.on('error', (e) => { console.error(`node_bench: ${kind}: ${e.message}`); process.exit(1); });
    await c.connect();
    return {
      version: require(`${pkg}/package.json`).version,
      get: (k) => c.get(k),
      set: (k, v) => c.set(k, v),
      hset: (k, obj) => c.hSet(k, obj),
      batch: (keys) => Promise.all(keys.map((k) => c.hGetAll(k))),
      close: () => c.quit(),
    };
  }
  usage();
}

async function setup(c) {
  await c.set(GET_KEY, 'abc');
  for (let i = 0; i < HASHES; ++i) {
    await c.hset(userKey(i), {
      id: String(i), name: `User ${i}`, email: `user${i}@example.com`, status: 'online',
      avatar: `https://cdn.example.com/avatars/${i}.png`, last_seen: '1700000000',
    });
  }
}

// ---- workloads: each runs until `deadline` (ms, performance.now()) -----------------------------
async function rtt1(c, deadline) {
  const s = { units: 0, lat: [] };
  let t = performance.now(), v;
  while (t < deadline) {
    v = await c.get(GET_KEY);
    const t2 = performance.now();
    s.lat.push((t2 - t) * 1000);
    t = t2;
    ++s.units;
  }
  if (v !== 'abc') throw new Error(`rtt_1: unexpected value ${v}`);
  return s;
}

// N loops; a timer stops them at the deadline (no clock read per request).
function callers(n) {
  return async (c, deadline) => {
    const s = { units: 0, lat: null };
    let stop = false;
    const timer = setTimeout(() => { stop = true; }, Math.max(0, deadline - performance.now()));
    const loop = async () => {
      let v;
      while (!stop) {
        v = await c.get(GET_KEY);
        ++s.units;
      }
      if (v !== undefined && v !== 'abc') throw new Error(`callers: unexpected value ${v}`);
    };
    const loops = [];
    for (let i = 0; i < n; ++i) loops.push(loop());
    await Promise.all(loops);
    clearTimeout(timer);
    return s;
  };
}

async function batch(c, deadline) {
  const s = { units: 0, lat: [] };
  let t = performance.now(), res;
  while (t < deadline) {
    res = await c.batch(USER_KEYS);
    const t2 = performance.now();
    s.lat.push((t2 - t) * 1000);
    t = t2;
    ++s.units;
  }
  const last = res[HASHES - 1];
  if (res.length !== HASHES || Object.keys(last).length !== 6 || last.id !== String(HASHES - 1))
    throw new Error('batch_100_hgetall: wrong profile');
  return s;
}

// ---- timing ------------------------------------------------------------------------------------
const median = (v) => { const s = [...v].sort((a, b) => a - b), n = s.length;
                        return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const pct = (sorted, p) => sorted[Math.round(p * (sorted.length - 1))];

async function measure(c, name, unit, w) {
  if (opt.only && !opt.only.includes(name)) return;
  if (opt.warmup > 0) await w(c, performance.now() + opt.warmup * 1000);
  const rates = [];
  let lat = [];
  for (let i = 0; i < opt.repeat; ++i) {
    const t0 = performance.now();
    const s = await w(c, t0 + opt.seconds * 1000);
    rates.push(s.units / ((performance.now() - t0) / 1000));
    if (s.lat) lat = lat.concat(s.lat);
  }
  const med = median(rates);
  let line = `workload=${name} unit=${unit} ops_per_s=${med.toFixed(0)} min=${Math.min(...rates).toFixed(0)} ` +
             `max=${Math.max(...rates).toFixed(0)}`;
  if (unit === 'batches') line += ` ms_per_batch=${(1000 / med).toFixed(3)}`;
  if (lat.length) {
    lat.sort((a, b) => a - b);
    line += ` p50_us=${pct(lat, 0.5).toFixed(1)} p99_us=${pct(lat, 0.99).toFixed(1)}`;
  }
  line += ` runs=${rates.map((r) => r.toFixed(0)).join(',')}`;
  console.log(line);
}

const c = await open(opt.client);
console.error(`node_bench: ${opt.client} ${c.version}, node ${process.version}`);
await setup(c);
await measure(c, 'rtt_1', 'ops', rtt1);
for (const n of [1, 16, 64, 256]) await measure(c, `callers_${n}`, 'ops', callers(n));
await measure(c, 'batch_100_hgetall', 'batches', batch);
await c.close();
