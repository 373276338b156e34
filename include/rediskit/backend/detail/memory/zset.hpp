// rediskit::detail::mem::ZSet: MemoryBackend's sorted-set value.
//
// Members are ordered by (score, then member bytes compared as unsigned bytes, a prefix first),
// which is the order of a Redis sorted set. Two structures share the elements:
//  - a skip list whose links count how many elements they jump over ("spans"), so that the
//    rank of an element and the element at a rank are found in O(log n) (ZRANK on a ranking of
//    300 000 users, ZRANGE by index from deep inside it);
//  - a hash index member -> node, for ZSCORE and for finding the node of a member in O(1).
// The index keys are views of the members held by the nodes (nodes never move).
//
// Scores are never NaN (the commands refuse those before they get here). -0.0 and 0.0 compare
// equal, as they do on a server: they are the same score.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace rediskit::detail::mem {

class ZSet {
 public:
  struct Node;

  /// One forward link of a node at one level: the next node at that level, and how many
  /// elements forward that is (1 at level 0).
  struct Link {
    Node* next = nullptr;
    std::size_t span = 0;
  };

  /// An element. Read-only to users of ZSet: change it through ZSet.
  struct Node {
    std::string member;
    double score = 0;
    Node* prev = nullptr;  ///< level-0 predecessor; nullptr for the first element
    int height = 0;
    Link* links = nullptr;  ///< `height` links, allocated just after the node

    Node* next() const noexcept { return links[0].next; }
  };

  static constexpr int kMaxHeight = 32;
  /// Bytes counted per element besides its member: node, links on average, index entry.
  static constexpr std::size_t kOverhead = 64;

  ZSet() noexcept = default;
  ~ZSet() { destroy(); }
  ZSet(ZSet&& o) noexcept
      : head_(std::exchange(o.head_, nullptr)),
        tail_(std::exchange(o.tail_, nullptr)),
        height_(std::exchange(o.height_, 1)),
        size_(std::exchange(o.size_, 0)),
        bytes_(std::exchange(o.bytes_, 0)),
        rng_(o.rng_),
        index_(std::move(o.index_)) {
    o.index_.clear();
  }
  ZSet& operator=(ZSet&& o) noexcept {
    if (this != &o) {
      destroy();
      head_ = std::exchange(o.head_, nullptr);
      tail_ = std::exchange(o.tail_, nullptr);
      height_ = std::exchange(o.height_, 1);
      size_ = std::exchange(o.size_, 0);
      bytes_ = std::exchange(o.bytes_, 0);
      rng_ = o.rng_;
      index_ = std::move(o.index_);
      o.index_.clear();
    }
    return *this;
  }
  ZSet(ZSet const& o) {
    for (Node const* n = o.first(); n; n = n->next())
      insert(n->member, n->score);
  }
  ZSet& operator=(ZSet const& o) {
    if (this != &o) {
      ZSet copy(o);
      *this = std::move(copy);
    }
    return *this;
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  /// Member bytes plus kOverhead per element: what the memory bound counts.
  std::size_t bytes() const noexcept { return bytes_; }

  // ---- lookups -------------------------------------------------------------------------------

  /// The node of `member`, or nullptr. O(1).
  Node const* find(std::string_view member) const noexcept {
    auto it = index_.find(member);
    return it == index_.end() ? nullptr : it->second;
  }

  /// The first (lowest) and last (highest) elements; nullptr when empty.
  Node const* first() const noexcept { return head_ ? head_->links[0].next : nullptr; }
  Node const* last() const noexcept { return tail_; }

  /// The 0-based rank of `n` (an element of this set) in ascending order. O(log n).
  std::size_t rank_of(Node const* n) const noexcept {
    std::size_t rank = 0;
    Node* x = head_;
    for (int i = height_ - 1; i >= 0; --i) {
      while (x->links[i].next && !before(n->score, n->member, x->links[i].next)) {
        rank += x->links[i].span;
        x = x->links[i].next;
      }
      if (x == n) return rank - 1;
    }
    return rank - 1;  // not reached for an element of the set
  }

  /// The element at 0-based rank `r` (ascending), or nullptr when r >= size(). O(log n).
  Node const* at_rank(std::size_t r) const noexcept {
    if (r >= size_) return nullptr;
    std::size_t const want = r + 1;  // 1-based: the head is at 0
    std::size_t traversed = 0;
    Node* x = head_;
    for (int i = height_ - 1; i >= 0; --i) {
      while (x->links[i].next && traversed + x->links[i].span <= want) {
        traversed += x->links[i].span;
        x = x->links[i].next;
      }
      if (traversed == want) return x;
    }
    return nullptr;
  }

  /// The last element for which `pred(node)` holds, and how many elements are up to it
  /// (its rank + 1); {nullptr, 0} when it holds for none. `pred` must hold for a prefix of the
  /// order (true, ..., true, false, ..., false): "score below the bound", "member at most the
  /// bound". O(log n).
  template <class Pred>
  std::pair<Node const*, std::size_t> last_where(Pred&& pred) const {
    if (!head_) return {nullptr, 0};
    std::size_t count = 0;
    Node* x = head_;
    for (int i = height_ - 1; i >= 0; --i) {
      while (x->links[i].next && pred(static_cast<Node const*>(x->links[i].next))) {
        count += x->links[i].span;
        x = x->links[i].next;
      }
    }
    return {x == head_ ? nullptr : x, count};
  }

  // ---- changes -------------------------------------------------------------------------------

  /// Adds `member` with `score`; the member must not be in the set yet.
  Node const* insert(std::string_view member, double score) {
    Node* n = make_node(random_height(), member, score);
    link(n);
    index_.emplace(std::string_view(n->member), n);
    bytes_ += n->member.size() + kOverhead;
    return n;
  }

  /// Changes the score of `n` (an element of this set), moving it where the order wants it.
  void set_score(Node const* cn, double score) {
    Node* n = const_cast<Node*>(cn);
    // It stays where it is when it is still after its predecessor and before its successor
    // (always so for an equal score, -0.0 for 0.0 included).
    if ((!n->prev || before(n->prev, score, n->member)) &&
        (!n->next() || before(score, n->member, n->next()))) {
      n->score = score;
      return;
    }
    Node* pred[kMaxHeight];
    predecessors(n->score, n->member, pred, nullptr);
    unlink(n, pred);
    n->score = score;
    link(n);
  }

  /// Removes `member`. True when it was there.
  bool erase(std::string_view member) {
    auto it = index_.find(member);
    if (it == index_.end()) return false;
    Node* n = it->second;
    index_.erase(it);
    Node* pred[kMaxHeight];
    predecessors(n->score, n->member, pred, nullptr);
    unlink(n, pred);
    bytes_ -= n->member.size() + kOverhead;
    free_node(n);
    return true;
  }

  /// Removes the `count` elements from 0-based rank `from` on (fewer when the set ends), in
  /// ascending order, calling `f(std::string&& member, double score)` for each after it left
  /// the set. Returns how many went. O(log n + count).
  template <class F>
  std::size_t erase_ranks(std::size_t from, std::size_t count, F&& f) {
    if (from >= size_ || count == 0) return 0;
    // The last node before position `from` + 1 (1-based; the head is at 0), at every level:
    // removing the nodes after it one by one keeps these the predecessors of the next one.
    Node* pred[kMaxHeight];
    std::size_t traversed = 0;
    Node* x = head_;
    for (int i = height_ - 1; i >= 0; --i) {
      while (x->links[i].next && traversed + x->links[i].span <= from) {
        traversed += x->links[i].span;
        x = x->links[i].next;
      }
      pred[i] = x;
    }
    std::size_t removed = 0;
    Node* n = pred[0]->links[0].next;
    while (n && removed < count) {
      Node* next = n->links[0].next;
      unlink(n, pred);
      index_.erase(std::string_view(n->member));
      double const score = n->score;
      std::string member = std::move(n->member);
      bytes_ -= member.size() + kOverhead;
      free_node(n);
      f(std::move(member), score);
      ++removed;
      n = next;
    }
    return removed;
  }

  /// Removes every element.
  void clear() {
    ZSet empty;
    *this = std::move(empty);
  }

  /// (score, member) order: a before b.
  static bool before(double s1, std::string_view m1, double s2, std::string_view m2) noexcept {
    if (s1 < s2) return true;
    if (s2 < s1) return false;
    return compare_bytes(m1, m2) < 0;
  }
  static bool before(double s, std::string_view m, Node const* n) noexcept {
    return before(s, m, n->score, n->member);
  }
  static bool before(Node const* n, double s, std::string_view m) noexcept {
    return before(n->score, n->member, s, m);
  }

  /// Unsigned byte order, a prefix first (memcmp, then length): Redis's member order.
  static int compare_bytes(std::string_view a, std::string_view b) noexcept {
    std::size_t const n = a.size() < b.size() ? a.size() : b.size();
    if (n != 0) {
      if (int c = std::memcmp(a.data(), b.data(), n); c != 0) return c;
    }
    return a.size() < b.size() ? -1 : a.size() > b.size() ? 1 : 0;
  }

 private:
  // Nodes are allocated with their links behind them: one allocation per element.
  static constexpr std::size_t links_offset() noexcept {
    return (sizeof(Node) + alignof(Link) - 1) / alignof(Link) * alignof(Link);
  }
  static Node* make_node(int height, std::string_view member, double score) {
    std::size_t const size = links_offset() + sizeof(Link) * static_cast<std::size_t>(height);
    void* raw = ::operator new(size);
    Node* n = ::new (raw) Node{};
    try {
      n->member.assign(member);
    } catch (...) {
      n->~Node();
      ::operator delete(raw);
      throw;
    }
    n->score = score;
    n->height = height;
    n->links = ::new (static_cast<char*>(raw) + links_offset()) Link[height]{};
    return n;
  }
  static void free_node(Node* n) noexcept {
    n->~Node();
    ::operator delete(static_cast<void*>(n));
  }

  void destroy() noexcept {
    if (!head_) return;
    Node* n = head_->links[0].next;
    while (n) {
      Node* next = n->links[0].next;
      free_node(n);
      n = next;
    }
    free_node(head_);
    head_ = tail_ = nullptr;
    index_.clear();
    size_ = bytes_ = 0;
    height_ = 1;
  }

  int random_height() noexcept {
    // xorshift64*: a level more with probability 1/4, as in Redis's skip lists.
    int h = 1;
    for (;;) {
      rng_ ^= rng_ >> 12;
      rng_ ^= rng_ << 25;
      rng_ ^= rng_ >> 27;
      std::uint64_t const r = rng_ * 0x2545F4914F6CDD1DULL;
      for (int bit = 62; bit >= 0 && h < kMaxHeight; bit -= 2) {
        if (((r >> bit) & 3) != 0) return h;
        ++h;
      }
      if (h >= kMaxHeight) return kMaxHeight;
    }
  }

  // The predecessors of (score, member) at every level, and their positions.
  void predecessors(double score, std::string_view member, Node** pred,
                    std::size_t* pos) const noexcept {
    Node* x = head_;
    std::size_t p = 0;
    for (int i = height_ - 1; i >= 0; --i) {
      while (x->links[i].next &&
             before(x->links[i].next->score, x->links[i].next->member, score, member)) {
        p += x->links[i].span;
        x = x->links[i].next;
      }
      pred[i] = x;
      if (pos) pos[i] = p;
    }
  }

  // Inserts node n (score and member set, height fixed) where the order wants it.
  void link(Node* n) {
    if (!head_) head_ = make_node(kMaxHeight, {}, 0);  // the first element: the head too
    Node* pred[kMaxHeight];
    std::size_t pos[kMaxHeight];
    predecessors(n->score, n->member, pred, pos);
    if (n->height > height_) {
      for (int i = height_; i < n->height; ++i) {
        pred[i] = head_;
        pos[i] = 0;
        head_->links[i].span = size_;
      }
      height_ = n->height;
    }
    // n's position (1-based) is pos[0] + 1.
    for (int i = 0; i < n->height; ++i) {
      Link& l = pred[i]->links[i];
      n->links[i].next = l.next;
      n->links[i].span = l.span - (pos[0] - pos[i]);
      l.next = n;
      l.span = pos[0] - pos[i] + 1;
    }
    for (int i = n->height; i < height_; ++i)
      ++pred[i]->links[i].span;
    n->prev = pred[0] == head_ ? nullptr : pred[0];
    if (n->links[0].next)
      n->links[0].next->prev = n;
    else
      tail_ = n;
    ++size_;
  }

  // Removes node n from the lists (not from the index), given its predecessors at every level.
  void unlink(Node* n, Node** pred) noexcept {
    for (int i = 0; i < height_; ++i) {
      Link& l = pred[i]->links[i];
      if (l.next == n) {
        l.span += n->links[i].span - 1;
        l.next = n->links[i].next;
      } else {
        --l.span;
      }
    }
    if (n->links[0].next)
      n->links[0].next->prev = n->prev;
    else
      tail_ = n->prev;
    while (height_ > 1 && head_->links[height_ - 1].next == nullptr)
      --height_;
    --size_;
  }

  Node* head_ = nullptr;  // links only; allocated with the first element
  Node* tail_ = nullptr;
  int height_ = 1;
  std::size_t size_ = 0;
  std::size_t bytes_ = 0;
  std::uint64_t rng_ = 0x9E3779B97F4A7C15ULL;
  std::unordered_map<std::string_view, Node*> index_;
};

}  // namespace rediskit::detail::mem
