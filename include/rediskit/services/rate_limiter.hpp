// rediskit::RateLimiter<Backend>: per-endpoint rate limits on users and IP addresses (seed
// 002's "Rate Limiting": `ratelimit:{userId}:{endpoint}`, `ratelimit:{ip}:{endpoint}`), with
// redis-cell's GCRA, a sliding-window counter or a fixed window, and an in-process insurance
// limiter that takes over while the backend is out.
//
//   using namespace std::chrono_literals;
//   rediskit::RateLimiterOptions o;
//   o.endpoints["login"] = {.user = rediskit::RateLimit::gcra(5, 1min),
//                           .ip = rediskit::RateLimit::sliding_window(50, 1min, /*block*/ 15min)};
//   o.endpoints["search"] = {.user = rediskit::RateLimit::fixed_window(100, 1min)};
//   rediskit::RateLimiter limiter(backend, std::move(o));           // any Backend
//   auto r = co_await limiter.async_check("login", rediskit::RateSubject::user_and_ip(uid, ip));
//   if (!r.allowed) reply_429(r.retry_after);   // r: {allowed, limit, remaining, retry_after,
//                                                //     reset_after} as redis-cell's CL.THROTTLE
//
// Every check is one round trip and atomic: a script reads the subject's state, decides, and
// writes only when it allows (a denied check consumes nothing). A composite check
// (RateSubject::user_and_ip) evaluates both limits in the same script and consumes from both
// only when both allow. Requests have a cost (weight, default 1; 0 asks without consuming).
//
// Coalescing (ioredis's auto-pipelining, one step further): while two script calls of the
// limiter are on their way, new checks wait, and go together, up to 128 in one script call,
// as soon as one comes back. A lone caller sees one round trip, as without it; 64 callers
// share each call's fixed cost on the server (a script call costs several times a check's own
// work), which is what lets one Redis answer several times the checks. Each check of a batch
// is decided alone, in the order the checks were made, at the batch's one instant; a key of
// another type fails its own check (Error::wrong_type, the key in Diagnostics::server_message),
// not the others. A batch holds up the server's other clients for its duration (about 4 µs a
// check). On a cluster (the clustered layout, or a ClusterBackend) batches are per hash slot,
// so per endpoint: a script's keys share one slot.
//
// Algorithms (RateLimit), all on the server's clock (Lua TIME; on MemoryBackend / FakeBackend
// the engine's clock, so a ManualClock drives them exactly):
//  - gcra: redis-cell's generic cell rate algorithm. Emission interval T = period / limit
//    (in microseconds, rounded down), capacity `burst` (default: limit) so tolerance
//    τ = T·burst. State: the theoretical arrival time TAT. A request of cost c at `now`:
//    new = max(TAT, now) + c·T; allowed iff now >= new - τ (then TAT = new). remaining =
//    floor(max(0, τ - (TAT' - now)) / T), reset_after = TAT' - now (TAT' the TAT after the
//    check), retry_after = (new - τ) - now when denied. limit = burst (redis-cell: max_burst+1).
//  - sliding_window: two fixed windows of `period` aligned on the epoch, the previous one
//    weighted by the part of it still inside the sliding window (Cloudflare's counter):
//    allowed iff (cur + c)·P + prev·(P - e) <= limit·P, e = time into the current window
//    (exact integer arithmetic, no rounding). retry_after is the exact wait for that to hold.
//  - fixed_window: windows of `period` aligned on the epoch (floor(now / period)); a count per
//    window; retry_after and reset_after = the end of the window.
// retry_after and reset_after are milliseconds, rounded up: waiting retry_after is enough.
// `block_for` (any algorithm): a denied check blocks the subject (that part of a composite
// check) for that long: every check is then denied (blocked = true) until it ends, and the
// block is not extended by the checks it denies (rate-limiter-flexible's blockDuration).
//
// Key layout: one hash per (subject, endpoint), fields t (GCRA's TAT, µs since 1970), w/n/p
// (window index, current count, previous count), b (blocked until, ms since 1970); its TTL is
// the time until the state no longer matters (the limit is fully reset and any block over).
//   plain layout (one node, Sentinel; seed 002's names, so the keys read as the seed's; the
//   value is this hash, not the Node code's counter: do not limit one endpoint from both):
//     <key_prefix>:<user id>:<endpoint>          <key_prefix>:<ip>:<endpoint>
//   clustered layout (Redis Cluster; default on ClusterBackend):
//     <key_prefix>:{<endpoint>}:<user id>        <key_prefix>:{<endpoint>}:<ip>
// A composite check touches the user's key and the IP's key in one script, so on a cluster
// they must share a slot for every pair of user and IP that may meet: only a tag that both
// share can do that, and the endpoint is the one they share (a tag on the user would give
// each (user, IP) pair its own IP counter, which no longer limits the IP). So all the keys of
// one endpoint live on one master: endpoints spread over the cluster, one endpoint's checks
// do not (split a hot endpoint into several names if one master is not enough). The tag comes
// first, so a '{' in a user id cannot move the key; an endpoint holding '}' is tagged by its
// slot (hash_tag_for) and then written out in full. The plain layout on a ClusterBackend fails
// composite checks with Error::cross_slot before anything is sent (single checks work).
// As in the seed, user ids and IP addresses share one namespace: a user id spelled like an IP
// address counts against that IP's key.
//
// Insurance (rate-limiter-flexible's insuranceLimiter, on by default): when a check fails
// with an outage (rediskit::is_outage: connection lost or refused, timeouts, LOADING,
// CLUSTERDOWN, ...), it is answered by an in-process limiter that runs the same rules with the
// same code (the script's C++ twin), and the result says so (insurance = true). A
// CircuitBreaker decides the mode (RateInsurance::breaker; by default it opens when half of
// the last (up to 4) checks met an outage, so at the first outage after a start or a switch
// back): while it is open every check is answered in process at once, without touching the
// backend. The in-process limiter starts empty (like rate-limiter-flexible's: a subject that
// was out of quota on Redis gets a fresh one during an outage, and a block_for block set on
// Redis is not known in process until the subject is blocked again there). After `open_for` the
// breaker lets one check through as a probe: when the backend answers it, checks go back to the
// backend and the in-process state is dropped (the backend's state is the truth again; it did not
// see the checks made meanwhile). A check in flight when the link broke may have run on the backend
// too (Error::connection_lost): it is then counted twice, which errs on the side of limiting. Other
// errors (WRONGTYPE, a script error, cancellation) are not outages: they reach the caller. The
// in-process limiter keeps at most RateInsurance::max_keys subjects (the ones closest to
// expiry are dropped first) and uses the backend's clock on MemoryBackend / FakeBackend, the
// system clock otherwise. With insurance off, outages reach the caller.
// On RedisBackend, set RedisConfig::offline_queue = false (and a command_timeout): with the
// offline queue on, a check made while the link is down waits for the reconnection (until it
// gives up) instead of failing, and the insurance answers only then.
//
// Stats (stats()): allowed, limited (blocked among them), near_limit (allowed with 80 % or
// more of the limit used), errors, checks answered by insurance, switches each way, the mode.
//
// Every operation completes through the handler's executor, never inside the initiating call.
// Bad input (an empty endpoint or id, a cost < 0 or above the capacity, an endpoint with no
// limit for that kind of subject, a limit that cannot work such as limit 0) completes with
// Error::invalid_argument and sends nothing; the overload taking a Diagnostics& puts the
// reason in Diagnostics::detail, and explain() returns it. Thread safety: operations may be
// started from several threads (the limiter's state has a lock). The limiter (not movable)
// and its backend must outlive the operations; the arguments may die once async_check
// returns. Cancellation (any type): the check completes at once with operation_aborted; one
// still waiting for its batch is never sent, one already sent may still count on the backend.
#pragma once

#include <rediskit/circuit_breaker.hpp>
#include <rediskit/clock.hpp>
#include <rediskit/cmd/hashes.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/command.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/error.hpp>
#include <boost/describe/class.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rediskit {

enum class RateAlgorithm : std::uint8_t { gcra, sliding_window, fixed_window };

inline char const* to_string(RateAlgorithm a) noexcept {
  switch (a) {
    case RateAlgorithm::gcra:
      return "gcra";
    case RateAlgorithm::sliding_window:
      return "sliding_window";
    case RateAlgorithm::fixed_window:
      return "fixed_window";
  }
  return "?";
}
inline std::ostream& operator<<(std::ostream& os, RateAlgorithm a) {
  return os << to_string(a);
}

/// One limit: `limit` requests (of cost 1) per `period`, counted by `algorithm`. Build it
/// with gcra(), sliding_window() or fixed_window(), or as an aggregate.
struct RateLimit {
  RateAlgorithm algorithm = RateAlgorithm::gcra;
  std::int64_t limit = 0;
  std::chrono::milliseconds period{0};
  /// GCRA: the cost that may arrive at once (redis-cell's max_burst + 1); 0: `limit`.
  /// Windows have no burst (their capacity is `limit`): leave it 0.
  std::int64_t burst = 0;
  /// A denied check blocks the subject for this long (0: no block).
  std::chrono::milliseconds block_for{0};

  static RateLimit gcra(std::int64_t limit, std::chrono::milliseconds period,
                        std::int64_t burst = 0,
                        std::chrono::milliseconds block_for = std::chrono::milliseconds(0)) {
    return {RateAlgorithm::gcra, limit, period, burst, block_for};
  }
  static RateLimit sliding_window(
      std::int64_t limit, std::chrono::milliseconds period,
      std::chrono::milliseconds block_for = std::chrono::milliseconds(0)) {
    return {RateAlgorithm::sliding_window, limit, period, 0, block_for};
  }
  static RateLimit fixed_window(
      std::int64_t limit, std::chrono::milliseconds period,
      std::chrono::milliseconds block_for = std::chrono::milliseconds(0)) {
    return {RateAlgorithm::fixed_window, limit, period, 0, block_for};
  }

  /// The largest cost one check may ask: burst (or limit) for GCRA, limit for windows.
  std::int64_t capacity() const noexcept {
    return algorithm == RateAlgorithm::gcra && burst > 0 ? burst : limit;
  }

  /// Empty when the limit can work; else what is wrong with it.
  std::string problem() const {
    constexpr std::int64_t max_exact = std::int64_t(1) << 50;  // Lua numbers are doubles
    auto const p = period.count();
    if (limit < 1) return "limit must be at least 1, got " + std::to_string(limit);
    if (p < 1) return "period must be at least 1 ms, got " + std::to_string(p) + " ms";
    if (block_for.count() < 0 || block_for.count() > (std::int64_t(1) << 40))
      return "block_for must be between 0 and 2^40 ms, got " + std::to_string(block_for.count());
    if (burst < 0) return "burst must not be negative, got " + std::to_string(burst);
    if (algorithm == RateAlgorithm::gcra) {
      if (p > max_exact / 1000) return "period is too long";
      if (limit > p * 1000)
        return "a GCRA limit may not exceed one request per microsecond (limit " +
               std::to_string(limit) + " in " + std::to_string(p) + " ms)";
      std::int64_t const t = p * 1000 / limit, b = capacity();
      if (b > max_exact / t) return "burst times the emission interval is too long";
      return {};
    }
    if (algorithm != RateAlgorithm::sliding_window && algorithm != RateAlgorithm::fixed_window)
      return "unknown algorithm";
    if (burst != 0) return "burst applies to GCRA only (a window's capacity is its limit)";
    if (limit > max_exact / p) return "limit times period (in ms) must stay below 2^50";
    return {};
  }

  friend bool operator==(RateLimit const&, RateLimit const&) = default;
};

/// The limits of one endpoint: for each user (`ratelimit:<user id>:<endpoint>`) and for each
/// IP address (`ratelimit:<ip>:<endpoint>`). A kind without a limit cannot be checked there.
struct EndpointLimits {
  std::optional<RateLimit> user{};
  std::optional<RateLimit> ip{};
};

/// Insurance: the in-process limiter that answers while the backend is out (see the top).
struct RateInsurance {
  bool enabled = true;
  /// Decides the mode: open = insurance. Its failures are the checks that ended with an
  /// outage; `open_for` is the time between probes of the backend. Its `on_event` runs under
  /// the limiter's lock: it must not call the limiter. A probe ends only when its check does:
  /// give the backend a command timeout (RedisConfig::command_timeout), or a probe sent to a
  /// server that stopped answering keeps the limiter on insurance until the link is declared
  /// dead (the connection's health check).
  CircuitBreakerConfig breaker{.failure_rate = 0.5,
                               .window = 4,
                               .minimum_calls = 1,
                               .open_for = std::chrono::seconds(1),
                               .probes = 1,
                               .on_event = {}};
  /// Subjects the in-process limiter remembers at most (those closest to expiry go first).
  std::size_t max_keys = 100'000;
};

/// Options of RateLimiter; the defaults are seed 002's.
struct RateLimiterOptions {
  /// Namespace of the keys (seed: "ratelimit"). Empty: none. No '{' or '}' when clustered.
  std::string key_prefix = "ratelimit";
  /// Limits per endpoint name.
  std::map<std::string, EndpointLimits, std::less<>> endpoints{};
  /// Limits of the endpoints not in `endpoints` (unset: checking them is invalid_argument).
  EndpointLimits default_limits{};
  /// Unset: default_key_layout_v<B> (clustered on ClusterBackend, plain elsewhere).
  std::optional<KeyLayout> key_layout{};
  RateInsurance insurance{};
};

/// Who a check counts against: a user, an IP address, or both at once (a composite check:
/// both limits must allow, and a denied check consumes from neither). Views its strings: make
/// it in the call (it is copied before async_check returns).
class RateSubject {
 public:
  static RateSubject user(std::string_view id) noexcept { return RateSubject(id, {}, true, false); }
  static RateSubject ip(std::string_view address) noexcept {
    return RateSubject({}, address, false, true);
  }
  static RateSubject user_and_ip(std::string_view id, std::string_view address) noexcept {
    return RateSubject(id, address, true, true);
  }
  bool has_user() const noexcept { return has_user_; }
  bool has_ip() const noexcept { return has_ip_; }
  std::string_view user_id() const noexcept { return user_; }
  std::string_view ip_address() const noexcept { return ip_; }

 private:
  RateSubject(std::string_view u, std::string_view i, bool hu, bool hi) noexcept
      : user_(u), ip_(i), has_user_(hu), has_ip_(hi) {}
  std::string_view user_;
  std::string_view ip_;
  bool has_user_;
  bool has_ip_;
};

/// A check's answer: redis-cell's five numbers, and where it came from. For a composite check
/// `limit` and `remaining` are those of the part with the least remaining, retry_after the
/// longest wait of the parts that denied, reset_after the longest of both.
struct RateLimitResult {
  bool allowed = false;
  std::int64_t limit = 0;
  /// Cost that could still be asked now (after this check, when it was allowed).
  std::int64_t remaining = 0;
  /// Denied: how long until the same check would be allowed (0 when allowed).
  std::chrono::milliseconds retry_after{0};
  /// How long until the limit is fully reset (and any block over).
  std::chrono::milliseconds reset_after{0};
  /// Denied by a block_for penalty (running, or started by this check).
  bool blocked = false;
  bool denied_by_user = false;
  bool denied_by_ip = false;
  /// Answered by the in-process insurance limiter (the backend was out).
  bool insurance = false;
};

enum class RateLimiterMode : std::uint8_t { backend, insurance };

inline char const* to_string(RateLimiterMode m) noexcept {
  return m == RateLimiterMode::backend ? "backend" : "insurance";
}
inline std::ostream& operator<<(std::ostream& os, RateLimiterMode m) {
  return os << to_string(m);
}

/// What a RateLimiter did since it was made.
struct RateLimiterStats {
  std::uint64_t allowed = 0;
  std::uint64_t limited = 0;           ///< denied checks, blocked ones included
  std::uint64_t blocked = 0;           ///< denied by a block_for penalty
  std::uint64_t near_limit = 0;        ///< allowed with >= 80 % of the limit used
  std::uint64_t errors = 0;            ///< completed with an error (bad input included)
  std::uint64_t insurance_checks = 0;  ///< answered by the in-process limiter
  std::uint64_t to_insurance = 0;      ///< switches from the backend to insurance
  std::uint64_t to_backend = 0;        ///< switches back
  RateLimiterMode mode = RateLimiterMode::backend;
  std::size_t insurance_keys = 0;  ///< subjects the in-process limiter holds now
};
// Described: RedisManager::expose() puts its numbers in the Prometheus text.
BOOST_DESCRIBE_STRUCT(RateLimiterStats, (),
                      (allowed, limited, blocked, near_limit, errors, insurance_checks,
                       to_insurance, to_backend, mode, insurance_keys))

namespace detail::ratelimit {

using boost::system::error_code;

/// A limit as the script takes it: algorithm 'g', 's' or 'f', times in ms.
struct Rule {
  char algo = 'g';
  std::int64_t limit = 0, period_ms = 0, burst = 0, block_ms = 0;
};

/// One subject's state: the hash's fields (absent: the defaults).
struct State {
  std::int64_t tat = 0;            // t: GCRA's theoretical arrival time, µs
  std::int64_t win = -1;           // w: index of the current window
  std::int64_t cur = 0;            // n: count of that window
  std::int64_t prev = 0;           // p: count of the window before it (sliding)
  std::int64_t blocked_until = 0;  // b: ms
};

/// One part of a check, before the decision: the numbers without and with consuming.
struct Part {
  bool ok = false;
  bool blocked = false;
  std::int64_t limit = 0;
  std::int64_t rem = 0, retry = 0, reset = 0, ttl = 0;  // without consuming
  std::int64_t arem = 0, areset = 0, attl = 0;          // after consuming
  State next;
};

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) noexcept {
  return (a + b - 1) / b;
}

// The maths, shared by the script's twin and the insurance limiter; the Lua below is the same
// computation step by step. Every quantity is an integer below 2^53 (RateLimit::problem()
// bounds them), so Lua's doubles hold them exactly, and floor(a / b) of two of them is the
// exact quotient (a correctly rounded a / b cannot reach the next integer).
inline Part evaluate(Rule const& r, State const& s, std::int64_t now_us, std::int64_t cost) {
  using std::max;
  Part p;
  std::int64_t const now_ms = now_us / 1000;
  if (r.algo == 'g') {
    std::int64_t const ei = r.period_ms * 1000 / r.limit, dvt = ei * r.burst;
    std::int64_t const tat = max(s.tat, now_us), next = tat + ei * cost, allow_at = next - dvt;
    p.ok = now_us >= allow_at;
    p.limit = r.burst;
    std::int64_t const cur = tat - now_us, aft = next - now_us;
    p.rem = max<std::int64_t>(0, dvt - cur) / ei;
    p.reset = ceil_div(cur, 1000);
    p.ttl = p.reset;
    if (!p.ok) p.retry = ceil_div(allow_at - now_us, 1000);
    p.arem = max<std::int64_t>(0, dvt - aft) / ei;
    p.areset = ceil_div(aft, 1000);
    p.attl = p.areset;
    p.next.tat = next;
  } else {
    std::int64_t const P = r.period_ms, win = now_ms / P, e = now_ms - win * P, left = P - e;
    p.limit = r.limit;
    if (r.algo == 'f') {
      std::int64_t const n = s.win == win ? s.cur : 0;
      p.ok = n + cost <= r.limit;
      p.rem = max<std::int64_t>(0, r.limit - n);
      p.reset = n > 0 ? left : 0;
      p.ttl = p.reset;
      if (!p.ok) p.retry = left;
      p.arem = max<std::int64_t>(0, r.limit - n - cost);
      p.areset = n + cost > 0 ? left : 0;
      p.attl = left;
      p.next.win = win;
      p.next.cur = n + cost;
    } else {
      std::int64_t cur = 0, prev = 0;
      if (s.win == win) {
        cur = s.cur;
        prev = s.prev;
      } else if (s.win == win - 1) {
        prev = s.cur;
      }
      std::int64_t const decay = prev * left;
      auto const rem = [&](std::int64_t c) {
        return max<std::int64_t>(0, (r.limit - c) * P - decay) / P;
      };
      auto const reset = [&](std::int64_t c) -> std::int64_t {
        return c > 0 ? left + P : (prev > 0 ? left : 0);
      };
      p.ok = (cur + cost) * P + decay <= r.limit * P;
      p.rem = rem(cur);
      p.reset = reset(cur);
      p.ttl = p.reset;
      if (!p.ok) {
        std::int64_t const room = r.limit - cur - cost;
        p.retry = room >= 0 ? (P - room * P / prev) - e
                            : left + max<std::int64_t>(0, P - (r.limit - cost) * P / cur);
      }
      p.arem = rem(cur + cost);
      p.areset = reset(cur + cost);
      p.attl = p.areset;
      p.next.win = win;
      p.next.cur = cur + cost;
      p.next.prev = prev;
    }
  }
  if (s.blocked_until > now_ms) {
    std::int64_t const b = s.blocked_until - now_ms;
    p.ok = false;
    p.blocked = true;
    p.retry = max(p.retry, b);
    p.rem = 0;
    p.reset = max(p.reset, b);
    p.ttl = max(p.ttl, b);
  }
  return p;
}

/// Values per part in the script's reply: allowed, limit, remaining, retry ms, reset ms, blocked.
inline constexpr std::size_t kReplyWidth = 6;

/// Decides a check of `rules.size()` parts on `store` (load(i), save(i, algo, state, ttl_ms),
/// block(i, until_ms, ttl_ms)) and returns the script's reply.
template <class Store>
std::vector<std::int64_t> run_check(Store& store, std::span<Rule const> rules, std::int64_t now_us,
                                    std::int64_t cost) {
  std::int64_t const now_ms = now_us / 1000;
  std::array<Part, 2> parts;
  bool all_ok = true;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    parts[i] = evaluate(rules[i], store.load(i), now_us, cost);
    all_ok = all_ok && parts[i].ok;
  }
  std::vector<std::int64_t> out;
  out.reserve(kReplyWidth * rules.size());
  for (std::size_t i = 0; i < rules.size(); ++i) {
    Part& p = parts[i];
    if (all_ok) {
      if (cost > 0) store.save(i, rules[i].algo, p.next, p.attl);
      out.insert(out.end(), {1, p.limit, p.arem, 0, p.areset, 0});
      continue;
    }
    std::int64_t const block = rules[i].block_ms;
    if (!p.ok && !p.blocked && block > 0) {
      store.block(i, now_ms + block, std::max(p.ttl, block));
      p.blocked = true;
      p.rem = 0;
      p.retry = std::max(p.retry, block);
      p.reset = std::max(p.reset, block);
    }
    out.insert(out.end(), {p.ok ? 1 : 0, p.limit, p.rem, p.retry, p.reset, p.blocked ? 1 : 0});
  }
  return out;
}

/// All of `s` as a decimal integer.
inline std::optional<std::int64_t> parse_int(std::string_view s) noexcept {
  std::int64_t v = 0;
  auto const r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

inline std::int64_t field_or(std::optional<std::string> const& v, std::int64_t d) noexcept {
  if (!v) return d;
  auto const x = parse_int(*v);
  return x && *x > -9'000'000'000'000'000 && *x < 9'000'000'000'000'000 ? *x : d;
}

/// The twin's store: the subjects' hashes, through the script context (their states already
/// read, by the twin's HMGETs).
template <class Ctx>
struct ScriptStore {
  Ctx& c;
  std::span<std::string_view const> keys;
  std::array<State, 2> const& states;

  State load(std::size_t i) const { return states[i]; }
  void save(std::size_t i, char algo, State const& s, std::int64_t ttl_ms) {
    if (algo == 'g') {
      std::string const t = std::to_string(s.tat);
      c.call(cmd::hset{.key = keys[i], .fields = FieldValue{"t", t}});
    } else {
      std::string const w = std::to_string(s.win), n = std::to_string(s.cur);
      if (algo == 'f') {
        c.call(cmd::hset{.key = keys[i], .fields = {FieldValue{"w", w}, FieldValue{"n", n}}});
      } else {
        std::string const p = std::to_string(s.prev);
        c.call(cmd::hset{.key = keys[i],
                         .fields = {FieldValue{"w", w}, FieldValue{"n", n}, FieldValue{"p", p}}});
      }
    }
    c.call(cmd::pexpire{.key = keys[i], .ttl = std::chrono::milliseconds(ttl_ms)});
  }
  void block(std::size_t i, std::int64_t until_ms, std::int64_t ttl_ms) {
    std::string const b = std::to_string(until_ms);
    c.call(cmd::hset{.key = keys[i], .fields = FieldValue{"b", b}});
    c.call(cmd::pexpire{.key = keys[i], .ttl = std::chrono::milliseconds(ttl_ms)});
  }
};

inline constexpr std::string_view kBadArgs = "ERR rate limiter: wrong number of keys or arguments";

/// The most checks one script call carries: a batch runs atomically on the server, so it
/// holds up the server's other clients for its duration (about 4 µs per check).
inline constexpr std::size_t kMaxBatch = 128;

/// Status of a check in the script's reply: decided (its numbers follow), or not run because a
/// key of it holds a value of another type (nothing of it was written).
inline constexpr std::int64_t kDecided = 0, kWrongType = 1;

/// Where each check of a batch starts in KEYS and ARGV, after validating the layout (see
/// check_script); nullopt when it does not add up.
struct BatchEntry {
  std::size_t key = 0, arg = 0, parts = 0;  // arg: index of the check's `parts` in ARGV
};
inline std::optional<std::vector<BatchEntry>> batch_layout(std::size_t nkeys,
                                                           std::span<std::string_view const> a) {
  std::vector<BatchEntry> out;
  std::size_t k = 0, i = 1;
  while (i < a.size()) {
    auto const parts = parse_int(a[i]).value_or(0);
    if (parts < 1 || parts > 2) return std::nullopt;
    auto const n = static_cast<std::size_t>(parts);
    if (k + n > nkeys || i + 2 + 5 * n > a.size()) return std::nullopt;
    out.push_back({k, i, n});
    k += n;
    i += 2 + 5 * n;
  }
  if (a.empty() || k != nkeys || out.empty()) return std::nullopt;
  return out;
}

// KEYS: the subject hashes of every check in turn (1 or 2 per check). ARGV: now in µs ("" =
// the server's TIME; tests pin it), then per check: its number of parts, its cost, and per
// part: algorithm (g | s | f), limit, period ms, burst, block ms.
// Reply, per check in turn: kDecided and 6 numbers per part (allowed, limit, remaining, retry
// ms, reset ms, blocked), or kWrongType alone. Each check is decided as if it ran alone, in
// the batch's order, at the batch's one instant.
inline std::vector<std::int64_t> check_twin(ScriptContext auto& c) {
  auto const keys = c.keys();
  auto const a = c.args();
  auto const layout = batch_layout(keys.size(), a);
  if (!layout) c.fail(kBadArgs);
  std::int64_t const now_us = a[0].empty() ? c.unix_ms() * 1000 : parse_int(a[0]).value_or(0);
  std::vector<std::int64_t> out;
  for (BatchEntry const& e : *layout) {
    std::int64_t const cost = parse_int(a[e.arg + 1]).value_or(0);
    std::array<Rule, 2> rules;
    std::array<State, 2> states;
    bool wrong_type = false;
    for (std::size_t i = 0; i < e.parts; ++i) {
      auto const* r = &a[e.arg + 2 + 5 * i];
      rules[i] = Rule{r[0].empty() ? 'g' : r[0][0], parse_int(r[1]).value_or(1),
                      parse_int(r[2]).value_or(1), parse_int(r[3]).value_or(1),
                      parse_int(r[4]).value_or(0)};
      auto const [ec, v] =
          c.pcall(cmd::hmget{.key = keys[e.key + i], .fields = {"t", "w", "n", "p", "b"}});
      if (ec || v.size() != 5) {
        wrong_type = true;
        break;
      }
      states[i] = State{field_or(v[0], 0), field_or(v[1], -1), field_or(v[2], 0), field_or(v[3], 0),
                        field_or(v[4], 0)};
    }
    if (wrong_type) {
      out.push_back(kWrongType);
      continue;
    }
    ScriptStore<std::remove_reference_t<decltype(c)>> store{c, keys.subspan(e.key, e.parts),
                                                            states};
    out.push_back(kDecided);
    auto const r = run_check(store, std::span<Rule const>(rules.data(), e.parts), now_us, cost);
    out.insert(out.end(), r.begin(), r.end());
  }
  return out;
}

inline auto const check_script =
    make_script<std::vector<std::int64_t>>(R"lua(
local floor, tonumber, fmt, nk, na = math.floor, tonumber, string.format, #KEYS, #ARGV
local function bad()
  return redis.error_reply('ERR rate limiter: wrong number of keys or arguments')
end
-- The layout first: nothing runs unless every check adds up.
local k, a = 0, 1
while a < na do
  local parts = tonumber(ARGV[a + 1])
  if parts ~= 1 and parts ~= 2 then return bad() end
  if k + parts > nk or a + 2 + 5 * parts > na then return bad() end
  k, a = k + parts, a + 2 + 5 * parts
end
if na < 2 or k ~= nk then return bad() end
-- Quotients of non-negative integers below 2^53 are exact with floor(a / b).
local function int(v, d)
  local x = tonumber(v)
  if x and x == floor(x) and x > -9e15 and x < 9e15 then return x end
  return d
end
local now_us
if ARGV[1] ~= '' then
  now_us = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local now_ms = floor(now_us / 1000)
local out, n = {}, 0
-- One check: keys k0 + 1 .. k0 + nk, its parts' arguments from ARGV[a0 + 3].
local function check(k0, a0, nk, cost)
  local F = {}
  for i = 1, nk do
    local f = redis.pcall('HMGET', KEYS[k0 + i], 't', 'w', 'n', 'p', 'b')
    if f.err then
      n = n + 1
      out[n] = 1
      return
    end
    F[i] = f
  end
  -- Per key, 14 slots: ok, blocked, limit, rem, retry, reset, ttl, arem, areset, attl, then
  -- what to write: x1, x2, x3 (t | w n | w n p) and the block duration.
  local S = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
  local all_ok = true
  for i = 1, nk do
    local a = a0 + 2 + (i - 1) * 5
    local algo, limit, P = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local f = F[i]
    local ok, lim, rem, retry, reset, ttl, arem, areset, attl
    local x1, x2, x3 = 0, 0, 0
    retry = 0
    if algo == 'g' then
      local burst = tonumber(ARGV[a + 4])
      local ei = floor(P * 1000 / limit)
      local dvt = ei * burst
      local tat = int(f[1], 0)
      if tat < now_us then tat = now_us end
      local nxt = tat + ei * cost
      local allow_at = nxt - dvt
      ok = now_us >= allow_at
      lim = burst
      local cur, aft = tat - now_us, nxt - now_us
      local d = dvt - cur
      if d < 0 then d = 0 end
      rem = floor(d / ei)
      reset = floor((cur + 999) / 1000)
      ttl = reset
      if not ok then retry = floor((allow_at - now_us + 999) / 1000) end
      d = dvt - aft
      if d < 0 then d = 0 end
      arem = floor(d / ei)
      areset = floor((aft + 999) / 1000)
      attl = areset
      x1 = nxt
    else
      local win = floor(now_ms / P)
      local e = now_ms - win * P
      local left = P - e
      local s_win, s_cur = int(f[2], -1), int(f[3], 0)
      lim = limit
      if algo == 'f' then
        local n = 0
        if s_win == win then n = s_cur end
        ok = n + cost <= limit
        rem = limit - n
        if rem < 0 then rem = 0 end
        reset = 0
        if n > 0 then reset = left end
        ttl = reset
        if not ok then retry = left end
        arem = limit - n - cost
        if arem < 0 then arem = 0 end
        areset = 0
        if n + cost > 0 then areset = left end
        attl = left
        x1, x2 = win, n + cost
      else
        local cur, prev = 0, 0
        if s_win == win then
          cur, prev = s_cur, int(f[4], 0)
        elseif s_win == win - 1 then
          prev = s_cur
        end
        local decay = prev * left
        local r = (limit - cur) * P - decay
        if r < 0 then r = 0 end
        rem = floor(r / P)
        r = (limit - cur - cost) * P - decay
        if r < 0 then r = 0 end
        arem = floor(r / P)
        ok = (cur + cost) * P + decay <= limit * P
        reset, areset = 0, 0
        if prev > 0 then reset, areset = left, left end
        if cur > 0 then reset = left + P end
        if cur + cost > 0 then areset = left + P end
        ttl, attl = reset, areset
        if not ok then
          local room = limit - cur - cost
          if room >= 0 then
            retry = (P - floor(room * P / prev)) - e
          else
            local w = P - floor((limit - cost) * P / cur)
            if w < 0 then w = 0 end
            retry = left + w
          end
        end
        x1, x2, x3 = win, cur + cost, prev
      end
    end
    local blocked = 0
    local b = int(f[5], 0)
    if b > now_ms then
      b = b - now_ms
      ok = false
      blocked = 1
      if b > retry then retry = b end
      rem = 0
      if b > reset then reset = b end
      if b > ttl then ttl = b end
    end
    if not ok then all_ok = false end
    local o = (i - 1) * 14
    if ok then S[o + 1] = 1 end
    S[o + 2], S[o + 3], S[o + 4], S[o + 5], S[o + 6], S[o + 7] = blocked, lim, rem, retry, reset, ttl
    S[o + 8], S[o + 9], S[o + 10], S[o + 11], S[o + 12], S[o + 13] = arem, areset, attl, x1, x2, x3
    S[o + 14] = tonumber(ARGV[a + 5])
  end
  n = n + 1
  out[n] = 0
  for i = 1, nk do
    local o, k = (i - 1) * 14, KEYS[k0 + i]
    local algo = ARGV[a0 + 3 + (i - 1) * 5]
    if all_ok then
      if cost > 0 then
        if algo == 'g' then
          redis.call('HSET', k, 't', fmt('%.0f', S[o + 11]))
        elseif algo == 'f' then
          redis.call('HSET', k, 'w', fmt('%.0f', S[o + 11]), 'n', fmt('%.0f', S[o + 12]))
        else
          redis.call('HSET', k, 'w', fmt('%.0f', S[o + 11]), 'n', fmt('%.0f', S[o + 12]),
                     'p', fmt('%.0f', S[o + 13]))
        end
        redis.call('PEXPIRE', k, fmt('%.0f', S[o + 10]))
      end
      out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5], out[n + 6] =
        1, S[o + 3], S[o + 8], 0, S[o + 9], 0
    else
      local block = S[o + 14]
      if S[o + 1] == 0 and S[o + 2] == 0 and block > 0 then
        redis.call('HSET', k, 'b', fmt('%.0f', now_ms + block))
        local t = S[o + 7]
        if block > t then t = block end
        redis.call('PEXPIRE', k, fmt('%.0f', t))
        S[o + 2], S[o + 4] = 1, 0
        if block > S[o + 5] then S[o + 5] = block end
        if block > S[o + 6] then S[o + 6] = block end
      end
      out[n + 1], out[n + 2], out[n + 3] = S[o + 1], S[o + 3], S[o + 4]
      out[n + 4], out[n + 5], out[n + 6] = S[o + 5], S[o + 6], S[o + 2]
    end
    n = n + 6
  end
end
k, a = 0, 1
while a < na do
  local parts = tonumber(ARGV[a + 1])
  check(k, a, parts, tonumber(ARGV[a + 2]))
  k, a = k + parts, a + 2 + 5 * parts
end
return out)lua",
                                           [](ScriptContext auto& c) { return check_twin(c); });

/// The insurance limiter's memory: subjects' states with their expiry, bounded.
class LocalStates {
 public:
  explicit LocalStates(std::size_t max_keys) : max_(std::max<std::size_t>(1, max_keys)) {}

  /// Forgets what expired by `now_ms`, then the state of `key` (the defaults when none).
  State load(std::string const& key, std::int64_t now_ms) {
    purge(now_ms);
    auto const it = map_.find(key);
    return it == map_.end() ? State{} : it->second.state;
  }
  /// Writes `key`'s state (what `write` changes of it) and its life, as HSET + PEXPIRE do.
  template <class Write>
  void update(std::string const& key, std::int64_t expires_ms, Write write) {
    auto it = map_.find(key);
    if (it == map_.end()) {
      if (map_.size() >= max_) {  // the soonest to expire goes
        map_.erase(*expiry_.begin()->second);
        expiry_.erase(expiry_.begin());
      }
      it = map_.emplace(key, Entry{}).first;
    } else {
      expiry_.erase(it->second.at);
    }
    write(it->second.state);
    it->second.at = expiry_.emplace(expires_ms, &it->first);
  }
  void erase(std::string const& key) {
    auto const it = map_.find(key);
    if (it == map_.end()) return;
    expiry_.erase(it->second.at);
    map_.erase(it);
  }
  void clear() {
    map_.clear();
    expiry_.clear();
  }
  std::size_t size() const noexcept { return map_.size(); }

 private:
  using Expiry = std::multimap<std::int64_t, std::string const*>;
  struct Entry {
    State state;
    Expiry::iterator at;
  };
  void purge(std::int64_t now_ms) {
    while (!expiry_.empty() && expiry_.begin()->first <= now_ms) {
      map_.erase(*expiry_.begin()->second);
      expiry_.erase(expiry_.begin());
    }
  }
  std::size_t max_;
  std::unordered_map<std::string, Entry> map_;
  Expiry expiry_;
};

/// The insurance limiter's store over LocalStates (the same writes as ScriptStore's).
struct LocalStore {
  LocalStates& states;
  std::span<std::string const> keys;
  std::int64_t now_ms;

  State load(std::size_t i) { return states.load(keys[i], now_ms); }
  void save(std::size_t i, char algo, State const& s, std::int64_t ttl_ms) {
    states.update(keys[i], now_ms + ttl_ms, [&](State& to) {
      if (algo == 'g') {
        to.tat = s.tat;
      } else {
        to.win = s.win;
        to.cur = s.cur;
        if (algo == 's') to.prev = s.prev;
      }
    });
  }
  void block(std::size_t i, std::int64_t until_ms, std::int64_t ttl_ms) {
    states.update(keys[i], now_ms + ttl_ms, [&](State& to) { to.blocked_until = until_ms; });
  }
};

/// A check ready to go: keys, script arguments and what the answer needs; or `problem`.
/// On the heap: the script command views its strings while the pointer moves with the handler.
struct Pending {
  std::string problem;  // non-empty: bad input, nothing is sent
  std::array<std::string, 2> keys;
  std::array<std::string_view, 2> key_views;  // of `keys`: what the commands view
  std::array<Rule, 2> rules;
  std::array<bool, 2> is_ip{};
  std::size_t parts = 0;
  std::int64_t cost = 0;
  std::vector<std::string> args;  // this check's part of ARGV: parts, cost, then its rules

  std::span<std::string const> key_span() const noexcept { return {keys.data(), parts}; }
  /// The keys as a contiguous range of views: an ArgList made from it points at key_views
  /// itself (a range of std::string would be viewed through the range object).
  std::span<std::string_view const> key_view_span() const noexcept {
    return {key_views.data(), parts};
  }
  std::span<Rule const> rule_span() const noexcept { return {rules.data(), parts}; }
};

/// The five numbers of a whole check from the script's reply (see RateLimitResult).
inline RateLimitResult combine(std::span<std::int64_t const> r, Pending const& p) {
  RateLimitResult out;
  out.allowed = true;
  std::size_t k = 0;
  for (std::size_t i = 0; i < p.parts; ++i) {
    auto const* v = &r[kReplyWidth * i];
    bool const ok = v[0] != 0;
    if (!ok) {
      out.allowed = false;
      (p.is_ip[i] ? out.denied_by_ip : out.denied_by_user) = true;
      out.blocked = out.blocked || v[5] != 0;
      out.retry_after = std::max(out.retry_after, std::chrono::milliseconds(v[3]));
    }
    auto const* best = &r[kReplyWidth * k];
    if (v[2] < best[2] || (v[2] == best[2] && !ok && best[0] != 0)) k = i;
    out.reset_after = std::max(out.reset_after, std::chrono::milliseconds(v[4]));
  }
  out.limit = r[kReplyWidth * k + 1];
  out.remaining = r[kReplyWidth * k + 2];
  return out;
}

/// The clock of the breaker and of the insurance limiter: the backend's own on in-process
/// backends (FakeBackend's ManualClock: tests drive it), the system's otherwise.
template <class B>
struct LimiterClock {
  static constexpr bool manual = false;
  B* backend = nullptr;
  std::int64_t now_ms() const noexcept {
    if constexpr (requires(B & b) { b.clock().now_ms(); })
      return backend->clock().now_ms();
    else
      return SteadyClock{}.now_ms();
  }
  std::int64_t unix_us() const noexcept {
    if constexpr (requires(B & b) { b.clock().unix_ms(); }) {
      return backend->clock().unix_ms() * 1000;
    } else {
      using namespace std::chrono;
      return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
    }
  }
};

}  // namespace detail::ratelimit

/// Seed 002's rate limiting over any Backend (see the top of this file). Checks complete with
/// void(error_code, RateLimitResult).
template <Backend B>
class RateLimiter {
  using error_code = boost::system::error_code;
  using Sig = void(error_code, RateLimitResult);
  using Handler = detail::AnyHandler<Sig>;
  using Clock = detail::ratelimit::LimiterClock<B>;
  using Breaker = CircuitBreaker<Clock>;
  using Pending = detail::ratelimit::Pending;

  template <class T>
  static constexpr bool is_token_v = !std::is_arithmetic_v<std::remove_cvref_t<T>> &&
                                     !std::is_same_v<std::remove_cvref_t<T>, Diagnostics>;

 public:
  using executor_type = typename B::executor_type;

  /// `backend` must outlive the limiter and its operations. Throws rediskit::Exception
  /// (Error::invalid_config) for a key prefix holding '{' or '}' in the clustered layout, and
  /// for a breaker setting out of range.
  explicit RateLimiter(B& backend, RateLimiterOptions options = {})
      : backend_(backend),
        options_(std::move(options)),
        layout_(options_.key_layout.value_or(default_key_layout_v<B>)),
        prefix_(options_.key_prefix.empty() ? std::string() : options_.key_prefix + ":"),
        breaker_(options_.insurance.breaker, Clock{&backend}),
        local_(options_.insurance.max_keys),
        by_slot_(layout_ == KeyLayout::clustered ||
                 default_key_layout_v<B> == KeyLayout::clustered) {
    if (layout_ == KeyLayout::clustered &&
        options_.key_prefix.find_first_of("{}") != std::string::npos)
      throw Exception(make_error_code(Error::invalid_config),
                      "RateLimiterOptions::key_prefix must not hold '{' or '}' in the clustered "
                      "layout (the endpoint is the keys' hash tag)");
  }
  RateLimiter(RateLimiter const&) = delete;
  RateLimiter& operator=(RateLimiter const&) = delete;

  executor_type get_executor() const noexcept { return backend_.get_executor(); }
  RateLimiterOptions const& options() const noexcept { return options_; }
  /// The layout in use: options().key_layout, else default_key_layout_v<B>.
  KeyLayout key_layout() const noexcept { return layout_; }

  /// The key of `user_id`'s (or an IP address's: the same namespace) state at `endpoint`.
  std::string key(std::string_view subject, std::string_view endpoint) const {
    std::string k = prefix_;
    if (layout_ == KeyLayout::plain) {
      k.append(subject).append(1, ':').append(endpoint);
    } else {
      std::string const tag = hash_tag_for(endpoint);
      k.append(tag);
      if (tag.size() != endpoint.size() + 2 || tag.compare(1, endpoint.size(), endpoint) != 0)
        k.append(endpoint);  // tagged by its slot: the name itself follows
      k.append(1, ':').append(subject);
    }
    return k;
  }

  /// The limits that apply at `endpoint`: its own, else options().default_limits.
  EndpointLimits const& limits(std::string_view endpoint) const {
    auto const it = options_.endpoints.find(endpoint);
    return it == options_.endpoints.end() ? options_.default_limits : it->second;
  }

  /// Why async_check(endpoint, subject, cost) would fail with Error::invalid_argument; empty
  /// when it would not.
  std::string explain(std::string_view endpoint, RateSubject subject, std::int64_t cost = 1) const {
    return prepare(endpoint, subject, cost)->problem;
  }

  /// Checks a request of cost 1 (see below).
  template <class Token = boost::asio::deferred_t>
  requires is_token_v<Token>
  auto async_check(std::string_view endpoint, RateSubject subject, Token&& token = {}) {
    return start(prepare(endpoint, subject, 1), nullptr, std::forward<Token>(token));
  }

  /// Checks a request of weight `cost` (0: only asks, consumes nothing) against `endpoint`'s
  /// limits for `subject`, and consumes it when every limit allows: one script, one round trip.
  /// Handler: void(error_code, RateLimitResult). A denied check is not an error.
  template <class Token = boost::asio::deferred_t>
  requires is_token_v<Token>
  auto async_check(std::string_view endpoint, RateSubject subject, std::int64_t cost,
                   Token&& token = {}) {
    return start(prepare(endpoint, subject, cost), nullptr, std::forward<Token>(token));
  }

  /// As above; `diag` (alive until completion) gets the reason of Error::invalid_argument in
  /// `detail`, and a server's error text in `server_message`.
  template <class Token = boost::asio::deferred_t>
  auto async_check(std::string_view endpoint, RateSubject subject, std::int64_t cost,
                   Diagnostics& diag, Token&& token = {}) {
    return start(prepare(endpoint, subject, cost), &diag, std::forward<Token>(token));
  }

  /// Forgets `subject`'s state at `endpoint` (its counts and any block), on the backend (one
  /// DEL) and in the insurance limiter. Handler: void(error_code, std::int64_t keys deleted).
  template <class Token = boost::asio::deferred_t>
  auto async_reset(std::string_view endpoint, RateSubject subject, Token&& token = {}) {
    auto p = prepare(endpoint, subject, 0);
    return detail::initiate<void(error_code, std::int64_t)>(
        std::forward<Token>(token), [this, p = std::move(p)](auto handler) mutable {
          if (!p->problem.empty()) {
            count_error();
            return detail::post_handler(backend_.get_executor(), std::move(handler),
                                        make_error_code(Error::invalid_argument), std::int64_t{0});
          }
          {
            std::lock_guard lock(mutex_);
            for (auto const& k : p->key_span())
              local_.erase(k);
          }
          cmd::del const del{.keys = p->key_view_span()};
          backend_.async_exec(del, std::move(handler));
        });
  }

  RateLimiterStats stats() const {
    std::lock_guard lock(mutex_);
    RateLimiterStats s = stats_;
    s.insurance_keys = local_.size();
    return s;
  }
  RateLimiterMode mode() const {
    std::lock_guard lock(mutex_);
    return stats_.mode;
  }

 private:
  // ---- preparing a check --------------------------------------------------------------------

  std::unique_ptr<Pending> prepare(std::string_view endpoint, RateSubject subject,
                                   std::int64_t cost) const {
    auto p = std::make_unique<Pending>();
    p->cost = cost;
    auto const bad = [&](std::string why) {
      p->problem = std::move(why);
      return std::move(p);
    };
    if (endpoint.empty()) return bad("the endpoint is empty");
    if (!subject.has_user() && !subject.has_ip()) return bad("no subject");
    if (subject.has_user() && subject.user_id().empty()) return bad("the user id is empty");
    if (subject.has_ip() && subject.ip_address().empty()) return bad("the IP address is empty");
    if (cost < 0) return bad("the cost is negative (" + std::to_string(cost) + ")");
    EndpointLimits const& lim = limits(endpoint);
    std::string const ep(endpoint);
    auto const add = [&](std::optional<RateLimit> const& l, std::string_view id, bool is_ip) {
      char const* kind = is_ip ? "IP" : "user";
      if (!l) return "endpoint '" + ep + "' has no " + kind + " limit";
      if (auto why = l->problem(); !why.empty())
        return "endpoint '" + ep + "', " + kind + " limit: " + why;
      if (cost > l->capacity())
        return "the cost " + std::to_string(cost) + " exceeds endpoint '" + ep + "''s " + kind +
               " capacity " + std::to_string(l->capacity()) + " (it could never be allowed)";
      std::size_t const i = p->parts++;
      p->keys[i] = key(id, endpoint);
      p->key_views[i] = p->keys[i];
      p->is_ip[i] = is_ip;
      char const algo = l->algorithm == RateAlgorithm::gcra             ? 'g'
                        : l->algorithm == RateAlgorithm::sliding_window ? 's'
                                                                        : 'f';
      p->rules[i] = {algo, l->limit, l->period.count(), l->capacity(), l->block_for.count()};
      return std::string();
    };
    if (subject.has_user())
      if (auto why = add(lim.user, subject.user_id(), false); !why.empty()) return bad(why);
    if (subject.has_ip())
      if (auto why = add(lim.ip, subject.ip_address(), true); !why.empty()) return bad(why);
    // The seed's layout shares one namespace between user ids and addresses: a user id spelled
    // as the address would make both parts one key, and one state for two rules.
    if (p->parts == 2 && p->keys[0] == p->keys[1])
      return bad("the user id and the IP address are the same key ('" + p->keys[0] +
                 "'): check them one at a time");
    p->args.reserve(2 + 5 * p->parts);
    p->args.push_back(std::to_string(p->parts));
    p->args.push_back(std::to_string(cost));
    for (auto const& r : p->rule_span()) {
      p->args.emplace_back(1, r.algo);
      p->args.push_back(std::to_string(r.limit));
      p->args.push_back(std::to_string(r.period_ms));
      p->args.push_back(std::to_string(r.burst));
      p->args.push_back(std::to_string(r.block_ms));
    }
    return p;
  }

  // ---- running it -----------------------------------------------------------------------------
  //
  // Checks are coalesced: while kMaxInFlight batches of a group are on their way, new checks
  // of the group wait, and go together, up to kMaxBatch in one script call, when a batch
  // comes back. One caller sees one round trip, as before; many callers share each script
  // call's fixed cost on the server. A group is every check (one server), or on a cluster the
  // checks of one hash slot (a script's keys must share one).

  static constexpr int kMaxInFlight = 2;

  // A probe's right to go: released under the lock when the check ends without a result.
  struct Permit {
    RateLimiter* self = nullptr;
    std::optional<typename Breaker::Permit> permit;
    Permit(RateLimiter* s, std::optional<typename Breaker::Permit> p)
        : self(s), permit(std::move(p)) {}
    Permit(Permit&& o) noexcept : self(o.self), permit(std::move(o.permit)) { o.permit.reset(); }
    Permit& operator=(Permit&&) = delete;
    ~Permit() {
      if (!permit) return;
      std::lock_guard lock(self->mutex_);
      permit.reset();
    }
  };

  enum class ItemState : std::uint8_t { waiting, sent, gone };  // gone: its handler was taken

  // A check waiting for its batch, or riding in one.
  struct Item {
    std::unique_ptr<Pending> p;
    Diagnostics* diag = nullptr;
    Handler handler;
    Permit permit;
    ItemState state = ItemState::waiting;
  };
  using ItemPtr = std::unique_ptr<Item>;

  struct Group {
    std::deque<ItemPtr> waiting;
    int in_flight = 0;
  };

  // One script call: its checks, and the KEYS and ARGV the command views.
  struct Batch {
    std::uint32_t group = 0;
    std::vector<ItemPtr> items;
    std::vector<std::string_view> keys;
    std::vector<std::string_view> args;
    Diagnostics diag;
  };
  using BatchPtr = std::unique_ptr<Batch>;

  struct BatchDone {
    RateLimiter* self;
    BatchPtr batch;
    void operator()(error_code ec, std::vector<std::int64_t> reply) {
      self->complete(std::move(batch), ec, reply);
    }
  };

  template <class Token>
  auto start(std::unique_ptr<Pending> p, Diagnostics* diag, Token&& token) {
    return boost::asio::async_initiate<Token, Sig>(
        [this](auto handler, std::unique_ptr<Pending> p, Diagnostics* diag) {
          launch(std::move(p), diag, Handler(std::move(handler)));
        },
        token, std::move(p), diag);
  }

  // The group of a check; nullopt when its keys are in different slots of a cluster.
  std::optional<std::uint32_t> group_of(Pending const& p) const {
    if (!by_slot_) return 0;
    auto const slot = cluster::key_slot(p.keys[0]);
    if (p.parts == 2 && cluster::key_slot(p.keys[1]) != slot) return std::nullopt;
    return slot;
  }

  // Compiled once (the caller's handler is erased).
  void launch(std::unique_ptr<Pending> p, Diagnostics* diag, Handler handler) {
    if (!p->problem.empty()) {
      if (diag) diag->detail = p->problem;
      count_error();
      return detail::post_handler(backend_.get_executor(), std::move(handler),
                                  make_error_code(Error::invalid_argument), RateLimitResult{});
    }
    auto const group = group_of(*p);
    if (!group) {  // as a cluster would refuse the script, before anything is sent
      if (diag)
        diag->detail = "the user's key '" + p->keys[0] + "' and the IP's key '" + p->keys[1] +
                       "' are in different hash slots: use KeyLayout::clustered on a cluster";
      count_error();
      return detail::post_handler(backend_.get_executor(), std::move(handler),
                                  make_error_code(Error::cross_slot), RateLimitResult{});
    }
    auto item = std::make_unique<Item>(
        Item{std::move(p), diag, std::move(handler), Permit(this, std::nullopt)});
    BatchPtr batch;
    {
      std::lock_guard lock(mutex_);
      if (options_.insurance.enabled) {
        auto permit = breaker_.try_acquire();
        update_mode();
        if (!permit) {  // insurance: answered here, without the backend
          RateLimitResult r = local_check(*item->p);
          return detail::post_handler(backend_.get_executor(), std::move(item->handler),
                                      error_code{}, std::move(r));
        }
        item->permit.permit = std::move(permit);
      }
      watch_cancellation(*item);
      Group& g = groups_[*group];
      if (g.in_flight < kMaxInFlight) {
        ++g.in_flight;
        batch = std::make_unique<Batch>();
        batch->group = *group;
        batch->items.push_back(std::move(item));
      } else {
        g.waiting.push_back(std::move(item));
      }
    }
    if (batch) send(std::move(batch));
  }

  // A check that waits, or rides in a batch, completes at once with operation_aborted when
  // its handler's slot is cancelled (a check already sent may still count on the backend).
  void watch_cancellation(Item& item) {
    auto slot = item.handler.cancellation_slot();
    if (!slot.is_connected()) return;
    slot.assign([this, it = &item](boost::asio::cancellation_type) {
      Handler h;
      {
        std::lock_guard lock(mutex_);
        if (it->state == ItemState::gone) return;
        it->state = ItemState::gone;
        it->permit.permit.reset();  // says nothing of the backend: not recorded
        h = std::move(it->handler);
      }
      auto const ex = boost::asio::get_associated_executor(h, backend_.get_executor());
      // Posted: the slot holds this function, which must return before the slot is cleared.
      detail::post_erased(ex, detail::erase_call([h = std::move(h)]() mutable {
                            h.cancellation_slot().clear();
                            std::move(h)(make_error_code(boost::asio::error::operation_aborted),
                                         RateLimitResult{});
                          }));
    });
  }

  // Takes the next batch of `g` (its cancelled checks dropped); null when nothing waits.
  // Under the lock.
  BatchPtr take_batch(std::uint32_t group, std::vector<ItemPtr>& dropped) {
    Group& g = groups_[group];
    BatchPtr batch;
    while (!g.waiting.empty() && g.in_flight < kMaxInFlight) {
      ItemPtr item = std::move(g.waiting.front());
      g.waiting.pop_front();
      if (item->state == ItemState::gone) {
        dropped.push_back(std::move(item));
        continue;
      }
      if (!batch) {
        batch = std::make_unique<Batch>();
        batch->group = group;
      }
      batch->items.push_back(std::move(item));
      if (batch->items.size() == detail::ratelimit::kMaxBatch) break;
    }
    if (batch) ++g.in_flight;
    return batch;
  }

  void send(BatchPtr batch) {
    for (auto& item : batch->items)
      item->state = ItemState::sent;
    batch->args.push_back(std::string_view());  // now: the server's TIME
    for (auto const& item : batch->items) {
      Pending const& p = *item->p;
      batch->keys.insert(batch->keys.end(), p.key_views.begin(), p.key_views.begin() + p.parts);
      batch->args.insert(batch->args.end(), p.args.begin(), p.args.end());
    }
    // The command views the batch, which stays where it is while the pointer moves.
    auto const cmd =
        detail::ratelimit::check_script(std::span<std::string_view const>(batch->keys),
                                        std::span<std::string_view const>(batch->args));
    Diagnostics& d = batch->diag;
    backend_.async_exec(cmd, d, BatchDone{this, std::move(batch)});
  }

  struct Done {
    Handler handler;
    error_code ec;
    RateLimitResult result;
  };

  void complete(BatchPtr batch, error_code ec, std::vector<std::int64_t> const& reply) {
    std::vector<Done> done;
    std::vector<ItemPtr> dropped;
    std::vector<BatchPtr> next;
    done.reserve(batch->items.size());
    {
      std::lock_guard lock(mutex_);
      std::size_t at = 0;  // where the next check's answer starts in `reply`
      for (auto& item : batch->items) {
        Pending const& p = *item->p;
        std::span<std::int64_t const> answer;
        error_code iec = ec;
        if (!ec) {
          if (at < reply.size() && reply[at] == detail::ratelimit::kWrongType) {
            iec = make_error_code(Error::wrong_type);
            at += 1;
          } else if (at < reply.size() && reply[at] == detail::ratelimit::kDecided &&
                     reply.size() - at - 1 >= detail::ratelimit::kReplyWidth * p.parts) {
            answer = std::span<std::int64_t const>(reply).subspan(
                at + 1, detail::ratelimit::kReplyWidth * p.parts);
            at += 1 + answer.size();
          } else {
            iec = make_error_code(Error::incompatible_size);
            at = reply.size();
          }
        }
        if (item->state == ItemState::gone) continue;  // cancelled: its permit is gone too
        RateLimitResult r = finish(iec, answer, p, item->permit);
        if (iec && item->diag) {
          *item->diag = batch->diag;
          if (iec == Error::wrong_type && item->diag->server_message.empty())
            item->diag->server_message =
                "WRONGTYPE a rate limiter key of this check holds a value of another type: " +
                p.keys[0] + (p.parts == 2 ? " or " + p.keys[1] : std::string());
        }
        item->state = ItemState::gone;
        done.push_back(Done{std::move(item->handler), iec, r});
      }
      --groups_[batch->group].in_flight;
      while (BatchPtr b = take_batch(batch->group, dropped))
        next.push_back(std::move(b));
    }
    for (auto& b : next)
      send(std::move(b));
    for (auto& d : done) {
      d.handler.cancellation_slot().clear();
      detail::post_handler(backend_.get_executor(), std::move(d.handler), d.ec, d.result);
    }
  }

  // Under the lock.
  RateLimitResult finish(error_code& ec, std::span<std::int64_t const> reply, Pending const& p,
                         Permit& permit) {
    if (permit.permit) {
      // A cancelled check says nothing of the backend: its permit goes unrecorded (a probe's
      // slot is freed), so a client going away cannot end an outage's insurance.
      if (ec != boost::asio::error::operation_aborted)
        breaker_.record(std::move(*permit.permit), ec);
      permit.permit.reset();
      update_mode();
    }
    if (options_.insurance.enabled && is_outage(ec)) {
      ec = {};
      return local_check(p);
    }
    if (ec) {
      ++stats_.errors;
      return {};
    }
    RateLimitResult r = detail::ratelimit::combine(reply, p);
    count(r);
    return r;
  }

  // Under the lock.
  RateLimitResult local_check(Pending const& p) {
    std::int64_t const now_us = Clock{&backend_}.unix_us();
    detail::ratelimit::LocalStore store{local_, p.key_span(), now_us / 1000};
    auto const reply = detail::ratelimit::run_check(store, p.rule_span(), now_us, p.cost);
    RateLimitResult r = detail::ratelimit::combine(reply, p);
    r.insurance = true;
    ++stats_.insurance_checks;
    count(r);
    return r;
  }

  // Under the lock: follows the breaker's state (open or half open = insurance).
  void update_mode() {
    auto const now = breaker_.state() == CircuitState::closed ? RateLimiterMode::backend
                                                              : RateLimiterMode::insurance;
    if (now == stats_.mode) return;
    stats_.mode = now;
    if (now == RateLimiterMode::insurance) {
      ++stats_.to_insurance;
    } else {
      ++stats_.to_backend;
      local_.clear();  // the backend's state is the truth again
    }
  }

  void count(RateLimitResult const& r) {
    if (r.allowed) {
      ++stats_.allowed;
      if ((r.limit - r.remaining) * 5 >= r.limit * 4) ++stats_.near_limit;
    } else {
      ++stats_.limited;
      if (r.blocked) ++stats_.blocked;
    }
  }
  void count_error() {
    std::lock_guard lock(mutex_);
    ++stats_.errors;
  }

  B& backend_;
  RateLimiterOptions options_;
  KeyLayout layout_;
  std::string prefix_;        // "{key_prefix}:" or ""
  mutable std::mutex mutex_;  // breaker_, local_, stats_
  Breaker breaker_;
  detail::ratelimit::LocalStates local_;
  RateLimiterStats stats_;
  bool by_slot_;  // a group per hash slot (a cluster), else one group
  std::unordered_map<std::uint32_t, Group> groups_;  // last: its permits need the lock
};

}  // namespace rediskit
