// rediskit::ContentCache<Backend, Codec>: seed 002's cache families and their targeted
// invalidations, over CacheService.
//
//   rediskit::ContentCache<rediskit::RedisBackend> cache(redis);       // seed 002's keys and TTLs
//   co_await cache.async_set_categories(categories);                     // cache:categories, 1 h
//   auto p = co_await cache.async_get_profile<Profile>("42");            // cache:profile:42
//   co_await cache.async_invalidate_resource("1");                       // resource 10 stays
//   co_await cache.async_invalidate_popular_resources();                 // every limit
//
// Families (key under key_prefix "cache", TTL; seed 002's "Cache des requêtes fréquentes"):
//
//   family              key                                  TTL      invalidation
//   categories          cache:categories                     1 h      invalidate_categories
//   tags                cache:tags                           1 h        (both: "catégories/tags")
//   popular resources   cache:resources:popular:limit:<n>    15 min   invalidate_popular_resources
//   profiles            cache:profile:<user id>              30 min   invalidate_profile(id)
//   collections         cache:collection:<collection id>     1 h      invalidate_collection(id)
//   resources           cache:resource:<resource id>         1 h      invalidate_resource(id)
//
// The names are the seed's, so a C++ service shares the entries with the Node services
// (JsonCodec writes what JSON.stringify writes). Every TTL is ContentCacheOptions'. A targeted
// invalidation deletes exactly its key (resource 1 is `cache:resource:1`, never a pattern such
// as `cache:resource:1*`, which would take resource 10 with it); the popular lists, whose
// limits vary, are deleted by a SCAN of `resources:popular:limit:*` (CacheService's
// async_delete_pattern: never KEYS). Every operation is CacheService's (one round trip;
// invalidate_categories two; invalidate_popular_resources a SCAN walk), with its guarantees:
// a load in flight of an invalidated key does not write it back, ids are escaped, bad input
// (an empty id, a limit below 1) completes with Error::invalid_argument. On a cluster the
// values keep their names and spread over the masters (CacheService's clustered layout).
// cache() gives the CacheService underneath, for cache-aside (async_get_or_load) and the rest.
#pragma once

#include <rediskit/codec/json_codec.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/concepts/ttl_policy.hpp>
#include <rediskit/detail/then.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/services/cache_service.hpp>

#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace rediskit {

/// Options of ContentCache; the defaults are seed 002's.
struct ContentCacheOptions {
  std::string key_prefix = "cache";  ///< every key is `{key_prefix}:{family key}`
  std::chrono::milliseconds categories_ttl = std::chrono::hours(1);
  std::chrono::milliseconds tags_ttl = std::chrono::hours(1);
  std::chrono::milliseconds popular_resources_ttl = std::chrono::minutes(15);
  std::chrono::milliseconds profile_ttl = std::chrono::minutes(30);
  std::chrono::milliseconds collection_ttl = std::chrono::hours(1);
  std::chrono::milliseconds resource_ttl = std::chrono::hours(1);
  /// The layout of the CacheService underneath; nullopt: default_key_layout_v<B>.
  std::optional<KeyLayout> key_layout{};
};

namespace detail::content {

/// Deletes two keys of a cache in turn; completes with how many were there.
template <class Cache>
struct DeleteBoth {
  Cache* cache;
  std::string first, second;
  int step = 0;
  std::size_t deleted = 0;

  template <class Self>
  void operator()(Self& self) {
    cache->async_del(first, std::move(self));
  }
  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, bool was) {
    deleted += was ? 1 : 0;
    if (ec || step++ == 1) return self.complete(ec, deleted);
    cache->async_del(second, std::move(self));
  }
};

}  // namespace detail::content

/// Seed 002's cache families over any Backend (see the top of this file). Operations complete
/// as CacheService's: set with void(error_code), get with void(error_code, std::optional<T>),
/// invalidations with void(error_code, bool) for one key and void(error_code, std::size_t)
/// (keys deleted) for several.
template <Backend B, class Codec = JsonCodec>
class ContentCache {
  using ms = std::chrono::milliseconds;
  using error_code = boost::system::error_code;

 public:
  using cache_type = CacheService<B, Codec, FixedTtl>;

  /// `backend` must outlive the cache and its operations.
  explicit ContentCache(B& backend, ContentCacheOptions options = {}, Codec codec = {})
      : options_(std::move(options)),
        cache_(backend, cache_options(options_), std::move(codec),
               FixedTtl{options_.resource_ttl}) {}

  ContentCacheOptions const& options() const noexcept { return options_; }
  /// The CacheService underneath (its key prefix is options().key_prefix).
  cache_type& cache() noexcept { return cache_; }

  // --- categories and tags (1 h) --------------------------------------------------------------

  template <class T, class Token = boost::asio::deferred_t>
  auto async_set_categories(T const& value, Token&& token = {}) {
    return cache_.async_set("categories", value, options_.categories_ttl,
                            std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_get_categories(Token&& token = {}) {
    return cache_.template async_get<T>("categories", std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_set_tags(T const& value, Token&& token = {}) {
    return cache_.async_set("tags", value, options_.tags_ttl, std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_get_tags(Token&& token = {}) {
    return cache_.template async_get<T>("tags", std::forward<Token>(token));
  }
  /// seed: invalidateCategoriesCache. Deletes the categories and the tags; completes with how
  /// many of the two were there.
  template <class Token = boost::asio::deferred_t>
  auto async_invalidate_categories(Token&& token = {}) {
    return detail::erased_compose<void(error_code, std::size_t)>(
        std::forward<Token>(token), detail::content::DeleteBoth<cache_type>{&cache_, "categories", "tags"},
        cache_.backend().get_executor());
  }

  // --- popular resources (15 min) -------------------------------------------------------------

  /// The list of the `limit` most popular resources (cache:resources:popular:limit:<limit>).
  template <class T, class Token = boost::asio::deferred_t>
  auto async_set_popular_resources(std::size_t limit, T const& value, Token&& token = {}) {
    return cache_.async_set(popular_key(limit), value, options_.popular_resources_ttl,
                            std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_get_popular_resources(std::size_t limit, Token&& token = {}) {
    return cache_.template async_get<T>(popular_key(limit), std::forward<Token>(token));
  }
  /// seed: invalidatePopularResourcesCache. Deletes the lists of every limit (a SCAN walk);
  /// completes with how many there were.
  template <class Token = boost::asio::deferred_t>
  auto async_invalidate_popular_resources(Token&& token = {}) {
    return cache_.async_delete_pattern("resources:popular:limit:*",
                                       std::forward<Token>(token));
  }

  // --- profiles (30 min), collections (1 h), resources (1 h) ----------------------------------

  template <class T, class Token = boost::asio::deferred_t>
  auto async_set_profile(std::string_view user_id, T const& value, Token&& token = {}) {
    return cache_.async_set(key("profile:", user_id), value, options_.profile_ttl,
                            std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_get_profile(std::string_view user_id, Token&& token = {}) {
    return cache_.template async_get<T>(key("profile:", user_id), std::forward<Token>(token));
  }
  /// seed: invalidateProfileCache. Completes with whether the profile was cached.
  template <class Token = boost::asio::deferred_t>
  auto async_invalidate_profile(std::string_view user_id, Token&& token = {}) {
    return cache_.async_del(key("profile:", user_id), std::forward<Token>(token));
  }

  template <class T, class Token = boost::asio::deferred_t>
  auto async_set_collection(std::string_view collection_id, T const& value, Token&& token = {}) {
    return cache_.async_set(key("collection:", collection_id), value, options_.collection_ttl,
                            std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_get_collection(std::string_view collection_id, Token&& token = {}) {
    return cache_.template async_get<T>(key("collection:", collection_id),
                                        std::forward<Token>(token));
  }
  /// seed: invalidateCollectionCache.
  template <class Token = boost::asio::deferred_t>
  auto async_invalidate_collection(std::string_view collection_id, Token&& token = {}) {
    return cache_.async_del(key("collection:", collection_id), std::forward<Token>(token));
  }

  template <class T, class Token = boost::asio::deferred_t>
  auto async_set_resource(std::string_view resource_id, T const& value, Token&& token = {}) {
    return cache_.async_set(key("resource:", resource_id), value, options_.resource_ttl,
                            std::forward<Token>(token));
  }
  template <class T, class Token = boost::asio::deferred_t>
  auto async_get_resource(std::string_view resource_id, Token&& token = {}) {
    return cache_.template async_get<T>(key("resource:", resource_id),
                                        std::forward<Token>(token));
  }
  /// seed: invalidateResourceCache. Exactly this resource's entry (resource 10 stays when 1
  /// goes); the popular lists have their own invalidation.
  template <class Token = boost::asio::deferred_t>
  auto async_invalidate_resource(std::string_view resource_id, Token&& token = {}) {
    return cache_.async_del(key("resource:", resource_id), std::forward<Token>(token));
  }

 private:
  static CacheOptions cache_options(ContentCacheOptions const& o) {
    CacheOptions c;
    c.key_prefix = o.key_prefix;
    c.key_layout = o.key_layout;
    return c;
  }
  // An empty id gives an empty key, which CacheService refuses with Error::invalid_argument.
  static std::string key(std::string_view family, std::string_view id) {
    return id.empty() ? std::string() : std::string(family) + std::string(id);
  }
  // A limit of 0 likewise.
  static std::string popular_key(std::size_t limit) {
    return limit == 0 ? std::string()
                      : "resources:popular:limit:" + std::to_string(limit);
  }

  ContentCacheOptions options_;
  cache_type cache_;
};

}  // namespace rediskit
