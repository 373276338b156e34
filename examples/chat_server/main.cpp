// chat_server: seed 000-004's chat platform on rediskit (README.md, PROTOCOL.md).
//
//   chat_server [--port N] [--host H] [--redis URL] [--presence-ttl-ms N] [--prefix P]
//               [--name NAME] [--static DIR] [--send-limit N]
//
// Without --redis (or REDIS_URL): MemoryBackend, one process. With it: FallbackBackend, Redis
// with an in-memory fallback, so several processes share one Redis and each keeps serving its
// own users when Redis is down.
#include "chat.hpp"

#include <cstdlib>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>

#ifndef CHAT_STATIC_DIR
#define CHAT_STATIC_DIR "static"
#endif

using namespace std::chrono_literals;

namespace {

[[noreturn]] void usage(std::string const& why) {
  std::cerr << "chat_server: " << why
            << "\nusage: chat_server [--port N] [--host H] [--redis URL] [--presence-ttl-ms N]"
               " [--prefix P] [--name NAME] [--static DIR] [--send-limit N]\n";
  std::exit(2);
}

long long number(std::string const& flag, std::string const& v, long long lo, long long hi) {
  try {
    std::size_t used = 0;
    auto const n = std::stoll(v, &used);
    if (used == v.size() && n >= lo && n <= hi) return n;
  } catch (std::exception const&) {
  }
  usage(flag + " takes a number from " + std::to_string(lo) + " to " + std::to_string(hi) +
        ", got \"" + v + "\"");
}

chat::Options parse(int argc, char** argv) {
  chat::Options o;
  o.static_dir = CHAT_STATIC_DIR;
  if (char const* u = std::getenv("REDIS_URL")) o.redis_url = u;
  for (int i = 1; i < argc; ++i) {
    std::string const a = argv[i];
    if (a == "--help" || a == "-h") usage("the chat server of rediskit's examples");
    if (i + 1 >= argc) usage(a + " needs a value");
    std::string const v = argv[++i];
    if (a == "--port")
      o.port = static_cast<unsigned short>(number(a, v, 0, 65535));
    else if (a == "--host")
      o.host = v;
    else if (a == "--redis")
      o.redis_url = v;
    else if (a == "--presence-ttl-ms")
      o.presence_ttl = std::chrono::milliseconds(number(a, v, 300, 86'400'000));
    else if (a == "--prefix")
      o.prefix = v;
    else if (a == "--name")
      o.name = v;
    else if (a == "--static")
      o.static_dir = v;
    else if (a == "--send-limit")
      o.send_limit = number(a, v, 1, 1'000'000);
    else
      usage("unknown option " + a);
  }
  if (o.prefix.empty() || o.prefix.find_first_of("{} ") != std::string::npos)
    usage("--prefix must be non-empty, without spaces or braces");
  return o;
}

template <class B>
int serve(boost::asio::io_context& ioc, B& db, chat::Options opt) {
  chat::Server<B> server(ioc, db, std::move(opt));
  // Shutdown is complete: every socket closed and its user offline. Whatever the backend still
  // has pending (subscribers, health checks) is abandoned with the loop.
  server.on_stopped_ = [&] {
    db.close();
    ioc.stop();
  };
  int status = 0;
  auto run = [&]() -> boost::asio::awaitable<void> {
    if constexpr (requires { db.async_connect(); }) {
      // Serve once Redis answered or was found down (then from memory): the bus subscription
      // and the first reads go where the commands will go.
      auto [ec] = co_await db.async_connect(boost::asio::as_tuple(boost::asio::use_awaitable));
      if (ec)
        std::cerr << "chat_server: Redis is not reachable (" << ec.message()
                  << "): serving from memory until it is\n";
    }
    co_await server.start();
  };
  boost::asio::co_spawn(ioc, run(), [&](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (std::exception const& x) {
      std::cerr << "chat_server: " << x.what() << '\n';
    }
    status = 1;
    db.close();
    ioc.stop();
  });
  ioc.run();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = parse(argc, argv);
  try {
    boost::asio::io_context ioc(1);
    if (!opt.redis_url.empty()) {
      rediskit::FallbackConfig cfg;
      cfg.grace_period = 1s;
      cfg.log = [name = opt.name](rediskit::LogLevel, std::string_view line) {
        std::cerr << "[" << name << "] " << line << std::endl;
      };
      boost::system::error_code uec;
      std::string what;
      auto rc = rediskit::RedisConfig::from_url(opt.redis_url, uec, &what);
      if (uec) {
        std::cerr << "chat_server: --redis / REDIS_URL \"" << opt.redis_url
                  << "\" is not a Redis URL: " << what << '\n';
        return 1;
      }
      rediskit::FallbackBackend<> db(ioc, rc, cfg);
      return serve(ioc, db, std::move(opt));
    }
    // The event channel's subscriber is in this process: a burst of logins publishes faster
    // than one turn of the loop reads, so it may hold more than the default 4 096 events
    // (dropped ones are counted in /metrics as bus_gaps).
    rediskit::MemoryConfig cfg;
    cfg.max_queued_messages = std::size_t{1} << 17;
    rediskit::MemoryBackend db(ioc, cfg);
    return serve(ioc, db, std::move(opt));
  } catch (std::exception const& e) {
    std::cerr << "chat_server: " << e.what() << '\n';
    return 1;
  }
}
