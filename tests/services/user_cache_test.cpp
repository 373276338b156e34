// UserCache on MemoryBackend, FakeBackend, RedisBackend and ClusterBackend: seed 001's key
// layout (user:profile:<id> hashes with its six fields, TTL 7 days); batch reads in order with
// missing, duplicated and empty ids; the versioned write (a stale updatedAt ignored, equal and
// newer written) and the stream's merges and versioned deletes; total_cached from the index,
// exact under expiry (FakeBackend's clock); cache-aside with one flight per id for single and
// batch loads, the loader getting only the missing ids; bad input.
//
// Every case runs on each backend in its default layout, and on the in-process backends again
// in the clustered layout with MemoryConfig::cluster_checks. The in-process backends run the
// scripts' C++ twins, the servers the Lua: the same assertions are the parity test.
#include "support/backends.hpp"
#include "support/user_profiles.hpp"
#include "support/layout_modes.hpp"

#include <rediskit/services/user_cache.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using boost::system::error_code;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
using rediskit::test::for_each_mode;
using rediskit::test::Mode;
using rediskit::test::mode_fixture;
using rediskit::test::with_mode_layout;
namespace asio = boost::asio;

namespace {

using rediskit::test::profile;

template <class B>
struct Users {
  explicit Users(Mode mode, UserCacheOptions o = {})
      : f(mode_fixture<B>(mode)), c(f.backend, with_mode_layout(mode, std::move(o))) {}

  template <class Op>
  auto ok(Op&& op) {
    return f.value(std::forward<Op>(op));
  }

  BackendFixture<B> f;
  UserCache<B> c;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(user_cache)

BOOST_AUTO_TEST_CASE_TEMPLATE(set_writes_seed_001s_hash_and_get_reads_it, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Users<B> u(mode);
    auto const p = profile("42", 1736862000000);
    BOOST_TEST((u.ok(u.c.async_set(p)) == SetOutcome::written));
    auto fields = u.f.ok(cmd::hgetall{.key = "user:profile:42"});
    std::map<std::string, std::string> m(fields.begin(), fields.end());
    std::map<std::string, std::string> const want{
        {"fullName", "Jean Dupont"}, {"avatar", "https://cdn/a.jpg"}, {"matricule", "MAT001"},
        {"ministere", "MINFOP"},     {"sexe", "M"},                   {"updatedAt", "1736862000000"}};
    BOOST_TEST((m == want));
    auto const ttl = u.f.ok(cmd::pttl{"user:profile:42"});
    BOOST_TEST(ttl > 604'700'000);                       // 7 days ...
    BOOST_TEST(ttl <= 604'800'000 + 60'480'000);          // ... plus at most 10 % of jitter
    auto got = u.ok(u.c.async_get("42"));
    BOOST_TEST_REQUIRE(got.has_value());
    BOOST_TEST((*got == p));
    BOOST_TEST(!u.ok(u.c.async_get("43")).has_value());
    BOOST_TEST(u.ok(u.c.async_delete("42")));
    BOOST_TEST(!u.ok(u.c.async_invalidate("42")));
    BOOST_TEST(!u.ok(u.c.async_get("42")).has_value());
    auto const s = u.c.stats();
    BOOST_TEST(s.hits == 1u);
    BOOST_TEST(s.misses == 2u);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(batch_get_keeps_order_and_reports_missing, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Users<B> u(mode);
    std::vector<UserProfile> ps;
    for (int i = 0; i < 120; i += 2) ps.push_back(profile(std::to_string(i), 1000 + i));
    BOOST_TEST(u.ok(u.c.async_set_many(ps)).size() == ps.size());
    std::vector<std::string> ids;
    for (int i = 119; i >= 0; --i) ids.push_back(std::to_string(i));
    ids.push_back("4");  // a duplicate of a present id
    ids.push_back("5");  // ... and of a missing one
    ids.push_back("");   // an empty id
    ids.push_back("4");  // a third time
    ids.push_back("");   // empty again: reported once
    auto b = u.ok(u.c.async_batch_get(ids));
    BOOST_TEST_REQUIRE(b.profiles.size() == ids.size());
    std::size_t found = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      bool const even = !ids[i].empty() && std::stoi(ids[i]) % 2 == 0;
      BOOST_TEST(b.profiles[i].has_value() == even, ids[i]);
      if (b.profiles[i]) {
        ++found;
        BOOST_TEST(b.profiles[i]->id == ids[i]);
        BOOST_TEST(b.profiles[i]->updatedAt == 1000 + std::stoi(ids[i]));
      }
    }
    BOOST_TEST(found == 62u);
    BOOST_TEST_REQUIRE(b.missing.size() == 61u);  // 60 odd ids once each, and ""
    BOOST_TEST(b.missing.front() == "119");
    BOOST_TEST(b.missing.back() == "");
    auto none = u.ok(u.c.async_batch_get(std::vector<std::string>{}));
    BOOST_TEST(none.profiles.empty());
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(an_older_updated_at_never_overwrites_a_newer_profile, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Users<B> u(mode);
    BOOST_TEST((u.ok(u.c.async_set(profile("7", 2000, "Newer"))) == SetOutcome::written));
    BOOST_TEST((u.ok(u.c.async_set(profile("7", 1999, "Older"))) == SetOutcome::stale));
    BOOST_TEST(u.ok(u.c.async_get("7"))->fullName == "Newer");
    BOOST_TEST((u.ok(u.c.async_set(profile("7", 2000, "Same"))) == SetOutcome::written));
    BOOST_TEST((u.ok(u.c.async_set(profile("7", 2001, "Next"))) == SetOutcome::written));
    BOOST_TEST(u.ok(u.c.async_get("7"))->fullName == "Next");
    // The stream's merges: fields merged, version checked, others kept.
    std::vector<std::pair<std::string, std::string>> late{{"fullName", "Late"}};
    BOOST_TEST((u.ok(u.c.async_apply(ProfileUpdate("7", late, 1500))) == SetOutcome::stale));
    std::vector<std::pair<std::string, std::string>> fresh{{"avatar", "new.jpg"}};
    BOOST_TEST((u.ok(u.c.async_apply(ProfileUpdate("7", fresh, 3000))) == SetOutcome::written));
    auto p = u.ok(u.c.async_get("7"));
    BOOST_TEST_REQUIRE(p.has_value());
    BOOST_TEST(p->fullName == "Next");
    BOOST_TEST(p->avatar == "new.jpg");
    BOOST_TEST(p->ministere == "MINFOP");
    BOOST_TEST(p->updatedAt == 3000);
    // A merge into nothing creates nothing (unless asked); a versioned delete honours versions.
    BOOST_TEST((u.ok(u.c.async_apply(ProfileUpdate("8", fresh, 3000))) == SetOutcome::absent));
    BOOST_TEST(!u.ok(u.c.async_get("8")).has_value());
    BOOST_TEST((u.ok(u.c.async_apply(ProfileUpdate("7", {}, 2999, true))) == SetOutcome::stale));
    BOOST_TEST(u.ok(u.c.async_get("7")).has_value());
    BOOST_TEST((u.ok(u.c.async_apply(ProfileUpdate("7", {}, 3001, true))) == SetOutcome::written));
    BOOST_TEST(!u.ok(u.c.async_get("7")).has_value());
    BOOST_TEST(u.c.stats().stale_writes == 3u);
    // A hash another client wrote without the version field (a Node writer's) exists: a merge
    // goes into it, alone or in a batch.
    u.f.exec(cmd::hset{.key = "user:profile:9", .fields = FieldValue{"fullName", "Node"}});
    u.f.exec(cmd::hset{.key = "user:profile:10", .fields = FieldValue{"fullName", "Node"}});
    BOOST_TEST((u.ok(u.c.async_apply(ProfileUpdate("9", fresh, 3000))) == SetOutcome::written));
    std::vector<ProfileUpdate> both{ProfileUpdate("10", fresh, 3000),
                                    ProfileUpdate("11", fresh, 3000)};
    auto many = u.ok(u.c.async_apply_many(std::move(both)));
    BOOST_TEST_REQUIRE(many.size() == 2u);
    BOOST_TEST((many[0] == SetOutcome::written));
    BOOST_TEST((many[1] == SetOutcome::absent));
    for (std::string id : {"9", "10"}) {
      auto q = u.ok(u.c.async_get(id));
      BOOST_TEST_REQUIRE(q.has_value());
      BOOST_TEST(q->fullName == "Node");
      BOOST_TEST(q->avatar == "new.jpg");
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stats_count_cached_profiles_without_a_scan, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Users<B> u(mode);
    for (int i = 0; i < 5; ++i) u.ok(u.c.async_set(profile("u" + std::to_string(i), 10)));
    u.ok(u.c.async_set(profile("u0", 11)));  // rewritten: still one
    u.ok(u.c.async_delete("u4"));
    (void)u.ok(u.c.async_get("u1"));
    (void)u.ok(u.c.async_get("nobody"));
    auto s = u.ok(u.c.async_get_stats());
    BOOST_TEST(s.total_cached == 4);
    BOOST_TEST(s.ttl == 604800);
    BOOST_TEST(s.ttl_hours == 168);
    BOOST_TEST(s.hits == 1u);
    BOOST_TEST(s.misses == 1u);
    if constexpr (BackendFixture<B>::is_fake) {
      // Expiry: the hashes and their index entries go together (the manual clock).
      u.f.advance(std::chrono::hours(24 * 8));
      BOOST_TEST(u.ok(u.c.async_get_stats()).total_cached == 0);
      BOOST_TEST(!u.ok(u.c.async_get("u1")).has_value());
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_batch_counts_each_id_by_its_last_write, B, AllBackends) {
  // One bulk write (one script call in the plain layout, its index entries added together at
  // its end): an id written then deleted in it is not counted; deleted then written, it is.
  for_each_mode<B>([](Mode mode) {
    Users<B> u(mode);
    u.ok(u.c.async_set(profile("d", 10)));
    std::vector<ProfileUpdate> batch;
    batch.emplace_back("w", std::vector<std::pair<std::string, std::string>>{{"fullName", "W"}},
                       1000, false, true);
    batch.emplace_back("w", std::vector<std::pair<std::string, std::string>>{}, 1001, true);
    batch.emplace_back("d", std::vector<std::pair<std::string, std::string>>{}, 1000, true);
    batch.emplace_back("d", std::vector<std::pair<std::string, std::string>>{{"fullName", "D"}},
                       1001, false, true);
    batch.emplace_back("k", std::vector<std::pair<std::string, std::string>>{{"fullName", "K"}},
                       1000, false, true);
    auto const out = u.ok(u.c.async_apply_many(batch));
    BOOST_TEST_REQUIRE(out.size() == 5u);
    for (auto o : out) BOOST_TEST((o == SetOutcome::written));
    BOOST_TEST(!u.ok(u.c.async_get("w")).has_value());
    BOOST_TEST(u.ok(u.c.async_get("d"))->fullName == "D");
    BOOST_TEST(u.ok(u.c.async_get("k"))->fullName == "K");
    BOOST_TEST(u.ok(u.c.async_get_stats()).total_cached == 2);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(get_or_load_loads_once_per_id_for_concurrent_callers, B,
                              AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Users<B> u(mode);
    int calls = 0;
    auto loader = [&](std::string const& id) -> asio::awaitable<UserProfile> {
      ++calls;
      asio::steady_timer t(co_await asio::this_coro::executor, 100ms);
      co_await t.async_wait(asio::use_awaitable);
      co_return profile(id, 5);
    };
    std::vector<std::optional<UserProfile>> got(3);
    int done = 0;
    for (int i = 0; i < 3; ++i)
      u.c.async_get_or_load("9", loader, [&, i](error_code ec, std::optional<UserProfile> p) {
        BOOST_TEST(!ec);
        got[i] = std::move(p);
        ++done;
      });
    u.f.run_until([&] { return done == 3; });
    BOOST_TEST(calls == 1);
    for (auto const& g : got) {
      BOOST_TEST_REQUIRE(g.has_value());
      BOOST_TEST(g->id == "9");
    }
    BOOST_TEST(u.c.stats().coalesced >= 1u);
    // Now cached: no more loads.
    BOOST_TEST(u.ok(u.c.async_get_or_load("9", loader)).has_value());
    BOOST_TEST(calls == 1);
    // A plain loader returning nullopt caches nothing.
    auto nothing = [](std::string const&) { return std::optional<UserProfile>(); };
    BOOST_TEST(!u.ok(u.c.async_get_or_load("10", nothing)).has_value());
    BOOST_TEST(!u.ok(u.c.async_get("10")).has_value());
    // A loader that throws: load_failed.
    auto thrower = [](std::string const&) -> UserProfile { throw std::runtime_error("down"); };
    auto [ec, r] = u.f.wait(u.c.async_get_or_load("11", thrower));
    BOOST_TEST(ec == make_error_code(Error::load_failed));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(batch_get_or_load_asks_the_loader_for_missing_ids_only, B,
                              AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Users<B> u(mode);
    u.ok(u.c.async_set(profile("a", 1)));
    std::vector<std::vector<std::string>> asked;
    auto loader = [&](std::vector<std::string> ids) -> asio::awaitable<std::vector<UserProfile>> {
      asked.push_back(ids);
      asio::steady_timer t(co_await asio::this_coro::executor, 100ms);
      co_await t.async_wait(asio::use_awaitable);
      std::vector<UserProfile> out;
      for (auto const& id : ids)
        if (id != "ghost") out.push_back(profile(id, 2));
      co_return out;
    };
    std::vector<std::string> first{"a", "b", "c", "b", "ghost"};
    std::vector<std::string> second{"c", "d"};
    std::optional<UserBatch<UserProfile>> r1, r2;
    u.c.async_batch_get_or_load(first, loader, [&](error_code ec, UserBatch<UserProfile> b) {
      BOOST_TEST(!ec);
      r1 = std::move(b);
    });
    u.c.async_batch_get_or_load(second, loader, [&](error_code ec, UserBatch<UserProfile> b) {
      BOOST_TEST(!ec);
      r2 = std::move(b);
    });
    u.f.run_until([&] { return r1 && r2; });
    // Each missing id asked for once over both calls: "c" is loaded by whichever call saw it
    // missing first (on a cluster the two reads may complete in either order), the other joins
    // that flight; "a" was cached.
    std::multiset<std::string> all;
    for (auto const& call : asked) all.insert(call.begin(), call.end());
    BOOST_TEST((all == std::multiset<std::string>{"b", "c", "d", "ghost"}));
    BOOST_TEST(asked.size() == 2u);
    BOOST_TEST(u.c.stats().coalesced >= 1u);
    BOOST_TEST_REQUIRE(r1->profiles.size() == 5u);
    BOOST_TEST(r1->profiles[0]->updatedAt == 1);
    BOOST_TEST(r1->profiles[1]->id == "b");
    BOOST_TEST(r1->profiles[3]->id == "b");
    BOOST_TEST(!r1->profiles[4].has_value());
    BOOST_TEST((r1->missing == std::vector<std::string>{"ghost"}));
    BOOST_TEST(r2->profiles[0]->id == "c");
    BOOST_TEST(r2->profiles[1]->id == "d");
    BOOST_TEST(r2->missing.empty());
    BOOST_TEST(u.ok(u.c.async_get("d")).has_value());  // written back
    BOOST_TEST(u.ok(u.c.async_get_stats()).total_cached == 4);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_is_invalid_argument_and_writes_nothing, B, AllBackends) {
  Users<B> u(Mode::native);
  error_code const invalid = make_error_code(Error::invalid_argument);
  BOOST_TEST(std::get<0>(u.f.wait(u.c.async_set(profile("", 1)))) == invalid);
  BOOST_TEST(std::get<0>(u.f.wait(u.c.async_get(""))) == invalid);
  BOOST_TEST(std::get<0>(u.f.wait(u.c.async_delete(""))) == invalid);
  auto none = [](std::string const&) { return std::optional<UserProfile>(); };
  BOOST_TEST(std::get<0>(u.f.wait(u.c.async_get_or_load("", none))) == invalid);
  BOOST_TEST(u.f.ok(cmd::dbsize{}) == 0);
  // Nothing completes inside the initiating call.
  bool called = false;
  u.c.async_get("", [&](error_code, std::optional<UserProfile>) { called = true; });
  BOOST_TEST(!called);
  u.f.run_until([&] { return called; });
}

BOOST_AUTO_TEST_SUITE_END()
