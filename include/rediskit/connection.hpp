// rediskit: Connection, one pipelined RESP3 link to a Redis server (seed 000's Redis clients,
// seed 003's "ECONNRESET must never crash, retries are limited").
//
// A Connection is bound to an executor. Any number of coroutines (or callbacks) may call
// async_exec on it concurrently: requests queue while a write is in flight and go out together in
// the next single write (automatic pipelining); replies are matched to callers in order. Server
// pushes (pub/sub messages, client-side-cache invalidations) are read with async_receive.
//
// The link is looked after for you:
//  * connect = resolve + TCP connect + the TLS handshake (TlsConfig::enabled, with
//    <rediskit/tls.hpp> in the program) + HELLO 3 (AUTH, SETNAME) + SELECT + the setup
//    request, all under connect_timeout; then the subscriptions are made again, first thing
//    on the new link (one that the server refuses is dropped and reported as a push, see
//    async_subscribe);
//  * a PING health check on an idle link detects half-open TCP connections;
//  * when the link drops, every request already written fails at once with
//    Error::connection_lost ("it may have executed": it is never re-sent unless the request is
//    marked idempotent), requests not yet written wait for the reconnection (or fail at once
//    with Error::not_connected if they ask to), and the connection retries with exponential
//    backoff and jitter up to ReconnectPolicy::max_attempts; then it gives up
//    (Error::reconnect_gave_up) until a new request or async_connect starts a new cycle;
//  * a wrong password is not retried (Error::auth_failed), and never appears in a log line;
//    neither is a certificate the server's name or CA does not match, nor any other TLS failure
//    that a retry would meet again (Error::tls_*: see rediskit/tls.hpp).
//
// Thread safety: a Connection is not thread-safe. Call it from its executor only; when the
// io_context runs on several threads, give the Connection a strand.
#pragma once

#include <rediskit/error.hpp>
#include <rediskit/reconnect_policy.hpp>
#include <rediskit/resp3/adapt.hpp>
#include <rediskit/resp3/node.hpp>
#include <rediskit/resp3/parser.hpp>
#include <rediskit/resp3/request.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

namespace rediskit {

/// Health of a connection, as seed 000's getHealthStatus(): "OK", "DEGRADED", "DISCONNECTED".
enum class HealthStatus : std::uint8_t {
  ok,            ///< connected and answering
  degraded,      ///< connecting or reconnecting: requests wait (or fail fast, if they ask to)
  disconnected,  ///< not connected and not trying (never connected, gave up, or closed)
};

constexpr std::string_view to_string(HealthStatus s) noexcept {
  switch (s) {
    case HealthStatus::ok: return "OK";
    case HealthStatus::degraded: return "DEGRADED";
    case HealthStatus::disconnected: return "DISCONNECTED";
  }
  return "UNKNOWN";
}

inline std::ostream& operator<<(std::ostream& os, HealthStatus s) { return os << to_string(s); }

enum class LogLevel : std::uint8_t { debug, info, warning, error };

/// Receives the connection's log lines. Empty by default: rediskit prints nothing on its own.
/// Lines never contain a password.
using LogSink = std::function<void(LogLevel, std::string_view)>;

/// Completion of ConnectionConfig::locate: the host and port to connect to, or an error.
using LocateHandler =
    std::function<void(boost::system::error_code, std::string host, std::uint16_t port)>;

/// TLS on a connection (Redis's `tls-port`). Off by default; `rediss://` URLs and REDIS_TLS turn
/// it on (see RedisConfig). The server's certificate is verified against `ca_file` (or the
/// system's CA store) and must be issued for the host name connected to (`server_name`, by
/// default `host`; an IP address is checked against the certificate's IP entries): a
/// certificate that fails is Error::tls_certificate_untrusted or Error::tls_host_name_mismatch,
/// never retried. Paths are logged when a file cannot be used; the key itself never is.
struct TlsConfig {
  bool enabled = false;
  std::string ca_file{};      ///< PEM file of the CAs to trust; empty: the system's default store
  std::string cert_file{};    ///< client certificate (PEM), for servers with tls-auth-clients
  std::string key_file{};     ///< its private key (PEM, not encrypted)
  /// The name the server's certificate must be issued for, also sent as SNI. Empty: `host`.
  /// Set it when connecting by IP address (or through a tunnel) to a server whose certificate
  /// names a host.
  std::string server_name{};
  /// DANGEROUS: accepts any certificate from anyone (no chain, no host-name check), so a
  /// man in the middle reads the password and every command. For a throwaway test server
  /// only; never settable from a URL or the environment. Prefer ca_file with the server's CA.
  bool dangerously_skip_verification = false;
};

/// Configuration of a Connection. An aggregate: use designated initialisers,
/// `ConnectionConfig{.host = "redis", .port = 6380, .password = secret}`.
struct ConnectionConfig {
  std::string host = "127.0.0.1";  ///< with `locate`: the last target it named
  std::uint16_t port = 6379;
  std::string username{};    ///< ACL user; empty means "default" when a password is set
  std::string password{};    ///< empty: no AUTH
  int database = 0;          ///< SELECT after connecting when not 0
  std::string client_name{};  ///< CLIENT SETNAME (through HELLO), shown by CLIENT LIST
  std::chrono::milliseconds connect_timeout{5000};  ///< resolve + connect + TLS + handshake
  std::chrono::milliseconds health_check_interval{2000};  ///< 0 disables; see below
  bool tcp_keepalive = true;
  TlsConfig tls{};  ///< off by default
  ReconnectPolicy reconnect{};
  /// Where to connect, when the address can move (RedisBackend sets it in Sentinel mode):
  /// asked before every connection attempt, under connect_timeout. It must call its argument
  /// once, never inside the call, with a host and port, or with an error:
  /// Error::auth_failed, Error::master_not_found and Error::invalid_config end the cycle (as a
  /// wrong password does), any other error is retried like a refused connect.
  std::function<void(LocateHandler)> locate{};
  /// The server must be a master: ROLE is checked in every handshake (a replica fails the
  /// attempt with Error::not_master, retried with `reconnect`), and a READONLY reply (a master
  /// demoted under us) relocates the connection (see Connection::relocate).
  bool require_master = false;
  /// Sent after the handshake on every (re)connection, before any queued request: e.g.
  /// CLIENT TRACKING ON, so that session state survives a reconnection.
  resp3::Request setup{};
  /// Pushes kept while nobody receives them; beyond, the oldest are dropped and the next
  /// async_receive reports Error::pushes_dropped once.
  std::size_t max_queued_pushes = 4096;
  /// Requests that may wait for a reconnection; beyond, new ones fail with not_connected.
  std::size_t max_waiting_requests = 65536;
  /// A request with no reply within this completes with Error::timeout (0: never; seed 002
  /// uses 5 s). Its late reply is read and dropped. Diagnostics::detail says whether it was
  /// written ("it may have run") or never sent. resp3::Request::Config::timeout overrides it.
  std::chrono::milliseconds command_timeout{0};
  /// false: while the link is not up, requests fail at once with Error::not_connected instead
  /// of waiting for the (re)connection, which such a request starts (ioredis's
  /// enableOfflineQueue). Call async_connect first. When the link breaks, the requests not yet
  /// written fail with not_connected and those written with connection_lost, reads included:
  /// nothing waits for the next link (what FallbackBackend needs of its primary).
  bool offline_queue = true;
  /// While the server loads its dataset (after a restart, or a replica's full sync), it
  /// refuses commands with LOADING. Every handshake ends with a PING that checks it: while the
  /// server loads, the handshake runs again every 100 ms and requests wait in the queue; after
  /// this long they fail with Error::loading (seed 002's maxLoadingTimeout; 0: no check, a
  /// LOADING handshake is retried like a refused connection). Without the offline queue,
  /// requests fail with Error::loading at once. A LOADING reply on a link that was already
  /// ready (DEBUG RELOAD, a replica starting a full sync) reaches its request as
  /// Error::loading: it did not run.
  std::chrono::milliseconds max_loading_timeout{5000};
  resp3::ParserConfig parser{};
  LogSink log{};
};
// About health_check_interval: on an idle link a PING is sent every interval; if a reply is
// awaited and nothing at all was read during a whole interval, the link is declared dead and
// reconnected. A connection that runs blocking commands (BLPOP, XREADGROUP BLOCK) longer than
// the interval must have the health check off or a longer interval: rediskit gives those
// commands connections of their own for that reason.

/// Counters of seed 000's RedisService.metrics, plus traffic figures.
struct ConnectionMetrics {
  std::uint64_t connections_created = 0;  ///< successful handshakes, the first one included
  std::uint64_t reconnections = 0;        ///< successful handshakes after a lost link
  std::uint64_t errors = 0;               ///< failed attempts and lost links
  std::uint64_t requests_sent = 0;
  std::uint64_t writes = 0;  ///< socket writes: requests_sent / writes is the pipelining factor
  std::uint64_t replies_received = 0;
  std::uint64_t pushes_received = 0;
  std::uint64_t pushes_dropped = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t bytes_read = 0;
  std::optional<std::chrono::system_clock::time_point> last_connected_at;
  std::optional<std::chrono::system_clock::time_point> last_error_at;
  boost::system::error_code last_error;
  /// Why the connection last gave up, for a person: "cannot reach Redis at 127.0.0.1:6398:
  /// connection refused (...) (4 attempts in 1.0 s)". Requests that fail then get it in
  /// Diagnostics::detail. Never contains a password.
  std::string last_failure;
};

namespace detail {
class ConnectionImpl;
/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE (see detail::Subscription).
enum class SubscriptionKind : std::uint8_t { channel, pattern, shard };
}

/// One pipelined RESP3 connection (see the top of this file).
///
/// Every async_ function takes a completion token last (default boost::asio::deferred, so
/// `co_await conn.async_exec(req, resp)` works in a coroutine; use_future gives a blocking
/// call; a lambda gives a callback). No operation ever completes inside its initiating call.
/// Objects passed by reference (request, response, diagnostics) must stay alive until the
/// operation completes. A deferred operation (the default token) must be started while its
/// Connection is alive; destroying the Connection completes what is pending with
/// connection_closed.
class Connection {
 public:
  using executor_type = boost::asio::any_io_executor;

  explicit Connection(executor_type ex, ConnectionConfig cfg = {});
  explicit Connection(boost::asio::io_context& ctx, ConnectionConfig cfg = {})
      : Connection(ctx.get_executor(), std::move(cfg)) {}
  Connection(Connection&&) noexcept = default;
  Connection& operator=(Connection&& other) noexcept;
  Connection(Connection const&) = delete;
  Connection& operator=(Connection const&) = delete;
  /// Closes the link; pending operations complete with Error::connection_closed.
  ~Connection();

  executor_type get_executor() const noexcept;

  /// Connects (with the retries of config().reconnect) and completes once the handshake is done.
  /// Handler: void(error_code). Completes at once (posted) when already connected. Errors: the
  /// last connect error (e.g. connection_refused, Error::connect_timeout), Error::auth_failed,
  /// Error::handshake_failed. Cancellation (any type) completes this wait with
  /// operation_aborted; the connection attempt itself goes on.
  template <class Token = boost::asio::deferred_t>
  auto async_connect(Token&& token = {});

  /// Sends `req` and adapts its replies into `resp` (see resp3::ResponseAdapter for the
  /// types it takes: a std::tuple takes one reply per element; resp3::Tree and resp3::ignore
  /// take any number). Handler: void(error_code).
  /// Errors: a server error reply (Error::server_error or a more specific code such as
  /// Error::wrong_type; its text goes to `diag` with the second overload), adapter errors
  /// (Error::unexpected_reply_type, ...: the other replies are still adapted), Error::
  /// connection_lost (written, then the link dropped: it may have executed), Error::
  /// not_connected, Error::reconnect_gave_up, Error::invalid_request.
  /// A request whose commands all reply with pushes (SUBSCRIBE) completes once written.
  /// Cancellation (any type): a request not yet written is removed; one already written
  /// completes with operation_aborted and its reply is read and discarded when it comes, so it
  /// can never reach a later request.
  template <class Response, class Token = boost::asio::deferred_t>
  auto async_exec(resp3::Request const& req, Response& resp, Token&& token = {});

  template <class Response, class Token = boost::asio::deferred_t>
  auto async_exec(resp3::Request const& req, Response& resp, Diagnostics& diag,
                  Token&& token = {});

  /// Waits for the next server push (a pub/sub message, a subscribe confirmation, an
  /// invalidation). Handler: void(error_code, resp3::Tree). Pushes that arrive while nobody
  /// waits are queued (bounded by max_queued_pushes). Errors: Error::pushes_dropped (once,
  /// after pushes were dropped; receiving may go on), Error::resubscribed (once, after a
  /// reconnection, when the subscriptions are in effect again: what was published while the
  /// link was down is lost; receiving may go on), Error::already_receiving,
  /// Error::connection_closed, operation_aborted on cancellation.
  template <class Token = boost::asio::deferred_t>
  auto async_receive(Token&& token = {});

  /// Subscribes to channels (or patterns with async_psubscribe) and remembers them, so that they
  /// are subscribed again after a reconnection. `channels` is one string or a range of
  /// strings. Handler: void(error_code), once the server has taken the change (its confirmations
  /// arrive as pushes, async_receive). A refusal is an error and is not remembered:
  /// Error::no_permission for a channel outside the ACL user's (`&pattern`), server_error for
  /// other refusals (the server's text is logged); the connection stays usable. After a
  /// reconnection each name is subscribed again, one command each; a name refused then is
  /// forgotten and reported by a push as if the server had ended it: ["unsubscribe" /
  /// "punsubscribe" / "sunsubscribe", name, 0].
  template <class Channels, class Token = boost::asio::deferred_t>
  auto async_subscribe(Channels const& channels, Token&& token = {});
  template <class Channels, class Token = boost::asio::deferred_t>
  auto async_psubscribe(Channels const& patterns, Token&& token = {});
  template <class Channels, class Token = boost::asio::deferred_t>
  auto async_unsubscribe(Channels const& channels, Token&& token = {});
  template <class Channels, class Token = boost::asio::deferred_t>
  auto async_punsubscribe(Channels const& patterns, Token&& token = {});

  /// Sharded pub/sub (Redis 7): SSUBSCRIBE / SUNSUBSCRIBE, whose messages come as
  /// ["smessage", channel, payload] pushes. On a cluster every channel of one call must be in
  /// one slot, and the node must serve it (or the refusal is Error::moved, its text in `diag`);
  /// ClusterBackend's subscriber routes them. After a reconnection they are subscribed again
  /// as channels are: one refused then (its slot moved) comes back as a
  /// ["sunsubscribe", channel, 0] push, as the server reports a slot that leaves the node.
  template <class Channels, class Token = boost::asio::deferred_t>
  auto async_ssubscribe(Channels const& channels, Token&& token = {});
  template <class Channels, class Token = boost::asio::deferred_t>
  auto async_ssubscribe(Channels const& channels, Diagnostics& diag, Token&& token = {});
  template <class Channels, class Token = boost::asio::deferred_t>
  auto async_sunsubscribe(Channels const& channels, Token&& token = {});

  /// The server may have moved (a Sentinel announced a new master): stop writing, let the
  /// requests already written get their replies, then reconnect at once, asking config().locate
  /// again. Nothing fails because of it; requests not written yet wait for the new link. While
  /// waiting to retry, retries at once (with a fresh retry budget). Otherwise a no-op: an
  /// attempt under way, or the next one, locates anyway.
  void relocate();

  /// Completes every pending request and the waiting receive with operation_aborted. The link
  /// stays up; replies of requests already written are discarded when they arrive.
  void cancel();

  /// Closes the link and stops reconnecting; pending operations complete with
  /// Error::connection_closed. Handler of async_close: void(error_code).
  void close();
  template <class Token = boost::asio::deferred_t>
  auto async_close(Token&& token = {});

  HealthStatus health() const noexcept;
  ConnectionMetrics const& metrics() const noexcept;
  ConnectionConfig const& config() const noexcept;

 private:
  template <class Channels, class Token>
  auto async_subscription(detail::SubscriptionKind kind, bool subscribe,
                          Channels const& channels, Diagnostics* diag, Token&& token);

  std::shared_ptr<detail::ConnectionImpl> impl_;
};

}  // namespace rediskit

#include <rediskit/impl/connection.hpp>
