// rediskit test support: a throwaway Redis Cluster on loopback, for the cluster tests.
//
//   rediskit::test::TestRedisCluster cluster;          // 3 masters, 1 replica each
//   cluster.node(0).port();  cluster.size();  cluster.command(0, "CLUSTER INFO");
//
// Each node is a TestRedisServer (own free port, own temporary directory, no persistence) with
// --cluster-enabled yes and its own free bus port (--cluster-port, Redis 7: the default, port +
// 10000, is past 65535 for most ports the kernel hands out). `redis-cli --cluster create ...
// --cluster-replicas R --cluster-yes` assigns the slots and the replicas; the constructor returns
// once every node reports cluster_state:ok, knows every other node and sees every replica as
// one, and every replica is in sync with its master (--repl-diskless-sync-delay 0: at once).
// The destructor stops every node. Nothing else is touched: no fixed port, no node outside
// this object. Start-up takes 6-7 s on 2 cores (redis-cli waits for the cluster to join).
//
// redis-cli is looked up next to the redis-server binary, then in /usr/bin (Debian's
// redis-tools, which redis-server depends on). Header-only, POSIX (Linux) only, no Boost.
#pragma once

#include "support/test_redis.hpp"

#include <chrono>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace rediskit::test {

namespace detail {

/// redis-cli beside redis-server, else /usr/bin/redis-cli. Throws saying how to install it.
inline std::string find_redis_cli() {
  auto const sibling = std::filesystem::path(find_redis_server()).parent_path() / "redis-cli";
  if (is_executable(sibling)) return sibling.string();
  if (is_executable("/usr/bin/redis-cli")) return "/usr/bin/redis-cli";
  throw std::runtime_error("redis-cli not found next to redis-server nor in /usr/bin: install "
                           "it with apt-get install redis-tools");
}

/// Sends `command` (inline form: words separated by spaces) to 127.0.0.1:port and returns the
/// reply's text: a bulk string's payload, or a simple reply's line with its type byte. Empty
/// when the node does not answer within `timeout`.
inline std::string inline_command(unsigned short port, std::string_view command,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(1)) {
  int const fd = connect_loopback(port, timeout);
  if (fd < 0) return {};
  std::string reply;
  std::string const line = std::string(command) + "\r\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size())) {
    char buf[4096];
    for (;;) {
      auto const eol = reply.find("\r\n");
      if (eol != std::string::npos) {
        if (reply[0] != '$') {
          reply.resize(eol);
          break;
        }
        long const n = std::strtol(reply.c_str() + 1, nullptr, 10);
        if (n < 0) {
          reply.clear();
          break;
        }
        if (reply.size() >= eol + 2 + static_cast<std::size_t>(n)) {
          reply = reply.substr(eol + 2, static_cast<std::size_t>(n));
          break;
        }
      }
      ssize_t const got = ::recv(fd, buf, sizeof buf, 0);
      if (got <= 0) {
        reply.clear();
        break;
      }
      reply.append(buf, static_cast<std::size_t>(got));
    }
  }
  ::close(fd);
  return reply;
}

/// One line of CLUSTER NODES: <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch>
/// <link> <slot ranges...>.
struct ClusterNodeLine {
  std::string id{};
  unsigned short port = 0;
  bool master = false;                      // flags hold "master"
  bool replica = false;                     // flags hold "slave"
  std::vector<std::pair<int, int>> slots{};  // inclusive ranges; migrating "[...]" left out
};

inline std::vector<ClusterNodeLine> parse_cluster_nodes(std::string const& text) {
  std::vector<ClusterNodeLine> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string word; words >> word;) w.push_back(word);
    if (w.size() < 8) continue;
    ClusterNodeLine n;
    n.id = w[0];
    auto const colon = w[1].find(':');
    n.port = static_cast<unsigned short>(std::stoi(w[1].substr(colon + 1)));
    n.master = w[2].find("master") != std::string::npos;
    n.replica = w[2].find("slave") != std::string::npos;
    for (std::size_t i = 8; i < w.size(); ++i) {
      if (w[i].front() == '[') continue;
      auto const dash = w[i].find('-');
      int const lo = std::stoi(w[i].substr(0, dash));
      n.slots.emplace_back(lo, dash == std::string::npos ? lo : std::stoi(w[i].substr(dash + 1)));
    }
    out.push_back(std::move(n));
  }
  return out;
}

}  // namespace detail

/// A Redis Cluster of throwaway nodes (see the top of this file). Not copyable or movable.
class TestRedisCluster {
 public:
  struct Options {
    int masters = 3;
    int replicas_per_master = 1;
    /// --cluster-node-timeout: how soon a dead master's replica takes over.
    std::chrono::milliseconds node_timeout = std::chrono::milliseconds(2000);
    /// How long the constructor waits for cluster_state:ok on every node.
    std::chrono::milliseconds ready_timeout = std::chrono::seconds(30);
    /// How long `redis-cli --cluster create` may take before it is killed and the constructor
    /// throws with its log (it takes 6-7 s on 2 cores).
    std::chrono::milliseconds create_timeout = std::chrono::seconds(60);
  };

  TestRedisCluster() : TestRedisCluster(Options{}) {}

  explicit TestRedisCluster(Options opts) : opts_(opts) {
    if (opts_.masters < 3)
      throw std::invalid_argument("TestRedisCluster: redis-cli --cluster create needs at least "
                                  "3 masters, got " + std::to_string(opts_.masters));
    int const total = opts_.masters * (1 + opts_.replicas_per_master);
    for (int i = 0; i < total; ++i) {
      nodes_.push_back(std::make_unique<TestRedisServer>(TestRedisServer::Options{
          .extra_args = {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                         "--cluster-node-timeout", std::to_string(opts_.node_timeout.count()),
                         // The bus port, explicitly: the default (port + 10000) is past 65535
                         // for most of the ports the kernel hands out.
                         "--cluster-port", std::to_string(detail::pick_free_port()),
                         // A replica's first sync at once (the default waits 5 s for others).
                         "--repl-diskless-sync-delay", "0"}}));
    }
    create();
    wait_until_ready();
  }

  TestRedisCluster(TestRedisCluster const&) = delete;
  TestRedisCluster& operator=(TestRedisCluster const&) = delete;

  std::size_t size() const noexcept { return nodes_.size(); }
  TestRedisServer& node(std::size_t i) { return *nodes_.at(i); }
  std::vector<unsigned short> ports() const {
    std::vector<unsigned short> p;
    for (auto const& n : nodes_) p.push_back(n->port());
    return p;
  }
  /// The reply text of an inline command sent to node i (see detail::inline_command).
  std::string command(std::size_t i, std::string_view cmd) const {
    return detail::inline_command(nodes_.at(i)->port(), cmd);
  }

  /// The index of the master that serves `slot`, as node 0 sees it.
  std::size_t owner_of(int slot) const {
    for (auto const& n : detail::parse_cluster_nodes(command(0, "CLUSTER NODES")))
      for (auto [lo, hi] : n.slots)
        if (slot >= lo && slot <= hi) return index_of_port(n.port);
    throw std::runtime_error("TestRedisCluster: no node serves slot " + std::to_string(slot));
  }

  /// Node i's cluster id (CLUSTER MYID).
  std::string id(std::size_t i) const { return command(i, "CLUSTER MYID"); }

  /// The first half of a manual resharding of `slot` from master `from` to master `to`
  /// (CLUSTER SETSLOT IMPORTING / MIGRATING): from then on, `from` answers ASK for keys of
  /// the slot that it no longer holds. Then move keys with migrate_key, and end with
  /// finish_migration.
  void begin_migration(int slot, std::size_t from, std::size_t to) {
    auto const s = std::to_string(slot);
    expect_ok(command(to, "CLUSTER SETSLOT " + s + " IMPORTING " + id(from)), "IMPORTING");
    expect_ok(command(from, "CLUSTER SETSLOT " + s + " MIGRATING " + id(to)), "MIGRATING");
  }
  /// MIGRATE one key (no spaces in it) from master `from` to master `to`.
  void migrate_key(std::string_view key, std::size_t from, std::size_t to) {
    auto const r = command(from, "MIGRATE 127.0.0.1 " + std::to_string(node_port(to)) + " " +
                                     std::string(key) + " 0 5000");
    if (r != "+OK" && r != "+NOKEY")
      throw std::runtime_error("TestRedisCluster: MIGRATE " + std::string(key) + ": " + r);
  }
  /// Gives `slot` to master `to` on every master (CLUSTER SETSLOT NODE), ending a migration.
  void finish_migration(int slot, std::size_t to) {
    auto const cmd = "CLUSTER SETSLOT " + std::to_string(slot) + " NODE " + id(to);
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (is_master(i)) expect_ok(command(i, cmd), "SETSLOT NODE");
  }
  /// True when node i is a master now.
  bool is_master(std::size_t i) const {
    return command(i, "INFO replication").find("role:master") != std::string::npos;
  }

  /// Returns once every node reports cluster_state:ok and knows every node (and every replica
  /// has synced); throws after Options::ready_timeout. A node that was restarted is back in its
  /// links before the others agree the cluster is whole again, which answers CLUSTERDOWN
  /// meanwhile.
  void wait_until_ready() {
    auto const deadline = std::chrono::steady_clock::now() + opts_.ready_timeout;
    std::string const known = "cluster_known_nodes:" + std::to_string(nodes_.size());
    for (;;) {
      bool all = true;
      std::string last;
      for (std::size_t i = 0; i < nodes_.size() && all; ++i) {
        last = command(i, "CLUSTER INFO");
        all = last.find("cluster_state:ok") != std::string::npos &&
              last.find(known) != std::string::npos;
        // ... and every node sees every replica as one (gossip spreads the roles after the
        // slots: until then a replica looks like a master without slots).
        if (all) {
          std::string const nodes = command(i, "CLUSTER NODES");
          std::size_t replicas = 0;
          for (auto const& n : detail::parse_cluster_nodes(nodes)) replicas += n.replica;
          all = replicas == static_cast<std::size_t>(opts_.masters * opts_.replicas_per_master);
          if (!all) last = nodes;
        }
        // ... and every replica has its master's data: a replica that never synced may not
        // take over (its data is "too old"), so a failover test would wait for nothing.
        if (all) {
          std::string const repl = command(i, "INFO replication");
          if (repl.find("role:slave") != std::string::npos)
            all = repl.find("master_link_status:up") != std::string::npos;
          if (!all) last = repl;
        }
      }
      if (all) return;
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("the test cluster did not reach cluster_state:ok with " +
                                 std::to_string(nodes_.size()) + " known nodes in " +
                                 std::to_string(opts_.ready_timeout.count()) +
                                 " ms; last CLUSTER INFO: " + last);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

 private:
  unsigned short node_port(std::size_t i) const { return nodes_.at(i)->port(); }
  std::size_t index_of_port(unsigned short port) const {
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i]->port() == port) return i;
    throw std::runtime_error("TestRedisCluster: no node on port " + std::to_string(port));
  }
  static void expect_ok(std::string const& reply, std::string_view what) {
    if (reply != "+OK")
      throw std::runtime_error("TestRedisCluster: CLUSTER SETSLOT " + std::string(what) +
                               " failed: " + reply);
  }

  void create() {
    std::vector<std::string> args{detail::find_redis_cli(), "--cluster", "create"};
    for (auto const& n : nodes_) args.push_back("127.0.0.1:" + std::to_string(n->port()));
    args.insert(args.end(), {"--cluster-replicas", std::to_string(opts_.replicas_per_master),
                             "--cluster-yes"});
    auto const log = nodes_.front()->dir() / "cluster-create.log";
    pid_t const pid = detail::spawn(args, log, /*detached=*/false);
    int status = 0;
    // redis-cli waits for the cluster to join without a deadline of its own: a node that is
    // not what we started (or never gossips) would hold the test until CTest's timeout.
    bool const exited = detail::wait_until(
        [&] {
          pid_t const r = ::waitpid(pid, &status, WNOHANG);
          return r == pid || (r < 0 && errno != EINTR);
        },
        opts_.create_timeout);
    if (!exited) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      throw std::runtime_error("redis-cli --cluster create did not finish within " +
                               std::to_string(opts_.create_timeout.count()) +
                               " ms (killed): " + detail::read_file_tail(log));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw std::runtime_error("redis-cli --cluster create failed (exit status " +
                               std::to_string(status) + "): " + detail::read_file_tail(log));
  }

  Options opts_;
  std::vector<std::unique_ptr<TestRedisServer>> nodes_;
};

}  // namespace rediskit::test
