// json_bench: decoding the services' JSON values into their structs, three ways, in one process:
//   rediskit-direct    JsonCodec::decode: the text straight into the members (json_reader.hpp)
//   rediskit-document  detail::json::decode_document: through a boost::json::value, as
//                      JsonCodec did before the direct reader (and still does for other types)
//   boost-value_to     boost::json::value_to<T>(boost::json::parse(text)): Boost.JSON's own
//                      conversion of described structs, what a user would write without rediskit
// on three values: seed 004's message (ChatMessage, as MessageStore stores it), a directory
// profile (DirectoryProfile) and seed 001's user profile (UserProfile). No server.
// One line per value and way, e.g.
//   system=rediskit-direct workload=chat_message ns_per_decode=... min=... max=... runs=5
// (the median of --repeat runs of --seconds each).
//
// Usage: json_bench [--seconds S] [--repeat R]
//   bash benchmarks/run_json.sh

#include "bench_util.hpp"

#include <rediskit/codec/json_codec.hpp>
#include <rediskit/services/messaging.hpp>
#include <rediskit/services/user_cache.hpp>
#include <rediskit/services/user_directory.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value_to.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace rediskit;

namespace {

struct Options : bench_util::CommonOptions {};

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: json_bench [--seconds S] [--repeat R]\n");
  std::exit(2);
}

template <class T>
std::string encoded(T const& v) {
  std::string out;
  JsonCodec{}.encode(v, out);
  return out;
}

// Nanoseconds per call of `decode` (median of the runs), with the min and max of the runs.
template <class Decode>
void measure(Options const& o, char const* system, char const* workload, Decode decode) {
  std::vector<double> runs;
  for (int r = 0; r < o.repeat; ++r) {
    auto const start = std::chrono::steady_clock::now();
    auto const end = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(o.seconds));
    long n = 0;
    auto now = start;
    while (now < end) {
      for (int i = 0; i < 1000; ++i)
        if (!decode()) {
          std::fprintf(stderr, "json_bench: %s failed to decode %s\n", system, workload);
          std::exit(1);
        }
      n += 1000;
      now = std::chrono::steady_clock::now();
    }
    runs.push_back(std::chrono::duration<double, std::nano>(now - start).count() /
                   static_cast<double>(n));
  }
  std::sort(runs.begin(), runs.end());
  std::printf("system=%s workload=%s ns_per_decode=%.0f min=%.0f max=%.0f runs=%zu\n", system,
              workload, runs[runs.size() / 2], runs.front(), runs.back(), runs.size());
  std::fflush(stdout);
}

template <class T>
void three_ways(Options const& o, char const* workload, T const& value) {
  std::string const text = encoded(value);
  measure(o, "rediskit-direct", workload, [&] {
    T v{};
    return !JsonCodec{}.decode(text, v, nullptr) && v == value;
  });
  measure(o, "rediskit-document", workload, [&] {
    T v{};
    return !detail::json::decode_document(text, v, nullptr) && v == value;
  });
  measure(o, "boost-value_to", workload, [&] {
    boost::system::error_code ec;
    auto const jv = boost::json::parse(text, ec);
    if (ec) return false;
    auto r = boost::json::try_value_to<T>(jv);
    return r.has_value() && *r == value;
  });
}

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  bench_util::parse_pairs(
      argc, argv, [&](std::string const& a, std::string const& v) { return o.take(a, v); }, usage);
  if (o.seconds <= 0 || o.repeat < 1) usage();

  ChatMessage m;  // seed 004's msg_123, with a chat-sized content
  m.id = "msg_123";
  m.conversationId = "conv_456";
  m.sender = MessageSender("patient", 5, "MOLOWA", "ESSONGA");
  m.content = "Bonjour docteur, voici ma question au sujet de l'ordonnance numéro 15.";
  m.timestamp = "2025-01-25T10:00:00.000Z";
  three_ways(o, "chat_message", m);

  three_ways(o, "directory_profile",
             DirectoryProfile("Lefèvre", "Hélène", "helene.lefevre@chu.fr", "Cardiologie",
                              "+237 6 12 34 56 78"));

  // (The id is the key's, not in the JSON.)
  three_ways(o, "user_profile",
             UserProfile("", "Zoé Mballa", "https://cdn.example/a/u1.png", "M-2024-0042",
                         "Ministère de la Santé", "F", 1736862000000));
  return 0;
} catch (std::exception const& e) {
  std::fprintf(stderr, "json_bench: %s\n", e.what());
  return 1;
}
