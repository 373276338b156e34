// Conformance: stream and consumer-group commands (XREAD too) behave the same on every backend
// (MemoryBackend, FakeBackend, a real redis-server through RedisBackend, and a Redis Cluster
// through ClusterBackend), errors included. The streams of one XREADGROUP share a hash tag
// ("{t}a", "{t}b"), as a cluster requires.
//
// Ids are explicit wherever a reply is compared, since generated ids ("*") follow each
// backend's clock. Idle times are compared as bounds (a real clock moves while a test runs),
// and approximate trimming ("~") only loosely (a server removes whole internal nodes only).
#include "support/backends.hpp"
#include "support/cross_slot.hpp"
#include "support/differential.hpp"

#include <rediskit/commands.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace std::string_literals;
using namespace std::chrono_literals;
using rediskit::Error;
using rediskit::StreamEntry;
using rediskit::StreamId;
using rediskit::StreamTrim;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
using rediskit::test::expect_cross_slot;
using rediskit::test::to_text;
namespace cmd = rediskit::cmd;

using Fields = std::vector<std::pair<std::string, std::string>>;
using Strings = std::vector<std::string>;

#define CHECK_SAME(a, b) BOOST_TEST(to_text(a) == to_text(b))

/// Runs the io_context for about `d` (lets a blocking command reach a real server).
template <class B>
void pump(BackendFixture<B>& f, std::chrono::milliseconds d) {
  auto const until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
    if (f.ioc.stopped()) f.ioc.restart();
    f.ioc.run_one_for(5ms);
  }
}

/// The ids of entries.
Strings ids_of(std::vector<StreamEntry> const& es) {
  Strings out;
  for (auto const& e : es)
    out.push_back(e.id);
  return out;
}

StreamEntry entry(std::string id, Fields f) {
  return StreamEntry{std::move(id), std::move(f)};
}

/// Adds entries 1-0 .. n-0 (field "n" = the number) to `key`.
template <class B>
void fill(BackendFixture<B>& f, std::string_view key, int n) {
  for (int i = 1; i <= n; ++i) {
    std::string const id = std::to_string(i) + "-0";
    std::string const v = std::to_string(i);
    CHECK_SAME(f.ok(cmd::xadd{.key = key, .id = id, .fields = {{"n", v}}}), std::optional(id));
  }
}

using rediskit::test::wrong_type_message;
std::string const kInvalidId = "ERR Invalid stream ID specified as stream command argument";

}  // namespace

BOOST_AUTO_TEST_SUITE(streams)

// ---- XADD --------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(xadd_explicit_ids_must_grow, B, AllBackends) {
  BackendFixture<B> f;
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .id = "5-1", .fields = {{"a", "1"}, {"b", "2"}}}),
             std::optional("5-1"s));
  // "ms-*": the next sequence within a millisecond, 0 in a later one.
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .id = "5-*", .fields = {{"a", "2"}}}),
             std::optional("5-2"s));
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .id = "7-*", .fields = {{"a", "3"}}}),
             std::optional("7-0"s));
  // "ms" alone is ms-0: not above 7-0.
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s", .id = "7", .fields = {{"a", "4"}}}) ==
             "ERR The ID specified in XADD is equal or smaller than the target stream top item");
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s", .id = "6-9", .fields = {{"a", "4"}}}) ==
             "ERR The ID specified in XADD is equal or smaller than the target stream top item");
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s", .id = "6-*", .fields = {{"a", "4"}}}) ==
             "ERR The ID specified in XADD is equal or smaller than the target stream top item");
  BOOST_TEST(error_text(f, cmd::xadd{.key = "t", .id = "0-0", .fields = {{"a", "4"}}}) ==
             "ERR The ID specified in XADD must be greater than 0-0");
  BOOST_TEST(error_text(f, cmd::xadd{.key = "t", .id = "0", .fields = {{"a", "4"}}}) ==
             "ERR The ID specified in XADD must be greater than 0-0");
  BOOST_TEST(f.ok(cmd::exists{.keys = "t"}) == 0);  // nothing was created
  CHECK_SAME(f.ok(cmd::xadd{.key = "t", .id = "0-*", .fields = {{"a", "4"}}}),
             std::optional("0-1"s));
  for (std::string_view bad : {"x", "1-x", "-1", "1--1", "", "1-2-3", "-", "+", "(1", "*-1"})
    BOOST_TEST(error_text(f, cmd::xadd{.key = "s", .id = bad, .fields = {{"a", "4"}}}) ==
               kInvalidId);
  // What the server's number parser also takes: leading zeros, a '+', leading blanks.
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .id = "0008", .fields = {{"a", "5"}}}),
             std::optional("8-0"s));
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .id = "+9-+1", .fields = {{"a", "5"}}}),
             std::optional("9-1"s));
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .id = " 10", .fields = {{"a", "5"}}}),
             std::optional("10-0"s));
  BOOST_TEST(f.ok(cmd::xlen{"s"}) == 6);
  // The largest sequence, then "ms-*" in the same millisecond.
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .id = "11-18446744073709551615", .fields = {{"a", "6"}}}),
             std::optional("11-18446744073709551615"s));
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s", .id = "11-*", .fields = {{"a", "7"}}}) ==
             "ERR Elements are too large to be stored");
  // The largest id: nothing can follow it, not even "*".
  CHECK_SAME(
      f.ok(cmd::xadd{
          .key = "s", .id = "18446744073709551615-18446744073709551615", .fields = {{"a", "8"}}}),
      std::optional("18446744073709551615-18446744073709551615"s));
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s", .fields = {{"a", "9"}}}) ==
             "ERR The stream has exhausted the last possible ID, unable to add more items");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xadd_generated_ids_grow, B, AllBackends) {
  BackendFixture<B> f;
  std::optional<StreamId> last;
  for (int i = 0; i < 20; ++i) {
    auto const id = f.ok(cmd::xadd{.key = "s", .fields = {{"i", std::to_string(i)}}});
    BOOST_REQUIRE(id.has_value());
    auto const parsed = StreamId::parse(*id);
    BOOST_REQUIRE(parsed.has_value());
    if (last) BOOST_TEST((*parsed > *last));
    last = parsed;
  }
  // A generated id never goes below the last one, even when that is far in the future.
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .id = "99999999999999-5", .fields = {{"f", "v"}}}),
             std::optional("99999999999999-5"s));
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .fields = {{"f", "v"}}}),
             std::optional("99999999999999-6"s));
  // "ms-*" in the past of the last id fails; in the same millisecond it takes the next seq.
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .id = "99999999999999-*", .fields = {{"f", "v"}}}),
             std::optional("99999999999999-7"s));
  BOOST_TEST(f.ok(cmd::xlen{"s"}) == 23);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xadd_stores_binary_fields_in_order, B, AllBackends) {
  BackendFixture<B> f;
  std::string const k = "bin\0key"s, fld = "f\0\xff"s, val = "\0\r\n\0"s;
  Fields const fields = {{fld, val}, {"", ""}, {"a", "1"}, {fld, "again"}};
  CHECK_SAME(f.ok(cmd::xadd{.key = k, .id = "1-0", .fields = fields}), std::optional("1-0"s));
  CHECK_SAME(f.ok(cmd::xrange{.key = k}), std::vector{entry("1-0", fields)});
  auto const got = f.ok(cmd::xrange{.key = k});
  BOOST_REQUIRE(got.size() == 1u);
  BOOST_REQUIRE(got[0].find(fld) != nullptr);
  BOOST_TEST(*got[0].find(fld) == val);  // the first of a repeated field
  BOOST_TEST(got[0].find("missing") == nullptr);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xadd_nomkstream_and_wrong_type, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(!f.ok(cmd::xadd{.key = "s", .id = "1-0", .fields = {{"a", "1"}}, .nomkstream = true})
                  .has_value());
  BOOST_TEST(f.ok(cmd::exists{.keys = "s"}) == 0);
  fill(f, "s", 1);
  CHECK_SAME(f.ok(cmd::xadd{.key = "s", .id = "2-0", .fields = {{"a", "1"}}, .nomkstream = true}),
             std::optional("2-0"s));
  BOOST_TEST(f.ok(cmd::set{.key = "str", .value = "x"}));
  BOOST_TEST(error_text(f, cmd::xadd{.key = "str", .id = "1-0", .fields = {{"a", "1"}}}) ==
             wrong_type_message);
  f.fails(cmd::xadd{.key = "str", .id = "1-0", .fields = {{"a", "1"}}, .nomkstream = true},
          Error::wrong_type);
  // Argument errors come before the type check.
  BOOST_TEST(error_text(f, cmd::xadd{.key = "str", .id = "bad", .fields = {{"a", "1"}}}) ==
             kInvalidId);
  // No field at all.
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s", .id = "9-0"}) ==
             "ERR wrong number of arguments for 'xadd' command");
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s", .id = "9-0", .trim = StreamTrim::max_len(5)}) ==
             "ERR wrong number of arguments for 'xadd' command");
  BOOST_TEST(f.ok(cmd::type{"s"}) == "stream");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xadd_trims_after_adding, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 5);
  CHECK_SAME(f.ok(cmd::xadd{
                 .key = "s", .id = "6-0", .fields = {{"n", "6"}}, .trim = StreamTrim::max_len(3)}),
             std::optional("6-0"s));
  CHECK_SAME(ids_of(f.ok(cmd::xrange{.key = "s"})), (Strings{"4-0", "5-0", "6-0"}));
  CHECK_SAME(f.ok(cmd::xadd{
                 .key = "s", .id = "7-0", .fields = {{"n", "7"}}, .trim = StreamTrim::min_id("6")}),
             std::optional("7-0"s));
  CHECK_SAME(ids_of(f.ok(cmd::xrange{.key = "s"})), (Strings{"6-0", "7-0"}));
  // MAXLEN 0 trims the new entry too; the (empty) stream stays, and remembers its last id.
  CHECK_SAME(f.ok(cmd::xadd{
                 .key = "s", .id = "8-0", .fields = {{"n", "8"}}, .trim = StreamTrim::max_len(0)}),
             std::optional("8-0"s));
  BOOST_TEST(f.ok(cmd::xlen{"s"}) == 0);
  BOOST_TEST(f.ok(cmd::exists{.keys = "s"}) == 1);
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s", .id = "8-0", .fields = {{"n", "8"}}}) ==
             "ERR The ID specified in XADD is equal or smaller than the target stream top item");

  // Approximate: never below the threshold, and never more than the stream had.
  fill(f, "a", 30);
  f.ok(cmd::xadd{
      .key = "a", .id = "31-0", .fields = {{"n", "31"}}, .trim = StreamTrim::max_len(10, true)});
  auto const n = f.ok(cmd::xlen{"a"});
  BOOST_TEST(n >= 10);
  BOOST_TEST(n <= 31);
  // ... and with everything to drop, everything goes.
  f.ok(cmd::xadd{
      .key = "a", .id = "32-0", .fields = {{"n", "32"}}, .trim = StreamTrim::min_id("33", true)});
  BOOST_TEST(f.ok(cmd::xlen{"a"}) == 0);

  auto limited = StreamTrim::max_len(1);
  limited.limit = 10;
  BOOST_TEST(
      error_text(f, cmd::xadd{.key = "s", .id = "9-0", .fields = {{"n", "9"}}, .trim = limited}) ==
      "ERR syntax error, LIMIT cannot be used without the special ~ option");
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s",
                                     .id = "9-0",
                                     .fields = {{"n", "9"}},
                                     .trim = StreamTrim::max_len(-1)}) ==
             "ERR The MAXLEN argument must be >= 0.");
  auto negative = StreamTrim::max_len(1, true);
  negative.limit = -1;
  BOOST_TEST(
      error_text(f, cmd::xadd{.key = "s", .id = "9-0", .fields = {{"n", "9"}}, .trim = negative}) ==
      "ERR The LIMIT argument must be >= 0.");
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s",
                                     .id = "9-0",
                                     .fields = {{"n", "9"}},
                                     .trim = StreamTrim::min_id("x")}) == kInvalidId);
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s",
                                     .id = "9-0",
                                     .fields = {{"n", "9"}},
                                     .trim = StreamTrim::min_id("+")}) == kInvalidId);
  BOOST_TEST(f.ok(cmd::xlen{"s"}) == 0);  // none of the failed calls added anything
}

// ---- XRANGE, XREVRANGE, XLEN, XDEL, XTRIM
// --------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(xrange_bounds_and_count, B, AllBackends) {
  BackendFixture<B> f;
  for (std::string id : {"1-0", "1-1", "2-0", "3-5", "3-6", "4-0"})
    f.ok(cmd::xadd{.key = "s", .id = id, .fields = {{"id", id}}});
  CHECK_SAME(ids_of(f.ok(cmd::xrange{.key = "s"})),
             (Strings{"1-0", "1-1", "2-0", "3-5", "3-6", "4-0"}));
  CHECK_SAME(f.ok(cmd::xrange{.key = "s", .start = "2", .end = "2"}),
             std::vector{entry("2-0", {{"id", "2-0"}})});
  // "ms" as an end covers the whole millisecond.
  CHECK_SAME(ids_of(f.ok(cmd::xrange{.key = "s", .start = "1-1", .end = "3"})),
             (Strings{"1-1", "2-0", "3-5", "3-6"}));
  CHECK_SAME(ids_of(f.ok(cmd::xrange{.key = "s", .start = "(1-1", .end = "(3-6"})),
             (Strings{"2-0", "3-5"}));
  CHECK_SAME(ids_of(f.ok(cmd::xrange{.key = "s", .start = "-", .end = "+", .count = 2})),
             (Strings{"1-0", "1-1"}));
  CHECK_SAME(ids_of(f.ok(cmd::xrange{.key = "s", .start = "(1-1", .count = 2})),
             (Strings{"2-0", "3-5"}));
  BOOST_TEST(f.ok(cmd::xrange{.key = "s", .count = 0}).empty());
  BOOST_TEST(f.ok(cmd::xrange{.key = "s", .count = -3}).empty());
  BOOST_TEST(f.ok(cmd::xrange{.key = "s", .start = "4-1", .end = "3"}).empty());
  BOOST_TEST(f.ok(cmd::xrange{.key = "missing"}).empty());
  BOOST_TEST(f.ok(cmd::xrange{.key = "missing", .count = 0}).empty());

  CHECK_SAME(ids_of(f.ok(cmd::xrevrange{.key = "s"})),
             (Strings{"4-0", "3-6", "3-5", "2-0", "1-1", "1-0"}));
  CHECK_SAME(ids_of(f.ok(cmd::xrevrange{.key = "s", .end = "3", .start = "(1-1", .count = 2})),
             (Strings{"3-6", "3-5"}));
  CHECK_SAME(ids_of(f.ok(cmd::xrevrange{.key = "s", .end = "(3-5", .count = 10})),
             (Strings{"2-0", "1-1", "1-0"}));
  BOOST_TEST(f.ok(cmd::xrevrange{.key = "s", .count = 0}).empty());

  for (std::string_view bad : {"(", "(-", "(+", "x", "1-", "-1", "1-1-1"})
    BOOST_TEST(error_text(f, cmd::xrange{.key = "s", .start = bad}) == kInvalidId);
  BOOST_TEST(error_text(f, cmd::xrange{.key = "s", .end = "(x"}) == kInvalidId);
  BOOST_TEST(error_text(f, cmd::xrange{.key = "s",
                                       .start = "(18446744073709551615-18446744073709551615"}) ==
             "ERR invalid start ID for the interval");
  BOOST_TEST(error_text(f, cmd::xrange{.key = "s", .end = "(0-0"}) ==
             "ERR invalid end ID for the interval");
  BOOST_TEST(error_text(f, cmd::xrevrange{.key = "s", .end = "(0-0"}) ==
             "ERR invalid end ID for the interval");
  // "(0" as an end is below 0-<max>: valid, and empty.
  BOOST_TEST(f.ok(cmd::xrevrange{.key = "s", .end = "(0"}).empty());
  f.ok(cmd::set{.key = "str", .value = "x"});
  BOOST_TEST(error_text(f, cmd::xrange{.key = "str"}) == wrong_type_message);
  f.fails(cmd::xrevrange{.key = "str"}, Error::wrong_type);
  f.fails(cmd::xlen{"str"}, Error::wrong_type);
  BOOST_TEST(f.ok(cmd::xlen{"missing"}) == 0);
  BOOST_TEST(f.ok(cmd::xlen{"s"}) == 6);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xdel_removes_entries_and_keeps_the_last_id, B,
                              AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 5);
  BOOST_TEST(f.ok(cmd::xdel{.key = "s", .ids = {"2-0", "5-0", "5-0", "9-0", "3"}}) == 3);
  CHECK_SAME(ids_of(f.ok(cmd::xrange{.key = "s"})), (Strings{"1-0", "4-0"}));
  // One malformed id: nothing is deleted.
  BOOST_TEST(error_text(f, cmd::xdel{.key = "s", .ids = {"1-0", "bad"}}) == kInvalidId);
  BOOST_TEST(error_text(f, cmd::xdel{.key = "s", .ids = {"-"}}) == kInvalidId);
  BOOST_TEST(f.ok(cmd::xlen{"s"}) == 2);
  // The deleted tail still counts for new ids.
  BOOST_TEST(error_text(f, cmd::xadd{.key = "s", .id = "5-0", .fields = {{"n", "5"}}}) ==
             "ERR The ID specified in XADD is equal or smaller than the target stream top item");
  BOOST_TEST(f.ok(cmd::xdel{.key = "s", .ids = {"1-0", "4-0"}}) == 2);
  BOOST_TEST(f.ok(cmd::exists{.keys = "s"}) == 1);                   // an empty stream stays
  BOOST_TEST(f.ok(cmd::xdel{.key = "missing", .ids = "bad"}) == 0);  // no key: no id check
  f.ok(cmd::set{.key = "str", .value = "x"});
  f.fails(cmd::xdel{.key = "str", .ids = "1-0"}, Error::wrong_type);
  f.fails(cmd::xdel{.key = "s", .ids = std::vector<std::string>{}}, Error::server_error);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xtrim_maxlen_and_minid, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 10);
  BOOST_TEST(f.ok(cmd::xtrim{.key = "s", .trim = StreamTrim::max_len(8)}) == 2);
  BOOST_TEST(f.ok(cmd::xtrim{.key = "s", .trim = StreamTrim::max_len(8)}) == 0);
  BOOST_TEST(f.ok(cmd::xtrim{.key = "s", .trim = StreamTrim::min_id("5-0")}) == 2);
  CHECK_SAME(ids_of(f.ok(cmd::xrange{.key = "s"})),
             (Strings{"5-0", "6-0", "7-0", "8-0", "9-0", "10-0"}));
  // Approximate: loosely.
  auto const before = f.ok(cmd::xlen{"s"});
  auto const removed = f.ok(cmd::xtrim{.key = "s", .trim = StreamTrim::max_len(2, true)});
  BOOST_TEST(removed >= 0);
  BOOST_TEST(f.ok(cmd::xlen{"s"}) == before - removed);
  BOOST_TEST(f.ok(cmd::xlen{"s"}) >= 2);
  auto limit0 = StreamTrim::max_len(0, true);
  limit0.limit = 0;  // LIMIT 0: no limit
  f.ok(cmd::xtrim{.key = "s", .trim = limit0});
  BOOST_TEST(f.ok(cmd::xlen{"s"}) == 0);

  BOOST_TEST(f.ok(cmd::xtrim{.key = "missing", .trim = StreamTrim::max_len(0)}) == 0);
  f.ok(cmd::set{.key = "str", .value = "x"});
  f.fails(cmd::xtrim{.key = "str", .trim = StreamTrim::max_len(0)}, Error::wrong_type);
  // Argument errors first, whatever the key.
  BOOST_TEST(error_text(f, cmd::xtrim{.key = "str", .trim = StreamTrim::max_len(-1)}) ==
             "ERR The MAXLEN argument must be >= 0.");
  BOOST_TEST(error_text(f, cmd::xtrim{.key = "s", .trim = StreamTrim::min_id("(5")}) == kInvalidId);
  auto limited = StreamTrim::min_id("5");
  limited.limit = 1;
  BOOST_TEST(error_text(f, cmd::xtrim{.key = "missing", .trim = limited}) ==
             "ERR syntax error, LIMIT cannot be used without the special ~ option");
}

// ---- XGROUP
// --------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(xgroup_create_and_its_errors, B, AllBackends) {
  BackendFixture<B> f;
  std::string const need_key =
      "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want "
      "to use the MKSTREAM option to create an empty stream automatically.";
  BOOST_TEST(error_text(f, cmd::xgroup_create{.key = "s", .group = "g"}) == need_key);
  BOOST_TEST(f.ok(cmd::exists{.keys = "s"}) == 0);
  BOOST_TEST(f.ok(cmd::xgroup_create{.key = "s", .group = "g", .mkstream = true}));
  BOOST_TEST(f.ok(cmd::type{"s"}) == "stream");
  BOOST_TEST(f.ok(cmd::xlen{"s"}) == 0);
  BOOST_TEST(error_text(f, cmd::xgroup_create{.key = "s", .group = "g", .mkstream = true}) ==
             "BUSYGROUP Consumer Group name already exists");
  f.fails(cmd::xgroup_create{.key = "s", .group = "g", .id = "0"}, Error::busy_group);
  // The id is checked before the group's existence.
  BOOST_TEST(error_text(f, cmd::xgroup_create{.key = "s", .group = "g", .id = "x"}) == kInvalidId);
  BOOST_TEST(error_text(f, cmd::xgroup_create{.key = "s", .group = "h", .id = "-"}) == kInvalidId);
  BOOST_TEST(error_text(f, cmd::xgroup_create{.key = "s", .group = "h", .entries_read = -2}) ==
             "ERR value for ENTRIESREAD must be positive or -1");
  BOOST_TEST(f.ok(cmd::xgroup_create{.key = "s", .group = "h", .id = "0", .entries_read = -1}));
  BOOST_TEST(f.ok(cmd::xgroup_create{.key = "s", .group = "", .id = "5"}));
  f.ok(cmd::set{.key = "str", .value = "x"});
  f.fails(cmd::xgroup_create{.key = "str", .group = "g", .mkstream = true}, Error::wrong_type);
  BOOST_TEST(error_text(f, cmd::xgroup_create{.key = "missing", .group = "g", .id = "bad"}) ==
             need_key);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xgroup_start_id_decides_what_is_delivered, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 3);
  BOOST_TEST(f.ok(cmd::xgroup_create{.key = "s", .group = "new"}));  // "$"
  BOOST_TEST(f.ok(cmd::xgroup_create{.key = "s", .group = "all", .id = "0"}));
  BOOST_TEST(f.ok(cmd::xgroup_create{.key = "s", .group = "mid", .id = "2"}));
  BOOST_TEST(!f.ok(cmd::xreadgroup{.group = "new", .consumer = "c", .keys = "s"}).has_value());
  auto all = f.ok(cmd::xreadgroup{.group = "all", .consumer = "c", .keys = "s"});
  BOOST_REQUIRE(all.has_value());
  BOOST_REQUIRE(all->size() == 1u);
  BOOST_TEST((*all)[0].first == "s");
  CHECK_SAME(ids_of((*all)[0].second), (Strings{"1-0", "2-0", "3-0"}));
  auto mid = f.ok(cmd::xreadgroup{.group = "mid", .consumer = "c", .keys = "s"});
  BOOST_REQUIRE(mid.has_value());
  CHECK_SAME(ids_of((*mid)[0].second), Strings{"3-0"});
  f.ok(cmd::xadd{.key = "s", .id = "4-0", .fields = {{"n", "4"}}});
  auto fresh = f.ok(cmd::xreadgroup{.group = "new", .consumer = "c", .keys = "s"});
  BOOST_REQUIRE(fresh.has_value());
  CHECK_SAME((*fresh)[0].second, std::vector{entry("4-0", {{"n", "4"}})});

  // SETID moves the group back ("-" is accepted here) or to the end ("$").
  BOOST_TEST(f.ok(cmd::xgroup_setid{.key = "s", .group = "new", .id = "-"}));
  auto again = f.ok(cmd::xreadgroup{.group = "new", .consumer = "d", .keys = "s", .count = 2});
  BOOST_REQUIRE(again.has_value());
  CHECK_SAME(ids_of((*again)[0].second), (Strings{"1-0", "2-0"}));
  BOOST_TEST(f.ok(cmd::xgroup_setid{.key = "s", .group = "new", .id = "$", .entries_read = 4}));
  BOOST_TEST(!f.ok(cmd::xreadgroup{.group = "new", .consumer = "d", .keys = "s"}).has_value());
  BOOST_TEST(f.ok(cmd::xgroup_setid{.key = "s", .group = "new", .id = "3"}));
  auto tail = f.ok(cmd::xreadgroup{.group = "new", .consumer = "d", .keys = "s"});
  BOOST_REQUIRE(tail.has_value());
  CHECK_SAME(ids_of((*tail)[0].second), Strings{"4-0"});

  BOOST_TEST(error_text(f, cmd::xgroup_setid{.key = "s", .group = "nope", .id = "0"}) ==
             "NOGROUP No such consumer group 'nope' for key name 's'");
  BOOST_TEST(error_text(f, cmd::xgroup_setid{.key = "s", .group = "new", .id = "x"}) == kInvalidId);
  BOOST_TEST(
      error_text(f, cmd::xgroup_setid{.key = "s", .group = "new", .id = "0", .entries_read = -7}) ==
      "ERR value for ENTRIESREAD must be positive or -1");
  f.fails(cmd::xgroup_setid{.key = "missing", .group = "g", .id = "0"}, Error::server_error);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xgroup_consumers_and_destroy, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 4);
  f.ok(cmd::xgroup_create{.key = "s", .group = "g", .id = "0"});
  BOOST_TEST(f.ok(cmd::xgroup_createconsumer{.key = "s", .group = "g", .consumer = "c1"}) == 1);
  BOOST_TEST(f.ok(cmd::xgroup_createconsumer{.key = "s", .group = "g", .consumer = "c1"}) == 0);
  // Reading creates the reader; a read that found nothing does not.
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "c2", .keys = "s", .count = 3});
  BOOST_TEST(f.ok(cmd::xreadgroup{.group = "g", .consumer = "c3", .keys = "s", .count = 9})
                 .has_value());  // c3 got 4-0
  f.ok(cmd::xgroup_create{.key = "s", .group = "empty"});
  BOOST_TEST(!f.ok(cmd::xreadgroup{.group = "empty", .consumer = "c4", .keys = "s"}).has_value());
  BOOST_TEST(f.ok(cmd::xgroup_createconsumer{.key = "s", .group = "empty", .consumer = "c4"}) == 1);
  BOOST_TEST(f.ok(cmd::xgroup_createconsumer{.key = "s", .group = "g", .consumer = "c2"}) == 0);

  // DELCONSUMER: its pending entries are gone from the group.
  BOOST_TEST(f.ok(cmd::xgroup_delconsumer{.key = "s", .group = "g", .consumer = "c2"}) == 3);
  BOOST_TEST(f.ok(cmd::xgroup_delconsumer{.key = "s", .group = "g", .consumer = "c2"}) == 0);
  BOOST_TEST(f.ok(cmd::xgroup_delconsumer{.key = "s", .group = "g", .consumer = "c1"}) == 0);
  auto const summary = f.ok(cmd::xpending{.key = "s", .group = "g"});
  BOOST_TEST(summary.count == 1);
  CHECK_SAME(summary.consumers, (std::vector<std::pair<std::string, std::int64_t>>{{"c3", 1}}));

  std::string const nogroup = "NOGROUP No such consumer group 'x' for key name 's'";
  BOOST_TEST(error_text(f, cmd::xgroup_createconsumer{.key = "s", .group = "x", .consumer = "c"}) ==
             nogroup);
  BOOST_TEST(error_text(f, cmd::xgroup_delconsumer{.key = "s", .group = "x", .consumer = "c"}) ==
             nogroup);
  f.fails(cmd::xgroup_createconsumer{.key = "missing", .group = "g", .consumer = "c"},
          Error::server_error);
  f.fails(cmd::xgroup_delconsumer{.key = "missing", .group = "g", .consumer = "c"},
          Error::server_error);

  BOOST_TEST(f.ok(cmd::xgroup_destroy{.key = "s", .group = "g"}) == 1);
  BOOST_TEST(f.ok(cmd::xgroup_destroy{.key = "s", .group = "g"}) == 0);
  f.fails(cmd::xpending{.key = "s", .group = "g"}, Error::no_group);
  f.fails(cmd::xgroup_destroy{.key = "missing", .group = "g"}, Error::server_error);
  f.ok(cmd::set{.key = "str", .value = "x"});
  f.fails(cmd::xgroup_destroy{.key = "str", .group = "g"}, Error::wrong_type);
  f.fails(cmd::xgroup_createconsumer{.key = "str", .group = "g", .consumer = "c"},
          Error::wrong_type);
  BOOST_TEST(f.ok(cmd::xlen{"s"}) == 4);  // groups come and go, entries stay
}

// ---- XREADGROUP
// ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(xreadgroup_delivers_once_then_history, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 3);
  f.ok(cmd::xgroup_create{.key = "s", .group = "g", .id = "0"});
  auto first = f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s", .count = 2});
  BOOST_REQUIRE(first.has_value());
  CHECK_SAME(*first, (std::vector<std::pair<std::string, std::vector<StreamEntry>>>{
                         {"s", {entry("1-0", {{"n", "1"}}), entry("2-0", {{"n", "2"}})}}}));
  auto second = f.ok(cmd::xreadgroup{.group = "g", .consumer = "c2", .keys = "s", .ids = ">"});
  BOOST_REQUIRE(second.has_value());
  CHECK_SAME(ids_of((*second)[0].second), Strings{"3-0"});
  BOOST_TEST(!f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s"}).has_value());

  // History: the consumer's own pending entries above the id, each delivery counted.
  auto history = f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s", .ids = "0"});
  BOOST_REQUIRE(history.has_value());
  CHECK_SAME(ids_of((*history)[0].second), (Strings{"1-0", "2-0"}));
  auto later = f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s", .ids = "1-0"});
  BOOST_REQUIRE(later.has_value());
  CHECK_SAME(ids_of((*later)[0].second), Strings{"2-0"});
  auto limited =
      f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s", .ids = "0", .count = 1});
  BOOST_REQUIRE(limited.has_value());
  CHECK_SAME(ids_of((*limited)[0].second), Strings{"1-0"});
  auto pending = f.ok(cmd::xpending_range{.key = "s", .group = "g"});
  BOOST_REQUIRE(pending.size() == 3u);
  BOOST_TEST(pending[0].id == "1-0");
  BOOST_TEST(pending[0].consumer == "c1");
  BOOST_TEST(pending[0].deliveries == 3);
  BOOST_TEST(pending[1].deliveries == 3);
  BOOST_TEST(pending[2].consumer == "c2");
  BOOST_TEST(pending[2].deliveries == 1);
  // A history read with nothing pending still answers, with no entries (and never blocks).
  auto none = f.ok(
      cmd::xreadgroup{.group = "g", .consumer = "nobody", .keys = "s", .ids = "0", .block = 10ms});
  BOOST_REQUIRE(none.has_value());
  BOOST_REQUIRE(none->size() == 1u);
  BOOST_TEST((*none)[0].second.empty());
  // Acknowledged entries leave the history.
  BOOST_TEST(f.ok(cmd::xack{.key = "s", .group = "g", .ids = {"1-0", "2-0"}}) == 2);
  auto acked = f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s", .ids = "0"});
  BOOST_REQUIRE(acked.has_value());
  BOOST_TEST((*acked)[0].second.empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xreadgroup_over_several_streams, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "{t}a", 2);
  fill(f, "{t}b", 1);
  fill(f, "{t}c", 1);
  for (auto k : {"{t}a", "{t}b", "{t}c"})
    f.ok(cmd::xgroup_create{.key = k, .group = "g", .id = "0"});
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "x", .keys = "{t}b"});
  // Only the streams with something come back, in the order asked.
  auto got = f.ok(
      cmd::xreadgroup{.group = "g", .consumer = "x", .keys = {"{t}c", "{t}b", "{t}a"}, .count = 1});
  BOOST_REQUIRE(got.has_value());
  BOOST_REQUIRE(got->size() == 2u);
  BOOST_TEST((*got)[0].first == "{t}c");
  BOOST_TEST((*got)[1].first == "{t}a");
  CHECK_SAME(ids_of((*got)[1].second), Strings{"1-0"});
  // A history id for one stream and ">" for another.
  auto mixed = f.ok(
      cmd::xreadgroup{.group = "g", .consumer = "x", .keys = {"{t}b", "{t}a"}, .ids = {"0", ">"}});
  BOOST_REQUIRE(mixed.has_value());
  BOOST_REQUIRE(mixed->size() == 2u);
  CHECK_SAME(ids_of((*mixed)[0].second), Strings{"1-0"});
  CHECK_SAME(ids_of((*mixed)[1].second), Strings{"2-0"});
  // Streams in two slots: refused on a cluster (and by MemoryBackend's cluster checks).
  expect_cross_slot(f, cmd::xreadgroup{.group = "g", .consumer = "x", .keys = {"a", "b"}});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xreadgroup_noack_and_redelivery_to_another, B,
                              AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 2);
  f.ok(cmd::xgroup_create{.key = "s", .group = "g", .id = "0"});
  auto got = f.ok(cmd::xreadgroup{.group = "g", .consumer = "c", .keys = "s", .noack = true});
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST((*got)[0].second.size() == 2u);
  BOOST_TEST(f.ok(cmd::xpending{.key = "s", .group = "g"}).count == 0);
  // Moved back, ">" hands pending entries to the new reader with a fresh count.
  f.ok(cmd::xgroup_setid{.key = "s", .group = "g", .id = "0"});
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s"});
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s", .ids = "0"});
  f.ok(cmd::xgroup_setid{.key = "s", .group = "g", .id = "0"});
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "c2", .keys = "s", .count = 1});
  auto pending = f.ok(cmd::xpending_range{.key = "s", .group = "g"});
  BOOST_REQUIRE(pending.size() == 2u);
  BOOST_TEST(pending[0].consumer == "c2");
  BOOST_TEST(pending[0].deliveries == 1);
  BOOST_TEST(pending[1].consumer == "c1");
  BOOST_TEST(pending[1].deliveries == 2);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xreadgroup_errors, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "{t}s", 1);
  f.ok(cmd::xgroup_create{.key = "{t}s", .group = "g", .id = "0"});
  BOOST_TEST(error_text(f, cmd::xreadgroup{.group = "nope", .consumer = "c", .keys = "{t}s"}) ==
             "NOGROUP No such key '{t}s' or consumer group 'nope' in XREADGROUP with GROUP "
             "option");
  BOOST_TEST(error_text(f, cmd::xreadgroup{.group = "g", .consumer = "c", .keys = "{t}missing"}) ==
             "NOGROUP No such key '{t}missing' or consumer group 'g' in XREADGROUP with GROUP "
             "option");
  f.fails(cmd::xreadgroup{.group = "g", .consumer = "c", .keys = {"{t}s", "{t}missing"}},
          Error::no_group);
  BOOST_TEST(
      error_text(f, cmd::xreadgroup{.group = "g", .consumer = "c", .keys = "{t}s", .ids = "$"}) ==
      "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the "
      "history of this consumer by specifying a proper ID, or use the > ID to get new "
      "messages. The $ ID would just return an empty result set.");
  for (std::string_view bad : {"-", "+", "x", "(1"})
    BOOST_TEST(
        error_text(f, cmd::xreadgroup{.group = "g", .consumer = "c", .keys = "{t}s", .ids = bad}) ==
        kInvalidId);
  BOOST_TEST(error_text(f, cmd::xreadgroup{.group = "g",
                                           .consumer = "c",
                                           .keys = {"{t}s", "{t}s"},
                                           .ids = {"0", "0", "0"}}) ==
             "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be "
             "specified.");
  BOOST_TEST(
      error_text(f,
                 cmd::xreadgroup{.group = "g", .consumer = "c", .keys = "{t}s", .block = -1ms}) ==
      "ERR timeout is negative");
  f.ok(cmd::set{.key = "str", .value = "x"});
  BOOST_TEST(error_text(f, cmd::xreadgroup{.group = "g", .consumer = "c", .keys = "str"}) ==
             wrong_type_message);
  // Nothing was delivered by the failed calls.
  BOOST_TEST(f.ok(cmd::xpending{.key = "{t}s", .group = "g"}).count == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xreadgroup_block_wakes_on_xadd, B, AllBackends) {
  BackendFixture<B> f;
  f.ok(cmd::xgroup_create{.key = "s", .group = "g", .mkstream = true});
  cmd::xreadgroup const read{.group = "g", .consumer = "c", .keys = "s", .block = 0ms};
  std::optional<std::pair<boost::system::error_code, rediskit::reply_t<cmd::xreadgroup>>> done;
  f.backend.async_exec(
      read, [&](boost::system::error_code ec, auto r) { done.emplace(ec, std::move(r)); });
  pump(f, 100ms);
  BOOST_TEST(!done.has_value());  // blocked: nothing to read
  f.ok(cmd::xadd{.key = "s", .id = "1-0", .fields = {{"a", "b"}}});
  f.run_until([&] { return done.has_value(); });
  BOOST_TEST(!done->first);
  BOOST_REQUIRE(done->second.has_value());
  CHECK_SAME(*done->second, (std::vector<std::pair<std::string, std::vector<StreamEntry>>>{
                                {"s", {entry("1-0", {{"a", "b"}})}}}));
  BOOST_TEST(f.ok(cmd::xpending{.key = "s", .group = "g"}).count == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xreadgroup_block_times_out_with_nothing, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 1);
  f.ok(cmd::xgroup_create{.key = "s", .group = "g"});  // "$": nothing to read
  cmd::xreadgroup const read{.group = "g", .consumer = "c", .keys = "s", .block = 100ms};
  std::optional<std::pair<boost::system::error_code, rediskit::reply_t<cmd::xreadgroup>>> done;
  auto const start = std::chrono::steady_clock::now();
  f.backend.async_exec(
      read, [&](boost::system::error_code ec, auto r) { done.emplace(ec, std::move(r)); });
  pump(f, 20ms);
  // A write that brings nothing for the group does not end the wait.
  f.ok(cmd::xgroup_createconsumer{.key = "s", .group = "g", .consumer = "other"});
  BOOST_TEST(!done.has_value());
  f.advance(150ms);
  f.run_until([&] { return done.has_value(); });
  BOOST_TEST(!done->first);
  BOOST_TEST(!done->second.has_value());
  if constexpr (!BackendFixture<B>::is_fake)
    BOOST_TEST((std::chrono::steady_clock::now() - start >= 100ms));
  // The consumer that read nothing was not created.
  BOOST_TEST(f.ok(cmd::xgroup_createconsumer{.key = "s", .group = "g", .consumer = "c"}) == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xreadgroup_block_fails_when_the_group_goes, B,
                              AllBackends) {
  BackendFixture<B> f;
  f.ok(cmd::xgroup_create{.key = "s", .group = "g", .mkstream = true});
  cmd::xreadgroup const read{.group = "g", .consumer = "c", .keys = "s", .block = 0ms};
  std::optional<boost::system::error_code> done;
  f.backend.async_exec(read, [&](boost::system::error_code ec, auto) { done = ec; });
  pump(f, 100ms);
  BOOST_TEST(!done.has_value());
  BOOST_TEST(f.ok(cmd::xgroup_destroy{.key = "s", .group = "g"}) == 1);
  f.run_until([&] { return done.has_value(); });
  BOOST_TEST(*done == make_error_code(Error::no_group));
}

// ---- XREAD -------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(xread_reads_above_each_id_and_consumes_nothing, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "{t}a", 3);
  fill(f, "{t}b", 1);
  using Reply = std::vector<std::pair<std::string, std::vector<StreamEntry>>>;
  auto all = f.ok(cmd::xread{.keys = "{t}a", .ids = "0"});
  BOOST_REQUIRE(all.has_value());
  CHECK_SAME(*all, (Reply{{"{t}a", {entry("1-0", {{"n", "1"}}), entry("2-0", {{"n", "2"}}),
                                    entry("3-0", {{"n", "3"}})}}}));
  // Read again: nothing was consumed. Above 1-0, at most one.
  auto next = f.ok(cmd::xread{.keys = "{t}a", .ids = "1-0", .count = 1});
  BOOST_REQUIRE(next.has_value());
  CHECK_SAME(*next, (Reply{{"{t}a", {entry("2-0", {{"n", "2"}})}}}));
  // "1" is 1-0 (a missing sequence is 0 here); count 0 is no limit.
  auto above = f.ok(cmd::xread{.keys = "{t}a", .ids = "1", .count = 0});
  BOOST_REQUIRE(above.has_value());
  CHECK_SAME(ids_of(above->at(0).second), (Strings{"2-0", "3-0"}));
  // Nothing above the last id, "$", or in a missing stream: nil (no BLOCK: no wait).
  BOOST_TEST(!f.ok(cmd::xread{.keys = "{t}a", .ids = "3-0"}).has_value());
  BOOST_TEST(!f.ok(cmd::xread{.keys = "{t}a", .ids = "$"}).has_value());
  BOOST_TEST(!f.ok(cmd::xread{.keys = "{t}missing", .ids = "0"}).has_value());
  // Several streams: those with something, in the order of the keys.
  auto two = f.ok(cmd::xread{.keys = {"{t}b", "{t}missing", "{t}a"}, .ids = {"0", "0", "2-0"}});
  BOOST_REQUIRE(two.has_value());
  CHECK_SAME(*two, (Reply{{"{t}b", {entry("1-0", {{"n", "1"}})}},
                          {"{t}a", {entry("3-0", {{"n", "3"}})}}}));
  // Deleted entries are not read.
  BOOST_TEST(f.ok(cmd::xdel{.key = "{t}a", .ids = "2-0"}) == 1);
  auto left = f.ok(cmd::xread{.keys = "{t}a", .ids = "0"});
  BOOST_REQUIRE(left.has_value());
  CHECK_SAME(ids_of(left->at(0).second), (Strings{"1-0", "3-0"}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xread_errors, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "{t}s", 1);
  for (std::string_view bad : {"-", "+", "x", "(1"})
    BOOST_TEST(error_text(f, cmd::xread{.keys = "{t}s", .ids = bad}) == kInvalidId);
  BOOST_TEST(error_text(f, cmd::xread{.keys = {"{t}s", "{t}s"}, .ids = {"0", "0", "0"}}) ==
             "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be "
             "specified.");
  BOOST_TEST(error_text(f, cmd::xread{.keys = "{t}s", .ids = "0", .block = -1ms}) ==
             "ERR timeout is negative");
  f.ok(cmd::set{.key = "str", .value = "x"});
  BOOST_TEST(error_text(f, cmd::xread{.keys = "str", .ids = "0"}) == wrong_type_message);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xread_block_from_the_end_wakes_on_the_next_entry, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 2);
  cmd::xread const read{.keys = "s", .ids = "$", .block = 0ms};
  std::optional<std::pair<boost::system::error_code, rediskit::reply_t<cmd::xread>>> done;
  f.backend.async_exec(
      read, [&](boost::system::error_code ec, auto r) { done.emplace(ec, std::move(r)); });
  pump(f, 100ms);
  BOOST_TEST(!done.has_value());  // "$": the entries already there are not read
  // A write to another key, or one that adds nothing to the stream, does not end the wait.
  f.ok(cmd::set{.key = "other", .value = "x"});
  f.ok(cmd::xtrim{.key = "s", .trim = StreamTrim::max_len(5)});
  pump(f, 20ms);
  BOOST_TEST(!done.has_value());
  f.ok(cmd::xadd{.key = "s", .id = "7-0", .fields = {{"a", "b"}}});
  f.run_until([&] { return done.has_value(); });
  BOOST_TEST(!done->first);
  BOOST_REQUIRE(done->second.has_value());
  CHECK_SAME(*done->second, (std::vector<std::pair<std::string, std::vector<StreamEntry>>>{
                                {"s", {entry("7-0", {{"a", "b"}})}}}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xread_block_times_out_with_nothing, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 1);
  cmd::xread const read{.keys = "s", .ids = "1-0", .block = 100ms};
  std::optional<std::pair<boost::system::error_code, rediskit::reply_t<cmd::xread>>> done;
  auto const start = std::chrono::steady_clock::now();
  f.backend.async_exec(
      read, [&](boost::system::error_code ec, auto r) { done.emplace(ec, std::move(r)); });
  pump(f, 20ms);
  BOOST_TEST(!done.has_value());
  f.advance(150ms);
  f.run_until([&] { return done.has_value(); });
  BOOST_TEST(!done->first);
  BOOST_TEST(!done->second.has_value());
  if constexpr (!BackendFixture<B>::is_fake)
    BOOST_TEST((std::chrono::steady_clock::now() - start >= 100ms));
}

// ---- XACK, XPENDING
// --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(xack_counts_pending_ids_only, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 3);
  f.ok(cmd::xgroup_create{.key = "s", .group = "g", .id = "0"});
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "c", .keys = "s", .count = 2});
  BOOST_TEST(f.ok(cmd::xack{.key = "s", .group = "g", .ids = {"1-0", "1-0", "3-0", "9"}}) == 1);
  BOOST_TEST(f.ok(cmd::xack{.key = "s", .group = "g", .ids = "1-0"}) == 0);
  BOOST_TEST(error_text(f, cmd::xack{.key = "s", .group = "g", .ids = {"2-0", "bad"}}) ==
             kInvalidId);
  BOOST_TEST(f.ok(cmd::xpending{.key = "s", .group = "g"}).count == 1);  // 2-0 still pending
  // No key or no group: nothing to acknowledge, and the ids are not even checked.
  BOOST_TEST(f.ok(cmd::xack{.key = "s", .group = "nope", .ids = "bad"}) == 0);
  BOOST_TEST(f.ok(cmd::xack{.key = "missing", .group = "g", .ids = "1-0"}) == 0);
  f.ok(cmd::set{.key = "str", .value = "x"});
  f.fails(cmd::xack{.key = "str", .group = "g", .ids = "1-0"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xpending_summary_and_range, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 5);
  f.ok(cmd::xgroup_create{.key = "s", .group = "g", .id = "0"});
  CHECK_SAME(f.ok(cmd::xpending{.key = "s", .group = "g"}), rediskit::PendingSummary{});
  BOOST_TEST(f.ok(cmd::xpending_range{.key = "s", .group = "g"}).empty());
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "bob", .keys = "s", .count = 2});
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "alice", .keys = "s", .count = 2});
  f.ok(cmd::xgroup_createconsumer{.key = "s", .group = "g", .consumer = "idle"});
  CHECK_SAME(f.ok(cmd::xpending{.key = "s", .group = "g"}),
             (rediskit::PendingSummary{4, "1-0", "4-0", {{"alice", 2}, {"bob", 2}}}));

  auto all = f.ok(cmd::xpending_range{.key = "s", .group = "g"});
  BOOST_REQUIRE(all.size() == 4u);
  for (auto const& p : all) {
    BOOST_TEST(p.deliveries == 1);
    BOOST_TEST(p.idle_ms >= 0);
    BOOST_TEST(p.idle_ms < 5000);
  }
  BOOST_TEST(all[0].consumer == "bob");
  BOOST_TEST(all[3].consumer == "alice");
  auto some =
      f.ok(cmd::xpending_range{.key = "s", .group = "g", .start = "(1-0", .end = "3", .count = 10});
  BOOST_REQUIRE(some.size() == 2u);
  BOOST_TEST(some[0].id == "2-0");
  BOOST_TEST(some[1].id == "3-0");
  auto alice = f.ok(cmd::xpending_range{.key = "s", .group = "g", .count = 1, .consumer = "alice"});
  BOOST_REQUIRE(alice.size() == 1u);
  BOOST_TEST(alice[0].id == "3-0");
  BOOST_TEST(f.ok(cmd::xpending_range{.key = "s", .group = "g", .consumer = "nobody"}).empty());
  BOOST_TEST(f.ok(cmd::xpending_range{.key = "s", .group = "g", .consumer = "idle"}).empty());
  BOOST_TEST(f.ok(cmd::xpending_range{.key = "s", .group = "g", .count = -1}).empty());
  BOOST_TEST(f.ok(cmd::xpending_range{.key = "s", .group = "g", .min_idle = 1h}).empty());
  BOOST_TEST(f.ok(cmd::xpending_range{.key = "s", .group = "g", .min_idle = 0ms}).size() == 4u);
  // The IDLE filter on elapsed time.
  f.advance(60ms);
  BOOST_TEST(f.ok(cmd::xpending_range{.key = "s", .group = "g", .min_idle = 50ms}).size() == 4u);

  BOOST_TEST(error_text(f, cmd::xpending{.key = "s", .group = "nope"}) ==
             "NOGROUP No such key 's' or consumer group 'nope'");
  BOOST_TEST(error_text(f, cmd::xpending_range{.key = "missing", .group = "g"}) ==
             "NOGROUP No such key 'missing' or consumer group 'g'");
  BOOST_TEST(error_text(f, cmd::xpending_range{.key = "missing", .group = "g", .start = "x"}) ==
             kInvalidId);
  BOOST_TEST(error_text(f, cmd::xpending_range{.key = "s", .group = "g", .end = "(0-0"}) ==
             "ERR invalid end ID for the interval");
  f.ok(cmd::set{.key = "str", .value = "x"});
  f.fails(cmd::xpending{.key = "str", .group = "g"}, Error::wrong_type);
  f.fails(cmd::xpending_range{.key = "str", .group = "g"}, Error::wrong_type);
}

// ---- claiming
// ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(at_least_once_with_xautoclaim, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "events", 5);
  f.ok(cmd::xgroup_create{.key = "events", .group = "g", .id = "0"});
  // c1 reads and dies without acknowledging.
  auto got = f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "events", .count = 3});
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST((*got)[0].second.size() == 3u);

  // Too early: nothing is idle long enough, the scan still covers the list.
  auto early =
      f.ok(cmd::xautoclaim{.key = "events", .group = "g", .consumer = "c2", .min_idle = 1h});
  CHECK_SAME(early, (rediskit::AutoClaimPage{"0-0", {}, {}}));

  f.advance(80ms);
  // Pages of two: the cursor walks the pending list.
  auto page1 = f.ok(cmd::xautoclaim{
      .key = "events", .group = "g", .consumer = "c2", .min_idle = 50ms, .count = 2});
  BOOST_TEST(page1.next == "3-0");
  CHECK_SAME(page1.entries, (std::vector{entry("1-0", {{"n", "1"}}), entry("2-0", {{"n", "2"}})}));
  BOOST_TEST(page1.deleted.empty());
  auto page2 = f.ok(cmd::xautoclaim{.key = "events",
                                    .group = "g",
                                    .consumer = "c2",
                                    .min_idle = 50ms,
                                    .start = page1.next,
                                    .count = 2});
  BOOST_TEST(page2.next == "0-0");
  CHECK_SAME(ids_of(page2.entries), Strings{"3-0"});

  // Each claim counted a delivery; all three are c2's now, c1 holds nothing.
  auto pending = f.ok(cmd::xpending_range{.key = "events", .group = "g"});
  BOOST_REQUIRE(pending.size() == 3u);
  for (auto const& p : pending) {
    BOOST_TEST(p.consumer == "c2");
    BOOST_TEST(p.deliveries == 2);
    BOOST_TEST(p.idle_ms < 50);
  }
  CHECK_SAME(f.ok(cmd::xpending{.key = "events", .group = "g"}).consumers,
             (std::vector<std::pair<std::string, std::int64_t>>{{"c2", 3}}));
  // c2 claimed them just now: not idle for c3.
  BOOST_TEST(
      f.ok(cmd::xautoclaim{.key = "events", .group = "g", .consumer = "c3", .min_idle = 50ms})
          .entries.empty());
  // A poison entry: claimed again and again, its count grows (dead-letter it past a bound).
  for (int i = 0; i < 3; ++i) {
    f.advance(60ms);
    auto again = f.ok(cmd::xautoclaim{
        .key = "events", .group = "g", .consumer = "c3", .min_idle = 50ms, .count = 1});
    CHECK_SAME(ids_of(again.entries), Strings{"1-0"});
    f.ok(cmd::xack{.key = "events", .group = "g", .ids = {"2-0", "3-0"}});
  }
  auto poison = f.ok(cmd::xpending_range{.key = "events", .group = "g", .count = 1});
  BOOST_REQUIRE(poison.size() == 1u);
  BOOST_TEST(poison[0].deliveries == 5);
  // Dead-lettering: copy it elsewhere, then acknowledge it.
  auto const bad = f.ok(cmd::xrange{.key = "events", .start = "1-0", .end = "1-0"});
  BOOST_REQUIRE(bad.size() == 1u);
  f.ok(cmd::xadd{.key = "events:dead", .fields = bad[0].fields});
  BOOST_TEST(f.ok(cmd::xack{.key = "events", .group = "g", .ids = bad[0].id}) == 1);
  BOOST_TEST(f.ok(cmd::xpending{.key = "events", .group = "g"}).count == 0);
  // JUSTID: ids only, delivery counts unchanged.
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "events"});
  auto ids = f.ok(cmd::xautoclaim_justid{.key = "events", .group = "g", .consumer = "c4"});
  CHECK_SAME(ids, (rediskit::AutoClaimIdsPage{"0-0", {"4-0", "5-0"}, {}}));
  auto counts = f.ok(cmd::xpending_range{.key = "events", .group = "g"});
  BOOST_REQUIRE(counts.size() == 2u);
  BOOST_TEST(counts[0].deliveries == 1);
  BOOST_TEST(counts[0].consumer == "c4");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(deleted_pending_entries, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 4);
  f.ok(cmd::xgroup_create{.key = "s", .group = "g", .id = "0"});
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s"});
  BOOST_TEST(f.ok(cmd::xdel{.key = "s", .ids = {"1-0", "3-0"}}) == 2);
  // A history read shows them as deleted entries ([id, nil] on the wire).
  auto history = f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s", .ids = "0"});
  BOOST_REQUIRE(history.has_value());
  CHECK_SAME((*history)[0].second,
             (std::vector{StreamEntry{"1-0", {}, true}, entry("2-0", {{"n", "2"}}),
                          StreamEntry{"3-0", {}, true}, entry("4-0", {{"n", "4"}})}));
  // XAUTOCLAIM reports them apart and drops them from the pending list; they count in COUNT.
  auto page = f.ok(cmd::xautoclaim{.key = "s", .group = "g", .consumer = "c2", .count = 2});
  CHECK_SAME(page, (rediskit::AutoClaimPage{"3-0", {entry("2-0", {{"n", "2"}})}, {"1-0"}}));
  auto rest = f.ok(cmd::xautoclaim{.key = "s", .group = "g", .consumer = "c2", .start = "3-0"});
  CHECK_SAME(rest, (rediskit::AutoClaimPage{"0-0", {entry("4-0", {{"n", "4"}})}, {"3-0"}}));
  CHECK_SAME(f.ok(cmd::xpending{.key = "s", .group = "g"}),
             (rediskit::PendingSummary{2, "2-0", "4-0", {{"c2", 2}}}));
  // XCLAIM drops a deleted pending id too, and leaves it out of its reply.
  f.ok(cmd::xdel{.key = "s", .ids = "4-0"});
  CHECK_SAME(
      ids_of(f.ok(cmd::xclaim{.key = "s", .group = "g", .consumer = "c3", .ids = {"2-0", "4-0"}})),
      Strings{"2-0"});
  CHECK_SAME(f.ok(cmd::xpending{.key = "s", .group = "g"}),
             (rediskit::PendingSummary{1, "2-0", "2-0", {{"c3", 1}}}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xclaim_options, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 4);
  f.ok(cmd::xgroup_create{.key = "s", .group = "g", .id = "0"});
  f.ok(cmd::xreadgroup{.group = "g", .consumer = "c1", .keys = "s", .count = 2});
  // Not idle long enough: nothing moves.
  BOOST_TEST(
      f.ok(cmd::xclaim{
               .key = "s", .group = "g", .consumer = "c2", .min_idle = 1h, .ids = {"1-0", "2-0"}})
          .empty());
  // Not pending (3-0 was never delivered; 9-0 does not exist): left out.
  CHECK_SAME(
      f.ok(cmd::xclaim{.key = "s", .group = "g", .consumer = "c2", .ids = {"1-0", "3-0", "9-0"}}),
      std::vector{entry("1-0", {{"n", "1"}})});
  // IDLE sets the idle time; RETRYCOUNT the count; JUSTID leaves the count alone.
  CHECK_SAME(
      f.ok(cmd::xclaim_justid{
          .key = "s", .group = "g", .consumer = "c2", .ids = "2-0", .idle = 2h, .retry_count = 7}),
      Strings{"2-0"});
  auto p = f.ok(cmd::xpending_range{.key = "s", .group = "g"});
  BOOST_REQUIRE(p.size() == 2u);
  BOOST_TEST(p[0].deliveries == 2);
  BOOST_TEST(p[1].deliveries == 7);
  BOOST_TEST(p[1].idle_ms >= 7'200'000);
  BOOST_TEST(p[1].idle_ms < 7'300'000);
  CHECK_SAME(
      f.ok(cmd::xclaim_justid{
          .key = "s", .group = "g", .consumer = "c3", .min_idle = 1h, .ids = {"1-0", "2-0"}}),
      Strings{"2-0"});
  BOOST_TEST(f.ok(cmd::xpending_range{.key = "s", .group = "g"})[1].deliveries == 7);
  // TIME: an absolute delivery time (unix ms).
  auto const unix_now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  f.ok(cmd::xclaim{.key = "s",
                   .group = "g",
                   .consumer = "c3",
                   .ids = "1-0",
                   .time_unix_ms = unix_now - 3'600'000});
  if constexpr (!BackendFixture<B>::is_fake) {  // a manual clock has its own unix time
    auto const t = f.ok(cmd::xpending_range{.key = "s", .group = "g", .count = 1});
    BOOST_REQUIRE(t.size() == 1u);
    BOOST_TEST(t[0].idle_ms >= 3'590'000);
    BOOST_TEST(t[0].idle_ms < 3'700'000);
  }
  // FORCE: an entry in the stream but not pending becomes pending.
  CHECK_SAME(
      ids_of(f.ok(cmd::xclaim{
          .key = "s", .group = "g", .consumer = "c4", .ids = {"3-0", "9-0"}, .force = true})),
      Strings{"3-0"});
  CHECK_SAME(f.ok(cmd::xpending{.key = "s", .group = "g"}),
             (rediskit::PendingSummary{3, "1-0", "3-0", {{"c3", 2}, {"c4", 1}}}));
  // A forced pending entry starts as delivered once; the claim counts another.
  auto forced = f.ok(cmd::xpending_range{.key = "s", .group = "g", .start = "3", .end = "3"});
  BOOST_REQUIRE(forced.size() == 1u);
  BOOST_TEST(forced[0].deliveries == 2);
  CHECK_SAME(f.ok(cmd::xclaim_justid{
                 .key = "s", .group = "g", .consumer = "c4", .ids = "4-0", .force = true}),
             Strings{"4-0"});
  BOOST_TEST(
      f.ok(cmd::xpending_range{.key = "s", .group = "g", .start = "4", .end = "4"})[0].deliveries ==
      1);
  BOOST_TEST(f.ok(cmd::xack{.key = "s", .group = "g", .ids = "4-0"}) == 1);
  // LASTID raises the group's last delivered id: 4-0 is then not new any more.
  f.ok(cmd::xclaim{.key = "s", .group = "g", .consumer = "c4", .ids = "3-0", .last_id = "4-0"});
  BOOST_TEST(!f.ok(cmd::xreadgroup{.group = "g", .consumer = "c4", .keys = "s"}).has_value());

  BOOST_TEST(
      error_text(f,
                 cmd::xclaim{.key = "s", .group = "g", .consumer = "c", .ids = {"1-0", "bad"}}) ==
      "ERR Unrecognized XCLAIM option 'bad'");
  BOOST_TEST(
      error_text(
          f,
          cmd::xclaim{.key = "s", .group = "g", .consumer = "c", .ids = "1-0", .last_id = "x"}) ==
      kInvalidId);
  BOOST_TEST(
      error_text(f, cmd::xclaim{.key = "s", .group = "nope", .consumer = "c", .ids = "1-0"}) ==
      "NOGROUP No such key 's' or consumer group 'nope'");
  f.fails(cmd::xclaim_justid{.key = "missing", .group = "g", .consumer = "c", .ids = "1-0"},
          Error::no_group);
  f.ok(cmd::set{.key = "str", .value = "x"});
  f.fails(cmd::xclaim{.key = "str", .group = "g", .consumer = "c", .ids = "1-0"},
          Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(xautoclaim_errors, B, AllBackends) {
  BackendFixture<B> f;
  fill(f, "s", 1);
  f.ok(cmd::xgroup_create{.key = "s", .group = "g", .id = "0"});
  BOOST_TEST(
      error_text(f, cmd::xautoclaim{.key = "s", .group = "g", .consumer = "c", .count = 0}) ==
      "ERR COUNT must be > 0");
  BOOST_TEST(
      error_text(f,
                 cmd::xautoclaim_justid{.key = "s", .group = "g", .consumer = "c", .count = -5}) ==
      "ERR COUNT must be > 0");
  BOOST_TEST(
      error_text(f, cmd::xautoclaim{.key = "s", .group = "g", .consumer = "c", .start = "x"}) ==
      kInvalidId);
  BOOST_TEST(
      error_text(f, cmd::xautoclaim{.key = "s",
                                    .group = "g",
                                    .consumer = "c",
                                    .start = "(18446744073709551615-18446744073709551615"}) ==
      "ERR invalid start ID for the interval");
  // Arguments are checked before the key and the group.
  BOOST_TEST(
      error_text(f, cmd::xautoclaim{.key = "missing", .group = "g", .consumer = "c", .count = 0}) ==
      "ERR COUNT must be > 0");
  BOOST_TEST(error_text(f, cmd::xautoclaim{.key = "missing", .group = "g", .consumer = "c"}) ==
             "NOGROUP No such key 'missing' or consumer group 'g'");
  f.fails(cmd::xautoclaim{.key = "s", .group = "nope", .consumer = "c"}, Error::no_group);
  f.ok(cmd::set{.key = "str", .value = "x"});
  f.fails(cmd::xautoclaim{.key = "str", .group = "g", .consumer = "c"}, Error::wrong_type);
  // Nothing pending: an empty page, and no consumer was created.
  CHECK_SAME(f.ok(cmd::xautoclaim{.key = "s", .group = "g", .consumer = "c"}),
             (rediskit::AutoClaimPage{"0-0", {}, {}}));
  BOOST_TEST(f.ok(cmd::xgroup_createconsumer{.key = "s", .group = "g", .consumer = "c"}) == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(binary_group_and_consumer_names, B, AllBackends) {
  BackendFixture<B> f;
  std::string const key = "k\0\xff"s, group = "g\0 1"s, consumer = "\0c"s;
  fill(f, key, 2);
  BOOST_TEST(f.ok(cmd::xgroup_create{.key = key, .group = group, .id = "0"}));
  auto got = f.ok(cmd::xreadgroup{.group = group, .consumer = consumer, .keys = key});
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST((*got)[0].first == key);
  CHECK_SAME(f.ok(cmd::xpending{.key = key, .group = group}),
             (rediskit::PendingSummary{2, "1-0", "2-0", {{consumer, 2}}}));
  auto p = f.ok(cmd::xpending_range{.key = key, .group = group, .consumer = consumer});
  BOOST_REQUIRE(p.size() == 2u);
  BOOST_TEST(p[0].consumer == consumer);
  // Another group whose name differs only after the NUL byte is another group.
  BOOST_TEST(f.ok(cmd::xgroup_create{.key = key, .group = "g\0 2"s, .id = "$"}));
  BOOST_TEST(f.ok(cmd::xack{.key = key, .group = group, .ids = {"1-0", "2-0"}}) == 2);
}

BOOST_AUTO_TEST_CASE(stream_id_parse_and_format) {
  BOOST_TEST((StreamId::parse("12-34") == StreamId{12, 34}));
  BOOST_TEST((StreamId::parse("12") == StreamId{12, 0}));
  BOOST_TEST((StreamId::parse("12", UINT64_MAX) == StreamId{12, UINT64_MAX}));
  BOOST_TEST((StreamId::parse("18446744073709551615-18446744073709551615") == StreamId::max()));
  for (std::string_view bad :
       {"", "-", "+", "*", "1-", "-1", "1-*", "a", "1-2-3", " 1", "18446744073709551616"})
    BOOST_TEST(!StreamId::parse(bad).has_value(), "id " << bad);
  BOOST_TEST(StreamId{}.to_string() == "0-0");
  BOOST_TEST(StreamId::max().to_string() == "18446744073709551615-18446744073709551615");
  BOOST_TEST((StreamId{1, 2} < StreamId{1, 3}));
  BOOST_TEST((StreamId{1, UINT64_MAX} < StreamId{2, 0}));
}

BOOST_AUTO_TEST_SUITE_END()
