// rediskit typed commands: every command value, by family. See rediskit/command.hpp for what a
// command is and how batches work.
#pragma once

#include <rediskit/command.hpp>
#include <rediskit/cmd/hashes.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/cmd/lists.hpp>
#include <rediskit/cmd/pubsub.hpp>
#include <rediskit/cmd/scripting.hpp>
#include <rediskit/cmd/server.hpp>
#include <rediskit/cmd/sets.hpp>
#include <rediskit/cmd/sorted_sets.hpp>
#include <rediskit/cmd/streams.hpp>
#include <rediskit/cmd/strings.hpp>
