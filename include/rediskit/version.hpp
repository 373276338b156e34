// rediskit: the library version.
//
// The numbers here and `project(rediskit VERSION ...)` in CMakeLists.txt must agree: CMake
// refuses to configure when they differ, and tests/unit/version_test.cpp checks them too.
#pragma once

#include <string_view>

#define REDISKIT_VERSION_MAJOR 0
#define REDISKIT_VERSION_MINOR 1
#define REDISKIT_VERSION_PATCH 0

/// One number for preprocessor comparisons: MAJOR * 100000 + MINOR * 100 + PATCH (as Boost).
#define REDISKIT_VERSION \
  (REDISKIT_VERSION_MAJOR * 100000 + REDISKIT_VERSION_MINOR * 100 + REDISKIT_VERSION_PATCH)

#define REDISKIT_DETAIL_STRINGIZE2(x) #x
#define REDISKIT_DETAIL_STRINGIZE(x) REDISKIT_DETAIL_STRINGIZE2(x)

/// "MAJOR.MINOR.PATCH" as a string literal.
#define REDISKIT_VERSION_STRING                                                        \
  REDISKIT_DETAIL_STRINGIZE(REDISKIT_VERSION_MAJOR)                                    \
  "." REDISKIT_DETAIL_STRINGIZE(REDISKIT_VERSION_MINOR) "." REDISKIT_DETAIL_STRINGIZE( \
      REDISKIT_VERSION_PATCH)

namespace rediskit {

inline constexpr int version_major = REDISKIT_VERSION_MAJOR;
inline constexpr int version_minor = REDISKIT_VERSION_MINOR;
inline constexpr int version_patch = REDISKIT_VERSION_PATCH;

/// The version as "MAJOR.MINOR.PATCH", e.g. "0.1.0".
inline constexpr std::string_view version_string = REDISKIT_VERSION_STRING;

}  // namespace rediskit
