// rediskit::detail::sha1_hex: SHA-1 of a script's source, the name EVALSHA knows it by
// (FIPS 180-4; not used for security).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rediskit::detail {

inline std::string sha1_hex(std::string_view data) {
  std::uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  auto rol = [](std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
  auto block = [&](unsigned char const* p) {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i)
      w[i] = std::uint32_t(p[4 * i]) << 24 | std::uint32_t(p[4 * i + 1]) << 16 |
             std::uint32_t(p[4 * i + 2]) << 8 | std::uint32_t(p[4 * i + 3]);
    for (int i = 16; i < 80; ++i) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999u;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1u;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDCu;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6u;
      }
      std::uint32_t const t = rol(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rol(b, 30);
      b = a;
      a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  };
  std::size_t i = 0;
  for (; i + 64 <= data.size(); i += 64) block(reinterpret_cast<unsigned char const*>(data.data() + i));
  unsigned char tail[128] = {};
  std::size_t const rest = data.size() - i;
  for (std::size_t j = 0; j < rest; ++j) tail[j] = static_cast<unsigned char>(data[i + j]);
  tail[rest] = 0x80;
  std::size_t const len = rest < 56 ? 64 : 128;
  std::uint64_t const bits = std::uint64_t(data.size()) * 8;
  for (int j = 0; j < 8; ++j) tail[len - 1 - j] = static_cast<unsigned char>(bits >> (8 * j));
  block(tail);
  if (len == 128) block(tail + 64);
  std::string out(40, '0');
  for (int j = 0; j < 5; ++j)
    for (int k = 0; k < 8; ++k) out[8 * j + k] = "0123456789abcdef"[(h[j] >> (28 - 4 * k)) & 15];
  return out;
}

}  // namespace rediskit::detail
