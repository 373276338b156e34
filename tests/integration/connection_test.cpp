// Connection against a real redis-server: pipelining, reconnection, health check, auth,
// pushes, cancellation, and seed 002's options (command timeout with DEBUG SLEEP holding the
// server, the offline queue turned off, a server loading its dataset). Tests that break the server start their own TestRedisServer; the
// others use the shared one from the CTest fixture.
#include <rediskit/connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include "support/run_coroutine.hpp"
#include "support/test_redis.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using rediskit::Connection;
using rediskit::ConnectionConfig;
using rediskit::Diagnostics;
using rediskit::Error;
using rediskit::resp3::Request;
using Clock = std::chrono::steady_clock;

namespace {

using rediskit::test::as_tuple_awaitable;
using rediskit::test::run;
using rediskit::test::sleep_for;


ConnectionConfig config_for(unsigned short port) {
  ConnectionConfig cfg;
  cfg.port = port;
  return cfg;
}

// The next push, or nothing if none comes within `d` (the losing wait is cancelled).
asio::awaitable<std::optional<rediskit::resp3::Tree>> receive_within(
    Connection& conn, std::chrono::steady_clock::duration d) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  auto r = co_await (conn.async_receive(as_tuple_awaitable) ||
                     timer.async_wait(as_tuple_awaitable));
  if (r.index() == 0) {
    auto& [ec, tree] = std::get<0>(r);
    if (!ec) co_return std::move(tree);
  }
  co_return std::nullopt;
}

// A connection that keeps reconnecting for a while (the server is stopped on purpose).
ConnectionConfig patient_config_for(unsigned short port) {
  ConnectionConfig cfg = config_for(port);
  cfg.reconnect = {.initial_delay = 20ms, .max_delay = 100ms, .max_attempts = 100};
  return cfg;
}

// Holds the server for `seconds` (DEBUG SLEEP) from a connection of its own, without waiting.
void hold_server(Connection& admin, Request& sleep, std::string const& seconds) {
  sleep.push("DEBUG", "SLEEP", seconds);
  admin.async_exec(sleep, rediskit::resp3::ignore, [](error_code) {});
}

bool is_link_failure(error_code ec) {
  return ec == Error::connection_lost || ec == Error::not_connected ||
         ec == Error::reconnect_gave_up || ec == Error::health_check_failed;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(connection)

BOOST_AUTO_TEST_CASE(set_get_and_typed_replies) {
  run([](asio::io_context& ioc) -> asio::awaitable<void> {
    Connection conn(ioc, config_for(rediskit::test::shared_redis_port()));
    co_await conn.async_connect(asio::use_awaitable);
    BOOST_TEST(conn.health() == rediskit::HealthStatus::ok);

    Request req;
    req.push("SET", "rk:conn:typed:s", std::string_view("a\0b", 3));
    req.push("GET", "rk:conn:typed:s");
    req.push("GET", "rk:conn:typed:missing");
    req.push("DEL", "rk:conn:typed:h");
    req.push("HSET", "rk:conn:typed:h", "f1", 1, "f2", 2.5);
    req.push("HGETALL", "rk:conn:typed:h");
    std::tuple<std::string, std::string, std::optional<std::string>, long long, int,
               std::map<std::string, std::string>>
        resp;
    co_await conn.async_exec(req, resp, asio::use_awaitable);
    BOOST_TEST(std::get<0>(resp) == "OK");
    BOOST_TEST(std::get<1>(resp) == std::string_view("a\0b", 3));
    BOOST_TEST(!std::get<2>(resp).has_value());
    BOOST_TEST(std::get<4>(resp) == 2);
    BOOST_TEST(std::get<5>(resp).at("f1") == "1");
    BOOST_TEST(std::get<5>(resp).at("f2") == "2.5");
    BOOST_TEST(conn.metrics().connections_created == 1u);
  });
}

// The seed's "batch of 100 users": 100 HGETALL in one round trip, one map per reply.
BOOST_AUTO_TEST_CASE(batch_of_100_profiles_in_one_round_trip) {
  run([](asio::io_context& ioc) -> asio::awaitable<void> {
    Connection conn(ioc, config_for(rediskit::test::shared_redis_port()));
    Request fill;
    for (int i = 0; i < 100; ++i)
      fill.push("HSET", "rk:conn:profile:" + std::to_string(i), "id", i, "name",
                "user" + std::to_string(i), "status", i % 2 ? "online" : "away");
    rediskit::resp3::Ignore ignore;
    co_await conn.async_exec(fill, ignore, asio::use_awaitable);
    auto const writes_before = conn.metrics().writes;

    Request batch;
    for (int i = 0; i < 100; ++i) batch.push("HGETALL", "rk:conn:profile:" + std::to_string(i));
    rediskit::resp3::Replies<std::unordered_map<std::string, std::string>> profiles;
    co_await conn.async_exec(batch, profiles, asio::use_awaitable);
    BOOST_TEST(conn.metrics().writes == writes_before + 1);
    BOOST_REQUIRE_EQUAL(profiles.size(), 100u);
    for (int i = 0; i < 100; ++i) {
      BOOST_TEST(profiles[i].at("id") == std::to_string(i));
      BOOST_TEST(profiles[i].at("name") == "user" + std::to_string(i));
    }
  });
}

BOOST_AUTO_TEST_CASE(server_errors_have_codes_and_text) {
  run([](asio::io_context& ioc) -> asio::awaitable<void> {
    Connection conn(ioc, config_for(rediskit::test::shared_redis_port()));
    Request req;
    req.push("SET", "rk:conn:err:s", "x");
    req.push("HGET", "rk:conn:err:s", "f");   // WRONGTYPE
    req.push("ECHO", "still adapted");
    std::tuple<rediskit::resp3::Ignore, std::optional<std::string>, std::string> resp;
    rediskit::Diagnostics diag;
    auto [ec] = co_await conn.async_exec(req, resp, diag, as_tuple_awaitable);
    BOOST_TEST(ec == Error::wrong_type);
    BOOST_TEST(diag.server_message.starts_with("WRONGTYPE"));
    BOOST_TEST(std::get<2>(resp) == "still adapted");

    Request bad;
    bad.push("NOSUCHCOMMAND", "x");
    rediskit::resp3::Ignore ignore;
    auto [ec2] = co_await conn.async_exec(bad, ignore, diag, as_tuple_awaitable);
    BOOST_TEST(ec2 == Error::server_error);
    BOOST_TEST(diag.server_message.find("unknown command") != std::string::npos);

    // The connection is still usable and still in sync.
    Request echo;
    echo.push("ECHO", "after errors");
    std::string out;
    co_await conn.async_exec(echo, out, asio::use_awaitable);
    BOOST_TEST(out == "after errors");
  });
}

BOOST_AUTO_TEST_CASE(invalid_requests_are_rejected_without_sending) {
  run([](asio::io_context& ioc) -> asio::awaitable<void> {
    Connection conn(ioc, config_for(rediskit::test::shared_redis_port()));
    Request empty;
    rediskit::resp3::Ignore ignore;
    auto [ec] = co_await conn.async_exec(empty, ignore, as_tuple_awaitable);
    BOOST_TEST(ec == Error::invalid_request);

    Request two;
    two.push("PING");
    two.push("PING");
    std::tuple<std::string> one_slot;  // two replies, one slot
    auto [ec2] = co_await conn.async_exec(two, one_slot, as_tuple_awaitable);
    BOOST_TEST(ec2 == Error::invalid_request);
    BOOST_TEST(conn.metrics().requests_sent == 0u);
  });
}

// 10 000 requests from 100 concurrent coroutines on one connection: every reply reaches its
// caller, in order, and requests were pipelined (far fewer writes than requests).
BOOST_AUTO_TEST_CASE(pipelining_100_coroutines_10000_requests) {
  run([](asio::io_context& ioc) -> asio::awaitable<void> {
    Connection conn(ioc, config_for(rediskit::test::shared_redis_port()));
    co_await conn.async_connect(asio::use_awaitable);
    constexpr int callers = 100;
    constexpr int per_caller = 100;
    int finished = 0;
    int wrong = 0;
    {
      Request del;
      for (int c = 0; c < callers; ++c) del.push("DEL", "rk:conn:pipe:" + std::to_string(c));
      rediskit::resp3::Ignore ignore;
      co_await conn.async_exec(del, ignore, asio::use_awaitable);
    }
    for (int c = 0; c < callers; ++c) {
      asio::co_spawn(
          ioc,
          [&, c]() -> asio::awaitable<void> {
            std::string const key = "rk:conn:pipe:" + std::to_string(c);
            for (int j = 0; j < per_caller; ++j) {
              Request req;
              req.push("INCR", key);
              req.push("ECHO", std::to_string(c) + ":" + std::to_string(j));
              std::tuple<long long, std::string> resp;
              co_await conn.async_exec(req, resp, asio::use_awaitable);
              if (std::get<0>(resp) != j + 1 ||
                  std::get<1>(resp) != std::to_string(c) + ":" + std::to_string(j))
                ++wrong;
            }
            ++finished;
          },
          asio::detached);
    }
    while (finished < callers) co_await sleep_for(5ms);
    BOOST_TEST(wrong == 0);
    auto const& m = conn.metrics();
    BOOST_TEST(m.requests_sent >= std::uint64_t(callers * per_caller));
    BOOST_TEST_MESSAGE("requests " << m.requests_sent << " in " << m.writes << " writes");
    BOOST_TEST(m.writes * 4 < m.requests_sent);  // pipelined: many requests per write
  });
}

// Kill the server under load and start it again: every operation completes (success or a
// link error) and the connection recovers by itself.
BOOST_AUTO_TEST_CASE(server_restart_mid_load) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = config_for(srv.port());
    cfg.reconnect = {.initial_delay = 50ms, .max_delay = 400ms, .max_attempts = 20};
    Connection conn(ioc, cfg);
    co_await conn.async_connect(asio::use_awaitable);
    constexpr int callers = 50;
    int finished = 0, ok = 0, link_errors = 0, other_errors = 0;
    bool stop = false;
    for (int c = 0; c < callers; ++c) {
      asio::co_spawn(
          ioc,
          [&, c]() -> asio::awaitable<void> {
            std::string const key = "rk:restart:" + std::to_string(c);
            while (!stop) {
              Request req;
              req.push("INCR", key);
              long long n = 0;
              auto [ec] = co_await conn.async_exec(req, n, as_tuple_awaitable);
              if (!ec)
                ++ok;
              else if (is_link_failure(ec))
                ++link_errors;
              else
                ++other_errors;
            }
            ++finished;
          },
          asio::detached);
    }
    co_await sleep_for(200ms);
    srv.kill();
    co_await sleep_for(300ms);
    srv.start();
    co_await sleep_for(1500ms);
    int const ok_before_stop = ok;
    stop = true;
    while (finished < callers) co_await sleep_for(5ms);
    BOOST_TEST(other_errors == 0);
    BOOST_TEST(link_errors > 0);  // requests in flight when the server died
    BOOST_TEST(ok_before_stop > 0);
    BOOST_TEST(conn.metrics().reconnections >= 1u);
    BOOST_TEST(conn.health() == rediskit::HealthStatus::ok);
    Request ping;
    ping.push("PING");
    std::string pong;
    co_await conn.async_exec(ping, pong, asio::use_awaitable);
    BOOST_TEST(pong == "PONG");
  });
}

// The server dies for good: pending and new operations fail after the retry budget, no hang.
BOOST_AUTO_TEST_CASE(server_killed_for_good) {
  rediskit::test::TestRedisServer srv;
  run(
      [&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto cfg = config_for(srv.port());
        cfg.reconnect = {.initial_delay = 50ms, .max_delay = 200ms, .max_attempts = 3};
        Connection conn(ioc, cfg);
        co_await conn.async_connect(asio::use_awaitable);
        srv.kill();
        auto const start = std::chrono::steady_clock::now();
        Request req;
        req.push("PING");
        std::string pong;
        auto [ec] = co_await conn.async_exec(req, pong, as_tuple_awaitable);
        BOOST_TEST(is_link_failure(ec), ec.message());
        // A request that waits for the reconnection fails when the budget is spent.
        auto [ec2] = co_await conn.async_exec(req, pong, as_tuple_awaitable);
        BOOST_TEST(ec2 == Error::reconnect_gave_up, ec2.message());
        BOOST_TEST(conn.health() == rediskit::HealthStatus::disconnected);
        BOOST_TEST((std::chrono::steady_clock::now() - start < 5s));
        BOOST_TEST(conn.metrics().errors >= 3u);

        // fail_if_not_connected never waits.
        Request fast({.fail_if_not_connected = true});
        fast.push("PING");
        auto [ec3] = co_await conn.async_exec(fast, pong, as_tuple_awaitable);
        BOOST_TEST(ec3 == Error::not_connected);
      },
      20s);
}

BOOST_AUTO_TEST_CASE(wrong_password_is_a_clear_error_and_not_retried) {
  rediskit::test::TestRedisServer srv({.extra_args = {"--requirepass", "right-secret"}});
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    std::vector<std::string> lines;
    auto cfg = config_for(srv.port());
    cfg.password = "wrong-secret-123";
    cfg.reconnect = {.initial_delay = 10ms, .max_delay = 10ms, .max_attempts = 5};
    cfg.log = [&](rediskit::LogLevel, std::string_view l) { lines.emplace_back(l); };
    {
      Connection conn(ioc, cfg);
      auto [ec] = co_await conn.async_connect(as_tuple_awaitable);
      BOOST_TEST(ec == Error::auth_failed, ec.message());
      BOOST_TEST(conn.metrics().errors == 1u);  // one attempt: no retry loop
      BOOST_TEST(conn.health() == rediskit::HealthStatus::disconnected);
      Request req;
      req.push("PING");
      std::string pong;
      auto [ec2] = co_await conn.async_exec(req, pong, as_tuple_awaitable);
      BOOST_TEST(ec2 == Error::auth_failed, ec2.message());
    }
    BOOST_TEST(!lines.empty());
    for (auto const& l : lines) BOOST_TEST(l.find("wrong-secret-123") == std::string::npos, l);

    cfg.password = "right-secret";
    cfg.client_name = "rediskit-test";
    Connection good(ioc, cfg);
    co_await good.async_connect(asio::use_awaitable);
    Request req;
    req.push("CLIENT", "GETNAME");
    std::string name;
    co_await good.async_exec(req, name, asio::use_awaitable);
    BOOST_TEST(name == "rediskit-test");
  });
}

BOOST_AUTO_TEST_CASE(database_is_selected_on_every_connection) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = config_for(srv.port());
    cfg.database = 3;
    cfg.reconnect = {.initial_delay = 50ms, .max_delay = 200ms, .max_attempts = 20};
    Connection conn(ioc, cfg);
    Request set;
    set.push("SET", "rk:db", "three");
    rediskit::resp3::Ignore ignore;
    co_await conn.async_exec(set, ignore, asio::use_awaitable);
    Request kill;
    kill.push("CLIENT", "KILL", "TYPE", "normal");
    Connection other(ioc, config_for(srv.port()));
    long long killed = 0;
    co_await other.async_exec(kill, killed, asio::use_awaitable);  // skips the caller itself
    BOOST_TEST(killed == 1);
    Request get;
    get.push("GET", "rk:db");
    std::optional<std::string> v;
    // Waits for the reconnection (not written before the link is back).
    for (int i = 0; i < 50; ++i) {
      auto [ec] = co_await conn.async_exec(get, v, as_tuple_awaitable);
      if (!ec) break;
      BOOST_TEST(is_link_failure(ec), ec.message());
    }
    BOOST_TEST((v == std::optional<std::string>("three")));
    BOOST_TEST(conn.metrics().reconnections == 1u);
  });
}

// Pub/sub pushes arrive on async_receive while regular commands flow on the same connection.
BOOST_AUTO_TEST_CASE(pushes_while_commands_flow) {
  run([](asio::io_context& ioc) -> asio::awaitable<void> {
    auto const port = rediskit::test::shared_redis_port();
    Connection sub(ioc, config_for(port));
    Connection pub(ioc, config_for(port));
    std::string const channel = "rk:conn:push:chan";
    co_await sub.async_subscribe(channel, asio::use_awaitable);
    auto [ec0, confirm] = co_await sub.async_receive(as_tuple_awaitable);
    BOOST_REQUIRE(!ec0);
    BOOST_REQUIRE(confirm.size() >= 3u);
    BOOST_TEST(confirm[1].value == "subscribe");
    BOOST_TEST(confirm[2].value == channel);

    constexpr int messages = 200;
    int commands_ok = 0;
    bool commands_done = false;
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          for (int i = 0; i < messages; ++i) {
            Request req;
            req.push("ECHO", std::to_string(i));
            std::string out;
            co_await sub.async_exec(req, out, asio::use_awaitable);
            if (out == std::to_string(i)) ++commands_ok;
          }
          commands_done = true;
        },
        asio::detached);
    for (int i = 0; i < messages; ++i) {
      Request p;
      p.push("PUBLISH", channel, "m" + std::to_string(i));
      long long receivers = 0;
      co_await pub.async_exec(p, receivers, asio::use_awaitable);
    }
    for (int i = 0; i < messages; ++i) {
      auto [ec, push] = co_await sub.async_receive(as_tuple_awaitable);
      BOOST_REQUIRE(!ec);
      BOOST_REQUIRE(push.size() == 4u);
      BOOST_TEST((push[0].type == rediskit::resp3::Type::push));
      BOOST_TEST(push[1].value == "message");
      BOOST_TEST(push[3].value == "m" + std::to_string(i));
    }
    while (!commands_done) co_await sleep_for(2ms);
    BOOST_TEST(commands_ok == messages);
    BOOST_TEST(sub.metrics().pushes_received >= std::uint64_t(messages + 1));
  });
}

// After a reconnection the subscriptions are restored.
BOOST_AUTO_TEST_CASE(subscriptions_survive_reconnection) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = config_for(srv.port());
    cfg.reconnect = {.initial_delay = 50ms, .max_delay = 200ms, .max_attempts = 20};
    Connection sub(ioc, cfg);
    co_await sub.async_subscribe("rk:chan", asio::use_awaitable);
    co_await sub.async_psubscribe("rk:pat:*", asio::use_awaitable);
    // Shard channels too, after the handshake (two slots: one SSUBSCRIBE each then).
    std::vector<std::string> const shards{"rk:shard:a", "rk:shard:b"};  // named: g++ 12
    co_await sub.async_ssubscribe(shards, asio::use_awaitable);
    co_await sub.async_ssubscribe("rk:shard:gone", asio::use_awaitable);
    co_await sub.async_sunsubscribe("rk:shard:gone", asio::use_awaitable);
    Connection admin(ioc, config_for(srv.port()));
    Request kill;
    kill.push("CLIENT", "KILL", "TYPE", "pubsub");
    long long killed = 0;
    co_await admin.async_exec(kill, killed, asio::use_awaitable);
    BOOST_TEST(killed == 1);
    // Publish until the restored subscription delivers.
    bool got_channel = false, got_pattern = false, got_a = false, got_b = false;
    long long gone_receivers = -1;
    for (int i = 0; i < 100 && !(got_channel && got_pattern && got_a && got_b); ++i) {
      Request p;
      p.push("PUBLISH", "rk:chan", "hello");
      p.push("PUBLISH", "rk:pat:x", "world");
      p.push("SPUBLISH", "rk:shard:a", "a");
      p.push("SPUBLISH", "rk:shard:b", "b");
      p.push("SPUBLISH", "rk:shard:gone", "x");
      std::tuple<long long, long long, long long, long long, long long> n;
      co_await admin.async_exec(p, n, asio::use_awaitable);
      gone_receivers = std::get<4>(n);
      co_await sleep_for(20ms);
      while (auto push = co_await receive_within(sub, 5ms)) {
        auto const& p = *push;
        if (p.size() >= 4 && p[1].value == "message" && p[3].value == "hello")
          got_channel = true;
        if (p.size() >= 5 && p[1].value == "pmessage" && p[4].value == "world")
          got_pattern = true;
        if (p.size() >= 4 && p[1].value == "smessage" && p[3].value == "a") got_a = true;
        if (p.size() >= 4 && p[1].value == "smessage" && p[3].value == "b") got_b = true;
      }
    }
    BOOST_TEST(got_channel);
    BOOST_TEST(got_pattern);
    BOOST_TEST(got_a);
    BOOST_TEST(got_b);
    BOOST_TEST(gone_receivers == 0);  // unsubscribed before: not restored
    BOOST_TEST(sub.metrics().reconnections == 1u);
  });
}

// A written request that the caller cancels: its late reply is dropped and never reaches the
// next request.
BOOST_AUTO_TEST_CASE(cancelled_request_reply_never_reaches_next_request) {
  run([](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = config_for(rediskit::test::shared_redis_port());
    cfg.health_check_interval = 0ms;  // BLPOP blocks this link on purpose
    Connection conn(ioc, cfg);
    co_await conn.async_connect(asio::use_awaitable);
    Request del;
    del.push("DEL", "rk:conn:cancel:list");
    rediskit::resp3::Ignore ignore;
    co_await conn.async_exec(del, ignore, asio::use_awaitable);

    Request blpop;
    blpop.push("BLPOP", "rk:conn:cancel:list", 1);
    std::optional<std::vector<std::string>> popped;
    asio::cancellation_signal sig;
    error_code blpop_ec;
    bool blpop_done = false;
    conn.async_exec(blpop, popped,
                    asio::bind_cancellation_slot(sig.slot(), [&](error_code ec) {
                      blpop_ec = ec;
                      blpop_done = true;
                    }));
    co_await sleep_for(50ms);  // written and blocking on the server
    auto const t0 = std::chrono::steady_clock::now();
    sig.emit(asio::cancellation_type::terminal);
    while (!blpop_done) co_await sleep_for(1ms);
    BOOST_TEST(blpop_ec == asio::error::operation_aborted);
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < 500ms));  // promptly, not after 1 s

    Request echo;
    echo.push("ECHO", "mine");
    std::string out;
    co_await conn.async_exec(echo, out, asio::use_awaitable);
    BOOST_TEST(out == "mine");  // not BLPOP's nil
    BOOST_TEST(!popped.has_value());
  });
}

// A half-open link (the server stops answering) is detected by the health check.
BOOST_AUTO_TEST_CASE(health_check_detects_a_silent_server) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = config_for(srv.port());
    cfg.health_check_interval = 100ms;
    cfg.connect_timeout = 300ms;
    cfg.reconnect = {.initial_delay = 50ms, .max_delay = 200ms, .max_attempts = 50};
    Connection conn(ioc, cfg);
    co_await conn.async_connect(asio::use_awaitable);
    Connection admin(ioc, config_for(srv.port()));
    Request pause;
    pause.push("CLIENT", "PAUSE", 1500, "ALL");
    rediskit::resp3::Ignore ignore;
    co_await admin.async_exec(pause, ignore, asio::use_awaitable);

    auto const t0 = std::chrono::steady_clock::now();
    Request get;
    get.push("GET", "rk:silent");
    std::optional<std::string> v;
    auto [ec] = co_await conn.async_exec(get, v, as_tuple_awaitable);
    auto const waited = std::chrono::steady_clock::now() - t0;
    BOOST_TEST(ec == Error::connection_lost, ec.message());
    BOOST_TEST(conn.metrics().last_error == Error::health_check_failed);
    BOOST_TEST((waited < 1000ms));  // detected by the check, not by the end of the pause
    // Once the server answers again, so does the connection.
    for (int i = 0; i < 100; ++i) {
      auto [e] = co_await conn.async_exec(get, v, as_tuple_awaitable);
      if (!e) break;
      co_await sleep_for(50ms);
    }
    BOOST_TEST(conn.health() == rediskit::HealthStatus::ok);
  });
}

// The link drops while a request is written: a plain request fails with connection_lost (it
// may have run), an idempotent one is sent again on the new link.
BOOST_AUTO_TEST_CASE(written_requests_fail_unless_idempotent) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = config_for(srv.port());
    cfg.health_check_interval = 0ms;
    cfg.reconnect = {.initial_delay = 20ms, .max_delay = 100ms, .max_attempts = 20};
    Connection conn(ioc, cfg);
    Connection admin(ioc, config_for(srv.port()));
    co_await conn.async_connect(asio::use_awaitable);

    for (bool idempotent : {false, true}) {
      Request id;
      id.push("CLIENT", "ID");
      long long client_id = 0;
      co_await conn.async_exec(id, client_id, asio::use_awaitable);

      Request blpop({.idempotent = idempotent});
      blpop.push("BLPOP", "rk:idem:list", 5);
      std::optional<std::vector<std::string>> popped;
      error_code blpop_ec;
      bool done = false;
      conn.async_exec(blpop, popped, [&](error_code ec) {
        blpop_ec = ec;
        done = true;
      });
      co_await sleep_for(50ms);
      Request kill;
      kill.push("CLIENT", "KILL", "ID", client_id);
      rediskit::resp3::Ignore ignore;
      co_await admin.async_exec(kill, ignore, asio::use_awaitable);
      if (idempotent) {
        // Re-sent after the reconnection: feed it and it completes with the value.
        for (int i = 0; i < 100 && !done; ++i) {
          co_await sleep_for(30ms);
          Request push;
          push.push("RPUSH", "rk:idem:list", "v");
          co_await admin.async_exec(push, ignore, asio::use_awaitable);
        }
        while (!done) co_await sleep_for(1ms);
        BOOST_TEST(!blpop_ec, blpop_ec.message());
        BOOST_REQUIRE(popped.has_value());
        BOOST_TEST(popped->at(1) == "v");
      } else {
        while (!done) co_await sleep_for(1ms);
        BOOST_TEST(blpop_ec == Error::connection_lost, blpop_ec.message());
      }
    }
  });
}

BOOST_AUTO_TEST_CASE(close_fails_pending_operations) {
  run([](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = config_for(rediskit::test::shared_redis_port());
    cfg.health_check_interval = 0ms;
    Connection conn(ioc, cfg);
    co_await conn.async_connect(asio::use_awaitable);
    Request blpop;
    blpop.push("BLPOP", "rk:conn:close:list", 2);
    std::optional<std::vector<std::string>> popped;
    error_code ec1;
    bool done = false;
    conn.async_exec(blpop, popped, [&](error_code ec) {
      ec1 = ec;
      done = true;
    });
    co_await sleep_for(20ms);
    co_await conn.async_close(asio::use_awaitable);
    while (!done) co_await sleep_for(1ms);
    BOOST_TEST(ec1 == Error::connection_closed);
    BOOST_TEST(conn.health() == rediskit::HealthStatus::disconnected);
    Request ping;
    ping.push("PING");
    std::string pong;
    auto [ec2] = co_await conn.async_exec(ping, pong, as_tuple_awaitable);
    BOOST_TEST(ec2 == Error::connection_closed);
  });
}

// A closed connection fails a new request through its executor. When that io_context is
// destroyed without running it, the request's handler must be destroyed with it (as asio does
// with its own operations), not leaked with everything it owns.
BOOST_AUTO_TEST_CASE(a_failure_never_run_is_destroyed_with_its_io_context) {
  auto owned = std::make_shared<int>(0);
  std::weak_ptr<int> const alive = owned;
  bool called = false;
  std::string pong;
  Request ping;
  ping.push("PING");
  {
    asio::io_context ioc;
    Connection conn(ioc, config_for(1));  // closed before it ever connects
    conn.close();
    conn.async_exec(ping, pong, [&called, o = std::move(owned)](error_code) { called = true; });
    conn.async_connect([&called, o = alive.lock()](error_code) { called = true; });
  }  // ~Connection, then ~io_context: neither completion ran
  BOOST_TEST(!called);
  BOOST_TEST(alive.expired());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(connection_options)

// A command that gets no reply within command_timeout completes with Error::timeout; its late
// reply is dropped, and the next request gets its own. Written, it may have run, and says so.
BOOST_AUTO_TEST_CASE(a_command_timeout_fails_the_request_and_drops_its_late_reply) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = patient_config_for(srv.port());
    cfg.command_timeout = 100ms;
    cfg.health_check_interval = 0ms;
    Connection conn(ioc, cfg);
    co_await conn.async_connect(asio::use_awaitable);
    Connection admin(ioc, patient_config_for(srv.port()));
    co_await admin.async_connect(asio::use_awaitable);

    Request sleep;
    hold_server(admin, sleep, "0.6");
    co_await sleep_for(50ms);  // the server is asleep now
    Request incr;
    incr.push("INCR", "rk:timeout:n");
    long long n = 0;
    Diagnostics diag;
    auto const start = Clock::now();
    auto [ec] = co_await conn.async_exec(incr, n, diag, as_tuple_awaitable);
    auto const took = Clock::now() - start;
    BOOST_TEST(ec == Error::timeout, ec.message());
    BOOST_TEST((took >= 90ms));
    BOOST_TEST((took < 500ms));
    BOOST_TEST(diag.detail.find("may have run") != std::string::npos, diag.detail);

    // A request of its own with a longer timeout waits the sleep out; the INCR's late reply
    // is not taken for its reply.
    Request get(Request::Config{.timeout = 3s});
    get.push("GET", "rk:timeout:n");
    std::optional<std::string> v;
    auto [ec2] = co_await conn.async_exec(get, v, as_tuple_awaitable);
    BOOST_TEST(!ec2, ec2.message());
    BOOST_TEST(v.value_or("") == "1");  // the INCR did run: "may have run" was right
    BOOST_TEST(conn.health() == rediskit::HealthStatus::ok);
  });
}

// Two requests time out together and the first one's handler closes the connection: the
// other still completes once, with Error::timeout (both were taken before either completed;
// clang's ASan run would see a use after free otherwise).
BOOST_AUTO_TEST_CASE(a_timeout_handler_may_close_the_connection) {
  rediskit::test::TestRedisServer srv;
  asio::io_context ioc;
  auto cfg = patient_config_for(srv.port());
  cfg.command_timeout = 100ms;
  cfg.health_check_interval = 0ms;
  Connection conn(ioc, cfg);
  Connection admin(ioc, patient_config_for(srv.port()));
  int connected = 0;
  conn.async_connect([&](error_code ec) { connected += !ec; });
  admin.async_connect([&](error_code ec) { connected += !ec; });
  for (int i = 0; i < 300 && connected < 2; ++i) ioc.run_for(10ms);
  BOOST_REQUIRE(connected == 2);
  Request sleep;
  hold_server(admin, sleep, "0.5");
  ioc.run_for(50ms);  // the server is asleep now
  Request a, b;
  a.push("GET", "rk:timeout:a");
  b.push("GET", "rk:timeout:b");
  std::optional<std::string> va, vb;
  int a_calls = 0, b_calls = 0;
  error_code ea, eb;
  conn.async_exec(a, va, [&](error_code ec) {
    ++a_calls;
    ea = ec;
    conn.close();
  });
  conn.async_exec(b, vb, [&](error_code ec) {
    ++b_calls;
    eb = ec;
  });
  std::this_thread::sleep_for(150ms);  // both deadlines pass before the timer's handler runs
  for (int i = 0; i < 300 && b_calls == 0; ++i) ioc.run_for(10ms);
  BOOST_TEST(a_calls == 1);
  BOOST_TEST(b_calls == 1);
  BOOST_TEST(ea == Error::timeout, ea.message());
  BOOST_TEST(eb == Error::timeout, eb.message());
  admin.close();
  ioc.run_for(600ms);  // the sleep's reply, dropped
}

// A request that waits for a reconnection times out too, and was never sent.
BOOST_AUTO_TEST_CASE(a_request_waiting_for_the_link_times_out_unsent) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = patient_config_for(srv.port());
    cfg.command_timeout = 150ms;
    Connection conn(ioc, cfg);
    co_await conn.async_connect(asio::use_awaitable);
    srv.stop();
    Request ping;
    ping.push("PING");
    std::string pong;
    // Until the connection has seen the link go (a request written before fails otherwise).
    for (int i = 0; i < 100 && conn.health() == rediskit::HealthStatus::ok; ++i) {
      auto [e] = co_await conn.async_exec(ping, pong, as_tuple_awaitable);
      (void)e;
      co_await sleep_for(10ms);
    }
    BOOST_REQUIRE(conn.health() != rediskit::HealthStatus::ok);
    Request get;
    get.push("GET", "k");
    std::optional<std::string> v;
    Diagnostics diag;
    auto [ec] = co_await conn.async_exec(get, v, diag, as_tuple_awaitable);
    BOOST_TEST(ec == Error::timeout, ec.message());
    BOOST_TEST(diag.detail.find("did not run") != std::string::npos, diag.detail);
    conn.close();
  });
}

// offline_queue = false: while the link is down a request fails at once with not_connected
// instead of waiting for the reconnection (the default waits).
BOOST_AUTO_TEST_CASE(without_the_offline_queue_requests_fail_at_once_while_down) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = patient_config_for(srv.port());
    cfg.offline_queue = false;
    Connection conn(ioc, cfg);
    co_await conn.async_connect(asio::use_awaitable);
    Request ping;
    ping.push("PING");
    std::string pong;
    auto [ec0] = co_await conn.async_exec(ping, pong, as_tuple_awaitable);
    BOOST_TEST(!ec0, ec0.message());
    srv.kill();
    // Until the connection has seen the link go.
    for (int i = 0; i < 100 && conn.health() == rediskit::HealthStatus::ok; ++i) {
      auto [e] = co_await conn.async_exec(ping, pong, as_tuple_awaitable);
      (void)e;
      co_await sleep_for(10ms);
    }
    auto const start = Clock::now();
    auto [ec] = co_await conn.async_exec(ping, pong, as_tuple_awaitable);
    BOOST_TEST(ec == Error::not_connected, ec.message());
    BOOST_TEST((Clock::now() - start < 100ms));
    // Back up: requests go through again.
    srv.start();
    bool served = false;
    for (int i = 0; i < 200 && !served; ++i) {
      auto [e] = co_await conn.async_exec(ping, pong, as_tuple_awaitable);
      served = !e;
      if (!served) co_await sleep_for(20ms);
    }
    BOOST_TEST(served);
    conn.close();
  });
}

// offline_queue = false: at a link loss even a read already written fails, with
// connection_lost, instead of being sent again on the next link (the default re-sends it: this
// BLPOP would then end with its nil after 3 s).
BOOST_AUTO_TEST_CASE(without_the_offline_queue_a_written_read_fails_at_the_link_loss) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = patient_config_for(srv.port());
    cfg.offline_queue = false;
    cfg.health_check_interval = 0ms;
    Connection conn(ioc, cfg);
    co_await conn.async_connect(asio::use_awaitable);
    Connection admin(ioc, config_for(srv.port()));
    Request blpop({.idempotent = true});
    blpop.push("BLPOP", "rk:nothing", 3);
    rediskit::resp3::Tree reply;
    std::optional<error_code> got;
    conn.async_exec(blpop, reply, [&](error_code ec) { got = ec; });
    co_await sleep_for(100ms);
    Request kill;
    kill.push("CLIENT", "KILL", "TYPE", "normal");
    long long killed = 0;
    co_await admin.async_exec(kill, killed, asio::use_awaitable);  // skips admin itself
    BOOST_TEST(killed == 1);
    while (!got) co_await sleep_for(5ms);
    BOOST_TEST(*got == Error::connection_lost, got->message());
    conn.close();
    admin.close();
  });
}

// A connection that gives up says so in words a person can act on: where, why, and what was
// tried, in Diagnostics::detail and metrics().last_failure; never the password.
// Seed 002's maxLoadingTimeout. A server that restarts with a dataset answers LOADING while
// it reads it: --key-load-delay (µs per key) makes 20 000 keys take about 2 s, and
// --loading-process-events-interval-bytes lets it accept and answer clients meanwhile.
struct LoadingServer {
  rediskit::test::TestRedisServer srv{rediskit::test::TestRedisServer::Options{
      .extra_args = {"--key-load-delay", "100", "--loading-process-events-interval-bytes",
                     "1024"}}};

  // Writes the dataset to dump.rdb, then kills the server and starts it again on the same
  // port: it comes back loading.
  void restart_loading() {
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
      Connection admin(ioc, config_for(srv.port()));
      Request fill;
      fill.push("DEBUG", "POPULATE", 20000);
      fill.push("SET", "rk:loading:marker", "here");
      fill.push("SAVE");
      co_await admin.async_exec(fill, rediskit::resp3::ignore, asio::use_awaitable);
      admin.close();
    });
    srv.kill();
    srv.start();  // returns once the server answers, LOADING included
    std::string const reply = rediskit::test::detail::ping_reply(srv.port());
    BOOST_REQUIRE_MESSAGE(reply.starts_with("-LOADING"), "not loading: " + reply);
  }
};

BOOST_AUTO_TEST_CASE(requests_wait_while_a_restarted_server_loads_its_dataset) {
  LoadingServer s;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = patient_config_for(s.srv.port());
    cfg.max_loading_timeout = 20s;
    Connection before(ioc, cfg);  // connected before the restart: reconnects into the loading
    co_await before.async_connect(asio::use_awaitable);
    s.restart_loading();
    co_await sleep_for(50ms);  // `before` sees its link go, and reconnects into the loading

    Connection fresh(ioc, cfg);  // connects while the server loads
    bool connected = false;
    fresh.async_connect([&](error_code ec) { connected = !ec; });
    Request get;
    get.push("GET", "rk:loading:marker");
    std::string v1, v2;
    error_code e1, e2;
    int done = 0;
    before.async_exec(get, v1, [&](error_code ec) { e1 = ec, ++done; });
    fresh.async_exec(get, v2, [&](error_code ec) { e2 = ec, ++done; });
    co_await sleep_for(300ms);
    // Still loading: the handshake is done but the link is not ready, and nothing was sent.
    BOOST_TEST(rediskit::test::detail::ping_reply(s.srv.port()).starts_with("-LOADING"));
    BOOST_TEST(!connected);
    BOOST_TEST(done == 0);
    BOOST_TEST(fresh.health() == rediskit::HealthStatus::degraded);
    while (done < 2) co_await sleep_for(10ms);
    BOOST_TEST(!e1, e1.message());
    BOOST_TEST(!e2, e2.message());
    BOOST_TEST(v1 == "here");  // the dataset is the loaded one
    BOOST_TEST(v2 == "here");
    BOOST_TEST(connected);
    BOOST_TEST(fresh.health() == rediskit::HealthStatus::ok);
    BOOST_TEST(fresh.metrics().errors == 0u);  // waiting for the load is no error
    before.close();
    fresh.close();
  });
}

BOOST_AUTO_TEST_CASE(past_max_loading_timeout_requests_fail_with_loading) {
  LoadingServer s;
  s.restart_loading();
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = patient_config_for(s.srv.port());
    cfg.max_loading_timeout = 300ms;
    Connection conn(ioc, cfg);
    Request get;
    get.push("GET", "rk:loading:marker");
    std::string v;
    Diagnostics diag;
    auto const start = Clock::now();
    auto [ec] = co_await conn.async_exec(get, v, diag, as_tuple_awaitable);
    auto const waited = Clock::now() - start;
    BOOST_TEST(ec == Error::loading, ec.message());
    BOOST_TEST((waited >= 250ms));  // it waited for the load, as long as allowed
    BOOST_TEST(diag.detail.find("is loading its dataset, still after max_loading_timeout "
                                "(300 ms); the request did not run") != std::string::npos,
               diag.detail);
    // Past the deadline, new requests and async_connect fail at once while it loads.
    auto [ec2] = co_await conn.async_exec(get, v, as_tuple_awaitable);
    BOOST_TEST(ec2 == Error::loading, ec2.message());
    auto [ec3] = co_await conn.async_connect(as_tuple_awaitable);
    BOOST_TEST(ec3 == Error::loading, ec3.message());

    // Without the offline queue nothing waits for the load.
    auto quick = cfg;
    quick.offline_queue = false;
    quick.max_loading_timeout = 20s;
    Connection impatient(ioc, quick);
    impatient.async_connect([](error_code) {});
    while (impatient.health() == rediskit::HealthStatus::disconnected) co_await sleep_for(5ms);
    co_await sleep_for(100ms);  // its handshake has met the LOADING
    auto [ec4] = co_await impatient.async_exec(get, v, as_tuple_awaitable);
    BOOST_TEST(ec4 == Error::loading, ec4.message());

    // Once loaded, the same connections serve requests.
    while (!rediskit::test::detail::ping_reply(s.srv.port()).starts_with("+PONG"))
      co_await sleep_for(50ms);
    co_await sleep_for(200ms);  // their next handshake runs within 100 ms
    v.clear();
    auto [ec5] = co_await conn.async_exec(get, v, as_tuple_awaitable);
    BOOST_TEST(!ec5, ec5.message());
    BOOST_TEST(v == "here");
    v.clear();
    auto [ec6] = co_await impatient.async_exec(get, v, as_tuple_awaitable);
    BOOST_TEST(!ec6, ec6.message());
    BOOST_TEST(v == "here");
    conn.close();
    impatient.close();
  });
}

BOOST_AUTO_TEST_CASE(giving_up_names_the_endpoint_the_cause_and_the_attempts) {
  auto failure = [](ConnectionConfig cfg) {
    std::string detail, last;
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
      Connection conn(ioc, cfg);
      Request ping;
      ping.push("PING");
      std::string pong;
      Diagnostics diag;
      auto [ec] = co_await conn.async_exec(ping, pong, diag, as_tuple_awaitable);
      BOOST_TEST(ec, "the request should have failed");
      detail = diag.detail;
      last = conn.metrics().last_failure;
    });
    BOOST_TEST(detail == last);
    return detail;
  };
  auto quick = [](unsigned short port) {
    ConnectionConfig cfg = config_for(port);
    cfg.reconnect = {.initial_delay = 10ms, .max_delay = 20ms, .max_attempts = 1};
    cfg.connect_timeout = 300ms;
    return cfg;
  };
  auto const free_port = rediskit::test::detail::pick_free_port();
  auto refused = failure(quick(free_port));
  BOOST_TEST(refused.find("cannot reach Redis at 127.0.0.1:" + std::to_string(free_port) +
                          ": connection refused") == 0u, refused);
  BOOST_TEST(refused.find("(2 attempts in ") != std::string::npos, refused);

  auto unresolved = quick(6379);
  unresolved.host = "no-such-host.invalid";
  auto text = failure(unresolved);
  BOOST_TEST(text.find("cannot reach Redis at no-such-host.invalid:6379: the host name does "
                       "not resolve") == 0u, text);

  // A listener that never answers: the handshake waits for connect_timeout.
  int const fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  BOOST_REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  BOOST_REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  BOOST_REQUIRE(::listen(fd, 16) == 0);
  text = failure(quick(ntohs(addr.sin_port)));
  ::close(fd);
  BOOST_TEST(text.find(": no answer within connect_timeout (300 ms)") != std::string::npos, text);

  rediskit::test::TestRedisServer srv(
      rediskit::test::TestRedisServer::Options{.extra_args = {"--requirepass", "s3cret-pass"}});
  auto wrong = quick(srv.port());
  wrong.password = "wrong-secret-123";
  text = failure(wrong);
  BOOST_TEST(text.find("authentication failed: wrong password or user") != std::string::npos,
             text);
  BOOST_TEST(text.find("wrong-secret-123") == std::string::npos, text);
  BOOST_TEST(text.find("s3cret-pass") == std::string::npos, text);
}

BOOST_AUTO_TEST_SUITE_END()
