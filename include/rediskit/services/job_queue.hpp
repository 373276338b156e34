// rediskit::JobQueue<Backend, Codec>: seed 002's BullMQ queues (`queue:auto-approval`,
// `queue:notifications`, `queue:analytics`, `queue:email`, `queue:cleanup`) over any Backend: jobs
// with ids, delays, priorities, retries with backoff, automatic cleanup of finished jobs, pause,
// counts and paged listings. Workers that process the jobs are in rediskit/services/worker.hpp.
//
//   rediskit::JobQueue<rediskit::RedisBackend> emails(redis, "email");   // keys {queue:email}:...
//   rediskit::JobOptions o;
//   o.with_attempts(5, rediskit::Backoff::exponential(1s)).with_remove_on_complete(true);
//   rediskit::AddResult r = co_await emails.async_add("welcome", Mail{"a@b.c"}, o);
//   // r.id: "1" (or o.job_id); r.added == false: a job with that id exists (not added twice)
//   rediskit::JobCounts c = co_await emails.async_get_job_counts();   // waiting, active, ...
//
// Keys. Every key of a queue carries one hash tag, `{<prefix>:<name>}` (prefix "queue" by
// default, so seed 002's `queue:email` is the queue named "email"): a queue lives in one cluster
// slot and every state move is one atomic script on every backend (ClusterBackend included).
//
//   key                       type  what
//   {queue:<n>}:wait          list  ready jobs without a priority (pushed left, taken right: FIFO;
//                                   lifo jobs are pushed right)
//   {queue:<n>}:prioritized   zset  ready jobs with a priority; score priority * 2^32 + sequence
//   {queue:<n>}:delayed       zset  delayed jobs and retries waiting for their backoff; score: due
//                                   unix ms
//   {queue:<n>}:active        zset  jobs a worker holds; score: start unix ms
//   {queue:<n>}:completed     zset  finished jobs kept by remove_on_complete; score: finish ms
//   {queue:<n>}:failed        zset  failed jobs kept by remove_on_fail; score: finish ms
//   {queue:<n>}:jobs          hash  every job's fields, `<id>:<f>` (f: n name, d data, o options,
//                                   y priority, t created ms, w state, a runs started, m attempts
//                                   made (failures), s stalls, k lock token, b processed ms, f
//                                   finished ms, p progress, r return value, e failed reason, c / x
//                                   keep policy on complete / on fail, h the history of failed
//                                   runs: "<run>\t<unix ms>\t<error>\n" lines, the last 32,
//                                   l the log: ActiveJob::log's lines, the last 100)
//   {queue:<n>}:meta          hash  paused, the id counter, the priority sequence, the token counter
//   {queue:<n>}:locks         zset  active job -> lock expiry (unix ms)
//   {queue:<n>}:marker        list  wake-up markers for idle workers (at most 16 entries)
//   {queue:<n>}:marker-sink   list  where a woken worker moves the marker (cleared by each fetch)
//   {queue:<n>}:limiter       string jobs started in the current rate-limit window (PX duration)
//   {queue:<n>}:metrics       hash  c<minute> / f<minute> -> jobs completed / failed in that minute
//                                   (unix minutes, server time; 24 hours kept)
//   {queue:<n>}:metrics-index zset  the metrics' fields by minute (for pruning)
//   {queue:<n>}:dead          zset  the dead-letter set: jobs with JobOptions::dead_letter that
//                                   ran out of attempts (or stalled out); score: when, ms
//   {queue:<n>}:events        stream every state move (JobEventKind), added by the script that
//                                   makes it; about the last 10 000 (XADD MAXLEN ~ 10000)
//
// A job's fields live in one hash of the queue, not in a key per job: a script touches only keys
// it declares (Redis Cluster's rule, which MemoryConfig::cluster_checks enforces), and the job
// count of a queue is bounded by memory, not by key count.
//
// Semantics (as BullMQ's where it has them):
// - Ids: "1", "2", ... from the queue's counter, or JobOptions::job_id. Adding an id that exists
//   adds nothing and reports AddResult::added = false (the first job is untouched). A custom id
//   may not be all digits (it could meet the counter) nor empty.
// - Order: jobs without a priority run before prioritized ones; among prioritized, a lower
//   number runs first (1 is the highest), FIFO within a priority. A delayed job becomes ready when
//   its time comes (a worker's fetch promotes due jobs; async_promote does it at once).
// - Retries: a failed run of a job with attempts = N is retried while fewer than N runs failed,
//   after the backoff (fixed: delay; exponential: delay * 2^(failures - 1); jitter j in [0, 1]:
//   a uniform delay in [d * (1 - j), d]); the worker computes the delay, the script parks the job
//   in the delayed set at server time + delay. A job that stalled (its worker's lock expired)
//   goes back to waiting, or to failed once it stalled more than max_stalled_count times.
// - Dead letters (not in BullMQ): a job added with JobOptions::dead_letter (or through a queue
//   object with JobQueueOptions::dead_letter, unless it sets remove_on_fail) that runs out of
//   attempts, or stalls out, goes to the dead set (JobState::dead) instead of failed, with its
//   last error (failed_reason) and the history of its failed runs (Job::history). It stays there,
//   whatever remove_on_fail says, until async_retry_dead(id) sends it back to waiting (attempts
//   reset, history kept), async_remove, async_clean(..., JobState::dead) or async_obliterate.
//   It counts as failed in the per-minute metrics, and as `dead` in async_get_job_counts.
// - remove_on_complete / remove_on_fail: KeepJobs: true removes the job as it finishes, false
//   keeps all, KeepJobs::last(n) keeps the n newest, KeepJobs::younger_than(age) those that
//   finished within `age` (older ones are pruned, at most 1000 per finish).
// - Time is the server's (TIME inside each script; FakeBackend's manual clock): delays, lock
//   expiry and finish times do not depend on the clocks of the processes that use the queue.
// - Pause: workers fetch nothing while the queue is paused; jobs keep being added (counted as
//   `paused`, not `waiting`, in async_get_job_counts).
// - Events: QueueEvents (at the end of this file) reads the events stream;
//   async_wait_until_finished waits on it for one job. Each move's event is written in the
//   move's own script, so a reader sees a job's events in the order of its moves, and never an
//   event of a move that did not happen.
//
// Every operation is one round trip (async_add_bulk too: one script per 100 jobs, all in one
// request; each script is atomic, the bulk as a whole is not), except async_get_jobs and
// async_get_metrics (two) and async_get_prometheus_text (counts and metrics: five). Operations
// never complete inside the initiating call. Bad input (an empty or all-digit job id, attempts
// < 1, a negative delay or backoff, jitter outside [0, 1], a priority outside [0, 2^21], a
// negative count or age, a cursor or count below 0 / 1, an unknown state) completes with
// Error::invalid_argument and writes nothing; JobOptions::problem() names the problem. A bulk with one bad job adds none.
// Thread safety: as the backend. Lifetimes: the queue and its backend outlive the operations;
// arguments may die once the async_ call returns.
//
// Costs and limits, honestly: the jobs hash holds every job of the queue (its size is the
// queue's size); async_drain and async_obliterate run in one script and block the server for
// their duration on a very large queue (BullMQ's do it in batches).
#pragma once

#include <rediskit/cmd/hashes.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/cmd/lists.hpp>
#include <rediskit/cmd/server.hpp>
#include <rediskit/cmd/sorted_sets.hpp>
#include <rediskit/cmd/streams.hpp>
#include <rediskit/cmd/strings.hpp>
#include <rediskit/codec/json_codec.hpp>
#include <rediskit/command.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/spawn.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/error.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit {

/// How long a retry waits (see the top of the file).
struct Backoff {
  enum class Kind : std::uint8_t { none, fixed, exponential, custom };
  Kind kind = Kind::none;
  std::chrono::milliseconds delay{0};
  double jitter = 0;  ///< in [0, 1]: the delay is uniform in [d * (1 - jitter), d]

  Backoff() noexcept {}
  Backoff(Kind k, std::chrono::milliseconds d, double j = 0) noexcept : kind(k), delay(d), jitter(j) {}
  static Backoff fixed(std::chrono::milliseconds d, double jitter = 0) noexcept {
    return {Kind::fixed, d, jitter};
  }
  static Backoff exponential(std::chrono::milliseconds d, double jitter = 0) noexcept {
    return {Kind::exponential, d, jitter};
  }
  /// WorkerOptions::backoff_strategy decides (`d` when the worker has none).
  static Backoff custom(std::chrono::milliseconds d = {}) noexcept { return {Kind::custom, d, 0}; }

  /// The delay after the `failures`-th failed run (1 for the first), before jitter; u in [0, 1)
  /// applies the jitter. none: 0; custom: `delay` (the worker's strategy comes first).
  std::chrono::milliseconds delay_for(std::int64_t failures, double u = 0) const noexcept {
    double d = static_cast<double>(delay.count());
    if (kind == Kind::none) return std::chrono::milliseconds(0);
    if (kind == Kind::exponential) d *= std::pow(2.0, static_cast<double>(std::clamp<std::int64_t>(failures, 1, 40) - 1));
    d = std::min(d, 1e15);
    if (jitter > 0) d -= d * jitter * u;
    return std::chrono::milliseconds(static_cast<std::int64_t>(d));
  }
};

/// What to keep of finished jobs (remove_on_complete / remove_on_fail, see the top of the file).
struct KeepJobs {
  enum class Kind : std::uint8_t { all, none, count, age };
  Kind kind = Kind::all;
  std::int64_t count = 0;         ///< Kind::count: keep the newest `count`
  std::chrono::milliseconds age{0};  ///< Kind::age: keep those finished within `age`

  KeepJobs() noexcept {}
  /// BullMQ's boolean: true removes each job as it finishes, false keeps them all.
  KeepJobs(bool remove) noexcept : kind(remove ? Kind::none : Kind::all) {}  // NOLINT: implicit
  static KeepJobs last(std::int64_t n) noexcept {
    KeepJobs k;
    k.kind = Kind::count;
    k.count = n;
    return k;
  }
  static KeepJobs younger_than(std::chrono::milliseconds a) noexcept {
    KeepJobs k;
    k.kind = Kind::age;
    k.age = a;
    return k;
  }
  /// The scripts' form: "k" all, "r" none, "c<n>", "a<ms>".
  std::string spec() const {
    switch (kind) {
      case Kind::none: return "r";
      case Kind::count: return "c" + std::to_string(count);
      case Kind::age: return "a" + std::to_string(age.count());
      case Kind::all: break;
    }
    return "k";
  }
};

/// A job's options (BullMQ's JobsOptions). Built with setters, or member by member; it has a
/// constructor, so it is safe in a co_await expression under g++ 12 (see PITFALLS.md).
struct JobOptions {
  std::optional<std::string> job_id{};   ///< unset: the queue's counter gives one
  std::chrono::milliseconds delay{0};    ///< run no earlier than this from now
  std::int64_t priority = 0;             ///< 0: none; 1 (highest) .. 2^21 (lowest)
  bool lifo = false;                     ///< run before the jobs already waiting
  std::int64_t attempts = 1;             ///< runs in all, the first included
  Backoff backoff{};                     ///< the delay before each retry
  KeepJobs remove_on_complete{};         ///< what the completed set keeps
  KeepJobs remove_on_fail{};             ///< what the failed set keeps
  std::chrono::milliseconds timeout{0};  ///< 0: none; else a run longer than this fails (the
                                         ///< worker discards the handler's late result)
  /// Out of attempts: to the dead-letter set (kept until retried or removed), not to failed.
  /// remove_on_fail must then keep its default.
  bool dead_letter = false;

  JobOptions() noexcept {}
  JobOptions& with_id(std::string id) & { job_id = std::move(id); return *this; }
  JobOptions&& with_id(std::string id) && { return std::move(with_id(std::move(id))); }
  JobOptions& with_delay(std::chrono::milliseconds d) & { delay = d; return *this; }
  JobOptions&& with_delay(std::chrono::milliseconds d) && { return std::move(with_delay(d)); }
  JobOptions& with_priority(std::int64_t p) & { priority = p; return *this; }
  JobOptions&& with_priority(std::int64_t p) && { return std::move(with_priority(p)); }
  JobOptions& with_lifo(bool l = true) & { lifo = l; return *this; }
  JobOptions&& with_lifo(bool l = true) && { return std::move(with_lifo(l)); }
  JobOptions& with_attempts(std::int64_t n, Backoff b = {}) & {
    attempts = n;
    backoff = b;
    return *this;
  }
  JobOptions&& with_attempts(std::int64_t n, Backoff b = {}) && {
    return std::move(with_attempts(n, b));
  }
  JobOptions& with_remove_on_complete(KeepJobs k) & { remove_on_complete = k; return *this; }
  JobOptions&& with_remove_on_complete(KeepJobs k) && { return std::move(with_remove_on_complete(k)); }
  JobOptions& with_remove_on_fail(KeepJobs k) & { remove_on_fail = k; return *this; }
  JobOptions&& with_remove_on_fail(KeepJobs k) && { return std::move(with_remove_on_fail(k)); }
  JobOptions& with_timeout(std::chrono::milliseconds t) & { timeout = t; return *this; }
  JobOptions&& with_timeout(std::chrono::milliseconds t) && { return std::move(with_timeout(t)); }
  JobOptions& with_dead_letter(bool d = true) & { dead_letter = d; return *this; }
  JobOptions&& with_dead_letter(bool d = true) && { return std::move(with_dead_letter(d)); }

  static constexpr std::int64_t max_priority = std::int64_t(1) << 21;

  /// What is wrong with these options (empty: nothing).
  std::string problem() const {
    if (job_id) {
      if (job_id->empty()) return "job_id is empty";
      if (std::all_of(job_id->begin(), job_id->end(), [](char c) { return c >= '0' && c <= '9'; }))
        return "job_id is all digits (such ids are the queue's own)";
    }
    if (delay.count() < 0) return "delay is negative";
    if (priority < 0 || priority > max_priority) return "priority is outside [0, 2^21]";
    if (attempts < 1) return "attempts is below 1";
    if (backoff.delay.count() < 0) return "backoff delay is negative";
    if (!(backoff.jitter >= 0 && backoff.jitter <= 1)) return "backoff jitter is outside [0, 1]";
    for (KeepJobs const* k : {&remove_on_complete, &remove_on_fail}) {
      if (k->kind == KeepJobs::Kind::count && k->count < 0) return "a KeepJobs count is negative";
      if (k->kind == KeepJobs::Kind::age && k->age.count() < 0) return "a KeepJobs age is negative";
    }
    if (timeout.count() < 0) return "timeout is negative";
    if (dead_letter && remove_on_fail.kind != KeepJobs::Kind::all)
      return "dead_letter and remove_on_fail are both set (a dead letter is kept until retried "
             "or removed)";
    return {};
  }
};

/// Where a job is.
enum class JobState : std::uint8_t {
  waiting,
  active,
  delayed,
  prioritized,
  completed,
  failed,
  dead,     ///< in the dead-letter set (JobOptions::dead_letter)
  paused,   ///< async_get_jobs: the wait list of a paused queue
  unknown,  ///< no such job
};

inline std::string_view to_string(JobState s) noexcept {
  switch (s) {
    case JobState::waiting: return "waiting";
    case JobState::active: return "active";
    case JobState::delayed: return "delayed";
    case JobState::prioritized: return "prioritized";
    case JobState::completed: return "completed";
    case JobState::failed: return "failed";
    case JobState::dead: return "dead";
    case JobState::paused: return "paused";
    case JobState::unknown: break;
  }
  return "unknown";
}

/// One failed run of a job (Job::history).
struct JobRun {
  std::int64_t run = 0;  ///< which run failed (1: the first; Job::attempts_started counts them)
  std::int64_t at = 0;   ///< when it was recorded (unix ms, server time)
  std::string error;     ///< the handler's error, "timeout", or a stall
  friend bool operator==(JobRun const&, JobRun const&) = default;
};

/// A job as stored (async_get_job, async_get_jobs; a worker's handler gets an ActiveJob).
struct Job {
  std::string id;
  std::string name;
  std::string payload;  ///< the data, encoded by the queue's codec
  JobOptions options{};
  JobState state = JobState::unknown;
  std::int64_t attempts_started = 0;  ///< runs started (this one included, for an ActiveJob)
  std::int64_t attempts_made = 0;     ///< runs that failed
  std::int64_t stalled_count = 0;
  std::int64_t timestamp = 0;     ///< created (unix ms, server time)
  std::int64_t processed_on = 0;  ///< last run started (0: never)
  std::int64_t finished_on = 0;   ///< completed or failed (0: not)
  std::string progress;
  std::string return_value;
  std::string failed_reason;
  /// Its failed runs, oldest first: the last 32 handler errors, timeouts and stalls, each
  /// error cut to 500 bytes (tabs and line breaks as spaces). Kept across async_retry_jobs.
  std::vector<JobRun> history;

  /// The data decoded into T by codec `c` (the queue's codec type); throws
  /// boost::system::system_error (Error::decode_failed) when it does not decode.
  template <class T, class C = JsonCodec>
  T data(C const& c = C{}) const {
    T v{};
    std::string why;
    if (auto ec = c.decode(payload, v, &why)) throw boost::system::system_error(ec, why);
    return v;
  }
};

/// async_get_job_counts (BullMQ's getJobCounts).
struct JobCounts {
  std::int64_t waiting = 0;
  std::int64_t active = 0;
  std::int64_t delayed = 0;
  std::int64_t prioritized = 0;
  std::int64_t completed = 0;
  std::int64_t failed = 0;
  std::int64_t dead = 0;    ///< in the dead-letter set (JobOptions::dead_letter)
  std::int64_t paused = 0;  ///< jobs in the wait list of a paused queue (waiting is then 0)
  friend bool operator==(JobCounts const&, JobCounts const&) = default;
};

/// What adding one job did.
struct AddResult {
  std::string id;
  bool added = false;  ///< false: a job with this id exists; nothing was written
  /// The id of the job's first event (waiting or delayed) in the queue's events stream; empty
  /// when not added. async_wait_until_finished(id, timeout, event_id) reads from there, so it
  /// never misses a job that finished, and was removed, before the wait began.
  std::string event_id{};
  friend bool operator==(AddResult const&, AddResult const&) = default;
};

/// A job for async_add_bulk: make it with JobQueue::make_job (it encodes the data).
struct NewJob {
  std::string name;
  std::string payload;
  JobOptions options{};
  NewJob() noexcept {}
  NewJob(std::string n, std::string p, JobOptions o = {})
      : name(std::move(n)), payload(std::move(p)), options(std::move(o)) {}
};

/// A page of async_get_jobs: the jobs, and the cursor of the next page (0: no more).
struct JobPage {
  std::vector<Job> jobs;
  std::int64_t next_cursor = 0;
};

/// What happened in a queue (JobEvent::kind; BullMQ's QueueEvents names).
enum class JobEventKind : std::uint8_t {
  waiting,    ///< added, promoted, retried, handed back or stalled: ready to run (prioritized too)
  delayed,    ///< added with a delay, or waiting for a retry's backoff
  active,     ///< a worker took it
  progress,   ///< ActiveJob::update_progress
  completed,
  retrying,   ///< a run failed and the job will run again (then delayed or waiting)
  failed,     ///< out of attempts: failed, or dead (JobEvent::state says which)
  stalled,    ///< its worker's lock expired (then waiting, or failed)
  removed,    ///< async_remove
  drained,    ///< a worker took the last ready job
  cleaned,    ///< async_clean removed jobs (JobEvent::value: how many)
  paused,
  resumed,
  unknown,    ///< a name this version does not know (JobEvent::name has it)
};

inline std::string_view to_string(JobEventKind k) noexcept {
  constexpr std::array<std::string_view, 14> names = {
      "waiting", "delayed", "active", "progress", "completed", "retrying", "failed",
      "stalled", "removed", "drained", "cleaned", "paused", "resumed", "unknown"};
  return names[static_cast<std::size_t>(k)];
}

/// One entry of a queue's events stream, `{queue:<n>}:events` (QueueEvents,
/// JobQueue::async_wait_until_finished).
struct JobEvent {
  std::string stream_id;  ///< its id in the stream: "<unix ms>-<seq>", server time
  JobEventKind kind = JobEventKind::unknown;
  std::string name;    ///< as stored ("completed", ...)
  std::string job_id;  ///< empty for drained, cleaned, paused and resumed
  /// completed: the return value; failed and retrying: the error; progress: the progress;
  /// delayed: when the job is due (unix ms, server time); cleaned: how many jobs
  std::string value;
  JobState state = JobState::unknown;  ///< failed: JobState::failed or JobState::dead
};

/// How a job ended (JobQueue::async_wait_until_finished).
struct JobOutcome {
  std::string id;
  JobState state = JobState::unknown;  ///< completed, failed or dead
  std::string return_value;            ///< completed
  std::string failed_reason;           ///< failed or dead
  friend bool operator==(JobOutcome const&, JobOutcome const&) = default;
};

/// A queue's options.
struct JobQueueOptions {
  /// The hash tag of every key is `{<prefix>:<name>}` (seed 002: queue:<name>).
  std::string prefix = "queue";
  /// Every job added through this queue object is a dead letter when out of attempts
  /// (JobOptions::dead_letter), except those whose remove_on_fail is set.
  bool dead_letter = false;
};

namespace detail::jobq {

using boost::system::error_code;

// Keys, in the order every script takes them.
enum Key : std::size_t {
  kWait, kPrio, kDelayed, kActive, kDone, kFailed, kJobs, kMeta, kLocks, kMarker, kSink, kLimit,
  kMetrics, kMetricsIndex, kDead, kEvents, kKeyCount
};
inline constexpr std::array<std::string_view, kKeyCount> kKeySuffix = {
    "wait", "prioritized", "delayed", "active", "completed", "failed",
    "jobs", "meta",        "locks",   "marker", "marker-sink", "limiter",
    "metrics", "metrics-index", "dead", "events"};
inline constexpr std::string_view kFields = "ndoytwamskbfprecxhl";
/// Failed runs kept in a job's history (Job::history), and the bytes of each error kept there.
inline constexpr std::size_t kHistoryRuns = 32;
inline constexpr std::size_t kHistoryError = 500;
/// Lines kept in a job's log (ActiveJob::log), and the bytes of each.
inline constexpr std::size_t kLogLines = 100;
inline constexpr std::size_t kLogLine = 1000;
inline constexpr std::int64_t kMarkerCap = 16;
inline constexpr std::int64_t kPruneLimit = 1000;
inline constexpr double kPrioShift = 4294967296.0;
/// Per-minute metrics kept (24 hours).
inline constexpr std::int64_t kMetricMinutes = 1440;
/// The events stream's bound (XADD MAXLEN ~: Redis keeps up to about 100 more).
inline constexpr std::int64_t kEventsMaxLen = 10000;

inline std::int64_t to_int(std::string_view s, std::int64_t fallback = 0) noexcept {
  std::int64_t v = 0;
  auto const r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc{}) return fallback;
  return v;
}
inline std::int64_t to_int_opt(std::optional<std::string> const& s, std::int64_t fallback = 0) {
  return s ? to_int(std::string_view(*s), fallback) : fallback;
}

inline std::string fmt_int(std::int64_t v) { return std::to_string(v); }

inline std::string field(std::string_view id, char f) {
  std::string s;
  s.reserve(id.size() + 2);
  s.append(id).push_back(':');
  s.push_back(f);
  return s;
}

/// The `o` field: "1 attempts kind delay jitter timeout lifo".
inline std::string encode_options(JobOptions const& o) {
  char buf[160];
  int const n = std::snprintf(buf, sizeof buf, "1 %lld %d %lld %.17g %lld %d",
                              static_cast<long long>(o.attempts), static_cast<int>(o.backoff.kind),
                              static_cast<long long>(o.backoff.delay.count()), o.backoff.jitter,
                              static_cast<long long>(o.timeout.count()), o.lifo ? 1 : 0);
  return std::string(buf, static_cast<std::size_t>(n));
}
inline void decode_options(std::string_view s, JobOptions& o) {
  long long attempts = 1, delay = 0, timeout = 0;
  int kind = 0, lifo = 0, version = 0;
  double jitter = 0;
  std::string const text(s);
  if (std::sscanf(text.c_str(), "%d %lld %d %lld %lf %lld %d", &version, &attempts, &kind, &delay,
                  &jitter, &timeout, &lifo) == 7) {
    o.attempts = attempts;
    o.backoff = Backoff(static_cast<Backoff::Kind>(std::clamp(kind, 0, 3)),
                        std::chrono::milliseconds(delay), jitter);
    o.timeout = std::chrono::milliseconds(timeout);
    o.lifo = lifo != 0;
  }
}
inline KeepJobs decode_keep(std::string_view s) {
  if (s == "r") return KeepJobs(true);
  if (!s.empty() && s[0] == 'c') return KeepJobs::last(to_int(s.substr(1)));
  if (!s.empty() && s[0] == 'a') return KeepJobs::younger_than(std::chrono::milliseconds(to_int(s.substr(1))));
  return KeepJobs(false);
}

inline JobState state_of(std::string_view w) noexcept {
  if (w == "waiting") return JobState::waiting;
  if (w == "active") return JobState::active;
  if (w == "delayed") return JobState::delayed;
  if (w == "prioritized") return JobState::prioritized;
  if (w == "completed") return JobState::completed;
  if (w == "failed") return JobState::failed;
  if (w == "dead") return JobState::dead;
  return JobState::unknown;
}

/// The XADD of one event to the events stream `key` (the Lua prelude's `event`).
inline cmd::xadd event_add(std::string_view key, ArgList<FieldValue> fields) {
  return cmd::xadd{.key = key, .fields = fields, .trim = StreamTrim::max_len(kEventsMaxLen, true)};
}

inline JobEvent event_of(StreamEntry&& e) {
  static constexpr std::array<std::string_view, 5> kValueFields = {
      "returnvalue", "failedReason", "data", "delay", "count"};
  JobEvent ev;
  ev.stream_id = std::move(e.id);
  for (auto& [f, v] : e.fields) {
    if (f == "event")
      ev.name = std::move(v);
    else if (f == "jobId")
      ev.job_id = std::move(v);
    else if (f == "state")
      ev.state = state_of(v);
    else if (std::find(kValueFields.begin(), kValueFields.end(), f) != kValueFields.end())
      ev.value = std::move(v);
  }
  for (std::size_t i = 0; i < static_cast<std::size_t>(JobEventKind::unknown); ++i)
    if (to_string(static_cast<JobEventKind>(i)) == ev.name) ev.kind = static_cast<JobEventKind>(i);
  if (ev.kind == JobEventKind::failed && ev.state == JobState::unknown) ev.state = JobState::failed;
  return ev;
}

/// The events of an XREAD reply (one stream).
inline std::vector<JobEvent> events_of(cmd::xread::reply_type&& r) {
  std::vector<JobEvent> out;
  if (!r) return out;
  for (auto& [key, entries] : *r) {
    out.reserve(out.size() + entries.size());
    for (auto& e : entries)
      if (!e.deleted) out.push_back(event_of(std::move(e)));
  }
  return out;
}

// ---- the scripts' shared part ----------------------------------------------------------------
//
// Lua: a prelude every script starts with. C++: Twin<Ctx>, the same functions over the script
// context. Every script takes the kKeyCount keys in the order of `Key`.

inline constexpr char const* kPrelude = R"lua(
if #KEYS ~= 16 then return redis.error_reply('ERR job queue: wrong number of keys') end
local WAIT, PRIO, DELAYED, ACTIVE, DONE, FAILED = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local JOBS, META, LOCKS, MARKER, SINK, LIMIT = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local METRICS, MINDEX, DEAD, EVENTS = KEYS[13], KEYS[14], KEYS[15], KEYS[16]
local fmt = string.format
local function F(id, x) return id .. ':' .. x end
local function event(...)
  return redis.call('XADD', EVENTS, 'MAXLEN', '~', 10000, '*', 'event', ...)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function wake()
  redis.call('LPUSH', MARKER, '1')
  redis.call('LTRIM', MARKER, 0, 15)
end
local function ready(id, front)
  local p = tonumber(redis.call('HGET', JOBS, F(id, 'y'))) or 0
  if p > 0 then
    local c = redis.call('HINCRBY', META, 'pc', 1) % 4294967296
    redis.call('ZADD', PRIO, fmt('%d', p * 4294967296 + c), id)
    redis.call('HSET', JOBS, F(id, 'w'), 'prioritized')
  else
    if front then redis.call('RPUSH', WAIT, id) else redis.call('LPUSH', WAIT, id) end
    redis.call('HSET', JOBS, F(id, 'w'), 'waiting')
  end
  return event('waiting', 'jobId', id)
end
local function park(id, due)
  redis.call('ZADD', DELAYED, fmt('%d', due), id)
  redis.call('HSET', JOBS, F(id, 'w'), 'delayed')
  return event('delayed', 'jobId', id, 'delay', fmt('%d', due))
end
local function revive(id)
  redis.call('HSET', JOBS, F(id, 'm'), '0', F(id, 's'), '0')
  redis.call('HDEL', JOBS, F(id, 'f'), F(id, 'e'))
  ready(id, false)
end
local FIELDS = {'n', 'd', 'o', 'y', 't', 'w', 'a', 'm', 's', 'k', 'b', 'f', 'p', 'r', 'e', 'c', 'x',
  'h', 'l'}
local function one_line(s, max) return (string.gsub(string.sub(s, 1, max), '[\t\r\n]', ' ')) end
local function append_line(id, f, line, max)
  local h = (redis.call('HGET', JOBS, F(id, f)) or '') .. line .. '\n'
  local _, n = string.gsub(h, '\n', '')
  while n > max do
    h = string.sub(h, string.find(h, '\n', 1, true) + 1)
    n = n - 1
  end
  redis.call('HSET', JOBS, F(id, f), h)
end
local function history(id, now, err)
  local run = tonumber(redis.call('HGET', JOBS, F(id, 'a'))) or 0
  append_line(id, 'h', fmt('%d\t%d\t%s', run, now, one_line(err, 500)), 32)
end
local function erase(id)
  local fl = {}
  for i = 1, #FIELDS do fl[i] = F(id, FIELDS[i]) end
  redis.call('HDEL', JOBS, unpack(fl))
end
local function keep(set, id, spec, now)
  if spec == 'r' then erase(id) return end
  redis.call('ZADD', set, fmt('%d', now), id)
  local kind, n = string.sub(spec, 1, 1), tonumber(string.sub(spec, 2)) or 0
  local old = {}
  if kind == 'c' then
    local extra = redis.call('ZCARD', set) - n
    if extra > 1000 then extra = 1000 end
    if extra > 0 then old = redis.call('ZRANGE', set, 0, extra - 1) end
  elseif kind == 'a' then
    old = redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. fmt('%d', now - n), 'LIMIT', 0, 1000)
  end
  for i = 1, #old do
    redis.call('ZREM', set, old[i])
    erase(old[i])
  end
end
local function metric(kind, now)
  local m = math.floor(now / 60000)
  local f = kind .. fmt('%d', m)
  if redis.call('HINCRBY', METRICS, f, 1) > 1 then return end  -- indexed and pruned already
  redis.call('ZADD', MINDEX, fmt('%d', m), f)
  local old = redis.call('ZRANGEBYSCORE', MINDEX, '-inf', '(' .. fmt('%d', m - 1440 + 1), 'LIMIT', 0, 10)
  for i = 1, #old do
    redis.call('HDEL', METRICS, old[i])
    redis.call('ZREM', MINDEX, old[i])
  end
end
local function give_up(id, now, err)
  local spec = redis.call('HGET', JOBS, F(id, 'x')) or 'k'
  local state = 'failed'
  if spec == 'd' then state = 'dead' end
  redis.call('HSET', JOBS, F(id, 'f'), fmt('%d', now), F(id, 'w'), state)
  event('failed', 'jobId', id, 'failedReason', err, 'state', state)
  if spec == 'd' then
    redis.call('ZADD', DEAD, fmt('%d', now), id)
  else
    keep(FAILED, id, spec, now)
  end
  metric('f', now)
  return state
end
)lua";

// The Lua prelude's one_line: the first `max` bytes of `s`, tabs and line breaks as spaces.
inline std::string one_line(std::string_view s, std::size_t max) {
  std::string out(s.substr(0, max));
  for (char& c : out)
    if (c == '\t' || c == '\r' || c == '\n') c = ' ';
  return out;
}

template <class Ctx>
struct Twin {
  Ctx& ctx;
  std::span<std::string_view const> k;
  std::int64_t now = 0;

  explicit Twin(Ctx& c) : ctx(c), k(c.keys()), now(c.unix_ms()) {
    if (k.size() != kKeyCount) ctx.fail("ERR job queue: wrong number of keys");
  }
  std::string_view key(Key i) const { return k[i]; }
  std::optional<std::string> get(std::string_view id, char f) {
    std::string const fl = field(id, f);
    return ctx.call(cmd::hget{k[kJobs], fl});
  }
  void put(std::string_view id, char f, std::string_view v) {
    std::string const fl = field(id, f);
    ctx.call(cmd::hset{k[kJobs], FieldValue{fl, v}});
  }
  std::int64_t incr(std::string_view id, char f, std::int64_t by) {
    std::string const fl = field(id, f);
    return ctx.call(cmd::hincrby{k[kJobs], fl, by});
  }
  void del(std::string_view id, char f) {
    std::string const fl = field(id, f);
    ctx.call(cmd::hdel{k[kJobs], fl});
  }
  // The Lua prelude's event: one entry in the bounded events stream; its id.
  std::string event(std::string_view name, std::initializer_list<FieldValue> more = {}) {
    std::vector<FieldValue> fv;
    fv.reserve(1 + more.size());
    fv.push_back(FieldValue{"event", name});
    fv.insert(fv.end(), more.begin(), more.end());
    return ctx.call(event_add(k[kEvents], fv)).value_or("");
  }
  void wake() {
    ctx.call(cmd::lpush{k[kMarker], "1"});
    ctx.call(cmd::ltrim{k[kMarker], 0, kMarkerCap - 1});
  }
  std::string ready(std::string_view id, bool front) {
    std::int64_t const p = to_int_opt(get(id, 'y'));
    if (p > 0) {
      std::int64_t const c = ctx.call(cmd::hincrby{k[kMeta], "pc", 1}) % 4294967296LL;
      ctx.call(cmd::zadd{.key = k[kPrio],
                         .members = ScoreMember{static_cast<double>(p) * kPrioShift +
                                                    static_cast<double>(c),
                                                id}});
      put(id, 'w', "prioritized");
    } else {
      if (front)
        ctx.call(cmd::rpush{k[kWait], id});
      else
        ctx.call(cmd::lpush{k[kWait], id});
      put(id, 'w', "waiting");
    }
    return event("waiting", {{"jobId", id}});
  }
  void erase(std::string_view id) {
    std::vector<std::string> fl;
    fl.reserve(kFields.size());
    for (char f : kFields) fl.push_back(field(id, f));
    ctx.call(cmd::hdel{k[kJobs], fl});
  }
  void keep(std::string_view set, std::string_view id, std::string_view spec) {
    if (spec == "r") return erase(id);
    ctx.call(cmd::zadd{.key = set, .members = ScoreMember{static_cast<double>(now), id}});
    char const kind = spec.empty() ? 'k' : spec[0];
    std::int64_t const n = spec.size() > 1 ? to_int(spec.substr(1)) : 0;
    std::vector<std::string> old;
    if (kind == 'c') {
      std::int64_t extra = ctx.call(cmd::zcard{set}) - n;
      if (extra > kPruneLimit) extra = kPruneLimit;
      if (extra > 0) old = ctx.call(cmd::zrange{.key = set, .start = 0, .stop = extra - 1});
    } else if (kind == 'a') {
      old = ctx.call(cmd::zrange_by_score{.key = set,
                                          .min = ScoreBound::neg_inf(),
                                          .max = ScoreBound::excl(static_cast<double>(now - n)),
                                          .limit = RangeLimit{0, kPruneLimit}});
    }
    for (auto const& o : old) {
      ctx.call(cmd::zrem{set, o});
      erase(o);
    }
  }
  std::string keep_spec(std::string_view id, char f) { return get(id, f).value_or("k"); }
  // Delayed until `due` (unix ms): the prelude's park. The id of its event.
  std::string park(std::string_view id, std::int64_t due) {
    ctx.call(cmd::zadd{.key = k[kDelayed], .members = ScoreMember{static_cast<double>(due), id}});
    put(id, 'w', "delayed");
    std::string const at = fmt_int(due);
    return event("delayed", {{"jobId", id}, {"delay", at}});
  }
  // A failed or dead job back to ready, its attempts and stalls reset (the prelude's revive).
  void revive(std::string_view id) {
    std::string const fm = field(id, 'm'), fs = field(id, 's'), ff = field(id, 'f'),
                      fe = field(id, 'e');
    ctx.call(cmd::hset{k[kJobs], {FieldValue{fm, "0"}, FieldValue{fs, "0"}}});
    ctx.call(cmd::hdel{k[kJobs], {ff, fe}});
    ready(id, false);
  }
  // Out of attempts: failed (kept as remove_on_fail says) or dead (a dead letter). The state.
  std::string_view give_up(std::string_view id, std::string_view error) {
    std::string const spec = keep_spec(id, 'x');
    std::string_view const state = spec == "d" ? "dead" : "failed";
    std::string const ff = field(id, 'f'), fw = field(id, 'w'), at = fmt_int(now);
    ctx.call(cmd::hset{k[kJobs], {FieldValue{ff, at}, FieldValue{fw, state}}});
    event("failed", {{"jobId", id}, {"failedReason", error}, {"state", state}});
    if (spec == "d")
      ctx.call(cmd::zadd{.key = k[kDead], .members = ScoreMember{static_cast<double>(now), id}});
    else
      keep(k[kFailed], id, spec);
    metric('f');
    return state;
  }
  // The Lua prelude's append_line and history: a failed run in the job's history.
  void append_line(std::string_view id, char f, std::string_view line, std::size_t max) {
    std::string h = get(id, f).value_or("");
    h.append(line).append(1, '\n');
    auto n = static_cast<std::size_t>(std::count(h.begin(), h.end(), '\n'));
    for (; n > max; --n) h.erase(0, h.find('\n') + 1);
    put(id, f, h);
  }
  void history(std::string_view id, std::string_view error) {
    append_line(id, 'h',
                fmt_int(to_int_opt(get(id, 'a'))) + '\t' + fmt_int(now) + '\t' +
                    one_line(error, kHistoryError),
                kHistoryRuns);
  }
  void metric(char kind) {
    std::int64_t const m = now / 60000;  // unix ms: not negative
    std::string const f = std::string(1, kind) + fmt_int(m);
    if (ctx.call(cmd::hincrby{k[kMetrics], f, 1}) > 1) return;  // indexed and pruned already
    ctx.call(cmd::zadd{.key = k[kMetricsIndex], .members = ScoreMember{static_cast<double>(m), f}});
    auto const old = ctx.call(cmd::zrange_by_score{
        .key = k[kMetricsIndex],
        .min = ScoreBound::neg_inf(),
        .max = ScoreBound::excl(static_cast<double>(m - kMetricMinutes + 1)),
        .limit = RangeLimit{0, 10}});
    for (auto const& o : old) {
      ctx.call(cmd::hdel{k[kMetrics], o});
      ctx.call(cmd::zrem{k[kMetricsIndex], o});
    }
  }
};

// ---- add -------------------------------------------------------------------------------------
// ARGV: per job (kAddArgs each, one or more jobs): id ('' = next from the counter), name, data,
// options, priority, delay ms, lifo ('1'), keep-on-complete, keep-on-fail. Reply: per job, {id,
// '1' added | '0' exists, the id of its event (waiting or delayed; '' when it exists)}. One
// TIME and at most one marker per call: async_add_bulk sends up to kAddChunk jobs per call.

inline constexpr std::size_t kAddArgs = 9;
inline constexpr std::size_t kAddChunk = 100;

inline std::vector<std::string> add_twin(ScriptContext auto& ctx) {
  Twin t(ctx);
  auto const all = ctx.args();
  if (all.empty() || all.size() % kAddArgs != 0)
    ctx.fail("ERR job queue: wrong number of arguments");
  std::vector<std::string> out;
  bool woke = false;
  std::string const now = fmt_int(t.now);
  for (std::size_t b = 0; b + kAddArgs <= all.size(); b += kAddArgs) {
    auto const a = all.subspan(b, kAddArgs);
    std::string id(a[0]);
    if (id.empty()) {
      do {
        id = fmt_int(ctx.call(cmd::hincrby{t.key(kMeta), "id", 1}));
      } while (ctx.call(cmd::hexists{t.key(kJobs), field(id, 'n')}));
    } else if (ctx.call(cmd::hexists{t.key(kJobs), field(id, 'n')})) {
      out.insert(out.end(), {id, "0", ""});
      continue;
    }
    std::string const fn = field(id, 'n'), fd = field(id, 'd'), fo = field(id, 'o'),
                      ft = field(id, 't'), fa = field(id, 'a'), fm = field(id, 'm'),
                      fs = field(id, 's'), fc = field(id, 'c'), fx = field(id, 'x');
    std::vector<FieldValue> const fv = {{fn, a[1]}, {fd, a[2]}, {fo, a[3]}, {ft, now}, {fa, "0"},
                                        {fm, "0"},  {fs, "0"},  {fc, a[7]}, {fx, a[8]}};
    ctx.call(cmd::hset{t.key(kJobs), fv});
    if (a[4] != "0") t.put(id, 'y', a[4]);
    std::int64_t const delay = to_int(a[5]);
    std::string ev;
    if (delay > 0) {
      ev = t.park(id, t.now + delay);
    } else {
      ev = t.ready(id, a[6] == "1");
      woke = true;
    }
    out.insert(out.end(), {std::move(id), "1", std::move(ev)});
  }
  if (woke) t.wake();
  return out;
}

inline auto const add_script = make_script<std::vector<std::string>>(
    std::string(kPrelude) + R"lua(
if #ARGV == 0 or #ARGV % 9 ~= 0 then
  return redis.error_reply('ERR job queue: wrong number of arguments')
end
local now = now_ms()
local at = fmt('%d', now)
local out = {}
local woke = false
for b = 0, #ARGV - 9, 9 do
  local id = ARGV[b + 1]
  local exists = false
  if id == '' then
    repeat id = fmt('%d', redis.call('HINCRBY', META, 'id', 1)) until redis.call('HEXISTS', JOBS, F(id, 'n')) == 0
  else
    exists = redis.call('HEXISTS', JOBS, F(id, 'n')) == 1
  end
  if exists then
    out[#out + 1] = id
    out[#out + 1] = '0'
    out[#out + 1] = ''
  else
    redis.call('HSET', JOBS, F(id, 'n'), ARGV[b + 2], F(id, 'd'), ARGV[b + 3], F(id, 'o'), ARGV[b + 4],
      F(id, 't'), at, F(id, 'a'), '0', F(id, 'm'), '0', F(id, 's'), '0',
      F(id, 'c'), ARGV[b + 8], F(id, 'x'), ARGV[b + 9])
    if ARGV[b + 5] ~= '0' then redis.call('HSET', JOBS, F(id, 'y'), ARGV[b + 5]) end
    local delay = tonumber(ARGV[b + 6]) or 0
    local ev
    if delay > 0 then
      ev = park(id, now + delay)
    else
      ev = ready(id, ARGV[b + 7] == '1')
      woke = true
    end
    out[#out + 1] = id
    out[#out + 1] = '1'
    out[#out + 1] = ev
  end
end
if woke then wake() end
return out)lua",
    [](ScriptContext auto& c) { return add_twin(c); });

// ---- fetch -----------------------------------------------------------------------------------
// Promotes due delayed jobs, then moves up to `count` ready jobs to active under a lock.
// ARGV: token base, lock ttl ms, count, rate-limit max (0: none), rate-limit window ms.
// Reply: status ('ok' | 'empty' | 'paused' | 'limited'), a wait hint in ms (empty: until the
// next delayed job, -1: none; limited: until the window ends), then per job: id, name, data,
// options, runs started, attempts made, stalls, progress, created, token.

inline constexpr std::size_t kFetchHead = 2;
inline constexpr std::size_t kFetchPerJob = 10;

inline constexpr char const* kFetchLua = R"lua(
local function fetch(now, A)
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', fmt('%d', now), 'LIMIT', 0, 1000)
for i = 1, #due do
  redis.call('ZREM', DELAYED, due[i])
  ready(due[i], false)
end
redis.call('DEL', SINK, MARKER)
if redis.call('HEXISTS', META, 'paused') == 1 then return {'paused', '-1'} end
local count = tonumber(A[3]) or 1
local max = tonumber(A[4]) or 0
if max > 0 then
  local used = tonumber(redis.call('GET', LIMIT)) or 0
  if used >= max then
    local ttl = redis.call('PTTL', LIMIT)
    if ttl < 0 then
      redis.call('PEXPIRE', LIMIT, A[5])
      ttl = tonumber(A[5])
    end
    return {'limited', fmt('%d', ttl)}
  end
  if count > max - used then count = max - used end
end
local ttl = tonumber(A[2])
local out = {'ok', '0'}
local n = 0
while n < count do
  local id = redis.call('RPOP', WAIT)
  if not id then
    local z = redis.call('ZPOPMIN', PRIO)
    if #z == 0 then break end
    id = z[1]
  end
  local h = redis.call('HMGET', JOBS, F(id, 'n'), F(id, 'd'), F(id, 'o'), F(id, 'm'), F(id, 's'),
    F(id, 'p'), F(id, 't'))
  if h[1] then
    local started = redis.call('HINCRBY', JOBS, F(id, 'a'), 1)
    local tok = A[1] .. ':' .. fmt('%d', redis.call('HINCRBY', META, 'lk', 1))
    redis.call('HSET', JOBS, F(id, 'k'), tok, F(id, 'w'), 'active', F(id, 'b'), fmt('%d', now))
    redis.call('ZADD', ACTIVE, fmt('%d', now), id)
    redis.call('ZADD', LOCKS, fmt('%d', now + ttl), id)
    event('active', 'jobId', id)
    out[#out + 1] = id
    out[#out + 1] = h[1]
    out[#out + 1] = h[2] or ''
    out[#out + 1] = h[3] or ''
    out[#out + 1] = fmt('%d', started)
    out[#out + 1] = h[4] or '0'
    out[#out + 1] = h[5] or '0'
    out[#out + 1] = h[6] or ''
    out[#out + 1] = h[7] or '0'
    out[#out + 1] = tok
    n = n + 1
  end
end
if n == 0 then
  out[1] = 'empty'
  local first = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
  if #first > 0 then
    local d = tonumber(first[2]) - now
    if d < 1 then d = 1 end
    out[2] = fmt('%d', d)
  else
    out[2] = '-1'
  end
else
  if max > 0 then
    redis.call('INCRBY', LIMIT, n)
    if redis.call('PTTL', LIMIT) < 0 then redis.call('PEXPIRE', LIMIT, A[5]) end
  end
  if redis.call('LLEN', WAIT) > 0 or redis.call('ZCARD', PRIO) > 0 then wake() else event('drained') end
end
return out
end
)lua";

// a: token base, lock ttl, count, rate-limit max, window (the fetch arguments).
template <class Ctx>
std::vector<std::string> fetch_jobs(Twin<Ctx>& t, std::span<std::string_view const> a) {
  Ctx& ctx = t.ctx;
  auto const due = ctx.call(cmd::zrange_by_score{.key = t.key(kDelayed),
                                                 .min = ScoreBound::neg_inf(),
                                                 .max = ScoreBound::incl(static_cast<double>(t.now)),
                                                 .limit = RangeLimit{0, kPruneLimit}});
  for (auto const& id : due) {
    ctx.call(cmd::zrem{t.key(kDelayed), id});
    t.ready(id, false);
  }
  ctx.call(cmd::del{{t.key(kSink), t.key(kMarker)}});
  if (ctx.call(cmd::hexists{t.key(kMeta), "paused"})) return {"paused", "-1"};
  std::int64_t count = to_int(a[2], 1);
  std::int64_t const max = to_int(a[3]);
  if (max > 0) {
    std::int64_t const used = to_int_opt(ctx.call(cmd::get{t.key(kLimit)}));
    if (used >= max) {
      std::int64_t ttl = ctx.call(cmd::pttl{t.key(kLimit)});
      if (ttl < 0) {
        ctx.call(cmd::pexpire{t.key(kLimit), std::chrono::milliseconds(to_int(a[4]))});
        ttl = to_int(a[4]);
      }
      return {"limited", fmt_int(ttl)};
    }
    if (count > max - used) count = max - used;
  }
  std::int64_t const ttl = to_int(a[1]);
  std::vector<std::string> out = {"ok", "0"};
  std::int64_t n = 0;
  while (n < count) {
    std::optional<std::string> id = ctx.call(cmd::rpop{t.key(kWait)});
    if (!id) {
      auto z = ctx.call(cmd::zpopmin{t.key(kPrio)});
      if (z.empty()) break;
      id = std::move(z[0].first);
    }
    std::string const fn = field(*id, 'n'), fd = field(*id, 'd'), fo = field(*id, 'o'),
                      fm = field(*id, 'm'), fs = field(*id, 's'), fp = field(*id, 'p'),
                      ft = field(*id, 't');
    auto h = ctx.call(cmd::hmget{t.key(kJobs), {fn, fd, fo, fm, fs, fp, ft}});
    if (!h[0]) continue;
    std::int64_t const started = t.incr(*id, 'a', 1);
    std::string const tok =
        std::string(a[0]) + ":" + fmt_int(ctx.call(cmd::hincrby{t.key(kMeta), "lk", 1}));
    std::string const fk = field(*id, 'k'), fw = field(*id, 'w'), fb = field(*id, 'b');
    std::string const now = fmt_int(t.now);
    ctx.call(cmd::hset{t.key(kJobs), {FieldValue{fk, tok}, FieldValue{fw, "active"},
                                      FieldValue{fb, now}}});
    ctx.call(cmd::zadd{.key = t.key(kActive), .members = ScoreMember{static_cast<double>(t.now), *id}});
    ctx.call(cmd::zadd{.key = t.key(kLocks),
                       .members = ScoreMember{static_cast<double>(t.now + ttl), *id}});
    t.event("active", {{"jobId", *id}});
    out.push_back(*id);
    out.push_back(std::move(*h[0]));
    out.push_back(h[1].value_or(""));
    out.push_back(h[2].value_or(""));
    out.push_back(fmt_int(started));
    out.push_back(h[3].value_or("0"));
    out.push_back(h[4].value_or("0"));
    out.push_back(h[5].value_or(""));
    out.push_back(h[6].value_or("0"));
    out.push_back(tok);
    ++n;
  }
  if (n == 0) {
    out[0] = "empty";
    auto const first = ctx.call(cmd::zrange_withscores{.key = t.key(kDelayed), .start = 0, .stop = 0});
    if (!first.empty()) {
      std::int64_t d = static_cast<std::int64_t>(first[0].second) - t.now;
      if (d < 1) d = 1;
      out[1] = fmt_int(d);
    } else {
      out[1] = "-1";
    }
  } else {
    if (max > 0) {
      ctx.call(cmd::incrby{t.key(kLimit), n});
      if (ctx.call(cmd::pttl{t.key(kLimit)}) < 0)
        ctx.call(cmd::pexpire{t.key(kLimit), std::chrono::milliseconds(to_int(a[4]))});
    }
    if (ctx.call(cmd::llen{t.key(kWait)}) > 0 || ctx.call(cmd::zcard{t.key(kPrio)}) > 0)
      t.wake();
    else
      t.event("drained");
  }
  return out;
}

inline std::vector<std::string> fetch_twin(ScriptContext auto& ctx) {
  Twin t(ctx);
  auto const a = ctx.args();
  if (a.size() != 5) ctx.fail("ERR job queue: wrong number of arguments");
  return fetch_jobs(t, a);
}

inline auto const fetch_script = make_script<std::vector<std::string>>(
    std::string(kPrelude) + kFetchLua + R"lua(
if #ARGV ~= 5 then return redis.error_reply('ERR job queue: wrong number of arguments') end
return fetch(now_ms(), ARGV))lua",
    [](ScriptContext auto& c) { return fetch_twin(c); });

// ---- finish ----------------------------------------------------------------------------------
// ARGV: id, token, mode ('c' completed, 'f' failed, 'b' handed back), value (return value or
// error), retry delay ms for 'f' (-1: no retry), then the fetch arguments (token base, lock ttl,
// count, rate-limit max, window; count 0: fetch nothing). Reply: the result ('0' the lock is
// not this token's or has expired: nothing written; '1' done; '2' retried: delayed or waiting
// again), then, when count > 0, the fetch script's reply for the next job(s): one round trip
// per job for a busy worker (BullMQ's moveToFinished does the same).

template <class Ctx>
std::int64_t finish_job(Twin<Ctx>& t, std::span<std::string_view const> a) {
  Ctx& ctx = t.ctx;
  std::string_view const id = a[0], mode = a[2];
  auto const exp = ctx.call(cmd::zscore{t.key(kLocks), id});
  auto const tok = t.get(id, 'k');
  if (!tok || *tok != a[1] || !exp || static_cast<std::int64_t>(*exp) < t.now) return 0;
  ctx.call(cmd::zrem{t.key(kActive), id});
  ctx.call(cmd::zrem{t.key(kLocks), id});
  t.del(id, 'k');
  std::string const now = fmt_int(t.now);
  if (mode == "b") {
    t.incr(id, 'a', -1);
    t.ready(id, true);
    t.wake();
    return 1;
  }
  if (mode == "c") {
    std::string const fr = field(id, 'r'), ff = field(id, 'f'), fw = field(id, 'w');
    ctx.call(cmd::hset{t.key(kJobs), {FieldValue{fr, a[3]}, FieldValue{ff, now},
                                      FieldValue{fw, "completed"}}});
    t.event("completed", {{"jobId", id}, {"returnvalue", a[3]}});
    t.keep(t.key(kDone), id, t.keep_spec(id, 'c'));
    t.metric('c');
    return 1;
  }
  t.incr(id, 'm', 1);
  t.put(id, 'e', a[3]);
  t.history(id, a[3]);
  std::int64_t const d = to_int(a[4], -1);
  if (d >= 0) t.event("retrying", {{"jobId", id}, {"failedReason", a[3]}});
  if (d > 0) {
    t.park(id, t.now + d);
    return 2;
  }
  if (d == 0) {
    t.ready(id, false);
    t.wake();
    return 2;
  }
  t.give_up(id, a[3]);
  return 1;
}

inline std::vector<std::string> finish_twin(ScriptContext auto& ctx) {
  Twin t(ctx);
  auto const a = ctx.args();
  if (a.size() != 10) ctx.fail("ERR job queue: wrong number of arguments");
  std::vector<std::string> out = {fmt_int(finish_job(t, a))};
  if (to_int(a[7]) > 0) {
    auto more = fetch_jobs(t, a.subspan(5));
    for (auto& m : more) out.push_back(std::move(m));
  }
  return out;
}

inline auto const finish_script = make_script<std::vector<std::string>>(
    std::string(kPrelude) + kFetchLua + R"lua(
if #ARGV ~= 10 then return redis.error_reply('ERR job queue: wrong number of arguments') end
local now = now_ms()
local function finish()
local id, mode = ARGV[1], ARGV[3]
local exp = tonumber(redis.call('ZSCORE', LOCKS, id))
if redis.call('HGET', JOBS, F(id, 'k')) ~= ARGV[2] or not exp or exp < now then return 0 end
redis.call('ZREM', ACTIVE, id)
redis.call('ZREM', LOCKS, id)
redis.call('HDEL', JOBS, F(id, 'k'))
if mode == 'b' then
  redis.call('HINCRBY', JOBS, F(id, 'a'), -1)
  ready(id, true)
  wake()
  return 1
end
if mode == 'c' then
  redis.call('HSET', JOBS, F(id, 'r'), ARGV[4], F(id, 'f'), fmt('%d', now), F(id, 'w'), 'completed')
  event('completed', 'jobId', id, 'returnvalue', ARGV[4])
  keep(DONE, id, redis.call('HGET', JOBS, F(id, 'c')) or 'k', now)
  metric('c', now)
  return 1
end
redis.call('HINCRBY', JOBS, F(id, 'm'), 1)
redis.call('HSET', JOBS, F(id, 'e'), ARGV[4])
history(id, now, ARGV[4])
local d = tonumber(ARGV[5]) or -1
if d >= 0 then event('retrying', 'jobId', id, 'failedReason', ARGV[4]) end
if d > 0 then
  park(id, now + d)
  return 2
elseif d == 0 then
  ready(id, false)
  wake()
  return 2
end
give_up(id, now, ARGV[4])
return 1
end
local out = {fmt('%d', finish())}
if (tonumber(ARGV[8]) or 0) > 0 then
  local more = fetch(now, {ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]})
  for i = 1, #more do out[#out + 1] = more[i] end
end
return out)lua",
    [](ScriptContext auto& c) { return finish_twin(c); });

// ---- renew -----------------------------------------------------------------------------------
// ARGV: ttl ms, then id / token pairs. Reply: per pair 1 renewed, 0 lost (another token, or
// expired: the stalled checker may already have moved it).

inline std::vector<std::int64_t> renew_twin(ScriptContext auto& ctx) {
  Twin t(ctx);
  auto const a = ctx.args();
  if (a.empty() || a.size() % 2 != 1) ctx.fail("ERR job queue: wrong number of arguments");
  std::int64_t const ttl = to_int(a[0]);
  std::vector<std::int64_t> out;
  for (std::size_t i = 1; i + 1 < a.size(); i += 2) {
    auto const exp = ctx.call(cmd::zscore{t.key(kLocks), a[i]});
    auto const tok = t.get(a[i], 'k');
    if (tok && *tok == a[i + 1] && exp && static_cast<std::int64_t>(*exp) >= t.now) {
      ctx.call(cmd::zadd{.key = t.key(kLocks),
                         .members = ScoreMember{static_cast<double>(t.now + ttl), a[i]}});
      out.push_back(1);
    } else {
      out.push_back(0);
    }
  }
  return out;
}

inline auto const renew_script = make_script<std::vector<std::int64_t>>(
    std::string(kPrelude) + R"lua(
if #ARGV % 2 ~= 1 then return redis.error_reply('ERR job queue: wrong number of arguments') end
local now = now_ms()
local ttl = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local exp = tonumber(redis.call('ZSCORE', LOCKS, id))
  if redis.call('HGET', JOBS, F(id, 'k')) == ARGV[i + 1] and exp and exp >= now then
    redis.call('ZADD', LOCKS, fmt('%d', now + ttl), id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out)lua",
    [](ScriptContext auto& c) { return renew_twin(c); });

// ---- stalled ---------------------------------------------------------------------------------
// Active jobs whose lock expired go back to waiting (first in line), or to failed once they
// stalled more than max_stalled_count times. ARGV: max_stalled_count, limit. Reply: id / new
// state ('waiting' | 'failed' | 'prioritized') pairs.

inline constexpr std::string_view kStalledReason = "job stalled more than max_stalled_count";
inline constexpr std::string_view kStalledRun = "stalled: the worker's lock expired";

inline std::vector<std::string> stalled_twin(ScriptContext auto& ctx) {
  Twin t(ctx);
  auto const a = ctx.args();
  if (a.size() != 2) ctx.fail("ERR job queue: wrong number of arguments");
  std::int64_t const max = to_int(a[0], 1);
  auto const ids = ctx.call(cmd::zrange_by_score{.key = t.key(kLocks),
                                                 .min = ScoreBound::neg_inf(),
                                                 .max = ScoreBound::excl(static_cast<double>(t.now)),
                                                 .limit = RangeLimit{0, to_int(a[1], 1000)}});
  std::vector<std::string> out;
  std::string const now = fmt_int(t.now);
  for (auto const& id : ids) {
    ctx.call(cmd::zrem{t.key(kLocks), id});
    if (ctx.call(cmd::zrem{t.key(kActive), id}) != 1) continue;
    t.del(id, 'k');
    std::int64_t const s = t.incr(id, 's', 1);
    t.history(id, kStalledRun);
    t.event("stalled", {{"jobId", id}});
    out.push_back(id);
    if (s > max) {
      t.incr(id, 'm', 1);
      t.put(id, 'e', kStalledReason);
      out.emplace_back(t.give_up(id, kStalledReason));
    } else {
      t.ready(id, true);
      out.push_back("waiting");
    }
  }
  if (!out.empty()) t.wake();
  return out;
}

inline auto const stalled_script = make_script<std::vector<std::string>>(
    std::string(kPrelude) + R"lua(
if #ARGV ~= 2 then return redis.error_reply('ERR job queue: wrong number of arguments') end
local now = now_ms()
local max = tonumber(ARGV[1]) or 1
local ids = redis.call('ZRANGEBYSCORE', LOCKS, '-inf', '(' .. fmt('%d', now), 'LIMIT', 0,
  tonumber(ARGV[2]) or 1000)
local out = {}
for i = 1, #ids do
  local id = ids[i]
  redis.call('ZREM', LOCKS, id)
  if redis.call('ZREM', ACTIVE, id) == 1 then
    redis.call('HDEL', JOBS, F(id, 'k'))
    local s = redis.call('HINCRBY', JOBS, F(id, 's'), 1)
    history(id, now, "stalled: the worker's lock expired")
    event('stalled', 'jobId', id)
    out[#out + 1] = id
    if s > max then
      local reason = 'job stalled more than max_stalled_count'
      redis.call('HINCRBY', JOBS, F(id, 'm'), 1)
      redis.call('HSET', JOBS, F(id, 'e'), reason)
      out[#out + 1] = give_up(id, now, reason)
    else
      ready(id, true)
      out[#out + 1] = 'waiting'
    end
  end
end
if #out > 0 then wake() end
return out)lua",
    [](ScriptContext auto& c) { return stalled_twin(c); });

// ---- admin -----------------------------------------------------------------------------------
// ARGV[1] the operation:
//   promote <id>                   delayed -> ready; 1, or 0 when not delayed
//   retry <count>                  up to count failed jobs -> ready (attempts reset); how many
//   retry_dead <id>                a dead letter -> ready (attempts reset); 1, or 0 not dead
//   remove <id>                    1 removed, 0 no such job, -1 active under a live lock
//   clean <completed|failed|dead> <grace ms> <limit>   finished before now - grace; how many
//   drain <with delayed: 1|0>      removes every ready (and delayed) job; how many
//   obliterate <force: 1|0>        deletes every key of the queue; -1 (nothing done) when jobs
//                                  are active and not forced
//   progress <id> <token> <value>  sets the progress of an active job; 1, or 0 lock lost
//   log <id> <token> <line>        adds a line to an active job's log; 1, or 0 lock lost

inline std::int64_t admin_twin(ScriptContext auto& ctx) {
  Twin t(ctx);
  auto const a = ctx.args();
  if (a.empty()) ctx.fail("ERR job queue: wrong number of arguments");
  std::string_view const op = a[0];
  auto need = [&](std::size_t n) {
    if (a.size() != n) ctx.fail("ERR job queue: wrong number of arguments");
  };
  if (op == "promote") {
    need(2);
    if (ctx.call(cmd::zrem{t.key(kDelayed), a[1]}) == 0) return 0;
    t.ready(a[1], false);
    t.wake();
    return 1;
  }
  if (op == "retry") {
    need(2);
    auto const ids = ctx.call(cmd::zrange{.key = t.key(kFailed), .start = 0, .stop = to_int(a[1], 1000) - 1});
    for (auto const& id : ids) {
      ctx.call(cmd::zrem{t.key(kFailed), id});
      t.revive(id);
    }
    if (!ids.empty()) t.wake();
    return static_cast<std::int64_t>(ids.size());
  }
  if (op == "retry_dead") {
    need(2);
    std::string_view const id = a[1];
    if (ctx.call(cmd::zrem{t.key(kDead), id}) == 0) return 0;
    t.revive(id);
    t.wake();
    return 1;
  }
  if (op == "remove") {
    need(2);
    std::string_view const id = a[1];
    if (!ctx.call(cmd::hexists{t.key(kJobs), field(id, 'n')})) return 0;
    auto const exp = ctx.call(cmd::zscore{t.key(kLocks), id});
    if (exp && static_cast<std::int64_t>(*exp) >= t.now) return -1;
    ctx.call(cmd::lrem{t.key(kWait), 0, id});
    for (Key k : {kPrio, kDelayed, kActive, kDone, kFailed, kDead, kLocks})
      ctx.call(cmd::zrem{t.key(k), id});
    t.erase(id);
    t.event("removed", {{"jobId", id}});
    return 1;
  }
  if (op == "clean") {
    need(4);
    std::string_view const set = a[1] == "failed" ? t.key(kFailed)
                                 : a[1] == "dead" ? t.key(kDead)
                                                  : t.key(kDone);
    auto const ids = ctx.call(cmd::zrange_by_score{
        .key = set,
        .min = ScoreBound::neg_inf(),
        .max = ScoreBound::incl(static_cast<double>(t.now - to_int(a[2]))),
        .limit = RangeLimit{0, to_int(a[3])}});
    for (auto const& id : ids) {
      ctx.call(cmd::zrem{set, id});
      t.erase(id);
    }
    if (!ids.empty()) {
      std::string const n = fmt_int(static_cast<std::int64_t>(ids.size()));
      t.event("cleaned", {{"count", n}});
    }
    return static_cast<std::int64_t>(ids.size());
  }
  if (op == "drain") {
    need(2);
    std::int64_t n = 0;
    for (auto const& id : ctx.call(cmd::lrange{t.key(kWait), 0, -1})) {
      t.erase(id);
      ++n;
    }
    for (auto const& id : ctx.call(cmd::zrange{.key = t.key(kPrio)})) {
      t.erase(id);
      ++n;
    }
    ctx.call(cmd::del{{t.key(kWait), t.key(kPrio)}});
    if (a[1] == "1") {
      for (auto const& id : ctx.call(cmd::zrange{.key = t.key(kDelayed)})) {
        t.erase(id);
        ++n;
      }
      ctx.call(cmd::del{t.key(kDelayed)});
    }
    return n;
  }
  if (op == "obliterate") {
    need(2);
    if (a[1] != "1" && ctx.call(cmd::zcard{t.key(kActive)}) > 0) return -1;
    std::vector<std::string_view> const all(t.k.begin(), t.k.end());
    ctx.call(cmd::del{all});
    return 1;
  }
  if (op == "progress" || op == "log") {
    need(4);
    auto const tok = t.get(a[1], 'k');
    if (!tok || *tok != a[2]) return 0;
    if (op == "progress") {
      t.put(a[1], 'p', a[3]);
      t.event("progress", {{"jobId", a[1]}, {"data", a[3]}});
    } else
      t.append_line(a[1], 'l', one_line(a[3], kLogLine), kLogLines);
    return 1;
  }
  ctx.fail("ERR job queue: unknown operation");
  return 0;
}

inline auto const admin_script = make_script<std::int64_t>(
    std::string(kPrelude) + R"lua(
local op = ARGV[1]
local now = now_ms()
local function need(n)
  if #ARGV ~= n then error({err = 'ERR job queue: wrong number of arguments'}) end
end
if op == 'promote' then
  need(2)
  if redis.call('ZREM', DELAYED, ARGV[2]) == 0 then return 0 end
  ready(ARGV[2], false)
  wake()
  return 1
elseif op == 'retry' then
  need(2)
  local ids = redis.call('ZRANGE', FAILED, 0, (tonumber(ARGV[2]) or 1000) - 1)
  for i = 1, #ids do
    local id = ids[i]
    redis.call('ZREM', FAILED, id)
    revive(id)
  end
  if #ids > 0 then wake() end
  return #ids
elseif op == 'retry_dead' then
  need(2)
  local id = ARGV[2]
  if redis.call('ZREM', DEAD, id) == 0 then return 0 end
  revive(id)
  wake()
  return 1
elseif op == 'remove' then
  need(2)
  local id = ARGV[2]
  if redis.call('HEXISTS', JOBS, F(id, 'n')) == 0 then return 0 end
  local exp = tonumber(redis.call('ZSCORE', LOCKS, id))
  if exp and exp >= now then return -1 end
  redis.call('LREM', WAIT, 0, id)
  for _, k in ipairs({PRIO, DELAYED, ACTIVE, DONE, FAILED, DEAD, LOCKS}) do
    redis.call('ZREM', k, id)
  end
  erase(id)
  event('removed', 'jobId', id)
  return 1
elseif op == 'clean' then
  need(4)
  local set = DONE
  if ARGV[2] == 'failed' then set = FAILED elseif ARGV[2] == 'dead' then set = DEAD end
  local ids = redis.call('ZRANGEBYSCORE', set, '-inf', fmt('%d', now - tonumber(ARGV[3])), 'LIMIT', 0,
    tonumber(ARGV[4]))
  for i = 1, #ids do
    redis.call('ZREM', set, ids[i])
    erase(ids[i])
  end
  if #ids > 0 then event('cleaned', 'count', fmt('%d', #ids)) end
  return #ids
elseif op == 'drain' then
  need(2)
  local n = 0
  local w = redis.call('LRANGE', WAIT, 0, -1)
  for i = 1, #w do erase(w[i]) n = n + 1 end
  local p = redis.call('ZRANGE', PRIO, 0, -1)
  for i = 1, #p do erase(p[i]) n = n + 1 end
  redis.call('DEL', WAIT, PRIO)
  if ARGV[2] == '1' then
    local d = redis.call('ZRANGE', DELAYED, 0, -1)
    for i = 1, #d do erase(d[i]) n = n + 1 end
    redis.call('DEL', DELAYED)
  end
  return n
elseif op == 'obliterate' then
  need(2)
  if ARGV[2] ~= '1' and redis.call('ZCARD', ACTIVE) > 0 then return -1 end
  redis.call('DEL', WAIT, PRIO, DELAYED, ACTIVE, DONE, FAILED, JOBS, META, LOCKS, MARKER, SINK, LIMIT,
    METRICS, MINDEX, DEAD, EVENTS)
  return 1
elseif op == 'progress' or op == 'log' then
  need(4)
  if redis.call('HGET', JOBS, F(ARGV[2], 'k')) ~= ARGV[3] then return 0 end
  if op == 'progress' then
    redis.call('HSET', JOBS, F(ARGV[2], 'p'), ARGV[4])
    event('progress', 'jobId', ARGV[2], 'data', ARGV[4])
  else
    append_line(ARGV[2], 'l', one_line(ARGV[4], 1000), 100)
  end
  return 1
end
return redis.error_reply('ERR job queue: unknown operation'))lua",
    [](ScriptContext auto& c) { return admin_twin(c); });

// The coroutine plumbing: rediskit/detail/spawn.hpp.
using detail::fail;
using detail::Outcome;
using detail::spawn;
using detail::to_error;
using detail::tuple_awaitable;

/// A job from get_job's HMGET (fields n d o y t w a m s b f p r e c x h).
inline constexpr std::array<char, 17> kReadFields = {'n', 'd', 'o', 'y', 't', 'w', 'a', 'm', 's',
                                                     'b', 'f', 'p', 'r', 'e', 'c', 'x', 'h'};

/// The lines of a field that append_line writes (the history, the log), oldest first.
inline std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    auto const end = text.find('\n');
    out.push_back(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
  }
  return out;
}

/// The `h` field's lines, oldest first.
inline std::vector<JobRun> history_of(std::string_view h) {
  std::vector<JobRun> out;
  for (std::string_view const line : lines_of(h)) {
    auto const t1 = line.find('\t');
    auto const t2 = t1 == std::string_view::npos ? t1 : line.find('\t', t1 + 1);
    if (t2 == std::string_view::npos) continue;
    out.push_back(JobRun{to_int(line.substr(0, t1)), to_int(line.substr(t1 + 1, t2 - t1 - 1)),
                         std::string(line.substr(t2 + 1))});
  }
  return out;
}
inline std::optional<Job> job_of(std::string id, std::vector<std::optional<std::string>>& h) {
  if (h.size() != kReadFields.size() || !h[0]) return std::nullopt;
  Job j;
  j.id = std::move(id);
  j.name = std::move(*h[0]);
  j.payload = h[1].value_or("");
  decode_options(h[2].value_or(""), j.options);
  j.options.priority = to_int_opt(h[3]);
  j.timestamp = to_int_opt(h[4]);
  j.state = state_of(h[5].value_or(""));
  j.attempts_started = to_int_opt(h[6]);
  j.attempts_made = to_int_opt(h[7]);
  j.stalled_count = to_int_opt(h[8]);
  j.processed_on = to_int_opt(h[9]);
  j.finished_on = to_int_opt(h[10]);
  j.progress = h[11].value_or("");
  j.return_value = h[12].value_or("");
  j.failed_reason = h[13].value_or("");
  j.options.remove_on_complete = decode_keep(h[14].value_or("k"));
  if (h[15] && *h[15] == "d")
    j.options.dead_letter = true;
  else
    j.options.remove_on_fail = decode_keep(h[15].value_or("k"));
  j.history = history_of(h[16].value_or(""));
  if (j.id.find_first_not_of("0123456789") != std::string::npos) j.options.job_id = j.id;
  return j;
}

}  // namespace detail::jobq

/// Seed 002's job queue over any Backend (see the top of this file). Codec encodes the data
/// that async_add takes (Job::data<T>(codec) decodes it).
template <Backend B, class Codec = JsonCodec>
class JobQueue {
  using error_code = boost::system::error_code;
  template <class X>
  using awaitable = boost::asio::awaitable<X>;
  using BoolSig = void(error_code, bool);
  using IntSig = void(error_code, std::int64_t);
  using JobSig = void(error_code, std::optional<Job>);

 public:
  using executor_type = typename B::executor_type;
  using backend_type = B;
  using codec_type = Codec;

  /// The queue `name` (not empty, no '{' or '}'; else rediskit::Exception with
  /// Error::invalid_config) on `backend`, which must outlive it.
  JobQueue(B& backend, std::string name, JobQueueOptions options = {}, Codec codec = {})
      : backend_(&backend), name_(std::move(name)), options_(std::move(options)),
        codec_(std::move(codec)) {
    if (name_.empty() || name_.find_first_of("{}") != std::string::npos ||
        options_.prefix.find_first_of("{}") != std::string::npos)
      throw Exception(make_error_code(Error::invalid_config),
                      "JobQueue: the name must be non-empty and hold no '{' or '}'");
    tag_ = "{" + (options_.prefix.empty() ? name_ : options_.prefix + ":" + name_) + "}";
    for (std::size_t i = 0; i < detail::jobq::kKeyCount; ++i)
      keys_[i] = tag_ + ":" + std::string(detail::jobq::kKeySuffix[i]);
    for (std::size_t i = 0; i < detail::jobq::kKeyCount; ++i) key_views_[i] = keys_[i];
  }
  JobQueue(JobQueue const&) = delete;
  JobQueue& operator=(JobQueue const&) = delete;

  executor_type get_executor() const noexcept { return backend_->get_executor(); }
  B& backend() const noexcept { return *backend_; }
  Codec const& codec() const noexcept { return codec_; }
  std::string const& name() const noexcept { return name_; }
  /// "{queue:<name>}": the hash tag of every key.
  std::string const& tag() const noexcept { return tag_; }
  /// The key `{queue:<name>}:<suffix>` (wait, prioritized, delayed, active, completed, failed,
  /// jobs, meta, locks, marker, marker-sink, limiter).
  std::string key(std::string_view suffix) const { return tag_ + ":" + std::string(suffix); }
  /// Every key, in the scripts' order (see detail::jobq::Key).
  std::span<std::string_view const> keys() const noexcept { return key_views_; }

  /// A job for async_add_bulk: `data` encoded by the codec.
  template <class T>
  NewJob make_job(std::string name, T const& data, JobOptions options = {}) const {
    std::string payload;
    codec_.encode(data, payload);
    return NewJob(std::move(name), std::move(payload), std::move(options));
  }

  /// seed: queue.add(name, data, opts). Handler: void(error_code, AddResult). One script.
  template <class T, class Token = boost::asio::deferred_t>
  auto async_add(std::string name, T const& data, JobOptions options = {}, Token&& token = {}) {
    std::vector<NewJob> one;
    one.push_back(make_job(std::move(name), data, std::move(options)));
    return detail::jobq::spawn<AddResult>(
        get_executor(), std::forward<Token>(token), [this, one = std::move(one)]() mutable {
          return add_one(std::move(one));
        });
  }

  /// seed: queue.addBulk(jobs). All or none: a bad job fails the bulk before anything is
  /// written; then one round trip (one script per 100 jobs). Handler: void(error_code,
  /// std::vector<AddResult>) in the order of `jobs`.
  template <class Token = boost::asio::deferred_t>
  auto async_add_bulk(std::vector<NewJob> jobs, Token&& token = {}) {
    return detail::jobq::spawn<std::vector<AddResult>>(
        get_executor(), std::forward<Token>(token),
        [this, jobs = std::move(jobs)]() mutable { return add(std::move(jobs)); });
  }

  /// seed: queue.pause(): workers fetch nothing until async_resume. Handler: void(error_code).
  template <class Token = boost::asio::deferred_t>
  auto async_pause(Token&& token = {}) {
    return detail::jobq::spawn<void>(get_executor(), std::forward<Token>(token),
                                     [this] { return set_paused(true); });
  }
  /// seed: queue.resume(); wakes idle workers. Handler: void(error_code).
  template <class Token = boost::asio::deferred_t>
  auto async_resume(Token&& token = {}) {
    return detail::jobq::spawn<void>(get_executor(), std::forward<Token>(token),
                                     [this] { return set_paused(false); });
  }
  /// Handler: void(error_code, bool).
  template <class Token = boost::asio::deferred_t>
  auto async_is_paused(Token&& token = {}) {
    return detail::initiate<BoolSig>(token, [this](auto handler) {
      backend_->async_exec(cmd::hexists{keys_[detail::jobq::kMeta], "paused"},
                           detail::AnyHandler<BoolSig>(std::move(handler)));
    });
  }

  /// seed: queue statistics (getJobCounts). One transaction. Handler: void(error_code,
  /// JobCounts).
  template <class Token = boost::asio::deferred_t>
  auto async_get_job_counts(Token&& token = {}) {
    return detail::jobq::spawn<JobCounts>(get_executor(), std::forward<Token>(token),
                                          [this] { return counts(); });
  }

  /// The job, or nullopt when there is none. One HMGET. Handler: void(error_code,
  /// std::optional<Job>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_job(std::string id, Token&& token = {}) {
    return detail::initiate<JobSig>(token, [this, id = std::move(id)](auto handler) mutable {
      start_get_job(std::move(id), detail::AnyHandler<JobSig>(std::move(handler)));
    });
  }

  /// The log of job `id` (ActiveJob::log), oldest line first: the last 100 lines, each cut to
  /// 1000 bytes, tabs and line breaks as spaces. Empty when the job logged nothing or does not
  /// exist; removing the job removes its log. One HGET. Handler: void(error_code,
  /// std::vector<std::string>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_job_logs(std::string id, Token&& token = {}) {
    return detail::jobq::spawn<std::vector<std::string>>(
        get_executor(), std::forward<Token>(token),
        [this, id = std::move(id)] { return job_logs(id); });
  }

  /// Waits until job `id` completes or fails for good (BullMQ's job.waitUntilFinished), reading
  /// the queue's events stream. `after`: a position in the stream to read from, normally
  /// AddResult::event_id (then a job that finished, and was removed, before the wait began is
  /// still seen); empty: the job's state is read first, then the events that follow. Handler:
  /// void(error_code, std::optional<JobOutcome>): the outcome; nullopt when there is no such job
  /// (never added, or removed before it finished); Error::timeout when it did not finish within
  /// `timeout`; Error::invalid_argument for an empty id or a negative timeout.
  /// Each waiting call is a blocking XREAD of up to 1 s at a time (on RedisBackend, on a
  /// connection of its own), with the job's state read again every second of waiting, so a
  /// reader that fell more than the stream's bound (about 10 000 events) behind still ends. For
  /// many jobs at once, read one QueueEvents and dispatch.
  template <class Token = boost::asio::deferred_t>
  auto async_wait_until_finished(std::string id, std::chrono::milliseconds timeout,
                                 std::string after = {}, Token&& token = {}) {
    return detail::jobq::spawn<std::optional<JobOutcome>>(
        get_executor(), std::forward<Token>(token),
        [this, id = std::move(id), timeout, after = std::move(after)]() mutable {
          return wait_until_finished(std::move(id), timeout, std::move(after));
        });
  }

  /// A page of the jobs in `state`: `count` jobs from position `cursor` (0 first), in the order
  /// they will run (waiting, prioritized, delayed), started (active), or newest first
  /// (completed, failed); JobState::paused lists the wait list too. next_cursor is 0 after the
  /// last page. Two round trips; a job that moves between them is left out. Handler:
  /// void(error_code, JobPage).
  template <class Token = boost::asio::deferred_t>
  auto async_get_jobs(JobState state, std::int64_t cursor, std::int64_t count, Token&& token = {}) {
    return detail::jobq::spawn<JobPage>(
        get_executor(), std::forward<Token>(token),
        [this, state, cursor, count] { return get_jobs(state, cursor, count); });
  }

  /// Removes a job that is not locked by a worker. Handler: void(error_code, bool): true when
  /// removed; false when there is no such job. An active job under a live lock is not removed
  /// (Error::invalid_argument).
  template <class Token = boost::asio::deferred_t>
  auto async_remove(std::string id, Token&& token = {}) {
    bool const bad = id.empty();
    return admin_op<BoolSig>({"remove", std::move(id)}, bad, AdminFlag{true}, token);
  }

  /// Failed jobs (the oldest `count`) back to waiting, with their attempts reset (BullMQ's
  /// retryJobs). Handler: void(error_code, std::int64_t): how many.
  template <class Token = boost::asio::deferred_t>
  auto async_retry_jobs(std::int64_t count = 1000, Token&& token = {}) {
    return admin_op<IntSig>({"retry", std::to_string(count)}, count < 1, AdminCount{}, token);
  }

  /// A delayed job to waiting now. Handler: void(error_code, bool): false when it is not
  /// delayed.
  template <class Token = boost::asio::deferred_t>
  auto async_promote(std::string id, Token&& token = {}) {
    bool const bad = id.empty();
    return admin_op<BoolSig>({"promote", std::move(id)}, bad, AdminFlag{false}, token);
  }

  /// A dead letter back to waiting, its attempts reset and its history kept. Handler:
  /// void(error_code, bool): false when the job is not in the dead-letter set.
  template <class Token = boost::asio::deferred_t>
  auto async_retry_dead(std::string id, Token&& token = {}) {
    bool const bad = id.empty();
    return admin_op<BoolSig>({"retry_dead", std::move(id)}, bad, AdminFlag{false}, token);
  }

  /// Removes up to `limit` completed, failed or dead jobs that finished at least `grace` ago
  /// (BullMQ's clean; state: JobState::completed, failed or dead). Handler:
  /// void(error_code, std::int64_t): how many.
  template <class Token = boost::asio::deferred_t>
  auto async_clean(std::chrono::milliseconds grace, std::int64_t limit, JobState state,
                   Token&& token = {}) {
    bool const bad = grace.count() < 0 || limit < 1 ||
                     (state != JobState::completed && state != JobState::failed &&
                      state != JobState::dead);
    return admin_op<IntSig>({"clean", std::string(to_string(state)), std::to_string(grace.count()),
                             std::to_string(limit)},
                            bad, AdminCount{}, token);
  }

  /// Removes every waiting and prioritized job (and delayed ones with `delayed`); active,
  /// completed, failed and dead jobs stay. Handler: void(error_code, std::int64_t): how many.
  template <class Token = boost::asio::deferred_t>
  auto async_drain(bool delayed = false, Token&& token = {}) {
    return admin_op<IntSig>({"drain", delayed ? "1" : "0"}, false, AdminCount{}, token);
  }

  /// Deletes the queue: every key. With jobs active and !force it fails with
  /// Error::invalid_argument and deletes nothing. Handler: void(error_code).
  template <class Token = boost::asio::deferred_t>
  auto async_obliterate(bool force = false, Token&& token = {}) {
    return detail::jobq::spawn<void>(get_executor(), std::forward<Token>(token),
                                     [this, force] { return obliterate(force); });
  }

  /// Moves the active jobs whose lock expired back to waiting (or to failed after
  /// `max_stalled_count` stalls). Workers run this on their own; here for tools and tests.
  /// Handler: void(error_code, std::vector<std::pair<std::string, JobState>>): the jobs moved.
  template <class Token = boost::asio::deferred_t>
  auto async_check_stalled(std::int64_t max_stalled_count = 1, Token&& token = {}) {
    return detail::jobq::spawn<std::vector<std::pair<std::string, JobState>>>(
        get_executor(), std::forward<Token>(token),
        [this, max_stalled_count] { return check_stalled(max_stalled_count); });
  }

  /// Jobs completed (state JobState::completed) or failed for good (JobState::failed) per minute
  /// of server time, for the last `minutes` minutes (1 to 1440), the current minute first; kept
  /// in Redis for 24 hours (`{queue:<n>}:metrics`, pruned as jobs finish). Two round trips.
  /// Handler: void(error_code, std::vector<std::int64_t>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_metrics(JobState state, std::int64_t minutes, Token&& token = {}) {
    return detail::jobq::spawn<std::vector<std::int64_t>>(
        get_executor(), std::forward<Token>(token),
        [this, state, minutes] { return metrics(state, minutes); });
  }

  /// The counts per state and the jobs completed and failed in the last 1, 5 and 15 minutes
  /// (the current minute included), in Prometheus' text format:
  ///   rediskit_job_queue_jobs{queue="email",state="waiting"} 3
  ///   rediskit_job_queue_finished{queue="email",result="completed",window="5m"} 120
  /// Handler: void(error_code, std::string).
  template <class Token = boost::asio::deferred_t>
  auto async_get_prometheus_text(Token&& token = {}) {
    return detail::jobq::spawn<std::string>(get_executor(), std::forward<Token>(token),
                                            [this] { return prometheus(); });
  }

  // ---- used by Worker --------------------------------------------------------------------------

  /// The stalled script (one round trip).
  awaitable<std::vector<std::pair<std::string, JobState>>> check_stalled(std::int64_t max) {
    if (max < 0) detail::jobq::fail(Error::invalid_argument, "max_stalled_count is negative");
    std::string const m = std::to_string(max), limit = "1000";
    std::array<std::string_view, 2> const args = {m, limit};
    auto r = co_await backend_->async_exec(detail::jobq::stalled_script(key_views_, args),
                                           boost::asio::use_awaitable);
    std::vector<std::pair<std::string, JobState>> out;
    for (std::size_t i = 0; i + 1 < r.size(); i += 2)
      out.emplace_back(std::move(r[i]), detail::jobq::state_of(r[i + 1]));
    co_return out;
  }

 private:
  static void check(JobOptions const& o) {
    if (auto p = o.problem(); !p.empty()) detail::jobq::fail(Error::invalid_argument, "JobOptions: " + p);
  }

  awaitable<AddResult> add_one(std::vector<NewJob> one) {
    auto r = co_await add(std::move(one));
    co_return std::move(r.at(0));
  }

  awaitable<std::vector<AddResult>> add(std::vector<NewJob> jobs) {
    for (auto const& j : jobs) check(j.options);
    std::vector<AddResult> out;
    if (jobs.empty()) co_return out;
    // The arguments, alive until the reply (the commands view them): kAddChunk jobs per script.
    using detail::jobq::kAddArgs;
    using detail::jobq::kAddChunk;
    std::vector<std::string> args(jobs.size() * kAddArgs);
    std::vector<std::string_view> views(args.size());
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      auto const& j = jobs[i];
      std::string* a = &args[i * kAddArgs];
      a[0] = j.options.job_id.value_or("");
      a[1] = j.name;
      a[2] = j.payload;
      a[3] = detail::jobq::encode_options(j.options);
      a[4] = std::to_string(j.options.priority);
      a[5] = std::to_string(j.options.delay.count());
      a[6] = j.options.lifo ? "1" : "0";
      a[7] = j.options.remove_on_complete.spec();
      bool const dead = j.options.dead_letter ||
                        (options_.dead_letter &&
                         j.options.remove_on_fail.kind == KeepJobs::Kind::all);
      a[8] = dead ? std::string("d") : j.options.remove_on_fail.spec();
    }
    for (std::size_t k = 0; k < args.size(); ++k) views[k] = args[k];
    using Cmd = decltype(detail::jobq::add_script(key_views_, {}));
    std::vector<Cmd> cmds;
    std::span<std::string_view const> const all(views);
    for (std::size_t b = 0; b < all.size(); b += kAddChunk * kAddArgs)
      cmds.push_back(detail::jobq::add_script(
          key_views_, all.subspan(b, std::min(kAddChunk * kAddArgs, all.size() - b))));
    auto replies = co_await backend_->async_exec(cmds, boost::asio::use_awaitable);
    out.reserve(jobs.size());
    for (auto& r : replies)
      for (std::size_t i = 0; i + 3 <= r.size(); i += 3)
        out.push_back(AddResult{std::move(r[i]), r[i + 1] == "1", std::move(r[i + 2])});
    if (out.size() != jobs.size())
      detail::jobq::fail(Error::incompatible_size, "add: unexpected reply");
    co_return out;
  }

  // The job's state: `gone` when it does not exist, else its outcome when it has finished.
  struct Probe {
    bool gone = false;
    std::optional<JobOutcome> done;
  };
  static Probe probe_of(std::string const& id, std::vector<std::optional<std::string>>& h) {
    Probe p;
    if (h.size() != 3 || !h[0]) {
      p.gone = true;
      return p;
    }
    JobState const st = detail::jobq::state_of(*h[0]);
    if (st == JobState::completed || st == JobState::failed || st == JobState::dead)
      p.done = JobOutcome{id, st, h[1].value_or(""), h[2].value_or("")};
    return p;
  }
  cmd::hmget probe_read(std::array<std::string, 3> const& f) const {
    return cmd::hmget{keys_[detail::jobq::kJobs], {f[0], f[1], f[2]}};
  }
  // The outcome of `id` among `events` (nullopt: none of them ends it); `removed` is set when
  // one says it was removed.
  static std::optional<JobOutcome> outcome_in(std::vector<JobEvent>& events, std::string const& id,
                                              bool& removed) {
    for (auto& e : events) {
      if (e.job_id != id) continue;
      if (e.kind == JobEventKind::completed)
        return JobOutcome{id, JobState::completed, std::move(e.value), {}};
      if (e.kind == JobEventKind::failed) return JobOutcome{id, e.state, {}, std::move(e.value)};
      if (e.kind == JobEventKind::removed) removed = true;
    }
    return std::nullopt;
  }

  awaitable<std::optional<JobOutcome>> wait_until_finished(std::string id,
                                                           std::chrono::milliseconds timeout,
                                                           std::string cursor) {
    using namespace detail::jobq;
    using std::chrono::milliseconds;
    using Steady = std::chrono::steady_clock;
    if (id.empty()) fail(Error::invalid_argument, "wait_until_finished: the job id is empty");
    if (timeout.count() < 0) fail(Error::invalid_argument, "wait_until_finished: negative timeout");
    std::string_view const events = keys_[kEvents];
    std::array<std::string, 3> const f = {field(id, 'w'), field(id, 'r'), field(id, 'e')};
    if (cursor.empty()) {  // the end of the stream, then the state: nothing falls in between
      auto const first = batch(cmd::xrevrange{.key = events, .count = 1}, probe_read(f));
      auto [last, h] = co_await backend_->async_exec(first, boost::asio::use_awaitable);
      cursor = last.empty() ? std::string("0-0") : std::move(last[0].id);
      Probe p = probe_of(id, h);
      if (p.gone) co_return std::nullopt;
      if (p.done) co_return std::move(p.done);
    }
    milliseconds left = timeout;
    auto last_probe = Steady::now();
    for (;;) {
      if (left.count() <= 0)
        fail(Error::timeout, "wait_until_finished: job " + id + " did not finish within " +
                                 std::to_string(timeout.count()) + " ms");
      milliseconds const block = std::min(left, milliseconds(1000));
      auto const t0 = Steady::now();
      cmd::xread const read{.keys = events, .ids = cursor, .count = 1000, .block = block};
      auto r = co_await backend_->async_exec(read, boost::asio::use_awaitable);
      bool const timed_out = !r.has_value();
      left -= timed_out ? block
                        : std::chrono::duration_cast<milliseconds>(Steady::now() - t0);
      auto evs = events_of(std::move(r));
      bool const full = evs.size() >= 1000;
      if (!evs.empty()) cursor = evs.back().stream_id;
      bool removed = false;
      if (auto o = outcome_in(evs, id, removed)) co_return o;
      if (removed) co_return std::nullopt;
      if (!timed_out && !full && Steady::now() - last_probe < milliseconds(1000)) continue;
      // Idle, behind, or a second passed: the state, in case the stream was trimmed past it.
      last_probe = Steady::now();
      auto h = co_await backend_->async_exec(probe_read(f), boost::asio::use_awaitable);
      Probe p = probe_of(id, h);
      if (p.done) co_return std::move(p.done);
      if (p.gone) {  // finished and removed since the read? Its event is in the stream.
        cmd::xread const rest{.keys = events, .ids = cursor};
        auto tail = co_await backend_->async_exec(rest, boost::asio::use_awaitable);
        auto more = events_of(std::move(tail));
        co_return outcome_in(more, id, removed);
      }
    }
  }

  awaitable<void> set_paused(bool paused) {
    auto const& k = keys_;
    FieldValue const what{"event", paused ? "paused" : "resumed"};
    cmd::xadd const event = detail::jobq::event_add(k[detail::jobq::kEvents], what);
    if (paused) {
      auto t = transaction(cmd::hset{k[detail::jobq::kMeta], FieldValue{"paused", "1"}}, event);
      co_await backend_->async_exec(t, boost::asio::use_awaitable);
    } else {
      auto t = transaction(cmd::hdel{k[detail::jobq::kMeta], "paused"},
                           cmd::lpush{k[detail::jobq::kMarker], "1"},
                           cmd::ltrim{k[detail::jobq::kMarker], 0, detail::jobq::kMarkerCap - 1},
                           event);
      co_await backend_->async_exec(t, boost::asio::use_awaitable);
    }
  }

  awaitable<JobCounts> counts() {
    using namespace detail::jobq;
    auto const& k = keys_;
    auto t = transaction(cmd::llen{k[kWait]}, cmd::zcard{k[kActive]}, cmd::zcard{k[kDelayed]},
                         cmd::zcard{k[kPrio]}, cmd::zcard{k[kDone]}, cmd::zcard{k[kFailed]},
                         cmd::hexists{k[kMeta], "paused"}, cmd::zcard{k[kDead]});
    auto r = co_await backend_->async_exec(t, boost::asio::use_awaitable);
    JobCounts c;
    bool const paused = std::get<6>(r);
    (paused ? c.paused : c.waiting) = std::get<0>(r);
    c.active = std::get<1>(r);
    c.delayed = std::get<2>(r);
    c.prioritized = std::get<3>(r);
    c.completed = std::get<4>(r);
    c.failed = std::get<5>(r);
    c.dead = std::get<7>(r);
    co_return c;
  }

  static std::vector<std::string> read_fields(std::string_view id) {
    std::vector<std::string> f;
    f.reserve(detail::jobq::kReadFields.size());
    for (char c : detail::jobq::kReadFields) f.push_back(detail::jobq::field(id, c));
    return f;
  }

  struct JobMap {
    std::string id;
    std::optional<Job> operator()(error_code& ec, std::vector<std::optional<std::string>> h) {
      if (ec) return std::nullopt;
      return detail::jobq::job_of(std::move(id), h);
    }
  };

  void start_get_job(std::string id, detail::AnyHandler<JobSig> handler) {
    if (id.empty())
      return detail::post_handler(backend_->get_executor(), std::move(handler),
                                  make_error_code(Error::invalid_argument), std::optional<Job>());
    auto const f = read_fields(id);
    backend_->async_exec(cmd::hmget{keys_[detail::jobq::kJobs], f},
                         detail::ThenHandler<detail::AnyHandler<JobSig>, JobMap>{
                             std::move(handler), JobMap{std::move(id)}});
  }

  // The admin script's reply as a count, or as a flag (remove: -1, a live lock, is an error).
  struct AdminCount {
    std::int64_t operator()(error_code&, std::int64_t r) const { return r; }
  };
  struct AdminFlag {
    bool remove = false;
    bool operator()(error_code& ec, std::int64_t r) const {
      if (!ec && remove && r < 0) ec = make_error_code(Error::invalid_argument);
      return !ec && r == 1;
    }
  };

  // One admin script, no coroutine: `args` are its ARGV; `bad`: fail with invalid_argument and
  // send nothing.
  template <class Sig, class Map, class Token>
  auto admin_op(std::vector<std::string> args, bool bad, Map map, Token& token) {
    return detail::initiate<Sig>(token, [this, args = std::move(args), bad, map](auto handler) {
      start_admin<Sig>(args, bad, map, detail::AnyHandler<Sig>(std::move(handler)));
    });
  }

  template <class Sig, class Map>
  void start_admin(std::vector<std::string> const& args, bool bad, Map map,
                   detail::AnyHandler<Sig> handler) {
    using R = std::invoke_result_t<Map&, error_code&, std::int64_t>;
    if (bad)
      return detail::post_handler(backend_->get_executor(), std::move(handler),
                                  make_error_code(Error::invalid_argument), R{});
    std::vector<std::string_view> const v(args.begin(), args.end());
    backend_->async_exec(detail::jobq::admin_script(key_views_, v),
                         detail::ThenHandler<detail::AnyHandler<Sig>, Map>{std::move(handler), map});
  }

  awaitable<std::vector<std::string>> job_logs(std::string id) {
    if (id.empty()) detail::jobq::fail(Error::invalid_argument, "async_get_job_logs: empty job id");
    std::string const f = detail::jobq::field(id, 'l');
    auto const text = co_await backend_->async_exec(cmd::hget{keys_[detail::jobq::kJobs], f},
                                                    boost::asio::use_awaitable);
    std::vector<std::string> lines;
    std::string_view const all = text ? std::string_view(*text) : std::string_view();
    for (std::string_view const line : detail::jobq::lines_of(all)) lines.emplace_back(line);
    co_return lines;
  }

  awaitable<JobPage> get_jobs(JobState state, std::int64_t cursor, std::int64_t count) {
    using namespace detail::jobq;
    if (cursor < 0 || count < 1)
      fail(Error::invalid_argument, "async_get_jobs: cursor below 0 or count below 1");
    std::vector<std::string> ids;
    std::int64_t const last = cursor + count - 1;
    switch (state) {
      case JobState::waiting:
      case JobState::paused:
        // Taken from the right: the next to run is the last element.
        ids = co_await backend_->async_exec(cmd::lrange{keys_[kWait], -1 - last, -1 - cursor},
                                            boost::asio::use_awaitable);
        std::reverse(ids.begin(), ids.end());
        break;
      case JobState::active:
      case JobState::delayed:
      case JobState::prioritized:
      case JobState::completed:
      case JobState::failed:
      case JobState::dead: {
        Key const k = state == JobState::active     ? kActive
                      : state == JobState::delayed  ? kDelayed
                      : state == JobState::prioritized ? kPrio
                      : state == JobState::completed ? kDone
                      : state == JobState::failed    ? kFailed
                                                     : kDead;
        bool const rev = state == JobState::completed || state == JobState::failed ||
                         state == JobState::dead;
        ids = co_await backend_->async_exec(
            cmd::zrange{.key = keys_[k], .start = cursor, .stop = last, .rev = rev},
            boost::asio::use_awaitable);
        break;
      }
      default:
        fail(Error::invalid_argument, "async_get_jobs: no listing for that state");
    }
    JobPage page;
    page.next_cursor = static_cast<std::int64_t>(ids.size()) == count ? cursor + count : 0;
    if (ids.empty()) co_return page;
    std::vector<std::vector<std::string>> fields;
    fields.reserve(ids.size());
    std::vector<cmd::hmget> cmds;
    cmds.reserve(ids.size());
    for (auto const& id : ids) {
      fields.push_back(read_fields(id));
      cmds.push_back(cmd::hmget{keys_[kJobs], fields.back()});
    }
    auto hs = co_await backend_->async_exec(cmds, boost::asio::use_awaitable);
    for (std::size_t i = 0; i < ids.size() && i < hs.size(); ++i)
      if (auto j = job_of(std::move(ids[i]), hs[i])) page.jobs.push_back(std::move(*j));
    co_return page;
  }

  awaitable<std::int64_t> admin(std::span<std::string_view const> args) {
    co_return co_await backend_->async_exec(detail::jobq::admin_script(key_views_, args),
                                            boost::asio::use_awaitable);
  }

  awaitable<std::int64_t> admin_int(std::string op, std::string arg) {
    std::array<std::string_view, 2> const a = {op, arg};
    co_return co_await admin(a);
  }

  awaitable<std::vector<std::int64_t>> metrics(JobState state, std::int64_t minutes) {
    using namespace detail::jobq;
    if ((state != JobState::completed && state != JobState::failed) || minutes < 1 ||
        minutes > kMetricMinutes)
      fail(Error::invalid_argument,
           "async_get_metrics: a state other than completed or failed, or minutes outside "
           "[1, 1440]");
    auto const t = co_await backend_->async_exec(cmd::time{}, boost::asio::use_awaitable);
    std::int64_t const now = (t.first * 1000 + t.second / 1000) / 60000;
    char const kind = state == JobState::completed ? 'c' : 'f';
    std::vector<std::string> fields;
    fields.reserve(static_cast<std::size_t>(minutes));
    for (std::int64_t i = 0; i < minutes; ++i)
      fields.push_back(std::string(1, kind) + std::to_string(now - i));
    auto const h = co_await backend_->async_exec(cmd::hmget{keys_[kMetrics], fields},
                                                 boost::asio::use_awaitable);
    std::vector<std::int64_t> out;
    out.reserve(h.size());
    for (auto const& v : h) out.push_back(to_int_opt(v));
    co_return out;
  }

  awaitable<std::string> prometheus() {
    JobCounts const c = co_await counts();
    auto const done = co_await metrics(JobState::completed, 15);
    auto const failed = co_await metrics(JobState::failed, 15);
    std::string q;
    for (char ch : name_) {
      if (ch == '"' || ch == '\\') q.push_back('\\');
      if (ch == '\n') {
        q += "\\n";
        continue;
      }
      q.push_back(ch);
    }
    std::string out =
        "# HELP rediskit_job_queue_jobs Jobs of the queue per state.\n"
        "# TYPE rediskit_job_queue_jobs gauge\n";
    std::pair<char const*, std::int64_t> const states[] = {
        {"waiting", c.waiting},     {"active", c.active},       {"delayed", c.delayed},
        {"prioritized", c.prioritized}, {"completed", c.completed}, {"failed", c.failed},
        {"dead", c.dead},           {"paused", c.paused}};
    for (auto const& [s, n] : states)
      out += "rediskit_job_queue_jobs{queue=\"" + q + "\",state=\"" + s + "\"} " +
             std::to_string(n) + "\n";
    out +=
        "# HELP rediskit_job_queue_finished Jobs completed or failed for good in the last minutes "
        "(server time, the current minute included).\n"
        "# TYPE rediskit_job_queue_finished gauge\n";
    for (auto const& [result, v] : {std::pair<char const*, std::vector<std::int64_t> const*>{
                                        "completed", &done},
                                    {"failed", &failed}})
      for (int w : {1, 5, 15}) {
        std::int64_t sum = 0;
        for (int i = 0; i < w; ++i) sum += (*v)[static_cast<std::size_t>(i)];
        out += "rediskit_job_queue_finished{queue=\"" + q + "\",result=\"" + result +
               "\",window=\"" + std::to_string(w) + "m\"} " + std::to_string(sum) + "\n";
      }
    co_return out;
  }

  awaitable<void> obliterate(bool force) {
    std::int64_t const r = co_await admin_int("obliterate", force ? "1" : "0");
    if (r < 0) detail::jobq::fail(Error::invalid_argument, "async_obliterate: jobs are active");
  }

  B* backend_;
  std::string name_;
  JobQueueOptions options_;
  Codec codec_;
  std::string tag_;
  std::array<std::string, detail::jobq::kKeyCount> keys_;
  std::array<std::string_view, detail::jobq::kKeyCount> key_views_{};
};

/// QueueEvents' options.
struct QueueEventsOptions {
  /// Where reading starts: "$" the events added after the first async_read begins, "0" every
  /// event the stream still holds, or a stream id (a last_id() kept from before: resume after
  /// it).
  std::string from = "$";
  /// How long one async_read waits when there is nothing new (0: until something comes).
  std::chrono::milliseconds block{5000};
  std::int64_t count = 1000;  ///< the most events one async_read returns
};

/// Reads a queue's events (BullMQ's QueueEvents) from its bounded stream,
/// `{queue:<n>}:events`: every state move of a job adds one (JobEventKind), in the same script
/// as the move, so the events of one job come in the order of its moves. The stream keeps about
/// the last 10 000 events (XADD MAXLEN ~ 10000); a reader that falls further behind misses the
/// older ones. Any number of readers, each with its own position; nothing is consumed.
///
///   rediskit::QueueEvents events(queue);                  // from now on
///   for (;;) {
///     auto batch = co_await events.async_read();          // up to 1000, or none after 5 s
///     for (auto const& e : batch)
///       if (e.kind == rediskit::JobEventKind::failed) alert(e.job_id, e.value);
///   }
///
/// One async_read at a time per object (as a socket's read). Each is one blocking XREAD: on
/// RedisBackend and ClusterBackend it runs on a connection of its own; on MemoryBackend and
/// FakeBackend it waits in the engine (FakeBackend: its timeout follows the manual clock). The
/// first read from "$" also asks for the stream's last id (XREVRANGE), so that nothing added
/// between two reads is missed. Thread safety and lifetimes: as JobQueue's; the backend must
/// outlive the reads.
template <Backend B>
class QueueEvents {
 public:
  using executor_type = typename B::executor_type;

  /// Reads `queue`'s events. Options out of range (a negative block, a count below 1, an empty
  /// `from`) throw rediskit::Exception with Error::invalid_config.
  template <class Codec>
  explicit QueueEvents(JobQueue<B, Codec> const& queue, QueueEventsOptions options = {})
      : backend_(&queue.backend()),
        key_(queue.keys()[detail::jobq::kEvents]),
        last_(std::move(options.from)),
        block_(options.block),
        count_(options.count) {
    if (block_.count() < 0 || count_ < 1 || last_.empty())
      throw Exception(make_error_code(Error::invalid_config),
                      "QueueEventsOptions: block must be >= 0, count >= 1 and from not empty");
  }

  executor_type get_executor() const noexcept { return backend_->get_executor(); }
  /// The id of the last event read ("$" before the first read): keep it to resume later.
  std::string const& last_id() const noexcept { return last_; }

  /// The events after last_id(), oldest first: up to `count`, as soon as there is one, or none
  /// after `block`. Handler: void(error_code, std::vector<JobEvent>).
  template <class Token = boost::asio::deferred_t>
  auto async_read(Token&& token = {}) {
    return detail::jobq::spawn<std::vector<JobEvent>>(get_executor(), std::forward<Token>(token),
                                                      [this] { return read(); });
  }

 private:
  boost::asio::awaitable<std::vector<JobEvent>> read() {
    if (last_ == "$") {
      auto last = co_await backend_->async_exec(cmd::xrevrange{.key = key_, .count = 1},
                                                boost::asio::use_awaitable);
      last_ = last.empty() ? std::string("0-0") : std::move(last[0].id);
    }
    cmd::xread const r{.keys = key_, .ids = last_, .count = count_, .block = block_};
    auto reply = co_await backend_->async_exec(r, boost::asio::use_awaitable);
    auto events = detail::jobq::events_of(std::move(reply));
    if (!events.empty()) last_ = events.back().stream_id;
    co_return events;
  }

  B* backend_;
  std::string key_;
  std::string last_;
  std::chrono::milliseconds block_;
  std::int64_t count_;
};

}  // namespace rediskit
