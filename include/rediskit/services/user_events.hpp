// rediskit::UserEventPublisher<Backend> and rediskit::UserStreamConsumer<Backend>: seed 001's
// `events:users` stream. The auth service publishes profile events; every other service
// consumes them in a consumer group and keeps its UserCache in step.
//
//   rediskit::UserEventPublisher<rediskit::RedisBackend> pub(redis, {.max_len = 100000});
//   co_await pub.async_publish(rediskit::UserEvent::updated(profile));   // XADD ... payload <json>
//
//   rediskit::UserStreamConsumer<rediskit::RedisBackend> consumer(
//       redis, cache, {.consumer_group = "chat-file-service-group"});    // applies to the cache
//   asio::co_spawn(ex, consumer.async_run(asio::use_awaitable), asio::detached);
//   ...
//   consumer.stop();                     // finishes the batch in hand, acks it, then returns
//
// Wire format (seed 001, shared with the Node services): one field `payload` holding
//   {"event":"user.profile.updated","userId":"42","fullName":"Jean Dupont","avatar":"...",
//    "matricule":"MAT001","timestamp":1736862000000}
// event: user.profile.created / updated / deleted; timestamp: epoch ms. Keys:
//
//   key                        type    what
//   <stream_name>              stream  the events (seed 001: events:users); optional MAXLEN ~
//   <dead_letter_stream>       stream  entries given up on: fields id (the original entry id),
//                                      payload, reason, deliveries, consumer
//
// Consumer semantics (at least once):
// - async_run creates the group (XGROUP CREATE ... MKSTREAM; BUSYGROUP is fine), first re-reads
//   this consumer's own pending entries (a restarted process with the same consumer_name), then
//   loops on XREADGROUP GROUP g c COUNT batch_size BLOCK block STREAMS key >. The blocking read
//   runs on a connection of its own (RedisBackend and ClusterBackend put every blocking command
//   on a dedicated connection; MemoryBackend/FakeBackend wait in the engine without holding
//   anything up), so the backend's main pipeline never stalls behind it.
// - Each entry is parsed and handed to the handler (or applied to the UserCache: created and
//   updated merge fullName/avatar/matricule with updatedAt = timestamp, versioned, so a late
//   event never overwrites a newer profile; deleted is a versioned delete). It is acknowledged
//   (one XACK per batch) only after the handler succeeded. Applied to a UserCache, the batch's
//   updates go in one round trip (in order), then the XACK in a second. While a batch is
//   applied, the next XREADGROUP is already waiting on the read connection (a read ahead, sent
//   only after a read that returned entries), so reading and applying overlap.
// - On start and every claim_interval, XAUTOCLAIM takes the group's entries idle for longer
//   than claim_idle (a crashed consumer's, and this consumer's own failed ones) and processes
//   them. Pending ids whose entries were deleted from the stream (the third element of Redis
//   7's reply) are counted in stats().deleted_pending (Redis already dropped them).
// - Deliveries are counted by Redis (XPENDING's delivery count). An entry whose handler failed
//   on its max_deliveries-th delivery, or that is claimed after more than max_deliveries
//   deliveries (it crashed its consumers), is written to the dead-letter stream with the
//   reason and acknowledged. An entry that cannot be parsed (no payload, bad JSON, unknown
//   event, no userId) is dead-lettered at once: retrying cannot fix it. The XADD to the
//   dead-letter stream and the XACK are two commands of one round trip (the streams may be on
//   different masters): a crash between them can dead-letter an entry twice, never lose it.
// - Redis errors (a restart, a failover) do not end the loop: they are counted
//   (stats().errors), logged, and the loop retries after retry_delay. A group that vanished
//   (NOGROUP: a restarted server without persistence) is created again from "0", so events
//   published after the restart are not skipped.
// - stop(): the read in flight (or the read ahead) is cancelled, the batch in hand is finished
//   and acknowledged, entries that reached this consumer meanwhile (its pending list) are
//   processed and acknowledged, then async_run completes with no error. Entries whose handler
//   fails stay pending for another consumer's XAUTOCLAIM.
// - stats(): processed, failed, dead_lettered, reclaimed, deleted_pending, errors; async_stats()
//   adds the group's pending count (XPENDING) and the lag: entries after the newest one this
//   consumer has seen (XRANGE, capped at lag_cap).
//
// Lifetime and threads: the consumer (and its backend, and the cache) must outlive async_run;
// start it and call stop() from the backend's executor's thread (stop() posts itself there).
// Errors: async_run completes with Error::invalid_argument for empty names or batch_size < 1.
#pragma once

#include <rediskit/cmd/streams.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/detail/to_int.hpp>
#include <rediskit/services/user_cache.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rediskit {

/// One seed 001 event (the JSON of the `payload` field).
struct UserEvent {
  static constexpr std::string_view created_type = "user.profile.created";
  static constexpr std::string_view updated_type = "user.profile.updated";
  static constexpr std::string_view deleted_type = "user.profile.deleted";

  std::string event;  ///< one of the three types above
  std::string userId;
  std::string fullName;
  std::string avatar;
  std::string matricule;
  std::int64_t timestamp = 0;  ///< epoch ms
  std::string stream_id;       ///< the entry's id (set by the consumer; not in the JSON)

  UserEvent() = default;
  UserEvent(std::string type, std::string user_id, std::string full_name, std::string avatar_,
            std::string matricule_, std::int64_t ts)
      : event(std::move(type)),
        userId(std::move(user_id)),
        fullName(std::move(full_name)),
        avatar(std::move(avatar_)),
        matricule(std::move(matricule_)),
        timestamp(ts) {}

  static UserEvent of(std::string_view type, UserProfile const& p, std::int64_t ts = 0) {
    return UserEvent(std::string(type), p.id, p.fullName, p.avatar, p.matricule,
                     ts ? ts : (p.updatedAt ? p.updatedAt : now_ms()));
  }
  static UserEvent created(UserProfile const& p, std::int64_t ts = 0) { return of(created_type, p, ts); }
  static UserEvent updated(UserProfile const& p, std::int64_t ts = 0) { return of(updated_type, p, ts); }
  static UserEvent deleted(std::string user_id, std::int64_t ts = 0) {
    return UserEvent(std::string(deleted_type), std::move(user_id), {}, {}, {}, ts ? ts : now_ms());
  }

  static std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  /// Seed 001's JSON, in its key order.
  std::string to_json() const {
    boost::json::object o;
    o["event"] = event;
    o["userId"] = userId;
    o["fullName"] = fullName;
    o["avatar"] = avatar;
    o["matricule"] = matricule;
    o["timestamp"] = timestamp;
    return boost::json::serialize(o);
  }

  /// Parses seed 001's JSON; empty when it is an event, else why not. userId may be a JSON
  /// number (a numeric id); missing text fields stay empty; timestamp may be a number or text.
  std::string parse(std::string_view json) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(json, ec);
    if (ec) return "payload is not JSON: " + ec.message();
    auto const* o = v.if_object();
    if (!o) return "payload is not a JSON object";
    auto text = [&](char const* name, std::string& out) {
      auto const* f = o->if_contains(name);
      if (!f || f->is_null()) return;
      if (auto const* s = f->if_string())
        out.assign(s->data(), s->size());
      else if (f->is_number())
        out = boost::json::serialize(*f);
    };
    text("event", event);
    text("userId", userId);
    text("fullName", fullName);
    text("avatar", avatar);
    text("matricule", matricule);
    if (auto const* t = o->if_contains("timestamp")) {
      if (t->is_int64())
        timestamp = t->as_int64();
      else if (t->is_uint64())
        timestamp = static_cast<std::int64_t>(t->as_uint64());
      else if (t->is_double())
        timestamp = static_cast<std::int64_t>(t->as_double());
      else if (auto const* s = t->if_string())
        timestamp = detail::to_int(std::string_view(s->data(), s->size()));
    }
    if (event != created_type && event != updated_type && event != deleted_type)
      return "unknown event '" + event.substr(0, 64) + "'";
    if (userId.empty()) return "event without userId";
    return {};
  }
};

/// UserEventPublisher's options.
struct UserPublisherOptions {
  std::string stream_name = "events:users";
  std::optional<std::int64_t> max_len{};  ///< MAXLEN ~ n on each XADD (nullopt: no trim)
  bool approximate = true;                ///< "~" (cheap) or exact trimming
};

/// XADD <stream> * payload <json> (see the top of this file).
template <Backend B>
class UserEventPublisher {
  using error_code = boost::system::error_code;

 public:
  explicit UserEventPublisher(B& backend, UserPublisherOptions options = {})
      : backend_(&backend), options_(std::move(options)) {}

  UserPublisherOptions const& options() const noexcept { return options_; }

  /// Publishes `e`; the new entry's id. Handler: void(error_code, std::string).
  /// Error::invalid_argument for an event without userId or of an unknown type.
  template <class Token = boost::asio::deferred_t>
  auto async_publish(UserEvent const& e, Token&& token = {}) {
    UserEvent check = e;
    bool const bad = !check.parse(e.to_json()).empty();
    return detail::user::spawn<std::string>(
        backend_->get_executor(), std::forward<Token>(token),
        [this, payload = e.to_json(), bad]() mutable { return publish(std::move(payload), bad); });
  }

 private:
  boost::asio::awaitable<std::string> publish(std::string payload, bool bad) {
    if (bad) detail::user::fail(Error::invalid_argument, "event without userId or of unknown type");
    std::optional<StreamTrim> trim;
    if (options_.max_len) trim = StreamTrim::max_len(*options_.max_len, options_.approximate);
    FieldValue const fv{"payload", payload};
    auto id = co_await backend_->async_exec(
        cmd::xadd{.key = options_.stream_name, .fields = fv, .trim = trim},
        boost::asio::use_awaitable);
    co_return id.value_or(std::string());
  }

  B* backend_;
  UserPublisherOptions options_;
};

/// UserStreamConsumer's options: seed 001's streamName, consumerGroup, consumerName,
/// batchSize, and a block timeout in place of its pollInterval.
struct UserStreamOptions {
  std::string stream_name = "events:users";
  std::string consumer_group = "chat-service-group";
  std::string consumer_name{};  ///< empty: "consumer-<pid>"
  std::int64_t batch_size = 10;
  std::chrono::milliseconds block = std::chrono::seconds(1);
  std::string start_id = "$";  ///< where a new group starts ("0": the whole stream)
  std::chrono::milliseconds claim_idle = std::chrono::seconds(30);
  std::chrono::milliseconds claim_interval = std::chrono::seconds(5);
  std::int64_t max_deliveries = 5;  ///< K: dead-lettered when the K-th delivery fails
  std::string dead_letter_stream{};  ///< empty: "<stream_name>:dead-letter"
  std::chrono::milliseconds retry_delay = std::chrono::milliseconds(200);
  bool create_missing = false;  ///< updated events create profiles not cached (created always do)
  std::int64_t lag_cap = 10000;
  LogSink log{};
};

struct UserStreamStats {
  std::uint64_t processed = 0;        ///< entries handled and acknowledged
  std::uint64_t failed = 0;           ///< handler failures (each delivery)
  std::uint64_t dead_lettered = 0;
  std::uint64_t reclaimed = 0;        ///< entries taken over by XAUTOCLAIM
  std::uint64_t deleted_pending = 0;  ///< pending ids whose entries were deleted (XAUTOCLAIM)
  std::uint64_t errors = 0;           ///< backend errors the loop retried after
  std::int64_t pending = 0;           ///< the group's pending entries (async_stats)
  std::int64_t lag = 0;               ///< entries after the newest seen here (async_stats)
};
BOOST_DESCRIBE_STRUCT(UserStreamStats, (),
                      (processed, failed, dead_lettered, reclaimed, deleted_pending, errors,
                       pending, lag))

namespace detail::user {

using EventHandler = std::function<boost::asio::awaitable<void>(UserEvent const&)>;

template <class F>
boost::asio::awaitable<void> call_plain(std::shared_ptr<F> f, UserEvent const& e) {
  (*f)(e);
  co_return;
}
template <class F>
boost::asio::awaitable<void> call_ec(std::shared_ptr<F> f, UserEvent const& e) {
  boost::system::error_code ec;
  (*f)(e, ec);
  if (ec) throw boost::system::system_error(ec);
  co_return;
}
template <class F>
boost::asio::awaitable<void> call_awaitable(std::shared_ptr<F> f, UserEvent const& e) {
  co_await (*f)(e);
}

/// The user's handler in one of its three forms, erased.
template <class F>
EventHandler erase_handler(F f) {
  auto p = std::make_shared<F>(std::move(f));
  if constexpr (std::is_invocable_v<F&, UserEvent const&, boost::system::error_code&>) {
    return [p](UserEvent const& e) { return call_ec(p, e); };
  } else {
    static_assert(std::is_invocable_v<F&, UserEvent const&>,
                  "a UserStreamConsumer handler is callable as h(UserEvent const&), "
                  "h(UserEvent const&, error_code&), or returns an awaitable<void>");
    if constexpr (awaited<std::invoke_result_t<F&, UserEvent const&>>::is_awaitable)
      return [p](UserEvent const& e) { return call_awaitable(p, e); };
    else
      return [p](UserEvent const& e) { return call_plain(p, e); };
  }
}

/// A seed 001 event as a versioned cache update (see the top of this file).
inline ProfileUpdate to_update(UserEvent const& e, bool create_missing) {
  ProfileUpdate u;
  u.id = e.userId;
  u.updated_at = e.timestamp;
  if (e.event == UserEvent::deleted_type) {
    u.remove = true;
  } else {
    u.create_missing = create_missing || e.event == UserEvent::created_type;
    u.fields = {{"fullName", e.fullName}, {"avatar", e.avatar}, {"matricule", e.matricule}};
  }
  return u;
}

using BatchApply = std::function<boost::asio::awaitable<std::vector<SetOutcome>>(std::vector<ProfileUpdate>)>;

template <class Cache>
boost::asio::awaitable<void> apply_to_cache(Cache* cache, bool create_missing, UserEvent const& e) {
  (void)co_await cache->async_apply(to_update(e, create_missing), boost::asio::use_awaitable);
}

template <class Cache>
boost::asio::awaitable<std::vector<SetOutcome>> apply_many(Cache* cache,
                                                          std::vector<ProfileUpdate> updates) {
  co_return co_await cache->async_apply_many(std::move(updates), boost::asio::use_awaitable);
}

}  // namespace detail::user

/// See the top of this file.
template <Backend B>
class UserStreamConsumer {
  using error_code = boost::system::error_code;
  template <class X>
  using awaitable = boost::asio::awaitable<X>;

 public:
  /// Hands each event to `handler`: h(UserEvent const&) (throws on failure),
  /// h(UserEvent const&, error_code&), or h(UserEvent const&) -> awaitable<void>.
  template <class Handler>
  UserStreamConsumer(B& backend, UserStreamOptions options, Handler handler)
      : backend_(&backend),
        options_(normalize(std::move(options))),
        handler_(detail::user::erase_handler(std::move(handler))),
        state_(std::make_shared<State>()) {}

  /// Applies each event to `cache` (see the top of this file).
  template <class C, class P>
  UserStreamConsumer(B& backend, UserCache<B, C, P>& cache, UserStreamOptions options = {})
      : backend_(&backend),
        options_(normalize(std::move(options))),
        handler_([c = &cache, create = options_.create_missing](UserEvent const& e) {
          return detail::user::apply_to_cache(c, create, e);
        }),
        batch_apply_([c = &cache](std::vector<ProfileUpdate> u) {
          return detail::user::apply_many(c, std::move(u));
        }),
        create_missing_(options_.create_missing),
        state_(std::make_shared<State>()) {}

  UserStreamConsumer(UserStreamConsumer const&) = delete;
  UserStreamConsumer& operator=(UserStreamConsumer const&) = delete;

  UserStreamOptions const& options() const noexcept { return options_; }

  /// Runs until stop() (see the top of this file). Handler: void(error_code).
  template <class Token = boost::asio::deferred_t>
  auto async_run(Token&& token = {}) {
    return detail::user::spawn<void>(backend_->get_executor(), std::forward<Token>(token),
                                     [this] { return run(); });
  }

  /// Asks async_run to finish the batch in hand, acknowledge it and complete. Safe from any
  /// thread (posted to the backend's executor).
  void stop() {
    boost::asio::post(backend_->get_executor(), [st = state_] {
      st->stopping = true;
      st->cancel_read.emit(boost::asio::cancellation_type::terminal);
      if (st->pause) st->pause->cancel();
    });
  }

  bool running() const noexcept { return state_->running; }

  /// This process's counters (pending and lag: see async_stats).
  UserStreamStats stats() const noexcept { return state_->stats; }

  /// stats() with the group's pending count and the lag, in one round trip each. Handler:
  /// void(error_code, UserStreamStats).
  template <class Token = boost::asio::deferred_t>
  auto async_stats(Token&& token = {}) {
    return detail::user::spawn<UserStreamStats>(backend_->get_executor(),
                                                std::forward<Token>(token),
                                                [this] { return full_stats(); });
  }

 private:
  struct State {
    bool running = false;
    bool stopping = false;
    boost::asio::cancellation_signal cancel_read;
    boost::asio::steady_timer* pause = nullptr;
    UserStreamStats stats;
    std::string last_seen;  // the newest entry id seen (for the lag)
  };

  static UserStreamOptions normalize(UserStreamOptions o) {
    if (o.consumer_name.empty()) o.consumer_name = "consumer-" + std::to_string(::getpid());
    if (o.dead_letter_stream.empty()) o.dead_letter_stream = o.stream_name + ":dead-letter";
    return o;
  }

  void log(LogLevel level, std::string const& line) const {
    if (options_.log) options_.log(level, line);
  }

  static bool is(error_code ec, Error e) { return ec == make_error_code(e); }

  awaitable<void> ensure_group(std::string_view from) {
    auto [ec, ok] = co_await backend_->async_exec(
        cmd::xgroup_create{.key = options_.stream_name,
                           .group = options_.consumer_group,
                           .id = from,
                           .mkstream = true},
        detail::user::tuple_awaitable);
    (void)ok;
    if (ec && !is(ec, Error::busy_group)) throw boost::system::system_error(ec);
  }

  // Waits `d`, unless stop() comes first.
  awaitable<void> pause(std::chrono::milliseconds d) {
    boost::asio::steady_timer t(backend_->get_executor(), d);
    state_->pause = &t;
    if (!state_->stopping) (void)co_await t.async_wait(detail::user::tuple_awaitable);
    state_->pause = nullptr;
  }

  awaitable<void> run() {
    auto const& o = options_;
    if (o.stream_name.empty() || o.consumer_group.empty() || o.batch_size < 1 ||
        o.max_deliveries < 1)
      detail::user::fail(Error::invalid_argument,
                         "stream_name, consumer_group must not be empty; batch_size and "
                         "max_deliveries at least 1");
    state_->running = true;
    // A stop() that came before the run began still counts; the next run starts afresh.
    struct Running {
      State* s;
      ~Running() {
        s->running = false;
        s->stopping = false;
      }
    } const guard{state_.get()};
    // The group, retried while the backend is unreachable.
    while (!state_->stopping) {
      try {
        co_await ensure_group(o.start_id);
        break;
      } catch (boost::system::system_error const& x) {
        state_->stats.errors++;
        log(LogLevel::warning, "UserStreamConsumer: creating the group failed: " + x.code().message());
      }
      co_await pause(o.retry_delay);
    }
    std::string history = "0";  // this consumer's own pending entries, first
    auto next_claim = std::chrono::steady_clock::now();
    // The next `>` read, sent while the batch in hand is applied and acknowledged (the read
    // waits on its own connection), so the server's and this process's work overlap. Taken
    // before anything else reads.
    std::shared_ptr<Ahead> ahead;
    while (!state_->stopping) {
      error_code ec;
      try {
        if (ahead) {
          auto entries = co_await take(std::exchange(ahead, nullptr), ec);
          if (!ec) {
            if (!entries.empty() && !state_->stopping &&
                std::chrono::steady_clock::now() < next_claim)
              ahead = read_ahead(o.block);
            co_await process(std::move(entries), false);
            continue;
          }
        } else if (std::chrono::steady_clock::now() >= next_claim) {
          co_await claim_round();
          next_claim = std::chrono::steady_clock::now() + o.claim_interval;
          continue;
        }
        if (!history.empty()) {
          auto entries = co_await read(history, std::nullopt, ec);
          if (!ec) {
            if (entries.empty()) {
              history.clear();
            } else {
              history = entries.back().id;
              co_await process(std::move(entries), true);
            }
            continue;
          }
        } else {
          auto const until_claim = std::chrono::duration_cast<std::chrono::milliseconds>(
              next_claim - std::chrono::steady_clock::now());
          auto const block =
              std::max(std::chrono::milliseconds(1), std::min(o.block, until_claim));
          auto entries = co_await read(">", block, ec);
          if (!ec) {
            if (!entries.empty() && !state_->stopping) ahead = read_ahead(block);
            co_await process(std::move(entries), false);
            continue;
          }
        }
      } catch (boost::system::system_error const& x) {
        ec = x.code();
      }
      if (state_->stopping) break;
      if (is(ec, Error::no_group)) {
        log(LogLevel::warning, "UserStreamConsumer: the group is gone (server restarted?): "
                               "creating it again from 0");
        try {
          co_await ensure_group("0");
          continue;
        } catch (boost::system::system_error const& x) {
          ec = x.code();
        }
      }
      state_->stats.errors++;
      log(LogLevel::warning, "UserStreamConsumer: " + ec.message() + "; retrying");
      co_await pause(o.retry_delay);
    }
    // Graceful stop: whatever reached this consumer meanwhile (a read cancelled after the
    // server delivered, the read ahead), processed and acknowledged.
    if (ahead) {
      error_code ignored;  // its entries, if any, are in this consumer's pending list
      (void)co_await take(std::move(ahead), ignored);
    }
    try {
      std::string from = "0";
      for (int round = 0; round < 1000; ++round) {
        error_code ec;
        auto entries = co_await read(from, std::nullopt, ec);
        if (ec || entries.empty()) break;
        from = entries.back().id;
        co_await process(std::move(entries), true);
      }
    } catch (boost::system::system_error const& x) {
      log(LogLevel::warning, "UserStreamConsumer: final drain failed: " + x.code().message());
    }
  }

  // XREADGROUP from `id` (">" new entries; else this consumer's history after it).
  awaitable<std::vector<StreamEntry>> read(std::string_view id,
                                           std::optional<std::chrono::milliseconds> block,
                                           error_code& ec) {
    cmd::xreadgroup const x = read_command(id, block);
    std::vector<StreamEntry> out;
    auto [e, r] = co_await backend_->async_exec(
        x, boost::asio::bind_cancellation_slot(state_->cancel_read.slot(),
                                               detail::user::tuple_awaitable));
    ec = e;
    if (!ec) take_entries(r, out);
    co_return out;
  }

  // The XREADGROUP of read() and read_ahead(); `id` must outlive the command.
  cmd::xreadgroup read_command(std::string_view id,
                               std::optional<std::chrono::milliseconds> block) const {
    return {.group = options_.consumer_group,
            .consumer = options_.consumer_name,
            .keys = options_.stream_name,
            .ids = id,
            .count = options_.batch_size,
            .block = block};
  }
  // XREADGROUP's reply (nullopt: nothing came) appended to `out`, the streams' entries in order.
  static void take_entries(cmd::xreadgroup::reply_type& reply, std::vector<StreamEntry>& out) {
    if (reply)
      for (auto& [key, entries] : *reply)
        for (auto& entry : entries) out.push_back(std::move(entry));
  }

  // A `>` read started now and taken later (run()'s read ahead). stop() cancels it as it
  // cancels read().
  struct Ahead {
    cmd::xreadgroup x;
    boost::asio::steady_timer wake;
    bool done = false;
    error_code ec{};
    std::vector<StreamEntry> entries{};
  };
  std::shared_ptr<Ahead> read_ahead(std::chrono::milliseconds block) {
    auto a = std::make_shared<Ahead>(
        Ahead{.x = read_command(">", block),
              .wake = boost::asio::steady_timer(backend_->get_executor(),
                                                boost::asio::steady_timer::time_point::max())});
    backend_->async_exec(
        a->x, boost::asio::bind_cancellation_slot(
                  state_->cancel_read.slot(), [a](error_code ec, auto reply) {
                    a->ec = ec;
                    if (!ec) take_entries(reply, a->entries);
                    a->done = true;
                    a->wake.cancel();
                  }));
    return a;
  }
  awaitable<std::vector<StreamEntry>> take(std::shared_ptr<Ahead> a, error_code& ec) {
    while (!a->done) (void)co_await a->wake.async_wait(detail::user::tuple_awaitable);
    ec = a->ec;
    co_return std::move(a->entries);
  }

  // The delivery counts of `entries` (this consumer's pending ones): one XPENDING.
  awaitable<std::unordered_map<std::string, std::int64_t>> deliveries(
      std::vector<StreamEntry> const& entries) {
    std::unordered_map<std::string, std::int64_t> out;
    if (entries.empty()) co_return out;
    std::string const& first = entries.front().id;
    std::string const& last = entries.back().id;
    auto pending = co_await backend_->async_exec(
        cmd::xpending_range{.key = options_.stream_name,
                            .group = options_.consumer_group,
                            .start = first,
                            .end = last,
                            .count = static_cast<std::int64_t>(entries.size()) + 64,
                            .consumer = std::string_view(options_.consumer_name)},
        boost::asio::use_awaitable);
    for (auto& p : pending) out.emplace(std::move(p.id), p.deliveries);
    co_return out;
  }

  awaitable<void> claim_round() {
    std::string start = "0-0";
    for (int page = 0; page < 100 && !state_->stopping; ++page) {
      auto r = co_await backend_->async_exec(
          cmd::xautoclaim{.key = options_.stream_name,
                          .group = options_.consumer_group,
                          .consumer = options_.consumer_name,
                          .min_idle = options_.claim_idle,
                          .start = start,
                          .count = options_.batch_size},
          boost::asio::use_awaitable);
      state_->stats.deleted_pending += r.deleted.size();
      std::erase_if(r.entries, [](StreamEntry const& e) { return e.deleted; });
      state_->stats.reclaimed += r.entries.size();
      if (!r.entries.empty()) co_await process(std::move(r.entries), true);
      start = r.next;
      if (start == "0-0" || start == "0") break;
    }
  }

  struct Dead {
    std::string id, payload, reason, deliveries;
  };
  struct Ready {
    std::string id, payload;
    std::int64_t deliveries = 1;
    UserEvent event;
  };

  // Handles `entries`, then one round trip: dead letters (XADD each) and one XACK of every
  // entry done with. `redelivered`: read from the pending list (delivery counts asked).
  awaitable<void> process(std::vector<StreamEntry> entries, bool redelivered) {
    if (entries.empty()) co_return;
    std::unordered_map<std::string, std::int64_t> counts;
    if (redelivered) counts = co_await deliveries(entries);
    std::vector<std::string> acks;
    std::vector<Dead> dead;
    std::vector<Ready> ready;
    std::uint64_t done = 0;
    for (auto& e : entries) {
      if (e.deleted) {  // a pending id whose entry is gone: nothing to apply
        acks.push_back(e.id);
        state_->stats.deleted_pending++;
        continue;
      }
      if (state_->last_seen.empty() || *StreamId::parse(e.id) > *StreamId::parse(state_->last_seen))
        state_->last_seen = e.id;
      std::int64_t n = 1;
      if (auto it = counts.find(e.id); it != counts.end()) n = it->second;
      std::string const* payload = e.find("payload");
      UserEvent ev;
      std::string why = payload ? ev.parse(*payload) : std::string("entry without a payload field");
      if (!why.empty()) {
        dead.push_back({e.id, payload ? *payload : std::string(), std::move(why), std::to_string(n)});
        continue;
      }
      if (n > options_.max_deliveries) {  // it kept crashing its consumers
        dead.push_back({e.id, *payload,
                        "delivered " + std::to_string(n) + " times without an acknowledgement",
                        std::to_string(n)});
        continue;
      }
      ev.stream_id = e.id;
      ready.push_back({e.id, *payload, n, std::move(ev)});
    }
    // Apply: the cache's updates in one round trip, or the handler once per event.
    std::vector<std::exception_ptr> failures(ready.size());
    if (batch_apply_) {
      std::vector<ProfileUpdate> updates;
      updates.reserve(ready.size());
      for (auto const& r : ready) updates.push_back(detail::user::to_update(r.event, create_missing_));
      try {
        if (!updates.empty()) (void)co_await batch_apply_(std::move(updates));
      } catch (...) {
        for (auto& f : failures) f = std::current_exception();
      }
    } else {
      for (std::size_t i = 0; i < ready.size(); ++i) {
        try {
          co_await handler_(ready[i].event);
        } catch (...) {
          failures[i] = std::current_exception();
        }
      }
    }
    for (std::size_t i = 0; i < ready.size(); ++i) {
      auto& r = ready[i];
      if (!failures[i]) {
        acks.push_back(r.id);
        ++done;
        continue;
      }
      state_->stats.failed++;
      std::string reason = "handler failed";
      try {
        std::rethrow_exception(failures[i]);
      } catch (std::exception const& x) {
        reason += ": ";
        reason += x.what();
      } catch (...) {
      }
      log(LogLevel::warning, "UserStreamConsumer: entry " + r.id + " (delivery " +
                                 std::to_string(r.deliveries) + "): " + reason);
      if (r.deliveries >= options_.max_deliveries)
        dead.push_back({r.id, r.payload, std::move(reason), std::to_string(r.deliveries)});
    }
    std::vector<std::array<FieldValue, 5>> fields(dead.size());
    std::vector<cmd::xadd> adds;
    adds.reserve(dead.size());
    for (std::size_t i = 0; i < dead.size(); ++i) {
      fields[i] = {FieldValue{"id", dead[i].id}, FieldValue{"payload", dead[i].payload},
                   FieldValue{"reason", dead[i].reason},
                   FieldValue{"deliveries", dead[i].deliveries},
                   FieldValue{"consumer", options_.consumer_name}};
      adds.push_back(cmd::xadd{.key = options_.dead_letter_stream, .fields = fields[i]});
      acks.push_back(dead[i].id);
    }
    if (acks.empty()) co_return;
    std::vector<std::string_view> ids(acks.begin(), acks.end());
    (void)co_await backend_->async_exec(
        batch(adds, cmd::xack{.key = options_.stream_name,
                              .group = options_.consumer_group,
                              .ids = ids}),
        boost::asio::use_awaitable);
    state_->stats.processed += done;
    state_->stats.dead_lettered += dead.size();
    for (auto const& d : dead)
      log(LogLevel::error, "UserStreamConsumer: entry " + d.id + " dead-lettered: " + d.reason);
  }

  awaitable<UserStreamStats> full_stats() {
    UserStreamStats s = state_->stats;
    auto [ec, p] = co_await backend_->async_exec(
        cmd::xpending{.key = options_.stream_name, .group = options_.consumer_group},
        detail::user::tuple_awaitable);
    if (ec && !is(ec, Error::no_group)) throw boost::system::system_error(ec);
    s.pending = ec ? 0 : p.count;
    std::string const from = state_->last_seen.empty() ? "-" : "(" + state_->last_seen;
    auto after = co_await backend_->async_exec(
        cmd::xrange{.key = options_.stream_name, .start = from, .end = "+", .count = options_.lag_cap},
        boost::asio::use_awaitable);
    s.lag = static_cast<std::int64_t>(after.size());
    co_return s;
  }

  B* backend_;
  UserStreamOptions options_;
  detail::user::EventHandler handler_;
  detail::user::BatchApply batch_apply_;  // set when the target is a UserCache
  bool create_missing_ = false;
  std::shared_ptr<State> state_;
};

}  // namespace rediskit
