// ContentCache (seed 002's cache families) on MemoryBackend, FakeBackend, RedisBackend and
// ClusterBackend: the seed's key names and TTLs, and targeted invalidations that take exactly
// their key (resource 1 never takes resource 10).
#include "support/backends.hpp"

#include <rediskit/services/content_cache.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using boost::system::error_code;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;

namespace {

template <class B>
struct Content {
  BackendFixture<B> f;
  ContentCache<B> c{f.backend};

  /// Runs a deferred operation that must succeed; its value (or nothing for a set).
  template <class Op>
  auto ok(Op&& op) {
    return f.value(std::forward<Op>(op));
  }
  template <class Op>
  error_code err(Op&& op) {
    return f.error(std::forward<Op>(op));
  }
  bool exists(std::string const& key) { return f.ok(cmd::exists{key}) == 1; }
  /// The key's TTL in ms (-2: no key, -1: none).
  std::int64_t pttl(std::string const& key) { return f.ok(cmd::pttl{key}); }
  /// The key holds a TTL of `want`: exact on the manual clock, within a second elsewhere.
  void has_ttl(std::string const& key, std::chrono::milliseconds want) {
    auto const t = pttl(key);
    if constexpr (BackendFixture<B>::is_fake)
      BOOST_TEST(t == want.count(), key);
    else
      BOOST_TEST((t > want.count() - 1000 && t <= want.count()), key << ": " << t);
  }
};

std::vector<std::string> const names{"a", "b"};

}  // namespace

BOOST_AUTO_TEST_SUITE(content_cache)

BOOST_AUTO_TEST_CASE_TEMPLATE(each_family_has_the_seeds_key_and_ttl, B, AllBackends) {
  Content<B> t;
  t.ok(t.c.async_set_categories(names));
  t.ok(t.c.async_set_tags(names));
  t.ok(t.c.async_set_popular_resources(10, names));
  t.ok(t.c.async_set_profile("42", std::string("Ada")));
  t.ok(t.c.async_set_collection("7", names));
  t.ok(t.c.async_set_resource("1", std::string("r1")));
  t.has_ttl("cache:categories", 1h);
  t.has_ttl("cache:tags", 1h);
  t.has_ttl("cache:resources:popular:limit:10", 15min);
  t.has_ttl("cache:profile:42", 30min);
  t.has_ttl("cache:collection:7", 1h);
  t.has_ttl("cache:resource:1", 1h);
  // JsonCodec writes what JSON.stringify writes: the Node services read the same entries.
  BOOST_TEST(t.f.ok(cmd::get{"cache:categories"}).value_or("") == R"(["a","b"])");
  BOOST_TEST((t.ok(t.c.template async_get_categories<std::vector<std::string>>()) == names));
  BOOST_TEST((t.ok(t.c.template async_get_tags<std::vector<std::string>>()) == names));
  BOOST_TEST((t.ok(t.c.template async_get_popular_resources<std::vector<std::string>>(10)) ==
              names));
  BOOST_TEST(t.ok(t.c.template async_get_profile<std::string>("42")).value_or("") == "Ada");
  BOOST_TEST((t.ok(t.c.template async_get_collection<std::vector<std::string>>("7")) == names));
  BOOST_TEST(t.ok(t.c.template async_get_resource<std::string>("1")).value_or("") == "r1");
  if constexpr (BackendFixture<B>::is_fake) {  // they expire with their family's TTL
    t.f.advance(15min);
    BOOST_TEST(!t.exists("cache:resources:popular:limit:10"));
    BOOST_TEST(t.exists("cache:profile:42"));
    t.f.advance(15min);
    BOOST_TEST(!t.exists("cache:profile:42"));
    BOOST_TEST(t.exists("cache:categories"));
    t.f.advance(30min);
    BOOST_TEST(!t.exists("cache:categories"));
    BOOST_TEST(!t.exists("cache:resource:1"));
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(invalidations_take_exactly_their_keys, B, AllBackends) {
  Content<B> t;
  for (char const* id : {"1", "10", "11", "2"}) {
    t.ok(t.c.async_set_resource(id, std::string(id)));
    t.ok(t.c.async_set_profile(id, std::string(id)));
    t.ok(t.c.async_set_collection(id, std::string(id)));
  }
  BOOST_TEST(t.ok(t.c.async_invalidate_resource("1")));
  BOOST_TEST(!t.exists("cache:resource:1"));
  BOOST_TEST(t.exists("cache:resource:10"));
  BOOST_TEST(t.exists("cache:resource:11"));
  BOOST_TEST(t.exists("cache:profile:1"));  // another family's 1 stays
  BOOST_TEST(t.ok(t.c.async_invalidate_profile("1")));
  BOOST_TEST(!t.exists("cache:profile:1"));
  BOOST_TEST(t.exists("cache:profile:10"));
  BOOST_TEST(t.ok(t.c.async_invalidate_collection("1")));
  BOOST_TEST(!t.exists("cache:collection:1"));
  BOOST_TEST(t.exists("cache:collection:10"));
  BOOST_TEST(!t.ok(t.c.async_invalidate_resource("1")));  // nothing left to invalidate
  // An id that looks like a pattern is a name, never a wildcard.
  BOOST_TEST(!t.ok(t.c.async_invalidate_resource("*")));
  BOOST_TEST(t.exists("cache:resource:10"));

  t.ok(t.c.async_set_categories(names));
  t.ok(t.c.async_set_tags(names));
  BOOST_TEST(t.ok(t.c.async_invalidate_categories()) == 2u);
  BOOST_TEST(!t.exists("cache:categories"));
  BOOST_TEST(!t.exists("cache:tags"));
  BOOST_TEST(t.ok(t.c.async_invalidate_categories()) == 0u);

  for (std::size_t limit : {5u, 10u, 50u})
    t.ok(t.c.async_set_popular_resources(limit, names));
  BOOST_TEST(t.ok(t.c.async_invalidate_popular_resources()) == 3u);
  BOOST_TEST(!t.exists("cache:resources:popular:limit:10"));
  BOOST_TEST(t.exists("cache:resource:10"));  // other families stay
  BOOST_TEST(t.exists("cache:profile:10"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_is_refused_by_code, B, AllBackends) {
  Content<B> t;
  error_code const invalid = make_error_code(Error::invalid_argument);
  BOOST_TEST(t.err(t.c.async_set_profile("", std::string("x"))) == invalid);
  BOOST_TEST(t.err(t.c.template async_get_resource<std::string>("")) == invalid);
  BOOST_TEST(t.err(t.c.async_invalidate_collection("")) == invalid);
  BOOST_TEST(t.err(t.c.async_set_popular_resources(0, names)) == invalid);
  // Options: another prefix and TTLs.
  ContentCacheOptions o;
  o.key_prefix = "app";
  o.profile_ttl = 5min;
  ContentCache<B> other(t.f.backend, o);
  t.ok(other.async_set_profile("42", std::string("Ada")));
  t.has_ttl("app:profile:42", 5min);
}

BOOST_AUTO_TEST_SUITE_END()
