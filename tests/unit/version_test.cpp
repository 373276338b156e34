// rediskit/version.hpp agrees with project(rediskit VERSION ...) in CMakeLists.txt.
#include <rediskit/version.hpp>

#include <boost/test/unit_test.hpp>

#include <string>
#include <string_view>

BOOST_AUTO_TEST_SUITE(version)

BOOST_AUTO_TEST_CASE(numbers_match_the_cmake_project_version) {
  BOOST_TEST(REDISKIT_VERSION_MAJOR == REDISKIT_TEST_CMAKE_VERSION_MAJOR);
  BOOST_TEST(REDISKIT_VERSION_MINOR == REDISKIT_TEST_CMAKE_VERSION_MINOR);
  BOOST_TEST(REDISKIT_VERSION_PATCH == REDISKIT_TEST_CMAKE_VERSION_PATCH);
  BOOST_TEST(rediskit::version_major == REDISKIT_TEST_CMAKE_VERSION_MAJOR);
  BOOST_TEST(rediskit::version_minor == REDISKIT_TEST_CMAKE_VERSION_MINOR);
  BOOST_TEST(rediskit::version_patch == REDISKIT_TEST_CMAKE_VERSION_PATCH);
}

BOOST_AUTO_TEST_CASE(string_is_major_dot_minor_dot_patch) {
  BOOST_TEST(rediskit::version_string == std::string_view(REDISKIT_TEST_CMAKE_VERSION));
  const std::string expected = std::to_string(REDISKIT_VERSION_MAJOR) + "." +
                               std::to_string(REDISKIT_VERSION_MINOR) + "." +
                               std::to_string(REDISKIT_VERSION_PATCH);
  BOOST_TEST(rediskit::version_string == expected);
}

BOOST_AUTO_TEST_CASE(single_number_orders_versions) {
  static_assert(REDISKIT_VERSION == REDISKIT_VERSION_MAJOR * 100000 + REDISKIT_VERSION_MINOR * 100 +
                                        REDISKIT_VERSION_PATCH);
  BOOST_TEST(REDISKIT_VERSION > 0);
}

BOOST_AUTO_TEST_SUITE_END()
