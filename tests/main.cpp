// The Boost.Test runner shared by every rediskit test executable (unit_tests,
// integration_tests, ...). Test files only include <boost/test/unit_test.hpp>.
#define BOOST_TEST_MODULE rediskit
#ifndef BOOST_TEST_DYN_LINK
#define BOOST_TEST_DYN_LINK
#endif
#include <boost/test/unit_test.hpp>
