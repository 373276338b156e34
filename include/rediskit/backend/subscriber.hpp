// rediskit pub/sub: the Message a subscriber receives, and MemoryBackend's subscriber.
//
// Every backend makes subscribers (`auto sub = backend.make_subscriber();`), each with its own
// channels, patterns and message queue (RedisBackend gives each one its own connection, seed
// 000's "sub" client). The interface is the same on every backend:
//
//   co_await sub.async_subscribe({"chat:room:1", "chat:room:2"});   // void(error_code)
//   co_await sub.async_psubscribe("notifications:*");
//   co_await sub.async_ssubscribe("{room:1}:typing");               // sharded (SPUBLISH)
//   Message m = co_await sub.async_receive();                       // void(error_code, Message)
//   co_await backend.async_exec(cmd::publish{.channel = "chat:room:1", .message = "hi"});
//
// Shard channels (Redis 7's SSUBSCRIBE, published with cmd::spublish) are a namespace of their
// own: PUBLISH never reaches them, SPUBLISH reaches nothing else. On a cluster a shard channel
// lives in its slot's shard, and ClusterBackend's subscriber follows it there.
//
// async_subscribe completes once the subscription is in effect: a message published after
// that completes reaches the subscriber. Messages that arrive while nobody receives are queued,
// up to a bound; beyond it the oldest are dropped and the next async_receive reports
// Error::pushes_dropped once (receiving may go on).
//
// A subscriber whose link was lost and made again (RedisBackend, ClusterBackend; FakeBackend's
// drop_connection and restore_connection) subscribes again by itself, then async_receive
// reports Error::resubscribed once, at once if a receive is waiting: what was published while
// the link was down is lost (pub/sub is at most once), and the subscriptions are in effect
// again. Receiving may go on; a service that must not miss anything reads its history then.
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/detail/glob.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

/// A published message as a subscriber receives it.
struct Message {
  std::string pattern;  ///< the matching pattern (PSUBSCRIBE); empty for a channel subscription
  std::string channel;
  std::string payload;
  bool sharded = false;  ///< from a shard channel (SSUBSCRIBE, SPUBLISH)
  friend bool operator==(Message const&, Message const&) = default;
};

namespace detail::mem {

/// One subscriber's state, shared between the subscriber object and the backend's registry.
struct SubscriberState {
  std::set<std::string, std::less<>> channels;
  std::set<std::string, std::less<>> patterns;
  std::set<std::string, std::less<>> shard_channels;
  std::deque<Message> queue;
  std::size_t max_queued = 4096;
  bool dropped = false;
  bool closed = false;
  bool offline = false;       // FakeBackend::drop_connection: messages are lost meanwhile
  bool resubscribed = false;  // to report once: Error::resubscribed
  boost::asio::any_io_executor executor;
  std::function<void(boost::system::error_code, Message)> receiver;  // the waiting receive

  /// The link is back (FakeBackend::restore_connection): the receiver hears it once.
  void come_back() {
    if (!offline) return;
    offline = false;
    if (receiver && queue.empty() && !dropped)
      return std::exchange(receiver, nullptr)(make_error_code(Error::resubscribed), {});
    resubscribed = true;
  }

  void deliver(Message m) {
    if (receiver) {
      auto r = std::exchange(receiver, nullptr);
      r({}, std::move(m));
      return;
    }
    if (queue.size() >= max_queued) {
      queue.pop_front();
      dropped = true;
    }
    queue.push_back(std::move(m));
  }
};

/// MemoryBackend's pub/sub registry (used under the backend's lock).
class PubSub {
 public:
  void add(std::shared_ptr<SubscriberState> const& s) { subs_.push_back(s); }
  void remove(SubscriberState const* s) {
    std::erase_if(subs_, [&](auto const& w) {
      auto p = w.lock();
      return !p || p.get() == s;
    });
  }
  std::size_t subscriber_count() const noexcept { return subs_.size(); }

  /// PUBLISH: delivers to every matching channel and pattern subscription; returns how many.
  std::size_t publish(std::string_view channel, std::string_view payload) {
    std::size_t n = 0;
    for (auto const& w : subs_) {
      auto s = w.lock();
      if (!s || s->closed || s->offline) continue;
      if (s->channels.contains(channel)) {
        s->deliver(Message{{}, std::string(channel), std::string(payload)});
        ++n;
      }
      for (auto const& p : s->patterns) {
        if (glob_match(p, channel)) {
          s->deliver(Message{p, std::string(channel), std::string(payload)});
          ++n;
        }
      }
    }
    return n;
  }

  /// SPUBLISH: delivers to every subscription of the shard channel; returns how many.
  std::size_t spublish(std::string_view channel, std::string_view payload) {
    std::size_t n = 0;
    for (auto const& w : subs_) {
      auto s = w.lock();
      if (!s || s->closed || s->offline || !s->shard_channels.contains(channel)) continue;
      s->deliver(Message{{}, std::string(channel), std::string(payload), true});
      ++n;
    }
    return n;
  }

  /// PUBSUB NUMSUB-like count of channel subscriptions to `channel`.
  std::size_t subscribers_of(std::string_view channel) const {
    std::size_t n = 0;
    for (auto const& w : subs_)
      if (auto s = w.lock(); s && s->channels.contains(channel)) ++n;
    return n;
  }

 private:
  std::vector<std::weak_ptr<SubscriberState>> subs_;
};

}  // namespace detail::mem

class FakeBackend;

/// A subscriber of a MemoryBackend (made by MemoryBackend::make_subscriber()). Move-only; it
/// unsubscribes from everything when destroyed. Not thread-safe itself: one receive at a time.
class MemorySubscriber {
  friend class FakeBackend;  // its drop_connection reaches its subscribers

 public:
  MemorySubscriber(boost::asio::any_io_executor ex, detail::mem::PubSub& registry,
                   std::mutex& mutex, std::size_t max_queued, std::shared_ptr<void> keep_alive)
      : registry_(&registry), mutex_(&mutex), keep_alive_(std::move(keep_alive)),
        state_(std::make_shared<detail::mem::SubscriberState>()) {
    state_->executor = std::move(ex);
    state_->max_queued = max_queued;
    std::lock_guard lock(*mutex_);
    registry_->add(state_);
  }
  MemorySubscriber(MemorySubscriber&&) noexcept = default;
  MemorySubscriber& operator=(MemorySubscriber&&) noexcept = default;
  ~MemorySubscriber() { close(); }

  boost::asio::any_io_executor get_executor() const { return state_->executor; }

  /// Subscribes to channels (one or a list). Handler: void(error_code).
  template <class Token = boost::asio::deferred_t>
  auto async_subscribe(ArgList<std::string_view> channels, Token&& token = {}) {
    return change(channels, Kind::channel, true, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_psubscribe(ArgList<std::string_view> patterns, Token&& token = {}) {
    return change(patterns, Kind::pattern, true, std::forward<Token>(token));
  }
  /// Shard channels (SSUBSCRIBE): only cmd::spublish reaches them.
  template <class Token = boost::asio::deferred_t>
  auto async_ssubscribe(ArgList<std::string_view> channels, Token&& token = {}) {
    return change(channels, Kind::shard, true, std::forward<Token>(token));
  }
  /// Unsubscribes from the given channels; an empty list: from every channel.
  template <class Token = boost::asio::deferred_t>
  auto async_unsubscribe(ArgList<std::string_view> channels = {}, Token&& token = {}) {
    return change(channels, Kind::channel, false, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_punsubscribe(ArgList<std::string_view> patterns = {}, Token&& token = {}) {
    return change(patterns, Kind::pattern, false, std::forward<Token>(token));
  }
  template <class Token = boost::asio::deferred_t>
  auto async_sunsubscribe(ArgList<std::string_view> channels = {}, Token&& token = {}) {
    return change(channels, Kind::shard, false, std::forward<Token>(token));
  }

  /// The next message. Handler: void(error_code, Message). Errors: Error::pushes_dropped
  /// (once, after messages were dropped), Error::resubscribed (once, after FakeBackend's
  /// restore_connection), Error::already_receiving, Error::connection_closed,
  /// operation_aborted when cancelled.
  template <class Token = boost::asio::deferred_t>
  auto async_receive(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, Message)>(
        [this](auto handler) {
          auto st = state_;
          std::lock_guard lock(*mutex_);
          auto post = [&](boost::system::error_code ec, Message m) {
            detail::post_handler(st->executor, std::move(handler), ec, std::move(m));
          };
          if (!st || st->closed) return post(Error::connection_closed, {});
          if (st->receiver) return post(Error::already_receiving, {});
          if (st->dropped) {
            st->dropped = false;
            return post(Error::pushes_dropped, {});
          }
          if (st->resubscribed) {
            st->resubscribed = false;
            return post(Error::resubscribed, {});
          }
          if (!st->queue.empty()) {
            Message m = std::move(st->queue.front());
            st->queue.pop_front();
            return post({}, std::move(m));
          }
          auto slot = boost::asio::get_associated_cancellation_slot(handler);
          auto shared_handler = std::make_shared<decltype(handler)>(std::move(handler));
          std::weak_ptr<detail::mem::SubscriberState> weak = st;
          st->receiver = [shared_handler, ex = st->executor](boost::system::error_code ec,
                                                            Message m) {
            detail::post_handler(ex, std::move(*shared_handler), ec, std::move(m));
          };
          if (slot.is_connected()) {
            std::mutex* mu = mutex_;
            slot.assign([weak, mu](boost::asio::cancellation_type) {
              std::lock_guard lock2(*mu);
              if (auto s = weak.lock(); s && s->receiver)
                std::exchange(s->receiver, nullptr)(boost::asio::error::operation_aborted, {});
            });
          }
        },
        token);
  }

  /// Channels and patterns currently subscribed.
  std::size_t subscription_count() const {
    std::lock_guard lock(*mutex_);
    return state_ ? state_->channels.size() + state_->patterns.size() +
                        state_->shard_channels.size()
                  : 0;
  }

  /// Unsubscribes from everything; a waiting receive completes with Error::connection_closed.
  void close() {
    if (!state_ || !mutex_) return;
    std::lock_guard lock(*mutex_);
    state_->closed = true;
    state_->channels.clear();
    state_->patterns.clear();
    state_->shard_channels.clear();
    if (state_->receiver) std::exchange(state_->receiver, nullptr)(Error::connection_closed, {});
    registry_->remove(state_.get());
  }

 private:
  enum class Kind { channel, pattern, shard };

  template <class Token>
  auto change(ArgList<std::string_view> names, Kind kind, bool add, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler, ArgList<std::string_view> names, Kind kind, bool add) {
          boost::system::error_code ec;
          {
            std::lock_guard lock(*mutex_);
            if (!state_ || state_->closed) {
              ec = Error::connection_closed;
            } else {
              auto& set = kind == Kind::pattern ? state_->patterns
                           : kind == Kind::shard  ? state_->shard_channels
                                                  : state_->channels;
              if (add && names.empty()) ec = Error::invalid_request;
              else if (!add && names.empty()) set.clear();
              names.for_each([&](std::string_view n) {
                if (add)
                  set.emplace(n);
                else if (auto it = set.find(n); it != set.end())
                  set.erase(it);
              });
            }
          }
          detail::post_handler(state_->executor, std::move(handler), ec);
        },
        token, names, kind, add);
  }

  detail::mem::PubSub* registry_;
  std::mutex* mutex_;
  std::shared_ptr<void> keep_alive_;  // the backend's shared state, registry and mutex
  std::shared_ptr<detail::mem::SubscriberState> state_;
};

}  // namespace rediskit
