// rediskit::detail::mem::Engine: MemoryBackend's synchronous in-process engine with Redis
// semantics. One keyspace of typed values with TTLs, exact expiry, an optional memory bound
// with LRU eviction, and the hooks every command family uses.
//
// How a command runs: MemoryBackend (under its lock) calls Engine::begin(now) once per batch,
// then Engine::exec(ctx, command) for each command. exec finds `run(Ctx&, cmd::X const&)` by
// argument-dependent lookup (overloads live in run_*.hpp beside this file, one per command),
// then finish()es: every key the command wrote is re-accounted, deleted when it became an empty
// container (as Redis does), and reported to blocked readers; then keys are evicted while the
// memory bound is exceeded.
//
// Rules for run() overloads:
//  - read with `db.read<T>(ctx, key)`, write with `db.write<T>(ctx, key)` (existing only) or
//    `db.create<T>(ctx, key)` (created empty when missing); each returns nullptr when the key
//    holds another type, after setting ctx's error to WRONGTYPE: return {} then.
//  - errors: `return ctx.fail("ERR ..."), reply{};` with the server's exact text; the error code
//    is derived from the text as for a real server (rediskit::server_error_code).
//  - time: ctx.now_ms() (engine clock, milliseconds, for TTLs), ctx.unix_ms() (wall clock),
//    read once per operation when first needed.
#pragma once

#include <rediskit/backend/detail/memory/arity.hpp>
#include <rediskit/backend/detail/memory/list.hpp>
#include <rediskit/backend/detail/memory/scan_map.hpp>
#include <rediskit/backend/detail/memory/stream.hpp>
#include <rediskit/backend/detail/memory/zset.hpp>
#include <rediskit/cluster/route.hpp>
#include <rediskit/command.hpp>
#include <rediskit/error.hpp>

#include <boost/system/error_code.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace rediskit::detail::mem {

using Hash = ScanMap<std::string>;
using Set = ScanMap<Empty>;

/// A value; the index is the type (TYPE's answer: see type_name).
using Value = std::variant<std::string, List, Set, ZSet, Hash, Stream>;

inline constexpr std::string_view type_names[] = {"string", "list", "set", "zset", "hash",
                                                  "stream"};

inline std::string_view type_name(Value const& v) noexcept { return type_names[v.index()]; }

inline constexpr std::string_view wrongtype_text =
    "WRONGTYPE Operation against a key holding the wrong kind of value";

struct Entry {
  Value value;
  std::int64_t expire_at = 0;  ///< engine ms; 0 = no TTL
  std::size_t expiry_pos = 0;  ///< with a TTL: its place in the engine's expiry heap
  std::uint64_t gen = 0;       ///< unique per entry life: touched records are checked against it
  std::size_t bytes = 0;       ///< accounted size (key + value + overhead)
  Entry* lru_prev = nullptr;   ///< towards the most recently used
  Entry* lru_next = nullptr;   ///< towards the least recently used
  std::string const* key = nullptr;  ///< the keyspace's own copy of the key
  std::size_t slot = 0;              ///< the keyspace slot (fixed for the entry's life)
};

class Engine;
class PubSub;

/// The time of one operation, read from the clock policy when a command first needs it (a GET
/// on a keyspace without TTLs reads no clock), then the same for every command of the
/// operation: a batch or a script runs at one instant, as on a server.
class Time {
 public:
  template <class Clock>
  static Time of(Clock const& c) noexcept {
    Time t;
    t.clock_ = &c;
    t.read_now_ = [](void const* k) { return static_cast<Clock const*>(k)->now_ms(); };
    t.read_unix_ = [](void const* k) { return static_cast<Clock const*>(k)->unix_ms(); };
    return t;
  }
  /// Engine clock (monotonic milliseconds: TTLs, idle times, timeouts).
  std::int64_t now_ms() {
    if (now_ < 0) now_ = read_now_(clock_);
    return now_;
  }
  /// Wall clock (milliseconds since 1970: TIME, stream ids).
  std::int64_t unix_ms() {
    if (unix_ < 0) unix_ = read_unix_(clock_);
    return unix_;
  }

 private:
  void const* clock_ = nullptr;
  std::int64_t (*read_now_)(void const*) = nullptr;
  std::int64_t (*read_unix_)(void const*) = nullptr;
  std::int64_t now_ = -1;  // -1: not read yet
  std::int64_t unix_ = -1;
};

/// The context of one command: the engine, the operation's time, and the command's error.
struct Ctx {
  Engine& db;
  Time* time;
  boost::system::error_code ec{};
  std::string error{};  ///< the server's text for ec ("WRONGTYPE ...")

  std::int64_t now_ms() const { return time->now_ms(); }
  std::int64_t unix_ms() const { return time->unix_ms(); }

  /// A context for another command of the same operation (same time, its own error).
  Ctx fork() const noexcept { return Ctx{db, time}; }

  /// Fails the command with the server's error text; the code comes from the text, as for a
  /// reply of a real server. Returns false so that `return ctx.fail(...), T{}` reads well.
  bool fail(std::string_view text) {
    if (!ec) {
      ec = make_error_code(server_error_code(text));
      error.assign(text);
    }
    return false;
  }
  bool failed() const noexcept { return bool(ec); }
};

struct EngineConfig {
  /// Bound on the accounted bytes of all keys and values (0: none). Beyond it, the least
  /// recently used keys are evicted after each command (Redis's allkeys-lru).
  std::size_t max_memory = 0;
  /// Redis Cluster's key rules (MemoryConfig::cluster_checks).
  bool cluster_checks = false;
};

/// The server's reply to keys of one command, transaction or script in different slots.
inline constexpr std::string_view cross_slot_error = "CROSSSLOT Keys in request don't hash to the same slot";

struct EngineStats {
  std::uint64_t commands = 0;
  std::uint64_t expired_keys = 0;
  std::uint64_t evicted_keys = 0;
};

class Engine {
 public:
  explicit Engine(EngineConfig cfg = {}) : cfg_(cfg) {}
  Engine(Engine const&) = delete;
  Engine& operator=(Engine const&) = delete;

  // ---- driving (MemoryBackend) ---------------------------------------------------------------

  /// Starts an operation: every key whose TTL is due is deleted first, so no command ever sees
  /// an expired key and counts are exact. Reads the clock only when some key has a TTL.
  void begin(Time& t) {
    if (!expiries_.empty()) purge_expired(t.now_ms());
  }

  /// Runs one command. Its error, if any, is in ctx.ec / ctx.error, and the reply is then a
  /// value-initialized reply_t<C>.
  template <Command C>
  reply_t<C> exec(Ctx& ctx, C const& c) {
    static_assert(requires { run(ctx, c); },
                  "MemoryBackend does not implement this command: no "
                  "`run(rediskit::detail::mem::Ctx&, C const&)` overload is visible (include "
                  "<rediskit/backend/memory_backend.hpp>, which includes every command family)");
    return exec_with(ctx, c, [&] { return run(ctx, c); });
  }

  /// Runs one read command as exec does, with the reply as views of the engine's own bytes
  /// (`view_of(Ctx&, cmd::X const&)` overloads beside the run() ones), valid until a command
  /// writes. For script twins (ScriptCtx::view) that read many members.
  template <Command C>
  auto exec_view(Ctx& ctx, C const& c) {
    return exec_with(ctx, c, [&] { return view_of(ctx, c); });
  }

  /// The server's error for a wrong argument count of `c` (empty when it fits): commands with
  /// lists (DEL with no key, ...) can be built with a count the server refuses.
  template <Command C>
  static std::string check_arity(C const& c) {
    static int const arity = arity_of(name_and_argc(c).first);
    ArgCounter n;
    c.write(n);
    if (arity_fits(arity, n.count)) return {};
    return arity_error(name_and_argc(c).first, n.count);
  }

  // ---- for run() overloads -------------------------------------------------------------------

  /// The entry of `key`, or nullptr. Counts as an access (LRU).
  Entry* lookup(std::string_view key) {
    Entry* e = keys_.find(key);
    if (e) touch(*e);
    return e;
  }

  /// The value of `key` as a T for reading; nullptr when missing, or when of another type
  /// (then ctx fails with WRONGTYPE).
  template <class T>
  T* read(Ctx& ctx, std::string_view key) {
    Entry* e = lookup(key);
    if (!e) return nullptr;
    if (T* v = std::get_if<T>(&e->value)) return v;
    ctx.fail(wrongtype_text);
    return nullptr;
  }

  /// As read(), and the key is marked written (re-accounted, removed if left empty).
  template <class T>
  T* write(Ctx& ctx, std::string_view key) {
    T* v = read<T>(ctx, key);
    if (v) written(*keys_.find_node(key));
    return v;
  }

  /// As write(), but a missing key is created with an empty T. nullptr only on WRONGTYPE.
  template <class T>
  T* create(Ctx& ctx, std::string_view key) {
    auto [node, inserted] = keys_.emplace(key);
    Entry& e = node->second.value;
    if (inserted) {
      init_entry(*node);
      e.value.template emplace<T>();
    } else if (!std::holds_alternative<T>(e.value)) {
      ctx.fail(wrongtype_text);
      return nullptr;
    }
    touch(e);
    written(*node);
    return &std::get<T>(e.value);
  }

  /// Sets `key` to `v`, whatever it held; the TTL is cleared unless keep_ttl.
  Entry& put(std::string_view key, Value v, bool keep_ttl = false) {
    auto [node, inserted] = keys_.emplace(key);
    Entry& e = node->second.value;
    if (inserted) {
      init_entry(*node);
    } else if (!keep_ttl) {
      set_expire(e, 0);
    }
    e.value = std::move(v);
    touch(e);
    written(*node);
    return e;
  }

  /// Deletes `key`. True when it existed.
  bool erase(std::string_view key) {
    auto* node = keys_.find_node(key);
    if (!node) return false;
    erase_node(node);
    return true;
  }

  /// Sets the TTL of `e` to the engine time at_ms (0: persistent). An at_ms not after now is
  /// the caller's business (Redis deletes the key instead: use erase).
  /// O(log n): the expiry heap holds each key with a TTL once, and knows its place.
  void set_expire(Entry& e, std::int64_t at_ms) {
    bool const had = e.expire_at != 0;
    e.expire_at = at_ms;
    if (at_ms == 0) {
      if (had) expiry_remove(e);
    } else if (!had) {
      e.expiry_pos = expiries_.size();
      expiries_.push_back(&e);
      expiry_up(e.expiry_pos);
    } else {
      expiry_fix(e.expiry_pos);
    }
  }

  /// Marks an entry found by lookup() as written (for values changed in place).
  void written(Entry& e) { written(*keys_.find_node(*e.key)); }

  /// The keyspace (SCAN, DBSIZE, FLUSHDB, RANDOMKEY).
  ScanMap<Entry>& keys() noexcept { return keys_; }
  ScanMap<Entry> const& keys() const noexcept { return keys_; }

  /// Deletes every key.
  void flush() {
    keys_.clear();
    lru_head_ = lru_tail_ = nullptr;
    expiries_.clear();
    used_ = 0;
    touched_.clear();
  }

  /// Accounted bytes of all keys and values.
  std::size_t used_memory() const noexcept { return used_; }
  std::size_t keys_with_ttl() const noexcept { return expiries_.size(); }
  EngineStats const& stats() const noexcept { return stats_; }
  EngineConfig const& config() const noexcept { return cfg_; }
  void set_max_memory(std::size_t bytes) { cfg_.max_memory = bytes; }

  // ---- blocked readers (MemoryBackend) ---------------------------------------------------------

  /// Keys that blocked commands wait on (counted); a written key among them is reported by
  /// take_signaled().
  void watch(std::string_view key) { ++watched_[std::string(key)]; }
  void unwatch(std::string_view key) {
    auto it = watched_.find(key);
    if (it != watched_.end() && --it->second == 0) watched_.erase(it);
  }
  std::vector<std::string> take_signaled() { return std::exchange(signaled_, {}); }

  /// The backend's subscribers, for PUBLISH (set by MemoryBackend).
  PubSub* pubsub = nullptr;

 private:
  using KeyNode = ScanMap<Entry>::Node;

  void init_entry(KeyNode& node) {
    Entry& e = node.second.value;
    e.gen = ++next_gen_;
    e.key = &node.first;
    e.slot = node.second.slot;
  }

  void written(KeyNode& node) {
    touched_.push_back({node.second.slot, node.second.value.gen});
  }

  // Most recently used at the head.
  void touch(Entry& e) {
    if (lru_head_ == &e) return;
    unlink(e);
    e.lru_next = lru_head_;
    if (lru_head_) lru_head_->lru_prev = &e;
    lru_head_ = &e;
    if (!lru_tail_) lru_tail_ = &e;
  }
  void unlink(Entry& e) {
    if (e.lru_prev) e.lru_prev->lru_next = e.lru_next;
    if (e.lru_next) e.lru_next->lru_prev = e.lru_prev;
    if (lru_head_ == &e) lru_head_ = e.lru_next;
    if (lru_tail_ == &e) lru_tail_ = e.lru_prev;
    e.lru_prev = e.lru_next = nullptr;
  }

  void erase_node(KeyNode* node) {
    Entry& e = node->second.value;
    unlink(e);
    used_ -= e.bytes;
    if (e.expire_at != 0) expiry_remove(e);
    signal(node->first);
    keys_.erase(std::string_view(node->first));
  }

  static std::size_t value_bytes(Value const& v) noexcept {
    return std::visit(
        [](auto const& x) -> std::size_t {
          if constexpr (std::is_same_v<std::remove_cvref_t<decltype(x)>, std::string>)
            return x.size();
          else
            return x.bytes();
        },
        v);
  }
  static bool empty_container(Value const& v) noexcept {
    return std::visit(
        [](auto const& x) -> bool {
          using X = std::remove_cvref_t<decltype(x)>;
          if constexpr (std::is_same_v<X, std::string> || std::is_same_v<X, Stream>)
            return false;  // empty strings and empty streams are kept, as in Redis
          else
            return x.empty();
        },
        v);
  }

  void signal(std::string const& key) {
    if (!watched_.empty() && watched_.find(std::string_view(key)) != watched_.end())
      signaled_.push_back(key);
  }

  // exec's steps around `body` (run or view_of): count, arity, slots, then finish().
  template <Command C, class Body>
  auto exec_with(Ctx& ctx, C const& c, Body&& body) -> decltype(body()) {
    using R = decltype(body());
    ++stats_.commands;
    if (std::string err = check_arity(c); !err.empty()) {
      ctx.fail(err);
      return R{};
    }
    if (cfg_.cluster_checks && rediskit::cluster::route(c).cross_slot) {
      ctx.fail(cross_slot_error);
      return R{};
    }
    R r = body();
    finish();
    if (ctx.failed()) return R{};
    return r;
  }

  // After each command: re-account written keys, drop emptied containers, wake readers,
  // evict beyond the memory bound.
  void finish() {
    for (auto [slot, gen] : touched_) {
      KeyNode* node = keys_.node_at(slot);
      if (!node || node->second.value.gen != gen) continue;  // deleted meanwhile
      Entry& e = node->second.value;
      if (empty_container(e.value)) {
        erase_node(node);
        continue;
      }
      std::size_t const b = node->first.size() + value_bytes(e.value) + kEntryOverhead;
      used_ = used_ - e.bytes + b;
      e.bytes = b;
      signal(node->first);
    }
    touched_.clear();
    if (cfg_.max_memory != 0) {
      while (used_ > cfg_.max_memory && lru_tail_) {
        ++stats_.evicted_keys;
        erase_node(keys_.find_node(*lru_tail_->key));
      }
    }
  }

  void purge_expired(std::int64_t now_ms) {
    while (!expiries_.empty() && expiries_.front()->expire_at <= now_ms) {
      ++stats_.expired_keys;
      erase_node(keys_.node_at(expiries_.front()->slot));
    }
  }

  // The expiry heap: a binary min-heap on expire_at of the entries with a TTL, each entry
  // holding its index (expiry_pos), so that a renewed, persisted or deleted key moves or leaves
  // it in O(log n). (Until 2026-12-07 it was a priority_queue of records checked when popped,
  // rebuilt by a walk of the whole keyspace when stale records piled up: a stall of 40-50 ms
  // every few seconds under the chat server's load.)
  void expiry_put(std::size_t i, Entry* e) noexcept {
    expiries_[i] = e;
    e->expiry_pos = i;
  }
  void expiry_up(std::size_t i) noexcept {
    Entry* const e = expiries_[i];
    while (i > 0) {
      std::size_t const parent = (i - 1) / 2;
      if (expiries_[parent]->expire_at <= e->expire_at) break;
      expiry_put(i, expiries_[parent]);
      i = parent;
    }
    expiry_put(i, e);
  }
  void expiry_down(std::size_t i) noexcept {
    Entry* const e = expiries_[i];
    std::size_t const n = expiries_.size();
    for (;;) {
      std::size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && expiries_[c + 1]->expire_at < expiries_[c]->expire_at) ++c;
      if (e->expire_at <= expiries_[c]->expire_at) break;
      expiry_put(i, expiries_[c]);
      i = c;
    }
    expiry_put(i, e);
  }
  void expiry_fix(std::size_t i) noexcept {
    if (i > 0 && expiries_[(i - 1) / 2]->expire_at > expiries_[i]->expire_at)
      expiry_up(i);
    else
      expiry_down(i);
  }
  void expiry_remove(Entry& e) noexcept {
    std::size_t const i = e.expiry_pos;
    Entry* const last = expiries_.back();
    expiries_.pop_back();
    if (last == &e) return;
    expiry_put(i, last);
    expiry_fix(i);
  }

  static constexpr std::size_t kEntryOverhead = 64;

  EngineConfig cfg_;
  ScanMap<Entry> keys_;
  std::vector<Entry*> expiries_;  // the expiry heap (see expiry_up)
  std::uint64_t next_gen_ = 0;
  std::vector<std::pair<std::size_t, std::uint64_t>> touched_;
  Entry* lru_head_ = nullptr;
  Entry* lru_tail_ = nullptr;
  std::size_t used_ = 0;
  EngineStats stats_{};
  std::unordered_map<std::string, std::size_t, TransparentHash, std::equal_to<>> watched_;
  std::vector<std::string> signaled_;
};

}  // namespace rediskit::detail::mem
