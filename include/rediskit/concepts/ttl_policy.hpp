// rediskit::TtlPolicy: how long a service keeps what it writes, and whether reading renews it.
//
// A type P is a TtlPolicy if, for `P const p` and std::optional<std::chrono::milliseconds> t:
//   p.write_ttl(t)  -> std::optional<milliseconds>: the TTL of a write, given the caller's own
//                      (t, when the caller passed one); nullopt: no expiry;
//   p.read_ttl()    -> std::optional<milliseconds>: a read renews the entry to this TTL (in the
//                      same round trip); nullopt: reads leave the TTL alone.
//
//   FixedTtl{1h}          every write expires after 1 h unless the caller says otherwise
//   NoTtl{}               no expiry unless the caller gives one
//   SlidingTtl{30min}     as FixedTtl, and each read renews the entry for another 30 min
//   JitteredTtl{7 * 24h}  as FixedTtl, stretched by a random 0-10 %, so entries written
//                         together (a cache warm-up) do not all expire in the same second
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <random>

namespace rediskit {

template <class P>
concept TtlPolicy = requires(P const& p, std::optional<std::chrono::milliseconds> t) {
  { p.write_ttl(t) } -> std::same_as<std::optional<std::chrono::milliseconds>>;
  { p.read_ttl() } -> std::same_as<std::optional<std::chrono::milliseconds>>;
};

/// Writes expire after `ttl` (seed 000's CacheService defaultTTL: 3600 s).
struct FixedTtl {
  std::chrono::milliseconds ttl = std::chrono::hours(1);
  std::optional<std::chrono::milliseconds> write_ttl(
      std::optional<std::chrono::milliseconds> t) const noexcept {
    return t ? t : std::optional(ttl);
  }
  std::optional<std::chrono::milliseconds> read_ttl() const noexcept { return std::nullopt; }
};

/// No expiry, unless the caller gives a TTL.
struct NoTtl {
  std::optional<std::chrono::milliseconds> write_ttl(
      std::optional<std::chrono::milliseconds> t) const noexcept {
    return t;
  }
  std::optional<std::chrono::milliseconds> read_ttl() const noexcept { return std::nullopt; }
};

/// Writes expire after `ttl`, and every read renews the entry for another `ttl`.
struct SlidingTtl {
  std::chrono::milliseconds ttl = std::chrono::minutes(30);
  std::optional<std::chrono::milliseconds> write_ttl(
      std::optional<std::chrono::milliseconds> t) const noexcept {
    return t ? t : std::optional(ttl);
  }
  std::optional<std::chrono::milliseconds> read_ttl() const noexcept { return ttl; }
};

/// Writes expire after `ttl` (or the caller's TTL) stretched by a random fraction in
/// [0, spread]: never sooner than asked, and a batch written together expires spread out.
struct JitteredTtl {
  std::chrono::milliseconds ttl = std::chrono::hours(1);
  double spread = 0.10;
  std::optional<std::chrono::milliseconds> write_ttl(
      std::optional<std::chrono::milliseconds> t) const {
    auto const base = t ? *t : ttl;
    thread_local std::minstd_rand rng{std::random_device{}()};
    std::uniform_real_distribution<double> extra(0.0, spread > 0 ? spread : 0.0);
    auto const add = static_cast<std::int64_t>(static_cast<double>(base.count()) * extra(rng));
    return base + std::chrono::milliseconds(add);
  }
  std::optional<std::chrono::milliseconds> read_ttl() const noexcept { return std::nullopt; }
};

}  // namespace rediskit
