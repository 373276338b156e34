// SessionStore on MemoryBackend, FakeBackend, RedisBackend and ClusterBackend: create / get /
// touch (sliding expiry), revoke, revoke_all, list (expired sessions pruned), the per-user cap,
// refresh-token rotation and reuse detection (the whole family revoked), tokens never in key
// names nor in any command sent, the seed's raw layout as an explicit option, and bad input.
//
// Every case runs on each backend in its default layout (ClusterBackend: clustered; the others:
// plain), then again on MemoryBackend and FakeBackend in the clustered layout with
// MemoryConfig::cluster_checks, where a script that touches a key it did not declare, or keys
// of two slots, fails as on a cluster. The second run is a run-time parameter (Mode).
#include "support/backends.hpp"
#include "support/layout_modes.hpp"
#include "support/margin.hpp"

#include <rediskit/services/session_store.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/describe/class.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
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

struct Profile {
  std::string name;
  int level = 0;
};
BOOST_DESCRIBE_STRUCT(Profile, (), (name, level))

namespace {


constexpr std::int64_t kDay = 24 * 3600 * 1000;
using rediskit::test::invalid;

template <class B>
struct Store {
  explicit Store(Mode mode, SessionOptions o = {})
      : clustered(mode == Mode::clustered_checked || BackendFixture<B>::is_cluster),
        f(mode_fixture<B>(mode)),
        s(f.backend, with_mode_layout(mode, std::move(o))) {}


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

  SessionTokens create(std::string_view user, std::string name = "Ann",
                       std::string device = "phone") {
    Profile const p{std::move(name), 7};
    return ok(s.async_create(user, p, SessionRequest(std::move(device))));
  }
  std::optional<Session<Profile>> get(std::string_view access) {
    return ok(s.template async_get<Profile>(access));
  }
  bool valid(std::string_view access) { return get(access).has_value(); }
  RotateResult rotate(std::string_view refresh) { return ok(s.async_rotate_refresh(refresh)); }
  std::vector<SessionInfo> list(std::string_view user) { return ok(s.async_list(user)); }
  std::vector<std::string> ids(std::string_view user) {
    std::vector<std::string> out;
    for (auto const& i : list(user))
      out.push_back(i.id);
    return out;
  }
  bool exists(std::string const& key) { return f.ok(cmd::exists{key}) == 1; }

  /// Every key of the test database (SCAN; on a cluster, every master).
  std::vector<std::string> all_keys() {
    std::vector<std::string> out;
    std::uint64_t cursor = 0;
    do {
      auto page = f.ok(cmd::scan{.cursor = cursor, .count = 1000});
      cursor = page.cursor;
      out.insert(out.end(), page.keys.begin(), page.keys.end());
    } while (cursor != 0);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  bool clustered;
  BackendFixture<B> f;
  SessionStore<B> s;
};

std::string secret_of(std::string const& token) {
  return token.substr(token.find('.') + 1);
}

/// What a deferred operation completing with void(error_code, T) gives: optional<tuple<ec, T>>.
template <class Sig>
struct SlotOf;
template <class T>
struct SlotOf<void(error_code, T)> {
  using type = std::optional<std::tuple<error_code, T>>;
};
template <class Op>
using Slot = typename SlotOf<typename boost::asio::completion_signature_of<Op>::type>::type;

}  // namespace

BOOST_AUTO_TEST_SUITE(session_store)

BOOST_AUTO_TEST_CASE(sha256_is_openssl_s_and_tokens_name_their_user) {
  // FIPS 180-2's test vectors.
  BOOST_TEST(detail::sessions::sha256_hex("abc") ==
             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  BOOST_TEST(detail::sessions::sha256_hex("") ==
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  using S = SessionStore<MemoryBackend>;
  BOOST_TEST(S::user_of("dTE.0123456789abcdefghijkl").value_or("") == "u1");  // "dTE": "u1"
  BOOST_TEST(!S::user_of("dTE.0123456789abcdefghijk"));       // a secret under 22 characters
  BOOST_TEST(!S::user_of("dTF.0123456789abcdefghijkl"));      // not canonical base64url
  BOOST_TEST(!S::user_of("d+E.0123456789abcdefghijkl"));      // not base64url
  BOOST_TEST(!S::user_of(".0123456789abcdefghijkl"));         // no user
  BOOST_TEST(!S::user_of("0123456789abcdefghijkl0123"));      // no '.'
  BOOST_TEST(!S::user_of(""));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(create_then_get_gives_the_data_and_the_session, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Store<B> st(mode);
    auto const t = st.create("u1", "Ann", "Firefox on Linux");
    BOOST_TEST(t.access_token != t.refresh_token);
    BOOST_TEST(t.access_token.starts_with("dTE."));
    BOOST_TEST(secret_of(t.access_token).size() == 43u);  // 256 bits, base64url
    BOOST_TEST(*st.s.user_of(t.refresh_token) == "u1");
    BOOST_TEST(t.info.id.size() == 32u);
    BOOST_TEST(t.info.user_id == "u1");
    BOOST_TEST(t.info.device == "Firefox on Linux");
    BOOST_TEST(t.info.last_seen_ms == t.info.created_at_ms);
    BOOST_TEST(t.info.expires_at_ms == t.info.created_at_ms + 7 * kDay);
    BOOST_TEST(t.info.refresh_expires_at_ms == t.info.created_at_ms + 30 * kDay);

    auto const g = st.get(t.access_token);
    BOOST_REQUIRE(g);
    BOOST_TEST(g->data.name == "Ann");
    BOOST_TEST(g->data.level == 7);
    BOOST_TEST(g->info.id == t.info.id);
    BOOST_TEST(g->info.user_id == "u1");
    BOOST_TEST(g->info.device == "Firefox on Linux");
    BOOST_TEST(g->info.created_at_ms == t.info.created_at_ms);
    BOOST_TEST(g->info.expires_at_ms == t.info.expires_at_ms);
    BOOST_TEST(!st.valid(t.refresh_token));  // a refresh token is no access token
    // A second device, and another user.
    auto const t2 = st.create("u1", "Ann", "phone");
    auto const o = st.create("u2", "Bob");
    BOOST_TEST(t2.info.id != t.info.id);
    BOOST_TEST(st.list("u1").size() == 2u);
    BOOST_TEST(st.get(o.access_token)->data.name == "Bob");
    BOOST_TEST(st.list("nobody").empty());

    // Seed 002's names (the token's SHA-256, not the token); on a cluster with the user's tag.
    std::string const a = detail::sessions::sha256_hex(t.access_token);
    std::string const r = detail::sessions::sha256_hex(t.refresh_token);
    BOOST_TEST(st.s.session_key(t.access_token) ==
               (st.clustered ? "session:{u1}:" + a : "session:" + a));
    BOOST_TEST(st.s.refresh_key(t.refresh_token) ==
               (st.clustered ? "refresh:{u1}:" + r : "refresh:" + r));
    BOOST_TEST(st.s.user_sessions_key("u1") ==
               (st.clustered ? "user:sessions:{u1}" : "user:sessions:u1"));
    BOOST_TEST(st.s.user_data_key("u1") ==
               (st.clustered ? "user:session_data:{u1}" : "user:session_data:u1"));
    BOOST_TEST(st.f.ok(cmd::type{st.s.user_sessions_key("u1")}) == "zset");
    auto const pttl = st.f.ok(cmd::pttl{st.s.session_key(t.access_token)});
    BOOST_TEST(pttl > 7 * kDay - 60'000);
    BOOST_TEST(pttl <= 7 * kDay);
    auto const rttl = st.f.ok(cmd::pttl{st.s.refresh_key(t.refresh_token)});
    BOOST_TEST(rttl > 30 * kDay - 60'000);
    BOOST_TEST(rttl <= 30 * kDay);
    BOOST_TEST(st.f.ok(cmd::pttl{st.s.user_sessions_key("u1")}) > 29 * kDay);

    // User ids are data: a glob character, a brace (the cluster tag), a colon.
    for (std::string const user : {"*", "a}{b", "x:y", "{u1}"}) {
      BOOST_TEST_CONTEXT("user " << user) {
        auto const w = st.create(user, "Eve");
        BOOST_TEST(*st.s.user_of(w.access_token) == user);
        auto const gw = st.get(w.access_token);
        BOOST_REQUIRE(gw);
        BOOST_TEST(gw->info.user_id == user);
        BOOST_TEST(st.list(user).size() == 1u);
      }
    }
    BOOST_TEST(st.list("u1").size() == 2u);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(touch_slides_the_expiry_and_get_does_not, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    {
      Store<B> st(mode, SessionOptions{.access_ttl = 1000ms, .refresh_ttl = 1h});
      // The checks that need the 0.4 s margins are made only if they held (margin.hpp).
      test::Margin const created(1000ms);
      auto const t = st.create("u1");
      st.f.advance(600ms);
      test::Margin const touched(1000ms);
      auto const i = st.ok(st.s.async_touch(t.access_token));
      if (!i && !created.held()) {
        BOOST_TEST_MESSAGE("the machine stalled past the access TTL before the touch");
        return;
      }
      BOOST_REQUIRE(i);
      BOOST_TEST(i->id == t.info.id);
      BOOST_TEST(i->last_seen_ms >= t.info.created_at_ms + 600);
      BOOST_TEST(i->expires_at_ms == i->last_seen_ms + 1000);
      st.f.advance(600ms);  // 1.2 s after creation: alive only because of the touch
      bool const alive = st.valid(t.access_token);
      if (touched.held()) BOOST_TEST(alive);
      st.f.advance(600ms);  // gets do not renew: 1.2 s after the touch
      BOOST_TEST(!st.valid(t.access_token));
      BOOST_TEST(!st.ok(st.s.async_touch(t.access_token)));
      // The refresh token outlives it: the session is still listed, and can be refreshed.
      BOOST_TEST(st.ids("u1") == std::vector<std::string>{t.info.id});
      auto const r = st.rotate(t.refresh_token);
      BOOST_TEST(r.rotated());
      BOOST_TEST(st.valid(r.session.access_token));
    }
    if constexpr (BackendFixture<B>::is_fake) {  // seed 002's 7 days, exactly, on the manual clock
      Store<B> st(mode);
      auto const t = st.create("u1");
      st.f.advance(std::chrono::hours(24 * 6));
      auto const i = st.ok(st.s.async_touch(t.access_token));
      BOOST_REQUIRE(i);
      BOOST_TEST(i->last_seen_ms == t.info.created_at_ms + 6 * kDay);
      BOOST_TEST(i->expires_at_ms == t.info.created_at_ms + 13 * kDay);
      BOOST_TEST(st.f.ok(cmd::pttl{st.s.session_key(t.access_token)}) == 7 * kDay);
      st.f.advance(std::chrono::hours(24 * 6));
      BOOST_TEST(st.get(t.access_token)->info.expires_at_ms == t.info.created_at_ms + 13 * kDay);
      st.f.advance(std::chrono::hours(24) - 1ms);
      BOOST_TEST(st.valid(t.access_token));
      st.f.advance(1ms);
      BOOST_TEST(!st.valid(t.access_token));
    }
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(revoke_logs_out_one_device, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Store<B> st(mode);
    auto const a = st.create("u1", "Ann", "phone");
    auto const b = st.create("u1", "Ann", "laptop");
    auto const c = st.create("u2", "Bob");
    BOOST_TEST(st.ok(st.s.async_revoke(a.access_token)));
    BOOST_TEST(!st.valid(a.access_token));
    BOOST_TEST((st.rotate(a.refresh_token).status == RotateStatus::unknown));
    BOOST_TEST(st.valid(b.access_token));
    BOOST_TEST(st.valid(c.access_token));
    BOOST_TEST(st.ids("u1") == std::vector<std::string>{b.info.id});
    // Its token keys are gone, the refresh key too (deleted by the second step).
    BOOST_TEST(!st.exists(st.s.session_key(a.access_token)));
    BOOST_TEST(!st.exists(st.s.refresh_key(a.refresh_token)));
    BOOST_TEST(!st.ok(st.s.async_revoke(a.access_token)));   // nothing left to revoke
    BOOST_TEST(!st.ok(st.s.async_revoke(b.refresh_token)));  // a refresh token revokes nothing
    BOOST_TEST(st.valid(b.access_token));
    // One device by session id, as a "log out that device" button does.
    BOOST_TEST(!st.ok(st.s.async_revoke_session("u2", b.info.id)));  // not u2's session
    BOOST_TEST(st.ok(st.s.async_revoke_session("u1", b.info.id)));
    BOOST_TEST(!st.ok(st.s.async_revoke_session("u1", b.info.id)));
    BOOST_TEST(!st.valid(b.access_token));
    BOOST_TEST(!st.exists(st.s.refresh_key(b.refresh_token)));
    BOOST_TEST(st.list("u1").empty());
    BOOST_TEST(st.valid(c.access_token));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(revoke_all_logs_out_every_device_of_the_user, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Store<B> st(mode);
    std::vector<SessionTokens> mine;
    for (char const* device : {"phone", "laptop", "tablet"})
      mine.push_back(st.create("u1", "Ann", device));
    auto const other = st.create("u2", "Bob");
    BOOST_TEST(st.ok(st.s.async_revoke_all("u1")) == 3);
    // Only u2's keys are left: u1's sessions, their token keys, its zset and hash are gone.
    std::vector<std::string> want{st.s.session_key(other.access_token),
                                  st.s.refresh_key(other.refresh_token),
                                  st.s.user_sessions_key("u2"), st.s.user_data_key("u2")};
    std::sort(want.begin(), want.end());
    BOOST_TEST(st.all_keys() == want, boost::test_tools::per_element());
    for (auto const& t : mine) {
      BOOST_TEST(!st.valid(t.access_token));
      BOOST_TEST((st.rotate(t.refresh_token).status == RotateStatus::unknown));
    }
    BOOST_TEST(st.list("u1").empty());
    BOOST_TEST(st.ok(st.s.async_revoke_all("u1")) == 0);
    BOOST_TEST(st.ok(st.s.async_revoke_all("nobody")) == 0);
    BOOST_TEST(st.valid(other.access_token));
    // The user can log in again.
    auto const again = st.create("u1");
    BOOST_TEST(st.valid(again.access_token));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(list_never_shows_expired_sessions_and_prunes_them, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Store<B> st(mode, SessionOptions{.access_ttl = 1000ms, .refresh_ttl = 1000ms});
    // The checks that need a session alive are made only if its second had not passed
    // (support/margin.hpp).
    test::Margin const before_a(1000ms);
    auto const a = st.create("u1", "Ann", "old");
    st.f.advance(600ms);
    test::Margin const before_b(1000ms);
    auto const b = st.create("u1", "Ann", "new");
    auto const both = st.list("u1");
    if (!before_a.held()) {
      BOOST_TEST_MESSAGE("the machine stalled past the first session's TTL");
      return;
    }
    BOOST_REQUIRE(both.size() == 2u);
    BOOST_TEST(both[0].id == a.info.id);  // the one that ends first comes first
    BOOST_TEST(both[0].device == "old");
    BOOST_TEST(both[1].id == b.info.id);
    st.f.advance(600ms);  // a ended 200 ms ago; b has 400 ms left
    auto const index = st.s.user_sessions_key("u1");
    auto const data = st.s.user_data_key("u1");
    auto const unpruned = st.f.ok(cmd::zcard{index});
    auto const only_b = st.ids("u1");
    auto const pruned = st.f.ok(cmd::zcard{index});
    auto const records = st.f.ok(cmd::hlen{data});
    if (before_b.held()) {        // else b ended too, and the index with it (its TTL is b's)
      BOOST_TEST(unpruned == 2);  // nothing ran since: not pruned yet
      BOOST_TEST(only_b == std::vector<std::string>{b.info.id});
      BOOST_TEST(pruned == 1);   // pruned by the read
      BOOST_TEST(records == 8);  // with a's record
    }
    st.f.advance(600ms);  // b ended too
    test::Margin const before_c(1000ms);
    auto const c = st.create("u1", "Ann", "newest");
    auto const after_write = st.f.ok(cmd::zcard{index});
    auto const records_c = st.f.ok(cmd::hlen{data});
    auto const only_c = st.ids("u1");
    if (before_c.held()) {
      BOOST_TEST(after_write == 1);  // pruned by the write
      BOOST_TEST(records_c == 8);
      BOOST_TEST(only_c == std::vector<std::string>{c.info.id});
    }
    st.f.advance(1200ms);  // all gone: the user's zset and hash expire with the last session
    BOOST_TEST(st.list("u1").empty());
    BOOST_TEST(!st.exists(index));
    BOOST_TEST(!st.exists(data));
    BOOST_TEST(st.all_keys().empty());
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_per_user_cap_evicts_the_sessions_that_end_first, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Store<B> st(mode, SessionOptions{.max_sessions_per_user = 3});
    std::vector<SessionTokens> t;
    for (int i = 0; i < 5; ++i) {
      if (i > 0) st.f.advance(5ms);  // distinct expiries: a defined order
      t.push_back(st.create("u1", "Ann", "device " + std::to_string(i)));
    }
    BOOST_TEST(st.ids("u1") ==
               (std::vector<std::string>{t[2].info.id, t[3].info.id, t[4].info.id}));
    for (int i = 0; i < 5; ++i) {
      BOOST_TEST_CONTEXT("session " << i) {
        BOOST_TEST(st.valid(t[i].access_token) == (i >= 2));
        // Evicted sessions leave no token key behind (the create's second step).
        BOOST_TEST(st.exists(st.s.refresh_key(t[i].refresh_token)) == (i >= 2));
      }
    }
    BOOST_TEST(st.f.ok(cmd::zcard{st.s.user_sessions_key("u1")}) == 3);
    BOOST_TEST(st.f.ok(cmd::hlen{st.s.user_data_key("u1")}) == 24);
    // A refresh renews a session's end: it is then the last to be evicted.
    st.f.advance(5ms);
    auto const r = st.rotate(t[2].refresh_token);
    BOOST_TEST(r.rotated());
    st.f.advance(5ms);
    auto const n = st.create("u1");
    BOOST_TEST(st.ids("u1") == (std::vector<std::string>{t[4].info.id, t[2].info.id, n.info.id}));
    BOOST_TEST(!st.valid(t[3].access_token));
    // Another user's sessions do not count.
    st.create("u2");
    BOOST_TEST(st.list("u2").size() == 1u);
    BOOST_TEST(st.list("u1").size() == 3u);
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(rotation_issues_new_tokens_and_retires_the_old_ones, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Store<B> st(mode);
    auto const t = st.create("u1", "Ann", "phone");
    st.f.advance(5ms);
    auto const r = st.rotate(t.refresh_token);
    BOOST_REQUIRE(r.rotated());
    BOOST_TEST(r.session.access_token != t.access_token);
    BOOST_TEST(r.session.refresh_token != t.refresh_token);
    BOOST_TEST(*st.s.user_of(r.session.access_token) == "u1");
    BOOST_TEST(r.session.info.id == t.info.id);  // the same session (token family)
    BOOST_TEST(r.session.info.user_id == "u1");
    BOOST_TEST(r.session.info.device == "phone");
    BOOST_TEST(r.session.info.created_at_ms == t.info.created_at_ms);
    BOOST_TEST(r.session.info.last_seen_ms > t.info.created_at_ms);
    BOOST_TEST(r.session.info.expires_at_ms == r.session.info.last_seen_ms + 7 * kDay);
    BOOST_TEST(r.session.info.refresh_expires_at_ms == r.session.info.last_seen_ms + 30 * kDay);
    BOOST_TEST(!st.valid(t.access_token));  // the old access token is retired
    auto const g = st.get(r.session.access_token);
    BOOST_REQUIRE(g);
    BOOST_TEST(g->data.name == "Ann");
    BOOST_TEST(g->info.id == t.info.id);
    BOOST_TEST(!st.exists(st.s.session_key(t.access_token)));  // deleted by the second step
    BOOST_TEST(st.exists(st.s.refresh_key(t.refresh_token)));  // kept: to recognise its reuse
    // A chain of rotations, each with the last refresh token.
    auto last = r.session;
    for (int i = 0; i < 3; ++i) {
      auto const next = st.rotate(last.refresh_token);
      BOOST_REQUIRE(next.rotated());
      BOOST_TEST(!st.valid(last.access_token));
      BOOST_TEST(st.valid(next.session.access_token));
      last = next.session;
    }
    BOOST_TEST(st.ids("u1") == std::vector<std::string>{t.info.id});
    // An access token is no refresh token; an unknown one changes nothing.
    BOOST_TEST((st.rotate(last.access_token).status == RotateStatus::unknown));
    BOOST_TEST(
        (st.rotate("dTE.this-token-was-never-issued-by-anyone").status == RotateStatus::unknown));
    BOOST_TEST(st.valid(last.access_token));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(reusing_a_rotated_refresh_token_revokes_the_whole_family, B,
                              AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Store<B> st(mode);
    auto const t = st.create("u1", "Ann", "phone");
    auto const other = st.create("u1", "Ann", "laptop");  // another device of the same user
    auto const r1 = st.rotate(t.refresh_token);           // the legitimate client
    BOOST_REQUIRE(r1.rotated());
    auto const r2 = st.rotate(r1.session.refresh_token);
    BOOST_REQUIRE(r2.rotated());
    // A thief presents a refresh token that was already rotated.
    auto const stolen = st.rotate(r1.session.refresh_token);
    BOOST_TEST((stolen.status == RotateStatus::reused));
    BOOST_TEST(stolen.session.info.id == t.info.id);  // which session, for the alert
    BOOST_TEST(stolen.session.info.user_id == "u1");
    BOOST_TEST(stolen.session.info.device == "phone");
    BOOST_TEST(stolen.session.access_token.empty());
    BOOST_TEST(stolen.session.refresh_token.empty());
    // The whole family is revoked: the newest tokens too.
    BOOST_TEST(!st.valid(r2.session.access_token));
    BOOST_TEST((st.rotate(r2.session.refresh_token).status == RotateStatus::unknown));
    BOOST_TEST((st.rotate(t.refresh_token).status == RotateStatus::unknown));
    BOOST_TEST((st.rotate(r1.session.refresh_token).status == RotateStatus::unknown));
    BOOST_TEST(!st.exists(st.s.session_key(r2.session.access_token)));
    BOOST_TEST(!st.exists(st.s.refresh_key(r2.session.refresh_token)));
    // The user's other device is untouched.
    BOOST_TEST(st.valid(other.access_token));
    BOOST_TEST(st.ids("u1") == std::vector<std::string>{other.info.id});
    // The first token of a family, reused after one rotation, revokes it as well.
    auto const u = st.create("u1", "Ann", "tablet");
    auto const u1 = st.rotate(u.refresh_token);
    BOOST_REQUIRE(u1.rotated());
    BOOST_TEST((st.rotate(u.refresh_token).status == RotateStatus::reused));
    BOOST_TEST(!st.valid(u1.session.access_token));
    BOOST_TEST(st.ids("u1") == std::vector<std::string>{other.info.id});
  });
}

// Two tabs rotating one refresh token at once: the scripts run one after the other, so one
// rotates and the other presents a token already rotated, which is reuse: the family goes, the
// winner's new tokens with it (no grace window; the README says so). And a logout sent with a
// rotation: each runs whole, in the order sent, never half of one.
BOOST_AUTO_TEST_CASE_TEMPLATE(concurrent_rotations_and_logout_are_whole_and_ordered, B,
                              AllBackends) {
  Store<B> st(Mode::native);
  auto const t = st.create("u1", "Ann", "phone");
  Slot<decltype(st.s.async_rotate_refresh(t.refresh_token))> a, b;
  auto into = [](auto& slot) {
    return [&slot](error_code ec, RotateResult r) { slot.emplace(ec, std::move(r)); };
  };
  st.s.async_rotate_refresh(t.refresh_token)(into(a));
  st.s.async_rotate_refresh(t.refresh_token)(into(b));
  st.f.run_until([&] { return a && b; });
  auto const& [ea, ra] = *a;
  auto const& [eb, rb] = *b;
  BOOST_TEST(!ea, ea.message());
  BOOST_TEST(!eb, eb.message());
  BOOST_TEST(ra.rotated() + rb.rotated() == 1);
  BOOST_TEST((ra.status == RotateStatus::reused) + (rb.status == RotateStatus::reused) == 1);
  auto const& winner = ra.rotated() ? ra : rb;
  BOOST_TEST(!st.valid(winner.session.access_token));
  BOOST_TEST((st.rotate(winner.session.refresh_token).status == RotateStatus::unknown));
  BOOST_TEST(st.list("u1").empty());

  auto const u = st.create("u2", "Bo", "laptop");
  Slot<decltype(st.s.async_revoke(u.access_token))> out;
  st.s.async_revoke(u.access_token)([&out](error_code ec, bool v) { out.emplace(ec, v); });
  st.s.async_rotate_refresh(u.refresh_token)(into(a = {}));
  st.f.run_until([&] { return out && a; });
  BOOST_TEST(std::get<1>(*out));  // the logout, sent first, ran first
  BOOST_TEST((std::get<1>(*a).status == RotateStatus::unknown));  // nothing left to rotate
  BOOST_TEST(st.list("u2").empty());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(no_token_appears_in_any_key_name_nor_any_command, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Store<B> st(mode);
    std::vector<std::string> tokens;
    auto keep = [&tokens](SessionTokens const& t) {
      tokens.push_back(t.access_token);
      tokens.push_back(t.refresh_token);
    };
    if constexpr (BackendFixture<B>::is_fake) st.f.backend.clear_log();
    auto const a = st.create("u1", "Ann", "phone");
    auto const b = st.create("u1", "Ann", "laptop");
    auto const c = st.create("u2", "Bob");
    keep(a);
    keep(b);
    keep(c);
    auto const r = st.rotate(a.refresh_token);
    BOOST_REQUIRE(r.rotated());
    keep(r.session);
    BOOST_TEST(st.valid(r.session.access_token));
    BOOST_TEST(st.ok(st.s.async_touch(b.access_token)).has_value());
    BOOST_TEST(st.list("u1").size() == 2u);
    auto const own = st.ok(
        st.s.async_create("u3", Profile{"Cy", 1},
                          SessionRequest("cli", "my-own-access-secret-0123",
                                         "my-own-refresh-secret-0123")));
    keep(own);
    BOOST_TEST(own.access_token == "dTM.my-own-access-secret-0123");

    auto const keys = st.all_keys();
    BOOST_TEST(keys.size() >= 10u);
    for (auto const& key : keys) {
      for (auto const& t : tokens) {
        BOOST_TEST_CONTEXT("key " << key) {
          BOOST_TEST(key.find(t) == std::string::npos);
          BOOST_TEST(key.find(secret_of(t)) == std::string::npos);
        }
      }
    }
    // A token's key names its SHA-256: 64 hex digits.
    for (auto const& t : tokens) {
      auto const k = st.s.session_key(t);
      BOOST_TEST(k.ends_with(":" + detail::sessions::sha256_hex(t)));
      BOOST_TEST(st.s.refresh_key(t).ends_with(":" + detail::sessions::sha256_hex(t)));
    }
    // Nor does any command sent (what MONITOR or a slow log would show).
    if constexpr (BackendFixture<B>::is_fake) {
      auto const log = st.f.backend.command_log();
      BOOST_TEST(log.size() >= 8u);
      for (auto const& command : log)
        for (auto const& arg : command)
          for (auto const& t : tokens) {
            BOOST_TEST(arg.find(t) == std::string::npos);
            BOOST_TEST(arg.find(secret_of(t)) == std::string::npos);
          }
    }
  });
}

// The follow-up that deletes token keys left behind is housekeeping: when it fails, the
// operation still completes with its result, and the keys it left are inert (the user's zset
// and the session's record decide) until presented, when they are deleted.
BOOST_AUTO_TEST_CASE(a_failed_cleanup_step_leaves_only_inert_keys) {
  for_each_mode<FakeBackend>([&](Mode mode) {
    Store<FakeBackend> st(mode);
    // Starts `op` with its first step running now, and the next backend operation failing.
    auto second_step_fails = [&st](auto op) {
      Slot<decltype(op)> out;
      std::move(op)([&out](error_code ec, auto v) { out.emplace(ec, std::move(v)); });
      st.f.backend.fail_next(1, Error::connection_lost);
      st.f.run_until([&out] { return out.has_value(); });
      BOOST_TEST(!std::get<0>(*out));
      return std::get<1>(std::move(*out));
    };
    auto const t = st.create("u1");
    auto const r = second_step_fails(st.s.async_rotate_refresh(t.refresh_token));
    BOOST_REQUIRE(r.rotated());
    BOOST_TEST(st.exists(st.s.session_key(t.access_token)));  // not deleted: the step failed
    BOOST_TEST(!st.valid(t.access_token));  // but no longer the session's access token
    BOOST_TEST(!st.exists(st.s.session_key(t.access_token)));  // deleted when presented
    BOOST_TEST(st.valid(r.session.access_token));

    BOOST_TEST(second_step_fails(st.s.async_revoke(r.session.access_token)));
    BOOST_TEST(!st.valid(r.session.access_token));
    BOOST_TEST(st.exists(st.s.refresh_key(r.session.refresh_token)));
    BOOST_TEST((st.rotate(r.session.refresh_token).status == RotateStatus::unknown));
    BOOST_TEST(!st.exists(st.s.refresh_key(r.session.refresh_token)));
    BOOST_TEST(st.list("u1").empty());
  });
}

// The forms a coroutine writes (default token: deferred), including a braced SessionRequest
// inside co_await, which g++ 12 miscompiles for aggregates that own memory (PITFALLS.md): it
// has constructors. Run under ASan in CI.
BOOST_AUTO_TEST_CASE(coroutines_use_the_natural_call_forms) {
  Store<FakeBackend> st(Mode::native);
  bool done = false;
  auto flow = [](SessionStore<FakeBackend>& s, bool& done) -> boost::asio::awaitable<void> {
    Profile const p{"Ann", 3};
    SessionTokens const t = co_await s.async_create("u1", p, {"Firefox on a long device name"});
    SessionTokens const t2 = co_await s.async_create("u1", p, SessionRequest("a phone"));
    SessionTokens const t3 = co_await s.async_create("u1", p);
    std::optional<Session<Profile>> const g = co_await s.async_get<Profile>(t.access_token);
    BOOST_TEST(g->data.name == "Ann");
    BOOST_TEST(g->info.device == "Firefox on a long device name");
    BOOST_TEST((co_await s.async_touch(t2.access_token)).has_value());
    RotateResult const r = co_await s.async_rotate_refresh(t.refresh_token, {"", "", ""});
    BOOST_TEST(r.rotated());
    BOOST_TEST(co_await s.async_revoke(t3.access_token));
    std::vector<SessionInfo> const l = co_await s.async_list("u1");
    BOOST_TEST(l.size() == 2u);
    BOOST_TEST(co_await s.async_revoke_all("u1") == 2);
    done = true;
  };
  boost::asio::co_spawn(st.f.ioc, flow(st.s, done), boost::asio::detached);
  st.f.run_until([&done] { return done; });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_raw_layout_writes_seed_002_s_keys_when_asked, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Store<B> st(mode, SessionOptions{.token_keys = TokenKeys::raw_unsafe});
    auto const t = st.create("u1");
    // The seed's session:{accessToken} and refresh:{refreshToken}: the tokens themselves.
    std::string const tag = st.clustered ? "{u1}:" : "";
    BOOST_TEST(st.s.session_key(t.access_token) == "session:" + tag + t.access_token);
    BOOST_TEST(st.s.refresh_key(t.refresh_token) == "refresh:" + tag + t.refresh_token);
    BOOST_TEST(st.exists("session:" + tag + t.access_token));
    BOOST_TEST(st.exists("refresh:" + tag + t.refresh_token));
    BOOST_TEST(st.exists(st.clustered ? "user:sessions:{u1}" : "user:sessions:u1"));
    BOOST_TEST(st.valid(t.access_token));
    auto const r = st.rotate(t.refresh_token);
    BOOST_REQUIRE(r.rotated());
    BOOST_TEST(st.valid(r.session.access_token));
    BOOST_TEST(!st.exists("session:" + tag + t.access_token));
    BOOST_TEST((st.rotate(t.refresh_token).status == RotateStatus::reused));
    BOOST_TEST(!st.valid(r.session.access_token));
  });
}

// When the random source fails, create and rotate complete with Error::crypto_failed and
// write nothing: no session, and the refresh token that was to be rotated still rotates.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_failing_random_source_writes_nothing, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    auto working = std::make_shared<bool>(true);
    auto drawn = std::make_shared<int>(0);
    SessionOptions o;
    o.random_source = [working, drawn](std::span<unsigned char> out) {
      if (!*working) return false;
      for (auto& b : out)
        b = static_cast<unsigned char>(++*drawn);
      return true;
    };
    Store<B> st(mode, std::move(o));
    auto const t = st.create("u1");
    BOOST_TEST(*drawn > 0);  // the tokens came from the source
    BOOST_TEST(st.valid(t.access_token));
    *working = false;
    error_code const failed = make_error_code(Error::crypto_failed);
    BOOST_TEST(st.err(st.s.async_create("u2", Profile{"Bo", 2})) == failed);
    BOOST_TEST(st.list("u2").empty());
    BOOST_TEST(st.err(st.s.async_rotate_refresh(t.refresh_token)) == failed);
    BOOST_TEST(st.valid(t.access_token));  // the failed rotation retired nothing
    *working = true;
    auto const r = st.rotate(t.refresh_token);
    BOOST_TEST(r.rotated());
    BOOST_TEST(st.valid(r.session.access_token));
    BOOST_TEST(!st.valid(t.access_token));
  });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_input_fails_with_invalid_argument_never_inline, B, AllBackends) {
  for_each_mode<B>([&](Mode mode) {
    Store<B> st(mode);
    Profile const p{"Ann", 1};
    auto const t = st.create("u1");
    BOOST_TEST(st.err(st.s.async_create("", p)) == invalid);
    BOOST_TEST(st.err(st.s.async_create("u1", p, SessionRequest("d", "too-short", ""))) == invalid);
    for (std::string const bad :
         {"", "no-dot-in-this-token-at-all", ".0123456789abcdefghij", "dTE.short",
          "d+E.0123456789abcdefghij", "dTF.0123456789abcdefghij"}) {
      BOOST_TEST_CONTEXT("token '" << bad << "'") {
        BOOST_TEST(st.err(st.s.template async_get<Profile>(bad)) == invalid);
        BOOST_TEST(st.err(st.s.async_touch(bad)) == invalid);
        BOOST_TEST(st.err(st.s.async_revoke(bad)) == invalid);
        BOOST_TEST(st.err(st.s.async_rotate_refresh(bad)) == invalid);
      }
    }
    BOOST_TEST(st.err(st.s.async_revoke_all("")) == invalid);
    BOOST_TEST(st.err(st.s.async_list("")) == invalid);
    BOOST_TEST(st.err(st.s.async_revoke_session("", t.info.id)) == invalid);
    BOOST_TEST(st.err(st.s.async_revoke_session("u1", "")) == invalid);
    // Well-formed but unknown: not an error, just no session.
    BOOST_TEST(!st.valid("dTE.0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"));
    // A caller's own secret is used once.
    SessionRequest const own("cli", "my-own-access-secret-0123", "my-own-refresh-secret-0123");
    auto const mine = st.ok(st.s.async_create("u1", p, own));
    BOOST_TEST(mine.access_token == "dTE.my-own-access-secret-0123");
    BOOST_TEST(st.valid(mine.access_token));
    BOOST_TEST(st.err(st.s.async_create("u1", p, own)) == invalid);
    BOOST_TEST(st.list("u1").size() == 2u);
    // Stored data that is not the type asked for.
    BOOST_TEST(st.err(st.s.template async_get<int>(t.access_token)) ==
               make_error_code(Error::decode_failed));
    // Options that cannot work: every operation fails, nothing is written.
    SessionStore<B> broken(st.f.backend, SessionOptions{.max_sessions_per_user = 0});
    BOOST_TEST(st.err(broken.async_create("u9", p)) == invalid);
    BOOST_TEST(st.err(broken.template async_get<Profile>(t.access_token)) == invalid);
    SessionStore<B> clash(st.f.backend, SessionOptions{.session_prefix = "user:sessions:x"});
    BOOST_TEST(st.err(clash.async_create("u9", p)) == invalid);
    BOOST_TEST(st.list("u9").empty());
    // The one-node layout on a cluster: its keys span slots, refused before anything is sent.
    if (st.clustered) {
      SessionStore<B> plain(st.f.backend, SessionOptions{.key_layout = KeyLayout::plain});
      BOOST_TEST(st.err(plain.async_create("u9", p)) == make_error_code(Error::cross_slot));
      BOOST_TEST(st.list("u9").empty());
    }
    // Never inside the initiating call: neither a rejection nor a success.
    std::optional<std::tuple<error_code, bool>> out;
    auto const handler = [&out](error_code ec, bool v) { out.emplace(ec, v); };
    st.s.async_revoke("", handler);
    BOOST_TEST(!out.has_value());
    st.f.run_until([&out] { return out.has_value(); });
    BOOST_TEST(std::get<0>(*out) == invalid);
    out.reset();
    st.s.async_revoke(t.access_token, handler);
    BOOST_TEST(!out.has_value());
    st.f.run_until([&out] { return out.has_value(); });
    BOOST_TEST(!std::get<0>(*out));
    BOOST_TEST(std::get<1>(*out));
  });
}

BOOST_AUTO_TEST_SUITE_END()
