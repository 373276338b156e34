// RoomManager on every backend and in both key layouts: rooms, membership in both directions,
// roles, presence as a real OnlineUserManager on the same backend keeps it (expiry, statuses),
// peak metrics and presence stats on server time, TTLs and their expiry, paging over rooms, bad
// input, lost connections and half-done joins and leaves, 1 000 concurrent joins and leaves.
//
// Each templated case runs once per layout its backend serves (for_each_layout): the plain
// layout (seed 000's names) on MemoryBackend, FakeBackend and RedisBackend; the clustered one
// on ClusterBackend (a throwaway 3-master cluster) and on MemoryBackend and FakeBackend with
// MemoryConfig::cluster_checks, which refuse a cross-slot command and a script that touches a
// key it did not declare. So the clustered layout costs no template instantiation.
#include "support/backends.hpp"
#include "support/margin.hpp"

#include <rediskit/services/online_user_manager.hpp>
#include <rediskit/services/room_manager.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
// Cases about key names only: FakeBackend would repeat MemoryBackend's engine (compile time).
using NamingBackends = boost::mpl::list<MemoryBackend, RedisBackend, ClusterBackend>;
using SlotBackends = boost::mpl::list<MemoryBackend, ClusterBackend>;  // clustered layout

namespace {

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}
using Ids = std::vector<std::string>;
using Pairs = std::vector<std::pair<std::string, std::string>>;
Pairs sorted_pairs(Pairs v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The layout of one run of a case, and the key names it gives (the header's table).
struct Layout {
  KeyLayout layout = KeyLayout::plain;
  bool clustered() const { return layout == KeyLayout::clustered; }
  // "prefix:id", or "prefix:{id}" (an id holding '}': "prefix:{TTT}id").
  std::string key(std::string const& prefix, std::string const& id) const {
    if (!clustered()) return prefix + ":" + id;
    if (id.find('}') == std::string::npos) return prefix + ":{" + id + "}";
    return prefix + ":" + hash_tag_for(id) + id;
  }
  std::string room(std::string const& id) const { return key("rooms", id); }
  std::string members(std::string const& id) const { return key("room_users", id); }
  std::string roles(std::string const& id) const { return key("room_roles", id); }
  std::string activity(std::string const& id) const { return key("room_activity", id); }
  std::string stats(std::string const& id) const { return key("room_stats", id); }
  std::string user_rooms(std::string const& user) const { return key("user_rooms", user); }
  std::string presence(std::string const& prefix = "presence") const {
    return KeySpace(prefix, layout).key("online");
  }
  RoomOptions rooms(RoomOptions o = {}) const {
    o.key_layout = layout;
    return o;
  }
  // An OnlineUserManager in this layout.
  OnlineUserOptions users(OnlineUserOptions o = {}) const {
    o.key_layout = layout;
    return o;
  }
  template <class B>
  std::int64_t purge_expired(BackendFixture<B>& f, OnlineUserManager<B>& users) const {
    return std::get<1>(f.wait(users.async_purge_expired(100)));
  }
};

// Runs `body(fixture, layout)` in each layout backend B serves (see the top of this file).
template <class B, class Body>
void for_each_layout(Body body) {
  if constexpr (BackendFixture<B>::on_server) {
    BackendFixture<B> f;
    body(f, Layout{default_key_layout_v<B>});
  } else {
    {
      BackendFixture<B> f;
      BOOST_TEST_CONTEXT("plain layout") { body(f, Layout{KeyLayout::plain}); }
    }
    {
      BackendFixture<B> f(std::in_place, MemoryConfig{.cluster_checks = true});
      BOOST_TEST_CONTEXT("clustered layout, cluster checks") {
        body(f, Layout{KeyLayout::clustered});
      }
    }
  }
}

// Runs one ready handler (a step of an operation in flight); fails the test when none is.
template <class B>
void step_once(BackendFixture<B>& f) {
  if (f.ioc.stopped()) f.ioc.restart();
  BOOST_REQUIRE_MESSAGE(f.ioc.poll_one() == 1, "no operation step was ready to run");
}

// How many of `keys` exist, one EXISTS each (they may be in different slots).
template <class B>
std::int64_t existing(BackendFixture<B>& f, std::initializer_list<std::string> keys) {
  std::int64_t n = 0;
  for (auto const& k : keys)
    n += f.ok(cmd::exists{.keys = k});
  return n;
}

// Every room, page after page (on a cluster the cursor walks each master in turn).
template <class B>
std::set<std::string> all_rooms(BackendFixture<B>& f, RoomManager<B>& rooms) {
  std::set<std::string> all;
  std::uint64_t cursor = 0;
  int steps = 0;
  do {
    auto [ec, page] = f.wait(rooms.async_get_all_rooms(cursor, 5));
    BOOST_REQUIRE(!ec);
    all.insert(page.rooms.begin(), page.rooms.end());
    cursor = page.cursor;
  } while (cursor != 0 && ++steps < 1000);
  return all;
}

template <class B>
std::int64_t server_ms(BackendFixture<B>& f) {
  auto const [s, us] = f.ok(cmd::time{});
  return s * 1000 + us / 1000;
}

// Presence goes through OnlineUserManager, as in production.
template <class B>
void set_online(BackendFixture<B>& f, OnlineUserManager<B>& users, std::string const& user) {
  auto const [ec, fresh] = f.wait(users.async_set_user_online(user, OnlineUserData("s-" + user)));
  BOOST_TEST(!ec);
  BOOST_TEST(fresh);
}
template <class B>
void set_offline(BackendFixture<B>& f, OnlineUserManager<B>& users, std::string const& user) {
  auto const [ec, was] = f.wait(users.async_set_user_offline(user));
  BOOST_TEST(!ec);
  BOOST_TEST(was);
}

RoomOptions short_ttls() {
  RoomOptions o;
  o.default_room_ttl = 1000ms;
  o.idle_room_ttl = 1000ms;
  o.archived_room_ttl = 3000ms;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(room_manager)

BOOST_AUTO_TEST_CASE_TEMPLATE(create_room_stores_the_seed_hash_and_updates_an_existing_one, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    RoomManager rooms(f.backend, k.rooms());
    auto const before = server_ms(f);
    auto [ec, created] =
        f.wait(rooms.async_create_room("conv_1", {"Dev Team", "GROUP", R"({"topic":"dev"})"}));
    BOOST_TEST(!ec);
    BOOST_TEST(created);
    auto const after = server_ms(f);

    auto [ec2, info] = f.wait(rooms.async_get_room_info("conv_1"));
    BOOST_TEST(!ec2);
    BOOST_REQUIRE(info.has_value());
    BOOST_TEST(info->id == "conv_1");
    BOOST_TEST(info->name == "Dev Team");
    BOOST_TEST(info->type == "GROUP");
    BOOST_TEST(info->metadata == R"({"topic":"dev"})");
    BOOST_TEST(info->user_count == 0);
    auto const created_at = info->created_at.time_since_epoch().count();
    BOOST_TEST(created_at >= before);
    BOOST_TEST(created_at <= after);

    // The seed's field names, for the Node services sharing the Redis.
    auto fields = f.ok(cmd::hgetall{k.room("conv_1")});
    std::map<std::string, std::string> m(fields.begin(), fields.end());
    BOOST_TEST(m.size() == 6u);
    BOOST_TEST(m["userCount"] == "0");
    BOOST_TEST(m["createdAt"] == std::to_string(created_at));

    // Again: updated, createdAt and members kept.
    BOOST_TEST(std::get<1>(f.wait(rooms.async_join_room("conv_1", "u1"))));
    f.advance(20ms);
    auto [ec3, again] = f.wait(rooms.async_create_room("conv_1", RoomData("Renamed")));
    BOOST_TEST(!ec3);
    BOOST_TEST(!again);
    auto const info2 = std::get<1>(f.wait(rooms.async_get_room_info("conv_1")));
    BOOST_REQUIRE(info2.has_value());
    BOOST_TEST(info2->name == "Renamed");
    BOOST_TEST(info2->type == "GROUP");
    BOOST_TEST(info2->metadata == "");
    BOOST_TEST(info2->user_count == 1);
    BOOST_TEST((info2->created_at == info->created_at));

    auto [ec4, missing] = f.wait(rooms.async_get_room_info("nope"));
    BOOST_TEST(!ec4);
    BOOST_TEST(!missing.has_value());

    // A room a Node service wrote, createdAt as an ISO date: read, the date not misread.
    f.ok(cmd::hset{.key = k.room("node"),
                   .fields = {FieldValue{"id", "node"}, FieldValue{"name", "From Node"},
                              FieldValue{"createdAt", "2024-05-01T10:00:00.000Z"}}});
    auto const node = std::get<1>(f.wait(rooms.async_get_room_info("node")));
    BOOST_REQUIRE(node.has_value());
    BOOST_TEST(node->name == "From Node");
    BOOST_TEST(node->created_at.time_since_epoch().count() == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(each_layout_names_the_keys_as_its_header_says, B, NamingBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    BOOST_TEST((RoomManager(f.backend).key_layout() == default_key_layout_v<B>));
    OnlineUserManager users(f.backend, k.users());
    RoomManager rooms(f.backend, users, k.rooms());
    BOOST_TEST((rooms.key_layout() == k.layout));
    f.wait(rooms.async_create_room("r1", RoomData("n")));
    f.wait(rooms.async_join_room("r1", "u1"));
    f.wait(rooms.async_join_room("r1", "u2"));
    f.wait(rooms.async_leave_room("r1", "u2"));  // room_stats: the ended session
    f.wait(rooms.async_set_user_role_in_room("r1", "u1", RoomRole::admin));
    set_online(f, users, "u1");
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_online_users("r1"))) == Ids({"u1"}));
    // Literally: seed 000's names on one node (what a Node service reads), tags on a cluster.
    Ids const want = k.clustered() ? Ids{"rooms:{r1}", "room_users:{r1}", "room_roles:{r1}",
                                         "room_activity:{r1}", "room_stats:{r1}",
                                         "user_rooms:{u1}", "{presence}:online"}
                                   : Ids{"rooms:r1", "room_users:r1", "room_roles:r1",
                                         "room_activity:r1", "room_stats:r1", "user_rooms:u1",
                                         "presence:online"};
    for (auto const& key : want)
      BOOST_TEST(f.ok(cmd::exists{.keys = key}) == 1, key);
    if (k.clustered()) {
      for (std::size_t i = 1; i < 5; ++i)
        BOOST_TEST(cluster::key_slot(want[i]) == cluster::key_slot(want[0]), want[i]);
      BOOST_TEST(cluster::key_slot(want[5]) == cluster::key_slot("u1"));
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(join_and_leave_change_both_directions_and_user_rooms_prunes, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    RoomManager rooms(f.backend, k.rooms());
    BOOST_TEST(std::get<1>(f.wait(rooms.async_join_room("r1", "u1"))));
    BOOST_TEST(std::get<1>(f.wait(rooms.async_join_room("r1", "u2"))));
    BOOST_TEST(std::get<1>(f.wait(rooms.async_join_room("r2", "u1"))));
    BOOST_TEST(!std::get<1>(f.wait(rooms.async_join_room("r1", "u1"))));  // already a member

    BOOST_TEST(sorted(std::get<1>(f.wait(rooms.async_get_room_users("r1")))) ==
               Ids({"u1", "u2"}));
    BOOST_TEST(sorted(std::get<1>(f.wait(rooms.async_get_user_rooms("u1")))) ==
               Ids({"r1", "r2"}));
    BOOST_TEST(sorted(f.ok(cmd::smembers{k.members("r1")})) == Ids({"u1", "u2"}));
    BOOST_TEST(sorted(f.ok(cmd::smembers{k.user_rooms("u1")})) == Ids({"r1", "r2"}));
    BOOST_TEST(*f.ok(cmd::hget{.key = k.room("r1"), .field = "userCount"}) == "2");
    // A room joined without create_room gets its hash.
    auto const info = std::get<1>(f.wait(rooms.async_get_room_info("r2")));
    BOOST_REQUIRE(info.has_value());
    BOOST_TEST(info->id == "r2");
    BOOST_TEST(info->user_count == 1);
    BOOST_TEST(info->created_at.time_since_epoch().count() > 0);

    auto [ec, left] = f.wait(rooms.async_leave_room("r1", "u1"));
    BOOST_TEST(!ec);
    BOOST_TEST(left);
    BOOST_TEST(!std::get<1>(f.wait(rooms.async_leave_room("r1", "u1"))));
    BOOST_TEST(!std::get<1>(f.wait(rooms.async_leave_room("r1", "stranger"))));
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_users("r1"))) == Ids({"u2"}));
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u1"))) == Ids({"r2"}));
    BOOST_TEST(*f.ok(cmd::hget{.key = k.room("r1"), .field = "userCount"}) == "1");
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_info("r1")))->user_count == 1);
    // The last member leaving empties both sets (Redis deletes empty sets).
    BOOST_TEST(std::get<1>(f.wait(rooms.async_leave_room("r2", "u1"))));
    BOOST_TEST(existing(f, {k.members("r2"), k.user_rooms("u1")}) == 0);
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_info("r2")))->user_count == 0);
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u1"))).empty());

    // get_user_rooms lists only the rooms that list the user, and prunes the others.
    f.wait(rooms.async_join_room("r1", "u1"));
    f.wait(rooms.async_join_room("r2", "u1"));
    // The index lists rooms that do not list the user: one that never existed, one whose
    // member set lost the user (a leave whose room side did not run), one that lists others.
    f.ok(cmd::sadd{.key = k.user_rooms("u1"), .members = {"ghost", "r3"}});
    f.ok(cmd::srem{.key = k.members("r2"), .members = "u1"});
    f.wait(rooms.async_join_room("r3", "u2"));
    auto [ec5, mine] = f.wait(rooms.async_get_user_rooms("u1"));
    BOOST_TEST(!ec5);
    BOOST_TEST(mine == Ids({"r1"}));
    BOOST_TEST(f.ok(cmd::smembers{k.user_rooms("u1")}) == Ids({"r1"}));  // pruned
    // An index that lists nothing live is deleted with its last id; a user without one: [].
    f.ok(cmd::srem{.key = k.members("r1"), .members = "u1"});
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u1"))).empty());
    BOOST_TEST(f.ok(cmd::exists{.keys = k.user_rooms("u1")}) == 0);
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("nobody"))).empty());
    BOOST_TEST(sorted(std::get<1>(f.wait(rooms.async_get_user_rooms("u2")))) ==
               Ids({"r1", "r3"}));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(ids_with_braces_keep_their_keys_apart_and_round_trip, B,
                              SlotBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    OnlineUserManager users(f.backend, k.users());
    RoomManager rooms(f.backend, users, k.rooms());
    Ids const ids{"a}", "b}", "}", "{x}", "{", "a{b}c", "plain"};
    for (auto const& r : ids) {
      BOOST_TEST(std::get<1>(f.wait(rooms.async_create_room(r, RoomData("n-" + r)))), r);
      BOOST_TEST(std::get<1>(f.wait(rooms.async_join_room(r, "u}" + r))), r);
      BOOST_TEST(std::get<1>(f.wait(rooms.async_join_room(r, "{v}"))), r);
    }
    set_online(f, users, "{v}");
    for (auto const& r : ids) {
      auto const info = std::get<1>(f.wait(rooms.async_get_room_info(r)));
      BOOST_REQUIRE(info.has_value());
      BOOST_TEST(info->name == "n-" + r);  // no two ids share a hash
      BOOST_TEST(info->user_count == 2);
      BOOST_TEST(sorted(std::get<1>(f.wait(rooms.async_get_room_users(r)))) ==
                 sorted({"u}" + r, "{v}"}));
      BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_online_users(r))) == Ids({"{v}"}));
      BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u}" + r))) == Ids({r}));
      BOOST_TEST(f.ok(cmd::exists{.keys = k.room(r)}) == 1, k.room(r));
      if (k.clustered())
        BOOST_TEST(cluster::key_slot(k.members(r)) == cluster::key_slot(k.room(r)), r);
    }
    BOOST_TEST(sorted(std::get<1>(f.wait(rooms.async_get_user_rooms("{v}")))) == sorted(ids));
    BOOST_TEST(all_rooms(f, rooms) == std::set<std::string>(ids.begin(), ids.end()));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(online_users_are_members_the_online_user_manager_has_online, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    OnlineUserManager users(f.backend, k.users());
    RoomManager rooms(f.backend, users, k.rooms());
    for (auto u : {"u1", "u2", "u3"})
      f.wait(rooms.async_join_room("r", u));
    set_online(f, users, "u1");
    set_online(f, users, "u3");
    set_online(f, users, "outsider");                    // online, not a member
    f.ok(cmd::set{.key = "presence:u2", .value = "1"});  // the old key-per-user layout: ignored
    auto [ec, online] = f.wait(rooms.async_get_room_online_users("r"));
    BOOST_TEST(!ec);
    BOOST_TEST(sorted(online) == Ids({"u1", "u3"}));
    auto [ec2, count] = f.wait(rooms.async_get_room_online_users_count("r"));
    BOOST_TEST(!ec2);
    BOOST_TEST((count == RoomOnlineCount{2, 3}));

    set_offline(f, users, "u3");
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_online_users("r"))) == Ids({"u1"}));
    BOOST_TEST((std::get<1>(f.wait(rooms.async_get_room_online_users_count("r"))) ==
                RoomOnlineCount{1, 3}));
    // An unknown room: nothing online, nothing written.
    auto const keys = f.ok(cmd::dbsize{});
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_online_users("none"))).empty());
    BOOST_TEST((std::get<1>(f.wait(rooms.async_get_room_online_users_count("none"))) ==
                RoomOnlineCount{0, 0}));
    BOOST_TEST(!std::get<1>(f.wait(rooms.async_get_room_peak_metrics("none"))).has_value());
    BOOST_TEST(f.ok(cmd::dbsize{}) == keys);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(an_expired_presence_drops_out_whether_purged_or_not, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    OnlineUserOptions uo;
    uo.default_ttl = f.is_fake ? std::chrono::milliseconds(5min) : 2000ms;
    uo.purge_batch = 0;  // expired users stay in the presence zset until purged
    OnlineUserManager users(f.backend, k.users(uo));
    RoomManager rooms(f.backend, users, k.rooms());
    for (auto u : {"u1", "u2", "u3"})
      f.wait(rooms.async_join_room("r", u));
    set_online(f, users, "u1");
    set_online(f, users, "u2");
    BOOST_TEST(sorted(std::get<1>(f.wait(rooms.async_get_room_online_users("r")))) ==
               Ids({"u1", "u2"}));
    BOOST_TEST((std::get<1>(f.wait(rooms.async_get_room_online_users_count("r"))) ==
                RoomOnlineCount{2, 3}));

    f.advance(uo.default_ttl / 2);
    BOOST_TEST(std::get<1>(f.wait(users.async_update_last_activity("u2"))));  // u2 renews
    f.advance(uo.default_ttl / 2 + 500ms);
    // u1's presence expired: still in the zset (no purge yet), offline for both managers.
    BOOST_TEST(f.ok(cmd::zscore{.key = k.presence(), .member = "u1"}).has_value());
    BOOST_TEST(!std::get<1>(f.wait(users.async_is_user_online("u1"))));
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_online_users("r"))) == Ids({"u2"}));
    BOOST_TEST((std::get<1>(f.wait(rooms.async_get_room_online_users_count("r"))) ==
                RoomOnlineCount{1, 3}));
    auto s = std::get<1>(f.wait(rooms.async_get_room_presence_stats("r")));
    BOOST_TEST(s.online_users == 1);
    for (auto const& u : s.users)
      BOOST_TEST((u.status.has_value() == (u.user_id == "u2")), u.user_id);

    // Purged: gone from the zset, still offline; back online: counted again.
    BOOST_TEST(k.purge_expired(f, users) == 1);
    BOOST_TEST(!f.ok(cmd::zscore{.key = k.presence(), .member = "u1"}).has_value());
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_online_users("r"))) == Ids({"u2"}));
    set_online(f, users, "u1");
    BOOST_TEST((std::get<1>(f.wait(rooms.async_get_room_online_users_count("r"))) ==
                RoomOnlineCount{2, 3}));
    f.advance(uo.default_ttl + 500ms);  // everyone expires
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_online_users("r"))).empty());
    BOOST_TEST((std::get<1>(f.wait(rooms.async_get_room_online_users_count("r"))) ==
                RoomOnlineCount{0, 3}));
    BOOST_TEST(std::get<1>(f.wait(users.async_get_online_count())) == 0);
  });
}

BOOST_AUTO_TEST_CASE(presence_stats_report_the_online_user_managers_statuses) {
  for_each_layout<FakeBackend>([](BackendFixture<FakeBackend>& f, Layout const& k) {
    // away after 1 min, idle after 3, offline after 5
    OnlineUserManager users(f.backend, k.users());
    RoomManager rooms(f.backend, users, k.rooms());
    for (auto u : {"u1", "u2", "u3", "u4"})
      f.wait(rooms.async_join_room("r", u));
    for (auto u : {"u1", "u2", "u3"})
      set_online(f, users, u);
    f.advance(140s);
    f.wait(users.async_update_last_activity("u3"));
    f.advance(60s);
    f.wait(users.async_update_last_activity("u2"));
    // u1: 200 s without activity (idle), u3: 60 s (away, the bound), u2: now (online), u4 never.
    auto const s = std::get<1>(f.wait(rooms.async_get_room_presence_stats("r")));
    std::map<std::string, std::optional<PresenceStatus>> got;
    for (auto const& u : s.users)
      got[u.user_id] = u.status;
    BOOST_TEST((got["u1"] == PresenceStatus::idle));
    BOOST_TEST((got["u2"] == PresenceStatus::online));
    BOOST_TEST((got["u3"] == PresenceStatus::away));
    BOOST_TEST(!got["u4"].has_value());
    BOOST_TEST(s.online_users == 3);
    // The same statuses as OnlineUserManager's own listing.
    auto const [ec, page] = f.wait(users.async_get_online_users({}, 100));
    BOOST_TEST(!ec);
    BOOST_TEST(page.users.size() == 3u);
    for (auto const& u : page.users)
      BOOST_TEST((got[u.user_id] == u.status), u.user_id);
    f.advance(100s);  // u1 expired (300 s), u3 still away (160 s), u2 away (100 s)
    auto const later = std::get<1>(f.wait(rooms.async_get_room_presence_stats("r")));
    got.clear();
    for (auto const& u : later.users)
      got[u.user_id] = u.status;
    BOOST_TEST(!got["u1"].has_value());
    BOOST_TEST((got["u3"] == PresenceStatus::away));
    BOOST_TEST((got["u2"] == PresenceStatus::away));
    f.advance(21s);  // u3: 181 s without activity
    auto const last = std::get<1>(f.wait(rooms.async_get_room_presence_stats("r")));
    for (auto const& u : last.users)
      if (u.user_id == "u3") BOOST_TEST((u.status == PresenceStatus::idle));
    BOOST_TEST(later.online_users == 2);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(online_checks_scale_past_lua_unpack_chunks, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    OnlineUserManager users(f.backend, k.users());
    RoomManager rooms(f.backend, users, k.rooms());
    // 2 100 members (three ZMSCORE chunks in the presence script), every third one online.
    std::vector<std::string> members, want;
    for (int i = 0; i < 2100; ++i) {
      members.push_back("m" + std::to_string(i));
      if (i % 3 == 0) want.push_back(members.back());
    }
    BOOST_TEST(f.ok(cmd::sadd{.key = k.members("big"), .members = members}) == 2100);
    for (auto const& u : want)
      f.wait(users.async_set_user_online(u, OnlineUserData("s")));
    BOOST_TEST(sorted(std::get<1>(f.wait(rooms.async_get_room_online_users("big")))) ==
               sorted(want));
    BOOST_TEST((std::get<1>(f.wait(rooms.async_get_room_online_users_count("big"))) ==
                RoomOnlineCount{700, 2100}));
    auto const s = std::get<1>(f.wait(rooms.async_get_room_presence_stats("big")));
    BOOST_TEST(s.users.size() == 2100u);
    BOOST_TEST(s.online_users == 700);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(roles_are_set_for_members_only_and_dropped_on_leave, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    RoomManager rooms(f.backend, k.rooms());
    auto [ec, none] = f.wait(rooms.async_get_user_role_in_room("r", "u1"));
    BOOST_TEST(!ec);
    BOOST_TEST(!none.has_value());
    auto [ec2, set] = f.wait(rooms.async_set_user_role_in_room("r", "u1", RoomRole::admin));
    BOOST_TEST(!ec2);
    BOOST_TEST(!set);  // not a member
    BOOST_TEST(f.ok(cmd::exists{.keys = k.roles("r")}) == 0);

    f.wait(rooms.async_join_room("r", "u1"));
    BOOST_TEST(
        (std::get<1>(f.wait(rooms.async_get_user_role_in_room("r", "u1"))) == RoomRole::member));
    for (RoomRole role : {RoomRole::moderator, RoomRole::admin, RoomRole::member}) {
      BOOST_TEST(std::get<1>(f.wait(rooms.async_set_user_role_in_room("r", "u1", role))));
      BOOST_TEST((std::get<1>(f.wait(rooms.async_get_user_role_in_room("r", "u1"))) == role));
      BOOST_TEST(*f.ok(cmd::hget{.key = k.roles("r"), .field = "u1"}) == to_string(role));
    }
    f.wait(rooms.async_set_user_role_in_room("r", "u1", RoomRole::moderator));
    f.wait(rooms.async_leave_room("r", "u1"));
    BOOST_TEST(!std::get<1>(f.wait(rooms.async_get_user_role_in_room("r", "u1"))).has_value());
    f.wait(rooms.async_join_room("r", "u1"));
    BOOST_TEST(
        (std::get<1>(f.wait(rooms.async_get_user_role_in_room("r", "u1"))) == RoomRole::member));

    // A role this manager does not know (written by someone else) is reported, not guessed.
    f.ok(cmd::hset{.key = k.roles("r"), .fields = FieldValue{"u1", "owner"}});
    auto [ec3, odd] = f.wait(rooms.async_get_user_role_in_room("r", "u1"));
    BOOST_TEST(ec3 == make_error_code(Error::unexpected_reply_type));
    BOOST_TEST((parse_room_role("moderator") == RoomRole::moderator));
    BOOST_TEST(!parse_room_role("owner").has_value());
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(writes_set_the_room_ttls_default_idle_and_archived, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    RoomOptions o;
    o.default_room_ttl = 100s;
    o.idle_room_ttl = 200s;
    o.archived_room_ttl = 400s;
    RoomManager rooms(f.backend, k.rooms(o));
    auto in = [&](std::string const& key, std::int64_t lo, std::int64_t hi) {
      auto const t = f.ok(cmd::pttl{key});
      BOOST_TEST((t > lo && t <= hi),
                 key << " has PTTL " << t << ", expected (" << lo << ", " << hi << "]");
    };
    f.wait(rooms.async_create_room("r", RoomData("n")));
    in(k.room("r"), 90'000, 100'000);
    f.wait(rooms.async_join_room("r", "u1"));
    f.wait(rooms.async_join_room("r", "u2"));
    f.wait(rooms.async_set_user_role_in_room("r", "u1", RoomRole::admin));
    for (auto const& key : {k.room("r"), k.members("r"), k.roles("r"), k.activity("r")})
      in(key, 90'000, 100'000);
    BOOST_TEST(f.ok(cmd::pttl{k.user_rooms("u1")}) == -1);  // emptied by leaves, pruned on reads
    f.wait(rooms.async_leave_room("r", "u1"));
    in(k.room("r"), 90'000, 100'000);
    in(k.stats("r"), 390'000, 400'000);  // the ended session
    f.wait(rooms.async_leave_room("r", "u2"));
    in(k.room("r"), 190'000, 200'000);  // empty: idle
    in(k.stats("r"), 390'000, 400'000);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(rooms_expire_unless_written_and_user_rooms_drop_them, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    RoomManager rooms(f.backend, k.rooms(short_ttls()));
    f.wait(rooms.async_create_room("r1", RoomData("one")));
    f.wait(rooms.async_join_room("r1", "u1"));
    f.wait(rooms.async_join_room("r2", "u1"));
    f.advance(700ms);
    // The reads that need r2 alive are checked only if its 0.3 s margin held (margin.hpp).
    test::Margin const renewed(1000ms);
    f.wait(rooms.async_join_room("r2", "u2"));  // renews r2 only
    f.advance(700ms);
    // r1 was last written 1.4 s ago (TTL 1 s): gone, all of its keys together.
    BOOST_TEST(!std::get<1>(f.wait(rooms.async_get_room_info("r1"))).has_value());
    BOOST_TEST(existing(f, {k.room("r1"), k.members("r1"), k.activity("r1")}) == 0);
    bool const r2_live = std::get<1>(f.wait(rooms.async_get_room_info("r2"))).has_value();
    auto const r2_users = sorted(std::get<1>(f.wait(rooms.async_get_room_users("r2"))));
    // user_rooms lists only live rooms, and the expired one is removed from the set.
    auto const u1_rooms = std::get<1>(f.wait(rooms.async_get_user_rooms("u1")));
    auto const u1_set = f.ok(cmd::smembers{k.user_rooms("u1")});
    if (renewed.held()) {
      BOOST_TEST(r2_live);
      BOOST_TEST(r2_users == Ids({"u1", "u2"}));
      BOOST_TEST(u1_rooms == Ids({"r2"}));
      BOOST_TEST(u1_set == Ids({"r2"}));
    } else {
      BOOST_TEST_MESSAGE("the machine stalled past r2's TTL: its checks are skipped");
    }
    f.advance(700ms);
    BOOST_TEST(!std::get<1>(f.wait(rooms.async_get_room_info("r2"))).has_value());
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u1"))).empty());
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u2"))).empty());
    BOOST_TEST(existing(f, {k.user_rooms("u1"), k.user_rooms("u2")}) == 0);
    // Joining again starts a fresh room.
    BOOST_TEST(std::get<1>(f.wait(rooms.async_join_room("r2", "u1"))));
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_online_users_count("r2"))).total == 1);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(peak_metrics_follow_the_online_count_on_server_time, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    OnlineUserManager users(f.backend, k.users());
    RoomManager rooms(f.backend, users, k.rooms());
    for (auto u : {"u1", "u2", "u3"})
      f.wait(rooms.async_join_room("r", u));
    set_online(f, users, "u1");
    auto const t0 = server_ms(f);
    f.wait(rooms.async_get_room_online_users_count("r"));  // first observation: 1
    f.advance(100ms);
    set_online(f, users, "u2");
    auto const t1 = server_ms(f);
    f.wait(rooms.async_get_room_online_users("r"));  // 2: the peak
    auto const t2 = server_ms(f);
    auto const stats = f.ok(cmd::hgetall{k.stats("r")});
    f.advance(100ms);
    f.wait(rooms.async_get_room_online_users("r"));  // unchanged: nothing written
    BOOST_TEST(sorted_pairs(f.ok(cmd::hgetall{k.stats("r")})) == sorted_pairs(stats));
    set_offline(f, users, "u1");
    set_offline(f, users, "u2");
    f.wait(rooms.async_get_room_presence_stats("r"));  // 0
    f.advance(200ms);

    auto [ec, m] = f.wait(rooms.async_get_room_peak_metrics("r"));
    BOOST_TEST(!ec);
    BOOST_REQUIRE(m.has_value());
    BOOST_TEST(m->peak_users_count == 2);
    auto const peak_time = m->peak_time.time_since_epoch().count();
    BOOST_TEST((peak_time >= t1 && peak_time <= t2));
    BOOST_TEST((m->average_active_users > 0 && m->average_active_users < 2));
    if constexpr (BackendFixture<B>::is_fake) {
      // 1 online for 100 ms, 2 for 100 ms, 0 for 200 ms: (100 + 200) / 400.
      BOOST_TEST(peak_time == t0 + 100);
      BOOST_TEST(m->average_active_users == 0.75, boost::test_tools::tolerance(1e-9));
      // Unchanged since: read from the statistics alone, the same figures.
      auto const again = std::get<1>(f.wait(rooms.async_get_room_peak_metrics("r")));
      BOOST_REQUIRE(again.has_value());
      BOOST_TEST(again->average_active_users == 0.75, boost::test_tools::tolerance(1e-9));
    }
    // A member leaving a room whose hash is gone (deleted by someone else) does not recreate
    // it.
    f.ok(cmd::del{.keys = k.room("r")});
    BOOST_TEST(std::get<1>(f.wait(rooms.async_leave_room("r", "u3"))));
    BOOST_TEST(f.ok(cmd::exists{.keys = k.room("r")}) == 0);
    // Statistics outlive the room (archived TTL): peak metrics of a room whose keys are gone.
    f.ok(cmd::del{.keys = {k.members("r"), k.activity("r")}});
    auto const again = std::get<1>(f.wait(rooms.async_get_room_peak_metrics("r")));
    BOOST_REQUIRE(again.has_value());
    BOOST_TEST(again->peak_users_count == 2);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(presence_stats_list_members_with_status_and_sessions, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    OnlineUserManager users(f.backend, k.users());
    RoomManager rooms(f.backend, users, k.rooms());
    auto const t0 = server_ms(f);
    f.wait(rooms.async_join_room("r", "u1"));
    f.wait(rooms.async_join_room("r", "u3"));
    f.advance(100ms);
    f.wait(rooms.async_join_room("r", "u2"));
    f.advance(100ms);
    f.wait(rooms.async_leave_room("r", "u3"));  // a 200 ms session
    set_online(f, users, "u2");
    f.advance(100ms);
    auto [ec, s] = f.wait(rooms.async_get_room_presence_stats("r"));
    auto const t1 = server_ms(f);
    BOOST_TEST(!ec);
    BOOST_TEST(s.room_id == "r");
    BOOST_TEST(s.total_users == 2);
    BOOST_TEST(s.online_users == 1);
    BOOST_REQUIRE(s.users.size() == 2u);
    std::sort(s.users.begin(), s.users.end(),
              [](auto const& a, auto const& b) { return a.user_id < b.user_id; });
    BOOST_TEST(s.users[0].user_id == "u1");
    BOOST_TEST(!s.users[0].status.has_value());  // offline
    BOOST_TEST(s.users[1].user_id == "u2");
    BOOST_TEST((s.users[1].status == PresenceStatus::online));
    auto const u1_at = s.users[0].last_activity.time_since_epoch().count();
    auto const u2_at = s.users[1].last_activity.time_since_epoch().count();
    BOOST_TEST((u1_at >= t0 && u1_at < u2_at && u2_at <= t1));
    BOOST_TEST(s.average_session_duration.count() > 0);
    if constexpr (BackendFixture<B>::is_fake) {
      // u3: 200 ms ended; u1: 300 ms and u2: 200 ms ongoing.
      BOOST_TEST(u2_at - u1_at == 100);
      BOOST_TEST(s.average_session_duration.count() == (200 + 300 + 200) / 3);
    }
    // A member added by someone else (no join time): listed, not counted as a session.
    f.ok(cmd::sadd{.key = k.members("r"), .members = "u9"});
    auto const with_u9 = std::get<1>(f.wait(rooms.async_get_room_presence_stats("r")));
    BOOST_TEST(with_u9.total_users == 3);
    for (auto const& u : with_u9.users)
      if (u.user_id == "u9") BOOST_TEST(u.last_activity.time_since_epoch().count() == 0);
    if constexpr (BackendFixture<B>::is_fake)
      BOOST_TEST(with_u9.average_session_duration.count() == (200 + 300 + 200) / 3);

    auto [ec2, empty] = f.wait(rooms.async_get_room_presence_stats("none"));
    BOOST_TEST(!ec2);
    BOOST_TEST(empty.total_users == 0);
    BOOST_TEST(empty.users.empty());
    BOOST_TEST(empty.average_session_duration.count() == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(get_all_rooms_pages_through_live_rooms_only, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    RoomManager rooms(f.backend, k.rooms());
    std::set<std::string> want;
    for (int i = 0; i < 25; ++i) {
      std::string const id = "room" + std::to_string(i);
      want.insert(id);
      f.wait(rooms.async_create_room(id, RoomData("n")));
    }
    f.ok(cmd::set{.key = k.room("not-a-hash"), .value = "x"});     // another type: not a room
    f.ok(cmd::sadd{.key = k.members("room0"), .members = "u"});  // other prefixes: not rooms
    BOOST_TEST(all_rooms(f, rooms) == want);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_fails_with_invalid_argument_and_sends_nothing, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    RoomManager rooms(f.backend, k.rooms());
    auto const bad = make_error_code(Error::invalid_argument);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_create_room("", RoomData("n")))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_room_info(""))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_join_room("", "u"))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_join_room("r", ""))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_leave_room("r", ""))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_room_users(""))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_room_online_users(""))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_room_online_users_count(""))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_user_role_in_room("r", ""))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_set_user_role_in_room("", "u", RoomRole::admin))) ==
               bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_set_user_role_in_room("r", "u", RoomRole(7)))) ==
               bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_user_rooms(""))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_room_peak_metrics(""))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_room_presence_stats(""))) == bad);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_all_rooms(0, 0))) == bad);

    RoomOptions o;
    o.idle_room_ttl = 0ms;  // would delete keys instead of expiring them
    RoomManager broken(f.backend, k.rooms(o));
    BOOST_TEST(std::get<0>(f.wait(broken.async_join_room("r", "u"))) == bad);
    BOOST_TEST(std::get<0>(f.wait(broken.async_leave_room("r", "u"))) == bad);
    BOOST_TEST(std::get<0>(f.wait(broken.async_create_room("r", RoomData("n")))) == bad);
    BOOST_TEST(f.ok(cmd::dbsize{}) == 0);
    if constexpr (BackendFixture<B>::is_fake)
      BOOST_TEST(f.backend.command_log().size() == 1u);  // DBSIZE
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(every_key_prefix_and_the_presence_layout_are_options, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    RoomOptions o;
    o.room_prefix = "c:rooms";
    o.room_users_prefix = "c:members";
    o.user_rooms_prefix = "c:memberships";
    o.room_roles_prefix = "c:roles";
    o.room_activity_prefix = "c:activity";
    o.room_stats_prefix = "c:stats";
    o.presence.presence_prefix = "c:presence";
    o.presence.key_layout = k.layout;
    RoomManager rooms(f.backend, k.rooms(o));
    OnlineUserOptions uo;
    uo.presence_prefix = "c:presence";
    OnlineUserManager custom(f.backend, k.users(uo));
    OnlineUserManager defaults(f.backend, k.users());
    f.wait(rooms.async_join_room("r", "u1"));
    f.wait(rooms.async_join_room("r", "u2"));
    f.wait(rooms.async_set_user_role_in_room("r", "u1", RoomRole::admin));
    set_online(f, custom, "u1");
    set_online(f, defaults, "u2");  // the default presence zset: not looked at
    BOOST_TEST(existing(f, {k.presence("c:presence"), k.presence()}) == 2);
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_online_users("r"))) == Ids({"u1"}));
    f.wait(rooms.async_leave_room("r", "u2"));
    BOOST_TEST(existing(f, {k.key("c:rooms", "r"), k.key("c:members", "r"),
                            k.key("c:memberships", "u1"), k.key("c:roles", "r"),
                            k.key("c:activity", "r"), k.key("c:stats", "r")}) == 6);
    // Nothing under RoomManager's default prefixes.
    BOOST_TEST(existing(f, {k.room("r"), k.members("r"), k.user_rooms("u1"), k.user_rooms("u2"),
                            k.roles("r"), k.activity("r"), k.stats("r")}) == 0);
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u1"))) == Ids({"r"}));
    BOOST_TEST(all_rooms(f, rooms) == std::set<std::string>{"r"});
  });
}

BOOST_AUTO_TEST_CASE(presence_options_are_the_online_user_managers) {
  // The same names and defaults, so a default RoomManager reads a default OnlineUserManager.
  OnlinePresence const p{};
  OnlineUserOptions const u{};
  BOOST_TEST(p.presence_prefix == u.presence_prefix);
  BOOST_TEST(!p.key_layout.has_value());  // the backend's default, as OnlineUserManager's
  BOOST_TEST((p.default_ttl == u.default_ttl));
  BOOST_TEST((p.away_after == u.away_after));
  BOOST_TEST((p.idle_after == u.idle_after));
  // Built from an OnlineUserManager: its settings, the other options kept.
  for_each_layout<FakeBackend>([](BackendFixture<FakeBackend>& f, Layout const& k) {
    OnlineUserOptions uo;
    uo.presence_prefix = "p2";
    uo.default_ttl = 10s;
    uo.away_after = 2s;
    uo.idle_after = 5s;
    uo = k.users(uo);
    OnlineUserManager users(f.backend, uo);
    RoomOptions o;
    o.room_prefix = "c:rooms";
    RoomManager rooms(f.backend, users, k.rooms(o));
    BOOST_TEST(rooms.options().room_prefix == "c:rooms");
    BOOST_TEST(rooms.options().presence.presence_prefix == uo.presence_prefix);
    BOOST_TEST((rooms.options().presence.key_layout == uo.key_layout));
    BOOST_TEST((rooms.options().presence.default_ttl == 10s));
    BOOST_TEST((rooms.options().presence.away_after == 2s));
    BOOST_TEST((rooms.options().presence.idle_after == 5s));
    f.wait(rooms.async_join_room("r", "u1"));
    set_online(f, users, "u1");
    BOOST_TEST(f.ok(cmd::exists{.keys = k.presence("p2")}) == 1);  // where rooms reads
    f.advance(3s);  // away after 2 s with these options (1 min with the defaults)
    auto const s = std::get<1>(f.wait(rooms.async_get_room_presence_stats("r")));
    BOOST_REQUIRE(s.users.size() == 1u);
    BOOST_TEST((s.users[0].status == PresenceStatus::away));
    f.advance(8s);
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_online_users("r"))).empty());
  });
}

BOOST_AUTO_TEST_CASE(a_lost_connection_fails_operations_with_an_error) {
  for_each_layout<FakeBackend>([](BackendFixture<FakeBackend>& f, Layout const& k) {
    RoomManager rooms(f.backend, k.rooms());
    f.wait(rooms.async_join_room("r", "u1"));
    f.backend.drop_connection();
    auto const down = make_error_code(Error::not_connected);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_join_room("r", "u2"))) == down);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_leave_room("r", "u1"))) == down);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_room_info("r"))) == down);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_room_online_users("r"))) == down);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_room_presence_stats("r"))) == down);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_user_role_in_room("r", "u1"))) == down);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_user_rooms("u1"))) == down);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_get_all_rooms())) == down);
    f.backend.restore_connection();
    f.backend.fail_next(1, Error::connection_lost);
    BOOST_TEST(std::get<0>(f.wait(rooms.async_leave_room("r", "u1"))) ==
               make_error_code(Error::connection_lost));
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_users("r"))) == Ids({"u1"}));
    BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u1"))) == Ids({"r"}));
    // Each step of an online read fails cleanly.
    OnlineUserManager users(f.backend, k.users());
    RoomManager watched(f.backend, users, k.rooms());
    set_online(f, users, "u1");
    // Plain layout: one script. Clustered: room read, presence read, observation.
    std::size_t const steps = k.clustered() ? 3 : 1;
    for (std::size_t step = 0; step < steps; ++step) {
      f.backend.clear_log();
      if (step == 0) f.backend.fail_next(1, Error::connection_lost);
      std::optional<std::tuple<boost::system::error_code, std::vector<std::string>>> got;
      watched.async_get_room_online_users(
          "r", [&](boost::system::error_code ec, std::vector<std::string> v) { got.emplace(ec, v); });
      while (step > 0 && f.backend.count_in_log("EVALSHA") < step) step_once(f);
      if (step > 0) f.backend.fail_next(1, Error::connection_lost);
      f.run_until([&] { return got.has_value(); });
      f.backend.fail_next(0, Error::connection_lost);
      BOOST_TEST(std::get<0>(*got) == make_error_code(Error::connection_lost), "step " << step);
      BOOST_TEST(std::get<1>(*got).empty());
    }
  });
}

// Clustered joins and leaves are two steps; a failure between them completes the operation
// with its error, and the same call again repairs the pair (both sides are idempotent).
BOOST_AUTO_TEST_CASE(a_half_done_join_or_leave_is_repaired_by_calling_it_again) {
  BackendFixture<FakeBackend> f(std::in_place, MemoryConfig{.cluster_checks = true});
  Layout const k{KeyLayout::clustered};
  RoomManager rooms(f.backend, k.rooms());
  // Join: the room's script runs, SADD user_rooms fails.
  std::optional<std::pair<boost::system::error_code, bool>> joined;
  rooms.async_join_room("r", "u1", [&](boost::system::error_code ec, bool j) { joined.emplace(ec, j); });
  f.backend.fail_next(1, Error::connection_lost);  // the room's script has started: the next step
  f.run_until([&] { return joined.has_value(); });
  BOOST_TEST(joined->first == make_error_code(Error::connection_lost));
  BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_users("r"))) == Ids({"u1"}));
  BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u1"))).empty());
  auto [ec, again] = f.wait(rooms.async_join_room("r", "u1"));
  BOOST_TEST(!ec);
  BOOST_TEST(!again);  // the room side was done: "already a member"
  BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u1"))) == Ids({"r"}));
  BOOST_TEST(*f.ok(cmd::hget{.key = k.room("r"), .field = "userCount"}) == "1");

  // Leave: SREM user_rooms runs, the room's script fails.
  std::optional<std::pair<boost::system::error_code, bool>> left;
  rooms.async_leave_room("r", "u1", [&](boost::system::error_code ec, bool l) { left.emplace(ec, l); });
  f.backend.fail_next(1, Error::connection_lost);
  f.run_until([&] { return left.has_value(); });
  BOOST_TEST(left->first == make_error_code(Error::connection_lost));
  BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_users("r"))) == Ids({"u1"}));
  BOOST_TEST(std::get<1>(f.wait(rooms.async_get_user_rooms("u1"))).empty());
  auto [ec2, left2] = f.wait(rooms.async_leave_room("r", "u1"));
  BOOST_TEST(!ec2);
  BOOST_TEST(left2);
  BOOST_TEST(std::get<1>(f.wait(rooms.async_get_room_users("r"))).empty());
  BOOST_TEST(f.ok(cmd::exists{.keys = k.user_rooms("u1")}) == 0);
  // Two ordered steps, as the header says: the room first on a join, the user's rooms first on
  // a leave.
  f.backend.clear_log();
  f.wait(rooms.async_join_room("r", "u1"));
  f.wait(rooms.async_leave_room("r", "u1"));
  Ids names;
  for (auto const& c : f.backend.command_log())
    names.push_back(c[0] == "EVALSHA" ? "EVALSHA " + c[3] : c[0] + " " + c[1]);
  BOOST_TEST(names == Ids({"EVALSHA " + k.room("r"), "SADD " + k.user_rooms("u1"),
                           "SREM " + k.user_rooms("u1"), "EVALSHA " + k.room("r")}));
}

// get_user_rooms removes the rooms that do not list the user, then checks them once more: a
// join whose room side ran after the first check (between the checks, here) is put back.
BOOST_AUTO_TEST_CASE(get_user_rooms_puts_back_a_room_joined_while_it_pruned) {
  for_each_layout<FakeBackend>([](BackendFixture<FakeBackend>& f, Layout const& k) {
    RoomManager rooms(f.backend, k.rooms());
    f.wait(rooms.async_join_room("r1", "u1"));
    f.ok(cmd::sadd{.key = k.user_rooms("u1"), .members = {"r2", "r3"}});  // r2 is being joined
    f.backend.clear_log();
    std::optional<std::vector<std::string>> got;
    rooms.async_get_user_rooms("u1", [&](boost::system::error_code ec, std::vector<std::string> v) {
      BOOST_TEST(!ec);
      got = std::move(v);
    });
    while (f.backend.count_in_log("SREM") == 0) step_once(f);  // r2, r3 removed
    f.ok(cmd::sadd{.key = k.members("r2"), .members = "u1"});      // r2's join lands now
    f.run_until([&] { return got.has_value(); });
    BOOST_TEST(sorted(*got) == Ids({"r1", "r2"}));
    BOOST_TEST(sorted(f.ok(cmd::smembers{k.user_rooms("u1")})) == Ids({"r1", "r2"}));
  });
}

namespace {

template <class B>
boost::asio::awaitable<void> churn(RoomManager<B>& rooms, std::string room, std::string user,
                                   bool stay, int& done) {
  co_await rooms.async_join_room(room, user);
  co_await rooms.async_get_user_rooms(user);  // prunes while other joins of the user run
  co_await rooms.async_leave_room(room, user);
  co_await rooms.async_join_room(room, user);
  if (!stay) co_await rooms.async_leave_room(room, user);
  ++done;
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(a_thousand_concurrent_joins_and_leaves_end_exact_and_consistent, B,
                              AllBackends) {
  for_each_layout<B>([](BackendFixture<B>& f, Layout const& k) {
    RoomManager rooms(f.backend, k.rooms());
    // 1 000 (room, user) pairs over 20 rooms and 50 users, one coroutine each: join, read the
    // user's rooms, leave, join, and leave again for every third pair.
    std::map<std::string, std::set<std::string>> want_room, want_user;
    int done = 0;
    for (int i = 0; i < 1000; ++i) {
      std::string room = "r" + std::to_string(i % 20), user = "u" + std::to_string(i / 20);
      bool const stay = i % 3 != 0;
      if (stay) {
        want_room[room].insert(user);
        want_user[user].insert(room);
      }
      boost::asio::co_spawn(f.ioc, churn(rooms, room, user, stay, done), boost::asio::detached);
    }
    f.run_until([&] { return done == 1000; }, 60s);

    for (int r = 0; r < 20; ++r) {
      std::string const room = "r" + std::to_string(r);
      auto const users = sorted(std::get<1>(f.wait(rooms.async_get_room_users(room))));
      BOOST_TEST(users == Ids(want_room[room].begin(), want_room[room].end()));
      BOOST_TEST(*f.ok(cmd::hget{.key = k.room(room), .field = "userCount"}) ==
                 std::to_string(users.size()));
      for (auto const& u : users)  // both directions
        BOOST_TEST(f.ok(cmd::sismember{.key = k.user_rooms(u), .member = room}));
    }
    for (int u = 0; u < 50; ++u) {
      std::string const user = "u" + std::to_string(u);
      auto const mine = sorted(f.ok(cmd::smembers{k.user_rooms(user)}));
      BOOST_TEST(mine == Ids(want_user[user].begin(), want_user[user].end()));
      for (auto const& r : mine)
        BOOST_TEST(f.ok(cmd::sismember{.key = k.members(r), .member = user}));
      BOOST_TEST(sorted(std::get<1>(f.wait(rooms.async_get_user_rooms(user)))) == mine);
    }
    // Every leave ended a session: 1 000 + the 334 second leaves.
    std::int64_t sessions = 0;
    for (int r = 0; r < 20; ++r)
      sessions += std::stoll(f.ok(cmd::hget{.key = k.stats("r" + std::to_string(r)),
                                            .field = "sessions"})
                                 .value_or("0"));
    BOOST_TEST(sessions == 1334);
  });
}

BOOST_AUTO_TEST_SUITE_END()
