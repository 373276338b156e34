// The I/O-free pieces of Sentinel mode: +switch-master payloads and Sentinel addresses.
#include <rediskit/backend/detail/sentinel.hpp>

#include <boost/test/unit_test.hpp>

#include <string>

namespace sentinel = rediskit::detail::sentinel;
namespace config = rediskit::detail::config;

BOOST_AUTO_TEST_SUITE(sentinel_parsing)

BOOST_AUTO_TEST_CASE(switch_master_payloads) {
  auto m = sentinel::parse_switch_master("mymaster 127.0.0.1 6379 10.0.0.2 6380");
  BOOST_REQUIRE(m.has_value());
  BOOST_TEST(m->name == "mymaster");
  BOOST_TEST(m->old_host == "127.0.0.1");
  BOOST_TEST(m->old_port == 6379);
  BOOST_TEST(m->new_host == "10.0.0.2");
  BOOST_TEST(m->new_port == 6380);
  auto v6 = sentinel::parse_switch_master("m ::1 1 ::2 2");
  BOOST_REQUIRE(v6.has_value());
  BOOST_TEST(v6->new_host == "::2");
  BOOST_TEST(!sentinel::parse_switch_master("m 127.0.0.1 6379 10.0.0.2").has_value());
  BOOST_TEST(!sentinel::parse_switch_master("m a 1 b 0").has_value());
  BOOST_TEST(!sentinel::parse_switch_master("m a 1 b 70000").has_value());
  BOOST_TEST(!sentinel::parse_switch_master("").has_value());
}

BOOST_AUTO_TEST_CASE(sentinel_addresses) {
  std::string host;
  std::uint16_t port = 0;
  BOOST_TEST(config::parse_host_port("s1:26380", 26379, host, port));
  BOOST_TEST(host == "s1");
  BOOST_TEST(port == 26380);
  BOOST_TEST(config::parse_host_port("s2", 26379, host, port));
  BOOST_TEST(port == 26379);
  BOOST_TEST(config::parse_host_port("[::1]:5", 26379, host, port));
  BOOST_TEST(host == "::1");
  BOOST_TEST(port == 5);
  BOOST_TEST(!config::parse_host_port("", 26379, host, port));
  BOOST_TEST(!config::parse_host_port(":1", 26379, host, port));
  BOOST_TEST(!config::parse_host_port("h:", 26379, host, port));
  BOOST_TEST(!config::parse_host_port("h:0", 26379, host, port));
  BOOST_TEST(!config::parse_host_port("[::1", 26379, host, port));
  BOOST_TEST(!config::parse_host_port("[::1]x", 26379, host, port));
}

BOOST_AUTO_TEST_SUITE_END()
