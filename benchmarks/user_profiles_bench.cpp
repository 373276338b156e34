// Seed 001 at scale, on a real redis-server (issue 14's targets):
//   user_profiles_bench [port=6379] [db=0]
// - batch_get: UserCache::async_batch_get of 100 profiles into the struct (one round trip),
//   mean and p50 over 2000 calls (target <= 0.17 ms; node-redis pipelining 100 HGETALL:
//   benchmarks/peers/user_profiles_bench.mjs);
// - prewarm: CachePrewarmer over 300 000 ids, the loader answering from memory (target <= 5 s);
// - consume: 100 000 seed events applied to the cache by a UserStreamConsumer, with acks
//   (target >= 100 000 events/s);
// - near: UserCache::async_get from the near cache against the same get from Redis (target:
//   a hit >= 20x faster than the round trip), and the time from another client's write to the
//   invalidation of the copy, p50 and p99.
// It FLUSHDBs database `db`: point it at a throwaway server.
#include "bench_util.hpp"

#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/services/cache_prewarmer.hpp>
#include <rediskit/services/user_cache.hpp>
#include <rediskit/services/user_events.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

rediskit::UserProfile profile(std::string id) {
  return rediskit::UserProfile(id, "User " + id, "https://cdn.example.com/avatars/" + id + ".jpg",
                               "MAT" + id, "MINFOP", "M", 1736862000000);
}

double ms(clk::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

asio::awaitable<void> run(rediskit::RedisBackend& redis) {
  auto use = asio::use_awaitable;
  co_await redis.async_exec(rediskit::cmd::flushdb{}, use);
  rediskit::UserCache<rediskit::RedisBackend> cache(redis);

  // --- batch_get of 100 --------------------------------------------------------------------
  {
    std::vector<rediskit::UserProfile> ps;
    std::vector<std::string> ids;
    for (int i = 0; i < 100; ++i) {
      ps.push_back(profile(std::to_string(i)));
      ids.push_back(std::to_string(i));
    }
    co_await cache.async_set_many(ps, use);
    for (int i = 0; i < 200; ++i) (void)co_await cache.async_batch_get(ids, use);  // warm-up
    std::vector<double> t;
    auto const start = clk::now();
    for (int i = 0; i < 2000; ++i) {
      auto const a = clk::now();
      auto b = co_await cache.async_batch_get(ids, use);
      t.push_back(ms(clk::now() - a));
      if (b.profiles.size() != 100 || !b.missing.empty()) throw std::runtime_error("bad batch");
    }
    std::sort(t.begin(), t.end());
    std::printf("batch_get(100): mean %.3f ms, p50 %.3f ms, p99 %.3f ms (target <= 0.17 ms)\n",
                ms(clk::now() - start) / 2000, t[t.size() / 2], t[t.size() * 99 / 100]);
  }

  // --- near cache: a hit against a round trip; a write by another client to its invalidation --
  {
    auto const cfg = redis.config();
    rediskit::RedisBackend other(redis.get_executor(), cfg);
    rediskit::UserCacheOptions o;
    o.near.max_entries = 1000;
    rediskit::UserCache<rediskit::RedisBackend> near(redis, o);
    co_await cache.async_set(profile("near"), use);
    asio::steady_timer t(redis.get_executor());
    while (!near.near_stats().active) {
      t.expires_after(1ms);
      co_await t.async_wait(use);
    }
    auto time_gets = [&](auto& c, int n) -> asio::awaitable<std::vector<double>> {
      std::vector<double> v;
      v.reserve(n);
      for (int i = 0; i < n; ++i) {
        auto const a = clk::now();
        auto p = co_await c.async_get("near", use);
        v.push_back(ms(clk::now() - a) * 1000);
        if (!p) throw std::runtime_error("near profile missing");
      }
      std::sort(v.begin(), v.end());
      co_return v;
    };
    (void)co_await time_gets(cache, 2000);  // warm-up
    auto const trip = co_await time_gets(cache, 20000);
    while (!near.near_cache().find(near.key("near"))) (void)co_await near.async_get("near", use);
    auto const hits_before = near.near_stats().hits;
    auto const hit = co_await time_gets(near, 200000);
    if (near.near_stats().hits - hits_before != 200000) throw std::runtime_error("not all hits");
    auto p50 = [](std::vector<double> const& v) { return bench_util::percentile(v, 50); };
    auto p99 = [](std::vector<double> const& v) { return bench_util::percentile(v, 99); };
    std::printf("get, Redis round trip: p50 %.2f us, p99 %.2f us\n", p50(trip), p99(trip));
    std::printf("get, near-cache hit: p50 %.3f us, p99 %.3f us: %.0fx faster at p50 "
                "(target >= 20x)\n",
                p50(hit), p99(hit), p50(trip) / p50(hit));
    // Another client writes the kept key; how long until this process drops the copy.
    std::vector<double> inv;
    std::string const key = near.key("near");
    for (int i = 0; i < 1000; ++i) {
      while (!near.near_cache().find(key)) (void)co_await near.async_get("near", use);
      auto const a = clk::now();
      other.async_exec(rediskit::cmd::hset{.key = key,
                                           .fields = rediskit::FieldValue{"sexe", i % 2 ? "F" : "M"}},
                       [](boost::system::error_code, std::int64_t) {});
      while (near.near_cache().find(key)) co_await asio::post(redis.get_executor(), use);
      inv.push_back(ms(clk::now() - a) * 1000);
    }
    std::sort(inv.begin(), inv.end());
    std::printf("another client's write -> copy dropped: p50 %.1f us, p99 %.1f us\n", p50(inv),
                p99(inv));
    other.close();
  }

  // --- prewarm 300 000 ---------------------------------------------------------------------
  {
    std::vector<std::string> ids;
    for (int i = 0; i < 300000; ++i) ids.push_back("w" + std::to_string(i));
    auto loader = [](std::vector<std::string> v) {
      std::vector<rediskit::UserProfile> out;
      out.reserve(v.size());
      for (auto& id : v) out.push_back(profile(std::move(id)));
      return out;
    };
    rediskit::CachePrewarmer warm(cache, {.batch_size = 500, .concurrency = 8});
    auto s = co_await warm.async_run(ids, loader, use);
    std::printf("prewarm(300000): %s, cached %zu, errors %zu (target <= 5 s)\n",
                s.duration_text().c_str(), s.cached, s.errors);
  }

  // --- consume 100 000 events ----------------------------------------------------------------
  {
    constexpr int n = 100000;
    std::vector<std::string> payloads;
    for (int i = 0; i < n; ++i)
      payloads.push_back(rediskit::UserEvent::updated(profile("w" + std::to_string(i % 300000)),
                                                      1736862000000 + i)
                             .to_json());
    for (int i = 0; i < n; i += 1000) {
      std::vector<rediskit::FieldValue> fv;
      std::vector<rediskit::cmd::xadd> adds;
      fv.reserve(1000);
      for (int j = i; j < i + 1000; ++j) fv.push_back({"payload", payloads[j]});
      for (auto& f : fv) adds.push_back(rediskit::cmd::xadd{.key = "events:users", .fields = f});
      (void)co_await redis.async_exec(adds, use);
    }
    rediskit::UserStreamOptions o;
    o.consumer_group = "bench";
    o.consumer_name = "c1";
    o.start_id = "0";
    o.batch_size = 500;
    o.block = 100ms;
    rediskit::UserStreamConsumer<rediskit::RedisBackend> c(redis, cache, o);
    bool done = false;
    auto const start = clk::now();
    c.async_run([&](boost::system::error_code) { done = true; });
    asio::steady_timer t(redis.get_executor());
    while (c.stats().processed < std::uint64_t(n)) {
      t.expires_after(1ms);
      co_await t.async_wait(use);
    }
    auto const took = clk::now() - start;
    c.stop();
    while (!done) {
      t.expires_after(1ms);
      co_await t.async_wait(use);
    }
    std::printf("consume(100000): %.0f ms, %.0f events/s with acks (target >= 100000/s)\n",
                ms(took), n / (ms(took) / 1000));
  }
  co_await redis.async_exec(rediskit::cmd::flushdb{}, use);
}

}  // namespace

int main(int argc, char** argv) {
  asio::io_context ioc;
  rediskit::RedisConfig cfg;
  cfg.port = static_cast<unsigned short>(argc > 1 ? std::atoi(argv[1]) : 6379);
  cfg.database = argc > 2 ? std::atoi(argv[2]) : 0;
  rediskit::RedisBackend redis(ioc, cfg);
  bench_util::run_coro(ioc, [&]() { return run(redis); });
  redis.close();
  return 0;
}
