// rediskit example: cache-aside with CacheService (seed 001's user profiles). A slow "database"
// stands behind the cache: the first read loads and caches, later reads hit, concurrent misses
// share one load, and an update invalidates so that the next read sees the new value.
// In-memory backend by default; with REDIS_URL (or REDIS_HOST / REDIS_PORT) set, Redis.
// The headers it uses, not <rediskit/rediskit.hpp>: an edit to another service does not
// rebuild it.
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/codec/json_codec.hpp>
#include <rediskit/services/cache_service.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

struct Profile {
  std::string fullName;
  std::string matricule;
  std::int64_t updatedAt = 0;
};
BOOST_DESCRIBE_STRUCT(Profile, (), (fullName, matricule, updatedAt))

// Stands for the database: 20 ms per query, and a count of the queries it served.
struct Database {
  std::map<std::string, Profile> rows{{"123", {"Jean Dupont", "MAT001", 1736862000000}},
                                      {"124", {"Awa Ndiaye", "MAT002", 1736862000000}}};
  int queries = 0;

  asio::awaitable<std::optional<Profile>> find(std::string id) {
    ++queries;
    asio::steady_timer t(co_await asio::this_coro::executor, 20ms);
    co_await t.async_wait(asio::use_awaitable);
    auto it = rows.find(id);
    if (it == rows.end()) co_return std::nullopt;
    co_return it->second;
  }
};

template <rediskit::Backend B>
asio::awaitable<void> run(B& backend) {
  auto use = asio::use_awaitable;
  Database db;
  // Seed 001: profiles for 7 days, spread over 7-7.7 days so a warm-up does not expire at once.
  rediskit::CacheService<B, rediskit::JsonCodec, rediskit::JitteredTtl> cache(
      backend, {.key_prefix = "example"}, {}, rediskit::JitteredTtl{168h});
  co_await cache.async_flush(use);

  // The loader: called on a miss with the key as the cache names it ("user:profile:123").
  auto load = [&db](std::string const& key) {
    return db.find(key.substr(key.rfind(':') + 1));
  };

  auto p = co_await cache.template async_get_or_load<Profile>("user:profile:123", load, use);
  std::cout << "first read: " << p->fullName << " (database queries: " << db.queries << ")\n";
  p = co_await cache.template async_get_or_load<Profile>("user:profile:123", load, use);
  std::cout << "second read: " << p->fullName << " (database queries: " << db.queries << ")\n";

  // Three concurrent misses for one key: one database query.
  auto [a, b, c] = co_await (
      cache.template async_get_or_load<Profile>("user:profile:124", load, use) &&
      cache.template async_get_or_load<Profile>("user:profile:124", load, use) &&
      cache.template async_get_or_load<Profile>("user:profile:124", load, use));
  std::cout << "3 concurrent reads of 124: " << a->fullName << ", " << b->matricule << ", "
            << c->updatedAt << " (database queries: " << db.queries << ")\n";

  // Unknown ids are not cached: nullopt, every time.
  auto none = co_await cache.template async_get_or_load<Profile>("user:profile:999", load, use);
  std::cout << "unknown id: " << (none ? "found" : "not found") << '\n';

  // An update writes the database, then invalidates: the next read loads the new value.
  db.rows["123"].fullName = "Jean Dupont-Martin";
  co_await cache.async_del("user:profile:123", use);
  p = co_await cache.template async_get_or_load<Profile>("user:profile:123", load, use);
  std::cout << "after update: " << p->fullName << '\n';

  // Tags (seed 002): invalidate a group at once.
  co_await cache.async_set_with_tags("dept:IT:members", 12, {"dept:IT"}, use);
  co_await cache.async_set_with_tags("dept:IT:budget", 3400, {"dept:IT"}, use);
  auto removed = co_await cache.async_invalidate_by_tag("dept:IT", use);
  std::cout << "invalidated by tag dept:IT: " << removed << " keys\n";

  auto s = cache.stats();
  std::cout << "stats: hits " << s.hits << ", misses " << s.misses << ", loads " << s.loads
            << ", coalesced " << s.coalesced << '\n';
  auto status = co_await cache.async_status(use);
  std::cout << "status: mode " << status.mode << ", entries " << status.entries
            << ", available " << std::boolalpha << status.available << '\n';
  co_await cache.async_flush(use);
}

template <class B>
int start(asio::io_context& ioc, B& backend) {
  std::cout << "backend: " << B::name << '\n';
  asio::co_spawn(ioc, run(backend), [&](std::exception_ptr e) {
    backend.close();
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
    std::cerr << "cache_aside: " << e.what() << '\n';
    return 1;
  }
}
