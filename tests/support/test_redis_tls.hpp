// rediskit test support: a throwaway redis-server that serves TLS, with its own certificates.
//
//   rediskit::test::TestRedisTlsServer srv;            // CA + certificates made by `openssl`
//   cfg.port = srv.tls_port();
//   cfg.tls = {.enabled = true, .ca_file = srv.files().ca_cert};
//   srv.kill();  srv.start();                          // crash and restart, same ports
//
// The fixture generates, with the `openssl` command-line tool, into its own temporary
// directory (removed by the destructor):
//  - a CA (`ca.crt`), and a server certificate it signed for `localhost` and `127.0.0.1`;
//  - a client certificate signed by the same CA (for servers that require one);
//  - a second, unrelated CA (`other_ca.crt`): trusting it instead must fail verification.
// Then it starts a TestRedisServer (tests/support/test_redis.hpp) that listens on two free
// loopback ports: `port()` plain TCP (the readiness check and tests that compare with plain
// TCP use it) and `tls_port()` TLS (tls-auth-clients `optional`, or `yes` with
// Options::require_client_certificate). Both ports stay the same across kill()/start().
// EC P-256 keys: generating them takes milliseconds.
//
// Header-only, POSIX (Linux) only, no Boost, like test_redis.hpp.
#pragma once

#include "test_redis.hpp"

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace rediskit::test {

namespace detail {

/// Runs a program to completion (output appended to `log`); throws with the log's tail when it
/// fails.
inline void run_program(const std::vector<std::string>& args, const std::filesystem::path& log) {
  const pid_t pid = spawn(args, log, /*detached=*/false);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(args.front() + " " + (args.size() > 1 ? args[1] : "") +
                             " failed; its output:\n" + read_file_tail(log));
  }
}

}  // namespace detail

/// The files TestRedisTlsServer made (absolute paths, PEM).
struct TlsTestFiles {
  std::string ca_cert;      ///< the CA that signed the server's and the client's certificates
  std::string server_cert;  ///< for DNS:localhost and IP:127.0.0.1
  std::string server_key;
  std::string client_cert;  ///< CN=rediskit-test-client, signed by ca_cert
  std::string client_key;
  std::string other_ca_cert;  ///< an unrelated CA: trusting only it must fail verification
};

/// A redis-server with a plain and a TLS port, and a CA and certificates made for it.
/// Not copyable or movable; drive it from the thread that created it (as TestRedisServer).
class TestRedisTlsServer {
 public:
  struct Options {
    /// tls-auth-clients yes: a client without a certificate signed by the CA is refused.
    bool require_client_certificate = false;
    /// Appended to the server's command line (e.g. {"--requirepass", "s3cret"}).
    std::vector<std::string> extra_args{};
  };

  TestRedisTlsServer() : TestRedisTlsServer(Options{}) {}

  /// Makes the certificates and starts the server; throws std::runtime_error (with the
  /// output of openssl or the server's log) when either fails.
  explicit TestRedisTlsServer(Options opts) : dir_(make_dir()) {
    try {
      make_certificates();
      constexpr int attempts = 8;  // the TLS port may be taken between pick and bind
      for (int i = 1;; ++i) {
        tls_port_ = detail::pick_free_port();
        try {
          server_ = std::make_unique<TestRedisServer>(server_options(opts));
          break;
        } catch (std::runtime_error const&) {
          if (i == attempts) throw;
        }
      }
    } catch (...) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      throw;
    }
  }

  TestRedisTlsServer(const TestRedisTlsServer&) = delete;
  TestRedisTlsServer& operator=(const TestRedisTlsServer&) = delete;

  /// Stops the server (TestRedisServer's destructor) and removes the certificates.
  ~TestRedisTlsServer() {
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  unsigned short port() const { return server_->port(); }  ///< plain TCP
  unsigned short tls_port() const { return tls_port_; }    ///< TLS
  const TlsTestFiles& files() const { return files_; }
  TestRedisServer& server() { return *server_; }

  void kill() { server_->kill(); }  ///< SIGKILL: a crash; start() brings it back
  void stop() { server_->stop(); }
  void start() { server_->start(); }  ///< same ports, same certificates

 private:
  static std::filesystem::path make_dir() {
    std::error_code ec;
    auto base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string templ = (base / "rediskit-test-tls-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr)
      throw std::runtime_error("mkdtemp(" + templ + "): " + detail::errno_text(errno));
    return templ;
  }

  std::string path(const char* name) const { return (dir_ / name).string(); }

  void write_file(const char* name, const std::string& text) const {
    std::ofstream out(dir_ / name);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path(name));
  }

  void make_certificates() {
    const std::string openssl = detail::find_program("openssl", "openssl");
    const auto log = dir_ / "openssl.log";
    const std::vector<std::string> ec_key{"-newkey", "ec", "-pkeyopt",
                                          "ec_paramgen_curve:prime256v1", "-nodes"};
    auto self_signed_ca = [&](const char* key, const char* cert, const char* cn) {
      std::vector<std::string> args{openssl, "req", "-x509"};
      args.insert(args.end(), ec_key.begin(), ec_key.end());
      args.insert(args.end(), {"-keyout", path(key), "-out", path(cert), "-days", "2", "-subj",
                               std::string("/CN=") + cn});
      detail::run_program(args, log);
    };
    auto signed_by_ca = [&](const char* key, const char* cert, const char* cn, const char* ext,
                            const char* serial) {
      std::vector<std::string> req{openssl, "req"};
      req.insert(req.end(), ec_key.begin(), ec_key.end());
      req.insert(req.end(), {"-keyout", path(key), "-out", path("request.csr"), "-subj",
                             std::string("/CN=") + cn});
      detail::run_program(req, log);
      detail::run_program({openssl, "x509", "-req", "-in", path("request.csr"), "-CA",
                           path("ca.crt"), "-CAkey", path("ca.key"), "-set_serial", serial, "-days",
                           "2", "-out", path(cert), "-extfile", path(ext)},
                          log);
    };
    write_file("server.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    write_file("client.ext", "extendedKeyUsage=clientAuth\n");
    self_signed_ca("ca.key", "ca.crt", "rediskit test CA");
    signed_by_ca("server.key", "server.crt", "localhost", "server.ext", "1");
    signed_by_ca("client.key", "client.crt", "rediskit-test-client", "client.ext", "2");
    self_signed_ca("other_ca.key", "other_ca.crt", "rediskit unrelated CA");
    files_ = {.ca_cert = path("ca.crt"),
              .server_cert = path("server.crt"),
              .server_key = path("server.key"),
              .client_cert = path("client.crt"),
              .client_key = path("client.key"),
              .other_ca_cert = path("other_ca.crt")};
  }

  TestRedisServer::Options server_options(const Options& opts) const {
    TestRedisServer::Options o;
    o.dir = dir_ / "server";
    o.extra_args = {"--tls-port",         std::to_string(tls_port_),
                    "--tls-cert-file",    files_.server_cert,
                    "--tls-key-file",     files_.server_key,
                    "--tls-ca-cert-file", files_.ca_cert,
                    "--tls-auth-clients", opts.require_client_certificate ? "yes" : "optional"};
    o.extra_args.insert(o.extra_args.end(), opts.extra_args.begin(), opts.extra_args.end());
    return o;
  }

  std::filesystem::path dir_;
  TlsTestFiles files_;
  unsigned short tls_port_ = 0;
  std::unique_ptr<TestRedisServer> server_;
};

}  // namespace rediskit::test
