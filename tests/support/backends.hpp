// rediskit test support: one fixture for every backend, so that a conformance suite is written
// once and instantiated for MemoryBackend, FakeBackend, RedisBackend (a real redis-server) and
// ClusterBackend (a throwaway 3-master Redis Cluster per executable):
//
//   BOOST_AUTO_TEST_CASE_TEMPLATE(get_returns_what_set_stored, B, rediskit::test::AllBackends) {
//     rediskit::test::BackendFixture<B> f;         // an empty database
//     BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "v"}));
//     auto [ec, v] = f.exec(cmd::get{"k"});        // runs the io_context until it completes
//     BOOST_TEST(!ec);
//     f.advance(60ms);                             // sleeps on real clocks, advances a manual one
//   }
//
// RedisBackend fixtures use database test_db() of the server that CTest's redis_server fixture
// started (FLUSHDB at the start of each test): each test executable has its own
// ($REDISKIT_TEST_DB, set by tests/CMakeLists.txt), so executables that CTest runs side by side
// never flush each other's keys.
#pragma once

#include <rediskit/backend/cluster_backend.hpp>
#include <rediskit/backend/fake_backend.hpp>
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/commands.hpp>

#include "support/test_redis.hpp"
#include "support/test_redis_cluster.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

namespace rediskit::test {

/// Every backend, a throwaway Redis Cluster included (started once per test executable).
using AllBackends = boost::mpl::list<MemoryBackend, FakeBackend, RedisBackend, ClusterBackend>;
using InProcessBackends = boost::mpl::list<MemoryBackend, FakeBackend>;

/// This executable's database: $REDISKIT_TEST_DB (tests/CMakeLists.txt gives each executable
/// its own), 1 when unset.
inline int test_db() {
  char const* env = std::getenv("REDISKIT_TEST_DB");
  if (env == nullptr || *env == '\0') return 1;
  int db = 0;
  auto const [end, ec] = std::from_chars(env, env + std::strlen(env), db);
  if (ec != std::errc{} || *end != '\0' || db < 0 || db > 63)
    throw std::runtime_error(std::string("REDISKIT_TEST_DB is not a database number: ") + env);
  return db;
}
/// The differential test's database (no executable gets it from CMake).
inline constexpr int kDifferentialDb = 63;

template <class B>
inline constexpr bool is_redis_backend_v = false;
template <>
inline constexpr bool is_redis_backend_v<RedisBackend> = true;
template <class B>
inline constexpr bool is_fake_backend_v = false;
template <>
inline constexpr bool is_fake_backend_v<FakeBackend> = true;

template <class B>
inline constexpr bool is_cluster_backend_v = false;
template <>
inline constexpr bool is_cluster_backend_v<ClusterBackend> = true;

/// This executable's throwaway cluster: 3 masters, no replicas, started at first use and
/// stopped at exit. Cluster nodes have database 0 only, so executables that run side by side
/// each need their own.
inline TestRedisCluster& shared_cluster() {
  static TestRedisCluster cluster(TestRedisCluster::Options{.replicas_per_master = 0});
  return cluster;
}

template <class B>
B make_backend(boost::asio::io_context& ioc, int db) {
  if constexpr (is_cluster_backend_v<B>) {
    ClusterConfig cfg;
    cfg.nodes = {"127.0.0.1:" + std::to_string(shared_cluster().node(0).port())};
    return B(ioc, std::move(cfg));
  } else if constexpr (is_redis_backend_v<B>) {
    RedisConfig cfg;
    cfg.port = shared_redis_port();
    cfg.database = db;
    return B(ioc, std::move(cfg));
  } else {
    (void)db;
    return B(ioc);
  }
}

/// An empty database on backend B, and synchronous helpers around its asynchronous API.
template <class B>
class BackendFixture {
 public:
  explicit BackendFixture(int db = test_db()) : backend(make_backend<B>(ioc, db)) {
    if constexpr (is_redis || is_cluster) {
      auto [ec, r] = exec(cmd::flushdb{});
      if (ec) throw std::runtime_error("FLUSHDB failed: " + ec.message());
    }
  }

  /// A backend built from `args` (after the io_context): B(ioc, args...), left as it is.
  template <class... Args>
  explicit BackendFixture(std::in_place_t, Args&&... args)
      : backend(ioc, std::forward<Args>(args)...) {}

  static constexpr bool is_redis = is_redis_backend_v<B>;
  static constexpr bool is_cluster = is_cluster_backend_v<B>;
  static constexpr bool on_server = is_redis || is_cluster;
  static constexpr bool is_fake = is_fake_backend_v<B>;

  /// Runs `x` (a command, batch or range of commands) to completion: {error_code, reply}.
  template <class X>
  auto exec(X const& x) {
    using R = std::remove_cvref_t<decltype(result_type(x))>;
    std::optional<std::tuple<boost::system::error_code, R>> out;
    backend.async_exec(x, Capture<boost::system::error_code, R>{&out});
    run_until_set(out);
    auto& [ec, r] = *out;
    return std::pair<boost::system::error_code, R>(ec, std::move(r));
  }

  /// Runs `x` and returns its reply; a failure fails the test with the error.
  template <class X>
  auto ok(X const& x) {
    auto [ec, r] = exec(x);
    BOOST_REQUIRE_MESSAGE(!ec, "unexpected error: " << ec.message() << " ["
                                                    << ec.value() << "]");
    return std::move(r);
  }

  /// Runs `x`, which must fail with `want`; returns what it completed with.
  template <class X>
  boost::system::error_code fails(X const& x, Error want) {
    auto [ec, r] = exec(x);
    BOOST_TEST(ec == make_error_code(want), "expected " << make_error_code(want).message()
                                                        << ", got " << ec.message());
    return ec;
  }

  /// Runs a deferred asynchronous operation (a service's `async_x(...)` called without a token)
  /// to completion and returns what it completed with, as a tuple:
  ///   auto [ec, online] = f.wait(users.async_is_user_online("u1"));
  template <class Op>
  auto wait(Op&& op) {
    using Sig = typename boost::asio::completion_signature_of<std::decay_t<Op>>::type;
    return wait_sig(std::forward<Op>(op), static_cast<Sig*>(nullptr));
  }

  /// Runs a deferred operation that must succeed and returns its value (nothing when it
  /// completes with an error_code alone); a failure fails the test with the error.
  ///   bool online = f.value(users.async_is_user_online("u1"));
  template <class Op>
  auto value(Op&& op) {
    auto t = wait(std::forward<Op>(op));
    BOOST_REQUIRE_MESSAGE(!std::get<0>(t), "unexpected error: " << std::get<0>(t).message());
    if constexpr (std::tuple_size_v<decltype(t)> > 1) return std::get<1>(std::move(t));
  }

  /// Runs a deferred operation; the error_code it completed with.
  template <class Op>
  boost::system::error_code error(Op&& op) {
    return std::get<0>(wait(std::forward<Op>(op)));
  }

  /// Lets `d` pass: a manual clock advances at once, real clocks are slept on.
  void advance(std::chrono::milliseconds d) {
    if constexpr (is_fake) {
      backend.advance(d);
    } else {
      std::this_thread::sleep_for(d);
    }
  }

  /// Runs the io_context until pred() is true (or fails the test after `limit`).
  template <class Pred>
  void run_until(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto const deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (ioc.stopped()) ioc.restart();
      ioc.run_one_for(std::chrono::milliseconds(20));
      if (std::chrono::steady_clock::now() > deadline)
        BOOST_FAIL("the operation did not complete within " << limit.count() << " ms");
    }
  }

  boost::asio::io_context ioc;
  B backend;

 private:
  // The handler that tests pass is one type per completion signature, never a lambda per call
  // site: every distinct handler type instantiates the backends' and Asio's handler machinery
  // again (a lambda here cost a tenth of a service suite's object code).
  template <class... Args>
  struct Capture {
    std::optional<std::tuple<Args...>>* out;
    void operator()(Args... a) const { out->emplace(std::move(a)...); }
  };

  template <class T>
  void run_until_set(std::optional<T> const& out) {
    run_until([&out] { return out.has_value(); });
  }

  template <class Op, class... Args>
  auto wait_sig(Op&& op, void (*)(Args...)) {
    std::optional<std::tuple<std::decay_t<Args>...>> out;
    std::forward<Op>(op)(Capture<std::decay_t<Args>...>{&out});
    run_until_set(out);
    return std::move(*out);
  }

  template <class X>
  static auto result_type(X const&) {
    if constexpr (Command<X> || is_batch_v<X>)
      return reply_t<X>{};
    else
      return std::vector<reply_t<std::ranges::range_value_t<X>>>{};
  }
};

/// The server's error text of a command that must fail (empty if it succeeded).
template <class B, class C>
std::string error_text(BackendFixture<B>& f, C const& c) {
  Diagnostics diag;
  std::optional<boost::system::error_code> done;
  f.backend.async_exec(c, diag, [&](boost::system::error_code ec, reply_t<C>) { done = ec; });
  f.run_until([&] { return done.has_value(); });
  BOOST_TEST(bool(*done), "the command was expected to fail");
  return diag.server_message;
}

/// Error::invalid_argument as an error_code: what every service completes bad input with.
inline boost::system::error_code const invalid = make_error_code(Error::invalid_argument);

/// The server's WRONGTYPE reply, which MemoryBackend repeats word for word.
inline std::string const wrong_type_message =
    "WRONGTYPE Operation against a key holding the wrong kind of value";

/// The wall clock in Unix milliseconds, as the services stamp messages and profiles.
inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace rediskit::test
