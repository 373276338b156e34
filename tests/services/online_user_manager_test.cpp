// OnlineUserManager on MemoryBackend, FakeBackend and a real redis-server: presence by TTL and
// heartbeat, several sockets per user, exact counts under expiry and concurrency, paging,
// statistics, options, bad input and connection loss. The Lua scripts and their C++ twins
// run the same tests, so they agree.
#include "support/backends.hpp"

#include <rediskit/services/online_user_manager.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
using rediskit::test::InProcessBackends;
using FakeOnly = boost::mpl::list<FakeBackend>;  // the manual clock: minutes pass at once
using RedisOnly = boost::mpl::list<RedisBackend>;

namespace {

auto const invalid = make_error_code(Error::invalid_argument);

// Short TTLs on Redis (real time is slept on); on the manual clock they could be anything.
OnlineUserOptions short_ttl() {
  OnlineUserOptions o;
  o.default_ttl = 1500ms;
  o.away_after = 300ms;
  o.idle_after = 800ms;
  o.idle_ttl = 10s;
  return o;
}

template <class B>
struct Env {
  explicit Env(OnlineUserOptions o = {}) : users(f.backend, std::move(o)) {}
  BackendFixture<B> f;
  OnlineUserManager<B> users;

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

BOOST_AUTO_TEST_CASE_TEMPLATE(a_user_is_online_between_set_online_and_set_offline, B, AllBackends) {
  Env<B> e;
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

BOOST_AUTO_TEST_CASE_TEMPLATE(a_user_stays_online_until_the_last_socket_leaves, B, AllBackends) {
  Env<B> e;
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

BOOST_AUTO_TEST_CASE_TEMPLATE(heartbeats_keep_a_user_online_and_silence_expires_it, B,
                              AllBackends) {
  Env<B> e(short_ttl());  // 1.5 s
  BOOST_TEST(e.set_online("u1", "s1"));
  BOOST_TEST(e.set_online("u2", "s1"));
  e.f.advance(900ms);
  auto [ec, renewed] = e.f.wait(e.users.async_update_last_activity("u1"));
  BOOST_TEST(!ec);
  BOOST_TEST(renewed);
  e.f.advance(900ms);  // u2: 1.8 s of silence; u1: 0.9 s since its heartbeat
  BOOST_TEST(e.online("u1"));
  BOOST_TEST(!e.online("u2"));
  BOOST_TEST(e.count() == 1);  // no write happened: the count follows expiry by itself
  BOOST_TEST(e.filter({"u1", "u2"}) == std::vector<std::string>{"u1"});
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

BOOST_AUTO_TEST_CASE_TEMPLATE(a_silent_socket_expires_while_another_keeps_the_user_online, B,
                              AllBackends) {
  Env<B> e(short_ttl());
  BOOST_TEST(e.set_online("u1", "alive"));
  BOOST_TEST(!e.set_online("u1", "crashed"));
  for (int i = 0; i < 2; ++i) {
    e.f.advance(900ms);
    auto [ec, renewed] = e.f.wait(e.users.async_update_last_activity("u1", "alive"));
    BOOST_TEST(!ec);
    BOOST_TEST(renewed);
  }
  // "crashed" stopped 1.8 s ago: its heartbeat is refused, and the user is online by "alive".
  auto [ec, renewed] = e.f.wait(e.users.async_update_last_activity("u1", "crashed"));
  BOOST_TEST(!ec);
  BOOST_TEST(!renewed);
  BOOST_TEST(e.online("u1"));
  // "alive" leaving is the last socket leaving.
  auto [ec2, went] = e.f.wait(e.users.async_set_user_offline("u1", "alive"));
  BOOST_TEST(!ec2);
  BOOST_TEST(went);
  BOOST_TEST(!e.online("u1"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(counts_stay_exact_when_entries_expire, B, FakeOnly) {
  OnlineUserOptions o;
  o.purge_batch = 0;  // nothing removes expired entries but the explicit purge below
  Env<B> e(o);
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
  BOOST_TEST(e.f.ok(cmd::zcard{"presence:online"}) == 10);  // expired entries still stored...
  auto [ec, purged] = e.f.wait(e.users.async_purge_expired(3));
  BOOST_TEST(!ec);
  BOOST_TEST(purged == 3);  // ...removed in bounded batches
  auto [ec2, purged2] = e.f.wait(e.users.async_purge_expired(100));
  BOOST_TEST(purged2 == 2);
  BOOST_TEST(e.f.ok(cmd::zcard{"presence:online"}) == 5);
  BOOST_TEST(e.count() == 5);
  BOOST_TEST(!e.f.ok(cmd::exists{"user_sockets:u1"}));
  BOOST_TEST(e.f.ok(cmd::exists{"user_data:u1"}) == 1);  // kept idle_ttl: "last seen"
}

BOOST_AUTO_TEST_CASE_TEMPLATE(filter_online_keeps_the_order_and_duplicates, B, AllBackends) {
  Env<B> e;
  e.set_online("b", "s");
  e.set_online("*", "s");  // ids are data, never patterns
  e.set_online("a:b", "s");
  BOOST_TEST(e.filter({"a", "b", "*", "x", "b", "a:b", ""}) ==
             (std::vector<std::string>{"b", "*", "b", "a:b"}));
  BOOST_TEST(e.filter({}).empty());
  // The natural call form with a braced list.
  auto [ec, r] = e.f.wait(e.users.async_filter_online({"b", "zz"}));
  BOOST_TEST(!ec);
  BOOST_TEST(r == std::vector<std::string>{"b"});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(pages_return_every_online_user_once_with_their_data, B, AllBackends) {
  Env<B> e;
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
  Env<B> empty;
  BOOST_TEST(empty.all_pages(10).empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(paging_survives_heartbeats_and_departures, B, AllBackends) {
  Env<B> e;
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
                              B, FakeOnly) {
  Env<B> e;  // the manual clock stands still: all 300 users share one expiry
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

BOOST_AUTO_TEST_CASE_TEMPLATE(presence_stats_follow_the_manual_clock, B, FakeOnly) {
  Env<B> e;  // 5 min TTL, away after 1 min, idle after 3 min
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

BOOST_AUTO_TEST_CASE_TEMPLATE(stats_on_every_backend, B, AllBackends) {
  Env<B> e;
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

BOOST_AUTO_TEST_CASE_TEMPLATE(expired_sessions_are_closed_once_by_whichever_comes_first, B,
                              FakeOnly) {
  OnlineUserOptions o;
  o.purge_batch = 0;  // the scripts' own "expired but not purged" branches
  Env<B> e(o);
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

BOOST_AUTO_TEST_CASE_TEMPLATE(default_key_layout_is_seed_000s, B, AllBackends) {
  Env<B> e;
  e.set_online("u1", "socket-123", "USER001");
  BOOST_TEST(e.f.ok(cmd::type{"presence:online"}) == "zset");
  BOOST_TEST(e.f.ok(cmd::type{"presence:stats"}) == "hash");
  BOOST_TEST(e.f.ok(cmd::type{"user_data:u1"}) == "hash");
  BOOST_TEST(e.f.ok(cmd::type{"user_sockets:u1"}) == "zset");
  BOOST_TEST(*e.f.ok(cmd::hget{"user_data:u1", "matricule"}) == "USER001");
  BOOST_TEST(*e.f.ok(cmd::hget{"user_data:u1", "socket_id"}) == "socket-123");
  BOOST_TEST(e.f.ok(cmd::zrange{.key = "user_sockets:u1"}) ==
             std::vector<std::string>{"socket-123"});
  // The sockets expire with the presence; the data outlives it by idle_ttl (1 h).
  auto const sockets_ttl = e.f.ok(cmd::pttl{"user_sockets:u1"});
  BOOST_TEST((sockets_ttl > 290'000 && sockets_ttl <= 300'000));
  auto const data_ttl = e.f.ok(cmd::pttl{"user_data:u1"});
  BOOST_TEST((data_ttl > 3'590'000 && data_ttl <= 3'600'000));
  BOOST_TEST(e.f.ok(cmd::pttl{"presence:online"}) == -1);
  // Leaving deletes the sockets, keeps the data with its disconnection time.
  e.f.wait(e.users.async_set_user_offline("u1"));
  BOOST_TEST(e.f.ok(cmd::exists{"user_sockets:u1"}) == 0);
  BOOST_TEST(e.f.ok(cmd::hget{"user_data:u1", "disconnected_at"}).has_value());
  BOOST_TEST(e.f.ok(cmd::zcard{"presence:online"}) == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(options_set_the_prefixes_and_ttls, B, AllBackends) {
  OnlineUserOptions o;
  o.presence_prefix = "chat:presence";
  o.user_data_prefix = "chat:ud";
  o.user_socket_prefix = "chat:us";
  o.default_ttl = 20s;
  o.idle_ttl = 40s;
  Env<B> e(o);
  e.set_online("u1", "s1");
  BOOST_TEST(e.f.ok(cmd::exists{.keys = {"chat:presence:online", "chat:presence:stats",
                                         "chat:ud:u1", "chat:us:u1"}}) == 4);
  BOOST_TEST(e.f.ok(cmd::exists{.keys = {"presence:online", "user_data:u1"}}) == 0);
  auto const s = e.f.ok(cmd::pttl{"chat:us:u1"});
  BOOST_TEST((s > 19'000 && s <= 20'000));
  auto const d = e.f.ok(cmd::pttl{"chat:ud:u1"});
  BOOST_TEST((d > 39'000 && d <= 40'000));
  // A manager with the default prefixes does not see these users.
  OnlineUserManager<B> other(e.f.backend);
  auto [ec, on] = e.f.wait(other.async_is_user_online("u1"));
  BOOST_TEST(!ec);
  BOOST_TEST(!on);
  // idle_ttl shorter than the presence: the data lives as long as the presence at least.
  o.idle_ttl = 1s;
  OnlineUserManager<B> short_idle(e.f.backend, o);
  BOOST_TEST(!std::get<1>(e.f.wait(short_idle.async_set_user_online("u1", OnlineUserData("s1")))));
  auto const d2 = e.f.ok(cmd::pttl{"chat:ud:u1"});
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

BOOST_AUTO_TEST_CASE_TEMPLATE(operations_fail_cleanly_when_the_connection_drops, B, FakeOnly) {
  Env<B> e;
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

BOOST_AUTO_TEST_CASE_TEMPLATE(a_thousand_concurrent_users_end_in_the_exact_state, B, AllBackends) {
  Env<B> e;
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
