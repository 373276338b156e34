// rediskit::VoteService<Backend>: votes on suggestions in real time, seed 002's voteService
// (voteOnSuggestion, getSuggestionVotes, getUserVote, updateSuggestionScore,
// getTopVotedSuggestions), with the `suggestions:votes` channel of its notificationService, an
// auto-approval threshold, and leaderboard reads as agoragames/leaderboard offers them.
//
//   rediskit::VoteOptions o;
//   o.threshold = 10;                                              // score up - down >= 10
//   o.on_threshold = [&](rediskit::VoteThresholdEvent const& e) { enqueue_approval(e); };
//   rediskit::VoteService votes(backend, std::move(o));            // any Backend
//   rediskit::VoteResult r = co_await votes.async_vote_on_suggestion("s42", user_id, +1);
//   // r.counts: {up, down, score, threshold_reached}; r.previous, r.changed
//   std::vector<rediskit::RankedSuggestion> top =
//       co_await votes.async_get_top_voted_suggestions(10);     // {id, score, rank}
//
// A vote is +1 (up), -1 (down) or 0 (withdraw): up, down, a change of mind and a withdrawal
// are all one script, one round trip. The script reads the user's previous vote, writes the
// new one, adjusts the up and down counts, sets the suggestion's score (up - down) in the
// ranking, decides the threshold and publishes the vote, atomically: whatever runs
// concurrently (other users, the same user twice, several processes), the counts equal a
// recount of the votes, the ranking's score equals up - down, and the message order on the
// channel is the order of the votes. A vote that changes nothing (the same vote again,
// withdrawing a vote that is not there) writes nothing and publishes nothing (changed = false).
//
// Keys (<id>: the suggestion id as given; <user>: the user id):
//
//   key                                    type  what
//   vote:suggestion:<id>:votes             hash  <user> -> "1" | "-1" (seed 002's key; a user
//                                                who withdrew has no field)
//   vote:suggestion:<id>:counts            hash  up, down (the counts of the votes hash), and
//                                                crossed = "1" once the threshold was crossed
//   suggestions:top:voted                  zset  <id> -> up - down, every suggestion with at
//                                                least one vote (seed 002's key)
//
// The counts are a sibling key in the same slot, not reserved fields of the votes hash: any
// string can be a user id, so no field name of that hash can be reserved, and the hash stays
// the seed's user -> vote map (HLEN is the number of voters). A counts key that is missing
// while votes exist (votes written by another program) is rebuilt from the votes hash by the
// next script that reads it; async_update_suggestion_score rebuilds it on demand.
//
// Layouts. Plain (one node, Sentinel; the default but on ClusterBackend): the names above,
// seed 002's, so a C++ service shares a Redis with the Node services. Clustered (Redis
// Cluster; ClusterBackend's default, or VoteOptions::key_layout): every key carries the one
// hash tag VoteOptions::cluster_tag, first:
//
//   {votes}:vote:suggestion:<id>:votes   {votes}:vote:suggestion:<id>:counts
//   {votes}:suggestions:top:voted
//
// The ranking is one global sorted set and each vote must change it in the same atomic step
// as the suggestion's hashes, so on a cluster they must all share one slot: every key of the
// service sits in the slot of `{votes}`, on one master. That is the honest price of "counts,
// the user's vote and the ranking never disagree": every vote and every ranking read goes to
// one master, whatever the cluster's size (give services of independent vote domains
// different cluster_tags to put them on different masters). The alternative, a suggestion's
// hashes in its own slot and the ranking updated in a second step, would spread the load but
// let a reader (or a crash between the steps) see a ranking that disagrees with the counts;
// it is not offered.
// The plain layout on a ClusterBackend fails every vote with Error::cross_slot before
// anything is sent.
//
// Publishing. Every vote that changes something publishes, from inside the script,
//   {"suggestion":"<id>","up":U,"down":D,"score":U-D,"user":"<user>","vote":V}
// (JSON, in that order; strings escaped as Lua's cjson does) on VoteOptions::channel (seed
// 002's `suggestions:votes`; empty: no message). Publishing from the script makes the order
// of messages the order of the votes. On a cluster a classic PUBLISH from a script is allowed
// (the channel is not a key) and reaches the subscribers of every node over the cluster bus.
// Pub/sub is at most once: a subscriber that was not connected misses the message (read the
// counts again after a reconnection).
//
// Threshold (seed 002's auto-approval): with VoteOptions::threshold = N, the first script that
// finds the suggestion's score >= N sets the marker field `crossed` and says so; the service
// then calls VoteOptions::on_threshold once, before the vote's handler, on the handler's
// executor. The marker is decided and written inside the script, so the hook fires exactly once
// per suggestion however many votes race (and never again if the score falls back and
// rises). A vote whose reply is lost (Error::connection_lost: it may have run) may have set
// the marker without the hook being called: async_get_suggestion_votes shows the marker
// (threshold_reached) for a reconciliation. Changing N later does not re-arm suggestions that
// crossed the old one.
//
// Ranking reads (agoragames/leaderboard's leaders, rank_for / score_for, around_me): ranks are
// 1-based positions by descending score (1 is the top); equal scores are ordered by
// descending id bytes (Redis's ZREVRANGE order), the same order in every read.
//
// Every operation is one round trip (one script or one command). Operations never complete
// inside the initiating call: they complete through the handler's associated executor. Bad
// input (an empty suggestion or user id, a vote not in {-1, 0, +1}, a count or page size
// below 1, a negative offset) completes with Error::invalid_argument and sends nothing.
// Thread safety: as the backend; the hook may run on several threads at once when the
// backend's completions do. Lifetimes: the service and its backend must outlive the
// operations; the arguments may die once the async_ call returns. Cancellation: the handler's
// slot reaches the backend's operation.
#pragma once

#include <rediskit/cmd/hashes.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/cmd/pubsub.hpp>
#include <rediskit/cmd/sorted_sets.hpp>
#include <rediskit/command.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit {

/// A suggestion's votes: the up and down counts, the score (up - down) and whether the
/// threshold was crossed (the marker: set once, never cleared).
struct VoteCounts {
  std::int64_t up = 0;
  std::int64_t down = 0;
  std::int64_t score = 0;
  bool threshold_reached = false;
  friend bool operator==(VoteCounts const&, VoteCounts const&) = default;
};

/// What a vote did.
struct VoteResult {
  VoteCounts counts{};   ///< after the vote
  int previous = 0;      ///< the user's vote before (-1, 0 or +1)
  int vote = 0;          ///< the user's vote now
  bool changed = false;  ///< false: it was already so (nothing written, nothing published)
  bool threshold_crossed = false;  ///< this vote crossed the threshold (the hook was called)
};

/// A suggestion in the ranking: its 1-based rank (1 = highest score) and score.
struct RankedSuggestion {
  std::string id;
  std::int64_t score = 0;
  std::int64_t rank = 0;
  friend bool operator==(RankedSuggestion const&, RankedSuggestion const&) = default;
};

/// What VoteOptions::on_threshold receives.
struct VoteThresholdEvent {
  std::string suggestion_id;
  /// The user whose vote crossed it (empty when async_update_suggestion_score did).
  std::string user_id;
  VoteCounts counts{};
  std::int64_t threshold = 0;
};

/// Options of VoteService; the defaults are seed 002's names.
struct VoteOptions {
  /// Keys `<key_prefix>:<id>:votes` and `<key_prefix>:<id>:counts`.
  std::string key_prefix = "vote:suggestion";
  /// The ranking (a sorted set of suggestion ids by score).
  std::string ranking_key = "suggestions:top:voted";
  /// Where every vote is published (empty: nowhere).
  std::string channel = "suggestions:votes";
  /// The score (up - down) at which on_threshold fires, once per suggestion. Unset: never.
  std::optional<std::int64_t> threshold{};
  /// Called once per suggestion whose score reaches `threshold` (see the top of the file). It
  /// runs before the vote's handler, on the handler's executor; it should not throw (an
  /// exception leaves the operation's handler uncalled and escapes from the executor's run()).
  std::function<void(VoteThresholdEvent const&)> on_threshold{};
  /// The hash tag of every key in the clustered layout (no '{' or '}', not empty).
  std::string cluster_tag = "votes";
  /// Unset: default_key_layout_v<B> (clustered on ClusterBackend, plain elsewhere).
  std::optional<KeyLayout> key_layout{};
};

namespace detail::vote {

using boost::system::error_code;

inline constexpr std::string_view kBadArgs = "ERR vote service: wrong number of keys or arguments";

/// A decimal integer, all of `s`.
inline std::optional<std::int64_t> parse_int(std::string_view s) noexcept {
  std::int64_t v = 0;
  auto const r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

/// parse_int into `out`; false (out unchanged) when `s` is not a decimal integer.
inline bool parse_into(std::string_view s, std::int64_t& out) noexcept {
  auto const v = parse_int(s);
  if (!v) return false;
  out = *v;
  return true;
}

/// A score as the server writes it ("3", "-2", "1.5"), truncated to an integer (the service
/// writes only integers).
inline std::optional<std::int64_t> parse_score(std::string_view s) noexcept {
  if (auto v = parse_int(s)) return v;
  double d = 0;
  auto const r = std::from_chars(s.data(), s.data() + s.size(), d);
  if (s.empty() || r.ec != std::errc{} || r.ptr != s.data() + s.size() || !std::isfinite(d))
    return std::nullopt;
  return static_cast<std::int64_t>(d);
}

/// A stored vote: "1" / "+1" is up, "-1" is down, anything else counts as no vote (the
/// script's value()).
inline int value_of(std::string_view v) noexcept {
  if (v == "1" || v == "+1") return 1;
  if (v == "-1") return -1;
  return 0;
}

/// `s` as a JSON string, escaped byte for byte as Lua's cjson.encode does (so the script and
/// its twin publish the same message).
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    auto const c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '/':
        out += "\\/";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

/// The message of one vote on the channel.
inline std::string vote_message(std::string_view id, std::int64_t up, std::int64_t down,
                                std::string_view user, std::int64_t vote) {
  std::string m;
  m.reserve(64 + id.size() + user.size());
  m += "{\"suggestion\":";
  append_json_string(m, id);
  m += ",\"up\":" + std::to_string(up) + ",\"down\":" + std::to_string(down) +
       ",\"score\":" + std::to_string(up - down) + ",\"user\":";
  append_json_string(m, user);
  m += ",\"vote\":" + std::to_string(vote) + "}";
  return m;
}

// The reply of vote_script: up, down, previous vote, changed, crossed now, crossed (marker).
inline constexpr std::size_t kVoteReply = 6;

// KEYS: votes hash, counts hash, ranking. ARGV: mode (v: vote, r: recount, g: read), id, user,
// vote (-1 | 0 | 1), threshold ("" = none), channel ("" = none). See the top of the file.
inline std::vector<std::int64_t> vote_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  if (k.size() != 3 || a.size() != 6) ctx.fail(kBadArgs);
  auto const votes = k[0], counts = k[1], ranking = k[2];
  std::string_view const mode = a[0], id = a[1], user = a[2], channel = a[5];
  std::int64_t const vote = parse_int(a[3]).value_or(0);
  std::optional<std::int64_t> const threshold = parse_int(a[4]);
  auto const c = ctx.call(cmd::hmget{counts, {"up", "down", "crossed"}});
  // Plain integers and a flag, not optionals compared with !=: g++ 12 at -O2 warns
  // (-Wmaybe-uninitialized, a false positive) about those, which -Werror makes an error.
  std::int64_t stored_up = 0, stored_down = 0;
  bool const have_counts = c[0] && c[1] && parse_into(*c[0], stored_up) &&
                           parse_into(*c[1], stored_down);
  bool crossed = c[2] && *c[2] == "1";
  std::int64_t up = stored_up, down = stored_down;
  if (mode == "r" || !have_counts) {
    up = down = 0;
    for (auto const& v : ctx.call(cmd::hvals{votes})) {
      int const x = value_of(v);
      up += x == 1;
      down += x == -1;
    }
  }
  std::int64_t prev = 0, changed = 0, now = 0;
  if (mode == "v") {
    auto const old = ctx.call(cmd::hget{votes, user});
    prev = old ? value_of(*old) : 0;
    if (prev != vote) {
      changed = 1;
      up -= prev == 1;
      down -= prev == -1;
      up += vote == 1;
      down += vote == -1;
      if (vote == 0)
        ctx.call(cmd::hdel{votes, user});
      else
        ctx.call(cmd::hset{votes, FieldValue{user, a[3]}});
    }
  } else if (mode == "r" && (!have_counts || stored_up != up || stored_down != down)) {
    changed = 1;
  }
  std::int64_t const score = up - down;
  if (mode != "g") {
    if (threshold && !crossed && score >= *threshold) {
      crossed = true;
      now = 1;
    }
    if (up + down > 0)
      ctx.call(cmd::zadd{.key = ranking, .members = ScoreMember{static_cast<double>(score), id}});
    else
      ctx.call(cmd::zrem{ranking, id});
    if (up + down > 0 || crossed) {
      std::string const u = std::to_string(up), d = std::to_string(down);
      ctx.call(cmd::hset{counts, {FieldValue{"up", u}, FieldValue{"down", d}}});
      if (crossed) ctx.call(cmd::hset{counts, FieldValue{"crossed", "1"}});
    } else {
      ctx.call(cmd::del{counts});
    }
    if (changed && mode == "v" && !channel.empty()) {
      std::string const m = vote_message(id, up, down, user, vote);
      ctx.call(cmd::publish{channel, m});
    }
  }
  return {up, down, prev, changed, now, crossed ? 1 : 0};
}

inline auto const vote_script =
    make_script<std::vector<std::int64_t>>(R"lua(
if #KEYS ~= 3 or #ARGV ~= 6 then
  return redis.error_reply('ERR vote service: wrong number of keys or arguments')
end
local votes, counts, ranking = KEYS[1], KEYS[2], KEYS[3]
local mode, id, user, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[6]
local vote, threshold = tonumber(ARGV[4]) or 0, tonumber(ARGV[5])
local fmt = string.format
local function value(v)
  if v == '1' or v == '+1' then return 1 end
  if v == '-1' then return -1 end
  return 0
end
local c = redis.call('HMGET', counts, 'up', 'down', 'crossed')
local stored_up, stored_down = tonumber(c[1]), tonumber(c[2])
local crossed = c[3] == '1'
local up, down = stored_up or 0, stored_down or 0
if mode == 'r' or not stored_up or not stored_down then
  up, down = 0, 0
  local all = redis.call('HVALS', votes)
  for i = 1, #all do
    local x = value(all[i])
    if x == 1 then up = up + 1 elseif x == -1 then down = down + 1 end
  end
end
local prev, changed, now = 0, 0, 0
if mode == 'v' then
  prev = value(redis.call('HGET', votes, user))
  if prev ~= vote then
    changed = 1
    if prev == 1 then up = up - 1 elseif prev == -1 then down = down - 1 end
    if vote == 1 then up = up + 1 elseif vote == -1 then down = down + 1 end
    if vote == 0 then
      redis.call('HDEL', votes, user)
    else
      redis.call('HSET', votes, user, ARGV[4])
    end
  end
elseif mode == 'r' and (stored_up ~= up or stored_down ~= down) then
  changed = 1
end
local score = up - down
if mode ~= 'g' then
  if threshold and not crossed and score >= threshold then
    crossed, now = true, 1
  end
  if up + down > 0 then
    redis.call('ZADD', ranking, fmt('%d', score), id)
  else
    redis.call('ZREM', ranking, id)
  end
  if up + down > 0 or crossed then
    redis.call('HSET', counts, 'up', fmt('%d', up), 'down', fmt('%d', down))
    if crossed then redis.call('HSET', counts, 'crossed', '1') end
  else
    redis.call('DEL', counts)
  end
  if changed == 1 and mode == 'v' and channel ~= '' then
    redis.call('PUBLISH', channel, '{"suggestion":' .. cjson.encode(id) .. ',"up":' ..
      fmt('%d', up) .. ',"down":' .. fmt('%d', down) .. ',"score":' .. fmt('%d', score) ..
      ',"user":' .. cjson.encode(user) .. ',"vote":' .. fmt('%d', vote) .. '}')
  end
end
local r = 0
if crossed then r = 1 end
return {up, down, prev, changed, now, r})lua",
                                           [](ScriptContext auto& c) { return vote_twin(c); });

/// A score as the server writes it in a script's reply (integers without a decimal point).
inline std::string score_text(double s) {
  if (std::isfinite(s) && s == std::floor(s) && std::fabs(s) < 1e15)
    return std::to_string(static_cast<std::int64_t>(s));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", s);
  return buf;
}

// KEYS: ranking. ARGV: id, page size (0: the rank alone). Reply: {} when the id is not ranked;
// else its 0-based reverse rank, its score, the 0-based reverse rank of the page's first
// entry (agoragames' around_me: rank - size / 2, at least 0), then the page's members and
// scores (highest first).
inline std::vector<std::string> around_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  if (k.size() != 1 || a.size() != 2) ctx.fail(kBadArgs);
  std::vector<std::string> out;
  auto const r = ctx.call(cmd::zrevrank{k[0], a[0]});
  if (!r) return out;
  auto const s = ctx.call(cmd::zscore{k[0], a[0]});
  std::int64_t const size = parse_int(a[1]).value_or(0);
  std::int64_t first = *r - size / 2;
  if (first < 0) first = 0;
  out.push_back(std::to_string(*r));
  out.push_back(score_text(s.value_or(0)));
  out.push_back(std::to_string(first));
  if (size > 0)
    for (auto& [m, sc] : ctx.call(cmd::zrange_withscores{
             .key = k[0], .start = first, .stop = first + size - 1, .rev = true})) {
      out.push_back(std::move(m));
      out.push_back(score_text(sc));
    }
  return out;
}

inline auto const around_script =
    make_script<std::vector<std::string>>(R"lua(
if #KEYS ~= 1 or #ARGV ~= 2 then
  return redis.error_reply('ERR vote service: wrong number of keys or arguments')
end
local r = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not r then return {} end
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
local size = tonumber(ARGV[2]) or 0
local first = r - math.floor(size / 2)
if first < 0 then first = 0 end
local out = {string.format('%d', r), s, string.format('%d', first)}
if size > 0 then
  local page = redis.call('ZRANGE', KEYS[1], first, first + size - 1, 'REV', 'WITHSCORES')
  for i = 1, #page do out[#out + 1] = page[i] end
end
return out)lua",
                                          [](ScriptContext auto& c) { return around_twin(c); });

}  // namespace detail::vote

/// Seed 002's votes over any Backend (see the top of this file).
template <Backend B>
class VoteService {
  using error_code = boost::system::error_code;
  using VoteSig = void(error_code, VoteResult);
  using CountsSig = void(error_code, VoteCounts);
  using IntSig = void(error_code, int);
  using CountSig = void(error_code, std::int64_t);
  using ListSig = void(error_code, std::vector<RankedSuggestion>);
  using RankSig = void(error_code, std::optional<RankedSuggestion>);

 public:
  using executor_type = typename B::executor_type;

  /// `backend` must outlive the service and its operations. Throws rediskit::Exception
  /// (Error::invalid_config) in the clustered layout when cluster_tag is empty or holds '{'
  /// or '}'.
  explicit VoteService(B& backend, VoteOptions options = {})
      : backend_(backend),
        options_(std::move(options)),
        layout_(options_.key_layout.value_or(default_key_layout_v<B>)),
        threshold_(options_.threshold ? std::to_string(*options_.threshold) : std::string()) {
    std::string tag;
    if (layout_ == KeyLayout::clustered) {
      if (options_.cluster_tag.empty() ||
          options_.cluster_tag.find_first_of("{}") != std::string::npos)
        throw Exception(make_error_code(Error::invalid_config),
                        "VoteOptions::cluster_tag must be a non-empty hash tag without '{' or "
                        "'}' in the clustered layout");
      tag = "{" + options_.cluster_tag + "}:";
    }
    prefix_ = tag + options_.key_prefix + ":";
    ranking_ = tag + options_.ranking_key;
  }

  executor_type get_executor() const noexcept { return backend_.get_executor(); }
  VoteOptions const& options() const noexcept { return options_; }
  /// The layout in use: options().key_layout, else default_key_layout_v<B>.
  KeyLayout key_layout() const noexcept { return layout_; }

  /// The hash of `suggestion_id`'s votes (user -> +1 / -1).
  std::string votes_key(std::string_view suggestion_id) const {
    return prefix_ + std::string(suggestion_id) + ":votes";
  }
  /// The hash of `suggestion_id`'s counts (up, down, crossed).
  std::string counts_key(std::string_view suggestion_id) const {
    return prefix_ + std::string(suggestion_id) + ":counts";
  }
  /// The ranking (sorted set).
  std::string const& ranking_key() const noexcept { return ranking_; }

  /// Replaces the threshold hook (before operations start, or under the same rules as the
  /// service's other state: not while votes complete on other threads).
  void set_threshold_hook(std::function<void(VoteThresholdEvent const&)> hook) {
    options_.on_threshold = std::move(hook);
  }

  /// seed: voteOnSuggestion. `vote`: +1 up, -1 down, 0 withdraw (see the top of the file).
  /// Handler: void(error_code, VoteResult). One script.
  template <class Token = boost::asio::deferred_t>
  auto async_vote_on_suggestion(std::string_view suggestion_id, std::string_view user_id, int vote,
                                Token&& token = {}) {
    return detail::initiate<VoteSig>(token, [this, id = std::string(suggestion_id),
                                             user = std::string(user_id), vote](auto handler) {
      start_vote('v', id, user, vote, detail::AnyHandler<VoteSig>(std::move(handler)));
    });
  }

  /// seed: updateSuggestionScore. Recounts the suggestion's votes hash and writes the counts
  /// and the ranking score from it (a repair, e.g. after another program wrote votes; the
  /// threshold applies, and the hook fires if the recount crosses it). Nothing is published.
  /// Handler: void(error_code, VoteCounts). One script.
  template <class Token = boost::asio::deferred_t>
  auto async_update_suggestion_score(std::string_view suggestion_id, Token&& token = {}) {
    return detail::initiate<CountsSig>(
        token, [this, id = std::string(suggestion_id)](auto handler) {
          start_counts('r', id, detail::AnyHandler<CountsSig>(std::move(handler)));
        });
  }

  /// seed: getSuggestionVotes. The counts (0, 0 for a suggestion nobody voted on). Handler:
  /// void(error_code, VoteCounts). One read-only script (it recounts the votes hash when the
  /// counts key is missing).
  template <class Token = boost::asio::deferred_t>
  auto async_get_suggestion_votes(std::string_view suggestion_id, Token&& token = {}) {
    return detail::initiate<CountsSig>(
        token, [this, id = std::string(suggestion_id)](auto handler) {
          start_counts('g', id, detail::AnyHandler<CountsSig>(std::move(handler)));
        });
  }

  /// seed: getUserVote. The user's vote: +1, -1, or 0 (none). Handler: void(error_code, int).
  /// One HGET.
  template <class Token = boost::asio::deferred_t>
  auto async_get_user_vote(std::string_view suggestion_id, std::string_view user_id,
                           Token&& token = {}) {
    return detail::initiate<IntSig>(
        token, [this, id = std::string(suggestion_id), user = std::string(user_id)](auto handler) {
          start_user_vote(id, user, detail::AnyHandler<IntSig>(std::move(handler)));
        });
  }

  /// seed: getTopVotedSuggestions. The `count` highest-ranked suggestions (fewer when fewer
  /// are ranked), rank 1 first. Handler: void(error_code, std::vector<RankedSuggestion>).
  template <class Token = boost::asio::deferred_t>
  requires(!std::is_integral_v<std::remove_cvref_t<Token>>) auto async_get_top_voted_suggestions(
      std::int64_t count, Token&& token = {}) {
    return async_get_top_voted_suggestions(0, count, std::forward<Token>(token));
  }

  /// A page of the ranking: `count` suggestions from 0-based position `offset` (agoragames'
  /// leaders(page, page_size) is offset = (page - 1) * page_size). One ZRANGE.
  template <class Token = boost::asio::deferred_t>
  auto async_get_top_voted_suggestions(std::int64_t offset, std::int64_t count,
                                       Token&& token = {}) {
    return detail::initiate<ListSig>(token, [this, offset, count](auto handler) {
      start_top(offset, count, detail::AnyHandler<ListSig>(std::move(handler)));
    });
  }

  /// The rank and score of one suggestion (agoragames' rank_for / score_for); nullopt when it
  /// is not ranked (nobody votes on it). Handler: void(error_code,
  /// std::optional<RankedSuggestion>). One script.
  template <class Token = boost::asio::deferred_t>
  auto async_get_suggestion_rank(std::string_view suggestion_id, Token&& token = {}) {
    return detail::initiate<RankSig>(token, [this, id = std::string(suggestion_id)](auto handler) {
      start_rank(id, detail::AnyHandler<RankSig>(std::move(handler)));
    });
  }

  /// The page of `page_size` suggestions around one (agoragames' around_me: from its rank -
  /// page_size / 2, not before the top); empty when it is not ranked. Handler:
  /// void(error_code, std::vector<RankedSuggestion>). One script (rank and page agree).
  template <class Token = boost::asio::deferred_t>
  auto async_get_suggestions_around(std::string_view suggestion_id, std::int64_t page_size,
                                    Token&& token = {}) {
    return detail::initiate<ListSig>(
        token, [this, id = std::string(suggestion_id), page_size](auto handler) {
          start_around(id, page_size, detail::AnyHandler<ListSig>(std::move(handler)));
        });
  }

  /// How many suggestions are ranked (agoragames' total_members). Handler: void(error_code,
  /// std::int64_t). One ZCARD.
  template <class Token = boost::asio::deferred_t>
  auto async_get_ranked_count(Token&& token = {}) {
    return detail::initiate<CountSig>(token, [this](auto handler) {
      backend_.async_exec(cmd::zcard{ranking_}, detail::AnyHandler<CountSig>(std::move(handler)));
    });
  }

 private:
  template <class Sig>
  using Erased = detail::AnyHandler<Sig>;

  template <class Handler, class R>
  void fail_now(Handler handler, R r) {
    detail::post_handler(backend_.get_executor(), std::move(handler),
                         make_error_code(Error::invalid_argument), std::move(r));
  }

  static VoteCounts counts_of(std::vector<std::int64_t> const& r) {
    return {r[0], r[1], r[0] - r[1], r[5] != 0};
  }

  // The vote script's reply as a VoteResult; calls the hook when this script crossed.
  // Owns copies of the ids: the command views the initiation's own strings.
  struct VoteMap {
    VoteService* self;
    std::string id;
    std::string user;
    int vote;
    VoteResult operator()(error_code& ec, std::vector<std::int64_t> const& r) {
      if (!ec && r.size() != detail::vote::kVoteReply)
        ec = make_error_code(Error::incompatible_size);
      if (ec) return {};
      VoteResult out;
      out.counts = counts_of(r);
      out.previous = static_cast<int>(r[2]);
      out.vote = vote;  // when nothing changed, it was already the user's vote
      out.changed = r[3] != 0;
      out.threshold_crossed = r[4] != 0;
      if (out.threshold_crossed) self->fire(id, user, out.counts);
      return out;
    }
  };

  struct CountsMap {
    VoteService* self;
    std::string id;
    VoteCounts operator()(error_code& ec, std::vector<std::int64_t> const& r) {
      if (!ec && r.size() != detail::vote::kVoteReply)
        ec = make_error_code(Error::incompatible_size);
      if (ec) return {};
      VoteCounts const c = counts_of(r);
      if (r[4] != 0) self->fire(id, std::string(), c);
      return c;
    }
  };

  void fire(std::string const& id, std::string const& user, VoteCounts const& c) {
    if (!options_.on_threshold) return;
    VoteThresholdEvent e{id, user, c, options_.threshold.value_or(0)};
    options_.on_threshold(e);
  }

  void start_vote(char mode, std::string const& id, std::string const& user, int vote,
                  Erased<VoteSig> handler) {
    if (id.empty() || user.empty() || vote < -1 || vote > 1)
      return fail_now(std::move(handler), VoteResult{});
    std::string const vk = votes_key(id), ck = counts_key(id), m(1, mode);
    std::string const v = std::to_string(vote);
    // The command views the strings here; the map gets copies of its own.
    backend_.async_exec(detail::vote::vote_script({vk, ck, ranking_},
                                                  {m, id, user, v, threshold_, options_.channel}),
                        detail::ThenHandler<Erased<VoteSig>, VoteMap>{
                            std::move(handler), VoteMap{this, id, user, vote}});
  }

  void start_counts(char mode, std::string const& id, Erased<CountsSig> handler) {
    if (id.empty()) return fail_now(std::move(handler), VoteCounts{});
    std::string const vk = votes_key(id), ck = counts_key(id), m(1, mode), none;
    backend_.async_exec(
        detail::vote::vote_script({vk, ck, ranking_}, {m, id, none, "0", threshold_, none}),
        detail::ThenHandler<Erased<CountsSig>, CountsMap>{std::move(handler), CountsMap{this, id}});
  }

  struct UserVoteMap {
    int operator()(error_code& ec, std::optional<std::string> const& v) const {
      return ec || !v ? 0 : detail::vote::value_of(*v);
    }
  };

  void start_user_vote(std::string const& id, std::string const& user, Erased<IntSig> handler) {
    if (id.empty() || user.empty()) return fail_now(std::move(handler), 0);
    std::string const vk = votes_key(id);
    backend_.async_exec(cmd::hget{vk, user}, detail::ThenHandler<Erased<IntSig>, UserVoteMap>{
                                                 std::move(handler), UserVoteMap{}});
  }

  struct TopMap {
    std::int64_t offset;
    std::vector<RankedSuggestion> operator()(error_code& ec, ScoredMembers page) const {
      std::vector<RankedSuggestion> out;
      if (ec) return out;
      out.reserve(page.size());
      std::int64_t rank = offset;
      for (auto& [m, s] : page)
        out.push_back(RankedSuggestion{std::move(m), static_cast<std::int64_t>(s), ++rank});
      return out;
    }
  };

  void start_top(std::int64_t offset, std::int64_t count, Erased<ListSig> handler) {
    if (offset < 0 || count < 1)
      return fail_now(std::move(handler), std::vector<RankedSuggestion>{});
    cmd::zrange_withscores const z{
        .key = ranking_, .start = offset, .stop = offset + count - 1, .rev = true};
    backend_.async_exec(
        z, detail::ThenHandler<Erased<ListSig>, TopMap>{std::move(handler), TopMap{offset}});
  }

  // The around script's reply: rank, score, first, then member / score pairs.
  struct AroundMap {
    std::vector<RankedSuggestion> operator()(error_code& ec, std::vector<std::string> r) const {
      std::vector<RankedSuggestion> out;
      if (ec || r.empty()) return out;
      auto const first = r.size() >= 3 ? detail::vote::parse_int(r[2]) : std::nullopt;
      if (!first || r.size() % 2 == 0) {
        ec = make_error_code(Error::incompatible_size);
        return out;
      }
      out.reserve((r.size() - 3) / 2);
      std::int64_t rank = *first;
      for (std::size_t i = 3; i + 1 < r.size(); i += 2)
        out.push_back(RankedSuggestion{std::move(r[i]),
                                       detail::vote::parse_score(r[i + 1]).value_or(0), ++rank});
      return out;
    }
  };

  struct RankMap {
    std::string id;
    std::optional<RankedSuggestion> operator()(error_code& ec, std::vector<std::string> r) const {
      if (ec || r.empty()) return std::nullopt;
      auto const rank = detail::vote::parse_int(r[0]);
      auto const score = r.size() >= 2 ? detail::vote::parse_score(r[1]) : std::nullopt;
      if (!rank || !score) {
        ec = make_error_code(Error::incompatible_size);
        return std::nullopt;
      }
      return RankedSuggestion{id, *score, *rank + 1};
    }
  };

  void start_around(std::string const& id, std::int64_t page_size, Erased<ListSig> handler) {
    if (id.empty() || page_size < 1)
      return fail_now(std::move(handler), std::vector<RankedSuggestion>{});
    std::string const size = std::to_string(page_size);
    backend_.async_exec(
        detail::vote::around_script(ranking_, {id, size}),
        detail::ThenHandler<Erased<ListSig>, AroundMap>{std::move(handler), AroundMap{}});
  }

  void start_rank(std::string const& id, Erased<RankSig> handler) {
    if (id.empty()) return fail_now(std::move(handler), std::optional<RankedSuggestion>{});
    backend_.async_exec(
        detail::vote::around_script(ranking_, {id, "0"}),
        detail::ThenHandler<Erased<RankSig>, RankMap>{std::move(handler), RankMap{id}});
  }

  B& backend_;
  VoteOptions options_;
  KeyLayout layout_;
  std::string threshold_;  // the script's argument: "" or the threshold
  std::string prefix_;     // "[{tag}:]<key_prefix>:"
  std::string ranking_;    // "[{tag}:]<ranking_key>"
};

}  // namespace rediskit
