// user_stream_consumer: seed 001's UserStreamConsumer on ioredis, the peer of
// benchmarks/user_profiles_bench.cpp's "consume" figure (issue 14): N seed events
// (`events:users`, field `payload`, seed 001's JSON) read by a consumer group in batches and
// applied to the profile cache, with acks, as the seed's Node consumer does it: per event
// HSET user:profile:<id> fullName avatar matricule updatedAt, then EXPIRE 7 days; one XACK per
// batch. Written its fastest way: XREADGROUP COUNT <batch>, then the whole batch's writes and
// its XACK in one pipeline, awaited before the next read. It writes no version check (the
// seed has none), so it does less per event than rediskit's versioned writes.
//
//   node user_stream_consumer.mjs --port P [--events 100000] [--batch 500] [--db 0]
//
// It FLUSHDBs database `db` before and after: point it at a throwaway server. Prints one line:
//   system=ioredis workload=consume_<N> unit=events events_per_s=... ms=...
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const Redis = require('ioredis');

const opt = { port: 6379, host: '127.0.0.1', events: 100000, batch: 500, db: 0 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const a = argv[i], v = argv[i + 1];
  if (v === undefined) usage();
  if (a === '--port') opt.port = Number(v);
  else if (a === '--host') opt.host = v;
  else if (a === '--events') opt.events = Number(v);
  else if (a === '--batch') opt.batch = Number(v);
  else if (a === '--db') opt.db = Number(v);
  else usage();
}
function usage() {
  console.error('usage: user_stream_consumer.mjs --port P [--host H] [--events N] [--batch B] [--db D]');
  process.exit(2);
}
if (!(opt.port > 0 && opt.events > 0 && opt.batch > 0)) usage();

const STREAM = 'events:users';
const GROUP = 'bench';
const TTL = 604800;  // seed 001: 7 days
const redis = new Redis({ host: opt.host, port: opt.port, db: opt.db, lazyConnect: true });
await redis.connect();
await redis.flushdb();

// The events: what seed 001's auth service publishes (user.profile.updated).
for (let i = 0; i < opt.events; i += 1000) {
  const p = redis.pipeline();
  for (let j = i; j < Math.min(opt.events, i + 1000); ++j) {
    const id = `w${j % 300000}`;
    p.xadd(STREAM, '*', 'payload', JSON.stringify({
      event: 'user.profile.updated', userId: id, fullName: `User ${id}`,
      avatar: `https://cdn.example.com/avatars/${id}.jpg`, matricule: `MAT${id}`,
      timestamp: 1736862000000 + j,
    }));
  }
  await p.exec();
}
await redis.xgroup('CREATE', STREAM, GROUP, '0', 'MKSTREAM');

let applied = 0;
const t0 = performance.now();
while (applied < opt.events) {
  const r = await redis.xreadgroup('GROUP', GROUP, 'c1', 'COUNT', opt.batch, 'STREAMS', STREAM, '>');
  if (!r) continue;
  const entries = r[0][1];
  const p = redis.pipeline();
  const ids = [];
  for (const [id, fields] of entries) {
    const e = JSON.parse(fields[1]);
    const key = `user:profile:${e.userId}`;
    p.hset(key, 'fullName', e.fullName, 'avatar', e.avatar, 'matricule', e.matricule,
           'updatedAt', String(e.timestamp));
    p.expire(key, TTL);
    ids.push(id);
  }
  p.xack(STREAM, GROUP, ...ids);
  const res = await p.exec();
  for (const [err] of res) if (err) throw err;
  applied += entries.length;
}
const ms = performance.now() - t0;
const pending = await redis.xpending(STREAM, GROUP);
if (Number(pending[0]) !== 0) throw new Error(`${pending[0]} entries left pending`);
console.log(`system=ioredis workload=consume_${opt.events} unit=events ` +
            `events_per_s=${(opt.events / (ms / 1000)).toFixed(0)} ms=${ms.toFixed(0)}`);
await redis.flushdb();
redis.disconnect();
