// Precompiled header of the test executables: Boost, the standard library and rediskit's stable
// lower layers (RESP3, connection, commands, codecs, the three backends, the test fixtures).
// Never a service header (services/*, caches.hpp): an edit to a service must rebuild only the
// tests and examples that include it, not this header and with it every test (which is what
// the whole-library PCH did). Listing a header here only saves time; every test still includes
// what it uses.
// It is included before anything else in every test file: a test that must define a
// configuration macro before Boost (BOOST_ASIO_..., BOOST_JSON_...) opts out in
// tests/CMakeLists.txt with set_source_files_properties(<file> PROPERTIES
// SKIP_PRECOMPILE_HEADERS ON).
#pragma once

#include <boost/asio.hpp>
#include <boost/describe.hpp>
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

// The lower layers: every conformance and service test instantiates every backend.
#include <rediskit/arg_list.hpp>
#include <rediskit/backend/fake_backend.hpp>
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/backend/subscriber.hpp>
#include <rediskit/codec/hash_codec.hpp>
#include <rediskit/codec/json_codec.hpp>
#include <rediskit/codec/string_codec.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/concepts/codec.hpp>
#include <rediskit/concepts/ttl_policy.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/resp3.hpp>
#include <rediskit/script.hpp>
#include <rediskit/version.hpp>

#include "support/backends.hpp"
#include "support/test_redis.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>
