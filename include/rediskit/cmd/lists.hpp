// rediskit typed commands: lists (LPUSH, RPUSH, LPOP, LRANGE, LTRIM, LREM, LMOVE, BLMOVE, ...).
// Each command is an aggregate of views: see rediskit/command.hpp for the rules.
//
// A list is a sequence of byte strings with a left end (head, index 0) and a right end (tail,
// index -1). Indexes are 0-based from the left; negative ones count from the right (-1 is the
// last element). A list left empty is deleted: a missing key and an empty list are the same.
#pragma once

#include <rediskit/arg_list.hpp>

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

/// An end of a list: LEFT (the head, index 0) or RIGHT (the tail, index -1).
enum class ListEnd { left, right };

namespace detail {

constexpr std::string_view list_end_name(ListEnd e) noexcept {
  return e == ListEnd::left ? "LEFT" : "RIGHT";
}

/// `t` as the seconds a blocking list command takes, written into `buf` (32 bytes at least).
/// The server reads them as a long double, multiplies by 1000 and truncates: "0.001" can come
/// back as 0 ms, which means "wait forever". A trailing 5 (0.0015) makes every count of
/// milliseconds come back exactly, negative ones included.
inline std::string_view block_seconds_text(std::chrono::milliseconds t, char* buf) noexcept {
  auto const m = static_cast<long long>(t.count());
  if (m == 0) return "0";
  char* p = buf;
  unsigned long long const a =
      m < 0 ? 0ULL - static_cast<unsigned long long>(m) : static_cast<unsigned long long>(m);
  if (m < 0) *p++ = '-';
  p = std::to_chars(p, buf + 32, a / 1000).ptr;
  auto const r = static_cast<unsigned>(a % 1000);
  *p++ = '.';
  *p++ = static_cast<char>('0' + r / 100);
  *p++ = static_cast<char>('0' + r / 10 % 10);
  *p++ = static_cast<char>('0' + r % 10);
  *p++ = '5';
  return {buf, static_cast<std::size_t>(p - buf)};
}

}  // namespace detail

}  // namespace rediskit

namespace rediskit::cmd {

/// LPUSH key value [value ...] -> the length of the list after the push. The values go to the
/// head one after the other, so they end up in reverse order: LPUSH k a b c gives [c, b, a].
/// The key is created when missing. An empty `values` is refused ("wrong number of
/// arguments").
struct lpush {
  std::string_view key;
  ArgList<std::string_view> values;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("LPUSH", key, values);
  }
};

/// RPUSH key value [value ...] -> the length of the list after the push; the values are
/// appended in order (a queue's producer side). The key is created when missing.
struct rpush {
  std::string_view key;
  ArgList<std::string_view> values;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("RPUSH", key, values);
  }
};

/// LPOP key -> removes and returns the first element; nullopt when the key does not exist.
struct lpop {
  std::string_view key;
  using reply_type = std::optional<std::string>;
  template <class W>
  void write(W& w) const {
    w("LPOP", key);
  }
};

/// RPOP key -> removes and returns the last element; nullopt when the key does not exist.
struct rpop {
  std::string_view key;
  using reply_type = std::optional<std::string>;
  template <class W>
  void write(W& w) const {
    w("RPOP", key);
  }
};

/// LPOP key count -> removes and returns up to `count` elements from the head, first element
/// first; nullopt when the key does not exist (an empty vector for a count of 0 on an existing
/// list). A negative count is refused ("ERR value is out of range, must be positive").
struct lpop_count {
  std::string_view key;
  std::int64_t count = 1;
  using reply_type = std::optional<std::vector<std::string>>;
  template <class W>
  void write(W& w) const {
    w("LPOP", key, count);
  }
};

/// RPOP key count -> as lpop_count, from the tail: the last element first.
struct rpop_count {
  std::string_view key;
  std::int64_t count = 1;
  using reply_type = std::optional<std::vector<std::string>>;
  template <class W>
  void write(W& w) const {
    w("RPOP", key, count);
  }
};

/// LRANGE key start stop -> the elements from index start to index stop, both included
/// (negative: from the end). Out-of-range indexes are clamped; empty when nothing is left.
struct lrange {
  std::string_view key;
  std::int64_t start = 0;
  std::int64_t stop = -1;
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("LRANGE", key, start, stop);
  }
};

/// LTRIM key start stop -> keeps only the elements from index start to index stop (both
/// included, negative from the end), deleting the list when none is left. Always true (the
/// server's OK), a missing key included: keeping a capped list is RPUSH then LTRIM k -N -1.
struct ltrim {
  std::string_view key;
  std::int64_t start = 0;
  std::int64_t stop = -1;
  using reply_type = bool;
  using wire_type = std::string;  // OK
  static bool from_wire(std::string&&) noexcept { return true; }
  template <class W>
  void write(W& w) const {
    w("LTRIM", key, start, stop);
  }
};

/// LLEN key -> the number of elements (0 when the key does not exist).
struct llen {
  std::string_view key;
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("LLEN", key);
  }
};

/// LREM key count element -> how many elements equal to `element` were removed: the first
/// `count` from the head when count > 0, the last -count from the tail when count < 0, all of
/// them when count is 0.
struct lrem {
  std::string_view key;
  std::int64_t count = 0;
  std::string_view element;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("LREM", key, count, element);
  }
};

/// LINDEX key index -> the element at `index` (negative: from the end), or nullopt when the
/// index is out of range or the key does not exist.
struct lindex {
  std::string_view key;
  std::int64_t index = 0;
  using reply_type = std::optional<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("LINDEX", key, index);
  }
};

/// LSET key index element -> replaces the element at `index` (negative: from the end); true
/// (the server's OK). Refused: a missing key ("ERR no such key"), an index out of range ("ERR
/// index out of range").
struct lset {
  std::string_view key;
  std::int64_t index = 0;
  std::string_view element;
  using reply_type = bool;
  using wire_type = std::string;  // OK
  static bool from_wire(std::string&&) noexcept { return true; }
  template <class W>
  void write(W& w) const {
    w("LSET", key, index, element);
  }
};

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT -> atomically pops an element from the
/// `from` end of `source` and pushes it to the `to` end of `destination` (created when
/// missing), returning it; nullopt when `source` does not exist (nothing changes then). Source
/// and destination may be the same list (a rotation). The reliable-queue primitive: the element
/// is never only in flight.
struct lmove {
  std::string_view source;
  std::string_view destination;
  ListEnd from = ListEnd::left;
  ListEnd to = ListEnd::right;
  using reply_type = std::optional<std::string>;
  template <class W>
  void write(W& w) const {
    w("LMOVE", source, destination, rediskit::detail::list_end_name(from),
      rediskit::detail::list_end_name(to));
  }
};

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout -> as lmove, but when `source` is
/// empty it waits until an element arrives in it (another client's push) and moves that one;
/// nullopt when `timeout` passes first. A timeout of 0 waits forever; a negative one is refused
/// ("ERR timeout is negative"). The server takes seconds with decimals: the timeout is written so
/// that it reads back as exactly this many milliseconds (a plain "0.001" would read back as 0,
/// i.e. forever); the server checks timeouts about every 10 ms.
///
/// A blocking command: RedisBackend runs it on a connection of its own; in a batch or a
/// transaction it does not wait (nullopt at once when `source` is empty). Its views must stay
/// valid until it completes.
struct blmove {
  std::string_view source;
  std::string_view destination;
  ListEnd from = ListEnd::left;
  ListEnd to = ListEnd::right;
  std::chrono::milliseconds timeout{0};
  using reply_type = std::optional<std::string>;
  bool blocking() const noexcept { return true; }
  std::chrono::milliseconds block_timeout() const noexcept { return timeout; }
  ArgList<std::string_view> watch_keys() const noexcept {
    return ArgList<std::string_view>(source);
  }
  template <class W>
  void write(W& w) const {
    char buf[32];
    w("BLMOVE", source, destination, rediskit::detail::list_end_name(from),
      rediskit::detail::list_end_name(to), rediskit::detail::block_seconds_text(timeout, buf));
  }
};

}  // namespace rediskit::cmd
