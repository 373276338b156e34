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
// Key layout. Prefixes are options (seed 000's are the defaults). RoomOptions::key_layout
// chooses between two layouts (nullopt: default_key_layout_v<B>, i.e. clustered on
// ClusterBackend, plain on every other backend):
//   plain (seed 000's names:     clustered (Redis Cluster:
//   Node services share them)    one slot per room, one per user)
//   rooms:R                      rooms:{R}            hash  id, name, type, createdAt (server
//                                                           ms), userCount, metadata
//   room_users:R                 room_users:{R}       set   the room's members
//   room_roles:R                 room_roles:{R}       hash  user -> "admin" | "moderator" |
//                                                           "member" (none: member)
//   room_activity:R              room_activity:{R}    hash  user -> when they joined (server
//                                                           ms)                [not in the seed]
//   room_stats:R                 room_stats:{R}       hash  peakUsersCount, peakTime, obs*,
//                                                           sessions, sessionMs [not in the seed]
//   user_rooms:U                 user_rooms:{U}       set   the user's rooms
//   presence:online              {presence}:online    zset  read only: OnlineUserManager's,
//                                                           user -> presence expiry (server ms)
// (R: the room id, U: the user id.) In the clustered layout {R} is the hash tag of the room:
// its five keys share one slot, and user_rooms:{U} is in the user's slot. An id holding '}'
// (which would end the tag) is tagged by its slot instead and follows it: rooms:{TTT}R, TTT
// three characters naming the slot of R (hash_tag_for), so two ids never share a key.
// The presence key is KeySpace(presence_prefix, presence layout).key("online"), as
// OnlineUserManager builds it (RoomOptions::presence, filled by RoomManager(backend, users)).
//
// Round trips and atomicity, per operation:
//  - create, room info, room users, role get/set, all rooms: one round trip (a script, a batch
//    or one command) on the room's keys: atomic where a script, in both layouts.
//  - Join and leave change both directions: room_users:R (with userCount, activity, stats,
//    TTLs) and user_rooms:U.
//      plain: one script on the six keys, one round trip, atomic: a room never lists a user
//             whose user_rooms does not list the room.
//      clustered: the two sides are in two slots (two nodes). A join runs the room's script,
//             then SADD user_rooms:{U}; a leave runs SREM user_rooms:{U}, then the room's
//             script: two round trips, each side atomic, in this order so that whatever runs
//             concurrently (another join or leave of the pair, async_get_user_rooms pruning),
//             every room that lists U ends listed in user_rooms:{U}. A failure between the two
//             steps completes the operation with its error and may leave the room side done
//             (join) or the user side done (leave): call it again (both sides are idempotent;
//             a repeated join then reports false, "already a member"). A room that the user
//             index lists but which does not list the user is harmless: see get_user_rooms.
//             (Not one batch: a batch split over two masters runs its halves in no order, and
//             a get_user_rooms pruning between them could drop a fresh membership unseen.)
//  - async_get_user_rooms (both layouts): SMEMBERS user_rooms:U, then SISMEMBER of the user
//    in each room (one batch; split per master on a cluster): two round trips. It lists the
//    rooms that list the user, and removes the others from user_rooms:U (rooms that expired,
//    or left half-done by a failure): when it removed any, it checks those rooms once more and
//    puts back any that lists the user by then (a join that ran meanwhile): two more round
//    trips, only then. (A script cannot declare keys it has not read yet, so this is the
//    plain layout's path too: two round trips where the one-node script took one.)
//  - Online members, online count, presence stats and peak metrics read the room's members,
//    their expiries in the presence zset, and record the online count observed when it is news
//    (the first observation, a change, a new peak):
//      plain: one script on the room's keys and the presence zset, one round trip, atomic (one
//             TIME for membership and presence).
//      clustered: the presence zset is in another slot, so: a script on the room's keys (the
//             members, the statistics), then a script on the presence zset (ZMSCORE by 1000
//             members, that node's TIME), then, only when the count is news, a script on the
//             room's keys that records it: two round trips, three when the count changed.
//             Members and presence are read at two instants (a round trip apart), not in one
//             snapshot; the observation is a read-modify-write in its own script, so
//             concurrent observers still add up.
//    Why not one code path: on one node, the clustered form cost chat_bench's
//    get_room_online_users ~30 % of its RedisBackend throughput and ~40 us at the median; the
//    one script is the three clustered scripts' code composed (the same Lua, the same twins).
//    Either way a presence that expired is offline at once, purged or not.
//
// Other guarantees:
//  - TTLs: each write to a room (create, join, leave, role) sets the same TTL on its keys
//    rooms:, room_users:, room_roles:, room_activity: so they expire together:
//    default_room_ttl while it has members, idle_room_ttl once the last member left;
//    room_stats: lives archived_room_ttl after its last write (history outlives the room).
//    user_rooms:U has no TTL (were it to expire first, a room would list a user whose rooms do
//    not list it): leaves empty it, and ids of rooms that expired are pruned when the user's
//    rooms are read; until then a user who never comes back keeps those ids.
//  - Counts are derived from what is alive: userCount / total = members of room_users, online
//    = members whose OnlineUserManager presence has not expired (its expiry in the presence
//    zset is later than the presence node's TIME). Cost is O(members of the room), whatever
//    the total number of users. Presence stats report online / away / idle as
//    OnlineUserManager derives them from the same expiry (OnlinePresence's default_ttl,
//    away_after, idle_after).
//  - Times are the server's (TIME in Lua, the engine clock in the twins), never the client's:
//    the room node's for join times, sessions and observations, the presence node's for
//    presence.
//  - Peak metrics: the online count of a room is observed whenever an operation computes it
//    (online users, online count, presence stats, peak metrics); the peak is the highest
//    observation (with its server time) and the average is time-weighted between
//    observations. Presence changes made elsewhere are seen at the next observation.
//  - Every script declares in KEYS every key it touches (the room's five keys, user_rooms, or
//    the presence zset), and in the clustered layout those keys share one slot: the manager
//    runs on ClusterBackend, and on MemoryBackend with MemoryConfig::cluster_checks.
//  - Every operation completes through the executor; bad input (empty id, unknown role,
//    count < 1, a TTL option <= 0) completes with Error::invalid_argument and sends nothing.
// The manager must outlive its operations; the arguments may die as soon as the async_ call
// returns (they are copied). Cancellation, executor and allocator: the handler's associations
// reach the backend (the step in flight).
#pragma once

// The script twins run commands on the memory engine: every command family must be visible.
#include <rediskit/cmd/hashes.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/cmd/server.hpp>
#include <rediskit/cmd/sets.hpp>
#include <rediskit/cmd/sorted_sets.hpp>
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
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <memory>
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

/// Who is online, as RoomManager sees it: OnlineUserManager's zset, read after the room's
/// members. User `u` is online iff their score (presence expiry, server unix ms) in the zset
/// KeySpace(presence_prefix, layout).key("online") ("presence:online", "{presence}:online"
/// when clustered) is later than that server's TIME; status online / away / idle follows from
/// that expiry as in OnlineUserManager. Names and defaults are OnlineUserOptions': a
/// RoomManager and the OnlineUserManager sharing a Redis must use the same presence_prefix and
/// key_layout (and the same default_ttl, away_after, idle_after for the same statuses). The
/// simplest way: RoomManager(backend, online_users) or online_presence(online_users.options()).
struct OnlinePresence {
  std::string presence_prefix = "presence";  ///< OnlineUserOptions::presence_prefix
  /// OnlineUserOptions::key_layout (nullopt: default_key_layout_v<B>, as OnlineUserManager).
  std::optional<KeyLayout> key_layout{};
  std::chrono::milliseconds default_ttl = std::chrono::minutes(5);  ///< OnlineUserOptions'
  std::chrono::milliseconds away_after = std::chrono::minutes(1);   ///< OnlineUserOptions'
  std::chrono::milliseconds idle_after = std::chrono::minutes(3);   ///< OnlineUserOptions'
};

/// The presence settings of an OnlineUserManager's options, for RoomOptions::presence.
inline OnlinePresence online_presence(OnlineUserOptions const& o) {
  return {o.presence_prefix, o.key_layout, o.default_ttl, o.away_after, o.idle_after};
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
  /// plain (seed 000's names) or clustered (hash tags: see the top of this file); nullopt:
  /// default_key_layout_v<B> (clustered on ClusterBackend, plain elsewhere). Plain on a
  /// cluster: every script fails with Error::cross_slot (its keys span slots).
  std::optional<KeyLayout> key_layout{};
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

// Every room script gets the room's keys in this order; in the plain layout, join and leave add
// user_rooms:{user}, and online_script the presence zset.
enum RoomKey {
  info, users, roles, activity, stats, room_key_count,
  user_index = room_key_count,  // join, leave (plain layout): user_rooms:{user}
  presence = room_key_count,    // online_script (plain layout): the presence zset
};

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

// membership: the room side of a join or a leave (and, in the plain layout, the user side:
// KEYS[6] = user_rooms:{user}). KEYS room keys [+ user_rooms:{user}]; ARGV "join" | "leave",
// room, user, ttl, idle ttl, archived -> join: 1 joined, 0 was a member already; leave: 1 left
// (the ended session is added to the statistics), 0 was not a member.
inline std::int64_t join_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const added = c.call(cmd::sadd{.key = k[users], .members = a[2]});
  if (k.size() > room_key_count) c.call(cmd::sadd{.key = k[user_index], .members = a[1]});
  std::int64_t const now = c.unix_ms();
  if (c.call(cmd::hsetnx{.key = k[info], .field = "id", .value = a[1]}))
    set_field(c, k[info], "createdAt", now);
  if (added == 1) set_field(c, k[activity], a[2], now);
  set_field(c, k[info], "userCount", c.call(cmd::scard{k[users]}));
  touch(c, a[3], a[5]);
  return added;
}
inline std::int64_t leave_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  if (k.size() > room_key_count) c.call(cmd::srem{.key = k[user_index], .members = a[1]});
  if (c.call(cmd::srem{.key = k[users], .members = a[2]}) == 0) return 0;
  std::int64_t const now = c.unix_ms();
  c.call(cmd::hdel{.key = k[roles], .fields = a[2]});
  auto const joined = c.call(cmd::hget{.key = k[activity], .field = a[2]});
  c.call(cmd::hdel{.key = k[activity], .fields = a[2]});
  c.call(cmd::hincrby{.key = k[stats], .field = "sessions", .increment = 1});
  c.call(cmd::hincrby{.key = k[stats],
                      .field = "sessionMs",
                      .increment = joined ? std::max<std::int64_t>(0, now - to_i64(*joined)) : 0});
  std::int64_t const left = c.call(cmd::scard{k[users]});
  if (c.call(cmd::exists{.keys = k[info]}) == 1) set_field(c, k[info], "userCount", left);
  touch(c, left > 0 ? a[3] : a[4], a[5]);
  return 1;
}
inline auto const membership_script = make_script<std::int64_t>(lua(R"lua(
local room, user = ARGV[2], ARGV[3]
if ARGV[1] == 'join' then
  local added = redis.call('SADD', KEYS[2], user)
  if KEYS[6] then redis.call('SADD', KEYS[6], room) end
  local now = now_ms()
  if redis.call('HSETNX', KEYS[1], 'id', room) == 1 then
    redis.call('HSET', KEYS[1], 'createdAt', int(now))
  end
  if added == 1 then redis.call('HSET', KEYS[4], user, int(now)) end
  redis.call('HSET', KEYS[1], 'userCount', int(redis.call('SCARD', KEYS[2])))
  touch(ARGV[4], ARGV[6])
  return added
end
if KEYS[6] then redis.call('SREM', KEYS[6], room) end
if redis.call('SREM', KEYS[2], user) == 0 then return 0 end
local now = now_ms()
redis.call('HDEL', KEYS[3], user)
local joined = redis.call('HGET', KEYS[4], user)
redis.call('HDEL', KEYS[4], user)
redis.call('HINCRBY', KEYS[5], 'sessions', 1)
local ms = 0
if joined then ms = math.max(0, now - tonumber(joined)) end
redis.call('HINCRBY', KEYS[5], 'sessionMs', int(ms))
local left = redis.call('SCARD', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'userCount', int(left)) end
if left > 0 then touch(ARGV[4], ARGV[6]) else touch(ARGV[5], ARGV[6]) end
return 1
)lua"),
                                                    [](ScriptContext auto& c) {
                                                      return c.args()[0] == "join" ? join_twin(c)
                                                                                   : leave_twin(c);
                                                    });

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

// The online operations. Plain layout: online_script on the room's keys and the presence zset,
// one round trip. Clustered: the same three parts as scripts on the nodes of their keys:
// online_script on the room's keys alone (the members and statistics), presence_read_script
// (their expiries), then, only when the online count is news, observe_script (records it).
//
// room_read: KEYS room keys; reads {members, joined ms per member (only when `joined_too`, else
// {}), numbers}: numbers = {now, exists (members or a room hash: 1/0), peakUsersCount,
// peakTime, obsStart, obsSince, obsLast, obsArea, sessions, sessionMs}, -1 for each absent
// statistic.
using RoomRead =
    std::tuple<std::vector<std::string>, std::vector<std::int64_t>, std::vector<std::int64_t>>;
inline constexpr std::size_t room_read_numbers = 10;
inline constexpr std::size_t peak_numbers = 7;
inline constexpr std::array<std::string_view, 8> stats_fields{
    "peakUsersCount", "peakTime", "obsStart", "obsSince", "obsLast", "obsArea", "sessions",
    "sessionMs"};
enum RoomNumber { now_at, exists_at, peak_at, peak_time_at, obs_start_at, obs_since_at,
                  obs_last_at, obs_area_at, sessions_at, session_ms_at };

inline RoomRead room_read(ScriptContext auto& c, bool joined_too) {
  auto const k = c.keys();
  auto members = c.call(cmd::smembers{k[users]});
  std::vector<std::int64_t> nums{c.unix_ms()};
  nums.push_back(!members.empty() || c.call(cmd::exists{.keys = k[info]}) == 1 ? 1 : 0);
  for (auto const& v : c.call(cmd::hmget{.key = k[stats], .fields = stats_fields}))
    nums.push_back(v ? to_i64(*v) : -1);
  std::vector<std::int64_t> joined;
  if (joined_too && !members.empty()) {
    std::unordered_map<std::string, std::string> at;
    for (auto& [u, t] : c.call(cmd::hgetall{k[activity]}))
      at.emplace(std::move(u), std::move(t));
    for (auto const& m : members) {
      auto const it = at.find(m);
      joined.push_back(it == at.end() ? 0 : to_i64(it->second));
    }
  }
  return {std::move(members), std::move(joined), std::move(nums)};
}

// expiries: appends the presence expiry of each of `list` (ms; 0: none) in zset P. ZMSCORE 1000
// members at a time (Lua's unpack has a stack limit).
inline constexpr std::size_t presence_chunk = 1000;
template <class T>
void expiries(ScriptContext auto& c, std::string_view P, std::span<T const> list,
              std::vector<std::int64_t>& out) {
  for (std::size_t i = 0; i < list.size(); i += presence_chunk) {
    auto const chunk = list.subspan(i, std::min(presence_chunk, list.size() - i));
    for (auto const& s : c.call(cmd::zmscore{.key = P, .members = chunk}))
      out.push_back(s ? static_cast<std::int64_t>(*s) : 0);
  }
}

// observe: records online count `n` in room_stats (KEYS[5]) -> {peak, peakTime, obsStart,
// obsSince, obsLast, obsArea, now}. The first observation starts obs*; a changed count adds
// obsLast * (now - obsSince) to obsArea; a new high sets peakUsersCount / peakTime; nothing is
// written when nothing changed. Read-modify-write in the script, so concurrent observers add
// up.
inline std::vector<std::int64_t> observe(ScriptContext auto& c, std::int64_t n,
                                         std::string_view archived) {
  auto const S = c.keys()[stats];
  std::int64_t const now = c.unix_ms();
  auto const s = c.call(cmd::hmget{
      .key = S, .fields = {"peakUsersCount", "obsStart", "obsSince", "obsLast", "obsArea"}});
  bool changed = false;
  std::string const t = std::to_string(now), v = std::to_string(n);
  if (!s[1]) {
    c.call(cmd::hset{.key = S,
                     .fields = {FieldValue{"obsStart", t}, FieldValue{"obsSince", t},
                                FieldValue{"obsLast", v}, FieldValue{"obsArea", "0"}}});
    changed = true;
  } else if (opt_i64(s[3]) != n) {
    std::int64_t const area =
        opt_i64(s[4]) + opt_i64(s[3]) * std::max<std::int64_t>(0, now - opt_i64(s[2]));
    std::string const ar = std::to_string(area);
    c.call(cmd::hset{.key = S,
                     .fields = {FieldValue{"obsSince", t}, FieldValue{"obsLast", v},
                                FieldValue{"obsArea", ar}}});
    changed = true;
  }
  if (!s[0] || n > opt_i64(s[0])) {
    c.call(cmd::hset{.key = S,
                     .fields = {FieldValue{"peakUsersCount", v}, FieldValue{"peakTime", t}}});
    changed = true;
  }
  if (changed) c.call(cmd::pexpire{.key = S, .ttl = std::chrono::milliseconds(to_i64(archived))});
  std::vector<std::int64_t> out;
  for (auto const& x : c.call(cmd::hmget{.key = S, .fields = {"peakUsersCount", "peakTime",
                                                               "obsStart", "obsSince", "obsLast",
                                                               "obsArea"}}))
    out.push_back(opt_i64(x));
  out.push_back(now);
  return out;
}

// Whether online count `n` is news to the statistics room_read read (the first observation, a
// change, a new peak): only then is it recorded.
inline bool news(std::span<std::int64_t const> nums, std::int64_t n) {
  return nums[obs_start_at] < 0 || nums[obs_last_at] != n || nums[peak_at] < 0 ||
         n > nums[peak_at];
}

// The peak numbers as the statistics read by room_read hold them ({} when no peak).
inline std::vector<std::int64_t> stored_peak(std::span<std::int64_t const> nums) {
  if (nums[peak_at] < 0) return {};
  std::vector<std::int64_t> out;
  for (std::size_t i = peak_at; i <= obs_area_at; ++i)
    out.push_back(std::max<std::int64_t>(0, nums[i]));
  out.push_back(nums[now_at]);
  return out;
}

inline constexpr std::string_view lua_online = R"lua(
local function room_read(joined_too)
  local members = redis.call('SMEMBERS', KEYS[2])
  local nums = {now_ms(), 0}
  if #members > 0 or redis.call('EXISTS', KEYS[1]) == 1 then nums[2] = 1 end
  local s = redis.call('HMGET', KEYS[5], 'peakUsersCount', 'peakTime', 'obsStart', 'obsSince',
                      'obsLast', 'obsArea', 'sessions', 'sessionMs')
  for i = 1, 8 do nums[i + 2] = tonumber(s[i]) or -1 end
  local joined = {}
  if joined_too and #members > 0 then
    local at = {}
    local all = redis.call('HGETALL', KEYS[4])
    for i = 1, #all, 2 do at[all[i]] = tonumber(all[i + 1]) end
    for i, u in ipairs(members) do joined[i] = at[u] or 0 end
  end
  return members, joined, nums
end
local function expiries(P, list, out)
  for i = 1, #list, 1000 do
    local sc = redis.call('ZMSCORE', P, unpack(list, i, math.min(i + 999, #list)))
    for j = 1, #sc do out[#out + 1] = (sc[j] and tonumber(sc[j])) or 0 end
  end
  return out
end
local function observe(n, archived)
  local now = now_ms()
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
  if changed then redis.call('PEXPIRE', KEYS[5], archived) end
  local st = redis.call('HMGET', KEYS[5], 'peakUsersCount', 'peakTime', 'obsStart', 'obsSince',
                        'obsLast', 'obsArea')
  local out = {}
  for i = 1, 6 do out[i] = tonumber(st[i] or 0) end
  out[7] = now
  return out
end
local function news(nums, n)
  return nums[5] < 0 or nums[7] ~= n or nums[3] < 0 or n > nums[3]
end
)lua";
inline std::string lua_with_online(std::string_view body) {
  return lua(std::string(lua_online) + std::string(body));
}

// Clustered, step 2, on the presence zset's node. KEYS {presence zset}; ARGV the members ->
// {now, expiry of each member}.
inline auto const presence_read_script = make_script<std::vector<std::int64_t>>(
    lua_with_online(R"lua(
return expiries(KEYS[1], ARGV, {now_ms()})
)lua"),
    [](ScriptContext auto& c) {
      std::vector<std::int64_t> out{c.unix_ms()};
      expiries(c, c.keys()[0], c.args(), out);
      return out;
    });

// Clustered, step 3, on the room's node. KEYS room keys (touches room_stats only); ARGV online
// count, archived ttl -> observe's numbers.
inline auto const observe_script = make_script<std::vector<std::int64_t>>(
    lua_with_online(R"lua(
return observe(tonumber(ARGV[1]), ARGV[2])
)lua"),
    [](ScriptContext auto& c) { return observe(c, to_i64(c.args()[0]), c.args()[1]); });

// online: the room side of an online read. KEYS room keys [+ the presence zset, plain layout];
// ARGV "joined" (presence stats), "peak" (peak metrics) or "", archived ttl.
//  - Clustered (room keys only), step 1 on the room's node: room_read's {members, joined,
//    numbers}.
//  - Plain (+ the presence zset): all three parts in one script -> {members, expiry per member
//    then ("joined") joined per member, room_read's numbers then (peak, or when the count was
//    news) the peak numbers ({} when no peak)}. Online: expiry > now (one TIME for the room and
//    the presence: one node).
inline RoomRead online_twin(ScriptContext auto& c) {
  std::string_view const mode = c.args()[0];
  auto [members, joined, nums] = room_read(c, mode == "joined");
  if (c.keys().size() == room_key_count) return {std::move(members), std::move(joined), std::move(nums)};
  std::vector<std::int64_t> per;
  per.reserve(2 * members.size());
  expiries(c, c.keys()[presence], std::span<std::string const>(members), per);
  std::int64_t online = 0;
  for (auto const e : per)
    online += e > nums[now_at] ? 1 : 0;
  std::vector<std::int64_t> peak;
  if (nums[exists_at] == 1 && news(nums, online))
    peak = observe(c, online, c.args()[1]);
  else if (mode == "peak")
    peak = stored_peak(nums);
  per.insert(per.end(), joined.begin(), joined.end());
  nums.insert(nums.end(), peak.begin(), peak.end());
  return {std::move(members), std::move(per), std::move(nums)};
}
inline auto const online_script = make_script<RoomRead>(lua_with_online(R"lua(
local members, joined, nums = room_read(ARGV[1] == 'joined')
if not KEYS[6] then return {members, joined, nums} end
local per = expiries(KEYS[6], members, {})
local n = 0
for i = 1, #per do if per[i] > nums[1] then n = n + 1 end end
local peak = {}
if nums[2] == 1 and news(nums, n) then
  peak = observe(n, ARGV[2])
elseif ARGV[1] == 'peak' and nums[3] >= 0 then
  for i = 3, 8 do peak[#peak + 1] = math.max(0, nums[i]) end
  peak[#peak + 1] = nums[1]
end
for i = 1, #joined do per[#per + 1] = joined[i] end
for i = 1, #peak do nums[#nums + 1] = peak[i] end
return {members, per, nums}
)lua"),
                                                      [](ScriptContext auto& c) { return online_twin(c); });

// What the online operations read (see RoomManager::observe).
struct Observation {
  std::vector<std::string> members;
  std::vector<std::int64_t> expiry;  // per member: presence expiry (ms; 0: none)
  std::vector<std::int64_t> joined;  // per member (presence stats only): joined at (ms; 0: none)
  std::array<std::int64_t, room_read_numbers> room{};  // room_read's numbers
  std::int64_t presence_now = 0;
  std::int64_t online = 0;
  std::vector<std::int64_t> peak;  // {peak, peakTime, obsStart, obsSince, obsLast, obsArea, now}
                                   // or {} when the room has no peak recorded
  bool is_online(std::size_t i) const { return expiry[i] > presence_now; }
  void count_online() {
    expiry.resize(members.size());
    joined.resize(members.size());
    online = 0;
    for (std::size_t i = 0; i < members.size(); ++i)
      online += is_online(i) ? 1 : 0;
  }
};

// online_script's reply as an Observation (Error::incompatible_size when it is not one).
inline Observation observation_of(boost::system::error_code& ec, RoomRead r) {
  Observation o;
  auto& [members, per, nums] = r;
  std::size_t const m = members.size();
  if (!ec && ((per.size() != m && per.size() != 2 * m) ||
              (nums.size() != room_read_numbers && nums.size() != room_read_numbers + peak_numbers)))
    ec = Error::incompatible_size;
  if (ec) return o;
  o.members = std::move(members);
  o.expiry.assign(per.begin(), per.begin() + static_cast<std::ptrdiff_t>(m));
  o.joined.assign(per.begin() + static_cast<std::ptrdiff_t>(m), per.end());
  std::copy_n(nums.begin(), room_read_numbers, o.room.begin());
  o.peak.assign(nums.begin() + room_read_numbers, nums.end());
  o.presence_now = o.room[now_at];
  o.count_online();
  return o;
}

// The tag of an entity's keys in the clustered layout: "{id}", or for an id holding '}' (or
// empty) its slot's tag followed by the id, "{TTT}id", so that no two ids share a key.
inline std::string entity_tag(std::string_view id) {
  std::string t = hash_tag_for(id);
  if (id.empty() || id.find('}') != std::string_view::npos) t.append(id);
  return t;
}
// The id that entity_tag(id) came from (`s` itself when it is not such a tag).
inline std::string_view entity_id(std::string_view s) noexcept {
  if (s.size() < 2 || s.front() != '{') return s;
  auto const close = s.find('}');
  if (close == std::string_view::npos) return s;
  return close + 1 == s.size() ? s.substr(1, close - 1) : s.substr(close + 1);
}

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
        clustered_(opt_.key_layout.value_or(default_key_layout_v<B>) == KeyLayout::clustered),
        info_(opt_.room_prefix),
        users_(opt_.room_users_prefix),
        user_rooms_(opt_.user_rooms_prefix),
        roles_(opt_.room_roles_prefix),
        activity_(opt_.room_activity_prefix),
        stats_(opt_.room_stats_prefix),
        presence_key_(KeySpace(opt_.presence.presence_prefix,
                               opt_.presence.key_layout.value_or(default_key_layout_v<B>))
                          .key("online")),
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

  /// The layout this manager's keys follow (RoomOptions::key_layout, else the backend's).
  KeyLayout key_layout() const noexcept {
    return clustered_ ? KeyLayout::clustered : KeyLayout::plain;
  }

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
        token, !room_id.empty(), State{room_key(info_, room_id), room_key(users_, room_id)},
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

  /// Adds the user to the room and the room to the user's rooms; creates the room hash when
  /// missing. void(error_code, bool joined): false when already a member. Plain layout: one
  /// atomic script. Clustered: the room's script, then the user's rooms (see the top of this
  /// file): after an error, join again.
  template <class Token = boost::asio::deferred_t>
  auto async_join_room(std::string_view room_id, std::string_view user_id, Token&& token = {}) {
    return membership(token, true, room_id, user_id);
  }

  /// Removes the user from the room (and its role) and the room from the user's rooms.
  /// void(error_code, bool left): false when not a member. Plain layout: one atomic script.
  /// Clustered: the user's rooms, then the room's script: after an error, leave again.
  template <class Token = boost::asio::deferred_t>
  auto async_leave_room(std::string_view room_id, std::string_view user_id, Token&& token = {}) {
    return membership(token, false, room_id, user_id);
  }

  /// The room's members, in no particular order. void(error_code, std::vector<std::string>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_room_users(std::string_view room_id, Token&& token = {}) {
    return run<void(error_code, std::vector<std::string>)>(
        token, !room_id.empty(), room_key(users_, room_id),
        [](std::string const& key) { return cmd::smembers{key}; },
        [](error_code&, std::vector<std::string> v) { return v; });
  }

  /// The members that are online (their OnlineUserManager presence has not expired), in no
  /// particular order; O(room members); one script (clustered: two or three round trips, see
  /// the top of this file). void(error_code, std::vector<std::string>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_room_online_users(std::string_view room_id, Token&& token = {}) {
    return observe<void(error_code, std::vector<std::string>)>(
        token, room_id, Reading::members, [](error_code&, detail::rooms::Observation o) {
          std::vector<std::string> online;
          online.reserve(static_cast<std::size_t>(o.online));
          for (std::size_t i = 0; i < o.members.size(); ++i)
            if (o.is_online(i)) online.push_back(std::move(o.members[i]));
          return online;
        });
  }

  /// {online, total} members. void(error_code, RoomOnlineCount).
  template <class Token = boost::asio::deferred_t>
  auto async_get_room_online_users_count(std::string_view room_id, Token&& token = {}) {
    return observe<void(error_code, RoomOnlineCount)>(
        token, room_id, Reading::members, [](error_code&, detail::rooms::Observation const& o) {
          return RoomOnlineCount{o.online, static_cast<std::int64_t>(o.members.size())};
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
        State{room_key(users_, room_id), room_key(roles_, room_id), std::string(user_id)},
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

  /// The rooms the user is a member of: those in user_rooms that list the user (the others
  /// are removed from user_rooms); two round trips, four when it removes some (see the top of
  /// this file). In no particular order. void(error_code, std::vector<std::string>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_user_rooms(std::string_view user_id, Token&& token = {}) {
    auto st = std::make_unique<typename UserRoomsOp::Stable>();
    st->user = user_id;
    st->index = user_key(user_id);
    return detail::erased_compose<void(error_code, std::vector<std::string>)>(
        std::forward<Token>(token), UserRoomsOp{this, std::move(st), user_id.empty()}, backend_->get_executor());
  }

  /// Peak online members with its server time, and the time-weighted average online count
  /// (observes the room now). nullopt when the room does not exist and never did within
  /// archived_room_ttl. void(error_code, std::optional<RoomPeakMetrics>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_room_peak_metrics(std::string_view room_id, Token&& token = {}) {
    return observe<void(error_code, std::optional<RoomPeakMetrics>)>(
        token, room_id, Reading::peak,
        [](error_code& ec, detail::rooms::Observation const& o) -> std::optional<RoomPeakMetrics> {
          auto const& n = o.peak;
          if (ec || n.empty()) return std::nullopt;
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
        token, room_id, Reading::joined,
        [id = std::string(room_id), p = opt_.presence](error_code& ec,
                                                       detail::rooms::Observation o) {
          using namespace detail::rooms;
          RoomPresenceStats s;
          if (ec) return s;
          s.room_id = id;
          s.total_users = static_cast<std::int64_t>(o.members.size());
          s.online_users = o.online;
          std::int64_t const now = o.room[now_at];
          std::int64_t sessions = std::max<std::int64_t>(0, o.room[sessions_at]);
          std::int64_t total_ms = std::max<std::int64_t>(0, o.room[session_ms_at]);
          s.users.reserve(o.members.size());
          for (std::size_t i = 0; i < o.members.size(); ++i) {
            std::optional<PresenceStatus> status;
            if (o.is_online(i))
              status = detail::online::status_of(o.expiry[i], o.presence_now,
                                                 p.default_ttl.count(), p.away_after.count(),
                                                 p.idle_after.count());
            std::int64_t const joined = o.joined[i];
            if (joined > 0) {
              ++sessions;
              total_ms += std::max<std::int64_t>(0, now - joined);
            }
            s.users.push_back(
                {std::move(o.members[i]), status, RoomTime(std::chrono::milliseconds(joined))});
          }
          if (sessions > 0)
            s.average_session_duration = std::chrono::milliseconds(total_ms / sessions);
          return s;
        });
  }

  /// One page of the rooms that exist (SCAN over `{room_prefix}:*` hashes): start with cursor
  /// 0, stop when the returned cursor is 0. `count` (>= 1) is SCAN's hint of work per step
  /// (per master on a cluster, where the cursor walks every master in turn).
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
          for (auto const& k : p.keys) {
            std::string_view const name = info_.strip(k);
            page.rooms.emplace_back(clustered_ ? detail::rooms::entity_id(name) : name);
          }
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

  // The key of room (or user) `id` under `ks`: "prefix:id", or "prefix:{id}" when clustered.
  std::string room_key(KeySpace const& ks, std::string_view id) const {
    return clustered_ ? ks.key(detail::rooms::entity_tag(id)) : ks.key(id);
  }
  std::string user_key(std::string_view user) const { return room_key(user_rooms_, user); }

  Keys room_keys(std::string_view room) const {
    return {room_key(info_, room), room_key(users_, room), room_key(roles_, room),
            room_key(activity_, room), room_key(stats_, room)};
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

  // Multi-step operations (asio::async_compose through detail::erased_compose: one
  // instantiation per operation type). What their commands view lives in a Stable block, so
  // that it keeps its address while the operation moves from handler to handler. A rejected
  // input completes through the executor (post), never inside the initiating call.

  // Clustered join or leave: the two sides in two ordered steps (see the top of this file).
  // Join: the room's script, then SADD user_rooms. Leave: SREM user_rooms, then the room's
  // script. Completes with the room script's answer.
  struct MembershipOp {
    struct Stable {
      Keys keys;  // the room's keys
      Args args;  // membership_script's: "join" | "leave", room, user, ttl, idle, archived
      std::string index, room;  // user_rooms:{user}, the room id
    };
    B* backend;
    std::unique_ptr<Stable> st;
    bool join;
    enum { start, room_side, user_side } step = start;
    std::int64_t result = 0;

    template <class Self>
    void operator()(Self& self) {
      if (join) return run_room_side(self);
      step = user_side;
      backend->async_exec(cmd::srem{.key = st->index, .members = st->room}, std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::int64_t r) {
      if (ec) return self.complete(ec, false);
      if (step == room_side) result = r;
      if (join && step == room_side) {
        step = user_side;
        return backend->async_exec(cmd::sadd{.key = st->index, .members = st->room},
                                   std::move(self));
      }
      if (!join && step == user_side) return run_room_side(self);
      self.complete(ec, result == 1);
    }

    template <class Self>
    void run_room_side(Self& self) {
      step = room_side;
      backend->async_exec(detail::rooms::membership_script(st->keys, st->args), std::move(self));
    }
  };

  // Plain layout: membership_script on the room's keys and user_rooms:{user}, one round trip.
  // Clustered: MembershipOp.
  template <class Token>
  auto membership(Token& token, bool join, std::string_view room_id, std::string_view user_id) {
    auto st = std::make_unique<typename MembershipOp::Stable>();
    bool const bad = !options_valid_ || room_id.empty() || user_id.empty();
    if (!bad) {
      st->keys = room_keys(room_id);
      st->index = user_key(user_id);
      st->room = room_id;
      st->args = {join ? "join" : "leave", std::string(room_id), std::string(user_id), ttl_,
                  idle_ttl_, archived_ttl_};
    }
    return detail::initiate<void(error_code, bool)>(
        std::forward<Token>(token),
        [b = backend_, bad, join, split = clustered_, st = std::move(st)](auto handler) mutable {
          if (bad)
            return detail::post_handler(b->get_executor(), std::move(handler),
                                        error_code(Error::invalid_argument), false);
          if (split)
            return detail::erased_compose<void(error_code, bool)>(
                std::move(handler), MembershipOp{b, std::move(st), join}, b->get_executor());
          st->keys.push_back(st->index);
          b->async_exec(detail::rooms::membership_script(st->keys, st->args),
                        detail::then(std::move(handler),
                                     [](error_code&, std::int64_t n) { return n == 1; }));
        });
  }

  // get_user_rooms: SMEMBERS user_rooms, SISMEMBER in each room; then, when some rooms do not
  // list the user, SREM them, SISMEMBER them again, and SADD back those that list the user by
  // then (a join that ran meanwhile: its room side came after our first check).
  struct UserRoomsOp {
    struct Stable {
      std::string user, index;
      std::vector<std::string> rooms, keys;  // candidate rooms, their room_users keys
      std::vector<cmd::sismember> checks;
      std::vector<std::string> kept;
    };
    RoomManager const* m;
    std::unique_ptr<Stable> st;
    bool bad;
    enum { start, rejected, listing, checking, removing, rechecking, restoring } step = start;

    template <class Self>
    void operator()(Self& self) {
      if (step == rejected)
        return self.complete(error_code(Error::invalid_argument), std::vector<std::string>{});
      if (bad) {
        step = rejected;
        return boost::asio::post(m->backend_->get_executor(), std::move(self));
      }
      step = listing;
      m->backend_->async_exec(cmd::smembers{st->index}, std::move(self));
    }

    // The user's index (listing).
    template <class Self>
    void operator()(Self& self, error_code ec, std::vector<std::string> rooms) {
      if (ec || rooms.empty()) return self.complete(ec, std::vector<std::string>{});
      st->rooms = std::move(rooms);
      check(self, checking);
    }

    // Membership of the user in st->rooms (checking, rechecking).
    template <class Self>
    void operator()(Self& self, error_code ec, std::tuple<std::vector<bool>> reply) {
      auto& member = std::get<0>(reply);
      if (!ec && member.size() != st->rooms.size()) ec = Error::incompatible_size;
      if (ec) return done(self, ec);
      std::vector<std::string> next;  // checking: rooms without the user; rechecking: with
      for (std::size_t i = 0; i < member.size(); ++i) {
        if (step == checking)
          (member[i] ? st->kept : next).push_back(std::move(st->rooms[i]));
        else if (member[i])
          next.push_back(std::move(st->rooms[i]));
      }
      st->rooms = std::move(next);
      if (st->rooms.empty()) return done(self, ec);
      if (step == checking) {
        step = removing;
        m->backend_->async_exec(cmd::srem{.key = st->index, .members = st->rooms},
                                std::move(self));
      } else {
        step = restoring;
        m->backend_->async_exec(cmd::sadd{.key = st->index, .members = st->rooms},
                                std::move(self));
      }
    }

    // SREM (removing: check the removed rooms again) or SADD (restoring) done.
    template <class Self>
    void operator()(Self& self, error_code ec, std::int64_t) {
      if (ec || step == restoring) return done(self, ec);
      check(self, rechecking);
    }

    template <class Self>
    void check(Self& self, decltype(step) next) {
      step = next;
      st->keys.clear();
      st->checks.clear();
      for (auto const& r : st->rooms)
        st->keys.push_back(m->room_key(m->users_, r));
      for (auto const& k : st->keys)
        st->checks.push_back(cmd::sismember{.key = k, .member = st->user});
      // A batch of one span (a bare range of bool replies does not adapt on RedisBackend).
      m->backend_->async_exec(batch(st->checks), std::move(self));
    }

    template <class Self>
    void done(Self& self, error_code ec) {
      std::vector<std::string> out = ec ? std::vector<std::string>{} : std::move(st->kept);
      if (!ec && step == restoring)
        out.insert(out.end(), std::make_move_iterator(st->rooms.begin()),
                   std::make_move_iterator(st->rooms.end()));
      self.complete(ec, std::move(out));
    }
  };

  // Clustered online operations: online_script on the room's keys (members, statistics),
  // presence_read_script on the presence zset (the members' expiries, that node's TIME), then,
  // when the online count is news, observe_script on the room's keys.
  struct ObserveOp {
    struct Stable {
      Keys keys;          // the room's keys
      Keys presence;      // {the presence zset}
      Args read_args;     // {"joined", "peak" or ""}
      Args observe_args;  // {online count, archived ttl}
      detail::rooms::Observation obs;
    };
    B* backend;
    std::unique_ptr<Stable> st;
    enum { reading_room, reading_presence, observing } step = reading_room;

    template <class Self>
    void operator()(Self& self) {
      backend->async_exec(detail::rooms::online_script(st->keys, st->read_args),
                          std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, detail::rooms::RoomRead r) {
      using namespace detail::rooms;
      auto& [members, joined, nums] = r;
      if (!ec && (nums.size() != room_read_numbers ||
                  (!joined.empty() && joined.size() != members.size())))
        ec = Error::incompatible_size;
      if (ec) return finish(self, ec);
      auto& o = st->obs;
      std::copy(nums.begin(), nums.end(), o.room.begin());
      o.members = std::move(members);
      o.joined = std::move(joined);
      o.presence_now = o.room[now_at];
      if (o.members.empty()) return observe(self);
      step = reading_presence;
      backend->async_exec(presence_read_script(st->presence, o.members), std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::vector<std::int64_t> r) {
      auto& o = st->obs;
      if (step == observing) {
        if (!ec && r.size() != detail::rooms::peak_numbers) ec = Error::incompatible_size;
        if (!ec) o.peak = std::move(r);
        return finish(self, ec);
      }
      if (!ec && r.size() != o.members.size() + 1) ec = Error::incompatible_size;
      if (ec) return finish(self, ec);
      o.presence_now = r[0];
      o.expiry.assign(r.begin() + 1, r.end());
      observe(self);
    }

    // Records the online count when it is news (the first observation, a change, a new peak)
    // in a room that exists; else the statistics read in the first step are the answer.
    template <class Self>
    void observe(Self& self) {
      using namespace detail::rooms;
      auto& o = st->obs;
      o.count_online();
      auto const& n = o.room;
      if (n[exists_at] == 1 && news(n, o.online)) {
        step = observing;
        st->observe_args[0] = std::to_string(o.online);
        return backend->async_exec(observe_script(st->keys, st->observe_args), std::move(self));
      }
      o.peak = stored_peak(n);
      finish(self, {});
    }

    template <class Self>
    void finish(Self& self, error_code ec) {
      detail::rooms::Observation o = ec ? detail::rooms::Observation{} : std::move(st->obs);
      self.complete(ec, std::move(o));
    }
  };

  // The online operations: one script (plain layout) or ObserveOp (clustered), whose
  // Observation `map(ec, observation)` turns into the result.
  enum class Reading { members, joined, peak };  // what the result needs beyond the members

  template <class Sig, class Token, class Map>
  auto observe(Token& token, std::string_view room_id, Reading reading, Map map) {
    auto st = std::make_unique<typename ObserveOp::Stable>();
    bool const bad = !options_valid_ || room_id.empty();
    if (!bad) {
      st->keys = room_keys(room_id);
      st->presence = {presence_key_};
      st->read_args = {reading == Reading::joined ? "joined"
                       : reading == Reading::peak ? "peak"
                                                  : ""};
      st->observe_args = {"", archived_ttl_};
    }
    return detail::initiate<Sig>(
        std::forward<Token>(token), [b = backend_, bad, split = clustered_, st = std::move(st),
                map = std::move(map)](auto handler) mutable {
          using detail::rooms::Observation;
          if (bad)
            return detail::post_handler(b->get_executor(), std::move(handler),
                                        error_code(Error::invalid_argument),
                                        typename detail::rooms::ResultOf<Sig>::type{});
          if (split)
            return detail::erased_compose<void(error_code, Observation)>(
                detail::then(std::move(handler), std::move(map)), ObserveOp{b, std::move(st)},
                b->get_executor());
          st->keys.push_back(st->presence[0]);
          st->observe_args[0] = st->read_args[0];  // ARGV: mode, archived ttl
          b->async_exec(detail::rooms::online_script(st->keys, st->observe_args),
                        detail::then(std::move(handler),
                                     [map = std::move(map)](error_code& ec,
                                                            detail::rooms::RoomRead r) mutable {
                                       return map(ec, detail::rooms::observation_of(ec, std::move(r)));
                                     }));
        });
  }

  B* backend_;
  RoomOptions opt_;
  bool clustered_;
  KeySpace info_, users_, user_rooms_, roles_, activity_, stats_;
  std::string presence_key_;                   // "presence:online", "{presence}:online"
  std::string ttl_, idle_ttl_, archived_ttl_;  // milliseconds, as script arguments
  bool options_valid_;
};

}  // namespace rediskit
