// rediskit example: seed 002's five BullMQ queues (queue:auto-approval, queue:notifications,
// queue:analytics, queue:email, queue:cleanup) with JobQueue and Worker: 5 jobs in parallel, at
// most 10 jobs/s per queue, retries with exponential backoff, automatic cleanup of completed and
// failed jobs, a dead letter with its history, queue statistics and a clean shutdown.
// In-memory backend by default; with REDIS_URL (or REDIS_HOST / REDIS_PORT) set, Redis.
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/services/job_queue.hpp>
#include <rediskit/services/worker.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>

#include <array>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct Task {
  std::string target;  // a suggestion id, a user id, an email address...
  int n = 0;
};
BOOST_DESCRIBE_STRUCT(Task, (), (target, n))

template <rediskit::Backend B>
asio::awaitable<void> run(B& backend) {
  auto use = asio::use_awaitable;
  std::array<std::string, 5> const names = {"auto-approval", "notifications", "analytics",
                                            "email", "cleanup"};
  std::vector<std::unique_ptr<rediskit::JobQueue<B>>> queues;
  std::vector<std::unique_ptr<rediskit::Worker<B>>> workers;
  for (auto const& name : names) {
    queues.push_back(std::make_unique<rediskit::JobQueue<B>>(backend, name));  // {queue:<name>}
    co_await queues.back()->async_obliterate(true, use);  // a fresh start for the example
  }

  // Seed 002's options: 3 attempts, exponential backoff from 100 ms, keep the last 100
  // completed jobs and the failed ones of the last 24 hours.
  rediskit::JobOptions defaults;
  defaults.with_attempts(3, rediskit::Backoff::exponential(100ms))
      .with_remove_on_complete(rediskit::KeepJobs::last(100))
      .with_remove_on_fail(rediskit::KeepJobs::younger_than(24h));

  // 20 jobs per queue in one round trip each; every 7th email fails on its first run.
  for (auto& q : queues) {
    std::vector<rediskit::NewJob> jobs;
    for (int i = 0; i < 20; ++i) jobs.push_back(q->make_job(q->name(), Task{"t" + std::to_string(i), i}, defaults));
    co_await q->async_add_bulk(std::move(jobs), use);
  }
  // A poison job (not in the seed): it can never succeed, so once out of attempts it goes to
  // the dead-letter set with its history, instead of failed, until someone retries it.
  rediskit::JobOptions poison_options;
  poison_options.with_attempts(2, rediskit::Backoff::fixed(50ms)).with_dead_letter();
  Task const poison_task{"nowhere", -1};  // named: an aggregate temporary in a co_await
                                          // expression is freed twice under g++ 12
  auto const poison = co_await queues[2]->async_add("poison", poison_task, poison_options, use);
  auto const c0 = co_await queues[3]->async_get_job_counts(use);
  std::cout << "email before: waiting " << c0.waiting << '\n';

  // Seed 002: 5 jobs in parallel, at most 10 jobs/s per queue.
  rediskit::WorkerOptions o;
  o.concurrency = 5;
  o.limiter.max = 10;
  o.limiter.duration = 1s;
  o.idle_wait = 200ms;
  auto const started = std::chrono::steady_clock::now();
  for (auto& q : queues)
    workers.push_back(std::make_unique<rediskit::Worker<B>>(
        *q,
        [](rediskit::ActiveJob& job) -> asio::awaitable<void> {
          Task const t = job.data<Task>();
          if (job.name == "email" && t.n % 7 == 0 && job.attempts_made == 0)
            throw std::runtime_error("SMTP timeout");  // retried after 100 ms
          if (job.name == "poison") throw std::runtime_error("no such target: " + t.target);
          asio::steady_timer work(co_await asio::this_coro::executor, 5ms);
          co_await work.async_wait(asio::use_awaitable);
          job.return_value = "ok:" + t.target;
        },
        o));
  for (auto& w : workers) w->start();

  // Waiting for one job (BullMQ's job.waitUntilFinished), on the queue's events stream, from
  // the event of its add: the poison job ends dead.
  auto const end = co_await queues[2]->async_wait_until_finished(poison.id, 10s, poison.event_id, use);
  if (!end || end->state != rediskit::JobState::dead)
    throw std::runtime_error("the poison job should end in the dead-letter set");
  std::cout << "queue:analytics: job " << end->id << " ended " << rediskit::to_string(end->state)
            << ": " << end->failed_reason << '\n';

  // Wait until every queue is done (statistics: seed 002's getQueueStats).
  for (bool done = false; !done;) {
    asio::steady_timer tick(co_await asio::this_coro::executor, 100ms);
    co_await tick.async_wait(use);
    done = true;
    for (auto& q : queues) {
      auto const c = co_await q->async_get_job_counts(use);
      done = done && c.waiting + c.active + c.delayed + c.prioritized == 0;
    }
  }
  auto const secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  for (std::size_t i = 0; i < queues.size(); ++i) {
    auto const c = co_await queues[i]->async_get_job_counts(use);
    auto const& s = workers[i]->stats();
    std::cout << "queue:" << names[i] << ": completed " << c.completed << ", failed " << c.failed
              << " (worker: completed " << s.completed << ", retried " << s.retried << ")\n";
  }
  // 20 jobs at 10 jobs/s: at least 1 s (two windows), the five queues side by side.
  std::cout << "took " << static_cast<int>(secs * 10) / 10.0 << " s\n";
  auto const dead = co_await queues[2]->async_get_job(poison.id, use);
  if (!dead || dead->state != rediskit::JobState::dead || dead->history.size() != 2)
    throw std::runtime_error("the poison job should be a dead letter with two failed runs");
  std::cout << "queue:analytics: dead letter " << dead->id << " (" << dead->failed_reason
            << "), failed runs:";
  for (auto const& run : dead->history) std::cout << " #" << run.run << " " << run.error << ";";
  std::cout << '\n';

  // Clean shutdown: stop fetching, give active jobs 5 s.
  for (auto& w : workers) co_await w->async_close(5s, use);
  // Cleanup (queue:cleanup's job in the seed): completed jobs older than 0 ms.
  auto const removed = co_await queues[0]->async_clean(0ms, 1000, rediskit::JobState::completed, use);
  std::cout << "cleaned " << removed << " completed auto-approval jobs\n";
  for (auto& q : queues) co_await q->async_obliterate(true, use);
}

template <class B>
int start(asio::io_context& ioc, B& backend) {
  std::cout << "backend: " << B::name << '\n';
  asio::co_spawn(ioc, run(backend), [&](std::exception_ptr e) {
    if constexpr (requires { backend.close(); }) backend.close();
    if (e) std::rethrow_exception(e);
  });
  ioc.run();
  return 0;
}

int main() {
  // A bad REDIS_URL, or a Redis that cannot be reached: one line, status 1, never an abort.
  try {
    asio::io_context ioc;
    if (std::getenv("REDIS_URL") || std::getenv("REDIS_HOST")) {
      rediskit::RedisBackend redis(ioc, rediskit::RedisConfig::from_env());
      return start(ioc, redis);
    }
    rediskit::MemoryBackend memory(ioc);
    return start(ioc, memory);
  } catch (std::exception const& e) {
    std::cerr << "job_queues: " << e.what() << '\n';
    return 1;
  }
}
