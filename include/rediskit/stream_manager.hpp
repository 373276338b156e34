// rediskit::StreamManager: seed 000's StreamManager. Events go to Redis Streams (XADD); while
// Redis cannot take them they go to an on-disk write-ahead log, and reach the stream later, in
// order, exactly once.
//
//   rediskit::StreamManager<rediskit::RedisBackend> events(backend, {.path = "/var/lib/chat/events.wal"});
//   auto r = co_await events.async_publish("events:users", {{"type", "updated"}, {"id", "42"}});
//   // r.id: the entry's id; or r.logged: in the log, XADDed when Redis answers again
//
// - While nothing waits in the log and the backend reports OK, an event is a plain XADD. If
//   that XADD fails without having run (not connected, reconnection given up), the event is
//   logged instead; if it may have run (the link broke after it was written, a timeout), the
//   caller gets that error, as for any command: logging it could add it twice. (Such an event
//   is logged when its failure arrives: events logged meanwhile, in the instant the link
//   broke, go before it.)
// - Otherwise (the backend is down, or older events still wait, whose order must be kept) the
//   event is appended to the log: one record, length-prefixed with a CRC-32, made durable as
//   `sync` says (WalSync::always: fsync before the publish completes; interval: at most every
//   `sync_interval`; never: the OS decides). The publish then completes with `logged`.
// - Every `drain_interval` (and after each append while the backend is up) the log is replayed:
//   `replay_batch` records per round trip, each through a script that XADDs only if no marker
//   key named after the record's id exists, then sets that marker (for `dedup_ttl`). A
//   process killed after an XADD and before the log was cleared replays that record again on
//   restart, and the marker skips it: each event is in the stream once (stats().duplicates
//   counts the skips). The marker sits beside the stream (same hash slot on a cluster). When
//   every record is in, the log file is truncated.
// - Opening the log reads it back. A torn last record (a crash in the middle of a write: short,
//   or its CRC does not match) and anything after it is cut off, counted in
//   stats().torn_records / truncated_bytes and logged once; the records before it are replayed.
// - The log is bounded by `max_bytes`. When an event does not fit: WalFull::reject completes it
//   with Error::wal_full (nothing logged); WalFull::drop_oldest drops the oldest records
//   (stats().dropped) to make room.
// - A record Redis refuses during the replay for good (e.g. WRONGTYPE: the key is no stream) is
//   dropped, counted in replay_rejected and logged. A refusal that passes (OOM, READONLY during
//   a failover, TRYAGAIN, MOVED) stops the replay until the next try: nothing is dropped.
//
// Not thread-safe: one thread (or strand), as the backend. One StreamManager per log file.
#pragma once

#include <rediskit/arg_list.hpp>
#include <rediskit/circuit_breaker.hpp>
#include <rediskit/cmd/keys.hpp>
#include <rediskit/cmd/streams.hpp>
#include <rediskit/cmd/strings.hpp>
#include <rediskit/concepts/backend.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/error.hpp>
#include <rediskit/key_space.hpp>
#include <rediskit/resp3/detail/numbers.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/crc.hpp>
#include <boost/describe/class.hpp>
#include <boost/system/error_code.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rediskit {

/// When an appended record is made durable (fsync).
enum class WalSync : std::uint8_t {
  always,    ///< before the publish completes (a power cut loses nothing acknowledged)
  interval,  ///< at most every sync_interval (a power cut loses at most that much)
  never,     ///< when the OS writes it back (a process crash loses nothing; a power cut may)
};

/// What happens to an event that does not fit in the log.
enum class WalFull : std::uint8_t {
  reject,       ///< it fails with Error::wal_full
  drop_oldest,  ///< the oldest records go (counted) to make room
};

struct WalConfig {
  std::filesystem::path path{};  ///< the log file (created if missing); required
  WalSync sync = WalSync::always;
  std::chrono::milliseconds sync_interval{100};
  std::size_t max_bytes = std::size_t{64} << 20;
  WalFull when_full = WalFull::reject;
  /// How long Redis remembers a replayed record's id (its marker key).
  std::chrono::milliseconds dedup_ttl{std::chrono::hours(24)};
  std::size_t replay_batch = 128;
  std::chrono::milliseconds drain_interval{1000};
  LogSink log{};  ///< one line per recovery, replay and refusal; nothing per event
};

struct WalStats {
  std::uint64_t published = 0;        ///< events XADDed directly
  std::uint64_t appended = 0;         ///< events written to the log
  std::uint64_t replayed = 0;         ///< logged events XADDed
  std::uint64_t duplicates = 0;       ///< logged events already in the stream (marker found)
  std::uint64_t replay_rejected = 0;  ///< logged events Redis refused (dropped)
  std::uint64_t rejected = 0;         ///< events refused: the log was full (WalFull::reject)
  std::uint64_t dropped = 0;          ///< records dropped to make room (WalFull::drop_oldest)
  std::uint64_t torn_records = 0;     ///< torn records cut off when the log was opened
  std::uint64_t truncated_bytes = 0;  ///< bytes cut off with them
  std::uint64_t syncs = 0;            ///< fsync calls
  std::size_t pending_records = 0;    ///< logged events not XADDed yet
  std::size_t pending_bytes = 0;
  std::size_t file_bytes = 0;         ///< the log file's size (<= max_bytes)
};
// Described: RedisManager::expose() puts its numbers in the Prometheus text.
BOOST_DESCRIBE_STRUCT(WalStats, (),
                      (published, appended, replayed, duplicates, replay_rejected, rejected,
                       dropped, torn_records, truncated_bytes, syncs, pending_records,
                       pending_bytes, file_bytes))

/// How a publish ended.
struct PublishResult {
  std::string id;       ///< the stream entry's id (empty when logged)
  bool logged = false;  ///< in the log: XADDed when the backend answers again
};

namespace detail::wal {

struct Record {
  std::string id;
  std::string stream;
  std::vector<std::string> fields;  // field, value, field, value, ...
  std::size_t size = 0;             // on disk: header + payload
};

inline void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}
inline std::uint32_t get_u32(unsigned char const* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
         std::uint32_t(p[3]) << 24;
}
inline std::uint32_t crc32(std::string_view s) {
  boost::crc_32_type c;
  c.process_bytes(s.data(), s.size());
  return c.checksum();
}

/// [u32 payload length][u32 CRC-32 of the payload][payload]; the payload: id, stream, count,
/// then each string, every string as [u32 length][bytes].
inline std::string encode(Record const& r) {
  std::string p;
  auto str = [&](std::string_view s) {
    put_u32(p, static_cast<std::uint32_t>(s.size()));
    p += s;
  };
  str(r.id);
  str(r.stream);
  put_u32(p, static_cast<std::uint32_t>(r.fields.size()));
  for (auto const& f : r.fields) str(f);
  std::string out;
  out.reserve(8 + p.size());
  put_u32(out, static_cast<std::uint32_t>(p.size()));
  put_u32(out, crc32(p));
  out += p;
  return out;
}

inline std::optional<Record> decode(std::string_view p) {
  auto const* b = reinterpret_cast<unsigned char const*>(p.data());
  std::size_t at = 0;
  auto str = [&](std::string& out) {
    if (p.size() - at < 4) return false;
    std::uint32_t const n = get_u32(b + at);
    at += 4;
    if (p.size() - at < n) return false;
    out.assign(p.data() + at, n);
    at += n;
    return true;
  };
  Record r;
  if (!str(r.id) || !str(r.stream) || p.size() - at < 4) return std::nullopt;
  std::uint32_t const count = get_u32(b + at);
  at += 4;
  if (count % 2 != 0 || count > (p.size() - at) / 4) return std::nullopt;  // 4 bytes each at least
  r.fields.resize(count);
  for (auto& f : r.fields)
    if (!str(f)) return std::nullopt;
  if (at != p.size()) return std::nullopt;
  return r;
}

inline boost::system::error_code last_error() {
  return {errno, boost::system::system_category()};
}

/// The log file: appends, fsync, truncation, rewrite; POSIX calls, errors as error_codes.
class File {
 public:
  File() = default;
  File(File const&) = delete;
  File& operator=(File const&) = delete;
  ~File() { close(); }

  boost::system::error_code open(std::filesystem::path const& p) {
    path_ = p;
    fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return last_error();
    sync_dir();  // a new file's name survives a power cut
    return {};
  }
  void sync_dir() const {
    auto const dir = path_.parent_path();
    int const dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  /// Reads every record back; cuts the file after the last whole one.
  /// Reads every record back (none longer than `max_record`); cuts the file after the last
  /// whole one.
  boost::system::error_code recover(std::deque<Record>& out, std::size_t max_record,
                                    std::size_t& good_bytes, std::size_t& torn_bytes, bool& torn) {
    std::string all;
    char buf[65536];
    if (::lseek(fd_, 0, SEEK_SET) < 0) return last_error();
    for (;;) {
      ssize_t const n = ::read(fd_, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        return last_error();
      }
      if (n == 0) break;
      all.append(buf, static_cast<std::size_t>(n));
    }
    std::size_t at = 0;
    torn = false;
    while (at < all.size()) {
      auto const* b = reinterpret_cast<unsigned char const*>(all.data() + at);
      if (all.size() - at < 8) break;
      std::uint32_t const len = get_u32(b);
      if (len > max_record || all.size() - at - 8 < len) break;
      std::string_view const payload(all.data() + at + 8, len);
      if (crc32(payload) != get_u32(b + 4)) break;
      auto r = decode(payload);
      if (!r) break;
      r->size = 8 + len;
      out.push_back(std::move(*r));
      at += 8 + len;
    }
    good_bytes = at;
    torn_bytes = all.size() - at;
    torn = torn_bytes > 0;
    if (torn) {
      if (::ftruncate(fd_, static_cast<off_t>(at)) != 0) return last_error();
      if (::fsync(fd_) != 0) return last_error();
    }
    if (::lseek(fd_, 0, SEEK_END) < 0) return last_error();
    return {};
  }

  boost::system::error_code append(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t const n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return last_error();
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
  }
  boost::system::error_code sync() { return ::fsync(fd_) == 0 ? boost::system::error_code{} : last_error(); }
  /// Cuts the file back to `size` bytes (after a failed append), best effort.
  void cut(std::size_t size) {
    if (::ftruncate(fd_, static_cast<off_t>(size)) == 0) ::lseek(fd_, 0, SEEK_END);
  }
  boost::system::error_code clear() {
    if (::ftruncate(fd_, 0) != 0) return last_error();
    if (::lseek(fd_, 0, SEEK_SET) < 0) return last_error();
    return sync();
  }
  /// Replaces the file by `records` (a new file, fsync, rename over the old one).
  boost::system::error_code rewrite(std::deque<Record> const& records) {
    auto tmp = path_;
    tmp += ".tmp";
    int const fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return last_error();
    File f;
    f.fd_ = fd;
    f.path_ = tmp;
    for (auto const& r : records)
      if (auto ec = f.append(encode(r))) return ec;
    if (auto ec = f.sync()) return ec;
    if (::rename(tmp.c_str(), path_.c_str()) != 0) return last_error();
    close();
    fd_ = std::exchange(f.fd_, -1);
    sync_dir();  // the rename itself made durable
    return {};
  }

 private:
  int fd_ = -1;
  std::filesystem::path path_;
};

/// KEYS: stream, marker; ARGV: marker TTL (ms), then field value pairs. XADD unless the marker
/// is there, then the marker (after the XADD: a refused XADD leaves none); nil for a duplicate.
inline auto const xadd_once = make_script<std::optional<std::string>>(
    R"lua(if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return id)lua",
    [](ScriptContext auto& c) -> std::optional<std::string> {
      auto const a = c.args();
      if (c.call(cmd::exists{c.keys()[1]}) == 1) return std::nullopt;
      std::vector<FieldValue> fv;
      for (std::size_t i = 1; i + 1 < a.size(); i += 2) fv.push_back({a[i], a[i + 1]});
      auto id = c.call(cmd::xadd{.key = c.keys()[0], .fields = fv});
      std::int64_t ms = 0;
      boost::system::error_code ec;
      resp3::detail::to_integer(a[0], ms, ec);
      if (ec || ms <= 0) c.fail("ERR invalid expire time in 'set' command");  // as SET PX says
      c.call(cmd::set{.key = c.keys()[1], .value = "1", .ttl = std::chrono::milliseconds(ms)});
      return id;
    });
using XaddOnce = decltype(xadd_once());

/// Server refusals that pass (memory freed, a failover over, a slot moved, a script cache
/// flushed): a replay meeting one waits and tries again; any other refusal is for good.
inline bool transient_refusal(boost::system::error_code const& ec) noexcept {
  return ec == Error::out_of_memory || ec == Error::read_only || ec == Error::no_replicas ||
         ec == Error::try_again || ec == Error::moved || ec == Error::ask ||
         ec == Error::too_many_redirects || ec == Error::no_script;
}

/// Errors of a command that did not reach the server: safe to log and replay.
inline bool not_sent(boost::system::error_code const& ec) noexcept {
  return ec == Error::not_connected || ec == Error::reconnect_gave_up ||
         ec == Error::resolve_failed || ec == Error::connect_timeout ||
         ec == Error::circuit_open || ec == Error::connection_closed;
}

}  // namespace detail::wal

/// See the top of this file.
template <Backend B>
class StreamManager {
  struct State;

 public:
  /// Opens (or creates) the log and reads it back. Throws rediskit::Exception naming the path
  /// when the file cannot be opened or read, or a setting is out of range.
  StreamManager(B& backend, WalConfig cfg) : st_(std::make_shared<State>(backend, std::move(cfg))) {
    st_->open();
  }
  StreamManager(StreamManager&&) noexcept = default;
  StreamManager& operator=(StreamManager&& o) noexcept {
    if (this != &o) {
      if (st_) st_->close();
      st_ = std::move(o.st_);
    }
    return *this;
  }
  ~StreamManager() {
    if (st_) st_->close();
  }

  /// XADD stream * field value ..., or the log (see the top of this file). Handler:
  /// void(error_code, PublishResult). Errors: invalid_argument (no stream name, no field),
  /// wal_full, wal_io (the file could not be written), and a direct XADD's errors when it may
  /// have run.
  template <class Token = boost::asio::deferred_t>
  auto async_publish(std::string_view stream, ArgList<FieldValue> fields, Token&& token = {}) {
    std::vector<std::string> owned;
    owned.reserve(2 * fields.size());
    fields.for_each([&](FieldValue fv) {
      owned.emplace_back(fv.field);
      owned.emplace_back(fv.value);
    });
    return boost::asio::async_initiate<Token, void(boost::system::error_code, PublishResult)>(
        [st = st_](auto handler, std::string stream, std::vector<std::string> fields) {
          st->publish(detail::AnyHandler<void(boost::system::error_code, PublishResult)>(
                          std::move(handler)),
                      std::move(stream), std::move(fields));
        },
        token, std::string(stream), std::move(owned));
  }

  WalStats stats() const {
    WalStats s = st_->counts;
    s.pending_records = st_->pending.size();
    s.pending_bytes = st_->pending_bytes;
    s.file_bytes = st_->file_bytes;
    return s;
  }
  WalConfig const& config() const noexcept { return st_->cfg; }

  /// Tries the replay now (it also runs every drain_interval).
  void drain() { st_->drain(); }

 private:
  using Handler = detail::AnyHandler<void(boost::system::error_code, PublishResult)>;

  struct State : std::enable_shared_from_this<State> {
    State(B& b, WalConfig c)
        : backend(&b), cfg(std::move(c)), timer(b.get_executor()) {}

    B* backend;
    WalConfig cfg;
    boost::asio::steady_timer timer;
    detail::wal::File file;
    std::deque<detail::wal::Record> pending;
    std::size_t pending_bytes = 0;
    std::size_t file_bytes = 0;  // pending records and those replayed since the last clear
    WalStats counts;
    std::string instance;  // this process's record id prefix
    std::uint64_t seq = 0;
    bool draining = false;
    std::size_t inflight = 0;  // records of the replay under way (the first ones)
    bool timer_armed = false;
    bool dirty = false;  // appended, not fsynced (WalSync::interval)
    bool one_by_one = false;
    bool closed = false;

    void say(LogLevel l, std::string const& line) const {
      if (cfg.log) cfg.log(l, line);
    }
    [[noreturn]] void fail(std::string const& what, boost::system::error_code ec = {}) const {
      throw Exception(ec ? make_error_code(Error::wal_io) : make_error_code(Error::invalid_config),
                      "StreamManager: " + what + (ec ? ": " + ec.message() : std::string()));
    }

    void open() {
      if (cfg.path.empty()) fail("WalConfig::path is empty: name the log file");
      if (cfg.max_bytes < 64) fail("WalConfig::max_bytes must be at least 64");
      if (cfg.replay_batch == 0) fail("WalConfig::replay_batch must be at least 1");
      if (cfg.drain_interval.count() <= 0) fail("WalConfig::drain_interval must be positive");
      if (cfg.dedup_ttl.count() <= 0) fail("WalConfig::dedup_ttl must be positive");
      if (cfg.sync == WalSync::interval && cfg.sync_interval.count() <= 0)
        fail("WalConfig::sync_interval must be positive");
      if (auto ec = file.open(cfg.path)) fail("cannot open " + cfg.path.string(), ec);
      std::size_t good = 0, torn_bytes = 0;
      bool torn = false;
      if (auto ec = file.recover(pending, cfg.max_bytes, good, torn_bytes, torn))
        fail("cannot read " + cfg.path.string(), ec);
      for (auto const& r : pending) pending_bytes += r.size;
      file_bytes = good;
      if (torn) {
        ++counts.torn_records;
        counts.truncated_bytes += torn_bytes;
        say(LogLevel::warning, "rediskit: " + cfg.path.string() + ": a torn record (" +
                                   std::to_string(torn_bytes) +
                                   " bytes) at its end was cut off (a crash while writing)");
      }
      std::random_device rd;
      char buf[17];
      std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
      instance = buf;
      if (!pending.empty()) {
        say(LogLevel::info, "rediskit: " + cfg.path.string() + ": " +
                                std::to_string(pending.size()) + " events to replay");
        arm();
      }
    }

    void close() {
      if (closed) return;
      closed = true;
      timer.cancel();
      if (dirty) file.sync();
      file.close();
    }

    void publish(Handler h, std::string stream, std::vector<std::string> fields) {
      auto const ex = h.executor(backend->get_executor());
      if (closed) return detail::post_handler(ex, std::move(h), make_error_code(Error::connection_closed), PublishResult{});
      if (stream.empty() || fields.empty() || fields.size() % 2 != 0)
        return detail::post_handler(ex, std::move(h), make_error_code(Error::invalid_argument),
                                    PublishResult{});
      if (pending.empty() && !draining && backend->health() == HealthStatus::ok)
        return direct(std::move(h), std::move(stream), std::move(fields));
      auto ec = log(std::move(stream), std::move(fields));
      detail::post_handler(ex, std::move(h), ec, PublishResult{.id = {}, .logged = !ec});
    }

    struct Event {
      std::string stream;
      std::vector<std::string> fields;
    };

    void direct(Handler h, std::string stream, std::vector<std::string> fields) {
      // The command views the event, which stays where it is until the reply (the handler
      // holds it by pointer: moving the handler moves no string).
      auto ev = std::make_shared<Event>(Event{std::move(stream), std::move(fields)});
      std::vector<FieldValue> fv;
      for (std::size_t i = 0; i + 1 < ev->fields.size(); i += 2)
        fv.push_back({ev->fields[i], ev->fields[i + 1]});
      cmd::xadd const c{.key = ev->stream, .fields = fv};
      auto const ex = h.executor(backend->get_executor());  // where the caller resumes
      backend->async_exec(c, boost::asio::bind_executor(ex, [self = this->shared_from_this(),
                                                             h = std::move(h), ev](
                                 boost::system::error_code ec,
                                 std::optional<std::string> id) mutable {
        if (!ec) {
          ++self->counts.published;
          return std::move(h)(ec, PublishResult{.id = id.value_or(""), .logged = false});
        }
        if (!detail::wal::not_sent(ec) || self->closed) return std::move(h)(ec, PublishResult{});
        auto lec = self->log(std::move(ev->stream), std::move(ev->fields));  // it did not run
        std::move(h)(lec, PublishResult{.id = {}, .logged = !lec});
      }));
    }

    // Appends one event; starts the replay.
    boost::system::error_code log(std::string stream, std::vector<std::string> fields) {
      detail::wal::Record r{instance + "-" + std::to_string(++seq), std::move(stream),
                            std::move(fields), 0};
      std::string bytes = detail::wal::encode(r);
      r.size = bytes.size();
      if (pending_bytes + r.size > cfg.max_bytes) {
        if (cfg.when_full == WalFull::reject || r.size > cfg.max_bytes) {
          ++counts.rejected;
          return make_error_code(Error::wal_full);
        }
        // The oldest not being replayed right now, else the oldest (its replay's outcome
        // then finds it gone: records are matched by id).
        while (!pending.empty() && pending_bytes + r.size > cfg.max_bytes) {
          std::size_t const at = pending.size() > inflight ? inflight : 0;
          if (at == 0 && inflight > 0) --inflight;
          auto const it = pending.begin() + static_cast<std::ptrdiff_t>(at);
          pending_bytes -= it->size;
          pending.erase(it);
          ++counts.dropped;
        }
      }
      if (file_bytes + r.size > cfg.max_bytes) {  // replayed records still in the file
        if (auto ec = file.rewrite(pending)) return io_error("rewrite", ec);
        file_bytes = pending_bytes;
      }
      if (auto ec = file.append(bytes)) {
        file.cut(file_bytes);  // no half record before the next one
        return io_error("append to", ec);
      }
      if (cfg.sync == WalSync::always) {
        if (auto ec = file.sync()) {
          file.cut(file_bytes);  // the caller is told it failed: it must not come back
          return io_error("fsync", ec);
        }
        ++counts.syncs;
      } else {
        dirty = cfg.sync == WalSync::interval;
      }
      file_bytes += r.size;
      pending_bytes += r.size;
      pending.push_back(std::move(r));
      ++counts.appended;
      if (backend->health() == HealthStatus::ok) drain();
      arm();
      return {};
    }

    boost::system::error_code io_error(char const* what, boost::system::error_code ec) {
      say(LogLevel::error, std::string("rediskit: cannot ") + what + " " + cfg.path.string() +
                               ": " + ec.message());
      return make_error_code(Error::wal_io);
    }

    void arm() {
      if (timer_armed || closed) return;
      timer_armed = true;
      auto const every = cfg.sync == WalSync::interval
                             ? std::min(cfg.drain_interval, cfg.sync_interval)
                             : cfg.drain_interval;
      timer.expires_after(every);
      timer.async_wait([weak = this->weak_from_this()](boost::system::error_code ec) {
        auto self = weak.lock();
        if (!self) return;
        self->timer_armed = false;
        if (ec || self->closed) return;
        if (self->dirty) {
          self->dirty = false;
          if (!self->file.sync()) ++self->counts.syncs;
        }
        self->drain();
        if (!self->pending.empty() || self->dirty) self->arm();
      });
    }

    struct Batch {
    std::vector<std::string> ids;  // the records' ids, in order
    std::string ttl;
    std::vector<std::vector<std::string_view>> keys, args;
    std::vector<std::string> markers;
    std::vector<detail::wal::XaddOnce> calls;
  };

    void drain() {
      if (closed || draining || pending.empty()) return;
      draining = true;
      std::size_t const n = std::min(one_by_one ? std::size_t{1} : cfg.replay_batch, pending.size());
      inflight = n;
      auto b = std::make_shared<Batch>();
      b->ttl = std::to_string(cfg.dedup_ttl.count());
      b->keys.resize(n);
      b->args.resize(n);
      b->markers.resize(n);
      b->calls.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        auto const& r = pending[i];
        b->ids.push_back(r.id);
        b->markers[i] = beside(r.stream, "rediskit~wal:", r.id);
        b->keys[i] = {r.stream, b->markers[i]};
        b->args[i].push_back(b->ttl);
        for (auto const& f : r.fields) b->args[i].push_back(f);
        b->calls.push_back(detail::wal::xadd_once(b->keys[i], b->args[i]));
      }
      backend->async_exec(b->calls, [self = this->shared_from_this(), b](
                                        boost::system::error_code ec,
                                        std::vector<std::optional<std::string>> ids) {
        self->replayed(*b, ec, ids);
      });
    }

    void replayed(Batch const& b, boost::system::error_code ec,
                  std::vector<std::optional<std::string>> const& ids) {
      draining = false;
      inflight = 0;
      if (closed) return;
      std::size_t const n = b.ids.size();
      if (!ec) {
        for (std::size_t i = 0; i < n; ++i) {
          ++(i < ids.size() && ids[i] ? counts.replayed : counts.duplicates);
          forget(b.ids[i]);
        }
        one_by_one = false;
      } else if (is_outage(ec) || detail::wal::not_sent(ec) ||
                 detail::wal::transient_refusal(ec)) {
        return arm();  // later (a batch that ran in part: its markers skip what is in)
      } else if (n > 1) {
        // A refusal inside the round trip: the records with an id are in; the others (the
        // refused one, duplicates) go again one by one to tell which is which.
        for (std::size_t i = 0; i < n && i < ids.size(); ++i) {
          if (!ids[i]) continue;
          ++counts.replayed;
          forget(b.ids[i]);
        }
        one_by_one = true;
      } else {
        ++counts.replay_rejected;
        say(LogLevel::error, "rediskit: a logged event was refused (" + ec.message() +
                                 "): dropped");
        forget(b.ids[0]);
      }
      if (!pending.empty() && file_bytes - pending_bytes > cfg.max_bytes / 2) {
        // Under steady load the log may never empty: drop the replayed prefix from the file.
        if (auto e = file.rewrite(pending))
          io_error("rewrite", e);
        else
          file_bytes = pending_bytes;
      }
      if (pending.empty()) {
        if (auto e = file.clear())
          io_error("truncate", e);
        else
          file_bytes = 0;
        say(LogLevel::info, "rediskit: " + cfg.path.string() + ": every logged event is in (" +
                                std::to_string(counts.replayed) + " replayed so far)");
        return;
      }
      drain();
    }

    // Takes a replayed record out of the log (if drop_oldest has not already).
    void forget(std::string const& id) {
      for (auto it = pending.begin(); it != pending.end(); ++it) {
        if (it->id != id) continue;
        pending_bytes -= it->size;
        pending.erase(it);
        return;
      }
    }
  };

  std::shared_ptr<State> st_;
};

}  // namespace rediskit
