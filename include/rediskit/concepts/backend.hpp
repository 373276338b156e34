// rediskit::Backend: what a service needs from a backend (RedisBackend, MemoryBackend,
// FakeBackend, or yours).
//
// A type B is a Backend if:
//  - B::executor_type is an Asio executor type and b.get_executor() returns one;
//  - b.async_exec(command, token) runs one typed command (rediskit/commands.hpp) and completes
//    with void(error_code, reply_t<Command>);
//  - b.async_exec(batch(...) or transaction(...), token) runs several in one round trip and
//    completes with void(error_code, std::tuple<replies...>); a transaction atomically;
//  - b.async_exec(range of commands, token) completes with void(error_code, std::vector<...>);
//  - b.make_subscriber() returns a B::subscriber_type with async_subscribe, async_psubscribe,
//    async_unsubscribe, async_punsubscribe, async_ssubscribe, async_sunsubscribe and
//    async_receive (rediskit/backend/subscriber.hpp);
//  - b.health() returns a HealthStatus, and B::name names the backend ("redis", "memory", ...).
// Every operation completes through the executor, never inside the initiating call.
//
// Services are templates constrained on Backend; `static_assert(rediskit::Backend<B>)` on your
// own type tells which piece is missing: check_backend<B>() names it.
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/cmd/server.hpp>
#include <rediskit/cmd/strings.hpp>
#include <rediskit/command.hpp>
#include <rediskit/connection.hpp>

#include <boost/asio/deferred.hpp>

#include <concepts>
#include <span>
#include <string_view>

namespace rediskit {

namespace detail::concepts {

template <class B>
concept HasExecutor = requires(B const& b) {
  typename B::executor_type;
  { b.get_executor() } -> std::convertible_to<typename B::executor_type>;
};

template <class B>
concept ExecutesCommands = requires(B& b, cmd::get const& g, cmd::set const& s) {
  b.async_exec(g, boost::asio::deferred);
  b.async_exec(s, boost::asio::deferred);
};

template <class B>
concept ExecutesBatches = requires(B& b, cmd::get const& g, cmd::set const& s) {
  b.async_exec(batch(g, s), boost::asio::deferred);
  b.async_exec(transaction(g, s), boost::asio::deferred);
  b.async_exec(std::span<cmd::get const>{}, boost::asio::deferred);
};

template <class S>
concept Subscriber = requires(S& s, ArgList<std::string_view> names) {
  s.async_subscribe(names, boost::asio::deferred);
  s.async_psubscribe(names, boost::asio::deferred);
  s.async_unsubscribe(names, boost::asio::deferred);
  s.async_punsubscribe(names, boost::asio::deferred);
  s.async_ssubscribe(names, boost::asio::deferred);
  s.async_sunsubscribe(names, boost::asio::deferred);
  s.async_receive(boost::asio::deferred);
};

template <class B>
concept MakesSubscribers = requires(B& b) {
  typename B::subscriber_type;
  { b.make_subscriber() } -> std::same_as<typename B::subscriber_type>;
} && Subscriber<typename B::subscriber_type>;

template <class B>
concept ReportsHealth = requires(B const& b) {
  { b.health() } -> std::same_as<HealthStatus>;
  { B::name } -> std::convertible_to<std::string_view>;
};

}  // namespace detail::concepts

/// See the top of this file.
template <class B>
concept Backend = detail::concepts::HasExecutor<B> && detail::concepts::ExecutesCommands<B> &&
                  detail::concepts::ExecutesBatches<B> && detail::concepts::MakesSubscribers<B> &&
                  detail::concepts::ReportsHealth<B>;

/// Instantiate to learn which part of the Backend concept B misses: each failing
/// static_assert names it.
template <class B>
constexpr bool check_backend() {
  static_assert(detail::concepts::HasExecutor<B>,
                "not a Backend: needs `using executor_type = ...;` and `get_executor()`");
  static_assert(detail::concepts::ExecutesCommands<B>,
                "not a Backend: needs `async_exec(Command const&, Token)` completing with "
                "void(error_code, reply_t<Command>)");
  static_assert(detail::concepts::ExecutesBatches<B>,
                "not a Backend: needs `async_exec(Batch const&, Token)` and "
                "`async_exec(range of commands, Token)`");
  static_assert(detail::concepts::MakesSubscribers<B>,
                "not a Backend: needs `using subscriber_type = ...;` and `make_subscriber()` "
                "returning a subscriber with async_subscribe/async_psubscribe/"
                "async_unsubscribe/async_punsubscribe/async_receive");
  static_assert(detail::concepts::ReportsHealth<B>,
                "not a Backend: needs `HealthStatus health() const` and a static `name`");
  return true;
}

}  // namespace rediskit
