// rediskit::NearCache<V>: an in-process copy of hot values in front of a Redis cache, kept
// correct by Redis's server-assisted client-side caching. An option of UserCache
// (UserCacheOptions::near); the services own it, users size it and read its stats.
//
//   rediskit::UserCache<rediskit::RedisBackend> users(
//       redis, {.near = {.max_entries = 100'000, .max_bytes = 64 << 20}});
//   co_await users.async_get("42");   // from Redis; kept in process
//   co_await users.async_get("42");   // from process memory, until any client writes the key
//   users.near_stats();               // hits, misses, invalidations, evictions, ...
//
// How it stays correct:
//  * Tracking. The near cache opens a connection of its own (RedisBackend::make_connection,
//    so the same server, credentials, TLS and Sentinel discovery as the main connection) whose
//    handshake ends with `CLIENT TRACKING ON BCAST PREFIX <the service's key prefix>`: from
//    then on the server pushes ["invalidate", [key...]] on it for every write to a key under
//    the prefix, by any client (a Node service's HSET included), and ["invalidate", null] on
//    FLUSHDB / FLUSHALL. BCAST does not depend on which connection read the key, so reads stay
//    on the backend's pipelined main connection.
//  * Link loss. Invalidations sent while the tracking link is down are lost. The copy is only
//    served while the tracking connection is up, and is dropped entirely whenever that
//    connection is not up, or is a new one (a reconnection, seen by its handshake count) since
//    the copy was made. So a reconnection, however quick, starts from empty. A half-open link
//    is found by the connection's health check (ConnectionConfig::health_check_interval,
//    2 s by default): that is how long a copy may outlive a write that the server could not
//    push to us.
//  * The invalidate-before-reply race. A read's reply and an invalidation travel on different
//    connections, so an invalidation for a write made just after the read may arrive first. A
//    read registers itself before it is sent; an invalidation of its key (or a flush) while it
//    is in flight marks it, and a marked read's value is handed to its caller but not kept.
//    This is stricter than needed (a write the read already saw also marks it), never looser.
//  * Own writes. The service drops the key from the copy (and marks reads in flight) when it
//    sends a write, before the server's own invalidation comes back.
//
// Bounds: max_entries and max_bytes (the value's encoded size plus the key and about 96 bytes
// of bookkeeping per entry), least recently used first out; max_age (60 s by default): an
// older copy is read again from Redis. Redis pushes an invalidation when an expired key is
// deleted, which it does when the key is read or sampled by its expiry cycle, so without
// max_age a copy could be served for a while past its key's TTL.
//
// Backends: RedisBackend and ClusterBackend. On a cluster each master pushes the writes to the
// keys it holds, so the near cache keeps a tracking connection (BCAST, the same prefixes) to
// every master of the slot map, and serves the copy only while all of them are up: one link
// lost, or new, empties it, as above. When the set of masters in the slot map changes (a
// failover, a master added or removed; the backend reads the map every
// ClusterConfig::refresh_interval and after redirections), the copy is emptied and a link is
// made to each master of the new set before anything is served again. A slot moving between
// masters needs nothing: both track every key under the prefixes. With
// ClusterConfig::read_from_replicas the near cache is off, since a lagging replica could hand
// it a value older than the last invalidation. On MemoryBackend and FakeBackend the engine is
// in process already, and on FallbackBackend the near cache is off: enabled() is false, every
// read goes to the backend, and the stats stay 0.
#pragma once

#include <rediskit/cluster/slot_map.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/error.hpp>
#include <rediskit/resp3/node.hpp>
#include <rediskit/resp3/request.hpp>

#include <boost/describe/class.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rediskit {

/// Size of a near cache (UserCacheOptions::near). max_entries 0: no near cache.
/// Checked when a service makes its near cache: with max_entries above 0, max_bytes must be
/// above 0 and max_age not negative, else rediskit::Exception (Error::invalid_config).
struct NearCacheOptions {
  std::size_t max_entries = 0;
  std::size_t max_bytes = std::size_t{64} << 20;
  /// A copy older than this is not served (0: no limit). Redis invalidates a key when it is
  /// deleted, and deletes an expired key only when it is read or when its active expiry cycle
  /// samples it; a copy read from memory never reads it. This bounds how long a copy can
  /// outlive its key's TTL, and anything else the server could not push.
  std::chrono::milliseconds max_age = std::chrono::seconds(60);
};

/// What a near cache did, since it was made.
struct NearCacheStats {
  std::uint64_t hits = 0;           ///< reads answered from process memory
  std::uint64_t misses = 0;         ///< reads that went to Redis (tracking link down included)
  std::uint64_t invalidations = 0;  ///< keys invalidated: by the server's pushes, or own writes
  std::uint64_t evictions = 0;      ///< entries dropped for room (max_entries, max_bytes)
  std::uint64_t expired = 0;        ///< entries dropped at a read: older than max_age
  std::uint64_t flushes = 0;        ///< copy dropped entirely: link lost or new, FLUSHDB, ...
  std::uint64_t fills_dropped = 0;  ///< read values not kept: invalidated while in flight
  std::uint64_t entries = 0;        ///< now
  std::uint64_t bytes = 0;          ///< now (see the top of near_cache.hpp)
  bool active = false;              ///< the tracking link is up: the copy is served
};
BOOST_DESCRIBE_STRUCT(NearCacheStats, (),
                      (hits, misses, invalidations, evictions, expired, flushes, fills_dropped,
                       entries, bytes, active))

namespace detail::near {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

/// The copy and the reads in flight, without I/O: an LRU bounded by entries and bytes, and the
/// bookkeeping that keeps a read's value out when its key was invalidated while it was in
/// flight.
template <class V>
class Store {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t overhead = 96;  // per entry: list node, map node, key header

  explicit Store(NearCacheOptions o) : opts_(o) {}

  /// The kept value of `key` (most recently used now), or nullptr. Counts a hit or a miss.
  V const* find(std::string_view key, Clock::time_point now = Clock::now()) {
    auto it = map_.find(key);
    if (it == map_.end()) {
      ++stats_.misses;
      return nullptr;
    }
    if (opts_.max_age.count() > 0 && now - it->second->kept_at > opts_.max_age) {
      ++stats_.expired;
      ++stats_.misses;
      erase(it);
      return nullptr;
    }
    ++stats_.hits;
    lru_.splice(lru_.begin(), lru_, it->second);
    return &it->second->value;
  }
  void count_miss() noexcept { ++stats_.misses; }

  /// A read of `key` is about to be sent; what to give end().
  std::uint64_t begin(std::string_view key) {
    auto it = pending_.find(key);
    if (it == pending_.end()) it = pending_.emplace(std::string(key), Pending{}).first;
    ++it->second.readers;
    return seq_;
  }

  /// The read of `key` that began at `start` is over. With a value, keeps it unless the key
  /// was invalidated (or everything flushed) since; true when kept.
  bool end(std::string_view key, std::uint64_t start, V* value, std::size_t bytes,
           Clock::time_point now = Clock::now()) {
    auto it = pending_.find(key);
    bool clean = flushed_at_ <= start;
    if (it != pending_.end()) {
      clean = clean && it->second.invalidated_at <= start;
      if (--it->second.readers == 0) pending_.erase(it);
    }
    if (!value) return false;
    if (!clean) {
      ++stats_.fills_dropped;
      return false;
    }
    return put(key, std::move(*value), bytes, now);
  }

  /// `key` was written: drop it and mark the reads of it in flight.
  void invalidate(std::string_view key) {
    ++seq_;
    ++stats_.invalidations;
    if (auto it = pending_.find(key); it != pending_.end()) it->second.invalidated_at = seq_;
    if (auto it = map_.find(key); it != map_.end()) erase(it);
  }

  /// Everything goes, and every read in flight is marked.
  void flush() {
    flushed_at_ = ++seq_;
    ++stats_.flushes;
    map_.clear();
    lru_.clear();
    bytes_ = 0;
  }

  bool empty() const noexcept { return map_.empty(); }

  NearCacheStats stats() const {
    NearCacheStats s = stats_;
    s.entries = map_.size();
    s.bytes = bytes_;
    return s;
  }

 private:
  struct Entry {
    std::string key;
    V value;
    std::size_t bytes;
    Clock::time_point kept_at;
  };
  using List = std::list<Entry>;
  using Map =
      std::unordered_map<std::string_view, typename List::iterator, StringHash, std::equal_to<>>;
  struct Pending {
    std::size_t readers = 0;
    std::uint64_t invalidated_at = 0;
  };

  bool put(std::string_view key, V value, std::size_t bytes, Clock::time_point now) {
    bytes += key.size() + overhead;
    if (opts_.max_entries == 0 || bytes > opts_.max_bytes) return false;
    if (auto it = map_.find(key); it != map_.end()) erase(it);
    while (!lru_.empty() &&
           (map_.size() >= opts_.max_entries || bytes_ + bytes > opts_.max_bytes)) {
      ++stats_.evictions;
      erase(map_.find(std::string_view(lru_.back().key)));
    }
    lru_.push_front(Entry{std::string(key), std::move(value), bytes, now});
    map_.emplace(std::string_view(lru_.front().key), lru_.begin());
    bytes_ += bytes;
    return true;
  }

  void erase(typename Map::iterator it) {
    auto const node = it->second;
    bytes_ -= node->bytes;
    map_.erase(it);  // before the node: the map's key views its string
    lru_.erase(node);
  }

  NearCacheOptions opts_;
  List lru_;
  Map map_;
  std::unordered_map<std::string, Pending, StringHash, std::equal_to<>> pending_;
  std::uint64_t seq_ = 0;         // invalidations and flushes so far
  std::uint64_t flushed_at_ = 0;  // seq_ of the last flush
  std::size_t bytes_ = 0;
  NearCacheStats stats_;
};

/// The keys of an ["invalidate", [key...]] push, or `all` for ["invalidate", null] (FLUSHDB).
/// False for any other push.
template <class OnKey, class OnAll>
bool read_invalidation(resp3::Tree const& t, OnKey on_key, OnAll on_all) {
  if (t.size() < 3 || t[0].type != resp3::Type::push || t[1].value != "invalidate") return false;
  if (t[2].type == resp3::Type::null) {
    on_all();
    return true;
  }
  for (std::size_t i = 3; i < t.size(); ++i)
    if (t[i].depth == 2) on_key(std::string_view(t[i].value));
  return true;
}

/// The setup request of a tracking connection: BCAST for these key prefixes.
inline resp3::Request tracking_setup(std::vector<std::string> const& prefixes) {
  std::vector<std::string> args{"TRACKING", "ON", "BCAST"};
  for (auto const& p : prefixes) {
    args.emplace_back("PREFIX");
    args.push_back(p);
  }
  resp3::Request req;
  req.push_range("CLIENT", args);
  return req;
}

}  // namespace detail::near

/// A near cache of values of type V (see the top of this file). Default-constructed, or made
/// over a backend that cannot track (MemoryBackend, FakeBackend, FallbackBackend, a
/// ClusterBackend reading from replicas), or with max_entries 0: off.
/// Not thread-safe: use it on its backend's executor, as the service that owns it does.
template <class V>
class NearCache {
  struct Core;
  struct Link;

 public:
  NearCache() = default;

  /// A near cache of the keys under `prefixes`, tracked on connections of its own: one to the
  /// server (RedisBackend), which connects at once, or one to each master of a ClusterBackend's
  /// slot map, made when the map is known. The copy is served once they are up.
  /// With max_entries above 0, a max_bytes of 0 or a negative max_age throws
  /// rediskit::Exception (Error::invalid_config), whatever the backend.
  template <class B>
  NearCache(B& backend, std::vector<std::string> prefixes, NearCacheOptions opts) {
    if (opts.max_entries > 0 && (opts.max_bytes == 0 || opts.max_age.count() < 0))
      throw Exception(make_error_code(Error::invalid_config),
                      "NearCacheOptions: max_bytes must be above 0 and max_age not negative "
                      "(0: no age limit); set max_entries to 0 to turn the near cache off");
    if (opts.max_entries == 0) return;
    if constexpr (requires { backend.make_connection(resp3::Request{}); }) {
      core_ = std::make_shared<Core>(opts);
      core_->add(backend.make_connection(detail::near::tracking_setup(prefixes)));
    } else if constexpr (requires {
                           backend.slot_map().masters();
                           backend.config().node.connection_config();
                           backend.config().read_from_replicas;
                         }) {
      // A replica lags its master: a read from it may return a value older than the last
      // push, and nothing would ever drop that copy.
      if (backend.config().read_from_replicas) return;
      core_ = std::make_shared<Core>(opts);
      core_->setup = detail::near::tracking_setup(prefixes);
      core_->masters = [&backend]() -> std::vector<cluster::NodeAddress> const& {
        return backend.slot_map().masters();
      };
      core_->connect_to = [&backend](cluster::NodeAddress const& a, resp3::Request const& setup) {
        auto node = backend.config().node;
        node.host = a.host;
        node.port = a.port;
        auto cfg = node.connection_config();  // the client name: ClusterBackend's default
        cfg.setup = setup;
        return std::make_shared<Connection>(backend.get_executor(), std::move(cfg));
      };
    }
  }

  NearCache(NearCache&&) noexcept = default;
  NearCache& operator=(NearCache&&) noexcept = default;
  NearCache(NearCache const&) = delete;
  NearCache& operator=(NearCache const&) = delete;
  ~NearCache() {
    if (core_) core_->close();
  }

  /// Configured, and over a backend that can track.
  bool enabled() const noexcept { return core_ != nullptr; }

  /// The kept value of `key`, or nullptr (not kept, or a tracking link is not up). A null
  /// result counts a miss: the caller then reads the server through begin().
  V const* find(std::string_view key) {
    if (!core_) return nullptr;
    if (!core_->usable()) {
      core_->store.count_miss();
      return nullptr;
    }
    return core_->store.find(key);
  }

  /// A read of `key` on its way to the server: keep() its value when it comes. Destroyed
  /// without keep() (an error, a missing key), it just ends.
  class Fill {
   public:
    Fill() = default;
    Fill(Fill&& o) noexcept
        : core_(std::move(o.core_)), key_(std::move(o.key_)), start_(o.start_), gen_(o.gen_) {}
    Fill& operator=(Fill&&) = delete;
    ~Fill() {
      if (core_) core_->store.end(key_, start_, nullptr, 0);
    }
    /// Keeps `value` (`bytes`: its encoded size) unless the key was invalidated, or a
    /// tracking link changed, since the read began.
    void keep(V value, std::size_t bytes) {
      if (!core_) return;
      auto core = std::move(core_);
      if (!core->usable() || core->generation != gen_) {
        core->store.end(key_, start_, nullptr, 0);
        return;
      }
      core->store.end(key_, start_, &value, bytes);
    }
    /// The same for a value that is its own encoding (a string): `bytes` is its size, taken
    /// here before the value moves.
    void keep(V value) requires std::same_as<V, std::string> {
      auto const bytes = value.size();
      keep(std::move(value), bytes);
    }

   private:
    friend class NearCache;
    std::shared_ptr<Core> core_;
    std::string key_;
    std::uint64_t start_ = 0;
    std::uint64_t gen_ = 0;
  };

  /// Registers a read of `key` about to be sent (see Fill). An empty Fill when off or a
  /// tracking link is not up.
  Fill begin(std::string_view key) {
    Fill f;
    if (!core_ || !core_->usable()) return f;
    f.start_ = core_->store.begin(key);
    f.key_ = std::string(key);
    f.gen_ = core_->generation;
    f.core_ = core_;
    return f;
  }

  /// `key` is being written by this process: drop it now (the server's push follows).
  void invalidate(std::string_view key) {
    if (core_) core_->store.invalidate(key);
  }

  /// Drops everything.
  void clear() {
    if (core_) core_->store.flush();
  }

  NearCacheStats stats() const {
    if (!core_) return {};
    auto s = core_->store.stats();
    s.active = core_->all_up();
    return s;
  }

  /// How many tracking connections there are now: 1 on RedisBackend; on ClusterBackend one per
  /// master of the slot map this cache last saw (0 before it saw one).
  std::size_t connection_count() const noexcept { return core_ ? core_->links.size() : 0; }

  /// Tracking connection `i` (its metrics, health); only when i < connection_count().
  Connection& connection(std::size_t i = 0) { return *core_->links.at(i)->conn; }

 private:
  struct Link {
    std::shared_ptr<Connection> conn;
    std::uint64_t created = 0;  // the connection's handshake count the copy is of
    bool connecting = false;
    bool closed = false;
  };

  struct Core : std::enable_shared_from_this<Core> {
    explicit Core(NearCacheOptions o) : store(o) {}

    // The copy may be served: every link is up and is the one the copy was made on. A new
    // link empties it first; a link that is not up empties it and, when the connection gave
    // up, starts a new connection cycle. On a cluster, a new set of masters first replaces
    // every link (a master the copy was not tracking may hold keys now).
    bool usable() {
      if (masters && masters() != tracked) {
        relink();
        return false;
      }
      if (links.empty()) return false;
      bool up = true;
      for (auto& l : links) {
        auto const h = l->conn->health();
        if (h == HealthStatus::ok) {
          auto const g = l->conn->metrics().connections_created;
          if (g != l->created) {
            if (!store.empty() || l->created != 0) store.flush();
            l->created = g;
            ++generation;
          }
          continue;
        }
        up = false;
        if (h == HealthStatus::disconnected) connect(l);
      }
      if (!up && !store.empty()) store.flush();
      return up;
    }

    bool all_up() const {
      if (links.empty()) return false;
      for (auto const& l : links)
        if (l->conn->health() != HealthStatus::ok) return false;
      return true;
    }

    void add(std::shared_ptr<Connection> c) {
      auto l = std::make_shared<Link>();
      l->conn = std::move(c);
      links.push_back(l);
      receive(this->shared_from_this(), l);
      connect(l);
    }

    // The cluster's masters changed (or were seen for the first time): a link to each.
    void relink() {
      tracked = masters();
      for (auto& l : links)
        l->conn->close();
      links.clear();
      if (!store.empty()) store.flush();
      ++generation;
      for (auto const& a : tracked)
        add(connect_to(a, setup));
    }

    void connect(std::shared_ptr<Link> const& l) {
      if (l->connecting || l->closed || closed) return;
      l->connecting = true;
      l->conn->async_connect([w = std::weak_ptr<Link>(l)](boost::system::error_code ec) {
        if (auto l = w.lock()) {
          l->connecting = false;
          if (ec == Error::connection_closed) l->closed = true;
        }
      });
    }

    void close() {
      closed = true;
      for (auto& l : links)
        l->conn->close();
    }

    detail::near::Store<V> store;
    std::vector<std::shared_ptr<Link>> links;
    // Moves whenever a link is new: reads begun before it are not kept.
    std::uint64_t generation = 0;
    bool closed = false;
    // ClusterBackend only: its masters now, and how to reach one.
    std::function<std::vector<cluster::NodeAddress> const&()> masters;
    std::function<std::shared_ptr<Connection>(cluster::NodeAddress const&, resp3::Request const&)>
        connect_to;
    std::vector<cluster::NodeAddress> tracked;  // the masters the links go to
    resp3::Request setup;
  };

  static void receive(std::shared_ptr<Core> const& core, std::shared_ptr<Link> const& link) {
    link->conn->async_receive([w = std::weak_ptr<Core>(core), wl = std::weak_ptr<Link>(link)](
                                  boost::system::error_code ec, resp3::Tree t) {
      auto c = w.lock();
      auto l = wl.lock();
      if (!c || !l) return;  // gone, or replaced by a new set of masters
      if (ec == Error::connection_closed || ec == boost::asio::error::operation_aborted) {
        l->closed = true;
        return;
      }
      if (ec) {
        c->store.flush();  // pushes dropped: invalidations were lost
      } else {
        detail::near::read_invalidation(
            t, [&](std::string_view key) { c->store.invalidate(key); }, [&] { c->store.flush(); });
      }
      receive(c, l);
    });
  }

  std::shared_ptr<Core> core_;
};

}  // namespace rediskit
