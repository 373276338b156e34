// The Backend concept's behaviour, the same on MemoryBackend, FakeBackend, RedisBackend and
// ClusterBackend: batches, transactions, ranges of commands, errors and diagnostics, scripts,
// pub/sub, completion through the executor, TTL expiry. The keys of one transaction, script or
// multi-key command share a hash tag ("{t}k"), as a cluster requires.
#include "support/backends.hpp"
#include "support/cross_slot.hpp"

#include <rediskit/cluster/slot.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/compose.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <optional>
#include <tuple>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;

namespace {

// The parity example of script.hpp: increments a counter unless it reached a cap.
auto const capped_incr = make_script<long long>(
    "local n = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "if n >= tonumber(ARGV[1]) then return -1 end "
    "redis.call('SET', KEYS[1], tostring(n + 1)) return n + 1",
    [](ScriptContext auto& ctx) -> long long {
      auto v = ctx.call(cmd::get{ctx.keys()[0]});
      long long const n = v ? std::stoll(*v) : 0;
      if (n >= std::stoll(std::string(ctx.args()[0]))) return -1;
      ctx.call(cmd::set{.key = ctx.keys()[0], .value = std::to_string(n + 1)});
      return n + 1;
    });

// A script whose redis.call fails: the error stops it and reaches the caller.
auto const get_script =
    make_script<std::string>("return redis.call('GET', KEYS[1])",
                             [](ScriptContext auto& ctx) { return *ctx.call(cmd::get{ctx.keys()[0]}); });

// redis.error_reply: a script refusing with its own error.
auto const refuse = make_script<long long>(
    "return redis.error_reply('ERR refused by the script')",
    [](ScriptContext auto& ctx) -> long long {
      ctx.fail("ERR refused by the script");
      return 0;
    });

// A multi-step operation written the natural way: each step's command views short members of
// the operation (their characters live inside the std::string objects, which move with the
// operation), and the operation moves itself into the backend's handler in the same call.
// Every backend reads the command before the handler moves, and keeps its own copy when the
// command waits (BLMOVE), so this is safe: no step sees a moved-from (empty) string.
template <class B>
struct MembersOp {
  B& backend;
  std::string key = "k", value = "v", source = "{t}s", destination = "{t}d";
  std::optional<std::string> got{};
  int step = 0;

  template <class Self>
  void operator()(Self& self) {
    backend.async_exec(cmd::set{.key = key, .value = value}, std::move(self));
  }
  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, bool) {
    if (ec) return self.complete(ec, std::nullopt, std::nullopt);
    backend.async_exec(cmd::get{key}, std::move(self));
  }
  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, std::optional<std::string> r) {
    if (ec || step++ == 1) return self.complete(ec, std::move(got), std::move(r));
    got = std::move(r);
    backend.async_exec(cmd::blmove{.source = source, .destination = destination, .timeout = 10s},
                       std::move(self));
  }
};

// Commands waiting in a blocking command on `key`, as the server (or the engine) counts them.
template <class B>
std::size_t blocked_clients(BackendFixture<B>& f, std::string_view key) {
  auto count = [](std::string const& info) {
    auto const at = info.find("blocked_clients:");
    BOOST_REQUIRE(at != std::string::npos);
    return std::stoul(info.substr(at + 16));
  };
  if constexpr (BackendFixture<B>::is_redis) {
    (void)key;
    return count(f.ok(cmd::info{"clients"}));
  } else if constexpr (BackendFixture<B>::is_cluster) {
    // INFO through the backend answers for whichever master it reaches: ask the key's own.
    auto& cluster = test::shared_cluster();
    return count(cluster.command(cluster.owner_of(cluster::key_slot(key)), "INFO clients"));
  } else {
    (void)key;
    return f.backend.stats().blocked_clients;
  }
}

template <class B, class Token>
auto async_members_op(B& backend, Token&& token) {
  return boost::asio::async_compose<
      Token, void(boost::system::error_code, std::optional<std::string>, std::optional<std::string>)>(
      MembersOp<B>{backend}, token, backend);
}

// A subscriber's (un)subscription, run to its end: its error.
template <class F, class Start>
boost::system::error_code change_subscription(F& f, Start&& start) {
  std::optional<boost::system::error_code> ec;
  start([&](boost::system::error_code e) { ec = e; });
  f.run_until([&] { return ec.has_value(); });
  return *ec;
}

// The subscriber's next message.
template <class F, class S>
Message receive_message(F& f, S& sub) {
  std::optional<Message> m;
  sub.async_receive([&](boost::system::error_code ec, Message msg) {
    BOOST_TEST(!ec);
    m = std::move(msg);
  });
  f.run_until([&] { return m.has_value(); });
  return *m;
}

}  // namespace

static_assert(check_backend<MemoryBackend>());
static_assert(check_backend<FakeBackend>());
static_assert(check_backend<RedisBackend>());
static_assert(check_backend<ClusterBackend>());

BOOST_AUTO_TEST_SUITE(backend)

BOOST_AUTO_TEST_CASE_TEMPLATE(single_commands_reply_typed_values, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = std::string("a\0b", 3)}));
  BOOST_TEST(*f.ok(cmd::get{"k"}) == std::string("a\0b", 3));
  BOOST_TEST(!f.ok(cmd::get{"missing"}).has_value());
  BOOST_TEST(!f.ok(cmd::set{.key = "k", .value = "x", .nx = true}));
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "x", .xx = true}));
  BOOST_TEST(!f.ok(cmd::set{.key = "nope", .value = "x", .xx = true}));
  BOOST_TEST(f.ok(cmd::ping{}) == "PONG");
  BOOST_TEST(f.ok(cmd::ping{"hi"}) == "hi");
  BOOST_TEST(f.ok(cmd::echo{"e"}) == "e");
  BOOST_TEST(f.ok(cmd::dbsize{}) == 1);
  auto const [secs, micros] = f.ok(cmd::time{});
  BOOST_TEST(secs > 1'600'000'000);
  BOOST_TEST((micros >= 0 && micros < 1'000'000));
  // A cluster's INFO comes from one master (any), which may not hold "k".
  if constexpr (BackendFixture<B>::is_cluster)
    BOOST_TEST(f.ok(cmd::info{"keyspace"}).find("# Keyspace") != std::string::npos);
  else
    BOOST_TEST(f.ok(cmd::info{"keyspace"}).find("keys=1") != std::string::npos);
  BOOST_TEST(f.ok(cmd::flushdb{}));
  BOOST_TEST(f.ok(cmd::dbsize{}) == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_batch_fills_every_reply_and_reports_the_first_error, B,
                              AllBackends) {
  BackendFixture<B> f;
  std::vector<cmd::set> sets{{.key = "a", .value = "1"}, {.key = "b", .value = "2"}};
  std::vector<cmd::get> gets{{"a"}, {"b"}, {"c"}};
  auto [s, g, p] = f.ok(batch(sets, gets, cmd::ping{}));
  BOOST_TEST(s == std::vector<bool>({true, true}));
  BOOST_TEST(g.size() == 3u);
  BOOST_TEST(*g[0] == "1");
  BOOST_TEST(*g[1] == "2");
  BOOST_TEST(!g[2].has_value());
  BOOST_TEST(p == "PONG");

  // A failing command in the middle: the error is reported, the others still ran.
  Diagnostics diag;
  std::optional<boost::system::error_code> ec;
  std::tuple<std::optional<std::string>, bool, std::optional<std::string>> r;
  f.backend.async_exec(
      batch(cmd::get{"a"}, cmd::set{.key = "a", .value = "x", .ttl = -5ms}, cmd::get{"b"}), diag,
      [&](boost::system::error_code e, auto v) {
        ec = e;
        r = std::move(v);
      });
  f.run_until([&] { return ec.has_value(); });
  BOOST_TEST(*ec == make_error_code(Error::server_error));
  BOOST_TEST(diag.server_message == "ERR invalid expire time in 'set' command");
  BOOST_TEST(*std::get<0>(r) == "1");
  BOOST_TEST(*std::get<2>(r) == "2");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_range_of_commands_is_one_operation, B, AllBackends) {
  BackendFixture<B> f;
  std::vector<std::string> keys;
  std::vector<cmd::set> sets;
  for (int i = 0; i < 100; ++i) keys.push_back("user:" + std::to_string(i));
  for (auto const& k : keys) sets.push_back({.key = k, .value = k});
  BOOST_TEST(f.ok(sets).size() == 100u);
  std::vector<cmd::get> gets;
  for (auto const& k : keys) gets.push_back({k});
  auto values = f.ok(gets);
  BOOST_REQUIRE(values.size() == 100u);
  for (std::size_t i = 0; i < keys.size(); ++i) BOOST_TEST(*values[i] == keys[i]);
  // An empty range is no round trip, and no error.
  BOOST_TEST(f.ok(std::vector<cmd::get>{}).empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_transaction_runs_all_or_aborts_on_a_wrong_argument_count, B,
                              AllBackends) {
  BackendFixture<B> f;
  auto [set, del, get] = f.ok(transaction(cmd::set{.key = "{t}k", .value = "v"},
                                          cmd::del{.keys = {"{t}k", "{t}x"}}, cmd::get{"{t}k"}));
  BOOST_TEST(set);
  BOOST_TEST(del == 1);
  BOOST_TEST(!get.has_value());

  // DEL with no key is refused when queued: EXECABORT, nothing of the transaction ran.
  BOOST_TEST(f.ok(cmd::set{.key = "k", .value = "before"}));
  auto [ec, r] = f.exec(transaction(cmd::set{.key = "k", .value = "after"}, cmd::del{}));
  BOOST_TEST(ec == make_error_code(Error::server_error));
  BOOST_TEST(*f.ok(cmd::get{"k"}) == "before");

  // A runtime error does not undo the others (Redis has no rollback).
  auto [ec2, r2] = f.exec(transaction(cmd::set{.key = "k", .value = "x", .nx = true, .xx = true},
                                      cmd::set{.key = "k", .value = "after"}));
  BOOST_TEST(ec2 == make_error_code(Error::server_error));
  BOOST_TEST(std::get<1>(r2));
  BOOST_TEST(*f.ok(cmd::get{"k"}) == "after");

  // Keys in two slots: refused on a cluster (and by MemoryBackend's cluster checks), whole.
  test::expect_cross_slot(f, transaction(cmd::set{.key = "k", .value = "cross"}, cmd::get{"x"}));
  BOOST_TEST(*f.ok(cmd::get{"k"}) == "after");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(arity_errors_name_the_command, B, AllBackends) {
  BackendFixture<B> f;
  Diagnostics diag;
  std::optional<boost::system::error_code> ec;
  f.backend.async_exec(cmd::del{}, diag, [&](boost::system::error_code e, long long) { ec = e; });
  f.run_until([&] { return ec.has_value(); });
  BOOST_TEST(*ec == make_error_code(Error::server_error));
  BOOST_TEST(diag.server_message == "ERR wrong number of arguments for 'del' command");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(completions_never_run_inside_the_initiating_call, B,
                              AllBackends) {
  BackendFixture<B> f;
  bool done = false;
  f.backend.async_exec(cmd::ping{}, [&](boost::system::error_code, std::string) { done = true; });
  BOOST_TEST(!done);
  f.run_until([&] { return done; });
  done = false;
  f.backend.async_exec(batch(cmd::ping{}, cmd::ping{}),
                       [&](boost::system::error_code, auto) { done = true; });
  BOOST_TEST(!done);
  f.run_until([&] { return done; });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(many_concurrent_operations_all_complete_in_order, B,
                              AllBackends) {
  BackendFixture<B> f;
  constexpr int n = 1000;
  std::vector<std::string> keys;
  for (int i = 0; i < n; ++i) keys.push_back("c:" + std::to_string(i));
  int completed = 0;
  for (int i = 0; i < n; ++i)
    f.backend.async_exec(cmd::set{.key = keys[i], .value = keys[i]},
                         [&](boost::system::error_code ec, bool ok) {
                           BOOST_TEST(!ec);
                           BOOST_TEST(ok);
                           ++completed;
                         });
  f.run_until([&] { return completed == n; });
  BOOST_TEST(f.ok(cmd::dbsize{}) == n);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(keys_expire_after_their_ttl, B, AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(cmd::set{.key = "short", .value = "v", .ttl = 50ms}));
  BOOST_TEST(f.ok(cmd::set{.key = "long", .value = "v", .ttl = 60s}));
  BOOST_TEST(f.ok(cmd::set{.key = "forever", .value = "v"}));
  BOOST_TEST(f.ok(cmd::dbsize{}) == 3);
  f.advance(120ms);
  BOOST_TEST(!f.ok(cmd::get{"short"}).has_value());
  BOOST_TEST(f.ok(cmd::dbsize{}) == 2);  // the count is exact once the key is gone
  // SET without KEEPTTL clears the TTL; with KEEPTTL it keeps it.
  BOOST_TEST(f.ok(cmd::set{.key = "t", .value = "1", .ttl = 50ms}));
  BOOST_TEST(f.ok(cmd::set{.key = "t", .value = "2", .keep_ttl = true}));
  BOOST_TEST(f.ok(cmd::set{.key = "u", .value = "1", .ttl = 50ms}));
  BOOST_TEST(f.ok(cmd::set{.key = "u", .value = "2"}));
  f.advance(120ms);
  BOOST_TEST(!f.ok(cmd::get{"t"}).has_value());
  BOOST_TEST(*f.ok(cmd::get{"u"}) == "2");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(scripts_run_atomically_with_the_same_results, B,
                              AllBackends) {
  BackendFixture<B> f;
  BOOST_TEST(f.ok(capped_incr({"c"}, {"2"})) == 1);
  BOOST_TEST(f.ok(capped_incr({"c"}, {"2"})) == 2);
  BOOST_TEST(f.ok(capped_incr({"c"}, {"2"})) == -1);
  auto [a, b] = f.ok(transaction(capped_incr({"d"}, {"5"}), cmd::get{"d"}));
  BOOST_TEST(a == 1);
  BOOST_TEST(*b == "1");
  std::vector<decltype(capped_incr({"e"}, {"100"}))> many;
  for (int i = 0; i < 10; ++i) many.push_back(capped_incr({"e"}, {"100"}));
  auto results = f.ok(many);
  BOOST_TEST(results.back() == 10);
  // An error inside the script (WRONGTYPE from a call on a hash... here: GET on a missing
  // key's nil is fine; a script-raised error keeps its code).
  f.fails(refuse({}, {}), Error::server_error);
  BOOST_TEST(f.ok(cmd::set{.key = "s", .value = "v"}));
  BOOST_TEST(f.ok(get_script({"s"})) == "v");
  // A script's KEYS in two slots: refused on a cluster (and by MemoryBackend's cluster checks).
  test::expect_cross_slot(f, capped_incr({"c", "d"}, {"100"}));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(subscribers_receive_channel_and_pattern_messages, B,
                              AllBackends) {
  BackendFixture<B> f;
  auto sub = f.backend.make_subscriber();
  auto wait = [&](auto&& start) { BOOST_TEST(!change_subscription(f, start)); };
  wait([&](auto h) { sub.async_subscribe({"room:1", "room:2"}, h); });
  wait([&](auto h) { sub.async_psubscribe("user:*", h); });
  // On a cluster PUBLISH counts only the subscribers of the master it was sent to (any): the
  // others get the message over the cluster bus, uncounted. One subscriber: 0 or 1.
  auto reached_one = [](long long n) {
    return BackendFixture<B>::is_cluster ? (n == 0 || n == 1) : n == 1;
  };
  BOOST_TEST(reached_one(f.ok(cmd::publish{"room:1", "hello"})));
  BOOST_TEST(reached_one(f.ok(cmd::publish{"user:42", std::string("bin\0ary", 7)})));
  BOOST_TEST(f.ok(cmd::publish{"nobody", "x"}) == 0);
  auto receive = [&] { return receive_message(f, sub); };
  auto m1 = receive();
  auto m2 = receive();
  // On a cluster the two were published through different masters (perhaps), and reach the
  // subscriber's node over the bus in no set order.
  if (BackendFixture<B>::is_cluster && m1.channel != "room:1") std::swap(m1, m2);
  BOOST_TEST(m1.channel == "room:1");
  BOOST_TEST(m1.payload == "hello");
  BOOST_TEST(m1.pattern.empty());
  BOOST_TEST(m2.channel == "user:42");
  BOOST_TEST(m2.pattern == "user:*");
  BOOST_TEST(m2.payload == std::string("bin\0ary", 7));
  wait([&](auto h) { sub.async_unsubscribe("room:1", h); });
  BOOST_TEST(f.ok(cmd::publish{"room:1", "gone"}) == 0);
  BOOST_TEST(reached_one(f.ok(cmd::publish{"room:2", "still"})));
  BOOST_TEST(receive().payload == "still");
}

// Sharded pub/sub: a namespace of its own (PUBLISH never reaches a shard channel, SPUBLISH
// reaches nothing else), channels in several slots in one call, an exact SPUBLISH count (on a
// cluster the subscriber sits on the slot's master, where SPUBLISH goes).
BOOST_AUTO_TEST_CASE_TEMPLATE(shard_channels_receive_spublish_only, B, AllBackends) {
  BackendFixture<B> f;
  auto sub = f.backend.make_subscriber();
  auto wait = [&](auto&& start) { return change_subscription(f, start); };
  // "a", "b" and "room:7" are in three different slots (and on three masters).
  BOOST_TEST(!wait([&](auto h) { sub.async_ssubscribe({"a", "b", "room:7"}, h); }));
  BOOST_TEST(!wait([&](auto h) { sub.async_subscribe("classic", h); }));
  BOOST_TEST(f.ok(cmd::spublish{"a", "1"}) == 1);
  BOOST_TEST(f.ok(cmd::spublish{"room:7", "2"}) == 1);
  BOOST_TEST(f.ok(cmd::publish{"b", "not for shard subscribers"}) == 0);
  BOOST_TEST(f.ok(cmd::spublish{"classic", "not for channel subscribers"}) == 0);
  BOOST_TEST(f.ok(cmd::spublish{"nobody", "x"}) == 0);
  auto receive = [&] { return receive_message(f, sub); };
  // Two nodes' messages: their order is not set on a cluster.
  std::map<std::string, std::string> got;
  for (int i = 0; i < 2; ++i) {
    auto m = receive();
    BOOST_TEST(m.sharded);
    BOOST_TEST(m.pattern.empty());
    got[m.channel] = m.payload;
  }
  BOOST_TEST((got == std::map<std::string, std::string>{{"a", "1"}, {"room:7", "2"}}));
  BOOST_TEST(!wait([&](auto h) { sub.async_sunsubscribe("a", h); }));
  BOOST_TEST(f.ok(cmd::spublish{"a", "gone"}) == 0);
  BOOST_TEST(f.ok(cmd::spublish{"b", "3"}) == 1);
  auto m = receive();
  BOOST_TEST(m.channel == "b");
  BOOST_TEST(m.payload == "3");
  BOOST_TEST(m.sharded);
  BOOST_TEST(!wait([&](auto h) { sub.async_sunsubscribe({}, h); }));
  BOOST_TEST(f.ok(cmd::spublish{"b", "gone"}) == 0);
  BOOST_TEST(f.ok(cmd::spublish{"room:7", "gone"}) == 0);
  // Subscribing needs a channel.
  BOOST_TEST(wait([&](auto h) { sub.async_ssubscribe(std::vector<std::string>{}, h); }) ==
             Error::invalid_request);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_waiting_receive_can_be_cancelled, B, AllBackends) {
  BackendFixture<B> f;
  auto sub = f.backend.make_subscriber();
  std::optional<boost::system::error_code> sub_ec;
  sub.async_subscribe("quiet", [&](boost::system::error_code e) { sub_ec = e; });
  f.run_until([&] { return sub_ec.has_value(); });
  boost::asio::cancellation_signal sig;
  std::optional<boost::system::error_code> ec;
  sub.async_receive(boost::asio::bind_cancellation_slot(
      sig.slot(), [&](boost::system::error_code e, Message) { ec = e; }));
  f.ioc.poll();
  BOOST_TEST(!ec.has_value());
  sig.emit(boost::asio::cancellation_type::terminal);
  f.run_until([&] { return ec.has_value(); });
  BOOST_TEST(*ec == boost::asio::error::operation_aborted);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_composed_op_may_move_itself_with_what_its_commands_view, B,
                              AllBackends) {
  BackendFixture<B> f;
  auto run = [&](char const* what) {
    BOOST_TEST_CONTEXT(what) {
      BOOST_TEST(f.ok(cmd::flushdb{}));
      std::optional<std::tuple<boost::system::error_code, std::optional<std::string>,
                               std::optional<std::string>>>
          done;
      async_members_op(f.backend, [&](auto ec, auto got, auto moved) {
        done.emplace(ec, std::move(got), std::move(moved));
      });
      // BLMOVE waits on "{t}s" (its copy of the key, once the op has moved on) until this push.
      f.run_until([&] { return blocked_clients(f, "{t}s") == 1; });
      BOOST_TEST(!done.has_value());
      BOOST_TEST(f.ok(cmd::rpush{.key = "{t}s", .values = "x"}) == 1);
      f.run_until([&] { return done.has_value(); });
      auto const& [ec, got, moved] = *done;
      BOOST_TEST(!ec, ec.message());
      BOOST_TEST(got.value_or("<none>") == "v");
      BOOST_TEST(moved.value_or("<none>") == "x");
      BOOST_TEST(f.ok(cmd::lrange{.key = "{t}d"}) == std::vector<std::string>{"x"});
      BOOST_TEST(f.ok(cmd::dbsize{}) == 2);  // "k" and "d": nothing under an empty key
    }
  };
  run("no latency");
  if constexpr (BackendFixture<B>::is_fake) {
    f.backend.set_latency(5ms);
    run("FakeBackend with latency");
    f.backend.set_latency(0ms);
  }
}

BOOST_AUTO_TEST_SUITE_END()
