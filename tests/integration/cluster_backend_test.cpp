// ClusterBackend on a throwaway 3-master cluster (TestRedisCluster, no replicas): routing by
// slot, batches split over masters and put back in order, cross-slot refusals before anything
// is sent, scripts loaded per node, and the redirections of a manual resharding (ASK while the
// slot migrates, MOVED once it has moved), each checked against what the nodes hold.
#include <rediskit/backend/cluster_backend.hpp>
#include <rediskit/commands.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include "support/test_redis_cluster.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using boost::system::error_code;

namespace {

// One cluster for the whole suite (start-up is seconds); each test uses keys of its own.
test::TestRedisCluster& shared_cluster() {
  static test::TestRedisCluster cluster(test::TestRedisCluster::Options{.replicas_per_master = 0});
  return cluster;
}

struct Fixture {
  Fixture() : cluster(shared_cluster()), backend(ioc, config()) {}

  ClusterConfig config() const {
    ClusterConfig c;
    c.nodes = {"127.0.0.1:" + std::to_string(cluster.node(0).port())};
    return c;
  }

  template <class X>
  static auto reply_of(X const&) {
    if constexpr (CommandRange<X>)
      return std::vector<reply_t<std::ranges::range_value_t<X>>>{};
    else
      return reply_t<X>{};
  }

  template <class X>
  auto exec(X const& x, Diagnostics* diag = nullptr) {
    using R = decltype(reply_of(x));
    std::optional<std::pair<error_code, R>> out;
    auto h = [&](error_code ec, R r) { out.emplace(ec, std::move(r)); };
    if (diag)
      backend.async_exec(x, *diag, h);
    else
      backend.async_exec(x, h);
    ioc.restart();
    while (!out && ioc.run_one_for(10s)) {
    }
    BOOST_REQUIRE_MESSAGE(out, "the operation never completed");
    return std::move(*out);
  }

  // What node `i` holds under `key`, read straight from it (no client routing).
  std::string raw_get(std::size_t i, std::string const& key) {
    return cluster.command(i, "GET " + key);
  }

  test::TestRedisCluster& cluster;
  boost::asio::io_context ioc;
  ClusterBackend backend;
};

// A key of `slot`: "{t}" where t is the first of tag0, tag1, ... that hashes there.
std::string key_in_slot(int slot, std::string const& suffix) {
  for (int i = 0;; ++i) {
    std::string tag = "t" + std::to_string(i);
    if (cluster::key_slot(tag) == slot) return "{" + tag + "}" + suffix;
  }
}

auto const incr_script = make_script<long long>("return redis.call('INCRBY', KEYS[1], ARGV[1])",
                                                [](ScriptContext auto&) -> long long { return 0; });

}  // namespace

BOOST_AUTO_TEST_SUITE(cluster_backend)

BOOST_FIXTURE_TEST_CASE(every_key_lands_on_the_master_of_its_slot, Fixture) {
  std::vector<std::string> keys;
  for (int i = 0; i < 60; ++i) keys.push_back("route:" + std::to_string(i));
  std::vector<bool> seen(3);
  for (auto const& k : keys) {
    auto [ec, ok] = exec(cmd::set{.key = k, .value = "v-" + k});
    BOOST_REQUIRE_MESSAGE(!ec, k << ": " << ec.message());
    BOOST_TEST(ok);
    auto const owner = cluster.owner_of(cluster::key_slot(k));
    BOOST_TEST(raw_get(owner, k) == "v-" + k, k << " is not on node " << owner);
    seen[owner] = true;
  }
  BOOST_TEST((seen[0] && seen[1] && seen[2]), "60 keys should reach all 3 masters");
  auto [ec, v] = exec(cmd::get{"route:7"});
  BOOST_TEST(!ec);
  BOOST_TEST(v.value_or("") == "v-route:7");
  BOOST_TEST(backend.stats().refreshes >= 1u);
  BOOST_TEST(backend.slot_map().covers_all_slots());
  BOOST_TEST(backend.health() == HealthStatus::ok);
}

BOOST_FIXTURE_TEST_CASE(a_batch_over_every_master_comes_back_in_order, Fixture) {
  std::vector<cmd::set> sets;
  std::vector<std::string> keys, values;
  for (int i = 0; i < 40; ++i) {
    keys.push_back("split:" + std::to_string(i));
    values.push_back(std::to_string(i * 7));
  }
  for (int i = 0; i < 40; ++i) sets.push_back({.key = keys[i], .value = values[i]});
  auto const splits = backend.stats().split_batches;
  auto [ec, oks] = exec(sets);
  BOOST_REQUIRE(!ec);
  BOOST_TEST(oks.size() == 40u);
  BOOST_TEST(backend.stats().split_batches == splits + 1);

  std::vector<cmd::get> gets;
  for (auto const& k : keys) gets.push_back({k});
  gets.push_back({"split:missing"});
  auto [ec2, got] = exec(gets);
  BOOST_REQUIRE(!ec2);
  BOOST_REQUIRE_EQUAL(got.size(), 41u);
  for (int i = 0; i < 40; ++i) BOOST_TEST(got[i].value_or("?") == values[i]);
  BOOST_TEST(!got[40].has_value());

  // A mixed batch: typed parts over several masters, and a failing command in the middle
  // that leaves the others' replies in place.
  auto [ec3, r] = exec(batch(cmd::incr{"split:n1"}, cmd::get{keys[3]}, cmd::incr{keys[5]},
                             cmd::incr{"split:n2"}));
  BOOST_TEST(!ec3);  // INCR of "35" is fine
  BOOST_TEST(std::get<0>(r) == 1);
  BOOST_TEST(std::get<1>(r).value_or("") == values[3]);
  BOOST_TEST(std::get<2>(r) == 36);
  BOOST_TEST(std::get<3>(r) == 1);

  auto [ec4, r4] = exec(batch(cmd::set{.key = "split:s", .value = "text"}, cmd::incr{"split:s"},
                              cmd::get{keys[9]}));
  BOOST_TEST(ec4 == make_error_code(Error::server_error));
  BOOST_TEST(std::get<2>(r4).value_or("") == values[9]);
}

BOOST_FIXTURE_TEST_CASE(cross_slot_transactions_and_commands_fail_before_sending, Fixture) {
  Diagnostics diag;
  auto [ec, r] = exec(transaction(cmd::set{.key = "xs:a", .value = "1"},
                                  cmd::set{.key = "xs:b", .value = "2"}),
                      &diag);
  BOOST_TEST(ec == make_error_code(Error::cross_slot));
  BOOST_TEST(diag.detail.find("'xs:a'") != std::string::npos, diag.detail);
  BOOST_TEST(diag.detail.find("'xs:b'") != std::string::npos, diag.detail);
  // Nothing was sent: neither key exists on its master.
  BOOST_TEST(raw_get(cluster.owner_of(cluster::key_slot("xs:a")), "xs:a").empty());
  BOOST_TEST(raw_get(cluster.owner_of(cluster::key_slot("xs:b")), "xs:b").empty());

  Diagnostics d2;
  auto [ec2, v] = exec(cmd::mget{{"xs:a", "xs:b"}}, &d2);
  BOOST_TEST(ec2 == make_error_code(Error::cross_slot));
  BOOST_TEST(!d2.detail.empty());

  // The same with one hash tag: one slot, atomic.
  auto [ec3, r3] = exec(transaction(cmd::set{.key = "{xs}:a", .value = "1"},
                                    cmd::incr{"{xs}:n"}, cmd::get{"{xs}:a"}));
  BOOST_TEST(!ec3);
  BOOST_TEST(std::get<1>(r3) == 1);
  BOOST_TEST(std::get<2>(r3).value_or("") == "1");
  auto [ec4, m] = exec(cmd::mget{{"{xs}:a", "{xs}:n"}});
  BOOST_TEST(!ec4);
  BOOST_REQUIRE_EQUAL(m.size(), 2u);
  BOOST_TEST(m[1].value_or("") == "1");
}

BOOST_FIXTURE_TEST_CASE(scripts_are_loaded_on_each_node_and_again_after_a_flush, Fixture) {
  // Keys on every master: each node loads the script the first time it runs there.
  for (int i = 0; i < 12; ++i) {
    auto const k = "script:" + std::to_string(i);
    auto [ec, n] = exec(incr_script({k}, {"5"}));
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
    BOOST_TEST(n == 5);
  }
  // A node that lost its scripts (SCRIPT FLUSH) answers NOSCRIPT: the command did not run, so
  // it is sent again behind SCRIPT LOAD, and runs once.
  auto const owner = cluster.owner_of(cluster::key_slot("script:3"));
  BOOST_REQUIRE(cluster.command(owner, "SCRIPT FLUSH") == "+OK");
  auto const before = backend.stats().no_script;
  auto [ec, n] = exec(incr_script({"script:3"}, {"1"}));
  BOOST_TEST(!ec);
  BOOST_TEST(n == 6);
  BOOST_TEST(backend.stats().no_script == before + 1);
  BOOST_TEST(raw_get(owner, "script:3") == "6");

  // A script over keys of two slots is refused before it is sent.
  Diagnostics diag;
  auto [ec2, n2] = exec(incr_script({"script:1", "script:2"}, {"1"}), &diag);
  BOOST_TEST(ec2 == make_error_code(Error::cross_slot));
}

BOOST_FIXTURE_TEST_CASE(a_resharded_slot_is_followed_through_ask_then_moved, Fixture) {
  int const slot = 4242;
  auto const from = cluster.owner_of(slot);
  auto const to = (from + 1) % 3;
  auto const k1 = key_in_slot(slot, ":one"), k2 = key_in_slot(slot, ":two");
  BOOST_REQUIRE(!exec(cmd::set{.key = k1, .value = "1"}).first);
  BOOST_REQUIRE(!exec(cmd::set{.key = k2, .value = "2"}).first);

  // Half way: k1 moved to `to`, k2 still on `from`.
  cluster.begin_migration(slot, from, to);
  cluster.migrate_key(k1, from, to);
  BOOST_REQUIRE(raw_get(from, k1).starts_with("-ASK "));  // gone from `from`: ask `to`

  auto const asks = backend.stats().ask;
  auto [ec, v1] = exec(cmd::get{k1});
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(v1.value_or("") == "1");
  BOOST_TEST(backend.stats().ask == asks + 1);
  auto [ec2, v2] = exec(cmd::get{k2});
  BOOST_TEST(v2.value_or("") == "2");
  // A write to the migrated key goes through ASK too and lands on `to`.
  auto [ec3, n] = exec(cmd::incr{k1});
  BOOST_TEST(!ec3);
  BOOST_TEST(n == 2);
  // A batch of both keys: one of them is redirected, the other is not; in order.
  auto [ec4, both] = exec(batch(cmd::get{k1}, cmd::get{k2}));
  BOOST_TEST(!ec4);
  BOOST_TEST(std::get<0>(both).value_or("") == "2");
  BOOST_TEST(std::get<1>(both).value_or("") == "2");

  // The end of the migration: the slot is `to`'s, and `from` answers MOVED.
  cluster.migrate_key(k2, from, to);
  cluster.finish_migration(slot, to);
  auto const moved = backend.stats().moved;
  auto [ec5, v5] = exec(cmd::get{k2});
  BOOST_TEST(!ec5);
  BOOST_TEST(v5.value_or("") == "2");
  BOOST_TEST(backend.stats().moved == moved + 1);
  // The map learnt it: the next command goes straight there.
  auto [ec6, v6] = exec(cmd::get{k1});
  BOOST_TEST(v6.value_or("") == "2");
  BOOST_TEST(backend.stats().moved == moved + 1);
  BOOST_TEST(backend.slot_map().master_of(slot) >= 0);

  // Give the slot back, so that the suite's other tests see the layout they started with.
  cluster.begin_migration(slot, to, from);
  cluster.migrate_key(k1, to, from);
  cluster.migrate_key(k2, to, from);
  cluster.finish_migration(slot, from);
}

// The classic subscriber's link is killed: it comes back, subscribes again, says so once
// (Error::resubscribed: what was published meanwhile is lost), then receives again.
BOOST_FIXTURE_TEST_CASE(a_classic_subscriber_says_when_its_link_came_back, Fixture) {
  auto sub = backend.make_subscriber();
  auto run_until = [&](auto&& done) {
    auto const deadline = std::chrono::steady_clock::now() + 15s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      ioc.restart();
      ioc.run_for(20ms);
    }
    return true;
  };
  std::optional<error_code> sub_ec;
  sub.async_subscribe("classic:news", [&](error_code ec) { sub_ec = ec; });
  BOOST_REQUIRE(run_until([&] { return sub_ec.has_value(); }));
  BOOST_REQUIRE(!*sub_ec);
  std::optional<error_code> got;
  Message m;
  sub.async_receive([&](error_code ec, Message msg) {
    got = ec;
    m = std::move(msg);
  });
  int killed = 0;
  for (std::size_t i = 0; i < 3; ++i)
    killed += std::stoi(cluster.command(i, "CLIENT KILL TYPE pubsub").substr(1));
  BOOST_TEST(killed == 1);
  BOOST_REQUIRE(run_until([&] { return got.has_value(); }));  // a waiting receive hears it
  BOOST_TEST(*got == Error::resubscribed, got->message());
  got.reset();
  sub.async_receive([&](error_code ec, Message msg) {
    got = ec;
    m = std::move(msg);
  });
  BOOST_REQUIRE(run_until([&] {
    if (!got) exec(cmd::publish{"classic:news", "back"});
    return got.has_value();
  }));
  BOOST_TEST(!*got);
  BOOST_TEST(m.payload == "back");
}

// A shard channel lives on its slot's master. When the slot moves, the old master drops the
// subscription (a SUNSUBSCRIBE push) and the subscriber subscribes on the new one; when the
// subscriber's link was down while the slot moved, the resubscription after the reconnection
// is refused (MOVED) and the channel is moved the same way.
BOOST_FIXTURE_TEST_CASE(a_shard_channel_follows_its_slot, Fixture) {
  int const slot = 4243;
  auto const from = cluster.owner_of(slot);
  auto const to = (from + 1) % 3;
  auto const channel = key_in_slot(slot, ":typing");
  auto sub = backend.make_subscriber();
  auto run_until = [&](auto&& done) {  // done() is called once per round (it may publish)
    auto const deadline = std::chrono::steady_clock::now() + 15s;
    for (;;) {
      if (done()) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      ioc.restart();
      ioc.run_for(20ms);
    }
  };
  std::optional<error_code> sub_ec;
  sub.async_ssubscribe(channel, [&](error_code ec) { sub_ec = ec; });
  BOOST_REQUIRE(run_until([&] { return sub_ec.has_value(); }));
  BOOST_REQUIRE(!*sub_ec);
  int resubscribed = 0;  // reports of a link that came back (Error::resubscribed)
  auto receive = [&] {
    for (;;) {
      std::optional<Message> m;
      std::optional<error_code> got;
      sub.async_receive([&](error_code ec, Message msg) {
        got = ec;
        m = std::move(msg);
      });
      BOOST_REQUIRE(run_until([&] { return got.has_value(); }));
      if (*got == Error::resubscribed) {
        ++resubscribed;
        continue;
      }
      BOOST_TEST(!*got);
      return *m;
    }
  };
  // Published until one subscriber gets it (SPUBLISH's exact count): the subscriber has moved.
  auto published_once = [&](std::string const& payload) {
    return run_until([&] { return exec(cmd::spublish{channel, payload}).second == 1; });
  };
  BOOST_TEST(published_once("1"));
  BOOST_TEST(receive().payload == "1");
  BOOST_TEST(sub.shard_moves() == 0);

  // The slot moves while the subscriber listens.
  cluster.begin_migration(slot, from, to);
  cluster.finish_migration(slot, to);
  BOOST_TEST(published_once("2"));
  BOOST_TEST(sub.shard_moves() == 1);
  BOOST_TEST(receive().payload == "2");

  // The slot moves back while the subscriber's link is down (killed, and the slot moved before
  // the io_context runs again).
  BOOST_REQUIRE(cluster.command(to, "CLIENT KILL TYPE pubsub").starts_with(":"));
  cluster.begin_migration(slot, to, from);
  cluster.finish_migration(slot, from);
  BOOST_TEST(published_once("3"));
  BOOST_TEST(sub.shard_moves() == 2);
  auto m = receive();
  BOOST_TEST(m.payload == "3");
  BOOST_TEST(m.sharded);
  BOOST_TEST(m.channel == channel);
  // Each move says so once its channel is subscribed again; a report not yet received when
  // the next comes is one report, and one may come after the first message that follows it.
  BOOST_TEST(resubscribed >= 1);
  // Once there, not twice: the old master's connection forgot the channel (it would subscribe
  // again there after a reconnection).
  BOOST_TEST(cluster.command(to, "CLIENT LIST TYPE pubsub").find("ssub=1") == std::string::npos);
  BOOST_TEST(cluster.command(from, "CLIENT LIST TYPE pubsub").find("ssub=1") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(keyspace_commands_cover_every_master, Fixture) {
  BOOST_REQUIRE(exec(cmd::flushdb{}).second);  // on every master
  BOOST_TEST(exec(cmd::dbsize{}).second == 0);
  std::vector<cmd::set> sets;
  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back("ks:" + std::to_string(i));
  for (auto const& k : keys) sets.push_back({.key = k, .value = "v"});
  BOOST_REQUIRE(!exec(sets).first);
  for (std::size_t i = 0; i < 3; ++i)
    BOOST_TEST(std::stoll(cluster.command(i, "DBSIZE").substr(1)) > 0, "node " << i << " empty");

  // DBSIZE sums the masters, KEYS concatenates them.
  auto [ec, n] = exec(cmd::dbsize{});
  BOOST_TEST(!ec);
  BOOST_TEST(n == 300);
  auto [ec2, all] = exec(cmd::keys{"ks:*"});
  BOOST_TEST(!ec2);
  std::set<std::string> const want(keys.begin(), keys.end());
  BOOST_TEST((std::set<std::string>(all.begin(), all.end()) == want));

  // SCAN walks every master in turn, through one cursor, and ends with 0.
  std::multiset<std::string> seen;
  std::set<std::uint64_t> masters_walked;
  std::uint64_t cursor = 0;
  int steps = 0;
  do {
    auto [e, page] = exec(cmd::scan{.cursor = cursor, .match = "ks:*", .count = 25});
    BOOST_REQUIRE_MESSAGE(!e, e.message());
    seen.insert(page.keys.begin(), page.keys.end());
    cursor = page.cursor;
    masters_walked.insert(cursor >> 50);
    BOOST_REQUIRE(++steps < 1000);
  } while (cursor != 0);
  BOOST_TEST(seen.size() == 300u);  // each key once: a stable cluster keeps SCAN's guarantee
  BOOST_TEST((std::set<std::string>(seen.begin(), seen.end()) == want));
  BOOST_TEST(masters_walked.size() >= 3u);  // the other two masters' start slots, and 0

  // In a batch beside other commands; not in a transaction.
  auto [ec3, r] = exec(batch(cmd::dbsize{}, cmd::get{"ks:7"}, cmd::keys{"ks:1?"}));
  BOOST_TEST(!ec3);
  BOOST_TEST(std::get<0>(r) == 300);
  BOOST_TEST(std::get<1>(r).value_or("") == "v");
  BOOST_TEST(std::get<2>(r).size() == 10u);
  Diagnostics diag;
  auto [ec4, r4] = exec(transaction(cmd::get{"ks:7"}, cmd::dbsize{}), &diag);
  BOOST_TEST(ec4 == make_error_code(Error::cross_slot));
  BOOST_TEST(diag.detail.find("DBSIZE") != std::string::npos, diag.detail);

  BOOST_TEST(exec(cmd::flushdb{}).second);
  BOOST_TEST(exec(cmd::dbsize{}).second == 0);
}

BOOST_AUTO_TEST_CASE(no_reachable_seed_is_a_clear_error) {
  boost::asio::io_context ioc;
  ClusterConfig c;
  c.nodes = {"127.0.0.1:" + std::to_string(test::detail::pick_free_port())};
  c.node.max_retry_attempts = 0;
  c.node.connect_timeout = 500ms;
  ClusterBackend backend(ioc, c);
  std::optional<error_code> got;
  backend.async_exec(cmd::get{"k"}, [&](error_code ec, auto) { got = ec; });
  ioc.run_for(10s);
  BOOST_REQUIRE(got);
  BOOST_TEST(!!*got);
  BOOST_TEST(backend.health() == HealthStatus::disconnected);
}

BOOST_AUTO_TEST_SUITE_END()
