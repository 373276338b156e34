// rediskit quick start: one pipelined connection, typed replies, no string parsing.
// With REDIS_HOST / REDIS_PORT set it talks to that server; without, it shows the same request
// and reply going through rediskit's RESP3 codec offline (the in-memory backend comes next).
#include <rediskit/rediskit.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <tuple>

namespace asio = boost::asio;
using Profile = std::map<std::string, std::string>;

rediskit::resp3::Request make_request() {
  rediskit::resp3::Request req;  // three commands, one round trip
  req.push("HSET", "chat:user:profile:42", "name", "Alice", "status", "online");
  req.push("EXPIRE", "chat:user:profile:42", 7 * 24 * 3600);
  req.push("HGETALL", "chat:user:profile:42");
  return req;
}

void print(Profile const& profile) {
  for (auto const& [field, value] : profile) std::cout << "  " << field << " = " << value << "\n";
}

asio::awaitable<void> with_server(rediskit::ConnectionConfig cfg) {
  rediskit::Connection conn(co_await asio::this_coro::executor, std::move(cfg));
  auto const req = make_request();
  std::tuple<long long, bool, Profile> resp;  // one element per command
  co_await conn.async_exec(req, resp, asio::use_awaitable);
  std::cout << "from Redis:\n";
  print(std::get<2>(resp));
}

int main() {
  if (char const* host = std::getenv("REDIS_HOST")) {
    rediskit::ConnectionConfig cfg{.host = host};
    if (char const* port = std::getenv("REDIS_PORT")) cfg.port = std::uint16_t(std::atoi(port));
    asio::io_context ioc;
    asio::co_spawn(ioc, with_server(std::move(cfg)), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    ioc.run();
    return 0;
  }
  // Offline: the bytes rediskit writes, and a RESP3 reply adapted into the same types.
  std::cout << "request on the wire: " << make_request().payload().size() << " bytes, "
            << make_request().commands() << " commands\n";
  std::string_view const reply = ":2\r\n#t\r\n%2\r\n$4\r\nname\r\n$5\r\nAlice\r\n"
                                 "$6\r\nstatus\r\n$6\r\nonline\r\n";
  std::tuple<long long, bool, Profile> resp;
  if (auto ec = rediskit::resp3::parse_all(reply, resp)) {
    std::cerr << "parse error: " << ec.message() << "\n";
    return 1;
  }
  std::cout << "decoded offline (set REDIS_HOST to use a server):\n";
  print(std::get<2>(resp));
  return 0;
}
