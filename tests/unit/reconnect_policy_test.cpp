#include <rediskit/reconnect_policy.hpp>

#include <boost/test/unit_test.hpp>

using namespace std::chrono_literals;
using rediskit::ReconnectPolicy;

BOOST_AUTO_TEST_SUITE(reconnect_policy)

BOOST_AUTO_TEST_CASE(doubles_up_to_the_cap_without_jitter) {
  ReconnectPolicy p{.initial_delay = 100ms, .max_delay = 1000ms, .max_attempts = 10,
                    .jitter = false};
  BOOST_TEST(p.delay(1, 0).count() == 100);
  BOOST_TEST(p.delay(2, 0).count() == 200);
  BOOST_TEST(p.delay(3, 0).count() == 400);
  BOOST_TEST(p.delay(4, 0).count() == 800);
  BOOST_TEST(p.delay(5, 0).count() == 1000);
  BOOST_TEST(p.delay(1000, 0).count() == 1000);  // no overflow for large attempt numbers
}

BOOST_AUTO_TEST_CASE(jitter_stays_within_half_and_full_delay) {
  ReconnectPolicy p{.initial_delay = 200ms, .max_delay = 2000ms};
  for (std::uint64_t r : {0ull, 1ull, 99ull, 100ull, 101ull, ~0ull, 123456789ull}) {
    auto d = p.delay(1, r).count();
    BOOST_TEST(d >= 100);
    BOOST_TEST(d <= 200);
  }
  BOOST_TEST(p.delay(1, 0).count() == 100);
  BOOST_TEST(p.delay(1, 100).count() == 200);
}

BOOST_AUTO_TEST_CASE(defaults_follow_the_seed) {
  ReconnectPolicy p;
  BOOST_TEST(p.max_attempts == 3u);  // seed 003: "retry limité à 3 tentatives"
  BOOST_TEST(p.max_delay.count() == 2000);
}

BOOST_AUTO_TEST_SUITE_END()
