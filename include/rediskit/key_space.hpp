// rediskit::KeySpace and rediskit::GlobPattern: how services build key names, and how user
// input reaches a glob pattern (SCAN MATCH) only escaped.
//
//   KeySpace ks{"chat"};
//   ks.key("user:123")                       -> "chat:user:123"   (seed 000's keyPrefix)
//   ks.pattern(glob("session:{}:*", uid))    -> "chat:session:<uid, escaped>:*"
//
// A GlobPattern is either a string literal written in the program (trusted: its * and ? are
// wildcards) or built by glob(format, args...), where every argument is escaped so that it
// matches only itself: an id of "*" or "a?[b]\" can never widen the pattern to other users'
// keys. A pattern from run-time text is spelled GlobPattern::trusted(text), so the unsafe
// form is visible at the call site and never an accident.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace rediskit {

/// `text` with every glob metacharacter (* ? [ ] \) escaped: as a pattern it matches `text`
/// and nothing else.
inline std::string escape_glob(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

/// A Redis glob pattern whose wildcards the program chose (see the top of this file).
class GlobPattern {
 public:
  /// A pattern written in the source: `cache.async_keys("user:*")`.
  template <std::size_t N>
  GlobPattern(char const (&literal)[N]) : text_(literal, N - 1) {}  // NOLINT: implicit

  /// A pattern taken as it is from run-time text: its wildcards are wildcards.
  static GlobPattern trusted(std::string text) { return GlobPattern(std::move(text), 0); }

  std::string const& text() const noexcept { return text_; }

 private:
  GlobPattern(std::string text, int) : text_(std::move(text)) {}
  std::string text_;
};

/// A pattern from a format whose `{}` are replaced by the arguments, escaped:
/// glob("user:{}:*", id) matches the keys of user `id` only, whatever `id` holds.
/// A format without enough `{}` ignores the extra arguments; `{}` without an argument stays.
template <std::size_t N, class... Args>
GlobPattern glob(char const (&format)[N], Args const&... args) {
  std::string_view const f(format, N - 1);
  std::string out;
  std::string_view const parts[] = {std::string_view(args)..., std::string_view()};
  std::size_t arg = 0, pos = 0;
  while (pos < f.size()) {
    auto const at = f.find("{}", pos);
    if (at == std::string_view::npos || arg == sizeof...(Args)) {
      out.append(f.substr(pos));
      break;
    }
    out.append(f.substr(pos, at - pos));
    out.append(escape_glob(parts[arg++]));
    pos = at + 2;
  }
  return GlobPattern::trusted(std::move(out));
}

/// Where a service's keys live: `{prefix}:{name}`, or `{name}` with an empty prefix.
class KeySpace {
 public:
  KeySpace() = default;
  explicit KeySpace(std::string prefix) : prefix_(std::move(prefix)) {
    if (!prefix_.empty()) prefix_.push_back(':');
  }

  /// The prefix as given (without the ':').
  std::string_view prefix() const noexcept {
    return prefix_.empty() ? std::string_view() : std::string_view(prefix_).substr(0, prefix_.size() - 1);
  }

  /// The full key of `name`.
  std::string key(std::string_view name) const {
    std::string k;
    k.reserve(prefix_.size() + name.size());
    k.append(prefix_).append(name);
    return k;
  }

  /// The full key of `name` written into `out` (reuses its capacity).
  void key_into(std::string& out, std::string_view name) const {
    out.assign(prefix_).append(name);
  }

  /// The SCAN MATCH pattern of `p` inside this key space (the prefix escaped).
  std::string pattern(GlobPattern const& p) const { return escape_glob(prefix_) + p.text(); }

  /// Every key of this key space.
  std::string all() const { return escape_glob(prefix_) + "*"; }

  /// `full` without the prefix (as the user named it); `full` itself if it lacks the prefix.
  std::string_view strip(std::string_view full) const noexcept {
    if (full.substr(0, prefix_.size()) == prefix_) full.remove_prefix(prefix_.size());
    return full;
  }

  /// True when `full` is in this key space.
  bool contains(std::string_view full) const noexcept {
    return full.substr(0, prefix_.size()) == prefix_;
  }

 private:
  std::string prefix_;
};

}  // namespace rediskit
