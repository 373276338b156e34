// Conformance of string and key commands (GET, SET, INCR..., MGET, MSET, APPEND, STRLEN, DEL,
// UNLINK, EXISTS, EXPIRE, PEXPIRE, TTL, PTTL, PERSIST, TYPE, SCAN, KEYS) on every backend:
// MemoryBackend and FakeBackend must answer exactly as redis-server 7.0 does, and ClusterBackend
// as a Redis Cluster of such servers: the keys of one multi-key command share a hash tag ("{t}a").
#include "support/backends.hpp"
#include "support/cross_slot.hpp"
#include "support/differential.hpp"

#include <rediskit/commands.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace rediskit;
using namespace std::chrono_literals;
using namespace std::string_literals;
using rediskit::test::BackendFixture;
using std::optional;
using std::string;

// Compares with ==, and prints both sides with to_text on failure (optionals, vectors, sets).
#define SK_EQ(a, b)                                                                        \
  do {                                                                                     \
    auto const& sk_a = (a);                                                                \
    auto const& sk_b = (b);                                                                \
    BOOST_TEST((sk_a == sk_b),                                                             \
               #a " == " #b ": " << test::to_text(sk_a) << " != " << test::to_text(sk_b)); \
  } while (false)

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();

// A key of another type than string, for WRONGTYPE cases.
template <class F>
void make_set(F& f, std::string_view key) {
  BOOST_TEST(f.ok(cmd::sadd{.key = key, .members = {"m"}}) == 1);
}

// Sets every (key, value) pair with one SET each: keys of any slot, where MSET needs one slot
// (the SCAN cases want keys on every master of a cluster).
template <class F>
void set_each(F& f, std::vector<std::pair<string, string>> const& pairs) {
  std::vector<cmd::set> sets;
  for (auto const& [k, v] : pairs)
    sets.push_back({.key = k, .value = v});
  auto const done = f.ok(sets);
  BOOST_TEST(std::count(done.begin(), done.end(), true) == std::ptrdiff_t(pairs.size()));
}

// Every key of a full SCAN iteration (duplicates removed), checking that it ends.
template <class F>
std::set<string> scan_all(F& f, cmd::scan c) {
  std::set<string> out;
  c.cursor = 0;
  for (int steps = 0; steps < 10000; ++steps) {
    ScanPage page = f.ok(c);
    out.insert(page.keys.begin(), page.keys.end());
    if (page.cursor == 0) return out;
    c.cursor = page.cursor;
  }
  BOOST_FAIL("SCAN did not return to cursor 0");
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(strings_keys)

// ---- GET / SET --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(get_and_set_round_trip_binary_values, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  SK_EQ(f.ok(cmd::get{"missing"}), optional<string>());
  string const bin("a\0b\xff\r\n"s);
  string const key("k\0\x01"s);
  BOOST_TEST(f.ok(cmd::set{.key = key, .value = bin}));
  SK_EQ(f.ok(cmd::get{key}), optional<string>(bin));
  BOOST_TEST(f.ok(cmd::set{.key = "empty", .value = ""}));
  SK_EQ(f.ok(cmd::get{"empty"}), optional<string>(""));
  BOOST_TEST(f.ok(cmd::exists{{"empty"}}) == 1);  // an empty string is still a key
  BOOST_TEST(f.ok(cmd::set{.key = "", .value = "empty key"}));
  SK_EQ(f.ok(cmd::get{""}), optional<string>("empty key"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_nx_xx_refuse_without_error, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(!f.ok(cmd::set{.key = "k", .value = "1", .xx = true}));
  BOOST_TEST(f.ok(cmd::exists{{"k"}}) == 0);
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "1", .nx = true}));
  BOOST_TEST(!f.ok(cmd::set{.key = "k", .value = "2", .nx = true}));
  SK_EQ(f.ok(cmd::get{"k"}), optional<string>("1"));
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "3", .xx = true}));
  SK_EQ(f.ok(cmd::get{"k"}), optional<string>("3"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_rejects_bad_options_and_ttls, B, test::AllBackends) {
  BackendFixture<B> f;
  f.fails(cmd::set{.key = "k", .value = "v", .nx = true, .xx = true}, Error::server_error);
  f.fails(cmd::set{.key = "k", .value = "v", .ttl = 10s, .keep_ttl = true}, Error::server_error);
  f.fails(cmd::set{.key = "k", .value = "v", .ttl = 0ms}, Error::server_error);
  f.fails(cmd::set{.key = "k", .value = "v", .ttl = -5ms}, Error::server_error);
  // Added to the server's clock, this overflows.
  f.fails(cmd::set{.key = "k", .value = "v", .ttl = std::chrono::milliseconds(kMax)},
          Error::server_error);
  BOOST_TEST(f.ok(cmd::exists{{"k"}}) == 0);
  // Far, but it fits.
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "v", .ttl = 9'000'000'000'000'000'000ms}));
  BOOST_TEST(f.ok(cmd::pttl{"k"}) > 8'999'999'000'000'000'000);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_replaces_any_type_and_ttl_unless_keepttl, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  make_set(f, "s");
  BOOST_TEST(f.ok(cmd::pexpire{.key = "s", .ttl = 100s}));
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "now a string"}));
  BOOST_TEST(f.ok(cmd::type{"s"}) == "string");
  BOOST_TEST(f.ok(cmd::pttl{"s"}) == -1);

  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "1", .ttl = 100s}));
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "2", .keep_ttl = true}));
  auto const kept = f.ok(cmd::pttl{"k"});
  BOOST_TEST(kept > 90'000);
  BOOST_TEST(kept <= 100'000);
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "3", .ttl = 200s}));
  BOOST_TEST(f.ok(cmd::pttl{"k"}) > 190'000);
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "4"}));
  BOOST_TEST(f.ok(cmd::pttl{"k"}) == -1);
  // KEEPTTL on a key without TTL, and on a new key: no TTL.
  BOOST_TEST(f.ok(cmd::set{.key = "new", .value = "x", .keep_ttl = true}));
  BOOST_TEST(f.ok(cmd::pttl{"new"}) == -1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_get_returns_the_previous_value, B, test::AllBackends) {
  BackendFixture<B> f;
  SK_EQ(f.ok(cmd::set_get{.key = "k", .value = "1"}), optional<string>());
  SK_EQ(f.ok(cmd::set_get{.key = "k", .value = "2"}), optional<string>("1"));
  SK_EQ(f.ok(cmd::get{"k"}), optional<string>("2"));
  // NX on an existing key: the old value, nothing written.
  SK_EQ(f.ok(cmd::set_get{.key = "k", .value = "3", .nx = true}), optional<string>("2"));
  SK_EQ(f.ok(cmd::get{"k"}), optional<string>("2"));
  // XX on a missing key: nil, nothing written.
  SK_EQ(f.ok(cmd::set_get{.key = "m", .value = "3", .xx = true}), optional<string>());
  BOOST_TEST(f.ok(cmd::exists{{"m"}}) == 0);
  // NX on a missing key: nil, written.
  SK_EQ(f.ok(cmd::set_get{.key = "m", .value = "4", .nx = true}), optional<string>());
  SK_EQ(f.ok(cmd::get{"m"}), optional<string>("4"));
  // With a TTL, binary values.
  string const bin("\0\xfe"s);
  SK_EQ(f.ok(cmd::set_get{.key = "m", .value = bin, .ttl = 100s}), optional<string>("4"));
  BOOST_TEST(f.ok(cmd::pttl{"m"}) > 90'000);
  SK_EQ(f.ok(cmd::set_get{.key = "m", .value = "x", .keep_ttl = true}), optional<string>(bin));
  BOOST_TEST(f.ok(cmd::pttl{"m"}) > 90'000);
  SK_EQ(f.ok(cmd::set_get{.key = "m", .value = "y"}), optional<string>("x"));
  BOOST_TEST(f.ok(cmd::pttl{"m"}) == -1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_get_on_another_type_fails_and_writes_nothing, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  make_set(f, "s");
  f.fails(cmd::set_get{.key = "s", .value = "v"}, Error::wrong_type);
  f.fails(cmd::set_get{.key = "s", .value = "v", .nx = true}, Error::wrong_type);
  BOOST_TEST(f.ok(cmd::type{"s"}) == "set");
  f.fails(cmd::set_get{.key = "k", .value = "v", .nx = true, .xx = true}, Error::server_error);
  f.fails(cmd::set_get{.key = "k", .value = "v", .ttl = 0ms}, Error::server_error);
  BOOST_TEST(f.ok(cmd::exists{{"k"}}) == 0);
}

// ---- GETDEL -----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(getdel_takes_the_value_once, B, test::AllBackends) {
  BackendFixture<B> f;
  SK_EQ(f.ok(cmd::getdel{"k"}), optional<string>());
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "a\0b"s, .ttl = 100s}));
  SK_EQ(f.ok(cmd::getdel{"k"}), optional<string>("a\0b"s));
  SK_EQ(f.ok(cmd::getdel{"k"}), optional<string>());
  BOOST_TEST(f.ok(cmd::exists{{"k"}}) == 0);
  BOOST_TEST(f.ok(cmd::dbsize{}) == 0);
  make_set(f, "s");
  f.fails(cmd::getdel{"s"}, Error::wrong_type);
  BOOST_TEST(f.ok(cmd::exists{{"s"}}) == 1);
}

// ---- INCR family ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(incr_decr_count_from_zero, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::incr{"a"}) == 1);
  BOOST_TEST(f.ok(cmd::incr{"a"}) == 2);
  BOOST_TEST(f.ok(cmd::incrby{"a", 40}) == 42);
  BOOST_TEST(f.ok(cmd::incrby{"a", -50}) == -8);
  BOOST_TEST(f.ok(cmd::decr{"a"}) == -9);
  BOOST_TEST(f.ok(cmd::decrby{"a", -10}) == 1);
  SK_EQ(f.ok(cmd::get{"a"}), optional<string>("1"));
  BOOST_TEST(f.ok(cmd::decr{"b"}) == -1);
  BOOST_TEST(f.ok(cmd::decrby{"c", 5}) == -5);
  BOOST_TEST(f.ok(cmd::incrby{"d", 0}) == 0);
  SK_EQ(f.ok(cmd::get{"d"}), optional<string>("0"));
  BOOST_TEST(f.ok(cmd::incrby{"e", kMin}) == kMin);
  SK_EQ(f.ok(cmd::get{"e"}), optional<string>("-9223372036854775808"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(incr_reads_only_strict_decimal_integers, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  for (string const& v : {"0"s, "-1"s, "9223372036854775806"s, "-9223372036854775808"s, "17"s}) {
    BOOST_TEST(f.ok(cmd::set{.key = "k", .value = v}));
    auto const r = f.exec(cmd::incr{"k"});
    BOOST_TEST(!r.first, "INCR of \"" << v << "\" failed");
  }
  for (string const& v :
       {""s, "01"s, "+1"s, " 1"s, "1 "s, "-0"s, "1.0"s, "1e3"s, "abc"s, "-"s, "0x10"s, "1\0"s,
        "9223372036854775808"s, "-9223372036854775809"s, "000000000000000000001"s}) {
    BOOST_TEST(f.ok(cmd::set{.key = "k", .value = v}));
    BOOST_TEST_CONTEXT("value \"" << v << "\"") {
      f.fails(cmd::incr{"k"}, Error::server_error);
      f.fails(cmd::decrby{"k", 1}, Error::server_error);
    }
    SK_EQ(f.ok(cmd::get{"k"}), optional<string>(v));  // left as it was
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(incr_refuses_to_overflow, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "max", .value = std::to_string(kMax)}));
  f.fails(cmd::incr{"max"}, Error::server_error);
  f.fails(cmd::incrby{"max", 1}, Error::server_error);
  BOOST_TEST(f.ok(cmd::incrby{"max", -1}) == kMax - 1);
  BOOST_TEST(f.ok(cmd::set{.key = "min", .value = std::to_string(kMin)}));
  f.fails(cmd::decr{"min"}, Error::server_error);
  f.fails(cmd::incrby{"min", kMin}, Error::server_error);
  BOOST_TEST(f.ok(cmd::incrby{"min", kMax}) == -1);
  SK_EQ(f.ok(cmd::get{"min"}), optional<string>("-1"));
  // DECRBY INT64_MIN cannot be negated: refused before the key is looked at.
  f.fails(cmd::decrby{"missing", kMin}, Error::server_error);
  BOOST_TEST(f.ok(cmd::exists{{"missing"}}) == 0);
  BOOST_TEST(f.ok(cmd::decrby{"missing", kMax}) == -kMax);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(incr_keeps_the_ttl_and_checks_the_type, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "5", .ttl = 100s}));
  BOOST_TEST(f.ok(cmd::incr{"k"}) == 6);
  BOOST_TEST(f.ok(cmd::pttl{"k"}) > 90'000);
  make_set(f, "s");
  f.fails(cmd::incr{"s"}, Error::wrong_type);
  f.fails(cmd::incrby{"s", 2}, Error::wrong_type);
  f.fails(cmd::decr{"s"}, Error::wrong_type);
  f.fails(cmd::decrby{"s", 2}, Error::wrong_type);
  f.fails(cmd::incrbyfloat{"s", 2}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(incrbyfloat_stores_plain_decimal_text, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::incrbyfloat{"f", 0.1}) == 0.1);
  BOOST_TEST(f.ok(cmd::incrbyfloat{"f", 0.2}) == 0.3);  // long double, then 17 digits
  SK_EQ(f.ok(cmd::get{"f"}), optional<string>("0.3"));
  BOOST_TEST(f.ok(cmd::incrbyfloat{"f", -0.3}) == 0.0);
  SK_EQ(f.ok(cmd::get{"f"}), optional<string>("0"));
  BOOST_TEST(f.ok(cmd::incrbyfloat{"big", 1e20}) == 1e20);
  SK_EQ(f.ok(cmd::get{"big"}), optional<string>("100000000000000000000"));
  BOOST_TEST(f.ok(cmd::incrbyfloat{"tiny", 5e-324}) == 0.0);
  SK_EQ(f.ok(cmd::get{"tiny"}), optional<string>("0"));
  BOOST_TEST(f.ok(cmd::incrbyfloat{"neg", -2.5}) == -2.5);
  SK_EQ(f.ok(cmd::get{"neg"}), optional<string>("-2.5"));
  BOOST_TEST(f.ok(cmd::incrbyfloat{"neg", 2.5}) == 0.0);
  SK_EQ(f.ok(cmd::get{"neg"}), optional<string>("0"));  // never "-0"
  // What strtold reads is a float: integers, "3.0", a sign, hex, exponents, "inf" as a start.
  struct Case {
    string stored;
    double increment;
    string result;
  };
  for (Case const& c :
       {Case{"3.0", 0, "3"}, Case{"+5", 1.5, "6.5"}, Case{"0x10", 1, "17"}, Case{"1e3", 1, "1001"},
        Case{"-7", 0.25, "-6.75"}, Case{"9223372036854775807", 1, "9223372036854775808"},
        Case{".5", 0, "0.5"}, Case{"1.23456789012345678", 0, "1.23456789012345678"}}) {
    BOOST_TEST(f.ok(cmd::set{.key = "v", .value = c.stored}));
    BOOST_TEST_CONTEXT("stored \"" << c.stored << "\"") {
      f.ok(cmd::incrbyfloat{"v", c.increment});
      SK_EQ(f.ok(cmd::get{"v"}), optional<string>(c.result));
    }
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(incrbyfloat_errors, B, test::AllBackends) {
  BackendFixture<B> f;
  for (string const& v :
       {""s, " 1"s, "1 "s, "abc"s, "nan"s, "1e-5000"s, "1e5000"s, "1,5"s, "1\0"s, "--1"s}) {
    BOOST_TEST(f.ok(cmd::set{.key = "v", .value = v}));
    BOOST_TEST_CONTEXT("value \"" << v << "\"") {
      f.fails(cmd::incrbyfloat{"v", 1}, Error::server_error);
      SK_EQ(f.ok(cmd::get{"v"}), optional<string>(v));
    }
  }
  // "inf" is a float, but the sum is not finite.
  BOOST_TEST(f.ok(cmd::set{.key = "inf", .value = "inf"}));
  f.fails(cmd::incrbyfloat{"inf", 1}, Error::server_error);
  f.fails(cmd::incrbyfloat{"n", std::numeric_limits<double>::quiet_NaN()}, Error::server_error);
  f.fails(cmd::incrbyfloat{"n", std::numeric_limits<double>::infinity()}, Error::server_error);
  f.fails(cmd::incrbyfloat{"n", -std::numeric_limits<double>::infinity()}, Error::server_error);
  BOOST_TEST(f.ok(cmd::exists{{"n"}}) == 0);
  // The server adds in long double: beyond double's range the sum is stored, but the reply
  // cannot be read as a double.
  BOOST_TEST(f.ok(cmd::set{.key = "huge", .value = "1e308"}));
  f.fails(cmd::incrbyfloat{"huge", 1e308}, Error::integer_out_of_range);
  auto const stored = f.ok(cmd::get{"huge"});
  BOOST_REQUIRE(stored.has_value());
  BOOST_TEST(stored->size() == 309u);
  BOOST_TEST(stored->substr(0, 4) == "1999");  // 2e308 in long double, 17 decimals
  BOOST_TEST(f.ok(cmd::incrbyfloat{"huge", -1e308}) == 1e308);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(incrbyfloat_keeps_the_ttl, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "1", .ttl = 100s}));
  BOOST_TEST(f.ok(cmd::incrbyfloat{"k", 0.5}) == 1.5);
  BOOST_TEST(f.ok(cmd::pttl{"k"}) > 90'000);
}

// ---- MGET / MSET ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(mget_answers_nil_for_missing_and_other_types, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "{t}a", .value = "1"}));
  BOOST_TEST(f.ok(cmd::set{.key = "{t}b\0"s, .value = "\0"s}));
  make_set(f, "{t}s");
  std::vector<string> const keys = {"{t}a", "{t}missing", "{t}s", "{t}b\0"s, "{t}a"};
  std::vector<optional<string>> const want = {"1", std::nullopt, std::nullopt, "\0"s, "1"};
  SK_EQ(f.ok(cmd::mget{keys}), want);
  SK_EQ(f.ok(cmd::mget{{"missing"}}), std::vector<optional<string>>{std::nullopt});
  f.fails(cmd::mget{}, Error::server_error);
  test::expect_cross_slot(f, cmd::mget{{"a", "b"}});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(mset_sets_all_pairs_and_drops_ttls, B, test::AllBackends) {
  BackendFixture<B> f;
  make_set(f, "{t}s");
  BOOST_TEST(f.ok(cmd::set{.key = "{t}t", .value = "old", .ttl = 100s}));
  std::vector<std::pair<string, string>> const pairs = {
      {"{t}a", "1"}, {"{t}s", "was a set"}, {"{t}t", "new"}, {"{t}a", "2"}, {"{t}bin\0"s, "\0\0"s}};
  BOOST_TEST(f.ok(cmd::mset{pairs}));
  std::vector<optional<string>> const want = {"2", "was a set", "new", "\0\0"s};
  SK_EQ(f.ok(cmd::mget{{"{t}a", "{t}s", "{t}t", "{t}bin\0"s}}), want);
  BOOST_TEST(f.ok(cmd::pttl{"{t}t"}) == -1);
  BOOST_TEST(f.ok(cmd::mset{{{"one", "1"}}}));
  SK_EQ(f.ok(cmd::get{"one"}), optional<string>("1"));
  f.fails(cmd::mset{}, Error::server_error);
  // Keys in two slots: on a cluster, refused and nothing written.
  test::expect_cross_slot(f, cmd::mset{{{"a", "1"}, {"b", "2"}}});
  BOOST_TEST(f.ok(cmd::exists{"a"}) + f.ok(cmd::exists{"b"}) == 0);
}

// ---- APPEND / STRLEN --------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(append_and_strlen, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::strlen{"k"}) == 0);
  BOOST_TEST(f.ok(cmd::append{"k", "ab"}) == 2);
  BOOST_TEST(f.ok(cmd::append{"k", "\0c"s}) == 4);
  BOOST_TEST(f.ok(cmd::append{"k", ""}) == 4);
  SK_EQ(f.ok(cmd::get{"k"}), optional<string>("ab\0c"s));
  BOOST_TEST(f.ok(cmd::strlen{"k"}) == 4);
  BOOST_TEST(f.ok(cmd::append{"e", ""}) == 0);  // creates an empty string
  BOOST_TEST(f.ok(cmd::exists{{"e"}}) == 1);
  BOOST_TEST(f.ok(cmd::set{.key = "n", .value = "12"}));
  BOOST_TEST(f.ok(cmd::append{"n", "3"}) == 3);
  BOOST_TEST(f.ok(cmd::incr{"n"}) == 124);
  BOOST_TEST(f.ok(cmd::strlen{"n"}) == 3);
  BOOST_TEST(f.ok(cmd::pexpire{.key = "k", .ttl = 100s}));
  BOOST_TEST(f.ok(cmd::append{"k", "d"}) == 5);
  BOOST_TEST(f.ok(cmd::pttl{"k"}) > 90'000);
  make_set(f, "s");
  f.fails(cmd::append{"s", "x"}, Error::wrong_type);
  f.fails(cmd::strlen{"s"}, Error::wrong_type);
}

// ---- DEL / UNLINK / EXISTS --------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(del_unlink_exists_count_keys, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::mset{{{"{t}a", "1"}, {"{t}b", "2"}, {"{t}c", "3"}, {"{t}d\0"s, "4"}}}));
  make_set(f, "{t}s");
  // "{t}a" twice: counted twice, but deleted once.
  BOOST_TEST(f.ok(cmd::exists{{"{t}a", "{t}a", "{t}missing", "{t}s", "{t}d\0"s}}) == 4);
  BOOST_TEST(f.ok(cmd::del{{"{t}a", "{t}a", "{t}missing"}}) == 1);
  BOOST_TEST(f.ok(cmd::unlink{{"{t}b", "{t}b", "{t}s"}}) == 2);
  BOOST_TEST(f.ok(cmd::del{"{t}c"}) == 1);
  BOOST_TEST(f.ok(cmd::unlink{"{t}d\0"s}) == 1);
  BOOST_TEST(f.ok(cmd::del{"{t}c"}) == 0);
  BOOST_TEST(f.ok(cmd::exists{{"{t}a", "{t}b", "{t}c", "{t}s"}}) == 0);
  BOOST_TEST(f.ok(cmd::dbsize{}) == 0);
  f.fails(cmd::del{}, Error::server_error);
  f.fails(cmd::unlink{}, Error::server_error);
  f.fails(cmd::exists{}, Error::server_error);
  // Keys in two slots: refused on a cluster (and by MemoryBackend's cluster checks).
  test::expect_cross_slot(f, cmd::del{{"a", "b"}});
  test::expect_cross_slot(f, cmd::unlink{{"a", "b"}});
  test::expect_cross_slot(f, cmd::exists{{"a", "b"}});
}

// ---- EXPIRE / PEXPIRE / TTL / PTTL / PERSIST -------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(ttl_and_pttl_report_missing_and_persistent_keys, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::ttl{"missing"}) == -2);
  BOOST_TEST(f.ok(cmd::pttl{"missing"}) == -2);
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "v"}));
  BOOST_TEST(f.ok(cmd::ttl{"k"}) == -1);
  BOOST_TEST(f.ok(cmd::pttl{"k"}) == -1);
  BOOST_TEST(f.ok(cmd::expire{.key = "k", .ttl = 100s}));
  BOOST_TEST(f.ok(cmd::ttl{"k"}) == 100);
  auto const p = f.ok(cmd::pttl{"k"});
  BOOST_TEST(p > 99'000);
  BOOST_TEST(p <= 100'000);
  // TTL rounds to the nearest second.
  BOOST_TEST(f.ok(cmd::pexpire{.key = "k", .ttl = 1400ms}));
  BOOST_TEST(f.ok(cmd::ttl{"k"}) == 1);
  BOOST_TEST(f.ok(cmd::pexpire{.key = "k", .ttl = 1900ms}));
  BOOST_TEST(f.ok(cmd::ttl{"k"}) == 2);
  BOOST_TEST(f.ok(cmd::pexpire{.key = "k", .ttl = 100s}));
  make_set(f, "s");
  BOOST_TEST(f.ok(cmd::expire{.key = "s", .ttl = 50s}));  // any type
  BOOST_TEST(f.ok(cmd::ttl{"s"}) == 50);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(expire_on_missing_key_is_false, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(!f.ok(cmd::expire{.key = "missing", .ttl = 10s}));
  BOOST_TEST(!f.ok(cmd::pexpire{.key = "missing", .ttl = 10ms}));
  BOOST_TEST(!f.ok(cmd::expire{.key = "missing", .ttl = -1s}));
  BOOST_TEST(!f.ok(cmd::expire{.key = "missing", .ttl = 10s, .condition = ExpireCondition::lt}));
  BOOST_TEST(f.ok(cmd::exists{{"missing"}}) == 0);
  BOOST_TEST(!f.ok(cmd::persist{"missing"}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(expire_non_positive_ttl_deletes_the_key, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::mset{{{"{t}a", "1"}, {"{t}b", "2"}, {"{t}c", "3"}}}));
  BOOST_TEST(f.ok(cmd::expire{.key = "{t}a", .ttl = 0s}));
  BOOST_TEST(f.ok(cmd::pexpire{.key = "{t}b", .ttl = -100ms}));
  BOOST_TEST(f.ok(cmd::expire{.key = "{t}c", .ttl = std::chrono::seconds(kMin / 1000)}));
  BOOST_TEST(f.ok(cmd::exists{{"{t}a", "{t}b", "{t}c"}}) == 0);
  BOOST_TEST(f.ok(cmd::dbsize{}) == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(expire_refuses_ttls_that_overflow, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "v"}));
  for (auto const* key : {"k", "missing"}) {  // checked before the key is looked up
    BOOST_TEST_CONTEXT("key " << key) {
      f.fails(cmd::expire{.key = key, .ttl = std::chrono::seconds(kMax / 1000 + 1)},
              Error::server_error);
      f.fails(cmd::expire{.key = key, .ttl = std::chrono::seconds(kMin / 1000 - 1)},
              Error::server_error);
      f.fails(cmd::expire{.key = key, .ttl = std::chrono::seconds(kMax / 1000)},
              Error::server_error);  // fits in ms, not once added to the clock
      f.fails(cmd::pexpire{.key = key, .ttl = std::chrono::milliseconds(kMax)},
              Error::server_error);
    }
  }
  BOOST_TEST(f.ok(cmd::pttl{"k"}) == -1);
  BOOST_TEST(f.ok(cmd::pexpire{.key = "k", .ttl = 9'000'000'000'000'000'000ms}));
  BOOST_TEST(f.ok(cmd::pttl{"k"}) > 8'999'999'000'000'000'000);
  BOOST_TEST(f.ok(cmd::expire{.key = "k", .ttl = std::chrono::seconds(kMin / 1000)}));
  BOOST_TEST(f.ok(cmd::exists{{"k"}}) == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(expire_conditions, B, test::AllBackends) {
  BackendFixture<B> f;
  using C = ExpireCondition;
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "v"}));
  // No TTL: as infinite. GT never applies, LT always, XX not, NX yes.
  BOOST_TEST(!f.ok(cmd::expire{.key = "k", .ttl = 100s, .condition = C::gt}));
  BOOST_TEST(!f.ok(cmd::expire{.key = "k", .ttl = -1s, .condition = C::gt}));
  BOOST_TEST(!f.ok(cmd::expire{.key = "k", .ttl = 100s, .condition = C::xx}));
  BOOST_TEST(f.ok(cmd::ttl{"k"}) == -1);
  BOOST_TEST(f.ok(cmd::expire{.key = "k", .ttl = 100s, .condition = C::lt}));
  BOOST_TEST(f.ok(cmd::ttl{"k"}) == 100);
  BOOST_TEST(f.ok(cmd::persist{"k"}));
  BOOST_TEST(f.ok(cmd::expire{.key = "k", .ttl = 100s, .condition = C::nx}));
  // With a TTL of 100 s.
  BOOST_TEST(!f.ok(cmd::expire{.key = "k", .ttl = 200s, .condition = C::nx}));
  BOOST_TEST(f.ok(cmd::expire{.key = "k", .ttl = 200s, .condition = C::xx}));
  BOOST_TEST(f.ok(cmd::ttl{"k"}) == 200);
  BOOST_TEST(!f.ok(cmd::expire{.key = "k", .ttl = 150s, .condition = C::gt}));
  BOOST_TEST(f.ok(cmd::pexpire{.key = "k", .ttl = 300s, .condition = C::gt}));
  BOOST_TEST(f.ok(cmd::ttl{"k"}) == 300);
  BOOST_TEST(!f.ok(cmd::pexpire{.key = "k", .ttl = 400s, .condition = C::lt}));
  BOOST_TEST(f.ok(cmd::pexpire{.key = "k", .ttl = 250s, .condition = C::lt}));
  BOOST_TEST(f.ok(cmd::ttl{"k"}) == 250);
  BOOST_TEST(!f.ok(cmd::expire{.key = "k", .ttl = 0s, .condition = C::gt}));  // not later
  BOOST_TEST(f.ok(cmd::exists{{"k"}}) == 1);
  BOOST_TEST(f.ok(cmd::expire{.key = "k", .ttl = 0s, .condition = C::lt}));  // earlier: deleted
  BOOST_TEST(f.ok(cmd::exists{{"k"}}) == 0);
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "v", .ttl = 100s}));
  BOOST_TEST(f.ok(cmd::expire{.key = "k", .ttl = -5s, .condition = C::xx}));
  BOOST_TEST(f.ok(cmd::exists{{"k"}}) == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(persist_removes_the_ttl_only, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "v"}));
  BOOST_TEST(!f.ok(cmd::persist{"k"}));
  BOOST_TEST(f.ok(cmd::pexpire{.key = "k", .ttl = 100ms}));
  BOOST_TEST(f.ok(cmd::persist{"k"}));
  BOOST_TEST(!f.ok(cmd::persist{"k"}));
  BOOST_TEST(f.ok(cmd::ttl{"k"}) == -1);
  f.advance(150ms);
  SK_EQ(f.ok(cmd::get{"k"}), optional<string>("v"));
  BOOST_TEST(f.ok(cmd::dbsize{}) == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_px_expires_and_dbsize_is_exact, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "short", .value = "v", .ttl = 50ms}));
  BOOST_TEST(f.ok(cmd::set{.key = "long", .value = "v", .ttl = 100s}));
  BOOST_TEST(f.ok(cmd::set{.key = "forever", .value = "v"}));
  BOOST_TEST(f.ok(cmd::dbsize{}) == 3);
  f.advance(80ms);
  // In-process backends drop a key the moment its TTL passes; a server (a cluster's masters
  // too) may still count it in DBSIZE until something touches it.
  if constexpr (!BackendFixture<B>::on_server) BOOST_TEST(f.ok(cmd::dbsize{}) == 2);
  SK_EQ(f.ok(cmd::get{"short"}), optional<string>());
  BOOST_TEST(f.ok(cmd::exists{{"short"}}) == 0);
  BOOST_TEST(f.ok(cmd::ttl{"short"}) == -2);
  BOOST_TEST(f.ok(cmd::dbsize{}) == 2);
  SK_EQ(f.ok(cmd::get{"long"}), optional<string>("v"));
  // An expired key is gone for good: writing it again starts afresh (no TTL).
  BOOST_TEST(f.ok(cmd::incr{"short"}) == 1);
  BOOST_TEST(f.ok(cmd::pttl{"short"}) == -1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(expire_renewal_pushes_the_deadline, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "v"}));
  BOOST_TEST(f.ok(cmd::pexpire{.key = "k", .ttl = 600ms}));
  f.advance(400ms);
  BOOST_TEST(f.ok(cmd::pexpire{.key = "k", .ttl = 600ms}));  // renewed
  // Renewed: the full 600 ms again, where at most 200 would be left without the renewal. On a
  // real clock only the bounds hold (a busy machine delays the PTTL a little, never by 200 ms
  // between two consecutive commands); the manual clock is exact.
  auto const left = f.ok(cmd::pttl{"k"});
  BOOST_TEST(left > 400);
  BOOST_TEST(left <= 600);
  if constexpr (BackendFixture<B>::is_fake) BOOST_TEST(left == 600);
  f.advance(650ms);
  BOOST_TEST(f.ok(cmd::exists{{"k"}}) == 0);
  // A server (a cluster's master too) may count an expired key until something touches it.
  if constexpr (!BackendFixture<B>::on_server) BOOST_TEST(f.ok(cmd::dbsize{}) == 0);

  // In seconds: EXPIRE 1, and EXPIRE 1 again 600 ms later: the deadline moves to 1 s from then.
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "v"}));
  BOOST_TEST(f.ok(cmd::expire{.key = "s", .ttl = 1s}));
  f.advance(600ms);
  BOOST_TEST(f.ok(cmd::expire{.key = "s", .ttl = 1s}));
  auto const left_s = f.ok(cmd::pttl{"s"});
  BOOST_TEST(left_s > 700);  // about 400 without the renewal
  BOOST_TEST(left_s <= 1000);
  SK_EQ(f.ok(cmd::get{"s"}), optional<string>("v"));
  f.advance(1050ms);
  SK_EQ(f.ok(cmd::get{"s"}), optional<string>());
}

// ---- TYPE -------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(type_names_the_value_type, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::type{"missing"}) == "none");
  BOOST_TEST(f.ok(cmd::set{.key = "str", .value = ""}));
  BOOST_TEST(f.ok(cmd::type{"str"}) == "string");
  BOOST_TEST(f.ok(cmd::incr{"n"}) == 1);
  BOOST_TEST(f.ok(cmd::type{"n"}) == "string");
  make_set(f, "set");
  BOOST_TEST(f.ok(cmd::type{"set"}) == "set");
  BOOST_TEST(f.ok(cmd::hset{.key = "hash", .fields = {{"f", "v"}}}) == 1);
  BOOST_TEST(f.ok(cmd::type{"hash"}) == "hash");
  BOOST_TEST(f.ok(cmd::zadd{.key = "zset", .members = {{1.0, "m"}}}) == 1);
  BOOST_TEST(f.ok(cmd::type{"zset"}) == "zset");
}

// ---- SCAN / KEYS ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(scan_of_an_empty_database, B, test::AllBackends) {
  BackendFixture<B> f;
  ScanPage page = f.ok(cmd::scan{});
  // A cluster's SCAN walks its masters one at a time, each call on one: the cursor names the
  // next master (with an empty page) until the last is done.
  if constexpr (BackendFixture<B>::is_cluster) {
    for (int steps = 0; page.cursor != 0 && steps < 16; ++steps) {
      BOOST_TEST(page.keys.empty());
      page = f.ok(cmd::scan{.cursor = page.cursor});
    }
  }
  BOOST_TEST(page.cursor == 0u);
  BOOST_TEST(page.keys.empty());
  BOOST_TEST(f.ok(cmd::keys{"*"}).empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(scan_visits_every_key_once_iterated_to_zero, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  std::set<string> all;
  std::vector<std::pair<string, string>> pairs;
  for (int i = 0; i < 60; ++i) {
    string k = (i % 2 ? "user:" : "item:") + std::to_string(i);
    pairs.emplace_back(k, "v");
    all.insert(k);
  }
  set_each(f, pairs);
  SK_EQ(scan_all(f, cmd::scan{}), all);
  SK_EQ(scan_all(f, cmd::scan{.count = 1}), all);
  SK_EQ(scan_all(f, cmd::scan{.count = 7}), all);
  SK_EQ(scan_all(f, cmd::scan{.count = 1000}), all);

  std::set<string> users;
  for (auto const& k : all)
    if (k.starts_with("user:")) users.insert(k);
  SK_EQ(scan_all(f, cmd::scan{.match = "user:*", .count = 5}), users);
  SK_EQ(scan_all(f, cmd::scan{.match = "user:1?"}),
        (std::set<string>{"user:11", "user:13", "user:15", "user:17", "user:19"}));
  BOOST_TEST(scan_all(f, cmd::scan{.match = "nothing*"}).empty());

  auto got = f.ok(cmd::keys{"user:*"});
  SK_EQ(std::set<string>(got.begin(), got.end()), users);
  BOOST_TEST(got.size() == users.size());
  got = f.ok(cmd::keys{"*"});
  SK_EQ(std::set<string>(got.begin(), got.end()), all);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(scan_filters_by_type_case_insensitively, B,
                              test::AllBackends) {
  BackendFixture<B> f;
  set_each(f, {{"s1", "v"}, {"s2", "v"}});
  make_set(f, "set1");
  BOOST_TEST(f.ok(cmd::hset{.key = "h1", .fields = {{"f", "v"}}}) == 1);
  SK_EQ(scan_all(f, cmd::scan{.type = "string"}), (std::set<string>{"s1", "s2"}));
  SK_EQ(scan_all(f, cmd::scan{.type = "STRING"}), (std::set<string>{"s1", "s2"}));
  SK_EQ(scan_all(f, cmd::scan{.type = "Set"}), (std::set<string>{"set1"}));
  SK_EQ(scan_all(f, cmd::scan{.match = "*1", .type = "hash"}), (std::set<string>{"h1"}));
  SK_EQ(scan_all(f, cmd::scan{.match = "s*", .count = 2, .type = "set"}),
        (std::set<string>{"set1"}));
  BOOST_TEST(scan_all(f, cmd::scan{.type = "no such type"}).empty());  // no error
  BOOST_TEST(scan_all(f, cmd::scan{.type = "none"}).empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(scan_match_corner_cases, B, test::AllBackends) {
  BackendFixture<B> f;
  set_each(f, {{"", "empty key"},
               {"a*b", "1"},
               {"axb", "2"},
               {"n\0l"s, "3"},
               {"[x]", "4"},
               {"x", "5"},
               {"back\\", "6"}});
  auto const every = std::set<string>{"", "a*b", "axb", "n\0l"s, "[x]", "x", "back\\"};
  // A lone "*" matches every key, the empty one included; "**" does not match "".
  SK_EQ(scan_all(f, cmd::scan{.match = "*"}), every);
  auto no_empty = every;
  no_empty.erase("");
  SK_EQ(scan_all(f, cmd::scan{.match = "**"}), no_empty);
  SK_EQ(scan_all(f, cmd::scan{.match = "a\\*b"}), (std::set<string>{"a*b"}));
  SK_EQ(scan_all(f, cmd::scan{.match = "a*b"}), (std::set<string>{"a*b", "axb"}));
  SK_EQ(scan_all(f, cmd::scan{.match = "n?l"}), (std::set<string>{"n\0l"s}));
  SK_EQ(scan_all(f, cmd::scan{.match = "n\0l"s}), (std::set<string>{"n\0l"s}));
  SK_EQ(scan_all(f, cmd::scan{.match = "[x]"}), (std::set<string>{"x"}));
  SK_EQ(scan_all(f, cmd::scan{.match = "\\[x]"}), (std::set<string>{"[x]"}));
  SK_EQ(scan_all(f, cmd::scan{.match = "back\\"}), (std::set<string>{"back\\"}));
  SK_EQ(scan_all(f, cmd::scan{.match = "[x"}), (std::set<string>{"x"}));  // unterminated
  SK_EQ(scan_all(f, cmd::scan{.match = ""}), (std::set<string>{""}));
  auto star = f.ok(cmd::keys{"*"});
  SK_EQ(std::set<string>(star.begin(), star.end()), every);
  auto stars = f.ok(cmd::keys{"**"});
  SK_EQ(std::set<string>(stars.begin(), stars.end()), no_empty);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(scan_rejects_a_count_below_one, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "v"}));
  f.fails(cmd::scan{.count = 0}, Error::server_error);
  f.fails(cmd::scan{.count = -1}, Error::server_error);
  f.fails(cmd::scan{.count = kMin}, Error::server_error);
  SK_EQ(scan_all(f, cmd::scan{.count = kMax}), (std::set<string>{"k"}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(scan_skips_expired_keys, B, test::AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "gone", .value = "v", .ttl = 30ms}));
  BOOST_TEST(f.ok(cmd::set{.key = "here", .value = "v"}));
  f.advance(60ms);
  SK_EQ(scan_all(f, cmd::scan{}), (std::set<string>{"here"}));
  SK_EQ(f.ok(cmd::keys{"*"}), std::vector<string>{"here"});
}

BOOST_AUTO_TEST_SUITE_END()
