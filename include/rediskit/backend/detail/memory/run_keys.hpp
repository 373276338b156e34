// MemoryBackend: key commands (see engine.hpp for the rules of run() overloads).
//
// TTLs live on the engine clock (ctx.now_ms()); the server adds a ttl to its unix clock and
// refuses sums that overflow 64 bits, so those checks use ctx.unix_ms(). GT / LT compare engine
// times, which differ from the server's unix times by a constant: the same answers.
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/detail/glob.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rediskit::detail::mem {

namespace keys_impl {

/// EXPIRE / PEXPIRE: `ttl` in `unit_ms` milliseconds.
inline bool expire(Ctx& ctx, std::string_view key, std::int64_t ttl, std::int64_t unit_ms,
                   std::optional<ExpireCondition> cond, std::string_view name) {
  constexpr std::int64_t lo = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t hi = std::numeric_limits<std::int64_t>::max();
  auto invalid = [&] {
    return ctx.fail("ERR invalid expire time in '" + std::string(name) + "' command");
  };
  // The server's overflow checks, made before it looks the key up.
  if (unit_ms != 1 && (ttl > hi / unit_ms || ttl < lo / unit_ms)) return invalid();
  std::int64_t const ms = ttl * unit_ms;
  if (ms > hi - ctx.unix_ms()) return invalid();

  Entry* e = ctx.db.lookup(key);
  if (!e) return false;
  std::int64_t at = 0;  // engine time of the new expiry, saturated
  if (__builtin_add_overflow(ctx.now_ms(), ms, &at)) at = ms > 0 ? hi : lo;
  std::int64_t const current = e->expire_at;  // 0: none
  if (cond) {
    switch (*cond) {
      case ExpireCondition::nx:
        if (current != 0) return false;
        break;
      case ExpireCondition::xx:
        if (current == 0) return false;
        break;
      case ExpireCondition::gt:
        if (current == 0 || at <= current) return false;
        break;
      case ExpireCondition::lt:
        if (current != 0 && at >= current) return false;
        break;
    }
  }
  if (ms <= 0) {  // already expired: the server deletes the key (and answers 1)
    ctx.db.erase(key);
    return true;
  }
  ctx.db.set_expire(*e, at);
  return true;
}

/// -2 missing, -1 no TTL, else the remaining milliseconds (never negative).
inline std::int64_t pttl(Ctx& ctx, std::string_view key) {
  Entry const* e = ctx.db.keys().find(key);  // no LRU touch, as the server's LOOKUP_NOTOUCH
  if (!e) return -2;
  if (e->expire_at == 0) return -1;
  std::int64_t const left = e->expire_at - ctx.now_ms();
  return left < 0 ? 0 : left;
}

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace keys_impl

inline std::int64_t run(Ctx& ctx, cmd::del const& c) {
  std::int64_t n = 0;
  c.keys.for_each([&](std::string_view k) { n += ctx.db.erase(k) ? 1 : 0; });
  return n;
}

inline std::int64_t run(Ctx& ctx, cmd::unlink const& c) {
  std::int64_t n = 0;
  c.keys.for_each([&](std::string_view k) { n += ctx.db.erase(k) ? 1 : 0; });
  return n;
}

inline std::int64_t run(Ctx& ctx, cmd::exists const& c) {
  std::int64_t n = 0;
  // Not an access for LRU eviction (the server looks up with LOOKUP_NOTOUCH).
  c.keys.for_each([&](std::string_view k) { n += ctx.db.keys().contains(k) ? 1 : 0; });
  return n;
}

inline bool run(Ctx& ctx, cmd::expire const& c) {
  return keys_impl::expire(ctx, c.key, c.ttl.count(), 1000, c.condition, "expire");
}

inline bool run(Ctx& ctx, cmd::pexpire const& c) {
  return keys_impl::expire(ctx, c.key, c.ttl.count(), 1, c.condition, "pexpire");
}

inline std::int64_t run(Ctx& ctx, cmd::ttl const& c) {
  std::int64_t const ms = keys_impl::pttl(ctx, c.key);
  return ms < 0 ? ms : (ms + 500) / 1000;  // rounded to the nearest second, as the server does
}

inline std::int64_t run(Ctx& ctx, cmd::pttl const& c) { return keys_impl::pttl(ctx, c.key); }

inline bool run(Ctx& ctx, cmd::persist const& c) {
  Entry* e = ctx.db.lookup(c.key);
  if (!e || e->expire_at == 0) return false;
  ctx.db.set_expire(*e, 0);
  return true;
}

inline std::string run(Ctx& ctx, cmd::type const& c) {
  Entry const* e = ctx.db.keys().find(c.key);  // no LRU touch (LOOKUP_NOTOUCH)
  return std::string(e ? type_name(e->value) : "none");
}

inline ScanPage run(Ctx& ctx, cmd::scan const& c) {
  ScanPage page;
  std::int64_t const count = c.count.value_or(10);
  if (count < 1) return ctx.fail("ERR syntax error"), page;
  page.cursor = ctx.db.keys().scan(
      c.cursor, static_cast<std::size_t>(count), [&](std::string const& k, Entry const& e) {
        if (c.match && !rediskit::detail::scan_match(*c.match, k)) return;
        if (c.type && !keys_impl::iequals(*c.type, type_name(e.value))) return;
        page.keys.push_back(k);
      });
  return page;
}

inline std::vector<std::string> run(Ctx& ctx, cmd::keys const& c) {
  std::vector<std::string> out;
  ctx.db.keys().for_each([&](std::string const& k, Entry const&) {
    if (rediskit::detail::scan_match(c.pattern, k)) out.push_back(k);
  });
  return out;
}

}  // namespace rediskit::detail::mem
