// rediskit typed commands: sets (SADD, SREM, SMEMBERS, SISMEMBER, SINTER, SSCAN, ...).
// Each command is an aggregate of views: see rediskit/command.hpp for the rules.
//
// Member order: a set has none. SMEMBERS, SINTER, SUNION, SDIFF and SSCAN list members in an
// order that differs between backends (and, on a server, between a set of integers and any
// other set): sort when an order matters.
#pragma once

#include <rediskit/arg_list.hpp>

#include <boost/describe/class.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

/// One SSCAN step: the cursor to pass to the next step (0: the iteration is over) and the
/// members this step returned. A step may return any number of members, none included,
/// whatever COUNT asked for: only a cursor of 0 means "done".
struct SetScanPage {
  std::uint64_t cursor = 0;
  std::vector<std::string> members;
  friend bool operator==(SetScanPage const&, SetScanPage const&) = default;
};
BOOST_DESCRIBE_STRUCT(SetScanPage, (), (cursor, members))

}  // namespace rediskit

namespace rediskit::cmd {

/// SADD key member [member ...] -> how many members were new. The key is created when
/// missing. An empty `members` is refused ("wrong number of arguments").
struct sadd {
  std::string_view key;
  ArgList<std::string_view> members;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("SADD", key, members);
  }
};

/// SREM key member [member ...] -> how many of the members were present and removed. A set
/// left empty is deleted.
struct srem {
  std::string_view key;
  ArgList<std::string_view> members;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("SREM", key, members);
  }
};

/// SMEMBERS key -> every member, in no particular order (empty when the key does not exist).
/// For a large set, SSCAN does not hold the server for the whole set.
struct smembers {
  std::string_view key;
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("SMEMBERS", key);
  }
};

/// SISMEMBER key member -> true when the key is a set holding the member.
struct sismember {
  std::string_view key;
  std::string_view member;
  using reply_type = bool;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("SISMEMBER", key, member);
  }
};

/// SMISMEMBER key member [member ...] -> for each member, in the order asked, whether the set
/// holds it (all false when the key does not exist).
struct smismember {
  std::string_view key;
  ArgList<std::string_view> members;
  using reply_type = std::vector<bool>;
  using wire_type = std::vector<std::int64_t>;  // 1 / 0 per member
  static std::vector<bool> from_wire(std::vector<std::int64_t>&& w) {
    return std::vector<bool>(w.begin(), w.end());
  }
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("SMISMEMBER", key, members);
  }
};

/// SCARD key -> the number of members (0 when the key does not exist).
struct scard {
  std::string_view key;
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("SCARD", key);
  }
};

/// SINTER key [key ...] -> the members present in every one of the sets, in no particular
/// order. A missing key is an empty set, so it makes the result empty; a key of another type
/// fails the command with WRONGTYPE wherever it is in the list.
struct sinter {
  ArgList<std::string_view> keys;
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("SINTER", keys);
  }
};

/// SUNION key [key ...] -> the members present in at least one of the sets, each once, in no
/// particular order. Missing keys are empty sets; another type fails with WRONGTYPE.
struct sunion {
  ArgList<std::string_view> keys;
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("SUNION", keys);
  }
};

/// SDIFF key [key ...] -> the members of the first set that are in none of the others, in no
/// particular order. Missing keys are empty sets; another type (in any position) fails with
/// WRONGTYPE.
struct sdiff {
  ArgList<std::string_view> keys;
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("SDIFF", keys);
  }
};

/// SINTERCARD numkeys key [key ...] [LIMIT limit] -> the size of the intersection of the sets
/// (as SINTER), without sending it; with a limit above 0, counting stops there (a cheap "do
/// they share at least N members?"). LIMIT 0 is no limit; a negative limit fails ("ERR LIMIT
/// can't be negative"), and so do empty `keys`.
struct sintercard {
  ArgList<std::string_view> keys;
  std::optional<std::int64_t> limit{};
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("SINTERCARD", static_cast<std::int64_t>(keys.size()), keys);
    if (limit) w("LIMIT", *limit);
  }
};

/// SSCAN key cursor [MATCH pattern] [COUNT count] -> one step of an iteration over a set that
/// does not hold the server for long (SMEMBERS on a large set would). Start at cursor 0 and
/// pass each reply's cursor to the next step until it is 0 again. Every member present for the
/// whole iteration is returned at least once, whatever is added or removed in between; a
/// member may be returned more than once, and a step may return any number of members (a small
/// set all at once). MATCH filters with Redis's glob rules after members are read, so a step
/// may return nothing while the iteration is not over. COUNT (a hint of work per step, 10 by
/// default) must be at least 1 ("ERR syntax error") when the key exists.
struct sscan {
  std::string_view key;
  std::uint64_t cursor = 0;
  std::optional<std::string_view> match{};
  std::optional<std::int64_t> count{};
  using reply_type = SetScanPage;
  /// [cursor as a bulk string, [member, member, ...]]
  using wire_type = std::pair<std::uint64_t, std::vector<std::string>>;
  static SetScanPage from_wire(wire_type&& w) { return SetScanPage{w.first, std::move(w.second)}; }
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("SSCAN", key, cursor);
    if (match) w("MATCH", *match);
    if (count) w("COUNT", *count);
  }
};

}  // namespace rediskit::cmd
