// MemoryBackend: string commands (see engine.hpp for the rules of run() overloads).
//
// Numbers follow redis-server 7.0 byte for byte: integers are parsed as its string2ll does
// (strict decimal, at most 20 characters), INCRBYFLOAT parses with strtold as its string2ld does
// and adds in long double, then prints the sum as "%.17Lf" with trailing zeros removed. The
// increment of INCRBYFLOAT is first formatted exactly as RedisBackend writes it, so that both
// backends add the same long double.
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/cmd/strings.hpp>
#include <rediskit/command.hpp>
#include <rediskit/error.hpp>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace rediskit::detail::mem {

namespace strings_impl {

inline constexpr std::string_view not_integer = "ERR value is not an integer or out of range";
inline constexpr std::string_view not_float = "ERR value is not a valid float";

/// redis-server's string2ll: strict decimal int64.
inline bool parse_int64(std::string_view s, std::int64_t& out) noexcept {
  if (s.empty() || s.size() >= 21) return false;
  if (s.size() == 1 && s[0] == '0') {
    out = 0;
    return true;
  }
  std::size_t i = 0;
  bool const negative = s[0] == '-';
  if (negative && ++i == s.size()) return false;
  if (s[i] < '1' || s[i] > '9') return false;
  std::uint64_t v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    auto const d = static_cast<std::uint64_t>(s[i] - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (negative) {
    if (v > max + 1) return false;
    out = v == max + 1 ? std::numeric_limits<std::int64_t>::min() : -static_cast<std::int64_t>(v);
  } else {
    if (v > max) return false;
    out = static_cast<std::int64_t>(v);
  }
  return true;
}

/// redis-server's string2ld: strtold over the whole text, no leading blank, no NaN, no
/// overflow, no underflow to zero, shorter than its 5 KiB buffer.
inline bool parse_long_double(std::string_view s, long double& out) {
  constexpr std::size_t kMaxChars = 5 * 1024;
  if (s.empty() || s.size() >= kMaxChars) return false;
  char buf[kMaxChars];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  errno = 0;
  char* end = nullptr;
  long double const v = std::strtold(buf, &end);
  bool const space = buf[0] == ' ' || (buf[0] >= '\t' && buf[0] <= '\r');
  if (space || *end != '\0' || static_cast<std::size_t>(end - buf) != s.size() ||
      (errno == ERANGE && (std::isinf(v) || std::fpclassify(v) == FP_ZERO)) || errno == EINVAL ||
      std::isnan(v))
    return false;
  out = v;
  return true;
}

/// redis-server's ld2string in its "human" mode: "%.17Lf", trailing zeros (and a trailing
/// point) removed, "-0" written as "0".
inline std::string format_long_double(long double v) {
  int const n = std::snprintf(nullptr, 0, "%.17Lf", v);
  std::string out(static_cast<std::size_t>(n) + 1, '\0');
  std::snprintf(out.data(), out.size(), "%.17Lf", v);
  out.resize(static_cast<std::size_t>(n));
  if (out.find('.') != std::string::npos) {
    while (out.back() == '0') out.pop_back();
    if (out.back() == '.') out.pop_back();
  }
  if (out == "-0") out = "0";
  return out;
}

/// INCR, INCRBY, DECR, DECRBY: the key keeps its TTL.
inline std::int64_t incr_by(Ctx& ctx, std::string_view key, std::int64_t by) {
  std::string* s = ctx.db.write<std::string>(ctx, key);
  if (ctx.failed()) return 0;
  std::int64_t old = 0;
  if (s && !parse_int64(*s, old)) return ctx.fail(not_integer), 0;
  constexpr std::int64_t lo = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t hi = std::numeric_limits<std::int64_t>::max();
  if ((by < 0 && old < 0 && by < lo - old) || (by > 0 && old > 0 && by > hi - old))
    return ctx.fail("ERR increment or decrement would overflow"), 0;
  std::int64_t const v = old + by;
  if (s)
    *s = std::to_string(v);
  else
    ctx.db.put(key, std::to_string(v));
  return v;
}

/// SET with or without GET. `old` receives the previous value when GET is asked for.
inline bool set_impl(Ctx& ctx, std::string_view key, std::string_view value,
                     std::optional<std::chrono::milliseconds> ttl, bool nx, bool xx,
                     bool keep_ttl, std::optional<std::string>* old) {
  if ((nx && xx) || (ttl && keep_ttl)) return ctx.fail("ERR syntax error");
  // The server adds the ttl to its unix clock and refuses what does not fit.
  if (ttl && (ttl->count() <= 0 || ttl->count() > std::numeric_limits<std::int64_t>::max() -
                                                      ctx.unix_ms()))
    return ctx.fail("ERR invalid expire time in 'set' command");
  Entry* e = ctx.db.lookup(key);
  if (old && e) {
    auto const* s = std::get_if<std::string>(&e->value);
    if (!s) return ctx.fail(wrongtype_text);
    *old = *s;
  }
  if ((nx && e) || (xx && !e)) return false;
  Entry& n = ctx.db.put(key, std::string(value), keep_ttl);
  if (ttl) {
    std::int64_t at = 0;
    if (__builtin_add_overflow(ctx.now_ms(), ttl->count(), &at))
      at = std::numeric_limits<std::int64_t>::max();
    ctx.db.set_expire(n, at);
  }
  return true;
}

}  // namespace strings_impl

inline std::optional<std::string> run(Ctx& ctx, cmd::get const& c) {
  if (auto* s = ctx.db.read<std::string>(ctx, c.key)) return *s;
  return std::nullopt;
}

inline bool run(Ctx& ctx, cmd::set const& c) {
  return strings_impl::set_impl(ctx, c.key, c.value, c.ttl, c.nx, c.xx, c.keep_ttl, nullptr);
}

inline std::optional<std::string> run(Ctx& ctx, cmd::set_get const& c) {
  std::optional<std::string> old;
  strings_impl::set_impl(ctx, c.key, c.value, c.ttl, c.nx, c.xx, c.keep_ttl, &old);
  return old;
}

inline std::optional<std::string> run(Ctx& ctx, cmd::getdel const& c) {
  std::string* s = ctx.db.read<std::string>(ctx, c.key);
  if (!s) return std::nullopt;
  std::optional<std::string> out(std::move(*s));
  ctx.db.erase(c.key);
  return out;
}

inline std::int64_t run(Ctx& ctx, cmd::incr const& c) {
  return strings_impl::incr_by(ctx, c.key, 1);
}

inline std::int64_t run(Ctx& ctx, cmd::incrby const& c) {
  return strings_impl::incr_by(ctx, c.key, c.increment);
}

inline std::int64_t run(Ctx& ctx, cmd::decr const& c) {
  return strings_impl::incr_by(ctx, c.key, -1);
}

inline std::int64_t run(Ctx& ctx, cmd::decrby const& c) {
  // Checked before the key is even looked at, as the server does.
  if (c.decrement == std::numeric_limits<std::int64_t>::min())
    return ctx.fail("ERR decrement would overflow"), 0;
  return strings_impl::incr_by(ctx, c.key, -c.decrement);
}

inline double run(Ctx& ctx, cmd::incrbyfloat const& c) {
  using namespace strings_impl;
  std::string* s = ctx.db.write<std::string>(ctx, c.key);
  if (ctx.failed()) return 0;
  long double value = 0;
  if (s && !parse_long_double(*s, value)) return ctx.fail(not_float), 0;
  // The increment as the server receives it (RedisBackend formats it the same way).
  std::string arg;
  rediskit::detail::format_arg(c.increment, [&](std::string_view a) { arg.assign(a); });
  long double incr = 0;
  if (!parse_long_double(arg, incr)) return ctx.fail(not_float), 0;
  value += incr;
  if (std::isnan(value) || std::isinf(value))
    return ctx.fail("ERR increment would produce NaN or Infinity"), 0;
  std::string text = format_long_double(value);
  // The reply is that text read as a double, as RedisBackend's adapter reads it: a sum beyond
  // double's range is stored all the same, but cannot be replied.
  double reply = 0;
  auto const r = std::from_chars(text.data(), text.data() + text.size(), reply);
  if (s)
    *s = std::move(text);
  else
    ctx.db.put(c.key, std::move(text));
  if (r.ec == std::errc::result_out_of_range && !ctx.ec)
    ctx.ec = make_error_code(Error::integer_out_of_range);
  return reply;
}

inline std::vector<std::optional<std::string>> run(Ctx& ctx, cmd::mget const& c) {
  std::vector<std::optional<std::string>> out;
  out.reserve(c.keys.size());
  c.keys.for_each([&](std::string_view k) {
    Entry* e = ctx.db.lookup(k);
    auto const* s = e ? std::get_if<std::string>(&e->value) : nullptr;
    out.push_back(s ? std::optional<std::string>(*s) : std::nullopt);
  });
  return out;
}

inline bool run(Ctx& ctx, cmd::mset const& c) {
  c.pairs.for_each([&](FieldValue kv) { ctx.db.put(kv.field, std::string(kv.value)); });
  return true;
}

inline std::int64_t run(Ctx& ctx, cmd::append const& c) {
  std::string* s = ctx.db.write<std::string>(ctx, c.key);
  if (ctx.failed()) return 0;
  if (!s) {
    ctx.db.put(c.key, std::string(c.value));
    return static_cast<std::int64_t>(c.value.size());
  }
  constexpr std::size_t kMaxBulk = 512u * 1024 * 1024;  // proto-max-bulk-len
  if (s->size() + c.value.size() > kMaxBulk)
    return ctx.fail("ERR string exceeds maximum allowed size (proto-max-bulk-len)"), 0;
  s->append(c.value);
  return static_cast<std::int64_t>(s->size());
}

inline std::int64_t run(Ctx& ctx, cmd::strlen const& c) {
  if (auto* s = ctx.db.read<std::string>(ctx, c.key)) return static_cast<std::int64_t>(s->size());
  return 0;
}

}  // namespace rediskit::detail::mem
