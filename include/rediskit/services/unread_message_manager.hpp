// rediskit::UnreadMessageManager: unread-message counters per (conversation, user) and each
// user's total, as seed 000's UnreadMessageManager.
//
//   rediskit::UnreadMessageManager unread(backend);            // any Backend
//   unread.set_recalculate_function(                           // the database's truth
//       [&db](std::string_view conv, std::string_view user) -> asio::awaitable<long long> {
//         co_return co_await db.count_unread(conv, user);
//       });
//   co_await unread.async_increment_unread_for_recipients(conv, sender, members, 1);
//   auto [ec, total] =
//       co_await unread.async_get_user_total_unread("u1", asio::as_tuple(asio::deferred));
//   co_await unread.async_mark_conversation_read(conv, "u1");
//
// Key layout (seed 000's prefixes: keyPrefix "unread", userUnreadPrefix "user_unread"):
//
//   key (<user>: the user id as given)  type  plain layout (one node)  clustered layout (Cluster)
//   unread:user_unread:<user>           hash  as seed 000              the same name
//     fields: <conversation id> -> unread count (> 0; a conversation with nothing unread has
//             no field); "" -> version: bumped by every write (recalculation detects
//             concurrent writes with it)
//
// The two layouts name the keys alike: every operation but the fan-out touches one key, so it
// needs no hash tag, and equal names let a C++ service share a Redis, or a Redis Cluster, with
// the Node services of the seed. UnreadOptions::key_layout (default: default_key_layout_v<B>,
// so clustered on ClusterBackend, plain elsewhere) decides only how the fan-out is sent: plain,
// one script for all recipients; clustered, one script per hash slot of the recipients' keys
// (see async_increment_unread_for_recipients). A user id that holds a hash tag ("{team}ann")
// puts that user's hash in the tag's slot, on both layouts. key_layout = plain on a
// ClusterBackend works but for a fan-out to recipients in different slots, which then fails
// with Error::cross_slot before anything is sent.
//
// One hash per user holds all of the user's counters and has one TTL (default 3 days), renewed
// by every write to it: the parts and the total expire together, so a total can never count a
// part that is gone. (The Node code behind the seed keeps one string key per pair plus a mirror
// under conversationUnreadPrefix and sums with SCAN; that total drifts as parts expire one by
// one and scans the keyspace, so neither the mirror nor the scan is kept.)
//
// Guarantees:
//  - Counters never go negative: a decrement clamps at zero (in a script, atomically).
//  - The total is derived, never stored: async_get_user_total_unread sums the user's hash in
//    one script (O(conversations of the user), no keyspace scan), so total == sum of the parts
//    whatever ran concurrently, including a mark-read racing an increment.
//  - Every operation is one round trip (a script or one command), except recalculation:
//    read the version, call your function, write its result in a script that checks the
//    version (a write that raced the database query makes it start again, at most
//    `recalculate_attempts` times). The clustered fan-out is one plain batch of scripts: one
//    round trip on one node; on a cluster, one request per master, all in flight at once.
//  - Every script declares every key it touches in KEYS (one user hash; the fan-out, the hashes
//    of its recipients, all in one slot in the clustered layout), on both layouts.
//  - An increment writes all of its keys or none: when a key refuses (a key of another type, a
//    value written by someone else that HINCRBY cannot add to), the script puts back what it
//    had added to the keys before it and fails with that key's error, with nothing changed.
//  - Operations never complete inside the initiating call; failures are error codes
//    (rediskit::Error::invalid_argument for bad input, the backend's code otherwise).
//  - A missing counter reads as 0. Counters are a cache of the database: after 3 days without
//    a write to a user they are gone, until written again or recalculated
//    (async_recalculate_total_unread rebuilds all of a user's counters at once).
//  - Thread safety: as the backend; set the recalculation functions before operations start.
//    Cancellation: the handler's cancellation slot reaches the backend's operation (on
//    ClusterBackend, a fan-out split over several masters is not cancellable).
#pragma once

#include <rediskit/commands.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit {

/// Options of UnreadMessageManager; the defaults are seed 000's.
struct UnreadOptions {
  /// Namespace of the manager's keys (seed: keyPrefix). Empty: no namespace.
  std::string key_prefix = "unread";
  /// Per-user hash of counters: `{key_prefix}:{user_unread_prefix}:{user}`.
  std::string user_unread_prefix = "user_unread";
  /// Life of a user's counters after the last write to them (seed: defaultTTL, 3 days).
  std::chrono::milliseconds default_ttl = std::chrono::hours(72);
  /// How many times a recalculation runs the query when writes race it (at least 1).
  int recalculate_attempts = 3;
  /// plain: the fan-out is one script; clustered: one script per hash slot (the key names are
  /// the same, see the top of the file). Unset: default_key_layout_v<B> (ClusterBackend:
  /// clustered; every other backend: plain).
  std::optional<KeyLayout> key_layout{};
};

/// One user's unread counts by conversation, as a total recalculation function returns them:
/// {conversation id, count}, each conversation once.
using UnreadBreakdown = std::vector<std::pair<std::string, std::int64_t>>;

namespace detail::unread {

using boost::system::error_code;

inline constexpr std::string_view kVersion = "";  // the hash field of the version
inline constexpr std::string_view kNotInteger = "ERR unread counter is not an integer";

/// A decimal integer, all of `s`.
inline std::optional<std::int64_t> parse_count(std::string_view s) noexcept {
  std::int64_t v = 0;
  auto const r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

inline std::int64_t arg(ScriptContext auto& ctx, std::size_t i) {
  return parse_count(ctx.args()[i]).value_or(0);
}

/// Takes `by` back from `field` of `key` (a field back at 0 was not there: it goes).
inline void unadd(ScriptContext auto& ctx, std::string_view key, std::string_view field,
                  std::int64_t by) {
  if (ctx.call(cmd::hincrby{key, field, -by}) == 0) ctx.call(cmd::hdel{key, field});
}

// KEYS: user hashes; ARGV: conversation, n, ttl ms. Adds n to the conversation of every key and
// bumps every version, then renews every TTL; returns the new count of the first key. All or
// nothing: when a key refuses (another type, a value HINCRBY cannot add to, an overflow), the
// keys before it are put back as they were (a script runs alone: nobody saw them) and the
// script fails with that key's error.
inline std::int64_t increment_twin(ScriptContext auto& ctx) {
  auto const conv = ctx.args()[0];
  std::int64_t const n = arg(ctx, 1);
  std::chrono::milliseconds const ttl{arg(ctx, 2)};
  auto const keys = ctx.keys();
  auto const undo = [&](std::size_t done) {
    for (std::size_t i = 0; i < done; ++i) {
      unadd(ctx, keys[i], conv, n);
      unadd(ctx, keys[i], kVersion, 1);
    }
  };
  std::int64_t first = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    cmd::hincrby const add{keys[i], conv, n};
    auto const [ec, v] = ctx.pcall(add);
    if (ec) {
      undo(i);
      ctx.call(add);  // fails again, with the server's error
    }
    cmd::hincrby const bump{keys[i], kVersion, 1};
    if (ctx.pcall(bump).first) {
      unadd(ctx, keys[i], conv, n);
      undo(i);
      ctx.call(bump);
    }
    if (i == 0) first = v;
  }
  for (auto const key : keys)
    ctx.call(cmd::pexpire{key, ttl});
  return first;
}
inline auto const increment_script = make_script<std::int64_t>(R"lua(
local function unadd(k, f, by)
  if redis.call('HINCRBY', k, f, by) == 0 then redis.call('HDEL', k, f) end
end
local function undo(done)
  for i = 1, done do
    unadd(KEYS[i], ARGV[1], '-' .. ARGV[2])
    unadd(KEYS[i], '', -1)
  end
end
local first = 0
for i = 1, #KEYS do
  local v = redis.pcall('HINCRBY', KEYS[i], ARGV[1], ARGV[2])
  if type(v) == 'table' then
    undo(i - 1)
    return v
  end
  local w = redis.pcall('HINCRBY', KEYS[i], '', 1)
  if type(w) == 'table' then
    unadd(KEYS[i], ARGV[1], '-' .. ARGV[2])
    undo(i - 1)
    return w
  end
  if i == 1 then first = v end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[3])
end
return first)lua",
                                                   [](ScriptContext auto& c) { return increment_twin(c); });
/// One EVALSHA of increment_script.
using IncrementCall = decltype(increment_script());

// KEYS: user hash; ARGV: conversation, n (0: all), ttl ms. Subtracts n, clamping at zero (a
// zero count has no field); returns the new count, or for n = 0 the count it cleared.
inline std::int64_t decrement_twin(ScriptContext auto& ctx) {
  auto const key = ctx.keys()[0];
  auto const conv = ctx.args()[0];
  std::int64_t const n = arg(ctx, 1);
  std::chrono::milliseconds const ttl{arg(ctx, 2)};
  auto const raw = ctx.call(cmd::hget{key, conv});
  std::int64_t cur = 0;
  if (raw) {
    auto const p = parse_count(*raw);
    if (!p) ctx.fail(kNotInteger);
    cur = *p;
  }
  std::int64_t left = 0;
  if (n > 0 && cur > n) {
    ctx.call(cmd::hincrby{key, conv, -n});
    left = cur - n;
  } else if (raw) {
    ctx.call(cmd::hdel{key, conv});
  }
  ctx.call(cmd::hincrby{key, kVersion, 1});
  ctx.call(cmd::pexpire{key, ttl});
  return n == 0 ? cur : left;
}
inline auto const decrement_script = make_script<std::int64_t>(R"lua(
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local cur = 0
if raw then
  cur = tonumber(raw)
  if not cur then return redis.error_reply('ERR unread counter is not an integer') end
end
local n = tonumber(ARGV[2])
local left = 0
if n > 0 and cur > n then
  redis.call('HINCRBY', KEYS[1], ARGV[1], '-' .. ARGV[2])
  left = cur - n
elseif raw then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('HINCRBY', KEYS[1], '', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if n == 0 then return cur end
return left)lua",
                                                   [](ScriptContext auto& c) { return decrement_twin(c); });

// KEYS: user hash. The sum of its counters (the version field left out).
inline std::int64_t total_twin(ScriptContext auto& ctx) {
  std::int64_t sum = 0;
  for (auto const& [field, value] : ctx.call(cmd::hgetall{ctx.keys()[0]})) {
    if (field.empty()) continue;
    auto const p = parse_count(value);
    if (!p) ctx.fail(kNotInteger);
    sum += *p;
  }
  return sum;
}
inline auto const total_script = make_script<std::int64_t>(R"lua(
local t = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #t, 2 do
  if t[i] ~= '' then
    local v = tonumber(t[i + 1])
    if not v then return redis.error_reply('ERR unread counter is not an integer') end
    sum = sum + v
  end
end
return sum)lua",
                                               [](ScriptContext auto& c) { return total_twin(c); });

// KEYS: user hash; ARGV: expected version ("" for none), ttl ms, "one" | "all", then
// conversation, count pairs. Unless the version moved (then -1), writes the counts ("all":
// they replace every counter of the user) and returns their sum.
inline std::int64_t commit_twin(ScriptContext auto& ctx) {
  auto const key = ctx.keys()[0];
  auto const args = ctx.args();
  auto const version = ctx.call(cmd::hget{key, kVersion});
  if (std::string_view(version ? *version : std::string()) != args[0]) return -1;
  if (args[2] == "all") {
    ctx.call(cmd::del{key});
    if (version) ctx.call(cmd::hset{key, FieldValue{kVersion, *version}});
  }
  std::int64_t sum = 0;
  for (std::size_t i = 3; i + 1 < args.size(); i += 2) {
    if (args[i + 1] != "0") {
      ctx.call(cmd::hset{key, FieldValue{args[i], args[i + 1]}});
      sum += parse_count(args[i + 1]).value_or(0);
    } else {
      ctx.call(cmd::hdel{key, args[i]});
    }
  }
  ctx.call(cmd::hincrby{key, kVersion, 1});
  ctx.call(cmd::pexpire{key, std::chrono::milliseconds(arg(ctx, 1))});
  return sum;
}
inline auto const commit_script = make_script<std::int64_t>(R"lua(
local v = redis.call('HGET', KEYS[1], '')
if (v or '') ~= ARGV[1] then return -1 end
if ARGV[3] == 'all' then
  redis.call('DEL', KEYS[1])
  if v then redis.call('HSET', KEYS[1], '', v) end
end
local sum = 0
for i = 4, #ARGV - 1, 2 do
  if ARGV[i + 1] ~= '0' then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    sum = sum + tonumber(ARGV[i + 1])
  else
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
redis.call('HINCRBY', KEYS[1], '', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return sum)lua",
                                                [](ScriptContext auto& c) { return commit_twin(c); });

/// Where a recalculation function delivers its result (the operation waiting for it).
struct Sink {
  virtual ~Sink() = default;
  virtual void done(error_code ec, UnreadBreakdown counts) = 0;
};
using SinkPtr = std::unique_ptr<Sink>;

inline void deliver(SinkPtr sink, error_code ec, UnreadBreakdown counts) {
  sink->done(ec, std::move(counts));
}

/// deliver() through the executor: the operation never ends inside the function that delivers
/// (the function is owned by the operation's state).
inline void post_deliver(boost::asio::any_io_executor const& ex, SinkPtr sink, error_code ec,
                         UnreadBreakdown counts) {
  boost::asio::post(ex, [sink = std::move(sink), ec, counts = std::move(counts)]() mutable {
    deliver(std::move(sink), ec, std::move(counts));
  });
}

template <class Self>
struct SelfSink final : Sink {
  explicit SelfSink(Self&& s) : self(std::move(s)) {}
  void done(error_code ec, UnreadBreakdown counts) override {
    Self s = std::move(self);
    s(ec, std::move(counts));
  }
  Self self;
};

/// A recalculation function, whatever its form, as one type: (conversation or "" for the
/// total, user, executor, sink).
using Source = std::function<void(std::string const&, std::string const&,
                                  boost::asio::any_io_executor, SinkPtr)>;

template <class T>
inline constexpr bool is_awaitable_v = false;
template <class T, class E>
inline constexpr bool is_awaitable_v<boost::asio::awaitable<T, E>> = true;

/// What a recalculation function's exception becomes: a system_error's code, else
/// Error::load_failed.
inline error_code error_of(std::exception_ptr e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (boost::system::system_error const& x) {
    if (x.code()) return x.code();
  } catch (...) {
  }
  return make_error_code(Error::load_failed);
}

/// A count, or a range of (conversation, count) pairs, as a breakdown.
template <class R>
UnreadBreakdown to_breakdown(std::string const& conv, R&& r) {
  if constexpr (std::is_integral_v<std::remove_cvref_t<R>>) {
    return UnreadBreakdown{{conv, static_cast<std::int64_t>(r)}};
  } else if constexpr (std::is_convertible_v<R&&, UnreadBreakdown>) {
    return UnreadBreakdown(std::forward<R>(r));
  } else {
    UnreadBreakdown out;
    for (auto&& [c, n] : r)
      out.emplace_back(std::string(c), static_cast<std::int64_t>(n));
    return out;
  }
}

template <class R>
concept PairRange = std::ranges::input_range<R> && requires(std::ranges::range_reference_t<R> e) {
  std::string(std::get<0>(e));
  static_cast<std::int64_t>(std::get<1>(e));
};

/// What a recalculation function may return: a count, or {conversation, count} pairs.
template <class R>
concept Result = std::is_integral_v<std::remove_cvref_t<R>> ||
    std::is_convertible_v<R, UnreadBreakdown> || PairRange<R>;

/// A count for one conversation (Total = false), {conversation, count} pairs for a user's total
/// (a bare total cannot be stored: its parts are not known).
template <class R, bool Total>
inline constexpr bool is_result_v = Result<R> &&
                                    (Total != std::is_integral_v<std::remove_cvref_t<R>>);

/// Calls f with the conversation and the user (Args: both) or the user only (Args: one).
template <class... Args, class F, class... Extra>
decltype(auto) call_with(F& f, std::string const& c, std::string const& u, Extra&... extra) {
  if constexpr (sizeof...(Args) == 1)
    return f(u, extra...);
  else
    return f(c, u, extra...);
}

/// Makes a Source of f(args..., [error_code&]) -> R or f(args...) -> awaitable<R>.
template <class F, class... Args>
Source make_source(F f) {
  using Ec = error_code&;
  if constexpr (std::is_invocable_v<F&, Args..., Ec>) {
    static_assert(is_result_v<std::invoke_result_t<F&, Args..., Ec>, sizeof...(Args) == 1>,
                  "a recalculation function returns a count; a total recalculation function "
                  "returns {conversation, count} pairs (UnreadBreakdown, std::map...)");
    return [f = std::move(f)](std::string const& c, std::string const& u,
                              boost::asio::any_io_executor ex, SinkPtr sink) mutable {
      error_code ec;
      UnreadBreakdown counts;
      try {
        counts = to_breakdown(c, call_with<Args...>(f, c, u, ec));
      } catch (...) {
        ec = error_of(std::current_exception());
      }
      if (ec) counts.clear();
      post_deliver(ex, std::move(sink), ec, std::move(counts));
    };
  } else if constexpr (std::is_invocable_v<F&, Args...>) {
    using R = std::invoke_result_t<F&, Args...>;
    if constexpr (is_awaitable_v<R>) {
      static_assert(is_result_v<typename R::value_type, sizeof...(Args) == 1>,
                    "a recalculation coroutine returns a count; a total recalculation coroutine "
                    "returns {conversation, count} pairs (UnreadBreakdown, std::map...)");
      return [f = std::move(f)](std::string const& c, std::string const& u,
                                boost::asio::any_io_executor ex, SinkPtr sink) mutable {
        std::optional<R> a;
        try {
          a.emplace(call_with<Args...>(f, c, u));
        } catch (...) {
          return post_deliver(ex, std::move(sink), error_of(std::current_exception()), {});
        }
        // The coroutine refers to f (in the operation's state, alive until it completes) and to
        // c and u (also there); co_spawn never runs it inside this call.
        boost::asio::co_spawn(
            ex, std::move(*a),
            [sink = std::move(sink), c](std::exception_ptr e, typename R::value_type r) mutable {
              if (e) return deliver(std::move(sink), error_of(e), {});
              deliver(std::move(sink), {}, to_breakdown(c, std::move(r)));
            });
      };
    } else {
      static_assert(is_result_v<R, sizeof...(Args) == 1>,
                    "a recalculation function returns a count; a total recalculation function "
                    "returns {conversation, count} pairs (UnreadBreakdown, std::map...); "
                    "either may return an asio::awaitable of it");
      return [f = std::move(f)](std::string const& c, std::string const& u,
                                boost::asio::any_io_executor ex, SinkPtr sink) mutable {
        error_code ec;
        UnreadBreakdown counts;
        try {
          counts = to_breakdown(c, call_with<Args...>(f, c, u));
        } catch (...) {
          ec = error_of(std::current_exception());
        }
        post_deliver(ex, std::move(sink), ec, std::move(counts));
      };
    }
  } else {
    static_assert(sizeof(F) == 0,
                  "a recalculation function is called as f(conversation_id, user_id) (total: "
                  "f(user_id)), optionally with a last error_code& argument");
    return {};
  }
}

/// What a recalculation carries from step to step (on the heap: the strings keep their
/// addresses while the operation moves, and the function's arguments refer to them).
struct RecalcState {
  std::string conv;  // empty: the total
  std::string user;
  std::string key;
  Source source;
  std::chrono::milliseconds ttl{};
  int attempts_left = 1;
  std::string version;
  std::vector<std::string> args;
};

/// True when `counts` may be written: ids not empty and distinct, counts not negative, and for
/// one conversation exactly that conversation.
inline bool valid(RecalcState const& s, UnreadBreakdown const& counts) {
  if (!s.conv.empty())
    return counts.size() == 1 && counts[0].first == s.conv && counts[0].second >= 0;
  std::vector<std::string_view> ids;
  ids.reserve(counts.size());
  for (auto const& [c, n] : counts) {
    if (c.empty() || n < 0) return false;
    ids.push_back(c);
  }
  std::sort(ids.begin(), ids.end());
  return std::adjacent_find(ids.begin(), ids.end()) == ids.end();
}

/// Recalculation: HGET version -> the function -> commit script (again on a version conflict).
template <class B>
struct RecalcOp {
  B* backend;
  std::unique_ptr<RecalcState> st;

  template <class Self>
  void operator()(Self& self) {
    backend->async_exec(cmd::hget{st->key, kVersion}, std::move(self));
  }

  template <class Self>
  void operator()(Self& self, error_code ec, std::optional<std::string> version) {
    if (ec) return self.complete(ec, 0);
    RecalcState& s = *st;
    s.version = version ? std::move(*version) : std::string();
    // The function delivers through the executor, never inside this call.
    s.source(s.conv, s.user, backend->get_executor(),
             std::make_unique<SelfSink<Self>>(std::move(self)));
  }

  template <class Self>
  void operator()(Self& self, error_code ec, UnreadBreakdown counts) {
    if (ec) return self.complete(ec, 0);
    RecalcState& s = *st;
    if (!valid(s, counts)) return self.complete(make_error_code(Error::invalid_argument), 0);
    s.args.clear();
    s.args.push_back(s.version);
    s.args.push_back(std::to_string(s.ttl.count()));
    s.args.push_back(s.conv.empty() ? "all" : "one");
    for (auto& [c, n] : counts) {
      s.args.push_back(std::move(c));
      s.args.push_back(std::to_string(n));
    }
    backend->async_exec(commit_script(s.key, s.args), std::move(self));
  }

  template <class Self>
  void operator()(Self& self, error_code ec, std::int64_t written) {
    if (ec) return self.complete(ec, 0);
    if (written >= 0) return self.complete(ec, written);
    if (--st->attempts_left > 0) return (*this)(self);  // a write raced the query: again
    self.complete(make_error_code(boost::system::errc::resource_unavailable_try_again), 0);
  }
};

struct Count {
  std::int64_t operator()(error_code&, std::int64_t v) const noexcept { return v; }
};

}  // namespace detail::unread

/// Unread counters of seed 000's UnreadMessageManager over any Backend (see the top of this
/// file). Every async_ operation completes with void(error_code, std::int64_t).
template <Backend B>
class UnreadMessageManager {
  using error_code = boost::system::error_code;
  using Sig = void(error_code, std::int64_t);

 public:
  using executor_type = typename B::executor_type;

  /// `backend` must outlive the manager and its operations.
  explicit UnreadMessageManager(B& backend, UnreadOptions options = {})
      : backend_(backend),
        options_(std::move(options)),
        layout_(options_.key_layout.value_or(default_key_layout_v<B>)),
        prefix_(KeySpace(options_.key_prefix).key(options_.user_unread_prefix + ":")),
        ttl_(std::to_string(options_.default_ttl.count())) {}

  executor_type get_executor() const noexcept { return backend_.get_executor(); }
  UnreadOptions const& options() const noexcept { return options_; }
  /// The layout in use: options().key_layout, else default_key_layout_v<B>.
  KeyLayout key_layout() const noexcept { return layout_; }

  /// The hash that holds `user_id`'s counters.
  std::string user_key(std::string_view user_id) const { return prefix_ + std::string(user_id); }

  /// seed: setRecalculateFunction. `f(conversation_id, user_id)` returns the true unread count
  /// (e.g. messages after the user's last read, from the database), in one of three forms:
  ///   long long f(std::string_view conversation_id, std::string_view user_id);
  ///   long long f(std::string_view conversation_id, std::string_view user_id, error_code& ec);
  ///   asio::awaitable<long long> f(std::string_view conversation_id, std::string_view user_id);
  /// A synchronous function runs on the operation's executor (it blocks it: use the coroutine
  /// form for a real database); a coroutine is co_spawned on the backend's executor. Failure:
  /// set `ec`, or throw boost::system::system_error (its code is the operation's; any other
  /// exception completes it with Error::load_failed). Any integer type will do for the count; a
  /// negative count fails with Error::invalid_argument. The arguments stay valid until the
  /// function (or coroutine) has finished. F must be copyable.
  template <class F>
  void set_recalculate_function(F f) {
    recalculate_ =
        detail::unread::make_source<F, std::string const&, std::string const&>(std::move(f));
  }

  /// seed: setRecalculateTotalFunction. `f(user_id)` returns the user's unread counts by
  /// conversation (UnreadBreakdown, or any range of {conversation, count} pairs such as a
  /// std::map), in the same three forms as set_recalculate_function. A bare total is not
  /// enough: it cannot be written without knowing its parts (total == sum of the parts).
  template <class F>
  void set_recalculate_total_function(F f) {
    recalculate_total_ = detail::unread::make_source<F, std::string const&>(std::move(f));
  }

  /// seed: incrementUnread. Adds `n` (>= 1) to the count of (conversation, user) and renews
  /// the user's TTL; completes with the new count. One script.
  template <class Token = boost::asio::deferred_t>
  auto async_increment_unread(std::string_view conversation_id, std::string_view user_id,
                              std::int64_t n, Token&& token = {}) {
    return boost::asio::async_initiate<Token, Sig>(
        [this](auto handler, std::string conv, std::string user, std::int64_t n) {
          if (conv.empty() || user.empty() || n < 1) return complete_now(std::move(handler));
          std::string const key = user_key(user), count = std::to_string(n);
          run(std::move(handler), detail::unread::increment_script(key, {conv, count, ttl_}),
              detail::unread::Count{});
        },
        token, std::string(conversation_id), std::string(user_id), n);
  }

  /// The fan-out of a new message: adds `n` (>= 1) to `conversation_id`'s count of every
  /// participant except `sender_id` (empty: a message with no sender, every participant
  /// counts; a participant listed twice counts once), and renews their TTLs. Completes with the
  /// number of recipients counted.
  ///
  /// Plain layout: one script for all recipients, one round trip, atomic (all counted or none).
  /// Clustered layout: the recipients grouped by the hash slot of their key, one script per
  /// group, all in one plain batch (one round trip on one node; on a cluster, one request per
  /// master, in flight at once). Each group is atomic; the groups are not atomic together: a
  /// reader may see some recipients counted before the others, and when a group fails (a key
  /// of another type, a counter written by someone else, a master that fails) the others
  /// still run. The operation then completes with the first error and the number of
  /// recipients whose groups succeeded (recipients of one slot: those whose user id shares a
  /// hash tag, or, rarely, whose keys hash alike; most recipients are a group of their own).
  /// Sending the fan-out again would count those twice: recalculate instead. After
  /// Error::connection_lost the groups sent on that link may or may not have run (the count
  /// does not include them).
  template <class Token = boost::asio::deferred_t>
  auto async_increment_unread_for_recipients(std::string_view conversation_id,
                                             std::string_view sender_id,
                                             ArgList<std::string_view> participants, std::int64_t n,
                                             Token&& token = {}) {
    std::vector<std::string> users;
    users.reserve(participants.size());
    bool empty_id = false;
    participants.for_each([&](std::string_view p) {
      empty_id = empty_id || p.empty();
      if (p != sender_id) users.emplace_back(p);
    });
    return boost::asio::async_initiate<Token, Sig>(
        [this](auto handler, std::string conv, std::vector<std::string> users, bool empty_id,
               std::int64_t n) {
          if (conv.empty() || empty_id || n < 1) return complete_now(std::move(handler));
          std::sort(users.begin(), users.end());
          users.erase(std::unique(users.begin(), users.end()), users.end());
          if (users.empty()) return complete_now(std::move(handler), error_code{});
          for (auto& u : users)
            u.insert(0, prefix_);  // now the keys
          // The keys in group order (a contiguous range of views: each script views a slice).
          std::vector<std::string_view> keys(users.begin(), users.end());
          std::vector<std::size_t> sizes;  // recipients per group
          if (layout_ == KeyLayout::plain) {
            sizes.push_back(keys.size());
          } else {
            std::vector<std::pair<std::uint16_t, std::string_view>> by_slot;
            by_slot.reserve(keys.size());
            for (auto k : keys)
              by_slot.emplace_back(cluster::key_slot(k), k);
            std::sort(by_slot.begin(), by_slot.end());
            for (std::size_t i = 0; i < by_slot.size(); ++i) {
              keys[i] = by_slot[i].second;
              if (i == 0 || by_slot[i].first != by_slot[i - 1].first)
                sizes.push_back(1);
              else
                ++sizes.back();
            }
          }
          std::string const count = std::to_string(n);
          std::vector<detail::unread::IncrementCall> calls;
          calls.reserve(sizes.size());
          std::span<std::string_view const> rest(keys);
          for (auto size : sizes) {
            calls.push_back(
                detail::unread::increment_script(rest.first(size), {conv, count, ttl_}));
            rest = rest.subspan(size);
          }
          // A group's script returns the new count of its first key (>= n >= 1); a failed one
          // leaves its reply at 0.
          run(std::move(handler), calls,
              [sizes = std::move(sizes)](error_code&, std::vector<std::int64_t> const& r) {
                std::int64_t counted = 0;
                for (std::size_t i = 0; i < r.size() && i < sizes.size(); ++i)
                  if (r[i] > 0) counted += static_cast<std::int64_t>(sizes[i]);
                return counted;
              });
        },
        token, std::string(conversation_id), std::move(users), empty_id, n);
  }

  /// seed: decrementUnread. Subtracts `n` (>= 1), never below zero, and renews the user's TTL;
  /// completes with the new count. One script.
  template <class Token = boost::asio::deferred_t>
  auto async_decrement_unread(std::string_view conversation_id, std::string_view user_id,
                              std::int64_t n, Token&& token = {}) {
    return boost::asio::async_initiate<Token, Sig>(
        [this](auto handler, std::string conv, std::string user, std::int64_t n) {
          if (conv.empty() || user.empty() || n < 1) return complete_now(std::move(handler));
          std::string const key = user_key(user), count = std::to_string(n);
          run(std::move(handler), detail::unread::decrement_script(key, {conv, count, ttl_}),
              detail::unread::Count{});
        },
        token, std::string(conversation_id), std::string(user_id), n);
  }

  /// seed: markConversationRead. The count of (conversation, user) becomes zero and the user's
  /// TTL is renewed; completes with the count it cleared. One script.
  template <class Token = boost::asio::deferred_t>
  auto async_mark_conversation_read(std::string_view conversation_id, std::string_view user_id,
                                    Token&& token = {}) {
    return boost::asio::async_initiate<Token, Sig>(
        [this](auto handler, std::string conv, std::string user) {
          if (conv.empty() || user.empty()) return complete_now(std::move(handler));
          std::string const key = user_key(user);
          run(std::move(handler), detail::unread::decrement_script(key, {conv, "0", ttl_}),
              detail::unread::Count{});
        },
        token, std::string(conversation_id), std::string(user_id));
  }

  /// seed: getConversationUnreadCount. The count of (conversation, user); 0 when there is
  /// none (or it expired). One HGET. A value that is no count fails with Error::not_a_number.
  template <class Token = boost::asio::deferred_t>
  auto async_get_conversation_unread_count(std::string_view conversation_id,
                                           std::string_view user_id, Token&& token = {}) {
    return boost::asio::async_initiate<Token, Sig>(
        [this](auto handler, std::string conv, std::string user) {
          if (conv.empty() || user.empty()) return complete_now(std::move(handler));
          std::string const key = user_key(user);
          run(std::move(handler), cmd::hget{key, conv},
              [](error_code& ec, std::optional<std::string> v) -> std::int64_t {
                if (ec || !v) return 0;
                auto const n = detail::unread::parse_count(*v);
                if (n && *n >= 0) return *n;
                ec = make_error_code(Error::not_a_number);
                return 0;
              });
        },
        token, std::string(conversation_id), std::string(user_id));
  }

  /// seed: getUserTotalUnread. The sum of the user's counts, summed by the server from the
  /// user's hash (O(conversations of the user)). One script.
  template <class Token = boost::asio::deferred_t>
  auto async_get_user_total_unread(std::string_view user_id, Token&& token = {}) {
    return boost::asio::async_initiate<Token, Sig>(
        [this](auto handler, std::string user) {
          if (user.empty()) return complete_now(std::move(handler));
          std::string const key = user_key(user);
          run(std::move(handler), detail::unread::total_script(key), detail::unread::Count{});
        },
        token, std::string(user_id));
  }

  /// seed: recalculateUnread. Asks the recalculation function for the true count and stores
  /// it (0 removes the counter), unless a write to the user's counters raced the query: then
  /// it asks again, up to `recalculate_attempts` times, and fails with
  /// errc::resource_unavailable_try_again. Completes with the count stored. Fails with
  /// Error::invalid_argument when no function is set.
  template <class Token = boost::asio::deferred_t>
  auto async_recalculate_unread(std::string_view conversation_id, std::string_view user_id,
                                Token&& token = {}) {
    return boost::asio::async_initiate<Token, Sig>(
        [this](auto handler, std::string conv, std::string user) {
          if (conv.empty() || user.empty() || !recalculate_)
            return complete_now(std::move(handler));
          recalculate(std::move(handler), std::move(conv), std::move(user), recalculate_);
        },
        token, std::string(conversation_id), std::string(user_id));
  }

  /// seed: recalculateTotalUnread. Asks the total recalculation function for the user's counts
  /// and replaces all of the user's counters with them in one script (so the total stays the
  /// sum of its parts); races, attempts and errors as async_recalculate_unread. Completes with
  /// the new total.
  template <class Token = boost::asio::deferred_t>
  auto async_recalculate_total_unread(std::string_view user_id, Token&& token = {}) {
    return boost::asio::async_initiate<Token, Sig>(
        [this](auto handler, std::string user) {
          if (user.empty() || !recalculate_total_) return complete_now(std::move(handler));
          recalculate(std::move(handler), std::string(), std::move(user), recalculate_total_);
        },
        token, std::string(user_id));
  }

 private:
  template <class Handler, class X, class Map>
  void run(Handler&& handler, X const& x, Map map) {
    backend_.async_exec(x, detail::ThenHandler<std::decay_t<Handler>, Map>{
                               std::forward<Handler>(handler), std::move(map)});
  }

  template <class Handler>
  void complete_now(Handler&& handler, error_code ec = make_error_code(Error::invalid_argument)) {
    detail::post_handler(backend_.get_executor(), std::forward<Handler>(handler), ec,
                         std::int64_t{0});
  }

  template <class Handler>
  void recalculate(Handler&& handler, std::string conv, std::string user,
                   detail::unread::Source const& source) {
    auto st = std::make_unique<detail::unread::RecalcState>();
    st->conv = std::move(conv);
    st->key = user_key(user);
    st->user = std::move(user);
    st->source = source;
    st->ttl = options_.default_ttl;
    st->attempts_left = std::max(1, options_.recalculate_attempts);
    // Erased first: RecalcOp's steps are compiled once, whatever the caller's handler.
    detail::AnyHandler<Sig> erased(std::forward<Handler>(handler));
    boost::asio::async_compose<detail::AnyHandler<Sig>, Sig>(
        detail::unread::RecalcOp<B>{&backend_, std::move(st)}, erased,  // moved from by Asio
        backend_.get_executor());
  }

  B& backend_;
  UnreadOptions options_;
  KeyLayout layout_;
  std::string prefix_;  // "{key_prefix}:{user_unread_prefix}:"
  std::string ttl_;     // default_ttl in milliseconds, as a script argument
  detail::unread::Source recalculate_;
  detail::unread::Source recalculate_total_;
};

}  // namespace rediskit
