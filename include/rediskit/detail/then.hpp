// rediskit::detail::async_then: a service operation that is one backend round trip whose reply
// is turned into the service's result, without a coroutine frame or a second post.
//
//   template <class Token = asio::deferred_t>
//   auto async_exists(std::string_view key, Token&& token = {}) {
//     return detail::async_then<void(error_code, bool)>(
//         backend_, token,
//         [k = keys_.key(key)] { return cmd::exists{.keys = k}; },
//         [](error_code& ec, std::int64_t n) { return n > 0; });
//   }
//
// `make()` returns the command (or batch); it runs when the operation starts, which with a
// lazy token (deferred, use_awaitable) is after async_exists has returned: so the command may
// only view what `make` owns (its captures), never a local of the initiating function.
// `map(error_code& ec, reply)` returns the result; it may set `ec` (a reply that does not
// decode). When the backend fails, map still runs with the failed ec and a default reply, so
// the result type needs no special case, and it may keep the backend's error or replace it.
//
// Multi-step operations (asio::async_compose) may write
//   backend.async_exec(cmd::get{member_string}, std::move(self));
// every backend reads the command before the handler (and `self`, with the members the command
// views) moves, and a blocking command that waits keeps its own copy
// (tests/conformance/backend_test.cpp: a_composed_op_may_move_itself_with_what_its_commands_view).
//
// The user's handler keeps its associated executor, allocator and cancellation slot (the
// backend completes through them), so a strand or a cancellation signal works as with any
// Asio operation.
#pragma once

#include <rediskit/detail/any_handler.hpp>

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/compose.hpp>
#include <boost/system/error_code.hpp>

#include <type_traits>
#include <utility>

namespace rediskit::detail {

template <class Handler, class Map>
struct ThenHandler {
  Handler handler;
  Map map;

  template <class Reply>
  void operator()(boost::system::error_code ec, Reply&& reply) {
    auto result = map(ec, std::forward<Reply>(reply));
    std::move(handler)(ec, std::move(result));
  }
};

template <class Sig, class Backend, class Token, class Make, class Map>
auto async_then(Backend& backend, Token&& token, Make make, Map map) {
  return boost::asio::async_initiate<Token, Sig>(
      [&backend](auto handler, Make make, Map map) {
        backend.async_exec(make(), ThenHandler<decltype(handler), Map>{std::move(handler),
                                                                        std::move(map)});
      },
      token, std::move(make), std::move(map));
}

/// `handler` called with map(ec, reply) instead of (ec, reply).
template <class Handler, class Map>
ThenHandler<Handler, Map> then(Handler handler, Map map) {
  return {std::move(handler), std::move(map)};
}

/// An operation whose initiation is `start(handler)`: `start` owns what the operation needs
/// (it runs later with a lazy token), checks it, and hands the handler on, e.g. to
/// backend.async_exec(command, then(std::move(handler), map)).
template <class Sig, class Token, class Start>
auto initiate(Token&& token, Start start) {
  return boost::asio::async_initiate<Token, Sig>(
      [](auto handler, Start start) { std::move(start)(std::move(handler)); }, token,
      std::move(start));
}

/// asio::async_compose(op, token, executor) with the caller's handler erased first: the
/// operation's steps (its operator() overloads, instantiated per `Self` type) are compiled once
/// per operation type, not once per completion token or handler type. The handler keeps its
/// executor and cancellation slot (AnyHandler forwards them).
template <class Sig, class Token, class Op, class Executor>
auto erased_compose(Token&& token, Op op, Executor const& ex) {
  return boost::asio::async_initiate<Token, Sig>(
      [](auto handler, Op op, Executor const& ex) {
        AnyHandler<Sig> erased(std::move(handler));
        boost::asio::async_compose<AnyHandler<Sig>, Sig>(std::move(op), erased, ex);
      },
      token, std::move(op), ex);
}

}  // namespace rediskit::detail

// The wrapper has the associations of the user's handler (executor, allocator, cancellation
// slot, immediate executor), as Asio's own binders do.
template <template <class, class> class Associator, class Handler, class Map,
          class DefaultCandidate>
struct boost::asio::associator<Associator, rediskit::detail::ThenHandler<Handler, Map>,
                               DefaultCandidate> : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      rediskit::detail::ThenHandler<Handler, Map> const& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(rediskit::detail::ThenHandler<Handler, Map> const& h,
                  DefaultCandidate const& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};
