// UserDirectory on MemoryBackend, FakeBackend, RedisBackend and ClusterBackend: seed 004's
// profiles and key names; the search ranking against a table of queries and expected orders
// (accented names, prefixes, several terms, field weights, exact above prefix, online first on
// ties); the index consistent after updates and deletions (old tokens no longer find the user,
// and an emptied directory leaves no index entry); the bound on the candidates a search reads;
// stats; presence shared with an OnlineUserManager; bad input with nothing written. Plus unit
// tests of the folding / tokeniser and of seed 004's JSON through JsonCodec.
//
// Every case runs on each backend in its default layout, and on MemoryBackend and FakeBackend
// again in the clustered layout with MemoryConfig::cluster_checks (each script declares every
// key it touches). The in-process backends run the scripts' C++ twins, the servers the Lua: the
// same assertions on both are the parity test.
#include "support/backends.hpp"
#include "support/layout_modes.hpp"

#include <rediskit/services/user_directory.hpp>

#include <boost/test/unit_test.hpp>

#include <cstdint>
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
namespace text = rediskit::detail::text;

namespace {

using rediskit::test::invalid;

struct Seeded {
  char const* id;
  char const* type;
  DirectoryProfile p;
};

/// The directory of the ranking table (the comments give each user's sort name).
std::vector<Seeded> people() {
  return {
      {"m1", "medecin", DirectoryProfile("Dupont", "Hélène", "helene.dupont@chu.fr", "Cardiologie")},
      {"m2", "medecin", DirectoryProfile("Martin", "Paul", "paul.martin@chu.fr", "Cardiologie")},
      {"m3", "medecin", DirectoryProfile("Helm", "Anna", "anna.helm@clinique.fr", "Dermatologie")},
      {"m4", "medecin", DirectoryProfile("Bernard", "Léa", "lea.bernard@chu.fr", "Hématologie")},
      {"p1", "patient", DirectoryProfile("DUPONT", "Marc", "marc@exemple.fr")},
      {"p2", "patient", DirectoryProfile("Lefèvre", "HÉLÈNE", "hlefevre@exemple.fr")},
      {"p3", "patient", DirectoryProfile("Cardin", "Luc", "luc.cardin@exemple.fr")},
      {"p4", "patient", DirectoryProfile("Abel", "Léandre", "abel@exemple.fr")},
  };
}

template <class B>
struct Dir {
  explicit Dir(Mode mode, UserDirectoryOptions o = {})
      : f(mode_fixture<B>(mode)), d(f.backend, with_mode_layout(mode, std::move(o))) {}

  template <class Op>
  auto ok(Op&& op) {
    return f.value(std::forward<Op>(op));
  }
  template <class Op>
  error_code err(Op&& op) {
    return f.error(std::forward<Op>(op));
  }

  bool store(std::string const& id, std::string const& type, DirectoryProfile const& p) {
    return ok(d.async_store_user(id, type, p));
  }
  void seed() {
    for (auto const& s : people())
      BOOST_TEST(store(s.id, s.type, s.p));
  }
  /// The ids the search returns, in order ("" on an error).
  std::vector<std::string> ids(std::string const& q, std::string const& type = "",
                               std::int64_t limit = 20) {
    auto [ec, r] = f.wait(d.async_search_users(q, type, limit));
    BOOST_TEST(!ec, "search '" << q << "': " << ec.message());
    std::vector<std::string> out;
    for (auto const& m : r)
      out.push_back(m.user.id);
    return out;
  }
  /// The ids and scores the search returns, in order.
  std::pair<std::vector<std::string>, std::vector<std::int64_t>> ranked(
      std::string const& q, std::string const& type = "", std::int64_t limit = 20) {
    std::pair<std::vector<std::string>, std::vector<std::int64_t>> out;
    for (auto const& m : ok(d.async_search_users(q, type, limit))) {
      out.first.push_back(m.user.id);
      out.second.push_back(m.score);
    }
    return out;
  }
  UserDirectoryStats stats() { return ok(d.async_get_stats()); }
  /// The index entries of a type whose key is `key` (exact or prefix), as the raw sorted set.
  std::vector<std::string> entries(std::string const& type, std::string const& key) {
    std::string lo = key, hi = key;
    lo.push_back('\0');
    hi.push_back('\1');
    return f.ok(cmd::zrange_by_lex{.key = d.index_key(type),
                                   .min = LexBound::incl(lo),
                                   .max = LexBound::excl(hi)});
  }

  BackendFixture<B> f;
  UserDirectory<B> d;
};

using Ids = std::vector<std::string>;

}  // namespace

BOOST_AUTO_TEST_SUITE(user_directory)

BOOST_AUTO_TEST_CASE(folding_and_tokeniser) {
  BOOST_TEST(text::fold("Hélène") == "helene");
  BOOST_TEST(text::fold("HÉLÈNE") == "helene");
  BOOST_TEST(text::fold("  Marie-Hélène  D'ŒUVRE! ") == "marie helene d oeuvre");
  BOOST_TEST(text::fold("àâäéèêëîïôöùûüçœæÿñ") == "aaaeeeeiioouuucoeaeyn");
  BOOST_TEST(text::fold("ÀÂÄÉÈÊËÎÏÔÖÙÛÜÇŒÆŸÑ") == "aaaeeeeiioouuucoeaeyn");
  BOOST_TEST(text::fold("Łódź Straße Øre Þór ĳs") == "lodz strasse ore thor ijs");
  BOOST_TEST(text::fold("a×b÷c«d»e\xC2\xA0" "f") == "a b c d e f");  // symbols separate
  BOOST_TEST(text::fold("Ωmega Ελένη") == "Ωmega Ελένη");           // other scripts kept
  BOOST_TEST(text::fold("ab\xFF\xC3" "cd\xE9z") == "ab cd z");      // malformed bytes separate
  BOOST_TEST(text::fold("") == "");
  BOOST_TEST(text::fold("--- !!") == "");
  BOOST_TEST((text::fold_tokens("jean.dupont@chu-paris.fr", 32) ==
              Ids{"jean", "dupont", "chu", "paris", "fr"}));
  BOOST_TEST((text::fold_tokens("R2D2 c3po", 32) == Ids{"r2d2", "c3po"}));
  BOOST_TEST((text::fold_tokens("abcdefgh é", 4) == Ids{"abcd", "e"}));
  BOOST_TEST((text::fold_tokens("Ωmega", 2) == Ids{"Ω"}));  // never cut inside a character
  BOOST_TEST((text::fold_tokens("Ωmega", 1) == Ids{}));
}

BOOST_AUTO_TEST_CASE(seed_json_round_trips_through_json_codec) {
  // seed 004's participants as stored by the Node service, with the directory's fields.
  std::string const json =
      R"({"nom":"Sakura","prenom":"Saza","email":"saza@chu.fr","specialite":"cardiologie",)"
      R"("telephone":null})";
  DirectoryProfile p;
  JsonCodec const c;
  BOOST_TEST(!c.decode(json, p, nullptr));
  BOOST_TEST(p.nom == "Sakura");
  BOOST_TEST(p.specialite.value_or("") == "cardiologie");
  std::string again;
  c.encode(p, again);
  BOOST_TEST(again == json);
  // The seed's participant object (a numeric id, no email): the id is the key, not a field.
  DirectoryProfile q;
  BOOST_TEST(!c.decode(R"({"id":5,"nom":"MOLOWA","prenom":"ESSONGA"})", q, nullptr));
  BOOST_TEST((q == DirectoryProfile("MOLOWA", "ESSONGA")));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(store_get_and_seed_key_names, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Dir<B> t(mode);
    DirectoryProfile const p("Sakura", "Saza", "saza@chu.fr", "cardiologie", "0102");
    BOOST_TEST(t.store("79", "medecin", p));
    auto const u = t.ok(t.d.async_get_user("79", "medecin"));
    BOOST_TEST_REQUIRE(u.has_value());
    BOOST_TEST((*u == DirectoryUser{"79", "medecin", p, false}));
    BOOST_TEST(!t.ok(t.d.async_get_user("79", "patient")).has_value());
    BOOST_TEST(!t.ok(t.d.async_get_user("80", "medecin")).has_value());
    if (t.d.key_layout() == KeyLayout::plain) {
      BOOST_TEST(t.d.user_key("79", "medecin") == "messaging:user:medecin:79");
      BOOST_TEST(t.d.index_key("patient") == "messaging:users:patient:index");
    } else {
      BOOST_TEST(t.d.user_key("79", "medecin") == "{messaging}:messaging:user:medecin:79");
      BOOST_TEST(t.d.online_key("medecin") == "{messaging}:messaging:users:medecin:online");
    }
    auto const raw = t.f.ok(cmd::get{t.d.user_key("79", "medecin")});
    BOOST_TEST(raw.value_or("") ==
               R"({"nom":"Sakura","prenom":"Saza","email":"saza@chu.fr",)"
               R"("specialite":"cardiologie","telephone":"0102"})");
    // Replacing reports false and keeps one user.
    BOOST_TEST(!t.store("79", "medecin", DirectoryProfile("Sakura", "Saza")));
    BOOST_TEST(t.stats().medecins == 1);
    BOOST_TEST(t.ok(t.d.async_delete_user("79", "medecin")));
    BOOST_TEST(!t.ok(t.d.async_delete_user("79", "medecin")));
    BOOST_TEST(!t.ok(t.d.async_get_user("79", "medecin")).has_value());
    BOOST_TEST(t.f.ok(cmd::exists{t.d.user_key("79", "medecin")}) == 0);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(search_ranking_table, B, AllBackends) {
  struct Row {
    char const* query;
    char const* type;
    Ids want;
    char const* why;
  };
  std::vector<Row> const table = {
      {"hel", "medecin", {"m1", "m3"}, "name prefixes tie: by name (dupont < helm)"},
      {"helene", "medecin", {"m1"}, "accent folded, exact name"},
      {"HÉLÈNE", "", {"m1", "p2"}, "capitals and accents; both types, by name"},
      {"Hélène", "patient", {"p2"}, "type filter"},
      {"hel", "", {"m1", "m3", "p2"}, "prefix over both types, by name"},
      {"dupont", "", {"m1", "p1"}, "exact name, tie by prenom"},
      {"cardio", "medecin", {"m1", "m2"}, "specialty prefix"},
      {"cardi", "", {"p3", "m1", "m2"}, "name prefix above specialty prefix"},
      {"cardiologie", "", {"m1", "m2"}, "exact specialty"},
      {"lea", "", {"m4", "p4"}, "exact above prefix, against the name order"},
      {"helene cardio", "", {"m1", "p2", "m2"}, "both terms above one"},
      {"dupont chu", "", {"m1", "p1", "m4", "m2"}, "two weak terms above one strong"},
      {"paul hel", "medecin", {"m2", "m1", "m3"}, "exact name above prefixes"},
      {"clinique", "", {"m3"}, "email token"},
      {"exemple", "patient", {"p4", "p3", "p1", "p2"}, "email ties: by name"},
      {"LEFÈVRE", "", {"p2"}, "accented family name"},
      {"lefevre", "", {"p2"}, "folded family name"},
      {"hem", "", {"m4"}, "accented specialty by prefix"},
      {"h", "", {}, "a term shorter than min_prefix matches whole tokens only"},
      {"zzz", "", {}, "no match"},
      {"hel dupont", "", {"m1", "p1", "m3", "p2"}, "p1 (exact) above m3 (prefix)"},
  };
  for_each_mode<B>([&](Mode mode) {
    Dir<B> t(mode);
    t.seed();
    for (auto const& row : table)
      BOOST_TEST_CONTEXT("query '" << row.query << "' type '" << row.type << "': " << row.why) {
        BOOST_TEST(t.ids(row.query, row.type) == row.want, boost::test_tools::per_element());
      }
    // Scores: 100 per term matched, then 6/5/4 exact, 3/2/1 prefix (name/specialty/email).
    auto const r = t.ok(t.d.async_search_users("helene cardio", "", 3));
    BOOST_TEST_REQUIRE(r.size() == 3u);
    BOOST_TEST(r[0].score == 208);
    BOOST_TEST(r[0].terms_matched == 2);
    BOOST_TEST(r[1].score == 106);
    BOOST_TEST(r[2].score == 102);
    BOOST_TEST((r[0].user.profile == people()[0].p));
    BOOST_TEST(r[0].user.type == "medecin");
    // limit
    BOOST_TEST((t.ids("exemple", "patient", 2) == Ids{"p4", "p3"}));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(online_users_first_on_ties_and_stats, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Dir<B> t(mode);
    t.seed();
    BOOST_TEST((t.stats() == UserDirectoryStats{4, 4, 0, 0}));
    BOOST_TEST(t.ok(t.d.async_set_user_online("m3", "medecin")));
    BOOST_TEST(t.ok(t.d.async_set_user_online("m3", "medecin")));  // still there
    BOOST_TEST(t.ok(t.d.async_set_user_online("p2", "patient")));
    BOOST_TEST(t.ok(t.d.async_set_user_online("m1", "medecin")));
    BOOST_TEST(!t.ok(t.d.async_set_user_online("nobody", "medecin")));  // nothing written
    BOOST_TEST(!t.ok(t.d.async_set_user_online("m1", "patient")));
    BOOST_TEST((t.stats() == UserDirectoryStats{4, 4, 2, 1}));
    BOOST_TEST((t.ids("hel", "") == Ids{"m1", "m3", "p2"}));  // all online: by name
    BOOST_TEST(t.ok(t.d.async_set_user_offline("m1", "medecin")));
    BOOST_TEST(!t.ok(t.d.async_set_user_offline("m1", "medecin")));
    BOOST_TEST((t.ids("hel", "") == Ids{"m3", "p2", "m1"}));  // online first
    BOOST_TEST((t.ids("hel", "medecin") == Ids{"m3", "m1"}));
    BOOST_TEST((t.ids("helene", "") == Ids{"p2", "m1"}));
    auto const u = t.ok(t.d.async_get_user("m3", "medecin"));
    BOOST_TEST_REQUIRE(u.has_value());
    BOOST_TEST(u->online);
    auto const r = t.ok(t.d.async_search_users("helm", "", 5));
    BOOST_TEST_REQUIRE(r.size() == 1u);
    BOOST_TEST(r[0].user.online);
    BOOST_TEST((t.stats() == UserDirectoryStats{4, 4, 1, 1}));
    // Deleting an online user takes it out of the online count.
    BOOST_TEST(t.ok(t.d.async_delete_user("m3", "medecin")));
    BOOST_TEST((t.stats() == UserDirectoryStats{3, 4, 0, 1}));
  });
}

// A limit that falls inside a tie: every backend keeps the same users, the best by online
// first, then sort name (as bytes), then type, then id. (MemoryBackend's twin cuts the tie
// itself, the Lua returns it whole for the service to cut.)
BOOST_AUTO_TEST_CASE_TEMPLATE(a_limit_inside_a_tie_keeps_the_same_users_everywhere, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Dir<B> t(mode);
    // All match "dupont" exactly in their name: one relevance. Sort names differ in their
    // prenom, some only in case or accents (folded alike: then type and id decide) or by a
    // space or hyphen (bytes: ' ' < '-' < letters).
    std::vector<Seeded> const tied = {
        {"p9", "patient", DirectoryProfile("Dupont", "Zoé", "z@x.fr")},
        {"p5", "patient", DirectoryProfile("Dupont", "Anne-Marie", "am@x.fr")},
        {"m7", "medecin", DirectoryProfile("Dupont", "Anne Marie", "am2@x.fr", "Cardiologie")},
        {"p6", "patient", DirectoryProfile("Dupont", "ANNE", "a1@x.fr")},
        {"m6", "medecin", DirectoryProfile("Dupont", "Anne", "a2@x.fr", "Cardiologie")},
        {"p7", "patient", DirectoryProfile("Dupont", "Anné", "a3@x.fr")},
        {"m8", "medecin", DirectoryProfile("Dupont", "Bob", "b@x.fr", "Cardiologie")},
        {"p8", "patient", DirectoryProfile("Dupont", "Annemarie", "a4@x.fr")},
    };
    for (auto const& s : tied)
      BOOST_TEST(t.store(s.id, s.type, s.p));
    // "dupont anne" < "dupont anne marie" < "dupont anne-marie" < "dupont annemarie" < "dupont
    // bob" < "dupont zoe"; the three "dupont anne": medecin first, then by id.
    Ids const order = {"m6", "p6", "p7", "m7", "p5", "p8", "m8", "p9"};
    for (std::int64_t limit = 1; limit <= 8; ++limit)
      BOOST_TEST((t.ids("dupont", "", limit) == Ids(order.begin(), order.begin() + limit)),
                 "limit " << limit);
    // Online first: p8 and m8 come to the front, in their own name order.
    BOOST_TEST(t.ok(t.d.async_set_user_online("m8", "medecin")));
    BOOST_TEST(t.ok(t.d.async_set_user_online("p8", "patient")));
    BOOST_TEST((t.ids("dupont", "", 3) == Ids{"p8", "m8", "m6"}));
    BOOST_TEST((t.ids("dupont", "patient", 3) == Ids{"p8", "p6", "p7"}));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(index_follows_updates_and_deletions, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Dir<B> t(mode);
    t.seed();
    BOOST_TEST(!t.entries("medecin", "helene").empty());
    // m1 changes name, email and specialty: the old tokens no longer find her.
    BOOST_TEST(!t.store("m1", "medecin",
                        DirectoryProfile("Durand", "Claire", "claire.durand@chu.fr", "Pédiatrie")));
    BOOST_TEST((t.ids("helene", "medecin") == Ids{}));
    BOOST_TEST((t.ids("hel", "medecin") == Ids{"m3"}));
    BOOST_TEST((t.ids("dupont", "") == Ids{"p1"}));
    BOOST_TEST((t.ids("cardiologie", "") == Ids{"m2"}));
    BOOST_TEST((t.ids("pediatrie", "") == Ids{"m1"}));
    BOOST_TEST((t.ids("clai", "") == Ids{"m1"}));
    BOOST_TEST((t.ids("durand claire", "") == Ids{"m1"}));
    BOOST_TEST(t.entries("medecin", "helene").empty());
    BOOST_TEST(t.entries("medecin", "dupont").empty());
    BOOST_TEST(t.entries("medecin", "du").size() == 1u);  // durand's prefix only
    // The same id as the other type is another user.
    BOOST_TEST((t.ids("helene", "patient") == Ids{"p2"}));
    // Deleting removes the user from every key.
    BOOST_TEST(t.ok(t.d.async_delete_user("p2", "patient")));
    BOOST_TEST((t.ids("helene", "") == Ids{}));
    BOOST_TEST((t.ids("lefevre", "") == Ids{}));
    BOOST_TEST((t.ids("exemple", "") == Ids{"p4", "p3", "p1"}));
    // A directory emptied by deletions and updates leaves no index entry and no meta.
    for (auto const& s : people())
      t.ok(t.d.async_delete_user(s.id, s.type));
    for (char const* type : {"medecin", "patient"}) {
      BOOST_TEST(t.f.ok(cmd::zcard{t.d.index_key(type)}) == 0);
      BOOST_TEST(t.f.ok(cmd::hlen{t.d.meta_key(type)}) == 0);
    }
    BOOST_TEST((t.stats() == UserDirectoryStats{}));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(concurrent_updates_leave_one_consistent_index, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Dir<B> t(mode);
    auto name = [](int i) { return "Nom" + std::string(1, static_cast<char>('a' + i)); };
    int done = 0, created = 0;
    error_code failed;
    for (int i = 0; i < 20; ++i)
      t.d.async_store_user("u", "patient", DirectoryProfile(name(i), "Prénom", name(i) + "@x.fr"),
                           [&done, &created, &failed](error_code ec, bool fresh) {
                             if (ec) failed = ec;
                             created += fresh;
                             ++done;
                           });
    t.f.run_until([&] { return done == 20; });
    BOOST_TEST(!failed, failed.message());
    BOOST_TEST(created == 1);
    auto const u = t.ok(t.d.async_get_user("u", "patient"));
    BOOST_TEST_REQUIRE(u.has_value());
    // Exactly the last profile's tokens find the user; the index holds its entries, no more.
    int found = 0;
    for (int i = 0; i < 20; ++i) {
      std::string const folded = "nom" + std::string(1, static_cast<char>('a' + i));
      bool const last = u->profile.nom == name(i);
      BOOST_TEST((t.ids(folded, "patient") == (last ? Ids{"u"} : Ids{})), folded);
      found += last;
    }
    BOOST_TEST(found == 1);
    auto const want =
        detail::userdir::entries_of(detail::userdir::meta_of(u->profile), "u", 2).size();
    BOOST_TEST(t.f.ok(cmd::zcard{t.d.index_key("patient")}) == std::int64_t(want));
    BOOST_TEST((t.stats() == UserDirectoryStats{0, 1, 0, 0}));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_profile_written_by_another_program_is_read_and_replaced, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Dir<B> t(mode);
    // As a Node service would store it: seed 004's fields and more.
    t.f.ok(cmd::set{.key = t.d.user_key("5", "patient"),
                    .value = R"({"id":5,"type":"patient","nom":"MOLOWA","prenom":"ESSONGA",)"
                             R"("isOnline":false})"});
    auto const u = t.ok(t.d.async_get_user("5", "patient"));
    BOOST_TEST_REQUIRE(u.has_value());
    BOOST_TEST((u->profile == DirectoryProfile("MOLOWA", "ESSONGA")));
    BOOST_TEST((t.ids("molowa") == Ids{}));  // not indexed until stored through the directory
    BOOST_TEST(!t.store("5", "patient", DirectoryProfile("MOLOWA", "ESSONGA")));  // replaced
    BOOST_TEST((t.ids("molowa") == Ids{"5"}));
    BOOST_TEST(t.stats().patients == 1);
    // A stored value that does not decode.
    t.f.ok(cmd::set{.key = t.d.user_key("6", "patient"), .value = "not json"});
    BOOST_TEST(t.err(t.d.async_get_user("6", "patient")) == make_error_code(Error::decode_failed));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_search_reads_a_bounded_number_of_candidates, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    UserDirectoryOptions o;
    o.candidates_per_term = 5;
    Dir<B> t(mode, o);
    // 12 users whose email starts with "mar", then 3 whose name does (ids sort after).
    for (int i = 0; i < 12; ++i)
      t.store("a" + std::to_string(10 + i), "patient",
              DirectoryProfile("Zed", "Zoe", "mar" + std::to_string(i) + "@x.fr"));
    for (int i = 0; i < 3; ++i)
      t.store("z" + std::to_string(i), "patient", DirectoryProfile("Marchand", "N" + std::to_string(i)));
    // 5 entries read: the 3 name matches (best code first), then 2 email matches by id.
    auto const r = t.ok(t.d.async_search_users("mar", "patient", 20));
    BOOST_TEST_REQUIRE(r.size() == 5u);
    BOOST_TEST(r[0].user.id == "z0");
    BOOST_TEST(r[1].user.id == "z1");
    BOOST_TEST(r[2].user.id == "z2");
    BOOST_TEST(r[3].score == 101);
    BOOST_TEST(r[4].score == 101);
    // Two terms, both reads cut at 5: the candidates one term found are probed for the other
    // (a12..a14 came from "zoe" only; their "mar2".."mar4" email prefix is found by the probe).
    auto const [got, scores] = t.ranked("mar zoe", "patient");
    BOOST_TEST((got == Ids{"a10", "a11", "a12", "a13", "a14", "z0", "z1", "z2"}));
    BOOST_TEST((scores == std::vector<std::int64_t>{207, 207, 207, 207, 207, 103, 103, 103}));
    // A longer prefix narrows the range: mar1, mar10, mar11 (tokens "mar1", "mar10", "mar11").
    BOOST_TEST((t.ids("mar1", "patient") == Ids{"a11", "a20", "a21"}));
  });
}

// A candidate that a cut read missed for a term is scored from its token list, by the rule the
// index entries follow: its best token (an exact email token beats a prefix of its name), and
// prefixes only for terms of min_prefix bytes or more.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_candidate_missed_by_a_cut_read_is_scored_as_the_index_would, B,
                              AllBackends) {
  for (std::size_t const min_prefix : {2, 4}) {
    for_each_mode<B>([&](Mode mode) {
      UserDirectoryOptions o;
      o.candidates_per_term = 2;
      o.min_prefix = min_prefix;
      o.key_prefix = "probe" + std::to_string(min_prefix);
      Dir<B> t(mode, o);
      // "mar" reads x1, x2 (exact name, code 0) and is cut; "zed" reads t1, t2 ("zed marie",
      // "zed mariette" sort before "zed xavier") and is cut. x1, x2 have no "zed" token.
      for (char const* x : {"x1", "x2", "x3"})
        t.store(x, "patient", DirectoryProfile("Mar", "Alpha", std::string(x) + "@a.fr"));
      t.store("t1", "patient", DirectoryProfile("Zed", "Marie", "mar@x.fr"));    // "mar": email
      t.store("t2", "patient", DirectoryProfile("Zed", "Mariette", "zz@x.fr"));  // a prefix
      t.store("t3", "patient", DirectoryProfile("Zed", "Xavier", "marc@x.fr"));
      auto const [got, scores] = t.ranked("mar zed", "patient");
      if (min_prefix == 2) {
        // t1: zed exact name 6, mar exact email 4 (not the name's prefix, 3); t2: 6 + 3.
        BOOST_TEST((got == Ids{"t1", "t2", "x1", "x2"}));
        BOOST_TEST((scores == std::vector<std::int64_t>{210, 209, 106, 106}));
      } else {
        // "mar" (3 bytes) is shorter than min_prefix: whole tokens only; t2 has none, and
        // ties with x1, x2, whose sort name ("mar alpha") comes first.
        BOOST_TEST((got == Ids{"t1", "x1", "x2", "t2"}));
        BOOST_TEST((scores == std::vector<std::int64_t>{210, 106, 106, 106}));
      }
    });
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(presence_is_shared_with_an_online_user_manager, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    auto f = mode_fixture<B>(mode);
    OnlineUserManager<B> users(f.backend, with_mode_layout(mode, OnlineUserOptions{}));
    UserDirectory<B> d(f.backend, with_mode_layout(mode, UserDirectoryOptions{}), &users);
    auto ok = [&](auto op) {
      auto [ec, v] = f.wait(std::move(op));
      BOOST_TEST(!ec, ec.message());
      return v;
    };
    BOOST_TEST(ok(d.async_store_user("79", "medecin", DirectoryProfile("Sakura", "Saza"))));
    BOOST_TEST(!ok(users.async_is_user_online("medecin:79")));
    BOOST_TEST(ok(d.async_set_user_online("79", "medecin")));
    BOOST_TEST(ok(users.async_is_user_online("medecin:79")));
    BOOST_TEST(ok(users.async_get_online_count()) == 1);
    BOOST_TEST(!ok(d.async_set_user_online("5", "patient")));  // no such user: not forwarded
    BOOST_TEST(ok(users.async_get_online_count()) == 1);
    BOOST_TEST(ok(d.async_set_user_offline("79", "medecin")));
    BOOST_TEST(!ok(users.async_is_user_online("medecin:79")));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_is_refused_and_writes_nothing, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Dir<B> t(mode);
    DirectoryProfile const good("Dupont", "Jean", "jean@x.fr");
    DirectoryProfile long_nom(std::string(101, 'a'), "Jean");
    DirectoryProfile long_email("Dupont", "Jean", std::string(255, 'e'));
    DirectoryProfile long_spec("Dupont", "Jean", "", std::string(101, 's'));
    DirectoryProfile long_phone("Dupont", "Jean", "", {}, std::string(33, '0'));
    DirectoryProfile no_name("", "", "x@y.fr");
    std::string const long_id(129, 'i');
    struct Bad {
      std::string id, type;
      DirectoryProfile const* p;
      char const* reason;
    };
    std::vector<Bad> const bad = {
        {"", "medecin", &good, "the user id is empty"},
        {long_id, "medecin", &good, "the user id is longer than 128 bytes"},
        {"1", "docteur", &good, "unknown user type 'docteur'"},
        {"1", "", &good, "unknown user type ''"},
        {"1", "medecin", &long_nom, "the field 'nom' is longer than 100 bytes"},
        {"1", "medecin", &long_email, "the field 'email' is longer than 254 bytes"},
        {"1", "medecin", &long_spec, "the field 'specialite' is longer than 100 bytes"},
        {"1", "medecin", &long_phone, "the field 'telephone' is longer than 32 bytes"},
        {"1", "patient", &no_name, "the profile has neither nom nor prenom"},
    };
    for (auto const& b : bad)
      BOOST_TEST_CONTEXT(b.reason) {
        BOOST_TEST(t.err(t.d.async_store_user(b.id, b.type, *b.p)) == invalid);
        BOOST_TEST(UserDirectory<B>::check_user(b.id, b.type, *b.p).find(b.reason) == 0u);
      }
    BOOST_TEST(UserDirectory<B>::check_user("1", "medecin", good) == "");
    // 100 bytes exactly are fine.
    DirectoryProfile edge(std::string(100, 'a'), "Jean", std::string(254, 'e'));
    BOOST_TEST(UserDirectory<B>::check_user("1", "medecin", edge) == "");
    BOOST_TEST(t.err(t.d.async_get_user("", "medecin")) == invalid);
    BOOST_TEST(t.err(t.d.async_get_user("1", "x")) == invalid);
    BOOST_TEST(t.err(t.d.async_delete_user("", "patient")) == invalid);
    BOOST_TEST(t.err(t.d.async_set_user_online("1", "x")) == invalid);
    BOOST_TEST(t.err(t.d.async_set_user_offline("", "medecin")) == invalid);
    // Nothing was written.
    BOOST_TEST((t.stats() == UserDirectoryStats{}));
    for (char const* type : {"medecin", "patient"}) {
      BOOST_TEST(t.f.ok(cmd::exists{t.d.user_key("1", type)}) == 0);
      BOOST_TEST(t.f.ok(cmd::zcard{t.d.index_key(type)}) == 0);
    }
    // Queries.
    t.store("1", "medecin", good);
    struct BadQuery {
      std::string q, type;
      std::int64_t limit;
      char const* reason;
    };
    std::vector<BadQuery> const queries = {
        {"", "", 10, "the query has no letter or digit"},
        {" -- !! ", "", 10, "the query has no letter or digit"},
        {"a b c d e f g h i", "", 10, "the query has 9 distinct terms"},
        {std::string(1025, 'a'), "", 10, "the query is longer than 1024 bytes"},
        {"dupont", "docteur", 10, "unknown user type 'docteur'"},
        {"dupont", "", 0, "the limit must be in [1, 100]"},
        {"dupont", "", 101, "the limit must be in [1, 100]"},
    };
    for (auto const& q : queries)
      BOOST_TEST_CONTEXT(q.reason) {
        BOOST_TEST(t.err(t.d.async_search_users(q.q, q.type, q.limit)) == invalid);
        BOOST_TEST(t.d.check_query(q.q, q.type, q.limit).find(q.reason) == 0u);
      }
    BOOST_TEST(t.d.check_query("a a a a a a a a a", "", 10) == "");  // one distinct term
    BOOST_TEST((t.ids("jean", "medecin", 100) == Ids{"1"}));
  });
}

BOOST_AUTO_TEST_CASE(options_that_cannot_work_throw) {
  boost::asio::io_context ioc;
  MemoryBackend b(ioc);
  auto throws = [&](UserDirectoryOptions o) {
    try {
      UserDirectory<MemoryBackend> d(b, std::move(o));
    } catch (Exception const& e) {
      return e.code() == make_error_code(Error::invalid_config);
    }
    return false;
  };
  UserDirectoryOptions o;
  o.min_prefix = 0;
  BOOST_TEST(throws(o));
  o = {};
  o.candidates_per_term = 501;
  BOOST_TEST(throws(o));
  o = {};
  o.max_query_terms = 9;
  BOOST_TEST(throws(o));
  o = {};
  o.key_layout = KeyLayout::clustered;
  o.cluster_tag = "a{b";
  BOOST_TEST(throws(o));
  o.cluster_tag = "";
  BOOST_TEST(throws(o));
  o.cluster_tag = "t";
  o.key_prefix = "";  // no prefix: "{t}:user:..."
  BOOST_TEST(!throws(o));
  BOOST_TEST(UserDirectory<MemoryBackend>(b, o).user_key("1", "patient") == "{t}:user:patient:1");
  o = {};
  BOOST_TEST(!throws(o));
}

BOOST_AUTO_TEST_SUITE_END()
