// rediskit::CacheService<Backend, Codec, TtlPolicy>: seed 000's CacheService (a JSON cache with
// TTLs and a key prefix), seed 002's tag and cascade invalidation, seed 001's cache-aside with
// a loader, and seed 003's cache statistics, on any Backend.
//
//   rediskit::CacheService<rediskit::RedisBackend> cache(redis, {.key_prefix = "chat"});
//   co_await cache.async_set("user:123", alice);                    // chat:user:123, TTL 1 h
//   std::optional<User> u = co_await cache.async_get<User>("user:123");
//   User v = co_await cache.async_get_or_load<User>("user:7", load_user_from_db);
//   co_await cache.async_delete_pattern(rediskit::glob("session:{}:*", user_id));
//
// Keys. Values live at `{key_prefix}:{key}` (seed 000: keyPrefix "chat" gives chat:user:123),
// in both layouts, so Node services sharing the Redis read the same entries (JsonCodec writes
// what JSON.stringify writes) and, on a cluster, a cache spreads over every master. The cache's
// own bookkeeping lives beside them at `{p}~...` ({p}: key_prefix, or `rediskit` when it is
// empty), where no pattern on values can reach it. Two layouts (options.key_layout; by default
// KeyLayout::clustered on ClusterBackend, plain elsewhere):
//
//   key                  KeyLayout::plain (seed 000)   KeyLayout::clustered           slot
//   a value              {p}:{key}                     {p}:{key}                      its own
//   its load lock        {p}~lock:{key}                {p}~lock:{TTT}{key}            the value's
//   a tag set            {p}~tag:{tag}                 {p}~tag:{tag}                  its own
//
// A lock holds its load's token (PX = load lock TTL); a tag set is a sorted set of the keys
// tagged `tag`, scored by their expiry (unix ms). {TTT} is the hash tag that beside()
// (key_space.hpp) gives the value's slot, so one script may touch a value and its lock. In the
// clustered layout a '{' or '%' of key_prefix is written %7B or %25 in the bookkeeping keys
// (a '{' there would be their hash tag). KeyLayout::plain is for one node (and Sentinel): on a
// cluster its loads and batch reads fail with Error::cross_slot. Patterns are GlobPattern
// values (key_space.hpp): a literal, or glob("x:{}:*", id) which escapes `id`; an id of "*" can
// never reach other keys.
//
// Operations and round trips, the same on one node and on a cluster (a batch split over the
// masters is one round trip in practice: ClusterBackend pipelines the parts to each at once).
// Every operation is one round trip except:
//  - async_keys: a SCAN walk (one step per `max_scan_count` keys; on a cluster, every master);
//  - async_delete_pattern: two walks, the locks matching the pattern then the values, with a
//    DEL per step that found keys; async_flush: two walks, the bookkeeping then the values;
//  - async_invalidate_by_tag: two (read and empty the tag set, then delete its keys);
//    async_invalidate_cascade: one per level of dependents, plus one;
//  - async_get_or_load on a miss (see below).
// SlidingTtl renews in the same round trip as the read. Nothing issues KEYS, and async_flush
// deletes only this cache's keys, never the database. Multi-key commands (the MGET of
// async_get_multiple, the DEL of a walk step) take every key in one command in the plain
// layout, and one command per hash slot in the clustered one (still one round trip).
//
// Cache-aside (async_get_or_load). On a miss, concurrent callers in this process for one key
// wait for one load (single flight); across processes, a short lock key lets one process load
// while the others poll the value (options.load_lock). The loader's value is written back by a
// script whose KEYS are the value and its lock, and only while the lock still holds the load's
// token. A load that an invalidation overtook (async_del of the key, a pattern, a tag or a
// cascade that covers it, or a flush, while the loader ran) returns its value to its callers
// but does not write it: a deleted value is never resurrected by a stale load. Why: every
// invalidation deletes the locks of the keys it may invalidate before their values (in the
// same request on the slot's master, or in an earlier walk for patterns and flush). A load
// that wrote back before its lock was deleted wrote a value that exists when the values are
// deleted, so it is deleted too; one whose lock was deleted cannot write (the token is gone);
// one that took its lock after did its read after the invalidation began, so it read what the
// invalidation was for. An invalidation that does not cover a key leaves its loads alone.
// A stored value that does not decode counts as a miss, and the load overwrites it.
//
// Tags. async_set_with_tags writes the value, then records the key in each tag's sorted set
// scored by its expiry, in one batch (one small script per tag set: each write prunes entries
// whose expiry passed and gives the tag set the TTL of its longest entry, so tag sets never
// outgrow the live keys). If any part fails, the value is deleted again (best effort) before
// the error is reported, so a value is not left without its tags. async_invalidate_by_tag
// reads and deletes the tag set in one script, then deletes the keys it listed (their locks
// first); async_invalidate_cascade(key) deletes `key`, the keys tagged with `key` (its
// dependents: tag a key with another key's name to make it depend on it), theirs, and so on,
// one level per round trip from this process. Atomicity: each tag set is read and emptied
// atomically, and each value is deleted with its lock; the whole is not atomic (the keys are
// in many slots). So a write concurrent with an invalidation may survive it, as if it came
// after. On one node a set_with_tags that survives an invalidation of one of its tags stays in
// that tag (its value is written before its tag entries, in order); on a cluster the two run
// on different masters in no set order, and such a write may survive without that tag entry
// (until its TTL, or a later invalidation of the key or of another of its tags).
//
// Near cache (options.near, off by default; RedisBackend and ClusterBackend, and not under
// SlidingTtl): the values async_get, async_get_multiple and async_get_or_load read are kept in
// process, bounded, and dropped by the server's CLIENT TRACKING pushes when any client writes
// their keys (rediskit/near_cache.hpp). This cache's own set / del drop their keys when they
// start; a pattern, tag, cascade or flush empties the whole copy, since which keys it covers is
// known only later. async_get_multiple takes what the copy has and reads the rest in one round
// trip. async_get_or_load answers a kept value without a request; on a miss it loads as always, and
// the loaded value is kept by the next read (its own write back drops it).
//
// Status. async_status: DBSIZE (on a cluster, summed over the masters by ClusterBackend) and
// INFO stats (on a cluster, one master's: evicted_keys and expired_keys are that master's).
//
// Lifetime and threads. Like an Asio I/O object, the service (and its backend) must outlive
// the operations started on it. Operations may be started from several threads at once.
// Ready-made types: RedisCache, MemoryCache, FakeCache (caches.hpp).
//
// Errors. Backend errors pass through. A value that does not decode completes with
// Error::decode_failed, and the overloads taking a Diagnostics& say which key and field. A
// loader that throws or fails completes with Error::load_failed (its message in
// Diagnostics::detail). An empty key, a zero or negative TTL: Error::invalid_argument.
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/codec/json_codec.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/concepts/codec.hpp>
#include <rediskit/concepts/ttl_policy.hpp>
#include <rediskit/detail/info.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/detail/to_int.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/near_cache.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/describe/class.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace rediskit {

/// The distributed guard of async_get_or_load (see the top of cache_service.hpp).
struct LoadLock {
  bool enabled = true;  ///< false: processes do not wait for each other (single flight stays)
  std::chrono::milliseconds ttl = std::chrono::seconds(10);  ///< the longest a load may hold it
  std::chrono::milliseconds poll = std::chrono::milliseconds(20);  ///< waiting processes poll
};

/// CacheService's options; the defaults are seed 000's.
struct CacheOptions {
  std::string key_prefix = "cache";  ///< keys are `{key_prefix}:{key}` (seed 000: keyPrefix)
  std::int64_t max_scan_count = 100;  ///< SCAN COUNT of each step (seed 000: maxScanCount)
  LoadLock load_lock{};
  /// The key layout (top of cache_service.hpp); nullopt: default_key_layout_v<B> (clustered on
  /// ClusterBackend, plain elsewhere).
  std::optional<KeyLayout> key_layout{};
  /// An in-process copy of the values async_get, async_get_multiple and async_get_or_load
  /// read, dropped by CLIENT TRACKING as soon as any client writes them
  /// (rediskit/near_cache.hpp; RedisBackend and ClusterBackend); max_entries 0 (the default):
  /// none. Off under a TTL policy that renews on read (SlidingTtl): a value served from memory
  /// would not renew its key. With it on, start this cache's operations from one thread at a
  /// time (its backend's executor, or a strand), as UserCache's.
  NearCacheOptions near{};
};

/// Counters of one CacheService (this process), as seed 003's getCacheStats and more.
struct CacheStats {
  std::uint64_t hits = 0;            ///< reads that found a value
  std::uint64_t misses = 0;          ///< reads that found none
  std::uint64_t writes = 0;          ///< values written (set, set_multiple, loads)
  std::uint64_t deletes = 0;         ///< keys deleted (del, patterns, tags, cascades, flush)
  std::uint64_t loads = 0;           ///< loader calls
  std::uint64_t load_errors = 0;     ///< loader calls that failed
  std::uint64_t coalesced = 0;       ///< misses served by another caller's load (single flight)
  std::uint64_t lock_waits = 0;      ///< loads that waited for another process's
  std::uint64_t stale_loads = 0;     ///< loads not written back: an invalidation overtook them
  std::uint64_t decode_errors = 0;   ///< stored values that did not decode
};
// Described: RedisManager::metrics_text() exposes every member.
BOOST_DESCRIBE_STRUCT(CacheStats, (),
                      (hits, misses, writes, deletes, loads, load_errors, coalesced, lock_waits,
                       stale_loads, decode_errors))

/// Seed 003's {mode, entries, redisAvailable}, and the server's evictions.
struct CacheStatus {
  std::string_view mode;           ///< the backend's name: "redis", "memory", "fake"
  std::int64_t entries = 0;        ///< keys in the backend's database (DBSIZE)
  bool available = false;          ///< the backend reported healthy
  std::int64_t evicted_keys = 0;   ///< keys the server evicted under maxmemory (INFO stats)
  std::int64_t expired_keys = 0;   ///< keys that expired (INFO stats)
};

/// One entry of async_set_multiple (a std::pair<key, value> range works too).
template <class T>
struct CacheEntry {
  std::string key;
  T value;
  CacheEntry(std::string k, T v) : key(std::move(k)), value(std::move(v)) {}
};

namespace detail::cache {

using boost::system::error_code;

inline std::int64_t ms_or_zero(std::optional<std::chrono::milliseconds> t) {
  return t ? t->count() : 0;
}

/// Multi-key commands (MGET, DEL) over `keys`, whose strings stay where they are: one command
/// for all of them when `by_slot` is false (one node), else one per hash slot (a cluster
/// refuses a multi-key command whose keys span slots). `keys` is reordered by slot (stably);
/// `order`, when given, receives for each position the index its key had before.
template <class Cmd>
std::vector<Cmd> per_slot(std::vector<std::string_view>& keys, bool by_slot,
                          std::vector<std::size_t>* order = nullptr) {
  std::vector<Cmd> out;
  if (order) {
    order->resize(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) (*order)[i] = i;
  }
  if (keys.empty()) return out;
  if (!by_slot) {
    out.push_back(Cmd{.keys = keys});
    return out;
  }
  std::vector<std::pair<std::uint16_t, std::size_t>> at;  // (slot, index): sorted, stable
  at.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i)
    at.emplace_back(rediskit::cluster::key_slot(keys[i]), i);
  std::sort(at.begin(), at.end());
  std::vector<std::string_view> sorted;
  sorted.reserve(keys.size());
  for (std::size_t i = 0; i < at.size(); ++i) {
    sorted.push_back(keys[at[i].second]);
    if (order) (*order)[i] = at[i].second;
  }
  keys = std::move(sorted);
  for (std::size_t i = 0; i < at.size();) {
    std::size_t j = i;
    while (j < at.size() && at[j].first == at[i].first) ++j;
    out.push_back(Cmd{.keys = std::span<std::string_view const>(keys.data() + i, j - i)});
    i = j;
  }
  return out;
}

/// The bookkeeping prefix `{p}~` (see the top of cache_service.hpp).
inline std::string internal_prefix(std::string_view key_prefix, KeyLayout layout) {
  std::string_view const p = key_prefix.empty() ? std::string_view("rediskit") : key_prefix;
  std::string out;
  if (layout == KeyLayout::plain) {
    out.assign(p);
  } else {
    for (char c : p) {
      if (c == '{')
        out += "%7B";
      else if (c == '%')
        out += "%25";
      else
        out.push_back(c);
    }
  }
  out.push_back('~');
  return out;
}

// --- scripts ---------------------------------------------------------------------------------

// KEYS[1] a tag set; ARGV: ttl ms of the tagged value (0: none), member (the user key).
// Prunes the entries whose expiry passed, adds the member scored by its expiry, and gives the
// tag set the TTL of its longest entry.
inline std::int64_t tag_add_twin(ScriptContext auto& ctx) {
  auto const tag = ctx.keys()[0];
  auto args = ctx.args();
  std::int64_t const ttl = to_int(args[0]);
  std::int64_t const now = ctx.unix_ms();
  ctx.call(cmd::zremrangebyscore{.key = tag, .max = ScoreBound::excl(double(now))});
  double const score = ttl > 0 ? double(now + ttl) : ScoreBound::pos_inf().value;
  ctx.call(cmd::zadd{.key = tag, .members = ScoreMember{score, args[1]}});
  auto top = ctx.call(cmd::zrange_withscores{.key = tag, .start = -1, .stop = -1});
  if (std::isinf(top.at(0).second))
    ctx.call(cmd::persist{tag});
  else
    ctx.call(cmd::pexpire{.key = tag,
                          .ttl = std::chrono::milliseconds(
                              static_cast<std::int64_t>(top.at(0).second) - now + 1)});
  return 1;
}

inline auto const tag_add = make_script<std::int64_t>(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if ttl > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
else
  redis.call('ZADD', KEYS[1], '+inf', ARGV[2])
end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] == 'inf' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], tonumber(top[2]) - now + 1)
end
return 1
)lua",
                                          [](ScriptContext auto& c) { return tag_add_twin(c); });

// KEYS[1] a tag set: its members, and the set deleted, atomically (a member added after is
// kept for the next invalidation).
inline std::vector<std::string> tag_take_twin(ScriptContext auto& ctx) {
  auto members = ctx.call(cmd::zrange{.key = ctx.keys()[0]});
  ctx.call(cmd::del{.keys = ctx.keys()[0]});
  return members;
}

inline auto const tag_take = make_script<std::vector<std::string>>(
    R"lua(
local m = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return m
)lua",
    [](ScriptContext auto& c) { return tag_take_twin(c); });

// KEYS: value key, its lock (one slot in the clustered layout); ARGV: token, value, ttl ms
// (0: none). Writes only if the lock still holds this load's token: an invalidation deletes
// the lock before the value (see the top of this file).
inline std::int64_t write_back_twin(ScriptContext auto& ctx) {
  auto keys = ctx.keys();
  auto args = ctx.args();
  auto lock = ctx.call(cmd::get{keys[1]});
  if (!lock || *lock != args[0]) return 0;
  ctx.call(cmd::del{.keys = keys[1]});
  std::int64_t const ttl = to_int(args[2]);
  if (ttl > 0)
    ctx.call(cmd::set{.key = keys[0], .value = args[1], .ttl = std::chrono::milliseconds(ttl)});
  else
    ctx.call(cmd::set{.key = keys[0], .value = args[1]});
  return 1;
}

inline auto const write_back = make_script<std::int64_t>(R"lua(
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
)lua",
                                             [](ScriptContext auto& c) { return write_back_twin(c); });

using TagTake = decltype(tag_take());
using Dels = std::span<cmd::del const>;

/// Every deletion of the service is this one batch type, so that each backend compiles it
/// once: tag sets read and emptied, then locks, then values (an invalidation round, a walk
/// step, async_del, the undo of a set_with_tags). Its reply: Deleted.
inline auto deletion(std::span<TagTake const> takes, Dels locks, Dels values) {
  return batch(takes, locks, values);
}
using Deleted = std::tuple<std::vector<std::vector<std::string>>, std::vector<std::int64_t>,
                           std::vector<std::int64_t>>;

/// The values that a deletion deleted.
inline std::int64_t values_deleted(Deleted const& r) {
  std::int64_t n = 0;
  for (auto d : std::get<2>(r)) n += d;
  return n;
}

// KEYS[1] lock key; ARGV[1] token: deletes the lock if it is still this token's.
inline std::int64_t release_twin(ScriptContext auto& ctx) {
  auto lock = ctx.call(cmd::get{ctx.keys()[0]});
  if (!lock || *lock != ctx.args()[0]) return 0;
  return ctx.call(cmd::del{.keys = ctx.keys()[0]});
}

inline auto const release = make_script<std::int64_t>(R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
)lua",
                                          [](ScriptContext auto& c) { return release_twin(c); });

// --- loaders ---------------------------------------------------------------------------------

template <class T>
struct is_awaitable : std::false_type {};
template <class T, class E>
struct is_awaitable<boost::asio::awaitable<T, E>> : std::true_type {};

template <class R>
struct loaded {
  using type = R;
};
template <class T, class E>
struct loaded<boost::asio::awaitable<T, E>> {
  using type = T;
};

/// A loader takes the key (`loader(std::string const& key)`) or nothing (`loader()`, as
/// cache-manager's wrap(key, fn)); it is called as it takes it.
template <class Loader>
decltype(auto) call_loader(Loader& loader, std::string const& key) {
  if constexpr (std::is_invocable_v<Loader&, std::string const&>)
    return loader(key);
  else
    return loader();
}

struct NotALoader {};
template <class Loader>
struct loader_call {
  using type = NotALoader;  // load_impl's static_assert says what a loader is
};
template <class Loader>
  requires std::is_invocable_v<Loader&, std::string const&> || std::is_invocable_v<Loader&>
struct loader_call<Loader> {
  using type = decltype(call_loader(std::declval<Loader&>(), std::declval<std::string const&>()));
};
template <class Loader>
using loader_call_t = typename loader_call<Loader>::type;

/// What the loader gives: T, or std::optional<T> (nullopt: nothing to cache).
template <class Loader>
using loader_result_t = typename loaded<loader_call_t<Loader>>::type;

/// A loader, erased: one LoadOp type per (T, R), whatever the loader's type. start() loads
/// `key` and calls `done(exception, result)`: inline for a plain function, through `ex` for a
/// coroutine (co_spawn). It lives in the operation's stable block until the load completes (a
/// coroutine loader may keep references to its closure and to `key`).
template <class R>
struct ErasedLoader {
  virtual ~ErasedLoader() = default;
  virtual void start(std::string const& key, boost::asio::any_io_executor const& ex,
                     rediskit::detail::AnyHandler<void(std::exception_ptr, R)> done) = 0;
};

template <class R, class Loader>
struct LoaderImpl final : ErasedLoader<R> {
  explicit LoaderImpl(Loader l) : loader(std::move(l)) {}
  void start(std::string const& key, boost::asio::any_io_executor const& ex,
             rediskit::detail::AnyHandler<void(std::exception_ptr, R)> done) override {
    if constexpr (is_awaitable<loader_call_t<Loader>>::value) {
      boost::asio::co_spawn(ex, call_loader(loader, key), std::move(done));
    } else {
      std::exception_ptr e;
      R r{};
      try {
        r = call_loader(loader, key);
      } catch (...) {
        e = std::current_exception();
      }
      std::move(done)(e, std::move(r));
    }
  }
  Loader loader;
};

/// A caller waiting for another caller's load: gets its bytes (null: nothing loaded), or its
/// error and the error's detail, through its own executor.
struct Waiter {
  virtual ~Waiter() = default;
  virtual void deliver(boost::asio::any_io_executor const& ex, error_code ec,
                       std::shared_ptr<std::string const> bytes, std::string detail) = 0;
};

template <class Handler>
struct WaiterImpl final : Waiter {
  explicit WaiterImpl(Handler h) : handler(std::move(h)) {}
  void deliver(boost::asio::any_io_executor const& ex, error_code ec,
               std::shared_ptr<std::string const> bytes, std::string detail) override {
    detail::post_handler(ex, std::move(handler), ec, std::move(bytes), std::move(detail));
  }
  Handler handler;
};

/// Shared state of the loads in flight of one cache (single flight).
struct Flight {
  std::vector<std::unique_ptr<Waiter>> waiters;
};

struct Shared {
  std::mutex mutex;
  std::unordered_map<std::string, Flight> flights;  // by value key
  std::atomic<std::uint64_t> hits{0}, misses{0}, writes{0}, deletes{0}, loads{0},
      load_errors{0}, coalesced{0}, lock_waits{0}, stale_loads{0}, decode_errors{0};
  std::atomic<std::uint64_t> token_counter{0};
  std::string token_base;
};

}  // namespace detail::cache

/// See the top of this file.
template <Backend B, Codec C = JsonCodec, TtlPolicy P = FixedTtl>
class CacheService {
  template <class Token, class Sig>
  static constexpr bool token_for = boost::asio::completion_token_for<Token, Sig>;
  using error_code = boost::system::error_code;
  using ms = std::chrono::milliseconds;

 public:
  using backend_type = B;
  using codec_type = C;
  using ttl_policy_type = P;

  explicit CacheService(B& backend, CacheOptions options = {}, C codec = {}, P ttl = {})
      : backend_(&backend),
        options_(std::move(options)),
        codec_(std::move(codec)),
        ttl_(std::move(ttl)),
        layout_(options_.key_layout.value_or(default_key_layout_v<B>)),
        keys_(options_.key_prefix),
        internal_(detail::cache::internal_prefix(options_.key_prefix, layout_)),
        shared_(std::make_shared<detail::cache::Shared>()),
        near_(backend, {keys_.key("")}, ttl_.read_ttl() ? NearCacheOptions{} : options_.near) {
    std::random_device rd;
    shared_->token_base = std::to_string(rd()) + "." + std::to_string(rd()) + ".";
    if (options_.max_scan_count < 1) options_.max_scan_count = 1;
  }

  B& backend() const noexcept { return *backend_; }
  KeySpace const& key_space() const noexcept { return keys_; }
  CacheOptions const& options() const noexcept { return options_; }
  /// The layout of this cache's keys (options.key_layout, or the backend's default).
  KeyLayout key_layout() const noexcept { return layout_; }

  // --- seed 000 ------------------------------------------------------------------------------

  /// set(key, value[, ttl]): stores `value` (encoded by the codec) with the policy's TTL, or
  /// `ttl`. Handler: void(error_code).
  template <class T, class Token = boost::asio::deferred_t>
    requires token_for<Token, void(error_code)>
  auto async_set(std::string_view key, T const& value, Token&& token = {}) {
    return set_impl(key, value, std::nullopt, std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_set(std::string_view key, T const& value, ms ttl, Token&& token = {}) {
    return set_impl(key, value, ttl, std::forward<Token>(token));
  }

  /// get(key): the value, or nullopt when there is none. Handler:
  /// void(error_code, std::optional<T>); Error::decode_failed when the stored bytes are not
  /// a T (with `diag`: which key and field).
  template <class T, class Token = boost::asio::deferred_t>
    requires token_for<Token, void(error_code, std::optional<T>)>
  auto async_get(std::string_view key, Token&& token = {}) {
    return get_impl<T>(key, nullptr, std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_get(std::string_view key, Diagnostics& diag, Token&& token = {}) {
    return get_impl<T>(key, &diag, std::forward<Token>(token));
  }

  /// del(key): true when a value was deleted. A load of `key` in flight will not write its
  /// value back (its lock is deleted first, in the same request). Handler:
  /// void(error_code, bool).
  template <class Token = boost::asio::deferred_t>
  auto async_del(std::string_view key, Token&& token = {}) {
    return detail::initiate<void(error_code, bool)>(
        std::forward<Token>(token), [this, k = keys_.key(key), l = lock_key(key), bad = key.empty()](auto h) {
          if (bad) return reject(std::move(h), false);
          near_.invalidate(k);
          cmd::del const lock{.keys = l}, value{.keys = k};
          backend_->async_exec(
              detail::cache::deletion({}, {&lock, 1}, {&value, 1}),
              detail::then(std::move(h),
                           [sh = shared_](error_code&, detail::cache::Deleted const& r) {
                             auto const n = detail::cache::values_deleted(r);
                             sh->deletes += n;
                             return n > 0;
                           }));
        });
  }

  /// exists(key). Handler: void(error_code, bool).
  template <class Token = boost::asio::deferred_t>
  auto async_exists(std::string_view key, Token&& token = {}) {
    return detail::initiate<void(error_code, bool)>(
        std::forward<Token>(token), [this, k = keys_.key(key), bad = key.empty()](auto h) {
          if (bad) return reject(std::move(h), false);
          backend_->async_exec(cmd::exists{.keys = k},
                               detail::then(std::move(h), [](error_code&, std::int64_t n) { return n > 0; }));
        });
  }

  /// renewTTL(key, ttl): true when the key exists and now expires after `ttl`. Handler:
  /// void(error_code, bool).
  template <class Token = boost::asio::deferred_t>
  auto async_renew_ttl(std::string_view key, ms ttl, Token&& token = {}) {
    return detail::initiate<void(error_code, bool)>(
        std::forward<Token>(token), [this, k = keys_.key(key), ttl, bad = key.empty() || ttl.count() <= 0](auto h) {
          if (bad) return reject(std::move(h), false);
          backend_->async_exec(cmd::pexpire{.key = k, .ttl = ttl},
                               detail::then(std::move(h), [](error_code&, bool b) { return b; }));
        });
  }

  /// setMultiple(entries[, ttl]): every entry written in one round trip. `entries` is a range
  /// of CacheEntry<T> or of pairs (key, value), e.g. a std::map. Handler: void(error_code).
  template <class Entries, class Token = boost::asio::deferred_t>
    requires token_for<Token, void(error_code)>
  auto async_set_multiple(Entries const& entries, Token&& token = {}) {
    return set_multiple_impl(entries, std::nullopt, std::forward<Token>(token));
  }
  template <class Entries, class Token = boost::asio::deferred_t>
  auto async_set_multiple(Entries const& entries, ms ttl, Token&& token = {}) {
    return set_multiple_impl(entries, ttl, std::forward<Token>(token));
  }

  /// getMultiple(keys): one value (or nullopt) per key, in the order of `keys`, in one round
  /// trip. A value that does not decode is nullopt and the operation completes with
  /// Error::decode_failed (the others are still there). Handler:
  /// void(error_code, std::vector<std::optional<T>>).
  template <class T, class Token = boost::asio::deferred_t>
    requires token_for<Token, void(error_code, std::vector<std::optional<T>>)>
  auto async_get_multiple(ArgList<std::string_view> keys, Token&& token = {}) {
    return get_multiple_impl<T>(keys, nullptr, std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_get_multiple(ArgList<std::string_view> keys, Diagnostics& diag,
                          Token&& token = {}) {
    return get_multiple_impl<T>(keys, &diag, std::forward<Token>(token));
  }

  /// deletePattern(pattern): deletes this cache's keys matching `pattern` (SCAN, never KEYS);
  /// loads in flight of keys it matches do not write back (their locks go first, in a walk of
  /// their own). Handler: void(error_code, std::size_t deleted).
  template <class Token = boost::asio::deferred_t>
  auto async_delete_pattern(GlobPattern const& pattern, Token&& token = {}) {
    near_.clear();  // what the pattern covers is known only once walked
    std::vector<Walk> walks;
    walks.emplace_back(lock_pattern(pattern), false);
    walks.emplace_back(keys_.pattern(pattern), true);
    return detail::erased_compose<void(error_code, std::size_t)>(
        std::forward<Token>(token), ScanOp<false>(this, std::move(walks)), backend_->get_executor());
  }

  /// keys(pattern): this cache's keys matching `pattern` (without the prefix), through SCAN.
  /// Handler: void(error_code, std::vector<std::string>).
  template <class Token = boost::asio::deferred_t>
  auto async_keys(GlobPattern const& pattern, Token&& token = {}) {
    return detail::erased_compose<void(error_code, std::vector<std::string>)>(
        std::forward<Token>(token), ScanOp<true>(this, {Walk(keys_.pattern(pattern), true)}), backend_->get_executor());
  }

  /// flush(): deletes every key of this cache (its prefix) and its bookkeeping (locks first:
  /// no load in flight writes back); other keys of the database stay. Handler:
  /// void(error_code, std::size_t deleted values).
  template <class Token = boost::asio::deferred_t>
  auto async_flush(Token&& token = {}) {
    near_.clear();
    std::vector<Walk> walks;
    walks.emplace_back(escape_glob(internal_) + "*", false);
    walks.emplace_back(keys_.all(), true);
    return detail::erased_compose<void(error_code, std::size_t)>(
        std::forward<Token>(token), ScanOp<false>(this, std::move(walks)), backend_->get_executor());
  }

  // --- seed 002: tags and cascades -----------------------------------------------------------

  /// setWithTags(key, value, tags[, ttl]): stores the value and records it under each tag, in
  /// one batch (not atomic: see Tags at the top of this file); on a failure the value is
  /// deleted again. Handler: void(error_code).
  template <class T, class Token = boost::asio::deferred_t>
    requires token_for<Token, void(error_code)>
  auto async_set_with_tags(std::string_view key, T const& value, ArgList<std::string_view> tags,
                           Token&& token = {}) {
    return set_tagged_impl(key, value, tags, std::nullopt, std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_set_with_tags(std::string_view key, T const& value, ArgList<std::string_view> tags,
                           ms ttl, Token&& token = {}) {
    return set_tagged_impl(key, value, tags, ttl, std::forward<Token>(token));
  }

  /// invalidateByTag(tag): deletes every key recorded under `tag`, and the tag; loads in
  /// flight of those keys do not write back. Two round trips. Handler:
  /// void(error_code, std::size_t deleted).
  template <class Token = boost::asio::deferred_t>
  auto async_invalidate_by_tag(std::string_view tag, Token&& token = {}) {
    near_.clear();  // the tag's keys are known only once read
    return invalidate_impl(tag, false, std::forward<Token>(token));
  }

  /// invalidateCascade(key): deletes `key`, the keys tagged with `key`, the keys tagged with
  /// those, and so on (each once); loads in flight of those keys do not write back. One round
  /// trip per level, plus one. Handler: void(error_code, std::size_t deleted).
  template <class Token = boost::asio::deferred_t>
  auto async_invalidate_cascade(std::string_view key, Token&& token = {}) {
    near_.clear();
    return invalidate_impl(key, true, std::forward<Token>(token));
  }

  // --- seed 001: cache-aside -----------------------------------------------------------------

  /// The cached value of `key`, or the loader's (then cached). `loader(std::string const& key)`
  /// (or `loader()`, which then knows its key) returns T, std::optional<T> (nullopt: nothing to cache, the caller gets nullopt), or a
  /// boost::asio::awaitable of either (a coroutine querying a database). Handler:
  /// void(error_code, R) where R is what the loader returns (awaitable unwrapped).
  template <class T, class Loader, class Token = boost::asio::deferred_t>
    requires token_for<Token, void(error_code, detail::cache::loader_result_t<Loader>)>
  auto async_get_or_load(std::string_view key, Loader loader, Token&& token = {}) {
    return load_impl<T>(key, std::move(loader), std::nullopt, nullptr, std::forward<Token>(token));
  }
  template <class T, class Loader, class Token = boost::asio::deferred_t>
    requires token_for<Token, void(error_code, detail::cache::loader_result_t<Loader>)>
  auto async_get_or_load(std::string_view key, Loader loader, ms ttl, Token&& token = {}) {
    return load_impl<T>(key, std::move(loader), ttl, nullptr, std::forward<Token>(token));
  }
  template <class T, class Loader, class Token = boost::asio::deferred_t>
  auto async_get_or_load(std::string_view key, Loader loader, Diagnostics& diag,
                         Token&& token = {}) {
    return load_impl<T>(key, std::move(loader), std::nullopt, &diag, std::forward<Token>(token));
  }

  // --- statistics ----------------------------------------------------------------------------

  /// The near cache's counters (all 0 when it is off: options.near, a Redis or cluster backend).
  NearCacheStats near_stats() const { return near_.stats(); }
  /// The near cache of the reads (enabled() says whether it is on).
  NearCache<std::string>& near_cache() noexcept { return near_; }

  /// This cache's counters (this process).
  CacheStats stats() const noexcept {
    auto const& s = *shared_;
    return {s.hits, s.misses, s.writes, s.deletes, s.loads, s.load_errors, s.coalesced,
            s.lock_waits, s.stale_loads, s.decode_errors};
  }

  /// Seed 003's {mode, entries, available} and the server's eviction counters, in one round
  /// trip. Handler: void(error_code, CacheStatus).
  template <class Token = boost::asio::deferred_t>
  auto async_status(Token&& token = {}) {
    return detail::async_then<void(error_code, CacheStatus)>(
        *backend_, token, [] { return batch(cmd::dbsize{}, cmd::info{"stats"}); },
        [b = backend_](error_code&, std::tuple<std::int64_t, std::string> r) {
          CacheStatus s;
          if constexpr (requires { b->mode(); })
            s.mode = b->mode();  // FallbackBackend: the backend in charge now
          else
            s.mode = B::name;
          s.entries = std::get<0>(r);
          s.available = b->health() == HealthStatus::ok;
          s.evicted_keys = info_field(std::get<1>(r), "evicted_keys");
          s.expired_keys = info_field(std::get<1>(r), "expired_keys");
          return s;
        });
  }

 private:
  using Shared = detail::cache::Shared;
  using Bytes = std::shared_ptr<std::string const>;

  // The keys of the table at the top of this file.
  std::string lock_key(std::string_view key) const {
    if (layout_ == KeyLayout::clustered) return beside(keys_.key(key), internal_ + "lock:", key);
    return internal_ + "lock:" + std::string(key);
  }
  std::string tag_key(std::string_view tag) const { return internal_ + "tag:" + std::string(tag); }
  // The SCAN MATCH pattern of the locks of the keys that `p` matches.
  std::string lock_pattern(GlobPattern const& p) const {
    if (layout_ == KeyLayout::clustered) return beside_pattern(internal_ + "lock:", p);
    return escape_glob(internal_ + "lock:") + p.text();
  }
  bool by_slot() const noexcept { return layout_ == KeyLayout::clustered; }

  static std::int64_t info_field(std::string_view info, std::string_view name) {
    return detail::to_int(detail::info_value(info, name));
  }

  /// Completes `handler` (through its executor) with Error::invalid_argument.
  template <class Handler, class... Values>
  void reject(Handler&& handler, Values... values) const {
    detail::post_handler(backend_->get_executor(), std::forward<Handler>(handler),
                         make_error_code(Error::invalid_argument), std::move(values)...);
  }

  static bool valid_ttl(std::optional<ms> t) { return !t || t->count() > 0; }

  template <class T>
  std::string encode(T const& value) const {
    std::string bytes;
    codec_.encode(value, bytes);
    return bytes;
  }

  // Keeps only the error: void(error_code, R) -> void(error_code).
  struct DropReply {
    template <class R>
    std::tuple<> operator()(error_code&, R&&) const noexcept {
      return {};
    }
  };
  template <class Handler>
  struct ErrorOnly {
    Handler handler;
    template <class R>
    void operator()(error_code ec, R&&) {
      std::move(handler)(ec);
    }
  };

  template <class T, class Token>
  auto set_impl(std::string_view key, T const& value, std::optional<ms> ttl, Token&& token) {
    return detail::initiate<void(error_code)>(
        std::forward<Token>(token), [this, k = keys_.key(key), v = encode(value), t = ttl_.write_ttl(ttl),
                bad = key.empty() || !valid_ttl(ttl)](auto h) {
          if (bad) return reject(std::move(h));
          shared_->writes++;
          near_.invalidate(k);
          backend_->async_exec(cmd::set{.key = k, .value = v, .ttl = t},
                               ErrorOnly<decltype(h)>{std::move(h)});
        });
  }

  // Decodes one stored value; counts hits, misses and decode errors.
  template <class T>
  std::optional<T> decode(error_code& ec, std::optional<std::string> const& bytes,
                          std::string_view full_key, Diagnostics* diag) const {
    return decode<T>(ec, bytes ? &*bytes : nullptr, full_key, diag);
  }
  template <class T>
  std::optional<T> decode(error_code& ec, std::string const* bytes, std::string_view full_key,
                          Diagnostics* diag) const {
    std::optional<T> out;
    if (ec) return out;
    if (!bytes) {
      shared_->misses++;
      return out;
    }
    shared_->hits++;
    out.emplace();
    std::string why;
    if (auto dec = codec_.decode(*bytes, *out, diag ? &why : nullptr)) {
      shared_->decode_errors++;
      out.reset();
      if (!ec) {
        ec = dec;
        if (diag) diag->detail = "key '" + std::string(keys_.strip(full_key)) + "': " + why;
      }
    }
    return out;
  }

  // One value of many: decoded even after another failed; `first` keeps the first failure
  // (and `diag` its detail).
  template <class T>
  std::optional<T> decode_one(error_code& first, std::string const* bytes,
                              std::string_view full_key, Diagnostics* diag) const {
    error_code ec;
    auto v = decode<T>(ec, bytes, full_key, first ? nullptr : diag);
    if (!first) first = ec;
    return v;
  }

  template <class T, class Token>
  auto get_impl(std::string_view key, Diagnostics* diag, Token&& token) {
    return detail::initiate<void(error_code, std::optional<T>)>(
        std::forward<Token>(token), [this, k = keys_.key(key), diag, bad = key.empty()](auto h) {
          if (bad) return reject(std::move(h), std::optional<T>());
          if (diag) diag->clear();
          if (auto renew = ttl_.read_ttl()) {
            backend_->async_exec(
                batch(cmd::get{k}, cmd::pexpire{.key = k, .ttl = *renew}),
                detail::then(std::move(h), [this, k, diag](error_code& ec,
                                                           std::tuple<std::optional<std::string>, bool> r) {
                  return decode<T>(ec, std::get<0>(r), k, diag);
                }));
          } else {
            if (std::string const* bytes = near_.find(k)) {  // nullptr when it is off
              error_code ec;
              auto v = decode<T>(ec, bytes, k, diag);
              return detail::post_handler(backend_->get_executor(), std::move(h), ec,
                                          std::move(v));
            }
            backend_->async_exec(
                cmd::get{k},
                detail::then(std::move(h), [this, k, diag, fill = near_.begin(k)](
                                               error_code& ec, std::optional<std::string> r) mutable {
                  auto v = decode<T>(ec, r, k, diag);
                  if (v) fill.keep(std::move(*r));
                  return v;
                }));
          }
        });
  }

  template <class Entries, class Token>
  auto set_multiple_impl(Entries const& entries, std::optional<ms> ttl, Token&& token) {
    std::vector<std::string> keys, values;
    bool bad = !valid_ttl(ttl);
    for (auto const& e : entries) {
      auto const& [k, v] = split_entry(e);
      bad |= std::string_view(k).empty();
      keys.push_back(keys_.key(k));
      values.push_back(encode(v));
    }
    return detail::initiate<void(error_code)>(
        std::forward<Token>(token), [this, keys = std::move(keys), values = std::move(values), t = ttl_.write_ttl(ttl),
                bad](auto h) {
          if (bad) return reject(std::move(h));
          std::vector<cmd::set> sets;
          sets.reserve(keys.size());
          for (std::size_t i = 0; i < keys.size(); ++i) {
            near_.invalidate(keys[i]);
            sets.push_back(cmd::set{.key = keys[i], .value = values[i], .ttl = t});
          }
          shared_->writes += sets.size();
          backend_->async_exec(sets, ErrorOnly<decltype(h)>{std::move(h)});
        });
  }

  template <class E>
  static auto split_entry(E const& e) {
    if constexpr (requires { e.key; e.value; })
      return std::tie(e.key, e.value);
    else
      return std::tie(std::get<0>(e), std::get<1>(e));
  }

  template <class T, class Token>
  auto get_multiple_impl(ArgList<std::string_view> keys, Diagnostics* diag, Token&& token) {
    using Result = std::vector<std::optional<T>>;
    std::vector<std::string> full;
    full.reserve(keys.size());
    bool bad = false;
    keys.for_each([&](std::string_view k) {
      bad |= k.empty();
      full.push_back(keys_.key(k));
    });
    return detail::initiate<void(error_code, Result)>(
        std::forward<Token>(token), [this, full = std::move(full), diag, bad](auto h) mutable {
          if (bad) return reject(std::move(h), Result());
          if (diag) diag->clear();
          if (full.empty()) {
            // MGET needs a key: nothing to read is an empty reply, still through the executor.
            return detail::post_handler(backend_->get_executor(), std::move(h), error_code{}, Result());
          }
          // The near cache's values first (decoded now); the rest is read. `slot`: where each
          // key read goes in the result (empty: no near cache, every key is read, in order).
          Result near_values;
          error_code near_ec;
          std::vector<std::size_t> slot;
          std::vector<NearCache<std::string>::Fill> fills;
          if (near_.enabled()) {
            near_values.resize(full.size());
            std::vector<std::string> rest;
            for (std::size_t i = 0; i < full.size(); ++i) {
              if (std::string const* b = near_.find(full[i])) {
                near_values[i] = decode_one<T>(near_ec, b, full[i], diag);
                continue;
              }
              fills.push_back(near_.begin(full[i]));
              slot.push_back(i);
              rest.push_back(std::move(full[i]));
            }
            if (rest.empty())
              return detail::post_handler(backend_->get_executor(), std::move(h), near_ec,
                                          std::move(near_values));
            full = std::move(rest);
          }
          // The handler keeps the names; the commands view them while the operation starts.
          auto names = std::make_shared<std::vector<std::string> const>(std::move(full));
          std::vector<std::string_view> views(names->begin(), names->end());
          std::vector<std::size_t> order;
          auto const reads = detail::cache::per_slot<cmd::mget>(views, by_slot(), &order);
          // The replies of the MGETs (one, or one per slot), in the order of `keys` again.
          using Parts = std::vector<std::vector<std::optional<std::string>>>;
          auto read = [this, diag, names, order = std::move(order), out = std::move(near_values),
                       near_ec, slot = std::move(slot),
                       fills = std::move(fills)](error_code& ec, Parts& parts) mutable {
            std::vector<std::optional<std::string>> bytes(names->size());
            std::size_t at = 0;
            for (auto& part : parts)
              for (auto& v : part)
                if (at < order.size()) bytes[order[at++]] = std::move(v);
            if (out.empty()) out.resize(bytes.size());  // no near cache: every key was read
            if (ec) return Result(out.size());  // the backend failed: no value, as ever
            for (std::size_t i = 0; i < bytes.size(); ++i) {
              auto& v = out[slot.empty() ? i : slot[i]];
              v = decode_one<T>(ec, bytes[i] ? &*bytes[i] : nullptr, (*names)[i], diag);
              if (v && !fills.empty()) fills[i].keep(std::move(*bytes[i]));
            }
            if (!ec) ec = near_ec;
            return std::move(out);
          };
          // SlidingTtl renews each key in the same round trip; the batch is of one type either
          // way (an empty run of PEXPIRE sends nothing), so each backend compiles it once.
          std::vector<cmd::pexpire> touch;
          if (auto renew = ttl_.read_ttl()) {
            touch.reserve(names->size());
            for (auto const& k : *names) touch.push_back({.key = k, .ttl = *renew});
          }
          backend_->async_exec(
              batch(reads, touch),
              detail::then(std::move(h),
                           [read = std::move(read)](error_code& ec,
                                                    std::tuple<Parts, std::vector<bool>> r) mutable {
                             return read(ec, std::get<0>(r));
                           }));
        });
  }

  template <class T, class Token>
  auto set_tagged_impl(std::string_view key, T const& value, ArgList<std::string_view> tags,
                       std::optional<ms> ttl, Token&& token) {
    bool bad = key.empty() || !valid_ttl(ttl);
    auto st = std::make_unique<typename SetTaggedOp::Stable>();
    tags.for_each([&](std::string_view t) {
      bad |= t.empty();
      st->tags.push_back(tag_key(t));
    });
    st->key = keys_.key(key);
    st->member = key;
    st->value = encode(value);
    st->ttl = ttl_.write_ttl(ttl);
    st->ttl_ms = std::to_string(detail::cache::ms_or_zero(st->ttl));
    if (!bad) near_.invalidate(st->key);
    return detail::erased_compose<void(error_code)>(std::forward<Token>(token), SetTaggedOp(this, std::move(st), bad),
                                                    backend_->get_executor());
  }

  // The value, then an entry in each tag set, in one batch; on a failure, the value is deleted
  // again before the error is reported (a value must not stay without its tags).
  struct SetTaggedOp {
    struct Stable {
      std::string key, member, value, ttl_ms;
      std::optional<ms> ttl;
      std::vector<std::string> tags;
    };
    SetTaggedOp(CacheService* s, std::unique_ptr<Stable> p, bool b)
        : svc(s), st(std::move(p)), bad(b) {}
    CacheService* svc;
    std::unique_ptr<Stable> st;  // what the commands view stays on the heap
    bool bad = false;
    error_code failed{};
    enum { start, rejected, writing, undoing } state = start;

    template <class Self>
    void operator()(Self& self) {
      if (state == rejected) return self.complete(make_error_code(Error::invalid_argument));
      if (bad) {  // completes through the executor, never inside the initiating call
        state = rejected;
        return boost::asio::post(svc->backend_->get_executor(), std::move(self));
      }
      state = writing;
      svc->shared_->writes++;
      std::vector<decltype(detail::cache::tag_add())> adds;
      adds.reserve(st->tags.size());
      for (auto const& t : st->tags)
        adds.push_back(detail::cache::tag_add(t, {st->ttl_ms, st->member}));
      svc->backend_->async_exec(
          batch(cmd::set{.key = st->key, .value = st->value, .ttl = st->ttl}, adds),
          std::move(self));
    }
    template <class Self>
    void operator()(Self& self, error_code ec, std::tuple<bool, std::vector<std::int64_t>>) {
      if (!ec) return self.complete({});
      state = undoing;
      failed = ec;
      cmd::del const value{.keys = st->key};
      svc->backend_->async_exec(detail::cache::deletion({}, {}, {&value, 1}), std::move(self));
    }
    template <class Self>
    void operator()(Self& self, error_code, detail::cache::Deleted const&) {
      self.complete(failed);
    }
  };

  template <class Token>
  auto invalidate_impl(std::string_view start, bool cascade, Token&& token) {
    auto st = std::make_unique<typename InvalidateOp::Stable>();
    if (cascade) {
      st->seen.emplace(start);
      st->drop.emplace_back(start);
    }
    st->expand.push_back(tag_key(start));
    return detail::erased_compose<void(error_code, std::size_t)>(
        std::forward<Token>(token), InvalidateOp(this, std::move(st), cascade, start.empty()), backend_->get_executor());
  }

  // Tag and cascade invalidation, breadth first from this process: each round reads and empties
  // the tag sets of one level (one script each) and deletes the locks, then the values, of the
  // keys of that level, in one batch.
  struct InvalidateOp {
    struct Stable {
      std::vector<std::string> expand;  // tag sets to read and empty in this round
      std::vector<std::string> drop;    // keys (as the user names them) to delete in this round
      std::vector<std::string> locks, values;  // their full names
      std::unordered_set<std::string> seen;
    };
    InvalidateOp(CacheService* s, std::unique_ptr<Stable> p, bool c, bool b)
        : svc(s), st(std::move(p)), cascade(c), bad(b) {}
    CacheService* svc;
    std::unique_ptr<Stable> st;  // what the commands view stays on the heap
    bool cascade = false;
    bool bad = false;
    bool rejected = false;
    std::size_t deleted = 0;

    template <class Self>
    void operator()(Self& self) {
      if (rejected) return self.complete(make_error_code(Error::invalid_argument), std::size_t{0});
      if (bad) {
        rejected = true;
        return boost::asio::post(svc->backend_->get_executor(), std::move(self));
      }
      round(self);
    }

    template <class Self>
    void round(Self& self) {
      st->locks.clear();
      st->values.clear();
      for (auto const& k : st->drop) {
        st->locks.push_back(svc->lock_key(k));
        st->values.push_back(svc->keys_.key(k));
      }
      std::vector<decltype(detail::cache::tag_take())> takes;
      takes.reserve(st->expand.size());
      for (auto const& t : st->expand) takes.push_back(detail::cache::tag_take(t));
      std::vector<std::string_view> lock_views(st->locks.begin(), st->locks.end());
      std::vector<std::string_view> value_views(st->values.begin(), st->values.end());
      auto const lock_dels = detail::cache::per_slot<cmd::del>(lock_views, svc->by_slot());
      auto const value_dels = detail::cache::per_slot<cmd::del>(value_views, svc->by_slot());
      // A key's lock goes before its value: in this order on one node, and on a cluster too
      // (a lock and its value share a slot, so a master, whose part of the batch keeps order).
      svc->backend_->async_exec(detail::cache::deletion(takes, lock_dels, value_dels),
                                std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, detail::cache::Deleted r) {
      auto const n = detail::cache::values_deleted(r);
      deleted += static_cast<std::size_t>(n);
      svc->shared_->deletes += n;
      if (ec) return self.complete(ec, deleted);
      std::vector<std::string> next;
      for (auto& members : std::get<0>(r))
        for (auto& m : members)
          if (st->seen.insert(m).second) next.push_back(std::move(m));
      st->expand.clear();
      if (cascade)
        for (auto const& k : next) st->expand.push_back(svc->tag_key(k));
      st->drop = std::move(next);
      if (st->expand.empty() && st->drop.empty()) return self.complete({}, deleted);
      round(self);
    }
  };

  // SCAN walks in steps of max_scan_count (see the top of this file): one walk that lists the
  // values matching a pattern, or walks that delete (a DEL per step that found keys): the
  // locks, then the values, for a pattern; the bookkeeping, then the values, for flush.
  struct Walk {
    std::string pattern;
    bool values = false;  // counts as deleted values (else: bookkeeping)
    Walk(std::string p, bool v) : pattern(std::move(p)), values(v) {}
  };
  template <bool List>
  struct ScanOp {
    ScanOp(CacheService* s, std::vector<Walk> w) : svc(s), st(std::make_unique<Stable>()) {
      st->walks = std::move(w);
    }
    // What the commands view stays on the heap: the op itself moves into the backend's
    // handler while a command starts.
    struct Stable {
      std::vector<Walk> walks;
      std::vector<std::string> found;
    };
    CacheService* svc;
    std::unique_ptr<Stable> st;
    std::size_t walk = 0;
    std::uint64_t cursor = 0;
    std::size_t deleted = 0;

    template <class Self>
    void operator()(Self& self) {
      step(self);
    }
    template <class Self>
    void operator()(Self& self, error_code ec, ScanPage page) {
      if (ec) return finish(self, ec);
      cursor = page.cursor;
      auto& keys = page.keys;
      // With an empty prefix the bookkeeping is in the values' key space: never list it.
      if (st->walks[walk].values)
        std::erase_if(keys, [&](std::string const& k) { return k.starts_with(svc->internal_); });
      if constexpr (List) {
        for (auto& k : keys) st->found.emplace_back(svc->keys_.strip(k));
        return next(self);
      } else {
        if (keys.empty()) return next(self);
        st->found = std::move(keys);
        std::vector<std::string_view> views(st->found.begin(), st->found.end());
        auto const dels = detail::cache::per_slot<cmd::del>(views, svc->by_slot());
        // As values, or as bookkeeping (not counted).
        if (st->walks[walk].values)
          svc->backend_->async_exec(detail::cache::deletion({}, {}, dels), std::move(self));
        else
          svc->backend_->async_exec(detail::cache::deletion({}, dels, {}), std::move(self));
      }
    }
    template <class Self>
    void operator()(Self& self, error_code ec, detail::cache::Deleted const& r) {
      if (ec) return finish(self, ec);
      auto const n = detail::cache::values_deleted(r);
      deleted += static_cast<std::size_t>(n);
      svc->shared_->deletes += n;
      next(self);
    }

    template <class Self>
    void next(Self& self) {
      if (cursor != 0) return step(self);
      if (++walk == st->walks.size()) return finish(self, {});
      step(self);
    }

    template <class Self>
    void step(Self& self) {
      svc->backend_->async_exec(cmd::scan{.cursor = cursor,
                                          .match = st->walks[walk].pattern,
                                          .count = svc->options_.max_scan_count},
                                std::move(self));
    }

    template <class Self>
    void finish(Self& self, error_code ec) {
      if constexpr (List)
        self.complete(ec, ec ? std::vector<std::string>() : std::move(st->found));
      else
        self.complete(ec, deleted);
    }
  };

  // --- get_or_load -----------------------------------------------------------------------------

  template <class T, class Loader, class Token>
  auto load_impl(std::string_view key, Loader loader, std::optional<ms> ttl, Diagnostics* diag,
                 Token&& token) {
    using R = detail::cache::loader_result_t<Loader>;
    if constexpr (std::is_same_v<R, detail::cache::NotALoader>) {
      static_assert(std::is_same_v<R, Loader>,  // always false, with one message
                    "async_get_or_load<T>: the loader must be callable as "
                    "loader(std::string const& key) or loader()");
    } else {
      static_assert(std::is_same_v<R, T> || std::is_same_v<R, std::optional<T>>,
                    "async_get_or_load<T>: the loader must return T, std::optional<T>, or an "
                    "awaitable of one of them");
      return detail::erased_compose<void(error_code, R)>(
          std::forward<Token>(token),
          LoadOp<T, R>(this, std::string(key), keys_.key(key),
                       std::make_unique<detail::cache::LoaderImpl<R, Loader>>(std::move(loader)),
                       ttl, diag, key.empty() || !valid_ttl(ttl)),
          backend_->get_executor());
    }
  }

  // One type per (T, R): the loader and the caller's handler are erased (erased_compose).
  template <class T, class R>
  struct LoadOp {
    using Loader = std::unique_ptr<detail::cache::ErasedLoader<R>>;
    static constexpr bool may_be_absent = !std::is_same_v<R, T>;
    LoadOp(CacheService* s, std::string k, std::string f, Loader l, std::optional<ms> t,
           Diagnostics* d, bool b)
        : svc(s),
          st(std::make_unique<Stable>(std::move(k), std::move(f), std::move(l))),
          ttl(t),
          diag(d),
          bad(b) {}
    // What must stay at one address while the op moves from handler to handler: the strings
    // its commands view (the op moves into the backend's handler as the command starts), and
    // what a coroutine loader keeps references to (its `key` parameter, its closure).
    struct Stable {
      Stable(std::string k, std::string f, Loader l)
          : key(std::move(k)), full(std::move(f)), loader(std::move(l)) {}
      std::string key;   // as the caller named it
      std::string full;  // with the prefix
      Loader loader;
      std::string lock_key, token, bytes;
    };
    CacheService* svc;
    std::unique_ptr<Stable> st;
    std::optional<ms> ttl;
    Diagnostics* diag;
    bool bad = false;
    // Leader state.
    bool locked = false;
    bool waited = false;
    std::optional<T> value;
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::chrono::steady_clock::time_point wait_until{};
    // The first read's near-cache ticket: its value is kept as async_get keeps one.
    std::optional<typename NearCache<std::string>::Fill> fill;
    enum { reading, locking, polling, loading, writing, rejected, near_hit } state = reading;

    template <class Self>
    void operator()(Self& self) {
      if (state == rejected) return self.complete(make_error_code(Error::invalid_argument), R());
      if (state == near_hit) return complete(self, {}, std::move(*value));
      if (bad) {  // completes through the executor, never inside the initiating call
        state = rejected;
        return boost::asio::post(svc->backend_->get_executor(), std::move(self));
      }
      if (diag) diag->clear();
      if (auto renew = svc->ttl_.read_ttl()) {
        svc->backend_->async_exec(batch(cmd::get{st->full}, cmd::pexpire{.key = st->full, .ttl = *renew}),
                                  std::move(self));
      } else {
        if (std::string const* kept = svc->near_.find(st->full)) {  // nullptr when it is off
          T v{};
          if (!svc->codec_.decode(*kept, v, nullptr)) {
            svc->shared_->hits++;
            value = std::move(v);
            state = near_hit;
            return boost::asio::post(svc->backend_->get_executor(), std::move(self));
          }
        }
        fill.emplace(svc->near_.begin(st->full));
        svc->backend_->async_exec(cmd::get{st->full}, std::move(self));
      }
    }
    template <class Self>
    void operator()(Self& self, error_code ec, std::tuple<std::optional<std::string>, bool> r) {
      (*this)(self, ec, std::move(std::get<0>(r)));
    }

    // The first read, or a poll while another process loads.
    template <class Self>
    void operator()(Self& self, error_code ec, std::optional<std::string> found) {
      if (ec) return leader_fail(self, ec, {});
      if (found) {
        T v{};
        std::string why;
        if (!svc->codec_.decode(*found, v, &why)) {
          svc->shared_->hits++;
          if (state == polling) return publish_and_complete(self, std::move(v), std::move(*found));
          if (fill) fill->keep(std::move(*found));
          return complete(self, {}, std::move(v));
        }
        svc->shared_->decode_errors++;  // a value that does not decode: reload it
      }
      fill.reset();  // a miss: nothing to keep from this read
      if (state == polling) return lock(self);
      svc->shared_->misses++;
      // Single flight: join a load in flight, or lead one.
      {
        std::lock_guard lk(svc->shared_->mutex);
        auto [it, leader] = svc->shared_->flights.try_emplace(st->full);
        if (!leader) {
          svc->shared_->coalesced++;
          it->second.waiters.push_back(
              std::make_unique<detail::cache::WaiterImpl<Self>>(std::move(self)));
          return;
        }
      }
      lock(self);
    }

    // A waiter: the leader's bytes arrive (null: nothing loaded), or its error.
    template <class Self>
    void operator()(Self& self, error_code ec, std::shared_ptr<std::string const> loaded,
                    std::string detail) {
      if (ec) {
        if (diag) diag->detail = std::move(detail);
        return self.complete(ec, R());
      }
      if (!loaded) return self.complete({}, R());
      T v{};
      std::string why;
      if (auto dec = svc->codec_.decode(*loaded, v, &why)) {
        svc->shared_->decode_errors++;
        if (diag) diag->detail = "key '" + st->key + "': " + why;
        return self.complete(dec, R());
      }
      self.complete({}, R(std::move(v)));
    }

    template <class Self>
    void lock(Self& self) {
      auto const& opt = svc->options_.load_lock;
      state = locking;
      st->token = svc->shared_->token_base + std::to_string(++svc->shared_->token_counter);
      if (wait_until == std::chrono::steady_clock::time_point{})
        wait_until = std::chrono::steady_clock::now() + opt.ttl;
      st->lock_key = svc->lock_key(st->key);
      svc->backend_->async_exec(
          batch(cmd::set{.key = st->lock_key, .value = st->token, .ttl = opt.ttl, .nx = opt.enabled},
                cmd::get{st->full}),
          std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec,
                    std::tuple<bool, std::optional<std::string>> r) {
      if (ec) return leader_fail(self, ec, {});
      locked = std::get<0>(r);
      // Read in the same round trip as the lock: another process may have written the value
      // (and released its lock) between our miss and our SET NX. Then it is not loaded again.
      if (auto& found = std::get<1>(r)) {
        T v{};
        std::string why;
        if (!svc->codec_.decode(*found, v, &why)) {
          release_lock();
          return publish_and_complete(self, std::move(v), std::move(*found));
        }
      }
      if (!locked && std::chrono::steady_clock::now() < wait_until) {
        // Another process loads this key: poll for its value.
        if (!waited) svc->shared_->lock_waits++;
        waited = true;
        state = polling;
        if (!timer) timer = std::make_unique<boost::asio::steady_timer>(svc->backend_->get_executor());
        timer->expires_after(svc->options_.load_lock.poll);
        return timer->async_wait(std::move(self));
      }
      load(self);  // locked, or waited long enough: load (and write back only if locked)
    }

    template <class Self>
    void operator()(Self& self, error_code) {  // the poll timer
      svc->backend_->async_exec(cmd::get{st->full}, std::move(self));
    }

    template <class Self>
    void load(Self& self) {
      state = loading;
      svc->shared_->loads++;
      // A plain function completes inside start(), which touches nothing of this op after.
      Stable& stable = *st;
      stable.loader->start(stable.key, svc->backend_->get_executor(),
                           detail::AnyHandler<void(std::exception_ptr, R)>(std::move(self)));
    }

    template <class Self>
    void operator()(Self& self, std::exception_ptr e, R r) {
      if (e) {
        svc->shared_->load_errors++;
        std::string what = "loader of key '" + st->key + "' failed";
        try {
          std::rethrow_exception(e);
        } catch (std::exception const& x) {
          what += ": ";
          what += x.what();
        } catch (...) {
        }
        release_lock();
        return leader_fail(self, make_error_code(Error::load_failed), std::move(what));
      }
      if constexpr (may_be_absent) {
        if (!r) {
          release_lock();
          return publish_and_complete(self, std::nullopt, {});
        }
        value.emplace(std::move(*r));
      } else {
        value.emplace(std::move(r));
      }
      svc->codec_.encode(*value, st->bytes);
      if (!locked) {
        svc->shared_->stale_loads++;
        return publish_and_complete(self, std::move(value), std::move(st->bytes));
      }
      state = writing;
      std::string const ttl_ms = std::to_string(detail::cache::ms_or_zero(svc->ttl_.write_ttl(ttl)));
      svc->backend_->async_exec(detail::cache::write_back({st->full, st->lock_key},
                                                         {st->token, st->bytes, ttl_ms}),
                                std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::int64_t written) {
      if (ec) return leader_fail(self, ec, {});
      if (written)
        svc->shared_->writes++;
      else
        svc->shared_->stale_loads++;
      publish_and_complete(self, std::move(value), std::move(st->bytes));
    }

    void release_lock() {
      if (!locked) return;
      locked = false;
      // Best effort (the lock expires anyway): delete it if it is still ours.
      svc->backend_->async_exec(detail::cache::release({st->lock_key}, {st->token}),
                                [](error_code, std::int64_t) {});
    }

    std::vector<std::unique_ptr<detail::cache::Waiter>> take_waiters() {
      std::lock_guard lk(svc->shared_->mutex);
      auto it = svc->shared_->flights.find(st->full);
      if (it == svc->shared_->flights.end()) return {};
      auto w = std::move(it->second.waiters);
      svc->shared_->flights.erase(it);
      return w;
    }

    template <class Self>
    void publish_and_complete(Self& self, std::optional<T> v, std::string b) {
      std::shared_ptr<std::string const> shared;
      if (v) shared = std::make_shared<std::string const>(std::move(b));
      for (auto& w : take_waiters()) w->deliver(svc->backend_->get_executor(), {}, shared, {});
      if constexpr (may_be_absent)
        self.complete({}, std::move(v));
      else
        self.complete({}, std::move(*v));
    }

    template <class Self>
    void leader_fail(Self& self, error_code ec, std::string detail) {
      if (state != reading) {
        for (auto& w : take_waiters()) w->deliver(svc->backend_->get_executor(), ec, {}, detail);
      }
      if (diag) diag->detail = std::move(detail);
      self.complete(ec, R());
    }

    template <class Self>
    void complete(Self& self, error_code ec, T v) {
      self.complete(ec, R(std::move(v)));
    }
  };

  B* backend_;
  CacheOptions options_;
  C codec_;
  P ttl_;
  KeyLayout layout_;
  KeySpace keys_;
  std::string internal_;
  std::shared_ptr<Shared> shared_;
  // Off unless options.near.max_entries (and a Redis or cluster backend).
  NearCache<std::string> near_;
};

}  // namespace rediskit
