// rediskit::resp3::detail: validation and conversion of the numbers RESP3 carries as text.
//
// Shared by the parser (which only validates, so that a malformed number is a protocol error at
// the byte where it arrives) and the adapters (which convert into the caller's type). Everything
// is locale-free and allocation-free: std::from_chars plus a few hand-written grammars.
#pragma once

#include <rediskit/error.hpp>

#include <boost/system/error_code.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace rediskit::resp3::detail {

constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

constexpr char to_lower_ascii(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

/// ASCII case-insensitive equality; `lower` must be lower case already.
constexpr bool iequals(std::string_view s, std::string_view lower) noexcept {
  if (s.size() != lower.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (to_lower_ascii(s[i]) != lower[i]) return false;
  return true;
}

/// Result of reading a length or element count field ("$<len>", "*<count>", ...).
enum class LengthKind : std::uint8_t {
  value,     ///< a non-negative count, in `value`
  null,      ///< "-1" (RESP2 null bulk / null array)
  streamed,  ///< "?" (RESP3 streamed string / aggregate)
  invalid,   ///< empty, signed other than "-1", garbage, or more than 64 bits
};

struct Length {
  LengthKind kind{LengthKind::invalid};
  std::uint64_t value{0};
};

/// Reads a length field strictly: decimal digits only (no '+', no blanks), or "-1", or "?".
constexpr Length parse_length(std::string_view s) noexcept {
  if (s.empty()) return {};
  if (s.size() == 2 && s[0] == '-' && s[1] == '1') return {LengthKind::null, 0};
  if (s.size() == 1 && s[0] == '?') return {LengthKind::streamed, 0};
  std::uint64_t v = 0;
  for (char const c : s) {
    if (!is_digit(c)) return {};
    auto const d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return {};  // would overflow
    v = v * 10 + d;
  }
  return {LengthKind::value, v};
}

/// True if `s` could still become a valid length or integer once more bytes arrive. Used to
/// reject garbage before its CRLF has arrived (the full grammar is checked once it has).
constexpr bool may_start_integer_field(std::string_view s) noexcept {
  for (char const c : s)
    if (!is_digit(c) && c != '-' && c != '?') return false;
  return true;
}

/// A RESP3 number (':'): a valid int64 with an optional '-', nothing else.
inline bool is_int64(std::string_view s) noexcept {
  std::int64_t v = 0;
  auto const* const end = s.data() + s.size();
  auto const r = std::from_chars(s.data(), end, v);
  return r.ec == std::errc{} && r.ptr == end;
}

/// A RESP3 big number ('('): an optional sign and at least one decimal digit.
constexpr bool is_big_number(std::string_view s) noexcept {
  std::size_t i = 0;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) i = 1;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (!is_digit(s[i])) return false;
  return true;
}

/// A RESP3 double (','): what Redis sends and what strtod reads without its locale and hex
/// forms: [sign] (digits [. digits] | . digits) [(e|E) [sign] digits], or [sign] inf / infinity
/// / nan in any case.
constexpr bool is_resp3_double(std::string_view s) noexcept {
  std::size_t i = 0;
  std::size_t const n = s.size();
  if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
  std::string_view const rest = s.substr(i);
  if (iequals(rest, "inf") || iequals(rest, "infinity") || iequals(rest, "nan")) return true;
  std::size_t digits = 0;
  while (i < n && is_digit(s[i]))
    ++i, ++digits;
  if (i < n && s[i] == '.') {
    ++i;
    while (i < n && is_digit(s[i]))
      ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    std::size_t exp_digits = 0;
    while (i < n && is_digit(s[i]))
      ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == n;
}

/// std::from_chars over all of [first, last) into `out`: Error::not_a_number unless the whole
/// text is a number, Error::integer_out_of_range if it does not fit T; `out` is set on success.
template <class T>
void from_chars_whole(char const* first, char const* last, T& out,
                      boost::system::error_code& ec) noexcept {
  T v{};
  auto const r = std::from_chars(first, last, v);
  if (r.ptr != last || (r.ec != std::errc{} && r.ec != std::errc::result_out_of_range)) {
    ec = make_error_code(Error::not_a_number);
  } else if (r.ec == std::errc::result_out_of_range) {
    ec = make_error_code(Error::integer_out_of_range);
  } else {
    out = v;
  }
}

/// Converts the whole of `s` into the integer `out`, strictly (std::from_chars: no '+', no
/// blanks). Error::integer_out_of_range if it is an integer that does not fit T (including a
/// negative one for an unsigned T), Error::not_a_number if it is no integer at all. `out` is
/// left unchanged on error.
template <class T>
void to_integer(std::string_view s, T& out, boost::system::error_code& ec) noexcept {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  auto const* const first = s.data();
  auto const* const last = s.data() + s.size();
  if constexpr (std::is_unsigned_v<T>) {
    if (!s.empty() && s[0] == '-') {
      // A well-formed negative number does not fit, except for "-0".
      std::intmax_t v = 0;
      auto const r = std::from_chars(first, last, v);
      if (r.ptr != last || (r.ec != std::errc{} && r.ec != std::errc::result_out_of_range)) {
        ec = make_error_code(Error::not_a_number);
      } else if (r.ec == std::errc{} && v == 0) {
        out = 0;
      } else {
        ec = make_error_code(Error::integer_out_of_range);
      }
      return;
    }
  }
  from_chars_whole(first, last, out, ec);
}

/// Converts the whole of `s` into the floating-point `out`: decimals, exponents, "inf",
/// "+inf", "-inf", "nan" (std::from_chars, plus an optional leading '+'). Error::not_a_number
/// if it is no number, Error::integer_out_of_range if it does not fit T.
template <class T>
void to_floating(std::string_view s, T& out, boost::system::error_code& ec) noexcept {
  static_assert(std::is_floating_point_v<T>);
  if (!s.empty() && s[0] == '+') {
    s.remove_prefix(1);
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
      ec = make_error_code(Error::not_a_number);
      return;
    }
  }
  from_chars_whole(s.data(), s.data() + s.size(), out, ec);
}

}  // namespace rediskit::resp3::detail
