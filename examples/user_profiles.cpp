// rediskit example: seed 001's shared user-profile store. The auth service writes profiles into
// the UserCache and publishes events on `events:users`; a chat service consumes them with a
// UserStreamConsumer that keeps its cache in step, reads profiles in batches (cache-aside with
// the auth service's GET /batch as the loader), and pre-warms the cache at start with a
// CachePrewarmer under a concurrency and rate budget.
// In-memory backend by default; with REDIS_URL (or REDIS_HOST / REDIS_PORT) set, Redis.
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/services/cache_prewarmer.hpp>
#include <rediskit/services/user_cache.hpp>
#include <rediskit/services/user_events.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Stands for auth-user-service: the source of truth, with GET /batch?ids=... (2 ms per call).
struct AuthService {
  std::map<std::string, rediskit::UserProfile> users;
  int batch_calls = 0;

  AuthService() {
    for (int i = 0; i < 2000; ++i) {
      auto id = std::to_string(1000 + i);
      users.emplace(id, rediskit::UserProfile(id, "User " + id, "https://cdn/" + id + ".jpg",
                                              "MAT" + id, "MINFOP", i % 2 ? "F" : "M",
                                              1736862000000));
    }
  }

  asio::awaitable<std::vector<rediskit::UserProfile>> batch(std::vector<std::string> ids) {
    ++batch_calls;
    asio::steady_timer t(co_await asio::this_coro::executor, 2ms);
    co_await t.async_wait(asio::use_awaitable);
    std::vector<rediskit::UserProfile> out;
    for (auto const& id : ids)
      if (auto it = users.find(id); it != users.end()) out.push_back(it->second);
    co_return out;
  }
};

template <rediskit::Backend B>
asio::awaitable<void> run(B& backend) {
  auto use = asio::use_awaitable;
  AuthService auth;
  rediskit::cmd::del const fresh_start{.keys = {"events:users", "user:profile~index"}};
  co_await backend.async_exec(fresh_start, use);

  // user:profile:<id> hashes, 7 days; on Redis the hottest 10 000 profiles also in process,
  // dropped as soon as any client writes them (CLIENT TRACKING; off on MemoryBackend).
  rediskit::UserCache<B> cache(backend, {.near = {.max_entries = 10000}});
  rediskit::UserEventPublisher<B> publisher(backend, {.max_len = 100000});

  // 1. Pre-warm: the participants of recent conversations (here: 1600 ids, 100 unknown),
  //    4 batches of 250 in flight at most, at most 20 000 users per second.
  std::vector<std::string> participants;
  for (int i = 0; i < 1500; ++i) participants.push_back(std::to_string(1100 + i));
  for (int i = 0; i < 100; ++i) participants.push_back(std::to_string(5000 + i));  // unknown
  rediskit::PrewarmOptions po;
  po.batch_size = 250;
  po.concurrency = 4;
  po.rate = 20000;
  po.on_progress = [](rediskit::PrewarmProgress const& p) {
    std::cout << "  pre-warm: " << p.processed << "/" << p.total << " (cached " << p.cached
              << ", errors " << p.errors << ", ETA " << p.eta.count() << " ms)\n";
  };
  rediskit::CachePrewarmer warmer(cache, po);
  auto loader = [&auth](std::vector<std::string> ids) { return auth.batch(std::move(ids)); };
  auto warmed = co_await warmer.async_run(participants, loader, use);
  std::cout << "pre-warm done: totalProcessed " << warmed.total_processed << ", cached "
            << warmed.cached << ", errors " << warmed.errors << ", duration "
            << warmed.duration_text() << '\n';

  // 2. The chat service's consumer keeps the cache in step with the auth service's events.
  rediskit::UserStreamOptions so;
  so.consumer_group = "chat-file-service-group";
  so.consumer_name = "chat-consumer-1";
  so.block = 100ms;
  so.start_id = "0";  // the group may be created after the first publish below: take it too
  rediskit::UserStreamConsumer<B> consumer(backend, cache, so);
  bool consumer_done = false;
  consumer.async_run([&](boost::system::error_code ec) {
    consumer_done = true;
    if (ec) std::cerr << "consumer: " << ec.message() << '\n';
  });

  // 3. The auth service updates a profile: database, cache, then the event (seed 001's flow).
  auto& jean = auth.users.at("1200");
  jean.fullName = "Jean Dupont";
  jean.updatedAt += 60000;
  co_await cache.async_set(jean, use);
  co_await publisher.async_publish(rediskit::UserEvent::updated(jean), use);
  // A late, older event (a retry of an earlier update) does not go backwards.
  auto old = jean;
  old.fullName = "Outdated Name";
  old.updatedAt -= 120000;
  co_await publisher.async_publish(rediskit::UserEvent::updated(old), use);
  co_await publisher.async_publish(rediskit::UserEvent::deleted("1201"), use);

  asio::steady_timer wait(backend.get_executor());
  while (consumer.stats().processed < 3) {
    wait.expires_after(10ms);
    co_await wait.async_wait(use);
  }
  auto st = co_await consumer.async_stats(use);
  std::cout << "consumer: processed " << st.processed << ", pending " << st.pending << ", lag "
            << st.lag << '\n';

  // 4. Reads: a batch of 6 (one round trip), then cache-aside for what is missing.
  std::vector<std::string> ids{"1200", "1201", "1099", "1300", "1200", "3999"};
  auto b = co_await cache.async_batch_get(ids, use);
  std::cout << "batch get: ";
  for (std::size_t i = 0; i < ids.size(); ++i)
    std::cout << ids[i] << "=" << (b.profiles[i] ? b.profiles[i]->fullName : "-") << "  ";
  std::cout << "\n  missing:";
  for (auto const& id : b.missing) std::cout << ' ' << id;
  std::cout << '\n';
  auto filled = co_await cache.async_batch_get_or_load(ids, loader, use);
  std::cout << "after loading the missing ones: still missing " << filled.missing.size()
            << " (" << filled.missing.front() << ", unknown to the auth service)\n";

  auto stats = co_await cache.async_get_stats(use);
  std::cout << "cache stats: totalCached " << stats.total_cached << ", ttl " << stats.ttl
            << " s (" << stats.ttl_hours << " h), hits " << stats.hits << ", misses "
            << stats.misses << "; auth batch calls " << auth.batch_calls << '\n';
  if (cache.near_cache().enabled())
    std::cout << "near cache: " << stats.near.hits << " hits, " << stats.near.entries
              << " profiles kept, " << stats.near.invalidations << " invalidations\n";

  consumer.stop();  // finishes its batch, acks, returns
  while (!consumer_done) {
    wait.expires_after(10ms);
    co_await wait.async_wait(use);
  }
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
    std::cerr << "user_profiles: " << e.what() << '\n';
    return 1;
  }
}
