// UserEventPublisher and UserStreamConsumer on MemoryBackend, FakeBackend, RedisBackend and
// ClusterBackend: seed 001's JSON on events:users (and MAXLEN ~); events applied to a UserCache
// (versioned: a late event does not overwrite) and acknowledged; a consumer killed between
// read and ack (a raw XREADGROUP that never acks), its entry reclaimed by XAUTOCLAIM and
// applied exactly once more by another consumer; a pending entry deleted from the stream
// (XAUTOCLAIM's third element); a poison entry dead-lettered after K deliveries with its reason;
// a graceful stop leaving no entry un-acknowledged; the three handler forms; bad options; and,
// on a redis-server of its own, a restart mid-consumption after which the consumer resumes.
//
// On FakeBackend the engine's clock is manual: the waits below advance it (BLOCK timeouts and
// XAUTOCLAIM idle times follow it), so the same cases run there.
#include "support/backends.hpp"
#include "support/user_profiles.hpp"
#include "support/test_redis.hpp"

#include <rediskit/services/user_events.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using boost::system::error_code;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
namespace asio = boost::asio;

namespace {

using rediskit::test::profile;

/// Fast options for tests: short blocks and claim times.
UserStreamOptions fast(std::string consumer = "c1") {
  UserStreamOptions o;
  o.consumer_group = "g";
  o.consumer_name = std::move(consumer);
  o.block = 50ms;
  o.claim_idle = 100ms;
  o.claim_interval = 50ms;
  o.retry_delay = 50ms;
  o.start_id = "0";
  return o;
}

template <class B>
struct Env {
  BackendFixture<B> f;
  UserEventPublisher<B> pub{f.backend};

  template <class Op>
  auto ok(Op&& op) {
    return f.value(std::forward<Op>(op));
  }

  std::string publish(UserEvent const& e) { return ok(pub.async_publish(e)); }

  /// Runs the io_context until pred(), advancing a manual clock as it goes.
  template <class Pred>
  void until(Pred pred, std::chrono::milliseconds limit = 15s) {
    f.run_until(
        [&] {
          if constexpr (BackendFixture<B>::is_fake) f.backend.advance(10ms);
          return pred();
        },
        limit);
  }

  /// Lets the io_context run for `d` (on a manual clock, `d` of it passes too).
  void run_for(std::chrono::milliseconds d) {
    auto const end = std::chrono::steady_clock::now() + d;
    until([&] { return std::chrono::steady_clock::now() >= end; });
  }

  std::int64_t pending() {
    auto [ec, p] = f.exec(cmd::xpending{.key = "events:users", .group = "g"});
    return ec ? -1 : p.count;
  }

  /// Starts `c`; `done` is set when its run completes.
  void start(UserStreamConsumer<B>& c, std::optional<error_code>& done) {
    c.async_run([&done](error_code ec) { done = ec; });
  }
  void stop(UserStreamConsumer<B>& c, std::optional<error_code>& done) {
    c.stop();
    until([&] { return done.has_value(); });
    BOOST_TEST(!*done, done->message());
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(user_stream)

BOOST_AUTO_TEST_CASE_TEMPLATE(publish_writes_seed_001s_payload, B, AllBackends) {
  Env<B> t;
  auto const id = t.publish(UserEvent::updated(profile("42", 1736862000000)));
  BOOST_TEST(!id.empty());
  auto entries = t.f.ok(cmd::xrange{.key = "events:users"});
  BOOST_TEST_REQUIRE(entries.size() == 1u);
  BOOST_TEST(entries[0].fields.size() == 1u);
  auto const* payload = entries[0].find("payload");
  BOOST_TEST_REQUIRE(payload != nullptr);
  BOOST_TEST(*payload == R"({"event":"user.profile.updated","userId":"42","fullName":"Jean Dupont",)"
                         R"("avatar":"https://cdn/a.jpg","matricule":"MAT001","timestamp":1736862000000})");
  UserEvent bad;
  auto [ec, none] = t.f.wait(t.pub.async_publish(bad));
  BOOST_TEST(ec == make_error_code(Error::invalid_argument));
  // MAXLEN ~ trims (approximately on Redis: the stream stays bounded, if above n).
  UserEventPublisher<B> bounded(t.f.backend, {.max_len = 10, .approximate = false});
  for (int i = 0; i < 30; ++i) t.ok(bounded.async_publish(UserEvent::deleted("u" + std::to_string(i))));
  BOOST_TEST(t.f.ok(cmd::xlen{"events:users"}) == 10);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(events_are_applied_to_the_cache_then_acknowledged, B, AllBackends) {
  Env<B> t;
  UserCache<B> cache(t.f.backend);
  t.ok(cache.async_set(profile("1", 1000)));
  t.ok(cache.async_set(profile("2", 1000)));
  t.ok(cache.async_set(profile("3", 5000, "Newest")));
  t.publish(UserEvent::updated(profile("1", 2000, "Renamed")));
  t.publish(UserEvent::deleted("2", 2000));
  t.publish(UserEvent::created(profile("4", 2000, "Created")));
  t.publish(UserEvent::updated(profile("3", 4000, "Late")));  // older than the cached one
  t.publish(UserEvent::updated(profile("5", 2000, "Not cached")));
  UserStreamConsumer<B> c(t.f.backend, cache, fast());
  std::optional<error_code> done;
  t.start(c, done);
  t.until([&] { return c.stats().processed == 5u; });
  BOOST_TEST(t.ok(cache.async_get("1"))->fullName == "Renamed");
  BOOST_TEST(t.ok(cache.async_get("1"))->ministere == "MINFOP");  // merged, not replaced
  BOOST_TEST(!t.ok(cache.async_get("2")).has_value());
  BOOST_TEST(t.ok(cache.async_get("4"))->fullName == "Created");
  BOOST_TEST(t.ok(cache.async_get("3"))->fullName == "Newest");
  BOOST_TEST(!t.ok(cache.async_get("5")).has_value());
  BOOST_TEST(t.pending() == 0);
  // New events reach the blocked reader.
  t.publish(UserEvent::updated(profile("1", 3000, "Again")));
  t.until([&] { return c.stats().processed == 6u; });
  BOOST_TEST(t.ok(cache.async_get("1"))->fullName == "Again");
  auto s = t.ok(c.async_stats());
  BOOST_TEST(s.pending == 0);
  BOOST_TEST(s.lag == 0);
  BOOST_TEST(s.failed == 0u);
  t.stop(c, done);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(an_entry_of_a_consumer_killed_before_its_ack_is_applied_once_more,
                              B, AllBackends) {
  Env<B> t;
  t.f.ok(cmd::xgroup_create{.key = "events:users", .group = "g", .id = "$", .mkstream = true});
  auto const lost = t.publish(UserEvent::updated(profile("7", 1)));
  // "crashed" reads the entry and dies before its XACK.
  auto r = t.f.ok(cmd::xreadgroup{.group = "g", .consumer = "crashed", .keys = "events:users",
                                  .ids = ">", .count = 10});
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST(t.pending() == 1);
  auto const other = t.publish(UserEvent::updated(profile("8", 1)));
  std::map<std::string, int> applied;
  UserStreamConsumer<B> c(t.f.backend, fast("c2"),
                          [&](UserEvent const& e) { ++applied[e.stream_id]; });
  std::optional<error_code> done;
  t.start(c, done);
  t.until([&] { return applied.count(lost) && t.pending() == 0; });
  t.run_for(300ms);  // further claim rounds find nothing to take
  BOOST_TEST(applied[lost] == 1);
  BOOST_TEST(applied[other] == 1);
  BOOST_TEST(c.stats().reclaimed == 1u);
  BOOST_TEST(c.stats().processed == 2u);
  t.stop(c, done);
  BOOST_TEST(t.pending() == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_pending_entry_deleted_from_the_stream_is_dropped, B, AllBackends) {
  Env<B> t;
  t.f.ok(cmd::xgroup_create{.key = "events:users", .group = "g", .id = "$", .mkstream = true});
  auto const gone = t.publish(UserEvent::updated(profile("7", 1)));
  (void)t.f.ok(cmd::xreadgroup{.group = "g", .consumer = "crashed", .keys = "events:users",
                               .ids = ">", .count = 10});
  t.f.ok(cmd::xdel{.key = "events:users", .ids = gone});
  int applied = 0;
  UserStreamConsumer<B> c(t.f.backend, fast("c2"), [&](UserEvent const&) { ++applied; });
  std::optional<error_code> done;
  t.start(c, done);
  t.until([&] { return c.stats().deleted_pending == 1u; });
  BOOST_TEST(applied == 0);
  BOOST_TEST(t.pending() == 0);
  t.stop(c, done);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_poison_entry_is_dead_lettered_after_k_deliveries, B, AllBackends) {
  Env<B> t;
  auto o = fast();
  o.max_deliveries = 3;
  int poison_calls = 0;
  int good = 0;
  UserStreamConsumer<B> c(t.f.backend, o, [&](UserEvent const& e, error_code& ec) {
    if (e.userId == "poison") {
      ++poison_calls;
      ec = make_error_code(Error::decode_failed);
    } else {
      ++good;
    }
  });
  auto const poison = t.publish(UserEvent::updated(profile("poison", 1)));
  t.publish(UserEvent::updated(profile("fine", 1)));
  t.f.ok(cmd::xadd{.key = "events:users", .fields = FieldValue{"payload", "not json"}});
  std::optional<error_code> done;
  t.start(c, done);
  t.until([&] { return c.stats().dead_lettered == 2u && t.pending() == 0; });
  BOOST_TEST(poison_calls == 3);
  BOOST_TEST(good == 1);
  BOOST_TEST(c.stats().failed == 3u);
  BOOST_TEST(c.stats().processed == 1u);
  auto dead = t.f.ok(cmd::xrange{.key = "events:users:dead-letter"});
  BOOST_TEST_REQUIRE(dead.size() == 2u);
  // The malformed entry went at once (its first delivery), the poison one after three.
  std::map<std::string, std::string> first(dead[1].fields.begin(), dead[1].fields.end());
  BOOST_TEST(first["id"] == poison);
  BOOST_TEST(first["deliveries"] == "3");
  BOOST_TEST(first["reason"].find("handler failed") != std::string::npos, first["reason"]);
  BOOST_TEST(first["consumer"] == "c1");
  BOOST_TEST(boost::json::parse(first["payload"]).at("userId").as_string() == "poison");
  std::map<std::string, std::string> second(dead[0].fields.begin(), dead[0].fields.end());
  BOOST_TEST(second["reason"].find("not JSON") != std::string::npos, second["reason"]);
  BOOST_TEST(second["deliveries"] == "1");
  t.stop(c, done);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_graceful_stop_leaves_no_entry_unacknowledged, B, AllBackends) {
  Env<B> t;
  auto o = fast();
  o.batch_size = 5;
  int handled = 0;
  UserStreamConsumer<B> c(t.f.backend, o,
                          [&](UserEvent const&) -> asio::awaitable<void> {
                            asio::steady_timer w(co_await asio::this_coro::executor, 2ms);
                            co_await w.async_wait(asio::use_awaitable);
                            ++handled;
                          });
  for (int i = 0; i < 40; ++i) t.publish(UserEvent::updated(profile(std::to_string(i), 1)));
  std::optional<error_code> done;
  t.start(c, done);
  t.until([&] { return handled >= 7; });
  c.stop();
  t.until([&] { return done.has_value(); });
  BOOST_TEST(!*done);
  BOOST_TEST(!c.running());
  BOOST_TEST(t.pending() == 0);  // everything handled was acknowledged
  BOOST_TEST(c.stats().processed == std::uint64_t(handled));
  BOOST_TEST(handled < 40);      // it stopped early ...
  BOOST_TEST(handled % 5 == 0);  // ... at the end of a batch
  // A stop while the read blocks: returns promptly.
  UserStreamConsumer<B> idle(t.f.backend, fast("c3"), [](UserEvent const&) {});
  std::optional<error_code> idle_done;
  t.start(idle, idle_done);
  t.run_for(200ms);
  t.stop(idle, idle_done);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_options_are_invalid_argument, B, AllBackends) {
  Env<B> t;
  auto o = fast();
  o.batch_size = 0;
  UserStreamConsumer<B> c(t.f.backend, o, [](UserEvent const&) {});
  std::optional<error_code> done;
  t.start(c, done);
  t.until([&] { return done.has_value(); });
  BOOST_TEST(*done == make_error_code(Error::invalid_argument));
}

// A restart of the server mid-consumption (no persistence: the stream and the group are gone):
// the consumer retries, creates the group again, and applies what is published after.
BOOST_AUTO_TEST_CASE(the_consumer_resumes_after_a_redis_restart) {
  rediskit::test::TestRedisServer srv;
  RedisConfig cfg;
  cfg.port = srv.port();
  cfg.connect_timeout = 500ms;
  cfg.command_timeout = 2s;
  cfg.health_check_interval = 200ms;
  BackendFixture<RedisBackend> f(std::in_place, cfg);
  UserEventPublisher<RedisBackend> pub(f.backend);
  int applied = 0;
  UserStreamConsumer<RedisBackend> c(f.backend, fast(), [&](UserEvent const&) { ++applied; });
  std::optional<error_code> done;
  c.async_run([&done](error_code ec) { done = ec; });
  auto publish = [&] {
    auto [ec, id] = f.wait(pub.async_publish(UserEvent::updated(profile("1", 1))));
    return !ec;
  };
  for (int i = 0; i < 5; ++i) BOOST_TEST_REQUIRE(publish());
  f.run_until([&] { return applied == 5; });
  srv.kill();
  f.run_until([&] { return c.stats().errors > 0; });
  srv.start();
  // Publish until the consumer has its group again and takes new events.
  f.run_until(
      [&] {
        (void)publish();
        return applied >= 8;
      },
      20s);
  c.stop();
  f.run_until([&] { return done.has_value(); });
  BOOST_TEST(!*done);
  auto [ec, p] = f.exec(cmd::xpending{.key = "events:users", .group = "g"});
  BOOST_TEST(!ec);
  BOOST_TEST(p.count == 0);
}

// Interop with seed 001's own client: a Node script (ioredis, pinned in
// tests/interop/package.json) reads the hash and the event rediskit wrote, then writes a hash and
// publishes an event as seed 001's UserCache.set and UpdateUserProfile do; rediskit reads that
// hash and applies that event. Node.js and `npm ci` in tests/interop are part of the test
// set-up (bash scripts/run.sh test does both): without them this case fails, saying so.
BOOST_AUTO_TEST_CASE(interop_with_seed_001s_node_client) {
  namespace fs = std::filesystem;
  // The script: $REDISKIT_INTEROP_DIR (CTest sets it), else found from the executable's place
  // in the build tree (build/<dir>/tests/<exe>).
  fs::path script;
  if (char const* dir = std::getenv("REDISKIT_INTEROP_DIR"); dir != nullptr && *dir)
    script = fs::path(dir) / "user_profiles_interop.mjs";
  for (fs::path at = fs::read_symlink("/proc/self/exe").parent_path();
       script.empty() && !at.empty() && at != at.root_path(); at = at.parent_path()) {
    if (fs::exists(at / "tests/interop/user_profiles_interop.mjs"))
      script = at / "tests/interop/user_profiles_interop.mjs";
  }
  BOOST_TEST_REQUIRE(fs::exists(script),
                     "tests/interop/user_profiles_interop.mjs not found (set REDISKIT_INTEROP_DIR)");
  BOOST_TEST_REQUIRE(std::system("node --version >/dev/null 2>&1") == 0,
                     "Node.js is needed for this test: apt-get install nodejs npm, or run "
                     "bash scripts/run.sh test, which installs it");
  Env<RedisBackend> t;
  UserCache<RedisBackend> cache(t.f.backend);
  t.ok(cache.async_set(profile("cpp1", 1736862000000)));
  t.publish(UserEvent::updated(profile("cpp1", 1736862000000)));
  std::string const cmd = "node '" + script.string() + "' " +
                          std::to_string(rediskit::test::shared_redis_port()) + " " +
                          std::to_string(rediskit::test::test_db()) + " cpp1 node1";
  int const rc = std::system(cmd.c_str());
  int const status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  BOOST_TEST_REQUIRE(status != 77, "ioredis is not installed: run npm ci in "
                                      << script.parent_path() << " (bash scripts/run.sh test does)");
  BOOST_TEST_REQUIRE(status == 0, "the Node side failed: " << cmd);
  auto node = t.ok(cache.async_get("node1"));
  BOOST_TEST_REQUIRE(node.has_value());
  BOOST_TEST(node->fullName == "Awa Ndiaye");
  BOOST_TEST(node->ministere == "MINSANTE");
  BOOST_TEST(node->updatedAt == 1736862000001);
  UserStreamConsumer<RedisBackend> c(t.f.backend, cache, fast());
  std::optional<error_code> done;
  t.start(c, done);
  t.until([&] { return c.stats().processed == 2u; });  // rediskit's event and Node's
  auto renamed = t.ok(cache.async_get("cpp1"));
  BOOST_TEST_REQUIRE(renamed.has_value());
  BOOST_TEST(renamed->fullName == "Renamed by Node");
  BOOST_TEST(renamed->avatar == "https://cdn/a2.jpg");
  BOOST_TEST(renamed->ministere == "MINFOP");  // kept: the event does not carry it
  BOOST_TEST(renamed->updatedAt == 1736862000500);
  t.stop(c, done);
}

BOOST_AUTO_TEST_SUITE_END()
