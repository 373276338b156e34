// TLS (issue 13): RedisBackend and Connection against a redis-server that serves TLS with a CA
// and certificates the fixture made (TestRedisTlsServer). Round trips, rediss:// URLs, and the
// failures a user meets — a certificate for another host, an unknown CA, the wrong kind of
// port, a missing client certificate, unusable files — each a clear error, at once, with no
// retry loop. Every test starts its own server.
#include "support/run_coroutine.hpp"
#include "support/test_redis_tls.hpp"

#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/redis_config.hpp>
#include <rediskit/tls.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace cmd = rediskit::cmd;
using namespace std::chrono_literals;
using boost::system::error_code;
using rediskit::Error;
using rediskit::RedisBackend;
using rediskit::RedisConfig;
using rediskit::test::TestRedisTlsServer;

namespace {

using rediskit::test::as_tuple_awaitable;
using rediskit::test::run;
using rediskit::test::sleep_for;

constexpr auto use = asio::use_awaitable;
using Clock = std::chrono::steady_clock;

// TLS to the fixture's TLS port, trusting the fixture's CA, verifying 127.0.0.1.
RedisConfig tls_config(TestRedisTlsServer const& srv) {
  RedisConfig cfg;
  cfg.port = srv.tls_port();
  cfg.tls.enabled = true;
  cfg.tls.ca_file = srv.files().ca_cert;
  return cfg;
}

// What one failed first request shows: its error, how long it took, how many attempts.
struct Failure {
  error_code ec;
  Clock::duration took{};
  std::uint64_t attempts = 0;
  error_code last_error;
  std::vector<std::string> log;
};

// A Connection with `cfg` sends one PING; the test expects it to fail.
Failure first_request_fails(rediskit::ConnectionConfig cfg) {
  Failure f;
  cfg.log = [&](rediskit::LogLevel, std::string_view l) { f.log.emplace_back(l); };
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    rediskit::Connection conn(ioc, cfg);
    rediskit::resp3::Request req;
    req.push("PING");
    std::string pong;
    auto const start = Clock::now();
    auto [ec] = co_await conn.async_exec(req, pong, as_tuple_awaitable);
    f.took = Clock::now() - start;
    f.ec = ec;
    f.attempts = conn.metrics().errors;
    f.last_error = conn.metrics().last_error;
    BOOST_TEST(conn.health() == rediskit::HealthStatus::disconnected);
  });
  return f;
}

std::string log_text(Failure const& f) {
  std::string all;
  for (auto const& l : f.log)
    all += "\n  " + l;
  return all;
}

bool log_mentions(Failure const& f, std::string_view text) {
  for (auto const& l : f.log)
    if (l.find(text) != std::string::npos) return true;
  return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(tls)

BOOST_AUTO_TEST_CASE(commands_batches_and_pubsub_over_tls) {
  TestRedisTlsServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    RedisBackend db(ioc, tls_config(srv));
    auto const stored = co_await db.async_exec(cmd::set{.key = "tls:k", .value = "v"}, use);
    BOOST_TEST(stored);
    auto const value_back = co_await db.async_exec(cmd::get{"tls:k"}, use);
    BOOST_TEST((value_back == "v"));

    // A value larger than a TLS record (16 KiB): written and read in many records.
    std::string const big(1 << 20, 'x');
    co_await db.async_exec(cmd::set{.key = "tls:big", .value = big}, use);
    auto const big_back = co_await db.async_exec(cmd::get{"tls:big"}, use);
    BOOST_TEST((big_back == big));

    // A batch and a transaction: one write each.
    std::map<std::string, std::string> const fields{{"name", "Alice"}, {"status", "online"}};
    auto [n, added, profile] = co_await db.async_exec(
        rediskit::batch(cmd::incr{"tls:n"}, cmd::hset{.key = "tls:h", .fields = fields},
                        cmd::hgetall{"tls:h"}),
        use);
    BOOST_TEST(n == 1);
    BOOST_TEST(added == 2);
    BOOST_TEST(profile.size() == 2u);
    BOOST_TEST((std::find(profile.begin(), profile.end(),
                          std::pair<std::string, std::string>("name", "Alice")) != profile.end()));
    auto [m, value] =
        co_await db.async_exec(rediskit::transaction(cmd::incr{"tls:n"}, cmd::get{"tls:k"}), use);
    BOOST_TEST(m == 2);
    BOOST_TEST((value == "v"));

    // Pub/sub through a subscriber (a connection of its own, TLS too).
    auto sub = db.make_subscriber();
    co_await sub.async_subscribe("tls:room", use);
    auto const receivers =
        co_await db.async_exec(cmd::publish{.channel = "tls:room", .message = "hi"}, use);
    BOOST_TEST(receivers == 1);
    rediskit::Message msg = co_await sub.async_receive(use);
    BOOST_TEST(msg.channel == "tls:room");
    BOOST_TEST(msg.payload == "hi");

    BOOST_TEST(db.metrics().connections_created == 1u);
    BOOST_TEST(db.metrics().errors == 0u);
    sub.close();
    db.close();
  });
}

BOOST_AUTO_TEST_CASE(rediss_url_from_the_environment) {
  TestRedisTlsServer srv;
  std::map<std::string, std::string> const vars{
      {"REDIS_URL", "rediss://localhost:" + std::to_string(srv.tls_port()) + "/3"},
      {"REDIS_TLS_CA_FILE", srv.files().ca_cert}};
  auto const cfg = RedisConfig::from_env([&](char const* name) -> char const* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
  BOOST_TEST(cfg.tls.enabled);
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    RedisBackend db(ioc, cfg);  // verifies the certificate against the name "localhost"
    co_await db.async_exec(cmd::set{.key = "url", .value = "over tls"}, use);
    auto const got = co_await db.async_exec(cmd::get{"url"}, use);
    BOOST_TEST((got == "over tls"));
    // Database 3, as the URL said.
    rediskit::Connection admin(ioc, {.port = srv.port(), .database = 3});
    rediskit::resp3::Request req;
    req.push("GET", "url");
    std::optional<std::string> seen;
    co_await admin.async_exec(req, seen, use);
    BOOST_TEST((seen == "over tls"));
    db.close();
  });
}

BOOST_AUTO_TEST_CASE(a_certificate_for_another_host_fails_at_once) {
  TestRedisTlsServer srv;
  auto cfg = tls_config(srv).connection_config();
  cfg.tls.server_name = "redis.example.org";  // the certificate is for localhost, 127.0.0.1
  auto const f = first_request_fails(cfg);
  BOOST_TEST(f.ec == Error::tls_host_name_mismatch, f.ec.message());
  BOOST_TEST(f.attempts == 1u, log_text(f));  // no retry loop
  BOOST_TEST((f.took < 2s));
  BOOST_TEST(log_mentions(f, "mismatch"));
  BOOST_TEST(f.ec.message().find("server_name") != std::string::npos);  // says what to do

  // The same certificate by its own name and address connects.
  for (std::string name : {"localhost", "127.0.0.1"}) {
    auto good = tls_config(srv);
    good.tls.server_name = name;
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
      RedisBackend db(ioc, good);
      auto const pong = co_await db.async_exec(cmd::ping{}, use);
      BOOST_TEST((pong == "PONG"));
      db.close();
    });
  }
}

BOOST_AUTO_TEST_CASE(a_certificate_from_an_unknown_ca_fails_at_once) {
  TestRedisTlsServer srv;
  auto cfg = tls_config(srv).connection_config();
  cfg.tls.ca_file = srv.files().other_ca_cert;
  auto const f = first_request_fails(cfg);
  BOOST_TEST(f.ec == Error::tls_certificate_untrusted, f.ec.message());
  BOOST_TEST(f.attempts == 1u, log_text(f));
  BOOST_TEST((f.took < 2s));
  BOOST_TEST(f.ec.message().find("ca_file") != std::string::npos);

  // The system's CA store (no ca_file) does not know the fixture's CA either.
  cfg.tls.ca_file.clear();
  auto const g = first_request_fails(cfg);
  BOOST_TEST(g.ec == Error::tls_certificate_untrusted, g.ec.message());
  BOOST_TEST(g.attempts == 1u, log_text(g));

  // Only an explicit, code-level opt-out accepts it.
  auto insecure = tls_config(srv);
  insecure.tls.ca_file.clear();
  insecure.tls.server_name = "redis.example.org";
  insecure.tls.dangerously_skip_verification = true;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    RedisBackend db(ioc, insecure);
    auto const pong = co_await db.async_exec(cmd::ping{}, use);
    BOOST_TEST((pong == "PONG"));
    db.close();
  });
}

BOOST_AUTO_TEST_CASE(a_tls_client_on_a_plain_port_fails_within_connect_timeout) {
  TestRedisTlsServer srv;
  auto cfg = tls_config(srv).connection_config();
  cfg.port = srv.port();  // plain TCP: Redis reads the ClientHello as the start of a command
  cfg.connect_timeout = 1s;
  auto const f = first_request_fails(cfg);
  // The server answers nothing (it waits for the rest of a "command"), or replies with an
  // error about it, which is no TLS record: either way one attempt and a TLS error.
  BOOST_TEST((f.ec == Error::tls_handshake_timeout || f.ec == Error::tls_handshake_failed),
             f.ec.message());
  BOOST_TEST(f.attempts == 1u, log_text(f));
  BOOST_TEST((f.took < 3s));
}

BOOST_AUTO_TEST_CASE(a_plain_client_on_the_tls_port_fails_promptly) {
  TestRedisTlsServer srv;
  rediskit::ConnectionConfig cfg;  // default reconnect policy: 3 retries from 200 ms
  cfg.port = srv.tls_port();
  auto const f = first_request_fails(cfg);
  BOOST_TEST(f.ec == Error::reconnect_gave_up, f.ec.message());
  BOOST_TEST(f.last_error == Error::closed_during_handshake, f.last_error.message());
  BOOST_TEST(f.last_error.message().find("rediss://") != std::string::npos);
  BOOST_TEST((f.took < 5s));
}

BOOST_AUTO_TEST_CASE(reconnects_over_tls_after_the_server_restarts) {
  TestRedisTlsServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    auto cfg = tls_config(srv);
    cfg.health_check_interval = 200ms;
    RedisBackend db(ioc, cfg);
    auto sub = db.make_subscriber();
    co_await sub.async_subscribe("tls:events", use);
    auto const pong = co_await db.async_exec(cmd::ping{}, use);
    BOOST_TEST((pong == "PONG"));

    srv.kill();
    srv.start();  // same ports, same certificate; the data is gone (no persistence)

    // A read is re-sent after the reconnection; then writes work again.
    auto const before = co_await db.async_exec(cmd::get{"tls:after"}, use);
    BOOST_TEST((before == std::nullopt));
    co_await db.async_exec(cmd::set{.key = "tls:after", .value = "1"}, use);
    auto const after = co_await db.async_exec(cmd::get{"tls:after"}, use);
    BOOST_TEST((after == "1"));
    BOOST_TEST(db.metrics().reconnections >= 1u);

    // The subscriber reconnected over TLS and subscribed again: it says so once
    // (Error::resubscribed), and a message published after that reaches it (publish until it
    // is there: the resubscription races the publisher).
    std::optional<rediskit::Message> got;
    int resubscribed = 0;
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          for (;;) {
            auto [ec, m] = co_await sub.async_receive(as_tuple_awaitable);
            if (ec == Error::resubscribed) {
              ++resubscribed;
              continue;
            }
            BOOST_TEST(!ec, ec.message());
            got = std::move(m);
            co_return;
          }
        },
        asio::detached);
    for (int i = 0; i < 100 && !got; ++i) {
      co_await db.async_exec(cmd::publish{.channel = "tls:events", .message = "back"}, use);
      co_await sleep_for(50ms);
    }
    BOOST_REQUIRE(got.has_value());
    BOOST_TEST(got->payload == "back");
    BOOST_TEST(resubscribed == 1);
    sub.close();
    db.close();
  });
}

BOOST_AUTO_TEST_CASE(a_server_that_requires_a_client_certificate) {
  TestRedisTlsServer srv({.require_client_certificate = true});
  auto const f = first_request_fails(tls_config(srv).connection_config());
  BOOST_TEST(f.ec == Error::tls_handshake_failed, f.ec.message());
  BOOST_TEST(f.attempts == 1u, log_text(f));
  BOOST_TEST((f.took < 2s));
  BOOST_TEST(f.ec.message().find("cert_file") != std::string::npos);

  auto cfg = tls_config(srv);
  cfg.tls.cert_file = srv.files().client_cert;
  cfg.tls.key_file = srv.files().client_key;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    RedisBackend db(ioc, cfg);
    auto const pong = co_await db.async_exec(cmd::ping{}, use);
    BOOST_TEST((pong == "PONG"));
    db.close();
  });
}

BOOST_AUTO_TEST_CASE(unusable_files_fail_at_once_naming_the_file_not_the_key) {
  TestRedisTlsServer srv;
  auto cfg = tls_config(srv).connection_config();
  cfg.tls.ca_file = "/nonexistent/rediskit-ca.pem";
  auto const f = first_request_fails(cfg);
  BOOST_TEST(f.ec == Error::tls_setup_failed, f.ec.message());
  BOOST_TEST(f.attempts == 1u, log_text(f));
  BOOST_TEST(log_mentions(f, "/nonexistent/rediskit-ca.pem"));

  // A key that belongs to another certificate.
  cfg.tls.ca_file = srv.files().ca_cert;
  cfg.tls.cert_file = srv.files().client_cert;
  cfg.tls.key_file = srv.files().server_key;
  auto const g = first_request_fails(cfg);
  BOOST_TEST(g.ec == Error::tls_setup_failed, g.ec.message());
  BOOST_TEST(log_mentions(g, "does not match"));
  // The log names files, never what is in the key.
  std::ifstream in(srv.files().server_key);
  std::string line;
  while (std::getline(in, line))
    if (line.size() > 20 && line.find("-----") == std::string::npos)
      for (auto const& l : g.log)
        BOOST_TEST(l.find(line) == std::string::npos, l);
}

BOOST_AUTO_TEST_CASE(an_acl_user_over_a_rediss_url) {
  TestRedisTlsServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    rediskit::Connection admin(ioc, {.port = srv.port()});
    rediskit::resp3::Request setup;
    setup.push("ACL", "SETUSER", "app", "on", ">s3cret pass", "~app:*", "+@all");
    std::string ok;
    co_await admin.async_exec(setup, ok, use);

    auto cfg = RedisConfig::from_url("rediss://app:s3cret%20pass@127.0.0.1:" +
                                     std::to_string(srv.tls_port()));
    cfg.tls.ca_file = srv.files().ca_cert;
    RedisBackend db(ioc, cfg);
    co_await db.async_exec(cmd::set{.key = "app:1", .value = "mine"}, use);
    rediskit::Diagnostics diag;
    auto [ec, v] = co_await db.async_exec(cmd::get{"other:1"}, diag, as_tuple_awaitable);
    BOOST_TEST(ec == Error::no_permission, ec.message());
    BOOST_TEST(diag.server_message.starts_with("NOPERM"));
    auto const mine = co_await db.async_exec(cmd::get{"app:1"}, use);
    BOOST_TEST((mine == "mine"));
    db.close();
  });
}

BOOST_AUTO_TEST_SUITE_END()
