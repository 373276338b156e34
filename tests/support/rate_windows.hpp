// rediskit test support: a fixed-window rate limiter's windows, rebuilt from when each job was
// taken, so that a test checks the limit on the takes (the server's stamps) rather than on when
// handlers ran, which a loaded machine delays.
//
//   std::sort(taken.begin(), taken.end());                    // ms
//   for (auto const& w : rediskit::test::fixed_windows(taken, 998))
//     BOOST_TEST(w.jobs <= 10u, "the window from " << w.start << " ms holds " << w.jobs);
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rediskit::test {

/// One rebuilt window: its first take (ms) and how many takes fall in it.
struct TakeWindow {
  std::int64_t start = 0;
  std::size_t jobs = 0;
};

/// The windows of `length_ms` over `taken` (sorted, ms): each starts at the first take after the
/// previous one ended.
inline std::vector<TakeWindow> fixed_windows(std::vector<std::int64_t> const& taken,
                                             std::int64_t length_ms) {
  std::vector<TakeWindow> out;
  for (std::size_t i = 0; i < taken.size();) {
    std::size_t j = i;
    while (j < taken.size() && taken[j] < taken[i] + length_ms)
      ++j;
    out.push_back({taken[i], j - i});
    i = j;
  }
  return out;
}

}  // namespace rediskit::test
