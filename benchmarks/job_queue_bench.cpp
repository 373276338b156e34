// job_queue_bench: JobQueue and Worker (seed 002's BullMQ queues) on RedisBackend (a real
// redis-server) and MemoryBackend. The BullMQ side by side (peers/, same server, same output
// format) is for a later session (issue 15).
//
// Workloads, per backend:
//   bulk_add        async_add_bulk of --bulk jobs at a time (one round trip each), --jobs jobs:
//                   jobs/s
//   process_c<N>    --jobs jobs added first, then one Worker at concurrency N (1, 10, 100) with
//                   a trivial handler and remove_on_complete: jobs/s from start to the last
//                   completion
// Each workload runs `repeat` times; the median is reported with the min-max spread:
//   system=rediskit-redis workload=process_c10 jobs_per_s=... min=... max=... runs=...
//
// Usage: job_queue_bench [--host H] [--port P] [--repeat R] [--jobs N] [--bulk N]
//                        [--backends redis,memory] [--concurrency 1,10,100]
// (host and port default to REDIS_HOST / REDIS_PORT, else 127.0.0.1:6379). It deletes the keys
// of its queue ({queue:bench}) before and after each run: use a throwaway server.

#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/services/job_queue.hpp>
#include <rediskit/services/worker.hpp>

#include "bench_util.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
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
};

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
  for (int r = 0; r < o.repeat; ++r) runs.push_back(bulk_add(ioc, q, o));
  report(system, "bulk_add", runs);
  for (int c : o.concurrency) {
    runs.clear();
    for (int r = 0; r < o.repeat; ++r) runs.push_back(process(ioc, q, o, c));
    report(system, "process_c" + std::to_string(c), runs);
  }
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: job_queue_bench [--host H] [--port P] [--repeat R] [--jobs N] [--bulk N] "
               "[--backends redis,memory] [--concurrency 1,10,100]\n");
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
  if (o.repeat < 1 || o.jobs < 1 || o.bulk < 1) usage();
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
