// rediskit::resp3::Parser: implementation (included by parser.hpp).
#pragma once

#include <rediskit/resp3/detail/numbers.hpp>
#include <rediskit/resp3/parser.hpp>

#include <array>
#include <cstdint>
#include <cstring>

namespace rediskit::resp3 {

namespace detail {

/// Type byte -> node type, or no_type for a byte that is no RESP type marker (the
/// streamed-string chunk ';' and end '.' markers included: streaming is not supported).
inline constexpr std::uint8_t no_type = 0xff;
inline constexpr std::array<std::uint8_t, 256> type_table = [] {
  std::array<std::uint8_t, 256> t{};
  t.fill(no_type);
  auto set = [&t](char c, Type type) {
    t[static_cast<unsigned char>(c)] = static_cast<std::uint8_t>(type);
  };
  set('+', Type::simple_string);
  set('-', Type::simple_error);
  set(':', Type::number);
  set('$', Type::blob_string);
  set('*', Type::array);
  set(',', Type::doublean);
  set('#', Type::boolean);
  set('(', Type::big_number);
  set('!', Type::blob_error);
  set('=', Type::verbatim_string);
  set('%', Type::map);
  set('~', Type::set);
  set('>', Type::push);
  set('_', Type::null);
  set('|', Type::attribute);
  return t;
}();

constexpr bool has_length_line(Type t) noexcept {
  return is_aggregate(t) || t == Type::blob_string || t == Type::blob_error ||
         t == Type::verbatim_string;
}

/// Rejects a line whose CRLF has not arrived yet when its first bytes already show it can
/// never be valid. Returns the error the complete line would give, or Error{} (0) if the
/// bytes so far may still become valid: waiting for the rest then gives the same verdict.
constexpr Error check_partial_line(Type t, std::string_view partial) noexcept {
  if (has_length_line(t))
    return may_start_integer_field(partial) ? Error{} : Error::resp3_invalid_length;
  switch (t) {
    case Type::number:
      return may_start_integer_field(partial) ? Error{} : Error::resp3_invalid_number;
    case Type::big_number:
      for (std::size_t i = 0; i < partial.size(); ++i)
        if (!is_digit(partial[i]) && !(i == 0 && (partial[0] == '-' || partial[0] == '+')))
          return Error::resp3_invalid_number;
      return Error{};
    case Type::boolean:
      if (partial.size() > 1 || (partial.size() == 1 && partial[0] != 't' && partial[0] != 'f'))
        return Error::resp3_invalid_boolean;
      return Error{};
    case Type::null:
      return partial.empty() ? Error{} : Error::resp3_missing_crlf;
    default:
      return Error{};
  }
}

}  // namespace detail

inline Parser::Parser(ParserConfig cfg) : cfg_(cfg), stack_(cfg.max_depth) {}

inline void Parser::reset() noexcept {
  depth_ = 0;
  attributes_ = 0;
  done_ = false;
  error_ = Error{};
}

inline std::optional<NodeView> Parser::fail(Error e, std::size_t pos, std::size_t& consumed,
                                            boost::system::error_code& ec) noexcept {
  error_ = e;
  consumed = pos;
  ec = make_error_code(e);
  return std::nullopt;
}

inline std::optional<NodeView> Parser::consume(std::string_view data, std::size_t& consumed,
                                               boost::system::error_code& ec) noexcept {
  done_ = false;
  consumed = 0;
  if (error_ != Error{}) {
    ec = make_error_code(error_);
    return std::nullopt;
  }
  ec.clear();

  char const* const base = data.data();
  std::size_t const size = data.size();
  std::size_t pos = 0;  // start of the node being parsed

  // One iteration per node; skipped (attribute) nodes loop, the first other node returns.
  for (;;) {
    if (pos == size) {
      consumed = pos;
      return std::nullopt;
    }
    char const* const p = base + pos;
    std::size_t const avail = size - pos;

    std::uint8_t const type_code = detail::type_table[static_cast<unsigned char>(*p)];
    if (type_code == detail::no_type) return fail(Error::resp3_invalid_type, pos, consumed, ec);
    auto const type = static_cast<Type>(type_code);

    // The line: type byte, content, CRLF. Look for its CR no further than the longest line.
    std::size_t const window = avail <= cfg_.max_line_length ? avail : cfg_.max_line_length + 1;
    auto const* const cr = static_cast<char const*>(std::memchr(p, '\r', window));
    if (cr == nullptr) {
      if (Error const e = detail::check_partial_line(type, {p + 1, window - 1}); e != Error{})
        return fail(e, pos, consumed, ec);
      if (avail > cfg_.max_line_length) return fail(Error::resp3_line_too_long, pos, consumed, ec);
      consumed = pos;
      return std::nullopt;
    }
    auto const line_length = static_cast<std::size_t>(cr - p);  // type byte + content
    std::string_view const line(p + 1, line_length - 1);
    if (line_length + 1 >= avail || cr[1] != '\n') {
      // Judge the content first, as when the bytes arrive one by one and the content is
      // checked before its CR is seen: the verdict must not depend on how the input is split.
      if (Error const e = detail::check_partial_line(type, line); e != Error{})
        return fail(e, pos, consumed, ec);
      if (line_length + 1 < avail) return fail(Error::resp3_missing_crlf, pos, consumed, ec);
      consumed = pos;  // its LF has not arrived
      return std::nullopt;
    }

    std::size_t next = pos + line_length + 2;  // just past this node, so far
    NodeView node{type, 0, depth_, line};
    std::size_t elements = 0;  // children that follow (aggregates)

    switch (type) {
      case Type::simple_string:
      case Type::simple_error:
        break;
      case Type::number:
        if (!detail::is_int64(line)) return fail(Error::resp3_invalid_number, pos, consumed, ec);
        break;
      case Type::doublean:
        if (!detail::is_resp3_double(line))
          return fail(Error::resp3_invalid_number, pos, consumed, ec);
        break;
      case Type::big_number:
        if (!detail::is_big_number(line))
          return fail(Error::resp3_invalid_number, pos, consumed, ec);
        break;
      case Type::boolean:
        if (line.size() != 1 || (line[0] != 't' && line[0] != 'f'))
          return fail(Error::resp3_invalid_boolean, pos, consumed, ec);
        break;
      case Type::null:
        if (!line.empty()) return fail(Error::resp3_missing_crlf, pos, consumed, ec);
        break;
      case Type::blob_string:
      case Type::blob_error:
      case Type::verbatim_string: {
        detail::Length const len = detail::parse_length(line);
        if (len.kind == detail::LengthKind::streamed)
          return fail(Error::resp3_streamed_not_supported, pos, consumed, ec);
        if (len.kind == detail::LengthKind::null && type == Type::blob_string) {
          node.type = Type::null;  // RESP2 "$-1"
          node.value = {};
          break;
        }
        if (len.kind != detail::LengthKind::value)
          return fail(Error::resp3_invalid_length, pos, consumed, ec);
        // Judge the length before waiting for the payload: a hostile length never makes the
        // caller buffer (or allocate) more than max_bulk_size.
        if (len.value > cfg_.max_bulk_size)
          return fail(Error::resp3_bulk_too_large, pos, consumed, ec);
        auto const n = static_cast<std::size_t>(len.value);
        std::size_t const have = size - next;
        if (have < n || have - n < 2) {
          if (have > n && base[next + n] != '\r')
            return fail(Error::resp3_missing_crlf, pos, consumed, ec);
          consumed = pos;
          return std::nullopt;
        }
        if (base[next + n] != '\r' || base[next + n + 1] != '\n')
          return fail(Error::resp3_missing_crlf, pos, consumed, ec);
        node.value = {base + next, n};
        next += n + 2;
        break;
      }
      case Type::array:
      case Type::push:
      case Type::set:
      case Type::map:
      case Type::attribute: {
        detail::Length const len = detail::parse_length(line);
        if (len.kind == detail::LengthKind::streamed)
          return fail(Error::resp3_streamed_not_supported, pos, consumed, ec);
        node.value = {};
        if (len.kind == detail::LengthKind::null && type == Type::array) {
          node.type = Type::null;  // RESP2 "*-1"
          break;
        }
        if (len.kind != detail::LengthKind::value)
          return fail(Error::resp3_invalid_length, pos, consumed, ec);
        std::size_t const multiplicity = element_multiplicity(type);
        if (len.value > SIZE_MAX / multiplicity)
          return fail(Error::resp3_invalid_length, pos, consumed, ec);
        node.size = static_cast<std::size_t>(len.value);
        elements = node.size * multiplicity;
        break;
      }
    }

    // Bookkeeping. An attribute is no element of its parent; everything inside one is skipped.
    bool const is_attribute = type == Type::attribute;
    bool const skip = is_attribute || attributes_ != 0;
    if (elements != 0 && depth_ == cfg_.max_depth)
      return fail(Error::resp3_nesting_too_deep, pos, consumed, ec);
    if (!is_attribute && depth_ != 0) --stack_[depth_ - 1].remaining;
    if (elements != 0) {
      stack_[depth_++] = Frame{elements, is_attribute};
      if (is_attribute) ++attributes_;
    }
    while (depth_ != 0 && stack_[depth_ - 1].remaining == 0) {
      if (stack_[depth_ - 1].attribute) --attributes_;
      --depth_;
    }
    pos = next;
    if (skip) continue;

    consumed = pos;
    done_ = depth_ == 0;
    return node;
  }
}

}  // namespace rediskit::resp3
