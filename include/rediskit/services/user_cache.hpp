// rediskit::UserCache<Backend, Codec, TtlPolicy>: seed 001's shared profile cache
// (UserCache.set / get / batchGet / invalidate / getStats) with cache-aside loading, on any
// Backend, in the key layout the seed's Node services use, so both read each other's profiles.
//
//   rediskit::UserCache<rediskit::RedisBackend> users(redis);          // TTL 7 days (+ jitter)
//   rediskit::UserProfile p("42", "Jean Dupont", "https://cdn/42.jpg", "MAT001", "MINFOP", "M",
//                           1736862000000);
//   co_await users.async_set(p);                 // ignored if the stored updatedAt is newer
//   std::optional<rediskit::UserProfile> q = co_await users.async_get("42");
//   rediskit::UserBatch<rediskit::UserProfile> b = co_await users.async_batch_get(ids);
//   // b.profiles[i] for ids[i] (nullopt: not cached), b.missing: the distinct ids not cached
//   auto r = co_await users.async_batch_get_or_load(ids, fetch_from_auth_service);
//   rediskit::UserCacheStats s = co_await users.async_get_stats();  // totalCached, ttl, ...
//
// Keys (<p>: options.key_prefix, "user:profile" by default; <id>: a user id as given):
//
//   key                  type  what
//   <p>:<id>             hash  fullName, avatar, matricule, ministere, sexe, updatedAt (epoch
//                              ms as decimal text): one field per described member of the
//                              profile struct (seed 001's layout), TTL options.ttl (7 days)
//                              stretched by the TtlPolicy (JitteredTtl: up to +10 %)
//   <p>~index            zset  <id> -> the unix ms at which its hash expires: the O(1)-ish
//                              source of total_cached (ZCOUNT now..+inf, O(log N))
//
// The index name has `~` where the profiles have `:`, so `SCAN MATCH user:profile:*` (the
// seed's monitoring) never lists it. Both layouts use these names. Plain layout (one node,
// Sentinel; the default but on ClusterBackend): every write is one script that checks the
// version, replaces the hash, sets its TTL and updates the index, atomically, so total_cached
// is exact for what rediskit writes. Clustered layout (ClusterBackend's default, or
// options.key_layout): the profiles stay in their own slots (a cache spreads over every
// master) and the index, in one slot, is updated by a second command of the same round trip;
// a write ignored as stale then still refreshes its id's index entry (the count stays right:
// the id is cached, by the newer write), and a crash between the two commands can leave the
// count one off until that entry's expiry.
//
// Many writes at once (async_set_many, async_apply_many, the loaders' write-backs): in the plain
// layout one bulk script call per 100 profiles (the same checks, per profile, atomically per
// call), all in one round trip; in the clustered layout one script per profile plus its index
// update, in one round trip.
//
// total_cached accuracy: it counts the ids whose index entry has not expired. Entries expire
// with their hashes (same TTL, taken in the same script), so TTL expiry needs no scan and no
// sweeper. It over-counts profiles deleted by someone else (a Node service's DEL, an eviction
// under maxmemory) until their TTL passes, and does not count hashes written by other clients
// (a Node UserCache.set). Each write prunes the index's expired entries.
//
// Versions ("an update never goes backwards"): the profile's `updatedAt` member (the name is
// options.version_field; a profile without it is always written) is compared, inside the
// script, with the stored hash's: a write with an older updatedAt changes nothing
// (async_set returns SetOutcome::stale). An equal one is written (replays are idempotent).
// async_apply_event's merges and versioned deletes (the stream consumer's) follow the same rule.
// A profile deleted and then written by a late, older update is written again: a delete
// leaves no tombstone (the loaders' and events' updatedAt keep the newest anyway).
//
// Batch reads: one HGETALL per distinct non-empty id, all in one round trip (on a cluster,
// ClusterBackend pipelines each master's part at once), answers in the order of `ids`.
// Duplicated ids are read once and answered at each position; empty ids are answered nullopt
// and listed in `missing` without being sent.
//
// Cache-aside. async_get_or_load(id, loader) and async_batch_get_or_load(ids, batch_loader):
// on a miss the loader is called for the missing ids only, and concurrent calls in this
// process share one flight per id (a call that finds an id already being loaded waits for
// that load instead of loading it again; stats().coalesced counts them). The loader returns a
// profile, std::optional of one, a vector of profiles (batch: matched by their `id` member), or
// an unordered_map id -> profile, or a boost::asio::awaitable of any of these. What it returns
// is written back (versioned, as async_set) in one round trip; the callers get it even when
// the write-back was stale. A loader that throws completes its callers with
// Error::load_failed.
//
// Lifetime and threads. The cache (and its backend) must outlive its operations. Operations
// run as coroutines on the backend's executor: start them from the thread that runs it (or
// its strand); the single-flight table is not locked. Completions go through the handler's
// executor, never inside the initiating call.
//
// Near cache (options.near, off by default; RedisBackend and ClusterBackend): a bounded
// in-process copy of the decoded profiles, invalidated by the server's CLIENT TRACKING pushes
// on every write to `<p>:` by any client; see rediskit/near_cache.hpp. get, batch get and the
// loaders read it first; this cache's own writes and deletes drop their keys from it at once.
//
// Errors: backend errors pass through; an empty id: Error::invalid_argument, nothing written;
// a stored hash that does not decode counts as a miss (stats().decode_errors), and get_or_load
// reloads it.
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/codec/hash_codec.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/concepts/ttl_policy.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/spawn.hpp>
#include <rediskit/detail/to_int.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/near_cache.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace rediskit {

/// Seed 001's profile. `id` is the key's (it is not a hash field: not described).
struct UserProfile {
  std::string id;
  std::string fullName;
  std::string avatar;
  std::string matricule;
  std::string ministere;
  std::string sexe;
  std::int64_t updatedAt = 0;  ///< epoch ms

  UserProfile() = default;
  // A constructor (not only an aggregate): g++ 12 double-frees braced temporaries that own
  // memory inside co_await expressions (PITFALLS.md).
  UserProfile(std::string id_, std::string full_name, std::string avatar_, std::string matricule_,
              std::string ministere_, std::string sexe_, std::int64_t updated_at)
      : id(std::move(id_)),
        fullName(std::move(full_name)),
        avatar(std::move(avatar_)),
        matricule(std::move(matricule_)),
        ministere(std::move(ministere_)),
        sexe(std::move(sexe_)),
        updatedAt(updated_at) {}
  friend bool operator==(UserProfile const&, UserProfile const&) = default;
};
BOOST_DESCRIBE_STRUCT(UserProfile, (), (fullName, avatar, matricule, ministere, sexe, updatedAt))

/// HashCodec for profiles of type T: UserCache<B, HashCodecOf<MyProfile>>. A codec of
/// UserCache has `value_type`, `encode(T const&, HashCodec::Fields&)` and
/// `decode(HashCodec::Fields const&, T&, std::string* why) -> error_code`.
template <class T>
struct HashCodecOf : HashCodec {
  using value_type = T;
};

/// UserCache's options; the defaults are seed 001's.
struct UserCacheOptions {
  std::string key_prefix = "user:profile";                       ///< profiles at <p>:<id>
  std::chrono::milliseconds ttl = std::chrono::hours(24 * 7);    ///< seed 001: 604 800 s
  std::string version_field = "updatedAt";  ///< empty: no version check
  std::optional<KeyLayout> key_layout{};    ///< nullopt: default_key_layout_v<B>
  /// An in-process copy of hot profiles, kept by CLIENT TRACKING (rediskit/near_cache.hpp);
  /// max_entries 0 (the default): none.
  NearCacheOptions near{};
};

/// Seed 001's getStats() ({totalCached, ttl, ttlHours}) and this process's hit counters.
struct UserCacheStats {
  std::int64_t total_cached = 0;  ///< live index entries (see the top of user_cache.hpp)
  std::int64_t ttl = 0;           ///< seconds (options.ttl, before jitter)
  std::int64_t ttl_hours = 0;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t writes = 0;          ///< profiles written
  std::uint64_t stale_writes = 0;    ///< writes ignored: an equal-or-newer profile was stored
  std::uint64_t loads = 0;           ///< loader calls
  std::uint64_t coalesced = 0;       ///< ids served by another call's flight
  std::uint64_t decode_errors = 0;
  NearCacheStats near{};             ///< the near cache's (all 0 when it is off)
};
BOOST_DESCRIBE_STRUCT(UserCacheStats, (),
                      (total_cached, ttl, ttl_hours, hits, misses, writes, stale_writes, loads,
                       coalesced, decode_errors, near))

/// What async_batch_get gives: one entry per requested id, in order, and the distinct ids not
/// cached (empty ids included once), in the order of their first request.
template <class T>
struct UserBatch {
  std::vector<std::optional<T>> profiles;
  std::vector<std::string> missing;
};

/// What a versioned write did.
enum class SetOutcome : std::uint8_t {
  stale = 0,    ///< ignored: the stored profile's updatedAt is newer
  written = 1,  ///< written (or deleted, for a versioned delete)
  absent = 2,   ///< a merge that found no profile to merge into (create_missing off)
};

/// One update of a profile event (the stream consumer's): fields to merge, or a deletion.
struct ProfileUpdate {
  std::string id;
  std::vector<std::pair<std::string, std::string>> fields;  ///< merged into the hash
  std::int64_t updated_at = 0;  ///< compared with the stored version (0: no check)
  bool remove = false;          ///< a versioned delete instead
  bool create_missing = false;  ///< write the fields even when no profile is cached
  ProfileUpdate() = default;
  ProfileUpdate(std::string i, std::vector<std::pair<std::string, std::string>> f,
                std::int64_t at, bool rm = false, bool create = false)
      : id(std::move(i)), fields(std::move(f)), updated_at(at), remove(rm), create_missing(create) {}
};

namespace detail::user {

using boost::system::error_code;

// The coroutine plumbing: rediskit/detail/spawn.hpp.
using detail::fail;
using detail::Outcome;
using detail::spawn;
using detail::to_error;
using detail::tuple_awaitable;

// --- the profile script ----------------------------------------------------------------------
//
// KEYS[1] the profile hash; KEYS[2] (plain layout) the index.
// ARGV: mode ("set": replace the hash, "merge": HSET into it, "del": delete it), version field
// ('' : no check), version, ttl ms (0: none), id, create_missing ("1"/"0"), then field/value
// pairs. Returns 0 stale, 1 done, 2 absent (a merge found no hash and may not create one).

inline std::int64_t profile_write_twin(ScriptContext auto& ctx) {
  auto keys = ctx.keys();
  auto a = ctx.args();
  std::string_view const mode = a[0];
  bool exists = false;  // known to exist: it has the version field
  if (!a[1].empty()) {
    if (auto cur = ctx.call(cmd::hget{.key = keys[0], .field = a[1]})) {
      exists = true;
      std::int64_t c = 0, n = 0;
      auto const rc = std::from_chars(cur->data(), cur->data() + cur->size(), c);
      auto const rn = std::from_chars(a[2].data(), a[2].data() + a[2].size(), n);
      if (rc.ec == std::errc{} && rn.ec == std::errc{} && n < c) return 0;
    }
  }
  std::int64_t const ttl = to_int(a[3]);
  if (mode == "del") {
    ctx.call(cmd::del{.keys = keys[0]});
    if (keys.size() > 1) ctx.call(cmd::zrem{.key = keys[1], .members = a[4]});
    return 1;
  }
  if (mode == "merge" && a[5] != "1" && !exists && ctx.call(cmd::exists{.keys = keys[0]}) == 0)
    return 2;
  if (mode == "set") ctx.call(cmd::del{.keys = keys[0]});
  std::vector<FieldValue> fv;
  for (std::size_t i = 6; i + 1 < a.size(); i += 2) fv.push_back({a[i], a[i + 1]});
  if (!fv.empty()) ctx.call(cmd::hset{.key = keys[0], .fields = fv});
  if (ttl > 0) ctx.call(cmd::pexpire{.key = keys[0], .ttl = std::chrono::milliseconds(ttl)});
  if (keys.size() > 1) {
    std::int64_t const now = ctx.unix_ms();
    ctx.call(cmd::zremrangebyscore{.key = keys[1], .max = ScoreBound::excl(double(now))});
    double const score = ttl > 0 ? double(now + ttl) : ScoreBound::pos_inf().value;
    ctx.call(cmd::zadd{.key = keys[1], .members = ScoreMember{score, a[4]}});
  }
  return 1;
}

inline auto const profile_write = make_script<std::int64_t>(R"lua(
local exists = false
if ARGV[2] ~= '' then
  local raw = redis.call('HGET', KEYS[1], ARGV[2])
  if raw then
    exists = true
    local cur = tonumber(raw)
    local new = tonumber(ARGV[3])
    if cur and new and new < cur then return 0 end
  end
end
local ttl = tonumber(ARGV[4])
if ARGV[1] == 'del' then
  redis.call('DEL', KEYS[1])
  if KEYS[2] then redis.call('ZREM', KEYS[2], ARGV[5]) end
  return 1
end
if ARGV[1] == 'merge' and ARGV[6] ~= '1' and not exists and redis.call('EXISTS', KEYS[1]) == 0 then
  return 2
end
if ARGV[1] == 'set' then redis.call('DEL', KEYS[1]) end
if #ARGV >= 8 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)) end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
if KEYS[2] then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
  if ttl > 0 then
    redis.call('ZADD', KEYS[2], now + ttl, ARGV[5])
  else
    redis.call('ZADD', KEYS[2], '+inf', ARGV[5])
  end
end
return 1
)lua",
                                                          [](ScriptContext auto& c) {
                                                            return profile_write_twin(c);
                                                          });

// The plain layout's bulk form: many profile writes in one call (the prewarmer's, the consumer's
// and the loaders' batches). KEYS[1] the index, KEYS[2..] the hashes; ARGV per hash: mode,
// version field, version, ttl ms, id, create_missing, n, then n field/value pairs. Returns one
// outcome per hash (as profile_write's). One TIME, one prune of the index and one ZADD of
// every written id per call (a later delete of an id in the same call takes it out of that
// ZADD).
inline std::vector<std::int64_t> profiles_write_twin(ScriptContext auto& ctx) {
  auto keys = ctx.keys();
  auto a = ctx.args();
  std::int64_t const now = ctx.unix_ms();
  ctx.call(cmd::zremrangebyscore{.key = keys[0], .max = ScoreBound::excl(double(now))});
  std::vector<std::int64_t> out;
  std::map<std::string, double, std::less<>> index;  // id -> expiry, ZADDed at the end
  std::size_t at = 0;
  for (std::size_t k = 1; k < keys.size(); ++k) {
    auto const key = keys[k];
    std::string_view const mode = a[at], vf = a[at + 1], ver = a[at + 2], id = a[at + 4],
                           create = a[at + 5];
    std::int64_t const ttl = to_int(a[at + 3]);
    std::size_t const nf = static_cast<std::size_t>(to_int(a[at + 6]));
    std::size_t const first = at + 7;
    at = first + 2 * nf;
    std::int64_t res = 1;
    bool exists = false;  // known to exist: it has the version field
    if (!vf.empty()) {
      if (auto cur = ctx.call(cmd::hget{.key = key, .field = vf})) {
        exists = true;
        std::int64_t c = 0, n = 0;
        auto const rc = std::from_chars(cur->data(), cur->data() + cur->size(), c);
        auto const rn = std::from_chars(ver.data(), ver.data() + ver.size(), n);
        if (rc.ec == std::errc{} && rn.ec == std::errc{} && n < c) res = 0;
      }
    }
    if (res == 1) {
      if (mode == "del") {
        ctx.call(cmd::del{.keys = key});
        ctx.call(cmd::zrem{.key = keys[0], .members = id});
        if (auto it = index.find(id); it != index.end()) index.erase(it);
      } else if (mode == "merge" && create != "1" && !exists &&
                 ctx.call(cmd::exists{.keys = key}) == 0) {
        res = 2;
      } else {
        if (mode == "set") ctx.call(cmd::del{.keys = key});
        std::vector<FieldValue> fv;
        for (std::size_t i = first; i + 1 < at; i += 2) fv.push_back({a[i], a[i + 1]});
        if (!fv.empty()) ctx.call(cmd::hset{.key = key, .fields = fv});
        if (ttl > 0) ctx.call(cmd::pexpire{.key = key, .ttl = std::chrono::milliseconds(ttl)});
        index[std::string(id)] = ttl > 0 ? double(now + ttl) : ScoreBound::pos_inf().value;
      }
    }
    out.push_back(res);
  }
  if (!index.empty()) {
    std::vector<ScoreMember> members;
    members.reserve(index.size());
    for (auto const& [id, score] : index) members.push_back(ScoreMember{score, id});
    ctx.call(cmd::zadd{.key = keys[0], .members = members});
  }
  return out;
}

inline auto const profiles_write = make_script<std::vector<std::int64_t>>(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local out = {}
local index = {}
local a = 1
for k = 2, #KEYS do
  local key = KEYS[k]
  local mode, vf, ver, id, create = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 4], ARGV[a + 5]
  local ttl = tonumber(ARGV[a + 3])
  local nf = tonumber(ARGV[a + 6])
  local first = a + 7
  a = first + 2 * nf
  local res = 1
  local exists = false
  if vf ~= '' then
    local raw = redis.call('HGET', key, vf)
    if raw then
      exists = true
      local cur = tonumber(raw)
      local new = tonumber(ver)
      if cur and new and new < cur then res = 0 end
    end
  end
  if res == 1 then
    if mode == 'del' then
      redis.call('DEL', key)
      redis.call('ZREM', KEYS[1], id)
      index[id] = nil
    elseif mode == 'merge' and create ~= '1' and not exists and redis.call('EXISTS', key) == 0 then
      res = 2
    else
      if mode == 'set' then redis.call('DEL', key) end
      if nf > 0 then redis.call('HSET', key, unpack(ARGV, first, a - 1)) end
      if ttl > 0 then
        redis.call('PEXPIRE', key, ttl)
        index[id] = now + ttl
      else
        index[id] = '+inf'
      end
    end
  end
  out[#out + 1] = res
end
local z = {}
for id, score in pairs(index) do
  z[#z + 1] = score
  z[#z + 1] = id
end
if #z > 0 then redis.call('ZADD', KEYS[1], unpack(z)) end
return out
)lua",
                                                                       [](ScriptContext auto& c) {
                                                                         return profiles_write_twin(c);
                                                                       });

// The clustered layout's index update (KEYS[1] the index; ARGV: ttl ms, id, "del" or "add").
inline std::int64_t index_update_twin(ScriptContext auto& ctx) {
  auto a = ctx.args();
  auto const idx = ctx.keys()[0];
  if (a[2] == "del") return ctx.call(cmd::zrem{.key = idx, .members = a[1]});
  std::int64_t const ttl = to_int(a[0]);
  std::int64_t const now = ctx.unix_ms();
  ctx.call(cmd::zremrangebyscore{.key = idx, .max = ScoreBound::excl(double(now))});
  double const score = ttl > 0 ? double(now + ttl) : ScoreBound::pos_inf().value;
  return ctx.call(cmd::zadd{.key = idx, .members = ScoreMember{score, a[1]}, .gt = true});
}

inline auto const index_update = make_script<std::int64_t>(R"lua(
if ARGV[3] == 'del' then return redis.call('ZREM', KEYS[1], ARGV[2]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if ttl > 0 then return redis.call('ZADD', KEYS[1], 'GT', now + ttl, ARGV[2]) end
return redis.call('ZADD', KEYS[1], 'GT', '+inf', ARGV[2])
)lua",
                                                          [](ScriptContext auto& c) {
                                                            return index_update_twin(c);
                                                          });

// KEYS[1] the index: how many entries have not expired (on the server's clock).
inline std::int64_t index_count_twin(ScriptContext auto& ctx) {
  return ctx.call(cmd::zcount{.key = ctx.keys()[0],
                              .min = ScoreBound::incl(double(ctx.unix_ms()))});
}
inline auto const index_count = make_script<std::int64_t>(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], now, '+inf')
)lua",
                                                          [](ScriptContext auto& c) {
                                                            return index_count_twin(c);
                                                          });

// --- loaders ---------------------------------------------------------------------------------

template <class X>
struct awaited {
  using type = X;
  static constexpr bool is_awaitable = false;
};
template <class X, class E>
struct awaited<boost::asio::awaitable<X, E>> {
  using type = X;
  static constexpr bool is_awaitable = true;
};

/// loader(args...) awaited if it is an awaitable; its value.
template <class F, class... A>
auto call_maybe_await(F& f, A&&... a)
    -> boost::asio::awaitable<typename awaited<std::invoke_result_t<F&, A...>>::type> {
  using R = std::invoke_result_t<F&, A...>;
  if constexpr (awaited<R>::is_awaitable)
    co_return co_await f(std::forward<A>(a)...);
  else
    co_return f(std::forward<A>(a)...);
}

template <class X>
struct is_optional : std::false_type {};
template <class X>
struct is_optional<std::optional<X>> : std::true_type {};

/// What a batch loader gave, as id -> profile.
template <class T, class R>
std::unordered_map<std::string, T> by_id(R&& r) {
  std::unordered_map<std::string, T> out;
  using V = std::remove_cvref_t<R>;
  if constexpr (requires { typename V::mapped_type; }) {
    for (auto& [k, v] : r) {
      if constexpr (is_optional<typename V::mapped_type>::value) {
        if (v) out.insert_or_assign(k, std::move(*v));
      } else {
        out.insert_or_assign(k, std::move(v));
      }
    }
  } else {
    static_assert(requires(T t) { t.id; },
                  "a batch loader returning a range of profiles needs profiles with an `id` "
                  "member (or return an unordered_map id -> profile)");
    for (auto& v : r) {
      if constexpr (is_optional<std::ranges::range_value_t<V>>::value) {
        if (v) {
          std::string k = v->id;
          out.insert_or_assign(std::move(k), std::move(*v));
        }
      } else {
        std::string k = v.id;
        out.insert_or_assign(std::move(k), std::move(v));
      }
    }
  }
  return out;
}

}  // namespace detail::user

/// See the top of this file.
template <Backend B, class C = HashCodecOf<UserProfile>, TtlPolicy P = JitteredTtl>
class UserCache {
  using error_code = boost::system::error_code;
  using ms = std::chrono::milliseconds;
  template <class X>
  using awaitable = boost::asio::awaitable<X>;

 public:
  using backend_type = B;
  using codec_type = C;
  using profile_type = typename C::value_type;
  using T = profile_type;
  using Batch = UserBatch<T>;

  explicit UserCache(B& backend, UserCacheOptions options = {}, C codec = {}, P ttl = {})
      : backend_(&backend),
        options_(std::move(options)),
        codec_(std::move(codec)),
        ttl_(std::move(ttl)),
        layout_(options_.key_layout.value_or(default_key_layout_v<B>)),
        index_(options_.key_prefix + "~index"),
        state_(std::make_shared<State>()),
        near_(backend, {options_.key_prefix + ":"}, options_.near) {}

  B& backend() const noexcept { return *backend_; }
  UserCacheOptions const& options() const noexcept { return options_; }
  KeyLayout key_layout() const noexcept { return layout_; }

  /// The hash key of `id` (`user:profile:<id>`).
  std::string key(std::string_view id) const {
    std::string k;
    k.reserve(key_size(id));
    append_key(k, id);
    return k;
  }
  /// The index key (`user:profile~index`).
  std::string const& index_key() const noexcept { return index_; }

  /// set(profile): writes the profile (its `id` member names it) unless the stored one has a
  /// newer updatedAt. Handler: void(error_code, SetOutcome) (written or stale).
  template <class Token = boost::asio::deferred_t>
  auto async_set(T const& profile, Token&& token = {}) {
    static_assert(requires { profile.id; }, "async_set(profile) needs an `id` member; use "
                                            "async_set(id, profile)");
    return async_set(std::string_view(profile.id), profile, std::forward<Token>(token));
  }
  /// set(id, profile). Handler: void(error_code, SetOutcome).
  template <class Token = boost::asio::deferred_t>
  auto async_set(std::string_view id, T const& profile, Token&& token = {}) {
    std::vector<Write> w;
    w.push_back(make_write(id, profile));
    forget(w);
    return detail::user::spawn<SetOutcome>(
        ex(), std::forward<Token>(token),
        [this, w = std::move(w)]() mutable { return set_one(std::move(w)); });
  }

  /// Writes many profiles (each versioned) in one round trip; the prewarmer's and the batch
  /// loaders' write-back. Handler: void(error_code, std::vector<SetOutcome>).
  template <class Token = boost::asio::deferred_t>
  auto async_set_many(std::vector<T> const& profiles, Token&& token = {}) {
    std::vector<Write> w;
    w.reserve(profiles.size());
    for (auto const& p : profiles) w.push_back(make_write(id_of(p), p));
    forget(w);
    return detail::user::spawn<std::vector<SetOutcome>>(
        ex(), std::forward<Token>(token),
        [this, w = std::move(w)]() mutable { return write_all(std::move(w)); });
  }

  /// Applies a stream event's update (merge or versioned delete). Handler:
  /// void(error_code, SetOutcome).
  template <class Token = boost::asio::deferred_t>
  auto async_apply(ProfileUpdate update, Token&& token = {}) {
    std::vector<Write> w;
    w.push_back(make_update(std::move(update)));
    forget(w);
    return detail::user::spawn<SetOutcome>(
        ex(), std::forward<Token>(token),
        [this, w = std::move(w)]() mutable { return set_one(std::move(w)); });
  }

  /// Applies many updates (the stream consumer's batch) in one round trip. Handler:
  /// void(error_code, std::vector<SetOutcome>).
  template <class Token = boost::asio::deferred_t>
  auto async_apply_many(std::vector<ProfileUpdate> updates, Token&& token = {}) {
    std::vector<Write> w;
    w.reserve(updates.size());
    for (auto& u : updates) w.push_back(make_update(std::move(u)));
    forget(w);
    return detail::user::spawn<std::vector<SetOutcome>>(
        ex(), std::forward<Token>(token),
        [this, w = std::move(w)]() mutable { return write_all(std::move(w)); });
  }

  /// get(id): the cached profile or nullopt. Handler: void(error_code, std::optional<T>).
  /// A near-cache hit completes without a coroutine or a round trip (posted, as always).
  template <class Token = boost::asio::deferred_t>
  auto async_get(std::string_view id, Token&& token = {}) {
    using Sig = void(error_code, std::optional<T>);
    return boost::asio::async_initiate<Token, Sig>(
        [this](auto handler, std::string id) {
          detail::AnyHandler<Sig> h(std::move(handler));
          if (near_.enabled() && !id.empty()) {
            if (T const* p = near_.find(key(id))) {
              state_->counters.hits++;
              return detail::post_handler(ex(), std::move(h), error_code{}, std::optional<T>(*p));
            }
          }
          detail::user::spawn<std::optional<T>>(
              ex(), std::move(h), [this, id = std::move(id)]() mutable {
                return get_one(std::move(id));
              });
        },
        token, std::string(id));
  }

  /// batchGet(ids): see the top of this file. Handler: void(error_code, UserBatch<T>).
  template <class Token = boost::asio::deferred_t>
  auto async_batch_get(ArgList<std::string_view> ids, Token&& token = {}) {
    return detail::user::spawn<Batch>(ex(), std::forward<Token>(token),
                                      [this, ids = to_strings(ids)]() mutable {
                                        return batch_get(std::move(ids));
                                      });
  }

  /// delete(id) (seed 001's invalidate): true when a profile was deleted; unconditional (no
  /// version). Handler: void(error_code, bool).
  template <class Token = boost::asio::deferred_t>
  auto async_delete(std::string_view id, Token&& token = {}) {
    if (near_.enabled() && !id.empty()) near_.invalidate(key(id));
    return detail::user::spawn<bool>(ex(), std::forward<Token>(token),
                                     [this, id = std::string(id)]() mutable {
                                       return delete_one(std::move(id));
                                     });
  }
  template <class Token = boost::asio::deferred_t>
  auto async_invalidate(std::string_view id, Token&& token = {}) {
    return async_delete(id, std::forward<Token>(token));
  }

  /// getStats(): {total_cached, ttl, ttl_hours, hits, misses, ...} in one round trip.
  /// Handler: void(error_code, UserCacheStats).
  template <class Token = boost::asio::deferred_t>
  auto async_get_stats(Token&& token = {}) {
    return detail::user::spawn<UserCacheStats>(ex(), std::forward<Token>(token),
                                               [this] { return get_stats(); });
  }

  /// This process's counters (total_cached left 0: that needs the round trip of
  /// async_get_stats).
  UserCacheStats stats() const noexcept {
    UserCacheStats s;
    s.ttl = std::chrono::duration_cast<std::chrono::seconds>(options_.ttl).count();
    s.ttl_hours = s.ttl / 3600;
    auto const& c = state_->counters;
    s.hits = c.hits;
    s.misses = c.misses;
    s.writes = c.writes;
    s.stale_writes = c.stale_writes;
    s.loads = c.loads;
    s.coalesced = c.coalesced;
    s.decode_errors = c.decode_errors;
    s.near = near_.stats();
    return s;
  }

  /// The near cache's counters (all 0 when it is off).
  NearCacheStats near_stats() const { return near_.stats(); }
  /// The near cache (enabled() says whether it is on).
  NearCache<T>& near_cache() noexcept { return near_; }

  /// Cache-aside: the cached profile, or loader(id)'s (then written back). The loader returns
  /// T, std::optional<T> (nullopt: nothing to cache, the caller gets nullopt) or an awaitable
  /// of either. Handler: void(error_code, std::optional<T>).
  template <class Loader, class Token = boost::asio::deferred_t>
  auto async_get_or_load(std::string_view id, Loader loader, Token&& token = {}) {
    BatchLoader batch_loader = [l = std::make_shared<Loader>(std::move(loader))](
                                   std::vector<std::string> ids) -> awaitable<Loaded> {
      return load_single(l, std::move(ids));
    };
    return detail::user::spawn<std::optional<T>>(
        ex(), std::forward<Token>(token),
        [this, id = std::string(id), bl = std::move(batch_loader)]() mutable {
          return get_or_load_one(std::move(id), std::move(bl));
        });
  }

  /// Cache-aside for many ids: one read, then batch_loader(missing ids) once for the ids no
  /// other call is loading, one write-back. The batch loader takes std::vector<std::string>
  /// and returns a vector of profiles (matched by `id`), an unordered_map id -> profile, or an
  /// awaitable of either; ids it does not return stay nullopt (and in `missing`). Handler:
  /// void(error_code, UserBatch<T>).
  template <class Loader, class Token = boost::asio::deferred_t>
  auto async_batch_get_or_load(ArgList<std::string_view> ids, Loader loader, Token&& token = {}) {
    BatchLoader batch_loader = [l = std::make_shared<Loader>(std::move(loader))](
                                   std::vector<std::string> ids) -> awaitable<Loaded> {
      return load_many(l, std::move(ids));
    };
    return detail::user::spawn<Batch>(
        ex(), std::forward<Token>(token),
        [this, ids = to_strings(ids), bl = std::move(batch_loader)]() mutable {
          return batch_get_or_load(std::move(ids), std::move(bl));
        });
  }

 private:
  using Loaded = std::unordered_map<std::string, T>;
  using BatchLoader = std::function<awaitable<Loaded>(std::vector<std::string>)>;

  struct Counters {
    std::uint64_t hits = 0, misses = 0, writes = 0, stale_writes = 0, loads = 0, coalesced = 0,
                  decode_errors = 0;
  };
  struct Flight {
    explicit Flight(boost::asio::any_io_executor const& e)
        : done_signal(e, std::chrono::steady_clock::time_point::max()) {}
    boost::asio::steady_timer done_signal;  // cancelled when the load completes
    bool done = false;
    error_code ec;
    std::optional<T> value;
  };
  struct State {
    Counters counters;
    std::unordered_map<std::string, std::shared_ptr<Flight>> flights;
  };

  // One write of the profile script: its keys and args, owned.
  struct Write {
    std::string key;
    std::string id;
    std::vector<std::string> args;
    bool bad = false;
  };

  boost::asio::any_io_executor ex() const { return backend_->get_executor(); }
  bool clustered() const noexcept { return layout_ == KeyLayout::clustered; }

  static std::vector<std::string> to_strings(ArgList<std::string_view> ids) {
    std::vector<std::string> out;
    out.reserve(ids.size());
    ids.for_each([&](std::string_view s) { out.emplace_back(s); });
    return out;
  }

  static std::string_view id_of(T const& p) {
    if constexpr (requires { p.id; })
      return p.id;
    else
      return {};
  }
  static void set_id(T& p, std::string const& id) {
    if constexpr (requires { p.id = id; }) p.id = id;
  }

  std::int64_t ttl_ms() const {
    auto t = ttl_.write_ttl(options_.ttl);
    return t ? t->count() : 0;
  }

  Write make_write(std::string_view id, T const& profile) const {
    HashCodec::Fields fields;
    codec_.encode(profile, fields);
    std::string version;
    for (auto const& f : fields)
      if (f.first == options_.version_field) version = f.second;
    Write w;
    w.bad = id.empty();
    w.key = key(id);
    w.id = id;
    w.args = {"set", version.empty() ? std::string() : options_.version_field, version,
              std::to_string(ttl_ms()), std::string(id), "1"};
    for (auto& f : fields) {
      w.args.push_back(std::move(f.first));
      w.args.push_back(std::move(f.second));
    }
    return w;
  }

  // This process's writes drop their keys from the near cache when they are called, and mark
  // the reads in flight; the server's push follows.
  void forget(std::vector<Write> const& writes) {
    if (near_.enabled())
      for (auto const& w : writes) near_.invalidate(w.key);
  }

  Write make_update(ProfileUpdate u) const {
    Write w;
    w.bad = u.id.empty();
    w.key = key(u.id);
    w.id = u.id;
    bool const versioned = u.updated_at > 0 && !options_.version_field.empty();
    w.args = {u.remove ? "del" : "merge", versioned ? options_.version_field : std::string(),
              std::to_string(u.updated_at), std::to_string(ttl_ms()), u.id,
              u.create_missing ? "1" : "0"};
    for (auto& f : u.fields) {
      w.args.push_back(std::move(f.first));
      w.args.push_back(std::move(f.second));
    }
    if (versioned && !u.remove) {
      w.args.push_back(options_.version_field);
      w.args.push_back(std::to_string(u.updated_at));
    }
    return w;
  }

  // Every write (set, merge, versioned delete, many) is this one batch type: the profile
  // scripts, then (clustered layout) the index updates.
  awaitable<std::vector<SetOutcome>> write_all(std::vector<Write> writes) {
    for (auto const& w : writes)
      if (w.bad) detail::user::fail(Error::invalid_argument, "empty user id");
    forget(writes);  // again: a read may have begun since the call
    std::vector<SetOutcome> out;
    if (writes.empty()) co_return out;
    if (!clustered() && writes.size() > 1) co_return co_await write_bulk(std::move(writes));
    using Arg = std::vector<std::string_view>;
    std::vector<Arg> args(writes.size());
    std::vector<std::array<std::string_view, 2>> keys(writes.size());
    std::vector<std::array<std::string_view, 3>> idx_args(writes.size());
    std::vector<decltype(detail::user::profile_write())> scripts;
    std::vector<decltype(detail::user::index_update())> idx;
    scripts.reserve(writes.size());
    for (std::size_t i = 0; i < writes.size(); ++i) {
      auto const& w = writes[i];
      args[i].assign(w.args.begin(), w.args.end());
      keys[i] = {w.key, index_};
      std::size_t const nkeys = clustered() ? 1 : 2;
      scripts.push_back(detail::user::profile_write(
          std::span<std::string_view const>(keys[i].data(), nkeys), args[i]));
      if (clustered()) {
        idx_args[i] = {w.args[3], w.args[4], w.args[0] == "del" ? "del" : "add"};
        idx.push_back(detail::user::index_update(index_, idx_args[i]));
      }
    }
    auto r = co_await backend_->async_exec(batch(scripts, idx), boost::asio::use_awaitable);
    auto& results = std::get<0>(r);
    out.reserve(results.size());
    for (auto n : results) {
      auto const o = static_cast<SetOutcome>(n);
      if (o == SetOutcome::written)
        state_->counters.writes++;
      else if (o == SetOutcome::stale)
        state_->counters.stale_writes++;
      out.push_back(o);
    }
    co_return out;
  }

  void count(SetOutcome o) {
    if (o == SetOutcome::written)
      state_->counters.writes++;
    else if (o == SetOutcome::stale)
      state_->counters.stale_writes++;
  }

  // The plain layout's many writes: one profiles_write call per `bulk_chunk` profiles, all in
  // one round trip. The profiles of one call share one TTL (one draw of the TtlPolicy): their
  // index entries then share one score, and go into the sorted set as a group, which costs the
  // server about half of what 100 scattered scores cost (benchmarks/README.md). JitteredTtl
  // still spreads a large batch's expiries, call by call.
  static constexpr std::size_t bulk_chunk = 100;
  awaitable<std::vector<SetOutcome>> write_bulk(std::vector<Write> writes) {
    std::size_t const calls = (writes.size() + bulk_chunk - 1) / bulk_chunk;
    std::vector<std::vector<std::string_view>> keys(calls), args(calls);
    std::vector<std::string> counts(writes.size()), ttls(calls);
    std::vector<decltype(detail::user::profiles_write())> scripts;
    scripts.reserve(calls);
    for (std::size_t c = 0; c < calls; ++c) {
      keys[c].push_back(index_);
      ttls[c] = std::to_string(ttl_ms());
      for (std::size_t i = c * bulk_chunk; i < std::min(writes.size(), (c + 1) * bulk_chunk); ++i) {
        auto const& w = writes[i];
        keys[c].push_back(w.key);
        // w.args: mode, vfield, version, ttl, id, create, then the pairs.
        for (std::size_t j = 0; j < 6; ++j) args[c].push_back(j == 3 ? ttls[c] : w.args[j]);
        counts[i] = std::to_string((w.args.size() - 6) / 2);
        args[c].push_back(counts[i]);
        for (std::size_t j = 6; j < w.args.size(); ++j) args[c].push_back(w.args[j]);
      }
      scripts.push_back(detail::user::profiles_write(keys[c], args[c]));
    }
    auto replies = co_await backend_->async_exec(scripts, boost::asio::use_awaitable);
    std::vector<SetOutcome> out;
    out.reserve(writes.size());
    for (auto const& r : replies)
      for (auto n : r) {
        out.push_back(static_cast<SetOutcome>(n));
        count(out.back());
      }
    co_return out;
  }

  awaitable<SetOutcome> set_one(std::vector<Write> w) {
    auto r = co_await write_all(std::move(w));
    co_return r.at(0);
  }

  std::optional<T> decode(HashCodec::Fields const& fields, std::string const& id) {
    if (fields.empty()) {
      state_->counters.misses++;
      return std::nullopt;
    }
    T p{};
    if (codec_.decode(fields, p, nullptr)) {
      state_->counters.decode_errors++;
      state_->counters.misses++;
      return std::nullopt;
    }
    set_id(p, id);
    state_->counters.hits++;
    return p;
  }

  awaitable<std::optional<T>> get_one(std::string id) {
    if (id.empty()) detail::user::fail(Error::invalid_argument, "empty user id");
    std::string const k = key(id);
    auto fill = near_.begin(k);
    auto fields = co_await backend_->async_exec(cmd::hgetall{.key = k}, boost::asio::use_awaitable);
    auto p = decode(fields, id);
    if (p) fill.keep(*p, encoded_size(fields));
    co_return p;
  }

  // The hash key of `id`, appended to `out` (key() and the batch's key buffer).
  std::size_t key_size(std::string_view id) const noexcept {
    return options_.key_prefix.size() + 1 + id.size();
  }
  void append_key(std::string& out, std::string_view id) const {
    out.append(options_.key_prefix).append(":").append(id);
  }

  static std::size_t encoded_size(HashCodec::Fields const& fields) noexcept {
    std::size_t n = 0;
    for (auto const& [f, v] : fields) n += f.size() + v.size();
    return n;
  }

  awaitable<Batch> batch_get(std::vector<std::string> ids) {
    Batch out;
    out.profiles.resize(ids.size());
    // Each distinct non-empty id is read once, into the position where it first appears;
    // `first[i]` names that position for a repeated id (SIZE_MAX otherwise). Sorting the
    // positions finds the repeats with no allocation per id (a hash map took one each).
    std::vector<std::size_t> first(ids.size(), SIZE_MAX);
    {
      std::vector<std::size_t> order;
      order.reserve(ids.size());
      for (std::size_t i = 0; i < ids.size(); ++i)
        if (!ids[i].empty()) order.push_back(i);
      std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        int const c = ids[a].compare(ids[b]);
        return c != 0 ? c < 0 : a < b;
      });
      for (std::size_t k = 1; k < order.size(); ++k)
        if (ids[order[k]] == ids[order[k - 1]])
          first[order[k]] = first[order[k - 1]] == SIZE_MAX ? order[k - 1] : first[order[k - 1]];
    }
    auto const read_here = [&](std::size_t i) { return !ids[i].empty() && first[i] == SIZE_MAX; };
    // The keys, in one buffer.
    std::string keybuf;
    std::vector<std::string_view> keys(ids.size());
    {
      std::size_t bytes = 0;
      for (std::size_t i = 0; i < ids.size(); ++i)
        if (read_here(i)) bytes += key_size(ids[i]);
      keybuf.reserve(bytes);  // no reallocation below: the views stay valid
      for (std::size_t i = 0; i < ids.size(); ++i) {
        if (!read_here(i)) continue;
        auto const at = keybuf.size();
        append_key(keybuf, ids[i]);
        keys[i] = std::string_view(keybuf).substr(at);
      }
    }
    // The near cache first; what it lacks goes to the backend in one round trip.
    std::vector<std::size_t> asked;  // positions read from the backend, in order
    std::vector<typename NearCache<T>::Fill> fills;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (!read_here(i)) continue;
      if (near_.enabled()) {
        if (T const* p = near_.find(keys[i])) {
          out.profiles[i] = *p;
          state_->counters.hits++;
          continue;
        }
        fills.push_back(near_.begin(keys[i]));
      }
      asked.push_back(i);
    }
    if (!asked.empty()) {
      std::vector<cmd::hgetall> reads;
      reads.reserve(asked.size());
      for (auto i : asked)
        reads.push_back(cmd::hgetall{.key = keys[i]});
      auto replies = co_await backend_->async_exec(reads, boost::asio::use_awaitable);
      for (std::size_t r = 0; r < asked.size(); ++r) {
        auto const i = asked[r];
        out.profiles[i] = decode(replies[r], ids[i]);
        if (out.profiles[i] && !fills.empty())
          fills[r].keep(*out.profiles[i], encoded_size(replies[r]));
      }
    }
    bool empty_seen = false;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (ids[i].empty()) {
        if (!empty_seen) out.missing.emplace_back();
        empty_seen = true;
      } else if (first[i] != SIZE_MAX) {
        out.profiles[i] = out.profiles[first[i]];
      } else if (!out.profiles[i]) {
        out.missing.push_back(ids[i]);
      }
    }
    co_return out;
  }

  awaitable<bool> delete_one(std::string id) {
    if (id.empty()) detail::user::fail(Error::invalid_argument, "empty user id");
    std::string const k = key(id);
    near_.invalidate(k);
    auto r = co_await backend_->async_exec(
        batch(cmd::del{.keys = k}, cmd::zrem{.key = index_, .members = id}),
        boost::asio::use_awaitable);
    co_return std::get<0>(r) > 0;
  }

  awaitable<UserCacheStats> get_stats() {
    auto n = co_await backend_->async_exec(detail::user::index_count(index_),
                                           boost::asio::use_awaitable);
    UserCacheStats s = stats();
    s.total_cached = n;
    co_return s;
  }

  // --- cache-aside -------------------------------------------------------------------------

  template <class Loader>
  static awaitable<Loaded> load_single(std::shared_ptr<Loader> l, std::vector<std::string> ids) {
    Loaded out;
    std::string const& id = ids.at(0);
    using R = typename detail::user::awaited<
        std::invoke_result_t<Loader&, std::string const&>>::type;
    R r = co_await detail::user::call_maybe_await(*l, id);
    if constexpr (detail::user::is_optional<R>::value) {
      if (r) out.emplace(id, std::move(*r));
    } else {
      out.emplace(id, std::move(r));
    }
    co_return out;
  }

  template <class Loader>
  static awaitable<Loaded> load_many(std::shared_ptr<Loader> l, std::vector<std::string> ids) {
    auto r = co_await detail::user::call_maybe_await(*l, std::move(ids));
    co_return detail::user::by_id<T>(std::move(r));
  }

  awaitable<std::optional<T>> get_or_load_one(std::string id, BatchLoader loader) {
    if (id.empty()) detail::user::fail(Error::invalid_argument, "empty user id");
    std::vector<std::string> ids{id};
    Batch b = co_await batch_get_or_load(std::move(ids), std::move(loader));
    co_return std::move(b.profiles.at(0));
  }

  awaitable<Batch> batch_get_or_load(std::vector<std::string> ids, BatchLoader loader) {
    Batch out = co_await batch_get(ids);
    if (out.missing.empty()) co_return out;
    // The missing ids: joined to a flight in progress, or led by this call.
    std::vector<std::string> lead;
    std::vector<std::pair<std::string, std::shared_ptr<Flight>>> joined, led;
    for (auto const& id : out.missing) {
      if (id.empty()) continue;
      auto [it, fresh] = state_->flights.try_emplace(id);
      if (fresh) {
        it->second = std::make_shared<Flight>(ex());
        lead.push_back(id);
        led.emplace_back(id, it->second);
      } else {
        state_->counters.coalesced++;
        joined.emplace_back(id, it->second);
      }
    }
    std::unordered_map<std::string, std::optional<T>> got;
    error_code failure;
    if (!lead.empty()) {
      Loaded loaded;
      std::exception_ptr thrown;
      state_->counters.loads++;
      try {
        loaded = co_await loader(lead);
      } catch (...) {
        thrown = std::current_exception();
      }
      if (!thrown) {
        std::vector<Write> writes;
        std::unordered_set<std::string_view> asked(lead.begin(), lead.end());
        for (auto& [id, p] : loaded) {
          if (!asked.contains(id)) continue;  // not asked for
          set_id(p, id);
          writes.push_back(make_write(id, p));
        }
        try {
          if (!writes.empty()) (void)co_await write_all(std::move(writes));
        } catch (...) {
          thrown = std::current_exception();
        }
      }
      if (thrown) {
        auto ec = detail::user::to_error(thrown);
        if (ec == make_error_code(Error::operation_threw)) ec = make_error_code(Error::load_failed);
        failure = ec;
      }
      for (auto& [id, f] : led) {
        f->done = true;
        f->ec = failure;
        if (!failure) {
          if (auto it = loaded.find(id); it != loaded.end()) f->value = it->second;
        }
        got[id] = f->value;
        state_->flights.erase(id);
        f->done_signal.cancel();
      }
    }
    for (auto& [id, f] : joined) {
      if (!f->done) (void)co_await f->done_signal.async_wait(detail::user::tuple_awaitable);
      if (f->ec && !failure) failure = f->ec;
      got[id] = f->value;
    }
    if (failure) throw boost::system::system_error(failure);
    // Fill the positions in order; `missing` keeps what is still missing.
    std::vector<std::string> still;
    for (auto const& id : out.missing) {
      auto it = got.find(id);
      if (id.empty() || it == got.end() || !it->second) still.push_back(id);
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (out.profiles[i] || ids[i].empty()) continue;
      if (auto it = got.find(ids[i]); it != got.end() && it->second) {
        out.profiles[i] = *it->second;
        set_id(*out.profiles[i], ids[i]);
      }
    }
    out.missing = std::move(still);
    co_return out;
  }

  B* backend_;
  UserCacheOptions options_;
  C codec_;
  P ttl_;
  KeyLayout layout_;
  std::string index_;
  std::shared_ptr<State> state_;
  // Off unless options.near.max_entries (and a Redis or cluster backend).
  NearCache<T> near_;
};

}  // namespace rediskit
