// rediskit::ConversationManager<Backend, Codec = JsonCodec>: seed 004's conversationManager:
// doctor-patient conversations created once per (type, context, participants), each user's
// conversations ordered by last activity, archiving, and participant management.
//
//   rediskit::ConversationManager convs(backend);               // any Backend
//   rediskit::NewConversation req("ordonnance", "15", rediskit::ParticipantInfo(79, "Sakura", "Saza"),
//                                 rediskit::ParticipantInfo(5, "MOLOWA", "ESSONGA"), "Ordonnance #15");
//   rediskit::CreatedConversation c = co_await convs.async_create_conversation(req);
//   // c.conversation.id, c.created (false: it existed, this is that one)
//   std::vector<rediskit::Conversation> mine =
//       co_await convs.async_get_user_conversations(5, "patient");   // latest activity first
//   co_await convs.async_archive(c.conversation.id);
//
// Keys: see messaging.hpp (the conversation hash, its participant set, the per-user indexes
// `<p>:user:<type>:<id>:conversations`, the dedup key, the stats hash). The conversation hash
// holds `data`, the codec's bytes of the Conversation as created (seed 004's JSON object), and
// the fields that change: status, lastActivity (and lastActivityMs, its score), titre. A read
// decodes `data` and applies those fields.
//
// Creation is idempotent (seed 004: "avoid duplicates"): one script reads the dedup key of
// (type, context id, medecin id, patient id); when it names a conversation, nothing is written
// and that conversation is returned (created = false, a second read); otherwise the script
// writes the dedup key, the conversation, its participant set ("medecin:<id>", "patient:<id>"),
// both participants' indexes and the conversation count, atomically. However many creations
// race, one conversation exists afterwards and every caller gets it.
//
// Participants and indexes agree both ways, as RoomManager's membership does: a user's index
// holds a conversation exactly when the conversation's participant set holds the user; adding
// and removing a participant changes both in one script. MessageStore moves a conversation up
// in every participant's index when a message arrives (same script as the message). Archived
// conversations stay in the indexes (with their status): async_archive / async_reactivate
// change the status only.
//
// Layouts: as MessageStore (message_store.hpp explains the one tag of the clustered layout:
// the per-user indexes span conversations and change with them atomically, so every key shares
// the slot of "{messaging}").
//
// Errors: bad input (an empty type or context id, a type holding ':', an offset < 0, a limit
// outside [1, 500], an empty conversation id) completes with Error::invalid_argument and
// writes nothing; adding a participant to a conversation that does not exist too. A stored
// conversation that does not decode: Error::decode_failed. Operations never complete inside the
// initiating call. Thread safety, lifetimes and cancellation as MessageStore.
#pragma once

#include <rediskit/cmd/hashes.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/cmd/sets.hpp>
#include <rediskit/cmd/sorted_sets.hpp>
#include <rediskit/cmd/strings.hpp>
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

#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

/// Options of ConversationManager (the key options: give MessageStore the same).
struct ConversationOptions {
  std::string key_prefix = "messaging";
  std::string cluster_tag = "messaging";
  std::optional<KeyLayout> key_layout{};
};

/// What async_create_conversation takes (seed 004's createConversation argument).
struct NewConversation {
  std::string type;        ///< e.g. "ordonnance"
  std::string context_id;  ///< e.g. "15"
  ParticipantInfo medecin{};
  ParticipantInfo patient{};
  std::string titre;
  NewConversation() = default;
  NewConversation(std::string type_, std::string context_, ParticipantInfo medecin_,
                  ParticipantInfo patient_, std::string titre_ = {})
      : type(std::move(type_)),
        context_id(std::move(context_)),
        medecin(std::move(medecin_)),
        patient(std::move(patient_)),
        titre(std::move(titre_)) {}
};

/// The conversation, and whether this call created it.
struct CreatedConversation {
  Conversation conversation{};
  bool created = false;
};

namespace detail::convs {

// KEYS: dedup, conversation, participants, medecin index, patient index, stats. ARGV: id, data,
// lastActivity, ms, titre, medecin member, patient member. Reply {"created"|"exists", id}.
inline std::vector<std::string> create_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  if (auto const existing = ctx.call(cmd::get{k[0]})) return {"exists", *existing};
  ctx.call(cmd::set{.key = k[0], .value = a[0]});
  ctx.call(cmd::hset{k[1], {FieldValue{"data", a[1]}, FieldValue{"status", "active"},
                            FieldValue{"lastActivity", a[2]}, FieldValue{"lastActivityMs", a[3]},
                            FieldValue{"titre", a[4]}}});
  ctx.call(cmd::sadd{k[2], {a[5], a[6]}});
  double const ms = static_cast<double>(to_int(a[3], 0));
  ctx.call(cmd::zadd{.key = k[3], .members = ScoreMember{ms, a[0]}});
  ctx.call(cmd::zadd{.key = k[4], .members = ScoreMember{ms, a[0]}});
  ctx.call(cmd::hincrby{k[5], "conversations", 1});
  return {"created", std::string(a[0])};
}
inline auto const create_script = make_script<std::vector<std::string>>(R"lua(
local existing = redis.call('GET', KEYS[1])
if existing then return {'exists', existing} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'data', ARGV[2], 'status', 'active', 'lastActivity', ARGV[3],
           'lastActivityMs', ARGV[4], 'titre', ARGV[5])
redis.call('SADD', KEYS[3], ARGV[6], ARGV[7])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
redis.call('HINCRBY', KEYS[6], 'conversations', 1)
return {'created', ARGV[1]})lua",
                                                                  [](ScriptContext auto& c) { return create_twin(c); });

// KEYS: conversation; ARGV: status. 1 when the conversation exists (its status is set).
inline std::int64_t status_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys()[0];
  if (ctx.call(cmd::exists{.keys = k}) == 0) return 0;
  ctx.call(cmd::hset{k, FieldValue{"status", ctx.args()[0]}});
  return 1;
}
inline auto const status_script = make_script<std::int64_t>(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return 1)lua",
                                                            [](ScriptContext auto& c) { return status_twin(c); });

// KEYS: conversation, participants, the user's index; ARGV: "+" | "-", member, conversation id.
// -1: no such conversation (add); else 1 when the membership changed, 0 when it already was so.
inline std::int64_t member_twin(ScriptContext auto& ctx) {
  auto const k = ctx.keys();
  auto const a = ctx.args();
  if (a[0] == "+") {
    auto const ms = ctx.call(cmd::hget{k[0], "lastActivityMs"});
    if (!ms) return -1;
    if (ctx.call(cmd::sadd{k[1], a[1]}) == 0) return 0;
    ctx.call(cmd::zadd{.key = k[2],
                       .members = ScoreMember{static_cast<double>(to_int(*ms, 0)), a[2]}});
    return 1;
  }
  if (ctx.call(cmd::srem{k[1], a[1]}) == 0) return 0;
  ctx.call(cmd::zrem{k[2], a[2]});
  return 1;
}
inline auto const member_script = make_script<std::int64_t>(R"lua(
if ARGV[1] == '+' then
  local ms = redis.call('HGET', KEYS[1], 'lastActivityMs')
  if not ms then return -1 end
  if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 0 end
  redis.call('ZADD', KEYS[3], ms, ARGV[3])
  return 1
end
if redis.call('SREM', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[3])
return 1)lua",
                                                            [](ScriptContext auto& c) { return member_twin(c); });

}  // namespace detail::convs

/// Seed 004's conversationManager over any Backend (see the top of this file).
template <Backend B, class Codec = JsonCodec>
class ConversationManager {
  using error_code = boost::system::error_code;
  using CreateSig = void(error_code, CreatedConversation);
  using OneSig = void(error_code, std::optional<Conversation>);
  using ListSig = void(error_code, std::vector<Conversation>);
  using BoolSig = void(error_code, bool);
  using MembersSig = void(error_code, std::vector<std::string>);
  using Got = std::vector<std::optional<std::string>>;

 public:
  using executor_type = typename B::executor_type;
  static constexpr std::int64_t max_page = 500;

  explicit ConversationManager(B& backend, ConversationOptions options = {}, Codec codec = {})
      : backend_(backend),
        options_(std::move(options)),
        layout_(options_.key_layout.value_or(default_key_layout_v<B>)),
        codec_(std::move(codec)),
        rng_(std::random_device{}()) {
    if (layout_ == KeyLayout::clustered && !detail::messaging::valid_tag(options_.cluster_tag))
      throw Exception(make_error_code(Error::invalid_config),
                      "ConversationOptions::cluster_tag must be a non-empty hash tag without '{' "
                      "or '}' in the clustered layout");
    keys_ = MessagingKeys(MessagingOptions{options_.key_prefix, options_.cluster_tag, layout_},
                          layout_);
  }

  executor_type get_executor() const noexcept { return backend_.get_executor(); }
  ConversationOptions const& options() const noexcept { return options_; }
  KeyLayout key_layout() const noexcept { return layout_; }
  MessagingKeys const& keys() const noexcept { return keys_; }

  /// seed: createConversation. The conversation of (type, context id, medecin, patient),
  /// created when there is none (see the top of the file). Handler: void(error_code,
  /// CreatedConversation).
  template <class Token = boost::asio::deferred_t>
  auto async_create_conversation(NewConversation const& req, Token&& token = {}) {
    auto st = std::make_unique<CreateState>();
    bool const bad = req.type.empty() || req.context_id.empty() ||
                     req.type.find(':') != std::string::npos;
    auto& c = st->c;
    c.id = new_id();
    c.type = req.type;
    c.contextId = req.context_id;
    c.participants.medecin = req.medecin;
    c.participants.patient = req.patient;
    c.status = "active";
    auto const now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    c.lastActivity = format_iso8601_ms(now);
    c.titre = req.titre;
    st->ms = std::to_string(now);
    return detail::erased_compose<CreateSig>(std::forward<Token>(token),
                                             CreateOp{this, std::move(st), bad},
                                             backend_.get_executor());
  }

  /// The conversation, or nullopt. Handler: void(error_code, std::optional<Conversation>). One
  /// HMGET.
  template <class Token = boost::asio::deferred_t>
  auto async_get_conversation(std::string_view conversation_id, Token&& token = {}) {
    return detail::initiate<OneSig>(
        token, [this, id = std::string(conversation_id)](auto handler) {
          if (id.empty()) return fail_now(std::move(handler), std::optional<Conversation>{});
          std::string const k = keys_.conversation(id);
          backend_.async_exec(read_cmd(k),
                              detail::then(detail::AnyHandler<OneSig>(std::move(handler)),
                                           [this](error_code& ec, Got const& g) {
                                             std::optional<Conversation> out;
                                             if (ec || g.size() != 4 || !g[0]) return out;
                                             out.emplace();
                                             ec = decode(g, *out);
                                             if (ec) out.reset();
                                             return out;
                                           }));
        });
  }

  /// seed: getUserConversations(userId, userType). The user's conversations, latest activity
  /// first, `limit` from `offset`. Handler: void(error_code, std::vector<Conversation>). One
  /// ZRANGE and one batch of HMGETs.
  template <class Token = boost::asio::deferred_t>
  auto async_get_user_conversations(std::int64_t user_id, std::string_view user_type,
                                    std::int64_t offset = 0, std::int64_t limit = 50,
                                    Token&& token = {}) {
    auto st = std::make_unique<ListState>();
    st->index = keys_.user_conversations(user_type, user_id);
    st->offset = offset;
    st->limit = limit;
    bool const bad = user_type.empty() || user_type.find(':') != std::string_view::npos ||
                     offset < 0 || limit < 1 || limit > max_page;
    return detail::erased_compose<ListSig>(std::forward<Token>(token),
                                           ListOp{this, std::move(st), bad},
                                           backend_.get_executor());
  }

  /// Archives a conversation (status "archived"). Completes with false when there is no such
  /// conversation. Handler: void(error_code, bool). One script.
  template <class Token = boost::asio::deferred_t>
  auto async_archive(std::string_view conversation_id, Token&& token = {}) {
    return set_status(conversation_id, "archived", std::forward<Token>(token));
  }

  /// Makes an archived conversation active again. As async_archive.
  template <class Token = boost::asio::deferred_t>
  auto async_reactivate(std::string_view conversation_id, Token&& token = {}) {
    return set_status(conversation_id, "active", std::forward<Token>(token));
  }

  /// Adds `user` to the conversation's participants and the conversation to the user's index
  /// (at the conversation's last activity). Completes with true when the user was not a
  /// participant; a conversation that does not exist fails with Error::invalid_argument.
  /// Handler: void(error_code, bool). One script.
  template <class Token = boost::asio::deferred_t>
  auto async_add_participant(std::string_view conversation_id, UserRef const& user,
                             Token&& token = {}) {
    return change_member("+", conversation_id, user, std::forward<Token>(token));
  }

  /// Removes `user` from the participants and the conversation from the user's index.
  /// Completes with true when the user was a participant. Handler: void(error_code, bool).
  template <class Token = boost::asio::deferred_t>
  auto async_remove_participant(std::string_view conversation_id, UserRef const& user,
                                Token&& token = {}) {
    return change_member("-", conversation_id, user, std::forward<Token>(token));
  }

  /// The participants ("<type>:<id>", sorted). Handler: void(error_code,
  /// std::vector<std::string>). One SMEMBERS.
  template <class Token = boost::asio::deferred_t>
  auto async_get_participants(std::string_view conversation_id, Token&& token = {}) {
    return detail::initiate<MembersSig>(
        token, [this, id = std::string(conversation_id)](auto handler) {
          if (id.empty()) return fail_now(std::move(handler), std::vector<std::string>{});
          std::string const k = keys_.participants(id);
          backend_.async_exec(cmd::smembers{k},
                              detail::then(detail::AnyHandler<MembersSig>(std::move(handler)),
                                           [](error_code&, std::vector<std::string> m) {
                                             std::sort(m.begin(), m.end());
                                             return m;
                                           }));
        });
  }

 private:
  std::string new_id() {
    std::lock_guard<std::mutex> lock(rng_mutex_);
    static constexpr char hex[] = "0123456789abcdef";
    std::string id = "conv_";
    auto v = rng_();
    for (int i = 0; i < 16; ++i, v >>= 4) id.push_back(hex[v & 0xf]);
    return id;
  }

  template <class Handler, class R>
  void fail_now(Handler handler, R r) {
    detail::post_handler(backend_.get_executor(), std::move(handler),
                         make_error_code(Error::invalid_argument), std::move(r));
  }

  static cmd::hmget read_cmd(std::string const& key) {
    return cmd::hmget{key, {"data", "status", "lastActivity", "titre"}};
  }

  error_code decode(Got const& g, Conversation& c) const {
    if (g.size() != 4 || !g[0]) return make_error_code(Error::decode_failed);
    if (auto ec = codec_.decode(*g[0], c, nullptr)) return ec;
    if (g[1]) c.status = *g[1];
    if (g[2]) c.lastActivity = *g[2];
    if (g[3]) c.titre = *g[3];
    return {};
  }

  template <class Token>
  auto set_status(std::string_view conversation_id, char const* status, Token&& token) {
    return detail::initiate<BoolSig>(
        token, [this, id = std::string(conversation_id), status](auto handler) {
          if (id.empty()) return fail_now(std::move(handler), false);
          std::string const k = keys_.conversation(id);
          backend_.async_exec(detail::convs::status_script(k, status),
                              detail::then(detail::AnyHandler<BoolSig>(std::move(handler)),
                                           [](error_code&, std::int64_t r) { return r == 1; }));
        });
  }

  template <class Token>
  auto change_member(char const* op, std::string_view conversation_id, UserRef const& user,
                     Token&& token) {
    return detail::initiate<BoolSig>(
        token, [this, op, id = std::string(conversation_id), user](auto handler) {
          if (id.empty() || user.type.empty() || user.type.find(':') != std::string::npos)
            return fail_now(std::move(handler), false);
          std::string const ck = keys_.conversation(id), pk = keys_.participants(id),
                            uk = keys_.user_conversations(user.type, user.id),
                            member = participant_member(user.type, user.id);
          backend_.async_exec(detail::convs::member_script({ck, pk, uk}, {op, member, id}),
                              detail::then(detail::AnyHandler<BoolSig>(std::move(handler)),
                                           [](error_code& ec, std::int64_t r) {
                                             if (!ec && r < 0)
                                               ec = make_error_code(Error::invalid_argument);
                                             return r == 1;
                                           }));
        });
  }

  // ---- create ---------------------------------------------------------------------------------
  struct CreateState {
    Conversation c;
    std::string ms, data, medecin, patient;
    std::vector<std::string> keys;
    std::string existing_key;
  };
  struct CreateOp {
    ConversationManager* svc;
    std::unique_ptr<CreateState> st;
    bool bad = false;
    bool posted = false;

    template <class Self>
    void operator()(Self& self) {
      if (bad) {
        if (posted)
          return self.complete(make_error_code(Error::invalid_argument), CreatedConversation{});
        posted = true;
        return boost::asio::post(svc->backend_.get_executor(), std::move(self));
      }
      auto const& c = st->c;
      auto const& ks = svc->keys_;
      svc->codec_.encode(c, st->data);
      st->medecin = participant_member("medecin", c.participants.medecin.id);
      st->patient = participant_member("patient", c.participants.patient.id);
      st->keys = {ks.dedup(c.type, c.contextId, c.participants.medecin.id,
                           c.participants.patient.id),
                  ks.conversation(c.id),
                  ks.participants(c.id),
                  ks.user_conversations(st->medecin),
                  ks.user_conversations(st->patient),
                  ks.stats()};
      svc->backend_.async_exec(
          detail::convs::create_script(st->keys, {c.id, st->data, c.lastActivity, st->ms, c.titre,
                                                  st->medecin, st->patient}),
          std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::vector<std::string> r) {
      if (ec) return self.complete(ec, CreatedConversation{});
      if (r.size() != 2) return self.complete(make_error_code(Error::incompatible_size),
                                              CreatedConversation{});
      if (r[0] == "created") return self.complete({}, CreatedConversation{std::move(st->c), true});
      st->existing_key = svc->keys_.conversation(r[1]);
      svc->backend_.async_exec(read_cmd(st->existing_key), std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, Got g) {
      CreatedConversation out;
      if (!ec) ec = svc->decode(g, out.conversation);
      self.complete(ec, std::move(out));
    }
  };

  // ---- list -----------------------------------------------------------------------------------
  struct ListState {
    std::string index;
    std::int64_t offset = 0, limit = 0;
    std::vector<std::string> keys;
    std::vector<cmd::hmget> gets;
  };
  struct ListOp {
    ConversationManager* svc;
    std::unique_ptr<ListState> st;
    bool bad = false;
    bool posted = false;

    template <class Self>
    void operator()(Self& self) {
      if (bad) {
        if (posted)
          return self.complete(make_error_code(Error::invalid_argument),
                               std::vector<Conversation>{});
        posted = true;
        return boost::asio::post(svc->backend_.get_executor(), std::move(self));
      }
      svc->backend_.async_exec(cmd::zrange{.key = st->index,
                                           .start = st->offset,
                                           .stop = st->offset + st->limit - 1,
                                           .rev = true},
                               std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::vector<std::string> ids) {
      if (ec || ids.empty()) return self.complete(ec, std::vector<Conversation>{});
      for (auto const& id : ids) st->keys.push_back(svc->keys_.conversation(id));
      for (auto const& k : st->keys) st->gets.push_back(read_cmd(k));
      svc->backend_.async_exec(std::span<cmd::hmget const>(st->gets), std::move(self));
    }

    template <class Self>
    void operator()(Self& self, error_code ec, std::vector<Got> got) {
      std::vector<Conversation> out;
      if (ec) return self.complete(ec, std::move(out));
      out.reserve(got.size());
      for (auto const& g : got) {
        if (g.size() != 4 || !g[0]) continue;  // gone meanwhile
        Conversation c;
        if (auto dec = svc->decode(g, c)) return self.complete(dec, std::vector<Conversation>{});
        out.push_back(std::move(c));
      }
      self.complete({}, std::move(out));
    }
  };

  B& backend_;
  ConversationOptions options_;
  KeyLayout layout_;
  Codec codec_;
  MessagingKeys keys_;
  std::mutex rng_mutex_;
  std::mt19937_64 rng_;
};

}  // namespace rediskit
