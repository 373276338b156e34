// JobQueue and Worker on MemoryBackend, FakeBackend, RedisBackend and ClusterBackend: adding
// (ids, duplicates, bulk), the order of priorities, lifo and delays, retries on the backoff
// schedule (checked on FakeBackend's manual clock), remove_on_complete / remove_on_fail, pause
// and resume, counts, paged listings, promote / retry / remove / clean / drain / obliterate,
// a worker that lost its lock and cannot complete the job, stalled-job recovery, timeouts, the
// rate limit, a fetch loop that survives backend errors, a graceful close, bad input, and the
// events stream (QueueEvents, async_wait_until_finished).
//
// Every case runs on each backend (the in-process backends run the scripts' C++ twins, the
// servers the Lua: the same assertions on both are the parity test), and on MemoryBackend and
// FakeBackend again with MemoryConfig::cluster_checks (every key a script touches is declared
// and in one slot).
#include "support/backends.hpp"
#include "support/layout_modes.hpp"
#include "support/rate_windows.hpp"

#include <rediskit/services/job_queue.hpp>
#include <rediskit/services/worker.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using boost::system::error_code;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
using rediskit::test::Mode;
using rediskit::test::for_each_mode;
using rediskit::test::mode_fixture;
namespace asio = boost::asio;

namespace jq_test {

struct Mail {
  std::string to;
  int n = 0;
};
BOOST_DESCRIBE_STRUCT(Mail, (), (to, n))

using rediskit::test::invalid;

/// A backend, a queue on it, and synchronous helpers.
template <class B>
struct Q {
  explicit Q(Mode mode, std::string name = "email") : f(mode_fixture<B>(mode)), q(f.backend, name) {}

  template <class Op>
  auto ok(Op&& op) {
    return f.value(std::forward<Op>(op));
  }
  template <class Op>
  error_code err(Op&& op) {
    return f.error(std::forward<Op>(op));
  }

  AddResult add(std::string name, int n, JobOptions o = {}) {
    return ok(q.async_add(std::move(name), Mail{"a@b.c", n}, std::move(o)));
  }
  JobCounts counts() { return ok(q.async_get_job_counts()); }
  std::optional<Job> job(std::string id) { return ok(q.async_get_job(std::move(id))); }

  /// Runs the io_context until pred() (10 s at most).
  template <class P>
  void until(P pred, std::chrono::milliseconds limit = 10s) {
    f.run_until(pred, limit);
  }
  /// Runs the io_context for `d` of real time.
  void run_for(std::chrono::milliseconds d) {
    auto const end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
      if (f.ioc.stopped()) f.ioc.restart();
      f.ioc.run_one_for(5ms);
    }
  }
  /// Closes a worker and waits for it.
  template <class W>
  void close(W& w, std::chrono::milliseconds timeout = 1s) {
    ok(w.async_close(timeout));
  }

  /// Makes job `id`'s lock expire (as if its worker hung past lock_duration).
  void expire_lock(std::string const& id) {
    std::string const locks = q.key("locks");
    f.ok(cmd::zadd{.key = locks, .members = ScoreMember{1.0, id}, .xx = true});
  }

  BackendFixture<B> f;
  JobQueue<B> q;
};

WorkerOptions quiet(std::int64_t concurrency = 1) {
  WorkerOptions o;
  o.concurrency = concurrency;
  o.stalled_interval = 0ms;  // the tests run the stalled check themselves
  o.idle_wait = 200ms;
  o.retry_delay = 5ms;
  o.max_retry_delay = 20ms;
  return o;
}

/// A gate a handler waits on; open() lets it through.
struct Gate {
  explicit Gate(asio::any_io_executor ex) : t(ex) { t.expires_at(std::chrono::steady_clock::time_point::max()); }
  asio::awaitable<void> wait() { (void)co_await t.async_wait(asio::as_tuple(asio::use_awaitable)); }
  void open() {
    opened = true;
    t.cancel();
  }
  asio::steady_timer t;
  bool opened = false;
};

inline std::int64_t sum_of(std::vector<std::int64_t> const& v) {
  std::int64_t n = 0;
  for (auto x : v) n += x;
  return n;
}

}  // namespace jq_test

using namespace jq_test;

BOOST_AUTO_TEST_SUITE(job_queue)

BOOST_AUTO_TEST_CASE_TEMPLATE(add_gives_ids_reports_duplicates_and_stores_the_job, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    auto const a = t.add("welcome", 1);
    auto const b = t.add("welcome", 2);
    BOOST_TEST(a.id == "1");
    BOOST_TEST(b.id == "2");
    BOOST_TEST((a.added && b.added));
    JobOptions o;
    o.with_id("mail-7").with_attempts(3, Backoff::exponential(1s, 0.5)).with_priority(4);
    o.remove_on_complete = KeepJobs::last(10);
    auto const c = t.add("digest", 3, o);
    BOOST_TEST(c.id == "mail-7");
    BOOST_TEST(c.added);
    auto const dup = t.add("other", 99, o);
    BOOST_TEST(dup.id == "mail-7");
    BOOST_TEST(!dup.added);
    auto j = t.job("mail-7");
    BOOST_REQUIRE(j.has_value());
    BOOST_TEST(j->name == "digest");  // the first job, untouched
    BOOST_TEST(j->template data<Mail>().n == 3);
    BOOST_TEST(j->payload == R"({"to":"a@b.c","n":3})");
    BOOST_TEST((j->state == JobState::prioritized));
    BOOST_TEST(j->options.attempts == 3);
    BOOST_TEST((j->options.backoff.kind == Backoff::Kind::exponential));
    BOOST_TEST(j->options.backoff.delay.count() == 1000);
    BOOST_TEST(j->options.backoff.jitter == 0.5);
    BOOST_TEST(j->options.priority == 4);
    BOOST_TEST((j->options.remove_on_complete.kind == KeepJobs::Kind::count));
    BOOST_TEST(j->options.remove_on_complete.count == 10);
    BOOST_TEST((j->options.job_id == std::optional<std::string>("mail-7")));
    BOOST_TEST(j->timestamp > 0);
    BOOST_TEST(!t.job("nope").has_value());
    auto const c2 = t.counts();
    BOOST_TEST(c2.waiting == 2);
    BOOST_TEST(c2.prioritized == 1);
    BOOST_TEST(c2.active + c2.delayed + c2.completed + c2.failed + c2.paused == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(add_bulk_adds_all_in_order_and_reports_duplicates, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    // 250 jobs: three scripts of up to 100; the duplicate pair straddles the first boundary
    // (positions 99 and 100), and one job is delayed.
    std::vector<NewJob> jobs;
    for (int i = 0; i < 99; ++i) jobs.push_back(t.q.make_job("n", Mail{"x", i}));
    JobOptions same;
    same.with_id("dup");
    jobs.push_back(t.q.make_job("first", Mail{"x", 1}, same));
    jobs.push_back(t.q.make_job("second", Mail{"x", 2}, same));
    for (int i = 99; i < 247; ++i) jobs.push_back(t.q.make_job("n", Mail{"x", i}));
    jobs.push_back(t.q.make_job("later", Mail{"x", 0}, JobOptions().with_delay(60s)));
    auto const r = t.ok(t.q.async_add_bulk(std::move(jobs)));
    BOOST_REQUIRE(r.size() == 250u);
    for (int i = 0; i < 99; ++i) BOOST_TEST(r[i].id == std::to_string(i + 1));
    for (int i = 101; i < 249; ++i) BOOST_TEST(r[i].id == std::to_string(i - 1));
    BOOST_TEST(r[99].added);
    BOOST_TEST(!r[100].added);
    BOOST_TEST(r[100].event_id.empty());
    BOOST_TEST(t.job("dup")->name == "first");
    auto const c = t.counts();
    BOOST_TEST(c.waiting == 248);
    BOOST_TEST(c.delayed == 1);
    // Every added job has its own event, in the order of the bulk.
    for (std::size_t i = 1; i < r.size(); ++i)
      if (r[i].added && r[i - 1].added)
        BOOST_TEST((StreamId::parse(r[i - 1].event_id) < StreamId::parse(r[i].event_id)));
    BOOST_TEST(t.ok(t.q.async_add_bulk(std::vector<NewJob>{})).empty());
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_is_refused_and_writes_nothing, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    auto bad = [&](JobOptions o) { return t.err(t.q.async_add("n", Mail{}, std::move(o))); };
    BOOST_TEST(bad(JobOptions().with_id("")) == invalid);
    BOOST_TEST(bad(JobOptions().with_id("42")) == invalid);
    BOOST_TEST(bad(JobOptions().with_attempts(0)) == invalid);
    BOOST_TEST(bad(JobOptions().with_priority(-1)) == invalid);
    BOOST_TEST(bad(JobOptions().with_priority(JobOptions::max_priority + 1)) == invalid);
    BOOST_TEST(bad(JobOptions().with_delay(-1ms)) == invalid);
    BOOST_TEST(bad(JobOptions().with_attempts(2, Backoff::fixed(-1ms))) == invalid);
    BOOST_TEST(bad(JobOptions().with_attempts(2, Backoff::fixed(1ms, 1.5))) == invalid);
    BOOST_TEST(bad(JobOptions().with_remove_on_complete(KeepJobs::last(-1))) == invalid);
    BOOST_TEST(bad(JobOptions().with_timeout(-1ms)) == invalid);
    BOOST_TEST(bad(JobOptions().with_dead_letter().with_remove_on_fail(true)) == invalid);
    BOOST_TEST(JobOptions().with_id("42").problem().find("digits") != std::string::npos);
    BOOST_TEST(JobOptions().with_dead_letter().with_remove_on_fail(KeepJobs::last(3)).problem()
                   .find("dead_letter and remove_on_fail") != std::string::npos);
    std::vector<NewJob> jobs;
    jobs.push_back(t.q.make_job("good", Mail{}));
    jobs.push_back(t.q.make_job("bad", Mail{}, JobOptions().with_attempts(0)));
    BOOST_TEST(t.err(t.q.async_add_bulk(std::move(jobs))) == invalid);
    BOOST_TEST(t.err(t.q.async_get_jobs(JobState::waiting, -1, 10)) == invalid);
    BOOST_TEST(t.err(t.q.async_get_jobs(JobState::waiting, 0, 0)) == invalid);
    BOOST_TEST(t.err(t.q.async_get_jobs(JobState::unknown, 0, 10)) == invalid);
    BOOST_TEST(t.err(t.q.async_clean(0ms, 10, JobState::waiting)) == invalid);
    BOOST_TEST(t.err(t.q.async_clean(-1ms, 10, JobState::completed)) == invalid);
    BOOST_TEST(t.err(t.q.async_get_job("")) == invalid);
    BOOST_TEST(t.err(t.q.async_remove("")) == invalid);
    BOOST_TEST(t.err(t.q.async_retry_jobs(0)) == invalid);
    BOOST_TEST(t.err(t.q.async_retry_dead("")) == invalid);
    BOOST_TEST((t.counts() == JobCounts{}));
    auto const [ec, n] = t.f.exec(cmd::hlen{t.q.key("jobs")});
    BOOST_TEST(!ec);
    BOOST_TEST(n == 0);
    BOOST_CHECK_THROW(JobQueue<B>(t.f.backend, "a{b}"), Exception);
    BOOST_CHECK_THROW(JobQueue<B>(t.f.backend, ""), Exception);
    WorkerOptions wo;
    wo.concurrency = 0;
    BOOST_CHECK_THROW(Worker<B>(t.q, [](ActiveJob&) {}, wo), Exception);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(keys_share_one_hash_tag, B, AllBackends) {
  Q<B> t(Mode::native, "auto-approval");
  BOOST_TEST(t.q.tag() == "{queue:auto-approval}");
  for (auto k : t.q.keys()) BOOST_TEST(k.substr(0, t.q.tag().size()) == t.q.tag());
  BOOST_TEST(t.q.key("wait") == "{queue:auto-approval}:wait");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(jobs_run_in_priority_lifo_and_delay_order, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    t.add("a", 0);
    t.add("p5", 0, JobOptions().with_priority(5));
    t.add("p1", 0, JobOptions().with_priority(1));
    t.add("b", 0);
    t.add("p1b", 0, JobOptions().with_priority(1));
    t.add("lifo", 0, JobOptions().with_lifo());
    // Long enough that the six others run first even on a loaded machine (300 ms was not,
    // with two sanitizer builds' tests side by side).
    constexpr auto delay = 1500ms;
    t.add("later", 0, JobOptions().with_delay(delay));
    auto const page = t.ok(t.q.async_get_jobs(JobState::waiting, 0, 10));
    BOOST_REQUIRE(page.jobs.size() == 3u);
    BOOST_TEST(page.jobs[0].name == "lifo");
    BOOST_TEST(page.jobs[2].name == "b");
    BOOST_TEST(page.next_cursor == 0);
    std::vector<std::string> order;
    Worker<B> w(t.q, [&](ActiveJob& j) { order.push_back(j.name); }, quiet(1));
    w.start();
    t.until([&] { return order.size() == 6; });
    std::vector<std::string> const want = {"lifo", "a", "b", "p1", "p1b", "p5"};
    BOOST_TEST(order == want, boost::test_tools::per_element());
    BOOST_TEST(t.counts().delayed == 1);
    t.run_for(30ms);  // idle: its blocking wait started
    t.f.advance(delay);
    t.until([&] { return order.size() == 7; });
    BOOST_TEST(order.back() == "later");
    t.close(w);
    BOOST_TEST(t.counts().completed == 7);
  });
}

// Job logs: a handler's lines, oldest first, the last 100, each one line of at most 1000 bytes;
// a run that lost its lock writes nothing; removing the job removes them.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_handler_s_log_lines_are_kept_in_order_and_bounded, B,
                              AllBackends) {
  Q<B> t(Mode::native);
  t.add("chatty", 0);
  t.add("quiet", 0);
  Worker<B> w(t.q,
              [&](ActiveJob& j) {
                if (j.name != "chatty") return;
                for (int i = 1; i <= 105; ++i) j.log("step " + std::to_string(i));
                j.log("multi\nline\twith tab " + std::string(1200, 'x'));
              },
              quiet());
  w.start();
  t.until([&] { return w.stats().completed == 2; });
  t.close(w);
  auto const logs = t.ok(t.q.async_get_job_logs("1"));
  BOOST_TEST_REQUIRE(logs.size() == 100u);
  BOOST_TEST(logs.front() == "step 7");
  BOOST_TEST(logs[98] == "step 105");
  BOOST_TEST(logs.back() == ("multi line with tab " + std::string(1200, 'x')).substr(0, 1000));
  BOOST_TEST(t.ok(t.q.async_get_job_logs("2")).empty());
  BOOST_TEST(t.ok(t.q.async_get_job_logs("nope")).empty());
  BOOST_TEST(t.err(t.q.async_get_job_logs("")) == invalid);
  // The log op checks the lock token, as progress does.
  std::array<std::string_view, 4> const stale = {"log", "1", "not-the-token", "late"};
  BOOST_TEST(t.f.ok(detail::jobq::admin_script(t.q.keys(), stale)) == 0);
  BOOST_TEST(t.ok(t.q.async_get_job_logs("1")).size() == 100u);
  BOOST_TEST(t.ok(t.q.async_remove("1")));
  BOOST_TEST(t.ok(t.q.async_get_job_logs("1")).empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_handler_gets_data_attempts_and_stores_progress_and_result, B,
                              AllBackends) {
  Q<B> t(Mode::native);
  t.add("job", 5);
  std::optional<std::int64_t> started;
  auto handler = [&](ActiveJob& j, error_code& ec) {
    started = j.attempts_started;
    if (j.data<Mail>().n != 5) ec = make_error_code(Error::decode_failed);
    j.update_progress("50");
    j.return_value = "done:" + j.id;
  };
  Worker<B> w(t.q, handler, quiet());
  w.start();
  t.until([&] { return w.stats().completed == 1; });
  t.close(w);
  BOOST_TEST((started == std::optional<std::int64_t>(1)));
  auto const j = t.job("1");
  BOOST_REQUIRE(j.has_value());
  BOOST_TEST((j->state == JobState::completed));
  BOOST_TEST(j->return_value == "done:1");
  BOOST_TEST(j->progress == "50");
  BOOST_TEST(j->finished_on >= j->processed_on);
  BOOST_TEST(j->processed_on >= j->timestamp);
  BOOST_TEST(t.counts().completed == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(failed_runs_retry_on_the_backoff_schedule, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    constexpr bool manual = BackendFixture<B>::is_fake;
    // On the manual clock the schedule is exact; elsewhere it is short and real.
    auto const base = manual ? 1000ms : 40ms;
    t.add("flaky", 0, JobOptions().with_attempts(3, Backoff::exponential(base)));
    std::vector<std::int64_t> runs;  // attempts_made seen by each run
    Worker<B> w(t.q,
                [&](ActiveJob& j) {
                  runs.push_back(j.attempts_made);
                  throw std::runtime_error("smtp down " + std::to_string(runs.size()));
                },
                quiet());
    w.start();
    t.until([&] { return runs.size() == 1 && w.stats().retried == 1; });
    auto j = t.job("1");
    BOOST_TEST((j->state == JobState::delayed || j->state == JobState::active ||
                j->state == JobState::waiting));
    if constexpr (manual) {
      BOOST_TEST((j->state == JobState::delayed));
      BOOST_TEST(j->attempts_made == 1);
      BOOST_TEST(j->failed_reason == "smtp down 1");
      // Due exactly 1000 ms after the failure (server time: the manual clock).
      auto const due = t.f.ok(cmd::zscore{t.q.key("delayed"), "1"});
      auto const tm = t.f.ok(cmd::time{});
      std::int64_t const now = tm.first * 1000 + tm.second / 1000;  // the manual clock
      BOOST_REQUIRE(due.has_value());
      BOOST_TEST(*due == double(now + 1000));
      t.run_for(50ms);  // the worker is idle (its blocking wait starts on the manual clock)
      t.f.advance(999ms);
      t.run_for(50ms);
      BOOST_TEST(runs.size() == 1u);
      t.f.advance(1ms);
      t.until([&] { return runs.size() == 2 && w.stats().retried == 2; });
      auto const due2 = t.f.ok(cmd::zscore{t.q.key("delayed"), "1"});
      BOOST_REQUIRE(due2.has_value());
      BOOST_TEST(*due2 == double(now + 1000 + 2000));  // exponential: 2 x 1000
      t.run_for(50ms);
      t.f.advance(1999ms);
      t.run_for(50ms);
      BOOST_TEST(runs.size() == 2u);
      t.f.advance(1ms);
    }
    t.until([&] { return w.stats().failed == 1; });
    t.close(w);
    std::vector<std::int64_t> const want = {0, 1, 2};
    BOOST_TEST(runs == want, boost::test_tools::per_element());
    j = t.job("1");
    BOOST_TEST((j->state == JobState::failed));
    BOOST_TEST(j->attempts_made == 3);
    BOOST_TEST(j->attempts_started == 3);
    BOOST_TEST(j->failed_reason == "smtp down 3");
    // Each failed run is in the history, oldest first, at server time.
    BOOST_TEST_REQUIRE(j->history.size() == 3u);
    for (std::size_t i = 0; i < 3; ++i) {
      BOOST_TEST(j->history[i].run == std::int64_t(i + 1));
      BOOST_TEST(j->history[i].error == "smtp down " + std::to_string(i + 1));
      BOOST_TEST(j->history[i].at >= j->timestamp);
      if (i > 0) BOOST_TEST(j->history[i].at >= j->history[i - 1].at);
    }
    BOOST_TEST(j->history[2].at == j->finished_on);
    auto const c = t.counts();
    BOOST_TEST(c.failed == 1);
    BOOST_TEST(c.delayed + c.waiting + c.active == 0);
    // Failed -> waiting again, attempts reset, the history kept.
    BOOST_TEST(t.ok(t.q.async_retry_jobs()) == 1);
    j = t.job("1");
    BOOST_TEST((j->state == JobState::waiting));
    BOOST_TEST(j->attempts_made == 0);
    BOOST_TEST(j->history.size() == 3u);
  });
}

BOOST_AUTO_TEST_CASE(backoff_delays) {
  BOOST_TEST(Backoff::fixed(100ms).delay_for(3).count() == 100);
  BOOST_TEST(Backoff::exponential(100ms).delay_for(1).count() == 100);
  BOOST_TEST(Backoff::exponential(100ms).delay_for(4).count() == 800);
  BOOST_TEST(Backoff::exponential(100ms, 0.5).delay_for(1, 0.0).count() == 100);
  BOOST_TEST(Backoff::exponential(100ms, 0.5).delay_for(1, 0.999).count() == 50);
  BOOST_TEST(Backoff().delay_for(5).count() == 0);
  BOOST_TEST(Backoff::exponential(1000ms).delay_for(1000).count() > 0);  // no overflow
}

BOOST_AUTO_TEST_CASE_TEMPLATE(remove_on_complete_and_on_fail_keep_what_they_say, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    for (int i = 0; i < 4; ++i) t.add("keep2", i, JobOptions().with_remove_on_complete(KeepJobs::last(2)));
    t.add("gone", 9, JobOptions().with_remove_on_complete(true));
    t.add("fails-removed", 0, JobOptions().with_remove_on_fail(true));
    t.add("fails-kept", 0);
    Worker<B> w(t.q,
                [](ActiveJob& j) {
                  if (j.name.rfind("fails", 0) == 0) throw std::runtime_error("no");
                },
                quiet(1));
    w.start();
    t.until([&] { return w.stats().completed == 5 && w.stats().failed == 2; });
    t.close(w);
    auto const c = t.counts();
    BOOST_TEST(c.completed == 2);
    BOOST_TEST(c.failed == 1);
    BOOST_TEST(!t.job("1").has_value());  // pruned: the oldest two of the four
    BOOST_TEST(!t.job("2").has_value());
    BOOST_TEST(t.job("3").has_value());
    BOOST_TEST(t.job("4").has_value());
    BOOST_TEST(!t.job("5").has_value());  // removed as it completed
    BOOST_TEST(!t.job("6").has_value());  // removed as it failed
    BOOST_TEST((t.job("7")->state == JobState::failed));
    auto const [ec, n] = t.f.exec(cmd::hlen{t.q.key("jobs")});
    BOOST_TEST(!ec);
    // 3 jobs left, 13 fields each (no token, priority, progress; r or e), and the failed one's
    // history.
    BOOST_TEST(n == 3 * 13 + 1);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(remove_by_age_prunes_old_finished_jobs, B, rediskit::test::InProcessBackends) {
  Q<B> t(Mode::native);
  auto const keep = KeepJobs::younger_than(100ms);
  t.add("old", 0, JobOptions().with_remove_on_complete(keep));
  Worker<B> w(t.q, [](ActiveJob&) {}, quiet());
  w.start();
  t.until([&] { return w.stats().completed == 1; });
  t.f.advance(150ms);
  t.add("new", 0, JobOptions().with_remove_on_complete(keep));
  t.until([&] { return w.stats().completed == 2; });
  t.close(w);
  BOOST_TEST(!t.job("1").has_value());
  BOOST_TEST(t.job("2").has_value());
  BOOST_TEST(t.counts().completed == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(pause_stops_fetching_and_resume_wakes_workers, B, AllBackends) {
  Q<B> t(Mode::native);
  t.ok(t.q.async_pause());
  BOOST_TEST(t.ok(t.q.async_is_paused()));
  t.add("a", 1);
  t.add("b", 2);
  auto c = t.counts();
  BOOST_TEST(c.paused == 2);
  BOOST_TEST(c.waiting == 0);
  int done = 0;
  WorkerOptions o = quiet(2);
  o.idle_wait = 5s;  // a wake by its timeout would take that long: far from a loaded machine's
  Worker<B> w(t.q, [&](ActiveJob&) { ++done; }, o);
  w.start();
  t.run_for(100ms);
  BOOST_TEST(done == 0);
  auto const t0 = std::chrono::steady_clock::now();
  t.ok(t.q.async_resume());
  t.until([&] { return done == 2; });
  // Woken by the marker, not by idle_wait's timeout.
  BOOST_TEST((std::chrono::steady_clock::now() - t0 < 2s));
  t.close(w);
  c = t.counts();
  BOOST_TEST(c.completed == 2);
  BOOST_TEST(c.paused == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(an_idle_worker_is_woken_when_a_job_arrives, B, AllBackends) {
  Q<B> t(Mode::native);
  int done = 0;
  WorkerOptions o = quiet();
  o.idle_wait = 5s;
  Worker<B> w(t.q, [&](ActiveJob&) { ++done; }, o);
  w.start();
  t.run_for(50ms);  // the worker is idle, waiting for a marker
  auto const t0 = std::chrono::steady_clock::now();
  t.add("a", 1);
  t.until([&] { return done == 1; });
  BOOST_TEST((std::chrono::steady_clock::now() - t0 < 1s));
  t.close(w);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_worker_that_lost_its_lock_cannot_complete_the_job, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    t.add("slow", 0);
    Gate gate(t.f.ioc.get_executor());
    int runs = 0;
    bool first_saw_cancel = false;
    Worker<B> w(t.q,
                [&](ActiveJob& j) -> asio::awaitable<void> {
                  int const run = ++runs;
                  if (run == 1) {
                    co_await gate.wait();
                    first_saw_cancel = j.cancelled();
                    j.return_value = "late";
                  } else {
                    j.return_value = "second";
                  }
                },
                quiet(2));
    w.start();
    t.until([&] { return runs == 1; });
    BOOST_TEST(t.counts().active == 1);
    // The worker hangs past its lock; the stalled check hands the job on.
    t.expire_lock("1");
    auto const moved = t.ok(t.q.async_check_stalled(1));
    BOOST_REQUIRE(moved.size() == 1u);
    BOOST_TEST(moved[0].first == "1");
    BOOST_TEST((moved[0].second == JobState::waiting));
    t.until([&] { return runs == 2 && w.stats().completed == 1; });
    gate.open();  // the first run ends late
    t.until([&] { return w.stats().lost_locks == 1; });
    t.close(w);
    BOOST_TEST(!first_saw_cancel);
    auto const j = t.job("1");
    BOOST_TEST((j->state == JobState::completed));
    BOOST_TEST(j->return_value == "second");
    BOOST_TEST(j->stalled_count == 1);
    BOOST_TEST(j->attempts_started == 2);
    BOOST_TEST(w.stats().completed == 1);
    BOOST_TEST(t.counts().completed == 1);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(renewal_finds_a_lost_lock_and_cancels_the_handler, B, AllBackends) {
  Q<B> t(Mode::native);
  t.add("slow", 0);
  Gate gate(t.f.ioc.get_executor());
  bool cancelled = false;
  WorkerOptions o = quiet();
  o.lock_duration = 200ms;  // renewed every 100 ms
  Worker<B> w(t.q,
              [&](ActiveJob& j) -> asio::awaitable<void> {
                co_await gate.wait();  // cancelled by the worker when the lock is lost
                cancelled = j.cancelled();
              },
              o);
  w.start();
  t.until([&] { return w.active_count() == 1; });
  // Another token took the job (as after a stalled check and a refetch).
  std::string const jobs = t.q.key("jobs");
  t.f.ok(cmd::hset{jobs, FieldValue{"1:k", "someone-else"}});
  t.until([&] { return w.stats().lost_locks == 1; });
  BOOST_TEST(cancelled);
  BOOST_TEST(!gate.opened);
  t.close(w);
  BOOST_TEST((t.job("1")->state == JobState::active));  // still the other worker's
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stalled_jobs_go_back_to_waiting_then_to_failed, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    t.add("crashy", 0);
    // A worker that fetches and dies: the fetch script by hand.
    auto fetch = [&] {
      std::array<std::string_view, 5> const a = {"dead", "1000", "1", "0", "1000"};
      auto const r = t.f.ok(detail::jobq::fetch_script(t.q.keys(), a));
      BOOST_REQUIRE(r.size() == 12u);
      BOOST_TEST(r[0] == "ok");
      BOOST_TEST(r[2] == "1");
    };
    fetch();
    BOOST_TEST(t.counts().active == 1);
    BOOST_TEST(t.ok(t.q.async_check_stalled(1)).empty());  // the lock is alive
    t.expire_lock("1");
    auto moved = t.ok(t.q.async_check_stalled(1));
    BOOST_REQUIRE(moved.size() == 1u);
    BOOST_TEST((moved[0].second == JobState::waiting));
    BOOST_TEST(t.counts().waiting == 1);
    BOOST_TEST(t.job("1")->stalled_count == 1);
    fetch();
    t.expire_lock("1");
    moved = t.ok(t.q.async_check_stalled(1));
    BOOST_REQUIRE(moved.size() == 1u);
    BOOST_TEST((moved[0].second == JobState::failed));
    auto const j = t.job("1");
    BOOST_TEST((j->state == JobState::failed));
    BOOST_TEST(j->failed_reason == "job stalled more than max_stalled_count");
    BOOST_TEST_REQUIRE(j->history.size() == 2u);  // both stalls
    BOOST_TEST(j->history[0].run == 1);
    BOOST_TEST(j->history[1].run == 2);
    BOOST_TEST(j->history[1].error == "stalled: the worker's lock expired");
    auto const c = t.counts();
    BOOST_TEST(c.failed == 1);
    BOOST_TEST(c.active == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_stalled_job_is_recovered_by_a_running_worker, B, AllBackends) {
  Q<B> t(Mode::native);
  t.add("crashy", 0);
  std::array<std::string_view, 5> const a = {"dead", "1000", "1", "0", "1000"};
  (void)t.f.ok(detail::jobq::fetch_script(t.q.keys(), a));
  t.expire_lock("1");
  WorkerOptions o = quiet();
  o.stalled_interval = 50ms;
  int done = 0;
  Worker<B> w(t.q, [&](ActiveJob&) { ++done; }, o);
  w.start();
  t.until([&] { return done == 1 && w.stats().completed == 1; });
  BOOST_TEST(w.stats().stalled == 1);
  t.close(w);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_run_past_its_timeout_fails_and_its_result_is_discarded, B, AllBackends) {
  Q<B> t(Mode::native);
  t.add("hangs", 0, JobOptions().with_timeout(50ms));
  Gate gate(t.f.ioc.get_executor());
  bool saw_cancel = false;
  Worker<B> w(t.q,
              [&](ActiveJob& j) -> asio::awaitable<void> {
                co_await gate.wait();  // ends early: the timeout cancels it
                saw_cancel = j.cancelled();
                j.return_value = "too late";
              },
              quiet());
  w.start();
  t.until([&] { return w.stats().failed == 1; });
  t.close(w);
  BOOST_TEST(saw_cancel);
  BOOST_TEST(w.stats().timed_out == 1);
  auto const j = t.job("1");
  BOOST_TEST((j->state == JobState::failed));
  BOOST_TEST(j->failed_reason == "timeout");
  BOOST_TEST(j->return_value.empty());
}

// The history is bounded: the last 32 runs, each error cut to 500 bytes on one line. The
// same bytes on every backend (the scripts and their twins).
BOOST_AUTO_TEST_CASE_TEMPLATE(the_history_keeps_the_last_32_failed_runs_on_one_line_each, B,
                              AllBackends) {
  Q<B> t(Mode::native);
  t.add("doomed", 0, JobOptions().with_attempts(40, Backoff::fixed(0ms)));
  int runs = 0;
  Worker<B> w(t.q,
              [&](ActiveJob&) {
                ++runs;
                throw std::runtime_error("run " + std::to_string(runs) + "\tline\nnext " +
                                         std::string(600, 'x'));
              },
              quiet());
  w.start();
  t.until([&] { return w.stats().failed == 1; });
  t.close(w);
  BOOST_TEST(runs == 40);
  auto const j = t.job("1");
  BOOST_TEST_REQUIRE(j->history.size() == 32u);
  BOOST_TEST(j->history.front().run == 9);
  BOOST_TEST(j->history.back().run == 40);
  std::string const want = ("run 40 line next " + std::string(600, 'x')).substr(0, 500);
  BOOST_TEST(j->history.back().error == want);
  auto const raw = t.f.ok(cmd::hget{t.q.key("jobs"), "1:h"});
  BOOST_REQUIRE(raw.has_value());
  BOOST_TEST(std::count(raw->begin(), raw->end(), '\n') == 32);
  // Removing the job removes its history.
  BOOST_TEST(t.ok(t.q.async_remove("1")));
  BOOST_TEST(!t.f.ok(cmd::hget{t.q.key("jobs"), "1:h"}).has_value());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(close_lets_jobs_finish_then_hands_the_rest_back, B, AllBackends) {
  Q<B> t(Mode::native);
  t.add("quick", 0);
  t.add("stuck", 0);
  Gate gate(t.f.ioc.get_executor());
  Gate quick(t.f.ioc.get_executor());
  Worker<B> w(t.q,
              [&](ActiveJob& j) -> asio::awaitable<void> {
                if (j.name == "stuck") co_await gate.wait();
                else co_await quick.wait();
              },
              quiet(2));
  w.start();
  t.until([&] { return w.active_count() == 2; });
  std::optional<error_code> closed;
  // 1 s: "quick" finishes well within it even at twice CI's load (150 ms did not, once).
  w.async_close(1s, [&](error_code ec) { closed = ec; });
  t.run_for(20ms);
  quick.open();  // finishes within the timeout
  t.until([&] { return closed.has_value(); });
  BOOST_TEST(!*closed);
  BOOST_TEST(w.stats().completed == 1);
  BOOST_TEST(w.stats().handed_back == 1);
  auto const c = t.counts();
  BOOST_TEST(c.completed == 1);
  BOOST_TEST(c.waiting == 1);
  BOOST_TEST(c.active == 0);
  auto const j = t.job("2");
  BOOST_TEST((j->state == JobState::waiting));
  BOOST_TEST(j->attempts_started == 0);  // a handed-back run does not count
  // Closed: a new job is not taken.
  t.add("after", 0);
  t.run_for(50ms);
  BOOST_TEST(t.counts().waiting == 2);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_fetch_loop_survives_backend_errors, B, rediskit::test::InProcessBackends) {
  Q<B> t(Mode::native);
  int done = 0;
  WorkerOptions o = quiet();
  std::vector<std::string> logged;
  o.log = [&](std::string_view l) { logged.emplace_back(l); };
  Worker<B> w(t.q, [&](ActiveJob&) { ++done; }, o);
  if constexpr (BackendFixture<B>::is_fake) {
    t.f.backend.drop_connection();
    w.start();
    t.run_for(60ms);
    BOOST_TEST(w.stats().errors >= 2);
    t.f.backend.restore_connection();
    t.add("a", 1);
    t.until([&] { return done == 1; });
    BOOST_TEST(!logged.empty());
    t.f.backend.fail_next(2, Error::connection_lost);
    t.run_for(30ms);
    t.add("b", 2);
    t.until([&] { return done == 2; });
  } else {
    w.start();
    t.add("a", 1);
    t.until([&] { return done == 1; });
  }
  t.close(w);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_rate_limit_holds_across_workers, B, AllBackends) {
  if constexpr (BackendFixture<B>::is_fake) return;  // the window follows the server's clock
  Q<B> t(Mode::native);
  std::vector<std::string> ran;  // the jobs' ids, as their handlers ran
  WorkerOptions o = quiet(5);
  o.limiter.max = 4;
  o.limiter.duration = 200ms;
  Worker<B> w1(t.q, [&](ActiveJob& j) { ran.push_back(j.id); }, o);
  Worker<B> w2(t.q, [&](ActiveJob& j) { ran.push_back(j.id); }, o);
  std::vector<NewJob> jobs;
  for (int i = 0; i < 12; ++i) jobs.push_back(t.q.make_job("r", Mail{"x", i}));
  t.ok(t.q.async_add_bulk(std::move(jobs)));
  w1.start();
  w2.start();
  t.until([&] { return ran.size() == 12; });
  t.close(w1);
  t.close(w2);
  // Checked on when each job was taken (processed_on, stamped by the take), not on when its
  // handler ran, which a loaded machine delays (as job_rate_limit_test.cpp, which explains the
  // 2 ms). The fixed windows rebuilt from those times hold at most 4 jobs each, and 12 jobs
  // need three of them: the ninth take is two window lengths after the first, or more.
  std::vector<std::int64_t> taken;
  for (auto const& id : ran) {
    auto const job = t.ok(t.q.async_get_job(id));
    BOOST_REQUIRE(job.has_value());
    taken.push_back(job->processed_on);
  }
  std::sort(taken.begin(), taken.end());
  for (auto const& w : test::fixed_windows(taken, 198))
    BOOST_TEST(w.jobs <= 4u, "the window from " << w.start << " ms holds " << w.jobs << " jobs");
  BOOST_TEST(taken[8] - taken[0] >= 396);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(concurrency_bounds_the_jobs_in_parallel_and_can_change, B, AllBackends) {
  Q<B> t(Mode::native);
  std::vector<NewJob> jobs;
  for (int i = 0; i < 12; ++i) jobs.push_back(t.q.make_job("c", Mail{"x", i}));
  t.ok(t.q.async_add_bulk(std::move(jobs)));
  int running = 0, most = 0, done = 0;
  Worker<B> w(t.q,
              [&](ActiveJob&) -> asio::awaitable<void> {
                most = std::max(most, ++running);
                asio::steady_timer work(co_await asio::this_coro::executor, 20ms);
                (void)co_await work.async_wait(asio::as_tuple(asio::use_awaitable));
                --running;
                ++done;
              },
              quiet(3));
  w.start();
  t.until([&] { return done == 6; });
  BOOST_TEST(most == 3);
  w.set_concurrency(1);
  t.until([&] { return running == 0; });
  most = 0;
  t.until([&] { return done == 12; });
  BOOST_TEST(most == 1);
  BOOST_CHECK_THROW(w.set_concurrency(0), Exception);
  t.close(w);
  BOOST_TEST(t.counts().completed == 12);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_custom_backoff_asks_the_worker_strategy, B,
                              rediskit::test::InProcessBackends) {
  Q<B> t(Mode::native);
  t.add("custom", 0, JobOptions().with_attempts(2, Backoff::custom(5000ms)));
  WorkerOptions o = quiet();
  std::vector<std::int64_t> asked;
  o.backoff_strategy = [&](std::int64_t failures, Job const& j, std::string_view err) {
    asked.push_back(failures);
    BOOST_TEST(j.name == "custom");
    BOOST_TEST(err == "boom");
    return std::chrono::milliseconds(0);  // retry at once
  };
  int runs = 0;
  Worker<B> w(t.q,
              [&](ActiveJob&) {
                if (++runs == 1) throw std::runtime_error("boom");
              },
              o);
  w.start();
  t.until([&] { return w.stats().completed == 1; });
  t.close(w);
  BOOST_TEST(runs == 2);
  BOOST_TEST(asked == std::vector<std::int64_t>{1}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(per_minute_metrics_and_prometheus_text, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    t.add("ok", 0);
    t.add("ok", 0);
    t.add("bad", 0);
    Worker<B> w(t.q,
                [](ActiveJob& j) {
                  if (j.name == "bad") throw std::runtime_error("no");
                },
                quiet());
    w.start();
    t.until([&] { return w.stats().completed == 2 && w.stats().failed == 1; });
    auto sum = [](std::vector<std::int64_t> const& v) {
      std::int64_t n = 0;
      for (auto x : v) n += x;
      return n;
    };
    auto done = t.ok(t.q.async_get_metrics(JobState::completed, 3));
    BOOST_REQUIRE(done.size() == 3u);
    BOOST_TEST(sum(done) == 2);  // within two minutes, whatever the boundary
    BOOST_TEST(sum(t.ok(t.q.async_get_metrics(JobState::failed, 3))) == 1);
    if constexpr (BackendFixture<B>::is_fake) {
      BOOST_TEST(done[0] == 2);  // the manual clock stands still
      t.run_for(30ms);
      t.f.advance(60s);
      t.add("ok", 0);
      t.until([&] { return w.stats().completed == 3; });
      done = t.ok(t.q.async_get_metrics(JobState::completed, 3));
      BOOST_TEST(done[0] == 1);
      BOOST_TEST(done[1] == 2);
      BOOST_TEST(done[2] == 0);
    }
    t.close(w);
    auto const text = t.ok(t.q.async_get_prometheus_text());
    std::int64_t const completed = BackendFixture<B>::is_fake ? 3 : 2;
    BOOST_TEST(text.find("rediskit_job_queue_jobs{queue=\"email\",state=\"completed\"} " +
                         std::to_string(completed) + "\n") != std::string::npos, text);
    BOOST_TEST(text.find("rediskit_job_queue_finished{queue=\"email\",result=\"failed\",window=\"15m\"} 1\n") !=
                   std::string::npos, text);
    BOOST_TEST(t.err(t.q.async_get_metrics(JobState::waiting, 3)) == invalid);
    BOOST_TEST(t.err(t.q.async_get_metrics(JobState::failed, 0)) == invalid);
    BOOST_TEST(t.err(t.q.async_get_metrics(JobState::failed, 1441)) == invalid);
  });
}

// Dead letters: out of attempts, a job added with dead_letter goes to the dead set with its
// last error and its history, and stays there (remove_on_fail does not apply) until
// async_retry_dead sends it back; it counts as failed in the metrics.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_dead_letter_is_kept_until_retried, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    t.add("doomed", 0, JobOptions().with_attempts(2, Backoff::fixed(0ms)).with_dead_letter());
    t.add("plain", 1, JobOptions().with_remove_on_fail(true));
    bool heal = false;
    Worker<B> w(t.q,
                [&](ActiveJob& j) {
                  if (!heal) throw std::runtime_error("broken " + j.name);
                },
                quiet());
    w.start();
    t.until([&] { return w.stats().failed == 2; });
    auto c = t.counts();
    BOOST_TEST(c.dead == 1);
    BOOST_TEST(c.failed == 0);  // the plain one was removed as it failed
    BOOST_TEST(!t.job("2").has_value());
    auto j = t.job("1");
    BOOST_TEST_REQUIRE(j.has_value());
    BOOST_TEST((j->state == JobState::dead));
    BOOST_TEST(j->options.dead_letter);
    BOOST_TEST(j->failed_reason == "broken doomed");
    BOOST_TEST(j->finished_on > 0);
    BOOST_TEST(j->history.size() == 2u);
    auto const page = t.ok(t.q.async_get_jobs(JobState::dead, 0, 10));
    BOOST_TEST_REQUIRE(page.jobs.size() == 1u);
    BOOST_TEST(page.jobs[0].id == "1");
    BOOST_TEST(sum_of(t.ok(t.q.async_get_metrics(JobState::failed, 3))) == 2);
    auto const text = t.ok(t.q.async_get_prometheus_text());
    BOOST_TEST(text.find("rediskit_job_queue_jobs{queue=\"email\",state=\"dead\"} 1\n") !=
                   std::string::npos, text);
    BOOST_TEST(!t.ok(t.q.async_retry_dead("2")));  // not a dead letter
    heal = true;
    BOOST_TEST(t.ok(t.q.async_retry_dead("1")));
    t.until([&] { return w.stats().completed == 1; });
    t.close(w);
    j = t.job("1");
    BOOST_TEST((j->state == JobState::completed));
    BOOST_TEST(j->attempts_made == 0);
    BOOST_TEST(j->failed_reason.empty());
    BOOST_TEST(j->history.size() == 2u);  // kept across the retry
    c = t.counts();
    BOOST_TEST(c.dead == 0);
    BOOST_TEST(c.completed == 1);
    BOOST_TEST(!t.ok(t.q.async_retry_dead("1")));
  });
}

// JobQueueOptions::dead_letter: the queue's jobs are dead letters, but for those that say what
// remove_on_fail does.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_queue_can_dead_letter_all_its_jobs, B, AllBackends) {
  Q<B> t(Mode::native);
  JobQueueOptions qo;
  qo.dead_letter = true;
  JobQueue<B> q(t.f.backend, "email", qo);
  Mail const m{"a@b.c", 1};
  auto const plain = t.ok(q.async_add("plain", m));
  JobOptions const removed_opts = JobOptions().with_remove_on_fail(true);
  auto const removed = t.ok(q.async_add("removed", m, removed_opts));
  Worker<B> w(q, [](ActiveJob&) { throw std::runtime_error("no"); }, quiet());
  w.start();
  t.until([&] { return w.stats().failed == 2; });
  t.close(w);
  auto const j = t.job(plain.id);
  BOOST_TEST_REQUIRE(j.has_value());
  BOOST_TEST((j->state == JobState::dead));
  BOOST_TEST(j->options.dead_letter);
  BOOST_TEST(!t.job(removed.id).has_value());
  BOOST_TEST(t.counts().dead == 1);
  BOOST_TEST(t.counts().failed == 0);
}

// A dead letter by stalls; clean and obliterate reach the dead set.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_job_that_stalls_out_is_a_dead_letter_and_clean_removes_it, B,
                              AllBackends) {
  Q<B> t(Mode::native);
  t.add("crashy", 0, JobOptions().with_dead_letter());
  std::array<std::string_view, 5> const a = {"dead-worker", "1000", "1", "0", "1000"};
  for (int i = 0; i < 2; ++i) {
    auto const r = t.f.ok(detail::jobq::fetch_script(t.q.keys(), a));
    BOOST_REQUIRE(r.size() == 12u);
    t.expire_lock("1");
    auto const moved = t.ok(t.q.async_check_stalled(1));
    BOOST_REQUIRE(moved.size() == 1u);
    BOOST_TEST((moved[0].second == (i == 0 ? JobState::waiting : JobState::dead)));
  }
  auto const j = t.job("1");
  BOOST_TEST((j->state == JobState::dead));
  BOOST_TEST(j->failed_reason == "job stalled more than max_stalled_count");
  BOOST_TEST(t.counts().dead == 1);
  BOOST_TEST(t.ok(t.q.async_clean(0ms, 10, JobState::dead)) == 1);
  BOOST_TEST(!t.job("1").has_value());
  BOOST_TEST(t.counts().dead == 0);
  // obliterate deletes the dead set with the rest.
  t.add("again", 0, JobOptions().with_dead_letter());
  auto const r = t.f.ok(detail::jobq::fetch_script(t.q.keys(), a));
  BOOST_REQUIRE(r.size() == 12u);
  for (int i = 0; i < 2; ++i) {
    t.expire_lock(r[2]);
    (void)t.ok(t.q.async_check_stalled(0));
  }
  BOOST_TEST(t.counts().dead == 1);
  t.ok(t.q.async_obliterate(true));
  BOOST_TEST(t.f.ok(cmd::exists{t.q.key("dead")}) == 0);
}

// ---- events ----------------------------------------------------------------------------------

/// The events of job `id` among `events`, as "kind" or "kind:value".
std::vector<std::string> moves_of(std::vector<JobEvent> const& events, std::string const& id) {
  std::vector<std::string> out;
  for (auto const& e : events) {
    if (e.job_id != id) continue;
    std::string m(to_string(e.kind));
    if (e.kind == JobEventKind::completed || e.kind == JobEventKind::failed ||
        e.kind == JobEventKind::retrying || e.kind == JobEventKind::progress)
      m += ":" + e.value;
    if (e.kind == JobEventKind::failed) m += ":" + std::string(to_string(e.state));
    out.push_back(m);
  }
  return out;
}
using Moves = std::vector<std::string>;

BOOST_AUTO_TEST_CASE_TEMPLATE(events_tell_each_move_of_a_job_in_order, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    QueueEventsOptions eo;
    eo.from = "0";
    eo.block = 0ms;
    QueueEvents<B> events(t.q, eo);
    auto const a = t.add("flaky", 1, JobOptions().with_attempts(2));
    t.add("doomed", 2);
    t.add("dead", 3, JobOptions().with_dead_letter());
    Worker<B> w(t.q,
                [&](ActiveJob& j) {
                  if (j.name != "flaky" || j.attempts_started == 1)
                    throw std::runtime_error("no " + j.name);
                  j.update_progress("50");
                  j.return_value = "ok";
                },
                quiet());
    w.start();
    t.until([&] { return w.stats().completed == 1 && w.stats().failed == 2; });
    t.close(w);
    auto const later = t.add("later", 4, JobOptions().with_delay(60s));
    BOOST_TEST(t.ok(t.q.async_remove(later.id)));
    t.ok(t.q.async_pause());
    t.ok(t.q.async_resume());
    BOOST_TEST(t.ok(t.q.async_clean(0ms, 10, JobState::failed)) == 1);

    auto const got = t.ok(events.async_read());
    BOOST_TEST((moves_of(got, a.id) == Moves{"waiting", "active", "retrying:no flaky", "waiting",
                                              "active", "progress:50", "completed:ok"}));
    BOOST_TEST((moves_of(got, "2") == Moves{"waiting", "active", "failed:no doomed:failed"}));
    BOOST_TEST((moves_of(got, "3") == Moves{"waiting", "active", "failed:no dead:dead"}));
    BOOST_TEST((moves_of(got, later.id) == Moves{"delayed", "removed"}));
    // The add's reply names its first event.
    auto const first = std::find_if(got.begin(), got.end(),
                                    [&](JobEvent const& e) { return e.job_id == a.id; });
    BOOST_TEST_REQUIRE((first != got.end()));
    BOOST_TEST(first->stream_id == a.event_id);
    // The queue's own events: drained once the last ready job was taken, paused, resumed, and
    // clean's count.
    std::vector<std::string> queue_wide;
    for (auto const& e : got)
      if (e.job_id.empty()) queue_wide.push_back(std::string(to_string(e.kind)) + ":" + e.value);
    BOOST_TEST(std::count(queue_wide.begin(), queue_wide.end(), "drained:") >= 1);
    auto const tail = Moves(queue_wide.end() - 3, queue_wide.end());
    BOOST_TEST((tail == Moves{"paused:", "resumed:", "cleaned:1"}));
    // Ids grow; the reader is past the last one.
    for (std::size_t i = 1; i < got.size(); ++i)
      BOOST_TEST((StreamId::parse(got[i - 1].stream_id) < StreamId::parse(got[i].stream_id)));
    BOOST_TEST(events.last_id() == got.back().stream_id);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(events_of_a_delayed_job_and_of_a_stall, B, AllBackends) {
  Q<B> t(Mode::native);
  QueueEventsOptions eo;
  eo.from = "0";
  QueueEvents<B> events(t.q, eo);
  t.add("slow", 1, JobOptions().with_delay(50ms));
  BOOST_TEST(t.ok(t.q.async_promote("1")));
  Gate gate(t.f.ioc.get_executor());
  Worker<B> w(t.q,
              [&](ActiveJob&) -> asio::awaitable<void> {
                if (!gate.opened) co_await gate.wait();
              },
              quiet());
  w.start();
  t.until([&] { return t.counts().active == 1; });
  t.expire_lock("1");
  auto const moved = t.ok(t.q.async_check_stalled(1));
  BOOST_TEST(moved.size() == 1u);
  gate.open();
  t.close(w);
  auto const got = t.ok(events.async_read());
  auto const moves = moves_of(got, "1");
  BOOST_TEST_REQUIRE(moves.size() >= 5u);
  BOOST_TEST((Moves(moves.begin(), moves.begin() + 5) ==
              Moves{"delayed", "waiting", "active", "stalled", "waiting"}));
  // The delayed event's value: when it is due (server time, ms), 50 ms after it was added.
  // (The event's id is the server's clock as it added it, within the same script.)
  auto const due = std::stoll(got.at(0).value);
  auto const at = static_cast<long long>(StreamId::parse(got.at(0).stream_id)->ms);
  BOOST_TEST(due - at <= 50);
  BOOST_TEST(due - at >= 40);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_read_from_now_waits_for_the_next_event, B, AllBackends) {
  Q<B> t(Mode::native);
  t.add("before", 1);
  QueueEventsOptions eo;
  eo.block = 0ms;  // until something comes
  QueueEvents<B> events(t.q, eo);
  BOOST_TEST(events.last_id() == "$");
  std::optional<std::vector<JobEvent>> got;
  events.async_read([&](error_code ec, std::vector<JobEvent> e) {
    BOOST_TEST(!ec);
    got = std::move(e);
  });
  t.run_for(50ms);
  BOOST_TEST(!got.has_value());  // "$": the job added before is not read
  t.add("after", 2);
  t.until([&] { return got.has_value(); });
  BOOST_TEST((moves_of(*got, "2") == Moves{"waiting"}));
  BOOST_TEST(moves_of(*got, "1").empty());
  // A read with nothing new ends after `block`, empty.
  QueueEventsOptions quick;
  quick.from = events.last_id();
  quick.block = 50ms;
  QueueEvents<B> again(t.q, quick);
  std::optional<std::vector<JobEvent>> none;
  again.async_read([&](error_code ec, std::vector<JobEvent> e) {
    BOOST_TEST(!ec);
    none = std::move(e);
  });
  t.run_for(10ms);
  t.f.advance(60ms);
  t.until([&] { return none.has_value(); });
  BOOST_TEST(none->empty());
  BOOST_TEST(again.last_id() == events.last_id());
  // Options out of range.
  QueueEventsOptions bad;
  bad.count = 0;
  BOOST_CHECK_THROW(QueueEvents<B>(t.q, bad), Exception);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_events_stream_is_bounded, B, AllBackends) {
  Q<B> t(Mode::native);
  // 10 500 jobs in 21 adds: one add of them all, then one of 3 500, took over the fixture's
  // 10 s on a machine running 16 sanitizer tests at once.
  for (int part = 0; part < 21; ++part) {
    std::vector<NewJob> jobs;
    for (int i = 0; i < 500; ++i)
      jobs.push_back(t.q.make_job("n", Mail{"a@b.c", part * 500 + i}));
    t.ok(t.q.async_add_bulk(std::move(jobs)));
  }
  auto const len = t.f.ok(cmd::xlen{t.q.key("events")});
  BOOST_TEST(len >= 10'000);
  BOOST_TEST(len <= 10'000 + 100);  // MAXLEN ~: a server keeps up to one node more
}

BOOST_AUTO_TEST_CASE_TEMPLATE(wait_until_finished_reports_how_a_job_ended, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    auto const ok = t.add("ok", 1, JobOptions().with_remove_on_complete(true));
    auto const bad = t.add("bad", 2);
    auto const dead = t.add("dead", 3, JobOptions().with_dead_letter());
    using Wait = std::optional<std::tuple<error_code, std::optional<JobOutcome>>>;
    Wait w_ok, w_bad, w_dead;
    auto capture = [](Wait& w) {
      return [&w](error_code ec, std::optional<JobOutcome> o) { w.emplace(ec, std::move(o)); };
    };
    t.q.async_wait_until_finished(ok.id, 10s, ok.event_id, capture(w_ok));
    t.q.async_wait_until_finished(bad.id, 10s, {}, capture(w_bad));
    t.q.async_wait_until_finished(dead.id, 10s, dead.event_id, capture(w_dead));
    t.run_for(20ms);
    BOOST_TEST((!w_ok && !w_bad && !w_dead));  // nothing ran yet
    // The worker's own hooks say the same, in this process.
    std::vector<std::string> hooks;
    WorkerOptions wo = quiet();
    wo.on_completed = [&](Job const& j) { hooks.push_back("c " + j.id + " " + j.return_value); };
    wo.on_failed = [&](Job const& j, std::string_view e) {
      hooks.push_back("f " + j.id + " " + std::string(e));
    };
    Worker<B> w(t.q,
                [&](ActiveJob& j) {
                  if (j.name != "ok") throw std::runtime_error("no " + j.name);
                  j.return_value = "yes";
                },
                wo);
    w.start();
    t.until([&] { return w_ok && w_bad && w_dead; });
    t.close(w);
    std::sort(hooks.begin(), hooks.end());
    BOOST_TEST((hooks == Moves{"c 1 yes", "f 2 no bad", "f 3 no dead"}));
    BOOST_TEST(!std::get<0>(*w_ok));
    BOOST_TEST((std::get<1>(*w_ok) == JobOutcome{ok.id, JobState::completed, "yes", ""}));
    BOOST_TEST((std::get<1>(*w_bad) == JobOutcome{bad.id, JobState::failed, "", "no bad"}));
    BOOST_TEST((std::get<1>(*w_dead) == JobOutcome{dead.id, JobState::dead, "", "no dead"}));
    // Finished before the wait: from its state, or, removed, from its add's event.
    BOOST_TEST((t.ok(t.q.async_wait_until_finished(bad.id, 1s)) ==
                std::optional(JobOutcome{bad.id, JobState::failed, "", "no bad"})));
    BOOST_TEST((t.ok(t.q.async_wait_until_finished(ok.id, 1s, ok.event_id)) ==
                std::optional(JobOutcome{ok.id, JobState::completed, "yes", ""})));
    BOOST_TEST(!t.ok(t.q.async_wait_until_finished(ok.id, 1s)).has_value());  // gone
    BOOST_TEST(!t.ok(t.q.async_wait_until_finished("nope", 1s)).has_value());
    BOOST_TEST(t.err(t.q.async_wait_until_finished("", 1s)) == invalid);
    BOOST_TEST(t.err(t.q.async_wait_until_finished("1", -1ms)) == invalid);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(wait_until_finished_times_out_and_sees_a_removal, B, AllBackends) {
  Q<B> t(Mode::native);
  auto const a = t.add("never", 1);
  auto const b = t.add("removed", 2);
  std::optional<error_code> timed_out;
  t.q.async_wait_until_finished(a.id, 200ms, a.event_id,
                                [&](error_code ec, std::optional<JobOutcome>) { timed_out = ec; });
  using Wait = std::optional<std::tuple<error_code, std::optional<JobOutcome>>>;
  Wait removed;
  t.q.async_wait_until_finished(b.id, 10s, {}, [&](error_code ec, std::optional<JobOutcome> o) {
    removed.emplace(ec, std::move(o));
  });
  t.run_for(20ms);
  BOOST_TEST(t.ok(t.q.async_remove(b.id)));
  t.until([&] { return removed.has_value(); });
  BOOST_TEST(!std::get<0>(*removed));
  BOOST_TEST(!std::get<1>(*removed).has_value());
  for (int i = 0; i < 50 && !timed_out; ++i) {
    t.run_for(10ms);
    t.f.advance(100ms);
  }
  t.until([&] { return timed_out.has_value(); });
  BOOST_TEST(*timed_out == make_error_code(Error::timeout));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(admin_operations, B, AllBackends) {
  for_each_mode<B>([](Mode mode) {
    Q<B> t(mode);
    for (int i = 0; i < 5; ++i) t.add("w", i);
    t.add("d", 0, JobOptions().with_delay(1h));
    // Paging the wait list, in run order.
    auto p1 = t.ok(t.q.async_get_jobs(JobState::waiting, 0, 2));
    BOOST_REQUIRE(p1.jobs.size() == 2u);
    BOOST_TEST(p1.jobs[0].id == "1");
    BOOST_TEST(p1.jobs[1].id == "2");
    BOOST_TEST(p1.next_cursor == 2);
    auto p2 = t.ok(t.q.async_get_jobs(JobState::waiting, p1.next_cursor, 2));
    BOOST_TEST(p2.jobs[0].id == "3");
    auto p3 = t.ok(t.q.async_get_jobs(JobState::waiting, 4, 2));
    BOOST_TEST(p3.jobs.size() == 1u);
    BOOST_TEST(p3.next_cursor == 0);
    auto d = t.ok(t.q.async_get_jobs(JobState::delayed, 0, 10));
    BOOST_REQUIRE(d.jobs.size() == 1u);
    BOOST_TEST((d.jobs[0].state == JobState::delayed));
    // Promote.
    BOOST_TEST(t.ok(t.q.async_promote("6")));
    BOOST_TEST(!t.ok(t.q.async_promote("6")));
    BOOST_TEST(t.counts().waiting == 6);
    // Remove.
    BOOST_TEST(t.ok(t.q.async_remove("3")));
    BOOST_TEST(!t.ok(t.q.async_remove("3")));
    BOOST_TEST(t.counts().waiting == 5);
    // Process: 1 and 2 complete, the rest fail.
    Worker<B> w(t.q,
                [](ActiveJob& j) {
                  if (j.id != "1" && j.id != "2") throw std::runtime_error("x");
                },
                quiet());
    w.start();
    t.until([&] { return w.stats().completed == 2 && w.stats().failed == 3; });
    t.close(w);
    auto done = t.ok(t.q.async_get_jobs(JobState::completed, 0, 10));
    BOOST_TEST(done.jobs.size() == 2u);
    // Clean: nothing is older than an hour; everything is older than 0 ms.
    BOOST_TEST(t.ok(t.q.async_clean(1h, 100, JobState::completed)) == 0);
    BOOST_TEST(t.ok(t.q.async_clean(0ms, 100, JobState::completed)) == 2);
    BOOST_TEST(t.ok(t.q.async_clean(0ms, 2, JobState::failed)) == 2);
    auto c = t.counts();
    BOOST_TEST(c.completed == 0);
    BOOST_TEST(c.failed == 1);
    // Drain and obliterate.
    t.add("x", 0);
    t.add("y", 0, JobOptions().with_priority(2));
    t.add("z", 0, JobOptions().with_delay(1h));
    BOOST_TEST(t.ok(t.q.async_drain()) == 2);
    c = t.counts();
    BOOST_TEST(c.waiting + c.prioritized == 0);
    BOOST_TEST(c.delayed == 1);
    BOOST_TEST(t.ok(t.q.async_drain(true)) == 1);
    t.ok(t.q.async_obliterate());
    BOOST_TEST((t.counts() == JobCounts{}));
    auto const [ec, n] = t.f.exec(cmd::hlen{t.q.key("jobs")});
    BOOST_TEST(!ec);
    BOOST_TEST(n == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(an_active_job_under_a_live_lock_is_not_removed, B, AllBackends) {
  Q<B> t(Mode::native);
  t.add("a", 0);
  std::array<std::string_view, 5> const a = {"w", "60000", "1", "0", "1000"};
  (void)t.f.ok(detail::jobq::fetch_script(t.q.keys(), a));
  BOOST_TEST(t.err(t.q.async_remove("1")) == invalid);
  BOOST_TEST(t.err(t.q.async_obliterate()) == invalid);
  BOOST_TEST(t.counts().active == 1);
  t.ok(t.q.async_obliterate(true));
  BOOST_TEST((t.counts() == JobCounts{}));
}


// A server that may evict keys may evict jobs: a worker says so once, at start.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_server_that_evicts_keys_is_not_warned_about_when_it_does_not, B,
                              AllBackends) {
  // The test servers and the in-process engines without a memory bound: noeviction.
  jq_test::Q<B> t(Mode::native);
  std::vector<std::string> lines;
  WorkerOptions o = quiet();
  o.log = [&](std::string_view l) { lines.emplace_back(l); };
  Worker<B> w(t.q, [](ActiveJob&) {}, o);
  w.start();
  t.add("job", 1);
  t.until([&] { return w.stats().completed == 1; });
  t.close(w);  // the start-up check is one of the loops close() waits for
  BOOST_TEST(w.eviction_policy().empty());
  for (auto const& l : lines) BOOST_TEST(l.find("maxmemory-policy") == std::string::npos, l);
}

BOOST_AUTO_TEST_CASE(a_worker_warns_when_the_server_may_evict_its_jobs) {
  auto check = [](auto& f, auto& q) {
    std::vector<std::string> lines;
    WorkerOptions o = quiet();
    o.log = [&](std::string_view l) { lines.emplace_back(l); };
    Worker<std::remove_reference_t<decltype(f.backend)>> w(q, [](ActiveJob&) {}, o);
    w.start();
    f.run_until([&] { return !w.eviction_policy().empty(); });
    BOOST_TEST(w.eviction_policy() == "allkeys-lru");
    f.wait(w.async_close(1s));
    BOOST_TEST_REQUIRE(lines.size() == 1u);
    BOOST_TEST(lines[0].find("maxmemory-policy is allkeys-lru") != std::string::npos, lines[0]);
    BOOST_TEST(lines[0].find("noeviction") != std::string::npos, lines[0]);
  };
  {
    rediskit::test::TestRedisServer::Options so;
    so.extra_args = {"--maxmemory-policy", "allkeys-lru"};
    rediskit::test::TestRedisServer srv(so);
    RedisConfig cfg;
    cfg.port = srv.port();
    BackendFixture<RedisBackend> f(std::in_place, cfg);
    JobQueue<RedisBackend> q(f.backend, "evicting");
    check(f, q);
  }
  {
    // MemoryBackend with a memory bound evicts the least recently used keys.
    BackendFixture<MemoryBackend> f(std::in_place, MemoryConfig{.max_memory = 64 << 20});
    JobQueue<MemoryBackend> q(f.backend, "evicting");
    check(f, q);
  }
}

// A restart of the server mid-processing (AOF with fsync always, so Redis keeps what it
// acknowledged): the worker's loops survive the outage, jobs whose finish was lost run again
// after the stalled check, and every job completes: none is lost.
BOOST_AUTO_TEST_CASE(no_job_is_lost_across_a_redis_restart) {
  rediskit::test::TestRedisServer::Options so;
  so.extra_args = {"--appendonly", "yes", "--appendfsync", "always"};
  rediskit::test::TestRedisServer srv(so);
  RedisConfig cfg;
  cfg.port = srv.port();
  // A refused connection fails at once whatever the timeout; 2 s only matter to a loaded
  // machine (CI runs two sanitizer builds' tests side by side), where 500 ms failed the add.
  cfg.connect_timeout = 2s;
  cfg.command_timeout = 2s;
  cfg.health_check_interval = 200ms;
  BackendFixture<RedisBackend> f(std::in_place, cfg);
  JobQueue<RedisBackend> q(f.backend, "restart");
  constexpr int kJobs = 300;
  std::vector<NewJob> jobs;
  for (int i = 0; i < kJobs; ++i) jobs.push_back(q.make_job("r", Mail{"x", i}));
  {
    // Added through a backend with the default health check: the 200 ms one above, there to
    // see the restart at once, took a loaded machine's slow reply for a dead link and dropped
    // the add in flight (16 sanitizer tests at once on 2 cores).
    RedisConfig plain;
    plain.port = srv.port();
    RedisBackend adder(f.ioc, plain);
    JobQueue<RedisBackend> aq(adder, "restart");
    auto [ec, r] = f.wait(aq.async_add_bulk(std::move(jobs)));
    BOOST_REQUIRE_MESSAGE(!ec, "adding the jobs: " << ec.message());
  }
  std::map<std::string, int> runs;
  WorkerOptions o = quiet(5);
  o.lock_duration = 1000ms;
  o.stalled_interval = 200ms;
  o.max_stalled_count = 10;
  Worker<RedisBackend> w(q,
                         [&](ActiveJob& j) -> asio::awaitable<void> {
                           ++runs[j.id];
                           asio::steady_timer t(co_await asio::this_coro::executor, 2ms);
                           (void)co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
                         },
                         o);
  w.start();
  f.run_until([&] { return w.stats().completed >= 50; });
  srv.kill();
  f.run_until([&] { return w.stats().errors > 0; });
  srv.start();
  JobCounts c;
  f.run_until(
      [&] {
        auto [ec, counts] = f.wait(q.async_get_job_counts());
        if (ec) return false;
        c = counts;
        return c.completed + c.failed == kJobs;
      },
      30s);
  std::optional<error_code> closed;
  w.async_close(2s, [&](error_code ec) { closed = ec; });
  f.run_until([&] { return closed.has_value(); });
  BOOST_TEST(c.completed == kJobs);
  BOOST_TEST(c.failed == 0);
  BOOST_TEST(c.waiting + c.active + c.delayed == 0);
  BOOST_TEST(runs.size() == std::size_t(kJobs));  // every job ran; a few may have run twice
  int twice = 0;
  for (auto const& [id, n] : runs) twice += n > 1;
  BOOST_TEST_MESSAGE("jobs run more than once after the restart: " << twice
                     << ", lost locks: " << w.stats().lost_locks << ", errors: " << w.stats().errors);
  BOOST_TEST(twice <= 5);  // at most the concurrency: the jobs in flight at the kill
}

BOOST_AUTO_TEST_SUITE_END()
