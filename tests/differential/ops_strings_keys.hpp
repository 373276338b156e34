// Differential operations: string and key commands on MemoryBackend and on a real redis-server
// (see support/differential.hpp for how they are played).
//
// Time: both backends run on real clocks, a few milliseconds apart. Every TTL set here is
// either long (>= 100 s, so nothing expires during a run), or not positive (the key is deleted
// at once), or far beyond the clock (refused); TTL / PTTL replies are compared loosely (-1 and
// -2 exactly, remaining times within a tolerance). EXPIRE GT / LT first read the key's PTTL on
// both backends and pick a new TTL seconds away from both, so that the answer does not depend on
// the milliseconds between the two backends.
//
// SCAN and KEYS: cursors and orders legitimately differ. SCAN is compared as whole iterations
// (each backend from cursor 0 until it answers 0; the sorted, de-duplicated unions must be
// equal, or both must fail alike); KEYS as sorted lists.
#pragma once

#include "support/differential.hpp"

#include <rediskit/commands.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit::test {


namespace sk_ops {

using namespace std::chrono_literals;

/// A key of any family (key commands apply to every type): mostly strings.
inline std::string any_key(Gen& g) {
  static std::vector<std::string> const families = {"s", "s", "s", "h", "set", "z", "l", "x"};
  return g.key(g.pick(families));
}

/// A string value: Gen's values, plus texts INCR / INCRBYFLOAT read or refuse.
inline std::string string_value(Gen& g) {
  static std::vector<std::string> const numeric = {
      "0", "-0", "007", "+1", " 1", "1 ", "1.5", "1e3", "0x1A", "inf", "-inf", "nan", "1e5000",
      "1e-5000", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "3.0",
      "-2.25", ".5", "5.", "1e308", "", "12345678901234567890123"};
  if (g.coin(35)) return g.pick(numeric);
  return g.value();
}

/// A ttl in milliseconds for SET PX: long, and now and then one the server refuses.
inline std::chrono::milliseconds set_ttl(Gen& g) {
  switch (g.below(20)) {
    case 0: return 0ms;
    case 1: return -std::chrono::milliseconds(g.between(1, 1000));
    case 2: return std::chrono::milliseconds(std::numeric_limits<std::int64_t>::max());
    case 3: return 9'000'000'000'000'000'000ms;  // far, but fits
    default: return std::chrono::milliseconds(g.between(100'000, 10'000'000));
  }
}

/// SET's options, drawn (conflicting ones now and then: both backends must refuse them).
template <class C>
void set_options(Gen& g, C& c) {
  if (g.coin(30)) c.ttl = set_ttl(g);
  c.nx = g.coin(20);
  c.xx = g.coin(20);
  c.keep_ttl = g.coin(15);
}

/// 1 to `n` names drawn with `draw` (duplicates likely).
template <class Draw>
std::vector<std::string> some(Gen& g, std::size_t n, Draw draw) {
  std::vector<std::string> out(1 + g.below(n));
  for (auto& s : out) s = draw(g);
  return out;
}

/// An INCRBYFLOAT increment: scores (infinities included), fractions, NaN, huge values.
inline double float_increment(Gen& g) {
  switch (g.below(14)) {
    case 0: return std::numeric_limits<double>::quiet_NaN();
    case 1: return g.coin() ? 1.5e308 : -1.5e308;  // beyond double after two
    case 2: return 0.1 * static_cast<double>(g.between(-9, 9));
    case 3: return 1e-7 * static_cast<double>(g.between(1, 99));
    case 4: return static_cast<double>(g.integer());
    case 5: return 5e-324;
    default: return g.score();
  }
}

/// An optional SCAN COUNT: mostly none or small, now and then 0 or negative (refused).
inline std::optional<std::int64_t> scan_count(Gen& g) {
  switch (g.below(10)) {
    case 0:
    case 1: return std::nullopt;
    case 2: return g.between(-2, 0);
    case 3: return 1000;
    default: return g.between(1, 5);
  }
}

/// A SCAN / KEYS pattern over the keys of any family.
inline std::string key_pattern(Gen& g) {
  static std::vector<std::string> const families = {"s", "h", "set", "z", "l", "x", "shared"};
  if (g.coin(10)) return g.pick(std::vector<std::string>{"*", "**", "", "s:[0-3]", "*:?"});
  return g.pattern(g.pick(families));
}

/// A whole SCAN iteration on one backend: {error, sorted unique union}.
template <class Fx>
std::pair<boost::system::error_code, std::vector<std::string>> scan_all(Fx& f, cmd::scan c) {
  std::vector<std::string> all;
  c.cursor = 0;
  for (int steps = 0; steps < 100000; ++steps) {
    auto [ec, page] = f.exec(c);
    if (ec) return {ec, {}};
    all.insert(all.end(), page.keys.begin(), page.keys.end());
    c.cursor = page.cursor;
    if (c.cursor == 0) break;
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return {boost::system::error_code{}, std::move(all)};
}

inline std::string compare_scan(Pair& p, cmd::scan const& c) {
  auto [ec1, r1] = scan_all(p.mem, c);
  auto [ec2, r2] = scan_all(p.redis, c);
  if (ec1 == ec2 && (ec1 || r1 == r2)) return {};
  auto side = [](boost::system::error_code ec, auto const& r) {
    return ec ? "error " + ec.message() : to_text(r);
  };
  return describe_command(c) + " (to cursor 0)\n    memory: " + side(ec1, r1) +
         "\n    redis:  " + side(ec2, r2);
}

/// TTL / PTTL compared loosely: errors alike, -1 / -2 exactly, remaining times within
/// `tolerance` (the backends set them a few milliseconds apart).
template <class C>
std::string compare_ttl(Pair& p, C const& c, std::int64_t tolerance) {
  auto [ec1, a] = p.mem.exec(c);
  auto [ec2, b] = p.redis.exec(c);
  bool same = ec1 == ec2;
  if (same && !ec1) {
    if (a < 0 || b < 0)
      same = a == b;
    else
      same = (a > b ? a - b : b - a) <= tolerance;
  }
  if (same) return {};
  return describe_command(c) + "\n    memory: " + (ec1 ? "error " + ec1.message() : to_text(a)) +
         "\n    redis:  " + (ec2 ? "error " + ec2.message() : to_text(b));
}

/// A ttl in milliseconds for EXPIRE / PEXPIRE (`unit_ms` 1000 for EXPIRE): long, not positive
/// (deletes), or refused for overflowing the clock.
inline std::int64_t expire_ttl(Gen& g, std::int64_t unit_ms) {
  constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t min = std::numeric_limits<std::int64_t>::min();
  switch (g.below(20)) {
    case 0: return 0;
    case 1: return -g.between(1, 100'000);
    case 2: return unit_ms == 1 ? max : (max / 1000) * 1000;  // overflows once added
    case 3: return unit_ms == 1 ? min : (min / 1000) * 1000;  // deletes (EXPIRE: fits)
    default: return g.between(100, 10'000) * 1000;
  }
}

/// The key's PTTL on one backend (-2 / -1 as the server says).
template <class Fx>
std::int64_t current_pttl(Fx& f, std::string const& key) {
  auto [ec, v] = f.exec(cmd::pttl{key});
  return ec ? -2 : v;
}

/// For GT / LT: a ttl in milliseconds (whole seconds) at least 2 s away from the key's
/// remaining time on both backends, so that both compare it the same way.
inline std::int64_t distinct_ttl(Gen& g, Pair& p, std::string const& key, std::int64_t want) {
  std::int64_t const a = current_pttl(p.mem, key), b = current_pttl(p.redis, key);
  auto near = [](std::int64_t t, std::int64_t cur) {
    return cur >= 0 && t > 0 && (t > cur ? t - cur : cur - t) < 2000;
  };
  for (int i = 0; i < 100 && (near(want, a) || near(want, b)); ++i)
    want = g.between(100, 10'000) * 1000;
  return want;
}

template <class C, class Unit>
std::string expire_op(Gen& g, Pair& p, std::int64_t unit_ms) {
  std::string const key = any_key(g);
  std::int64_t ms = expire_ttl(g, unit_ms);
  std::optional<ExpireCondition> cond;
  switch (g.below(8)) {
    case 0: cond = ExpireCondition::nx; break;
    case 1: cond = ExpireCondition::xx; break;
    case 2: cond = ExpireCondition::gt; break;
    case 3: cond = ExpireCondition::lt; break;
    default: break;
  }
  if (cond == ExpireCondition::gt || cond == ExpireCondition::lt)
    ms = distinct_ttl(g, p, key, ms);
  return p.compare(C{.key = key, .ttl = Unit(ms / unit_ms), .condition = cond});
}

}  // namespace sk_ops

inline void register_strings_keys_ops(OpRegistry& r) {
  using namespace sk_ops;

  // ---- strings ------------------------------------------------------------------------------
  r.add("get", [](Gen& g, Pair& p) {
    std::string const key = g.key("s");
    return p.compare(cmd::get{key});
  });
  r.add("set", [](Gen& g, Pair& p) {
    std::string const key = g.key("s"), v = string_value(g);
    cmd::set c{.key = key, .value = v};
    set_options(g, c);
    return p.compare(c);
  });
  r.add("set_get", [](Gen& g, Pair& p) {
    std::string const key = g.key("s"), v = string_value(g);
    cmd::set_get c{.key = key, .value = v};
    set_options(g, c);
    return p.compare(c);
  });
  r.add("getdel", [](Gen& g, Pair& p) {
    std::string const key = g.key("s");
    return p.compare(cmd::getdel{key});
  });
  r.add("incr", [](Gen& g, Pair& p) {
    std::string const key = g.key("s");
    return p.compare(cmd::incr{key});
  });
  r.add("decr", [](Gen& g, Pair& p) {
    std::string const key = g.key("s");
    return p.compare(cmd::decr{key});
  });
  r.add("incrby", [](Gen& g, Pair& p) {
    std::string const key = g.key("s");
    return p.compare(cmd::incrby{key, g.integer()});
  });
  r.add("decrby", [](Gen& g, Pair& p) {
    std::string const key = g.key("s");
    return p.compare(cmd::decrby{key, g.integer()});  // INT64_MIN now and then: refused
  });
  r.add("incrbyfloat", [](Gen& g, Pair& p) {
    std::string const key = g.key("s");
    return p.compare(cmd::incrbyfloat{key, float_increment(g)});
  });
  r.add("mget", [](Gen& g, Pair& p) {
    auto const keys = some(g, 5, [](Gen& x) { return x.coin(80) ? x.key("s") : any_key(x); });
    return p.compare(cmd::mget{keys});
  });
  r.add("mset", [](Gen& g, Pair& p) {
    std::vector<std::pair<std::string, std::string>> pairs(1 + g.below(4));
    for (auto& [k, v] : pairs) k = g.key("s"), v = string_value(g);
    return p.compare(cmd::mset{pairs});
  });
  r.add("append", [](Gen& g, Pair& p) {
    std::string const key = g.key("s"), v = string_value(g);
    return p.compare(cmd::append{key, v});
  });
  r.add("strlen", [](Gen& g, Pair& p) {
    std::string const key = g.key("s");
    return p.compare(cmd::strlen{key});
  });

  // ---- keys ---------------------------------------------------------------------------------
  r.add("del", [](Gen& g, Pair& p) {
    auto const keys = some(g, 3, any_key);
    return p.compare(cmd::del{keys});
  });
  r.add("unlink", [](Gen& g, Pair& p) {
    auto const keys = some(g, 3, any_key);
    return p.compare(cmd::unlink{keys});
  });
  r.add("exists", [](Gen& g, Pair& p) {
    auto const keys = some(g, 6, any_key);
    return p.compare(cmd::exists{keys});
  });
  r.add("expire", [](Gen& g, Pair& p) {
    return expire_op<cmd::expire, std::chrono::seconds>(g, p, 1000);
  });
  r.add("pexpire", [](Gen& g, Pair& p) {
    return expire_op<cmd::pexpire, std::chrono::milliseconds>(g, p, 1);
  });
  r.add("ttl", [](Gen& g, Pair& p) {
    std::string const key = any_key(g);
    return compare_ttl(p, cmd::ttl{key}, 2);
  });
  r.add("pttl", [](Gen& g, Pair& p) {
    std::string const key = any_key(g);
    return compare_ttl(p, cmd::pttl{key}, 2000);
  });
  r.add("persist", [](Gen& g, Pair& p) {
    std::string const key = any_key(g);
    return p.compare(cmd::persist{key});
  });
  r.add("type", [](Gen& g, Pair& p) {
    std::string const key = any_key(g);
    return p.compare(cmd::type{key});
  });
  r.add("scan", [](Gen& g, Pair& p) {
    static std::vector<std::string> const types = {"string", "hash", "set",    "zset",
                                                   "list",   "stream", "STRING", "nope"};
    std::optional<std::string> pattern, type;
    if (g.coin(60)) pattern = key_pattern(g);
    if (g.coin(30)) type = g.pick(types);
    cmd::scan c{.count = scan_count(g)};
    if (pattern) c.match = *pattern;
    if (type) c.type = *type;
    return compare_scan(p, c);
  });
  r.add("keys", [](Gen& g, Pair& p) {
    std::string const pattern = key_pattern(g);
    return p.compare(cmd::keys{pattern}, sorted);
  });
}


}  // namespace rediskit::test
