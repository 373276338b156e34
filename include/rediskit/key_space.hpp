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
//
// Layouts. On one node (and Sentinel) a service keeps the seeds' key names, so that it can
// share a Redis with the Node services (KeyLayout::plain). On Redis Cluster, every key that
// one script or transaction touches must be in one hash slot, so a service lays its keys out
// with hash tags (KeyLayout::clustered): the default on ClusterBackend, the choice of each
// service's options elsewhere. Two tools build such keys:
//   KeySpace("presence", KeyLayout::clustered).key("online")  -> "{presence}:online"
//                                             a group: every key of the key space, one slot
//   beside("chat:user:1", "chat~lock:", "user:1")  -> "chat~lock:{a3Z}user:1"
//                                             a key's shadow, in the slot of "chat:user:1"
//   "room_users:" + hash_tag_for("42")        -> "room_users:{42}"  an entity's keys
// Each service's header documents its own cluster layout.
#pragma once

#include <rediskit/cluster/slot.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
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

/// How a service lays out its keys (see the top of this file).
enum class KeyLayout : std::uint8_t {
  plain,      ///< the seeds' key names (one node, Sentinel)
  clustered,  ///< keys that one script or transaction touches share a hash tag (Cluster)
};

/// The layout services use on backend B unless their options say otherwise: B::key_layout
/// when B declares one (ClusterBackend: clustered), else plain.
template <class B>
inline constexpr KeyLayout default_key_layout_v = [] {
  if constexpr (requires { B::key_layout; })
    return KeyLayout(B::key_layout);
  else
    return KeyLayout::plain;
}();

namespace detail::keys {

/// A tag for every slot: three characters from an alphabet without '{' and '}', whose CRC16
/// falls in that slot (every slot has one: the table is checked by a unit test).
inline std::array<std::array<char, 3>, cluster::slot_count> const& slot_tags() {
  static auto const table = [] {
    static constexpr std::string_view alphabet =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
    std::array<std::array<char, 3>, cluster::slot_count> t{};
    std::array<bool, cluster::slot_count> have{};
    std::size_t missing = cluster::slot_count;
    for (char a : alphabet)
      for (char b : alphabet)
        for (char c : alphabet) {
          char const s[3] = {a, b, c};
          auto const slot = cluster::key_slot(std::string_view(s, 3));
          if (have[slot]) continue;
          have[slot] = true;
          t[slot] = {a, b, c};
          if (--missing == 0) return t;
        }
    return t;
  }();
  return table;
}

}  // namespace detail::keys

/// The key `{prefix}{TTT}{name}` in the hash slot of key `base` (TTT: three characters that
/// name the slot): the shadow of a key (its lock, its version), which one script may touch
/// together with it on Redis Cluster. beside("chat:user:1", "chat~lock:", "user:1") is
/// "chat~lock:{a3Z}user:1" for some a3Z. The form never depends on `base`, so shadows can be
/// found by pattern (beside_pattern). `prefix` must not hold a '{' (it would be the key's tag).
inline std::string beside(std::string_view base, std::string_view prefix, std::string_view name) {
  auto const& tag = detail::keys::slot_tags()[cluster::key_slot(base)];
  std::string out;
  out.reserve(prefix.size() + 5 + name.size());
  out.append(prefix).append(1, '{').append(tag.data(), tag.size()).append(1, '}').append(name);
  return out;
}

/// A hash tag that groups the keys of one entity (a room, a user) in one slot: "{id}", or,
/// when `id` holds a '}' or is empty, "{TTT}" naming the slot of `id`. Keys made as
/// `prefix + hash_tag_for(id) + suffix` share a slot for one id; different ids spread.
inline std::string hash_tag_for(std::string_view id) {
  std::string out(1, '{');
  if (!id.empty() && id.find('}') == std::string_view::npos) {
    out.append(id);
  } else {
    auto const& tag = detail::keys::slot_tags()[cluster::key_slot(id)];
    out.append(tag.data(), tag.size());
  }
  out.push_back('}');
  return out;
}

/// The SCAN MATCH pattern of every key that beside(_, prefix, name) makes with a `name` that
/// `p` matches.
inline std::string beside_pattern(std::string_view prefix, GlobPattern const& p) {
  return escape_glob(prefix) + "{???}" + p.text();
}

/// Where a service's keys live: `{prefix}:{name}`, or `{name}` with an empty prefix. With
/// KeyLayout::clustered the prefix is a hash tag, `{{prefix}}:{name}`: every key of the key
/// space is in one slot.
class KeySpace {
 public:
  KeySpace() = default;
  explicit KeySpace(std::string prefix, KeyLayout layout = KeyLayout::plain)
      : prefix_(std::move(prefix)) {
    if (prefix_.empty()) return;
    if (layout == KeyLayout::clustered) prefix_ = "{" + prefix_ + "}";
    prefix_.push_back(':');
  }

  /// The prefix as keys start with it, without the ':' ("{presence}" when clustered).
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
