// redis_fixture: the setup and cleanup of CTest's `redis_server` fixture.
//
//   redis_fixture start <dir>             start a throwaway redis-server that outlives this
//                                         program; write its port to <dir>/port, its pid to
//                                         <dir>/pid (stops a stale one left in <dir> first)
//   redis_fixture stop <dir>              stop it (SIGTERM, SIGKILL after 2 s), remove the files
//   redis_fixture exec <dir> -- cmd ...   run cmd with REDIS_HOST/REDIS_PORT (and
//                                         REDISKIT_TEST_REDIS_PORT) naming that server
//
// Exits non-zero with a message on stderr when anything fails (no redis-server installed
// included), so the tests that need the server are reported as failed, never skipped.
#include "test_redis.hpp"

#include <unistd.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;
using rediskit::test::TestRedisServer;

namespace {

void write_atomically(const fs::path& file, const std::string& text) {
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text << '\n';
    if (!out.flush()) throw std::runtime_error("cannot write " + tmp.string());
  }
  fs::rename(tmp, file);
}

std::string read_first_line(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

// Only ever signal a process that is a redis-server: a stale pid file may name a reused pid.
bool is_redis_server(pid_t pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name.starts_with("redis-server") || name.starts_with("redis-check");
}

int stop(const fs::path& dir) {
  const fs::path pid_file = dir / "pid";
  int rc = 0;
  if (fs::exists(pid_file)) {
    const std::string text = read_first_line(pid_file);
    const pid_t pid = static_cast<pid_t>(std::stol(text.empty() ? "0" : text));
    if (pid > 0 && !rediskit::test::detail::process_gone(pid)) {
      if (is_redis_server(pid)) {
        if (rediskit::test::detail::terminate_process(pid, std::chrono::seconds(2))) {
          std::cout << "redis_fixture: stopped redis-server (pid " << pid << ")\n";
        } else {
          std::cerr << "redis_fixture: redis-server (pid " << pid << ") does not exit\n";
          rc = 1;
        }
      } else {
        std::cout << "redis_fixture: pid " << pid << " is no redis-server; left alone\n";
      }
    } else {
      std::cout << "redis_fixture: redis-server (pid " << pid << ") was not running\n";
    }
  } else {
    std::cout << "redis_fixture: no server recorded in " << dir << "\n";
  }
  std::error_code ec;
  fs::remove(dir / "port", ec);
  fs::remove(pid_file, ec);
  fs::remove_all(dir / "server", ec);
  return rc;
}

int start(const fs::path& dir) {
  fs::create_directories(dir);
  if (fs::exists(dir / "pid")) {
    std::cout << "redis_fixture: stopping the server a previous run left behind\n";
    stop(dir);
  }
  std::error_code ec;
  fs::remove_all(dir / "server", ec);
  TestRedisServer::Options opts;
  opts.dir = dir / "server";
  opts.detached = true;
  TestRedisServer server(std::move(opts));
  write_atomically(dir / "pid", std::to_string(server.pid()));
  write_atomically(dir / "port", std::to_string(server.port()));
  std::cout << "redis_fixture: redis-server (pid " << server.pid()
            << ") listens on 127.0.0.1:" << server.port() << "; log: " << server.log_file().string()
            << "\n";
  return 0;
}

int exec(const fs::path& dir, std::vector<char*> argv) {
  const std::string port = read_first_line(dir / "port");
  if (port.empty()) {
    throw std::runtime_error("no port in " + (dir / "port").string() +
                             ": the fixture redis_server_start did not run or failed");
  }
  ::setenv("REDIS_HOST", "127.0.0.1", 1);
  ::setenv("REDIS_PORT", port.c_str(), 1);
  ::setenv("REDISKIT_TEST_REDIS_PORT", port.c_str(), 1);
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  throw std::runtime_error(std::string("cannot run ") + argv[0] + ": " +
                           rediskit::test::detail::errno_text(errno));
}

int usage() {
  std::cerr << "usage: redis_fixture start <dir> | stop <dir> | exec <dir> -- <command> [args]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string_view verb = argv[1];
  const fs::path dir = argv[2];
  try {
    if (verb == "start" && argc == 3) return start(dir);
    if (verb == "stop" && argc == 3) return stop(dir);
    if (verb == "exec" && argc >= 5 && std::string_view(argv[3]) == "--") {
      return exec(dir, std::vector<char*>(argv + 4, argv + argc));
    }
    return usage();
  } catch (const std::exception& e) {
    std::cerr << "redis_fixture " << verb << ": " << e.what() << "\n";
    return 1;
  }
}
