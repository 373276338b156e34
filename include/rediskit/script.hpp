// rediskit::Script: server-side logic that must be atomic, written twice: Lua for Redis and a
// C++ twin for the in-memory engine. A parity test runs both on the same inputs.
//
//   // Increments a counter, never above a cap; returns the new value.
//   long long capped_incr_twin(rediskit::ScriptContext& ctx) {
//     auto v = ctx.call(rediskit::cmd::incr{ctx.keys()[0]});
//     ...
//   }
//   inline rediskit::Script<long long> const capped_incr{
//       "local v = redis.call('INCR', KEYS[1]) ...", &capped_incr_twin};
//
//   long long v = co_await backend.async_exec(capped_incr({"counter"}, {"10"}));
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
#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/detail/sha1.hpp>

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

namespace detail::mem {
/// Thrown by ScriptContext::call when a command fails: the script stops, as redis.call does.
struct ScriptAbort {};
}  // namespace detail::mem

/// What a script twin sees: its keys and arguments, and the engine to run commands on.
class ScriptContext {
 public:
  ScriptContext(detail::mem::Ctx& ctx, std::span<std::string_view const> keys,
                std::span<std::string_view const> args) noexcept
      : ctx_(&ctx), keys_(keys), args_(args) {}

  /// KEYS and ARGV.
  std::span<std::string_view const> keys() const noexcept { return keys_; }
  std::span<std::string_view const> args() const noexcept { return args_; }

  /// redis.call: runs a command; an error stops the script with that error.
  template <Command C>
  reply_t<C> call(C const& c) {
    detail::mem::Ctx sub = ctx_->fork();
    reply_t<C> r = ctx_->db.exec(sub, c);
    if (sub.ec) {
      ctx_->ec = sub.ec;
      ctx_->error = std::move(sub.error);
      throw detail::mem::ScriptAbort{};
    }
    return r;
  }

  /// redis.pcall: runs a command; its error is returned instead of stopping the script.
  template <Command C>
  std::pair<boost::system::error_code, reply_t<C>> pcall(C const& c) {
    detail::mem::Ctx sub = ctx_->fork();
    reply_t<C> r = ctx_->db.exec(sub, c);
    return {sub.ec, std::move(r)};
  }

  /// return redis.error_reply(text): stops the script with this error (text as a server
  /// would send it, e.g. "ERR over the limit").
  [[noreturn]] void fail(std::string_view text) {
    ctx_->fail(text);
    throw detail::mem::ScriptAbort{};
  }

  /// The engine clock (milliseconds) and wall clock, as TIME would give them.
  std::int64_t now_ms() const noexcept { return ctx_->now_ms(); }
  std::int64_t unix_ms() const noexcept { return ctx_->unix_ms(); }

 private:
  detail::mem::Ctx* ctx_;
  std::span<std::string_view const> keys_;
  std::span<std::string_view const> args_;
};

template <class Reply>
class Script;

namespace cmd {

/// EVALSHA sha numkeys key... arg... of a rediskit::Script (make one with script(keys, args)).
template <class Reply>
struct evalsha {
  Script<Reply> const* script = nullptr;
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
template <class Reply>
class Script {
 public:
  using reply_type = Reply;
  using twin_type = Reply (*)(ScriptContext&);

  Script(std::string lua, twin_type twin)
      : source_(std::move(lua)), sha1_(detail::sha1_hex(source_)), twin_(twin) {}

  std::string_view source() const noexcept { return source_; }
  std::string_view sha1() const noexcept { return sha1_; }
  twin_type twin() const noexcept { return twin_; }

  /// The command that runs this script on `keys` with `args`.
  cmd::evalsha<Reply> operator()(ArgList<std::string_view> keys = {},
                                 ArgList<std::string_view> args = {}) const {
    return {this, keys, args};
  }

 private:
  std::string source_;
  std::string sha1_;
  twin_type twin_;
};

namespace detail::mem {

template <class Reply>
Reply run(Ctx& ctx, cmd::evalsha<Reply> const& c) {
  std::vector<std::string_view> const keys = c.keys.to_vector();
  std::vector<std::string_view> const args = c.args.to_vector();
  ScriptContext sc(ctx, keys, args);
  try {
    return c.script->twin()(sc);
  } catch (ScriptAbort const&) {
    return Reply{};
  }
}

}  // namespace detail::mem

}  // namespace rediskit
