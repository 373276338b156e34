// rediskit::OnlineUserManager: who is online right now (seed 000's OnlineUserManager). Presence
// is a TTL renewed by activity: a user who stops sending heartbeats is offline after
// `default_ttl` on every backend, and every count is derived from what is alive.
//
//   rediskit::OnlineUserManager users(backend);               // seed 000's defaults
//   bool fresh = co_await users.async_set_user_online("42", {"socket-1", "USER001"});
//   co_await users.async_update_last_activity("42");          // each message, typing, ping
//   auto n = co_await users.async_get_online_count();         // O(log n)
//   auto online = co_await users.async_filter_online(room_members);  // RoomManager
//   co_await users.async_set_user_offline("42", "socket-1");  // offline when no socket is left
//
// Key layout (prefixes from OnlineUserOptions; seed 000's names are the defaults):
//   presence:online        ZSET  user id -> expiry (server unix ms) of the user's presence. A
//                                user is online while expiry > now. Count: ZCOUNT (now, +inf],
//                                O(log n); expired members are invisible at once and removed
//                                later in bounded batches (the "purge", see below).
//   presence:stats         HASH  peak, peak_at, sessions, session_ms, and the connections
//                                of the last hour: 60 one-minute slots m<i> (minute) c<i>
//                                (count). ~124 small fields: stays a listpack.
//   user_data:{id}         HASH  socket_id (latest), matricule, connected_at, last_activity,
//                                disconnected_at (server unix ms). Expires `idle_ttl` after the
//                                last activity: it outlives the presence ("last seen", and the
//                                session length once the presence expired). A listpack.
//   user_sockets:{id}      ZSET  socket id -> expiry. Expires with the user's presence. A
//                                listpack (a user has few sockets).
// Per online user: one skip-list entry in presence:online plus two small listpack keys. Measured
// on Redis 7.0 with 300 000 users: ~600 B per user in all (MEMORY USAGE: user_data 184 B,
// user_sockets 120 B, presence:online ~128 B per entry; the rest is keyspace and expiry
// entries), ~20 000 set_user_online/s from one connection, get_online_count 0.03-0.3 ms.
//
// Guarantees:
//  - Time is the server's (Lua TIME; MemoryBackend's clock, FakeBackend's manual clock): the
//    client's clock is never stored or compared. Every write is one Lua script (atomic).
//  - A user is online while one of their sockets is: each socket has its own expiry, renewed by
//    activity on it (or on the user); the user's expiry is the latest of them.
//  - Counts never drift: online count and status distribution are ZCOUNTs over live expiries;
//    the distribution's parts add up to the total. Status is derived from the time since the
//    last activity: online < away_after <= away < idle_after <= idle < default_ttl (offline).
//  - The purge: writes (set online / offline), stats and async_purge_expired remove up to
//    `purge_batch` expired users each, closing their sessions (for the average duration; a
//    session whose user_data expired first, idle_ttl without any purge, is not counted).
//  - Scripts read per-user keys named from the prefixes (they are not all in KEYS): fine on a
//    single node and Sentinel; on Cluster give the three prefixes one hash tag ("{p}presence").
//  - Every manager sharing these keys must use the same default_ttl (status is expiry - ttl).
//  - RoomManager reads presence:online for its online members and statuses: its
//    RoomOptions::presence (OnlinePresence) must have the same presence_prefix (and default_ttl,
//    away_after, idle_after); RoomManager(backend, online_users) copies them.
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit {

/// Options of OnlineUserManager: seed 000's defaults.
struct OnlineUserOptions {
  std::string presence_prefix = "presence";         ///< `{p}:online` zset, `{p}:stats` hash
  std::string user_data_prefix = "user_data";       ///< `{p}:{user}` hash
  std::string user_socket_prefix = "user_sockets";  ///< `{p}:{user}` zset of sockets
  std::chrono::milliseconds default_ttl =
      std::chrono::minutes(5);  ///< presence, renewed by activity
  std::chrono::milliseconds idle_ttl =
      std::chrono::hours(1);  ///< user_data kept after last activity
  std::chrono::milliseconds away_after = std::chrono::minutes(1);  ///< status away from here
  std::chrono::milliseconds idle_after = std::chrono::minutes(3);  ///< status idle from here
  std::int64_t purge_batch = 100;  ///< expired users removed per write (0: only by purge calls)
};

/// What async_set_user_online records. Owns its strings (a constructor: safe in co_await on g++
/// 12). Times are not taken from the caller: connected_at and last_activity are server time.
struct OnlineUserData {
  OnlineUserData(std::string socket, std::string matricule_ = {})  // NOLINT: implicit on purpose
      : socket_id(std::move(socket)), matricule(std::move(matricule_)) {}
  OnlineUserData(char const* socket) : socket_id(socket) {}  // NOLINT
  std::string socket_id;                                     ///< required
  std::string matricule;  ///< kept from an earlier call when empty
};

/// Derived from the time since the last activity (see OnlineUserOptions).
enum class PresenceStatus { online, away, idle };

/// "online", "away", "idle" (seed 000's statusDistribution keys).
constexpr std::string_view to_string(PresenceStatus s) noexcept {
  return s == PresenceStatus::online ? "online" : s == PresenceStatus::away ? "away" : "idle";
}

/// One online user of a page of async_get_online_users. Times: server unix milliseconds.
struct OnlineUser {
  std::string user_id;
  std::string socket_id;  ///< the latest socket
  std::string matricule;
  PresenceStatus status = PresenceStatus::online;
  std::int64_t connected_at_ms = 0;  ///< start of the session
  std::int64_t last_activity_ms = 0;
  std::int64_t expires_at_ms = 0;  ///< offline then, unless renewed
};

/// A page of online users; pass next_cursor to the next call until it is empty.
struct OnlineUsersPage {
  std::vector<OnlineUser> users;
  std::string next_cursor;  ///< empty: the iteration is complete
  bool done() const noexcept { return next_cursor.empty(); }
};

/// Seed 000's getPresenceStats. The distribution's parts add up to total_online.
struct PresenceStats {
  std::int64_t total_online = 0;
  std::int64_t new_connections_last_hour = 0;  ///< new sockets, per minute: last 59-60 min
  std::chrono::milliseconds average_session_duration{0};  ///< of closed sessions (0: none)
  std::int64_t sessions_closed = 0;
  std::int64_t peak_online_users = 0;
  std::int64_t peak_at_ms = 0;  ///< server unix ms (0: never)
  struct Distribution {
    std::int64_t online = 0, away = 0, idle = 0;
  } status_distribution;
};

namespace detail::online {

// ---- scripts: Lua and its C++ twin (see rediskit/script.hpp) --------------------------------

inline std::optional<std::int64_t> to_int(std::optional<std::string> const& s) {
  if (!s) return std::nullopt;
  std::int64_t v = 0;
  auto const r = std::from_chars(s->data(), s->data() + s->size(), v);
  if (r.ec != std::errc{} || r.ptr != s->data() + s->size()) return std::nullopt;
  return v;
}
inline std::int64_t arg_int(ScriptContext auto& c, std::size_t i) {
  return to_int(std::string(c.args()[i])).value_or(0);
}
inline std::string str(std::int64_t v) {
  return std::to_string(v);
}

inline constexpr char const kPrelude[] = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function close_session(S, D, ended)
  local v = redis.call('HMGET', D, 'connected_at', 'last_activity')
  local c = tonumber(v[1])
  if not c then return end
  local d = (ended or tonumber(v[2]) or c) - c
  if d < 0 then d = 0 end
  redis.call('HINCRBY', S, 'sessions', 1)
  redis.call('HINCRBY', S, 'session_ms', d)
end
local function purge(P, S, now, batch, dprefix, sprefix)
  if batch <= 0 then return 0 end
  local ex = redis.call('ZRANGE', P, '-inf', now, 'BYSCORE', 'LIMIT', 0, batch)
  for _, u in ipairs(ex) do
    close_session(S, dprefix .. u, nil)
    redis.call('ZREM', P, u)
    redis.call('DEL', sprefix .. u)
  end
  return #ex
end
)lua";

inline void close_session(ScriptContext auto& c, std::string_view S, std::string_view D,
                          std::optional<std::int64_t> ended) {
  auto const v = c.call(cmd::hmget{.key = D, .fields = {"connected_at", "last_activity"}});
  auto const conn = to_int(v[0]);
  if (!conn) return;
  std::int64_t const d =
      std::max<std::int64_t>(0, ended.value_or(to_int(v[1]).value_or(*conn)) - *conn);
  c.call(cmd::hincrby{.key = S, .field = "sessions", .increment = 1});
  c.call(cmd::hincrby{.key = S, .field = "session_ms", .increment = d});
}

inline std::int64_t purge(ScriptContext auto& c, std::string_view P, std::string_view S,
                          std::int64_t now, std::int64_t batch, std::string_view dprefix,
                          std::string_view sprefix) {
  if (batch <= 0) return 0;
  auto const ex = c.call(cmd::zrange_by_score{.key = P,
                                              .min = ScoreBound::neg_inf(),
                                              .max = ScoreBound::incl(double(now)),
                                              .limit = RangeLimit{0, batch}});
  for (auto const& u : ex) {
    close_session(c, S, std::string(dprefix) + u, std::nullopt);
    c.call(cmd::zrem{.key = P, .members = u});
    c.call(cmd::del{.keys = std::string(sprefix) + u});
  }
  return static_cast<std::int64_t>(ex.size());
}

inline bool alive(std::optional<double> score, std::int64_t now) {
  return score && *score > double(now);
}

// KEYS: P S D K. ARGV: user socket matricule ttl data_ttl batch dprefix sprefix.
// -> 1 when this call started a session (the user was offline), else 0.
inline std::int64_t set_online_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const now = c.unix_ms(), ttl = arg_int(c, 3), exp = now + ttl;
  purge(c, k[0], k[1], now, arg_int(c, 5), a[6], a[7]);
  auto const sc = c.call(cmd::zscore{.key = k[0], .member = a[0]});
  bool const fresh = !alive(sc, now);
  if (fresh) {
    if (sc) close_session(c, k[1], k[2], std::nullopt);
    c.call(cmd::del{.keys = k[3]});
  } else {
    c.call(cmd::zremrangebyscore{.key = k[3], .max = ScoreBound::incl(double(now))});
  }
  auto const added = c.call(cmd::zadd{.key = k[3], .members = ScoreMember{double(exp), a[1]}});
  c.call(cmd::pexpire{.key = k[3], .ttl = std::chrono::milliseconds(ttl)});
  c.call(cmd::zadd{.key = k[0], .members = ScoreMember{double(exp), a[0]}});
  std::string const n = str(now);
  if (fresh) c.call(cmd::hset{.key = k[2], .fields = FieldValue{"connected_at", n}});
  c.call(cmd::hset{.key = k[2],
                   .fields = {FieldValue{"socket_id", a[1]}, FieldValue{"last_activity", n}}});
  if (!a[2].empty()) c.call(cmd::hset{.key = k[2], .fields = FieldValue{"matricule", a[2]}});
  c.call(cmd::pexpire{.key = k[2], .ttl = std::chrono::milliseconds(arg_int(c, 4))});
  if (added == 1) {
    std::int64_t const minute = now / 60000, slot = minute % 60;
    std::string const mf = "m" + str(slot), cf = "c" + str(slot);
    if (to_int(c.call(cmd::hget{.key = k[1], .field = mf})) == minute) {
      c.call(cmd::hincrby{.key = k[1], .field = cf, .increment = 1});
    } else {
      std::string const m = str(minute);
      c.call(cmd::hset{.key = k[1], .fields = {FieldValue{mf, m}, FieldValue{cf, "1"}}});
    }
  }
  if (fresh) {
    auto const online = c.call(cmd::zcount{.key = k[0], .min = ScoreBound::excl(double(now))});
    if (online > to_int(c.call(cmd::hget{.key = k[1], .field = "peak"})).value_or(0)) {
      std::string const o = str(online);
      c.call(cmd::hset{.key = k[1], .fields = {FieldValue{"peak", o}, FieldValue{"peak_at", n}}});
    }
  }
  return fresh ? 1 : 0;
}
inline auto const set_online_script = make_script<std::int64_t>(std::string(kPrelude) + R"lua(
local P, S, D, K = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms()
local ttl = tonumber(ARGV[4])
local exp = now + ttl
purge(P, S, now, tonumber(ARGV[6]), ARGV[7], ARGV[8])
local sc = redis.call('ZSCORE', P, ARGV[1])
local fresh = (not sc) or tonumber(sc) <= now
if fresh then
  if sc then close_session(S, D, nil) end
  redis.call('DEL', K)
else
  redis.call('ZREMRANGEBYSCORE', K, '-inf', now)
end
local added = redis.call('ZADD', K, exp, ARGV[2])
redis.call('PEXPIRE', K, ttl)
redis.call('ZADD', P, exp, ARGV[1])
if fresh then redis.call('HSET', D, 'connected_at', now) end
redis.call('HSET', D, 'socket_id', ARGV[2], 'last_activity', now)
if ARGV[3] ~= '' then redis.call('HSET', D, 'matricule', ARGV[3]) end
redis.call('PEXPIRE', D, tonumber(ARGV[5]))
if added == 1 then
  local minute = math.floor(now / 60000)
  local slot = minute % 60
  if tonumber(redis.call('HGET', S, 'm' .. slot)) == minute then
    redis.call('HINCRBY', S, 'c' .. slot, 1)
  else
    redis.call('HSET', S, 'm' .. slot, minute, 'c' .. slot, 1)
  end
end
if fresh then
  local online = redis.call('ZCOUNT', P, '(' .. now, '+inf')
  if online > (tonumber(redis.call('HGET', S, 'peak')) or 0) then
    redis.call('HSET', S, 'peak', online, 'peak_at', now)
  end
  return 1
end
return 0
)lua",
                                                    [](ScriptContext auto& c) { return set_online_twin(c); });

// KEYS: P S D K. ARGV: user socket("" = all) data_ttl batch dprefix sprefix.
// -> 1 when the user went offline by this call, else 0.
inline std::int64_t set_offline_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const now = c.unix_ms();
  purge(c, k[0], k[1], now, arg_int(c, 3), a[4], a[5]);
  auto const sc = c.call(cmd::zscore{.key = k[0], .member = a[0]});
  if (!sc) return 0;
  if (!alive(sc, now)) {
    close_session(c, k[1], k[2], std::nullopt);
    c.call(cmd::zrem{.key = k[0], .members = a[0]});
    c.call(cmd::del{.keys = k[3]});
    return 0;
  }
  std::int64_t left = 0;
  if (!a[1].empty()) {
    c.call(cmd::zrem{.key = k[3], .members = a[1]});
    c.call(cmd::zremrangebyscore{.key = k[3], .max = ScoreBound::incl(double(now))});
    left = c.call(cmd::zcard{k[3]});
  }
  if (left == 0) {
    close_session(c, k[1], k[2], now);
    c.call(cmd::zrem{.key = k[0], .members = a[0]});
    c.call(cmd::del{.keys = k[3]});
    if (c.call(cmd::exists{.keys = k[2]}) == 1) {
      c.call(cmd::hset{.key = k[2], .fields = FieldValue{"disconnected_at", str(now)}});
      c.call(cmd::pexpire{.key = k[2], .ttl = std::chrono::milliseconds(arg_int(c, 2))});
    }
    return 1;
  }
  auto const top = c.call(cmd::zrange_withscores{.key = k[3], .start = -1, .stop = -1});
  c.call(cmd::zadd{.key = k[0], .members = ScoreMember{top[0].second, a[0]}});
  c.call(cmd::pexpire{.key = k[3],
                      .ttl = std::chrono::milliseconds(std::int64_t(top[0].second) - now)});
  c.call(cmd::hset{.key = k[2], .fields = FieldValue{"socket_id", top[0].first}});
  return 0;
}
inline auto const set_offline_script = make_script<std::int64_t>(std::string(kPrelude) + R"lua(
local P, S, D, K = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms()
purge(P, S, now, tonumber(ARGV[4]), ARGV[5], ARGV[6])
local sc = redis.call('ZSCORE', P, ARGV[1])
if not sc then return 0 end
if tonumber(sc) <= now then
  close_session(S, D, nil)
  redis.call('ZREM', P, ARGV[1])
  redis.call('DEL', K)
  return 0
end
local left = 0
if ARGV[2] ~= '' then
  redis.call('ZREM', K, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', K, '-inf', now)
  left = redis.call('ZCARD', K)
end
if left == 0 then
  close_session(S, D, now)
  redis.call('ZREM', P, ARGV[1])
  redis.call('DEL', K)
  if redis.call('EXISTS', D) == 1 then
    redis.call('HSET', D, 'disconnected_at', now)
    redis.call('PEXPIRE', D, tonumber(ARGV[3]))
  end
  return 1
end
local top = redis.call('ZRANGE', K, -1, -1, 'WITHSCORES')
redis.call('ZADD', P, top[2], ARGV[1])
redis.call('PEXPIRE', K, tonumber(top[2]) - now)
redis.call('HSET', D, 'socket_id', top[1])
return 0
)lua",
                                                     [](ScriptContext auto& c) { return set_offline_twin(c); });

// KEYS: P D K. ARGV: user socket("" = all) ttl data_ttl. -> 1 when renewed, 0 when the user (or
// that socket) is not online.
inline std::int64_t touch_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const now = c.unix_ms(), ttl = arg_int(c, 2), exp = now + ttl;
  if (!alive(c.call(cmd::zscore{.key = k[0], .member = a[0]}), now)) return 0;
  if (!a[1].empty()) {
    if (!alive(c.call(cmd::zscore{.key = k[2], .member = a[1]}), now)) return 0;
    c.call(cmd::zadd{.key = k[2], .members = ScoreMember{double(exp), a[1]}});
  } else {
    auto const live =
        c.call(cmd::zrange_by_score{.key = k[2], .min = ScoreBound::excl(double(now))});
    for (auto const& s : live)
      c.call(cmd::zadd{.key = k[2], .members = ScoreMember{double(exp), s}});
  }
  c.call(cmd::zremrangebyscore{.key = k[2], .max = ScoreBound::incl(double(now))});
  c.call(cmd::pexpire{.key = k[2], .ttl = std::chrono::milliseconds(ttl)});
  c.call(cmd::zadd{.key = k[0], .members = ScoreMember{double(exp), a[0]}});
  c.call(cmd::hset{.key = k[1], .fields = FieldValue{"last_activity", str(now)}});
  c.call(cmd::pexpire{.key = k[1], .ttl = std::chrono::milliseconds(arg_int(c, 3))});
  return 1;
}
inline auto const touch_script = make_script<std::int64_t>(std::string(kPrelude) + R"lua(
local P, D, K = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local ttl = tonumber(ARGV[3])
local exp = now + ttl
local sc = redis.call('ZSCORE', P, ARGV[1])
if (not sc) or tonumber(sc) <= now then return 0 end
if ARGV[2] ~= '' then
  local ss = redis.call('ZSCORE', K, ARGV[2])
  if (not ss) or tonumber(ss) <= now then return 0 end
  redis.call('ZADD', K, exp, ARGV[2])
else
  local live = redis.call('ZRANGE', K, '(' .. now, '+inf', 'BYSCORE')
  for _, s in ipairs(live) do redis.call('ZADD', K, exp, s) end
end
redis.call('ZREMRANGEBYSCORE', K, '-inf', now)
redis.call('PEXPIRE', K, ttl)
redis.call('ZADD', P, exp, ARGV[1])
redis.call('HSET', D, 'last_activity', now)
redis.call('PEXPIRE', D, tonumber(ARGV[4]))
return 1
)lua",
                                               [](ScriptContext auto& c) { return touch_twin(c); });

// KEYS: P. -> how many users are online.
inline std::int64_t count_twin(ScriptContext auto& c) {
  return c.call(cmd::zcount{.key = c.keys()[0], .min = ScoreBound::excl(double(c.unix_ms()))});
}
inline auto const count_script = make_script<std::int64_t>(std::string(kPrelude) + R"lua(
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms(), '+inf')
)lua",
                                               [](ScriptContext auto& c) { return count_twin(c); });

// KEYS: P S. ARGV: batch dprefix sprefix. -> how many expired users were removed.
inline std::int64_t purge_twin(ScriptContext auto& c) {
  auto const a = c.args();
  return purge(c, c.keys()[0], c.keys()[1], c.unix_ms(), arg_int(c, 0), a[1], a[2]);
}
inline auto const purge_script = make_script<std::int64_t>(std::string(kPrelude) + R"lua(
return purge(KEYS[1], KEYS[2], now_ms(), tonumber(ARGV[1]), ARGV[2], ARGV[3])
)lua",
                                               [](ScriptContext auto& c) { return purge_twin(c); });

// KEYS: P S. ARGV: ttl away_after idle_after batch dprefix sprefix.
// -> {total, online, away, idle, peak, peak_at, connections last hour, sessions, session_ms}.
inline std::vector<std::int64_t> stats_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const now = c.unix_ms(), ttl = arg_int(c, 0);
  purge(c, k[0], k[1], now, arg_int(c, 3), a[4], a[5]);
  std::int64_t const b_idle = std::max(now, now + ttl - arg_int(c, 2));
  std::int64_t const b_away = std::max(b_idle, now + ttl - arg_int(c, 1));
  auto count = [&](std::int64_t lo, std::optional<std::int64_t> hi) {
    return c.call(cmd::zcount{.key = k[0],
                              .min = ScoreBound::excl(double(lo)),
                              .max = hi ? ScoreBound::incl(double(*hi)) : ScoreBound::pos_inf()});
  };
  std::int64_t const total = count(now, std::nullopt), online = count(b_away, std::nullopt),
                     away = count(b_idle, b_away), idle = count(now, b_idle);
  std::vector<std::string> names{"peak", "peak_at", "sessions", "session_ms"};
  for (int i = 0; i < 60; ++i) {
    names.push_back("m" + str(i));
    names.push_back("c" + str(i));
  }
  auto const v = c.call(cmd::hmget{.key = k[1], .fields = names});
  std::int64_t const minute = now / 60000;
  std::int64_t conns = 0;
  for (int i = 0; i < 60; ++i) {
    auto const m = to_int(v[4 + 2 * i]);
    if (m && *m > minute - 60) conns += to_int(v[5 + 2 * i]).value_or(0);
  }
  std::int64_t const peak = std::max(total, to_int(v[0]).value_or(0));
  return {total,
          online,
          away,
          idle,
          peak,
          to_int(v[1]).value_or(0),
          conns,
          to_int(v[2]).value_or(0),
          to_int(v[3]).value_or(0)};
}
inline auto const stats_script = make_script<std::vector<std::int64_t>>(std::string(kPrelude) + R"lua(
local P, S = KEYS[1], KEYS[2]
local now = now_ms()
local ttl = tonumber(ARGV[1])
purge(P, S, now, tonumber(ARGV[4]), ARGV[5], ARGV[6])
local b_idle = math.max(now, now + ttl - tonumber(ARGV[3]))
local b_away = math.max(b_idle, now + ttl - tonumber(ARGV[2]))
local total = redis.call('ZCOUNT', P, '(' .. now, '+inf')
local online = redis.call('ZCOUNT', P, '(' .. b_away, '+inf')
local away = redis.call('ZCOUNT', P, '(' .. b_idle, b_away)
local idle = redis.call('ZCOUNT', P, '(' .. now, b_idle)
local f = {'peak', 'peak_at', 'sessions', 'session_ms'}
for i = 0, 59 do f[#f + 1] = 'm' .. i; f[#f + 1] = 'c' .. i end
local v = redis.call('HMGET', S, unpack(f))
local minute = math.floor(now / 60000)
local conns = 0
for i = 0, 59 do
  local m = tonumber(v[5 + 2 * i])
  if m and m > minute - 60 then conns = conns + (tonumber(v[6 + 2 * i]) or 0) end
end
local peak = math.max(total, tonumber(v[1]) or 0)
return {total, online, away, idle, peak, tonumber(v[2]) or 0, conns, tonumber(v[3]) or 0,
        tonumber(v[4]) or 0}
)lua",
                                                            [](ScriptContext auto& c) { return stats_twin(c); });

// KEYS: P. ARGV: has_cursor cursor_score cursor_member count dprefix.
// -> {now, then per user: id, expiry, socket_id, matricule, connected_at, last_activity}.
// Order: (expiry, id), the zset's own order; the page starts after the cursor (found by ZRANK
// when the cursor's user still has that expiry, else by counting).
inline std::vector<std::string> page_twin(ScriptContext auto& c) {
  auto const P = c.keys()[0];
  auto const a = c.args();
  std::int64_t const now = c.unix_ms(), count = arg_int(c, 3);
  std::int64_t start = c.call(cmd::zcount{.key = P, .max = ScoreBound::incl(double(now))});
  if (a[0] == "1") {
    double const cs = double(arg_int(c, 1));
    std::string_view const cm = a[2];
    std::int64_t pos = 0;
    if (auto const sc = c.call(cmd::zscore{.key = P, .member = cm}); sc && *sc == cs) {
      pos = *c.call(cmd::zrank{.key = P, .member = cm}) + 1;
    } else {
      pos = c.call(cmd::zcount{.key = P, .max = ScoreBound::excl(cs)});
      for (std::int64_t off = 0;; off += 128) {
        auto const run = c.call(cmd::zrange_by_score{.key = P,
                                                     .min = ScoreBound::incl(cs),
                                                     .max = ScoreBound::incl(cs),
                                                     .limit = RangeLimit{off, 128}});
        bool past = false;
        for (auto const& m : run) {
          if (std::string_view(m) <= cm)
            ++pos;
          else {
            past = true;
            break;
          }
        }
        if (past || run.size() < 128) break;
      }
    }
    start = std::max(start, pos);
  }
  auto const page =
      c.call(cmd::zrange_withscores{.key = P, .start = start, .stop = start + count - 1});
  std::vector<std::string> out{str(now)};
  for (auto const& [u, s] : page) {
    auto const d =
        c.call(cmd::hmget{.key = std::string(a[4]) + u,
                          .fields = {"socket_id", "matricule", "connected_at", "last_activity"}});
    out.push_back(u);
    out.push_back(str(std::int64_t(s)));
    for (auto const& f : d)
      out.push_back(f.value_or(""));
  }
  return out;
}
inline auto const page_script = make_script<std::vector<std::string>>(std::string(kPrelude) + R"lua(
local P = KEYS[1]
local now = now_ms()
local count = tonumber(ARGV[4])
local function le(x, y)
  if x == y then return true end
  for i = 1, math.min(#x, #y) do
    local p, q = string.byte(x, i), string.byte(y, i)
    if p ~= q then return p < q end
  end
  return #x <= #y
end
local start = redis.call('ZCOUNT', P, '-inf', now)
if ARGV[1] == '1' then
  local cs, cm = tonumber(ARGV[2]), ARGV[3]
  local pos
  local sc = redis.call('ZSCORE', P, cm)
  if sc and tonumber(sc) == cs then
    pos = redis.call('ZRANK', P, cm) + 1
  else
    pos = redis.call('ZCOUNT', P, '-inf', '(' .. ARGV[2])
    local off = 0
    while true do
      local run = redis.call('ZRANGE', P, ARGV[2], ARGV[2], 'BYSCORE', 'LIMIT', off, 128)
      local past = false
      for _, m in ipairs(run) do
        if le(m, cm) then pos = pos + 1 else past = true; break end
      end
      if past or #run < 128 then break end
      off = off + 128
    end
  end
  if pos > start then start = pos end
end
local page = redis.call('ZRANGE', P, start, start + count - 1, 'WITHSCORES')
local out = {now}
for i = 1, #page, 2 do
  local u = page[i]
  local d = redis.call('HMGET', ARGV[5] .. u, 'socket_id', 'matricule', 'connected_at',
                       'last_activity')
  out[#out + 1] = u
  out[#out + 1] = page[i + 1]
  for j = 1, 4 do out[#out + 1] = d[j] or '' end
end
return out
)lua",
                                                          [](ScriptContext auto& c) { return page_twin(c); });

/// Owned keys and arguments of one call: the command is built from them when the operation
/// starts (with `deferred`, after the initiating function returned). Shared with the handler
/// so that the result can refer to them (async_filter_online's ids).
struct Call {
  std::vector<std::string> keys;
  std::vector<std::string> args;
};

template <class Map>
struct WithCall {
  Map map;
  std::shared_ptr<Call const> call;
  template <class R>
  auto operator()(boost::system::error_code& ec, R&& r) {
    return map(ec, std::forward<R>(r), *call);
  }
};

template <class T>
concept NotText = !std::is_convertible_v<T, std::string_view>;

/// The status of a user whose presence expires at `expiry` (the same bounds as stats_script).
inline PresenceStatus status_of(std::int64_t expiry, std::int64_t now, std::int64_t ttl,
                                std::int64_t away_after, std::int64_t idle_after) {
  std::int64_t const b_idle = std::max(now, now + ttl - idle_after);
  std::int64_t const b_away = std::max(b_idle, now + ttl - away_after);
  if (expiry > b_away) return PresenceStatus::online;
  if (expiry > b_idle) return PresenceStatus::away;
  return PresenceStatus::idle;
}

}  // namespace detail::online

/// Seed 000's OnlineUserManager over any Backend (see the top of this file). Thread safety: as
/// the backend (the manager holds no mutable state). Every operation is one round trip and
/// completes through the handler's executor (else the backend's), never inside the initiating
/// call; invalid input (an empty user or socket id, a count < 1, a cursor this manager did not
/// make) completes with Error::invalid_argument; backend failures with the backend's error.
template <Backend B>
class OnlineUserManager {
  using Call = detail::online::Call;
  using error_code = boost::system::error_code;

 public:
  explicit OnlineUserManager(B& backend, OnlineUserOptions options = {})
      : backend_(&backend), opt_(std::move(options)) {
    KeySpace const p(opt_.presence_prefix);
    online_key_ = p.key("online");
    stats_key_ = p.key("stats");
    data_prefix_ = KeySpace(opt_.user_data_prefix).key("");
    socket_prefix_ = KeySpace(opt_.user_socket_prefix).key("");
  }

  OnlineUserOptions const& options() const noexcept { return opt_; }

  /// Marks a socket of the user online, or renews it (seed: setUserOnline). Script.
  /// void(error_code, bool): true when this started a session (the user was offline).
  template <class Token = boost::asio::deferred_t>
  auto async_set_user_online(std::string_view user_id, OnlineUserData const& data,
                             Token&& token = {}) {
    return script_op<bool>(
        std::forward<Token>(token), !user_id.empty() && !data.socket_id.empty(),
        detail::online::set_online_script,
        Call{{online_key_, stats_key_, data_key(user_id), socket_key(user_id)},
             {std::string(user_id), data.socket_id, data.matricule, ms(opt_.default_ttl),
              data_ttl(), std::to_string(opt_.purge_batch), data_prefix_, socket_prefix_}},
        [](error_code&, std::int64_t r, Call const&) { return r == 1; });
  }

  /// Marks the user offline, every socket (seed: setUserOffline). Script.
  /// void(error_code, bool): true when the user was online.
  template <detail::online::NotText Token = boost::asio::deferred_t>
  auto async_set_user_offline(std::string_view user_id, Token&& token = {}) {
    return offline(user_id, {}, true, std::forward<Token>(token));
  }

  /// Removes one socket; the user stays online while another is alive. Script.
  /// void(error_code, bool): true when this made the user offline.
  template <class Token = boost::asio::deferred_t>
  auto async_set_user_offline(std::string_view user_id, std::string_view socket_id,
                              Token&& token = {}) {
    return offline(user_id, socket_id, !socket_id.empty(), std::forward<Token>(token));
  }

  /// Renews the presence of every socket of the user (seed: updateLastActivity). Script.
  /// void(error_code, bool): false when the user is not online (then nothing changes: call
  /// async_set_user_online).
  template <detail::online::NotText Token = boost::asio::deferred_t>
  auto async_update_last_activity(std::string_view user_id, Token&& token = {}) {
    return touch(user_id, {}, true, std::forward<Token>(token));
  }

  /// Renews one socket (its heartbeat): a socket that stops renewing expires on its own.
  /// void(error_code, bool): false when that socket is not online.
  template <class Token = boost::asio::deferred_t>
  auto async_update_last_activity(std::string_view user_id, std::string_view socket_id,
                                  Token&& token = {}) {
    return touch(user_id, socket_id, !socket_id.empty(), std::forward<Token>(token));
  }

  /// void(error_code, bool): online now (seed: isUserOnline). Transaction TIME + ZSCORE.
  template <class Token = boost::asio::deferred_t>
  auto async_is_user_online(std::string_view user_id, Token&& token = {}) {
    return owned_op<bool>(
        std::forward<Token>(token), !user_id.empty(), Call{{online_key_}, {std::string(user_id)}},
        [](Call const& c) {
          return transaction(cmd::time{}, cmd::zscore{.key = c.keys[0], .member = c.args[0]});
        },
        [](error_code&, auto r, Call const&) {
          auto const& [t, score] = r;
          return detail::online::alive(score, t.first * 1000 + t.second / 1000);
        });
  }

  /// Which of `user_ids` are online, in the order given (duplicates kept): what RoomManager's
  /// get_room_online_users needs. One round trip (transaction TIME + ZMSCORE) for any number
  /// of ids; an empty list completes with an empty vector.
  /// void(error_code, std::vector<std::string>).
  template <class Token = boost::asio::deferred_t>
  auto async_filter_online(ArgList<std::string_view> user_ids, Token&& token = {}) {
    Call call{{online_key_}, {}};
    call.args.reserve(user_ids.size() + 1);
    user_ids.for_each([&](std::string_view id) { call.args.emplace_back(id); });
    bool const none = call.args.empty();
    if (none) call.args.emplace_back();  // ZMSCORE needs a member; "" is never online
    return owned_op<std::vector<std::string>>(
        std::forward<Token>(token), true, std::move(call),
        [](Call const& c) {
          return transaction(cmd::time{}, cmd::zmscore{.key = c.keys[0], .members = c.args});
        },
        [none](error_code&, auto r, Call const& c) {
          auto const& [t, scores] = r;
          std::int64_t const now = t.first * 1000 + t.second / 1000;
          std::vector<std::string> out;
          for (std::size_t i = 0; !none && i < scores.size() && i < c.args.size(); ++i)
            if (detail::online::alive(scores[i], now)) out.push_back(c.args[i]);
          return out;
        });
  }

  /// One page of the online users (seed: getOnlineUsers), at most `count`, in order of
  /// expiry. Pass "" first, then the page's next_cursor until it is empty. A user online for
  /// the whole iteration is returned (twice if their expiry moved past the cursor meanwhile:
  /// dedupe if it matters); each page costs O(log n + count). Script.
  /// void(error_code, OnlineUsersPage).
  template <class Token = boost::asio::deferred_t>
  auto async_get_online_users(std::string_view cursor = {}, std::int64_t count = 100,
                              Token&& token = {}) {
    auto const colon = cursor.find(':');
    std::int64_t score = 0;
    bool ok = count > 0;
    if (!cursor.empty()) {
      auto const r =
          std::from_chars(cursor.data(), cursor.data() + std::min(colon, cursor.size()), score);
      ok = ok && colon != std::string_view::npos && r.ec == std::errc{} &&
           r.ptr == cursor.data() + colon;
    }
    Call call{{online_key_},
              {cursor.empty() ? "0" : "1", std::to_string(score),
               ok && !cursor.empty() ? std::string(cursor.substr(colon + 1)) : std::string(),
               std::to_string(count), data_prefix_}};
    return script_op<OnlineUsersPage>(
        std::forward<Token>(token), ok, detail::online::page_script, std::move(call),
        [ttl = opt_.default_ttl.count(), away = opt_.away_after.count(),
         idle = opt_.idle_after.count()](error_code& ec, std::vector<std::string> r,
                                         Call const& c) {
          OnlineUsersPage page;
          if (ec) return page;
          if (r.empty() || (r.size() - 1) % 6 != 0) {
            ec = make_error_code(Error::incompatible_size);
            return page;
          }
          auto num = [](std::string const& s) { return detail::online::to_int(s).value_or(0); };
          std::int64_t const now = num(r[0]);
          for (std::size_t i = 1; i + 5 < r.size(); i += 6) {
            OnlineUser u;
            u.user_id = std::move(r[i]);
            u.expires_at_ms = num(r[i + 1]);
            u.socket_id = std::move(r[i + 2]);
            u.matricule = std::move(r[i + 3]);
            u.connected_at_ms = num(r[i + 4]);
            u.last_activity_ms = num(r[i + 5]);
            u.status = detail::online::status_of(u.expires_at_ms, now, ttl, away, idle);
            page.users.push_back(std::move(u));
          }
          if (!page.users.empty() && std::int64_t(page.users.size()) == num(c.args[3]))
            page.next_cursor =
                std::to_string(page.users.back().expires_at_ms) + ":" + page.users.back().user_id;
          return page;
        });
  }

  /// void(error_code, std::int64_t): users online now (seed: getOnlineCount). ZCOUNT over
  /// live expiries in a script: O(log n), exact when entries expire.
  template <class Token = boost::asio::deferred_t>
  auto async_get_online_count(Token&& token = {}) {
    return script_op<std::int64_t>(std::forward<Token>(token), true, detail::online::count_script,
                                   Call{{online_key_}, {}},
                                   [](error_code&, std::int64_t n, Call const&) { return n; });
  }

  /// void(error_code, PresenceStats) (seed: getPresenceStats). Script: purges a batch, then
  /// O(log n) counts and one HMGET of the stats hash.
  template <class Token = boost::asio::deferred_t>
  auto async_get_presence_stats(Token&& token = {}) {
    return script_op<PresenceStats>(
        std::forward<Token>(token), true, detail::online::stats_script,
        Call{{online_key_, stats_key_},
             {ms(opt_.default_ttl), ms(opt_.away_after), ms(opt_.idle_after),
              std::to_string(opt_.purge_batch), data_prefix_, socket_prefix_}},
        [](error_code& ec, std::vector<std::int64_t> v, Call const&) {
          PresenceStats s;
          if (ec) return s;
          if (v.size() != 9) {
            ec = make_error_code(Error::incompatible_size);
            return s;
          }
          s.total_online = v[0];
          s.status_distribution = {v[1], v[2], v[3]};
          s.peak_online_users = v[4];
          s.peak_at_ms = v[5];
          s.new_connections_last_hour = v[6];
          s.sessions_closed = v[7];
          s.average_session_duration = std::chrono::milliseconds(v[7] > 0 ? v[8] / v[7] : 0);
          return s;
        });
  }

  /// Removes up to `batch` expired users from the presence set, closing their sessions (writes
  /// do this by purge_batch already; call it from a periodic task when writes are rare).
  /// void(error_code, std::int64_t): how many were removed. Script.
  template <class Token = boost::asio::deferred_t>
  auto async_purge_expired(std::int64_t batch, Token&& token = {}) {
    return script_op<std::int64_t>(
        std::forward<Token>(token), batch > 0, detail::online::purge_script,
        Call{{online_key_, stats_key_}, {std::to_string(batch), data_prefix_, socket_prefix_}},
        [](error_code&, std::int64_t n, Call const&) { return n; });
  }

 private:
  template <class Token>
  auto offline(std::string_view user_id, std::string_view socket_id, bool ok, Token&& token) {
    return script_op<bool>(std::forward<Token>(token), ok && !user_id.empty(),
                           detail::online::set_offline_script,
                           Call{{online_key_, stats_key_, data_key(user_id), socket_key(user_id)},
                                {std::string(user_id), std::string(socket_id), data_ttl(),
                                 std::to_string(opt_.purge_batch), data_prefix_, socket_prefix_}},
                           [](error_code&, std::int64_t r, Call const&) { return r == 1; });
  }

  template <class Token>
  auto touch(std::string_view user_id, std::string_view socket_id, bool ok, Token&& token) {
    return script_op<bool>(
        std::forward<Token>(token), ok && !user_id.empty(), detail::online::touch_script,
        Call{{online_key_, data_key(user_id), socket_key(user_id)},
             {std::string(user_id), std::string(socket_id), ms(opt_.default_ttl), data_ttl()}},
        [](error_code&, std::int64_t r, Call const&) { return r == 1; });
  }

  template <class Result, class Token, class Reply, class Twin, class Map>
  auto script_op(Token&& token, bool ok, Script<Reply, Twin> const& script, Call call, Map map) {
    return owned_op<Result>(
        std::forward<Token>(token), ok, std::move(call),
        [s = &script](Call const& c) { return (*s)(c.keys, c.args); }, std::move(map));
  }

  // One round trip: `make(call)` built when the operation starts, its reply mapped by
  // `map(ec, reply, call)`. `ok == false`: Error::invalid_argument, nothing sent.
  template <class Result, class Token, class Make, class Map>
  auto owned_op(Token&& token, bool ok, Call call, Make make, Map map) {
    return boost::asio::async_initiate<Token, void(error_code, Result)>(
        [b = backend_](auto handler, bool ok, std::shared_ptr<Call const> call, Make make,
                       Map map) {
          if (!ok)
            return detail::post_handler(b->get_executor(), std::move(handler),
                                        make_error_code(Error::invalid_argument), Result{});
          auto const x = make(*call);
          b->async_exec(x, detail::ThenHandler<decltype(handler), detail::online::WithCall<Map>>{
                               std::move(handler), {std::move(map), std::move(call)}});
        },
        token, ok, std::make_shared<Call const>(std::move(call)), std::move(make), std::move(map));
  }

  static std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }
  std::string data_ttl() const { return ms(std::max(opt_.idle_ttl, opt_.default_ttl)); }
  std::string data_key(std::string_view u) const { return data_prefix_ + std::string(u); }
  std::string socket_key(std::string_view u) const { return socket_prefix_ + std::string(u); }

  B* backend_;
  OnlineUserOptions opt_;
  std::string online_key_, stats_key_, data_prefix_, socket_prefix_;
};

}  // namespace rediskit
