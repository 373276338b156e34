// RedisBackend in Sentinel mode, on a throwaway Sentinel set (1 master, 1 replica, 3
// Sentinels): discovery through the Sentinels (a dead one skipped), a wrong master name as a
// clear error, callers following a killed master to the promoted replica (only writes in
// flight fail, with connection_lost; no INCR applied twice; the time to recover printed), and a
// write to a demoted master (READONLY) failing distinctly while the backend finds the master.
#include "support/blpop.hpp"
#include "support/test_redis.hpp"
#include "support/test_redis_sentinel.hpp"

#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/commands.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using rediskit::test::TestRedisSentinelSet;
using Clock = std::chrono::steady_clock;

namespace {

/// WAIT numreplicas timeout -> how many replicas acknowledged the connection's writes.
struct wait_replicas {
  int replicas = 1;
  int timeout_ms = 0;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("WAIT", replicas, timeout_ms);
  }
};

using rediskit::test::blpop;

boost::system::error_code first(std::vector<boost::system::error_code> const& v) {
  return v.empty() ? boost::system::error_code{} : v.front();
}

std::string dead_address() {
  return "127.0.0.1:" + std::to_string(rediskit::test::detail::pick_free_port());
}

RedisConfig sentinel_config(TestRedisSentinelSet const& set) {
  RedisConfig c;
  c.sentinels = set.sentinel_addresses();
  c.master_name = set.master_name();
  c.sentinel_timeout = 500ms;
  // Retries that outlast a failover (down-after 1 s + election + promotion, ~2-3 s here).
  c.max_retry_attempts = 30;
  return c;
}

struct Loop {
  asio::io_context ioc;

  template <class Pred>
  void run_until(Pred pred, std::chrono::milliseconds limit, char const* what) {
    auto const deadline = Clock::now() + limit;
    while (!pred()) {
      if (ioc.stopped()) ioc.restart();
      ioc.run_one_for(20ms);
      if (Clock::now() > deadline) BOOST_FAIL(what << ": not within " << limit.count() << " ms");
    }
  }

  template <class X>
  auto exec(RedisBackend& db, X const& x, std::chrono::milliseconds limit = 10s) {
    std::optional<std::pair<boost::system::error_code, reply_t<X>>> out;
    db.async_exec(x, [&](boost::system::error_code ec, reply_t<X> r) {
      out.emplace(ec, std::move(r));
    });
    run_until([&] { return out.has_value(); }, limit, "async_exec");
    return std::move(*out);
  }

  boost::system::error_code connect(RedisBackend& db, std::chrono::milliseconds limit = 10s) {
    std::optional<boost::system::error_code> ec;
    db.async_connect([&](boost::system::error_code e) { ec = e; });
    run_until([&] { return ec.has_value(); }, limit, "async_connect");
    return *ec;
  }
};

/// The set the non-destructive tests share (started once, stopped at exit).
TestRedisSentinelSet& shared_set() {
  static auto set = std::make_unique<TestRedisSentinelSet>();
  return *set;
}

}  // namespace

/// The next message of `sub` into `got`, counting the Error::resubscribed reports before it.
template <class Sub>
void receive_after_resubscribed(Sub& sub, std::optional<Message>& got, int& resubscribed) {
  sub.async_receive([&sub, &got, &resubscribed](boost::system::error_code e, Message m) {
    if (e == Error::resubscribed) {
      ++resubscribed;
      return receive_after_resubscribed(sub, got, resubscribed);
    }
    BOOST_TEST(!e, e.message());
    got = std::move(m);
  });
}

BOOST_AUTO_TEST_SUITE(sentinel)

BOOST_AUTO_TEST_CASE(every_role_reaches_the_master_named_by_the_first_sentinel_that_answers) {
  auto& set = shared_set();
  Loop loop;
  RedisConfig cfg = sentinel_config(set);
  std::string const dead = dead_address();
  cfg.sentinels.insert(cfg.sentinels.begin(), dead);  // asked first, refuses
  RedisBackend db(loop.ioc, cfg);

  auto const t0 = Clock::now();
  BOOST_REQUIRE(!loop.connect(db));
  BOOST_TEST_MESSAGE("discovery through a dead Sentinel and a live one: "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0)
                            .count()
                     << " ms");
  BOOST_TEST(db.main_connection().config().port == set.master().port());
  auto [set_ec, stored] = loop.exec(db, cmd::set{.key = "sentinel:k", .value = "v"});
  BOOST_TEST(!set_ec);
  BOOST_TEST(set.command(set.master().port(), "GET sentinel:k") == "v");

  // The Sentinel that answered is asked first from now on; the dead one comes after it.
  auto st = db.sentinel_status();
  BOOST_TEST(st.sentinels.front() == set.sentinel_addresses().front());
  BOOST_TEST(st.sentinels.at(1) == dead);
  BOOST_TEST(st.master_port == set.master().port());
  BOOST_TEST(st.discoveries >= 1u);
  loop.run_until([&] { return db.sentinel_status().watching; }, 5s, "+switch-master watch");

  // A subscriber and a blocking command find the master too.
  auto sub = db.make_subscriber();
  std::optional<boost::system::error_code> subscribed;
  sub.async_subscribe("sentinel:chan", [&](boost::system::error_code ec) { subscribed = ec; });
  loop.run_until([&] { return subscribed.has_value(); }, 10s, "subscribe");
  BOOST_TEST(!*subscribed);
  BOOST_TEST(sub.connection().config().port == set.master().port());
  std::optional<Message> got;
  sub.async_receive([&](boost::system::error_code ec, Message m) {
    BOOST_TEST(!ec);
    got = std::move(m);
  });
  BOOST_TEST(!loop.exec(db, cmd::publish{.channel = "sentinel:chan", .message = "hi"}).first);
  loop.run_until([&] { return got.has_value(); }, 5s, "message");
  BOOST_TEST(got->payload == "hi");
  auto [pop_ec, popped] = loop.exec(db, blpop{"sentinel:empty", 50ms});
  BOOST_TEST(!pop_ec);
  BOOST_TEST(!popped.has_value());
  BOOST_TEST(db.blocking_connections_created() == 1u);
  db.close();
  sub.close();
}

BOOST_AUTO_TEST_CASE(sentinel_mode_from_the_environment) {
  auto& set = shared_set();
  std::string list;
  for (auto const& a : set.sentinel_addresses()) list += (list.empty() ? "" : ",") + a;
  std::map<std::string, std::string> vars{{"REDIS_SENTINELS", list},
                                          {"REDIS_SENTINEL_MASTER", set.master_name()},
                                          {"REDIS_DB", "5"}};
  auto cfg = RedisConfig::from_env([&](char const* n) -> char const* {
    auto it = vars.find(n);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
  BOOST_TEST(cfg.sentinels.size() == 3u);
  Loop loop;
  RedisBackend db(loop.ioc, cfg);
  auto [ec, pong] = loop.exec(db, cmd::ping{});
  BOOST_TEST(!ec);
  BOOST_TEST(pong == "PONG");
  BOOST_TEST(db.main_connection().config().port == set.master().port());
  db.close();
}

BOOST_AUTO_TEST_CASE(a_wrong_master_name_or_no_sentinel_is_a_clear_error_not_a_hang) {
  auto& set = shared_set();
  Loop loop;
  {
    RedisConfig cfg = sentinel_config(set);
    cfg.master_name = "no-such-master";
    RedisBackend db(loop.ioc, cfg);
    auto const t0 = Clock::now();
    BOOST_TEST(loop.connect(db, 5s) == make_error_code(Error::master_not_found));
    auto [ec, v] = loop.exec(db, cmd::get{"k"}, 5s);
    BOOST_TEST(ec == make_error_code(Error::master_not_found));  // not retried 30 times
    BOOST_TEST((Clock::now() - t0 < 3s));
    BOOST_TEST(db.sentinel_status().failed_discoveries >= 2u);
    db.close();
  }
  {
    RedisConfig cfg = sentinel_config(set);
    cfg.sentinels = {dead_address(), dead_address()};
    cfg.max_retry_attempts = 1;
    RedisBackend db(loop.ioc, cfg);
    BOOST_TEST(loop.connect(db, 10s) == make_error_code(Error::sentinels_unreachable));
    auto [ec, v] = loop.exec(db, cmd::get{"k"}, 10s);
    BOOST_TEST(ec == make_error_code(Error::reconnect_gave_up));
    db.close();
  }
}

namespace {

struct Load {
  bool stop = false;
  int running = 0;
  unsigned short new_port = 0;
  std::optional<Clock::time_point> killed_at;
  std::optional<Clock::time_point> recovered_at;
  long successes = 0;   // INCR replied
  long durable = 0;     // ... and replicated (WAIT >= 1), or run on the promoted replica
  long after_recovery = 0;
  long lost = 0;        // connection_lost: may have run
  long reads = 0;
  std::vector<boost::system::error_code> other_errors;  // of INCR
  std::vector<boost::system::error_code> read_errors;   // of GET: must stay empty
};

asio::awaitable<void> incr_caller(RedisBackend& db, Load& load) {
  auto const tok = asio::as_tuple(asio::use_awaitable);
  ++load.running;
  while (!load.stop) {
    auto [ec, r] = co_await db.async_exec(
        batch(cmd::incr{"sentinel:counter"}, wait_replicas{1, 50}), tok);
    if (!ec) {
      ++load.successes;
      bool const on_new = db.main_connection().config().port == load.new_port;
      if (std::get<1>(r) >= 1 || on_new) ++load.durable;
      if (on_new && load.killed_at && !load.recovered_at) load.recovered_at = Clock::now();
      if (load.recovered_at) ++load.after_recovery;
    } else if (ec == Error::connection_lost) {
      ++load.lost;
    } else {
      load.other_errors.push_back(ec);
    }
  }
  --load.running;
}

asio::awaitable<void> get_caller(RedisBackend& db, Load& load) {
  auto const tok = asio::as_tuple(asio::use_awaitable);
  asio::steady_timer pause(co_await asio::this_coro::executor);
  ++load.running;
  while (!load.stop) {
    auto [ec, v] = co_await db.async_exec(cmd::get{"sentinel:counter"}, tok);
    if (ec) load.read_errors.push_back(ec);
    ++load.reads;
    pause.expires_after(2ms);
    co_await pause.async_wait(tok);
  }
  --load.running;
}

}  // namespace

BOOST_AUTO_TEST_CASE(callers_follow_a_killed_master_to_the_promoted_replica) {
  TestRedisSentinelSet set;
  Loop loop;
  RedisBackend db(loop.ioc, sentinel_config(set));
  BOOST_REQUIRE(!loop.connect(db));
  BOOST_REQUIRE(db.main_connection().config().port == set.master().port());
  auto sub = db.make_subscriber();
  std::optional<boost::system::error_code> subscribed;
  sub.async_subscribe("sentinel:events", [&](boost::system::error_code ec) { subscribed = ec; });
  loop.run_until([&] { return subscribed.has_value(); }, 10s, "subscribe");
  loop.run_until([&] { return db.sentinel_status().watching; }, 5s, "+switch-master watch");

  Load load;
  load.new_port = set.replica().port();
  for (int i = 0; i < 3; ++i) {
    asio::co_spawn(loop.ioc, incr_caller(db, load), asio::detached);
    asio::co_spawn(loop.ioc, get_caller(db, load), asio::detached);
  }
  loop.run_until([&] { return load.successes >= 30; }, 10s, "load before the kill");

  load.killed_at = Clock::now();
  set.master().kill();  // SIGKILL: what was written to it may or may not have run
  // 30 s: a Sentinel election that fails on a loaded machine is tried again after twice the
  // failover-timeout (CI saw this test miss 15 s once, with no sign of which side was slow). If
  // it misses, the message says what the Sentinels and the replica think, and what the callers
  // saw.
  for (auto const deadline = Clock::now() + 30s; load.after_recovery < 30;) {
    if (loop.ioc.stopped()) loop.ioc.restart();
    loop.ioc.run_one_for(20ms);
    if (Clock::now() < deadline) continue;
    std::ostringstream why;
    for (std::size_t i = 0; i < set.sentinel_count(); ++i)
      why << "\n  sentinel " << i << " names the master: "
          << TestRedisSentinelSet::command(set.sentinel(i).port(),
                                           "SENTINEL get-master-addr-by-name " + set.master_name());
    auto const repl = TestRedisSentinelSet::command(set.replica().port(), "INFO replication");
    why << "\n  the replica (port " << set.replica().port() << ") is "
        << (repl.find("role:master") != std::string::npos ? "a master" : "still a replica")
        << "\n  the backend's main link is on port " << db.main_connection().config().port
        << "; INCR replied " << load.successes << " (" << load.after_recovery
        << " on the new master), connection_lost " << load.lost << ", other errors "
        << load.other_errors.size() << " (first: " << first(load.other_errors).message()
        << "), read errors " << load.read_errors.size();
    BOOST_FAIL("recovery on the new master: not within 30 s of the kill" << why.str());
  }
  load.stop = true;
  loop.run_until([&] { return load.running == 0; }, 5s, "callers to stop");

  auto const recovery =
      std::chrono::duration_cast<std::chrono::milliseconds>(*load.recovered_at - *load.killed_at);
  std::cout << "sentinel failover: kill -9 of the master -> first write on the promoted replica: "
            << recovery.count() << " ms (down-after-milliseconds 1000); INCR replied "
            << load.successes << ", failed with connection_lost " << load.lost << ", GETs "
            << load.reads << '\n';

  // Only writes in flight failed, with connection_lost; every read was answered.
  BOOST_TEST(load.other_errors.empty(), "first other error: " << first(load.other_errors));
  BOOST_TEST(load.read_errors.empty(), "first read error: " << first(load.read_errors));
  BOOST_TEST(load.lost <= 3);  // at most one write in flight per INCR caller
  // No INCR applied twice: the total is at most what replied plus what may have run; and every
  // INCR that replied and was replicated (or ran on the new master) is there.
  auto [ec, total] = loop.exec(db, cmd::get{"sentinel:counter"});
  BOOST_REQUIRE(!ec);
  long const value = std::stol(total.value_or("0"));
  BOOST_TEST(value <= load.successes + load.lost);
  BOOST_TEST(value >= load.durable);
  BOOST_TEST_MESSAGE("INCR replied but not known to be replicated: "
                     << load.successes - load.durable);

  BOOST_TEST(db.main_connection().config().port == set.replica().port());
  BOOST_TEST(db.sentinel_status().master_port == set.replica().port());
  // The connections found the new master by asking on reconnection; the watched Sentinel's
  // +switch-master may come later (see the demoted-master case).
  loop.run_until([&] { return db.sentinel_status().switch_master_events >= 1u; }, 10s,
                 "+switch-master from the watched Sentinel");

  // The subscriber followed (its subscription restored on the new master) and so do blocking
  // commands.
  // It says first that its link came back (Error::resubscribed: what was published during
  // the failover is lost).
  std::optional<Message> got;
  int resubscribed = 0;
  receive_after_resubscribed(sub, got, resubscribed);
  loop.run_until(
      [&] {
        if (!got) loop.exec(db, cmd::publish{.channel = "sentinel:events", .message = "after"});
        return got.has_value();
      },
      5s, "a message through the new master");
  BOOST_TEST(got->payload == "after");
  BOOST_TEST(resubscribed >= 1);  // once per link made again (a relocation may make two)
  BOOST_TEST(sub.connection().config().port == set.replica().port());
  auto [pop_ec, popped] = loop.exec(db, blpop{"sentinel:empty", 50ms});
  BOOST_TEST(!pop_ec);
  db.close();
  sub.close();
}

BOOST_AUTO_TEST_CASE(a_write_to_a_demoted_master_fails_read_only_and_the_backend_finds_the_master) {
  std::vector<unsigned short> ports;
  {
    TestRedisSentinelSet set;
    ports = set.ports();
    Loop loop;
    RedisBackend db(loop.ioc, sentinel_config(set));
    BOOST_REQUIRE(!loop.connect(db));
    auto const old_port = set.master().port();
    auto const new_port = set.replica().port();
    BOOST_REQUIRE(db.main_connection().config().port == old_port);
    // A subscriber and an idle pooled blocking connection: they write nothing, meet no
    // READONLY, and stay connected to the demoted node until +switch-master relocates them.
    auto sub = db.make_subscriber();
    std::optional<boost::system::error_code> subscribed;
    sub.async_subscribe("sentinel:moved", [&](boost::system::error_code e) { subscribed = e; });
    loop.run_until([&] { return subscribed.has_value(); }, 10s, "subscribe");
    BOOST_TEST(!loop.exec(db, blpop{"sentinel:empty", 10ms}).first);
    loop.run_until([&] { return db.sentinel_status().watching; }, 5s, "+switch-master watch");

    // Behind the Sentinels' back, the master becomes a replica of its replica.
    BOOST_REQUIRE(set.command(new_port, "REPLICAOF NO ONE") == "+OK");
    BOOST_REQUIRE(set.command(old_port, "REPLICAOF 127.0.0.1 " + std::to_string(new_port))
                      .starts_with("+OK"));
    auto [ec, stored] = loop.exec(db, cmd::set{.key = "sentinel:w", .value = "1"});
    BOOST_TEST(ec == make_error_code(Error::read_only));  // it did not run: not re-sent

    // The connection now looks for the master: the Sentinels still name the old one, whose ROLE
    // says replica (Error::not_master, retried). A write queued meanwhile waits, and runs once
    // the Sentinels name the new master (here a failover they are asked for).
    std::optional<boost::system::error_code> second;
    db.async_exec(cmd::set{.key = "sentinel:w", .value = "2"},
                  [&](boost::system::error_code e, bool) { second = e; });
    loop.run_until(
        [&] { return db.main_connection().metrics().last_error == Error::not_master; }, 5s,
        "the demoted master refused for its ROLE");
    BOOST_TEST(!second.has_value());
    BOOST_TEST(sub.connection().health() == HealthStatus::ok);  // still on the demoted node
    BOOST_TEST(sub.connection().metrics().reconnections == 0u);
    BOOST_TEST(set.command(set.sentinel(0).port(), "SENTINEL FAILOVER " + set.master_name()) ==
               "+OK");
    loop.run_until([&] { return second.has_value(); }, 15s, "the queued write");
    BOOST_TEST(!*second);
    BOOST_TEST(db.main_connection().config().port == new_port);
    BOOST_TEST(set.command(new_port, "GET sentinel:w") == "2");

    // The connected subscriber and the idle blocking connection moved: by +switch-master, or
    // by the Sentinels' CLIENT KILL of the demoted node's clients, whichever came first.
    // (The port changes when the Sentinels answer; the link is up once the handshake is done.)
    loop.run_until(
        [&] {
          return sub.connection().config().port == new_port &&
                 sub.connection().health() == HealthStatus::ok;
        },
        5s, "the subscriber's relocation");
    BOOST_TEST(sub.connection().metrics().reconnections == 1u);
    std::optional<Message> got;
    int resubscribed = 0;
    receive_after_resubscribed(sub, got, resubscribed);
    loop.run_until(
        [&] {
          if (!got) loop.exec(db, cmd::publish{.channel = "sentinel:moved", .message = "here"});
          return got.has_value();
        },
        5s, "a message through the new master");
    BOOST_TEST(got->payload == "here");
    BOOST_TEST(resubscribed >= 1);  // once per link made again (a relocation may make two)
    auto [pop_ec, popped] = loop.exec(db, blpop{"sentinel:empty", 10ms});
    BOOST_TEST(!pop_ec);
    BOOST_TEST(db.blocking_connections_created() == 1u);  // the same connection, moved
    // The watched Sentinel announces +switch-master once it has the new configuration: a
    // Sentinel that did not lead the failover learns it from the others' hello messages (every
    // 2 s), possibly after Sentinel's CLIENT KILL already sent the links to the new master.
    loop.run_until([&] { return db.sentinel_status().switch_master_events >= 1u; }, 10s,
                   "+switch-master from the watched Sentinel");
    db.close();
    sub.close();
  }
  // Nothing of the set is left running.
  for (auto p : ports) BOOST_TEST(!rediskit::test::detail::answers_ping(p), "port " << p);
}

BOOST_AUTO_TEST_SUITE_END()

// Ownership: an io_context destroyed while a connection waits for `locate`, or while the
// Sentinel's question is under way, frees everything (CI's LeakSanitizer once reported a
// Sentinel, its question and every connection waiting on it, held by one another).
BOOST_AUTO_TEST_SUITE(sentinel_ownership)

BOOST_AUTO_TEST_CASE(a_connection_waiting_for_locate_is_freed_with_its_io_context) {
  struct Answerer {
    std::vector<LocateHandler> waiting;  // never answered
  };
  auto answerer = std::make_shared<Answerer>();
  std::weak_ptr<Answerer> const watch = answerer;
  {
    asio::io_context ioc;
    ConnectionConfig cfg;
    cfg.locate = [a = std::move(answerer)](LocateHandler h) { a->waiting.push_back(std::move(h)); };
    auto conn = std::make_unique<Connection>(ioc, std::move(cfg));
    bool done = false;
    conn->async_connect([&](boost::system::error_code) { done = true; });
    ioc.run_for(50ms);
    BOOST_TEST(!done);
    BOOST_TEST(watch.lock()->waiting.size() == 1u);  // the connection waits for its answer
    conn.reset();
  }
  // The answerer (owned by the connection's config) held the connection's handler: no cycle.
  BOOST_TEST(watch.expired());
}

BOOST_AUTO_TEST_CASE(a_sentinel_whose_question_is_under_way_is_freed_with_its_owner) {
  std::weak_ptr<rediskit::detail::sentinel::Sentinel> watch;
  {
    asio::io_context ioc;
    // A "Sentinel" that accepts and never answers.
    asio::ip::tcp::acceptor silent(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket peer(ioc);
    silent.async_accept(peer, [](boost::system::error_code) {});
    RedisConfig cfg;
    cfg.sentinels = {"127.0.0.1:" + std::to_string(silent.local_endpoint().port())};
    cfg.master_name = "mymaster";
    cfg.sentinel_timeout = 10s;
    auto s = std::make_shared<rediskit::detail::sentinel::Sentinel>(ioc.get_executor(), cfg);
    watch = s;
    bool answered = false;
    s->async_locate([&](boost::system::error_code, std::string, std::uint16_t) { answered = true; });
    auto const deadline = Clock::now() + 5s;  // the question's connection is accepted
    while (!peer.is_open() && Clock::now() < deadline) ioc.run_one_for(20ms);
    BOOST_REQUIRE_MESSAGE(peer.is_open(), "the Sentinel question never connected");
    ioc.run_for(50ms);  // ... and its HELLO written
    BOOST_TEST(!answered);
    s.reset();  // its owner (a backend) goes; the io_context goes after it
  }
  BOOST_TEST(watch.expired());
}

BOOST_AUTO_TEST_SUITE_END()
