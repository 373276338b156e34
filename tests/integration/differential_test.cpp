// Differential test: seeded random sequences of commands of every family run on MemoryBackend
// and on a real redis-server; every reply and error code must agree.
//
// CI runs a fixed budget (REDISKIT_DIFF_SEEDS seeds of REDISKIT_DIFF_OPS operations, default
// 6 x 600); run longer on demand:
//   export REDISKIT_DIFF_SEEDS=200 REDISKIT_DIFF_OPS=3000
//   build/gcc-debug/tests/integration_tests --run_test=differential
// A difference fails the test and prints the seed (REDISKIT_DIFF_SEED=<seed> replays only it)
// and the shortest sequence of operations found that still shows it.
#include "support/differential.hpp"

#if __has_include("differential/ops_strings_keys.hpp")
#include "differential/ops_strings_keys.hpp"
#define REDISKIT_DIFF_STRINGS_KEYS 1
#endif
#if __has_include("differential/ops_hashes_sets.hpp")
#include "differential/ops_hashes_sets.hpp"
#define REDISKIT_DIFF_HASHES_SETS 1
#endif
#if __has_include("differential/ops_sorted_sets_lists.hpp")
#include "differential/ops_sorted_sets_lists.hpp"
#define REDISKIT_DIFF_SORTED_SETS_LISTS 1
#endif
#if __has_include("differential/ops_streams.hpp")
#include "differential/ops_streams.hpp"
#define REDISKIT_DIFF_STREAMS 1
#endif

#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

using namespace rediskit;
using namespace rediskit::test;

namespace {

std::uint64_t env_number(char const* name, std::uint64_t fallback) {
  char const* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// Operations of every backend-level kind that are not a family's: batches and transactions
// mixing families, scripts, publish with no subscriber.
void register_backend_ops(OpRegistry& r) {
  r.add("batch(set,get,del)", [](Gen& g, Pair& p) {
    std::string k1 = g.key("s"), k2 = g.key("s"), v = g.value();
    return p.compare(batch(cmd::set{.key = k1, .value = v}, cmd::get{k2}, cmd::del{.keys = k2}));
  });
  r.add("transaction(set nx,get)", [](Gen& g, Pair& p) {
    std::string k = g.key("s"), v = g.value();
    return p.compare(transaction(cmd::set{.key = k, .value = v, .nx = true}, cmd::get{k}));
  });
  r.add("publish", [](Gen& g, Pair& p) {
    std::string ch = g.key("ch"), m = g.value();
    return p.compare(cmd::publish{ch, m});
  });
  r.add("dbsize", [](Gen&, Pair& p) { return p.compare(cmd::dbsize{}); });
}

struct Step {
  std::size_t op;
  std::uint64_t seed;
};

class Runner {
 public:
  Runner()
      : mem_(kDifferentialDb), redis_(kDifferentialDb), pair_{mem_, redis_} {
    register_backend_ops(registry_);
#ifdef REDISKIT_DIFF_STRINGS_KEYS
    register_strings_keys_ops(registry_);
#endif
#ifdef REDISKIT_DIFF_HASHES_SETS
    register_hashes_sets_ops(registry_);
#endif
#ifdef REDISKIT_DIFF_SORTED_SETS_LISTS
    register_sorted_sets_lists_ops(registry_);
#endif
#ifdef REDISKIT_DIFF_STREAMS
    register_streams_ops(registry_);
#endif
  }

  std::size_t kinds() const { return registry_.ops.size(); }

  std::vector<Step> sequence(std::uint64_t seed, std::size_t n) const {
    Gen g(seed);
    std::vector<Step> steps;
    for (std::size_t i = 0; i < n; ++i) steps.push_back({g.below(kinds()), g.rng()()});
    return steps;
  }

  // Plays `steps` on two emptied databases: the index of the first step whose results
  // differ (and the difference), or steps.size().
  std::size_t play(std::vector<Step> const& steps, std::string* diff = nullptr) {
    mem_.ok(cmd::flushdb{});
    redis_.ok(cmd::flushdb{});
    for (std::size_t i = 0; i < steps.size(); ++i) {
      Gen g(steps[i].seed);
      std::string d = registry_.ops[steps[i].op].second(g, pair_);
      ++played_;
      if (!d.empty()) {
        if (diff) *diff = std::move(d);
        return i;
      }
    }
    return steps.size();
  }

  // Removes chunks of steps, then single steps, while the sequence still fails.
  std::vector<Step> shrink(std::vector<Step> steps) {
    for (std::size_t chunk = steps.size() / 2; chunk >= 1; chunk /= 2) {
      for (std::size_t start = 0; start + chunk <= steps.size();) {
        std::vector<Step> candidate(steps.begin(), steps.begin() + start);
        candidate.insert(candidate.end(), steps.begin() + start + chunk, steps.end());
        std::size_t const at = play(candidate);
        if (at < candidate.size()) {
          candidate.resize(at + 1);
          steps = std::move(candidate);
        } else {
          start += chunk;
        }
      }
      if (chunk == 1) break;
    }
    return steps;
  }

  std::string describe(std::vector<Step> const& steps) {
    std::string out;
    std::string diff;
    std::size_t const at = play(steps, &diff);
    for (std::size_t i = 0; i < steps.size(); ++i)
      out += "  " + std::to_string(i + 1) + ". " + registry_.ops[steps[i].op].first +
             " (seed " + std::to_string(steps[i].seed) + ")\n";
    if (at < steps.size()) out += "  differs at step " + std::to_string(at + 1) + ": " + diff;
    return out;
  }

  std::size_t played() const { return played_; }

 private:
  BackendFixture<MemoryBackend> mem_;
  BackendFixture<RedisBackend> redis_;
  Pair pair_;
  OpRegistry registry_;
  std::size_t played_ = 0;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(differential)

BOOST_AUTO_TEST_CASE(memory_backend_replies_as_redis_does) {
  Runner runner;
  std::uint64_t const seeds = env_number("REDISKIT_DIFF_SEEDS", 6);
  std::uint64_t const ops = env_number("REDISKIT_DIFF_OPS", 600);
  std::uint64_t const only = env_number("REDISKIT_DIFF_SEED", 0);
  BOOST_TEST_MESSAGE("differential: " << runner.kinds() << " kinds of operation");
  BOOST_REQUIRE(runner.kinds() >= 4u);
  for (std::uint64_t s = 1; s <= seeds; ++s) {
    std::uint64_t const seed = only ? only : 0x5eed0000 + s;
    auto steps = runner.sequence(seed, ops);
    std::string diff;
    std::size_t const at = runner.play(steps, &diff);
    if (at == steps.size()) {
      if (only) break;
      continue;
    }
    steps.resize(at + 1);
    auto const shortest = runner.shrink(steps);
    BOOST_ERROR("MemoryBackend and redis-server differ. Replay with REDISKIT_DIFF_SEED="
                << seed << " REDISKIT_DIFF_OPS=" << ops << "\nfirst difference at operation "
                << at + 1 << ": " << diff << "\nshortest failing sequence ("
                << shortest.size() << " operations):\n"
                << runner.describe(shortest));
    break;
  }
  BOOST_TEST_MESSAGE("differential: " << runner.played() << " operations played");
}

BOOST_AUTO_TEST_SUITE_END()
