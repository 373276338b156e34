// BullMQ (6.7.6, on ioredis 6) with the workloads of ../job_queue_bench.cpp, printing the same
// lines, for run_job_queue.sh (issue 15):
//
//   bulk_add      Queue.addBulk of --bulk jobs at a time, --jobs jobs in total: jobs/s
//   process_c<N>  --jobs jobs added first (addBulk), then one Worker at concurrency N (1, 10,
//                 100) with a trivial async processor: jobs/s from the worker's start to the
//                 last 'completed' event
//   latency_200   add -> completed at a steady 200 jobs/s: one Worker at concurrency 10 (several
//                 jobs in flight when the server or this process hiccups, as a service would
//                 run it; the same in job_queue_bench), one queue.add() every 5 ms on a
//                 drift-free schedule (job i is due at start + i * 5 ms, not 5 ms after job
//                 i - 1), --latency-jobs jobs; a job's latency runs from just before
//                 queue.add() to the worker's 'completed' event for it (one process)
//
// Every job: name "bench", data {"n":1}, removeOnComplete: true. Queue "bench", default prefix
// ("bull"), obliterated (force) before and after every run: use a throwaway server. Each
// workload runs --repeat times; throughput lines give the median and the min-max spread:
//
//   system=bullmq workload=process_c10 jobs_per_s=... min=... max=... runs=...
//   system=bullmq workload=latency_200 p50_ms=... p99_ms=... max_ms=... jobs=... runs=...
//
// (latency: percentiles over the jobs of every run together.)
//
//   node bullmq_bench.mjs [--host H] [--port P] [--repeat 3] [--jobs 20000] [--bulk 1000]
//                         [--latency-jobs 2000]
//                         [--only bulk_add,process_c1,process_c10,process_c100,latency_200]
import { Queue, Worker } from 'bullmq';

const args = {
  host: process.env.REDIS_HOST ?? '127.0.0.1',
  port: Number(process.env.REDIS_PORT ?? 6379),
  repeat: 3,
  jobs: 20000,
  bulk: 1000,
  'latency-jobs': 2000,
  only: 'bulk_add,process_c1,process_c10,process_c100,latency_200',
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const name = argv[i].replace(/^--/, '');
  if (!(name in args) || i + 1 >= argv.length) {
    console.error('usage: node bullmq_bench.mjs [--host H] [--port P] [--repeat R] [--jobs N] ' +
                  '[--bulk N] [--latency-jobs N] [--only w1,w2,...]');
    process.exit(2);
  }
  args[name] = typeof args[name] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
}
const only = new Set(args.only.split(','));
const connection = { host: args.host, port: args.port, maxRetriesPerRequest: null };
const NAME = 'bench';
const DATA = { n: 1 };
const OPTS = { removeOnComplete: true };

const queue = new Queue(NAME, { connection });
await queue.waitUntilReady();

const obliterate = () => queue.obliterate({ force: true });

async function addJobs(jobs, bulk) {
  for (let done = 0; done < jobs;) {
    const n = Math.min(bulk, jobs - done);
    const batch = new Array(n);
    for (let i = 0; i < n; ++i) batch[i] = { name: NAME, data: DATA, opts: OPTS };
    await queue.addBulk(batch);
    done += n;
  }
}

async function bulkAdd() {
  await obliterate();
  const t0 = performance.now();
  await addJobs(args.jobs, args.bulk);
  const s = (performance.now() - t0) / 1000;
  await obliterate();
  return args.jobs / s;
}

async function processJobs(concurrency) {
  await obliterate();
  await addJobs(args.jobs, args.bulk);
  let completed = 0;
  let finish;
  const allDone = new Promise((resolve) => { finish = resolve; });
  const worker = new Worker(NAME, async () => {}, { connection, concurrency, autorun: false });
  worker.on('completed', () => { if (++completed === args.jobs) finish(performance.now()); });
  worker.on('error', (e) => console.error('bullmq_bench: worker error:', e.message));
  await worker.waitUntilReady();
  const t0 = performance.now();
  const running = worker.run();
  const t1 = await allDone;
  await worker.close();
  await running;
  await obliterate();
  return args.jobs / ((t1 - t0) / 1000);
}

const sleepUntil = (t) => new Promise((resolve) => {
  const wait = t - performance.now();
  if (wait <= 0) setImmediate(resolve); else setTimeout(resolve, wait);
});

// Returns the latencies (ms) of one run.
async function latencyRun(n) {
  await obliterate();
  const added = new Map();  // job id -> time just before queue.add()
  const done = new Map();   // job id -> time of the worker's 'completed' event
  let finish;
  const allDone = new Promise((resolve) => { finish = resolve; });
  const check = () => { if (done.size === n && added.size === n) finish(); };
  const worker = new Worker(NAME, async () => {}, { connection, concurrency: 10, autorun: false });
  worker.on('completed', (job) => { done.set(job.id, performance.now()); check(); });
  worker.on('failed', (job, e) => console.error('bullmq_bench: job failed:', e.message));
  worker.on('error', (e) => console.error('bullmq_bench: worker error:', e.message));
  await worker.waitUntilReady();
  const running = worker.run();
  const start = performance.now() + 50;  // the worker is blocked on its marker by then
  const pending = [];
  for (let i = 0; i < n; ++i) {
    await sleepUntil(start + i * 5);
    const t = performance.now();
    pending.push(queue.add(NAME, DATA, OPTS).then((job) => { added.set(job.id, t); check(); }));
  }
  await Promise.all(pending);
  await allDone;
  await worker.close();
  await running;
  await obliterate();
  const out = [];
  for (const [id, t] of added) out.push(done.get(id) - t);
  return out;
}

function report(workload, runs) {
  runs.sort((a, b) => a - b);
  const f = (x) => x.toFixed(0);
  console.log(`system=bullmq workload=${workload} jobs_per_s=${f(runs[Math.floor(runs.length / 2)])} ` +
              `min=${f(runs[0])} max=${f(runs[runs.length - 1])} runs=${runs.length}`);
}

// The element at size * percent / 100 of the sorted samples (nearest rank below), as
// bench_util::percentile.
const percentile = (sorted, p) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p / 100))];

try {
  if (only.has('bulk_add')) {
    const runs = [];
    for (let r = 0; r < args.repeat; ++r) runs.push(await bulkAdd());
    report('bulk_add', runs);
  }
  for (const c of [1, 10, 100]) {
    if (!only.has(`process_c${c}`)) continue;
    const runs = [];
    for (let r = 0; r < args.repeat; ++r) runs.push(await processJobs(c));
    report(`process_c${c}`, runs);
  }
  if (only.has('latency_200')) {
    let all = [];
    for (let r = 0; r < args.repeat; ++r) all = all.concat(await latencyRun(args['latency-jobs']));
    all.sort((a, b) => a - b);
    console.log(`system=bullmq workload=latency_200 p50_ms=${percentile(all, 50).toFixed(3)} ` +
                `p99_ms=${percentile(all, 99).toFixed(3)} max_ms=${all[all.length - 1].toFixed(3)} ` +
                `jobs=${all.length} runs=${args.repeat}`);
  }
} finally {
  await queue.close();
}
