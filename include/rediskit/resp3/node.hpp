// rediskit::resp3: the vocabulary of the RESP3 wire protocol, types and nodes.
//
// A reply is a tree; the parser delivers it flattened in pre-order as a sequence of nodes. An
// aggregate node (array, map, set, push) carries its element count and is followed by its
// elements at depth + 1. Attributes ('|') are consumed by the parser and never delivered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rediskit::resp3 {

/// RESP3 data types (and the RESP2 ones, which are a subset).
enum class Type : std::uint8_t {
  array,            ///< '*'
  push,             ///< '>'  out-of-band server push (pub/sub messages, invalidations)
  set,              ///< '~'
  map,              ///< '%'  size counts key/value pairs; 2 * size elements follow
  attribute,        ///< '|'  never delivered by the parser
  simple_string,    ///< '+'
  simple_error,     ///< '-'
  number,           ///< ':'
  doublean,         ///< ','  value holds the text: "1.5", "inf", "-inf", "nan"
  boolean,          ///< '#'  value is "t" or "f"
  big_number,       ///< '('
  null,             ///< '_'  and RESP2's "$-1" / "*-1"
  blob_string,      ///< '$'
  blob_error,       ///< '!'
  verbatim_string,  ///< '='  value holds "txt:..." as sent
};

constexpr bool is_aggregate(Type t) noexcept {
  return t == Type::array || t == Type::push || t == Type::set || t == Type::map ||
         t == Type::attribute;
}

constexpr bool is_error(Type t) noexcept {
  return t == Type::simple_error || t == Type::blob_error;
}

/// Elements per unit of size: 2 for maps and attributes (key + value), else 1.
constexpr std::size_t element_multiplicity(Type t) noexcept {
  return (t == Type::map || t == Type::attribute) ? 2 : 1;
}

constexpr std::string_view to_string(Type t) noexcept {
  switch (t) {
    case Type::array: return "array";
    case Type::push: return "push";
    case Type::set: return "set";
    case Type::map: return "map";
    case Type::attribute: return "attribute";
    case Type::simple_string: return "simple_string";
    case Type::simple_error: return "simple_error";
    case Type::number: return "number";
    case Type::doublean: return "double";
    case Type::boolean: return "boolean";
    case Type::big_number: return "big_number";
    case Type::null: return "null";
    case Type::blob_string: return "blob_string";
    case Type::blob_error: return "blob_error";
    case Type::verbatim_string: return "verbatim_string";
  }
  return "unknown";
}

/// One node of a reply as the parser delivers it. `value` views the parser's input buffer and
/// is valid only until the caller discards those bytes: adapters copy what they keep.
struct NodeView {
  Type type{Type::null};
  std::size_t size{0};   ///< aggregates: element count as on the wire (pairs for map); else 0
  std::size_t depth{0};  ///< 0 for the root of a reply
  std::string_view value{};  ///< scalars: payload without type byte and CRLF; aggregates: empty
};

/// An owning node, for generic replies whose shape is not known at compile time.
struct Node {
  Type type{Type::null};
  std::size_t size{0};
  std::size_t depth{0};
  std::string value{};

  friend bool operator==(Node const&, Node const&) = default;
};

/// A whole reply (or several) in pre-order: the generic response type.
using Tree = std::vector<Node>;

}  // namespace rediskit::resp3
