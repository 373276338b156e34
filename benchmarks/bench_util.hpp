// What the benchmark programs share: option lists and running a coroutine to its end.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <cstddef>
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

}  // namespace bench_util
