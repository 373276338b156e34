// rediskit::detail::mem::Stream: MemoryBackend's stream value.
//
// Entries ordered by id (a std::map: range reads, trimming from the front and appending at the
// back are all logarithmic), the stream's bookkeeping as Redis 7.0 keeps it (the last id ever
// generated, how many entries were ever added, the largest deleted id), and its consumer
// groups: each with its last delivered id, its read counter, its pending entries list (id ->
// owner, last delivery time, delivery count) and its consumers (each with the ids it holds).
//
// Times are engine milliseconds (Ctx::now_ms), so that a manual clock drives idle times.
// Memory accounting (bytes()) is kept incrementally for entries; groups are summed when asked
// (a stream has few groups and consumers).
#pragma once

#include <rediskit/cmd/streams.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit::detail::mem {

class Stream {
 public:
  using Id = StreamId;
  using Fields = std::vector<std::pair<std::string, std::string>>;
  using Entries = std::map<Id, Fields>;

  /// A consumer of a group: when it was last seen, and the pending ids it owns.
  struct Consumer {
    std::int64_t seen_time = 0;
    std::set<Id> pending;
  };
  using Consumers = std::map<std::string, Consumer, std::less<>>;  // byte order, as Redis
  using ConsumerNode = Consumers::value_type;

  /// A pending entry of a group: delivered to `owner`, not acknowledged yet.
  struct Nack {
    ConsumerNode* owner = nullptr;
    std::int64_t delivery_time = 0;  ///< engine ms
    std::int64_t delivery_count = 0;
  };

  struct Group {
    Id last_id{};
    std::int64_t entries_read = -1;  ///< -1: unknown (SCG_INVALID_ENTRIES_READ)
    std::map<Id, Nack> pel;
    Consumers consumers;

    /// The consumer `name`, created (seen at `now`) when missing. `created` tells which.
    ConsumerNode& consumer(std::string_view name, std::int64_t now, bool* created = nullptr) {
      auto it = consumers.find(name);
      bool const make = it == consumers.end();
      if (make) it = consumers.emplace(std::string(name), Consumer{now, {}}).first;
      if (created) *created = make;
      return *it;
    }

    /// Hands the pending entry `it` over to `to` (nothing when it already owns it).
    void assign(std::map<Id, Nack>::iterator it, ConsumerNode& to) {
      Nack& n = it->second;
      if (n.owner == &to) return;
      if (n.owner) n.owner->second.pending.erase(it->first);
      to.second.pending.insert(it->first);
      n.owner = &to;
    }

    /// Drops the pending entry `it` (acknowledged, or its entry is gone). Returns the next.
    std::map<Id, Nack>::iterator drop(std::map<Id, Nack>::iterator it) {
      if (it->second.owner) it->second.owner->second.pending.erase(it->first);
      return pel.erase(it);
    }

    /// Deletes consumer `name` and its pending entries; how many it had (0 when missing).
    std::int64_t remove_consumer(std::string_view name) {
      auto it = consumers.find(name);
      if (it == consumers.end()) return 0;
      auto const n = static_cast<std::int64_t>(it->second.pending.size());
      for (Id const& id : it->second.pending)
        pel.erase(id);
      consumers.erase(it);
      return n;
    }
  };
  using Groups = std::map<std::string, Group, std::less<>>;

  Stream() = default;
  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&&) noexcept = default;
  // Nack::owner points into the group's own consumer map: a copy re-points them to its own.
  Stream(Stream const& o)
      : groups(o.groups),
        entries_(o.entries_),
        last_id_(o.last_id_),
        max_deleted_(o.max_deleted_),
        entries_added_(o.entries_added_),
        entry_bytes_(o.entry_bytes_) {
    for (auto& [name, g] : groups)
      for (auto& [id, nack] : g.pel)
        if (nack.owner) nack.owner = &*g.consumers.find(nack.owner->first);
  }
  Stream& operator=(Stream const& o) {
    if (this != &o) *this = Stream(o);
    return *this;
  }

  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  Entries const& entries() const noexcept { return entries_; }

  Id last_id() const noexcept { return last_id_; }
  std::uint64_t entries_added() const noexcept { return entries_added_; }
  Id max_deleted_id() const noexcept { return max_deleted_; }
  /// The smallest id present (0-0 when empty).
  Id first_id() const noexcept { return entries_.empty() ? Id{} : entries_.begin()->first; }
  /// The largest id present (0-0 when empty): not last_id() once the tail was deleted.
  Id last_valid_id() const noexcept { return entries_.empty() ? Id{} : entries_.rbegin()->first; }

  Fields const* find(Id id) const {
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : &it->second;
  }
  bool contains(Id id) const { return entries_.find(id) != entries_.end(); }

  /// Appends an entry; `id` must be above last_id() (the caller checked).
  void append(Id id, Fields fields) {
    entry_bytes_ += entry_size(fields);
    entries_.emplace_hint(entries_.end(), id, std::move(fields));
    last_id_ = id;
    ++entries_added_;
  }

  /// XDEL of one id: true when it existed.
  bool remove(Id id) {
    auto it = entries_.find(id);
    if (it == entries_.end()) return false;
    entry_bytes_ -= entry_size(it->second);
    entries_.erase(it);
    if (id > max_deleted_) max_deleted_ = id;
    return true;
  }

  /// Removes entries from the front while there are more than `maxlen`, at most `limit` of
  /// them (0: no limit). How many were removed.
  std::int64_t trim_maxlen(std::uint64_t maxlen, std::uint64_t limit) {
    std::int64_t n = 0;
    while (entries_.size() > maxlen && (limit == 0 || static_cast<std::uint64_t>(n) < limit)) {
      pop_front();
      ++n;
    }
    return n;
  }

  /// Removes the entries with an id below `minid`, at most `limit` (0: no limit).
  std::int64_t trim_minid(Id minid, std::uint64_t limit) {
    std::int64_t n = 0;
    while (!entries_.empty() && entries_.begin()->first < minid &&
           (limit == 0 || static_cast<std::uint64_t>(n) < limit)) {
      pop_front();
      ++n;
    }
    return n;
  }

  /// Redis's streamRangeHasTombstones(s, start, NULL): may an entry at or after `start` have
  /// been deleted?
  bool has_tombstones_from(Id start) const noexcept {
    if (entries_.empty() || max_deleted_ == Id{}) return false;
    return start <= max_deleted_;
  }

  /// Redis's streamEstimateDistanceFromFirstEverEntry: the read counter of `id`, or -1.
  std::int64_t estimate_entries_read(Id id) const noexcept {
    auto const added = static_cast<std::int64_t>(entries_added_);
    if (entries_added_ == 0) return 0;
    if (entries_.empty() && id <= last_id_) return added;
    if (id == last_id_) return added;
    if (id > last_id_) return -1;
    if (max_deleted_ == Id{} || max_deleted_ < first_id()) {
      auto const len = static_cast<std::int64_t>(entries_.size());
      if (id < first_id()) return added - len;
      if (id == first_id()) return added - len + 1;
    }
    return -1;
  }

  Groups groups;

  /// Accounted size: entries (ids, fields, values, per-entry overhead) and groups (names,
  /// pending entries, consumers).
  std::size_t bytes() const noexcept {
    std::size_t b = entry_bytes_ + 64;
    for (auto const& [name, g] : groups) {
      b += name.size() + 96 + g.pel.size() * kNackBytes;
      for (auto const& [cname, c] : g.consumers)
        b += cname.size() + 64 + c.pending.size() * kIdBytes;
    }
    return b;
  }

 private:
  static constexpr std::size_t kIdBytes = 48;
  static constexpr std::size_t kNackBytes = 80;

  static std::size_t entry_size(Fields const& f) noexcept {
    std::size_t b = kIdBytes + 24;
    for (auto const& [k, v] : f)
      b += k.size() + v.size() + 16;
    return b;
  }

  void pop_front() {
    auto it = entries_.begin();
    entry_bytes_ -= entry_size(it->second);
    entries_.erase(it);
  }

  Entries entries_;
  Id last_id_{};
  Id max_deleted_{};
  std::uint64_t entries_added_ = 0;
  std::size_t entry_bytes_ = 0;
};

}  // namespace rediskit::detail::mem
