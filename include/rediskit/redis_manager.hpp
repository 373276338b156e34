// rediskit::RedisManager: seed 000's RedisFactory, RedisService and RedisManager. Named
// services, each a set of Redis clients by role, with an aggregated health, metrics, a
// Prometheus text exposition, and a typed bundle of the services a host runs on them.
//
//   rediskit::RedisManager manager(ioc);                          // owned by the host: no singleton
//   auto& chat = manager.create_service("chat-service", rediskit::RedisConfig::from_env());
//   co_await manager.async_connect();                             // every client of every service
//   auto s = manager.services<rediskit::CacheService<rediskit::RedisBackend, rediskit::JsonCodec>,
//                             rediskit::OnlineUserManager<rediskit::RedisBackend>>("chat-service");
//   co_await s.get<rediskit::OnlineUserManager<rediskit::RedisBackend>>().async_set_user_online(...);
//   manager.health();                                             // OK / DEGRADED / DISCONNECTED
//   std::string body = manager.metrics_text();                    // serve it on /metrics
//
// Roles (seed 000's clients): main (commands), pub (PUBLISH), sub (subscribers), stream
// (streams; blocking reads get connections of their own in RedisBackend anyway) and cache. Each
// role is a RedisBackend of its own, made on first use (`client(role)`) or by async_connect, with
// CLIENT SETNAME "<service>" for main and "<service>:<role>" for the others, so that CLIENT LIST
// on the server tells them apart. A subscriber made from the sub client
// (`sub_client().make_subscriber()`) has a connection of its own, as RedisBackend's always do.
//
// A bundle's services are built on their role's client: a service with a TTL policy (a cache)
// on the cache client, the others on main. They refer to the manager's clients: a bundle must
// not be used after its manager is gone. Their stats() (when the service has them, described with
// Boost.Describe) join metrics_text() while the bundle lives.
//
// Not thread-safe: one thread (or strand), as the backends it owns.
#pragma once

#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/detail/join.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/error.hpp>
#include <rediskit/redis_config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/describe/members.hpp>
#include <boost/mp11/algorithm.hpp>
#include <boost/system/error_code.hpp>

#include <array>
#include <charconv>
#include <cmath>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit {

/// Seed 000's client types.
enum class ClientRole : std::uint8_t { main, pub, sub, stream, cache };

inline constexpr std::array<ClientRole, 5> client_roles{ClientRole::main, ClientRole::pub,
                                                        ClientRole::sub, ClientRole::stream,
                                                        ClientRole::cache};

constexpr std::string_view to_string(ClientRole r) noexcept {
  switch (r) {
    case ClientRole::main: return "main";
    case ClientRole::pub: return "pub";
    case ClientRole::sub: return "sub";
    case ClientRole::stream: return "stream";
    case ClientRole::cache: return "cache";
  }
  return "?";
}

/// Seed 000's metrics (`connectionsCreated`, `reconnections`, `errors`, `lastConnectedAt`,
/// `lastErrorAt`), summed over clients, with the traffic counters.
struct ManagerMetrics {
  std::uint64_t connections_created = 0;
  std::uint64_t reconnections = 0;
  std::uint64_t errors = 0;
  std::uint64_t requests_sent = 0;
  std::uint64_t replies_received = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t bytes_read = 0;
  std::optional<std::chrono::system_clock::time_point> last_connected_at;
  std::optional<std::chrono::system_clock::time_point> last_error_at;

  /// Adds one connection's metrics (ConnectionMetrics) or another sum (ManagerMetrics).
  template <class M>
  void add(M const& m) {
    connections_created += m.connections_created;
    reconnections += m.reconnections;
    errors += m.errors;
    requests_sent += m.requests_sent;
    replies_received += m.replies_received;
    bytes_written += m.bytes_written;
    bytes_read += m.bytes_read;
    latest(last_connected_at, m.last_connected_at);
    latest(last_error_at, m.last_error_at);
  }

 private:
  using T = std::optional<std::chrono::system_clock::time_point>;
  static void latest(T& a, T const& b) {
    if (b && (!a || *b > *a)) a = b;
  }
};

/// OK when every one is OK, DISCONNECTED when none is up (or there is none), else DEGRADED.
template <class Range>
HealthStatus aggregate_health(Range const& statuses) {
  std::size_t n = 0, ok = 0, down = 0;
  for (HealthStatus h : statuses) {
    ++n;
    ok += h == HealthStatus::ok;
    down += h == HealthStatus::disconnected;
  }
  if (n == 0 || down == n) return HealthStatus::disconnected;
  return ok == n ? HealthStatus::ok : HealthStatus::degraded;
}

namespace detail::manager {

inline void escape_label(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
}

/// "# HELP" and "# TYPE" once per metric name, then the samples (Prometheus text format 0.0.4).
class Exposition {
 public:
  void sample(std::string_view name, std::string_view type, std::string_view help,
              std::vector<std::pair<std::string_view, std::string_view>> const& labels,
              double value) {
    auto& block = blocks_[std::string(name)];
    if (block.empty()) {
      block += "# HELP ";
      block += name;
      block += ' ';
      block += help;
      block += "\n# TYPE ";
      block += name;
      block += ' ';
      block += type;
      block += '\n';
      order_.push_back(std::string(name));
    }
    block += name;
    if (!labels.empty()) {
      block += '{';
      bool first = true;
      for (auto const& [k, v] : labels) {
        if (!first) block += ',';
        first = false;
        block += k;
        block += "=\"";
        escape_label(block, v);
        block += '"';
      }
      block += '}';
    }
    block += ' ';
    if (std::isnan(value)) {
      block += "NaN";
    } else if (std::isinf(value)) {
      block += value > 0 ? "+Inf" : "-Inf";
    } else {
      char buf[64];
      auto const r = std::to_chars(buf, buf + sizeof buf, value);
      block.append(buf, r.ptr);
    }
    block += '\n';
  }
  std::string text() const {
    std::string out;
    for (auto const& n : order_) out += blocks_.at(n);
    return out;
  }

 private:
  std::map<std::string, std::string> blocks_;
  std::vector<std::string> order_;
};

/// A Prometheus metric name part: [a-zA-Z0-9_], anything else becomes '_'.
inline std::string metric_name(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      c = '_';
  return out;
}

inline double seconds_since_epoch(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

/// The role a bundle's service runs on: a service with a TTL policy is a cache.
template <class S>
inline constexpr ClientRole role_of_v = [] {
  if constexpr (requires { S::client_role; })
    return ClientRole(S::client_role);
  else if constexpr (requires { typename S::ttl_policy_type; })
    return ClientRole::cache;
  else
    return ClientRole::main;
}();

/// The name of a service kind in metric names ("cache").
template <class S>
constexpr std::string_view kind_of() {
  if constexpr (requires { S::metrics_name; })
    return S::metrics_name;
  else if constexpr (requires { typename S::ttl_policy_type; })
    return "cache";
  else
    return "service";
}

}  // namespace detail::manager

/// Seed 000's RedisService: one named service's clients, by role.
class RedisService {
 public:
  RedisService(boost::asio::any_io_executor ex, std::string name, RedisConfig cfg)
      : ex_(std::move(ex)), name_(std::move(name)), cfg_(std::move(cfg)) {}
  RedisService(RedisService const&) = delete;  // services hold references to its clients
  RedisService& operator=(RedisService const&) = delete;

  std::string_view name() const noexcept { return name_; }
  RedisConfig const& config() const noexcept { return cfg_; }

  /// The client of this role, made (not connected: it connects on first use) if it did not
  /// exist yet. Seed 000's getClient(type).
  RedisBackend& client(ClientRole r) {
    auto& c = clients_[static_cast<std::size_t>(r)];
    if (!c) {
      auto cfg = cfg_;
      cfg.client_name = r == ClientRole::main ? name_ : name_ + ":" + std::string(to_string(r));
      c = std::make_unique<RedisBackend>(ex_, std::move(cfg));
    }
    return *c;
  }
  RedisBackend& main_client() { return client(ClientRole::main); }
  RedisBackend& pub_client() { return client(ClientRole::pub); }
  RedisBackend& sub_client() { return client(ClientRole::sub); }
  RedisBackend& stream_client() { return client(ClientRole::stream); }
  RedisBackend& cache_client() { return client(ClientRole::cache); }
  /// The client of this role if it was made, else nullptr.
  RedisBackend* find_client(ClientRole r) const noexcept {
    return clients_[static_cast<std::size_t>(r)].get();
  }

  /// Makes every role's client and connects them all. Handler: void(error_code): the first
  /// error, once every attempt has ended (the others stay connected, and a failed one keeps
  /// retrying as its reconnect policy says).
  template <class Token = boost::asio::deferred_t>
  auto async_connect(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler) {
          for (auto r : client_roles) client(r);
          detail::join_all(ex_, std::move(handler), client_roles.size(), [&](auto done) {
            for (auto r : client_roles) client(r).async_connect(done);
          });
        },
        token);
  }

  /// Closes every client; pending operations complete with Error::connection_closed.
  void close() {
    for (auto& c : clients_)
      if (c) c->close();
  }

  /// Over the clients made so far (seed 000's getHealthStatus).
  HealthStatus health() const {
    std::vector<HealthStatus> hs;
    for (auto const& c : clients_)
      if (c) hs.push_back(c->health());
    return aggregate_health(hs);
  }

  ManagerMetrics metrics() const {
    ManagerMetrics m;
    for (auto const& c : clients_)
      if (c) m.add(c->metrics());
    return m;
  }

 private:
  boost::asio::any_io_executor ex_;
  std::string name_;
  RedisConfig cfg_;
  std::array<std::unique_ptr<RedisBackend>, client_roles.size()> clients_{};
};

class RedisManager;

namespace detail::manager {

/// S built on `client` with the first of `opts` that it takes (S(RedisBackend&, O const&)),
/// else with the client alone. On the heap: a service need not be movable.
template <class S, class... O>
std::unique_ptr<S> make_service(RedisBackend& client, O const&... opts) {
  std::unique_ptr<S> out;
  (
      [&] {
        if constexpr (std::constructible_from<S, RedisBackend&, O const&>)
          if (!out) out = std::make_unique<S>(client, opts);
      }(),
      ...);
  if constexpr (!(std::constructible_from<S, RedisBackend&, O const&> || ...))
    out = std::make_unique<S>(client);
  return out;
}

/// Some service among S... takes option O.
template <class O, class... S>
inline constexpr bool taken_v = (std::constructible_from<S, RedisBackend&, O const&> || ...);

}  // namespace detail::manager

/// The services a host runs on one RedisService, built on their role's client (see the top
/// of this file): get<T>() or get<I>().
template <class... S>
class ServiceBundle {
 public:
  ServiceBundle(ServiceBundle&&) noexcept = default;
  ServiceBundle& operator=(ServiceBundle&&) noexcept = default;
  ~ServiceBundle() = default;

  template <class T>
  T& get() noexcept {
    return *std::get<std::unique_ptr<T>>(*services_);
  }
  template <std::size_t I>
  auto& get() noexcept {
    return *std::get<I>(*services_);
  }
  static constexpr std::size_t size() noexcept { return sizeof...(S); }

 private:
  friend class RedisManager;
  using Services = std::tuple<std::unique_ptr<S>...>;
  ServiceBundle(std::shared_ptr<void> registration, std::shared_ptr<Services> services)
      : registration_(std::move(registration)), services_(std::move(services)) {}
  std::shared_ptr<void> registration_;  // keeps its stats in metrics_text() while it lives
  std::shared_ptr<Services> services_;
};

/// Seed 000's RedisManager, owned by the host (see the top of this file).
class RedisManager {
 public:
  explicit RedisManager(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}
  explicit RedisManager(boost::asio::io_context& ioc) : RedisManager(ioc.get_executor()) {}
  RedisManager(RedisManager const&) = delete;
  RedisManager& operator=(RedisManager const&) = delete;
  ~RedisManager() { close(); }

  /// Seed 000's RedisFactory.createService(name, options). Throws rediskit::Exception
  /// (Error::invalid_config) for an empty name or one already taken.
  RedisService& create_service(std::string name, RedisConfig cfg = RedisConfig::from_env()) {
    if (name.empty())
      throw Exception(make_error_code(Error::invalid_config),
                      "RedisManager::create_service: the service needs a name");
    if (find_service(name))
      throw Exception(make_error_code(Error::invalid_config),
                      "RedisManager::create_service: a service is already named '" + name + "'");
    services_.push_back(std::make_unique<RedisService>(ex_, std::move(name), std::move(cfg)));
    return *services_.back();
  }

  /// The service of that name, or nullptr.
  RedisService* find_service(std::string_view name) const noexcept {
    for (auto const& s : services_)
      if (s->name() == name) return s.get();
    return nullptr;
  }
  /// The service of that name; throws rediskit::Exception (Error::invalid_config) naming it
  /// when there is none.
  RedisService& service(std::string_view name) const {
    if (auto* s = find_service(name)) return *s;
    throw Exception(make_error_code(Error::invalid_config),
                    "RedisManager: no service named '" + std::string(name) +
                        "' (create_service first)");
  }
  std::size_t service_count() const noexcept { return services_.size(); }

  /// Connects every client of every service. Handler: void(error_code): the first error.
  template <class Token = boost::asio::deferred_t>
  auto async_connect(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler) {
          detail::join_all(ex_, std::move(handler), services_.size(), [&](auto done) {
            for (auto& s : services_) s->async_connect(done);
          });
        },
        token);
  }

  /// Closes every client of every service (seed 000's disconnect()).
  void close() {
    for (auto& s : services_) s->close();
  }

  /// Aggregated over every client made so far: OK, DEGRADED or DISCONNECTED.
  HealthStatus health() const {
    std::vector<HealthStatus> hs;
    for (auto const& s : services_)
      for (auto r : client_roles)
        if (auto* c = s->find_client(r)) hs.push_back(c->health());
    return aggregate_health(hs);
  }

  /// Summed over every service (per service: service(name).metrics()).
  ManagerMetrics metrics() const {
    ManagerMetrics m;
    for (auto const& s : services_) m.add(s->metrics());
    return m;
  }

  /// The Prometheus text exposition (format 0.0.4) of every client's metrics and health, and
  /// of the stats of the services of every live bundle. Serve it on /metrics.
  std::string metrics_text() const {
    detail::manager::Exposition x;
    for (auto const& s : services_) {
      for (auto r : client_roles) {
        auto* c = s->find_client(r);
        if (!c) continue;
        auto const& m = c->metrics();
        std::vector<std::pair<std::string_view, std::string_view>> const labels{
            {"service", s->name()}, {"client", to_string(r)}};
        auto counter = [&](std::string_view name, std::string_view help, double v) {
          x.sample(name, "counter", help, labels, v);
        };
        counter("rediskit_connections_created_total", "Successful handshakes.",
                double(m.connections_created));
        counter("rediskit_reconnections_total", "Successful handshakes after a lost link.",
                double(m.reconnections));
        counter("rediskit_errors_total", "Failed connection attempts and lost links.",
                double(m.errors));
        counter("rediskit_requests_total", "Requests sent.", double(m.requests_sent));
        counter("rediskit_replies_total", "Replies received.", double(m.replies_received));
        counter("rediskit_written_bytes_total", "Bytes written.", double(m.bytes_written));
        counter("rediskit_read_bytes_total", "Bytes read.", double(m.bytes_read));
        auto const h = c->health();
        x.sample("rediskit_up", "gauge", "1 when the client's link is up and answering.",
                 labels, h == HealthStatus::ok ? 1.0 : 0.0);
        x.sample("rediskit_health", "gauge",
                 "0 OK, 1 DEGRADED (connecting), 2 DISCONNECTED.", labels,
                 h == HealthStatus::ok ? 0.0 : h == HealthStatus::degraded ? 1.0 : 2.0);
        if (m.last_connected_at)
          x.sample("rediskit_last_connected_timestamp_seconds", "gauge",
                   "When the last handshake succeeded.", labels,
                   detail::manager::seconds_since_epoch(*m.last_connected_at));
        if (m.last_error_at)
          x.sample("rediskit_last_error_timestamp_seconds", "gauge",
                   "When the last error happened.", labels,
                   detail::manager::seconds_since_epoch(*m.last_error_at));
      }
    }
    for (auto const& [id, emit] : *stats_) emit(x);
    return x.text();
  }

  /// The services S... on the service of that name, each on its role's client (see the top
  /// of this file). Each S is constructible from RedisBackend&; an option among `options`
  /// goes to every S that takes it as its second argument (the first such option, for an S
  /// that takes several), e.g. services<CacheService<RedisBackend>, OnlineUserManager<...>>(
  /// "chat", CacheOptions{.key_prefix = "chat"}, PresenceOptions{...}). An option that no S
  /// takes does not compile. Throws like service(name).
  template <class... S, class... O>
    requires(sizeof...(S) > 0 && (std::constructible_from<S, RedisBackend&> && ...))
  ServiceBundle<S...> services(std::string_view service_name, O const&... options) {
    static_assert((detail::manager::taken_v<O, S...> && ...),
                  "an option given to services<S...>() is taken by none of the services S...");
    RedisService& svc = service(service_name);
    using Services = std::tuple<std::unique_ptr<S>...>;
    auto tuple = std::make_shared<Services>(detail::manager::make_service<S>(
        svc.client(detail::manager::role_of_v<S>), options...)...);
    auto const id = next_id_++;
    std::weak_ptr<Services> weak = tuple;
    stats_->emplace(id, [weak, name = std::string(svc.name())](detail::manager::Exposition& x) {
      auto t = weak.lock();
      if (!t) return;
      std::apply([&](auto&... s) { (emit_stats(x, name, *s), ...); }, *t);
    });
    // Unregisters when the bundle goes (the manager outlives its bundles).
    std::shared_ptr<void> registration(nullptr, unregister(id));
    return ServiceBundle<S...>(std::move(registration), std::move(tuple));
  }

 /// Adds `source.stats()` to metrics_text() while the returned handle lives:
  /// `rediskit_<component>_<member>{service="<service>"}` for each number and bool member of a
  /// stats struct described with Boost.Describe (FallbackStats, WalStats, yours), as gauges.
  /// `source` must outlive the handle (the handle may outlive the manager). `component` keeps
  /// [a-zA-Z0-9_] (anything else becomes '_'); expose one source per component and service.
  ///   auto h = manager.expose("fallback", "chat-service", fallback_backend);
  template <class Source>
    requires requires(Source const& s) { s.stats(); }
  [[nodiscard]] std::shared_ptr<void> expose(std::string component, std::string service,
                                             Source const& source) {
    auto const id = next_id_++;
    stats_->emplace(id, [&source, component = detail::manager::metric_name(component),
                        service = std::move(service)](detail::manager::Exposition& x) {
      emit_described(x, component, service, source.stats(), false);
    });
    return std::shared_ptr<void>(nullptr, unregister(id));
  }

 private:
  // The handle's deleter: forgets source `id`, if the manager is still there.
  std::function<void(void*)> unregister(std::uint64_t id) const {
    return [weak = std::weak_ptr<Sources>(stats_), id](void*) {
      if (auto s = weak.lock()) s->erase(id);
    };
  }

  template <class Svc>
  static void emit_stats(detail::manager::Exposition& x, std::string const& service,
                         Svc const& s) {
    if constexpr (requires { s.stats(); })
      emit_described(x, detail::manager::kind_of<Svc>(), service, s.stats(), true);
  }

  // Every number and bool member of a described stats struct: counters (`_total`) or gauges.
  template <class St>
  static void emit_described(detail::manager::Exposition& x, std::string_view component,
                             std::string_view service, St const& st, bool counters) {
    if constexpr (boost::describe::has_describe_members<St>::value) {
      boost::mp11::mp_for_each<
          boost::describe::describe_members<St, boost::describe::mod_public>>([&](auto D) {
        using M = std::remove_cvref_t<decltype(st.*D.pointer)>;
        if constexpr (std::is_arithmetic_v<M>) {
          std::string name = "rediskit_" + std::string(component) + "_" + D.name;
          if (counters) name += "_total";
          x.sample(name, counters ? "counter" : "gauge",
                   "stats()." + std::string(D.name) + " of rediskit's " + std::string(component) +
                       ".",
                   {{"service", service}}, static_cast<double>(st.*D.pointer));
        }
      });
    }
  }

  boost::asio::any_io_executor ex_;
  std::vector<std::unique_ptr<RedisService>> services_;
  using Sources = std::map<std::uint64_t, std::function<void(detail::manager::Exposition&)>>;
  // Shared with the handles, which may outlive the manager (their deleters then do nothing).
  std::shared_ptr<Sources> stats_ = std::make_shared<Sources>();
  std::uint64_t next_id_ = 0;
};

}  // namespace rediskit
