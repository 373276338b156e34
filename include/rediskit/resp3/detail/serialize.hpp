// rediskit::resp3::detail: writing commands as RESP arrays of bulk strings (used by Request).
#pragma once

#include <charconv>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <iterator>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

namespace rediskit::resp3::detail {

template <class>
inline constexpr bool always_false = false;

// Poison pill: the customization point is found by argument-dependent lookup only.
void rediskit_to_bulk() = delete;

/// A user type T is written as one bulk string through
/// `X rediskit_to_bulk(T const&)`, declared in T's namespace, where X converts to
/// std::string_view (std::string, std::string_view, char const*, ...).
template <class T>
concept ToBulkCustomized = requires(T const& t) {
  { rediskit_to_bulk(t) } -> std::convertible_to<std::string_view>;
};

/// Plain character types: a char is a character to some and a small number to others, so it
/// is refused rather than guessed (signed char / unsigned char / std::int8_t stay numbers).
template <class T>
inline constexpr bool is_character_v =
    std::is_same_v<T, char> || std::is_same_v<T, wchar_t> || std::is_same_v<T, char8_t> ||
    std::is_same_v<T, char16_t> || std::is_same_v<T, char32_t>;

/// Appends "<marker><n>\r\n" ("*3\r\n", "$5\r\n").
inline void append_header(std::string& out, char marker, std::size_t n) {
  char buf[24];  // marker + 20 digits + CRLF
  buf[0] = marker;
  auto const r = std::to_chars(buf + 1, buf + sizeof buf - 2, n);
  char* end = r.ptr;
  *end++ = '\r';
  *end++ = '\n';
  out.append(buf, end);
}

inline void append_bulk(std::string& out, std::string_view s) {
  append_header(out, '$', s.size());
  out.append(s);
  out.append("\r\n", 2);
}

/// Appends one argument as one bulk string.
template <class T>
void append_arg(std::string& out, T const& v) {
  if constexpr (ToBulkCustomized<T>) {
    auto&& text = rediskit_to_bulk(v);
    append_bulk(out, std::string_view(text));
  } else if constexpr (std::is_convertible_v<T const&, std::string_view>) {
    append_bulk(out, std::string_view(v));
  } else if constexpr (std::is_same_v<T, bool>) {
    static_assert(always_false<T>,
                  "rediskit::resp3::Request: a bool argument is ambiguous (Redis has no boolean "
                  "argument): pass 1 / 0, or the word the command expects");
  } else if constexpr (is_character_v<T>) {
    static_assert(always_false<T>,
                  "rediskit::resp3::Request: a char argument is ambiguous: pass "
                  "std::string_view(&c, 1) for the character or int(c) for its code");
  } else if constexpr (std::is_integral_v<T>) {
    char buf[24];
    auto const r = std::to_chars(buf, buf + sizeof buf, v);
    append_bulk(out, std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
  } else if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(v)) {
      append_bulk(out, "nan");
    } else if (std::isinf(v)) {
      append_bulk(out, v > 0 ? "inf" : "-inf");
    } else {
      char buf[64];  // shortest round-trip form: at most ~45 chars even for long double
      auto const r = std::to_chars(buf, buf + sizeof buf, v);
      append_bulk(out, std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
    }
  } else {
    static_assert(always_false<T>,
                  "rediskit::resp3::Request: cannot write this argument type. Pass something "
                  "convertible to std::string_view, an integer or a floating-point number, or "
                  "declare `rediskit_to_bulk(T const&)` (returning something convertible to "
                  "std::string_view) in T's namespace");
  }
}

/// pair / tuple / array elements of a range are flattened (HSET key f1 v1 f2 v2), unless the
/// type has its own rediskit_to_bulk.
template <class T>
concept Flattened = !ToBulkCustomized<T> && requires {
  std::tuple_size<T>::value;
};

template <class E>
constexpr std::size_t bulks_per_element() noexcept {
  if constexpr (Flattened<E>)
    return std::tuple_size_v<E>;
  else
    return 1;
}

template <class E>
void append_element(std::string& out, E const& e) {
  if constexpr (Flattened<E>)
    std::apply([&out](auto const&... parts) { (append_arg(out, parts), ...); }, e);
  else
    append_arg(out, e);
}

/// Element count of a range, known before it is written: sized ranges directly, other forward
/// ranges by a first pass (an input-only range could not be read twice).
template <class R>
std::size_t range_size(R const& r) {
  if constexpr (std::ranges::sized_range<R const>) {
    return static_cast<std::size_t>(std::ranges::size(r));
  } else {
    static_assert(std::ranges::forward_range<R const>,
                  "rediskit::resp3::Request::push_range needs a sized or forward range: the "
                  "element count is written before the elements");
    return static_cast<std::size_t>(std::ranges::distance(r));
  }
}

/// Commands answered with pushes only in RESP3: they get no regular reply.
constexpr bool is_push_only_command(std::string_view command) noexcept {
  constexpr std::string_view names[] = {"subscribe",   "psubscribe",   "ssubscribe",
                                        "unsubscribe", "punsubscribe", "sunsubscribe"};
  for (std::string_view const name : names) {
    if (command.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i) {
      char c = command[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      same = c == name[i];
    }
    if (same) return true;
  }
  return false;
}

}  // namespace rediskit::resp3::detail
