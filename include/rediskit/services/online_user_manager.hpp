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
// Key layout (prefixes from OnlineUserOptions; seed 000's names are the defaults). Two layouts
// (OnlineUserOptions::key_layout, KeyLayout in key_space.hpp): `plain`, the default on one node
// and Sentinel, keeps seed 000's names so that a C++ service shares a Redis with the Node
// services; `clustered`, the default on ClusterBackend, gives every key of the manager the hash
// tag of the presence prefix, so they all live in one hash slot:
//   plain               clustered                        type
//   presence:online     {presence}:online                ZSET  user id -> expiry (server unix
//                                ms) of the user's presence. A user is online while expiry >
//                                now. Count: ZCOUNT (now, +inf], O(log n); expired members
//                                are invisible at once and removed later in bounded batches
//                                (the "purge", see below).
//   presence:stats      {presence}:stats                 HASH  peak, peak_at, sessions,
//                                session_ms, and the connections of the last hour: 60
//                                one-minute slots m<i> (minute) c<i> (count). ~124 small
//                                fields: stays a listpack.
//   user_data:{id}      {presence}:user_data:{id}        HASH  socket_id (latest), matricule,
//                                connected_at, last_activity, disconnected_at (server unix
//                                ms). Expires `idle_ttl` after the last activity: it outlives
//                                the presence ("last seen", and the session length once the
//                                presence expired). A listpack.
//   user_sockets:{id}   {presence}:user_sockets:{id}     ZSET  socket id -> expiry. Expires
//                                with the user's presence. A listpack (a user has few sockets).
// (clustered: `{<presence_prefix>}:online`, `{<presence_prefix>}:<user_data_prefix>:<id>`.)
// Why one slot: every write updates the one online zset and the one stats hash, so one
// manager's writes cannot be spread over masters anyway; with every key beside them, each
// script keeps its atomicity on a cluster. A cluster spreads several managers (several
// presence prefixes), not one. RoomManager reads the online zset as
// KeySpace(presence_prefix, layout).key("online") (OnlinePresence carries the layout).
// Per online user: one skip-list entry in presence:online plus two small listpack keys. Measured
// on Redis 7.0 with 300 000 users: ~600 B per user in all (MEMORY USAGE: user_data 184 B,
// user_sockets 120 B, presence:online ~128 B per entry; the rest is keyspace and expiry
// entries), ~20 000 set_user_online/s from one connection, get_online_count 0.03-0.3 ms.
//
// Round trips (the same code in both layouts; on a cluster every step goes to the one master
// of the manager's slot):
//   set_user_online, set_user_offline   1 script (atomic); +1 when the script saw expired users:
//                                       the purge of up to purge_batch of them (a script)
//   update_last_activity, get_online_count          1 script
//   is_user_online, filter_online                    1 transaction (TIME + ZSCORE / ZMSCORE)
//   get_online_users   1 script (the page: ids and expiries, atomic), then 1 batch of HMGETs
//                      of the page's user_data (read just after the page, not atomically with
//                      it: a user who changed socket in between shows the newer socket)
//   get_presence_stats 1 script; +1 (purge, then the stats again, one pipeline) when it saw
//                      expired users
//   purge_expired      1 script (which users expired), +1 (the purge) when there are some
//
// Guarantees:
//  - Time is the server's (Lua TIME; MemoryBackend's clock, FakeBackend's manual clock): the
//    client's clock is never stored or compared. Every write is one Lua script (atomic).
//  - A user is online while one of their sockets is: each socket has its own expiry, renewed by
//    activity on it (or on the user); the user's expiry is the latest of them.
//  - Counts never drift: online count and status distribution are ZCOUNTs over live expiries;
//    the distribution's parts add up to the total. Status is derived from the time since the
//    last activity: online < away_after <= away < idle_after <= idle < default_ttl (offline).
//  - Every script declares every key it touches in KEYS, in both layouts. An expired user's
//    keys are not known before a script runs, so the purge is two steps: a script (a write,
//    the stats, or purge_expired's first step) names up to `purge_batch` expired users, then
//    the purge script, with those users' keys declared, re-checks that each is still expired
//    before it closes the session (for the average duration), removes the user from the
//    online zset and deletes the sockets: a user who came back in between is left alone, and
//    writes in flight together that name the same users close each session once. A session
//    whose user_data expired first (idle_ttl without any purge) is not counted. At most
//    kMaxPurgeBatch (1000) users per purge. A write's purge is housekeeping: when it fails,
//    the write still completes with its own result (the next write or purge retries).
//  - Every manager sharing these keys must use the same default_ttl (status is expiry - ttl)
//    and the same layout.
//  - RoomManager reads the online zset for its online members and statuses: its
//    RoomOptions::presence (OnlinePresence) must have the same presence_prefix and key_layout
//    (and default_ttl, away_after, idle_after); RoomManager(backend, online_users) copies them.
//  - Options that cannot work complete every operation with Error::invalid_argument, nothing
//    sent: default_ttl <= 0, the same user_data and user_sockets prefix (the keys would
//    collide), and in the clustered layout an empty prefix (or a presence prefix starting with
//    '}', which gives no hash tag).
//  - Plain layout on ClusterBackend: every script would span slots (Error::cross_slot), unless
//    the three prefixes share a hash tag of their own ("{p}presence", "{p}user_data", ...).
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/detail/to_int.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
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
      std::chrono::minutes(5);  ///< presence, renewed by activity (> 0)
  std::chrono::milliseconds idle_ttl =
      std::chrono::hours(1);  ///< user_data kept after last activity
  std::chrono::milliseconds away_after = std::chrono::minutes(1);  ///< status away from here
  std::chrono::milliseconds idle_after = std::chrono::minutes(3);  ///< status idle from here
  /// Expired users purged after each write and stats call (0: only by purge calls); at most
  /// kMaxPurgeBatch.
  std::int64_t purge_batch = 100;
  /// Key names (see the top of this file); nullopt: default_key_layout_v<B> (clustered on
  /// ClusterBackend, plain elsewhere).
  std::optional<KeyLayout> key_layout{};
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

/// Most expired users one purge removes (its script declares two keys per user).
inline constexpr std::int64_t kMaxPurgeBatch = 1000;

namespace detail::online {

// ---- scripts: Lua and its C++ twin (see rediskit/script.hpp) --------------------------------
// Every key a script touches is in its KEYS. Scripts that may find expired users reply
// {value, expired ids...}: the ids (up to the ARGV batch) are purged by purge_script next.

inline std::int64_t arg_int(ScriptContext auto& c, std::size_t i) {
  return to_int(c.args()[i]);
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
local function expired(out, P, now, batch)
  if batch > 0 then
    local ex = redis.call('ZRANGE', P, '-inf', now, 'BYSCORE', 'LIMIT', 0, batch)
    for _, u in ipairs(ex) do out[#out + 1] = u end
  end
  return out
end
)lua";

inline void close_session(ScriptContext auto& c, std::string_view S, std::string_view D,
                          std::optional<std::int64_t> ended) {
  auto const v = c.call(cmd::hmget{.key = D, .fields = {"connected_at", "last_activity"}});
  auto const conn = parse_int(v[0]);
  if (!conn) return;
  std::int64_t const d =
      std::max<std::int64_t>(0, ended.value_or(parse_int(v[1]).value_or(*conn)) - *conn);
  c.call(cmd::hincrby{.key = S, .field = "sessions", .increment = 1});
  c.call(cmd::hincrby{.key = S, .field = "session_ms", .increment = d});
}

/// `out` followed by the ids of up to `batch` expired users of the online zset P.
inline std::vector<std::string> expired(ScriptContext auto& c, std::vector<std::string> out,
                                        std::string_view P, std::int64_t now,
                                        std::int64_t batch) {
  if (batch <= 0) return out;
  auto ex = c.call(cmd::zrange_by_score{.key = P,
                                        .min = ScoreBound::neg_inf(),
                                        .max = ScoreBound::incl(double(now)),
                                        .limit = RangeLimit{0, batch}});
  for (auto& u : ex)
    out.push_back(std::move(u));
  return out;
}

inline bool alive(std::optional<double> score, std::int64_t now) {
  return score && *score > double(now);
}

// KEYS: P S D K. ARGV: user socket matricule ttl data_ttl batch.
// -> {1 when this call started a session (the user was offline) else 0, expired ids...}.
inline std::vector<std::string> set_online_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const now = c.unix_ms(), ttl = arg_int(c, 3), exp = now + ttl;
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
    if (parse_int(c.call(cmd::hget{.key = k[1], .field = mf})) == minute) {
      c.call(cmd::hincrby{.key = k[1], .field = cf, .increment = 1});
    } else {
      std::string const m = str(minute);
      c.call(cmd::hset{.key = k[1], .fields = {FieldValue{mf, m}, FieldValue{cf, "1"}}});
    }
  }
  if (fresh) {
    auto const online = c.call(cmd::zcount{.key = k[0], .min = ScoreBound::excl(double(now))});
    if (online > parse_int(c.call(cmd::hget{.key = k[1], .field = "peak"})).value_or(0)) {
      std::string const o = str(online);
      c.call(cmd::hset{.key = k[1], .fields = {FieldValue{"peak", o}, FieldValue{"peak_at", n}}});
    }
  }
  return expired(c, {fresh ? "1" : "0"}, k[0], now, arg_int(c, 5));
}
inline auto const set_online_script = make_script<std::vector<std::string>>(std::string(kPrelude) + R"lua(
local P, S, D, K = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms()
local ttl = tonumber(ARGV[4])
local exp = now + ttl
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
end
return expired({fresh and 1 or 0}, P, now, tonumber(ARGV[6]))
)lua",
                                                    [](ScriptContext auto& c) { return set_online_twin(c); });

// KEYS: P S D K. ARGV: user socket("" = all) data_ttl batch.
// -> {1 when the user went offline by this call else 0, expired ids...}.
inline std::vector<std::string> set_offline_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const now = c.unix_ms(), batch = arg_int(c, 3);
  auto const sc = c.call(cmd::zscore{.key = k[0], .member = a[0]});
  if (!sc) return expired(c, {"0"}, k[0], now, batch);
  if (!alive(sc, now)) {
    close_session(c, k[1], k[2], std::nullopt);
    c.call(cmd::zrem{.key = k[0], .members = a[0]});
    c.call(cmd::del{.keys = k[3]});
    return expired(c, {"0"}, k[0], now, batch);
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
    return expired(c, {"1"}, k[0], now, batch);
  }
  auto const top = c.call(cmd::zrange_withscores{.key = k[3], .start = -1, .stop = -1});
  c.call(cmd::zadd{.key = k[0], .members = ScoreMember{top[0].second, a[0]}});
  c.call(cmd::pexpire{.key = k[3],
                      .ttl = std::chrono::milliseconds(std::int64_t(top[0].second) - now)});
  c.call(cmd::hset{.key = k[2], .fields = FieldValue{"socket_id", top[0].first}});
  return expired(c, {"0"}, k[0], now, batch);
}
inline auto const set_offline_script = make_script<std::vector<std::string>>(std::string(kPrelude) + R"lua(
local P, S, D, K = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms()
local batch = tonumber(ARGV[4])
local sc = redis.call('ZSCORE', P, ARGV[1])
if not sc then return expired({0}, P, now, batch) end
if tonumber(sc) <= now then
  close_session(S, D, nil)
  redis.call('ZREM', P, ARGV[1])
  redis.call('DEL', K)
  return expired({0}, P, now, batch)
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
  return expired({1}, P, now, batch)
end
local top = redis.call('ZRANGE', K, -1, -1, 'WITHSCORES')
redis.call('ZADD', P, top[2], ARGV[1])
redis.call('PEXPIRE', K, tonumber(top[2]) - now)
redis.call('HSET', D, 'socket_id', top[1])
return expired({0}, P, now, batch)
)lua",
                                                     [](ScriptContext auto& c) { return set_offline_twin(c); });

// KEYS: P S, then D K of each user of ARGV. ARGV: batch, then user ids (expired when another
// script named them). Each user still expired now has their session closed, leaves P, and loses
// their sockets; a user who came back (or is gone already) is left alone.
// -> {how many were purged, ids of up to `batch` users still expired (undeclared: not purged)}.
inline std::vector<std::string> purge_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const now = c.unix_ms();
  std::int64_t n = 0;
  for (std::size_t i = 1; i < a.size() && 2 * i + 1 < k.size(); ++i) {
    if (auto const sc = c.call(cmd::zscore{.key = k[0], .member = a[i]}); !sc || alive(sc, now))
      continue;
    close_session(c, k[1], k[2 * i], std::nullopt);
    c.call(cmd::zrem{.key = k[0], .members = a[i]});
    c.call(cmd::del{.keys = k[2 * i + 1]});
    ++n;
  }
  return expired(c, {str(n)}, k[0], now, arg_int(c, 0));
}
inline auto const purge_script = make_script<std::vector<std::string>>(std::string(kPrelude) + R"lua(
local P, S = KEYS[1], KEYS[2]
local now = now_ms()
local n = 0
for i = 2, #ARGV do
  local sc = redis.call('ZSCORE', P, ARGV[i])
  if sc and tonumber(sc) <= now then
    close_session(S, KEYS[2 * i - 1], nil)
    redis.call('ZREM', P, ARGV[i])
    redis.call('DEL', KEYS[2 * i])
    n = n + 1
  end
end
return expired({n}, P, now, tonumber(ARGV[1]))
)lua",
                                               [](ScriptContext auto& c) { return purge_twin(c); });

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

// KEYS: P S. ARGV: ttl away_after idle_after batch.
// -> {total, online, away, idle, peak, peak_at, connections last hour, sessions, session_ms,
//     expired ids...}.
inline std::vector<std::string> stats_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  std::int64_t const now = c.unix_ms(), ttl = arg_int(c, 0);
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
    auto const m = parse_int(v[4 + 2 * i]);
    if (m && *m > minute - 60) conns += parse_int(v[5 + 2 * i]).value_or(0);
  }
  std::int64_t const peak = std::max(total, parse_int(v[0]).value_or(0));
  return expired(
      c,
      {str(total), str(online), str(away), str(idle), str(peak), str(parse_int(v[1]).value_or(0)),
       str(conns), str(parse_int(v[2]).value_or(0)), str(parse_int(v[3]).value_or(0))},
      k[0], now, arg_int(c, 3));
}
inline auto const stats_script = make_script<std::vector<std::string>>(std::string(kPrelude) + R"lua(
local P, S = KEYS[1], KEYS[2]
local now = now_ms()
local ttl = tonumber(ARGV[1])
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
return expired({total, online, away, idle, peak, tonumber(v[2]) or 0, conns,
                tonumber(v[3]) or 0, tonumber(v[4]) or 0}, P, now, tonumber(ARGV[4]))
)lua",
                                                            [](ScriptContext auto& c) { return stats_twin(c); });

// KEYS: P. ARGV: has_cursor cursor_score cursor_member count.
// -> {now, then per user: id, expiry}. The users' data is read next (a batch of HMGETs).
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
    out.push_back(u);
    out.push_back(str(std::int64_t(s)));
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
  out[#out + 1] = page[i]
  out[#out + 1] = page[i + 1]
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

/// A manager's key names (shared by its operations, which may outlive it).
struct Keys {
  std::string online{}, stats{}, data_prefix{}, socket_prefix{};
  bool valid = true;  ///< false: options that cannot work (every operation: invalid_argument)
  std::string data(std::string_view u) const { return data_prefix + std::string(u); }
  std::string sockets(std::string_view u) const { return socket_prefix + std::string(u); }
};

/// True when the clustered key space `{p}:` starts with a hash tag (a non-empty one), so that
/// every key made from it is in one slot whatever follows.
inline bool tags_its_keys(std::string_view space_prefix) {
  auto const open = space_prefix.find('{');
  if (open == std::string_view::npos) return false;
  auto const close = space_prefix.find('}', open + 1);
  return close != std::string_view::npos && close > open + 1;
}

inline Keys make_keys(OnlineUserOptions const& o, KeyLayout layout) {
  Keys k;
  KeySpace const p(o.presence_prefix, layout);
  k.online = p.key("online");
  k.stats = p.key("stats");
  std::string const data = KeySpace(o.user_data_prefix).key("");
  std::string const sockets = KeySpace(o.user_socket_prefix).key("");
  if (layout == KeyLayout::clustered) {
    k.data_prefix = p.key(data);
    k.socket_prefix = p.key(sockets);
    k.valid = tags_its_keys(p.prefix()) && !o.user_data_prefix.empty() &&
              !o.user_socket_prefix.empty();
  } else {
    k.data_prefix = data;
    k.socket_prefix = sockets;
  }
  k.valid = k.valid && o.default_ttl.count() > 0 && k.data_prefix != k.socket_prefix;
  return k;
}

inline std::int64_t clamp_batch(std::int64_t b) {
  return std::clamp<std::int64_t>(b, 0, kMaxPurgeBatch);
}

/// The purge of `ids` (expired users another script named): their keys declared.
inline std::shared_ptr<Call const> purge_call(Keys const& k, std::vector<std::string>& ids,
                                              std::size_t first, std::int64_t report) {
  auto c = std::make_shared<Call>();
  std::size_t const n = ids.size() > first ? ids.size() - first : 0;
  c->keys.reserve(2 + 2 * n);
  c->args.reserve(1 + n);
  c->keys.push_back(k.online);
  c->keys.push_back(k.stats);
  c->args.push_back(str(report));
  for (std::size_t i = first; i < ids.size(); ++i) {
    c->keys.push_back(k.data(ids[i]));
    c->keys.push_back(k.sockets(ids[i]));
    c->args.push_back(std::move(ids[i]));
  }
  return c;
}

inline std::shared_ptr<Call const> share(Call c) {
  return std::make_shared<Call const>(std::move(c));
}

inline boost::system::error_code invalid() {
  return make_error_code(Error::invalid_argument);
}

// The multi-step operations. Each is one type per backend (the caller's handler is erased:
// detail::erased_compose). What their commands view is in a shared Call, which stays put while
// the op moves into the backend's handler. Invalid input completes through the executor.

/// A script that replies {value, expired ids...} (a write, or purge_expired's first step),
/// then, when it named expired users, the purge of them. Result: the script's value == 1
/// (writes: the purge is housekeeping, its failure is not the write's), or, `count_purged`,
/// how many the purge removed (purge_expired).
template <Backend B, class S, class Result>
struct ThenPurgeOp {
  B* backend = nullptr;
  std::shared_ptr<Keys const> keys{};
  S const* script = nullptr;
  std::shared_ptr<Call const> call{};
  bool ok = true;
  bool count_purged = false;
  Result value{};
  enum { start, first, second, rejected } state = start;

  template <class Self>
  void operator()(Self& self) {
    if (state == rejected) return self.complete(invalid(), Result{});
    if (!ok) {
      state = rejected;
      return boost::asio::post(backend->get_executor(), std::move(self));
    }
    state = first;
    Call const& c = *call;
    backend->async_exec((*script)(c.keys, c.args), std::move(self));
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, std::vector<std::string> r) {
    if (state == first) {
      if (ec) return self.complete(ec, Result{});
      if (r.empty()) return self.complete(make_error_code(Error::incompatible_size), Result{});
      if constexpr (std::is_same_v<Result, bool>) value = r[0] == "1";
      if (r.size() == 1) return self.complete({}, value);
      state = second;
      call = purge_call(*keys, r, 1, 0);
      Call const& c = *call;
      return backend->async_exec(purge_script(c.keys, c.args), std::move(self));
    }
    if (!count_purged) return self.complete({}, value);
    Result n{};
    if (!ec && !r.empty()) n = Result(parse_int(r[0]).value_or(0));
    self.complete(ec, n);
  }
};

/// The stats script; when it named expired users, their purge and the stats again (one
/// pipeline), so that the sessions they close are counted.
template <Backend B>
struct StatsOp {
  B* backend = nullptr;
  std::shared_ptr<Keys const> keys{};
  std::shared_ptr<Call const> call{};   // the stats script's
  bool ok = true;
  std::shared_ptr<Call const> again{};  // the stats after the purge (names no expired users)
  std::shared_ptr<Call const> purge{};
  enum { start, first, second, rejected } state = start;

  template <class Self>
  void operator()(Self& self) {
    if (state == rejected) return self.complete(invalid(), PresenceStats{});
    if (!ok) {
      state = rejected;
      return boost::asio::post(backend->get_executor(), std::move(self));
    }
    state = first;
    Call const& c = *call;
    backend->async_exec(stats_script(c.keys, c.args), std::move(self));
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, std::vector<std::string> r) {
    if (ec || r.size() <= 9) return finish(self, ec, r);
    state = second;
    purge = purge_call(*keys, r, 9, 0);
    Call next = *call;
    next.args[3] = "0";
    again = share(std::move(next));
    Call const &p = *purge, &s = *again;
    backend->async_exec(batch(purge_script(p.keys, p.args), stats_script(s.keys, s.args)),
                        std::move(self));
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec,
                  std::tuple<std::vector<std::string>, std::vector<std::string>> r) {
    finish(self, ec, std::get<1>(r));
  }

  template <class Self>
  static void finish(Self& self, boost::system::error_code ec,
                     std::vector<std::string> const& r) {
    PresenceStats s;
    if (!ec && r.size() < 9) ec = make_error_code(Error::incompatible_size);
    if (ec) return self.complete(ec, s);
    auto v = [&](std::size_t i) { return parse_int(r[i]).value_or(0); };
    s.total_online = v(0);
    s.status_distribution = {v(1), v(2), v(3)};
    s.peak_online_users = v(4);
    s.peak_at_ms = v(5);
    s.new_connections_last_hour = v(6);
    s.sessions_closed = v(7);
    s.average_session_duration = std::chrono::milliseconds(v(7) > 0 ? v(8) / v(7) : 0);
    self.complete(ec, s);
  }
};

/// The page script (ids and expiries), then the page's user_data (a batch of HMGETs).
template <Backend B>
struct PageOp {
  struct Stable {
    std::vector<std::string> page{};  // the script's reply: now, then (id, expiry) pairs
    std::vector<std::string> data_keys{};
    std::vector<cmd::hmget> reads{};
  };
  B* backend = nullptr;
  std::shared_ptr<Keys const> keys{};
  std::shared_ptr<Call const> call{};
  bool ok = true;
  std::int64_t ttl = 0, away = 0, idle = 0;
  std::unique_ptr<Stable> st = std::make_unique<Stable>();
  enum { start, first, second, rejected } state = start;

  template <class Self>
  void operator()(Self& self) {
    if (state == rejected) return self.complete(invalid(), OnlineUsersPage{});
    if (!ok) {
      state = rejected;
      return boost::asio::post(backend->get_executor(), std::move(self));
    }
    state = first;
    Call const& c = *call;
    backend->async_exec(page_script(c.keys, c.args), std::move(self));
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, std::vector<std::string> r) {
    if (ec) return self.complete(ec, OnlineUsersPage{});
    if (r.empty() || r.size() % 2 != 1)
      return self.complete(make_error_code(Error::incompatible_size), OnlineUsersPage{});
    st->page = std::move(r);
    if (st->page.size() == 1) return finish(self, {}, {});
    std::size_t const n = st->page.size() / 2;
    st->data_keys.reserve(n);
    st->reads.reserve(n);
    for (std::size_t i = 1; i < st->page.size(); i += 2)
      st->data_keys.push_back(keys->data(st->page[i]));
    for (auto const& k : st->data_keys)
      st->reads.push_back(
          cmd::hmget{.key = k, .fields = {"socket_id", "matricule", "connected_at", "last_activity"}});
    state = second;
    backend->async_exec(st->reads, std::move(self));
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec,
                  std::vector<std::vector<std::optional<std::string>>> data) {
    finish(self, ec, std::move(data));
  }

  template <class Self>
  void finish(Self& self, boost::system::error_code ec,
              std::vector<std::vector<std::optional<std::string>>> data) {
    OnlineUsersPage page;
    auto const& r = st->page;
    std::size_t const n = r.size() / 2;
    if (!ec && data.size() != (r.size() == 1 ? 0 : n))
      ec = make_error_code(Error::incompatible_size);
    if (ec) return self.complete(ec, std::move(page));
    auto num = [](std::string const& s) { return parse_int(s).value_or(0); };
    std::int64_t const now = num(r[0]);
    for (std::size_t i = 0; i < n; ++i) {
      auto& d = data[i];
      d.resize(4);
      OnlineUser u;
      u.user_id = std::move(st->page[1 + 2 * i]);
      u.expires_at_ms = num(r[2 + 2 * i]);
      u.socket_id = std::move(d[0]).value_or("");
      u.matricule = std::move(d[1]).value_or("");
      u.connected_at_ms = parse_int(d[2]).value_or(0);
      u.last_activity_ms = parse_int(d[3]).value_or(0);
      u.status = status_of(u.expires_at_ms, now, ttl, away, idle);
      page.users.push_back(std::move(u));
    }
    if (!page.users.empty() && std::int64_t(page.users.size()) == num(call->args[3]))
      page.next_cursor =
          std::to_string(page.users.back().expires_at_ms) + ":" + page.users.back().user_id;
    self.complete(ec, std::move(page));
  }
};

}  // namespace detail::online

/// Seed 000's OnlineUserManager over any Backend (see the top of this file). Thread safety: as
/// the backend (the manager holds no mutable state). Every operation completes through the
/// handler's executor (else the backend's), never inside the initiating call, after the round
/// trips the top of this file lists; invalid input (an empty user or socket id, a count < 1, a
/// cursor this manager did not make, options that cannot work) completes with
/// Error::invalid_argument and sends nothing; backend failures with the backend's error. The
/// manager may be destroyed while its operations run (they share its key names); the backend
/// must outlive them. Arguments are copied: they may die as soon as the async_ call returns.
template <Backend B>
class OnlineUserManager {
  using Call = detail::online::Call;
  using error_code = boost::system::error_code;

 public:
  explicit OnlineUserManager(B& backend, OnlineUserOptions options = {})
      : backend_(&backend),
        opt_(std::move(options)),
        layout_(opt_.key_layout.value_or(default_key_layout_v<B>)),
        keys_(std::make_shared<detail::online::Keys const>(
            detail::online::make_keys(opt_, layout_))) {}

  OnlineUserOptions const& options() const noexcept { return opt_; }

  /// The layout in use: options().key_layout, else default_key_layout_v<B>.
  KeyLayout key_layout() const noexcept { return layout_; }

  /// Marks a socket of the user online, or renews it (seed: setUserOnline). Script, then the
  /// purge of the expired users it named (if any).
  /// void(error_code, bool): true when this started a session (the user was offline).
  template <class Token = boost::asio::deferred_t>
  auto async_set_user_online(std::string_view user_id, OnlineUserData const& data,
                             Token&& token = {}) {
    return then_purge<bool>(
        std::forward<Token>(token), !user_id.empty() && !data.socket_id.empty(),
        detail::online::set_online_script,
        Call{{keys_->online, keys_->stats, keys_->data(user_id), keys_->sockets(user_id)},
             {std::string(user_id), data.socket_id, data.matricule, ms(opt_.default_ttl),
              data_ttl(), purge_batch()}});
  }

  /// Marks the user offline, every socket (seed: setUserOffline). Script (+ purge).
  /// void(error_code, bool): true when the user was online.
  template <detail::online::NotText Token = boost::asio::deferred_t>
  auto async_set_user_offline(std::string_view user_id, Token&& token = {}) {
    return offline(user_id, {}, true, std::forward<Token>(token));
  }

  /// Removes one socket; the user stays online while another is alive. Script (+ purge).
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
        std::forward<Token>(token), !user_id.empty(),
        Call{{keys_->online}, {std::string(user_id)}},
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
    Call call{{keys_->online}, {}};
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
  /// dedupe if it matters); each page costs O(log n + count). A script (the page), then a
  /// batch reading the page's user_data.
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
    Call call{{keys_->online},
              {cursor.empty() ? "0" : "1", std::to_string(score),
               ok && !cursor.empty() ? std::string(cursor.substr(colon + 1)) : std::string(),
               std::to_string(count)}};
    return detail::erased_compose<void(error_code, OnlineUsersPage)>(
        std::forward<Token>(token),
        detail::online::PageOp<B>{backend_, keys_, detail::online::share(std::move(call)),
                                  ok && keys_->valid, opt_.default_ttl.count(),
                                  opt_.away_after.count(), opt_.idle_after.count()},
        backend_->get_executor());
  }

  /// void(error_code, std::int64_t): users online now (seed: getOnlineCount). ZCOUNT over
  /// live expiries in a script: O(log n), exact when entries expire.
  template <class Token = boost::asio::deferred_t>
  auto async_get_online_count(Token&& token = {}) {
    return script_op<std::int64_t>(std::forward<Token>(token), true, detail::online::count_script,
                                   Call{{keys_->online}, {}},
                                   [](error_code&, std::int64_t n, Call const&) { return n; });
  }

  /// void(error_code, PresenceStats) (seed: getPresenceStats). Script: O(log n) counts and one
  /// HMGET of the stats hash; when it saw expired users, a second round trip purges up to
  /// purge_batch of them and reads the stats again.
  template <class Token = boost::asio::deferred_t>
  auto async_get_presence_stats(Token&& token = {}) {
    return detail::erased_compose<void(error_code, PresenceStats)>(
        std::forward<Token>(token),
        detail::online::StatsOp<B>{
            backend_, keys_,
            detail::online::share(Call{{keys_->online, keys_->stats},
                                       {ms(opt_.default_ttl), ms(opt_.away_after),
                                        ms(opt_.idle_after), purge_batch()}}),
            keys_->valid},
        backend_->get_executor());
  }

  /// Removes up to `batch` (at most kMaxPurgeBatch) expired users from the presence set,
  /// closing their sessions (writes and stats do this by purge_batch already; call it from a
  /// periodic task when writes are rare). A script names them, a second one purges them.
  /// void(error_code, std::int64_t): how many were removed.
  template <class Token = boost::asio::deferred_t>
  auto async_purge_expired(std::int64_t batch, Token&& token = {}) {
    return then_purge<std::int64_t>(
        std::forward<Token>(token), batch > 0, detail::online::purge_script,
        Call{{keys_->online, keys_->stats}, {std::to_string(detail::online::clamp_batch(batch))}},
        true);
  }

 private:
  template <class Token>
  auto offline(std::string_view user_id, std::string_view socket_id, bool ok, Token&& token) {
    return then_purge<bool>(
        std::forward<Token>(token), ok && !user_id.empty(), detail::online::set_offline_script,
        Call{{keys_->online, keys_->stats, keys_->data(user_id), keys_->sockets(user_id)},
             {std::string(user_id), std::string(socket_id), data_ttl(), purge_batch()}});
  }

  template <class Token>
  auto touch(std::string_view user_id, std::string_view socket_id, bool ok, Token&& token) {
    return script_op<bool>(
        std::forward<Token>(token), ok && !user_id.empty(), detail::online::touch_script,
        Call{{keys_->online, keys_->data(user_id), keys_->sockets(user_id)},
             {std::string(user_id), std::string(socket_id), ms(opt_.default_ttl), data_ttl()}},
        [](error_code&, std::int64_t r, Call const&) { return r == 1; });
  }

  template <class Result, class Token, class S>
  auto then_purge(Token&& token, bool ok, S const& script, Call call, bool count_purged = false) {
    return detail::erased_compose<void(error_code, Result)>(
        std::forward<Token>(token),
        detail::online::ThenPurgeOp<B, S, Result>{backend_, keys_, &script,
                                                  detail::online::share(std::move(call)),
                                                  ok && keys_->valid, count_purged},
        backend_->get_executor());
  }

  template <class Result, class Token, class Reply, class Twin, class Map>
  auto script_op(Token&& token, bool ok, Script<Reply, Twin> const& script, Call call, Map map) {
    return owned_op<Result>(
        std::forward<Token>(token), ok, std::move(call),
        [s = &script](Call const& c) { return (*s)(c.keys, c.args); }, std::move(map));
  }

  // One round trip: `make(call)` built when the operation starts, its reply mapped by
  // `map(ec, reply, call)`. `ok == false` (or options that cannot work):
  // Error::invalid_argument, nothing sent.
  template <class Result, class Token, class Make, class Map>
  auto owned_op(Token&& token, bool ok, Call call, Make make, Map map) {
    return boost::asio::async_initiate<Token, void(error_code, Result)>(
        [b = backend_](auto handler, bool ok, std::shared_ptr<Call const> call, Make make,
                       Map map) {
          if (!ok)
            return detail::post_handler(b->get_executor(), std::move(handler),
                                        detail::online::invalid(), Result{});
          auto const x = make(*call);
          b->async_exec(x, detail::ThenHandler<decltype(handler), detail::online::WithCall<Map>>{
                               std::move(handler), {std::move(map), std::move(call)}});
        },
        token, ok && keys_->valid, detail::online::share(std::move(call)), std::move(make),
        std::move(map));
  }

  static std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }
  std::string data_ttl() const { return ms(std::max(opt_.idle_ttl, opt_.default_ttl)); }
  std::string purge_batch() const {
    return std::to_string(detail::online::clamp_batch(opt_.purge_batch));
  }

  B* backend_;
  OnlineUserOptions opt_;
  KeyLayout layout_;
  std::shared_ptr<detail::online::Keys const> keys_;
};

}  // namespace rediskit
