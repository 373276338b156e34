// rediskit: the whole public surface in one include.
//
// Every public header of rediskit is reachable from here (never detail/ or impl/ ones): listed
// below, or through a family header such as rediskit/resp3.hpp or rediskit/commands.hpp. When
// you add a public header, add it below (or to its family header): the CTest check
// `umbrella_header_complete` fails when one is missing.
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/backend/cluster_backend.hpp>
#include <rediskit/backend/fake_backend.hpp>
#include <rediskit/backend/fallback_backend.hpp>
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/backend/subscriber.hpp>
#include <rediskit/caches.hpp>
#include <rediskit/circuit_breaker.hpp>
#include <rediskit/clock.hpp>
#include <rediskit/cluster/route.hpp>
#include <rediskit/cluster/slot.hpp>
#include <rediskit/cluster/slot_map.hpp>
#include <rediskit/codec/hash_codec.hpp>
#include <rediskit/codec/json_codec.hpp>
#include <rediskit/codec/string_codec.hpp>
#include <rediskit/command.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/concepts/codec.hpp>
#include <rediskit/concepts/ttl_policy.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/reconnect_policy.hpp>
#include <rediskit/redis_config.hpp>
#include <rediskit/redis_manager.hpp>
#include <rediskit/resp3.hpp>
#include <rediskit/script.hpp>
#include <rediskit/stream_manager.hpp>
#include <rediskit/services/cache_prewarmer.hpp>
#include <rediskit/services/cache_service.hpp>
#include <rediskit/services/content_cache.hpp>
#include <rediskit/services/conversation_manager.hpp>
#include <rediskit/services/job_queue.hpp>
#include <rediskit/services/message_store.hpp>
#include <rediskit/services/messaging.hpp>
#include <rediskit/services/notification_service.hpp>
#include <rediskit/services/online_user_manager.hpp>
#include <rediskit/services/rate_limiter.hpp>
#include <rediskit/services/room_manager.hpp>
#include <rediskit/services/session_store.hpp>
#include <rediskit/services/unread_message_manager.hpp>
#include <rediskit/services/user_cache.hpp>
#include <rediskit/services/user_directory.hpp>
#include <rediskit/services/user_events.hpp>
#include <rediskit/services/vote_approval.hpp>
#include <rediskit/services/vote_service.hpp>
#include <rediskit/services/worker.hpp>
#include <rediskit/tls.hpp>
#include <rediskit/version.hpp>
