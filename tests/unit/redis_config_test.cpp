// RedisConfig::from_url and from_env: every seed 000 variable, and errors that name the value.
#include <rediskit/redis_config.hpp>

#include <boost/test/unit_test.hpp>

#include <map>
#include <string>
#include <vector>

using rediskit::Error;
using rediskit::RedisConfig;
using namespace std::chrono_literals;

namespace {
auto env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](char const* name) -> char const* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}
std::string url_error(std::string_view url) {
  boost::system::error_code ec;
  std::string what;
  RedisConfig::from_url(url, ec, &what);
  BOOST_TEST(ec == make_error_code(Error::invalid_config));
  return what;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(redis_config)

BOOST_AUTO_TEST_CASE(urls_give_host_port_credentials_and_database) {
  auto c = RedisConfig::from_url("redis://user:p%40ss@cache.local:6380/3");
  BOOST_TEST(c.host == "cache.local");
  BOOST_TEST(c.port == 6380);
  BOOST_TEST(c.username == "user");
  BOOST_TEST(c.password == "p@ss");
  BOOST_TEST(c.database == 3);
  auto d = RedisConfig::from_url("redis://localhost");
  BOOST_TEST(d.host == "localhost");
  BOOST_TEST(d.port == 6379);
  BOOST_TEST(d.database == 0);
  BOOST_TEST(d.password.empty());
  auto e = RedisConfig::from_url("redis://:secret@[::1]:7000/");
  BOOST_TEST(e.host == "::1");
  BOOST_TEST(e.port == 7000);
  BOOST_TEST(e.username.empty());
  BOOST_TEST(e.password == "secret");
  auto f = RedisConfig::from_url("redis://secret@h");  // a lone userinfo is a password
  BOOST_TEST(f.password == "secret");
  BOOST_TEST(f.username.empty());
}

BOOST_AUTO_TEST_CASE(rediss_urls_turn_tls_on_with_verification) {
  auto c = RedisConfig::from_url("rediss://app:s%3Acret@cache.example:6380/1");
  BOOST_TEST(c.tls.enabled);
  BOOST_TEST(!c.tls.dangerously_skip_verification);
  BOOST_TEST(c.host == "cache.example");
  BOOST_TEST(c.port == 6380);
  BOOST_TEST(c.username == "app");
  BOOST_TEST(c.password == "s:cret");
  BOOST_TEST(c.database == 1);
  BOOST_TEST(c.connection_config().tls.enabled);  // every connection of the backend
  BOOST_TEST(!RedisConfig::from_url("redis://cache.example").tls.enabled);
  BOOST_TEST(RedisConfig::from_url("rediss://[::1]").tls.enabled);
}

BOOST_AUTO_TEST_CASE(tls_variables) {
  auto c = RedisConfig::from_env(env({{"REDIS_URL", "rediss://cache:6380"},
                                      {"REDIS_TLS_CA_FILE", "/etc/redis/ca.crt"},
                                      {"REDIS_TLS_CERT_FILE", "/etc/app/client.crt"},
                                      {"REDIS_TLS_KEY_FILE", "/etc/app/client.key"},
                                      {"REDIS_TLS_SERVER_NAME", "redis.internal"}}));
  BOOST_TEST(c.tls.enabled);
  BOOST_TEST(c.tls.ca_file == "/etc/redis/ca.crt");
  BOOST_TEST(c.tls.cert_file == "/etc/app/client.crt");
  BOOST_TEST(c.tls.key_file == "/etc/app/client.key");
  BOOST_TEST(c.tls.server_name == "redis.internal");
  auto const conn = c.connection_config();
  BOOST_TEST(conn.tls.ca_file == "/etc/redis/ca.crt");
  BOOST_TEST(conn.tls.server_name == "redis.internal");
  // REDIS_TLS with the seed's REDIS_HOST form, and a variable overrides the URL's scheme.
  BOOST_TEST(RedisConfig::from_env(env({{"REDIS_HOST", "h"}, {"REDIS_TLS", "true"}})).tls.enabled);
  BOOST_TEST(
      !RedisConfig::from_env(env({{"REDIS_URL", "rediss://h"}, {"REDIS_TLS", "0"}})).tls.enabled);
  // A certificate needs its key; a malformed REDIS_TLS is named.
  boost::system::error_code ec;
  std::string what;
  RedisConfig::from_env(ec, &what, env({{"REDIS_TLS_CERT_FILE", "/c.crt"}}));
  BOOST_TEST(ec == make_error_code(Error::invalid_config));
  BOOST_TEST(what.find("REDIS_TLS_KEY_FILE") != std::string::npos);
  RedisConfig::from_env(ec, &what, env({{"REDIS_TLS", "on please"}}));
  BOOST_TEST(what.find("REDIS_TLS") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(malformed_urls_are_errors_that_say_what_is_wrong) {
  BOOST_TEST(url_error("http://h").find("redis://") != std::string::npos);
  BOOST_TEST(url_error("rediss:/h").find("rediss://") != std::string::npos);
  BOOST_TEST(url_error("redis://h:0").find("port") != std::string::npos);
  BOOST_TEST(url_error("redis://h:99999").find("99999") != std::string::npos);
  BOOST_TEST(url_error("redis://h:12x").find("12x") != std::string::npos);
  BOOST_TEST(url_error("redis://h/abc").find("database") != std::string::npos);
  BOOST_TEST(url_error("redis://").find("host") != std::string::npos);
  BOOST_TEST(url_error("redis://[::1").find("IPv6") != std::string::npos);
  BOOST_TEST(url_error("redis://u:%zz@h").find("percent") != std::string::npos);
  // The password never appears in the message.
  BOOST_TEST(url_error("redis://u:hunter2@h:bad").find("hunter2") == std::string::npos);
  BOOST_CHECK_THROW(RedisConfig::from_url("redis://h:port"), rediskit::Exception);
}

BOOST_AUTO_TEST_CASE(environment_variables_of_seed_000) {
  auto c = RedisConfig::from_env(env({{"REDIS_HOST", "redis"},
                                      {"REDIS_PORT", "6390"},
                                      {"REDIS_PASSWORD", "pw"},
                                      {"REDIS_DB", "2"},
                                      {"REDIS_CONNECTION_TIMEOUT", "1500"},
                                      {"REDIS_MAX_RETRY_ATTEMPTS", "5"},
                                      {"REDIS_KEEP_ALIVE", "false"}}));
  BOOST_TEST(c.host == "redis");
  BOOST_TEST(c.port == 6390);
  BOOST_TEST(c.password == "pw");
  BOOST_TEST(c.database == 2);
  BOOST_TEST(c.connect_timeout.count() == 1500);
  BOOST_TEST(c.max_retry_attempts == 5);
  BOOST_TEST(!c.keep_alive);
  auto const conn = c.connection_config();
  BOOST_TEST(conn.reconnect.max_attempts == 5);
  BOOST_TEST(conn.connect_timeout.count() == 1500);
  BOOST_TEST(!conn.tcp_keepalive);
  auto d = RedisConfig::from_env(env({}));
  BOOST_TEST(d.host == "127.0.0.1");
  BOOST_TEST(d.port == 6379);
  BOOST_TEST(d.command_timeout.count() == 0);
  BOOST_TEST(d.offline_queue);
}

// Seed 002's commandTimeout, enableOfflineQueue and maxLoadingTimeout.
BOOST_AUTO_TEST_CASE(environment_variables_of_seed_002) {
  BOOST_TEST(RedisConfig{}.max_loading_timeout.count() == 5000);
  auto c = RedisConfig::from_env(env({{"REDIS_COMMAND_TIMEOUT", "5000"},
                                      {"REDIS_ENABLE_OFFLINE_QUEUE", "false"},
                                      {"REDIS_MAX_LOADING_TIMEOUT", "7000"}}));
  BOOST_TEST(c.command_timeout.count() == 5000);
  BOOST_TEST(!c.offline_queue);
  BOOST_TEST(c.max_loading_timeout.count() == 7000);
  auto const conn = c.connection_config();
  BOOST_TEST(conn.command_timeout.count() == 5000);
  BOOST_TEST(!conn.offline_queue);
  BOOST_TEST(conn.max_loading_timeout.count() == 7000);
  boost::system::error_code ec;
  std::string what;
  RedisConfig::from_env(ec, &what, env({{"REDIS_COMMAND_TIMEOUT", "-1"}}));
  BOOST_TEST(what.find("REDIS_COMMAND_TIMEOUT") != std::string::npos);
  RedisConfig::from_env(ec, &what, env({{"REDIS_ENABLE_OFFLINE_QUEUE", "sometimes"}}));
  BOOST_TEST(what.find("REDIS_ENABLE_OFFLINE_QUEUE") != std::string::npos);
  RedisConfig::from_env(ec, &what, env({{"REDIS_MAX_LOADING_TIMEOUT", "soon"}}));
  BOOST_TEST(what.find("REDIS_MAX_LOADING_TIMEOUT") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(variables_override_redis_url) {
  auto c = RedisConfig::from_env(env({{"REDIS_URL", "redis://a:1/4"}, {"REDIS_DB", "5"}}));
  BOOST_TEST(c.host == "a");
  BOOST_TEST(c.port == 1);
  BOOST_TEST(c.database == 5);
}

BOOST_AUTO_TEST_CASE(malformed_variables_name_the_variable) {
  boost::system::error_code ec;
  std::string what;
  RedisConfig::from_env(ec, &what, env({{"REDIS_PORT", "abc"}}));
  BOOST_TEST(ec == make_error_code(Error::invalid_config));
  BOOST_TEST(what.find("REDIS_PORT") != std::string::npos);
  RedisConfig::from_env(ec, &what, env({{"REDIS_KEEP_ALIVE", "maybe"}}));
  BOOST_TEST(what.find("REDIS_KEEP_ALIVE") != std::string::npos);
  RedisConfig::from_env(ec, &what, env({{"REDIS_DB", "-1"}}));
  BOOST_TEST(what.find("REDIS_DB") != std::string::npos);
  RedisConfig::from_env(ec, &what, env({{"REDIS_URL", "nope"}}));
  BOOST_TEST(what.find("REDIS_URL") != std::string::npos);
  BOOST_CHECK_THROW(RedisConfig::from_env(env({{"REDIS_CONNECTION_TIMEOUT", "0"}})),
                    rediskit::Exception);
}

BOOST_AUTO_TEST_CASE(sentinel_mode_from_the_environment) {
  auto c = RedisConfig::from_env(env({{"REDIS_SENTINELS", "s1:26379, s2:26380,[::1]:5,s4"},
                                      {"REDIS_SENTINEL_MASTER", "mymaster"},
                                      {"REDIS_SENTINEL_USERNAME", "watcher"},
                                      {"REDIS_SENTINEL_PASSWORD", "spw"},
                                      {"REDIS_PASSWORD", "dpw"}}));
  BOOST_TEST(c.sentinels == (std::vector<std::string>{"s1:26379", "s2:26380", "[::1]:5", "s4"}));
  BOOST_TEST(c.master_name == "mymaster");
  BOOST_TEST(c.sentinel_username == "watcher");
  BOOST_TEST(c.sentinel_password == "spw");
  BOOST_TEST(c.password == "dpw");  // the data nodes' own
}

BOOST_AUTO_TEST_CASE(sentinel_urls_in_lettuce_form) {
  auto c = RedisConfig::from_url("redis-sentinel://:p%23w@s1,s2:26380/3#my%20master");
  BOOST_TEST(c.sentinels == (std::vector<std::string>{"s1", "s2:26380"}));
  BOOST_TEST(c.master_name == "my master");
  BOOST_TEST(c.password == "p#w");
  BOOST_TEST(c.database == 3);
  auto d = RedisConfig::from_env(
      env({{"REDIS_URL", "redis-sentinel://h:1#m"}, {"REDIS_SENTINEL_MASTER", "other"}}));
  BOOST_TEST(d.sentinels == (std::vector<std::string>{"h:1"}));
  BOOST_TEST(d.master_name == "other");  // a variable overrides the URL
  BOOST_TEST(!c.tls.enabled);
  auto t = RedisConfig::from_url("rediss-sentinel://s1#m");
  BOOST_TEST(t.tls.enabled);  // TLS to the Sentinels and the data nodes
  BOOST_TEST(t.sentinels == (std::vector<std::string>{"s1"}));
  BOOST_TEST(t.master_name == "m");
}

BOOST_AUTO_TEST_CASE(half_a_sentinel_configuration_is_an_error_that_says_what_is_missing) {
  BOOST_TEST(url_error("redis-sentinel://h:1").find("master name") != std::string::npos);
  BOOST_TEST(url_error("redis-sentinel://#m").find("Sentinel host") != std::string::npos);
  BOOST_TEST(url_error("redis-sentinel://h:0#m").find("'h:0'") != std::string::npos);
  boost::system::error_code ec;
  std::string what;
  RedisConfig::from_env(ec, &what, env({{"REDIS_SENTINELS", "h:1"}}));
  BOOST_TEST(ec == make_error_code(Error::invalid_config));
  BOOST_TEST(what.find("REDIS_SENTINEL_MASTER") != std::string::npos);
  RedisConfig::from_env(ec, &what, env({{"REDIS_SENTINEL_MASTER", "m"}}));
  BOOST_TEST(ec == make_error_code(Error::invalid_config));
  BOOST_TEST(what.find("no Sentinels") != std::string::npos);
  RedisConfig::from_env(ec, &what,
                        env({{"REDIS_SENTINELS", "h:1,,h:2"}, {"REDIS_SENTINEL_MASTER", "m"}}));
  BOOST_TEST(what.find("REDIS_SENTINELS") != std::string::npos);
  RedisConfig::from_env(ec, &what,
                        env({{"REDIS_SENTINELS", "h:99999"}, {"REDIS_SENTINEL_MASTER", "m"}}));
  BOOST_TEST(what.find("h:99999") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
