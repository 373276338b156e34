// The test harness itself: TestRedisServer (throwaway redis-server processes) and
// shared_redis_port() (the server of CTest's redis_server fixture).
#include "support/test_redis.hpp"

#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

using rediskit::test::TestRedisServer;
using rediskit::test::detail::answers_ping;

// Sends raw RESP inline commands, returns what the server answered within ~1 s.
std::string exchange(unsigned short port, std::string_view request, std::size_t replies) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  BOOST_REQUIRE(fd >= 0);
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    char buf[256];
    std::size_t lines = 0;
    while (lines < replies) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      reply.append(buf, static_cast<std::size_t>(n));
      lines = 0;
      for (std::size_t pos = 0; (pos = reply.find("\r\n", pos)) != std::string::npos; pos += 2) {
        ++lines;
      }
    }
  }
  ::close(fd);
  return reply;
}

// Sets (or unsets, with nullopt) an environment variable for one scope.
class EnvGuard {
 public:
  EnvGuard(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~EnvGuard() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

bool message_contains(const std::runtime_error& e, std::string_view what) {
  return std::string_view(e.what()).find(what) != std::string_view::npos;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(test_redis_server)

BOOST_AUTO_TEST_CASE(starts_on_a_loopback_port_and_answers_ping) {
  TestRedisServer server;
  BOOST_TEST(server.running());
  BOOST_TEST(server.port() != 0);
  BOOST_TEST(answers_ping(server.port()));
  BOOST_TEST(exchange(server.port(), "SET k v\r\nGET k\r\n", 3) == "+OK\r\n$1\r\nv\r\n");
}

BOOST_AUTO_TEST_CASE(kill_then_start_comes_back_on_the_same_port_without_data) {
  TestRedisServer server;
  const unsigned short port = server.port();
  BOOST_TEST(exchange(port, "SET k v\r\n", 1) == "+OK\r\n");

  server.kill();
  BOOST_TEST(!server.running());
  BOOST_TEST(!answers_ping(port));

  server.start();
  BOOST_TEST(server.running());
  BOOST_TEST(server.port() == port);
  BOOST_TEST(answers_ping(port));
  BOOST_TEST(exchange(port, "EXISTS k\r\n", 1) == ":0\r\n");  // no persistence
}

BOOST_AUTO_TEST_CASE(stop_is_graceful_and_start_restarts) {
  TestRedisServer server;
  const unsigned short port = server.port();
  server.stop();
  BOOST_TEST(!server.running());
  BOOST_TEST(!answers_ping(port));
  server.stop();  // idempotent
  server.start();
  server.start();  // no-op while running
  BOOST_TEST(answers_ping(port));
}

BOOST_AUTO_TEST_CASE(extra_args_reach_the_server_and_survive_a_restart) {
  TestRedisServer server({.extra_args = {"--requirepass", "s3cret"}});
  BOOST_TEST(exchange(server.port(), "PING\r\n", 1).starts_with("-NOAUTH"));
  BOOST_TEST(exchange(server.port(), "AUTH s3cret\r\nPING\r\n", 2) == "+OK\r\n+PONG\r\n");
  server.kill();
  server.start();
  BOOST_TEST(exchange(server.port(), "PING\r\n", 1).starts_with("-NOAUTH"));
}

BOOST_AUTO_TEST_CASE(servers_are_independent) {
  TestRedisServer a;
  TestRedisServer b;
  BOOST_TEST(a.port() != b.port());
  BOOST_TEST(exchange(a.port(), "SET k a\r\n", 1) == "+OK\r\n");
  BOOST_TEST(exchange(b.port(), "EXISTS k\r\n", 1) == ":0\r\n");
}

BOOST_AUTO_TEST_CASE(destructor_stops_the_server_and_removes_its_directory) {
  std::filesystem::path dir;
  unsigned short port = 0;
  {
    TestRedisServer server;
    dir = server.dir();
    port = server.port();
    BOOST_TEST(std::filesystem::exists(dir));
  }
  BOOST_TEST(!std::filesystem::exists(dir));
  BOOST_TEST(!answers_ping(port));
}

BOOST_AUTO_TEST_CASE(a_server_that_took_the_port_is_not_taken_for_ours) {
  // Another process's server grabs the port between our stop and start (as between
  // pick_free_port() and bind in a busy test run). It answers PING, but it is not ours: start()
  // must say that ours could not bind, not return as if it were up.
  TestRedisServer server(TestRedisServer::Options{.start_timeout = std::chrono::seconds(3)});
  const unsigned short port = server.port();
  server.stop();
  TestRedisServer other;  // a live server, for its binary and directory only
  const auto log = other.dir() / "intruder.log";
  const pid_t intruder = rediskit::test::detail::spawn(
      {rediskit::test::detail::find_redis_server(), "--port", std::to_string(port), "--bind",
       "127.0.0.1", "--save", "", "--dir", other.dir().string()},
      log, /*detached=*/false);
  BOOST_REQUIRE(rediskit::test::detail::wait_until([&] { return answers_ping(port); },
                                                   std::chrono::seconds(5)));
  BOOST_TEST(rediskit::test::detail::listens_on(intruder, port));
  BOOST_TEST(!rediskit::test::detail::listens_on(other.pid(), port));
  BOOST_TEST(rediskit::test::detail::listens_on(other.pid(), other.port()));
  try {
    server.start();
    BOOST_FAIL("start() took another process's server for its own");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(message_contains(e, "already in use"));
  }
  rediskit::test::detail::terminate_child(intruder, SIGTERM, std::chrono::seconds(2));
}

BOOST_AUTO_TEST_CASE(a_missing_binary_is_a_clear_error) {
  EnvGuard env("REDISKIT_REDIS_SERVER", "/nonexistent/redis-server");
  try {
    TestRedisServer server;
    BOOST_FAIL("TestRedisServer started without a redis-server binary");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(message_contains(e, "redis-server not found"));
    BOOST_TEST(message_contains(e, "apt-get install redis-server"));
  }
}

BOOST_AUTO_TEST_CASE(a_password_never_appears_in_a_start_failure) {
  // An option redis-server rejects makes it exit at once: the error quotes its log, not argv.
  try {
    TestRedisServer server(
        TestRedisServer::Options{{"--requirepass", "hunter2", "--no-such-option", "1"}});
    BOOST_FAIL("redis-server accepted an unknown option");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(message_contains(e, "exited before answering PING"));
    BOOST_TEST(!message_contains(e, "hunter2"));
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(shared_redis_port)

BOOST_AUTO_TEST_CASE(the_ctest_fixture_server_answers) {
  // CTest runs this executable with REDISKIT_TEST_REDIS_PORT_FILE naming the fixture's port.
  const unsigned short port = rediskit::test::shared_redis_port();
  BOOST_TEST(answers_ping(port));
}

BOOST_AUTO_TEST_CASE(the_port_variable_wins_over_the_file) {
  EnvGuard port("REDISKIT_TEST_REDIS_PORT", "12345");
  EnvGuard file("REDISKIT_TEST_REDIS_PORT_FILE", "/nonexistent/port");
  BOOST_TEST(rediskit::test::shared_redis_port() == 12345);
}

BOOST_AUTO_TEST_CASE(the_port_file_is_read) {
  const auto path =
      std::filesystem::temp_directory_path() / ("rediskit-port-test-" + std::to_string(::getpid()));
  std::ofstream(path) << "23456\n";
  EnvGuard port("REDISKIT_TEST_REDIS_PORT", std::nullopt);
  EnvGuard file("REDISKIT_TEST_REDIS_PORT_FILE", path.string());
  BOOST_TEST(rediskit::test::shared_redis_port() == 23456);
  std::filesystem::remove(path);
}

BOOST_AUTO_TEST_CASE(garbage_is_rejected) {
  EnvGuard port("REDISKIT_TEST_REDIS_PORT", "6379x");
  BOOST_CHECK_THROW(rediskit::test::shared_redis_port(), std::runtime_error);
  EnvGuard zero("REDISKIT_TEST_REDIS_PORT", "0");
  BOOST_CHECK_THROW(rediskit::test::shared_redis_port(), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(a_missing_port_file_says_the_fixture_failed) {
  EnvGuard port("REDISKIT_TEST_REDIS_PORT", std::nullopt);
  EnvGuard file("REDISKIT_TEST_REDIS_PORT_FILE", "/nonexistent/port");
  try {
    rediskit::test::shared_redis_port();
    BOOST_FAIL("no exception");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(message_contains(e, "redis_server_start"));
  }
}

BOOST_AUTO_TEST_CASE(without_configuration_it_says_how_to_run_the_tests_and_never_guesses) {
  EnvGuard port("REDISKIT_TEST_REDIS_PORT", std::nullopt);
  EnvGuard file("REDISKIT_TEST_REDIS_PORT_FILE", std::nullopt);
  try {
    const auto p = rediskit::test::shared_redis_port();
    BOOST_FAIL("shared_redis_port() returned " << p << " with no configuration");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(message_contains(e, "ctest"));
    BOOST_TEST(message_contains(e, "scripts/run.sh test"));
  }
}

BOOST_AUTO_TEST_SUITE_END()
