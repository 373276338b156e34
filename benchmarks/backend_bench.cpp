// backend_bench: the same typed-command workloads on MemoryBackend and on RedisBackend (a real
// redis-server), through the public async API (C++20 coroutines, use_awaitable).
//
// Workloads (each on both backends unless --backends says otherwise):
//   get_1 / set_1 / hgetall_1 / zincrby_1
//              one coroutine, sequential co_await of one command: latency-bound on Redis
//   get_c64 / zincrby_c64
//              64 coroutines on one backend, each looping one command: Redis pipelines them
//              on its main connection (the pipelined throughput the goal compares against)
//   get_c256   256 coroutines, each GET of the next of the 100 keys (on a cluster: every
//              master's pipeline)
//   get_b100 / set_b100 / hgetall_b100 / zincrby_b100
//              one coroutine, each operation a range of 100 commands (one round trip on Redis)
//   profiles_b100
//              hgetall_b100 on the profile hashes connection_bench, hiredis_bench and
//              peers/node_bench.mjs read (rediskit:bench:user:N, longer values): the typed
//              batch read that benchmarks/run_all.sh compares with the Node clients
// Figures are commands per second (a batch of 100 counts 100). Each workload: warm-up, then
// `repeat` timed runs of `seconds`; the median run is reported with the min-max spread.
// Output: one machine-readable line per workload and backend, then a markdown table with
// memory/redis ratios.
//
// Allocations: the program counts every heap allocation (malloc and its family, which
// operator new and Asio's recycling allocator use) and prints allocs_per_cmd, over the timed
// runs, for each workload (not under a sanitizer, which owns malloc: there it prints -1).
//
// Usage: backend_bench [--port P] [--host H] [--seconds S] [--repeat R] [--warmup S]
//                      [--only name,...] [--backends memory,redis,fallback,cluster]
//                      [--cluster-port P]...
// (host and port default to REDIS_HOST / REDIS_PORT, else 127.0.0.1:6379). `fallback` is
// FallbackBackend<> on that server (on Redis all along: the cost of its routing). `cluster` is
// ClusterBackend on the cluster whose seed node listens on --cluster-port (on --host); each
// --cluster-port adds a cluster, reported as cluster_<masters>m.
// benchmarks/run_backend.sh starts a throwaway server, pins server and client, and runs it;
// benchmarks/run_cluster.sh does the same with a one-master and a three-master cluster.
#include <rediskit/backend/cluster_backend.hpp>
#include <rediskit/backend/fallback_backend.hpp>
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/commands.hpp>

#include "bench_util.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace rediskit;
using SteadyTime = std::chrono::steady_clock;

// ---- the counting allocator --------------------------------------------------------------------
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define REDISKIT_BENCH_NO_COUNT 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define REDISKIT_BENCH_NO_COUNT 1
#endif

#if !defined(REDISKIT_BENCH_NO_COUNT) && defined(__GLIBC__)
// glibc lets a program interpose malloc and forward to its __libc_ entry points; one io_context
// thread, but relaxed atomics keep any other thread's allocations counted too.
static std::atomic<std::uint64_t> g_allocations{0};
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* malloc(std::size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t size) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
void* memalign(std::size_t align, std::size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(align, n);
}
void* aligned_alloc(std::size_t align, std::size_t n) noexcept { return memalign(align, n); }
int posix_memalign(void** out, std::size_t align, std::size_t n) noexcept {
  void* p = memalign(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}
static std::int64_t allocations() {
  return static_cast<std::int64_t>(g_allocations.load(std::memory_order_relaxed));
}
#else
static std::int64_t allocations() { return -1; }
#endif

namespace {

using bench_util::split;

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  double seconds = 1.0;
  double warmup = 0.5;
  int repeat = 5;
  std::vector<std::string> only;
  std::vector<std::string> backends{"memory", "redis"};
  std::vector<std::uint16_t> cluster_ports;
  bool wants(std::string const& n) const {
    return only.empty() || std::find(only.begin(), only.end(), n) != only.end();
  }
  bool uses(std::string const& b) const {
    return std::find(backends.begin(), backends.end(), b) != backends.end();
  }
};

// The data every workload reads: 100 keys, 100 six-field profile hashes, a leaderboard.
struct Data {
  std::vector<std::string> keys, hashes;
  std::vector<std::pair<std::string, std::string>> profile{
      {"id", "user:000"},         {"name", "Alice Martin"}, {"status", "online"},
      {"matricule", "MAT-00042"}, {"avatar", "a.png"},      {"last_seen", "1732280000"}};
  // The peers' profiles (connection_bench's setup, byte for byte).
  std::vector<std::string> peer_hashes;
  std::vector<std::vector<std::pair<std::string, std::string>>> peer_profiles;
  Data() {
    for (int i = 0; i < 100; ++i) {
      auto const n = std::to_string(i);
      keys.push_back("bench:k:" + n);
      hashes.push_back("bench:user:profile:" + n);
      peer_hashes.push_back("rediskit:bench:user:" + n);
      peer_profiles.push_back({{"id", n},
                               {"name", "User " + n},
                               {"email", "user" + n + "@example.com"},
                               {"status", "online"},
                               {"avatar", "https://cdn.example.com/avatars/" + n + ".png"},
                               {"last_seen", "1700000000"}});
    }
  }
};

// One timed run: `callers` coroutines each co_await body(db) (one operation of `per_op`
// commands: the backend's own awaitable, no wrapper coroutine) until `seconds` passed.
struct Run {
  double rate = 0;          // commands per second
  std::uint64_t cmds = 0;   // commands run
  std::int64_t allocs = 0;  // heap allocations meanwhile (-1: not counted)
};

template <class B, class Body>
Run timed_run(asio::io_context& ioc, B& db, Body const& body, int callers, std::size_t per_op,
              double seconds) {
  auto const allocs_before = allocations();
  std::uint64_t ops = 0;
  bool stop = false;
  int running = callers;
  auto const start = SteadyTime::now();
  auto const end = start + std::chrono::duration_cast<SteadyTime::duration>(
                               std::chrono::duration<double>(seconds));
  for (int c = 0; c < callers; ++c) {
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          while (!stop) {
            for (int i = 0; i < 16 && !stop; ++i) {
              co_await body(db);
              ++ops;
            }
            if (SteadyTime::now() >= end) stop = true;
          }
          if (--running == 0) ioc.stop();
        },
        [](std::exception_ptr e) {
          if (e) std::rethrow_exception(e);
        });
  }
  ioc.restart();
  ioc.run();  // until the last caller stops it (RedisBackend's reader keeps work alive)
  double const elapsed = std::chrono::duration<double>(SteadyTime::now() - start).count();
  auto const allocs_after = allocations();
  return {static_cast<double>(ops * per_op) / elapsed, ops * per_op,
          allocs_before < 0 ? -1 : allocs_after - allocs_before};
}

struct Figure {
  double median = 0, min = 0, max = 0;
  double allocs_per_cmd = -1;  // over every timed run (the spawns of the callers included)
  std::uint64_t all_cmds = 0;  // commands run, warm-up included (Ir per command under callgrind)
};

template <class B, class Body>
Figure measure(Options const& o, asio::io_context& ioc, B& db, Body const& body, int callers,
               std::size_t per_op) {
  std::uint64_t const warm = timed_run(ioc, db, body, callers, per_op, o.warmup).cmds;
  std::vector<double> rates;
  std::uint64_t cmds = 0;
  std::int64_t allocs = 0;
  for (int r = 0; r < o.repeat; ++r) {
    auto const run = timed_run(ioc, db, body, callers, per_op, o.seconds);
    rates.push_back(run.rate);
    cmds += run.cmds;
    allocs = (allocs < 0 || run.allocs < 0) ? -1 : allocs + run.allocs;
  }
  std::sort(rates.begin(), rates.end());
  double const per_cmd =
      allocs < 0 || cmds == 0 ? -1 : static_cast<double>(allocs) / static_cast<double>(cmds);
  return {rates[rates.size() / 2], rates.front(), rates.back(), per_cmd, warm + cmds};
}

template <class B>
asio::awaitable<void> prepare(B& db, Data const& d) {
  for (auto const& k : d.keys) co_await db.async_exec(cmd::set{.key = k, .value = "bar"}, asio::use_awaitable);
  for (auto const& h : d.hashes)
    co_await db.async_exec(cmd::hset{.key = h, .fields = d.profile}, asio::use_awaitable);
  for (std::size_t i = 0; i < d.peer_hashes.size(); ++i)
    co_await db.async_exec(cmd::hset{.key = d.peer_hashes[i], .fields = d.peer_profiles[i]},
                           asio::use_awaitable);
  co_await db.async_exec(cmd::del{.keys = "bench:board"}, asio::use_awaitable);
}

template <class B>
std::map<std::string, std::pair<Figure, int>> run_all(Options const& o, asio::io_context& ioc,
                                                       B& db, Data const& d) {
  bool ready = false;
  asio::co_spawn(ioc, prepare(db, d), [&](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
    ready = true;
  });
  ioc.restart();
  while (!ready) ioc.run_one();

  std::vector<cmd::get> gets;
  std::vector<cmd::set> sets;
  std::vector<cmd::hgetall> hgetalls;
  std::vector<cmd::zincrby> zincrs;
  for (auto const& k : d.keys) {
    gets.push_back({k});
    sets.push_back({.key = k, .value = "bar"});
  }
  for (auto const& h : d.hashes) hgetalls.push_back({h});
  std::vector<cmd::hgetall> profiles;
  for (auto const& h : d.peer_hashes) profiles.push_back({h});
  for (std::size_t i = 0; i < d.keys.size(); ++i)
    zincrs.push_back({.key = "bench:board", .increment = 1, .member = d.hashes[i]});

  std::map<std::string, std::pair<Figure, int>> out;
  int order = 0;
  auto use = asio::use_awaitable;
  auto run = [&](std::string const& name, int callers, std::size_t per_op, auto body) {
    if (o.wants(name)) out[name] = {measure(o, ioc, db, body, callers, per_op), order++};
  };
  run("get_1", 1, 1, [&](B& b) { return b.async_exec(gets[0], use); });
  run("set_1", 1, 1, [&](B& b) { return b.async_exec(sets[0], use); });
  run("hgetall_1", 1, 1, [&](B& b) { return b.async_exec(hgetalls[0], use); });
  run("zincrby_1", 1, 1, [&](B& b) { return b.async_exec(zincrs[0], use); });
  run("get_c64", 64, 1, [&](B& b) { return b.async_exec(gets[0], use); });
  std::size_t next = 0;
  run("get_c256", 256, 1, [&](B& b) { return b.async_exec(gets[next++ % gets.size()], use); });
  run("zincrby_c64", 64, 1, [&](B& b) { return b.async_exec(zincrs[0], use); });
  run("get_b100", 1, 100, [&](B& b) { return b.async_exec(gets, use); });
  run("set_b100", 1, 100, [&](B& b) { return b.async_exec(sets, use); });
  run("hgetall_b100", 1, 100, [&](B& b) { return b.async_exec(hgetalls, use); });
  run("zincrby_b100", 1, 100, [&](B& b) { return b.async_exec(zincrs, use); });
  run("profiles_b100", 1, 100, [&](B& b) { return b.async_exec(profiles, use); });
  return out;
}

void print_line(std::string const& backend, std::string const& name, Figure const& f,
                int repeat) {
  std::printf(
      "workload=%s backend=%s unit=cmds cmds_per_s=%.0f min=%.0f max=%.0f runs=%d "
      "allocs_per_cmd=%.3f all_cmds=%llu\n",
      name.c_str(), backend.c_str(), f.median, f.min, f.max, repeat, f.allocs_per_cmd,
      static_cast<unsigned long long>(f.all_cmds));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (char const* h = std::getenv("REDIS_HOST")) o.host = h;
  if (char const* p = std::getenv("REDIS_PORT")) o.port = static_cast<std::uint16_t>(std::atoi(p));
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string const a = argv[i], v = argv[i + 1];
    if (a == "--port") o.port = static_cast<std::uint16_t>(std::atoi(v.c_str()));
    else if (a == "--host") o.host = v;
    else if (a == "--seconds") o.seconds = std::atof(v.c_str());
    else if (a == "--warmup") o.warmup = std::atof(v.c_str());
    else if (a == "--repeat") o.repeat = std::atoi(v.c_str());
    else if (a == "--only") o.only = split(v);
    else if (a == "--backends") o.backends = split(v);
    else if (a == "--cluster-port")
      o.cluster_ports.push_back(static_cast<std::uint16_t>(std::atoi(v.c_str())));
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  Data const d;
  asio::io_context ioc(1);
  using Results = std::map<std::string, std::pair<Figure, int>>;
  std::vector<std::pair<std::string, Results>> all;  // backend name -> figures, in order
  auto report = [&](std::string name, Results r) {
    for (auto const& [n, f] : r) print_line(name, n, f.first, o.repeat);
    all.emplace_back(std::move(name), std::move(r));
  };
  if (o.uses("memory")) {
    MemoryBackend db(ioc);
    report("memory", run_all(o, ioc, db, d));
  }
  if (o.uses("redis")) {
    RedisConfig cfg;
    cfg.host = o.host;
    cfg.port = o.port;
    RedisBackend db(ioc, cfg);
    report("redis", run_all(o, ioc, db, d));
  }
  if (o.uses("fallback")) {  // FallbackBackend on the same server: its cost over RedisBackend
    RedisConfig cfg;
    cfg.host = o.host;
    cfg.port = o.port;
    FallbackBackend<> db(ioc, cfg);
    ioc.restart();  // the backends before stopped it
    db.async_connect([](boost::system::error_code) {});
    while (!db.on_primary() && ioc.run_one_for(std::chrono::seconds(5)) > 0) {
    }
    ioc.restart();
    if (!db.on_primary()) {
      std::cerr << "fallback: Redis did not answer\n";
      return 1;
    }
    report("fallback", run_all(o, ioc, db, d));
  }
  if (o.uses("cluster")) {
    for (std::size_t i = 0; i < o.cluster_ports.size(); ++i) {
      ClusterConfig cfg;
      cfg.nodes = {o.host + ":" + std::to_string(o.cluster_ports[i])};
      ClusterBackend db(ioc, cfg);
      auto r = run_all(o, ioc, db, d);
      char masters[64];
      std::snprintf(masters, sizeof masters, "cluster_%zum", db.slot_map().owners().size());
      report(masters, std::move(r));
    }
  }
  if (all.empty()) return 0;
  auto find = [&](std::string const& b) -> Results const* {
    for (auto const& [n, r] : all)
      if (n == b) return &r;
    return nullptr;
  };
  std::vector<std::pair<int, std::string>> names;
  for (auto const& [n, f] : all.front().second) names.push_back({f.second, n});
  std::sort(names.begin(), names.end());
  // One column per backend; ratios to RedisBackend (memory / redis, cluster / redis).
  std::printf("\n| workload |");
  for (auto const& [b, _] : all) std::printf(" %s cmds/s (min-max) |", b.c_str());
  Results const* redis = find("redis");
  for (auto const& [b, _] : all)
    if (redis && b != "redis") std::printf(" %s / redis |", b.c_str());
  std::printf(" allocations per command (");
  for (std::size_t i = 0; i < all.size(); ++i) std::printf("%s%s", i ? " / " : "", all[i].first.c_str());
  std::printf(") |\n|---|");
  for (std::size_t i = 0; i < all.size(); ++i) std::printf("---|");
  for (auto const& [b, _] : all)
    if (redis && b != "redis") std::printf("---|");
  std::printf("---|\n");
  for (auto const& [_, n] : names) {
    std::printf("| %s |", n.c_str());
    for (auto const& [b, r] : all) {
      auto it = r.find(n);
      if (it == r.end()) {
        std::printf(" - |");
        continue;
      }
      std::printf(" %.0f (%.0f-%.0f) |", it->second.first.median, it->second.first.min,
                  it->second.first.max);
    }
    for (auto const& [b, r] : all) {
      if (!redis || b == "redis") continue;
      auto it = r.find(n);
      auto jt = redis->find(n);
      if (it == r.end() || jt == redis->end())
        std::printf(" - |");
      else
        std::printf(" %.2fx |", it->second.first.median / jt->second.first.median);
    }
    std::printf(" ");
    for (std::size_t i = 0; i < all.size(); ++i) {
      auto it = all[i].second.find(n);
      if (i) std::printf(" / ");
      if (it == all[i].second.end() || it->second.first.allocs_per_cmd < 0)
        std::printf("-");
      else
        std::printf("%.3f", it->second.first.allocs_per_cmd);
    }
    std::printf(" |\n");
  }
  return 0;
}
