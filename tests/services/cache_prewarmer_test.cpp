// CachePrewarmer over a UserCache on MemoryBackend, FakeBackend, RedisBackend and
// ClusterBackend: every distinct id warmed through the batch loader with seed 001's stats
// shape; at most `concurrency` loader calls in flight; the rate budget (users per second)
// holding the run back; progress callbacks (processed, cached, errors, elapsed, ETA);
// only_missing asking the loader for uncached ids only; a throwing loader counted as errors;
// max_users; cancellation through an Asio cancellation slot; bad options.
#include "support/backends.hpp"

#include <rediskit/services/cache_prewarmer.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using boost::system::error_code;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
namespace asio = boost::asio;

namespace {

UserProfile profile(std::string id) {
  return UserProfile(std::move(id), "Jean Dupont", "https://cdn/a.jpg", "MAT001", "MINFOP", "M",
                     1736862000000);
}

/// The auth service's GET /batch: every id but those ending in '7', after a short wait; it
/// records how many calls run at once.
struct FakeAuth {
  int in_flight = 0;
  int max_in_flight = 0;
  int calls = 0;
  std::size_t users = 0;
  std::chrono::milliseconds delay = 5ms;
  asio::awaitable<std::vector<UserProfile>> batch(std::vector<std::string> ids) {
    ++calls;
    users += ids.size();
    max_in_flight = std::max(max_in_flight, ++in_flight);
    asio::steady_timer t(co_await asio::this_coro::executor, delay);
    co_await t.async_wait(asio::use_awaitable);
    --in_flight;
    std::vector<UserProfile> out;
    for (auto const& id : ids)
      if (id.back() != '7') out.push_back(profile(id));
    co_return out;
  }
};

std::vector<std::string> ids(int n, std::string const& prefix = "u") {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

template <class B>
struct Warm {
  BackendFixture<B> f;
  UserCache<B> cache{f.backend};
  FakeAuth auth;

  auto loader() {
    return [this](std::vector<std::string> v) { return auth.batch(std::move(v)); };
  }
  template <class Source>
  std::pair<error_code, PrewarmStats> run(PrewarmOptions o, Source source) {
    CachePrewarmer<UserCache<B>> w(cache, std::move(o));
    auto [ec, s] = f.wait(w.async_run(std::move(source), loader()));
    return {ec, s};
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(cache_prewarmer)

BOOST_AUTO_TEST_CASE_TEMPLATE(warms_every_distinct_id_with_bounded_concurrency, B, AllBackends) {
  Warm<B> t;
  auto source = ids(1000);
  source.push_back("u5");  // a duplicate
  source.push_back("");    // an empty id
  std::vector<PrewarmProgress> progress;
  PrewarmOptions o;
  o.batch_size = 100;
  o.concurrency = 3;
  o.on_progress = [&](PrewarmProgress const& p) { progress.push_back(p); };
  // An awaitable source, as a repository query would be.
  auto src = [&]() -> asio::awaitable<std::vector<std::string>> { co_return source; };
  auto [ec, s] = t.run(o, src);
  BOOST_TEST(!ec);
  BOOST_TEST(s.total_processed == 1000u);
  BOOST_TEST(s.errors == 100u);  // the ids ending in 7
  BOOST_TEST(s.cached == 900u);
  BOOST_TEST(!s.cancelled);
  BOOST_TEST(s.duration_text().back() == 's');
  BOOST_TEST(t.auth.calls == 10);
  BOOST_TEST(t.auth.max_in_flight == 3);
  BOOST_TEST_REQUIRE(progress.size() == 10u);
  for (std::size_t i = 1; i < progress.size(); ++i)
    BOOST_TEST(progress[i].processed > progress[i - 1].processed);
  BOOST_TEST(progress.back().processed == 1000u);
  BOOST_TEST(progress.back().total == 1000u);
  BOOST_TEST(progress.back().eta.count() == 0);
  BOOST_TEST(progress.front().eta.count() >= 0);
  auto stats = t.f.wait(t.cache.async_get_stats());
  BOOST_TEST(std::get<1>(stats).total_cached == 900);
  auto got = t.f.wait(t.cache.async_get("u999"));
  BOOST_TEST(std::get<1>(got).has_value());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_rate_budget_holds_the_run_back, B, AllBackends) {
  Warm<B> t;
  t.auth.delay = 0ms;
  PrewarmOptions o;
  o.batch_size = 50;
  o.concurrency = 4;
  o.rate = 1000;  // 300 users: the last batch may start at 250 ms
  auto const start = std::chrono::steady_clock::now();
  auto [ec, s] = t.run(o, ids(300));
  auto const took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(!ec);
  BOOST_TEST(s.total_processed == 300u);
  BOOST_TEST((took >= 245ms));
  BOOST_TEST((s.duration >= 245ms));
  BOOST_TEST((took < 5s));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(only_missing_asks_the_loader_for_uncached_ids, B, AllBackends) {
  Warm<B> t;
  for (int i = 0; i < 10; ++i) (void)t.f.wait(t.cache.async_set(profile("u" + std::to_string(i))));
  PrewarmOptions o;
  o.batch_size = 8;
  o.only_missing = true;
  o.max_users = 18;  // u0..u17 of the 40
  auto [ec, s] = t.run(o, ids(40));
  BOOST_TEST(!ec);
  BOOST_TEST(s.total_processed == 18u);
  BOOST_TEST(t.auth.users == 8u);  // u10..u17: u0..u9 were cached
  BOOST_TEST(t.auth.calls == 2);   // batches [u8..u15] and [u16, u17]; [u0..u7] needed none
  BOOST_TEST(s.cached == 17u);
  BOOST_TEST(s.errors == 1u);      // u17: the loader does not know it
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_failing_loader_counts_its_batch_as_errors, B, AllBackends) {
  Warm<B> t;
  CachePrewarmer<UserCache<B>> w(t.cache, {.batch_size = 10, .concurrency = 2});
  int call = 0;
  auto loader = [&](std::vector<std::string> v) {
    if (++call == 2) throw std::runtime_error("auth service down");
    std::vector<UserProfile> out;
    for (auto const& id : v) out.push_back(profile(id));
    return out;
  };
  auto [ec, s] = t.f.wait(w.async_run(ids(30), loader));
  BOOST_TEST(!ec);
  BOOST_TEST(s.total_processed == 30u);
  BOOST_TEST(s.cached == 20u);
  BOOST_TEST(s.errors == 10u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_cancelled_run_stops_early_with_its_stats, B, AllBackends) {
  Warm<B> t;
  t.auth.delay = 0ms;
  PrewarmOptions o;
  o.batch_size = 10;
  o.concurrency = 2;
  o.rate = 100;  // 1000 users would take 10 s
  CachePrewarmer<UserCache<B>> w(t.cache, o);
  asio::cancellation_signal cancel;
  std::optional<std::pair<error_code, PrewarmStats>> out;
  w.async_run(ids(1000), t.loader(),
              asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, PrewarmStats s) {
                out.emplace(ec, s);
              }));
  auto const start = std::chrono::steady_clock::now();
  t.f.run_until([&] { return std::chrono::steady_clock::now() - start > 200ms; });
  cancel.emit(asio::cancellation_type::terminal);
  t.f.run_until([&] { return out.has_value(); }, 2s);
  BOOST_TEST(out->first == asio::error::operation_aborted);
  BOOST_TEST(out->second.cancelled);
  BOOST_TEST(out->second.total_processed >= 10u);
  BOOST_TEST(out->second.total_processed < 100u);
  BOOST_TEST(out->second.total_processed == std::size_t(t.auth.users));
  BOOST_TEST((std::chrono::steady_clock::now() - start < 1500ms));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_options_are_invalid_argument, B, AllBackends) {
  Warm<B> t;
  auto [ec, s] = t.run(PrewarmOptions{.batch_size = 0}, ids(3));
  BOOST_TEST(ec == make_error_code(Error::invalid_argument));
  BOOST_TEST(t.auth.calls == 0);
}

BOOST_AUTO_TEST_SUITE_END()
