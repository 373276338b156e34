// rediskit::resp3: the RESP3 codec in one include: node vocabulary, incremental parser,
// adapters into C++ types, and the request writer.
#pragma once

#include <rediskit/resp3/adapt.hpp>
#include <rediskit/resp3/node.hpp>
#include <rediskit/resp3/parser.hpp>
#include <rediskit/resp3/request.hpp>
