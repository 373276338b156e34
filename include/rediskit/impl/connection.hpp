// rediskit: implementation of Connection. Included at the bottom of rediskit/connection.hpp.
//
// Shape: the public Connection owns a shared ConnectionImpl; every asynchronous handler the
// implementation starts holds a shared_ptr to it, so destroying the Connection closes the link
// and the implementation goes away once the last handler has run. Each TCP link has its own
// Link object (socket, buffers, parser); handlers also hold their Link and ignore their
// completion when it is no longer the current one, so nothing of an old link can reach a new
// one.
//
// Pending user operations are type-erased nodes (ExecOpBase...) allocated with the handler's
// associated allocator (asio's recycling allocator by default) and completed through the
// handler's associated executor, with outstanding work tracked, as asio's own operations do.
#pragma once

#include <rediskit/detail/tls_session.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/config.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <set>
#include <vector>

namespace rediskit {
namespace detail {

namespace asio = boost::asio;
using boost::system::error_code;

// ------------------------------------------------------------------------------------------
// Type-erased operations

// The work that keeps a pending operation's handler's execution context running, and where
// the handler completes. The common case, a handler (a coroutine's, a plain lambda's) whose
// executor is an io_context's, is kept as that concrete executor: tracking its work is a
// counter, and a completion on the io_context's own thread is a direct call. Any other
// executor (a strand, a thread pool) is tracked and dispatched to through any_io_executor.
class HandlerWork {
  using IoEx = asio::io_context::executor_type;
  using TrackedIo =
      std::decay_t<decltype(asio::prefer(std::declval<IoEx>(),
                                         asio::execution::outstanding_work.tracked))>;

 public:
  template <class Handler>
  HandlerWork(Handler const& h, asio::any_io_executor const& fallback) {
    auto ex = asio::get_associated_executor(h, fallback);
    if constexpr (std::is_convertible_v<decltype(ex), asio::any_io_executor const&>) {
      asio::any_io_executor const& any = ex;
      if (auto const* io = any.target<IoEx>()) {
        io_.emplace(asio::prefer(*io, asio::execution::outstanding_work.tracked));
        return;
      }
    }
    other_ = asio::prefer(ex, asio::execution::outstanding_work.tracked);
  }

  /// handler(args...), as asio::dispatch to the handler's executor would run it: right here
  /// when that is an io_context running on this thread. The work is released afterwards, so
  /// that the io_context does not run out of work before the handler starts its next operation.
  template <class Handler, class... Args>
  void complete(Handler&& handler, Args&&... args) && {
    if (io_) {
      TrackedIo const io = std::move(*io_);
      if (io.running_in_this_thread())
        std::move(handler)(std::forward<Args>(args)...);
      else
        asio::post(io, asio::append(std::forward<Handler>(handler), std::forward<Args>(args)...));
      return;
    }
    asio::any_io_executor const ex = std::move(other_);
    asio::dispatch(ex, asio::append(std::forward<Handler>(handler), std::forward<Args>(args)...));
  }

 private:
  std::optional<TrackedIo> io_;
  asio::any_io_executor other_;
};

template <class Op, class Handler>
auto op_allocator(Handler const& h) {
  auto a = asio::get_associated_allocator(h, asio::recycling_allocator<void>());
  using Traits = std::allocator_traits<decltype(a)>;
  return typename Traits::template rebind_alloc<Op>(a);
}

template <class Op, class Handler, class... Args>
Op* make_op(Handler&& h, Args&&... args) {
  auto alloc = op_allocator<Op>(h);
  using Traits = std::allocator_traits<decltype(alloc)>;
  Op* p = Traits::allocate(alloc, 1);
  try {
    Traits::construct(alloc, p, std::move(h), std::forward<Args>(args)...);
  } catch (...) {
    Traits::deallocate(alloc, p, 1);
    throw;
  }
  return p;
}

// Frees the op (its memory goes back before the upcall, as asio does) and dispatches the
// handler through its associated executor.
template <class Op, class... Args>
void finish_op(Op* op, Args&&... args) {
  auto slot = asio::get_associated_cancellation_slot(op->handler);
  if (slot.is_connected()) slot.clear();
  auto alloc = op_allocator<Op>(op->handler);
  auto handler = std::move(op->handler);
  HandlerWork work = std::move(op->work);
  using Traits = std::allocator_traits<decltype(alloc)>;
  Traits::destroy(alloc, op);
  Traits::deallocate(alloc, op, 1);
  std::move(work).complete(std::move(handler), std::forward<Args>(args)...);
}

// Frees the op without calling its handler: what asio does to the handlers still queued when
// their io_context is destroyed (see PostedOp).
template <class Op>
void destroy_op(Op* op) {
  auto alloc = op_allocator<Op>(op->handler);
  using Traits = std::allocator_traits<decltype(alloc)>;
  Traits::destroy(alloc, op);
  Traits::deallocate(alloc, op, 1);
}

// Owns an operation on its way to completion through the executor (ConnectionImpl's
// post_complete): if the function is destroyed without running (the io_context is shut down
// first), the operation is destroyed with it instead of leaking.
template <class Base>
class PostedOp {
 public:
  explicit PostedOp(Base* op) noexcept : op_(op) {}
  PostedOp(PostedOp&& o) noexcept : op_(std::exchange(o.op_, nullptr)) {}
  PostedOp& operator=(PostedOp&&) = delete;
  ~PostedOp() {
    if (op_) op_->destroy();
  }
  Base* release() noexcept { return std::exchange(op_, nullptr); }

 private:
  Base* op_;
};

/// What a SUBSCRIBE-family request changes in the session, applied once it is written.
struct Subscription {
  using Kind = SubscriptionKind;
  Kind kind = Kind::channel;
  bool subscribe = true;
  std::vector<std::string> names;

  /// The command ("SSUBSCRIBE"), or with `push`, how the server names it in a push
  /// ("ssubscribe").
  static constexpr std::string_view verb(Kind k, bool subscribe, bool push = false) {
    constexpr std::string_view v[2][3][2] = {
        {{"UNSUBSCRIBE", "SUBSCRIBE"}, {"PUNSUBSCRIBE", "PSUBSCRIBE"},
         {"SUNSUBSCRIBE", "SSUBSCRIBE"}},
        {{"unsubscribe", "subscribe"}, {"punsubscribe", "psubscribe"},
         {"sunsubscribe", "ssubscribe"}}};
    return v[push][static_cast<std::size_t>(k)][subscribe];
  }
};

/// A request waiting to be written or for its replies.
struct ExecOpBase {
  using NodeFn = void (*)(ExecOpBase*, std::size_t, resp3::NodeView const&, error_code&);
  using CompleteFn = void (*)(ExecOpBase*, error_code);
  using DestroyFn = void (*)(ExecOpBase*);

  NodeFn on_node_fn = nullptr;
  CompleteFn complete_fn = nullptr;
  DestroyFn destroy_fn = nullptr;  // user operations: frees without completing (destroy_op)
  std::string_view payload;
  std::size_t expected = 0;  // regular replies
  resp3::Request::Config cfg{};
  Diagnostics* diag = nullptr;
  Subscription const* subscription = nullptr;  // SUBSCRIBE and friends only
  bool internal = false;  // the handshake or a health-check PING, owned by the connection
  // Error::timeout at this time (command_timeout); max: never.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool resubscription = false;  // made by resubscribe(): replaced by the next one

  void complete(error_code ec) { complete_fn(this, ec); }
  void destroy() { destroy_fn(this); }
};

template <class Handler, class Response>
struct ExecOp final : ExecOpBase {
  Handler handler;
  HandlerWork work;
  resp3::ResponseAdapter<Response> adapter;

  ExecOp(Handler&& h, asio::any_io_executor const& ex, Response& r)
      : handler(std::move(h)), work(handler, ex), adapter(r) {
    on_node_fn = [](ExecOpBase* b, std::size_t i, resp3::NodeView const& n, error_code& ec) {
      static_cast<ExecOp*>(b)->adapter.on_node(i, n, ec);
    };
    complete_fn = [](ExecOpBase* b, error_code ec) { finish_op(static_cast<ExecOp*>(b), ec); };
    destroy_fn = [](ExecOpBase* b) { destroy_op(static_cast<ExecOp*>(b)); };
  }
};

// SUBSCRIBE and friends: owns its request. RESP3 confirms a subscription with pushes but
// refuses it (NOPERM for a channel outside the ACL user's, a wrong argument) with a regular
// error reply, so the request ends with a fence, HELLO without arguments (which every user may
// run, unlike PING, and which changes nothing): its reply is the op's one regular reply, and an
// error before it is the refusal (see on_node). Without the fence a refusal would be paired
// with the next request's slot.
template <class Handler>
struct SubscriptionOp final : ExecOpBase {
  Handler handler;
  HandlerWork work;
  resp3::Request request;
  Subscription change;

  SubscriptionOp(Handler&& h, asio::any_io_executor const& ex, resp3::Request&& r,
                 Subscription&& c)
      : handler(std::move(h)),
        work(handler, ex),
        request(std::move(r)),
        change(std::move(c)) {
    subscription = &change;
    on_node_fn = [](ExecOpBase*, std::size_t i, resp3::NodeView const& n, error_code& ec) {
      if (i == 0 && n.depth == 0 && resp3::is_error(n.type))
        ec = make_error_code(server_error_code(n.value));
    };
    complete_fn = [](ExecOpBase* b, error_code ec) {
      finish_op(static_cast<SubscriptionOp*>(b), ec);
    };
    destroy_fn = [](ExecOpBase* b) { destroy_op(static_cast<SubscriptionOp*>(b)); };
    payload = request.payload();
    expected = request.expected_replies();  // the fence's
    cfg.idempotent = true;  // subscribing twice is harmless
  }
};

struct ReceiveOpBase {
  using CompleteFn = void (*)(ReceiveOpBase*, error_code, resp3::Tree);
  CompleteFn complete_fn = nullptr;
  using DestroyFn = void (*)(ReceiveOpBase*);
  DestroyFn destroy_fn = nullptr;
  void complete(error_code ec, resp3::Tree t) { complete_fn(this, ec, std::move(t)); }
  void destroy() { destroy_fn(this); }
};

template <class Handler>
struct ReceiveOp final : ReceiveOpBase {
  Handler handler;
  HandlerWork work;
  ReceiveOp(Handler&& h, asio::any_io_executor const& ex)
      : handler(std::move(h)), work(handler, ex) {
    complete_fn = [](ReceiveOpBase* b, error_code ec, resp3::Tree t) {
      finish_op(static_cast<ReceiveOp*>(b), ec, std::move(t));
    };
    destroy_fn = [](ReceiveOpBase* b) { destroy_op(static_cast<ReceiveOp*>(b)); };
  }
};

struct WaitOpBase {
  using CompleteFn = void (*)(WaitOpBase*, error_code);
  CompleteFn complete_fn = nullptr;
  using DestroyFn = void (*)(WaitOpBase*);
  DestroyFn destroy_fn = nullptr;
  void complete(error_code ec) { complete_fn(this, ec); }
  void destroy() { destroy_fn(this); }
};

template <class Handler>
struct WaitOp final : WaitOpBase {
  Handler handler;
  HandlerWork work;
  WaitOp(Handler&& h, asio::any_io_executor const& ex)
      : handler(std::move(h)), work(handler, ex) {
    complete_fn = [](WaitOpBase* b, error_code ec) { finish_op(static_cast<WaitOp*>(b), ec); };
    destroy_fn = [](WaitOpBase* b) { destroy_op(static_cast<WaitOp*>(b)); };
  }
};

// ------------------------------------------------------------------------------------------

class ConnectionImpl : public std::enable_shared_from_this<ConnectionImpl> {
 public:
  enum class State : std::uint8_t {
    idle,           // never asked to connect
    connecting,     // resolve + TCP connect
    handshaking,    // HELLO / SELECT / setup / resubscribe written, replies awaited
    connected,
    waiting_retry,  // backoff timer running
    down,           // gave up; a new request or async_connect starts a new cycle
    closed,         // final
  };

  ConnectionImpl(asio::any_io_executor ex, ConnectionConfig cfg)
      : ex_(std::move(ex)),
        cfg_(std::move(cfg)),
        resolver_(ex_),
        retry_timer_(ex_),
        connect_timer_(ex_),
        health_timer_(ex_),
        deadline_timer_(ex_),
        rng_(std::random_device{}()) {
    handshake_op_.internal = true;
    handshake_op_.diag = &handshake_diag_;
    handshake_op_.on_node_fn = &handshake_on_node;
    handshake_op_.complete_fn = [](ExecOpBase* b, error_code ec) {
      static_cast<InternalOp*>(b)->impl->on_handshake_done(ec);
    };
    handshake_op_.impl = this;
    ping_op_.internal = true;
    ping_op_.payload = "*1\r\n$4\r\nPING\r\n";
    ping_op_.expected = 1;
    ping_op_.on_node_fn = &internal_on_node;
    ping_op_.complete_fn = [](ExecOpBase* b, error_code) {
      static_cast<InternalOp*>(b)->impl->ping_outstanding_ = false;
    };
    ping_op_.impl = this;
  }

  asio::any_io_executor const& executor() const noexcept { return ex_; }
  ConnectionConfig const& config() const noexcept { return cfg_; }
  ConnectionMetrics const& metrics() const noexcept { return metrics_; }

  HealthStatus health() const noexcept {
    switch (state_) {
      case State::connected: return HealthStatus::ok;
      case State::connecting:
      case State::handshaking:
      case State::waiting_retry: return HealthStatus::degraded;
      default: return HealthStatus::disconnected;
    }
  }

  // ---- initiations (run in the caller, never complete inline) ----------------------------

  template <class Handler, class Response>
  void start_exec(Handler&& h, resp3::Request const& req, Response& resp, Diagnostics* diag) {
    using Op = ExecOp<std::decay_t<Handler>, Response>;
    Op* op = make_op<Op>(std::move(h), ex_, resp);
    op->payload = req.payload();
    op->expected = req.expected_replies();
    op->cfg = req.config;
    op->diag = diag;
    if (diag) diag->clear();
    constexpr std::size_t want = resp3::ResponseAdapter<Response>::expected_replies;
    if (req.commands() == 0 || (want != resp3::any_count && want != op->expected))
      return post_complete(op, Error::invalid_request);
    auto const timeout = req.config.timeout.value_or(cfg_.command_timeout);
    auto const deadline = timeout.count() > 0 ? std::chrono::steady_clock::now() + timeout
                                              : std::chrono::steady_clock::time_point::max();
    op->deadline = deadline;
    install_cancel(op);
    submit(op);  // may complete op at once: it is not touched again
    watch_deadline(deadline);
  }

  /// SUBSCRIBE / PSUBSCRIBE / UNSUBSCRIBE / PUNSUBSCRIBE. Once the server took it, the change
  /// is remembered so that a reconnection subscribes again (see on_node).
  template <class Handler>
  void start_subscription(Handler&& h, resp3::Request&& req, Subscription&& change,
                          Diagnostics* diag = nullptr) {
    using Op = SubscriptionOp<std::decay_t<Handler>>;
    Op* op = make_op<Op>(std::move(h), ex_, std::move(req), std::move(change));
    op->diag = diag;
    if (diag) diag->clear();
    install_cancel(op);
    submit(op);
  }

  template <class Handler>
  void start_receive(Handler&& h) {
    using Op = ReceiveOp<std::decay_t<Handler>>;
    Op* op = make_op<Op>(std::move(h), ex_);
    auto const fail = [&](Error e) { post_complete(op, error_code(e), resp3::Tree{}); };
    if (state_ == State::closed) return fail(Error::connection_closed);
    if (receiver_) return fail(Error::already_receiving);
    if (pushes_were_dropped_) {
      pushes_were_dropped_ = false;
      return fail(Error::pushes_dropped);
    }
    if (resubscribed_unreported_) {
      resubscribed_unreported_ = false;
      return fail(Error::resubscribed);
    }
    if (!pushes_.empty()) {
      resp3::Tree t = std::move(pushes_.front());
      pushes_.pop_front();
      return post_complete(op, error_code{}, std::move(t));
    }
    auto slot = asio::get_associated_cancellation_slot(op->handler);
    if (slot.is_connected())
      slot.template emplace<CancelReceive>(CancelReceive{this, op});
    receiver_ = op;
  }

  template <class Handler>
  void start_connect(Handler&& h) {
    using Op = WaitOp<std::decay_t<Handler>>;
    Op* op = make_op<Op>(std::move(h), ex_);
    switch (state_) {
      case State::connected: return post_complete(op, error_code{});
      case State::closed: return post_complete(op, Error::connection_closed);
      case State::idle:
      case State::down: start_cycle(); break;
      default:
        if (loading_expired()) return post_complete(op, error_code(Error::loading));
        break;
    }
    auto slot = asio::get_associated_cancellation_slot(op->handler);
    if (slot.is_connected())
      slot.template emplace<CancelConnect>(CancelConnect{this, op});
    connect_waiters_.push_back(op);
  }

  template <class Handler>
  void start_close(Handler&& h) {
    using Op = WaitOp<std::decay_t<Handler>>;
    Op* op = make_op<Op>(std::move(h), ex_);
    close();
    post_complete(op, error_code{});
  }

  /// Fails everything pending with operation_aborted; the link stays.
  void cancel() { detach_pending().fail(asio::error::operation_aborted); }

  /// See Connection::relocate.
  void relocate() {
    if (state_ == State::connected) {
      relocating_ = true;
      LinkPtr const link = link_;  // a copy: finishing resets link_
      finish_relocation(link);
    } else if (state_ == State::waiting_retry) {
      retry_timer_.cancel();
      start_cycle();
    }
  }

  void close() {
    if (state_ == State::closed) return;
    state_ = State::closed;
    if (link_) {
      error_code ignored;
      link_->socket.close(ignored);
    }
    resolver_.cancel();
    retry_timer_.cancel();
    connect_timer_.cancel();
    health_timer_.cancel();
    deadline_timer_.cancel();
    auto pending = detach_pending();
    waiting_.clear();  // internal operations only, by now
    inflight_.clear();
    link_.reset();
    pushes_.clear();
    log(LogLevel::info, "connection to ", cfg_.host, ":", cfg_.port, " closed");
    pending.fail(Error::connection_closed);
  }

 private:
  struct InternalOp final : ExecOpBase {
    ConnectionImpl* impl = nullptr;
  };

  // User operations taken out of the connection's queues, to be completed once the
  // connection's state is consistent again (completing may run the caller's code inline).
  struct Detached {
    std::vector<ExecOpBase*> ops;
    std::vector<WaitOpBase*> waiters;
    ReceiveOpBase* receiver = nullptr;

    void fail(error_code ec) {
      for (auto* op : ops) op->complete(ec);
      for (auto* w : waiters) w->complete(ec);
      if (receiver) receiver->complete(ec, {});
    }
  };

  // Takes every pending user operation; internal ones (handshake, PING) stay, and written
  // requests keep their slot so that their replies are still read and dropped.
  Detached detach_pending() {
    Detached d;
    for (auto* op : waiting_)
      if (!op->internal) d.ops.push_back(op);
    std::erase_if(waiting_, [](ExecOpBase* op) { return !op->internal; });
    for (auto& s : inflight_)
      if (s.op && !s.op->internal) d.ops.push_back(std::exchange(s.op, nullptr));
    if (link_) {
      for (auto* op : link_->written_no_reply) d.ops.push_back(op);
      link_->written_no_reply.clear();
    }
    d.waiters = std::exchange(connect_waiters_, {});
    d.receiver = std::exchange(receiver_, nullptr);
    return d;
  }

  struct Slot {
    ExecOpBase* op;  // null once the caller gave up on it: its replies are discarded
    std::size_t expected;
    std::size_t received = 0;
    error_code ec{};
    bool skip = false;  // the current reply failed to adapt: skip its remaining nodes
    bool fenced = false;  // a SubscriptionOp's: an error before the fence's reply is its own
  };

  struct Link {
    Link(asio::any_io_executor const& ex, resp3::ParserConfig const& pc)
        : socket(ex), parser(pc) {}
    asio::ip::tcp::socket socket;
    std::unique_ptr<TlsSession> tls;  // TlsConfig::enabled; declared after the socket it uses
    bool tls_established = false;
    std::string wbuf;
    std::vector<char> rbuf;
    std::size_t rbeg = 0;
    std::size_t rend = 0;
    resp3::Parser parser;
    bool writing = false;
    bool in_reply = false;  // some nodes of a reply were seen
    bool in_push = false;   // ...and that reply is a push
    resp3::Tree push;
    std::vector<ExecOpBase*> written_no_reply;  // in the write in flight, completing with it
  };
  using LinkPtr = std::shared_ptr<Link>;

  struct CancelExec {
    ConnectionImpl* impl;
    ExecOpBase* op;
    void operator()(asio::cancellation_type) const { impl->cancel_exec(op); }
  };
  struct CancelReceive {
    ConnectionImpl* impl;
    ReceiveOpBase* op;
    void operator()(asio::cancellation_type) const {
      if (impl->receiver_ != op) return;
      impl->receiver_ = nullptr;
      op->complete(asio::error::operation_aborted, {});
    }
  };
  struct CancelConnect {
    ConnectionImpl* impl;
    WaitOpBase* op;
    void operator()(asio::cancellation_type) const {
      auto& w = impl->connect_waiters_;
      auto it = std::find(w.begin(), w.end(), op);
      if (it == w.end()) return;
      w.erase(it);
      op->complete(asio::error::operation_aborted);
    }
  };

  // ---- helpers -----------------------------------------------------------------------------

  template <class... Parts>
  void log(LogLevel level, Parts const&... parts) const {
    if (!cfg_.log) return;
    std::string line;
    (append_log(line, parts), ...);
    cfg_.log(level, line);
  }
  static void append_log(std::string& s, std::string_view v) { s += v; }
  static void append_log(std::string& s, char const* v) { s += v; }
  static void append_log(std::string& s, std::string const& v) { s += v; }
  template <class Int>
    requires std::is_integral_v<Int>
  static void append_log(std::string& s, Int v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    s.append(buf, r.ptr);
  }
  static void append_log(std::string& s, error_code const& ec) {
    s += ec.message();
    s += " [";
    s += ec.to_string();
    s += "]";
  }

  // Completes `op` from the executor: never inside the initiating call.
  template <class Op, class... Args>
  void post_complete(Op* op, Args... args) {
    asio::post(ex_, [p = PostedOp<Op>(op), ... a = std::move(args)]() mutable {
      p.release()->complete(std::move(a)...);
    });
  }

  void record_error(error_code ec) {
    ++metrics_.errors;
    metrics_.last_error = ec;
    metrics_.last_error_at = std::chrono::system_clock::now();
  }

  static void internal_on_node(ExecOpBase*, std::size_t, resp3::NodeView const& n,
                               error_code& ec) {
    if (resp3::is_error(n.type)) ec = server_error_code(n.value);
  }

  // With require_master, reply 1 of the handshake is ROLE's: its first element names the role.
  // A LOADING refusal of any step means the server is reading its dataset: the handshake is run
  // again once it is done (see wait_for_load). The last reply is the readiness PING's, when
  // max_loading_timeout is on: any other refusal of it (an ACL user without PING) is no error.
  static void handshake_on_node(ExecOpBase* b, std::size_t i, resp3::NodeView const& n,
                                error_code& ec) {
    ConnectionImpl* impl = static_cast<InternalOp*>(b)->impl;
    if (n.depth == 0 && resp3::is_error(n.type) && server_error_code(n.value) == Error::loading) {
      impl->server_loading_ = true;
      return;
    }
    if (i == impl->ready_index_) return;
    internal_on_node(b, i, n, ec);
    if (ec || !impl->cfg_.require_master || i != 1 || n.depth != 1 ||
        std::exchange(impl->role_seen_, true))
      return;
    if (n.value != "master") ec = Error::not_master;
  }

  // Relocating (a demoted master, a new one announced): once nothing written awaits a reply,
  // drop the link (nothing fails) and connect again at once. True when it did.
  bool finish_relocation(LinkPtr const& link) {
    if (!relocating_ || !link || !inflight_.empty() || link->writing) return false;
    relocating_ = false;
    on_link_error(link, Error::not_master);
    if (state_ == State::waiting_retry) {
      retry_timer_.cancel();
      start_attempt();
    }
    return true;
  }

  // ---- requests ----------------------------------------------------------------------------

  void submit(ExecOpBase* op) {
    switch (state_) {
      case State::connected: break;
      case State::closed: return post_complete(op, Error::connection_closed);
      case State::idle:
      case State::down:
        if (op->cfg.fail_if_not_connected) return post_complete(op, Error::not_connected);
        start_cycle();
        if (!cfg_.offline_queue) return post_complete(op, Error::not_connected);
        break;
      default:
        if (loading_since_ &&
            (op->cfg.fail_if_not_connected || !cfg_.offline_queue || loading_expired())) {
          if (op->diag) op->diag->detail = loading_text();
          return post_complete(op, error_code(Error::loading));
        }
        if (op->cfg.fail_if_not_connected || !cfg_.offline_queue ||
            waiting_.size() >= cfg_.max_waiting_requests)
          return post_complete(op, Error::not_connected);
        break;
    }
    waiting_.push_back(op);
    if (state_ != State::connected) return;
    // An idle link writes at once (one system call less per round trip); otherwise requests
    // gather until the write in flight or the end of this event-loop turn.
    if (inflight_.empty() && !link_->writing && !flush_scheduled_)
      do_write();
    else
      schedule_flush();
  }

  // A cancelled request leaves the queue, or, once written, has its replies discarded.
  template <class Op>
  void install_cancel(Op* op) {
    auto slot = asio::get_associated_cancellation_slot(op->handler);
    if (slot.is_connected()) slot.template emplace<CancelExec>(CancelExec{this, op});
  }

  void cancel_exec(ExecOpBase* op) {
    if (take(op) >= 0) op->complete(asio::error::operation_aborted);
  }

  // Takes `op` out of wherever it waits, without touching it (it may be gone: only its address
  // is compared). Returns 1 when it had been written (its replies will be read and dropped), 0
  // when not, -1 when it is not pending here.
  int take(ExecOpBase* op) {
    if (auto it = std::find(waiting_.begin(), waiting_.end(), op); it != waiting_.end()) {
      waiting_.erase(it);
      return 0;
    }
    for (auto& s : inflight_)
      if (s.op == op) {
        s.op = nullptr;
        return 1;
      }
    if (link_) {
      auto& w = link_->written_no_reply;
      if (auto it = std::find(w.begin(), w.end(), op); it != w.end()) {
        w.erase(it);
        return 1;
      }
    }
    return -1;
  }

  // ---- command timeout ---------------------------------------------------------------------

  void watch_deadline(std::chrono::steady_clock::time_point d) {
    if (d >= deadline_at_ || state_ == State::closed) return;
    deadline_at_ = d;
    deadline_timer_.expires_at(d);
    deadline_timer_.async_wait([w = weak_from_this()](error_code ec) {
      if (auto s = w.lock(); s && !ec) s->on_deadline();
    });
  }

  // Fails the requests whose deadline passed (written ones: their late replies are dropped),
  // then watches the next deadline, at least 10 ms on: under a steady stream of requests
  // waiting for the link, one scan of the queues serves every request due in that time.
  void on_deadline() {
    using Clock = std::chrono::steady_clock;
    deadline_at_ = Clock::time_point::max();
    auto const now = Clock::now();
    auto next = Clock::time_point::max();
    std::vector<ExecOpBase*> expired;
    auto look = [&](ExecOpBase* op) {
      if (!op || op->internal) return;
      if (op->deadline <= now)
        expired.push_back(op);
      else
        next = std::min(next, op->deadline);
    };
    for (auto* op : waiting_) look(op);
    for (auto& sl : inflight_) look(sl.op);
    if (link_)
      for (auto* op : link_->written_no_reply) look(op);
    // All taken out first: completing one may run its caller here, who may cancel, close or
    // start new requests; the taken ones are this function's alone by then.
    for (auto* op : expired) {
      int const written = take(op);
      if (auto* d = op->diag)  // before completing: the caller reads it
        d->detail = written ? "timed out after it was written: it may have run"
                            : "timed out before it was sent: it did not run";
    }
    for (auto* op : expired) op->complete(Error::timeout);
    if (next != Clock::time_point::max())
      watch_deadline(std::max(next, now + std::chrono::milliseconds(10)));
  }

  // Everything queued in this turn of the event loop goes out in one write.
  void schedule_flush() {
    if (flush_scheduled_ || !link_ || link_->writing) return;
    flush_scheduled_ = true;
    asio::post(ex_, [self = shared_from_this()] {
      self->flush_scheduled_ = false;
      self->do_write();
    });
  }

  void do_write() {
    LinkPtr const& link = link_;
    if (!link || link->writing || state_ != State::connected || waiting_.empty() || relocating_)
      return;
    link->wbuf.clear();
    while (!waiting_.empty()) {
      ExecOpBase* op = waiting_.front();
      waiting_.pop_front();
      link->wbuf.append(op->payload);
      ++metrics_.requests_sent;
      if (op->expected == 0)
        link->written_no_reply.push_back(op);
      else
        inflight_.push_back(Slot{.op = op,
                                 .expected = op->expected,
                                 .fenced = op->subscription != nullptr});
    }
    start_write(link);
  }

  void start_write(LinkPtr const& link) {
    link->writing = true;
    ++metrics_.writes;
    if (link->tls) [[unlikely]]
      return start_tls_write(link);
    asio::async_write(link->socket, asio::buffer(link->wbuf),
                      [self = shared_from_this(), link](error_code ec, std::size_t n) {
                        self->on_write(link, ec, n);
                      });
  }

  // A TLS operation's completion: `Fn` of this connection, on the link (see TlsDone).
  template <void (ConnectionImpl::*Fn)(LinkPtr const&, error_code, std::size_t)>
  TlsDone tls_done(LinkPtr const& link) {
    return {shared_from_this(), link, [](TlsDone const& d, error_code ec, std::size_t n) {
              (static_cast<ConnectionImpl*>(d.connection.get())->*Fn)(
                  std::static_pointer_cast<Link>(d.link), ec, n);
            }};
  }

  BOOST_NOINLINE void start_tls_write(LinkPtr const& link) {
    link->tls->async_write(asio::buffer(link->wbuf), tls_done<&ConnectionImpl::on_write>(link));
  }

  void on_write(LinkPtr const& link, error_code ec, std::size_t n) {
    if (link != link_) return;
    link->writing = false;
    if (ec) return on_link_error(link, ec);
    metrics_.bytes_written += n;
    if (!link->written_no_reply.empty()) {
      auto done = std::exchange(link->written_no_reply, {});
      for (auto* op : done) op->complete({});
      if (link != link_) return;
    }
    if (finish_relocation(link)) return;
    do_write();
  }

  void remember(Subscription const& change) {
    auto& set = subscriptions(change.kind);
    if (!change.subscribe && change.names.empty()) set.clear();
    for (auto const& n : change.names) {
      if (change.subscribe)
        set.insert(n);
      else if (auto it = set.find(n); it != set.end())
        set.erase(it);
    }
  }

  // Subscriptions are made again after the handshake, not in it, one command per name: a
  // refusal there must not fail the connection (an ACL user that lost a channel: NOPERM; on a
  // cluster, a shard channel whose slot moved while the link was down: MOVED). A refused name
  // is forgotten and reported as the server reports a subscription it ended, with a push
  // ["unsubscribe" / "punsubscribe" / "sunsubscribe", name, 0], so that a subscriber can act
  // (ClusterSubscriber subscribes a shard channel where its slot lives now).
  struct Resubscribed {
    std::weak_ptr<ConnectionImpl> self;
    Subscription::Kind kind;
    std::string name;
    std::uint64_t round;  // resubscribe_round_ when it was made
    void operator()(error_code ec) {
      auto s = self.lock();
      // A lost link sends it again with the next handshake; closing ends it.
      if (!s || s->state_ == State::closed || ec == Error::connection_lost ||
          ec == Error::reconnect_gave_up || ec == Error::connection_closed ||
          ec == asio::error::operation_aborted)
        return;
      if (ec) {
        s->log(LogLevel::warning, "subscription to ", name,
               " dropped: refused after reconnecting");
        auto& set = s->subscriptions(kind);
        if (auto it = set.find(name); it != set.end()) set.erase(it);
        resp3::Tree t;
        t.push_back(resp3::Node{resp3::Type::push, 3, 0, {}});
        t.push_back(resp3::Node{resp3::Type::blob_string, 1, 1,
                                std::string(Subscription::verb(kind, false, true))});
        t.push_back(resp3::Node{resp3::Type::blob_string, 1, 1, std::move(name)});
        t.push_back(resp3::Node{resp3::Type::number, 1, 1, "0"});
        s->deliver_push(std::move(t));
      }
      if (round == s->resubscribe_round_ && s->resubscribe_left_ > 0 &&
          --s->resubscribe_left_ == 0)
        s->report_resubscribed();
    }
  };

  // Every subscription of a new link is in effect again: the receiver hears once that what
  // was published meanwhile is lost (Error::resubscribed), before the pushes that follow.
  void report_resubscribed() {
    if (receiver_ && pushes_.empty() && !pushes_were_dropped_) {
      auto* r = std::exchange(receiver_, nullptr);
      return r->complete(make_error_code(Error::resubscribed), resp3::Tree{});
    }
    resubscribed_unreported_ = true;
  }

  std::set<std::string, std::less<>>& subscriptions(Subscription::Kind kind) {
    return kind == Subscription::Kind::pattern ? patterns_
           : kind == Subscription::Kind::shard ? shard_channels_
                                               : channels_;
  }

  // Ahead of the requests that waited for the link, in their order (an UNSUBSCRIBE among
  // them comes after), and whatever max_waiting_requests says.
  void resubscribe() {
    using Kind = Subscription::Kind;
    using Op = SubscriptionOp<Resubscribed>;
    // Those of an earlier link that never went out: this set replaces them.
    std::vector<ExecOpBase*> stale;
    std::erase_if(waiting_, [&](ExecOpBase* op) {
      if (!op->resubscription) return false;
      stale.push_back(op);
      return true;
    });
    for (auto* op : stale) op->complete(Error::connection_lost);  // ignored by Resubscribed
    std::vector<ExecOpBase*> ops;
    for (Kind kind : {Kind::channel, Kind::pattern, Kind::shard}) {
      for (auto const& name : subscriptions(kind)) {
        resp3::Request req;
        req.push(Subscription::verb(kind, true), name);
        req.push("HELLO");  // the fence: see SubscriptionOp
        Resubscribed done{weak_from_this(), kind, name, resubscribe_round_ + 1};
        ops.push_back(make_op<Op>(std::move(done), ex_, std::move(req),
                                  Subscription{kind, true, {name}}));
        ops.back()->resubscription = true;
      }
    }
    ++resubscribe_round_;
    resubscribe_left_ = ops.size();
    waiting_.insert(waiting_.begin(), ops.begin(), ops.end());
  }

  // ---- replies -----------------------------------------------------------------------------

  void start_read(LinkPtr const& link) {
    constexpr std::size_t min_free = 16 * 1024;
    constexpr std::size_t initial = 64 * 1024;
    auto& b = link->rbuf;
    if (link->rbeg == link->rend) {
      link->rbeg = link->rend = 0;
      if (b.size() > 16 * initial) std::vector<char>(initial).swap(b);  // after a huge reply
    }
    if (b.size() - link->rend < min_free) {
      if (link->rbeg > 0) {
        std::memmove(b.data(), b.data() + link->rbeg, link->rend - link->rbeg);
        link->rend -= link->rbeg;
        link->rbeg = 0;
      }
      if (b.size() - link->rend < min_free) b.resize(std::max(initial, b.size() * 2));
    }
    // async_read_some, not async_wait(wait_read) + read_some: a wait re-arms the descriptor
    // with epoll_ctl on every round trip. Asio 1.81 still tries one speculative read first
    // (EAGAIN when the reply is not there yet), so the system calls are as many; what goes is
    // the wait operation and the second completion (and a TLS stream can take the same call).
    auto const into = asio::buffer(b.data() + link->rend, b.size() - link->rend);
    if (link->tls) [[unlikely]]
      return start_tls_read(link, into);
    link->socket.async_read_some(into,
                                 [self = shared_from_this(), link](error_code ec, std::size_t n) {
                                   self->on_read(link, ec, n);
                                 });
  }

  BOOST_NOINLINE void start_tls_read(LinkPtr const& link, asio::mutable_buffer into) {
    link->tls->async_read_some(into, tls_done<&ConnectionImpl::on_read>(link));
  }

  void on_read(LinkPtr const& link, error_code ec, std::size_t n) {
    if (link != link_) return;
    if (!ec && n == 0) ec = asio::error::eof;
    if (ec) return on_link_error(link, ec);
    link->rend += n;
    metrics_.bytes_read += n;
    read_activity_ = true;
    if (process(link)) start_read(link);
  }

  // Parses every complete node; false when the link is no longer current.
  bool process(LinkPtr const& link) {
    for (;;) {
      std::size_t consumed = 0;
      error_code ec;
      auto node = link->parser.consume(
          std::string_view(link->rbuf.data() + link->rbeg, link->rend - link->rbeg), consumed,
          ec);
      link->rbeg += consumed;  // the node's value still views the buffer: nothing moved it
      if (ec) {
        log(LogLevel::error, "protocol error from ", cfg_.host, ":", cfg_.port, ": ", ec);
        on_link_error(link, ec);
        return false;
      }
      if (!node) return true;
      if (!on_node(link, *node)) return false;
    }
  }

  bool on_node(LinkPtr const& link, resp3::NodeView const& n) {
    bool const done = link->parser.done();
    if (!link->in_reply) {
      link->in_reply = true;
      link->in_push = n.type == resp3::Type::push;
      if (!link->in_push && inflight_.empty()) {
        log(LogLevel::error, "reply from ", cfg_.host, ":", cfg_.port,
            " that no request waits for; dropping the link");
        on_link_error(link, Error::unsolicited_reply);
        return false;
      }
    }
    if (link->in_push) {
      link->push.push_back(resp3::Node{n.type, n.size, n.depth, std::string(n.value)});
      if (!done) return true;
      link->in_reply = false;
      deliver_push(std::exchange(link->push, {}));
      return link == link_;
    }
    Slot& s = inflight_.front();
    // A master demoted under us: this request did not run (it fails with Error::read_only);
    // what is in flight gets its replies, then the connection relocates.
    if (cfg_.require_master && resp3::is_error(n.type) && n.value.starts_with("READONLY"))
      relocating_ = true;
    if (s.op && !s.skip) {
      error_code ec;
      s.op->on_node_fn(s.op, s.received, n, ec);
      if (ec) {
        s.skip = true;
        if (!s.ec) s.ec = ec;
        if (resp3::is_error(n.type) && s.op->diag && s.op->diag->server_message.empty())
          s.op->diag->server_message.assign(n.value);
      }
    }
    if (!done) return true;
    link->in_reply = false;
    s.skip = false;
    ++metrics_.replies_received;
    if (s.fenced && s.received == 0 && n.depth == 0 && resp3::is_error(n.type)) {
      // The subscription was refused; the fence's reply is still to come.
      log(LogLevel::warning, "subscription refused by ", cfg_.host, ":", cfg_.port, ": ",
          n.value);
      s.fenced = false;
      ++s.expected;
    }
    if (++s.received < s.expected) return true;
    Slot const finished = s;
    inflight_.pop_front();
    if (finished.op) {
      if (finished.op->subscription && !finished.ec) remember(*finished.op->subscription);
      finished.op->complete(finished.ec);  // may resume the caller right here
    }
    return link == link_ && !finish_relocation(link);
  }

  void deliver_push(resp3::Tree t) {
    ++metrics_.pushes_received;
    // A shard channel whose slot left this node (a resharding, SUNSUBSCRIBE): not subscribed
    // again here after a reconnection.
    if (t.size() >= 3 && t[1].depth == 1 && t[1].value == "sunsubscribe" && t[2].depth == 1)
      if (auto it = shard_channels_.find(t[2].value); it != shard_channels_.end())
        shard_channels_.erase(it);
    if (receiver_ && pushes_.empty() && !pushes_were_dropped_) {
      auto* r = std::exchange(receiver_, nullptr);
      return r->complete({}, std::move(t));
    }
    if (pushes_.size() >= std::max<std::size_t>(cfg_.max_queued_pushes, 1)) {
      pushes_.pop_front();
      ++metrics_.pushes_dropped;
      if (!pushes_were_dropped_)
        log(LogLevel::warning, "push queue full (", cfg_.max_queued_pushes,
            "): dropping the oldest pushes; call async_receive faster");
      pushes_were_dropped_ = true;
    }
    pushes_.push_back(std::move(t));
  }

  // ---- link life cycle ---------------------------------------------------------------------

  void start_cycle() {
    retries_left_ = cfg_.reconnect.max_attempts;
    retry_number_ = 0;
    cycle_start_ = std::chrono::steady_clock::now();
    start_attempt();
  }

  void retry_or_give_up(error_code ec) {
    if (retries_left_ == 0) return give_up(ec);
    --retries_left_;
    ++retry_number_;
    auto const delay = cfg_.reconnect.delay(retry_number_, rng_());
    state_ = State::waiting_retry;
    log(LogLevel::info, "reconnecting to ", cfg_.host, ":", cfg_.port, " in ", delay.count(),
        " ms (attempt ", retry_number_, " of ", cfg_.reconnect.max_attempts, ")");
    retry_timer_.expires_after(delay);
    retry_timer_.async_wait([self = shared_from_this()](error_code e) {
      if (e || self->state_ != State::waiting_retry) return;
      self->start_attempt();
    });
  }

  void start_attempt() {
    state_ = State::connecting;
    auto link = std::make_shared<Link>(ex_, cfg_.parser);
    link_ = link;
    if (cfg_.tls.enabled && !tls_session_factory()) {
      log(LogLevel::error, "TLS to ", cfg_.host, ":", cfg_.port,
          " is configured but <rediskit/tls.hpp> is not included in the program");
      // Posted: the request that started this cycle is still being queued.
      return asio::post(ex_, [self = shared_from_this(), link] {
        self->fail_attempt(link, Error::tls_unavailable, true);
      });
    }
    arm_connect_timer(link);
    if (cfg_.locate && !std::exchange(located_, false)) return locate(link);
    resolver_.async_resolve(
        cfg_.host, std::to_string(cfg_.port),
        [self = shared_from_this(), link](error_code ec,
                                          asio::ip::tcp::resolver::results_type results) {
          if (link != self->link_) return;
          if (ec) {
            self->log(LogLevel::warning, "cannot resolve ", self->cfg_.host, ": ", ec);
            return self->fail_attempt(link, Error::resolve_failed, false);
          }
          asio::async_connect(link->socket, results,
                              [self, link](error_code e, asio::ip::tcp::endpoint const&) {
                                if (link != self->link_) return;
                                if (e) return self->fail_attempt(link, e, false);
                                self->set_socket_options(link);
                                if (self->cfg_.tls.enabled) return self->start_tls(link);
                                self->start_handshake(link);
                              });
        });
  }

  // Bounds the connect and handshake of one attempt (and each handshake run while the server
  // loads its dataset).
  void arm_connect_timer(LinkPtr const& link) {
    connect_timer_.expires_after(cfg_.connect_timeout);
    connect_timer_.async_wait([self = shared_from_this(), link](error_code ec) {
      if (ec || link != self->link_) return;
      if (self->state_ == State::connecting || self->state_ == State::handshaking) {
        self->resolver_.cancel();
        // A plain Redis port reads a TLS ClientHello as the start of a command and waits for
        // the rest forever: on a connection that never worked, that is no transient failure.
        if (link->tls && !link->tls_established && !self->ever_connected_)
          return self->fail_attempt(link, Error::tls_handshake_timeout, true);
        self->fail_attempt(link, Error::connect_timeout, false);
      }
    });
  }

  // Asks cfg_.locate where to connect, then starts the attempt again towards it. The handler
  // holds the connection weakly: whoever answers (a Sentinel set shared by connections) is
  // owned by cfg_, so a strong reference here would be a cycle, leaked when the connection is
  // dropped, or its io_context destroyed, before the answer comes.
  void locate(LinkPtr const& link) {
    cfg_.locate([weak = weak_from_this(), link](error_code ec, std::string host,
                                                std::uint16_t port) {
      auto const self = weak.lock();
      if (!self || link != self->link_ || self->state_ != State::connecting) return;
      if (ec) {
        self->log(LogLevel::warning, "cannot locate the server: ", ec);
        return self->fail_attempt(link, ec, is_setup_error(ec));  // they end the cycle
      }
      self->cfg_.host = std::move(host);
      self->cfg_.port = port;
      self->located_ = true;
      self->start_attempt();
    });
  }

  // TCP is up: the TLS handshake, then the Redis one. Everything that fails here but a link
  // closing under the handshake would fail the same way again: not retried.
  void start_tls(LinkPtr const& link) {
    TlsSessionFactory const factory = tls_session_factory();  // not null: start_attempt
    error_code ec;
    std::string what;
    link->tls = factory(link->socket, cfg_.tls, cfg_.host, ec, what);
    if (!link->tls) {
      log(LogLevel::error, "TLS set-up for ", cfg_.host, ":", cfg_.port, " failed: ", what);
      return fail_attempt(link, ec ? ec : error_code(Error::tls_setup_failed), true);
    }
    link->tls->async_handshake(tls_done<&ConnectionImpl::on_tls_handshake>(link));
  }

  void on_tls_handshake(LinkPtr const& link, error_code ec, std::size_t) {
    if (link != link_) return;
    if (ec) {
      TlsFailure f = link->tls->handshake_failure(ec);
      log(LogLevel::error, "TLS handshake with ", cfg_.host, ":", cfg_.port, " failed: ",
          f.detail);
      return fail_attempt(link, f.code, f.fatal);
    }
    link->tls_established = true;
    start_handshake(link);
  }

  // Before TLS too: with Nagle, HELLO would wait for the ACK of the TLS handshake's last write.
  void set_socket_options(LinkPtr const& link) {
    error_code ignored;
    link->socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (cfg_.tcp_keepalive) link->socket.set_option(asio::socket_base::keep_alive(true), ignored);
  }

  // `again`: on a link whose read loop runs (see wait_for_load).
  void start_handshake(LinkPtr const& link, bool again = false) {
    state_ = State::handshaking;

    resp3::Request hs;
    if (!cfg_.password.empty()) {
      std::string_view const user =
          cfg_.username.empty() ? std::string_view("default") : std::string_view(cfg_.username);
      if (cfg_.client_name.empty())
        hs.push("HELLO", 3, "AUTH", user, cfg_.password);
      else
        hs.push("HELLO", 3, "AUTH", user, cfg_.password, "SETNAME", cfg_.client_name);
    } else if (!cfg_.client_name.empty()) {
      hs.push("HELLO", 3, "SETNAME", cfg_.client_name);
    } else {
      hs.push("HELLO", 3);
    }
    role_seen_ = false;
    if (cfg_.require_master) hs.push("ROLE");  // reply 1: see handshake_on_node
    if (cfg_.database != 0) hs.push("SELECT", cfg_.database);
    link->wbuf.assign(hs.payload());
    link->wbuf.append(cfg_.setup.payload());
    // PING is refused with LOADING while the server reads its dataset (HELLO, SELECT and ROLE
    // are not): the readiness check, ioredis's ready check without its INFO (which an ACL may
    // deny).
    ready_index_ = hs.expected_replies() + cfg_.setup.expected_replies();
    bool const check_ready = cfg_.max_loading_timeout.count() > 0;
    if (check_ready) link->wbuf.append(ping_op_.payload);
    server_loading_ = false;

    handshake_diag_.clear();
    handshake_op_.expected = ready_index_ + (check_ready ? 1 : 0);
    inflight_.clear();
    inflight_.push_back(Slot{&handshake_op_, handshake_op_.expected});
    start_write(link);
    if (!again) start_read(link);
  }

  void on_handshake_done(error_code ec) {
    LinkPtr const link = link_;
    if (!link || state_ != State::handshaking) return;
    if (server_loading_ && cfg_.max_loading_timeout.count() > 0) return wait_for_load(link);
    if (server_loading_) ec = Error::loading;  // no waiting: a transient failure, retried
    if (ec == Error::not_master || ec == Error::loading) {
      log(LogLevel::warning, cfg_.host, ":", cfg_.port,
          ec == Error::loading ? " is loading its dataset" : " is not a master (yet)");
      return fail_attempt(link, ec, false);
    }
    if (ec) {
      // The server's text says which step failed; it never holds the password.
      log(LogLevel::error, "handshake with ", cfg_.host, ":", cfg_.port,
          " rejected: ", handshake_diag_.server_message);
      bool const auth = ec == Error::auth_failed;
      return fail_attempt(link, auth ? Error::auth_failed : Error::handshake_failed, true);
    }
    connect_timer_.cancel();
    if (loading_since_) {
      auto const waited = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - *loading_since_);
      log(LogLevel::info, cfg_.host, ":", cfg_.port, " has loaded its dataset (waited ",
          waited.count(), " ms)");
      loading_since_.reset();
    }
    state_ = State::connected;
    relocating_ = false;
    ++metrics_.connections_created;
    if (ever_connected_) ++metrics_.reconnections;
    ever_connected_ = true;
    metrics_.last_connected_at = std::chrono::system_clock::now();
    log(LogLevel::info, "connected to ", cfg_.host, ":", cfg_.port);
    start_health_check(link);
    resubscribe();
    do_write();  // what waited for the link goes now
    auto waiters = std::exchange(connect_waiters_, {});
    for (auto* w : waiters) w->complete({});
  }

  // The server answered LOADING: it is reading its dataset (a restart, a replica's full sync).
  // The link stays and the handshake runs again every 100 ms, since a step refused with LOADING
  // did not run; meanwhile requests wait in the queue, as for a reconnection. After
  // max_loading_timeout they fail with Error::loading, and so do new ones until the server
  // is ready (or at once without the offline queue).
  void wait_for_load(LinkPtr const& link) {
    using Clock = std::chrono::steady_clock;
    connect_timer_.cancel();
    auto const now = Clock::now();
    if (!loading_since_) {
      loading_since_ = now;
      log(LogLevel::warning, cfg_.host, ":", cfg_.port, " is loading its dataset: requests wait",
          " up to ", cfg_.max_loading_timeout.count(), " ms (max_loading_timeout)");
    }
    auto const deadline = *loading_since_ + cfg_.max_loading_timeout;
    if (now >= deadline) fail_loading_waiters();
    state_ = State::waiting_retry;
    auto const next = now >= deadline ? now + std::chrono::milliseconds(100)
                                      : std::min(now + std::chrono::milliseconds(100), deadline);
    retry_timer_.expires_at(next);
    retry_timer_.async_wait([self = shared_from_this(), link](error_code e) {
      if (e || link != self->link_ || self->state_ != State::waiting_retry) return;
      self->arm_connect_timer(link);
      self->start_handshake(link, /*again=*/true);
    });
  }

  bool loading_expired() const {
    return loading_since_ &&
           std::chrono::steady_clock::now() >= *loading_since_ + cfg_.max_loading_timeout;
  }

  std::string loading_text() const {
    std::string s = "the server at " + cfg_.host + ":" + std::to_string(cfg_.port) +
                    " is loading its dataset";
    if (loading_expired())
      s += ", still after max_loading_timeout (" +
           std::to_string(cfg_.max_loading_timeout.count()) + " ms)";
    return s + "; the request did not run";
  }

  void fail_loading_waiters() {
    fail_waiters(Error::loading, loading_text(), Error::loading);
  }

  // Fails every request waiting to be written (with `for_requests`, `detail` in their
  // Diagnostics) and every async_connect (with `for_connect`). Both lists are taken first:
  // a completion may start new requests.
  void fail_waiters(error_code for_requests, std::string const& detail, error_code for_connect) {
    auto ops = std::exchange(waiting_, {});
    auto waiters = std::exchange(connect_waiters_, {});
    for (auto* op : ops) {
      if (op->internal) continue;
      if (op->diag) op->diag->detail = detail;
      op->complete(for_requests);
    }
    for (auto* w : waiters) w->complete(for_connect);
  }

  // A connection attempt failed: retry with backoff, or give up.
  void fail_attempt(LinkPtr const& link, error_code ec, bool fatal) {
    if (link != link_) return;
    error_code ignored;
    link->socket.close(ignored);
    link_.reset();
    connect_timer_.cancel();
    retry_timer_.cancel();
    loading_since_.reset();
    inflight_.clear();  // only the handshake can be there
    record_error(ec);
    log(LogLevel::warning, "connecting to ", cfg_.host, ":", cfg_.port, " failed: ", ec);
    if (fatal) return give_up(ec);
    retry_or_give_up(ec);
  }

  // The established link broke: fail what was written, keep what was not, reconnect.
  void on_link_error(LinkPtr const& link, error_code ec) {
    if (link != link_) return;
    if (state_ != State::connected) return fail_handshake(link, ec);
    error_code ignored;
    link->socket.close(ignored);
    link_.reset();
    health_timer_.cancel();
    ping_outstanding_ = false;
    record_error(ec);
    log(LogLevel::warning, "connection to ", cfg_.host, ":", cfg_.port, " lost: ", ec);

    std::vector<ExecOpBase*> failed;
    std::vector<ExecOpBase*> resend;
    // Without the offline queue nothing waits for the next link, not even a read to re-send;
    // a relocation (not_master: a planned move, nothing written awaits) fails nothing.
    bool const keep = cfg_.offline_queue || ec == Error::not_master;
    bool front = true;
    for (auto& s : inflight_) {
      bool const started = s.received > 0 || (front && link->in_reply && !link->in_push);
      front = false;
      if (!s.op || s.op->internal) continue;
      bool const again = s.op->cfg.idempotent && !started && keep;
      (again ? resend : failed).push_back(s.op);
    }
    inflight_.clear();
    for (auto* op : link->written_no_reply)
      (op->cfg.idempotent && keep ? resend : failed).push_back(op);
    link->written_no_reply.clear();
    std::erase_if(waiting_, [](ExecOpBase* op) { return op->internal; });
    waiting_.insert(waiting_.begin(), resend.begin(), resend.end());
    std::vector<ExecOpBase*> not_connected;
    std::erase_if(waiting_, [&](ExecOpBase* op) {
      if (!op->cfg.fail_if_not_connected && keep) return false;
      not_connected.push_back(op);
      return true;
    });

    retries_left_ = cfg_.reconnect.max_attempts;
    retry_number_ = 0;
    retry_or_give_up(ec);  // state changes before any caller runs

    for (auto* op : failed) op->complete(Error::connection_lost);
    for (auto* op : not_connected) op->complete(Error::not_connected);
  }

  // The link failed before the handshake's answer. A server that closes it there is said so
  // (a plain client on a TLS port sees exactly that; so does one behind a proxy with no server,
  // which is transient: retried). A TLS server refusing this client there (TLS 1.3 servers
  // check a client certificate after the client's side of the handshake is done) is not.
  void fail_handshake(LinkPtr const& link, error_code ec) {
    if (state_ == State::handshaking) {
      std::string detail;
      if (link->tls && link->tls->refused_client(ec, detail)) {
        log(LogLevel::error, "TLS link to ", cfg_.host, ":", cfg_.port,
            " refused by the server: ", detail);
        return fail_attempt(link, Error::tls_handshake_failed, true);
      }
      if (ec == asio::error::eof || ec == asio::error::connection_reset)
        ec = Error::closed_during_handshake;
    }
    fail_attempt(link, ec, false);
  }

  // Failures that the caller's own set-up causes: requests get them as they are, not
  // reconnect_gave_up.
  static bool is_setup_error(error_code const& ec) {
    if (ec.category() != error_category()) return false;
    switch (static_cast<Error>(ec.value())) {
      case Error::auth_failed:
      case Error::master_not_found:
      case Error::invalid_config:
      case Error::tls_host_name_mismatch:
      case Error::tls_certificate_untrusted:
      case Error::tls_handshake_failed:
      case Error::tls_handshake_timeout:
      case Error::tls_setup_failed:
      case Error::tls_unavailable: return true;
      default: return false;
    }
  }

  void give_up(error_code ec) {
    state_ = State::down;
    metrics_.last_failure = failure_text(ec);
    log(LogLevel::error, metrics_.last_failure);
    // A copy: a completion may reconnect, and a new failure rewrite last_failure.
    std::string const detail = metrics_.last_failure;
    fail_waiters(is_setup_error(ec) ? ec : error_code(Error::reconnect_gave_up), detail, ec);
  }

  // "cannot reach Redis at host:port: <cause> (N attempts in T s)": what a person can act on.
  // The cause comes from the error code, never from the server's text: no password in it.
  std::string failure_text(error_code const& ec) const {
    namespace ae = asio::error;
    std::string cause;
    if (ec == ae::connection_refused) {
      cause = "connection refused (nothing listens there: is redis-server running on that port?)";
    } else if (ec == Error::connect_timeout || ec == ae::timed_out) {
      cause = "no answer within connect_timeout (" + std::to_string(cfg_.connect_timeout.count()) +
              " ms): a wrong address, a firewall, or a stopped server";
    } else if (ec == Error::resolve_failed || ec == ae::host_not_found ||
               ec == ae::host_not_found_try_again) {
      cause = "the host name does not resolve (check REDIS_HOST / the URL)";
    } else if (ec == Error::auth_failed) {
      cause = "authentication failed: wrong password or user";
    } else {
      cause = ec.message();
    }
    unsigned const attempts = retry_number_ + 1;
    double const secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - cycle_start_).count();
    char took[32];
    std::snprintf(took, sizeof took, "%.1f", secs);
    return "cannot reach Redis at " + cfg_.host + ":" + std::to_string(cfg_.port) + ": " + cause +
           " (" + std::to_string(attempts) + (attempts == 1 ? " attempt" : " attempts") + " in " +
           took + " s)";
  }

  // ---- health check ------------------------------------------------------------------------

  void start_health_check(LinkPtr const& link) {
    if (cfg_.health_check_interval.count() <= 0) return;
    read_activity_ = false;
    ping_outstanding_ = false;
    arm_health_check(link);
  }

  void arm_health_check(LinkPtr const& link) {
    health_timer_.expires_after(cfg_.health_check_interval);
    health_timer_.async_wait([self = shared_from_this(), link](error_code ec) {
      if (ec || link != self->link_ || self->state_ != State::connected) return;
      self->on_health_tick(link);
    });
  }

  void on_health_tick(LinkPtr const& link) {
    bool const awaiting = !inflight_.empty() || link->writing;
    if (awaiting && !read_activity_) {
      log(LogLevel::warning, "no data from ", cfg_.host, ":", cfg_.port, " for ",
          cfg_.health_check_interval.count(), " ms while replies are due: link is dead");
      return on_link_error(link, Error::health_check_failed);
    }
    read_activity_ = false;
    if (!ping_outstanding_ && inflight_.empty() && waiting_.empty()) {
      ping_outstanding_ = true;
      waiting_.push_back(&ping_op_);
      do_write();
    }
    arm_health_check(link);
  }

  // ---- state -------------------------------------------------------------------------------

  asio::any_io_executor ex_;
  ConnectionConfig cfg_;
  asio::ip::tcp::resolver resolver_;
  asio::steady_timer retry_timer_;
  asio::steady_timer connect_timer_;
  asio::steady_timer health_timer_;
  asio::steady_timer deadline_timer_;  // the earliest command_timeout deadline
  std::chrono::steady_clock::time_point deadline_at_ = std::chrono::steady_clock::time_point::max();
  std::mt19937_64 rng_;

  State state_ = State::idle;
  LinkPtr link_;
  bool ever_connected_ = false;
  unsigned retries_left_ = 0;
  unsigned retry_number_ = 0;
  std::chrono::steady_clock::time_point cycle_start_{};  // the first attempt of this cycle

  std::deque<ExecOpBase*> waiting_;  // not written yet
  std::deque<Slot> inflight_;        // written, replies awaited, in order
  bool flush_scheduled_ = false;

  std::deque<resp3::Tree> pushes_;
  bool pushes_were_dropped_ = false;
  bool resubscribed_unreported_ = false;  // see report_resubscribed
  std::uint64_t resubscribe_round_ = 0;   // resubscribe()'s calls
  std::size_t resubscribe_left_ = 0;      // of that round's subscriptions, still unanswered
  ReceiveOpBase* receiver_ = nullptr;
  std::vector<WaitOpBase*> connect_waiters_;

  InternalOp handshake_op_;
  InternalOp ping_op_;
  Diagnostics handshake_diag_;
  bool ping_outstanding_ = false;
  bool read_activity_ = false;
  bool located_ = false;     // cfg_.locate named the target of the attempt being started
  bool role_seen_ = false;   // the handshake's ROLE reply named its role
  bool server_loading_ = false;  // a step of this handshake was refused with LOADING
  std::size_t ready_index_ = 0;  // the handshake's readiness PING reply (see start_handshake)
  std::optional<std::chrono::steady_clock::time_point> loading_since_;  // see wait_for_load
  bool relocating_ = false;  // see relocate(): no more writes on this link

  std::set<std::string, std::less<>> channels_;
  std::set<std::string, std::less<>> patterns_;
  std::set<std::string, std::less<>> shard_channels_;

  ConnectionMetrics metrics_;
};

}  // namespace detail

// ------------------------------------------------------------------------------------------
// Connection

inline Connection::Connection(executor_type ex, ConnectionConfig cfg)
    : impl_(std::make_shared<detail::ConnectionImpl>(std::move(ex), std::move(cfg))) {}

inline Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    if (impl_) impl_->close();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

inline Connection::~Connection() {
  if (impl_) impl_->close();
}

inline Connection::executor_type Connection::get_executor() const noexcept {
  return impl_->executor();
}

inline HealthStatus Connection::health() const noexcept { return impl_->health(); }
inline ConnectionMetrics const& Connection::metrics() const noexcept { return impl_->metrics(); }
inline ConnectionConfig const& Connection::config() const noexcept { return impl_->config(); }
inline void Connection::cancel() { impl_->cancel(); }
inline void Connection::relocate() { impl_->relocate(); }
inline void Connection::close() { impl_->close(); }

template <class Token>
auto Connection::async_connect(Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
      [](auto handler, std::shared_ptr<detail::ConnectionImpl> impl) {
        impl->start_connect(std::move(handler));
      },
      token, impl_);
}

namespace detail {
struct InitiateExec {
  template <class Handler, class Response>
  void operator()(Handler&& handler, ConnectionImpl* impl, resp3::Request const* req,
                  Response* resp, Diagnostics* diag) const {
    // A raw pointer, unlike the other initiations: no reference count touched per request.
    // So a deferred async_exec must be launched while its Connection is alive.
    impl->start_exec(std::forward<Handler>(handler), *req, *resp, diag);
  }
};
}  // namespace detail

template <class Response, class Token>
auto Connection::async_exec(resp3::Request const& req, Response& resp, Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
      detail::InitiateExec{}, token, impl_.get(), &req, &resp,
      static_cast<Diagnostics*>(nullptr));
}

template <class Response, class Token>
auto Connection::async_exec(resp3::Request const& req, Response& resp, Diagnostics& diag,
                            Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
      detail::InitiateExec{}, token, impl_.get(), &req, &resp, &diag);
}

template <class Token>
auto Connection::async_receive(Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code, resp3::Tree)>(
      [](auto handler, std::shared_ptr<detail::ConnectionImpl> impl) {
        impl->start_receive(std::move(handler));
      },
      token, impl_);
}

template <class Channels, class Token>
auto Connection::async_subscription(detail::SubscriptionKind kind, bool subscribe,
                                    Channels const& channels, Diagnostics* diag, Token&& token) {
  std::vector<std::string> names;
  if constexpr (std::is_convertible_v<Channels const&, std::string_view>) {
    names.emplace_back(std::string_view(channels));
  } else {
    for (auto const& c : channels) names.emplace_back(std::string_view(c));
  }
  resp3::Request req;
  req.push_range(detail::Subscription::verb(kind, subscribe), names);
  req.push("HELLO");  // the fence: see detail::SubscriptionOp
  detail::Subscription change{.kind = kind, .subscribe = subscribe, .names = std::move(names)};
  return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
      [](auto handler, std::shared_ptr<detail::ConnectionImpl> impl, resp3::Request r,
         detail::Subscription c, Diagnostics* d) {
        impl->start_subscription(std::move(handler), std::move(r), std::move(c), d);
      },
      token, impl_, std::move(req), std::move(change), diag);
}

template <class Channels, class Token>
auto Connection::async_subscribe(Channels const& channels, Token&& token) {
  return async_subscription(detail::Subscription::Kind::channel, true, channels, nullptr,
                            std::forward<Token>(token));
}
template <class Channels, class Token>
auto Connection::async_psubscribe(Channels const& patterns, Token&& token) {
  return async_subscription(detail::Subscription::Kind::pattern, true, patterns, nullptr,
                            std::forward<Token>(token));
}
template <class Channels, class Token>
auto Connection::async_unsubscribe(Channels const& channels, Token&& token) {
  return async_subscription(detail::Subscription::Kind::channel, false, channels, nullptr,
                            std::forward<Token>(token));
}
template <class Channels, class Token>
auto Connection::async_punsubscribe(Channels const& patterns, Token&& token) {
  return async_subscription(detail::Subscription::Kind::pattern, false, patterns, nullptr,
                            std::forward<Token>(token));
}
template <class Channels, class Token>
auto Connection::async_ssubscribe(Channels const& channels, Token&& token) {
  return async_subscription(detail::Subscription::Kind::shard, true, channels, nullptr,
                            std::forward<Token>(token));
}
template <class Channels, class Token>
auto Connection::async_ssubscribe(Channels const& channels, Diagnostics& diag, Token&& token) {
  return async_subscription(detail::Subscription::Kind::shard, true, channels, &diag,
                            std::forward<Token>(token));
}
template <class Channels, class Token>
auto Connection::async_sunsubscribe(Channels const& channels, Token&& token) {
  return async_subscription(detail::Subscription::Kind::shard, false, channels, nullptr,
                            std::forward<Token>(token));
}

template <class Token>
auto Connection::async_close(Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
      [](auto handler, std::shared_ptr<detail::ConnectionImpl> impl) {
        impl->start_close(std::move(handler));
      },
      token, impl_);
}

}  // namespace rediskit
