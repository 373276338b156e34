// Seed 001's Node side (ioredis, the version pinned in tests/interop/package.json), for the interop case of
// tests/services/user_stream_test.cpp:
//   node user_profiles_interop.mjs <port> <db> <cpp-id> <node-id>
// 1. reads what rediskit wrote: the hash user:profile:<cpp-id> (seed 001's six fields, a TTL
//    of about 7 days) and the last entry of events:users (its payload JSON);
// 2. writes as seed 001's UserCache.set and UpdateUserProfile do: the hash
//    user:profile:<node-id> with EXPIRE 604800, and an XADD events:users * payload <json>
//    updating <cpp-id> (fullName "Renamed by Node").
// Exit status: 0 on success, 1 on a mismatch (printed), 77 when ioredis is not installed.
let Redis;
try {
  ({ default: Redis } = await import("ioredis"));
} catch {
  console.error("ioredis is not installed (npm ci in tests/interop)");
  process.exit(77);
}

const [port, db, cppId, nodeId] = process.argv.slice(2);
const redis = new Redis({ host: "127.0.0.1", port: Number(port), db: Number(db), lazyConnect: true });
await redis.connect();
let failed = false;
const expect = (what, got, want) => {
  if (got !== want) {
    console.error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    failed = true;
  }
};

// 1. rediskit's hash and event, as the Node UserCache.get / UserStreamConsumer read them.
const h = await redis.hgetall(`user:profile:${cppId}`);
expect("fullName", h.fullName, "Jean Dupont");
expect("avatar", h.avatar, "https://cdn/a.jpg");
expect("matricule", h.matricule, "MAT001");
expect("ministere", h.ministere, "MINFOP");
expect("sexe", h.sexe, "M");
expect("updatedAt", h.updatedAt, "1736862000000");
const ttl = await redis.ttl(`user:profile:${cppId}`);
if (!(ttl > 604000 && ttl <= 665280)) {
  console.error(`ttl ${ttl} is not about 7 days`);
  failed = true;
}
const last = await redis.xrevrange("events:users", "+", "-", "COUNT", 1);
const [, fields] = last[0];
expect("field name", fields[0], "payload");
const event = JSON.parse(fields[1]);
expect("event", event.event, "user.profile.updated");
expect("userId", event.userId, cppId);
expect("event fullName", event.fullName, "Jean Dupont");
expect("timestamp", event.timestamp, 1736862000000);

// 2. Seed 001's writers.
const key = `user:profile:${nodeId}`;
await redis
  .multi()
  .hset(key, {
    fullName: "Awa Ndiaye",
    avatar: "https://cdn/n.jpg",
    matricule: "MAT002",
    ministere: "MINSANTE",
    sexe: "F",
    updatedAt: "1736862000001",
  })
  .expire(key, 604800)
  .exec();
await redis.xadd(
  "events:users",
  "*",
  "payload",
  JSON.stringify({
    event: "user.profile.updated",
    userId: cppId,
    fullName: "Renamed by Node",
    avatar: "https://cdn/a2.jpg",
    matricule: "MAT001",
    timestamp: 1736862000500,
  }),
);
await redis.quit();
process.exit(failed ? 1 : 0);
