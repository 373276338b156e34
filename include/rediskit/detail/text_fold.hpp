// rediskit::detail::fold: search tokens from UTF-8 text, folded for case and accents, so that
// "Hélène", "HÉLÈNE" and "helene" give the same token (UserDirectory's search index).
//
//   fold_tokens("Marie-Hélène D'ŒUVRE", 32)  -> {"marie", "helene", "d", "oeuvre"}
//
// Rules, byte for byte the same on every platform (no locale):
//  - ASCII letters are lower-cased; ASCII digits are kept; every other ASCII byte separates
//    tokens.
//  - Letters of Latin-1 Supplement (U+00C0-U+00FF) and Latin Extended-A (U+0100-U+017F), capital
//    or small, fold to their base letter(s): é è ê ë -> e, à â ä å -> a, ç -> c, ñ -> n,
//    ÿ -> y, œ -> oe, æ -> ae, ß -> ss, þ -> th, ĳ -> ij, ø -> o, ł -> l, ... U+00D7 (×),
//    U+00F7 (÷) and the symbols of U+0080-U+00BF (no-break space, «, », °, ...) separate.
//  - Any other well-formed UTF-8 character (U+0180 and above: other scripts) is kept as it is
//    (not case-folded) and is part of the token. A byte that is not well-formed UTF-8 separates.
//  - A token longer than `max_token_bytes` is cut to that many bytes (at a character boundary
//    when the cut would split one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rediskit::detail::text {

// One letter per code point of U+00C0-U+00FF, then of U+0100-U+017F. ' ': a separator;
// '1'..'5': the two-letter foldings ij, oe, ae, th, ss.
inline constexpr std::string_view kLatin1 =
    "aaaaaa3ceeeeiiiidnooooo ouuuuy45"
    "aaaaaa3ceeeeiiiidnooooo ouuuuy4y";
inline constexpr std::string_view kLatinExtA =
    "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiii11jjkkkllllllllllnnnnnnnnn"
    "oooooo22rrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs";
static_assert(kLatin1.size() == 64 && kLatinExtA.size() == 128);
inline constexpr std::string_view kPairs[] = {"ij", "oe", "ae", "th", "ss"};

/// The length of the well-formed UTF-8 sequence at s[i] and its code point; 0 when the bytes
/// there are not well-formed UTF-8 (a stray continuation byte, a truncated or overlong
/// sequence, a surrogate, a value above U+10FFFF).
inline std::size_t utf8_at(std::string_view s, std::size_t i, char32_t& cp) noexcept {
  auto const b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char const c = b(0);
  std::size_t n = 0;
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return n;
}

/// What one code point folds to: "" (a separator), or the letters (see the top of this file).
/// `self` is returned for a character kept as it is.
inline std::string_view fold_code_point(char32_t cp, std::string_view self) noexcept {
  static constexpr std::string_view kLower = "abcdefghijklmnopqrstuvwxyz";
  static constexpr std::string_view kDigits = "0123456789";
  if (cp < 0x80) {
    if (cp >= 'a' && cp <= 'z') return kLower.substr(cp - 'a', 1);
    if (cp >= 'A' && cp <= 'Z') return kLower.substr(cp - 'A', 1);
    if (cp >= '0' && cp <= '9') return kDigits.substr(cp - '0', 1);
    return {};
  }
  char c = ' ';
  if (cp >= 0xC0 && cp <= 0xFF)
    c = kLatin1[cp - 0xC0];
  else if (cp >= 0x100 && cp <= 0x17F)
    c = kLatinExtA[cp - 0x100];
  else if (cp >= 0x180)
    return self;
  if (c == ' ') return {};
  if (c >= '1' && c <= '5') return kPairs[c - '1'];
  return kLower.substr(static_cast<std::size_t>(c - 'a'), 1);
}

/// The folded text of `s`: folded characters, and one ' ' for each run of separators (none at
/// either end). fold("  Hélène  D'Œuvre! ") == "helene d oeuvre".
inline std::string fold(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool sep = false;
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    std::size_t const n = utf8_at(s, i, cp);
    std::string_view const f = n == 0 ? std::string_view() : fold_code_point(cp, s.substr(i, n));
    i += n == 0 ? 1 : n;
    if (f.empty()) {
      sep = true;
      continue;
    }
    if (sep && !out.empty()) out.push_back(' ');
    sep = false;
    out.append(f);
  }
  return out;
}

/// `t` cut to at most `max` bytes, not inside a UTF-8 character.
inline std::string_view cut_token(std::string_view t, std::size_t max) noexcept {
  if (t.size() <= max) return t;
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(t[n]) & 0xC0) == 0x80) --n;
  return t.substr(0, n);
}

/// The tokens of `s` in order (duplicates kept), each cut to `max_token_bytes`.
inline std::vector<std::string> fold_tokens(std::string_view s, std::size_t max_token_bytes) {
  std::vector<std::string> out;
  std::string const f = fold(s);
  std::size_t pos = 0;
  while (pos < f.size()) {
    std::size_t end = f.find(' ', pos);
    if (end == std::string::npos) end = f.size();
    auto const t = cut_token(std::string_view(f).substr(pos, end - pos), max_token_bytes);
    if (!t.empty()) out.emplace_back(t);
    pos = end + 1;
  }
  return out;
}

}  // namespace rediskit::detail::text
