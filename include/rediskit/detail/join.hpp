// rediskit::detail::join_all: one completion for N operations started together.
//
//   detail::join_all(ex, std::move(handler), n, [&](auto done) {
//     for (...) something.async_x(done);          // done(error_code), once per operation
//   });
//
// The handler, erased, gets the first error (or success) once all N have called `done`,
// through its associated executor (else `fallback`), never inside join_all. `done` is a small
// copyable function object; n == 0 completes at once (posted).
#pragma once

#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <memory>
#include <utility>

namespace rediskit::detail {

struct Join {
  AnyHandler<void(boost::system::error_code)> handler;
  boost::asio::any_io_executor ex;
  std::size_t left = 0;
  boost::system::error_code first;
  void done(boost::system::error_code ec) {
    if (ec && !first) first = ec;
    if (--left == 0) post_handler(ex, std::move(handler), first);
  }
};

template <class Handler, class Start>
void join_all(boost::asio::any_io_executor const& fallback, Handler handler, std::size_t n,
              Start&& start) {
  auto j = std::make_shared<Join>();
  j->ex = boost::asio::get_associated_executor(handler, fallback);
  j->handler = std::move(handler);
  if (n == 0) return post_handler(j->ex, std::move(j->handler), boost::system::error_code{});
  j->left = n;
  start([j](boost::system::error_code ec) { j->done(ec); });
}

}  // namespace rediskit::detail
