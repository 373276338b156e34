// rediskit: the whole public surface in one include.
//
// Every public header of rediskit is reachable from here (never detail/ or impl/ ones): listed
// below, or through a family header such as rediskit/resp3.hpp. When you add a public header,
// add it below (or to its family header): the CTest check `umbrella_header_complete` fails
// when one is missing.
#pragma once

#include <rediskit/connection.hpp>
#include <rediskit/error.hpp>
#include <rediskit/reconnect_policy.hpp>
#include <rediskit/resp3.hpp>
#include <rediskit/version.hpp>
