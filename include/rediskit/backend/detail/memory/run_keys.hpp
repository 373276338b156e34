// MemoryBackend: key commands (see engine.hpp for the rules of run() overloads).
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/cmd/keys.hpp>

namespace rediskit::detail::mem {

inline std::int64_t run(Ctx& ctx, cmd::del const& c) {
  if (c.keys.empty()) return ctx.fail("ERR wrong number of arguments for 'del' command"), 0;
  std::int64_t n = 0;
  c.keys.for_each([&](std::string_view k) { n += ctx.db.erase(k) ? 1 : 0; });
  return n;
}

}  // namespace rediskit::detail::mem
