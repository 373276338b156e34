// Unit tests of rediskit::resp3 adapters: replies into typed targets. Every reply is also fed
// split at every byte position and byte by byte: the adapted value must not depend on it.
#include <rediskit/resp3/adapt.hpp>
#include <rediskit/resp3/parser.hpp>

#include <boost/test/unit_test.hpp>

#include "support/escape.hpp"

#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace rk_adapt_test {

// A user type adapted through the rediskit_from_bulk customization point (found by ADL).
struct UserId {
  std::uint32_t value = 0;
  friend bool operator==(UserId const&, UserId const&) = default;
  friend bool operator<(UserId const& a, UserId const& b) { return a.value < b.value; }
};

inline void rediskit_from_bulk(UserId& id, std::string_view text, boost::system::error_code& ec) {
  if (text.size() < 2 || text.substr(0, 2) != "u:") {
    ec = make_error_code(rediskit::Error::not_a_number);
    return;
  }
  rediskit::resp3::detail::to_integer(text.substr(2), id.value, ec);
}

}  // namespace rk_adapt_test

namespace {

using namespace std::string_literals;
using boost::system::error_code;
using rediskit::Error;
using rediskit::resp3::any_count;
using rediskit::resp3::Ignore;
using rediskit::resp3::Node;
using rediskit::resp3::Parser;
using rediskit::resp3::ResponseAdapter;
using rediskit::resp3::Result;
using rediskit::resp3::ServerError;
using rediskit::resp3::Tree;
using rediskit::resp3::Type;
using rk_adapt_test::UserId;

error_code code(Error e) {
  return make_error_code(e);
}

using rediskit::test::escape;

// Feeds the chunks to a ResponseAdapter as a connection does; returns the first error.
template <class R>
error_code feed(std::vector<std::string_view> const& chunks, R& r) {
  Parser parser;
  ResponseAdapter<R> adapter(r);
  std::string buffer;
  error_code first;
  std::size_t reply = 0;
  bool skipping = false;
  for (std::string_view const chunk : chunks) {
    buffer.append(chunk);
    for (;;) {
      std::size_t consumed = 0;
      error_code ec;
      auto const node = parser.consume(buffer, consumed, ec);
      if (ec) return ec;
      if (node && !skipping) {
        error_code aec;
        adapter.on_node(reply, *node, aec);
        if (aec) {
          skipping = true;
          if (!first) first = aec;
        }
      }
      bool const done = node && parser.done();
      buffer.erase(0, consumed);
      if (done) {
        ++reply;
        skipping = false;
      }
      if (!node) break;
    }
  }
  if (!buffer.empty() || parser.depth() != 0) return code(Error::resp3_invalid_length);
  if (first) return first;
  constexpr auto expected = ResponseAdapter<R>::expected_replies;
  if (expected != any_count && reply != expected) return code(Error::incompatible_size);
  return {};
}

// Adapts `wire` into a fresh R every way it can arrive; `check` sees each (R, error).
template <class R, class Check>
void every_split(std::string_view wire, Check check) {
  BOOST_TEST_CONTEXT("whole (parse_all): " << escape(wire)) {
    R r{};
    error_code const ec = rediskit::resp3::parse_all(wire, r);
    check(r, ec);
  }
  for (std::size_t i = 1; i < wire.size(); ++i) {
    BOOST_TEST_CONTEXT("split at " << i << ": " << escape(wire)) {
      R r{};
      error_code const ec = feed({wire.substr(0, i), wire.substr(i)}, r);
      check(r, ec);
    }
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < wire.size(); ++i)
    bytes.push_back(wire.substr(i, 1));
  BOOST_TEST_CONTEXT("byte by byte: " << escape(wire)) {
    R r{};
    error_code const ec = feed(bytes, r);
    check(r, ec);
  }
}

template <class R>
void check_adapt(std::string_view wire, R const& expected) {
  every_split<R>(wire, [&](R const& r, error_code ec) {
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST((r == expected));
  });
}

template <class R>
void check_adapt_error(std::string_view wire, Error e) {
  every_split<R>(wire, [&](R const&, error_code ec) { BOOST_TEST(ec == code(e), ec.message()); });
}

// The error, and also what the response holds after it (other replies still adapted).
template <class R>
void check_adapt_partial(std::string_view wire, R const& expected, Error e) {
  every_split<R>(wire, [&](R const& r, error_code ec) {
    BOOST_TEST(ec == code(e), ec.message());
    BOOST_TEST((r == expected));
  });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(resp3_adapt)

static_assert(ResponseAdapter<std::string>::expected_replies == 1);
static_assert(ResponseAdapter<std::vector<std::string>>::expected_replies == 1);
static_assert(ResponseAdapter<std::tuple<int, std::string, Ignore>>::expected_replies == 3);
static_assert(ResponseAdapter<std::tuple<>>::expected_replies == 0);
static_assert(ResponseAdapter<Tree>::expected_replies == any_count);
static_assert(ResponseAdapter<Ignore>::expected_replies == any_count);
static_assert(ResponseAdapter<Ignore const>::expected_replies == any_count);
static_assert(ResponseAdapter<std::pair<int, int>>::expected_replies == 1);

BOOST_AUTO_TEST_CASE(string_target) {
  check_adapt<std::string>("+OK\r\n", "OK");
  check_adapt<std::string>("$3\r\nbar\r\n", "bar");
  check_adapt<std::string>("$0\r\n\r\n", "");
  check_adapt<std::string>("$5\r\na\r\n\0b\r\n"s, "a\r\n\0b"s);
  check_adapt<std::string>("=15\r\ntxt:Some string\r\n", "Some string");
  check_adapt<std::string>("=4\r\nmkd:\r\n", "");
  check_adapt<std::string>("(3492890328409238509324850943850943825024385\r\n",
                           "3492890328409238509324850943850943825024385");
  check_adapt<std::string>(":-42\r\n", "-42");
  check_adapt<std::string>(",1.5e-10\r\n", "1.5e-10");
  check_adapt<std::string>(",inf\r\n", "inf");
  check_adapt_error<std::string>("#t\r\n", Error::unexpected_reply_type);
  check_adapt_error<std::string>("*1\r\n+a\r\n", Error::unexpected_reply_type);
  check_adapt_error<std::string>("%0\r\n", Error::unexpected_reply_type);
  check_adapt_error<std::string>("_\r\n", Error::unexpected_null);
  check_adapt_error<std::string>("$-1\r\n", Error::unexpected_null);
  check_adapt_error<std::string>("*-1\r\n", Error::unexpected_null);
  check_adapt_error<std::string>("-ERR unknown command 'FOO'\r\n", Error::server_error);
  check_adapt_error<std::string>(
      "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", Error::wrong_type);
  check_adapt_error<std::string>("!10\r\nNOSCRIPT x\r\n", Error::no_script);
  check_adapt_error<std::string>("-MOVED 3999 127.0.0.1:6381\r\n", Error::moved);
}

BOOST_AUTO_TEST_CASE(integer_targets) {
  check_adapt<int>(":42\r\n", 42);
  check_adapt<int>("$2\r\n42\r\n", 42);
  check_adapt<int>("+-7\r\n", -7);
  check_adapt<long long>(":-9223372036854775808\r\n", std::numeric_limits<long long>::min());
  check_adapt<std::int64_t>(":9223372036854775807\r\n", INT64_MAX);
  check_adapt<std::uint64_t>("$20\r\n18446744073709551615\r\n", UINT64_MAX);
  check_adapt<std::uint64_t>("(18446744073709551615\r\n", UINT64_MAX);
  check_adapt<unsigned>(":-0\r\n", 0u);
  check_adapt<std::uint8_t>(":255\r\n", std::uint8_t{255});
  check_adapt<short>("=7\r\ntxt:123\r\n", short{123});
  check_adapt_error<std::uint8_t>(":256\r\n", Error::integer_out_of_range);
  check_adapt_error<unsigned>(":-1\r\n", Error::integer_out_of_range);
  check_adapt_error<std::uint64_t>("$21\r\n-18446744073709551616\r\n", Error::integer_out_of_range);
  check_adapt_error<int>(":2147483648\r\n", Error::integer_out_of_range);
  check_adapt_error<std::int64_t>("(9223372036854775808\r\n", Error::integer_out_of_range);
  check_adapt_error<int>("$3\r\nabc\r\n", Error::not_a_number);
  check_adapt_error<int>("$3\r\n 42\r\n", Error::not_a_number);
  check_adapt_error<int>("$3\r\n42 \r\n", Error::not_a_number);
  check_adapt_error<int>("$3\r\n+42\r\n", Error::not_a_number);
  check_adapt_error<int>("$0\r\n\r\n", Error::not_a_number);
  check_adapt_error<unsigned>("$2\r\n-x\r\n", Error::not_a_number);
  check_adapt_error<int>("$4\r\n1.50\r\n", Error::not_a_number);
  check_adapt_error<int>(",1.5\r\n", Error::unexpected_reply_type);
  check_adapt_error<int>("#t\r\n", Error::unexpected_reply_type);
  check_adapt_error<int>("*0\r\n", Error::unexpected_reply_type);
  check_adapt_error<int>("_\r\n", Error::unexpected_null);
  check_adapt_error<int>("-WRONGTYPE x\r\n", Error::wrong_type);
}

BOOST_AUTO_TEST_CASE(bool_target) {
  check_adapt<bool>("#t\r\n", true);
  check_adapt<bool>("#f\r\n", false);
  check_adapt<bool>(":1\r\n", true);
  check_adapt<bool>(":0\r\n", false);
  check_adapt_error<bool>(":2\r\n", Error::integer_out_of_range);
  check_adapt_error<bool>(":-1\r\n", Error::integer_out_of_range);
  check_adapt_error<bool>("+OK\r\n", Error::unexpected_reply_type);
  check_adapt_error<bool>("_\r\n", Error::unexpected_null);
}

BOOST_AUTO_TEST_CASE(floating_targets) {
  check_adapt<double>(",1.5\r\n", 1.5);
  check_adapt<double>(",-2.25e3\r\n", -2250.0);
  check_adapt<double>(",+2.5\r\n", 2.5);
  check_adapt<double>(",inf\r\n", std::numeric_limits<double>::infinity());
  check_adapt<double>(",-inf\r\n", -std::numeric_limits<double>::infinity());
  check_adapt<double>(":3\r\n", 3.0);
  check_adapt<double>("$3\r\n1.5\r\n", 1.5);
  check_adapt<double>("$3\r\ninf\r\n", std::numeric_limits<double>::infinity());
  check_adapt<double>("$4\r\n+inf\r\n", std::numeric_limits<double>::infinity());
  check_adapt<double>("$4\r\n-inf\r\n", -std::numeric_limits<double>::infinity());
  check_adapt<float>(",0.5\r\n", 0.5f);
  check_adapt<long double>(",0.25\r\n", 0.25L);
  every_split<double>(",nan\r\n", [](double d, error_code ec) {
    BOOST_TEST(!ec);
    BOOST_TEST(std::isnan(d));
  });
  every_split<double>("$3\r\nnan\r\n", [](double d, error_code ec) {
    BOOST_TEST(!ec);
    BOOST_TEST(std::isnan(d));
  });
  check_adapt_error<double>("$3\r\nabc\r\n", Error::not_a_number);
  check_adapt_error<double>("$4\r\n+-1.\r\n", Error::not_a_number);
  check_adapt_error<double>("$4\r\n1.5x\r\n", Error::not_a_number);
  check_adapt_error<float>(",1e300\r\n", Error::integer_out_of_range);
  check_adapt_error<double>("#f\r\n", Error::unexpected_reply_type);
  check_adapt_error<double>("_\r\n", Error::unexpected_null);
}

BOOST_AUTO_TEST_CASE(optional_target) {
  using Opt = std::optional<std::string>;
  check_adapt<Opt>("_\r\n", std::nullopt);
  check_adapt<Opt>("$-1\r\n", std::nullopt);
  check_adapt<Opt>("*-1\r\n", std::nullopt);
  check_adapt<Opt>("$1\r\na\r\n", Opt{"a"});
  check_adapt_error<Opt>("-WRONGTYPE x\r\n", Error::wrong_type);
  check_adapt_error<std::optional<int>>("+x\r\n", Error::not_a_number);
  // BLPOP with a timeout: null, or [list, value].
  using Pop = std::optional<std::pair<std::string, std::string>>;
  check_adapt<Pop>("*-1\r\n", std::nullopt);
  check_adapt<Pop>("*2\r\n$1\r\nq\r\n$3\r\njob\r\n", Pop{{"q", "job"}});
  check_adapt<std::vector<std::optional<std::string>>>(
      "*3\r\n$1\r\na\r\n$-1\r\n_\r\n",
      {std::optional<std::string>{"a"}, std::nullopt, std::nullopt});
}

BOOST_AUTO_TEST_CASE(sequence_targets) {
  using Strings = std::vector<std::string>;
  check_adapt<Strings>("*2\r\n$1\r\na\r\n+b\r\n", Strings{"a", "b"});
  check_adapt<Strings>("~2\r\n$1\r\na\r\n+b\r\n", Strings{"a", "b"});
  check_adapt<Strings>(">2\r\n$1\r\na\r\n+b\r\n", Strings{"a", "b"});
  check_adapt<Strings>("%2\r\n+k1\r\n+v1\r\n+k2\r\n:2\r\n", Strings{"k1", "v1", "k2", "2"});
  check_adapt<Strings>("*0\r\n", Strings{});
  check_adapt<std::deque<int>>("*3\r\n:1\r\n:2\r\n$1\r\n3\r\n", std::deque<int>{1, 2, 3});
  check_adapt<std::list<double>>("*2\r\n,1.5\r\n:2\r\n", std::list<double>{1.5, 2.0});
  check_adapt<std::vector<Strings>>("*3\r\n*2\r\n+a\r\n+b\r\n*0\r\n*1\r\n+c\r\n",
                                    std::vector<Strings>{{"a", "b"}, {}, {"c"}});
  check_adapt_error<Strings>("+a\r\n", Error::unexpected_reply_type);
  check_adapt_error<Strings>("*-1\r\n", Error::unexpected_null);
  check_adapt_error<Strings>("*2\r\n+a\r\n*1\r\n+b\r\n", Error::unexpected_reply_type);
  check_adapt_error<std::vector<int>>("*3\r\n:1\r\n+x\r\n:3\r\n", Error::not_a_number);
  check_adapt_error<Strings>("*2\r\n+a\r\n-WRONGTYPE x\r\n", Error::wrong_type);
  check_adapt_error<Strings>("*2\r\n+a\r\n_\r\n", Error::unexpected_null);
}

BOOST_AUTO_TEST_CASE(set_targets) {
  check_adapt<std::set<std::string>>("~3\r\n+b\r\n+a\r\n+b\r\n", std::set<std::string>{"a", "b"});
  check_adapt<std::set<std::string>>("*2\r\n+b\r\n+a\r\n", std::set<std::string>{"a", "b"});
  check_adapt<std::unordered_set<int>>("~3\r\n:1\r\n:2\r\n:3\r\n",
                                       std::unordered_set<int>{1, 2, 3});
  // Aggregate elements are built aside and inserted once complete.
  using Sets = std::set<std::vector<int>>;
  check_adapt<Sets>("~4\r\n*2\r\n:1\r\n:2\r\n*0\r\n*1\r\n:7\r\n*0\r\n", Sets{{1, 2}, {}, {7}});
  check_adapt<std::set<std::vector<std::vector<int>>>>(
      "~2\r\n*2\r\n*1\r\n:1\r\n*0\r\n*1\r\n*2\r\n:2\r\n:3\r\n",
      std::set<std::vector<std::vector<int>>>{{{1}, {}}, {{2, 3}}});
  check_adapt_error<std::set<int>>("~1\r\n+x\r\n", Error::not_a_number);
  check_adapt_error<std::set<int>>(":1\r\n", Error::unexpected_reply_type);
}

BOOST_AUTO_TEST_CASE(map_targets) {
  using Map = std::map<std::string, std::string>;
  std::string_view const resp3 = "%2\r\n$4\r\nname\r\n$5\r\nalice\r\n$3\r\nage\r\n$2\r\n30\r\n";
  std::string_view const resp2 = "*4\r\n$4\r\nname\r\n$5\r\nalice\r\n$3\r\nage\r\n$2\r\n30\r\n";
  Map const expected{{"name", "alice"}, {"age", "30"}};
  check_adapt<Map>(resp3, expected);
  check_adapt<Map>(resp2, expected);
  check_adapt<std::unordered_map<std::string, std::string>>(
      resp3, std::unordered_map<std::string, std::string>{{"name", "alice"}, {"age", "30"}});
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  check_adapt<Pairs>(resp3, Pairs{{"name", "alice"}, {"age", "30"}});
  check_adapt<Pairs>(resp2, Pairs{{"name", "alice"}, {"age", "30"}});
  check_adapt<std::map<std::string, int>>("%2\r\n+a\r\n:1\r\n+b\r\n$1\r\n2\r\n",
                                          std::map<std::string, int>{{"a", 1}, {"b", 2}});
  check_adapt<Map>("%0\r\n", Map{});
  check_adapt<Map>("*0\r\n", Map{});
  check_adapt<Map>("%2\r\n+k\r\n+1\r\n+k\r\n+2\r\n", Map{{"k", "2"}});  // the last one wins
  // Nested values: ZRANGE WITHSCORES style pairs, map of lists.
  check_adapt<std::map<std::string, std::vector<int>>>(
      "%2\r\n+a\r\n*2\r\n:1\r\n:2\r\n+b\r\n*0\r\n",
      std::map<std::string, std::vector<int>>{{"a", {1, 2}}, {"b", {}}});
  check_adapt<std::vector<std::pair<std::string, double>>>(
      "*4\r\n$1\r\na\r\n$3\r\n1.5\r\n$1\r\nb\r\n$3\r\ninf\r\n",
      std::vector<std::pair<std::string, double>>{{"a", 1.5},
                                                  {"b", std::numeric_limits<double>::infinity()}});
  // RESP3 ZRANGE WITHSCORES: an array of [member, score] pairs.
  check_adapt<std::vector<std::pair<std::string, double>>>(
      "*2\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,2\r\n",
      std::vector<std::pair<std::string, double>>{{"a", 1.5}, {"b", 2.0}});
  check_adapt<std::map<std::string, double>>(
      "*3\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,2\r\n*2\r\n$1\r\nc\r\n,3\r\n",
      std::map<std::string, double>{{"a", 1.5}, {"b", 2.0}, {"c", 3.0}});
  check_adapt_error<Map>("*3\r\n+a\r\n+b\r\n+c\r\n", Error::incompatible_size);
  check_adapt_error<Pairs>("*1\r\n+a\r\n", Error::incompatible_size);
  check_adapt_error<Pairs>("*2\r\n*3\r\n+a\r\n+b\r\n+c\r\n*2\r\n+d\r\n+e\r\n",
                           Error::incompatible_size);
  check_adapt_error<Pairs>("*2\r\n*2\r\n+a\r\n+b\r\n+c\r\n", Error::unexpected_reply_type);
  check_adapt_error<Map>("~2\r\n+a\r\n+b\r\n", Error::unexpected_reply_type);
  check_adapt_error<Map>("+a\r\n", Error::unexpected_reply_type);
  check_adapt_error<Map>("_\r\n", Error::unexpected_null);
  check_adapt_error<std::map<std::string, int>>("%1\r\n+a\r\n+b\r\n", Error::not_a_number);
  check_adapt_error<Map>("-WRONGTYPE x\r\n", Error::wrong_type);
}

BOOST_AUTO_TEST_CASE(pair_and_tuple_inside_a_reply) {
  using P = std::pair<std::string, int>;
  check_adapt<P>("*2\r\n+a\r\n:1\r\n", P{"a", 1});
  check_adapt<P>("%1\r\n+a\r\n:1\r\n", P{"a", 1});
  check_adapt_error<P>("*3\r\n+a\r\n:1\r\n:2\r\n", Error::incompatible_size);
  check_adapt_error<P>("*1\r\n+a\r\n", Error::incompatible_size);
  check_adapt_error<P>("+a\r\n", Error::unexpected_reply_type);
  check_adapt_error<P>("*2\r\n+a\r\n+b\r\n", Error::not_a_number);
  using T = std::tuple<int, std::string, std::vector<int>, double>;
  check_adapt<std::tuple<T>>("*4\r\n:1\r\n+x\r\n*2\r\n:5\r\n:6\r\n,0.5\r\n",
                             std::tuple<T>{T{1, "x", {5, 6}, 0.5}});
  check_adapt<std::tuple<std::tuple<>>>("*0\r\n", {});
}

BOOST_AUTO_TEST_CASE(xautoclaim_with_deleted_ids) {
  // Redis 7: [next-id, claimed entries [id, [field, value...]], deleted ids].
  using Entry = std::pair<std::string, std::map<std::string, std::string>>;
  using Claim = std::tuple<std::string, std::vector<Entry>, std::vector<std::string>>;
  std::string_view const wire =
      "*3\r\n$3\r\n0-0\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$5\r\nfield\r\n$5\r\nvalue\r\n"
      "*1\r\n$3\r\n2-0\r\n";
  check_adapt<std::tuple<Claim>>(
      wire, std::tuple<Claim>{Claim{"0-0", {Entry{"1-0", {{"field", "value"}}}}, {"2-0"}}});
  check_adapt<Tree>(wire, Tree{{Type::array, 3, 0, ""},
                               {Type::blob_string, 0, 1, "0-0"},
                               {Type::array, 1, 1, ""},
                               {Type::array, 2, 2, ""},
                               {Type::blob_string, 0, 3, "1-0"},
                               {Type::array, 2, 3, ""},
                               {Type::blob_string, 0, 4, "field"},
                               {Type::blob_string, 0, 4, "value"},
                               {Type::array, 1, 1, ""},
                               {Type::blob_string, 0, 2, "2-0"}});
}

BOOST_AUTO_TEST_CASE(xreadgroup_resp3_and_resp2) {
  using Fields = std::unordered_map<std::string, std::string>;
  using Entries = std::vector<std::pair<std::string, Fields>>;
  using Streams = std::map<std::string, Entries>;
  Streams const expected{
      {"events", {{"1-0", {{"type", "login"}, {"user", "42"}}}, {"2-0", {{"type", "logout"}}}}}};
  check_adapt<Streams>(
      "%1\r\n$6\r\nevents\r\n*2\r\n"
      "*2\r\n$3\r\n1-0\r\n*4\r\n$4\r\ntype\r\n$5\r\nlogin\r\n$4\r\nuser\r\n$2\r\n42\r\n"
      "*2\r\n$3\r\n2-0\r\n*2\r\n$4\r\ntype\r\n$6\r\nlogout\r\n",
      expected);
  // RESP2: an array of [stream, entries] pairs; the same target takes it.
  check_adapt<Streams>(
      "*1\r\n*2\r\n$6\r\nevents\r\n*2\r\n"
      "*2\r\n$3\r\n1-0\r\n*4\r\n$4\r\ntype\r\n$5\r\nlogin\r\n$4\r\nuser\r\n$2\r\n42\r\n"
      "*2\r\n$3\r\n2-0\r\n*2\r\n$4\r\ntype\r\n$6\r\nlogout\r\n",
      expected);
  // No message within BLOCK: null.
  check_adapt<std::optional<Streams>>("_\r\n", std::nullopt);
  check_adapt<std::optional<Streams>>("*-1\r\n", std::nullopt);
}

BOOST_AUTO_TEST_CASE(tree_target) {
  // Attributes are not part of it; depth is relative to each reply; replies are appended.
  check_adapt<Tree>("|1\r\n+a\r\n+b\r\n*2\r\n:1\r\n%1\r\n+k\r\n_\r\n-ERR x\r\n",
                    Tree{{Type::array, 2, 0, ""},
                         {Type::number, 0, 1, "1"},
                         {Type::map, 1, 1, ""},
                         {Type::simple_string, 0, 2, "k"},
                         {Type::null, 0, 2, ""},
                         {Type::simple_error, 0, 0, "ERR x"}});
  // Inside another target: depth relative to its own root.
  check_adapt<std::vector<Tree>>(
      "*2\r\n*1\r\n+a\r\n:5\r\n",
      std::vector<Tree>{{{Type::array, 1, 0, ""}, {Type::simple_string, 0, 1, "a"}},
                        {{Type::number, 0, 0, "5"}}});
}

BOOST_AUTO_TEST_CASE(ignore_target) {
  check_adapt<Ignore>("+OK\r\n*2\r\n:1\r\n:2\r\n_\r\n", Ignore{});
  check_adapt_error<Ignore>("+OK\r\n-WRONGTYPE x\r\n", Error::wrong_type);
  check_adapt_error<Ignore>("*2\r\n+OK\r\n-NOSCRIPT x\r\n", Error::no_script);  // at any depth
  // The constant itself can be the response.
  error_code ec;
  rediskit::resp3::ResponseAdapter<Ignore const> a(rediskit::resp3::ignore);
  a.on_node(0, {Type::simple_string, 0, 0, "OK"}, ec);
  BOOST_TEST(!ec);
  a.on_node(1, {Type::simple_error, 0, 0, "LOADING x"}, ec);
  BOOST_TEST(ec == code(Error::loading));
}

BOOST_AUTO_TEST_CASE(result_target) {
  using R = Result<std::string>;
  check_adapt<R>("+OK\r\n", R{"OK"});
  check_adapt<R>("-WRONGTYPE Operation against a key\r\n",
                 R{ServerError{Type::simple_error, "WRONGTYPE Operation against a key"}});
  check_adapt<R>("!5\r\nERR x\r\n", R{ServerError{Type::blob_error, "ERR x"}});
  check_adapt_error<R>("*0\r\n", Error::unexpected_reply_type);
  check_adapt_error<R>("_\r\n", Error::unexpected_null);
  check_adapt<Result<std::optional<int>>>("_\r\n", Result<std::optional<int>>{std::nullopt});
  // An error deeper inside goes through T's rules...
  check_adapt_error<Result<std::vector<std::string>>>("*1\r\n-WRONGTYPE x\r\n", Error::wrong_type);
  // ...unless T holds Results itself (EXEC: one result per queued command).
  using Exec = std::vector<Result<std::int64_t>>;
  check_adapt<Exec>("*3\r\n:1\r\n-WRONGTYPE x\r\n:3\r\n",
                    Exec{1, ServerError{Type::simple_error, "WRONGTYPE x"}, 3});

  R r{ServerError{Type::simple_error, "WRONGTYPE Operation"}};
  BOOST_TEST(r.error().code() == Error::wrong_type);
  try {
    (void)r.value();
    BOOST_FAIL("value() of an error must throw");
  } catch (rediskit::Exception const& e) {
    BOOST_TEST(e.code() == code(Error::wrong_type));
    BOOST_TEST(std::string(e.what()).find("Operation") == std::string::npos);
  }
}

// N replies of one kind (a batch of HGETALL) into one vector, one element per reply.
BOOST_AUTO_TEST_CASE(replies_response_takes_one_element_per_reply) {
  using Profiles = rediskit::resp3::Replies<std::map<std::string, std::string>>;
  static_assert(rediskit::resp3::ResponseAdapter<Profiles>::expected_replies ==
                rediskit::resp3::any_count);
  std::string_view const three = "%1\r\n$4\r\nname\r\n$1\r\na\r\n"
                                 "*2\r\n$4\r\nname\r\n$1\r\nb\r\n"  // RESP2 flat map
                                 "%0\r\n";
  check_adapt<Profiles>(three, Profiles{{{"name", "a"}}, {{"name", "b"}}, {}});

  // A failed reply in the middle: its error is reported, the replies after it are adapted.
  std::string_view const failing = "%1\r\n$1\r\nk\r\n$1\r\nv\r\n"
                                   "-WRONGTYPE Operation against a key\r\n"
                                   "%1\r\n$1\r\nx\r\n$1\r\ny\r\n";
  every_split<Profiles>(failing, [](Profiles const& r, error_code ec) {
    BOOST_TEST((ec == Error::wrong_type));
    BOOST_REQUIRE_EQUAL(r.size(), 3u);
    BOOST_TEST(r[0].at("k") == "v");
    BOOST_TEST(r[1].empty());
    BOOST_TEST(r[2].at("x") == "y");
  });

  // Reusing the response for a new request starts from empty.
  Profiles reused{{{"stale", "1"}}, {{"stale", "2"}}};
  BOOST_TEST(!rediskit::resp3::parse_all("%0\r\n", reused));
  BOOST_TEST(reused.size() == 1u);
  BOOST_TEST(reused[0].empty());
}

BOOST_AUTO_TEST_CASE(tuple_response_keeps_going_after_an_error) {
  using Response = std::tuple<std::string, int, std::vector<std::string>, std::string>;
  // Reply 1 is a server error, reply 2 has the wrong shape: 0 and 3 are still filled (a reply
  // that failed holds what was adapted up to the error).
  check_adapt_partial<Response>("+a\r\n-WRONGTYPE x\r\n*2\r\n+p\r\n*1\r\n+q\r\n$1\r\nd\r\n",
                                Response{"a", 0, {"p", ""}, "d"}, Error::wrong_type);
  check_adapt_partial<Response>("+a\r\n:1\r\n*2\r\n+p\r\n*1\r\n+q\r\n$1\r\nd\r\n",
                                Response{"a", 1, {"p", ""}, "d"}, Error::unexpected_reply_type);
  using WithResult = std::tuple<std::string, Result<int>, std::string>;
  check_adapt<WithResult>("+a\r\n-ERR no\r\n+c\r\n",
                          WithResult{"a", ServerError{Type::simple_error, "ERR no"}, "c"});
}

BOOST_AUTO_TEST_CASE(reply_count_must_match) {
  check_adapt_error<std::tuple<int, int>>(":1\r\n", Error::incompatible_size);
  check_adapt_error<std::tuple<int, int>>(":1\r\n:2\r\n:3\r\n", Error::incompatible_size);
  check_adapt_error<int>(":1\r\n:2\r\n", Error::incompatible_size);
  check_adapt_error<std::tuple<>>(":1\r\n", Error::incompatible_size);
  check_adapt<std::tuple<>>("", std::tuple<>{});
  // Incomplete input and protocol errors (parse_all and the split feeds agree).
  check_adapt_error<std::string>("$3\r\nba", Error::resp3_invalid_length);
  check_adapt_error<std::vector<int>>("*2\r\n:1\r\n", Error::resp3_invalid_length);
  check_adapt_error<std::string>(":12a\r\n", Error::resp3_invalid_number);
}

BOOST_AUTO_TEST_CASE(user_type_customization) {
  check_adapt<UserId>("$4\r\nu:42\r\n", UserId{42});
  check_adapt<UserId>("+u:7\r\n", UserId{7});
  check_adapt<std::vector<UserId>>("*2\r\n+u:1\r\n+u:2\r\n", std::vector<UserId>{{1}, {2}});
  check_adapt<std::map<UserId, int>>("%1\r\n+u:1\r\n:5\r\n", std::map<UserId, int>{{{1}, 5}});
  check_adapt_error<UserId>("$2\r\n42\r\n", Error::not_a_number);
  check_adapt_error<UserId>("*0\r\n", Error::unexpected_reply_type);
  check_adapt_error<UserId>("_\r\n", Error::unexpected_null);
  check_adapt<std::optional<UserId>>("_\r\n", std::nullopt);
}

BOOST_AUTO_TEST_CASE(announced_sizes_do_not_allocate) {
  // Only the aggregate header arrives: the target reserves a bounded amount.
  std::vector<std::string> v;
  auto a = rediskit::resp3::adapt_reply(v);
  error_code ec;
  a.on_node({Type::array, 9223372036854775807u, 0, {}}, ec);
  BOOST_TEST(!ec);
  BOOST_TEST(v.capacity() <= 1024u);
  std::unordered_map<std::string, std::string> m;
  auto b = rediskit::resp3::adapt_reply(m);
  b.on_node({Type::map, 4611686018427387903u, 0, {}}, ec);
  BOOST_TEST(!ec);
  BOOST_TEST(m.bucket_count() <= 4096u);
  std::vector<std::pair<std::string, std::string>> p;
  auto c = rediskit::resp3::adapt_reply(p);
  c.on_node({Type::map, 4611686018427387903u, 0, {}}, ec);
  BOOST_TEST(!ec);
  BOOST_TEST(p.capacity() <= 1024u);
}

BOOST_AUTO_TEST_CASE(adapt_reply_reuses_target_per_reply) {
  std::vector<int> v{9, 9, 9};
  auto a = rediskit::resp3::adapt_reply(v);
  error_code ec;
  a.on_node({Type::array, 2, 0, {}}, ec);
  a.on_node({Type::number, 0, 1, "1"}, ec);
  a.on_node({Type::number, 0, 1, "2"}, ec);
  BOOST_TEST(!ec);
  BOOST_TEST((v == std::vector<int>{1, 2}));  // cleared when the reply starts
}

// A map read into again holds exactly the new reply: a key that comes back takes its old entry
// (no allocation, which is why this is worth a test), one that is gone is gone, a new one is
// added, a repeated key keeps its last value, and a long value shrinks to the new one.
template <class M>
void reread_into(M m) {
  std::string const long_value(100, 'x');
  BOOST_TEST(!rediskit::resp3::parse_all(
      "%4\r\n$4\r\nname\r\n$100\r\n" + long_value + "\r\n$3\r\nage\r\n$2\r\n30\r\n"
      "$4\r\ncity\r\n$5\r\nParis\r\n$4\r\nlang\r\n$2\r\nfr\r\n", m));
  BOOST_TEST(m.size() == 4u);
  std::string const* name_buffer = &m.at("name");
  std::string const wire =
      "%4\r\n$3\r\nage\r\n$2\r\n31\r\n$4\r\nname\r\n$3\r\nbob\r\n"
      "$4\r\nzone\r\n$1\r\nZ\r\n$3\r\nage\r\n$2\r\n32\r\n";
  BOOST_TEST(!rediskit::resp3::parse_all(wire, m));
  BOOST_TEST((m == M{{"age", "32"}, {"name", "bob"}, {"zone", "Z"}}));
  BOOST_TEST(&m.at("name") == name_buffer);  // the same node, taken back
  // The same, every way the bytes can arrive, into a map that holds the first reply each time.
  for (std::size_t i = 1; i < wire.size(); ++i) {
    BOOST_TEST_CONTEXT("split at " << i) {
      M again{{"name", long_value}, {"age", "30"}, {"city", "Paris"}};
      BOOST_TEST(!feed({std::string_view(wire).substr(0, i), std::string_view(wire).substr(i)},
                       again));
      BOOST_TEST((again == M{{"age", "32"}, {"name", "bob"}, {"zone", "Z"}}));
    }
  }
  // An error reply leaves the map as it was; an empty map reply empties it.
  BOOST_TEST(rediskit::resp3::parse_all("-ERR no\r\n", m));
  BOOST_TEST(m.size() == 3u);
  BOOST_TEST(!rediskit::resp3::parse_all("%0\r\n", m));
  BOOST_TEST(m.empty());
}

BOOST_AUTO_TEST_CASE(a_map_read_into_again_holds_exactly_the_new_reply) {
  reread_into(std::unordered_map<std::string, std::string>{});
  reread_into(std::map<std::string, std::string>{});
  // Values that are not strings are reset as new ones would be.
  std::map<std::string, std::vector<std::string>> lists{{"a", {"old", "older"}}};
  BOOST_TEST(!rediskit::resp3::parse_all("%1\r\n$1\r\na\r\n*1\r\n$3\r\nnew\r\n", lists));
  BOOST_TEST((lists == std::map<std::string, std::vector<std::string>>{{"a", {"new"}}}));
}

BOOST_AUTO_TEST_SUITE_END()
