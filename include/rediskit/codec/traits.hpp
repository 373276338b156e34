// Type traits shared by rediskit's codecs (JsonCodec, HashCodec, StringCodec).
#pragma once

#include <boost/describe/class.hpp>
#include <boost/describe/enum.hpp>
#include <boost/describe/enum_to_string.hpp>
#include <boost/describe/members.hpp>
#include <boost/describe/modifiers.hpp>
#include <boost/mp11/algorithm.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace rediskit::detail::codec {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class T>
struct is_duration : std::false_type {};
template <class R, class P>
struct is_duration<std::chrono::duration<R, P>> : std::true_type {};

template <class T>
struct is_time_point : std::false_type {};
template <class C, class D>
struct is_time_point<std::chrono::time_point<C, D>> : std::true_type {};

template <class T>
concept Text = std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>;

template <class T>
concept Integer = std::is_integral_v<T> && !std::is_same_v<T, bool>;

template <class T>
concept Described = boost::describe::has_describe_members<T>::value;

template <class T>
concept DescribedEnum = std::is_enum_v<T> && boost::describe::has_describe_enumerators<T>::value;

template <class T>
concept MapLike = std::ranges::range<T> && requires {
  typename T::key_type;
  typename T::mapped_type;
} && std::is_convertible_v<typename T::key_type const&, std::string_view>;

template <class T>
concept Sequence = std::ranges::range<T> && !Text<T> && !MapLike<T> &&
                   requires(T& t, std::ranges::range_value_t<T> v) { t.insert(t.end(), v); };

/// The enumerator named `name` (Boost 1.81's enum_from_string takes only a C string).
template <DescribedEnum E>
bool enum_from_name(std::string_view name, E& out) noexcept {
  bool found = false;
  boost::mp11::mp_for_each<boost::describe::describe_enumerators<E>>([&](auto D) {
    if (!found && name == D.name) {
      out = D.value;
      found = true;
    }
  });
  return found;
}

/// The public members of a described struct (its bases' included).
template <class T>
using members_of =
    boost::describe::describe_members<T, boost::describe::mod_public | boost::describe::mod_inherited>;

/// A number as the shortest decimal text that reads back to it (std::to_chars).
template <class N>
void append_number(std::string& out, N n) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
  out.append(buf, end);
}

/// Parses the whole of `s` as N; false if it is not exactly a number of that type.
template <class N>
bool parse_number(std::string_view s, N& n) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  return ec == std::errc{} && end == s.data() + s.size();
}

template <class T>
constexpr std::string_view kind_name() {
  if constexpr (std::is_same_v<T, bool>)
    return "a boolean";
  else if constexpr (Integer<T>)
    return "an integer";
  else if constexpr (std::is_floating_point_v<T>)
    return "a number";
  else if constexpr (Text<T>)
    return "a string";
  else if constexpr (is_duration<T>::value || is_time_point<T>::value)
    return "a number (a count of the duration's units)";
  else if constexpr (DescribedEnum<T>)
    return "the name of an enumerator";
  else if constexpr (std::is_enum_v<T>)
    return "an integer (enum)";
  else if constexpr (Described<T> || MapLike<T>)
    return "an object";
  else if constexpr (Sequence<T>)
    return "an array";
  else
    return "a value of the right type";
}

}  // namespace rediskit::detail::codec
