// rediskit typed commands: hashes. Each command is an aggregate of views: see
// rediskit/command.hpp for the rules.
#pragma once

#include <rediskit/arg_list.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit::cmd {}  // namespace rediskit::cmd
