// rediskit::SessionStore<Backend, Codec>: login sessions with access and refresh tokens (seed
// 002's "Sessions utilisateurs": session:{accessToken} 7 days, refresh:{refreshToken} 30 days,
// user:sessions:{userId}), with refresh-token rotation and reuse detection.
//
//   rediskit::SessionStore<rediskit::RedisBackend> sessions(redis);
//   rediskit::SessionTokens t = co_await sessions.async_create("42", profile, "Firefox/Linux");
//   // give t.access_token and t.refresh_token to the client; on each request:
//   std::optional<rediskit::Session<Profile>> s = co_await sessions.async_get<Profile>(access);
//   co_await sessions.async_touch(access);                 // sliding expiry (7 days again)
//   rediskit::RotateResult r = co_await sessions.async_rotate_refresh(refresh);
//   if (r.status == rediskit::RotateStatus::reused) alert(r.session.info);   // a stolen token
//   co_await sessions.async_revoke(access);                // logout
//   co_await sessions.async_revoke_all("42");              // "log out all devices"
//   std::vector<rediskit::SessionInfo> devices = co_await sessions.async_list("42");
//
// Tokens. A token is `<user>.<secret>`: <user> is the user id in URL-safe base64 (no padding),
// <secret> 256 bits from OpenSSL's RAND_bytes in URL-safe base64 (43 characters), or a secret
// the caller supplies (SessionRequest; at least 22 characters, 128 bits of base64url: key names hold unsalted
// hashes, so a weak secret could be found from a keyspace dump). The user part is what lets
// every operation on a token name all the keys it touches before it runs (see "Layout"): the
// user a token belongs to is not secret, as in a JWT's `sub`; the secret is. A token that
// does not have this form (no '.', a user part that is not base64url or is empty, a secret
// shorter than 22 characters) is malformed: Error::invalid_argument.
//
// Tokens are never key names. A key names the SHA-256 of the whole token (64 hex digits,
// OpenSSL's EVP_Digest), so a keyspace dump, SCAN, MONITOR or a slow log shows no live
// credential: no command this store sends holds a token (scripts get the hashes). The seed's
// own layout, the token itself in the key name, is SessionOptions::token_keys =
// TokenKeys::raw_unsafe, for tools that expect seed 002's key names (the names only: the values
// are this store's, and tokens keep the form above). UNSAFE: whoever can read key names (SCAN,
// MONITOR, a replica, an RDB file, the slow log, a metrics exporter that samples keys) can log
// in as every user.
//
// Layout (prefixes from SessionOptions, seed 002's by default; <id>: the token's SHA-256 in
// hex, or the token itself with TokenKeys::raw_unsafe; <U>: the user id; <S>: a session id):
//
//   KeyLayout::plain (one node)  KeyLayout::clustered      type    what
//   session:<id>                 session:{U}:<id>          string  <S> (PX: the access expiry)
//   refresh:<id>                 refresh:{U}:<id>          string  <S> (PX: 30 days)
//   user:sessions:<U>            user:sessions:{U}         zset    <S> -> expiry (unix ms)
//   user:session_data:<U>        user:session_data:{U}     hash    <S>:<field> -> value
//
// A session (a login on one device) is a token family: the access and refresh tokens issued
// at login and every pair that rotation gives after it share its id <S> (128 random bits, 32
// hex digits). Its record is in the user's hash: <S>:access and <S>:refresh (the ids of its
// current tokens), <S>:created, <S>:seen, <S>:expires (access), <S>:refresh_expires (unix ms,
// server time), <S>:device and <S>:data (the caller's value through the Codec). The user's
// zset lists the user's live sessions, scored by when the session ends (the later of its two
// expiries): the source of truth. A token's key only points at its session; a token is valid
// while its key exists, its session is in the zset, and it is the session's current token.
// So revoking a session (logout, log out everywhere, the per-user cap, reuse detection) takes
// effect at once by removing it from the zset and the hash, whatever token keys remain; those
// are then deleted by a follow-up script (below), or when next presented, or by their TTL.
//
// Why the user is in the token. Each operation's script declares every key it touches in
// KEYS, and on Redis Cluster those keys must be in one slot. An operation starting
// from a token needs the token's key and the user's zset and hash; the token's hash alone does
// not say which user (a per-token key naming the user would cost a round trip before the
// script, on every request). The user part names them, in both layouts: plain keeps seed 002's
// names on one node; clustered gives the four keys the user's hash tag (hash_tag_for, as
// RoomManager's user_rooms:{U}: a user's rooms and sessions share a slot; an id holding '}' is
// tagged by its slot and follows it, "{TTT}id"), so each script stays in one slot and
// atomic. SessionOptions::key_layout (default default_key_layout_v<B>: clustered on
// ClusterBackend, plain elsewhere); plain on a ClusterBackend fails with Error::cross_slot.
// Seed 002 names user:sessions:{userId} without its type: here it is a zset, so a Node service
// that keeps a plain set under that name cannot share it (WRONGTYPE).
//
// Operations and round trips (every script is atomic, in both layouts):
//  - create: one script (prunes the user's expired sessions, refuses a token already in use,
//    writes the two token keys, the record and the zset entry, and evicts over the cap); when
//    it evicted, a second script deletes the evicted sessions' token keys.
//  - get, touch, list: one script (each prunes expired sessions).
//  - revoke, revoke_session, revoke_all: one script; when it revoked any session, a second
//    deleting their token keys, which the first could not declare (a refresh key is not known
//    from the access token).
//  - rotate_refresh: one script; when it rotated, a second deleting the old access key (when
//    it found reuse, the family's token keys).
// The second script is housekeeping: the first has already revoked what it revokes (tokens
// whose keys remain are no longer valid, and are deleted when presented); when it fails, the
// operation still completes with the first's result. Either script may be cancelled through
// the handler's cancellation slot, as the backend's operations are; a cancelled or
// connection_lost operation may have run.
//
// Rotation and reuse (the refresh token's contract). async_rotate_refresh(refresh) gives the
// session a new access token and a new refresh token (30 days from now), and the old access
// token stops working. The old refresh token's key stays until its own expiry, pointing at
// the session: presenting it again means a copy of it is in other hands (the client already
// used it), so the whole family is revoked, the new tokens included: RotateStatus::reused,
// with the session's info for your alert. Consequence: a client must never present one refresh
// token twice, even to retry a rotation whose reply it lost (that logs it out; Auth0 calls the
// tolerance for this "leeway": not offered here). A refresh token unknown, expired, or of a
// revoked session: RotateStatus::unknown.
//
// Bounded: user:sessions:<U> never lists an expired session (pruned by ZREMRANGEBYSCORE in
// every script that reads or writes it, with their fields of the hash) and never holds more
// than max_sessions_per_user: create evicts the sessions that end first (the least recently
// created or refreshed) beyond it. The user's zset and hash expire with the user's last
// session. Time is the server's (Lua TIME; MemoryBackend's clock, FakeBackend's manual clock:
// ScriptContext::unix_ms); the client's clock is never compared.
//
// Errors and threads: bad input (an empty user id, a malformed token, a caller's secret shorter
// than 22 characters or already in use, options that cannot work) completes with
// Error::invalid_argument and sends nothing (a secret in use: nothing written); data that does
// not decode with Error::decode_failed; backend failures with the backend's error. Operations
// never complete inside the initiating call. Arguments are copied: they may die when the
// async_ call returns. Thread safety: as the backend; the store holds no mutable state, and may
// be destroyed while its operations run (the backend must outlive them). Tokens never appear
// in an error message.
#pragma once

#include <rediskit/codec/json_codec.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/concepts/codec.hpp>
#include <rediskit/detail/crypto.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace rediskit {

/// How a token reaches a key name (see the top of session_store.hpp).
enum class TokenKeys : std::uint8_t {
  sha256,      ///< the SHA-256 of the token, in hex (default)
  raw_unsafe,  ///< seed 002's `session:{accessToken}`: the token itself. UNSAFE: key names leak
               ///< live credentials (SCAN, MONITOR, RDB files, replicas). Compatibility only.
};

/// Options of SessionStore; the key names and TTLs are seed 002's.
struct SessionOptions {
  std::string session_prefix = "session";              ///< `session:<id>`: access tokens
  std::string refresh_prefix = "refresh";              ///< `refresh:<id>`: refresh tokens
  std::string user_sessions_prefix = "user:sessions";  ///< zset of a user's sessions
  std::string user_data_prefix = "user:session_data";  ///< hash of a user's session records
  std::chrono::milliseconds access_ttl = std::chrono::hours(24 * 7);    ///< sliding (touch)
  std::chrono::milliseconds refresh_ttl = std::chrono::hours(24 * 30);  ///< from each rotation
  /// Live sessions per user; create evicts beyond it (those that end first). At least 1.
  std::int64_t max_sessions_per_user = 50;
  TokenKeys token_keys = TokenKeys::sha256;
  /// Key names (top of the file); nullopt: default_key_layout_v<B> (clustered on
  /// ClusterBackend, plain elsewhere).
  std::optional<KeyLayout> key_layout{};
  /// Fills its buffer with random bytes and returns true, or returns false when it cannot.
  /// Empty: OpenSSL's RAND_bytes (the OS's CSPRNG). Session ids and token secrets come from
  /// it; when it fails, the operation completes with Error::crypto_failed and sends nothing.
  /// Replace it only for tests (a fixed sequence makes tokens reproducible).
  std::function<bool(std::span<unsigned char>)> random_source{};
};

/// What async_create records besides the data: the device, and optionally the caller's own
/// token secrets (each at least 22 characters; empty: 256 random bits). Has constructors, so a
/// temporary in a co_await expression is safe on g++ 12.
struct SessionRequest {
  SessionRequest() = default;
  SessionRequest(std::string device_) : device(std::move(device_)) {}  // NOLINT: implicit
  SessionRequest(std::string_view device_) : device(device_) {}        // NOLINT: implicit
  SessionRequest(char const* device_) : device(device_) {}             // NOLINT: implicit
  SessionRequest(std::string device_, std::string access_secret_, std::string refresh_secret_)
      : device(std::move(device_)),
        access_secret(std::move(access_secret_)),
        refresh_secret(std::move(refresh_secret_)) {}
  std::string device;          ///< user agent or device name, shown by async_list
  std::string access_secret;   ///< the secret part of the access token (see the top)
  std::string refresh_secret;  ///< the secret part of the refresh token
};

/// One session (a login on one device). Times: server unix milliseconds.
struct SessionInfo {
  std::string id;  ///< the session (token family): the same across rotations
  std::string user_id;
  std::string device;
  std::int64_t created_at_ms = 0;
  std::int64_t last_seen_ms = 0;           ///< creation, the last touch or rotation
  std::int64_t expires_at_ms = 0;          ///< the access token's expiry (touch renews it)
  std::int64_t refresh_expires_at_ms = 0;  ///< the refresh token's expiry (rotation renews it)
};

/// A session and the caller's data (async_get).
template <class T>
struct Session {
  SessionInfo info;
  T data{};
};

/// The tokens async_create and async_rotate_refresh issue, and their session.
struct SessionTokens {
  std::string access_token;
  std::string refresh_token;
  SessionInfo info;
};

enum class RotateStatus : std::uint8_t {
  rotated,  ///< new tokens issued; the old access token no longer works
  unknown,  ///< unknown, expired, or of a session already revoked: nothing changed
  reused,   ///< already rotated: a copy is in other hands; the whole session is revoked
};

/// What async_rotate_refresh completes with.
struct RotateResult {
  RotateStatus status = RotateStatus::unknown;
  /// rotated: the new tokens and the session; reused: the session revoked (info only, no
  /// tokens); unknown: empty.
  SessionTokens session;
  bool rotated() const noexcept { return status == RotateStatus::rotated; }
};

namespace detail::sessions {

using boost::system::error_code;

// ---- tokens --------------------------------------------------------------------------------

inline constexpr std::size_t kSecretBytes = 32;  // 256 bits
inline constexpr std::size_t kMinSecret = 22;    // characters of a caller's secret: 128 bits of base64url
inline constexpr std::size_t kIdBytes = 16;      // a session id: 128 bits

inline constexpr std::string_view kBase64Url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

inline std::string base64url(std::span<unsigned char const> in) {
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    std::uint32_t const v =
        (std::uint32_t(in[i]) << 16) | (std::uint32_t(in[i + 1]) << 8) | in[i + 2];
    for (int s = 18; s >= 0; s -= 6)
      out.push_back(kBase64Url[(v >> s) & 63]);
  }
  if (std::size_t const rest = in.size() - i; rest > 0) {
    std::uint32_t v = std::uint32_t(in[i]) << 16;
    if (rest == 2) v |= std::uint32_t(in[i + 1]) << 8;
    out.push_back(kBase64Url[(v >> 18) & 63]);
    out.push_back(kBase64Url[(v >> 12) & 63]);
    if (rest == 2) out.push_back(kBase64Url[(v >> 6) & 63]);
  }
  return out;
}

/// The bytes of unpadded base64url `in`; nullopt when it is not that, canonically written (so
/// that one user has one spelling).
inline std::optional<std::string> from_base64url(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    auto const p = kBase64Url.find(c);
    if (p == std::string_view::npos) return std::nullopt;
    acc = (acc << 6) | std::uint32_t(p);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xFF));
    }
  }
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;  // stray low bits: not canonical
  return out;
}

inline std::string hex(std::span<unsigned char const> in) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(in.size() * 2);
  for (unsigned char b : in) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

/// SHA-256 of `text` in lowercase hex (OpenSSL's libcrypto); empty if libcrypto failed.
inline std::string sha256_hex(std::string_view text) {
  auto const md = crypto::sha256(text);
  return md ? hex(*md) : std::string();
}

using crypto::random_bytes;  // the OS's CSPRNG, through OpenSSL

/// The user a well-formed token names (see the top of the file); nullopt when malformed.
inline std::optional<std::string> user_of(std::string_view token) {
  auto const dot = token.find('.');
  if (dot == std::string_view::npos || dot == 0 || token.size() - dot - 1 < kMinSecret)
    return std::nullopt;
  auto user = from_base64url(token.substr(0, dot));
  if (!user || user->empty()) return std::nullopt;
  return user;
}

// ---- keys ----------------------------------------------------------------------------------

/// Builds the store's key names; one per store, shared with its operations.
struct Keys {
  KeyLayout layout = KeyLayout::plain;
  TokenKeys token_keys = TokenKeys::sha256;
  std::string session, refresh, index, data;  // the prefixes, each followed by ':'
  bool valid = true;

  /// In the clustered layout, a user's tag: "{U}", or "{TTT}U" for an id holding '}'.
  static std::string tag(std::string_view user) {
    std::string t = hash_tag_for(user);
    if (user.find('}') != std::string_view::npos) t.append(user);
    return t;
  }
  std::string user_key(std::string const& prefix, std::string_view user) const {
    return layout == KeyLayout::clustered ? prefix + tag(user) : prefix + std::string(user);
  }
  /// The key part that stands for a token: its SHA-256, or itself (raw_unsafe).
  std::string token_id(std::string_view token) const {
    return token_keys == TokenKeys::sha256 ? sha256_hex(token) : std::string(token);
  }
  std::string token_key(std::string const& prefix, std::string_view user,
                        std::string_view id) const {
    std::string k = prefix;
    if (layout == KeyLayout::clustered) k.append(tag(user)).push_back(':');
    k.append(id);
    return k;
  }
  std::string session_key(std::string_view user, std::string_view id) const {
    return token_key(session, user, id);
  }
  std::string refresh_key(std::string_view user, std::string_view id) const {
    return token_key(refresh, user, id);
  }
  std::string index_key(std::string_view user) const { return user_key(index, user); }
  std::string data_key(std::string_view user) const { return user_key(data, user); }
};

inline Keys make_keys(SessionOptions const& o, KeyLayout layout) {
  Keys k;
  k.layout = layout;
  k.token_keys = o.token_keys;
  std::array<std::string const*, 4> const prefixes{&o.session_prefix, &o.refresh_prefix,
                                                   &o.user_sessions_prefix, &o.user_data_prefix};
  k.valid = o.access_ttl.count() > 0 && o.refresh_ttl.count() > 0 && o.max_sessions_per_user >= 1;
  for (auto const* p : prefixes) {
    if (p->empty()) k.valid = false;
    // A '{' in a prefix would become the keys' hash tag instead of the user's.
    if (layout == KeyLayout::clustered && p->find('{') != std::string::npos) k.valid = false;
  }
  // No prefix may be another's followed by ':' (a user id could then name another key).
  for (auto const* p : prefixes)
    for (auto const* q : prefixes)
      if (p != q && (*q + ":").starts_with(*p + ":")) k.valid = false;
  k.session = o.session_prefix + ":";
  k.refresh = o.refresh_prefix + ":";
  k.index = o.user_sessions_prefix + ":";
  k.data = o.user_data_prefix + ":";
  return k;
}

// ---- scripts: Lua and its C++ twin (rediskit/script.hpp) -------------------------------------
// Every script replies {numbers, strings, drops}: numbers[0] a status, numbers[1] the server's
// now; drops: {session id, access id, refresh id} of each session the script revoked, whose
// token keys (not declared: not known before it ran) the drop script deletes next.
// KEYS: S (session key), R (refresh key), I (the user's zset), D (the user's hash).

using Reply =
    std::tuple<std::vector<std::int64_t>, std::vector<std::string>, std::vector<std::string>>;

/// The fields of a session's record in D, in this order (Lua: F).
inline constexpr std::array<std::string_view, 8> kFields{
    "access", "refresh", "created", "seen", "expires", "refresh_expires", "device", "data"};
enum Field {
  f_access,
  f_refresh,
  f_created,
  f_seen,
  f_expires,
  f_refresh_expires,
  f_device,
  f_data
};

inline constexpr char const kPrelude[] = R"lua(
local F = {'access', 'refresh', 'created', 'seen', 'expires', 'refresh_expires', 'device', 'data'}
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function num(x) return tonumber(x) or 0 end
local function fields(sid)
  local out = {}
  for i = 1, #F do out[i] = sid .. ':' .. F[i] end
  return out
end
local function prune(I, D, now)
  local gone = redis.call('ZRANGE', I, '-inf', now, 'BYSCORE')
  for _, sid in ipairs(gone) do redis.call('HDEL', D, unpack(fields(sid))) end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', I, '-inf', now) end
end
local function keep(I, D, now)
  local last = redis.call('ZRANGE', I, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', I, D)
  else
    redis.call('PEXPIRE', I, tonumber(last[2]) - now)
    redis.call('PEXPIRE', D, tonumber(last[2]) - now)
  end
end
local function drop(I, D, sid, out)
  local v = redis.call('HMGET', D, sid .. ':access', sid .. ':refresh')
  out[#out + 1] = sid
  out[#out + 1] = v[1] or ''
  out[#out + 1] = v[2] or ''
  redis.call('ZREM', I, sid)
  redis.call('HDEL', D, unpack(fields(sid)))
end
local function taken(K, I)
  local sid = redis.call('GET', K)
  return sid and redis.call('ZSCORE', I, sid)
end
)lua";

inline std::int64_t to_i64(std::optional<std::string> const& s) {
  std::int64_t v = 0;
  if (s) std::from_chars(s->data(), s->data() + s->size(), v);
  return v;
}
inline std::int64_t arg_i64(ScriptContext auto& c, std::size_t i) {
  return to_i64(std::string(c.args()[i]));
}
inline std::vector<std::string> fields_of(std::string_view sid) {
  std::vector<std::string> out;
  out.reserve(kFields.size());
  for (auto f : kFields)
    out.push_back(std::string(sid) + ":" + std::string(f));
  return out;
}
inline Reply status(std::int64_t s, std::int64_t now) {
  return {{s, now}, {}, {}};
}

inline void prune(ScriptContext auto& c, std::string_view I, std::string_view D, std::int64_t now) {
  auto const gone = c.call(cmd::zrange_by_score{.key = I, .max = ScoreBound::incl(double(now))});
  for (auto const& sid : gone)
    c.call(cmd::hdel{.key = D, .fields = fields_of(sid)});
  if (!gone.empty()) c.call(cmd::zremrangebyscore{.key = I, .max = ScoreBound::incl(double(now))});
}

inline void keep(ScriptContext auto& c, std::string_view I, std::string_view D, std::int64_t now) {
  auto const last = c.call(cmd::zrange_withscores{.key = I, .start = -1, .stop = -1});
  if (last.empty()) {
    c.call(cmd::del{.keys = {I, D}});
    return;
  }
  std::chrono::milliseconds const ttl(std::int64_t(last[0].second) - now);
  c.call(cmd::pexpire{.key = I, .ttl = ttl});
  c.call(cmd::pexpire{.key = D, .ttl = ttl});
}

inline void drop(ScriptContext auto& c, std::string_view I, std::string_view D,
                 std::string const& sid, std::vector<std::string>& out) {
  std::string const a = sid + ":access", r = sid + ":refresh";
  auto v = c.call(cmd::hmget{.key = D, .fields = {a, r}});
  out.push_back(sid);
  out.push_back(std::move(v[0]).value_or(""));
  out.push_back(std::move(v[1]).value_or(""));
  c.call(cmd::zrem{.key = I, .members = sid});
  c.call(cmd::hdel{.key = D, .fields = fields_of(sid)});
}

inline bool taken(ScriptContext auto& c, std::string_view K, std::string_view I) {
  auto const sid = c.call(cmd::get{K});
  return sid && c.call(cmd::zscore{.key = I, .member = *sid}).has_value();
}

inline std::vector<std::optional<std::string>> record(ScriptContext auto& c, std::string_view D,
                                                      std::string_view sid) {
  auto const f = fields_of(sid);
  return c.call(cmd::hmget{.key = D, .fields = f});
}

// KEYS: S R I D. ARGV: sid, access id, refresh id, access ttl, refresh ttl, max sessions,
// device, data. -> {{1, now, created, seen, expires, refresh_expires}, {sid, device}, evicted}
// or {{0, now}} when a token is in use already.
inline Reply create_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::string const sid(a[0]);
  std::int64_t const now = c.unix_ms();
  prune(c, k[2], k[3], now);
  if (taken(c, k[0], k[2]) || taken(c, k[1], k[2])) return status(0, now);
  std::int64_t const exp = now + arg_i64(c, 3), rexp = now + arg_i64(c, 4);
  c.call(cmd::set{.key = k[0], .value = sid, .ttl = std::chrono::milliseconds(arg_i64(c, 3))});
  c.call(cmd::set{.key = k[1], .value = sid, .ttl = std::chrono::milliseconds(arg_i64(c, 4))});
  auto const f = fields_of(sid);
  std::string const n = std::to_string(now), e = std::to_string(exp), re = std::to_string(rexp);
  std::vector<std::pair<std::string_view, std::string_view>> const values{
      {f[f_access], a[1]}, {f[f_refresh], a[2]},       {f[f_created], n},   {f[f_seen], n},
      {f[f_expires], e},   {f[f_refresh_expires], re}, {f[f_device], a[6]}, {f[f_data], a[7]}};
  c.call(cmd::hset{.key = k[3], .fields = values});
  c.call(cmd::zadd{.key = k[2], .members = ScoreMember{double(std::max(exp, rexp)), sid}});
  std::vector<std::string> drops;
  std::int64_t over = c.call(cmd::zcard{k[2]}) - arg_i64(c, 5);
  if (over > 0) {
    for (auto const& old : c.call(cmd::zrange{.key = k[2], .start = 0, .stop = over})) {
      if (over > 0 && old != sid) {
        drop(c, k[2], k[3], old, drops);
        --over;
      }
    }
  }
  keep(c, k[2], k[3], now);
  return {{1, now, now, now, exp, rexp}, {sid, std::string(a[6])}, std::move(drops)};
}
inline constexpr char const kCreate[] = R"lua(
local S, R, I, D = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sid = ARGV[1]
local now = now_ms()
prune(I, D, now)
if taken(S, I) or taken(R, I) then return {{0, now}, {}, {}} end
local exp, rexp = now + tonumber(ARGV[4]), now + tonumber(ARGV[5])
redis.call('SET', S, sid, 'PX', ARGV[4])
redis.call('SET', R, sid, 'PX', ARGV[5])
redis.call('HSET', D, sid .. ':access', ARGV[2], sid .. ':refresh', ARGV[3],
           sid .. ':created', now, sid .. ':seen', now, sid .. ':expires', exp,
           sid .. ':refresh_expires', rexp, sid .. ':device', ARGV[7], sid .. ':data', ARGV[8])
redis.call('ZADD', I, math.max(exp, rexp), sid)
local drops = {}
local over = redis.call('ZCARD', I) - tonumber(ARGV[6])
if over > 0 then
  for _, old in ipairs(redis.call('ZRANGE', I, 0, over)) do
    if over > 0 and old ~= sid then
      drop(I, D, old, drops)
      over = over - 1
    end
  end
end
keep(I, D, now)
return {{1, now, now, now, exp, rexp}, {sid, ARGV[7]}, drops}
)lua";

// KEYS: S I D. ARGV: access id, ttl ("0": a read; else touch: the access expiry becomes now +
// ttl). -> {{1, now, created, seen, expires, refresh_expires}, {sid, device, data}} or {{0, now}}
// when the token is not valid (its key, if any, is deleted then).
inline Reply read_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const now = c.unix_ms();
  auto const sid = c.call(cmd::get{k[0]});
  if (!sid) return status(0, now);
  prune(c, k[1], k[2], now);
  auto v = record(c, k[2], *sid);
  if (!c.call(cmd::zscore{.key = k[1], .member = *sid}) || v[f_access] != a[0] ||
      to_i64(v[f_expires]) <= now) {
    c.call(cmd::del{.keys = k[0]});
    return status(0, now);
  }
  std::int64_t seen = to_i64(v[f_seen]), exp = to_i64(v[f_expires]);
  std::int64_t const rexp = to_i64(v[f_refresh_expires]);
  if (a[1] != "0") {
    std::int64_t const ttl = arg_i64(c, 1);
    seen = now;
    exp = now + ttl;
    auto const f = fields_of(*sid);
    std::string const n = std::to_string(now), e = std::to_string(exp);
    c.call(
        cmd::hset{.key = k[2], .fields = {FieldValue{f[f_seen], n}, FieldValue{f[f_expires], e}}});
    c.call(cmd::pexpire{.key = k[0], .ttl = std::chrono::milliseconds(ttl)});
    c.call(cmd::zadd{.key = k[1], .members = ScoreMember{double(std::max(exp, rexp)), *sid}});
    keep(c, k[1], k[2], now);
  }
  return {{1, now, to_i64(v[f_created]), seen, exp, rexp},
          {*sid, std::move(v[f_device]).value_or(""), std::move(v[f_data]).value_or("")},
          {}};
}
inline constexpr char const kRead[] = R"lua(
local S, I, D = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local sid = redis.call('GET', S)
if not sid then return {{0, now}, {}, {}} end
prune(I, D, now)
local v = redis.call('HMGET', D, unpack(fields(sid)))
if not redis.call('ZSCORE', I, sid) or v[1] ~= ARGV[1] or num(v[5]) <= now then
  redis.call('DEL', S)
  return {{0, now}, {}, {}}
end
local seen, exp = num(v[4]), num(v[5])
if ARGV[2] ~= '0' then
  seen, exp = now, now + tonumber(ARGV[2])
  redis.call('HSET', D, sid .. ':seen', now, sid .. ':expires', exp)
  redis.call('PEXPIRE', S, ARGV[2])
  redis.call('ZADD', I, math.max(exp, num(v[6])), sid)
  keep(I, D, now)
end
return {{1, now, num(v[3]), seen, exp, num(v[6])}, {sid, v[7] or '', v[8] or ''}, {}}
)lua";

// KEYS: S I D. ARGV: access id. Deletes S; when it is the current access token of a live
// session, revokes the session. -> {{revoked (0 or 1), now}, {}, drops}.
inline Reply revoke_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  std::int64_t const now = c.unix_ms();
  auto const sid = c.call(cmd::get{k[0]});
  if (!sid) return status(0, now);
  c.call(cmd::del{.keys = k[0]});
  prune(c, k[1], k[2], now);
  std::vector<std::string> drops;
  if (c.call(cmd::zscore{.key = k[1], .member = *sid}) &&
      c.call(cmd::hget{.key = k[2], .field = *sid + ":access"}) == c.args()[0]) {
    drop(c, k[1], k[2], *sid, drops);
    keep(c, k[1], k[2], now);
  }
  return {{std::int64_t(drops.size() / 3), now}, {}, std::move(drops)};
}
inline constexpr char const kRevoke[] = R"lua(
local S, I, D = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local sid = redis.call('GET', S)
if not sid then return {{0, now}, {}, {}} end
redis.call('DEL', S)
prune(I, D, now)
local drops = {}
if redis.call('ZSCORE', I, sid) and redis.call('HGET', D, sid .. ':access') == ARGV[1] then
  drop(I, D, sid, drops)
  keep(I, D, now)
end
return {{#drops / 3, now}, {}, drops}
)lua";

// KEYS: I D. ARGV: a session id, or "" for all of the user's. -> {{how many, now}, {}, drops}.
inline Reply remove_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  std::string const which(c.args()[0]);
  std::int64_t const now = c.unix_ms();
  prune(c, k[0], k[1], now);
  std::vector<std::string> drops;
  if (which.empty()) {
    for (auto const& sid : c.call(cmd::zrange{.key = k[0]}))
      drop(c, k[0], k[1], sid, drops);
  } else if (c.call(cmd::zscore{.key = k[0], .member = which})) {
    drop(c, k[0], k[1], which, drops);
  }
  if (!drops.empty()) keep(c, k[0], k[1], now);
  return {{std::int64_t(drops.size() / 3), now}, {}, std::move(drops)};
}
inline constexpr char const kRemove[] = R"lua(
local I, D = KEYS[1], KEYS[2]
local now = now_ms()
prune(I, D, now)
local drops = {}
if ARGV[1] == '' then
  for _, sid in ipairs(redis.call('ZRANGE', I, 0, -1)) do drop(I, D, sid, drops) end
elseif redis.call('ZSCORE', I, ARGV[1]) then
  drop(I, D, ARGV[1], drops)
end
if #drops > 0 then keep(I, D, now) end
return {{#drops / 3, now}, {}, drops}
)lua";

// KEYS: R_old R_new S_new I D. ARGV: old refresh id, new refresh id, new access id, access ttl,
// refresh ttl. -> numbers {status, now, created, seen, expires, refresh_expires}: 1 rotated
// (strings {sid, device}; drops: the old access key), 2 reused (the session revoked; strings
// {sid, device}, drops), 0 unknown, 3 a new token in use already.
inline Reply rotate_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const now = c.unix_ms();
  auto const sid = c.call(cmd::get{k[0]});
  if (!sid) return status(0, now);
  prune(c, k[3], k[4], now);
  if (!c.call(cmd::zscore{.key = k[3], .member = *sid})) {
    c.call(cmd::del{.keys = k[0]});
    return status(0, now);
  }
  auto v = record(c, k[4], *sid);
  if (v[f_refresh] != a[0]) {
    std::vector<std::string> drops;
    drop(c, k[3], k[4], *sid, drops);
    c.call(cmd::del{.keys = k[0]});
    keep(c, k[3], k[4], now);
    return {{2, now, to_i64(v[f_created]), to_i64(v[f_seen]), to_i64(v[f_expires]),
             to_i64(v[f_refresh_expires])},
            {*sid, std::move(v[f_device]).value_or("")},
            std::move(drops)};
  }
  if (to_i64(v[f_refresh_expires]) <= now) return status(0, now);
  if (taken(c, k[1], k[3]) || taken(c, k[2], k[3])) return status(3, now);
  std::int64_t const exp = now + arg_i64(c, 3), rexp = now + arg_i64(c, 4);
  c.call(cmd::set{.key = k[2], .value = *sid, .ttl = std::chrono::milliseconds(arg_i64(c, 3))});
  c.call(cmd::set{.key = k[1], .value = *sid, .ttl = std::chrono::milliseconds(arg_i64(c, 4))});
  auto const f = fields_of(*sid);
  std::string const n = std::to_string(now), e = std::to_string(exp), re = std::to_string(rexp);
  std::vector<std::pair<std::string_view, std::string_view>> const values{
      {f[f_access], a[2]},
      {f[f_refresh], a[1]},
      {f[f_seen], n},
      {f[f_expires], e},
      {f[f_refresh_expires], re}};
  c.call(cmd::hset{.key = k[4], .fields = values});
  c.call(cmd::zadd{.key = k[3], .members = ScoreMember{double(std::max(exp, rexp)), *sid}});
  keep(c, k[3], k[4], now);
  return {{1, now, to_i64(v[f_created]), now, exp, rexp},
          {*sid, std::move(v[f_device]).value_or("")},
          {*sid, std::move(v[f_access]).value_or(""), ""}};
}
inline constexpr char const kRotate[] = R"lua(
local Ro, Rn, Sn, I, D = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = now_ms()
local sid = redis.call('GET', Ro)
if not sid then return {{0, now}, {}, {}} end
prune(I, D, now)
if not redis.call('ZSCORE', I, sid) then
  redis.call('DEL', Ro)
  return {{0, now}, {}, {}}
end
local v = redis.call('HMGET', D, unpack(fields(sid)))
if v[2] ~= ARGV[1] then
  local drops = {}
  drop(I, D, sid, drops)
  redis.call('DEL', Ro)
  keep(I, D, now)
  return {{2, now, num(v[3]), num(v[4]), num(v[5]), num(v[6])}, {sid, v[7] or ''}, drops}
end
if num(v[6]) <= now then return {{0, now}, {}, {}} end
if taken(Rn, I) or taken(Sn, I) then return {{3, now}, {}, {}} end
local exp, rexp = now + tonumber(ARGV[4]), now + tonumber(ARGV[5])
redis.call('SET', Sn, sid, 'PX', ARGV[4])
redis.call('SET', Rn, sid, 'PX', ARGV[5])
redis.call('HSET', D, sid .. ':access', ARGV[3], sid .. ':refresh', ARGV[2], sid .. ':seen', now,
           sid .. ':expires', exp, sid .. ':refresh_expires', rexp)
redis.call('ZADD', I, math.max(exp, rexp), sid)
keep(I, D, now)
return {{1, now, num(v[3]), now, exp, rexp}, {sid, v[7] or ''}, {sid, v[1] or '', ''}}
)lua";

// KEYS: I D. -> {{1, now, then per session: created, seen, expires, refresh_expires},
// {per session: sid, device}}, the sessions in the order they end.
inline Reply list_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  std::int64_t const now = c.unix_ms();
  prune(c, k[0], k[1], now);
  Reply out{{1, now}, {}, {}};
  auto& nums = std::get<0>(out);
  auto& strs = std::get<1>(out);
  for (auto& sid : c.call(cmd::zrange{.key = k[0]})) {
    std::string const cr = sid + ":created", se = sid + ":seen", ex = sid + ":expires",
                      re = sid + ":refresh_expires", de = sid + ":device";
    auto v = c.call(cmd::hmget{.key = k[1], .fields = {cr, se, ex, re, de}});
    for (std::size_t i = 0; i < 4; ++i)
      nums.push_back(to_i64(v[i]));
    strs.push_back(std::move(sid));
    strs.push_back(std::move(v[4]).value_or(""));
  }
  return out;
}
inline constexpr char const kList[] = R"lua(
local I, D = KEYS[1], KEYS[2]
local now = now_ms()
prune(I, D, now)
local nums, strs = {1, now}, {}
for _, sid in ipairs(redis.call('ZRANGE', I, 0, -1)) do
  local v = redis.call('HMGET', D, sid .. ':created', sid .. ':seen', sid .. ':expires',
                       sid .. ':refresh_expires', sid .. ':device')
  for i = 1, 4 do nums[#nums + 1] = num(v[i]) end
  strs[#strs + 1] = sid
  strs[#strs + 1] = v[5] or ''
end
return {nums, strs, {}}
)lua";

// KEYS: token keys. ARGV: the session id each must still hold. Deletes those that do.
// -> {{how many}}.
inline Reply drop_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t n = 0;
  for (std::size_t i = 0; i < k.size() && i < a.size(); ++i) {
    if (c.call(cmd::get{k[i]}) == a[i]) {
      c.call(cmd::del{.keys = k[i]});
      ++n;
    }
  }
  return {{n}, {}, {}};
}
inline constexpr char const kDrop[] = R"lua(
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return {{n}, {}, {}}
)lua";

/// The twin of every script above, chosen at run time: all the store's scripts are one C++
/// type (Script<Reply, Twin>), so each backend compiles one EVALSHA command for all of them.
struct Twin {
  enum Kind : std::uint8_t { create, read, revoke, remove, rotate, list, drop } kind;
  template <ScriptContext Ctx>
  Reply operator()(Ctx& c) const {
    switch (kind) {
      case create:
        return create_twin(c);
      case read:
        return read_twin(c);
      case revoke:
        return revoke_twin(c);
      case remove:
        return remove_twin(c);
      case rotate:
        return rotate_twin(c);
      case list:
        return list_twin(c);
      case drop:
        return drop_twin(c);
    }
    return {};
  }
};
using SessionScript = Script<Reply, Twin>;

inline SessionScript make(char const* body, Twin::Kind kind) {
  return make_script<Reply>(kind == Twin::drop ? std::string(body) : std::string(kPrelude) + body,
                            Twin{kind});
}
inline SessionScript const create_script = make(kCreate, Twin::create);
inline SessionScript const read_script = make(kRead, Twin::read);
inline SessionScript const revoke_script = make(kRevoke, Twin::revoke);
inline SessionScript const remove_script = make(kRemove, Twin::remove);
inline SessionScript const rotate_script = make(kRotate, Twin::rotate);
inline SessionScript const list_script = make(kList, Twin::list);
inline SessionScript const drop_script = make(kDrop, Twin::drop);

// ---- operations ------------------------------------------------------------------------------

/// What an operation's commands view, on the heap: the strings keep their addresses while the
/// operation (and its handler) moves.
struct Call {
  SessionScript const* script = nullptr;
  std::vector<std::string> keys, args;
  std::vector<std::string> drop_keys, drop_args;  // the follow-up (filled by the map)
  std::string user;
  std::string access_token, refresh_token;  // issued by this operation
  std::shared_ptr<void const> codec{};      // get<T>: the store's codec
  error_code refusal{};  // set: the operation completes with it and sends nothing
};

/// Turns the first script's reply into the operation's result; may set `ec`.
template <class Result>
using MapFn = Result (*)(error_code& ec, Reply& r, Call& call, Keys const& keys);

inline error_code invalid() {
  return make_error_code(Error::invalid_argument);
}

/// Queues the token keys of the sessions in `drops` for the drop script.
inline void queue_drops(std::vector<std::string> const& drops, Call& call, Keys const& keys) {
  for (std::size_t i = 0; i + 2 < drops.size(); i += 3) {
    for (std::size_t j = 1; j <= 2; ++j) {
      if (drops[i + j].empty()) continue;
      call.drop_keys.push_back(j == 1 ? keys.session_key(call.user, drops[i + j])
                                      : keys.refresh_key(call.user, drops[i + j]));
      call.drop_args.push_back(drops[i]);
    }
  }
}

/// The SessionInfo of numbers {status, now, created, seen, expires, refresh_expires} and
/// strings {sid, device, ...}; false when the reply is too short.
inline bool info_of(Reply const& r, std::string const& user, SessionInfo& out) {
  auto const& n = std::get<0>(r);
  auto const& s = std::get<1>(r);
  if (n.size() < 6 || s.size() < 2) return false;
  out.id = s[0];
  out.user_id = user;
  out.device = s[1];
  out.created_at_ms = n[2];
  out.last_seen_ms = n[3];
  out.expires_at_ms = n[4];
  out.refresh_expires_at_ms = n[5];
  return true;
}

inline bool found(error_code& ec, Reply const& r) {
  if (ec) return false;
  auto const& n = std::get<0>(r);
  if (n.empty()) ec = make_error_code(Error::incompatible_size);
  return !ec && n[0] == 1;
}

inline SessionTokens map_create(error_code& ec, Reply& r, Call& call, Keys const& keys) {
  SessionTokens t;
  if (ec) return t;
  auto const& n = std::get<0>(r);
  if (n.empty())
    ec = make_error_code(Error::incompatible_size);
  else if (n[0] == 0)
    ec = invalid();  // a caller's secret already in use
  else if (!info_of(r, call.user, t.info))
    ec = make_error_code(Error::incompatible_size);
  if (ec) return t;
  t.access_token = std::move(call.access_token);
  t.refresh_token = std::move(call.refresh_token);
  queue_drops(std::get<2>(r), call, keys);
  return t;
}

inline std::optional<SessionInfo> map_touch(error_code& ec, Reply& r, Call& call, Keys const&) {
  std::optional<SessionInfo> out;
  if (!found(ec, r)) return out;
  if (!info_of(r, call.user, out.emplace())) {
    ec = make_error_code(Error::incompatible_size);
    out.reset();
  }
  return out;
}

template <class T, class C>
std::optional<Session<T>> map_get(error_code& ec, Reply& r, Call& call, Keys const&) {
  std::optional<Session<T>> out;
  if (!found(ec, r)) return out;
  auto const& s = std::get<1>(r);
  Session<T> v;
  if (s.size() < 3 || !info_of(r, call.user, v.info)) {
    ec = make_error_code(Error::incompatible_size);
    return out;
  }
  ec = static_cast<C const*>(call.codec.get())->decode(s[2], v.data, nullptr);
  if (!ec) out.emplace(std::move(v));
  return out;
}

inline bool map_revoke(error_code& ec, Reply& r, Call& call, Keys const& keys) {
  if (!found(ec, r)) return false;
  queue_drops(std::get<2>(r), call, keys);
  return true;
}

inline std::int64_t map_remove(error_code& ec, Reply& r, Call& call, Keys const& keys) {
  if (ec) return 0;
  auto const& n = std::get<0>(r);
  if (n.empty()) {
    ec = make_error_code(Error::incompatible_size);
    return 0;
  }
  queue_drops(std::get<2>(r), call, keys);
  return n[0];
}

inline RotateResult map_rotate(error_code& ec, Reply& r, Call& call, Keys const& keys) {
  RotateResult out;
  if (ec) return out;
  auto const& n = std::get<0>(r);
  if (n.empty())
    ec = make_error_code(Error::incompatible_size);
  else if (n[0] == 3)
    ec = invalid();  // a caller's new secret already in use
  if (ec || n[0] == 0) return out;
  if (!info_of(r, call.user, out.session.info)) {
    ec = make_error_code(Error::incompatible_size);
    return out;
  }
  out.status = n[0] == 1 ? RotateStatus::rotated : RotateStatus::reused;
  if (out.status == RotateStatus::rotated) {
    out.session.access_token = std::move(call.access_token);
    out.session.refresh_token = std::move(call.refresh_token);
  }
  queue_drops(std::get<2>(r), call, keys);
  return out;
}

inline std::vector<SessionInfo> map_list(error_code& ec, Reply& r, Call& call, Keys const&) {
  std::vector<SessionInfo> out;
  if (ec) return out;
  auto const& n = std::get<0>(r);
  auto const& s = std::get<1>(r);
  if (n.size() < 2 || (n.size() - 2) % 4 != 0 || s.size() != (n.size() - 2) / 2) {
    ec = make_error_code(Error::incompatible_size);
    return out;
  }
  for (std::size_t i = 0; 2 + 4 * i < n.size(); ++i) {
    SessionInfo x;
    x.id = s[2 * i];
    x.user_id = call.user;
    x.device = s[2 * i + 1];
    x.created_at_ms = n[2 + 4 * i];
    x.last_seen_ms = n[3 + 4 * i];
    x.expires_at_ms = n[4 + 4 * i];
    x.refresh_expires_at_ms = n[5 + 4 * i];
    out.push_back(std::move(x));
  }
  return out;
}

/// Every operation: the script of `call`, its reply mapped, then (when the map queued token
/// keys of revoked sessions) the drop script, whose failure does not fail the operation: the
/// sessions are revoked by the first script already. One type per (backend, result): the
/// caller's handler is erased (detail::erased_compose).
template <class B, class Result>
struct Op {
  B* backend = nullptr;
  std::shared_ptr<Keys const> keys{};
  std::unique_ptr<Call> call{};
  MapFn<Result> map = nullptr;
  bool ok = true;
  Result result{};
  enum { start, first, dropping, rejected } state = start;

  template <class Self>
  void operator()(Self& self) {
    if (state == rejected) return self.complete(call ? call->refusal : invalid(), Result{});
    if (!ok) {
      state = rejected;  // never complete inside the initiating call
      return boost::asio::post(backend->get_executor(), std::move(self));
    }
    state = first;
    Call const& c = *call;
    backend->async_exec((*c.script)(c.keys, c.args), std::move(self));
  }

  template <class Self>
  void operator()(Self& self, error_code ec, Reply r) {
    if (state == dropping) return self.complete(error_code{}, std::move(result));
    result = map(ec, r, *call, *keys);
    if (ec) return self.complete(ec, Result{});
    if (call->drop_keys.empty()) return self.complete(ec, std::move(result));
    state = dropping;
    Call const& c = *call;
    backend->async_exec(drop_script(c.drop_keys, c.drop_args), std::move(self));
  }
};

}  // namespace detail::sessions

/// Seed 002's user sessions over any Backend, with the caller's data through Codec C (see the
/// top of this file). Every async_ operation completes with void(error_code, result).
template <Backend B, Codec C = JsonCodec>
class SessionStore {
  using error_code = boost::system::error_code;
  using Call = detail::sessions::Call;
  using Keys = detail::sessions::Keys;
  template <class Token, class Sig>
  static constexpr bool token_for = boost::asio::completion_token_for<Token, Sig>;

 public:
  using backend_type = B;
  using codec_type = C;

  /// `backend` must outlive the store's operations.
  explicit SessionStore(B& backend, SessionOptions options = {}, C codec = {})
      : backend_(&backend),
        options_(std::move(options)),
        codec_(std::make_shared<C const>(std::move(codec))),
        layout_(options_.key_layout.value_or(default_key_layout_v<B>)),
        keys_(std::make_shared<Keys const>(detail::sessions::make_keys(options_, layout_))) {}

  SessionOptions const& options() const noexcept { return options_; }
  /// The layout in use: options().key_layout, else default_key_layout_v<B>.
  KeyLayout key_layout() const noexcept { return layout_; }

  /// The user a token names ("42" for a token of user 42); nullopt when it is malformed. Says
  /// nothing of whether the token is valid.
  static std::optional<std::string> user_of(std::string_view token) {
    return detail::sessions::user_of(token);
  }
  /// The key of an access token ("" when it is malformed): `session:<SHA-256 in hex>`.
  std::string session_key(std::string_view access_token) const {
    auto const user = user_of(access_token);
    return user ? keys_->session_key(*user, keys_->token_id(access_token)) : std::string();
  }
  /// The key of a refresh token ("" when it is malformed).
  std::string refresh_key(std::string_view refresh_token) const {
    auto const user = user_of(refresh_token);
    return user ? keys_->refresh_key(*user, keys_->token_id(refresh_token)) : std::string();
  }
  /// The zset of a user's sessions (seed 002's user:sessions:{userId}).
  std::string user_sessions_key(std::string_view user_id) const {
    return keys_->index_key(user_id);
  }
  /// The hash of a user's session records.
  std::string user_data_key(std::string_view user_id) const { return keys_->data_key(user_id); }

  /// Logs `user_id` in: a new session holding `data` (through the codec), with a new access
  /// token (valid access_ttl, renewed by touch) and refresh token (refresh_ttl). Prunes the
  /// user's expired sessions and, beyond max_sessions_per_user, evicts those that end first.
  /// One script (+ one deleting the evicted sessions' token keys, when it evicted).
  /// void(error_code, SessionTokens). Error::invalid_argument: an empty user id, a
  /// SessionRequest secret shorter than 22 characters or already in use.
  template <class T, class Token = boost::asio::deferred_t>
  requires CodecFor<C, T> && token_for<Token, void(error_code, SessionTokens)>
  auto async_create(std::string_view user_id, T const& data, Token&& token = {}) {
    return create(user_id, data, SessionRequest(), std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  requires CodecFor<C, T>
  auto async_create(std::string_view user_id, T const& data, SessionRequest const& request,
                    Token&& token = {}) {
    return create(user_id, data, request, std::forward<Token>(token));
  }

  /// The session of a valid access token and its data; nullopt when the token is unknown,
  /// expired, rotated away or revoked (a key it left is deleted then). Does not renew it
  /// (async_touch does). One script. void(error_code, std::optional<Session<T>>);
  /// Error::decode_failed when the stored data is not a T.
  template <class T, class Token = boost::asio::deferred_t>
  requires CodecFor<C, T> && std::default_initializable<T>
  auto async_get(std::string_view access_token, Token&& token = {}) {
    auto call = token_call(detail::sessions::read_script, access_token, &Keys::session_key);
    if (call) {
      call->args.push_back("0");
      call->codec = codec_;
    }
    return run<std::optional<Session<T>>>(std::forward<Token>(token), std::move(call),
                                          &detail::sessions::map_get<T, C>);
  }

  /// Sliding expiry: a valid access token's expiry becomes now + access_ttl, and the session's
  /// last_seen now. One script. void(error_code, std::optional<SessionInfo>): the renewed
  /// session; nullopt when the token is not valid (as async_get).
  template <class Token = boost::asio::deferred_t>
  auto async_touch(std::string_view access_token, Token&& token = {}) {
    auto call = token_call(detail::sessions::read_script, access_token, &Keys::session_key);
    if (call) call->args.push_back(ms(options_.access_ttl));
    return run<std::optional<SessionInfo>>(std::forward<Token>(token), std::move(call),
                                           &detail::sessions::map_touch);
  }

  /// Logout: revokes the session of a valid access token (its refresh token with it).
  /// A script, then one deleting the refresh token's key. void(error_code, bool): false when
  /// the token was not valid (nothing to revoke).
  template <class Token = boost::asio::deferred_t>
  auto async_revoke(std::string_view access_token, Token&& token = {}) {
    auto call = token_call(detail::sessions::revoke_script, access_token, &Keys::session_key);
    return run<bool>(std::forward<Token>(token), std::move(call), &detail::sessions::map_revoke);
  }

  /// Revokes one of the user's sessions by id (SessionInfo::id, from async_list: "log out that
  /// device"). A script, then one deleting its token keys. void(error_code, bool): false when
  /// the user has no such live session.
  template <class Token = boost::asio::deferred_t>
  auto async_revoke_session(std::string_view user_id, std::string_view session_id,
                            Token&& token = {}) {
    auto call = user_call(detail::sessions::remove_script, user_id);
    if (call) call->args = {std::string(session_id)};
    if (session_id.empty()) call.reset();
    return run<bool>(std::forward<Token>(token), std::move(call), &map_one);
  }

  /// "Log out all devices": revokes every session of the user. A script, then one deleting
  /// their token keys. void(error_code, std::int64_t): how many live sessions were revoked.
  template <class Token = boost::asio::deferred_t>
  auto async_revoke_all(std::string_view user_id, Token&& token = {}) {
    auto call = user_call(detail::sessions::remove_script, user_id);
    if (call) call->args = {std::string()};
    return run<std::int64_t>(std::forward<Token>(token), std::move(call),
                             &detail::sessions::map_remove);
  }

  /// The user's live sessions (never an expired one: they are pruned, in the same script), in
  /// the order they end, the next to be evicted first. One script.
  /// void(error_code, std::vector<SessionInfo>).
  template <class Token = boost::asio::deferred_t>
  auto async_list(std::string_view user_id, Token&& token = {}) {
    return run<std::vector<SessionInfo>>(std::forward<Token>(token),
                                         user_call(detail::sessions::list_script, user_id),
                                         &detail::sessions::map_list);
  }

  /// Refresh-token rotation with reuse detection (see the top of the file): a valid refresh
  /// token gives the session new access and refresh tokens (the old access token stops
  /// working; the old refresh token is kept, to recognise its reuse); an already rotated one
  /// revokes its whole session. A script; when it rotated or revoked, one deleting the token
  /// keys left behind. void(error_code, RotateResult). `request` may carry the caller's own
  /// secrets for the new tokens (its device is ignored).
  template <class Token = boost::asio::deferred_t>
  requires token_for<Token, void(error_code, RotateResult)>
  auto async_rotate_refresh(std::string_view refresh_token, Token&& token = {}) {
    return rotate(refresh_token, SessionRequest(), std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_rotate_refresh(std::string_view refresh_token, SessionRequest const& request,
                            Token&& token = {}) {
    return rotate(refresh_token, request, std::forward<Token>(token));
  }

 private:
  static std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }

  static bool map_one(error_code& ec, detail::sessions::Reply& r, Call& call, Keys const& keys) {
    return detail::sessions::map_remove(ec, r, call, keys) == 1;
  }

  /// A call on the keys of a token's user (nullptr: malformed token or unusable options).
  /// The first key is `key_of(user, token id)`, the first argument the token id.
  std::unique_ptr<Call> token_call(detail::sessions::SessionScript const& script,
                                   std::string_view token,
                                   std::string (Keys::*key_of)(std::string_view, std::string_view)
                                       const) const {
    auto user = user_of(token);
    if (!user || !keys_->valid) return nullptr;
    auto call = std::make_unique<Call>();
    call->script = &script;
    std::string id = keys_->token_id(token);
    // No id: libcrypto failed. Never go on with an empty id, which every token would share.
    if (id.empty()) call->refusal = make_error_code(Error::crypto_failed);
    call->keys = {(keys_.get()->*key_of)(*user, id), keys_->index_key(*user),
                  keys_->data_key(*user)};
    call->args.push_back(std::move(id));
    call->user = std::move(*user);
    return call;
  }

  /// A call on a user's zset and hash (nullptr: an empty user id or unusable options).
  std::unique_ptr<Call> user_call(detail::sessions::SessionScript const& script,
                                  std::string_view user_id) const {
    if (user_id.empty() || !keys_->valid) return nullptr;
    auto call = std::make_unique<Call>();
    call->script = &script;
    call->keys = {keys_->index_key(user_id), keys_->data_key(user_id)};
    call->user = std::string(user_id);
    return call;
  }

  /// A new token of `user`: the caller's secret, or 256 random bits. Empty when the caller's
  /// secret is too short, or the random source failed (then `crypto_failed` is set).
  std::string new_token(std::string_view user, std::string const& secret,
                        bool& crypto_failed) const {
    std::string t = detail::sessions::base64url(
        std::span(reinterpret_cast<unsigned char const*>(user.data()), user.size()));
    t.push_back('.');
    if (!secret.empty()) {
      if (secret.size() < detail::sessions::kMinSecret) return {};
      return t + secret;
    }
    auto const bytes = random_bytes(detail::sessions::kSecretBytes);
    if (!bytes) {
      crypto_failed = true;
      return {};
    }
    return t + detail::sessions::base64url(*bytes);
  }

  /// `n` bytes from SessionOptions::random_source (or OpenSSL); nullopt when it failed.
  std::optional<std::vector<unsigned char>> random_bytes(std::size_t n) const {
    if (!options_.random_source) return detail::sessions::random_bytes(n);
    std::vector<unsigned char> out(n);
    if (!options_.random_source(std::span<unsigned char>(out))) return std::nullopt;
    return out;
  }

  /// A call that sends nothing and completes with Error::crypto_failed.
  static std::unique_ptr<Call> crypto_refusal() {
    auto call = std::make_unique<Call>();
    call->refusal = make_error_code(Error::crypto_failed);
    return call;
  }

  template <class T, class Token>
  auto create(std::string_view user_id, T const& data, SessionRequest const& request,
              Token&& token) {
    std::unique_ptr<Call> call;
    auto const sid = random_bytes(detail::sessions::kIdBytes);
    bool crypto_failed = !sid;
    std::string access, refresh, aid, rid;
    if (!user_id.empty() && sid) {
      access = new_token(user_id, request.access_secret, crypto_failed);
      refresh = new_token(user_id, request.refresh_secret, crypto_failed);
      if (!access.empty() && !refresh.empty()) {
        aid = keys_->token_id(access);
        rid = keys_->token_id(refresh);
        crypto_failed = crypto_failed || aid.empty() || rid.empty();
      }
    }
    if (crypto_failed) {
      call = crypto_refusal();
    } else if (!access.empty() && !refresh.empty() && keys_->valid) {
      call = std::make_unique<Call>();
      call->script = &detail::sessions::create_script;
      call->keys = {keys_->session_key(user_id, aid), keys_->refresh_key(user_id, rid),
                    keys_->index_key(user_id), keys_->data_key(user_id)};
      std::string bytes;
      codec_->encode(data, bytes);
      call->args = {detail::sessions::hex(*sid),
                    aid,
                    rid,
                    ms(options_.access_ttl),
                    ms(options_.refresh_ttl),
                    std::to_string(options_.max_sessions_per_user),
                    request.device,
                    std::move(bytes)};
      call->user = std::string(user_id);
      call->access_token = std::move(access);
      call->refresh_token = std::move(refresh);
    }
    return run<SessionTokens>(std::forward<Token>(token), std::move(call),
                              &detail::sessions::map_create);
  }

  template <class Token>
  auto rotate(std::string_view refresh_token, SessionRequest const& request, Token&& token) {
    auto call = token_call(detail::sessions::rotate_script, refresh_token, &Keys::refresh_key);
    if (call && !call->refusal) {
      bool crypto_failed = false;
      std::string access = new_token(call->user, request.access_secret, crypto_failed);
      std::string refresh = new_token(call->user, request.refresh_secret, crypto_failed);
      std::string aid, rid;
      if (!access.empty() && !refresh.empty()) {
        aid = keys_->token_id(access);
        rid = keys_->token_id(refresh);
        crypto_failed = crypto_failed || aid.empty() || rid.empty();
      }
      if (crypto_failed) {
        call = crypto_refusal();
      } else if (access.empty() || refresh.empty()) {
        call.reset();
      } else {
        call->args.insert(call->args.end(),
                          {rid, aid, ms(options_.access_ttl), ms(options_.refresh_ttl)});
        call->keys.insert(call->keys.begin() + 1, {keys_->refresh_key(call->user, rid),
                                                   keys_->session_key(call->user, aid)});
        call->access_token = std::move(access);
        call->refresh_token = std::move(refresh);
      }
    }
    return run<RotateResult>(std::forward<Token>(token), std::move(call),
                             &detail::sessions::map_rotate);
  }

  /// Runs `call` (nullptr: Error::invalid_argument, nothing sent) as an Op.
  template <class Result, class Token>
  auto run(Token&& token, std::unique_ptr<Call> call, detail::sessions::MapFn<Result> map) {
    bool const ok = call != nullptr && !call->refusal;
    return detail::erased_compose<void(error_code, Result)>(
        std::forward<Token>(token),
        detail::sessions::Op<B, Result>{backend_, keys_, std::move(call), map, ok},
        backend_->get_executor());
  }

  B* backend_;
  SessionOptions options_;
  std::shared_ptr<C const> codec_;  // shared with get operations in flight
  KeyLayout layout_;
  std::shared_ptr<Keys const> keys_;
};

}  // namespace rediskit
