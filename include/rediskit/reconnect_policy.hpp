// rediskit: how a Connection retries after the link drops (seed 003: "retry limité à 3
// tentatives", no tight loop, no log spam).
//
// Pure arithmetic, no I/O: the delay before retry number n is
//   min(max_delay, initial_delay * 2^(n-1)), scaled by a random factor in [0.5, 1] when jitter is
// on, so that a fleet of clients that lost the same server does not reconnect in lock step.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace rediskit {

/// Reconnection with exponential backoff, jitter, a cap and a bounded number of attempts.
struct ReconnectPolicy {
  std::chrono::milliseconds initial_delay{200};  ///< delay before the first retry
  std::chrono::milliseconds max_delay{2000};     ///< cap of a single delay
  unsigned max_attempts = 3;  ///< retries after a failure before giving up; 0 = never retry
  bool jitter = true;         ///< spread delays randomly over [delay/2, delay]

  /// Delay before retry `attempt` (1-based). `random` is any uniformly distributed 64-bit
  /// value (only used when jitter is on).
  constexpr std::chrono::milliseconds delay(unsigned attempt, std::uint64_t random) const noexcept {
    using rep = std::chrono::milliseconds::rep;
    rep const cap = std::max<rep>(max_delay.count(), 0);
    rep d = std::max<rep>(initial_delay.count(), 0);
    for (unsigned i = 1; i < attempt && d < cap; ++i) d *= 2;
    d = std::min(d, cap);
    if (jitter && d > 1) d = d / 2 + static_cast<rep>(random % static_cast<std::uint64_t>(d / 2 + 1));
    return std::chrono::milliseconds{d};
  }
};

}  // namespace rediskit
