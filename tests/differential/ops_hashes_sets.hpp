// Differential operations: hash and set commands on MemoryBackend and on a real redis-server
// (see support/differential.hpp for how they are played).
//
// Unordered replies are compared sorted. HSCAN / SSCAN are compared as whole iterations: each
// backend is scanned from cursor 0 until it answers 0 (page sizes and cursors legitimately
// differ), and the sorted, de-duplicated unions must be equal, or both must fail alike.
#pragma once

#include "support/differential.hpp"

#include <rediskit/commands.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit::test {


namespace hs_ops {

/// A hash field or set member: the shared pool of names, or a small integer as text (a set
/// of only those is an intset on the server, which scans and orders differently).
inline std::string member(Gen& g) {
  if (g.coin(30)) return std::to_string(g.between(-3, 12));
  return g.field();
}

/// A hash value: Gen's values, plus numbers HINCRBY / HINCRBYFLOAT read or refuse.
inline std::string hash_value(Gen& g) {
  // clang-format off
  static std::vector<std::string> const numeric = {
      "0", "-0", "007", "+1", " 1", "1.5", "1e3", "0x1A", "inf", "-inf", "nan", "1e5000",
      "9223372036854775807", "-9223372036854775808", "9223372036854775808", "3.0", "-2.25"};
  // clang-format on
  if (g.coin(30)) return g.pick(numeric);
  return g.value();
}

/// A pattern over field / member names (Redis glob corner cases included).
inline std::string member_pattern(Gen& g) {
  // clang-format off
  static std::vector<std::string> const patterns = {
      "*", "?", "[a-c]", "[^a]", "[c-a]", "n*", "\\*", "*\\?*", "[", "[a", "\\", "**", "x y",
      "*a*", "1*", "[0-9]", "-*", "", std::string("\0", 1), "s?a*s"};
  // clang-format on
  return g.pick(patterns);
}

/// 1 to `n` distinct-or-not names drawn with `draw`.
template <class Draw>
std::vector<std::string> some(Gen& g, std::size_t n, Draw draw) {
  std::vector<std::string> out(1 + g.below(n));
  for (auto& s : out)
    s = draw(g);
  return out;
}

/// An optional COUNT: mostly none or positive, now and then 0 or negative (refused).
inline std::optional<std::int64_t> scan_count(Gen& g) {
  switch (g.below(10)) {
    case 0:
      return std::nullopt;
    case 1:
      return g.between(-2, 0);
    case 2:
      return 1000;
    default:
      return g.between(1, 5);
  }
}

/// A whole HSCAN / SSCAN iteration on one backend: {error, sorted unique union}.
template <class Fx, class C, class Get>
auto scan_all(Fx& f, C c, Get get) {
  using Item = typename std::remove_cvref_t<decltype(get(std::declval<reply_t<C>&>()))>::value_type;
  std::vector<Item> all;
  c.cursor = 0;
  for (int steps = 0; steps < 100000; ++steps) {
    auto [ec, page] = f.exec(c);
    if (ec) return std::pair{ec, std::vector<Item>{}};
    auto& items = get(page);
    all.insert(all.end(), items.begin(), items.end());
    c.cursor = page.cursor;
    if (c.cursor == 0) break;
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return std::pair{boost::system::error_code{}, std::move(all)};
}

template <class C, class Get>
std::string compare_scan(Pair& p, C const& c, Get get) {
  auto [ec1, r1] = scan_all(p.mem, c, get);
  auto [ec2, r2] = scan_all(p.redis, c, get);
  if (ec1 == ec2 && (ec1 || r1 == r2)) return {};
  auto side = [](boost::system::error_code ec, auto const& r) {
    return ec ? "error " + ec.message() : to_text(r);
  };
  return describe_command(c) + " (to cursor 0)\n    memory: " + side(ec1, r1) +
         "\n    redis:  " + side(ec2, r2);
}

}  // namespace hs_ops

inline void register_hashes_sets_ops(OpRegistry& r) {
  using namespace hs_ops;

  // ---- hashes -------------------------------------------------------------------------------
  r.add("hset", [](Gen& g, Pair& p) {
    std::string const key = g.key("h");
    std::vector<std::pair<std::string, std::string>> fields(1 + g.below(4));
    for (auto& [f, v] : fields)
      f = member(g), v = hash_value(g);
    return p.compare(cmd::hset{.key = key, .fields = fields});
  });
  r.add("hsetnx", [](Gen& g, Pair& p) {
    std::string const key = g.key("h"), f = member(g), v = hash_value(g);
    return p.compare(cmd::hsetnx{key, f, v});
  });
  r.add("hget", [](Gen& g, Pair& p) {
    std::string const key = g.key("h"), f = member(g);
    return p.compare(cmd::hget{key, f});
  });
  r.add("hmget", [](Gen& g, Pair& p) {
    std::string const key = g.key("h");
    auto const fields = some(g, 5, member);
    return p.compare(cmd::hmget{.key = key, .fields = fields});
  });
  r.add("hgetall", [](Gen& g, Pair& p) {
    std::string const key = g.key("h");
    return p.compare(cmd::hgetall{key}, sorted);
  });
  r.add("hdel", [](Gen& g, Pair& p) {
    std::string const key = g.key("h");
    auto const fields = some(g, 3, member);
    return p.compare(cmd::hdel{.key = key, .fields = fields});
  });
  r.add("hincrby", [](Gen& g, Pair& p) {
    std::string const key = g.key("h"), f = member(g);
    return p.compare(cmd::hincrby{key, f, g.integer()});
  });
  r.add("hincrbyfloat", [](Gen& g, Pair& p) {
    std::string const key = g.key("h"), f = member(g);
    double by = g.score();
    switch (g.below(12)) {
      case 0:
        by = std::numeric_limits<double>::quiet_NaN();
        break;
      case 1:
        by = g.coin() ? 1.5e308 : -1.5e308;
        break;  // beyond double after two
      case 2:
        by = 0.1 * static_cast<double>(g.between(-9, 9));
        break;
      case 3:
        by = 1e-7 * static_cast<double>(g.between(1, 99));
        break;
      default:
        break;
    }
    return p.compare(cmd::hincrbyfloat{key, f, by});
  });
  r.add("hexists", [](Gen& g, Pair& p) {
    std::string const key = g.key("h"), f = member(g);
    return p.compare(cmd::hexists{key, f});
  });
  r.add("hlen", [](Gen& g, Pair& p) {
    std::string const key = g.key("h");
    return p.compare(cmd::hlen{key});
  });
  r.add("hkeys", [](Gen& g, Pair& p) {
    std::string const key = g.key("h");
    return p.compare(cmd::hkeys{key}, sorted);
  });
  r.add("hvals", [](Gen& g, Pair& p) {
    std::string const key = g.key("h");
    return p.compare(cmd::hvals{key}, sorted);
  });
  r.add("hscan", [](Gen& g, Pair& p) {
    std::string const key = g.key("h");
    std::optional<std::string> const pattern =
        g.coin(60) ? std::optional(member_pattern(g)) : std::nullopt;
    cmd::hscan c{.key = key, .count = scan_count(g)};
    if (pattern) c.match = *pattern;
    return compare_scan(
        p, c, [](auto& page) -> auto& { return page.entries; });
  });

  // ---- sets ---------------------------------------------------------------------------------
  r.add("sadd", [](Gen& g, Pair& p) {
    std::string const key = g.key("set");
    auto const members = some(g, 4, member);
    return p.compare(cmd::sadd{.key = key, .members = members});
  });
  r.add("srem", [](Gen& g, Pair& p) {
    std::string const key = g.key("set");
    auto const members = some(g, 3, member);
    return p.compare(cmd::srem{.key = key, .members = members});
  });
  r.add("smembers", [](Gen& g, Pair& p) {
    std::string const key = g.key("set");
    return p.compare(cmd::smembers{key}, sorted);
  });
  r.add("sismember", [](Gen& g, Pair& p) {
    std::string const key = g.key("set"), m = member(g);
    return p.compare(cmd::sismember{key, m});
  });
  r.add("smismember", [](Gen& g, Pair& p) {
    std::string const key = g.key("set");
    auto const members = some(g, 5, member);
    return p.compare(cmd::smismember{.key = key, .members = members});
  });
  r.add("scard", [](Gen& g, Pair& p) {
    std::string const key = g.key("set");
    return p.compare(cmd::scard{key});
  });
  r.add("sinter", [](Gen& g, Pair& p) {
    auto const keys = some(g, 3, [](Gen& x) { return x.key("set"); });
    return p.compare(cmd::sinter{.keys = keys}, sorted);
  });
  r.add("sunion", [](Gen& g, Pair& p) {
    auto const keys = some(g, 3, [](Gen& x) { return x.key("set"); });
    return p.compare(cmd::sunion{.keys = keys}, sorted);
  });
  r.add("sdiff", [](Gen& g, Pair& p) {
    auto const keys = some(g, 3, [](Gen& x) { return x.key("set"); });
    return p.compare(cmd::sdiff{.keys = keys}, sorted);
  });
  r.add("sintercard", [](Gen& g, Pair& p) {
    auto const keys = some(g, 3, [](Gen& x) { return x.key("set"); });
    std::optional<std::int64_t> limit;
    if (g.coin(50)) limit = g.between(-1, 4);
    return p.compare(cmd::sintercard{.keys = keys, .limit = limit});
  });
  r.add("sscan", [](Gen& g, Pair& p) {
    std::string const key = g.key("set");
    std::optional<std::string> const pattern =
        g.coin(60) ? std::optional(member_pattern(g)) : std::nullopt;
    cmd::sscan c{.key = key, .count = scan_count(g)};
    if (pattern) c.match = *pattern;
    return compare_scan(
        p, c, [](auto& page) -> auto& { return page.members; });
  });
}


}  // namespace rediskit::test
