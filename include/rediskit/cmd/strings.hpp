// rediskit typed commands: strings (GET, SET, INCR, MGET, MSET, ...).
// Each command is an aggregate of views: see rediskit/command.hpp for the rules.
#pragma once

#include <rediskit/arg_list.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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
    w("SET", key, value);
    if (ttl) w("PX", ttl->count());
    if (nx) w("NX");
    if (xx) w("XX");
    if (keep_ttl) w("KEEPTTL");
  }
};

}  // namespace rediskit::cmd
