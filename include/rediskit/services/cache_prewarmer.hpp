// rediskit::CachePrewarmer<Cache>: seed 001's SmartCachePrewarmer. It fills a UserCache with
// the profiles of the users likely to be read soon (the participants of the conversations
// active in the last N days), through the caller's batch loader (the auth service's
// GET /batch), under a concurrency and rate budget instead of the seed's fixed 500-user batches
// and 1.5 s sleeps.
//
//   rediskit::CachePrewarmer warm(cache, {.batch_size = 500, .concurrency = 4, .rate = 2000});
//   rediskit::PrewarmStats s = co_await warm.async_run(
//       [&]() -> asio::awaitable<std::vector<std::string>> {       // the ids: a range, or an
//         co_return co_await conversations.participants_since(7d); // awaitable of one
//       },
//       [&](std::vector<std::string> ids) { return auth.batch_get(ids); });
//   // s: {total_processed, cached, errors, duration}  (seed: totalProcessed, ..., "47.32s")
//
// - The source is a range of ids, or a callable returning one (or an awaitable of one). Ids
//   are deduplicated (first occurrence kept), empty ids dropped, and at most max_users kept
//   (0: all).
// - The ids are cut into batches of batch_size. At most `concurrency` batches are in flight
//   (a batch: one loader call, then one round trip writing its profiles, versioned as
//   UserCache::async_set_many: a profile the stream updated meanwhile is not overwritten by an
//   older copy). With `rate` > 0, batch k starts no earlier than start + (users before it) /
//   rate, so the loader sees at most `rate` users per second on average (and never more than
//   one batch ahead of that budget).
// - only_missing: each batch is read first and the loader is asked for the ids not cached
//   only (UserCache::async_batch_get_or_load, sharing flights with concurrent reads).
// - Counting: processed = ids handled; cached = ids whose profile is in the cache after their
//   batch (written, already there, or kept because newer); errors = ids the loader did not
//   return, plus whole batches whose loader threw or whose write failed.
// - on_progress(PrewarmProgress) after each batch: processed, cached, errors, total, elapsed
//   and the ETA at the current pace. It runs on the cache's executor; keep it short.
// - Cancellation: the completion handler's cancellation slot (asio::bind_cancellation_slot,
//   or a coroutine's own). Batches in flight finish (their loads are not wasted), no new
//   batch starts, waits for the rate budget end at once; the operation completes with
//   boost::asio::error::operation_aborted and the stats so far.
//
// Handler: void(error_code, PrewarmStats). Lifetime: the prewarmer, its cache and the
// loader's captures must outlive the operation; run it on the cache's executor's thread.
#pragma once

#include <rediskit/services/user_cache.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace rediskit {

/// What on_progress sees after each batch.
struct PrewarmProgress {
  std::size_t processed = 0;
  std::size_t cached = 0;
  std::size_t errors = 0;
  std::size_t total = 0;
  std::chrono::milliseconds elapsed{0};
  std::chrono::milliseconds eta{0};  ///< at the pace so far
};

/// Seed 001's result: {totalProcessed, cached, errors, duration}.
struct PrewarmStats {
  std::size_t total_processed = 0;
  std::size_t cached = 0;
  std::size_t errors = 0;
  std::chrono::milliseconds duration{0};
  bool cancelled = false;
  /// "47.32s", as the seed prints it.
  std::string duration_text() const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2fs", static_cast<double>(duration.count()) / 1000.0);
    return buf;
  }
};

struct PrewarmOptions {
  std::size_t batch_size = 500;  ///< seed 001: 500 users per GET /batch
  std::size_t concurrency = 4;   ///< batches in flight at most
  double rate = 0;               ///< users per second at most (0: no limit)
  std::size_t max_users = 0;     ///< seed 001's maxUsers (0: all)
  bool only_missing = false;     ///< ask the loader for ids not cached only
  std::function<void(PrewarmProgress const&)> on_progress{};
};

/// See the top of this file. Cache: a UserCache.
template <class Cache>
class CachePrewarmer {
  using error_code = boost::system::error_code;
  using T = typename Cache::profile_type;
  using Loaded = std::unordered_map<std::string, T>;
  using Loader = std::function<boost::asio::awaitable<Loaded>(std::vector<std::string>)>;
  using clock = std::chrono::steady_clock;
  template <class X>
  using awaitable = boost::asio::awaitable<X>;

 public:
  explicit CachePrewarmer(Cache& cache, PrewarmOptions options = {})
      : cache_(&cache), options_(std::move(options)) {}

  PrewarmOptions const& options() const noexcept { return options_; }

  /// Warms the cache (see the top of this file). Handler: void(error_code, PrewarmStats).
  template <class Source, class BatchLoader, class Token = boost::asio::deferred_t>
  auto async_run(Source source, BatchLoader loader, Token&& token = {}) {
    Loader erased = [l = std::make_shared<BatchLoader>(std::move(loader))](
                        std::vector<std::string> ids) -> awaitable<Loaded> {
      return load(l, std::move(ids));
    };
    std::function<awaitable<std::vector<std::string>>()> ids =
        [s = std::make_shared<Source>(std::move(source))]() { return collect(s); };
    return detail::user::spawn<detail::user::Outcome<PrewarmStats>>(
        cache_->backend().get_executor(), std::forward<Token>(token),
        [this, ids = std::move(ids), erased = std::move(erased)]() mutable {
          return run(std::move(ids), std::move(erased));
        });
  }

 private:
  template <class L>
  static awaitable<Loaded> load(std::shared_ptr<L> l, std::vector<std::string> ids) {
    auto r = co_await detail::user::call_maybe_await(*l, std::move(ids));
    co_return detail::user::by_id<T>(std::move(r));
  }

  template <class S>
  static awaitable<std::vector<std::string>> collect(std::shared_ptr<S> s) {
    std::vector<std::string> out;
    if constexpr (std::is_invocable_v<S&>) {
      auto r = co_await detail::user::call_maybe_await(*s);
      for (auto&& id : r) out.emplace_back(id);
    } else {
      for (auto&& id : *s) out.emplace_back(id);
    }
    co_return out;
  }

  struct Run {
    std::vector<std::string> ids;
    std::size_t next = 0;  // the next batch's first id
    PrewarmStats stats;
    clock::time_point start;
    std::size_t active = 0;
    bool cancelled = false;
    std::unique_ptr<boost::asio::steady_timer> wake;
    std::vector<boost::asio::steady_timer*> waiting;
  };

  awaitable<detail::user::Outcome<PrewarmStats>> run(std::function<awaitable<std::vector<std::string>>()> source,
                              Loader loader) {
    if (options_.batch_size == 0 || options_.concurrency == 0 || options_.rate < 0)
      detail::user::fail(Error::invalid_argument,
                         "batch_size and concurrency must be at least 1, rate not negative");
    co_await boost::asio::this_coro::throw_if_cancelled(false);
    co_await boost::asio::this_coro::reset_cancellation_state(
        boost::asio::enable_total_cancellation());
    auto const ex = cache_->backend().get_executor();
    auto r = std::make_shared<Run>();
    r->start = clock::now();
    {
      auto all = co_await source();
      std::unordered_set<std::string_view> seen;
      r->ids.reserve(all.size());
      for (auto& id : all) {
        if (id.empty() || seen.contains(id)) continue;
        if (options_.max_users && r->ids.size() == options_.max_users) break;
        r->ids.push_back(std::move(id));
        seen.insert(r->ids.back());
      }
    }
    r->wake = std::make_unique<boost::asio::steady_timer>(ex, clock::time_point::max());
    std::size_t const batches = (r->ids.size() + options_.batch_size - 1) / options_.batch_size;
    std::size_t const workers = std::min(options_.concurrency, batches);
    r->active = workers;
    for (std::size_t i = 0; i < workers; ++i)
      boost::asio::co_spawn(ex, worker(r, loader), [r](std::exception_ptr) {
        r->active--;
        r->wake->cancel();
      });
    auto cs = co_await boost::asio::this_coro::cancellation_state;
    while (r->active > 0) {
      (void)co_await r->wake->async_wait(detail::user::tuple_awaitable);
      if (cs.cancelled() != boost::asio::cancellation_type::none && !r->cancelled) {
        r->cancelled = true;
        for (auto* t : r->waiting) t->cancel();
      }
    }
    r->stats.duration =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - r->start);
    r->stats.cancelled = r->cancelled;
    // Cancelled: operation_aborted, with the stats so far.
    error_code ec;
    if (r->cancelled) ec = boost::asio::error::operation_aborted;
    co_return detail::user::Outcome<PrewarmStats>{ec, r->stats};
  }

  awaitable<void> worker(std::shared_ptr<Run> r, Loader loader) {
    auto const ex = cache_->backend().get_executor();
    boost::asio::steady_timer timer(ex);
    while (!r->cancelled && r->next < r->ids.size()) {
      std::size_t const first = r->next;
      std::size_t const n = std::min(options_.batch_size, r->ids.size() - first);
      r->next += n;
      if (options_.rate > 0 && first > 0) {
        auto const at = r->start + std::chrono::duration_cast<clock::duration>(
                                       std::chrono::duration<double>(double(first) / options_.rate));
        if (at > clock::now()) {
          timer.expires_at(at);
          r->waiting.push_back(&timer);
          (void)co_await timer.async_wait(detail::user::tuple_awaitable);
          std::erase(r->waiting, &timer);
          if (r->cancelled) {
            r->next = std::min(r->next, first);  // not started: not counted
            break;
          }
        }
      }
      std::vector<std::string> ids(r->ids.begin() + static_cast<std::ptrdiff_t>(first),
                                   r->ids.begin() + static_cast<std::ptrdiff_t>(first + n));
      std::size_t cached = 0;
      try {
        if (options_.only_missing) {
          auto b = co_await cache_->async_batch_get_or_load(
              ids, [&loader](std::vector<std::string> missing) { return loader(std::move(missing)); },
              boost::asio::use_awaitable);
          cached = n - b.missing.size();
        } else {
          Loaded loaded = co_await loader(ids);
          std::vector<T> profiles;
          profiles.reserve(loaded.size());
          std::unordered_set<std::string_view> asked(ids.begin(), ids.end());
          for (auto& entry : loaded) {  // no structured binding: clang 14 cannot name one in requires
            if (!asked.contains(entry.first)) continue;
            if constexpr (requires(T& x) { x.id = entry.first; }) entry.second.id = entry.first;
            profiles.push_back(std::move(entry.second));
          }
          if (!profiles.empty())
            (void)co_await cache_->async_set_many(profiles, boost::asio::use_awaitable);
          cached = profiles.size();
        }
      } catch (...) {
        cached = 0;
      }
      r->stats.total_processed += n;
      r->stats.cached += cached;
      r->stats.errors += n - cached;
      if (options_.on_progress) {
        PrewarmProgress p;
        p.processed = r->stats.total_processed;
        p.cached = r->stats.cached;
        p.errors = r->stats.errors;
        p.total = r->ids.size();
        p.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - r->start);
        if (p.processed)
          p.eta = std::chrono::milliseconds(static_cast<std::int64_t>(
              double(p.elapsed.count()) * double(p.total - p.processed) / double(p.processed)));
        options_.on_progress(p);
      }
    }
  }

  Cache* cache_;
  PrewarmOptions options_;
};

}  // namespace rediskit
