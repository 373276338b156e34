// MemoryBackend: server commands (see engine.hpp for the rules of run() overloads).
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/cmd/server.hpp>

#include <string>

namespace rediskit::detail::mem {

inline std::string run(Ctx&, cmd::ping const& c) {
  return c.message ? std::string(*c.message) : std::string("PONG");
}

inline std::string run(Ctx&, cmd::echo const& c) { return std::string(c.message); }

inline std::pair<std::int64_t, std::int64_t> run(Ctx& ctx, cmd::time const&) {
  return {ctx.unix_ms() / 1000, (ctx.unix_ms() % 1000) * 1000};
}

inline std::int64_t run(Ctx& ctx, cmd::dbsize const&) {
  return static_cast<std::int64_t>(ctx.db.keys().size());
}

inline bool run(Ctx& ctx, cmd::flushdb const&) {
  ctx.db.flush();
  return true;
}

/// The sections of INFO a memory engine can answer truthfully: server, memory, keyspace,
/// stats. Fields keep Redis's names so that tools parsing INFO work on both.
inline std::string run(Ctx& ctx, cmd::info const& c) {
  auto const& db = ctx.db;
  std::string section = c.section ? std::string(*c.section) : std::string("default");
  for (auto& ch : section) ch = (ch >= 'A' && ch <= 'Z') ? char(ch + 32) : ch;
  bool const all = section == "default" || section == "all" || section == "everything";
  std::string out;
  auto add = [&](std::string_view name) {
    if (!out.empty()) out += "\r\n";
    out += "# ";
    out += name;
    out += "\r\n";
  };
  auto field = [&](std::string_view k, auto v) {
    out += k;
    out += ':';
    if constexpr (std::is_convertible_v<decltype(v), std::string_view>)
      out += std::string_view(v);
    else
      out += std::to_string(v);
    out += "\r\n";
  };
  if (all || section == "server") {
    add("Server");
    field("redis_mode", "standalone");
    field("rediskit_backend", "memory");
  }
  if (all || section == "memory") {
    add("Memory");
    field("used_memory", db.used_memory());
    field("maxmemory", db.config().max_memory);
    field("maxmemory_policy", db.config().max_memory ? "allkeys-lru" : "noeviction");
  }
  if (all || section == "stats") {
    add("Stats");
    field("total_commands_processed", db.stats().commands);
    field("expired_keys", db.stats().expired_keys);
    field("evicted_keys", db.stats().evicted_keys);
  }
  if (all || section == "keyspace") {
    add("Keyspace");
    if (!db.keys().empty())
      out += "db0:keys=" + std::to_string(db.keys().size()) +
             ",expires=" + std::to_string(db.keys_with_ttl()) + ",avg_ttl=0\r\n";
  }
  return out;
}

}  // namespace rediskit::detail::mem
