// MemoryBackend: list commands (see engine.hpp for the rules of run() overloads).
//
// BLMOVE's run() makes one attempt, as LMOVE; the waiting (until a write to its source, or its
// timeout) is MemoryBackend's (memory_backend.hpp), which runs it again on every write.
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/cmd/lists.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rediskit::detail::mem {

namespace ls {

/// Indexes [first, first + count) of LRANGE / LTRIM's start and stop (negative from the end,
/// clamped); count 0 when nothing is in range.
struct IndexSpan {
  std::size_t first = 0;
  std::size_t count = 0;
};

inline IndexSpan index_span(std::size_t size, std::int64_t start, std::int64_t stop) {
  auto const len = static_cast<std::int64_t>(size);
  if (start < 0) start += len;
  if (stop < 0) stop += len;
  if (start < 0) start = 0;
  if (start > stop || start >= len) return {};
  if (stop >= len) stop = len - 1;
  return {static_cast<std::size_t>(start), static_cast<std::size_t>(stop - start + 1)};
}

inline std::int64_t push(Ctx& ctx, std::string_view key, ArgList<std::string_view> const& values,
                         bool left) {
  List* l = ctx.db.create<List>(ctx, key);
  if (!l) return 0;
  values.for_each([&](std::string_view v) {
    if (left)
      l->push_front(std::string(v));
    else
      l->push_back(std::string(v));
  });
  return static_cast<std::int64_t>(l->size());
}

inline std::optional<std::string> pop(Ctx& ctx, std::string_view key, bool left) {
  List* l = ctx.db.write<List>(ctx, key);
  if (!l || l->empty()) return std::nullopt;
  return left ? l->pop_front() : l->pop_back();
}

inline std::optional<std::vector<std::string>> pop_count(Ctx& ctx, std::string_view key,
                                                         std::int64_t count, bool left) {
  if (count < 0) return ctx.fail("ERR value is out of range, must be positive"), std::nullopt;
  List* l = ctx.db.write<List>(ctx, key);
  if (!l) return std::nullopt;
  std::vector<std::string> out;
  while (!l->empty() && static_cast<std::uint64_t>(out.size()) < static_cast<std::uint64_t>(count))
    out.push_back(left ? l->pop_front() : l->pop_back());
  return out;
}

// LMOVE, and one attempt of BLMOVE.
inline std::optional<std::string> move(Ctx& ctx, std::string_view source,
                                       std::string_view destination, ListEnd from, ListEnd to) {
  List* src = ctx.db.write<List>(ctx, source);
  if (!src || src->empty()) return std::nullopt;
  ctx.db.read<List>(ctx, destination);  // WRONGTYPE before anything moves
  if (ctx.failed()) return std::nullopt;
  std::string v = from == ListEnd::left ? src->pop_front() : src->pop_back();
  List* dst = ctx.db.create<List>(ctx, destination);  // src itself when the same key
  if (to == ListEnd::left)
    dst->push_front(v);
  else
    dst->push_back(v);
  return v;
}

}  // namespace ls

inline std::int64_t run(Ctx& ctx, cmd::lpush const& c) {
  return ls::push(ctx, c.key, c.values, true);
}

inline std::int64_t run(Ctx& ctx, cmd::rpush const& c) {
  return ls::push(ctx, c.key, c.values, false);
}

inline std::optional<std::string> run(Ctx& ctx, cmd::lpop const& c) {
  return ls::pop(ctx, c.key, true);
}

inline std::optional<std::string> run(Ctx& ctx, cmd::rpop const& c) {
  return ls::pop(ctx, c.key, false);
}

inline std::optional<std::vector<std::string>> run(Ctx& ctx, cmd::lpop_count const& c) {
  return ls::pop_count(ctx, c.key, c.count, true);
}

inline std::optional<std::vector<std::string>> run(Ctx& ctx, cmd::rpop_count const& c) {
  return ls::pop_count(ctx, c.key, c.count, false);
}

inline std::vector<std::string> run(Ctx& ctx, cmd::lrange const& c) {
  List const* l = ctx.db.read<List>(ctx, c.key);
  if (!l) return {};
  ls::IndexSpan const s = ls::index_span(l->size(), c.start, c.stop);
  auto const first = l->items.begin() + static_cast<std::ptrdiff_t>(s.first);
  return std::vector<std::string>(first, first + static_cast<std::ptrdiff_t>(s.count));
}

inline bool run(Ctx& ctx, cmd::ltrim const& c) {
  List* l = ctx.db.write<List>(ctx, c.key);
  if (!l) return !ctx.failed();
  ls::IndexSpan const s = ls::index_span(l->size(), c.start, c.stop);
  std::size_t const keep_end = s.first + s.count;
  while (l->size() > keep_end)
    l->pop_back();
  for (std::size_t i = 0; i < s.first && !l->empty(); ++i)
    l->pop_front();
  return true;
}

inline std::int64_t run(Ctx& ctx, cmd::llen const& c) {
  List const* l = ctx.db.read<List>(ctx, c.key);
  return l ? static_cast<std::int64_t>(l->size()) : 0;
}

inline std::int64_t run(Ctx& ctx, cmd::lrem const& c) {
  List* l = ctx.db.write<List>(ctx, c.key);
  if (!l) return 0;
  // How many may go: |count|, or all of them for 0 (INT64_MIN's magnitude fits in uint64).
  std::uint64_t const limit = c.count == 0  ? UINT64_MAX
                              : c.count > 0 ? static_cast<std::uint64_t>(c.count)
                                            : 0 - static_cast<std::uint64_t>(c.count);
  auto& items = l->items;
  std::size_t const n = items.size();
  std::vector<bool> drop(n, false);
  std::uint64_t removed = 0;
  for (std::size_t k = 0; k < n && removed < limit; ++k) {
    std::size_t const i = c.count < 0 ? n - 1 - k : k;
    if (items[i] == c.element) {
      drop[i] = true;
      ++removed;
    }
  }
  if (removed == 0) return 0;
  std::size_t out = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (!drop[i]) {
      if (out != i) items[out] = std::move(items[i]);
      ++out;
    }
  items.erase(items.begin() + static_cast<std::ptrdiff_t>(out), items.end());
  l->recount();
  return static_cast<std::int64_t>(removed);
}

inline std::optional<std::string> run(Ctx& ctx, cmd::lindex const& c) {
  List const* l = ctx.db.read<List>(ctx, c.key);
  if (!l) return std::nullopt;
  auto const len = static_cast<std::int64_t>(l->size());
  std::int64_t const i = c.index < 0 ? c.index + len : c.index;
  if (i < 0 || i >= len) return std::nullopt;
  return l->items[static_cast<std::size_t>(i)];
}

inline bool run(Ctx& ctx, cmd::lset const& c) {
  List* l = ctx.db.write<List>(ctx, c.key);
  if (!l) return ctx.failed() ? false : ctx.fail("ERR no such key");
  auto const len = static_cast<std::int64_t>(l->size());
  std::int64_t const i = c.index < 0 ? c.index + len : c.index;
  if (i < 0 || i >= len) return ctx.fail("ERR index out of range");
  l->replace(static_cast<std::size_t>(i), std::string(c.element));
  return true;
}

inline std::optional<std::string> run(Ctx& ctx, cmd::lmove const& c) {
  return ls::move(ctx, c.source, c.destination, c.from, c.to);
}

inline std::optional<std::string> run(Ctx& ctx, cmd::blmove const& c) {
  if (c.timeout.count() < 0) return ctx.fail("ERR timeout is negative"), std::nullopt;
  return ls::move(ctx, c.source, c.destination, c.from, c.to);
}

}  // namespace rediskit::detail::mem
