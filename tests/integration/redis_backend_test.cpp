// RedisBackend on a real server: its roles (blocking commands on their own connections),
// script loading, idempotence on a lost link, configuration from the environment.
#include "support/backends.hpp"
#include "support/blpop.hpp"
#include "support/test_redis.hpp"

#include <rediskit/script.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <utility>

using namespace rediskit;
using namespace std::chrono_literals;
using rediskit::test::BackendFixture;
using rediskit::test::TestRedisServer;

namespace {

using rediskit::test::blpop;

struct rpush_one {
  std::string_view key, value;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("RPUSH", key, value);
  }
};

struct script_flush {
  using reply_type = std::string;
  template <class W>
  void write(W& w) const {
    w("SCRIPT", "FLUSH");
  }
};

struct debug_sleep {
  double seconds;
  using reply_type = std::string;
  template <class W>
  void write(W& w) const {
    w("DEBUG", "SLEEP", seconds);
  }
};

// RedisBackend only: the twin is never instantiated.
auto const incr_script = make_script<long long>("return redis.call('INCR', KEYS[1])",
                                                [](ScriptContext auto&) -> long long { return 0; });

}  // namespace

BOOST_AUTO_TEST_SUITE(redis_backend)

BOOST_AUTO_TEST_CASE(blocking_commands_never_stall_the_main_pipeline) {
  BackendFixture<RedisBackend> f;
  std::optional<std::pair<boost::system::error_code, blpop::reply_type>> popped[3];
  for (int i = 0; i < 3; ++i)
    f.backend.async_exec(blpop{"queue", 0ms}, [&, i](boost::system::error_code ec, auto r) {
      popped[i].emplace(ec, std::move(r));
    });
  // Three BLPOP wait forever on their own connections; the main connection still answers.
  for (int i = 0; i < 50; ++i) BOOST_TEST(f.ok(cmd::ping{}) == "PONG");
  BOOST_TEST(f.backend.blocking_connections_created() == 3u);
  for (auto& p : popped) BOOST_TEST(!p.has_value());
  for (int i = 0; i < 3; ++i) f.ok(rpush_one{"queue", "job" + std::to_string(i)});
  f.run_until([&] { return popped[0] && popped[1] && popped[2]; });
  for (auto& p : popped) {
    BOOST_TEST(!p->first);
    BOOST_TEST(p->second->first == "queue");
  }
  // Their connections went back to the pool: the next blocking command reuses one.
  std::optional<blpop::reply_type> timed_out;
  f.backend.async_exec(blpop{"queue", 100ms},
                       [&](boost::system::error_code ec, auto r) {
                         BOOST_TEST(!ec);
                         timed_out = std::move(r);
                       });
  f.run_until([&] { return timed_out.has_value(); });
  BOOST_TEST(!timed_out->has_value());
  BOOST_TEST(f.backend.blocking_connections_created() == 3u);
}

BOOST_AUTO_TEST_CASE(a_cancelled_blocking_command_does_not_leak_its_reply) {
  BackendFixture<RedisBackend> f;
  boost::asio::cancellation_signal sig;
  std::optional<boost::system::error_code> ec;
  f.backend.async_exec(blpop{"q2", 0ms},
                       boost::asio::bind_cancellation_slot(
                           sig.slot(), [&](boost::system::error_code e, auto) { ec = e; }));
  f.run_until([&] { return f.backend.blocking_connections_created() == 1u; });
  sig.emit(boost::asio::cancellation_type::terminal);
  f.run_until([&] { return ec.has_value(); });
  BOOST_TEST(*ec == boost::asio::error::operation_aborted);
  // The cancelled BLPOP's connection was dropped, not reused: a value pushed now is not
  // swallowed by it, and a new BLPOP gets it.
  f.ok(rpush_one{"q2", "v"});
  std::optional<blpop::reply_type> got;
  f.backend.async_exec(blpop{"q2", 1000ms}, [&](boost::system::error_code e, auto r) {
    BOOST_TEST(!e);
    got = std::move(r);
  });
  f.run_until([&] { return got.has_value(); });
  BOOST_REQUIRE(got->has_value());
  BOOST_TEST((*got)->second == "v");
}

BOOST_AUTO_TEST_CASE(scripts_are_loaded_again_after_the_server_lost_them) {
  // Its own server: the script cache is server-wide, and SCRIPT FLUSH on the shared one made
  // the service suites running beside it meet NOSCRIPT in batches (not re-sent, by design).
  TestRedisServer own;
  RedisConfig cfg;
  cfg.port = own.port();
  BackendFixture<RedisBackend> f(std::in_place, cfg);
  BOOST_TEST(f.ok(incr_script({"n"})) == 1);
  BOOST_TEST(f.ok(script_flush{}) == "OK");
  // A single EVALSHA meets NOSCRIPT: it did not run, so it is sent again with the script.
  BOOST_TEST(f.ok(incr_script({"n"})) == 2);
  BOOST_TEST(f.ok(script_flush{}) == "OK");
  // In a transaction it is not retried (the other commands ran): NOSCRIPT is reported once,
  // and the next call loads the script first.
  auto [ec, r] = f.exec(transaction(incr_script({"n"}), cmd::get{"n"}));
  BOOST_TEST(ec == make_error_code(Error::no_script));
  BOOST_TEST(*std::get<1>(r) == "2");
  auto [n, v] = f.ok(transaction(incr_script({"n"}), cmd::get{"n"}));
  BOOST_TEST(n == 3);
  BOOST_TEST(*v == "3");
}

BOOST_AUTO_TEST_CASE(a_batch_after_a_server_restart_loads_its_scripts_first) {
  // A restarted server has no scripts. A batch is never re-sent after NOSCRIPT (its other
  // commands ran), so the backend must not trust what it knew of the old link's server.
  TestRedisServer own;
  RedisConfig cfg;
  cfg.port = own.port();
  BackendFixture<RedisBackend> f(std::in_place, cfg);
  BOOST_TEST(f.ok(incr_script({"n"})) == 1);
  own.kill();
  own.start();
  // The first command after the restart finds the link lost (a GET is re-sent), then a batch
  // and a transaction with the script run at once, with no NOSCRIPT.
  auto [gec, gone] = f.exec(cmd::get{"n"});
  BOOST_TEST((!gec || gec == make_error_code(Error::connection_lost)));
  auto [ec, r] = f.exec(batch(incr_script({"m"}), cmd::get{"m"}));
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(std::get<0>(r) == 1);
  auto [n, v] = f.ok(transaction(incr_script({"m"}), cmd::get{"m"}));
  BOOST_TEST(n == 2);
  BOOST_TEST(*v == "2");
}

BOOST_AUTO_TEST_CASE(a_lost_link_fails_writes_but_resends_reads) {
  TestRedisServer server;
  boost::asio::io_context ioc;
  RedisConfig cfg;
  cfg.port = server.port();
  RedisBackend db(ioc, cfg);
  auto run = [&](auto pred) {
    auto const deadline = std::chrono::steady_clock::now() + 10s;
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
      if (ioc.stopped()) ioc.restart();
      ioc.run_one_for(20ms);
    }
    BOOST_REQUIRE(pred());
  };
  std::optional<boost::system::error_code> connected;
  db.async_connect([&](boost::system::error_code ec) { connected = ec; });
  run([&] { return connected.has_value(); });
  BOOST_REQUIRE(!*connected);
  // The server sleeps; a SET (not idempotent) and a GET (idempotent) are written meanwhile,
  // then the server dies and comes back.
  db.async_exec(debug_sleep{0.3}, [](boost::system::error_code, std::string) {});
  std::optional<boost::system::error_code> set_ec, get_ec;
  db.async_exec(cmd::set{.key = "k", .value = "v"},
                [&](boost::system::error_code ec, bool) { set_ec = ec; });
  db.async_exec(cmd::get{"k"},
                [&](boost::system::error_code ec, std::optional<std::string>) { get_ec = ec; });
  ioc.poll();
  server.kill();
  server.start();
  run([&] { return set_ec.has_value() && get_ec.has_value(); });
  BOOST_TEST(*set_ec == make_error_code(Error::connection_lost));  // it may have run
  BOOST_TEST(!*get_ec);                                            // re-sent after reconnecting
}

BOOST_AUTO_TEST_CASE(a_backend_from_the_environment_reaches_its_server) {
  auto const port = std::to_string(rediskit::test::shared_redis_port());
  auto cfg = RedisConfig::from_env([&](char const* name) -> char const* {
    if (std::string_view(name) == "REDIS_URL") return "redis://127.0.0.1/3";
    if (std::string_view(name) == "REDIS_PORT") return port.c_str();
    return nullptr;
  });
  boost::asio::io_context ioc;
  RedisBackend db(ioc, cfg);
  std::optional<std::string> pong;
  db.async_exec(cmd::ping{}, [&](boost::system::error_code ec, std::string r) {
    BOOST_TEST(!ec);
    pong = r;
  });
  while (!pong) ioc.run_one_for(20ms);
  BOOST_TEST(*pong == "PONG");
  BOOST_TEST(db.health() == HealthStatus::ok);
  BOOST_TEST(db.metrics().connections_created == 1u);
  BOOST_TEST(db.config().database == 3);
}

BOOST_AUTO_TEST_SUITE_END()
