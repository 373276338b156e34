// libFuzzer target: rediskit::resp3::Parser and the adapters on arbitrary bytes.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       tests/fuzz/resp3_parser_fuzzer.cpp -o resp3_parser_fuzzer
//   cp -r tests/fuzz/corpus/resp3_parser /tmp/corpus && ./resp3_parser_fuzzer /tmp/corpus
//
// The input is fed whole, in two pieces, byte by byte (short inputs) and in pseudo-random
// chunks derived from the data. Checked: no crash or sanitizer report; consumed never exceeds
// the input; every returned node consumed bytes and views them; depth stays within max_depth;
// the loop always progresses; and every way of feeding yields the same nodes and the same error.
// The nodes also go through ResponseAdapter<Tree> (which must reproduce them exactly) and a few
// typed adapters (std::vector<std::string> and others), one per reply as a connection does.
// Small limits make the too-large / too-deep / too-long paths reachable.
#include <rediskit/resp3/adapt.hpp>
#include <rediskit/resp3/parser.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace {

using boost::system::error_code;
using namespace rediskit::resp3;

constexpr ParserConfig fuzz_config{.max_bulk_size = 64, .max_depth = 8, .max_line_length = 32};

void check(bool ok) {
  if (!ok) std::abort();
}

// Typed targets a reply is also adapted into. Adapter errors are expected on random input;
// what matters is that they neither crash nor allocate what a length claims.
struct TypedTargets {
  std::vector<std::string> strings;
  std::map<std::string, std::vector<std::optional<std::int64_t>>> map;
  Result<std::set<std::vector<std::string>>> sets;
  std::tuple<std::string, double, bool> tuple;
};

template <class R>
void feed_typed(R& target, std::size_t reply_nodes_begin, Tree const& nodes) {
  ResponseAdapter<R> adapter(target);
  for (std::size_t i = reply_nodes_begin; i < nodes.size(); ++i) {
    Node const& n = nodes[i];
    error_code ec;
    adapter.on_node(0, NodeView{n.type, n.size, n.depth, n.value}, ec);
    if (ec) return;  // the caller stops feeding this reply
  }
}

struct Run {
  Tree nodes;
  std::vector<std::size_t> reply_ends;
  error_code ec;
  std::size_t depth_at_end = 0;
};

// Feeds `data` in chunks ending at the positions `cuts` (ascending, the last one = size).
Run feed(std::string_view data, std::vector<std::size_t> const& cuts) {
  Parser parser(fuzz_config);
  Run run;
  Tree adapted;
  ResponseAdapter<Tree> tree_adapter(adapted);
  std::string buffer;
  std::size_t fed = 0;
  std::size_t calls = 0;
  std::size_t reply = 0;
  std::size_t reply_begin = 0;  // index in run.nodes of the current reply's root
  for (std::size_t const cut : cuts) {
    buffer.append(data.substr(fed, cut - fed));
    fed = cut;
    for (;;) {
      // Each call either returns a node (>= 3 bytes), or needs the next chunk.
      check(++calls <= data.size() + cuts.size() + 1);
      std::size_t consumed = 0;
      error_code ec;
      auto const node = parser.consume(buffer, consumed, ec);
      check(consumed <= buffer.size());
      check(parser.depth() <= fuzz_config.max_depth);
      if (ec) {
        check(!node);
        // Sticky: the stream is unusable.
        std::size_t again = 0;
        error_code ec2;
        check(!parser.consume(buffer, again, ec2) && ec2 == ec && again == 0);
        run.ec = ec;
        run.depth_at_end = parser.depth();
        check(adapted == run.nodes);
        return run;
      }
      if (node) {
        check(consumed >= 3);
        check(node->depth <= fuzz_config.max_depth);
        check(node->value.empty() ||
              (node->value.data() >= buffer.data() &&
               node->value.data() + node->value.size() <= buffer.data() + consumed));
        check(!is_aggregate(node->type) || node->value.empty());
        check(node->type != Type::attribute);
        run.nodes.push_back(Node{node->type, node->size, node->depth, std::string(node->value)});
        error_code aec;
        tree_adapter.on_node(reply, *node, aec);
        check(!aec);  // a Tree takes anything
        if (parser.done()) {
          check(parser.depth() == 0);
          run.reply_ends.push_back(run.nodes.size());
          TypedTargets typed;
          feed_typed(typed.strings, reply_begin, run.nodes);
          feed_typed(typed.map, reply_begin, run.nodes);
          feed_typed(typed.sets, reply_begin, run.nodes);
          feed_typed(typed.tuple, reply_begin, run.nodes);
          reply_begin = run.nodes.size();
          ++reply;
        }
      } else {
        check(!parser.done());
      }
      buffer.erase(0, consumed);
      if (!node) break;
    }
  }
  run.depth_at_end = parser.depth();
  check(adapted == run.nodes);
  return run;
}

bool same(Run const& a, Run const& b) {
  return a.nodes == b.nodes && a.reply_ends == b.reply_ends && a.ec == b.ec &&
         (a.ec || a.depth_at_end == b.depth_at_end);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::string_view const input(reinterpret_cast<char const*>(data), size);
  if (size == 0) return 0;

  Run const whole = feed(input, {size});

  // Two pieces, split where the data says.
  std::size_t const split = (data[0] * 131u + data[size - 1]) % size;
  if (split != 0) check(same(whole, feed(input, {split, size})));

  // Byte by byte (short inputs: each call may re-scan a line of up to max_line_length).
  if (size <= 1024) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i <= size; ++i)
      cuts.push_back(i);
    check(same(whole, feed(input, cuts)));
  }

  // Pseudo-random chunks seeded from the data.
  std::uint32_t state = 2166136261u;
  for (std::size_t i = 0; i < size; ++i)
    state = (state ^ data[i]) * 16777619u;
  std::vector<std::size_t> cuts;
  for (std::size_t pos = 0; pos < size;) {
    state = state * 1103515245u + 12345u;
    pos += 1 + (state >> 16) % 16;
    cuts.push_back(pos < size ? pos : size);
  }
  check(same(whole, feed(input, cuts)));

  // parse_all agrees with the parser about protocol errors.
  Tree all;
  error_code const ec = parse_all(input, all, fuzz_config);
  if (whole.ec) check(ec == whole.ec);
  if (!ec) check(all == whole.nodes);
  return 0;
}
