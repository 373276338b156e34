// CircuitBreaker on the manual clock: the failure-rate window and its minimum, which errors
// count, fail-fast while open, exactly N half-open probes, stale outcomes, abandoned permits,
// reset / force_open, events, settings checked; and async_run around FakeBackend operations
// when its link drops and comes back.
#include <rediskit/backend/fake_backend.hpp>
#include <rediskit/circuit_breaker.hpp>
#include <rediskit/commands.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;
using Breaker = CircuitBreaker<ManualClock>;

namespace {

error_code const ok{};
error_code const lost = make_error_code(Error::connection_lost);
error_code const refused = make_error_code(asio::error::connection_refused);
error_code const wrong_type = make_error_code(Error::wrong_type);

CircuitBreakerConfig small(std::vector<CircuitEvent>* events = nullptr) {
  CircuitBreakerConfig c{.failure_rate = 0.5, .window = 4, .minimum_calls = 4, .open_for = 5s,
                         .probes = 2};
  if (events) c.on_event = [events](CircuitEvent e) { events->push_back(e); };
  return c;
}

/// One call through the breaker, ending with `ec`. False when it was rejected.
bool call(Breaker& b, error_code ec) {
  auto p = b.try_acquire();
  if (!p) return false;
  b.record(std::move(*p), ec);
  return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(circuit_breaker)

BOOST_AUTO_TEST_CASE(opens_at_the_failure_rate_once_the_window_holds_the_minimum) {
  Breaker b(small());
  BOOST_TEST(call(b, lost));
  BOOST_TEST(call(b, lost));
  BOOST_TEST(call(b, refused));  // 3 failures of 3: below the minimum of 4 outcomes
  BOOST_TEST((b.state() == CircuitState::closed));
  BOOST_TEST(call(b, ok));  // 3 of 4 >= 0.5
  BOOST_TEST((b.state() == CircuitState::open));
  BOOST_TEST(b.stats().failures == 3u);
  BOOST_TEST(b.stats().successes == 1u);
  BOOST_TEST(b.stats().opened == 1u);
}

BOOST_AUTO_TEST_CASE(only_outages_count_and_old_outcomes_leave_the_window) {
  Breaker b(small());
  for (int i = 0; i < 10; ++i) BOOST_TEST(call(b, wrong_type));  // the caller's bug
  BOOST_TEST((b.state() == CircuitState::closed));
  BOOST_TEST(b.stats().failures == 0u);
  BOOST_TEST(!is_outage(make_error_code(Error::invalid_argument)));
  BOOST_TEST(!is_outage(make_error_code(Error::no_script)));
  BOOST_TEST(is_outage(make_error_code(Error::reconnect_gave_up)));
  BOOST_TEST(is_outage(make_error_code(asio::error::timed_out)));
  // A sliding window of 4: [ok ok lost ok] is 25 %; then lost, lost: [lost ok lost lost].
  BOOST_TEST(call(b, lost));
  BOOST_TEST(call(b, ok));
  BOOST_TEST((b.state() == CircuitState::closed));
  BOOST_TEST(b.failure_rate() == 0.25);
  BOOST_TEST(call(b, lost));
  BOOST_TEST((b.state() == CircuitState::open));
}

BOOST_AUTO_TEST_CASE(open_rejects_then_exactly_the_probes_go_and_decide) {
  std::vector<CircuitEvent> events;
  Breaker b(small(&events));
  for (int i = 0; i < 4; ++i) call(b, lost);
  BOOST_REQUIRE((b.state() == CircuitState::open));
  BOOST_TEST(!b.try_acquire().has_value());
  b.clock().advance(4999ms);
  BOOST_TEST(!b.try_acquire().has_value());
  BOOST_TEST(b.stats().rejected == 2u);
  b.clock().advance(1ms);
  BOOST_TEST((b.state() == CircuitState::half_open));
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  BOOST_TEST(p1.has_value());
  BOOST_TEST(p2.has_value());
  BOOST_TEST(!b.try_acquire().has_value());  // exactly 2 probes
  b.record(std::move(*p1), ok);
  BOOST_TEST((b.state() == CircuitState::half_open));  // one probe still out
  BOOST_TEST(!b.try_acquire().has_value());
  b.record(std::move(*p2), ok);
  BOOST_TEST((b.state() == CircuitState::closed));
  BOOST_TEST(call(b, ok));
  std::vector<CircuitEvent> const want{CircuitEvent::opened,      CircuitEvent::rejected,
                                       CircuitEvent::rejected,    CircuitEvent::half_opened,
                                       CircuitEvent::rejected,    CircuitEvent::rejected,
                                       CircuitEvent::closed};
  BOOST_TEST(events == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(failing_probes_open_it_again_for_another_period) {
  Breaker b(small());
  for (int i = 0; i < 4; ++i) call(b, lost);
  b.clock().advance(5s);
  BOOST_TEST(call(b, ok));
  BOOST_TEST(call(b, refused));  // 1 of 2 probes failed: 50 % >= 50 %
  BOOST_TEST((b.state() == CircuitState::open));
  BOOST_TEST(b.stats().opened == 2u);
  b.clock().advance(4s);
  BOOST_TEST((b.state() == CircuitState::open));  // the new period counts from now
  b.clock().advance(1s);
  BOOST_TEST((b.state() == CircuitState::half_open));
}

BOOST_AUTO_TEST_CASE(outcomes_from_before_a_state_change_and_dropped_permits) {
  Breaker b(small());
  auto slow = b.try_acquire();  // let through while closed
  for (int i = 0; i < 4; ++i) call(b, lost);
  b.clock().advance(5s);
  auto probe = b.try_acquire();
  BOOST_REQUIRE(probe.has_value());
  b.record(std::move(*slow), ok);  // from the closed period: not a probe
  BOOST_TEST((b.state() == CircuitState::half_open));
  probe.reset();  // dropped without an outcome (its handler was destroyed): the slot is free
  auto a = b.try_acquire();
  auto c = b.try_acquire();
  BOOST_TEST(a.has_value());
  BOOST_TEST(c.has_value());
  BOOST_TEST(!b.try_acquire().has_value());
  b.record(std::move(*a), ok);
  b.record(std::move(*c), ok);
  BOOST_TEST((b.state() == CircuitState::closed));
}

BOOST_AUTO_TEST_CASE(force_open_holds_until_reset) {
  Breaker b(small());
  b.force_open();
  BOOST_TEST(b.forced_open());
  b.clock().advance(1h);
  BOOST_TEST((b.state() == CircuitState::open));
  BOOST_TEST(!b.try_acquire().has_value());
  b.reset();
  BOOST_TEST((b.state() == CircuitState::closed));
  BOOST_TEST(!b.forced_open());
  BOOST_TEST(b.failure_rate() == 0.0);
  BOOST_TEST(call(b, ok));
}

// trip(): open now, without counting calls; half open after open_for, like a counted opening.
BOOST_AUTO_TEST_CASE(trip_opens_at_once_and_half_opens_after_open_for) {
  Breaker b(small());
  BOOST_TEST(call(b, ok));
  b.trip();
  BOOST_TEST((b.state() == CircuitState::open));
  BOOST_TEST(!b.forced_open());
  BOOST_TEST(!b.try_acquire().has_value());
  BOOST_TEST(b.stats().opened == 1u);
  b.trip();  // already open: no second opening, no new open period
  BOOST_TEST(b.stats().opened == 1u);
  b.clock().advance(b.config().open_for);
  BOOST_TEST((b.state() == CircuitState::half_open));
  b.trip();  // half open: opens again
  BOOST_TEST((b.state() == CircuitState::open));
  BOOST_TEST(b.stats().opened == 2u);
}

BOOST_AUTO_TEST_CASE(settings_out_of_range_are_named) {
  auto throws_naming = [](CircuitBreakerConfig c, std::string const& what) {
    try {
      Breaker b(std::move(c));
      BOOST_ERROR("accepted a bad " << what);
    } catch (Exception const& e) {
      BOOST_TEST(e.code() == make_error_code(Error::invalid_config));
      BOOST_TEST(std::string(e.what()).find(what) != std::string::npos, e.what());
    }
  };
  throws_naming({.failure_rate = 0.0}, "failure_rate");
  throws_naming({.failure_rate = 1.5}, "failure_rate");
  throws_naming({.window = 5, .minimum_calls = 6}, "minimum_calls");
  throws_naming({.window = 0}, "window");
  throws_naming({.probes = 0}, "probes");
  BOOST_TEST(std::string(make_error_code(Error::circuit_open).message()).find("circuit breaker") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(async_run_fails_fast_while_the_backend_is_down_and_recovers) {
  asio::io_context ioc;
  FakeBackend db(ioc);
  Breaker b(small());
  std::vector<std::string> log;
  auto get = [&] {
    std::optional<std::tuple<error_code, std::optional<std::string>>> out;
    b.async_run(ioc.get_executor(), db.async_exec(cmd::get{"k"}),
                [&](error_code ec, std::optional<std::string> v) { out.emplace(ec, v); });
    BOOST_TEST(!out.has_value());  // never inside the call, rejected or not
    ioc.restart();
    ioc.run();
    BOOST_REQUIRE(out.has_value());
    return *out;
  };
  BOOST_TEST(!std::get<0>(get()));
  db.drop_connection();
  // [ok lost lost] is below the minimum of 4 outcomes; [ok lost lost lost] opens it.
  for (int i = 0; i < 3; ++i) {
    BOOST_TEST((b.state() == CircuitState::closed));
    BOOST_TEST(std::get<0>(get()) == make_error_code(Error::not_connected));
  }
  BOOST_REQUIRE((b.state() == CircuitState::open));
  db.restore_connection();  // back, but the breaker waits out open_for
  auto const sent = db.command_log().size();
  BOOST_TEST(std::get<0>(get()) == make_error_code(Error::circuit_open));
  BOOST_TEST(db.command_log().size() == sent);  // nothing was attempted
  b.clock().advance(5s);
  BOOST_TEST(!std::get<0>(get()));
  BOOST_TEST(db.command_log().size() == sent + 1);
  BOOST_TEST(!std::get<0>(get()));
  BOOST_TEST((b.state() == CircuitState::closed));
}

BOOST_AUTO_TEST_SUITE_END()
