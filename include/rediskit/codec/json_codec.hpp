// rediskit::JsonCodec: values as JSON text (Boost.JSON), as the seeds' Node services store them
// (JSON.stringify / JSON.parse), so both can share a cache.
//
//   struct Profile { std::string name; int age = 0; std::optional<std::string> avatar; };
//   BOOST_DESCRIBE_STRUCT(Profile, (), (name, age, avatar))
//   JsonCodec c;  std::string bytes;  c.encode(Profile{"Alice", 30, {}}, bytes);
//   // {"name":"Alice","age":30,"avatar":null}
//
// Types: described structs (Boost.Describe, public and inherited members) as objects;
// described enums as their enumerator names (others as integers); std::optional (null);
// std::chrono durations and time points as the count of their units (milliseconds stay
// milliseconds); maps with string keys as objects; sequences (vector, list, set, array ...)
// as arrays; strings, booleans, numbers; anything else through Boost.JSON's own conversions
// (value_from / value_to, tag_invoke), so a type that already converts keeps its format.
//
// Decoding is checked: a number where a string is expected, an integer out of range, a
// name that is no enumerator, or bytes that are not JSON fail with Error::decode_failed and a
// reason naming the field ("field 'address.zip': expected a string, got a number"). A member
// missing from the object keeps the value it had (decode into a default-constructed value:
// its default), as JSON written by an older version of the type, or by JavaScript, omits it.
// Extra members are ignored.
//
// A type made only of described structs, strings, numbers, booleans, described enums,
// optionals and vectors is read straight from the text into its members (json_reader.hpp),
// with no boost::json::value in between; any other type, and any text the direct reader
// gives up on, goes through the document. Both give the same value and the same errors.
#pragma once

#include <rediskit/codec/json_reader.hpp>
#include <rediskit/codec/traits.hpp>
#include <rediskit/concepts/codec.hpp>
#include <rediskit/error.hpp>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <array>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

namespace rediskit {

namespace detail::json {

namespace bj = boost::json;
using namespace detail::codec;

inline std::string_view kind_of(bj::value const& v) {
  switch (v.kind()) {
    case bj::kind::null: return "null";
    case bj::kind::bool_: return "a boolean";
    case bj::kind::int64:
    case bj::kind::uint64: return "an integer";
    case bj::kind::double_: return "a number";
    case bj::kind::string: return "a string";
    case bj::kind::array: return "an array";
    case bj::kind::object: return "an object";
  }
  return "a value";
}

template <class T>
void to_json(bj::value& jv, T const& v);

template <class T>
void to_json(bj::value& jv, T const& v) {
  if constexpr (std::is_same_v<T, bool>) {
    jv = v;
  } else if constexpr (Integer<T>) {
    if constexpr (std::is_signed_v<T>)
      jv = static_cast<std::int64_t>(v);
    else
      jv = static_cast<std::uint64_t>(v);
  } else if constexpr (std::is_floating_point_v<T>) {
    jv = static_cast<double>(v);
  } else if constexpr (Text<T> || std::is_same_v<T, char const*>) {
    jv = bj::string_view(std::string_view(v));
  } else if constexpr (is_optional<T>::value) {
    if (v)
      to_json(jv, *v);
    else
      jv = nullptr;
  } else if constexpr (is_duration<T>::value) {
    to_json(jv, v.count());
  } else if constexpr (is_time_point<T>::value) {
    to_json(jv, v.time_since_epoch().count());
  } else if constexpr (DescribedEnum<T>) {
    if (char const* name = boost::describe::enum_to_string(v, nullptr))
      jv = bj::string_view(name);
    else
      jv = static_cast<std::int64_t>(v);
  } else if constexpr (std::is_enum_v<T>) {
    jv = static_cast<std::int64_t>(v);
  } else if constexpr (Described<T>) {
    bj::object& o = jv.emplace_object();
    boost::mp11::mp_for_each<members_of<T>>([&](auto D) {
      bj::value m(o.storage());
      to_json(m, v.*D.pointer);
      o.emplace(D.name, std::move(m));
    });
  } else if constexpr (MapLike<T>) {
    bj::object& o = jv.emplace_object();
    for (auto const& [k, m] : v) {
      bj::value e(o.storage());
      to_json(e, m);
      o.emplace(std::string_view(k), std::move(e));
    }
  } else if constexpr (std::ranges::range<T>) {
    bj::array& a = jv.emplace_array();
    for (auto const& e : v) {
      bj::value x(a.storage());
      to_json(x, e);
      a.push_back(std::move(x));
    }
  } else {
    jv = bj::value_from(v, jv.storage());
  }
}

// A failed decode: the reason, and the path to it built on the way back up.
struct Failure {
  std::string reason;
  std::vector<std::string> path;  // innermost first
};

template <class T>
bool mismatch(bj::value const& jv, Failure& f) {
  f.reason = "expected ";
  f.reason.append(kind_name<T>()).append(", got ").append(kind_of(jv));
  return false;
}

template <class T>
bool from_json(bj::value const& jv, T& out, Failure& f);

template <class T>
bool from_json(bj::value const& jv, T& out, Failure& f) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!jv.is_bool()) return mismatch<T>(jv, f);
    out = jv.get_bool();
    return true;
  } else if constexpr (Integer<T> || std::is_floating_point_v<T>) {
    if (!jv.is_number()) return mismatch<T>(jv, f);
    boost::system::error_code ec;
    T n = jv.to_number<T>(ec);
    if (ec) {
      f.reason = std::string("the number ") + bj::serialize(jv) + " does not fit " +
                 std::string(kind_name<T>()) + " of this size";
      return false;
    }
    out = n;
    return true;
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!jv.is_string()) return mismatch<T>(jv, f);
    out.assign(jv.get_string().data(), jv.get_string().size());
    return true;
  } else if constexpr (is_optional<T>::value) {
    if (jv.is_null()) {
      out.reset();
      return true;
    }
    typename T::value_type v{};
    if (!from_json(jv, v, f)) return false;
    out = std::move(v);
    return true;
  } else if constexpr (is_duration<T>::value) {
    typename T::rep r{};
    if (!from_json(jv, r, f)) return false;
    out = T(r);
    return true;
  } else if constexpr (is_time_point<T>::value) {
    typename T::duration d{};
    if (!from_json(jv, d, f)) return false;
    out = T(d);
    return true;
  } else if constexpr (DescribedEnum<T>) {
    if (jv.is_string()) {
      std::string_view s(jv.get_string().data(), jv.get_string().size());
      if (enum_from_name(s, out)) return true;
      f.reason = "'" + std::string(s) + "' is no enumerator of the type";
      return false;
    }
    if (jv.is_int64()) {
      out = static_cast<T>(jv.get_int64());
      return true;
    }
    return mismatch<T>(jv, f);
  } else if constexpr (std::is_enum_v<T>) {
    std::underlying_type_t<T> n{};
    if (!from_json(jv, n, f)) return false;
    out = static_cast<T>(n);
    return true;
  } else if constexpr (Described<T>) {
    if (!jv.is_object()) return mismatch<T>(jv, f);
    bj::object const& o = jv.get_object();
    bool ok = true;
    boost::mp11::mp_for_each<members_of<T>>([&](auto D) {
      if (!ok) return;
      auto it = o.find(D.name);
      if (it == o.end()) return;  // keeps its default (see the top of this file)
      if (!from_json(it->value(), out.*D.pointer, f)) {
        f.path.emplace_back(D.name);
        ok = false;
      }
    });
    return ok;
  } else if constexpr (MapLike<T>) {
    if (!jv.is_object()) return mismatch<T>(jv, f);
    out.clear();
    for (auto const& kv : jv.get_object()) {
      typename T::mapped_type m{};
      if (!from_json(kv.value(), m, f)) {
        f.path.emplace_back(kv.key());
        return false;
      }
      out.emplace(typename T::key_type(kv.key()), std::move(m));
    }
    return true;
  } else if constexpr (Sequence<T>) {
    if (!jv.is_array()) return mismatch<T>(jv, f);
    out.clear();
    std::size_t i = 0;
    for (auto const& e : jv.get_array()) {
      std::ranges::range_value_t<T> v{};
      if (!from_json(e, v, f)) {
        f.path.push_back("[" + std::to_string(i) + "]");
        return false;
      }
      out.insert(out.end(), std::move(v));
      ++i;
    }
    return true;
  } else if constexpr (requires { std::tuple_size<T>::value; } && std::ranges::range<T>) {
    // std::array: exactly its size.
    if (!jv.is_array()) return mismatch<T>(jv, f);
    auto const& a = jv.get_array();
    if (a.size() != out.size()) {
      f.reason = "expected an array of " + std::to_string(out.size()) + " elements, got " +
                 std::to_string(a.size());
      return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!from_json(a[i], out[i], f)) {
        f.path.push_back("[" + std::to_string(i) + "]");
        return false;
      }
    }
    return true;
  } else {
    try {
      out = bj::value_to<T>(jv);
      return true;
    } catch (std::exception const& e) {
      f.reason = e.what();
      return false;
    }
  }
}

inline std::string describe_failure(Failure const& f) {
  if (f.path.empty()) return f.reason;
  std::string where;
  for (auto it = f.path.rbegin(); it != f.path.rend(); ++it) {
    if (!where.empty() && (*it)[0] != '[') where.push_back('.');
    where.append(*it);
  }
  return "field '" + where + "': " + f.reason;
}

// Decodes through a boost::json::value: every type, and every failure's message.
template <class T>
boost::system::error_code decode_document(std::string_view bytes, T& value, std::string* why) {
  unsigned char buf[4096];
  bj::monotonic_resource mr(buf, sizeof buf);
  boost::system::error_code ec;
  bj::value jv = bj::parse(bytes, ec, &mr);
  if (ec) {
    if (why) *why = "not JSON (" + ec.message() + ")";
    return make_error_code(Error::decode_failed);
  }
  Failure f;
  if (!from_json(jv, value, f)) {
    if (why) *why = describe_failure(f);
    return make_error_code(Error::decode_failed);
  }
  return {};
}

}  // namespace detail::json

/// Values as JSON text (see the top of this file).
struct JsonCodec {
  template <class T>
  void encode(T const& value, std::string& out) const {
    unsigned char buf[2048];
    boost::json::monotonic_resource mr(buf, sizeof buf);
    boost::json::value jv(&mr);
    detail::json::to_json(jv, value);
    out = boost::json::serialize(jv);
  }

  template <class T>
  boost::system::error_code decode(std::string_view bytes, T& value, std::string* why) const {
    if constexpr (detail::json_reader::Direct<T>) {
      // Straight into the value (json_reader.hpp); through the document when that gives up.
      T copy = value;
      if (detail::json_reader::read(bytes, copy)) {
        value = std::move(copy);
        return {};
      }
    }
    return detail::json::decode_document(bytes, value, why);
  }
};

}  // namespace rediskit
