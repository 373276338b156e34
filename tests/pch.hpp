// Precompiled header of the test executables: the heavy headers most tests include.
// Listing a header here only saves time; every test still includes what it uses.
// It is included before anything else in every test file: a test that must define a
// configuration macro before Boost (BOOST_ASIO_..., BOOST_JSON_...) opts out in
// tests/CMakeLists.txt with set_source_files_properties(<file> PROPERTIES
// SKIP_PRECOMPILE_HEADERS ON).
#pragma once

#include <boost/asio.hpp>
#include <boost/describe.hpp>
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

// The whole library: every conformance test instantiates every backend.
#include <rediskit/rediskit.hpp>

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
