// rediskit::detail::crypto: SHA-256 and random bytes from OpenSSL's libcrypto (the `rediskit`
// target links OpenSSL::SSL, and with it libcrypto). <openssl/evp.h> and <openssl/rand.h> cost
// tens of milliseconds of compile time, unlike <openssl/ssl.h> and asio::ssl
// (rediskit/detail/tls.hpp): cmake/CheckLayers.cmake lets this header include those two only.
#pragma once

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

namespace rediskit::detail::crypto {

/// The SHA-256 of `text`; nullopt if libcrypto failed.
inline std::optional<std::array<unsigned char, 32>> sha256(std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int size = 0;
  if (EVP_Digest(text.data(), text.size(), md.data(), &size, EVP_sha256(), nullptr) != 1 ||
      size != 32)
    return std::nullopt;
  std::array<unsigned char, 32> out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = md[i];
  return out;
}

/// `n` bytes from OpenSSL's CSPRNG (seeded by the OS); nullopt if it failed.
inline std::optional<std::vector<unsigned char>> random_bytes(std::size_t n) {
  std::vector<unsigned char> b(n);
  if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) return std::nullopt;
  return b;
}

}  // namespace rediskit::detail::crypto
