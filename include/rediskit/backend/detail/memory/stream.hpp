// rediskit::detail::mem::Stream: MemoryBackend's stream value.
// (Being written: entries by id, consumer groups, pending entries lists.)
#pragma once

#include <cstddef>

namespace rediskit::detail::mem {

class Stream {
 public:
  std::size_t size() const noexcept { return 0; }
  std::size_t bytes() const noexcept { return 0; }
};

}  // namespace rediskit::detail::mem
