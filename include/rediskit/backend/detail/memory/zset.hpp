// rediskit::detail::mem::ZSet: MemoryBackend's sorted-set value.
// (Being written: ordered by (score, member bytes), member -> score lookup, ranks.)
#pragma once

#include <cstddef>

namespace rediskit::detail::mem {

class ZSet {
 public:
  std::size_t size() const noexcept { return 0; }
  bool empty() const noexcept { return true; }
  std::size_t bytes() const noexcept { return 0; }
};

}  // namespace rediskit::detail::mem
