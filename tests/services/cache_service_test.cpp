// CacheService on MemoryBackend, FakeBackend, a real redis-server and a throwaway Redis Cluster:
// seed 000's operations, TTL policies, hostile ids in patterns, tags and cascades, cache-aside
// with single flight, the distributed load lock, and loads overtaken by an invalidation.
//
// Layouts: RedisBackend and FakeBackend run the plain layout (seed 000's key names, checked
// by name); ClusterBackend runs its default, the clustered layout; MemoryBackend runs the
// clustered layout under Redis Cluster's key rules (MemoryConfig::cluster_checks: a script
// that touches a key not in its KEYS, or keys of two slots in one command, fails), so that
// every case checks the cluster layout in process too, at no extra template instance.
#include "support/backends.hpp"

#include <rediskit/caches.hpp>
#include <rediskit/codec/string_codec.hpp>
#include <rediskit/services/cache_service.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
using rediskit::test::InProcessBackends;
namespace asio = boost::asio;

namespace cache_test {

struct Profile {
  std::string name;
  int age = 0;
  std::vector<std::string> rooms;
};
BOOST_DESCRIBE_STRUCT(Profile, (), (name, age, rooms))

inline bool operator==(Profile const& a, Profile const& b) {
  return a.name == b.name && a.age == b.age && a.rooms == b.rooms;
}
inline std::ostream& operator<<(std::ostream& os, Profile const& p) { return os << p.name; }

Profile alice() { return {"Alice", 30, {"general", "random"}}; }

// The same user code, whatever the backend (the compile-time check of the issue).
template <Backend B>
asio::awaitable<std::optional<Profile>> store_and_read(CacheService<B, JsonCodec>& cache) {
  co_await cache.async_set("user:1", alice(), asio::use_awaitable);
  co_return co_await cache.template async_get<Profile>("user:1", asio::use_awaitable);
}

// A codec without decode is not a Codec (a readable concept failure, not a template novel).
struct EncodeOnly {
  template <class T>
  void encode(T const&, std::string&) const {}
};
static_assert(!Codec<EncodeOnly>);
static_assert(Codec<JsonCodec> && Codec<StringCodec> && check_codec<JsonCodec>());
static_assert(TtlPolicy<FixedTtl> && TtlPolicy<NoTtl> && TtlPolicy<SlidingTtl> &&
              TtlPolicy<JitteredTtl>);
static_assert(std::is_same_v<RedisCache, CacheService<RedisBackend, JsonCodec>>);
static_assert(std::is_same_v<MemoryCache::backend_type, MemoryBackend>);
static_assert(std::is_same_v<ClusterCache::backend_type, ClusterBackend>);
// Same source, both backends.
template asio::awaitable<std::optional<Profile>> store_and_read(
    CacheService<MemoryBackend, JsonCodec>&);
template asio::awaitable<std::optional<Profile>> store_and_read(
    CacheService<RedisBackend, JsonCodec>&);

template <class B>
struct Fixture : BackendFixture<B> {
  /// MemoryBackend: the clustered layout, with cluster checks (see the top of this file).
  static constexpr bool checked = std::is_same_v<B, MemoryBackend>;
  static constexpr KeyLayout layout =
      checked || BackendFixture<B>::is_cluster ? KeyLayout::clustered : KeyLayout::plain;

  Fixture()
    requires(!checked)
      : BackendFixture<B>() {}
  Fixture()
    requires(checked)
      : BackendFixture<B>(std::in_place, MemoryConfig{.cluster_checks = true}) {}
  using BackendFixture<B>::wait;
  using BackendFixture<B>::ok;
  using BackendFixture<B>::backend;

  /// A cache's options in this fixture's layout (ClusterBackend's default left as it is).
  static CacheOptions opts(CacheOptions o = {}) {
    if (checked) o.key_layout = KeyLayout::clustered;
    return o;
  }

  /// The load lock of `key` in a cache with prefix `prefix` (the table in cache_service.hpp).
  static std::string lock_of(std::string const& prefix, std::string const& key) {
    if (layout == KeyLayout::clustered) return beside(prefix + ":" + key, prefix + "~lock:", key);
    return prefix + "~lock:" + key;
  }

  template <class Cache>
  std::vector<std::string> sorted_keys(Cache& c, GlobPattern const& p) {
    auto [ec, keys] = wait(c.async_keys(p));
    BOOST_TEST(!ec);
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  template <class F>
  void spawn(F f) {
    asio::co_spawn(this->ioc, std::move(f), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
  }
};

}  // namespace cache_test

using namespace cache_test;

BOOST_AUTO_TEST_SUITE(cache_service)

BOOST_AUTO_TEST_CASE_TEMPLATE(set_get_del_exists_under_the_prefix, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts({.key_prefix = "chat"}));
  BOOST_TEST(!std::get<0>(f.wait(cache.async_set("user:123", alice()))));
  // Seed 000's layout: keyPrefix "chat" -> chat:user:123, JSON as JSON.stringify writes it.
  BOOST_TEST(*f.ok(cmd::get{"chat:user:123"}) ==
             R"({"name":"Alice","age":30,"rooms":["general","random"]})");
  auto [ec, got] = f.wait(cache.template async_get<Profile>("user:123"));
  BOOST_TEST(!ec);
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST(*got == alice());
  BOOST_TEST(std::get<1>(f.wait(cache.async_exists("user:123"))));
  BOOST_TEST(!std::get<1>(f.wait(cache.template async_get<Profile>("user:999"))).has_value());
  BOOST_TEST(std::get<1>(f.wait(cache.async_del("user:123"))));
  BOOST_TEST(!std::get<1>(f.wait(cache.async_del("user:123"))));
  BOOST_TEST(!std::get<1>(f.wait(cache.async_exists("user:123"))));
  auto s = cache.stats();
  BOOST_TEST(s.hits == 1u);
  BOOST_TEST(s.misses == 1u);
  BOOST_TEST(s.writes == 1u);
  BOOST_TEST(s.deletes == 1u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(same_user_code_on_every_backend, B, AllBackends) {
  Fixture<B> f;
  CacheService<B, JsonCodec> cache(f.backend, f.opts());
  std::optional<Profile> got;
  f.spawn([&]() -> asio::awaitable<void> { got = co_await store_and_read(cache); });
  f.run_until([&] { return got.has_value(); });
  BOOST_TEST(*got == alice());
  BOOST_TEST(f.ok(cmd::exists{.keys = "cache:user:1"}) == 1);  // default prefix "cache"
}

BOOST_AUTO_TEST_CASE_TEMPLATE(ttl_policies, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> fixed(f.backend, f.opts({.key_prefix = "fixed"}));  // FixedTtl: seed's 3600 s
  f.wait(fixed.async_set("a", 1));
  f.wait(fixed.async_set("b", 1, 90s));
  auto pttl_a = f.ok(cmd::pttl{"fixed:a"});
  BOOST_TEST((pttl_a > 3590'000 && pttl_a <= 3600'000));
  auto pttl_b = f.ok(cmd::pttl{"fixed:b"});
  BOOST_TEST((pttl_b > 80'000 && pttl_b <= 90'000));

  CacheService<B, JsonCodec, NoTtl> forever(f.backend, f.opts({.key_prefix = "forever"}));
  f.wait(forever.async_set("a", 1));
  BOOST_TEST(f.ok(cmd::pttl{"forever:a"}) == -1);

  CacheService<B, JsonCodec, JitteredTtl> jittered(f.backend, f.opts({.key_prefix = "jit"}),
                                                     {}, JitteredTtl{100s, 0.5});
  std::vector<std::int64_t> ttls;
  for (int i = 0; i < 20; ++i) {
    std::string k = "k" + std::to_string(i);
    f.wait(jittered.async_set(k, i));
    ttls.push_back(f.ok(cmd::pttl{"jit:" + k}));
  }
  auto [lo, hi] = std::minmax_element(ttls.begin(), ttls.end());
  BOOST_TEST(*lo > 90'000);    // never (much) sooner than asked
  BOOST_TEST(*hi <= 150'000);  // at most +50 %
  BOOST_TEST(*hi - *lo > 1000);  // spread out (20 draws over 50 s)

  // Renewing: renew_ttl on demand, SlidingTtl on every read.
  BOOST_TEST(std::get<1>(f.wait(fixed.async_renew_ttl("b", 500s))));
  BOOST_TEST(f.ok(cmd::pttl{"fixed:b"}) > 490'000);
  BOOST_TEST(!std::get<1>(f.wait(fixed.async_renew_ttl("nope", 500s))));
  CacheService<B, JsonCodec, SlidingTtl> sliding(f.backend, f.opts({.key_prefix = "slide"}), {},
                                                 SlidingTtl{1500ms});
  f.wait(sliding.async_set("s", 7));
  f.advance(1000ms);
  BOOST_TEST(*std::get<1>(f.wait(sliding.template async_get<int>("s"))) == 7);  // renews
  f.advance(1000ms);  // 2 s after the write: alive only because the read renewed it
  BOOST_TEST(*std::get<1>(f.wait(sliding.template async_get<int>("s"))) == 7);
  auto multi = std::get<1>(f.wait(sliding.template async_get_multiple<int>({"s", "none"})));
  BOOST_TEST(multi.size() == 2u);
  BOOST_TEST(*multi[0] == 7);
  f.advance(1700ms);
  BOOST_TEST(!std::get<1>(f.wait(sliding.template async_get<int>("s"))).has_value());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_arguments_fail_with_invalid_argument, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  auto const bad = make_error_code(Error::invalid_argument);
  BOOST_TEST(std::get<0>(f.wait(cache.async_set("", 1))) == bad);
  BOOST_TEST(std::get<0>(f.wait(cache.async_set("k", 1, 0ms))) == bad);
  BOOST_TEST(std::get<0>(f.wait(cache.async_set("k", 1, -5s))) == bad);
  BOOST_TEST(std::get<0>(f.wait(cache.template async_get<int>(""))) == bad);
  BOOST_TEST(std::get<0>(f.wait(cache.async_del(""))) == bad);
  BOOST_TEST(std::get<0>(f.wait(cache.async_renew_ttl("k", 0s))) == bad);
  std::vector<CacheEntry<int>> entries{{"ok", 1}, {"", 2}};
  BOOST_TEST(std::get<0>(f.wait(cache.async_set_multiple(entries))) == bad);
  BOOST_TEST(std::get<0>(f.wait(cache.async_set_with_tags("k", 1, {"t", ""}))) == bad);
  BOOST_TEST(std::get<0>(f.wait(cache.async_invalidate_by_tag(""))) == bad);
  BOOST_TEST(std::get<0>(f.wait(cache.template async_get_or_load<int>("", [](auto&) { return 1; }))) == bad);
  BOOST_TEST(f.ok(cmd::dbsize{}) == 0);  // nothing was written
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_multiple_and_get_multiple_keep_order, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  std::vector<CacheEntry<Profile>> entries{{"user:1", alice()}, {"user:2", {"Bob", 40, {}}}};
  BOOST_TEST(!std::get<0>(f.wait(cache.async_set_multiple(entries, 60s))));
  std::map<std::string, int> counters{{"n:1", 1}, {"n:2", 2}};
  BOOST_TEST(!std::get<0>(f.wait(cache.async_set_multiple(counters))));
  BOOST_TEST(f.ok(cmd::pttl{"cache:user:2"}) <= 60'000);

  auto [ec, got] = f.wait(cache.template async_get_multiple<Profile>({"user:2", "nope", "user:1"}));
  BOOST_TEST(!ec);
  BOOST_REQUIRE(got.size() == 3u);
  BOOST_TEST(got[0]->name == "Bob");
  BOOST_TEST(!got[1].has_value());
  BOOST_TEST(*got[2] == alice());
  std::vector<std::string> none;
  BOOST_TEST(std::get<1>(f.wait(cache.template async_get_multiple<int>(none))).empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(values_that_do_not_decode_name_key_and_field, B,
                              AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  f.ok(cmd::set{.key = "cache:user:1", .value = R"({"name":"Al","age":"thirty"})"});
  f.ok(cmd::set{.key = "cache:user:2", .value = "{not json"});
  f.wait(cache.async_set("user:3", alice()));
  Diagnostics diag;
  auto [ec, v] = f.wait(cache.template async_get<Profile>("user:1", diag));
  BOOST_TEST(ec == make_error_code(Error::decode_failed));
  BOOST_TEST(!v.has_value());
  BOOST_TEST(diag.detail == "key 'user:1': field 'age': expected an integer, got a string");
  std::tie(ec, v) = f.wait(cache.template async_get<Profile>("user:2", diag));
  BOOST_TEST(ec == make_error_code(Error::decode_failed));
  BOOST_TEST(diag.detail.starts_with("key 'user:2': not JSON"));
  // In a batch read, the others still arrive, before and after the bad ones; the first
  // failure is the one reported.
  auto [ec2, many] = f.wait(
      cache.template async_get_multiple<Profile>({"user:3", "user:1", "user:2", "user:3"}, diag));
  BOOST_TEST(ec2 == make_error_code(Error::decode_failed));
  BOOST_TEST_REQUIRE(many.size() == 4u);
  BOOST_TEST(*many[0] == alice());
  BOOST_TEST(!many[1].has_value());
  BOOST_TEST(!many[2].has_value());
  BOOST_TEST_REQUIRE(many[3].has_value());
  BOOST_TEST(*many[3] == alice());
  BOOST_TEST(diag.detail.starts_with("key 'user:1': field 'age'"));
  BOOST_TEST(cache.stats().decode_errors == 4u);
}

// A user id of * ? [ \ ] reaches SCAN MATCH escaped: it can never list or delete other
// users' keys.
BOOST_AUTO_TEST_CASE_TEMPLATE(hostile_ids_never_reach_other_users_keys, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts({.key_prefix = "chat", .max_scan_count = 3}));
  std::vector<std::string> const ids{"*", "?", "[", "\\", "]", "[a-z]", "a", "b", "a*", "\\*"};
  for (auto const& id : ids)
    for (int s = 0; s < 2; ++s)
      f.wait(cache.async_set("session:" + id + ":" + std::to_string(s), s));
  f.ok(cmd::set{.key = "other:session:x:1", .value = "not the cache's"});

  for (auto const& id : ids) {
    auto listed = f.sorted_keys(cache, glob("session:{}:*", id));
    BOOST_TEST(listed == (std::vector<std::string>{"session:" + id + ":0", "session:" + id + ":1"}),
               "id '" << id << "'");
  }
  for (auto const& id : ids) {
    auto [ec, n] = f.wait(cache.async_delete_pattern(glob("session:{}:*", id)));
    BOOST_TEST(!ec);
    BOOST_TEST(n == 2u, "id '" << id << "' deleted " << n);
    // Everyone else's sessions are still there.
    std::size_t left = f.sorted_keys(cache, "session:*").size();
    std::size_t const done = static_cast<std::size_t>(&id - &ids[0]) + 1;
    BOOST_TEST(left == 2 * (ids.size() - done));
  }
  BOOST_TEST(f.ok(cmd::exists{.keys = "other:session:x:1"}) == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(keys_and_delete_pattern_walk_the_whole_keyspace, B,
                              AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts({.key_prefix = "c", .max_scan_count = 7}));
  for (int i = 0; i < 250; ++i) f.wait(cache.async_set("item:" + std::to_string(i), i));
  f.wait(cache.async_set("keep:1", 1));
  BOOST_TEST(f.sorted_keys(cache, "item:*").size() == 250u);
  BOOST_TEST(f.sorted_keys(cache, "*").size() == 251u);
  auto [ec, n] = f.wait(cache.async_delete_pattern("item:*"));
  BOOST_TEST(!ec);
  BOOST_TEST(n == 250u);
  BOOST_TEST(f.sorted_keys(cache, "*") == std::vector<std::string>{"keep:1"});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(flush_deletes_this_cache_only, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> a(f.backend, f.opts({.key_prefix = "a"}));
  CacheService<B> ab(f.backend, f.opts({.key_prefix = "ab"}));  // a prefix of a prefix
  for (int i = 0; i < 30; ++i) {
    f.wait(a.async_set("k" + std::to_string(i), i));
    f.wait(ab.async_set("k" + std::to_string(i), i));
  }
  f.wait(a.async_set_with_tags("t", 1, {"tag"}));
  f.ok(cmd::set{.key = "plain", .value = "x"});
  auto [ec, n] = f.wait(a.async_flush());
  BOOST_TEST(!ec);
  BOOST_TEST(n == 31u);
  BOOST_TEST(f.sorted_keys(a, "*").empty());
  BOOST_TEST(f.sorted_keys(ab, "*").size() == 30u);
  BOOST_TEST(f.ok(cmd::exists{.keys = "plain"}) == 1);
  BOOST_TEST(f.ok(cmd::exists{.keys = "a~tag:tag"}) == 0);  // bookkeeping gone too
}

BOOST_AUTO_TEST_CASE_TEMPLATE(tag_invalidation_removes_tagged_keys_and_nothing_else, B,
                              AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  f.wait(cache.async_set_with_tags("res:1", 1, {"resources", "popular"}));
  f.wait(cache.async_set_with_tags("res:2", 2, {"resources"}, 60s));
  f.wait(cache.async_set_with_tags("cat:1", 3, {"categories"}));
  f.wait(cache.async_set("plain", 4));
  BOOST_TEST(f.ok(cmd::pttl{"cache:res:2"}) <= 60'000);
  auto [ec, n] = f.wait(cache.async_invalidate_by_tag("resources"));
  BOOST_TEST(!ec);
  BOOST_TEST(n == 2u);
  BOOST_TEST(f.sorted_keys(cache, "*") == (std::vector<std::string>{"cat:1", "plain"}));
  BOOST_TEST(f.ok(cmd::exists{.keys = "cache~tag:resources"}) == 0);
  // "popular" still lists res:1, which is gone: invalidating it deletes nothing else.
  BOOST_TEST(std::get<1>(f.wait(cache.async_invalidate_by_tag("popular"))) == 0u);
  BOOST_TEST(std::get<1>(f.wait(cache.async_invalidate_by_tag("never-used"))) == 0u);
  BOOST_TEST(f.sorted_keys(cache, "*").size() == 2u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(tag_sets_do_not_outgrow_live_keys, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  for (int i = 0; i < 20; ++i)
    f.wait(cache.async_set_with_tags("short:" + std::to_string(i), i, {"t"}, 1000ms));
  BOOST_TEST(f.ok(cmd::zcard{"cache~tag:t"}) == 20);
  auto tag_ttl = f.ok(cmd::pttl{"cache~tag:t"});
  BOOST_TEST((tag_ttl > 0 && tag_ttl <= 1001));  // the tag expires with its last key
  f.advance(1200ms);
  BOOST_TEST(f.ok(cmd::exists{.keys = "cache~tag:t"}) == 0);
  for (int i = 0; i < 5; ++i)
    f.wait(cache.async_set_with_tags("short:" + std::to_string(i), i, {"u"}, 1000ms));
  f.wait(cache.async_set_with_tags("long", 1, {"u"}, 60s));
  f.advance(1200ms);
  f.wait(cache.async_set_with_tags("new", 1, {"u"}, 60s));  // a write prunes what expired
  BOOST_TEST(f.ok(cmd::zcard{"cache~tag:u"}) == 2);
  BOOST_TEST(f.ok(cmd::pttl{"cache~tag:u"}) > 50'000);
  f.wait(cache.async_set_with_tags("forever", 1, {"u"}));
  CacheService<B, JsonCodec, NoTtl> no_ttl(f.backend, f.opts());
  f.wait(no_ttl.async_set_with_tags("forever", 1, {"u"}));
  BOOST_TEST(f.ok(cmd::pttl{"cache~tag:u"}) == -1);  // a key without TTL keeps its tag
}

BOOST_AUTO_TEST_CASE_TEMPLATE(cascade_follows_dependents_once, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  // conv:1 <- msgs:1 <- preview:1, and a cycle back to conv:1; "other" is unrelated.
  f.wait(cache.async_set("conv:1", 1));
  f.wait(cache.async_set_with_tags("msgs:1", 2, {"conv:1"}));
  f.wait(cache.async_set_with_tags("preview:1", 3, {"msgs:1"}));
  f.wait(cache.async_set_with_tags("conv:1", 1, {"preview:1"}));
  f.wait(cache.async_set_with_tags("other", 4, {"unrelated"}));
  auto [ec, n] = f.wait(cache.async_invalidate_cascade("conv:1"));
  BOOST_TEST(!ec);
  BOOST_TEST(n == 3u);
  BOOST_TEST(f.sorted_keys(cache, "*") == std::vector<std::string>{"other"});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(fifty_concurrent_misses_call_the_loader_once, B,
                              AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  int calls = 0;
  auto loader = [&](std::string const& key) -> asio::awaitable<Profile> {
    ++calls;
    asio::steady_timer t(co_await asio::this_coro::executor, 30ms);  // a slow database
    co_await t.async_wait(asio::use_awaitable);
    co_return Profile{"loaded " + key, 1, {}};
  };
  int done = 0;
  for (int i = 0; i < 50; ++i) {
    cache.template async_get_or_load<Profile>("user:7", loader,
                                              [&](boost::system::error_code ec, Profile p) {
                                                BOOST_TEST(!ec);
                                                BOOST_TEST(p.name == "loaded user:7");
                                                ++done;
                                              });
  }
  f.run_until([&] { return done == 50; });
  BOOST_TEST(calls == 1);
  auto s = cache.stats();
  BOOST_TEST(s.loads == 1u);
  BOOST_TEST(s.coalesced == 49u);
  // Cached: the next call does not load.
  auto [ec, p] = f.wait(cache.template async_get_or_load<Profile>("user:7", loader));
  BOOST_TEST(p.name == "loaded user:7");
  BOOST_TEST(calls == 1);
  BOOST_TEST(f.ok(cmd::pttl{"cache:user:7"}) > 0);
  BOOST_TEST(f.ok(cmd::exists{.keys = f.lock_of("cache", "user:7")}) == 0);  // the lock is released
}

BOOST_AUTO_TEST_CASE_TEMPLATE(loader_forms_and_failures, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  // A plain function, with a TTL.
  auto [ec, v] = f.wait(cache.template async_get_or_load<int>("n", [](auto&) { return 42; }, 5s));
  BOOST_TEST(!ec);
  BOOST_TEST(v == 42);
  BOOST_TEST(f.ok(cmd::pttl{"cache:n"}) <= 5000);
  // Not found: nullopt, nothing cached.
  auto [ec2, none] = f.wait(cache.template async_get_or_load<int>(
      "absent", [](auto&) { return std::optional<int>(); }));
  BOOST_TEST(!ec2);
  BOOST_TEST(!none.has_value());
  BOOST_TEST(f.ok(cmd::exists{.keys = "cache:absent"}) == 0);
  // A loader that takes no key (cache-manager's wrap(key, fn)), plain and as a coroutine.
  int calls = 0;
  auto [ec4, w] = f.wait(cache.template async_get_or_load<int>("w", [&calls] {
    ++calls;
    return 7;
  }));
  BOOST_TEST(!ec4);
  BOOST_TEST(w == 7);
  BOOST_TEST(*f.ok(cmd::get{"cache:w"}) == "7");
  auto [ec5, w2] = f.wait(cache.template async_get_or_load<int>("w", [&calls] {
    ++calls;
    return 8;
  }));
  BOOST_TEST((!ec5 && w2 == 7 && calls == 1));  // cached: the loader did not run again
  auto [ec6, a] = f.wait(cache.template async_get_or_load<int>(
      "aw", []() -> asio::awaitable<std::optional<int>> { co_return 9; }));
  BOOST_TEST(!ec6);
  BOOST_TEST(a.value_or(0) == 9);
  // A loader that throws: load_failed with its message, nothing cached, waiters fail too.
  int failed = 0;
  Diagnostics diag;
  auto boom = [](std::string const&) -> asio::awaitable<int> {
    asio::steady_timer t(co_await asio::this_coro::executor, 10ms);
    co_await t.async_wait(asio::use_awaitable);
    throw std::runtime_error("database unreachable");
  };
  cache.template async_get_or_load<int>("x", boom, diag, [&](boost::system::error_code e, int) {
    BOOST_TEST(e == make_error_code(Error::load_failed));
    ++failed;
  });
  cache.template async_get_or_load<int>("x", boom, [&](boost::system::error_code e, int) {
    BOOST_TEST(e == make_error_code(Error::load_failed));
    ++failed;
  });
  f.run_until([&] { return failed == 2; });
  BOOST_TEST(diag.detail == "loader of key 'x' failed: database unreachable");
  BOOST_TEST(f.ok(cmd::exists{.keys = "cache:x"}) == 0);
  BOOST_TEST(f.ok(cmd::exists{.keys = f.lock_of("cache", "x")}) == 0);
  BOOST_TEST(cache.stats().load_errors == 1u);
  // A corrupt stored value is reloaded and overwritten.
  f.ok(cmd::set{.key = "cache:c", .value = "garbage"});
  auto [ec3, c] = f.wait(cache.template async_get_or_load<int>("c", [](auto&) { return 5; }));
  BOOST_TEST(!ec3);
  BOOST_TEST(c == 5);
  BOOST_TEST(*f.ok(cmd::get{"cache:c"}) == "5");
}

// PITFALLS: a load that started before an invalidation must not write its stale value after.
BOOST_AUTO_TEST_CASE_TEMPLATE(an_invalidated_load_is_not_written_back, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  // The key is deleted while its loader runs.
  auto [ec, v] = f.wait(cache.template async_get_or_load<int>(
      "k", [&](std::string const& key) -> asio::awaitable<int> {
        co_await cache.async_del(key, asio::use_awaitable);
        co_return 1;
      }));
  BOOST_TEST(!ec);
  BOOST_TEST(v == 1);  // the caller gets what was loaded...
  BOOST_TEST(f.ok(cmd::exists{.keys = "cache:k"}) == 0);  // ...but it is not cached
  // Same with bulk invalidations that cover the key: a pattern, a tag, a cascade, a flush.
  auto bulk = [&](auto invalidate, bool covers) {
    auto [e, r] = f.wait(cache.template async_get_or_load<int>(
        "j", [&](std::string const&) -> asio::awaitable<int> {
          co_await invalidate();
          co_return 2;
        }));
    BOOST_TEST(!e);
    BOOST_TEST(r == 2);
    BOOST_TEST(f.ok(cmd::exists{.keys = "cache:j"}) == (covers ? 0 : 1));
    f.wait(cache.async_del("j"));
  };
  f.wait(cache.async_set_with_tags("j", 0, {"t"}));  // the tag still lists j once it is gone
  f.wait(cache.async_del("j"));
  bulk([&] { return cache.async_delete_pattern("j*", asio::use_awaitable); }, true);
  bulk([&] { return cache.async_invalidate_by_tag("t", asio::use_awaitable); }, true);
  bulk([&] { return cache.async_invalidate_cascade("j", asio::use_awaitable); }, true);
  bulk([&] { return cache.async_flush(asio::use_awaitable); }, true);
  BOOST_TEST(cache.stats().stale_loads == 5u);
  // One that does not cover the key leaves its load alone (the invalidation deletes the locks
  // of the keys it covers, nothing else).
  bulk([&] { return cache.async_delete_pattern("nothing:*", asio::use_awaitable); }, false);
  bulk([&] { return cache.async_invalidate_by_tag("t", asio::use_awaitable); }, false);
  BOOST_TEST(cache.stats().stale_loads == 5u);
  // Without an invalidation it is written.
  f.wait(cache.template async_get_or_load<int>("j", [](auto&) { return 3; }));
  BOOST_TEST(*f.ok(cmd::get{"cache:j"}) == "3");
}

// Seed 000's key names in the plain layout; in the clustered one, each lock in the slot of its
// value (so one script takes both), whatever the prefix.
BOOST_AUTO_TEST_CASE_TEMPLATE(key_layouts, B, AllBackends) {
  Fixture<B> f;
  BOOST_TEST((CacheService<B>(f.backend).key_layout() ==
              (f.is_cluster ? KeyLayout::clustered : KeyLayout::plain)));
  for (std::string const prefix : {"chat", "{chat}", "a{b%"}) {
    CacheService<B> cache(f.backend, f.opts({.key_prefix = prefix}));
    BOOST_TEST((cache.key_layout() == Fixture<B>::layout));
    std::string const value = prefix + ":user:1";
    std::string lock = prefix + "~lock:user:1";
    if (cache.key_layout() == KeyLayout::clustered) {
      std::string internal = prefix;
      for (auto [from, to] : {std::pair<std::string, std::string>{"%", "%25"}, {"{", "%7B"}})
        for (auto at = internal.find(from); at != std::string::npos;
             at = internal.find(from, at + to.size()))
          internal.replace(at, from.size(), to);
      lock = beside(value, internal + "~lock:", "user:1");
      BOOST_TEST(cluster::key_slot(lock) == cluster::key_slot(value), prefix);
    }
    // The lock is there, under that name, while the loader runs.
    bool started = false, go = false, done = false;
    boost::system::error_code ec;
    auto loader = [&](std::string const&) -> asio::awaitable<int> {
      started = true;
      asio::steady_timer t(co_await asio::this_coro::executor);
      while (!go) {
        t.expires_after(2ms);
        co_await t.async_wait(asio::use_awaitable);
      }
      co_return 1;
    };
    cache.template async_get_or_load<int>("user:1", loader, [&](boost::system::error_code e, int) {
      ec = e;
      done = true;
    });
    f.run_until([&] { return started; });
    BOOST_TEST(f.ok(cmd::exists{.keys = lock}) == 1, prefix);
    go = true;
    f.run_until([&] { return done; });
    BOOST_TEST(!ec, prefix << ": " << ec.message());
    BOOST_TEST(f.ok(cmd::get{value}).value_or("") == "1", prefix);
    BOOST_TEST(f.ok(cmd::exists{.keys = lock}) == 0, prefix);
    f.wait(cache.async_set_with_tags("user:2", 2, {"t"}));
    BOOST_TEST(f.ok(cmd::exists{.keys = prefix + ":user:2"}) == 1, prefix);
    if (prefix == "chat") BOOST_TEST(f.ok(cmd::zcard{"chat~tag:t"}) == 1);
    BOOST_TEST(std::get<1>(f.wait(cache.async_flush())) == 2u, prefix);
  }
  if constexpr (Fixture<B>::checked || Fixture<B>::is_cluster) {
    // The plain layout under a cluster's rules: a load's write-back takes a value and its lock,
    // in two slots, and is refused (never run half).
    CacheService<B> plain(f.backend, {.key_layout = KeyLayout::plain});
    auto [ec, v] = f.wait(plain.template async_get_or_load<int>("k", [](auto&) { return 1; }));
    BOOST_TEST(ec == make_error_code(Error::cross_slot));
  }
}

// A failed set_with_tags does not leave its value without its tags.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_failed_set_with_tags_leaves_no_untagged_value, B,
                              AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  f.ok(cmd::set{.key = "cache~tag:broken", .value = "not a sorted set"});
  auto [ec] = f.wait(cache.async_set_with_tags("k", 1, {"fine", "broken"}));
  BOOST_TEST(ec == make_error_code(Error::wrong_type), ec.message());
  BOOST_TEST(f.ok(cmd::exists{.keys = "cache:k"}) == 0);
  // Without tags: the value alone.
  BOOST_TEST(!std::get<0>(f.wait(cache.async_set_with_tags("n", 2, {}))));
  BOOST_TEST(*f.ok(cmd::get{"cache:n"}) == "2");
}

// Two processes (two CacheService objects, each with its own single-flight state): while one
// loads, the other waits for its value instead of loading too.
BOOST_AUTO_TEST_CASE_TEMPLATE(the_load_lock_keeps_other_processes_from_loading, B,
                              AllBackends) {
  Fixture<B> f;
  CacheService<B> p1(f.backend, f.opts()), p2(f.backend, f.opts());
  int calls = 0;
  auto slow = [&](std::string const&) -> asio::awaitable<int> {
    ++calls;
    asio::steady_timer t(co_await asio::this_coro::executor, 150ms);
    co_await t.async_wait(asio::use_awaitable);
    co_return 9;
  };
  int done = 0;
  p1.template async_get_or_load<int>("hot", slow, [&](boost::system::error_code, int v) {
    BOOST_TEST(v == 9);
    ++done;
  });
  f.run_until([&] { return calls == 1; });
  p2.template async_get_or_load<int>("hot", slow, [&](boost::system::error_code ec, int v) {
    BOOST_TEST(!ec);
    BOOST_TEST(v == 9);
    ++done;
  });
  f.run_until([&] { return done == 2; });
  BOOST_TEST(calls == 1);
  BOOST_TEST(p2.stats().lock_waits == 1u);
  BOOST_TEST(p2.stats().loads == 0u);
  // With the lock off, both load.
  CacheService<B> q1(f.backend, f.opts({.load_lock = {.enabled = false}})),
      q2(f.backend, f.opts({.load_lock = {.enabled = false}}));
  done = 0;
  calls = 0;
  q1.template async_get_or_load<int>("cold", slow, [&](auto, int) { ++done; });
  q2.template async_get_or_load<int>("cold", slow, [&](auto, int) { ++done; });
  f.run_until([&] { return done == 2; });
  BOOST_TEST(calls == 2);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(status_has_seed_003s_shape, B, AllBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  f.wait(cache.async_set("a", 1));
  f.wait(cache.async_set("b", 1));
  auto [ec, s] = f.wait(cache.async_status());
  BOOST_TEST(!ec);
  BOOST_TEST(s.mode == B::name);
  BOOST_TEST(s.entries == 2);
  BOOST_TEST(s.available);
  BOOST_TEST(s.evicted_keys >= 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_lost_connection_fails_operations, B, InProcessBackends) {
  Fixture<B> f;
  CacheService<B> cache(f.backend, f.opts());
  if constexpr (Fixture<B>::is_fake) {
    f.backend.drop_connection();
    BOOST_TEST(bool(std::get<0>(f.wait(cache.async_set("k", 1)))));
    BOOST_TEST(bool(std::get<0>(f.wait(cache.template async_get<int>("k")))));
    auto [ec, v] = f.wait(cache.template async_get_or_load<int>("k", [](auto&) { return 1; }));
    BOOST_TEST(bool(ec));
    BOOST_TEST(bool(std::get<0>(f.wait(cache.async_delete_pattern("*")))));
    f.backend.restore_connection();
    BOOST_TEST(!std::get<0>(f.wait(cache.async_set("k", 1))));
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(string_codec_stores_plain_text, B, AllBackends) {
  Fixture<B> f;
  CacheService<B, StringCodec> cache(f.backend, f.opts());
  f.wait(cache.async_set("hits", 41));
  f.ok(cmd::incr{"cache:hits"});  // a number stays a number Redis can INCR
  BOOST_TEST(*std::get<1>(f.wait(cache.template async_get<long>("hits"))) == 42);
  f.wait(cache.async_set("name", std::string("Zoé")));
  BOOST_TEST(*f.ok(cmd::get{"cache:name"}) == "Zoé");
}

BOOST_AUTO_TEST_SUITE_END()
