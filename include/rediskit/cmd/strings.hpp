// rediskit typed commands: strings (GET, SET, INCR, MGET, MSET, ...).
// Each command is an aggregate of views: see rediskit/command.hpp for the rules.
//
// Numbers in strings: INCR and friends read the value as a strict 64-bit decimal integer (no
// sign '+', no blanks, no leading zero, at most 20 characters) and fail with "ERR value is not
// an integer or out of range" otherwise; the key keeps its TTL. INCRBYFLOAT computes in the
// server's long double and stores the result as plain decimal text ("3", "0.1", never "1e+20"),
// so a counter touched by INCRBYFLOAT stays readable by INCR only while it holds an integer.
#pragma once

#include <rediskit/arg_list.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rediskit::detail {

/// SET key value [PX ttl] [NX] [XX] [KEEPTTL]: shared by cmd::set and cmd::set_get.
template <class W, class C>
void write_set(W& w, C const& c) {
  w("SET", c.key, c.value);
  if (c.ttl) w("PX", c.ttl->count());
  if (c.nx) w("NX");
  if (c.xx) w("XX");
  if (c.keep_ttl) w("KEEPTTL");
}

}  // namespace rediskit::detail

namespace rediskit::cmd {

/// GET key -> the value, or nullopt when the key does not exist.
struct get {
  std::string_view key;
  using reply_type = std::optional<std::string>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("GET", key);
  }
};

/// SET key value [NX | XX] [PX ttl | KEEPTTL] -> true when the value was set (false when NX or
/// XX refused it). A ttl of zero or less is refused by the server ("invalid expire time").
/// Without KEEPTTL the key loses any TTL it had, whatever it held before (any type).
struct set {
  std::string_view key;
  std::string_view value;
  std::optional<std::chrono::milliseconds> ttl{};  ///< PX: expires after ttl
  bool nx = false;        ///< only if the key does not exist
  bool xx = false;        ///< only if the key exists
  bool keep_ttl = false;  ///< KEEPTTL: keep the key's current TTL
  using reply_type = bool;
  using wire_type = std::optional<std::string>;  // OK or nil
  static bool from_wire(std::optional<std::string>&& w) noexcept { return w.has_value(); }
  template <class W>
  void write(W& w) const {
    detail::write_set(w, *this);
  }
};

/// SET key value [NX | XX] [PX ttl | KEEPTTL] GET -> the value the key held before (nullopt
/// when it did not exist), whether or not NX / XX let the new value be written: swap and
/// "set unless present, tell me what was there" in one round trip. Unlike plain SET, it fails
/// with WRONGTYPE (and writes nothing) when the key holds something other than a string.
struct set_get {
  std::string_view key;
  std::string_view value;
  std::optional<std::chrono::milliseconds> ttl{};  ///< PX: expires after ttl
  bool nx = false;        ///< only if the key does not exist
  bool xx = false;        ///< only if the key exists
  bool keep_ttl = false;  ///< KEEPTTL: keep the key's current TTL
  using reply_type = std::optional<std::string>;
  template <class W>
  void write(W& w) const {
    detail::write_set(w, *this);
    w("GET");
  }
};

/// GETDEL key -> the value, which is deleted with its key; nullopt when the key did not exist.
/// Take-once tokens (one-time codes, claimed jobs) without a transaction.
struct getdel {
  std::string_view key;
  using reply_type = std::optional<std::string>;
  template <class W>
  void write(W& w) const {
    w("GETDEL", key);
  }
};

/// INCR key -> the value after adding 1 (a missing key counts as 0). Fails when the value is
/// not an integer, or with "ERR increment or decrement would overflow" past 64 bits.
struct incr {
  std::string_view key;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("INCR", key);
  }
};

/// INCRBY key increment -> the value after adding `increment` (a missing key counts as 0).
/// Errors as INCR.
struct incrby {
  std::string_view key;
  std::int64_t increment = 0;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("INCRBY", key, increment);
  }
};

/// DECR key -> the value after subtracting 1 (a missing key counts as 0). Errors as INCR.
struct decr {
  std::string_view key;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("DECR", key);
  }
};

/// DECRBY key decrement -> the value after subtracting `decrement`. Errors as INCR; a
/// decrement of INT64_MIN is refused outright ("ERR decrement would overflow").
struct decrby {
  std::string_view key;
  std::int64_t decrement = 0;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("DECRBY", key, decrement);
  }
};

/// INCRBYFLOAT key increment -> the value after adding `increment` (a missing key counts as
/// 0). Fails with "ERR value is not a valid float" when the stored value (or a NaN increment)
/// is not a number, and with "ERR increment would produce NaN or Infinity". The server adds in
/// long double: a result beyond the range of double is stored, but its reply cannot be
/// represented and completes with Error::integer_out_of_range.
struct incrbyfloat {
  std::string_view key;
  double increment = 0;
  using reply_type = double;
  template <class W>
  void write(W& w) const {
    w("INCRBYFLOAT", key, increment);
  }
};

/// MGET key [key ...] -> one value per key, in order; nullopt for a key that does not exist or
/// does not hold a string (MGET never fails with WRONGTYPE).
struct mget {
  ArgList<std::string_view> keys;
  using reply_type = std::vector<std::optional<std::string>>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("MGET", keys);
  }
};

/// MSET key value [key value ...] -> true. Sets every pair at once (no other client sees some
/// set and others not), replacing values of any type and dropping their TTLs; a key given twice
/// takes its last value. An empty list is refused ("wrong number of arguments").
struct mset {
  ArgList<FieldValue> pairs;  ///< {key, value} pairs
  using reply_type = bool;
  using wire_type = std::string;  // OK
  static bool from_wire(std::string&&) noexcept { return true; }
  template <class W>
  void write(W& w) const {
    w("MSET", pairs);
  }
};

/// APPEND key value -> the length of the value after appending (a missing key is created).
/// The key keeps its TTL.
struct append {
  std::string_view key;
  std::string_view value;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("APPEND", key, value);
  }
};

/// STRLEN key -> the length of the value in bytes; 0 when the key does not exist.
struct strlen {
  std::string_view key;
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("STRLEN", key);
  }
};

}  // namespace rediskit::cmd
