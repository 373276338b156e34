// MemoryBackend: sorted-set commands (see engine.hpp for the rules of run() overloads).
//
// Ranges resolve to a span of ascending ranks in O(log n) (ZSet::last_where on each bound),
// then the reply walks the span from its first element (at_rank, O(log n)) in the reply's
// order. Argument errors come before the key's type is looked at, as on a server.
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/cmd/sorted_sets.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rediskit::detail::mem {

namespace zs {

/// Elements at ascending ranks [first, first + count).
struct RankSpan {
  std::size_t first = 0;
  std::size_t count = 0;
};

inline bool above_min(double s, ScoreBound const& b) noexcept {
  return b.exclusive ? s > b.value : s >= b.value;
}
inline bool below_max(double s, ScoreBound const& b) noexcept {
  return b.exclusive ? s < b.value : s <= b.value;
}

inline bool lex_above_min(std::string_view m, LexBound const& b) noexcept {
  switch (b.kind) {
    case LexBound::neg_inf:
      return true;
    case LexBound::pos_inf:
      return false;
    case LexBound::exclusive:
      return ZSet::compare_bytes(m, b.value) > 0;
    default:
      return ZSet::compare_bytes(m, b.value) >= 0;
  }
}
inline bool lex_below_max(std::string_view m, LexBound const& b) noexcept {
  switch (b.kind) {
    case LexBound::neg_inf:
      return false;
    case LexBound::pos_inf:
      return true;
    case LexBound::exclusive:
      return ZSet::compare_bytes(m, b.value) < 0;
    default:
      return ZSet::compare_bytes(m, b.value) <= 0;
  }
}

// Two prefix searches: the elements below the range, and those up to its end.
template <class Below, class UpTo>
RankSpan span_between(ZSet const& z, Below below, UpTo upto) {
  std::size_t const before = z.last_where(below).second;
  std::size_t const through = z.last_where(upto).second;
  return {before, through > before ? through - before : 0};
}

inline RankSpan score_span(ZSet const& z, ScoreBound const& min, ScoreBound const& max) {
  return span_between(
      z, [&](ZSet::Node const* n) { return !above_min(n->score, min); },
      [&](ZSet::Node const* n) { return below_max(n->score, max); });
}

inline RankSpan lex_span(ZSet const& z, LexBound const& min, LexBound const& max) {
  return span_between(
      z, [&](ZSet::Node const* n) { return !lex_above_min(n->member, min); },
      [&](ZSet::Node const* n) { return lex_below_max(n->member, max); });
}

/// start / stop ranks as ZRANGE and ZREMRANGEBYRANK read them (negative from the end, clamped).
inline RankSpan index_span(std::size_t size, std::int64_t start, std::int64_t stop) {
  auto const len = static_cast<std::int64_t>(size);
  if (start < 0) start += len;
  if (stop < 0) stop += len;
  if (start < 0) start = 0;
  if (start > stop || start >= len) return {};
  if (stop >= len) stop = len - 1;
  return {static_cast<std::size_t>(start), static_cast<std::size_t>(stop - start + 1)};
}

/// As index_span; with rev the indexes count from the highest element, so the span is
/// mirrored into ascending ranks.
inline RankSpan index_span(std::size_t size, std::int64_t start, std::int64_t stop, bool rev) {
  RankSpan s = index_span(size, start, stop);
  if (rev && s.count) s.first = size - s.first - s.count;
  return s;
}

/// Calls f(node) for the span's elements in the reply's order (rev: descending), after
/// LIMIT's offset and up to its count.
template <class F>
void walk(ZSet const& z, RankSpan s, bool rev, std::optional<RangeLimit> const& limit, F&& f) {
  std::size_t skip = 0, take = s.count;
  if (limit) {
    if (limit->offset < 0) return;
    auto const off = static_cast<std::uint64_t>(limit->offset);
    if (off >= s.count) return;
    skip = static_cast<std::size_t>(off);
    take = s.count - skip;
    if (limit->count >= 0 && static_cast<std::uint64_t>(limit->count) < take)
      take = static_cast<std::size_t>(limit->count);
  }
  if (take == 0) return;
  ZSet::Node const* n = rev ? z.at_rank(s.first + s.count - 1 - skip) : z.at_rank(s.first + skip);
  for (; n && take > 0; --take) {
    f(n);
    n = rev ? n->prev : n->next();
  }
}

/// A forward range read from its first element: one descent to it, then a walk that stops at
/// the range's end or at LIMIT's count, where the rank path (span_between, at_rank) descends
/// three times. Prefix reads and first pages take it (a 3-million-member index: each descent is
/// some 60 cache misses). False, having done nothing, for a reverse range or a LIMIT offset.
template <class Below, class Within, class F>
bool walk_forward(ZSet const& z, Below below, Within within, bool rev,
                  std::optional<RangeLimit> const& limit, F&& f) {
  if (rev || (limit && limit->offset != 0)) return false;
  std::int64_t left = limit && limit->count >= 0 ? limit->count : -1;  // -1: no bound
  if (left == 0) return true;
  ZSet::Node const* n = z.last_where(below).first;
  for (n = n ? n->next() : z.first(); n && left != 0 && within(n); n = n->next()) {
    f(n);
    if (left > 0) --left;
  }
  return true;
}

/// The elements between two lex bounds, in the reply's order, after LIMIT.
template <class F>
void walk_lex(ZSet const& z, LexBound const& min, LexBound const& max, bool rev,
              std::optional<RangeLimit> const& limit, F&& f) {
  if (walk_forward(
          z, [&](ZSet::Node const* n) { return !lex_above_min(n->member, min); },
          [&](ZSet::Node const* n) { return lex_below_max(n->member, max); }, rev, limit, f))
    return;
  walk(z, lex_span(z, min, max), rev, limit, f);
}

inline std::vector<std::string> members_of(ZSet const* z, RankSpan s, bool rev,
                                           std::optional<RangeLimit> const& limit = {}) {
  std::vector<std::string> out;
  if (!z) return out;
  walk(*z, s, rev, limit, [&](ZSet::Node const* n) { out.push_back(n->member); });
  return out;
}

inline ScoredMembers scored_of(ZSet const* z, RankSpan s, bool rev,
                               std::optional<RangeLimit> const& limit = {}) {
  ScoredMembers out;
  if (!z) return out;
  walk(*z, s, rev, limit, [&](ZSet::Node const* n) { out.emplace_back(n->member, n->score); });
  return out;
}

/// ZADD's option checks, in the server's order. False (ctx failed) when refused.
inline bool zadd_options_ok(Ctx& ctx, bool nx, bool xx, bool gt, bool lt) {
  if (nx && xx) return ctx.fail("ERR XX and NX options at the same time are not compatible");
  if ((gt && nx) || (lt && nx) || (gt && lt))
    return ctx.fail("ERR GT, LT, and/or NX options at the same time are not compatible");
  return true;
}

inline bool bounds_ok(Ctx& ctx, ScoreBound const& min, ScoreBound const& max) {
  if (std::isnan(min.value) || std::isnan(max.value))
    return ctx.fail("ERR min or max is not a float");
  return true;
}

// ZADD ... INCR and ZINCRBY: the new score, or nullopt when a condition refused it.
inline std::optional<double> incr(Ctx& ctx, std::string_view key, double by,
                                  std::string_view member, bool nx, bool xx, bool gt, bool lt) {
  if (std::isnan(by)) return ctx.fail("ERR value is not a valid float"), std::nullopt;
  ZSet* z = xx ? ctx.db.write<ZSet>(ctx, key) : ctx.db.create<ZSet>(ctx, key);
  if (!z) return std::nullopt;
  ZSet::Node const* n = z->find(member);
  if (!n) {
    if (xx) return std::nullopt;
    z->insert(member, by);
    return by;
  }
  if (nx) return std::nullopt;
  double const score = n->score + by;
  if (std::isnan(score)) return ctx.fail("ERR resulting score is not a number (NaN)"), std::nullopt;
  if ((lt && score >= n->score) || (gt && score <= n->score)) return std::nullopt;
  if (score != n->score) z->set_score(n, score);
  return score;
}

// ZPOPMIN / ZPOPMAX.
inline ScoredMembers pop(Ctx& ctx, std::string_view key, std::optional<std::int64_t> count,
                         bool max) {
  if (count && *count < 0)
    return ctx.fail("ERR value is out of range, must be positive"), ScoredMembers{};
  ZSet* z = ctx.db.write<ZSet>(ctx, key);
  if (!z) return {};
  std::size_t const want = count ? static_cast<std::size_t>(std::min<std::uint64_t>(
                                       static_cast<std::uint64_t>(*count), z->size()))
                                 : std::min<std::size_t>(1, z->size());
  ScoredMembers out;
  out.reserve(want);
  z->erase_ranks(max ? z->size() - want : 0, want,
                 [&](std::string&& m, double s) { out.emplace_back(std::move(m), s); });
  if (max) std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace zs

inline std::int64_t run(Ctx& ctx, cmd::zadd const& c) {
  if (c.members.empty()) return ctx.fail("ERR syntax error"), 0;
  if (!zs::zadd_options_ok(ctx, c.nx, c.xx, c.gt, c.lt)) return 0;
  bool nan = false;
  c.members.for_each([&](ScoreMember sm) { nan = nan || std::isnan(sm.score); });
  if (nan) return ctx.fail("ERR value is not a valid float"), 0;
  ZSet* z = c.xx ? ctx.db.write<ZSet>(ctx, c.key) : ctx.db.create<ZSet>(ctx, c.key);
  if (!z) return 0;
  std::int64_t added = 0, updated = 0;
  c.members.for_each([&](ScoreMember sm) {
    ZSet::Node const* n = z->find(sm.member);
    if (!n) {
      if (c.xx) return;
      z->insert(sm.member, sm.score);
      ++added;
      return;
    }
    if (c.nx) return;
    if ((c.lt && sm.score >= n->score) || (c.gt && sm.score <= n->score)) return;
    if (sm.score != n->score) {
      z->set_score(n, sm.score);
      ++updated;
    }
  });
  return c.ch ? added + updated : added;
}

inline std::optional<double> run(Ctx& ctx, cmd::zadd_incr const& c) {
  if (!zs::zadd_options_ok(ctx, c.nx, c.xx, c.gt, c.lt)) return std::nullopt;
  return zs::incr(ctx, c.key, c.increment, c.member, c.nx, c.xx, c.gt, c.lt);
}

inline double run(Ctx& ctx, cmd::zincrby const& c) {
  return zs::incr(ctx, c.key, c.increment, c.member, false, false, false, false).value_or(0);
}

inline std::int64_t run(Ctx& ctx, cmd::zrem const& c) {
  ZSet* z = ctx.db.write<ZSet>(ctx, c.key);
  if (!z) return 0;
  std::int64_t n = 0;
  c.members.for_each([&](std::string_view m) { n += z->erase(m) ? 1 : 0; });
  return n;
}

inline std::optional<double> run(Ctx& ctx, cmd::zscore const& c) {
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  if (!z) return std::nullopt;
  if (ZSet::Node const* n = z->find(c.member)) return n->score;
  return std::nullopt;
}

inline std::vector<std::optional<double>> run(Ctx& ctx, cmd::zmscore const& c) {
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  if (ctx.failed()) return {};
  std::vector<std::optional<double>> out;
  out.reserve(c.members.size());
  c.members.for_each([&](std::string_view m) {
    ZSet::Node const* n = z ? z->find(m) : nullptr;
    out.push_back(n ? std::optional<double>(n->score) : std::nullopt);
  });
  return out;
}

inline std::optional<std::int64_t> run(Ctx& ctx, cmd::zrank const& c) {
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  ZSet::Node const* n = z ? z->find(c.member) : nullptr;
  if (!n) return std::nullopt;
  return static_cast<std::int64_t>(z->rank_of(n));
}

inline std::optional<std::int64_t> run(Ctx& ctx, cmd::zrevrank const& c) {
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  ZSet::Node const* n = z ? z->find(c.member) : nullptr;
  if (!n) return std::nullopt;
  return static_cast<std::int64_t>(z->size() - 1 - z->rank_of(n));
}

inline std::int64_t run(Ctx& ctx, cmd::zcard const& c) {
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  return z ? static_cast<std::int64_t>(z->size()) : 0;
}

inline std::int64_t run(Ctx& ctx, cmd::zcount const& c) {
  if (!zs::bounds_ok(ctx, c.min, c.max)) return 0;
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  return z ? static_cast<std::int64_t>(zs::score_span(*z, c.min, c.max).count) : 0;
}

inline std::vector<std::string> run(Ctx& ctx, cmd::zrange const& c) {
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  if (!z) return {};
  return zs::members_of(z, zs::index_span(z->size(), c.start, c.stop, c.rev), c.rev);
}

inline ScoredMembers run(Ctx& ctx, cmd::zrange_withscores const& c) {
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  if (!z) return {};
  return zs::scored_of(z, zs::index_span(z->size(), c.start, c.stop, c.rev), c.rev);
}

inline std::vector<std::string> run(Ctx& ctx, cmd::zrange_by_score const& c) {
  if (!zs::bounds_ok(ctx, c.min, c.max)) return {};
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  if (!z) return {};
  return zs::members_of(z, zs::score_span(*z, c.min, c.max), c.rev, c.limit);
}

inline ScoredMembers run(Ctx& ctx, cmd::zrange_by_score_withscores const& c) {
  if (!zs::bounds_ok(ctx, c.min, c.max)) return {};
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  if (!z) return {};
  return zs::scored_of(z, zs::score_span(*z, c.min, c.max), c.rev, c.limit);
}

/// ZRANGE BYLEX's members as views (Engine::exec_view; run() copies them).
inline std::vector<std::string_view> view_of(Ctx& ctx, cmd::zrange_by_lex const& c) {
  std::vector<std::string_view> out;
  ZSet const* z = ctx.db.read<ZSet>(ctx, c.key);
  if (!z) return out;
  zs::walk_lex(*z, c.min, c.max, c.rev, c.limit,
               [&](ZSet::Node const* n) { out.emplace_back(n->member); });
  return out;
}

inline std::vector<std::string> run(Ctx& ctx, cmd::zrange_by_lex const& c) {
  auto const views = view_of(ctx, c);
  return {views.begin(), views.end()};
}

inline std::int64_t run(Ctx& ctx, cmd::zremrangebyscore const& c) {
  if (!zs::bounds_ok(ctx, c.min, c.max)) return 0;
  ZSet* z = ctx.db.write<ZSet>(ctx, c.key);
  if (!z) return 0;
  zs::RankSpan const s = zs::score_span(*z, c.min, c.max);
  return static_cast<std::int64_t>(z->erase_ranks(s.first, s.count, [](std::string&&, double) {}));
}

inline std::int64_t run(Ctx& ctx, cmd::zremrangebyrank const& c) {
  ZSet* z = ctx.db.write<ZSet>(ctx, c.key);
  if (!z) return 0;
  zs::RankSpan const s = zs::index_span(z->size(), c.start, c.stop);
  return static_cast<std::int64_t>(z->erase_ranks(s.first, s.count, [](std::string&&, double) {}));
}

inline ScoredMembers run(Ctx& ctx, cmd::zpopmin const& c) {
  return zs::pop(ctx, c.key, c.count, false);
}

inline ScoredMembers run(Ctx& ctx, cmd::zpopmax const& c) {
  return zs::pop(ctx, c.key, c.count, true);
}

}  // namespace rediskit::detail::mem
