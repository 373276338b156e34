// rate_limiter_bench: RateLimiter checks (seed 002's rate limiting) on RedisBackend (a real
// redis-server) and MemoryBackend, the workloads of peers/rate_limiter_bench.mjs, which runs
// rate-limiter-flexible on ioredis against the same server (same keys, same timing, same
// output format).
//
// Workloads, per backend and algorithm (gcra, fixed: RateLimit::gcra / fixed_window):
//   callers_64   64 coroutines on one io_context thread, each awaiting one check at a time
//                (cost 1, endpoint "api", user u<i> for i cycling over --users users): checks/s
//   rtt_1        one coroutine, one check at a time: checks/s, p50 and p99 latency in µs
// The limit is generous (1 000 000 per 60 s per user): every check is allowed, as a service
// under normal load sees them; what is measured is the check's own cost (one EVALSHA round
// trip).
// Each workload: a warm-up, then `repeat` timed runs of `seconds`; the median run is reported
// with the min-max spread, one line per workload:
//   system=rediskit-redis algo=gcra workload=callers_64 ops_per_s=... min=... max=... runs=...
//   system=rediskit-redis algo=gcra workload=rtt_1 ops_per_s=... p50_us=... p99_us=...
//
// Usage: rate_limiter_bench [--host H] [--port P] [--seconds S] [--repeat R] [--warmup S]
//                           [--callers N] [--users N] [--backends redis,memory]
//                           [--algorithms gcra,fixed]
// (host and port default to REDIS_HOST / REDIS_PORT, else 127.0.0.1:6379). The keys it writes
// (ratelimit:u*:api) expire within 60 s; use a throwaway server (benchmarks/run_rate_limiter.sh).

#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/services/rate_limiter.hpp>

#include "bench_util.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace rediskit;
using SteadyTime = std::chrono::steady_clock;

namespace {

using bench_util::percentile;
using bench_util::run_concurrently;
using bench_util::split;

struct Options : bench_util::CommonOptions {
  int users = 10'000;
  std::vector<std::string> backends{"redis", "memory"};
  std::vector<std::string> algorithms{"gcra", "fixed"};
};

struct Run {
  double ops_per_s = 0, p50_us = 0, p99_us = 0;
};

// `callers` coroutines each checking until `seconds` have passed; with `latency`, every check
// is timed.
template <class B>
Run run_once(asio::io_context& ioc, RateLimiter<B>& limiter, std::vector<std::string> const& users,
             int callers, double seconds, bool latency) {
  auto const end = SteadyTime::now() + std::chrono::duration_cast<SteadyTime::duration>(
                                           std::chrono::duration<double>(seconds));
  std::uint64_t checks = 0, denied = 0;
  std::size_t next = 0;
  std::vector<double> us;
  auto const start = SteadyTime::now();
  run_concurrently(ioc, callers, [&](int) {
    return [&]() -> asio::awaitable<void> {
      while (SteadyTime::now() < end) {
        auto const& user = users[next++ % users.size()];
        auto const t0 = SteadyTime::now();
        auto const r = co_await limiter.async_check("api", RateSubject::user(user), 1,
                                                    asio::use_awaitable);
        if (latency)
          us.push_back(
              std::chrono::duration<double, std::micro>(SteadyTime::now() - t0).count());
        denied += r.allowed ? 0 : 1;
        ++checks;
      }
    };
  });
  if (denied != 0)
    throw std::runtime_error("a check was denied: the limit is meant to be generous");
  Run r;
  r.ops_per_s = static_cast<double>(checks) /
                std::chrono::duration<double>(SteadyTime::now() - start).count();
  if (!us.empty()) {
    std::sort(us.begin(), us.end());
    r.p50_us = percentile(us, 50);
    r.p99_us = percentile(us, 99);
  }
  return r;
}

template <class B>
void bench(Options const& o, asio::io_context& ioc, B& db, std::string const& system,
           std::string const& algo) {
  RateLimiterOptions ro;
  ro.endpoints["api"] = {
      .user = algo == "gcra" ? RateLimit::gcra(1'000'000, std::chrono::seconds(60))
                             : RateLimit::fixed_window(1'000'000, std::chrono::seconds(60))};
  RateLimiter<B> limiter(db, std::move(ro));
  std::vector<std::string> users;
  for (int i = 0; i < o.users; ++i)
    users.push_back("u" + std::to_string(i));
  for (int callers : {o.callers, 1}) {
    bool const latency = callers == 1;
    run_once(ioc, limiter, users, callers, o.warmup, latency);
    std::vector<Run> runs;
    for (int i = 0; i < o.repeat; ++i)
      runs.push_back(run_once(ioc, limiter, users, callers, o.seconds, latency));
    std::sort(runs.begin(), runs.end(),
              [](Run const& a, Run const& b) { return a.ops_per_s < b.ops_per_s; });
    Run const& med = runs[runs.size() / 2];
    if (latency)
      std::printf(
          "system=%s algo=%s workload=rtt_1 ops_per_s=%.0f p50_us=%.1f p99_us=%.1f "
          "min=%.0f max=%.0f runs=%zu\n",
          system.c_str(), algo.c_str(), med.ops_per_s, med.p50_us, med.p99_us,
          runs.front().ops_per_s, runs.back().ops_per_s, runs.size());
    else
      std::printf(
          "system=%s algo=%s workload=callers_%d ops_per_s=%.0f min=%.0f max=%.0f "
          "runs=%zu\n",
          system.c_str(), algo.c_str(), callers, med.ops_per_s, runs.front().ops_per_s,
          runs.back().ops_per_s, runs.size());
    std::fflush(stdout);
  }
  auto const s = limiter.stats();
  if (s.insurance_checks != 0 || s.errors != 0)
    throw std::runtime_error("checks were answered by insurance or failed: the figures are void");
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: rate_limiter_bench [--host H] [--port P] [--seconds S] [--repeat R] "
               "[--warmup S] [--callers N] [--users N] [--backends redis,memory] "
               "[--algorithms gcra,fixed]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  bench_util::parse_pairs(
      argc, argv,
      [&](std::string const& a, std::string const& v) {
        if (o.take(a, v)) return true;
        if (a == "--users")
          o.users = std::stoi(v);
        else if (a == "--backends")
          o.backends = split(v);
        else if (a == "--algorithms")
          o.algorithms = split(v);
        else
          return false;
        return true;
      },
      usage);
  if (!o.valid() || o.users < 1) usage();
  asio::io_context ioc;
  for (auto const& b : o.backends) {
    for (auto const& algo : o.algorithms) {
      if (algo != "gcra" && algo != "fixed") usage();
      if (b == "redis") {
        RedisConfig cfg;
        cfg.host = o.host;
        cfg.port = o.port;
        RedisBackend db(ioc, cfg);
        bench(o, ioc, db, "rediskit-redis", algo);
      } else if (b == "memory") {
        MemoryBackend db(ioc);
        bench(o, ioc, db, "rediskit-memory", algo);
      } else {
        usage();
      }
    }
  }
  return 0;
} catch (std::exception const& e) {
  std::fprintf(stderr, "rate_limiter_bench: %s\n", e.what());
  return 1;
}
