// rediskit: the OpenSSL side of a TLS connection: the context (CA, client certificate), the
// per-link set-up (SNI, the name to verify), what a failed handshake means, and the TlsSession
// that Connection drives. Only <rediskit/tls.hpp> includes this (cmake/CheckLayers.cmake checks
// it): see detail/tls_session.hpp for why.
#pragma once

#include <rediskit/connection.hpp>
#include <rediskit/detail/tls_session.hpp>
#include <rediskit/error.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <memory>
#include <optional>
#include <string>

namespace rediskit::detail::tls {

namespace asio = boost::asio;
using boost::system::error_code;

/// A TLS stream over a Link's own TCP socket (the socket stays the Link's: connect, options and
/// close go to it directly).
using Stream = asio::ssl::stream<asio::ip::tcp::socket&>;

/// The SSL ex_data slot where the client-certificate callback notes that the server asked for
/// a certificate and none is configured.
inline int certificate_requested_slot() {
  static int const slot = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return slot;
}

/// The client context of a connection: TLS 1.2 or newer, the peer verified against `ca_file`
/// (or the system's store) unless verification is skipped, the client certificate and key when
/// given. On failure: nullopt, Error::tls_setup_failed, and `what` names the file (never its
/// content).
inline std::optional<asio::ssl::context> make_context(TlsConfig const& cfg, error_code& ec,
                                                      std::string& what) {
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  auto fail = [&](std::string text, error_code const& e) {
    ec = make_error_code(Error::tls_setup_failed);
    what = std::move(text);
    if (e) {
      what += ": ";
      what += e.message();
    }
    return std::nullopt;
  };
  error_code e;
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  if (cfg.dangerously_skip_verification) {
    ctx.set_verify_mode(asio::ssl::verify_none, e);
  } else {
    ctx.set_verify_mode(asio::ssl::verify_peer, e);
    if (!e) {
      if (cfg.ca_file.empty())
        ctx.set_default_verify_paths(e);
      else
        ctx.load_verify_file(cfg.ca_file, e);
    }
    if (e)
      return fail(cfg.ca_file.empty() ? "cannot load the system's CA store"
                                      : "cannot load the CA file '" + cfg.ca_file + "'",
                  e);
  }
  if (cfg.cert_file.empty() != cfg.key_file.empty())
    return fail(
        "a client certificate needs its key: set both TlsConfig::cert_file and "
        "key_file, or neither",
        {});
  if (cfg.cert_file.empty()) {
    // Called when the server asks for a client certificate: note it, send none.
    SSL_CTX_set_client_cert_cb(ctx.native_handle(), [](SSL* ssl, X509**, EVP_PKEY**) -> int {
      SSL_set_ex_data(ssl, certificate_requested_slot(), ssl);
      return 0;
    });
  } else {
    ctx.use_certificate_chain_file(cfg.cert_file, e);
    if (e) return fail("cannot load the client certificate '" + cfg.cert_file + "'", e);
    ctx.use_private_key_file(cfg.key_file, asio::ssl::context::pem, e);
    if (e) return fail("cannot load the client key '" + cfg.key_file + "'", e);
    if (SSL_CTX_check_private_key(ctx.native_handle()) != 1)
      return fail("the client key '" + cfg.key_file + "' does not match the certificate '" +
                      cfg.cert_file + "'",
                  {});
  }
  return ctx;
}

/// Per link: SNI (for a host name; RFC 6066 has none for an IP address) and the name or
/// address the certificate must match. False when OpenSSL refuses the name.
inline bool prepare(Stream& s, TlsConfig const& cfg, std::string const& host) {
  std::string const& name = cfg.server_name.empty() ? host : cfg.server_name;
  SSL* ssl = s.native_handle();
  error_code not_ip;
  asio::ip::make_address(name, not_ip);
  if (not_ip && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) return false;
  if (cfg.dangerously_skip_verification) return true;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (not_ip) return X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size()) == 1;
  return X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) == 1;
}

/// What a failed handshake means (see TlsFailure): the verification result first (it names the
/// certificate's problem), then a link closed under the handshake (retried: a restarting
/// server), then anything else the TLS layer reported (a server that does not speak TLS).
inline TlsFailure classify_handshake_error(Stream& s, error_code const& ec) {
  TlsFailure f;
  long const verify = SSL_get_verify_result(s.native_handle());
  if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
    f.code = Error::tls_host_name_mismatch;
    f.detail = X509_verify_cert_error_string(verify);
  } else if (verify != X509_V_OK) {
    f.code = Error::tls_certificate_untrusted;
    f.detail = X509_verify_cert_error_string(verify);
  } else if (ec == asio::error::eof || ec == asio::error::connection_reset ||
             ec == asio::ssl::error::stream_truncated) {
    f.code = Error::closed_during_handshake;
    f.fatal = false;
    f.detail = ec.message();
  } else {
    f.detail = ec.message();
  }
  return f;
}

/// The session: an asio::ssl::stream over the link's socket, with its own context (made per
/// link, so that a certificate or CA file replaced on disk is used from the next reconnection).
class Session final : public TlsSession {
 public:
  Session(asio::ip::tcp::socket& socket, std::shared_ptr<asio::ssl::context> ctx)
      : ctx_(std::move(ctx)), stream_(socket, *ctx_) {}

  Stream& stream() noexcept { return stream_; }

  void async_handshake(TlsDone done) override {
    stream_.async_handshake(asio::ssl::stream_base::client, std::move(done));
  }
  void async_write(asio::const_buffer b, TlsDone done) override {
    asio::async_write(stream_, b, std::move(done));
  }
  void async_read_some(asio::mutable_buffer b, TlsDone done) override {
    stream_.async_read_some(b, std::move(done));
  }
  TlsFailure handshake_failure(error_code const& ec) override {
    return classify_handshake_error(stream_, ec);
  }
  bool refused_client(error_code const& ec, std::string& detail) const override {
    if (ec.category() == asio::error::get_ssl_category()) {
      detail = ec.message();  // e.g. "tlsv13 alert certificate required"
      return true;
    }
    SSL* ssl = const_cast<Stream&>(stream_).native_handle();
    if (SSL_get_ex_data(ssl, certificate_requested_slot()) != nullptr) {
      detail =
          "the server asked for a client certificate, none is configured "
          "(TlsConfig::cert_file, key_file), and it closed the link (" +
          ec.message() + ")";
      return true;
    }
    return false;
  }

 private:
  std::shared_ptr<asio::ssl::context> ctx_;  // outlives the stream (declared first)
  Stream stream_;
};

/// The TlsSessionFactory that <rediskit/tls.hpp> installs.
inline std::unique_ptr<TlsSession> open_session(asio::ip::tcp::socket& socket, TlsConfig const& cfg,
                                                std::string const& host, error_code& ec,
                                                std::string& what) {
  auto ctx = make_context(cfg, ec, what);
  if (!ctx) return nullptr;
  auto session =
      std::make_unique<Session>(socket, std::make_shared<asio::ssl::context>(std::move(*ctx)));
  if (!prepare(session->stream(), cfg, host)) {
    ec = make_error_code(Error::tls_setup_failed);
    what = "OpenSSL refused the server name '" +
           (cfg.server_name.empty() ? host : cfg.server_name) + "'";
    return nullptr;
  }
  return session;
}

}  // namespace rediskit::detail::tls
