// rediskit::CircuitBreaker: fail fast while Redis is unreachable (seed 000's CIRCUIT_OPEN).
//
//   CircuitBreaker<> breaker({.failure_rate = 0.5, .window = 20, .minimum_calls = 10,
//                             .open_for = 5s, .probes = 3});
//   auto [ec, v] = co_await breaker.async_run(ex, backend.async_exec(cmd::get{"k"}), tok);
//   if (ec == Error::circuit_open) ...   // not attempted: the breaker is open
//
// The policy is resilience4j's: the breaker remembers the outcome of the last `window` calls and
// opens when at least `minimum_calls` of them are known and the share of failures reaches
// `failure_rate`. While open, every call fails at once with Error::circuit_open and nothing is
// sent. After `open_for` it is half open: exactly `probes` calls go through, the others are
// rejected; once the probes have completed, it closes if their failure share is below
// `failure_rate` and opens again otherwise.
//
// Only outages count as failures: connection and timeout errors (is_outage()). A WRONGTYPE, a
// bad argument or a script error is the caller's problem and counts as a success of the link.
//
// Use it around any asynchronous operation whose completion starts with an error_code
// (async_run), or by hand: try_acquire() gives a Permit when a call may go, record() reports
// how it ended. A Permit dropped without a result (its handler destroyed, an exception)
// frees its probe slot and counts for nothing. Time comes from the Clock policy (SteadyClock, or
// ManualClock in tests: breaker.clock().advance(5s)); the open-to-half-open transition is
// checked when the breaker is asked, so no timer runs.
//
// Not thread-safe: use a breaker from one thread or strand, like the backend it guards. A
// Permit must not outlive its breaker.
#pragma once

#include <rediskit/clock.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace rediskit {

/// CLOSED: calls go. OPEN: calls fail fast. HALF_OPEN: a few probe calls go.
enum class CircuitState { closed, open, half_open };

inline char const* to_string(CircuitState s) noexcept {
  switch (s) {
    case CircuitState::closed: return "CLOSED";
    case CircuitState::open: return "OPEN";
    case CircuitState::half_open: return "HALF_OPEN";
  }
  return "?";
}

/// A state change or a rejected call, for CircuitBreakerConfig::on_event.
enum class CircuitEvent { opened, half_opened, closed, rejected };

inline char const* to_string(CircuitEvent e) noexcept {
  switch (e) {
    case CircuitEvent::opened: return "opened";
    case CircuitEvent::half_opened: return "half-opened";
    case CircuitEvent::closed: return "closed";
    case CircuitEvent::rejected: return "rejected";
  }
  return "?";
}
inline std::ostream& operator<<(std::ostream& os, CircuitState s) { return os << to_string(s); }
inline std::ostream& operator<<(std::ostream& os, CircuitEvent e) { return os << to_string(e); }

struct CircuitBreakerConfig {
  /// Opens when failures / known outcomes in the window reach this share (0 < x <= 1).
  double failure_rate = 0.5;
  /// How many of the latest outcomes are remembered (a count-based sliding window).
  std::size_t window = 100;
  /// No decision before this many outcomes are in the window (1 <= minimum_calls <= window).
  std::size_t minimum_calls = 10;
  /// How long it stays open before letting probes through.
  std::chrono::milliseconds open_for{30'000};
  /// Calls let through while half open; their outcomes decide (>= 1).
  std::size_t probes = 3;
  /// Called on every state change and rejected call (e.g. one log line per change). Optional.
  std::function<void(CircuitEvent)> on_event{};
};

/// What the breaker saw since it was made (or since reset()).
struct CircuitBreakerStats {
  std::uint64_t successes = 0;  ///< calls that ended without an outage error
  std::uint64_t failures = 0;   ///< calls that ended with an outage error
  std::uint64_t rejected = 0;   ///< calls refused with Error::circuit_open
  std::uint64_t opened = 0;     ///< times it opened (forced or not)
  std::uint64_t half_opened = 0;
  std::uint64_t closed = 0;     ///< times it closed again after being open
};

/// True for the errors of an unreachable or silent server: what a breaker counts.
inline bool is_outage(boost::system::error_code const& ec) noexcept {
  if (!ec) return false;
  if (ec.category() == error_category()) {
    switch (static_cast<Error>(ec.value())) {
      case Error::not_connected:
      case Error::connection_lost:
      case Error::connect_timeout:
      case Error::timeout:
      case Error::resolve_failed:
      case Error::health_check_failed:
      case Error::reconnect_gave_up:
      case Error::closed_during_handshake:
      case Error::unsolicited_reply:
      case Error::loading:
      case Error::cluster_down:
      case Error::sentinels_unreachable:
      case Error::not_master: return true;
      default: return false;
    }
  }
  namespace ae = boost::asio::error;
  return ec == ae::connection_refused || ec == ae::connection_reset ||
         ec == ae::connection_aborted || ec == ae::timed_out || ec == ae::eof ||
         ec == ae::broken_pipe || ec == ae::host_unreachable || ec == ae::network_unreachable ||
         ec == ae::network_down || ec == ae::not_connected;
}

template <class Clock = SteadyClock>
class CircuitBreaker {
 public:
  using clock_type = Clock;

  /// A call's right to go. Report its outcome with record(); dropped without one, it counts
  /// for nothing (and frees its probe slot when half open).
  class Permit {
   public:
    Permit(Permit&& o) noexcept : cb_(std::exchange(o.cb_, nullptr)), epoch_(o.epoch_) {}
    Permit& operator=(Permit&& o) noexcept {
      if (this != &o) {
        release();
        cb_ = std::exchange(o.cb_, nullptr);
        epoch_ = o.epoch_;
      }
      return *this;
    }
    Permit(Permit const&) = delete;
    Permit& operator=(Permit const&) = delete;
    ~Permit() { release(); }

   private:
    friend class CircuitBreaker;
    Permit(CircuitBreaker* cb, std::uint64_t epoch) noexcept : cb_(cb), epoch_(epoch) {}
    void release() noexcept {
      if (auto* cb = std::exchange(cb_, nullptr)) cb->abandon(epoch_);
    }
    CircuitBreaker* cb_;
    std::uint64_t epoch_;
  };

  /// Throws rediskit::Exception (Error::invalid_config, its text naming the setting) when a
  /// setting is out of range.
  explicit CircuitBreaker(CircuitBreakerConfig cfg = {}, Clock clock = Clock{})
      : cfg_(std::move(cfg)), clock_(std::move(clock)) {
    auto invalid = [](std::string what) {
      throw Exception(make_error_code(Error::invalid_config), "CircuitBreakerConfig" + what);
    };
    if (!(cfg_.failure_rate > 0.0 && cfg_.failure_rate <= 1.0))
      invalid("::failure_rate must be in (0, 1], got " + std::to_string(cfg_.failure_rate));
    if (cfg_.window == 0 || cfg_.minimum_calls == 0 || cfg_.minimum_calls > cfg_.window)
      invalid(": need 1 <= minimum_calls <= window, got minimum_calls " +
              std::to_string(cfg_.minimum_calls) + " and window " + std::to_string(cfg_.window));
    if (cfg_.probes == 0) invalid("::probes must be at least 1");
    if (cfg_.open_for.count() < 0) invalid("::open_for must not be negative");
    outcomes_.assign(cfg_.window, false);
  }

  CircuitBreaker(CircuitBreaker const&) = delete;  // Permits point at it
  CircuitBreaker& operator=(CircuitBreaker const&) = delete;

  /// The state now (an open breaker whose time is up reports half open).
  CircuitState state() {
    refresh();
    return state_;
  }
  CircuitBreakerStats const& stats() const noexcept { return stats_; }
  CircuitBreakerConfig const& config() const noexcept { return cfg_; }
  Clock& clock() noexcept { return clock_; }
  /// Failure share of the outcomes in the window (0 when it holds none).
  double failure_rate() const noexcept {
    return count_ == 0 ? 0.0 : static_cast<double>(failures_) / static_cast<double>(count_);
  }
  /// Set by force_open(): open until reset(), whatever the clock says.
  bool forced_open() const noexcept { return forced_; }

  /// A Permit when a call may go now; std::nullopt (counted as rejected) when it may not.
  std::optional<Permit> try_acquire() {
    refresh();
    if (state_ == CircuitState::open ||
        (state_ == CircuitState::half_open && probes_started_ >= cfg_.probes)) {
      ++stats_.rejected;
      emit(CircuitEvent::rejected);
      return std::nullopt;
    }
    if (state_ == CircuitState::half_open) ++probes_started_;
    return Permit(this, epoch_);
  }

  /// Reports how a permitted call ended. Outcomes of calls let through before the last state
  /// change count in the stats only.
  void record(Permit&& p, boost::system::error_code const& ec) {
    if (p.cb_ != this) return;  // moved-from, or another breaker's
    p.cb_ = nullptr;
    bool const failed = is_outage(ec);
    ++(failed ? stats_.failures : stats_.successes);
    if (p.epoch_ != epoch_) return;
    if (state_ == CircuitState::half_open) {
      if (failed) ++probe_failures_;
      if (++probes_done_ < cfg_.probes) return;
      double const rate = static_cast<double>(probe_failures_) / static_cast<double>(cfg_.probes);
      return rate >= cfg_.failure_rate ? open() : close();
    }
    // Closed: permits are given only when closed or half open, and every change bumps epoch_.
    push(failed);
    if (count_ >= cfg_.minimum_calls && failure_rate() >= cfg_.failure_rate) open();
  }

  /// Closed, with an empty window (and out of force_open()).
  void reset() {
    forced_ = false;
    if (state_ != CircuitState::closed) return close();
    ++epoch_;  // calls under way count for nothing
    clear_window();
  }

  /// Opens now, as a failure-rate decision would (half open after open_for): for an outage
  /// known without counting calls, such as a link seen down. A no-op when already open.
  void trip() {
    refresh();
    if (state_ != CircuitState::open) open();
  }

  /// Open until reset(): every call fails fast (maintenance, or a known outage).
  void force_open() {
    forced_ = true;
    if (state_ != CircuitState::open) open();
  }

  /// Runs `op` (a deferred asynchronous operation whose completion starts with an
  /// error_code, e.g. `backend.async_exec(cmd::get{"k"})` without a token) when the breaker
  /// lets it, and records how it ended. Rejected, it completes with Error::circuit_open (and
  /// default values) through the handler's executor, else `ex`, never inside this call.
  template <class Op, class Token = boost::asio::deferred_t>
  auto async_run(boost::asio::any_io_executor ex, Op&& op, Token&& token = {}) {
    using Sig = typename boost::asio::completion_signature_of<std::decay_t<Op>>::type;
    return run_sig(std::move(ex), std::forward<Op>(op), std::forward<Token>(token),
                   static_cast<Sig*>(nullptr));
  }

 private:
  template <class Op, class Token, class... Ts>
  auto run_sig(boost::asio::any_io_executor ex, Op&& op, Token&& token,
               void (*)(boost::system::error_code, Ts...)) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, Ts...)>(
        [this](auto handler, boost::asio::any_io_executor const& ex, auto op) {
          auto permit = try_acquire();
          if (!permit)
            return detail::post_handler(ex, std::move(handler),
                                        make_error_code(Error::circuit_open), Ts{}...);
          // The wrapper runs where the caller's handler must (its executor), and a
          // cancellation of the caller reaches the operation.
          auto const hex = boost::asio::get_associated_executor(handler, ex);
          auto const slot = boost::asio::get_associated_cancellation_slot(handler);
          std::move(op)(boost::asio::bind_cancellation_slot(
              slot, boost::asio::bind_executor(
                        hex, [this, p = std::move(*permit), h = std::move(handler)](
                                 boost::system::error_code ec, Ts... ts) mutable {
                          record(std::move(p), ec);
                          std::move(h)(ec, std::move(ts)...);
                        })));
        },
        token, std::move(ex), std::forward<Op>(op));
  }

  void refresh() {
    if (state_ == CircuitState::open && !forced_ &&
        clock_.now_ms() - opened_at_ms_ >= cfg_.open_for.count()) {
      state_ = CircuitState::half_open;
      ++epoch_;
      probes_started_ = probes_done_ = probe_failures_ = 0;
      ++stats_.half_opened;
      emit(CircuitEvent::half_opened);
    }
  }

  void open() {
    state_ = CircuitState::open;
    opened_at_ms_ = clock_.now_ms();
    ++epoch_;
    ++stats_.opened;
    emit(CircuitEvent::opened);
  }

  void close() {
    state_ = CircuitState::closed;
    ++epoch_;
    clear_window();
    ++stats_.closed;
    emit(CircuitEvent::closed);
  }

  // A permit dropped without an outcome: its probe slot is free again.
  void abandon(std::uint64_t epoch) noexcept {
    if (epoch == epoch_ && state_ == CircuitState::half_open && probes_started_ > 0)
      --probes_started_;
  }

  void push(bool failed) {
    if (count_ == outcomes_.size()) {
      if (outcomes_[next_]) --failures_;
    } else {
      ++count_;
    }
    outcomes_[next_] = failed;
    if (failed) ++failures_;
    next_ = (next_ + 1) % outcomes_.size();
  }

  void clear_window() {
    std::fill(outcomes_.begin(), outcomes_.end(), false);
    count_ = failures_ = next_ = 0;
  }

  void emit(CircuitEvent e) {
    if (cfg_.on_event) cfg_.on_event(e);
  }

  CircuitBreakerConfig cfg_;
  Clock clock_;
  CircuitState state_ = CircuitState::closed;
  bool forced_ = false;
  std::uint64_t epoch_ = 0;  // bumped at every state change
  std::int64_t opened_at_ms_ = 0;
  std::vector<bool> outcomes_;  // ring buffer of the window: true = failure
  std::size_t count_ = 0;
  std::size_t failures_ = 0;
  std::size_t next_ = 0;
  std::size_t probes_started_ = 0;
  std::size_t probes_done_ = 0;  // probes that reported
  std::size_t probe_failures_ = 0;
  CircuitBreakerStats stats_;
};

}  // namespace rediskit
