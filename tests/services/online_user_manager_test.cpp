// OnlineUserManager on MemoryBackend, FakeBackend, a real redis-server and a real Redis Cluster:
// presence by TTL and heartbeat, several sockets per user, exact counts under expiry and
// concurrency, paging, statistics, options, both key layouts, bad input and connection loss.
// The Lua scripts and their C++ twins run the same tests, so they agree. FakeBackend runs as
// `ClusterChecked` (MemoryConfig::cluster_checks, the clustered layout), so that a script that
// touches a key it did not declare, or keys of two slots, fails without a cluster.
#include "support/backends.hpp"
#include "support/margin.hpp"

#include <rediskit/cluster/slot.hpp>
#include <rediskit/services/online_user_manager.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/mpl/replace.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using rediskit::test::BackendFixture;
using rediskit::test::InProcessBackends;

namespace {

/// FakeBackend with MemoryConfig::cluster_checks, the manager in the clustered layout.
struct ClusterChecked {};

template <class T>
struct SetupOf {
  using backend = T;
};
template <>
struct SetupOf<ClusterChecked> {
  using backend = FakeBackend;
};
template <class T>
using BackendOf = typename SetupOf<T>::backend;
template <class T>
inline constexpr bool checked_v = std::is_same_v<T, ClusterChecked>;

template <class T>
struct Fixture : BackendFixture<BackendOf<T>> {};
template <>
struct Fixture<ClusterChecked> : BackendFixture<FakeBackend> {
  Fixture() : BackendFixture<FakeBackend>(std::in_place, MemoryConfig{.cluster_checks = true}) {}
};

}  // namespace

// AllBackends, with FakeBackend in its cluster-checked configuration: every case runs
// in the clustered layout under cluster checks at no extra compile time (a fifth entry would
// compile every case body once more). The plain layout runs on MemoryBackend and RedisBackend
// here, and on FakeBackend in the manual-clock cases below.
using Backends =
    boost::mpl::replace<rediskit::test::AllBackends, FakeBackend, ClusterChecked>::type;
using OnManualClock = boost::mpl::list<FakeBackend, ClusterChecked>;  // minutes pass at once
using RedisOnly = boost::mpl::list<RedisBackend>;

namespace {

using rediskit::test::invalid;

// Short TTLs on Redis (real time is slept on); on the manual clock they could be anything.
OnlineUserOptions short_ttl() {
  OnlineUserOptions o;
  o.default_ttl = 1500ms;
  o.away_after = 300ms;
  o.idle_after = 800ms;
  o.idle_ttl = 10s;
  return o;
}

template <class T>
struct Env {
  using B = BackendOf<T>;
  explicit Env(OnlineUserOptions o = {}) : users(f.backend, options(std::move(o))) {}
  Fixture<T> f;
  OnlineUserManager<B> users;

  /// `o`, in the clustered layout under cluster checks.
  static OnlineUserOptions options(OnlineUserOptions o) {
    if (checked_v<T> && !o.key_layout) o.key_layout = KeyLayout::clustered;
    return o;
  }
  bool clustered() const { return users.key_layout() == KeyLayout::clustered; }
  // Key names with the default prefixes.
  std::string key(std::string const& name) const {
    return (clustered() ? "{presence}:" : "presence:") + name;
  }
  std::string data_key(std::string const& u) const {
    return (clustered() ? "{presence}:user_data:" : "user_data:") + u;
  }
  std::string sockets_key(std::string const& u) const {
    return (clustered() ? "{presence}:user_sockets:" : "user_sockets:") + u;
  }

  bool online(std::string_view u) {
    auto [ec, r] = f.wait(users.async_is_user_online(u));
    BOOST_REQUIRE(!ec);
    return r;
  }
  bool set_online(std::string_view u, std::string s, std::string m = {}) {
    OnlineUserData const d(std::move(s), std::move(m));
    auto [ec, r] = f.wait(users.async_set_user_online(u, d));
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
    return r;
  }
  std::int64_t count() {
    auto [ec, n] = f.wait(users.async_get_online_count());
    BOOST_REQUIRE(!ec);
    return n;
  }
  std::vector<std::string> filter(std::vector<std::string> const& ids) {
    auto [ec, r] = f.wait(users.async_filter_online(ids));
    BOOST_REQUIRE(!ec);
    return r;
  }
  PresenceStats stats() {
    auto [ec, s] = f.wait(users.async_get_presence_stats());
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
    auto const& d = s.status_distribution;
    BOOST_TEST(d.online + d.away + d.idle == s.total_online);  // parts add up, always
    return s;
  }
  // Every user of every page, following the cursors.
  std::vector<OnlineUser> all_pages(std::int64_t count, int* pages = nullptr) {
    std::vector<OnlineUser> out;
    std::string cursor;
    int n = 0;
    do {
      auto [ec, page] = f.wait(users.async_get_online_users(cursor, count));
      BOOST_REQUIRE_MESSAGE(!ec, ec.message());
      BOOST_REQUIRE(std::int64_t(page.users.size()) <= count);
      out.insert(out.end(), page.users.begin(), page.users.end());
      cursor = page.next_cursor;
      BOOST_REQUIRE(++n < 10000);
    } while (!cursor.empty());
    if (pages) *pages = n;
    return out;
  }
};

std::set<std::string> ids_of(std::vector<OnlineUser> const& us) {
  std::set<std::string> s;
  for (auto const& u : us)
    s.insert(u.user_id);
  return s;
}

std::string uid(int i) {
  return "u" + std::to_string(i);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(online_user_manager)

BOOST_AUTO_TEST_CASE_TEMPLATE(a_user_is_online_between_set_online_and_set_offline, T, Backends) {
  Env<T> e;
  BOOST_TEST(!e.online("507f1f77bcf86cd799439011"));
  BOOST_TEST(e.set_online("507f1f77bcf86cd799439011", "socket-123", "USER001"));  // new session
  BOOST_TEST(!e.set_online("507f1f77bcf86cd799439011", "socket-123"));            // same session
  BOOST_TEST(e.online("507f1f77bcf86cd799439011"));
  BOOST_TEST(e.count() == 1);
  auto [ec, went] = e.f.wait(e.users.async_set_user_offline("507f1f77bcf86cd799439011"));
  BOOST_TEST(!ec);
  BOOST_TEST(went);
  BOOST_TEST(!e.online("507f1f77bcf86cd799439011"));
  BOOST_TEST(e.count() == 0);
  auto [ec2, again] = e.f.wait(e.users.async_set_user_offline("507f1f77bcf86cd799439011"));
  BOOST_TEST(!ec2);
  BOOST_TEST(!again);  // was not online
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_user_stays_online_until_the_last_socket_leaves, T, Backends) {
  Env<T> e;
  BOOST_TEST(e.set_online("u1", "tab-1", "M1"));
  BOOST_TEST(!e.set_online("u1", "tab-2"));  // a second socket, same session
  auto [ec, went] = e.f.wait(e.users.async_set_user_offline("u1", "tab-1"));
  BOOST_TEST(!ec);
  BOOST_TEST(!went);
  BOOST_TEST(e.online("u1"));
  auto page = e.all_pages(10);
  BOOST_REQUIRE(page.size() == 1u);
  BOOST_TEST(page[0].socket_id == "tab-2");  // the leaving socket is no longer the latest
  BOOST_TEST(page[0].matricule == "M1");     // kept when a later call gives none
  // An unknown socket leaving changes nothing.
  auto [ec2, went2] = e.f.wait(e.users.async_set_user_offline("u1", "tab-9"));
  BOOST_TEST(!ec2);
  BOOST_TEST(!went2);
  auto [ec3, went3] = e.f.wait(e.users.async_set_user_offline("u1", "tab-2"));
  BOOST_TEST(!ec3);
  BOOST_TEST(went3);
  BOOST_TEST(!e.online("u1"));
  BOOST_TEST(e.count() == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(heartbeats_keep_a_user_online_and_silence_expires_it, T, Backends) {
  Env<T> e(short_ttl());  // 1.5 s
  // u1's checks need the 0.6 s margins below to hold (support/margin.hpp).
  test::Margin const set_at(1500ms);
  BOOST_TEST(e.set_online("u1", "s1"));
  BOOST_TEST(e.set_online("u2", "s1"));
  e.f.advance(900ms);
  test::Margin const beat_at(1500ms);
  auto [ec, renewed] = e.f.wait(e.users.async_update_last_activity("u1"));
  bool const beat_in_time = set_at.held();
  BOOST_TEST(!ec);
  if (beat_in_time) BOOST_TEST(renewed);
  e.f.advance(900ms);  // u2: 1.8 s of silence; u1: 0.9 s since its heartbeat
  bool const u1_online = e.online("u1");
  BOOST_TEST(!e.online("u2"));
  auto const count = e.count();  // no write happened: the count follows expiry by itself
  auto const filtered = e.filter({"u1", "u2"});
  if (beat_in_time && renewed && beat_at.held()) {
    BOOST_TEST(u1_online);
    BOOST_TEST(count == 1);
    BOOST_TEST(filtered == std::vector<std::string>{"u1"});
  } else {
    BOOST_TEST_MESSAGE("the machine stalled past the heartbeat's margin: u1 not checked");
    BOOST_TEST(count == (u1_online ? 1 : 0));
  }
  e.f.advance(1700ms);
  BOOST_TEST(!e.online("u1"));
  BOOST_TEST(e.count() == 0);
  // A heartbeat does not bring an expired user back: set_user_online does, as a new session.
  auto [ec2, renewed2] = e.f.wait(e.users.async_update_last_activity("u1"));
  BOOST_TEST(!ec2);
  BOOST_TEST(!renewed2);
  BOOST_TEST(!e.online("u1"));
  BOOST_TEST(e.set_online("u1", "s2"));
  BOOST_TEST(e.count() == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_silent_socket_expires_while_another_keeps_the_user_online, T,
                              Backends) {
  Env<T> e(short_ttl());
  test::Margin alive(1500ms);  // "alive"'s TTL since its last write (support/margin.hpp)
  BOOST_TEST(e.set_online("u1", "alive"));
  BOOST_TEST(!e.set_online("u1", "crashed"));
  for (int i = 0; i < 2; ++i) {
    e.f.advance(900ms);
    test::Margin const next(1500ms);  // started before the heartbeat it stands for
    auto [ec, renewed] = e.f.wait(e.users.async_update_last_activity("u1", "alive"));
    BOOST_TEST(!ec);
    if (!alive.held()) {
      BOOST_TEST_MESSAGE("the machine stalled past the heartbeat's margin: not checked");
      return;
    }
    BOOST_TEST(renewed);
    alive = next;
  }
  // "crashed" stopped 1.8 s ago: its heartbeat is refused, and the user is online by "alive".
  auto [ec, renewed] = e.f.wait(e.users.async_update_last_activity("u1", "crashed"));
  BOOST_TEST(!ec);
  BOOST_TEST(!renewed);
  bool const online = e.online("u1");
  // "alive" leaving is the last socket leaving.
  auto [ec2, went] = e.f.wait(e.users.async_set_user_offline("u1", "alive"));
  BOOST_TEST(!ec2);
  if (alive.held()) {
    BOOST_TEST(online);
    BOOST_TEST(went);
  }
  BOOST_TEST(!e.online("u1"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(counts_stay_exact_when_entries_expire, T, OnManualClock) {
  OnlineUserOptions o;
  o.purge_batch = 0;  // nothing removes expired entries but the explicit purge below
  Env<T> e(o);
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    ids.push_back(uid(i));
    e.set_online(ids.back(), "s");
  }
  e.f.advance(4min);
  for (int i = 0; i < 10; i += 2) {
    auto [ec, r] = e.f.wait(e.users.async_update_last_activity(uid(i)));
    BOOST_TEST(r);
  }
  e.f.advance(2min);  // the odd ones: 6 min of silence, the even ones: 2 min
  BOOST_TEST(e.count() == 5);
  BOOST_TEST(e.filter(ids) == (std::vector<std::string>{"u0", "u2", "u4", "u6", "u8"}));
  BOOST_TEST(ids_of(e.all_pages(3)) == (std::set<std::string>{"u0", "u2", "u4", "u6", "u8"}));
  BOOST_TEST(e.stats().total_online == 5);
  BOOST_TEST(e.f.ok(cmd::zcard{e.key("online")}) == 10);  // expired entries still stored...
  auto [ec, purged] = e.f.wait(e.users.async_purge_expired(3));
  BOOST_TEST(!ec);
  BOOST_TEST(purged == 3);  // ...removed in bounded batches
  auto [ec2, purged2] = e.f.wait(e.users.async_purge_expired(100));
  BOOST_TEST(purged2 == 2);
  BOOST_TEST(e.f.ok(cmd::zcard{e.key("online")}) == 5);
  BOOST_TEST(e.count() == 5);
  BOOST_TEST(!e.f.ok(cmd::exists{e.sockets_key("u1")}));
  BOOST_TEST(e.f.ok(cmd::exists{e.data_key("u1")}) == 1);  // kept idle_ttl: "last seen"
}

BOOST_AUTO_TEST_CASE_TEMPLATE(filter_online_keeps_the_order_and_duplicates, T, Backends) {
  Env<T> e;
  e.set_online("b", "s");
  e.set_online("*", "s");  // ids are data, never patterns
  e.set_online("a:b", "s");
  e.set_online("{x}", "s");  // nor hash tags: the key's tag is the presence prefix's
  e.set_online("}{", "s");
  BOOST_TEST(e.filter({"a", "b", "*", "x", "b", "a:b", "", "{x}", "x", "}{"}) ==
             (std::vector<std::string>{"b", "*", "b", "a:b", "{x}", "}{"}));
  BOOST_TEST(ids_of(e.all_pages(2)) == (std::set<std::string>{"b", "*", "a:b", "{x}", "}{"}));
  BOOST_TEST(e.filter({}).empty());
  // The natural call form with a braced list.
  auto [ec, r] = e.f.wait(e.users.async_filter_online({"b", "zz"}));
  BOOST_TEST(!ec);
  BOOST_TEST(r == std::vector<std::string>{"b"});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(pages_return_every_online_user_once_with_their_data, T, Backends) {
  Env<T> e;
  std::set<std::string> want;
  for (int i = 0; i < 250; ++i) {
    e.set_online(uid(i), "sock-" + std::to_string(i), "M" + std::to_string(i));
    want.insert(uid(i));
  }
  int pages = 0;
  auto all = e.all_pages(100, &pages);
  BOOST_TEST(pages == 3);
  BOOST_TEST(all.size() == 250u);
  BOOST_TEST(ids_of(all) == want);
  auto const t = e.f.ok(cmd::time{});
  std::int64_t const now = t.first * 1000 + t.second / 1000;
  for (auto const& u : all) {
    auto const i = u.user_id.substr(1);
    BOOST_TEST(u.socket_id == "sock-" + i);
    BOOST_TEST(u.matricule == "M" + i);
    BOOST_TEST((u.status == PresenceStatus::online));
    BOOST_TEST(u.connected_at_ms > 1'600'000'000'000);
    BOOST_TEST(u.last_activity_ms >= u.connected_at_ms);
    BOOST_TEST(u.expires_at_ms == u.last_activity_ms + 300'000);
    BOOST_TEST(u.expires_at_ms > now);
  }
  // Exactly count left: the last page is full, the next one is empty and ends the walk.
  auto exact = e.all_pages(125, &pages);
  BOOST_TEST(exact.size() == 250u);
  BOOST_TEST(pages == 3);
  Env<T> empty;
  BOOST_TEST(empty.all_pages(10).empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(paging_survives_heartbeats_and_departures, T, Backends) {
  Env<T> e;
  for (int i = 0; i < 40; ++i)
    e.set_online(uid(i), "s");
  auto [ec, first] = e.f.wait(e.users.async_get_online_users("", 10));
  BOOST_REQUIRE(!ec);
  BOOST_REQUIRE(first.users.size() == 10u);
  std::set<std::string> seen = ids_of(first.users);
  // The cursor's user heartbeats (its expiry moves: the cursor is found by counting) ...
  e.f.advance(5ms);
  std::string const last = first.users.back().user_id;
  BOOST_TEST(std::get<1>(e.f.wait(e.users.async_update_last_activity(last))));
  auto [ec2, second] = e.f.wait(e.users.async_get_online_users(first.next_cursor, 10));
  BOOST_REQUIRE(!ec2);
  for (auto const& u : second.users)
    BOOST_TEST((!seen.count(u.user_id) || u.user_id == last));
  for (auto const& u : second.users)
    seen.insert(u.user_id);
  // ... and the next cursor's user leaves, and so do users already seen.
  BOOST_TEST(std::get<1>(e.f.wait(e.users.async_set_user_offline(second.users.back().user_id))));
  BOOST_TEST(std::get<1>(e.f.wait(e.users.async_set_user_offline(first.users.front().user_id))));
  std::string cursor = second.next_cursor;
  while (!cursor.empty()) {
    auto [ec3, page] = e.f.wait(e.users.async_get_online_users(cursor, 10));
    BOOST_REQUIRE(!ec3);
    for (auto const& u : page.users)
      seen.insert(u.user_id);
    cursor = page.next_cursor;
  }
  for (int i = 0; i < 40; ++i)
    BOOST_TEST(seen.count(uid(i)) == 1u, uid(i) << " was missed");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_cursor_whose_user_left_resumes_within_a_long_run_of_equal_expiries,
                              T, OnManualClock) {
  Env<T> e;  // the manual clock stands still: all 300 users share one expiry
  for (int i = 0; i < 300; ++i)
    e.set_online(uid(1000 + i), "s");
  auto [ec, first] = e.f.wait(e.users.async_get_online_users("", 200));
  BOOST_REQUIRE(!ec);
  BOOST_REQUIRE(first.users.size() == 200u);
  BOOST_TEST(first.users.back().user_id == uid(1199));  // (expiry, id) order
  // The cursor's user is gone: its place is found by walking the run (more than 128 long).
  BOOST_TEST(std::get<1>(e.f.wait(e.users.async_set_user_offline(uid(1199)))));
  auto [ec2, rest] = e.f.wait(e.users.async_get_online_users(first.next_cursor, 200));
  BOOST_REQUIRE(!ec2);
  BOOST_TEST(rest.done());
  BOOST_REQUIRE(rest.users.size() == 100u);
  BOOST_TEST(rest.users.front().user_id == uid(1200));
  BOOST_TEST(rest.users.back().user_id == uid(1299));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(presence_stats_follow_the_manual_clock, T, OnManualClock) {
  Env<T> e;  // 5 min TTL, away after 1 min, idle after 3 min
  e.set_online("a", "s1");
  e.set_online("a", "s2");  // a second connection of the same user
  e.set_online("a", "s2");  // the same connection again: not counted
  e.set_online("b", "s1");
  e.set_online("c", "s1");
  auto s = e.stats();
  BOOST_TEST(s.total_online == 3);
  BOOST_TEST(s.new_connections_last_hour == 4);
  BOOST_TEST(s.peak_online_users == 3);
  BOOST_TEST(s.sessions_closed == 0);
  BOOST_TEST(s.average_session_duration.count() == 0);
  BOOST_TEST(s.status_distribution.online == 3);

  e.f.advance(90s);
  e.f.wait(e.users.async_update_last_activity("a"));
  e.f.advance(110s);  // a: 110 s since activity, b and c: 200 s
  e.f.wait(e.users.async_update_last_activity("b"));
  s = e.stats();
  BOOST_TEST(s.status_distribution.online == 1);  // b
  BOOST_TEST(s.status_distribution.away == 1);    // a
  BOOST_TEST(s.status_distribution.idle == 1);    // c
  auto page = e.all_pages(10);
  BOOST_REQUIRE(page.size() == 3u);
  for (auto const& u : page) {
    auto const want = u.user_id == "b"   ? PresenceStatus::online
                      : u.user_id == "a" ? PresenceStatus::away
                                         : PresenceStatus::idle;
    BOOST_TEST(to_string(u.status) == to_string(want), u.user_id);
  }
  // b leaves after 200 s online; c expires (its last activity was at 0 s: a 0 s session).
  BOOST_TEST(std::get<1>(e.f.wait(e.users.async_set_user_offline("b"))));
  e.f.advance(150s);  // c: silent 350 s > 5 min
  s = e.stats();
  BOOST_TEST(s.total_online == 1);
  BOOST_TEST(s.sessions_closed == 2);
  BOOST_TEST(s.average_session_duration.count() == (200'000 + 0) / 2);
  BOOST_TEST(s.peak_online_users == 3);
  BOOST_TEST(s.peak_at_ms == 1'700'000'000'000);
  e.f.advance(60s);  // a expires (390 s): a session of 90 s of activity
  s = e.stats();
  BOOST_TEST(s.total_online == 0);
  BOOST_TEST(s.sessions_closed == 3);
  BOOST_TEST(s.average_session_duration.count() == (200'000 + 0 + 90'000) / 3);
  // An hour later the connections have left the window; the peak stays.
  e.f.advance(61min);
  e.set_online("d", "s1");
  s = e.stats();
  BOOST_TEST(s.new_connections_last_hour == 1);
  BOOST_TEST(s.total_online == 1);
  BOOST_TEST(s.peak_online_users == 3);
  BOOST_TEST(s.sessions_closed == 3);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stats_on_every_backend, T, Backends) {
  Env<T> e;
  for (int i = 0; i < 5; ++i)
    e.set_online(uid(i), "s");
  BOOST_TEST(std::get<1>(e.f.wait(e.users.async_set_user_offline(uid(0)))));
  auto s = e.stats();
  BOOST_TEST(s.total_online == 4);
  BOOST_TEST(s.status_distribution.online == 4);
  BOOST_TEST(s.new_connections_last_hour == 5);
  BOOST_TEST(s.peak_online_users == 5);
  BOOST_TEST(s.peak_at_ms > 1'600'000'000'000);
  BOOST_TEST(s.sessions_closed == 1);
  BOOST_TEST(s.average_session_duration.count() >= 0);
  BOOST_TEST(s.average_session_duration.count() < 60'000);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(expired_sessions_are_closed_once_by_whichever_comes_first, T,
                              OnManualClock) {
  OnlineUserOptions o;
  o.purge_batch = 0;  // the scripts' own "expired but not purged" branches
  Env<T> e(o);
  e.set_online("u1", "s");
  e.set_online("u2", "s");
  e.f.advance(1min);
  e.f.wait(e.users.async_update_last_activity("u1"));
  e.f.wait(e.users.async_update_last_activity("u2"));
  e.f.advance(6min);
  // u1 comes back: the expired session is closed (1 min long), a new one starts.
  BOOST_TEST(e.set_online("u1", "s2"));
  // u2 goes offline after expiring: not online, but its session is closed once.
  BOOST_TEST(!std::get<1>(e.f.wait(e.users.async_set_user_offline("u2"))));
  auto s = e.stats();
  BOOST_TEST(s.sessions_closed == 2);
  BOOST_TEST(s.average_session_duration.count() == 60'000);
  BOOST_TEST(s.total_online == 1);
  BOOST_TEST(std::get<1>(e.f.wait(e.users.async_purge_expired(100))) == 0);  // nothing left
  BOOST_TEST(e.stats().sessions_closed == 2);
}

// The purge's second step re-checks each user it is given: between the script that named them
// and the purge, a user may come back (left alone), or another write's purge may have removed
// them (nothing happens twice).
BOOST_AUTO_TEST_CASE_TEMPLATE(the_purge_leaves_alone_a_user_who_came_back, T, Backends) {
  OnlineUserOptions o = short_ttl();
  o.purge_batch = 0;  // expired users stay until the purge below
  Env<T> e(o);
  e.set_online("u1", "s");
  e.set_online("u2", "s");
  e.f.advance(1600ms);
  BOOST_TEST(!e.online("u1"));
  BOOST_TEST(e.set_online("u1", "s2"));  // back: its expired session closed, a new one
  std::vector<std::string> const keys{e.key("online"),     e.key("stats"),
                                      e.data_key("u1"),    e.sockets_key("u1"),
                                      e.data_key("u2"),    e.sockets_key("u2"),
                                      e.data_key("never"), e.sockets_key("never")};
  std::vector<std::string> const args{"0", "u1", "u2", "never"};
  BOOST_TEST(e.f.ok(detail::online::purge_script(keys, args)) == std::vector<std::string>{"1"});
  BOOST_TEST(e.online("u1"));
  BOOST_TEST(e.f.ok(cmd::zrange{.key = e.sockets_key("u1")}) == std::vector<std::string>{"s2"});
  BOOST_TEST(!e.f.ok(cmd::zscore{.key = e.key("online"), .member = "u2"}).has_value());
  auto const s = e.stats();
  BOOST_TEST(s.total_online == 1);
  BOOST_TEST(s.sessions_closed == 2);  // u1's first session, u2's
  BOOST_TEST(e.f.ok(detail::online::purge_script(keys, args)) == std::vector<std::string>{"0"});
  BOOST_TEST(e.stats().sessions_closed == 2);
}

// What the header promises: one script per operation, a second round trip only when expired
// users were seen, at most purge_batch (and kMaxPurgeBatch) of them per purge.
BOOST_AUTO_TEST_CASE_TEMPLATE(expired_users_are_purged_in_a_second_step_in_bounded_batches, T,
                              OnManualClock) {
  OnlineUserOptions o;
  o.purge_batch = 2;
  Env<T> e(o);
  auto& db = e.f.backend;
  for (int i = 0; i < 5; ++i)
    e.set_online(uid(i), "s");
  db.clear_log();
  e.set_online("w", "s");
  BOOST_TEST(db.count_in_log("EVALSHA") == 1u);  // nothing expired: one script
  e.f.advance(6min);
  db.clear_log();
  BOOST_TEST(e.set_online("w", "s"));  // the write names 2 expired users, a purge removes them
  BOOST_TEST(db.count_in_log("EVALSHA") == 2u);
  BOOST_TEST(e.f.ok(cmd::zcard{e.key("online")}) == 4);
  db.clear_log();
  auto s = e.stats();  // the stats name 2 more: purged, and the stats read again
  BOOST_TEST(db.count_in_log("EVALSHA") == 3u);
  BOOST_TEST(s.sessions_closed == 5);  // w's first session (closed by its own write), 4 purged
  BOOST_TEST(s.total_online == 1);
  BOOST_TEST(e.f.ok(cmd::zcard{e.key("online")}) == 2);
  db.clear_log();
  BOOST_TEST(std::get<1>(e.f.wait(e.users.async_update_last_activity("w"))));
  BOOST_TEST(db.count_in_log("EVALSHA") == 1u);  // heartbeats never purge
  db.clear_log();
  BOOST_TEST(std::get<1>(e.f.wait(e.users.async_purge_expired(100))) == 1);
  BOOST_TEST(db.count_in_log("EVALSHA") == 2u);
  db.clear_log();
  BOOST_TEST(std::get<1>(e.f.wait(e.users.async_purge_expired(100))) == 0);
  BOOST_TEST(db.count_in_log("EVALSHA") == 1u);
  db.clear_log();
  auto [ec, page] = e.f.wait(e.users.async_get_online_users("", 10));
  BOOST_TEST(!ec);
  BOOST_TEST(page.users.size() == 1u);
  BOOST_TEST(db.count_in_log("EVALSHA") == 1u);  // the page, then its users' data
  BOOST_TEST(db.count_in_log("HMGET") == 1u);
  // A batch beyond kMaxPurgeBatch asks for kMaxPurgeBatch.
  o.purge_batch = 1'000'000;
  OnlineUserManager<FakeBackend> big(db, Env<T>::options(o));
  db.clear_log();
  BOOST_TEST(!std::get<1>(e.f.wait(big.async_set_user_offline("nobody"))));
  BOOST_TEST(db.command_log().at(0).back() == std::to_string(kMaxPurgeBatch));
}

BOOST_AUTO_TEST_CASE(options_that_cannot_work_complete_with_invalid_argument) {
  std::vector<OnlineUserOptions> bad(6);
  bad[0].key_layout = KeyLayout::clustered;  // no prefix: no hash tag
  bad[0].presence_prefix = "";
  bad[1].key_layout = KeyLayout::clustered;  // "{}x}:online": an empty tag
  bad[1].presence_prefix = "}x";
  bad[2].key_layout = KeyLayout::clustered;  // "{presence}:<id>": user "online" = the zset
  bad[2].user_data_prefix = "";
  bad[3].default_ttl = 0ms;
  bad[4].default_ttl = -5s;
  bad[5].user_socket_prefix = "user_data";  // the user's data and sockets in one key
  auto const invalid_argument = make_error_code(Error::invalid_argument);
  for (auto const& o : bad) {
    BackendFixture<FakeBackend> f;
    OnlineUserManager<FakeBackend> m(f.backend, o);
    f.backend.clear_log();
    BOOST_TEST(std::get<0>(f.wait(m.async_set_user_online("u", OnlineUserData("s")))) ==
               invalid_argument);
    BOOST_TEST(std::get<0>(f.wait(m.async_set_user_offline("u"))) == invalid_argument);
    BOOST_TEST(std::get<0>(f.wait(m.async_set_user_offline("u", "s"))) == invalid_argument);
    BOOST_TEST(std::get<0>(f.wait(m.async_update_last_activity("u"))) == invalid_argument);
    BOOST_TEST(std::get<0>(f.wait(m.async_is_user_online("u"))) == invalid_argument);
    BOOST_TEST(std::get<0>(f.wait(m.async_filter_online({"u"}))) == invalid_argument);
    BOOST_TEST(std::get<0>(f.wait(m.async_get_online_users())) == invalid_argument);
    BOOST_TEST(std::get<0>(f.wait(m.async_get_online_count())) == invalid_argument);
    BOOST_TEST(std::get<0>(f.wait(m.async_get_presence_stats())) == invalid_argument);
    BOOST_TEST(std::get<0>(f.wait(m.async_purge_expired(10))) == invalid_argument);
    BOOST_TEST(f.backend.command_log().empty());
  }
  // An empty presence prefix is fine in the plain layout (keys "online", "stats").
  BackendFixture<FakeBackend> f;
  OnlineUserOptions o;
  o.presence_prefix = "";
  OnlineUserManager<FakeBackend> m(f.backend, o);
  BOOST_TEST(std::get<1>(f.wait(m.async_set_user_online("u", OnlineUserData("s")))));
  BOOST_TEST(f.ok(cmd::type{"online"}) == "zset");
}

// Plain (seed 000's names, for the Node services) on one node, clustered (one hash tag) on a
// cluster; the other layout is the caller's choice.
BOOST_AUTO_TEST_CASE_TEMPLATE(each_backend_has_its_default_key_layout, T, Backends) {
  using B = BackendOf<T>;
  Env<T> e;
  bool const clustered = BackendFixture<B>::is_cluster || checked_v<T>;
  BOOST_TEST((e.users.key_layout() == (clustered ? KeyLayout::clustered : KeyLayout::plain)));
  std::string const online = clustered ? "{presence}:online" : "presence:online";
  std::string const stats = clustered ? "{presence}:stats" : "presence:stats";
  std::string const data = clustered ? "{presence}:user_data:u1" : "user_data:u1";
  std::string const sockets = clustered ? "{presence}:user_sockets:u1" : "user_sockets:u1";
  e.set_online("u1", "socket-123", "USER001");
  BOOST_TEST(e.f.ok(cmd::type{online}) == "zset");
  BOOST_TEST(e.f.ok(cmd::type{stats}) == "hash");
  BOOST_TEST(e.f.ok(cmd::type{data}) == "hash");
  BOOST_TEST(e.f.ok(cmd::type{sockets}) == "zset");
  BOOST_TEST(*e.f.ok(cmd::hget{data, "matricule"}) == "USER001");
  BOOST_TEST(*e.f.ok(cmd::hget{data, "socket_id"}) == "socket-123");
  BOOST_TEST(e.f.ok(cmd::zrange{.key = sockets}) == std::vector<std::string>{"socket-123"});
  BOOST_TEST(cluster::same_slot({online, stats, data, sockets}) == clustered);
  // RoomManager finds the online zset by the same rule.
  BOOST_TEST(KeySpace("presence", e.users.key_layout()).key("online") == online);
  // The sockets expire with the presence; the data outlives it by idle_ttl (1 h).
  auto const sockets_ttl = e.f.ok(cmd::pttl{sockets});
  BOOST_TEST((sockets_ttl > 290'000 && sockets_ttl <= 300'000));
  auto const data_ttl = e.f.ok(cmd::pttl{data});
  BOOST_TEST((data_ttl > 3'590'000 && data_ttl <= 3'600'000));
  BOOST_TEST(e.f.ok(cmd::pttl{online}) == -1);
  // Leaving deletes the sockets, keeps the data with its disconnection time.
  e.f.wait(e.users.async_set_user_offline("u1"));
  BOOST_TEST(e.f.ok(cmd::exists{sockets}) == 0);
  BOOST_TEST(e.f.ok(cmd::hget{data, "disconnected_at"}).has_value());
  BOOST_TEST(e.f.ok(cmd::zcard{online}) == 0);

  // The other layout. On one node the clustered one works as well; on a cluster (and under
  // cluster checks) the plain one's scripts span slots: refused, nothing written.
  OnlineUserOptions o;
  o.key_layout = clustered ? KeyLayout::plain : KeyLayout::clustered;
  OnlineUserManager<B> other(e.f.backend, o);
  auto [ec, fresh] = e.f.wait(other.async_set_user_online("u2", OnlineUserData("s")));
  if (clustered) {
    BOOST_TEST(ec == make_error_code(Error::cross_slot), ec.message());
    BOOST_TEST(e.f.ok(cmd::exists{"user_data:u2"}) == 0);
    BOOST_TEST(e.f.ok(cmd::exists{"presence:online"}) == 0);
  } else {
    BOOST_TEST(!ec);
    BOOST_TEST(fresh);
    BOOST_TEST(e.f.ok(cmd::type{"{presence}:user_data:u2"}) == "hash");
    BOOST_TEST(e.f.ok(cmd::exists{"user_data:u2"}) == 0);
    BOOST_TEST(std::get<1>(e.f.wait(other.async_is_user_online("u2"))));
    BOOST_TEST(!e.online("u2"));  // another key space
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(options_set_the_prefixes_and_ttls, T, Backends) {
  using B = BackendOf<T>;
  OnlineUserOptions o;
  o.presence_prefix = "chat:presence";
  o.user_data_prefix = "chat:ud";
  o.user_socket_prefix = "chat:us";
  o.default_ttl = 20s;
  o.idle_ttl = 40s;
  Env<T> e(o);
  std::string const p = e.clustered() ? "{chat:presence}:" : "chat:presence:";
  std::string const data = e.clustered() ? p + "chat:ud:u1" : "chat:ud:u1";
  std::string const sockets = e.clustered() ? p + "chat:us:u1" : "chat:us:u1";
  e.set_online("u1", "s1");
  BOOST_TEST(e.f.ok(cmd::exists{.keys = {p + "online", p + "stats", data, sockets}}) == 4);
  BOOST_TEST(e.f.ok(cmd::exists{e.key("online")}) == 0);
  BOOST_TEST(e.f.ok(cmd::exists{e.data_key("u1")}) == 0);
  auto const s = e.f.ok(cmd::pttl{sockets});
  BOOST_TEST((s > 19'000 && s <= 20'000));
  auto const d = e.f.ok(cmd::pttl{data});
  BOOST_TEST((d > 39'000 && d <= 40'000));
  // A manager with the default prefixes does not see these users.
  OnlineUserManager<B> other(e.f.backend, Env<T>::options({}));
  auto [ec, on] = e.f.wait(other.async_is_user_online("u1"));
  BOOST_TEST(!ec);
  BOOST_TEST(!on);
  // idle_ttl shorter than the presence: the data lives as long as the presence at least.
  o.idle_ttl = 1s;
  OnlineUserManager<B> short_idle(e.f.backend, Env<T>::options(o));
  BOOST_TEST(!std::get<1>(e.f.wait(short_idle.async_set_user_online("u1", OnlineUserData("s1")))));
  auto const d2 = e.f.ok(cmd::pttl{data});
  BOOST_TEST((d2 > 19'000 && d2 <= 20'000));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_completes_with_invalid_argument, B, InProcessBackends) {
  Env<B> e;
  if constexpr (BackendFixture<B>::is_fake) e.f.backend.clear_log();
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_set_user_online("", OnlineUserData("s")))) ==
             invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_set_user_online("u", OnlineUserData("")))) ==
             invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_set_user_offline(""))) == invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_set_user_offline("u", ""))) == invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_update_last_activity(""))) == invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_update_last_activity("u", ""))) == invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_is_user_online(""))) == invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_get_online_users("", 0))) == invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_get_online_users("", -5))) == invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_get_online_users("garbage", 10))) == invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_get_online_users("12x:u", 10))) == invalid);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_purge_expired(0))) == invalid);
  if constexpr (BackendFixture<B>::is_fake) BOOST_TEST(e.f.backend.command_log().empty());
  // ... and never inside the initiating call.
  bool done = false;
  e.users.async_is_user_online("", [&](boost::system::error_code, bool) { done = true; });
  BOOST_TEST(!done);
  e.f.run_until([&] { return done; });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(operations_fail_cleanly_when_the_connection_drops, T, OnManualClock) {
  Env<T> e;
  e.set_online("u1", "s1");
  e.f.backend.drop_connection();
  auto const down = make_error_code(Error::not_connected);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_set_user_online("u2", OnlineUserData("s")))) ==
             down);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_set_user_offline("u1"))) == down);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_update_last_activity("u1"))) == down);
  auto [ec, on] = e.f.wait(e.users.async_is_user_online("u1"));
  BOOST_TEST(ec == down);
  BOOST_TEST(!on);
  auto [ec2, n] = e.f.wait(e.users.async_get_online_count());
  BOOST_TEST(ec2 == down);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_filter_online({"u1"}))) == down);
  auto [ec3, page] = e.f.wait(e.users.async_get_online_users("", 10));
  BOOST_TEST(ec3 == down);
  BOOST_TEST(page.users.empty());
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_get_presence_stats())) == down);
  e.f.backend.restore_connection();
  BOOST_TEST(e.online("u1"));
  BOOST_TEST(!e.online("u2"));
  // A failure injected into one write: nothing half-done, the retry works.
  e.f.backend.fail_next(1, Error::connection_lost);
  BOOST_TEST(std::get<0>(e.f.wait(e.users.async_set_user_online("u2", OnlineUserData("s")))) ==
             make_error_code(Error::connection_lost));
  BOOST_TEST(!e.online("u2"));
  BOOST_TEST(e.set_online("u2", "s"));
  BOOST_TEST(e.count() == 2);
}

namespace {

// One user's life: two sockets, heartbeats, leaving. i % 3 == 0: leaves entirely; 1: both
// sockets leave; 2: one socket leaves, the user stays online.
template <class B>
boost::asio::awaitable<void> churn(OnlineUserManager<B>& m, int i, int& done, int& failed) {
  try {
    std::string const u = uid(i);
    co_await m.async_set_user_online(u, {"a", "M" + std::to_string(i)});
    co_await m.async_set_user_online(u, {"b"});
    co_await m.async_update_last_activity(u);
    co_await m.async_update_last_activity(u, "b");
    co_await m.async_set_user_offline(u, "a");
    if (!co_await m.async_is_user_online(u)) ++failed;
    auto const mine = co_await m.async_filter_online({u, "nobody"});  // g++ 12: braced ArgList
    if (mine != std::vector<std::string>{u}) ++failed;
    if (i % 3 == 0) co_await m.async_set_user_offline(u);
    if (i % 3 == 1) co_await m.async_set_user_offline(u, "b");
    co_await m.async_get_online_count();
  } catch (std::exception const&) {
    ++failed;
  }
  ++done;
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(a_thousand_concurrent_users_end_in_the_exact_state, T, Backends) {
  Env<T> e;
  constexpr int n = 1000;
  int done = 0, failed = 0;
  for (int i = 0; i < n; ++i)
    boost::asio::co_spawn(e.f.ioc, churn(e.users, i, done, failed), boost::asio::detached);
  e.f.run_until([&] { return done == n; }, 60s);
  BOOST_TEST(failed == 0);
  std::vector<std::string> all, want;
  for (int i = 0; i < n; ++i) {
    all.push_back(uid(i));
    if (i % 3 == 2) want.push_back(uid(i));
  }
  BOOST_TEST(e.count() == std::int64_t(want.size()));
  BOOST_TEST(e.filter(all) == want);
  auto pages = e.all_pages(97);
  BOOST_TEST(pages.size() == want.size());
  BOOST_TEST(ids_of(pages) == std::set<std::string>(want.begin(), want.end()));
  for (auto const& u : pages)
    BOOST_TEST(u.socket_id == "b");
  auto const s = e.stats();
  BOOST_TEST(s.total_online == std::int64_t(want.size()));
  BOOST_TEST(s.new_connections_last_hour == 2 * n);
  BOOST_TEST(s.sessions_closed == n - std::int64_t(want.size()));
  BOOST_TEST(s.peak_online_users >= std::int64_t(want.size()));
  BOOST_TEST(s.peak_online_users <= n);
}

namespace {
// OBJECT ENCODING key (RedisBackend only: the in-memory engine has no encodings).
struct object_encoding {
  std::string_view key;
  using reply_type = std::string;
  template <class W>
  void write(W& w) const {
    w("OBJECT", "ENCODING", key);
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(small_per_user_values_stay_compact_on_redis, B, RedisOnly) {
  Env<B> e;
  for (int i = 0; i < 200; ++i)
    e.set_online(uid(i), "socket-" + std::to_string(i), "USER001");
  e.set_online("u0", "second-socket");
  BOOST_TEST(e.f.ok(object_encoding{"user_data:u0"}) == "listpack");
  BOOST_TEST(e.f.ok(object_encoding{"user_sockets:u0"}) == "listpack");
  BOOST_TEST(e.f.ok(object_encoding{"presence:stats"}) == "listpack");
  BOOST_TEST(e.f.ok(cmd::hlen{"presence:stats"}) <= 128);  // hash-max-listpack-entries
}

BOOST_AUTO_TEST_SUITE_END()
