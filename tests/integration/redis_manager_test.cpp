// RedisManager (seed 000): named services of clients by role, aggregated health, metrics, the
// Prometheus text, and the typed service bundle. Each test starts its own redis-server.
#include <rediskit/codec/string_codec.hpp>
#include <rediskit/redis_manager.hpp>
#include <rediskit/services/cache_service.hpp>
#include <rediskit/services/online_user_manager.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <boost/test/unit_test.hpp>

#include "support/run_coroutine.hpp"
#include "support/test_redis.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using rediskit::ClientRole;
using rediskit::Error;
using rediskit::HealthStatus;
using rediskit::RedisBackend;
using rediskit::RedisManager;

namespace {

using rediskit::test::run;

rediskit::RedisConfig on_port(unsigned short port) {
  rediskit::RedisConfig cfg;
  cfg.port = port;
  cfg.connect_timeout = 500ms;
  cfg.max_retry_attempts = 1;
  cfg.health_check_interval = 0ms;  // no PING of its own: the tests count requests
  return cfg;
}

std::size_t count(std::string const& text, std::string const& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

using Cache = rediskit::CacheService<RedisBackend, rediskit::StringCodec>;
using Online = rediskit::OnlineUserManager<RedisBackend>;

}  // namespace

BOOST_AUTO_TEST_SUITE(redis_manager)

BOOST_AUTO_TEST_CASE(health_aggregates_ok_degraded_disconnected) {
  using H = HealthStatus;
  BOOST_TEST((rediskit::aggregate_health(std::vector<H>{}) == H::disconnected));
  BOOST_TEST((rediskit::aggregate_health(std::vector<H>{H::ok, H::ok}) == H::ok));
  BOOST_TEST((rediskit::aggregate_health(std::vector<H>{H::ok, H::disconnected}) == H::degraded));
  BOOST_TEST((rediskit::aggregate_health(std::vector<H>{H::degraded}) == H::degraded));
  BOOST_TEST((rediskit::aggregate_health(std::vector<H>{H::disconnected, H::disconnected}) ==
              H::disconnected));
}

BOOST_AUTO_TEST_CASE(service_names_are_checked) {
  asio::io_context ioc;
  RedisManager m(ioc);
  m.create_service("chat-service", rediskit::RedisConfig{});
  auto says = [](auto f, std::string const& what) {
    try {
      f();
      BOOST_ERROR("accepted: " << what);
    } catch (rediskit::Exception const& e) {
      BOOST_TEST(e.code() == Error::invalid_config);
      BOOST_TEST(std::string(e.what()).find(what) != std::string::npos, e.what());
    }
  };
  says([&] { m.create_service("chat-service", rediskit::RedisConfig{}); }, "'chat-service'");
  says([&] { m.create_service("", rediskit::RedisConfig{}); }, "needs a name");
  says([&] { m.service("auth-service"); }, "'auth-service'");
  BOOST_TEST(m.find_service("auth-service") == nullptr);
  BOOST_TEST(m.service_count() == 1u);
  BOOST_TEST((m.health() == HealthStatus::disconnected));  // no client made yet
}

// Every role is a client of its own, named on the server; metrics sum them.
BOOST_AUTO_TEST_CASE(connect_makes_one_named_client_per_role) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    RedisManager m(ioc);
    auto& chat = m.create_service("chat-service", on_port(srv.port()));
    m.create_service("auth-service", on_port(srv.port()));
    co_await m.async_connect(asio::use_awaitable);
    BOOST_TEST((m.health() == HealthStatus::ok));
    BOOST_TEST((chat.health() == HealthStatus::ok));
    BOOST_TEST(m.metrics().connections_created == 10u);
    BOOST_TEST(chat.metrics().connections_created == 5u);
    BOOST_TEST(m.metrics().last_connected_at.has_value());
    BOOST_TEST(&chat.client(ClientRole::pub) == &chat.pub_client());
    rediskit::resp3::Request list;
    list.push("CLIENT", "LIST");
    std::string clients;
    co_await chat.main_client().main_connection().async_exec(list, clients, asio::use_awaitable);
    for (char const* name : {"name=chat-service ", "name=chat-service:pub ", "name=chat-service:sub ",
                             "name=chat-service:stream ", "name=chat-service:cache ",
                             "name=auth-service "})
      BOOST_TEST(clients.find(name) != std::string::npos, name);
    m.close();
    BOOST_TEST((m.health() == HealthStatus::disconnected));
  });
}

// One service unreachable: the manager is DEGRADED, and says so in its metrics.
BOOST_AUTO_TEST_CASE(an_unreachable_service_makes_the_manager_degraded) {
  rediskit::test::TestRedisServer up, down;
  down.stop();
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    RedisManager m(ioc);
    m.create_service("chat-service", on_port(up.port()));
    auto& auth = m.create_service("auth-service", on_port(down.port()));
    auto [ec] = co_await m.async_connect(asio::as_tuple(asio::use_awaitable));
    BOOST_TEST(ec);  // the first error: auth-service's
    BOOST_TEST((auth.health() != HealthStatus::ok));
    BOOST_TEST((m.health() == HealthStatus::degraded));
    BOOST_TEST(auth.metrics().errors >= 5u);
    BOOST_TEST(auth.metrics().last_error_at.has_value());
    auto const text = m.metrics_text();
    BOOST_TEST(text.find("rediskit_up{service=\"chat-service\",client=\"main\"} 1\n") !=
               std::string::npos, text);
    BOOST_TEST(text.find("rediskit_up{service=\"auth-service\",client=\"main\"} 0\n") !=
               std::string::npos, text);
  });
}

// The bundle: services built on their role's client; their stats in metrics_text() while the
// bundle lives.
BOOST_AUTO_TEST_CASE(a_bundle_runs_each_service_on_its_roles_client) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    RedisManager m(ioc);
    auto& chat = m.create_service("chat-service", on_port(srv.port()));
    co_await m.async_connect(asio::use_awaitable);
    {
      auto s = m.services<Cache, Online>("chat-service");
      static_assert(decltype(s)::size() == 2);
      auto const cache_before = chat.cache_client().metrics().requests_sent;
      auto const main_before = chat.main_client().metrics().requests_sent;
      co_await s.get<Cache>().async_set("greeting", std::string("hello"), asio::use_awaitable);
      auto v = co_await s.get<Cache>().async_get<std::string>("greeting", asio::use_awaitable);
      BOOST_TEST(v.value_or("") == "hello");
      BOOST_TEST(chat.cache_client().metrics().requests_sent > cache_before);
      BOOST_TEST(chat.main_client().metrics().requests_sent == main_before);
      rediskit::OnlineUserData data("socket-1");
      co_await s.get<1>().async_set_user_online("42", data, asio::use_awaitable);
      BOOST_TEST(chat.main_client().metrics().requests_sent > main_before);
      auto const text = m.metrics_text();
      BOOST_TEST(text.find("rediskit_cache_hits_total{service=\"chat-service\"} 1\n") !=
                 std::string::npos, text);
      BOOST_TEST(text.find("rediskit_cache_writes_total{service=\"chat-service\"} 1\n") !=
                 std::string::npos, text);
      // Prometheus: one HELP and one TYPE per metric name.
      BOOST_TEST(count(text, "# TYPE rediskit_requests_total counter\n") == 1u);
      BOOST_TEST(count(text, "rediskit_requests_total{") == 5u);  // one per role
    }
    BOOST_TEST(m.metrics_text().find("rediskit_cache_hits_total") == std::string::npos);
    try {
      auto none = m.services<Cache>("auth-service");
      BOOST_ERROR("a bundle on an unknown service");
    } catch (rediskit::Exception const& e) {
      BOOST_TEST(e.code() == Error::invalid_config);
    }
  });
}

// Options go to the services that take them; the others get their defaults.
BOOST_AUTO_TEST_CASE(a_bundle_passes_each_option_to_the_service_that_takes_it) {
  rediskit::test::TestRedisServer srv;
  run([&](asio::io_context& ioc) -> asio::awaitable<void> {
    RedisManager m(ioc);
    auto& chat = m.create_service("chat-service", on_port(srv.port()));
    rediskit::CacheOptions options;
    options.key_prefix = "chat-cache";
    auto s = m.services<Online, Cache>("chat-service", options);
    BOOST_TEST(s.get<Cache>().options().key_prefix == "chat-cache");
    co_await s.get<Cache>().async_set("greeting", std::string("hello"), asio::use_awaitable);
    auto n = co_await chat.main_client().async_exec(rediskit::cmd::exists{"chat-cache:greeting"},
                                                    asio::use_awaitable);
    BOOST_TEST(n == 1);
    m.close();
  });
}

// expose(): any component's described stats() in the text, as gauges, while the handle lives.
namespace {
struct Widget {
  struct Stats {
    std::uint64_t made = 3;
    bool up = true;
    std::string_view name = "not a number";
  };
  Stats stats() const { return {}; }
};
BOOST_DESCRIBE_STRUCT(Widget::Stats, (), (made, up, name))
}  // namespace

BOOST_AUTO_TEST_CASE(expose_adds_a_components_stats_while_its_handle_lives) {
  asio::io_context ioc;
  RedisManager m(ioc);
  Widget w;
  {
    auto h = m.expose("widget", "chat-service", w);
    auto const text = m.metrics_text();
    BOOST_TEST(text.find("# TYPE rediskit_widget_made gauge\n") != std::string::npos, text);
    BOOST_TEST(text.find("rediskit_widget_made{service=\"chat-service\"} 3\n") !=
               std::string::npos, text);
    BOOST_TEST(text.find("rediskit_widget_up{service=\"chat-service\"} 1\n") !=
               std::string::npos, text);
    BOOST_TEST(text.find("rediskit_widget_name") == std::string::npos, text);
  }
  BOOST_TEST(m.metrics_text().find("rediskit_widget") == std::string::npos);
  auto h = m.expose("my-widget", "chat-service", w);  // '-' is no metric name character
  BOOST_TEST(m.metrics_text().find("rediskit_my_widget_made{") != std::string::npos);
  std::optional<RedisManager> gone(std::in_place, ioc);
  auto outlives = gone->expose("widget", "s", w);
  gone.reset();
  outlives.reset();  // after its manager: nothing to do, no crash
}

BOOST_AUTO_TEST_SUITE_END()
