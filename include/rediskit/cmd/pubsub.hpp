// rediskit typed commands: pub/sub (PUBLISH). Subscribing is done through a backend's
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

}  // namespace rediskit::cmd
