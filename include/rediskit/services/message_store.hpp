// rediskit::MessageStore<Backend, Codec = JsonCodec>: seed 004's messageStore: messages of a
// conversation with the seed's 30-day TTL, indexed by time, paged by offset or by cursor, read
// positions, edits, deletions, storage statistics and the cleanup of expired messages.
//
//   rediskit::ConversationManager convs(backend);                // creates the conversations
//   rediskit::UnreadMessageManager unread(backend);              // optional
//   rediskit::MessageStore store(backend, {}, &unread);
//   rediskit::ChatMessage m;
//   m.id = "msg_123"; m.conversationId = conv.id;
//   m.sender = rediskit::MessageSender("patient", 5, "MOLOWA", "ESSONGA");
//   m.content = "Bonjour docteur...";                           // timestamp: empty = now
//   rediskit::ChatMessage stored = co_await store.async_store_message(m);
//   std::vector<rediskit::ChatMessage> page =
//       co_await store.async_get_conversation_messages(conv.id, 50, 0);   // newest first
//   auto older = co_await store.async_get_messages_before(
//       conv.id, rediskit::MessageStore<B>::cursor_of(page.back()), 50);  // stable paging
//
// Keys: see messaging.hpp (the message hash, the conversation's index `...:messages`, its
// participant set, its read positions, the participants' conversation indexes, the stats hash).
//
// Storing a message is one script call (one round trip) that checks the conversation exists and
// that the sender is one of its participants, writes the message hash with the TTL (default 30
// days), indexes the message by its timestamp (ms; equal timestamps ordered by id, so an order
// exists among any two messages and never changes), moves the conversation's lastActivity
// (only forwards), moves the conversation up in every participant's conversation index (ZADD
// GT), counts it in the stats, and, with an UnreadMessageManager in the plain layout, bumps the
// unread count of every participant but the sender (UnreadMessageManager's own key layout:
// field <conversation id> of `unread:user_unread:<type>:<id>`, its version field, its TTL).
// Every key a script touches is declared: the participants' keys are named by the client from
// a cache of each conversation's participant set; the script compares the cache with the set
// and, when they differ (a participant added or removed), changes nothing and returns the set,
// and the client tries again with it (at most 3 times). A cold cache costs one SMEMBERS first.
// Stores made while two script calls are on their way wait and go together, up to 64 in one
// call (RateLimiter coalesces its checks the same way): each is decided alone, in the order
// they were made, and a server error in one message's commands (WRONGTYPE) fails that message
// only. The batch shares the call's fixed cost and one write of the stats counters.
//
// Pages. Offsets count from the newest message: async_get_conversation_messages(c, 50, 0) is
// the newest 50, newest first; a message that arrives shifts every offset by one. A cursor
// (MessageCursor: a timestamp and an id, cursor_of(message)) names a place in the order and
// never shifts: async_get_messages_before(c, cursor, n) is the n messages just older than it,
// async_get_messages_after the n just newer, both newest first, whatever arrives, is edited or
// deleted meanwhile (a cursor stays valid after its own message is deleted). A page read is two
// round trips: the ids (an offset page: ZRANGE ... REV WITHSCORES; a cursor page: a script that
// honours ties), then one batch that reads those messages and the read positions. An index entry
// whose message has expired is pruned on the way (a script that removes an id only when its message
// key is gone, and counts it out of the stats) and the page is read again: a page never holds a
// hole and holds `limit` messages when that many exist. async_prune_expired removes expired entries
// from the oldest end in bounded batches.
//
// Layouts. Plain: the seed's key names. Clustered (ClusterBackend's default): every key of the
// messaging services carries the one hash tag MessagingOptions::cluster_tag ("{messaging}").
// A message changes its conversation's index and hash, the participants' per-user conversation
// indexes (which span conversations) and the global counters in one atomic step, so on a
// cluster they must share one slot, as VoteService's ranking does: the price is that the whole
// messaging data set lives on one master (give independent tenants different cluster_tags).
// The alternative, a tag per conversation with the per-user indexes and counters updated in a
// second step, would spread the load but let a crash between the steps leave a user's list out
// of order with its conversations; it is not offered. UnreadMessageManager's keys live in their
// users' own slots, so in the clustered layout the unread fan-out is a second round trip after
// the store script (UnreadMessageManager::async_increment_unread_for_recipients; not atomic
// with the message: a failure there completes the store with its error after the message was
// stored), and so is the reset of async_mark_read.
//
// Statistics (async_get_storage_stats) are counters kept by the scripts in one hash: O(1), no
// keyspace scan. `messages` counts the messages stored and not deleted or pruned (an expired
// message counts until a page read or async_prune_expired prunes it); `bytes_estimate` is
// messages x the mean stored size; `newest_ms` is the newest timestamp ever stored, `oldest_ms`
// the oldest one, but never older than now - message_ttl (what may still be alive).
//
// Errors: bad input completes with Error::invalid_argument and writes nothing: an empty message
// or conversation id, an id over 256 bytes, a sender without a type (or with ':' in it), content
// over MessageStoreOptions::max_content_bytes (default 64 KiB), a timestamp that is not ISO-8601,
// a limit outside [1, max_page], a negative offset; so do a conversation that does not exist, a
// sender who is not a participant, a message id already stored, and async_mark_read up to a
// message that is not in the conversation (MessageStore::why_invalid(message) names the problem
// of a message). A stored message that does not decode completes with Error::decode_failed.
// Operations never complete inside the initiating call. Thread safety: as the backend (the
// participant cache has its own mutex). Lifetimes: the store, its backend and the unread manager
// must outlive the operations; arguments may die once the async_ call returns. Cancellation: the
// handler's slot reaches the backend's operation in progress, except a store's script call,
// which carries other callers' messages: a store is not cancelled once its batch is formed.
#pragma once

#include <rediskit/cmd/hashes.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/cmd/sets.hpp>
#include <rediskit/cmd/sorted_sets.hpp>
#include <rediskit/codec/json_codec.hpp>
#include <rediskit/command.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/detail/to_int.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/script.hpp>
#include <rediskit/services/messaging.hpp>
#include <rediskit/services/unread_message_manager.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rediskit {

/// Options of MessageStore; the defaults are seed 004's.
struct MessageStoreOptions {
  /// Namespace of the keys (as MessagingOptions; give ConversationManager the same).
  std::string key_prefix = "messaging";
  /// The hash tag of every key in the clustered layout.
  std::string cluster_tag = "messaging";
  /// Unset: default_key_layout_v<B>.
  std::optional<KeyLayout> key_layout{};
  /// Life of a message (seed 004: 30 days).
  std::chrono::milliseconds message_ttl = std::chrono::hours(24 * 30);
  /// The longest content accepted, in bytes.
  std::size_t max_content_bytes = 64 * 1024;
  /// The largest page.
  std::int64_t max_page = 500;
  /// Conversations whose participant set is cached (the cache is emptied when it is full).
  std::size_t participant_cache_size = 100000;
};

/// A place in a conversation's order: a message's timestamp (ms) and id.
struct MessageCursor {
  std::int64_t timestamp_ms = 0;
  std::string id;
  MessageCursor() = default;
  MessageCursor(std::int64_t ms, std::string id_) : timestamp_ms(ms), id(std::move(id_)) {}
  friend bool operator==(MessageCursor const&, MessageCursor const&) = default;
};

/// What async_get_storage_stats returns (see the top of message_store.hpp).
struct StorageStats {
  std::int64_t messages = 0;
  std::int64_t conversations = 0;
  std::int64_t bytes_estimate = 0;
  std::int64_t oldest_ms = 0;  ///< 0 when there is no message
  std::int64_t newest_ms = 0;  ///< 0 when there is no message
};

namespace detail::msgstore {

using boost::system::error_code;

inline std::string score_text(double d) {
  return std::to_string(static_cast<std::int64_t>(d));
}

// Stores a batch of messages (coalesced stores; see "Coalescing" in MessageStore), each decided
// alone, in order, as if stored by a script of its own; the stats hash is written once.
// KEYS: stats, then per message: message, index, conversation, participants, the user index of
// each participant (ARGV's order), the unread hashes of the recipients (may be none).
// ARGV: message ttl ms, unread ttl ms, count, then per message: id, data, ms, timestamp, bytes,
// conversation id, n, u (unread hashes), n participants (sorted), sender.
// Reply, per message: "ok" | "noconv" | "dup" | "sender" | "stale", count, participants...
inline constexpr std::size_t kStoreHead = 3;       // ARGV before the first message's
inline constexpr std::size_t kStoreArgs = 9;       // a message's ARGV besides its participants
inline constexpr std::size_t kStoreKeys = 4;       // a message's KEYS besides its users'
inline constexpr std::size_t kMaxStoreBatch = 64;  // messages per script call

// A command of one message's store failed: that message fails, the batch goes on (as the Lua
// body runs each message under pcall).
struct StoreFailed {
  boost::system::error_code ec;
};

inline std::vector<std::string> store_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  std::vector<std::string> out;
  std::int64_t added = 0, removed = 0, bytes = 0;
  std::optional<std::int64_t> newest, oldest;
  auto call = [&ctx](auto const& c) {
    auto [ec, r] = ctx.pcall(c);
    if (ec) throw StoreFailed{ec};
    return std::move(r);
  };
  // One message: its status, or "" when it wrote "stale" and the participants itself.
  auto store = [&](std::size_t ki, std::size_t at, std::size_t n, std::size_t u) -> std::string {
    auto const mk = k[ki], ik = k[ki + 1], ck = k[ki + 2], pk = k[ki + 3];
    std::string_view const id = a[at], sender = a[at + 8 + n], conv = a[at + 5];
    auto const members_arg = a.subspan(at + 8, n);
    // Every conversation ConversationManager writes has lastActivityMs: one read checks both.
    auto const last_raw = call(cmd::hget{ck, "lastActivityMs"});
    if (!last_raw) return "noconv";
    std::int64_t const last = to_int(std::string_view(*last_raw), -1);
    auto members = call(cmd::smembers{pk});
    std::sort(members.begin(), members.end());
    if (!std::equal(members.begin(), members.end(), members_arg.begin(), members_arg.end())) {
      out.emplace_back("stale");
      out.push_back(std::to_string(members.size()));
      for (auto& p : members)
        out.push_back(std::move(p));
      return {};
    }
    if (std::find(members.begin(), members.end(), sender) == members.end()) return "sender";
    if (!call(cmd::hsetnx{mk, "data", a[at + 1]})) return "dup";
    call(cmd::pexpire{mk, std::chrono::milliseconds(to_int(a[0]))});
    std::int64_t const ms = to_int(a[at + 2]);
    double const score = static_cast<double>(ms);
    // 0: the id was still indexed (its message expired unpruned): that one counts as removed.
    if (call(cmd::zadd{.key = ik, .members = ScoreMember{score, id}}) == 1)
      ++added;
    else
      ++removed;
    bytes += to_int(a[at + 4]);
    if (!newest || ms > *newest) newest = ms;
    if (!oldest || ms < *oldest) oldest = ms;
    if (ms > last) {
      call(cmd::hset{
          ck, {FieldValue{"lastActivity", a[at + 3]}, FieldValue{"lastActivityMs", a[at + 2]}}});
      for (std::size_t i = 0; i < n; ++i)
        call(cmd::zadd{
            .key = k[ki + kStoreKeys + i], .members = ScoreMember{score, conv}, .gt = true});
    }
    for (std::size_t i = ki + kStoreKeys + n; i < ki + kStoreKeys + n + u; ++i) {
      call(cmd::hincrby{k[i], conv, 1});
      call(cmd::hincrby{k[i], "", 1});
      call(cmd::pexpire{k[i], std::chrono::milliseconds(to_int(a[1]))});
    }
    return "ok";
  };
  auto const count = static_cast<std::size_t>(to_int(a[2]));
  std::size_t ki = 1, ai = kStoreHead;
  for (std::size_t m = 0; m < count; ++m) {
    auto const n = static_cast<std::size_t>(to_int(a[ai + 6]));
    auto const u = static_cast<std::size_t>(to_int(a[ai + 7]));
    try {
      if (std::string r = store(ki, ai, n, u); !r.empty()) out.push_back(std::move(r));
    } catch (StoreFailed const& f) {
      out.emplace_back("error");
      // As the server would word it, so that both map to the same rediskit::Error.
      out.push_back(f.ec == Error::wrong_type
                        ? "WRONGTYPE Operation against a key holding the wrong kind of value"
                        : "ERR " + f.ec.message());
    }
    ki += kStoreKeys + n + u;
    ai += kStoreArgs + n;
  }
  if (newest) {
    if (added > 0) ctx.call(cmd::hincrby{k[0], "messages", added});
    if (removed > 0) ctx.call(cmd::hincrby{k[0], "removed", removed});
    ctx.call(cmd::hincrby{k[0], "bytes", bytes});
    auto const b = ctx.call(cmd::hmget{k[0], {"newest", "oldest"}});
    if (!b[0] || *newest > to_int(std::string_view(*b[0])))
      ctx.call(cmd::hset{k[0], FieldValue{"newest", std::to_string(*newest)}});
    if (!b[1] || *oldest < to_int(std::string_view(*b[1])))
      ctx.call(cmd::hset{k[0], FieldValue{"oldest", std::to_string(*oldest)}});
  }
  return out;
}
inline auto const store_script =
    make_script<std::vector<std::string>>(R"lua(
local out = {}
local added, removed, bytes = 0, 0, 0
local newest, oldest, newest_s, oldest_s
local sets = {}
local function store(ki, ai, n, u)
  local mk, ik, ck, pk = KEYS[ki], KEYS[ki + 1], KEYS[ki + 2], KEYS[ki + 3]
  local last = redis.call('HGET', ck, 'lastActivityMs')
  if not last then return 'noconv' end
  last = tonumber(last) or -1
  local members = sets[pk]
  if not members then
    members = redis.call('SMEMBERS', pk)
    table.sort(members)
    sets[pk] = members
  end
  local same = #members == n
  if same then
    for i = 1, n do
      if members[i] ~= ARGV[ai + 7 + i] then same = false break end
    end
  end
  if not same then
    out[#out + 1] = 'stale'
    out[#out + 1] = tostring(#members)
    for i = 1, #members do out[#out + 1] = members[i] end
    return nil
  end
  local sender = ARGV[ai + 8 + n]
  local found = false
  for i = 1, n do if members[i] == sender then found = true end end
  if not found then return 'sender' end
  if redis.call('HSETNX', mk, 'data', ARGV[ai + 1]) == 0 then return 'dup' end
  redis.call('PEXPIRE', mk, ARGV[1])
  local msa = ARGV[ai + 2]
  local ms = tonumber(msa)
  if redis.call('ZADD', ik, msa, ARGV[ai]) == 1 then added = added + 1 else removed = removed + 1 end
  bytes = bytes + tonumber(ARGV[ai + 4])
  if not newest or ms > newest then newest, newest_s = ms, msa end
  if not oldest or ms < oldest then oldest, oldest_s = ms, msa end
  if ms > last then
    redis.call('HSET', ck, 'lastActivity', ARGV[ai + 3], 'lastActivityMs', msa)
    for i = 1, n do redis.call('ZADD', KEYS[ki + 3 + i], 'GT', msa, ARGV[ai + 5]) end
  end
  for i = ki + 4 + n, ki + 3 + n + u do
    redis.call('HINCRBY', KEYS[i], ARGV[ai + 5], 1)
    redis.call('HINCRBY', KEYS[i], '', 1)
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
  return 'ok'
end
local ki, ai = 2, 4
for _ = 1, tonumber(ARGV[3]) do
  local n, u = tonumber(ARGV[ai + 6]), tonumber(ARGV[ai + 7])
  local ok, r = pcall(store, ki, ai, n, u)
  if not ok then
    out[#out + 1] = 'error'
    out[#out + 1] = type(r) == 'table' and r.err or tostring(r)
  elseif r then
    out[#out + 1] = r
  end
  ki = ki + 4 + n + u
  ai = ai + 9 + n
end
if newest then
  if added > 0 then redis.call('HINCRBY', KEYS[1], 'messages', added) end
  if removed > 0 then redis.call('HINCRBY', KEYS[1], 'removed', removed) end
  redis.call('HINCRBY', KEYS[1], 'bytes', bytes)
  local b = redis.call('HMGET', KEYS[1], 'newest', 'oldest')
  if not b[1] or newest > tonumber(b[1]) then redis.call('HSET', KEYS[1], 'newest', newest_s) end
  if not b[2] or oldest < tonumber(b[2]) then redis.call('HSET', KEYS[1], 'oldest', oldest_s) end
end
return out)lua",
                                          [](ScriptContext auto& c) { return store_twin(c); });

// A cursor page. KEYS: index. ARGV: "b" (before) or "a" (after), ms, id, limit. Reply: id, ms,
// id, ms ... newest first. (An offset page is a plain ZRANGE ... REV WITHSCORES.)
inline std::vector<std::string> page_twin(ScriptContext auto& ctx) {
  auto const key = ctx.keys()[0];
  auto const a = ctx.args();
  std::vector<std::string> out;
  bool const before = a[0] == "b";
  double const s0 = static_cast<double>(to_int(a[1]));
  std::string_view const id0 = a[2];
  std::int64_t const lim = to_int(a[3]);
  std::int64_t const chunk = lim + 16;
  std::int64_t off = 0, got = 0;
  for (;;) {
    cmd::zrange_by_score_withscores q{.key = key,
                                      .min = before ? ScoreBound::neg_inf() : ScoreBound::incl(s0),
                                      .max = before ? ScoreBound::incl(s0) : ScoreBound::pos_inf(),
                                      .rev = before,
                                      .limit = RangeLimit{off, chunk}};
    auto const r = ctx.call(q);
    for (auto const& [m, s] : r) {
      if (got >= lim) break;
      if (s == s0 && (before ? std::string_view(m) >= id0 : std::string_view(m) <= id0)) continue;
      out.push_back(m);
      out.push_back(score_text(s));
      ++got;
    }
    if (got >= lim || static_cast<std::int64_t>(r.size()) < chunk) break;
    off += chunk;
  }
  if (!before) {  // oldest first: pairs reversed
    std::vector<std::string> rev;
    rev.reserve(out.size());
    for (std::size_t i = out.size(); i >= 2; i -= 2) {
      rev.push_back(std::move(out[i - 2]));
      rev.push_back(std::move(out[i - 1]));
    }
    return rev;
  }
  return out;
}
inline auto const page_script =
    make_script<std::vector<std::string>>(R"lua(
local out = {}
local before = ARGV[1] == 'b'
local s0 = tonumber(ARGV[2])
local id0 = ARGV[3]
local lim = tonumber(ARGV[4])
local chunk = lim + 16
local off, got = 0, 0
while true do
  local r
  if before then
    r = redis.call('ZRANGE', KEYS[1], ARGV[2], '-inf', 'BYSCORE', 'REV', 'LIMIT', off, chunk, 'WITHSCORES')
  else
    r = redis.call('ZRANGE', KEYS[1], ARGV[2], '+inf', 'BYSCORE', 'LIMIT', off, chunk, 'WITHSCORES')
  end
  for i = 1, #r, 2 do
    if got >= lim then break end
    local s = tonumber(r[i + 1])
    local skip = false
    if s == s0 then
      if before then skip = r[i] >= id0 else skip = r[i] <= id0 end
    end
    if not skip then
      out[#out + 1] = r[i]
      out[#out + 1] = string.format('%d', s)
      got = got + 1
    end
  end
  if got >= lim or #r < 2 * chunk then break end
  off = off + chunk
end
if not before then
  local rev = {}
  for i = #out - 1, 1, -2 do
    rev[#rev + 1] = out[i]
    rev[#rev + 1] = out[i + 1]
  end
  return rev
end
return out)lua",
                                          [](ScriptContext auto& c) { return page_twin(c); });

// KEYS: index, stats, then message keys; ARGV: their ids. Removes from the index each id whose
// message key is gone; counts them out of the stats; returns how many.
inline std::int64_t prune_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  std::int64_t removed = 0;
  for (std::size_t i = 2; i < k.size() && i - 2 < a.size(); ++i)
    if (ctx.call(cmd::exists{.keys = k[i]}) == 0) removed += ctx.call(cmd::zrem{k[0], a[i - 2]});
  if (removed > 0) {
    ctx.call(cmd::hincrby{k[1], "messages", -removed});
    ctx.call(cmd::hincrby{k[1], "removed", removed});
  }
  return removed;
}
inline auto const prune_script =
    make_script<std::int64_t>(R"lua(
local removed = 0
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i - 2])
  end
end
if removed > 0 then
  redis.call('HINCRBY', KEYS[2], 'messages', -removed)
  redis.call('HINCRBY', KEYS[2], 'removed', removed)
end
return removed)lua",
                              [](ScriptContext auto& c) { return prune_twin(c); });

// KEYS: message, index, stats; ARGV: id. 1 when the message was there and is deleted; 0 when it
// was not (an index entry whose message expired is removed and counted out).
inline std::int64_t delete_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const id = ctx.args()[0];
  std::int64_t const in_index = ctx.call(cmd::zrem{k[1], id});
  std::int64_t const existed = ctx.call(cmd::del{.keys = k[0]}) > 0 && in_index > 0 ? 1 : 0;
  if (in_index > 0) {
    ctx.call(cmd::hincrby{k[2], "messages", -1});
    ctx.call(cmd::hincrby{k[2], "removed", 1});
  }
  return existed;
}
inline auto const delete_script =
    make_script<std::int64_t>(R"lua(
local in_index = redis.call('ZREM', KEYS[2], ARGV[1])
local existed = 0
if in_index > 0 then
  if redis.call('DEL', KEYS[1]) > 0 then existed = 1 end
  redis.call('HINCRBY', KEYS[3], 'messages', -1)
  redis.call('HINCRBY', KEYS[3], 'removed', 1)
end
return existed)lua",
                              [](ScriptContext auto& c) { return delete_twin(c); });

// KEYS: message, index; ARGV: id, content. 1 when the message (of this conversation) exists.
inline std::int64_t edit_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  if (!ctx.call(cmd::zscore{k[1], a[0]}) || ctx.call(cmd::exists{.keys = k[0]}) == 0) return 0;
  ctx.call(cmd::hset{k[0], FieldValue{"content", a[1]}});
  return 1;
}
inline auto const edit_script =
    make_script<std::int64_t>(R"lua(
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'content', ARGV[2])
return 1)lua",
                              [](ScriptContext auto& c) { return edit_twin(c); });

// KEYS: index, read positions[, the reader's unread hash]. ARGV: reader, up-to id, conversation
// id, unread ttl ms. -1: no such message in the index; 0: the reader had read further already;
// 1: the position moved. Either way the reader's unread count of the conversation is cleared.
inline std::int64_t mark_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  auto const s = ctx.call(cmd::zscore{k[0], a[1]});
  if (!s) return -1;
  auto const ms = static_cast<std::int64_t>(*s);
  auto const cur = ctx.call(cmd::hget{k[1], a[0]});
  bool further = true;
  if (cur) {
    auto const colon = cur->find(':');
    std::int64_t const cms = to_int(std::string_view(*cur).substr(0, colon));
    std::string_view const cid = std::string_view(*cur).substr(colon + 1);
    further = ms > cms || (ms == cms && a[1] > cid);
  }
  if (further) {
    std::string const v = std::to_string(ms) + ":" + std::string(a[1]);
    ctx.call(cmd::hset{k[1], FieldValue{a[0], v}});
  }
  if (k.size() > 2) {
    ctx.call(cmd::hdel{k[2], a[2]});
    ctx.call(cmd::hincrby{k[2], "", 1});
    ctx.call(cmd::pexpire{k[2], std::chrono::milliseconds(to_int(a[3]))});
  }
  return further ? 1 : 0;
}
inline auto const mark_script =
    make_script<std::int64_t>(R"lua(
local s = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not s then return -1 end
local ms = tonumber(s)
local cur = redis.call('HGET', KEYS[2], ARGV[1])
local further = true
if cur then
  local colon = string.find(cur, ':', 1, true)
  local cms = tonumber(string.sub(cur, 1, colon - 1))
  local cid = string.sub(cur, colon + 1)
  further = ms > cms or (ms == cms and ARGV[2] > cid)
end
if further then redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', ms) .. ':' .. ARGV[2]) end
if #KEYS > 2 then
  redis.call('HDEL', KEYS[3], ARGV[3])
  redis.call('HINCRBY', KEYS[3], '', 1)
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
if further then return 1 end
return 0)lua",
                              [](ScriptContext auto& c) { return mark_twin(c); });

/// A read position "<ms>:<id>".
struct ReadPos {
  std::string reader;
  std::int64_t ms = 0;
  std::string id;
};

inline std::vector<ReadPos> parse_reads(std::vector<std::pair<std::string, std::string>> const& h) {
  std::vector<ReadPos> out;
  for (auto const& [f, v] : h) {
    auto const colon = v.find(':');
    if (colon == std::string::npos) continue;
    out.push_back(ReadPos{f, to_int(std::string_view(v).substr(0, colon)), v.substr(colon + 1)});
  }
  return out;
}

}  // namespace detail::msgstore

/// Seed 004's messageStore over any Backend (see the top of this file).
template <Backend B, class Codec = JsonCodec>
class MessageStore {
  using error_code = boost::system::error_code;
  using StoreSig = void(error_code, ChatMessage);
  using PageSig = void(error_code, std::vector<ChatMessage>);
  using BoolSig = void(error_code, bool);
  using CountSig = void(error_code, std::size_t);
  using StatsSig = void(error_code, StorageStats);
  using Reads = std::vector<std::pair<std::string, std::string>>;
  using Got = std::vector<std::optional<std::string>>;

 public:
  using executor_type = typename B::executor_type;
  static constexpr std::size_t max_id_bytes = 256;

  /// `backend` (and `unread`, when given) must outlive the store and its operations. Throws
  /// rediskit::Exception (Error::invalid_config) in the clustered layout for a bad cluster_tag.
  explicit MessageStore(B& backend, MessageStoreOptions options = {},
                        UnreadMessageManager<B>* unread = nullptr, Codec codec = {})
      : backend_(backend),
        options_(std::move(options)),
        layout_(options_.key_layout.value_or(default_key_layout_v<B>)),
        unread_(unread),
        codec_(std::move(codec)),
        ttl_(std::to_string(options_.message_ttl.count())) {
    if (layout_ == KeyLayout::clustered && !detail::messaging::valid_tag(options_.cluster_tag))
      throw Exception(make_error_code(Error::invalid_config),
                      "MessageStoreOptions::cluster_tag must be a non-empty hash tag without '{' "
                      "or '}' in the clustered layout");
    keys_ = MessagingKeys(MessagingOptions{options_.key_prefix, options_.cluster_tag, layout_},
                          layout_);
    if (unread_) unread_ttl_ = std::to_string(unread_->options().default_ttl.count());
    stats_key_ = keys_.stats();
  }

  executor_type get_executor() const noexcept { return backend_.get_executor(); }
  MessageStoreOptions const& options() const noexcept { return options_; }
  KeyLayout key_layout() const noexcept { return layout_; }
  MessagingKeys const& keys() const noexcept { return keys_; }

  /// What is wrong with `m` as a message to store ("" when nothing is).
  std::string why_invalid(ChatMessage const& m) const {
    if (m.id.empty()) return "the message id is empty";
    if (m.id.size() > max_id_bytes) return "the message id is over 256 bytes";
    if (m.conversationId.empty()) return "the conversation id is empty";
    if (m.conversationId.size() > max_id_bytes) return "the conversation id is over 256 bytes";
    if (m.sender.type.empty()) return "the sender has no type";
    if (m.sender.type.find(':') != std::string::npos) return "the sender's type holds ':'";
    if (m.content.size() > options_.max_content_bytes)
      return "the content is " + std::to_string(m.content.size()) + " bytes, over the limit of " +
             std::to_string(options_.max_content_bytes);
    if (!m.timestamp.empty() && !parse_iso8601_ms(m.timestamp))
      return "the timestamp is not ISO-8601: '" + m.timestamp + "'";
    return {};
  }

  /// The cursor of `m` (its timestamp in ms, its id); a timestamp that does not parse counts 0.
  static MessageCursor cursor_of(ChatMessage const& m) {
    return MessageCursor(parse_iso8601_ms(m.timestamp).value_or(0), m.id);
  }

  /// seed: storeMessage. Stores `m` (see the top of the file); an empty timestamp becomes now.
  /// Completes with the message as stored. Handler: void(error_code, ChatMessage).
  template <class Token = boost::asio::deferred_t>
  auto async_store_message(ChatMessage const& m, Token&& token = {}) {
    auto st = std::make_unique<StoreState>();
    st->m = m;
    st->m.isRead = false;
    bool const bad = !why_invalid(m).empty();
    if (st->m.timestamp.empty()) st->m.timestamp = format_iso8601_ms(unix_now_ms());
    return detail::erased_compose<StoreSig>(
        std::forward<Token>(token), StoreOp{this, std::move(st), bad}, backend_.get_executor());
  }

  /// seed: getConversationMessages(conversationId, limit, offset). The `limit` messages from
  /// the `offset`-th newest, newest first. Handler: void(error_code, std::vector<ChatMessage>).
  template <class Token = boost::asio::deferred_t>
  auto async_get_conversation_messages(std::string_view conversation_id, std::int64_t limit = 50,
                                       std::int64_t offset = 0, Token&& token = {}) {
    auto st = make_page(conversation_id, limit);
    st->mode = "o";
    st->offset = offset;
    bool const bad = st->bad || offset < 0;
    return detail::erased_compose<PageSig>(
        std::forward<Token>(token), PageOp{this, std::move(st), bad}, backend_.get_executor());
  }

  /// The `limit` messages just older than `cursor`, newest first.
  template <class Token = boost::asio::deferred_t>
  auto async_get_messages_before(std::string_view conversation_id, MessageCursor const& cursor,
                                 std::int64_t limit = 50, Token&& token = {}) {
    return cursor_page("b", conversation_id, cursor, limit, std::forward<Token>(token));
  }

  /// The `limit` messages just newer than `cursor`, newest first.
  template <class Token = boost::asio::deferred_t>
  auto async_get_messages_after(std::string_view conversation_id, MessageCursor const& cursor,
                                std::int64_t limit = 50, Token&& token = {}) {
    return cursor_page("a", conversation_id, cursor, limit, std::forward<Token>(token));
  }

  /// `reader` has read the conversation up to message `up_to_id` (its position moves only
  /// forwards), and their unread count of the conversation is cleared (with an
  /// UnreadMessageManager). Messages up to it from other participants read as isRead. Completes
  /// with true when the position moved. Handler: void(error_code, bool). One script (plus the
  /// unread reset in the clustered layout).
  template <class Token = boost::asio::deferred_t>
  auto async_mark_read(std::string_view conversation_id, UserRef const& reader,
                       std::string_view up_to_id, Token&& token = {}) {
    auto st = std::make_unique<MarkState>();
    st->conv = conversation_id;
    st->member = participant_member(reader.type, reader.id);
    st->up_to = up_to_id;
    bool const bad = conversation_id.empty() || up_to_id.empty() || reader.type.empty() ||
                     reader.type.find(':') != std::string::npos;
    return detail::erased_compose<BoolSig>(
        std::forward<Token>(token), MarkOp{this, std::move(st), bad}, backend_.get_executor());
  }

  /// Replaces a message's content (the rest is kept). Completes with false when the message is
  /// not in the conversation (or expired). Handler: void(error_code, bool). One script.
  template <class Token = boost::asio::deferred_t>
  auto async_edit(std::string_view conversation_id, std::string_view message_id,
                  std::string_view content, Token&& token = {}) {
    return detail::initiate<BoolSig>(
        token, [this, conv = std::string(conversation_id), id = std::string(message_id),
                content = std::string(content)](auto handler) {
          if (conv.empty() || id.empty() || content.size() > options_.max_content_bytes)
            return fail_now(std::move(handler), false);
          std::string const mk = keys_.message(id), ik = keys_.index(conv);
          backend_.async_exec(detail::msgstore::edit_script({mk, ik}, {id, content}),
                              detail::then(detail::AnyHandler<BoolSig>(std::move(handler)),
                                           [](error_code&, std::int64_t r) { return r == 1; }));
        });
  }

  /// Deletes a message: it leaves the index (pages around it stay as they were, without it).
  /// Completes with false when it was not there. Handler: void(error_code, bool). One script.
  template <class Token = boost::asio::deferred_t>
  auto async_delete(std::string_view conversation_id, std::string_view message_id,
                    Token&& token = {}) {
    return detail::initiate<BoolSig>(token, [this, conv = std::string(conversation_id),
                                             id = std::string(message_id)](auto handler) {
      if (conv.empty() || id.empty()) return fail_now(std::move(handler), false);
      std::string const mk = keys_.message(id), ik = keys_.index(conv), sk = keys_.stats();
      backend_.async_exec(detail::msgstore::delete_script({mk, ik, sk}, id),
                          detail::then(detail::AnyHandler<BoolSig>(std::move(handler)),
                                       [](error_code&, std::int64_t r) { return r == 1; }));
    });
  }

  /// seed: getStorageStats. The counters (see the top of the file). Handler: void(error_code,
  /// StorageStats). One HMGET.
  template <class Token = boost::asio::deferred_t>
  auto async_get_storage_stats(Token&& token = {}) {
    return detail::initiate<StatsSig>(token, [this](auto handler) {
      std::string const sk = keys_.stats();
      backend_.async_exec(
          cmd::hmget{sk, {"messages", "conversations", "removed", "bytes", "oldest", "newest"}},
          detail::then(detail::AnyHandler<StatsSig>(std::move(handler)),
                       StatsMap{options_.message_ttl.count()}));
    });
  }

  /// seed: cleanup. Removes from the conversation's index up to `batch` (1..max_page) of its
  /// oldest entries whose message has expired (bounded: one ZRANGE and one script). Completes
  /// with how many were removed. Handler: void(error_code, std::size_t).
  template <class Token = boost::asio::deferred_t>
  auto async_prune_expired(std::string_view conversation_id, std::int64_t batch = 100,
                           Token&& token = {}) {
    auto st = std::make_unique<PruneState>();
    st->conv = conversation_id;
    st->index = keys_.index(conversation_id);
    st->batch = batch;
    bool const bad = conversation_id.empty() || batch < 1 || batch > options_.max_page;
    return detail::erased_compose<CountSig>(
        std::forward<Token>(token), PruneOp{this, std::move(st), bad}, backend_.get_executor());
  }

  /// Forgets the cached participants of a conversation (or all); never needed for correctness.
  void forget_participants(std::string_view conversation_id = {}) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (conversation_id.empty())
      cache_.clear();
    else
      cache_.erase(std::string(conversation_id));
  }

 private:
  static std::int64_t unix_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  template <class Handler, class R>
  void fail_now(Handler handler, R r) {
    detail::post_handler(backend_.get_executor(), std::move(handler),
                         make_error_code(Error::invalid_argument), std::move(r));
  }

  std::optional<std::vector<std::string>> cached(std::string const& conv) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto const it = cache_.find(conv);
    if (it == cache_.end()) return std::nullopt;
    return it->second;
  }
  void cache(std::string const& conv, std::vector<std::string> members) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= options_.participant_cache_size) cache_.clear();
    cache_[conv] = std::move(members);
  }

  struct StatsMap {
    std::int64_t ttl_ms;
    StorageStats operator()(error_code& ec, Got const& v) const {
      StorageStats s;
      if (ec || v.size() != 6) return s;
      using detail::to_int;
      s.messages = std::max<std::int64_t>(0, to_int(v[0], 0));
      s.conversations = to_int(v[1], 0);
      // Every message stored is live, removed (deleted, pruned) or replaced (an expired id
      // stored again): `removed` counts the last two.
      std::int64_t const stored = s.messages + to_int(v[2], 0), bytes = to_int(v[3], 0);
      s.bytes_estimate = stored > 0 ? static_cast<std::int64_t>(static_cast<double>(s.messages) *
                                                                static_cast<double>(bytes) /
                                                                static_cast<double>(stored))
                                    : 0;
      if (s.messages > 0) {
        s.newest_ms = to_int(v[5], 0);
        s.oldest_ms = std::max(to_int(v[4], 0), unix_now_ms() - ttl_ms);
        s.oldest_ms = std::min(s.oldest_ms, s.newest_ms);
      }
      return s;
    }
  };

  // ---- store ----------------------------------------------------------------------------------
  struct StoreState {
    ChatMessage m;
    std::string data, ms, bytes, sender;
    std::vector<std::string> members;  // sorted
    std::vector<std::string> keys, args;
  };
  struct StoreOp {
    MessageStore* svc;
    std::unique_ptr<StoreState> st;
    bool bad = false;
    bool posted = false;
    int phase = 0;  // 0: members read, 1: script, 2: unread fan-out
    int attempts = 0;

    template <class Self>
    void operator()(Self& self) {
      if (bad) {
        if (posted) return self.complete(make_error_code(Error::invalid_argument), ChatMessage{});
        posted = true;
        return boost::asio::post(svc->backend_.get_executor(), std::move(self));
      }
      auto& m = st->m;
      svc->codec_.encode(m, st->data);
      st->ms = std::to_string(*parse_iso8601_ms(m.timestamp));
      st->bytes = std::to_string(st->data.size() + m.id.size());
      st->sender = participant_member(m.sender.type, m.sender.id);
      if (auto c = svc->cached(m.conversationId)) {
        st->members = std::move(*c);
        return run_script(self);
      }
      phase = 0;
      st->keys.assign(1, svc->keys_.participants(m.conversationId));
      svc->backend_.async_exec(cmd::smembers{st->keys[0]}, std::move(self));
    }

    // This message's part of a batch's KEYS and ARGV (store_twin's layout, without the batch's
    // head), then off to the batch.
    template <class Self>
    void run_script(Self& self) {
      phase = 1;
      auto const& m = st->m;
      auto& k = st->keys;
      auto const& ks = svc->keys_;
      k.clear();
      k.push_back(ks.message(m.id));
      k.push_back(ks.index(m.conversationId));
      k.push_back(ks.conversation(m.conversationId));
      k.push_back(ks.participants(m.conversationId));
      for (auto const& p : st->members)
        k.push_back(ks.user_conversations(p));
      std::size_t const users = k.size();
      if (svc->unread_ && svc->layout_ == KeyLayout::plain)
        for (auto const& p : st->members)
          if (p != st->sender) k.push_back(svc->unread_->user_key(p));
      auto& a = st->args;
      a.clear();
      a.insert(a.end(), {m.id, st->data, st->ms, m.timestamp, st->bytes, m.conversationId,
                         std::to_string(st->members.size()), std::to_string(k.size() - users)});
      a.insert(a.end(), st->members.begin(), st->members.end());
      a.push_back(st->sender);
      StoreState* const state = st.get();  // before `self` (which owns st) moves
      MessageStore* const store = svc;
      store->enqueue(state, std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::vector<std::string> r) {
      if (ec) return self.complete(ec, ChatMessage{});
      auto const invalid = make_error_code(Error::invalid_argument);
      if (phase == 0) {
        std::sort(r.begin(), r.end());
        st->members = std::move(r);
        return run_script(self);
      }
      if (r.empty()) return self.complete(make_error_code(Error::incompatible_size), ChatMessage{});
      if (r[0] == "stale") {
        r.erase(r.begin());
        st->members = std::move(r);
        if (++attempts > 3) return self.complete(make_error_code(Error::try_again), ChatMessage{});
        return run_script(self);
      }
      if (r[0] == "error") {  // a command of this message's store failed on the server
        auto const code = r.size() > 1 ? server_error_code(r[1]) : Error::server_error;
        return self.complete(make_error_code(code), ChatMessage{});
      }
      if (r[0] == "noconv") {
        svc->forget_participants(st->m.conversationId);
        return self.complete(invalid, ChatMessage{});
      }
      if (r[0] != "ok") return self.complete(invalid, ChatMessage{});  // "dup", "sender"
      svc->cache(st->m.conversationId, st->members);
      if (svc->unread_ && svc->layout_ == KeyLayout::clustered && st->members.size() > 1) {
        phase = 2;
        auto* unread = svc->unread_;
        // The manager copies what it needs before this returns (its arguments are views).
        return unread->async_increment_unread_for_recipients(st->m.conversationId, st->sender,
                                                             st->members, 1, std::move(self));
      }
      self.complete({}, std::move(st->m));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::int64_t) {
      self.complete(ec, ec ? ChatMessage{} : std::move(st->m));
    }
  };

  // ---- coalescing -----------------------------------------------------------------------------
  //
  // Stores are coalesced, as RateLimiter's checks are: while kMaxInFlight script calls are on
  // their way, new stores wait, and go together (up to kMaxStoreBatch) in one script call when
  // one comes back. A caller still sees one round trip; many callers share each call's fixed
  // cost and its stats writes (messaging_bench: see benchmarks/README.md). Each message is
  // decided alone, in arrival order; a server error in one message's commands fails that
  // message only. All of a store's keys are in one slot in the clustered layout, so one group.

  static constexpr int kMaxInFlight = 2;
  using ItemHandler = detail::AnyHandler<void(error_code, std::vector<std::string>)>;

  // A store riding in a batch: its KEYS and ARGV live in its state, which the handler (the
  // store's operation) owns and keeps where it is until the handler runs.
  struct Item {
    StoreState* st;
    ItemHandler handler;
  };
  struct Batch {
    MessageStore* svc = nullptr;
    std::vector<Item> items;
    std::vector<std::string_view> keys, args;
    std::string count;
  };
  using BatchPtr = std::unique_ptr<Batch>;
  struct BatchDone {
    BatchPtr batch;
    void operator()(error_code ec, std::vector<std::string> reply) {
      Batch& b = *batch;
      b.svc->finish(std::move(batch), ec, std::move(reply));
    }
  };

  void enqueue(StoreState* st, ItemHandler handler) {
    BatchPtr batch;
    {
      std::lock_guard<std::mutex> lock(batch_mutex_);
      if (in_flight_ < kMaxInFlight) {
        ++in_flight_;
        batch = std::make_unique<Batch>();
        batch->items.push_back(Item{st, std::move(handler)});
      } else {
        waiting_.push_back(Item{st, std::move(handler)});
      }
    }
    if (batch) send(std::move(batch));
  }

  // Under the lock: the next batch of what waits (null when nothing does).
  BatchPtr take_batch() {
    if (waiting_.empty() || in_flight_ >= kMaxInFlight) return nullptr;
    ++in_flight_;
    auto batch = std::make_unique<Batch>();
    std::size_t const n = std::min(waiting_.size(), detail::msgstore::kMaxStoreBatch);
    batch->items.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      batch->items.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    return batch;
  }

  void send(BatchPtr batch) {
    Batch& b = *batch;
    b.svc = this;
    b.count = std::to_string(b.items.size());
    std::size_t nk = 1, na = detail::msgstore::kStoreHead;
    for (auto const& it : b.items) {
      nk += it.st->keys.size();
      na += it.st->args.size();
    }
    b.keys.reserve(nk);
    b.args.reserve(na);
    b.keys.push_back(stats_key_);
    b.args.insert(b.args.end(), {ttl_, unread_ttl_, b.count});
    for (auto const& it : b.items) {
      b.keys.insert(b.keys.end(), it.st->keys.begin(), it.st->keys.end());
      b.args.insert(b.args.end(), it.st->args.begin(), it.st->args.end());
    }
    // The command views the batch, which stays where it is while the pointer moves.
    auto const c = detail::msgstore::store_script(std::span<std::string_view const>(b.keys),
                                                  std::span<std::string_view const>(b.args));
    backend_.async_exec(c, BatchDone{std::move(batch)});
  }

  // Hands each store its part of the reply, and sends what waits.
  void finish(BatchPtr batch, error_code ec, std::vector<std::string> reply) {
    std::vector<BatchPtr> next;
    {
      std::lock_guard<std::mutex> lock(batch_mutex_);
      --in_flight_;
      while (BatchPtr b = take_batch())
        next.push_back(std::move(b));
    }
    for (auto& b : next)
      send(std::move(b));
    std::size_t at = 0;
    for (auto& it : batch->items) {
      std::vector<std::string> answer;
      error_code iec = ec;
      if (!ec) {
        if (at >= reply.size()) {
          iec = make_error_code(Error::incompatible_size);
        } else if (reply[at] == "stale" && at + 1 < reply.size()) {
          auto const n =
              static_cast<std::size_t>(detail::to_int(std::string_view(reply[at + 1]), -1));
          if (n > reply.size() - at - 2) {
            iec = make_error_code(Error::incompatible_size);
            at = reply.size();
          } else {
            answer.reserve(n + 1);
            answer.push_back(std::move(reply[at]));
            for (std::size_t i = 0; i < n; ++i)
              answer.push_back(std::move(reply[at + 2 + i]));
            at += 2 + n;
          }
        } else if (reply[at] == "error" && at + 1 < reply.size()) {
          answer = {std::move(reply[at]), std::move(reply[at + 1])};
          at += 2;
        } else {
          answer.push_back(std::move(reply[at++]));
        }
      }
      detail::post_handler(backend_.get_executor(), std::move(it.handler), iec, std::move(answer));
    }
  }

  // ---- pages ----------------------------------------------------------------------------------
  struct PageState {
    std::string conv, index, reads, stats;
    std::string mode, a1, a2, lim;
    std::int64_t limit = 0;
    std::int64_t offset = 0;  // mode "o"
    bool bad = false;
    std::vector<std::string> ids;
    std::vector<std::int64_t> ms;
    std::vector<std::string> msg_keys;
    std::vector<cmd::hmget> gets;
    std::vector<std::string> prune_keys, prune_ids;
    int rounds = 0;
  };

  std::unique_ptr<PageState> make_page(std::string_view conv, std::int64_t limit) {
    auto st = std::make_unique<PageState>();
    st->conv = conv;
    st->index = keys_.index(conv);
    st->reads = keys_.reads(conv);
    st->stats = keys_.stats();
    st->limit = limit;
    st->lim = std::to_string(limit);
    st->bad = conv.empty() || limit < 1 || limit > options_.max_page;
    return st;
  }

  template <class Token>
  auto cursor_page(char const* mode, std::string_view conv, MessageCursor const& c,
                   std::int64_t limit, Token&& token) {
    auto st = make_page(conv, limit);
    st->mode = mode;
    st->a1 = std::to_string(c.timestamp_ms);
    st->a2 = c.id;
    bool const bad = st->bad;
    return detail::erased_compose<PageSig>(
        std::forward<Token>(token), PageOp{this, std::move(st), bad}, backend_.get_executor());
  }

  struct PageOp {
    static constexpr std::int64_t kMaxInt = std::numeric_limits<std::int64_t>::max();
    MessageStore* svc;
    std::unique_ptr<PageState> st;
    bool bad = false;
    bool posted = false;

    template <class Self>
    void operator()(Self& self) {
      if (bad) {
        if (posted)
          return self.complete(make_error_code(Error::invalid_argument),
                               std::vector<ChatMessage>{});
        posted = true;
        return boost::asio::post(svc->backend_.get_executor(), std::move(self));
      }
      fetch(self);
    }

    template <class Self>
    void fetch(Self& self) {
      auto const& s = *st;
      if (s.mode == "o")  // a plain read: the script would add ~50 µs of Lua on the server
        svc->backend_.async_exec(
            cmd::zrange_withscores{
                .key = s.index,
                .start = s.offset,
                .stop = s.offset > kMaxInt - s.limit ? kMaxInt : s.offset + s.limit - 1,
                .rev = true},
            std::move(self));
      else
        svc->backend_.async_exec(
            detail::msgstore::page_script(s.index, {s.mode, s.a1, s.a2, s.lim}), std::move(self));
    }

    // The ids of an offset page (newest first), with their scores.
    template <class Self>
    void operator()(Self& self, error_code ec, ScoredMembers r) {
      if (ec || r.empty()) return self.complete(ec, std::vector<ChatMessage>{});
      st->ids.clear();
      st->ms.clear();
      for (auto& [id, score] : r) {
        st->ms.push_back(static_cast<std::int64_t>(score));
        st->ids.push_back(std::move(id));
      }
      read_messages(self);
    }

    // The ids of a cursor page: (id, ms) pairs from the page script.
    template <class Self>
    void operator()(Self& self, error_code ec, std::vector<std::string> r) {
      if (ec || r.empty()) return self.complete(ec, std::vector<ChatMessage>{});
      st->ids.clear();
      st->ms.clear();
      for (std::size_t i = 0; i + 1 < r.size(); i += 2) {
        st->ms.push_back(detail::to_int(r[i + 1]));
        st->ids.push_back(std::move(r[i]));
      }
      read_messages(self);
    }

    // Read the page's messages and the read positions.
    template <class Self>
    void read_messages(Self& self) {
      st->msg_keys.clear();
      st->gets.clear();
      for (auto const& id : st->ids)
        st->msg_keys.push_back(svc->keys_.message(id));
      for (auto const& k : st->msg_keys)
        st->gets.push_back(cmd::hmget{k, {"data", "content"}});
      svc->backend_.async_exec(
          batch(cmd::hgetall{st->reads}, std::span<cmd::hmget const>(st->gets)), std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::tuple<Reads, std::vector<Got>> r) {
      if (ec) return self.complete(ec, std::vector<ChatMessage>{});
      auto const& got = std::get<1>(r);
      st->prune_keys.assign({st->index, st->stats});
      st->prune_ids.clear();
      for (std::size_t i = 0; i < got.size() && i < st->ids.size(); ++i) {
        if (got[i].size() != 2 || !got[i][0]) {
          st->prune_keys.push_back(st->msg_keys[i]);
          st->prune_ids.push_back(st->ids[i]);
        }
      }
      if (!st->prune_ids.empty()) {
        if (++st->rounds > 64)  // each round prunes at least one entry or saw it deleted
          return self.complete(make_error_code(Error::try_again), std::vector<ChatMessage>{});
        return svc->backend_.async_exec(
            detail::msgstore::prune_script(st->prune_keys, st->prune_ids), std::move(self));
      }
      auto const reads = detail::msgstore::parse_reads(std::get<0>(r));
      std::vector<ChatMessage> out;
      out.reserve(got.size());
      for (std::size_t i = 0; i < got.size(); ++i) {
        ChatMessage m;
        if (auto dec = svc->codec_.decode(*got[i][0], m, nullptr))
          return self.complete(dec, std::vector<ChatMessage>{});
        if (got[i][1]) m.content = *got[i][1];
        std::string const sender = participant_member(m.sender.type, m.sender.id);
        m.isRead = false;
        for (auto const& rp : reads)
          if (rp.reader != sender &&
              (st->ms[i] < rp.ms || (st->ms[i] == rp.ms && st->ids[i] <= rp.id)))
            m.isRead = true;
        out.push_back(std::move(m));
      }
      self.complete({}, std::move(out));
    }

    // Pruned: read the page again.
    template <class Self>
    void operator()(Self& self, error_code ec, std::int64_t) {
      if (ec) return self.complete(ec, std::vector<ChatMessage>{});
      fetch(self);
    }
  };

  // ---- mark read ------------------------------------------------------------------------------
  struct MarkState {
    std::string conv, member, up_to;
    std::vector<std::string> keys;
    bool moved = false;
  };
  struct MarkOp {
    MessageStore* svc;
    std::unique_ptr<MarkState> st;
    bool bad = false;
    bool posted = false;
    int phase = 0;

    template <class Self>
    void operator()(Self& self) {
      if (bad) {
        if (posted) return self.complete(make_error_code(Error::invalid_argument), false);
        posted = true;
        return boost::asio::post(svc->backend_.get_executor(), std::move(self));
      }
      st->keys = {svc->keys_.index(st->conv), svc->keys_.reads(st->conv)};
      if (svc->unread_ && svc->layout_ == KeyLayout::plain)
        st->keys.push_back(svc->unread_->user_key(st->member));
      svc->backend_.async_exec(detail::msgstore::mark_script(
                                   st->keys, {st->member, st->up_to, st->conv, svc->unread_ttl_}),
                               std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::int64_t r) {
      if (ec) return self.complete(ec, false);
      if (phase == 1) return self.complete({}, st->moved);
      if (r < 0) return self.complete(make_error_code(Error::invalid_argument), false);
      st->moved = r == 1;
      if (svc->unread_ && svc->layout_ == KeyLayout::clustered) {
        phase = 1;
        auto* unread = svc->unread_;
        return unread->async_mark_conversation_read(st->conv, st->member, std::move(self));
      }
      self.complete({}, st->moved);
    }
  };

  // ---- prune ----------------------------------------------------------------------------------
  struct PruneState {
    std::string conv, index;
    std::int64_t batch = 0;
    std::vector<std::string> keys, ids;
  };
  struct PruneOp {
    MessageStore* svc;
    std::unique_ptr<PruneState> st;
    bool bad = false;
    bool posted = false;

    template <class Self>
    void operator()(Self& self) {
      if (bad) {
        if (posted) return self.complete(make_error_code(Error::invalid_argument), std::size_t{0});
        posted = true;
        return boost::asio::post(svc->backend_.get_executor(), std::move(self));
      }
      svc->backend_.async_exec(cmd::zrange{.key = st->index, .start = 0, .stop = st->batch - 1},
                               std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::vector<std::string> ids) {
      if (ec || ids.empty()) return self.complete(ec, std::size_t{0});
      st->keys = {st->index, svc->keys_.stats()};
      for (auto const& id : ids)
        st->keys.push_back(svc->keys_.message(id));
      st->ids = std::move(ids);
      svc->backend_.async_exec(detail::msgstore::prune_script(st->keys, st->ids), std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::int64_t n) {
      self.complete(ec, ec ? std::size_t{0} : static_cast<std::size_t>(n));
    }
  };

  B& backend_;
  MessageStoreOptions options_;
  KeyLayout layout_;
  UnreadMessageManager<B>* unread_;
  Codec codec_;
  MessagingKeys keys_;
  std::string ttl_;               // message_ttl in ms, as a script argument
  std::string unread_ttl_ = "0";  // the unread manager's ttl in ms
  std::string stats_key_;
  std::mutex cache_mutex_;
  std::unordered_map<std::string, std::vector<std::string>> cache_;
  std::mutex batch_mutex_;
  std::deque<Item> waiting_;  // stores waiting for a batch
  int in_flight_ = 0;         // batches on their way
};

}  // namespace rediskit
