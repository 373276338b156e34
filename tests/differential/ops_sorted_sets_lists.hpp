// Differential operations: sorted-set and list commands on MemoryBackend and on a real
// redis-server (see support/differential.hpp for how they are played).
//
// Sorted sets: scores from Gen::score() (small integers, so many ties ordered by member bytes,
// fractions, infinities), now and then NaN (refused). Some ZADDs add a hundred members or
// members longer than 64 bytes, so that the server leaves its compact encoding for its skip
// list (the two order ties alike, but the code paths differ). Ranges draw inclusive and
// exclusive bounds, infinities, REV with LIMIT, negative and extreme indexes.
//
// Lex ranges are only defined when every member has the same score: they get keys of their own
// ("zl:N", never from the shared pool), which only ever see ZADD with score 0 and removals.
//
// Lists: ends, counts (negative ones refused), indexes (negative and extreme), LREM over a
// small pool of values so that it finds matches, LMOVE between list keys. BLMOVE runs as a
// blocking command only when its source holds data (else both backends would sit out a
// timeout), and otherwise inside a transaction, where it never waits.
#pragma once

#include "support/differential.hpp"

#include <rediskit/commands.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit::test {


namespace zl_ops {

using namespace std::chrono_literals;

/// A sorted-set member: Gen's names, small integers as text, now and then a long one.
inline std::string member(Gen& g) {
  switch (g.below(10)) {
    case 0:
      return std::to_string(g.between(-3, 12));
    case 1:
      return std::string(65 + g.below(3), static_cast<char>('m' + g.below(2)));
    default:
      return g.field();
  }
}

/// A score: Gen's, and now and then NaN (refused) or -0.
inline double score(Gen& g) {
  switch (g.below(40)) {
    case 0:
      return std::numeric_limits<double>::quiet_NaN();
    case 1:
      return -0.0;
    default:
      return g.score();
  }
}

/// A score bound: a score of the sets, inclusive or exclusive, or an infinity.
inline ScoreBound score_bound(Gen& g) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  ScoreBound b;
  switch (g.below(10)) {
    case 0:
      b.value = -inf;
      break;
    case 1:
      b.value = inf;
      break;
    case 2:
      b.value = g.coin(10) ? std::numeric_limits<double>::quiet_NaN() : 0.5;
      break;
    default:
      b.value = static_cast<double>(g.between(-6, 6));
      break;
  }
  b.exclusive = g.coin(35);
  return b;
}

/// Members of the lex keys: prefixes of each other, a NUL, a high byte.
inline std::string lex_member(Gen& g) {
  static std::vector<std::string> const names = {
      "",     "a", "ab", "abc", "abd", "b", "ba", "c", std::string("\0", 1), std::string("a\0", 2),
      "\xff", "B", "zz"};
  return g.pick(names);
}

/// A lex bound over those members (the value is a view into `storage`).
inline LexBound lex_bound(Gen& g, std::string& storage) {
  switch (g.below(8)) {
    case 0:
      return LexBound::lowest();
    case 1:
      return LexBound::highest();
    default:
      storage = lex_member(g);
      return g.coin() ? LexBound::incl(storage) : LexBound::excl(storage);
  }
}

inline std::string lex_key(Gen& g) {
  return "zl:" + std::to_string(g.below(5));
}

/// LIMIT: none, or an offset and count with edge cases (negative offset, negative count).
inline std::optional<RangeLimit> limit(Gen& g) {
  if (g.coin(40)) return std::nullopt;
  return RangeLimit{g.coin(10) ? -1 : g.between(0, 5), g.between(-2, 5)};
}

/// An index: mostly small, of either sign; now and then at the 64-bit edges.
inline std::int64_t index(Gen& g) {
  if (g.coin(8)) return g.integer();
  return g.between(-8, 8);
}

/// A list value: a small pool (so that LREM finds some), or any of Gen's values.
inline std::string list_value(Gen& g) {
  static std::vector<std::string> const pool = {"a", "b", "c", "", std::string("\0", 1)};
  return g.coin(70) ? g.pick(pool) : g.value();
}

inline ListEnd end(Gen& g) {
  return g.coin() ? ListEnd::left : ListEnd::right;
}

/// 1 to `n` elements drawn with `draw`.
template <class T, class Draw>
std::vector<T> some(Gen& g, std::size_t n, Draw draw) {
  std::vector<T> out(1 + g.below(n));
  for (auto& s : out)
    s = draw(g);
  return out;
}

/// (score, member) pairs that own their members (ZADD takes them as an ArgList).
using Scored = std::pair<double, std::string>;

}  // namespace zl_ops

inline void register_sorted_sets_lists_ops(OpRegistry& r) {
  using namespace zl_ops;

  // ---- sorted sets -------------------------------------------------------------------------

  r.add("zadd", [](Gen& g, Pair& p) {
    std::string key = g.key("z");
    auto members = some<Scored>(g, 4, [](Gen& g) { return Scored{score(g), member(g)}; });
    // Each option now and then: the refused combinations included.
    return p.compare(cmd::zadd{.key = key,
                               .members = members,
                               .nx = g.coin(15),
                               .xx = g.coin(15),
                               .gt = g.coin(15),
                               .lt = g.coin(15),
                               .ch = g.coin(30)});
  });
  r.add("zadd_many", [](Gen& g, Pair& p) {
    // A few of these take a set beyond the server's compact encoding (128 members): its skip
    // list. Removals bring sets back below (the server does not convert back: both kinds stay
    // covered).
    std::string key = g.key("z");
    std::vector<Scored> members;
    std::size_t const n = 20 + g.below(60);
    for (std::size_t i = 0; i < n; ++i)
      members.emplace_back(g.between(-5, 5), "m" + std::to_string(g.below(300)));
    return p.compare(cmd::zadd{.key = key, .members = members, .ch = g.coin()});
  });
  r.add("zadd_incr", [](Gen& g, Pair& p) {
    std::string key = g.key("z"), m = member(g);
    return p.compare(cmd::zadd_incr{.key = key,
                                    .increment = score(g),
                                    .member = m,
                                    .nx = g.coin(15),
                                    .xx = g.coin(15),
                                    .gt = g.coin(15),
                                    .lt = g.coin(15)});
  });
  r.add("zincrby", [](Gen& g, Pair& p) {
    std::string key = g.key("z"), m = member(g);
    return p.compare(cmd::zincrby{.key = key, .increment = score(g), .member = m});
  });
  r.add("zrem", [](Gen& g, Pair& p) {
    std::string key = g.key("z");
    auto members = some<std::string>(g, 3, member);
    return p.compare(cmd::zrem{.key = key, .members = members});
  });
  r.add("zscore", [](Gen& g, Pair& p) {
    std::string key = g.key("z"), m = member(g);
    return p.compare(cmd::zscore{key, m});
  });
  r.add("zmscore", [](Gen& g, Pair& p) {
    std::string key = g.key("z");
    auto members = some<std::string>(g, 4, member);
    return p.compare(cmd::zmscore{.key = key, .members = members});
  });
  r.add("zrank", [](Gen& g, Pair& p) {
    std::string key = g.key("z"), m = member(g);
    return p.compare(cmd::zrank{key, m});
  });
  r.add("zrevrank", [](Gen& g, Pair& p) {
    std::string key = g.key("z"), m = member(g);
    return p.compare(cmd::zrevrank{key, m});
  });
  r.add("zcard", [](Gen& g, Pair& p) {
    std::string key = g.key("z");
    return p.compare(cmd::zcard{key});
  });
  r.add("zcount", [](Gen& g, Pair& p) {
    std::string key = g.key("z");
    return p.compare(cmd::zcount{.key = key, .min = score_bound(g), .max = score_bound(g)});
  });
  r.add("zrange", [](Gen& g, Pair& p) {
    std::string key = g.key("z");
    if (g.coin())
      return p.compare(
          cmd::zrange{.key = key, .start = index(g), .stop = index(g), .rev = g.coin()});
    return p.compare(
        cmd::zrange_withscores{.key = key, .start = index(g), .stop = index(g), .rev = g.coin()});
  });
  r.add("zrange_by_score", [](Gen& g, Pair& p) {
    std::string key = g.key("z");
    ScoreBound const min = score_bound(g), max = score_bound(g);
    if (g.coin())
      return p.compare(cmd::zrange_by_score{
          .key = key, .min = min, .max = max, .rev = g.coin(), .limit = limit(g)});
    return p.compare(cmd::zrange_by_score_withscores{
        .key = key, .min = min, .max = max, .rev = g.coin(), .limit = limit(g)});
  });
  r.add("zremrangebyscore", [](Gen& g, Pair& p) {
    std::string key = g.key("z");
    return p.compare(
        cmd::zremrangebyscore{.key = key, .min = score_bound(g), .max = score_bound(g)});
  });
  r.add("zremrangebyrank", [](Gen& g, Pair& p) {
    std::string key = g.key("z");
    return p.compare(cmd::zremrangebyrank{.key = key, .start = index(g), .stop = index(g)});
  });
  r.add("zpop", [](Gen& g, Pair& p) {
    std::string key = g.key("z");
    std::optional<std::int64_t> count;
    if (g.coin(70)) count = g.between(-1, 5);
    if (g.coin()) return p.compare(cmd::zpopmin{key, count});
    return p.compare(cmd::zpopmax{key, count});
  });

  // ---- lex ranges: keys whose members all have score 0 -------------------------------------

  r.add("zadd_lex", [](Gen& g, Pair& p) {
    std::string key = lex_key(g);
    auto members = some<Scored>(g, 4, [](Gen& g) { return Scored{0, lex_member(g)}; });
    return p.compare(cmd::zadd{
        .key = key, .members = members, .nx = g.coin(10), .xx = g.coin(10), .ch = g.coin(30)});
  });
  r.add("zrem_lex", [](Gen& g, Pair& p) {
    std::string key = lex_key(g);
    auto members = some<std::string>(g, 2, lex_member);
    return p.compare(cmd::zrem{.key = key, .members = members});
  });
  r.add("zrange_by_lex", [](Gen& g, Pair& p) {
    std::string key = lex_key(g), a, b;
    LexBound const min = lex_bound(g, a), max = lex_bound(g, b);
    return p.compare(
        cmd::zrange_by_lex{.key = key, .min = min, .max = max, .rev = g.coin(), .limit = limit(g)});
  });
  r.add("zrange_lex_keys", [](Gen& g, Pair& p) {
    std::string key = lex_key(g);
    if (g.coin(30)) return p.compare(cmd::zpopmin{key, g.between(0, 2)});
    return p.compare(cmd::zrange_withscores{.key = key, .rev = g.coin()});
  });

  // ---- lists -------------------------------------------------------------------------------

  r.add("push", [](Gen& g, Pair& p) {
    std::string key = g.key("l");
    auto values = some<std::string>(g, 6, list_value);
    if (g.coin()) return p.compare(cmd::lpush{.key = key, .values = values});
    return p.compare(cmd::rpush{.key = key, .values = values});
  });
  r.add("pop", [](Gen& g, Pair& p) {
    std::string key = g.key("l");
    switch (g.below(4)) {
      case 0:
        return p.compare(cmd::lpop{key});
      case 1:
        return p.compare(cmd::rpop{key});
      case 2:
        return p.compare(cmd::lpop_count{key, g.between(-1, 4)});
      default:
        return p.compare(cmd::rpop_count{key, g.between(-1, 4)});
    }
  });
  r.add("lrange", [](Gen& g, Pair& p) {
    std::string key = g.key("l");
    return p.compare(cmd::lrange{.key = key, .start = index(g), .stop = index(g)});
  });
  r.add("ltrim", [](Gen& g, Pair& p) {
    std::string key = g.key("l");
    // Mostly keep something: trimming to nothing empties the lists too fast.
    std::int64_t const start = g.coin(70) ? g.between(-6, 1) : index(g);
    std::int64_t const stop = g.coin(70) ? g.between(-1, 8) : index(g);
    return p.compare(cmd::ltrim{.key = key, .start = start, .stop = stop});
  });
  r.add("llen", [](Gen& g, Pair& p) {
    std::string key = g.key("l");
    return p.compare(cmd::llen{key});
  });
  r.add("lrem", [](Gen& g, Pair& p) {
    std::string key = g.key("l"), v = list_value(g);
    std::int64_t const count = g.coin(5) ? g.integer() : g.between(-3, 3);
    return p.compare(cmd::lrem{.key = key, .count = count, .element = v});
  });
  r.add("lindex_lset", [](Gen& g, Pair& p) {
    std::string key = g.key("l"), v = list_value(g);
    if (g.coin()) return p.compare(cmd::lindex{key, index(g)});
    return p.compare(cmd::lset{.key = key, .index = index(g), .element = v});
  });
  r.add("lmove", [](Gen& g, Pair& p) {
    std::string src = g.key("l"), dst = g.coin(20) ? src : g.key("l");
    return p.compare(cmd::lmove{src, dst, end(g), end(g)});
  });
  r.add("blmove", [](Gen& g, Pair& p) {
    std::string src = g.key("l"), dst = g.coin(20) ? src : g.key("l");
    cmd::blmove const c{.source = src,
                        .destination = dst,
                        .from = end(g),
                        .to = end(g),
                        .timeout = g.coin(10) ? -5ms : 2s};
    // Waits only when the source holds data on both (else: inside a transaction, no wait).
    auto [ec1, n1] = p.mem.exec(cmd::llen{src});
    auto [ec2, n2] = p.redis.exec(cmd::llen{src});
    if (!ec1 && !ec2 && n1 > 0 && n2 > 0) return p.compare(c);
    return p.compare(rediskit::transaction(c, cmd::llen{dst}));
  });
}


}  // namespace rediskit::test
