// rediskit::cluster::route: which hash slot a typed command must run in, found from the
// arguments it writes (no allocation unless the keys disagree).
//
//   cluster::route(cmd::get{"user:1"})                      -> {.slot = key_slot("user:1")}
//   cluster::route(cmd::ping{})                             -> {.slot = Route::any}
//   cluster::route(cmd::mget{{"a", "b"}})                   -> {.cross_slot = true, keys named}
//   cluster::route(batch(...)) / route_all(x)               -> one slot for every command, or
//                                                              cross_slot
//
// Where the keys are comes from the command's name, as Redis's own key specs say (COMMAND
// INFO): a key at argument 1 (GET, HSET, XADD, ...), every argument from 1 (DEL, MGET,
// SINTER), every other one (MSET), 1 and 2 (LMOVE, SMOVE, RENAME), all but the last (BLPOP),
// a count then the keys (EVALSHA, SINTERCARD, ZUNIONSTORE), the first half after the STREAMS
// option (XREADGROUP: found past GROUP, COUNT and BLOCK and their values, as the server finds
// it, so a group called "streams" is no keyword), or a key after a subcommand (XGROUP CREATE,
// XINFO STREAM, OBJECT ENCODING).
// A test checks this table against `COMMAND GETKEYS` of a real server for every command type
// rediskit has. A command the table does not know is routed by its first argument: a wrong
// guess costs a MOVED redirection, which ClusterBackend follows; a command that has no key at
// all runs on any master.
#pragma once

#include <rediskit/cluster/slot.hpp>
#include <rediskit/command.hpp>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace rediskit::cluster {

/// Where a command (or every command of a batch) must run.
struct Route {
  static constexpr std::uint16_t any = 0xFFFF;  ///< no key: any master serves it
  std::uint16_t slot = any;
  /// Keys in different slots (CROSSSLOT): `first_key` and `other_key` are two of them.
  bool cross_slot = false;
  std::string first_key{};
  std::string other_key{};

  bool keyless() const noexcept { return slot == any && !cross_slot; }
  friend bool operator==(Route const&, Route const&) = default;
};

namespace detail {

enum class KeysAt : std::uint8_t {
  none,           ///< no key (PING, INFO, PUBLISH: a classic channel is no key)
  one,            ///< the argument at `first`
  two,            ///< `first` and `first + 1`
  rest,           ///< every argument from `first`
  pairs,          ///< `first`, `first + 2`, ... (MSET key value key value)
  rest_but_last,  ///< from `first` to the one before the last (BLPOP k1 k2 timeout)
  numkeys,        ///< a count at `first`, then that many keys
  key_numkeys,    ///< a key at `first`, a count after it, then that many keys (ZUNIONSTORE)
  streams,        ///< the first half of what follows the STREAMS option (XREAD, XREADGROUP)
};

struct KeySpec {
  std::string_view name;  // upper case
  KeysAt at;
  std::uint8_t first;
};

// Sorted by name (checked below): looked up by binary search.
inline constexpr KeySpec key_specs[] = {
    {"APPEND", KeysAt::one, 1},         {"ASKING", KeysAt::none, 0},
    {"AUTH", KeysAt::none, 0},          {"BITCOUNT", KeysAt::one, 1},
    {"BLMOVE", KeysAt::two, 1},         {"BLMPOP", KeysAt::numkeys, 2},
    {"BLPOP", KeysAt::rest_but_last, 1}, {"BRPOP", KeysAt::rest_but_last, 1},
    {"BRPOPLPUSH", KeysAt::two, 1},     {"BZMPOP", KeysAt::numkeys, 2},
    {"BZPOPMAX", KeysAt::rest_but_last, 1}, {"BZPOPMIN", KeysAt::rest_but_last, 1},
    {"CLIENT", KeysAt::none, 0},        {"CLUSTER", KeysAt::none, 0},
    {"COMMAND", KeysAt::none, 0},       {"CONFIG", KeysAt::none, 0},
    {"COPY", KeysAt::two, 1},           {"DBSIZE", KeysAt::none, 0},
    {"DECR", KeysAt::one, 1},           {"DECRBY", KeysAt::one, 1},
    {"DEL", KeysAt::rest, 1},           {"DISCARD", KeysAt::none, 0},
    {"DUMP", KeysAt::one, 1},           {"ECHO", KeysAt::none, 0},
    {"EVAL", KeysAt::numkeys, 2},       {"EVALSHA", KeysAt::numkeys, 2},
    {"EVALSHA_RO", KeysAt::numkeys, 2}, {"EVAL_RO", KeysAt::numkeys, 2},
    {"EXEC", KeysAt::none, 0},          {"EXISTS", KeysAt::rest, 1},
    {"EXPIRE", KeysAt::one, 1},         {"EXPIREAT", KeysAt::one, 1},
    {"FCALL", KeysAt::numkeys, 2},      {"FCALL_RO", KeysAt::numkeys, 2},
    {"FLUSHALL", KeysAt::none, 0},      {"FLUSHDB", KeysAt::none, 0},
    {"FUNCTION", KeysAt::none, 0},      {"GET", KeysAt::one, 1},
    {"GETDEL", KeysAt::one, 1},         {"GETEX", KeysAt::one, 1},
    {"GETRANGE", KeysAt::one, 1},       {"GETSET", KeysAt::one, 1},
    {"HDEL", KeysAt::one, 1},           {"HELLO", KeysAt::none, 0},
    {"HEXISTS", KeysAt::one, 1},        {"HGET", KeysAt::one, 1},
    {"HGETALL", KeysAt::one, 1},        {"HINCRBY", KeysAt::one, 1},
    {"HINCRBYFLOAT", KeysAt::one, 1},   {"HKEYS", KeysAt::one, 1},
    {"HLEN", KeysAt::one, 1},           {"HMGET", KeysAt::one, 1},
    {"HMSET", KeysAt::one, 1},          {"HSCAN", KeysAt::one, 1},
    {"HSET", KeysAt::one, 1},           {"HSETNX", KeysAt::one, 1},
    {"HVALS", KeysAt::one, 1},          {"INCR", KeysAt::one, 1},
    {"INCRBY", KeysAt::one, 1},         {"INCRBYFLOAT", KeysAt::one, 1},
    {"INFO", KeysAt::none, 0},          {"KEYS", KeysAt::none, 0},
    {"LINDEX", KeysAt::one, 1},         {"LINSERT", KeysAt::one, 1},
    {"LLEN", KeysAt::one, 1},           {"LMOVE", KeysAt::two, 1},
    {"LMPOP", KeysAt::numkeys, 1},      {"LPOP", KeysAt::one, 1},
    {"LPOS", KeysAt::one, 1},           {"LPUSH", KeysAt::one, 1},
    {"LPUSHX", KeysAt::one, 1},         {"LRANGE", KeysAt::one, 1},
    {"LREM", KeysAt::one, 1},           {"LSET", KeysAt::one, 1},
    {"LTRIM", KeysAt::one, 1},          {"MEMORY", KeysAt::one, 2},
    {"MGET", KeysAt::rest, 1},          {"MSET", KeysAt::pairs, 1},
    {"MSETNX", KeysAt::pairs, 1},       {"MULTI", KeysAt::none, 0},
    {"OBJECT", KeysAt::one, 2},         {"PERSIST", KeysAt::one, 1},
    {"PEXPIRE", KeysAt::one, 1},        {"PEXPIREAT", KeysAt::one, 1},
    {"PING", KeysAt::none, 0},          {"PSETEX", KeysAt::one, 1},
    {"PSUBSCRIBE", KeysAt::none, 0},    {"PTTL", KeysAt::one, 1},
    {"PUBLISH", KeysAt::none, 0},       {"PUBSUB", KeysAt::none, 0},
    {"PUNSUBSCRIBE", KeysAt::none, 0},  {"RANDOMKEY", KeysAt::none, 0},
    {"READONLY", KeysAt::none, 0},      {"READWRITE", KeysAt::none, 0},
    {"RENAME", KeysAt::two, 1},         {"RENAMENX", KeysAt::two, 1},
    {"ROLE", KeysAt::none, 0},          {"RPOP", KeysAt::one, 1},
    {"RPOPLPUSH", KeysAt::two, 1},      {"RPUSH", KeysAt::one, 1},
    {"RPUSHX", KeysAt::one, 1},         {"SADD", KeysAt::one, 1},
    {"SCAN", KeysAt::none, 0},          {"SCARD", KeysAt::one, 1},
    {"SCRIPT", KeysAt::none, 0},        {"SDIFF", KeysAt::rest, 1},
    {"SDIFFSTORE", KeysAt::rest, 1},    {"SELECT", KeysAt::none, 0},
    {"SET", KeysAt::one, 1},            {"SETEX", KeysAt::one, 1},
    {"SETNX", KeysAt::one, 1},          {"SETRANGE", KeysAt::one, 1},
    {"SINTER", KeysAt::rest, 1},        {"SINTERCARD", KeysAt::numkeys, 1},
    {"SINTERSTORE", KeysAt::rest, 1},   {"SISMEMBER", KeysAt::one, 1},
    {"SMEMBERS", KeysAt::one, 1},       {"SMISMEMBER", KeysAt::one, 1},
    {"SMOVE", KeysAt::two, 1},          {"SPOP", KeysAt::one, 1},
    {"SPUBLISH", KeysAt::one, 1},       {"SRANDMEMBER", KeysAt::one, 1},
    {"SREM", KeysAt::one, 1},           {"SSCAN", KeysAt::one, 1},
    {"SSUBSCRIBE", KeysAt::rest, 1},    {"STRLEN", KeysAt::one, 1},
    {"SUBSCRIBE", KeysAt::none, 0},     {"SUNION", KeysAt::rest, 1},
    {"SUNIONSTORE", KeysAt::rest, 1},   {"SUNSUBSCRIBE", KeysAt::rest, 1},
    {"TIME", KeysAt::none, 0},          {"TOUCH", KeysAt::rest, 1},
    {"TTL", KeysAt::one, 1},            {"TYPE", KeysAt::one, 1},
    {"UNLINK", KeysAt::rest, 1},        {"UNSUBSCRIBE", KeysAt::none, 0},
    {"UNWATCH", KeysAt::none, 0},       {"WAIT", KeysAt::none, 0},
    {"WATCH", KeysAt::rest, 1},         {"XACK", KeysAt::one, 1},
    {"XADD", KeysAt::one, 1},           {"XAUTOCLAIM", KeysAt::one, 1},
    {"XCLAIM", KeysAt::one, 1},         {"XDEL", KeysAt::one, 1},
    {"XGROUP", KeysAt::one, 2},         {"XINFO", KeysAt::one, 2},
    {"XLEN", KeysAt::one, 1},           {"XPENDING", KeysAt::one, 1},
    {"XRANGE", KeysAt::one, 1},         {"XREAD", KeysAt::streams, 1},
    {"XREADGROUP", KeysAt::streams, 1}, {"XREVRANGE", KeysAt::one, 1},
    {"XSETID", KeysAt::one, 1},         {"XTRIM", KeysAt::one, 1},
    {"ZADD", KeysAt::one, 1},           {"ZCARD", KeysAt::one, 1},
    {"ZCOUNT", KeysAt::one, 1},         {"ZDIFF", KeysAt::numkeys, 1},
    {"ZDIFFSTORE", KeysAt::key_numkeys, 1}, {"ZINCRBY", KeysAt::one, 1},
    {"ZINTER", KeysAt::numkeys, 1},     {"ZINTERCARD", KeysAt::numkeys, 1},
    {"ZINTERSTORE", KeysAt::key_numkeys, 1}, {"ZLEXCOUNT", KeysAt::one, 1},
    {"ZMPOP", KeysAt::numkeys, 1},      {"ZMSCORE", KeysAt::one, 1},
    {"ZPOPMAX", KeysAt::one, 1},        {"ZPOPMIN", KeysAt::one, 1},
    {"ZRANDMEMBER", KeysAt::one, 1},    {"ZRANGE", KeysAt::one, 1},
    {"ZRANGEBYLEX", KeysAt::one, 1},    {"ZRANGEBYSCORE", KeysAt::one, 1},
    {"ZRANGESTORE", KeysAt::two, 1},    {"ZRANK", KeysAt::one, 1},
    {"ZREM", KeysAt::one, 1},           {"ZREMRANGEBYLEX", KeysAt::one, 1},
    {"ZREMRANGEBYRANK", KeysAt::one, 1}, {"ZREMRANGEBYSCORE", KeysAt::one, 1},
    {"ZREVRANGE", KeysAt::one, 1},      {"ZREVRANGEBYLEX", KeysAt::one, 1},
    {"ZREVRANGEBYSCORE", KeysAt::one, 1}, {"ZREVRANK", KeysAt::one, 1},
    {"ZSCAN", KeysAt::one, 1},          {"ZSCORE", KeysAt::one, 1},
    {"ZUNION", KeysAt::numkeys, 1},     {"ZUNIONSTORE", KeysAt::key_numkeys, 1},
};

static_assert(std::ranges::is_sorted(key_specs, {}, &KeySpec::name),
              "key_specs must stay sorted by name: it is searched by bisection");

/// The spec of a command name (any case); unknown names: a key at argument 1.
constexpr KeySpec find_key_spec(std::string_view name) noexcept {
  char upper[24];
  if (name.size() > sizeof upper) return {name, KeysAt::one, 1};
  for (std::size_t i = 0; i < name.size(); ++i) {
    char const c = name[i];
    upper[i] = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  }
  std::string_view const key(upper, name.size());
  auto const it = std::ranges::lower_bound(key_specs, key, {}, &KeySpec::name);
  if (it != std::end(key_specs) && it->name == key) return *it;
  return {name, KeysAt::one, 1};
}

constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 'a' + 'A');
    if (x != y) return false;
  }
  return true;
}

inline std::size_t parse_count(std::string_view a) noexcept {
  std::size_t n = 0;
  auto const r = std::from_chars(a.data(), a.data() + a.size(), n);
  return r.ec == std::errc{} ? n : 0;
}

/// Which arguments of one command line are keys, told one argument at a time, the name first
/// (see the top of this file). Not a template: every command type shares this code.
/// find_key_spec through a small per-thread cache of the names met last (a direct-mapped table
/// of 64 entries): most programs send a handful of command types, and a hit is one comparison
/// instead of the bisection of the table.
inline KeySpec cached_key_spec(std::string_view name) noexcept {
  struct Entry {
    char name[24];
    std::uint8_t size = 0xFF;
    KeysAt at{};
    std::uint8_t first = 0;
  };
  thread_local Entry cache[64];
  if (name.empty() || name.size() > sizeof Entry::name) return find_key_spec(name);
  auto& e = cache[(name.size() * 31 + static_cast<unsigned char>(name.front() | 0x20) * 7 +
                   static_cast<unsigned char>(name.back() | 0x20)) %
                  64];
  if (e.size == name.size() &&
      std::char_traits<char>::compare(e.name, name.data(), name.size()) == 0)
    return {name, e.at, e.first};
  KeySpec const spec = find_key_spec(name);
  std::char_traits<char>::copy(e.name, name.data(), name.size());
  e.size = static_cast<std::uint8_t>(name.size());
  e.at = spec.at;
  e.first = spec.first;
  return spec;
}

class KeyFinder {
 public:
  explicit KeyFinder(std::size_t total_args) noexcept : total_(total_args) {}

  /// True when `a`, the next argument, is a key.
  bool is_key(std::string_view a) noexcept {
    std::size_t const at = at_++;
    if (at == 0) {
      spec_ = cached_key_spec(a);
      return false;
    }
    if (spec_.at == KeysAt::none || at < spec_.first) return false;
    std::size_t const k = at - spec_.first;
    switch (spec_.at) {
      case KeysAt::none: return false;
      case KeysAt::one: return k == 0;
      case KeysAt::two: return k < 2;
      case KeysAt::rest: return true;
      case KeysAt::pairs: return k % 2 == 0;
      case KeysAt::rest_but_last: return at + 1 < total_;
      case KeysAt::numkeys:
        if (k == 0) numkeys_ = parse_count(a);
        return k > 0 && k <= numkeys_;
      case KeysAt::key_numkeys:
        if (k == 1) numkeys_ = parse_count(a);
        return k == 0 || (k > 1 && k - 1 <= numkeys_);
      case KeysAt::streams:
        // The options before STREAMS are read as the server reads them (xreadGetKeys): their
        // values are skipped, so that a group or consumer named "streams" is not the keyword.
        if (streams_at_ == 0) {
          if (skip_ > 0)
            --skip_;
          else if (iequals(a, "STREAMS"))
            streams_at_ = at;
          else if (iequals(a, "GROUP"))
            skip_ = 2;
          else if (iequals(a, "COUNT") || iequals(a, "BLOCK"))
            skip_ = 1;
          else if (!iequals(a, "NOACK"))
            streams_at_ = no_streams;  // a syntax error: no key
          return false;
        }
        return streams_at_ != no_streams && at - streams_at_ <= (total_ - streams_at_ - 1) / 2;
    }
    return false;
  }

 private:
  static constexpr std::size_t no_streams = std::size_t(-1);
  std::size_t total_;
  std::size_t at_ = 0, numkeys_ = 0, streams_at_ = 0, skip_ = 0;
  KeySpec spec_{};
};

/// What for_each_key writes a command into: the keys reach the caller's function through a
/// plain function pointer, so that each command type's write() is compiled once for every
/// caller of for_each_key (route's two passes, MemoryBackend's cluster checks).
struct KeySink {
  KeyFinder finder;
  void* f;
  void (*call)(void* f, std::string_view key);
  void operator()(std::string_view a) {
    if (finder.is_key(a)) call(f, a);
  }
};

}  // namespace detail

/// Calls f(std::string_view) for every key of command `c`, in order (see the top of this
/// file). A view may be of a buffer that goes away after f returns (a key written as a
/// number): copy what you keep.
template <Command C, class F>
void for_each_key(C const& c, F&& f) {
  using Fn = std::remove_reference_t<F>;
  rediskit::detail::ArgCounter counter;
  c.write(counter);
  rediskit::detail::ArgExpander<detail::KeySink> expander{
      {detail::KeyFinder(counter.count),
       const_cast<void*>(static_cast<void const*>(std::addressof(f))),
       [](void* p, std::string_view key) { (*static_cast<Fn*>(p))(key); }}};
  c.write(expander);
}

/// The slot every key of `x` is in: a command, a batch or transaction (all its commands) or a
/// range of commands. Route::any when none has a key; cross_slot (with two of the keys named)
/// when they disagree. Allocation-free unless they disagree.
template <class X>
Route route(X const& x) {
  Route r;
  for_each_command(x, [&](auto const& c) {
    if (r.cross_slot) return;
    for_each_key(c, [&](std::string_view k) {
      std::uint16_t const s = key_slot(k);
      if (r.slot == Route::any)
        r.slot = s;
      else if (s != r.slot)
        r.cross_slot = true;
    });
  });
  if (!r.cross_slot) return r;
  // The error path: a second pass names the first key and the first one in another slot.
  std::optional<std::uint16_t> first;
  for_each_command(x, [&](auto const& c) {
    for_each_key(c, [&](std::string_view k) {
      std::uint16_t const s = key_slot(k);
      if (!first) {
        first = s;
        r.first_key.assign(k);
      } else if (s != *first && r.other_key.empty()) {
        r.other_key.assign(k);
      }
    });
  });
  r.slot = Route::any;
  return r;
}

}  // namespace rediskit::cluster
