// rediskit::detail::glob_match: Redis's glob rules (SCAN MATCH, KEYS, PSUBSCRIBE), byte for
// byte as redis-server 7.0 applies them, including its corner cases:
//   *        any run of bytes; ?  one byte; [abc] [^abc] [a-z] (ends swapped when reversed);
//   \x       the byte x, at top level and inside [...]; a trailing lone \ matches "\";
//   an unterminated [ takes the rest of the pattern as its set;
//   range ends compare as signed char, as the server does on x86 and ARM Linux builds.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace rediskit::detail {

namespace glob_impl {

// `skip_longer` is set when a '*' could not match any suffix: every longer attempt of an
// enclosing '*' would fail the same way (keeps the matching quadratic at worst).
inline bool match(std::string_view p, std::string_view s, bool& skip_longer) {
  std::size_t pi = 0, si = 0;
  auto pat = [&](std::size_t i) -> char { return i < p.size() ? p[i] : '\0'; };
  while (pi < p.size() && si < s.size()) {
    switch (p[pi]) {
      case '*': {
        while (pi + 1 < p.size() && p[pi + 1] == '*') ++pi;
        if (pi + 1 == p.size()) return true;
        while (si < s.size()) {
          if (match(p.substr(pi + 1), s.substr(si), skip_longer)) return true;
          if (skip_longer) return false;
          ++si;
        }
        skip_longer = true;
        return false;
      }
      case '?':
        ++si;
        break;
      case '[': {
        ++pi;
        bool const negate = pat(pi) == '^';
        if (negate) ++pi;
        bool matched = false;
        char const c = s[si];
        while (true) {
          if (pat(pi) == '\\' && p.size() - pi >= 2) {
            ++pi;
            if (p[pi] == c) matched = true;
          } else if (pat(pi) == ']') {
            break;
          } else if (pi >= p.size()) {
            --pi;  // unterminated: step back so the ++pi below leaves the pattern consumed
            break;
          } else if (p.size() - pi >= 3 && p[pi + 1] == '-') {
            int lo = static_cast<signed char>(p[pi]);
            int hi = static_cast<signed char>(p[pi + 2]);
            int const ch = static_cast<signed char>(c);
            if (lo > hi) {
              int const t = lo;
              lo = hi;
              hi = t;
            }
            pi += 2;
            if (ch >= lo && ch <= hi) matched = true;
          } else if (p[pi] == c) {
            matched = true;
          }
          ++pi;
        }
        if (negate) matched = !matched;
        if (!matched) return false;
        ++si;
        break;
      }
      case '\\':
        if (p.size() - pi >= 2) ++pi;
        [[fallthrough]];
      default:
        if (p[pi] != s[si]) return false;
        ++si;
        break;
    }
    ++pi;
    if (si == s.size()) {
      while (pat(pi) == '*') ++pi;
      break;
    }
  }
  return pi >= p.size() && si == s.size();
}

}  // namespace glob_impl

/// True when `s` matches the Redis glob `pattern`.
inline bool glob_match(std::string_view pattern, std::string_view s) {
  bool skip_longer = false;
  return glob_impl::match(pattern, s, skip_longer);
}

/// SCAN / KEYS MATCH: like glob_match, except that "*" matches every key, the empty key
/// included (the server skips matching for "*"; glob_match("*", "") is false, as in PSUBSCRIBE).
inline bool scan_match(std::string_view pattern, std::string_view key) {
  return (pattern.size() == 1 && pattern[0] == '*') || glob_match(pattern, key);
}

/// True when `pattern` has no special character: it matches exactly one string, itself
/// (with its escapes removed into `literal`).
inline bool glob_is_literal(std::string_view pattern, std::string* literal = nullptr) {
  if (literal) literal->clear();
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    char const c = pattern[i];
    if (c == '*' || c == '?' || c == '[') return false;
    if (c == '\\' && i + 1 < pattern.size()) ++i;
    if (literal) literal->push_back(pattern[i]);
  }
  return true;
}

/// Escapes every glob-special byte of `s` (* ? [ ] \) so that the result matches `s` only.
inline void glob_escape_append(std::string& out, std::string_view s) {
  for (char const c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
}

}  // namespace rediskit::detail
