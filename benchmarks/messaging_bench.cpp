// messaging_bench: seed 004's MessageStore (issue 17's "Performance"), on RedisBackend (a real
// redis-server) and MemoryBackend, side by side.
//
// Per backend, on a flushed database:
//   setup         ConversationManager::async_create_conversation for --conversations (10 000)
//                 conversations (conversation i: medecin 100000 + i, patient i).
//   store_c<N>    MessageStore::async_store_message from --callers coroutines (64) on one
//                 io_context thread, until --messages (1 000 000) are stored: each message goes
//                 to a random conversation, from its patient or medecin, ~60 bytes of content,
//                 timestamped 1 ms after the one before from now on (so each store moves its
//                 conversation's lastActivity and both participants' lists, as a live chat's).
//                 The first --warmup seconds are not timed; then messages/s, p50 and p99 of each
//                 store (call to completion, under the other callers' load) over the rest.
//   page50        one caller reading async_get_conversation_messages(random conversation, 50, 0)
//                 (ChatMessage structs decoded from JSON) for --seconds, --repeat times: p50 and
//                 p99 per page, pages/s (median run).
//   memory        RedisBackend only: (INFO used_memory after the fill - before) / messages, in
//                 bytes per message (the message hash, its index entry, the per-user indexes and
//                 counters amortised).
// One line per workload, e.g.
//   system=rediskit-redis workload=store_c64 ops_per_s=... p50_us=... p99_us=... messages=...
//   system=rediskit-redis workload=page50 ops_per_s=... p50_us=... p99_us=... min=... max=...
//   system=rediskit-redis workload=memory bytes_per_message=... messages=...
//
// Usage: messaging_bench [--host H] [--port P] [--seconds S] [--repeat R] [--warmup S]
//                        [--callers N] [--conversations N] [--messages N]
//                        [--backends redis,memory] [--pages-only 1]
// --pages-only 1 reads pages from a server an earlier run filled (no flush, no store): for A/B
// runs of the page alone, without refilling 1 000 000 messages each time.
// (host and port default to REDIS_HOST / REDIS_PORT, else 127.0.0.1:6379). It FLUSHES the
// database: use a throwaway server (benchmarks/run_messaging.sh).

#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/services/conversation_manager.hpp>
#include <rediskit/services/message_store.hpp>

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
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace rediskit;
using SteadyTime = std::chrono::steady_clock;

namespace {

using bench_util::percentile;
using bench_util::run_concurrently;
using bench_util::run_coro;
using bench_util::split;

struct Options : bench_util::CommonOptions {
  int conversations = 10'000;
  long messages = 1'000'000;
  std::vector<std::string> backends{"redis", "memory"};
  bool pages_only = false;  // reuse a server the bench filled: no flush, no store
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: messaging_bench [--host H] [--port P] [--seconds S] [--repeat R] "
               "[--warmup S] [--callers N] [--conversations N] [--messages N] "
               "[--backends redis,memory] [--pages-only 1]\n");
  std::exit(2);
}

double micros(SteadyTime::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

std::uint64_t next(std::uint64_t& x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

template <class B>
std::vector<std::string> setup(asio::io_context& ioc, ConversationManager<B>& convs, int n) {
  std::vector<std::string> ids(static_cast<std::size_t>(n));
  run_concurrently(ioc, 64, [&](int c) {
    return [&, c]() -> asio::awaitable<void> {
      for (int i = c; i < n; i += 64) {
        NewConversation req("ordonnance", std::to_string(i), ParticipantInfo(100000 + i, "Dr", "X"),
                            ParticipantInfo(i, "MOLOWA", "ESSONGA"), "Ordonnance");
        auto const r = co_await convs.async_create_conversation(req, asio::use_awaitable);
        ids[static_cast<std::size_t>(i)] = r.conversation.id;
      }
    };
  });
  return ids;
}

template <class B>
std::int64_t used_memory(asio::io_context& ioc, B& db) {
  std::int64_t out = 0;
  run_coro(ioc, [&]() -> asio::awaitable<void> {
    std::string const text = co_await db.async_exec(cmd::info{"memory"}, asio::use_awaitable);
    auto const at = text.find("used_memory:");
    if (at != std::string::npos) out = std::atoll(text.c_str() + at + 12);
  });
  return out;
}

template <class B>
void bench(Options const& o, asio::io_context& ioc, B& db, std::string const& system) {
  if (!o.pages_only)
    run_coro(ioc, [&]() -> asio::awaitable<void> {
      co_await db.async_exec(cmd::flushdb{}, asio::use_awaitable);
    });
  ConversationManager<B> convs(db);
  MessageStore<B> store(db);
  auto const conv_ids = setup(ioc, convs, o.conversations);  // idempotent: the same ids again
  std::int64_t const mem0 = system == "rediskit-redis" ? used_memory(ioc, db) : 0;

  // ---- store from N callers, until --messages are stored --------------------------------
  long issued = 0, timed = 0;
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(o.messages));
  auto const t0 = SteadyTime::now();
  auto const warm_end =
      t0 + std::chrono::duration_cast<SteadyTime::duration>(std::chrono::duration<double>(o.warmup));
  SteadyTime::time_point timed_start{};
  // Each message 1 ms after the one before, from now on: newer than its conversation, as a chat's
  // messages are, so every store also moves the conversation's lastActivity and both
  // participants' conversation lists (an older timestamp would skip those writes).
  std::int64_t const base_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count() +
                               1000;
  std::string const content =
      "Bonjour docteur, voici ma question au sujet de l'ordonnance numero 15.";
  run_concurrently(ioc, o.pages_only ? 0 : o.callers, [&](int c) {
    return [&, c]() -> asio::awaitable<void> {
      std::uint64_t x = 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(c + 1);
      ChatMessage m;
      m.content = content;
      while (issued < o.messages) {
        long const n = issued++;
        auto const r = next(x);
        auto const conv = static_cast<std::size_t>(r % conv_ids.size());
        m.id = "m" + std::to_string(n);
        m.conversationId = conv_ids[conv];
        bool const from_patient = (r >> 32) & 1;
        m.sender = from_patient ? MessageSender("patient", static_cast<std::int64_t>(conv))
                                : MessageSender("medecin", 100000 + static_cast<std::int64_t>(conv));
        m.timestamp = format_iso8601_ms(base_ms + n);
        auto const s0 = SteadyTime::now();
        co_await store.async_store_message(m, asio::use_awaitable);
        auto const s1 = SteadyTime::now();
        if (s0 >= warm_end) {
          if (timed == 0) timed_start = s0;
          us.push_back(micros(s1 - s0));
          ++timed;
        }
      }
    };
  });
  double const wall = std::chrono::duration<double>(SteadyTime::now() - timed_start).count();
  std::sort(us.begin(), us.end());
  if (!o.pages_only)
    std::printf(
        "system=%s workload=store_c%d ops_per_s=%.0f p50_us=%.1f p99_us=%.1f messages=%ld "
        "timed=%ld\n",
        system.c_str(), o.callers, timed > 0 ? static_cast<double>(timed) / wall : 0.0,
        percentile(us, 50), percentile(us, 99), o.messages, timed);
  std::fflush(stdout);
  if (system == "rediskit-redis" && !o.pages_only) {
    std::int64_t const mem1 = used_memory(ioc, db);
    std::printf("system=%s workload=memory bytes_per_message=%.0f messages=%ld\n", system.c_str(),
                static_cast<double>(mem1 - mem0) / static_cast<double>(o.messages), o.messages);
    std::fflush(stdout);
  }

  // ---- pages of 50, decoded ----------------------------------------------------------------
  struct Run {
    double rate = 0, p50 = 0, p99 = 0;
  };
  auto page_run = [&](double seconds, std::uint64_t seed) {
    std::vector<double> lat;
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    auto const start = SteadyTime::now();
    auto const end = start + std::chrono::duration_cast<SteadyTime::duration>(
                                 std::chrono::duration<double>(seconds));
    std::size_t messages = 0;
    run_coro(ioc, [&]() -> asio::awaitable<void> {
      while (SteadyTime::now() < end) {
        auto const& conv = conv_ids[next(x) % conv_ids.size()];
        auto const s0 = SteadyTime::now();
        auto const page =
            co_await store.async_get_conversation_messages(conv, 50, 0, asio::use_awaitable);
        lat.push_back(micros(SteadyTime::now() - s0));
        messages += page.size();
      }
    });
    if (messages == 0) throw std::runtime_error("every page was empty");
    Run r;
    r.rate = static_cast<double>(lat.size()) /
             std::chrono::duration<double>(SteadyTime::now() - start).count();
    std::sort(lat.begin(), lat.end());
    r.p50 = percentile(lat, 50);
    r.p99 = percentile(lat, 99);
    return r;
  };
  page_run(o.warmup, 1);
  std::vector<Run> runs;
  for (int i = 0; i < o.repeat; ++i) runs.push_back(page_run(o.seconds, static_cast<std::uint64_t>(i + 2)));
  std::sort(runs.begin(), runs.end(), [](Run const& a, Run const& b) { return a.p50 < b.p50; });
  Run const& med = runs[runs.size() / 2];
  std::printf("system=%s workload=page50 ops_per_s=%.0f p50_us=%.1f p99_us=%.1f min=%.1f "
              "max=%.1f runs=%zu\n",
              system.c_str(), med.rate, med.p50, med.p99, runs.front().p50, runs.back().p50,
              runs.size());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  bench_util::parse_pairs(
      argc, argv,
      [&](std::string const& a, std::string const& v) {
        if (o.take(a, v)) return true;
        if (a == "--conversations")
          o.conversations = std::stoi(v);
        else if (a == "--messages")
          o.messages = std::stol(v);
        else if (a == "--backends")
          o.backends = split(v);
        else if (a == "--pages-only")
          o.pages_only = v == "1";
        else
          return false;
        return true;
      },
      usage);
  if (!o.valid() || o.conversations < 1 || o.messages < 1) usage();
  asio::io_context ioc;
  for (auto const& b : o.backends) {
    if (b == "redis") {
      RedisConfig cfg;
      cfg.host = o.host;
      cfg.port = o.port;
      RedisBackend db(ioc, cfg);
      bench(o, ioc, db, "rediskit-redis");
    } else if (b == "memory") {
      MemoryBackend db(ioc);
      bench(o, ioc, db, "rediskit-memory");
    } else {
      usage();
    }
  }
  return 0;
} catch (std::exception const& e) {
  std::fprintf(stderr, "messaging_bench: %s\n", e.what());
  return 1;
}
