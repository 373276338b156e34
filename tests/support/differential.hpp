// rediskit test support: differential testing of MemoryBackend against a real redis-server.
//
// An operation kind is a function that draws random arguments from a Gen, builds ONE typed
// command (or a batch) over them, runs it on both backends with Pair::compare and returns "" when
// both agree, else a description of the difference. Each command family registers its kinds in
// tests/differential/ops_<family>.hpp:
//
//   inline void register_hash_ops(OpRegistry& r) {
//     r.add("hset", [](Gen& g, Pair& p) {
//       std::string key = g.key("h"), f = g.field(), v = g.value();
//       return p.compare(cmd::hset{.key = key, .fields = {{f, v}}});
//     });
//     r.add("hgetall", [](Gen& g, Pair& p) {
//       std::string key = g.key("h");
//       return p.compare(cmd::hgetall{key}, sorted);   // unordered replies: compare sorted
//     });
//   }
//
// Replies are compared with == and printed with to_text (ranges, optionals, pairs, tuples,
// numbers, strings, and structs described with BOOST_DESCRIBE_STRUCT). Errors are compared by
// error code (the server text may differ in wording). The runner (differential_test.cpp) plays
// seeded random sequences and, on a difference, prints the seed and the shortest failing
// sequence it finds by removing operations.
#pragma once

#include "support/backends.hpp"

#include <boost/describe.hpp>
#include <boost/mp11/algorithm.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit::test {

// ---- printing -----------------------------------------------------------------------------

inline void print_bytes(std::ostream& os, std::string_view s) {
  os << '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\')
      os << '\\' << c;
    else if (c >= 0x20 && c < 0x7f)
      os << c;
    else
      os << "\\x" << "0123456789abcdef"[c >> 4] << "0123456789abcdef"[c & 15];
  }
  os << '"';
}

template <class T>
void print(std::ostream& os, T const& v);

template <class T>
void print(std::ostream& os, T const& v) {
  if constexpr (std::is_convertible_v<T const&, std::string_view>) {
    print_bytes(os, std::string_view(v));
  } else if constexpr (std::is_same_v<T, bool>) {
    os << (v ? "true" : "false");
  } else if constexpr (std::is_arithmetic_v<T>) {
    os << v;
  } else if constexpr (requires { v.has_value(); *v; }) {
    if (v.has_value())
      print(os, *v);
    else
      os << "nil";
  } else if constexpr (requires { std::tuple_size<T>::value; }) {
    os << '(';
    std::apply(
        [&](auto const&... e) {
          bool first = true;
          ((os << (first ? "" : ", "), print(os, e), first = false), ...);
        },
        v);
    os << ')';
  } else if constexpr (std::ranges::range<T const>) {
    os << '[';
    bool first = true;
    for (auto const& e : v) {
      if (!first) os << ", ";
      print(os, e);
      first = false;
    }
    os << ']';
  } else if constexpr (boost::describe::has_describe_members<T>::value) {
    os << '{';
    bool first = true;
    boost::mp11::mp_for_each<
        boost::describe::describe_members<T, boost::describe::mod_any_access>>([&](auto d) {
      os << (first ? "" : ", ") << d.name << ": ";
      print(os, v.*d.pointer);
      first = false;
    });
    os << '}';
  } else if constexpr (requires { os << v; }) {
    os << v;
  } else {
    os << "<unprintable>";
  }
}

template <class T>
std::string to_text(T const& v) {
  std::ostringstream os;
  print(os, v);
  return os.str();
}

/// The command as the server would log it: SET "k" "v" PX "100".
template <class X>
std::string describe_command(X const& x) {
  std::string out;
  auto one = [&](auto const& c) {
    if (!out.empty()) out += "; ";
    bool first = true;
    for (auto const& a : argv(c)) {
      out += first ? a : " " + to_text(a);
      first = false;
    }
  };
  out += is_transaction_v<X> ? "MULTI; " : "";
  for_each_command(x, one);
  out += is_transaction_v<X> ? "; EXEC" : "";
  return out;
}

// ---- normalizers ----------------------------------------------------------------------------

/// Compares as it is.
struct Same {
  template <class T>
  T const& operator()(T const& v) const {
    return v;
  }
};

/// Unordered replies (SMEMBERS, SINTER, HGETALL into a vector, ...): sorted before comparing.
struct Sorted {
  template <class T>
  T operator()(T v) const {
    if constexpr (requires { v.has_value(); *v; }) {
      if (v) *v = (*this)(std::move(*v));
      return v;
    } else {
      std::sort(v.begin(), v.end());
      return v;
    }
  }
};
inline constexpr Sorted sorted{};

// ---- random inputs --------------------------------------------------------------------------

/// Deterministic random inputs. Keys come from small pools so that operations meet each other's
/// keys (and types: a pool shared by all families gives WRONGTYPE cases).
class Gen {
 public:
  explicit Gen(std::uint64_t seed) : rng_(seed) {}

  std::mt19937_64& rng() noexcept { return rng_; }
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  std::int64_t between(std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(below(static_cast<std::uint64_t>(hi - lo + 1)));
  }
  bool coin(unsigned percent = 50) { return below(100) < percent; }
  template <class T>
  T const& pick(std::vector<T> const& v) {
    return v[below(v.size())];
  }

  /// A key of family `prefix` ("s" strings, "h" hashes, ...): mostly from its own pool of 8,
  /// sometimes from a shared pool (other types: WRONGTYPE), sometimes with glob-special bytes.
  std::string key(std::string_view prefix) {
    static std::vector<std::string> const specials = {"*", "?", "[a]", "\\", "x*y", "[^z]",
                                                      "a]b", std::string("n\0ul", 4)};
    auto const r = below(100);
    if (r < 8) return "shared:" + std::to_string(below(4));
    if (r < 14) return std::string(prefix) + ":" + pick(specials);
    return std::string(prefix) + ":" + std::to_string(below(8));
  }

  /// A field / member name from a pool of 12.
  std::string field() {
    static std::vector<std::string> const names = {"a", "b", "c", "name", "status", "x y",
                                                   "*", "?", "[", "\\", "", std::string("\0", 1)};
    return pick(names);
  }

  /// A value: short text, an integer as text, or binary bytes with NULs.
  std::string value() {
    switch (below(4)) {
      case 0: return std::to_string(between(-1000, 1000));
      case 1: {
        std::string s(below(12), '\0');
        for (auto& c : s) c = static_cast<char>(below(256));
        return s;
      }
      case 2: return "";
      default: return "v" + std::to_string(below(50));
    }
  }

  /// An integer, mostly small, sometimes at the edges of 64 bits.
  std::int64_t integer() {
    switch (below(10)) {
      case 0: return std::numeric_limits<std::int64_t>::max() - between(0, 2);
      case 1: return std::numeric_limits<std::int64_t>::min() + between(0, 2);
      default: return between(-100, 100);
    }
  }

  /// A score: small integers (ties), fractions, and now and then an infinity.
  double score() {
    switch (below(10)) {
      case 0: return below(2) ? std::numeric_limits<double>::infinity()
                              : -std::numeric_limits<double>::infinity();
      case 1: return static_cast<double>(between(-1000, 1000)) / 8.0;
      default: return static_cast<double>(between(-5, 5));
    }
  }

  /// A glob pattern over keys of family `prefix`, with Redis's special forms.
  std::string pattern(std::string_view prefix) {
    static std::vector<std::string> const tails = {
        "*", "?", "[0-3]", "[^0-3]", "[3-0]", "\\*", "*]*", "[", "[a", "\\", "**", "*?", "[\\]]",
        "1", "*\\?*"};
    if (coin(10)) return pick(tails);
    return std::string(prefix) + ":" + pick(tails);
  }

 private:
  std::mt19937_64 rng_;
};

// ---- running on both ----------------------------------------------------------------------

/// The two backends compared: MemoryBackend and RedisBackend on a real server.
struct Pair {
  BackendFixture<MemoryBackend>& mem;
  BackendFixture<RedisBackend>& redis;

  /// Runs `x` on both; "" when both give the same error code and the same normalized reply.
  template <class X, class Norm = Same>
  std::string compare(X const& x, Norm norm = {}) {
    auto [ec1, r1] = mem.exec(x);
    auto [ec2, r2] = redis.exec(x);
    if (ec1 != ec2)
      return describe_command(x) + "\n    memory: error " + ec1.message() + "\n    redis:  " +
             (ec2 ? "error " + ec2.message() : to_text(norm(r2)));
    if (ec1) return {};
    auto const n1 = norm(r1);
    auto const n2 = norm(r2);
    if (n1 == n2) return {};
    return describe_command(x) + "\n    memory: " + to_text(n1) + "\n    redis:  " + to_text(n2);
  }
};

using OpFn = std::function<std::string(Gen&, Pair&)>;

struct OpRegistry {
  std::vector<std::pair<std::string, OpFn>> ops;
  void add(std::string name, OpFn fn) { ops.emplace_back(std::move(name), std::move(fn)); }
};


}  // namespace rediskit::test
