// MessageStore on MemoryBackend, FakeBackend, RedisBackend and ClusterBackend: seed 004's JSON
// fixture (msg_123, conv_456) round-tripping through JsonCodec; storing with the seed's keys and
// TTL; pages newest first, offsets that shift and cursors that do not while messages arrive
// (ties included); expired messages never in a page, pages still full, pruning in batches;
// read positions; edits and deletions keeping cursor pages stable; storage statistics; the
// unread fan-out with UnreadMessageManager (all or nothing with the message); a participant
// added after the cache was filled; bad input with nothing written.
//
// Every case runs on each backend in its default layout (ClusterBackend: clustered; the others:
// plain) and on the in-process backends again in the clustered layout with
// MemoryConfig::cluster_checks (every script declares every key it touches).
#include "support/backends.hpp"
#include "support/layout_modes.hpp"

#include <rediskit/codec/json_codec.hpp>
#include <rediskit/services/conversation_manager.hpp>
#include <rediskit/services/message_store.hpp>
#include <rediskit/services/unread_message_manager.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace rediskit;
using boost::system::error_code;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
using rediskit::test::for_each_mode;
using rediskit::test::Mode;
using rediskit::test::mode_fixture;
using rediskit::test::with_mode_layout;
using namespace std::chrono_literals;

namespace {

using rediskit::test::invalid;

// Seed 004's example objects, exactly as the seed gives them (the timestamps included).
constexpr char const* kSeedMessage =
    R"({"id":"msg_123","conversationId":"conv_456","sender":{"type":"patient","id":5,"nom":"MOLOWA","prenom":"ESSONGA"},"content":"Bonjour docteur...","timestamp":"2025-01-25T...","isRead":false})";
constexpr char const* kSeedConversation =
    R"({"id":"conv_456","type":"ordonnance","contextId":"15","participants":{"medecin":{"id":79,"nom":"Sakura","prenom":"Saza"},"patient":{"id":5,"nom":"MOLOWA","prenom":"ESSONGA"}},"status":"active","lastActivity":"2025-01-25T..."})";

using rediskit::test::now_ms;

template <class B>
struct Msgs {
  explicit Msgs(Mode mode, MessageStoreOptions o = {}, bool with_unread = false)
      : f(mode_fixture<B>(mode)),
        unread(f.backend, with_mode_layout(mode, UnreadOptions{})),
        convs(f.backend, with_mode_layout(mode, ConversationOptions{})),
        store(f.backend, with_mode_layout(mode, std::move(o)), with_unread ? &unread : nullptr),
        base(now_ms() + 60 * 1000) {}  // after the conversations' creation

  template <class Op>
  auto ok(Op&& op) {
    return f.value(std::forward<Op>(op));
  }
  template <class Op>
  error_code err(Op&& op) {
    return f.error(std::forward<Op>(op));
  }

  std::string conversation(std::string const& ctx, std::int64_t medecin = 79,
                           std::int64_t patient = 5) {
    NewConversation req("ordonnance", ctx, ParticipantInfo(medecin, "Sakura", "Saza"),
                        ParticipantInfo(patient, "MOLOWA", "ESSONGA"), "Ordonnance #" + ctx);
    return ok(convs.async_create_conversation(req)).conversation.id;
  }

  /// A message at base + `at` seconds.
  ChatMessage message(std::string const& conv, std::string const& id, std::int64_t at,
                      std::string const& type = "patient", std::int64_t who = 5) {
    ChatMessage m;
    m.id = id;
    m.conversationId = conv;
    m.sender = MessageSender(type, who, "N", "P");
    m.content = "content of " + id;
    m.timestamp = format_iso8601_ms(base + at * 1000);
    return m;
  }
  ChatMessage put(std::string const& conv, std::string const& id, std::int64_t at,
                  std::string const& type = "patient", std::int64_t who = 5) {
    ChatMessage const m = message(conv, id, at, type, who);
    return ok(store.async_store_message(m));
  }

  std::vector<std::string> ids(std::vector<ChatMessage> const& page) {
    std::vector<std::string> out;
    for (auto const& m : page)
      out.push_back(m.id);
    return out;
  }
  std::vector<std::string> offset_page(std::string const& conv, std::int64_t limit,
                                       std::int64_t offset) {
    return ids(ok(store.async_get_conversation_messages(conv, limit, offset)));
  }
  std::vector<std::string> before(std::string const& conv, MessageCursor const& c,
                                  std::int64_t limit) {
    return ids(ok(store.async_get_messages_before(conv, c, limit)));
  }
  std::vector<std::string> after(std::string const& conv, MessageCursor const& c,
                                 std::int64_t limit) {
    return ids(ok(store.async_get_messages_after(conv, c, limit)));
  }
  MessageCursor cursor(std::string const& id, std::int64_t at) {
    return MessageCursor(base + at * 1000, id);
  }
  std::int64_t unread_of(std::string const& conv, std::string const& user) {
    return ok(unread.async_get_conversation_unread_count(conv, user));
  }

  BackendFixture<B> f;
  UnreadMessageManager<B> unread;
  ConversationManager<B> convs;
  MessageStore<B> store;
  std::int64_t base;
};

using V = std::vector<std::string>;

}  // namespace

BOOST_AUTO_TEST_SUITE(message_store)

BOOST_AUTO_TEST_CASE(seed_004_fixture_round_trips_through_json_codec) {
  JsonCodec codec;
  ChatMessage m;
  BOOST_TEST_REQUIRE(!codec.decode(kSeedMessage, m, nullptr));
  BOOST_TEST(m.id == "msg_123");
  BOOST_TEST(m.conversationId == "conv_456");
  BOOST_TEST(m.sender.type == "patient");
  BOOST_TEST(m.sender.id == 5);
  BOOST_TEST(m.sender.nom == "MOLOWA");
  BOOST_TEST(m.sender.prenom == "ESSONGA");
  BOOST_TEST(m.content == "Bonjour docteur...");
  BOOST_TEST(m.timestamp == "2025-01-25T...");
  BOOST_TEST(!m.isRead);
  std::string bytes;
  codec.encode(m, bytes);
  BOOST_TEST(bytes == kSeedMessage);
  BOOST_TEST(boost::json::parse(bytes) == boost::json::parse(kSeedMessage));

  Conversation c;
  BOOST_TEST_REQUIRE(!codec.decode(kSeedConversation, c, nullptr));
  BOOST_TEST(c.id == "conv_456");
  BOOST_TEST(c.type == "ordonnance");
  BOOST_TEST(c.contextId == "15");
  BOOST_TEST(c.participants.medecin.id == 79);
  BOOST_TEST(c.participants.medecin.nom == "Sakura");
  BOOST_TEST(c.participants.patient.prenom == "ESSONGA");
  BOOST_TEST(c.status == "active");
  BOOST_TEST(c.lastActivity == "2025-01-25T...");
  bytes.clear();
  codec.encode(c, bytes);
  BOOST_TEST(bytes == kSeedConversation);
  BOOST_TEST(boost::json::parse(bytes) == boost::json::parse(kSeedConversation));
}

BOOST_AUTO_TEST_CASE(iso8601_timestamps_parse_and_format_as_javascript_does) {
  BOOST_TEST(parse_iso8601_ms("1970-01-01T00:00:00.000Z").value_or(-1) == 0);
  BOOST_TEST(parse_iso8601_ms("2025-01-25T10:00:00.000Z").value_or(-1) == 1737799200000);
  BOOST_TEST(parse_iso8601_ms("2025-01-25T10:00:00Z").value_or(-1) == 1737799200000);
  BOOST_TEST(parse_iso8601_ms("2025-01-25T11:00:00.5+01:00").value_or(-1) == 1737799200500);
  BOOST_TEST(!parse_iso8601_ms("2025-01-25T...").has_value());
  BOOST_TEST(!parse_iso8601_ms("").has_value());
  BOOST_TEST(!parse_iso8601_ms("2025-13-25T10:00:00Z").has_value());
  BOOST_TEST(format_iso8601_ms(1737799200123) == "2025-01-25T10:00:00.123Z");
  BOOST_TEST(format_iso8601_ms(0) == "1970-01-01T00:00:00.000Z");
  for (std::int64_t ms : {951782400000LL, 1709164800999LL, 4102444800000LL})  // leap days, 2100
    BOOST_TEST(parse_iso8601_ms(format_iso8601_ms(ms)).value_or(-1) == ms);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(stores_with_seed_keys_ttl_and_activity, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Msgs<B> t(mode);
    std::string const conv = t.conversation("15");
    ChatMessage const stored = t.put(conv, "msg_1", 10);
    BOOST_TEST(stored.id == "msg_1");
    BOOST_TEST(!stored.isRead);
    auto const& k = t.store.keys();
    if (t.store.key_layout() == KeyLayout::plain) {
      BOOST_TEST(k.message("msg_1") == "messaging:message:msg_1");
      BOOST_TEST(k.index(conv) == "messaging:conversation:" + conv + ":messages");
      BOOST_TEST(k.user_conversations("patient", 5) == "messaging:user:patient:5:conversations");
    } else {
      BOOST_TEST(k.message("msg_1") == "{messaging}:messaging:message:msg_1");
      BOOST_TEST(cluster::key_slot(k.index(conv)) == cluster::key_slot("messaging"));
    }
    // The message hash: the codec's bytes, with the seed's 30-day TTL.
    auto const data = t.f.ok(cmd::hget{k.message("msg_1"), "data"});
    BOOST_TEST_REQUIRE(data.has_value());
    ChatMessage decoded;
    BOOST_TEST(!JsonCodec{}.decode(*data, decoded, nullptr));
    BOOST_TEST(decoded.content == "content of msg_1");
    auto const ttl = t.f.ok(cmd::pttl{k.message("msg_1")});
    BOOST_TEST(ttl > std::int64_t(29) * 24 * 3600 * 1000);
    BOOST_TEST(ttl <= std::int64_t(30) * 24 * 3600 * 1000);
    BOOST_TEST(t.f.ok(cmd::zscore{k.index(conv), "msg_1"}).value_or(0) == double(t.base + 10000));
    // lastActivity moved, and so did both participants' indexes.
    auto const c = t.ok(t.convs.async_get_conversation(conv));
    BOOST_TEST_REQUIRE(c.has_value());
    BOOST_TEST(c->lastActivity == stored.timestamp);
    for (auto const& user : {std::string("patient:5"), std::string("medecin:79")})
      BOOST_TEST(t.f.ok(cmd::zscore{k.user_conversations(user), conv}).value_or(0) ==
                 double(t.base + 10000));
    // An older message does not move lastActivity back.
    t.put(conv, "msg_0", 5);
    BOOST_TEST(t.ok(t.convs.async_get_conversation(conv))->lastActivity == stored.timestamp);
    // An empty timestamp becomes now.
    ChatMessage m = t.message(conv, "msg_now", 0);
    m.timestamp.clear();
    auto const before_ms = now_ms();
    ChatMessage const now = t.ok(t.store.async_store_message(m));
    BOOST_TEST(parse_iso8601_ms(now.timestamp).value_or(0) >= before_ms);
    BOOST_TEST((t.offset_page(conv, 10, 0) == V{"msg_1", "msg_0", "msg_now"}));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(cursors_stay_stable_while_messages_arrive_offsets_shift, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Msgs<B> t(mode);
    std::string const conv = t.conversation("c");
    for (int i = 1; i <= 10; ++i)
      t.put(conv, "m" + std::to_string(i + 10), i);  // m11..m20
    BOOST_TEST((t.offset_page(conv, 3, 0) == V{"m20", "m19", "m18"}));
    auto const c = t.cursor("m18", 8);
    BOOST_TEST((t.before(conv, c, 3) == V{"m17", "m16", "m15"}));
    // Two messages arrive: the offset page shifts, the cursor page does not.
    t.put(conv, "m21", 11);
    t.put(conv, "m22", 12);
    BOOST_TEST((t.offset_page(conv, 3, 3) == V{"m19", "m18", "m17"}));
    BOOST_TEST((t.before(conv, c, 3) == V{"m17", "m16", "m15"}));
    // A message arriving in the past lands in its place.
    t.put(conv, "m15b", 5);
    BOOST_TEST((t.before(conv, c, 3) == V{"m17", "m16", "m15b"}));
    // After: the messages just newer, newest first.
    BOOST_TEST((t.after(conv, t.cursor("m13", 3), 3) == V{"m15b", "m15", "m14"}));
    BOOST_TEST((t.after(conv, t.cursor("m20", 10), 10) == V{"m22", "m21"}));
    BOOST_TEST(t.before(conv, t.cursor("m11", 1), 10).empty());
    BOOST_TEST(t.offset_page(conv, 5, 100).empty());
    BOOST_TEST(t.offset_page(conv, 5, std::numeric_limits<std::int64_t>::max()).empty());
    // Ties: equal timestamps are ordered by id, and a cursor inside a tie splits it.
    std::string const tie = t.conversation("tie");
    for (auto id : {"t-c", "t-a", "t-e", "t-b", "t-d"})
      t.put(tie, id, 50);
    t.put(tie, "u-old", 49);
    t.put(tie, "u-new", 51);
    BOOST_TEST(
        (t.offset_page(tie, 10, 0) == V{"u-new", "t-e", "t-d", "t-c", "t-b", "t-a", "u-old"}));
    BOOST_TEST((t.before(tie, t.cursor("t-c", 50), 2) == V{"t-b", "t-a"}));
    BOOST_TEST((t.before(tie, t.cursor("t-c", 50), 10) == V{"t-b", "t-a", "u-old"}));
    BOOST_TEST((t.after(tie, t.cursor("t-c", 50), 2) == V{"t-e", "t-d"}));
    BOOST_TEST((t.after(tie, t.cursor("t-c", 50), 10) == V{"u-new", "t-e", "t-d"}));
    // Walking the whole conversation by cursor pages sees every message once.
    std::vector<std::string> walked;
    auto page = t.ok(t.store.async_get_conversation_messages(tie, 2, 0));
    while (!page.empty()) {
      for (auto const& m : page)
        walked.push_back(m.id);
      page =
          t.ok(t.store.async_get_messages_before(tie, MessageStore<B>::cursor_of(page.back()), 2));
    }
    BOOST_TEST((walked == V{"u-new", "t-e", "t-d", "t-c", "t-b", "t-a", "u-old"}));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(expired_messages_are_never_in_a_page_and_pages_stay_full, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Msgs<B> t(mode);
    MessageStoreOptions short_lived;
    short_lived.message_ttl = 200ms;
    MessageStore<B> brief(t.f.backend, with_mode_layout(mode, short_lived));
    std::string const conv = t.conversation("exp");
    // Interleaved: e* expire, k* are kept.
    for (int i = 1; i <= 12; ++i) {
      std::string const id = (i % 2 ? "e" : "k") + std::to_string(100 + i);
      ChatMessage const m = t.message(conv, id, i);
      if (i % 2)
        t.ok(brief.async_store_message(m));
      else
        t.ok(t.store.async_store_message(m));
    }
    BOOST_TEST(t.ok(t.store.async_get_storage_stats()).messages == 12);
    t.f.advance(400ms);
    // The index still holds the expired ids; a page skips them and is still full.
    BOOST_TEST(t.f.ok(cmd::zcard{t.store.keys().index(conv)}) == 12);
    BOOST_TEST((t.offset_page(conv, 4, 0) == V{"k112", "k110", "k108", "k106"}));
    BOOST_TEST((t.before(conv, t.cursor("k106", 6), 5) == V{"k104", "k102"}));
    BOOST_TEST((t.after(conv, t.cursor("k102", 2), 2) == V{"k106", "k104"}));
    // What a page met was pruned from the index and counted out.
    BOOST_TEST(t.f.ok(cmd::zcard{t.store.keys().index(conv)}) == 6);
    BOOST_TEST(t.ok(t.store.async_get_storage_stats()).messages == 6);
    BOOST_TEST((t.offset_page(conv, 50, 0) == V{"k112", "k110", "k108", "k106", "k104", "k102"}));

    // async_prune_expired: bounded batches from the oldest end.
    std::string const other = t.conversation("exp2");
    for (int i = 1; i <= 7; ++i) {
      ChatMessage const m = t.message(other, "x" + std::to_string(i), i);
      t.ok(brief.async_store_message(m));
    }
    t.put(other, "live", 20);
    t.f.advance(400ms);
    BOOST_TEST(t.ok(t.store.async_prune_expired(other, 3)) == 3u);
    BOOST_TEST(t.f.ok(cmd::zcard{t.store.keys().index(other)}) == 5);
    BOOST_TEST(t.ok(t.store.async_prune_expired(other, 10)) == 4u);
    BOOST_TEST(t.ok(t.store.async_prune_expired(other, 10)) == 0u);
    BOOST_TEST(t.f.ok(cmd::zcard{t.store.keys().index(other)}) == 1);
    BOOST_TEST(t.ok(t.store.async_get_storage_stats()).messages == 7);
    BOOST_TEST(t.err(t.store.async_prune_expired(other, 0)) == invalid);

    // An id whose message expired (still indexed) may be stored again: counted once.
    std::string const again = t.conversation("again");
    ChatMessage const first = t.message(again, "same", 1);
    t.ok(brief.async_store_message(first));
    std::int64_t const counted = t.ok(t.store.async_get_storage_stats()).messages;
    t.f.advance(400ms);
    t.put(again, "same", 2);
    BOOST_TEST(t.ok(t.store.async_get_storage_stats()).messages == counted);
    auto const page = t.ok(t.store.async_get_conversation_messages(again, 10, 0));
    BOOST_TEST_REQUIRE(page.size() == 1u);
    BOOST_TEST(page[0].timestamp == t.message(again, "same", 2).timestamp);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(mark_read_moves_forward_and_shows_in_pages, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Msgs<B> t(mode);
    std::string const conv = t.conversation("r");
    t.put(conv, "a1", 1, "patient", 5);
    t.put(conv, "a2", 2, "medecin", 79);
    t.put(conv, "a3", 3, "patient", 5);
    auto read_flags = [&] {
      std::vector<bool> out;
      for (auto const& m : t.ok(t.store.async_get_conversation_messages(conv, 10, 0)))
        out.push_back(m.isRead);
      return out;  // a3, a2, a1
    };
    BOOST_TEST((read_flags() == std::vector<bool>{false, false, false}));
    UserRef const doctor("medecin", 79), patient("patient", 5);
    BOOST_TEST(t.ok(t.store.async_mark_read(conv, doctor, "a1")));
    BOOST_TEST((read_flags() == std::vector<bool>{false, false, true}));
    // Backwards or the same: no move.
    BOOST_TEST(!t.ok(t.store.async_mark_read(conv, doctor, "a1")));
    BOOST_TEST(t.ok(t.store.async_mark_read(conv, doctor, "a3")));
    // a2 is the doctor's own: read by the doctor does not make it read.
    BOOST_TEST((read_flags() == std::vector<bool>{true, false, true}));
    BOOST_TEST(!t.ok(t.store.async_mark_read(conv, doctor, "a2")));
    BOOST_TEST(t.ok(t.store.async_mark_read(conv, patient, "a2")));
    BOOST_TEST((read_flags() == std::vector<bool>{true, true, true}));
    BOOST_TEST(t.err(t.store.async_mark_read(conv, doctor, "nope")) == invalid);
    BOOST_TEST(t.err(t.store.async_mark_read(conv, doctor, "")) == invalid);
    BOOST_TEST(t.err(t.store.async_mark_read("", doctor, "a1")) == invalid);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(edits_and_deletions_keep_pages_stable, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Msgs<B> t(mode);
    std::string const conv = t.conversation("ed");
    for (int i = 1; i <= 6; ++i)
      t.put(conv, "d" + std::to_string(i), i);
    auto const c4 = t.cursor("d4", 4);
    BOOST_TEST((t.before(conv, c4, 3) == V{"d3", "d2", "d1"}));
    BOOST_TEST(t.ok(t.store.async_edit(conv, "d2", "edited")));
    auto page = t.ok(t.store.async_get_messages_before(conv, c4, 3));
    BOOST_TEST_REQUIRE(page.size() == 3u);
    BOOST_TEST(page[1].content == "edited");
    BOOST_TEST(page[0].content == "content of d3");
    BOOST_TEST(page[1].timestamp == t.message(conv, "d2", 2).timestamp);
    // Editing a message of another conversation, or none, changes nothing.
    std::string const other = t.conversation("other");
    BOOST_TEST(!t.ok(t.store.async_edit(other, "d2", "x")));
    BOOST_TEST(!t.ok(t.store.async_edit(conv, "zz", "x")));
    BOOST_TEST(t.ok(t.store.async_delete(conv, "d3")));
    BOOST_TEST(!t.ok(t.store.async_delete(conv, "d3")));
    BOOST_TEST((t.before(conv, c4, 3) == V{"d2", "d1"}));
    // Deleting the cursor's own message: the cursor still names its place.
    BOOST_TEST(t.ok(t.store.async_delete(conv, "d4")));
    BOOST_TEST((t.before(conv, c4, 3) == V{"d2", "d1"}));
    BOOST_TEST((t.after(conv, c4, 3) == V{"d6", "d5"}));
    BOOST_TEST((t.offset_page(conv, 10, 0) == V{"d6", "d5", "d2", "d1"}));
    BOOST_TEST(t.f.ok(cmd::exists{.keys = t.store.keys().message("d3")}) == 0);
    BOOST_TEST(t.ok(t.store.async_get_storage_stats()).messages == 4);
    BOOST_TEST(t.err(t.store.async_edit(conv, "d1", std::string(70000, 'x'))) == invalid);
    BOOST_TEST(t.err(t.store.async_delete(conv, "")) == invalid);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(storage_stats_are_counters, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Msgs<B> t(mode);
    StorageStats s = t.ok(t.store.async_get_storage_stats());
    BOOST_TEST(s.messages == 0);
    BOOST_TEST(s.conversations == 0);
    BOOST_TEST(s.oldest_ms == 0);
    std::string const a = t.conversation("a"), b = t.conversation("b");
    t.put(a, "s1", 100);
    t.put(a, "s2", 30);
    t.put(b, "s3", 200);
    s = t.ok(t.store.async_get_storage_stats());
    BOOST_TEST(s.messages == 3);
    BOOST_TEST(s.conversations == 2);
    BOOST_TEST(s.oldest_ms == t.base + 30000);
    BOOST_TEST(s.newest_ms == t.base + 200000);
    BOOST_TEST(s.bytes_estimate > 3 * 60);  // each message's JSON is over 60 bytes
    BOOST_TEST(s.bytes_estimate < 3 * 400);
    t.ok(t.store.async_delete(a, "s1"));
    auto const s2 = t.ok(t.store.async_get_storage_stats());
    BOOST_TEST(s2.messages == 2);
    BOOST_TEST(s2.bytes_estimate < s.bytes_estimate);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(unread_counts_move_with_the_message, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Msgs<B> t(mode, {}, true);
    std::string const conv = t.conversation("u");
    t.put(conv, "n1", 1, "patient", 5);
    BOOST_TEST(t.unread_of(conv, "medecin:79") == 1);
    BOOST_TEST(t.unread_of(conv, "patient:5") == 0);
    t.put(conv, "n2", 2, "patient", 5);
    t.put(conv, "n3", 3, "medecin", 79);
    BOOST_TEST(t.unread_of(conv, "medecin:79") == 2);
    BOOST_TEST(t.unread_of(conv, "patient:5") == 1);
    BOOST_TEST(t.ok(t.unread.async_get_user_total_unread("medecin:79")) == 2);
    // A store that fails (a duplicate id) bumps nothing.
    ChatMessage const dup = t.message(conv, "n1", 9, "patient", 5);
    BOOST_TEST(t.err(t.store.async_store_message(dup)) == invalid);
    BOOST_TEST(t.unread_of(conv, "medecin:79") == 2);
    // Reading clears the reader's count.
    BOOST_TEST(t.ok(t.store.async_mark_read(conv, UserRef("medecin", 79), "n2")));
    BOOST_TEST(t.unread_of(conv, "medecin:79") == 0);
    BOOST_TEST(t.unread_of(conv, "patient:5") == 1);
    if (t.store.key_layout() == KeyLayout::plain) {
      // Seed 000's unread key layout, written by the store script itself.
      BOOST_TEST(t.f.ok(cmd::hget{"unread:user_unread:patient:5", conv}).value_or("") == "1");
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_participant_added_later_is_indexed_by_the_next_message, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Msgs<B> t(mode, {}, true);
    std::string const conv = t.conversation("p");
    t.put(conv, "p1", 1);  // the store caches {medecin:79, patient:5}
    BOOST_TEST(t.ok(t.convs.async_add_participant(conv, UserRef("medecin", 80))));
    t.put(conv, "p2", 2);  // the cache is stale: the script says so, the store tries again
    auto const& k = t.store.keys();
    BOOST_TEST(t.f.ok(cmd::zscore{k.user_conversations("medecin:80"), conv}).value_or(0) ==
               double(t.base + 2000));
    BOOST_TEST(t.unread_of(conv, "medecin:80") == 1);
    BOOST_TEST(t.unread_of(conv, "medecin:79") == 2);
    // A sender who left cannot post.
    BOOST_TEST(t.ok(t.convs.async_remove_participant(conv, UserRef("medecin", 80))));
    ChatMessage const m = t.message(conv, "p3", 3, "medecin", 80);
    BOOST_TEST(t.err(t.store.async_store_message(m)) == invalid);
    BOOST_TEST((t.offset_page(conv, 10, 0) == V{"p2", "p1"}));
  });
}

// Stores made at once share script calls (MessageStore coalesces them): each caller still gets
// its own answer, a server error in one message's commands (here a conversation whose index
// key holds a string) fails that message only, and the stats count what was stored.
BOOST_AUTO_TEST_CASE_TEMPLATE(concurrent_stores_each_get_their_own_answer, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Msgs<B> t(mode, {}, true);
    std::string const a = t.conversation("ca"), b = t.conversation("cb"), c = t.conversation("cc");
    t.put(a, "w1", 1);  // every participant set is cached: the stores below go at once
    t.put(b, "w2", 1);
    t.put(c, "w3", 1);
    std::string const bad_index = t.store.keys().index(c);
    t.f.ok(cmd::del{bad_index});
    t.f.ok(cmd::set{.key = bad_index, .value = "not a sorted set"});
    constexpr int n = 150;  // over two batches of 64 once the first two calls are on their way
    std::vector<std::optional<error_code>> got(n);
    std::vector<error_code> want(n);
    std::vector<ChatMessage> msgs;
    for (int i = 0; i < n; ++i) {
      std::string const id = "c" + std::to_string(i);
      if (i % 10 == 3) {
        msgs.push_back(t.message(c, id, 2 + i));  // its index key is a string
        want[i] = make_error_code(Error::wrong_type);
      } else if (i % 10 == 7) {
        msgs.push_back(t.message(a, "w1", 2 + i));  // already stored
        want[i] = invalid;
      } else if (i == 42) {
        msgs.push_back(t.message(b, id, 2 + i, "patient", 6));  // not a participant
        want[i] = invalid;
      } else {
        msgs.push_back(t.message(i % 2 ? a : b, id, 2 + i));
      }
    }
    for (int i = 0; i < n; ++i)
      t.store.async_store_message(msgs[i], [&got, i](error_code ec, ChatMessage) { got[i] = ec; });
    t.f.run_until([&] {
      return std::all_of(got.begin(), got.end(), [](auto const& g) { return g.has_value(); });
    });
    int stored = 0;
    for (int i = 0; i < n; ++i) {
      BOOST_TEST_CONTEXT("store " << i) {
        BOOST_TEST(*got[i] == want[i], got[i]->message());
      }
      stored += !want[i];
    }
    BOOST_TEST(stored == 150 - 15 - 15 - 1);
    auto const in_a = t.offset_page(a, 500, 0), in_b = t.offset_page(b, 500, 0);
    BOOST_TEST(static_cast<int>(in_a.size() + in_b.size()) == stored + 2);
    BOOST_TEST(in_a.front() == "c149");  // the newest, and lastActivity followed it
    BOOST_TEST(t.ok(t.store.async_get_storage_stats()).messages == stored + 3);
    BOOST_TEST(t.unread_of(a, "medecin:79") == static_cast<std::int64_t>(in_a.size()));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_is_refused_with_nothing_written, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Msgs<B> t(mode, {}, true);
    std::string const conv = t.conversation("bad");
    t.put(conv, "ok1", 1);
    auto const card = [&] { return t.f.ok(cmd::zcard{t.store.keys().index(conv)}); };
    auto const stored = [&] { return t.ok(t.store.async_get_storage_stats()).messages; };
    std::int64_t dbsize = 0;
    if constexpr (!BackendFixture<B>::is_cluster) dbsize = t.f.ok(cmd::dbsize{});
    auto refuse = [&](ChatMessage const& m, std::string const& why) {
      BOOST_TEST_CONTEXT(why) {
        if (!why.empty())
          BOOST_TEST(t.store.why_invalid(m).find(why) != std::string::npos, t.store.why_invalid(m));
        BOOST_TEST(t.err(t.store.async_store_message(m)) == invalid);
      }
    };
    ChatMessage m = t.message(conv, "", 2);
    refuse(m, "message id is empty");
    m = t.message("", "x1", 2);
    refuse(m, "conversation id is empty");
    m = t.message(conv, std::string(300, 'i'), 2);
    refuse(m, "over 256 bytes");
    m = t.message(conv, "x2", 2);
    m.content.assign(t.store.options().max_content_bytes + 1, 'c');
    refuse(m, "over the limit of 65536");
    m = t.message(conv, "x3", 2);
    m.timestamp = "2025-01-25T...";
    refuse(m, "not ISO-8601");
    m = t.message(conv, "x4", 2);
    m.sender.type.clear();
    refuse(m, "no type");
    m = t.message("conv_nope", "x5", 2);  // no such conversation
    refuse(m, "");
    m = t.message(conv, "x6", 2, "patient", 6);  // not a participant
    refuse(m, "");
    m = t.message(conv, "ok1", 2);  // already stored
    refuse(m, "");
    // The largest content accepted is accepted.
    m = t.message(conv, "x7", 2);
    m.content.assign(t.store.options().max_content_bytes, 'c');
    BOOST_TEST(t.store.why_invalid(m).empty());
    BOOST_TEST(t.err(t.store.async_get_conversation_messages(conv, 0, 0)) == invalid);
    BOOST_TEST(t.err(t.store.async_get_conversation_messages(conv, 501, 0)) == invalid);
    BOOST_TEST(t.err(t.store.async_get_conversation_messages(conv, 10, -1)) == invalid);
    BOOST_TEST(t.err(t.store.async_get_conversation_messages("", 10, 0)) == invalid);
    BOOST_TEST(t.err(t.store.async_get_messages_before(conv, t.cursor("ok1", 1), 0)) == invalid);
    BOOST_TEST(card() == 1);
    BOOST_TEST(stored() == 1);
    BOOST_TEST(t.unread_of(conv, "medecin:79") == 1);
    if constexpr (!BackendFixture<B>::is_cluster) BOOST_TEST(t.f.ok(cmd::dbsize{}) == dbsize);
  });
}

BOOST_AUTO_TEST_SUITE_END()
