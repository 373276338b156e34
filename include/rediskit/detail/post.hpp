// rediskit::detail::post_handler: completes a handler through its associated executor, never
// inside the caller, with Asio's post machinery instantiated once for every handler type.
//
// asio::post(ex, append(handler, args...)) instantiates a chain of Asio templates for each
// handler type; a library with a hundred typed commands, each completing a few handler types,
// pays for that in every test and user translation unit. Here the handler and its arguments go
// into one heap object behind a virtual call, and what Asio sees is always the same function
// object and an any_io_executor. The cost at run time is one virtual call per completion.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>

#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace rediskit::detail {

struct ErasedCall {
  virtual ~ErasedCall() = default;
  virtual void call() = 0;
};

template <class Handler, class... Args>
struct ErasedCallImpl final : ErasedCall {
  template <class H, class... A>
  explicit ErasedCallImpl(H&& h, A&&... a)
      : handler(std::forward<H>(h)), args(std::forward<A>(a)...) {}
  void call() override {
    // The handler may free memory this object lives in: move everything out first.
    auto h = std::move(handler);
    auto a = std::move(args);
    std::apply(std::move(h), std::move(a));
  }
  Handler handler;
  std::tuple<Args...> args;
};

/// The one function object Asio's post sees.
struct InvokeErased {
  std::unique_ptr<ErasedCall> call;
  void operator()() {
    auto c = std::move(call);
    c->call();
  }
};

/// f() behind the virtual call (a continuation kept by a timer, a waiter, ...).
template <class F>
std::unique_ptr<ErasedCall> erase_call(F&& f) {
  return std::make_unique<ErasedCallImpl<std::decay_t<F>>>(std::forward<F>(f));
}

/// Posts handler(args...) to the handler's associated executor (or `fallback`).
template <class Handler, class... Args>
void post_handler(boost::asio::any_io_executor const& fallback, Handler&& handler,
                  Args&&... args) {
  boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler, fallback);
  using Impl = ErasedCallImpl<std::decay_t<Handler>, std::decay_t<Args>...>;
  boost::asio::post(ex, InvokeErased{std::make_unique<Impl>(std::forward<Handler>(handler),
                                                            std::forward<Args>(args)...)});
}

}  // namespace rediskit::detail
