// rediskit typed commands: streams and consumer groups (XADD, XRANGE, XREADGROUP, XACK,
// XPENDING, XCLAIM, XAUTOCLAIM, XGROUP ...). Each command is an aggregate of views: see
// rediskit/command.hpp for the rules.
//
// Ids: commands take ids as text, because Redis accepts more than "ms-seq" where an id goes:
// "*" (XADD: generate one), "ms-*" (XADD: generate the sequence), "ms" (a bound: ms-0 as a
// start, ms-<max> as an end), "-" and "+" (the smallest and largest ids), "(id" (an exclusive
// bound), "$" (the stream's last id), ">" (XREADGROUP: entries never delivered to the group).
// Replies carry ids as "ms-seq" text; StreamId parses and orders them.
//
// At-least-once consumption with a group (seed 001's UserStreamConsumer):
//
//   co_await db.async_exec(cmd::xgroup_create{.key = "events:users", .group = "g",
//                                             .id = "0", .mkstream = true});  // once
//   auto got = co_await db.async_exec(cmd::xreadgroup{.group = "g", .consumer = "c1",
//       .keys = "events:users", .count = 100, .block = 5s});   // ids: ">" for every key
//   ... handle each entry, then:
//   co_await db.async_exec(cmd::xack{.key = "events:users", .group = "g", .ids = handled});
//   // Entries of a consumer that died stay pending; another takes them over after a while:
//   auto page = co_await db.async_exec(cmd::xautoclaim{.key = "events:users", .group = "g",
//       .consumer = "c2", .min_idle = 60s, .start = cursor});
//   // page.entries (their delivery count grew: XPENDING tells, to dead-letter poison
//   // entries), page.deleted (pending ids whose entry was deleted: acknowledge nothing, they
//   // left the pending list), page.next (the cursor; "0-0" when the pending list was covered).
#pragma once

#include <rediskit/arg_list.hpp>

#include <boost/describe/class.hpp>

#include <charconv>
#include <chrono>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace rediskit {

/// A stream entry id: milliseconds and a sequence number, ordered as Redis orders them.
struct StreamId {
  std::uint64_t ms = 0;
  std::uint64_t seq = 0;

  friend constexpr auto operator<=>(StreamId const&, StreamId const&) = default;
  friend constexpr bool operator==(StreamId const&, StreamId const&) = default;

  static constexpr StreamId min() noexcept { return {0, 0}; }
  static constexpr StreamId max() noexcept { return {UINT64_MAX, UINT64_MAX}; }

  /// "ms-seq", or "ms" (then the sequence is `missing_seq`): plain decimal digits, as replies
  /// carry them. Anything else (the special forms "*", "-", "+", "(id") is nullopt.
  static std::optional<StreamId> parse(std::string_view s, std::uint64_t missing_seq = 0) noexcept {
    auto number = [](std::string_view t, std::uint64_t& out) {
      if (t.empty()) return false;
      for (char c : t)
        if (c < '0' || c > '9') return false;
      auto const r = std::from_chars(t.data(), t.data() + t.size(), out);
      return r.ec == std::errc{} && r.ptr == t.data() + t.size();
    };
    StreamId id{0, missing_seq};
    auto const dash = s.find('-');
    if (!number(s.substr(0, dash), id.ms)) return std::nullopt;
    if (dash != std::string_view::npos && !number(s.substr(dash + 1), id.seq)) return std::nullopt;
    return id;
  }

  /// "ms-seq".
  std::string to_string() const {
    char buf[48];
    auto r = std::to_chars(buf, buf + 20, ms);
    *r.ptr++ = '-';
    r = std::to_chars(r.ptr, buf + sizeof buf, seq);
    return std::string(buf, r.ptr);
  }
};
BOOST_DESCRIBE_STRUCT(StreamId, (), (ms, seq))

/// One stream entry: its id and its field/value pairs in the order they were added.
/// `deleted`: a pending entry (re-read from a consumer's history with XREADGROUP and an id
/// other than ">") whose entry was deleted from the stream since it was delivered; it has no
/// fields then. Acknowledge it (XACK) to drop it from the pending list.
struct StreamEntry {
  std::string id;
  std::vector<std::pair<std::string, std::string>> fields;
  bool deleted = false;

  /// The value of the first field named `name`, or nullptr.
  std::string const* find(std::string_view name) const noexcept {
    for (auto const& [f, v] : fields)
      if (f == name) return &v;
    return nullptr;
  }

  friend bool operator==(StreamEntry const&, StreamEntry const&) = default;
};
BOOST_DESCRIBE_STRUCT(StreamEntry, (), (id, fields, deleted))

/// XPENDING's summary of a group's pending entries list (entries delivered and not yet
/// acknowledged): how many, the smallest and largest pending ids (nullopt when none), and how
/// many each consumer holds (consumers holding none are left out), by consumer name.
struct PendingSummary {
  std::int64_t count = 0;
  std::optional<std::string> min_id;
  std::optional<std::string> max_id;
  std::vector<std::pair<std::string, std::int64_t>> consumers;
  friend bool operator==(PendingSummary const&, PendingSummary const&) = default;
};
BOOST_DESCRIBE_STRUCT(PendingSummary, (), (count, min_id, max_id, consumers))

/// One pending entry (XPENDING with a range): its id, the consumer it was last delivered to,
/// the milliseconds since that delivery, and how many times it was delivered (the poison-entry
/// signal: dead-letter an entry whose count keeps growing).
struct PendingEntry {
  std::string id;
  std::string consumer;
  std::int64_t idle_ms = 0;
  std::int64_t deliveries = 0;
  friend bool operator==(PendingEntry const&, PendingEntry const&) = default;
};
BOOST_DESCRIBE_STRUCT(PendingEntry, (), (id, consumer, idle_ms, deliveries))

/// One XAUTOCLAIM step: `next`, the cursor for the next step ("0-0": the whole pending list
/// was scanned); `entries`, the entries now owned by the claiming consumer; `deleted`, pending
/// ids whose entry no longer exists in the stream (they were removed from the pending list).
struct AutoClaimPage {
  std::string next;
  std::vector<StreamEntry> entries;
  std::vector<std::string> deleted;
  friend bool operator==(AutoClaimPage const&, AutoClaimPage const&) = default;
};
BOOST_DESCRIBE_STRUCT(AutoClaimPage, (), (next, entries, deleted))

/// XAUTOCLAIM ... JUSTID: as AutoClaimPage with ids only (delivery counts are not raised).
struct AutoClaimIdsPage {
  std::string next;
  std::vector<std::string> ids;
  std::vector<std::string> deleted;
  friend bool operator==(AutoClaimIdsPage const&, AutoClaimIdsPage const&) = default;
};
BOOST_DESCRIBE_STRUCT(AutoClaimIdsPage, (), (next, ids, deleted))

/// Bounding a stream (XADD's and XTRIM's trimming): keep at most `maxlen` entries, or drop the
/// entries with an id below `minid`. Approximate trimming ("~") lets Redis remove whole
/// internal nodes only, so the stream may keep more than asked (cheaper; MemoryBackend trims
/// exactly); `limit` (LIMIT, only with approximate) caps how many entries one call removes.
///   .trim = StreamTrim::max_len(10000, true)   // MAXLEN ~ 10000
struct StreamTrim {
  enum class Strategy : std::uint8_t { maxlen, minid };
  Strategy strategy = Strategy::maxlen;
  std::int64_t maxlen = 0;  ///< with Strategy::maxlen
  std::string_view minid;   ///< with Strategy::minid
  bool approximate = false;
  std::optional<std::int64_t> limit{};

  static StreamTrim max_len(std::int64_t n, bool approximate = false) noexcept {
    return {Strategy::maxlen, n, {}, approximate, std::nullopt};
  }
  static StreamTrim min_id(std::string_view id, bool approximate = false) noexcept {
    return {Strategy::minid, 0, id, approximate, std::nullopt};
  }

  template <class W>
  void write(W& w) const {
    if (strategy == Strategy::maxlen)
      w("MAXLEN");
    else
      w("MINID");
    if (approximate) w("~");
    if (strategy == Strategy::maxlen)
      w(maxlen);
    else
      w(minid);
    if (limit) w("LIMIT", *limit);
  }
};

namespace detail {

// Replies as RESP carries them (wire types), and their conversion into the types above.
using StreamFieldsWire = std::optional<std::vector<std::pair<std::string, std::string>>>;
/// [[id, [f, v, ...] or nil], ...]
using StreamEntriesWire = std::vector<std::pair<std::string, StreamFieldsWire>>;

inline std::vector<StreamEntry> entries_from_wire(StreamEntriesWire&& w) {
  std::vector<StreamEntry> out;
  out.reserve(w.size());
  for (auto& [id, fields] : w) {
    StreamEntry& e = out.emplace_back();
    e.id = std::move(id);
    if (fields)
      e.fields = std::move(*fields);
    else
      e.deleted = true;
  }
  return out;
}

/// XREAD's and XREADGROUP's reply: per stream, its name and entries; nil when none had any.
using StreamsReply = std::optional<std::vector<std::pair<std::string, std::vector<StreamEntry>>>>;
using StreamsWire = std::optional<std::vector<std::pair<std::string, StreamEntriesWire>>>;
inline StreamsReply streams_from_wire(StreamsWire&& w) {
  if (!w) return std::nullopt;
  StreamsReply::value_type out;
  out.reserve(w->size());
  for (auto& [key, entries] : *w)
    out.emplace_back(std::move(key), entries_from_wire(std::move(entries)));
  return out;
}

template <class W>
void write_stream_ids(W& w, ArgList<std::string_view> const& keys,
                      ArgList<std::string_view> const& ids) {
  if (ids.empty())
    keys.for_each([&](std::string_view) { w(">"); });
  else
    w(ids);
}

/// XCLAIM and XCLAIM ... JUSTID.
template <class W, class C>
void write_xclaim(W& w, C const& c, bool justid) {
  w("XCLAIM", c.key, c.group, c.consumer, c.min_idle.count(), c.ids);
  if (c.idle) w("IDLE", c.idle->count());
  if (c.time_unix_ms) w("TIME", *c.time_unix_ms);
  if (c.retry_count) w("RETRYCOUNT", *c.retry_count);
  if (c.force) w("FORCE");
  if (justid) w("JUSTID");
  if (!c.last_id.empty()) w("LASTID", c.last_id);
}

}  // namespace detail

}  // namespace rediskit

namespace rediskit::cmd {

/// XADD key [NOMKSTREAM] [MAXLEN|MINID [~] threshold [LIMIT n]] id field value [...] -> the id
/// of the new entry; nullopt only with `nomkstream` when the key does not exist.
/// `id`: "*" (the default) generates one from the clock, never going back (the last id's
/// milliseconds with the next sequence if the clock is behind it); "ms-*" generates the
/// sequence; an explicit "ms-seq" must be above the stream's last id ever (deleted entries
/// count), else Error::server_error. Trimming applies after the entry is added (MAXLEN 0
/// leaves an empty stream: the key stays). An empty `fields` is refused by the server.
struct xadd {
  std::string_view key;
  std::string_view id = "*";
  ArgList<FieldValue> fields{};
  std::optional<StreamTrim> trim{};
  bool nomkstream = false;  ///< do not create the stream when missing
  using reply_type = std::optional<std::string>;
  template <class W>
  void write(W& w) const {
    w("XADD", key);
    if (nomkstream) w("NOMKSTREAM");
    if (trim) trim->write(w);
    w(id, fields);
  }
};

/// XRANGE key start end [COUNT n] -> the entries with start <= id <= end, in id order, at most
/// `count` (a count of zero or less returns none). Bounds: "-" and "+", "ms" (a whole
/// millisecond), "ms-seq", "(ms-seq" exclusive. A missing key is an empty stream.
struct xrange {
  std::string_view key;
  std::string_view start = "-";
  std::string_view end = "+";
  std::optional<std::int64_t> count{};
  using reply_type = std::vector<StreamEntry>;
  using wire_type = std::optional<rediskit::detail::StreamEntriesWire>;  // nil for COUNT <= 0
  static reply_type from_wire(wire_type&& w) {
    return w ? rediskit::detail::entries_from_wire(std::move(*w)) : reply_type{};
  }
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("XRANGE", key, start, end);
    if (count) w("COUNT", *count);
  }
};

/// XREVRANGE key end start [COUNT n] -> as xrange, from the largest id down: the last `count`
/// entries ("newest first" pages: pass "(" + the last id seen as the next `end`).
struct xrevrange {
  std::string_view key;
  std::string_view end = "+";
  std::string_view start = "-";
  std::optional<std::int64_t> count{};
  using reply_type = std::vector<StreamEntry>;
  using wire_type = std::optional<rediskit::detail::StreamEntriesWire>;
  static reply_type from_wire(wire_type&& w) {
    return w ? rediskit::detail::entries_from_wire(std::move(*w)) : reply_type{};
  }
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("XREVRANGE", key, end, start);
    if (count) w("COUNT", *count);
  }
};

/// XLEN key -> the number of entries (0 for a missing key).
struct xlen {
  std::string_view key;
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("XLEN", key);
  }
};

/// XDEL key id [id ...] -> how many of the entries existed and were deleted. Pending entries
/// of groups stay pending (readers see them as StreamEntry::deleted / AutoClaimPage::deleted).
/// One malformed id fails the whole command before anything is deleted.
struct xdel {
  std::string_view key;
  ArgList<std::string_view> ids{};
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("XDEL", key, ids);
  }
};

/// XTRIM key MAXLEN|MINID [~] threshold [LIMIT n] -> how many entries were removed (0 for a
/// missing key).
struct xtrim {
  std::string_view key;
  StreamTrim trim{};
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("XTRIM", key);
    trim.write(w);
  }
};

/// XGROUP CREATE key group id [MKSTREAM] [ENTRIESREAD n] -> true. The group will deliver the
/// entries after `id` ("$", the default: only entries added from now on; "0": the whole
/// stream). Error::busy_group when the group exists (creating it at every start is then
/// harmless); Error::server_error when the key is missing, unless `mkstream` creates an empty
/// stream.
struct xgroup_create {
  std::string_view key;
  std::string_view group;
  std::string_view id = "$";
  bool mkstream = false;
  std::optional<std::int64_t> entries_read{};  ///< ENTRIESREAD: for the group's lag (XINFO)
  using reply_type = bool;
  using wire_type = std::string;  // OK
  static bool from_wire(std::string&&) noexcept { return true; }
  template <class W>
  void write(W& w) const {
    w("XGROUP", "CREATE", key, group, id);
    if (mkstream) w("MKSTREAM");
    if (entries_read) w("ENTRIESREAD", *entries_read);
  }
};

/// XGROUP SETID key group id [ENTRIESREAD n] -> true. Moves the group's last delivered id (to
/// re-deliver from an earlier point, or "$" to skip everything). Pending entries are kept.
/// Error::no_group when the group does not exist.
struct xgroup_setid {
  std::string_view key;
  std::string_view group;
  std::string_view id;
  std::optional<std::int64_t> entries_read{};
  using reply_type = bool;
  using wire_type = std::string;  // OK
  static bool from_wire(std::string&&) noexcept { return true; }
  template <class W>
  void write(W& w) const {
    w("XGROUP", "SETID", key, group, id);
    if (entries_read) w("ENTRIESREAD", *entries_read);
  }
};

/// XGROUP DESTROY key group -> 1 when the group existed (its pending list is gone with it),
/// else 0. Blocked readers of the group fail with Error::no_group.
struct xgroup_destroy {
  std::string_view key;
  std::string_view group;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("XGROUP", "DESTROY", key, group);
  }
};

/// XGROUP CREATECONSUMER key group consumer -> 1 when created, 0 when it existed. (Reading
/// creates consumers anyway; this one makes one visible before its first read.)
struct xgroup_createconsumer {
  std::string_view key;
  std::string_view group;
  std::string_view consumer;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("XGROUP", "CREATECONSUMER", key, group, consumer);
  }
};

/// XGROUP DELCONSUMER key group consumer -> how many entries the consumer had pending: they
/// are dropped from the group's pending list (never re-delivered). Claim them first (XCLAIM,
/// XAUTOCLAIM) to hand them to another consumer instead.
struct xgroup_delconsumer {
  std::string_view key;
  std::string_view group;
  std::string_view consumer;
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("XGROUP", "DELCONSUMER", key, group, consumer);
  }
};

/// XREAD [COUNT n] [BLOCK ms] STREAMS key ... id ... -> per stream that has entries above its
/// id, its name and those entries (in `keys` order); nullopt when no stream had any (after the
/// BLOCK timeout, if any). Unlike XREADGROUP nothing is consumed: any number of readers see
/// every entry, each keeping its own position (the last id it read).
/// `ids`: one per key: entries with a larger id are read; "$" is the stream's last id when the
/// command runs (with `block`: only entries added while it waits). A missing key is an empty
/// stream. `block`: wait up to this long for new entries when none are there (0: forever); the
/// command then runs on a connection of its own. A count of zero or less is no limit.
struct xread {
  ArgList<std::string_view> keys{};
  ArgList<std::string_view> ids{};
  std::optional<std::int64_t> count{};
  std::optional<std::chrono::milliseconds> block{};

  using reply_type = rediskit::detail::StreamsReply;
  using wire_type = rediskit::detail::StreamsWire;
  static reply_type from_wire(wire_type&& w) {
    return rediskit::detail::streams_from_wire(std::move(w));
  }
  static constexpr bool idempotent = true;
  bool blocking() const noexcept { return block.has_value(); }
  std::chrono::milliseconds block_timeout() const noexcept {
    return block.value_or(std::chrono::milliseconds(0));
  }
  ArgList<std::string_view> watch_keys() const noexcept { return keys; }
  template <class W>
  void write(W& w) const {
    w("XREAD");
    if (count) w("COUNT", *count);
    if (block) w("BLOCK", block->count());
    w("STREAMS", keys, ids);
  }
};

/// XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] [NOACK] STREAMS key ... id ...
/// -> per stream that had something, its name and entries (in `keys` order); nullopt when no
/// stream had anything (after the BLOCK timeout, if any).
/// `ids`: one per key; empty means ">" for every key: entries never delivered to the group,
/// which become pending for `consumer` (unless `noack`) until acknowledged. Another id reads
/// the consumer's own pending entries above it (its history, "0": all of them; this never
/// blocks and replies even when empty), raising their delivery count; entries deleted since
/// are StreamEntry::deleted.
/// `block`: wait up to this long for new entries when none are there (0: forever); the
/// command then runs on a connection of its own. A count of zero or less is no limit.
/// Error::no_group when a key or the group does not exist.
struct xreadgroup {
  std::string_view group;
  std::string_view consumer;
  ArgList<std::string_view> keys{};
  ArgList<std::string_view> ids{};
  std::optional<std::int64_t> count{};
  std::optional<std::chrono::milliseconds> block{};
  bool noack = false;  ///< delivered entries are not made pending (at-most-once)

  using reply_type = rediskit::detail::StreamsReply;
  using wire_type = rediskit::detail::StreamsWire;
  static reply_type from_wire(wire_type&& w) {
    return rediskit::detail::streams_from_wire(std::move(w));
  }
  bool blocking() const noexcept { return block.has_value(); }
  std::chrono::milliseconds block_timeout() const noexcept {
    return block.value_or(std::chrono::milliseconds(0));
  }
  ArgList<std::string_view> watch_keys() const noexcept { return keys; }
  template <class W>
  void write(W& w) const {
    w("XREADGROUP", "GROUP", group, consumer);
    if (count) w("COUNT", *count);
    if (block) w("BLOCK", block->count());
    if (noack) w("NOACK");
    w("STREAMS", keys);
    rediskit::detail::write_stream_ids(w, keys, ids);
  }
};

/// XACK key group id [id ...] -> how many of the ids were pending in the group and are now
/// acknowledged (0 when the key or the group does not exist). One malformed id fails the
/// whole command.
struct xack {
  std::string_view key;
  std::string_view group;
  ArgList<std::string_view> ids{};
  using reply_type = std::int64_t;
  template <class W>
  void write(W& w) const {
    w("XACK", key, group, ids);
  }
};

/// XPENDING key group -> the summary of the group's pending entries (PendingSummary).
/// Error::no_group when the key or the group does not exist.
struct xpending {
  std::string_view key;
  std::string_view group;
  using reply_type = PendingSummary;
  using wire_type = std::tuple<std::int64_t, std::optional<std::string>, std::optional<std::string>,
                               std::optional<std::vector<std::pair<std::string, std::int64_t>>>>;
  static reply_type from_wire(wire_type&& w) {
    auto& [count, min_id, max_id, consumers] = w;
    return {
        count, std::move(min_id), std::move(max_id),
        consumers ? std::move(*consumers) : std::vector<std::pair<std::string, std::int64_t>>{}};
  }
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("XPENDING", key, group);
  }
};

/// XPENDING key group [IDLE ms] start end count [consumer] -> the pending entries with ids in
/// [start, end] (bounds as for xrange), in id order, at most `count`; only `consumer`'s when
/// given (none if it does not exist); only those idle for at least `min_idle` when given.
/// Error::no_group when the key or the group does not exist.
struct xpending_range {
  std::string_view key;
  std::string_view group;
  std::string_view start = "-";
  std::string_view end = "+";
  std::int64_t count = 100;
  std::optional<std::string_view> consumer{};
  std::optional<std::chrono::milliseconds> min_idle{};
  using reply_type = std::vector<PendingEntry>;
  using wire_type = std::vector<std::tuple<std::string, std::string, std::int64_t, std::int64_t>>;
  static reply_type from_wire(wire_type&& w) {
    reply_type out;
    out.reserve(w.size());
    for (auto& [id, consumer, idle, n] : w)
      out.push_back({std::move(id), std::move(consumer), idle, n});
    return out;
  }
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("XPENDING", key, group);
    if (min_idle) w("IDLE", min_idle->count());
    w(start, end, count);
    if (consumer) w(*consumer);
  }
};

/// XCLAIM key group consumer min-idle-time id [id ...] [IDLE ms] [TIME unix-ms]
/// [RETRYCOUNT n] [FORCE] [LASTID id] -> the entries now pending for `consumer`: those of
/// `ids` pending in the group and idle for at least `min_idle` (their delivery count is raised,
/// their idle time reset, or set by `idle` / `time_unix_ms`). Pending ids whose entry was
/// deleted are dropped from the pending list and left out. `force`: ids in the stream but not
/// pending become pending. Error::no_group when the key or the group does not exist.
struct xclaim {
  std::string_view key;
  std::string_view group;
  std::string_view consumer;
  std::chrono::milliseconds min_idle{0};
  ArgList<std::string_view> ids{};
  std::optional<std::chrono::milliseconds> idle{};
  std::optional<std::int64_t> time_unix_ms{};
  std::optional<std::int64_t> retry_count{};  ///< sets the delivery count instead of raising it
  bool force = false;
  std::string_view last_id{};  ///< LASTID: raises the group's last delivered id (if above)
  using reply_type = std::vector<StreamEntry>;
  using wire_type = rediskit::detail::StreamEntriesWire;
  static reply_type from_wire(wire_type&& w) {
    return rediskit::detail::entries_from_wire(std::move(w));
  }
  template <class W>
  void write(W& w) const {
    rediskit::detail::write_xclaim(w, *this, false);
  }
};

/// XCLAIM ... JUSTID -> the ids claimed, as xclaim (same fields), except that delivery counts
/// are not raised (unless `retry_count` sets them).
struct xclaim_justid {
  std::string_view key;
  std::string_view group;
  std::string_view consumer;
  std::chrono::milliseconds min_idle{0};
  ArgList<std::string_view> ids{};
  std::optional<std::chrono::milliseconds> idle{};
  std::optional<std::int64_t> time_unix_ms{};
  std::optional<std::int64_t> retry_count{};
  bool force = false;
  std::string_view last_id{};
  using reply_type = std::vector<std::string>;
  template <class W>
  void write(W& w) const {
    rediskit::detail::write_xclaim(w, *this, true);
  }
};

/// XAUTOCLAIM key group consumer min-idle-time start [COUNT n] -> one step over the group's
/// pending list from `start` ("0-0" at first, then the previous page's `next`): the entries
/// idle for at least `min_idle` pass to `consumer` (their delivery count is raised), at most
/// `count` (default 100; must be > 0) including the deleted ones reported (see AutoClaimPage).
/// Error::no_group when the key or the group does not exist.
struct xautoclaim {
  std::string_view key;
  std::string_view group;
  std::string_view consumer;
  std::chrono::milliseconds min_idle{0};
  std::string_view start = "0-0";
  std::optional<std::int64_t> count{};
  using reply_type = AutoClaimPage;
  using wire_type =
      std::tuple<std::string, rediskit::detail::StreamEntriesWire, std::vector<std::string>>;
  static reply_type from_wire(wire_type&& w) {
    auto& [next, entries, deleted] = w;
    return {std::move(next), rediskit::detail::entries_from_wire(std::move(entries)),
            std::move(deleted)};
  }
  template <class W>
  void write(W& w) const {
    w("XAUTOCLAIM", key, group, consumer, min_idle.count(), start);
    if (count) w("COUNT", *count);
  }
};

/// XAUTOCLAIM ... JUSTID -> as xautoclaim with ids only; delivery counts are not raised.
struct xautoclaim_justid {
  std::string_view key;
  std::string_view group;
  std::string_view consumer;
  std::chrono::milliseconds min_idle{0};
  std::string_view start = "0-0";
  std::optional<std::int64_t> count{};
  using reply_type = AutoClaimIdsPage;
  using wire_type = std::tuple<std::string, std::vector<std::string>, std::vector<std::string>>;
  static reply_type from_wire(wire_type&& w) {
    auto& [next, ids, deleted] = w;
    return {std::move(next), std::move(ids), std::move(deleted)};
  }
  template <class W>
  void write(W& w) const {
    w("XAUTOCLAIM", key, group, consumer, min_idle.count(), start);
    if (count) w("COUNT", *count);
    w("JUSTID");
  }
};

}  // namespace rediskit::cmd
