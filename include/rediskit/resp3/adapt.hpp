// rediskit::resp3 adapters: replies straight into C++ types, with no intermediate tree.
//
// What a reply can go into (each one composes with the others, at any depth):
//
//   std::string          simple / blob / verbatim string (its "txt:" format stripped), big
//                        number, number and double as their text
//   integral types       number; a string or big number holding an integer (strict
//                        std::from_chars over the whole text). Error::integer_out_of_range if it
//                        does not fit, Error::not_a_number if it is no integer
//   bool                 boolean; number 0 or 1 (other numbers: Error::integer_out_of_range)
//   double, float, long double
//                        double (inf, -inf, nan included); number; a string holding a double
//                        ("1.5", "inf", "+inf", "-inf", "nan")
//   std::optional<T>     null -> std::nullopt, anything else into T
//   Result<T>            an error reply at its root -> ServerError; anything else into T
//   std::vector<T>, std::deque<T>, std::list<T>, std::set<T>, std::unordered_set<T>
//                        array, set or push; a map flattens to k, v, k, v
//   std::map<K, V>, std::unordered_map<K, V>, std::vector<std::pair<K, V>>
//                        map; an array with an even count (RESP2 k, v, k, v: an odd count is
//                        Error::incompatible_size); an array of [k, v] pairs (XRANGE)
//   std::pair, std::tuple
//                        an aggregate with exactly that many elements (Error::incompatible_size)
//   Tree                 every node, appended, as an owning Node (depth relative to the value)
//   Ignore               anything; a server error is still reported
//   a user type U        any scalar reply, through `void rediskit_from_bulk(U&, std::string_view,
//                        boost::system::error_code&)` declared in U's namespace (found by ADL)
//
// Errors: a type that does not fit the target -> Error::unexpected_reply_type; null into a target
// that is not std::optional -> Error::unexpected_null; a server error (simple or blob error)
// reaching a target other than Result -> the code of server_error_code(its text), e.g.
// Error::wrong_type for WRONGTYPE (the text itself goes to Diagnostics, never to the code).
// Containers are cleared when their reply starts; a Tree is appended to. After an error the
// target holds what was adapted up to it.
#pragma once

#include <rediskit/error.hpp>
#include <rediskit/resp3/detail/adapters.hpp>
#include <rediskit/resp3/node.hpp>
#include <rediskit/resp3/parser.hpp>

#include <boost/assert/source_location.hpp>
#include <boost/mp11/algorithm.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>
#include <boost/throw_exception.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace rediskit::resp3 {

/// A response (or a tuple element) that discards its replies. Server errors are still
/// reported, at any depth; everything else, pushes included, is dropped.
struct Ignore {
  friend constexpr bool operator==(Ignore, Ignore) noexcept { return true; }
};
inline constexpr Ignore ignore{};

/// A server error reply kept as a value (in Result<T>), so that one failing command of a
/// pipeline or transaction does not hide the results of the others.
struct ServerError {
  Type type{Type::simple_error};  ///< simple_error or blob_error
  std::string message;            ///< the server's text, e.g. "WRONGTYPE Operation against ..."

  /// The rediskit::Error this text maps to (Error::wrong_type for "WRONGTYPE ...", ...).
  Error code() const noexcept { return server_error_code(message); }

  friend bool operator==(ServerError const&, ServerError const&) = default;
};

/// Result<T>::value() on a ServerError throws rediskit::Exception with the error's code (not
/// its text, which may quote user data). Found by ADL from boost::system::result.
[[noreturn]] inline void throw_exception_from_error(ServerError const& e,
                                                    boost::source_location const& loc) {
  boost::throw_with_location(Exception(make_error_code(e.code())), loc);
}

/// Success-or-server-error, per reply (or per element).
template <class T>
using Result = boost::system::result<T, ServerError>;

/// ResponseAdapter::expected_replies of a response that takes any number of replies.
inline constexpr std::size_t any_count = static_cast<std::size_t>(-1);

/// A response of any number of replies of one type, one element per reply, in order: the
/// answer to a request of N similar commands (100 HGETALL of user profiles in one round trip).
/// It is a std::vector<T>; it is cleared when the first reply arrives.
template <class T>
class Replies : public std::vector<T> {
 public:
  using std::vector<T>::vector;
};

namespace detail {

// One reply into a response that is not a tuple: expects exactly one.
template <class Response>
class ResponseImpl {
 public:
  static constexpr std::size_t expected_replies = 1;
  explicit ResponseImpl(Response& r) noexcept : response_(&r) {}
  void on_node(std::size_t index, NodeView const& n, error_code& ec) {
    if (index != 0) return set_error(ec, Error::incompatible_size);
    if (n.depth == 0) adapter_.bind(*response_);
    adapter_.on_node(n, n.depth, ec);
  }

 private:
  Response* response_;
  Adapter<Response> adapter_{};
};

// A tuple takes reply i into element i.
template <class... Ts>
class ResponseImpl<std::tuple<Ts...>> {
 public:
  static constexpr std::size_t expected_replies = sizeof...(Ts);
  explicit ResponseImpl(std::tuple<Ts...>& r) noexcept : response_(&r) {}
  void on_node(std::size_t index, NodeView const& n, error_code& ec) {
    if constexpr (sizeof...(Ts) == 0) {
      (void)n;
      set_error(ec, Error::incompatible_size);
    } else {
      if (index >= sizeof...(Ts)) return set_error(ec, Error::incompatible_size);
      boost::mp11::mp_with_index<sizeof...(Ts)>(index, [&](auto i) {
        auto& adapter = std::get<i>(adapters_);
        if (n.depth == 0) adapter.bind(std::get<i>(*response_));
        adapter.on_node(n, n.depth, ec);
      });
    }
  }

 private:
  std::tuple<Ts...>* response_;
  std::tuple<Adapter<Ts>...> adapters_{};
};

template <class T>
class ResponseImpl<Replies<T>> {
 public:
  static constexpr std::size_t expected_replies = any_count;
  explicit ResponseImpl(Replies<T>& r) noexcept : response_(&r) {}
  void on_node(std::size_t index, NodeView const& n, error_code& ec) {
    if (n.depth == 0) {
      if (index == 0) response_->clear();
      // Replies come in order; a failed one still holds its (partial) element.
      response_->resize(index + 1);
      adapter_.bind(response_->back());
    }
    adapter_.on_node(n, n.depth, ec);
  }

 private:
  Replies<T>* response_;
  Adapter<T> adapter_{};
};

/// A response that routes the nodes itself (RedisBackend's batches: spans of commands,
/// MULTI/EXEC): it declares `static constexpr std::size_t expected_replies` and
/// `void on_node(std::size_t index, NodeView const&, error_code&)`, with the meaning of
/// ResponseAdapter::on_node.
template <class R>
concept CustomResponse = requires(R& r, std::size_t i, NodeView const& n, error_code& ec) {
  { R::expected_replies } -> std::convertible_to<std::size_t>;
  r.on_node(i, n, ec);
};

template <class Response>
  requires CustomResponse<Response>
class ResponseImpl<Response> {
 public:
  static constexpr std::size_t expected_replies = Response::expected_replies;
  explicit ResponseImpl(Response& r) noexcept : response_(&r) {}
  void on_node(std::size_t index, NodeView const& n, error_code& ec) {
    response_->on_node(index, n, ec);
  }

 private:
  Response* response_;
};

template <>
class ResponseImpl<Tree> {
 public:
  static constexpr std::size_t expected_replies = any_count;
  explicit ResponseImpl(Tree& r) noexcept { adapter_.bind(r); }
  void on_node(std::size_t, NodeView const& n, error_code& ec) { adapter_.on_node(n, n.depth, ec); }

 private:
  TreeAdapter adapter_{};
};

template <>
class ResponseImpl<Ignore> {
 public:
  static constexpr std::size_t expected_replies = any_count;
  explicit ResponseImpl(Ignore const&) noexcept {}
  void on_node(std::size_t, NodeView const& n, error_code& ec) noexcept {
    IgnoreAdapter{}.on_node(n, n.depth, ec);
  }
};

}  // namespace detail

/// Adapts the replies of ONE request into `Response`, node by node, as the parser delivers
/// them: the connection creates one per request and feeds it, so typed service results (seed
/// 000's caches, 001's streams, ...) come straight off the wire with no intermediate tree.
/// Nothing is allocated beyond what the response itself stores.
///
/// Response is a std::tuple<Ts...> (reply i into element i), Replies<T> (any number of
/// replies, each into a T), Tree or Ignore (any number of replies), or any other target listed at the top of this file (exactly one reply). Write
/// std::tuple<std::tuple<...>> for ONE reply that is an aggregate adapted as a tuple.
/// Not thread-safe; `r` must outlive the adapter.
template <class Response>
class ResponseAdapter {
  using Impl = detail::ResponseImpl<std::remove_const_t<Response>>;

 public:
  explicit ResponseAdapter(Response& r) : impl_(r) {}

  /// Replies Response takes: sizeof...(Ts) for a tuple, any_count for Replies, Tree and Ignore,
  /// else 1.
  static constexpr std::size_t expected_replies = Impl::expected_replies;

  /// Called for every node of reply number `index` (0-based, replies in order); `node.depth`
  /// is relative to that reply (0 = its root). On failure sets `ec` (a reply of the wrong
  /// shape, a server error, or an `index` beyond expected_replies: Error::incompatible_size);
  /// the caller then stops feeding THIS reply (skips its remaining nodes) and goes on with the
  /// next ones, so the other tuple elements are still filled. Leaves `ec` untouched otherwise.
  void on_node(std::size_t index, NodeView const& node, boost::system::error_code& ec) {
    impl_.on_node(index, node, ec);
  }

 private:
  Impl impl_;
};

/// Adapts ONE reply (a single value) into a T: for tests, tools and layers that route replies
/// themselves. Same targets and errors as above (a Tree is appended to).
template <class T>
class ReplyAdapter {
 public:
  explicit ReplyAdapter(T& target) noexcept : target_(&target) {}

  /// Called for every node of the reply, in order; node.depth is relative to the reply (root
  /// = 0). After an error, stop feeding this reply; a new root (depth 0) starts over.
  void on_node(NodeView const& node, boost::system::error_code& ec) {
    if (node.depth == 0) adapter_.bind(*target_);
    adapter_.on_node(node, node.depth, ec);
  }

 private:
  T* target_;
  detail::Adapter<T> adapter_{};
};

/// The adapter of one reply into `target` (which must outlive it).
template <class T>
ReplyAdapter<T> adapt_reply(T& target) noexcept {
  return ReplyAdapter<T>(target);
}

/// Parses every reply of `wire` (complete replies, e.g. captured from a server) into `r`, as a
/// connection would: a reply that fails to adapt is skipped and the others still fill their
/// tuple elements. Returns, by priority: the protocol error (resp3_* code);
/// Error::resp3_invalid_length if `wire` ends inside a reply (truncated input: a length or
/// count promised more than there is); the first adapter or server error; else
/// Error::incompatible_size if the number of replies differs from a fixed expected_replies;
/// else success. Pushes count as replies. Meant for tests and tools: it throws only what the
/// response's own allocations throw.
template <class Response>
boost::system::error_code parse_all(std::string_view wire, Response& r, ParserConfig cfg = {}) {
  Parser parser(cfg);
  ResponseAdapter<Response> adapter(r);
  boost::system::error_code first_error;
  std::size_t replies = 0;
  bool skipping = false;  // the current reply failed to adapt: drop its remaining nodes
  while (!wire.empty()) {
    std::size_t consumed = 0;
    boost::system::error_code ec;
    auto const node = parser.consume(wire, consumed, ec);
    if (ec) return ec;
    if (!node) {
      if (consumed == 0) return make_error_code(Error::resp3_invalid_length);
      wire.remove_prefix(consumed);
      continue;
    }
    if (!skipping) {
      boost::system::error_code aec;
      adapter.on_node(replies, *node, aec);
      if (aec) {
        skipping = true;
        if (!first_error) first_error = aec;
      }
    }
    wire.remove_prefix(consumed);
    if (parser.done()) {
      ++replies;
      skipping = false;
    }
  }
  if (parser.depth() != 0) return make_error_code(Error::resp3_invalid_length);
  if (first_error) return first_error;
  constexpr std::size_t expected = ResponseAdapter<Response>::expected_replies;
  if (expected != any_count && replies != expected)
    return make_error_code(Error::incompatible_size);
  return {};
}

}  // namespace rediskit::resp3
