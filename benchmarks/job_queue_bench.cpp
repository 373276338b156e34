// job_queue_bench: JobQueue and Worker (seed 002's BullMQ queues) on RedisBackend (a real
// redis-server) and MemoryBackend. BullMQ runs the same workloads in peers/bullmq_bench.mjs,
// with the same output lines; run_job_queue.sh runs both on one throwaway server (issue 15).
//
// Workloads, per backend:
//   bulk_add        async_add_bulk of --bulk jobs at a time (one round trip each), --jobs jobs:
//                   jobs/s
//   process_c<N>    --jobs jobs added first, then one Worker at concurrency N (1, 10, 100) with
//                   a trivial handler and remove_on_complete: jobs/s from start to the last
//                   completion
//   latency_200     add -> completed at a steady 200 jobs/s: one Worker at concurrency 10 (as
//                   in bullmq_bench.mjs), one async_add every 5 ms on a steady_timer with a
//                   drift-free schedule (job i is due at start + i * 5 ms), --latency-jobs
//                   jobs; a job's latency runs from just before async_add to the worker's
//                   WorkerOptions::on_completed for it (the queue accepted the completion:
//                   BullMQ's 'completed' event)
// Every job: name "bench", data {"n":1}, remove_on_complete. Each workload runs `repeat`
// times; throughput lines give the median and the min-max spread, latency the percentiles over
// the jobs of every run together:
//   system=rediskit-redis workload=process_c10 jobs_per_s=... min=... max=... runs=...
//   system=rediskit-redis workload=latency_200 p50_ms=... p99_ms=... max_ms=... jobs=... runs=...
//
// Usage: job_queue_bench [--host H] [--port P] [--repeat R] [--jobs N] [--bulk N]
//                        [--latency-jobs N] [--backends redis,memory]
//                        [--concurrency 1,10,100] [--only bulk_add,process,latency_200]
// (--only: "process" is every --concurrency; process_c10 only that one.)
// (host and port default to REDIS_HOST / REDIS_PORT, else 127.0.0.1:6379). It deletes the keys
// of its queue ({queue:bench}) before and after each run: use a throwaway server.

#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/services/job_queue.hpp>
#include <rediskit/services/worker.hpp>

#include "bench_util.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace asio = boost::asio;
using namespace rediskit;
using SteadyTime = std::chrono::steady_clock;

namespace {

struct Options : bench_util::CommonOptions {
  int jobs = 20'000;
  int bulk = 1'000;
  std::vector<std::string> backends{"redis", "memory"};
  std::vector<int> concurrency{1, 10, 100};
  int latency_jobs = 2'000;
  std::vector<std::string> only{"bulk_add", "process", "latency_200"};
  bool runs(std::string const& w) const {
    return std::find(only.begin(), only.end(), w) != only.end();
  }
};

// latency_200's job data: {"n":1}, as the other workloads' (async_add encodes it).
struct BenchData {
  int n = 1;
};
BOOST_DESCRIBE_STRUCT(BenchData, (), (n))

double seconds_since(SteadyTime::time_point t0) {
  return std::chrono::duration<double>(SteadyTime::now() - t0).count();
}

template <class B>
asio::awaitable<void> add_jobs(JobQueue<B>& q, int jobs, int bulk) {
  JobOptions o;
  o.with_remove_on_complete(true);
  for (int done = 0; done < jobs;) {
    std::vector<NewJob> batch;
    int const n = std::min(bulk, jobs - done);
    batch.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) batch.push_back(NewJob("bench", R"({"n":1})", o));
    co_await q.async_add_bulk(std::move(batch), asio::use_awaitable);
    done += n;
  }
}

template <class B>
double bulk_add(asio::io_context& ioc, JobQueue<B>& q, Options const& o) {
  bench_util::run_coro(ioc, [&]() { return q.async_obliterate(true, asio::use_awaitable); });
  auto const t0 = SteadyTime::now();
  bench_util::run_coro(ioc, [&]() { return add_jobs(q, o.jobs, o.bulk); });
  double const s = seconds_since(t0);
  bench_util::run_coro(ioc, [&]() { return q.async_obliterate(true, asio::use_awaitable); });
  return o.jobs / s;
}

template <class B>
double process(asio::io_context& ioc, JobQueue<B>& q, Options const& o, int concurrency) {
  bench_util::run_coro(ioc, [&]() { return q.async_obliterate(true, asio::use_awaitable); });
  bench_util::run_coro(ioc, [&]() { return add_jobs(q, o.jobs, o.bulk); });
  WorkerOptions wo;
  wo.concurrency = concurrency;
  wo.idle_wait = std::chrono::milliseconds(100);
  int done = 0;
  Worker<B> w(q, [&](ActiveJob&) { ++done; }, wo);
  auto const t0 = SteadyTime::now();
  w.start();
  ioc.restart();
  while (done < o.jobs || w.stats().completed < o.jobs) ioc.run_one();
  double const s = seconds_since(t0);
  bench_util::run_coro(ioc, [&]() { return w.async_close(std::chrono::seconds(5), asio::use_awaitable); });
  bench_util::run_coro(ioc, [&]() { return q.async_obliterate(true, asio::use_awaitable); });
  return o.jobs / s;
}

using TimeMap = std::unordered_map<std::string, SteadyTime::time_point>;

// One async_add every 5 ms, job i at start + i * 5 ms (a late wake-up does not delay the
// rest); the adds are not awaited, so a slow one does not hold the schedule back either.
// `added[id]` is the time just before the async_add that got `id`.
template <class B>
asio::awaitable<void> produce(JobQueue<B>& q, int n, TimeMap& added, int& failed_adds) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  JobOptions o;
  o.with_remove_on_complete(true);
  BenchData const data;
  auto const start = SteadyTime::now() + std::chrono::milliseconds(50);
  for (int i = 0; i < n; ++i) {
    timer.expires_at(start + i * std::chrono::milliseconds(5));
    co_await timer.async_wait(asio::use_awaitable);
    auto const t = SteadyTime::now();
    q.async_add("bench", data, o,
                [&added, &failed_adds, t](boost::system::error_code ec, AddResult r) {
                  if (ec)
                    ++failed_adds;
                  else
                    added[r.id] = t;
                });
  }
}

// One latency_200 run: the latencies (ms) of its jobs.
template <class B>
std::vector<double> latency_run(asio::io_context& ioc, JobQueue<B>& q, Options const& o) {
  bench_util::run_coro(ioc, [&]() { return q.async_obliterate(true, asio::use_awaitable); });
  TimeMap added, done;
  int failed_adds = 0;
  WorkerOptions wo;
  wo.concurrency = 10;
  wo.on_completed = [&done](Job const& j) { done[j.id] = SteadyTime::now(); };
  Worker<B> w(q, [](ActiveJob&) {}, wo);
  w.start();
  bool produced = false;
  std::exception_ptr error;
  asio::co_spawn(ioc, produce(q, o.latency_jobs, added, failed_adds), [&](std::exception_ptr e) {
    error = e;
    produced = true;
  });
  ioc.restart();
  auto const n = static_cast<std::size_t>(o.latency_jobs);
  while (!error && failed_adds == 0 && (!produced || added.size() < n || done.size() < n))
    ioc.run_one();
  if (error) std::rethrow_exception(error);
  if (failed_adds > 0) throw std::runtime_error("latency_200: async_add failed");
  bench_util::run_coro(
      ioc, [&]() { return w.async_close(std::chrono::seconds(5), asio::use_awaitable); });
  bench_util::run_coro(ioc, [&]() { return q.async_obliterate(true, asio::use_awaitable); });
  std::vector<double> ms;
  ms.reserve(n);
  for (auto const& [id, t] : added)
    ms.push_back(std::chrono::duration<double, std::milli>(done.at(id) - t).count());
  return ms;
}

void report(std::string const& system, std::string const& workload, std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::printf("system=%s workload=%s jobs_per_s=%.0f min=%.0f max=%.0f runs=%zu\n",
              system.c_str(), workload.c_str(), v[v.size() / 2], v.front(), v.back(), v.size());
  std::fflush(stdout);
}

template <class B>
void run_all(asio::io_context& ioc, B& backend, std::string const& system, Options const& o) {
  JobQueue<B> q(backend, "bench");
  std::vector<double> runs;
  if (o.runs("bulk_add")) {
    for (int r = 0; r < o.repeat; ++r) runs.push_back(bulk_add(ioc, q, o));
    report(system, "bulk_add", runs);
  }
  for (int c : o.concurrency) {
    if (!o.runs("process") && !o.runs("process_c" + std::to_string(c))) continue;
    runs.clear();
    for (int r = 0; r < o.repeat; ++r) runs.push_back(process(ioc, q, o, c));
    report(system, "process_c" + std::to_string(c), runs);
  }
  if (o.runs("latency_200")) {
    std::vector<double> all;
    for (int r = 0; r < o.repeat; ++r) {
      auto const ms = latency_run(ioc, q, o);
      all.insert(all.end(), ms.begin(), ms.end());
    }
    std::sort(all.begin(), all.end());
    std::printf(
        "system=%s workload=latency_200 p50_ms=%.3f p99_ms=%.3f max_ms=%.3f jobs=%zu runs=%d\n",
        system.c_str(), bench_util::percentile(all, 50), bench_util::percentile(all, 99),
        all.back(), all.size(), o.repeat);
    std::fflush(stdout);
  }
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: job_queue_bench [--host H] [--port P] [--repeat R] [--jobs N] [--bulk N] "
               "[--latency-jobs N] [--backends redis,memory] [--concurrency 1,10,100] "
               "[--only bulk_add,process,latency_200]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.repeat = 3;
  bench_util::parse_pairs(
      argc, argv,
      [&](std::string const& name, std::string const& value) {
        if (o.take(name, value)) return true;
        if (name == "--jobs")
          o.jobs = std::stoi(value);
        else if (name == "--bulk")
          o.bulk = std::stoi(value);
        else if (name == "--latency-jobs")
          o.latency_jobs = std::stoi(value);
        else if (name == "--only")
          o.only = bench_util::split(value);
        else if (name == "--backends")
          o.backends = bench_util::split(value);
        else if (name == "--concurrency") {
          o.concurrency.clear();
          for (auto const& c : bench_util::split(value)) o.concurrency.push_back(std::stoi(c));
        } else
          return false;
        return true;
      },
      usage);
  if (o.repeat < 1 || o.jobs < 1 || o.bulk < 1 || o.latency_jobs < 1) usage();
  try {
    for (auto const& b : o.backends) {
      asio::io_context ioc;
      if (b == "redis") {
        RedisConfig cfg;
        cfg.host = o.host;
        cfg.port = o.port;
        RedisBackend redis(ioc, cfg);
        run_all(ioc, redis, "rediskit-redis", o);
        redis.close();
      } else if (b == "memory") {
        MemoryBackend memory(ioc);
        run_all(ioc, memory, "rediskit-memory", o);
      } else {
        usage();
      }
    }
  } catch (std::exception const& e) {
    std::fprintf(stderr, "job_queue_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
