// rediskit test support: run a test written as a coroutine, and sleep inside one.
//
//   run([&](asio::io_context& ioc) -> asio::awaitable<void> {
//     rediskit::Connection c(ioc, cfg);
//     co_await sleep_for(20ms);
//   });
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <exception>

namespace rediskit::test {

/// The completion token of a test coroutine that checks an error: (error_code, value...).
constexpr auto as_tuple_awaitable = boost::asio::as_tuple(boost::asio::use_awaitable);

/// Runs the coroutine `make(ioc)` to completion on its own io_context, within `limit`: a hang
/// fails the test, an exception thrown by the coroutine is rethrown here.
template <class MakeCoro>
void run(MakeCoro make, std::chrono::steady_clock::duration limit = std::chrono::seconds(30)) {
  boost::asio::io_context ioc;
  bool done = false;
  std::exception_ptr failure;
  boost::asio::co_spawn(ioc, make(ioc), [&](std::exception_ptr e) {
    done = true;
    failure = e;
  });
  ioc.run_for(limit);
  BOOST_REQUIRE_MESSAGE(done, "the test coroutine did not finish in time (a hang)");
  if (failure) std::rethrow_exception(failure);
}

inline boost::asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
  boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, d);
  co_await t.async_wait(boost::asio::use_awaitable);
}

}  // namespace rediskit::test
