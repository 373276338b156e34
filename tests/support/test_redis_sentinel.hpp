// rediskit test support: a throwaway Sentinel set on loopback, for the Sentinel tests.
//
//   rediskit::test::TestRedisSentinelSet set;           // 1 master, 1 replica, 3 Sentinels
//   RedisConfig{.sentinels = set.sentinel_addresses(), .master_name = set.master_name()};
//   set.master().kill();  set.wait_for_master(set.replica().port(), 10s);
//
// Every process is a TestRedisServer (own free loopback port, no persistence): the master, a
// replica of it (--replicaof; diskless sync without delay), and three Sentinels (redis-server
// <dir>/sentinel.conf --sentinel, a config file of their own that they may rewrite) that
// monitor the master with quorum 2, down-after-milliseconds 1000 and failover-timeout 2000, so
// that a killed master is replaced in about 2-3 s. The constructor returns once the replica is
// in sync and every Sentinel sees the replica and the two other Sentinels (about 3 s); the
// destructor stops every process and removes the temporary directory. Nothing else is touched.
// Header-only, POSIX (Linux) only, no Boost.
#pragma once

#include "support/test_redis.hpp"
#include "support/test_redis_cluster.hpp"  // detail::inline_command

#include <chrono>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace rediskit::test {

class TestRedisSentinelSet {
 public:
  struct Options {
    std::string master_name = "mymaster";
    std::chrono::milliseconds down_after = std::chrono::milliseconds(1000);
    std::chrono::milliseconds failover_timeout = std::chrono::milliseconds(2000);
    /// How long the constructor waits for the replica's sync and the Sentinels' discovery.
    std::chrono::milliseconds ready_timeout = std::chrono::seconds(20);
  };

  TestRedisSentinelSet() : TestRedisSentinelSet(Options{}) {}

  explicit TestRedisSentinelSet(Options opts) : opts_(std::move(opts)), root_(make_root()) {
    try {
      start();
    } catch (...) {
      stop_all();
      remove_root();
      throw;
    }
  }

  TestRedisSentinelSet(TestRedisSentinelSet const&) = delete;
  TestRedisSentinelSet& operator=(TestRedisSentinelSet const&) = delete;

  ~TestRedisSentinelSet() {
    stop_all();
    remove_root();
  }

  std::string const& master_name() const noexcept { return opts_.master_name; }
  TestRedisServer& master() { return *master_; }
  TestRedisServer& replica() { return *replica_; }
  TestRedisServer& sentinel(std::size_t i) { return *sentinels_.at(i); }
  std::size_t sentinel_count() const noexcept { return sentinels_.size(); }
  /// "127.0.0.1:port" of each Sentinel, for RedisConfig::sentinels.
  std::vector<std::string> sentinel_addresses() const {
    std::vector<std::string> out;
    for (auto const& s : sentinels_) out.push_back("127.0.0.1:" + std::to_string(s->port()));
    return out;
  }
  /// Every port of the set (master, replica, Sentinels).
  std::vector<unsigned short> ports() const {
    std::vector<unsigned short> out{master_->port(), replica_->port()};
    for (auto const& s : sentinels_) out.push_back(s->port());
    return out;
  }

  /// The reply text of an inline command sent to 127.0.0.1:port (see detail::inline_command).
  static std::string command(unsigned short port, std::string_view cmd) {
    return detail::inline_command(port, cmd);
  }

  /// The master's port as Sentinel i reports it (INFO sentinel), 0 when it does not answer.
  unsigned short master_port_seen_by(std::size_t i) const {
    std::string const info = command(sentinels_.at(i)->port(), "INFO sentinel");
    std::string const key = "name=" + opts_.master_name + ",";
    auto const at = info.find(key);
    if (at == std::string::npos) return 0;
    auto const addr = info.find("address=", at);
    auto const colon = info.find(':', addr);
    if (addr == std::string::npos || colon == std::string::npos) return 0;
    return static_cast<unsigned short>(std::strtoul(info.c_str() + colon + 1, nullptr, 10));
  }

  /// Waits until every live Sentinel names `port` as the master and that node says it is one
  /// (ROLE). False after `timeout`.
  bool wait_for_master(unsigned short port, std::chrono::milliseconds timeout) const {
    return detail::wait_until(
        [&] {
          for (std::size_t i = 0; i < sentinels_.size(); ++i)
            if (sentinels_[i]->running() && master_port_seen_by(i) != port) return false;
          return command(port, "INFO replication").find("role:master") != std::string::npos;
        },
        timeout);
  }

 private:
  static std::filesystem::path make_root() {
    std::error_code ec;
    auto base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string templ = (base / "rediskit-test-sentinel-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr)
      throw std::runtime_error("mkdtemp(" + templ + "): " + detail::errno_text(errno));
    return templ;
  }

  void start() {
    master_ = std::make_unique<TestRedisServer>(TestRedisServer::Options{
        .extra_args = {"--repl-diskless-sync-delay", "0"}, .dir = root_ / "master"});
    replica_ = std::make_unique<TestRedisServer>(TestRedisServer::Options{
        .extra_args = {"--replicaof", "127.0.0.1", std::to_string(master_->port()),
                       "--repl-diskless-sync-delay", "0"},
        .dir = root_ / "replica"});
    auto const deadline = std::chrono::steady_clock::now() + opts_.ready_timeout;
    auto left = [&] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
    };
    // In sync first: a Sentinel learns the replicas from the master's INFO, which it asks for at
    // once and then every 10 s.
    if (!detail::wait_until(
            [&] {
              return command(replica_->port(), "INFO replication")
                         .find("master_link_status:up") != std::string::npos;
            },
            left()))
      throw std::runtime_error("the test replica did not sync with its master within " +
                               std::to_string(opts_.ready_timeout.count()) + " ms");
    for (int i = 0; i < 3; ++i) {
      auto const dir = root_ / ("sentinel" + std::to_string(i));
      std::filesystem::create_directories(dir);
      {
        std::ofstream conf(dir / "sentinel.conf");
        auto const& n = opts_.master_name;
        conf << "sentinel monitor " << n << " 127.0.0.1 " << master_->port() << " 2\n"
             << "sentinel down-after-milliseconds " << n << ' ' << opts_.down_after.count()
             << "\n"
             << "sentinel failover-timeout " << n << ' ' << opts_.failover_timeout.count()
             << "\n"
             << "sentinel parallel-syncs " << n << " 1\n";
      }
      sentinels_.push_back(std::make_unique<TestRedisServer>(TestRedisServer::Options{
          .extra_args = {"--sentinel"}, .dir = dir, .config_file = dir / "sentinel.conf"}));
    }
    // Every Sentinel sees the replica and the other two (hello messages every 2 s).
    std::string last;
    bool const ready = detail::wait_until(
        [&] {
          for (auto const& s : sentinels_) {
            last = command(s->port(), "INFO sentinel");
            if (last.find("status=ok") == std::string::npos ||
                last.find("slaves=1,sentinels=3") == std::string::npos)
              return false;
          }
          return true;
        },
        left());
    if (!ready)
      throw std::runtime_error("the test Sentinels did not see the replica and each other within " +
                               std::to_string(opts_.ready_timeout.count()) +
                               " ms; last INFO sentinel: " + last);
  }

  void stop_all() {
    for (auto& s : sentinels_) s.reset();
    replica_.reset();
    master_.reset();
  }

  void remove_root() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  Options opts_;
  std::filesystem::path root_;
  std::unique_ptr<TestRedisServer> master_;
  std::unique_ptr<TestRedisServer> replica_;
  std::vector<std::unique_ptr<TestRedisServer>> sentinels_;
};

}  // namespace rediskit::test
