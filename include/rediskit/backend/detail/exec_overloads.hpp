// rediskit::detail::ExecOverloads<Derived>: the async_exec overload set that every backend
// offers, written once.
//
//   b.async_exec(cmd, token)              one command: void(error_code, reply_t<C>)
//   b.async_exec(batch, token)            a Batch or transaction: void(error_code, std::tuple<...>)
//   b.async_exec(commands, token)         N commands of one type (vector, span, array, ...):
//                                         void(error_code, std::vector<reply_t<C>>)
// each also with a Diagnostics& before the token, which gets a server's error text.
//
// A backend derives from ExecOverloads<itself> and defines
//   template <class R, class X, class Token>
//   auto exec_impl(X const& x, Diagnostics* diag, Token&& token);
// where X is the command, the Batch, or std::span<C const> for a range, and R its reply type
// (a range's commands are viewed through a span: one instantiation per command type, whatever
// the container). exec_impl may be private: befriend ExecOverloads<itself>. What each backend
// does with the command (when it is written out or run, what it may view afterwards) is said
// at the backend's class.
#pragma once

#include <rediskit/command.hpp>
#include <rediskit/error.hpp>

#include <boost/asio/deferred.hpp>

#include <ranges>
#include <span>
#include <utility>
#include <vector>

namespace rediskit::detail {

template <class Derived>
class ExecOverloads {
 public:
  template <Command C, class Token = boost::asio::deferred_t>
  auto async_exec(C const& c, Token&& token = {}) {
    return self().template exec_impl<reply_t<C>>(c, nullptr, std::forward<Token>(token));
  }
  template <Command C, class Token = boost::asio::deferred_t>
  auto async_exec(C const& c, Diagnostics& diag, Token&& token = {}) {
    return self().template exec_impl<reply_t<C>>(c, &diag, std::forward<Token>(token));
  }

  template <bool A, class... P, class Token = boost::asio::deferred_t>
  auto async_exec(Batch<A, P...> const& b, Token&& token = {}) {
    return self().template exec_impl<reply_t<Batch<A, P...>>>(b, nullptr,
                                                               std::forward<Token>(token));
  }
  template <bool A, class... P, class Token = boost::asio::deferred_t>
  auto async_exec(Batch<A, P...> const& b, Diagnostics& diag, Token&& token = {}) {
    return self().template exec_impl<reply_t<Batch<A, P...>>>(b, &diag,
                                                               std::forward<Token>(token));
  }

  template <CommandRange Cs, class Token = boost::asio::deferred_t>
  auto async_exec(Cs const& cs, Token&& token = {}) {
    using C = std::ranges::range_value_t<Cs>;
    return self().template exec_impl<std::vector<reply_t<C>>>(std::span<C const>(cs), nullptr,
                                                               std::forward<Token>(token));
  }
  template <CommandRange Cs, class Token = boost::asio::deferred_t>
  auto async_exec(Cs const& cs, Diagnostics& diag, Token&& token = {}) {
    using C = std::ranges::range_value_t<Cs>;
    return self().template exec_impl<std::vector<reply_t<C>>>(std::span<C const>(cs), &diag,
                                                               std::forward<Token>(token));
  }

 protected:
  ExecOverloads() = default;

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
};

}  // namespace rediskit::detail
