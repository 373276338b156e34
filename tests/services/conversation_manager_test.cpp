// ConversationManager on MemoryBackend, FakeBackend, RedisBackend and ClusterBackend: creation
// with seed 004's keys and JSON, idempotent creation (50 racing creations give one
// conversation), each user's conversations ordered by last activity and paged (MessageStore
// moving them), archive / reactivate, participants and per-user indexes agreeing both ways,
// bad input with nothing written.
//
// Every case runs on each backend in its default layout and, on the in-process backends, again
// in the clustered layout with MemoryConfig::cluster_checks.
#include "support/backends.hpp"
#include "support/layout_modes.hpp"

#include <rediskit/codec/json_codec.hpp>
#include <rediskit/services/conversation_manager.hpp>
#include <rediskit/services/message_store.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

using namespace rediskit;
using boost::system::error_code;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
using rediskit::test::Mode;
using rediskit::test::for_each_mode;
using rediskit::test::mode_fixture;
using rediskit::test::with_mode_layout;

namespace {

using rediskit::test::invalid;

template <class B>
struct Convs {
  explicit Convs(Mode mode)
      : f(mode_fixture<B>(mode)),
        convs(f.backend, with_mode_layout(mode, ConversationOptions{})),
        store(f.backend, with_mode_layout(mode, MessageStoreOptions{})) {}

  template <class Op>
  auto ok(Op&& op) {
    return f.value(std::forward<Op>(op));
  }
  template <class Op>
  error_code err(Op&& op) {
    return f.error(std::forward<Op>(op));
  }

  CreatedConversation create(std::string const& ctx, std::int64_t medecin = 79,
                             std::int64_t patient = 5, std::string const& type = "ordonnance") {
    NewConversation req(type, ctx, ParticipantInfo(medecin, "Sakura", "Saza"),
                        ParticipantInfo(patient, "MOLOWA", "ESSONGA"), "Ordonnance #" + ctx);
    return ok(convs.async_create_conversation(req));
  }

  std::vector<std::string> user_ids(std::int64_t id, std::string const& type,
                                    std::int64_t offset = 0, std::int64_t limit = 50) {
    std::vector<std::string> out;
    for (auto const& c : ok(convs.async_get_user_conversations(id, type, offset, limit)))
      out.push_back(c.id);
    return out;
  }

  /// Both directions agree: the user's index holds `conv` iff the participant set holds them.
  void check_agree(std::string const& conv, std::string const& member) {
    auto const& k = convs.keys();
    bool const in_set = f.ok(cmd::sismember{k.participants(conv), member});
    bool const in_index = f.ok(cmd::zscore{k.user_conversations(member), conv}).has_value();
    BOOST_TEST(in_set == in_index, member << " in set: " << in_set << ", in index: " << in_index);
  }

  void say(std::string const& conv, std::string const& id, std::int64_t at_ms) {
    ChatMessage m;
    m.id = id;
    m.conversationId = conv;
    m.sender = MessageSender("patient", 5);
    m.content = "hello";
    m.timestamp = format_iso8601_ms(at_ms);
    ok(store.async_store_message(m));
  }

  BackendFixture<B> f;
  ConversationManager<B> convs;
  MessageStore<B> store;
};

using V = std::vector<std::string>;

using rediskit::test::now_ms;

}  // namespace

BOOST_AUTO_TEST_SUITE(conversation_manager)

BOOST_AUTO_TEST_CASE_TEMPLATE(creates_with_seed_keys_and_json, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Convs<B> t(mode);
    auto const before = now_ms();
    CreatedConversation const r = t.create("15");
    BOOST_TEST(r.created);
    Conversation const& c = r.conversation;
    BOOST_TEST(c.id.rfind("conv_", 0) == 0u);
    BOOST_TEST(c.type == "ordonnance");
    BOOST_TEST(c.contextId == "15");
    BOOST_TEST(c.participants.medecin.id == 79);
    BOOST_TEST(c.participants.patient.nom == "MOLOWA");
    BOOST_TEST(c.status == "active");
    BOOST_TEST(c.titre == "Ordonnance #15");
    BOOST_TEST(parse_iso8601_ms(c.lastActivity).value_or(0) >= before);
    auto const got = t.ok(t.convs.async_get_conversation(c.id));
    BOOST_TEST_REQUIRE(got.has_value());
    BOOST_TEST((*got == c));
    BOOST_TEST(!t.ok(t.convs.async_get_conversation("conv_none")).has_value());
    auto const& k = t.convs.keys();
    if (t.convs.key_layout() == KeyLayout::plain) {
      BOOST_TEST(k.conversation(c.id) == "messaging:conversation:" + c.id);
      BOOST_TEST(k.user_conversations("medecin", 79) == "messaging:user:medecin:79:conversations");
    } else {
      BOOST_TEST(k.conversation(c.id) == "{messaging}:messaging:conversation:" + c.id);
    }
    // The stored JSON is the seed's object (no titre), readable by the Node services.
    auto const data = t.f.ok(cmd::hget{k.conversation(c.id), "data"});
    BOOST_TEST_REQUIRE(data.has_value());
    std::string expected;
    JsonCodec{}.encode(c, expected);
    BOOST_TEST(*data == expected);
    BOOST_TEST(data->find("titre") == std::string::npos);
    BOOST_TEST((t.ok(t.convs.async_get_participants(c.id)) == V{"medecin:79", "patient:5"}));
    BOOST_TEST((t.user_ids(79, "medecin") == V{c.id}));
    BOOST_TEST((t.user_ids(5, "patient") == V{c.id}));
    BOOST_TEST(t.ok(t.store.async_get_storage_stats()).conversations == 1);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(creating_the_same_conversation_returns_the_existing_one, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Convs<B> t(mode);
    CreatedConversation const a = t.create("15");
    CreatedConversation const b = t.create("15");
    BOOST_TEST(!b.created);
    BOOST_TEST((b.conversation == a.conversation));
    // Another context, type or participant is another conversation.
    BOOST_TEST(t.create("16").conversation.id != a.conversation.id);
    BOOST_TEST(t.create("15", 80).conversation.id != a.conversation.id);
    BOOST_TEST(t.create("15", 79, 6).conversation.id != a.conversation.id);
    BOOST_TEST(t.create("15", 79, 5, "consultation").conversation.id != a.conversation.id);
    // Contexts holding ':' do not collide with other tuples.
    BOOST_TEST(t.create("7:79", 5, 5, "a").conversation.id !=
               t.create("7", 79, 5, "a").conversation.id);
    BOOST_TEST(t.ok(t.store.async_get_storage_stats()).conversations == 7);
    BOOST_TEST(t.user_ids(5, "patient").size() == 6u);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(fifty_racing_creations_give_one_conversation, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Convs<B> t(mode);
    NewConversation const req("ordonnance", "race", ParticipantInfo(79), ParticipantInfo(5));
    std::vector<std::optional<std::pair<error_code, CreatedConversation>>> results(50);
    for (auto& slot : results)
      t.convs.async_create_conversation(req, [&slot](error_code ec, CreatedConversation c) {
        slot.emplace(ec, std::move(c));
      });
    t.f.run_until([&] {
      for (auto const& r : results)
        if (!r) return false;
      return true;
    });
    int created = 0;
    std::set<std::string> ids;
    for (auto const& r : results) {
      BOOST_TEST(!r->first);
      created += r->second.created;
      ids.insert(r->second.conversation.id);
    }
    BOOST_TEST(created == 1);
    BOOST_TEST(ids.size() == 1u);
    BOOST_TEST(t.ok(t.store.async_get_storage_stats()).conversations == 1);
    BOOST_TEST(t.f.ok(cmd::zcard{t.convs.keys().user_conversations("patient", 5)}) == 1);
    BOOST_TEST(t.f.ok(cmd::zcard{t.convs.keys().user_conversations("medecin", 79)}) == 1);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(user_conversations_follow_last_activity_and_page, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Convs<B> t(mode);
    std::string const c0 = t.create("a", 70).conversation.id;
    std::string const c1 = t.create("b", 71).conversation.id;
    std::string const c2 = t.create("c", 72).conversation.id;
    std::int64_t const later = now_ms() + 60000;
    t.say(c2, "m1", later);
    t.say(c0, "m2", later + 1000);
    BOOST_TEST((t.user_ids(5, "patient") == V{c0, c2, c1}));
    BOOST_TEST((t.user_ids(5, "patient", 1, 1) == V{c2}));
    BOOST_TEST((t.user_ids(5, "patient", 2, 5) == V{c1}));
    BOOST_TEST(t.user_ids(5, "patient", 3, 5).empty());
    t.say(c1, "m3", later + 2000);
    BOOST_TEST((t.user_ids(5, "patient") == V{c1, c0, c2}));
    BOOST_TEST((t.user_ids(71, "medecin") == V{c1}));
    auto const list = t.ok(t.convs.async_get_user_conversations(5, "patient", 0, 1));
    BOOST_TEST_REQUIRE(list.size() == 1u);
    BOOST_TEST(parse_iso8601_ms(list[0].lastActivity).value_or(0) == later + 2000);
    BOOST_TEST(t.user_ids(999, "patient").empty());
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(archive_and_reactivate_change_the_status, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Convs<B> t(mode);
    std::string const c = t.create("x").conversation.id;
    BOOST_TEST(t.ok(t.convs.async_archive(c)));
    BOOST_TEST(t.ok(t.convs.async_get_conversation(c))->status == "archived");
    auto const list = t.ok(t.convs.async_get_user_conversations(5, "patient"));
    BOOST_TEST_REQUIRE(list.size() == 1u);
    BOOST_TEST(list[0].status == "archived");
    BOOST_TEST(t.ok(t.convs.async_reactivate(c)));
    BOOST_TEST(t.ok(t.convs.async_get_conversation(c))->status == "active");
    BOOST_TEST(!t.ok(t.convs.async_archive("conv_none")));
    BOOST_TEST(t.f.ok(cmd::exists{.keys = t.convs.keys().conversation("conv_none")}) == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(participants_and_user_indexes_agree_both_ways, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Convs<B> t(mode);
    std::string const c = t.create("p").conversation.id;
    UserRef const colleague("medecin", 80);
    BOOST_TEST(t.ok(t.convs.async_add_participant(c, colleague)));
    BOOST_TEST(!t.ok(t.convs.async_add_participant(c, colleague)));
    BOOST_TEST((t.ok(t.convs.async_get_participants(c)) == V{"medecin:79", "medecin:80", "patient:5"}));
    BOOST_TEST((t.user_ids(80, "medecin") == V{c}));
    for (auto m : {"medecin:79", "medecin:80", "patient:5"}) t.check_agree(c, m);
    BOOST_TEST(t.ok(t.convs.async_remove_participant(c, colleague)));
    BOOST_TEST(!t.ok(t.convs.async_remove_participant(c, colleague)));
    BOOST_TEST(t.user_ids(80, "medecin").empty());
    for (auto m : {"medecin:79", "medecin:80", "patient:5"}) t.check_agree(c, m);
    // A conversation that does not exist gets no participant (and no index entry).
    BOOST_TEST(t.err(t.convs.async_add_participant("conv_none", colleague)) == invalid);
    BOOST_TEST(t.user_ids(80, "medecin").empty());
    BOOST_TEST(t.f.ok(cmd::exists{.keys = t.convs.keys().participants("conv_none")}) == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_is_refused_with_nothing_written, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Convs<B> t(mode);
    NewConversation req("", "15", ParticipantInfo(79), ParticipantInfo(5));
    BOOST_TEST(t.err(t.convs.async_create_conversation(req)) == invalid);
    req = NewConversation("ordonnance", "", ParticipantInfo(79), ParticipantInfo(5));
    BOOST_TEST(t.err(t.convs.async_create_conversation(req)) == invalid);
    req = NewConversation("a:b", "15", ParticipantInfo(79), ParticipantInfo(5));
    BOOST_TEST(t.err(t.convs.async_create_conversation(req)) == invalid);
    BOOST_TEST(t.err(t.convs.async_get_user_conversations(5, "", 0, 10)) == invalid);
    BOOST_TEST(t.err(t.convs.async_get_user_conversations(5, "patient", -1, 10)) == invalid);
    BOOST_TEST(t.err(t.convs.async_get_user_conversations(5, "patient", 0, 0)) == invalid);
    BOOST_TEST(t.err(t.convs.async_get_user_conversations(5, "patient", 0, 501)) == invalid);
    BOOST_TEST(t.err(t.convs.async_archive("")) == invalid);
    BOOST_TEST(t.err(t.convs.async_get_conversation("")) == invalid);
    BOOST_TEST(t.err(t.convs.async_add_participant("", UserRef("medecin", 1))) == invalid);
    BOOST_TEST(t.err(t.convs.async_add_participant("c", UserRef("", 1))) == invalid);
    if constexpr (!BackendFixture<B>::is_cluster) BOOST_TEST(t.f.ok(cmd::dbsize{}) == 0);
    BOOST_TEST(t.ok(t.store.async_get_storage_stats()).conversations == 0);
  });
}

BOOST_AUTO_TEST_SUITE_END()
