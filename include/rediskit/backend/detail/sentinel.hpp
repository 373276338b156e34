// rediskit: Redis Sentinel for RedisBackend (RedisConfig::sentinels). Internal.
//
// One Sentinel object per RedisBackend, shared by its connections:
//  * locate: every (re)connection of every connection of the backend asks it where the master
//    is (ConnectionConfig::locate). It asks the Sentinels in turn `SENTINEL
//    get-master-addr-by-name <name>` on a short-lived connection each, bounded by
//    sentinel_timeout; the first that names a master wins and moves to the front of the list
//    (as ioredis, redis-py and go-redis do). Concurrent questions share one round.
//  * watch: once a master was found, one connection (per backend, not per connection) stays
//    subscribed to `+switch-master` on a Sentinel, moving to the next Sentinel when it loses
//    it. When the master of our name changes, every connection of the backend relocates
//    (Connection::relocate: what is in flight is answered, then it reconnects, locating again).
//    A round that names another master than the last one does the same, in case the watch
//    missed the message while it was moving.
// The connections check the master's ROLE themselves (ConnectionConfig::require_master).
#pragma once

#include <rediskit/connection.hpp>
#include <rediskit/error.hpp>
#include <rediskit/redis_config.hpp>
#include <rediskit/resp3/node.hpp>
#include <rediskit/resp3/request.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit::detail::sentinel {

using boost::system::error_code;

/// The payload of a +switch-master message: "<name> <old ip> <old port> <new ip> <new port>".
struct SwitchMaster {
  std::string name;
  std::string old_host;
  std::uint16_t old_port = 0;
  std::string new_host;
  std::uint16_t new_port = 0;
};

inline std::optional<SwitchMaster> parse_switch_master(std::string_view payload) {
  std::vector<std::string_view> w;
  while (!payload.empty()) {
    auto const sp = payload.find(' ');
    if (sp != 0) w.push_back(payload.substr(0, sp));
    if (sp == std::string_view::npos) break;
    payload.remove_prefix(sp + 1);
  }
  if (w.size() != 5) return std::nullopt;
  auto port = [](std::string_view t, std::uint16_t& out) {
    unsigned v = 0;
    auto const r = std::from_chars(t.data(), t.data() + t.size(), v);
    if (r.ec != std::errc{} || r.ptr != t.data() + t.size() || v == 0 || v > 65535) return false;
    out = static_cast<std::uint16_t>(v);
    return true;
  };
  SwitchMaster m{std::string(w[0]), std::string(w[1]), 0, std::string(w[3]), 0};
  if (!port(w[2], m.old_port) || !port(w[4], m.new_port)) return std::nullopt;
  return m;
}

class Sentinel : public std::enable_shared_from_this<Sentinel> {
 public:
  Sentinel(boost::asio::any_io_executor ex, RedisConfig const& cfg)
      : ex_(std::move(ex)),
        sentinels_(cfg.sentinels),
        master_name_(cfg.master_name),
        username_(cfg.sentinel_username),
        password_(cfg.sentinel_password),
        timeout_(cfg.sentinel_timeout),
        keep_alive_(cfg.keep_alive),
        tls_(cfg.tls) {}

  /// ConnectionConfig::locate. Completes later, never inside the call.
  void async_locate(LocateHandler h) {
    waiters_.push_back(std::move(h));
    if (waiters_.size() == 1)
      boost::asio::post(ex_, [self = shared_from_this()] { self->start_round(); });
  }

  /// Relocate `c` when the master changes (held weakly: no need to unregister).
  void watch(std::weak_ptr<Connection> c) {
    std::erase_if(watched_, [](auto const& w) { return w.expired(); });
    watched_.push_back(std::move(c));
  }

  /// Stops watching (the +switch-master connection and any question under way). Later
  /// questions still work: a subscriber may outlive its backend's close().
  void close() {
    closed_ = true;
    if (watcher_) watcher_->close();
    if (query_) {
      query_->timer.cancel();
      query_->conn.close();
    }
  }

  std::vector<std::string> const& sentinels() const noexcept { return sentinels_; }
  std::string const& master_host() const noexcept { return master_host_; }
  std::uint16_t master_port() const noexcept { return master_port_; }
  std::uint64_t discoveries() const noexcept { return discoveries_; }
  std::uint64_t failed_discoveries() const noexcept { return failed_discoveries_; }
  std::uint64_t switch_master_events() const noexcept { return switch_master_events_; }
  bool watching() const noexcept { return watcher_ && watcher_->health() == HealthStatus::ok; }

 private:
  // One question to one Sentinel: its own connection, no retry, a deadline.
  struct Query {
    Query(boost::asio::any_io_executor const& ex, ConnectionConfig cfg)
        : conn(ex, std::move(cfg)), timer(ex) {}
    Connection conn;
    boost::asio::steady_timer timer;
    resp3::Request req;
    std::tuple<std::optional<std::vector<std::string>>> resp;
    Diagnostics diag;
  };

  ConnectionConfig sentinel_config(std::string host, std::uint16_t port) const {
    ConnectionConfig c;
    c.host = std::move(host);
    c.port = port;
    c.username = username_;
    c.password = password_;
    c.connect_timeout = timeout_;
    c.tcp_keepalive = keep_alive_;
    c.tls = tls_;  // Sentinels behind TLS too when the data nodes are
    c.health_check_interval = std::chrono::milliseconds(0);
    c.reconnect.max_attempts = 0;
    return c;
  }

  void start_round() {
    round_ = {};
    round_.order = sentinels_;
    round_.generation = generation_;
    ask(0);
  }

  void ask(std::size_t i) {
    if (round_.order.empty()) return finish_round(Error::invalid_config, {}, 0);
    if (i == round_.order.size()) {
      ++failed_discoveries_;
      Error const e = round_.unknown_name  ? Error::master_not_found
                      : round_.auth_failed ? Error::auth_failed
                                           : Error::sentinels_unreachable;
      return finish_round(e, {}, 0);
    }
    std::string host;
    std::uint16_t port = 0;
    if (!config::parse_host_port(round_.order[i], 26379, host, port))
      return finish_round(Error::invalid_config, {}, 0);
    // The question is the Sentinel's (query_); its handlers hold it and the Sentinel weakly,
    // since the handlers are stored in the question's own connection: a strong reference
    // would be a cycle, leaked when the io_context is destroyed before the answer comes.
    auto q = std::make_shared<Query>(ex_, sentinel_config(std::move(host), port));
    query_ = q;
    std::weak_ptr<Query> const weak_q = q;
    q->req.push("SENTINEL", "get-master-addr-by-name", master_name_);
    q->timer.expires_after(timeout_);
    q->timer.async_wait([weak_q](error_code ec) {
      if (auto q = weak_q.lock(); q && !ec) q->conn.close();  // completes: connection_closed
    });
    q->conn.async_exec(q->req, q->resp, q->diag,
                       [weak = weak_from_this(), weak_q, i](error_code ec) {
                         auto const self = weak.lock();
                         auto const q = weak_q.lock();
                         if (!self || !q) return;
                         q->timer.cancel();
                         q->conn.close();
                         // Asking the next Sentinel replaces query_; `q` keeps this one alive
                         // until the handler returns.
                         self->on_answer(i, ec, std::get<0>(q->resp));
                       });
  }

  void on_answer(std::size_t i, error_code ec, std::optional<std::vector<std::string>> const& a) {
    if (!ec && !a) round_.unknown_name = true;
    if (ec == Error::auth_failed) round_.auth_failed = true;
    unsigned port = 0;
    if (!ec && a && a->size() == 2) {
      std::string_view const p = (*a)[1];
      auto const r = std::from_chars(p.data(), p.data() + p.size(), port);
      if (r.ec != std::errc{} || r.ptr != p.data() + p.size() || port > 65535) port = 0;
    }
    if (port == 0 || (*a)[0].empty()) return ask(i + 1);
    // The Sentinel that answered is asked first from now on.
    std::string const who = round_.order[i];
    if (auto it = std::find(sentinels_.begin(), sentinels_.end(), who); it != sentinels_.end())
      std::rotate(sentinels_.begin(), it, it + 1);
    ++discoveries_;
    finish_round({}, (*a)[0], static_cast<std::uint16_t>(port));
  }

  void finish_round(error_code ec, std::string host, std::uint16_t port) {
    query_.reset();  // its handler, which called this, still holds it
    // A +switch-master came while this round was asking: its answer may be the old master.
    if (round_.generation != generation_) return start_round();
    if (!ec) {
      bool const moved = !master_host_.empty() && (host != master_host_ || port != master_port_);
      master_host_ = host;
      master_port_ = port;
      if (moved) relocate_all();
      if (!watcher_ && !closed_) start_watch();
    }
    // A connection that sees the answer may ask again at once (a replica named during a
    // failover): that is a new round.
    auto waiters = std::exchange(waiters_, {});
    for (auto& w : waiters) w(ec, host, port);
  }

  // ---- +switch-master ---------------------------------------------------------------------

  void start_watch() {
    ConnectionConfig c = sentinel_config({}, 0);
    c.health_check_interval = std::chrono::milliseconds(1000);  // a dead Sentinel is left soon
    c.reconnect.initial_delay = std::chrono::milliseconds(100);
    c.reconnect.max_delay = std::chrono::milliseconds(1000);
    c.reconnect.max_attempts = ~0u;  // for as long as the backend lives: each try is the next one
    c.locate = [weak = weak_from_this()](LocateHandler h) {
      auto self = weak.lock();
      if (!self) return;  // the connection was closed with its owner
      std::string host;
      std::uint16_t port = 0;
      auto const& list = self->sentinels_;
      config::parse_host_port(list[self->watch_next_++ % list.size()], 26379, host, port);
      boost::asio::post(self->ex_, [h = std::move(h), host = std::move(host), port] {
        h({}, host, port);
      });
    };
    watch_next_ = 0;  // the Sentinel that just answered
    watcher_ = std::make_unique<Connection>(ex_, std::move(c));
    watcher_->async_subscribe("+switch-master", [](error_code) {});
    receive();
  }

  void receive() {
    watcher_->async_receive([weak = weak_from_this()](error_code ec, resp3::Tree t) {
      auto self = weak.lock();
      if (!self || ec == Error::connection_closed || ec == boost::asio::error::operation_aborted)
        return;
      // [message, +switch-master, payload]
      if (!ec && t.size() == 4 && t[1].value == "message" && t[2].value == "+switch-master")
        if (auto m = parse_switch_master(t[3].value); m && m->name == self->master_name_)
          self->on_switch(*m);
      self->receive();
    });
  }

  void on_switch(SwitchMaster const& m) {
    ++switch_master_events_;
    ++generation_;
    master_host_ = m.new_host;
    master_port_ = m.new_port;
    relocate_all();
  }

  void relocate_all() {
    std::erase_if(watched_, [](auto const& w) { return w.expired(); });
    auto const list = watched_;  // relocating may run callers' code
    for (auto const& w : list)
      if (auto c = w.lock()) c->relocate();
  }

  struct Round {
    std::vector<std::string> order;
    bool unknown_name = false;
    bool auth_failed = false;
    std::uint64_t generation = 0;
  };

  boost::asio::any_io_executor ex_;
  std::vector<std::string> sentinels_;
  std::string master_name_;
  std::string username_;
  std::string password_;
  std::chrono::milliseconds timeout_;
  bool keep_alive_;
  TlsConfig tls_;

  std::vector<LocateHandler> waiters_;
  Round round_;
  std::shared_ptr<Query> query_;  // the question under way (or the last one)
  std::string master_host_;
  std::uint16_t master_port_ = 0;
  std::vector<std::weak_ptr<Connection>> watched_;
  std::unique_ptr<Connection> watcher_;
  std::size_t watch_next_ = 0;
  std::uint64_t generation_ = 0;  // +switch-master messages seen
  bool closed_ = false;
  std::uint64_t discoveries_ = 0;
  std::uint64_t failed_discoveries_ = 0;
  std::uint64_t switch_master_events_ = 0;
};

}  // namespace rediskit::detail::sentinel
