// connection_bench: throughput and latency of rediskit::Connection against a real redis-server.
//
// A plain timed loop (no benchmark framework). Workloads, all on ONE connection:
//   rtt_1              one coroutine, sequential GET round trips (3-byte value): ops/s, p50/p99
//   callers_N          N = 1, 16, 64, 256 coroutines each looping GETs: total ops/s and the
//                      pipelining factor (requests_sent / writes) the connection achieved
//   batch_100_hgetall  one request holding 100 HGETALL of 6-field "user profile" hashes,
//                      replies into a resp3::Tree (adapt.hpp has no "N replies into one
//                      vector" response: Tree is the response that takes any number of replies)
//   batch_100_hgetall_maps
//                      the same request adapted straight into 100 std::unordered_map (a
//                      std::tuple of 100 maps, spelled with mp11::mp_repeat_c)
// Each workload: a warm-up (default 1 s), then `repeat` runs of `seconds`; the median run is
// reported with the min-max spread, one machine-readable line per workload:
//   workload=callers_64 unit=ops ops_per_s=... min=... max=... pipelining=... runs=...
// then a human table. A request is built once per caller and re-sent (as redis-benchmark does),
// so the figures are the connection's, not the request builder's.
//
// Usage: connection_bench [--port P] [--host H] [--seconds S] [--repeat R] [--warmup S]
//                         [--only name,name...] [--tls-ca FILE [--tls-server-name N]]
// (host and port default to REDIS_HOST / REDIS_PORT, else 127.0.0.1:6379)
// --tls-ca: connect with TLS (P is then the server's tls-port), trusting the CA in FILE, and
// verifying the host name (or N). `total=` in each line is the number of units of the timed
// runs (for instruction counts per GET under callgrind).
// benchmarks/run_connection.sh runs it next to hiredis and redis-benchmark;
// benchmarks/run_tls.sh runs it over TLS and plain TCP on one server.
#include <rediskit/connection.hpp>
#include <rediskit/tls.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/mp11/algorithm.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using rediskit::Connection;
using rediskit::resp3::Request;

namespace {

constexpr std::string_view get_key = "rediskit:bench:get";
constexpr int hashes = 100;

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  double seconds = 2.0;
  double warmup = 1.0;
  int repeat = 5;
  std::vector<std::string> only;  // empty: every workload
  std::string tls_ca;             // not empty: TLS
  std::string tls_server_name;

  bool wants(std::string_view name) const {
    return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
  }
};

// What one timed run did.
struct Sample {
  std::uint64_t units = 0;       // GETs, or batches
  std::vector<double> lat_us{};  // per round trip, for the sequential workloads
};

struct Result {
  std::string name;
  std::string unit;                 // "ops" or "batches"
  std::vector<double> rates;        // units per second, one per run
  double median = 0, min = 0, max = 0;
  double p50_us = -1, p99_us = -1;  // < 0: not measured
  double pipelining = -1;           // requests_sent / writes over the timed runs
  std::uint64_t total = 0;          // units over the timed runs
};

Clock::time_point after(double s) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

std::string user_key(int i) { return "rediskit:bench:user:" + std::to_string(i); }

asio::awaitable<void> setup(Connection& conn) {
  Request req;
  req.push("SET", get_key, "abc");
  for (int i = 0; i < hashes; ++i) {
    std::string const avatar = "https://cdn.example.com/avatars/" + std::to_string(i) + ".png";
    std::string const email = "user" + std::to_string(i) + "@example.com";
    std::string const name = "User " + std::to_string(i);
    req.push("HSET", user_key(i), "id", i, "name", name, "email", email, "status", "online",
             "avatar", avatar, "last_seen", 1700000000);
  }
  rediskit::resp3::Ignore ignore;
  co_await conn.async_exec(req, ignore, asio::use_awaitable);
}

// ---- workloads: each runs until `deadline` ------------------------------------------------

asio::awaitable<Sample> rtt_1(Connection& conn, Clock::time_point deadline, int) {
  Sample s;
  s.lat_us.reserve(1 << 18);
  Request req;
  req.push("GET", get_key);
  std::string value;
  auto t = Clock::now();
  while (t < deadline) {
    co_await conn.async_exec(req, value, asio::use_awaitable);
    auto const t2 = Clock::now();
    s.lat_us.push_back(std::chrono::duration<double, std::micro>(t2 - t).count());
    t = t2;
    ++s.units;
  }
  if (value != "abc") throw std::runtime_error("rtt_1: unexpected value " + value);
  co_return s;
}

// The callers stop when a timer fires at the deadline (no clock read per request).
asio::awaitable<void> caller(Connection& conn, bool const& stop, std::uint64_t& ops) {
  Request req;
  req.push("GET", get_key);
  std::string value;
  while (!stop) {
    co_await conn.async_exec(req, value, asio::use_awaitable);
    ++ops;
  }
  if (value != "abc") throw std::runtime_error("callers: unexpected value " + value);
}

asio::awaitable<Sample> callers(Connection& conn, Clock::time_point deadline, int n) {
  auto ex = co_await asio::this_coro::executor;
  Sample s;
  bool stop = false;
  asio::steady_timer stopper(ex, deadline);
  stopper.async_wait([&stop](boost::system::error_code ec) {
    if (!ec) stop = true;  // cancelled: this frame may be gone, touch nothing
  });
  asio::steady_timer all_done(ex, Clock::time_point::max());
  int running = n;
  std::exception_ptr failure;
  for (int i = 0; i < n; ++i) {
    asio::co_spawn(ex, caller(conn, stop, s.units), [&](std::exception_ptr e) {
      if (e && !failure) failure = e;
      if (e) stop = true;
      if (--running == 0) all_done.cancel();
    });
  }
  co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
  stopper.cancel();
  if (failure) std::rethrow_exception(failure);
  co_return s;
}

Request hgetall_batch() {
  Request req;
  for (int i = 0; i < hashes; ++i) req.push("HGETALL", user_key(i));
  return req;
}

asio::awaitable<Sample> batch_tree(Connection& conn, Clock::time_point deadline, int) {
  Sample s;
  Request const req = hgetall_batch();
  rediskit::resp3::Tree tree;
  tree.reserve(hashes * 13);
  auto t = Clock::now();
  while (t < deadline) {
    tree.clear();
    co_await conn.async_exec(req, tree, asio::use_awaitable);
    auto const t2 = Clock::now();
    s.lat_us.push_back(std::chrono::duration<double, std::micro>(t2 - t).count());
    t = t2;
    ++s.units;
  }
  if (tree.size() != hashes * 13) throw std::runtime_error("batch_100_hgetall: wrong tree size");
  co_return s;
}

using Profile = std::unordered_map<std::string, std::string>;
using Profiles = boost::mp11::mp_repeat_c<std::tuple<Profile>, hashes>;

asio::awaitable<Sample> batch_maps(Connection& conn, Clock::time_point deadline, int) {
  Sample s;
  Request const req = hgetall_batch();
  auto profiles = std::make_unique<Profiles>();
  auto t = Clock::now();
  while (t < deadline) {
    co_await conn.async_exec(req, *profiles, asio::use_awaitable);
    auto const t2 = Clock::now();
    s.lat_us.push_back(std::chrono::duration<double, std::micro>(t2 - t).count());
    t = t2;
    ++s.units;
  }
  auto const& last = std::get<hashes - 1>(*profiles);
  if (last.size() != 6 || last.at("id") != std::to_string(hashes - 1))
    throw std::runtime_error("batch_100_hgetall_maps: wrong profile");
  co_return s;
}

// ---- timing ------------------------------------------------------------------------------

using Workload = asio::awaitable<Sample> (*)(Connection&, Clock::time_point, int);

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return -1;
  return sorted[static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5)];
}

asio::awaitable<Result> measure(Connection& conn, Options const& opt, std::string name,
                                std::string unit, Workload w, int arg) {
  if (opt.warmup > 0) co_await w(conn, after(opt.warmup), arg);

  Result r;
  r.name = std::move(name);
  r.unit = std::move(unit);
  std::vector<double> lat;
  auto const req0 = conn.metrics().requests_sent;
  auto const wr0 = conn.metrics().writes;
  for (int i = 0; i < opt.repeat; ++i) {
    auto const t0 = Clock::now();
    Sample s = co_await w(conn, after(opt.seconds), arg);
    double const el = std::chrono::duration<double>(Clock::now() - t0).count();
    r.rates.push_back(static_cast<double>(s.units) / el);
    r.total += s.units;
    lat.insert(lat.end(), s.lat_us.begin(), s.lat_us.end());
  }
  auto const reqs = conn.metrics().requests_sent - req0;
  auto const writes = conn.metrics().writes - wr0;
  if (writes > 0) r.pipelining = static_cast<double>(reqs) / static_cast<double>(writes);

  std::vector<double> sorted = r.rates;
  std::sort(sorted.begin(), sorted.end());
  std::size_t const n = sorted.size();
  r.median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  r.min = sorted.front();
  r.max = sorted.back();
  if (!lat.empty()) {
    std::sort(lat.begin(), lat.end());
    r.p50_us = percentile(lat, 0.50);
    r.p99_us = percentile(lat, 0.99);
  }

  std::printf("workload=%s unit=%s ops_per_s=%.0f min=%.0f max=%.0f", r.name.c_str(),
              r.unit.c_str(), r.median, r.min, r.max);
  if (r.unit == "batches") std::printf(" ms_per_batch=%.3f", 1000.0 / r.median);
  if (r.p50_us >= 0) std::printf(" p50_us=%.1f p99_us=%.1f", r.p50_us, r.p99_us);
  if (r.pipelining >= 0) std::printf(" pipelining=%.2f", r.pipelining);
  std::printf(" total=%llu runs=", static_cast<unsigned long long>(r.total));
  for (std::size_t i = 0; i < r.rates.size(); ++i) std::printf(i ? ",%.0f" : "%.0f", r.rates[i]);
  std::printf("\n");
  std::fflush(stdout);
  co_return r;
}

asio::awaitable<void> run_all(Options const& opt, std::vector<Result>& results) {
  auto ex = co_await asio::this_coro::executor;
  rediskit::ConnectionConfig cfg;
  cfg.host = opt.host;
  cfg.port = opt.port;
  cfg.tls.enabled = !opt.tls_ca.empty();
  cfg.tls.ca_file = opt.tls_ca;
  cfg.tls.server_name = opt.tls_server_name;
  Connection conn(ex, std::move(cfg));
  co_await conn.async_connect(asio::use_awaitable);
  co_await setup(conn);

  struct Entry {
    char const* name;
    char const* unit;
    Workload w;
    int arg;
  };
  Entry const entries[] = {
      {"rtt_1", "ops", &rtt_1, 1},
      {"callers_1", "ops", &callers, 1},
      {"callers_16", "ops", &callers, 16},
      {"callers_64", "ops", &callers, 64},
      {"callers_256", "ops", &callers, 256},
      {"batch_100_hgetall", "batches", &batch_tree, 0},
      {"batch_100_hgetall_maps", "batches", &batch_maps, 0},
  };
  for (auto const& e : entries)
    if (opt.wants(e.name))
      results.push_back(co_await measure(conn, opt, e.name, e.unit, e.w, e.arg));
  conn.close();
}

void print_table(std::vector<Result> const& results, Options const& opt) {
  std::printf("\nrediskit::Connection%s, %d runs of %.1f s after %.1f s warm-up (median, min-max)\n\n",
              opt.tls_ca.empty() ? "" : " over TLS", opt.repeat, opt.seconds, opt.warmup);
  std::printf("%-24s %14s %25s %8s %11s %11s %11s\n", "workload", "median", "min - max",
              "spread", "p50 us", "p99 us", "pipelining");
  for (auto const& r : results) {
    char range[64], p50[32] = "-", p99[32] = "-", pf[32] = "-";
    std::snprintf(range, sizeof range, "%.0f - %.0f", r.min, r.max);
    if (r.p50_us >= 0) {
      std::snprintf(p50, sizeof p50, "%.1f", r.p50_us);
      std::snprintf(p99, sizeof p99, "%.1f", r.p99_us);
    }
    if (r.pipelining >= 0) std::snprintf(pf, sizeof pf, "%.2f", r.pipelining);
    double const spread = r.median > 0 ? 100.0 * (r.max - r.min) / r.median : 0;
    std::printf("%-24s %10.0f %-3s %25s %7.1f%% %11s %11s %11s\n", r.name.c_str(), r.median,
                r.unit == "ops" ? "/s" : "b/s", range, spread, p50, p99, pf);
  }
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: connection_bench [--port P] [--host H] [--seconds S] [--repeat R] "
               "[--warmup S] [--only name,name...] [--tls-ca FILE [--tls-server-name N]]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (char const* h = std::getenv("REDIS_HOST")) opt.host = h;
  if (char const* p = std::getenv("REDIS_PORT")) opt.port = static_cast<std::uint16_t>(std::atoi(p));
  for (int i = 1; i < argc; ++i) {
    std::string_view const a = argv[i];
    if (i + 1 >= argc) usage();
    std::string const v = argv[++i];
    if (a == "--port") opt.port = static_cast<std::uint16_t>(std::atoi(v.c_str()));
    else if (a == "--host") opt.host = v;
    else if (a == "--seconds") opt.seconds = std::atof(v.c_str());
    else if (a == "--repeat") opt.repeat = std::atoi(v.c_str());
    else if (a == "--warmup") opt.warmup = std::atof(v.c_str());
    else if (a == "--tls-ca") opt.tls_ca = v;
    else if (a == "--tls-server-name") opt.tls_server_name = v;
    else if (a == "--only") {
      std::size_t b = 0;
      while (b <= v.size()) {
        std::size_t e = v.find(',', b);
        if (e == std::string::npos) e = v.size();
        if (e > b) opt.only.push_back(v.substr(b, e - b));
        b = e + 1;
      }
    } else usage();
  }
  if (opt.repeat < 1 || opt.seconds <= 0 || opt.port == 0) usage();

  asio::io_context ioc(1);  // one thread: no locking in the scheduler
  std::vector<Result> results;
  std::exception_ptr failure;
  asio::co_spawn(ioc, run_all(opt, results), [&](std::exception_ptr e) { failure = e; });
  ioc.run();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (std::exception const& e) {
      std::fprintf(stderr, "connection_bench: %s\n", e.what());
      return 1;
    }
  }
  print_table(results, opt);
  return 0;
}
