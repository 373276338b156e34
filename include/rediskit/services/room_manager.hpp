// rediskit::RoomManager<Backend>: chat rooms with members, roles and presence (seed 000's
// RoomManager).
//
//   rediskit::OnlineUserManager users(backend);                // who is online
//   rediskit::RoomManager rooms(backend, users);   // seed 000's layout, reads users' presence
//   co_await rooms.async_create_room("conv_1", rediskit::RoomData("Dev Team", "GROUP"));
//   co_await rooms.async_join_room("conv_1", "user123");
//   auto online = co_await rooms.async_get_room_online_users("conv_1");   // [user ids]
//   auto [online_n, total] = co_await rooms.async_get_room_online_users_count("conv_1");
//
// Key layout (prefixes are options; seed 000's are the defaults):
//   rooms:{room}          hash  id, name, type, createdAt (server ms), userCount, metadata
//   room_users:{room}     set   the room's members
//   user_rooms:{user}     set   the user's rooms
//   room_roles:{room}     hash  user -> "admin" | "moderator" | "member" (none: member)
//   room_activity:{room}  hash  user -> when they joined (server ms)          [not in the seed]
//   room_stats:{room}     hash  peakUsersCount, peakTime, obs*, sessions, sessionMs  [not in
//                               the seed]
//   presence:online       read only, OnlineUserManager's zset: user -> presence expiry (server
//                         ms). A user is online iff their expiry is later than the server's TIME
//                         (OnlinePresence; its presence_prefix must be the OnlineUserManager's).
//
// Guarantees:
//  - Join and leave change both directions in one script (atomic): a room never lists a user
//    whose user_rooms set does not list the room.
//  - TTLs: each write to a room (create, join, leave, role) sets the same TTL on its keys
//    rooms:, room_users:, room_roles:, room_activity: so they expire together:
//    default_room_ttl while it has members, idle_room_ttl once the last member left;
//    room_stats: lives archived_room_ttl after its last write (history outlives the room).
//    user_rooms:{user} has no TTL (were it to expire first, a room would list a user whose
//    rooms do not list it): leaves empty it, and ids of rooms that expired are pruned when the
//    user's rooms are read (async_get_user_rooms lists only live memberships); until then a
//    user who never comes back keeps those ids.
//  - Counts are derived from what is alive: userCount / total = SCARD room_users, online =
//    members whose OnlineUserManager presence has not expired (ZMSCORE presence:online vs the
//    script's TIME), both read in the same script: a presence that expires drops out at once,
//    purged or not. Cost is O(members of the room) (ZMSCORE is O(1) per member), whatever
//    the total number of users. Presence stats report online / away / idle as
//    OnlineUserManager derives them from the same expiry (OnlinePresence's default_ttl,
//    away_after, idle_after).
//  - Times are the server's (TIME in Lua, the engine clock in the twins), never the client's.
//  - Peak metrics: the online count of a room is observed whenever an operation computes it
//    (online users, online count, presence stats, peak metrics); the peak is the highest
//    observation (with its server time) and the average is time-weighted between
//    observations. Presence changes made elsewhere are seen at the next observation.
//  - Every operation is one round trip (a script, a batch or one command) and completes
//    through the executor; bad input (empty id, unknown role, count < 1, a TTL option <= 0)
//    completes with Error::invalid_argument and sends nothing.
// Not cluster-safe yet: the user-rooms script builds room_users:{r} keys inside Lua, and the
// online script reads presence:online next to the room's keys (other hash slots). The manager
// must outlive its operations; the arguments may die as soon as the async_ call returns (they
// are copied). Cancellation, executor and allocator:
// the handler's associations reach the backend (detail::ThenHandler), as with async_then.
#pragma once

// The script twins run commands on the memory engine: every command family must be visible.
#include <rediskit/cmd/hashes.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/cmd/server.hpp>
#include <rediskit/cmd/sets.hpp>
#include <rediskit/command.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/script.hpp>
#include <rediskit/services/online_user_manager.hpp>  // presence layout, PresenceStatus

#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rediskit {

/// Milliseconds since 1970 as the server's clock gave them.
using RoomTime = std::chrono::sys_time<std::chrono::milliseconds>;

/// Who is online, as RoomManager sees it: OnlineUserManager's layout, read in the same script
/// as membership. User `u` is online iff their score (presence expiry, server unix ms) in the
/// zset `{presence_prefix}:online` is later than the server's TIME; status online / away / idle
/// follows from that expiry as in OnlineUserManager. Names and defaults are OnlineUserOptions':
/// a RoomManager and the OnlineUserManager sharing a Redis must use the same presence_prefix
/// (and the same default_ttl, away_after, idle_after for the same statuses). The simplest way:
/// RoomManager(backend, online_users) or online_presence(online_users.options()).
struct OnlinePresence {
  std::string presence_prefix = "presence";  ///< OnlineUserOptions::presence_prefix
  std::chrono::milliseconds default_ttl = std::chrono::minutes(5);  ///< OnlineUserOptions'
  std::chrono::milliseconds away_after = std::chrono::minutes(1);   ///< OnlineUserOptions'
  std::chrono::milliseconds idle_after = std::chrono::minutes(3);   ///< OnlineUserOptions'
  /// OnlineUserOptions::key_layout (nullopt: default_key_layout_v<B>): the online zset is
  /// KeySpace(presence_prefix, layout).key("online").
  std::optional<KeyLayout> key_layout{};
};

/// The presence settings of an OnlineUserManager's options, for RoomOptions::presence.
inline OnlinePresence online_presence(OnlineUserOptions const& o) {
  return {o.presence_prefix, o.default_ttl, o.away_after, o.idle_after, o.key_layout};
}

/// RoomManager options: seed 000's defaults. TTLs must be positive.
struct RoomOptions {
  std::string room_prefix = "rooms";                   ///< room hash
  std::string room_users_prefix = "room_users";        ///< room -> members set
  std::string user_rooms_prefix = "user_rooms";        ///< user -> rooms set
  std::string room_roles_prefix = "room_roles";        ///< room -> user -> role hash
  std::string room_activity_prefix = "room_activity";  ///< room -> user -> joined at (ms)
  std::string room_stats_prefix = "room_stats";        ///< peak / session statistics hash
  std::chrono::milliseconds default_room_ttl = std::chrono::hours(1);    ///< room with members
  std::chrono::milliseconds idle_room_ttl = std::chrono::hours(2);       ///< room left empty
  std::chrono::milliseconds archived_room_ttl = std::chrono::hours(24);  ///< its statistics
  OnlinePresence presence{};  ///< who is online: the OnlineUserManager's settings
};

/// A member's role in a room (stored as "member", "moderator", "admin").
enum class RoomRole { member, moderator, admin };

/// The stored text of a role.
constexpr std::string_view to_string(RoomRole r) noexcept {
  switch (r) {
    case RoomRole::admin:
      return "admin";
    case RoomRole::moderator:
      return "moderator";
    case RoomRole::member:
      return "member";
  }
  return {};
}

/// The role a stored text names; nullopt for any other text.
constexpr std::optional<RoomRole> parse_room_role(std::string_view s) noexcept {
  for (RoomRole r : {RoomRole::member, RoomRole::moderator, RoomRole::admin})
    if (to_string(r) == s) return r;
  return std::nullopt;
}

/// What async_create_room stores (seed: {name, type, metadata}; createdAt is server time).
struct RoomData {
  /// `metadata` is opaque text (JSON, as the Node services write it).
  RoomData(std::string name, std::string type = "GROUP", std::string metadata = {})
      : name(std::move(name)), type(std::move(type)), metadata(std::move(metadata)) {}
  std::string name;
  std::string type;
  std::string metadata;
};

/// async_get_room_info: the room hash, userCount derived from its members.
struct RoomInfo {
  std::string id;
  std::string name;
  std::string type;
  RoomTime created_at{};  ///< 0 when absent or not written by a RoomManager
  std::int64_t user_count = 0;
  std::string metadata;
};

/// async_get_room_online_users_count (seed: {onlineCount, totalCount}).
struct RoomOnlineCount {
  std::int64_t online = 0;
  std::int64_t total = 0;
  friend bool operator==(RoomOnlineCount const&, RoomOnlineCount const&) = default;
};

/// async_get_room_peak_metrics (seed: {peakUsersCount, peakTime, averageActiveUsers}): the
/// highest online count observed and when; the time-weighted mean of the observations.
struct RoomPeakMetrics {
  std::int64_t peak_users_count = 0;
  RoomTime peak_time{};
  double average_active_users = 0;
};

/// One member in async_get_room_presence_stats (seed: {userId, status, lastActivity}).
struct RoomMemberPresence {
  std::string user_id;
  std::optional<PresenceStatus> status;  ///< online / away / idle; nullopt: offline
  RoomTime last_activity{};              ///< when the user last joined the room
};

/// async_get_room_presence_stats (seed: {roomId, onlineUsers, totalUsers, users,
/// averageSessionDuration}). A session is a membership, join to leave; ongoing ones count
/// up to now.
struct RoomPresenceStats {
  std::string room_id;
  std::int64_t online_users = 0;
  std::int64_t total_users = 0;
  std::vector<RoomMemberPresence> users;
  std::chrono::milliseconds average_session_duration{};
};

/// One step of async_get_all_rooms: pass `cursor` to the next call until it is 0. A room may
/// appear in more than one page (SCAN semantics); a step may return none while not done.
struct RoomPage {
  std::uint64_t cursor = 0;
  std::vector<std::string> rooms;
};

namespace detail::rooms {

// Every room script gets the room's keys in this order; join and leave add user_rooms:{user},
// the online script `{presence_prefix}:online`.
enum RoomKey { info, users, roles, activity, stats, room_key_count, presence = room_key_count };

// A stored integer; 0 for anything else (e.g. an ISO date a Node service wrote as createdAt).
inline std::int64_t to_i64(std::string_view s) noexcept {
  std::int64_t v = 0;
  auto const [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size() ? v : 0;
}
inline std::int64_t opt_i64(std::optional<std::string> const& s) noexcept {
  return s ? to_i64(*s) : 0;
}

// Shared Lua: server time, integers as text (a Lua number passed to redis.call may be written
// with an exponent), and the TTL of a room's keys.
inline constexpr std::string_view lua_prelude = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(n) return string.format('%d', n) end
local function touch(ttl, archived)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
  redis.call('PEXPIRE', KEYS[5], archived)
end
)lua";

inline std::string lua(std::string_view body) {
  return std::string(lua_prelude) + std::string(body);
}

inline void touch(ScriptContext auto& c, std::string_view ttl, std::string_view archived) {
  for (int i = 0; i < 4; ++i)
    c.call(cmd::pexpire{.key = c.keys()[i], .ttl = std::chrono::milliseconds(to_i64(ttl))});
  c.call(cmd::pexpire{.key = c.keys()[stats], .ttl = std::chrono::milliseconds(to_i64(archived))});
}

inline void set_field(ScriptContext auto& c, std::string_view key, std::string_view f, std::int64_t v) {
  std::string const s = std::to_string(v);
  c.call(cmd::hset{.key = key, .fields = FieldValue{f, s}});
}

// create: KEYS room keys; ARGV id, name, type, metadata, ttl, archived -> 1 created, 0 updated.
inline std::int64_t create_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  bool const created = c.call(cmd::exists{.keys = k[info]}) == 0;
  std::string const n = std::to_string(c.call(cmd::scard{k[users]}));
  c.call(cmd::hset{
      .key = k[info],
      .fields = {FieldValue{"id", a[0]}, FieldValue{"name", a[1]}, FieldValue{"type", a[2]},
                 FieldValue{"metadata", a[3]}, FieldValue{"userCount", n}}});
  if (created) set_field(c, k[info], "createdAt", c.unix_ms());
  touch(c, a[4], a[5]);
  return created ? 1 : 0;
}
inline auto const create_script = make_script<std::int64_t>(lua(R"lua(
local created = redis.call('EXISTS', KEYS[1]) == 0
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'type', ARGV[3], 'metadata', ARGV[4],
           'userCount', int(redis.call('SCARD', KEYS[2])))
if created then redis.call('HSET', KEYS[1], 'createdAt', int(now_ms())) end
touch(ARGV[5], ARGV[6])
if created then return 1 end
return 0
)lua"),
                                                [](ScriptContext auto& c) { return create_twin(c); });

// join: KEYS room keys + user_rooms:{user}; ARGV room, user, ttl, archived -> 1 joined, 0 was
// a member already.
inline std::int64_t join_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const added = c.call(cmd::sadd{.key = k[users], .members = a[1]});
  c.call(cmd::sadd{.key = k[room_key_count], .members = a[0]});
  std::int64_t const now = c.unix_ms();
  if (c.call(cmd::hsetnx{.key = k[info], .field = "id", .value = a[0]}))
    set_field(c, k[info], "createdAt", now);
  if (added == 1) set_field(c, k[activity], a[1], now);
  set_field(c, k[info], "userCount", c.call(cmd::scard{k[users]}));
  touch(c, a[2], a[3]);
  return added;
}
inline auto const join_script = make_script<std::int64_t>(lua(R"lua(
local added = redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[6], ARGV[1])
local now = now_ms()
if redis.call('HSETNX', KEYS[1], 'id', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'createdAt', int(now))
end
if added == 1 then redis.call('HSET', KEYS[4], ARGV[2], int(now)) end
redis.call('HSET', KEYS[1], 'userCount', int(redis.call('SCARD', KEYS[2])))
touch(ARGV[3], ARGV[4])
return added
)lua"),
                                              [](ScriptContext auto& c) { return join_twin(c); });

// leave: KEYS room keys + user_rooms:{user}; ARGV room, user, ttl, idle ttl, archived -> 1 left,
// 0 was not a member. The ended session is added to the statistics.
inline std::int64_t leave_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  c.call(cmd::srem{.key = k[room_key_count], .members = a[0]});
  if (c.call(cmd::srem{.key = k[users], .members = a[1]}) == 0) return 0;
  std::int64_t const now = c.unix_ms();
  c.call(cmd::hdel{.key = k[roles], .fields = a[1]});
  auto const joined = c.call(cmd::hget{.key = k[activity], .field = a[1]});
  c.call(cmd::hdel{.key = k[activity], .fields = a[1]});
  c.call(cmd::hincrby{.key = k[stats], .field = "sessions", .increment = 1});
  c.call(cmd::hincrby{.key = k[stats],
                      .field = "sessionMs",
                      .increment = joined ? std::max<std::int64_t>(0, now - to_i64(*joined)) : 0});
  std::int64_t const left = c.call(cmd::scard{k[users]});
  if (c.call(cmd::exists{.keys = k[info]}) == 1) set_field(c, k[info], "userCount", left);
  touch(c, left > 0 ? a[2] : a[3], a[4]);
  return 1;
}
inline auto const leave_script = make_script<std::int64_t>(lua(R"lua(
redis.call('SREM', KEYS[6], ARGV[1])
if redis.call('SREM', KEYS[2], ARGV[2]) == 0 then return 0 end
local now = now_ms()
redis.call('HDEL', KEYS[3], ARGV[2])
local joined = redis.call('HGET', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('HINCRBY', KEYS[5], 'sessions', 1)
local ms = 0
if joined then ms = math.max(0, now - tonumber(joined)) end
redis.call('HINCRBY', KEYS[5], 'sessionMs', int(ms))
local left = redis.call('SCARD', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'userCount', int(left)) end
if left > 0 then touch(ARGV[3], ARGV[5]) else touch(ARGV[4], ARGV[5]) end
return 1
)lua"),
                                               [](ScriptContext auto& c) { return leave_twin(c); });

// set role: KEYS room keys; ARGV user, role, ttl, archived -> 1 set, 0 not a member.
inline std::int64_t set_role_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  if (!c.call(cmd::sismember{.key = k[users], .member = a[0]})) return 0;
  c.call(cmd::hset{.key = k[roles], .fields = FieldValue{a[0], a[1]}});
  touch(c, a[2], a[3]);
  return 1;
}
inline auto const set_role_script = make_script<std::int64_t>(lua(R"lua(
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
touch(ARGV[3], ARGV[4])
return 1
)lua"),
                                                  [](ScriptContext auto& c) { return set_role_twin(c); });

// user rooms: KEYS user_rooms:{user}; ARGV user, room_users key prefix -> the rooms whose
// member set holds the user; ids of rooms that expired are removed from user_rooms.
inline std::vector<std::string> user_rooms_twin(ScriptContext auto& c) {
  auto const a = c.args();
  std::vector<std::string> out;
  std::string key;
  for (auto& r : c.call(cmd::smembers{c.keys()[0]})) {
    key.assign(a[1]).append(r);
    if (c.call(cmd::sismember{.key = key, .member = a[0]}))
      out.push_back(std::move(r));
    else
      c.call(cmd::srem{.key = c.keys()[0], .members = r});
  }
  return out;
}
inline auto const user_rooms_script = make_script<std::vector<std::string>>(R"lua(
local out = {}
for _, r in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('SISMEMBER', ARGV[2] .. r, ARGV[1]) == 1 then out[#out + 1] = r
  else redis.call('SREM', KEYS[1], r) end
end
return out
)lua",
                                                                [](ScriptContext auto& c) { return user_rooms_twin(c); });

// Who of a room is online, observed into its statistics. KEYS room keys + presence:online;
// ARGV mode, archived ttl. A member is online iff their score in presence:online (expiry, ms)
// is > now (TIME); ZMSCORE in chunks of 1000 (Lua's unpack has a stack limit). Reply {ids, per
// member, numbers} by mode:
//   ids       online members, {}, {}
//   count     {}, {}, {online, total}
//   presence  members, {online 0/1, expiry ms (0: none), joined ms} per member,
//             {sessions, sessionMs, now}
//   peak      {}, {}, {peak, peakTime, obsStart, obsSince, obsLast, obsArea, now} ({} if none)
// Observation (only for a room that exists): the first one starts obs*; a changed online
// count adds obsLast * (now - obsSince) to obsArea; a new high sets peakUsersCount/peakTime.
using OnlineReply =
    std::tuple<std::vector<std::string>, std::vector<std::int64_t>, std::vector<std::int64_t>>;

inline OnlineReply online_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::string_view const mode = a[0];
  auto members = c.call(cmd::smembers{k[users]});
  std::int64_t const now = c.unix_ms();
  std::vector<std::optional<double>> scores;
  if (!members.empty()) scores = c.call(cmd::zmscore{.key = k[presence], .members = members});
  if (scores.size() != members.size()) scores.resize(members.size());
  std::vector<std::int64_t> flags;
  std::vector<std::string> online;
  for (std::size_t i = 0; i < members.size(); ++i) {
    flags.push_back(scores[i] && *scores[i] > double(now) ? 1 : 0);
    if (flags.back() == 1) online.push_back(members[i]);
  }
  auto const n = static_cast<std::int64_t>(online.size());
  if (!members.empty() || c.call(cmd::exists{.keys = k[info]}) == 1) {
    auto const s = c.call(
        cmd::hmget{.key = k[stats],
                   .fields = {"peakUsersCount", "obsStart", "obsSince", "obsLast", "obsArea"}});
    bool changed = false;
    if (!s[1]) {
      std::string const t = std::to_string(now), v = std::to_string(n);
      c.call(cmd::hset{.key = k[stats],
                       .fields = {FieldValue{"obsStart", t}, FieldValue{"obsSince", t},
                                  FieldValue{"obsLast", v}, FieldValue{"obsArea", "0"}}});
      changed = true;
    } else if (opt_i64(s[3]) != n) {
      std::int64_t const area =
          opt_i64(s[4]) + opt_i64(s[3]) * std::max<std::int64_t>(0, now - opt_i64(s[2]));
      std::string const t = std::to_string(now), v = std::to_string(n), ar = std::to_string(area);
      c.call(cmd::hset{.key = k[stats],
                       .fields = {FieldValue{"obsSince", t}, FieldValue{"obsLast", v},
                                  FieldValue{"obsArea", ar}}});
      changed = true;
    }
    if (!s[0] || n > opt_i64(s[0])) {
      std::string const t = std::to_string(now), v = std::to_string(n);
      c.call(cmd::hset{.key = k[stats],
                       .fields = {FieldValue{"peakUsersCount", v}, FieldValue{"peakTime", t}}});
      changed = true;
    }
    if (changed)
      c.call(cmd::pexpire{.key = k[stats], .ttl = std::chrono::milliseconds(to_i64(a[1]))});
  }
  if (mode == "ids") return {std::move(online), {}, {}};
  if (mode == "count") return {{}, {}, {n, static_cast<std::int64_t>(members.size())}};
  if (mode == "presence") {
    std::unordered_map<std::string, std::string> joined;
    for (auto& [u, t] : c.call(cmd::hgetall{k[activity]}))
      joined.emplace(std::move(u), std::move(t));
    std::vector<std::int64_t> per;
    for (std::size_t i = 0; i < members.size(); ++i) {
      per.push_back(flags[i]);
      per.push_back(scores[i] ? static_cast<std::int64_t>(*scores[i]) : 0);
      auto const it = joined.find(members[i]);
      per.push_back(it == joined.end() ? 0 : to_i64(it->second));
    }
    auto const st = c.call(cmd::hmget{.key = k[stats], .fields = {"sessions", "sessionMs"}});
    return {std::move(members), std::move(per), {opt_i64(st[0]), opt_i64(st[1]), now}};
  }
  auto const st = c.call(cmd::hmget{
      .key = k[stats],
      .fields = {"peakUsersCount", "peakTime", "obsStart", "obsSince", "obsLast", "obsArea"}});
  if (!st[0]) return {};
  std::vector<std::int64_t> nums;
  for (auto const& v : st)
    nums.push_back(opt_i64(v));
  nums.push_back(now);
  return {{}, {}, std::move(nums)};
}
inline auto const online_script = make_script<OnlineReply>(lua(R"lua(
local members = redis.call('SMEMBERS', KEYS[2])
local now = now_ms()
local flags, exps, online = {}, {}, {}
for i = 1, #members, 1000 do
  local sc = redis.call('ZMSCORE', KEYS[6], unpack(members, i, math.min(i + 999, #members)))
  for j = 1, #sc do
    local m = i + j - 1
    exps[m] = (sc[j] and tonumber(sc[j])) or 0
    if sc[j] and exps[m] > now then
      flags[m] = 1
      online[#online + 1] = members[m]
    else
      flags[m] = 0
    end
  end
end
local n = #online
if #members > 0 or redis.call('EXISTS', KEYS[1]) == 1 then
  local s = redis.call('HMGET', KEYS[5], 'peakUsersCount', 'obsStart', 'obsSince', 'obsLast',
                      'obsArea')
  local changed = false
  if not s[2] then
    redis.call('HSET', KEYS[5], 'obsStart', int(now), 'obsSince', int(now), 'obsLast', int(n),
               'obsArea', '0')
    changed = true
  elseif tonumber(s[4]) ~= n then
    local area = tonumber(s[5]) + tonumber(s[4]) * math.max(0, now - tonumber(s[3]))
    redis.call('HSET', KEYS[5], 'obsSince', int(now), 'obsLast', int(n), 'obsArea', int(area))
    changed = true
  end
  if not s[1] or n > tonumber(s[1]) then
    redis.call('HSET', KEYS[5], 'peakUsersCount', int(n), 'peakTime', int(now))
    changed = true
  end
  if changed then redis.call('PEXPIRE', KEYS[5], ARGV[2]) end
end
local mode = ARGV[1]
if mode == 'ids' then return {online, {}, {}} end
if mode == 'count' then return {{}, {}, {n, #members}} end
if mode == 'presence' then
  local joined = {}
  local all = redis.call('HGETALL', KEYS[4])
  for i = 1, #all, 2 do joined[all[i]] = tonumber(all[i + 1]) end
  local per = {}
  for i, u in ipairs(members) do
    per[#per + 1] = flags[i]
    per[#per + 1] = exps[i]
    per[#per + 1] = joined[u] or 0
  end
  local st = redis.call('HMGET', KEYS[5], 'sessions', 'sessionMs')
  return {members, per, {tonumber(st[1] or 0), tonumber(st[2] or 0), now}}
end
local st = redis.call('HMGET', KEYS[5], 'peakUsersCount', 'peakTime', 'obsStart', 'obsSince',
                      'obsLast', 'obsArea')
if not st[1] then return {{}, {}, {}} end
local nums = {}
for i = 1, 6 do nums[i] = tonumber(st[i] or 0) end
nums[7] = now
return {{}, {}, nums}
)lua"),
                                               [](ScriptContext auto& c) { return online_twin(c); });

template <class Sig>
struct ResultOf;
template <class R>
struct ResultOf<void(boost::system::error_code, R)> {
  using type = R;
};

}  // namespace detail::rooms

/// Rooms, their members, roles and presence over Backend B (see the top of this file).
/// Thread safety: as the backend's; the manager holds only its options after construction.
template <Backend B>
class RoomManager {
 public:
  using error_code = boost::system::error_code;

  explicit RoomManager(B& backend, RoomOptions options = {})
      : backend_(&backend),
        opt_(std::move(options)),
        info_(opt_.room_prefix),
        users_(opt_.room_users_prefix),
        user_rooms_(opt_.user_rooms_prefix),
        roles_(opt_.room_roles_prefix),
        activity_(opt_.room_activity_prefix),
        stats_(opt_.room_stats_prefix),
        presence_key_(KeySpace(opt_.presence.presence_prefix).key("online")),
        room_users_prefix_(users_.key("")),
        ttl_(std::to_string(opt_.default_room_ttl.count())),
        idle_ttl_(std::to_string(opt_.idle_room_ttl.count())),
        archived_ttl_(std::to_string(opt_.archived_room_ttl.count())),
        options_valid_(opt_.default_room_ttl.count() > 0 && opt_.idle_room_ttl.count() > 0 &&
                       opt_.archived_room_ttl.count() > 0) {}

  /// Reads presence where `online_users` writes it: options.presence is replaced by
  /// online_presence(online_users.options()). The manager is not kept.
  RoomManager(B& backend, OnlineUserManager<B> const& online_users, RoomOptions options = {})
      : RoomManager(backend, with_presence(std::move(options), online_users.options())) {}

  RoomOptions const& options() const noexcept { return opt_; }

  /// Creates the room, or updates name / type / metadata of an existing one (members, roles
  /// and createdAt kept). void(error_code, bool created). Renews the room's TTL.
  template <class Token = boost::asio::deferred_t>
  auto async_create_room(std::string_view room_id, RoomData const& data, Token&& token = {}) {
    return run_script<void(error_code, bool)>(
        token, options_valid_ && !room_id.empty(), detail::rooms::create_script, room_keys(room_id),
        {std::string(room_id), data.name, data.type, data.metadata, ttl_, archived_ttl_},
        [](error_code&, std::int64_t n) { return n == 1; });
  }

  /// The room hash, userCount counted from its members; nullopt when the room does not exist.
  /// void(error_code, std::optional<RoomInfo>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_room_info(std::string_view room_id, Token&& token = {}) {
    struct State {
      std::string info, users;
    };
    return run<void(error_code, std::optional<RoomInfo>)>(
        token, !room_id.empty(), State{info_.key(room_id), users_.key(room_id)},
        [](State const& s) { return batch(cmd::hgetall{s.info}, cmd::scard{s.users}); },
        [](error_code&,
           std::tuple<std::vector<std::pair<std::string, std::string>>, std::int64_t> r)
            -> std::optional<RoomInfo> {
          auto& [fields, n] = r;
          if (fields.empty()) return std::nullopt;
          RoomInfo info;
          for (auto& [f, v] : fields) {
            if (f == "id")
              info.id = std::move(v);
            else if (f == "name")
              info.name = std::move(v);
            else if (f == "type")
              info.type = std::move(v);
            else if (f == "metadata")
              info.metadata = std::move(v);
            else if (f == "createdAt")
              info.created_at = RoomTime(std::chrono::milliseconds(detail::rooms::to_i64(v)));
          }
          info.user_count = n;
          return info;
        });
  }

  /// Adds the user to the room and the room to the user's rooms, atomically; creates the room
  /// hash when missing. void(error_code, bool joined): false when already a member.
  template <class Token = boost::asio::deferred_t>
  auto async_join_room(std::string_view room_id, std::string_view user_id, Token&& token = {}) {
    return run_script<void(error_code, bool)>(
        token, options_valid_ && !room_id.empty() && !user_id.empty(), detail::rooms::join_script,
        room_keys(room_id, user_id),
        {std::string(room_id), std::string(user_id), ttl_, archived_ttl_},
        [](error_code&, std::int64_t n) { return n == 1; });
  }

  /// Removes the user from the room (and its role) and the room from the user's rooms,
  /// atomically. void(error_code, bool left): false when not a member.
  template <class Token = boost::asio::deferred_t>
  auto async_leave_room(std::string_view room_id, std::string_view user_id, Token&& token = {}) {
    return run_script<void(error_code, bool)>(
        token, options_valid_ && !room_id.empty() && !user_id.empty(), detail::rooms::leave_script,
        room_keys(room_id, user_id),
        {std::string(room_id), std::string(user_id), ttl_, idle_ttl_, archived_ttl_},
        [](error_code&, std::int64_t n) { return n == 1; });
  }

  /// The room's members, in no particular order. void(error_code, std::vector<std::string>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_room_users(std::string_view room_id, Token&& token = {}) {
    return run<void(error_code, std::vector<std::string>)>(
        token, !room_id.empty(), users_.key(room_id),
        [](std::string const& key) { return cmd::smembers{key}; },
        [](error_code&, std::vector<std::string> v) { return v; });
  }

  /// The members that are online (their OnlineUserManager presence has not expired), in no
  /// particular order; one script, O(room members). void(error_code, std::vector<std::string>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_room_online_users(std::string_view room_id, Token&& token = {}) {
    return observe<void(error_code, std::vector<std::string>)>(
        token, room_id, "ids",
        [](error_code&, detail::rooms::OnlineReply r) { return std::move(std::get<0>(r)); });
  }

  /// {online, total} members. void(error_code, RoomOnlineCount).
  template <class Token = boost::asio::deferred_t>
  auto async_get_room_online_users_count(std::string_view room_id, Token&& token = {}) {
    return observe<void(error_code, RoomOnlineCount)>(
        token, room_id, "count", [](error_code& ec, detail::rooms::OnlineReply r) {
          auto const& n = std::get<2>(r);
          if (!ec && n.size() != 2) ec = Error::incompatible_size;
          return ec ? RoomOnlineCount{} : RoomOnlineCount{n[0], n[1]};
        });
  }

  /// The user's role; nullopt when not a member (a member without a stored role is a
  /// member). void(error_code, std::optional<RoomRole>); an unknown stored role fails with
  /// Error::unexpected_reply_type.
  template <class Token = boost::asio::deferred_t>
  auto async_get_user_role_in_room(std::string_view room_id, std::string_view user_id,
                                   Token&& token = {}) {
    struct State {
      std::string users, roles, user;
    };
    return run<void(error_code, std::optional<RoomRole>)>(
        token, !room_id.empty() && !user_id.empty(),
        State{users_.key(room_id), roles_.key(room_id), std::string(user_id)},
        [](State const& s) {
          return batch(cmd::sismember{.key = s.users, .member = s.user},
                       cmd::hget{.key = s.roles, .field = s.user});
        },
        [](error_code& ec,
           std::tuple<bool, std::optional<std::string>> r) -> std::optional<RoomRole> {
          auto const& [member, role] = r;
          if (ec || !member) return std::nullopt;
          if (!role) return RoomRole::member;
          auto const parsed = parse_room_role(*role);
          if (!parsed) ec = Error::unexpected_reply_type;
          return parsed;
        });
  }

  /// Sets a member's role (admin, moderator, member). void(error_code, bool set): false when
  /// the user is not a member. A value outside RoomRole is Error::invalid_argument.
  template <class Token = boost::asio::deferred_t>
  auto async_set_user_role_in_room(std::string_view room_id, std::string_view user_id,
                                   RoomRole role, Token&& token = {}) {
    std::string_view const text = to_string(role);
    return run_script<void(error_code, bool)>(
        token, options_valid_ && !room_id.empty() && !user_id.empty() && !text.empty(),
        detail::rooms::set_role_script, room_keys(room_id),
        {std::string(user_id), std::string(text), ttl_, archived_ttl_},
        [](error_code&, std::int64_t n) { return n == 1; });
  }

  /// The rooms the user is a member of (rooms that expired are dropped from user_rooms).
  /// void(error_code, std::vector<std::string>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_user_rooms(std::string_view user_id, Token&& token = {}) {
    return run_script<void(error_code, std::vector<std::string>)>(
        token, !user_id.empty(), detail::rooms::user_rooms_script, {user_rooms_.key(user_id)},
        {std::string(user_id), room_users_prefix_},
        [](error_code&, std::vector<std::string> v) { return v; });
  }

  /// Peak online members with its server time, and the time-weighted average online count
  /// (observes the room now). nullopt when the room does not exist and never did within
  /// archived_room_ttl. void(error_code, std::optional<RoomPeakMetrics>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_room_peak_metrics(std::string_view room_id, Token&& token = {}) {
    return observe<void(error_code, std::optional<RoomPeakMetrics>)>(
        token, room_id, "peak",
        [](error_code& ec, detail::rooms::OnlineReply r) -> std::optional<RoomPeakMetrics> {
          auto const& n = std::get<2>(r);
          if (ec || n.empty()) return std::nullopt;
          if (n.size() != 7) {
            ec = Error::incompatible_size;
            return std::nullopt;
          }
          // n: peak, peakTime, obsStart, obsSince, obsLast, obsArea, now
          RoomPeakMetrics m;
          m.peak_users_count = n[0];
          m.peak_time = RoomTime(std::chrono::milliseconds(n[1]));
          std::int64_t const span = n[6] - n[2];
          double const area =
              double(n[5]) + double(n[4]) * double(std::max<std::int64_t>(0, n[6] - n[3]));
          m.average_active_users = span > 0 ? area / double(span) : double(n[4]);
          return m;
        });
  }

  /// Every member with status (online / away / idle as OnlineUserManager derives it, nullopt
  /// when offline) and last activity, counts, and the mean session length (ended sessions and
  /// ongoing ones up to now). void(error_code, RoomPresenceStats).
  template <class Token = boost::asio::deferred_t>
  auto async_get_room_presence_stats(std::string_view room_id, Token&& token = {}) {
    return observe<void(error_code, RoomPresenceStats)>(
        token, room_id, "presence",
        [id = std::string(room_id), p = opt_.presence](error_code& ec,
                                                       detail::rooms::OnlineReply r) {
          RoomPresenceStats s;
          auto& [members, per, n] = r;
          if (ec) return s;
          if (per.size() != 3 * members.size() || n.size() != 3) {
            ec = Error::incompatible_size;
            return s;
          }
          s.room_id = id;
          s.total_users = static_cast<std::int64_t>(members.size());
          std::int64_t sessions = n[0], total_ms = n[1];
          for (std::size_t i = 0; i < members.size(); ++i) {
            std::int64_t const on = per[3 * i], expiry = per[3 * i + 1], joined = per[3 * i + 2];
            std::optional<PresenceStatus> status;
            if (on == 1)
              status = detail::online::status_of(expiry, n[2], p.default_ttl.count(),
                                                 p.away_after.count(), p.idle_after.count());
            s.online_users += on == 1;
            if (joined > 0) {
              ++sessions;
              total_ms += std::max<std::int64_t>(0, n[2] - joined);
            }
            s.users.push_back(
                {std::move(members[i]), status, RoomTime(std::chrono::milliseconds(joined))});
          }
          if (sessions > 0)
            s.average_session_duration = std::chrono::milliseconds(total_ms / sessions);
          return s;
        });
  }

  /// One page of the rooms that exist (SCAN over `{room_prefix}:*` hashes): start with cursor
  /// 0, stop when the returned cursor is 0. `count` (>= 1) is SCAN's hint of work per step.
  /// void(error_code, RoomPage).
  template <class Token = boost::asio::deferred_t>
  auto async_get_all_rooms(std::uint64_t cursor = 0, std::int64_t count = 100, Token&& token = {}) {
    return run<void(error_code, RoomPage)>(
        token, count >= 1, info_.all(),
        [cursor, count](std::string const& pattern) {
          return cmd::scan{.cursor = cursor, .match = pattern, .count = count, .type = "hash"};
        },
        [this](error_code&, ScanPage p) {
          RoomPage page{p.cursor, {}};
          page.rooms.reserve(p.keys.size());
          for (auto const& k : p.keys)
            page.rooms.emplace_back(info_.strip(k));
          return page;
        });
  }

 private:
  using Keys = std::vector<std::string>;
  using Args = std::vector<std::string>;

  static RoomOptions with_presence(RoomOptions o, OnlineUserOptions const& online) {
    o.presence = online_presence(online);
    return o;
  }

  Keys room_keys(std::string_view room) const {
    return {info_.key(room), users_.key(room), roles_.key(room), activity_.key(room),
            stats_.key(room)};
  }
  Keys room_keys(std::string_view room, std::string_view user) const {
    Keys k = room_keys(room);
    k.push_back(user_rooms_.key(user));
    return k;
  }

  // One round trip: `make(state)` builds the command or batch from `state`, which the
  // operation owns (a deferred operation starts after the async_ call returned), and
  // `map(ec, reply)` turns its reply into the result. Invalid input completes with
  // Error::invalid_argument through the executor, without sending anything.
  template <class Sig, class Token, class State, class Make, class Map>
  auto run(Token& token, bool valid, State state, Make make, Map map) {
    return boost::asio::async_initiate<Token, Sig>(
        [b = backend_, valid](auto handler, State state, Make make, Map map) {
          if (!valid) {
            detail::post_handler(b->get_executor(), std::move(handler),
                                 error_code(Error::invalid_argument),
                                 typename detail::rooms::ResultOf<Sig>::type{});
            return;
          }
          b->async_exec(make(state), detail::ThenHandler<decltype(handler), Map>{std::move(handler),
                                                                                 std::move(map)});
        },
        token, std::move(state), std::move(make), std::move(map));
  }

  template <class Sig, class Token, class Reply, class Twin, class Map>
  auto run_script(Token& token, bool valid, Script<Reply, Twin> const& script, Keys keys, Args args,
                  Map map) {
    struct State {
      Keys keys;
      Args args;
    };
    return run<Sig>(
        token, valid, State{std::move(keys), std::move(args)},
        [&script](State const& s) { return script(s.keys, s.args); }, std::move(map));
  }

  template <class Sig, class Token, class Map>
  auto observe(Token& token, std::string_view room_id, std::string_view mode, Map map) {
    Keys keys = room_keys(room_id);
    keys.push_back(presence_key_);
    return run_script<Sig>(token, options_valid_ && !room_id.empty(), detail::rooms::online_script,
                           std::move(keys), {std::string(mode), archived_ttl_}, std::move(map));
  }

  B* backend_;
  RoomOptions opt_;
  KeySpace info_, users_, user_rooms_, roles_, activity_, stats_;
  std::string presence_key_;                   // "presence:online"
  std::string room_users_prefix_;              // "room_users:"
  std::string ttl_, idle_ttl_, archived_ttl_;  // milliseconds, as script arguments
  bool options_valid_;
};

}  // namespace rediskit
