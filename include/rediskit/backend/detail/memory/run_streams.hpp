// MemoryBackend: stream commands (see engine.hpp for the rules of run() overloads).
//
// Redis 7.0's semantics, argument checks in the server's order and with its texts. Ids are
// parsed as the server parses them (streamGenericParseIDOrReply: "-", "+", "ms", "ms-seq",
// "ms-*" for XADD, "(id" for interval bounds; numbers through string2ull, which also takes
// leading blanks, a '+' and leading zeros, and stops at a NUL byte).
//
// Differences from a server, on purpose: approximate trimming ("~") trims exactly (a server
// removes whole internal nodes only, so it may keep more); times (delivery, idle) follow the
// engine clock (Ctx::now_ms), auto ids the wall clock (Ctx::unix_ms).
#pragma once

#include <rediskit/backend/detail/memory/engine.hpp>
#include <rediskit/backend/detail/memory/stream.hpp>
#include <rediskit/cmd/streams.hpp>
#include <rediskit/command.hpp>

#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace rediskit::detail::mem {

namespace streams {

inline constexpr std::string_view kInvalidId =
    "ERR Invalid stream ID specified as stream command argument";
inline constexpr std::string_view kNeedKey =
    "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to "
    "use the MKSTREAM option to create an empty stream automatically.";
inline constexpr std::string_view kBadStart = "ERR invalid start ID for the interval";
inline constexpr std::string_view kBadEnd = "ERR invalid end ID for the interval";

/// A C string's view of an argument: Redis reads ids and names with strcmp/%s.
inline std::string_view cstr(std::string_view s) noexcept {
  return s.substr(0, s.find('\0'));
}

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = char(x + 32);
    if (y >= 'A' && y <= 'Z') y = char(y + 32);
    if (x != y) return false;
  }
  return true;
}

/// Redis's string2ll: an optional '-', no leading zeros, no blanks, within long long.
inline bool string2ll(std::string_view s, long long& out) noexcept {
  if (s.empty() || s.size() >= 21) return false;
  if (s.size() == 1 && s[0] == '0') {
    out = 0;
    return true;
  }
  std::size_t i = 0;
  bool const negative = s[0] == '-';
  if (negative && ++i == s.size()) return false;
  if (s[i] < '1' || s[i] > '9') return false;
  unsigned long long v = static_cast<unsigned long long>(s[i++] - '0');
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    if (v > ULLONG_MAX / 10) return false;
    v *= 10;
    auto const d = static_cast<unsigned long long>(s[i] - '0');
    if (v > ULLONG_MAX - d) return false;
    v += d;
  }
  if (i < s.size()) return false;
  if (negative) {
    if (v > static_cast<unsigned long long>(-(LLONG_MIN + 1)) + 1) return false;
    out = static_cast<long long>(0ULL - v);
  } else {
    if (v > static_cast<unsigned long long>(LLONG_MAX)) return false;
    out = static_cast<long long>(v);
  }
  return true;
}

/// Redis's string2ull: string2ll (negatives refused), else strtoull's forms (leading blanks, a
/// sign, leading zeros; a '-' negates modulo 2^64).
inline bool string2ull(std::string_view s, std::uint64_t& out) noexcept {
  long long ll = 0;
  if (string2ll(s, ll)) {
    if (ll < 0) return false;
    out = static_cast<std::uint64_t>(ll);
    return true;
  }
  std::size_t i = 0;
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
  };
  while (i < s.size() && space(s[i]))
    ++i;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  if (i == s.size() || s[i] < '0' || s[i] > '9') return false;
  std::uint64_t v = 0;
  bool overflow = false;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    auto const d = static_cast<std::uint64_t>(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      overflow = true;
    else
      v = v * 10 + d;
  }
  if (i != s.size() || overflow) return false;
  out = negative ? 0 - v : v;
  return true;
}

/// Every id of a list of explicit ids (XDEL, XACK: "-" and "+" refused); false when one is
/// not an id.
inline bool parse_id_list(ArgList<std::string_view> const& list, std::vector<StreamId>& ids);

/// streamGenericParseIDOrReply. `strict` refuses "-" and "+"; `seq_given` (XADD only) enables
/// "ms-*" and tells whether the sequence was given.
inline bool parse_id(std::string_view arg, StreamId& id, std::uint64_t missing_seq, bool strict,
                     bool* seq_given = nullptr) noexcept {
  if (arg.size() > 127) return false;
  std::string_view const buf = cstr(arg);
  if (strict && (buf == "-" || buf == "+")) return false;
  if (seq_given) *seq_given = true;
  if (buf == "-") {
    id = StreamId::min();
    return true;
  }
  if (buf == "+") {
    id = StreamId::max();
    return true;
  }
  auto const dash = buf.find('-');
  std::uint64_t ms = 0, seq = missing_seq;
  if (!string2ull(buf.substr(0, dash), ms)) return false;
  if (dash != std::string_view::npos) {
    std::string_view const tail = buf.substr(dash + 1);
    if (seq_given && tail == "*") {
      seq = 0;
      *seq_given = false;
    } else if (!string2ull(tail, seq)) {
      return false;
    }
  }
  id = {ms, seq};
  return true;
}

inline bool parse_id_list(ArgList<std::string_view> const& list, std::vector<StreamId>& ids) {
  ids.reserve(list.size());
  bool bad = false;
  list.for_each([&](std::string_view a) {
    StreamId id;
    if (!bad && parse_id(a, id, 0, true))
      ids.push_back(id);
    else
      bad = true;
  });
  return !bad;
}

/// streamParseIntervalIDOrReply: "(id" is exclusive (then strict), else as parse_id.
inline bool parse_interval(std::string_view arg, StreamId& id, bool& exclusive,
                           std::uint64_t missing_seq) noexcept {
  exclusive = arg.size() > 1 && arg[0] == '(';
  if (exclusive) return parse_id(arg.substr(1), id, missing_seq, true);
  return parse_id(arg, id, missing_seq, false);
}

/// streamIncrID: false (and 0-0, as the server leaves it) past the largest id.
inline bool incr(StreamId& id) noexcept {
  if (id.seq == UINT64_MAX) {
    if (id.ms == UINT64_MAX) {
      id = {};
      return false;
    }
    ++id.ms;
    id.seq = 0;
  } else {
    ++id.seq;
  }
  return true;
}

/// streamDecrID: false below 0-0.
inline bool decr(StreamId& id) noexcept {
  if (id.seq == 0) {
    if (id.ms == 0) return false;
    --id.ms;
    id.seq = UINT64_MAX;
  } else {
    --id.seq;
  }
  return true;
}

/// The stream at `key`: nullptr when missing, or of another type (ctx failed: WRONGTYPE).
inline Stream* lookup(Ctx& ctx, std::string_view key, Entry** entry = nullptr) {
  Entry* e = ctx.db.lookup(key);
  if (entry) *entry = e;
  if (!e) return nullptr;
  if (Stream* s = std::get_if<Stream>(&e->value)) return s;
  ctx.fail(wrongtype_text);
  return nullptr;
}

inline Stream::Group* find_group(Stream* s, std::string_view name) {
  if (!s) return nullptr;
  auto it = s->groups.find(name);
  return it == s->groups.end() ? nullptr : &it->second;
}

inline std::string quoted(std::string_view s) {
  std::string out = "'";
  out += cstr(s);
  out += '\'';
  return out;
}

/// "NOGROUP No such key 'k' or consumer group 'g'" (XPENDING, XCLAIM, XAUTOCLAIM).
inline bool fail_no_key_or_group(Ctx& ctx, std::string_view key, std::string_view group,
                                 std::string_view tail = {}) {
  return ctx.fail("NOGROUP No such key " + quoted(key) + " or consumer group " + quoted(group) +
                  std::string(tail));
}

/// "NOGROUP No such consumer group 'g' for key name 'k'" (XGROUP).
inline bool fail_no_group(Ctx& ctx, std::string_view key, std::string_view group) {
  return ctx.fail("NOGROUP No such consumer group " + quoted(group) + " for key name " +
                  quoted(key));
}

/// Trimming arguments once checked (streamParseAddOrTrimArgsOrReply).
struct Trim {
  bool minid = false;
  std::uint64_t maxlen = 0;
  StreamId min{};
  bool approx = false;
  bool limit_given = false;
  std::uint64_t limit = 0;
};

/// The checks made while the options are read (in their order), not the final LIMIT one.
inline bool parse_trim(Ctx& ctx, StreamTrim const& t, Trim& out) {
  out.approx = t.approximate;
  if (t.strategy == StreamTrim::Strategy::maxlen) {
    if (t.maxlen < 0) return ctx.fail("ERR The MAXLEN argument must be >= 0.");
    out.maxlen = static_cast<std::uint64_t>(t.maxlen);
  } else {
    out.minid = true;
    if (!parse_id(t.minid, out.min, 0, true)) return ctx.fail(kInvalidId);
  }
  if (t.limit) {
    if (*t.limit < 0) return ctx.fail("ERR The LIMIT argument must be >= 0.");
    out.limit_given = true;
    out.limit = static_cast<std::uint64_t>(*t.limit);
  }
  return true;
}

/// The check made once every option was read.
inline bool check_trim_limit(Ctx& ctx, Trim const& t) {
  if (t.limit_given && !t.approx)
    return ctx.fail("ERR syntax error, LIMIT cannot be used without the special ~ option");
  return true;
}

/// Trims `s`: exactly, also when approximate (bounded by LIMIT, by default 10000 then, as the
/// server's 100 * stream-node-max-entries).
inline std::int64_t apply_trim(Stream& s, Trim const& t) {
  std::uint64_t const limit = t.approx ? (t.limit_given ? t.limit : 10000) : 0;
  return t.minid ? s.trim_minid(t.min, limit) : s.trim_maxlen(t.maxlen, limit);
}

inline StreamEntry make_entry(StreamId id, Stream::Fields const& f) {
  return StreamEntry{id.to_string(), f, false};
}

template <bool Reverse>
std::vector<StreamEntry> range(Ctx& ctx, std::string_view key, std::string_view start_arg,
                               std::string_view end_arg, std::optional<std::int64_t> count_arg) {
  StreamId start, end;
  bool sx = false, ex = false;
  if (!parse_interval(start_arg, start, sx, 0)) {
    ctx.fail(kInvalidId);
    return {};
  }
  if (sx && !incr(start)) {
    ctx.fail(kBadStart);
    return {};
  }
  if (!parse_interval(end_arg, end, ex, UINT64_MAX)) {
    ctx.fail(kInvalidId);
    return {};
  }
  if (ex && !decr(end)) {
    ctx.fail(kBadEnd);
    return {};
  }
  std::int64_t count = -1;
  if (count_arg) count = *count_arg < 0 ? 0 : *count_arg;
  Stream* s = lookup(ctx, key);
  std::vector<StreamEntry> out;
  if (!s || count == 0 || start > end) return out;
  auto const& es = s->entries();
  if constexpr (!Reverse) {
    for (auto it = es.lower_bound(start); it != es.end() && it->first <= end; ++it) {
      if (count > 0 && static_cast<std::int64_t>(out.size()) >= count) break;
      out.push_back(make_entry(it->first, it->second));
    }
  } else {
    for (auto it = std::make_reverse_iterator(es.upper_bound(end));
         it != es.rend() && it->first >= start; ++it) {
      if (count > 0 && static_cast<std::int64_t>(out.size()) >= count) break;
      out.push_back(make_entry(it->first, it->second));
    }
  }
  return out;
}

/// XREADGROUP's update of a group's read counter as it delivers `id` (Redis 7.0).
inline void advance_group(Stream const& s, Stream::Group& g, StreamId id) {
  if (id <= g.last_id) return;
  if (g.entries_read != -1 && !s.has_tombstones_from(id))
    ++g.entries_read;
  else if (s.entries_added() != 0)
    g.entries_read = s.estimate_entries_read(id);
  g.last_id = id;
}

inline bool read_integer(std::string_view arg, long long& v) {
  return string2ll(cstr(arg), v);
}

/// XCLAIM on its arguments as the server reads them (ids until the first non-id, then
/// options), so that any mix of ids and options fails or succeeds as on a server.
/// Fills `entries` (or `ids` when JUSTID was given).
template <class C>
void xclaim(Ctx& ctx, C const& c, std::vector<StreamEntry>* entries,
            std::vector<std::string>* ids) {
  std::vector<std::string> const av = argv(c);
  Entry* entry = nullptr;
  Stream* s = lookup(ctx, av[1], &entry);
  if (ctx.failed()) return;
  Stream::Group* g = find_group(s, av[2]);
  if (!g) return void(fail_no_key_or_group(ctx, av[1], av[2]));
  long long minidle = 0;
  if (!read_integer(av[4], minidle))
    return void(ctx.fail("ERR Invalid min-idle-time argument for XCLAIM"));
  if (minidle < 0) minidle = 0;
  std::size_t j = 5;
  for (StreamId tmp; j < av.size() && parse_id(av[j], tmp, 0, true);)
    ++j;
  std::size_t const ids_end = j;

  std::int64_t const unix_now = ctx.unix_ms();
  long long deliverytime = -1;
  long long retrycount = -1;
  bool force = false, justid = false;
  StreamId last_id{};
  for (; j < av.size(); ++j) {
    bool const more = j + 1 < av.size();
    std::string_view const opt = cstr(av[j]);
    if (iequals(opt, "FORCE")) {
      force = true;
    } else if (iequals(opt, "JUSTID")) {
      justid = true;
    } else if (iequals(opt, "IDLE") && more) {
      if (!read_integer(av[++j], deliverytime))
        return void(ctx.fail("ERR Invalid IDLE option argument for XCLAIM"));
      deliverytime = unix_now - deliverytime;
    } else if (iequals(opt, "TIME") && more) {
      if (!read_integer(av[++j], deliverytime))
        return void(ctx.fail("ERR Invalid TIME option argument for XCLAIM"));
    } else if (iequals(opt, "RETRYCOUNT") && more) {
      if (!read_integer(av[++j], retrycount))
        return void(ctx.fail("ERR Invalid RETRYCOUNT option argument for XCLAIM"));
    } else if (iequals(opt, "LASTID") && more) {
      if (!parse_id(av[++j], last_id, 0, true)) return void(ctx.fail(kInvalidId));
    } else {
      return void(ctx.fail("ERR Unrecognized XCLAIM option '" + std::string(opt) + "'"));
    }
  }
  bool changed = false;
  if (last_id > g->last_id) {
    g->last_id = last_id;
    changed = true;
  }
  if (deliverytime == -1 || deliverytime < 0 || deliverytime > unix_now) deliverytime = unix_now;
  std::int64_t const now = ctx.now_ms();
  std::int64_t const delivery = deliverytime - unix_now + now;  // on the engine clock

  Stream::ConsumerNode* consumer = nullptr;
  for (std::size_t k = 5; k < ids_end; ++k) {
    StreamId id;
    parse_id(av[k], id, 0, true);
    auto nack = g->pel.find(id);
    if (!s->contains(id)) {
      if (nack != g->pel.end()) {
        g->drop(nack);
        changed = true;
      }
      continue;
    }
    // FORCE: a new pending entry, delivered once now (as the server creates them), owned by
    // no one until the claim below.
    if (force && nack == g->pel.end())
      nack = g->pel.emplace(id, Stream::Nack{nullptr, now, 1}).first;
    if (nack == g->pel.end()) continue;
    if (nack->second.owner && minidle != 0 && now - nack->second.delivery_time < minidle) continue;
    if (!consumer) consumer = &g->consumer(av[3], now);
    consumer->second.seen_time = now;
    g->assign(nack, *consumer);
    nack->second.delivery_time = delivery;
    if (retrycount >= 0)
      nack->second.delivery_count = retrycount;
    else if (!justid)
      ++nack->second.delivery_count;
    changed = true;
    if (ids)
      ids->push_back(id.to_string());
    else if (entries)
      entries->push_back(make_entry(id, *s->find(id)));
  }
  if (changed) ctx.db.written(*entry);
}

/// XAUTOCLAIM, with or without JUSTID.
template <class C>
void xautoclaim(Ctx& ctx, C const& c, bool justid, std::string& next,
                std::vector<StreamEntry>* entries, std::vector<std::string>* ids,
                std::vector<std::string>& deleted) {
  std::int64_t const minidle = c.min_idle.count() < 0 ? 0 : c.min_idle.count();
  StreamId start;
  bool sx = false;
  if (!parse_interval(c.start, start, sx, 0)) return void(ctx.fail(kInvalidId));
  if (sx && !incr(start)) return void(ctx.fail(kBadStart));
  std::int64_t count = 100;
  if (c.count) {
    if (*c.count < 1 || *c.count > LONG_MAX / 16) return void(ctx.fail("ERR COUNT must be > 0"));
    count = *c.count;
  }
  Entry* entry = nullptr;
  Stream* s = lookup(ctx, c.key, &entry);
  if (ctx.failed()) return;
  Stream::Group* g = find_group(s, c.group);
  if (!g) return void(fail_no_key_or_group(ctx, c.key, c.group));

  std::int64_t const now = ctx.now_ms();
  std::int64_t attempts = count * 10;
  Stream::ConsumerNode* consumer = nullptr;
  bool changed = false;
  auto it = g->pel.lower_bound(start);
  while (attempts-- > 0 && count > 0 && it != g->pel.end()) {
    StreamId const id = it->first;
    if (!s->contains(id)) {
      it = g->drop(it);
      deleted.push_back(id.to_string());
      --count;
      changed = true;
      continue;
    }
    if (minidle != 0 && now - it->second.delivery_time < minidle) {
      ++it;
      continue;
    }
    if (!consumer) consumer = &g->consumer(c.consumer, now);
    consumer->second.seen_time = now;
    g->assign(it, *consumer);
    it->second.delivery_time = now;
    if (!justid) ++it->second.delivery_count;
    changed = true;
    if (ids)
      ids->push_back(id.to_string());
    else if (entries)
      entries->push_back(make_entry(id, *s->find(id)));
    --count;
    ++it;
  }
  next = it == g->pel.end() ? StreamId{}.to_string() : it->first.to_string();
  if (changed) ctx.db.written(*entry);
}

}  // namespace streams

// ---- entries ---------------------------------------------------------------------------------

inline reply_t<cmd::xadd> run(Ctx& ctx, cmd::xadd const& c) {
  using namespace streams;
  Trim t;
  if (c.trim && !parse_trim(ctx, *c.trim, t)) return {};
  bool const auto_id = cstr(c.id) == "*";
  StreamId id{};
  bool seq_given = true;
  if (!auto_id && !parse_id(c.id, id, 0, true, &seq_given)) {
    ctx.fail(kInvalidId);
    return {};
  }
  if (!check_trim_limit(ctx, t)) return {};
  if (c.fields.empty()) {
    ctx.fail("ERR wrong number of arguments for 'xadd' command");
    return {};
  }
  if (!auto_id && seq_given && id == StreamId{}) {
    ctx.fail("ERR The ID specified in XADD must be greater than 0-0");
    return {};
  }

  Entry* entry = nullptr;
  Stream* s = lookup(ctx, c.key, &entry);
  if (ctx.failed()) return {};
  if (!s) {
    if (c.nomkstream) return std::nullopt;
    s = ctx.db.create<Stream>(ctx, c.key);
  } else {
    ctx.db.written(*entry);
  }
  StreamId const last = s->last_id();
  if (last == StreamId::max()) {
    ctx.fail("ERR The stream has exhausted the last possible ID, unable to add more items");
    return {};
  }
  if (auto_id) {
    auto const now = static_cast<std::uint64_t>(ctx.unix_ms() > 0 ? ctx.unix_ms() : 0);
    if (now > last.ms) {
      id = {now, 0};
    } else {
      id = last;
      incr(id);
    }
  } else if (!seq_given && id.ms == last.ms) {
    if (last.seq == UINT64_MAX) {
      ctx.fail("ERR Elements are too large to be stored");
      return {};
    }
    id = {last.ms, last.seq + 1};
  }
  if (!auto_id && id <= last) {
    ctx.fail("ERR The ID specified in XADD is equal or smaller than the target stream top item");
    return {};
  }
  Stream::Fields fields;
  fields.reserve(c.fields.size());
  c.fields.for_each([&](FieldValue fv) { fields.emplace_back(fv.field, fv.value); });
  s->append(id, std::move(fields));
  if (c.trim) apply_trim(*s, t);
  return id.to_string();
}

inline reply_t<cmd::xrange> run(Ctx& ctx, cmd::xrange const& c) {
  return streams::range<false>(ctx, c.key, c.start, c.end, c.count);
}

inline reply_t<cmd::xrevrange> run(Ctx& ctx, cmd::xrevrange const& c) {
  return streams::range<true>(ctx, c.key, c.start, c.end, c.count);
}

inline reply_t<cmd::xlen> run(Ctx& ctx, cmd::xlen const& c) {
  Stream* s = streams::lookup(ctx, c.key);
  return s ? static_cast<std::int64_t>(s->size()) : 0;
}

inline reply_t<cmd::xdel> run(Ctx& ctx, cmd::xdel const& c) {
  using namespace streams;
  Entry* entry = nullptr;
  Stream* s = lookup(ctx, c.key, &entry);
  if (!s) return 0;
  std::vector<StreamId> ids;
  if (!parse_id_list(c.ids, ids)) return ctx.fail(kInvalidId), 0;
  std::int64_t n = 0;
  for (StreamId id : ids)
    n += s->remove(id) ? 1 : 0;
  if (n != 0) ctx.db.written(*entry);
  return n;
}

inline reply_t<cmd::xtrim> run(Ctx& ctx, cmd::xtrim const& c) {
  using namespace streams;
  Trim t;
  if (!parse_trim(ctx, c.trim, t) || !check_trim_limit(ctx, t)) return 0;
  Entry* entry = nullptr;
  Stream* s = lookup(ctx, c.key, &entry);
  if (!s) return 0;
  std::int64_t const n = apply_trim(*s, t);
  if (n != 0) ctx.db.written(*entry);
  return n;
}

// ---- groups ----------------------------------------------------------------------------------

inline bool check_entries_read(Ctx& ctx, std::optional<std::int64_t> n) {
  if (n && *n < 0 && *n != -1) return ctx.fail("ERR value for ENTRIESREAD must be positive or -1");
  return true;
}

inline reply_t<cmd::xgroup_create> run(Ctx& ctx, cmd::xgroup_create const& c) {
  using namespace streams;
  if (!check_entries_read(ctx, c.entries_read)) return false;
  Entry* entry = nullptr;
  Stream* s = lookup(ctx, c.key, &entry);
  if (ctx.failed()) return false;
  if (!s && !c.mkstream) return ctx.fail(kNeedKey);
  StreamId id{};
  if (cstr(c.id) == "$") {
    if (s) id = s->last_id();
  } else if (!parse_id(c.id, id, 0, true)) {
    return ctx.fail(kInvalidId);
  }
  if (!s)
    s = ctx.db.create<Stream>(ctx, c.key);
  else
    ctx.db.written(*entry);
  auto [it, inserted] = s->groups.try_emplace(std::string(c.group));
  if (!inserted) return ctx.fail("BUSYGROUP Consumer Group name already exists");
  it->second.last_id = id;
  it->second.entries_read = c.entries_read.value_or(-1);
  return true;
}

/// The group of an XGROUP subcommand other than CREATE: key and group must exist.
inline Stream::Group* xgroup_target(Ctx& ctx, std::string_view key, std::string_view group,
                                    Stream** stream = nullptr, Entry** entry = nullptr) {
  Stream* s = streams::lookup(ctx, key, entry);
  if (ctx.failed()) return nullptr;
  if (!s) return ctx.fail(streams::kNeedKey), nullptr;
  if (stream) *stream = s;
  Stream::Group* g = streams::find_group(s, group);
  if (!g) streams::fail_no_group(ctx, key, group);
  return g;
}

inline reply_t<cmd::xgroup_setid> run(Ctx& ctx, cmd::xgroup_setid const& c) {
  using namespace streams;
  if (!check_entries_read(ctx, c.entries_read)) return false;
  Stream* s = nullptr;
  Entry* entry = nullptr;
  Stream::Group* g = xgroup_target(ctx, c.key, c.group, &s, &entry);
  if (!g) return false;
  StreamId id{};
  if (cstr(c.id) == "$")
    id = s->last_id();
  else if (!parse_id(c.id, id, 0, false))
    return ctx.fail(kInvalidId);
  g->last_id = id;
  g->entries_read = c.entries_read.value_or(-1);
  ctx.db.written(*entry);
  return true;
}

inline reply_t<cmd::xgroup_destroy> run(Ctx& ctx, cmd::xgroup_destroy const& c) {
  using namespace streams;
  Entry* entry = nullptr;
  Stream* s = lookup(ctx, c.key, &entry);
  if (ctx.failed()) return 0;
  if (!s) return ctx.fail(kNeedKey), 0;
  auto it = s->groups.find(c.group);
  if (it == s->groups.end()) return 0;
  s->groups.erase(it);
  ctx.db.written(*entry);  // blocked readers of the group wake up (to fail with NOGROUP)
  return 1;
}

inline reply_t<cmd::xgroup_createconsumer> run(Ctx& ctx, cmd::xgroup_createconsumer const& c) {
  Entry* entry = nullptr;
  Stream::Group* g = xgroup_target(ctx, c.key, c.group, nullptr, &entry);
  if (!g) return 0;
  bool created = false;
  g->consumer(c.consumer, ctx.now_ms(), &created);
  if (created) ctx.db.written(*entry);
  return created ? 1 : 0;
}

inline reply_t<cmd::xgroup_delconsumer> run(Ctx& ctx, cmd::xgroup_delconsumer const& c) {
  Entry* entry = nullptr;
  Stream::Group* g = xgroup_target(ctx, c.key, c.group, nullptr, &entry);
  if (!g) return 0;
  std::int64_t const n = g->remove_consumer(c.consumer);
  ctx.db.written(*entry);
  return n;
}

// ---- reading without a group -----------------------------------------------------------------

/// The id "$" stands for in XREAD on `key`: the stream's last id (0-0 when missing). For a
/// blocked XREAD, which must keep waiting for entries above the id it started with.
inline std::string last_id_text(Ctx& ctx, std::string_view key) {
  Stream const* s = streams::lookup(ctx, key);
  return (s ? s->last_id() : StreamId{}).to_string();
}

/// XREAD's and XREADGROUP's options: the count (0: no limit), the BLOCK check, and what
/// STREAMS takes, keys then ids (`fill`: every key's id when none is given); false when failed.
template <class C>
bool read_args(Ctx& ctx, C const& c, std::string_view fill, std::int64_t& count,
               std::vector<std::string_view>& args) {
  count = c.count && *c.count > 0 ? *c.count : 0;
  if (c.block && c.block->count() < 0) return ctx.fail("ERR timeout is negative");
  args = c.keys.to_vector();
  if (c.ids.empty() && !fill.empty())
    args.insert(args.end(), c.keys.size(), fill);
  else
    c.ids.for_each([&](std::string_view id) { args.push_back(id); });
  if (args.empty()) return ctx.fail("ERR syntax error");
  if (args.size() % 2 != 0)
    return ctx.fail(
        "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be "
        "specified.");
  return true;
}

inline reply_t<cmd::xread> run(Ctx& ctx, cmd::xread const& c) {
  using namespace streams;
  std::int64_t count = 0;
  std::vector<std::string_view> args;
  if (!read_args(ctx, c, {}, count, args)) return std::nullopt;
  std::size_t const n = args.size() / 2;
  std::vector<Stream*> src(n);
  std::vector<StreamId> after(n);
  for (std::size_t i = 0; i < n; ++i) {
    src[i] = lookup(ctx, args[i]);
    if (ctx.failed()) return std::nullopt;
    if (cstr(args[n + i]) == "$")
      after[i] = src[i] ? src[i]->last_id() : StreamId{};
    else if (!parse_id(args[n + i], after[i], 0, true))
      return ctx.fail(kInvalidId), std::nullopt;
  }
  std::vector<std::pair<std::string, std::vector<StreamEntry>>> out;
  for (std::size_t i = 0; i < n; ++i) {
    if (!src[i] || src[i]->empty()) continue;
    auto const& es = src[i]->entries();
    std::vector<StreamEntry> entries;
    for (auto it = es.upper_bound(after[i]); it != es.end(); ++it) {
      if (count != 0 && static_cast<std::int64_t>(entries.size()) >= count) break;
      entries.push_back(make_entry(it->first, it->second));
    }
    if (!entries.empty()) out.emplace_back(std::string(args[i]), std::move(entries));
  }
  if (out.empty()) return std::nullopt;
  return out;
}

// ---- reading with a group --------------------------------------------------------------------

inline reply_t<cmd::xreadgroup> run(Ctx& ctx, cmd::xreadgroup const& c) {
  using namespace streams;
  std::int64_t count = 0;
  std::vector<std::string_view> args;  // STREAMS: keys then ids, split in the middle
  if (!read_args(ctx, c, ">", count, args)) return std::nullopt;
  std::size_t const n = args.size() / 2;

  struct Source {
    Entry* entry;
    Stream* stream;
    Stream::Group* group;
    bool fresh;  // ">"
    StreamId after;
  };
  std::vector<Source> src(n);
  for (std::size_t i = 0; i < n; ++i) {
    Source& x = src[i];
    x.stream = lookup(ctx, args[i], &x.entry);
    if (ctx.failed()) return std::nullopt;
    x.group = find_group(x.stream, c.group);
    if (!x.group)
      return fail_no_key_or_group(ctx, args[i], c.group, " in XREADGROUP with GROUP option"),
             std::nullopt;
    std::string_view const id = cstr(args[n + i]);
    if (id == "$")
      return ctx.fail(
                 "ERR The $ ID is meaningless in the context of XREADGROUP: you want to "
                 "read the history of this consumer by specifying a proper ID, or use "
                 "the > ID to get new messages. The $ ID would just return an empty "
                 "result set."),
             std::nullopt;
    x.fresh = id == ">";
    if (!x.fresh && !parse_id(args[n + i], x.after, 0, true))
      return ctx.fail(kInvalidId), std::nullopt;
  }

  std::int64_t const now = ctx.now_ms();
  std::vector<std::pair<std::string, std::vector<StreamEntry>>> out;
  for (std::size_t i = 0; i < n; ++i) {
    Source& x = src[i];
    Stream& s = *x.stream;
    Stream::Group& g = *x.group;
    if (x.fresh && (s.empty() || s.last_valid_id() <= g.last_id)) continue;
    Stream::ConsumerNode& consumer = g.consumer(c.consumer, now);
    consumer.second.seen_time = now;
    std::vector<StreamEntry> entries;
    if (x.fresh) {
      auto const& es = s.entries();
      for (auto it = es.upper_bound(g.last_id); it != es.end(); ++it) {
        if (count != 0 && static_cast<std::int64_t>(entries.size()) >= count) break;
        StreamId const id = it->first;
        advance_group(s, g, id);
        if (!c.noack) {
          auto [nack, inserted] = g.pel.try_emplace(id);
          g.assign(nack, consumer);
          nack->second.delivery_time = now;
          nack->second.delivery_count = 1;
        }
        entries.push_back(make_entry(id, it->second));
      }
    } else {
      StreamId start = x.after;
      incr(start);  // past the largest id it wraps to 0-0, as on a server
      auto const& pending = consumer.second.pending;
      for (auto it = pending.lower_bound(start); it != pending.end(); ++it) {
        if (count != 0 && static_cast<std::int64_t>(entries.size()) >= count) break;
        if (Stream::Fields const* f = s.find(*it)) {
          Stream::Nack& nack = g.pel.find(*it)->second;
          nack.delivery_time = now;
          ++nack.delivery_count;
          entries.push_back(make_entry(*it, *f));
        } else {
          entries.push_back(StreamEntry{it->to_string(), {}, true});
        }
      }
    }
    ctx.db.written(*x.entry);
    out.emplace_back(std::string(args[i]), std::move(entries));
  }
  if (out.empty()) return std::nullopt;
  return out;
}

inline reply_t<cmd::xack> run(Ctx& ctx, cmd::xack const& c) {
  using namespace streams;
  Entry* entry = nullptr;
  Stream* s = lookup(ctx, c.key, &entry);
  if (ctx.failed()) return 0;
  Stream::Group* g = find_group(s, c.group);
  if (!g) return 0;
  std::vector<StreamId> ids;
  if (!parse_id_list(c.ids, ids)) return ctx.fail(kInvalidId), 0;
  std::int64_t n = 0;
  for (StreamId id : ids) {
    auto it = g->pel.find(id);
    if (it == g->pel.end()) continue;
    g->drop(it);
    ++n;
  }
  if (n != 0) ctx.db.written(*entry);
  return n;
}

inline reply_t<cmd::xpending> run(Ctx& ctx, cmd::xpending const& c) {
  using namespace streams;
  Stream* s = lookup(ctx, c.key);
  if (ctx.failed()) return {};
  Stream::Group* g = find_group(s, c.group);
  if (!g) return fail_no_key_or_group(ctx, c.key, c.group), PendingSummary{};
  PendingSummary out;
  out.count = static_cast<std::int64_t>(g->pel.size());
  if (g->pel.empty()) return out;
  out.min_id = g->pel.begin()->first.to_string();
  out.max_id = g->pel.rbegin()->first.to_string();
  for (auto const& [name, consumer] : g->consumers)
    if (!consumer.pending.empty())
      out.consumers.emplace_back(name, static_cast<std::int64_t>(consumer.pending.size()));
  return out;
}

inline reply_t<cmd::xpending_range> run(Ctx& ctx, cmd::xpending_range const& c) {
  using namespace streams;
  std::int64_t const min_idle = c.min_idle ? c.min_idle->count() : 0;
  std::int64_t count = c.count < 0 ? 0 : c.count;
  StreamId start, end;
  bool sx = false, ex = false;
  if (!parse_interval(c.start, start, sx, 0)) {
    ctx.fail(kInvalidId);
    return {};
  }
  if (sx && !incr(start)) {
    ctx.fail(kBadStart);
    return {};
  }
  if (!parse_interval(c.end, end, ex, UINT64_MAX)) {
    ctx.fail(kInvalidId);
    return {};
  }
  if (ex && !decr(end)) {
    ctx.fail(kBadEnd);
    return {};
  }
  Stream* s = lookup(ctx, c.key);
  if (ctx.failed()) return {};
  Stream::Group* g = find_group(s, c.group);
  if (!g) return fail_no_key_or_group(ctx, c.key, c.group), std::vector<PendingEntry>{};
  std::vector<PendingEntry> out;
  std::int64_t const now = ctx.now_ms();
  auto emit = [&](StreamId id, Stream::Nack const& nack) {
    if (min_idle != 0 && now - nack.delivery_time < min_idle) return;
    std::int64_t const idle = now - nack.delivery_time;
    out.push_back({id.to_string(), nack.owner ? nack.owner->first : std::string(),
                   idle < 0 ? 0 : idle, nack.delivery_count});
    --count;
  };
  if (c.consumer) {
    auto cit = g->consumers.find(*c.consumer);
    if (cit == g->consumers.end()) return out;
    auto const& pending = cit->second.pending;
    for (auto it = pending.lower_bound(start); count > 0 && it != pending.end() && *it <= end; ++it)
      emit(*it, g->pel.find(*it)->second);
  } else {
    for (auto it = g->pel.lower_bound(start); count > 0 && it != g->pel.end() && it->first <= end;
         ++it)
      emit(it->first, it->second);
  }
  return out;
}

inline reply_t<cmd::xclaim> run(Ctx& ctx, cmd::xclaim const& c) {
  std::vector<StreamEntry> out;
  streams::xclaim(ctx, c, &out, nullptr);
  return out;
}

inline reply_t<cmd::xclaim_justid> run(Ctx& ctx, cmd::xclaim_justid const& c) {
  std::vector<std::string> out;
  streams::xclaim(ctx, c, nullptr, &out);
  return out;
}

inline reply_t<cmd::xautoclaim> run(Ctx& ctx, cmd::xautoclaim const& c) {
  AutoClaimPage page;
  streams::xautoclaim(ctx, c, false, page.next, &page.entries, nullptr, page.deleted);
  return page;
}

inline reply_t<cmd::xautoclaim_justid> run(Ctx& ctx, cmd::xautoclaim_justid const& c) {
  AutoClaimIdsPage page;
  streams::xautoclaim(ctx, c, true, page.next, nullptr, &page.ids, page.deleted);
  return page;
}

}  // namespace rediskit::detail::mem
