// MemoryBackend: streams commands (see engine.hpp for the rules of run() overloads).
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/cmd/streams.hpp>

namespace rediskit::detail::mem {}  // namespace rediskit::detail::mem
