// MemoryBackend: scripts run through their C++ twins (rediskit/script.hpp). The twin is
// instantiated here, with the engine's ScriptCtx, and nowhere else.
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/command.hpp>
#include <rediskit/script.hpp>

#include <boost/system/error_code.hpp>

#include <algorithm>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit::detail::mem {

/// Thrown by ScriptCtx::call when a command fails: the script stops, as redis.call does.
struct ScriptAbort {};

/// The engine's ScriptContext (see rediskit/script.hpp).
class ScriptCtx {
 public:
  ScriptCtx(Ctx& ctx, std::span<std::string_view const> keys,
            std::span<std::string_view const> args) noexcept
      : ctx_(&ctx), keys_(keys), args_(args) {}

  std::span<std::string_view const> keys() const noexcept { return keys_; }
  std::span<std::string_view const> args() const noexcept { return args_; }

  template <Command C>
  reply_t<C> call(C const& c) {
    return or_abort(c, [&](Ctx& sub) { return ctx_->db.exec(sub, c); });
  }

  template <Command C>
  std::pair<boost::system::error_code, reply_t<C>> pcall(C const& c) {
    check_declared(c);
    Ctx sub = ctx_->fork();
    reply_t<C> r = ctx_->db.exec(sub, c);
    return {sub.ec, std::move(r)};
  }

  /// A read command's reply as views of the engine's own bytes, for a twin that reads many
  /// members: ZRANGE BYLEX (std::vector<std::string_view>) and HMGET
  /// (std::vector<std::optional<std::string_view>>). The views stay valid until the twin's
  /// next command that writes (a read moves no value). An error stops the script, as call().
  template <Command C>
  auto view(C const& c) {
    return or_abort(c, [&](Ctx& sub) { return ctx_->db.exec_view(sub, c); });
  }

  [[noreturn]] void fail(std::string_view text) {
    ctx_->fail(text);
    throw ScriptAbort{};
  }

  std::int64_t now_ms() const noexcept { return ctx_->now_ms(); }
  std::int64_t unix_ms() const noexcept { return ctx_->unix_ms(); }

 private:
  // call() and view(): runs `exec` on a context of its own; an error stops the script with it.
  template <Command C, class Exec>
  auto or_abort(C const& c, Exec&& exec) {
    check_declared(c);
    Ctx sub = ctx_->fork();
    auto r = exec(sub);
    if (sub.ec) {
      ctx_->ec = sub.ec;
      ctx_->error = std::move(sub.error);
      throw ScriptAbort{};
    }
    return r;
  }

  // With cluster checks on, a script may touch only the keys it declared in KEYS (Redis
  // Cluster asks it, and refuses keys of another slot at run time): a twin that reaches for
  // another key fails, so that a script that would break on a cluster fails every test.
  template <Command C>
  void check_declared(C const& c) {
    if (!ctx_->db.config().cluster_checks) return;
    std::string undeclared;
    rediskit::cluster::for_each_key(c, [&](std::string_view k) {
      if (!undeclared.empty()) return;
      if (std::find(keys_.begin(), keys_.end(), k) == keys_.end()) undeclared.assign(k);
    });
    if (!undeclared.empty())
      fail("ERR Script attempted to access key '" + undeclared +
           "', which is not in its KEYS (MemoryConfig::cluster_checks: every key a script "
           "touches must be declared, and in one hash slot)");
  }

  Ctx* ctx_;
  std::span<std::string_view const> keys_;
  std::span<std::string_view const> args_;
};

static_assert(rediskit::ScriptContext<ScriptCtx>);

template <class Reply, class Twin>
Reply run(Ctx& ctx, cmd::evalsha<Reply, Twin> const& c) {
  std::vector<std::string_view> const keys = c.keys.to_vector();
  std::vector<std::string_view> const args = c.args.to_vector();
  ScriptCtx sc(ctx, keys, args);
  try {
    return c.script->twin()(sc);
  } catch (ScriptAbort const&) {
    return Reply{};
  }
}

}  // namespace rediskit::detail::mem
