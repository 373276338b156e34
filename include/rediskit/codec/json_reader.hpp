// JsonCodec's direct decoder: JSON text straight into a value, with no boost::json::value in
// between. Boost.JSON's basic_parser reads the text and calls this handler, which writes each
// member where it belongs, and skips the members the type does not have.
//
// It is a fast path only. It never decides a failure. It gives up (returns false) on anything
// that is not plainly right: a type mismatch, a number out of range or not an integer where one
// is expected, a key written twice, bytes that are not JSON. JsonCodec::decode then decodes the
// same bytes through the document (detail::json::from_json). So a value it accepts is the value
// from_json gives, and a failure has from_json's message. It runs on a copy of the value, so
// giving up leaves the caller's value as it was.
//
// Types it decodes: bool, integers, double, std::string, described enums, std::optional and
// std::vector of these, and described structs of these. Any other type anywhere in a value
// (maps, durations, float, a tag_invoke conversion ...) sends the whole type through the
// document (json_reader::Direct<T> is false).
#pragma once

#include <rediskit/codec/traits.hpp>

#include <boost/json/array.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/object.hpp>
#include <boost/json/string.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rediskit::detail::json_reader {

using namespace detail::codec;

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};

template <class T>
constexpr bool direct() {
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, double> ||
                std::is_same_v<T, std::string> || DescribedEnum<T>)
    return true;
  else if constexpr (Integer<T>)
    return true;
  else if constexpr (Described<T>) {
    // Each name once (a base's member and a derived one may share a name: from_json writes both).
    bool all = boost::mp11::mp_size<members_of<T>>::value <= 64;
    boost::mp11::mp_for_each<members_of<T>>([&](auto D) {
      using M = std::remove_cvref_t<decltype(std::declval<T&>().*D.pointer)>;
      all = all && direct<M>();
      int same = 0;
      boost::mp11::mp_for_each<members_of<T>>(
          [&](auto E) { same += std::string_view(D.name) == std::string_view(E.name); });
      all = all && same == 1;
    });
    return all;
  } else if constexpr (is_optional<T>::value) {
    return !is_optional<typename T::value_type>::value && direct<typename T::value_type>();
  } else if constexpr (is_vector<T>::value) {
    return !std::is_same_v<typename T::value_type, bool> && direct<typename T::value_type>();
  } else {
    return false;
  }
}

/// T is decoded by the direct path (and copied for it: see the top of this file).
template <class T>
concept Direct = direct<T>() && std::is_copy_constructible_v<T> && std::is_move_assignable_v<T>;

// What can be written into a value of one type. A null entry: that JSON kind is refused there.
struct Ops {
  bool (*null)(void*) = nullptr;
  bool (*boolean)(void*, bool) = nullptr;
  bool (*int64)(void*, std::int64_t) = nullptr;
  bool (*uint64)(void*, std::uint64_t) = nullptr;
  bool (*number)(void*, double) = nullptr;
  bool (*string)(void*, std::string_view) = nullptr;
  // An object begins: the struct to fill, and its Ops (whose `member` finds its members).
  void* (*object)(void*, Ops const*&) = nullptr;
  // In a struct: the member named `key`, its index and its Ops; null Ops when there is none.
  Ops const* (*member)(void*, std::string_view key, void*& at, int& index) = nullptr;
  // An array begins: the container to fill, and its Ops (whose `element` adds one).
  void* (*array)(void*, Ops const*&) = nullptr;
  void* (*element)(void*, Ops const*&) = nullptr;
};

template <class T>
Ops const* ops_of();

// In a std::optional T: the value type's `Op`, on a fresh value.
template <class T, auto Op, class... A>
auto on_fresh(void* p, A... a) {
  return (ops_of<typename T::value_type>()->*Op)(&static_cast<T*>(p)->emplace(), a...);
}

template <class T>
Ops make_ops() {
  Ops o;
  if constexpr (std::is_same_v<T, bool>) {
    o.boolean = [](void* p, bool b) { return *static_cast<T*>(p) = b, true; };
  } else if constexpr (std::is_same_v<T, double>) {
    o.int64 = [](void* p, std::int64_t n) { return *static_cast<T*>(p) = static_cast<T>(n), true; };
    o.uint64 = [](void* p, std::uint64_t n) {
      return *static_cast<T*>(p) = static_cast<T>(n), true;
    };
    o.number = [](void* p, double d) { return *static_cast<T*>(p) = d, true; };
  } else if constexpr (Integer<T>) {
    o.int64 = [](void* p, std::int64_t n) {
      if constexpr (std::is_signed_v<T>) {
        if (n < std::numeric_limits<T>::min() || n > std::numeric_limits<T>::max()) return false;
      } else {
        if (n < 0 || static_cast<std::uint64_t>(n) > std::numeric_limits<T>::max()) return false;
      }
      return *static_cast<T*>(p) = static_cast<T>(n), true;
    };
    o.uint64 = [](void* p, std::uint64_t n) {
      if (n > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return false;
      return *static_cast<T*>(p) = static_cast<T>(n), true;
    };
  } else if constexpr (std::is_same_v<T, std::string>) {
    o.string = [](void* p, std::string_view s) { return static_cast<T*>(p)->assign(s), true; };
  } else if constexpr (DescribedEnum<T>) {
    o.string = [](void* p, std::string_view s) { return enum_from_name(s, *static_cast<T*>(p)); };
    o.int64 = [](void* p, std::int64_t n) { return *static_cast<T*>(p) = static_cast<T>(n), true; };
  } else if constexpr (is_optional<T>::value) {
    using V = typename T::value_type;
    Ops const& v = *ops_of<V>();
    o.null = [](void* p) { return static_cast<T*>(p)->reset(), true; };
    // Each fills a fresh value, as from_json does.
    if (v.boolean) o.boolean = &on_fresh<T, &Ops::boolean, bool>;
    if (v.int64) o.int64 = &on_fresh<T, &Ops::int64, std::int64_t>;
    if (v.uint64) o.uint64 = &on_fresh<T, &Ops::uint64, std::uint64_t>;
    if (v.number) o.number = &on_fresh<T, &Ops::number, double>;
    if (v.string) o.string = &on_fresh<T, &Ops::string, std::string_view>;
    if (v.object) o.object = &on_fresh<T, &Ops::object, Ops const*&>;
    if (v.array) o.array = &on_fresh<T, &Ops::array, Ops const*&>;
  } else if constexpr (is_vector<T>::value) {
    o.array = [](void* p, Ops const*& inner) -> void* {
      static_cast<T*>(p)->clear();
      inner = ops_of<T>();
      return p;
    };
    o.element = [](void* p, Ops const*& e) -> void* {
      e = ops_of<typename T::value_type>();
      return &static_cast<T*>(p)->emplace_back();
    };
  } else if constexpr (Described<T>) {
    o.object = [](void* p, Ops const*& inner) {
      inner = ops_of<T>();
      return p;
    };
    o.member = [](void* p, std::string_view key, void*& at, int& index) -> Ops const* {
      Ops const* found = nullptr;
      int i = 0;
      boost::mp11::mp_for_each<members_of<T>>([&](auto D) {
        if (!found && key == D.name) {
          at = &(static_cast<T*>(p)->*D.pointer);
          index = i;
          found = ops_of<std::remove_cvref_t<decltype(static_cast<T*>(p)->*D.pointer)>>();
        }
        ++i;
      });
      return found;
    };
  }
  return o;
}

template <class T>
Ops const* ops_of() {
  static Ops const ops = make_ops<T>();
  return &ops;
}

// basic_parser's handler. A false return stops the parse (the direct path gives up).
class Handler {
 public:
  static constexpr std::size_t max_object_size = boost::json::object::max_size();
  static constexpr std::size_t max_array_size = boost::json::array::max_size();
  static constexpr std::size_t max_key_size = boost::json::string::max_size();
  static constexpr std::size_t max_string_size = boost::json::string::max_size();

  Handler(void* root, Ops const* ops) : next_(root), next_ops_(ops) {}

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }

  bool on_object_begin(boost::system::error_code&) { return begin_container(&Ops::object, false); }
  bool on_object_end(std::size_t, boost::system::error_code&) { return end_container(); }
  bool on_array_begin(boost::system::error_code&) { return begin_container(&Ops::array, true); }
  bool on_array_end(std::size_t, boost::system::error_code&) { return end_container(); }

  bool on_key_part(std::string_view s, std::size_t, boost::system::error_code&) {
    if (skip_ == 0) key_.append(s);
    return true;
  }
  bool on_key(std::string_view s, std::size_t, boost::system::error_code&) {
    if (skip_ > 0) return true;
    if (!key_.empty()) s = key_.append(s);
    Frame& f = frames_[depth_ - 1];
    int index = 0;
    next_ops_ = f.ops->member(f.at, s, next_, index);
    key_.clear();
    if (!next_ops_) return true;  // no such member: its value is skipped
    auto const bit = std::uint64_t{1} << index;
    if (f.seen & bit) return false;  // written twice: the document decides which one counts
    f.seen |= bit;
    return true;
  }

  bool on_string_part(std::string_view s, std::size_t, boost::system::error_code&) {
    if (skip_ == 0) text_.append(s);
    return true;
  }
  bool on_string(std::string_view s, std::size_t, boost::system::error_code&) {
    if (skip_ > 0) return true;  // (its parts were not kept either)
    bool const kept = target();
    if (!text_.empty()) s = text_.append(s);
    // A skipped member's string too empties the parts (those before an escape, say).
    bool const ok = !kept || (ops_->string && ops_->string(at_, s));
    text_.clear();
    return ok;
  }
  bool on_number_part(std::string_view, boost::system::error_code&) { return true; }
  bool on_int64(std::int64_t n, std::string_view, boost::system::error_code&) {
    if (skip_ > 0 || !target()) return true;
    return ops_->int64 && ops_->int64(at_, n);
  }
  bool on_uint64(std::uint64_t n, std::string_view, boost::system::error_code&) {
    if (skip_ > 0 || !target()) return true;
    return ops_->uint64 && ops_->uint64(at_, n);
  }
  bool on_double(double d, std::string_view, boost::system::error_code&) {
    if (skip_ > 0 || !target()) return true;
    return ops_->number && ops_->number(at_, d);
  }
  bool on_bool(bool b, boost::system::error_code&) {
    if (skip_ > 0 || !target()) return true;
    return ops_->boolean && ops_->boolean(at_, b);
  }
  bool on_null(boost::system::error_code&) {
    if (skip_ > 0 || !target()) return true;
    return ops_->null && ops_->null(at_);
  }
  bool on_comment_part(std::string_view, boost::system::error_code&) { return false; }
  bool on_comment(std::string_view, boost::system::error_code&) { return false; }

 private:
  static constexpr int kMaxDepth = 64;
  struct Frame {
    void* at;
    Ops const* ops;
    std::uint64_t seen;  // the members written (by index)
    bool array;
  };

  // Where the value that starts now goes (at_, ops_); false when it is skipped.
  bool target() {
    if (depth_ > 0 && frames_[depth_ - 1].array) {
      Frame& f = frames_[depth_ - 1];
      at_ = f.ops->element(f.at, ops_);
      return true;
    }
    at_ = next_;
    ops_ = next_ops_;
    next_ops_ = nullptr;  // a member's target serves one value
    return ops_ != nullptr;
  }

  // An object or an array begins: a frame for it, or a skip.
  bool begin_container(void* (*Ops::*open)(void*, Ops const*&), bool array) {
    if (skip_ > 0 || !target()) return ++skip_, true;
    if (!(ops_->*open) || depth_ == kMaxDepth) return false;
    Ops const* inner = nullptr;
    void* at = (ops_->*open)(at_, inner);
    frames_[depth_++] = Frame{at, inner, 0, array};
    return true;
  }

  bool end_container() {
    if (skip_ > 0) return --skip_, true;
    --depth_;
    return true;
  }

  Frame frames_[kMaxDepth];
  int depth_ = 0;
  int skip_ = 0;  // > 0: inside a skipped object or array, this deep
  void* next_ = nullptr;
  Ops const* next_ops_ = nullptr;
  void* at_ = nullptr;
  Ops const* ops_ = nullptr;
  std::string key_, text_;  // a key or a string delivered in parts
};

/// Decodes `bytes` into `out` directly; false when the direct path gives up (then `out` may be
/// partly written: JsonCodec::decode passes a copy).
template <Direct T>
bool read(std::string_view bytes, T& out) {
  boost::json::basic_parser<Handler> p(boost::json::parse_options{}, &out, ops_of<T>());
  boost::system::error_code ec;
  std::size_t const n = p.write_some(false, bytes.data(), bytes.size(), ec);
  return !ec && p.done() && n == bytes.size();
}

}  // namespace rediskit::detail::json_reader
