// What the benchmark programs share: option lists and running a coroutine to its end.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>
#include <vector>

namespace bench_util {

/// "a,b,c" -> {"a", "b", "c"} (an empty item stays).
inline std::vector<std::string> split(std::string const& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto const comma = s.find(',', start);
    out.push_back(s.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

/// Runs the coroutine `fn` on `ioc` to completion; rethrows what it threw.
template <class F>
void run_coro(boost::asio::io_context& ioc, F fn) {
  bool done = false;
  std::exception_ptr error;
  boost::asio::co_spawn(ioc, std::move(fn), [&](std::exception_ptr e) {
    error = e;
    done = true;
  });
  ioc.restart();
  while (!done)
    ioc.run_one();
  if (error) std::rethrow_exception(error);
}

/// Runs the coroutines `make(i)` (each a function object returning an awaitable) for i in
/// [0, n) side by side on `ioc`, until every one has finished; rethrows the first exception.
template <class Make>
void run_concurrently(boost::asio::io_context& ioc, int n, Make make) {
  int running = n;
  std::exception_ptr error;
  for (int i = 0; i < n; ++i)
    boost::asio::co_spawn(ioc, make(i), [&](std::exception_ptr e) {
      if (e && !error) error = e;
      --running;
    });
  ioc.restart();
  while (running > 0)
    ioc.run_one();
  if (error) std::rethrow_exception(error);
}

/// The `percent`th percentile of `sorted` (ascending): its element at size * percent / 100
/// (nearest rank below), 0 when empty.
inline double percentile(std::vector<double> const& sorted, std::size_t percent) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, sorted.size() * percent / 100)];
}

/// What every benchmark program takes: where the server is (REDIS_HOST, REDIS_PORT, then
/// --host, --port), how long and how often to measure (--seconds, --repeat, --warmup), and the
/// number of concurrent callers (--callers).
struct CommonOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  double seconds = 2;
  int repeat = 5;
  double warmup = 1;
  int callers = 64;

  CommonOptions() {
    if (char const* h = std::getenv("REDIS_HOST")) host = h;
    if (char const* p = std::getenv("REDIS_PORT")) port = static_cast<std::uint16_t>(std::atoi(p));
  }

  /// Takes "--name value" when the name is one of the above; false otherwise.
  bool take(std::string const& name, std::string const& value) {
    if (name == "--host")
      host = value;
    else if (name == "--port")
      port = static_cast<std::uint16_t>(std::stoi(value));
    else if (name == "--seconds")
      seconds = std::stod(value);
    else if (name == "--repeat")
      repeat = std::stoi(value);
    else if (name == "--warmup")
      warmup = std::stod(value);
    else if (name == "--callers")
      callers = std::stoi(value);
    else
      return false;
    return true;
  }

  /// The values above are usable.
  bool valid() const { return repeat >= 1 && seconds > 0 && warmup >= 0 && callers >= 1; }
};

/// Walks argv's "--name value" pairs: `take(name, value)` returns false for a name it does not
/// know, which, like a name without a value, calls `usage()` (which does not return).
template <class Take, class Usage>
void parse_pairs(int argc, char** argv, Take take, Usage usage) {
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) usage();
    if (!take(std::string(argv[i]), std::string(argv[i + 1]))) usage();
  }
}

}  // namespace bench_util
