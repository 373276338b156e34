// rediskit::detail::async_then: a service operation that is one backend round trip whose reply
// is turned into the service's result, without a coroutine frame or a second post.
//
//   template <class Token = asio::deferred_t>
//   auto async_exists(std::string_view key, Token&& token = {}) {
//     return detail::async_then<void(error_code, bool)>(
//         backend_, cmd::exists{.keys = full_key}, token,
//         [](error_code& ec, std::int64_t n) { return n > 0; });
//   }
//
// `map(error_code& ec, reply)` returns the result; it may set `ec` (a reply that does not
// decode). When the backend fails, map still runs with the failed ec and a default reply, so
// the result type needs no special case, and it may keep the backend's error or replace it.
// The command is consumed when the operation starts (backends serialise or run it then), so
// it may view strings that live only as long as the initiating call.
//
// The user's handler keeps its associated executor, allocator and cancellation slot (the
// backend completes through them), so a strand or a cancellation signal works as with any
// Asio operation.
#pragma once

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
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

template <class Sig, class Backend, class X, class Token, class Map>
auto async_then(Backend& backend, X const& x, Token&& token, Map map) {
  return boost::asio::async_initiate<Token, Sig>(
      [&backend](auto handler, X const& x, Map map) {
        backend.async_exec(x, ThenHandler<decltype(handler), Map>{std::move(handler),
                                                                   std::move(map)});
      },
      token, x, std::move(map));
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
