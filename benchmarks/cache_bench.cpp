// cache_bench: CacheService<B, JsonCodec> on MemoryBackend and on RedisBackend (a real
// redis-server): what a cache read costs once the service decodes JSON into a struct.
//
// Workloads (a 6-field profile struct, JSON-encoded, ~130 bytes):
//   get_1          one coroutine, sequential async_get<Profile> of a hit (latency-bound)
//   get_c64        64 coroutines looping async_get<Profile> (pipelined on Redis)
//   set_c64        64 coroutines looping async_set(profile) with the default TTL
//   load_hit_c64   64 coroutines looping async_get_or_load<Profile> on cached keys
//   get_multi_100  one coroutine, async_get_multiple<Profile> of 100 keys (seed 001's "batch
//                  of 100 users", ~100 ms there): one round trip, 100 JSON decodes
// Figures: operations per second (a batch of 100 counts 100) and, for get_multi_100, the time
// of one batch. Median of `repeat` runs of `seconds` after a warm-up, with the min-max spread.
//
// Usage: cache_bench [--port P] [--host H] [--seconds S] [--repeat R] [--backends memory,redis]
// benchmarks/run_cache.sh starts a throwaway server, pins server and client, and runs it.
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/services/cache_service.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace rediskit;
using Clock = std::chrono::steady_clock;

struct Profile {
  std::string id;
  std::string fullName;
  std::string avatar;
  std::string matricule;
  std::string ministere;
  std::int64_t updatedAt = 0;
};
BOOST_DESCRIBE_STRUCT(Profile, (), (id, fullName, avatar, matricule, ministere, updatedAt))

namespace {

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  double seconds = 1.0;
  int repeat = 5;
  std::vector<std::string> backends{"memory", "redis"};
};

Profile profile(int i) {
  return {"user:" + std::to_string(i), "Jean Dupont " + std::to_string(i),
          "https://cdn.example.com/avatars/" + std::to_string(i) + ".jpg",
          "MAT" + std::to_string(1000 + i), "MINFOP", 1736862000000};
}

struct Result {
  double median = 0, lo = 0, hi = 0;  // operations per second
};

// Runs `body(stop)` (a coroutine returning its operation count) `repeat` times for `seconds`.
template <class Body>
Result measure(asio::io_context& ioc, Options const& o, int workers, Body body) {
  std::vector<double> rates;
  for (int r = -1; r < o.repeat; ++r) {  // r == -1: warm-up
    Clock::time_point const until =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(r < 0 ? 0.3 : o.seconds));
    std::uint64_t ops = 0;
    int done = 0;
    auto const start = Clock::now();
    for (int w = 0; w < workers; ++w)
      asio::co_spawn(ioc, body(w, until), [&](std::exception_ptr e, std::uint64_t n) {
        if (e) std::rethrow_exception(e);
        ops += n;
        ++done;
      });
    ioc.restart();
    while (done < workers) ioc.run_one();
    double const secs = std::chrono::duration<double>(Clock::now() - start).count();
    if (r >= 0) rates.push_back(static_cast<double>(ops) / secs);
  }
  std::sort(rates.begin(), rates.end());
  return {rates[rates.size() / 2], rates.front(), rates.back()};
}

template <class B>
void run(B& backend, asio::io_context& ioc, Options const& o) {
  auto use = asio::use_awaitable;
  CacheService<B> cache(backend, {.key_prefix = "bench"});
  std::vector<std::string> keys;
  for (int i = 0; i < 100; ++i) keys.push_back("user:profile:" + std::to_string(i));
  {
    std::vector<CacheEntry<Profile>> entries;
    for (int i = 0; i < 100; ++i) entries.emplace_back(keys[i], profile(i));
    bool done = false;
    cache.async_set_multiple(entries, [&](boost::system::error_code ec) {
      if (ec) std::fprintf(stderr, "set_multiple: %s\n", ec.message().c_str());
      done = true;
    });
    ioc.restart();
    while (!done) ioc.run_one();
  }
  auto report = [&](char const* name, Result r, double per_op = 1) {
    std::printf("%-8s %-14s %12.0f ops/s  (%.0f-%.0f)", B::name.data(), name, r.median * per_op,
                r.lo * per_op, r.hi * per_op);
    if (per_op > 1) std::printf("  %.3f ms per batch of 100", 1000.0 / r.median);
    std::printf("\n");
    std::fflush(stdout);
  };

  report("get_1", measure(ioc, o, 1, [&](int, Clock::time_point until) -> asio::awaitable<std::uint64_t> {
           std::uint64_t n = 0;
           while (Clock::now() < until) {
             auto p = co_await cache.template async_get<Profile>(keys[n % 100], use);
             if (!p) throw std::runtime_error("miss");
             ++n;
           }
           co_return n;
         }));
  report("get_c64", measure(ioc, o, 64, [&](int w, Clock::time_point until) -> asio::awaitable<std::uint64_t> {
           std::uint64_t n = 0;
           while (Clock::now() < until) {
             auto p = co_await cache.template async_get<Profile>(keys[(n + w) % 100], use);
             if (!p) throw std::runtime_error("miss");
             ++n;
           }
           co_return n;
         }));
  Profile const sample = profile(7);
  report("set_c64", measure(ioc, o, 64, [&](int w, Clock::time_point until) -> asio::awaitable<std::uint64_t> {
           std::uint64_t n = 0;
           while (Clock::now() < until) {
             co_await cache.async_set(keys[(n + w) % 100], sample, use);
             ++n;
           }
           co_return n;
         }));
  auto loader = [](std::string const&) -> Profile { throw std::runtime_error("cached: never called"); };
  report("load_hit_c64", measure(ioc, o, 64, [&](int w, Clock::time_point until) -> asio::awaitable<std::uint64_t> {
           std::uint64_t n = 0;
           while (Clock::now() < until) {
             co_await cache.template async_get_or_load<Profile>(keys[(n + w) % 100], loader, use);
             ++n;
           }
           co_return n;
         }));
  report("get_multi_100",
         measure(ioc, o, 1, [&](int, Clock::time_point until) -> asio::awaitable<std::uint64_t> {
           std::uint64_t n = 0;
           while (Clock::now() < until) {
             auto v = co_await cache.template async_get_multiple<Profile>(keys, use);
             if (v.size() != 100 || !v[99]) throw std::runtime_error("short batch");
             ++n;
           }
           co_return n;
         }),
         100);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (char const* h = std::getenv("REDIS_HOST")) o.host = h;
  if (char const* p = std::getenv("REDIS_PORT")) o.port = static_cast<std::uint16_t>(std::atoi(p));
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string const a = argv[i], v = argv[i + 1];
    if (a == "--port") o.port = static_cast<std::uint16_t>(std::stoi(v));
    else if (a == "--host") o.host = v;
    else if (a == "--seconds") o.seconds = std::stod(v);
    else if (a == "--repeat") o.repeat = std::stoi(v);
    else if (a == "--backends") {
      o.backends.clear();
      std::size_t s = 0;
      while (s <= v.size()) {
        auto c = v.find(',', s);
        o.backends.push_back(v.substr(s, c - s));
        if (c == std::string::npos) break;
        s = c + 1;
      }
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  auto uses = [&](char const* b) {
    return std::find(o.backends.begin(), o.backends.end(), b) != o.backends.end();
  };
  asio::io_context ioc;
  if (uses("memory")) {
    MemoryBackend memory(ioc);
    run(memory, ioc, o);
  }
  if (uses("redis")) {
    RedisConfig cfg;
    cfg.host = o.host;
    cfg.port = o.port;
    RedisBackend redis(ioc, cfg);
    run(redis, ioc, o);
    redis.close();
  }
  return 0;
}
