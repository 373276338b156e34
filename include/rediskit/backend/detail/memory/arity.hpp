// MemoryBackend: the argument counts redis-server 7.0 accepts per command (its command table's
// "arity": the count includes the command name; a negative value is a minimum). Checked
// before a command runs, so that a wrong count fails as on a server, and so that a
// transaction with one fails as a whole (EXECABORT) before anything ran.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include <rediskit/command.hpp>

namespace rediskit::detail::mem {

struct Arity {
  std::string_view name;  ///< upper case; "XGROUP CREATE" for subcommands
  int arity;
};

inline constexpr Arity arities[] = {
    // strings
    {"GET", 2}, {"SET", -3}, {"INCR", 2}, {"INCRBY", 3}, {"INCRBYFLOAT", 3}, {"DECR", 2},
    {"DECRBY", 3}, {"MGET", -2}, {"MSET", -3}, {"MSETNX", -3}, {"APPEND", 3}, {"STRLEN", 2},
    {"GETDEL", 2}, {"GETEX", -2}, {"GETSET", 3}, {"SETNX", 3}, {"SETEX", 4}, {"PSETEX", 4},
    // keys
    {"DEL", -2}, {"UNLINK", -2}, {"EXISTS", -2}, {"EXPIRE", -3}, {"PEXPIRE", -3},
    {"EXPIREAT", -3}, {"PEXPIREAT", -3}, {"TTL", 2}, {"PTTL", 2}, {"PERSIST", 2}, {"TYPE", 2},
    {"SCAN", -2}, {"RENAME", 3}, {"EXPIRETIME", 2}, {"PEXPIRETIME", 2}, {"KEYS", 2},
    // hashes
    {"HSET", -4}, {"HSETNX", 4}, {"HGET", 3}, {"HMGET", -3}, {"HGETALL", 2}, {"HDEL", -3},
    {"HINCRBY", 4}, {"HINCRBYFLOAT", 4}, {"HEXISTS", 3}, {"HLEN", 2}, {"HSCAN", -3},
    {"HKEYS", 2}, {"HVALS", 2},
    // sets
    {"SADD", -3}, {"SREM", -3}, {"SMEMBERS", 2}, {"SISMEMBER", 3}, {"SMISMEMBER", -3},
    {"SCARD", 2}, {"SINTER", -2}, {"SUNION", -2}, {"SDIFF", -2}, {"SSCAN", -3},
    {"SINTERCARD", -3},
    // sorted sets
    {"ZADD", -4}, {"ZINCRBY", 4}, {"ZREM", -3}, {"ZSCORE", 3}, {"ZMSCORE", -3}, {"ZRANK", 3},
    {"ZREVRANK", 3}, {"ZRANGE", -4}, {"ZCARD", 2}, {"ZCOUNT", 4}, {"ZREMRANGEBYSCORE", 4},
    {"ZREMRANGEBYRANK", 4}, {"ZPOPMIN", -2}, {"ZPOPMAX", -2},
    // lists
    {"LPUSH", -3}, {"RPUSH", -3}, {"LPOP", -2}, {"RPOP", -2}, {"LRANGE", 4}, {"LTRIM", 4},
    {"LLEN", 2}, {"LREM", 4}, {"LMOVE", 5}, {"BLMOVE", 6}, {"LINDEX", 3}, {"LSET", 4},
    // streams
    {"XADD", -5}, {"XRANGE", -4}, {"XREVRANGE", -4}, {"XLEN", 2}, {"XDEL", -3}, {"XTRIM", -4},
    {"XGROUP CREATE", -5}, {"XGROUP DESTROY", 4}, {"XGROUP DELCONSUMER", 5},
    {"XGROUP CREATECONSUMER", 5}, {"XGROUP SETID", -5}, {"XREAD", -4}, {"XREADGROUP", -7}, {"XACK", -4},
    {"XPENDING", -3}, {"XCLAIM", -6}, {"XAUTOCLAIM", -6},
    // pub/sub, scripting, server
    {"PUBLISH", 3}, {"SPUBLISH", 3}, {"EVAL", -3}, {"EVALSHA", -3}, {"SCRIPT LOAD", 3}, {"PING", -1},
    {"ECHO", 2}, {"TIME", 1}, {"DBSIZE", 1}, {"FLUSHDB", -1}, {"INFO", -1},
};

/// Commands with subcommands: their name in arities and in errors includes the first argument.
inline bool has_subcommands(std::string_view name) noexcept {
  return name == "XGROUP" || name == "SCRIPT";
}

/// The arity of `name` (0 when unknown: anything passes).
inline int arity_of(std::string_view name) noexcept {
  for (Arity const& a : arities)
    if (a.name == name) return a.arity;
  return 0;
}

inline bool arity_fits(int arity, std::size_t argc) noexcept {
  return arity == 0 || (arity > 0 ? argc == static_cast<std::size_t>(arity)
                                  : argc >= static_cast<std::size_t>(-arity));
}

/// The name of a command as the arity table has it ("GET", "XGROUP CREATE"), and its argc.
template <class C>
std::pair<std::string, std::size_t> name_and_argc(C const& c) {
  std::string name;
  std::size_t argc = 0;
  ArgExpander out{[&](std::string_view s) {
    if (argc == 0) {
      name.assign(s);
    } else if (argc == 1 && has_subcommands(name)) {
      name.push_back(' ');
      for (char ch : s) name.push_back((ch >= 'a' && ch <= 'z') ? char(ch - 32) : ch);
    }
    ++argc;
  }};
  c.write(out);
  return {std::move(name), argc};
}

/// The server's error text when `argc` (name included; for a subcommand, counting both words)
/// does not fit the arity of `name`, else empty. Unknown names pass.
inline std::string arity_error(std::string_view name, std::size_t argc) {
  for (Arity const& a : arities) {
    if (a.name != name) continue;
    bool const ok = a.arity >= 0 ? argc == static_cast<std::size_t>(a.arity)
                                 : argc >= static_cast<std::size_t>(-a.arity);
    if (ok) return {};
    std::string lower;
    for (char c : name) lower.push_back(c == ' ' ? '|' : (c >= 'A' && c <= 'Z') ? char(c + 32) : c);
    return "ERR wrong number of arguments for '" + lower + "' command";
  }
  return {};
}

}  // namespace rediskit::detail::mem
