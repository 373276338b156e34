// rediskit: error codes, the error category and the exception type.
//
// Every asynchronous operation of rediskit reports failure as a boost::system::error_code.
// Codes of the enum `rediskit::Error` belong to `rediskit::error_category()`; their messages
// name the problem and, where there is one, what to do about it. Server error text
// ("ERR unknown command ...") never goes into an error_code: it is kept apart in a
// `rediskit::Diagnostics` object (see connection.hpp), so that logs carry codes and a
// password or token typed into a command can never leak through an error message.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>

namespace rediskit {

/// Error codes of rediskit. Values are stable: they may be logged and compared.
enum class Error : int {
  // --- RESP3 protocol (the server sent bytes that are not valid RESP) -----------------------
  resp3_invalid_type = 1,      ///< a reply started with a byte that is no RESP type marker
  resp3_invalid_length,        ///< a length or count field is negative, empty or not a number
  resp3_bulk_too_large,        ///< a bulk string is longer than the configured maximum
  resp3_nesting_too_deep,      ///< aggregates nest deeper than the configured maximum
  resp3_invalid_number,        ///< an integer, double or big number field is malformed
  resp3_invalid_boolean,       ///< a boolean is neither #t nor #f
  resp3_line_too_long,         ///< no CRLF within the maximum line length
  resp3_missing_crlf,          ///< a bulk payload is not followed by CRLF
  resp3_streamed_not_supported,///< streamed strings/aggregates (length '?') are not supported

  // --- Adapting a reply into a C++ type -----------------------------------------------------
  unexpected_reply_type = 100, ///< the reply's RESP type does not fit the target C++ type
  unexpected_null,             ///< a null reply for a target that is not std::optional
  integer_out_of_range,        ///< an integer reply does not fit the target integer type
  not_a_number,                ///< a string reply was expected to hold a number and does not
  incompatible_size,           ///< reply count or aggregate size does not match the target

  // --- Errors replied by the server (text in Diagnostics) -----------------------------------
  server_error = 200,          ///< any server error without a more specific code below
  wrong_type,                  ///< WRONGTYPE: the key holds a value of another type
  no_script,                   ///< NOSCRIPT: the script is not in the server's cache
  read_only,                   ///< READONLY: the server is a read-only replica
  no_replicas,                 ///< NOREPLICAS: not enough replicas acknowledged
  busy_group,                  ///< BUSYGROUP: the consumer group already exists
  no_group,                    ///< NOGROUP: no such key or consumer group
  loading,                     ///< LOADING: the server is loading its dataset
  out_of_memory,               ///< OOM: maxmemory reached and the command may not run
  no_permission,               ///< NOPERM: the ACL user may not run this command
  exec_aborted,                ///< EXECABORT: a queued command was rejected; nothing ran
  moved,                       ///< MOVED: cluster slot served by another node
  ask,                         ///< ASK: cluster slot is migrating
  try_again,                   ///< TRYAGAIN: a multi-key command met a slot half migrated
  cluster_down,                ///< CLUSTERDOWN: the cluster cannot serve this slot now
  cross_slot,                  ///< CROSSSLOT: the keys of one command, script or transaction
                               ///< are in different hash slots
  too_many_redirects,          ///< a cluster command was redirected more than the limit allows

  // --- Connection --------------------------------------------------------------------------
  not_connected = 300,         ///< not connected and the request may not wait for it
  connection_lost,             ///< the link dropped after the request was written: it MAY have run
  connect_timeout,             ///< resolve + TCP connect + handshake took too long
  resolve_failed,              ///< the host name could not be resolved
  auth_failed,                 ///< WRONGPASS / NOAUTH: credentials rejected; not retried
  handshake_failed,            ///< HELLO 3 / SELECT / setup rejected by the server
  health_check_failed,         ///< no PONG in time: the link is considered dead
  reconnect_gave_up,           ///< every reconnection attempt failed; the link is down
  connection_closed,           ///< the connection was closed by the user
  invalid_request,             ///< the request is empty or cannot be sent as it is
  already_receiving,           ///< another async_receive is already waiting on this connection
  pushes_dropped,              ///< server pushes were dropped because the push queue was full
  unsolicited_reply,           ///< a reply arrived that no request was waiting for: link dropped
  closed_during_handshake,     ///< the server closed the link before answering HELLO (a TLS port?)
  tls_host_name_mismatch,      ///< TLS: the certificate is not for this host name; not retried
  tls_certificate_untrusted,   ///< TLS: the certificate chain does not verify; not retried
  tls_handshake_failed,        ///< TLS: the handshake failed (no TLS on this port?); not retried
  tls_handshake_timeout,       ///< TLS: no handshake answer on a first connection; not retried
  tls_setup_failed,            ///< TLS: a CA, certificate or key file cannot be used; not retried
  tls_unavailable,             ///< TLS configured, but <rediskit/tls.hpp> is not in the program
  timeout,                     ///< no reply within the command timeout (written: it may have run)
  resubscribed,                ///< a subscriber's link came back and its subscriptions were made
                               ///< again: messages published while it was down were lost

  // --- Configuration -----------------------------------------------------------------------
  invalid_config = 400,        ///< a configuration value (URL, environment variable) is malformed
  invalid_argument,            ///< a service was given an argument it cannot take (empty id, ...)

  // --- Services ----------------------------------------------------------------------------
  decode_failed = 500,         ///< a stored value does not decode into the requested type
  load_failed,                 ///< a loader or recalculation function failed (threw, or errored)
  operation_threw,             ///< an exception escaped a service operation (std::bad_alloc, ...)
  crypto_failed,               ///< OpenSSL's libcrypto failed (SHA-256, random bytes): nothing sent

  // --- Sentinel (RedisConfig::sentinels) ---------------------------------------------------
  master_not_found = 600,      ///< no Sentinel that answered knows a master of that name
  sentinels_unreachable,       ///< no Sentinel answered (down, wrong address, timeout)
  not_master,                  ///< the node the Sentinels named is not a master (failover under way)

  // --- Resilience (CircuitBreaker, StreamManager's write-ahead log) -------------------------------
  circuit_open = 700,          ///< the circuit breaker is open: the call was not attempted
  wal_full,                    ///< the write-ahead log is full: the event was not logged
  wal_io,                      ///< the write-ahead log's file could not be read or written
};

namespace detail {

class ErrorCategory final : public boost::system::error_category {
 public:
  // A fixed id makes the category unique even if several shared objects each hold a copy.
  constexpr ErrorCategory() noexcept : boost::system::error_category(0x7265'6469'736b'6974ULL) {}

  const char* name() const noexcept override { return "rediskit"; }

  std::string message(int ev) const override { return std::string(describe(ev)); }

  char const* message(int ev, char*, std::size_t) const noexcept override { return describe(ev); }

  static char const* describe(int ev) noexcept {
    switch (static_cast<Error>(ev)) {
      case Error::resp3_invalid_type:
        return "RESP protocol error: a reply starts with an unknown type byte (is this a Redis "
               "server, and is TLS configured the same on both sides?)";
      case Error::resp3_invalid_length:
        return "RESP protocol error: a length or element count is negative or malformed";
      case Error::resp3_bulk_too_large:
        return "RESP protocol error: a bulk string exceeds the configured maximum size "
               "(raise max_bulk_size if the server really sends values this large)";
      case Error::resp3_nesting_too_deep:
        return "RESP protocol error: aggregates nest deeper than the configured maximum depth";
      case Error::resp3_invalid_number:
        return "RESP protocol error: malformed integer, double or big number";
      case Error::resp3_invalid_boolean:
        return "RESP protocol error: a boolean is neither #t nor #f";
      case Error::resp3_line_too_long:
        return "RESP protocol error: no end of line within the maximum line length";
      case Error::resp3_missing_crlf:
        return "RESP protocol error: a bulk string is not terminated by CRLF";
      case Error::resp3_streamed_not_supported:
        return "RESP protocol error: streamed strings and aggregates are not supported";
      case Error::unexpected_reply_type:
        return "the reply's type does not fit the target C++ type (use a generic "
               "resp3::Tree response to see what the server replied)";
      case Error::unexpected_null:
        return "the server replied null for a target that is not std::optional";
      case Error::integer_out_of_range:
        return "an integer reply does not fit the target integer type";
      case Error::not_a_number:
        return "a reply that should hold a number does not";
      case Error::incompatible_size:
        return "the number of replies or elements does not match the target type";
      case Error::server_error:
        return "the server replied with an error (its text is in Diagnostics)";
      case Error::wrong_type:
        return "WRONGTYPE: the key holds a value of another type";
      case Error::no_script:
        return "NOSCRIPT: the script is not in the server's script cache";
      case Error::read_only:
        return "READONLY: the server is a read-only replica; writes must go to the master";
      case Error::no_replicas:
        return "NOREPLICAS: not enough replicas acknowledged the write";
      case Error::busy_group:
        return "BUSYGROUP: the consumer group already exists";
      case Error::no_group:
        return "NOGROUP: the stream key or the consumer group does not exist";
      case Error::loading:
        return "LOADING: the server is still loading its dataset; try again shortly";
      case Error::out_of_memory:
        return "OOM: the server reached maxmemory and refused the command";
      case Error::no_permission:
        return "NOPERM: the ACL user is not allowed to run this command or touch this key";
      case Error::exec_aborted:
        return "EXECABORT: the transaction was discarded because a queued command was rejected";
      case Error::moved:
        return "MOVED: the key's hash slot is served by another cluster node";
      case Error::ask:
        return "ASK: the key's hash slot is being migrated to another cluster node";
      case Error::try_again:
        return "TRYAGAIN: the keys' hash slot is half migrated; the command may run once the "
               "migration ends";
      case Error::cluster_down:
        return "CLUSTERDOWN: the cluster cannot serve this hash slot now (no master for it, "
               "or the cluster lost its majority)";
      case Error::cross_slot:
        return "CROSSSLOT: keys that one command, script or transaction touches are in "
               "different cluster hash slots (give them one hash tag, {...}; Diagnostics::"
               "detail names two of them)";
      case Error::too_many_redirects:
        return "the cluster redirected the command (MOVED / ASK / TRYAGAIN) more often than "
               "ClusterConfig::max_redirects allows: is a resharding stuck?";
      case Error::not_connected:
        return "not connected to Redis, and the request is not allowed to wait for a "
               "reconnection";
      case Error::connection_lost:
        return "the connection dropped after the request was sent: it may or may not have been "
               "executed, so it was not re-sent (mark idempotent requests to re-send them)";
      case Error::connect_timeout:
        return "connecting to Redis timed out (check host, port and connect_timeout)";
      case Error::resolve_failed:
        return "the Redis host name could not be resolved";
      case Error::auth_failed:
        return "Redis rejected the credentials (WRONGPASS/NOAUTH): check the user name and "
               "password; not retried";
      case Error::handshake_failed:
        return "the connection handshake (HELLO 3, SELECT or the setup request) was rejected "
               "by the server (Redis 6 or newer is required)";
      case Error::health_check_failed:
        return "no reply to the health-check PING in time: the link is considered dead";
      case Error::reconnect_gave_up:
        return "every reconnection attempt failed; the connection is down (see the last error "
               "in metrics)";
      case Error::connection_closed:
        return "the connection was closed";
      case Error::invalid_request:
        return "invalid request: it holds no command, or the response type cannot take its "
               "replies";
      case Error::already_receiving:
        return "another async_receive is already waiting on this connection";
      case Error::pushes_dropped:
        return "server pushes were dropped because the push queue was full (receive faster or "
               "raise max_queued_pushes)";
      case Error::resubscribed:
        return "the subscriber's connection was lost and made again, and its subscriptions are "
               "in effect again: messages published meanwhile were lost (pub/sub is at most "
               "once; read what you need from a history, then receive again)";
      case Error::unsolicited_reply:
        return "the server sent a reply that no request was waiting for; the link was dropped "
               "so that no reply can reach the wrong caller";
      case Error::closed_during_handshake:
        return "the server closed the connection before answering the handshake (HELLO): if it "
               "serves TLS on this port, connect with rediss:// (TlsConfig::enabled); otherwise "
               "see the server's log (maxclients, a proxy with no server behind it)";
      case Error::tls_host_name_mismatch:
        return "TLS: the server's certificate is not issued for the host name connected to "
               "(connect by a name the certificate lists, or set TlsConfig::server_name to it); "
               "not retried";
      case Error::tls_certificate_untrusted:
        return "TLS: the server's certificate could not be verified (not signed by a CA in "
               "TlsConfig::ca_file or the system store, expired, or malformed: give the CA that "
               "signed it in TlsConfig::ca_file / REDIS_TLS_CA_FILE); not retried";
      case Error::tls_handshake_failed:
        return "TLS handshake failed: the server does not speak TLS on this port (use Redis's "
               "tls-port, or redis:// for a plain port), or it refused this client (a client "
               "certificate required: set TlsConfig::cert_file and key_file); not retried";
      case Error::tls_handshake_timeout:
        return "TLS: no answer to the TLS handshake within connect_timeout on a first connection: "
               "the port is probably a plain (non-TLS) Redis port, which waits for a command "
               "forever (use redis://, or Redis's tls-port); not retried";
      case Error::tls_setup_failed:
        return "TLS set-up failed: the CA, certificate or key file in TlsConfig cannot be read or "
               "used, or the key does not match the certificate (the log line names the file); "
               "not retried";
      case Error::tls_unavailable:
        return "TLS is configured (rediss://, REDIS_TLS or TlsConfig::enabled) but this program "
               "was built without rediskit's TLS support: #include <rediskit/tls.hpp> (or "
               "<rediskit/rediskit.hpp>) in one of its source files and link OpenSSL::SSL; not "
               "retried";
      case Error::timeout:
        return "no reply within the command timeout (command_timeout or the request's own): "
               "if the request was written it may have run (see Diagnostics::detail)";
      case Error::invalid_config:
        return "invalid configuration: a URL or environment variable is malformed (the "
               "exception's text, or the `what` argument, names it)";
      case Error::invalid_argument:
        return "invalid argument: the service cannot take this value (an empty id, a negative "
               "count, ...; Diagnostics::detail names it)";
      case Error::decode_failed:
        return "a stored value does not decode into the requested type (Diagnostics::detail "
               "names the key, the field and the reason)";
      case Error::load_failed:
        return "a loader or recalculation function failed (it threw or reported an error): "
               "nothing was stored (for a cache, Diagnostics::detail holds its message)";
      case Error::operation_threw:
        return "an exception escaped a service operation (out of memory, or a throwing codec "
               "or callback): the operation stopped where it was";
      case Error::crypto_failed:
        return "OpenSSL's libcrypto failed to hash or to draw random bytes: nothing was sent "
               "and no token was issued or looked up (check the OpenSSL installation: its "
               "default provider and the system's random source)";
      case Error::master_not_found:
        return "no Sentinel knows a master of this name (check master_name / "
               "REDIS_SENTINEL_MASTER against the Sentinels' `sentinel monitor` lines)";
      case Error::sentinels_unreachable:
        return "no Sentinel answered SENTINEL get-master-addr-by-name in time (check sentinels / "
               "REDIS_SENTINELS, and that the Sentinels run)";
      case Error::not_master:
        return "the node the Sentinels named is not a master (ROLE): a failover is under way or "
               "the Sentinels lag; retried with the reconnect policy";
      case Error::circuit_open:
        return "the circuit breaker is open after too many connection failures: the call was "
               "not attempted (it closes again after its probe calls succeed; see "
               "CircuitBreaker::state())";
      case Error::wal_full:
        return "the write-ahead log is full (WalConfig::max_bytes): the event was not logged; "
               "raise the bound, or choose WalFull::drop_oldest";
      case Error::wal_io:
        return "the write-ahead log's file could not be read or written (its path, the disk): "
               "the log line names the file and the system error";
    }
    return "unknown rediskit error";
  }
};

}  // namespace detail

/// The error category of rediskit::Error.
inline boost::system::error_category const& error_category() noexcept {
  static constexpr detail::ErrorCategory instance;
  return instance;
}

inline boost::system::error_code make_error_code(Error e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Prints "rediskit:<value> <message>" (for logs and test failure messages).
inline std::ostream& operator<<(std::ostream& os, Error e) {
  return os << "rediskit:" << static_cast<int>(e) << ' ' << error_category().message(static_cast<int>(e));
}

/// Thrown on the throwing paths (e.g. `from_url` without an error_code, or when a completion
/// token such as use_awaitable turns an error_code into an exception).
class Exception : public boost::system::system_error {
 public:
  using boost::system::system_error::system_error;
};

/// Server error text kept apart from the error code (see the note at the top of this file).
struct Diagnostics {
  std::string server_message;  ///< e.g. "ERR unknown command 'FOO'"; empty if none
  /// What rediskit found wrong on this side, e.g. "key 'user:1', field 'age': expected an
  /// integer"; empty if none.
  std::string detail;
  void clear() noexcept {
    server_message.clear();
    detail.clear();
  }
};

/// Maps the prefix of a server error message to the most specific rediskit::Error.
inline Error server_error_code(std::string_view message) noexcept {
  auto const space = message.find(' ');
  std::string_view const prefix = message.substr(0, space);
  struct Entry {
    std::string_view prefix;
    Error code;
  };
  static constexpr Entry table[] = {
      {"WRONGTYPE", Error::wrong_type},   {"NOSCRIPT", Error::no_script},
      {"READONLY", Error::read_only},     {"NOREPLICAS", Error::no_replicas},
      {"BUSYGROUP", Error::busy_group},   {"NOGROUP", Error::no_group},
      {"LOADING", Error::loading},        {"OOM", Error::out_of_memory},
      {"NOPERM", Error::no_permission},   {"EXECABORT", Error::exec_aborted},
      {"MOVED", Error::moved},            {"ASK", Error::ask},
      {"TRYAGAIN", Error::try_again},     {"CLUSTERDOWN", Error::cluster_down},
      {"CROSSSLOT", Error::cross_slot},
      {"WRONGPASS", Error::auth_failed},  {"NOAUTH", Error::auth_failed},
  };
  for (auto const& e : table)
    if (prefix == e.prefix) return e.code;
  return Error::server_error;
}

}  // namespace rediskit

template <>
struct boost::system::is_error_code_enum<rediskit::Error> : std::true_type {};
