// rediskit::RedisConfig: how RedisBackend reaches its server (seed 000's RedisFactory
// DEFAULT_CONFIG and environment variables, seed 002's connection options, seed 003's REDIS_URL
// and limited retries).
//
//   auto cfg = rediskit::RedisConfig::from_env();               // REDIS_URL, REDIS_HOST, ...
//   auto cfg = rediskit::RedisConfig::from_url("redis://:secret@cache:6380/2");
//   auto cfg = rediskit::RedisConfig::from_url("rediss://app:secret@cache:6380");  // TLS
//   rediskit::RedisConfig cfg{.host = "cache", .port = 6380, .database = 2};
//
// Sentinel mode: name Sentinels and the master's name, and the address of the master is asked
// of the Sentinels on every (re)connection (host and port are then unused):
//
//   REDIS_SENTINELS=s1:26379,s2:26379,s3:26379  REDIS_SENTINEL_MASTER=mymaster
//   REDIS_URL=redis-sentinel://:secret@s1:26379,s2:26379,s3:26379/2#mymaster
//   rediskit::RedisConfig cfg{.sentinels = {"s1:26379", "s2:26379"}, .master_name = "mymaster"};
//
// TLS is chosen at run time: a rediss:// URL (or REDIS_TLS=true) turns it on, with the CA,
// client certificate and key from REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE
// and the name to verify from REDIS_TLS_SERVER_NAME (see TlsConfig in connection.hpp).
// In Sentinel mode the same TLS settings apply to the Sentinels and to the data nodes.
//
// Malformed values are errors that name the variable and the value (never a password), not
// silent defaults: Error::invalid_config, with the text in the exception or in `what`.
#pragma once

#include <rediskit/connection.hpp>
#include <rediskit/error.hpp>

#include <boost/describe/class.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace rediskit {

/// Where and how to connect. An aggregate described with Boost.Describe (so it can be printed
/// or loaded from JSON by the host).
struct RedisConfig {
  std::string host = "127.0.0.1";  ///< REDIS_HOST
  std::uint16_t port = 6379;       ///< REDIS_PORT
  std::string username{};          ///< ACL user (REDIS_USERNAME, or the URL's user)
  std::string password{};          ///< REDIS_PASSWORD; never logged
  int database = 0;                ///< REDIS_DB
  std::string client_name{};       ///< CLIENT SETNAME: the seed's service name
  std::chrono::milliseconds connect_timeout{5000};        ///< REDIS_CONNECTION_TIMEOUT (ms)
  int max_retry_attempts = 3;                             ///< REDIS_MAX_RETRY_ATTEMPTS
  bool keep_alive = true;                                 ///< REDIS_KEEP_ALIVE (true/false/1/0)
  std::chrono::milliseconds health_check_interval{2000};  ///< PING on idle links; 0 disables
  /// No reply within this: Error::timeout (0: none; seed 002 uses 5000). REDIS_COMMAND_TIMEOUT
  /// (ms). Blocking commands (BLMOVE, XREADGROUP BLOCK) are not timed: they wait by design.
  std::chrono::milliseconds command_timeout{0};
  /// false: requests fail at once with not_connected while the link is down, and those under
  /// way when it breaks fail then. REDIS_ENABLE_OFFLINE_QUEUE (true/false/1/0). The main
  /// connection's: a subscriber's connection, and one made for a blocking command, always wait
  /// for the link made for them.
  bool offline_queue = true;
  /// Requests wait this long for a server that is loading its dataset, then fail with
  /// Error::loading (0: no wait). REDIS_MAX_LOADING_TIMEOUT (ms). See
  /// ConnectionConfig::max_loading_timeout.
  std::chrono::milliseconds max_loading_timeout{5000};
  TlsConfig tls{};  ///< rediss:// and REDIS_TLS*; off by default

  /// Sentinel mode when not empty: "host:port" of Sentinels ("host" alone: port 26379), asked in
  /// turn for master_name's address (REDIS_SENTINELS, comma-separated). username, password and
  /// database are the data nodes'; the Sentinels have their own credentials below.
  std::vector<std::string> sentinels{};
  std::string master_name{};        ///< REDIS_SENTINEL_MASTER: `sentinel monitor <name> ...`
  std::string sentinel_username{};  ///< REDIS_SENTINEL_USERNAME
  std::string sentinel_password{};  ///< REDIS_SENTINEL_PASSWORD; never logged
  /// Per Sentinel and per question: connect + handshake + the reply, then the next is asked.
  std::chrono::milliseconds sentinel_timeout{1000};

  /// The configuration of one connection (RedisBackend makes one per role).
  ConnectionConfig connection_config() const {
    ConnectionConfig c;
    c.host = host;
    c.port = port;
    c.username = username;
    c.password = password;
    c.database = database;
    c.client_name = client_name;
    c.connect_timeout = connect_timeout;
    c.health_check_interval = health_check_interval;
    c.tcp_keepalive = keep_alive;
    c.reconnect.max_attempts = max_retry_attempts;
    c.command_timeout = command_timeout;
    c.offline_queue = offline_queue;
    c.max_loading_timeout = max_loading_timeout;
    c.tls = tls;
    return c;
  }

  /// Parses redis[s]://[user[:password]@]host[:port][/db] (host may be [IPv6]; user and
  /// password are percent-decoded). rediss:// turns TLS on (tls.enabled), verifying the server
  /// against the system's CAs unless tls.ca_file is set afterwards.
  /// Sentinel mode (Lettuce's form): redis[s]-sentinel://[user[:password]@]host[:port][,host
  /// [:port]...][/db]#master_name, Sentinel ports 26379 by default; the credentials and the
  /// database are the data nodes'.
  static RedisConfig from_url(std::string_view url, boost::system::error_code& ec,
                              std::string* what = nullptr);
  static RedisConfig from_url(std::string_view url);

  /// Reads REDIS_URL (when set, first), then REDIS_HOST, REDIS_PORT, REDIS_USERNAME,
  /// REDIS_PASSWORD, REDIS_DB, REDIS_CONNECTION_TIMEOUT, REDIS_MAX_RETRY_ATTEMPTS,
  /// REDIS_KEEP_ALIVE, REDIS_COMMAND_TIMEOUT, REDIS_ENABLE_OFFLINE_QUEUE,
  /// REDIS_MAX_LOADING_TIMEOUT, REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_SENTINEL_USERNAME,
  /// REDIS_SENTINEL_PASSWORD, REDIS_TLS (true/false/1/0), REDIS_TLS_CA_FILE,
  /// REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE and REDIS_TLS_SERVER_NAME over the defaults above
  /// (a variable overrides what the URL said). Sentinels without a master name (or the
  /// reverse), and a certificate without its key (or the reverse), are Error::invalid_config.
  /// Certificate verification cannot be turned off from here.
  /// `getenv` is replaceable for tests.
  static RedisConfig from_env(boost::system::error_code& ec, std::string* what = nullptr,
                              std::function<char const*(char const*)> getenv = {});
  static RedisConfig from_env(std::function<char const*(char const*)> getenv = {});
};

BOOST_DESCRIBE_STRUCT(TlsConfig, (),
                      (enabled, ca_file, cert_file, key_file, server_name,
                       dangerously_skip_verification))
BOOST_DESCRIBE_STRUCT(RedisConfig, (),
                      (host, port, username, password, database, client_name, connect_timeout,
                       max_retry_attempts, keep_alive, health_check_interval, command_timeout,
                       offline_queue, max_loading_timeout, tls, sentinels,
                       master_name, sentinel_username, sentinel_password, sentinel_timeout))

namespace detail::config {

inline bool fail(boost::system::error_code& ec, std::string* what, std::string text) {
  ec = make_error_code(Error::invalid_config);
  if (what) *what = std::move(text);
  return false;
}

template <class Int>
bool parse_int(std::string_view name, std::string_view text, Int lo, Int hi, Int& out,
               boost::system::error_code& ec, std::string* what) {
  Int v{};
  auto const r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc{} || r.ptr != text.data() + text.size() || v < lo || v > hi)
    return fail(ec, what,
                std::string(name) + ": '" + std::string(text) + "' is not a whole number from " +
                    std::to_string(lo) + " to " + std::to_string(hi));
  out = v;
  return true;
}

// Milliseconds, from `min` to one hour.
inline bool parse_ms(char const* name, std::string_view v, std::int64_t min,
                     std::chrono::milliseconds& out, boost::system::error_code& ec,
                     std::string* what) {
  std::int64_t ms = 0;
  if (!parse_int<std::int64_t>(name, v, min, 3'600'000, ms, ec, what)) return false;
  out = std::chrono::milliseconds(ms);
  return true;
}

inline bool parse_bool(std::string_view name, std::string_view text, bool& out,
                       boost::system::error_code& ec, std::string* what) {
  if (text == "1" || text == "true" || text == "TRUE" || text == "yes") return out = true, true;
  if (text == "0" || text == "false" || text == "FALSE" || text == "no") return out = false, true;
  return fail(ec, what,
              std::string(name) + ": '" + std::string(text) + "' is not true/false/1/0");
}

inline bool percent_decode(std::string_view in, std::string& out) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (in.size() - i < 3) return false;
    int const h = hex(in[i + 1]), l = hex(in[i + 2]);
    if (h < 0 || l < 0) return false;
    out.push_back(static_cast<char>(h * 16 + l));
    i += 2;
  }
  return true;
}

/// "host:port", "[v6]:port", or a host alone (`default_port`). False when malformed.
inline bool parse_host_port(std::string_view text, std::uint16_t default_port, std::string& host,
                            std::uint16_t& port) {
  std::string_view rest;
  if (text.starts_with('[')) {
    auto const close = text.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(text.substr(1, close - 1));
    rest = text.substr(close + 1);
  } else {
    auto const colon = text.find(':');
    host = std::string(text.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view{} : text.substr(colon);
  }
  if (host.empty()) return false;
  port = default_port;
  if (rest.empty()) return true;
  if (rest.front() != ':') return false;
  rest.remove_prefix(1);
  unsigned v = 0;
  auto const r = std::from_chars(rest.data(), rest.data() + rest.size(), v);
  if (r.ec != std::errc{} || r.ptr != rest.data() + rest.size() || v == 0 || v > 65535)
    return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

/// Splits a comma-separated list of Sentinels, checking each entry.
inline bool parse_sentinels(std::string_view name, std::string_view list,
                            std::vector<std::string>& out, boost::system::error_code& ec,
                            std::string* what) {
  out.clear();
  for (;;) {
    auto const comma = list.find(',');
    std::string_view entry = list.substr(0, comma);
    while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
    while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
    std::string host;
    std::uint16_t port = 0;
    if (!parse_host_port(entry, 26379, host, port))
      return fail(ec, what,
                  std::string(name) + ": '" + std::string(entry) +
                      "' is not a Sentinel address (host:port, [IPv6]:port or host)");
    out.emplace_back(entry);
    if (comma == std::string_view::npos) return true;
    list.remove_prefix(comma + 1);
  }
}

inline bool check_sentinel_mode(std::string_view where, RedisConfig const& cfg,
                                boost::system::error_code& ec, std::string* what) {
  if (!cfg.sentinels.empty() && cfg.master_name.empty())
    return fail(ec, what,
                std::string(where) + ": Sentinels are named but no master name (" +
                    (where == "REDIS_URL" ? "#name at the end of the URL"
                                          : "REDIS_SENTINEL_MASTER") + ")");
  if (cfg.sentinels.empty() && !cfg.master_name.empty())
    return fail(ec, what, std::string(where) + ": a master name is given but no Sentinels "
                                               "(REDIS_SENTINELS or a redis-sentinel:// URL)");
  return true;
}

}  // namespace detail::config

inline RedisConfig RedisConfig::from_url(std::string_view url, boost::system::error_code& ec,
                                         std::string* what) {
  using namespace detail::config;
  ec.clear();
  RedisConfig cfg;
  std::string_view rest = url;
  auto const scheme_end = rest.find("://");
  std::string_view const scheme =
      scheme_end == std::string_view::npos ? std::string_view{} : rest.substr(0, scheme_end);
  bool const sentinel = scheme == "redis-sentinel" || scheme == "rediss-sentinel";
  if (!sentinel && scheme != "redis" && scheme != "rediss") {
    fail(ec, what,
         "REDIS_URL: must start with redis://, rediss://, redis-sentinel:// or "
         "rediss-sentinel:// (got a URL of another scheme)");
    return {};
  }
  cfg.tls.enabled = scheme.starts_with("rediss");
  rest.remove_prefix(scheme_end + 3);
  if (sentinel) {  // the master's name is the fragment
    auto const hash = rest.find('#');
    if (hash != std::string_view::npos) {
      if (!percent_decode(rest.substr(hash + 1), cfg.master_name)) {
        fail(ec, what, "REDIS_URL: malformed percent escape in the master name");
        return {};
      }
      rest = rest.substr(0, hash);
    }
  }
  if (auto const at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view const userinfo = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    auto const colon = userinfo.find(':');
    std::string_view const user = userinfo.substr(0, colon);
    std::string_view const pass =
        colon == std::string_view::npos ? std::string_view{} : userinfo.substr(colon + 1);
    if (!percent_decode(user, cfg.username) || !percent_decode(pass, cfg.password)) {
      fail(ec, what, "REDIS_URL: malformed percent escape in the user or password");
      return {};
    }
    if (colon == std::string_view::npos) {  // redis://password@host is common: treat as password
      cfg.password = std::move(cfg.username);
      cfg.username.clear();
    }
  }
  std::string_view hostport = rest.substr(0, rest.find('/'));
  std::string_view const path =
      rest.size() > hostport.size() ? rest.substr(hostport.size() + 1) : std::string_view{};
  if (sentinel) {
    if (hostport.empty()) {
      fail(ec, what, "REDIS_URL: no Sentinel host");
      return {};
    }
    if (!parse_sentinels("REDIS_URL", hostport, cfg.sentinels, ec, what)) return {};
    hostport = {};  // host and port: unused in Sentinel mode
  } else if (hostport.starts_with('[')) {
    auto const close = hostport.find(']');
    if (close == std::string_view::npos) {
      fail(ec, what, "REDIS_URL: unterminated [IPv6] host");
      return {};
    }
    cfg.host = std::string(hostport.substr(1, close - 1));
    hostport.remove_prefix(close + 1);
    if (!hostport.empty() && hostport.front() != ':') {
      fail(ec, what, "REDIS_URL: unexpected text after the [IPv6] host");
      return {};
    }
  } else {
    auto const colon = hostport.find(':');
    cfg.host = std::string(hostport.substr(0, colon));
    hostport = colon == std::string_view::npos ? std::string_view{} : hostport.substr(colon);
  }
  if (cfg.host.empty()) {
    fail(ec, what, "REDIS_URL: no host");
    return {};
  }
  if (hostport.starts_with(':') &&
      !parse_int<std::uint16_t>("REDIS_URL port", hostport.substr(1), 1, 65535, cfg.port, ec,
                                what))
    return {};
  std::string_view db = path.substr(0, path.find('?'));
  if (!db.empty() && !parse_int("REDIS_URL database", db, 0, 1 << 20, cfg.database, ec, what))
    return {};
  if (!check_sentinel_mode("REDIS_URL", cfg, ec, what)) return {};
  return cfg;
}

inline RedisConfig RedisConfig::from_url(std::string_view url) {
  boost::system::error_code ec;
  std::string what;
  RedisConfig cfg = from_url(url, ec, &what);
  if (ec) throw Exception(ec, what);
  return cfg;
}

inline RedisConfig RedisConfig::from_env(boost::system::error_code& ec, std::string* what,
                                         std::function<char const*(char const*)> getenv) {
  using namespace detail::config;
  ec.clear();
  if (!getenv) getenv = [](char const* n) -> char const* { return std::getenv(n); };
  auto var = [&](char const* n) -> std::string_view {
    char const* v = getenv(n);
    return v ? std::string_view(v) : std::string_view{};
  };
  RedisConfig cfg;
  if (auto url = var("REDIS_URL"); !url.empty()) {
    cfg = from_url(url, ec, what);
    if (ec) return {};
  }
  if (auto v = var("REDIS_HOST"); !v.empty()) cfg.host = std::string(v);
  if (auto v = var("REDIS_USERNAME"); !v.empty()) cfg.username = std::string(v);
  if (auto v = var("REDIS_PASSWORD"); !v.empty()) cfg.password = std::string(v);
  bool ok = true;
  if (auto v = var("REDIS_PORT"); ok && !v.empty())
    ok = parse_int<std::uint16_t>("REDIS_PORT", v, 1, 65535, cfg.port, ec, what);
  if (auto v = var("REDIS_DB"); ok && !v.empty())
    ok = parse_int("REDIS_DB", v, 0, 1 << 20, cfg.database, ec, what);
  if (auto v = var("REDIS_CONNECTION_TIMEOUT"); ok && !v.empty())
    ok = parse_ms("REDIS_CONNECTION_TIMEOUT", v, 1, cfg.connect_timeout, ec, what);
  if (auto v = var("REDIS_MAX_RETRY_ATTEMPTS"); ok && !v.empty())
    ok = parse_int("REDIS_MAX_RETRY_ATTEMPTS", v, 0, 1000, cfg.max_retry_attempts, ec, what);
  if (auto v = var("REDIS_KEEP_ALIVE"); ok && !v.empty())
    ok = parse_bool("REDIS_KEEP_ALIVE", v, cfg.keep_alive, ec, what);
  if (auto v = var("REDIS_COMMAND_TIMEOUT"); ok && !v.empty())
    ok = parse_ms("REDIS_COMMAND_TIMEOUT", v, 0, cfg.command_timeout, ec, what);
  if (auto v = var("REDIS_ENABLE_OFFLINE_QUEUE"); ok && !v.empty())
    ok = parse_bool("REDIS_ENABLE_OFFLINE_QUEUE", v, cfg.offline_queue, ec, what);
  if (auto v = var("REDIS_MAX_LOADING_TIMEOUT"); ok && !v.empty())
    ok = parse_ms("REDIS_MAX_LOADING_TIMEOUT", v, 0, cfg.max_loading_timeout, ec, what);
  if (auto v = var("REDIS_SENTINELS"); ok && !v.empty())
    ok = parse_sentinels("REDIS_SENTINELS", v, cfg.sentinels, ec, what);
  if (auto v = var("REDIS_SENTINEL_MASTER"); !v.empty()) cfg.master_name = std::string(v);
  if (auto v = var("REDIS_SENTINEL_USERNAME"); !v.empty()) cfg.sentinel_username = std::string(v);
  if (auto v = var("REDIS_SENTINEL_PASSWORD"); !v.empty()) cfg.sentinel_password = std::string(v);
  if (ok) ok = check_sentinel_mode("REDIS_SENTINELS", cfg, ec, what);
  if (auto v = var("REDIS_TLS"); ok && !v.empty())
    ok = parse_bool("REDIS_TLS", v, cfg.tls.enabled, ec, what);
  if (auto v = var("REDIS_TLS_CA_FILE"); !v.empty()) cfg.tls.ca_file = std::string(v);
  if (auto v = var("REDIS_TLS_CERT_FILE"); !v.empty()) cfg.tls.cert_file = std::string(v);
  if (auto v = var("REDIS_TLS_KEY_FILE"); !v.empty()) cfg.tls.key_file = std::string(v);
  if (auto v = var("REDIS_TLS_SERVER_NAME"); !v.empty()) cfg.tls.server_name = std::string(v);
  if (ok && cfg.tls.cert_file.empty() != cfg.tls.key_file.empty())
    ok = fail(ec, what,
              "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE: a client certificate needs its key "
              "(set both or neither)");
  if (!ok) return {};
  return cfg;
}

inline RedisConfig RedisConfig::from_env(std::function<char const*(char const*)> getenv) {
  boost::system::error_code ec;
  std::string what;
  RedisConfig cfg = from_env(ec, &what, std::move(getenv));
  if (ec) throw Exception(ec, what);
  return cfg;
}

}  // namespace rediskit
