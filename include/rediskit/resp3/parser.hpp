// rediskit::resp3::Parser: the incremental RESP3 pull parser.
#pragma once

#include <rediskit/error.hpp>
#include <rediskit/resp3/node.hpp>

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

namespace rediskit::resp3 {

/// Limits that protect the parser (and whatever adapts its nodes) from a broken or hostile
/// server: no length field can make rediskit wait for, or allocate, more than these.
struct ParserConfig {
  /// Longest accepted blob ('$', '!', '='). A larger one fails with Error::resp3_bulk_too_large
  /// as soon as its length line arrives, before any of its payload is awaited.
  std::size_t max_bulk_size = 512u * 1024 * 1024;
  /// Deepest accepted nesting of aggregates (attributes included): a node may sit at depth
  /// max_depth, an aggregate that would open depth max_depth + 1 fails with
  /// Error::resp3_nesting_too_deep. The parser reserves this many stack entries when built.
  std::size_t max_depth = 64;
  /// Longest accepted line (type byte and content, CRLF excluded) of simple strings, errors,
  /// numbers and length fields: a longer one fails with Error::resp3_line_too_long.
  std::size_t max_line_length = 64 * 1024;
};

/// Turns the bytes of a RESP3 (or RESP2) reply stream into nodes, one at a time: the reading
/// half of the Connection that every service's Redis client (seed 000) runs on.
///
/// The parser does no I/O and owns no input: the caller (the Connection, a test, a fuzzer)
/// keeps a buffer, hands its not-yet-consumed part to consume(), and drops the consumed bytes
/// once it is done with the returned node, whose value views that buffer. A reply arrives as
/// its nodes in pre-order (see node.hpp); done() says when its last node has been returned.
/// Attributes ('|') are checked, consumed and never delivered. consume() allocates nothing,
/// throws nothing and calls nothing virtual: the only allocation is the nesting stack, reserved
/// when the parser is built. Parsing is a pure function of the bytes, so any split of the input
/// into pieces yields the same nodes (and the same error). Not thread-safe.
class Parser {
 public:
  /// Throws std::bad_alloc (or std::length_error for an absurd max_depth) only.
  explicit Parser(ParserConfig cfg = {});

  /// Parses the next node from `data`, the caller's not-yet-consumed input.
  ///
  /// Returns the node once it has arrived completely: its value views `data`. Returns
  /// std::nullopt when more input is needed (ec clear), or on a protocol error (ec set to an
  /// rediskit::Error resp3_* code; the stream cannot be resynchronised, so every later call
  /// fails the same way until reset()).
  /// `consumed` is set to the number of bytes of `data` this call used up, also when it returns
  /// std::nullopt (after skipping an attribute, say). The caller drops them from its buffer once
  /// it no longer needs the returned node's value, and calls again with the rest plus whatever
  /// arrived since. A returned node always consumes at least 3 bytes.
  std::optional<NodeView> consume(std::string_view data, std::size_t& consumed,
                                  boost::system::error_code& ec) noexcept;

  /// True right after the last node of a complete top-level reply was returned (the root itself
  /// for a scalar or an empty aggregate). Cleared by the next call to consume().
  bool done() const noexcept { return done_; }

  /// Forgets any partial reply and any protocol error: the next byte starts a new reply.
  void reset() noexcept;

  /// Current nesting: the number of aggregates (attributes included) opened and not yet
  /// complete. 0 between replies.
  std::size_t depth() const noexcept { return depth_; }

  ParserConfig const& config() const noexcept { return cfg_; }

 private:
  struct Frame {
    std::size_t remaining;  // elements still expected (2 per map/attribute pair)
    bool attribute;         // its elements are skipped, and it is no element of its parent
  };

  std::optional<NodeView> fail(Error e, std::size_t pos, std::size_t& consumed,
                               boost::system::error_code& ec) noexcept;

  ParserConfig cfg_;
  std::vector<Frame> stack_;    // cfg_.max_depth entries, sized once in the constructor
  std::size_t depth_ = 0;       // frames in use
  std::size_t attributes_ = 0;  // attribute frames among them
  bool done_ = false;
  Error error_{};  // sticky protocol error; Error{} (0) when none
};

}  // namespace rediskit::resp3

#include <rediskit/resp3/detail/parser_impl.hpp>
