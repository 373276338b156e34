// rediskit typed commands: keys (DEL, EXISTS, EXPIRE, TTL, TYPE, SCAN, ...).
// Each command is an aggregate of views: see rediskit/command.hpp for the rules.
//
// Expiry: a key with a TTL is gone the moment its TTL has passed (no command sees it again,
// DBSIZE included on the in-process backends; a server may count it in DBSIZE until something
// touches it). Writing a key with SET or MSET drops its TTL; changing it in place (INCR, APPEND,
// HSET, ...) keeps it.
#pragma once

#include <rediskit/arg_list.hpp>

#include <boost/describe/class.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

/// One SCAN step: the cursor to pass to the next step (0: the iteration is over) and the keys
/// this step returned. A step may return any number of keys, none included, whatever COUNT
/// asked for: only a cursor of 0 means "done". A key may be returned more than once in one
/// iteration; a key that exists for the whole iteration is returned at least once.
struct ScanPage {
  std::uint64_t cursor = 0;
  std::vector<std::string> keys;
  friend bool operator==(ScanPage const&, ScanPage const&) = default;
};
BOOST_DESCRIBE_STRUCT(ScanPage, (), (cursor, keys))

/// EXPIRE / PEXPIRE conditions (Redis 7.0): when the new TTL may replace the current one.
/// A key without a TTL counts as having an infinite one (so GT never applies to it, LT always).
enum class ExpireCondition {
  nx,  ///< only when the key has no TTL
  xx,  ///< only when the key has a TTL
  gt,  ///< only when the new expiry is later than the current one
  lt,  ///< only when the new expiry is earlier than the current one
};

/// The argument an ExpireCondition is written as ("NX", "XX", "GT", "LT").
constexpr std::string_view expire_condition_arg(ExpireCondition c) noexcept {
  switch (c) {
    case ExpireCondition::nx: return "NX";
    case ExpireCondition::xx: return "XX";
    case ExpireCondition::gt: return "GT";
    case ExpireCondition::lt: return "LT";
  }
  return "NX";
}

}  // namespace rediskit

namespace rediskit::cmd {

/// DEL key [key ...] -> how many keys existed and were deleted.
struct del {
  ArgList<std::string_view> keys;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("DEL", keys);
  }
};

/// UNLINK key [key ...] -> how many keys existed and were deleted. As DEL, but a server frees
/// large values in the background: prefer it for big hashes, sets and streams.
struct unlink {
  ArgList<std::string_view> keys;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("UNLINK", keys);
  }
};

/// EXISTS key [key ...] -> how many of the keys exist; a key named twice counts twice.
struct exists {
  ArgList<std::string_view> keys;
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("EXISTS", keys);
  }
};

/// EXPIRE key seconds [NX | XX | GT | LT] -> true when the TTL was set; false when the key
/// does not exist or the condition refused it. A ttl of zero or less deletes the key (and
/// answers true). A ttl too large to add to the server's clock fails ("invalid expire time").
struct expire {
  std::string_view key;
  std::chrono::seconds ttl{};
  std::optional<ExpireCondition> condition{};
  using reply_type = bool;
  template <class W>
  void write(W& w) const {
    if (condition)
      w("EXPIRE", key, ttl.count(), expire_condition_arg(*condition));
    else
      w("EXPIRE", key, ttl.count());
  }
};

/// PEXPIRE key milliseconds [NX | XX | GT | LT] -> as EXPIRE, in milliseconds.
struct pexpire {
  std::string_view key;
  std::chrono::milliseconds ttl{};
  std::optional<ExpireCondition> condition{};
  using reply_type = bool;
  template <class W>
  void write(W& w) const {
    if (condition)
      w("PEXPIRE", key, ttl.count(), expire_condition_arg(*condition));
    else
      w("PEXPIRE", key, ttl.count());
  }
};

/// TTL key -> the remaining time to live in seconds (rounded to the nearest second), -1 when
/// the key has no TTL, -2 when it does not exist.
struct ttl {
  std::string_view key;
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("TTL", key);
  }
};

/// PTTL key -> the remaining time to live in milliseconds, -1 when the key has no TTL, -2 when
/// it does not exist.
struct pttl {
  std::string_view key;
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("PTTL", key);
  }
};

/// PERSIST key -> true when the key's TTL was removed; false when it had none or does not
/// exist.
struct persist {
  std::string_view key;
  using reply_type = bool;
  template <class W>
  void write(W& w) const {
    w("PERSIST", key);
  }
};

/// TYPE key -> "string", "list", "set", "zset", "hash" or "stream"; "none" when the key does
/// not exist.
struct type {
  std::string_view key;
  using reply_type = std::string;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("TYPE", key);
  }
};

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type] -> one step of an iteration over the
/// keyspace (see ScanPage). Start at cursor 0 and pass each reply's cursor to the next step
/// until it is 0. `match` is a glob (see rediskit/detail/glob.hpp); `count` is a hint of how
/// much work a step does (10 by default; less than 1 fails with "ERR syntax error"), not of how
/// many keys it returns; `type` keeps only keys of that type (case-insensitive; an unknown name
/// matches nothing). Unlike KEYS it never blocks a server for long.
struct scan {
  std::uint64_t cursor = 0;
  std::optional<std::string_view> match{};
  std::optional<std::int64_t> count{};
  std::optional<std::string_view> type{};
  using reply_type = ScanPage;
  using wire_type = std::pair<std::string, std::vector<std::string>>;  // cursor as a string
  static constexpr bool idempotent = true;
  static ScanPage from_wire(wire_type&& w) noexcept {
    ScanPage p;
    (void)std::from_chars(w.first.data(), w.first.data() + w.first.size(), p.cursor);
    p.keys = std::move(w.second);
    return p;
  }
  template <class W>
  void write(W& w) const {
    w("SCAN", cursor);
    if (match) w("MATCH", *match);
    if (count) w("COUNT", *count);
    if (type) w("TYPE", *type);
  }
};

/// KEYS pattern -> every key matching the glob `pattern`, in no particular order. It walks the
/// whole keyspace in one go (blocking a server meanwhile): for tests and tools; services use
/// SCAN.
struct keys {
  std::string_view pattern;
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("KEYS", pattern);
  }
};

}  // namespace rediskit::cmd
