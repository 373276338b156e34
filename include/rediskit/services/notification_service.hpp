// rediskit::NotificationService<Backend, Codec>: real-time notifications with a per-user history
// (seed 002's pub/sub channels, seed 004's NotificationService: types, priorities, a 7-day
// history, read marks, subscribe returning unsubscribe, notifyNewMessage).
//
//   rediskit::NotificationService<rediskit::RedisBackend> notes(redis);
//   rediskit::Notification n(rediskit::NotificationType::status_change,
//                            rediskit::NotificationPriority::low, "Dr. Ngo is online");
//   std::string id = co_await notes.async_notify("42", n);      // history + PUBLISH, one script
//   auto sub = co_await notes.async_subscribe("42", [](rediskit::Notification const& n) {
//     push_to_websocket(n);                                     // live, in order, exactly once
//   });
//   co_await notes.async_notify_new_message(message, conversation);   // every participant but
//   rediskit::NotificationPage p = co_await notes.async_get_history("42", "", 20);  // the sender
//   co_await notes.async_mark_read("42", p.items[0].id);
//   rediskit::UnreadCounts u = co_await notes.async_get_unread_counts("42");   // u.high, ...
//   sub.unsubscribe();                                          // or let `sub` go out of scope
//   co_await notes.async_publish_resource_update("r7", update); // resource:updates:r7
//   co_await notes.async_publish_suggestion_vote(vote);         // suggestions:votes
//
// Layout (prefixes from NotificationOptions, seed 002's channel names by default; <U>: the user
// id as given):
//
//   KeyLayout::plain (one node)    KeyLayout::clustered         type     what
//   notifications:history:<U>      notifications:history:{U}    stream   the user's history:
//       one entry per notification, field "notification" -> the Codec's bytes of it; the entry
//       id ("1700000000000-0", server time) is the notification's id
//   notifications:unread:<U>       notifications:unread:{U}     hash     <id> -> priority name of
//       each unread notification kept in the history; "high" / "medium" / "low" -> how many;
//       "last" -> the id of the user's last notification
//   channel notifications:<U>      the same name (a channel, not a key; seed 002's
//       notifications:{userId})
//   channel resource:updates:<R>, channel suggestions:votes (seed 002)
//
// Clustered: the two keys of a user share the user's hash tag (hash_tag_for, as SessionStore's
// and RoomManager's user keys: an id holding '}' is tagged by its slot, "{TTT}id"), so every
// script touches one slot and stays atomic. The channel keeps the seed's name: classic PUBLISH
// works across a cluster (the cluster bus carries it to every node), and the script that
// appends to the history publishes from the user's master, so a user's messages arrive in
// order. NotificationOptions::key_layout (default default_key_layout_v<B>: clustered on
// ClusterBackend, plain elsewhere).
//
// History. A stream per user, bounded two ways, both exact so that the unread counts are: at
// most max_history entries (the oldest go first), and none older than `retention` (7 days,
// seed 004; the keys' TTL is renewed to it by every notification, and every script first drops
// the entries older than that). Stream ids are monotonic per user, even after the keys expired
// (they start again from the clock), so an id is a resume cursor: async_get_history(user,
// cursor, count) returns the entries after `cursor`, oldest first. Every script declares both
// keys and prunes first: what it returns never includes an expired notification, and the
// unread counts by priority are kept in the same script as every write, trim and mark (exact).
//
// Publishing a notification is one script: prune, XADD, unread mark and count, trim, PEXPIRE,
// then PUBLISH on notifications:<U> of
//     {"id":"<id>","prev":"<id of the user's previous notification, 0-0 if none>",
//      "notification":<the Codec's bytes>}
// (valid JSON with the default JsonCodec, for Node subscribers of the seed's channel).
//
// Live delivery and recovery (Centrifuge's model). One subscriber object of the backend (one
// connection on RedisBackend) serves every user subscribed through this service: a dispatcher
// keeps user -> handlers, subscribes a user's channel with the first handler and unsubscribes
// it with the last. Pub/sub is at most once, so each handler keeps the id of the last
// notification it was given, and:
//  - a live message whose id is not above it is a duplicate: dropped;
//  - a live message whose "prev" is that id is the next one: delivered;
//  - anything else is a gap: the user's history after that id is read (in pages) and delivered,
//    then live messages go on (those that arrived meanwhile are held, in order, bounded by
//    max_pending, and deduplicated by id);
//  - a subscriber that may have lost messages reads the history of every user: when the
//    subscriber reports dropped messages (Error::pushes_dropped: its queue overflowed), when
//    its link came back (Error::resubscribed, on every backend, once its channels are
//    subscribed again, so the read starts after the subscriptions are in effect), and when its
//    receive fails (the channels are then subscribed once more first).
// So every notification is delivered to every handler once, in id order, whatever the
// connection did, as long as the history still holds it (a gap beyond max_history or retention
// is counted in stats().lost). A handler starts after the user's last notification at the time
// async_subscribe completes, or after `since` (a resume cursor, e.g. the last id a client saw:
// the notifications after it are delivered first).
//
// Errors and threads: bad input (an empty user id, a cursor or id that is not a stream id, a
// count outside 1..10000, options that cannot work) completes with Error::invalid_argument and
// sends nothing; a payload that does not decode with Error::decode_failed; backend failures with
// the backend's error. Operations never complete inside the initiating call. Arguments are
// copied. Handlers are called on the backend's executor, never inside async_subscribe, and must
// not throw; the service, its subscriptions and unsubscribe() are used from that executor. The
// service must outlive the operations it starts; destroying it ends every subscription (the
// backend must outlive the service).
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/codec/json_codec.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/concepts/codec.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/describe/enum.hpp>
#include <boost/describe/class.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace rediskit {

/// Seed 004's notification types.
enum class NotificationType : std::uint8_t { new_message, new_conversation, status_change };
BOOST_DESCRIBE_ENUM(NotificationType, new_message, new_conversation, status_change)

/// Seed 004's priorities.
enum class NotificationPriority : std::uint8_t { high, medium, low };
BOOST_DESCRIBE_ENUM(NotificationPriority, high, medium, low)

constexpr std::string_view to_string(NotificationPriority p) noexcept {
  switch (p) {
    case NotificationPriority::high:
      return "high";
    case NotificationPriority::medium:
      return "medium";
    case NotificationPriority::low:
      return "low";
  }
  return "medium";
}

/// One notification. The service sets `id`, `created_at_ms` (the id's time: server unix ms),
/// `read` and, when empty, `user_id`; the other members are yours (they go through the Codec;
/// `data` is free text, e.g. JSON of your own). Has constructors, so a temporary in a co_await
/// expression is safe on g++ 12.
struct Notification {
  Notification() = default;
  Notification(NotificationType type_, NotificationPriority priority_, std::string title_,
                std::string body_ = {}, std::string data_ = {})
      : type(type_),
        priority(priority_),
        title(std::move(title_)),
        body(std::move(body_)),
        data(std::move(data_)) {}

  std::string id{};  ///< the history id: monotonic per user, a resume cursor
  std::string user_id{};
  NotificationType type = NotificationType::new_message;
  NotificationPriority priority = NotificationPriority::medium;
  std::string title{};
  std::string body{};
  std::string conversation_id{};
  std::string message_id{};
  std::string sender_id{};
  std::string data{};
  std::int64_t created_at_ms = 0;
  bool read = false;

  friend bool operator==(Notification const&, Notification const&) = default;
};
// What the Codec stores and publishes (id, time and read mark are the history's).
BOOST_DESCRIBE_STRUCT(Notification, (),
                      (user_id, type, priority, title, body, conversation_id, message_id,
                       sender_id, data))

/// A page of history, oldest first.
struct NotificationPage {
  std::vector<Notification> items{};
  /// The id of the last item when the page is full (pass it as the next cursor); empty when the
  /// history ended.
  std::string next_cursor{};
};

/// Unread notifications by priority (exact: kept by the scripts that write, trim and mark).
struct UnreadCounts {
  std::int64_t high = 0;
  std::int64_t medium = 0;
  std::int64_t low = 0;
  std::int64_t total() const noexcept { return high + medium + low; }
  friend bool operator==(UnreadCounts const&, UnreadCounts const&) = default;
};

/// A new message for async_notify_new_message (seed 004's message: id, conversationId,
/// sender, content).
struct NotifyMessage {
  NotifyMessage() = default;
  NotifyMessage(std::string id_, std::string conversation_id_, std::string sender_id_,
                std::string content_ = {})
      : id(std::move(id_)),
        conversation_id(std::move(conversation_id_)),
        sender_id(std::move(sender_id_)),
        content(std::move(content_)) {}
  std::string id{};
  std::string conversation_id{};
  std::string sender_id{};
  std::string content{};
};

/// The conversation of a new message: its participants (seed 004's conversation).
struct NotifyConversation {
  NotifyConversation() = default;
  NotifyConversation(std::string id_, std::vector<std::string> participants_,
                     std::string title_ = {})
      : id(std::move(id_)), participants(std::move(participants_)), title(std::move(title_)) {}
  std::string id{};
  std::vector<std::string> participants{};
  std::string title{};
};

/// Options of NotificationService; the names are seed 002's, the retention seed 004's.
struct NotificationOptions {
  std::string channel_prefix = "notifications";              ///< channel notifications:<U>
  std::string resource_channel_prefix = "resource:updates";  ///< channel resource:updates:<R>
  std::string suggestion_votes_channel = "suggestions:votes";
  std::string history_prefix = "notifications:history";  ///< stream per user
  std::string unread_prefix = "notifications:unread";    ///< hash per user
  std::chrono::milliseconds retention = std::chrono::hours(24 * 7);
  std::int64_t max_history = 1000;  ///< entries kept per user (at least 1)
  /// async_notify_new_message's notifications.
  NotificationPriority new_message_priority = NotificationPriority::high;
  std::string new_message_title = "New message";
  std::size_t new_message_preview = 140;  ///< bytes of the content in the body
  std::int64_t catch_up_page = 200;  ///< history entries per read when catching up
  std::size_t max_pending = 10000;   ///< live messages held per user while catching up
  /// Key names (top of the file); nullopt: default_key_layout_v<B>.
  std::optional<KeyLayout> key_layout{};
};

/// What the dispatcher did (NotificationService::stats()).
struct NotificationStats {
  std::uint64_t received = 0;       ///< live messages read from the subscriber
  std::uint64_t delivered = 0;      ///< handler calls
  std::uint64_t duplicates = 0;     ///< copies dropped by id (per handler)
  std::uint64_t catch_ups = 0;      ///< history reads started to fill a gap
  std::uint64_t recovered = 0;      ///< notifications delivered from the history
  std::uint64_t resyncs = 0;        ///< possible losses of the subscriber (all users caught up)
  std::uint64_t lost = 0;           ///< gaps the history could not fill (trimmed or expired)
  std::uint64_t decode_errors = 0;  ///< payloads the Codec refused (not delivered)
};
// Described: RedisManager::expose() puts its numbers in the Prometheus text.
BOOST_DESCRIBE_STRUCT(NotificationStats, (),
                      (received, delivered, duplicates, catch_ups, recovered, resyncs, lost,
                       decode_errors))

/// Called with each notification of a subscribed user.
using NotificationHandler = std::function<void(Notification const&)>;

namespace detail::notify {

using boost::system::error_code;

/// What a subscription handle talks to.
struct Registry {
  virtual ~Registry() = default;
  virtual void remove(std::string const& user, std::uint64_t key) = 0;
  virtual std::string last_id(std::string const& user, std::uint64_t key) const = 0;
};

}  // namespace detail::notify

/// A live subscription (seed 004's `unsubscribe`): unsubscribe() or destruction ends it; no
/// handler call happens after either. Move-only.
class NotificationSubscription {
 public:
  NotificationSubscription() = default;
  NotificationSubscription(std::weak_ptr<detail::notify::Registry> registry, std::string user,
                           std::uint64_t key)
      : registry_(std::move(registry)), user_(std::move(user)), key_(key) {}
  NotificationSubscription(NotificationSubscription&& o) noexcept
      : registry_(std::move(o.registry_)),
        user_(std::move(o.user_)),
        key_(std::exchange(o.key_, 0)) {}
  NotificationSubscription& operator=(NotificationSubscription&& o) noexcept {
    if (this != &o) {
      unsubscribe();
      registry_ = std::move(o.registry_);
      user_ = std::move(o.user_);
      key_ = std::exchange(o.key_, 0);
    }
    return *this;
  }
  NotificationSubscription(NotificationSubscription const&) = delete;
  NotificationSubscription& operator=(NotificationSubscription const&) = delete;
  ~NotificationSubscription() { unsubscribe(); }

  void unsubscribe() noexcept {
    if (key_ == 0) return;
    auto const key = std::exchange(key_, 0);
    if (auto r = registry_.lock()) {
      try {
        r->remove(user_, key);
      } catch (...) {  // out of memory while unsubscribing the channel: nothing to do
      }
    }
    registry_.reset();
  }
  /// True until unsubscribed (or the service is gone).
  bool active() const noexcept { return key_ != 0 && !registry_.expired(); }
  std::string const& user_id() const noexcept { return user_; }
  /// The id of the last notification delivered (a resume cursor for async_subscribe's `since`);
  /// empty when not active.
  std::string last_id() const {
    auto r = registry_.lock();
    return r && key_ != 0 ? r->last_id(user_, key_) : std::string();
  }

 private:
  std::weak_ptr<detail::notify::Registry> registry_;
  std::string user_;
  std::uint64_t key_ = 0;
};

namespace detail::notify {

inline constexpr std::string_view kLast = "last";
inline constexpr std::string_view kField = "notification";

inline error_code invalid() {
  return make_error_code(Error::invalid_argument);
}

inline std::string id_text(StreamId id) {
  return std::to_string(id.ms) + "-" + std::to_string(id.seq);
}

/// "ms-seq" or "ms", plain digits.
inline bool valid_id(std::string_view s) {
  return StreamId::parse(s).has_value();
}

/// The fields of the unread hash that are not ids.
inline bool is_counter(std::string_view f) {
  return f == kLast || f == "high" || f == "medium" || f == "low";
}

// ---- keys ----------------------------------------------------------------------------------

struct Keys {
  KeyLayout layout = KeyLayout::plain;
  std::string history, unread, channel, resource, votes;  // prefixes end with ':'
  bool valid = true;

  static std::string tag(std::string_view user) {
    std::string t = hash_tag_for(user);
    if (user.find('}') != std::string_view::npos) t.append(user);
    return t;
  }
  std::string user_key(std::string const& prefix, std::string_view user) const {
    return layout == KeyLayout::clustered ? prefix + tag(user) : prefix + std::string(user);
  }
  std::string history_key(std::string_view user) const { return user_key(history, user); }
  std::string unread_key(std::string_view user) const { return user_key(unread, user); }
  std::string user_channel(std::string_view user) const { return channel + std::string(user); }
};

inline Keys make_keys(NotificationOptions const& o, KeyLayout layout) {
  Keys k;
  k.layout = layout;
  k.valid = o.retention.count() > 0 && o.max_history >= 1 && o.catch_up_page >= 1 &&
            o.max_pending >= 1 && !o.channel_prefix.empty() && !o.history_prefix.empty() &&
            !o.unread_prefix.empty() && !o.resource_channel_prefix.empty() &&
            !o.suggestion_votes_channel.empty() && o.history_prefix != o.unread_prefix;
  for (auto const* p : {&o.history_prefix, &o.unread_prefix}) {
    if (layout == KeyLayout::clustered && p->find('{') != std::string::npos) k.valid = false;
  }
  // Neither key prefix may be the other followed by ':' (a user id could name the other key).
  if ((o.history_prefix + ":").starts_with(o.unread_prefix + ":") ||
      (o.unread_prefix + ":").starts_with(o.history_prefix + ":"))
    k.valid = false;
  k.history = o.history_prefix + ":";
  k.unread = o.unread_prefix + ":";
  k.channel = o.channel_prefix + ":";
  k.resource = o.resource_channel_prefix + ":";
  k.votes = o.suggestion_votes_channel;
  return k;
}

/// The message published on notifications:<U> (see the top of the file).
inline std::string envelope(std::string_view id, std::string_view prev, std::string_view payload) {
  std::string m;
  m.reserve(40 + id.size() + prev.size() + payload.size());
  m.append(R"({"id":")").append(id).append(R"(","prev":")").append(prev);
  m.append(R"(","notification":)").append(payload).push_back('}');
  return m;
}

/// A live message: an envelope, or (`framed` false) anything else a foreign publisher sent.
struct Live {
  StreamId id{};
  StreamId prev{};
  std::string payload;
  bool framed = false;
};

inline bool parse_envelope(std::string_view m, Live& out) {
  constexpr std::string_view a = R"({"id":")", b = R"(","prev":")", c = R"(","notification":)";
  if (!m.starts_with(a) || !m.ends_with('}')) return false;
  m.remove_prefix(a.size());
  auto const i = m.find('"');
  if (i == std::string_view::npos) return false;
  auto const id = StreamId::parse(m.substr(0, i));
  m.remove_prefix(i);
  if (!id || !m.starts_with(b)) return false;
  m.remove_prefix(b.size());
  auto const j = m.find('"');
  if (j == std::string_view::npos) return false;
  auto const prev = StreamId::parse(m.substr(0, j));
  m.remove_prefix(j);
  if (!prev || !m.starts_with(c)) return false;
  m.remove_prefix(c.size());
  m.remove_suffix(1);
  out.id = *id;
  out.prev = *prev;
  out.payload.assign(m);
  out.framed = true;
  return true;
}

// ---- scripts: Lua and its C++ twin (rediskit/script.hpp) -------------------------------------
// Every script: KEYS H (the user's stream), U (the user's unread hash); replies
// {numbers, strings}.
using Reply = std::tuple<std::vector<std::int64_t>, std::vector<std::string>>;

inline constexpr char const kPrelude[] = R"lua(
local H, U = KEYS[1], KEYS[2]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function unmark(id)
  local p = redis.call('HGET', U, id)
  if not p then return false end
  redis.call('HDEL', U, id)
  redis.call('HINCRBY', U, p, -1)
  return true
end
local function prune(ret)
  local cut = now_ms() - ret
  if cut <= 0 then return end
  local min = string.format('%.0f', cut) .. '-0'
  local old = redis.call('XRANGE', H, '-', '(' .. min)
  for _, e in ipairs(old) do unmark(e[1]) end
  if #old > 0 then redis.call('XTRIM', H, 'MINID', min) end
end
local function counter(f)
  return tonumber(redis.call('HGET', U, f) or '0')
end
)lua";

inline std::int64_t to_i64(std::string_view s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

inline bool unmark(ScriptContext auto& c, std::string_view U, std::string_view id) {
  auto const p = c.call(cmd::hget{U, id});
  if (!p) return false;
  c.call(cmd::hdel{.key = U, .fields = id});
  c.call(cmd::hincrby{U, *p, -1});
  return true;
}

inline void prune(ScriptContext auto& c, std::string_view H, std::string_view U,
                  std::int64_t ret) {
  std::int64_t const cut = c.unix_ms() - ret;
  if (cut <= 0) return;
  std::string const min = std::to_string(cut) + "-0", end = "(" + min;
  auto const old = c.call(cmd::xrange{.key = H, .start = "-", .end = end});
  for (auto const& e : old)
    unmark(c, U, e.id);
  if (!old.empty()) c.call(cmd::xtrim{.key = H, .trim = StreamTrim::min_id(min)});
}

inline std::int64_t counter(ScriptContext auto& c, std::string_view U, std::string_view f) {
  auto const v = c.call(cmd::hget{U, f});
  return v ? to_i64(*v) : 0;
}

// ARGV: priority name, payload, retention ms, max entries, channel. -> {{receivers}, {id, prev}}
inline constexpr char const kNotify[] = R"lua(
local ret = tonumber(ARGV[3])
prune(ret)
local prev = redis.call('HGET', U, 'last') or '0-0'
local id = redis.call('XADD', H, '*', 'notification', ARGV[2])
redis.call('HSET', U, id, ARGV[1], 'last', id)
redis.call('HINCRBY', U, ARGV[1], 1)
local max = tonumber(ARGV[4])
local n = redis.call('XLEN', H)
if n > max then
  local over = redis.call('XRANGE', H, '-', '+', 'COUNT', n - max)
  for _, e in ipairs(over) do unmark(e[1]) end
  redis.call('XTRIM', H, 'MAXLEN', max)
end
redis.call('PEXPIRE', H, ARGV[3])
redis.call('PEXPIRE', U, ARGV[3])
local got = redis.call('PUBLISH', ARGV[5],
  '{"id":"' .. id .. '","prev":"' .. prev .. '","notification":' .. ARGV[2] .. '}')
return {{got}, {id, prev}}
)lua";

inline Reply notify_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  std::int64_t const ret = to_i64(a[2]), max = to_i64(a[3]);
  prune(c, k[0], k[1], ret);
  std::string const prev = c.call(cmd::hget{k[1], kLast}).value_or("0-0");
  std::string const id = c.call(cmd::xadd{.key = k[0], .fields = FieldValue{kField, a[1]}})
                             .value_or(std::string());
  std::vector<std::pair<std::string_view, std::string_view>> const fields{{id, a[0]},
                                                                          {kLast, id}};
  c.call(cmd::hset{.key = k[1], .fields = fields});
  c.call(cmd::hincrby{k[1], a[0], 1});
  std::int64_t const n = c.call(cmd::xlen{k[0]});
  if (n > max) {
    for (auto const& e : c.call(cmd::xrange{.key = k[0], .count = n - max}))
      unmark(c, k[1], e.id);
    c.call(cmd::xtrim{.key = k[0], .trim = StreamTrim::max_len(max)});
  }
  c.call(cmd::pexpire{k[0], std::chrono::milliseconds(ret)});
  c.call(cmd::pexpire{k[1], std::chrono::milliseconds(ret)});
  std::int64_t const got = c.call(cmd::publish{a[4], envelope(id, prev, a[1])});
  return {{got}, {id, prev}};
}

// ARGV: cursor ("" from the oldest), count, retention ms.
// -> {{read flag per entry (1 read)}, {id, payload, id, payload, ...}}
inline constexpr char const kHistory[] = R"lua(
prune(tonumber(ARGV[3]))
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local es = redis.call('XRANGE', H, start, '+', 'COUNT', ARGV[2])
local nums, strs = {}, {}
for _, e in ipairs(es) do
  local payload = ''
  for j = 1, #e[2], 2 do
    if e[2][j] == 'notification' then payload = e[2][j + 1] end
  end
  strs[#strs + 1] = e[1]
  strs[#strs + 1] = payload
  nums[#nums + 1] = 1 - redis.call('HEXISTS', U, e[1])
end
return {nums, strs}
)lua";

inline Reply history_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  prune(c, k[0], k[1], to_i64(a[2]));
  std::string const start = a[0].empty() ? std::string("-") : "(" + std::string(a[0]);
  Reply r;
  for (auto& e : c.call(cmd::xrange{.key = k[0], .start = start, .count = to_i64(a[1])})) {
    auto const* p = e.find(kField);
    std::get<0>(r).push_back(c.call(cmd::hexists{k[1], e.id}) ? 0 : 1);
    std::get<1>(r).push_back(e.id);
    std::get<1>(r).push_back(p ? *p : std::string());
  }
  return r;
}

// ARGV: retention ms, "all" | "ids", ids... -> {{marked, high, medium, low}, {}}
// ("ids" with no ids: the counts only).
inline constexpr char const kMark[] = R"lua(
prune(tonumber(ARGV[1]))
local marked = 0
if ARGV[2] == 'all' then
  local all = redis.call('HGETALL', U)
  for i = 1, #all, 2 do
    local f = all[i]
    if f ~= 'last' and f ~= 'high' and f ~= 'medium' and f ~= 'low' then
      if unmark(f) then marked = marked + 1 end
    end
  end
else
  for i = 3, #ARGV do
    if unmark(ARGV[i]) then marked = marked + 1 end
  end
end
return {{marked, counter('high'), counter('medium'), counter('low')}, {}}
)lua";

inline Reply mark_twin(ScriptContext auto& c) {
  auto const k = c.keys();
  auto const a = c.args();
  prune(c, k[0], k[1], to_i64(a[0]));
  std::int64_t marked = 0;
  if (a[1] == "all") {
    for (auto const& [f, v] : c.call(cmd::hgetall{k[1]}))
      if (!is_counter(f) && unmark(c, k[1], f)) ++marked;
  } else {
    for (std::size_t i = 2; i < a.size(); ++i)
      if (unmark(c, k[1], a[i])) ++marked;
  }
  return {{marked, counter(c, k[1], "high"), counter(c, k[1], "medium"),
           counter(c, k[1], "low")},
          {}};
}

/// The twin of every script above, chosen at run time: one Script type, one EVALSHA command
/// type per backend for all of them.
struct Twin {
  enum Kind : std::uint8_t { notify, history, mark } kind;
  template <ScriptContext Ctx>
  Reply operator()(Ctx& c) const {
    switch (kind) {
      case notify:
        return notify_twin(c);
      case history:
        return history_twin(c);
      case mark:
        return mark_twin(c);
    }
    return {};
  }
};
using NotifyScript = Script<Reply, Twin>;
using ScriptCall = decltype(std::declval<NotifyScript const&>()());

inline NotifyScript make(char const* body, Twin::Kind kind) {
  return make_script<Reply>(std::string(kPrelude) + body, Twin{kind});
}
inline NotifyScript const notify_script = make(kNotify, Twin::notify);
inline NotifyScript const history_script = make(kHistory, Twin::history);
inline NotifyScript const mark_script = make(kMark, Twin::mark);

// ---- history pages -------------------------------------------------------------------------

/// One history entry as a script returned it.
struct Entry {
  StreamId id{};
  std::string id_text;
  std::string payload;
  bool read = false;
};

/// The entries of a history reply; false when its shape is wrong.
inline bool entries_of(Reply& r, std::vector<Entry>& out) {
  auto& n = std::get<0>(r);
  auto& s = std::get<1>(r);
  if (s.size() != 2 * n.size()) return false;
  out.reserve(n.size());
  for (std::size_t i = 0; i < n.size(); ++i) {
    auto const id = StreamId::parse(s[2 * i]);
    if (!id) return false;
    out.push_back(Entry{*id, std::move(s[2 * i]), std::move(s[2 * i + 1]), n[i] != 0});
  }
  return true;
}

/// A notification from its stored bytes and history id.
template <class C>
error_code decode(C const& codec, std::string_view payload, StreamId id, std::string id_text,
                  std::string_view user, Notification& out) {
  out = Notification();
  if (auto ec = codec.decode(payload, out, nullptr)) return ec;
  out.id = std::move(id_text);
  out.created_at_ms = static_cast<std::int64_t>(id.ms);
  if (out.user_id.empty()) out.user_id = std::string(user);
  return {};
}

// ---- operations ------------------------------------------------------------------------------

/// What an operation's scripts view, on the heap: the strings keep their addresses while the
/// operation (and its handler) moves. One script call per element of `keys` / `args`.
struct Call {
  NotifyScript const* script = nullptr;
  std::vector<std::vector<std::string>> keys, args;
  std::vector<std::vector<std::string_view>> key_views, arg_views;
  std::vector<ScriptCall> cmds;
  std::string user;
  std::int64_t count = 0;
  std::shared_ptr<void const> codec{};

  void add(std::vector<std::string> k, std::vector<std::string> a) {
    keys.push_back(std::move(k));
    args.push_back(std::move(a));
  }
  /// The commands, once every string is in place.
  void build() {
    key_views.resize(keys.size());
    arg_views.resize(args.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      key_views[i].assign(keys[i].begin(), keys[i].end());
      arg_views[i].assign(args[i].begin(), args[i].end());
      cmds.push_back((*script)(key_views[i], arg_views[i]));
    }
  }
};

template <class Result>
using MapFn = Result (*)(error_code& ec, std::vector<Reply>& r, Call& call);

inline std::string map_notify(error_code& ec, std::vector<Reply>& r, Call&) {
  if (ec) return {};
  if (r.size() != 1 || std::get<1>(r[0]).size() != 2) {
    ec = make_error_code(Error::incompatible_size);
    return {};
  }
  return std::move(std::get<1>(r[0])[0]);
}

/// Recipients whose script wrote (a batch reports its first error and fills every reply).
inline std::int64_t map_fan_out(error_code&, std::vector<Reply>& r, Call&) {
  std::int64_t n = 0;
  for (auto const& x : r)
    if (std::get<1>(x).size() == 2 && !std::get<1>(x)[0].empty()) ++n;
  return n;
}

template <class C>
NotificationPage map_history(error_code& ec, std::vector<Reply>& r, Call& call) {
  NotificationPage page;
  if (ec) return page;
  std::vector<Entry> entries;
  if (r.size() != 1 || !entries_of(r[0], entries)) {
    ec = make_error_code(Error::incompatible_size);
    return page;
  }
  auto const& codec = *static_cast<C const*>(call.codec.get());
  page.items.resize(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    ec = decode(codec, entries[i].payload, entries[i].id, std::move(entries[i].id_text), call.user,
                page.items[i]);
    if (ec) return NotificationPage();
    page.items[i].read = entries[i].read;
  }
  if (static_cast<std::int64_t>(entries.size()) == call.count && !page.items.empty())
    page.next_cursor = page.items.back().id;
  return page;
}

inline std::int64_t map_marked(error_code& ec, std::vector<Reply>& r, Call&) {
  if (ec) return 0;
  if (r.size() != 1 || std::get<0>(r[0]).size() != 4) {
    ec = make_error_code(Error::incompatible_size);
    return 0;
  }
  return std::get<0>(r[0])[0];
}

inline UnreadCounts map_counts(error_code& ec, std::vector<Reply>& r, Call&) {
  if (ec) return {};
  if (r.size() != 1 || std::get<0>(r[0]).size() != 4) {
    ec = make_error_code(Error::incompatible_size);
    return {};
  }
  auto const& n = std::get<0>(r[0]);
  return {std::max<std::int64_t>(0, n[1]), std::max<std::int64_t>(0, n[2]),
          std::max<std::int64_t>(0, n[3])};
}

/// Every script operation: the calls of `call` in one round trip (a vector of EVALSHA), the
/// replies mapped. One type per (backend, result): the caller's handler is erased
/// (detail::erased_compose). A null call is bad input: Error::invalid_argument, posted.
template <class B, class Result>
struct Op {
  B* backend = nullptr;
  std::unique_ptr<Call> call{};
  MapFn<Result> map = nullptr;
  enum { start, running, rejected, empty } state = start;

  template <class Self>
  void operator()(Self& self) {
    if (state == rejected) return self.complete(invalid(), Result{});
    if (state == empty) return self.complete(error_code{}, Result{});
    if (!call || call->cmds.empty()) {
      state = call ? empty : rejected;  // never complete inside the initiating call
      return boost::asio::post(backend->get_executor(), std::move(self));
    }
    state = running;
    backend->async_exec(call->cmds, std::move(self));
  }

  template <class Self>
  void operator()(Self& self, error_code ec, std::vector<Reply> r) {
    Result result = map(ec, r, *call);
    self.complete(ec, std::move(result));
  }
};

// ---- the dispatcher --------------------------------------------------------------------------

struct Settings {
  std::string retention;  // ms, as a script argument
  std::string page;       // catch_up_page, as a script argument
  std::int64_t page_size = 0;
  std::size_t max_pending = 0;
};

struct Ignore {
  void operator()(error_code) const noexcept {}
};

/// One subscriber for every user of a service (see the top of the file). Lives on the backend's
/// executor; owned by the service, kept alive by its own operations in flight until closed.
template <class B, class C>
class Dispatcher final : public Registry, public std::enable_shared_from_this<Dispatcher<B, C>> {
  using Sub = std::decay_t<decltype(std::declval<B&>().make_subscriber())>;
  using Done = AnyHandler<void(error_code, NotificationSubscription)>;

  struct Handler {
    std::uint64_t key = 0;
    NotificationHandler fn;
    Done done;
    StreamId last{};
    StreamId mark{};  // `last` when the running catch-up started
    std::string since;
    bool started = false, starting = false, active = true, gap = false, stuck = false;
  };
  struct User {
    std::string id, channel, hkey, ukey;
    std::vector<std::shared_ptr<Handler>> handlers;
    enum class State : std::uint8_t { none, subscribing, subscribed } state = State::none;
    int busy = 0;  // reads in flight (a position, a catch-up)
    std::deque<Live> pending;
  };
  using UserPtr = std::shared_ptr<User>;

 public:
  Dispatcher(B& backend, std::shared_ptr<C const> codec, std::shared_ptr<Keys const> keys,
             Settings settings)
      : backend_(&backend),
        codec_(std::move(codec)),
        keys_(std::move(keys)),
        settings_(std::move(settings)),
        sub_(backend.make_subscriber()) {}

  NotificationStats const& stats() const noexcept { return stats_; }
  std::size_t users() const noexcept { return users_.size(); }

  void add(std::string const& user, std::string since, NotificationHandler fn, Done done) {
    if (closed_) return finish(std::move(done), make_error_code(Error::connection_closed), {});
    start();
    auto& slot = users_[user];
    if (!slot) {
      slot = std::make_shared<User>();
      slot->id = user;
      slot->channel = keys_->user_channel(user);
      slot->hkey = keys_->history_key(user);
      slot->ukey = keys_->unread_key(user);
    }
    UserPtr u = slot;
    auto h = std::make_shared<Handler>();
    h->key = ++next_key_;
    h->fn = std::move(fn);
    h->done = std::move(done);
    h->since = std::move(since);
    u->handlers.push_back(h);
    if (u->state == User::State::subscribed) return start_handler(u, h);
    if (u->state == User::State::subscribing) return;  // started when the SUBSCRIBE completes
    u->state = User::State::subscribing;
    sub_.async_subscribe(u->channel, [self = this->shared_from_this(), u](error_code ec) {
      self->on_subscribed(u, ec);
    });
  }

  void remove(std::string const& user, std::uint64_t key) override {
    if (closed_) return;
    auto it = users_.find(user);
    if (it == users_.end()) return;
    UserPtr u = it->second;
    std::erase_if(u->handlers, [key](auto const& h) {
      if (h->key != key) return false;
      h->active = false;
      return true;
    });
    if (!u->handlers.empty()) return;
    users_.erase(it);
    if (u->state != User::State::none) sub_.async_unsubscribe(u->channel, Ignore{});
  }

  std::string last_id(std::string const& user, std::uint64_t key) const override {
    auto it = users_.find(user);
    if (it == users_.end()) return {};
    for (auto const& h : it->second->handlers)
      if (h->key == key) return id_text(h->last);
    return {};
  }

  /// Ends every subscription; subscribe operations still waiting fail with connection_closed.
  void close() {
    if (closed_) return;
    closed_ = true;
    sub_.close();
    auto users = std::move(users_);
    users_.clear();
    for (auto& [id, u] : users) {
      for (auto& h : u->handlers) {
        h->active = false;
        if (h->done) finish(std::move(h->done), make_error_code(Error::connection_closed), {});
      }
    }
  }

 private:
  void finish(Done done, error_code ec, NotificationSubscription s) {
    detail::post_handler(backend_->get_executor(), std::move(done), ec, std::move(s));
  }

  bool current(UserPtr const& u) const {
    auto it = users_.find(u->id);
    return it != users_.end() && it->second == u;
  }

  void start() {
    if (started_) return;
    started_ = true;
    receive();
  }

  void receive() {
    // The subscriber's Message (rediskit/backend/subscriber.hpp, not included here: services
    // include no backend header).
    sub_.async_receive([self = this->shared_from_this()](error_code ec, auto m) {
      self->on_message(ec, std::move(m));
    });
  }

  template <class Msg>
  void on_message(error_code ec, Msg m) {
    if (closed_) return;
    if (!ec) {
      ++stats_.received;
      receive();
      return route(std::move(m));
    }
    // Messages were lost (the queue overflowed, or the link came back and the subscriptions
    // are in effect again): read the history of every user.
    if (ec == Error::pushes_dropped || ec == Error::resubscribed) {
      receive();
      return resync(false);
    }
    // The subscriber failed: receive again a little later, then read what may have been lost.
    auto t = std::make_shared<boost::asio::steady_timer>(backend_->get_executor(),
                                                         std::chrono::milliseconds(100));
    t->async_wait([self = this->shared_from_this(), t](error_code) {
      if (self->closed_) return;
      self->receive();
      self->resync(true);
    });
  }

  template <class Msg>
  void route(Msg m) {
    std::string_view channel = m.channel;
    if (!channel.starts_with(keys_->channel)) return;
    auto it = users_.find(channel.substr(keys_->channel.size()));
    if (it == users_.end()) return;
    UserPtr u = it->second;
    Live live;
    if (!parse_envelope(m.payload, live)) live.payload = std::move(m.payload);
    if (u->pending.size() >= settings_.max_pending) {
      // The history holds them: drop what is held, catch up instead.
      u->pending.clear();
      for (auto& h : u->handlers)
        if (h->started) h->gap = true;
    }
    u->pending.push_back(std::move(live));
    pump(u);
  }

  /// Something may have been lost for every user: catch every handler up from the history.
  /// `barrier`: subscribe the channels once more first, so that the read starts after the
  /// subscriptions are in effect on the (new) connection.
  void resync(bool barrier) {
    ++stats_.resyncs;
    if (barrier) {
      std::vector<std::string_view> channels;
      for (auto const& [id, u] : users_)
        if (u->state == User::State::subscribed) channels.push_back(u->channel);
      if (!channels.empty()) {
        sub_.async_subscribe(channels, [self = this->shared_from_this()](error_code) {
          self->recover_all();
        });
        return;
      }
    }
    recover_all();
  }

  void recover_all() {
    if (closed_) return;
    std::vector<UserPtr> users;
    for (auto const& [id, u] : users_)
      users.push_back(u);
    for (auto& u : users) {
      for (auto& h : u->handlers)
        if (h->started) h->gap = true;
      pump(u);
    }
  }

  void on_subscribed(UserPtr const& u, error_code ec) {
    if (closed_ || !current(u)) return;
    if (ec) {
      u->state = User::State::none;
      auto handlers = u->handlers;
      std::erase_if(u->handlers, [](auto const& h) { return !h->started; });
      for (auto& h : handlers) {
        if (h->started) continue;
        h->active = false;
        finish(std::move(h->done), ec, {});
      }
      if (u->handlers.empty()) users_.erase(u->id);
      return;
    }
    u->state = User::State::subscribed;
    auto handlers = u->handlers;
    for (auto& h : handlers)
      if (!h->started && !h->starting) start_handler(u, h);
  }

  /// The handler's starting point: the user's last id now (the subscription is in effect), or
  /// `since`.
  void start_handler(UserPtr const& u, std::shared_ptr<Handler> const& h) {
    h->starting = true;
    ++u->busy;
    backend_->async_exec(cmd::hget{u->ukey, kLast},
                         [self = this->shared_from_this(), u, h](
                             error_code ec, std::optional<std::string> last) {
                           self->on_position(u, h, ec, std::move(last));
                         });
  }

  void on_position(UserPtr const& u, std::shared_ptr<Handler> const& h, error_code ec,
                   std::optional<std::string> last) {
    --u->busy;
    if (closed_) return;
    h->starting = false;
    if (!h->active) return pump(u);
    if (ec) {
      h->active = false;
      std::erase(u->handlers, h);
      finish(std::move(h->done), ec, {});
      if (u->handlers.empty() && current(u)) {
        users_.erase(u->id);
        sub_.async_unsubscribe(u->channel, Ignore{});
      }
      return pump(u);
    }
    StreamId const top = last ? StreamId::parse(*last).value_or(StreamId{}) : StreamId{};
    if (!h->since.empty()) {
      h->last = StreamId::parse(h->since).value_or(StreamId{});
      h->gap = h->last < top;
    } else {
      h->last = top;
    }
    h->started = true;
    finish(std::move(h->done), {},
           NotificationSubscription(this->weak_from_this(), u->id, h->key));
    // After the completion just posted: no handler call comes before the caller has its handle.
    boost::asio::post(backend_->get_executor(),
                      [self = this->shared_from_this(), u] { self->pump(u); });
  }

  /// Delivers what is held for `u`, in order, while no read is in flight; starts a catch-up on
  /// a gap.
  void pump(UserPtr const& u) {
    if (closed_ || !current(u)) return;
    for (;;) {
      if (u->busy > 0) return;
      for (auto const& h : u->handlers)
        if (h->active && h->started && h->gap) return catch_up(u);
      if (u->pending.empty()) return;
      Live m = std::move(u->pending.front());
      u->pending.pop_front();
      Decoded d;
      bool gap = false;
      auto const handlers = u->handlers;
      for (auto const& h : handlers) {
        if (!h->active || !h->started) continue;
        if (!m.framed) {
          if (!deliver(*u, *h, m.payload, m.id, std::string(), false, d)) return;
          continue;
        }
        if (m.id <= h->last) {
          ++stats_.duplicates;
        } else if (m.prev == h->last || h->stuck) {
          if (m.prev != h->last) ++stats_.lost;
          h->stuck = false;
          h->last = m.id;
          if (!deliver(*u, *h, m.payload, m.id, id_text(m.id), false, d)) return;
        } else {
          h->gap = true;
          gap = true;
        }
      }
      if (gap) u->pending.push_front(std::move(m));  // looked at again after the catch-up
    }
  }

  /// A message decoded once for all the handlers of its user.
  struct Decoded {
    bool done = false, bad = false;
    Notification n;
  };

  /// Calls h's function (unless the payload does not decode); false when the dispatcher closed
  /// meanwhile.
  bool deliver(User const& u, Handler& h, std::string const& payload, StreamId id,
               std::string const& id_text, bool read, Decoded& d) {
    if (!d.done) {
      d.done = true;
      if (decode(*codec_, payload, id, id_text, u.id, d.n)) {
        ++stats_.decode_errors;
        d.bad = true;
      }
      d.n.read = read;
    }
    if (d.bad) return !closed_;
    ++stats_.delivered;
    h.fn(d.n);
    return !closed_;
  }

  void catch_up(UserPtr const& u) {
    ++u->busy;
    ++stats_.catch_ups;
    StreamId from = StreamId::max();
    for (auto& h : u->handlers) {
      if (!h->active || !h->started || !h->gap) continue;
      h->mark = h->last;
      from = std::min(from, h->last);
    }
    read_page(u, from);
  }

  void read_page(UserPtr const& u, StreamId from) {
    std::string const cursor = id_text(from);
    backend_->async_exec(
        history_script({u->hkey, u->ukey}, {cursor, settings_.page, settings_.retention}),
        [self = this->shared_from_this(), u](error_code ec, Reply r) {
          self->on_page(u, ec, std::move(r));
        });
  }

  void on_page(UserPtr const& u, error_code ec, Reply r) {
    if (closed_) return;
    std::vector<Entry> entries;
    if (!ec && !entries_of(r, entries)) ec = make_error_code(Error::incompatible_size);
    if (ec) {
      --u->busy;
      // Try again a little later (the gaps stay marked).
      auto t = std::make_shared<boost::asio::steady_timer>(backend_->get_executor(),
                                                           std::chrono::milliseconds(200));
      t->async_wait([self = this->shared_from_this(), u, t](error_code) { self->pump(u); });
      return;
    }
    for (auto& e : entries) {
      Decoded d;
      auto const handlers = u->handlers;
      for (auto const& h : handlers) {
        if (!h->active || !h->started || !h->gap || e.id <= h->last) continue;
        h->last = e.id;
        ++stats_.recovered;
        if (!deliver(*u, *h, e.payload, e.id, e.id_text, e.read, d)) return;
      }
    }
    if (static_cast<std::int64_t>(entries.size()) == settings_.page_size)
      return read_page(u, entries.back().id);  // more to read
    --u->busy;
    // A held message that still does not follow a handler that made no progress: the history
    // no longer has what came between (trimmed or expired): deliver it anyway (stats().lost).
    Live const* front = u->pending.empty() ? nullptr : &u->pending.front();
    for (auto& h : u->handlers) {
      if (!h->gap) continue;
      h->gap = false;
      h->stuck = h->last == h->mark && front && front->framed && front->id > h->last &&
                 front->prev != h->last;
    }
    pump(u);
  }

  B* backend_;
  std::shared_ptr<C const> codec_;
  std::shared_ptr<Keys const> keys_;
  Settings settings_;
  Sub sub_;
  std::map<std::string, UserPtr, std::less<>> users_;
  NotificationStats stats_;
  std::uint64_t next_key_ = 0;
  bool started_ = false;
  bool closed_ = false;
};

}  // namespace detail::notify

/// Seed 002's and seed 004's notifications over any Backend, the notifications through Codec C
/// (see the top of this file). Every async_ operation completes with void(error_code, result).
template <Backend B, Codec C = JsonCodec>
class NotificationService {
  using error_code = boost::system::error_code;
  using Call = detail::notify::Call;
  using Keys = detail::notify::Keys;
  using Dispatcher = detail::notify::Dispatcher<B, C>;
  using SubscribeSig = void(error_code, NotificationSubscription);

 public:
  using backend_type = B;
  using codec_type = C;

  /// `backend` must outlive the service.
  explicit NotificationService(B& backend, NotificationOptions options = {}, C codec = {})
      : backend_(&backend),
        options_(std::move(options)),
        codec_(std::make_shared<C const>(std::move(codec))),
        layout_(options_.key_layout.value_or(default_key_layout_v<B>)),
        keys_(std::make_shared<Keys const>(detail::notify::make_keys(options_, layout_))),
        retention_(std::to_string(options_.retention.count())),
        max_history_(std::to_string(options_.max_history)) {}
  NotificationService(NotificationService const&) = delete;
  NotificationService& operator=(NotificationService const&) = delete;
  NotificationService(NotificationService&&) noexcept = default;
  NotificationService& operator=(NotificationService&&) noexcept = default;
  /// Ends every subscription (their handlers are not called any more).
  ~NotificationService() {
    if (dispatcher_) dispatcher_->close();
  }

  NotificationOptions const& options() const noexcept { return options_; }
  KeyLayout key_layout() const noexcept { return layout_; }

  /// seed 002: notifications:{userId}.
  std::string user_channel(std::string_view user_id) const { return keys_->user_channel(user_id); }
  /// seed 002: resource:updates:{resourceId}.
  std::string resource_channel(std::string_view resource_id) const {
    return keys_->resource + std::string(resource_id);
  }
  /// seed 002: suggestions:votes.
  std::string const& suggestion_votes_channel() const noexcept { return keys_->votes; }
  std::string history_key(std::string_view user_id) const { return keys_->history_key(user_id); }
  std::string unread_key(std::string_view user_id) const { return keys_->unread_key(user_id); }

  /// Sends `n` to `user_id`: appended to the user's history (unread) and published on
  /// notifications:<U> with its id, in one script (which also drops what is older than the
  /// retention and beyond max_history, and renews the TTL). void(error_code, std::string): the
  /// notification's id.
  template <class Token = boost::asio::deferred_t>
  auto async_notify(std::string_view user_id, Notification const& n, Token&& token = {}) {
    std::unique_ptr<Call> call;
    if (!user_id.empty() && keys_->valid) {
      call = new_call(detail::notify::notify_script, user_id);
      add_notification(*call, user_id, n);
      call->build();
    }
    return run<std::string>(std::forward<Token>(token), std::move(call),
                            &detail::notify::map_notify);
  }

  /// seed 004: notifyNewMessage. A new_message notification (new_message_priority, the
  /// conversation, message and sender ids, the content's first new_message_preview bytes as
  /// the body) to every participant but the sender, each listed once. One round trip: one
  /// script per recipient (atomic for each; on a cluster, one request per master).
  /// void(error_code, std::int64_t): how many recipients were notified (with an error: those
  /// whose script ran before it, counted all the same). Error::invalid_argument: no conversation
  /// id, an empty participant id.
  template <class Token = boost::asio::deferred_t>
  auto async_notify_new_message(NotifyMessage const& message,
                                NotifyConversation const& conversation, Token&& token = {}) {
    std::unique_ptr<Call> call;
    std::string const& conv = conversation.id.empty() ? message.conversation_id : conversation.id;
    bool ok = !conv.empty() && keys_->valid;
    for (auto const& p : conversation.participants)
      ok = ok && !p.empty();
    if (ok) {
      call = new_call(detail::notify::notify_script, {});
      std::vector<std::string> users;
      for (auto const& p : conversation.participants)
        if (p != message.sender_id) users.push_back(p);
      std::sort(users.begin(), users.end());
      users.erase(std::unique(users.begin(), users.end()), users.end());
      Notification n(NotificationType::new_message, options_.new_message_priority,
                     options_.new_message_title,
                     preview(message.content, options_.new_message_preview));
      n.conversation_id = conv;
      n.message_id = message.id;
      n.sender_id = message.sender_id;
      for (auto const& u : users)
        add_notification(*call, u, n);
      call->build();
    }
    return run<std::int64_t>(std::forward<Token>(token), std::move(call),
                             &detail::notify::map_fan_out);
  }

  /// The user's history after `cursor` (a notification id; "" from the oldest kept), oldest
  /// first, at most `count` (1..10000), with their read marks. One script.
  /// void(error_code, NotificationPage); Error::decode_failed when a stored notification does
  /// not decode.
  template <class Token = boost::asio::deferred_t>
  auto async_get_history(std::string_view user_id, std::string_view cursor, std::int64_t count,
                         Token&& token = {}) {
    std::unique_ptr<Call> call;
    if (!user_id.empty() && keys_->valid && count >= 1 && count <= 10000 &&
        (cursor.empty() || detail::notify::valid_id(cursor))) {
      call = new_call(detail::notify::history_script, user_id);
      call->add({keys_->history_key(user_id), keys_->unread_key(user_id)},
                {std::string(cursor), std::to_string(count), retention_});
      call->count = count;
      call->codec = codec_;
      call->build();
    }
    return run<NotificationPage>(std::forward<Token>(token), std::move(call),
                                 &detail::notify::map_history<C>);
  }

  /// Marks notifications read (one id or a list; ids not in the history, or read already, are
  /// ignored). One script. void(error_code, std::int64_t): how many were unread.
  template <class Token = boost::asio::deferred_t>
  auto async_mark_read(std::string_view user_id, ArgList<std::string_view> ids,
                       Token&& token = {}) {
    bool ok = !ids.empty();
    ids.for_each([&](std::string_view id) { ok = ok && detail::notify::valid_id(id); });
    return mark(user_id, ok ? "ids" : "", ids, &detail::notify::map_marked,
                std::forward<Token>(token));
  }

  /// Marks every notification of the user read. One script. void(error_code, std::int64_t).
  template <class Token = boost::asio::deferred_t>
  auto async_mark_all_read(std::string_view user_id, Token&& token = {}) {
    return mark(user_id, "all", {}, &detail::notify::map_marked, std::forward<Token>(token));
  }

  /// The user's unread notifications by priority (exact; the expired ones dropped first). One
  /// script. void(error_code, UnreadCounts).
  template <class Token = boost::asio::deferred_t>
  auto async_get_unread_counts(std::string_view user_id, Token&& token = {}) {
    return mark(user_id, "ids", {}, &detail::notify::map_counts, std::forward<Token>(token));
  }

  /// seed 002: publishResourceUpdate. PUBLISH resource:updates:<resource_id> of `update`
  /// through the codec. void(error_code, std::int64_t): the subscribers that received it (on a
  /// cluster: of the node that took it).
  template <class T, class Token = boost::asio::deferred_t>
    requires CodecFor<C, T>
  auto async_publish_resource_update(std::string_view resource_id, T const& update,
                                     Token&& token = {}) {
    std::string payload;
    if (!resource_id.empty()) codec_->encode(update, payload);
    return publish(resource_channel(resource_id), std::move(payload), !resource_id.empty(),
                   std::forward<Token>(token));
  }

  /// seed 002: publishSuggestionVote. PUBLISH suggestions:votes of `vote` through the codec
  /// (VoteService's event is {suggestion, up, down, score, user, vote}).
  /// void(error_code, std::int64_t).
  template <class T, class Token = boost::asio::deferred_t>
    requires CodecFor<C, T>
  auto async_publish_suggestion_vote(T const& vote, Token&& token = {}) {
    std::string payload;
    codec_->encode(vote, payload);
    return publish(keys_->votes, std::move(payload), true, std::forward<Token>(token));
  }

  /// seed 004: subscribe(userId, callback) -> unsubscribe. `handler` gets each notification of
  /// the user from now on, once, in order, across reconnections (see the top of the file).
  /// Completes once the channel is subscribed and the starting point read.
  /// void(error_code, NotificationSubscription): keep the handle; unsubscribe() or destroying it
  /// ends the subscription. One subscriber connection serves every user of the service.
  template <class Token = boost::asio::deferred_t>
  auto async_subscribe(std::string_view user_id, NotificationHandler handler, Token&& token = {}) {
    return subscribe(user_id, {}, std::move(handler), std::forward<Token>(token));
  }
  /// As above, starting after `since` (a notification id, e.g. the last a client saw): the
  /// notifications after it that the history still holds are delivered first.
  template <class Token = boost::asio::deferred_t>
  auto async_subscribe(std::string_view user_id, std::string_view since,
                       NotificationHandler handler, Token&& token = {}) {
    return subscribe(user_id, since, std::move(handler), std::forward<Token>(token));
  }

  /// What the dispatcher did so far (all zero before the first subscription).
  NotificationStats stats() const { return dispatcher_ ? dispatcher_->stats() : NotificationStats{}; }
  /// Users with at least one subscription.
  std::size_t subscribed_users() const noexcept { return dispatcher_ ? dispatcher_->users() : 0; }

 private:
  static std::string preview(std::string const& s, std::size_t n) {
    if (s.size() <= n) return s;
    std::size_t end = n;
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80)
      --end;  // not inside a UTF-8 sequence
    return s.substr(0, end);
  }

  std::unique_ptr<Call> new_call(detail::notify::NotifyScript const& script,
                                 std::string_view user) const {
    auto call = std::make_unique<Call>();
    call->script = &script;
    call->user = std::string(user);
    return call;
  }

  void add_notification(Call& call, std::string_view user, Notification n) const {
    n.user_id = std::string(user);
    std::string payload;
    codec_->encode(n, payload);
    call.add({keys_->history_key(user), keys_->unread_key(user)},
             {std::string(to_string(n.priority)), std::move(payload), retention_, max_history_,
              keys_->user_channel(user)});
  }

  template <class Result, class Token>
  auto mark(std::string_view user_id, std::string_view mode, ArgList<std::string_view> ids,
            detail::notify::MapFn<Result> map, Token&& token) {
    std::unique_ptr<Call> call;
    if (!user_id.empty() && keys_->valid && !mode.empty()) {
      call = new_call(detail::notify::mark_script, user_id);
      std::vector<std::string> args{retention_, std::string(mode)};
      ids.for_each([&](std::string_view id) { args.emplace_back(id); });
      call->add({keys_->history_key(user_id), keys_->unread_key(user_id)}, std::move(args));
      call->build();
    }
    return run<Result>(std::forward<Token>(token), std::move(call), map);
  }

  template <class Token>
  auto publish(std::string channel, std::string payload, bool ok, Token&& token) {
    return detail::initiate<void(error_code, std::int64_t)>(
        token, [backend = backend_, channel = std::move(channel), payload = std::move(payload),
                ok](auto handler) {
          if (!ok)
            return detail::post_handler(backend->get_executor(), std::move(handler),
                                        detail::notify::invalid(), std::int64_t{0});
          // The command is read before the handler moves (every backend).
          backend->async_exec(cmd::publish{channel, payload}, std::move(handler));
        });
  }

  template <class Token>
  auto subscribe(std::string_view user_id, std::string_view since, NotificationHandler handler,
                 Token&& token) {
    bool const ok = !user_id.empty() && handler && keys_->valid &&
                    (since.empty() || detail::notify::valid_id(since));
    return detail::initiate<SubscribeSig>(
        token, [this, ok, user = std::string(user_id), since = std::string(since),
                fn = std::move(handler)](auto h) mutable {
          detail::AnyHandler<SubscribeSig> done(std::move(h));
          if (!ok)
            return detail::post_handler(backend_->get_executor(), std::move(done),
                                        detail::notify::invalid(), NotificationSubscription());
          dispatcher().add(user, std::move(since), std::move(fn), std::move(done));
        });
  }

  Dispatcher& dispatcher() {
    if (!dispatcher_) {
      detail::notify::Settings s;
      s.retention = retention_;
      s.page = std::to_string(options_.catch_up_page);
      s.page_size = options_.catch_up_page;
      s.max_pending = options_.max_pending;
      dispatcher_ = std::make_shared<Dispatcher>(*backend_, codec_, keys_, std::move(s));
    }
    return *dispatcher_;
  }

  /// Runs `call` (nullptr: Error::invalid_argument, nothing sent) as an Op.
  template <class Result, class Token>
  auto run(Token&& token, std::unique_ptr<Call> call, detail::notify::MapFn<Result> map) {
    return detail::erased_compose<void(error_code, Result)>(
        std::forward<Token>(token), detail::notify::Op<B, Result>{backend_, std::move(call), map},
        backend_->get_executor());
  }

  B* backend_;
  NotificationOptions options_;
  std::shared_ptr<C const> codec_;
  KeyLayout layout_;
  std::shared_ptr<Keys const> keys_;
  std::string retention_;    // ms, as a script argument
  std::string max_history_;  // as a script argument
  std::shared_ptr<Dispatcher> dispatcher_;
};

}  // namespace rediskit
