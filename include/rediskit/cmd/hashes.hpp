// rediskit typed commands: hashes (HSET, HGET, HMGET, HGETALL, HINCRBY, HSCAN, ...).
// Each command is an aggregate of views: see rediskit/command.hpp for the rules.
//
// Field order: a hash has none. HGETALL, HKEYS and HVALS list fields in an order that differs
// between backends (and, on a server, between a small hash and a large one); only HKEYS and
// HVALS of one unchanged hash are in the same order as each other.
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

/// One HSCAN step: the cursor to pass to the next step (0: the iteration is over) and the
/// fields (with their values) this step returned. A step may return any number of entries,
/// none included, whatever COUNT asked for: only a cursor of 0 means "done".
struct HashScanPage {
  std::uint64_t cursor = 0;
  std::vector<std::pair<std::string, std::string>> entries;
  friend bool operator==(HashScanPage const&, HashScanPage const&) = default;
};
BOOST_DESCRIBE_STRUCT(HashScanPage, (), (cursor, entries))

}  // namespace rediskit

namespace rediskit::cmd {

/// HSET key field value [field value ...] -> how many fields were new (an existing field is
/// overwritten and not counted). The key is created when missing. A field given twice takes
/// its last value. An empty `fields` is refused ("wrong number of arguments").
struct hset {
  std::string_view key;
  ArgList<FieldValue> fields;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("HSET", key, fields);
  }
};

/// HSETNX key field value -> true when the field was set; false when it existed (then it is
/// left unchanged). The "create once" primitive for one field.
struct hsetnx {
  std::string_view key;
  std::string_view field;
  std::string_view value;
  using reply_type = bool;
  template <class W>
  void write(W& w) const {
    w("HSETNX", key, field, value);
  }
};

/// HGET key field -> the value, or nullopt when the key or the field does not exist.
struct hget {
  std::string_view key;
  std::string_view field;
  using reply_type = std::optional<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("HGET", key, field);
  }
};

/// HMGET key field [field ...] -> one value per field, in the order asked, nullopt for a
/// field (or a key) that does not exist.
struct hmget {
  std::string_view key;
  ArgList<std::string_view> fields;
  using reply_type = std::vector<std::optional<std::string>>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("HMGET", key, fields);
  }
};

/// HGETALL key -> every (field, value) of the hash, in no particular order; empty when the key
/// does not exist.
struct hgetall {
  std::string_view key;
  using reply_type = std::vector<std::pair<std::string, std::string>>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("HGETALL", key);
  }
};

/// HDEL key field [field ...] -> how many of the fields existed and were removed. A hash left
/// empty is deleted.
struct hdel {
  std::string_view key;
  ArgList<std::string_view> fields;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("HDEL", key, fields);
  }
};

/// HINCRBY key field increment -> the new value. A missing field counts as 0. Fails with
/// "ERR hash value is not an integer" when the value is not a 64-bit integer written
/// canonically ("007", "+1", " 1" are not), and with "ERR increment or decrement would
/// overflow" (the value is then unchanged).
struct hincrby {
  std::string_view key;
  std::string_view field;
  std::int64_t increment = 0;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("HINCRBY", key, field, increment);
  }
};

/// HINCRBYFLOAT key field increment -> the new value. The server adds in long double and stores
/// the sum as decimal text with at most 17 fractional digits and no exponent ("0.1" + "0.2"
/// stores "0.3"); the reply is that text read as a double. Fails when the value is no number
/// ("ERR hash value is not a float"), when the increment is NaN or infinite, or when the sum
/// would be ("ERR increment would produce NaN or Infinity"). A sum beyond the range of double
/// is stored, but its reply fails with Error::integer_out_of_range.
struct hincrbyfloat {
  std::string_view key;
  std::string_view field;
  double increment = 0;
  using reply_type = double;
  template <class W>
  void write(W& w) const {
    w("HINCRBYFLOAT", key, field, increment);
  }
};

/// HEXISTS key field -> true when the key is a hash with that field.
struct hexists {
  std::string_view key;
  std::string_view field;
  using reply_type = bool;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("HEXISTS", key, field);
  }
};

/// HLEN key -> the number of fields (0 when the key does not exist).
struct hlen {
  std::string_view key;
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("HLEN", key);
  }
};

/// HKEYS key -> every field, in no particular order.
struct hkeys {
  std::string_view key;
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("HKEYS", key);
  }
};

/// HVALS key -> every value, in no particular order.
struct hvals {
  std::string_view key;
  using reply_type = std::vector<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("HVALS", key);
  }
};

/// HSCAN key cursor [MATCH pattern] [COUNT count] -> one step of an iteration over a hash that
/// does not hold the server for long (HGETALL on a large hash would). Start at cursor 0 and
/// pass each reply's cursor to the next step until it is 0 again. Every field present for the
/// whole iteration is returned at least once, whatever is added or removed in between; a field
/// may be returned more than once, and a step may return any number of entries (a small hash
/// all at once). MATCH filters fields with Redis's glob rules after they are read, so a step
/// may return nothing while the iteration is not over. COUNT (a hint of work per step, 10 by
/// default) must be at least 1 ("ERR syntax error") when the key exists.
struct hscan {
  std::string_view key;
  std::uint64_t cursor = 0;
  std::optional<std::string_view> match{};
  std::optional<std::int64_t> count{};
  using reply_type = HashScanPage;
  /// [cursor as a bulk string, [field, value, field, value, ...]]
  using wire_type = std::pair<std::uint64_t, std::vector<std::pair<std::string, std::string>>>;
  static HashScanPage from_wire(wire_type&& w) {
    return HashScanPage{w.first, std::move(w.second)};
  }
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("HSCAN", key, cursor);
    if (match) w("MATCH", *match);
    if (count) w("COUNT", *count);
  }
};

}  // namespace rediskit::cmd
