// rediskit quick start: one piece of chat code, any backend. It runs on the in-memory backend
// (no server needed); with REDIS_URL (or REDIS_HOST / REDIS_PORT) set, the same code runs on
// that Redis server.
#include <rediskit/rediskit.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>

namespace asio = boost::asio;
namespace cmd = rediskit::cmd;
using namespace std::chrono_literals;

// Written once, against the Backend concept: typed commands, no strings to parse.
template <rediskit::Backend B>
asio::awaitable<void> chat(B& db) {
  auto use = asio::use_awaitable;
  std::map<std::string, std::string> const alice{{"name", "Alice"}, {"status", "online"}};

  // A profile hash with a 7-day TTL, and a read of it: one round trip.
  auto [fields, ttl_set, profile] =
      co_await db.async_exec(rediskit::batch(cmd::hset{.key = "chat:user:42", .fields = alice},
                                             cmd::expire{.key = "chat:user:42", .ttl = 168h},
                                             cmd::hgetall{"chat:user:42"}),
                             use);
  std::cout << "profile (" << fields << " fields, ttl set: " << ttl_set << "):";
  for (auto const& [field, value] : profile) std::cout << ' ' << field << '=' << value;
  std::cout << '\n';

  // Votes: a sorted set, updated and read atomically.
  auto [score, top] = co_await db.async_exec(
      rediskit::transaction(cmd::zincrby{.key = "chat:votes", .increment = 1, .member = "42"},
                            cmd::zrange_withscores{.key = "chat:votes", .rev = true}),
      use);
  std::cout << "votes for 42: " << score << ", leader: " << top.at(0).first << '\n';

  // Pub/sub: a subscriber gets what is published after its subscription is in effect.
  auto sub = db.make_subscriber();
  co_await sub.async_subscribe("chat:room:1", use);
  co_await db.async_exec(cmd::publish{.channel = "chat:room:1", .message = "hello"}, use);
  rediskit::Message m = co_await sub.async_receive(use);
  std::cout << "message on " << m.channel << ": " << m.payload << '\n';

  // Errors are error codes, with the server's text apart.
  auto [ec, n] = co_await db.async_exec(cmd::incr{"chat:user:42"},
                                        asio::as_tuple(asio::use_awaitable));
  std::cout << "INCR on a hash: " << ec.message() << '\n';
  co_await db.async_exec(cmd::del{.keys = {"chat:user:42", "chat:votes"}}, use);
}

template <class B>
int run(asio::io_context& ioc, B& db) {
  std::cout << "backend: " << B::name << '\n';
  asio::co_spawn(ioc, chat(db), [&](std::exception_ptr e) {
    db.close();  // lets ioc.run() return: a RedisBackend's connections stay up until closed
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (boost::system::system_error const& se) {
      // A lost Redis: "cannot reach Redis at host:port: connection refused (...)" says more.
      if constexpr (requires { db.metrics().last_failure; })
        if (rediskit::is_outage(se.code()) && !db.metrics().last_failure.empty())
          throw std::runtime_error(db.metrics().last_failure);
      throw;
    }
  });
  ioc.run();
  return 0;
}

int main() {
  // A bad REDIS_URL, or a Redis that cannot be reached: one line, status 1, never an abort.
  try {
    asio::io_context ioc;
    if (std::getenv("REDIS_URL") || std::getenv("REDIS_HOST")) {
      rediskit::RedisBackend db(ioc, rediskit::RedisConfig::from_env());
      return run(ioc, db);
    }
    rediskit::MemoryBackend db(ioc);
    return run(ioc, db);
  } catch (std::exception const& e) {
    std::cerr << "quick_start: " << e.what() << '\n';
    return 1;
  }
}
