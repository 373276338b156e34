// ACL users (issue 13): a restricted user's NOPERM is a clear error that leaves the connection
// usable, and a wrong password fails at once with auth_failed, never reaching a log line. Each
// test starts its own server (ACL SETUSER changes it).
#include "support/run_coroutine.hpp"
#include "support/test_redis.hpp"

#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/redis_config.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace cmd = rediskit::cmd;
using namespace std::chrono_literals;
using rediskit::Error;
using rediskit::RedisBackend;
using rediskit::RedisConfig;

namespace {

using rediskit::test::as_tuple_awaitable;
using rediskit::test::run;

constexpr auto use = asio::use_awaitable;

// `limited` may GET and SET keys under allowed:, nothing else (not even PING).
asio::awaitable<void> add_limited_user(asio::io_context& ioc, unsigned short port) {
  rediskit::Connection admin(ioc, {.port = port});
  rediskit::resp3::Request req;
  req.push("ACL", "SETUSER", "limited", "on", ">pw-limited-42", "~allowed:*", "+get", "+set");
  std::string ok;
  co_await admin.async_exec(req, ok, use);
  BOOST_TEST(ok == "OK");
  admin.close();
}

RedisConfig limited(unsigned short port, std::string password) {
  RedisConfig cfg;
  cfg.port = port;
  cfg.username = "limited";
  cfg.password = std::move(password);
  return cfg;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(acl_users)

BOOST_AUTO_TEST_CASE(no_permission_is_a_clear_error_and_the_connection_stays) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    co_await add_limited_user(ioc, srv.port());
    auto cfg = limited(srv.port(), "pw-limited-42");
    cfg.health_check_interval = 100ms;  // its PING is refused (NOPERM): still a sign of life
    RedisBackend db(ioc, cfg);
    auto const stored = co_await db.async_exec(cmd::set{.key = "allowed:1", .value = "v"}, use);
    BOOST_TEST(stored);

    // A key outside the user's pattern, and a command the user may not run.
    rediskit::Diagnostics diag;
    auto [ec, v] = co_await db.async_exec(cmd::get{"secret:1"}, diag, as_tuple_awaitable);
    BOOST_TEST(ec == Error::no_permission, ec.message());
    BOOST_TEST(ec.message().find("ACL") != std::string::npos);
    BOOST_TEST(diag.server_message.starts_with("NOPERM"), diag.server_message);
    auto [ec2, n] = co_await db.async_exec(cmd::del{.keys = {"allowed:1"}}, as_tuple_awaitable);
    BOOST_TEST(ec2 == Error::no_permission, ec2.message());

    // In a batch, the refused command reports its error and the others still run.
    auto [ec3, replies] = co_await db.async_exec(
        rediskit::batch(cmd::get{"allowed:1"}, cmd::incr{"allowed:n"}, cmd::get{"allowed:1"}),
        as_tuple_awaitable);
    BOOST_TEST(ec3 == Error::no_permission, ec3.message());
    BOOST_TEST((std::get<0>(replies) == "v"));
    BOOST_TEST((std::get<2>(replies) == "v"));

    // The same connection goes on serving, across several refused health-check PINGs.
    asio::steady_timer t(ioc, 350ms);
    co_await t.async_wait(use);
    auto const still_there = co_await db.async_exec(cmd::get{"allowed:1"}, use);
    BOOST_TEST((still_there == "v"));
    BOOST_TEST(db.metrics().connections_created == 1u);
    BOOST_TEST(db.metrics().reconnections == 0u);
    BOOST_TEST(db.health() == rediskit::HealthStatus::ok);
    db.close();
  });
}

BOOST_AUTO_TEST_CASE(a_wrong_password_fails_at_once_with_auth_failed) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    co_await add_limited_user(ioc, srv.port());
    auto const start = std::chrono::steady_clock::now();
    RedisBackend db(ioc, limited(srv.port(), "not-the-password-77"));
    auto [ec, v] = co_await db.async_exec(cmd::get{"allowed:1"}, as_tuple_awaitable);
    BOOST_TEST(ec == Error::auth_failed, ec.message());
    BOOST_TEST((std::chrono::steady_clock::now() - start < 1s));
    BOOST_TEST(db.metrics().errors == 1u);  // one attempt, no retry loop
    BOOST_TEST(ec.message().find("not-the-password-77") == std::string::npos);

    // The log of a Connection with the same configuration never holds the password.
    std::vector<std::string> lines;
    auto cfg = limited(srv.port(), "not-the-password-77").connection_config();
    cfg.log = [&](rediskit::LogLevel, std::string_view l) { lines.emplace_back(l); };
    rediskit::Connection conn(ioc, cfg);
    auto [ec2] = co_await conn.async_connect(as_tuple_awaitable);
    BOOST_TEST(ec2 == Error::auth_failed, ec2.message());
    BOOST_TEST(!lines.empty());
    for (auto const& l : lines)
      BOOST_TEST(l.find("not-the-password-77") == std::string::npos, l);
    db.close();
  });
}

// A refused SUBSCRIBE is an error of its own: RESP3 answers it with a regular error reply,
// never a push, and that reply must not become the answer of the next request on the link.
BOOST_AUTO_TEST_CASE(a_refused_subscription_fails_alone_and_is_not_restored) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    rediskit::Connection admin(ioc, {.port = srv.port()});
    rediskit::resp3::Request setuser;
    setuser.push("ACL", "SETUSER", "listener", "on", ">pw-listener-9", "resetchannels",
                 "&news:*", "~news:*", "-@all", "+subscribe", "+get", "+set");
    std::string ok;
    co_await admin.async_exec(setuser, ok, use);
    BOOST_TEST(ok == "OK");
    rediskit::resp3::Request seed;
    seed.push("SET", "news:k", "value-of-k");
    co_await admin.async_exec(seed, ok, use);

    auto cfg = limited(srv.port(), "pw-listener-9").connection_config();
    cfg.username = "listener";
    cfg.reconnect = {.initial_delay = 50ms, .max_delay = 200ms, .max_attempts = 20};
    rediskit::Connection sub(ioc, cfg);
    // The refusal and a GET written in the same turn: each gets its own reply.
    std::optional<boost::system::error_code> refused;
    sub.async_subscribe("secret:chan", [&](boost::system::error_code e) { refused = e; });
    rediskit::resp3::Request get;
    get.push("GET", "news:k");
    std::string value;
    auto [ec_get] = co_await sub.async_exec(get, value, as_tuple_awaitable);
    BOOST_TEST(!ec_get, ec_get.message());
    BOOST_TEST(value == "value-of-k");
    BOOST_REQUIRE(refused.has_value());
    BOOST_TEST(*refused == Error::no_permission, refused->message());

    auto [ec_sub] = co_await sub.async_subscribe("news:today", as_tuple_awaitable);
    BOOST_TEST(!ec_sub, ec_sub.message());
    BOOST_TEST(sub.health() == rediskit::HealthStatus::ok);
    BOOST_TEST(sub.metrics().reconnections == 0u);

    // After a reconnection only the subscription the server took is restored: news:today
    // delivers again.
    rediskit::resp3::Request kill;
    kill.push("CLIENT", "KILL", "USER", "listener");
    long long killed = 0;
    co_await admin.async_exec(kill, killed, use);
    BOOST_TEST(killed == 1);
    bool delivered = false;
    int resubscribed = 0;
    for (int i = 0; i < 100 && !delivered; ++i) {
      rediskit::resp3::Request pub;
      pub.push("PUBLISH", "news:today", "headline");
      long long receivers = 0;
      co_await admin.async_exec(pub, receivers, use);
      asio::steady_timer t(ioc, 20ms);
      co_await t.async_wait(use);
      if (receivers == 0) continue;
      for (;;) {
        auto [ec, push] = co_await sub.async_receive(as_tuple_awaitable);
        if (ec == Error::resubscribed) {  // the link came back: said once
          ++resubscribed;
          continue;
        }
        BOOST_REQUIRE(!ec);
        if (push.size() >= 4 && push[1].value == "message") {
          BOOST_TEST(push[2].value == "news:today");
          BOOST_TEST(push[3].value == "headline");
          delivered = true;
          break;
        }
      }
    }
    BOOST_TEST(delivered);
    BOOST_TEST(resubscribed == 1);
    BOOST_TEST(sub.metrics().reconnections == 1u);
    sub.close();
    admin.close();
  });
}

// A subscription that the ACL user loses (Redis 7 disconnects a client whose channel was
// revoked) is dropped at the reconnection, reported by an "unsubscribe" push: the connection
// reconnects and serves on (a refused resubscription must not fail it).
BOOST_AUTO_TEST_CASE(a_revoked_subscription_is_dropped_at_the_reconnection) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    rediskit::Connection admin(ioc, {.port = srv.port()});
    rediskit::resp3::Request setuser;
    setuser.push("ACL", "SETUSER", "listener", "on", ">pw-listener-9", "resetchannels",
                 "&news:*", "&other:*", "~news:*", "-@all", "+subscribe", "+get");
    std::string ok;
    co_await admin.async_exec(setuser, ok, use);
    BOOST_TEST(ok == "OK");

    auto cfg = limited(srv.port(), "pw-listener-9").connection_config();
    cfg.username = "listener";
    cfg.reconnect = {.initial_delay = 50ms, .max_delay = 200ms, .max_attempts = 20};
    rediskit::Connection sub(ioc, cfg);
    co_await sub.async_subscribe("news:today", use);
    co_await sub.async_subscribe("other:x", use);

    // news:* is revoked: the server drops the client.
    rediskit::resp3::Request revoke;
    revoke.push("ACL", "SETUSER", "listener", "resetchannels", "&other:*");
    co_await admin.async_exec(revoke, ok, use);
    BOOST_TEST(ok == "OK");

    bool dropped = false;
    int resubscribed = 0;
    for (int i = 0; i < 200 && !dropped; ++i) {
      auto [ec, push] = co_await sub.async_receive(as_tuple_awaitable);
      if (ec == Error::resubscribed) {
        ++resubscribed;
        continue;
      }
      BOOST_REQUIRE(!ec);
      dropped = push.size() >= 4 && push[1].value == "unsubscribe" &&
                push[2].value == "news:today" && push[3].value == "0";
    }
    BOOST_TEST(dropped);
    BOOST_TEST(sub.metrics().reconnections == 1u);
    BOOST_TEST(sub.health() == rediskit::HealthStatus::ok);
    // What is still allowed was restored.
    bool delivered = false;
    for (int i = 0; i < 100 && !delivered; ++i) {
      rediskit::resp3::Request pub;
      pub.push("PUBLISH", "other:x", "still");
      long long receivers = 0;
      co_await admin.async_exec(pub, receivers, use);
      if (receivers == 0) {
        asio::steady_timer t(ioc, 20ms);
        co_await t.async_wait(use);
        continue;
      }
      for (;;) {
        auto [ec, push] = co_await sub.async_receive(as_tuple_awaitable);
        if (ec == Error::resubscribed) {  // the link came back: said once
          ++resubscribed;
          continue;
        }
        BOOST_REQUIRE(!ec);
        if (push.size() >= 4 && push[1].value == "message") {
          BOOST_TEST(push[2].value == "other:x");
          delivered = true;
          break;
        }
      }
    }
    BOOST_TEST(delivered);
    BOOST_TEST(resubscribed == 1);
    sub.close();
    admin.close();
  });
}

BOOST_AUTO_TEST_SUITE_END()
