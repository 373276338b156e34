// MemoryBackend: string commands (see engine.hpp for the rules of run() overloads).
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/cmd/strings.hpp>

namespace rediskit::detail::mem {

inline std::optional<std::string> run(Ctx& ctx, cmd::get const& c) {
  if (auto* s = ctx.db.read<std::string>(ctx, c.key)) return *s;
  return std::nullopt;
}

inline bool run(Ctx& ctx, cmd::set const& c) {
  if ((c.nx && c.xx) || (c.ttl && c.keep_ttl)) return ctx.fail("ERR syntax error");
  if (c.ttl && c.ttl->count() <= 0) return ctx.fail("ERR invalid expire time in 'set' command");
  Entry* e = ctx.db.lookup(c.key);
  if ((c.nx && e) || (c.xx && !e)) return false;
  Entry& n = ctx.db.put(c.key, std::string(c.value), c.keep_ttl);
  if (c.ttl) ctx.db.set_expire(n, ctx.now_ms + c.ttl->count());
  return true;
}

}  // namespace rediskit::detail::mem
