// Conformance: sorted-set and list commands behave the same on every backend (MemoryBackend,
// FakeBackend, a real redis-server through RedisBackend, and a Redis Cluster through
// ClusterBackend), errors included. The keys of one LMOVE / BLMOVE or transaction share a hash
// tag ("{t}src", "{t}dst"), as a cluster requires.
//
// Sorted sets: order by score then member bytes (ties), ranks, the three kinds of ranges with
// their bounds, REV and LIMIT, and the ZADD conditions. Lists: ends, indexes, counts, LMOVE
// and BLMOVE (which waits for a push, or times out).
#include "support/backends.hpp"
#include "support/cross_slot.hpp"
#include "support/differential.hpp"

#include <rediskit/commands.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace std::string_literals;
using namespace std::chrono_literals;
using rediskit::Error;
using rediskit::LexBound;
using rediskit::ListEnd;
using rediskit::RangeLimit;
using rediskit::ScoreBound;
using rediskit::ScoredMembers;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
using rediskit::test::expect_cross_slot;
using rediskit::test::to_text;
namespace cmd = rediskit::cmd;

using Strings = std::vector<std::string>;
using OptScores = std::vector<std::optional<double>>;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Compares through the printed form: readable on failure, and works for any reply type.
#define CHECK_SAME(a, b) BOOST_TEST(to_text(a) == to_text(b))

using rediskit::test::wrong_type_message;

/// z = {a:1, b:2, c:3, d:3, e:4, f:+inf, g:-inf}: ties (c, d) and infinities.
template <class B>
void fill_z(BackendFixture<B>& f) {
  BOOST_TEST(
      f.ok(cmd::zadd{
          .key = "z",
          .members = {
              {1, "a"}, {2, "b"}, {3, "d"}, {3, "c"}, {4, "e"}, {kInf, "f"}, {-kInf, "g"}}}) == 7);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(sorted_sets)

BOOST_AUTO_TEST_CASE(score_and_lex_bounds_text_and_parse) {
  BOOST_TEST(ScoreBound{1.5}.text() == "1.5");
  BOOST_TEST(ScoreBound::excl(1.5).text() == "(1.5");
  BOOST_TEST(ScoreBound::neg_inf().text() == "-inf");
  BOOST_TEST(ScoreBound::pos_inf().text() == "+inf");
  BOOST_TEST(ScoreBound::excl(-3).text() == "(-3");
  BOOST_TEST((ScoreBound::parse("(1.5") == ScoreBound::excl(1.5)));
  BOOST_TEST((ScoreBound::parse("2") == ScoreBound::incl(2)));
  BOOST_TEST((ScoreBound::parse("-inf") == ScoreBound::neg_inf()));
  BOOST_TEST((ScoreBound::parse("+inf") == ScoreBound::pos_inf()));
  BOOST_TEST((ScoreBound::parse("inf") == ScoreBound::pos_inf()));
  BOOST_TEST((ScoreBound::parse("(+inf") == ScoreBound::excl(kInf)));
  BOOST_TEST(!ScoreBound::parse("nan").has_value());
  BOOST_TEST(!ScoreBound::parse("").has_value());
  BOOST_TEST(!ScoreBound::parse("(").has_value());
  BOOST_TEST(!ScoreBound::parse("1x").has_value());
  BOOST_TEST(!ScoreBound::parse("+-1").has_value());

  BOOST_TEST(LexBound::incl("a").text() == "[a");
  BOOST_TEST(LexBound::excl("a").text() == "(a");
  BOOST_TEST(LexBound::lowest().text() == "-");
  BOOST_TEST(LexBound::highest().text() == "+");
  BOOST_TEST((LexBound::parse("[ab") == LexBound::incl("ab")));
  BOOST_TEST((LexBound::parse("(") == LexBound::excl("")));
  BOOST_TEST((LexBound::parse("-") == LexBound::lowest()));
  BOOST_TEST((LexBound::parse("+") == LexBound::highest()));
  BOOST_TEST(!LexBound::parse("a").has_value());
  BOOST_TEST(!LexBound::parse("").has_value());

  // The arguments as the server receives them: REV takes max before min.
  CHECK_SAME(rediskit::argv(cmd::zrange_by_score{.key = "k",
                                                 .min = ScoreBound::excl(1),
                                                 .max = ScoreBound::pos_inf(),
                                                 .rev = true,
                                                 .limit = RangeLimit{2, 5}}),
             (Strings{"ZRANGE", "k", "+inf", "(1", "BYSCORE", "REV", "LIMIT", "2", "5"}));
  CHECK_SAME(rediskit::argv(cmd::zrange_by_lex{.key = "k", .min = LexBound::incl("a")}),
             (Strings{"ZRANGE", "k", "[a", "+", "BYLEX"}));
  CHECK_SAME(rediskit::argv(
                 cmd::zadd_incr{.key = "k", .increment = 2, .member = "m", .xx = true, .gt = true}),
             (Strings{"ZADD", "k", "XX", "GT", "INCR", "2", "m"}));
  CHECK_SAME(rediskit::argv(cmd::blmove{.source = "a",
                                        .destination = "b",
                                        .from = ListEnd::right,
                                        .to = ListEnd::left,
                                        .timeout = 1500ms}),
             (Strings{"BLMOVE", "a", "b", "RIGHT", "LEFT", "1.5005"}));
  // Seconds that the server reads back (x 1000, truncated) as exactly the milliseconds.
  CHECK_SAME(rediskit::argv(cmd::blmove{.source = "a", .destination = "b", .timeout = 1ms}).back(),
             "0.0015"s);
  CHECK_SAME(rediskit::argv(cmd::blmove{.source = "a", .destination = "b", .timeout = 0ms}).back(),
             "0"s);
  CHECK_SAME(rediskit::argv(cmd::blmove{.source = "a", .destination = "b", .timeout = -2ms}).back(),
             "-0.0025"s);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zadd_adds_updates_and_counts, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{1, "a"}, {2, "b"}}}) == 2);
  // An update is not counted; with CH it is (an unchanged score is not).
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{5, "a"}, {3, "c"}}}) == 1);
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{6, "a"}, {2, "b"}, {4, "d"}}, .ch = true}) ==
             2);
  CHECK_SAME(f.ok(cmd::zscore{"z", "a"}), std::optional(6.0));
  // A member given twice takes its last score, and is new once.
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{7, "e"}, {8, "e"}}}) == 1);
  CHECK_SAME(f.ok(cmd::zscore{"z", "e"}), std::optional(8.0));
  // From a container of (score, member) pairs; infinities are scores.
  std::vector<std::pair<double, std::string>> const v = {{-kInf, "lo"}, {kInf, "hi"}};
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = v}) == 2);
  CHECK_SAME(f.ok(cmd::zscore{"z", "lo"}), std::optional(-kInf));
  CHECK_SAME(f.ok(cmd::zscore{"z", "hi"}), std::optional(kInf));
  BOOST_TEST(f.ok(cmd::zcard{"z"}) == 7);
  BOOST_TEST(f.ok(cmd::type{"z"}) == "zset");
  // -0.0 is the score 0: changing 0 to -0 is no change.
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{0.0, "zero"}}}) == 1);
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{-0.0, "zero"}}, .ch = true}) == 0);
  BOOST_TEST(*f.ok(cmd::zscore{"z", "zero"}) == 0.0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zadd_conditions, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{5, "a"}}}) == 1);
  // NX: only new members.
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{1, "a"}, {1, "b"}}, .nx = true}) == 1);
  CHECK_SAME(f.ok(cmd::zmscore{"z", {"a", "b"}}), (OptScores{5.0, 1.0}));
  // XX: only existing ones; a missing key stays missing.
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{2, "b"}, {2, "c"}}, .xx = true, .ch = true}) ==
             1);
  CHECK_SAME(f.ok(cmd::zmscore{"z", {"b", "c"}}), (OptScores{2.0, std::nullopt}));
  BOOST_TEST(f.ok(cmd::zadd{.key = "none", .members = {{1, "a"}}, .xx = true}) == 0);
  BOOST_TEST(f.ok(cmd::exists{"none"}) == 0);
  // GT / LT: existing members only move up / down; new members are still added.
  BOOST_TEST(f.ok(cmd::zadd{
                 .key = "z", .members = {{4, "a"}, {3, "b"}, {9, "n"}}, .gt = true, .ch = true}) ==
             2);
  CHECK_SAME(f.ok(cmd::zmscore{"z", {"a", "b", "n"}}), (OptScores{5.0, 3.0, 9.0}));
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{4, "a"}, {4, "b"}}, .lt = true, .ch = true}) ==
             1);
  CHECK_SAME(f.ok(cmd::zmscore{"z", {"a", "b"}}), (OptScores{4.0, 3.0}));
  // Equal is neither greater nor less.
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{4, "a"}}, .gt = true, .ch = true}) == 0);
  // XX with GT: no new members, existing ones only up.
  BOOST_TEST(
      f.ok(cmd::zadd{
          .key = "z", .members = {{10, "a"}, {10, "new"}}, .xx = true, .gt = true, .ch = true}) ==
      1);
  CHECK_SAME(f.ok(cmd::zmscore{"z", {"a", "new"}}), (OptScores{10.0, std::nullopt}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zadd_refusals_change_nothing, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{1, "a"}}}) == 1);
  BOOST_TEST(error_text(f, cmd::zadd{.key = "z", .members = {{2, "a"}}, .nx = true, .xx = true}) ==
             "ERR XX and NX options at the same time are not compatible");
  std::string const gtlt = "ERR GT, LT, and/or NX options at the same time are not compatible";
  BOOST_TEST(error_text(f, cmd::zadd{.key = "z", .members = {{2, "a"}}, .gt = true, .lt = true}) ==
             gtlt);
  BOOST_TEST(error_text(f, cmd::zadd{.key = "z", .members = {{2, "a"}}, .nx = true, .gt = true}) ==
             gtlt);
  BOOST_TEST(error_text(f, cmd::zadd{.key = "z", .members = {{2, "a"}}, .nx = true, .lt = true}) ==
             gtlt);
  // A NaN anywhere refuses the whole command.
  BOOST_TEST(error_text(f, cmd::zadd{.key = "z", .members = {{2, "b"}, {kNaN, "c"}}}) ==
             "ERR value is not a valid float");
  BOOST_TEST(error_text(f, cmd::zadd{.key = "new", .members = {{kNaN, "c"}}}) ==
             "ERR value is not a valid float");
  // No members at all (the options make the argument count acceptable).
  f.fails(cmd::zadd{.key = "z", .members = {}, .nx = true, .ch = true}, Error::server_error);
  CHECK_SAME(f.ok(cmd::zrange_withscores{"z"}), (ScoredMembers{{"a", 1.0}}));
  BOOST_TEST(f.ok(cmd::exists{"new"}) == 0);
  // Too few arguments.
  f.fails(cmd::zadd{.key = "z", .members = {}}, Error::server_error);
  // WRONGTYPE, also with XX.
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  BOOST_TEST(error_text(f, cmd::zadd{.key = "s", .members = {{1, "a"}}}) == wrong_type_message);
  f.fails(cmd::zadd{.key = "s", .members = {{1, "a"}}, .xx = true}, Error::wrong_type);
  // Argument errors come before the type check.
  BOOST_TEST(error_text(f, cmd::zadd{.key = "s", .members = {{kNaN, "a"}}}) ==
             "ERR value is not a valid float");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zadd_incr_and_zincrby, B, AllBackends) {
  BackendFixture<B> f;
  CHECK_SAME(f.ok(cmd::zadd_incr{.key = "z", .increment = 2.5, .member = "a"}), std::optional(2.5));
  CHECK_SAME(f.ok(cmd::zadd_incr{.key = "z", .increment = 1, .member = "a"}), std::optional(3.5));
  // Conditions refuse with null, changing nothing.
  CHECK_SAME(f.ok(cmd::zadd_incr{.key = "z", .increment = 1, .member = "a", .nx = true}),
             std::optional<double>());
  CHECK_SAME(f.ok(cmd::zadd_incr{.key = "z", .increment = 1, .member = "b", .xx = true}),
             std::optional<double>());
  CHECK_SAME(f.ok(cmd::zadd_incr{.key = "z", .increment = -1, .member = "a", .gt = true}),
             std::optional<double>());
  CHECK_SAME(f.ok(cmd::zadd_incr{.key = "z", .increment = 1, .member = "a", .lt = true}),
             std::optional<double>());
  CHECK_SAME(f.ok(cmd::zadd_incr{.key = "z", .increment = 0, .member = "a", .gt = true}),
             std::optional<double>());
  CHECK_SAME(
      f.ok(cmd::zadd_incr{.key = "z", .increment = 1, .member = "a", .xx = true, .gt = true}),
      std::optional(4.5));
  CHECK_SAME(f.ok(cmd::zadd_incr{.key = "z", .increment = 7, .member = "n", .nx = true}),
             std::optional(7.0));
  CHECK_SAME(f.ok(cmd::zadd_incr{.key = "none", .increment = 1, .member = "a", .xx = true}),
             std::optional<double>());
  BOOST_TEST(f.ok(cmd::exists{"none"}) == 0);
  CHECK_SAME(f.ok(cmd::zmscore{"z", {"a", "b", "n"}}), (OptScores{4.5, std::nullopt, 7.0}));

  BOOST_TEST(f.ok(cmd::zincrby{.key = "y", .increment = -2, .member = "m"}) == -2.0);
  BOOST_TEST(f.ok(cmd::zincrby{.key = "y", .increment = 0.5, .member = "m"}) == -1.5);
  BOOST_TEST(f.ok(cmd::zincrby{.key = "y", .increment = kInf, .member = "m"}) == kInf);
  // +inf + -inf is NaN: refused, the score stays.
  BOOST_TEST(error_text(f, cmd::zincrby{.key = "y", .increment = -kInf, .member = "m"}) ==
             "ERR resulting score is not a number (NaN)");
  BOOST_TEST(error_text(f, cmd::zadd_incr{.key = "y", .increment = -kInf, .member = "m"}) ==
             "ERR resulting score is not a number (NaN)");
  CHECK_SAME(f.ok(cmd::zscore{"y", "m"}), std::optional(kInf));
  BOOST_TEST(error_text(f, cmd::zincrby{.key = "y", .increment = kNaN, .member = "m"}) ==
             "ERR value is not a valid float");
  BOOST_TEST(
      error_text(
          f, cmd::zadd_incr{.key = "y", .increment = 1, .member = "m", .nx = true, .xx = true}) ==
      "ERR XX and NX options at the same time are not compatible");
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::zincrby{.key = "s", .increment = 1, .member = "m"}, Error::wrong_type);
  f.fails(cmd::zadd_incr{.key = "s", .increment = 1, .member = "m"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zrem_zcard_and_empty_sets_vanish, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{1, "a"}, {2, "b"}, {3, "c"}}}) == 3);
  BOOST_TEST(f.ok(cmd::zrem{.key = "z", .members = {"a", "x", "a"}}) == 1);
  BOOST_TEST(f.ok(cmd::zcard{"z"}) == 2);
  BOOST_TEST(f.ok(cmd::zrem{.key = "missing", .members = {"a"}}) == 0);
  BOOST_TEST(f.ok(cmd::zcard{"missing"}) == 0);
  BOOST_TEST(f.ok(cmd::zrem{.key = "z", .members = {"b", "c"}}) == 2);
  BOOST_TEST(f.ok(cmd::exists{"z"}) == 0);
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::zrem{.key = "s", .members = {"a"}}, Error::wrong_type);
  f.fails(cmd::zcard{"s"}, Error::wrong_type);
  f.fails(cmd::zrem{.key = "z", .members = std::vector<std::string>{}}, Error::server_error);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zscore_zmscore_and_binary_members, B, AllBackends) {
  BackendFixture<B> f;
  std::string const bin("a\0b", 3), bin2("a\0c", 3);
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{1.25, bin}, {-3, bin2}, {0, ""}}}) == 3);
  CHECK_SAME(f.ok(cmd::zscore{"z", bin}), std::optional(1.25));
  CHECK_SAME(f.ok(cmd::zscore{"z", "a"}), std::optional<double>());
  CHECK_SAME(f.ok(cmd::zscore{"missing", "a"}), std::optional<double>());
  CHECK_SAME(f.ok(cmd::zmscore{"z", {bin2, "", "nope", bin}}),
             (OptScores{-3.0, 0.0, std::nullopt, 1.25}));
  CHECK_SAME(f.ok(cmd::zmscore{"missing", {"a", "b"}}), (OptScores{std::nullopt, std::nullopt}));
  CHECK_SAME(f.ok(cmd::zrange{"z"}), (Strings{bin2, "", bin}));
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  BOOST_TEST(error_text(f, cmd::zscore{"s", "a"}) == wrong_type_message);
  f.fails(cmd::zmscore{"s", {"a"}}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(equal_scores_order_by_member_bytes, B, AllBackends) {
  BackendFixture<B> f;
  // Unsigned bytes: "\0" first, "\xff" after every ASCII letter; a prefix before the longer.
  std::string const nul("\0", 1), ff("\xff", 1);
  BOOST_TEST(
      f.ok(cmd::zadd{
          .key = "z",
          .members =
              {{1, "b"}, {1, ff}, {1, "ab"}, {1, "a"}, {1, nul}, {1, "B"}, {1, ""}, {0, "zz"}}}) ==
      8);
  CHECK_SAME(f.ok(cmd::zrange{"z"}), (Strings{"zz", "", nul, "B", "a", "ab", "b", ff}));
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .rev = true}),
             (Strings{ff, "b", "ab", "a", "B", nul, "", "zz"}));
  CHECK_SAME(f.ok(cmd::zrank{"z", "ab"}), std::optional<std::int64_t>(5));
  CHECK_SAME(f.ok(cmd::zrevrank{"z", "ab"}), std::optional<std::int64_t>(2));
  // Moving a member to a tie re-sorts it among the tied ones.
  BOOST_TEST(f.ok(cmd::zadd{.key = "z", .members = {{1, "zz"}}}) == 0);
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .start = -2}), (Strings{"zz", ff}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zrank_and_zrevrank, B, AllBackends) {
  BackendFixture<B> f;
  fill_z(f);  // g a b c d e f
  CHECK_SAME(f.ok(cmd::zrank{"z", "g"}), std::optional<std::int64_t>(0));
  CHECK_SAME(f.ok(cmd::zrank{"z", "d"}), std::optional<std::int64_t>(4));
  CHECK_SAME(f.ok(cmd::zrank{"z", "f"}), std::optional<std::int64_t>(6));
  CHECK_SAME(f.ok(cmd::zrevrank{"z", "f"}), std::optional<std::int64_t>(0));
  CHECK_SAME(f.ok(cmd::zrevrank{"z", "c"}), std::optional<std::int64_t>(3));
  CHECK_SAME(f.ok(cmd::zrank{"z", "x"}), std::optional<std::int64_t>());
  CHECK_SAME(f.ok(cmd::zrevrank{"missing", "x"}), std::optional<std::int64_t>());
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::zrank{"s", "a"}, Error::wrong_type);
  f.fails(cmd::zrevrank{"s", "a"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(large_set_ranks_and_index_ranges, B, AllBackends) {
  BackendFixture<B> f;
  // Big enough to leave a server's compact encoding: 3000 members, scores i / 3 (ties of 3).
  std::vector<std::pair<double, std::string>> v;
  for (int i = 0; i < 3000; ++i)
    v.emplace_back(i / 3, "m" + std::to_string(10000 + i));
  BOOST_TEST(f.ok(cmd::zadd{.key = "big", .members = v}) == 3000);
  for (int i : {0, 1, 2, 1499, 2998, 2999}) {
    std::string const m = "m" + std::to_string(10000 + i);
    CHECK_SAME(f.ok(cmd::zrank{"big", m}), std::optional<std::int64_t>(i));
    CHECK_SAME(f.ok(cmd::zrevrank{"big", m}), std::optional<std::int64_t>(2999 - i));
  }
  CHECK_SAME(f.ok(cmd::zrange_withscores{.key = "big", .start = 1500, .stop = 1502}),
             (ScoredMembers{{"m11500", 500.0}, {"m11501", 500.0}, {"m11502", 500.0}}));
  CHECK_SAME(f.ok(cmd::zrange{.key = "big", .start = 1, .stop = 2, .rev = true}),
             (Strings{"m12998", "m12997"}));
  BOOST_TEST(f.ok(cmd::zcount{.key = "big", .min = {100}, .max = ScoreBound::excl(200)}) == 300);
  CHECK_SAME(
      f.ok(cmd::zrange_by_score{
          .key = "big", .min = ScoreBound::excl(998), .rev = true, .limit = RangeLimit{1, 2}}),
      (Strings{"m12998", "m12997"}));
  // Scores change: members move.
  BOOST_TEST(f.ok(cmd::zadd{.key = "big", .members = {{-1, "m12000"}, {5000, "m10000"}}}) == 0);
  CHECK_SAME(f.ok(cmd::zrank{"big", "m12000"}), std::optional<std::int64_t>(0));
  CHECK_SAME(f.ok(cmd::zrevrank{"big", "m10000"}), std::optional<std::int64_t>(0));
  CHECK_SAME(f.ok(cmd::zrank{"big", "m10001"}), std::optional<std::int64_t>(1));
  BOOST_TEST(f.ok(cmd::zremrangebyrank{.key = "big", .start = 0, .stop = -1001}) == 2000);
  BOOST_TEST(f.ok(cmd::zcard{"big"}) == 1000);
  CHECK_SAME(f.ok(cmd::zrank{"big", "m12001"}), std::optional<std::int64_t>(0));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zrange_by_index, B, AllBackends) {
  BackendFixture<B> f;
  fill_z(f);  // g a b c d e f
  CHECK_SAME(f.ok(cmd::zrange{"z"}), (Strings{"g", "a", "b", "c", "d", "e", "f"}));
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .start = 1, .stop = 3}), (Strings{"a", "b", "c"}));
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .start = -3, .stop = -2}), (Strings{"d", "e"}));
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .start = -100, .stop = 1}), (Strings{"g", "a"}));
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .start = 5, .stop = 100}), (Strings{"e", "f"}));
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .start = 3, .stop = 2}), Strings{});
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .start = 7, .stop = 10}), Strings{});
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .start = -1, .stop = -2}), Strings{});
  CHECK_SAME(f.ok(cmd::zrange{.key = "z",
                              .start = std::numeric_limits<std::int64_t>::min(),
                              .stop = std::numeric_limits<std::int64_t>::max()}),
             (Strings{"g", "a", "b", "c", "d", "e", "f"}));
  // REV: indexes count from the highest.
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .start = 0, .stop = 2, .rev = true}),
             (Strings{"f", "e", "d"}));
  CHECK_SAME(f.ok(cmd::zrange{.key = "z", .start = -2, .stop = -1, .rev = true}),
             (Strings{"a", "g"}));
  CHECK_SAME(f.ok(cmd::zrange_withscores{.key = "z", .start = 0, .stop = 1}),
             (ScoredMembers{{"g", -kInf}, {"a", 1.0}}));
  CHECK_SAME(f.ok(cmd::zrange_withscores{.key = "z", .start = 0, .stop = 1, .rev = true}),
             (ScoredMembers{{"f", kInf}, {"e", 4.0}}));
  CHECK_SAME(f.ok(cmd::zrange{"missing"}), Strings{});
  CHECK_SAME(f.ok(cmd::zrange_withscores{"missing"}), ScoredMembers{});
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::zrange{"s"}, Error::wrong_type);
  f.fails(cmd::zrange_withscores{"s"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zrange_by_score_bounds_rev_and_limit, B, AllBackends) {
  BackendFixture<B> f;
  fill_z(f);  // g:-inf a:1 b:2 c:3 d:3 e:4 f:+inf
  using SB = ScoreBound;
  auto by = [&](SB min, SB max, bool rev = false, std::optional<RangeLimit> lim = {}) {
    return f.ok(cmd::zrange_by_score{.key = "z", .min = min, .max = max, .rev = rev, .limit = lim});
  };
  CHECK_SAME(by(SB::neg_inf(), SB::pos_inf()), (Strings{"g", "a", "b", "c", "d", "e", "f"}));
  CHECK_SAME(by({2}, {3}), (Strings{"b", "c", "d"}));
  CHECK_SAME(by(SB::excl(2), {3}), (Strings{"c", "d"}));
  CHECK_SAME(by({2}, SB::excl(3)), (Strings{"b"}));
  CHECK_SAME(by(SB::excl(1), SB::excl(4)), (Strings{"b", "c", "d"}));
  CHECK_SAME(by({3}, {3}), (Strings{"c", "d"}));
  CHECK_SAME(by(SB::excl(3), {3}), Strings{});
  CHECK_SAME(by({4}, {1}), Strings{});
  CHECK_SAME(by({1.5}, {2.5}), (Strings{"b"}));
  // Infinite bounds and infinite scores.
  CHECK_SAME(by(SB::neg_inf(), SB::neg_inf()), (Strings{"g"}));
  CHECK_SAME(by(SB::excl(-kInf), {1}), (Strings{"a"}));
  CHECK_SAME(by({4}, SB::excl(kInf)), (Strings{"e"}));
  CHECK_SAME(by(SB::pos_inf(), SB::pos_inf()), (Strings{"f"}));
  // REV: highest first (ties: the higher member first).
  CHECK_SAME(by({2}, {4}, true), (Strings{"e", "d", "c", "b"}));
  // LIMIT in the reply's order.
  CHECK_SAME(by(SB::neg_inf(), SB::pos_inf(), false, RangeLimit{1, 2}), (Strings{"a", "b"}));
  CHECK_SAME(by(SB::neg_inf(), SB::pos_inf(), true, RangeLimit{1, 2}), (Strings{"e", "d"}));
  CHECK_SAME(by({2}, {4}, true, RangeLimit{2, -1}), (Strings{"c", "b"}));
  CHECK_SAME(by({2}, {4}, false, RangeLimit{1, -5}), (Strings{"c", "d", "e"}));
  CHECK_SAME(by({2}, {4}, false, RangeLimit{0, 0}), Strings{});
  CHECK_SAME(by({2}, {4}, false, RangeLimit{4, 1}), Strings{});
  CHECK_SAME(by({2}, {4}, false, RangeLimit{-1, 2}), Strings{});
  CHECK_SAME(by({2}, {4}, true, RangeLimit{3, 10}), (Strings{"b"}));
  CHECK_SAME(f.ok(cmd::zrange_by_score_withscores{.key = "z", .min = SB::excl(3)}),
             (ScoredMembers{{"e", 4.0}, {"f", kInf}}));
  CHECK_SAME(f.ok(cmd::zrange_by_score_withscores{
                 .key = "z", .max = {2}, .rev = true, .limit = RangeLimit{1, 5}}),
             (ScoredMembers{{"a", 1.0}, {"g", -kInf}}));
  CHECK_SAME(f.ok(cmd::zrange_by_score{.key = "missing"}), Strings{});
  // A NaN bound is refused, before the type is looked at.
  BOOST_TEST(error_text(f, cmd::zrange_by_score{.key = "z", .min = {kNaN}}) ==
             "ERR min or max is not a float");
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  BOOST_TEST(error_text(f, cmd::zrange_by_score{.key = "s", .max = {kNaN}}) ==
             "ERR min or max is not a float");
  f.fails(cmd::zrange_by_score{.key = "s"}, Error::wrong_type);
  f.fails(cmd::zrange_by_score_withscores{.key = "s"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zcount_bounds, B, AllBackends) {
  BackendFixture<B> f;
  fill_z(f);
  BOOST_TEST(f.ok(cmd::zcount{.key = "z"}) == 7);
  BOOST_TEST(f.ok(cmd::zcount{.key = "z", .min = {3}, .max = {3}}) == 2);
  BOOST_TEST(f.ok(cmd::zcount{.key = "z", .min = ScoreBound::excl(1), .max = {4}}) == 4);
  BOOST_TEST(f.ok(cmd::zcount{
                 .key = "z", .min = ScoreBound::excl(-kInf), .max = ScoreBound::excl(kInf)}) == 5);
  BOOST_TEST(f.ok(cmd::zcount{.key = "z", .min = {5}, .max = {1}}) == 0);
  BOOST_TEST(f.ok(cmd::zcount{.key = "missing"}) == 0);
  BOOST_TEST(error_text(f, cmd::zcount{.key = "z", .min = {kNaN}}) ==
             "ERR min or max is not a float");
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::zcount{.key = "s"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zrange_by_lex, B, AllBackends) {
  BackendFixture<B> f;
  std::string const nul("\0", 1), ab0("ab\0", 3);
  BOOST_TEST(f.ok(cmd::zadd{.key = "l",
                            .members = {{0, "b"},
                                        {0, "a"},
                                        {0, "ab"},
                                        {0, "abc"},
                                        {0, "c"},
                                        {0, nul},
                                        {0, ab0},
                                        {0, "\xff"}}}) == 8);
  using LB = LexBound;
  auto by = [&](LB min, LB max, bool rev = false, std::optional<RangeLimit> lim = {}) {
    return f.ok(cmd::zrange_by_lex{.key = "l", .min = min, .max = max, .rev = rev, .limit = lim});
  };
  CHECK_SAME(by(LB::lowest(), LB::highest()),
             (Strings{nul, "a", "ab", ab0, "abc", "b", "c", "\xff"}));
  CHECK_SAME(by(LB::incl("ab"), LB::incl("b")), (Strings{"ab", ab0, "abc", "b"}));
  CHECK_SAME(by(LB::excl("ab"), LB::excl("b")), (Strings{ab0, "abc"}));
  CHECK_SAME(by(LB::incl("aa"), LB::incl("ab")), (Strings{"ab"}));
  CHECK_SAME(by(LB::lowest(), LB::excl("a")), (Strings{nul}));
  CHECK_SAME(by(LB::incl(""), LB::incl(nul)), (Strings{nul}));
  CHECK_SAME(by(LB::excl("c"), LB::highest()), (Strings{"\xff"}));
  CHECK_SAME(by(LB::incl("b"), LB::incl("a")), Strings{});
  CHECK_SAME(by(LB::excl("b"), LB::incl("b")), Strings{});
  CHECK_SAME(by(LB::highest(), LB::highest()), Strings{});
  CHECK_SAME(by(LB::lowest(), LB::lowest()), Strings{});
  CHECK_SAME(by(LB::highest(), LB::lowest()), Strings{});
  // REV: highest first; LIMIT in that order.
  CHECK_SAME(by(LB::incl("a"), LB::incl("b"), true), (Strings{"b", "abc", ab0, "ab", "a"}));
  CHECK_SAME(by(LB::incl("a"), LB::incl("b"), true, RangeLimit{1, 2}), (Strings{"abc", ab0}));
  CHECK_SAME(by(LB::lowest(), LB::highest(), false, RangeLimit{6, 10}), (Strings{"c", "\xff"}));
  CHECK_SAME(by(LB::lowest(), LB::highest(), false, RangeLimit{-1, 10}), Strings{});
  CHECK_SAME(f.ok(cmd::zrange_by_lex{.key = "missing"}), Strings{});
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::zrange_by_lex{.key = "s"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zremrangebyscore_and_zremrangebyrank, B, AllBackends) {
  BackendFixture<B> f;
  fill_z(f);  // g:-inf a:1 b:2 c:3 d:3 e:4 f:+inf
  BOOST_TEST(f.ok(cmd::zremrangebyscore{.key = "z", .min = ScoreBound::excl(1), .max = {3}}) == 3);
  CHECK_SAME(f.ok(cmd::zrange{"z"}), (Strings{"g", "a", "e", "f"}));
  BOOST_TEST(f.ok(cmd::zremrangebyscore{.key = "z", .min = {10}, .max = {20}}) == 0);
  BOOST_TEST(f.ok(cmd::zremrangebyscore{.key = "z", .min = ScoreBound::pos_inf()}) == 1);
  BOOST_TEST(f.ok(cmd::zremrangebyscore{.key = "missing"}) == 0);
  BOOST_TEST(error_text(f, cmd::zremrangebyscore{.key = "z", .max = {kNaN}}) ==
             "ERR min or max is not a float");

  BOOST_TEST(f.ok(cmd::zremrangebyrank{.key = "z", .start = -1, .stop = -1}) == 1);
  CHECK_SAME(f.ok(cmd::zrange{"z"}), (Strings{"g", "a"}));
  BOOST_TEST(f.ok(cmd::zremrangebyrank{.key = "z", .start = 2, .stop = 5}) == 0);
  BOOST_TEST(f.ok(cmd::zremrangebyrank{.key = "z", .start = 1, .stop = 0}) == 0);
  BOOST_TEST(f.ok(cmd::zremrangebyrank{.key = "z", .start = -100, .stop = 100}) == 2);
  BOOST_TEST(f.ok(cmd::exists{"z"}) == 0);
  BOOST_TEST(f.ok(cmd::zremrangebyrank{.key = "missing"}) == 0);
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::zremrangebyrank{.key = "s"}, Error::wrong_type);
  f.fails(cmd::zremrangebyscore{.key = "s"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(zpopmin_and_zpopmax, B, AllBackends) {
  BackendFixture<B> f;
  fill_z(f);  // g:-inf a:1 b:2 c:3 d:3 e:4 f:+inf
  CHECK_SAME(f.ok(cmd::zpopmin{"z"}), (ScoredMembers{{"g", -kInf}}));
  CHECK_SAME(f.ok(cmd::zpopmin{"z", 2}), (ScoredMembers{{"a", 1.0}, {"b", 2.0}}));
  CHECK_SAME(f.ok(cmd::zpopmax{"z"}), (ScoredMembers{{"f", kInf}}));
  CHECK_SAME(f.ok(cmd::zpopmax{"z", 2}), (ScoredMembers{{"e", 4.0}, {"d", 3.0}}));
  CHECK_SAME(f.ok(cmd::zpopmin{"z", 0}), ScoredMembers{});
  BOOST_TEST(error_text(f, cmd::zpopmin{"z", -1}) == "ERR value is out of range, must be positive");
  f.fails(cmd::zpopmax{"z", -1}, Error::server_error);
  CHECK_SAME(f.ok(cmd::zpopmin{"z", 10}), (ScoredMembers{{"c", 3.0}}));
  BOOST_TEST(f.ok(cmd::exists{"z"}) == 0);
  CHECK_SAME(f.ok(cmd::zpopmin{"z"}), ScoredMembers{});
  CHECK_SAME(f.ok(cmd::zpopmax{"z", 3}), ScoredMembers{});
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::zpopmin{"s"}, Error::wrong_type);
  f.fails(cmd::zpopmax{"s", 0}, Error::wrong_type);
  // The count is checked before the type.
  BOOST_TEST(error_text(f, cmd::zpopmin{"s", -1}) == "ERR value is out of range, must be positive");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(sorted_set_commands_in_a_transaction, B, AllBackends) {
  BackendFixture<B> f;
  auto [added, inc, rank, top] = f.ok(rediskit::transaction(
      cmd::zadd{.key = "lb", .members = {{10, "ann"}, {20, "bob"}, {15, "cy"}}},
      cmd::zincrby{.key = "lb", .increment = 10, .member = "ann"}, cmd::zrevrank{"lb", "ann"},
      cmd::zrange_withscores{.key = "lb", .start = 0, .stop = 1, .rev = true}));
  BOOST_TEST(added == 3);
  BOOST_TEST(inc == 20.0);
  CHECK_SAME(rank, std::optional<std::int64_t>(1));  // ann:20 and bob:20 tie: "bob" > "ann"
  CHECK_SAME(top, (ScoredMembers{{"bob", 20.0}, {"ann", 20.0}}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(lists)

BOOST_AUTO_TEST_CASE_TEMPLATE(push_ends_and_lrange, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::rpush{.key = "l", .values = {"a", "b"}}) == 2);
  BOOST_TEST(f.ok(cmd::lpush{.key = "l", .values = {"x", "y"}}) == 4);  // y x a b
  std::vector<std::string> const more = {"c", std::string("n\0l", 3), ""};
  BOOST_TEST(f.ok(cmd::rpush{.key = "l", .values = more}) == 7);
  CHECK_SAME(f.ok(cmd::lrange{.key = "l"}),
             (Strings{"y", "x", "a", "b", "c", std::string("n\0l", 3), ""}));
  CHECK_SAME(f.ok(cmd::lrange{.key = "l", .start = 1, .stop = 2}), (Strings{"x", "a"}));
  CHECK_SAME(f.ok(cmd::lrange{.key = "l", .start = -3, .stop = -2}),
             (Strings{"c", std::string("n\0l", 3)}));
  CHECK_SAME(f.ok(cmd::lrange{.key = "l", .start = -100, .stop = 0}), (Strings{"y"}));
  CHECK_SAME(f.ok(cmd::lrange{.key = "l", .start = 5, .stop = 100}),
             (Strings{std::string("n\0l", 3), ""}));
  CHECK_SAME(f.ok(cmd::lrange{.key = "l", .start = 3, .stop = 2}), Strings{});
  CHECK_SAME(f.ok(cmd::lrange{.key = "l", .start = 7, .stop = 9}), Strings{});
  CHECK_SAME(f.ok(cmd::lrange{.key = "l",
                              .start = std::numeric_limits<std::int64_t>::min(),
                              .stop = std::numeric_limits<std::int64_t>::min()}),
             Strings{});
  CHECK_SAME(f.ok(cmd::lrange{.key = "missing"}), Strings{});
  BOOST_TEST(f.ok(cmd::llen{"l"}) == 7);
  BOOST_TEST(f.ok(cmd::llen{"missing"}) == 0);
  BOOST_TEST(f.ok(cmd::type{"l"}) == "list");
  f.fails(cmd::rpush{.key = "l", .values = std::vector<std::string>{}}, Error::server_error);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(pops_with_and_without_count, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::rpush{.key = "l", .values = {"a", "b", "c", "d", "e"}}) == 5);
  CHECK_SAME(f.ok(cmd::lpop{"l"}), std::optional("a"s));
  CHECK_SAME(f.ok(cmd::rpop{"l"}), std::optional("e"s));
  CHECK_SAME(f.ok(cmd::lpop_count{"l", 2}), std::optional(Strings{"b", "c"}));
  CHECK_SAME(f.ok(cmd::rpop_count{"l", 0}), std::optional(Strings{}));
  CHECK_SAME(f.ok(cmd::rpop_count{"l", 10}), std::optional(Strings{"d"}));
  BOOST_TEST(f.ok(cmd::exists{"l"}) == 0);
  CHECK_SAME(f.ok(cmd::lpop{"l"}), std::optional<std::string>());
  CHECK_SAME(f.ok(cmd::rpop{"l"}), std::optional<std::string>());
  CHECK_SAME(f.ok(cmd::lpop_count{"l", 3}), std::optional<Strings>());
  CHECK_SAME(f.ok(cmd::rpop_count{"l", 0}), std::optional<Strings>());
  BOOST_TEST(f.ok(cmd::rpush{.key = "l", .values = {"x", "y", "z"}}) == 3);
  CHECK_SAME(f.ok(cmd::rpop_count{"l", 2}), std::optional(Strings{"z", "y"}));
  BOOST_TEST(error_text(f, cmd::lpop_count{"l", -1}) ==
             "ERR value is out of range, must be positive");
  f.fails(cmd::rpop_count{"missing", -1}, Error::server_error);
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::lpop{"s"}, Error::wrong_type);
  f.fails(cmd::rpop{"s"}, Error::wrong_type);
  f.fails(cmd::lpop_count{"s", 0}, Error::wrong_type);
  f.fails(cmd::rpop_count{"s", 2}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(ltrim_keeps_a_range, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::rpush{.key = "l", .values = {"a", "b", "c", "d", "e", "f"}}) == 6);
  BOOST_TEST(f.ok(cmd::ltrim{.key = "l", .start = 1, .stop = -2}));
  CHECK_SAME(f.ok(cmd::lrange{.key = "l"}), (Strings{"b", "c", "d", "e"}));
  // A capped list: the last 3.
  BOOST_TEST(f.ok(cmd::ltrim{.key = "l", .start = -3, .stop = -1}));
  CHECK_SAME(f.ok(cmd::lrange{.key = "l"}), (Strings{"c", "d", "e"}));
  BOOST_TEST(f.ok(cmd::ltrim{.key = "l", .start = -100, .stop = 100}));
  BOOST_TEST(f.ok(cmd::llen{"l"}) == 3);
  BOOST_TEST(f.ok(cmd::ltrim{.key = "l", .start = 2, .stop = 1}));
  BOOST_TEST(f.ok(cmd::exists{"l"}) == 0);
  BOOST_TEST(f.ok(cmd::ltrim{.key = "missing", .start = 0, .stop = 1}));
  BOOST_TEST(f.ok(cmd::exists{"missing"}) == 0);
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::ltrim{.key = "s"}, Error::wrong_type);
  f.fails(cmd::llen{"s"}, Error::wrong_type);
  f.fails(cmd::lrange{.key = "s"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(lrem_from_either_end, B, AllBackends) {
  BackendFixture<B> f;
  auto reset = [&] {
    f.ok(cmd::del{"l"});
    BOOST_TEST(f.ok(cmd::rpush{.key = "l", .values = {"x", "a", "x", "b", "x", "c"}}) == 6);
  };
  reset();
  BOOST_TEST(f.ok(cmd::lrem{.key = "l", .count = 2, .element = "x"}) == 2);
  CHECK_SAME(f.ok(cmd::lrange{.key = "l"}), (Strings{"a", "b", "x", "c"}));
  reset();
  BOOST_TEST(f.ok(cmd::lrem{.key = "l", .count = -2, .element = "x"}) == 2);
  CHECK_SAME(f.ok(cmd::lrange{.key = "l"}), (Strings{"x", "a", "b", "c"}));
  reset();
  BOOST_TEST(f.ok(cmd::lrem{.key = "l", .count = 0, .element = "x"}) == 3);
  CHECK_SAME(f.ok(cmd::lrange{.key = "l"}), (Strings{"a", "b", "c"}));
  reset();
  BOOST_TEST(f.ok(cmd::lrem{
                 .key = "l", .count = std::numeric_limits<std::int64_t>::min(), .element = "x"}) ==
             3);
  BOOST_TEST(f.ok(cmd::lrem{.key = "l", .count = 1, .element = "nope"}) == 0);
  BOOST_TEST(f.ok(cmd::lrem{.key = "missing", .count = 1, .element = "x"}) == 0);
  BOOST_TEST(f.ok(cmd::lrem{.key = "l", .count = 0, .element = "a"}) == 1);
  BOOST_TEST(f.ok(cmd::lrem{.key = "l", .count = -5, .element = "b"}) == 1);
  BOOST_TEST(f.ok(cmd::lrem{.key = "l", .count = 5, .element = "c"}) == 1);
  BOOST_TEST(f.ok(cmd::exists{"l"}) == 0);
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::lrem{.key = "s", .count = 1, .element = "x"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(lindex_and_lset, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::rpush{.key = "l", .values = {"a", "b", "c"}}) == 3);
  CHECK_SAME(f.ok(cmd::lindex{"l", 0}), std::optional("a"s));
  CHECK_SAME(f.ok(cmd::lindex{"l", -1}), std::optional("c"s));
  CHECK_SAME(f.ok(cmd::lindex{"l", 3}), std::optional<std::string>());
  CHECK_SAME(f.ok(cmd::lindex{"l", -4}), std::optional<std::string>());
  CHECK_SAME(f.ok(cmd::lindex{"missing", 0}), std::optional<std::string>());
  BOOST_TEST(f.ok(cmd::lset{.key = "l", .index = -2, .element = "long value"}));
  CHECK_SAME(f.ok(cmd::lrange{.key = "l"}), (Strings{"a", "long value", "c"}));
  BOOST_TEST(error_text(f, cmd::lset{.key = "l", .index = 3, .element = "x"}) ==
             "ERR index out of range");
  BOOST_TEST(error_text(f, cmd::lset{.key = "missing", .index = 0, .element = "x"}) ==
             "ERR no such key");
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "x"}));
  f.fails(cmd::lindex{"s", 0}, Error::wrong_type);
  f.fails(cmd::lset{.key = "s", .index = 0, .element = "x"}, Error::wrong_type);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(lmove_between_ends, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::rpush{.key = "{t}src", .values = {"a", "b", "c", "d"}}) == 4);
  CHECK_SAME(f.ok(cmd::lmove{"{t}src", "{t}dst", ListEnd::left, ListEnd::right}),
             std::optional("a"s));
  CHECK_SAME(f.ok(cmd::lmove{"{t}src", "{t}dst", ListEnd::right, ListEnd::right}),
             std::optional("d"s));
  CHECK_SAME(f.ok(cmd::lmove{"{t}src", "{t}dst", ListEnd::left, ListEnd::left}),
             std::optional("b"s));
  CHECK_SAME(f.ok(cmd::lrange{.key = "{t}dst"}), (Strings{"b", "a", "d"}));
  // The same list: a rotation.
  CHECK_SAME(f.ok(cmd::lmove{"{t}dst", "{t}dst", ListEnd::right, ListEnd::left}),
             std::optional("d"s));
  CHECK_SAME(f.ok(cmd::lrange{.key = "{t}dst"}), (Strings{"d", "b", "a"}));
  CHECK_SAME(f.ok(cmd::lmove{"{t}src", "{t}src", ListEnd::left, ListEnd::right}),
             std::optional("c"s));
  CHECK_SAME(f.ok(cmd::lmove{"{t}src", "{t}dst", ListEnd::right, ListEnd::left}),
             std::optional("c"s));
  BOOST_TEST(f.ok(cmd::exists{"{t}src"}) == 0);
  CHECK_SAME(f.ok(cmd::lrange{.key = "{t}dst"}), (Strings{"c", "d", "b", "a"}));
  // A missing source moves nothing and creates nothing.
  CHECK_SAME(f.ok(cmd::lmove{"{t}src", "{t}other", ListEnd::left, ListEnd::left}),
             std::optional<std::string>());
  BOOST_TEST(f.ok(cmd::exists{"{t}other"}) == 0);
  // WRONGTYPE on either side; nothing moves.
  BOOST_TEST(f.ok(cmd::set{.key = "{t}s", .value = "x"}));
  BOOST_TEST(error_text(f, cmd::lmove{"{t}dst", "{t}s", ListEnd::left, ListEnd::left}) ==
             wrong_type_message);
  f.fails(cmd::lmove{"{t}s", "{t}dst", ListEnd::left, ListEnd::left}, Error::wrong_type);
  BOOST_TEST(f.ok(cmd::llen{"{t}dst"}) == 4);
  // A missing source with a wrong-type destination: nothing to move, no error.
  CHECK_SAME(f.ok(cmd::lmove{"{t}src", "{t}s", ListEnd::left, ListEnd::left}),
             std::optional<std::string>());
  // Keys in two slots: refused on a cluster (and by MemoryBackend's cluster checks).
  expect_cross_slot(f, cmd::lmove{"src", "dst", ListEnd::left, ListEnd::right});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(blmove_moves_at_once_when_there_is_data, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::rpush{.key = "{t}q", .values = {"job1", "job2"}}) == 2);
  CHECK_SAME(f.ok(cmd::blmove{.source = "{t}q",
                              .destination = "{t}work",
                              .from = ListEnd::left,
                              .to = ListEnd::right,
                              .timeout = 5s}),
             std::optional("job1"s));
  CHECK_SAME(f.ok(cmd::lrange{.key = "{t}work"}), (Strings{"job1"}));
  BOOST_TEST(
      error_text(f, cmd::blmove{.source = "{t}q", .destination = "{t}work", .timeout = -1ms}) ==
      "ERR timeout is negative");
  BOOST_TEST(f.ok(cmd::set{.key = "{t}s", .value = "x"}));
  f.fails(cmd::blmove{.source = "{t}s", .destination = "{t}work", .timeout = 5s},
          Error::wrong_type);
  f.fails(cmd::blmove{.source = "{t}q", .destination = "{t}s", .timeout = 5s}, Error::wrong_type);
  BOOST_TEST(f.ok(cmd::llen{"{t}q"}) == 1);
  // In a transaction it never waits: nil at once on an empty source.
  auto [moved, len] = f.ok(rediskit::transaction(
      cmd::blmove{.source = "{t}empty", .destination = "{t}work", .timeout = 5s},
      cmd::llen{"{t}work"}));
  CHECK_SAME(moved, std::optional<std::string>());
  BOOST_TEST(len == 1);
  // Keys in two slots: refused on a cluster (and by MemoryBackend's cluster checks), before it
  // waits.
  expect_cross_slot(f, cmd::blmove{.source = "q", .destination = "work", .timeout = 5s});
}

BOOST_AUTO_TEST_CASE_TEMPLATE(blmove_waits_for_a_push, B, AllBackends) {
  BackendFixture<B> f;
  // The command's views must outlive it: literals.
  cmd::blmove const c{.source = "{t}jobs",
                      .destination = "{t}taken",
                      .from = ListEnd::left,
                      .to = ListEnd::left,
                      .timeout = 0ms};
  std::optional<std::pair<boost::system::error_code, std::optional<std::string>>> done;
  f.backend.async_exec(c, [&](boost::system::error_code ec, std::optional<std::string> r) {
    done.emplace(ec, std::move(r));
  });
  // In process, the wait is seen at once; a server (a cluster's master) answers when it does.
  if constexpr (!BackendFixture<B>::on_server) {
    f.ioc.poll();
    BOOST_TEST(!done.has_value());  // waiting
    // A write to another key does not wake it.
    BOOST_TEST(f.ok(cmd::rpush{.key = "other", .values = {"x"}}) == 1);
    f.ioc.poll();
    BOOST_TEST(!done.has_value());
  }
  BOOST_TEST(f.ok(cmd::rpush{.key = "{t}jobs", .values = {"j1", "j2"}}) == 2);
  f.run_until([&] { return done.has_value(); });
  BOOST_TEST(!done->first);
  CHECK_SAME(done->second, std::optional("j1"s));
  CHECK_SAME(f.ok(cmd::lrange{.key = "{t}taken"}), (Strings{"j1"}));
  CHECK_SAME(f.ok(cmd::lrange{.key = "{t}jobs"}), (Strings{"j2"}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(blmove_times_out_with_nil, B, AllBackends) {
  BackendFixture<B> f;
  // 1 ms too: it must not turn into "forever" on its way to the server.
  for (auto const timeout : {100ms, 1ms}) {
    cmd::blmove const c{.source = "{t}nothing", .destination = "{t}taken", .timeout = timeout};
    std::optional<std::pair<boost::system::error_code, std::optional<std::string>>> done;
    f.backend.async_exec(c, [&](boost::system::error_code ec, std::optional<std::string> r) {
      done.emplace(ec, std::move(r));
    });
    if constexpr (!BackendFixture<B>::on_server) {  // in process: the wait is seen at once
      f.ioc.poll();
      BOOST_TEST(!done.has_value());
    }
    f.advance(timeout + 50ms);
    f.run_until([&] { return done.has_value(); });
    BOOST_TEST(!done->first);
    CHECK_SAME(done->second, std::optional<std::string>());
  }
  BOOST_TEST(f.ok(cmd::exists{"{t}taken"}) == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(list_commands_on_a_zset_and_back, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::zadd{.key = "{t}z", .members = {{1, "a"}}}) == 1);
  BOOST_TEST(f.ok(cmd::rpush{.key = "{t}l", .values = {"a"}}) == 1);
  BOOST_TEST(error_text(f, cmd::lpush{.key = "{t}z", .values = {"x"}}) == wrong_type_message);
  f.fails(cmd::rpush{.key = "{t}z", .values = {"x"}}, Error::wrong_type);
  f.fails(cmd::lmove{"{t}l", "{t}z", ListEnd::left, ListEnd::left}, Error::wrong_type);
  f.fails(cmd::zadd{.key = "{t}l", .members = {{1, "a"}}}, Error::wrong_type);
  f.fails(cmd::zrange_by_lex{.key = "{t}l"}, Error::wrong_type);
  BOOST_TEST(f.ok(cmd::llen{"{t}l"}) == 1);
  BOOST_TEST(f.ok(cmd::zcard{"{t}z"}) == 1);
}

BOOST_AUTO_TEST_SUITE_END()
