// rediskit test support: the cross-slot refusal of a conformance case, checked where it applies.
//
//   test::expect_cross_slot(f, cmd::mget{{"a", "b"}});   // "a" and "b" are in different slots
//
// On ClusterBackend the command (transaction, script) fails with Error::cross_slot before
// anything is sent, and Diagnostics::detail names the keys; on MemoryBackend, a second backend
// with MemoryConfig::cluster_checks refuses it the same way (the fixture's own backend, without
// the checks, is left alone). FakeBackend and RedisBackend (one node) run such commands: nothing
// is checked there.
#pragma once

#include "support/backends.hpp"

#include <rediskit/cluster/route.hpp>

#include <boost/test/unit_test.hpp>

#include <optional>
#include <type_traits>
#include <utility>

namespace rediskit::test {

template <class B, class X>
void expect_cross_slot(BackendFixture<B>& f, X const& x) {
  BOOST_TEST_REQUIRE(cluster::route(x).cross_slot, "the case's keys must span hash slots");
  if constexpr (BackendFixture<B>::is_cluster) {
    Diagnostics diag;
    std::optional<boost::system::error_code> ec;
    f.backend.async_exec(x, diag, [&](boost::system::error_code e, auto&&) { ec = e; });
    f.run_until([&] { return ec.has_value(); });
    BOOST_TEST(*ec == make_error_code(Error::cross_slot), "got " << ec->message());
    BOOST_TEST(!diag.detail.empty(), "Diagnostics::detail names the keys");
  } else if constexpr (std::is_same_v<B, MemoryBackend>) {
    BackendFixture<MemoryBackend> checked(std::in_place, MemoryConfig{.cluster_checks = true});
    checked.fails(x, Error::cross_slot);
  }
}

}  // namespace rediskit::test
