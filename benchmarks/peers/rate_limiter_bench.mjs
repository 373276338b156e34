// rate_limiter_bench: rate-limiter-flexible (RateLimiterRedis on ioredis), the rate limiter the
// Node services of seed 002 would use, on the workloads of benchmarks/rate_limiter_bench.cpp
// (same users, same timing, same output format).
//
//   node rate_limiter_bench.mjs [--port P] [--host H] [--seconds S] [--repeat R] [--warmup S]
//                               [--callers N] [--users N]
//
// Versions pinned in package.json (rate-limiter-flexible, ioredis; `npm ci`). One ioredis
// client (default options), one RateLimiterRedis (points 1 000 000 per 60 s per user: every
// consume is allowed; a rejected consume would throw, which is not what is measured here). Its
// consume is one EVALSHA (SET NX EX + INCRBY + PTTL in a script): a fixed window.
// Workloads:
//   callers_64   64 async loops, each awaiting one consume(u<i>:api) at a time: checks/s
//   rtt_1        one loop: checks/s, p50 and p99 latency in µs
// Each workload: a warm-up, then `repeat` timed runs of `seconds`; the median run is reported
// with the min-max spread:
//   system=rlflx-ioredis algo=fixed workload=callers_64 ops_per_s=... min=... max=... runs=...
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);

const opt = {
  host: process.env.REDIS_HOST || '127.0.0.1', port: Number(process.env.REDIS_PORT || 6379),
  seconds: 2, repeat: 5, warmup: 1, callers: 64, users: 10000,
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const a = argv[i], v = argv[i + 1];
  if (v === undefined) usage();
  if (a === '--host') opt.host = v;
  else if (a === '--port') opt.port = Number(v);
  else if (a === '--seconds') opt.seconds = Number(v);
  else if (a === '--repeat') opt.repeat = Number(v);
  else if (a === '--warmup') opt.warmup = Number(v);
  else if (a === '--callers') opt.callers = Number(v);
  else if (a === '--users') opt.users = Number(v);
  else usage();
}
function usage() {
  console.error('usage: rate_limiter_bench.mjs [--port P] [--host H] [--seconds S] [--repeat R] ' +
                '[--warmup S] [--callers N] [--users N]');
  process.exit(2);
}
if (!(opt.repeat >= 1 && opt.seconds > 0 && opt.port > 0 && opt.callers >= 1 && opt.users >= 1))
  usage();

const { Redis } = require('ioredis');
const { RateLimiterRedis } = require('rate-limiter-flexible');
const client = new Redis({ host: opt.host, port: opt.port, lazyConnect: true,
                           maxRetriesPerRequest: 0 });
await client.connect();
const limiter = new RateLimiterRedis({ storeClient: client, keyPrefix: 'rlflx', points: 1e6,
                                       duration: 60 });
const users = Array.from({ length: opt.users }, (_, i) => `u${i}:api`);

async function runOnce(callers, seconds, latency) {
  const end = performance.now() + seconds * 1000;
  let checks = 0, next = 0;
  const us = [];
  const start = performance.now();
  const loop = async () => {
    while (performance.now() < end) {
      const key = users[next++ % users.length];
      const t0 = latency ? performance.now() : 0;
      await limiter.consume(key, 1);
      if (latency) us.push((performance.now() - t0) * 1000);
      ++checks;
    }
  };
  await Promise.all(Array.from({ length: callers }, loop));
  const r = { ops: checks / ((performance.now() - start) / 1000), p50: 0, p99: 0 };
  if (us.length) {
    us.sort((a, b) => a - b);
    r.p50 = us[Math.floor(us.length / 2)];
    r.p99 = us[Math.min(us.length - 1, Math.floor(us.length * 99 / 100))];
  }
  return r;
}

const name = `rlflx-ioredis`;
console.error(`rate-limiter-flexible ${require('rate-limiter-flexible/package.json').version}, ` +
              `ioredis ${require('ioredis/package.json').version}, node ${process.version}`);
for (const callers of [opt.callers, 1]) {
  const latency = callers === 1;
  await runOnce(callers, opt.warmup, latency);
  const runs = [];
  for (let i = 0; i < opt.repeat; ++i) runs.push(await runOnce(callers, opt.seconds, latency));
  runs.sort((a, b) => a.ops - b.ops);
  const med = runs[Math.floor(runs.length / 2)];
  const spread = `min=${runs[0].ops.toFixed(0)} max=${runs[runs.length - 1].ops.toFixed(0)} ` +
                 `runs=${runs.length}`;
  const head = `system=${name} algo=fixed workload=${latency ? 'rtt_1' : `callers_${callers}`} ` +
               `ops_per_s=${med.ops.toFixed(0)}`;
  if (latency)
    console.log(`${head} p50_us=${med.p50.toFixed(1)} p99_us=${med.p99.toFixed(1)} ${spread}`);
  else
    console.log(`${head} ${spread}`);
}
await client.quit();
