// rediskit::detail::mem::ScanMap: a hash map with Redis SCAN semantics, the container of
// MemoryBackend's keyspace, hashes and sets.
//
// SCAN guarantees that an element present for the whole iteration is returned, whatever is
// added or removed meanwhile. A std::unordered_map cannot give that (a rehash reorders it), so
// every element also owns a slot in a vector: the cursor is a slot index. Erasing frees the
// slot (nothing moves, so no element can jump behind a cursor); a new element reuses a free
// slot. The slot vector never grows beyond the peak element count (8 bytes a slot), and is
// released when the map empties. Lookups are one hash probe, as in the map alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rediskit::detail::mem {

struct TransparentHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

/// The value of a set member: nothing.
struct Empty {
  friend bool operator==(Empty, Empty) noexcept { return true; }
};

template <class V>
class ScanMap {
 public:
  struct Item {
    V value;
    std::size_t slot = 0;
  };
  using Map = std::unordered_map<std::string, Item, TransparentHash, std::equal_to<>>;
  using Node = typename Map::value_type;

  ScanMap() = default;
  ScanMap(ScanMap&&) noexcept = default;
  ScanMap& operator=(ScanMap&&) noexcept = default;
  ScanMap(ScanMap const& o) { *this = o; }
  ScanMap& operator=(ScanMap const& o) {
    if (this == &o) return *this;
    clear();
    o.for_each([&](std::string const& k, V const& v) { emplace(k).first->value = v; });
    return *this;
  }

  std::size_t size() const noexcept { return map_.size(); }
  bool empty() const noexcept { return map_.empty(); }

  /// Bytes of the keys and (for std::string values) of the values, plus a fixed overhead per
  /// element: what MemoryBackend's memory bound counts.
  std::size_t bytes() const noexcept { return bytes_; }

  V* find(std::string_view k) noexcept {
    auto it = map_.find(k);
    return it == map_.end() ? nullptr : &it->second.value;
  }
  V const* find(std::string_view k) const noexcept {
    auto it = map_.find(k);
    return it == map_.end() ? nullptr : &it->second.value;
  }
  bool contains(std::string_view k) const noexcept { return map_.find(k) != map_.end(); }

  /// The node of `k` (key and item), or nullptr.
  Node* find_node(std::string_view k) noexcept {
    auto it = map_.find(k);
    return it == map_.end() ? nullptr : &*it;
  }

  /// Inserts `k` with a value-initialized V when absent. Returns the node and whether it was
  /// inserted.
  std::pair<Node*, bool> emplace(std::string_view k) {
    if (auto it = map_.find(k); it != map_.end()) return {&*it, false};
    auto [it, inserted] = map_.try_emplace(std::string(k));
    Node* node = &*it;
    node->second.slot = take_slot(node);
    bytes_ += node->first.size() + kOverhead;
    return {node, true};
  }

  /// Sets `k` to `v` (std::string values: their size is accounted). Returns true when `k` is new.
  bool assign(std::string_view k, V v) {
    auto [node, inserted] = emplace(k);
    if constexpr (std::is_same_v<V, std::string>) {
      bytes_ -= node->second.value.size();
      bytes_ += v.size();
    }
    node->second.value = std::move(v);
    return inserted;
  }

  bool erase(std::string_view k) {
    auto it = map_.find(k);
    if (it == map_.end()) return false;
    erase_node(it);
    return true;
  }

  void clear() noexcept {
    map_.clear();
    slots_.clear();
    free_.clear();
    bytes_ = 0;
  }

  /// f(std::string const& key, V const& value) for every element, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    for (auto const& [k, item] : map_) f(k, item.value);
  }
  template <class F>
  void for_each_mut(F&& f) {
    for (auto& [k, item] : map_) f(k, item.value);
  }

  /// SCAN step: visits slots from `cursor` until `count` elements were passed to
  /// f(std::string const& key, V const& value) or the slots end. Returns the next cursor, 0
  /// when the iteration is over. A cursor beyond the end is over at once.
  template <class F>
  std::uint64_t scan(std::uint64_t cursor, std::size_t count, F&& f) const {
    if (count == 0) count = 1;
    std::size_t seen = 0;
    std::size_t i = static_cast<std::size_t>(cursor);
    for (; i < slots_.size() && seen < count; ++i) {
      if (Node const* n = slots_[i]) {
        f(n->first, n->second.value);
        ++seen;
      }
    }
    return i >= slots_.size() ? 0 : i;
  }

  /// The node in slot `i` (nullptr when free or out of range).
  Node* node_at(std::size_t i) noexcept { return i < slots_.size() ? slots_[i] : nullptr; }
  std::size_t slot_count() const noexcept { return slots_.size(); }

  /// Account a change of an element's value size that happened in place.
  void adjust_bytes(std::ptrdiff_t delta) noexcept {
    bytes_ = static_cast<std::size_t>(static_cast<std::ptrdiff_t>(bytes_) + delta);
  }

  /// Per-element overhead counted in bytes(): node, hash bucket and slot.
  static constexpr std::size_t kOverhead = 48;

 private:
  std::size_t take_slot(Node* node) {
    if (!free_.empty()) {
      std::size_t const s = free_.back();
      free_.pop_back();
      slots_[s] = node;
      return s;
    }
    slots_.push_back(node);
    return slots_.size() - 1;
  }

  void erase_node(typename Map::iterator it) {
    std::size_t const s = it->second.slot;
    bytes_ -= it->first.size() + kOverhead;
    if constexpr (std::is_same_v<V, std::string>) bytes_ -= it->second.value.size();
    map_.erase(it);
    slots_[s] = nullptr;
    if (map_.empty()) {
      slots_.clear();
      free_.clear();
    } else {
      free_.push_back(s);
    }
  }

  Map map_;
  std::vector<Node*> slots_;
  std::vector<std::size_t> free_;
  std::size_t bytes_ = 0;
};

}  // namespace rediskit::detail::mem
