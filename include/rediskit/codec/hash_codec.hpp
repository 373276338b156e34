// rediskit::HashCodec: a described struct as the fields of a Redis hash, one field per member,
// as seed 001's profiles (`user:profile:{id}`: fullName, avatar, matricule, updatedAt ...).
//
//   struct Profile { std::string fullName; std::string avatar; std::int64_t updatedAt = 0; };
//   BOOST_DESCRIBE_STRUCT(Profile, (), (fullName, avatar, updatedAt))
//   HashCodec h;  HashCodec::Fields f;  h.encode(p, f);   // {{"fullName","Jean"}, ...}
//   co_await db.async_exec(transaction(cmd::del{key}, cmd::hset{key, f}, cmd::pexpire{key, ttl}));
//   auto all = co_await db.async_exec(cmd::hgetall{key});  Profile q;  h.decode(all, q, &why);
//
// Members: strings as they are; numbers as decimal text; booleans "true" / "false" ("1" / "0"
// read too); described enums by name; durations and time points as the count of their units;
// std::optional as the field's absence; anything else (nested structs, containers) as JSON
// text. A writer replaces the whole hash (DEL + HSET in one transaction, as above), so a
// member that became empty does not survive as a stale field. Decoding: a field missing from
// the hash keeps the member's default; a field that does not parse fails with
// Error::decode_failed naming it; fields the struct lacks are ignored.
#pragma once

#include <rediskit/codec/json_codec.hpp>
#include <rediskit/codec/traits.hpp>
#include <rediskit/error.hpp>

#include <array>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

namespace detail::hash {

using namespace detail::codec;

template <class T>
void encode_member(T const& v, std::string& out) {
  if constexpr (Text<T>) {
    out.assign(v.data(), v.size());
  } else if constexpr (std::is_same_v<T, bool>) {
    out = v ? "true" : "false";
  } else if constexpr (std::is_arithmetic_v<T>) {
    append_number(out, v);
  } else if constexpr (is_duration<T>::value) {
    append_number(out, v.count());
  } else if constexpr (is_time_point<T>::value) {
    append_number(out, v.time_since_epoch().count());
  } else if constexpr (DescribedEnum<T>) {
    if (char const* name = boost::describe::enum_to_string(v, nullptr))
      out = name;
    else
      append_number(out, static_cast<std::underlying_type_t<T>>(v));
  } else if constexpr (std::is_enum_v<T>) {
    append_number(out, static_cast<std::underlying_type_t<T>>(v));
  } else {
    JsonCodec{}.encode(v, out);
  }
}

template <class T>
bool decode_member(std::string_view s, T& v, std::string& why) {
  if constexpr (std::is_same_v<T, std::string>) {
    v.assign(s.data(), s.size());
    return true;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (s == "true" || s == "1") return v = true, true;
    if (s == "false" || s == "0") return v = false, true;
  } else if constexpr (std::is_arithmetic_v<T>) {
    if (parse_number(s, v)) return true;
  } else if constexpr (is_duration<T>::value) {
    typename T::rep r{};
    if (parse_number(s, r)) return v = T(r), true;
  } else if constexpr (is_time_point<T>::value) {
    typename T::rep r{};
    if (parse_number(s, r)) return v = T(typename T::duration(r)), true;
  } else if constexpr (DescribedEnum<T>) {
    if (enum_from_name(s, v)) return true;
  } else if constexpr (std::is_enum_v<T>) {
    std::underlying_type_t<T> n{};
    if (parse_number(s, n)) return v = static_cast<T>(n), true;
  } else {
    if (!JsonCodec{}.decode(s, v, &why)) return true;
    return false;
  }
  why = "expected ";
  why.append(kind_name<T>()).append(", got '").append(s.substr(0, 64));
  why.append(s.size() > 64 ? "...'" : "'");
  return false;
}

}  // namespace detail::hash

/// A described struct <-> the fields of a Redis hash (see the top of this file).
struct HashCodec {
  using Fields = std::vector<std::pair<std::string, std::string>>;

  /// The struct's field names, in declaration order (for HMGET).
  template <detail::codec::Described T>
  static auto field_names() {
    using L = detail::codec::members_of<T>;
    std::array<std::string_view, boost::mp11::mp_size<L>::value> names{};
    std::size_t i = 0;
    boost::mp11::mp_for_each<L>([&](auto D) { names[i++] = D.name; });
    return names;
  }

  template <detail::codec::Described T>
  void encode(T const& value, Fields& out) const {
    out.clear();
    boost::mp11::mp_for_each<detail::codec::members_of<T>>([&](auto D) {
      auto const& m = value.*D.pointer;
      using M = std::remove_cvref_t<decltype(m)>;
      if constexpr (detail::codec::is_optional<M>::value) {
        if (!m) return;
        out.emplace_back(D.name, std::string());
        detail::hash::encode_member(*m, out.back().second);
      } else {
        out.emplace_back(D.name, std::string());
        detail::hash::encode_member(m, out.back().second);
      }
    });
  }

  /// From HGETALL's field/value pairs.
  template <detail::codec::Described T>
  boost::system::error_code decode(Fields const& fields, T& value, std::string* why) const {
    std::string reason;
    bool ok = true;
    for (auto const& field : fields) {  // no structured binding: clang 14 cannot capture one
      boost::mp11::mp_for_each<detail::codec::members_of<T>>([&](auto D) {
        if (!ok || field.first != D.name) return;
        if (!decode_one(field.second, value.*D.pointer, reason)) {
          reason = "field '" + field.first + "': " + reason;
          ok = false;
        }
      });
      if (!ok) break;
    }
    if (ok) return {};
    if (why) *why = std::move(reason);
    return make_error_code(Error::decode_failed);
  }

  /// From HMGET's replies, in field_names<T>() order (a null: the member keeps its default).
  template <detail::codec::Described T>
  boost::system::error_code decode(std::vector<std::optional<std::string>> const& values,
                                   T& value, std::string* why) const {
    std::string reason;
    bool ok = true;
    std::size_t i = 0;
    boost::mp11::mp_for_each<detail::codec::members_of<T>>([&](auto D) {
      std::size_t const at = i++;
      if (!ok || at >= values.size() || !values[at]) return;
      if (!decode_one(*values[at], value.*D.pointer, reason)) {
        reason = "field '" + std::string(D.name) + "': " + reason;
        ok = false;
      }
    });
    if (ok) return {};
    if (why) *why = std::move(reason);
    return make_error_code(Error::decode_failed);
  }

 private:
  template <class M>
  static bool decode_one(std::string_view text, M& m, std::string& why) {
    if constexpr (detail::codec::is_optional<M>::value) {
      typename M::value_type v{};
      if (!detail::hash::decode_member(text, v, why)) return false;
      m = std::move(v);
      return true;
    } else {
      return detail::hash::decode_member(text, m, why);
    }
  }
};

}  // namespace rediskit
