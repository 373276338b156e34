// NearCache's store without I/O: the LRU's bounds (entries, bytes), the reads in flight that
// an invalidation or a flush keeps out of the copy (the invalidate-before-reply race), and the
// reading of the server's invalidation pushes.
#include <rediskit/near_cache.hpp>

#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

using rediskit::NearCacheOptions;
using rediskit::detail::near::read_invalidation;
using rediskit::detail::near::Store;
namespace resp3 = rediskit::resp3;

namespace {

// Reads `key` through the store as a service does: begin, the reply, end with the value.
bool fill(Store<std::string>& s, std::string const& key, std::string value) {
  auto const start = s.begin(key);
  return s.end(key, start, &value, value.size());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(near_cache_store)

BOOST_AUTO_TEST_CASE(keeps_what_it_read_and_counts_hits_and_misses) {
  Store<std::string> s({.max_entries = 10});
  BOOST_TEST(s.find("a") == nullptr);
  BOOST_TEST(fill(s, "a", "A"));
  auto const* v = s.find("a");
  BOOST_TEST_REQUIRE(v != nullptr);
  BOOST_TEST(*v == "A");
  auto const st = s.stats();
  BOOST_TEST(st.hits == 1u);
  BOOST_TEST(st.misses == 1u);
  BOOST_TEST(st.entries == 1u);
  BOOST_TEST(st.bytes == 1u + 1u + Store<std::string>::overhead);
}

BOOST_AUTO_TEST_CASE(the_least_recently_used_goes_first_when_entries_run_out) {
  Store<std::string> s({.max_entries = 3});
  for (auto k : {"a", "b", "c"}) fill(s, k, k);
  BOOST_TEST(s.find("a") != nullptr);  // a is now the most recent: b goes first
  fill(s, "d", "d");
  fill(s, "e", "e");
  BOOST_TEST(s.find("b") == nullptr);
  BOOST_TEST(s.find("c") == nullptr);
  BOOST_TEST(s.find("a") != nullptr);
  BOOST_TEST(s.find("d") != nullptr);
  BOOST_TEST(s.find("e") != nullptr);
  BOOST_TEST(s.stats().evictions == 2u);
  BOOST_TEST(s.stats().entries == 3u);
}

BOOST_AUTO_TEST_CASE(bytes_are_bounded_too_and_a_value_too_big_is_never_kept) {
  std::size_t const per = 100 + 1 + Store<std::string>::overhead;  // value, key, bookkeeping
  Store<std::string> s({.max_entries = 1000, .max_bytes = 3 * per});
  for (auto k : {"a", "b", "c", "d"}) fill(s, k, std::string(100, 'x'));
  BOOST_TEST(s.stats().entries == 3u);
  BOOST_TEST(s.stats().bytes == 3 * per);
  BOOST_TEST(s.find("a") == nullptr);
  BOOST_TEST(!fill(s, "huge", std::string(4 * per, 'x')));  // over max_bytes alone
  BOOST_TEST(s.find("huge") == nullptr);
  BOOST_TEST(s.stats().entries == 3u);
}

BOOST_AUTO_TEST_CASE(an_invalidation_drops_the_key) {
  Store<std::string> s({.max_entries = 10});
  fill(s, "a", "A");
  fill(s, "b", "B");
  s.invalidate("a");
  BOOST_TEST(s.find("a") == nullptr);
  BOOST_TEST(s.find("b") != nullptr);
  BOOST_TEST(s.stats().invalidations == 1u);
  BOOST_TEST(s.stats().bytes == 1u + 1u + Store<std::string>::overhead);
}

BOOST_AUTO_TEST_CASE(an_invalidation_while_a_read_is_in_flight_keeps_its_value_out) {
  // The reply (the value before the write) comes after the invalidation of the write.
  Store<std::string> s({.max_entries = 10});
  auto const start = s.begin("a");
  s.invalidate("a");
  std::string stale = "old";
  BOOST_TEST(!s.end("a", start, &stale, 3));
  BOOST_TEST(s.find("a") == nullptr);
  BOOST_TEST(s.stats().fills_dropped == 1u);
  // The next read, begun after the invalidation, is kept.
  BOOST_TEST(fill(s, "a", "new"));
  BOOST_TEST(*s.find("a") == "new");
}

BOOST_AUTO_TEST_CASE(only_the_invalidated_key_s_reads_are_kept_out) {
  Store<std::string> s({.max_entries = 10});
  auto const a = s.begin("a");
  auto const b = s.begin("b");
  s.invalidate("a");
  std::string va = "A", vb = "B";
  BOOST_TEST(!s.end("a", a, &va, 1));
  BOOST_TEST(s.end("b", b, &vb, 1));
}

BOOST_AUTO_TEST_CASE(two_reads_of_one_key_in_flight_are_each_judged) {
  Store<std::string> s({.max_entries = 10});
  auto const first = s.begin("a");
  s.invalidate("a");
  auto const second = s.begin("a");  // sent after the write: sees it
  std::string v1 = "old", v2 = "new";
  BOOST_TEST(s.end("a", second, &v2, 3));
  BOOST_TEST(!s.end("a", first, &v1, 3));  // still marked, though the other one ended first
  BOOST_TEST(*s.find("a") == "new");
}

BOOST_AUTO_TEST_CASE(a_flush_drops_everything_and_keeps_reads_in_flight_out) {
  Store<std::string> s({.max_entries = 10});
  fill(s, "a", "A");
  auto const start = s.begin("b");
  s.flush();
  BOOST_TEST(s.empty());
  BOOST_TEST(s.stats().bytes == 0u);
  std::string v = "B";
  BOOST_TEST(!s.end("b", start, &v, 1));
  BOOST_TEST(s.stats().flushes == 1u);
  BOOST_TEST(fill(s, "b", "B"));
}

BOOST_AUTO_TEST_CASE(a_read_that_fails_leaves_no_trace) {
  Store<std::string> s({.max_entries = 10});
  auto const start = s.begin("a");
  BOOST_TEST(!s.end("a", start, nullptr, 0));
  s.invalidate("a");  // nothing in flight any more
  BOOST_TEST(fill(s, "a", "A"));
}

BOOST_AUTO_TEST_CASE(a_copy_older_than_max_age_is_not_served) {
  using Clock = Store<std::string>::Clock;
  Store<std::string> s({.max_entries = 10, .max_age = std::chrono::seconds(60)});
  auto const t0 = Clock::now();
  std::string v = "A";
  s.end("a", s.begin("a"), &v, 1, t0);
  BOOST_TEST(s.find("a", t0 + std::chrono::seconds(60)) != nullptr);  // not older yet
  BOOST_TEST(s.find("a", t0 + std::chrono::seconds(61)) == nullptr);
  BOOST_TEST(s.stats().expired == 1u);
  BOOST_TEST(s.stats().entries == 0u);
  BOOST_TEST(s.stats().bytes == 0u);
}

BOOST_AUTO_TEST_CASE(off_when_max_entries_is_zero) {
  Store<std::string> s({.max_entries = 0});
  fill(s, "a", "A");
  BOOST_TEST(s.find("a") == nullptr);
  BOOST_TEST(s.stats().entries == 0u);
}

BOOST_AUTO_TEST_CASE(options_out_of_range_are_invalid_config_whatever_the_backend) {
  struct NoTracking {} backend;
  auto make = [&](NearCacheOptions o) {
    rediskit::NearCache<std::string> c(backend, {"p:"}, o);
    return c.enabled();
  };
  auto names = [](char const* what) {
    return [what](rediskit::Exception const& e) {
      return e.code() == make_error_code(rediskit::Error::invalid_config) &&
             std::string(e.what()).find(what) != std::string::npos;
    };
  };
  BOOST_CHECK_EXCEPTION(make({.max_entries = 10, .max_bytes = 0}), rediskit::Exception,
                        names("max_bytes must be above 0"));
  BOOST_CHECK_EXCEPTION(
      make({.max_entries = 10, .max_age = std::chrono::milliseconds(-1)}), rediskit::Exception,
      names("max_age not negative"));
  // Off (max_entries 0): the rest is not used, so not checked; a backend that cannot track
  // leaves a valid configuration off.
  BOOST_TEST(!make({.max_entries = 0, .max_bytes = 0}));
  BOOST_TEST(!make({.max_entries = 10, .max_age = std::chrono::milliseconds(0)}));
}

BOOST_AUTO_TEST_CASE(invalidation_pushes_are_read_and_other_pushes_are_not) {
  using resp3::Node;
  using resp3::Type;
  std::vector<std::string> keys;
  int all = 0;
  auto on_key = [&](std::string_view k) { keys.emplace_back(k); };
  auto on_all = [&] { ++all; };
  // >2 $10 invalidate *2 $1 a $1 b
  resp3::Tree const two{{Type::push, 2, 0, {}},
                        {Type::blob_string, 1, 1, "invalidate"},
                        {Type::array, 2, 1, {}},
                        {Type::blob_string, 1, 2, "user:1"},
                        {Type::blob_string, 1, 2, "user:2"}};
  BOOST_TEST(read_invalidation(two, on_key, on_all));
  BOOST_TEST((keys == std::vector<std::string>{"user:1", "user:2"}));
  // >2 $10 invalidate _   (FLUSHDB, FLUSHALL)
  resp3::Tree const null{{Type::push, 2, 0, {}},
                         {Type::blob_string, 1, 1, "invalidate"},
                         {Type::null, 1, 1, {}}};
  BOOST_TEST(read_invalidation(null, on_key, on_all));
  BOOST_TEST(all == 1);
  resp3::Tree const message{{Type::push, 3, 0, {}},
                            {Type::blob_string, 1, 1, "message"},
                            {Type::blob_string, 1, 1, "c"},
                            {Type::blob_string, 1, 1, "p"}};
  BOOST_TEST(!read_invalidation(message, on_key, on_all));
  BOOST_TEST(keys.size() == 2u);
}

BOOST_AUTO_TEST_CASE(the_setup_request_asks_for_bcast_tracking_of_each_prefix) {
  auto const req = rediskit::detail::near::tracking_setup({"user:profile:", "x:"});
  BOOST_TEST(req.payload() ==
             "*8\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n$5\r\nBCAST\r\n"
             "$6\r\nPREFIX\r\n$13\r\nuser:profile:\r\n$6\r\nPREFIX\r\n$2\r\nx:\r\n");
}

BOOST_AUTO_TEST_SUITE_END()
