// StreamManager (seed 000's StreamManager): XADD, else an on-disk write-ahead log replayed in
// order and exactly once. The replay runs on every backend (the Lua script on Redis and
// Cluster, its twin in memory); the log's own behaviour (order, torn records, bounds, a
// process killed with SIGKILL) runs on FakeBackend and on a throwaway redis-server.
#include <rediskit/stream_manager.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include "support/backends.hpp"
#include "support/test_redis.hpp"

#include <sys/wait.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using rediskit::Error;
using rediskit::FakeBackend;
using rediskit::FieldValue;
using rediskit::LogLevel;
using rediskit::PublishResult;
using rediskit::StreamManager;
using rediskit::WalConfig;
using rediskit::test::BackendFixture;
namespace cmd = rediskit::cmd;

namespace {

// A fresh directory for this test's log files, removed at the end.
struct TempDir {
  fs::path dir;
  TempDir() {
    auto tmpl = (fs::temp_directory_path() / "rediskit-wal-XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  fs::path operator/(char const* name) const { return dir / name; }
};

WalConfig wal(fs::path p) {
  WalConfig c;
  c.path = std::move(p);
  c.drain_interval = 20ms;
  return c;
}

template <class B>
PublishResult publish(BackendFixture<B>& f, StreamManager<B>& m, std::string const& stream, int n) {
  std::string const v = std::to_string(n);
  std::vector<FieldValue> fields{{"n", v}, {"kind", "test"}};
  auto [ec, r] = f.wait(m.async_publish(stream, fields));
  BOOST_TEST(!ec, ec.message());
  return r;
}

// The "n" field of every entry of a stream, in order.
template <class B>
std::vector<std::string> ns(BackendFixture<B>& f, std::string const& stream) {
  std::vector<std::string> out;
  for (auto const& e : f.ok(cmd::xrange{stream}))
    for (auto const& [field, value] : e.fields)
      if (field == "n") out.push_back(value);
  return out;
}

// Writes `count` events (n = first, first + 1, ...) into a log, through a FakeBackend whose
// link is down: the log as a process that could not reach Redis leaves it.
void write_log(fs::path const& p, std::string const& stream, int first, int count) {
  BackendFixture<FakeBackend> f;
  f.backend.drop_connection();
  StreamManager<FakeBackend> m(f.backend, wal(p));
  for (int i = first; i < first + count; ++i) BOOST_TEST(publish(f, m, stream, i).logged);
  BOOST_TEST(m.stats().pending_records == static_cast<std::size_t>(count));
}

std::vector<std::string> seq(int from, int to) {
  std::vector<std::string> v;
  for (int i = from; i < to; ++i) v.push_back(std::to_string(i));
  return v;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(stream_manager)

// Direct while the backend answers; a log replayed in order; the same log replayed again (a
// process killed after its XADDs, before it cleared the log) adds nothing.
BOOST_AUTO_TEST_CASE_TEMPLATE(replays_a_log_exactly_once, B, rediskit::test::AllBackends) {
  TempDir tmp;
  BackendFixture<B> f;
  std::string const stream = "events:users";
  {
    StreamManager<B> m(f.backend, wal(tmp / "a.wal"));
    auto r = publish(f, m, stream, 0);
    BOOST_TEST(!r.logged);
    BOOST_TEST(!r.id.empty());
    BOOST_TEST(m.stats().published == 1u);
    BOOST_TEST(m.stats().file_bytes == 0u);
  }
  write_log(tmp / "b.wal", stream, 1, 5);
  fs::copy_file(tmp / "b.wal", tmp / "b.copy");
  {
    StreamManager<B> m(f.backend, wal(tmp / "b.wal"));
    f.run_until([&] { return m.stats().pending_records == 0; });
    BOOST_TEST(m.stats().replayed == 5u);
    BOOST_TEST(m.stats().duplicates == 0u);
    BOOST_TEST(fs::file_size(tmp / "b.wal") == 0u);  // cleared once all were in
  }
  fs::copy_file(tmp / "b.copy", tmp / "b.wal", fs::copy_options::overwrite_existing);
  {
    StreamManager<B> m(f.backend, wal(tmp / "b.wal"));
    f.run_until([&] { return m.stats().pending_records == 0; });
    BOOST_TEST(m.stats().replayed == 0u);
    BOOST_TEST(m.stats().duplicates == 5u);
  }
  BOOST_TEST(ns(f, stream) == seq(0, 6), boost::test_tools::per_element());
}

// Down: events go to the log (fsynced), later events too while older ones wait, and all
// reach the stream in order once the link is back.
BOOST_AUTO_TEST_CASE(logs_while_the_link_is_down_and_keeps_the_order) {
  TempDir tmp;
  BackendFixture<FakeBackend> f;
  StreamManager<FakeBackend> m(f.backend, wal(tmp / "e.wal"));
  for (int i = 0; i < 3; ++i) BOOST_TEST(!publish(f, m, "s", i).logged);
  f.backend.drop_connection();
  for (int i = 3; i < 8; ++i) BOOST_TEST(publish(f, m, "s", i).logged);
  auto st = m.stats();
  BOOST_TEST(st.appended == 5u);
  BOOST_TEST(st.syncs == 5u);  // WalSync::always
  BOOST_TEST(st.pending_records == 5u);
  BOOST_TEST(st.file_bytes == fs::file_size(tmp / "e.wal"));
  f.backend.restore_connection();
  BOOST_TEST(publish(f, m, "s", 8).logged);  // behind the others
  f.run_until([&] { return m.stats().pending_records == 0; });
  BOOST_TEST(ns(f, "s") == seq(0, 9), boost::test_tools::per_element());
  BOOST_TEST(m.stats().file_bytes == 0u);
  BOOST_TEST(!publish(f, m, "s", 9).logged);  // direct again
}

// A torn last record (a crash in the middle of a write) is cut off and reported; a corrupted
// one stops the read there.
BOOST_AUTO_TEST_CASE(a_torn_record_is_cut_off_and_reported) {
  TempDir tmp;
  auto const p = tmp / "t.wal";
  write_log(p, "s", 0, 3);
  auto const whole = fs::file_size(p);
  fs::resize_file(p, whole - 5);
  std::vector<std::string> lines;
  auto cfg = wal(p);
  cfg.log = [&](LogLevel, std::string_view l) { lines.emplace_back(l); };
  BackendFixture<FakeBackend> f;
  f.backend.drop_connection();
  {
    StreamManager<FakeBackend> m(f.backend, cfg);
    auto const st = m.stats();
    BOOST_TEST(st.torn_records == 1u);
    BOOST_TEST(st.pending_records == 2u);
    BOOST_TEST(st.truncated_bytes == whole / 3 - 5);  // three records of one size
    BOOST_TEST(fs::file_size(p) == 2 * (whole / 3));
    BOOST_REQUIRE(!lines.empty());
    BOOST_TEST(lines[0].find("torn record") != std::string::npos, lines[0]);
  }
  // Flip a byte in the first record's payload: its CRC fails, nothing after it is trusted.
  {
    std::fstream io(p, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(12);
    io.put('\x7f');
  }
  StreamManager<FakeBackend> m(f.backend, wal(p));
  BOOST_TEST(m.stats().torn_records == 1u);
  BOOST_TEST(m.stats().pending_records == 0u);
  BOOST_TEST(fs::file_size(p) == 0u);
}

// max_bytes: reject refuses what does not fit; drop_oldest makes room, and the newest events
// are those replayed.
BOOST_AUTO_TEST_CASE(the_log_is_bounded) {
  TempDir tmp;
  BackendFixture<FakeBackend> f;
  f.backend.drop_connection();
  auto cfg = wal(tmp / "r.wal");
  cfg.max_bytes = 300;
  {
    StreamManager<FakeBackend> m(f.backend, cfg);
    int refused = 0;
    for (int i = 0; i < 20; ++i) {
      std::string const v = std::to_string(i);
      std::vector<FieldValue> fields{{"n", v}, {"kind", "test"}};
      auto [ec, r] = f.wait(m.async_publish("s", fields));
      if (ec) {
        BOOST_TEST(ec == Error::wal_full, ec.message());
        ++refused;
      }
    }
    BOOST_TEST(refused > 0);
    BOOST_TEST(m.stats().rejected == static_cast<std::uint64_t>(refused));
    BOOST_TEST(m.stats().file_bytes <= 300u);
  }
  fs::remove(tmp / "r.wal");
  cfg.when_full = rediskit::WalFull::drop_oldest;
  StreamManager<FakeBackend> m(f.backend, cfg);
  for (int i = 0; i < 20; ++i) BOOST_TEST(publish(f, m, "s", i).logged);
  auto const st = m.stats();
  BOOST_TEST(st.dropped > 0u);
  BOOST_TEST(st.pending_records + st.dropped == 20u);
  BOOST_TEST(fs::file_size(tmp / "r.wal") <= 300u);
  f.backend.restore_connection();
  f.run_until([&] { return m.stats().pending_records == 0; });
  BOOST_TEST(ns(f, "s") == seq(static_cast<int>(st.dropped), 20), boost::test_tools::per_element());
}

// A logged event Redis refuses (the key is no stream) is dropped and reported; the others go.
BOOST_AUTO_TEST_CASE(a_refused_record_is_dropped_and_the_rest_replayed) {
  TempDir tmp;
  BackendFixture<FakeBackend> f;
  f.ok(cmd::set{"not-a-stream", "x"});
  std::vector<std::string> lines;
  auto cfg = wal(tmp / "x.wal");
  cfg.log = [&](LogLevel, std::string_view l) { lines.emplace_back(l); };
  StreamManager<FakeBackend> m(f.backend, cfg);
  f.backend.drop_connection();
  publish(f, m, "s", 0);
  publish(f, m, "not-a-stream", 1);
  publish(f, m, "s", 2);
  f.backend.restore_connection();
  f.run_until([&] { return m.stats().pending_records == 0; });
  BOOST_TEST(m.stats().replay_rejected == 1u);
  BOOST_TEST(m.stats().replayed == 2u);
  BOOST_TEST(m.stats().duplicates == 0u);
  BOOST_TEST(ns(f, "s") == (std::vector<std::string>{"0", "2"}), boost::test_tools::per_element());
  bool said = false;
  for (auto const& l : lines) said = said || l.find("refused") != std::string::npos;
  BOOST_TEST(said);
}

// A refusal that passes (OOM, READONLY in a failover) stops the replay until the next try:
// nothing is dropped.
BOOST_AUTO_TEST_CASE(a_refusal_that_passes_drops_nothing) {
  TempDir tmp;
  BackendFixture<FakeBackend> f;
  StreamManager<FakeBackend> m(f.backend, wal(tmp / "o.wal"));
  f.backend.drop_connection();
  for (int i = 0; i < 3; ++i) publish(f, m, "s", i);
  f.backend.fail_next(2, Error::out_of_memory);  // the next two replays are refused
  f.backend.restore_connection();
  f.run_until([&] { return m.stats().pending_records == 0; });
  BOOST_TEST(m.stats().replay_rejected == 0u);
  BOOST_TEST(m.stats().replayed == 3u);
  BOOST_TEST(ns(f, "s") == seq(0, 3), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(bad_settings_and_unusable_paths_are_named) {
  BackendFixture<FakeBackend> f;
  auto says = [&](WalConfig cfg, Error e, std::string const& what) {
    try {
      StreamManager<FakeBackend> m(f.backend, cfg);
      BOOST_ERROR("accepted: " << what);
    } catch (rediskit::Exception const& ex) {
      BOOST_TEST(ex.code() == e);
      BOOST_TEST(std::string(ex.what()).find(what) != std::string::npos, ex.what());
    }
  };
  says(WalConfig{}, Error::invalid_config, "WalConfig::path");
  says(wal("/nonexistent-dir-of-rediskit/x.wal"), Error::wal_io, "/nonexistent-dir-of-rediskit/x.wal");
  TempDir tmp;
  auto cfg = wal(tmp / "ok.wal");
  cfg.max_bytes = 10;
  says(cfg, Error::invalid_config, "max_bytes");
  cfg = wal(tmp / "ok.wal");
  cfg.dedup_ttl = 0ms;
  says(cfg, Error::invalid_config, "dedup_ttl");
  StreamManager<FakeBackend> m(f.backend, wal(tmp / "ok.wal"));
  auto [ec, r] = f.wait(m.async_publish("", std::vector<FieldValue>{{"a", "b"}}));
  BOOST_TEST(ec == Error::invalid_argument);
}

// A real process, SIGKILLed after appending while Redis was unreachable: the next process on
// the same log puts every event in the stream, once.
BOOST_AUTO_TEST_CASE(a_process_killed_after_appending_loses_nothing) {
  rediskit::test::TestRedisServer srv;
  TempDir tmp;
  auto const p = tmp / "k.wal";
  constexpr int events = 50;
  pid_t const child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    // No Boost.Test here: the child's only outcome is its death by SIGKILL.
    asio::io_context ioc;
    rediskit::RedisConfig cfg;
    cfg.port = rediskit::test::detail::pick_free_port();  // nothing listens: every event is logged
    rediskit::RedisBackend dead(ioc, cfg);
    StreamManager<rediskit::RedisBackend> m(dead, wal(p));
    int logged = 0;
    for (int i = 0; i < events; ++i) {
      std::string const v = std::to_string(i);
      std::vector<FieldValue> fields{{"n", v}};
      m.async_publish("events:users", fields, [&](boost::system::error_code ec, PublishResult r) {
        if (!ec && r.logged) ++logged;
      });
    }
    ioc.run_for(500ms);
    if (logged != events) ::_exit(3);
    ::raise(SIGKILL);
    ::_exit(4);
  }
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  BOOST_REQUIRE_MESSAGE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                        "the child did not log every event (status " << status << ")");
  BackendFixture<rediskit::RedisBackend> f(std::in_place, [&] {
    rediskit::RedisConfig cfg;
    cfg.port = srv.port();
    return cfg;
  }());
  StreamManager<rediskit::RedisBackend> m(f.backend, wal(p));
  BOOST_TEST(m.stats().pending_records == static_cast<std::size_t>(events));
  f.run_until([&] { return m.stats().pending_records == 0; });
  BOOST_TEST(ns(f, "events:users") == seq(0, events), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
