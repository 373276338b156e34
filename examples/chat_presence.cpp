// rediskit chat presence: the three chat services together, on any backend. Users connect
// (OnlineUserManager), join rooms (RoomManager), get unread counts when someone posts
// (UnreadMessageManager's fan-out), read them, go quiet, and drop offline when their presence
// expires. Every count printed is derived from what is alive in the store.
//
// By default it runs on the in-memory backend with a manual clock
// (rediskit::BasicMemoryBackend<rediskit::ManualClock>): time moves only when the program says,
// so the trace is exact and instant. With REDIS_URL (or REDIS_HOST / REDIS_PORT) set, the same
// code runs on that Redis server in real time (about 1.1 s of waiting). Keys live under
// "example:" and are deleted at the start and at the end.

// The headers it uses, not <rediskit/rediskit.hpp>: an edit to CacheService does not rebuild it.
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/clock.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/services/online_user_manager.hpp>
#include <rediskit/services/room_manager.hpp>
#include <rediskit/services/unread_message_manager.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// Short presence times so that expiry shows within a second (seed 000: 5 min, 1 min, 3 min).
rediskit::OnlineUserOptions presence_options() {
  rediskit::OnlineUserOptions o;
  o.presence_prefix = "example:presence";
  o.user_data_prefix = "example:user_data";
  o.user_socket_prefix = "example:user_sockets";
  o.default_ttl = 1000ms;  // offline 1 s after the last activity
  o.away_after = 250ms;
  o.idle_after = 500ms;
  return o;
}

rediskit::RoomOptions room_options() {
  rediskit::RoomOptions o;
  o.room_prefix = "example:rooms";
  o.room_users_prefix = "example:room_users";
  o.user_rooms_prefix = "example:user_rooms";
  o.room_roles_prefix = "example:room_roles";
  o.room_activity_prefix = "example:room_activity";
  o.room_stats_prefix = "example:room_stats";
  return o;
}

rediskit::UnreadOptions unread_options() {
  rediskit::UnreadOptions o;
  o.key_prefix = "example:unread";
  return o;
}

std::vector<std::string> const users{"alice", "bob", "carol", "dave"};
std::vector<std::string> const room_ids{"dev", "ops"};

// Every key this example writes (the layouts of the three headers, under "example:").
std::vector<std::string> example_keys() {
  std::vector<std::string> keys{"example:presence:online", "example:presence:stats"};
  for (auto const& u : users)
    for (char const* p : {"user_data:", "user_sockets:", "user_rooms:", "unread:user_unread:"})
      keys.push_back("example:" + std::string(p) + u);
  for (auto const& r : room_ids)
    for (char const* p : {"rooms:", "room_users:", "room_roles:", "room_activity:", "room_stats:"})
      keys.push_back("example:" + std::string(p) + r);
  return keys;
}

void check(bool ok, char const* what) {
  if (!ok) throw std::runtime_error(std::string("unexpected: ") + what);
}

std::string list(std::vector<std::string> const& v) {
  std::string s = "[";
  for (auto const& x : v)
    s += (s.size() > 1 ? ", " : "") + x;
  return s + "]";
}

}  // namespace

// Written once, against the Backend concept.
template <rediskit::Backend B>
asio::awaitable<void> chat(B& db) {
  auto use = asio::use_awaitable;
  // With a manual clock, time moves when we say so and every status below is exact; on a
  // real clock we wait, and the statuses are what a busy machine gives (printed, not checked).
  constexpr bool manual = requires {
    db.clock().advance(1ms);
  };
  std::chrono::milliseconds elapsed{0};
  auto pass = [&](std::chrono::milliseconds d) -> asio::awaitable<void> {
    elapsed += d;
    if constexpr (manual) {
      db.clock().advance(d);
    } else {
      asio::steady_timer t(co_await asio::this_coro::executor, d);
      co_await t.async_wait(use);
    }
    std::cout << "\n--- t = " << elapsed.count() << " ms\n";
  };

  rediskit::OnlineUserManager presence(db, presence_options());
  rediskit::RoomManager rooms(db, presence, room_options());  // shares the presence settings
  rediskit::UnreadMessageManager unread(db, unread_options());
  auto const keys = example_keys();
  co_await db.async_exec(rediskit::cmd::del{.keys = keys}, use);

  auto show_unread = [&]() -> asio::awaitable<void> {
    for (auto const& u : users) {
      auto const total = co_await unread.async_get_user_total_unread(u);
      std::cout << "  " << u << ": " << total << " unread";
      for (auto const& r : room_ids) {
        auto const count = co_await unread.async_get_conversation_unread_count(r, u);
        std::cout << (r == room_ids.front() ? " (" : ", ") << r << ' ' << count;
      }
      std::cout << ")\n";
    }
  };
  auto show_presence = [&]() -> asio::awaitable<void> {
    auto const stats = co_await presence.async_get_presence_stats();
    auto const& d = stats.status_distribution;
    std::cout << "  online now: " << stats.total_online << " (online " << d.online << ", away "
              << d.away << ", idle " << d.idle << "), peak " << stats.peak_online_users
              << ", closed sessions " << stats.sessions_closed << '\n';
    auto const page = co_await presence.async_get_online_users("", 10);
    for (auto const& u : page.users)
      std::cout << "    " << u.user_id << " is " << to_string(u.status) << " (latest socket "
                << u.socket_id << ", " << u.matricule << ")\n";
    // RoomManager's view of the same presence (its online check, the OnlinePresence option).
    for (auto const& r : room_ids) {
      auto const online = co_await rooms.async_get_room_online_users(r);
      auto const n = co_await rooms.async_get_room_online_users_count(r);
      std::cout << "  room " << r << ": online " << list(online) << " (" << n.online << " of "
                << n.total << " members)\n";
    }
  };

  std::cout << "--- t = 0 ms: everyone connects\n";
  for (auto const& u : users) {
    bool const fresh = co_await presence.async_set_user_online(u, {"ws-" + u + "-1", "MAT-" + u});
    std::cout << "  " << u << " connects on ws-" << u << "-1 (new session: " << fresh << ")\n";
  }
  bool const again = co_await presence.async_set_user_online("alice", "ws-alice-2");
  std::cout << "  alice opens a second tab, ws-alice-2 (new session: " << again << ")\n";
  check(!again, "a second socket starts no session");
  check(co_await presence.async_get_online_count() == 4, "4 users online");

  co_await rooms.async_create_room("dev", rediskit::RoomData("Dev team"));
  co_await rooms.async_create_room("ops", rediskit::RoomData("On call", "GROUP", R"({"pager":1})"));
  for (auto const& u : {"alice", "bob", "carol"})
    co_await rooms.async_join_room("dev", u);
  for (auto const& u : {"alice", "dave"})
    co_await rooms.async_join_room("ops", u);
  co_await rooms.async_set_user_role_in_room("dev", "alice", rediskit::RoomRole::admin);
  auto const dev_members = co_await rooms.async_get_room_users("dev");
  auto const ops_members = co_await rooms.async_get_room_users("ops");
  auto const alice_rooms = co_await rooms.async_get_user_rooms("alice");
  std::cout << "  rooms: dev " << list(dev_members) << ", ops " << list(ops_members)
            << "; alice's rooms " << list(alice_rooms) << '\n';
  co_await show_presence();

  std::cout << "\n--- messages: alice posts twice in dev, bob once; dave posts in ops\n";
  // The fan-out of a message: every participant but the sender gets +1, in one round trip.
  auto n = co_await unread.async_increment_unread_for_recipients("dev", "alice", dev_members, 1);
  n += co_await unread.async_increment_unread_for_recipients("dev", "alice", dev_members, 1);
  n += co_await unread.async_increment_unread_for_recipients("dev", "bob", dev_members, 1);
  n += co_await unread.async_increment_unread_for_recipients("ops", "dave", {"alice", "dave"}, 1);
  std::cout << "  " << n << " unread counters bumped\n";
  co_await show_unread();
  check(co_await unread.async_get_user_total_unread("carol") == 3, "carol has 3 unread");
  check(co_await unread.async_get_user_total_unread("alice") == 2, "alice has 2 unread");

  std::cout << "\n--- bob opens dev and reads it; alice reads ops\n";
  auto const bob_read = co_await unread.async_mark_conversation_read("dev", "bob");
  auto const alice_read = co_await unread.async_mark_conversation_read("ops", "alice");
  std::cout << "  bob cleared " << bob_read << ", alice cleared " << alice_read << '\n';
  co_await show_unread();
  check(co_await unread.async_get_user_total_unread("bob") == 0, "bob read everything");

  co_await pass(300ms);
  std::cout << "  alice, bob and dave are active; carol says nothing\n";
  for (auto const& u : {"alice", "bob", "dave"})
    co_await presence.async_update_last_activity(u);

  co_await pass(300ms);
  std::cout << "  alice and bob are active (dave has been quiet for 300 ms, carol for 600 ms)\n";
  for (auto const& u : {"alice", "bob"})
    co_await presence.async_update_last_activity(u);
  co_await show_presence();
  if constexpr (manual) {
    auto const stats = co_await presence.async_get_presence_stats();
    auto const& d = stats.status_distribution;
    check(d.online == 2 && d.away == 1 && d.idle == 1, "2 online, dave away, carol idle");
  }

  co_await pass(500ms);
  std::cout << "  carol's presence expired (no activity for 1.1 s, ttl 1 s): nobody said so;"
               " alice and bob are active\n";
  for (auto const& u : {"alice", "bob"})
    co_await presence.async_update_last_activity(u);
  bool const carol = co_await presence.async_is_user_online("carol");
  auto const carol_unread = co_await unread.async_get_user_total_unread("carol");
  std::cout << "  is carol online? " << carol
            << "; her unread count outlives her presence: " << carol_unread << '\n';
  check(!carol, "carol expired");
  co_await show_presence();
  if constexpr (manual) check(co_await presence.async_get_online_count() == 3, "3 online");

  std::cout << "\n--- dave closes his only socket; alice closes her second tab\n";
  bool const dave_gone = co_await presence.async_set_user_offline("dave", "ws-dave-1");
  bool const alice_gone = co_await presence.async_set_user_offline("alice", "ws-alice-2");
  std::cout << "  dave offline: " << dave_gone << ", alice offline: " << alice_gone
            << " (ws-alice-1 is still open)\n";
  check(!alice_gone, "alice still has a socket");
  co_await rooms.async_leave_room("ops", "dave");
  co_await show_presence();

  co_await db.async_exec(rediskit::cmd::del{.keys = keys}, use);
}

template <class B>
int run(asio::io_context& ioc, B& db, char const* what) {
  std::cout << "backend: " << B::name << what << "\n\n" << std::boolalpha;
  asio::co_spawn(ioc, chat(db), [&](std::exception_ptr e) {
    db.close();  // lets ioc.run() return: a RedisBackend's connections stay up until closed
    if (e) std::rethrow_exception(e);
  });
  ioc.run();
  return 0;
}

int main() {
  // A bad REDIS_URL, or a Redis that cannot be reached: one line, status 1, never an abort.
  try {
    asio::io_context ioc;
    if (std::getenv("REDIS_URL") || std::getenv("REDIS_HOST")) {
      rediskit::RedisBackend db(ioc, rediskit::RedisConfig::from_env());
      return run(ioc, db, " (real time)");
    }
    rediskit::BasicMemoryBackend<rediskit::ManualClock> db(ioc);
    return run(ioc, db, " (manual clock: exact and instant)");
  } catch (std::exception const& e) {
    std::cerr << "chat_presence: " << e.what() << '\n';
    return 1;
  }
}
