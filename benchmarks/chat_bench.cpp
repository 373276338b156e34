// chat_bench: the chat services (OnlineUserManager, RoomManager, UnreadMessageManager) at seed
// 000's scale, on MemoryBackend and on RedisBackend (a real redis-server), through the public
// async API, as a chat server would drive them: many operations in flight at once.
//
// Per backend, in this order (ids u0..u299999, rooms r0..r29999, room r = users 10r..10r+9):
//   create_room           30 000 rooms
//   join_room             300 000 joins (10 members per room)
//   set_user_online       300 000 users, in three steps (1k, 30k, 300k online); after each
//                         step, the latency of get_online_count and get_room_online_users
//                         (`--samples` sequential calls each: median, p99; rooms r0..r99,
//                         whose members are all online) shows whether they grow with the users
//   update_last_activity  300 000 heartbeats
//   get_online_count, get_room_online_users   100 000 calls each, 300k users online
//   increment_unread_for_recipients   one message per room: 10 participants, 9 recipients
//   mark_conversation_read            one reader per room
// Throughput: `--concurrency` coroutines (default 128) each taking the next item until none is
// left, on one io_context thread; ops/s = items / wall time. Memory per online user: the
// growth of Redis's INFO used_memory (and of MemoryBackend's engine estimate) over the
// set_user_online steps only, divided by the users.
//
// Usage: chat_bench [--host H] [--port P] [--users N] [--rooms N] [--concurrency N]
//                   [--samples N] [--reads N] [--backends memory,redis]
// (host and port default to REDIS_HOST / REDIS_PORT, else 127.0.0.1:6379). The Redis database
// must be empty (the program refuses otherwise) and is flushed at the end: use a throwaway
// server, as benchmarks/run_chat.sh does.

#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/services/online_user_manager.hpp>
#include <rediskit/services/room_manager.hpp>
#include <rediskit/services/unread_message_manager.hpp>

#include "bench_util.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace rediskit;
using SteadyTime = std::chrono::steady_clock;

namespace {

using bench_util::percentile;
using bench_util::run_concurrently;
using bench_util::split;
using bench_util::run_coro;

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::size_t users = 300'000;
  std::size_t rooms = 30'000;  // users / rooms members each
  int concurrency = 128;
  std::size_t samples = 1000;
  std::size_t reads = 100'000;
  std::vector<std::string> backends{"memory", "redis"};
  bool uses(std::string const& b) const {
    return std::find(backends.begin(), backends.end(), b) != backends.end();
  }
};

struct Data {
  std::vector<std::string> users, sockets, rooms;
  std::vector<std::vector<std::string>> members;  // per room
  explicit Data(Options const& o) {
    for (std::size_t i = 0; i < o.users; ++i) {
      users.push_back("u" + std::to_string(i));
      sockets.push_back("ws-" + std::to_string(i));
    }
    std::size_t const per_room = o.users / o.rooms;
    members.resize(o.rooms);
    for (std::size_t r = 0; r < o.rooms; ++r) {
      rooms.push_back("r" + std::to_string(r));
      for (std::size_t m = 0; m < per_room; ++m)
        members[r].push_back(users[r * per_room + m]);
    }
  }
};

struct Latency {
  double p50_us = 0, p99_us = 0, reply = 0;  // reply: mean size of the result
};

struct Results {
  std::vector<std::pair<std::string, double>> rates;               // name -> ops/s, in run order
  std::map<std::pair<std::string, std::size_t>, Latency> latency;  // (call, online) -> figures
  double bytes_per_user = 0;
};

// `concurrency` coroutines each co_await op(i) for the next i in [begin, end) until none is
// left. Returns the wall time in seconds.
template <class Op>
double run_parallel(asio::io_context& ioc, int concurrency, std::size_t begin, std::size_t end,
                    Op const& op) {
  std::size_t next = begin;
  auto const start = SteadyTime::now();
  run_concurrently(ioc, concurrency, [&](int) {
    return [&]() -> asio::awaitable<void> {
      while (next < end)
        co_await op(next++);
    };
  });
  return std::chrono::duration<double>(SteadyTime::now() - start).count();
}

// `n` sequential calls of op(i) (i cycling over [0, span)): median and p99 of each call.
template <class Op>
Latency measure_latency(asio::io_context& ioc, std::size_t n, std::size_t span, Op const& op) {
  std::vector<double> us;
  double reply = 0;
  run_coro(ioc, [&]() -> asio::awaitable<void> {
    std::uint64_t x = 88172645463325252ull;  // xorshift: the same calls on every backend
    for (std::size_t k = 0; k < n; ++k) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      auto const t0 = SteadyTime::now();
      reply += static_cast<double>(co_await op(static_cast<std::size_t>(x % span)));
      us.push_back(std::chrono::duration<double, std::micro>(SteadyTime::now() - t0).count());
    }
  });
  std::sort(us.begin(), us.end());
  return {percentile(us, 50), percentile(us, 99), reply / static_cast<double>(n)};
}

// Bytes the store uses: Redis's INFO used_memory, or the engine's estimate.
std::size_t used_memory(asio::io_context&, MemoryBackend& db) {
  return db.stats().used_memory;
}
std::size_t used_memory(asio::io_context& ioc, RedisBackend& db) {
  std::string text;
  run_coro(ioc, [&]() -> asio::awaitable<void> {
    text = co_await db.async_exec(cmd::info{"memory"}, asio::use_awaitable);
  });
  auto const at = text.find("used_memory:");
  if (at == std::string::npos) throw std::runtime_error("INFO memory has no used_memory");
  return std::stoull(text.substr(at + 12));
}

template <class B>
Results run_all(Options const& o, asio::io_context& ioc, B& db, Data const& d) {
  auto use = asio::use_awaitable;
  std::int64_t keys = 0;
  run_coro(ioc,
           [&]() -> asio::awaitable<void> { keys = co_await db.async_exec(cmd::dbsize{}, use); });
  if (keys != 0) throw std::runtime_error("the database is not empty: use a throwaway server");

  OnlineUserOptions po;
  po.default_ttl = std::chrono::hours(1);  // nobody expires during the run
  OnlineUserManager presence(db, po);
  RoomManager rooms(db, presence);  // reads the same presence:online set
  UnreadMessageManager unread(db);
  Results res;
  int const c = o.concurrency;
  auto rate = [&](std::string name, std::size_t n, double seconds) {
    double const r = static_cast<double>(n) / seconds;
    res.rates.emplace_back(std::move(name), r);
    std::printf("backend=%s op=%s items=%zu seconds=%.3f ops_per_s=%.0f\n", B::name.data(),
                res.rates.back().first.c_str(), n, seconds, r);
    std::fflush(stdout);
  };

  rate("create_room", d.rooms.size(),
       run_parallel(ioc, c, 0, d.rooms.size(), [&](std::size_t r) -> asio::awaitable<void> {
         co_await rooms.async_create_room(d.rooms[r], RoomData("Room " + d.rooms[r]));
       }));
  std::size_t const per_room = d.members.front().size();
  rate("join_room", d.users.size(),
       run_parallel(ioc, c, 0, d.users.size(), [&](std::size_t u) -> asio::awaitable<void> {
         co_await rooms.async_join_room(d.rooms[u / per_room], d.users[u]);
       }));

  // Users come online in steps; after each, the latency of the two reads.
  double online_seconds = 0;
  std::size_t memory_growth = 0, online = 0;
  for (std::size_t step : {std::size_t(1000), std::size_t(30'000), d.users.size()}) {
    step = std::min(step, d.users.size());
    if (step <= online) continue;  // a small --users
    std::size_t const before = used_memory(ioc, db);
    online_seconds +=
        run_parallel(ioc, c, online, step, [&](std::size_t u) -> asio::awaitable<void> {
          co_await presence.async_set_user_online(d.users[u], d.sockets[u]);
        });
    memory_growth += used_memory(ioc, db) - before;
    online = step;
    res.latency[{"get_online_count", online}] =
        measure_latency(ioc, o.samples, 1, [&](std::size_t) -> asio::awaitable<std::int64_t> {
          co_return co_await presence.async_get_online_count();
        });
    // The same rooms at every step (r0..r99: their members are online from the first step,
    // 10 in each reply when presence is seen): only the number of users online changes.
    res.latency[{"get_room_online_users", online}] = measure_latency(
        ioc, o.samples, std::max<std::size_t>(1, std::min<std::size_t>(online, 1000) / per_room),
        [&](std::size_t r) -> asio::awaitable<std::size_t> {
          auto const v = co_await rooms.async_get_room_online_users(d.rooms[r]);
          co_return v.size();
        });
    for (auto const* name : {"get_online_count", "get_room_online_users"}) {
      auto const& l = res.latency[{name, online}];
      std::printf("backend=%s op=%s online=%zu samples=%zu p50_us=%.1f p99_us=%.1f reply=%.2f\n",
                  B::name.data(), name, online, o.samples, l.p50_us, l.p99_us, l.reply);
    }
  }
  rate("set_user_online", d.users.size(), online_seconds);
  res.bytes_per_user = static_cast<double>(memory_growth) / static_cast<double>(d.users.size());
  std::printf("backend=%s used_memory_growth=%zu users=%zu bytes_per_user=%.0f\n", B::name.data(),
              memory_growth, d.users.size(), res.bytes_per_user);

  rate("update_last_activity", d.users.size(),
       run_parallel(ioc, c, 0, d.users.size(), [&](std::size_t u) -> asio::awaitable<void> {
         co_await presence.async_update_last_activity(d.users[u]);
       }));
  rate("get_online_count", o.reads,
       run_parallel(ioc, c, 0, o.reads, [&](std::size_t) -> asio::awaitable<void> {
         co_await presence.async_get_online_count();
       }));
  rate("get_room_online_users", o.reads,
       run_parallel(ioc, c, 0, o.reads, [&](std::size_t i) -> asio::awaitable<void> {
         co_await rooms.async_get_room_online_users(d.rooms[i % d.rooms.size()]);
       }));
  rate("increment_unread_for_recipients", d.rooms.size(),
       run_parallel(ioc, c, 0, d.rooms.size(), [&](std::size_t r) -> asio::awaitable<void> {
         auto const& m = d.members[r];
         co_await unread.async_increment_unread_for_recipients(d.rooms[r], m[0], m, 1);
       }));
  rate("mark_conversation_read", d.rooms.size(),
       run_parallel(ioc, c, 0, d.rooms.size(), [&](std::size_t r) -> asio::awaitable<void> {
         co_await unread.async_mark_conversation_read(d.rooms[r], d.members[r][1]);
       }));

  // A spot check that the work happened: 9 recipients per message, one reader cleared 1.
  std::int64_t n = 0, total = 0;
  run_coro(ioc, [&]() -> asio::awaitable<void> {
    n = co_await presence.async_get_online_count();
    total = co_await unread.async_get_user_total_unread(d.members[0][2]);
  });
  if (n != static_cast<std::int64_t>(d.users.size()) || total != 1)
    throw std::runtime_error("unexpected final state: online " + std::to_string(n) + ", unread " +
                             std::to_string(total));
  run_coro(ioc, [&]() -> asio::awaitable<void> { co_await db.async_exec(cmd::flushdb{}, use); });
  return res;
}

std::string fmt(char const* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  if (char const* h = std::getenv("REDIS_HOST")) o.host = h;
  if (char const* p = std::getenv("REDIS_PORT")) o.port = static_cast<std::uint16_t>(std::atoi(p));
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string const a = argv[i], v = argv[i + 1];
    if (a == "--port")
      o.port = static_cast<std::uint16_t>(std::atoi(v.c_str()));
    else if (a == "--host")
      o.host = v;
    else if (a == "--users")
      o.users = std::stoul(v);
    else if (a == "--rooms")
      o.rooms = std::stoul(v);
    else if (a == "--concurrency")
      o.concurrency = std::atoi(v.c_str());
    else if (a == "--samples")
      o.samples = std::stoul(v);
    else if (a == "--reads")
      o.reads = std::stoul(v);
    else if (a == "--backends")
      o.backends = split(v);
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  if (o.rooms == 0 || o.users < o.rooms * 3 || o.concurrency < 1 || o.samples < 1) {
    std::cerr << "need rooms >= 1, users >= 3 * rooms, concurrency >= 1, samples >= 1\n";
    return 2;
  }
  Data const d(o);
  asio::io_context ioc(1);
  std::optional<Results> mem, red;
  if (o.uses("memory")) {
    MemoryBackend db(ioc);
    mem = run_all(o, ioc, db, d);
  }
  if (o.uses("redis")) {
    RedisConfig cfg;
    cfg.host = o.host;
    cfg.port = o.port;
    RedisBackend db(ioc, cfg);
    red = run_all(o, ioc, db, d);
    db.close();
  }

  auto cell = [](std::optional<Results> const& r, auto get) {
    return r ? get(*r) : std::string("-");
  };
  Results const& any = mem ? *mem : *red;
  std::printf("\n%zu users, %zu rooms of %zu members, %d operations in flight\n\n", o.users,
              o.rooms, o.users / o.rooms, o.concurrency);
  std::printf(
      "| operation | MemoryBackend ops/s | RedisBackend ops/s | memory / redis |\n"
      "|---|---|---|---|\n");
  for (std::size_t i = 0; i < any.rates.size(); ++i) {
    auto get = [i](Results const& r) { return fmt("%.0f", r.rates[i].second); };
    std::string ratio = "-";
    if (mem && red) ratio = fmt("%.1fx", mem->rates[i].second / red->rates[i].second);
    std::printf("| %s | %s | %s | %s |\n", any.rates[i].first.c_str(), cell(mem, get).c_str(),
                cell(red, get).c_str(), ratio.c_str());
  }
  std::printf(
      "\n| memory per online user (set_user_online growth / users) | MemoryBackend "
      "(engine estimate) | RedisBackend (INFO used_memory) |\n|---|---|---|\n");
  auto bpu = [](Results const& r) { return fmt("%.0f B", r.bytes_per_user); };
  std::printf("| bytes | %s | %s |\n", cell(mem, bpu).c_str(), cell(red, bpu).c_str());
  std::printf(
      "\n| call (%zu sequential calls) | users online | MemoryBackend p50 / p99 µs | "
      "RedisBackend p50 / p99 µs | mean reply (count / users) |\n|---|---|---|---|---|\n",
      o.samples);
  for (auto const& [key, l] : any.latency) {
    auto get = [&key = key](Results const& r) {
      auto const& x = r.latency.at(key);
      return fmt("%.1f", x.p50_us) + " / " + fmt("%.1f", x.p99_us);
    };
    std::printf("| %s | %zu | %s | %s | %s |\n", key.first.c_str(), key.second,
                cell(mem, get).c_str(), cell(red, get).c_str(), fmt("%.1f", l.reply).c_str());
  }
  return 0;
} catch (std::exception const& e) {
  std::cerr << "chat_bench: " << e.what() << '\n';
  return 1;
}
