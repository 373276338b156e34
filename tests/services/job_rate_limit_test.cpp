// Seed 002's rate limit held over 10 s (issue 15): at most 10 jobs/s for the whole queue, shared
// by two workers at concurrency 5 (the seed's figures), with 200 jobs ready from the start, so
// the limit alone decides. In the 10 s from the first job, 10 windows of 1 s start: 100 jobs.
// The exact promise is the sliding check at the end: no 10 jobs start within 0.9 s.
//
// On MemoryBackend, RedisBackend and ClusterBackend the 10 s are real (this file is a CTest test
// of its own, so they run beside the other suites). On FakeBackend they are simulated: the
// window is the server's (a key with PX on the manual clock) and a limited worker waits on the
// queue's marker with the window's remaining time, which follows the manual clock; the test
// advances it 5 ms at a time.
#include "support/backends.hpp"

#include <rediskit/services/job_queue.hpp>
#include <rediskit/services/worker.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;

BOOST_AUTO_TEST_SUITE(job_rate_limit)

BOOST_AUTO_TEST_CASE_TEMPLATE(ten_jobs_a_second_hold_for_ten_seconds, B, AllBackends) {
  constexpr bool manual = BackendFixture<B>::is_fake;
  BackendFixture<B> f;
  JobQueue<B> q(f.backend, "notifications");
  std::vector<NewJob> jobs;
  for (int i = 0; i < 200; ++i) jobs.push_back(q.make_job("n", i));
  auto [ec, added] = f.wait(q.async_add_bulk(std::move(jobs)));
  BOOST_REQUIRE(!ec);

  // Milliseconds since the test began: the manual clock's, or real ones.
  std::int64_t simulated = 0;
  auto const began = std::chrono::steady_clock::now();
  auto now_ms = [&]() -> std::int64_t {
    if constexpr (manual)
      return simulated;
    else
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now() - began)
          .count();
  };
  std::vector<std::int64_t> started;
  WorkerOptions o;
  o.concurrency = 5;
  o.limiter.max = 10;
  o.limiter.duration = 1000ms;
  o.stalled_interval = 0ms;
  o.idle_wait = 200ms;
  Worker<B> w1(q, [&](ActiveJob&) { started.push_back(now_ms()); }, o);
  Worker<B> w2(q, [&](ActiveJob&) { started.push_back(now_ms()); }, o);
  w1.start();
  w2.start();
  auto pump = [&](std::chrono::milliseconds real) {
    auto const until = std::chrono::steady_clock::now() + real;
    while (std::chrono::steady_clock::now() < until) {
      if (f.ioc.stopped()) f.ioc.restart();
      f.ioc.run_one_for(1ms);
    }
  };
  // The first job starts at once, but a loaded machine (two sanitizer builds' tests side by
  // side) may take a while to get there: wait for it, 5 s at most.
  for (auto const give_up = std::chrono::steady_clock::now() + 5s;
       started.empty() && std::chrono::steady_clock::now() < give_up;)
    pump(10ms);
  BOOST_REQUIRE(!started.empty());
  std::int64_t const t0 = started.front();
  while (now_ms() < t0 + 10'500) {
    if constexpr (manual) {
      simulated += 5;
      f.backend.advance(5ms);
      pump(1ms);
    } else {
      pump(50ms);
    }
  }
  std::int64_t in_ten = 0;
  for (std::int64_t t : started) in_ten += t < t0 + 10'000;
  BOOST_TEST_MESSAGE(B::name << ": jobs started in the first 10 s: " << in_ten << " of "
                             << started.size() << " so far");
  // The limiter's promise is the upper bound. A window starts when its first job is taken, and
  // t0 is when that job's handler ran, later on a loaded machine: then the 10 s from t0 reach
  // into an 11th window (110 was seen with two sanitizer builds' tests side by side). A starved
  // machine also starts fewer (90 was seen), so the lower bound only catches a limiter that
  // holds jobs back.
  BOOST_TEST(in_ten >= 80);
  BOOST_TEST(in_ten <= 110);
  // No 1 s span holds more than the limit, wherever it starts (a window's jobs start within
  // it, and the next window starts when it ends).
  for (std::size_t i = 10; i < started.size(); ++i) BOOST_TEST(started[i] - started[i - 10] >= 900);
  std::optional<boost::system::error_code> c1, c2;
  w1.async_close(1s, [&](boost::system::error_code e) { c1 = e; });
  w2.async_close(1s, [&](boost::system::error_code e) { c2 = e; });
  f.run_until([&] { return c1 && c2; });
}

BOOST_AUTO_TEST_SUITE_END()
