// rediskit: the whole public surface in one include.
//
// Every public header of rediskit is reachable from here (never detail/ or impl/ ones): listed
// below, or through a family header such as rediskit/resp3.hpp or rediskit/commands.hpp. When
// you add a public header, add it below (or to its family header): the CTest check
// `umbrella_header_complete` fails when one is missing.
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/backend/fake_backend.hpp>
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/backend/subscriber.hpp>
#include <rediskit/clock.hpp>
#include <rediskit/command.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/error.hpp>
#include <rediskit/reconnect_policy.hpp>
#include <rediskit/redis_config.hpp>
#include <rediskit/resp3.hpp>
#include <rediskit/script.hpp>
#include <rediskit/version.hpp>
