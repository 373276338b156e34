// rediskit::StringCodec: strings as their bytes, numbers as their decimal text (what INCR,
// INCRBYFLOAT and the Node services' String(n) write), booleans as "true" / "false".
//
// A value that is not exactly a number of the requested type ("12abc", "1e400" for a double,
// "300" for an std::uint8_t) fails with Error::decode_failed and says so.
#pragma once

#include <rediskit/codec/traits.hpp>
#include <rediskit/concepts/codec.hpp>
#include <rediskit/error.hpp>

#include <string>
#include <string_view>
#include <type_traits>

namespace rediskit {

/// Strings as bytes, numbers as decimal text (see the top of this file).
struct StringCodec {
  template <class T>
    requires detail::codec::Text<T> || std::is_arithmetic_v<T>
  void encode(T const& value, std::string& out) const {
    if constexpr (detail::codec::Text<T>) {
      out.assign(value.data(), value.size());
    } else if constexpr (std::is_same_v<T, bool>) {
      out.assign(value ? "true" : "false");
    } else {
      out.clear();
      detail::codec::append_number(out, value);
    }
  }

  template <class T>
    requires std::is_same_v<T, std::string> || std::is_arithmetic_v<T>
  boost::system::error_code decode(std::string_view bytes, T& value, std::string* why) const {
    if constexpr (std::is_same_v<T, std::string>) {
      value.assign(bytes.data(), bytes.size());
      return {};
    } else if constexpr (std::is_same_v<T, bool>) {
      if (bytes == "true" || bytes == "1") {
        value = true;
        return {};
      }
      if (bytes == "false" || bytes == "0") {
        value = false;
        return {};
      }
    } else if (detail::codec::parse_number(bytes, value)) {
      return {};
    }
    if (why) {
      *why = "expected ";
      why->append(detail::codec::kind_name<T>()).append(", got '");
      why->append(bytes.substr(0, 64)).append(bytes.size() > 64 ? "...'" : "'");
    }
    return make_error_code(Error::decode_failed);
  }
};

}  // namespace rediskit
