// rediskit::ArgList: a non-owning view of a list of command arguments (keys, members,
// field/value pairs, score/member pairs), taken from whatever range the caller already has.
//
// Typed commands (rediskit/commands.hpp) hold their multi-valued arguments as ArgList, so a
// command is a small aggregate of views: building one allocates nothing and copying it is
// cheap, whatever the caller keeps its data in:
//
//   std::vector<std::string> ids = ...;
//   cmd::del{.keys = ids}                    // any range of things convertible to string_view
//   cmd::del{.keys = "user:1"}               // one string: a list of one
//   cmd::del{.keys = {"a", "b"}}             // up to 8 elements in place (stored inline)
//   std::map<std::string, std::string> m;
//   cmd::hset{.key = "h", .fields = m}       // ArgList<FieldValue>: pair-like elements
//
// Lifetime: an ArgList refers to the caller's range (or braced list). It must stay alive until
// the operation that uses it is initiated; backends copy what they need at initiation (a
// co_await on one expression satisfies this with no effort).
#pragma once

#include <concepts>
#include <cstddef>
#include <iterator>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace rediskit {

/// A hash field and its value (HSET), or a key and its value (MSET).
struct FieldValue {
  std::string_view field;
  std::string_view value;
  friend bool operator==(FieldValue const&, FieldValue const&) = default;
};

/// A sorted-set member and its score (ZADD).
struct ScoreMember {
  double score = 0;
  std::string_view member;
  friend bool operator==(ScoreMember const&, ScoreMember const&) = default;
};

namespace detail {

template <class T, class E>
struct ArgConvert;

template <class E>
struct ArgConvert<std::string_view, E> {
  static constexpr bool ok = std::is_convertible_v<E const&, std::string_view>;
  static std::string_view to(E const& e) { return std::string_view(e); }
};

// Pair-like elements (std::pair, std::tuple of 2, map value_type, FieldValue itself).
template <class E>
concept PairLike = requires(E const& e) {
  std::get<0>(e);
  std::get<1>(e);
};

template <class E>
struct ArgConvert<FieldValue, E> {
  static constexpr bool ok = [] {
    if constexpr (std::is_same_v<E, FieldValue>)
      return true;
    else if constexpr (PairLike<E>)
      return std::is_convertible_v<decltype(std::get<0>(std::declval<E const&>())),
                                   std::string_view> &&
             std::is_convertible_v<decltype(std::get<1>(std::declval<E const&>())),
                                   std::string_view>;
    else
      return false;
  }();
  static FieldValue to(E const& e) {
    if constexpr (std::is_same_v<E, FieldValue>)
      return e;
    else
      return {std::string_view(std::get<0>(e)), std::string_view(std::get<1>(e))};
  }
};

// (score, member) pairs: std::pair<double, std::string>, ScoreMember.
template <class E>
struct ArgConvert<ScoreMember, E> {
  static constexpr bool ok = [] {
    if constexpr (std::is_same_v<E, ScoreMember>)
      return true;
    else if constexpr (PairLike<E>)
      return std::is_arithmetic_v<std::remove_cvref_t<decltype(std::get<0>(
                 std::declval<E const&>()))>> &&
             std::is_convertible_v<decltype(std::get<1>(std::declval<E const&>())),
                                   std::string_view>;
    else
      return false;
  }();
  static ScoreMember to(E const& e) {
    if constexpr (std::is_same_v<E, ScoreMember>)
      return e;
    else
      return {static_cast<double>(std::get<0>(e)), std::string_view(std::get<1>(e))};
  }
};

template <class T, class R>
concept ArgRangeOf =
    std::ranges::forward_range<R const> &&
    ArgConvert<T, std::remove_cvref_t<std::ranges::range_reference_t<R const>>>::ok;

}  // namespace detail

/// A non-owning list of T (std::string_view, FieldValue or ScoreMember): see the top of this
/// file. Iterate with for_each, or copy out with to_vector.
template <class T>
class ArgList {
 public:
  using value_type = T;

  /// An empty list.
  ArgList() noexcept = default;

  /// One to eight elements, given in place: `"k"`, `{"a", "b"}`, `{{"f", "v"}, {"g", "w"}}`.
  /// They are stored in the ArgList itself (a braced list is not a std::initializer_list here:
  /// g++ 12 rejects those inside a co_await expression). For more, pass a container.
  ArgList(T a) noexcept : inline_{a}, size_(1) {}  // NOLINT: implicit on purpose
  ArgList(T a, T b) noexcept : inline_{a, b}, size_(2) {}
  ArgList(T a, T b, T c) noexcept : inline_{a, b, c}, size_(3) {}
  ArgList(T a, T b, T c, T d) noexcept : inline_{a, b, c, d}, size_(4) {}
  ArgList(T a, T b, T c, T d, T e) noexcept : inline_{a, b, c, d, e}, size_(5) {}
  ArgList(T a, T b, T c, T d, T e, T f) noexcept : inline_{a, b, c, d, e, f}, size_(6) {}
  ArgList(T a, T b, T c, T d, T e, T f, T g) noexcept : inline_{a, b, c, d, e, f, g}, size_(7) {}
  ArgList(T a, T b, T c, T d, T e, T f, T g, T h) noexcept
      : inline_{a, b, c, d, e, f, g, h}, size_(8) {}

  /// A string literal or string as a list of one (for ArgList<std::string_view>).
  template <class S>
    requires std::is_same_v<T, std::string_view> &&
             std::is_convertible_v<S const&, std::string_view> &&
             (!std::is_same_v<std::remove_cvref_t<S>, std::string_view>)
  ArgList(S const& one) noexcept : ArgList(std::string_view(one)) {}  // NOLINT

  /// Any forward range whose elements convert to T (and that is not itself a single T). A
  /// contiguous range of T itself (std::vector<std::string_view>, std::span) is viewed as an
  /// array: no conversion per element.
  template <class R>
    requires detail::ArgRangeOf<T, R> && (!std::is_convertible_v<R const&, T>) &&
             (!std::is_convertible_v<R const&, std::string_view>) &&
             (!std::is_same_v<std::remove_cvref_t<R>, ArgList>)
  ArgList(R const& r) noexcept(noexcept(std::ranges::distance(r))) {  // NOLINT
    if constexpr (std::ranges::contiguous_range<R const> && std::ranges::sized_range<R const> &&
                  std::is_same_v<std::ranges::range_value_t<R const>, T>) {
      obj_ = std::ranges::data(r);
      size_ = std::ranges::size(r);
    } else {
      obj_ = std::addressof(r);
      size_ = static_cast<std::size_t>(std::ranges::distance(r));
      each_ = &each_range<R>;
    }
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  /// Calls f(T) for each element, in order.
  template <class F>
  void for_each(F&& f) const {
    if (each_ == nullptr) {
      T const* p = obj_ != nullptr ? static_cast<T const*>(obj_) : inline_;
      for (T const* e = p + size_; p != e; ++p) f(*p);
      return;
    }
    each_(obj_, &f, [](void* fp, T v) { (*static_cast<std::remove_reference_t<F>*>(fp))(v); });
  }

  /// The elements as a vector of views (still referring to the caller's data).
  std::vector<T> to_vector() const {
    std::vector<T> out;
    out.reserve(size_);
    for_each([&](T v) { out.push_back(v); });
    return out;
  }

  /// The first element; the list must not be empty.
  T front() const {
    T out{};
    bool done = false;
    for_each([&](T v) {
      if (!done) out = v;
      done = true;
    });
    return out;
  }

 private:
  using Sink = void (*)(void*, T);
  using Each = void (*)(void const*, void*, Sink);

  template <class R>
  static void each_range(void const* obj, void* f, Sink sink) {
    using E = std::remove_cvref_t<std::ranges::range_reference_t<R const>>;
    for (auto const& e : *static_cast<R const*>(obj))
      sink(f, detail::ArgConvert<T, E>::to(e));
  }

  void const* obj_ = nullptr;
  T inline_[8]{};
  std::size_t size_ = 0;
  Each each_ = nullptr;
};

}  // namespace rediskit
