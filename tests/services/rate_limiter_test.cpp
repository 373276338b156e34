// RateLimiter on MemoryBackend, FakeBackend, RedisBackend and ClusterBackend: GCRA against its
// definition (redis-cell's) on the manual clock and on every backend with a pinned "now";
// sliding and fixed window boundaries against brute-force models; weights; per-endpoint
// limits and seed 002's key names; composite (user + IP) checks that consume nothing when
// denied; block durations; concurrency; the insurance limiter taking over when the Fake
// backend drops its connection and handing back; stats; bad input; the Lua script and its C++
// twin agreeing on random sequences.
//
// The expected answers are computed here, independently: GCRA from the TAT definition and
// literal tables, the windows by brute force (the smallest wait after which the same check
// would pass, the first instant at which nothing counts any more).
#include "support/backends.hpp"
#include "support/cross_slot.hpp"

#include <rediskit/services/rate_limiter.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using boost::system::error_code;
namespace asio = boost::asio;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
namespace rl = rediskit::detail::ratelimit;

namespace {

using rediskit::test::invalid;

/// What a check should answer (redis-cell's five numbers; times in ms).
struct Expect {
  bool allowed = false;
  std::int64_t limit = 0, remaining = 0, retry = 0, reset = 0;
};

std::int64_t ceil_ms(std::int64_t us) {
  return us <= 0 ? 0 : (us + 999) / 1000;
}

/// GCRA as redis-cell defines it (throttled's rate_limiter.rs), in µs: T = period / limit,
/// τ = T · burst; TAT starts at now.
struct GcraModel {
  std::int64_t T, tau, burst;
  std::optional<std::int64_t> tat;
  GcraModel(std::int64_t limit, std::int64_t period_ms, std::int64_t burst_)
      : T(period_ms * 1000 / limit), tau(T * burst_), burst(burst_) {}
  Expect check(std::int64_t now, std::int64_t cost) {
    std::int64_t const t = tat && *tat > now ? *tat : now;
    std::int64_t const next = t + cost * T;
    std::int64_t const allow_at = next - tau;
    Expect e;
    e.limit = burst;
    if (now < allow_at) {  // limited: nothing changes
      e.retry = ceil_ms(allow_at - now);
      e.reset = ceil_ms(t - now);
      e.remaining = std::max<std::int64_t>(0, tau - (t - now)) / T;
    } else {
      tat = next;
      e.allowed = true;
      e.reset = ceil_ms(next - now);
      e.remaining = std::max<std::int64_t>(0, tau - (next - now)) / T;
    }
    return e;
  }
};

/// A window counter (sliding or fixed), answered by brute force over milliseconds.
struct WindowModel {
  bool sliding;
  std::int64_t limit, P;
  std::map<std::int64_t, std::int64_t> counts;  // window index -> cost counted

  // Weighted use at `ms` with `extra` more in the current window, scaled by P.
  std::int64_t used(std::int64_t ms, std::int64_t extra) const {
    std::int64_t const w = ms / P, e = ms - w * P;
    auto at = [&](std::int64_t i) {
      auto it = counts.find(i);
      return it == counts.end() ? 0 : it->second;
    };
    std::int64_t u = (at(w) + extra) * P;
    if (sliding) u += at(w - 1) * (P - e);
    return u;
  }
  bool fits(std::int64_t ms, std::int64_t cost) const { return used(ms, cost) <= limit * P; }
  Expect check(std::int64_t now_ms, std::int64_t cost) {
    Expect e;
    e.limit = limit;
    e.allowed = fits(now_ms, cost);
    if (e.allowed) {
      counts[now_ms / P] += cost;
    } else {
      std::int64_t d = 1;
      while (!fits(now_ms + d, cost))
        ++d;
      e.retry = d;
    }
    e.remaining = std::max<std::int64_t>(0, limit * P - used(now_ms, 0)) / P;
    std::int64_t d = 0;
    while (used(now_ms + d, 0) > 0)
      ++d;
    e.reset = d;
    return e;
  }
};

/// The script's arguments for one rule (what RateLimiter sends, with `now` pinned).
void add_rule(std::vector<std::string>& args, RateLimit const& r) {
  char const algo = r.algorithm == RateAlgorithm::gcra             ? 'g'
                    : r.algorithm == RateAlgorithm::sliding_window ? 's'
                                                                   : 'f';
  args.emplace_back(1, algo);
  args.push_back(std::to_string(r.limit));
  args.push_back(std::to_string(r.period.count()));
  args.push_back(std::to_string(r.capacity()));
  args.push_back(std::to_string(r.block_for.count()));
}

/// One limiter on a fresh database of B, and synchronous helpers.
template <class B>
struct Limiter {
  explicit Limiter(RateLimiterOptions o, bool cluster_checks = false)
      : f(fixture(cluster_checks)), rl(f.backend, std::move(o)) {}

  static BackendFixture<B> fixture(bool cluster_checks) {
    if constexpr (!BackendFixture<B>::on_server) {
      if (cluster_checks)
        return BackendFixture<B>(std::in_place, MemoryConfig{.cluster_checks = true});
    }
    return BackendFixture<B>();
  }

  RateLimitResult check(std::string_view endpoint, RateSubject s, std::int64_t cost = 1) {
    auto [ec, r] = f.wait(rl.async_check(endpoint, s, cost));
    BOOST_REQUIRE_MESSAGE(!ec, "unexpected error: " << ec.message());
    return r;
  }
  error_code error(std::string_view endpoint, RateSubject s, std::int64_t cost = 1) {
    auto [ec, r] = f.wait(rl.async_check(endpoint, s, cost));
    BOOST_TEST(!r.allowed);
    return ec;
  }
  /// The script on `keys` (one check) with `now_us` pinned: its raw reply (6 numbers per key).
  std::vector<std::int64_t> pinned(std::vector<std::string> const& keys, std::int64_t now_us,
                                   std::int64_t cost, std::vector<RateLimit> const& rules) {
    std::vector<std::string> args{std::to_string(now_us), std::to_string(keys.size()),
                                  std::to_string(cost)};
    for (auto const& r : rules)
      add_rule(args, r);
    auto reply = f.ok(rl::check_script(keys, args));
    BOOST_TEST_REQUIRE(!reply.empty());
    BOOST_TEST(reply.front() == rl::kDecided);
    reply.erase(reply.begin());
    return reply;
  }

  BackendFixture<B> f;
  RateLimiter<B> rl;
};

/// `r` is `e`; on a real clock (`slack_ms` > 0) retry and reset may be up to slack_ms shorter.
void expect(RateLimitResult const& r, Expect const& e, std::int64_t slack_ms = 0) {
  BOOST_TEST(r.allowed == e.allowed);
  BOOST_TEST(r.limit == e.limit);
  if (slack_ms == 0) {
    BOOST_TEST(r.remaining == e.remaining);
    BOOST_TEST(r.retry_after.count() == e.retry);
    BOOST_TEST(r.reset_after.count() == e.reset);
  } else {
    BOOST_TEST(r.remaining >= e.remaining);
    BOOST_TEST(r.retry_after.count() <= e.retry);
    BOOST_TEST(r.retry_after.count() >= std::max<std::int64_t>(0, e.retry - slack_ms));
    BOOST_TEST(r.reset_after.count() <= e.reset);
    BOOST_TEST(r.reset_after.count() >= std::max<std::int64_t>(0, e.reset - slack_ms));
  }
}

/// Part `i` of a raw script reply.
Expect part(std::vector<std::int64_t> const& reply, std::size_t i) {
  BOOST_TEST_REQUIRE(reply.size() >= 6 * (i + 1));
  auto const* v = &reply[6 * i];
  return {v[0] != 0, v[1], v[2], v[3], v[4]};
}

void expect_part(std::vector<std::int64_t> const& reply, std::size_t i, Expect const& e) {
  Expect const got = part(reply, i);
  BOOST_TEST(got.allowed == e.allowed);
  BOOST_TEST(got.limit == e.limit);
  BOOST_TEST(got.remaining == e.remaining);
  BOOST_TEST(got.retry == e.retry);
  BOOST_TEST(got.reset == e.reset);
}

// A pinned instant on a millisecond boundary of a 1-second window (2023-11-14T22:13:20Z).
constexpr std::int64_t kBaseUs = 1'700'000'000'000'000;

RateLimiterOptions one_endpoint(std::string const& name, EndpointLimits limits) {
  RateLimiterOptions o;
  o.endpoints[name] = limits;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(rate_limiter)

// GCRA, 5 per second, burst 5 (T = 200 ms, τ = 1 s): redis-cell's answers, written out.
BOOST_AUTO_TEST_CASE_TEMPLATE(gcra_follows_its_definition_on_the_manual_clock, B, AllBackends) {
  RateLimit const rule = RateLimit::gcra(5, 1s);
  Limiter<B> t(one_endpoint("api", {.user = rule}));
  // {advance ms, cost, allowed, remaining, retry ms, reset ms}
  struct Step {
    std::int64_t advance, cost;
    bool allowed;
    std::int64_t remaining, retry, reset;
  };
  std::vector<Step> const steps{
      {0, 1, true, 4, 0, 200},      {0, 1, true, 3, 0, 400},    {0, 1, true, 2, 0, 600},
      {0, 1, true, 1, 0, 800},      {0, 1, true, 0, 0, 1000},   {0, 1, false, 0, 200, 1000},
      {100, 1, false, 0, 100, 900}, {100, 1, true, 0, 0, 1000}, {500, 1, true, 1, 0, 700},
      {0, 2, false, 1, 100, 700},   {100, 2, true, 0, 0, 1000}, {2000, 5, true, 0, 0, 1000},
      {0, 0, true, 0, 0, 1000},     {1000, 0, true, 5, 0, 0}};
  // 1. The script on every backend with `now` pinned: Lua (RedisBackend, ClusterBackend) and
  //    the twin (MemoryBackend, FakeBackend) give the definition's numbers exactly, at µs
  //    precision (a non-millisecond start).
  {
    GcraModel model(5, 1000, 5);
    std::int64_t now = kBaseUs + 123;
    std::vector<std::string> const keys{t.rl.key("pinned", "api")};
    for (auto const& s : steps) {
      now += s.advance * 1000;
      BOOST_TEST_CONTEXT("pinned, t = " << (now - kBaseUs) << " us, cost " << s.cost) {
        auto const reply = t.pinned(keys, now, s.cost, {rule});
        Expect const want{s.allowed, 5, s.remaining, s.retry, s.reset};
        expect_part(reply, 0, want);
        expect_part(reply, 0, model.check(now, s.cost));
      }
    }
  }
  // 2. The public API on the manual clock (FakeBackend): the same table, exactly.
  if constexpr (BackendFixture<B>::is_fake) {
    for (auto const& s : steps) {
      t.f.advance(std::chrono::milliseconds(s.advance));
      BOOST_TEST_CONTEXT("manual clock, +" << s.advance << " ms, cost " << s.cost) {
        expect(t.check("api", RateSubject::user("u1"), s.cost),
               {s.allowed, 5, s.remaining, s.retry, s.reset});
      }
    }
    // The state lived as long as it mattered: reset_after was 0, the key expired.
    BOOST_TEST(t.f.ok(cmd::exists{.keys = t.rl.key("u1", "api")}) == 0);
  }
  // 3. A longer random sequence on the manual clock against the model.
  if constexpr (BackendFixture<B>::is_fake) {
    std::mt19937 rng(7);
    GcraModel model(7, 3000, 4);
    Limiter<B> u(one_endpoint("x", {.user = RateLimit::gcra(7, 3s, 4)}));
    for (int i = 0; i < 300; ++i) {
      std::int64_t const adv = rng() % 4 == 0 ? rng() % 1500 : rng() % 50;
      std::int64_t const cost = rng() % 5;
      u.f.advance(std::chrono::milliseconds(adv));
      std::int64_t const now = u.f.backend.clock().unix_ms() * 1000;
      BOOST_TEST_CONTEXT("step " << i) {
        expect(u.check("x", RateSubject::user("r"), cost), model.check(now, cost));
      }
    }
  }
}

// The public API on each backend's own clock (the server's TIME): long periods, so the
// numbers are the definition's within the time the test takes.
BOOST_AUTO_TEST_CASE_TEMPLATE(gcra_runs_on_the_servers_clock, B, AllBackends) {
  Limiter<B> t(one_endpoint("api", {.user = RateLimit::gcra(3, 60s)}));
  std::int64_t const slack = BackendFixture<B>::is_fake ? 0 : 5000;
  expect(t.check("api", RateSubject::user("u1")), {true, 3, 2, 0, 20000}, slack);
  expect(t.check("api", RateSubject::user("u1")), {true, 3, 1, 0, 40000}, slack);
  expect(t.check("api", RateSubject::user("u1")), {true, 3, 0, 0, 60000}, slack);
  expect(t.check("api", RateSubject::user("u1")), {false, 3, 0, 20000, 60000}, slack);
  auto const ttl = t.f.ok(cmd::pttl{t.rl.key("u1", "api")});
  BOOST_TEST(ttl > 60000 - 5000);
  BOOST_TEST(ttl <= 60000);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(sliding_window_weights_the_previous_window, B, AllBackends) {
  RateLimit const rule = RateLimit::sliding_window(10, 1s);
  Limiter<B> t(one_endpoint("api", {.user = rule}));
  WindowModel model{true, 10, 1000, {}};
  std::vector<std::string> const keys{t.rl.key("s", "api")};
  std::int64_t now = kBaseUs;  // a window boundary
  auto step = [&](std::int64_t advance_ms, std::int64_t cost) {
    now += advance_ms * 1000;
    auto const reply = t.pinned(keys, now, cost, {rule});
    Expect const want = model.check(now / 1000, cost);
    BOOST_TEST_CONTEXT("t = " << (now - kBaseUs) / 1000 << " ms, cost " << cost) {
      expect_part(reply, 0, want);
    }
    return part(reply, 0);
  };
  // 8 in the first window, then the window turns: the 8 weigh 8 · (1 - e/1000).
  BOOST_TEST(step(100, 8).allowed);
  BOOST_TEST(step(0, 2).allowed);
  auto const full = step(0, 1);
  BOOST_TEST(!full.allowed);
  BOOST_TEST(full.retry == 900 + 100);        // the next window, 10 · 0.9 < 10 - 1 from 100 ms in
  BOOST_TEST(step(900, 1).allowed == false);  // t = 1000: prev 10 weighs 10
  auto const later = step(100, 1);            // t = 1100: 10 · 0.9 = 9, + 1 = 10
  BOOST_TEST(later.allowed);
  BOOST_TEST(later.remaining == 0);
  BOOST_TEST(!step(0, 1).allowed);
  for (int i = 0; i < 40; ++i)
    step(37 * (i % 5), 1 + i % 3);
  step(5000, 3);  // long idle: all forgotten
}

BOOST_AUTO_TEST_CASE_TEMPLATE(fixed_window_resets_at_the_window_boundary, B, AllBackends) {
  RateLimit const rule = RateLimit::fixed_window(3, 1s);
  Limiter<B> t(one_endpoint("api", {.user = rule}));
  WindowModel model{false, 3, 1000, {}};
  std::vector<std::string> const keys{t.rl.key("f", "api")};
  std::int64_t now = kBaseUs + 100'000;  // 100 ms into a window
  auto step = [&](std::int64_t advance_ms, std::int64_t cost, Expect const& want) {
    now += advance_ms * 1000;
    auto const reply = t.pinned(keys, now, cost, {rule});
    BOOST_TEST_CONTEXT("t = " << (now - kBaseUs) / 1000 << " ms, cost " << cost) {
      expect_part(reply, 0, want);
      expect_part(reply, 0, model.check(now / 1000, cost));
    }
  };
  step(0, 1, {true, 3, 2, 0, 900});
  step(0, 2, {true, 3, 0, 0, 900});
  step(0, 1, {false, 3, 0, 900, 900});
  step(899, 1, {false, 3, 0, 1, 1});  // t = 999: the last millisecond of the window
  step(1, 1, {true, 3, 2, 0, 1000});  // t = 1000: a new window
  step(999, 3, {false, 3, 2, 1, 1});  // t = 1999: 1 + 3 > 3
  step(1, 3, {true, 3, 0, 0, 1000});  // t = 2000
  // The public API on the manual clock: FakeBackend's clock starts on a second boundary.
  if constexpr (BackendFixture<B>::is_fake) {
    t.f.advance(250ms);
    expect(t.check("api", RateSubject::user("u"), 3), {true, 3, 0, 0, 750});
    expect(t.check("api", RateSubject::user("u")), {false, 3, 0, 750, 750});
    t.f.advance(749ms);
    expect(t.check("api", RateSubject::user("u")), {false, 3, 0, 1, 1});
    t.f.advance(1ms);
    expect(t.check("api", RateSubject::user("u")), {true, 3, 2, 0, 1000});
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(weights_consume_their_cost_and_zero_only_asks, B, AllBackends) {
  RateLimiterOptions o;
  o.endpoints["upload"] = {.user = RateLimit::gcra(10, 1h)};
  o.endpoints["export"] = {.user = RateLimit::sliding_window(10, 1h)};
  o.endpoints["report"] = {.user = RateLimit::fixed_window(10, 24h)};
  Limiter<B> t(std::move(o));
  for (std::string ep : {"upload", "export", "report"}) {
    BOOST_TEST_CONTEXT(ep) {
      auto const who = RateSubject::user("w");
      BOOST_TEST(t.check(ep, who, 0).remaining == 10);  // asking writes nothing
      BOOST_TEST(t.f.ok(cmd::exists{.keys = t.rl.key("w", ep)}) == 0);
      BOOST_TEST(t.check(ep, who, 3).remaining == 7);
      BOOST_TEST(t.check(ep, who, 7).remaining == 0);
      auto const denied = t.check(ep, who, 1);
      BOOST_TEST(!denied.allowed);
      BOOST_TEST((denied.retry_after > 0ms));
      BOOST_TEST(t.check(ep, who, 0).allowed);      // asking is never denied (nothing to add)
      BOOST_TEST(t.error(ep, who, 11) == invalid);  // more than could ever pass
      BOOST_TEST(t.error(ep, who, -1) == invalid);
    }
  }
  // Burst: GCRA 10 per hour with a burst of 2 takes at most 2 at once.
  Limiter<B> b(one_endpoint("x", {.user = RateLimit::gcra(10, 1h, 2)}));
  BOOST_TEST(b.check("x", RateSubject::user("w"), 2).allowed);
  BOOST_TEST(b.check("x", RateSubject::user("w"), 2).limit == 2);
  BOOST_TEST(b.error("x", RateSubject::user("w"), 3) == invalid);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(limits_are_per_endpoint_and_per_subject_in_seed_layout, B,
                              AllBackends) {
  RateLimiterOptions o;
  o.endpoints["login"] = {.user = RateLimit::gcra(2, 1h), .ip = RateLimit::gcra(3, 1h)};
  o.endpoints["search"] = {.user = RateLimit::fixed_window(5, 24h)};
  o.default_limits = {.user = RateLimit::sliding_window(4, 1h)};
  Limiter<B> t(std::move(o));
  auto const u1 = RateSubject::user("u1");
  BOOST_TEST(t.check("login", u1).allowed);
  BOOST_TEST(t.check("login", u1).allowed);
  BOOST_TEST(!t.check("login", u1).allowed);
  BOOST_TEST(t.check("login", RateSubject::user("u2")).allowed);  // another user
  auto const s = t.check("search", u1);                           // another endpoint
  BOOST_TEST(s.allowed);
  BOOST_TEST(s.limit == 5);
  BOOST_TEST(t.check("anything", u1).limit == 4);                         // the default limits
  BOOST_TEST(t.check("login", RateSubject::ip("10.0.0.1")).limit == 3);   // the IP limit
  BOOST_TEST(t.error("search", RateSubject::ip("10.0.0.1")) == invalid);  // none for IPs
  // Seed 002's names on one node; the endpoint as hash tag on a cluster.
  if constexpr (BackendFixture<B>::is_cluster) {
    BOOST_TEST((t.rl.key_layout() == KeyLayout::clustered));
    BOOST_TEST(t.rl.key("u1", "login") == "ratelimit:{login}:u1");
  } else {
    BOOST_TEST((t.rl.key_layout() == KeyLayout::plain));
    BOOST_TEST(t.rl.key("u1", "login") == "ratelimit:u1:login");
    BOOST_TEST(t.rl.key("10.0.0.1", "login") == "ratelimit:10.0.0.1:login");
  }
  for (auto const* k : {"u1:login", "u2:login", "u1:search", "u1:anything", "10.0.0.1:login"}) {
    std::string const subject(k, std::string_view(k).find(':'));
    std::string const ep(std::string_view(k).substr(subject.size() + 1));
    BOOST_TEST(t.f.ok(cmd::exists{.keys = t.rl.key(subject, ep)}) == 1, k);
  }
  BOOST_TEST(t.f.ok(cmd::dbsize{}) == 5);
  // async_reset forgets a subject.
  auto [ec, n] = t.f.wait(t.rl.async_reset("login", u1));
  BOOST_TEST(!ec);
  BOOST_TEST(n == 1);
  BOOST_TEST(t.check("login", u1).remaining == 1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_denied_composite_check_consumes_from_neither, B, AllBackends) {
  Limiter<B> t(one_endpoint(
      "post", {.user = RateLimit::fixed_window(3, 24h), .ip = RateLimit::gcra(4, 1h)}));
  auto const both = [](char const* u) { return RateSubject::user_and_ip(u, "192.0.2.7"); };
  auto const peek_user = [&](char const* u) { return t.check("post", RateSubject::user(u), 0); };
  auto const peek_ip = [&] { return t.check("post", RateSubject::ip("192.0.2.7"), 0); };
  auto r = t.check("post", both("u1"));
  BOOST_TEST(r.allowed);
  BOOST_TEST(r.limit == 3);  // the part with the least remaining: the user's 2 of 3
  BOOST_TEST(r.remaining == 2);
  BOOST_TEST(t.check("post", both("u1")).allowed);
  BOOST_TEST(t.check("post", both("u1")).allowed);
  // The user is out (3 of 3); the IP has 1 of 4 left: denied, nothing taken from the IP.
  r = t.check("post", both("u1"));
  BOOST_TEST(!r.allowed);
  BOOST_TEST(r.denied_by_user);
  BOOST_TEST(!r.denied_by_ip);
  BOOST_TEST(r.remaining == 0);
  BOOST_TEST(peek_ip().remaining == 1);
  // Another user from the same IP takes the last of the IP.
  BOOST_TEST(t.check("post", both("u2")).allowed);
  BOOST_TEST(peek_ip().remaining == 0);
  // Now the IP is out and u3 has all of his: denied, nothing taken from u3.
  r = t.check("post", both("u3"));
  BOOST_TEST(!r.allowed);
  BOOST_TEST(r.denied_by_ip);
  BOOST_TEST(!r.denied_by_user);
  BOOST_TEST(r.limit == 4);
  BOOST_TEST((r.retry_after > 0ms));
  BOOST_TEST(peek_user("u3").remaining == 3);
  BOOST_TEST(t.f.ok(cmd::exists{.keys = t.rl.key("u3", "post")}) == 0);
  // Both out: both named, the longest wait.
  r = t.check("post", both("u1"));
  BOOST_TEST(r.denied_by_ip);
  BOOST_TEST(r.denied_by_user);
  BOOST_TEST(peek_user("u2").remaining == 2);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_block_denies_every_check_until_it_ends, B, AllBackends) {
  RateLimit const rule = RateLimit::fixed_window(2, 1s, 5s);
  Limiter<B> t(one_endpoint("login", {.user = rule, .ip = RateLimit::gcra(100, 1s)}));
  // Pinned: exact on every backend.
  std::vector<std::string> const keys{t.rl.key("b", "login")};
  std::int64_t now = kBaseUs;
  auto at = [&](std::int64_t advance_ms) {
    now += advance_ms * 1000;
    return part(t.pinned(keys, now, 1, {rule}), 0);
  };
  BOOST_TEST(at(0).allowed);
  BOOST_TEST(at(0).allowed);
  auto d = at(0);  // over the limit: blocked for 5 s
  BOOST_TEST(!d.allowed);
  BOOST_TEST(d.retry == 5000);
  BOOST_TEST(d.reset == 5000);
  BOOST_TEST(d.remaining == 0);
  BOOST_TEST(t.f.ok(cmd::pttl{keys[0]}) > 4000);
  d = at(2000);  // a new window, still blocked (and not extended)
  BOOST_TEST(!d.allowed);
  BOOST_TEST(d.retry == 3000);
  d = at(2999);
  BOOST_TEST(d.retry == 1);
  BOOST_TEST(at(1).allowed);  // t = 5000: over
  // The public API: `blocked`, and a composite check blocks only the part that denied.
  if constexpr (BackendFixture<B>::is_fake) {
    auto const s = RateSubject::user_and_ip("u", "198.51.100.1");
    BOOST_TEST(t.check("login", s).allowed);
    BOOST_TEST(t.check("login", s).allowed);
    auto r = t.check("login", s);
    BOOST_TEST(r.blocked);
    BOOST_TEST(r.denied_by_user);
    BOOST_TEST(!r.denied_by_ip);
    BOOST_TEST((r.retry_after == 5000ms));
    t.f.advance(4999ms);
    r = t.check("login", s);
    BOOST_TEST(r.blocked);
    BOOST_TEST((r.retry_after == 1ms));
    BOOST_TEST(t.check("login", RateSubject::ip("198.51.100.1")).allowed);  // not blocked
    t.f.advance(1ms);
    BOOST_TEST(t.check("login", s).allowed);
    BOOST_TEST(t.rl.stats().blocked == 2u);
  }
}

// Many checks in flight at once never allow more than the limit: on Redis each is one atomic
// script; composite checks also never take from a user what the IP refused.
BOOST_AUTO_TEST_CASE_TEMPLATE(concurrent_checks_never_allow_more_than_the_limit, B, AllBackends) {
  RateLimiterOptions o;
  o.endpoints["g"] = {.user = RateLimit::gcra(50, 1h), .ip = RateLimit::gcra(50, 1h)};
  o.endpoints["s"] = {.user = RateLimit::sliding_window(50, 1h)};
  o.endpoints["f"] = {.user = RateLimit::fixed_window(50, 24h)};
  o.endpoints["c"] = {.user = RateLimit::gcra(100, 1h), .ip = RateLimit::sliding_window(50, 1h)};
  Limiter<B> t(std::move(o));
  struct Count {
    int* allowed;
    int* done;
    void operator()(error_code ec, RateLimitResult r) const {
      BOOST_TEST(!ec);
      *allowed += r.allowed ? 1 : 0;
      ++*done;
    }
  };
  for (std::string ep : {"g", "s", "f", "c"}) {
    BOOST_TEST_CONTEXT(ep) {
      int allowed = 0, done = 0;
      std::vector<std::string> users;
      for (int i = 0; i < 10; ++i)
        users.push_back("u" + std::to_string(i));
      for (int i = 0; i < 200; ++i) {
        auto const who = ep == "c" ? RateSubject::user_and_ip(users[i % 10], "203.0.113.9")
                                   : RateSubject::user("same");
        t.rl.async_check(ep, who, 1, Count{&allowed, &done});
      }
      t.f.run_until([&] { return done == 200; });
      BOOST_TEST(allowed == 50);
      if (ep == "c") {  // what the users were charged is what the IP allowed
        std::int64_t charged = 0;
        for (auto const& u : users)
          charged += 100 - t.check("c", RateSubject::user(u), 0).remaining;
        BOOST_TEST(charged == 50);
      }
    }
  }
}

/// A check's outcome, kept by a plain handler (checks started side by side).
struct Outcome {
  bool done = false;
  error_code ec;
  RateLimitResult r;
};
struct Keep {
  Outcome* out;
  void operator()(error_code ec, RateLimitResult r) const { *out = {true, ec, r}; }
};

// Checks started while others are on their way wait and go together in one script call; each
// is still decided alone: a key of another type fails its own check only, and the checks
// around it count as usual.
BOOST_AUTO_TEST_CASE_TEMPLATE(checks_that_go_together_are_each_decided_alone, B, AllBackends) {
  RateLimiterOptions o = one_endpoint("api", {.user = RateLimit::fixed_window(1, 1h)});
  Limiter<B> t(std::move(o));
  std::string const bad_key = t.rl.key("bad", "api");
  t.f.ok(cmd::set{.key = bad_key, .value = "not a hash"});
  std::vector<Outcome> out(6);
  Diagnostics diag;
  // Two fill the batches in flight; the next four wait and go as one batch.
  t.rl.async_check("api", RateSubject::user("f1"), 1, Keep{&out[0]});
  t.rl.async_check("api", RateSubject::user("f2"), 1, Keep{&out[1]});
  t.rl.async_check("api", RateSubject::user("a"), 1, Keep{&out[2]});
  t.rl.async_check("api", RateSubject::user("bad"), 1, diag, Keep{&out[3]});
  t.rl.async_check("api", RateSubject::user("a"), 1, Keep{&out[4]});  // a's second: over 1
  t.rl.async_check("api", RateSubject::user("b"), 1, Keep{&out[5]});
  for (auto const& x : out)
    BOOST_TEST(!x.done);  // never inside the initiating call
  t.f.run_until(
      [&] { return std::all_of(out.begin(), out.end(), [](auto& x) { return x.done; }); });
  BOOST_TEST(!out[0].ec);
  BOOST_TEST(out[0].r.allowed);
  BOOST_TEST(out[2].r.allowed);
  BOOST_TEST(out[3].ec == make_error_code(Error::wrong_type));
  BOOST_TEST(!out[3].r.allowed);
  BOOST_TEST(diag.server_message.find(bad_key) != std::string::npos, diag.server_message);
  BOOST_TEST(!out[4].ec);
  BOOST_TEST(!out[4].r.allowed);  // decided after a's first, in order
  BOOST_TEST(out[5].r.allowed);
  BOOST_TEST(t.f.ok(cmd::get{.key = bad_key}).value_or("") == "not a hash");
  BOOST_TEST(t.check("api", RateSubject::user("b"), 0).remaining == 0);  // b was charged
  if constexpr (std::is_same_v<B, RedisBackend>) {
    // 64 side by side: a handful of script calls, not 64 (on a server of its own, whose
    // INFO commandstats no other test moves).
    rediskit::test::TestRedisServer srv;
    RedisConfig cfg;
    cfg.port = srv.port();
    BackendFixture<RedisBackend> own(std::in_place, std::move(cfg));
    RateLimiter<RedisBackend> rl(own.backend,
                                 one_endpoint("api", {.user = RateLimit::gcra(9, 1h)}));
    std::vector<Outcome> many(64);
    for (std::size_t i = 0; i < many.size(); ++i)
      rl.async_check("api", RateSubject::user("m" + std::to_string(i)), 1, Keep{&many[i]});
    own.run_until(
        [&] { return std::all_of(many.begin(), many.end(), [](auto& x) { return x.done; }); });
    for (auto const& x : many)
      BOOST_TEST(x.r.allowed);
    std::string const stats = own.ok(cmd::info{"commandstats"});
    auto const at = stats.find("cmdstat_evalsha:calls=");
    BOOST_TEST_REQUIRE(at != std::string::npos);
    int const calls = std::atoi(stats.c_str() + at + 22);
    BOOST_TEST(calls >= 3);
    BOOST_TEST(calls <= 6, stats);
  }
}

// A check cancelled while it waits completes with operation_aborted and is never sent; one
// cancelled on its way completes at once too (the backend may still count it).
BOOST_AUTO_TEST_CASE_TEMPLATE(a_cancelled_check_completes_at_once, B, AllBackends) {
  RateLimiterOptions o = one_endpoint("api", {.user = RateLimit::gcra(10, 1h)});
  Limiter<B> t(std::move(o));
  std::vector<Outcome> out(3);
  asio::cancellation_signal sent, waiting;
  t.rl.async_check("api", RateSubject::user("s"), 1,
                   asio::bind_cancellation_slot(sent.slot(), Keep{&out[0]}));
  t.rl.async_check("api", RateSubject::user("f"), 1, Keep{&out[1]});
  t.rl.async_check("api", RateSubject::user("w"), 1,
                   asio::bind_cancellation_slot(waiting.slot(), Keep{&out[2]}));
  sent.emit(asio::cancellation_type::terminal);
  waiting.emit(asio::cancellation_type::terminal);
  t.f.run_until([&] { return out[0].done && out[2].done; });
  BOOST_TEST(out[0].ec == make_error_code(asio::error::operation_aborted));
  BOOST_TEST(out[2].ec == make_error_code(asio::error::operation_aborted));
  t.f.run_until([&] { return out[1].done; });
  BOOST_TEST(out[1].r.allowed);
  BOOST_TEST(t.f.ok(cmd::exists{.keys = t.rl.key("w", "api")}) == 0);  // never sent
  BOOST_TEST(t.check("api", RateSubject::user("w")).remaining == 9);
  BOOST_TEST(t.rl.stats().errors == 0u);
}

BOOST_AUTO_TEST_CASE(insurance_takes_over_when_the_backend_drops_and_hands_back) {
  using B = FakeBackend;
  {
    RateLimiterOptions o = one_endpoint("api", {.user = RateLimit::gcra(3, 1h)});
    o.insurance.breaker.open_for = 5s;
    Limiter<B> t(std::move(o));
    auto const u = RateSubject::user("u1");
    auto r = t.check("api", u);
    BOOST_TEST(!r.insurance);
    BOOST_TEST(r.remaining == 2);
    BOOST_TEST((t.rl.mode() == RateLimiterMode::backend));

    // The link drops: the failed check and the next ones are answered in process, with the
    // same rule (the in-process limiter starts empty: 3 more, then denied).
    t.f.backend.drop_connection();
    r = t.check("api", u);
    BOOST_TEST(r.insurance);
    BOOST_TEST(r.allowed);
    BOOST_TEST(r.remaining == 2);
    BOOST_TEST((t.rl.mode() == RateLimiterMode::insurance));
    t.f.backend.clear_log();
    BOOST_TEST(t.check("api", u).remaining == 1);
    BOOST_TEST(t.check("api", u).remaining == 0);
    r = t.check("api", u);
    BOOST_TEST(r.insurance);
    BOOST_TEST(!r.allowed);
    BOOST_TEST((r.retry_after == 1200s));           // T = 1200 s: the same GCRA
    BOOST_TEST(t.f.backend.command_log().empty());  // the backend is left alone meanwhile
    auto s = t.rl.stats();
    BOOST_TEST((s.mode == RateLimiterMode::insurance));
    BOOST_TEST(s.to_insurance == 1u);
    BOOST_TEST(s.to_backend == 0u);
    BOOST_TEST(s.insurance_checks == 4u);
    BOOST_TEST(s.insurance_keys == 1u);

    // After open_for one check probes the backend; still down: answered in process.
    t.f.advance(5s);
    r = t.check("api", u);
    BOOST_TEST(r.insurance);
    BOOST_TEST(t.f.backend.count_in_log("EVALSHA") == 1u);
    BOOST_TEST((t.rl.mode() == RateLimiterMode::insurance));

    // Back: the next probe answers from the backend, which keeps its own state (1 used).
    t.f.backend.restore_connection();
    t.f.advance(5s);
    r = t.check("api", u);
    BOOST_TEST(!r.insurance);
    BOOST_TEST(r.allowed);
    BOOST_TEST(r.remaining == 1);
    s = t.rl.stats();
    BOOST_TEST((s.mode == RateLimiterMode::backend));
    BOOST_TEST(s.to_backend == 1u);
    BOOST_TEST(s.insurance_keys == 0u);  // dropped: the backend is the truth again

    // One outage (a command that may have run) is answered in process too; a non-outage error
    // reaches the caller and leaves the mode alone.
    t.f.backend.fail_next(1, Error::connection_lost);
    BOOST_TEST(t.check("api", u).insurance);
    BOOST_TEST(t.rl.stats().to_insurance == 2u);
    t.f.advance(5s);
    BOOST_TEST(!t.check("api", u).insurance);
    t.f.backend.fail_next(1, Error::wrong_type);
    BOOST_TEST(t.error("api", u) == make_error_code(Error::wrong_type));
    BOOST_TEST((t.rl.mode() == RateLimiterMode::backend));
    BOOST_TEST(t.rl.stats().errors == 1u);

    // Insurance off: outages reach the caller.
    RateLimiterOptions off = one_endpoint("api", {.user = RateLimit::gcra(3, 1h)});
    off.insurance.enabled = false;
    Limiter<B> n(std::move(off));
    n.f.backend.drop_connection();
    BOOST_TEST(n.error("api", u) == make_error_code(Error::not_connected));
    BOOST_TEST((n.rl.mode() == RateLimiterMode::backend));
  }
}

// The same on a real server that is killed and restarted (RedisBackend with the offline queue
// off, so that requests fail at once while the link is down instead of waiting for it).
// A probe that never comes back (a backend that accepts and never answers) holds only itself:
// the other checks are answered in process meanwhile, and cancelling the probe frees the probe's
// slot at once, so the next check probes again.
BOOST_AUTO_TEST_CASE(a_probe_that_never_completes_holds_up_no_other_check) {
  using B = FakeBackend;
  RateLimiterOptions o = one_endpoint("api", {.user = RateLimit::gcra(100, 1h)});
  o.insurance.breaker.open_for = 5s;
  Limiter<B> t(std::move(o));
  auto const u = RateSubject::user("u1");
  t.f.backend.fail_next(1, Error::connection_lost);
  BOOST_TEST(t.check("api", u).insurance);
  BOOST_TEST((t.rl.mode() == RateLimiterMode::insurance));

  t.f.backend.set_latency(1h);  // sent, never answered (within the test)
  t.f.advance(5s);
  Outcome probe;
  asio::cancellation_signal cancel;
  t.f.backend.clear_log();
  t.rl.async_check("api", u, 1, asio::bind_cancellation_slot(cancel.slot(), Keep{&probe}));
  t.f.run_until([&] { return t.f.backend.count_in_log("EVALSHA") == 1u; });
  for (int i = 0; i < 5; ++i) {  // answered in process while the probe hangs
    auto const r = t.check("api", u);
    BOOST_TEST(r.insurance);
    BOOST_TEST(r.allowed);
  }
  BOOST_TEST(t.f.backend.count_in_log("EVALSHA") == 1u);
  BOOST_TEST(!probe.done);

  cancel.emit(asio::cancellation_type::terminal);
  t.f.run_until([&] { return probe.done; });
  BOOST_TEST(probe.ec == make_error_code(asio::error::operation_aborted));
  t.f.backend.set_latency(0ms);
  auto const r = t.check("api", u);  // the next check is a probe again, and it is answered
  BOOST_TEST(!r.insurance);
  BOOST_TEST(r.allowed);
  BOOST_TEST((t.rl.mode() == RateLimiterMode::backend));
  BOOST_TEST(t.f.backend.count_in_log("EVALSHA") == 2u);
}

BOOST_AUTO_TEST_CASE(insurance_covers_a_redis_server_that_dies_and_comes_back) {
  rediskit::test::TestRedisServer srv;
  RedisConfig cfg;
  cfg.port = srv.port();
  cfg.offline_queue = false;
  cfg.connect_timeout = 500ms;
  cfg.command_timeout = 1s;
  cfg.health_check_interval = 200ms;
  BackendFixture<RedisBackend> f(std::in_place, cfg);
  RateLimiterOptions o = one_endpoint("api", {.user = RateLimit::gcra(3, 1h)});
  o.insurance.breaker.open_for = 200ms;
  RateLimiter<RedisBackend> lim(f.backend, std::move(o));
  auto const u = RateSubject::user("u1");
  auto check = [&] {
    auto [ec, r] = f.wait(lim.async_check("api", u));
    BOOST_TEST_REQUIRE(!ec, ec.message());
    return r;
  };
  auto [connect_ec] = f.wait(f.backend.async_connect());
  BOOST_TEST_REQUIRE(!connect_ec, connect_ec.message());
  auto r = check();
  BOOST_TEST(!r.insurance);
  BOOST_TEST(r.remaining == 2);
  srv.kill();
  auto const killed = std::chrono::steady_clock::now();
  r = check();
  BOOST_TEST(r.insurance);
  BOOST_TEST(r.allowed);
  BOOST_TEST(check().insurance);
  BOOST_TEST((lim.mode() == RateLimiterMode::insurance));
  BOOST_TEST_MESSAGE("insurance answered " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  std::chrono::steady_clock::now() - killed)
                                                  .count()
                                           << " ms after the kill");
  srv.start();  // empty (no persistence)
  auto const deadline = std::chrono::steady_clock::now() + 15s;
  // The io_context runs between checks, as in a server: the reconnection progresses on it
  // (f.wait alone runs only until its check completes, which insurance does at once).
  while (check().insurance && std::chrono::steady_clock::now() < deadline) {
    f.ioc.restart();
    f.ioc.run_for(100ms);
  }
  auto const s = lim.stats();
  BOOST_TEST((s.mode == RateLimiterMode::backend));
  BOOST_TEST(s.to_insurance == 1u);
  BOOST_TEST(s.to_backend == 1u);
  BOOST_TEST(!check().insurance);
}

// The in-process limiter forgets what expired and holds at most max_keys subjects.
BOOST_AUTO_TEST_CASE(the_insurance_memory_is_bounded) {
  rl::LocalStates states(3);
  std::vector<std::string> keys{"a", "b", "c", "d"};
  for (std::size_t i = 0; i < keys.size(); ++i)
    states.update(keys[i], 1000 + static_cast<std::int64_t>(i), [](rl::State& s) { s.cur = 1; });
  BOOST_TEST(states.size() == 3u);
  BOOST_TEST(states.load("a", 0).cur == 0);  // the soonest to expire went
  BOOST_TEST(states.load("d", 0).cur == 1);
  BOOST_TEST(states.load("d", 1002).cur == 1);
  BOOST_TEST(states.size() == 1u);  // b and c expired at 1001 and 1002
  BOOST_TEST(states.load("d", 1003).cur == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stats_count_allowed_limited_and_near_limit, B, AllBackends) {
  Limiter<B> t(one_endpoint("api", {.user = RateLimit::fixed_window(10, 24h)}));
  for (int i = 0; i < 12; ++i)
    t.check("api", RateSubject::user("s"));
  auto const s = t.rl.stats();
  BOOST_TEST(s.allowed == 10u);
  BOOST_TEST(s.limited == 2u);
  BOOST_TEST(s.near_limit == 3u);  // the 8th, 9th and 10th
  BOOST_TEST(s.blocked == 0u);
  BOOST_TEST(s.errors == 0u);
  BOOST_TEST(s.insurance_checks == 0u);
  BOOST_TEST((s.mode == RateLimiterMode::backend));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_is_invalid_argument_and_never_completes_inline, B,
                              AllBackends) {
  RateLimiterOptions o;
  o.endpoints["ok"] = {.user = RateLimit::gcra(5, 1s), .ip = RateLimit::fixed_window(5, 1s)};
  o.endpoints["zero"] = {.user = RateLimit::gcra(0, 1s)};
  o.endpoints["noperiod"] = {.user = RateLimit::sliding_window(5, 0ms)};
  o.endpoints["burst"] = {.user = RateLimit{.algorithm = RateAlgorithm::fixed_window,
                                            .limit = 5,
                                            .period = 1s,
                                            .burst = 2,
                                            .block_for = 0ms}};
  o.endpoints["fast"] = {.user = RateLimit::gcra(2000, 1ms)};
  Limiter<B> t(std::move(o));
  struct Case {
    char const* endpoint;
    RateSubject subject;
    std::int64_t cost;
    char const* reason;
  };
  Case const cases[] = {
      {"", RateSubject::user("u"), 1, "the endpoint is empty"},
      {"ok", RateSubject::user(""), 1, "the user id is empty"},
      {"ok", RateSubject::ip(""), 1, "the IP address is empty"},
      {"ok", RateSubject::user_and_ip("u", ""), 1, "the IP address is empty"},
      {"ok", RateSubject::user("u"), -1, "the cost is negative (-1)"},
      {"ok", RateSubject::user("u"), 6, "exceeds endpoint 'ok''s user capacity 5"},
      {"unknown", RateSubject::user("u"), 1, "endpoint 'unknown' has no user limit"},
      {"zero", RateSubject::user("u"), 1, "limit must be at least 1, got 0"},
      {"noperiod", RateSubject::user("u"), 1, "period must be at least 1 ms"},
      {"burst", RateSubject::user("u"), 1, "burst applies to GCRA only"},
      {"fast", RateSubject::user("u"), 1, "may not exceed one request per microsecond"},
  };
  for (auto const& c : cases) {
    BOOST_TEST_CONTEXT("case: " << c.reason) {
      std::string const why = t.rl.explain(c.endpoint, c.subject, c.cost);
      BOOST_TEST(why.find(c.reason) != std::string::npos, "explain() said: " << why);
      Diagnostics diag;
      auto [ec, r] = t.f.wait(t.rl.async_check(c.endpoint, c.subject, c.cost, diag));
      BOOST_TEST(ec == invalid);
      BOOST_TEST(!r.allowed);
      BOOST_TEST(diag.detail == why);
    }
  }
  BOOST_TEST(t.rl.explain("ok", RateSubject::user_and_ip("u", "1.1.1.1")).empty());
  BOOST_TEST(t.f.ok(cmd::dbsize{}) == 0);  // nothing was sent
  BOOST_TEST(t.rl.stats().errors == std::size(cases));
  // Completions go through the executor, never inside the call: bad input, a check, and (on
  // the Fake backend) an answer of the insurance limiter.
  int done = 0;
  auto const h = [&done](error_code, RateLimitResult) { ++done; };
  t.rl.async_check("", RateSubject::user("u"), 1, h);
  t.rl.async_check("ok", RateSubject::user("u"), 1, h);
  BOOST_TEST(done == 0);
  t.f.run_until([&] { return done == 2; });
  if constexpr (BackendFixture<B>::is_fake) {
    t.f.backend.drop_connection();
    BOOST_TEST(t.check("ok", RateSubject::user("u")).insurance);  // opens the breaker
    t.rl.async_check("ok", RateSubject::user("u"), 1, h);
    BOOST_TEST(done == 2);
    t.f.run_until([&] { return done == 3; });
  }
}

// The clustered layout: both keys of a composite check in the endpoint's slot, on a cluster
// and on the in-process backends with the cluster rules checked; plain on a cluster refuses a
// composite check before sending it.
BOOST_AUTO_TEST_CASE_TEMPLATE(composite_checks_stay_in_one_slot_when_clustered, B, AllBackends) {
  RateLimiterOptions o =
      one_endpoint("post", {.user = RateLimit::gcra(5, 1h), .ip = RateLimit::gcra(5, 1h)});
  o.key_layout = KeyLayout::clustered;
  Limiter<B> t(std::move(o), /*cluster_checks=*/true);
  for (auto const* user : {"u1", "{u2}", "a{b", "x}y"}) {
    BOOST_TEST_CONTEXT(user) {
      BOOST_TEST(cluster::key_slot(t.rl.key(user, "post")) ==
                 cluster::key_slot(t.rl.key("10.0.0.1", "post")));
      BOOST_TEST(t.check("post", RateSubject::user_and_ip(user, "10.0.0.1")).allowed);
    }
  }
  BOOST_TEST(t.rl.key("u1", "post") == "ratelimit:{post}:u1");
  BOOST_TEST(t.rl.key("u1", "a}b").find("a}b:u1") != std::string::npos);  // tagged by slot
  BOOST_TEST(t.rl.key("u1", "a}b") != t.rl.key("u1", "c}d"));
  if constexpr (BackendFixture<B>::is_cluster) {
    RateLimiterOptions p =
        one_endpoint("post", {.user = RateLimit::gcra(5, 1h), .ip = RateLimit::gcra(5, 1h)});
    p.key_layout = KeyLayout::plain;
    RateLimiter<B> plain(t.f.backend, std::move(p));
    std::string const a = plain.key("u1", "post"), b = plain.key("10.0.0.1", "post");
    BOOST_TEST_REQUIRE(cluster::key_slot(a) != cluster::key_slot(b));
    auto [ec, r] =
        t.f.wait(plain.async_check("post", RateSubject::user_and_ip("u1", "10.0.0.1"), 1));
    BOOST_TEST(ec == make_error_code(Error::cross_slot));
    BOOST_TEST(!r.allowed);
    auto [ec1, one] = t.f.wait(plain.async_check("post", RateSubject::user("u1"), 1));
    BOOST_TEST(!ec1);  // one key: fine in any layout
    BOOST_TEST(one.allowed);
  }
  RateLimiterOptions bad;
  bad.key_prefix = "{rl}";
  bad.key_layout = KeyLayout::clustered;
  BOOST_CHECK_THROW((RateLimiter<B>(t.f.backend, bad)), Exception);
}

// Parity: the Lua script (on a server) and the C++ maths (the twin's, the insurance limiter's)
// give the same replies on random sequences of rules, costs, composite checks and time steps.
BOOST_AUTO_TEST_CASE_TEMPLATE(the_script_and_the_cpp_maths_agree_on_random_sequences, B,
                              AllBackends) {
  RateLimiterOptions o;
  o.key_layout = KeyLayout::clustered;  // composite keys in one slot everywhere
  Limiter<B> t(std::move(o));
  std::mt19937_64 rng(2026);
  auto pick = [&](std::int64_t n) { return static_cast<std::int64_t>(rng() % n); };
  for (int round = 0; round < 10; ++round) {
    std::vector<RateLimit> rules;
    for (int i = 0; i < 2; ++i) {
      // Periods of seconds: the keys' TTLs run on the server's real clock while `now` is
      // pinned, so a key must not expire (in real time) while it still matters.
      auto const period = std::chrono::milliseconds(2000 + pick(58000));
      std::int64_t const limit = 1 + pick(20);
      auto const block = std::chrono::milliseconds(pick(3) == 0 ? 500 + pick(4000) : 0);
      switch (pick(3)) {
        case 0:
          rules.push_back(RateLimit::gcra(limit, period, pick(2) ? 1 + pick(30) : 0, block));
          break;
        case 1:
          rules.push_back(RateLimit::sliding_window(limit, period, block));
          break;
        default:
          rules.push_back(RateLimit::fixed_window(limit, period, block));
          break;
      }
      BOOST_TEST_REQUIRE(rules.back().problem().empty());
    }
    std::size_t const parts = 1 + pick(2);
    rules.resize(parts);
    std::vector<std::string> keys;
    for (std::size_t i = 0; i < parts; ++i)
      keys.push_back(t.rl.key("r" + std::to_string(round) + "_" + std::to_string(i), "parity"));
    std::int64_t cap = rules[0].capacity();
    for (auto const& r : rules)
      cap = std::min(cap, r.capacity());
    rl::LocalStates states(100);
    std::vector<rl::Rule> local_rules;
    for (auto const& r : rules) {
      std::vector<std::string> a;
      add_rule(a, r);
      local_rules.push_back(
          {a[0][0], r.limit, r.period.count(), r.capacity(), r.block_for.count()});
    }
    std::int64_t now = kBaseUs + pick(1'000'000);
    for (int i = 0; i < 120; ++i) {
      now += pick(5) == 0 ? pick(120'000'000) : pick(3'000'000);
      std::int64_t const cost = pick(cap + 1);
      auto const got = t.pinned(keys, now, cost, rules);
      rl::LocalStore store{states, keys, now / 1000};
      auto const want = rl::run_check(store, local_rules, now, cost);
      BOOST_TEST(got == want, "round " << round << " step " << i);
      if (got != want) return;
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
