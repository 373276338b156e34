// MemoryBackend: scripts run through their C++ twins (rediskit/script.hpp defines the run()
// overload for cmd::evalsha).
#pragma once

#include <rediskit/script.hpp>
