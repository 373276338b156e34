// rediskit::resp3::detail: the per-reply adapters behind ResponseAdapter and ReplyAdapter.
//
// One adapter class per kind of target. Each has the same two members:
//
//   void bind(T& target) noexcept;   // the value the next subtree goes into
//   void on_node(NodeView const& n, std::size_t d, error_code& ec);
//
// where `d` is the depth of `n` relative to the root of the value being adapted (0 = its root).
// bind() is called right before the root node of each value. Aggregate adapters own the adapters
// of their elements and forward every node below their root with d - 1 (d - 2 for the [k, v]
// pairs of a map given as an array of pairs). They keep their per-level state (element index,
// key/value turn) themselves: nothing is allocated per node beyond the target's own storage.
//
// Pointers into containers: an element adapter is re-bound at the first node of each element,
// right after the element was created, and a container only grows when a new element starts.
// So an element adapter never uses a pointer into a container that grew since it was bound.
#pragma once

#include <rediskit/error.hpp>
#include <rediskit/resp3/detail/numbers.hpp>
#include <rediskit/resp3/node.hpp>

#include <boost/mp11/algorithm.hpp>
#include <boost/mp11/list.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace rediskit::resp3 {

struct Ignore;
struct ServerError;

namespace detail {

using boost::system::error_code;

/// Most elements any adapter reserves up front, whatever size the server announces: a
/// hostile "*9223372036854775807" costs nothing until its elements really arrive.
inline constexpr std::size_t max_reserve = 1024;

// Poison pill: the customization point is found by argument-dependent lookup only.
void rediskit_from_bulk() = delete;

/// A user type U adapts from a scalar reply through
/// `void rediskit_from_bulk(U&, std::string_view, boost::system::error_code&)`, declared in U's
/// namespace.
template <class T>
concept BulkCustomized = requires(T& t, std::string_view s, error_code& ec) {
  rediskit_from_bulk(t, s, ec);
};

/// Targets that take one scalar reply.
template <class T>
concept ScalarTarget = std::same_as<T, std::string> || std::is_arithmetic_v<T> || BulkCustomized<T>;

inline void set_error(error_code& ec, Error e) noexcept {
  ec = make_error_code(e);
}

/// Checks shared by the root of every target that is not optional / Result / Ignore / Tree:
/// a server error reports its code, a null reports unexpected_null. True if `ec` was set.
inline bool reject_error_or_null(NodeView const& n, error_code& ec) noexcept {
  if (is_error(n.type)) {
    set_error(ec, server_error_code(n.value));
    return true;
  }
  if (n.type == Type::null) {
    set_error(ec, Error::unexpected_null);
    return true;
  }
  return false;
}

/// A verbatim string's payload without its 3-letter format and ':' ("txt:hello" -> "hello").
constexpr std::string_view verbatim_payload(std::string_view v) noexcept {
  return (v.size() >= 4 && v[3] == ':') ? v.substr(4) : v;
}

/// Number of nodes that follow an aggregate node as its direct children.
constexpr std::size_t children_of(NodeView const& n) noexcept {
  return is_aggregate(n.type) ? n.size * element_multiplicity(n.type) : 0;
}

constexpr std::size_t capped_reserve(NodeView const& n) noexcept {
  return std::min(children_of(n), max_reserve);
}

/// Converts a scalar node (neither error nor null, already checked) into T.
template <class T>
void from_scalar(NodeView const& n, T& out, error_code& ec) {
  std::string_view const text =
      n.type == Type::verbatim_string ? verbatim_payload(n.value) : n.value;
  if constexpr (BulkCustomized<T>) {
    if (is_aggregate(n.type)) return set_error(ec, Error::unexpected_reply_type);
    rediskit_from_bulk(out, text, ec);
  } else if constexpr (std::is_same_v<T, std::string>) {
    switch (n.type) {
      case Type::simple_string:
      case Type::blob_string:
      case Type::verbatim_string:
      case Type::big_number:
      case Type::number:
      case Type::doublean:
        out.assign(text);
        return;
      default:
        return set_error(ec, Error::unexpected_reply_type);
    }
  } else if constexpr (std::is_same_v<T, bool>) {
    if (n.type == Type::boolean) {
      out = text == "t";
    } else if (n.type == Type::number) {
      std::int64_t v = 0;
      to_integer(text, v, ec);
      if (ec) return;
      if (v != 0 && v != 1) return set_error(ec, Error::integer_out_of_range);
      out = v == 1;
    } else {
      set_error(ec, Error::unexpected_reply_type);
    }
  } else if constexpr (std::is_integral_v<T>) {
    switch (n.type) {
      case Type::number:
      case Type::simple_string:
      case Type::blob_string:
      case Type::verbatim_string:
      case Type::big_number:
        return to_integer(text, out, ec);
      default:
        return set_error(ec, Error::unexpected_reply_type);
    }
  } else {
    static_assert(std::is_floating_point_v<T>);
    switch (n.type) {
      case Type::doublean:
      case Type::number:
      case Type::simple_string:
      case Type::blob_string:
      case Type::verbatim_string:
      case Type::big_number:
        return to_floating(text, out, ec);
      default:
        return set_error(ec, Error::unexpected_reply_type);
    }
  }
}

template <class T>
struct AdapterFor;

/// The adapter that adapts one value of type T.
template <class T>
using Adapter = typename AdapterFor<T>::type;

template <class T>
class ScalarAdapter {
 public:
  void bind(T& t) noexcept { target_ = &t; }
  void on_node(NodeView const& n, std::size_t, error_code& ec) {
    if (reject_error_or_null(n, ec)) return;
    from_scalar(n, *target_, ec);
  }

 private:
  T* target_ = nullptr;
};

template <class T>
class OptionalAdapter {
 public:
  void bind(std::optional<T>& t) noexcept { target_ = &t; }
  void on_node(NodeView const& n, std::size_t d, error_code& ec) {
    if (d == 0) {
      if (n.type == Type::null) {
        target_->reset();
        return;
      }
      inner_.bind(target_->emplace());
    }
    inner_.on_node(n, d, ec);
  }

 private:
  std::optional<T>* target_ = nullptr;
  Adapter<T> inner_{};
};

template <class T>
class ResultAdapter {
 public:
  using Target = boost::system::result<T, ServerError>;
  void bind(Target& t) noexcept { target_ = &t; }
  void on_node(NodeView const& n, std::size_t d, error_code& ec) {
    if (d == 0) {
      if (is_error(n.type)) {
        // Spelled through Target, a dependent name: ServerError is complete only at instantiation.
        *target_ = Target(boost::system::in_place_error,
                          typename Target::error_type{n.type, std::string(n.value)});
        return;
      }
      inner_.bind(target_->emplace());
    }
    inner_.on_node(n, d, ec);
  }

 private:
  Target* target_ = nullptr;
  Adapter<T> inner_{};
};

/// Aggregates whose elements can go into a sequence or a set: array, set, push, and a map
/// (flattened to k, v, k, v).
constexpr bool is_list_like(Type t) noexcept {
  return t == Type::array || t == Type::set || t == Type::push || t == Type::map;
}

/// The root of a sequence or set reply: checks its type, empties the target, reserves (capped).
template <class C>
void start_collection(C& target, NodeView const& n, error_code& ec) {
  if (reject_error_or_null(n, ec)) return;
  if (!is_list_like(n.type)) return set_error(ec, Error::unexpected_reply_type);
  target.clear();
  if constexpr (requires(C & c) { c.reserve(std::size_t{}); }) target.reserve(capped_reserve(n));
}

/// std::vector, std::deque, std::list.
template <class C>
class SequenceAdapter {
 public:
  void bind(C& c) noexcept { target_ = &c; }
  void on_node(NodeView const& n, std::size_t d, error_code& ec) {
    if (d == 0) return start_collection(*target_, n, ec);
    if (d == 1) element_.bind(target_->emplace_back());
    element_.on_node(n, d - 1, ec);
  }

 private:
  C* target_ = nullptr;
  Adapter<typename C::value_type> element_{};
};

/// Nodes still expected before a subtree is complete: starts at 1 (its root); each node takes
/// one and adds its children. Saturates, so that absurd announced sizes cannot wrap around.
constexpr std::size_t count_node(std::size_t pending, NodeView const& n) noexcept {
  std::size_t const children = children_of(n);
  std::size_t const left = pending - 1;
  return children > SIZE_MAX - left ? SIZE_MAX : left + children;
}

/// std::set, std::unordered_set: an element is built aside and inserted once complete.
template <class C>
class SetAdapter {
 public:
  void bind(C& c) noexcept { target_ = &c; }
  void on_node(NodeView const& n, std::size_t d, error_code& ec) {
    if (d == 0) return start_collection(*target_, n, ec);
    if (d == 1) {
      value_ = Value{};
      element_.bind(value_);
      pending_ = 1;
    }
    element_.on_node(n, d - 1, ec);
    if (ec) return;
    pending_ = count_node(pending_, n);
    if (pending_ == 0) target_->insert(std::move(value_));
  }

 private:
  using Value = typename C::value_type;
  C* target_ = nullptr;
  Value value_{};
  Adapter<Value> element_{};
  std::size_t pending_ = 0;
};

template <class T>
struct IsOptionalOrResult : std::false_type {};
template <class T>
struct IsOptionalOrResult<std::optional<T>> : std::true_type {};
template <class T>
struct IsOptionalOrResult<boost::system::result<T, ServerError>> : std::true_type {};

/// True if the target never takes an aggregate (then an aggregate where a map key is expected
/// can only be a [key, value] pair).
template <class T>
constexpr bool takes_scalars_only() {
  if constexpr (ScalarTarget<T>)
    return true;
  else if constexpr (IsOptionalOrResult<T>::value)
    return takes_scalars_only<typename T::value_type>();
  else
    return false;
}

/// std::map, std::unordered_map, std::vector<std::pair<K, V>>. Takes a map reply, or an array
/// with an even number of elements (RESP2: k, v, k, v), or an array of [k, v] pairs (XRANGE).
template <class C, class K, class V>
class MapAdapter {
 public:
  void bind(C& c) noexcept { target_ = &c; }
  void on_node(NodeView const& n, std::size_t d, error_code& ec) {
    if (d == 0) {
      if (reject_error_or_null(n, ec)) return;
      if (n.type == Type::map) {
        mode_ = Mode::flat;
      } else if (n.type == Type::array) {
        mode_ = (n.size % 2 == 0) ? Mode::undecided : Mode::undecided_odd;
      } else {
        return set_error(ec, Error::unexpected_reply_type);
      }
      if constexpr (is_vector) {
        target_->clear();
      } else {
        // The entries read last time stand aside: a key that comes back takes its old node
        // (and its value's buffer) instead of a new allocation; the rest go with the adapter.
        spare_ = std::move(*target_);
        target_->clear();
      }
      if constexpr (requires(C & c) { c.reserve(std::size_t{}); })
        target_->reserve(std::min(n.size, max_reserve));
      turn_ = 0;
      return;
    }
    if (d == 1 && (mode_ == Mode::undecided || mode_ == Mode::undecided_odd)) {
      // The first element tells: an aggregate where a scalar key is expected is a pair.
      if (is_aggregate(n.type) && takes_scalars_only<K>()) {
        mode_ = Mode::pairs;
      } else {
        if (mode_ == Mode::undecided_odd) return set_error(ec, Error::incompatible_size);
        mode_ = Mode::flat;
      }
    }
    if (mode_ == Mode::pairs) {
      if (d == 1) {  // a [k, v] pair
        if (reject_error_or_null(n, ec)) return;
        if (!is_aggregate(n.type)) return set_error(ec, Error::unexpected_reply_type);
        if (children_of(n) != 2) return set_error(ec, Error::incompatible_size);
        turn_ = 0;
        return;
      }
      --d;
    }
    if (d == 1) {
      in_value_ = (turn_++ % 2) != 0;
      if (!in_value_) {
        start_key();
      } else {
        start_value();
      }
    }
    if (in_value_)
      value_.on_node(n, d - 1, ec);
    else
      key_.on_node(n, d - 1, ec);
  }

 private:
  static constexpr bool is_vector = requires(C & c) { c.emplace_back(); };

  void start_key() {
    if constexpr (is_vector) {
      key_.bind(target_->emplace_back().first);
    } else {
      key_value_ = K{};
      key_.bind(key_value_);
    }
  }
  void start_value() {
    if constexpr (is_vector) {
      value_.bind(target_->back().second);
    } else {
      if (!spare_.empty()) {
        if (auto node = spare_.extract(key_value_)) {
          reset(node.mapped());
          auto r = target_->insert(std::move(node));
          if (!r.inserted) reset(r.position->second);  // a repeated key: the last value wins
          value_.bind(r.position->second);
          return;
        }
      }
      auto const [it, inserted] = target_->try_emplace(std::move(key_value_));
      if (!inserted) reset(it->second);  // a repeated key: the last value wins
      value_.bind(it->second);
    }
  }
  // An empty value, as a new one would be; a string keeps its buffer.
  static void reset(V& v) {
    if constexpr (std::is_same_v<V, std::string>)
      v.clear();
    else
      v = V{};
  }

  enum class Mode : std::uint8_t { undecided, undecided_odd, flat, pairs };

  C* target_ = nullptr;
  [[no_unique_address]] std::conditional_t<is_vector, std::monostate, K> key_value_{};
  [[no_unique_address]] std::conditional_t<is_vector, std::monostate, C> spare_{};
  Adapter<K> key_{};
  Adapter<V> value_{};
  std::size_t turn_ = 0;  // keys and values started in the current map or pair
  Mode mode_ = Mode::flat;
  bool in_value_ = false;
};

/// std::pair and std::tuple inside a reply: an aggregate with exactly that many elements.
template <class T>
class TupleAdapter {
 public:
  static constexpr std::size_t size = std::tuple_size_v<T>;

  void bind(T& t) noexcept { target_ = &t; }
  void on_node(NodeView const& n, std::size_t d, error_code& ec) {
    if (d == 0) {
      if (reject_error_or_null(n, ec)) return;
      if (!is_aggregate(n.type)) return set_error(ec, Error::unexpected_reply_type);
      if (children_of(n) != size) return set_error(ec, Error::incompatible_size);
      next_ = 0;
      return;
    }
    if constexpr (size != 0) {
      if (d == 1) current_ = next_++;
      boost::mp11::mp_with_index<size>(current_, [&](auto i) {
        auto& element = std::get<i>(elements_);
        if (d == 1) element.bind(std::get<i>(*target_));
        element.on_node(n, d - 1, ec);
      });
    }
  }

 private:
  using Elements = boost::mp11::mp_transform<Adapter, boost::mp11::mp_rename<T, std::tuple>>;
  T* target_ = nullptr;
  Elements elements_{};
  std::size_t next_ = 0;
  std::size_t current_ = 0;
};

class TreeAdapter {
 public:
  void bind(Tree& t) noexcept { target_ = &t; }
  void on_node(NodeView const& n, std::size_t d, error_code&) {
    target_->push_back(Node{n.type, n.size, d, std::string(n.value)});
  }

 private:
  Tree* target_ = nullptr;
};

class IgnoreAdapter {
 public:
  template <class T>
  void bind(T&) noexcept {}
  void on_node(NodeView const& n, std::size_t, error_code& ec) noexcept {
    if (is_error(n.type)) set_error(ec, server_error_code(n.value));
  }
};

template <class T>
struct AdapterFor {
  static_assert(ScalarTarget<T>,
                "rediskit::resp3: this type cannot take a reply. Use std::string, an arithmetic "
                "type, std::optional, resp3::Result, a standard sequence / set / map container, "
                "std::pair, std::tuple, resp3::Tree or resp3::Ignore, or declare "
                "`void rediskit_from_bulk(T&, std::string_view, boost::system::error_code&)` in "
                "T's namespace");
  using type = ScalarAdapter<T>;
};
template <class T>
struct AdapterFor<std::optional<T>> {
  using type = OptionalAdapter<T>;
};
template <class T>
struct AdapterFor<boost::system::result<T, ServerError>> {
  using type = ResultAdapter<T>;
};
template <class T, class A>
struct AdapterFor<std::vector<T, A>> {
  using type = SequenceAdapter<std::vector<T, A>>;
};
template <class T, class A>
struct AdapterFor<std::deque<T, A>> {
  using type = SequenceAdapter<std::deque<T, A>>;
};
template <class T, class A>
struct AdapterFor<std::list<T, A>> {
  using type = SequenceAdapter<std::list<T, A>>;
};
template <class K, class V, class A>
struct AdapterFor<std::vector<std::pair<K, V>, A>> {
  using type = MapAdapter<std::vector<std::pair<K, V>, A>, K, V>;
};
template <class T, class C, class A>
struct AdapterFor<std::set<T, C, A>> {
  using type = SetAdapter<std::set<T, C, A>>;
};
template <class T, class H, class E, class A>
struct AdapterFor<std::unordered_set<T, H, E, A>> {
  using type = SetAdapter<std::unordered_set<T, H, E, A>>;
};
template <class K, class V, class C, class A>
struct AdapterFor<std::map<K, V, C, A>> {
  using type = MapAdapter<std::map<K, V, C, A>, K, V>;
};
template <class K, class V, class H, class E, class A>
struct AdapterFor<std::unordered_map<K, V, H, E, A>> {
  using type = MapAdapter<std::unordered_map<K, V, H, E, A>, K, V>;
};
template <class A, class B>
struct AdapterFor<std::pair<A, B>> {
  using type = TupleAdapter<std::pair<A, B>>;
};
template <class... Ts>
struct AdapterFor<std::tuple<Ts...>> {
  using type = TupleAdapter<std::tuple<Ts...>>;
};
template <>
struct AdapterFor<Tree> {
  using type = TreeAdapter;
};
template <>
struct AdapterFor<Ignore> {
  using type = IgnoreAdapter;
};
template <>
struct AdapterFor<Ignore const> {
  using type = IgnoreAdapter;
};

}  // namespace detail
}  // namespace rediskit::resp3
