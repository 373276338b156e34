// Conformance: hash and set commands behave the same on every backend (MemoryBackend,
// FakeBackend, a real redis-server through RedisBackend, and a Redis Cluster through
// ClusterBackend), errors included. The keys of one multi-key command (SINTER, SUNION, ...) share
// a hash tag ("{t}a"), as a cluster requires.
//
// Unordered replies (HGETALL, HKEYS, SMEMBERS, SINTER, ...) are sorted before comparing; scans
// never assume a page size (a server returns a small hash or set in one step whatever COUNT
// says), only the SCAN guarantee: every element present for the whole iteration comes back.
#include "support/backends.hpp"
#include "support/cross_slot.hpp"
#include "support/differential.hpp"

#include <rediskit/commands.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace std::string_literals;
using rediskit::Error;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
using rediskit::test::expect_cross_slot;
using rediskit::test::to_text;
namespace cmd = rediskit::cmd;

using Entries = std::vector<std::pair<std::string, std::string>>;
using Strings = std::vector<std::string>;
using OptStrings = std::vector<std::optional<std::string>>;

template <class T>
T sorted(T v) {
  std::sort(v.begin(), v.end());
  return v;
}

// Compares through the printed form: readable on failure, and works for any reply type.
#define CHECK_SAME(a, b) BOOST_TEST(to_text(a) == to_text(b))

using rediskit::test::wrong_type_message;

}  // namespace

BOOST_AUTO_TEST_SUITE(hashes)

BOOST_AUTO_TEST_CASE_TEMPLATE(hset_counts_new_fields_only, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::hset{.key = "h", .fields = {{"a", "1"}, {"b", "2"}}}) == 2);
  BOOST_TEST(f.ok(cmd::hset{.key = "h", .fields = {{"a", "10"}, {"c", "3"}}}) == 1);
  CHECK_SAME(f.ok(cmd::hget{"h", "a"}), std::optional("10"s));
  // A field given twice in one call is new once and takes its last value.
  BOOST_TEST(f.ok(cmd::hset{.key = "h", .fields = {{"d", "x"}, {"d", "y"}}}) == 1);
  CHECK_SAME(f.ok(cmd::hget{"h", "d"}), std::optional("y"s));
  BOOST_TEST(f.ok(cmd::hlen{"h"}) == 4);

  // From a container of pairs.
  std::map<std::string, std::string> const m = {{"m1", "v1"}, {"m2", "v2"}, {"a", "11"}};
  BOOST_TEST(f.ok(cmd::hset{.key = "h", .fields = m}) == 2);
  CHECK_SAME(
      sorted(f.ok(cmd::hgetall{"h"})),
      (Entries{{"a", "11"}, {"b", "2"}, {"c", "3"}, {"d", "y"}, {"m1", "v1"}, {"m2", "v2"}}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hash_fields_and_values_are_binary, B, AllBackends) {
  BackendFixture<B> f;
  std::string const field("f\0\xff\r\n", 5);
  std::string const value("\0v\0\x80", 4);
  std::string const key("h\0k", 3);
  BOOST_TEST(f.ok(cmd::hset{.key = key, .fields = {{field, value}, {"", ""}}}) == 2);
  CHECK_SAME(f.ok(cmd::hget{key, field}), std::optional(value));
  CHECK_SAME(f.ok(cmd::hget{key, ""}), std::optional(""s));
  CHECK_SAME(f.ok(cmd::hget{key, "f"}), std::optional<std::string>());
  CHECK_SAME(sorted(f.ok(cmd::hgetall{key})), sorted(Entries{{field, value}, {"", ""}}));
  CHECK_SAME(sorted(f.ok(cmd::hkeys{key})), sorted(Strings{field, ""}));
  CHECK_SAME(sorted(f.ok(cmd::hvals{key})), sorted(Strings{value, ""}));
  BOOST_TEST(f.ok(cmd::hexists{key, field}));
  BOOST_TEST(f.ok(cmd::hdel{.key = key, .fields = field}) == 1);
  BOOST_TEST(!f.ok(cmd::hexists{key, field}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hsetnx_sets_only_a_missing_field, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::hsetnx{"h", "f", "first"}));
  BOOST_TEST(!f.ok(cmd::hsetnx{"h", "f", "second"}));
  CHECK_SAME(f.ok(cmd::hget{"h", "f"}), std::optional("first"s));
  BOOST_TEST(f.ok(cmd::hsetnx{"h", "g", ""}));
  BOOST_TEST(f.ok(cmd::hlen{"h"}) == 2);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hget_hmget_on_missing_keys_and_fields, B, AllBackends) {
  BackendFixture<B> f;
  CHECK_SAME(f.ok(cmd::hget{"nokey", "f"}), std::optional<std::string>());
  CHECK_SAME(f.ok(cmd::hmget{.key = "nokey", .fields = {"a", "b"}}),
             (OptStrings{std::nullopt, std::nullopt}));
  f.ok(cmd::hset{.key = "h", .fields = {{"a", "1"}, {"c", "3"}}});
  CHECK_SAME(f.ok(cmd::hmget{.key = "h", .fields = {"c", "b", "a", "c"}}),
             (OptStrings{"3", std::nullopt, "1", "3"}));
  std::vector<std::string> const many = {"a", "zz", "c"};
  CHECK_SAME(f.ok(cmd::hmget{.key = "h", .fields = many}), (OptStrings{"1", std::nullopt, "3"}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(reads_of_a_missing_hash_are_empty, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::hgetall{"nokey"}).empty());
  BOOST_TEST(f.ok(cmd::hkeys{"nokey"}).empty());
  BOOST_TEST(f.ok(cmd::hvals{"nokey"}).empty());
  BOOST_TEST(f.ok(cmd::hlen{"nokey"}) == 0);
  BOOST_TEST(!f.ok(cmd::hexists{"nokey", "f"}));
  BOOST_TEST(f.ok(cmd::hdel{.key = "nokey", .fields = "f"}) == 0);
  auto const page = f.ok(cmd::hscan{.key = "nokey", .cursor = 0});
  BOOST_TEST(page.cursor == 0u);
  BOOST_TEST(page.entries.empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hkeys_and_hvals_list_every_field, B, AllBackends) {
  BackendFixture<B> f;
  f.ok(cmd::hset{.key = "h", .fields = {{"x", "1"}, {"y", "2"}, {"z", "2"}}});
  CHECK_SAME(sorted(f.ok(cmd::hkeys{"h"})), (Strings{"x", "y", "z"}));
  CHECK_SAME(sorted(f.ok(cmd::hvals{"h"})), (Strings{"1", "2", "2"}));
  // Of one unchanged hash, HKEYS and HVALS are in the same order.
  auto const keys = f.ok(cmd::hkeys{"h"});
  auto const vals = f.ok(cmd::hvals{"h"});
  auto const all = f.ok(cmd::hgetall{"h"});
  BOOST_REQUIRE(keys.size() == 3u);
  BOOST_REQUIRE(vals.size() == 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    BOOST_TEST(std::count(all.begin(), all.end(), std::pair(keys[i], vals[i])) == 1);
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hdel_counts_removed_fields_and_drops_an_empty_hash, B,
                              AllBackends) {
  BackendFixture<B> f;
  f.ok(cmd::hset{.key = "h", .fields = {{"a", "1"}, {"b", "2"}, {"c", "3"}}});
  BOOST_TEST(f.ok(cmd::hdel{.key = "h", .fields = {"a", "zz", "a"}}) == 1);
  BOOST_TEST(f.ok(cmd::hlen{"h"}) == 2);
  BOOST_TEST(f.ok(cmd::hdel{.key = "h", .fields = {"b", "c"}}) == 2);
  BOOST_TEST(f.ok(cmd::hlen{"h"}) == 0);
  // The key is gone: it can become a set.
  BOOST_TEST(f.ok(cmd::sadd{.key = "h", .members = "m"}) == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hincrby_adds_to_canonical_integers, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::hincrby{"h", "n", 5}) == 5);
  BOOST_TEST(f.ok(cmd::hincrby{"h", "n", -12}) == -7);
  BOOST_TEST(f.ok(cmd::hincrby{"h", "n", 0}) == -7);
  CHECK_SAME(f.ok(cmd::hget{"h", "n"}), std::optional("-7"s));

  constexpr auto max = std::numeric_limits<std::int64_t>::max();
  constexpr auto min = std::numeric_limits<std::int64_t>::min();
  BOOST_TEST(f.ok(cmd::hincrby{"h", "lo", min}) == min);
  BOOST_TEST(f.ok(cmd::hincrby{"h", "lo", max}) == -1);
  f.ok(cmd::hset{.key = "h", .fields = {{"hi", "9223372036854775806"}}});
  BOOST_TEST(f.ok(cmd::hincrby{"h", "hi", 1}) == max);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hincrby_refuses_non_integers_and_overflow, B, AllBackends) {
  BackendFixture<B> f;
  std::vector<std::string> const bad = {
      "abc", "1.5", " 1", "1 ", "007", "+1", "-0", "", "9223372036854775808", std::string("1\0", 2),
      "0x10"};
  for (std::string const& v : bad) {
    BOOST_TEST_CONTEXT("value " << to_text(v)) {
      f.ok(cmd::hset{.key = "h", .fields = {{"f", v}}});
      BOOST_TEST(error_text(f, cmd::hincrby{"h", "f", 1}) == "ERR hash value is not an integer");
      CHECK_SAME(f.ok(cmd::hget{"h", "f"}), std::optional(v));
    }
  }
  constexpr auto max = std::numeric_limits<std::int64_t>::max();
  constexpr auto min = std::numeric_limits<std::int64_t>::min();
  f.ok(cmd::hset{.key = "h", .fields = {{"big", std::to_string(max)}, {"small", "-2"}}});
  BOOST_TEST(error_text(f, cmd::hincrby{"h", "big", 1}) ==
             "ERR increment or decrement would overflow");
  BOOST_TEST(error_text(f, cmd::hincrby{"h", "small", min}) ==
             "ERR increment or decrement would overflow");
  CHECK_SAME(f.ok(cmd::hget{"h", "big"}), std::optional(std::to_string(max)));
  CHECK_SAME(f.ok(cmd::hget{"h", "small"}), std::optional("-2"s));
  f.fails(cmd::hincrby{"h", "big", max}, Error::server_error);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hincrbyfloat_adds_in_long_double_and_stores_text, B,
                              AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "x", 0.1}) == 0.1);
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "x", 0.2}) == 0.3);  // long double: exactly "0.3"
  CHECK_SAME(f.ok(cmd::hget{"h", "x"}), std::optional("0.3"s));
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "x", -0.3}) == 0.0);
  CHECK_SAME(f.ok(cmd::hget{"h", "x"}), std::optional("0"s));

  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "i", 3}) == 3.0);
  CHECK_SAME(f.ok(cmd::hget{"h", "i"}), std::optional("3"s));
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "i", -4.5}) == -1.5);
  CHECK_SAME(f.ok(cmd::hget{"h", "i"}), std::optional("-1.5"s));

  // Values the server reads as numbers: exponents, hex, '+', integers, "-0".
  f.ok(cmd::hset{.key = "h",
                 .fields = {{"e", "1.5e3"}, {"hex", "0x10"}, {"p", "+2.5"}, {"n", "-0"}}});
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "e", 0}) == 1500.0);
  CHECK_SAME(f.ok(cmd::hget{"h", "e"}), std::optional("1500"s));
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "hex", 1}) == 17.0);
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "p", 1}) == 3.5);
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "n", 0}) == 0.0);
  CHECK_SAME(f.ok(cmd::hget{"h", "n"}), std::optional("0"s));

  // Big and tiny numbers are written without exponent.
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "big", 1e20}) == 1e20);
  CHECK_SAME(f.ok(cmd::hget{"h", "big"}), std::optional("100000000000000000000"s));
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "tiny", 1e-20}) == 0.0);
  CHECK_SAME(f.ok(cmd::hget{"h", "tiny"}), std::optional("0"s));
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "frac", 1.25e-5}) == 1.25e-5);
  CHECK_SAME(f.ok(cmd::hget{"h", "frac"}), std::optional("0.0000125"s));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hincrbyfloat_refuses_non_numbers_nan_and_infinity, B,
                              AllBackends) {
  BackendFixture<B> f;
  std::vector<std::string> const bad = {
      "abc", " 1", "1 ", "", "nan", "1e5000", "1e-5000", std::string("1\0", 2), "1.5.2"};
  for (std::string const& v : bad) {
    BOOST_TEST_CONTEXT("value " << to_text(v)) {
      f.ok(cmd::hset{.key = "h", .fields = {{"f", v}}});
      BOOST_TEST(error_text(f, cmd::hincrbyfloat{"h", "f", 1}) == "ERR hash value is not a float");
      CHECK_SAME(f.ok(cmd::hget{"h", "f"}), std::optional(v));
    }
  }
  f.ok(cmd::hset{.key = "h", .fields = {{"inf", "inf"}, {"one", "1"}}});
  BOOST_TEST(error_text(f, cmd::hincrbyfloat{"h", "inf", 1}) ==
             "ERR increment would produce NaN or Infinity");
  BOOST_TEST(
      error_text(f, cmd::hincrbyfloat{"h", "one", std::numeric_limits<double>::quiet_NaN()}) ==
      "ERR value is not a valid float");
  BOOST_TEST(
      error_text(f, cmd::hincrbyfloat{"h", "one", std::numeric_limits<double>::infinity()}) ==
      "ERR value is NaN or Infinity");
  BOOST_TEST(
      error_text(f, cmd::hincrbyfloat{"h", "one", -std::numeric_limits<double>::infinity()}) ==
      "ERR value is NaN or Infinity");
  CHECK_SAME(f.ok(cmd::hget{"h", "one"}), std::optional("1"s));
  // The increment is checked before the key's type.
  f.ok(cmd::set{.key = "s", .value = "x"});
  BOOST_TEST(error_text(f, cmd::hincrbyfloat{"s", "f", std::numeric_limits<double>::infinity()}) ==
             "ERR value is NaN or Infinity");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hincrbyfloat_beyond_double_is_stored_but_its_reply_fails, B,
                              AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "f", 1.5e308}) == 1.5e308);
  // 3e308 fits a long double (the server's arithmetic) but not a double (the reply).
  f.fails(cmd::hincrbyfloat{"h", "f", 1.5e308}, Error::integer_out_of_range);
  auto const v = f.ok(cmd::hget{"h", "f"});
  BOOST_REQUIRE(v.has_value());
  BOOST_TEST(v->size() == 309u);
  BOOST_TEST(v->substr(0, 2) == "29");  // 2.9999...e308 in long double
  // Back within range: readable again.
  BOOST_TEST(f.ok(cmd::hincrbyfloat{"h", "f", -1.5e308}) > 1e308);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hash_commands_refuse_other_types, B, AllBackends) {
  BackendFixture<B> f;
  f.ok(cmd::set{.key = "s", .value = "x"});
  f.ok(cmd::sadd{.key = "set", .members = "m"});
  for (std::string_view k : {std::string_view("s"), std::string_view("set")}) {
    BOOST_TEST_CONTEXT("key " << k) {
      BOOST_TEST(error_text(f, cmd::hset{.key = k, .fields = {{"f", "v"}}}) == wrong_type_message);
      f.fails(cmd::hsetnx{k, "f", "v"}, Error::wrong_type);
      f.fails(cmd::hget{k, "f"}, Error::wrong_type);
      f.fails(cmd::hmget{.key = k, .fields = "f"}, Error::wrong_type);
      f.fails(cmd::hgetall{k}, Error::wrong_type);
      f.fails(cmd::hdel{.key = k, .fields = "f"}, Error::wrong_type);
      f.fails(cmd::hincrby{k, "f", 1}, Error::wrong_type);
      f.fails(cmd::hincrbyfloat{k, "f", 1.5}, Error::wrong_type);
      f.fails(cmd::hexists{k, "f"}, Error::wrong_type);
      f.fails(cmd::hlen{k}, Error::wrong_type);
      f.fails(cmd::hkeys{k}, Error::wrong_type);
      f.fails(cmd::hvals{k}, Error::wrong_type);
      f.fails(cmd::hscan{.key = k, .cursor = 0}, Error::wrong_type);
      // The type is checked before COUNT.
      f.fails(cmd::hscan{.key = k, .cursor = 0, .count = 0}, Error::wrong_type);
    }
  }
  CHECK_SAME(f.ok(cmd::get{"s"}), std::optional("x"s));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hash_commands_refuse_empty_lists, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(error_text(f, cmd::hset{.key = "h", .fields = {}}) ==
             "ERR wrong number of arguments for 'hset' command");
  BOOST_TEST(error_text(f, cmd::hmget{.key = "h", .fields = {}}) ==
             "ERR wrong number of arguments for 'hmget' command");
  BOOST_TEST(error_text(f, cmd::hdel{.key = "h", .fields = {}}) ==
             "ERR wrong number of arguments for 'hdel' command");
  BOOST_TEST(f.ok(cmd::hlen{"h"}) == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hscan_small_hash_to_completion_with_match, B, AllBackends) {
  BackendFixture<B> f;
  f.ok(cmd::hset{
      .key = "h",
      .fields = {
          {"user:1", "a"}, {"user:2", "b"}, {"admin:1", "c"}, {"user:3", "d"}, {"*", "star"}}});
  auto scan_all = [&](std::optional<std::string_view> match, std::int64_t count) {
    std::set<std::pair<std::string, std::string>> seen;
    std::uint64_t cursor = 0;
    int steps = 0;
    do {
      auto page = f.ok(cmd::hscan{.key = "h", .cursor = cursor, .match = match, .count = count});
      seen.insert(page.entries.begin(), page.entries.end());
      cursor = page.cursor;
    } while (cursor != 0 && ++steps < 1000);
    BOOST_TEST(cursor == 0u);
    return Entries(seen.begin(), seen.end());
  };
  CHECK_SAME(
      scan_all(std::nullopt, 1),
      (Entries{
          {"*", "star"}, {"admin:1", "c"}, {"user:1", "a"}, {"user:2", "b"}, {"user:3", "d"}}));
  CHECK_SAME(scan_all("user:*", 2), (Entries{{"user:1", "a"}, {"user:2", "b"}, {"user:3", "d"}}));
  CHECK_SAME(scan_all("\\*", 100), (Entries{{"*", "star"}}));
  CHECK_SAME(scan_all("nothing*", 10), Entries{});
  // COUNT must be positive once the key exists (a missing key answers [0, []] first).
  BOOST_TEST(error_text(f, cmd::hscan{.key = "h", .cursor = 0, .count = 0}) == "ERR syntax error");
  f.fails(cmd::hscan{.key = "h", .cursor = 0, .count = -5}, Error::server_error);
  auto const none = f.ok(cmd::hscan{.key = "nokey", .cursor = 0, .count = 0});
  BOOST_TEST(none.cursor == 0u);
  BOOST_TEST(none.entries.empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(hscan_of_1000_fields_returns_each_despite_changes, B,
                              AllBackends) {
  BackendFixture<B> f;
  std::vector<std::pair<std::string, std::string>> stable, doomed;
  for (int i = 0; i < 1000; ++i)
    stable.emplace_back("m:" + std::to_string(i), "v" + std::to_string(i));
  for (int i = 0; i < 300; ++i)
    doomed.emplace_back("d:" + std::to_string(i), "x");
  f.ok(cmd::hset{.key = "h", .fields = stable});
  f.ok(cmd::hset{.key = "h", .fields = doomed});

  // Without changes: the union is exactly the hash.
  std::map<std::string, std::string> seen;
  std::uint64_t cursor = 0;
  int steps = 0;
  do {
    auto page = f.ok(cmd::hscan{.key = "h", .cursor = cursor, .count = 25});
    for (auto& [k, v] : page.entries)
      seen[k] = v;
    cursor = page.cursor;
  } while (cursor != 0 && ++steps < 100000);
  BOOST_TEST(cursor == 0u);
  BOOST_TEST(seen.size() == 1300u);

  // With fields added and removed between steps: every field present throughout (the stable
  // ones) is returned, with its value; nothing is returned that was never in the hash.
  seen.clear();
  cursor = 0;
  steps = 0;
  int added = 0;
  std::size_t removed = 0;
  do {
    auto page = f.ok(cmd::hscan{.key = "h", .cursor = cursor, .count = 10});
    for (auto& [k, v] : page.entries)
      seen[k] = v;
    cursor = page.cursor;
    std::vector<std::pair<std::string, std::string>> fresh;
    for (int j = 0; j < 7; ++j, ++added)
      fresh.emplace_back("n:" + std::to_string(added), "new");
    f.ok(cmd::hset{.key = "h", .fields = fresh});
    std::vector<std::string> gone;
    for (int j = 0; j < 3 && removed < doomed.size(); ++j)
      gone.push_back(doomed[removed++].first);
    if (!gone.empty()) f.ok(cmd::hdel{.key = "h", .fields = gone});
  } while (cursor != 0 && ++steps < 100000);
  BOOST_TEST(cursor == 0u);
  std::size_t missing = 0;
  for (auto const& [k, v] : stable) {
    auto it = seen.find(k);
    if (it == seen.end() || it->second != v) ++missing;
  }
  BOOST_TEST(missing == 0u);
  for (auto const& [k, v] : seen) {
    bool const known = k.starts_with("m:") || k.starts_with("d:") || k.starts_with("n:");
    BOOST_TEST(known, "unexpected field " << k);
  }

  // MATCH on a large hash: the union holds exactly the matching fields.
  std::set<std::string> matched;
  cursor = 0;
  steps = 0;
  do {
    auto page = f.ok(cmd::hscan{.key = "h", .cursor = cursor, .match = "m:1*", .count = 50});
    for (auto& [k, v] : page.entries)
      matched.insert(k);
    cursor = page.cursor;
  } while (cursor != 0 && ++steps < 100000);
  BOOST_TEST(matched.size() == 111u);  // m:1, m:10..m:19, m:100..m:199
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(sets)

BOOST_AUTO_TEST_CASE_TEMPLATE(sadd_srem_count_changes, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::sadd{.key = "s", .members = {"a", "b", "a"}}) == 2);
  BOOST_TEST(f.ok(cmd::sadd{.key = "s", .members = {"b", "c"}}) == 1);
  BOOST_TEST(f.ok(cmd::scard{"s"}) == 3);
  BOOST_TEST(f.ok(cmd::srem{.key = "s", .members = {"a", "zz", "a"}}) == 1);
  BOOST_TEST(f.ok(cmd::srem{.key = "nokey", .members = "a"}) == 0);
  CHECK_SAME(sorted(f.ok(cmd::smembers{"s"})), (Strings{"b", "c"}));
  BOOST_TEST(f.ok(cmd::srem{.key = "s", .members = {"b", "c"}}) == 2);
  BOOST_TEST(f.ok(cmd::scard{"s"}) == 0);
  // The key is gone: it can become a hash.
  BOOST_TEST(f.ok(cmd::hset{.key = "s", .fields = {{"f", "v"}}}) == 1);

  std::vector<std::string> many;
  for (int i = 0; i < 50; ++i)
    many.push_back(std::to_string(i));
  BOOST_TEST(f.ok(cmd::sadd{.key = "n", .members = many}) == 50);
  BOOST_TEST(f.ok(cmd::sadd{.key = "n", .members = many}) == 0);
  BOOST_TEST(f.ok(cmd::scard{"n"}) == 50);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_members_are_binary, B, AllBackends) {
  BackendFixture<B> f;
  std::string const m1("a\0b", 3), m2("\0", 1), m3("\xff\xfe", 2);
  BOOST_TEST(f.ok(cmd::sadd{.key = "s", .members = {m1, m2, m3, "", "a"}}) == 5);
  CHECK_SAME(sorted(f.ok(cmd::smembers{"s"})), sorted(Strings{m1, m2, m3, "", "a"}));
  BOOST_TEST(f.ok(cmd::sismember{"s", m1}));
  BOOST_TEST(f.ok(cmd::sismember{"s", ""}));
  BOOST_TEST(!f.ok(cmd::sismember{"s", std::string("a\0c", 3)}));
  CHECK_SAME(f.ok(cmd::smismember{.key = "s", .members = {m2, "b", m3}}),
             (std::vector<bool>{true, false, true}));
  BOOST_TEST(f.ok(cmd::srem{.key = "s", .members = m2}) == 1);
  BOOST_TEST(!f.ok(cmd::sismember{"s", m2}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_reads_of_a_missing_key, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::smembers{"nokey"}).empty());
  BOOST_TEST(!f.ok(cmd::sismember{"nokey", "a"}));
  CHECK_SAME(f.ok(cmd::smismember{.key = "nokey", .members = {"a", "b"}}),
             (std::vector<bool>{false, false}));
  BOOST_TEST(f.ok(cmd::scard{"nokey"}) == 0);
  BOOST_TEST(f.ok(cmd::sinter{.keys = {"{t}nokey", "{t}nokey2"}}).empty());
  BOOST_TEST(f.ok(cmd::sunion{.keys = "nokey"}).empty());
  BOOST_TEST(f.ok(cmd::sdiff{.keys = "nokey"}).empty());
  BOOST_TEST(f.ok(cmd::sintercard{.keys = "nokey"}) == 0);
  auto const page = f.ok(cmd::sscan{.key = "nokey", .cursor = 0, .count = 0});
  BOOST_TEST(page.cursor == 0u);
  BOOST_TEST(page.members.empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(sinter_keeps_members_of_every_set, B, AllBackends) {
  BackendFixture<B> f;
  std::vector<std::string> big;
  for (int i = 0; i < 300; ++i)
    big.push_back("m" + std::to_string(i));
  f.ok(cmd::sadd{.key = "{t}big", .members = big});
  f.ok(cmd::sadd{.key = "{t}mid", .members = {"m1", "m2", "m3", "m250", "x"}});
  f.ok(cmd::sadd{.key = "{t}small", .members = {"m2", "m250", "x", "y"}});
  CHECK_SAME(sorted(f.ok(cmd::sinter{.keys = {"{t}big", "{t}mid", "{t}small"}})),
             (Strings{"m2", "m250"}));
  CHECK_SAME(sorted(f.ok(cmd::sinter{.keys = {"{t}small", "{t}mid"}})),
             (Strings{"m2", "m250", "x"}));
  CHECK_SAME(sorted(f.ok(cmd::sinter{.keys = "{t}small"})), (Strings{"m2", "m250", "x", "y"}));
  CHECK_SAME(sorted(f.ok(cmd::sinter{.keys = {"{t}small", "{t}small"}})),
             (Strings{"m2", "m250", "x", "y"}));
  // A missing key is an empty set.
  BOOST_TEST(f.ok(cmd::sinter{.keys = {"{t}big", "{t}nokey", "{t}small"}}).empty());
  f.ok(cmd::sadd{.key = "{t}other", .members = "zzz"});
  BOOST_TEST(f.ok(cmd::sinter{.keys = {"{t}big", "{t}other"}}).empty());
  // Keys in two slots: refused on a cluster (and by MemoryBackend's cluster checks).
  expect_cross_slot(f, cmd::sinter{.keys = {"big", "small"}});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(sintercard_counts_up_to_the_limit, B, AllBackends) {
  BackendFixture<B> f;
  std::vector<std::string> a, b;
  for (int i = 0; i < 100; ++i)
    a.push_back(std::to_string(i));
  for (int i = 50; i < 200; ++i)
    b.push_back(std::to_string(i));
  f.ok(cmd::sadd{.key = "{t}a", .members = a});
  f.ok(cmd::sadd{.key = "{t}b", .members = b});
  BOOST_TEST(f.ok(cmd::sintercard{.keys = {"{t}a", "{t}b"}}) == 50);
  BOOST_TEST(f.ok(cmd::sintercard{.keys = {"{t}a", "{t}b"}, .limit = 0}) == 50);
  BOOST_TEST(f.ok(cmd::sintercard{.keys = {"{t}a", "{t}b"}, .limit = 7}) == 7);
  BOOST_TEST(f.ok(cmd::sintercard{.keys = {"{t}a", "{t}b"}, .limit = 50}) == 50);
  BOOST_TEST(f.ok(cmd::sintercard{.keys = {"{t}a", "{t}b"}, .limit = 1000}) == 50);
  BOOST_TEST(f.ok(cmd::sintercard{.keys = "{t}a"}) == 100);
  BOOST_TEST(f.ok(cmd::sintercard{.keys = {"{t}a", "{t}b", "{t}nokey"}}) == 0);
  BOOST_TEST(error_text(f, cmd::sintercard{.keys = {"{t}a", "{t}b"}, .limit = -1}) ==
             "ERR LIMIT can't be negative");
  BOOST_TEST(error_text(f, cmd::sintercard{.keys = {}, .limit = 3}) ==
             "ERR numkeys should be greater than 0");
  BOOST_TEST(error_text(f, cmd::sintercard{}) ==
             "ERR wrong number of arguments for 'sintercard' command");
  expect_cross_slot(f, cmd::sintercard{.keys = {"a", "b"}, .limit = 1});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(sunion_and_sdiff, B, AllBackends) {
  BackendFixture<B> f;
  f.ok(cmd::sadd{.key = "{t}a", .members = {"1", "2", "3", "x"}});
  f.ok(cmd::sadd{.key = "{t}b", .members = {"3", "4"}});
  f.ok(cmd::sadd{.key = "{t}c", .members = {"x", "5", "1"}});
  CHECK_SAME(sorted(f.ok(cmd::sunion{.keys = {"{t}a", "{t}b", "{t}c", "{t}nokey"}})),
             (Strings{"1", "2", "3", "4", "5", "x"}));
  CHECK_SAME(sorted(f.ok(cmd::sunion{.keys = {"{t}b", "{t}b"}})), (Strings{"3", "4"}));
  CHECK_SAME(sorted(f.ok(cmd::sdiff{.keys = {"{t}a", "{t}b", "{t}c"}})), (Strings{"2"}));
  CHECK_SAME(sorted(f.ok(cmd::sdiff{.keys = {"{t}a", "{t}nokey"}})), (Strings{"1", "2", "3", "x"}));
  CHECK_SAME(sorted(f.ok(cmd::sdiff{.keys = "{t}b"})), (Strings{"3", "4"}));
  BOOST_TEST(f.ok(cmd::sdiff{.keys = {"{t}a", "{t}a"}}).empty());
  BOOST_TEST(f.ok(cmd::sdiff{.keys = {"{t}nokey", "{t}a"}}).empty());
  // Keys in two slots: refused on a cluster (and by MemoryBackend's cluster checks).
  expect_cross_slot(f, cmd::sunion{.keys = {"a", "b"}});
  expect_cross_slot(f, cmd::sdiff{.keys = {"a", "b"}});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(multi_key_set_commands_check_every_type, B, AllBackends) {
  BackendFixture<B> f;
  f.ok(cmd::sadd{.key = "{t}a", .members = {"1", "2"}});
  f.ok(cmd::set{.key = "{t}str", .value = "x"});
  f.ok(cmd::hset{.key = "{t}h", .fields = {{"1", "2"}}});
  // WRONGTYPE wherever the key is, even after a missing key (which alone empties SINTER).
  for (std::string_view bad : {std::string_view("{t}str"), std::string_view("{t}h")}) {
    BOOST_TEST_CONTEXT("key " << bad) {
      BOOST_TEST(error_text(f, cmd::sinter{.keys = {"{t}a", "{t}nokey", bad}}) == wrong_type_message);
      f.fails(cmd::sinter{.keys = {bad, "{t}a"}}, Error::wrong_type);
      f.fails(cmd::sintercard{.keys = {"{t}nokey", bad}}, Error::wrong_type);
      f.fails(cmd::sintercard{.keys = {"{t}a", bad}, .limit = 1}, Error::wrong_type);
      f.fails(cmd::sunion{.keys = {"{t}a", bad}}, Error::wrong_type);
      f.fails(cmd::sunion{.keys = {"{t}nokey", bad}}, Error::wrong_type);
      f.fails(cmd::sdiff{.keys = {"{t}nokey", bad}}, Error::wrong_type);
      f.fails(cmd::sdiff{.keys = {bad, "{t}a"}}, Error::wrong_type);
      f.fails(cmd::sdiff{.keys = {"{t}a", bad}}, Error::wrong_type);
    }
  }
  // LIMIT is checked before the keys.
  BOOST_TEST(error_text(f, cmd::sintercard{.keys = {"{t}a", "{t}str"}, .limit = -1}) ==
             "ERR LIMIT can't be negative");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_commands_refuse_other_types, B, AllBackends) {
  BackendFixture<B> f;
  f.ok(cmd::set{.key = "str", .value = "x"});
  f.ok(cmd::hset{.key = "h", .fields = {{"f", "v"}}});
  for (std::string_view k : {std::string_view("str"), std::string_view("h")}) {
    BOOST_TEST_CONTEXT("key " << k) {
      BOOST_TEST(error_text(f, cmd::sadd{.key = k, .members = "m"}) == wrong_type_message);
      f.fails(cmd::srem{.key = k, .members = "m"}, Error::wrong_type);
      f.fails(cmd::smembers{k}, Error::wrong_type);
      f.fails(cmd::sismember{k, "m"}, Error::wrong_type);
      f.fails(cmd::smismember{.key = k, .members = {"m", "n"}}, Error::wrong_type);
      f.fails(cmd::scard{k}, Error::wrong_type);
      f.fails(cmd::sscan{.key = k, .cursor = 0}, Error::wrong_type);
      f.fails(cmd::sscan{.key = k, .cursor = 0, .count = 0}, Error::wrong_type);
    }
  }
  CHECK_SAME(f.ok(cmd::hget{"h", "f"}), std::optional("v"s));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_commands_refuse_empty_lists, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(error_text(f, cmd::sadd{.key = "s", .members = {}}) ==
             "ERR wrong number of arguments for 'sadd' command");
  BOOST_TEST(error_text(f, cmd::srem{.key = "s", .members = {}}) ==
             "ERR wrong number of arguments for 'srem' command");
  BOOST_TEST(error_text(f, cmd::smismember{.key = "s", .members = {}}) ==
             "ERR wrong number of arguments for 'smismember' command");
  BOOST_TEST(error_text(f, cmd::sinter{}) == "ERR wrong number of arguments for 'sinter' command");
  BOOST_TEST(error_text(f, cmd::sunion{}) == "ERR wrong number of arguments for 'sunion' command");
  BOOST_TEST(error_text(f, cmd::sdiff{}) == "ERR wrong number of arguments for 'sdiff' command");
  BOOST_TEST(f.ok(cmd::scard{"s"}) == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(sscan_small_set_with_match_and_integers, B, AllBackends) {
  BackendFixture<B> f;
  auto scan_all = [&](std::string_view key, std::optional<std::string_view> match,
                      std::int64_t count) {
    std::set<std::string> seen;
    std::uint64_t cursor = 0;
    int steps = 0;
    do {
      auto page = f.ok(cmd::sscan{.key = key, .cursor = cursor, .match = match, .count = count});
      seen.insert(page.members.begin(), page.members.end());
      cursor = page.cursor;
    } while (cursor != 0 && ++steps < 1000);
    BOOST_TEST(cursor == 0u);
    return Strings(seen.begin(), seen.end());
  };
  // A set of small integers (an intset on a server) and one of strings.
  f.ok(cmd::sadd{.key = "ints", .members = {"3", "-1", "20", "100"}});
  f.ok(cmd::sadd{.key = "s", .members = {"apple", "avocado", "banana", "a?"}});
  CHECK_SAME(scan_all("ints", std::nullopt, 1), (Strings{"-1", "100", "20", "3"}));
  CHECK_SAME(scan_all("ints", "?", 1), (Strings{"3"}));
  CHECK_SAME(scan_all("s", "a*", 2), (Strings{"a?", "apple", "avocado"}));
  CHECK_SAME(scan_all("s", "a\\?", 2), (Strings{"a?"}));
  CHECK_SAME(scan_all("s", "[b-c]*", 10), (Strings{"banana"}));
  BOOST_TEST(error_text(f, cmd::sscan{.key = "s", .cursor = 0, .count = 0}) == "ERR syntax error");
  f.fails(cmd::sscan{.key = "ints", .cursor = 0, .count = -1}, Error::server_error);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(sscan_of_1000_members_returns_each_despite_changes, B,
                              AllBackends) {
  BackendFixture<B> f;
  std::vector<std::string> stable, doomed;
  for (int i = 0; i < 1000; ++i)
    stable.push_back("m:" + std::to_string(i));
  for (int i = 0; i < 300; ++i)
    doomed.push_back("d:" + std::to_string(i));
  f.ok(cmd::sadd{.key = "s", .members = stable});
  f.ok(cmd::sadd{.key = "s", .members = doomed});

  std::set<std::string> seen;
  std::uint64_t cursor = 0;
  int steps = 0;
  do {
    auto page = f.ok(cmd::sscan{.key = "s", .cursor = cursor});
    seen.insert(page.members.begin(), page.members.end());
    cursor = page.cursor;
  } while (cursor != 0 && ++steps < 100000);
  BOOST_TEST(cursor == 0u);
  BOOST_TEST(seen.size() == 1300u);

  // Members added and removed between steps: 600 additions in bursts faster than the scan
  // (a server's table grows), then none. (SCAN ends only if the set stops growing at some
  // point: a set that grows by more than COUNT every step forever may never be done.)
  seen.clear();
  cursor = 0;
  steps = 0;
  int added = 0;
  std::size_t removed = 0;
  do {
    auto page = f.ok(cmd::sscan{.key = "s", .cursor = cursor, .count = 10});
    seen.insert(page.members.begin(), page.members.end());
    cursor = page.cursor;
    std::vector<std::string> fresh;
    for (int j = 0; j < 20 && added < 600; ++j, ++added)
      fresh.push_back("n:" + std::to_string(added));
    if (!fresh.empty()) f.ok(cmd::sadd{.key = "s", .members = fresh});
    std::vector<std::string> gone;
    for (int j = 0; j < 3 && removed < doomed.size(); ++j)
      gone.push_back(doomed[removed++]);
    if (!gone.empty()) f.ok(cmd::srem{.key = "s", .members = gone});
  } while (cursor != 0 && ++steps < 100000);
  BOOST_TEST(cursor == 0u);
  std::size_t missing = 0;
  for (auto const& m : stable)
    missing += seen.count(m) ? 0 : 1;
  BOOST_TEST(missing == 0u);
  for (auto const& m : seen) {
    bool const known = m.starts_with("m:") || m.starts_with("d:") || m.starts_with("n:");
    BOOST_TEST(known, "unexpected member " << m);
  }
  BOOST_TEST(f.ok(cmd::scard{"s"}) == static_cast<std::int64_t>(1300 + added - removed));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(set_commands_in_a_transaction, B, AllBackends) {
  BackendFixture<B> f;
  auto [added, card, members, inter] = f.ok(rediskit::transaction(
      cmd::sadd{.key = "s", .members = {"a", "b"}}, cmd::scard{"s"},
      cmd::smismember{.key = "s", .members = {"b", "c"}}, cmd::sinter{.keys = {"s", "s"}}));
  BOOST_TEST(added == 2);
  BOOST_TEST(card == 2);
  CHECK_SAME(members, (std::vector<bool>{true, false}));
  CHECK_SAME(sorted(inter), (Strings{"a", "b"}));
}

BOOST_AUTO_TEST_SUITE_END()
