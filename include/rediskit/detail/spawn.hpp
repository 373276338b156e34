// rediskit::detail::spawn: a service operation written as a coroutine, behind the caller's
// completion token. The handler is erased first (AnyHandler), so each operation's coroutine is
// compiled once per backend, whatever the token; it completes through the handler's own
// executor, never inside the initiating call, and the handler's cancellation slot reaches the
// coroutine. An exception escaping the coroutine becomes its error_code (a system_error's code,
// else Error::operation_threw). Used by UserCache, its consumer and pre-warmer, and JobQueue.
//
//   return detail::spawn<Result>(executor, std::forward<Token>(token),
//                                [this, args]() -> awaitable<Result> { ... co_return r; });
//   // Handler: void(error_code, Result); spawn<void>: void(error_code);
//   // spawn<Outcome<X>>: void(error_code, X), the error the coroutine chose beside its value.
#pragma once

#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <string>
#include <utility>

namespace rediskit::detail {

/// Ends a coroutine with `e` (spawn's handler gets it) and the text.
[[noreturn]] inline void fail(Error e, std::string const& what) {
  throw boost::system::system_error(make_error_code(e), what);
}

/// The error_code an exception escaping an operation's coroutine stands for.
inline boost::system::error_code to_error(std::exception_ptr const& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (boost::system::system_error const& x) {
    return x.code();
  } catch (...) {
    return make_error_code(Error::operation_threw);
  }
}

/// A coroutine's result that carries its own error next to a value (a cancelled run's stats).
template <class X>
struct Outcome {
  boost::system::error_code ec;
  X value;
};

template <class R>
struct SpawnSig {
  using type = void(boost::system::error_code, R);
};
template <class X>
struct SpawnSig<Outcome<X>> {
  using type = void(boost::system::error_code, X);
};
template <>
struct SpawnSig<void> {
  using type = void(boost::system::error_code);
};

/// co_spawn's completion: the erased handler, through its own executor.
template <class R>
struct SpawnDone {
  using Sig = typename SpawnSig<R>::type;
  AnyHandler<Sig> handler;
  boost::asio::any_io_executor ex;
  using cancellation_slot_type = boost::asio::cancellation_slot;
  cancellation_slot_type get_cancellation_slot() const noexcept {
    return handler.cancellation_slot();
  }
  void operator()(std::exception_ptr e) { post_handler(ex, std::move(handler), to_error(e)); }
  template <class V>
  void operator()(std::exception_ptr e, V v) {
    post_handler(ex, std::move(handler), to_error(e), std::move(v));
  }
  template <class X>
  void operator()(std::exception_ptr e, Outcome<X> o) {
    post_handler(ex, std::move(handler), e ? to_error(e) : o.ec, std::move(o.value));
  }
};

/// An operation that runs `make()` (an awaitable<R> coroutine) on `ex` (see the top).
template <class R, class Token, class Make>
auto spawn(boost::asio::any_io_executor const& ex, Token&& token, Make make) {
  using Sig = typename SpawnDone<R>::Sig;
  return boost::asio::async_initiate<Token, Sig>(
      [](auto handler, boost::asio::any_io_executor ex, Make make) {
        SpawnDone<R> done{AnyHandler<Sig>(std::move(handler)), ex};
        boost::asio::co_spawn(ex, std::move(make)(), std::move(done));
      },
      token, ex, std::move(make));
}

/// co_await op(tuple_awaitable): {error_code, ...} instead of an exception.
inline constexpr auto tuple_awaitable = boost::asio::as_tuple(boost::asio::use_awaitable);

}  // namespace rediskit::detail
