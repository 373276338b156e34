// MemoryBackend: PUBLISH and SPUBLISH (see engine.hpp for the rules of run() overloads). The subscribers
// live in the backend (subscriber.hpp); the engine reaches them through Ctx::pubsub.
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/backend/subscriber.hpp>
#include <rediskit/cmd/pubsub.hpp>

namespace rediskit::detail::mem {

inline std::int64_t run(Ctx& ctx, cmd::publish const& c) {
  if (!ctx.db.pubsub) return 0;
  return static_cast<std::int64_t>(ctx.db.pubsub->publish(c.channel, c.message));
}

inline std::int64_t run(Ctx& ctx, cmd::spublish const& c) {
  if (!ctx.db.pubsub) return 0;
  return static_cast<std::int64_t>(ctx.db.pubsub->spublish(c.channel, c.message));
}

}  // namespace rediskit::detail::mem
