// rediskit test support: a service case run in each key layout the backend can check.
//
//   for_each_mode<B>([&](Mode mode) {
//     BackendFixture<B> f = mode_fixture<B>(mode);
//     UnreadMessageManager<B> m(f.backend, with_mode_layout(mode, UnreadOptions{}));
//     ...
//   });
//
// Every case runs on its backend's default layout (ClusterBackend: clustered; the others:
// plain), then, on the in-process backends, again in the clustered layout with
// MemoryConfig::cluster_checks, where a cross-slot command or a script that touches a key it
// did not declare fails as on a cluster. The second run is a run-time parameter, not a type:
// it adds no template instantiation.
#pragma once

#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/key_space.hpp>

#include "support/backends.hpp"

#include <boost/test/unit_test.hpp>

#include <utility>

namespace rediskit::test {

/// How a case runs (see the top of this file).
enum class Mode { native, clustered_checked };

/// f(Mode::native), then, on the in-process backends, f(Mode::clustered_checked).
template <class B, class F>
void for_each_mode(F&& f) {
  f(Mode::native);
  if constexpr (!BackendFixture<B>::on_server) {
    BOOST_TEST_CONTEXT("clustered layout, MemoryConfig::cluster_checks") {
      f(Mode::clustered_checked);
    }
  }
}

/// The fixture of a mode: an in-process backend with cluster checks for clustered_checked.
template <class B>
BackendFixture<B> mode_fixture(Mode mode) {
  if constexpr (!BackendFixture<B>::on_server) {
    if (mode == Mode::clustered_checked)
      return BackendFixture<B>(std::in_place, MemoryConfig{.cluster_checks = true});
  }
  return BackendFixture<B>();
}

/// A service's options with the clustered layout for clustered_checked (unless they name one).
template <class Options>
Options with_mode_layout(Mode mode, Options o) {
  if (mode == Mode::clustered_checked && !o.key_layout) o.key_layout = KeyLayout::clustered;
  return o;
}

}  // namespace rediskit::test
