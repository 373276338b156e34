// Integers the services read back as text: script arguments they wrote, replies, hash fields,
// INFO fields.
#pragma once

#include <rediskit/codec/traits.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rediskit::detail {

/// The whole of `s` as an int64; nullopt when it is not exactly one (empty, a sign alone, other
/// text after the digits, out of range), as Lua's tonumber refuses such text.
inline std::optional<std::int64_t> parse_int(std::string_view s) noexcept {
  std::int64_t v = 0;
  if (!codec::parse_number(s, v)) return std::nullopt;
  return v;
}
inline std::optional<std::int64_t> parse_int(std::string const& s) noexcept {
  return parse_int(std::string_view(s));
}
inline std::optional<std::int64_t> parse_int(std::optional<std::string> const& s) noexcept {
  return s ? parse_int(std::string_view(*s)) : std::nullopt;
}

/// parse_int(s), or `otherwise`.
inline std::int64_t to_int(std::string_view s, std::int64_t otherwise = 0) noexcept {
  return parse_int(s).value_or(otherwise);
}
inline std::int64_t to_int(std::string const& s, std::int64_t otherwise = 0) noexcept {
  return parse_int(std::string_view(s)).value_or(otherwise);
}
inline std::int64_t to_int(std::optional<std::string> const& s, std::int64_t otherwise) noexcept {
  return parse_int(s).value_or(otherwise);
}

}  // namespace rediskit::detail
