// rediskit::cluster: which of Redis Cluster's 16384 hash slots a key lives in.
//
//   rediskit::cluster::key_slot("user:1")                 -> the slot CLUSTER KEYSLOT names
//   rediskit::cluster::hash_tag("{room:7}:members")       -> "room:7"
//   rediskit::cluster::same_slot({"{r}:a", "{r}:b"})      -> true
//
// Redis hashes a key with CRC16 (the XMODEM variant: polynomial 0x1021, initial value 0) and
// keeps the low 14 bits. When the key holds a '{' followed, later, by a '}' with at least one
// byte between them, only the bytes between the first '{' and the first '}' after it are hashed
// (the hash tag): keys that share a tag share a slot, so that one transaction or script may
// touch them all. "{}" (an empty tag) does not count: the whole key is hashed.
//
// Everything here is constexpr and allocation-free; the table is built at compile time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace rediskit::cluster {

/// Number of hash slots in a Redis Cluster.
inline constexpr std::uint16_t slot_count = 16384;

namespace detail {

inline constexpr std::array<std::uint16_t, 256> crc16_table = [] {
  std::array<std::uint16_t, 256> t{};
  for (unsigned i = 0; i < 256; ++i) {
    auto crc = static_cast<std::uint16_t>(i << 8);
    for (int b = 0; b < 8; ++b)
      crc = static_cast<std::uint16_t>((crc & 0x8000u) ? (crc << 1) ^ 0x1021u : crc << 1);
    t[i] = crc;
  }
  return t;
}();

}  // namespace detail

/// CRC16/XMODEM of `bytes`, as Redis computes it (crc16("123456789") == 0x31C3).
constexpr std::uint16_t crc16(std::string_view bytes) noexcept {
  std::uint16_t crc = 0;
  for (char const c : bytes)
    crc = static_cast<std::uint16_t>(
        (crc << 8) ^
        detail::crc16_table[((crc >> 8) ^ static_cast<unsigned char>(c)) & 0xffu]);
  return crc;
}

/// The part of `key` that Redis hashes: its hash tag when it has a non-empty one, else the key.
constexpr std::string_view hash_tag(std::string_view key) noexcept {
  auto const open = key.find('{');
  if (open == std::string_view::npos) return key;
  auto const close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

/// The hash slot of `key` (0 to 16383), the one `CLUSTER KEYSLOT key` names.
constexpr std::uint16_t key_slot(std::string_view key) noexcept {
  return static_cast<std::uint16_t>(crc16(hash_tag(key)) & (slot_count - 1));
}

/// True when every key is in the same slot (no keys, or one, is trivially true).
constexpr bool same_slot(std::initializer_list<std::string_view> keys) noexcept {
  if (keys.size() < 2) return true;
  std::uint16_t const first = key_slot(*keys.begin());
  for (auto const k : keys)
    if (key_slot(k) != first) return false;
  return true;
}

}  // namespace rediskit::cluster
