// VoteService on MemoryBackend, FakeBackend, RedisBackend and ClusterBackend: vote transitions
// (up, down, change, withdraw) with exact counts, scores and ranking; seed 002's key names;
// 200 concurrent voters after which counts, votes and ranking agree and the messages replay
// to the same counts in order; the threshold hook firing once under concurrency (two services
// on one backend, as two processes); the published JSON; leaderboard pages, ranks and
// neighbourhoods; repairs from a votes hash written by someone else; bad input.
//
// Every case runs on each backend in its default layout (ClusterBackend: clustered; the others:
// plain), and on MemoryBackend and FakeBackend again in the clustered layout with
// MemoryConfig::cluster_checks (a run-time parameter: no extra template instantiation). The
// in-process backends run the scripts' C++ twins, the servers the Lua: the same assertions on
// both are the parity test.
#include "support/backends.hpp"
#include "support/layout_modes.hpp"

#include <rediskit/services/vote_service.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <map>
#include <random>
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
namespace asio = boost::asio;
namespace json = boost::json;

namespace {


using rediskit::test::invalid;

/// One vote as the channel carried it.
struct Published {
  std::string suggestion, user;
  std::int64_t up = 0, down = 0, score = 0, vote = 0;
};

Published parse_message(std::string const& payload) {
  json::object const o = json::parse(payload).as_object();
  BOOST_TEST(o.size() == 6u, payload);
  return Published{std::string(o.at("suggestion").as_string()),
                   std::string(o.at("user").as_string()),
                   o.at("up").as_int64(),
                   o.at("down").as_int64(),
                   o.at("score").as_int64(),
                   o.at("vote").as_int64()};
}

/// The one fixture: a backend and a service on it, with synchronous helpers.
template <class B>
struct Votes {
  explicit Votes(Mode mode, VoteOptions o = {})
      : f(mode_fixture<B>(mode)), v(f.backend, with_mode_layout(mode, std::move(o))) {}


  /// Runs a deferred operation that must succeed; its value.
  template <class Op>
  auto ok(Op&& op) {
    return f.value(std::forward<Op>(op));
  }
  /// Runs a deferred operation; its error.
  template <class Op>
  error_code err(Op&& op) {
    return f.error(std::forward<Op>(op));
  }

  VoteResult vote(std::string const& s, std::string const& u, int x) {
    return ok(v.async_vote_on_suggestion(s, u, x));
  }
  VoteCounts counts(std::string const& s) { return ok(v.async_get_suggestion_votes(s)); }
  int user_vote(std::string const& s, std::string const& u) {
    return ok(v.async_get_user_vote(s, u));
  }
  std::optional<double> zscore(std::string const& s) {
    return f.ok(cmd::zscore{v.ranking_key(), s});
  }

  /// Counts, votes hash and ranking agree for `s`: the counts are a recount of the hash (read
  /// raw), the stored counts say the same, and the ranking holds up - down (nothing when
  /// nobody votes). Returns the counts.
  VoteCounts check_consistent(std::string const& s) {
    BOOST_TEST_CONTEXT("suggestion " << s) {
      std::int64_t up = 0, down = 0;
      for (auto const& kv : f.ok(cmd::hgetall{v.votes_key(s)})) {
        BOOST_TEST((kv.second == "1" || kv.second == "-1"), kv.first << " -> " << kv.second);
        (kv.second == "1" ? up : down) += 1;
      }
      VoteCounts const c = counts(s);
      BOOST_TEST(c.up == up);
      BOOST_TEST(c.down == down);
      BOOST_TEST(c.score == up - down);
      auto const raw = f.ok(cmd::hmget{v.counts_key(s), {"up", "down"}});
      if (up + down > 0) {
        BOOST_TEST(raw[0].value_or("?") == std::to_string(up));
        BOOST_TEST(raw[1].value_or("?") == std::to_string(down));
        auto const z = zscore(s);
        BOOST_TEST_REQUIRE(z.has_value());
        BOOST_TEST(*z == double(up - down));
      } else {
        BOOST_TEST(!zscore(s).has_value());
      }
      return c;
    }
    return {};
  }

  /// Subscribes `sub` to the service's channel, then drains what earlier cases published: on
  /// a cluster, their messages may still be crossing the bus. A vote and its withdrawal on a
  /// barrier suggestion come from the same master, after them, over the same link, and leave
  /// nothing behind.
  template <class Sub>
  void subscribe(Sub& sub) {
    BOOST_TEST_REQUIRE(!std::get<0>(f.wait(sub.async_subscribe(v.options().channel))));
    vote("~barrier", "~", 1);
    vote("~barrier", "~", 0);
    for (;;) {
      auto const got = f.wait(sub.async_receive());
      BOOST_TEST_REQUIRE(!std::get<0>(got), std::get<0>(got).message());
      Published const p = parse_message(std::get<1>(got).payload);
      if (p.suggestion == "~barrier" && p.vote == 0) break;
    }
  }

  BackendFixture<B> f;
  VoteService<B> v;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(vote_service)

BOOST_AUTO_TEST_CASE_TEMPLATE(up_down_change_and_withdraw_keep_exact_counts, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Votes<B> t(mode);
    VoteResult r = t.vote("s1", "alice", 1);
    BOOST_TEST(r.changed);
    BOOST_TEST(r.previous == 0);
    BOOST_TEST(r.vote == 1);
    BOOST_TEST((r.counts == VoteCounts{1, 0, 1, false}));
    r = t.vote("s1", "bob", 1);
    BOOST_TEST((r.counts == VoteCounts{2, 0, 2, false}));
    r = t.vote("s1", "carol", -1);
    BOOST_TEST((r.counts == VoteCounts{2, 1, 1, false}));
    // The same vote again changes nothing.
    r = t.vote("s1", "carol", -1);
    BOOST_TEST(!r.changed);
    BOOST_TEST(r.previous == -1);
    BOOST_TEST((r.counts == VoteCounts{2, 1, 1, false}));
    // A change of mind: down to up moves one vote from down to up (score +2).
    r = t.vote("s1", "carol", 1);
    BOOST_TEST(r.changed);
    BOOST_TEST(r.previous == -1);
    BOOST_TEST((r.counts == VoteCounts{3, 0, 3, false}));
    r = t.vote("s1", "alice", -1);
    BOOST_TEST((r.counts == VoteCounts{2, 1, 1, false}));
    // Withdrawals.
    r = t.vote("s1", "alice", 0);
    BOOST_TEST(r.previous == -1);
    BOOST_TEST(r.vote == 0);
    BOOST_TEST((r.counts == VoteCounts{2, 0, 2, false}));
    r = t.vote("s1", "dave", 0);  // withdrawing no vote changes nothing
    BOOST_TEST(!r.changed);
    BOOST_TEST((r.counts == VoteCounts{2, 0, 2, false}));
    BOOST_TEST(t.user_vote("s1", "alice") == 0);
    BOOST_TEST(t.user_vote("s1", "bob") == 1);
    BOOST_TEST(t.user_vote("s1", "carol") == 1);
    BOOST_TEST(t.user_vote("s1", "nobody") == 0);
    BOOST_TEST(t.user_vote("nothing", "bob") == 0);
    t.check_consistent("s1");
    // Another suggestion is counted apart.
    BOOST_TEST((t.vote("s2", "bob", -1).counts == VoteCounts{0, 1, -1, false}));
    BOOST_TEST(*t.zscore("s2") == -1.0);
    BOOST_TEST(*t.zscore("s1") == 2.0);
    // The last vote withdrawn: the suggestion leaves the ranking and its counts go.
    t.vote("s2", "bob", 0);
    BOOST_TEST((t.counts("s2") == VoteCounts{}));
    BOOST_TEST(!t.zscore("s2").has_value());
    BOOST_TEST(t.f.ok(cmd::exists{.keys = t.v.counts_key("s2")}) == 0);
    BOOST_TEST(t.f.ok(cmd::exists{.keys = t.v.votes_key("s2")}) == 0);
    BOOST_TEST((t.counts("never") == VoteCounts{}));
    t.check_consistent("s2");
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(keys_are_seed_002s_on_one_node_and_share_one_tag_on_a_cluster, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Votes<B> t(mode);
    t.vote("42", "u1", 1);
    t.vote("42", "u2", -1);
    t.vote("42", "u3", 1);
    if (t.v.key_layout() == KeyLayout::plain) {
      BOOST_TEST(t.v.votes_key("42") == "vote:suggestion:42:votes");
      BOOST_TEST(t.v.ranking_key() == "suggestions:top:voted");
      BOOST_TEST(t.v.counts_key("42") == "vote:suggestion:42:counts");
    } else {
      BOOST_TEST(t.v.votes_key("42") == "{votes}:vote:suggestion:42:votes");
      BOOST_TEST(t.v.ranking_key() == "{votes}:suggestions:top:voted");
      BOOST_TEST(t.v.counts_key("42") == "{votes}:vote:suggestion:42:counts");
      BOOST_TEST(cluster::key_slot(t.v.votes_key("a{b}")) == cluster::key_slot("votes"));
      BOOST_TEST(cluster::key_slot(t.v.ranking_key()) == cluster::key_slot("votes"));
    }
    // The values, read raw as the Node services would.
    std::string const votes = t.v.votes_key("42");
    BOOST_TEST(t.f.ok(cmd::hget{votes, "u1"}).value_or("") == "1");
    BOOST_TEST(t.f.ok(cmd::hget{votes, "u2"}).value_or("") == "-1");
    BOOST_TEST(t.f.ok(cmd::hlen{votes}) == 3);  // user -> vote only, no reserved field
    BOOST_TEST(*t.zscore("42") == 1.0);
    if constexpr (!BackendFixture<B>::is_cluster) BOOST_TEST(t.f.ok(cmd::dbsize{}) == 3);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(concurrent_votes_keep_counts_votes_ranking_and_messages_in_agreement,
                              B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Votes<B> t(mode);
    auto sub = t.f.backend.make_subscriber();
    t.subscribe(sub);
    std::vector<std::string> const suggestions = {"s0", "s1", "s2", "s3"};
    int finished = 0, failures = 0, changed = 0;
    auto voter = [](VoteService<B>& v, int seed, std::vector<std::string> const& ss, int& changed,
                    int& failures, int& finished) -> asio::awaitable<void> {
      std::mt19937 rng(static_cast<unsigned>(seed));
      for (int k = 0; k < 3; ++k) {
        std::string const s = ss[rng() % ss.size()];
        std::string const u = "u" + std::to_string(rng() % 25);
        int const x = static_cast<int>(rng() % 3) - 1;
        try {
          VoteResult const r = co_await v.async_vote_on_suggestion(s, u, x);
          if (r.changed) ++changed;
          if (r.counts.score != r.counts.up - r.counts.down || r.vote != x) ++failures;
        } catch (...) {
          ++failures;
        }
      }
      ++finished;
    };
    constexpr int n = 200;
    for (int i = 0; i < n; ++i)
      asio::co_spawn(t.f.ioc, voter(t.v, 1000 + i, suggestions, changed, failures, finished),
                     asio::detached);
    t.f.run_until([&] { return finished == n; }, std::chrono::seconds(60));
    BOOST_TEST(failures == 0);
    BOOST_TEST(changed > 100);
    std::map<std::string, VoteCounts> final_counts;
    for (auto const& s : suggestions)
      final_counts[s] = t.check_consistent(s);
    // One message per vote that changed something, in vote order: replaying them per
    // suggestion gives each message's counts, and the last ones are the final counts.
    std::map<std::string, std::map<std::string, std::int64_t>> replay;
    std::map<std::string, Published> last;
    for (int i = 0; i < changed; ++i) {
      auto const got = t.f.wait(sub.async_receive());
      BOOST_TEST_REQUIRE(!std::get<0>(got), std::get<0>(got).message());
      Message const& m = std::get<1>(got);
      Published const p = parse_message(m.payload);
      auto& users = replay[p.suggestion];
      if (p.vote == 0)
        users.erase(p.user);
      else
        users[p.user] = p.vote;
      std::int64_t up = 0, down = 0;
      for (auto const& ux : users)
        (ux.second == 1 ? up : down) += 1;
      BOOST_TEST(p.up == up, "message " << i << ": " << m.payload);
      BOOST_TEST(p.down == down, "message " << i << ": " << m.payload);
      BOOST_TEST(p.score == up - down);
      last[p.suggestion] = p;
    }
    for (auto const& sp : last) {
      BOOST_TEST(sp.second.up == final_counts[sp.first].up, sp.first);
      BOOST_TEST(sp.second.down == final_counts[sp.first].down, sp.first);
      for (auto const& ux : replay[sp.first])
        BOOST_TEST(t.user_vote(sp.first, ux.first) == ux.second, sp.first << " " << ux.first);
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_threshold_hook_fires_once_under_concurrency, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    std::vector<VoteThresholdEvent> events;
    VoteOptions o;
    o.threshold = 10;
    o.on_threshold = [&events](VoteThresholdEvent const& e) { events.push_back(e); };
    Votes<B> t(mode, o);
    // A second service on the same backend, as another process would be.
    VoteService<B> other(t.f.backend, with_mode_layout(mode, o));
    int finished = 0, crossed = 0;
    auto voter = [](VoteService<B>& v, std::string user, int x, int& crossed,
                    int& finished) -> asio::awaitable<void> {
      VoteResult const r = co_await v.async_vote_on_suggestion("hot", user, x);
      if (r.threshold_crossed) ++crossed;
      ++finished;
    };
    constexpr int n = 60;
    for (int i = 0; i < n; ++i) {
      int const x = i % 6 == 5 ? -1 : 1;  // 50 up, 10 down: the score ends at 40
      asio::co_spawn(t.f.ioc,
                     voter(i % 2 ? t.v : other, "u" + std::to_string(i), x, crossed, finished),
                     asio::detached);
    }
    t.f.run_until([&] { return finished == n; }, std::chrono::seconds(60));
    BOOST_TEST(crossed == 1);
    BOOST_TEST_REQUIRE(events.size() == 1u);
    BOOST_TEST(events[0].suggestion_id == "hot");
    BOOST_TEST(!events[0].user_id.empty());
    BOOST_TEST(events[0].threshold == 10);
    BOOST_TEST(events[0].counts.score == 10);  // the vote that reached it, not a later one
    BOOST_TEST(events[0].counts.threshold_reached);
    VoteCounts const c = t.check_consistent("hot");
    BOOST_TEST((c == VoteCounts{50, 10, 40, true}));
    // Falling back below and rising again does not fire again, nor does a repair; the marker
    // outlives the votes.
    for (int i = 0; i < n; ++i)
      t.vote("hot", "u" + std::to_string(i), 0);
    BOOST_TEST((t.check_consistent("hot") == VoteCounts{0, 0, 0, true}));
    for (int i = 0; i < 40; ++i)
      t.vote("hot", "v" + std::to_string(i), 1);
    t.ok(t.v.async_update_suggestion_score("hot"));
    BOOST_TEST(events.size() == 1u);
    // Another suggestion fires on its own, here through a repair of votes written raw.
    t.vote("cold", "a", 1);
    BOOST_TEST(events.size() == 1u);
    for (int i = 0; i < 12; ++i)
      t.f.ok(cmd::hset{t.v.votes_key("cold"), FieldValue{"w" + std::to_string(i), "1"}});
    VoteCounts const repaired = t.ok(t.v.async_update_suggestion_score("cold"));
    BOOST_TEST((repaired == VoteCounts{13, 0, 13, true}));
    BOOST_TEST_REQUIRE(events.size() == 2u);
    BOOST_TEST(events[1].suggestion_id == "cold");
    BOOST_TEST(events[1].user_id.empty());
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(every_vote_publishes_its_json_on_suggestions_votes, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Votes<B> t(mode);
    auto sub = t.f.backend.make_subscriber();
    t.subscribe(sub);
    std::string const odd = std::string("a\"b/c\\d\x01\x7f\n\xc3\xa9", 12);
    t.vote("s1", "alice", 1);
    t.vote("s1", "bob", -1);
    t.vote("s1", "bob", -1);  // no change: no message
    t.vote("s1", "alice", -1);
    t.vote("s1", "alice", 0);
    t.vote(odd, "user \"x\"", 1);
    std::vector<std::string> const want = {
        R"({"suggestion":"s1","up":1,"down":0,"score":1,"user":"alice","vote":1})",
        R"({"suggestion":"s1","up":1,"down":1,"score":0,"user":"bob","vote":-1})",
        R"({"suggestion":"s1","up":0,"down":2,"score":-2,"user":"alice","vote":-1})",
        R"({"suggestion":"s1","up":0,"down":1,"score":-1,"user":"alice","vote":0})",
        // Escaped as Lua's cjson does: the script and its C++ twin send the same bytes.
        "{\"suggestion\":\"a\\\"b\\/c\\\\d\\u0001\\u007f\\n\xc3\xa9\",\"up\":1,\"down\":0,"
        "\"score\":1,\"user\":\"user \\\"x\\\"\",\"vote\":1}",
    };
    for (auto const& w : want) {
      auto const got = t.f.wait(sub.async_receive());
      BOOST_TEST_REQUIRE(!std::get<0>(got), std::get<0>(got).message());
      BOOST_TEST(std::get<1>(got).channel == "suggestions:votes");
      BOOST_TEST(std::get<1>(got).payload == w);
    }
    Published const p = parse_message(want.back());
    BOOST_TEST(p.suggestion == odd);
    BOOST_TEST(p.user == "user \"x\"");
    // An empty channel publishes nothing.
    VoteOptions quiet;
    quiet.channel.clear();
    VoteService<B> silent(t.f.backend, with_mode_layout(mode, quiet));
    BOOST_TEST(t.ok(silent.async_vote_on_suggestion("s9", "zed", 1)).changed);
    t.vote("s8", "zed", 1);
    auto const got = t.f.wait(sub.async_receive());
    BOOST_TEST(!std::get<0>(got));
    BOOST_TEST(parse_message(std::get<1>(got).payload).suggestion == "s8");
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(leaderboard_pages_ranks_and_neighbourhoods, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Votes<B> t(mode);
    // s<i> gets score i (i up votes) for i = 1..9, and "neg" -2.
    for (int i = 1; i <= 9; ++i)
      for (int u = 0; u < i; ++u)
        t.vote("s" + std::to_string(i), "u" + std::to_string(u), 1);
    t.vote("neg", "a", -1);
    t.vote("neg", "b", -1);
    BOOST_TEST(t.ok(t.v.async_get_ranked_count()) == 10);
    using R = std::vector<RankedSuggestion>;
    R const top3 = t.ok(t.v.async_get_top_voted_suggestions(3));
    BOOST_TEST((top3 == R{{"s9", 9, 1}, {"s8", 8, 2}, {"s7", 7, 3}}));
    R const page2 = t.ok(t.v.async_get_top_voted_suggestions(3, 3));  // leaders(2, 3)
    BOOST_TEST((page2 == R{{"s6", 6, 4}, {"s5", 5, 5}, {"s4", 4, 6}}));
    R const tail = t.ok(t.v.async_get_top_voted_suggestions(8, 5));
    BOOST_TEST((tail == R{{"s1", 1, 9}, {"neg", -2, 10}}));
    BOOST_TEST(t.ok(t.v.async_get_top_voted_suggestions(20, 5)).empty());
    auto const rank = t.ok(t.v.async_get_suggestion_rank("s7"));
    BOOST_TEST_REQUIRE(rank.has_value());
    BOOST_TEST((*rank == RankedSuggestion{"s7", 7, 3}));
    BOOST_TEST((*t.ok(t.v.async_get_suggestion_rank("neg")) == RankedSuggestion{"neg", -2, 10}));
    BOOST_TEST(!t.ok(t.v.async_get_suggestion_rank("nope")).has_value());
    // around_me: from rank - size / 2, never before the top.
    R const around = t.ok(t.v.async_get_suggestions_around("s5", 3));
    BOOST_TEST((around == R{{"s6", 6, 4}, {"s5", 5, 5}, {"s4", 4, 6}}));
    R const around4 = t.ok(t.v.async_get_suggestions_around("s5", 4));
    BOOST_TEST((around4 == R{{"s7", 7, 3}, {"s6", 6, 4}, {"s5", 5, 5}, {"s4", 4, 6}}));
    R const at_top = t.ok(t.v.async_get_suggestions_around("s8", 5));
    BOOST_TEST((at_top == R{{"s9", 9, 1}, {"s8", 8, 2}, {"s7", 7, 3}, {"s6", 6, 4}, {"s5", 5, 5}}));
    R const at_end = t.ok(t.v.async_get_suggestions_around("neg", 3));
    BOOST_TEST((at_end == R{{"s1", 1, 9}, {"neg", -2, 10}}));
    BOOST_TEST(t.ok(t.v.async_get_suggestions_around("nope", 3)).empty());
    // A vote moves a suggestion in the ranking at once.
    for (int u = 0; u < 5; ++u)
      t.vote("s1", "x" + std::to_string(u), 1);  // 1 -> 6: ties with s6
    auto const moved = t.ok(t.v.async_get_suggestion_rank("s1"));
    BOOST_TEST_REQUIRE(moved.has_value());
    BOOST_TEST(moved->score == 6);
    R const all = t.ok(t.v.async_get_top_voted_suggestions(0, 10));
    BOOST_TEST_REQUIRE(all.size() == 10u);
    for (std::size_t i = 0; i < all.size(); ++i) {
      BOOST_TEST(all[i].rank == std::int64_t(i + 1));
      if (i > 0) BOOST_TEST(all[i - 1].score >= all[i].score);
      if (all[i].id == "s1") BOOST_TEST(all[i].rank == moved->rank);  // one order everywhere
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(votes_written_by_another_program_are_counted, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Votes<B> t(mode);
    std::string const key = t.v.votes_key("legacy");
    t.f.ok(cmd::hset{key, {FieldValue{"a", "1"}, FieldValue{"b", "1"}, FieldValue{"c", "-1"}}});
    // No counts key yet: a read recounts the hash without writing anything.
    BOOST_TEST((t.counts("legacy") == VoteCounts{2, 1, 1, false}));
    BOOST_TEST(t.f.ok(cmd::exists{.keys = t.v.counts_key("legacy")}) == 0);
    BOOST_TEST(!t.zscore("legacy").has_value());
    // The next vote starts from the recount.
    BOOST_TEST((t.vote("legacy", "c", 1).counts == VoteCounts{3, 0, 3, false}));
    t.check_consistent("legacy");
    // Counts gone wrong (written by someone else) are repaired by updateSuggestionScore.
    t.f.ok(cmd::hset{t.v.counts_key("legacy"), {FieldValue{"up", "40"}, FieldValue{"down", "2"}}});
    BOOST_TEST((t.ok(t.v.async_update_suggestion_score("legacy")) == VoteCounts{3, 0, 3, false}));
    t.check_consistent("legacy");
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_fails_with_invalid_argument_and_never_inline, B,
                              AllBackends) {
  Votes<B> t(Mode::native);
  BOOST_TEST(t.err(t.v.async_vote_on_suggestion("", "u", 1)) == invalid);
  BOOST_TEST(t.err(t.v.async_vote_on_suggestion("s", "", 1)) == invalid);
  BOOST_TEST(t.err(t.v.async_vote_on_suggestion("s", "u", 2)) == invalid);
  BOOST_TEST(t.err(t.v.async_vote_on_suggestion("s", "u", -2)) == invalid);
  BOOST_TEST(t.err(t.v.async_get_suggestion_votes("")) == invalid);
  BOOST_TEST(t.err(t.v.async_update_suggestion_score("")) == invalid);
  BOOST_TEST(t.err(t.v.async_get_user_vote("", "u")) == invalid);
  BOOST_TEST(t.err(t.v.async_get_user_vote("s", "")) == invalid);
  BOOST_TEST(t.err(t.v.async_get_top_voted_suggestions(0)) == invalid);
  BOOST_TEST(t.err(t.v.async_get_top_voted_suggestions(-1, 3)) == invalid);
  BOOST_TEST(t.err(t.v.async_get_suggestion_rank("")) == invalid);
  BOOST_TEST(t.err(t.v.async_get_suggestions_around("s", 0)) == invalid);
  BOOST_TEST(t.err(t.v.async_get_suggestions_around("", 3)) == invalid);
  if constexpr (!BackendFixture<B>::is_cluster)
    BOOST_TEST(t.f.ok(cmd::dbsize{}) == 0);  // nothing was written
  // Completion goes through the executor, failures and successes alike.
  int done = 0;
  auto const h = [&done](error_code, VoteResult) { ++done; };
  t.v.async_vote_on_suggestion("", "u", 1, h);
  t.v.async_vote_on_suggestion("s", "u", 1, h);
  BOOST_TEST(done == 0);
  t.f.run_until([&] { return done == 2; });
  // A cluster tag that is no tag is refused.
  VoteOptions o;
  o.key_layout = KeyLayout::clustered;
  o.cluster_tag = "a}b";
  BOOST_CHECK_THROW(VoteService<B>(t.f.backend, o), Exception);
  // The plain layout on a cluster cannot work: refused before anything is sent.
  if constexpr (BackendFixture<B>::is_cluster) {
    VoteOptions p;
    p.key_layout = KeyLayout::plain;
    VoteService<B> plain(t.f.backend, p);
    BOOST_TEST(std::get<0>(t.f.wait(plain.async_vote_on_suggestion("s1", "u", 1))) ==
               make_error_code(Error::cross_slot));
  }
}

BOOST_AUTO_TEST_SUITE_END()
