// rediskit::FallbackBackend: Redis while it answers, memory while it does not (seed 003's
// RedisWrapper), as a Backend of its own, so that every service runs on it unchanged.
//
//   rediskit::FallbackBackend<> db(ioc, rediskit::RedisConfig::from_env(),
//                                  {.writes = rediskit::DegradedWrites::replay});
//   co_await db.async_connect();            // optional: else the first commands may go to memory
//   rediskit::CacheService<rediskit::FallbackBackend<>, rediskit::JsonCodec> cache(db);
//   db.stats().mode;                        // "redis" or "memory" (seed 003's getCacheStats)
//
// Routing. A command goes to the primary (RedisBackend) while the backend is in primary mode:
// the primary's link is up and its CircuitBreaker lets the call through. It goes to the
// secondary (MemoryBackend) otherwise. The switch to memory happens at once when the link is
// seen down (a command completing with a connection error, the primary's health at a command
// or at the periodic check: which also catches a silent server, through the connection's own
// PING health check), or when the breaker opens (too many timeouts). One log line says so; the
// errors themselves go to counters only (seed 003's ECONNRESET noise).
//
// Switching back. While on memory, the primary is probed with PING every
// `health_check_interval`, through the breaker (after `breaker.open_for`, `breaker.probes`
// probes decide). Once it has answered every probe for `grace_period`, the backend goes back to
// it, with one log line. The very first switch (Redis was down at start-up) needs no grace
// period. What was written to memory meanwhile follows `writes`:
//  - DegradedWrites::discard (a cache; the default): the memory copy is dropped on the switch
//    back, since Redis holds the truth. Nothing written during the outage is served afterwards.
//  - DegradedWrites::replay: every write command run on memory is also logged (its arguments,
//    owned; a script call as EVAL with its source, so a restarted server that lost its script
//    cache runs it; PUBLISH and SPUBLISH are not logged: a notification is not replayed late).
//    On the switch back the log is sent to Redis in order, `replay_batch` commands per round
//    trip, a transaction as one MULTI/EXEC, and then the memory copy is dropped. The log is
//    bounded by `max_replay_bytes`: a write that does not fit is counted (stats().replay_dropped)
//    and logged once per outage, never silently lost. A command Redis refuses during the replay
//    (e.g. WRONGTYPE) is counted in replay_rejected. If the link breaks during a replay, the
//    round trip that was written may have run: it is not sent again (that could apply it twice)
//    and is counted in replay_uncertain; the rest stays logged for the next switch back.
// Relative TTLs replayed late start again from the replay (a SET with EX made during the
// outage lives a little longer on Redis).
//
// Commands in flight on the primary when its link breaks complete with the connection's error
// (Error::connection_lost: it may have run; Error::not_connected: it did not). They are not run
// again on memory: the backend does not keep a command after it was sent (commands view their
// caller's data), and running a write that may have run would apply it twice. The primary must
// therefore not keep requests waiting for a reconnection: the RedisConfig constructor turns the
// offline queue off; give your own primary `offline_queue = false` as well.
//
// Subscribers (make_subscriber()) subscribe on both backends and merge what they receive: a
// message published through this backend reaches them whichever side it went to. A
// subscription the primary could not take (Redis down) is retried every second until it can.
// A blocking read (BLMOVE, XREADGROUP BLOCK) waits where it was sent: on memory it keeps waiting
// there after a switch back, until its timeout.
//
// Memory stays bounded while degraded: the secondary is a MemoryBackend with `max_memory` and
// LRU eviction (the RedisConfig constructor's default: 256 MiB), and the replay log has its own
// bound.
//
// Not thread-safe: use it from one thread (or strand), as the backends it wraps; completion
// handlers must run there too (the default: the backend's executor).
#pragma once

#include <rediskit/backend/detail/exec_overloads.hpp>
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/backend/subscriber.hpp>
#include <rediskit/circuit_breaker.hpp>
#include <rediskit/cluster/route.hpp>
#include <rediskit/cmd/server.hpp>
#include <rediskit/command.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/join.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/redis_config.hpp>
#include <rediskit/resp3/adapt.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/describe/class.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit {

/// What happens to the writes made on memory while Redis was away (see the top of this file).
enum class DegradedWrites : std::uint8_t {
  discard,  ///< dropped on the switch back: Redis holds the truth (a cache)
  replay,   ///< sent to Redis, in order, on the switch back; bounded, overflow counted
};

struct FallbackConfig {
  DegradedWrites writes = DegradedWrites::discard;
  /// How often the primary's health is looked at, and (while on memory) probed with PING.
  std::chrono::milliseconds health_check_interval{1000};
  /// How long the primary must answer every probe before commands go back to it.
  std::chrono::milliseconds grace_period{5000};
  /// Counts the primary's outage errors: opens on too many timeouts (a link seen down opens it
  /// at once); while open, commands go to memory; `probes` PINGs decide when it closes.
  CircuitBreakerConfig breaker{.failure_rate = 0.5,
                               .window = 20,
                               .minimum_calls = 10,
                               .open_for = std::chrono::milliseconds(1000),
                               .probes = 3};
  /// Bound of the replay log (arguments' bytes plus a small overhead per argument).
  std::size_t max_replay_bytes = std::size_t{64} << 20;
  /// Commands sent to Redis per round trip during a replay.
  std::size_t replay_batch = 256;
  /// One line per change of mode, replay overflow or failed replay; nothing per command.
  LogSink log{};
};

/// Counters of a FallbackBackend. `mode`, `entries` and `primary_available` are seed 003's
/// getCacheStats() {mode, entries, redisAvailable}.
struct FallbackStats {
  std::string_view mode;           ///< the backend commands go to now: "redis" or "memory"
  bool primary_available = false;  ///< the primary's link is up and commands go to it
  std::size_t entries = 0;         ///< keys held by the secondary
  std::size_t secondary_memory = 0;  ///< its accounted bytes (bounded by its max_memory)
  std::uint64_t primary_commands = 0;    ///< operations sent to the primary
  std::uint64_t secondary_commands = 0;  ///< operations run on the secondary
  /// Operations that completed with a connection or timeout error from the primary (they were
  /// in flight when its link broke).
  std::uint64_t primary_failures = 0;
  std::uint64_t switches_to_secondary = 0;
  std::uint64_t switches_to_primary = 0;
  std::uint64_t probes = 0;         ///< PINGs sent to the primary while on memory
  std::uint64_t failed_probes = 0;
  std::size_t replay_pending = 0;        ///< write commands waiting in the replay log
  std::size_t replay_pending_bytes = 0;  ///< their accounted size (<= max_replay_bytes)
  std::uint64_t replayed = 0;            ///< write commands replayed to the primary
  std::uint64_t replay_dropped = 0;      ///< writes that did not fit in the log
  std::uint64_t replay_rejected = 0;     ///< replayed commands the primary refused
  std::uint64_t replay_uncertain = 0;    ///< replayed when the link broke: may have run
  std::uint64_t discarded_keys = 0;      ///< keys dropped from memory at switches back
  CircuitState breaker = CircuitState::closed;
};
// Described: RedisManager::expose() puts its numbers in the Prometheus text.
BOOST_DESCRIBE_STRUCT(FallbackStats, (),
                      (mode, primary_available, entries, secondary_memory, primary_commands,
                       secondary_commands, primary_failures, switches_to_secondary,
                       switches_to_primary, probes, failed_probes, replay_pending,
                       replay_pending_bytes, replayed, replay_dropped, replay_rejected,
                       replay_uncertain, discarded_keys, breaker))

template <class Primary, class Secondary>
class FallbackSubscriber;

namespace detail::fallback {

/// One logged write, replayed as it was written (its arguments owned).
struct Raw {
  using reply_type = resp3::Result<resp3::Ignore>;
  std::vector<std::string> const* args = nullptr;
  template <class W>
  void write(W& w) const {
    w(ArgList<std::string_view>(*args));
  }
};

/// What the replay log holds: one write command, or a transaction's write commands.
struct Entry {
  bool atomic = false;
  std::vector<std::vector<std::string>> commands;
  std::size_t bytes = 0;
};

using rediskit::cluster::detail::iequals;

/// A write's arguments, owned, ready to replay; empty for a command that is not replayed.
template <class C>
std::vector<std::string> replayable(C const& c) {
  std::vector<std::string> args;
  if constexpr (is_idempotent_v<C> || requires { c.block_timeout(); }) {
    return args;  // a read; or a blocking or consuming read (BLMOVE, XREADGROUP)
  } else {
    ArgExpander out{[&](std::string_view s) { args.emplace_back(s); }};
    c.write(out);
    if (args.empty() || iequals(args[0], "PUBLISH") || iequals(args[0], "SPUBLISH")) return {};
    if constexpr (requires { c.script_source(); }) {
      if (args.size() >= 2 && iequals(args[0], "EVALSHA")) {
        args[0] = "EVAL";
        args[1] = std::string(c.script_source());
      }
    }
    return args;
  }
}

/// A primary that runs logged writes as they were written (a server: RedisBackend,
/// ClusterBackend, yours); the in-memory engine runs typed commands only.
template <class P>
inline constexpr bool replays_raw_v =
    !std::is_base_of_v<BasicMemoryBackend<SteadyClock>, P> &&
    !std::is_base_of_v<BasicMemoryBackend<ManualClock>, P>;

/// Connection and timeout errors except the timeout itself: the link is down.
inline bool link_down(boost::system::error_code const& ec) noexcept {
  return is_outage(ec) && ec != Error::timeout;
}

/// The shared state of a FallbackBackend (its handlers hold it).
template <class Primary, class Secondary>
struct State : std::enable_shared_from_this<State<Primary, Secondary>> {
  using Breaker = CircuitBreaker<SteadyClock>;
  using clock = std::chrono::steady_clock;

  State(Primary p, Secondary s, FallbackConfig c)
      : primary(std::move(p)), secondary(std::move(s)), cfg(std::move(c)), breaker(cfg.breaker),
        timer(primary.get_executor()) {
    if (cfg.health_check_interval.count() <= 0)
      throw Exception(make_error_code(Error::invalid_config),
                      "FallbackConfig::health_check_interval must be positive");
    if (cfg.grace_period.count() < 0)
      throw Exception(make_error_code(Error::invalid_config),
                      "FallbackConfig::grace_period must not be negative");
    if (cfg.writes == DegradedWrites::replay && !replays_raw_v<Primary>)
      throw Exception(make_error_code(Error::invalid_config),
                      "FallbackConfig::writes: DegradedWrites::replay needs a server as the "
                      "primary (RedisBackend, ClusterBackend); " +
                          std::string(Primary::name) + " cannot run replayed commands");
    if (cfg.replay_batch == 0)
      throw Exception(make_error_code(Error::invalid_config),
                      "FallbackConfig::replay_batch must be at least 1");
  }

  Primary primary;
  Secondary secondary;
  FallbackConfig cfg;
  Breaker breaker;
  boost::asio::steady_timer timer;
  bool on_primary = false;  // where commands go
  bool ever_primary = false;
  bool probing = false;
  bool replaying = false;
  bool closed = false;
  bool overflowed = false;  // the replay log was full during this outage
  std::optional<clock::time_point> healthy_since;
  std::deque<Entry> log_entries;
  FallbackStats counts;

  void say(LogLevel level, std::string const& line) const {
    if (cfg.log) cfg.log(level, line);
  }

  void start() {
    arm();
    tick();  // the first probe now: connects the primary
  }

  void arm() {
    timer.expires_after(cfg.health_check_interval);
    timer.async_wait([weak = this->weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->closed) return;
      self->tick();
      self->arm();
    });
  }

  void tick() {
    if (on_primary) {
      if (primary.health() != HealthStatus::ok)
        to_secondary(std::string("its health is ") + std::string(to_string(primary.health())));
      return;
    }
    if (probing || replaying) return;
    auto permit = breaker.try_acquire();
    if (!permit) return;
    probing = true;
    ++counts.probes;
    primary.async_exec(cmd::ping{}, [self = this->shared_from_this(), p = std::move(*permit)](
                                        boost::system::error_code ec, auto const&) mutable {
      self->on_probe(std::move(p), ec);
    });
  }

  void on_probe(typename Breaker::Permit permit, boost::system::error_code ec) {
    probing = false;
    if (closed || on_primary || replaying) return;  // async_connect switched meanwhile
    if (!ec && primary.health() != HealthStatus::ok) ec = make_error_code(Error::not_connected);
    breaker.record(std::move(permit), ec);
    if (ec) {
      ++counts.failed_probes;
      healthy_since.reset();
      if (breaker.state() == CircuitState::closed) breaker.trip();
      return;
    }
    if (breaker.state() != CircuitState::closed) return;  // half open: more probes to come
    auto const now = clock::now();
    if (!healthy_since) healthy_since = now;
    if (!ever_primary || now - *healthy_since >= cfg.grace_period) switch_back();
  }

  void to_secondary(std::string const& why) {
    if (!on_primary) return;
    on_primary = false;
    healthy_since.reset();
    overflowed = false;
    ++counts.switches_to_secondary;
    if (breaker.state() != CircuitState::open) breaker.trip();
    say(LogLevel::warning, std::string("rediskit: ") + std::string(Primary::name) +
                               " unavailable (" + why + "): commands go to " +
                               std::string(Secondary::name) + " until it is back");
  }

  // An operation sent to the primary ended.
  void on_primary_done(typename Breaker::Permit permit, boost::system::error_code ec) {
    if (closed) return;
    if (is_outage(ec)) ++counts.primary_failures;
    breaker.record(std::move(permit), ec);
    if (!on_primary) return;
    if (link_down(ec) && primary.health() != HealthStatus::ok)  // not a stale error
      to_secondary(ec.message());
    else if (breaker.state() != CircuitState::closed)
      to_secondary("too many timeouts: the circuit breaker opened");
  }

  // ---- switching back ------------------------------------------------------------------------

  void switch_back() {
    if constexpr (replays_raw_v<Primary>)
      if (cfg.writes == DegradedWrites::replay && !log_entries.empty()) return replay_next();
    finish_switch_back();
  }

  void finish_switch_back() {
    replaying = false;
    on_primary = true;
    bool const first = !ever_primary;
    ever_primary = true;
    ++counts.switches_to_primary;
    std::uint64_t dropped = 0;
    if constexpr (requires { secondary.stats().keys; }) dropped = secondary.stats().keys;
    counts.discarded_keys += dropped;
    secondary.async_exec(cmd::flushdb{}, [](boost::system::error_code, bool) {});
    say(LogLevel::info, std::string("rediskit: ") + std::string(Primary::name) +
                            (first ? " is up" : " is back") + ": commands go to it (" +
                            std::to_string(dropped) + " keys dropped from " +
                            std::string(Secondary::name) + ", " +
                            std::to_string(counts.replayed) + " writes replayed so far)");
  }

  struct Chunk {
    std::vector<Entry> entries;
    std::vector<Raw> raws;
    std::size_t bytes = 0;
  };

  void replay_next() requires replays_raw_v<Primary> {
    if (closed) return;
    if (log_entries.empty()) return finish_switch_back();
    replaying = true;
    auto chunk = std::make_shared<Chunk>();
    bool const atomic = log_entries.front().atomic;
    std::size_t n = 0;
    while (!log_entries.empty() && log_entries.front().atomic == atomic &&
           (n == 0 || (!atomic && n + log_entries.front().commands.size() <= cfg.replay_batch))) {
      n += log_entries.front().commands.size();
      chunk->bytes += log_entries.front().bytes;
      chunk->entries.push_back(std::move(log_entries.front()));
      log_entries.pop_front();
      if (atomic) break;  // one transaction per round trip
    }
    counts.replay_pending_bytes -= chunk->bytes;
    counts.replay_pending -= n;
    chunk->raws.reserve(n);
    for (auto const& e : chunk->entries)
      for (auto const& c : e.commands) chunk->raws.push_back(Raw{&c});
    auto done = [self = this->shared_from_this(), chunk](boost::system::error_code ec,
                                                         auto const& replies) {
      self->on_replayed(chunk, ec, replies);
    };
    std::span<Raw const> raws(chunk->raws);
    if (atomic)
      primary.async_exec(transaction(raws), std::move(done));
    else
      primary.async_exec(raws, std::move(done));
  }

  static std::size_t refused(std::vector<Raw::reply_type> const& rs) {
    std::size_t k = 0;
    for (auto const& r : rs) k += r.has_error() ? 1 : 0;
    return k;
  }
  static std::size_t refused(std::tuple<std::vector<Raw::reply_type>> const& t) {
    return refused(std::get<0>(t));
  }

  template <class Replies>
  void on_replayed(std::shared_ptr<Chunk> const& chunk, boost::system::error_code ec,
                   Replies const& replies) {
    if (closed) return;
    std::size_t const n = chunk->raws.size();
    if (!is_outage(ec)) {
      // Ran (a refusal inside is counted; an EXECABORT refuses the whole transaction).
      std::size_t const bad = ec && refused(replies) == 0 ? n : refused(replies);
      counts.replayed += n - bad;
      counts.replay_rejected += bad;
      if (bad) say(LogLevel::warning, "rediskit: " + std::string(Primary::name) + " refused " +
                                          std::to_string(bad) + " replayed writes");
      return replay_next();
    }
    replaying = false;
    healthy_since.reset();
    if (breaker.state() != CircuitState::open) breaker.trip();
    // Not sent: it stays first in line. (A cluster splits a round trip per master: a part
    // may have run, so there it counts as uncertain.)
    if (ec == Error::not_connected && std::is_same_v<Primary, RedisBackend>) {
      for (auto it = chunk->entries.rbegin(); it != chunk->entries.rend(); ++it) {
        counts.replay_pending += it->commands.size();
        counts.replay_pending_bytes += it->bytes;
        log_entries.push_front(std::move(*it));
      }
    } else {
      counts.replay_uncertain += n;
      say(LogLevel::error, "rediskit: the link to " + std::string(Primary::name) +
                               " broke during a replay (" + ec.message() + "): " +
                               std::to_string(n) + " replayed writes may or may not have run");
    }
  }

  // ---- the replay log ------------------------------------------------------------------------

  template <class X>
  void record(X const& x) {
    Entry e;
    if constexpr (is_batch_v<X>) e.atomic = X::atomic;
    for_each_command(x, [&](auto const& c) {
      auto args = replayable(c);
      if (args.empty()) return;
      e.bytes += 32;
      for (auto const& a : args) e.bytes += a.size() + 16;
      e.commands.push_back(std::move(args));
    });
    if (e.commands.empty()) return;
    // Past the first write that did not fit, none is logged until the next outage: a gap
    // would replay a later write without an earlier one.
    if (overflowed || counts.replay_pending_bytes + e.bytes > cfg.max_replay_bytes) {
      counts.replay_dropped += e.commands.size();
      if (!overflowed) {
        overflowed = true;
        say(LogLevel::error, "rediskit: the replay log is full (max_replay_bytes " +
                                 std::to_string(cfg.max_replay_bytes) +
                                 "): further writes made on " + std::string(Secondary::name) +
                                 " will not reach " + std::string(Primary::name) +
                                 " during this outage (counted in stats().replay_dropped)");
      }
      return;
    }
    counts.replay_pending += e.commands.size();
    counts.replay_pending_bytes += e.bytes;
    log_entries.push_back(std::move(e));
  }

  void close() {
    if (closed) return;
    closed = true;
    timer.cancel();
    primary.close();
    secondary.close();
  }
};

/// The completion of an operation sent to the primary: records its outcome, then calls the
/// caller's handler. The caller's handler moves into it only when it moves itself (after the
/// primary has written the command, which may view state that moves with that handler).
template <class S, class R>
class PrimaryDone {
  using Sig = void(boost::system::error_code, R);

 public:
  using executor_type = boost::asio::any_io_executor;
  using cancellation_slot_type = boost::asio::cancellation_slot;

  template <class H>
  PrimaryDone(std::shared_ptr<S> st, typename S::Breaker::Permit p, H& h)
      : st_(std::move(st)), permit_(std::move(p)), lazy_(h),
        ex_(boost::asio::get_associated_executor(h, st_->primary.get_executor())),
        slot_(boost::asio::get_associated_cancellation_slot(h)) {}
  PrimaryDone(PrimaryDone&& o) noexcept
      : st_(std::move(o.st_)), permit_(std::move(o.permit_)), lazy_(std::as_const(o.lazy_)),
        h_(o.taken_ ? std::move(o.h_) : o.lazy_()), taken_(true), ex_(std::move(o.ex_)),
        slot_(o.slot_) {
    o.taken_ = true;
  }
  PrimaryDone(PrimaryDone const&) = delete;
  PrimaryDone& operator=(PrimaryDone const&) = delete;
  PrimaryDone& operator=(PrimaryDone&&) = delete;

  using allocator_type = boost::asio::recycling_allocator<void>;

  executor_type get_executor() const noexcept { return ex_; }
  cancellation_slot_type get_cancellation_slot() const noexcept { return slot_; }
  allocator_type get_allocator() const noexcept { return {}; }

  void operator()(boost::system::error_code ec, R r) {
    auto h = taken_ ? std::move(h_) : lazy_();
    taken_ = true;
    st_->on_primary_done(std::move(*permit_), ec);
    std::move(h)(ec, std::move(r));
  }

 private:
  std::shared_ptr<S> st_;
  std::optional<typename S::Breaker::Permit> permit_;
  detail::LazyHandler<Sig> lazy_;
  detail::AnyHandler<Sig> h_;
  bool taken_ = false;
  executor_type ex_;
  cancellation_slot_type slot_;
};

}  // namespace detail::fallback

/// See the top of this file.
template <class Primary = RedisBackend, class Secondary = MemoryBackend>
class FallbackBackend : public detail::ExecOverloads<FallbackBackend<Primary, Secondary>> {
  friend class detail::ExecOverloads<FallbackBackend>;

  using State = detail::fallback::State<Primary, Secondary>;

 public:
  using executor_type = boost::asio::any_io_executor;
  using subscriber_type = FallbackSubscriber<Primary, Secondary>;
  static constexpr std::string_view name = "fallback";
  /// The primary's key layout (clustered over a ClusterBackend): services lay out their keys
  /// for it, and the secondary takes any layout.
  static constexpr KeyLayout key_layout = default_key_layout_v<Primary>;

  /// Any two backends: the primary should fail at once while its link is down (a RedisBackend
  /// with `offline_queue = false`), else commands sent while it reconnects wait for it.
  FallbackBackend(Primary primary, Secondary secondary, FallbackConfig cfg = {})
      : st_(std::make_shared<State>(std::move(primary), std::move(secondary), std::move(cfg))) {
    st_->start();
  }

  /// Redis from `redis` (its offline queue turned off), memory bounded by `memory` (default
  /// 256 MiB with LRU eviction).
  FallbackBackend(executor_type ex, RedisConfig redis, FallbackConfig cfg = {},
                  MemoryConfig memory = {.max_memory = std::size_t{256} << 20})
    requires std::is_same_v<Primary, RedisBackend> && std::is_same_v<Secondary, MemoryBackend>
      : FallbackBackend(RedisBackend(ex, with_fail_fast(std::move(redis))),
                        MemoryBackend(ex, memory), std::move(cfg)) {}
  FallbackBackend(boost::asio::io_context& ioc, RedisConfig redis, FallbackConfig cfg = {},
                  MemoryConfig memory = {.max_memory = std::size_t{256} << 20})
    requires std::is_same_v<Primary, RedisBackend> && std::is_same_v<Secondary, MemoryBackend>
      : FallbackBackend(ioc.get_executor(), std::move(redis), std::move(cfg), memory) {}

  FallbackBackend(FallbackBackend&&) noexcept = default;
  FallbackBackend& operator=(FallbackBackend&&) noexcept = default;
  ~FallbackBackend() {
    if (st_) st_->close();
  }

  executor_type get_executor() const { return st_->primary.get_executor(); }

  /// async_exec (detail::ExecOverloads): runs the command, batch or range on the backend in
  /// charge now.
  using detail::ExecOverloads<FallbackBackend>::async_exec;

  /// Waits for the primary's first connection attempt, and goes to it at once if it
  /// succeeded. Handler: void(error_code): the primary's error (the backend works either way:
  /// on memory until the primary is up).
  template <class Token = boost::asio::deferred_t>
  auto async_connect(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [st = st_](auto handler) {
          auto ex = boost::asio::get_associated_executor(handler, st->primary.get_executor());
          if constexpr (requires(Primary& p) { p.async_connect(); }) {
            st->primary.async_connect(boost::asio::bind_executor(
                ex, [st, h = std::move(handler)](boost::system::error_code ec) mutable {
                  if (!ec && !st->closed && !st->on_primary && !st->ever_primary &&
                      !st->probing && !st->replaying && !st->breaker.forced_open()) {
                    st->breaker.reset();  // a probe sent before the link was up failed
                    st->switch_back();    // replays what was written meanwhile, if asked
                  }
                  std::move(h)(ec);
                }));
          } else {
            detail::post_handler(ex, std::move(handler), boost::system::error_code{});
          }
        },
        token);
  }

  /// A subscriber on both backends (see the top of this file).
  subscriber_type make_subscriber() {
    return subscriber_type(st_->primary.make_subscriber(), st_->secondary.make_subscriber(), st_);
  }

  /// OK on the primary; DEGRADED while commands go to memory.
  HealthStatus health() const noexcept {
    return st_->on_primary ? st_->primary.health() : HealthStatus::degraded;
  }

  /// Seed 003's getCacheStats() and the rest (see FallbackStats).
  FallbackStats stats() const {
    FallbackStats s = st_->counts;
    s.mode = mode();
    s.primary_available = st_->on_primary && st_->primary.health() == HealthStatus::ok;
    if constexpr (requires { st_->secondary.stats().keys; }) {
      auto const m = st_->secondary.stats();
      s.entries = m.keys;
      s.secondary_memory = m.used_memory;
    }
    s.breaker = st_->breaker.state();
    return s;
  }

  /// True while commands go to the primary.
  bool on_primary() const noexcept { return st_->on_primary; }
  /// The name of the backend commands go to now: "redis" or "memory" (seed 003's mode).
  std::string_view mode() const noexcept {
    return st_->on_primary ? Primary::name : Secondary::name;
  }
  Primary& primary() noexcept { return st_->primary; }
  Secondary& secondary() noexcept { return st_->secondary; }
  /// The breaker on the primary: force_open() sends everything to memory (maintenance) until
  /// reset().
  CircuitBreaker<SteadyClock>& breaker() noexcept { return st_->breaker; }
  FallbackConfig const& config() const noexcept { return st_->cfg; }

  /// Stops the health checks and closes both backends.
  void close() { st_->close(); }

 private:
  static RedisConfig with_fail_fast(RedisConfig c) {
    c.offline_queue = false;
    return c;
  }

  template <class R, class X, class Token>
  auto exec_impl(X const& x, Diagnostics* diag, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, R)>(
        // The handler by reference: it moves only once the command is written or run.
        [st = st_](auto&& handler, X const& x, Diagnostics* diag) {
          route<R>(st, x, diag, handler);
        },
        token, x, diag);
  }

  template <class R, class X, class Handler>
  static void route(std::shared_ptr<State> const& st, X const& x, Diagnostics* diag,
                    Handler& handler) {
    if (st->on_primary && !st->closed) {
      if (st->primary.health() != HealthStatus::ok) {
        st->to_secondary(std::string("its health is ") +
                         std::string(to_string(st->primary.health())));
      } else if (auto permit = st->breaker.try_acquire()) {
        ++st->counts.primary_commands;
        detail::fallback::PrimaryDone<State, R> done(st, std::move(*permit), handler);
        if (diag)
          st->primary.async_exec(x, *diag, std::move(done));
        else
          st->primary.async_exec(x, std::move(done));
        return;
      } else {
        st->to_secondary("the circuit breaker is open");
      }
    }
    ++st->counts.secondary_commands;
    if (st->cfg.writes == DegradedWrites::replay && !st->closed) st->record(x);
    if (diag)
      st->secondary.async_exec(x, *diag, std::move(handler));
    else
      st->secondary.async_exec(x, std::move(handler));
  }

  std::shared_ptr<State> st_;
};

/// FallbackBackend's subscriber: subscribed on both backends, receiving from both (see the top
/// of this file). The interface of MemorySubscriber and RedisSubscriber.
template <class Primary, class Secondary>
class FallbackSubscriber {
  using PS = typename Primary::subscriber_type;
  using SS = typename Secondary::subscriber_type;
  enum class Kind : std::uint8_t { channel, pattern, shard };

  struct Pending {
    Kind kind;
    std::vector<std::string> names;
  };

  struct Core : std::enable_shared_from_this<Core> {
    Core(PS p, SS s, std::function<bool()> degraded)
        : primary(std::move(p)), secondary(std::move(s)), is_degraded(std::move(degraded)),
          retry(primary.get_executor()) {}
    PS primary;
    SS secondary;
    std::function<bool()> is_degraded;  // true while the backend sends commands to memory
    boost::asio::steady_timer retry;
    std::deque<Message> queue;
    std::size_t max_queued = 4096;
    bool dropped = false;
    bool resubscribed = false;  // a side's link came back: to report once
    bool closed = false;
    std::optional<detail::AnyHandler<void(boost::system::error_code, Message)>> receiver;
    std::vector<Pending> pending;  // subscriptions the primary still has to take
    std::set<std::pair<Kind, std::string>, std::less<>> wanted;  // subscribed, not unsubscribed

    bool degraded() const { return is_degraded(); }

    template <class Sub>
    void pump(Sub& s) {
      s.async_receive([self = this->shared_from_this(), &s](boost::system::error_code ec,
                                                             Message m) {
        if (self->closed) return;
        if (ec == Error::pushes_dropped) {
          self->dropped = true;
          self->deliver();
        } else if (ec == Error::resubscribed) {
          self->resubscribed = true;
          self->deliver();
        } else if (ec) {
          return;  // closed (or cancelled): this side has ended
        } else {
          if (self->queue.size() >= self->max_queued) {
            self->queue.pop_front();
            self->dropped = true;
          }
          self->queue.push_back(std::move(m));
          self->deliver();
        }
        self->pump(s);
      });
    }

    void deliver() {
      if (!receiver) return;
      auto h = std::move(*receiver);
      receiver.reset();
      if (auto slot = h.cancellation_slot(); slot.is_connected()) slot.clear();
      auto const ex = primary.get_executor();
      if (dropped) {
        dropped = false;
        return detail::post_handler(ex, std::move(h), make_error_code(Error::pushes_dropped),
                                    Message{});
      }
      if (resubscribed) {
        resubscribed = false;
        return detail::post_handler(ex, std::move(h), make_error_code(Error::resubscribed),
                                    Message{});
      }
      if (closed) return detail::post_handler(ex, std::move(h),
                                              make_error_code(Error::connection_closed),
                                              Message{});
      Message m = std::move(queue.front());
      queue.pop_front();
      detail::post_handler(ex, std::move(h), boost::system::error_code{}, std::move(m));
    }

    template <class Sub, class H>
    static void apply(Sub& s, Kind k, bool sub, ArgList<std::string_view> names, H&& h) {
      switch (k) {
        case Kind::channel:
          if (sub) return s.async_subscribe(names, std::forward<H>(h));
          return s.async_unsubscribe(names, std::forward<H>(h));
        case Kind::pattern:
          if (sub) return s.async_psubscribe(names, std::forward<H>(h));
          return s.async_punsubscribe(names, std::forward<H>(h));
        case Kind::shard:
          if (sub) return s.async_ssubscribe(names, std::forward<H>(h));
          return s.async_sunsubscribe(names, std::forward<H>(h));
      }
    }

    // Forget subscriptions to `names` (or all of this kind, for an empty list).
    void forget(Kind k, std::vector<std::string> const& names) {
      std::erase_if(wanted, [&](auto const& w) {
        return w.first == k &&
               (names.empty() || std::find(names.begin(), names.end(), w.second) != names.end());
      });
      for (auto& p : pending) {
        if (p.kind != k) continue;
        if (names.empty()) {
          p.names.clear();
          continue;
        }
        std::erase_if(p.names, [&](std::string const& n) {
          return std::find(names.begin(), names.end(), n) != names.end();
        });
      }
      std::erase_if(pending, [](Pending const& p) { return p.names.empty(); });
    }

    // Names still wanted (not unsubscribed meanwhile) wait for the next try.
    void later(Kind k, std::vector<std::string> names) {
      std::erase_if(names, [&](std::string const& n) { return !wanted.contains({k, n}); });
      if (!closed && !names.empty()) pending.push_back(Pending{k, std::move(names)});
    }

    // Every second: the subscriptions the primary could not take are tried again, and a
    // primary link that gave up reconnecting is started again (it then restores what it had).
    void watch() {
      retry.expires_after(std::chrono::seconds(1));
      retry.async_wait([weak = this->weak_from_this()](boost::system::error_code ec) {
        auto self = weak.lock();
        if (ec || !self || self->closed) return;
        if constexpr (requires { self->primary.connection().async_connect(); }) {
          auto& conn = self->primary.connection();
          if (conn.health() == HealthStatus::disconnected)
            conn.async_connect([](boost::system::error_code) {});
        }
        auto again = std::exchange(self->pending, {});
        for (auto& p : again) self->on_primary(p.kind, std::move(p.names), nullptr);
        self->watch();
      });
    }

    // An outage is no error here: the subscription waits for the primary.
    void on_primary(Kind k, std::vector<std::string> names,
                    std::function<void(boost::system::error_code)> join) {
      std::vector<std::string_view> views(names.begin(), names.end());
      apply(primary, k, true, views,
            [self = this->shared_from_this(), k, names = std::move(names),
             join = std::move(join)](boost::system::error_code ec) mutable {
              if (is_outage(ec)) {
                if (!self->closed) self->later(k, std::move(names));
                ec = {};
              }
              if (join) join(ec);
            });
    }

    void close() {
      if (closed) return;
      closed = true;
      retry.cancel();
      pending.clear();
      primary.close();
      secondary.close();
      deliver();
    }
  };

 public:
  template <class B>
  FallbackSubscriber(PS p, SS s, std::shared_ptr<B> const& backend)
      : core_(std::make_shared<Core>(std::move(p), std::move(s),
                                     [weak = std::weak_ptr<B>(backend)] {
                                       auto b = weak.lock();
                                       return !b || !b->on_primary;
                                     })) {
    core_->pump(core_->primary);
    core_->pump(core_->secondary);
    core_->watch();
  }
  FallbackSubscriber(FallbackSubscriber&&) noexcept = default;
  FallbackSubscriber& operator=(FallbackSubscriber&& o) noexcept {
    if (this != &o) {
      if (core_) core_->close();  // its receive loops hold it: close breaks the cycle
      core_ = std::move(o.core_);
    }
    return *this;
  }
  ~FallbackSubscriber() {
    if (core_) core_->close();
  }

  boost::asio::any_io_executor get_executor() const { return core_->primary.get_executor(); }

  /// Handler: void(error_code), once both backends took it (only memory while degraded: the
  /// primary takes it when it can).
  template <class Token = boost::asio::deferred_t>
  auto async_subscribe(ArgList<std::string_view> channels, Token&& token = {}) {
    return change(Kind::channel, true, channels, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_psubscribe(ArgList<std::string_view> patterns, Token&& token = {}) {
    return change(Kind::pattern, true, patterns, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_ssubscribe(ArgList<std::string_view> channels, Token&& token = {}) {
    return change(Kind::shard, true, channels, std::forward<Token>(token));
  }
  /// An empty list: from every channel.
  template <class Token = boost::asio::deferred_t>
  auto async_unsubscribe(ArgList<std::string_view> channels = {}, Token&& token = {}) {
    return change(Kind::channel, false, channels, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_punsubscribe(ArgList<std::string_view> patterns = {}, Token&& token = {}) {
    return change(Kind::pattern, false, patterns, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_sunsubscribe(ArgList<std::string_view> channels = {}, Token&& token = {}) {
    return change(Kind::shard, false, channels, std::forward<Token>(token));
  }

  /// The next message from either backend. Handler: void(error_code, Message). Errors:
  /// Error::pushes_dropped (once, after messages were dropped), Error::resubscribed (once,
  /// after a side's link came back: see rediskit/backend/subscriber.hpp),
  /// Error::already_receiving, Error::connection_closed, operation_aborted on cancellation.
  template <class Token = boost::asio::deferred_t>
  auto async_receive(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, Message)>(
        [core = core_](auto handler) {
          auto const ex = core->primary.get_executor();
          if (core->receiver)
            return detail::post_handler(ex, std::move(handler),
                                        make_error_code(Error::already_receiving), Message{});
          auto slot = boost::asio::get_associated_cancellation_slot(handler);
          core->receiver.emplace(std::move(handler));
          if (core->closed || core->dropped || core->resubscribed || !core->queue.empty())
            return core->deliver();
          if (slot.is_connected()) {
            slot.assign([weak = std::weak_ptr<Core>(core)](boost::asio::cancellation_type) {
              auto c = weak.lock();
              if (!c || !c->receiver) return;
              auto h = std::move(*c->receiver);
              c->receiver.reset();
              if (auto sl = h.cancellation_slot(); sl.is_connected()) sl.clear();
              detail::post_handler(c->primary.get_executor(), std::move(h),
                                   make_error_code(boost::asio::error::operation_aborted),
                                   Message{});
            });
          }
        },
        token);
  }

  /// Closes both sides; a waiting receive completes with Error::connection_closed.
  void close() {
    if (core_) core_->close();
  }

  PS& primary() noexcept { return core_->primary; }
  SS& secondary() noexcept { return core_->secondary; }
  /// Subscriptions the primary has not taken yet (tried again every second).
  std::size_t pending_on_primary() const noexcept {
    std::size_t n = 0;
    for (auto const& p : core_->pending) n += p.names.size();
    return n;
  }

 private:
  template <class Token>
  auto change(Kind kind, bool sub, ArgList<std::string_view> names, Token&& token) {
    auto list = names.to_vector();
    std::vector<std::string> owned(list.begin(), list.end());
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [core = core_, kind, sub](auto handler, std::vector<std::string> owned) {
          auto const ex = boost::asio::get_associated_executor(handler, core->primary.get_executor());
          if (core->closed)
            return detail::post_handler(ex, std::move(handler),
                                        make_error_code(Error::connection_closed));
          if (owned.empty() && sub)
            return detail::post_handler(ex, std::move(handler),
                                        make_error_code(Error::invalid_request));
          bool const wait_primary = !core->degraded();
          std::vector<std::string_view> views(owned.begin(), owned.end());
          detail::join_all(ex, std::move(handler), wait_primary ? 2 : 1, [&](auto done) {
            Core::apply(core->secondary, kind, sub, views, done);
            if (!sub) {
              core->forget(kind, owned);
              Core::apply(core->primary, kind, false, views,
                          [done, wait_primary](boost::system::error_code ec) {
                            // Redis down: it forgot our subscriptions with our link.
                            if (wait_primary) done(is_outage(ec) ? boost::system::error_code{} : ec);
                          });
              return;
            }
            for (auto const& n : owned) core->wanted.emplace(kind, n);
            std::function<void(boost::system::error_code)> on_end;
            if (wait_primary) on_end = done;
            core->on_primary(kind, std::move(owned), std::move(on_end));
          });
        },
        token, std::move(owned));
  }

  std::shared_ptr<Core> core_;
};

}  // namespace rediskit
