// Ready-made CacheService types: JSON values, seed 000's one-hour TTL.
//
//   rediskit::RedisCache cache(redis_backend, {.key_prefix = "chat"});
//   rediskit::MemoryCache local(memory_backend);   // same API, in process
//   rediskit::FakeCache in_tests(fake_backend);     // manual clock, fault injection
//   rediskit::ClusterCache spread(cluster_backend); // Redis Cluster, the clustered key layout
#pragma once

#include <rediskit/backend/cluster_backend.hpp>
#include <rediskit/backend/fake_backend.hpp>
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/codec/json_codec.hpp>
#include <rediskit/concepts/ttl_policy.hpp>
#include <rediskit/services/cache_service.hpp>

namespace rediskit {

using RedisCache = CacheService<RedisBackend, JsonCodec, FixedTtl>;
using MemoryCache = CacheService<MemoryBackend, JsonCodec, FixedTtl>;
using FakeCache = CacheService<FakeBackend, JsonCodec, FixedTtl>;
using ClusterCache = CacheService<ClusterBackend, JsonCodec, FixedTtl>;

}  // namespace rediskit
