// rediskit test support: seed 001's profiles, for the UserCache, stream and pre-warmer suites.
#pragma once

#include <rediskit/services/user_cache.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace rediskit::test {

/// A complete profile of user `id`, updated at `at` (Unix ms).
inline UserProfile profile(std::string id, std::int64_t at, std::string name = "Jean Dupont") {
  return UserProfile(std::move(id), std::move(name), "https://cdn/a.jpg", "MAT001", "MINFOP", "M",
                     at);
}

}  // namespace rediskit::test
