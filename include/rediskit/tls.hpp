// rediskit: TLS support (issue 13). Include this header in one source file of a program (the
// one with main(), say; <rediskit/rediskit.hpp> includes it) and every Connection and
// RedisBackend of the program can connect with TLS when its configuration says so:
//
//   #include <rediskit/tls.hpp>
//   auto cfg = rediskit::RedisConfig::from_env();   // REDIS_URL=rediss://app:secret@cache:6380
//   rediskit::RedisBackend redis(ioc, cfg);          //   REDIS_TLS_CA_FILE=/etc/redis/ca.crt
//
//   rediskit::ConnectionConfig c{.host = "cache", .port = 6380,
//                                .tls = {.enabled = true, .ca_file = "/etc/redis/ca.crt"}};
//
// TLS is chosen at run time, by the configuration (TlsConfig in connection.hpp): the same
// binary serves redis:// and rediss:// URLs. The server's certificate is verified, host name
// included, unless TlsConfig::dangerously_skip_verification is set in code.
//
// Why a header of its own: OpenSSL's and asio::ssl's headers, and the templates of the TLS
// stream, cost about 2 s of compile time (g++ -O0, ASan) in each translation unit that uses a
// Connection; here they are compiled once per program. Without this header in the program, a
// TLS configuration fails at connect with Error::tls_unavailable, at once and not retried.
// Link OpenSSL (the CMake target rediskit::rediskit does: OpenSSL::SSL).
//
// Failures, each at once and never retried (a retry would fail the same way):
//  - Error::tls_host_name_mismatch: the certificate is not for the host (or server_name);
//  - Error::tls_certificate_untrusted: the chain does not verify against ca_file (or the
//    system's CAs), or the certificate expired;
//  - Error::tls_handshake_failed: no TLS on that port, or the server refused this client (a
//    client certificate is required: cert_file / key_file);
//  - Error::tls_handshake_timeout: on a first connection, no handshake answer within
//    connect_timeout (a plain Redis port waits for the end of a command forever);
//  - Error::tls_setup_failed: a CA, certificate or key file cannot be used (the log line names
//    the file; the key's content is never logged).
// A plain (non-TLS) client on a TLS port sees the server close the link before HELLO's answer:
// Error::closed_during_handshake, retried within the reconnect policy (a proxy with no server
// behind it does the same, and that is transient), so it fails after about 1.5 s by default.
#pragma once

#include <rediskit/connection.hpp>
#include <rediskit/detail/tls.hpp>
#include <rediskit/detail/tls_session.hpp>

namespace rediskit::detail::tls {

/// Installs the OpenSSL session factory before main() runs, once per program, whichever
/// translation units include this header.
inline bool const installed = (tls_session_factory() = &open_session, true);

}  // namespace rediskit::detail::tls
