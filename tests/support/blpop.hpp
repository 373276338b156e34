// rediskit test support: a blocking command of the tests' own, BLPOP key timeout. rediskit's own
// blocking commands are BLMOVE and XREADGROUP BLOCK; this one keeps the tests of blocking
// connections (RedisBackend's pool, a Sentinel failover) independent of them.
#pragma once

#include <rediskit/arg_list.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace rediskit::test {

struct blpop {
  std::string_view key;
  std::chrono::milliseconds timeout{0};
  using reply_type = std::optional<std::pair<std::string, std::string>>;
  template <class W>
  void write(W& w) const {
    w("BLPOP", key, static_cast<double>(timeout.count()) / 1000.0);
  }
  bool blocking() const { return true; }
  std::chrono::milliseconds block_timeout() const { return timeout; }
  ArgList<std::string_view> watch_keys() const { return key; }
};

}  // namespace rediskit::test
