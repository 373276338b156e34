// services_bench: seed 002's votes and seed 002/004's notification fan-out (issue 18's
// "Performance"), on RedisBackend (a real redis-server) and MemoryBackend, side by side.
//
// Workloads, per backend:
//   vote_c<N>     VoteService::async_vote_on_suggestion from --callers coroutines (64) on one
//                 io_context thread, each voting in a loop for --seconds: a random suggestion
//                 of --suggestions (1 000), a random user of --users (10 000), a random vote
//                 (+1, -1 or 0: up, down, withdraw). Votes/s, and p50 / p99 of every vote's
//                 latency (call to completion, under the load of the other callers).
//   fanout_<U>    NotificationService: --fanout-users users (1 000), each with one
//                 async_subscribe handler on the service's one dispatcher (one subscriber
//                 connection on Redis). A round issues one async_notify per user at once (U calls,
//                 one script each: history, unread count, PUBLISH) and ends when the last of the
//                 U handlers is called; its time runs from the first async_notify call to that
//                 last handler call. Rounds run one after another, --rounds per timed run.
//                 p50 / p99 over the rounds of all timed runs; ops_per_s = notifications
//                 delivered per second (U x rounds / the run's wall time; median run).
// Each workload: a warm-up (--warmup seconds of votes; fan-out rounds for --warmup seconds, at
// most --rounds), then --repeat timed runs; one line per workload, e.g.
//   system=rediskit-redis workload=vote_c64 ops_per_s=... p50_us=... p99_us=... min=... max=... runs=...
//   system=rediskit-memory workload=fanout_1000 ops_per_s=... p50_us=... p99_us=... min=... max=... rounds=...
// and one line with the time the U subscriptions took (workload=subscribe_<U>).
//
// Usage: services_bench [--host H] [--port P] [--seconds S] [--repeat R] [--warmup S]
//                       [--callers N] [--suggestions N] [--users N] [--fanout-users N]
//                       [--rounds N] [--backends redis,memory] [--workloads vote,fanout]
// (host and port default to REDIS_HOST / REDIS_PORT, else 127.0.0.1:6379). It writes vote and
// notification keys (vote:suggestion:*, suggestions:top:voted, notifications:*): use a
// throwaway server (benchmarks/run_services.sh).

#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/services/notification_service.hpp>
#include <rediskit/services/vote_service.hpp>

#include "bench_util.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace rediskit;
using SteadyTime = std::chrono::steady_clock;

namespace {

using bench_util::run_coro;
using bench_util::percentile;
using bench_util::run_concurrently;
using bench_util::split;

struct Options : bench_util::CommonOptions {
  int suggestions = 1'000;
  int users = 10'000;
  int fanout_users = 1'000;
  int rounds = 100;
  std::vector<std::string> backends{"redis", "memory"};
  std::vector<std::string> workloads{"vote", "fanout"};
};

double micros(SteadyTime::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

SteadyTime::duration from_seconds(double s) {
  return std::chrono::duration_cast<SteadyTime::duration>(std::chrono::duration<double>(s));
}

std::vector<std::string> ids(char const* prefix, int n) {
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    out.push_back(prefix + std::to_string(i));
  return out;
}

// ---- votes -------------------------------------------------------------------------------

struct VoteRun {
  double ops_per_s = 0, p50_us = 0, p99_us = 0;
};

// `callers` coroutines each voting until `seconds` have passed; every vote is timed.
template <class B>
VoteRun vote_once(asio::io_context& ioc, VoteService<B>& votes,
                  std::vector<std::string> const& suggestions,
                  std::vector<std::string> const& users, int callers, double seconds,
                  std::uint64_t seed) {
  auto const end = SteadyTime::now() + from_seconds(seconds);
  std::uint64_t done = 0;
  std::vector<double> us;
  us.reserve(1 << 20);
  auto const start = SteadyTime::now();
  run_concurrently(ioc, callers, [&](int c) {
    return [&, c]() -> asio::awaitable<void> {
      // xorshift per caller: the same sequence of votes on every backend
      std::uint64_t x = seed + 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(c + 1);
      while (SteadyTime::now() < end) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        auto const& suggestion = suggestions[x % suggestions.size()];
        auto const& user = users[(x >> 20) % users.size()];
        int const vote = static_cast<int>((x >> 40) % 3) - 1;
        auto const t0 = SteadyTime::now();
        auto const r = co_await votes.async_vote_on_suggestion(suggestion, user, vote,
                                                               asio::use_awaitable);
        us.push_back(micros(SteadyTime::now() - t0));
        if (r.vote != vote) throw std::runtime_error("a vote came back as another vote");
        ++done;
      }
    };
  });
  VoteRun r;
  r.ops_per_s = static_cast<double>(done) /
                std::chrono::duration<double>(SteadyTime::now() - start).count();
  std::sort(us.begin(), us.end());
  r.p50_us = percentile(us, 50);
  r.p99_us = percentile(us, 99);
  return r;
}

template <class B>
void bench_votes(Options const& o, asio::io_context& ioc, B& db, std::string const& system) {
  VoteService<B> votes(db);  // seed 002's keys; every vote publishes on suggestions:votes
  auto const suggestions = ids("s", o.suggestions);
  auto const users = ids("u", o.users);
  vote_once(ioc, votes, suggestions, users, o.callers, o.warmup, 1);
  std::vector<VoteRun> runs;
  for (int i = 0; i < o.repeat; ++i)
    runs.push_back(vote_once(ioc, votes, suggestions, users, o.callers, o.seconds,
                             static_cast<std::uint64_t>(i + 2)));
  std::sort(runs.begin(), runs.end(),
            [](VoteRun const& a, VoteRun const& b) { return a.ops_per_s < b.ops_per_s; });
  VoteRun const& med = runs[runs.size() / 2];
  std::printf(
      "system=%s workload=vote_c%d ops_per_s=%.0f p50_us=%.1f p99_us=%.1f min=%.0f max=%.0f "
      "runs=%zu\n",
      system.c_str(), o.callers, med.ops_per_s, med.p50_us, med.p99_us, runs.front().ops_per_s,
      runs.back().ops_per_s, runs.size());
  std::fflush(stdout);
  // The counts the votes kept must equal a recount of the votes hash (the script's promise).
  run_coro(ioc, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 10 && i < o.suggestions; ++i) {
      auto const& suggestion = suggestions[static_cast<std::size_t>(i)];
      auto const kept = co_await votes.async_get_suggestion_votes(suggestion, asio::use_awaitable);
      auto const recount =
          co_await votes.async_update_suggestion_score(suggestion, asio::use_awaitable);
      if (kept.up != recount.up || kept.down != recount.down)
        throw std::runtime_error("the vote counts disagree with a recount of the votes");
    }
  });
}

// ---- notification fan-out -----------------------------------------------------------------

// What the handlers and the notify completions of the current round count.
struct Round {
  std::size_t delivered = 0, replied = 0;
  SteadyTime::time_point last{};
  boost::system::error_code error{};
};

// One round: one async_notify per user, issued at once; returns the time from the first call
// to the last handler call (all replies are in too when it returns).
template <class B>
double fanout_round(asio::io_context& ioc, NotificationService<B>& notes,
                    std::vector<std::string> const& users, Notification const& note,
                    Round& round) {
  round = Round{};
  auto const t0 = SteadyTime::now();
  for (auto const& user : users)
    notes.async_notify(user, note, [&round](boost::system::error_code ec, std::string const&) {
      if (ec && !round.error) round.error = ec;
      ++round.replied;
    });
  ioc.restart();
  while ((round.delivered < users.size() || round.replied < users.size()) && !round.error)
    ioc.run_one();
  if (round.error)
    throw std::runtime_error("async_notify failed: " + round.error.message());
  return micros(round.last - t0);
}

template <class B>
void bench_fanout(Options const& o, asio::io_context& ioc, B& db, std::string const& system) {
  std::optional<NotificationService<B>> notes(std::in_place, db);
  auto const users = ids("f", o.fanout_users);
  Round round;
  std::vector<NotificationSubscription> subs;
  subs.reserve(users.size());
  std::size_t subscribed = 0;
  boost::system::error_code sub_error;
  auto const s0 = SteadyTime::now();
  for (auto const& user : users)
    notes->async_subscribe(
        user,
        [&round](Notification const&) {
          ++round.delivered;
          round.last = SteadyTime::now();
        },
        [&](boost::system::error_code ec, NotificationSubscription s) {
          if (ec && !sub_error) sub_error = ec;
          subs.push_back(std::move(s));
          ++subscribed;
        });
  ioc.restart();
  while (subscribed < users.size())
    ioc.run_one();
  if (sub_error) throw std::runtime_error("async_subscribe failed: " + sub_error.message());
  double const subscribe_s = std::chrono::duration<double>(SteadyTime::now() - s0).count();
  std::printf("system=%s workload=subscribe_%zu seconds=%.3f\n", system.c_str(), users.size(),
              subscribe_s);

  Notification const note(NotificationType::status_change, NotificationPriority::low,
                          "Dr. Ngo is online", "status", "{\"status\":\"online\"}");
  auto const warm_end = SteadyTime::now() + from_seconds(o.warmup);
  for (int i = 0; i < o.rounds && SteadyTime::now() < warm_end; ++i)
    fanout_round(ioc, *notes, users, note, round);

  std::vector<double> all_us, rates;
  for (int r = 0; r < o.repeat; ++r) {
    auto const start = SteadyTime::now();
    for (int i = 0; i < o.rounds; ++i)
      all_us.push_back(fanout_round(ioc, *notes, users, note, round));
    double const wall = std::chrono::duration<double>(SteadyTime::now() - start).count();
    rates.push_back(static_cast<double>(users.size()) * o.rounds / wall);
  }
  auto const st = notes->stats();
  if (st.delivered != st.received || st.duplicates != 0 || st.catch_ups != 0 || st.lost != 0 ||
      st.resyncs != 0 || st.decode_errors != 0)
    std::fprintf(stderr,
                 "services_bench: %s fan-out: received %llu, delivered %llu, duplicates %llu, "
                 "catch-ups %llu, resyncs %llu, lost %llu, decode errors %llu\n",
                 system.c_str(), static_cast<unsigned long long>(st.received),
                 static_cast<unsigned long long>(st.delivered),
                 static_cast<unsigned long long>(st.duplicates),
                 static_cast<unsigned long long>(st.catch_ups),
                 static_cast<unsigned long long>(st.resyncs),
                 static_cast<unsigned long long>(st.lost),
                 static_cast<unsigned long long>(st.decode_errors));
  std::sort(all_us.begin(), all_us.end());
  std::sort(rates.begin(), rates.end());
  std::printf(
      "system=%s workload=fanout_%zu ops_per_s=%.0f p50_us=%.1f p99_us=%.1f min=%.0f max=%.0f "
      "rounds=%zu\n",
      system.c_str(), users.size(), rates[rates.size() / 2], percentile(all_us, 50),
      percentile(all_us, 99), rates.front(), rates.back(), all_us.size());
  std::fflush(stdout);
  subs.clear();  // the handles before the service, the service before the backend
  notes.reset();
  // Let the unsubscriptions and the dispatcher's last completions run.
  ioc.restart();
  ioc.poll();
}

template <class B>
void bench(Options const& o, asio::io_context& ioc, B& db, std::string const& workload,
           std::string const& system) {
  if (workload == "vote")
    bench_votes(o, ioc, db, system);
  else
    bench_fanout(o, ioc, db, system);
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: services_bench [--host H] [--port P] [--seconds S] [--repeat R] "
               "[--warmup S] [--callers N] [--suggestions N] [--users N] [--fanout-users N] "
               "[--rounds N] [--backends redis,memory] [--workloads vote,fanout]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  bench_util::parse_pairs(
      argc, argv,
      [&](std::string const& a, std::string const& v) {
        if (o.take(a, v)) return true;
        if (a == "--suggestions")
          o.suggestions = std::stoi(v);
        else if (a == "--users")
          o.users = std::stoi(v);
        else if (a == "--fanout-users")
          o.fanout_users = std::stoi(v);
        else if (a == "--rounds")
          o.rounds = std::stoi(v);
        else if (a == "--backends")
          o.backends = split(v);
        else if (a == "--workloads")
          o.workloads = split(v);
        else
          return false;
        return true;
      },
      usage);
  if (!o.valid() || o.suggestions < 1 || o.users < 1 || o.fanout_users < 1 || o.rounds < 1)
    usage();
  asio::io_context ioc;
  for (auto const& w : o.workloads) {
    if (w != "vote" && w != "fanout") usage();
    for (auto const& b : o.backends) {
      if (b == "redis") {
        RedisConfig cfg;
        cfg.host = o.host;
        cfg.port = o.port;
        RedisBackend db(ioc, cfg);
        bench(o, ioc, db, w, "rediskit-redis");
      } else if (b == "memory") {
        MemoryBackend db(ioc);
        bench(o, ioc, db, w, "rediskit-memory");
      } else {
        usage();
      }
    }
  }
  return 0;
} catch (std::exception const& e) {
  std::fprintf(stderr, "services_bench: %s\n", e.what());
  return 1;
}
