// rediskit::ClusterBackend: typed commands over a Redis Cluster, one pipelined Connection per
// master. A Backend: every service runs on it unchanged.
//
//   rediskit::ClusterBackend cluster(ioc, {.nodes = {"10.0.0.5:7000", "10.0.0.6:7000"}});
//   auto v = co_await cluster.async_exec(rediskit::cmd::get{"chat:user:42"});
//
// Routing. The slot map comes from CLUSTER SLOTS, asked of the seed nodes at first use (the
// operations that arrive meanwhile wait for it), and again every refresh_interval (5 s) and
// after a MOVED or a lost node. A command runs on the master of its keys' slot
// (cluster/route.hpp finds the keys); a command without keys runs on any master; with
// read_from_replicas, a read runs on one of the master's replicas.
//
// Redirections (a redirected command did not run, so resending it is always safe):
//  - MOVED: the slot's new owner is recorded at once, the command is sent there, and the whole
//    map is read again in the background;
//  - ASK (a slot in migration): ASKING plus the command go to the named node; the map is left
//    as it is;
//  - TRYAGAIN, CLUSTERDOWN, LOADING: sent again after a pause that grows with each attempt (up
//    to a second), for at most ClusterConfig::failover_timeout (30 s);
//  - NOSCRIPT (a node that lost its scripts): sent again with SCRIPT LOAD ahead of it;
//  - past ClusterConfig::max_redirects rounds of MOVED and ASK: Error::too_many_redirects, with
//    the last redirection's text in Diagnostics::server_message.
// A lost link is handled as on RedisBackend: a request of idempotent commands is re-sent by its
// Connection; any other fails with Error::connection_lost (it may have run). A request whose
// master could not be reached at all (refused, timed out, reconnection given up: it was never
// written) goes where the next slot map says, after a pause: when a master dies, its replica
// takes over and the callers carry on once the cluster has promoted it (they wait up to
// ClusterConfig::failover_timeout, 30 s: the cluster's default cluster-node-timeout is 15 s).
//
// Batches. A batch (or a range of commands) whose keys all live on one master is one request
// on that master's pipeline, with no copy. One that spans masters is split: one request per
// master, all in flight at once, and the replies are put back in the batch's order. A
// transaction or a script must keep its keys in one slot (give them a hash tag, {...}): one
// that does not fails with Error::cross_slot before anything is sent, and Diagnostics::detail
// names two keys in different slots. So does a single multi-key command (MGET, DEL, SINTER)
// whose keys span slots; in a plain batch, each command may be in its own slot.
//
// Commands that act on the whole keyspace run on every master: FLUSHDB, DBSIZE (summed), KEYS
// (concatenated), and SCAN, whose cursor encodes the master it walks (its lowest slot, in the
// top 14 bits), so a scan walks every master in turn and ends with cursor 0 (a resharding
// during the walk may skip or repeat keys, as SCAN on one node may not). In a transaction they
// fail with Error::cross_slot. INFO, PING, TIME and other keyless commands go to any master.
//
// Keys. Services lay their keys out for a cluster on this backend (key_layout =
// KeyLayout::clustered, key_space.hpp): the keys one script or transaction touches share a
// hash tag.
//
// Pub/sub (ClusterSubscriber, from make_subscriber()): channels and patterns through one node.
// PUBLISH goes to any master, and the cluster bus carries the message to every node's
// subscribers; its reply counts only the subscribers of the node that took it (so it may be 0
// while others listen). Sharded pub/sub (SSUBSCRIBE, cmd::spublish) keeps a message inside the
// shard of its channel's slot: the subscriber subscribes on that master, follows the slot when
// it moves, and SPUBLISH's count is exact.
//
// Cancellation: an operation sent to one master is cancelled as on RedisBackend; a batch split
// over several masters is not cancellable.
//
// Thread safety: as RedisBackend, use it from its executor.
#pragma once

#include <rediskit/backend/detail/exec_overloads.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/cluster/route.hpp>
#include <rediskit/cluster/slot_map.hpp>
#include <rediskit/backend/subscriber.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/key_space.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

/// Where and how to reach a cluster.
struct ClusterConfig {
  /// Some of the cluster's nodes, "host:port": the slot map is read from the first that
  /// answers.
  std::vector<std::string> nodes{"127.0.0.1:7000"};
  /// Credentials, timeouts, client name and retries of every node's connections (host, port
  /// database and sentinels are ignored: a cluster has database 0 only, and finds its masters).
  RedisConfig node{};
  /// Redirection rounds (MOVED, ASK) one operation may go through.
  int max_redirects = 16;
  /// How long an operation keeps waiting for its slot to be served when its master cannot be
  /// reached or the cluster answers TRYAGAIN, CLUSTERDOWN or LOADING: a failover takes the
  /// cluster's cluster-node-timeout (15 s by default) plus an election. Past it, the operation
  /// fails with the last error (Error::reconnect_gave_up, Error::cluster_down, ...).
  std::chrono::milliseconds failover_timeout{30000};
  /// First pause before a TRYAGAIN / CLUSTERDOWN / LOADING retry; it doubles each time, up to
  /// one second.
  std::chrono::milliseconds retry_delay{10};
  /// Reads (idempotent commands: GET, HGETALL, ZRANGE, ...) go to a replica of their slot's
  /// master, in turn (the master when it has none), over connections in READONLY mode. A
  /// replica lags its master: a read may not see a write that was just acknowledged. Writes,
  /// transactions, scripts and SCAN always go to the master.
  bool read_from_replicas = false;
  /// The slot map is read again this often (0: only after MOVED and lost nodes), so that new
  /// replicas, masters and slot moves are seen without waiting for a redirection. A replica
  /// appears in CLUSTER SLOTS once it has replicated something.
  std::chrono::milliseconds refresh_interval{5000};
};

/// What the cluster client saw (seed 000's metrics, for a cluster).
struct ClusterStats {
  std::uint64_t moved = 0;         ///< MOVED redirections followed
  std::uint64_t ask = 0;           ///< ASK redirections followed
  std::uint64_t try_again = 0;     ///< TRYAGAIN / CLUSTERDOWN / LOADING retries
  std::uint64_t no_script = 0;     ///< NOSCRIPT retries
  std::uint64_t refreshes = 0;     ///< slot maps read
  std::uint64_t split_batches = 0; ///< batches sent to more than one master
  std::uint64_t unreached = 0;     ///< requests sent again because their node was unreachable
  std::uint64_t replica_reads = 0; ///< requests sent to a replica (read_from_replicas)
};

namespace detail::cluster {

using boost::system::error_code;
using rediskit::cluster::NodeAddress;
using rediskit::cluster::Route;
using rediskit::cluster::SlotMap;
using redis::Pool;

/// Byte offsets of each command in a request payload (one past the end last): the payload is
/// rediskit's own (arrays of bulk strings), so this never fails on it.
inline std::vector<std::size_t> command_offsets(std::string_view p) {
  std::vector<std::size_t> out;
  std::size_t i = 0;
  auto number = [&](std::size_t& at) {
    std::size_t n = 0;
    ++at;  // the type byte
    while (at < p.size() && p[at] != '\r') n = n * 10 + std::size_t(p[at++] - '0');
    at += 2;
    return n;
  };
  while (i < p.size()) {
    out.push_back(i);
    std::size_t const args = number(i);
    for (std::size_t a = 0; a < args; ++a) i += number(i) + 2;
  }
  out.push_back(p.size());
  return out;
}

/// How a command that acts on the whole keyspace runs on a cluster.
enum class Fan : std::uint8_t {
  none,    ///< where its keys are (or any master: no key)
  sum,     ///< on every master, the integer replies summed (DBSIZE)
  concat,  ///< on every master, the array replies concatenated (KEYS)
  all_ok,  ///< on every master, the first error or else the first reply (FLUSHDB)
  scan,    ///< on the master its cursor names (SCAN), the cursor of the reply re-encoded
};
template <class C>
inline constexpr Fan fan_of = Fan::none;
template <>
inline constexpr Fan fan_of<cmd::dbsize> = Fan::sum;
template <>
inline constexpr Fan fan_of<cmd::keys> = Fan::concat;
template <>
inline constexpr Fan fan_of<cmd::flushdb> = Fan::all_ok;
template <>
inline constexpr Fan fan_of<cmd::scan> = Fan::scan;

constexpr bool on_every_master(Fan f) noexcept {
  return f == Fan::sum || f == Fan::concat || f == Fan::all_ok;
}

/// A cluster-wide SCAN cursor: the lowest slot of the master being walked (top 14 bits) and
/// that master's own cursor (the other 50). Cursor 0 starts at the owner of slot 0.
inline constexpr int scan_cursor_bits = 50;
inline constexpr std::uint64_t scan_cursor_mask = (std::uint64_t(1) << scan_cursor_bits) - 1;
constexpr std::uint16_t scan_slot(std::uint64_t cursor) noexcept {
  return std::uint16_t(cursor >> scan_cursor_bits);
}
constexpr std::uint64_t scan_node_cursor(std::uint64_t cursor) noexcept {
  return cursor & scan_cursor_mask;
}
constexpr std::uint64_t scan_cursor(std::uint16_t slot, std::uint64_t node_cursor) noexcept {
  return (std::uint64_t(slot) << scan_cursor_bits) | (node_cursor & scan_cursor_mask);
}

/// The kind of rejection that makes a command worth sending again.
enum class Retry : std::uint8_t { none, moved, ask, try_again, no_script, unreached };

inline Retry retry_kind(std::string_view error) noexcept {
  if (error.starts_with("MOVED ")) return Retry::moved;
  if (error.starts_with("ASK ")) return Retry::ask;
  if (error.starts_with("TRYAGAIN") || error.starts_with("CLUSTERDOWN") ||
      error.starts_with("LOADING"))
    return Retry::try_again;
  if (error.starts_with("NOSCRIPT")) return Retry::no_script;
  return Retry::none;
}

/// Errors of a request that never reached its node: sending it elsewhere is safe.
inline bool never_sent(error_code ec) noexcept {
  return ec == Error::not_connected || ec == Error::reconnect_gave_up ||
         ec == Error::connect_timeout || ec == Error::resolve_failed;
}

/// One command (or a whole transaction) of an operation: where it goes.
struct Unit {
  std::uint16_t slot = Route::any;
  Fan fan = Fan::none;
  bool read_only = false;  // an idempotent command: a replica may serve it
  std::string bytes{};  // what to send instead of the command's own bytes (SCAN's node cursor)
  std::vector<std::pair<std::string_view, std::string_view>> scripts{};  // (sha1, source)
};

class Core;

/// One request of an operation, on one node.
struct Send {
  Core* op = nullptr;
  std::shared_ptr<Pool> pool;
  resp3::Request own;
  resp3::Request const* req = nullptr;
  /// Per reply of req: the job's reply index, or -1 for SCRIPT LOAD / ASKING. Empty: the
  /// identity (req is the job's own request).
  std::vector<std::int32_t> replies;
  std::vector<std::string> loads;  // SHA1s this request loads
  bool buffered = false;           // replies kept as trees, replayed in order at the end
  bool swallow = false;            // a redirected transaction: ignore the rest of its replies
  error_code prefix_error{};
  std::shared_ptr<Connection> blocking;
  std::vector<std::pair<std::size_t, resp3::Tree>> fan_trees;  // (unit, this master's reply)

  struct Response {
    static constexpr std::size_t expected_replies = resp3::any_count;
    Send* s;
    void on_node(std::size_t i, resp3::NodeView const& n, error_code& ec);
  } response{this};
};

class OpRef {
 public:
  OpRef() = default;
  explicit OpRef(Core* p) noexcept;
  OpRef(OpRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  OpRef& operator=(OpRef&& o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~OpRef();
  Core* operator->() const noexcept { return p_; }
  Core* get() const noexcept { return p_; }

 private:
  Core* p_ = nullptr;
};

/// Completes one send, on the executor of the user's handler.
struct SendDone {
  OpRef op;
  Send* send;
  boost::asio::any_io_executor executor;
  boost::asio::cancellation_slot slot;
  using executor_type = boost::asio::any_io_executor;
  executor_type get_executor() const noexcept { return executor; }
  using cancellation_slot_type = boost::asio::cancellation_slot;
  cancellation_slot_type get_cancellation_slot() const noexcept { return slot; }
  void operator()(error_code ec);
};

/// The nodes and the slot map, shared with operations in flight.
struct State {
  State(boost::asio::any_io_executor ex, ClusterConfig cfg)
      : executor(std::move(ex)), config(std::move(cfg)) {
    if (config.node.client_name.empty()) config.node.client_name = "rediskit";
    config.node.database = 0;
    config.node.sentinels.clear();  // a cluster finds its masters itself
  }

  /// The pool of the node at `a`, made at first use. Replicas' pools (`replica`: READONLY
  /// connections) are apart from the masters', since a replica may become a master.
  std::shared_ptr<Pool> const& pool_for(NodeAddress const& a, bool replica = false) {
    auto& list = replica ? replica_pools : pools;
    for (auto& [addr, p] : list)
      if (addr == a) return p;
    RedisConfig c = config.node;
    c.host = a.host;
    c.port = a.port;
    list.emplace_back(a, std::make_shared<Pool>(executor, std::move(c), replica));
    return list.back().second;
  }

  /// The master of `slot` (any master for Route::any), nullptr when the map has none.
  std::shared_ptr<Pool> const* pool_of_slot(std::uint16_t slot) {
    if (by_index.empty()) return nullptr;
    if (slot == Route::any) return &by_index[next_any++ % by_index.size()];
    auto const i = map.master_of(slot);
    if (i < 0 || std::size_t(i) >= by_index.size()) return nullptr;
    return &by_index[std::size_t(i)];
  }

  /// Where a read of `slot` goes with read_from_replicas: one of its master's replicas in turn,
  /// else the master (nullptr when the map has neither).
  std::shared_ptr<Pool> const* read_pool_of_slot(std::uint16_t slot) {
    auto const i = map.master_of(slot);
    if (i >= 0 && std::size_t(i) < replicas_by_index.size() &&
        !replicas_by_index[std::size_t(i)].empty()) {
      auto const& rs = replicas_by_index[std::size_t(i)];
      ++stats.replica_reads;
      return &rs[next_replica++ % rs.size()];
    }
    return pool_of_slot(slot);
  }

  void adopt(SlotMap m) {
    map = std::move(m);
    by_index.clear();
    replicas_by_index.clear();
    for (std::size_t i = 0; i < map.masters().size(); ++i) {
      by_index.push_back(pool_for(map.masters()[i]));
      auto& rs = replicas_by_index.emplace_back();
      if (config.read_from_replicas)
        for (auto const& r : map.replicas_of(std::int16_t(i))) rs.push_back(pool_for(r, true));
    }
    have_map = true;
  }

  void moved(std::uint16_t slot, NodeAddress const& to) {
    map.assign(slot, to);
    while (by_index.size() < map.masters().size())
      by_index.push_back(pool_for(map.masters()[by_index.size()]));
  }

  boost::asio::any_io_executor executor;
  ClusterConfig config;
  std::vector<std::pair<NodeAddress, std::shared_ptr<Pool>>> pools;  // every node met
  SlotMap map;
  std::vector<std::shared_ptr<Pool>> by_index;  // map.masters()[i]'s pool
  std::vector<std::pair<NodeAddress, std::shared_ptr<Pool>>> replica_pools;
  std::vector<std::vector<std::shared_ptr<Pool>>> replicas_by_index;  // with read_from_replicas
  std::size_t next_replica = 0;
  bool have_map = false;
  bool refreshing = false;
  bool refresh_again = false;
  std::vector<OpRef> waiting;  // operations that arrived before the first map
  error_code last_refresh_error{};
  std::string last_refresh_text;
  ClusterStats stats;
  std::size_t next_any = 0;
  bool closed = false;
  std::optional<boost::asio::steady_timer> refresh_timer;  // the periodic reading
  bool refresh_timer_armed = false;
};

void refresh(std::shared_ptr<State> const& st);
void arm_periodic_refresh(std::shared_ptr<State> const& st);

/// Everything an operation does but for its typed reply: routing, splitting, redirections,
/// retries and putting replies back in order. Not a template, so it is compiled once, whatever
/// the command types (the typed part, Operation<X> in ClusterBackend, is a few virtual calls).
class Core {
 public:
  Core(std::shared_ptr<State> const& s, Diagnostics* d, bool is_atomic, bool is_blocking)
      : state(s), fallback(s->executor), diag(d), atomic(is_atomic), blocking(is_blocking) {}
  virtual ~Core() = default;

  // The typed part: the job's response, its completion, the user's handler.
  virtual void feed(std::size_t index, resp3::NodeView const& n, error_code& ec) = 0;
  virtual void complete(error_code ec) = 0;  // takes the reply and calls the handler, here
  virtual boost::asio::any_io_executor handler_executor(
      boost::asio::any_io_executor const& fallback) const = 0;
  virtual boost::asio::cancellation_slot handler_slot() const = 0;

  void begin(OpRef self) {
    if (req->commands() == 0) return finish_posted({});
    if (!refusal.empty()) {
      if (diag) diag->detail = refusal;
      return finish_posted(make_error_code(Error::cross_slot));
    }
    auto const& st = state;
    if (st->closed) return finish_posted(make_error_code(Error::connection_closed));
    if (!st->have_map) {
      st->waiting.push_back(std::move(self));
      return refresh(st);
    }
    start();
  }

  void start() {
    auto const& st = state;
    if (st->closed) return finish_posted(make_error_code(Error::connection_closed));
    if (units.size() == 1 && units[0].fan == Fan::none) {  // one command: straight to its node
      auto const* p = pool_of(*st, units[0]);
      if (!p) return finish_posted(make_error_code(Error::cluster_down));
      std::size_t const only = 0;
      return send(*p, false, {&only, 1}, false, true);
    }
    UnitList all(units.size());
    for (std::size_t u = 0; u < all.size(); ++u) all[u] = u;
    dispatch(*st, all, {});
  }

  void fail(error_code ec) { finish_posted(ec); }

  void on_node(Send& s, std::size_t i, resp3::NodeView const& n, error_code& ec) {
    std::int32_t const index = s.replies.empty() ? std::int32_t(i) : s.replies[i];
    if (index < 0) {  // SCRIPT LOAD, ASKING
      if (n.depth == 0 && resp3::is_error(n.type) && !s.prefix_error) {
        s.prefix_error = make_error_code(server_error_code(n.value));
        prefix_text.assign(n.value);
      }
      return;
    }
    if (s.swallow) return;
    std::size_t const unit = atomic ? 0 : std::size_t(index);
    Unit const& u = units[unit];
    if (on_every_master(u.fan)) {  // one reply per master, merged at the end
      if (n.depth == 0) s.fan_trees.emplace_back(unit, resp3::Tree{});
      s.fan_trees.back().second.push_back(resp3::Node{n.type, n.size, n.depth, std::string(n.value)});
      return;
    }
    if (n.depth == 0 && resp3::is_error(n.type)) {
      auto const kind = retry_kind(n.value);
      // NOSCRIPT: only a unit that is one script command did not run at all.
      bool const retry =
          kind != Retry::none && (kind != Retry::no_script || (!atomic && !u.scripts.empty()));
      if (retry) {
        redo.push_back({unit, kind, std::string(n.value), s.pool});
        if (atomic) s.swallow = true;  // EXEC will answer EXECABORT: nothing of it ran
        return;
      }
    }
    if (s.buffered) {
      auto& t = trees[unit];
      if (n.depth == 0) t.clear();
      t.push_back(resp3::Node{n.type, n.size, n.depth, std::string(n.value)});
      return;
    }
    feed(std::size_t(index), n, ec);
  }

  void on_done(Send& s, error_code ec) {
    --outstanding;
    auto const& st = state;
    bool const live = !st->closed;
    if (ec && live && never_sent(ec) && unreached_units(s)) {
      wait_error = ec;
      ec = {};  // nothing of it ran: its units go where the next map says, after a pause
      s.fan_trees.clear();
    } else if (ec && !first_error) {
      first_error = ec;
      // The node went away with the request: perhaps a failover, read the map again.
      if (live && (ec == Error::connection_lost || ec == Error::health_check_failed))
        refresh(st);
    }
    if (!ec && s.prefix_error && !first_error) {
      first_error = s.prefix_error;
      if (diag && diag->server_message.empty()) diag->server_message = prefix_text;
    }
    if (!s.prefix_error)
      for (auto& sha : s.loads) s.pool->loaded_scripts.insert(std::move(sha));
    if (s.blocking && ec != boost::asio::error::operation_aborted &&
        s.blocking->health() == HealthStatus::ok)
      s.pool->give_back(std::move(s.blocking));
    for (auto& f : s.fan_trees) fan_parts.push_back(std::move(f));
    s.fan_trees.clear();
    if (outstanding > 0) return;
    if (st->closed)
      return finish_now(st.get(),
                        first_error ? first_error : make_error_code(Error::connection_closed));
    if (redo.empty() || (first_error && !is_server_error(first_error)))
      return finish_now(st.get(), first_error);
    ++rounds;
    bool const waiting = std::all_of(redo.begin(), redo.end(), [](Redo const& r) {
      return r.kind == Retry::try_again || r.kind == Retry::unreached;
    });
    if (waiting) {  // for a failover: bounded by time, not by rounds
      auto const now = std::chrono::steady_clock::now();
      if (!waiting_since) waiting_since = now;
      if (now - *waiting_since >= st->config.failover_timeout) {
        Redo const& last = redo.back();
        if (last.kind == Retry::unreached) return finish_now(st.get(), wait_error);
        if (diag) diag->server_message = last.text;
        return finish_now(st.get(), make_error_code(server_error_code(last.text)));
      }
    } else if (++redirects > st->config.max_redirects) {
      if (diag) diag->server_message = redo.back().text;
      return finish_now(st.get(), make_error_code(Error::too_many_redirects));
    }
    redirect(*st);
  }

 protected:
  struct Redo {
    std::size_t unit;
    Retry kind;
    std::string text;
    std::shared_ptr<Pool> pool;
  };
  using Asks = std::vector<std::pair<std::size_t, std::shared_ptr<Pool>>>;
  using UnitList = boost::container::small_vector<std::size_t, 4>;

  // The units of a send that never reached its node go to redo (true), unless one of them
  // runs on every master (those are not re-sent piecewise: false).
  bool unreached_units(Send const& s) {
    std::vector<std::size_t> us;
    if (atomic) {
      us.push_back(0);
    } else if (s.replies.empty()) {
      for (std::size_t u = 0; u < units.size(); ++u) us.push_back(u);
    } else {
      for (auto r : s.replies)
        if (r >= 0) us.push_back(std::size_t(r));
    }
    for (auto u : us)
      if (on_every_master(units[u].fan)) return false;
    for (auto u : us) redo.push_back({u, Retry::unreached, {}, s.pool});
    return true;
  }

  // Where a unit goes: its slot's master, or a replica for a read with read_from_replicas.
  std::shared_ptr<Pool> const* pool_of(State& st, Unit const& u) {
    if (u.read_only && st.config.read_from_replicas && rounds == 0)
      return st.read_pool_of_slot(u.slot);
    return st.pool_of_slot(u.slot);
  }

  // Sends `units` where their slots live (asks: the units to send after ASKING to the node an
  // ASK named, with that node's pool).
  void dispatch(State& st, std::span<std::size_t const> to_send, Asks asks) {
    struct Group {
      std::shared_ptr<Pool> pool;
      bool asking;
      UnitList units;
    };
    boost::container::small_vector<Group, 2> groups;
    auto add = [&](std::shared_ptr<Pool> const& p, bool asking, std::size_t u) {
      for (auto& g : groups)
        if (g.pool == p && g.asking == asking) return g.units.push_back(u);
      groups.push_back({p, asking, {u}});
    };
    bool spread = false;  // a reply to merge or rewrite: buffer every reply
    for (auto u : to_send) {
      if (on_every_master(units[u].fan)) {
        spread = true;
        auto const owners = st.map.owners();
        if (owners.empty()) return finish_posted(make_error_code(Error::cluster_down));
        for (auto i : owners) add(st.by_index[std::size_t(i)], false, u);
        continue;
      }
      spread = spread || units[u].fan == Fan::scan;
      auto const* p = pool_of(st, units[u]);
      if (!p) return finish_posted(make_error_code(Error::cluster_down));
      add(*p, false, u);
    }
    for (auto& [u, p] : asks) add(p, true, u);
    bool const buffer = groups.size() > 1 || buffering || spread;
    if (groups.size() > 1) ++st.stats.split_batches;
    buffering = buffer;
    for (auto& g : groups) send(g.pool, g.asking, g.units, buffer, groups.size() == 1);
  }

  void send(std::shared_ptr<Pool> const& pool, bool asking, std::span<std::size_t const> us,
            bool buffer, bool cancellable) {
    auto& s = first_send ? more_sends.emplace_back() : first_send.emplace();
    s.op = this;
    s.pool = pool;
    s.buffered = buffer;
    // Scripts the node may lack: SCRIPT LOAD ahead of them.
    std::vector<std::string_view> loads;
    bool rewritten = false;
    for (auto u : us) {
      rewritten = rewritten || !units[u].bytes.empty();
      for (auto const& [sha, src] : units[u].scripts) {
        if (pool->loaded_scripts.contains(sha)) continue;
        if (std::find(s.loads.begin(), s.loads.end(), sha) != s.loads.end()) continue;
        s.loads.emplace_back(sha);
        loads.push_back(src);
      }
    }
    bool const whole = us.size() == units.size();  // in order: dispatch keeps it
    if (!asking && loads.empty() && whole && !rewritten) {
      s.req = req;
    } else {
      s.own.config = req->config;
      for (auto src : loads) {
        s.own.push("SCRIPT", "LOAD", src);
        s.replies.push_back(-1);
      }
      if (atomic) {
        if (asking) {
          s.own.push("ASKING");  // before MULTI: it holds for the whole transaction
          s.replies.push_back(-1);
        }
        s.own.append_raw(req->payload(), req->commands(), req->expected_replies());
        for (std::size_t r = 0; r < req->expected_replies(); ++r)
          s.replies.push_back(std::int32_t(r));
      } else {
        if (offsets.empty()) offsets = command_offsets(req->payload());
        for (auto u : us) {
          if (asking) {
            s.own.push("ASKING");
            s.replies.push_back(-1);
          }
          if (!units[u].bytes.empty())
            s.own.append_raw(units[u].bytes, 1, 1);
          else
            s.own.append_raw(
                req->payload().substr(offsets[u], offsets[u + 1] - offsets[u]), 1, 1);
          s.replies.push_back(std::int32_t(u));
        }
      }
      s.req = &s.own;
    }
    auto ex = handler_executor(pool->executor);
    boost::asio::cancellation_slot slot;
    if (cancellable) slot = handler_slot();
    Connection* conn = &pool->main;
    if (blocking) {
      s.blocking = pool->take_blocking();
      conn = s.blocking.get();
    }
    SendDone done{OpRef(this), &s, ex, slot};
    ++outstanding;
    if (diag && !s.buffered)
      conn->async_exec(*s.req, s.response, *diag, std::move(done));
    else
      conn->async_exec(*s.req, s.response, std::move(done));
  }

  // After a round whose every send is done: sends again what was redirected or refused for
  // now.
  void redirect(State& st) {
    first_send.reset();
    more_sends.clear();
    UnitList again;
    Asks asks;
    bool pause = false, refresh_map = false;
    for (auto& r : redo) {
      switch (r.kind) {
        case Retry::moved:
        case Retry::ask:
          if (auto red = rediskit::cluster::parse_redirect(r.text)) {
            if (r.kind == Retry::moved) {
              ++st.stats.moved;
              st.moved(red->slot, red->to);
              refresh_map = true;
              again.push_back(r.unit);
            } else {
              ++st.stats.ask;
              asks.emplace_back(r.unit, st.pool_for(red->to));
            }
          } else {
            again.push_back(r.unit);
            refresh_map = true;
          }
          break;
        case Retry::try_again:
          ++st.stats.try_again;
          pause = true;
          again.push_back(r.unit);
          break;
        case Retry::unreached:
          ++st.stats.unreached;
          pause = refresh_map = true;
          again.push_back(r.unit);
          break;
        case Retry::no_script:
          ++st.stats.no_script;
          for (auto const& [sha, src] : units[r.unit].scripts)
            if (auto it = r.pool->loaded_scripts.find(sha); it != r.pool->loaded_scripts.end())
              r.pool->loaded_scripts.erase(it);
          again.push_back(r.unit);
          break;
        case Retry::none: break;
      }
    }
    redo.clear();
    std::sort(again.begin(), again.end());
    again.erase(std::unique(again.begin(), again.end()), again.end());
    if (refresh_map) refresh(state);
    if (!pause) return dispatch(st, again, std::move(asks));
    auto const delay = std::min<std::chrono::milliseconds>(
        st.config.retry_delay * (1 << std::min(rounds - 1, 7)), std::chrono::seconds(1));
    timer.emplace(st.executor, delay);
    timer->async_wait(
        [ref = OpRef(this), again = std::move(again), asks = std::move(asks)](error_code) mutable {
          auto* op = ref.get();
          auto const& st = op->state;
          if (st->closed)
            return op->finish_now(st.get(), make_error_code(Error::connection_closed));
          op->dispatch(*st, again, std::move(asks));
        });
  }

  static bool is_server_error(error_code ec) noexcept {
    return ec.category() == error_category() && ec.value() >= 100 && ec.value() < 300;
  }

  // Completes the user's handler here: called from a send's completion, on its executor.
  void finish_now(State const* st, error_code ec) {
    if (buffering) replay(st, ec);
    complete(ec);
  }

  // Completes it through the handler's executor: never inside the initiating call.
  void finish_posted(error_code ec) {
    boost::asio::post(handler_executor(fallback),
                      [ref = OpRef(this), ec] { ref->finish_now(nullptr, ec); });
  }

  // Feeds the replies kept as trees to the typed response, in the batch's order: the replies
  // of every master merged where a command ran on each, SCAN's cursor made cluster-wide.
  void replay(State const* st, error_code& ec) {
    merge_fan_parts();
    for (auto& [unit, tree] : trees) {
      if (units[unit].fan == Fan::scan) rewrite_scan_cursor(st, unit, tree, ec);
      error_code e;
      for (auto const& node : tree) {
        feed(unit, resp3::NodeView{node.type, node.size, node.depth, node.value}, e);
        if (e) {
          if (resp3::is_error(node.type) && diag && diag->server_message.empty())
            diag->server_message = node.value;
          break;
        }
      }
      if (e && !ec) ec = e;
    }
    trees.clear();
  }

  void merge_fan_parts() {
    std::stable_sort(fan_parts.begin(), fan_parts.end(),
                     [](auto const& a, auto const& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < fan_parts.size();) {
      std::size_t const unit = fan_parts[i].first;
      std::size_t j = i;
      while (j < fan_parts.size() && fan_parts[j].first == unit) ++j;
      auto& out = trees[unit];
      out.clear();
      resp3::Tree const* error = nullptr;
      for (std::size_t k = i; k < j; ++k)
        if (!fan_parts[k].second.empty() && resp3::is_error(fan_parts[k].second[0].type))
          error = error ? error : &fan_parts[k].second;
      if (error) {
        out = *error;
      } else if (units[unit].fan == Fan::sum) {
        long long total = 0;
        for (std::size_t k = i; k < j; ++k) {
          long long n = 0;
          auto const& v = fan_parts[k].second.at(0).value;
          std::from_chars(v.data(), v.data() + v.size(), n);
          total += n;
        }
        out.push_back(resp3::Node{resp3::Type::number, 0, 0, std::to_string(total)});
      } else if (units[unit].fan == Fan::concat) {
        out.push_back(resp3::Node{resp3::Type::array, 0, 0, {}});
        for (std::size_t k = i; k < j; ++k) {
          auto& t = fan_parts[k].second;
          if (t.empty()) continue;
          out[0].size += t[0].size;
          for (std::size_t n = 1; n < t.size(); ++n) out.push_back(std::move(t[n]));
        }
      } else {
        out = std::move(fan_parts[i].second);
      }
      i = j;
    }
    fan_parts.clear();
  }

  // [cursor, [keys...]] of one master: the cursor that continues there, or that starts the
  // next master (in the order of their lowest slots), or 0 after the last.
  void rewrite_scan_cursor(State const* st, std::size_t unit, resp3::Tree& t, error_code& ec) {
    if (t.size() < 2 || t[0].type != resp3::Type::array || resp3::is_error(t[0].type)) return;
    std::uint64_t node_cursor = 0;
    auto const& v = t[1].value;
    std::from_chars(v.data(), v.data() + v.size(), node_cursor);
    std::uint64_t cursor = 0;
    if (node_cursor > scan_cursor_mask) {
      if (!ec) ec = make_error_code(Error::unexpected_reply_type);
      if (diag) diag->detail = "SCAN: a node's cursor does not fit in 50 bits: " + v;
    } else if (node_cursor != 0) {
      cursor = scan_cursor(units[unit].slot, node_cursor);
    } else if (st) {
      if (auto next = st->map.next_master_start(units[unit].slot))
        cursor = scan_cursor(*next, 0);
    }
    t[1].value = std::to_string(cursor);
  }

  friend class OpRef;
  friend struct SendDone;
  friend struct Send;
  friend struct Refresh;

 public:
  // Held strongly: an operation keeps the backend's state alive until it completes (the
  // backend's close() and destructor complete every operation).
  std::shared_ptr<State> state;
  boost::asio::any_io_executor fallback;
  Diagnostics* diag;
  bool atomic;
  bool blocking;
  resp3::Request const* req = nullptr;  // the typed part's request
  // One for a command (no allocation), one per command of a batch.
  boost::container::small_vector<Unit, 1> units;
  std::string refusal;  // why it is refused before anything is sent (Error::cross_slot)

 protected:
  std::vector<std::size_t> offsets;
  std::optional<Send> first_send;  // most operations send one request: no allocation
  std::list<Send> more_sends;      // (a std::deque allocates as it is constructed)
  std::size_t outstanding = 0;
  bool buffering = false;
  std::map<std::size_t, resp3::Tree> trees;
  std::vector<std::pair<std::size_t, resp3::Tree>> fan_parts;
  std::vector<Redo> redo;
  int rounds = 0;     // every round (the pause grows with it)
  int redirects = 0;  // rounds of MOVED and ASK
  std::optional<std::chrono::steady_clock::time_point> waiting_since;  // first wait
  error_code wait_error{};  // why the last unreached request never reached its node
  error_code first_error{};
  std::string prefix_text;
  std::optional<boost::asio::steady_timer> timer;
  std::size_t refs = 0;
};

inline OpRef::OpRef(Core* p) noexcept : p_(p) { ++p_->refs; }
inline OpRef::~OpRef() {
  if (p_ && --p_->refs == 0) delete p_;
}

inline void Send::Response::on_node(std::size_t i, resp3::NodeView const& n, error_code& ec) {
  s->op->on_node(*s, i, n, ec);
}

inline void SendDone::operator()(error_code ec) { op->on_done(*send, ec); }

/// One reading of the slot map: CLUSTER SLOTS asked of each candidate in turn (the masters
/// known, then the seeds) until one answers with a map.
struct Refresh : std::enable_shared_from_this<Refresh> {
  std::weak_ptr<State> state;
  std::vector<NodeAddress> candidates;
  resp3::Request req;
  resp3::Tree tree;
  std::size_t k = 0;

  void next() {
    auto st = state.lock();
    if (!st) return;
    if (st->closed || k >= candidates.size()) return done(st);
    tree.clear();
    // The link first: without the offline queue (ClusterConfig::node.offline_queue = false, as
    // under a FallbackBackend) a request on a link not up yet would fail at once.
    st->pool_for(candidates[k])->main.async_connect([self = shared_from_this()](error_code ec) {
      auto st = self->state.lock();
      if (!st) return;
      if (ec || st->closed) return self->on_reply(ec ? ec : make_error_code(Error::connection_closed));
      st->pool_for(self->candidates[self->k])
          ->main.async_exec(self->req, self->tree, [self](error_code e) { self->on_reply(e); });
    });
  }

  void on_reply(error_code ec) {
    auto st = state.lock();
    if (!st) return;
    if (!ec) {
      std::string why;
      auto m = SlotMap::parse(tree, candidates[k].host, ec, &why);
      if (!ec && m.masters().empty()) {
        ec = make_error_code(Error::cluster_down);
        why = "CLUSTER SLOTS: the node serves no slot (is the cluster created?)";
      }
      if (!ec) {
        st->adopt(std::move(m));
        ++st->stats.refreshes;
        return done(st);
      }
      st->last_refresh_text = std::move(why);
    }
    st->last_refresh_error = ec;
    ++k;
    next();
  }

  static void done(std::shared_ptr<State> const& st) {
    st->refreshing = false;
    arm_periodic_refresh(st);
    auto waiting = std::exchange(st->waiting, {});
    for (auto& op : waiting) {
      if (st->have_map && !st->closed)
        op->start();
      else
        op->fail(st->closed ? make_error_code(Error::connection_closed)
                 : st->last_refresh_error ? st->last_refresh_error
                                          : make_error_code(Error::cluster_down));
    }
    if (std::exchange(st->refresh_again, false)) refresh(st);
  }
};

/// Reads the map again after ClusterConfig::refresh_interval (once a map was read).
inline void arm_periodic_refresh(std::shared_ptr<State> const& st) {
  if (st->closed || !st->have_map || st->refresh_timer_armed ||
      st->config.refresh_interval <= std::chrono::milliseconds(0))
    return;
  if (!st->refresh_timer) st->refresh_timer.emplace(st->executor);
  st->refresh_timer_armed = true;
  st->refresh_timer->expires_after(st->config.refresh_interval);
  st->refresh_timer->async_wait([w = std::weak_ptr<State>(st)](error_code ec) {
    auto st = w.lock();
    if (!st) return;
    st->refresh_timer_armed = false;
    if (!ec) refresh(st);
  });
}

/// Reads the slot map again (at most one reading at a time; one asked meanwhile follows it),
/// then starts the operations that waited for it.
inline void refresh(std::shared_ptr<State> const& st) {
  if (!st || st->closed) return;
  if (st->refreshing) {
    st->refresh_again = true;
    return;
  }
  st->refreshing = true;
  auto r = std::make_shared<Refresh>();
  r->state = st;
  // Masters whose link is up first: one that went away (a failover) would make the reading
  // wait for its reconnection attempts before the next is asked.
  r->candidates = st->map.masters();
  std::stable_partition(r->candidates.begin(), r->candidates.end(), [&](NodeAddress const& a) {
    return st->pool_for(a)->main.health() == HealthStatus::ok;
  });
  for (auto const& seed : st->config.nodes)
    if (auto a = rediskit::cluster::parse_address(seed)) r->candidates.push_back(std::move(*a));
  r->req.push("CLUSTER", "SLOTS");
  r->next();
}

}  // namespace detail::cluster

namespace detail::cluster {

/// ClusterSubscriber's state, shared with its connections' receive loops (held weakly there).
class SubscriberCore : public std::enable_shared_from_this<SubscriberCore> {
 public:
  using Done = AnyHandler<void(error_code)>;
  using Receiver = AnyHandler<void(error_code, Message)>;

  explicit SubscriberCore(std::shared_ptr<State> s)
      : state(std::move(s)), executor(state->executor), timer(executor) {
    max_queued =
        std::max<std::size_t>(state->config.node.connection_config().max_queued_pushes, 1);
  }

  /// The subscriber of classic pub/sub: one node, whose messages come from every node over
  /// the cluster bus (a master of the map, else the first seed node). Its connection's pushes
  /// are read here, into the one queue.
  RedisSubscriber& classic_subscriber() {
    if (!classic) {
      NodeAddress at;
      if (!state->map.masters().empty())
        at = state->map.masters().front();
      else if (!state->config.nodes.empty())
        at = rediskit::cluster::parse_address(state->config.nodes.front()).value_or(at);
      classic.emplace(executor, config_for(at).connection_config());
      if (closed) classic->close();  // its operations fail with Error::connection_closed
      pump(&classic->connection());
    }
    return *classic;
  }

  // ---- shard channels --------------------------------------------------------------------

  void ssubscribe(std::vector<std::string> names, Done done) {
    if (closed) return finish(std::move(done), Error::connection_closed);
    if (names.empty()) return finish(std::move(done), Error::invalid_request);
    // One SSUBSCRIBE per slot: every channel of one must be in one slot.
    std::map<std::uint16_t, std::vector<std::string>> by_slot;
    for (auto& n : names) {
      auto [it, added] = shards.try_emplace(n);
      if (!added && (it->second.in_flight || it->second.at)) continue;  // there, or on its way
      it->second.in_flight = true;
      by_slot[rediskit::cluster::key_slot(n)].push_back(std::move(n));
    }
    auto join = std::make_shared<Join>(std::move(done), by_slot.size(), executor);
    if (by_slot.empty()) return join->finish_now();
    for (auto& [slot, group] : by_slot) route(slot, std::move(group), 0, join, std::nullopt);
    arm_timer();
  }

  void sunsubscribe(std::vector<std::string> names, Done done) {
    if (closed) return finish(std::move(done), Error::connection_closed);
    if (names.empty())
      for (auto const& [n, e] : shards) names.push_back(n);
    // One SUNSUBSCRIBE per node and slot (a cluster refuses one whose channels span slots).
    std::map<std::pair<NodeAddress, std::uint16_t>, std::vector<std::string>> groups;
    for (auto const& n : names) {
      auto it = shards.find(n);
      if (it == shards.end()) continue;
      if (it->second.at) groups[{*it->second.at, rediskit::cluster::key_slot(n)}].push_back(n);
      shards.erase(it);  // one on its way is dropped when its confirmation comes
    }
    auto join = std::make_shared<Join>(std::move(done), groups.size(), executor);
    if (groups.empty()) return join->finish_now();
    for (auto& [where, group] : groups)
      connection_to(where.first).async_sunsubscribe(group, [join](error_code ec) {
        join->one(ec);
      });
  }

  std::size_t shard_channel_count() const noexcept { return shards.size(); }
  boost::asio::any_io_executor const& get_executor() const noexcept { return executor; }

  // ---- messages --------------------------------------------------------------------------

  void receive(Receiver h) {
    auto const ex = h.executor(executor);
    auto const fail = [&](Error e) {
      post_handler(ex, std::move(h), make_error_code(e), Message{});
    };
    if (closed) return fail(Error::connection_closed);
    if (receiver) return fail(Error::already_receiving);
    if (dropped) {
      dropped = false;
      return fail(Error::pushes_dropped);
    }
    if (resubscribed) {
      resubscribed = false;
      return fail(Error::resubscribed);
    }
    if (!queue.empty()) {
      Message m = std::move(queue.front());
      queue.pop_front();
      return post_handler(ex, std::move(h), error_code{}, std::move(m));
    }
    if (auto slot = h.cancellation_slot(); slot.is_connected())
      slot.assign([w = weak_from_this()](boost::asio::cancellation_type) {
        if (auto s = w.lock(); s && s->receiver)
          s->complete_receive(boost::asio::error::operation_aborted, {});
      });
    receiver = std::move(h);
  }

  void close() {
    if (closed) return;
    closed = true;
    timer.cancel();
    if (classic) classic->close();
    for (auto& [at, c] : nodes) c->close();
    shards.clear();
    if (receiver) complete_receive(Error::connection_closed, {});
  }

  std::uint64_t moves = 0;  // shard channels subscribed again elsewhere (their slot moved)

 private:
  struct Shard {
    std::optional<NodeAddress> at;  // where it is subscribed (confirmed)
    bool in_flight = false;         // an SSUBSCRIBE is on its way
  };

  // Completes a user's (s)subscribe once every slot group is done, with the first error.
  struct Join {
    Join(Done d, std::size_t n, boost::asio::any_io_executor const& fallback)
        : done(std::move(d)), left(n), ex(done ? done.executor(fallback) : fallback) {}
    void one(error_code ec) {
      if (ec && !first) first = ec;
      if (--left == 0) finish_now();
    }
    void finish_now() {
      if (done) post_handler(ex, std::move(done), first);
    }
    Done done;  // empty for the subscriber's own moves
    std::size_t left;
    boost::asio::any_io_executor ex;
    error_code first{};
  };

  void finish(Done done, Error e) {
    auto const ex = done.executor(executor);
    post_handler(ex, std::move(done), make_error_code(e));
  }

  RedisConfig config_for(NodeAddress const& at) const {
    RedisConfig c = state->config.node;
    c.host = at.host;
    c.port = at.port;
    c.offline_queue = true;  // a subscription waits for its link, and for the next one
    return c;
  }

  std::shared_ptr<Connection> open(NodeAddress const& at) {
    auto conn = std::make_shared<Connection>(executor, config_for(at).connection_config());
    pump(conn.get());
    return conn;
  }

  Connection& connection_to(NodeAddress const& at) {
    for (auto& [a, c] : nodes)
      if (a == at) return *c;
    nodes.emplace_back(at, open(at));
    return *nodes.back().second;
  }

  bool owns(Connection const* c) const {
    if (classic && c == &classic->connection()) return true;
    for (auto const& [a, p] : nodes)
      if (p.get() == c) return true;
    return false;
  }

  NodeAddress const* address_of(Connection const* c) const {
    for (auto const& [a, p] : nodes)
      if (p.get() == c) return &a;
    return nullptr;
  }

  // Where `slot` lives: its master in the map, or (no map yet) a seed node, whose MOVED says.
  std::optional<NodeAddress> owner_of(std::uint16_t slot) const {
    auto const i = state->map.master_of(slot);
    if (i >= 0) return state->map.masters()[std::size_t(i)];
    for (auto const& n : state->config.nodes)
      if (auto a = rediskit::cluster::parse_address(n)) return a;
    return std::nullopt;
  }

  void route(std::uint16_t slot, std::vector<std::string> group, int attempt,
             std::shared_ptr<Join> join, std::optional<NodeAddress> to) {
    if (!to) to = owner_of(slot);
    if (!to) return give_up(group, join, Error::cluster_down);
    auto diag = std::make_shared<Diagnostics>();
    auto& conn = connection_to(*to);
    conn.async_ssubscribe(group, *diag, [w = weak_from_this(), slot, group, attempt, join,
                                         diag, at = *to](error_code ec) mutable {
      auto s = w.lock();
      if (!s || s->closed) return join->one(Error::connection_closed);
      s->routed(slot, std::move(group), attempt, std::move(join), *diag, at, ec);
    });
  }

  void routed(std::uint16_t slot, std::vector<std::string> group, int attempt,
              std::shared_ptr<Join> join, Diagnostics const& diag, NodeAddress const& at,
              error_code ec) {
    if (!ec) {
      std::vector<std::string> unwanted;
      for (auto const& n : group) {
        auto it = shards.find(n);
        if (it == shards.end()) {
          unwanted.push_back(n);  // unsubscribed meanwhile
          continue;
        }
        it->second.at = at;
        it->second.in_flight = false;
      }
      if (!unwanted.empty()) connection_to(at).async_sunsubscribe(unwanted, [](error_code) {});
      return join->one({});
    }
    bool const last = attempt + 1 >= state->config.max_redirects;
    auto const kind = retry_kind(diag.server_message);
    if (!last && (kind == Retry::moved || kind == Retry::ask)) {
      auto r = rediskit::cluster::parse_redirect(diag.server_message);
      if (r) {
        if (!r->ask) {
          state->moved(r->slot, r->to);
          refresh(state);
        }
        return route(slot, std::move(group), attempt + 1, std::move(join), r->to);
      }
    }
    if (!last && (kind == Retry::try_again || never_sent(ec) || ec == Error::connection_lost)) {
      // Paused, then where the map says by then (a failover takes the cluster a while).
      refresh(state);
      auto t = std::make_shared<boost::asio::steady_timer>(executor);
      t->expires_after(std::min(state->config.retry_delay * (1 << std::min(attempt, 6)),
                                std::chrono::milliseconds(1000)));
      return t->async_wait([w = weak_from_this(), t, slot, group = std::move(group), attempt,
                            join](error_code) mutable {
        auto s = w.lock();
        if (!s || s->closed) return join->one(Error::connection_closed);
        s->route(slot, std::move(group), attempt + 1, std::move(join), std::nullopt);
      });
    }
    give_up(group, join, ec);
  }

  // The user's subscribe fails; a move of the subscriber's own is tried again by the timer.
  void give_up(std::vector<std::string> const& group, std::shared_ptr<Join> const& join,
               error_code ec) {
    for (auto const& n : group) {
      auto it = shards.find(n);
      if (it == shards.end()) continue;
      if (join->done)
        shards.erase(it);
      else
        it->second.in_flight = false;
    }
    join->one(ec);
  }

  // Every second while there are shard channels: a channel not subscribed anywhere (a move
  // that failed), or subscribed on a node that no longer owns its slot by the map (a failover
  // promoted a replica; a node died), is subscribed where the map says now.
  void arm_timer() {
    if (timer_armed || closed || shards.empty()) return;
    timer_armed = true;
    timer.expires_after(std::chrono::seconds(1));
    timer.async_wait([w = weak_from_this()](error_code ec) {
      auto s = w.lock();
      if (!s) return;
      s->timer_armed = false;
      if (ec || s->closed) return;
      s->reconcile();
      s->arm_timer();
    });
  }

  void reconcile() {
    if (!state->have_map) return refresh(state);
    bool unhealthy = false;
    for (auto const& [a, c] : nodes) unhealthy = unhealthy || c->health() != HealthStatus::ok;
    if (unhealthy) refresh(state);
    std::vector<std::string> moving;
    for (auto& [n, e] : shards) {
      if (e.in_flight) continue;
      auto const owner = owner_of(rediskit::cluster::key_slot(n));
      if (e.at && owner && *owner == *e.at) continue;
      // Also to a node that is down: its connection would subscribe again when it is back.
      if (e.at) connection_to(*e.at).async_sunsubscribe(n, [](error_code) {});
      e.at.reset();
      moving.push_back(n);
    }
    move(std::move(moving));
  }

  // Channels the server dropped (their slot moved) or that were never placed: subscribed
  // again where they live now, with nobody waiting.
  void move(std::vector<std::string> names) {
    std::map<std::uint16_t, std::vector<std::string>> by_slot;
    for (auto& n : names) {
      auto& e = shards[n];
      e.in_flight = true;
      ++moves;
      by_slot[rediskit::cluster::key_slot(n)].push_back(std::move(n));
    }
    // Once there, the receiver hears that what was published during the move is lost.
    auto const moved = [w = weak_from_this()](error_code) {
      if (auto s = w.lock(); s && !s->closed) s->on_resubscribed();
    };
    for (auto& [slot, group] : by_slot)
      route(slot, std::move(group), 0, std::make_shared<Join>(Done(moved), 1, executor),
            std::nullopt);
  }

  void pump(Connection* c) {
    c->async_receive([w = weak_from_this(), c](error_code ec, resp3::Tree t) {
      auto s = w.lock();
      if (!s || s->closed || !s->owns(c)) return;
      if (ec == Error::pushes_dropped)
        s->dropped = true;
      else if (ec == Error::resubscribed)
        s->on_resubscribed();
      else if (ec)
        return;  // closed or cancelled
      else
        s->on_push(c, t);
      s->pump(c);
    });
  }

  void on_push(Connection const* c, resp3::Tree const& t) {
    Message m;
    if (detail::redis::to_message(t, m)) return deliver(std::move(m));
    // ["sunsubscribe", channel, n] that nobody asked for: the slot left the node.
    if (t.size() < 3 || t[1].value != "sunsubscribe") return;
    auto const* at = address_of(c);
    auto it = shards.find(t[2].value);
    if (!at || it == shards.end() || it->second.in_flight || it->second.at != *at) return;
    it->second.at.reset();
    move({it->first});
  }

  // A node's link came back with its subscriptions (see Connection::async_receive): the
  // receiver hears it at once, as it may wait for messages that were lost.
  void on_resubscribed() {
    if (receiver && queue.empty() && !dropped)
      return complete_receive(make_error_code(Error::resubscribed), {});
    resubscribed = true;
  }

  void deliver(Message m) {
    if (receiver) return complete_receive({}, std::move(m));
    if (queue.size() >= max_queued) {
      queue.pop_front();
      dropped = true;
    }
    queue.push_back(std::move(m));
  }

  void complete_receive(error_code ec, Message m) {
    auto h = std::move(receiver);
    receiver = Receiver{};
    if (auto slot = h.cancellation_slot(); slot.is_connected()) slot.clear();
    auto const ex = h.executor(executor);
    post_handler(ex, std::move(h), ec, std::move(m));
  }

  std::shared_ptr<State> state;
  boost::asio::any_io_executor executor;
  std::optional<RedisSubscriber> classic;
  std::vector<std::pair<NodeAddress, std::shared_ptr<Connection>>> nodes;  // shard channels'
  std::map<std::string, Shard, std::less<>> shards;
  std::deque<Message> queue;
  std::size_t max_queued = 4096;
  bool dropped = false;
  bool resubscribed = false;  // to report once: Error::resubscribed
  Receiver receiver;
  bool closed = false;
  boost::asio::steady_timer timer;
  bool timer_armed = false;
};

}  // namespace detail::cluster

/// A subscriber of a ClusterBackend (made by ClusterBackend::make_subscriber()), with the
/// interface of every subscriber (rediskit/backend/subscriber.hpp).
///  - Channels and patterns (SUBSCRIBE, PSUBSCRIBE) go through one node: the cluster bus
///    brings every node's PUBLISH there.
///  - Shard channels (SSUBSCRIBE) go to the master of their slot, one connection per master,
///    one SSUBSCRIBE per slot. A MOVED is followed; when a slot leaves its node (a resharding:
///    the server sends SUNSUBSCRIBE) or its master changes (a failover, seen in the slot map
///    within a second or two of the cluster's own promotion), the channel is subscribed where
///    it lives now. Messages published while it moves are lost, as pub/sub is at most once:
///    once it is subscribed there, async_receive reports Error::resubscribed.
/// Every connection's messages come out of one async_receive, in the order they arrive.
/// Move-only; closing or destroying it unsubscribes from everything.
class ClusterSubscriber {
 public:
  explicit ClusterSubscriber(std::shared_ptr<detail::cluster::State> st)
      : core_(std::make_shared<detail::cluster::SubscriberCore>(std::move(st))) {}
  ClusterSubscriber(ClusterSubscriber&&) noexcept = default;
  ClusterSubscriber& operator=(ClusterSubscriber&& o) noexcept {
    if (this != &o) {
      close();
      core_ = std::move(o.core_);
    }
    return *this;
  }
  ~ClusterSubscriber() { close(); }

  boost::asio::any_io_executor get_executor() const { return core_->get_executor(); }

  /// As RedisSubscriber's (through one node). Handler: void(error_code).
  template <class Token = boost::asio::deferred_t>
  auto async_subscribe(ArgList<std::string_view> channels, Token&& token = {}) {
    return core_->classic_subscriber().async_subscribe(channels, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_psubscribe(ArgList<std::string_view> patterns, Token&& token = {}) {
    return core_->classic_subscriber().async_psubscribe(patterns, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_unsubscribe(ArgList<std::string_view> channels = {}, Token&& token = {}) {
    return core_->classic_subscriber().async_unsubscribe(channels, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_punsubscribe(ArgList<std::string_view> patterns = {}, Token&& token = {}) {
    return core_->classic_subscriber().async_punsubscribe(patterns, std::forward<Token>(token));
  }

  /// Shard channels, on the masters of their slots (see above). Channels in several slots are
  /// fine. Handler: void(error_code), once every one is subscribed. Errors: the last refusal
  /// once ClusterConfig::max_redirects rounds are spent (Error::moved, Error::try_again, ...),
  /// a connection error (Error::reconnect_gave_up, ...), Error::cluster_down when no node is
  /// known, Error::invalid_request for an empty list; the channels of a failed call are not
  /// subscribed.
  template <class Token = boost::asio::deferred_t>
  auto async_ssubscribe(ArgList<std::string_view> channels, Token&& token = {}) {
    return shard(true, channels, std::forward<Token>(token));
  }
  /// An empty list: from every shard channel.
  template <class Token = boost::asio::deferred_t>
  auto async_sunsubscribe(ArgList<std::string_view> channels = {}, Token&& token = {}) {
    return shard(false, channels, std::forward<Token>(token));
  }

  /// The next message from any node. Handler: void(error_code, Message); errors as
  /// MemorySubscriber's.
  template <class Token = boost::asio::deferred_t>
  auto async_receive(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, Message)>(
        [](auto handler, std::shared_ptr<detail::cluster::SubscriberCore> const& core) {
          core->receive(std::move(handler));
        },
        token, core_);
  }

  /// Shard channels subscribed again on another node so far (their slot moved).
  std::uint64_t shard_moves() const noexcept { return core_ ? core_->moves : 0; }

  /// Closes every connection; a waiting receive completes with Error::connection_closed.
  void close() {
    if (core_) core_->close();
  }

 private:
  template <class Token>
  auto shard(bool subscribe, ArgList<std::string_view> names, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [](auto handler, std::shared_ptr<detail::cluster::SubscriberCore> const& core,
           bool subscribe, ArgList<std::string_view> names) {
          auto list = names.to_vector();
          std::vector<std::string> owned(list.begin(), list.end());
          if (subscribe)
            core->ssubscribe(std::move(owned), std::move(handler));
          else
            core->sunsubscribe(std::move(owned), std::move(handler));
        },
        token, core_, subscribe, names);
  }

  std::shared_ptr<detail::cluster::SubscriberCore> core_;
};

/// The Backend on a Redis Cluster (see the top of this file).
class ClusterBackend : public detail::ExecOverloads<ClusterBackend> {
  friend class detail::ExecOverloads<ClusterBackend>;

 public:
  using executor_type = boost::asio::any_io_executor;
  using subscriber_type = ClusterSubscriber;

  static constexpr std::string_view name = "cluster";
  /// Services lay their keys out for a cluster by default (key_space.hpp).
  static constexpr KeyLayout key_layout = KeyLayout::clustered;

  explicit ClusterBackend(executor_type ex, ClusterConfig cfg = {})
      : state_(std::make_shared<detail::cluster::State>(std::move(ex), std::move(cfg))) {}
  explicit ClusterBackend(boost::asio::io_context& ioc, ClusterConfig cfg = {})
      : ClusterBackend(ioc.get_executor(), std::move(cfg)) {}
  ClusterBackend(ClusterBackend&&) noexcept = default;
  ClusterBackend& operator=(ClusterBackend&&) noexcept = default;
  ~ClusterBackend() {
    if (state_) close();
  }

  executor_type get_executor() const noexcept { return state_->executor; }

  /// async_exec (detail::ExecOverloads): as RedisBackend's (see the top of this file for
  /// routing and redirections).
  using detail::ExecOverloads<ClusterBackend>::async_exec;

  /// A subscriber: classic channels through one node, shard channels on their slots' masters
  /// (see ClusterSubscriber).
  ClusterSubscriber make_subscriber() { return ClusterSubscriber(state_); }

  /// Reads the slot map now (it is also read at first use) and checks a master answers.
  /// Handler: void(error_code).
  template <class Token = boost::asio::deferred_t>
  auto async_connect(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler) {
          async_exec(cmd::ping{}, [h = std::move(handler)](boost::system::error_code ec,
                                                           std::string) mutable {
            std::move(h)(ec);
          });
        },
        token);
  }

  /// Closes every connection; pending operations complete with Error::connection_closed.
  void close() {
    state_->closed = true;
    if (state_->refresh_timer) state_->refresh_timer->cancel();
    for (auto* pools : {&state_->pools, &state_->replica_pools})
      for (auto& [addr, p] : *pools) {
        p->main.close();
        for (auto& c : p->idle_blocking) c->close();
        p->idle_blocking.clear();
      }
    auto waiting = std::exchange(state_->waiting, {});
    for (auto& op : waiting) op->fail(make_error_code(Error::connection_closed));
  }

  /// OK when every master's connection is, DISCONNECTED when none is (or no map yet),
  /// DEGRADED otherwise.
  HealthStatus health() const noexcept {
    auto const& st = *state_;
    if (st.by_index.empty()) return HealthStatus::disconnected;
    std::size_t ok = 0;
    for (auto const& p : st.by_index) ok += p->main.health() == HealthStatus::ok;
    if (ok == st.by_index.size()) return HealthStatus::ok;
    return ok == 0 ? HealthStatus::disconnected : HealthStatus::degraded;
  }

  ClusterStats const& stats() const noexcept { return state_->stats; }
  ClusterConfig const& config() const noexcept { return state_->config; }
  /// The slot map as last read (and corrected by MOVED).
  rediskit::cluster::SlotMap const& slot_map() const noexcept { return state_->map; }

 private:
  using error_code = boost::system::error_code;

  template <class X>
  struct JobOf {
    using type = X;
  };
  template <class C>
  struct JobOf<std::span<C const>> {
    using type = Batch<false, std::span<C const>>;  // each element its own reply, by index
  };
  template <class X>
  struct OutOf {
    using type = reply_t<X>;
  };
  template <class C>
  struct OutOf<std::span<C const>> {
    using type = std::vector<reply_t<C>>;
  };

  template <class Out, class X, class Token>
  auto exec_impl(X const& x, Diagnostics* diag, Token&& token) {
    static_assert(std::is_same_v<Out, typename OutOf<X>::type>);
    return boost::asio::async_initiate<Token, void(error_code, Out)>(
        // The handler by reference: the command is written out before the handler (and what
        // the command views in a caller's state) moves.
        [st = state_](auto&& handler, X const& x, Diagnostics* diag) {
          auto* op = new Operation<X>(st, x, diag);
          detail::cluster::OpRef ref(op);
          op->handler = std::move(handler);
          op->begin(std::move(ref));
        },
        token, x, diag);
  }

  // The typed part of an operation: the job (request and typed response) and the handler.
  template <class X>
  struct Operation final : detail::cluster::Core {
    using JX = typename JobOf<X>::type;
    using Job = detail::redis::Job<JX>;
    using Out = typename OutOf<X>::type;
    static constexpr bool is_atomic = [] {
      if constexpr (is_batch_v<X>)
        return X::atomic;
      else
        return false;
    }();

    Operation(std::shared_ptr<detail::cluster::State> const& s, X const& x, Diagnostics* d)
        : Core(s, d, is_atomic, detail::redis::needs_blocking_connection(x)),
          job(as_job(x), {}) {
      req = &job.req;
      using detail::cluster::Fan;
      using detail::cluster::fan_of;
      if constexpr (is_atomic) {
        auto r = rediskit::cluster::route(x);
        if (r.cross_slot) refuse(r);
        auto& u = units.emplace_back();
        u.slot = r.slot;
        detail::redis::for_each_script(x, [&](std::string_view sha, std::string_view src) {
          u.scripts.emplace_back(sha, src);
        });
        for_each_command(x, [&](auto const& c) {
          using C = std::remove_cvref_t<decltype(c)>;
          if constexpr (fan_of<C> != Fan::none)
            if (refusal.empty())
              refusal = argv(c).at(0) +
                        " acts on every master of a cluster: it cannot be part of a transaction";
        });
      } else {
        units.reserve(req->commands());
        for_each_command(x, [&](auto const& c) {
          using C = std::remove_cvref_t<decltype(c)>;
          auto& u = units.emplace_back();
          u.fan = fan_of<C>;
          if constexpr (fan_of<C> == Fan::scan) {
            u.slot = detail::cluster::scan_slot(c.cursor);
            C here = c;
            here.cursor = detail::cluster::scan_node_cursor(c.cursor);
            resp3::Request one;
            push_command(one, here);
            u.bytes = one.payload();
          } else if constexpr (fan_of<C> == Fan::none) {
            auto r = rediskit::cluster::route(c);
            if (r.cross_slot) refuse(r);
            u.slot = r.slot;
            u.read_only = is_idempotent_v<C> && r.slot != rediskit::cluster::Route::any;
          }
          if constexpr (requires { c.script_source(); })
            u.scripts.emplace_back(c.script_sha1(), c.script_source());
        });
      }
    }

    void refuse(rediskit::cluster::Route const& r) {
      if (!refusal.empty()) return;
      refusal = "key '" + r.first_key + "' and key '" + r.other_key +
                "' are in different hash slots (" +
                std::to_string(rediskit::cluster::key_slot(r.first_key)) + " and " +
                std::to_string(rediskit::cluster::key_slot(r.other_key)) +
                "): give the keys of one transaction, script or multi-key command one hash tag";
    }

    static decltype(auto) as_job(X const& x) {
      if constexpr (std::is_same_v<JX, X>)
        return (x);
      else
        return JX{{x}};
    }

    void feed(std::size_t index, resp3::NodeView const& n, error_code& ec) override {
      job.resp.on_node(index, n, ec);
    }

    void complete(error_code ec) override {
      if (!ec) {
        ec = job.extra_error();
        if (ec && diag && diag->server_message.empty()) diag->server_message = job.extra_text();
      }
      auto h = std::move(handler);
      std::move(h)(ec, take());
    }

    boost::asio::any_io_executor handler_executor(
        boost::asio::any_io_executor const& fb) const override {
      return handler.executor(fb);
    }
    boost::asio::cancellation_slot handler_slot() const override {
      return handler.cancellation_slot();
    }

    Out take() {
      if constexpr (std::is_same_v<JX, X>)
        return job.take();
      else
        return std::get<0>(job.take());
    }

    Job job;
    detail::AnyHandler<void(error_code, Out)> handler;
  };

  std::shared_ptr<detail::cluster::State> state_;
};

}  // namespace rediskit
