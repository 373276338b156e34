// rediskit::Worker<Backend, Codec>: processes the jobs of a rediskit::JobQueue (seed 002's BullMQ
// workers: 5 jobs in parallel, 10 jobs/s, retries with exponential backoff, a clean shutdown).
//
//   rediskit::JobQueue<rediskit::RedisBackend> q(redis, "notifications");
//   rediskit::WorkerOptions o;
//   o.concurrency = 5;
//   o.limiter = {.max = 10, .duration = 1s};                 // shared by every worker of the queue
//   rediskit::Worker w(q, [](rediskit::ActiveJob& job) -> asio::awaitable<void> {
//     auto n = job.data<Notification>();                     // decoded by the queue's codec type
//     job.update_progress("50");
//     co_await send(n);                                      // cancelled on timeout / lost lock
//   }, o);
//   w.start();
//   ...
//   co_await w.async_close(10s);   // no new jobs; active ones get 10 s, then go back to waiting
//
// The handler is one of h(ActiveJob&) (throws to fail the run), h(ActiveJob&, error_code&) (sets
// the code to fail it), or h(ActiveJob&) -> asio::awaitable<void>. It is erased into one
// std::function type: the worker's loops are compiled once per backend, not per handler. It
// may set job.return_value (stored with the completed job). A plain handler runs on the
// backend's executor thread and holds it while it runs: offload long CPU work.
//
// Fetching. Each round is one script (fetch_script in job_queue.hpp) that promotes due delayed
// jobs, honours pause and the rate limit, and moves up to (concurrency - active) ready jobs to
// active, each under a lock (a token in the job, an expiry in the locks zset). When it finds
// nothing, the worker waits on the queue's marker list with BLMOVE marker -> marker-sink and a
// timeout of min(idle_wait, time until the next delayed job): every add, retry, promote and
// resume pushes a marker, so an idle worker wakes as soon as a job arrives (one round trip of
// latency: the BLMOVE returns, then the fetch). This works on every backend: RedisBackend and
// ClusterBackend run the BLMOVE on a connection of their own (the main pipeline never waits
// behind it), MemoryBackend and FakeBackend wait in the engine (FakeBackend's timeout follows
// its manual clock: advance() wakes a worker waiting for a delayed job). A delayed job is
// picked up within a few ms of its time on Redis (the BLMOVE timeout is computed from it).
// At concurrency <= kRefillConcurrency (16), the script that finishes a job also fetches the
// next one for its slot (one round trip per job, as BullMQ's moveToFinished); above it the
// fetch loop takes jobs in batches (cheaper per job for the server). Jobs that arrive beyond the
// concurrency (lowered at run time while a fetch was in flight) are handed back at once.
//
// Locks. The lock lasts lock_duration and is renewed every lock_duration / 2 for all the
// worker's active jobs in one script. A job whose lock is found lost (expired, or taken over
// after the stalled checker moved the job) has its handler's cancellation signal emitted, and
// its completion is refused by the finish script (it checks the token and the expiry): a worker
// that lost its lock cannot complete or fail the job late (stats().lost_locks counts them).
// Every stalled_interval, the worker runs the stalled check: active jobs whose lock expired
// (their worker died or hung) go back to waiting, first in line, or to failed once they stalled
// more than max_stalled_count times. Delivery is therefore at least once.
//
// Failures and retries: a failed run (an exception, an error_code, a timeout) is retried while
// the job's attempts allow, after its Backoff (or WorkerOptions::backoff_strategy for
// Backoff::custom), else the job goes to failed with the reason (the exception's what(), the
// error's message, "timeout"). Timeout (JobOptions::timeout): the handler's cancellation signal
// is emitted and the run fails at once; a handler that does not stop keeps running detached,
// and its late result is discarded.
//
// Never stops silently: a failing fetch (Redis restarting, a failover, a network cut) is
// logged, counted (stats().errors) and retried after retry_delay, doubling up to
// max_retry_delay; a failing lock renewal or finish is retried too (a finish up to 3 times, then
// the lock expires and the stalled checker hands the job on).
//
// async_close(timeout): stops fetching, lets active jobs finish for up to `timeout`, then hands
// the rest back to waiting (their run does not count as an attempt; their handlers are
// cancelled and their results discarded), waits for the worker's loops to end and completes.
//
// Threads and lifetimes: the worker runs on the backend's executor; use it from one thread (a
// single-threaded io_context, as the backends' own completions). The queue and the backend
// must outlive the worker's loops: call async_close and wait for it before destroying them.
// Destroying a started worker without closing it stops its loops at their next step.
#pragma once

#include <rediskit/detail/info.hpp>
#include <rediskit/services/job_queue.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit {

/// At most `max` jobs started per `duration`, across every worker of the queue (0: no limit).
struct WorkerRateLimit {
  std::int64_t max = 0;
  std::chrono::milliseconds duration{1000};
};

/// A worker's options (BullMQ's WorkerOptions where it has them).
struct WorkerOptions {
  std::int64_t concurrency = 1;                    ///< jobs in parallel (set_concurrency changes it)
  std::chrono::milliseconds lock_duration{30000};  ///< renewed every lock_duration / 2
  std::chrono::milliseconds stalled_interval{30000};  ///< 0: this worker runs no stalled check
  std::int64_t max_stalled_count = 1;              ///< stalls before a job fails
  std::chrono::milliseconds idle_wait{5000};       ///< longest wait for a marker when idle
  std::chrono::milliseconds retry_delay{100};      ///< after an error, doubling...
  std::chrono::milliseconds max_retry_delay{5000};  ///< ... up to this
  WorkerRateLimit limiter{};
  /// Backoff::custom: the delay after the `failures`-th failure (BullMQ's backoffStrategy).
  std::function<std::chrono::milliseconds(std::int64_t failures, Job const&, std::string_view error)>
      backoff_strategy{};
  std::string name{};  ///< lock tokens start with it; empty: "w<pid>-<random>"
  std::function<void(std::string_view)> log{};  ///< errors and lost locks, one line each
  /// Called on the worker's executor after the queue accepted a job's completion (BullMQ's
  /// worker 'completed' event), with the job as the handler left it (return_value). Must not
  /// throw.
  std::function<void(Job const&)> on_completed{};
  /// Called on the worker's executor after the queue stored a job's failure for good (out of
  /// attempts: BullMQ's 'failed' event of the last attempt), with the reason. Must not throw.
  std::function<void(Job const&, std::string_view error)> on_failed{};
};

/// What a worker did (this process's counters).
struct WorkerStats {
  std::int64_t completed = 0;
  std::int64_t failed = 0;       ///< runs that failed for good
  std::int64_t retried = 0;      ///< failed runs that will run again
  std::int64_t lost_locks = 0;   ///< runs whose completion the queue refused
  std::int64_t stalled = 0;      ///< jobs this worker's stalled checks moved
  std::int64_t timed_out = 0;
  std::int64_t handed_back = 0;  ///< by async_close
  std::int64_t errors = 0;       ///< backend errors (fetch, renew, finish, stalled check)
};

namespace detail::jobq {
struct Control;
}

/// The job a handler gets: the stored job, its cancellation and a progress updater.
struct ActiveJob : Job {
  /// True once the run was cancelled (timeout, lost lock, close).
  bool cancelled() const noexcept;
  /// Emitted (terminal) on timeout, lost lock or close; an awaitable handler's operations get
  /// it on their own.
  boost::asio::cancellation_slot cancellation_slot() noexcept;
  /// Stores the progress (any text, e.g. "50" or JSON) while the lock is held; no wait.
  void update_progress(std::string progress);
  /// Adds a line to the job's log (JobQueue::async_get_job_logs: the last 100 lines, each cut
  /// to 1000 bytes on one line) while the lock is held; no wait.
  void log(std::string line);
  /// The lock token of this run.
  std::string const& token() const noexcept { return token_; }

  // Set by the worker (not part of the interface).
  detail::jobq::Control* ctl_ = nullptr;
  std::string token_;
};

namespace detail::jobq {


struct Control {
  explicit Control(boost::asio::any_io_executor ex) : timer(ex) {}
  ActiveJob job;
  boost::asio::cancellation_signal signal;
  boost::asio::steady_timer timer;  // woken when the handler ends (or the timeout)
  std::function<void(std::string_view op, std::string)> write;  // "progress" or "log"
  bool finished = false;   // the handler returned
  bool failed = false;     // ... with a failure
  bool cancelled = false;  // the signal was emitted
  bool abandoned = false;  // handed back by close: no finish from the run
  bool lost = false;
  std::string error;

  void cancel() {
    if (cancelled) return;
    cancelled = true;
    if (!finished) signal.emit(boost::asio::cancellation_type::terminal);
  }
};

template <class X>
struct awaited {
  static constexpr bool is_awaitable = false;
};
template <class X, class E>
struct awaited<boost::asio::awaitable<X, E>> {
  static constexpr bool is_awaitable = true;
};

/// The handler in one of its three forms, erased: a plain function (the ec form wrapped into
/// one that throws) or a coroutine function. Only the worker's run_handler is a coroutine, once
/// per backend, whatever the handler's type.
struct ErasedHandler {
  std::function<void(ActiveJob&)> plain;
  std::function<boost::asio::awaitable<void>(ActiveJob&)> coro;
};

template <class F>
ErasedHandler erase_handler(F f) {
  auto p = std::make_shared<F>(std::move(f));
  if constexpr (std::is_invocable_v<F&, ActiveJob&, boost::system::error_code&>) {
    return {[p](ActiveJob& j) {
              boost::system::error_code ec;
              (*p)(j, ec);
              if (ec) throw boost::system::system_error(ec);
            },
            {}};
  } else {
    static_assert(std::is_invocable_v<F&, ActiveJob&>,
                  "a Worker handler is callable as h(ActiveJob&), h(ActiveJob&, error_code&), "
                  "or h(ActiveJob&) -> asio::awaitable<void>");
    if constexpr (awaited<std::invoke_result_t<F&, ActiveJob&>>::is_awaitable)
      return {{}, [p](ActiveJob& j) { return (*p)(j); }};
    else
      return {[p](ActiveJob& j) { (*p)(j); }, {}};
  }
}

inline std::string describe(std::exception_ptr const& e) {
  try {
    std::rethrow_exception(e);
  } catch (boost::system::system_error const& x) {
    return x.code() == boost::asio::error::operation_aborted ? std::string("cancelled") : x.what();
  } catch (std::exception const& x) {
    std::string w = x.what();
    return w.empty() ? std::string("failed") : w;
  } catch (...) {
    return "failed (an exception that is not a std::exception)";
  }
}

/// co_spawn's completion of a handler run.
struct HandlerDone {
  std::shared_ptr<Control> ctl;
  void operator()(std::exception_ptr e) {
    ctl->finished = true;
    if (e) {
      ctl->failed = true;
      ctl->error = describe(e);
    }
    ctl->timer.cancel();
  }
};

}  // namespace detail::jobq

inline bool ActiveJob::cancelled() const noexcept { return ctl_ != nullptr && ctl_->cancelled; }
inline boost::asio::cancellation_slot ActiveJob::cancellation_slot() noexcept {
  return ctl_ != nullptr ? ctl_->signal.slot() : boost::asio::cancellation_slot();
}
inline void ActiveJob::update_progress(std::string progress) {
  if (ctl_ != nullptr && ctl_->write) ctl_->write("progress", std::move(progress));
}
inline void ActiveJob::log(std::string line) {
  if (ctl_ != nullptr && ctl_->write) ctl_->write("log", std::move(line));
}

/// Processes the jobs of one JobQueue (see the top of this file).
template <Backend B, class Codec = JsonCodec>
class Worker {
  using error_code = boost::system::error_code;
  template <class X>
  using awaitable = boost::asio::awaitable<X>;
  using Control = detail::jobq::Control;
  using Clock = std::chrono::steady_clock;

 public:
  using Queue = JobQueue<B, Codec>;
  /// Up to this concurrency, finishing a job fetches the next one in the same script.
  static constexpr std::int64_t kRefillConcurrency = 16;

  /// A worker of `queue` (which, with its backend, must outlive the worker's loops). Throws
  /// rediskit::Exception (Error::invalid_argument) for options out of range.
  template <class Handler>
  Worker(Queue& queue, Handler handler, WorkerOptions options = {})
      : st_(std::make_shared<State>(queue, detail::jobq::erase_handler(std::move(handler)),
                                    std::move(options))) {
    auto const& o = st_->opt;
    if (o.concurrency < 1 || o.lock_duration.count() < 2 || o.stalled_interval.count() < 0 ||
        o.max_stalled_count < 0 || o.idle_wait.count() < 1 || o.retry_delay.count() < 1 ||
        o.max_retry_delay < o.retry_delay || o.limiter.max < 0 || o.limiter.duration.count() < 1)
      throw Exception(make_error_code(Error::invalid_argument),
                      "WorkerOptions: concurrency, idle_wait, retry_delay, limiter.duration must "
                      "be at least 1, lock_duration at least 2 ms, the others not negative");
    if (st_->opt.name.empty()) {
      std::random_device rd;
      st_->opt.name = "w" + std::to_string(::getpid()) + "-" + std::to_string(rd());
    }
  }
  Worker(Worker const&) = delete;
  Worker& operator=(Worker const&) = delete;
  ~Worker() {
    boost::asio::post(st_->ex, [st = st_] { wake_all(*st); });
    st_->closing = true;
  }

  /// Starts fetching (posted to the backend's executor). Once only.
  void start() {
    if (st_->started) return;
    st_->started = true;
    st_->loops = 4;
    boost::asio::co_spawn(st_->ex, check_eviction(st_), boost::asio::detached);
    boost::asio::co_spawn(st_->ex, fetch_loop(st_), boost::asio::detached);
    boost::asio::co_spawn(st_->ex, renew_loop(st_), boost::asio::detached);
    boost::asio::co_spawn(st_->ex, stalled_loop(st_), boost::asio::detached);
  }

  /// The server's maxmemory-policy, as start() read it (INFO memory), when it is not
  /// `noeviction`: then the server may evict this queue's keys, and jobs are lost without a
  /// trace. Empty when it is noeviction, not read yet, or could not be read (an ACL user
  /// without INFO).
  std::string const& eviction_policy() const noexcept { return st_->eviction_policy; }

  /// Stops fetching; active jobs get `timeout`, then are handed back to waiting; completes when
  /// the worker's loops ended (see the top of the file). Handler: void(error_code).
  template <class Token = boost::asio::deferred_t>
  auto async_close(std::chrono::milliseconds timeout, Token&& token = {}) {
    return detail::jobq::spawn<void>(st_->ex, std::forward<Token>(token),
                                     [st = st_, timeout] { return close(st, timeout); });
  }

  /// Changes the number of jobs in parallel (at least 1), at once for fetching.
  void set_concurrency(std::int64_t n) {
    if (n < 1) throw Exception(make_error_code(Error::invalid_argument), "concurrency below 1");
    st_->opt.concurrency = n;
    st_->slot_timer.cancel();
  }

  WorkerStats const& stats() const noexcept { return st_->stats; }
  std::size_t active_count() const noexcept { return st_->active.size(); }
  bool closing() const noexcept { return st_->closing; }
  WorkerOptions const& options() const noexcept { return st_->opt; }

 private:
  struct State {
    State(Queue& q, detail::jobq::ErasedHandler h, WorkerOptions o)
        : queue(&q), backend(&q.backend()), handler(std::move(h)), opt(std::move(o)),
          ex(q.get_executor()), fetch_timer(ex), slot_timer(ex), renew_timer(ex),
          stalled_timer(ex), close_timer(ex), rng(std::random_device{}()) {}
    Queue* queue;
    B* backend;
    detail::jobq::ErasedHandler handler;
    WorkerOptions opt;
    boost::asio::any_io_executor ex;
    boost::asio::steady_timer fetch_timer, slot_timer, renew_timer, stalled_timer, close_timer;
    boost::asio::cancellation_signal idle_cancel;
    bool idle_waiting = false;
    bool started = false;
    bool closing = false;
    int loops = 0;
    std::string eviction_policy;  // see eviction_policy()
    std::map<std::string, std::shared_ptr<Control>> active;
    WorkerStats stats;
    std::mt19937_64 rng;
  };
  using StatePtr = std::shared_ptr<State>;

  static void log(State& st, std::string const& line) {
    if (st.opt.log) st.opt.log(line);
  }
  static void error(State& st, std::string_view what, error_code ec) {
    ++st.stats.errors;
    log(st, "Worker(" + st.queue->name() + "): " + std::string(what) + " failed: " + ec.message());
  }

  // Wakes whatever waits for a change (a free slot, the end of the active jobs).
  static void notify(State& st) {
    st.slot_timer.cancel();
    if (st.closing) {
      st.close_timer.cancel();
      st.renew_timer.cancel();
    }
  }
  static void wake_all(State& st) {
    st.closing = true;
    st.fetch_timer.cancel();
    st.slot_timer.cancel();
    st.stalled_timer.cancel();
    st.renew_timer.cancel();
    st.close_timer.cancel();
    if (st.idle_waiting) st.idle_cancel.emit(boost::asio::cancellation_type::terminal);
  }

  static awaitable<void> sleep(State& st, boost::asio::steady_timer& t,
                               std::chrono::milliseconds d) {
    if (st.closing) co_return;
    t.expires_after(d);
    (void)co_await t.async_wait(detail::jobq::tuple_awaitable);
  }

  struct LoopGuard {
    State* st;
    ~LoopGuard() {
      --st->loops;
      notify(*st);
    }
  };

  // Once at start: a maxmemory-policy other than noeviction loses jobs (BullMQ warns too).
  static awaitable<void> check_eviction(StatePtr st) {
    LoopGuard const guard{st.get()};
    auto [ec, text] =
        co_await st->backend->async_exec(cmd::info{"memory"}, detail::jobq::tuple_awaitable);
    if (ec) co_return;  // INFO denied, or the link down at start: the fetch loop reports that
    std::string const policy(detail::info_value(text, "maxmemory_policy"));
    if (policy.empty() || policy == "noeviction") co_return;
    st->eviction_policy = policy;
    log(*st, "Worker(" + st->queue->name() + "): the server's maxmemory-policy is " + policy +
                 ": under memory pressure it evicts keys, this queue's jobs with them, and they "
                 "are lost without a trace. Set maxmemory-policy noeviction on the server that "
                 "holds the queue");
  }

  static awaitable<void> fetch_loop(StatePtr st) {
    LoopGuard const guard{st.get()};
    auto delay = st->opt.retry_delay;
    while (!st->closing) {
      std::int64_t const free = st->opt.concurrency - static_cast<std::int64_t>(st->active.size());
      if (free <= 0) {
        st->slot_timer.expires_at(Clock::time_point::max());
        (void)co_await st->slot_timer.async_wait(detail::jobq::tuple_awaitable);
        continue;
      }
      std::string const ttl = std::to_string(st->opt.lock_duration.count()),
                        count = std::to_string(free), max = std::to_string(st->opt.limiter.max),
                        window = std::to_string(st->opt.limiter.duration.count());
      std::array<std::string_view, 5> const args = {st->opt.name, ttl, count, max, window};
      auto [ec, r] = co_await st->backend->async_exec(
          detail::jobq::fetch_script(st->queue->keys(), args), detail::jobq::tuple_awaitable);
      if (!ec && r.size() < detail::jobq::kFetchHead)
        ec = make_error_code(Error::incompatible_size);
      if (ec) {
        error(*st, "fetching", ec);
        co_await sleep(*st, st->fetch_timer, delay);
        delay = std::min(delay * 2, st->opt.max_retry_delay);
        continue;
      }
      delay = st->opt.retry_delay;
      std::vector<std::shared_ptr<Control>> got;
      for (std::size_t i = detail::jobq::kFetchHead; i + detail::jobq::kFetchPerJob <= r.size();
           i += detail::jobq::kFetchPerJob)
        got.push_back(make_control(st, r, i));
      if (st->closing) {  // close came while fetching: these go straight back
        co_await hand_back(st, std::move(got));
        break;
      }
      // More than the (lowered) concurrency allows go back too.
      auto excess = take_excess(*st, got, st->active.size());
      if (!excess.empty()) co_await hand_back(st, std::move(excess));
      for (auto& c : got) start_job(st, std::move(c));
      std::int64_t const hint = detail::jobq::to_int(std::string_view(r[1]), -1);
      if (r[0] == "ok") continue;
      // Empty or paused: wait for a marker, at most until the next delayed job is due. Limited:
      // until the rate-limit window ends. On the marker, not a timer: the wait follows the
      // backend's clock (FakeBackend's manual one), and an add wakes it early at worst.
      auto wait = st->opt.idle_wait;
      if (r[0] == "limited")
        wait = std::chrono::milliseconds(std::max<std::int64_t>(hint, 1));
      else if (r[0] == "empty" && hint > 0 && hint < wait.count())
        wait = std::chrono::milliseconds(hint);
      if (st->closing) break;
      std::string_view const marker = st->queue->keys()[detail::jobq::kMarker],
                             sink = st->queue->keys()[detail::jobq::kSink];
      st->idle_waiting = true;
      auto [bec, moved] = co_await st->backend->async_exec(
          cmd::blmove{.source = marker, .destination = sink, .timeout = wait},
          boost::asio::bind_cancellation_slot(st->idle_cancel.slot(), detail::jobq::tuple_awaitable));
      st->idle_waiting = false;
      (void)moved;
      if (bec && !st->closing) {
        error(*st, "waiting for jobs", bec);
        co_await sleep(*st, st->fetch_timer, delay);
        delay = std::min(delay * 2, st->opt.max_retry_delay);
      }
    }
  }

  static std::shared_ptr<Control> make_control(StatePtr const& st, std::vector<std::string>& r,
                                               std::size_t i) {
    auto ctl = std::make_shared<Control>(st->ex);
    ActiveJob& j = ctl->job;
    j.id = std::move(r[i]);
    j.name = std::move(r[i + 1]);
    j.payload = std::move(r[i + 2]);
    detail::jobq::decode_options(r[i + 3], j.options);
    j.attempts_started = detail::jobq::to_int(std::string_view(r[i + 4]));
    j.attempts_made = detail::jobq::to_int(std::string_view(r[i + 5]));
    j.stalled_count = detail::jobq::to_int(std::string_view(r[i + 6]));
    j.progress = std::move(r[i + 7]);
    j.timestamp = detail::jobq::to_int(std::string_view(r[i + 8]));
    j.token_ = std::move(r[i + 9]);
    j.state = JobState::active;
    j.ctl_ = ctl.get();
    ctl->write = [w = std::weak_ptr<State>(st), id = j.id, tok = j.token_](std::string_view op,
                                                                           std::string v) {
      auto s = w.lock();
      if (!s) return;
      std::array<std::string_view, 4> const a = {op, id, tok, v};
      s->backend->async_exec(detail::jobq::admin_script(s->queue->keys(), a),
                             [](error_code, std::int64_t) {});
    };
    return ctl;
  }

  // The jobs of `got` beyond what the concurrency leaves next to `others` active ones.
  static std::vector<std::shared_ptr<Control>> take_excess(
      State& st, std::vector<std::shared_ptr<Control>>& got, std::size_t others) {
    std::vector<std::shared_ptr<Control>> excess;
    while (!got.empty() &&
           static_cast<std::int64_t>(others + got.size()) > st.opt.concurrency) {
      excess.push_back(std::move(got.back()));
      got.pop_back();
    }
    return excess;
  }

  static void start_job(StatePtr const& st, std::shared_ptr<Control> ctl) {
    st->active[ctl->job.id] = ctl;
    boost::asio::co_spawn(st->ex, process(st, std::move(ctl)), boost::asio::detached);
  }

  static awaitable<void> run_handler(StatePtr st, std::shared_ptr<Control> ctl) {
    if (st->handler.coro)
      co_await st->handler.coro(ctl->job);
    else
      st->handler.plain(ctl->job);
  }

  static std::int64_t retry_delay(State& st, Control const& c) {
    ActiveJob const& j = c.job;
    std::int64_t const failures = j.attempts_made + 1;
    if (failures >= j.options.attempts) return -1;
    if (j.options.backoff.kind == Backoff::Kind::custom && st.opt.backoff_strategy)
      return std::max<std::int64_t>(0, st.opt.backoff_strategy(failures, j, c.error).count());
    double const u = std::uniform_real_distribution<double>(0.0, 1.0)(st.rng);
    return j.options.backoff.delay_for(failures, u).count();
  }

  static awaitable<void> process(StatePtr st, std::shared_ptr<Control> ctl) {
    boost::asio::co_spawn(
        st->ex, run_handler(st, ctl),
        boost::asio::bind_cancellation_slot(ctl->signal.slot(), detail::jobq::HandlerDone{ctl}));
    auto const timeout = ctl->job.options.timeout;
    if (!ctl->finished && !ctl->abandoned) {
      if (timeout.count() > 0)
        ctl->timer.expires_after(timeout);
      else
        ctl->timer.expires_at(Clock::time_point::max());
      (void)co_await ctl->timer.async_wait(detail::jobq::tuple_awaitable);
    }
    if (ctl->abandoned) co_return;  // handed back by async_close
    bool const timed_out = !ctl->finished;
    if (timed_out) {
      ++st->stats.timed_out;
      ctl->cancel();
      ctl->failed = true;
      ctl->error = "timeout";
    }
    std::string const mode = ctl->failed ? "f" : "c";
    std::string const& value = ctl->failed ? ctl->error : ctl->job.return_value;
    std::int64_t const retry = ctl->failed ? retry_delay(*st, *ctl) : -1;
    std::string const delay = std::to_string(retry);
    // At low concurrency the same round trip takes the next job for this slot (one round trip
    // per job instead of two); at higher concurrency the fetch loop takes jobs in batches, which
    // costs the server less per job. Not while closing, nor when the concurrency was lowered
    // below what is active.
    bool const refill = !st->closing && st->opt.concurrency <= kRefillConcurrency &&
                        static_cast<std::int64_t>(st->active.size()) <= st->opt.concurrency;
    std::string const ttl = std::to_string(st->opt.lock_duration.count()),
                      count = refill ? "1" : "0", max = std::to_string(st->opt.limiter.max),
                      window = std::to_string(st->opt.limiter.duration.count());
    std::array<std::string_view, 10> const args = {ctl->job.id, ctl->job.token_, mode, value, delay,
                                                   st->opt.name, ttl, count, max, window};
    std::int64_t result = -1;
    std::vector<std::string> next;
    for (int attempt = 0; attempt < 3 && !ctl->abandoned; ++attempt) {
      auto [ec, r] = co_await st->backend->async_exec(
          detail::jobq::finish_script(st->queue->keys(), args), detail::jobq::tuple_awaitable);
      if (!ec && r.empty()) ec = make_error_code(Error::incompatible_size);
      if (!ec) {
        result = detail::jobq::to_int(std::string_view(r[0]), -1);
        next = std::move(r);
        break;
      }
      error(*st, "finishing job " + ctl->job.id, ec);
      boost::asio::steady_timer t(st->ex, st->opt.retry_delay);
      (void)co_await t.async_wait(detail::jobq::tuple_awaitable);
    }
    std::vector<std::shared_ptr<Control>> got;
    for (std::size_t i = 1 + detail::jobq::kFetchHead; i + detail::jobq::kFetchPerJob <= next.size();
         i += detail::jobq::kFetchPerJob)
      got.push_back(make_control(st, next, i));
    {
      // Close came meanwhile, or the concurrency was lowered: what does not fit goes back.
      auto it = st->active.find(ctl->job.id);
      std::size_t const others = st->active.size() - (it != st->active.end() && it->second == ctl);
      std::vector<std::shared_ptr<Control>> excess;
      if (ctl->abandoned || st->closing)
        excess.swap(got);
      else
        excess = take_excess(*st, got, others);
      if (!excess.empty()) co_await hand_back(st, std::move(excess));
      if (ctl->abandoned) co_return;
      if (st->closing && !got.empty()) {
        co_await hand_back(st, std::move(got));
        got.clear();
      }
    }
    if (result == 0) {
      ++st->stats.lost_locks;
      log(*st, "Worker(" + st->queue->name() + "): job " + ctl->job.id +
                   ": the lock was lost; its result was not stored");
    } else if (result == 2) {
      ++st->stats.retried;
    } else if (result == 1) {
      ++(ctl->failed ? st->stats.failed : st->stats.completed);
      if (!ctl->failed && st->opt.on_completed) st->opt.on_completed(ctl->job);
      if (ctl->failed && st->opt.on_failed) st->opt.on_failed(ctl->job, ctl->error);
    }
    auto it = st->active.find(ctl->job.id);
    if (it != st->active.end() && it->second == ctl) st->active.erase(it);
    for (auto& c : got) start_job(st, std::move(c));
    if (got.empty()) notify(*st);  // a slot is free: the fetch loop takes over
  }

  static awaitable<void> renew_loop(StatePtr st) {
    LoopGuard const guard{st.get()};
    auto const every = st->opt.lock_duration / 2;
    while (!st->closing || !st->active.empty()) {
      st->renew_timer.expires_after(every);
      (void)co_await st->renew_timer.async_wait(detail::jobq::tuple_awaitable);
      if (st->active.empty()) continue;
      std::vector<std::shared_ptr<Control>> held;
      std::string const ttl = std::to_string(st->opt.lock_duration.count());
      std::vector<std::string_view> args = {ttl};
      for (auto const& [id, c] : st->active) {
        if (c->lost) continue;
        held.push_back(c);
        args.push_back(c->job.id);
        args.push_back(c->job.token_);
      }
      if (held.empty()) continue;
      auto [ec, r] = co_await st->backend->async_exec(
          detail::jobq::renew_script(st->queue->keys(), args), detail::jobq::tuple_awaitable);
      if (ec) {
        error(*st, "renewing locks", ec);
        continue;
      }
      for (std::size_t i = 0; i < held.size() && i < r.size(); ++i) {
        if (r[i] != 0) continue;
        held[i]->lost = true;
        log(*st, "Worker(" + st->queue->name() + "): job " + held[i]->job.id +
                     ": lock lost; its handler is cancelled");
        held[i]->cancel();
      }
    }
  }

  static awaitable<void> stalled_loop(StatePtr st) {
    LoopGuard const guard{st.get()};
    if (st->opt.stalled_interval.count() == 0) co_return;
    while (!st->closing) {
      try {
        auto moved = co_await st->queue->check_stalled(st->opt.max_stalled_count);
        st->stats.stalled += static_cast<std::int64_t>(moved.size());
      } catch (boost::system::system_error const& x) {
        error(*st, "the stalled check", x.code());
      }
      co_await sleep(*st, st->stalled_timer, st->opt.stalled_interval);
    }
  }

  // Hands jobs back to waiting (one round trip), for close.
  static awaitable<void> hand_back(StatePtr st, std::vector<std::shared_ptr<Control>> jobs) {
    if (jobs.empty()) co_return;
    std::vector<std::array<std::string_view, 10>> args;
    args.reserve(jobs.size());
    using Cmd = decltype(detail::jobq::finish_script(st->queue->keys(), {}));
    std::vector<Cmd> cmds;
    cmds.reserve(jobs.size());
    for (auto const& c : jobs) {
      c->abandoned = true;
      c->cancel();
      c->timer.cancel();
      args.push_back({c->job.id, c->job.token_, "b", "", "-1", "", "0", "0", "0", "1"});
      cmds.push_back(detail::jobq::finish_script(st->queue->keys(), args.back()));
    }
    auto [ec, r] = co_await st->backend->async_exec(cmds, detail::jobq::tuple_awaitable);
    if (ec) {
      error(*st, "handing jobs back", ec);  // their locks expire: the stalled check requeues them
      co_return;
    }
    for (auto const& v : r) st->stats.handed_back += !v.empty() && v[0] == "1";
  }

  static awaitable<void> close(StatePtr st, std::chrono::milliseconds timeout) {
    wake_all(*st);
    auto const deadline = Clock::now() + timeout;
    bool handed = false;
    while (st->loops > 0 || !st->active.empty()) {
      if (!handed && !st->active.empty() && Clock::now() >= deadline) {
        handed = true;
        std::vector<std::shared_ptr<Control>> jobs;
        for (auto& [id, c] : st->active) jobs.push_back(c);
        st->active.clear();
        co_await hand_back(st, std::move(jobs));
        notify(*st);
        continue;
      }
      st->close_timer.expires_at(handed || st->active.empty() ? Clock::time_point::max() : deadline);
      (void)co_await st->close_timer.async_wait(detail::jobq::tuple_awaitable);
    }
  }

  StatePtr st_;
};

}  // namespace rediskit
