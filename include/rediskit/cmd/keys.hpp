// rediskit typed commands: keys (DEL, EXISTS, EXPIRE, TTL, TYPE, SCAN, ...).
// Each command is an aggregate of views: see rediskit/command.hpp for the rules.
#pragma once

#include <rediskit/arg_list.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rediskit::cmd {

/// DEL key [key ...] -> how many keys existed and were deleted.
struct del {
  ArgList<std::string_view> keys;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("DEL", keys);
  }
};

}  // namespace rediskit::cmd
