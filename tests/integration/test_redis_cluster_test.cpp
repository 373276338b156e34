// The TestRedisCluster fixture itself: 3 masters with a replica each, every slot served, a key
// sent to the wrong master redirected (MOVED) to the owner of cluster::key_slot(key), and
// nothing left running once the object is gone.
#include <rediskit/cluster/slot.hpp>

#include <boost/test/unit_test.hpp>

#include "support/test_redis_cluster.hpp"

#include <string>
#include <vector>

BOOST_AUTO_TEST_SUITE(test_redis_cluster)

BOOST_AUTO_TEST_CASE(three_masters_three_replicas_every_slot_and_moved_to_the_owner) {
  std::vector<unsigned short> ports;
  {
    rediskit::test::TestRedisCluster cluster;
    ports = cluster.ports();
    BOOST_REQUIRE_EQUAL(cluster.size(), 6u);
    BOOST_TEST(cluster.command(0, "CLUSTER INFO").find("cluster_slots_assigned:16384") !=
               std::string::npos);

    auto const nodes =
        rediskit::test::detail::parse_cluster_nodes(cluster.command(0, "CLUSTER NODES"));
    BOOST_REQUIRE_EQUAL(nodes.size(), 6u);
    int masters = 0, covered = 0;
    for (auto const& n : nodes) {
      masters += n.master;
      for (auto [lo, hi] : n.slots) covered += hi - lo + 1;
    }
    BOOST_TEST(masters == 3);
    BOOST_TEST(covered == 16384);

    auto owner_of = [&](int slot) -> unsigned short {
      for (auto const& n : nodes)
        for (auto [lo, hi] : n.slots)
          if (slot >= lo && slot <= hi) return n.port;
      return 0;
    };
    for (std::string const key : {"user:1", "{room:7}:members", "somekey", "a", "{x}y"}) {
      int const slot = rediskit::cluster::key_slot(key);
      unsigned short const owner = owner_of(slot);
      BOOST_TEST_CONTEXT("key " << key << ", slot " << slot << ", owner port " << owner) {
        BOOST_REQUIRE(owner != 0);
        for (auto const& n : nodes) {
          if (!n.master) continue;
          std::string const reply =
              rediskit::test::detail::inline_command(n.port, "SET " + key + " v");
          if (n.port == owner)
            BOOST_TEST(reply == "+OK");
          else
            BOOST_TEST(reply == "-MOVED " + std::to_string(slot) + " 127.0.0.1:" +
                                    std::to_string(owner));
        }
      }
    }
  }
  for (auto p : ports) BOOST_TEST(!rediskit::test::detail::answers_ping(p), "port " << p);
}

BOOST_AUTO_TEST_SUITE_END()
