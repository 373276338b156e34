// rediskit typed commands: the Command concept, how a command is written, and batches.
//
// A command is a small aggregate value (cmd::get, cmd::set, cmd::zincrby, ... in
// rediskit/commands.hpp) that knows its reply type. Services express every operation as one
// command or a batch of them and hand it to a backend's async_exec; they never build strings
// and never know which backend runs them:
//
//   co_await backend.async_exec(cmd::set{.key = k, .value = v, .ttl = 5min});
//   auto [n, ttl] = co_await backend.async_exec(batch(cmd::incr{k}, cmd::pttl{k}));
//   auto [added, total] = co_await backend.async_exec(transaction(cmd::sadd{...}, cmd::scard{k}));
//
// RedisBackend writes a batch as one request (MULTI ... EXEC around it for a transaction) and
// adapts the replies straight into the typed results; MemoryBackend applies the same values to
// its own data structures (no parsing), a transaction under one lock.
//
// A type C is a Command if:
//  - `typename C::reply_type` is the C++ type of its reply;
//  - `c.write(out)` calls `out(args...)` one or more times with the command's name and then its
//    arguments, in order (each argument: something convertible to std::string_view, an
//    integer, a floating-point number, or an ArgList, which expands to its elements);
//    `write` must produce the same arguments every time it is called on the same value.
// Optionally:
//  - `static constexpr bool idempotent = true;` when running it twice is harmless (reads): a
//    batch of only idempotent commands may be re-sent after a lost link;
//  - `using wire_type = W;` and `static reply_type from_wire(W&&)` when the RESP reply is
//    adapted into W first (a reply whose shape is not the C++ type's, e.g. XPENDING);
//  - `bool blocking() const` true when the command may block the server (XREADGROUP BLOCK,
//    BLMOVE): RedisBackend then runs it on a connection of its own.
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/resp3/request.hpp>

#include <charconv>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit {

namespace detail {

/// Counts the arguments a command writes (first pass of Request::push_command).
struct ArgCounter {
  std::size_t count = 0;
  template <class... Args>
  void operator()(Args const&... args) noexcept {
    (add(args), ...);
  }

 private:
  template <class A>
  void add(A const&) noexcept {
    ++count;
  }
  void add(ArgList<std::string_view> const& l) noexcept { count += l.size(); }
  void add(ArgList<FieldValue> const& l) noexcept { count += 2 * l.size(); }
  void add(ArgList<ScoreMember> const& l) noexcept { count += 2 * l.size(); }
};

/// Formats one scalar argument as text and hands it to `sink(std::string_view)`.
template <class A, class Sink>
void format_arg(A const& a, Sink&& sink) {
  if constexpr (std::is_convertible_v<A const&, std::string_view>) {
    sink(std::string_view(a));
  } else if constexpr (std::is_same_v<A, bool> || resp3::detail::is_character_v<A>) {
    static_assert(resp3::detail::always_false<A>,
                  "a command argument may not be bool or char: pass a number or a string");
  } else if constexpr (std::is_integral_v<A>) {
    char buf[24];
    auto const r = std::to_chars(buf, buf + sizeof buf, a);
    sink(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
  } else if constexpr (std::is_floating_point_v<A>) {
    if (std::isnan(a)) {
      sink(std::string_view("nan"));
    } else if (std::isinf(a)) {
      sink(std::string_view(a > 0 ? "inf" : "-inf"));
    } else {
      char buf[64];
      auto const r = std::to_chars(buf, buf + sizeof buf, a);
      sink(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
    }
  } else {
    static_assert(resp3::detail::always_false<A>,
                  "a command argument must convert to std::string_view, or be an integer, a "
                  "floating-point number or an ArgList");
  }
}

/// Calls sink(std::string_view) for every argument, ArgLists expanded.
template <class Sink>
struct ArgExpander {
  Sink sink;
  template <class... Args>
  void operator()(Args const&... args) {
    (add(args), ...);
  }

 private:
  template <class A>
  void add(A const& a) {
    format_arg(a, sink);
  }
  void add(ArgList<std::string_view> const& l) {
    l.for_each([&](std::string_view s) { sink(s); });
  }
  void add(ArgList<FieldValue> const& l) {
    l.for_each([&](FieldValue fv) {
      sink(fv.field);
      sink(fv.value);
    });
  }
  void add(ArgList<ScoreMember> const& l) {
    l.for_each([&](ScoreMember sm) {
      format_arg(sm.score, sink);
      sink(sm.member);
    });
  }
};

template <class Sink>
ArgExpander(Sink) -> ArgExpander<Sink>;

}  // namespace detail

/// See the top of this file.
template <class C>
concept Command = std::is_object_v<typename C::reply_type> &&
                  std::default_initializable<typename C::reply_type> &&
                  requires(C const& c, detail::ArgCounter& counter) { c.write(counter); };

/// The reply type of command C.
template <class C>
using reply_t = typename C::reply_type;

/// True when C may be re-sent after a lost link (reads).
template <class C>
inline constexpr bool is_idempotent_v = [] {
  if constexpr (requires { C::idempotent; })
    return bool(C::idempotent);
  else
    return false;
}();

/// True when this command value may block the server.
template <class C>
bool is_blocking(C const& c) {
  if constexpr (requires { c.blocking(); })
    return c.blocking();
  else
    return false;
}

namespace detail {

template <class C>
struct WireOf {
  using type = typename C::reply_type;
};
template <class C>
  requires requires { typename C::wire_type; }
struct WireOf<C> {
  using type = typename C::wire_type;
};

}  // namespace detail

/// The type RESP replies of C are adapted into before from_wire (reply_t<C> for most).
template <class C>
using wire_t = typename detail::WireOf<C>::type;

/// Converts the adapted wire value of C into its reply.
template <class C>
reply_t<C> from_wire(wire_t<C>&& w) {
  if constexpr (requires { C::from_wire(std::move(w)); })
    return C::from_wire(std::move(w));
  else
    return std::move(w);
}

/// Appends `c` to `req` as one command (two passes over c.write: count, then write).
template <Command C>
void push_command(resp3::Request& req, C const& c) {
  detail::ArgCounter counter;
  c.write(counter);
  req.push_generated(counter.count, [&](auto&& bulk) {
    detail::ArgExpander out{bulk};
    c.write(out);
  });
}

/// The command's arguments as owned strings, name first ("SET", "k", "v", "PX", "5000"): for
/// logs, tests and FakeBackend's command log.
template <Command C>
std::vector<std::string> argv(C const& c) {
  std::vector<std::string> out;
  detail::ArgExpander writer{[&](std::string_view s) { out.emplace_back(s); }};
  c.write(writer);
  return out;
}

// ---- batches --------------------------------------------------------------------------------

/// A batch element that is a contiguous run of commands of one type (N HGETALL): its reply
/// is a std::vector of their replies.
template <class R>
concept CommandSpan = requires { typename R::element_type; } &&
                      std::is_same_v<R, std::span<typename R::element_type const>> &&
                      Command<std::remove_const_t<typename R::element_type>>;

/// A contiguous range of commands of one type (std::vector<cmd::hgetall>, a span, an array).
template <class R>
concept CommandRange = std::ranges::contiguous_range<R const> && std::ranges::sized_range<R const> &&
                       Command<std::ranges::range_value_t<R>> && (!Command<R>);

/// One element of a batch: a command or a span of commands.
template <class P>
concept BatchPart = Command<P> || CommandSpan<P>;

namespace detail {
template <class P>
struct PartReply {
  using type = reply_t<P>;
};
template <class P>
  requires CommandSpan<P>
struct PartReply<P> {
  using type = std::vector<reply_t<std::remove_const_t<typename P::element_type>>>;
};
}  // namespace detail

/// The reply of a batch part: reply_t<C>, or std::vector<reply_t<C>> for a span of C.
template <class P>
using part_reply_t = typename detail::PartReply<P>::type;

/// Several commands executed in one round trip; Atomic: as a transaction (MULTI/EXEC on Redis:
/// no other client's command runs in between; a failing command does not undo the others).
/// Make one with rediskit::batch(...) or rediskit::transaction(...).
template <bool Atomic, BatchPart... Parts>
struct Batch {
  static constexpr bool atomic = Atomic;
  std::tuple<Parts...> parts;
  using reply_type = std::tuple<part_reply_t<Parts>...>;
};

namespace detail {
template <class T>
struct AsPart {
  using type = T;
};
template <class C>
  requires(!Command<C>) && requires { typename std::span<typename C::value_type const>; } &&
          Command<typename C::value_type>
struct AsPart<C> {
  using type = std::span<typename C::value_type const>;  // vector<C> -> span<C const>
};
}  // namespace detail

/// A batch: one round trip, replies in a std::tuple. Each argument is a command, or a
/// contiguous container / span of commands of one type (its reply: a std::vector).
template <class... Parts>
auto batch(Parts const&... parts) {
  return Batch<false, typename detail::AsPart<Parts>::type...>{
      {typename detail::AsPart<Parts>::type(parts)...}};
}

/// A transaction (MULTI/EXEC): one round trip, atomic. Same arguments as batch().
template <class... Parts>
auto transaction(Parts const&... parts) {
  return Batch<true, typename detail::AsPart<Parts>::type...>{
      {typename detail::AsPart<Parts>::type(parts)...}};
}

template <class B>
inline constexpr bool is_batch_v = false;
template <bool A, class... P>
inline constexpr bool is_batch_v<Batch<A, P...>> = true;

/// Calls f(command) for every command of `x`: a command, a batch (its parts in order, spans
/// element by element) or a range of commands.
template <class X, class F>
void for_each_command(X const& x, F&& f) {
  if constexpr (Command<X>) {
    f(x);
  } else if constexpr (is_batch_v<X>) {
    std::apply([&](auto const&... parts) { (for_each_command(parts, f), ...); }, x.parts);
  } else {
    for (auto const& c : x) f(c);
  }
}

/// True for a transaction (a Batch made by transaction()).
template <class X>
inline constexpr bool is_transaction_v = false;
template <class... P>
inline constexpr bool is_transaction_v<Batch<true, P...>> = true;

/// Number of commands in one part.
template <class P>
std::size_t part_size(P const& p) {
  if constexpr (CommandSpan<P>)
    return p.size();
  else
    return 1;
}

}  // namespace rediskit
