// rediskit::RedisBackend: typed commands over connections to one Redis server, by role (seed
// 000's RedisService clients: main, sub, stream; seed 002's connection options).
//
//   rediskit::RedisBackend redis(ioc, rediskit::RedisConfig::from_env());
//   auto v = co_await redis.async_exec(rediskit::cmd::get{"chat:user:42"});
//
// Roles:
//  - main: one pipelined Connection for every command and batch: concurrent callers share
//    its writes (see connection.hpp);
//  - blocking: XREADGROUP BLOCK, BLMOVE (and a plain batch holding one) run on connections of
//    their own, taken from a small pool (one per command in flight, health check off), so they
//    never stall the main pipeline;
//  - sub: each subscriber (make_subscriber()) has its own connection, as a subscribed RESP3
//    connection still serves its own commands but its pushes are its own.
//
// Sentinel (RedisConfig::sentinels and master_name): every (re)connection of every role asks
// the Sentinels where the master is, checks its ROLE, and follows failovers: one subscription
// to +switch-master per backend relocates every connection to the new master (what was written
// gets its reply first; nothing queued is lost). A write that meets READONLY (a master demoted
// under us) fails with Error::read_only, having not run, and the connection finds the master
// again. Size max_retry_attempts so that the retries outlast a failover (see the README).
//
// A batch is one request (one write, one round trip); a transaction is MULTI ... EXEC in that
// same request. Replies are adapted straight off the wire into the typed results. A request of
// only idempotent commands (reads) may be re-sent after a lost link; any other fails with
// Error::connection_lost when the link drops after it was written: it may have run.
//
// TLS and ACL users: RedisConfig::tls (rediss://) and username / password apply to every
// connection of every role; TLS needs <rediskit/tls.hpp> in the program (see that header).
//
// Thread safety: as Connection, use it from its executor (a strand with a multi-threaded
// io_context).
#pragma once

#include <rediskit/backend/detail/exec_overloads.hpp>
#include <rediskit/backend/detail/sentinel.hpp>
#include <rediskit/backend/subscriber.hpp>
#include <rediskit/command.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/error.hpp>
#include <rediskit/redis_config.hpp>
#include <rediskit/resp3/adapt.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/mp11/algorithm.hpp>

#include <array>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace rediskit {

namespace detail::redis {

using boost::system::error_code;

template <class P>
struct PartWire {
  using type = wire_t<P>;
};
template <class P>
  requires CommandSpan<P>
struct PartWire<P> {
  // Each element is adapted in place: std::vector<bool> has no bool& to adapt into.
  using W = wire_t<std::remove_const_t<typename P::element_type>>;
  using type = std::conditional_t<std::is_same_v<W, bool>, std::deque<bool>, std::vector<W>>;
};

/// The replies of a batch, routed node by node into each part's wire value. Errors are kept
/// (first one wins) instead of being reported to the connection, so that one failing command
/// never stops the others' replies from being adapted (inside EXEC they are one reply).
template <bool Atomic, class... Parts>
class BatchResponse {
 public:
  static constexpr std::size_t expected_replies = resp3::any_count;

  explicit BatchResponse(Batch<Atomic, Parts...> const& b) {
    std::size_t total = 0;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((starts_[I] = total, total += part_size(std::get<I>(b.parts))), ...);
    }(std::index_sequence_for<Parts...>{});
    commands_ = total;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (presize(std::get<I>(wire), std::get<I>(b.parts)), ...);
    }(std::index_sequence_for<Parts...>{});
  }

  void on_node(std::size_t index, resp3::NodeView const& n, error_code&) {
    if constexpr (!Atomic) {
      route(index, n);
    } else {
      // MULTI's OK, one QUEUED per command, then EXEC's array (or its error).
      if (index <= commands_) {
        if (resp3::is_error(n.type)) keep_error(server_error_code(n.value), n.value);
        return;
      }
      if (n.depth == 0) {
        if (resp3::is_error(n.type)) keep_error(server_error_code(n.value), n.value);
        if (n.type == resp3::Type::null) keep_error(Error::exec_aborted);
        element_ = std::size_t(-1);
        return;
      }
      if (n.depth == 1) ++element_;
      resp3::NodeView inner = n;
      inner.depth -= 1;
      route(element_, inner);
    }
  }

  /// The request's commands: the batch, wrapped in MULTI / EXEC when atomic.
  static void write(resp3::Request& req, Batch<Atomic, Parts...> const& b) {
    if constexpr (Atomic) req.push("MULTI");
    for_each_command(b, [&](auto const& c) { push_command(req, c); });
    if constexpr (Atomic) req.push("EXEC");
  }

  reply_t<Batch<Atomic, Parts...>> take() {
    reply_t<Batch<Atomic, Parts...>> out;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (convert<Parts>(std::get<I>(wire), std::get<I>(out)), ...);
    }(std::index_sequence_for<Parts...>{});
    return out;
  }

  error_code error() const noexcept { return error_; }
  std::string const& error_text() const noexcept { return error_text_; }

  std::tuple<typename PartWire<Parts>::type...> wire;

 private:
  template <class W, class P>
  static void presize(W& w, P const& p) {
    if constexpr (CommandSpan<P>) w.resize(p.size());
  }

  template <class P, class W, class R>
  static void convert(W& w, R& out) {
    if constexpr (CommandSpan<P>) {
      using C = std::remove_const_t<typename P::element_type>;
      out.reserve(w.size());
      // auto&&: a std::vector<bool> hands out proxies.
      for (auto&& x : w) out.push_back(from_wire<C>(std::move(x)));
    } else {
      out = from_wire<P>(std::move(w));
    }
  }

  void keep_error(Error e, std::string_view text = {}) {
    if (error_) return;
    error_ = make_error_code(e);
    error_text_.assign(text);
  }

  // Reply number `index` of the batch (0-based, MULTI/QUEUED excluded).
  void route(std::size_t index, resp3::NodeView const& n) {
    if (n.depth == 0) skipping_ = false;
    if (skipping_) return;
    std::size_t part = 0;
    while (part + 1 < sizeof...(Parts) && index >= starts_[part + 1]) ++part;
    error_code ec;
    boost::mp11::mp_with_index<sizeof...(Parts)>(part, [&](auto I) {
      auto& w = std::get<I>(wire);
      auto& adapter = std::get<I>(adapters_);
      using P = boost::mp11::mp_at_c<boost::mp11::mp_list<Parts...>, I>;
      if (n.depth == 0) {
        if constexpr (CommandSpan<P>) {
          std::size_t const k = index - starts_[I];
          if (k >= w.size()) return;
          adapter.emplace(w[k]);
        } else {
          adapter.emplace(w);
        }
      }
      if (adapter) adapter->on_node(n, ec);
    });
    if (ec) {
      if (!error_) {
        error_ = ec;
        if (resp3::is_error(n.type)) error_text_.assign(n.value);
      }
      skipping_ = true;
    }
  }

  template <class P>
  using ElementWire = typename PartWire<P>::type;
  template <class P>
  struct AdapterOf {
    using type = std::optional<resp3::ReplyAdapter<wire_t<P>>>;
  };
  template <class P>
    requires CommandSpan<P>
  struct AdapterOf<P> {
    using type =
        std::optional<resp3::ReplyAdapter<wire_t<std::remove_const_t<typename P::element_type>>>>;
  };

  std::tuple<typename AdapterOf<Parts>::type...> adapters_{};
  std::array<std::size_t, sizeof...(Parts)> starts_{};
  std::size_t commands_ = 0;
  std::size_t element_ = 0;
  bool skipping_ = false;
  error_code error_{};
  std::string error_text_;
};

/// A response that first skips `skip` replies (SCRIPT LOAD ahead of the commands), keeping
/// their first error, then feeds the inner response.
template <class Inner>
class SkipFirst {
 public:
  static constexpr std::size_t expected_replies = resp3::any_count;
  SkipFirst(std::size_t skip, Inner& inner) : skip_(skip), inner_(inner) {}
  void on_node(std::size_t index, resp3::NodeView const& n, error_code& ec) {
    if (index >= skip_) return inner_.on_node(index - skip_, n, ec);
    if (n.depth == 0 && resp3::is_error(n.type) && !error_) {
      error_ = make_error_code(server_error_code(n.value));
      error_text_.assign(n.value);
    }
  }
  error_code error() const noexcept { return error_; }
  std::string const& error_text() const noexcept { return error_text_; }

 private:
  std::size_t skip_;
  resp3::ResponseAdapter<Inner> inner_;
  error_code error_{};
  std::string error_text_;
};

/// Calls f(sha1, source) for every script command in x.
template <class X, class F>
void for_each_script(X const& x, F&& f) {
  for_each_command(x, [&](auto const& c) {
    if constexpr (requires { c.script_source(); }) f(c.script_sha1(), c.script_source());
  });
}

/// What one async_exec sends and receives. X: a command, a batch, or a span of commands.
template <class X>
struct Job;

template <Command C>
struct Job<C> {
  using reply_type = reply_t<C>;
  std::tuple<wire_t<C>> inner{};  // one reply (a tuple-shaped wire type stays one reply)
  resp3::Request req;
  SkipFirst<std::tuple<wire_t<C>>> resp;
  std::size_t command_at = 0;  // where the command starts in req, after the SCRIPT LOADs
  Job(C const& c, std::vector<std::string_view> const& loads)
      : req({.idempotent = is_idempotent_v<C>}), resp(loads.size(), inner) {
    for (auto src : loads) req.push("SCRIPT", "LOAD", src);
    command_at = req.payload().size();
    push_command(req, c);
  }
  /// The same command again, with `script` loaded first: after NOSCRIPT, from the bytes sent
  /// (what the command viewed may be gone by now).
  Job(Job const& failed, std::string_view script)
      : req(failed.req.config), resp(1, inner) {
    req.push("SCRIPT", "LOAD", script);
    command_at = req.payload().size();
    req.append_raw(failed.req.payload().substr(failed.command_at), 1, 1);
  }
  error_code extra_error() const noexcept { return resp.error(); }
  std::string extra_text() const { return resp.error_text(); }
  reply_type take() { return from_wire<C>(std::move(std::get<0>(inner))); }
};

template <class C>
struct Job<std::span<C const>> {
  using reply_type = std::vector<reply_t<C>>;
  resp3::Replies<wire_t<C>> inner;
  resp3::Request req;
  SkipFirst<resp3::Replies<wire_t<C>>> resp;
  Job(std::span<C const> cs, std::vector<std::string_view> const& loads)
      : req({.idempotent = is_idempotent_v<C>}), resp(loads.size(), inner) {
    for (auto src : loads) req.push("SCRIPT", "LOAD", src);
    for (auto const& c : cs) push_command(req, c);
  }
  error_code extra_error() const noexcept { return resp.error(); }
  std::string extra_text() const { return resp.error_text(); }
  reply_type take() {
    reply_type out;
    out.reserve(inner.size());
    for (auto& w : inner) out.push_back(from_wire<C>(std::move(w)));
    return out;
  }
};

template <class P>
constexpr bool part_idempotent() {
  if constexpr (CommandSpan<P>)
    return is_idempotent_v<std::remove_const_t<typename P::element_type>>;
  else
    return is_idempotent_v<P>;
}

template <bool A, class... P>
struct Job<Batch<A, P...>> {
  using reply_type = reply_t<Batch<A, P...>>;
  BatchResponse<A, P...> inner;
  resp3::Request req;
  SkipFirst<BatchResponse<A, P...>> resp;
  Job(Batch<A, P...> const& b, std::vector<std::string_view> const& loads)
      : inner(b), req({.idempotent = (part_idempotent<P>() && ...)}), resp(loads.size(), inner) {
    for (auto src : loads) req.push("SCRIPT", "LOAD", src);
    BatchResponse<A, P...>::write(req, b);
  }
  error_code extra_error() const noexcept {
    return resp.error() ? resp.error() : inner.error();
  }
  std::string extra_text() const { return resp.error() ? resp.error_text() : inner.error_text(); }
  reply_type take() { return inner.take(); }
};

/// What Connection sees of every RedisBackend operation, whatever its command types: one
/// response type and one completion type, so that Connection's operation machinery is
/// instantiated once, not once per command type (the typed work is behind two virtual calls
/// per operation, nothing beside a network round trip).
struct ErasedJob {
  virtual ~ErasedJob() = default;
  virtual void on_node(std::size_t index, resp3::NodeView const& n, error_code& ec) = 0;
  /// Converts the replies, calls the user's handler and deletes this.
  virtual void complete(error_code ec) = 0;
};

struct ErasedResponse {
  static constexpr std::size_t expected_replies = resp3::any_count;
  ErasedJob* job;
  void on_node(std::size_t index, resp3::NodeView const& n, error_code& ec) {
    job->on_node(index, n, ec);
  }
};

/// Carries the user handler's executor and cancellation slot (found by Asio's associators).
struct ErasedCompletion {
  std::unique_ptr<ErasedJob> job;
  boost::asio::any_io_executor executor;
  boost::asio::cancellation_slot slot;

  using executor_type = boost::asio::any_io_executor;
  executor_type get_executor() const noexcept { return executor; }
  using cancellation_slot_type = boost::asio::cancellation_slot;
  cancellation_slot_type get_cancellation_slot() const noexcept { return slot; }

  void operator()(error_code ec) { job.release()->complete(ec); }
};

/// True when x must run on a blocking connection (inside MULTI nothing blocks).
template <class X>
bool needs_blocking_connection(X const& x) {
  if constexpr (is_batch_v<X>) {
    if constexpr (X::atomic) return false;
  }
  bool any = false;
  for_each_command(x, [&](auto const& c) { any = any || is_blocking(c); });
  return any;
}

/// The connections of a RedisBackend, shared with operations in flight (which hold it weakly
/// to give blocking connections back).
struct Pool {
  /// `replica`: a cluster replica that serves reads (READONLY on every connection).
  Pool(boost::asio::any_io_executor ex, RedisConfig cfg, bool replica = false)
      : executor(std::move(ex)),
        config(std::move(cfg)),
        read_only_replica(replica),
        sentinel(config.sentinels.empty()
                     ? nullptr
                     : std::make_shared<sentinel::Sentinel>(executor, config)),
        main(executor, main_config()) {}

  ConnectionConfig main_config() const {
    auto c = config.connection_config();
    if (c.client_name.empty()) c.client_name = "rediskit";
    if (read_only_replica) c.setup.push("READONLY");
    if (sentinel) {
      c.locate = [s = sentinel](LocateHandler h) { s->async_locate(std::move(h)); };
      c.require_master = true;
    }
    return c;
  }
  ConnectionConfig blocking_config() const {
    auto c = main_config();
    c.health_check_interval = std::chrono::milliseconds(0);  // a BLOCK looks like a dead link
    c.command_timeout = std::chrono::milliseconds(0);        // and waits by design
    c.offline_queue = true;  // made for this command: it waits for the link made for it
    return c;
  }

  std::shared_ptr<Connection> take_blocking() {
    if (!idle_blocking.empty()) {
      auto c = std::move(idle_blocking.back());
      idle_blocking.pop_back();
      return c;
    }
    ++blocking_created;
    auto c = std::make_shared<Connection>(executor, blocking_config());
    if (sentinel) sentinel->watch(c);
    return c;
  }
  void give_back(std::shared_ptr<Connection> c) {
    if (idle_blocking.size() < max_idle_blocking) idle_blocking.push_back(std::move(c));
  }

  boost::asio::any_io_executor executor;
  RedisConfig config;
  bool read_only_replica = false;
  std::shared_ptr<sentinel::Sentinel> sentinel;  // Sentinel mode only
  Connection main;
  std::vector<std::shared_ptr<Connection>> idle_blocking;
  std::size_t max_idle_blocking = 4;
  std::size_t blocking_created = 0;
  std::set<std::string, std::less<>> loaded_scripts;  // SHA1s the server is known to have
  // The link those SHA1s were seen on (handshakes + lost links of `main`): a new link may reach
  // a restarted server with an empty script cache, so a change forgets them all. A batch (not
  // re-sent after NOSCRIPT) prepared after the change then loads its scripts first.
  std::uint64_t scripts_link = 0;
  void forget_scripts_of_old_links() {
    auto const& m = main.metrics();
    auto const link = m.connections_created + m.errors;
    if (link == scripts_link) return;
    scripts_link = link;
    loaded_scripts.clear();
  }
};

// [message, channel, payload], [smessage, channel, payload] or
// [pmessage, pattern, channel, payload].
inline bool to_message(resp3::Tree const& t, Message& m) {
  if (t.size() < 4 || t[0].depth != 0) return false;
  if ((t[1].value == "message" || t[1].value == "smessage") && t.size() == 4) {
    m.channel = t[2].value;
    m.payload = t[3].value;
    m.sharded = t[1].value.front() == 's';
    return true;
  }
  if (t[1].value == "pmessage" && t.size() == 5) {
    m.pattern = t[2].value;
    m.channel = t[3].value;
    m.payload = t[4].value;
    return true;
  }
  return false;
}

}  // namespace detail::redis

/// A subscriber with its own connection (made by RedisBackend::make_subscriber()). The same
/// interface as MemorySubscriber (see rediskit/backend/subscriber.hpp). Subscriptions are
/// restored after a reconnection.
class RedisSubscriber {
 public:
  RedisSubscriber(boost::asio::any_io_executor ex, ConnectionConfig cfg)
      : conn_(std::make_shared<Connection>(std::move(ex), std::move(cfg))) {}
  RedisSubscriber(RedisSubscriber&&) noexcept = default;
  RedisSubscriber& operator=(RedisSubscriber&&) noexcept = default;
  RedisSubscriber(RedisSubscriber const&) = delete;  // one connection, one owner
  RedisSubscriber& operator=(RedisSubscriber const&) = delete;

  boost::asio::any_io_executor get_executor() const { return conn_->get_executor(); }

  /// Handler: void(error_code), once the server confirmed (a message published after this
  /// completes is received).
  template <class Token = boost::asio::deferred_t>
  auto async_subscribe(ArgList<std::string_view> channels, Token&& token = {}) {
    return change("SUBSCRIBE", channels, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_psubscribe(ArgList<std::string_view> patterns, Token&& token = {}) {
    return change("PSUBSCRIBE", patterns, std::forward<Token>(token));
  }
  /// An empty list: from every channel.
  template <class Token = boost::asio::deferred_t>
  auto async_unsubscribe(ArgList<std::string_view> channels = {}, Token&& token = {}) {
    return change("UNSUBSCRIBE", channels, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_punsubscribe(ArgList<std::string_view> patterns = {}, Token&& token = {}) {
    return change("PUNSUBSCRIBE", patterns, std::forward<Token>(token));
  }
  /// Shard channels (Redis 7's SSUBSCRIBE; only cmd::spublish reaches them).
  template <class Token = boost::asio::deferred_t>
  auto async_ssubscribe(ArgList<std::string_view> channels, Token&& token = {}) {
    return change("SSUBSCRIBE", channels, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_sunsubscribe(ArgList<std::string_view> channels = {}, Token&& token = {}) {
    return change("SUNSUBSCRIBE", channels, std::forward<Token>(token));
  }

  /// The next message (subscription confirmations are skipped). Handler:
  /// void(error_code, Message).
  template <class Token = boost::asio::deferred_t>
  auto async_receive(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, Message)>(
        [conn = conn_.get()](auto handler) { receive_loop(conn, std::move(handler)); }, token);
  }

  /// Closes the connection; a waiting receive completes with Error::connection_closed.
  void close() {
    if (conn_) conn_->close();
  }

  Connection& connection() noexcept { return *conn_; }
  Connection const& connection() const noexcept { return *conn_; }

 private:
  template <class Handler>
  static void receive_loop(Connection* conn, Handler handler) {
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    auto ex = boost::asio::get_associated_executor(handler, conn->get_executor());
    conn->async_receive(boost::asio::bind_cancellation_slot(
        slot, boost::asio::bind_executor(
                  ex, [conn, h = std::move(handler)](boost::system::error_code ec,
                                                     resp3::Tree t) mutable {
                    if (ec) return std::move(h)(ec, Message{});
                    Message m;
                    if (detail::redis::to_message(t, m)) return std::move(h)(ec, std::move(m));
                    receive_loop(conn, std::move(h));  // a confirmation: skip it
                  })));
  }

  template <class Token>
  auto change(std::string_view verb, ArgList<std::string_view> names, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [conn = conn_.get()](auto handler, std::string_view verb,
                             ArgList<std::string_view> names) {
          auto list = names.to_vector();
          std::vector<std::string> owned(list.begin(), list.end());
          if (owned.empty() && !verb.ends_with("UNSUBSCRIBE")) {
            auto ex = boost::asio::get_associated_executor(handler, conn->get_executor());
            return detail::post_handler(ex, std::move(handler),
                                        make_error_code(Error::invalid_request));
          }
          if (verb == "SUBSCRIBE")
            conn->async_subscribe(owned, std::move(handler));
          else if (verb == "PSUBSCRIBE")
            conn->async_psubscribe(owned, std::move(handler));
          else if (verb == "SSUBSCRIBE")
            conn->async_ssubscribe(owned, std::move(handler));
          else if (verb == "UNSUBSCRIBE")
            conn->async_unsubscribe(owned, std::move(handler));
          else if (verb == "SUNSUBSCRIBE")
            conn->async_sunsubscribe(owned, std::move(handler));
          else
            conn->async_punsubscribe(owned, std::move(handler));
        },
        token, verb, names);
  }

  friend class RedisBackend;  // registers conn_ with its Sentinel watch
  std::shared_ptr<Connection> conn_;
};

/// What a RedisBackend in Sentinel mode knows of its Sentinels (RedisBackend::sentinel_status).
struct SentinelStatus {
  /// "host:port" in the order they are asked: the last one that named the master first.
  std::vector<std::string> sentinels{};
  std::string master_host{};  ///< the master last named (by a Sentinel or by +switch-master)
  std::uint16_t master_port = 0;
  std::uint64_t discoveries = 0;           ///< rounds of questions that named a master
  std::uint64_t failed_discoveries = 0;    ///< rounds where no Sentinel did
  std::uint64_t switch_master_events = 0;  ///< +switch-master messages for our master name
  bool watching = false;  ///< subscribed to +switch-master on a Sentinel right now
};

/// The Backend on a real Redis server (see the top of this file).
class RedisBackend : public detail::ExecOverloads<RedisBackend> {
  friend class detail::ExecOverloads<RedisBackend>;

 public:
  using executor_type = boost::asio::any_io_executor;
  using subscriber_type = RedisSubscriber;

  /// Seed 003's cache mode name.
  static constexpr std::string_view name = "redis";

  explicit RedisBackend(executor_type ex, RedisConfig cfg = {})
      : pool_(std::make_shared<detail::redis::Pool>(std::move(ex), std::move(cfg))) {
    // The main connection, owned by the pool, watched as long as the pool lives.
    if (pool_->sentinel) pool_->sentinel->watch(std::shared_ptr<Connection>(pool_, &pool_->main));
  }
  explicit RedisBackend(boost::asio::io_context& ioc, RedisConfig cfg = {})
      : RedisBackend(ioc.get_executor(), std::move(cfg)) {}
  RedisBackend(RedisBackend&&) noexcept = default;
  RedisBackend& operator=(RedisBackend&&) noexcept = default;
  ~RedisBackend() {
    if (pool_) close();
  }

  executor_type get_executor() const noexcept { return pool_->executor; }

  /// async_exec (detail::ExecOverloads): a command, a Batch or transaction, or N commands of
  /// one type, each with or without Diagnostics. Errors: server errors (Error::wrong_type,
  /// ...; the text goes to `diag`), connection errors (connection.hpp). The command is written
  /// out before async_exec returns (a lazy token: when it is started): what it views may go
  /// away at once, even for a blocking command.
  using detail::ExecOverloads<RedisBackend>::async_exec;

  /// A subscriber with its own connection.
  RedisSubscriber make_subscriber() {
    auto cfg = pool_->main_config();
    cfg.health_check_interval = pool_->config.health_check_interval;
    cfg.offline_queue = true;  // a subscription waits for its link, and for the next one
    RedisSubscriber s(pool_->executor, std::move(cfg));
    if (pool_->sentinel) pool_->sentinel->watch(s.conn_);
    return s;
  }

  /// A connection of its own to this backend's server, configured as the main one (address
  /// or Sentinel discovery, credentials, TLS, database), with `setup` sent after every
  /// handshake: session state that must survive a reconnection, such as NearCache's
  /// CLIENT TRACKING. Not connected yet: async_connect() it, or send it a request.
  std::shared_ptr<Connection> make_connection(resp3::Request setup = {}) {
    auto cfg = pool_->main_config();
    cfg.setup = std::move(setup);
    auto c = std::make_shared<Connection>(pool_->executor, std::move(cfg));
    if (pool_->sentinel) pool_->sentinel->watch(c);
    return c;
  }

  /// Connects the main connection now (it also connects on first use). Handler:
  /// void(error_code).
  template <class Token = boost::asio::deferred_t>
  auto async_connect(Token&& token = {}) {
    return pool_->main.async_connect(std::forward<Token>(token));
  }

  /// Closes every connection; pending operations complete with Error::connection_closed.
  void close() {
    pool_->main.close();
    for (auto& c : pool_->idle_blocking) c->close();
    pool_->idle_blocking.clear();
    if (pool_->sentinel) pool_->sentinel->close();
  }

  /// The main connection's health: "OK", "DEGRADED", "DISCONNECTED" (seed 000).
  HealthStatus health() const noexcept { return pool_->main.health(); }
  /// The main connection's metrics (seed 000's RedisService.metrics).
  ConnectionMetrics const& metrics() const noexcept { return pool_->main.metrics(); }
  RedisConfig const& config() const noexcept { return pool_->config; }
  Connection& main_connection() noexcept { return pool_->main; }
  /// Blocking connections opened so far (at most one per blocking command in flight).
  std::size_t blocking_connections_created() const noexcept { return pool_->blocking_created; }

  /// What the backend knows of its Sentinels; all empty / 0 when not in Sentinel mode.
  SentinelStatus sentinel_status() const {
    SentinelStatus st;
    if (auto const& s = pool_->sentinel) {
      st.sentinels = s->sentinels();
      st.master_host = s->master_host();
      st.master_port = s->master_port();
      st.discoveries = s->discoveries();
      st.failed_discoveries = s->failed_discoveries();
      st.switch_master_events = s->switch_master_events();
      st.watching = s->watching();
    }
    return st;
  }

 private:
  template <class R, class X, class Token>
  auto exec_impl(X const& x, Diagnostics* diag, Token&& token) {
    static_assert(std::is_same_v<R, typename detail::redis::Job<X>::reply_type>);
    return boost::asio::async_initiate<Token, void(boost::system::error_code, R)>(
        // The handler by reference: the command is written out before the handler (and a
        // caller's state that the command may view, such as a composed op) moves.
        [pool = pool_](auto&& handler, X const& x, Diagnostics* diag) {
          auto op = prepare(pool, x, diag);
          op->handler = std::move(handler);
          submit(pool, std::move(op), detail::redis::needs_blocking_connection(x));
        },
        token, x, diag);
  }

  // One operation: the typed job behind the type-erased pieces Connection sees. One type per
  // command (batch, range) type, whatever the caller's handler: that is erased.
  template <class X>
  struct Operation final : detail::redis::ErasedJob {
    using Job = detail::redis::Job<X>;
    using R = typename Job::reply_type;
    Operation(X const& x, std::vector<std::string_view> const& loads,
              std::weak_ptr<detail::redis::Pool> p, std::vector<std::string> s, Diagnostics* d)
        : job(x, loads), pool(std::move(p)), shas(std::move(s)), diag(d) {
      detail::redis::for_each_script(
          x, [&](std::string_view sha, std::string_view src) { scripts.emplace_back(sha, src); });
    }
    // The retry of a single command that met NOSCRIPT (its script loaded first).
    Operation(Operation& failed, std::shared_ptr<detail::redis::Pool> const& p)
        : job(failed.job, failed.scripts.at(0).second), handler(std::move(failed.handler)),
          pool(p), shas{std::string(failed.scripts.at(0).first)}, diag(failed.diag),
          retried(true), scripts(std::move(failed.scripts)) {}

    void on_node(std::size_t index, resp3::NodeView const& n,
                 boost::system::error_code& ec) override {
      job.resp.on_node(index, n, ec);
    }

    void complete(boost::system::error_code ec) override {
      std::unique_ptr<Operation> self(this);
      if (!ec) {
        ec = job.extra_error();
        if (ec && diag && diag->server_message.empty()) diag->server_message = job.extra_text();
      }
      auto p = pool.lock();
      if (p) {
        if (ec == Error::no_script) {
          // The server lost its scripts (restart, SCRIPT FLUSH): load them again next time.
          for (auto const& [sha, src] : scripts)
            if (auto it = p->loaded_scripts.find(sha); it != p->loaded_scripts.end())
              p->loaded_scripts.erase(it);
          // A single command that met NOSCRIPT did not run: safe to send again, once. A
          // batch is never re-sent: its other commands ran.
          if constexpr (Command<X>) {
            if (!retried && !scripts.empty()) {
              if (diag) diag->clear();
              return submit(p, std::make_unique<Operation>(*this, p), false);
            }
          }
        } else {
          for (auto& sha : shas) p->loaded_scripts.insert(std::move(sha));
        }
      }
      auto r = job.take();
      // A cancelled blocking command would still hold its connection: drop it instead.
      if (blocking && p && ec != boost::asio::error::operation_aborted &&
          blocking->health() == HealthStatus::ok)
        p->give_back(std::move(blocking));
      auto h = std::move(handler);
      self.reset();
      std::move(h)(ec, std::move(r));
    }

    Job job;
    detail::AnyHandler<void(boost::system::error_code, R)> handler;
    std::weak_ptr<detail::redis::Pool> pool;
    std::vector<std::string> shas;  // scripts this request loads
    Diagnostics* diag;
    bool retried = false;
    // Every script of the request (views of the Script objects, which outlive it).
    std::vector<std::pair<std::string_view, std::string_view>> scripts;
    std::shared_ptr<Connection> blocking;
    detail::redis::ErasedResponse response{this};
  };

  template <class X>
  static std::unique_ptr<Operation<X>> prepare(std::shared_ptr<detail::redis::Pool> const& pool,
                                               X const& x, Diagnostics* diag) {
    // Scripts the server may not have yet: SCRIPT LOAD goes ahead of them in the same request.
    pool->forget_scripts_of_old_links();
    std::vector<std::string_view> loads;
    std::vector<std::string> shas;
    detail::redis::for_each_script(x, [&](std::string_view sha, std::string_view src) {
      if (pool->loaded_scripts.contains(sha)) return;
      for (auto const& s : shas)
        if (s == sha) return;
      shas.emplace_back(sha);
      loads.push_back(src);
    });
    return std::make_unique<Operation<X>>(x, loads, pool, std::move(shas), diag);
  }

  template <class X>
  static void submit(std::shared_ptr<detail::redis::Pool> const& pool,
                     std::unique_ptr<Operation<X>> op, bool blocking) {
    auto ex = op->handler.executor(pool->executor);
    auto slot = op->handler.cancellation_slot();
    if (op->job.req.commands() == 0) {  // an empty range of commands: nothing to send
      return detail::post_handler(ex, std::move(op->handler), boost::system::error_code{},
                                  typename Operation<X>::R{});
    }
    Connection* conn = &pool->main;
    if (blocking) {
      op->blocking = pool->take_blocking();
      conn = op->blocking.get();
    }
    auto& req = op->job.req;
    auto& resp = op->response;
    Diagnostics* diag = op->diag;
    detail::redis::ErasedCompletion done{std::move(op), ex, slot};
    if (diag)
      conn->async_exec(req, resp, *diag, std::move(done));
    else
      conn->async_exec(req, resp, std::move(done));
  }

  std::shared_ptr<detail::redis::Pool> pool_;
};

}  // namespace rediskit
