// rediskit::FakeBackend: MemoryBackend for tests. Time moves only when the test says so; faults
// come when the test asks for them; every command is logged.
//
//   rediskit::FakeBackend db(ioc);
//   co_await svc.async_set_user_online("42", data);       // a service over FakeBackend
//   db.advance(6min);                                     // TTLs expire, BLOCK timeouts fire
//   db.fail_next(1, rediskit::Error::connection_lost);    // the next operation fails so
//   db.drop_connection();                                 // operations in flight and new ones fail
//   BOOST_TEST(db.command_log().back()[0] == "SET");
//
// It is a public part of rediskit: swap it in for RedisBackend in your own service's tests
// (services are templates over the backend), no server and no sleeping needed.
#pragma once

#include <rediskit/backend/detail/exec_overloads.hpp>
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/clock.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

/// MemoryBackend on a ManualClock, with fault injection and a command log (see above).
class FakeBackend : public BasicMemoryBackend<ManualClock>,
                    public detail::ExecOverloads<FakeBackend> {
  friend class detail::ExecOverloads<FakeBackend>;

  using Base = BasicMemoryBackend<ManualClock>;

 public:
  static constexpr std::string_view name = "fake";

  explicit FakeBackend(executor_type ex, MemoryConfig cfg = {}, ManualClock clock = ManualClock{})
      : Base(std::move(ex), cfg, clock), faults_(std::make_shared<Faults>()) {}
  explicit FakeBackend(boost::asio::io_context& ioc, MemoryConfig cfg = {},
                       ManualClock clock = ManualClock{})
      : FakeBackend(ioc.get_executor(), cfg, clock) {}

  /// async_exec (detail::ExecOverloads): as MemoryBackend's, after the faults and the log.
  using detail::ExecOverloads<FakeBackend>::async_exec;

  // ---- time -----------------------------------------------------------------------------------

  /// Moves the clock forward: keys whose TTL passed are gone at the next command, and blocked
  /// commands whose timeout passed complete (with their empty reply) now.
  void advance(std::chrono::milliseconds d) {
    auto& sh = shared();
    std::lock_guard lock(sh.mutex);
    sh.clock.advance(d);
    detail::mem::Time t = detail::mem::Time::of(sh.clock);
    sh.engine.begin(t);
    sh.expire_waiters();
  }

  // ---- faults ---------------------------------------------------------------------------------

  /// The next `n` operations complete with `e` without running (e.g. Error::connection_lost,
  /// Error::out_of_memory, Error::read_only).
  void fail_next(std::size_t n, Error e) {
    std::lock_guard lock(faults_->mutex);
    faults_->fail_count = n;
    faults_->fail_with = make_error_code(e);
  }

  /// Every operation completes `d` of real time after it started (0: as without latency).
  /// The command itself runs when it starts, as with MemoryBackend: only the reply is late.
  void set_latency(std::chrono::milliseconds d) {
    std::lock_guard lock(faults_->mutex);
    faults_->latency = d;
  }

  /// The link is down: blocked commands fail with Error::connection_lost now, and every new
  /// operation fails with Error::not_connected (nothing runs) until restore_connection(). This
  /// backend's subscribers lose what is published meanwhile; once the link is back, each one's
  /// async_receive reports Error::resubscribed once (as RedisBackend's after a reconnection).
  void drop_connection() {
    auto subs = subscribers(true);
    auto& sh = shared();
    std::lock_guard lock(sh.mutex);
    for (auto& s : subs) s->offline = true;
    while (!sh.waiters.empty()) sh.fail(sh.waiters.front().get(), Error::connection_lost);
  }
  /// Only the subscribers' links drop (as CLIENT KILL TYPE pubsub would): they lose what is
  /// published until restore_connection(), while commands go on.
  void drop_subscribers() {
    auto subs = subscribers(std::nullopt);
    std::lock_guard lock(shared().mutex);
    for (auto& s : subs) s->offline = true;
  }
  void restore_connection() {
    auto subs = subscribers(false);
    auto& sh = shared();
    std::lock_guard lock(sh.mutex);
    for (auto& s : subs) s->come_back();
  }

  /// A subscriber of this backend's pub/sub, which its drop_connection reaches.
  MemorySubscriber make_subscriber() {
    MemorySubscriber sub = Base::make_subscriber();
    bool dropped = false;
    {
      std::lock_guard lock(faults_->mutex);
      std::erase_if(faults_->subscribers, [](auto const& w) { return w.expired(); });
      faults_->subscribers.push_back(sub.state_);
      dropped = faults_->dropped;
    }
    if (dropped) {
      std::lock_guard lock(shared().mutex);
      sub.state_->offline = true;
    }
    return sub;
  }

  /// disconnected while dropped, else ok.
  HealthStatus health() const noexcept {
    std::lock_guard lock(faults_->mutex);
    return faults_->dropped ? HealthStatus::disconnected : HealthStatus::ok;
  }

  // ---- the command log ------------------------------------------------------------------------

  /// Every command that reached the backend (faulted ones too), as argv: {"SET", "k", "v"}.
  /// A transaction is logged as MULTI, its commands, EXEC.
  std::vector<std::vector<std::string>> command_log() const {
    std::lock_guard lock(faults_->mutex);
    return faults_->log;
  }
  void clear_log() {
    std::lock_guard lock(faults_->mutex);
    faults_->log.clear();
  }
  /// Commands in the log whose name is `name` ("GET", "XREADGROUP", ...).
  std::size_t count_in_log(std::string_view name) const {
    std::lock_guard lock(faults_->mutex);
    std::size_t n = 0;
    for (auto const& argv : faults_->log) n += !argv.empty() && argv[0] == name;
    return n;
  }

 private:
  struct Faults {
    mutable std::mutex mutex;
    std::size_t fail_count = 0;
    boost::system::error_code fail_with{};
    std::chrono::milliseconds latency{0};
    bool dropped = false;
    std::vector<std::vector<std::string>> log;
    std::vector<std::weak_ptr<detail::mem::SubscriberState>> subscribers;  // made here
  };

  // Sets the link's state (nullopt: leaves it); the live subscribers made here.
  std::vector<std::shared_ptr<detail::mem::SubscriberState>> subscribers(
      std::optional<bool> dropped) {
    std::lock_guard lock(faults_->mutex);
    if (dropped) faults_->dropped = *dropped;
    std::vector<std::shared_ptr<detail::mem::SubscriberState>> out;
    for (auto const& w : faults_->subscribers)
      if (auto s = w.lock()) out.push_back(std::move(s));
    return out;
  }

  template <class X>
  void log_commands(X const& x) {
    if (is_transaction_v<X>) faults_->log.push_back({"MULTI"});
    for_each_command(x, [&](auto const& c) { faults_->log.push_back(argv(c)); });
    if (is_transaction_v<X>) faults_->log.push_back({"EXEC"});
  }

  // An operation under latency: its timer, and the caller's handler, erased. The handler is
  // set just after the command ran; the lock orders that before its use on another thread.
  template <class R>
  struct Delay {
    using Handler = detail::AnyHandler<void(boost::system::error_code, R)>;
    Delay(executor_type ex, std::chrono::milliseconds d)
        : executor(ex), timer(std::make_shared<boost::asio::steady_timer>(ex, d)) {}
    void set(Handler h) {
      std::lock_guard lock(mutex);
      handler.emplace(std::move(h));
    }
    Handler take() {
      std::lock_guard lock(mutex);
      return std::move(*handler);
    }
    executor_type executor;
    std::shared_ptr<boost::asio::steady_timer> timer;
    std::mutex mutex;
    std::optional<Handler> handler;
  };

  // The engine's completion of an operation under latency: it waits for the rest of the delay.
  // The caller's cancellation slot comes along (a blocked command can still be cancelled).
  template <class R>
  struct Delayed {
    std::shared_ptr<Delay<R>> delay;
    boost::asio::cancellation_slot slot;
    using cancellation_slot_type = boost::asio::cancellation_slot;
    cancellation_slot_type get_cancellation_slot() const noexcept { return slot; }
    void operator()(boost::system::error_code ec, R r) {
      auto timer = delay->timer;
      timer->async_wait(AfterLatency{
          timer, detail::erase_call([d = std::move(delay), ec, r = std::move(r)]() mutable {
            detail::post_handler(d->executor, d->take(), ec, std::move(r));
          })});
    }
  };

  // The timer's handler: one type for every operation (see rediskit/detail/post.hpp).
  struct AfterLatency {
    std::shared_ptr<boost::asio::steady_timer> timer;
    detail::ErasedCallPtr then;
    void operator()(boost::system::error_code) { then.release()->call(); }
  };

  template <class R, class X, class Token>
  auto exec_impl(X const& x, Diagnostics* diag, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, R)>(
        // The handler by reference: the command is logged and run before it moves.
        [this](auto&& handler, X const& x, Diagnostics* diag) {
          boost::system::error_code fault;
          std::chrono::milliseconds latency{0};
          {
            std::lock_guard lock(faults_->mutex);
            log_commands(x);
            if (faults_->dropped) {
              fault = make_error_code(Error::not_connected);
            } else if (faults_->fail_count > 0) {
              --faults_->fail_count;
              fault = faults_->fail_with;
            }
            latency = faults_->latency;
          }
          if (fault) return detail::post_handler(get_executor(), std::move(handler), fault, R{});
          if (latency.count() == 0) return run(x, diag, std::move(handler));
          // The command runs now (it is read before the handler moves); its completion waits
          // for the timer, started now, and then goes to the caller's handler.
          auto delay = std::make_shared<Delay<R>>(get_executor(), latency);
          run(x, diag,
              Delayed<R>{delay, boost::asio::get_associated_cancellation_slot(handler)});
          delay->set(typename Delay<R>::Handler(std::move(handler)));
        },
        token, x, diag);
  }

  template <class X, class Handler>
  void run(X const& x, Diagnostics* diag, Handler&& h) {
    if (diag)
      Base::async_exec(x, *diag, std::forward<Handler>(h));
    else
      Base::async_exec(x, std::forward<Handler>(h));
  }

  std::shared_ptr<Faults> faults_;
};

}  // namespace rediskit
