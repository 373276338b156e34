// UnreadMessageManager on MemoryBackend, FakeBackend, RedisBackend and ClusterBackend:
// counters, clamping, fan-out, totals under concurrency, expiry, recalculation (its three
// forms, its errors, its races with writes), bad input and connection loss; the fan-out per
// hash slot and what a failed slot group leaves.
//
// Every case runs on each backend in its default layout (ClusterBackend: clustered; the others:
// plain), then again on MemoryBackend and FakeBackend in the clustered layout with
// MemoryConfig::cluster_checks, where a cross-slot command or a script that touches a key it
// did not declare fails as on a cluster. The second run is a run-time parameter (Mode), not a
// type: it adds no template instantiation.
#include "support/backends.hpp"
#include "support/layout_modes.hpp"

#include <rediskit/services/unread_message_manager.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;
using boost::system::error_code;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;
using rediskit::test::Mode;
using rediskit::test::for_each_mode;
using rediskit::test::mode_fixture;
using rediskit::test::with_mode_layout;
using rediskit::test::InProcessBackends;
namespace asio = boost::asio;

namespace {


template <class B>
struct Unread {
  explicit Unread(Mode mode, UnreadOptions o = {})
      : f(mode_fixture<B>(mode)), m(f.backend, with_mode_layout(mode, std::move(o))) {}


  /// Runs a deferred operation that must succeed; its value.
  template <class Op>
  std::int64_t ok(Op&& op) {
    auto [ec, v] = f.wait(std::forward<Op>(op));
    BOOST_REQUIRE_MESSAGE(!ec, "unexpected error: " << ec.message());
    return v;
  }
  /// Runs a deferred operation; its error.
  template <class Op>
  error_code err(Op&& op) {
    auto [ec, v] = f.wait(std::forward<Op>(op));
    BOOST_TEST(v == 0);
    return ec;
  }
  std::int64_t count(std::string_view conv, std::string_view user) {
    return ok(m.async_get_conversation_unread_count(conv, user));
  }
  std::int64_t total(std::string_view user) { return ok(m.async_get_user_total_unread(user)); }

  /// total == the sum of `convs`' counts for `user`.
  void check_total_is_sum(std::string_view user, std::vector<std::string> const& convs) {
    std::int64_t sum = 0;
    for (auto const& c : convs)
      sum += count(c, user);
    BOOST_TEST(total(user) == sum);
  }

  /// How many scripts a fan-out to `users` runs: one, or one per hash slot of their keys.
  std::size_t groups(std::vector<std::string> const& users) const {
    if (m.key_layout() == KeyLayout::plain) return 1;
    std::set<std::uint16_t> slots;
    for (auto const& user : users)
      slots.insert(cluster::key_slot(m.user_key(user)));
    return slots.size();
  }

  BackendFixture<B> f;
  UnreadMessageManager<B> m;
};

using rediskit::test::invalid;

std::vector<std::string> names(char const* prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i)
    out.push_back(prefix + std::to_string(i));
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unread_message_manager)

BOOST_AUTO_TEST_CASE_TEMPLATE(increments_are_counted_per_conversation_in_seed_layout, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    BOOST_TEST(u.ok(u.m.async_increment_unread("c1", "u1", 1)) == 1);
    BOOST_TEST(u.ok(u.m.async_increment_unread("c1", "u1", 4)) == 5);
    BOOST_TEST(u.ok(u.m.async_increment_unread("c2", "u1", 2)) == 2);
    BOOST_TEST(u.ok(u.m.async_increment_unread("c1", "u2", 3)) == 3);
    BOOST_TEST(u.count("c1", "u1") == 5);
    BOOST_TEST(u.count("c2", "u1") == 2);
    BOOST_TEST(u.count("c3", "u1") == 0);
    BOOST_TEST(u.count("c1", "nobody") == 0);
    BOOST_TEST(u.total("u1") == 7);
    BOOST_TEST(u.total("u2") == 3);
    BOOST_TEST(u.total("nobody") == 0);
    if constexpr (BackendFixture<B>::is_fake) {  // a total is one script on one key: no scan
      u.f.backend.clear_log();
      BOOST_TEST(u.total("u1") == 7);
      auto const log = u.f.backend.command_log();
      BOOST_TEST_REQUIRE(log.size() == 1u);
      BOOST_TEST(log[0][0] == "EVALSHA");
      BOOST_TEST(log[0][2] == "1");  // numkeys
      BOOST_TEST(log[0][3] == "unread:user_unread:u1");
    }
    // Seed 000's prefixes: unread:user_unread:<user>, one field per conversation; the same
    // names in the clustered layout.
    bool const clustered = mode == Mode::clustered_checked || BackendFixture<B>::is_cluster;
    BOOST_TEST((u.m.key_layout() == (clustered ? KeyLayout::clustered : KeyLayout::plain)));
    BOOST_TEST(u.m.user_key("u1") == "unread:user_unread:u1");
    BOOST_TEST(*u.f.ok(cmd::hget{"unread:user_unread:u1", "c1"}) == "5");
    BOOST_TEST(*u.f.ok(cmd::hget{"unread:user_unread:u1", "c2"}) == "2");
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(options_choose_the_keys, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode, UnreadOptions{.key_prefix = "", .user_unread_prefix = "badges"});
    BOOST_TEST(u.ok(u.m.async_increment_unread("c", "u", 2)) == 2);
    BOOST_TEST(u.m.user_key("u") == "badges:u");
    BOOST_TEST(*u.f.ok(cmd::hget{"badges:u", "c"}) == "2");
    BOOST_TEST(u.f.ok(cmd::dbsize{}) == 1);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(decrements_clamp_at_zero_and_drop_the_counter, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    u.ok(u.m.async_increment_unread("c1", "u1", 3));
    BOOST_TEST(u.ok(u.m.async_decrement_unread("c1", "u1", 2)) == 1);
    BOOST_TEST(u.ok(u.m.async_decrement_unread("c1", "u1", 5)) == 0);
    BOOST_TEST(u.count("c1", "u1") == 0);
    BOOST_TEST(!u.f.ok(cmd::hexists{u.m.user_key("u1"), "c1"}));
    BOOST_TEST(u.ok(u.m.async_decrement_unread("c1", "u1", 1)) == 0);  // nothing to take
    BOOST_TEST(u.ok(u.m.async_decrement_unread("never", "u9", 1)) == 0);
    BOOST_TEST(u.count("never", "u9") == 0);
    u.ok(u.m.async_increment_unread("c1", "u1", 2));
    BOOST_TEST(u.ok(u.m.async_decrement_unread("c1", "u1", 2)) == 0);  // exactly to zero
    BOOST_TEST(u.total("u1") == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(mark_read_clears_one_conversation_and_returns_what_it_cleared, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    u.ok(u.m.async_increment_unread("c1", "u1", 4));
    u.ok(u.m.async_increment_unread("c2", "u1", 1));
    BOOST_TEST(u.ok(u.m.async_mark_conversation_read("c1", "u1")) == 4);
    BOOST_TEST(u.count("c1", "u1") == 0);
    BOOST_TEST(u.count("c2", "u1") == 1);
    BOOST_TEST(u.total("u1") == 1);
    BOOST_TEST(u.ok(u.m.async_mark_conversation_read("c1", "u1")) == 0);
    BOOST_TEST(u.ok(u.m.async_mark_conversation_read("c9", "u9")) == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(user_ids_are_data_not_patterns, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    u.ok(u.m.async_increment_unread("c", "*", 1));
    u.ok(u.m.async_increment_unread("c", "a", 2));
    u.ok(u.m.async_increment_unread("c", "a:b", 4));
    BOOST_TEST(u.total("*") == 1);
    BOOST_TEST(u.total("a") == 2);
    BOOST_TEST(u.total("a:b") == 4);
    BOOST_TEST(u.ok(u.m.async_mark_conversation_read("c", "*")) == 1);
    BOOST_TEST(u.total("a") == 2);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(fan_out_counts_every_participant_but_the_sender, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    std::vector<std::string> members{"alice", "bob", "carol", "dave", "bob"};
    if constexpr (BackendFixture<B>::is_fake) u.f.backend.clear_log();
    BOOST_TEST(u.ok(u.m.async_increment_unread_for_recipients("c1", "alice", members, 1)) == 3);
    if constexpr (BackendFixture<B>::is_fake) {
      // Plain: one script for all of them; clustered: one per slot. Nothing else.
      auto const scripts = u.groups({"bob", "carol", "dave"});
      BOOST_TEST(u.f.backend.command_log().size() == scripts);
      BOOST_TEST(u.f.backend.count_in_log("EVALSHA") == scripts);
    }
    BOOST_TEST(u.count("c1", "alice") == 0);
    BOOST_TEST(u.count("c1", "bob") == 1);  // listed twice, counted once
    BOOST_TEST(u.count("c1", "carol") == 1);
    BOOST_TEST(u.count("c1", "dave") == 1);
    BOOST_TEST(u.ok(u.m.async_increment_unread_for_recipients("c1", "bob", members, 2)) == 3);
    BOOST_TEST(u.count("c1", "alice") == 2);
    BOOST_TEST(u.count("c1", "bob") == 1);
    BOOST_TEST(u.count("c1", "carol") == 3);
    // No sender (a system message): everyone. A sender outside the list: everyone too.
    BOOST_TEST(u.ok(u.m.async_increment_unread_for_recipients("c2", "", {"x", "y"}, 1)) == 2);
    BOOST_TEST(u.ok(u.m.async_increment_unread_for_recipients("c2", "z", {"x", "y"}, 1)) == 2);
    BOOST_TEST(u.count("c2", "x") == 2);
    BOOST_TEST(u.total("carol") == 3);
    // Only the sender: nothing to do, no round trip.
    if constexpr (BackendFixture<B>::is_fake) u.f.backend.clear_log();
    BOOST_TEST(u.ok(u.m.async_increment_unread_for_recipients("c1", "alice", {"alice"}, 1)) == 0);
    BOOST_TEST(u.ok(u.m.async_increment_unread_for_recipients("c1", "alice", {}, 1)) == 0);
    if constexpr (BackendFixture<B>::is_fake) BOOST_TEST(u.f.backend.command_log().empty());
  });
}

// The clustered fan-out, on every backend (a single node takes it too: one code path): one
// script per hash slot, each declaring exactly its recipients' keys, in one operation.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_clustered_fan_out_runs_one_script_per_slot, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode, UnreadOptions{.key_layout = KeyLayout::clustered});
    // 40 users spread over the slots, and a team whose ids share a hash tag (one slot).
    auto users = names("user", 40);
    std::vector<std::string> const team{"{team}ann", "{team}bea", "{team}cat"};
    users.insert(users.end(), team.begin(), team.end());
    auto const scripts = u.groups({users.begin() + 1, users.end()});  // user0 sends
    BOOST_TEST(scripts > 3u);
    BOOST_TEST(scripts <= 40u);
    if constexpr (BackendFixture<B>::is_fake) u.f.backend.clear_log();
    BOOST_TEST(u.ok(u.m.async_increment_unread_for_recipients("c1", "user0", users, 2)) == 42);
    if constexpr (BackendFixture<B>::is_fake) {
      auto const log = u.f.backend.command_log();
      BOOST_TEST(log.size() == scripts);
      std::set<std::uint16_t> slots;
      std::size_t keys = 0;
      for (auto const& argv : log) {
        BOOST_TEST_REQUIRE(argv.size() > 3u);
        BOOST_TEST(argv[0] == "EVALSHA");
        std::size_t const numkeys = std::stoul(argv[2]);
        BOOST_TEST_REQUIRE(argv.size() == 3 + numkeys + 3);  // the keys; conversation, n, ttl
        auto const slot = cluster::key_slot(argv[3]);
        for (std::size_t k = 0; k < numkeys; ++k)
          BOOST_TEST(cluster::key_slot(argv[3 + k]) == slot);
        BOOST_TEST(slots.insert(slot).second);  // one script per slot
        if (argv[3] == u.m.user_key(team[0])) BOOST_TEST(numkeys == team.size());
        keys += numkeys;
      }
      BOOST_TEST(keys == 42u);
      // One operation: a fault on the next operation takes all of it, and nothing runs.
      u.f.backend.fail_next(1, Error::connection_lost);
      BOOST_TEST(u.err(u.m.async_increment_unread_for_recipients("c1", "", users, 1)) ==
                 make_error_code(Error::connection_lost));
    }
    for (auto const& user : users) {
      BOOST_TEST(u.count("c1", user) == (user == "user0" ? 0 : 2), user);
      BOOST_TEST(u.total(user) == (user == "user0" ? 0 : 2), user);
    }
  });
}

// A slot group that fails (here: a key of another type) leaves the other groups counted, and
// the operation says how many; in the plain layout, the one script counts nobody. Plain across
// slots is refused where cluster rules apply.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_failed_slot_group_leaves_the_other_groups_counted, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    for (auto const layout : {KeyLayout::clustered, KeyLayout::plain}) {
      BOOST_TEST_CONTEXT("layout " << (layout == KeyLayout::plain ? "plain" : "clustered")) {
        Unread<B> u(mode, UnreadOptions{.key_layout = layout});
        // "bad" and "{g}zz" are strings; "{g}ok" shares "{g}zz"'s slot and comes first in its
        // script (keys in order), as "a" and "b" do in the plain layout's one script: they are
        // added to, then put back. The others are fine.
        std::vector<std::string> const users{"a", "b", "bad", "c", "{g}zz", "{g}ok", "d"};
        BOOST_TEST(u.f.ok(cmd::set{.key = u.m.user_key("bad"), .value = "x"}));
        BOOST_TEST(u.f.ok(cmd::set{.key = u.m.user_key("{g}zz"), .value = "x"}));
        u.ok(u.m.async_increment_unread("c0", "{g}ok", 1));
        auto const version = u.f.ok(cmd::hget{u.m.user_key("{g}ok"), ""});
        auto [ec, counted] =
            u.f.wait(u.m.async_increment_unread_for_recipients("c1", "", users, 1));
        bool const refused =  // plain across slots, where the cluster's rules apply
            layout == KeyLayout::plain &&
            (mode == Mode::clustered_checked || BackendFixture<B>::is_cluster);
        std::vector<std::string> const good{"a", "b", "c", "d"};
        if (refused) {
          BOOST_TEST(ec == make_error_code(Error::cross_slot));
          BOOST_TEST(counted == 0);
        } else if (layout == KeyLayout::plain) {  // one script: all or nothing
          BOOST_TEST(ec == make_error_code(Error::wrong_type));
          BOOST_TEST(counted == 0);
        } else {  // per slot: every group but the two that hold a string
          BOOST_TEST(ec == make_error_code(Error::wrong_type));
          BOOST_TEST(counted == 4);
        }
        bool const others_counted = !refused && layout == KeyLayout::clustered;
        for (auto const& user : good) {
          BOOST_TEST(u.count("c1", user) == (others_counted ? 1 : 0), user);
          BOOST_TEST(u.f.ok(cmd::exists{u.m.user_key(user)}) == (others_counted ? 1 : 0), user);
        }
        // The group that failed changed nothing, not even the version of its good key.
        BOOST_TEST(u.count("c1", "{g}ok") == 0);
        BOOST_TEST((u.f.ok(cmd::hget{u.m.user_key("{g}ok"), ""}) == version));
        BOOST_TEST(*u.f.ok(cmd::get{u.m.user_key("bad")}) == "x");
      }
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(fan_out_to_ten_participants_over_many_conversations, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    auto const users = names("user", 10);
    auto const convs = names("conv", 50);
    for (int round = 0; round < 3; ++round)
      for (std::size_t c = 0; c < convs.size(); ++c)
        BOOST_TEST(u.ok(u.m.async_increment_unread_for_recipients(convs[c], users[c % users.size()],
                                                                  users, 1)) == 9);
    // Each user sent in 5 of the 50 conversations.
    for (auto const& user : users) {
      BOOST_TEST(u.total(user) == 3 * 45);
      u.check_total_is_sum(user, convs);
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_fails_with_invalid_argument, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    BOOST_TEST(u.err(u.m.async_increment_unread("", "u", 1)) == invalid);
    BOOST_TEST(u.err(u.m.async_increment_unread("c", "", 1)) == invalid);
    BOOST_TEST(u.err(u.m.async_increment_unread("c", "u", 0)) == invalid);
    BOOST_TEST(u.err(u.m.async_increment_unread("c", "u", -3)) == invalid);
    BOOST_TEST(u.err(u.m.async_decrement_unread("c", "u", -1)) == invalid);
    BOOST_TEST(u.err(u.m.async_decrement_unread("", "u", 1)) == invalid);
    BOOST_TEST(u.err(u.m.async_mark_conversation_read("c", "")) == invalid);
    BOOST_TEST(u.err(u.m.async_get_conversation_unread_count("", "u")) == invalid);
    BOOST_TEST(u.err(u.m.async_get_user_total_unread("")) == invalid);
    BOOST_TEST(u.err(u.m.async_increment_unread_for_recipients("", "s", {"a"}, 1)) == invalid);
    BOOST_TEST(u.err(u.m.async_increment_unread_for_recipients("c", "s", {"a", ""}, 1)) == invalid);
    BOOST_TEST(u.err(u.m.async_increment_unread_for_recipients("c", "s", {"a"}, 0)) == invalid);
    // No recalculation function set.
    BOOST_TEST(u.err(u.m.async_recalculate_unread("c", "u")) == invalid);
    BOOST_TEST(u.err(u.m.async_recalculate_total_unread("u")) == invalid);
    u.m.set_recalculate_function([](std::string_view, std::string_view) { return 1; });
    BOOST_TEST(u.err(u.m.async_recalculate_unread("", "u")) == invalid);
    BOOST_TEST(u.f.ok(cmd::dbsize{}) == 0);  // nothing was written
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(operations_complete_through_the_executor_and_own_their_arguments, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    bool done = false;
    u.m.async_increment_unread(std::string("c"), std::string("u"), 1,
                               [&](error_code ec, std::int64_t n) {
                                 BOOST_TEST(!ec);
                                 BOOST_TEST(n == 1);
                                 done = true;
                               });
    BOOST_TEST(!done);
    u.f.run_until([&] { return done; });
    done = false;
    u.m.async_increment_unread("", "u", 1, [&](error_code ec, std::int64_t) {
      BOOST_TEST(ec == invalid);
      done = true;
    });
    BOOST_TEST(!done);  // not even a refusal completes inline
    u.f.run_until([&] { return done; });
    // A deferred operation launched after its arguments are gone.
    auto op = [&] {
      std::string conv = "a conversation id longer than any small-string buffer";
      std::string user = "a user id longer than any small-string buffer, too";
      std::vector<std::string> members{user, "someone else with a long enough id"};
      return std::pair(u.m.async_increment_unread(conv, user, 2),
                       u.m.async_increment_unread_for_recipients(conv, "", members, 1));
    }();
    BOOST_TEST(u.ok(std::move(op.first)) == 2);
    BOOST_TEST(u.ok(std::move(op.second)) == 2);
    BOOST_TEST(u.total("a user id longer than any small-string buffer, too") == 3);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_thousand_coroutines_leave_an_exact_state, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    auto const convs = names("c", 10);
    auto const cleared = names("old", 5);
    for (auto const& c : cleared)
      u.ok(u.m.async_increment_unread(c, "u1", 7));
    int finished = 0, failures = 0;
    std::int64_t max_total_seen = 0;
    using M = UnreadMessageManager<B>;
    auto worker = [](M& m, int i, std::vector<std::string> const& convs,
                     std::vector<std::string> const& cleared, int& finished, int& failures,
                     std::int64_t& max_total_seen) -> asio::awaitable<void> {
      auto const tok = asio::as_tuple(asio::deferred);
      std::string const& conv = convs[i % convs.size()];
      error_code ec;
      std::int64_t v = 0;
      switch (i % 5) {
        case 0:
        case 1:  // +1
          std::tie(ec, v) = co_await m.async_increment_unread(conv, "u1", 1, tok);
          break;
        case 2:  // +3 then -2: a decrement after its own increment never needs the clamp
          std::tie(ec, v) = co_await m.async_increment_unread(conv, "u1", 3, tok);
          if (!ec) std::tie(ec, v) = co_await m.async_decrement_unread(conv, "u1", 2, tok);
          break;
        case 3:  // a fan-out to u1 and u2 from u3, and a mark-read of an old conversation
          std::tie(ec, v) = co_await m.async_increment_unread_for_recipients(
              conv, "u3", {"u1", "u2", "u3"}, 1, tok);
          if (!ec)
            std::tie(ec, v) = co_await m.async_mark_conversation_read(
                cleared[(i / 10) % cleared.size()], "u1", tok);
          break;
        default:  // readers
          std::tie(ec, v) = co_await m.async_get_user_total_unread("u1", tok);
          if (!ec) max_total_seen = std::max(max_total_seen, v);
          if (!ec)
            std::tie(ec, v) = co_await m.async_get_conversation_unread_count(conv, "u1", tok);
          break;
      }
      if (ec) ++failures;
      ++finished;
    };
    constexpr int n = 1000;
    for (int i = 0; i < n; ++i)
      asio::co_spawn(u.f.ioc, worker(u.m, i, convs, cleared, finished, failures, max_total_seen),
                     asio::detached);
    u.f.run_until([&] { return finished == n; }, 60s);
    BOOST_TEST(failures == 0);
    // Per conversation (i % 10 fixes both the conversation and i % 5): 100 workers each, of
    // which 20 per kind. Conversations with i % 10 in {0,1,5,6}: +1; {2,7}: +1 net; {3,8}:
    // fan-out +1; {4,9}: readers.
    for (std::size_t c = 0; c < convs.size(); ++c) {
      std::int64_t const want = (c % 5 == 4) ? 0 : 100;
      BOOST_TEST(u.count(convs[c], "u1") == want, "conversation " << convs[c]);
    }
    BOOST_TEST(u.count(convs[3], "u2") == 100);
    BOOST_TEST(u.count(convs[3], "u3") == 0);
    for (auto const& c : cleared)
      BOOST_TEST(u.count(c, "u1") == 0);
    BOOST_TEST(u.total("u1") == 800);
    BOOST_TEST(u.total("u2") == 200);
    auto all = convs;
    all.insert(all.end(), cleared.begin(), cleared.end());
    u.check_total_is_sum("u1", all);
    // A reader never sees more than everything added (the +3 of a +3/-2 pair included).
    BOOST_TEST(max_total_seen > 0);
    BOOST_TEST(max_total_seen <= 800 + 35 + 2 * 200);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_mark_read_racing_increments_keeps_total_equal_to_the_sum, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    using M = UnreadMessageManager<B>;
    auto inc = [](M& m, int& done) -> asio::awaitable<void> {
      co_await m.async_increment_unread("race", "u1", 1);
      co_await m.async_increment_unread("other", "u1", 1);
      ++done;
    };
    auto read = [](M& m, std::int64_t& cleared, int& done) -> asio::awaitable<void> {
      cleared = co_await m.async_mark_conversation_read("race", "u1");
      ++done;
    };
    std::int64_t expected_other = 0;
    for (int round = 0; round < 20; ++round) {
      int done = 0;
      std::int64_t cleared = -1;
      std::int64_t const before = u.count("race", "u1");
      for (int i = 0; i < 10; ++i)
        asio::co_spawn(u.f.ioc, inc(u.m, done), asio::detached);
      asio::co_spawn(u.f.ioc, read(u.m, cleared, done), asio::detached);
      for (int i = 0; i < 10; ++i)
        asio::co_spawn(u.f.ioc, inc(u.m, done), asio::detached);
      u.f.run_until([&] { return done == 21; });
      expected_other += 20;
      // Every increment lands either before the mark-read (and is cleared) or after it.
      std::int64_t const now = u.count("race", "u1");
      BOOST_TEST(now >= 0);
      BOOST_TEST(now <= 20);
      BOOST_TEST(before + 20 == cleared + now);
      BOOST_TEST(u.count("other", "u1") == expected_other);
      u.check_total_is_sum("u1", {"race", "other"});
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(counters_live_three_days_after_the_last_write, B, InProcessBackends) {
  for_each_mode<B>([&](Mode mode) {
    if constexpr (BackendFixture<B>::is_fake) {
      Unread<B> u(mode);
      std::string const key = u.m.user_key("u1");
      u.ok(u.m.async_increment_unread("c1", "u1", 2));
      BOOST_TEST(u.f.ok(cmd::pttl{key}) == std::chrono::milliseconds(72h).count());
      // Every kind of write renews the TTL.
      u.f.advance(71h);
      u.ok(u.m.async_decrement_unread("c1", "u1", 1));
      u.f.advance(71h);
      u.ok(u.m.async_increment_unread_for_recipients("c2", "x", {"u1"}, 1));
      u.f.advance(71h);
      u.ok(u.m.async_mark_conversation_read("c2", "u1"));
      u.f.advance(71h);
      u.m.set_recalculate_function([](std::string_view, std::string_view) { return 6; });
      BOOST_TEST(u.ok(u.m.async_recalculate_unread("c3", "u1")) == 6);
      u.f.advance(71h);
      BOOST_TEST(u.count("c1", "u1") == 1);
      BOOST_TEST(u.total("u1") == 7);
      // Reads do not renew: three days after the last write, parts and total are gone together.
      u.f.advance(59min);
      BOOST_TEST(u.total("u1") == 7);
      u.f.advance(2min);
      BOOST_TEST(u.count("c1", "u1") == 0);
      BOOST_TEST(u.count("c3", "u1") == 0);
      BOOST_TEST(u.total("u1") == 0);
      BOOST_TEST(u.f.ok(cmd::exists{key}) == 0);
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_short_ttl_expires_on_every_backend, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode, UnreadOptions{.default_ttl = 1500ms});
    u.ok(u.m.async_increment_unread("c1", "u1", 3));
    auto const pttl = u.f.ok(cmd::pttl{u.m.user_key("u1")});
    BOOST_TEST(pttl > 0);
    BOOST_TEST(pttl <= 1500);
    u.f.advance(2000ms);
    BOOST_TEST(u.count("c1", "u1") == 0);
    BOOST_TEST(u.total("u1") == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(recalculate_stores_what_the_function_returns, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    std::vector<std::pair<std::string, std::string>> calls;
    long long truth = 7;
    u.m.set_recalculate_function([&](std::string_view conv, std::string_view user) {
      calls.emplace_back(conv, user);
      return truth;
    });
    u.ok(u.m.async_increment_unread("c1", "u1", 2));
    u.ok(u.m.async_increment_unread("c2", "u1", 1));
    BOOST_TEST(u.ok(u.m.async_recalculate_unread("c1", "u1")) == 7);
    BOOST_TEST(calls.size() == 1u);
    BOOST_TEST(calls[0].first == "c1");
    BOOST_TEST(calls[0].second == "u1");
    BOOST_TEST(u.count("c1", "u1") == 7);
    BOOST_TEST(u.total("u1") == 8);
    truth = 0;  // all read: the counter goes away
    BOOST_TEST(u.ok(u.m.async_recalculate_unread("c1", "u1")) == 0);
    BOOST_TEST(!u.f.ok(cmd::hexists{u.m.user_key("u1"), "c1"}));
    BOOST_TEST(u.total("u1") == 1);
    truth = 4;  // a user with no counters yet
    BOOST_TEST(u.ok(u.m.async_recalculate_unread("c5", "fresh")) == 4);
    BOOST_TEST(u.total("fresh") == 4);
    truth = -1;  // a broken query
    BOOST_TEST(u.err(u.m.async_recalculate_unread("c5", "fresh")) == invalid);
    BOOST_TEST(u.count("c5", "fresh") == 4);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(recalculation_errors_surface_as_error_codes, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    u.ok(u.m.async_increment_unread("c1", "u1", 2));
    auto const db_down = make_error_code(boost::system::errc::host_unreachable);
    // With an error_code& argument.
    u.m.set_recalculate_function(
        [&](std::string_view, std::string_view, error_code& ec) -> long long {
          ec = db_down;
          return 99;
        });
    BOOST_TEST(u.err(u.m.async_recalculate_unread("c1", "u1")) == db_down);
    // Throwing a system_error: its code; anything else: Error::load_failed.
    u.m.set_recalculate_function([&](std::string_view, std::string_view) -> int {
      throw boost::system::system_error(db_down);
    });
    BOOST_TEST(u.err(u.m.async_recalculate_unread("c1", "u1")) == db_down);
    u.m.set_recalculate_function(
        [](std::string_view, std::string_view) -> int { throw std::runtime_error("boom"); });
    BOOST_TEST(u.err(u.m.async_recalculate_unread("c1", "u1")) ==
               make_error_code(Error::load_failed));
    BOOST_TEST(u.count("c1", "u1") == 2);  // untouched by every failure
    // The error_code form that succeeds.
    u.m.set_recalculate_function(
        [](std::string_view, std::string_view, error_code&) -> std::size_t { return 3; });
    BOOST_TEST(u.ok(u.m.async_recalculate_unread("c1", "u1")) == 3);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(recalculation_coroutines_are_awaited, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    u.m.set_recalculate_function(
        [](std::string_view conv, std::string_view) -> asio::awaitable<long long> {
          asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
          co_await t.async_wait(asio::use_awaitable);
          co_return static_cast<long long>(conv.size());  // the views outlive the suspension
        });
    BOOST_TEST(u.ok(u.m.async_recalculate_unread("abcde", "u1")) == 5);
    BOOST_TEST(u.total("u1") == 5);
    u.m.set_recalculate_function(
        [](std::string_view, std::string_view) -> asio::awaitable<long long> {
          throw boost::system::system_error(make_error_code(boost::system::errc::timed_out));
          co_return 0;
        });
    BOOST_TEST(u.err(u.m.async_recalculate_unread("abcde", "u1")) ==
               make_error_code(boost::system::errc::timed_out));
    // A function that throws before it makes its coroutine.
    u.m.set_recalculate_function(
        [](std::string_view, std::string_view) -> asio::awaitable<long long> {
          throw boost::system::system_error(make_error_code(boost::system::errc::timed_out));
        });
    BOOST_TEST(u.err(u.m.async_recalculate_unread("abcde", "u1")) ==
               make_error_code(boost::system::errc::timed_out));
    BOOST_TEST(u.count("abcde", "u1") == 5);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_write_racing_the_query_makes_recalculation_ask_again, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    int calls = 0;
    int racing_calls = 1;
    // The query runs while a new message arrives (an increment between the version read and the
    // write): the count it returns may or may not include that message, so it is not stored.
    u.m.set_recalculate_function(
        [&](std::string_view, std::string_view) -> asio::awaitable<long long> {
          ++calls;
          if (calls <= racing_calls) co_await u.m.async_increment_unread("c1", "u1", 1);
          co_return 10 + calls;
        });
    BOOST_TEST(u.ok(u.m.async_recalculate_unread("c1", "u1")) == 12);
    BOOST_TEST(calls == 2);
    BOOST_TEST(u.count("c1", "u1") == 12);
    // A write to another conversation of the user also counts as a race (one version per user).
    calls = 0;
    racing_calls = 100;
    BOOST_TEST(u.err(u.m.async_recalculate_unread("c1", "u1")) ==
               make_error_code(boost::system::errc::resource_unavailable_try_again));
    BOOST_TEST(calls == 3);                 // recalculate_attempts
    BOOST_TEST(u.count("c1", "u1") == 15);  // the increments, nothing overwritten
    u.check_total_is_sum("u1", {"c1"});
    // recalculate_attempts = 1: the first race fails the operation.
    UnreadMessageManager<B> once(u.f.backend, UnreadOptions{.recalculate_attempts = 1});
    calls = 0;
    once.set_recalculate_function(
        [&](std::string_view, std::string_view) -> asio::awaitable<long long> {
          ++calls;
          co_await u.m.async_increment_unread("c1", "u1", 1);
          co_return 1;
        });
    BOOST_TEST(u.err(once.async_recalculate_unread("c1", "u1")) ==
               make_error_code(boost::system::errc::resource_unavailable_try_again));
    BOOST_TEST(calls == 1);
    BOOST_TEST(u.count("c1", "u1") == 16);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(recalculate_total_replaces_every_counter_of_the_user, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    u.ok(u.m.async_increment_unread("a", "u1", 1));
    u.ok(u.m.async_increment_unread("b", "u1", 2));
    u.ok(u.m.async_increment_unread("a", "u2", 9));
    std::map<std::string, long long> truth{{"b", 5}, {"c", 3}, {"d", 0}};
    u.m.set_recalculate_total_function([&](std::string_view user) {
      BOOST_TEST(user == "u1");
      return truth;
    });
    BOOST_TEST(u.ok(u.m.async_recalculate_total_unread("u1")) == 8);
    BOOST_TEST(u.count("a", "u1") == 0);
    BOOST_TEST(u.count("b", "u1") == 5);
    BOOST_TEST(u.count("c", "u1") == 3);
    BOOST_TEST(u.total("u1") == 8);
    BOOST_TEST(u.total("u2") == 9);  // other users untouched
    u.check_total_is_sum("u1", {"a", "b", "c", "d"});
    // Bad breakdowns are refused and change nothing.
    auto const refused = [&](UnreadBreakdown b) {
      u.m.set_recalculate_total_function([b](std::string_view) { return b; });
      BOOST_TEST(u.err(u.m.async_recalculate_total_unread("u1")) == invalid);
      BOOST_TEST(u.total("u1") == 8);
    };
    refused(UnreadBreakdown{{"x", 1}, {"x", 2}});
    refused(UnreadBreakdown{{"", 1}});
    refused(UnreadBreakdown{{"x", -1}});
    // The error_code form, failing.
    u.m.set_recalculate_total_function([](std::string_view, error_code& ec) {
      ec = make_error_code(boost::system::errc::host_unreachable);
      return UnreadBreakdown{{"x", 1}};
    });
    BOOST_TEST(u.err(u.m.async_recalculate_total_unread("u1")) ==
               make_error_code(boost::system::errc::host_unreachable));
    BOOST_TEST(u.total("u1") == 8);
    // Nothing unread at all.
    u.m.set_recalculate_total_function([](std::string_view) { return UnreadBreakdown{}; });
    BOOST_TEST(u.ok(u.m.async_recalculate_total_unread("u1")) == 0);
    BOOST_TEST(u.total("u1") == 0);
    // The coroutine form, racing a write once.
    int calls = 0;
    u.m.set_recalculate_total_function([&](std::string_view) -> asio::awaitable<UnreadBreakdown> {
      if (++calls == 1) co_await u.m.async_increment_unread("z", "u1", 1);
      co_return UnreadBreakdown{{"z", 4}};
    });
    BOOST_TEST(u.ok(u.m.async_recalculate_total_unread("u1")) == 4);
    BOOST_TEST(calls == 2);
    BOOST_TEST(u.total("u1") == 4);
    // A user who had nothing at all.
    BOOST_TEST(u.ok(u.m.async_recalculate_total_unread("new")) == 4);
    BOOST_TEST(u.count("z", "new") == 4);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(values_written_by_someone_else_fail_cleanly, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Unread<B> u(mode);
    std::string const key = u.m.user_key("u1");
    BOOST_TEST(u.f.ok(cmd::hset{key, FieldValue{"c1", "abc"}}) == 1);
    BOOST_TEST(u.err(u.m.async_get_conversation_unread_count("c1", "u1")) ==
               make_error_code(Error::not_a_number));
    BOOST_TEST(u.err(u.m.async_decrement_unread("c1", "u1", 1)) ==
               make_error_code(Error::server_error));
    BOOST_TEST(u.err(u.m.async_get_user_total_unread("u1")) ==
               make_error_code(Error::server_error));
    BOOST_TEST(u.err(u.m.async_increment_unread("c1", "u1", 1)) ==
               make_error_code(Error::server_error));
    // A key of another type: WRONGTYPE.
    BOOST_TEST(u.f.ok(cmd::set{.key = u.m.user_key("u2"), .value = "x"}));
    BOOST_TEST(u.err(u.m.async_get_user_total_unread("u2")) == make_error_code(Error::wrong_type));
    BOOST_TEST(u.err(u.m.async_get_conversation_unread_count("c", "u2")) ==
               make_error_code(Error::wrong_type));
    BOOST_TEST(u.err(u.m.async_increment_unread("c", "u2", 1)) ==
               make_error_code(Error::wrong_type));
    // A counter or version that HINCRBY refuses (not an integer as Redis reads one, or an
    // overflow) fails an increment with nothing changed: what it had added is put back, the
    // version too. (Several keys: a_failed_slot_group_leaves_the_other_groups_counted.)
    std::string const u3 = u.m.user_key("u3");
    u.ok(u.m.async_increment_unread("ok", "u3", 1));
    auto const refused = [&](std::string_view field, std::string_view value, std::int64_t n) {
      BOOST_TEST_CONTEXT("field '" << field << "' = '" << value << "', n = " << n) {
        auto const before = u.f.ok(cmd::hget{u3, ""});
        u.f.ok(cmd::hset{u3, FieldValue{field, value}});
        auto const version = u.f.ok(cmd::hget{u3, ""});
        BOOST_TEST(u.err(u.m.async_increment_unread("c", "u3", n)) ==
                   make_error_code(Error::server_error));
        BOOST_TEST(u.err(u.m.async_increment_unread_for_recipients("c", "x", {"u3"}, n)) ==
                   make_error_code(Error::server_error));
        BOOST_TEST((u.f.ok(cmd::hget{u3, ""}) == version));
        BOOST_TEST(*u.f.ok(cmd::hget{u3, field}) == value);
        if (field.empty()) BOOST_TEST(!u.f.ok(cmd::hexists{u3, "c"}));  // taken back
        BOOST_TEST(u.count("ok", "u3") == 1);
        u.f.ok(cmd::hdel{u3, field});
        if (field.empty()) u.f.ok(cmd::hset{u3, FieldValue{"", *before}});
      }
    };
    refused("c", "007", 1);
    refused("c", " 7", 1);
    refused("c", "1e3", 1);
    refused("c", "99999999999999999999", 1);
    refused("c", "9223372036854775000", 1000);  // would overflow
    refused("", "abc", 1);                      // the version: the counter was added, then not
    BOOST_TEST(u.ok(u.m.async_increment_unread("c", "u3", 2)) == 2);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_lost_connection_fails_operations_without_crashing, B,
                              InProcessBackends) {
  for_each_mode<B>([&](Mode mode) {
    if constexpr (BackendFixture<B>::is_fake) {
      Unread<B> u(mode);
      u.m.set_recalculate_function([](std::string_view, std::string_view) { return 3; });
      u.m.set_recalculate_total_function([](std::string_view) { return UnreadBreakdown{}; });
      u.ok(u.m.async_increment_unread("c1", "u1", 2));
      u.f.backend.drop_connection();
      auto const down = make_error_code(Error::not_connected);
      BOOST_TEST(u.err(u.m.async_increment_unread("c1", "u1", 1)) == down);
      BOOST_TEST(u.err(u.m.async_decrement_unread("c1", "u1", 1)) == down);
      BOOST_TEST(u.err(u.m.async_mark_conversation_read("c1", "u1")) == down);
      BOOST_TEST(u.err(u.m.async_get_conversation_unread_count("c1", "u1")) == down);
      BOOST_TEST(u.err(u.m.async_get_user_total_unread("u1")) == down);
      BOOST_TEST(u.err(u.m.async_increment_unread_for_recipients("c1", "s", {"u1"}, 1)) == down);
      BOOST_TEST(u.err(u.m.async_recalculate_unread("c1", "u1")) == down);
      BOOST_TEST(u.err(u.m.async_recalculate_total_unread("u1")) == down);
      u.f.backend.restore_connection();
      // The write of a recalculation fails after the query ran: nothing is stored.
      int calls = 0;
      u.m.set_recalculate_function([&](std::string_view, std::string_view) {
        ++calls;
        u.f.backend.fail_next(1, Error::connection_lost);
        return 9;
      });
      BOOST_TEST(u.err(u.m.async_recalculate_unread("c1", "u1")) ==
                 make_error_code(Error::connection_lost));
      BOOST_TEST(calls == 1);
      BOOST_TEST(u.count("c1", "u1") == 2);
    }
  });
}

BOOST_AUTO_TEST_SUITE_END()
