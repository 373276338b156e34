// rediskit::Script: server-side logic that must be atomic, written twice: Lua for Redis and a
// C++ twin for the in-memory engine. A parity test runs both on the same inputs.
//
//   // Increments a counter, never above a cap; returns the new value.
//   inline auto const capped_incr = rediskit::make_script<long long>(
//       "local v = redis.call('INCR', KEYS[1]) ...",
//       [](rediskit::ScriptContext auto& ctx) -> long long {
//         auto v = ctx.call(rediskit::cmd::incr{ctx.keys()[0]});
//         ...
//       });
//
//   long long v = co_await backend.async_exec(capped_incr({"counter"}, {"10"}));
//
// The twin is a generic callable (a lambda taking `ScriptContext auto&`, or a struct with a
// templated operator()): its body is compiled only where MemoryBackend runs it. A program on
// RedisBackend alone compiles none of it, and this header includes no backend.
//
// On Redis the command is EVALSHA; RedisBackend sends SCRIPT LOAD ahead of it in the same
// request when the script is not known to be loaded (so a batch or a transaction never fails
// with NOSCRIPT), and a single EVALSHA that still meets NOSCRIPT (the server's script cache was
// flushed) is sent again with the script loaded: NOSCRIPT means it did not run.
// On MemoryBackend the twin runs under the engine's lock: atomic, as a script on Redis.
//
// The twin's reply must be what the Lua script's reply adapts into: Lua numbers are integers
// (truncated), strings are strings, tables are arrays (up to the first nil), false is null.
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/detail/sha1.hpp>

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace rediskit {

/// What a script twin sees (MemoryBackend gives it one): a type S is a ScriptContext if
///  - s.keys() and s.args() are KEYS and ARGV (std::span<std::string_view const>);
///  - s.call(command) runs a typed command and returns its reply; an error stops the script
///    with that error (redis.call);
///  - s.pcall(command) returns {error_code, reply} instead of stopping (redis.pcall);
///  - s.view(command), for ZRANGE BYLEX and HMGET: call()'s reply as views of the engine's
///    own bytes (std::string_view for std::string), valid until the twin's next command that
///    writes: a twin that reads many members copies none of them;
///  - s.fail(text) stops the script with that error (return redis.error_reply(text)), e.g.
///    s.fail("ERR over the limit");
///  - s.now_ms() and s.unix_ms() are the engine clock and the wall clock in milliseconds, as
///    TIME would give them (one instant for the whole script).
template <class S>
concept ScriptContext = requires(S& s, std::string_view text) {
  { s.keys() } -> std::convertible_to<std::span<std::string_view const>>;
  { s.args() } -> std::convertible_to<std::span<std::string_view const>>;
  { s.now_ms() } -> std::convertible_to<std::int64_t>;
  { s.unix_ms() } -> std::convertible_to<std::int64_t>;
  s.fail(text);
};

template <class Reply, class Twin>
class Script;

namespace cmd {

/// EVALSHA sha numkeys key... arg... of a rediskit::Script (make one with script(keys, args)).
template <class Reply, class Twin>
struct evalsha {
  Script<Reply, Twin> const* script = nullptr;
  ArgList<std::string_view> keys{};
  ArgList<std::string_view> args{};
  using reply_type = Reply;
  template <class W>
  void write(W& w) const {
    w("EVALSHA", script->sha1(), static_cast<std::int64_t>(keys.size()), keys, args);
  }
  /// For RedisBackend's SCRIPT LOAD.
  std::string_view script_source() const noexcept { return script->source(); }
  std::string_view script_sha1() const noexcept { return script->sha1(); }
};

}  // namespace cmd

/// A Lua script and its C++ twin (see the top of this file). Keep it alive (a namespace-scope
/// `inline const` or a static member) while commands made from it run.
template <class Reply, class Twin>
class Script {
 public:
  using reply_type = Reply;
  using twin_type = Twin;

  Script(std::string lua, Twin twin)
      : source_(std::move(lua)), sha1_(detail::sha1_hex(source_)), twin_(std::move(twin)) {}

  std::string_view source() const noexcept { return source_; }
  std::string_view sha1() const noexcept { return sha1_; }
  Twin const& twin() const noexcept { return twin_; }

  /// The command that runs this script on `keys` with `args`.
  cmd::evalsha<Reply, Twin> operator()(ArgList<std::string_view> keys = {},
                                       ArgList<std::string_view> args = {}) const {
    return {this, keys, args};
  }

 private:
  std::string source_;
  std::string sha1_;
  Twin twin_;
};

/// make_script<Reply>(lua, twin): a Script whose twin returns Reply.
template <class Reply, class Twin>
Script<Reply, Twin> make_script(std::string lua, Twin twin) {
  return Script<Reply, Twin>(std::move(lua), std::move(twin));
}

}  // namespace rediskit
