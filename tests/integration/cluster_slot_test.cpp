// rediskit::cluster::key_slot against a real cluster-enabled redis-server's CLUSTER KEYSLOT, on
// keys with and without hash tags, binary bytes and long keys, all in one pipelined request.
#include <rediskit/cluster/slot.hpp>
#include <rediskit/connection.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include "support/test_redis.hpp"

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace asio = boost::asio;

namespace {

std::vector<std::string> keys_to_check() {
  std::vector<std::string> keys{"",          "{",         "}",         "{}",        "{}{a}",
                                "a{b}{c}",   "{{x}}",     "x{",        "}{a}",      "{a",
                                "user:1",    "{user:1}",  "chat:{room:7}:members",
                                std::string("\0a", 2), std::string("a\0b", 3)};
  std::mt19937 rng(20261204);  // fixed: the same keys every run
  std::uniform_int_distribution<int> byte(0, 255), length(0, 40), brace(0, 9);
  for (int i = 0; i < 2000; ++i) {
    std::string k;
    int const n = i % 100 == 0 ? 600 : length(rng);  // some long ones
    for (int j = 0; j < n; ++j) {
      int const r = brace(rng);
      k.push_back(r == 0 ? '{' : r == 1 ? '}' : static_cast<char>(byte(rng)));
    }
    keys.push_back(std::move(k));
  }
  return keys;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cluster_slot_on_redis)

BOOST_AUTO_TEST_CASE(key_slot_agrees_with_cluster_keyslot) {
  rediskit::test::TestRedisServer server(rediskit::test::TestRedisServer::Options{
      .extra_args = {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     // its own bus port: the default, port + 10000, overflows for most
                     // ephemeral ports (Redis then refuses to start)
                     "--cluster-port", std::to_string(rediskit::test::detail::pick_free_port())}});
  auto const keys = keys_to_check();
  rediskit::resp3::Request req;
  for (auto const& k : keys) req.push("CLUSTER", "KEYSLOT", k);
  rediskit::resp3::Replies<std::int64_t> slots;

  asio::io_context ioc;
  rediskit::ConnectionConfig cfg;
  cfg.port = server.port();
  rediskit::Connection conn(ioc.get_executor(), cfg);
  bool done = false;
  std::exception_ptr failure;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        co_await conn.async_exec(req, slots, asio::use_awaitable);
        conn.close();
      },
      [&](std::exception_ptr e) {
        done = true;
        failure = e;
      });
  ioc.run_for(std::chrono::seconds(30));
  BOOST_REQUIRE_MESSAGE(done, "CLUSTER KEYSLOT did not answer in time");
  if (failure) std::rethrow_exception(failure);

  BOOST_REQUIRE_EQUAL(slots.size(), keys.size());
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (static_cast<std::int64_t>(rediskit::cluster::key_slot(keys[i])) != slots[i] &&
        ++mismatches <= 5)
      BOOST_ERROR("key #" << i << " (" << keys[i].size() << " bytes): rediskit says "
                          << rediskit::cluster::key_slot(keys[i]) << ", Redis " << slots[i]);
  }
  BOOST_TEST(mismatches == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
