// rediskit typed commands: pub/sub (PUBLISH, SPUBLISH). Subscribing is done through a backend's
// subscriber (rediskit/backend/subscriber.hpp), not with commands.
#pragma once

#include <cstdint>
#include <string_view>

namespace rediskit::cmd {

/// PUBLISH channel message -> how many subscriptions received it (on Redis Cluster: of this
/// node only).
struct publish {
  std::string_view channel;
  std::string_view message;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("PUBLISH", channel, message);
  }
};

/// SPUBLISH shardchannel message (Redis 7, sharded pub/sub) -> how many shard subscriptions
/// received it. It reaches only SSUBSCRIBE subscribers, never SUBSCRIBE or PSUBSCRIBE ones
/// (shard channels are a namespace of their own). On Redis Cluster it goes to the master of
/// the channel's slot (hash tags apply, as for keys), which counts every subscriber: the
/// message stays inside the shard instead of crossing the whole cluster bus.
struct spublish {
  std::string_view channel;
  std::string_view message;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("SPUBLISH", channel, message);
  }
};

}  // namespace rediskit::cmd
