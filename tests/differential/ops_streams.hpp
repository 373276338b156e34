// Differential ops: stream and consumer-group commands, MemoryBackend against redis-server.
//
// Ids: entries get explicit ids that grow with a counter shared by every op ("<tick>-*": the
// same id on both backends), since generated ids ("*") follow each backend's clock; "*" is
// only used on keys of its own ("xauto:N") whose replies are compared by shape. Other ids are
// drawn near the counter, so that they mostly name entries that exist.
//
// Time: idle thresholds are 0 or an hour, and idle times set by XCLAIM are hours, so that
// what qualifies never depends on how fast the ops run; idle times in replies are compared as
// "over half an hour or not".
//
// Approximate trimming ("~") removes whole internal nodes on a server and trims exactly in
// memory: it is only drawn where both must agree (nothing to remove, or everything).
#pragma once

#include "support/differential.hpp"

#include <rediskit/commands.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit::test {


namespace streams_ops {

/// The millisecond part of the next explicit id (shared by both backends' commands).
inline std::uint64_t& tick() {
  static std::uint64_t t = 0;
  return t;
}

/// A stream key: mostly one of three (so that groups meet entries), else Gen's pools (other
/// families' keys: WRONGTYPE; glob-special and binary names).
inline std::string stream_key(Gen& g) {
  if (g.coin(70)) return "x:" + std::to_string(g.below(3));
  return g.key("x");
}

inline std::string group(Gen& g) {
  static std::vector<std::string> const names = {"g1", "g2", std::string("g\0z", 3)};
  return g.coin(55) ? "g0" : g.pick(names);
}

inline std::string consumer_name(Gen& g) {
  static std::vector<std::string> const names = {"c0", "c1", "c2", "", std::string("c\0", 2)};
  return g.pick(names);
}

inline std::string invalid_id(Gen& g) {
  static std::vector<std::string> const bad = {
      "x", "1-x", "-1", "", "1-2-3", "(", "1-", "18446744073709551616", std::string("1\0", 2)};
  return g.pick(bad);
}

/// An id at or a little below the counter: mostly an entry that exists (or existed).
inline std::string recent_id(Gen& g) {
  std::uint64_t const back = g.below(25);
  std::uint64_t const ms = tick() > back ? tick() - back : 0;
  switch (g.below(10)) {
    case 0:
      return std::to_string(ms);
    case 1:
      return std::to_string(ms) + "-1";
    case 2:
      return "0" + std::to_string(ms) + "-0";  // leading zero: still that id
    default:
      return std::to_string(ms) + "-0";
  }
}

/// An id argument of XACK, XDEL, XCLAIM: mostly recent, sometimes malformed.
inline std::string some_id(Gen& g) {
  return g.coin(6) ? invalid_id(g) : recent_id(g);
}

/// A range bound ("-", "+", "(id", "ms", recent ids, now and then malformed).
inline std::string bound(Gen& g) {
  switch (g.below(14)) {
    case 0:
      return "-";
    case 1:
      return "+";
    case 2:
    case 3:
      return "(" + recent_id(g);
    case 4:
      return g.coin() ? "0" : "(0-0";
    case 5:
      return g.coin() ? invalid_id(g) : "(18446744073709551615-18446744073709551615";
    default:
      return recent_id(g);
  }
}

inline std::optional<std::int64_t> maybe_count(Gen& g, std::int64_t lo, std::int64_t hi) {
  if (g.coin(40)) return std::nullopt;
  return g.between(lo, hi);
}

inline std::int64_t unix_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// The memory backend's length of `key` (0 when missing or not a stream).
inline std::int64_t mem_len(Pair& p, std::string const& key) {
  auto [ec, n] = p.mem.exec(cmd::xlen{key});
  return ec ? 0 : n;
}

/// A trimming both backends must agree on. `adding`: for XADD (one more entry first).
inline StreamTrim trim(Gen& g, Pair& p, std::string const& key, bool adding) {
  StreamTrim t;
  switch (g.below(10)) {
    case 0:
    case 1:
    case 2:
      t = StreamTrim::max_len(g.between(0, 8));
      break;
    case 3:
    case 4:
      t = StreamTrim::min_id("");
      break;   // filled below
    case 5: {  // approximate, nothing to remove
      std::int64_t const len = mem_len(p, key) + (adding ? 1 : 0);
      t = StreamTrim::max_len(len + g.between(0, 3), true);
      if (g.coin(30)) t.limit = g.coin() ? 0 : 10000;
      break;
    }
    case 6:  // approximate, everything to remove (now and then)
      if (g.coin(40))
        t = g.coin() ? StreamTrim::max_len(0, true) : StreamTrim::min_id("", true);
      else
        t = StreamTrim::max_len(g.between(10, 30));
      break;
    case 7:  // approximate MINID below everything: nothing to remove
      t = StreamTrim::min_id("0-1", true);
      break;
    case 8: {  // errors
      switch (g.below(4)) {
        case 0:
          t = StreamTrim::max_len(-1);
          break;
        case 1:
          t = StreamTrim::max_len(2);
          t.limit = 5;
          break;  // LIMIT without ~
        case 2:
          t = StreamTrim::max_len(2, true);
          t.limit = -1;
          break;
        default:
          t = StreamTrim::min_id("", false);
          break;  // invalid id, set below
      }
      break;
    }
    default:
      t = StreamTrim::max_len(g.between(0, 3));
      break;
  }
  return t;
}

/// Storage for the MINID text of a trim (StreamTrim holds a view).
inline std::string minid_for(Gen& g, StreamTrim const& t) {
  if (t.strategy != StreamTrim::Strategy::minid) return {};
  if (t.approximate) return std::to_string(tick() + 1000);  // above everything
  return g.coin(10) ? invalid_id(g) : recent_id(g);
}

/// Pending entries with idle times reduced to "over half an hour or not".
struct IdleBuckets {
  std::vector<PendingEntry> operator()(std::vector<PendingEntry> v) const {
    for (auto& e : v)
      e.idle_ms = e.idle_ms >= 1'800'000 ? 1 : 0;
    return v;
  }
};

/// A generated id: compared by shape only.
struct IdShape {
  std::optional<bool> operator()(std::optional<std::string> const& id) const {
    if (!id) return std::nullopt;
    return StreamId::parse(*id).has_value();
  }
};

inline std::chrono::milliseconds idle_threshold(Gen& g) {
  return g.coin(30) ? std::chrono::milliseconds(3'600'000) : std::chrono::milliseconds(0);
}

template <class C>
void claim_options(Gen& g, C& c, std::string& last_id) {
  if (g.coin(25)) c.idle = std::chrono::milliseconds(g.coin() ? 7'200'000 : 0);
  if (g.coin(10)) c.time_unix_ms = unix_now_ms() - 7'200'000;
  if (g.coin(20)) c.retry_count = g.between(0, 5);
  c.force = g.coin(15);
  if (g.coin(10)) {
    last_id = recent_id(g);
    c.last_id = last_id;
  }
}

}  // namespace streams_ops

inline void register_streams_ops(OpRegistry& r) {
  using namespace streams_ops;
  using FieldList = std::vector<std::pair<std::string, std::string>>;

  r.add("xadd", [](Gen& g, Pair& p) {
    std::string const k = stream_key(g);
    std::string out;
    for (std::size_t round = 0, rounds = 1 + g.below(4); round < rounds && out.empty(); ++round) {
      std::string id;
      switch (g.below(24)) {
        case 0:
          id = recent_id(g);
          break;  // mostly not above the last id
        case 1:
          id = invalid_id(g);
          break;
        case 2:
          id = g.coin() ? "0-0" : "0";
          break;
        case 3:
          id = std::to_string(++tick()) + "-" + std::to_string(g.below(3));
          break;
        case 4:
          id = std::to_string(++tick());
          break;
        default:
          id = std::to_string(++tick()) + "-*";
          break;
      }
      FieldList fields;
      std::size_t const n = g.coin(3) ? 0 : 1 + g.below(3);
      for (std::size_t i = 0; i < n; ++i)
        fields.emplace_back(g.field(), g.value());
      cmd::xadd c{.key = k, .id = id, .fields = fields, .nomkstream = g.coin(10)};
      std::string minid;
      if (g.coin(15)) {
        c.trim = trim(g, p, k, true);
        minid = minid_for(g, *c.trim);
        if (c.trim->strategy == StreamTrim::Strategy::minid) c.trim->minid = minid;
      }
      out = p.compare(c);
    }
    return out;
  });

  r.add("xadd_generated", [](Gen& g, Pair& p) {
    std::string const key = "xauto:" + std::to_string(g.below(3));
    FieldList const fields = {{g.field(), g.value()}};
    std::string out =
        p.compare(cmd::xadd{.key = key, .fields = fields, .nomkstream = g.coin(10)}, IdShape{});
    if (out.empty()) out = p.compare(cmd::xlen{key});
    return out;
  });

  r.add("xrange", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), start = bound(g), end = bound(g);
    return p.compare(
        cmd::xrange{.key = key, .start = start, .end = end, .count = maybe_count(g, -1, 6)});
  });

  r.add("xrevrange", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), start = bound(g), end = bound(g);
    return p.compare(
        cmd::xrevrange{.key = key, .end = end, .start = start, .count = maybe_count(g, -1, 6)});
  });

  r.add("xlen", [](Gen& g, Pair& p) { return p.compare(cmd::xlen{stream_key(g)}); });

  r.add("xdel", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g);
    std::vector<std::string> ids;
    for (std::size_t i = 0, n = 1 + g.below(3); i < n; ++i)
      ids.push_back(some_id(g));
    return p.compare(cmd::xdel{.key = key, .ids = ids});
  });

  r.add("xtrim", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g);
    cmd::xtrim c{.key = key, .trim = trim(g, p, key, false)};
    std::string const minid = minid_for(g, c.trim);
    if (c.trim.strategy == StreamTrim::Strategy::minid) c.trim.minid = minid;
    return p.compare(c);
  });

  r.add("xgroup_create", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g);
    std::string id;
    switch (g.below(8)) {
      case 0:
        id = "0";
        break;
      case 1:
        id = recent_id(g);
        break;
      case 2:
        id = g.coin() ? invalid_id(g) : "-";
        break;
      default:
        id = "$";
        break;
    }
    cmd::xgroup_create c{.key = key, .group = grp, .id = id, .mkstream = g.coin(40)};
    if (g.coin(15)) c.entries_read = g.between(-2, 5);
    return p.compare(c);
  });

  r.add("xgroup_setid", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g);
    std::string id;
    switch (g.below(8)) {
      case 0:
        id = "0";
        break;
      case 1:
        id = "-";
        break;
      case 2:
        id = invalid_id(g);
        break;
      case 3:
        id = "$";
        break;
      default:
        id = recent_id(g);
        break;
    }
    cmd::xgroup_setid c{.key = key, .group = grp, .id = id};
    if (g.coin(15)) c.entries_read = g.between(-2, 5);
    return p.compare(c);
  });

  r.add("xgroup_destroy", [](Gen& g, Pair& p) {
    if (!g.coin(30)) return std::string();  // rarely: a group takes a while to fill
    std::string const key = stream_key(g), grp = group(g);
    return p.compare(cmd::xgroup_destroy{.key = key, .group = grp});
  });

  r.add("xgroup_createconsumer", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g), c = consumer_name(g);
    return p.compare(cmd::xgroup_createconsumer{.key = key, .group = grp, .consumer = c});
  });

  r.add("xgroup_delconsumer", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g), c = consumer_name(g);
    return p.compare(cmd::xgroup_delconsumer{.key = key, .group = grp, .consumer = c});
  });

  r.add("xreadgroup", [](Gen& g, Pair& p) {
    std::string const grp = group(g), c = consumer_name(g);
    std::vector<std::string> keys, ids;
    for (std::size_t i = 0, n = g.coin(80) ? 1 : 2; i < n; ++i)
      keys.push_back(stream_key(g));
    bool const fresh = g.coin(60);  // ">" for every key (ids left empty)
    if (!fresh) {
      for (std::size_t i = 0; i < keys.size(); ++i) {
        switch (g.below(10)) {
          case 0:
            ids.push_back(some_id(g));
            break;
          case 1:
            ids.push_back(g.coin(20) ? "$" : recent_id(g));
            break;
          case 2:
          case 3:
            ids.push_back("0");
            break;
          default:
            ids.push_back(">");
            break;
        }
      }
      if (g.coin(3)) ids.push_back("0");  // unbalanced
    }
    cmd::xreadgroup read{.group = grp,
                         .consumer = c,
                         .keys = keys,
                         .ids = ids,
                         .count = maybe_count(g, -1, 4),
                         .noack = g.coin(15)};
    return p.compare(read);
  });

  r.add("xack", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g);
    std::vector<std::string> ids;
    for (std::size_t i = 0, n = 1 + g.below(3); i < n; ++i)
      ids.push_back(some_id(g));
    return p.compare(cmd::xack{.key = key, .group = grp, .ids = ids});
  });

  r.add("xpending", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g);
    return p.compare(cmd::xpending{.key = key, .group = grp});
  });

  r.add("xpending_range", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g), start = bound(g), end = bound(g);
    std::string const who = consumer_name(g);
    cmd::xpending_range c{
        .key = key, .group = grp, .start = start, .end = end, .count = g.between(-1, 6)};
    if (g.coin(30)) c.consumer = who;
    if (g.coin(25)) c.min_idle = idle_threshold(g);
    return p.compare(c, IdleBuckets{});
  });

  r.add("xclaim", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g), who = consumer_name(g);
    std::vector<std::string> ids;
    for (std::size_t i = 0, n = 1 + g.below(3); i < n; ++i)
      ids.push_back(some_id(g));
    std::string last_id;
    cmd::xclaim c{
        .key = key, .group = grp, .consumer = who, .min_idle = idle_threshold(g), .ids = ids};
    claim_options(g, c, last_id);
    return p.compare(c);
  });

  r.add("xclaim_justid", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g), who = consumer_name(g);
    std::vector<std::string> ids;
    for (std::size_t i = 0, n = 1 + g.below(3); i < n; ++i)
      ids.push_back(some_id(g));
    std::string last_id;
    cmd::xclaim_justid c{
        .key = key, .group = grp, .consumer = who, .min_idle = idle_threshold(g), .ids = ids};
    claim_options(g, c, last_id);
    return p.compare(c);
  });

  r.add("xautoclaim", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g), who = consumer_name(g);
    std::string const start = g.coin(50) ? "0-0" : bound(g);
    cmd::xautoclaim c{.key = key,
                      .group = grp,
                      .consumer = who,
                      .min_idle = idle_threshold(g),
                      .start = start,
                      .count = maybe_count(g, 0, 4)};
    return p.compare(c);
  });

  r.add("xautoclaim_justid", [](Gen& g, Pair& p) {
    std::string const key = stream_key(g), grp = group(g), who = consumer_name(g);
    std::string const start = g.coin(50) ? "0-0" : bound(g);
    cmd::xautoclaim_justid c{.key = key,
                             .group = grp,
                             .consumer = who,
                             .min_idle = idle_threshold(g),
                             .start = start,
                             .count = maybe_count(g, 0, 4)};
    return p.compare(c);
  });
}


}  // namespace rediskit::test
