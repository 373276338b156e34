// rediskit typed commands: sorted sets (ZADD, ZINCRBY, ZSCORE, ZRANK, ZRANGE, ZPOPMIN, ...).
// Each command is an aggregate of views: see rediskit/command.hpp for the rules.
//
// Order: a sorted set is ordered by score, and members with equal scores by their bytes
// (compared as unsigned bytes, a prefix before the longer member): "a" < "b" < "ba". Ranks are
// 0-based positions in that order (ZREVRANK and REV: in the reverse order). Scores are doubles;
// -inf and +inf are valid scores, NaN never is. -0.0 and 0.0 are the same score.
//
// Ranges come in three kinds, each its own command (the server's ZRANGE with BYSCORE / BYLEX):
//  - by index (zrange): start and stop ranks, both included, negative counting from the end
//    (-1 is the last element);
//  - by score (zrange_by_score, zcount, zremrangebyscore): ScoreBound min and max;
//  - by member bytes (zrange_by_lex): LexBound min and max. Only meaningful when every member
//    of the set has the same score (a set used as an ordered index of strings): with mixed
//    scores, which elements come back is unspecified.
#pragma once

#include <rediskit/arg_list.hpp>

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

/// One end of a score range: `value` itself included, or excluded (`exclusive`). The server
/// writes these as "1.5", "(1.5", "-inf", "+inf". For min, exclusive means "greater than";
/// for max, "less than". A range whose min is above its max (or equal, with either end
/// exclusive) is empty. A NaN bound is refused ("ERR min or max is not a float").
///
///   cmd::zcount{.key = k, .min = ScoreBound::excl(10), .max = ScoreBound::pos_inf()}
///   cmd::zcount{.key = k, .min = {1}, .max = {5}}   // 1 <= score <= 5
struct ScoreBound {
  double value = 0;
  bool exclusive = false;

  static constexpr ScoreBound incl(double v) noexcept { return {v, false}; }
  static constexpr ScoreBound excl(double v) noexcept { return {v, true}; }
  static constexpr ScoreBound neg_inf() noexcept { return {-kInf, false}; }
  static constexpr ScoreBound pos_inf() noexcept { return {kInf, false}; }

  /// Reads the server's form ("1.5", "(1.5", "-inf", "+inf", "inf", "(3"), as ported code has
  /// it; nullopt when it is not one (NaN included).
  static std::optional<ScoreBound> parse(std::string_view s) noexcept {
    ScoreBound b;
    if (!s.empty() && s.front() == '(') {
      b.exclusive = true;
      s.remove_prefix(1);
    }
    if (!s.empty() && s.front() == '+') {
      s.remove_prefix(1);
      if (!s.empty() && (s.front() == '+' || s.front() == '-')) return std::nullopt;
    }
    auto const r = std::from_chars(s.data(), s.data() + s.size(), b.value);
    if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || std::isnan(b.value))
      return std::nullopt;
    return b;
  }

  /// The server's form of this bound.
  std::string text() const {
    char buf[40];
    return std::string(text_into(buf));
  }

  /// Writes the server's form into `buf` (40 bytes at least) and returns a view of it.
  std::string_view text_into(char* buf) const noexcept {
    char* p = buf;
    if (exclusive) *p++ = '(';
    if (std::isnan(value)) {
      std::memcpy(p, "nan", 3);
      p += 3;
    } else if (std::isinf(value)) {
      std::memcpy(p, value > 0 ? "+inf" : "-inf", 4);
      p += 4;
    } else {
      p = std::to_chars(p, buf + 40, value).ptr;
    }
    return {buf, static_cast<std::size_t>(p - buf)};
  }

  friend bool operator==(ScoreBound const&, ScoreBound const&) = default;

 private:
  static constexpr double kInf = std::numeric_limits<double>::infinity();
};

/// One end of a member (lex) range: a member included ("[a"), excluded ("(a"), or one of the
/// ends of every range ("-": below every member, "+": above every member). Compared as
/// unsigned bytes. `value` is a view: it must outlive the command.
///
///   cmd::zrange_by_lex{.key = k, .min = LexBound::incl("user:"), .max = LexBound::excl("user;")}
struct LexBound {
  enum Kind : unsigned char { inclusive, exclusive, neg_inf, pos_inf };
  std::string_view value{};
  Kind kind = inclusive;

  static constexpr LexBound incl(std::string_view v) noexcept { return {v, inclusive}; }
  static constexpr LexBound excl(std::string_view v) noexcept { return {v, exclusive}; }
  /// "-" and "+".
  static constexpr LexBound lowest() noexcept { return {{}, neg_inf}; }
  static constexpr LexBound highest() noexcept { return {{}, pos_inf}; }

  /// Reads the server's form ("[a", "(a", "-", "+"); nullopt otherwise. The value is a view
  /// into `s`.
  static std::optional<LexBound> parse(std::string_view s) noexcept {
    if (s == "-") return lowest();
    if (s == "+") return highest();
    if (s.empty() || (s.front() != '[' && s.front() != '(')) return std::nullopt;
    return LexBound{s.substr(1), s.front() == '[' ? inclusive : exclusive};
  }

  /// The server's form of this bound.
  std::string text() const {
    switch (kind) {
      case neg_inf:
        return "-";
      case pos_inf:
        return "+";
      case exclusive:
        return "(" + std::string(value);
      default:
        return "[" + std::string(value);
    }
  }

  friend bool operator==(LexBound const&, LexBound const&) = default;
};

/// LIMIT offset count of a range by score or by member: skip `offset` elements of the range
/// (in the order of the reply), then return at most `count` (a negative count: all the rest).
/// A negative offset gives an empty reply.
struct RangeLimit {
  std::int64_t offset = 0;
  std::int64_t count = -1;
  friend bool operator==(RangeLimit const&, RangeLimit const&) = default;
};

/// Members with their scores, in the order of the reply (ZRANGE ... WITHSCORES, ZPOPMIN).
using ScoredMembers = std::vector<std::pair<std::string, double>>;

}  // namespace rediskit

namespace rediskit::cmd {

/// ZADD key [NX | XX] [GT | LT] [CH] score member [score member ...] -> how many members were
/// added (with `ch`: added or whose score changed). The key is created when missing.
///  - nx: only add new members; xx: only update existing ones (a missing key stays missing);
///  - gt / lt: update an existing member only when the new score is greater / less (new
///    members are still added unless xx);
///  - a member given twice takes its last score.
/// Refused: nx with xx ("ERR XX and NX options at the same time are not compatible"); gt with
/// lt, or either with nx ("ERR GT, LT, and/or NX options at the same time are not
/// compatible"); a NaN score ("ERR value is not a valid float"); no members ("ERR syntax
/// error"). Nothing is changed when a command is refused.
struct zadd {
  std::string_view key;
  ArgList<ScoreMember> members;
  bool nx = false;
  bool xx = false;
  bool gt = false;
  bool lt = false;
  bool ch = false;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("ZADD", key);
    if (nx) w("NX");
    if (xx) w("XX");
    if (gt) w("GT");
    if (lt) w("LT");
    if (ch) w("CH");
    w(members);
  }
};

/// ZADD key [NX | XX] [GT | LT] INCR increment member -> the member's new score, or nullopt
/// when nx / xx / gt / lt refused the change (then nothing changed). A missing member starts
/// at 0. As ZINCRBY with ZADD's conditions; refused as zadd, and with "ERR resulting score is
/// not a number (NaN)" when the sum is NaN (+inf plus -inf).
struct zadd_incr {
  std::string_view key;
  double increment = 0;
  std::string_view member;
  bool nx = false;
  bool xx = false;
  bool gt = false;
  bool lt = false;
  using reply_type = std::optional<double>;
  template <class W>
  void write(W& w) const {
    w("ZADD", key);
    if (nx) w("NX");
    if (xx) w("XX");
    if (gt) w("GT");
    if (lt) w("LT");
    w("INCR", increment, member);
  }
};

/// ZINCRBY key increment member -> the member's new score (a missing member or key starts at
/// 0). Refused: a NaN increment ("ERR value is not a valid float"), a NaN sum ("ERR resulting
/// score is not a number (NaN)").
struct zincrby {
  std::string_view key;
  double increment = 0;
  std::string_view member;
  using reply_type = double;
  template <class W>
  void write(W& w) const {
    w("ZINCRBY", key, increment, member);
  }
};

/// ZREM key member [member ...] -> how many of the members were there and were removed. A set
/// left empty is deleted.
struct zrem {
  std::string_view key;
  ArgList<std::string_view> members;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("ZREM", key, members);
  }
};

/// ZSCORE key member -> the member's score, or nullopt when the member (or the key) does not
/// exist.
struct zscore {
  std::string_view key;
  std::string_view member;
  using reply_type = std::optional<double>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("ZSCORE", key, member);
  }
};

/// ZMSCORE key member [member ...] -> one score per member, in the order asked; nullopt for a
/// member (or a key) that does not exist.
struct zmscore {
  std::string_view key;
  ArgList<std::string_view> members;
  using reply_type = std::vector<std::optional<double>>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("ZMSCORE", key, members);
  }
};

/// ZRANK key member -> the member's 0-based rank by ascending score (the lowest is 0), or
/// nullopt when it (or the key) does not exist. O(log n).
struct zrank {
  std::string_view key;
  std::string_view member;
  using reply_type = std::optional<std::int64_t>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("ZRANK", key, member);
  }
};

/// ZREVRANK key member -> the member's 0-based rank by descending score (the highest is 0: a
/// leaderboard position), or nullopt when it (or the key) does not exist. O(log n).
struct zrevrank {
  std::string_view key;
  std::string_view member;
  using reply_type = std::optional<std::int64_t>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("ZREVRANK", key, member);
  }
};

/// ZCARD key -> the number of members (0 when the key does not exist).
struct zcard {
  std::string_view key;
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("ZCARD", key);
  }
};

/// ZCOUNT key min max -> how many members have a score in [min, max] (see ScoreBound).
struct zcount {
  std::string_view key;
  ScoreBound min = ScoreBound::neg_inf();
  ScoreBound max = ScoreBound::pos_inf();
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    char a[40], b[40];
    w("ZCOUNT", key, min.text_into(a), max.text_into(b));
  }
};

/// ZRANGE key start stop [REV] -> the members from rank start to rank stop, both included
/// (negative: from the end, -1 the last), lowest score first (rev: highest first, and the
/// ranks count from the highest). Empty when the range is (start after stop, beyond the end).
struct zrange {
  std::string_view key;
  std::int64_t start = 0;
  std::int64_t stop = -1;
  bool rev = false;
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("ZRANGE", key, start, stop);
    if (rev) w("REV");
  }
};

/// ZRANGE key start stop [REV] WITHSCORES -> as zrange, each member with its score.
struct zrange_withscores {
  std::string_view key;
  std::int64_t start = 0;
  std::int64_t stop = -1;
  bool rev = false;
  using reply_type = ScoredMembers;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("ZRANGE", key, start, stop);
    if (rev) w("REV");
    w("WITHSCORES");
  }
};

/// ZRANGE key min max BYSCORE [REV] [LIMIT offset count] -> the members whose score is in
/// [min, max] (see ScoreBound), lowest first (rev: highest first; the server takes max before
/// min then, which this command writes for you). `limit` pages through the range in the
/// reply's order (see RangeLimit): walking to the offset costs O(offset).
struct zrange_by_score {
  std::string_view key;
  ScoreBound min = ScoreBound::neg_inf();
  ScoreBound max = ScoreBound::pos_inf();
  bool rev = false;
  std::optional<RangeLimit> limit{};
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    char a[40], b[40];
    if (rev)
      w("ZRANGE", key, max.text_into(b), min.text_into(a), "BYSCORE", "REV");
    else
      w("ZRANGE", key, min.text_into(a), max.text_into(b), "BYSCORE");
    if (limit) w("LIMIT", limit->offset, limit->count);
  }
};

/// ZRANGE key min max BYSCORE [REV] [LIMIT offset count] WITHSCORES -> as zrange_by_score, each
/// member with its score.
struct zrange_by_score_withscores {
  std::string_view key;
  ScoreBound min = ScoreBound::neg_inf();
  ScoreBound max = ScoreBound::pos_inf();
  bool rev = false;
  std::optional<RangeLimit> limit{};
  using reply_type = ScoredMembers;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    char a[40], b[40];
    if (rev)
      w("ZRANGE", key, max.text_into(b), min.text_into(a), "BYSCORE", "REV");
    else
      w("ZRANGE", key, min.text_into(a), max.text_into(b), "BYSCORE");
    if (limit) w("LIMIT", limit->offset, limit->count);
    w("WITHSCORES");
  }
};

/// ZRANGE key min max BYLEX [REV] [LIMIT offset count] -> the members between min and max in
/// byte order (see LexBound), lowest first (rev: highest first). Meant for sets whose members
/// all have the same score (see the top of this file). The server has no WITHSCORES here.
struct zrange_by_lex {
  std::string_view key;
  LexBound min = LexBound::lowest();
  LexBound max = LexBound::highest();
  bool rev = false;
  std::optional<RangeLimit> limit{};
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    std::string const a = min.text(), b = max.text();
    if (rev)
      w("ZRANGE", key, b, a, "BYLEX", "REV");
    else
      w("ZRANGE", key, a, b, "BYLEX");
    if (limit) w("LIMIT", limit->offset, limit->count);
  }
};

/// ZREMRANGEBYSCORE key min max -> how many members with a score in [min, max] were removed.
struct zremrangebyscore {
  std::string_view key;
  ScoreBound min = ScoreBound::neg_inf();
  ScoreBound max = ScoreBound::pos_inf();
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    char a[40], b[40];
    w("ZREMRANGEBYSCORE", key, min.text_into(a), max.text_into(b));
  }
};

/// ZREMRANGEBYRANK key start stop -> how many members from rank start to rank stop (both
/// included, negative from the end, ascending order) were removed: keeping the top N of a
/// leaderboard is `start = 0, stop = -(N + 1)`.
struct zremrangebyrank {
  std::string_view key;
  std::int64_t start = 0;
  std::int64_t stop = -1;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("ZREMRANGEBYRANK", key, start, stop);
  }
};

/// ZPOPMIN key [count] -> removes and returns the `count` (default 1) members with the lowest
/// scores, lowest first; empty when the key does not exist or count is 0. A negative count is
/// refused ("ERR value is out of range, must be positive").
struct zpopmin {
  std::string_view key;
  std::optional<std::int64_t> count{};
  using reply_type = ScoredMembers;
  template <class W>
  void write(W& w) const {
    if (count)
      w("ZPOPMIN", key, *count);
    else
      w("ZPOPMIN", key);
  }
};

/// ZPOPMAX key [count] -> as zpopmin, from the highest scores, highest first.
struct zpopmax {
  std::string_view key;
  std::optional<std::int64_t> count{};
  using reply_type = ScoredMembers;
  template <class W>
  void write(W& w) const {
    if (count)
      w("ZPOPMAX", key, *count);
    else
      w("ZPOPMAX", key);
  }
};

}  // namespace rediskit::cmd
