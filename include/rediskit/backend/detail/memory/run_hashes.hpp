// MemoryBackend: hashes commands (see engine.hpp for the rules of run() overloads).
//
// Numbers stored in hash values follow redis-server 7.0 byte for byte: HINCRBY reads a value
// only when it is a canonical 64-bit integer; HINCRBYFLOAT reads it as strtold does (hex,
// "inf", exponents, a leading '+'; no blank, nothing after the number), adds in long double
// and stores the sum as "%.17Lf" with trailing zeros removed, as the server does, so that a
// later HGET returns the same text on every backend.
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/cmd/hashes.hpp>
#include <rediskit/detail/glob.hpp>
#include <rediskit/resp3/detail/numbers.hpp>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__GLIBC__)
#include <locale.h>
#endif

namespace rediskit::detail::mem {

namespace hash_impl {

/// A 64-bit integer written canonically (the server's string2ll): an optional '-', no leading
/// zero (except "0" itself), no '+', no blank, and it fits.
inline bool parse_canonical_int(std::string_view s, std::int64_t& out) noexcept {
  if (s.empty() || s.size() >= 21) return false;
  if (s == "0") return out = 0, true;
  std::size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size() || s[i] < '1' || s[i] > '9') return false;
  std::int64_t v = 0;
  auto const r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || r.ptr != s.data() + s.size()) return false;
  out = v;
  return true;
}

/// The server's longest long double text (its MAX_LONG_DOUBLE_CHARS).
inline constexpr std::size_t kMaxLongDoubleChars = 5 * 1024;

/// strtold in the "C" locale, whatever locale the application set (the server's numbers
/// always have a '.').
inline long double strtold_c(char const* s, char** end) {
#if defined(__GLIBC__)
  static locale_t const c_locale = newlocale(LC_ALL_MASK, "C", locale_t(0));
  if (c_locale != locale_t(0)) return strtold_l(s, end, c_locale);
#endif
  return std::strtold(s, end);
}

/// A long double as the server reads one (string2ld): what strtold accepts over the whole
/// text, not starting with a blank, not NaN, and neither overflowing nor underflowing to zero.
inline bool parse_long_double(std::string_view s, long double& out) {
  if (s.empty() || s.size() >= kMaxLongDoubleChars) return false;
  if (std::string_view(" \t\n\v\f\r").find(s[0]) != std::string_view::npos) return false;
  std::string buf(s);  // NUL-terminated copy: an embedded NUL ends strtold's input early
  char* end = nullptr;
  errno = 0;
  long double const v = strtold_c(buf.c_str(), &end);
  if (end != buf.c_str() + buf.size() || (errno == ERANGE && (std::isinf(v) || v == 0.0L)) ||
      errno == EINVAL || std::isnan(v))
    return false;
  out = v;
  return true;
}

/// A finite long double as the server writes a HINCRBYFLOAT / INCRBYFLOAT result ("%.17Lf"):
/// 17 fractional digits, trailing zeros (and a bare '.') removed, "-0" written "0".
inline std::string format_long_double(long double v) {
  char buf[kMaxLongDoubleChars];
  auto const r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 17);
  std::string s(buf, r.ec == std::errc{} ? static_cast<std::size_t>(r.ptr - buf) : 0);
  if (s.find('.') != std::string::npos) {
    while (!s.empty() && s.back() == '0')
      s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

/// Visits every (field, value) in slot order: insertion order until deletions free slots,
/// which keeps small replies in the order a server's small hash has.
template <class V, class F>
void each_in_order(ScanMap<V> const& m, F&& f) {
  m.scan(0, m.size(), f);
}

/// HSCAN / SSCAN: the COUNT check the server makes once it found the key.
inline bool scan_count_ok(Ctx& ctx, std::optional<std::int64_t> count) {
  if (count && *count < 1) return ctx.fail("ERR syntax error");
  return true;
}

}  // namespace hash_impl

inline std::int64_t run(Ctx& ctx, cmd::hset const& c) {
  Hash* h = ctx.db.create<Hash>(ctx, c.key);
  if (!h) return 0;
  std::int64_t added = 0;
  c.fields.for_each([&](FieldValue fv) { added += h->assign(fv.field, std::string(fv.value)); });
  return added;
}

inline bool run(Ctx& ctx, cmd::hsetnx const& c) {
  Hash* h = ctx.db.create<Hash>(ctx, c.key);
  if (!h || h->contains(c.field)) return false;
  h->assign(c.field, std::string(c.value));
  return true;
}

inline std::optional<std::string> run(Ctx& ctx, cmd::hget const& c) {
  Hash const* h = ctx.db.read<Hash>(ctx, c.key);
  if (!h) return std::nullopt;
  if (std::string const* v = h->find(c.field)) return *v;
  return std::nullopt;
}

/// HMGET's values as views (Engine::exec_view; run() copies them).
inline std::vector<std::optional<std::string_view>> view_of(Ctx& ctx, cmd::hmget const& c) {
  Hash const* h = ctx.db.read<Hash>(ctx, c.key);
  if (ctx.failed()) return {};
  std::vector<std::optional<std::string_view>> out;
  out.reserve(c.fields.size());
  c.fields.for_each([&](std::string_view f) {
    std::string const* v = h ? h->find(f) : nullptr;
    out.push_back(v ? std::optional<std::string_view>(*v) : std::nullopt);
  });
  return out;
}

inline std::vector<std::optional<std::string>> run(Ctx& ctx, cmd::hmget const& c) {
  auto const views = view_of(ctx, c);
  return {views.begin(), views.end()};
}

inline std::vector<std::pair<std::string, std::string>> run(Ctx& ctx, cmd::hgetall const& c) {
  std::vector<std::pair<std::string, std::string>> out;
  Hash const* h = ctx.db.read<Hash>(ctx, c.key);
  if (!h) return out;
  out.reserve(h->size());
  hash_impl::each_in_order(
      *h, [&](std::string const& f, std::string const& v) { out.emplace_back(f, v); });
  return out;
}

inline std::int64_t run(Ctx& ctx, cmd::hdel const& c) {
  Hash* h = ctx.db.write<Hash>(ctx, c.key);
  if (!h) return 0;
  std::int64_t n = 0;
  c.fields.for_each([&](std::string_view f) { n += h->erase(f) ? 1 : 0; });
  return n;
}

inline std::int64_t run(Ctx& ctx, cmd::hincrby const& c) {
  Hash* h = ctx.db.create<Hash>(ctx, c.key);
  if (!h) return 0;
  std::int64_t old = 0;
  if (std::string const* v = h->find(c.field)) {
    if (!hash_impl::parse_canonical_int(*v, old))
      return ctx.fail("ERR hash value is not an integer"), 0;
  }
  std::int64_t sum = 0;
  if (__builtin_add_overflow(old, c.increment, &sum))
    return ctx.fail("ERR increment or decrement would overflow"), 0;
  h->assign(c.field, std::to_string(sum));
  return sum;
}

inline double run(Ctx& ctx, cmd::hincrbyfloat const& c) {
  // The increment as the server receives it: the same text a RedisBackend would send.
  std::string text;
  rediskit::detail::format_arg(c.increment, [&](std::string_view s) { text.assign(s); });
  long double incr = 0;
  if (!hash_impl::parse_long_double(text, incr))
    return ctx.fail("ERR value is not a valid float"), 0.0;
  if (std::isinf(incr)) return ctx.fail("ERR value is NaN or Infinity"), 0.0;

  Hash* h = ctx.db.create<Hash>(ctx, c.key);
  if (!h) return 0.0;
  long double value = 0;
  if (std::string const* v = h->find(c.field)) {
    if (!hash_impl::parse_long_double(*v, value))
      return ctx.fail("ERR hash value is not a float"), 0.0;
  }
  value += incr;
  if (std::isnan(value) || std::isinf(value))
    return ctx.fail("ERR increment would produce NaN or Infinity"), 0.0;
  std::string stored = hash_impl::format_long_double(value);
  // The reply is the stored text read as a double, as RedisBackend adapts it: a sum beyond
  // double's range is stored all the same, and its reply fails the same way.
  double out = 0;
  boost::system::error_code ec;
  resp3::detail::to_floating(stored, out, ec);
  h->assign(c.field, std::move(stored));
  if (ec) {
    ctx.ec = ec;
    ctx.error.clear();
    return 0.0;
  }
  return out;
}

inline bool run(Ctx& ctx, cmd::hexists const& c) {
  Hash const* h = ctx.db.read<Hash>(ctx, c.key);
  return h && h->contains(c.field);
}

inline std::int64_t run(Ctx& ctx, cmd::hlen const& c) {
  Hash const* h = ctx.db.read<Hash>(ctx, c.key);
  return h ? static_cast<std::int64_t>(h->size()) : 0;
}

inline std::vector<std::string> run(Ctx& ctx, cmd::hkeys const& c) {
  std::vector<std::string> out;
  Hash const* h = ctx.db.read<Hash>(ctx, c.key);
  if (!h) return out;
  out.reserve(h->size());
  hash_impl::each_in_order(*h, [&](std::string const& f, std::string const&) { out.push_back(f); });
  return out;
}

inline std::vector<std::string> run(Ctx& ctx, cmd::hvals const& c) {
  std::vector<std::string> out;
  Hash const* h = ctx.db.read<Hash>(ctx, c.key);
  if (!h) return out;
  out.reserve(h->size());
  hash_impl::each_in_order(*h, [&](std::string const&, std::string const& v) { out.push_back(v); });
  return out;
}

inline HashScanPage run(Ctx& ctx, cmd::hscan const& c) {
  HashScanPage page;
  Hash const* h = ctx.db.read<Hash>(ctx, c.key);
  if (!h || !hash_impl::scan_count_ok(ctx, c.count)) return page;  // missing: [0, []]
  auto const count = static_cast<std::size_t>(c.count.value_or(10));
  page.cursor = h->scan(c.cursor, count, [&](std::string const& f, std::string const& v) {
    if (!c.match || rediskit::detail::scan_match(*c.match, f)) page.entries.emplace_back(f, v);
  });
  return page;
}

}  // namespace rediskit::detail::mem
