// Connection against a scripted fake server on loopback that misbehaves: garbage, absurd
// lengths, replies nobody asked for, a reply cut short. Each gives a clear error, never a
// crash, a hang or a reply delivered to the wrong caller.
#include "support/run_coroutine.hpp"

#include <rediskit/connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using rediskit::Connection;
using rediskit::Error;
using rediskit::resp3::Request;
using rediskit::test::as_tuple_awaitable;
using tcp = asio::ip::tcp;

namespace {


// Accepts one client; for each element of `script`, waits for the client to send something
// and answers with that element ("<close>": closes the link at once). Then keeps the socket
// open until the client goes away.
asio::awaitable<void> fake_server(tcp::acceptor& acceptor, std::vector<std::string> script) {
  tcp::socket s = co_await acceptor.async_accept(asio::use_awaitable);
  char buf[4096];
  for (auto const& answer : script) {
    if (answer == "<close>") co_return;  // drops the link
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), as_tuple_awaitable);
    if (ec) co_return;
    co_await asio::async_write(s, asio::buffer(answer), as_tuple_awaitable);
  }
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), as_tuple_awaitable);
    if (ec) co_return;
  }
}

rediskit::ConnectionConfig no_retry(unsigned short port) {
  rediskit::ConnectionConfig cfg;
  cfg.port = port;
  cfg.reconnect.max_attempts = 0;  // one link per test: the fake server accepts once
  cfg.connect_timeout = 2s;
  return cfg;
}

// Runs `client` against a fake server answering `script`, within a time limit.
template <class Client>
void with_fake_server(std::vector<std::string> script, Client client) {
  asio::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto const port = acceptor.local_endpoint().port();
  asio::co_spawn(ioc, fake_server(acceptor, std::move(script)), asio::detached);
  bool done = false;
  std::exception_ptr failure;
  asio::co_spawn(ioc, client(ioc, port), [&](std::exception_ptr e) {
    done = true;
    failure = e;
    acceptor.close();
  });
  ioc.run_for(10s);
  BOOST_REQUIRE_MESSAGE(done, "the client did not finish in time (a hang)");
  if (failure) std::rethrow_exception(failure);
}

// HELLO's reply and the readiness PING's (see ConnectionConfig::max_loading_timeout).
constexpr char hello_ok[] = "%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n+PONG\r\n";

}  // namespace

BOOST_AUTO_TEST_SUITE(connection_hostile_server)

BOOST_AUTO_TEST_CASE(garbage_instead_of_a_handshake_reply) {
  with_fake_server({"HTTP/1.1 400 Bad Request\r\n\r\n"},
                   [](asio::io_context& ioc, unsigned short port) -> asio::awaitable<void> {
                     Connection conn(ioc, no_retry(port));
                     auto [ec] = co_await conn.async_connect(as_tuple_awaitable);
                     BOOST_TEST(ec == Error::resp3_invalid_type, ec.message());
                     BOOST_TEST(conn.health() == rediskit::HealthStatus::disconnected);
                   });
}

BOOST_AUTO_TEST_CASE(a_server_that_refuses_hello_is_a_handshake_error) {
  with_fake_server({"-ERR unknown command 'HELLO'\r\n+PONG\r\n"},
                   [](asio::io_context& ioc, unsigned short port) -> asio::awaitable<void> {
                     Connection conn(ioc, no_retry(port));
                     auto [ec] = co_await conn.async_connect(as_tuple_awaitable);
                     BOOST_TEST(ec == Error::handshake_failed, ec.message());
                   });
}

BOOST_AUTO_TEST_CASE(absurd_bulk_length_fails_the_request_without_allocating_it) {
  with_fake_server({hello_ok, "$99999999999999\r\n"},
                   [](asio::io_context& ioc, unsigned short port) -> asio::awaitable<void> {
                     Connection conn(ioc, no_retry(port));
                     co_await conn.async_connect(asio::use_awaitable);
                     Request req;
                     req.push("GET", "k");
                     std::string v;
                     auto [ec] = co_await conn.async_exec(req, v, as_tuple_awaitable);
                     BOOST_TEST(ec == Error::connection_lost, ec.message());
                     BOOST_TEST(conn.metrics().last_error == Error::resp3_bulk_too_large);
                   });
}

BOOST_AUTO_TEST_CASE(an_unsolicited_reply_drops_the_link) {
  with_fake_server({hello_ok, "$3\r\nabc\r\n+EXTRA\r\n"},
                   [](asio::io_context& ioc, unsigned short port) -> asio::awaitable<void> {
                     Connection conn(ioc, no_retry(port));
                     co_await conn.async_connect(asio::use_awaitable);
                     Request req;
                     req.push("GET", "k");
                     std::string v;
                     co_await conn.async_exec(req, v, asio::use_awaitable);
                     BOOST_TEST(v == "abc");  // its own reply, not the extra one
                     // Nothing is pending when the extra reply is read: it cannot be paired
                     // with any request, so the link is dropped.
                     asio::steady_timer t(ioc, 100ms);
                     co_await t.async_wait(asio::use_awaitable);
                     BOOST_TEST(conn.metrics().last_error == Error::unsolicited_reply);
                     BOOST_TEST(conn.health() != rediskit::HealthStatus::ok);
                   });
}

BOOST_AUTO_TEST_CASE(a_reply_cut_short_fails_every_written_request) {
  with_fake_server({hello_ok, "$10\r\nabc", "<close>"},
                   [](asio::io_context& ioc, unsigned short port) -> asio::awaitable<void> {
                     Connection conn(ioc, no_retry(port));
                     co_await conn.async_connect(asio::use_awaitable);
                     Request req;
                     req.push("GET", "k");
                     req.push("GET", "l");
                     std::tuple<std::string, std::string> v;
                     auto [ec] = co_await conn.async_exec(req, v, as_tuple_awaitable);
                     BOOST_TEST(ec == Error::connection_lost, ec.message());
                   });
}

BOOST_AUTO_TEST_CASE(a_reply_of_the_wrong_type_keeps_the_link) {
  with_fake_server({hello_ok, "*2\r\n:1\r\n:2\r\n", "+PONG\r\n"},
                   [](asio::io_context& ioc, unsigned short port) -> asio::awaitable<void> {
                     Connection conn(ioc, no_retry(port));
                     co_await conn.async_connect(asio::use_awaitable);
                     Request get;
                     get.push("GET", "k");
                     std::string v;
                     auto [ec] = co_await conn.async_exec(get, v, as_tuple_awaitable);
                     BOOST_TEST(ec == Error::unexpected_reply_type, ec.message());
                     Request ping;
                     ping.push("PING");
                     std::string pong;
                     co_await conn.async_exec(ping, pong, asio::use_awaitable);
                     BOOST_TEST(pong == "PONG");
                     BOOST_TEST(conn.metrics().errors == 0u);
                   });
}

BOOST_AUTO_TEST_SUITE_END()
