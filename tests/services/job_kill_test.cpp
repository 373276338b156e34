// The kill test of issue 15: worker processes SIGKILLed mid-job under load, on a throwaway
// redis-server. 10 000 jobs, three worker processes at concurrency 10; every 300 ms one of them
// is killed (whatever it holds: jobs half run, a finish in flight, a lock renewal) and another
// takes its place. Every job must complete, none may fail or be lost, and the jobs that ran
// more than once must be bounded by what the killed processes held (kills x concurrency); their
// number is reported.
//
// The workers are forked from the test (no Boost.Test in them): each has its own io_context,
// RedisBackend and Worker, and records every run it starts with HINCRBY on a hash of the
// queue's slot, before the job's completion, so a run cut short by the kill is counted too.
// A killed worker's jobs come back through the stalled check of the others (lock_duration 2 s).
#include "support/backends.hpp"
#include "support/test_redis.hpp"

#include <rediskit/services/job_queue.hpp>
#include <rediskit/services/worker.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace job_kill_test {

constexpr int kJobs = 10'000;
constexpr int kConcurrency = 10;
constexpr int kProcesses = 3;
constexpr int kKills = 10;

RedisConfig config(unsigned short port) {
  RedisConfig cfg;
  cfg.port = port;
  cfg.connect_timeout = 1s;
  cfg.command_timeout = 5s;
  return cfg;
}

// A worker process: processes the queue until it is killed. Never returns.
[[noreturn]] void work(unsigned short port) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the test died: so does its worker
  asio::io_context ioc;
  RedisBackend redis(ioc, config(port));
  JobQueue<RedisBackend> q(redis, "kill");
  std::string const runs = q.key("runs");
  WorkerOptions o;
  o.concurrency = kConcurrency;
  o.lock_duration = 2000ms;
  o.stalled_interval = 500ms;
  o.max_stalled_count = 1000;  // a kill is not the job's fault: it never fails for stalling
  o.idle_wait = 200ms;
  Worker<RedisBackend> w(
      q,
      [&](ActiveJob& j) -> asio::awaitable<void> {
        cmd::hincrby const run{runs, j.id, 1};
        co_await redis.async_exec(run, asio::use_awaitable);
        asio::steady_timer t(co_await asio::this_coro::executor, 1ms);  // some work in flight
        (void)co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      },
      o);
  w.start();
  ioc.run();
  ::_exit(0);
}

pid_t spawn(unsigned short port) {
  pid_t const pid = ::fork();
  if (pid == 0) work(port);
  return pid;
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

}  // namespace job_kill_test

using namespace job_kill_test;

BOOST_AUTO_TEST_SUITE(job_kill)

BOOST_AUTO_TEST_CASE(worker_processes_killed_mid_job_lose_no_job) {
  rediskit::test::TestRedisServer srv;
  rediskit::test::BackendFixture<RedisBackend> f(std::in_place, config(srv.port()));
  JobQueue<RedisBackend> q(f.backend, "kill");
  for (int added = 0; added < kJobs; added += 1000) {
    std::vector<NewJob> jobs;
    for (int i = 0; i < 1000; ++i) jobs.push_back(q.make_job("k", added + i));
    auto [ec, r] = f.wait(q.async_add_bulk(std::move(jobs)));
    BOOST_REQUIRE(!ec);
  }

  std::vector<pid_t> workers;
  for (int i = 0; i < kProcesses; ++i) workers.push_back(spawn(srv.port()));
  for (pid_t p : workers) BOOST_REQUIRE(p > 0);
  std::mt19937 rng(20261207);
  auto const start = std::chrono::steady_clock::now();
  JobCounts c;
  auto counts = [&] {
    auto [ec, now] = f.wait(q.async_get_job_counts());
    BOOST_REQUIRE(!ec);
    c = now;
  };
  int kills = 0;
  for (; kills < kKills; ++kills) {
    f.advance(300ms);
    counts();
    if (c.completed >= kJobs) break;  // too fast to be killed mid-job any more
    auto& victim = workers[std::uniform_int_distribution<std::size_t>(0, workers.size() - 1)(rng)];
    kill_and_reap(victim);
    victim = spawn(srv.port());
    BOOST_REQUIRE(victim > 0);
  }
  BOOST_TEST_MESSAGE("kills: " << kills << ", completed by then: " << c.completed);
  BOOST_TEST(kills >= 3);  // the kills happened under load, not after it
  f.run_until(
      [&] {
        f.advance(100ms);
        counts();
        return c.completed + c.failed >= kJobs;
      },
      120s);
  auto const secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (pid_t p : workers) kill_and_reap(p);

  BOOST_TEST(c.completed == kJobs);
  BOOST_TEST(c.failed == 0);
  BOOST_TEST(c.waiting + c.active + c.delayed + c.prioritized + c.paused == 0);
  auto const runs = f.ok(cmd::hgetall{q.key("runs")});
  BOOST_TEST(runs.size() == std::size_t(kJobs));  // every job ran
  std::int64_t total = 0, twice = 0;
  for (auto const& [id, n] : runs) {
    total += std::stoll(n);
    twice += std::stoll(n) > 1;
  }
  BOOST_TEST_MESSAGE("jobs: " << kJobs << ", runs: " << total << ", jobs run more than once: "
                              << twice << ", kills: " << kills << ", " << secs << " s");
  BOOST_TEST(total - kJobs <= std::int64_t(kills) * kConcurrency);
}

BOOST_AUTO_TEST_SUITE_END()
