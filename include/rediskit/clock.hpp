// rediskit clock policies: what time MemoryBackend's TTLs, blocking timeouts and stream ids
// follow.
//
// A Clock type provides now_ms() (a monotonic millisecond count: TTLs and BLOCK timeouts) and
// unix_ms() (wall-clock milliseconds since 1970: TIME and stream ids), and a static constexpr
// bool `manual`: true when time moves only when the program says so (timeouts then fire on
// advance(), not on timers).
#pragma once

#include <chrono>
#include <cstdint>

namespace rediskit {

/// Real time: std::chrono::steady_clock for TTLs, system_clock for TIME and stream ids.
struct SteadyClock {
  static constexpr bool manual = false;
  std::int64_t now_ms() const noexcept {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  }
  std::int64_t unix_ms() const noexcept {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
};

/// Time that moves only by advance(): tests expire keys and time out blocked reads without
/// sleeping (FakeBackend's clock). Starts at unix time 1'700'000'000'000 ms unless told
/// otherwise.
class ManualClock {
 public:
  static constexpr bool manual = true;
  explicit ManualClock(std::int64_t start_unix_ms = 1'700'000'000'000) noexcept
      : unix_start_(start_unix_ms) {}
  std::int64_t now_ms() const noexcept { return now_; }
  std::int64_t unix_ms() const noexcept { return unix_start_ + now_; }
  /// Moves time forward (a negative duration is ignored: time never goes back).
  void advance(std::chrono::milliseconds d) noexcept {
    if (d.count() > 0) now_ += d.count();
  }

 private:
  std::int64_t unix_start_;
  std::int64_t now_ = 0;
};

}  // namespace rediskit
