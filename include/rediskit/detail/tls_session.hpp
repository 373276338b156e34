// rediskit: what a Connection needs of TLS, without OpenSSL.
//
// A connection with TlsConfig::enabled wraps each link's TCP socket in a TlsSession, made by the
// factory that <rediskit/tls.hpp> installs when a program includes it. The OpenSSL and
// asio::ssl code (its headers, and the templates instantiated for the TLS stream: about 2 s of
// g++ -O0 time per translation unit that uses a Connection, measured for issue 13) is compiled
// only in the translation units that include <rediskit/tls.hpp>, not in every one that uses a
// Connection. The plain TCP path pays one null pointer test per read and per write.
#pragma once

#include <rediskit/error.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstddef>
#include <memory>
#include <string>

namespace rediskit {
struct TlsConfig;
}

namespace rediskit::detail {

/// What a failed TLS handshake means: the code for the caller, whether a retry would fail the
/// same way (a certificate, a port without TLS), and a line for the log (no secret in it).
struct TlsFailure {
  Error code = Error::tls_handshake_failed;
  bool fatal = true;
  std::string detail;
};

/// What a TLS handshake, read or write calls when it completes: a function of the connection,
/// with the connection and the link kept alive. One concrete type, so that the asio::ssl
/// operations are compiled for it once, in <rediskit/tls.hpp>, and the connection's own code
/// instantiates nothing for TLS (which also kept g++'s inlining of the plain path as it was).
struct TlsDone {
  std::shared_ptr<void> connection;
  std::shared_ptr<void> link;
  void (*fn)(TlsDone const& self, boost::system::error_code ec, std::size_t n) = nullptr;
  void operator()(boost::system::error_code ec, std::size_t n = 0) const { fn(*this, ec, n); }
};

/// A client TLS session on one link's TCP socket (which stays the link's: connect, socket
/// options and close go to it directly). One read and one write may be in flight at once.
class TlsSession {
 public:
  virtual ~TlsSession() = default;
  virtual void async_handshake(TlsDone done) = 0;  ///< n is 0
  virtual void async_write(boost::asio::const_buffer b, TlsDone done) = 0;  ///< all of b
  virtual void async_read_some(boost::asio::mutable_buffer b, TlsDone done) = 0;
  /// After async_handshake failed with `ec`.
  virtual TlsFailure handshake_failure(boost::system::error_code const& ec) = 0;
  /// The link failed with `ec` after the TLS handshake, before the answer to HELLO: whether
  /// that is the server refusing this client (an alert, or closing the link after it asked for
  /// a client certificate that is not configured: TLS 1.3 servers check it only once the
  /// client's side of the handshake is done). Fatal when it is.
  virtual bool refused_client(boost::system::error_code const& ec, std::string& detail) const = 0;
};

/// Makes a session for `socket` (connected) to `host`, or returns null with
/// Error::tls_setup_failed and `what` naming the file that cannot be used.
using TlsSessionFactory = std::unique_ptr<TlsSession> (*)(boost::asio::ip::tcp::socket& socket,
                                                          TlsConfig const& cfg,
                                                          std::string const& host,
                                                          boost::system::error_code& ec,
                                                          std::string& what);

/// The factory <rediskit/tls.hpp> installs; null in a program that does not include it.
inline TlsSessionFactory& tls_session_factory() noexcept {
  static TlsSessionFactory factory = nullptr;
  return factory;
}

}  // namespace rediskit::detail
