// ArgList: what a command's list argument can be built from, and what it yields.
#include <rediskit/arg_list.hpp>
#include <rediskit/command.hpp>
#include <rediskit/commands.hpp>

#include <boost/test/unit_test.hpp>

#include <array>
#include <list>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

using rediskit::ArgList;
using rediskit::FieldValue;
using rediskit::ScoreMember;

BOOST_AUTO_TEST_SUITE(arg_list)

BOOST_AUTO_TEST_CASE(views_any_range_of_strings) {
  std::vector<std::string_view> const views{"a", "b"};
  std::vector<std::string> const owned{"c"};
  std::list<std::string> const linked{"x", "y", "z"};
  std::array<char const*, 2> const literals{"p", "q"};
  ArgList<std::string_view> a = views;
  ArgList<std::string_view> b = owned;
  ArgList<std::string_view> c = linked;
  ArgList<std::string_view> d = literals;
  ArgList<std::string_view> e = std::span<std::string_view const>(views);
  BOOST_TEST(a.to_vector() == views);
  BOOST_TEST(b.front() == "c");
  BOOST_TEST(c.to_vector() == std::vector<std::string_view>({"x", "y", "z"}));
  BOOST_TEST(d.size() == 2u);
  BOOST_TEST(e.size() == 2u);
}

BOOST_AUTO_TEST_CASE(one_string_is_a_list_of_one) {
  std::string const s("k\0ey", 4);
  ArgList<std::string_view> a = s;
  ArgList<std::string_view> b = "literal";
  BOOST_TEST(a.size() == 1u);
  BOOST_TEST(a.front() == s);
  BOOST_TEST(b.front() == "literal");
  BOOST_TEST(ArgList<std::string_view>{}.empty());
}

BOOST_AUTO_TEST_CASE(up_to_eight_values_in_braces) {
  ArgList<std::string_view> a{"1", "2", "3", "4", "5", "6", "7", "8"};
  BOOST_TEST(a.size() == 8u);
  BOOST_TEST(a.to_vector().back() == "8");
  ArgList<FieldValue> f{{"name", "Alice"}, {"status", "online"}};
  BOOST_TEST(f.size() == 2u);
  BOOST_TEST(f.to_vector()[1].value == "online");
  ArgList<ScoreMember> z{{1.5, "a"}, {-2, "b"}};
  BOOST_TEST(z.to_vector()[1].score == -2);
}

BOOST_AUTO_TEST_CASE(pairs_from_maps_and_vectors_of_pairs) {
  std::map<std::string, std::string> const m{{"f1", "v1"}, {"f2", "v2"}};
  std::vector<std::pair<double, std::string>> const scores{{3, "m"}};
  ArgList<FieldValue> a = m;
  ArgList<ScoreMember> b = scores;
  BOOST_TEST(a.size() == 2u);
  BOOST_TEST(a.front().field == "f1");
  BOOST_TEST(b.front().member == "m");
  BOOST_TEST(b.front().score == 3);
}

BOOST_AUTO_TEST_CASE(commands_expand_their_lists_into_arguments) {
  std::vector<std::string> const keys{"k1", "k2", "k3"};
  BOOST_TEST(rediskit::argv(rediskit::cmd::del{.keys = keys}) ==
             std::vector<std::string>({"DEL", "k1", "k2", "k3"}));
  std::map<std::string, std::string> const m{{"a", "1"}};
  BOOST_TEST(rediskit::argv(rediskit::cmd::hset{.key = "h", .fields = m}) ==
             std::vector<std::string>({"HSET", "h", "a", "1"}));
  rediskit::resp3::Request req;
  rediskit::push_command(req, rediskit::cmd::del{.keys = {"a", "b"}});
  BOOST_TEST(req.payload() == "*3\r\n$3\r\nDEL\r\n$1\r\na\r\n$1\r\nb\r\n");
  BOOST_TEST(req.expected_replies() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
