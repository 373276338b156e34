// rediskit::detail::mem::List: MemoryBackend's list value (LPUSH, RPUSH, LRANGE, ...).
#pragma once

#include <cstddef>
#include <deque>
#include <string>

namespace rediskit::detail::mem {

/// A Redis list: a deque of byte strings, with the byte count the memory bound needs.
/// Callers that change items go through push/pop/erase so that bytes() stays exact.
class List {
 public:
  std::deque<std::string> items;

  std::size_t size() const noexcept { return items.size(); }
  bool empty() const noexcept { return items.empty(); }
  std::size_t bytes() const noexcept { return bytes_; }

  void push_front(std::string v) {
    bytes_ += v.size() + kOverhead;
    items.push_front(std::move(v));
  }
  void push_back(std::string v) {
    bytes_ += v.size() + kOverhead;
    items.push_back(std::move(v));
  }
  std::string pop_front() {
    std::string v = std::move(items.front());
    items.pop_front();
    bytes_ -= v.size() + kOverhead;
    return v;
  }
  std::string pop_back() {
    std::string v = std::move(items.back());
    items.pop_back();
    bytes_ -= v.size() + kOverhead;
    return v;
  }
  /// Replaces the item at `i` (LSET).
  void replace(std::size_t i, std::string v) {
    bytes_ = bytes_ - items[i].size() + v.size();
    items[i] = std::move(v);
  }
  /// Recomputes bytes() after items were changed directly (LTRIM, LREM, LSET).
  void recount() noexcept {
    bytes_ = 0;
    for (auto const& s : items) bytes_ += s.size() + kOverhead;
  }

  static constexpr std::size_t kOverhead = 16;

 private:
  std::size_t bytes_ = 0;
};

}  // namespace rediskit::detail::mem
