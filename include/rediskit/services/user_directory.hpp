// rediskit::UserDirectory<Backend, Codec = JsonCodec>: the doctors' and patients' profiles of a
// messaging service, their online status, usage statistics, and a search with relevance
// scoring by name, specialty and email on plain Redis 7 (no RediSearch): seed 004's UserManager
// (storeUser, getUser, setUserOnline / setUserOffline, searchUsers, statistics).
//
//   rediskit::UserDirectory dir(backend);                         // seed 004's key names
//   rediskit::DirectoryProfile p("Dupont", "Hélène", "helene.dupont@chu.fr", "Cardiologie");
//   bool created = co_await dir.async_store_user("79", "medecin", p);
//   co_await dir.async_set_user_online("79", "medecin");
//   std::vector<rediskit::UserMatch> hits =
//       co_await dir.async_search_users("hel cardio", "medecin", 10);   // "" type: both
//   // hits[0].user: {id "79", type "medecin", profile, online}; hits[0].score
//   rediskit::UserDirectoryStats s = co_await dir.async_get_stats();   // O(1)
//
// User types are seed 004's: "medecin" and "patient" (kUserTypes); anything else is refused.
// A profile (DirectoryProfile, described: JsonCodec writes {"nom","prenom","email","specialite",
// "telephone"}, seed 004's French field names; members missing from a stored object keep their
// defaults, extra members such as the seed's `id` are ignored) is stored with the Codec.
//
// Keys (<p>: UserDirectoryOptions::key_prefix, "messaging"; <t>: the user type; <id>: the id;
// clustered: every key behind the hash tag {<cluster_tag>}, "{messaging}:messaging:..."):
//
//   plain (seed 004)            clustered                   type  what
//   <p>:user:<t>:<id>           {<tag>}:<p>:user:<t>:<id>   string the profile (Codec bytes:
//                                                                 JSON by default)
//   <p>:users:<t>:index         {<tag>}:<p>:users:<t>:index zset  the search index, all scores
//                                                                 0 (members: see below)
//   <p>:users:<t>:meta          {<tag>}:<p>:users:<t>:meta  hash  <id> -> the user's tokens and
//                                                                 sort name (below)
//   <p>:users:<t>:online        {<tag>}:<p>:users:<t>:online set  the ids online now
//
// The profile key is seed 004's `messaging:user:{type}:{id}`, so a Node service reads it. The
// three `users:` keys are rediskit's (the seed keeps its index in the process).
// Clustered layout (ClusterBackend's default, or UserDirectoryOptions::key_layout): every key
// carries the one hash tag {<cluster_tag>}, as MessageStore's and ConversationManager's
// (messaging.hpp: the same default tag and prefix, so `{messaging}:messaging:user:<t>:<id>`
// sits beside their `{messaging}:messaging:user:<t>:<id>:conversations`). A store, an update or a
// delete changes the profile and the index in one script, and the index of one type is one sorted
// set (a search reads the entries of a prefix in one range), so a user's profile must be in the
// slot of the index: every key of the directory is in the slot of {<cluster_tag>}, on one master.
// That is the price of "the index never disagrees with the profiles" (as VoteService's ranking):
// one directory's writes and searches go to one master whatever the cluster's size. The alternative
// (profiles spread by id, the index updated in a second step, or one index key per token spread
// over the cluster) would let a search find a profile by its old name, or a crash leave tokens of a
// deleted user, and a search of several terms would span slots; it is not offered. Run several
// directories (other cluster tags) to spread independent user bases. The plain layout on
// ClusterBackend fails every script with Error::cross_slot before anything is sent.
//
// The index. A profile's text fields are folded (rediskit/detail/text_fold.hpp: lower case,
// accents of Latin-1 and Latin Extended-A removed, "Hélène" -> "helene", "Œ" -> "oe") and cut
// into tokens on every non-alphanumeric character, in C++; each token is at most
// kUserTokenBytes (32) bytes. Fields: nom and prenom are the *name* (field rank 0), specialite
// the *specialty* (rank 1), email the *email* (rank 2: "jean.dupont@chu.fr" gives jean, dupont,
// chu, fr); telephone is not indexed. The meta hash keeps, per user, the sort name (folded nom
// then prenom, cut to kUserSortBytes) and the list of (rank, token). The script derives the
// index entries from that list, for the new profile and for the old one it replaces:
//   - for each token t of rank r: the key t with code r (an exact entry), and each prefix of t
//     of min_prefix (2) bytes or more, shorter than t, with code 3 + r (a prefix entry);
//   - one entry per key and user, with the lowest code (an exact name match beats everything);
//   - the member is "<key>\0<code><sort name>\0<id>": the entries of a key sort by code (best
//     match first), then by sort name, then by id.
// The C++ only computes tokens; the script (Lua on Redis, its C++ twin in the memory engine)
// reads the old list, removes the old entries, writes the profile, the new list and the new
// entries: a profile update moves the user's tokens atomically, and a delete removes them.
//
// Search (async_search_users(query, type, limit)). The query is folded and tokenised as the
// profiles; its distinct tokens are the terms (1 to max_query_terms). The score of a user for
// one term is the best, over the user's tokens, of
//
//     exact token (token == term):                                    6 name, 5 specialty, 4 email
//     prefix (the token starts with the term, is longer, and the
//             term has min_prefix bytes or more):                     3 name, 2 specialty, 1 email
//     (none: 0, the term is not matched)
//
// and the relevance (UserMatch::score) is 100 x (terms matched) + the sum of the term scores.
// So a user matching every term ranks above one matching fewer, then an exact token above a
// prefix match, then a name above a specialty above an email. Ties: online users first, then
// by sort name (folded nom then prenom, its first kUserSortBytes bytes, compared as bytes),
// then type ("medecin" first), then id. The term score is the code of the user's index entry
// under the key `term` (6 - code), so the index scores the users a term's read finds; the
// others are scored from their token lists in the meta hash, from which the index entries
// derive (the same scripts write both), by the same rule. The search never reads profiles.
// Round trips: two. (1) One read-only script reads, per type and term, the entries of the key
// `term` (ZRANGE BYLEX, at most candidates_per_term of them: best code first, then by sort
// name); when a term's read was cut at that bound and the query has several terms, the
// candidates that other terms found, and this term's read did not, are scored for it from
// their token lists (one HMGET of the meta hash per type); then the candidates' online flags
// (SMISMEMBER). It scores them and returns those whose (relevance, online) reaches the
// `limit`-th best, with their sort names (on MemoryBackend the script's C++ twin returns only
// the `limit` best: it can order names as bytes, the Lua cannot promise to, so the Lua returns
// every tie for the service to order). (2) The service sorts them exactly, keeps `limit`,
// and reads their profiles (MGET). A user deleted between the two round trips is left out.
// Bounded work: a search reads at most candidates_per_term (50) entries per term and type, and
// one token list per candidate, whatever the directory's size. (Until 2026-12-07 a candidate was
// probed in the index instead, with ZMSCORE of the six members it could have per cut term: for
// "jean dupont" over both types, 1 200 members built in Lua; the token lists halved the
// script's time of such searches: benchmarks/README.md.) A short prefix such as "ma" may match
// tens of thousands of users: the search ranks the first 50 by (code, name) (exact name
// matches first, alphabetically) and a user beyond them is found by
// typing more. A term shorter than min_prefix bytes matches whole tokens only.
// Memory: one index entry per distinct key (token or prefix) of a profile, each holding the key,
// the sort name and the id: ~32 entries and ~3.2 KB per user in Redis 7 (INFO used_memory) for
// the benchmark's French names, specialties and emails (benchmarks/user_directory_bench.cpp).
//
// Online status and presence. The online set of each type holds the ids marked online by
// async_set_user_online (seed 004's setUserOnline: online until set offline or deleted); the
// search ranks them first and the stats count them (SCARD). Given an OnlineUserManager, the
// directory also marks the user online / offline there, as "<type>:<id>" (presence_typed_ids,
// the participant name of messaging.hpp; or the bare id) with socket id presence_socket, after its
// own script (a second round trip): rooms, heartbeats and presence expiry then see directory users.
// The directory's flag does not expire with that presence: call async_set_user_offline when the
// user leaves.
//
// Statistics (async_get_stats): users by type (HLEN of the meta hashes) and online users by
// type (SCARD of the online sets): one round trip, O(1), never a key scan. They count what the
// directory's own keys hold, so they never drift from the data.
//
// Errors and limits. Bad input completes with Error::invalid_argument and sends nothing: an
// empty id or one over kUserIdBytes (128) bytes, a type other than "medecin" / "patient"
// (search: "" or one of them), a profile whose nom and prenom are both empty, a field over its
// limit (nom, prenom, specialite: 100 bytes; email 254; telephone 32), a query with no token,
// over 1024 bytes or over max_query_terms terms, a limit outside [1, max_results].
// UserDirectory::check_user / check_query return the reason as text ("" when fine) for logs
// and forms. A stored profile that does not decode fails async_get_user with
// Error::decode_failed. Options that cannot work throw rediskit::Exception
// (Error::invalid_config) from the constructor.
//
// Every operation completes through the handler's executor, never inside the initiating call.
// Round trips: store, delete, get, stats: one; online / offline: one (two with an
// OnlineUserManager); search: two. Thread safety: as the backend (the directory holds no
// mutable state). Lifetimes: the directory, its backend and the OnlineUserManager must outlive
// the operations; arguments may die once the async_ call returns. Cancellation: the handler's
// slot reaches the backend's operation in flight. Every directory sharing keys must use the
// same key_prefix, layout and min_prefix (the index entries are derived with it).
#pragma once

#include <rediskit/cmd/hashes.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/cmd/sets.hpp>
#include <rediskit/cmd/sorted_sets.hpp>
#include <rediskit/cmd/strings.hpp>
#include <rediskit/codec/json_codec.hpp>
#include <rediskit/command.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/concepts/codec.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/text_fold.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/script.hpp>
#include <rediskit/services/online_user_manager.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <boost/describe/class.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace rediskit {

/// Seed 004's user types.
inline constexpr std::array<std::string_view, 2> kUserTypes = {"medecin", "patient"};

/// Limits (see the top of this file).
inline constexpr std::size_t kUserIdBytes = 128;
inline constexpr std::size_t kUserNameBytes = 100;       ///< nom, prenom, specialite
inline constexpr std::size_t kUserEmailBytes = 254;
inline constexpr std::size_t kUserPhoneBytes = 32;
inline constexpr std::size_t kUserTokenBytes = 32;       ///< longer tokens are cut
inline constexpr std::size_t kUserQueryBytes = 1024;
inline constexpr std::size_t kUserSortBytes = 32;        ///< sort name kept in index entries

/// A doctor's or a patient's profile: seed 004's fields (French names, as its JavaScript
/// objects). Owns its strings and has constructors (safe in a co_await expression on g++ 12).
struct DirectoryProfile {
  DirectoryProfile() = default;
  DirectoryProfile(std::string nom_, std::string prenom_, std::string email_ = {},
              std::optional<std::string> specialite_ = {},
              std::optional<std::string> telephone_ = {})
      : nom(std::move(nom_)),
        prenom(std::move(prenom_)),
        email(std::move(email_)),
        specialite(std::move(specialite_)),
        telephone(std::move(telephone_)) {}
  std::string nom;                          ///< family name (searched as the name)
  std::string prenom;                       ///< given name (searched as the name)
  std::string email;                        ///< searched as the email
  std::optional<std::string> specialite;    ///< a doctor's specialty (searched as such)
  std::optional<std::string> telephone;     ///< not searched
  friend bool operator==(DirectoryProfile const&, DirectoryProfile const&) = default;
};
BOOST_DESCRIBE_STRUCT(DirectoryProfile, (), (nom, prenom, email, specialite, telephone))

/// A user of the directory.
struct DirectoryUser {
  std::string id;
  std::string type;  ///< "medecin" | "patient"
  DirectoryProfile profile{};
  bool online = false;
  friend bool operator==(DirectoryUser const&, DirectoryUser const&) = default;
};

/// One search result: the user and its relevance (see the top of this file).
struct UserMatch {
  DirectoryUser user{};
  std::int64_t score = 0;          ///< 100 x terms matched + the term scores
  std::int64_t terms_matched = 0;  ///< how many of the query's terms the user matches
};

/// Seed 004's statistics: users and online users by type.
struct UserDirectoryStats {
  std::int64_t medecins = 0;
  std::int64_t patients = 0;
  std::int64_t online_medecins = 0;
  std::int64_t online_patients = 0;
  std::int64_t total() const noexcept { return medecins + patients; }
  std::int64_t total_online() const noexcept { return online_medecins + online_patients; }
  friend bool operator==(UserDirectoryStats const&, UserDirectoryStats const&) = default;
};

/// Options of UserDirectory; the defaults are seed 004's names.
struct UserDirectoryOptions {
  /// Keys `<key_prefix>:user:<type>:<id>` and `<key_prefix>:users:<type>:...` (empty: no
  /// prefix).
  std::string key_prefix = "messaging";
  /// The hash tag of every key in the clustered layout, `{<cluster_tag>}:<key_prefix>:...` (not
  /// empty, no '{' or '}'): MessagingOptions' default, so MessageStore, ConversationManager and
  /// the directory share one slot.
  std::string cluster_tag = "messaging";
  /// Shortest prefix indexed (bytes, 1..kUserTokenBytes). Shorter terms match whole tokens.
  std::size_t min_prefix = 2;
  /// Index entries a search reads per term and type (1..500): the bound of its work.
  std::int64_t candidates_per_term = 50;
  /// Most distinct terms in a query (1..8).
  std::size_t max_query_terms = 8;
  /// Largest `limit` of a search (1..1000).
  std::int64_t max_results = 100;
  /// With an OnlineUserManager: its user id is "<type>:<id>" (true) or "<id>" (false).
  bool presence_typed_ids = true;
  /// With an OnlineUserManager: the socket id the directory's set_user_online registers.
  std::string presence_socket = "directory";
  /// Unset: default_key_layout_v<B> (clustered on ClusterBackend, plain elsewhere).
  std::optional<KeyLayout> key_layout{};
};

namespace detail::userdir {

using boost::system::error_code;

inline constexpr std::string_view kBadArgs =
    "ERR user directory: wrong number of keys or arguments";

/// The field ranks of the index (see the top of the file).
enum : int { kName = 0, kSpecialty = 1, kEmail = 2 };

/// The meta value of a profile: "<sort name>" then "|<rank><token>" for each distinct
/// (rank, token), in field order. Tokens and the sort name never hold '|' (folded text).
inline std::string meta_of(DirectoryProfile const& p) {
  using text::fold_tokens;
  std::vector<std::pair<int, std::string>> toks;
  auto add = [&](int rank, std::string_view field) {
    for (auto& t : fold_tokens(field, kUserTokenBytes)) {
      std::pair<int, std::string> e{rank, std::move(t)};
      if (std::find(toks.begin(), toks.end(), e) == toks.end()) toks.push_back(std::move(e));
    }
  };
  add(kName, p.nom);
  add(kName, p.prenom);
  if (p.specialite) add(kSpecialty, *p.specialite);
  add(kEmail, p.email);
  std::string name = text::fold(p.nom);
  std::string const pre = text::fold(p.prenom);
  if (!name.empty() && !pre.empty()) name.push_back(' ');
  name += pre;
  std::string out(text::cut_token(name, kUserSortBytes));
  for (auto const& [r, t] : toks) {
    out.push_back('|');
    out.push_back(static_cast<char>('0' + r));
    out += t;
  }
  return out;
}

/// Reads a meta value: calls f(rank, token) for each (rank, token) in order and returns the
/// sort name. Allocates nothing (the search's twin scores candidates with it).
template <class F>
std::string_view for_each_meta_token(std::string_view m, F&& f) {
  auto bar = m.find('|');
  std::string_view const name = m.substr(0, bar);
  while (bar != std::string_view::npos) {
    auto const next = m.find('|', bar + 1);
    auto const e = m.substr(bar + 1, next == std::string_view::npos ? next : next - bar - 1);
    if (e.size() >= 2 && e[0] >= '0' && e[0] <= '2') f(e[0] - '0', e.substr(1));
    bar = next;
  }
  return name;
}

/// A meta value read back: the sort name and the (rank, token) list.
struct Meta {
  std::string_view name;
  std::vector<std::pair<int, std::string_view>> tokens;
};

inline Meta parse_meta(std::string_view m) {
  Meta out;
  out.name =
      for_each_meta_token(m, [&](int r, std::string_view t) { out.tokens.emplace_back(r, t); });
  return out;
}

/// The index members of a user (the script's entries(): see the top of the file).
inline std::vector<std::string> entries_of(std::string_view meta, std::string_view id,
                                           std::size_t min_prefix) {
  std::map<std::string_view, int> best;
  auto put = [&](std::string_view k, int code) {
    auto [it, fresh] = best.emplace(k, code);
    if (!fresh && code < it->second) it->second = code;
  };
  Meta const parsed = parse_meta(meta);
  for (auto const& [r, t] : parsed.tokens) {
    put(t, r);
    for (std::size_t n = std::max<std::size_t>(min_prefix, 1); n < t.size(); ++n)
      put(t.substr(0, n), r + 3);
  }
  std::vector<std::string> out;
  out.reserve(best.size());
  for (auto const& [k, c] : best) {
    std::string m(k);
    m.push_back('\0');
    m.push_back(static_cast<char>('0' + c));
    m += parsed.name;
    m.push_back('\0');
    m += id;
    out.push_back(std::move(m));
  }
  return out;
}

inline std::size_t arg_size(std::string_view s) {
  std::size_t v = 0;
  for (char c : s)
    if (c >= '0' && c <= '9') v = v * 10 + static_cast<std::size_t>(c - '0');
  return v;
}

inline void zrem_all(ScriptContext auto& ctx, std::string_view key,
                     std::vector<std::string> const& m) {
  if (m.empty()) return;
  std::vector<std::string_view> v(m.begin(), m.end());
  ctx.call(cmd::zrem{key, v});
}

inline void zadd_all(ScriptContext auto& ctx, std::string_view key,
                     std::vector<std::string> const& m) {
  if (m.empty()) return;
  std::vector<ScoreMember> v;
  v.reserve(m.size());
  for (auto const& s : m)
    v.push_back(ScoreMember{0, s});
  ctx.call(cmd::zadd{.key = key, .members = v});
}

// Lua shared by the write scripts: entries(meta, id) as entries_of, and chunked ZADD / ZREM
// (unpack has a limit).
inline constexpr char const kPrelude[] = R"lua(
local minp = tonumber(ARGV[#ARGV])
local function entries(meta, id)
  local best, out = {}, {}
  local p = string.find(meta, '|', 1, true)
  if not p then return out end
  for e in string.gmatch(string.sub(meta, p + 1), '[^|]+') do
    local r = string.byte(e, 1) - 48
    if #e >= 2 and r >= 0 and r <= 2 then
      local t = string.sub(e, 2)
      local b = best[t]
      if not b or r < b then best[t] = r end
      for n = math.max(minp, 1), #t - 1 do
        local k = string.sub(t, 1, n)
        b = best[k]
        if not b or r + 3 < b then best[k] = r + 3 end
      end
    end
  end
  local tail = string.sub(meta, 1, p - 1) .. '\0' .. id
  for k, c in pairs(best) do out[#out + 1] = k .. '\0' .. string.char(48 + c) .. tail end
  return out
end
local function zrem(key, m)
  for i = 1, #m, 500 do redis.call('ZREM', key, unpack(m, i, math.min(i + 499, #m))) end
end
local function zadd(key, m)
  for i = 1, #m, 500 do
    local a = {}
    for j = i, math.min(i + 499, #m) do a[#a + 1] = 0; a[#a + 1] = m[j] end
    redis.call('ZADD', key, unpack(a))
  end
end
)lua";

// KEYS: profile, index, meta. ARGV: id, bytes, meta, min_prefix. -> 1 created, 0 replaced (the
// profile key existed, written by the directory or by another program).
inline std::int64_t store_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  if (k.size() != 3 || a.size() != 4) ctx.fail(kBadArgs);
  std::size_t const minp = arg_size(a[3]);
  auto const old = ctx.call(cmd::hget{k[2], a[0]});
  if (old) zrem_all(ctx, k[1], entries_of(*old, a[0], minp));
  auto const existed = ctx.call(cmd::exists{k[0]});
  ctx.call(cmd::set{.key = k[0], .value = a[1]});
  ctx.call(cmd::hset{k[2], FieldValue{a[0], a[2]}});
  zadd_all(ctx, k[1], entries_of(a[2], a[0], minp));
  return existed > 0 ? 0 : 1;
}

inline auto const store_script = make_script<std::int64_t>(
    std::string(R"lua(
if #KEYS ~= 3 or #ARGV ~= 4 then
  return redis.error_reply('ERR user directory: wrong number of keys or arguments')
end)lua") + kPrelude + R"lua(
local id = ARGV[1]
local old = redis.call('HGET', KEYS[3], id)
if old then zrem(KEYS[2], entries(old, id)) end
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[3], id, ARGV[3])
zadd(KEYS[2], entries(ARGV[3], id))
if existed == 1 then return 0 end
return 1)lua",
    [](ScriptContext auto& c) { return store_twin(c); });

// KEYS: profile, index, meta, online. ARGV: id, min_prefix. -> 1 when there was a user.
inline std::int64_t delete_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  if (k.size() != 4 || a.size() != 2) ctx.fail(kBadArgs);
  auto const old = ctx.call(cmd::hget{k[2], a[0]});
  if (old) {
    zrem_all(ctx, k[1], entries_of(*old, a[0], arg_size(a[1])));
    ctx.call(cmd::hdel{k[2], a[0]});
  }
  auto const n = ctx.call(cmd::del{k[0]});
  ctx.call(cmd::srem{k[3], a[0]});
  return old || n > 0 ? 1 : 0;
}

inline auto const delete_script = make_script<std::int64_t>(
    std::string(R"lua(
if #KEYS ~= 4 or #ARGV ~= 2 then
  return redis.error_reply('ERR user directory: wrong number of keys or arguments')
end)lua") + kPrelude + R"lua(
local id = ARGV[1]
local old = redis.call('HGET', KEYS[3], id)
if old then
  zrem(KEYS[2], entries(old, id))
  redis.call('HDEL', KEYS[3], id)
end
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[4], id)
if old or n > 0 then return 1 end
return 0)lua",
    [](ScriptContext auto& c) { return delete_twin(c); });

// KEYS: meta, online. ARGV: id, "1" (online) | "0" (offline).
// -> online: -1 no such user, else 1 when it was offline; offline: 1 when it was online.
inline std::int64_t online_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  if (k.size() != 2 || a.size() != 2) ctx.fail(kBadArgs);
  if (a[1] == "1") {
    if (!ctx.call(cmd::hexists{k[0], a[0]})) return -1;
    return ctx.call(cmd::sadd{k[1], a[0]});
  }
  return ctx.call(cmd::srem{k[1], a[0]});
}

inline auto const online_script = make_script<std::int64_t>(R"lua(
if #KEYS ~= 2 or #ARGV ~= 2 then
  return redis.error_reply('ERR user directory: wrong number of keys or arguments')
end
if ARGV[2] == '1' then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
  return redis.call('SADD', KEYS[2], ARGV[1])
end
return redis.call('SREM', KEYS[2], ARGV[1]))lua",
                                                           [](ScriptContext auto& c) {
                                                             return online_twin(c);
                                                           });

/// A row of the search script's reply.
struct Scored {
  std::size_t type = 0;
  std::string_view id;    // in the script's reply
  std::string_view name;  // in the script's reply
  std::int64_t score = 0;
  std::int64_t matched = 0;
  bool online = false;
};

/// A row of the search script: "<type>|<relevance>|<matched>|<online>|<name>\0<id>".
inline std::optional<Scored> parse_row(std::string_view row) {
  Scored x;
  std::int64_t f[4] = {};
  for (auto& v : f) {
    auto const bar = row.find('|');
    if (bar == std::string_view::npos || bar == 0) return std::nullopt;
    v = static_cast<std::int64_t>(arg_size(row.substr(0, bar)));
    row.remove_prefix(bar + 1);
  }
  auto const z = row.find('\0');
  if (z == std::string_view::npos) return std::nullopt;
  x.type = static_cast<std::size_t>(f[0]);
  x.score = f[1];
  x.matched = f[2];
  x.online = f[3] == 1;
  x.name = row.substr(0, z);
  x.id = row.substr(z + 1);
  return x;
}

/// The search order: relevance, online first, sort name (bytes), type, id.
inline bool before(Scored const& x, Scored const& y) {
  if (x.score != y.score) return x.score > y.score;
  if (x.online != y.online) return x.online;
  if (x.name != y.name) return x.name < y.name;
  if (x.type != y.type) return x.type < y.type;
  return x.id < y.id;
}

// KEYS: (index, online, meta) per type searched. ARGV: cap, limit, min_prefix, terms... -> rows
// "<type position>|<relevance>|<terms matched>|<online 1|0>|<sort name>\0<id>", in no order:
// - the Lua: every candidate whose (relevance, online) reaches the limit-th best. The service
//   sorts them exactly (`before`: names as bytes; Lua's string comparison follows the server's
//   locale) and keeps `limit` of them;
// - the twin: only those `limit` (it orders names as bytes itself), so the service's result is
//   the same, without a row for each tie (a common name can tie hundreds).
// The parity test is the service's: the same search results on every backend.
// Scoring (see the top of the file): the code of a user's entry under key `term` is its best
// match of that term (6 - code is the term score). For a term whose read was cut at `cap`, the
// candidates found by other terms are scored from their token lists (the meta hash, one HMGET:
// the index entries derive from those lists, in the same scripts, so both give the same score).
struct SearchCand {
  std::string_view rest;  // "<sort name>\0<id>", in a ZRANGE reply
  std::array<std::int8_t, 8> s{};  // term scores (0: no match)
  std::string_view id() const {
    auto const z = rest.find('\0');
    return z == std::string_view::npos ? std::string_view() : rest.substr(z + 1);
  }
  std::string_view name() const { return rest.substr(0, rest.find('\0')); }
};

/// One entry a term's read found: the user ("<sort name>\0<id>"), the term, its score.
struct SearchHit {
  std::string_view rest;
  std::uint8_t term = 0;
  std::int8_t score = 0;
};

/// The score of `term` against a user's tokens (its meta value, read as parse_meta reads it),
/// as the index entries entries_of derives from them would give: 6 - rank for a token equal to
/// the term, 3 - rank for a longer token that starts with it (a term of min_prefix bytes or
/// more), the best of them; 0 for none.
inline std::int64_t meta_score(std::string_view meta, std::string_view term,
                               std::size_t min_prefix) {
  std::int64_t best = 0;
  for_each_meta_token(meta, [&](int r, std::string_view t) {
    if (t == term)
      best = std::max<std::int64_t>(best, 6 - r);
    else if (term.size() >= min_prefix && t.size() > term.size() && t.starts_with(term))
      best = std::max<std::int64_t>(best, 3 - r);
  });
  return best;
}

inline std::vector<std::string> search_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  if (k.empty() || k.size() % 3 != 0 || a.size() < 4 || a.size() > 11) ctx.fail(kBadArgs);
  auto const cap = static_cast<std::int64_t>(arg_size(a[0]));
  auto const limit = arg_size(a[1]);
  auto const min_prefix = arg_size(a[2]);
  std::size_t const nterms = a.size() - 3;
  // The script writes nothing: the views of the engine's members and values stay valid.
  std::vector<Scored> rows;
  std::vector<SearchCand> list;
  std::vector<SearchHit> hits;
  std::vector<std::string_view> ids, need_ids;
  std::vector<std::size_t> need;
  std::string lo, hi;
  for (std::size_t t = 0; t < k.size(); t += 3) {
    list.clear();
    hits.clear();
    std::array<bool, 8> cut{};
    for (std::size_t i = 0; i < nterms; ++i) {
      std::string_view const term = a[i + 3];
      lo.assign(term).push_back('\0');
      hi.assign(term).push_back('\1');
      auto const r = ctx.view(cmd::zrange_by_lex{.key = k[t],
                                                 .min = LexBound::incl(lo),
                                                 .max = LexBound::excl(hi),
                                                 .limit = RangeLimit{0, cap}});
      cut[i] = static_cast<std::int64_t>(r.size()) >= cap;
      for (std::string_view const m : r) {
        if (m.size() < term.size() + 2) continue;
        hits.push_back({m.substr(term.size() + 2), static_cast<std::uint8_t>(i),
                        static_cast<std::int8_t>(6 - (m[term.size() + 1] - '0'))});
      }
    }
    // One candidate per user: the hits sorted by user, then grouped (no hash map).
    std::sort(hits.begin(), hits.end(),
              [](SearchHit const& x, SearchHit const& y) { return x.rest < y.rest; });
    for (std::size_t h = 0; h < hits.size(); ++h) {
      if (h == 0 || hits[h].rest != hits[h - 1].rest) {
        list.emplace_back();
        list.back().rest = hits[h].rest;
      }
      list.back().s[hits[h].term] = hits[h].score;
    }
    if (list.empty()) continue;
    ids.clear();
    for (auto const& c : list)
      ids.push_back(c.id());
    if (nterms > 1) {
      need.clear();
      need_ids.clear();
      for (std::size_t c = 0; c < list.size(); ++c)
        for (std::size_t i = 0; i < nterms; ++i)
          if (cut[i] && list[c].s[i] == 0) {
            need.push_back(c);
            need_ids.push_back(ids[c]);
            break;
          }
      if (!need.empty()) {
        auto const metas = ctx.view(cmd::hmget{k[t + 2], need_ids});
        for (std::size_t q = 0; q < need.size() && q < metas.size(); ++q) {
          if (!metas[q]) continue;
          auto& x = list[need[q]];
          for (std::size_t i = 0; i < nterms; ++i)
            if (cut[i] && x.s[i] == 0)
              x.s[i] = static_cast<std::int8_t>(meta_score(*metas[q], a[i + 3], min_prefix));
        }
      }
    }
    auto const on = ctx.call(cmd::smismember{k[t + 1], ids});
    for (std::size_t c = 0; c < list.size(); ++c) {
      std::int64_t rel = 0, matched = 0;
      for (std::size_t i = 0; i < nterms; ++i) {
        rel += list[c].s[i];
        matched += list[c].s[i] > 0;
      }
      rows.push_back(Scored{.type = t / 3,
                            .id = ids[c],
                            .name = list[c].name(),
                            .score = rel + 100 * matched,
                            .matched = matched,
                            .online = c < on.size() && on[c]});
    }
  }
  // The limit best, in the service's order (`before`: names as bytes, which Lua's string
  // comparison cannot promise, so the Lua returns every tie at the limit-th for the service).
  if (limit > 0 && rows.size() > limit) {
    std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(limit), rows.end(),
                      before);
    rows.resize(limit);
  }
  std::vector<std::string> out;
  out.reserve(rows.size());
  for (auto const& x : rows) {
    char head[96];  // four 64-bit numbers and their bars
    char* p = head;
    auto field = [&](std::int64_t v) {
      p = std::to_chars(p, head + sizeof head, v).ptr;
      *p++ = '|';
    };
    field(static_cast<std::int64_t>(x.type));
    field(x.score);
    field(x.matched);
    field(x.online ? 1 : 0);
    std::string& row = out.emplace_back();
    row.reserve(static_cast<std::size_t>(p - head) + x.name.size() + 1 + x.id.size());
    row.append(head, p).append(x.name).append(1, '\0').append(x.id);
  }
  return out;
}

inline auto const search_script =
    make_script<std::vector<std::string>>(R"lua(
if #KEYS == 0 or #KEYS % 3 ~= 0 or #ARGV < 4 or #ARGV > 11 then
  return redis.error_reply('ERR user directory: wrong number of keys or arguments')
end
local cap, limit, minp, nterms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), #ARGV - 3
local fmt, sub, find, byte = string.format, string.sub, string.find, string.byte
-- The patterns of a term's tokens in a meta value, by rank: "|0<term>", "|1<term>", "|2<term>".
local pats, plen, prefix_ok = {}, {}, {}
for i = 1, nterms do
  local t = ARGV[i + 3]
  pats[i] = {'|0' .. t, '|1' .. t, '|2' .. t}
  plen[i] = #t + 2
  prefix_ok[i] = #t >= minp
end
-- meta_score of the C++ twin: a token equal to the term gives 6 - rank (the best left at that
-- rank: return), a longer one 3 - rank.
local function meta_score(meta, from, i)
  local best, pi, n = 0, pats[i], plen[i]
  for r = 1, 3 do
    local p = find(meta, pi[r], from, true)
    while p do
      local e = p + n
      if e > #meta or byte(meta, e) == 124 then return 7 - r end
      if prefix_ok[i] and best < 4 - r then best = 4 - r end
      p = find(meta, pi[r], p + 1, true)
    end
  end
  return best
end
local rows, keys = {}, {}
for k = 1, #KEYS, 3 do
  local idx = KEYS[k]
  local by, rests, sc, cut = {}, {}, {}, {}
  for i = 1, nterms do
    local t = ARGV[i + 3]
    local r = redis.call('ZRANGE', idx, '[' .. t .. '\0', '(' .. t .. '\1', 'BYLEX', 'LIMIT', 0,
      cap)
    cut[i] = #r >= cap
    local si, off = {}, #t + 3
    sc[i] = si
    for j = 1, #r do
      local m = r[j]
      local rest = sub(m, off)
      local c = by[rest]
      if not c then
        c = #rests + 1
        rests[c] = rest
        by[rest] = c
      end
      si[c] = 54 - byte(m, off - 1)
    end
  end
  local n = #rests
  if n > 0 then
    local ids = {}
    for c = 1, n do
      local rest = rests[c]
      ids[c] = sub(rest, find(rest, '\0', 1, true) + 1)
    end
    if nterms > 1 then
      -- Candidates a cut read may have missed for its term: scored from their token lists.
      local need, nn = {}, 0
      for c = 1, n do
        for i = 1, nterms do
          if cut[i] and not sc[i][c] then
            nn = nn + 1
            need[nn] = c
            break
          end
        end
      end
      for p = 1, nn, 3000 do
        local last = math.min(p + 2999, nn)
        local fields = {}
        for q = p, last do fields[q - p + 1] = ids[need[q]] end
        local metas = redis.call('HMGET', KEYS[k + 2], unpack(fields))
        for q = p, last do
          local meta = metas[q - p + 1]
          local from = meta and find(meta, '|', 1, true)
          if from then
            local c = need[q]
            for i = 1, nterms do
              if cut[i] and not sc[i][c] then
                local v = meta_score(meta, from, i)
                if v > 0 then sc[i][c] = v end
              end
            end
          end
        end
      end
    end
    local on = redis.call('SMISMEMBER', KEYS[k + 1], unpack(ids))
    local ty = (k - 1) / 3
    for c = 1, n do
      local rel, m = 0, 0
      for i = 1, nterms do
        local v = sc[i][c]
        if v then rel, m = rel + v, m + 1 end
      end
      rel = rel + 100 * m
      local r = #rows + 1
      rows[r] = fmt('%d|%d|%d|%d|', ty, rel, m, on[c]) .. rests[c]
      keys[r] = rel * 2 + on[c]
    end
  end
end
local sorted = {}
for j = 1, #keys do sorted[j] = keys[j] end
table.sort(sorted)
local th = sorted[#sorted - limit + 1] or sorted[1] or 0
local out = {}
for j = 1, #rows do
  if keys[j] >= th then out[#out + 1] = rows[j] end
end
return out)lua",
                                          [](ScriptContext auto& c) { return search_twin(c); });

inline error_code invalid() {
  return make_error_code(Error::invalid_argument);
}

inline bool known_type(std::string_view t) {
  return std::find(kUserTypes.begin(), kUserTypes.end(), t) != kUserTypes.end();
}

/// Why the query cannot be searched ("" when it can); its terms into `terms`.
inline std::string query_terms(std::string_view query, std::size_t max_terms,
                               std::vector<std::string>& terms) {
  terms.clear();
  if (query.size() > kUserQueryBytes)
    return "the query is longer than " + std::to_string(kUserQueryBytes) + " bytes";
  for (auto& t : text::fold_tokens(query, kUserTokenBytes))
    if (std::find(terms.begin(), terms.end(), t) == terms.end()) terms.push_back(std::move(t));
  if (terms.empty()) return "the query has no letter or digit to search";
  if (terms.size() > max_terms)
    return "the query has " + std::to_string(terms.size()) + " distinct terms, more than " +
           std::to_string(max_terms);
  return {};
}

}  // namespace detail::userdir

/// Seed 004's UserManager over any Backend (see the top of this file).
template <Backend B, Codec C = JsonCodec>
class UserDirectory {
  using error_code = boost::system::error_code;
  using BoolSig = void(error_code, bool);
  using UserSig = void(error_code, std::optional<DirectoryUser>);
  using StatsSig = void(error_code, UserDirectoryStats);
  using SearchSig = void(error_code, std::vector<UserMatch>);
  template <class Sig>
  using Erased = detail::AnyHandler<Sig>;

 public:
  using executor_type = typename B::executor_type;
  using Presence = OnlineUserManager<B>;

  /// `backend` (and `presence`, when given) must outlive the directory and its operations.
  /// Throws rediskit::Exception (Error::invalid_config) when an option cannot work (see
  /// UserDirectoryOptions).
  explicit UserDirectory(B& backend, UserDirectoryOptions options = {},
                         Presence* presence = nullptr, C codec = {})
      : backend_(backend),
        opt_(std::move(options)),
        layout_(opt_.key_layout.value_or(default_key_layout_v<B>)),
        presence_(presence),
        codec_(std::move(codec)) {
    auto bad = [](char const* what) {
      throw Exception(make_error_code(Error::invalid_config), what);
    };
    if (opt_.min_prefix < 1 || opt_.min_prefix > kUserTokenBytes)
      bad("UserDirectoryOptions::min_prefix must be in [1, 32]");
    if (opt_.candidates_per_term < 1 || opt_.candidates_per_term > 500)
      bad("UserDirectoryOptions::candidates_per_term must be in [1, 500]");
    if (opt_.max_query_terms < 1 || opt_.max_query_terms > 8)
      bad("UserDirectoryOptions::max_query_terms must be in [1, 8]");
    if (opt_.max_results < 1 || opt_.max_results > 1000)
      bad("UserDirectoryOptions::max_results must be in [1, 1000]");
    if (presence_ && opt_.presence_socket.empty())
      bad("UserDirectoryOptions::presence_socket must not be empty");
    prefix_ = opt_.key_prefix.empty() ? std::string() : opt_.key_prefix + ":";
    if (layout_ == KeyLayout::clustered) {
      if (opt_.cluster_tag.empty() || opt_.cluster_tag.find_first_of("{}") != std::string::npos)
        bad("UserDirectoryOptions::cluster_tag must be a non-empty hash tag without '{' or '}' "
            "in the clustered layout");
      prefix_ = "{" + opt_.cluster_tag + "}:" + prefix_;
    }
    minp_ = std::to_string(opt_.min_prefix);
    cap_ = std::to_string(opt_.candidates_per_term);
  }

  executor_type get_executor() const noexcept { return backend_.get_executor(); }
  UserDirectoryOptions const& options() const noexcept { return opt_; }
  KeyLayout key_layout() const noexcept { return layout_; }

  /// The profile key of a user: seed 004's `messaging:user:{type}:{id}`.
  std::string user_key(std::string_view id, std::string_view type) const {
    return prefix_ + "user:" + std::string(type) + ":" + std::string(id);
  }
  /// The search index of a type (sorted set).
  std::string index_key(std::string_view type) const { return users_key(type, "index"); }
  /// The tokens and sort names of a type (hash).
  std::string meta_key(std::string_view type) const { return users_key(type, "meta"); }
  /// The online ids of a type (set).
  std::string online_key(std::string_view type) const { return users_key(type, "online"); }

  /// Why (id, type, profile) cannot be stored, as text; "" when it can.
  static std::string check_user(std::string_view id, std::string_view type,
                                DirectoryProfile const& p) {
    if (auto w = check_id(id, type); !w.empty()) return w;
    if (p.nom.empty() && p.prenom.empty()) return "the profile has neither nom nor prenom";
    auto over = [](std::string_view field, std::string_view v, std::size_t max) {
      return v.size() > max ? "the field '" + std::string(field) + "' is longer than " +
                                  std::to_string(max) + " bytes"
                            : std::string();
    };
    for (auto w : {over("nom", p.nom, kUserNameBytes), over("prenom", p.prenom, kUserNameBytes),
                   over("email", p.email, kUserEmailBytes),
                   over("specialite", p.specialite.value_or(""), kUserNameBytes),
                   over("telephone", p.telephone.value_or(""), kUserPhoneBytes)})
      if (!w.empty()) return w;
    return {};
  }

  /// Why (id, type) is not a user's key, as text; "" when it is.
  static std::string check_id(std::string_view id, std::string_view type) {
    if (id.empty()) return "the user id is empty";
    if (id.size() > kUserIdBytes)
      return "the user id is longer than " + std::to_string(kUserIdBytes) + " bytes";
    if (!detail::userdir::known_type(type))
      return "unknown user type '" + std::string(type.substr(0, 32)) +
             "' (expected \"medecin\" or \"patient\")";
    return {};
  }

  /// Why (query, type, limit) cannot be searched, as text; "" when it can.
  std::string check_query(std::string_view query, std::string_view type,
                          std::int64_t limit) const {
    std::vector<std::string> terms;
    if (auto w = detail::userdir::query_terms(query, opt_.max_query_terms, terms); !w.empty())
      return w;
    if (!type.empty() && !detail::userdir::known_type(type))
      return "unknown user type '" + std::string(type.substr(0, 32)) +
             "' (expected \"\", \"medecin\" or \"patient\")";
    if (limit < 1 || limit > opt_.max_results)
      return "the limit must be in [1, " + std::to_string(opt_.max_results) + "]";
    return {};
  }

  /// seed: storeUser(userId, type, userData). Creates or replaces the profile and moves its
  /// index entries, atomically (one script). void(error_code, bool): true when created, false
  /// when the profile key existed (a profile written by another program, e.g. the Node
  /// service, is replaced and indexed from then on).
  template <class Token = boost::asio::deferred_t>
  auto async_store_user(std::string_view id, std::string_view type, DirectoryProfile const& profile,
                        Token&& token = {}) {
    return detail::initiate<BoolSig>(
        token, [this, id = std::string(id), type = std::string(type), p = profile](auto h) {
          start_store(id, type, p, Erased<BoolSig>(std::move(h)));
        });
  }

  /// seed: getUser. The profile and online flag; nullopt when there is none. One round trip
  /// (GET, SISMEMBER). void(error_code, std::optional<DirectoryUser>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_user(std::string_view id, std::string_view type, Token&& token = {}) {
    return detail::initiate<UserSig>(
        token, [this, id = std::string(id), type = std::string(type)](auto h) {
          start_get(id, type, Erased<UserSig>(std::move(h)));
        });
  }

  /// Deletes the profile, its index entries and its online flag (one script).
  /// void(error_code, bool): true when there was a user.
  template <class Token = boost::asio::deferred_t>
  auto async_delete_user(std::string_view id, std::string_view type, Token&& token = {}) {
    return detail::initiate<BoolSig>(
        token, [this, id = std::string(id), type = std::string(type)](auto h) {
          start_delete(id, type, Erased<BoolSig>(std::move(h)));
        });
  }

  /// seed: setUserOnline. Marks a stored user online (and in the OnlineUserManager, if any).
  /// void(error_code, bool): false when there is no such user (nothing written).
  template <class Token = boost::asio::deferred_t>
  auto async_set_user_online(std::string_view id, std::string_view type, Token&& token = {}) {
    return set_online(id, type, true, std::forward<Token>(token));
  }

  /// seed: setUserOffline. void(error_code, bool): true when the user was online.
  template <class Token = boost::asio::deferred_t>
  auto async_set_user_offline(std::string_view id, std::string_view type, Token&& token = {}) {
    return set_online(id, type, false, std::forward<Token>(token));
  }

  /// seed: searchUsers(query, type). The `limit` best matches, best first (the scoring rule is
  /// at the top of this file). `type`: "medecin", "patient", or "" for both. Two round trips.
  /// void(error_code, std::vector<UserMatch>).
  template <class Token = boost::asio::deferred_t>
  auto async_search_users(std::string_view query, std::string_view type = {},
                          std::int64_t limit = 20, Token&& token = {}) {
    return detail::erased_compose<SearchSig>(
        std::forward<Token>(token),
        SearchOp{this, std::make_unique<SearchState>(std::string(query), std::string(type),
                                                     limit)},
        backend_.get_executor());
  }

  /// seed: getStats. Users and online users by type: one round trip of O(1) reads.
  /// void(error_code, UserDirectoryStats).
  template <class Token = boost::asio::deferred_t>
  auto async_get_stats(Token&& token = {}) {
    return detail::initiate<StatsSig>(
        token, [this](auto h) { start_stats(Erased<StatsSig>(std::move(h))); });
  }

 private:
  std::string users_key(std::string_view type, std::string_view what) const {
    return prefix_ + "users:" + std::string(type) + ":" + std::string(what);
  }

  std::string presence_id(std::string const& id, std::string const& type) const {
    return opt_.presence_typed_ids ? type + ":" + id : id;
  }

  template <class Handler, class R>
  void fail_now(Handler handler, R r) {
    detail::post_handler(backend_.get_executor(), std::move(handler), detail::userdir::invalid(),
                         std::move(r));
  }

  struct Created {
    bool operator()(error_code&, std::int64_t n) const { return n == 1; }
  };

  void start_store(std::string const& id, std::string const& type, DirectoryProfile const& p,
                   Erased<BoolSig> handler) {
    if (!check_user(id, type, p).empty()) return fail_now(std::move(handler), false);
    std::string bytes;
    codec_.encode(p, bytes);
    std::string const meta = detail::userdir::meta_of(p);
    std::string const pk = user_key(id, type), ik = index_key(type), mk = meta_key(type);
    backend_.async_exec(detail::userdir::store_script({pk, ik, mk}, {id, bytes, meta, minp_}),
                        detail::ThenHandler<Erased<BoolSig>, Created>{std::move(handler), {}});
  }

  void start_delete(std::string const& id, std::string const& type, Erased<BoolSig> handler) {
    if (!check_id(id, type).empty()) return fail_now(std::move(handler), false);
    std::string const pk = user_key(id, type), ik = index_key(type), mk = meta_key(type),
                      ok = online_key(type);
    backend_.async_exec(detail::userdir::delete_script({pk, ik, mk, ok}, {id, minp_}),
                        detail::ThenHandler<Erased<BoolSig>, Created>{std::move(handler), {}});
  }

  struct GetMap {
    UserDirectory const* self;
    std::string id, type;
    std::optional<DirectoryUser> operator()(
        error_code& ec, std::tuple<std::optional<std::string>, bool> r) const {
      auto& [bytes, online] = r;
      if (ec || !bytes) return std::nullopt;
      DirectoryUser u{id, type, {}, online};
      if (auto e = self->codec_.decode(*bytes, u.profile, nullptr)) {
        ec = e;
        return std::nullopt;
      }
      return u;
    }
  };

  void start_get(std::string const& id, std::string const& type, Erased<UserSig> handler) {
    if (!check_id(id, type).empty())
      return fail_now(std::move(handler), std::optional<DirectoryUser>{});
    std::string const pk = user_key(id, type), ok = online_key(type);
    backend_.async_exec(batch(cmd::get{pk}, cmd::sismember{ok, id}),
                        detail::ThenHandler<Erased<UserSig>, GetMap>{std::move(handler),
                                                                     GetMap{this, id, type}});
  }

  struct StatsMap {
    UserDirectoryStats operator()(error_code& ec,
                                  std::tuple<std::int64_t, std::int64_t, std::int64_t,
                                             std::int64_t> const& r) const {
      if (ec) return {};
      auto const& [m, p, om, op] = r;
      return UserDirectoryStats{m, p, om, op};
    }
  };

  void start_stats(Erased<StatsSig> handler) {
    std::string const mm = meta_key("medecin"), mp = meta_key("patient"),
                      om = online_key("medecin"), op = online_key("patient");
    backend_.async_exec(
        batch(cmd::hlen{mm}, cmd::hlen{mp}, cmd::scard{om}, cmd::scard{op}),
        detail::ThenHandler<Erased<StatsSig>, StatsMap>{std::move(handler), StatsMap{}});
  }

  // Online / offline: the directory's script, then (with an OnlineUserManager, and when the
  // user exists) the presence.
  struct OnlineOp {
    UserDirectory* self;
    std::string id, type;
    bool on;
    std::int64_t result = 0;
    enum { start, script, presence, rejected } state = start;

    template <class Self>
    void operator()(Self& s) {
      if (state == rejected) return s.complete(detail::userdir::invalid(), false);
      if (!check_id(id, type).empty()) {
        state = rejected;
        return boost::asio::post(self->backend_.get_executor(), std::move(s));
      }
      state = script;
      std::string const mk = self->meta_key(type), ok = self->online_key(type);
      self->backend_.async_exec(detail::userdir::online_script({mk, ok}, {id, on ? "1" : "0"}),
                                std::move(s));
    }

    template <class Self>
    void operator()(Self& s, error_code ec, std::int64_t r) {
      if (ec) return s.complete(ec, false);
      result = r;
      if (self->presence_ == nullptr || r < 0) return s.complete(ec, succeeded());
      state = presence;
      std::string const pid = self->presence_id(id, type);
      if (on)
        self->presence_->async_set_user_online(pid, OnlineUserData(self->opt_.presence_socket),
                                               std::move(s));
      else
        self->presence_->async_set_user_offline(pid, std::move(s));
    }

    template <class Self>
    void operator()(Self& s, error_code ec, bool) {
      s.complete(ec, succeeded());
    }

    // online: the user exists (now online); offline: the user was online.
    bool succeeded() const { return on ? result >= 0 : result == 1; }
  };

  template <class Token>
  auto set_online(std::string_view id, std::string_view type, bool on, Token&& token) {
    return detail::erased_compose<BoolSig>(
        std::forward<Token>(token), OnlineOp{this, std::string(id), std::string(type), on},
        backend_.get_executor());
  }

  struct SearchState {
    SearchState(std::string q, std::string t, std::int64_t l)
        : query(std::move(q)), type(std::move(t)), limit(l) {}
    std::string query, type;
    std::int64_t limit;
    std::vector<std::string> types, terms, keys, args;
    std::vector<std::string> rows;  // the script's reply: top views it
    std::vector<detail::userdir::Scored> top;
    std::vector<std::string> profile_keys;
  };

  struct SearchOp {
    UserDirectory* self;
    std::unique_ptr<SearchState> st;
    enum { start, script, profiles, rejected } state = start;

    template <class Self>
    void operator()(Self& s) {
      if (state == rejected) return s.complete(detail::userdir::invalid(), std::vector<UserMatch>{});
      if (!self->check_query(st->query, st->type, st->limit).empty()) {
        state = rejected;
        return boost::asio::post(self->backend_.get_executor(), std::move(s));
      }
      detail::userdir::query_terms(st->query, self->opt_.max_query_terms, st->terms);
      if (st->type.empty())
        st->types.assign(kUserTypes.begin(), kUserTypes.end());
      else
        st->types.push_back(st->type);
      for (auto const& t : st->types) {
        st->keys.push_back(self->index_key(t));
        st->keys.push_back(self->online_key(t));
        st->keys.push_back(self->meta_key(t));
      }
      st->args.push_back(self->cap_);
      st->args.push_back(std::to_string(st->limit));
      st->args.push_back(self->minp_);
      st->args.insert(st->args.end(), st->terms.begin(), st->terms.end());
      state = script;
      self->backend_.async_exec(detail::userdir::search_script(st->keys, st->args), std::move(s));
    }

    template <class Self>
    void operator()(Self& s, error_code ec, std::vector<std::string> r) {
      if (ec) return s.complete(ec, std::vector<UserMatch>{});
      st->rows = std::move(r);
      std::vector<detail::userdir::Scored> c;
      c.reserve(st->rows.size());
      for (auto const& row : st->rows) {
        auto x = detail::userdir::parse_row(row);
        if (!x) return s.complete(make_error_code(Error::incompatible_size), std::vector<UserMatch>{});
        if (x->type < st->types.size()) c.push_back(std::move(*x));
      }
      auto const n = std::min<std::size_t>(c.size(), static_cast<std::size_t>(st->limit));
      std::partial_sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(n), c.end(),
                        detail::userdir::before);
      c.resize(n);
      st->top = std::move(c);
      if (st->top.empty()) return s.complete(ec, std::vector<UserMatch>{});
      for (auto const& x : st->top)
        st->profile_keys.push_back(self->user_key(x.id, st->types[x.type]));
      state = profiles;
      self->backend_.async_exec(cmd::mget{st->profile_keys}, std::move(s));
    }

    template <class Self>
    void operator()(Self& s, error_code ec, std::vector<std::optional<std::string>> r) {
      std::vector<UserMatch> out;
      if (!ec && r.size() != st->top.size()) ec = make_error_code(Error::incompatible_size);
      if (ec) return s.complete(ec, std::move(out));
      out.reserve(r.size());
      for (std::size_t i = 0; i < r.size(); ++i) {
        if (!r[i]) continue;  // deleted since the first step
        auto& x = st->top[i];
        UserMatch m;
        m.user.id = x.id;
        m.user.type = st->types[x.type];
        m.user.online = x.online;
        m.score = x.score;
        m.terms_matched = x.matched;
        if (auto e = self->codec_.decode(*r[i], m.user.profile, nullptr))
          return s.complete(e, std::vector<UserMatch>{});
        out.push_back(std::move(m));
      }
      s.complete(ec, std::move(out));
    }
  };

  B& backend_;
  UserDirectoryOptions opt_;
  KeyLayout layout_;
  Presence* presence_;
  C codec_;
  std::string prefix_;  // "<p>:" or "{<tag>}:<p>:"
  std::string minp_;    // min_prefix, as the scripts' argument
  std::string cap_;     // candidates_per_term, as the search script's argument
};

}  // namespace rediskit
