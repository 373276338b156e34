// NotificationService on MemoryBackend, FakeBackend, RedisBackend and ClusterBackend: publish +
// history + paging by cursor; read marks and exact unread counts by priority; the 7-day
// retention on the manual clock; the bounded history; live delivery to several users through
// one subscriber, unsubscribe by handle and by destruction; resuming from a cursor; the
// no-gap / no-duplicate catch-up after lost messages (a killed subscriber connection on Redis,
// an overflowing subscriber queue on Fake); notify_new_message skipping the sender; the
// resource-update and suggestion-vote channels; bad input.
#include "support/backends.hpp"

#include <rediskit/services/notification_service.hpp>

#include <boost/describe/class.hpp>
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using boost::system::error_code;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;

namespace {

using rediskit::test::invalid;

struct ResourceUpdate {
  std::string resource;
  std::string action;
  std::int64_t version = 0;
};
BOOST_DESCRIBE_STRUCT(ResourceUpdate, (), (resource, action, version))

struct VoteEvent {
  std::string suggestion;
  std::int64_t up = 0, down = 0, score = 0;
  std::string user;
  std::int64_t vote = 0;
};
BOOST_DESCRIBE_STRUCT(VoteEvent, (), (suggestion, up, down, score, user, vote))

/// The one handler type of the suite: appends what it is given.
struct Recorder {
  std::vector<Notification>* out;
  void operator()(Notification const& n) const { out->push_back(n); }
};

/// Completion of a fire-and-forget notify (counts them).
struct Counted {
  int* done;
  void operator()(error_code, std::string) const { ++*done; }
};

template <class B>
BackendFixture<B> make_fixture(MemoryConfig mc) {
  if constexpr (BackendFixture<B>::on_server) {
    (void)mc;
    return BackendFixture<B>();
  } else {
    return BackendFixture<B>(std::in_place, mc);
  }
}

/// A service on a fresh database of B, and synchronous helpers.
template <class B>
struct Notes {
  explicit Notes(NotificationOptions o = {}, MemoryConfig mc = {})
      : f(make_fixture<B>(mc)), svc(f.backend, std::move(o)) {}

  std::string notify(std::string const& user, std::string title,
                     NotificationPriority p = NotificationPriority::medium,
                     NotificationType t = NotificationType::status_change) {
    Notification const n(t, p, std::move(title), "body", "{\"k\":1}");
    auto [ec, id] = f.wait(svc.async_notify(user, n));
    BOOST_REQUIRE_MESSAGE(!ec, "notify: " << ec.message());
    return id;
  }
  NotificationPage history(std::string const& user, std::string const& cursor = "",
                           std::int64_t count = 100) {
    auto [ec, page] = f.wait(svc.async_get_history(user, cursor, count));
    BOOST_REQUIRE_MESSAGE(!ec, "history: " << ec.message());
    return page;
  }
  UnreadCounts counts(std::string const& user) {
    auto [ec, c] = f.wait(svc.async_get_unread_counts(user));
    BOOST_REQUIRE_MESSAGE(!ec, "counts: " << ec.message());
    return c;
  }
  std::int64_t mark(std::string const& user, std::vector<std::string> const& ids) {
    auto [ec, n] = f.wait(svc.async_mark_read(user, ids));
    BOOST_REQUIRE_MESSAGE(!ec, "mark: " << ec.message());
    return n;
  }
  NotificationSubscription subscribe(std::string const& user, std::vector<Notification>& out,
                                     std::string const& since = "") {
    auto [ec, s] = f.wait(svc.async_subscribe(user, since, Recorder{&out}));
    BOOST_REQUIRE_MESSAGE(!ec, "subscribe: " << ec.message());
    BOOST_TEST(s.active());
    return std::move(s);
  }
  void wait_for(std::vector<Notification> const& got, std::size_t n,
                std::chrono::milliseconds limit = 10s) {
    f.run_until([&] { return got.size() >= n; }, limit);
  }
  /// Lets the io_context run for `d` of real time (late deliveries would show).
  void settle(std::chrono::milliseconds d = 100ms) {
    auto const until = std::chrono::steady_clock::now() + d;
    f.run_until([&] { return std::chrono::steady_clock::now() >= until; });
  }
  std::vector<std::string> ids_of(std::string const& user) {
    std::vector<std::string> ids;
    std::string cursor;
    for (;;) {
      auto p = history(user, cursor, 50);
      for (auto& n : p.items)
        ids.push_back(n.id);
      if (p.next_cursor.empty()) return ids;
      cursor = p.next_cursor;
    }
  }

  BackendFixture<B> f;
  NotificationService<B> svc;
};

std::vector<std::string> ids(std::vector<Notification> const& ns) {
  std::vector<std::string> out;
  for (auto const& n : ns)
    out.push_back(n.id);
  return out;
}

bool increasing(std::vector<std::string> const& ids) {
  for (std::size_t i = 1; i < ids.size(); ++i)
    if (!(*StreamId::parse(ids[i - 1]) < *StreamId::parse(ids[i]))) return false;
  return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(notification_service)

BOOST_AUTO_TEST_CASE_TEMPLATE(notify_appends_to_history_and_pages_by_cursor, B, AllBackends) {
  Notes<B> t;
  std::vector<std::string> sent;
  for (int i = 0; i < 5; ++i)
    sent.push_back(t.notify("u1", "n" + std::to_string(i), NotificationPriority::high,
                            NotificationType::new_conversation));
  std::string const other = t.notify("u2", "other");
  BOOST_TEST(increasing(sent));

  auto p1 = t.history("u1", "", 2);
  BOOST_TEST_REQUIRE(p1.items.size() == 2u);
  BOOST_TEST(p1.items[0].id == sent[0]);
  BOOST_TEST(p1.next_cursor == sent[1]);
  auto const& n = p1.items[0];
  BOOST_TEST(n.title == "n0");
  BOOST_TEST(n.body == "body");
  BOOST_TEST(n.data == "{\"k\":1}");
  BOOST_TEST(n.user_id == "u1");
  BOOST_TEST((n.type == NotificationType::new_conversation));
  BOOST_TEST((n.priority == NotificationPriority::high));
  BOOST_TEST(!n.read);
  BOOST_TEST(n.created_at_ms == static_cast<std::int64_t>(StreamId::parse(n.id)->ms));
  BOOST_TEST(n.created_at_ms > 1'600'000'000'000);

  auto p2 = t.history("u1", p1.next_cursor, 2);
  BOOST_TEST_REQUIRE(p2.items.size() == 2u);
  BOOST_TEST(p2.items[0].id == sent[2]);
  auto p3 = t.history("u1", p2.next_cursor, 2);
  BOOST_TEST_REQUIRE(p3.items.size() == 1u);
  BOOST_TEST(p3.items[0].id == sent[4]);
  BOOST_TEST(p3.next_cursor.empty());
  BOOST_TEST(t.ids_of("u1") == sent);
  BOOST_TEST(t.history("u1", sent[4]).items.empty());

  auto p4 = t.history("u2");
  BOOST_TEST_REQUIRE(p4.items.size() == 1u);
  BOOST_TEST(p4.items[0].id == other);
  BOOST_TEST(t.history("nobody").items.empty());

  // Seed 004's 7 days: both keys of a user carry the retention as their TTL.
  auto ttl = t.f.ok(cmd::pttl{t.svc.history_key("u1")});
  using ms = std::chrono::milliseconds;
  BOOST_TEST(ttl > ms(7 * 24h - 1min).count());
  BOOST_TEST(ttl <= ms(7 * 24h).count());
  BOOST_TEST(t.f.ok(cmd::pttl{t.svc.unread_key("u1")}) > ms(7 * 24h - 1min).count());
  if constexpr (BackendFixture<B>::is_cluster) {
    BOOST_TEST(t.svc.history_key("u1") == "notifications:history:{u1}");
  } else {
    BOOST_TEST(t.svc.history_key("u1") == "notifications:history:u1");
  }
  BOOST_TEST(t.svc.user_channel("u1") == "notifications:u1");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(mark_read_keeps_exact_unread_counts_by_priority, B, AllBackends) {
  Notes<B> t;
  auto const h1 = t.notify("u1", "h1", NotificationPriority::high);
  auto const h2 = t.notify("u1", "h2", NotificationPriority::high);
  auto const m1 = t.notify("u1", "m1", NotificationPriority::medium);
  auto const l1 = t.notify("u1", "l1", NotificationPriority::low);
  t.notify("u1", "l2", NotificationPriority::low);
  t.notify("u1", "l3", NotificationPriority::low);
  BOOST_TEST((t.counts("u1") == UnreadCounts{2, 1, 3}));
  BOOST_TEST(t.counts("u1").total() == 6);

  // Ids read already, listed twice, or unknown are not counted.
  BOOST_TEST(t.mark("u1", {h1, l1, l1, "1-0"}) == 2);
  BOOST_TEST((t.counts("u1") == UnreadCounts{1, 1, 2}));
  BOOST_TEST(t.mark("u1", {h1}) == 0);
  BOOST_TEST((t.counts("u1") == UnreadCounts{1, 1, 2}));

  auto page = t.history("u1");
  BOOST_TEST_REQUIRE(page.items.size() == 6u);
  BOOST_TEST(page.items[0].read);
  BOOST_TEST(!page.items[1].read);
  BOOST_TEST(page.items[3].read);
  BOOST_TEST(!page.items[4].read);

  auto [ec, all] = t.f.wait(t.svc.async_mark_all_read("u1"));
  BOOST_TEST(!ec);
  BOOST_TEST(all == 4);
  BOOST_TEST((t.counts("u1") == UnreadCounts{}));
  for (auto const& n : t.history("u1").items)
    BOOST_TEST(n.read);
  // A new one after that counts again.
  t.notify("u1", "m2", NotificationPriority::medium);
  BOOST_TEST((t.counts("u1") == UnreadCounts{0, 1, 0}));
  BOOST_TEST((t.counts("nobody") == UnreadCounts{}));
  (void)h2;
  (void)m1;
}

BOOST_AUTO_TEST_CASE(history_keeps_seven_days_on_the_manual_clock) {
  Notes<FakeBackend> t;
  auto const a = t.notify("u1", "a", NotificationPriority::high);
  t.f.advance(4 * 24h);
  auto const b = t.notify("u1", "b", NotificationPriority::low);
  BOOST_TEST((t.counts("u1") == UnreadCounts{1, 0, 1}));
  t.f.advance(3 * 24h + 1ms);  // a is 7 days and 1 ms old, b 3 days
  BOOST_TEST((t.counts("u1") == UnreadCounts{0, 0, 1}));
  BOOST_TEST(t.ids_of("u1") == std::vector<std::string>{b});
  t.f.advance(4 * 24h);  // 7 days after the last write: the keys are gone
  BOOST_TEST(t.f.ok(cmd::exists{.keys = {t.svc.history_key("u1"), t.svc.unread_key("u1")}}) == 0);
  BOOST_TEST(t.history("u1").items.empty());
  BOOST_TEST((t.counts("u1") == UnreadCounts{}));
  // Ids stay monotonic after the keys expired: an old id is still a valid cursor.
  auto const c = t.notify("u1", "c");
  BOOST_TEST(increasing({a, b, c}));
  BOOST_TEST(t.ids_of("u1") == std::vector<std::string>{c});
  BOOST_TEST(t.history("u1", b).items.size() == 1u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(history_is_bounded_and_counts_follow_the_trim, B, AllBackends) {
  NotificationOptions o;
  o.max_history = 3;
  Notes<B> t(o);
  std::vector<std::string> sent;
  for (int i = 0; i < 7; ++i)
    sent.push_back(t.notify("u1", "n", i % 2 ? NotificationPriority::high
                                              : NotificationPriority::low));
  auto const kept = t.ids_of("u1");
  BOOST_TEST(kept == std::vector<std::string>(sent.end() - 3, sent.end()));
  BOOST_TEST(t.f.ok(cmd::xlen{t.svc.history_key("u1")}) == 3);
  // sent[4] (low), sent[5] (high), sent[6] (low) remain unread
  BOOST_TEST((t.counts("u1") == UnreadCounts{1, 0, 2}));
  BOOST_TEST(t.mark("u1", {sent[0], sent[5]}) == 1);  // sent[0] was trimmed
  BOOST_TEST((t.counts("u1") == UnreadCounts{0, 0, 2}));
  // The unread hash holds the unread kept ids only, and "high", "low", "last".
  BOOST_TEST(t.f.ok(cmd::hlen{t.svc.unread_key("u1")}) == 2 + 3);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(one_subscriber_delivers_to_every_user_until_unsubscribed, B,
                              AllBackends) {
  Notes<B> t;
  std::vector<Notification> a1, a2, b, c;
  auto s1 = t.subscribe("a", a1);
  auto s2 = t.subscribe("a", a2);  // two handlers of one user
  auto sb = t.subscribe("b", b);
  std::optional<NotificationSubscription> sc(t.subscribe("c", c));
  BOOST_TEST(t.svc.subscribed_users() == 3u);
  if constexpr (!BackendFixture<B>::on_server) BOOST_TEST(t.f.backend.stats().subscribers == 1u);

  std::vector<std::string> sent_a;
  for (int i = 0; i < 3; ++i)
    sent_a.push_back(t.notify("a", "a" + std::to_string(i)));
  auto const sent_b = t.notify("b", "b0");
  auto const sent_c = t.notify("c", "c0");
  t.wait_for(a1, 3);
  t.wait_for(a2, 3);
  t.wait_for(b, 1);
  t.wait_for(c, 1);
  BOOST_TEST(ids(a1) == sent_a);
  BOOST_TEST(ids(a2) == sent_a);
  BOOST_TEST(a1[0].title == "a0");
  BOOST_TEST(a1[0].user_id == "a");
  BOOST_TEST(b.at(0).id == sent_b);
  BOOST_TEST(c.at(0).id == sent_c);
  BOOST_TEST(s1.last_id() == sent_a.back());

  s2.unsubscribe();  // by handle
  BOOST_TEST(!s2.active());
  sb.unsubscribe();
  sc.reset();  // by destruction
  BOOST_TEST(t.svc.subscribed_users() == 1u);
  t.notify("b", "b1");
  t.notify("c", "c1");
  auto const last_a = t.notify("a", "a3");
  t.wait_for(a1, 4);
  t.settle();
  BOOST_TEST(a1.back().id == last_a);
  BOOST_TEST(a1.size() == 4u);
  BOOST_TEST(a2.size() == 3u);
  BOOST_TEST(b.size() == 1u);
  BOOST_TEST(c.size() == 1u);
  auto const st = t.svc.stats();
  BOOST_TEST(st.delivered == 9u);
  BOOST_TEST(st.lost == 0u);
  if constexpr (!BackendFixture<B>::on_server) BOOST_TEST(t.f.backend.stats().subscribers == 1u);

  // A user subscribed again after its last handler left.
  std::vector<Notification> b2;
  auto sb2 = t.subscribe("b", b2);
  auto const b3 = t.notify("b", "b2");
  t.wait_for(b2, 1);
  BOOST_TEST(b2.at(0).id == b3);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(subscribe_since_a_cursor_catches_up_first, B, AllBackends) {
  Notes<B> t;
  std::vector<std::string> sent;
  for (int i = 0; i < 4; ++i)
    sent.push_back(t.notify("u1", "n" + std::to_string(i), NotificationPriority::low));
  t.mark("u1", {sent[1]});
  std::vector<Notification> got;
  auto s = t.subscribe("u1", got, sent[0]);
  t.wait_for(got, 3);
  sent.push_back(t.notify("u1", "live"));
  t.wait_for(got, 4);
  t.settle();
  BOOST_TEST(ids(got) == std::vector<std::string>(sent.begin() + 1, sent.end()));
  BOOST_TEST(got.at(0).read);  // from the history, with its mark
  BOOST_TEST(!got.at(1).read);
  BOOST_TEST(t.svc.stats().recovered == 3u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(notify_new_message_skips_the_sender, B, AllBackends) {
  Notes<B> t;
  std::vector<Notification> live;
  auto s = t.subscribe("bob", live);
  NotifyMessage const m("m1", "conv1", "ann", std::string(300, 'x'));
  NotifyConversation const conv("conv1", {"ann", "bob", "cat", "bob"});
  auto [ec, n] = t.f.wait(t.svc.async_notify_new_message(m, conv));
  BOOST_TEST(!ec);
  BOOST_TEST(n == 2);
  BOOST_TEST(t.history("ann").items.empty());
  for (std::string const user : {"bob", "cat"}) {
    auto p = t.history(user);
    BOOST_TEST_REQUIRE(p.items.size() == 1u);
    auto const& x = p.items[0];
    BOOST_TEST((x.type == NotificationType::new_message));
    BOOST_TEST((x.priority == NotificationPriority::high));
    BOOST_TEST(x.sender_id == "ann");
    BOOST_TEST(x.conversation_id == "conv1");
    BOOST_TEST(x.message_id == "m1");
    BOOST_TEST(x.user_id == user);
    BOOST_TEST(x.body.size() == 140u);
    BOOST_TEST((t.counts(user) == UnreadCounts{1, 0, 0}));
  }
  t.wait_for(live, 1);
  BOOST_TEST(live.at(0).sender_id == "ann");
  // Nobody but the sender: nothing to do.
  NotifyConversation const alone("conv2", {"ann"});
  auto [ec2, n2] = t.f.wait(t.svc.async_notify_new_message(m, alone));
  BOOST_TEST(!ec2);
  BOOST_TEST(n2 == 0);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(resource_updates_and_votes_use_seed_002_channels, B, AllBackends) {
  Notes<B> t;
  auto sub = t.f.backend.make_subscriber();
  std::vector<std::string_view> const channels{"resource:updates:r7", "suggestions:votes"};
  auto [sec] = t.f.wait(sub.async_subscribe(channels));
  BOOST_REQUIRE(!sec);
  ResourceUpdate const u{"r7", "edited", 3};
  auto [ec1, n1] = t.f.wait(t.svc.async_publish_resource_update("r7", u));
  BOOST_TEST(!ec1);
  VoteEvent const v{"s1", 5, 1, 4, "u9", 1};
  auto [ec2, n2] = t.f.wait(t.svc.async_publish_suggestion_vote(v));
  BOOST_TEST(!ec2);
  if constexpr (!BackendFixture<B>::is_cluster) {
    BOOST_TEST(n1 == 1);
    BOOST_TEST(n2 == 1);
  }
  auto [r1, m1] = t.f.wait(sub.async_receive());
  auto [r2, m2] = t.f.wait(sub.async_receive());
  BOOST_TEST(!r1);
  BOOST_TEST(!r2);
  BOOST_TEST(m1.channel == "resource:updates:r7");
  BOOST_TEST(m2.channel == "suggestions:votes");
  JsonCodec const json;
  ResourceUpdate gu;
  BOOST_TEST(!json.decode(m1.payload, gu, nullptr));
  BOOST_TEST(gu.action == "edited");
  BOOST_TEST(gu.version == 3);
  VoteEvent gv;
  BOOST_TEST(!json.decode(m2.payload, gv, nullptr));
  BOOST_TEST(gv.score == 4);
  BOOST_TEST(gv.user == "u9");
  BOOST_TEST(t.svc.resource_channel("r7") == "resource:updates:r7");
  BOOST_TEST(t.svc.suggestion_votes_channel() == "suggestions:votes");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(live_message_is_json_with_id_and_prev, B, AllBackends) {
  Notes<B> t;
  auto sub = t.f.backend.make_subscriber();
  auto [sec] = t.f.wait(sub.async_subscribe(t.svc.user_channel("u1")));
  BOOST_REQUIRE(!sec);
  auto const a = t.notify("u1", "a");
  auto const b = t.notify("u1", "b");
  auto [r1, m1] = t.f.wait(sub.async_receive());
  auto [r2, m2] = t.f.wait(sub.async_receive());
  BOOST_TEST(!r1);
  BOOST_TEST(!r2);
  BOOST_TEST(m1.channel == "notifications:u1");
  BOOST_TEST(m1.payload.starts_with(R"({"id":")" + a + R"(","prev":"0-0","notification":{)"));
  BOOST_TEST(m2.payload.starts_with(R"({"id":")" + b + R"(","prev":")" + a + "\""));
  auto const jv = boost::json::parse(m2.payload);  // valid JSON for a Node subscriber
  BOOST_TEST(jv.as_object().at("notification").as_object().at("title").as_string() == "b");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(clustered_layout_keeps_each_script_in_one_slot, B,
                              rediskit::test::InProcessBackends) {
  // Cluster's key rules in process: every script's keys in one slot, and declared.
  NotificationOptions o;
  o.key_layout = KeyLayout::clustered;
  Notes<B> t(o, MemoryConfig{.cluster_checks = true});
  for (std::string const user : {"u1", "we}ird"}) {
    BOOST_TEST(cluster::key_slot(t.svc.history_key(user)) ==
               cluster::key_slot(t.svc.unread_key(user)));
    std::vector<Notification> got;
    auto s = t.subscribe(user, got);
    auto const a = t.notify(user, "a", NotificationPriority::high);
    auto const b = t.notify(user, "b", NotificationPriority::low);
    t.wait_for(got, 2);
    BOOST_TEST(ids(got) == (std::vector<std::string>{a, b}));
    BOOST_TEST(t.mark(user, {a}) == 1);
    BOOST_TEST((t.counts(user) == UnreadCounts{0, 0, 1}));
    BOOST_TEST(t.ids_of(user) == (std::vector<std::string>{a, b}));
  }
  BOOST_TEST(t.svc.history_key("u1") == "notifications:history:{u1}");
  BOOST_TEST(t.svc.user_channel("we}ird") == "notifications:we}ird");
  NotifyMessage const m("m1", "c1", "u1", "hi");
  NotifyConversation const conv("c1", {"u1", "u2", "u3"});
  auto [ec, n] = t.f.wait(t.svc.async_notify_new_message(m, conv));
  BOOST_TEST(!ec);
  BOOST_TEST(n == 2);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_is_invalid_argument_and_never_inline, B, AllBackends) {
  Notes<B> t;
  Notification const n(NotificationType::status_change, NotificationPriority::low, "x");
  int done = 0;
  t.svc.async_notify("", n, Counted{&done});
  BOOST_TEST(done == 0);  // never inside the initiating call
  t.f.run_until([&] { return done == 1; });

  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_notify("", n))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_get_history("", "", 10))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_get_history("u", "abc", 10))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_get_history("u", "(1-0", 10))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_get_history("u", "", 0))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_get_history("u", "", 10001))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_mark_read("u", "last"))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_mark_read("u", std::vector<std::string>{}))) ==
             invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_mark_read("", "1-0"))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_mark_all_read(""))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_get_unread_counts(""))) == invalid);
  ResourceUpdate const u{"r", "a", 1};
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_publish_resource_update("", u))) == invalid);
  NotifyMessage const m("m", "", "ann");
  NotifyConversation const no_id("", {"ann", "bob"});
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_notify_new_message(m, no_id))) == invalid);
  NotifyConversation const empty_member("c", {"ann", ""});
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_notify_new_message(m, empty_member))) == invalid);
  std::vector<Notification> got;
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_subscribe("", Recorder{&got}))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_subscribe("u", "x", Recorder{&got}))) == invalid);
  BOOST_TEST(std::get<0>(t.f.wait(t.svc.async_subscribe("u", NotificationHandler{}))) == invalid);
  // Options that cannot work.
  NotificationOptions o;
  o.max_history = 0;
  NotificationService<B> bad(t.f.backend, o);
  BOOST_TEST(std::get<0>(t.f.wait(bad.async_notify("u", n))) == invalid);
  // Nothing was written.
  BOOST_TEST(t.history("u").items.empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_live_message_that_skips_ids_is_preceded_by_the_history, B,
                              AllBackends) {
  // A writer whose PUBLISH this dispatcher never sees (another channel prefix, the same
  // history): the next live message's "prev" is not the last id delivered.
  Notes<B> t;
  NotificationOptions quiet;
  quiet.channel_prefix = "elsewhere";
  NotificationService<B> other(t.f.backend, quiet);
  std::vector<Notification> got;
  auto s = t.subscribe("u1", got);
  std::vector<std::string> sent{t.notify("u1", "a")};
  t.wait_for(got, 1);
  for (int i = 0; i < 3; ++i) {
    Notification const n(NotificationType::status_change, NotificationPriority::low, "missed");
    auto [ec, id] = t.f.wait(other.async_notify("u1", n));
    BOOST_REQUIRE(!ec);
    sent.push_back(id);
  }
  sent.push_back(t.notify("u1", "b"));
  t.wait_for(got, 5);
  t.settle();
  BOOST_TEST(ids(got) == sent);
  BOOST_TEST(got.at(1).title == "missed");
  auto const st = t.svc.stats();
  BOOST_TEST(st.catch_ups == 1u);
  BOOST_TEST(st.recovered == 4u);  // the three missed and "b" (read with them)
  BOOST_TEST(st.duplicates == 1u);  // "b" live, after the history gave it
  BOOST_TEST(st.resyncs == 0u);
}

BOOST_AUTO_TEST_CASE(catch_up_after_a_subscriber_queue_overflow_on_fake) {
  // The Fake backend's subscriber keeps 4 messages; a burst of 40 publishes loses most of them
  // (Error::pushes_dropped), and the dispatcher reads them from the history.
  Notes<FakeBackend> t({}, MemoryConfig{.max_queued_messages = 4});
  std::vector<Notification> a, b;
  auto sa = t.subscribe("a", a);
  auto sb = t.subscribe("b", b);
  std::vector<std::string> sent_a, sent_b;
  int done = 0;
  for (int round = 0; round < 3; ++round) {
    // Started without waiting: each runs (and publishes) at once.
    for (int i = 0; i < 20; ++i) {
      Notification const n(NotificationType::status_change, NotificationPriority::low,
                           std::to_string(i));
      t.svc.async_notify(i % 2 ? "a" : "b", n, Counted{&done});
    }
    t.f.run_until([&] { return done == 20 * (round + 1); });
    // While the link is down nothing is written and nothing is lost.
    t.f.backend.drop_connection();
    Notification const lost(NotificationType::status_change, NotificationPriority::low, "no");
    auto [ec, id] = t.f.wait(t.svc.async_notify("a", lost));
    BOOST_TEST(ec == make_error_code(Error::not_connected));
    t.f.backend.restore_connection();
  }
  sent_a = t.ids_of("a");
  sent_b = t.ids_of("b");
  BOOST_TEST_REQUIRE(sent_a.size() == 30u);
  BOOST_TEST_REQUIRE(sent_b.size() == 30u);
  t.wait_for(a, 30);
  t.wait_for(b, 30);
  t.settle();
  BOOST_TEST(ids(a) == sent_a);  // every one, once, in order
  BOOST_TEST(ids(b) == sent_b);
  auto const st = t.svc.stats();
  BOOST_TEST(st.resyncs >= 1u);
  BOOST_TEST(st.recovered >= 1u);
  BOOST_TEST(st.lost == 0u);
  BOOST_TEST(st.delivered == 60u);
}

// The subscriber's link drops while notifications go on (FakeBackend::drop_subscribers, as a
// CLIENT KILL of the pubsub connection): they are lost to pub/sub, and when the link is back
// the subscriber says so (Error::resubscribed) and the dispatcher reads them from the history,
// before any later one, each once.
BOOST_AUTO_TEST_CASE(catch_up_after_the_subscriber_link_drops_on_fake) {
  Notes<FakeBackend> t;
  std::vector<Notification> a;
  auto sa = t.subscribe("a", a);
  auto notify = [&](int i) {
    Notification const n(NotificationType::new_message, NotificationPriority::medium,
                         std::to_string(i));
    auto [ec, id] = t.f.wait(t.svc.async_notify("a", n));
    BOOST_REQUIRE(!ec);
  };
  for (int i = 0; i < 3; ++i)
    notify(i);
  t.wait_for(a, 3);
  t.f.backend.drop_subscribers();
  for (int i = 3; i < 8; ++i)
    notify(i);  // written to the history, published to nobody
  t.settle();
  BOOST_TEST(a.size() == 3u);  // nothing arrived meanwhile
  t.f.backend.restore_connection();
  t.wait_for(a, 8);  // no new notification needed: the report itself starts the catch-up
  notify(8);
  t.wait_for(a, 9);
  t.settle();
  BOOST_TEST(ids(a) == t.ids_of("a"));  // every one, once, in order
  auto const st = t.svc.stats();
  BOOST_TEST(st.resyncs == 1u);
  BOOST_TEST(st.recovered == 5u);
  BOOST_TEST(st.lost == 0u);
}

namespace {

/// The id of the pubsub connection named `name` on the test server ("" if none).
std::string pubsub_client_id(std::string const& name) {
  auto const list =
      rediskit::test::detail::inline_command(rediskit::test::shared_redis_port(), "CLIENT LIST TYPE pubsub");
  std::istringstream in(list);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" name=" + name + " ") == std::string::npos) continue;
    auto const at = line.find("id=");
    if (at != 0) continue;
    return line.substr(3, line.find(' ') - 3);
  }
  return {};
}

}  // namespace

BOOST_AUTO_TEST_CASE(catch_up_after_a_killed_subscriber_connection_on_redis) {
  std::string const name = "rediskit-notify-test-" + std::to_string(::getpid());
  RedisConfig cfg;
  cfg.port = rediskit::test::shared_redis_port();
  cfg.database = rediskit::test::test_db();
  cfg.client_name = name;
  BackendFixture<RedisBackend> f(std::in_place, cfg);
  f.ok(cmd::flushdb{});
  NotificationOptions o;
  o.catch_up_page = 7;  // several pages per catch-up
  NotificationService<RedisBackend> svc(f.backend, o);
  std::vector<Notification> a, b;
  std::vector<NotificationSubscription> subs;
  for (auto [user, out] : {std::pair{"a", &a}, std::pair{"b", &b}}) {
    auto [ec, s] = f.wait(svc.async_subscribe(user, Recorder{out}));
    BOOST_REQUIRE(!ec);
    subs.push_back(std::move(s));
  }
  std::string const id = pubsub_client_id(name);
  BOOST_REQUIRE_MESSAGE(!id.empty(), "the dispatcher's pubsub connection is not listed");

  int kills = 0;
  for (int i = 0; i < 300; ++i) {
    if (i == 60 || i == 180 || i == 299) {  // the last one right before the final notification
      std::string now;
      f.run_until([&] { return !(now = pubsub_client_id(name)).empty(); });  // reconnected
      auto const r = rediskit::test::detail::inline_command(rediskit::test::shared_redis_port(),
                                                    "CLIENT KILL ID " + now);
      BOOST_TEST(r == ":1");
      ++kills;
    }
    Notification const n(NotificationType::new_message, NotificationPriority::medium,
                         std::to_string(i));
    auto [ec, nid] = f.wait(svc.async_notify(i % 2 ? "a" : "b", n));
    BOOST_REQUIRE(!ec);
  }
  NotificationService<RedisBackend> reader(f.backend);
  auto all = [&](std::string const& user) {
    std::vector<std::string> out;
    std::string cursor;
    for (;;) {
      auto [ec, p] = f.wait(reader.async_get_history(user, cursor, 100));
      BOOST_REQUIRE(!ec);
      for (auto& n : p.items)
        out.push_back(n.id);
      if (p.next_cursor.empty()) return out;
      cursor = p.next_cursor;
    }
  };
  auto const sent_a = all("a"), sent_b = all("b");
  BOOST_TEST_REQUIRE(sent_a.size() == 150u);
  BOOST_TEST_REQUIRE(sent_b.size() == 150u);
  f.run_until([&] { return a.size() >= 150 && b.size() >= 150; }, 15s);
  auto const until = std::chrono::steady_clock::now() + 300ms;
  f.run_until([&] { return std::chrono::steady_clock::now() >= until; });
  BOOST_TEST(ids(a) == sent_a);  // every one, once, in order
  BOOST_TEST(ids(b) == sent_b);
  auto const st = svc.stats();
  BOOST_TEST(kills == 3);
  BOOST_TEST(st.resyncs >= 1u);  // kills close together may be seen as one reconnection
  BOOST_TEST(st.lost == 0u);
  BOOST_TEST(st.delivered == 300u);
  BOOST_TEST_MESSAGE("recovered from the history: " << st.recovered << ", duplicates dropped: "
                                                    << st.duplicates << ", catch-ups: "
                                                    << st.catch_ups);
  BOOST_TEST(st.recovered >= 1u);
}

BOOST_AUTO_TEST_SUITE_END()
