// rediskit::Codec: how a service turns a C++ value into the bytes of a Redis string and back.
//
// A codec C handles a type T (CodecFor<C, T>) when, for `C const c`:
//   c.encode(value, out)            writes the bytes of `value` into std::string `out`
//                                   (replacing what it held);
//   c.decode(bytes, value, &why)    -> boost::system::error_code: fills `value` from the bytes,
//                                   or fails with Error::decode_failed and, when `why` is not
//                                   null, writes the reason there ("field 'age': expected an
//                                   integer"). A decoder never throws on bad bytes.
// `Codec<C>` is the service-level check (CacheService<B, C>): C handles std::string.
//
// Codecs of rediskit: JsonCodec (codec/json_codec.hpp), StringCodec (codec/string_codec.hpp).
// HashCodec (codec/hash_codec.hpp) maps a struct to the fields of a Redis hash instead: see
// FieldCodecFor there.
#pragma once

#include <boost/system/error_code.hpp>

#include <concepts>
#include <string>
#include <string_view>

namespace rediskit {

template <class C, class T>
concept CodecFor = requires(C const& c, T const& v, T& t, std::string& out, std::string_view in,
                            std::string* why) {
  c.encode(v, out);
  { c.decode(in, t, why) } -> std::same_as<boost::system::error_code>;
};

/// A codec a service can take (see the top of this file).
template <class C>
concept Codec = CodecFor<C, std::string>;

/// Instantiate to learn why C is not a Codec: each failing static_assert names the piece.
template <class C>
constexpr bool check_codec() {
  static_assert(requires(C const& c, std::string const& v, std::string& out) { c.encode(v, out); },
                "not a Codec: needs `void encode(T const& value, std::string& out) const`");
  static_assert(
      requires(C const& c, std::string& t, std::string_view in, std::string* why) {
        { c.decode(in, t, why) } -> std::same_as<boost::system::error_code>;
      },
      "not a Codec: needs `boost::system::error_code decode(std::string_view bytes, T& value, "
      "std::string* why) const`");
  return true;
}

}  // namespace rediskit
