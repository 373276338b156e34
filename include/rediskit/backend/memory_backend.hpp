// rediskit::MemoryBackend: an in-process engine with Redis semantics, behind the same Backend
// interface as RedisBackend (seed 003's automatic in-memory fallback, and every service's
// tests without a server).
//
// It runs every typed command of rediskit/commands.hpp on its own data structures: WRONGTYPE
// errors, TTLs (expired keys are gone before the next command sees the keyspace, so counts are
// exact), SCAN with Redis's glob rules and cursor guarantee, sorted sets ordered by score then
// member bytes, streams with consumer groups and pending entries, pub/sub with patterns, Lua
// scripts through their C++ twins, and an optional memory bound with LRU eviction.
//
//   boost::asio::io_context ioc;
//   rediskit::MemoryBackend db(ioc);
//   co_await db.async_exec(rediskit::cmd::set{.key = "k", .value = "v"});
//
// Semantics shared with RedisBackend: a command applies when its operation is initiated (for
// a co_await, at the co_await), in initiation order; a batch applies in one go (a transaction
// atomically: nothing else runs in between); the completion is always posted through the
// handler's executor, never run inside the initiating call. A blocking command (XREAD BLOCK,
// XREADGROUP BLOCK, BLMOVE) that finds nothing waits, without holding anything up, until a
// write wakes it, its timeout passes (on the clock policy's time) or it is cancelled.
//
// Thread safety: all operations of one backend may be started from any thread (the engine
// has its own lock); completions run on each handler's executor.
#pragma once

#include <rediskit/backend/detail/exec_overloads.hpp>
#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/backend/detail/memory/run_hashes.hpp>
#include <rediskit/backend/detail/memory/run_keys.hpp>
#include <rediskit/backend/detail/memory/run_lists.hpp>
#include <rediskit/backend/detail/memory/run_pubsub.hpp>
#include <rediskit/backend/detail/memory/run_scripting.hpp>
#include <rediskit/backend/detail/memory/run_server.hpp>
#include <rediskit/backend/detail/memory/run_sets.hpp>
#include <rediskit/backend/detail/memory/run_sorted_sets.hpp>
#include <rediskit/backend/detail/memory/run_streams.hpp>
#include <rediskit/backend/detail/memory/run_strings.hpp>
#include <rediskit/backend/subscriber.hpp>
#include <rediskit/clock.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/command.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit {

/// Configuration of a MemoryBackend. An aggregate: `MemoryConfig{.max_memory = 64 << 20}`.
struct MemoryConfig {
  /// Bound on the accounted bytes of keys and values (0: none); beyond it the least recently
  /// used keys are evicted (Redis's maxmemory with allkeys-lru). Accounting counts key and
  /// value bytes plus a fixed overhead per key and per element.
  std::size_t max_memory = 0;
  /// Messages a subscriber keeps while nobody receives them; beyond, the oldest are dropped and
  /// the next async_receive reports Error::pushes_dropped once.
  std::size_t max_queued_messages = 4096;
  /// Redis Cluster's key rules, to test on one process what must run on a cluster: the keys
  /// of one command, transaction or script must share a hash slot (else CROSSSLOT, as a
  /// cluster answers), and a script may touch only the keys in its KEYS (stricter than a
  /// cluster, which checks the slot only: an undeclared key is a bug that a resharding shows).
  bool cluster_checks = false;
};

/// Counters of a MemoryBackend (seed 003's getCacheStats: mode "memory", entries = keys).
struct MemoryStats {
  std::size_t keys = 0;
  std::size_t keys_with_ttl = 0;
  std::size_t used_memory = 0;
  std::uint64_t commands = 0;
  std::uint64_t expired_keys = 0;
  std::uint64_t evicted_keys = 0;
  std::size_t blocked_clients = 0;
  std::size_t subscribers = 0;
};

namespace detail::mem {

/// A blocking command that waits keeps its own copy of what it views: the caller's strings
/// (a composed operation's members, which move with its handler; a vector of keys the caller
/// destroys) may be gone long before a write wakes it. rediskit's blocking commands (BLMOVE,
/// XREAD and XREADGROUP BLOCK) have a specialisation below that copies their strings; it never
/// moves (the waiter holds it by pointer), so the views stay put. A blocking command of the user's
/// own is copied as it is: give it members that own their data (std::string), or keep what it
/// views alive until it completes.
template <class C>
struct OwnedCommand {
  C c;
  explicit OwnedCommand(C const& x) : c(x) {}
};

template <>
struct OwnedCommand<cmd::blmove> {
  std::string source, destination;
  cmd::blmove c;
  explicit OwnedCommand(cmd::blmove const& x)
      : source(x.source), destination(x.destination), c(x) {
    c.source = source;
    c.destination = destination;
  }
  OwnedCommand(OwnedCommand const&) = delete;
  OwnedCommand& operator=(OwnedCommand const&) = delete;
};

template <>
struct OwnedCommand<cmd::xreadgroup> {
  std::string group, consumer;
  std::vector<std::string> keys, ids;
  std::vector<std::string_view> key_views, id_views;
  cmd::xreadgroup c;
  explicit OwnedCommand(cmd::xreadgroup const& x)
      : group(x.group), consumer(x.consumer), c(x) {
    x.keys.for_each([&](std::string_view k) { keys.emplace_back(k); });
    x.ids.for_each([&](std::string_view id) { ids.emplace_back(id); });
    key_views.assign(keys.begin(), keys.end());
    id_views.assign(ids.begin(), ids.end());
    c.group = group;
    c.consumer = consumer;
    c.keys = key_views;
    c.ids = id_views;
  }
  OwnedCommand(OwnedCommand const&) = delete;
  OwnedCommand& operator=(OwnedCommand const&) = delete;
};

/// XREAD BLOCK: its "$" ids become the streams' last ids as it starts waiting (run again on
/// each write, "$" would always mean "after the entry just added").
template <>
struct OwnedCommand<cmd::xread> {
  std::vector<std::string> keys, ids;
  std::vector<std::string_view> key_views, id_views;
  cmd::xread c;
  OwnedCommand(cmd::xread const& x, Ctx& ctx) : c(x) {
    x.keys.for_each([&](std::string_view k) { keys.emplace_back(k); });
    std::size_t i = 0;
    x.ids.for_each([&](std::string_view id) {
      ids.emplace_back(id == "$" && i < keys.size() ? last_id_text(ctx, keys[i]) : std::string(id));
      ++i;
    });
    key_views.assign(keys.begin(), keys.end());
    id_views.assign(ids.begin(), ids.end());
    c.keys = key_views;
    c.ids = id_views;
  }
  OwnedCommand(OwnedCommand const&) = delete;
  OwnedCommand& operator=(OwnedCommand const&) = delete;
};

/// The waiting copy of `x` (under the lock, right after x ran and found nothing).
template <class C>
std::shared_ptr<OwnedCommand<C> const> own(C const& x, Ctx& ctx) {
  if constexpr (std::is_constructible_v<OwnedCommand<C>, C const&, Ctx&>)
    return std::make_shared<OwnedCommand<C> const>(x, ctx);
  else
    return std::make_shared<OwnedCommand<C> const>(x);
}

/// What a MemoryBackend shares with its subscribers and blocked commands: the engine, under a
/// lock.
template <class Clock>
struct Shared {
  Shared(boost::asio::any_io_executor ex, MemoryConfig cfg, Clock clk)
      : executor(std::move(ex)), config(cfg), engine(EngineConfig{cfg.max_memory, cfg.cluster_checks}),
        clock(std::move(clk)) {
    engine.pubsub = &pubsub;
  }

  boost::asio::any_io_executor executor;
  MemoryConfig config;
  std::mutex mutex;
  Engine engine;
  Clock clock;
  PubSub pubsub;

  /// A command waiting for data (XREADGROUP BLOCK, BLMOVE).
  struct Waiter {
    std::vector<std::string> keys;
    std::int64_t deadline_ms = 0;  // engine time; 0: none
    /// Runs the command again (under the lock); true when it completed the operation.
    std::function<bool(Ctx&)> try_again;
    /// Completes the operation with `ec` and an empty reply (timeout: no error).
    std::function<void(boost::system::error_code)> fail;
    std::unique_ptr<boost::asio::steady_timer> timer;  // real clocks only
  };
  using WaiterList = std::list<std::shared_ptr<Waiter>>;
  WaiterList waiters;


  typename WaiterList::iterator remove(typename WaiterList::iterator it) {
    for (auto const& k : (*it)->keys) engine.unwatch(k);
    if ((*it)->timer) (*it)->timer->cancel();
    return waiters.erase(it);
  }
  /// Removes `w` and completes it with `ec`; false when it was no longer waiting.
  bool fail(Waiter const* w, boost::system::error_code ec) {
    for (auto it = waiters.begin(); it != waiters.end(); ++it) {
      if (it->get() != w) continue;
      auto keep = *it;
      remove(it);
      keep->fail(ec);
      return true;
    }
    return false;
  }

  /// After each operation (under the lock): the waiters on written keys run again, oldest
  /// first; what they write may wake others.
  void wake_waiters() {
    while (!waiters.empty()) {
      std::vector<std::string> keys = engine.take_signaled();
      if (keys.empty()) return;
      for (auto it = waiters.begin(); it != waiters.end();) {
        auto w = *it;
        bool hit = false;
        for (auto const& k : w->keys)
          for (auto const& s : keys) hit = hit || k == s;
        Time t = Time::of(clock);
        Ctx ctx{engine, &t};
        if (hit && w->try_again(ctx))
          it = remove(it);
        else
          ++it;
      }
    }
  }

  /// Manual clocks: completes the waiters whose timeout passed (their reply: empty).
  void expire_waiters() {
    std::int64_t const now = clock.now_ms();
    for (auto it = waiters.begin(); it != waiters.end();) {
      auto w = *it;
      if (w->deadline_ms != 0 && w->deadline_ms <= now) {
        it = remove(it);
        w->fail({});
      } else {
        ++it;
      }
    }
  }

  /// The backend is going away: every waiter fails with connection_closed.
  void close() {
    while (!waiters.empty()) {
      auto w = waiters.front();
      remove(waiters.begin());
      w->fail(Error::connection_closed);
    }
  }
};

}  // namespace detail::mem

/// The in-memory backend over a clock policy (SteadyClock; FakeBackend uses ManualClock).
/// Move-only; destroying it fails blocked commands with Error::connection_closed (subscribers
/// keep its state alive until they go).
template <class Clock = SteadyClock>
class BasicMemoryBackend : public detail::ExecOverloads<BasicMemoryBackend<Clock>> {
  friend class detail::ExecOverloads<BasicMemoryBackend>;

  using Shared = detail::mem::Shared<Clock>;

 public:
  using executor_type = boost::asio::any_io_executor;
  using clock_type = Clock;
  using subscriber_type = MemorySubscriber;

  /// Seed 003's cache mode name.
  static constexpr std::string_view name = "memory";

  explicit BasicMemoryBackend(executor_type ex, MemoryConfig cfg = {}, Clock clock = Clock())
      : shared_(std::make_shared<Shared>(std::move(ex), cfg, std::move(clock))) {}
  explicit BasicMemoryBackend(boost::asio::io_context& ioc, MemoryConfig cfg = {},
                              Clock clock = Clock())
      : BasicMemoryBackend(ioc.get_executor(), cfg, std::move(clock)) {}
  BasicMemoryBackend(BasicMemoryBackend&&) noexcept = default;
  BasicMemoryBackend& operator=(BasicMemoryBackend&& o) noexcept {
    if (this != &o) {
      shutdown();
      shared_ = std::move(o.shared_);
    }
    return *this;
  }
  ~BasicMemoryBackend() { shutdown(); }

  executor_type get_executor() const noexcept { return shared_->executor; }

  /// async_exec (detail::ExecOverloads): a command, a Batch or transaction, or N commands of
  /// one type, each with or without Diagnostics. Errors are those a server would reply
  /// (Error::wrong_type, Error::server_error, ...; the text goes to `diag`). The command is
  /// read before async_exec returns: what it views may go away at once (a blocking command
  /// that waits keeps a copy). A batch runs every command and gives the first error, except a
  /// transaction with a wrong argument count, where nothing runs (as EXECABORT); a blocking
  /// command in a batch does not wait (as inside MULTI).
  using detail::ExecOverloads<BasicMemoryBackend>::async_exec;

  /// A subscriber of this backend's pub/sub (see rediskit/backend/subscriber.hpp).
  MemorySubscriber make_subscriber() {
    Shared* s = shared_.get();
    return MemorySubscriber(s->executor, s->pubsub, s->mutex, s->config.max_queued_messages,
                            std::shared_ptr<void>(shared_, s));
  }

  /// Fails blocked commands with Error::connection_closed (as RedisBackend::close does); the
  /// data stays and later operations run as before.
  void close() { shutdown(); }

  /// Always ok: there is no link to lose.
  HealthStatus health() const noexcept { return HealthStatus::ok; }

  MemoryStats stats() const {
    std::lock_guard lock(shared_->mutex);
    auto const& e = shared_->engine;
    MemoryStats s;
    s.keys = e.keys().size();
    s.keys_with_ttl = e.keys_with_ttl();
    s.used_memory = e.used_memory();
    s.commands = e.stats().commands;
    s.expired_keys = e.stats().expired_keys;
    s.evicted_keys = e.stats().evicted_keys;
    s.blocked_clients = shared_->waiters.size();
    s.subscribers = shared_->pubsub.subscriber_count();
    return s;
  }

  /// Deletes the keys whose TTL has passed (every command does this first anyway).
  void purge_expired() {
    std::lock_guard lock(shared_->mutex);
    detail::mem::Time t = detail::mem::Time::of(shared_->clock);
    shared_->engine.begin(t);
  }

  Clock& clock() noexcept { return shared_->clock; }

 protected:
  Shared& shared() const noexcept { return *shared_; }

 private:
  void shutdown() {
    if (!shared_) return;
    std::lock_guard lock(shared_->mutex);
    shared_->close();
  }

  template <class R, class X, class Token>
  auto exec_impl(X const& x, Diagnostics* diag, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, R)>(
        // The handler by reference: the command runs before the handler (and a caller's
        // state that the command may view, such as a composed op) moves. From here on it is
        // erased: what follows is compiled once per command type.
        [sh = shared_](auto&& handler, X const& x, Diagnostics* diag) {
          run_op<R>(sh, x, diag, handler);
        },
        token, x, diag);
  }

  template <class R, class X, class Handler>
  static void run_op(std::shared_ptr<Shared> const& sh, X const& x, Diagnostics* diag,
                     Handler& handler) {
    run_erased<R>(sh, x, diag, detail::LazyHandler<void(boost::system::error_code, R)>(handler));
  }

  // `erase()` gives the caller's handler, erased, once the command has run.
  template <class R, class X>
  static void run_erased(std::shared_ptr<Shared> const& sh, X const& x, Diagnostics* diag,
                         detail::LazyHandler<void(boost::system::error_code, R)> erase) {
    if (diag) diag->clear();
    detail::mem::Time time = detail::mem::Time::of(sh->clock);
    detail::mem::Ctx ctx{sh->engine, &time};
    std::unique_lock lock(sh->mutex);
    sh->engine.begin(time);
    if constexpr (Command<X>) {
      R result = sh->engine.exec(ctx, x);  // the reply is built here, not moved in
      if constexpr (requires { x.block_timeout(); }) {
        if (!ctx.ec && !result && is_blocking(x)) {
          // The copy first: erase() moves the handler, and whatever x views with it.
          auto owned = detail::mem::own(x, ctx);
          wait(sh, std::move(owned), time, diag, erase());
          sh->wake_waiters();
          return;
        }
      }
      complete(*sh, lock, diag, ctx, erase, std::move(result));
    } else {
      R result{};
      if constexpr (is_batch_v<X>) {
        exec_batch(*sh, x, result, ctx);
      } else {  // a span of commands
        result.reserve(x.size());
        for (auto const& c : x) result.push_back(run_one(*sh, c, ctx));
      }
      complete(*sh, lock, diag, ctx, erase, std::move(result));
    }
  }

  template <class R>
  static void complete(Shared& sh, std::unique_lock<std::mutex>& lock, Diagnostics* diag,
                       detail::mem::Ctx& ctx,
                       detail::LazyHandler<void(boost::system::error_code, R)> const& erase,
                       R&& result) {
    sh.wake_waiters();
    lock.unlock();
    if (diag && ctx.ec) diag->server_message = std::move(ctx.error);
    // Straight to the handler's executor (asio::post(ex, handler) would post, then dispatch
    // again through the handler's executor: measured 40% slower on single commands).
    detail::post_handler(sh.executor, erase(), ctx.ec, std::move(result));
  }

  // Runs c; its error becomes the operation's when it is the first.
  template <class C>
  static reply_t<C> run_one(Shared& sh, C const& c, detail::mem::Ctx& op) {
    detail::mem::Ctx ctx = op.fork();
    reply_t<C> r = sh.engine.exec(ctx, c);
    if (ctx.ec && !op.ec) {
      op.ec = ctx.ec;
      op.error = std::move(ctx.error);
    }
    return r;
  }

  template <bool A, class... P, class R>
  static void exec_batch(Shared& sh, Batch<A, P...> const& b, R& result,
                         detail::mem::Ctx& op) {
    if constexpr (A) {  // EXECABORT: a wrong argument count anywhere runs nothing
      std::string err;
      for_each_command(b, [&](auto const& c) {
        if (err.empty()) err = detail::mem::Engine::check_arity(c);
      });
      if (err.empty() && sh.engine.config().cluster_checks && rediskit::cluster::route(b).cross_slot)
        err = detail::mem::cross_slot_error;
      if (!err.empty()) {
        op.fail(err);
        return;
      }
    }
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (run_part(sh, std::get<I>(b.parts), std::get<I>(result), op), ...);
    }(std::index_sequence_for<P...>{});
  }

  template <class Part, class R>
  static void run_part(Shared& sh, Part const& p, R& out, detail::mem::Ctx& op) {
    if constexpr (Command<Part>) {
      out = run_one(sh, p, op);
    } else {
      out.reserve(p.size());
      for (auto const& c : p) out.push_back(run_one(sh, c, op));
    }
  }

  // A blocking command that found nothing: it waits for a write to one of its keys, its
  // timeout, or a cancellation. Called under the lock.
  template <class C, class Handler>
  static void wait(std::shared_ptr<Shared> const& sh,
                   std::shared_ptr<detail::mem::OwnedCommand<C> const> owned,
                   detail::mem::Time& time, Diagnostics* diag, Handler handler) {
    C const& c = owned->c;
    using R = reply_t<C>;
    using W = typename Shared::Waiter;
    auto w = std::make_shared<W>();
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    // One owner of the handler, shared by the ways the wait can end (only one of them runs,
    // under the lock).
    auto h = std::make_shared<Handler>(std::move(handler));
    Shared* raw = sh.get();
    auto complete = [raw, h, diag](boost::system::error_code ec, std::string text, R r) {
      if (diag && ec) diag->server_message = std::move(text);
      detail::post_handler(raw->executor, std::move(*h), ec, std::move(r));
    };
    c.watch_keys().for_each([&](std::string_view k) {
      w->keys.emplace_back(k);
      sh->engine.watch(k);
    });
    w->try_again = [raw, owned, complete](detail::mem::Ctx& ctx) {
      ctx.db.begin(*ctx.time);
      R r = raw->engine.exec(ctx, owned->c);
      if (!ctx.ec && !r) return false;
      complete(ctx.ec, std::move(ctx.error), std::move(r));
      return true;
    };
    w->fail = [complete](boost::system::error_code ec) { complete(ec, {}, R{}); };
    std::weak_ptr<Shared> weak_sh = sh;
    W const* id = w.get();
    if (auto const timeout = c.block_timeout(); timeout.count() > 0) {
      w->deadline_ms = time.now_ms() + timeout.count();
      if constexpr (!Clock::manual) {
        w->timer = std::make_unique<boost::asio::steady_timer>(sh->executor, timeout);
        w->timer->async_wait([weak_sh, id](boost::system::error_code ec) {
          auto s = weak_sh.lock();
          if (ec || !s) return;
          std::lock_guard lock(s->mutex);
          s->fail(id, {});
        });
      }
    }
    if (slot.is_connected()) {
      slot.assign([weak_sh, id](boost::asio::cancellation_type) {
        if (auto s = weak_sh.lock()) {
          std::lock_guard lock(s->mutex);
          s->fail(id, boost::asio::error::operation_aborted);
        }
      });
    }
    sh->waiters.push_back(std::move(w));
  }

  std::shared_ptr<Shared> shared_;
};

/// The in-memory backend on real time.
using MemoryBackend = BasicMemoryBackend<SteadyClock>;

}  // namespace rediskit
