// MemoryBackend: sets commands (see engine.hpp for the rules of run() overloads).
//
// Multi-key commands (SINTER, SUNION, SDIFF, SINTERCARD) look every key up first, as
// redis-server 7.0 does: a key of another type fails the command with WRONGTYPE even when an
// earlier key is missing. SINTER walks the smallest set and probes the others, so it costs
// O(smallest * keys) whatever the size of the larger sets.
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/cmd/sets.hpp>
#include <rediskit/detail/glob.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace rediskit::detail::mem {

namespace set_impl {

/// Visits every member in slot order: insertion order until deletions free slots.
template <class F>
void each_in_order(Set const& s, F&& f) {
  s.scan(0, s.size(), [&](std::string const& m, Empty) { f(m); });
}

/// The sets named by `keys`, in order (nullptr for a missing key); empty with ctx failed
/// (WRONGTYPE) when any key holds another type.
inline std::vector<Set*> lookup_all(Ctx& ctx, ArgList<std::string_view> const& keys) {
  std::vector<Set*> sets;
  sets.reserve(keys.size());
  keys.for_each([&](std::string_view k) {
    if (!ctx.failed()) sets.push_back(ctx.db.read<Set>(ctx, k));
  });
  if (ctx.failed()) sets.clear();
  return sets;
}

/// Calls f(member) for each member of the intersection until f returns false. The smallest
/// set is walked; the others are probed smallest first (a miss is found soonest).
template <class F>
void intersect(std::vector<Set*> sets, F&& f) {
  if (sets.empty()) return;
  for (Set const* s : sets)
    if (!s) return;  // a missing key is an empty set
  std::sort(sets.begin(), sets.end(),
            [](Set const* a, Set const* b) { return a->size() < b->size(); });
  Set& first = *sets.front();
  for (std::size_t slot = 0, n = first.slot_count(); slot < n; ++slot) {
    Set::Node const* node = first.node_at(slot);
    if (!node) continue;
    bool in_all = true;
    for (std::size_t i = 1; i < sets.size() && in_all; ++i)
      in_all = sets[i] == &first || sets[i]->contains(node->first);
    if (in_all && !f(node->first)) return;
  }
}

}  // namespace set_impl

inline std::int64_t run(Ctx& ctx, cmd::sadd const& c) {
  Set* s = ctx.db.create<Set>(ctx, c.key);
  if (!s) return 0;
  std::int64_t added = 0;
  c.members.for_each([&](std::string_view m) { added += s->emplace(m).second ? 1 : 0; });
  return added;
}

inline std::int64_t run(Ctx& ctx, cmd::srem const& c) {
  Set* s = ctx.db.write<Set>(ctx, c.key);
  if (!s) return 0;
  std::int64_t n = 0;
  c.members.for_each([&](std::string_view m) { n += s->erase(m) ? 1 : 0; });
  return n;
}

inline std::vector<std::string> run(Ctx& ctx, cmd::smembers const& c) {
  std::vector<std::string> out;
  Set const* s = ctx.db.read<Set>(ctx, c.key);
  if (!s) return out;
  out.reserve(s->size());
  set_impl::each_in_order(*s, [&](std::string const& m) { out.push_back(m); });
  return out;
}

inline bool run(Ctx& ctx, cmd::sismember const& c) {
  Set const* s = ctx.db.read<Set>(ctx, c.key);
  return s && s->contains(c.member);
}

inline std::vector<bool> run(Ctx& ctx, cmd::smismember const& c) {
  Set const* s = ctx.db.read<Set>(ctx, c.key);
  if (ctx.failed()) return {};
  std::vector<bool> out;
  out.reserve(c.members.size());
  c.members.for_each([&](std::string_view m) { out.push_back(s && s->contains(m)); });
  return out;
}

inline std::int64_t run(Ctx& ctx, cmd::scard const& c) {
  Set const* s = ctx.db.read<Set>(ctx, c.key);
  return s ? static_cast<std::int64_t>(s->size()) : 0;
}

inline std::vector<std::string> run(Ctx& ctx, cmd::sinter const& c) {
  std::vector<std::string> out;
  set_impl::intersect(set_impl::lookup_all(ctx, c.keys), [&](std::string const& m) {
    out.push_back(m);
    return true;
  });
  return out;
}

inline std::int64_t run(Ctx& ctx, cmd::sintercard const& c) {
  if (c.keys.empty()) return ctx.fail("ERR numkeys should be greater than 0"), 0;
  if (c.limit && *c.limit < 0) return ctx.fail("ERR LIMIT can't be negative"), 0;
  std::int64_t const limit = c.limit.value_or(0);
  std::int64_t n = 0;
  set_impl::intersect(set_impl::lookup_all(ctx, c.keys),
                      [&](std::string const&) { return !(++n == limit); });
  return n;
}

inline std::vector<std::string> run(Ctx& ctx, cmd::sunion const& c) {
  std::vector<std::string> out;
  std::vector<Set*> const sets = set_impl::lookup_all(ctx, c.keys);
  Set const* largest = nullptr;
  std::size_t total = 0;
  for (Set const* s : sets) {
    if (!s) continue;
    total += s->size();
    if (!largest || s->size() > largest->size()) largest = s;
  }
  if (!largest) return out;
  // The largest set needs no dedup against itself: only the others' members are probed.
  out.reserve(total);
  set_impl::each_in_order(*largest, [&](std::string const& m) { out.push_back(m); });
  std::unordered_set<std::string_view> extra;
  for (Set const* s : sets) {
    if (!s || s == largest) continue;
    set_impl::each_in_order(*s, [&](std::string const& m) {
      if (!largest->contains(m) && extra.insert(m).second) out.push_back(m);
    });
  }
  return out;
}

inline std::vector<std::string> run(Ctx& ctx, cmd::sdiff const& c) {
  std::vector<std::string> out;
  std::vector<Set*> const sets = set_impl::lookup_all(ctx, c.keys);
  if (sets.empty() || !sets.front()) return out;
  Set const& first = *sets.front();
  set_impl::each_in_order(first, [&](std::string const& m) {
    for (std::size_t i = 1; i < sets.size(); ++i)
      if (sets[i] && sets[i]->contains(m)) return;
    out.push_back(m);
  });
  return out;
}

inline SetScanPage run(Ctx& ctx, cmd::sscan const& c) {
  SetScanPage page;
  Set const* s = ctx.db.read<Set>(ctx, c.key);
  if (!s) return page;  // missing: [0, []]
  if (c.count && *c.count < 1) return ctx.fail("ERR syntax error"), page;
  auto const count = static_cast<std::size_t>(c.count.value_or(10));
  page.cursor = s->scan(c.cursor, count, [&](std::string const& m, Empty) {
    if (!c.match || rediskit::detail::scan_match(*c.match, m)) page.members.push_back(m);
  });
  return page;
}

}  // namespace rediskit::detail::mem
