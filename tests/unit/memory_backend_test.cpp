// MemoryBackend and FakeBackend specifics that a server does not have: the memory bound with
// LRU eviction, exact expiry counts, blocked commands (timeouts on the manual clock,
// cancellation, destruction), FakeBackend's faults and command log, user-defined commands, and
// the Backend concept's readable rejections.
#include "support/backends.hpp"

#include <rediskit/backend/detail/memory/scan_map.hpp>
#include <rediskit/concepts/backend.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <map>
#include <random>
#include <set>
#include <string>

using namespace rediskit;
using namespace std::chrono_literals;
using rediskit::test::BackendFixture;
using rediskit::test::InProcessBackends;

// A command of the user's own, with a MemoryBackend implementation found by ADL in the
// command's namespace: a GET that blocks until the key exists (a test double of BLMOVE and
// XREADGROUP BLOCK, which use the same waiting machinery).
namespace my {
struct wait_get {
  std::string_view key;
  std::chrono::milliseconds timeout{0};
  using reply_type = std::optional<std::string>;
  template <class W>
  void write(W& w) const {
    w("GET", key);
  }
  bool blocking() const { return true; }
  std::chrono::milliseconds block_timeout() const { return timeout; }
  ArgList<std::string_view> watch_keys() const { return key; }
};
inline std::optional<std::string> run(rediskit::detail::mem::Ctx& ctx, wait_get const& c) {
  if (auto* s = ctx.db.read<std::string>(ctx, c.key)) return *s;
  return std::nullopt;
}
}  // namespace my

// Concept checks, positive and negative: a type missing a piece is not a Backend.
struct NotABackend {
  using executor_type = boost::asio::any_io_executor;
  executor_type get_executor() const { return {}; }
};
static_assert(Backend<MemoryBackend>);
static_assert(Backend<FakeBackend>);
static_assert(Backend<RedisBackend>);
static_assert(!Backend<NotABackend>);
static_assert(!Backend<int>);
static_assert(detail::concepts::HasExecutor<NotABackend>);
static_assert(!detail::concepts::ExecutesCommands<NotABackend>);
static_assert(Command<cmd::get> && Command<my::wait_get> && !Command<int>);
static_assert(is_idempotent_v<cmd::get> && !is_idempotent_v<cmd::set>);

BOOST_AUTO_TEST_SUITE(memory_backend)

BOOST_AUTO_TEST_CASE(the_memory_bound_evicts_the_least_recently_used_keys) {
  BackendFixture<MemoryBackend> f;
  f.backend = MemoryBackend(f.ioc, MemoryConfig{.max_memory = 20'000});
  std::string const value(100, 'x');
  std::vector<std::string> keys;
  for (int i = 0; i < 200; ++i) keys.push_back("k" + std::to_string(i));
  for (int i = 0; i < 10; ++i) f.ok(cmd::set{.key = keys[i], .value = value});
  for (int round = 10; round < 200; ++round) {
    f.ok(cmd::get{keys[0]});  // k0 stays the most recently used
    f.ok(cmd::set{.key = keys[round], .value = value});
  }
  auto const stats = f.backend.stats();
  BOOST_TEST(stats.used_memory <= 20'000u);
  BOOST_TEST(stats.evicted_keys > 0u);
  BOOST_TEST(stats.keys + stats.evicted_keys == 200u);
  BOOST_TEST(f.ok(cmd::get{keys[0]}).has_value());    // used all along: kept
  BOOST_TEST(f.ok(cmd::get{keys[199]}).has_value());  // newest: kept
  BOOST_TEST(!f.ok(cmd::get{keys[1]}).has_value());   // oldest untouched: evicted first
  BOOST_TEST(f.ok(cmd::info{"stats"}).find("evicted_keys:" + std::to_string(stats.evicted_keys)) !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(used_memory_follows_writes_and_deletes) {
  BackendFixture<MemoryBackend> f;
  BOOST_TEST(f.backend.stats().used_memory == 0u);
  f.ok(cmd::set{.key = "a", .value = std::string(1000, 'x')});
  auto const one = f.backend.stats().used_memory;
  BOOST_TEST(one >= 1001u);
  f.ok(cmd::set{.key = "a", .value = "small"});
  BOOST_TEST(f.backend.stats().used_memory < one);
  f.ok(cmd::del{.keys = "a"});
  BOOST_TEST(f.backend.stats().used_memory == 0u);
}

BOOST_AUTO_TEST_CASE(renewing_a_ttl_many_times_keeps_one_expiry_alive) {
  BackendFixture<FakeBackend> f;
  for (int i = 0; i < 20'000; ++i) f.ok(cmd::set{.key = "s", .value = "v", .ttl = 100ms});
  BOOST_TEST(f.backend.stats().keys_with_ttl == 1u);
  f.advance(99ms);
  BOOST_TEST(f.ok(cmd::get{"s"}).has_value());
  f.advance(1ms);
  BOOST_TEST(!f.ok(cmd::get{"s"}).has_value());
  BOOST_TEST(f.backend.stats().expired_keys == 1u);
  BOOST_TEST(f.backend.stats().keys_with_ttl == 0u);
}

BOOST_AUTO_TEST_CASE(expiry_on_the_manual_clock_is_exact_to_the_millisecond) {
  BackendFixture<FakeBackend> f;
  for (int i = 0; i < 1000; ++i)
    f.ok(cmd::set{.key = "k" + std::to_string(i), .value = "v",
                  .ttl = std::chrono::milliseconds(1 + i)});
  for (int t = 1; t <= 1000; t += 111) {
    f.advance(t == 1 ? 1ms : 111ms);
    BOOST_TEST(f.ok(cmd::dbsize{}) == 1000 - t);
  }
}

// The expiry heap against a model: TTLs set, renewed, shortened, persisted, dropped by a plain
// SET and keys deleted, in random order on 64 keys, with the clock moving on: after every step
// each key exists exactly when the model says so, with the model's PTTL.
BOOST_AUTO_TEST_CASE(expiries_follow_every_renewal_persist_and_delete) {
  BackendFixture<FakeBackend> f;
  std::mt19937 rng(20261207);
  std::map<std::string, std::int64_t> model;  // key -> expiry (ms on the fixture's clock; 0: none)
  std::int64_t now = 0;
  std::size_t expired = 0;
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  for (int step = 0; step < 6000; ++step) {
    std::string const k = "k" + std::to_string(pick(64));
    std::chrono::milliseconds const ttl(1 + pick(200));
    auto const it = model.find(k);
    switch (pick(7)) {
      case 0:
      case 1:
        f.ok(cmd::set{.key = k, .value = "v", .ttl = ttl});
        model[k] = now + ttl.count();
        break;
      case 2:
        f.ok(cmd::set{.key = k, .value = "v"});
        model[k] = 0;
        break;
      case 3:
        BOOST_TEST(f.ok(cmd::pexpire{.key = k, .ttl = ttl}) == (it != model.end()));
        if (it != model.end()) it->second = now + ttl.count();
        break;
      case 4:
        BOOST_TEST(f.ok(cmd::persist{k}) == (it != model.end() && it->second != 0));
        if (it != model.end()) it->second = 0;
        break;
      case 5:
        BOOST_TEST(f.ok(cmd::del{k}) == (it != model.end() ? 1 : 0));
        if (it != model.end()) model.erase(it);
        break;
      default: {
        std::int64_t const dt = pick(12);
        f.advance(std::chrono::milliseconds(dt));
        now += dt;
        std::erase_if(model, [&](auto const& kv) {
          bool const due = kv.second != 0 && kv.second <= now;
          expired += due;
          return due;
        });
      }
    }
    if (step % 50 != 0) continue;
    for (int i = 0; i < 64; ++i) {
      std::string const key = "k" + std::to_string(i);
      auto const m = model.find(key);
      std::int64_t const want = m == model.end() ? -2 : m->second == 0 ? -1 : m->second - now;
      BOOST_TEST(f.ok(cmd::pttl{key}) == want, key << " at step " << step);
    }
  }
  f.ok(cmd::dbsize{});  // purges what the last step made due
  std::size_t with_ttl = 0;
  for (auto const& kv : model)
    with_ttl += kv.second != 0;
  BOOST_TEST(f.backend.stats().keys_with_ttl == with_ttl);
  BOOST_TEST(f.backend.stats().expired_keys == expired);
  BOOST_TEST(expired > 100u);  // the run did expire keys
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_blocked_command_wakes_when_its_key_is_written, B,
                              InProcessBackends) {
  BackendFixture<B> f;
  std::optional<std::optional<std::string>> got;
  f.backend.async_exec(my::wait_get{"k"}, [&](boost::system::error_code ec, auto v) {
    BOOST_TEST(!ec);
    got = v;
  });
  f.ioc.poll();
  BOOST_TEST(!got.has_value());
  BOOST_TEST(f.backend.stats().blocked_clients == 1u);
  f.ok(cmd::set{.key = "other", .value = "x"});
  BOOST_TEST(!got.has_value());
  f.ok(cmd::set{.key = "k", .value = "v"});
  f.run_until([&] { return got.has_value(); });
  BOOST_TEST(**got == "v");
  BOOST_TEST(f.backend.stats().blocked_clients == 0u);
}

BOOST_AUTO_TEST_CASE(a_blocked_command_times_out_on_the_manual_clock) {
  BackendFixture<FakeBackend> f;
  std::optional<std::optional<std::string>> got;
  f.backend.async_exec(my::wait_get{"k", 5000ms},
                       [&](boost::system::error_code ec, auto v) {
                         BOOST_TEST(!ec);
                         got = v;
                       });
  f.ioc.poll();
  f.advance(4999ms);
  f.ioc.poll();
  BOOST_TEST(!got.has_value());
  f.advance(1ms);
  f.run_until([&] { return got.has_value(); });
  BOOST_TEST(!got->has_value());  // timeout: the empty reply, no error
}

BOOST_AUTO_TEST_CASE(a_blocked_command_times_out_on_real_time) {
  BackendFixture<MemoryBackend> f;
  std::optional<std::optional<std::string>> got;
  auto const start = std::chrono::steady_clock::now();
  f.backend.async_exec(my::wait_get{"k", 50ms}, [&](boost::system::error_code ec, auto v) {
    BOOST_TEST(!ec);
    got = v;
  });
  f.run_until([&] { return got.has_value(); });
  BOOST_TEST(!got->has_value());
  BOOST_TEST((std::chrono::steady_clock::now() - start >= 50ms));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_blocked_command_can_be_cancelled, B, InProcessBackends) {
  BackendFixture<B> f;
  boost::asio::cancellation_signal sig;
  std::optional<boost::system::error_code> ec;
  f.backend.async_exec(my::wait_get{"k"},
                       boost::asio::bind_cancellation_slot(
                           sig.slot(), [&](boost::system::error_code e, auto) { ec = e; }));
  f.ioc.poll();
  sig.emit(boost::asio::cancellation_type::terminal);
  f.run_until([&] { return ec.has_value(); });
  BOOST_TEST(*ec == boost::asio::error::operation_aborted);
  BOOST_TEST(f.backend.stats().blocked_clients == 0u);
  f.ok(cmd::set{.key = "k", .value = "late"});  // nobody is woken twice
}

BOOST_AUTO_TEST_CASE(destroying_the_backend_fails_blocked_commands) {
  boost::asio::io_context ioc;
  std::optional<boost::system::error_code> ec;
  {
    MemoryBackend db(ioc);
    db.async_exec(my::wait_get{"k"}, [&](boost::system::error_code e, auto) { ec = e; });
    ioc.poll();
    BOOST_TEST(!ec.has_value());
  }
  ioc.restart();  // poll() stopped it when it ran out of work
  ioc.run();
  BOOST_REQUIRE(ec.has_value());
  BOOST_TEST(*ec == make_error_code(Error::connection_closed));
}

BOOST_AUTO_TEST_CASE(fake_backend_fails_the_next_operations_on_request) {
  BackendFixture<FakeBackend> f;
  f.backend.fail_next(2, Error::connection_lost);
  f.fails(cmd::set{.key = "k", .value = "v"}, Error::connection_lost);
  f.fails(cmd::get{"k"}, Error::connection_lost);
  BOOST_TEST(!f.ok(cmd::get{"k"}).has_value());  // the failed SET did not run
  f.backend.fail_next(1, Error::out_of_memory);
  f.fails(batch(cmd::ping{}, cmd::ping{}), Error::out_of_memory);
  BOOST_TEST(f.ok(cmd::ping{}) == "PONG");
}

BOOST_AUTO_TEST_CASE(fake_backend_drops_and_restores_the_connection) {
  BackendFixture<FakeBackend> f;
  std::optional<boost::system::error_code> blocked;
  f.backend.async_exec(my::wait_get{"k"}, [&](boost::system::error_code e, auto) { blocked = e; });
  f.ioc.poll();
  f.backend.drop_connection();
  f.run_until([&] { return blocked.has_value(); });
  BOOST_TEST(*blocked == make_error_code(Error::connection_lost));
  BOOST_TEST(f.backend.health() == HealthStatus::disconnected);
  f.fails(cmd::set{.key = "k", .value = "v"}, Error::not_connected);
  f.backend.restore_connection();
  BOOST_TEST(f.backend.health() == HealthStatus::ok);
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "v"}));
}

BOOST_AUTO_TEST_CASE(fake_backend_adds_latency) {
  BackendFixture<FakeBackend> f;
  f.backend.set_latency(30ms);
  auto const start = std::chrono::steady_clock::now();
  BOOST_TEST(f.ok(cmd::ping{}) == "PONG");
  BOOST_TEST((std::chrono::steady_clock::now() - start >= 30ms));
  f.backend.set_latency(0ms);
}

BOOST_AUTO_TEST_CASE(fake_backend_logs_every_command_as_argv) {
  BackendFixture<FakeBackend> f;
  f.ok(cmd::set{.key = "k", .value = "v", .ttl = 1500ms, .nx = true});
  f.ok(transaction(cmd::get{"k"}, cmd::del{.keys = {"k", "x"}}));
  auto const log = f.backend.command_log();
  BOOST_REQUIRE(log.size() == 5u);
  BOOST_TEST(log[0] == std::vector<std::string>({"SET", "k", "v", "PX", "1500", "NX"}));
  BOOST_TEST(log[1] == std::vector<std::string>({"MULTI"}));
  BOOST_TEST(log[3] == std::vector<std::string>({"DEL", "k", "x"}));
  BOOST_TEST(log[4] == std::vector<std::string>({"EXEC"}));
  BOOST_TEST(f.backend.count_in_log("GET") == 1u);
  f.backend.clear_log();
  BOOST_TEST(f.backend.command_log().empty());
}

BOOST_AUTO_TEST_CASE(scan_map_cursors_return_every_element_present_throughout) {
  // SCAN's guarantee under churn: elements present for the whole iteration are returned at
  // least once, whatever is inserted and erased between steps.
  rediskit::detail::mem::ScanMap<std::string> m;
  for (int i = 0; i < 5000; ++i) m.assign("stable" + std::to_string(i), "v");
  std::mt19937 rng(7);
  std::set<std::string> seen;
  std::uint64_t cursor = 0;
  int churn = 0;
  do {
    cursor = m.scan(cursor, 37, [&](std::string const& k, std::string const&) { seen.insert(k); });
    for (int j = 0; j < 40; ++j) m.assign("churn" + std::to_string(churn++), "x");
    for (int j = 0; j < 30; ++j) m.erase("churn" + std::to_string(rng() % (churn + 1)));
  } while (cursor != 0);
  for (int i = 0; i < 5000; ++i) BOOST_TEST(seen.contains("stable" + std::to_string(i)));
}

// MemoryConfig::cluster_checks: Redis Cluster's key rules on one process, so that a service's
// suite shows on every backend what would break on a cluster.
BOOST_AUTO_TEST_CASE_TEMPLATE(cluster_checks_refuse_what_a_cluster_refuses, B, InProcessBackends) {
  BackendFixture<B> f(std::in_place, MemoryConfig{.cluster_checks = true});
  // One command, a transaction: keys in two slots are refused, and nothing runs.
  Diagnostics diag;
  f.fails(cmd::mget{{"a", "b"}}, Error::cross_slot);
  f.fails(transaction(cmd::set{.key = "a", .value = "1"}, cmd::set{.key = "b", .value = "2"}),
          Error::cross_slot);
  BOOST_TEST(!f.ok(cmd::get{"a"}).has_value());
  // A plain batch may span slots: each command is on its own.
  auto [x, y] = f.ok(batch(cmd::set{.key = "a", .value = "1"}, cmd::set{.key = "b", .value = "2"}));
  BOOST_TEST((x && y));
  // One hash tag: one slot.
  BOOST_TEST(f.ok(cmd::mget{{"{t}a", "{t}b"}}).size() == 2u);
  auto [s1, n] = f.ok(transaction(cmd::set{.key = "{t}a", .value = "1"}, cmd::incr{"{t}n"}));
  BOOST_TEST((s1 && n == 1));

  // A script may touch only what it declares: a twin that reaches for another key fails.
  auto const copy = make_script<std::int64_t>(
      "redis.call('SET', KEYS[2], redis.call('GET', KEYS[1])) return 1",
      [](ScriptContext auto& c) -> std::int64_t {
        auto v = c.call(cmd::get{c.keys()[0]});
        c.call(cmd::set{.key = c.args().empty() ? c.keys()[1] : c.args()[0],
                        .value = v.value_or("")});
        return 1;
      });
  BOOST_TEST(f.ok(copy({"{t}a", "{t}b"}, {})) == 1);
  BOOST_TEST(f.ok(cmd::get{"{t}b"}).value_or("") == "1");
  f.fails(copy({"{t}a", "{t}b"}, {"{t}c"}), Error::server_error);  // {t}c: same slot, undeclared
  BOOST_TEST(!f.ok(cmd::get{"{t}c"}).has_value());
  auto text = test::error_text(f, copy({"{t}a", "{t}b"}, {"{t}c"}));
  BOOST_TEST(text.find("'{t}c'") != std::string::npos, text);
  f.fails(copy({"a", "b"}, {}), Error::cross_slot);  // KEYS in two slots

  // Without the checks (the default) all of it runs, as on one Redis.
  BackendFixture<B> plain(std::in_place);
  BOOST_TEST(plain.ok(cmd::mget{{"a", "b"}}).size() == 2u);
  BOOST_TEST(plain.ok(copy({"{t}a", "{t}b"}, {"c"})) == 1);
}

// ScriptContext::view: a twin reads ZRANGE BYLEX members and HMGET values without copies; they
// are call()'s replies, errors stop the script as call()'s do, and undeclared keys are refused.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_twin_views_what_call_would_copy, B, InProcessBackends) {
  BackendFixture<B> f(std::in_place, MemoryConfig{.cluster_checks = true});
  f.ok(cmd::zadd{.key = "{t}z", .members = {{0, "apple"}, {0, "apricot"}, {0, "banana"}}});
  f.ok(cmd::hset{"{t}h", {{"a", "1"}, {"c", "3"}}});
  auto const joined =
      make_script<std::string>("return 'twin only'", [](ScriptContext auto& c) -> std::string {
        auto const k = c.keys();
        cmd::zrange_by_lex const range{.key = k[0],
                                       .min = LexBound::incl("ap"),
                                       .max = LexBound::excl("aq"),
                                       .limit = RangeLimit{0, 10}};
        std::vector<std::string_view> const members = c.view(range);
        std::vector<std::string> const copied = c.call(range);
        if (!std::equal(members.begin(), members.end(), copied.begin(), copied.end()))
          c.fail("ERR views differ from call()");
        std::string out;
        for (auto m : members)
          out.append(m).push_back(',');
        for (auto const& v : c.view(cmd::hmget{k[1], {"a", "b", "c"}}))
          out.append(v ? *v : "nil").push_back(',');
        return out;
      });
  BOOST_TEST(f.ok(joined({"{t}z", "{t}h"}, {})) == "apple,apricot,1,nil,3,");
  auto text = test::error_text(f, joined({"{t}h", "{t}z"}, {}));  // ZRANGE on a hash
  BOOST_TEST(text.find("WRONGTYPE") == 0u, text);
  auto const undeclared =
      make_script<std::int64_t>("return 0", [](ScriptContext auto& c) -> std::int64_t {
        return static_cast<std::int64_t>(c.view(cmd::hmget{"{t}h", {"a"}}).size());
      });
  f.fails(undeclared({"{t}z"}, {}), Error::server_error);
}

BOOST_AUTO_TEST_SUITE_END()
