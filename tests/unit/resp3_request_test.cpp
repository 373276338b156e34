// Unit tests of rediskit::resp3::Request: exact wire bytes of the commands it writes.
#include <rediskit/resp3/adapt.hpp>
#include <rediskit/resp3/request.hpp>

#include <boost/test/unit_test.hpp>

#include "support/escape.hpp"

#include <cstdint>
#include <forward_list>
#include <limits>
#include <list>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace rk_request_test {

// A user type written through the rediskit_to_bulk customization point (found by ADL).
struct UserId {
  int value = 0;
};
inline std::string rediskit_to_bulk(UserId const& id) {
  return "user:" + std::to_string(id.value);
}

// Customized even though it is tuple-like: written as one bulk, not flattened.
struct Point {
  int x = 0;
  int y = 0;
};
inline std::string rediskit_to_bulk(Point const& p) {
  return std::to_string(p.x) + "," + std::to_string(p.y);
}

}  // namespace rk_request_test

// Point looks tuple-like to the library (which would flatten it), but its own rediskit_to_bulk
// takes precedence.
template <>
struct std::tuple_size<rk_request_test::Point> : std::integral_constant<std::size_t, 2> {};

namespace {

using namespace std::string_literals;
using rediskit::resp3::Request;

using rediskit::test::escape;

void check_payload(Request const& r, std::string_view expected) {
  BOOST_TEST(escape(r.payload()) == escape(expected));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(resp3_request)

BOOST_AUTO_TEST_CASE(strings) {
  Request r;
  BOOST_TEST(r.empty());
  r.push("SET", "key", "value");
  check_payload(r, "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n");
  BOOST_TEST(!r.empty());
  BOOST_TEST(r.commands() == 1u);
  BOOST_TEST(r.expected_replies() == 1u);

  r.clear();
  std::string const binary("a\0\r\nb", 5);
  std::string_view const view = "vv";
  r.push("SET", binary, view, std::string("s"), ""s);
  check_payload(r, "*5\r\n$3\r\nSET\r\n$5\r\na\0\r\nb\r\n$2\r\nvv\r\n$1\r\ns\r\n$0\r\n\r\n"s);
  r.clear();
  r.push("PING");
  check_payload(r, "*1\r\n$4\r\nPING\r\n");
}

BOOST_AUTO_TEST_CASE(integers) {
  Request r;
  r.push("X", std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::uint64_t>::max(),
         0, -1, short{42}, std::uint8_t{255}, static_cast<signed char>(-5));
  check_payload(r,
                "*8\r\n$1\r\nX\r\n$20\r\n-9223372036854775808\r\n$20\r\n18446744073709551615\r\n"
                "$1\r\n0\r\n$2\r\n-1\r\n$2\r\n42\r\n$3\r\n255\r\n$2\r\n-5\r\n");
}

BOOST_AUTO_TEST_CASE(floating_point) {
  Request r;
  r.push("X", 1.5, 0.1, 1e20, -0.0, 100.0, 0.1f, 2.5L);
  check_payload(r,
                "*8\r\n$1\r\nX\r\n$3\r\n1.5\r\n$3\r\n0.1\r\n$5\r\n1e+20\r\n$2\r\n-0\r\n"
                "$3\r\n100\r\n$3\r\n0.1\r\n$3\r\n2.5\r\n");
  r.clear();
  r.push("ZADD", "z", std::numeric_limits<double>::infinity(), "a",
         -std::numeric_limits<double>::infinity(), "b", std::numeric_limits<double>::quiet_NaN(),
         -std::numeric_limits<float>::quiet_NaN());
  check_payload(r,
                "*8\r\n$4\r\nZADD\r\n$1\r\nz\r\n$3\r\ninf\r\n$1\r\na\r\n$4\r\n-inf\r\n$1\r\nb\r\n"
                "$3\r\nnan\r\n$3\r\nnan\r\n");
  // Shortest round trip: what is written parses back to the same double.
  r.clear();
  double const third = 1.0 / 3.0;
  r.push("X", third);
  std::vector<std::string> back;
  BOOST_TEST(!rediskit::resp3::parse_all(r.payload(), back));
  BOOST_REQUIRE(back.size() == 2u);
  BOOST_TEST(std::stod(back[1]) == third);
}

BOOST_AUTO_TEST_CASE(ranges) {
  Request r;
  std::map<std::string, int> const fields{{"a", 1}, {"b", 2}};
  r.push_range("HSET", "user:1", fields);
  check_payload(r,
                "*6\r\n$4\r\nHSET\r\n$6\r\nuser:1\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n");

  r.clear();
  std::vector<std::pair<std::string, std::string>> const kv{{"k1", "v1"}, {"k2", "v2"}};
  r.push_range("MSET", kv);
  check_payload(r, "*5\r\n$4\r\nMSET\r\n$2\r\nk1\r\n$2\r\nv1\r\n$2\r\nk2\r\n$2\r\nv2\r\n");

  r.clear();
  std::forward_list<int> const unsized{3, 2, 1};  // not sized: counted first
  r.push_range("RPUSH", "list", unsized);
  check_payload(r, "*5\r\n$5\r\nRPUSH\r\n$4\r\nlist\r\n$1\r\n3\r\n$1\r\n2\r\n$1\r\n1\r\n");

  r.clear();
  int const numbers[] = {1, 2, 3};
  r.push_range("SADD", "s", std::span<int const>(numbers));  // a view (clang 14 + libstdc++ 12
                                                             // cannot compile views::iota)
  check_payload(r, "*5\r\n$4\r\nSADD\r\n$1\r\ns\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n");

  r.clear();
  std::list<std::tuple<double, std::string_view>> const scored{{1.5, "a"}, {2, "b"}};
  r.push_range("ZADD", "z", scored);
  check_payload(r, "*6\r\n$4\r\nZADD\r\n$1\r\nz\r\n$3\r\n1.5\r\n$1\r\na\r\n$1\r\n2\r\n$1\r\nb\r\n");

  r.clear();
  std::vector<std::string> const keys{"k1", "k2"};
  r.push_range("DEL", keys);
  check_payload(r, "*3\r\n$3\r\nDEL\r\n$2\r\nk1\r\n$2\r\nk2\r\n");

  r.clear();
  std::vector<std::string> const none;
  r.push_range("DEL", none);  // written as is: the server answers with its error
  check_payload(r, "*1\r\n$3\r\nDEL\r\n");
  BOOST_TEST(r.expected_replies() == 1u);
}

BOOST_AUTO_TEST_CASE(user_types) {
  Request r;
  r.push("GET", rk_request_test::UserId{7});
  check_payload(r, "*2\r\n$3\r\nGET\r\n$6\r\nuser:7\r\n");
  r.clear();
  std::vector<rk_request_test::UserId> const ids{{1}, {2}};
  r.push_range("MGET", ids);
  check_payload(r, "*3\r\n$4\r\nMGET\r\n$6\r\nuser:1\r\n$6\r\nuser:2\r\n");
  r.clear();
  std::vector<rk_request_test::Point> const points{{1, 2}};
  r.push_range("SADD", "p", points);
  check_payload(r, "*3\r\n$4\r\nSADD\r\n$1\r\np\r\n$3\r\n1,2\r\n");
}

BOOST_AUTO_TEST_CASE(pipelines_and_expected_replies) {
  Request r;
  r.reserve(256);
  r.push("SUBSCRIBE", "a", "b");
  r.push("psubscribe", "n*");
  r.push("Unsubscribe");
  r.push("SSUBSCRIBE", "s");
  r.push("punsubscribe");
  r.push("SUNSUBSCRIBE");
  r.push("PING");
  r.push("PUBLISH", "a", "hi");  // PUBLISH gets a regular reply
  BOOST_TEST(r.commands() == 8u);
  BOOST_TEST(r.expected_replies() == 2u);
  BOOST_TEST(r.payload().substr(0, 4) == "*3\r\n");
  // The payload is a sequence of valid RESP arrays of blob strings.
  rediskit::resp3::Tree tree;
  BOOST_TEST(!rediskit::resp3::parse_all(r.payload(), tree));
  std::size_t roots = 0;
  for (auto const& node : tree) {
    if (node.depth == 0) {
      ++roots;
      BOOST_TEST((node.type == rediskit::resp3::Type::array));
    } else {
      BOOST_TEST((node.type == rediskit::resp3::Type::blob_string));
    }
  }
  BOOST_TEST(roots == 8u);
  r.clear();
  BOOST_TEST(r.empty());
  BOOST_TEST(r.commands() == 0u);
  BOOST_TEST(r.expected_replies() == 0u);
  BOOST_TEST(r.payload().empty());
}

BOOST_AUTO_TEST_CASE(config) {
  Request a;
  BOOST_TEST(!a.config.fail_if_not_connected);
  BOOST_TEST(!a.config.idempotent);
  Request b(Request::Config{.fail_if_not_connected = true, .idempotent = true});
  BOOST_TEST(b.config.fail_if_not_connected);
  BOOST_TEST(b.config.idempotent);
  b.push("GET", "k");
  b.clear();
  BOOST_TEST(b.config.idempotent);  // clear() keeps the config
}

BOOST_AUTO_TEST_SUITE_END()
