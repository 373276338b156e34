// rediskit test support: a real-time margin, for tests whose TTLs run on a real clock.
//
//   rediskit::test::Margin renewed(1000ms);     // the key was renewed now, with a 1 s TTL
//   f.advance(700ms);                           // sleeps on a real clock
//   bool const live = ...;                      // read what needs the key alive
//   if (renewed.held()) BOOST_TEST(live);       // else the machine stalled past the TTL
//
// On a real clock (RedisBackend, ClusterBackend, or MemoryBackend on SteadyClock) a loaded
// machine can stall between two steps for longer than a test's margin: CI runs both compilers'
// tests side by side, several at once. Then the key really did expire, and what a test asserts
// of it being alive would not hold for any implementation. Such assertions are made only when
// the steady clock shows the margin held; a test on the manual clock always holds it (its
// advance() does not sleep). Read what is checked before asking held(), so that the answer
// covers the read. A check that does not need the margin (a key that must be gone) is made
// whatever held() says.
#pragma once

#include <chrono>

namespace rediskit::test {

/// `window` from now on the steady clock: held() while less of it has passed.
class Margin {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Margin(Clock::duration window) noexcept : start_(Clock::now()), window_(window) {}

  /// True while less than the window has passed since construction.
  bool held() const noexcept { return Clock::now() - start_ < window_; }

 private:
  Clock::time_point start_;
  Clock::duration window_;
};

}  // namespace rediskit::test
