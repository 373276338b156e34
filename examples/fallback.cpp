// rediskit example: seed 003's RedisWrapper. A cache on FallbackBackend keeps answering when
// Redis goes away: commands go to memory, one log line says so, and they return to Redis once
// it has answered for the grace period. Here the outage is a maintenance window
// (breaker().force_open()), so the example needs no server to die; run it with nothing on
// REDIS_HOST:REDIS_PORT and it starts in memory mode (seed 003's Test 2).
// rediskit-example: needs-redis
#include <rediskit/backend/fallback_backend.hpp>
#include <rediskit/codec/string_codec.hpp>
#include <rediskit/services/cache_service.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <exception>
#include <iostream>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Backend = rediskit::FallbackBackend<>;  // RedisBackend, else MemoryBackend

void print_stats(char const* when, Backend const& db) {
  auto const s = db.stats();
  std::cout << when << ": mode " << s.mode << ", entries " << s.entries << ", redisAvailable "
            << std::boolalpha << s.primary_available << ", switches " << s.switches_to_secondary
            << "/" << s.switches_to_primary << ", replayed " << s.replayed << '\n';
}

asio::awaitable<void> run(Backend& db) {
  auto use = asio::use_awaitable;
  auto [ec] = co_await db.async_connect(asio::as_tuple(use));
  if (ec) std::cout << "Redis is not reachable (" << ec.message() << "): memory mode\n";
  print_stats("start", db);

  rediskit::CacheService<Backend, rediskit::StringCodec> cache(db, {.key_prefix = "example:fb"});
  co_await cache.async_set("translation:fr:hello", std::string("bonjour"), use);

  db.breaker().force_open();  // maintenance: everything goes to memory, no network attempt
  co_await cache.async_set("translation:fr:bye", std::string("au revoir"), use);
  auto bye = co_await cache.async_get<std::string>("translation:fr:bye", use);
  std::cout << "during the outage, bye = " << bye.value_or("?") << '\n';
  print_stats("degraded", db);

  db.breaker().reset();  // the end of the maintenance: probes, grace period, replay
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 100 && !db.on_primary(); ++i) {
    t.expires_after(50ms);
    co_await t.async_wait(use);
  }
  auto hello = co_await cache.async_get<std::string>("translation:fr:hello", use);
  bye = co_await cache.async_get<std::string>("translation:fr:bye", use);
  std::cout << "after: hello = " << hello.value_or("?") << ", bye = " << bye.value_or("?")
            << " (replayed)\n";
  print_stats("end", db);
  auto status = co_await cache.async_status(use);
  std::cout << "cache status: mode " << status.mode << ", entries " << status.entries << '\n';
  co_await cache.async_flush(use);
}

int main() {
  // A bad REDIS_URL: one line, status 1, never an abort. Redis down: memory mode.
  try {
    asio::io_context ioc;
    rediskit::FallbackConfig cfg;
    cfg.writes = rediskit::DegradedWrites::replay;
    cfg.grace_period = 500ms;
    cfg.breaker.open_for = 200ms;
    cfg.log = [](rediskit::LogLevel, std::string_view line) { std::cout << line << '\n'; };
    Backend db(ioc, rediskit::RedisConfig::from_env(), cfg);
    asio::co_spawn(ioc, run(db), [&](std::exception_ptr e) {
      db.close();
      if (e) std::rethrow_exception(e);
    });
    ioc.run();
    return 0;
  } catch (std::exception const& e) {
    std::cerr << "fallback: " << e.what() << '\n';
    return 1;
  }
}
