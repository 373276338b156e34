// A TLS configuration in a program without <rediskit/tls.hpp>: a clear error at once, before
// any network traffic, and no retry. (unit_tests must never include <rediskit/tls.hpp> or the
// umbrella header, which installs TLS support for the whole executable.)
#include <rediskit/connection.hpp>
#include <rediskit/redis_config.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <optional>
#include <string>

using namespace std::chrono_literals;
using rediskit::Error;

BOOST_AUTO_TEST_SUITE(tls_unavailable)

BOOST_AUTO_TEST_CASE(rediss_without_tls_support_fails_at_once) {
  BOOST_REQUIRE_MESSAGE(!rediskit::detail::tls_session_factory(),
                        "a unit test includes <rediskit/tls.hpp>: move it to tests/integration");
  boost::asio::io_context ioc;
  auto cfg = rediskit::RedisConfig::from_url("rediss://cache.invalid:6380").connection_config();
  std::vector<std::string> lines;
  cfg.log = [&](rediskit::LogLevel, std::string_view l) { lines.emplace_back(l); };
  rediskit::Connection conn(ioc, cfg);
  rediskit::resp3::Request req;
  req.push("PING");
  std::string pong;
  std::optional<boost::system::error_code> done;
  conn.async_exec(req, pong, [&](boost::system::error_code ec) { done = ec; });
  BOOST_TEST(!done.has_value());  // never inside the initiating call
  ioc.run_for(2s);
  BOOST_REQUIRE(done.has_value());
  BOOST_TEST(*done == Error::tls_unavailable, done->message());
  BOOST_TEST(done->message().find("rediskit/tls.hpp") != std::string::npos);
  BOOST_TEST(conn.metrics().errors == 1u);  // no retry (and cache.invalid was never resolved)
  BOOST_TEST(conn.health() == rediskit::HealthStatus::disconnected);
  BOOST_TEST(!lines.empty());
}

BOOST_AUTO_TEST_SUITE_END()
