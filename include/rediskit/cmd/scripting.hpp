// rediskit typed commands: scripting. A script is a rediskit::Script (Lua plus its C++ twin):
// see rediskit/script.hpp, which defines cmd::evalsha.
#pragma once

#include <rediskit/script.hpp>
