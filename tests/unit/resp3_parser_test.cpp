// Unit tests of rediskit::resp3::Parser: every RESP3 type, real Redis replies, hostile input.
// Every wire string is fed whole, split in two at every byte position, and byte by byte: the
// nodes (and the error, if any) must not depend on how the bytes arrive.
#include <rediskit/resp3/parser.hpp>

#include <boost/test/unit_test.hpp>

#include "support/escape.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace std::string_literals;
using namespace std::string_view_literals;
using boost::system::error_code;
using rediskit::Error;
using rediskit::resp3::Node;
using rediskit::resp3::Parser;
using rediskit::resp3::ParserConfig;
using rediskit::resp3::Tree;
using rediskit::resp3::Type;

struct Outcome {
  Tree nodes;
  std::vector<std::size_t> reply_ends;  // index in `nodes` after which done() was true
  error_code ec;
  std::size_t leftover = 0;  // bytes not consumed at the end
  std::size_t depth = 0;     // parser depth at the end
};

using rediskit::test::escape;

std::string dump(Outcome const& o) {
  std::string out;
  for (std::size_t i = 0; i < o.nodes.size(); ++i) {
    Node const& n = o.nodes[i];
    out += std::string(n.depth * 2, ' ') + std::string(to_string(n.type)) + "(" +
           std::to_string(n.size) + ") '" + escape(n.value) + "'";
    for (std::size_t end : o.reply_ends)
      if (end == i) out += " <done>";
    out += "\n";
  }
  // After an error, how many bytes were left unread depends on how they arrived.
  if (o.ec)
    out += "error: " + o.ec.message() + "\n";
  else
    out += "leftover " + std::to_string(o.leftover) + ", depth " + std::to_string(o.depth) + "\n";
  return out;
}

// Feeds the chunks one after another as a connection does: append to a buffer, consume until
// the parser needs more, drop what it consumed.
Outcome feed(std::vector<std::string_view> const& chunks, ParserConfig cfg = {}) {
  Parser parser(cfg);
  std::string buffer;
  Outcome out;
  std::size_t guard = 0;
  for (std::string_view const chunk : chunks) {
    buffer.append(chunk);
    for (;;) {
      BOOST_REQUIRE(++guard < 100000);
      std::size_t consumed = 12345;
      error_code ec;
      auto const node = parser.consume(buffer, consumed, ec);
      BOOST_REQUIRE_LE(consumed, buffer.size());
      if (ec) {
        BOOST_REQUIRE(!node);
        out.ec = ec;
        out.leftover = buffer.size() - consumed;
        out.depth = parser.depth();
        return out;
      }
      if (node) {
        BOOST_REQUIRE_GE(consumed, 3u);
        BOOST_REQUIRE_LE(node->depth, cfg.max_depth);
        out.nodes.push_back(Node{node->type, node->size, node->depth, std::string(node->value)});
        if (parser.done()) out.reply_ends.push_back(out.nodes.size() - 1);
      } else {
        BOOST_REQUIRE(!parser.done());
      }
      buffer.erase(0, consumed);
      if (!node) break;
    }
  }
  out.leftover = buffer.size();
  out.depth = parser.depth();
  return out;
}

// Feeds `wire` whole, in two pieces split at every position, and byte by byte; all must agree.
Outcome feed_all_ways(std::string_view wire, ParserConfig cfg = {}) {
  Outcome const whole = feed({wire}, cfg);
  std::string const expected = dump(whole);
  for (std::size_t i = 1; i < wire.size(); ++i) {
    BOOST_TEST_CONTEXT("split at " << i << " of " << escape(wire)) {
      BOOST_TEST(dump(feed({wire.substr(0, i), wire.substr(i)}, cfg)) == expected);
    }
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < wire.size(); ++i)
    bytes.push_back(wire.substr(i, 1));
  BOOST_TEST_CONTEXT("byte by byte: " << escape(wire)) {
    BOOST_TEST(dump(feed(bytes, cfg)) == expected);
  }
  return whole;
}

// One complete reply: its nodes, done() after the last one only, nothing left over.
void check_reply(std::string_view wire, Tree const& expected) {
  BOOST_TEST_CONTEXT(escape(wire)) {
    Outcome const o = feed_all_ways(wire);
    Outcome want;
    want.nodes = expected;
    want.reply_ends = {expected.size() - 1};
    BOOST_TEST(dump(o) == dump(want));
  }
}

void check_error(std::string_view wire, Error e, ParserConfig cfg = {}) {
  BOOST_TEST_CONTEXT(escape(wire)) {
    Outcome const o = feed_all_ways(wire, cfg);
    BOOST_TEST(o.ec == make_error_code(e), o.ec.message());
  }
}

Node n(Type t, std::string v = {}, std::size_t depth = 0) {
  return Node{t, 0, depth, std::move(v)};
}
Node agg(Type t, std::size_t size, std::size_t depth = 0) {
  return Node{t, size, depth, {}};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(resp3_parser)

BOOST_AUTO_TEST_CASE(simple_types) {
  check_reply("+OK\r\n", {n(Type::simple_string, "OK")});
  check_reply("+\r\n", {n(Type::simple_string, "")});
  check_reply("-ERR unknown command 'FOO'\r\n",
              {n(Type::simple_error, "ERR unknown command 'FOO'")});
  check_reply(":0\r\n", {n(Type::number, "0")});
  check_reply(":-9223372036854775808\r\n", {n(Type::number, "-9223372036854775808")});
  check_reply(":9223372036854775807\r\n", {n(Type::number, "9223372036854775807")});
  check_reply("#t\r\n", {n(Type::boolean, "t")});
  check_reply("#f\r\n", {n(Type::boolean, "f")});
  check_reply("_\r\n", {n(Type::null)});
  check_reply("(3492890328409238509324850943850943825024385\r\n",
              {n(Type::big_number, "3492890328409238509324850943850943825024385")});
  check_reply("(-3492890328409238509324850943850943825024385\r\n",
              {n(Type::big_number, "-3492890328409238509324850943850943825024385")});
}

BOOST_AUTO_TEST_CASE(doubles) {
  for (std::string_view v :
       {"1.23", "10", "-1.5", "+2.5", "inf", "-inf", "nan", "1.5e-10", "1.0000000000000001e+20",
        "3E5", ".5", "5.", "-0", "INF", "+inf", "infinity", "-NaN", "1e400"}) {
    check_reply("," + std::string(v) + "\r\n", {n(Type::doublean, std::string(v))});
  }
}

BOOST_AUTO_TEST_CASE(blob_types) {
  check_reply("$3\r\nbar\r\n", {n(Type::blob_string, "bar")});
  check_reply("$0\r\n\r\n", {n(Type::blob_string, "")});
  // Binary-safe: CR, LF and NUL inside the payload.
  check_reply("$6\r\na\r\nb\0c\r\n"s, {n(Type::blob_string, "a\r\nb\0c"s)});
  check_reply("!21\r\nSYNTAX invalid syntax\r\n", {n(Type::blob_error, "SYNTAX invalid syntax")});
  check_reply("=15\r\ntxt:Some string\r\n", {n(Type::verbatim_string, "txt:Some string")});
  check_reply("=4\r\nmkd:\r\n", {n(Type::verbatim_string, "mkd:")});
}

BOOST_AUTO_TEST_CASE(resp2_nulls) {
  check_reply("$-1\r\n", {n(Type::null)});
  check_reply("*-1\r\n", {n(Type::null)});
  check_reply("*3\r\n$-1\r\n*-1\r\n_\r\n", {agg(Type::array, 3), n(Type::null, {}, 1),
                                            n(Type::null, {}, 1), n(Type::null, {}, 1)});
}

BOOST_AUTO_TEST_CASE(aggregates) {
  check_reply("*2\r\n:1\r\n:2\r\n",
              {agg(Type::array, 2), n(Type::number, "1", 1), n(Type::number, "2", 1)});
  check_reply("~2\r\n+a\r\n+b\r\n",
              {agg(Type::set, 2), n(Type::simple_string, "a", 1), n(Type::simple_string, "b", 1)});
  check_reply("%1\r\n+k\r\n:1\r\n",
              {agg(Type::map, 1), n(Type::simple_string, "k", 1), n(Type::number, "1", 1)});
  check_reply(">3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n",
              {agg(Type::push, 3), n(Type::blob_string, "message", 1),
               n(Type::blob_string, "chan", 1), n(Type::blob_string, "hello", 1)});
  check_reply("*0\r\n", {agg(Type::array, 0)});
  check_reply("%0\r\n", {agg(Type::map, 0)});
  check_reply("~0\r\n", {agg(Type::set, 0)});
  check_reply(">0\r\n", {agg(Type::push, 0)});
}

BOOST_AUTO_TEST_CASE(nested_empty_aggregates) {
  check_reply("*3\r\n*0\r\n%0\r\n*1\r\n~0\r\n",
              {agg(Type::array, 3), agg(Type::array, 0, 1), agg(Type::map, 0, 1),
               agg(Type::array, 1, 1), agg(Type::set, 0, 2)});
  check_reply("*1\r\n*1\r\n*1\r\n*0\r\n", {agg(Type::array, 1), agg(Type::array, 1, 1),
                                           agg(Type::array, 1, 2), agg(Type::array, 0, 3)});
}

BOOST_AUTO_TEST_CASE(hgetall_resp2_and_resp3) {
  check_reply(
      "*4\r\n$4\r\nname\r\n$5\r\nalice\r\n$3\r\nage\r\n$2\r\n30\r\n",
      {agg(Type::array, 4), n(Type::blob_string, "name", 1), n(Type::blob_string, "alice", 1),
       n(Type::blob_string, "age", 1), n(Type::blob_string, "30", 1)});
  check_reply("%2\r\n$4\r\nname\r\n$5\r\nalice\r\n$3\r\nage\r\n$2\r\n30\r\n",
              {agg(Type::map, 2), n(Type::blob_string, "name", 1), n(Type::blob_string, "alice", 1),
               n(Type::blob_string, "age", 1), n(Type::blob_string, "30", 1)});
}

BOOST_AUTO_TEST_CASE(xreadgroup_nested) {
  // RESP3: a map of stream name -> entries; each entry [id, [field, value, ...]].
  check_reply(
      "%1\r\n$6\r\nevents\r\n*2\r\n"
      "*2\r\n$15\r\n1700000000000-0\r\n*4\r\n$4\r\ntype\r\n$5\r\nlogin\r\n$4\r\nuser\r\n$"
      "2\r\n42\r\n"
      "*2\r\n$15\r\n1700000000001-0\r\n*2\r\n$4\r\ntype\r\n$6\r\nlogout\r\n",
      {agg(Type::map, 1), n(Type::blob_string, "events", 1), agg(Type::array, 2, 1),
       agg(Type::array, 2, 2), n(Type::blob_string, "1700000000000-0", 3), agg(Type::array, 4, 3),
       n(Type::blob_string, "type", 4), n(Type::blob_string, "login", 4),
       n(Type::blob_string, "user", 4), n(Type::blob_string, "42", 4), agg(Type::array, 2, 2),
       n(Type::blob_string, "1700000000001-0", 3), agg(Type::array, 2, 3),
       n(Type::blob_string, "type", 4), n(Type::blob_string, "logout", 4)});
  // RESP2 shape of the same kind of reply.
  check_reply("*1\r\n*2\r\n$6\r\nevents\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n",
              {agg(Type::array, 1), agg(Type::array, 2, 1), n(Type::blob_string, "events", 2),
               agg(Type::array, 1, 2), agg(Type::array, 2, 3), n(Type::blob_string, "1-0", 4),
               agg(Type::array, 2, 4), n(Type::blob_string, "k", 5), n(Type::blob_string, "v", 5)});
}

BOOST_AUTO_TEST_CASE(xautoclaim_three_elements) {
  // Redis 7: [next-id, claimed entries, deleted ids].
  check_reply(
      "*3\r\n$3\r\n0-0\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$5\r\nfield\r\n$5\r\nvalue\r\n"
      "*1\r\n$3\r\n2-0\r\n",
      {agg(Type::array, 3), n(Type::blob_string, "0-0", 1), agg(Type::array, 1, 1),
       agg(Type::array, 2, 2), n(Type::blob_string, "1-0", 3), agg(Type::array, 2, 3),
       n(Type::blob_string, "field", 4), n(Type::blob_string, "value", 4), agg(Type::array, 1, 1),
       n(Type::blob_string, "2-0", 2)});
}

BOOST_AUTO_TEST_CASE(attributes_are_skipped) {
  // Before a value (the example of the RESP3 specification).
  check_reply(
      "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
      "*2\r\n:2039123\r\n:9543892\r\n",
      {agg(Type::array, 2), n(Type::number, "2039123", 1), n(Type::number, "9543892", 1)});
  // Inside an array: not an element of it.
  check_reply("*3\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n:3\r\n",
              {agg(Type::array, 3), n(Type::number, "1", 1), n(Type::number, "2", 1),
               n(Type::number, "3", 1)});
  // Before the last element, nested attribute inside an attribute, empty attribute.
  check_reply("*2\r\n:1\r\n|1\r\n+a\r\n|1\r\n+b\r\n+c\r\n*1\r\n:5\r\n|0\r\n:2\r\n",
              {agg(Type::array, 2), n(Type::number, "1", 1), n(Type::number, "2", 1)});
  // Before a scalar reply.
  check_reply("|1\r\n+k\r\n+v\r\n+OK\r\n", {n(Type::simple_string, "OK")});
}

BOOST_AUTO_TEST_CASE(attribute_skip_reports_consumed_bytes) {
  Parser p;
  std::string_view const wire = "|1\r\n+k\r\n+v\r\n+O";
  std::size_t consumed = 0;
  error_code ec;
  auto const node = p.consume(wire, consumed, ec);
  BOOST_TEST(!node);
  BOOST_TEST(!ec);
  BOOST_TEST(consumed == 12u);  // the attribute, not the partial "+O"
  BOOST_TEST(p.depth() == 0u);
  BOOST_TEST(!p.done());
}

BOOST_AUTO_TEST_CASE(pipelined_replies) {
  std::string_view const wire = "+OK\r\n*2\r\n:1\r\n*0\r\n$-1\r\n>2\r\n+a\r\n+b\r\n:7\r\n";
  Outcome const o = feed_all_ways(wire);
  BOOST_TEST(!o.ec);
  BOOST_TEST(o.nodes.size() == 9u);
  BOOST_TEST(o.reply_ends == (std::vector<std::size_t>{0, 3, 4, 7, 8}));
  BOOST_TEST(o.leftover == 0u);
}

BOOST_AUTO_TEST_CASE(node_values_view_the_input) {
  Parser p;
  std::string const wire = "$3\r\nbar\r\n";
  std::size_t consumed = 0;
  error_code ec;
  auto const node = p.consume(wire, consumed, ec);
  BOOST_REQUIRE(node);
  BOOST_TEST(static_cast<void const*>(node->value.data()) ==
             static_cast<void const*>(wire.data() + 4));
  BOOST_TEST(consumed == wire.size());
  BOOST_TEST(p.done());
}

BOOST_AUTO_TEST_CASE(partial_input_waits) {
  for (std::string_view wire :
       {"", "+OK", "+OK\r", "$3\r\nba", "$3\r\nbar\r", "*2\r\n:1\r\n", "$10\r\n", "%1\r\n+k\r\n"}) {
    BOOST_TEST_CONTEXT(escape(wire)) {
      Outcome const o = feed_all_ways(wire);
      BOOST_TEST(!o.ec);
    }
  }
}

BOOST_AUTO_TEST_CASE(streamed_not_supported) {
  check_error("$?\r\n;4\r\nHell\r\n;0\r\n", Error::resp3_streamed_not_supported);
  check_error("*?\r\n:1\r\n.\r\n", Error::resp3_streamed_not_supported);
  check_error("%?\r\n", Error::resp3_streamed_not_supported);
  check_error("~?\r\n", Error::resp3_streamed_not_supported);
}

BOOST_AUTO_TEST_CASE(hostile_lengths) {
  check_error("$9999999999999\r\n", Error::resp3_bulk_too_large);
  check_error("$99999999999999999999999\r\n", Error::resp3_invalid_length);  // > 64 bits
  check_error("*18446744073709551616\r\n", Error::resp3_invalid_length);
  check_error("%9223372036854775808\r\n", Error::resp3_invalid_length);  // 2 * size overflows
  check_error("$-2\r\n", Error::resp3_invalid_length);
  check_error("*-2\r\n", Error::resp3_invalid_length);
  check_error("$-0\r\n", Error::resp3_invalid_length);
  check_error("$+3\r\nabc\r\n", Error::resp3_invalid_length);
  check_error("*+1\r\n:1\r\n", Error::resp3_invalid_length);
  check_error("$\r\n", Error::resp3_invalid_length);
  check_error("*\r\n", Error::resp3_invalid_length);
  check_error("$3x\r\nabc\r\n", Error::resp3_invalid_length);
  check_error("$ 3\r\nabc\r\n", Error::resp3_invalid_length);
  check_error("%-1\r\n", Error::resp3_invalid_length);  // only $ and * have RESP2 nulls
  check_error("~-1\r\n", Error::resp3_invalid_length);
  check_error("!-1\r\n", Error::resp3_invalid_length);
  check_error("*1\r\n$1a\r\n", Error::resp3_invalid_length);
  // Found by the fuzzer: garbage before a CR that is last, or not followed by LF, is judged
  // the same whatever the split.
  check_error("|=11\r", Error::resp3_invalid_length);
  check_error("%2\r\n$4\xf3\xf5$5\rJ\r\n", Error::resp3_invalid_length);
}

BOOST_AUTO_TEST_CASE(huge_count_allocates_nothing) {
  // The aggregate is delivered; its elements are simply awaited.
  Outcome const o = feed_all_ways("*9223372036854775807\r\n");
  BOOST_TEST(!o.ec);
  BOOST_REQUIRE(o.nodes.size() == 1u);
  BOOST_TEST(o.nodes[0].size == 9223372036854775807u);
  BOOST_TEST(o.depth == 1u);
  Outcome const m = feed_all_ways("%9223372036854775807\r\n");
  BOOST_TEST(!m.ec);
}

BOOST_AUTO_TEST_CASE(bulk_too_large_before_payload) {
  ParserConfig cfg;
  cfg.max_bulk_size = 10;
  check_error("$11\r\n", Error::resp3_bulk_too_large, cfg);
  Outcome const ok = feed_all_ways("$10\r\n0123456789\r\n", cfg);
  BOOST_TEST(!ok.ec);
  BOOST_TEST(ok.nodes.size() == 1u);
  check_error("!11\r\n", Error::resp3_bulk_too_large, cfg);
  check_error("=11\r\n", Error::resp3_bulk_too_large, cfg);
}

BOOST_AUTO_TEST_CASE(nesting_limit) {
  std::string deep;
  for (int i = 0; i < 1000; ++i)
    deep += "*1\r\n";
  check_error(deep, Error::resp3_nesting_too_deep);

  ParserConfig cfg;
  cfg.max_depth = 4;
  // Four open aggregates, a scalar at depth 4: fine. An empty aggregate at depth 4: fine.
  BOOST_TEST(!feed_all_ways("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", cfg).ec);
  BOOST_TEST(!feed_all_ways("*1\r\n*1\r\n*1\r\n*1\r\n*0\r\n", cfg).ec);
  check_error("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", Error::resp3_nesting_too_deep, cfg);
  // Attributes count towards the limit too.
  check_error("*1\r\n*1\r\n*1\r\n*1\r\n|1\r\n+a\r\n+b\r\n:1\r\n", Error::resp3_nesting_too_deep,
              cfg);

  cfg.max_depth = 0;
  BOOST_TEST(!feed_all_ways(":1\r\n*0\r\n", cfg).ec);
  check_error("*1\r\n:1\r\n", Error::resp3_nesting_too_deep, cfg);
}

BOOST_AUTO_TEST_CASE(line_limit) {
  ParserConfig cfg;
  cfg.max_line_length = 8;
  BOOST_TEST(!feed_all_ways("+1234567\r\n", cfg).ec);  // type byte + 7 = 8
  check_error("+12345678\r\n", Error::resp3_line_too_long, cfg);
  check_error("+123456789012", Error::resp3_line_too_long, cfg);  // never any CRLF
  check_error(":123456789\r\n", Error::resp3_line_too_long, cfg);
  // Bulk payloads are not lines.
  BOOST_TEST(!feed_all_ways("$20\r\n01234567890123456789\r\n", cfg).ec);
}

BOOST_AUTO_TEST_CASE(malformed_numbers) {
  check_error(":12a\r\n", Error::resp3_invalid_number);
  check_error(":12a", Error::resp3_invalid_number);  // judged before the CRLF arrives
  check_error(":\r\n", Error::resp3_invalid_number);
  check_error(":-\r\n", Error::resp3_invalid_number);
  check_error(":+1\r\n", Error::resp3_invalid_number);
  check_error(": 1\r\n", Error::resp3_invalid_number);
  check_error(":1 \r\n", Error::resp3_invalid_number);
  check_error(":1-2\r\n", Error::resp3_invalid_number);
  check_error(":9223372036854775808\r\n", Error::resp3_invalid_number);
  check_error(":-9223372036854775809\r\n", Error::resp3_invalid_number);
  check_error(":1.5\r\n", Error::resp3_invalid_number);
  check_error("(\r\n", Error::resp3_invalid_number);
  check_error("(12x\r\n", Error::resp3_invalid_number);
  check_error("(-\r\n", Error::resp3_invalid_number);
  for (std::string_view bad :
       {",\r\n", ",abc\r\n", ",1.2.3\r\n", ",1e\r\n", ",e5\r\n", ",.\r\n", ",-\r\n", ",1e+\r\n",
        ",0x10\r\n", ",infinit\r\n", ",1 \r\n", ",--1\r\n", ",nan(1)\r\n"}) {
    check_error(bad, Error::resp3_invalid_number);
  }
}

BOOST_AUTO_TEST_CASE(malformed_booleans_and_nulls) {
  check_error("#x\r\n", Error::resp3_invalid_boolean);
  check_error("#x", Error::resp3_invalid_boolean);
  check_error("#\r\n", Error::resp3_invalid_boolean);
  check_error("#tt\r\n", Error::resp3_invalid_boolean);
  check_error("#T\r\n", Error::resp3_invalid_boolean);
  check_error("_x\r\n", Error::resp3_missing_crlf);
}

BOOST_AUTO_TEST_CASE(missing_crlf) {
  check_error("$3\r\nabcXY", Error::resp3_missing_crlf);
  check_error("$3\r\nabc\rX", Error::resp3_missing_crlf);
  check_error("$3\r\nabcd\r\n", Error::resp3_missing_crlf);
  check_error("+OK\rX\r\n", Error::resp3_missing_crlf);
  check_error(":1\r:", Error::resp3_missing_crlf);
  // A lone LF ends no line: the parser waits for a CR (up to max_line_length).
  BOOST_TEST(!feed_all_ways("+OK\n").ec);
}

BOOST_AUTO_TEST_CASE(unknown_type_bytes) {
  for (std::string_view bad :
       {"x"sv, "X1\r\n"sv, " +OK\r\n"sv, "\r\n"sv, ";4\r\nHell\r\n"sv, ".\r\n"sv, "\0"sv}) {
    check_error(bad, Error::resp3_invalid_type);
  }
  // After a valid element.
  check_error("*2\r\n:1\r\n@\r\n", Error::resp3_invalid_type);
}

BOOST_AUTO_TEST_CASE(errors_are_sticky_until_reset) {
  Parser p;
  std::size_t consumed = 0;
  error_code ec;
  auto node = p.consume("*1\r\n:1\r\n?", consumed, ec);
  BOOST_TEST(node.has_value());
  BOOST_TEST(!ec);
  BOOST_TEST(consumed == 4u);
  BOOST_TEST(p.depth() == 1u);
  node = p.consume(":1\r\n?", consumed, ec);
  BOOST_TEST(node.has_value());
  BOOST_TEST(p.done());
  node = p.consume("?", consumed, ec);
  BOOST_TEST(!node);
  BOOST_TEST(ec == make_error_code(Error::resp3_invalid_type));
  node = p.consume("+OK\r\n", consumed, ec);
  BOOST_TEST(!node);
  BOOST_TEST(ec == make_error_code(Error::resp3_invalid_type));
  BOOST_TEST(consumed == 0u);
  p.reset();
  BOOST_TEST(p.depth() == 0u);
  node = p.consume("+OK\r\n", consumed, ec);
  BOOST_TEST(node.has_value());
  BOOST_TEST(!ec);
  BOOST_TEST(p.done());
}

BOOST_AUTO_TEST_CASE(reset_forgets_partial_reply) {
  Parser p;
  std::size_t consumed = 0;
  error_code ec;
  BOOST_TEST(p.consume("*3\r\n:1\r\n", consumed, ec).has_value());
  BOOST_TEST(p.depth() == 1u);
  p.reset();
  BOOST_TEST(p.depth() == 0u);
  auto const node = p.consume(":5\r\n", consumed, ec);
  BOOST_REQUIRE(node);
  BOOST_TEST(node->depth == 0u);
  BOOST_TEST(p.done());
}

BOOST_AUTO_TEST_SUITE_END()
