// rediskit test support: throwaway redis-server processes for integration tests.
//
//   rediskit::test::TestRedisServer srv;               // own server, free loopback port, temp dir
//   connect_to("127.0.0.1", srv.port());
//   srv.kill();  srv.start();                          // crash and restart on the same port
//
//   auto port = rediskit::test::shared_redis_port();   // the server CTest's fixture started
//
// A server is a plain `redis-server` with no persistence (--save "" --appendonly no), bound to
// 127.0.0.1, in its own temporary working directory, with `DEBUG` allowed from loopback so tests
// can simulate a slow server (DEBUG SLEEP). Its output goes to `<dir>/redis.log`; the tail of it
// is quoted when the server does not start. The binary is $REDISKIT_REDIS_SERVER when that is
// set, else `redis-server` from PATH, else /usr/bin/redis-server.
//
// Header-only, POSIX (Linux) only, no Boost: it is also compiled into the `redis_fixture`
// program that CTest runs as the setup/cleanup of the `redis_server` fixture.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace rediskit::test {

namespace detail {

inline std::string errno_text(int err) {
  return std::system_category().message(err);
}

inline bool is_executable(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

/// `name` from PATH, else /usr/bin/<name>; throws saying which Debian package provides it.
inline std::string find_program(const std::string& name, const std::string& package) {
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::string_view rest = path;
    while (true) {
      const auto colon = rest.find(':');
      const std::string_view dir = rest.substr(0, colon);
      if (!dir.empty()) {
        const auto candidate = std::filesystem::path(dir) / name;
        if (is_executable(candidate)) return candidate.string();
      }
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  if (is_executable("/usr/bin/" + name)) return "/usr/bin/" + name;
  throw std::runtime_error(name + " not found: install it with apt-get install " + package +
                           " (searched PATH and /usr/bin)");
}

/// The redis-server binary: $REDISKIT_REDIS_SERVER (exclusively, when set), else PATH, else
/// /usr/bin. Throws std::runtime_error saying how to install it.
inline std::string find_redis_server() {
  if (const char* forced = std::getenv("REDISKIT_REDIS_SERVER"); forced != nullptr && *forced) {
    if (is_executable(forced)) return forced;
    throw std::runtime_error(std::string("redis-server not found: REDISKIT_REDIS_SERVER=") +
                             forced +
                             " is not an executable file (install it with apt-get install "
                             "redis-server, or unset REDISKIT_REDIS_SERVER)");
  }
  try {
    return find_program("redis-server", "redis-server");
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) +
                             "; or point REDISKIT_REDIS_SERVER at the binary");
  }
}

/// A loopback port that was free a moment ago (bind port 0, read it, release it). Another
/// process may take it before redis-server binds it: callers retry with a new one.
inline unsigned short pick_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket(): " + errno_text(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error("cannot find a free loopback port: " + errno_text(err));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// A blocking TCP socket connected to 127.0.0.1:port, with `timeout` on every send and
/// receive; -1 when nothing accepts there.
inline int connect_loopback(unsigned short port, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// The first line of what 127.0.0.1:port answers to an inline `PING` ("+PONG", "-LOADING ...",
/// "-NOAUTH ..."), empty when nothing answers within `timeout`.
inline std::string ping_reply(unsigned short port,
                              std::chrono::milliseconds timeout = std::chrono::milliseconds(500)) {
  const int fd = connect_loopback(port, timeout);
  if (fd < 0) return {};
  std::string reply;
  constexpr std::string_view ping = "PING\r\n";
  if (::send(fd, ping.data(), ping.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(ping.size())) {
    char buf[128];
    while (reply.find("\r\n") == std::string::npos) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      reply.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return reply.substr(0, reply.find("\r\n"));
}

/// True when something on 127.0.0.1:port answers a RESP `PING` like a Redis server: "+PONG",
/// "-NOAUTH" / "-WRONGPASS" refusals of a server that has a password, or "-LOADING" while it
/// reads its dataset (it is up).
inline bool answers_ping(unsigned short port,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(500)) {
  const std::string reply = ping_reply(port, timeout);
  return reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") ||
         reply.starts_with("-WRONGPASS") || reply.starts_with("-LOADING");
}

/// True when process `pid` holds the socket listening on loopback TCP `port`: its inode in
/// /proc/net/tcp (state LISTEN) is one of the process's descriptors. PING alone cannot tell our
/// server from another one that took the port between pick_free_port() and our bind. Where
/// /proc cannot be read, says true (PING is then the only check left).
inline bool listens_on(pid_t pid, unsigned short port) {
  std::ifstream tcp("/proc/net/tcp");
  if (!tcp) return true;
  char port_hex[8];
  std::snprintf(port_hex, sizeof port_hex, ":%04X", static_cast<unsigned>(port));
  std::vector<std::string> inodes;
  std::string line;
  std::getline(tcp, line);  // header
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    if (!(fields >> sl >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
          timeout >> inode)) {
      continue;
    }
    if (state == "0A" && local.ends_with(port_hex)) inodes.push_back("socket:[" + inode + "]");
  }
  if (inodes.empty()) return false;
  std::error_code ec;
  std::filesystem::directory_iterator fds("/proc/" + std::to_string(pid) + "/fd", ec);
  if (ec) return false;
  for (const auto& fd : fds) {
    const auto target = std::filesystem::read_symlink(fd.path(), ec);
    if (ec) continue;
    if (std::find(inodes.begin(), inodes.end(), target.string()) != inodes.end()) return true;
  }
  return false;
}

inline bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close_paren = line.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < line.size() &&
         line[close_paren + 2] == 'Z';
}

/// Polls until `gone()` or the deadline; true when gone.
template <class Gone>
bool wait_until(Gone gone, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!gone()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

/// Sends `sig` to our child and reaps it (SIGKILL after `grace` when it does not exit).
inline void terminate_child(pid_t pid, int sig, std::chrono::milliseconds grace) {
  ::kill(pid, sig);
  const bool exited = wait_until(
      [pid] {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        return r == pid || (r < 0 && errno == ECHILD);
      },
      grace);
  if (!exited) {
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

/// Same for a process that is not our child (the CTest fixture's detached server).
inline bool terminate_process(pid_t pid, std::chrono::milliseconds grace) {
  ::kill(pid, SIGTERM);
  if (wait_until([pid] { return process_gone(pid); }, grace)) return true;
  ::kill(pid, SIGKILL);
  return wait_until([pid] { return process_gone(pid); }, std::chrono::seconds(5));
}

inline std::string read_file_tail(const std::filesystem::path& p, std::size_t max_bytes = 2000) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream all;
  all << in.rdbuf();
  std::string s = all.str();
  if (s.size() > max_bytes) s = "..." + s.substr(s.size() - max_bytes);
  return s;
}

/// fork + exec of argv[0] with stdin from /dev/null and stdout/stderr appended to `log`.
/// A non-detached child gets SIGTERM when the spawning thread dies (no redis-server outlives a
/// crashed test); a detached one runs in its own session and outlives us.
inline pid_t spawn(const std::vector<std::string>& args, const std::filesystem::path& log,
                   bool detached) {
  // Everything the child needs is prepared before fork(): after it only async-signal-safe calls.
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::string log_path = log.string();
  const pid_t parent = ::getpid();

  int report[2];  // the child writes errno here when exec fails; CLOEXEC closes it on success
  if (::pipe2(report, O_CLOEXEC) != 0) throw std::runtime_error("pipe2(): " + errno_text(errno));

  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(report[0]);
    ::close(report[1]);
    throw std::runtime_error("fork(): " + errno_text(err));
  }
  if (pid == 0) {
    auto fail = [&](int err) {
      (void)!::write(report[1], &err, sizeof err);
      ::_exit(127);
    };
    if (detached) {
      if (::setsid() < 0) fail(errno);
    } else {
      if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) fail(errno);
      if (::getppid() != parent) ::_exit(126);  // the parent died already
    }
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0) fail(errno);
    if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0) fail(errno);
    if (in > 2) ::close(in);
    if (out > 2) ::close(out);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(argv[0], argv.data(), environ);
    fail(errno);
  }
  ::close(report[1]);
  int child_errno = 0;
  ssize_t n;
  while ((n = ::read(report[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR) {
  }
  ::close(report[0]);
  if (n > 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    throw std::runtime_error("cannot start " + args.front() + ": " + errno_text(child_errno));
  }
  return pid;
}

}  // namespace detail

/// A throwaway redis-server on a free loopback port, in its own temp dir, no persistence.
/// Not copyable or movable. Not thread-safe: drive it from one thread (the one that created it,
/// since a non-detached server is tied to that thread's life).
class TestRedisServer {
 public:
  // Every member has a default member initializer: g++ 12 -Wextra warns about omitted members
  // without one, even in designated initializers.
  struct Options {
    /// Appended to the command line after the defaults (so they may override them),
    /// e.g. {"--requirepass", "s3cret"}.
    std::vector<std::string> extra_args{};
    /// Working directory of the server (created; kept). Empty: a fresh temporary directory,
    /// removed by the destructor.
    std::filesystem::path dir{};
    /// The server runs in its own session and outlives this object (the destructor leaves it
    /// running; pid() tells whom to stop). Used by the CTest fixture.
    bool detached = false;
    /// How long start() waits for PING to be answered.
    std::chrono::milliseconds start_timeout = std::chrono::seconds(5);
    /// A configuration file, given first on the command line (redis-server <file> --port ...):
    /// a Sentinel needs one it can rewrite (TestRedisSentinelSet writes it into `dir`).
    std::filesystem::path config_file{};
  };

  TestRedisServer() : TestRedisServer(Options{}) {}

  /// Starts the server and waits until it answers PING. Throws std::runtime_error with the
  /// reason (and the tail of the server's log) when it does not.
  explicit TestRedisServer(Options opts) : opts_(std::move(opts)) {
    exe_ = detail::find_redis_server();
    if (opts_.dir.empty()) {
      dir_ = make_temp_dir();
      owns_dir_ = true;
    } else {
      dir_ = opts_.dir;
      std::filesystem::create_directories(dir_);
    }
    try {
      constexpr int attempts = 8;  // another process may grab the port between pick and bind
      for (int i = 1;; ++i) {
        port_ = detail::pick_free_port();
        if (launch(/*may_retry_port=*/i < attempts)) break;
      }
    } catch (...) {
      cleanup_dir();
      throw;
    }
  }

  TestRedisServer(const TestRedisServer&) = delete;
  TestRedisServer& operator=(const TestRedisServer&) = delete;

  /// Stops the server (SIGTERM, SIGKILL after 2 s), reaps it and removes its temp dir.
  /// A detached server is left running.
  ~TestRedisServer() {
    if (!opts_.detached) stop();
    cleanup_dir();
  }

  unsigned short port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path log_file() const { return dir_ / "redis.log"; }

  /// SIGKILL + reap: simulates a crash. The port stays ours for start().
  void kill() {
    if (pid_ <= 0) return;
    if (opts_.detached) {
      ::kill(pid_, SIGKILL);
      detail::wait_until([p = pid_] { return detail::process_gone(p); }, std::chrono::seconds(5));
    } else {
      detail::terminate_child(pid_, SIGKILL, std::chrono::seconds(5));
    }
    pid_ = -1;
  }

  /// Graceful shutdown (SIGTERM, SIGKILL after 2 s) and reap.
  void stop() {
    if (pid_ <= 0) return;
    if (opts_.detached) {
      detail::terminate_process(pid_, std::chrono::seconds(2));
    } else {
      detail::terminate_child(pid_, SIGTERM, std::chrono::seconds(2));
    }
    pid_ = -1;
  }

  /// (Re)starts the server on the same port with the same options and waits until it answers.
  /// No-op when it is running. Throws std::runtime_error when it does not come up.
  void start() {
    if (running()) return;
    launch(/*may_retry_port=*/false);
  }

  bool running() const {
    if (pid_ <= 0) return false;
    if (opts_.detached) return !detail::process_gone(pid_);
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      pid_ = -1;  // exited on its own: reaped now
      return false;
    }
    return true;
  }

 private:
  static std::filesystem::path make_temp_dir() {
    std::error_code ec;
    auto base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string templ = (base / "rediskit-test-redis-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
      throw std::runtime_error("mkdtemp(" + templ + "): " + detail::errno_text(errno));
    }
    return templ;
  }

  void cleanup_dir() {
    if (!owns_dir_) return;
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    owns_dir_ = false;
  }

  std::vector<std::string> command_line() const {
    std::vector<std::string> args{exe_,
                                  "--port",
                                  std::to_string(port_),
                                  "--bind",
                                  "127.0.0.1",
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--daemonize",
                                  "no",
                                  "--dir",
                                  dir_.string(),
                                  "--enable-debug-command",
                                  "local",
                                  // one database per test executable (REDISKIT_TEST_DB)
                                  "--databases",
                                  "64"};
    if (!opts_.config_file.empty()) args.insert(args.begin() + 1, opts_.config_file.string());
    args.insert(args.end(), opts_.extra_args.begin(), opts_.extra_args.end());
    return args;
  }

  // Starts redis-server on port_. Returns false only when it exited because the port was taken
  // and may_retry_port is set; throws on every other failure. Never quotes the command line:
  // extra_args may hold a password.
  bool launch(bool may_retry_port) {
    const auto log = log_file();
    const auto log_start = file_size(log);
    pid_ = detail::spawn(command_line(), log, opts_.detached);

    const auto deadline = std::chrono::steady_clock::now() + opts_.start_timeout;
    while (true) {
      if (!running()) {
        const std::string tail = new_log_text(log, log_start);
        const bool port_taken = tail.find("already in use") != std::string::npos ||
                                tail.find("Could not create server TCP") != std::string::npos;
        if (port_taken && may_retry_port) return false;
        throw std::runtime_error("redis-server (" + exe_ + ") exited before answering PING on " +
                                 "127.0.0.1:" + std::to_string(port_) + "; its log:\n" + tail);
      }
      // Only our process counts: a server that took the port first answers PING too, and ours
      // then exits with "Address already in use" (seen above on the next turn).
      if (detail::answers_ping(port_) && detail::listens_on(pid_, port_)) return true;
      if (std::chrono::steady_clock::now() >= deadline) {
        const std::string tail = new_log_text(log, log_start);
        stop();
        throw std::runtime_error("redis-server (" + exe_ +
                                 ") did not answer PING on 127.0.0.1:" + std::to_string(port_) +
                                 " within " + std::to_string(opts_.start_timeout.count()) +
                                 " ms; its log:\n" + tail);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  static std::uintmax_t file_size(const std::filesystem::path& p) {
    std::error_code ec;
    const auto n = std::filesystem::file_size(p, ec);
    return ec ? 0 : n;
  }

  // The log written since `from`, at most ~2 kB, with secrets from extra_args masked.
  std::string new_log_text(const std::filesystem::path& log, std::uintmax_t from) const {
    std::string all = detail::read_file_tail(log, 1u << 20);
    all.erase(0, std::min<std::size_t>(static_cast<std::size_t>(from), all.size()));
    if (all.size() > 2000) all = "..." + all.substr(all.size() - 2000);
    const auto& args = opts_.extra_args;
    for (std::size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] != "--requirepass" && args[i] != "--masterauth") continue;
      const std::string& secret = args[i + 1];
      if (secret.empty()) continue;
      for (auto pos = all.find(secret); pos != std::string::npos; pos = all.find(secret, pos)) {
        all.replace(pos, secret.size(), "***");
      }
    }
    return all;
  }

  Options opts_;
  std::string exe_;
  std::filesystem::path dir_;
  bool owns_dir_ = false;
  unsigned short port_ = 0;
  mutable pid_t pid_ = -1;
};

/// The port of the redis-server that CTest's `redis_server` fixture started:
/// $REDISKIT_TEST_REDIS_PORT (a number) when set, else the number in the file named by
/// $REDISKIT_TEST_REDIS_PORT_FILE. Throws std::runtime_error saying how to run the tests when
/// neither works. Never guesses 6379: the tests flush what they touch, and must not touch a real
/// server.
inline unsigned short shared_redis_port() {
  auto parse = [](std::string_view text, const std::string& where) -> unsigned short {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
      text.remove_suffix(1);
    }
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value == 0 || value > 65535) {
      throw std::runtime_error(where + " does not hold a port number: '" + std::string(text) + "'");
    }
    return static_cast<unsigned short>(value);
  };
  if (const char* env = std::getenv("REDISKIT_TEST_REDIS_PORT"); env != nullptr && *env) {
    return parse(env, "REDISKIT_TEST_REDIS_PORT");
  }
  if (const char* file = std::getenv("REDISKIT_TEST_REDIS_PORT_FILE"); file != nullptr && *file) {
    std::ifstream in(file);
    std::string text;
    if (!in || !std::getline(in, text)) {
      throw std::runtime_error(std::string("cannot read the Redis port from ") + file +
                               ": the CTest fixture redis_server_start did not start redis-server "
                               "(see its output in the ctest log)");
    }
    return parse(text, file);
  }
  throw std::runtime_error(
      "no Redis server for the integration tests: run them through ctest (e.g. "
      "`ctest --preset gcc-debug`, or `bash scripts/run.sh test`), which starts a throwaway "
      "redis-server, or set REDISKIT_TEST_REDIS_PORT to the port of a throwaway server "
      "(tests write and delete keys on it)");
}

}  // namespace rediskit::test
