// chat::Server<Backend>: the real-time core of seed 000-004's chat platform on rediskit, behind
// a Boost.Beast HTTP and WebSocket server (PROTOCOL.md has the protocol; README.md the design).
//
// One io_context, one thread: every member below is touched from that thread only.
//
// Which rediskit service does what:
//   login            UserDirectory (profile, search index, online flag), SessionStore (token)
//   presence         OnlineUserManager (one socket per tab, heartbeats, TTL)
//   rooms            RoomManager (members, roles), ConversationManager (the room's
//                    conversation: MessageStore's unit of storage)
//   messages         MessageStore (history by cursor; bumps UnreadMessageManager's counts in
//                    the same script), RateLimiter (per user)
//   unread badges    UnreadMessageManager
//   notifications    NotificationService (@mentions; one subscriber connection per process)
//   fan-out          one pub/sub channel, <prefix>:events: every process subscribes and
//                    delivers to its own sockets, so two processes on one Redis share it all
#pragma once

#include <rediskit/backend/fallback_backend.hpp>
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/cmd/hashes.hpp>
#include <rediskit/cmd/pubsub.hpp>
#include <rediskit/cmd/strings.hpp>
#include <rediskit/redis_manager.hpp>
#include <rediskit/services/conversation_manager.hpp>
#include <rediskit/services/message_store.hpp>
#include <rediskit/services/notification_service.hpp>
#include <rediskit/services/online_user_manager.hpp>
#include <rediskit/services/rate_limiter.hpp>
#include <rediskit/services/room_manager.hpp>
#include <rediskit/services/session_store.hpp>
#include <rediskit/services/unread_message_manager.hpp>
#include <rediskit/services/user_directory.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/describe/class.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace chat {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using boost::system::error_code;

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 0;
  std::string redis_url;  ///< empty: MemoryBackend
  std::chrono::milliseconds presence_ttl{60'000};
  std::string prefix = "chat";
  std::string name = "chat";  ///< this process, in logs and metrics
  std::string static_dir;
  std::int64_t send_limit = 30;  ///< messages per user per send_period
  std::chrono::milliseconds send_period{10'000};
};

/// What the process did (exposed on /metrics as rediskit_chat_<member>).
struct ChatStats {
  std::uint64_t connections = 0;  ///< open WebSockets
  std::uint64_t connections_total = 0;
  std::uint64_t logins = 0;
  std::uint64_t messages_sent = 0;     ///< stored by this process
  std::uint64_t frames_out = 0;        ///< events written to sockets
  std::uint64_t events_published = 0;  ///< to <prefix>:events
  std::uint64_t events_received = 0;   ///< from <prefix>:events
  std::uint64_t bus_gaps = 0;          ///< the subscriber lost messages or its link
  std::uint64_t rate_limited = 0;
  std::uint64_t slow_consumers = 0;        ///< sockets closed because they did not read
  std::uint64_t errors = 0;                ///< error events sent
  std::uint64_t messages_queued = 0;       ///< sent while Redis was down (delivered here only)
  std::uint64_t messages_stored_late = 0;  ///< of those, stored once Redis was back
  std::uint64_t messages_dropped = 0;      ///< of those, refused by the store (room gone)
  std::uint64_t messages_pending = 0;      ///< of those, waiting now
};
BOOST_DESCRIBE_STRUCT(ChatStats, (),
                      (connections, connections_total, logins, messages_sent, frames_out,
                       events_published, events_received, bus_gaps, rate_limited, slow_consumers,
                       errors, messages_queued, messages_stored_late, messages_dropped,
                       messages_pending))

/// What a session token carries (SessionStore's data, through JsonCodec).
struct SessionData {
  std::int64_t id = 0;
  std::string name;
};
BOOST_DESCRIBE_STRUCT(SessionData, (), (id, name))

inline constexpr std::size_t kMaxFrame = 64 * 1024;
inline constexpr std::size_t kMaxQueued = 4096;  // events waiting for a socket that stalls
inline constexpr std::size_t kMaxText = 4000;
inline constexpr std::size_t kMaxPending = 10000;  // messages held while Redis is down
inline constexpr std::int64_t kPage = 20;
inline constexpr char const* kUserType = "patient";  // UserDirectory's types are seed 004's

inline bool valid_room_id(std::string_view r) {
  return !r.empty() && r.size() <= 32 && std::all_of(r.begin(), r.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

/// The name as a key: ASCII letters lower-cased, the rest (UTF-8) kept.
inline std::string name_key(std::string_view name) {
  std::string k(name);
  for (auto& c : k)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return k;
}

inline std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// "2025-01-25T10:00:00.000Z" (MessageStore's timestamps).
inline std::string iso_utc(std::int64_t ms) {
  std::time_t const secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // room for any int values (-Wformat-truncation)
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

inline std::string str(json::object const& o, std::string_view k) {
  if (auto const* v = o.if_contains(k); v && v->is_string()) return std::string(v->as_string());
  return {};
}

/// A request the client got wrong: becomes an `error` event, the socket stays open.
struct ClientError {
  std::string code;
  std::string message;
  std::int64_t retry_after_ms = -1;
};

template <class B>
class Server;

/// One WebSocket (a browser tab, or one connection of a load client).
template <class B>
class Client : public std::enable_shared_from_this<Client<B>> {
 public:
  Client(Server<B>& server, websocket::stream<beast::tcp_stream> ws, std::string socket_id)
      : server_(server), ws_(std::move(ws)), socket_id_(std::move(socket_id)) {}

  std::int64_t user_id() const { return user_id_; }
  std::string const& name() const { return name_; }
  std::string const& socket_id() const { return socket_id_; }
  bool lobby() const { return lobby_; }
  bool logged_in() const { return user_id_ != 0; }
  std::set<std::string>& rooms() { return rooms_; }
  std::string const& open_room() const { return open_room_; }

  /// Queues one event; a socket that lets kMaxQueued pile up is closed (it is not reading).
  void send(std::string frame) {
    if (closing_) return;
    if (out_.size() >= kMaxQueued) {
      ++server_.stats().slow_consumers;
      out_.clear();
      close(websocket::close_code::policy_error);
      return;
    }
    out_.push_back(std::move(frame));
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(ws_.get_executor(), write_loop(this->shared_from_this()), asio::detached);
    }
  }

  void send(json::object const& o) { send(json::serialize(o)); }

  /// Sends a close frame after what is queued, once.
  void close(websocket::close_code code = websocket::close_code::going_away) {
    if (closing_) return;
    closing_ = true;
    close_code_ = code;
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(ws_.get_executor(), write_loop(this->shared_from_this()), asio::detached);
    }
  }

  asio::awaitable<void> run(http::request<http::string_body> req) {
    auto self = this->shared_from_this();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.read_message_max(kMaxFrame);
    ws_.text(true);
    auto [aec] = co_await ws_.async_accept(req, asio::as_tuple(asio::use_awaitable));
    if (aec) co_return;
    server_.attach(self);
    beast::flat_buffer buf;
    for (;;) {
      auto [ec, n] = co_await ws_.async_read(buf, asio::as_tuple(asio::use_awaitable));
      if (ec) break;
      std::string text = beast::buffers_to_string(buf.data());
      buf.consume(n);
      co_await server_.handle(self, std::move(text));
      if (closing_) break;
    }
    closing_ = true;
    co_await server_.detach(self);
  }

 private:
  static asio::awaitable<void> write_loop(std::shared_ptr<Client> self) {
    while (!self->out_.empty()) {
      std::string frame = std::move(self->out_.front());
      self->out_.pop_front();
      auto [ec, n] =
          co_await self->ws_.async_write(asio::buffer(frame), asio::as_tuple(asio::use_awaitable));
      if (ec) {
        self->out_.clear();
        self->closing_ = true;
        break;
      }
      ++self->server_.stats().frames_out;
    }
    if (self->closing_ && self->ws_.is_open() && !self->closed_) {
      self->closed_ = true;
      websocket::close_reason reason(self->close_code_);
      co_await self->ws_.async_close(reason, asio::as_tuple(asio::use_awaitable));
    }
    self->writing_ = false;
  }

  friend class Server<B>;
  Server<B>& server_;
  websocket::stream<beast::tcp_stream> ws_;
  std::string socket_id_;
  std::deque<std::string> out_;
  bool writing_ = false;
  bool closing_ = false;
  bool closed_ = false;
  websocket::close_code close_code_ = websocket::close_code::going_away;

  std::int64_t user_id_ = 0;
  std::string name_;
  std::string token_;
  bool lobby_ = true;
  std::set<std::string> rooms_;
  std::string open_room_;
  std::chrono::steady_clock::time_point last_typing_{};
};

template <class B>
class Server {
  using ClientPtr = std::shared_ptr<Client<B>>;

 public:
  Server(asio::io_context& ioc, B& db, Options opt)
      : ioc_(ioc),
        db_(db),
        opt_(std::move(opt)),
        presence_(db, presence_options()),
        rooms_(db, presence_, room_options()),
        unread_(db, unread_options()),
        convs_(db, messaging<rediskit::ConversationOptions>()),
        store_(db, messaging<rediskit::MessageStoreOptions>(), &unread_),
        directory_(db, messaging<rediskit::UserDirectoryOptions>()),
        notes_(db, notification_options()),
        sessions_(db, session_options()),
        limiter_(db, limiter_options()),
        metrics_(ioc),
        acceptor_(ioc),
        heartbeat_(ioc),
        sweep_(ioc),
        signals_(ioc, SIGINT, SIGTERM) {
    std::random_device rd;
    nonce_ = std::to_string(rd()) + std::to_string(rd());
    exposed_.push_back(metrics_.expose("chat", opt_.name, *this));
    exposed_.push_back(metrics_.expose("notifications", opt_.name, notes_));
    exposed_.push_back(metrics_.expose("rate_limiter", opt_.name, limiter_));
    if constexpr (requires { db_.stats().mode; })
      exposed_.push_back(metrics_.expose("fallback", opt_.name, db_));
  }

  ChatStats stats() const {
    auto s = stats_;
    s.messages_pending = pending_.size();
    return s;
  }
  ChatStats& stats() { return stats_; }

  /// Listens, subscribes to the bus, starts the timers; prints "listening on URL" when ready.
  asio::awaitable<void> start() {
    tcp::endpoint ep(asio::ip::make_address(opt_.host), opt_.port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    co_await bus_subscribe();
    co_await load_known_online();
    asio::co_spawn(ioc_, bus_loop(), asio::detached);
    asio::co_spawn(ioc_, heartbeat_loop(), asio::detached);
    asio::co_spawn(ioc_, sweep_loop(), asio::detached);
    asio::co_spawn(ioc_, store_pending_loop(), asio::detached);
    signals_.async_wait([this](error_code ec, int) {
      if (!ec) shutdown();
    });
    auto const port = acceptor_.local_endpoint().port();
    std::cout << "listening on http://" << opt_.host << ':' << port << "/" << std::endl;
    std::cerr << "[" << opt_.name << "] backend " << backend_name() << ", presence TTL "
              << opt_.presence_ttl.count() << " ms, prefix " << opt_.prefix << std::endl;
    asio::co_spawn(ioc_, accept_loop(), asio::detached);
  }

  /// SIGTERM: no new connections, a close frame to every socket, their users offline.
  void shutdown() {
    if (stopping_) return;
    stopping_ = true;
    std::cerr << "[" << opt_.name << "] shutting down: closing " << clients_.size() << " sockets"
              << std::endl;
    error_code ignored;
    acceptor_.close(ignored);
    heartbeat_.cancel();
    sweep_.cancel();
    for (auto const& c : clients_)
      c->close(websocket::close_code::going_away);
    asio::co_spawn(ioc_, finish_shutdown(), asio::detached);
  }

  void attach(ClientPtr const& c) {
    clients_.insert(c);
    ++stats_.connections;
    ++stats_.connections_total;
  }

  /// The socket closed: forgotten here at once, then its user offline if it was their last
  /// socket. It leaves clients_ last, so that shutdown waits for the offline to be published.
  asio::awaitable<void> detach(ClientPtr c) {
    if (c->logged_in()) {
      forget(c);
      co_await user_gone(c->user_id_, c->name_, c->socket_id_);
    }
    clients_.erase(c);
    --stats_.connections;
  }

  asio::awaitable<void> handle(ClientPtr c, std::string text) {
    json::value v;
    std::optional<json::value> req;
    try {
      error_code ec;
      v = json::parse(text, ec);
      if (ec || !v.is_object()) throw ClientError{"bad_request", "a request is one JSON object"};
      auto const& o = v.as_object();
      if (auto const* r = o.if_contains("req")) req = *r;
      auto const op = str(o, "op");
      if (op.empty()) throw ClientError{"bad_request", "the request has no \"op\""};
      if (op == "login") {
        co_await login(c, o, req);
      } else if (!c->logged_in()) {
        throw ClientError{"not_logged_in", "log in first: {\"op\":\"login\",\"name\":...}"};
      } else if (op == "send") {
        co_await send_message(c, o, req);
      } else if (op == "typing") {
        typing(c, o);
      } else if (op == "ping") {
        reply(c, req, {{"ev", "pong"}});
        co_await heartbeat(*c);
      } else if (op == "create_room") {
        co_await create_room(c, o, req);
      } else if (op == "join") {
        co_await join(c, o, req);
      } else if (op == "leave") {
        co_await leave(c, o, req);
      } else if (op == "open") {
        co_await open(c, o, req);
      } else if (op == "history") {
        co_await history(c, o, req);
      } else if (op == "read") {
        co_await mark_read(c, o, req);
      } else if (op == "search") {
        co_await search(c, o, req);
      } else if (op == "notifications_read") {
        co_await notes_.async_mark_all_read(std::to_string(c->user_id_), asio::use_awaitable);
        reply(c, req, {{"ev", "notifications"}, {"unread", 0}});
      } else if (op == "logout") {
        co_await sessions_.async_revoke(c->token_, asio::use_awaitable);
        reply(c, req, {{"ev", "bye"}});
        c->close(websocket::close_code::normal);
      } else {
        throw ClientError{"bad_request", "unknown op \"" + op + "\""};
      }
    } catch (ClientError const& e) {
      send_error(c, req, e);
    } catch (rediskit::Exception const& e) {
      send_error(c, req, {"unavailable", e.what()});
    } catch (boost::system::system_error const& e) {
      send_error(c, req, {"unavailable", e.what()});
    } catch (std::exception const& e) {
      send_error(c, req, {"bad_request", e.what()});
    }
  }

 private:
  // ---- options -----------------------------------------------------------------------------
  rediskit::OnlineUserOptions presence_options() const {
    rediskit::OnlineUserOptions o;
    o.presence_prefix = opt_.prefix + ":presence";
    o.user_data_prefix = opt_.prefix + ":user_data";
    o.user_socket_prefix = opt_.prefix + ":user_sockets";
    o.default_ttl = opt_.presence_ttl;
    o.away_after = opt_.presence_ttl;
    o.idle_after = opt_.presence_ttl * 2;
    return o;
  }
  rediskit::RoomOptions room_options() const {
    rediskit::RoomOptions o;
    o.room_prefix = opt_.prefix + ":rooms";
    o.room_users_prefix = opt_.prefix + ":room_users";
    o.user_rooms_prefix = opt_.prefix + ":user_rooms";
    o.room_roles_prefix = opt_.prefix + ":room_roles";
    o.room_activity_prefix = opt_.prefix + ":room_activity";
    o.room_stats_prefix = opt_.prefix + ":room_stats";
    return o;
  }
  rediskit::UnreadOptions unread_options() const {
    rediskit::UnreadOptions o;
    o.key_prefix = opt_.prefix + ":unread";
    return o;
  }
  template <class O>
  O messaging() const {
    O o;
    o.key_prefix = opt_.prefix + ":messaging";
    return o;
  }
  rediskit::NotificationOptions notification_options() const {
    rediskit::NotificationOptions o;
    o.channel_prefix = opt_.prefix + ":notifications";
    o.history_prefix = opt_.prefix + ":notifications:history";
    o.unread_prefix = opt_.prefix + ":notifications:unread";
    o.max_history = 100;
    return o;
  }
  rediskit::SessionOptions session_options() const {
    rediskit::SessionOptions o;
    o.session_prefix = opt_.prefix + ":session";
    o.refresh_prefix = opt_.prefix + ":refresh";
    o.user_sessions_prefix = opt_.prefix + ":user:sessions";
    o.user_data_prefix = opt_.prefix + ":user:session_data";
    return o;
  }
  rediskit::RateLimiterOptions limiter_options() const {
    rediskit::RateLimiterOptions o;
    o.key_prefix = opt_.prefix + ":ratelimit";
    o.endpoints["send"].user = rediskit::RateLimit::gcra(opt_.send_limit, opt_.send_period);
    return o;
  }

  /// FallbackBackend on memory: Redis is down.
  bool degraded() const {
    if constexpr (requires { db_.on_primary(); })
      return !db_.on_primary();
    else
      return false;
  }

  std::string key(std::string_view what) const { return opt_.prefix + ":" + std::string(what); }
  std::string channel() const { return key("events"); }
  static std::string member_of(std::int64_t uid) {
    return rediskit::participant_member(kUserType, uid);
  }

  std::string_view backend_name() const {
    if constexpr (requires { db_.stats().mode; })
      return "FallbackBackend (Redis, memory when it is down)";
    else
      return "MemoryBackend";
  }

  // ---- replies -----------------------------------------------------------------------------
  void reply(ClientPtr const& c, std::optional<json::value> const& req, json::object o) {
    if (req) o["req"] = *req;
    c->send(o);
  }
  void send_error(ClientPtr const& c, std::optional<json::value> const& req, ClientError const& e) {
    ++stats_.errors;
    json::object o{{"ev", "error"}, {"code", e.code}, {"message", e.message}};
    if (e.retry_after_ms >= 0) o["retry_after_ms"] = e.retry_after_ms;
    reply(c, req, std::move(o));
  }

  // ---- users -------------------------------------------------------------------------------
  /// The user's numeric id (seed 004's ids are numbers): HGET, else INCR + HSETNX (the first
  /// process to register a name wins; the other reads the winner's id).
  asio::awaitable<std::int64_t> user_id_of(std::string const& name) {
    auto const ids = key("users:ids");
    auto const k = name_key(name);
    auto got = co_await db_.async_exec(rediskit::cmd::hget{ids, k}, asio::use_awaitable);
    if (got) co_return std::stoll(*got);
    auto const seq = key("users:seq");
    auto const next = co_await db_.async_exec(rediskit::cmd::incr{seq}, asio::use_awaitable);
    auto const id_text = std::to_string(next);
    bool const won =
        co_await db_.async_exec(rediskit::cmd::hsetnx{ids, k, id_text}, asio::use_awaitable);
    if (won) co_return next;
    got = co_await db_.async_exec(rediskit::cmd::hget{ids, k}, asio::use_awaitable);
    if (!got) throw ClientError{"unavailable", "the user table changed under the login; retry"};
    co_return std::stoll(*got);
  }

  asio::awaitable<std::string> name_of(std::int64_t uid) {
    auto const names = key("users:names");
    auto const f = std::to_string(uid);
    auto got = co_await db_.async_exec(rediskit::cmd::hget{names, f}, asio::use_awaitable);
    co_return got.value_or("user " + f);
  }

  /// One field of a hash (the list is a named variable: see PITFALLS, g++ 12 and co_await).
  asio::awaitable<void> hset(std::string const& key, std::string const& field,
                             std::string const& value) {
    rediskit::FieldValue const fv[] = {{field, value}};
    rediskit::cmd::hset const c{key, fv};
    co_await db_.async_exec(c, asio::use_awaitable);
  }

  static json::object user_json(std::int64_t id, std::string const& name) {
    return {{"id", id}, {"name", name}};
  }

  asio::awaitable<void> login(ClientPtr c, json::object const& o, std::optional<json::value> req) {
    if (c->logged_in()) throw ClientError{"bad_request", "already logged in"};
    if (degraded())
      throw ClientError{"unavailable",
                        "Redis is down: this server keeps its connected users chatting and "
                        "takes new logins when Redis is back; retry in a few seconds"};
    if (auto const* l = o.if_contains("lobby"); l && l->is_bool()) c->lobby_ = l->as_bool();
    std::string name = str(o, "name");
    std::string token = str(o, "token");
    std::int64_t uid = 0;
    if (!token.empty()) {
      auto [ec, s] = co_await sessions_.template async_get<SessionData>(
          token, asio::as_tuple(asio::use_awaitable));
      if (ec == rediskit::Error::invalid_argument || (!ec && !s))  // malformed, or not live
        throw ClientError{"bad_token", "the session token is unknown or expired: log in by name"};
      if (ec) throw ClientError{"unavailable", "reading the session failed: " + ec.message()};
      uid = s->data.id;
      name = s->data.name;
      co_await sessions_.async_touch(token, asio::use_awaitable);
    } else {
      if (name.empty() || name.size() > 40)
        throw ClientError{"bad_request", "login needs a \"name\" of 1 to 40 bytes, or a \"token\""};
      uid = co_await user_id_of(name);
      auto const names = key("users:names");
      auto const f = std::to_string(uid);
      co_await hset(names, f, name);
      rediskit::DirectoryProfile profile(name, "", "");
      co_await directory_.async_store_user(f, kUserType, profile, asio::use_awaitable);
      SessionData data{uid, name};
      auto tokens = co_await sessions_.async_create(f, data, asio::use_awaitable);
      token = std::move(tokens.access_token);
    }
    c->user_id_ = uid;
    c->name_ = name;
    c->token_ = token;
    try {
      co_await start_session(c, req);
    } catch (...) {
      // No welcome: the socket is not logged in, and may log in again. (Its presence entry
      // expires: nothing renews it.)
      forget(c);
      c->rooms_.clear();
      c->user_id_ = 0;
      c->name_.clear();
      c->token_.clear();
      throw;
    }
    ++stats_.logins;
  }

  /// The logged-in socket: presence, its user's notifications, rooms and counts, `welcome`.
  asio::awaitable<void> start_session(ClientPtr c, std::optional<json::value> const& req) {
    auto const uid = c->user_id_;
    auto const name = c->name_;
    auto const uid_text = std::to_string(uid);

    // Presence: this socket online; the first socket of the user tells everyone.
    rediskit::OnlineUserData presence_data(c->socket_id_, name);
    bool const started =
        co_await presence_.async_set_user_online(uid_text, presence_data, asio::use_awaitable);
    auto& local = local_users_[uid];
    local.clients.insert(c.get());
    if (local.clients.size() == 1) {
      local.name = name;
      co_await subscribe_notifications(uid);
    }
    if (started) {
      co_await directory_.async_set_user_online(uid_text, kUserType, asio::use_awaitable);
      {
        json::object ev{{"t", "presence"}, {"user", user_json(uid, name)}, {"online", true}};
        co_await publish(std::move(ev));
      }
    }

    // The user's rooms and their unread counts.
    json::array rooms;
    auto const mine = co_await rooms_.async_get_user_rooms(uid_text, asio::use_awaitable);
    for (auto const& r : mine) {
      auto info = co_await room_json(r, uid);
      if (!info) continue;
      c->rooms_.insert(r);
      room_clients_[r].insert(c.get());
      rooms.push_back(std::move(*info));
    }
    if (c->lobby_) lobby_.insert(c.get());

    json::object out{{"ev", "welcome"},
                     {"user", user_json(uid, name)},
                     {"token", c->token_},
                     {"rooms", std::move(rooms)},
                     {"presence_ttl_ms", opt_.presence_ttl.count()}};
    if (c->lobby_) {
      out["all_rooms"] = co_await all_rooms_json();
      out["online"] = co_await online_json();
    } else {
      out["all_rooms"] = json::array{};
      out["online"] = json::array{};
    }
    out["notifications"] = co_await notifications_json(uid);
    reply(c, req, std::move(out));
  }

  /// Forgets a closed or logged-out socket locally.
  void forget(ClientPtr const& c) {
    lobby_.erase(c.get());
    for (auto const& r : c->rooms_) {
      auto it = room_clients_.find(r);
      if (it == room_clients_.end()) continue;
      it->second.erase(c.get());
      if (it->second.empty()) room_clients_.erase(it);
    }
    auto it = local_users_.find(c->user_id_);
    if (it != local_users_.end()) {
      it->second.clients.erase(c.get());
      if (it->second.clients.empty()) local_users_.erase(it);  // ends its notification subscription
    }
  }

  /// The socket is gone: the user is offline when it was their last one, on any process.
  asio::awaitable<void> user_gone(std::int64_t uid, std::string name, std::string socket_id) {
    auto const uid_text = std::to_string(uid);
    auto [ec, offline] = co_await presence_.async_set_user_offline(
        uid_text, socket_id, asio::as_tuple(asio::use_awaitable));
    if (ec || !offline) co_return;
    auto [ec2, was_online] = co_await directory_.async_set_user_offline(
        uid_text, kUserType, asio::as_tuple(asio::use_awaitable));
    (void)ec2;
    (void)was_online;
    {
      json::object ev{{"t", "presence"}, {"user", user_json(uid, name)}, {"online", false}};
      co_await publish(std::move(ev));
    }
  }

  asio::awaitable<void> heartbeat(Client<B>& c) {
    auto const uid_text = std::to_string(c.user_id_);
    auto const socket = c.socket_id_;
    auto [ec, alive] = co_await presence_.async_update_last_activity(
        uid_text, socket, asio::as_tuple(asio::use_awaitable));
    if (!ec && !alive) {  // expired meanwhile (an outage, a stalled process): online again
      rediskit::OnlineUserData again(socket, c.name_);
      auto [ec2, started] = co_await presence_.async_set_user_online(
          uid_text, again, asio::as_tuple(asio::use_awaitable));
      if (!ec2 && started) {
        json::object ev{
            {"t", "presence"}, {"user", user_json(c.user_id_, c.name_)}, {"online", true}};
        co_await publish(std::move(ev));
      }
    }
  }

  asio::awaitable<json::array> online_json() {
    json::array out;
    auto const page = co_await presence_.async_get_online_users("", 200, asio::use_awaitable);
    for (auto const& u : page.users) {
      std::int64_t id = 0;
      try {
        id = std::stoll(u.user_id);
      } catch (std::exception const&) {
        continue;
      }
      std::string name = u.matricule;  // (not `?:` around co_await: g++ 12 miscompiles it)
      if (name.empty()) name = co_await name_of(id);
      out.push_back(user_json(id, name));
    }
    co_return out;
  }

  asio::awaitable<json::object> notifications_json(std::int64_t uid) {
    auto const user = std::to_string(uid);
    auto const counts = co_await notes_.async_get_unread_counts(user, asio::use_awaitable);
    auto const page = co_await notes_.async_get_history(user, "", 100, asio::use_awaitable);
    json::array items;
    auto const n = page.items.size();
    for (std::size_t i = 0; i < n && i < 20; ++i)
      items.push_back(note_json(page.items[n - 1 - i]));
    co_return json::object{{"unread", counts.total()}, {"items", std::move(items)}};
  }

  static json::object note_json(rediskit::Notification const& n) {
    return {{"id", n.id},          {"title", n.title},      {"body", n.body}, {"room", n.data},
            {"from", n.sender_id}, {"ts", n.created_at_ms}, {"read", n.read}};
  }

  asio::awaitable<void> subscribe_notifications(std::int64_t uid) {
    auto const user = std::to_string(uid);
    auto handler = [this, uid](rediskit::Notification const& n) {
      auto it = local_users_.find(uid);
      if (it == local_users_.end()) return;
      auto const frame =
          json::serialize(json::object{{"ev", "notification"}, {"notification", note_json(n)}});
      for (auto* c : it->second.clients)
        c->send(frame);
    };
    auto [ec, sub] = co_await notes_.async_subscribe(user, std::move(handler),
                                                     asio::as_tuple(asio::use_awaitable));
    if (ec) {
      std::cerr << "[" << opt_.name << "] notifications of " << user << ": " << ec.message()
                << std::endl;
      co_return;
    }
    auto it = local_users_.find(uid);
    if (it != local_users_.end()) it->second.notifications = std::move(sub);
  }

  // ---- rooms -------------------------------------------------------------------------------
  /// The room's conversation id, "" while it is being created; nullopt when there is no room.
  asio::awaitable<std::optional<std::string>> conversation_of(std::string const& room) {
    if (auto it = conv_cache_.find(room); it != conv_cache_.end()) co_return it->second;
    auto const k = key("room_conv");
    auto got = co_await db_.async_exec(rediskit::cmd::hget{k, room}, asio::use_awaitable);
    if (got && !got->empty()) conv_cache_[room] = *got;
    co_return got;
  }

  asio::awaitable<std::string> require_conversation(std::string const& room) {
    auto conv = co_await conversation_of(room);
    if (!conv) throw ClientError{"no_such_room", "there is no room \"" + room + "\""};
    if (conv->empty()) throw ClientError{"unavailable", "room \"" + room + "\" is being created"};
    co_return *conv;
  }

  asio::awaitable<std::optional<json::object>> room_json(std::string const& room,
                                                         std::int64_t uid) {
    auto info = co_await rooms_.async_get_room_info(room, asio::use_awaitable);
    if (!info) co_return std::nullopt;
    auto conv = co_await conversation_of(room);
    std::int64_t unread = 0;
    if (conv && !conv->empty())
      unread = co_await unread_.async_get_conversation_unread_count(*conv, member_of(uid),
                                                                    asio::use_awaitable);
    co_return json::object{{"id", room}, {"name", info->name}, {"unread", unread}};
  }

  asio::awaitable<json::array> all_rooms_json() {
    auto const k = key("room_names");
    auto const all = co_await db_.async_exec(rediskit::cmd::hgetall{k}, asio::use_awaitable);
    json::array out;
    for (auto const& [id, name] : all) {
      if (out.size() >= 200) break;
      out.push_back(json::object{{"id", id}, {"name", name}});
    }
    co_return out;
  }

  std::string room_arg(json::object const& o) {
    auto room = str(o, "room");
    if (!valid_room_id(room))
      throw ClientError{"bad_request",
                        "\"room\" must be 1 to 32 of [a-z0-9_-], got \"" + room + "\""};
    return room;
  }

  void require_member(ClientPtr const& c, std::string const& room) {
    if (!c->rooms_.count(room))
      throw ClientError{"not_a_member", "join room \"" + room + "\" first"};
  }

  asio::awaitable<void> create_room(ClientPtr c, json::object const& o,
                                    std::optional<json::value> req) {
    auto const room = room_arg(o);
    auto name = str(o, "name");
    if (name.empty()) name = room;
    if (name.size() > 80) throw ClientError{"bad_request", "a room name has at most 80 bytes"};
    // HSETNX claims the room id (atomic across processes); the conversation is made next.
    auto const k = key("room_conv");
    bool const mine =
        co_await db_.async_exec(rediskit::cmd::hsetnx{k, room, ""}, asio::use_awaitable);
    if (!mine) throw ClientError{"room_exists", "room \"" + room + "\" exists: join it"};
    rediskit::RoomData data(name);
    co_await rooms_.async_create_room(room, data, asio::use_awaitable);
    // A room is a seed-004 conversation of type "room": its medecin slot is the room itself
    // (id 0), its patient slot the creator; members join as participants.
    rediskit::NewConversation nc("room", room, rediskit::ParticipantInfo(0, "room", room),
                                 rediskit::ParticipantInfo(c->user_id_, c->name_), name);
    auto created = co_await convs_.async_create_conversation(nc, asio::use_awaitable);
    auto const conv = created.conversation.id;
    co_await hset(k, room, conv);
    auto const names = key("room_names");
    co_await hset(names, room, name);
    conv_cache_[room] = conv;
    auto const uid_text = std::to_string(c->user_id_);
    co_await rooms_.async_join_room(room, uid_text, asio::use_awaitable);
    co_await rooms_.async_set_user_role_in_room(room, uid_text, rediskit::RoomRole::admin,
                                                asio::use_awaitable);
    enter(c->user_id_, room);
    reply(c, req,
          {{"ev", "joined"}, {"room", json::object{{"id", room}, {"name", name}, {"unread", 0}}}});
    {
      json::object ev{{"t", "room_created"}, {"room", json::object{{"id", room}, {"name", name}}}};
      co_await publish(std::move(ev));
    }
  }

  asio::awaitable<void> join(ClientPtr c, json::object const& o, std::optional<json::value> req) {
    auto const room = room_arg(o);
    auto const conv = co_await require_conversation(room);
    auto const uid_text = std::to_string(c->user_id_);
    co_await rooms_.async_join_room(room, uid_text, asio::use_awaitable);
    rediskit::UserRef who(kUserType, c->user_id_);
    co_await convs_.async_add_participant(conv, who, asio::use_awaitable);
    enter(c->user_id_, room);
    auto info = co_await room_json(room, c->user_id_);
    if (!info) throw ClientError{"no_such_room", "room \"" + room + "\" is gone"};
    reply(c, req, {{"ev", "joined"}, {"room", std::move(*info)}});
    {
      json::object ev{{"t", "member"},
                      {"room", room},
                      {"user", user_json(c->user_id_, c->name_)},
                      {"joined", true}};
      co_await publish(std::move(ev));
    }
  }

  asio::awaitable<void> leave(ClientPtr c, json::object const& o, std::optional<json::value> req) {
    auto const room = room_arg(o);
    require_member(c, room);
    auto const conv = co_await require_conversation(room);
    auto const uid_text = std::to_string(c->user_id_);
    co_await rooms_.async_leave_room(room, uid_text, asio::use_awaitable);
    rediskit::UserRef who(kUserType, c->user_id_);
    co_await convs_.async_remove_participant(conv, who, asio::use_awaitable);
    reply(c, req, {{"ev", "left"}, {"room", room}});
    {
      json::object ev{{"t", "member"},
                      {"room", room},
                      {"user", user_json(c->user_id_, c->name_)},
                      {"joined", false}};
      co_await publish(std::move(ev));
    }
  }

  /// Every local socket of `uid` gets the room's events.
  void enter(std::int64_t uid, std::string const& room) {
    auto it = local_users_.find(uid);
    if (it == local_users_.end()) return;
    for (auto* c : it->second.clients) {
      c->rooms_.insert(room);
      room_clients_[room].insert(c);
    }
  }
  void exit(std::int64_t uid, std::string const& room) {
    auto it = local_users_.find(uid);
    if (it == local_users_.end()) return;
    for (auto* c : it->second.clients) {
      c->rooms_.erase(room);
      if (c->open_room_ == room) c->open_room_.clear();
      auto rc = room_clients_.find(room);
      if (rc != room_clients_.end()) {
        rc->second.erase(c);
        if (rc->second.empty()) room_clients_.erase(rc);
      }
    }
  }

  json::array messages_json(std::vector<rediskit::ChatMessage> const& newest_first,
                            std::string const& room) {
    json::array out;
    for (auto it = newest_first.rbegin(); it != newest_first.rend(); ++it)
      out.push_back(message_json(*it, room));
    return out;
  }

  static json::object message_json(rediskit::ChatMessage const& m, std::string const& room) {
    auto const cur = rediskit::MessageStore<B>::cursor_of(m);
    return {{"id", m.id},
            {"room", room},
            {"from", user_json(m.sender.id, m.sender.prenom)},
            {"text", m.content},
            {"ts", cur.timestamp_ms}};
  }

  asio::awaitable<void> open(ClientPtr c, json::object const& o, std::optional<json::value> req) {
    auto const room = room_arg(o);
    require_member(c, room);
    auto const conv = co_await require_conversation(room);
    c->open_room_ = room;
    auto page =
        co_await store_.async_get_conversation_messages(conv, kPage + 1, 0, asio::use_awaitable);
    bool const more = static_cast<std::int64_t>(page.size()) > kPage;
    if (more) page.resize(kPage);
    // Reading up to the newest message also clears this reader's unread count of the room
    // (the store was given the UnreadMessageManager); a room without messages has only the
    // count to clear.
    if (!page.empty()) {
      rediskit::UserRef reader(kUserType, c->user_id_);
      co_await store_.async_mark_read(conv, reader, page.front().id, asio::use_awaitable);
    } else {
      co_await unread_.async_mark_conversation_read(conv, member_of(c->user_id_),
                                                    asio::use_awaitable);
    }
    // Members, with who is online (RoomManager's view of OnlineUserManager).
    auto const members = co_await rooms_.async_get_room_users(room, asio::use_awaitable);
    auto const online = co_await rooms_.async_get_room_online_users(room, asio::use_awaitable);
    std::unordered_set<std::string> on(online.begin(), online.end());
    // Their names in one HMGET (not one HGET per member).
    auto const names_key = key("users:names");
    std::vector<std::string_view> const fields(members.begin(), members.end());
    rediskit::cmd::hmget const read_names{names_key, fields};
    auto const names = co_await db_.async_exec(read_names, asio::use_awaitable);
    json::array ms;
    for (std::size_t i = 0; i < members.size(); ++i) {
      auto const& m = members[i];
      std::int64_t id = 0;
      try {
        id = std::stoll(m);
      } catch (std::exception const&) {
        continue;
      }
      auto n = i < names.size() && names[i] ? *names[i] : "user " + m;
      ms.push_back(json::object{{"id", id}, {"name", n}, {"online", on.count(m) > 0}});
    }
    reply(c, req,
          {{"ev", "opened"},
           {"room", room},
           {"messages", messages_json(page, room)},
           {"more", more},
           {"members", std::move(ms)}});
  }

  asio::awaitable<void> history(ClientPtr c, json::object const& o,
                                std::optional<json::value> req) {
    auto const room = room_arg(o);
    require_member(c, room);
    auto const conv = co_await require_conversation(room);
    auto const* before = o.if_contains("before");
    if (!before || !before->is_object())
      throw ClientError{"bad_request",
                        "history needs \"before\": {\"ts\": ms, \"id\": message id}"};
    auto const& b = before->as_object();
    auto const* ts = b.if_contains("ts");
    auto const id = str(b, "id");
    if (!ts || !ts->is_number() || id.empty())
      throw ClientError{"bad_request", "\"before\" needs a numeric \"ts\" and an \"id\""};
    std::int64_t limit = kPage;
    if (auto const* l = o.if_contains("limit")) {
      if (!l->is_int64() || l->as_int64() < 1 || l->as_int64() > 100)
        throw ClientError{"bad_request", "\"limit\" must be 1 to 100"};
      limit = l->as_int64();
    }
    rediskit::MessageCursor cur(ts->to_number<std::int64_t>(), id);
    auto page =
        co_await store_.async_get_messages_before(conv, cur, limit + 1, asio::use_awaitable);
    bool const more = static_cast<std::int64_t>(page.size()) > limit;
    if (more) page.resize(static_cast<std::size_t>(limit));
    reply(c, req,
          {{"ev", "history"},
           {"room", room},
           {"messages", messages_json(page, room)},
           {"more", more}});
  }

  asio::awaitable<void> mark_read(ClientPtr c, json::object const& o,
                                  std::optional<json::value> req) {
    auto const room = room_arg(o);
    require_member(c, room);
    auto const conv = co_await require_conversation(room);
    co_await unread_.async_mark_conversation_read(conv, member_of(c->user_id_),
                                                  asio::use_awaitable);
    reply(c, req, {{"ev", "unread"}, {"room", room}, {"count", 0}});
  }

  // ---- messages ----------------------------------------------------------------------------
  std::string next_message_id() {
    return "m" + std::to_string(unix_ms()) + "-" + nonce_ + "-" + std::to_string(++seq_);
  }

  asio::awaitable<void> send_message(ClientPtr c, json::object const& o,
                                     std::optional<json::value> req) {
    auto const room = room_arg(o);
    require_member(c, room);
    auto const text = str(o, "text");
    if (text.empty() || text.size() > kMaxText)
      throw ClientError{"bad_request", "\"text\" must be 1 to 4000 bytes"};
    json::value cid = nullptr;
    if (auto const* v = o.if_contains("cid")) cid = *v;
    auto const uid_text = std::to_string(c->user_id_);
    auto const verdict = co_await limiter_.async_check(
        "send", rediskit::RateSubject::user(uid_text), asio::use_awaitable);
    if (!verdict.allowed) {
      ++stats_.rate_limited;
      throw ClientError{"rate_limited",
                        "too many messages: " + std::to_string(opt_.send_limit) + " per " +
                            std::to_string(opt_.send_period.count() / 1000) + " s; wait " +
                            std::to_string(verdict.retry_after.count()) + " ms",
                        verdict.retry_after.count()};
    }
    auto const conv = co_await require_conversation(room);
    rediskit::ChatMessage m;
    m.id = next_message_id();
    m.conversationId = conv;
    m.sender = rediskit::MessageSender(kUserType, c->user_id_, "", c->name_);
    m.content = text;
    rediskit::ChatMessage stored;
    bool saved = false;
    if (!degraded()) {
      auto [sec, s] = co_await store_.async_store_message(m, asio::as_tuple(asio::use_awaitable));
      if (!sec) {
        stored = std::move(s);
        saved = true;
      } else if (!degraded()) {
        throw ClientError{"unavailable", "the message was not stored (" + sec.message() +
                                             "): send it again if it does not show"};
      }
    }
    if (!saved) {  // Redis is down: delivered to this process's users now, stored when it is back
      if (pending_.size() >= kMaxPending)
        throw ClientError{"unavailable", "Redis is down and " + std::to_string(kMaxPending) +
                                             " messages wait for it: try again later"};
      m.timestamp = iso_utc(unix_ms());
      stored = m;
      pending_.push_back(m);
      ++stats_.messages_queued;
    }
    ++stats_.messages_sent;
    auto msg = message_json(stored, room);
    auto const ts = msg["ts"];
    reply(c, req, {{"ev", "sent"}, {"cid", cid}, {"id", stored.id}, {"ts", ts}, {"stored", saved}});
    {
      json::object ev{{"t", "message"},
                      {"room", room},
                      {"message", std::move(msg)},
                      {"cid", cid},
                      {"uid", c->user_id_}};
      co_await publish(std::move(ev));
    }
    if (saved) co_await mentions(c, room, stored);
  }

  /// Stores, in order, the messages sent while Redis was down, once it is back. The store
  /// refuses an id it already has, so a message whose first store did reach Redis is not stored
  /// twice; one the store refuses (its room is gone) is dropped and counted.
  asio::awaitable<void> store_pending_loop() {
    asio::steady_timer t(ioc_);
    while (!stopping_) {
      t.expires_after(500ms);
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      while (!pending_.empty() && !degraded() && !stopping_) {
        auto const m = pending_.front();
        auto [ec, s] = co_await store_.async_store_message(m, asio::as_tuple(asio::use_awaitable));
        (void)s;
        if (ec && ec != rediskit::Error::invalid_argument) break;  // down again: later
        pending_.pop_front();
        if (ec)
          ++stats_.messages_dropped;
        else
          ++stats_.messages_stored_late;
      }
    }
  }

  /// "@name" in a message: a notification (NotificationService) to that member of the room.
  asio::awaitable<void> mentions(ClientPtr c, std::string const& room,
                                 rediskit::ChatMessage const& m) {
    std::vector<std::string> targets;
    std::string_view t = m.content;
    for (auto at = t.find('@'); at != std::string_view::npos; at = t.find('@', at + 1)) {
      auto end = at + 1;
      while (end < t.size() && t[end] != ' ' && t[end] != ',' && t[end] != '.' && t[end] != ':' &&
             t[end] != '!' && t[end] != '?')
        ++end;
      if (end > at + 1) targets.emplace_back(t.substr(at + 1, end - at - 1));
    }
    if (targets.empty()) co_return;
    auto const ids = key("users:ids");
    auto const members = co_await rooms_.async_get_room_users(room, asio::use_awaitable);
    std::vector<std::string> notify;
    for (auto const& n : targets) {
      auto const k = name_key(n);
      auto got = co_await db_.async_exec(rediskit::cmd::hget{ids, k}, asio::use_awaitable);
      if (!got || *got == std::to_string(c->user_id_)) continue;
      if (std::find(members.begin(), members.end(), *got) == members.end()) continue;
      if (std::find(notify.begin(), notify.end(), *got) == notify.end()) notify.push_back(*got);
    }
    for (auto const& u : notify) {
      rediskit::Notification n(
          rediskit::NotificationType::new_message, rediskit::NotificationPriority::high,
          c->name_ + " mentioned you in " + room, m.content.substr(0, 140), room);
      n.sender_id = c->name_;
      n.message_id = m.id;
      n.conversation_id = m.conversationId;
      co_await notes_.async_notify(u, n, asio::use_awaitable);
    }
  }

  void typing(ClientPtr const& c, json::object const& o) {
    auto const room = room_arg(o);
    require_member(c, room);
    auto const now = std::chrono::steady_clock::now();
    if (now - c->last_typing_ < 1s) return;  // at most one a second per socket
    c->last_typing_ = now;
    asio::co_spawn(
        ioc_,
        publish({{"t", "typing"}, {"room", room}, {"user", user_json(c->user_id_, c->name_)}}),
        asio::detached);
  }

  asio::awaitable<void> search(ClientPtr c, json::object const& o, std::optional<json::value> req) {
    auto const q = str(o, "q");
    if (q.size() < 2 || q.size() > 100)
      throw ClientError{"bad_request", "\"q\" must be 2 to 100 bytes"};
    auto const hits = co_await directory_.async_search_users(q, kUserType, 20, asio::use_awaitable);
    json::array users;
    for (auto const& h : hits) {
      std::int64_t id = 0;
      try {
        id = std::stoll(h.user.id);
      } catch (std::exception const&) {
        continue;
      }
      users.push_back(
          json::object{{"id", id}, {"name", h.user.profile.nom}, {"online", h.user.online}});
    }
    reply(c, req, {{"ev", "search"}, {"q", q}, {"users", std::move(users)}});
  }

  // ---- the bus -----------------------------------------------------------------------------
  asio::awaitable<void> publish(json::object event) {
    auto const payload = json::serialize(event);
    auto const ch = channel();
    ++stats_.events_published;
    auto [ec, n] = co_await db_.async_exec(rediskit::cmd::publish{ch, payload},
                                           asio::as_tuple(asio::use_awaitable));
    if (ec) std::cerr << "[" << opt_.name << "] publish failed: " << ec.message() << std::endl;
    (void)n;
  }

  asio::awaitable<void> bus_subscribe() {
    subscriber_.emplace(db_.make_subscriber());
    auto const ch = channel();
    auto [ec] = co_await subscriber_->async_subscribe({ch}, asio::as_tuple(asio::use_awaitable));
    if (ec)
      std::cerr << "[" << opt_.name << "] subscribing to " << ch << ": " << ec.message()
                << " (retried by the subscriber when the link is back)" << std::endl;
  }

  asio::awaitable<void> bus_loop() {
    for (;;) {
      auto [ec, m] = co_await subscriber_->async_receive(asio::as_tuple(asio::use_awaitable));
      if (stopping_) co_return;
      if (ec == rediskit::Error::pushes_dropped || ec == rediskit::Error::resubscribed) {
        ++stats_.bus_gaps;  // live events were lost; history and counts are in the store
        continue;
      }
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        asio::steady_timer t(ioc_, 100ms);  // closed or failed: the subscriber reconnects
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      ++stats_.events_received;
      error_code pec;
      auto v = json::parse(m.payload, pec);
      if (pec || !v.is_object()) continue;
      try {
        deliver(v.as_object());
      } catch (std::exception const& x) {  // a payload of another publisher: skipped
        std::cerr << "[" << opt_.name << "] bad event on " << m.channel << ": " << x.what()
                  << std::endl;
      }
    }
  }

  /// An event of any process, to this process's sockets.
  void deliver(json::object const& e) {
    auto const t = str(e, "t");
    if (t == "message") {
      auto const room = str(e, "room");
      auto it = room_clients_.find(room);
      if (it == room_clients_.end()) return;
      std::int64_t const uid = e.contains("uid") ? e.at("uid").to_number<std::int64_t>() : 0;
      json::object out{{"ev", "message"}, {"room", room}, {"message", e.at("message")}};
      auto const plain = json::serialize(out);
      out["cid"] = e.contains("cid") ? e.at("cid") : nullptr;
      auto const own = json::serialize(out);
      for (auto* c : it->second)
        c->send(c->user_id_ == uid ? own : plain);
    } else if (t == "typing") {
      auto const room = str(e, "room");
      auto it = room_clients_.find(room);
      if (it == room_clients_.end()) return;
      auto const& user = e.at("user").as_object();
      auto const uid = user.at("id").to_number<std::int64_t>();
      auto const frame =
          json::serialize(json::object{{"ev", "typing"}, {"room", room}, {"user", user}});
      for (auto* c : it->second)
        if (c->user_id_ != uid) c->send(frame);
    } else if (t == "member") {
      auto const room = str(e, "room");
      auto const& user = e.at("user").as_object();
      auto const uid = user.at("id").to_number<std::int64_t>();
      bool const joined = e.at("joined").as_bool();
      auto const frame = json::serialize(
          json::object{{"ev", "member"}, {"room", room}, {"user", user}, {"joined", joined}});
      if (auto it = room_clients_.find(room); it != room_clients_.end())
        for (auto* c : it->second)
          c->send(frame);
      // The user's sockets on this process follow the membership (another tab joined).
      if (joined)
        enter(uid, room);
      else
        exit(uid, room);
    } else if (t == "room_created") {
      auto const frame =
          json::serialize(json::object{{"ev", "room_created"}, {"room", e.at("room")}});
      for (auto* c : lobby_)
        c->send(frame);
    } else if (t == "presence") {
      auto const& user = e.at("user").as_object();
      auto const uid = user.at("id").to_number<std::int64_t>();
      bool const online = e.at("online").as_bool();
      if (online)
        known_online_[uid] = std::string(user.at("name").as_string());
      else
        known_online_.erase(uid);
      auto const frame =
          json::serialize(json::object{{"ev", "presence"}, {"user", user}, {"online", online}});
      for (auto* c : lobby_)
        c->send(frame);
    }
  }

  // ---- timers ------------------------------------------------------------------------------
  /// Renews the presence of this process's sockets, three times per TTL.
  asio::awaitable<void> heartbeat_loop() {
    while (!stopping_) {
      heartbeat_.expires_after(opt_.presence_ttl / 3);
      auto [ec] = co_await heartbeat_.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec || stopping_) co_return;
      std::vector<std::weak_ptr<Client<B>>> all;
      for (auto const& c : clients_)
        if (c->logged_in()) all.push_back(c);
      for (auto const& w : all)
        if (auto c = w.lock()) co_await heartbeat(*c);
    }
  }

  asio::awaitable<void> load_known_online() {
    auto [ec, page] =
        co_await presence_.async_get_online_users("", 1000, asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    for (auto const& u : page.users) {
      try {
        known_online_[std::stoll(u.user_id)] = u.matricule;
      } catch (std::exception const&) {
      }
    }
  }

  /// Users a dead process left online expire after the TTL: twice per TTL, the users this
  /// process believes online are checked, and those gone are announced offline.
  asio::awaitable<void> sweep_loop() {
    while (!stopping_) {
      sweep_.expires_after(opt_.presence_ttl / 2);
      auto [ec] = co_await sweep_.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec || stopping_) co_return;
      if (known_online_.empty() || degraded()) continue;  // memory knows nobody else's presence
      std::vector<std::string> ids;
      for (auto const& [id, name] : known_online_)
        ids.push_back(std::to_string(id));
      auto [fec, online] =
          co_await presence_.async_filter_online(ids, asio::as_tuple(asio::use_awaitable));
      if (fec) continue;
      std::unordered_set<std::string> on(online.begin(), online.end());
      for (auto const& id : ids) {
        if (on.count(id)) continue;
        auto const uid = std::stoll(id);
        auto it = known_online_.find(uid);
        if (it == known_online_.end()) continue;
        auto const name = it->second;
        {
          json::object ev{{"t", "presence"}, {"user", user_json(uid, name)}, {"online", false}};
          co_await publish(std::move(ev));
        }
      }
    }
  }

  asio::awaitable<void> finish_shutdown() {
    // Users offline (each socket's own detach does it when its read ends; wait for them, 2 s
    // at most: a peer that never answers the close frame is cut).
    asio::steady_timer t(ioc_);
    for (int i = 0; i < 100 && !clients_.empty(); ++i) {
      t.expires_after(20ms);
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    for (auto const& c : clients_) {
      error_code ignored;
      beast::get_lowest_layer(c->ws_).socket().close(ignored);
    }
    // The cut sockets' detaches still publish their users' offline: 5 s more at most (with
    // thousands of sockets this takes seconds; what is left expires with the presence TTL).
    for (int i = 0; i < 250 && !clients_.empty(); ++i) {
      t.expires_after(20ms);
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (!clients_.empty())
      std::cerr << "[" << opt_.name << "] " << clients_.size()
                << " sockets still closing: their users go offline with the presence TTL"
                << std::endl;
    if (subscriber_) {
      auto [ec] = co_await subscriber_->async_unsubscribe({}, asio::as_tuple(asio::use_awaitable));
      (void)ec;
    }
    std::cerr << "[" << opt_.name << "] stopped" << std::endl;
    on_stopped_();
  }

 public:
  /// Called once shutdown finished (main closes the backend, and io_context::run returns).
  std::function<void()> on_stopped_ = [] {};

 private:
  // ---- HTTP --------------------------------------------------------------------------------
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, sock] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (stopping_ || ec == asio::error::operation_aborted) co_return;
        asio::steady_timer t(ioc_, 50ms);  // e.g. out of file descriptors: back off
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      sock.set_option(tcp::no_delay(true));
      asio::co_spawn(ioc_, session(beast::tcp_stream(std::move(sock))), asio::detached);
    }
  }

  asio::awaitable<void> session(beast::tcp_stream stream) {
    beast::flat_buffer buf;
    for (;;) {
      http::request<http::string_body> req;
      stream.expires_after(30s);
      auto [ec, n] =
          co_await http::async_read(stream, buf, req, asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      if (websocket::is_upgrade(req)) {
        if (req.target() != "/ws" || stopping_) {
          co_await respond(stream, req, http::status::not_found, "text/plain", "no such socket\n");
          co_return;
        }
        stream.expires_never();
        auto const id = opt_.name + "-" + std::to_string(++sockets_);
        auto c = std::make_shared<Client<B>>(
            *this, websocket::stream<beast::tcp_stream>(std::move(stream)), id);
        co_await c->run(std::move(req));
        co_return;
      }
      bool const keep = req.keep_alive();
      co_await route(stream, req);
      if (!keep) {
        error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
      }
    }
  }

  asio::awaitable<void> route(beast::tcp_stream& stream,
                              http::request<http::string_body> const& req) {
    auto const target = std::string(req.target());
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      co_await respond(stream, req, http::status::method_not_allowed, "text/plain", "GET only\n");
    } else if (target == "/" || target == "/index.html") {
      co_await file(stream, req, "index.html", "text/html; charset=utf-8");
    } else if (target == "/app.js") {
      co_await file(stream, req, "app.js", "text/javascript; charset=utf-8");
    } else if (target == "/app.css") {
      co_await file(stream, req, "app.css", "text/css; charset=utf-8");
    } else if (target == "/health") {
      auto const h = db_.health();
      bool const ok = h == rediskit::HealthStatus::ok;
      json::object o{{"status", ok ? "ok" : "degraded"},
                     {"backend", std::string(backend_name())},
                     {"health", std::string(rediskit::to_string(h))},
                     {"connections", stats_.connections}};
      if constexpr (requires { db_.stats().mode; }) o["mode"] = std::string(db_.stats().mode);
      co_await respond(stream, req, ok ? http::status::ok : http::status::service_unavailable,
                       "application/json", json::serialize(o) + "\n");
    } else if (target == "/metrics") {
      co_await respond(stream, req, http::status::ok, "text/plain; version=0.0.4",
                       metrics_.metrics_text());
    } else {
      co_await respond(stream, req, http::status::not_found, "text/plain", "not found\n");
    }
  }

  asio::awaitable<void> file(beast::tcp_stream& stream, http::request<http::string_body> const& req,
                             std::string const& name, char const* type) {
    std::ifstream in(opt_.static_dir + "/" + name, std::ios::binary);
    if (!in) {
      co_await respond(stream, req, http::status::not_found, "text/plain",
                       "missing " + opt_.static_dir + "/" + name + " (see --static)\n");
      co_return;
    }
    std::ostringstream body;
    body << in.rdbuf();
    co_await respond(stream, req, http::status::ok, type, body.str());
  }

  static asio::awaitable<void> respond(beast::tcp_stream& stream,
                                       http::request<http::string_body> const& req,
                                       http::status status, char const* type, std::string body) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::server, "rediskit-chat");
    res.set(http::field::content_type, type);
    res.set(http::field::cache_control, "no-store");
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();
    auto [ec, n] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
    (void)ec;
    (void)n;
  }

  struct LocalUser {
    std::string name;
    std::unordered_set<Client<B>*> clients;
    rediskit::NotificationSubscription notifications;
  };

  asio::io_context& ioc_;
  B& db_;
  Options opt_;
  rediskit::OnlineUserManager<B> presence_;
  rediskit::RoomManager<B> rooms_;
  rediskit::UnreadMessageManager<B> unread_;
  rediskit::ConversationManager<B> convs_;
  rediskit::MessageStore<B> store_;
  rediskit::UserDirectory<B> directory_;
  rediskit::NotificationService<B> notes_;
  rediskit::SessionStore<B> sessions_;
  rediskit::RateLimiter<B> limiter_;
  rediskit::RedisManager metrics_;  // the Prometheus registry (no Redis clients of its own)
  std::vector<std::shared_ptr<void>> exposed_;
  std::optional<typename B::subscriber_type> subscriber_;
  tcp::acceptor acceptor_;
  asio::steady_timer heartbeat_;
  asio::steady_timer sweep_;
  asio::signal_set signals_;
  ChatStats stats_;
  std::string nonce_;
  std::uint64_t seq_ = 0;
  std::uint64_t sockets_ = 0;
  bool stopping_ = false;
  std::set<ClientPtr> clients_;
  std::unordered_set<Client<B>*> lobby_;
  std::unordered_map<std::string, std::unordered_set<Client<B>*>> room_clients_;
  std::unordered_map<std::int64_t, LocalUser> local_users_;
  std::unordered_map<std::int64_t, std::string> known_online_;
  std::unordered_map<std::string, std::string> conv_cache_;
  std::deque<rediskit::ChatMessage> pending_;  // sent while Redis was down, oldest first
};

}  // namespace chat
