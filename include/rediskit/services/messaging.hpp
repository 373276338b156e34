// rediskit messaging types: the data shapes and key layout that MessageStore
// (message_store.hpp) and ConversationManager (conversation_manager.hpp) share, seed 004's
// doctor-patient messaging ("messagerie sécurisée").
//
//   rediskit::ChatMessage m;                           // seed 004's Message, as JSON:
//   m.id = "msg_123";                                  // {"id":"msg_123","conversationId":...,
//   m.conversationId = "conv_456";                     //  "sender":{"type":"patient","id":5,
//   m.sender = {"patient", 5, "MOLOWA", "ESSONGA"};    //  "nom":"MOLOWA","prenom":"ESSONGA"},
//   m.content = "Bonjour docteur...";                  //  "content":...,"timestamp":...,
//   m.timestamp = "2025-01-25T10:00:00.000Z";          //  "isRead":false}
//
// ChatMessage (seed 004's Message), MessageSender, Conversation, ConversationParticipants and ParticipantInfo are
// Boost.Describe'd with the seed's member names (camelCase as in the JavaScript objects), so the
// seed's objects round-trip through JsonCodec unchanged: same members, same order, same types
// (user ids are JSON numbers, as in the seed: `id: 5`). Conversation::titre is a C++ member but
// not a described one: the seed's example conversation has no `titre`, and JsonCodec writes
// every described member (an empty or null `titre` would change the object). ConversationManager
// keeps it in its own field of the conversation hash.
//
// Timestamps are the seed's ISO-8601 strings ("2025-01-25T10:00:00.000Z"). The services index
// them by their UTC milliseconds (parse_iso8601_ms); format_iso8601_ms writes one.
//
// Participants are named "<type>:<id>" ("medecin:79", "patient:5": participant_member): the
// member of a conversation's participant set, the field of its read positions, and the user id
// under which UnreadMessageManager counts a participant's unread messages.
//
// Keys (MessagingKeys; <p> is "messaging" on one node, "{messaging}:messaging" in the clustered
// layout, see MessagingOptions):
//
//   key                                          type  what
//   <p>:message:<id>                             hash  data (the codec's bytes of the ChatMessage as
//                                                      stored), content (after an edit); TTL
//                                                      30 days (MessageStoreOptions)
//   <p>:conversation:<id>                        hash  data (the codec's bytes of the Conversation
//                                                      as created), status, lastActivity,
//                                                      lastActivityMs, titre
//   <p>:conversation:<id>:messages               zset  message id -> timestamp (ms); equal
//                                                      timestamps ordered by id
//   <p>:conversation:<id>:participants           set   "<type>:<id>" of every participant
//   <p>:conversation:<id>:read                   hash  "<type>:<id>" -> "<ms>:<message id>",
//                                                      how far the participant has read
//   <p>:user:<type>:<id>:conversations           zset  conversation id -> last activity (ms)
//   <p>:conversation-dedup:<n>:<type>:<ctx>:<medecin>:<patient>
//                                                string the id of the one conversation of that
//                                                      (type, context, participants); <n> is the
//                                                      length of <type> (no two tuples collide)
//   <p>:stats                                    hash  messages, removed, bytes, oldest, newest,
//                                                      conversations (counters, see
//                                                      MessageStore::async_get_storage_stats)
#pragma once

#include <rediskit/key_space.hpp>

#include <boost/describe/class.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace rediskit {

/// Who sent a message (seed 004: sender {type, id, nom, prenom}).
struct MessageSender {
  std::string type;  ///< "medecin" or "patient" (any non-empty type without ':')
  std::int64_t id = 0;
  std::string nom;
  std::string prenom;
  MessageSender() = default;
  MessageSender(std::string type_, std::int64_t id_, std::string nom_ = {},
                std::string prenom_ = {})
      : type(std::move(type_)), id(id_), nom(std::move(nom_)), prenom(std::move(prenom_)) {}
  friend bool operator==(MessageSender const&, MessageSender const&) = default;
};
BOOST_DESCRIBE_STRUCT(MessageSender, (), (type, id, nom, prenom))

/// Seed 004's Message (named ChatMessage: rediskit::Message is a pub/sub message). `isRead` is computed when a page is read: true when a participant other
/// than the sender has read up to it (MessageStore::async_mark_read).
struct ChatMessage {
  std::string id;
  std::string conversationId;
  MessageSender sender{};
  std::string content;
  std::string timestamp;  ///< ISO-8601, UTC ("2025-01-25T10:00:00.000Z")
  bool isRead = false;
  friend bool operator==(ChatMessage const&, ChatMessage const&) = default;
};
BOOST_DESCRIBE_STRUCT(ChatMessage, (), (id, conversationId, sender, content, timestamp, isRead))

/// A participant as a conversation describes it (seed 004: medecin / patient {id, nom, prenom}).
struct ParticipantInfo {
  std::int64_t id = 0;
  std::string nom;
  std::string prenom;
  ParticipantInfo() = default;
  ParticipantInfo(std::int64_t id_, std::string nom_ = {}, std::string prenom_ = {})
      : id(id_), nom(std::move(nom_)), prenom(std::move(prenom_)) {}
  friend bool operator==(ParticipantInfo const&, ParticipantInfo const&) = default;
};
BOOST_DESCRIBE_STRUCT(ParticipantInfo, (), (id, nom, prenom))

struct ConversationParticipants {
  ParticipantInfo medecin{};
  ParticipantInfo patient{};
  friend bool operator==(ConversationParticipants const&,
                         ConversationParticipants const&) = default;
};
BOOST_DESCRIBE_STRUCT(ConversationParticipants, (), (medecin, patient))

/// Seed 004's Conversation. `status` is "active" or "archived". `titre` is not described (see
/// the top of the file): it is not part of the JSON.
struct Conversation {
  std::string id;
  std::string type;       ///< e.g. "ordonnance"
  std::string contextId;  ///< e.g. "15"
  ConversationParticipants participants{};
  std::string status = "active";
  std::string lastActivity;  ///< ISO-8601, UTC
  std::string titre;         ///< not in the JSON
  friend bool operator==(Conversation const&, Conversation const&) = default;
};
BOOST_DESCRIBE_STRUCT(Conversation, (), (id, type, contextId, participants, status, lastActivity))

/// A user of the messaging service: a type ("medecin", "patient") and a numeric id.
struct UserRef {
  std::string type;
  std::int64_t id = 0;
  UserRef() = default;
  UserRef(std::string type_, std::int64_t id_) : type(std::move(type_)), id(id_) {}
  friend bool operator==(UserRef const&, UserRef const&) = default;
};

/// "<type>:<id>": a participant's name in the participant set, the read positions and the
/// unread counters.
inline std::string participant_member(std::string_view type, std::int64_t id) {
  std::string out(type);
  out.push_back(':');
  out += std::to_string(id);
  return out;
}

/// The key options the messaging services share (give both services the same values).
struct MessagingOptions {
  /// Namespace of every key (seed 004: "messaging").
  std::string key_prefix = "messaging";
  /// The hash tag of every key in the clustered layout (no '{' or '}', not empty).
  std::string cluster_tag = "messaging";
  /// Unset: default_key_layout_v<B> (clustered on ClusterBackend, plain elsewhere).
  std::optional<KeyLayout> key_layout{};
};

namespace detail::messaging {

inline bool valid_tag(std::string_view t) {
  return !t.empty() && t.find_first_of("{}") == std::string_view::npos;
}

inline std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2;
  std::int64_t const era = (y >= 0 ? y : y - 399) / 400;
  auto const yoe = static_cast<unsigned>(y - era * 400);
  unsigned const doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned const doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

inline bool digits(std::string_view s, std::size_t at, std::size_t n, int& out) {
  if (at + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

}  // namespace detail::messaging

/// Milliseconds since the Unix epoch of an ISO-8601 time "YYYY-MM-DDTHH:MM:SS[.fff...][Z|+HH:MM|
/// -HH:MM]" (no zone: UTC); nullopt when `s` is not one.
inline std::optional<std::int64_t> parse_iso8601_ms(std::string_view s) noexcept {
  using detail::messaging::digits;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0;
  if (!digits(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, mo) ||
      s[7] != '-' || !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != ' ') ||
      !digits(s, 11, 2, h) || s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' ||
      !digits(s, 17, 2, se))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return std::nullopt;
  std::size_t i = 19;
  std::int64_t ms = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    std::size_t const start = i;
    int scale = 100;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      ms += (s[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
    if (i == start) return std::nullopt;
  }
  std::int64_t offset_min = 0;
  if (i < s.size()) {
    if (s[i] == 'Z' && i + 1 == s.size()) {
      ++i;
    } else if ((s[i] == '+' || s[i] == '-') && i + 6 == s.size() && s[i + 3] == ':') {
      int oh = 0, om = 0;
      if (!digits(s, i + 1, 2, oh) || !digits(s, i + 4, 2, om)) return std::nullopt;
      offset_min = (oh * 60 + om) * (s[i] == '+' ? 1 : -1);
      i += 6;
    } else {
      return std::nullopt;
    }
  }
  std::int64_t const days = detail::messaging::days_from_civil(
      y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return ((days * 24 + h) * 60 + mi - offset_min) * 60000 + se * 1000 + ms;
}

/// "YYYY-MM-DDTHH:MM:SS.mmmZ" of `ms` milliseconds since the Unix epoch (JavaScript's
/// Date.prototype.toISOString).
inline std::string format_iso8601_ms(std::int64_t ms) {
  std::int64_t days = ms / 86400000, rem = ms % 86400000;
  if (rem < 0) {
    rem += 86400000;
    --days;
  }
  // civil_from_days (H. Hinnant)
  days += 719468;
  std::int64_t const era = (days >= 0 ? days : days - 146096) / 146097;
  auto const doe = static_cast<unsigned>(days - era * 146097);
  unsigned const yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  unsigned const doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned const mp = (5 * doy + 2) / 153;
  unsigned const d = doy - (153 * mp + 2) / 5 + 1;
  unsigned const m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ",
                static_cast<long long>(y), m, d, static_cast<long long>(rem / 3600000),
                static_cast<long long>(rem / 60000 % 60), static_cast<long long>(rem / 1000 % 60),
                static_cast<long long>(rem % 1000));
  return buf;
}

/// The key names of the messaging services (see the top of the file).
class MessagingKeys {
 public:
  MessagingKeys() = default;
  MessagingKeys(MessagingOptions const& o, KeyLayout layout) {
    if (layout == KeyLayout::clustered) p_ = "{" + o.cluster_tag + "}:";
    p_ += o.key_prefix;
    if (!o.key_prefix.empty()) p_.push_back(':');
  }
  std::string message(std::string_view id) const { return p_ + "message:" + std::string(id); }
  std::string conversation(std::string_view id) const {
    return p_ + "conversation:" + std::string(id);
  }
  std::string index(std::string_view conv) const { return conversation(conv) + ":messages"; }
  std::string participants(std::string_view conv) const {
    return conversation(conv) + ":participants";
  }
  std::string reads(std::string_view conv) const { return conversation(conv) + ":read"; }
  std::string user_conversations(std::string_view type, std::int64_t id) const {
    return p_ + "user:" + participant_member(type, id) + ":conversations";
  }
  /// The user index of a participant member ("<type>:<id>").
  std::string user_conversations(std::string_view member) const {
    return p_ + "user:" + std::string(member) + ":conversations";
  }
  std::string dedup(std::string_view type, std::string_view context, std::int64_t medecin,
                    std::int64_t patient) const {
    return p_ + "conversation-dedup:" + std::to_string(type.size()) + ":" + std::string(type) +
           ":" + std::string(context) + ":" + std::to_string(medecin) + ":" +
           std::to_string(patient);
  }
  std::string stats() const { return p_ + "stats"; }

 private:
  std::string p_;  // "[{tag}:]<prefix>:"
};

}  // namespace rediskit
