// chat_load: the load benchmark of examples/chat_server (issue 19). One process, one io_context
// thread, Beast WebSocket clients on C++20 coroutines. It opens `--connections` sockets spread
// round-robin over the `--url`s (the chat_server processes), logs each in, puts them in rooms,
// sends messages at a fixed total rate and measures their delivery to every member.
//
//   chat_load --url ws://127.0.0.1:P1/ws --url ws://127.0.0.1:P2/ws
//             [--connections 10000] [--room-size 10] [--senders ROOMS] [--rate 2000]
//             [--seconds 10] [--warmup 1] [--drain 2] [--connect-concurrency 200]
//             [--setup-timeout 30] [--server-pid PID]... [--cpu-pid PID]... [--label TEXT]
//             [--bucket-ms 1000]
//
// Setup: at most --connect-concurrency connections are being set up at once, in index order.
// Connection i (on url i % urls) connects, does the WebSocket handshake, logs in as
// `load-<run id>-<i>` with `"lobby": false` and waits for `welcome`; then it enters room
// `load-<i / room-size>`: the room's first connection creates it (`create_room`; `room_exists`,
// left by an earlier run on the same Redis, makes it `join` instead), the others `join` once
// the creator has its `joined` (when the creator failed, each tries to create, then joins).
// Each connection has --setup-timeout seconds for all of that.
//
// Sending: --senders connections (default one per room; sender j is the first connection at or
// after j * N / S on url j % urls, so that the senders alternate between the urls), round-robin,
// --rate messages/s in total, paced by a 1 ms timer. A message's text is "t=<steady_clock ns at
// send> s=<sender index>"; steady_clock is CLOCK_MONOTONIC, the same clock in every process of the
// machine. Every `message` event a connection receives is a delivery; its latency is its arrival
// time minus t. Phases: --warmup s of sending (not measured), --seconds s measured (messages whose
// t falls in the window), then up to --drain s for their last deliveries. Expected deliveries: for
// each measured message, the room's members that were set up and still open when it was sent
// (room-size when nothing failed; the sender gets its own message too). Deliveries/s: deliveries
// received during the window / --seconds. Latency percentiles are exact, over every measured
// delivery (the ones that arrived within the drain; later ones count as lost), and again per
// --bucket-ms slice of the window by send time (a p99 rising slice after slice is a backlog; one
// slice out of line, a stall).
//
// Machine: the busy time of all cores (/proc/stat) over the window, and what the processes
// measured here (the client, --server-pid, --cpu-pid) do not account for: other jobs sharing
// the cores, which make the run's figures worse than the system's.
//
// Memory: VmRSS of every --server-pid before the first connection and after the setup of all;
// (after - before) / connections held on it (the i-th pid is taken to serve the i-th url when
// there are as many pids as urls; otherwise connections are split evenly) is its memory per
// connection. CPU: the client's own (getrusage) and that of every --server-pid and --cpu-pid
// (/proc/PID/stat) over the measured window, in % of one core: a client near 100 % is the
// bottleneck.
//
// Output: one human-readable block, then one line `RESULT {json}`. Exit status 0 when some
// connection was held, 2 when none was, 1 on bad options or an internal error.

#include "bench_util.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using WsStream = websocket::stream<beast::tcp_stream>;
using asio::use_awaitable;

namespace {

// ---- options ------------------------------------------------------------------------------------

struct Options {
  std::vector<std::string> urls;
  std::size_t connections = 10'000;
  std::size_t room_size = 10;
  std::size_t senders = 0;  // 0: one per room
  double rate = 2000;
  double seconds = 10;
  double warmup = 1;
  double drain = 2;
  std::size_t connect_concurrency = 200;
  double setup_timeout = 30;
  std::vector<int> server_pids;
  std::vector<int> cpu_pids;
  std::string label;
  std::int64_t bucket_ms = 1000;  // the slices of the window for the p50/p99 timeline
};

[[noreturn]] void usage() {
  std::cerr << "usage: chat_load --url ws://HOST:PORT/PATH [--url ...] [--connections N]\n"
               "                 [--room-size K] [--senders S] [--rate MSG_PER_S] [--seconds D]\n"
               "                 [--warmup S] [--drain S] [--connect-concurrency C]\n"
               "                 [--setup-timeout S] [--server-pid PID]... [--cpu-pid PID]...\n"
               "                 [--label TEXT] [--bucket-ms 1000]\n";
  std::exit(1);
}

struct Url {
  std::string text, host, port, target, host_header;
  tcp::endpoint endpoint;
};

// "ws://host[:port][/path]" -> its parts (throws when it is not that).
Url parse_url(std::string const& text) {
  std::string_view s = text;
  if (s.substr(0, 5) != "ws://") throw std::invalid_argument("not a ws:// URL: " + text);
  s.remove_prefix(5);
  auto const slash = s.find('/');
  std::string_view const authority = s.substr(0, slash);
  Url u;
  u.text = text;
  u.target = slash == std::string_view::npos ? "/" : std::string(s.substr(slash));
  auto const colon = authority.rfind(':');
  if (colon == std::string_view::npos) {
    u.host = std::string(authority);
    u.port = "80";
  } else {
    u.host = std::string(authority.substr(0, colon));
    u.port = std::string(authority.substr(colon + 1));
  }
  if (u.host.empty() || u.port.empty()) throw std::invalid_argument("bad URL: " + text);
  u.host_header = u.host + ":" + u.port;
  return u;
}

// ---- /proc and getrusage ------------------------------------------------------------------------

// VmRSS of `pid` in KiB, -1 when it cannot be read.
long read_rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

// utime + stime of `pid` in seconds, -1 when it cannot be read.
double read_cpu_s(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  auto const paren = line.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(line.substr(paren + 1));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i)  // field 3 is the state; 14 utime, 15 stime
    if (i >= 14) ticks += std::strtod(f.c_str(), nullptr);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The whole machine's busy time (all cores, /proc/stat: user nice system irq softirq steal) in
// seconds, -1 when it cannot be read.
double machine_busy_s() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  if (!(in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) ||
      cpu != "cpu")
    return -1;
  return (user + nice + system + irq + softirq + steal) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Cpu {
  double user = 0, sys = 0;
  double total() const { return user + sys; }
};

Cpu self_cpu() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto const s = [](timeval tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return {s(ru.ru_utime), s(ru.ru_stime)};
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

Clock::duration to_duration(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// ---- connections and rooms ----------------------------------------------------------------------

enum class Phase { waiting, setup, open, failed, dropped };

struct Conn {
  std::size_t index = 0, url = 0, room = 0;
  std::optional<WsStream> ws;
  beast::flat_buffer buffer;
  Phase phase = Phase::waiting;
  std::deque<std::string> out;  // frames waiting for the write in progress
  bool writing = false;
  bool closing = false;
  std::uint64_t req = 0;
};

struct Room {
  enum class State { pending, ready, failed };
  std::string id;
  std::size_t creator = 0;  // the index of its first connection
  State state = State::pending;
  std::optional<asio::steady_timer> ready;  // never expires: cancelled when state leaves pending
  std::size_t open = 0;                     // members set up and still open
};

// A reason a connection failed during its setup (beside Asio's system errors).
struct SetupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string_view buffer_view(beast::flat_buffer const& b) {
  return {static_cast<char const*>(b.data().data()), b.size()};
}

std::string_view string_field(json::object const& o, std::string_view key) {
  auto const* v = o.if_contains(key);
  return v && v->is_string() ? std::string_view(v->get_string()) : std::string_view();
}

// Counts per reason, and the first few reasons in the order they happened.
struct Reasons {
  std::map<std::string, std::size_t> counts;
  std::vector<std::string> first;
  std::size_t total = 0;
  void add(std::string const& r) {
    ++total;
    ++counts[r];
    if (first.size() < 5 && std::find(first.begin(), first.end(), r) == first.end())
      first.push_back(r);
  }
  json::object to_json() const {
    json::object o;
    for (auto const& [k, n] : counts)
      o[k] = n;
    return o;
  }
};

double pct(std::vector<double> const& sorted, std::size_t p) {
  return bench_util::percentile(sorted, p);
}

// ---- the load -----------------------------------------------------------------------------------

class Load {
 public:
  Load(asio::io_context& ioc, Options o) : ioc_(ioc), o_(std::move(o)) {}

  int run();

 private:
  asio::awaitable<void> main_coro();
  asio::awaitable<void> conn_main(Conn& c);
  asio::awaitable<void> enter_room(Conn& c);
  asio::awaitable<std::string> request(Conn& c, std::string const& frame, std::string_view wanted);
  asio::awaitable<json::value> read_answer(Conn& c, std::string_view wanted);
  asio::awaitable<void> write_loop(Conn& c);
  asio::awaitable<void> close_one(Conn& c);
  asio::awaitable<void> send_loop(Clock::time_point start, Clock::time_point stop);
  template <class Pred>
  asio::awaitable<bool> wait_until(Pred pred, std::optional<Clock::time_point> deadline);

  void launch_more();
  void setup_finished(Conn& c, std::optional<std::string> failure);
  void on_frame(std::string_view text);
  void send_message(Conn& c);
  void report();

  std::string next_req(Conn& c) { return std::to_string(++c.req); }

  template <class T>
  static void spawn_checked(asio::io_context& ioc, asio::awaitable<T> a) {
    asio::co_spawn(ioc, std::move(a), [](std::exception_ptr e, auto&&...) {
      if (e) std::rethrow_exception(e);
    });
  }

  asio::io_context& ioc_;
  Options o_;
  std::vector<Url> urls_;
  std::string run_id_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Room> rooms_;

  // setup
  std::size_t next_ = 0, in_flight_ = 0, setup_done_ = 0;
  Clock::time_point setup_start_{}, last_welcome_{}, last_joined_{}, setup_end_{};
  std::size_t logged_in_ = 0, room_exists_ = 0, setup_events_ignored_ = 0;
  Reasons setup_failures_;
  bool setup_deadline_hit_ = false;

  // running
  std::size_t readers_ = 0, writers_ = 0, closers_ = 0;
  std::vector<std::size_t> senders_;
  std::size_t next_sender_ = 0;
  std::int64_t measure_start_ns_ = 0, measure_end_ns_ = 0;
  std::uint64_t sent_total_ = 0, sent_measured_ = 0, expected_ = 0;
  std::uint64_t deliveries_total_ = 0, delivered_measured_ = 0, delivered_in_window_ = 0;
  std::uint64_t acks_ = 0, rate_limited_ = 0, foreign_messages_ = 0, bad_frames_ = 0;
  std::map<std::string, std::uint64_t> error_codes_;  // `error` events other than rate_limited
  std::map<std::string, std::uint64_t> other_events_, events_before_close_;
  std::vector<std::int64_t> latency_ns_;
  std::vector<std::uint32_t> latency_bucket_;  // the --bucket-ms slice of the window it was sent in
  std::vector<double> tick_lag_ms_;            // how late the send timer fired, in the window
  Reasons drops_, write_errors_;
  double drain_s_ = 0;

  // resources
  std::vector<long> rss_before_, rss_after_;
  std::vector<std::size_t> open_on_url_;  // after the setup
  std::vector<double> cpu_pid_start_, cpu_pid_end_;
  Cpu client_start_, client_end_, client_at_setup_start_, client_at_setup_end_, client_at_exit_;
  Clock::time_point window_start_{}, window_end_{};  // when the CPU figures were sampled
  double machine_start_ = -1, machine_end_ = -1;     // machine_busy_s() at the window's ends
  void sample_cpu(Cpu& client, std::vector<double>& pids, Clock::time_point& at) {
    (machine_start_ < 0 ? machine_start_ : machine_end_) = machine_busy_s();
    client = self_cpu();
    pids.clear();
    for (int pid : o_.server_pids)
      pids.push_back(read_cpu_s(pid));
    for (int pid : o_.cpu_pids)
      pids.push_back(read_cpu_s(pid));
    at = Clock::now();
  }
  std::size_t held_ = 0, closed_clean_ = 0;
  Reasons close_errors_;
  Clock::time_point run_start_{}, run_end_{};
};

int Load::run() {
  if (o_.urls.empty()) usage();
  tcp::resolver resolver(ioc_);
  for (auto const& text : o_.urls) {
    Url u = parse_url(text);
    auto const results = resolver.resolve(u.host, u.port);
    if (results.empty()) throw std::runtime_error("cannot resolve " + text);
    u.endpoint = results.begin()->endpoint();
    urls_.push_back(std::move(u));
  }

  std::random_device rd;
  char id[16];
  std::snprintf(id, sizeof id, "%x%04x", static_cast<unsigned>(getpid()) & 0xfffffu,
                static_cast<unsigned>(rd()) & 0xffffu);
  run_id_ = id;

  std::size_t const n = o_.connections;
  std::size_t const room_count = (n + o_.room_size - 1) / o_.room_size;
  rooms_.resize(room_count);
  for (std::size_t r = 0; r < room_count; ++r) {
    rooms_[r].id = "load-" + std::to_string(r);
    rooms_[r].creator = r * o_.room_size;
    rooms_[r].ready.emplace(ioc_, Clock::time_point::max());
  }
  conns_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto c = std::make_unique<Conn>();
    c->index = i;
    c->url = i % urls_.size();
    c->room = i / o_.room_size;
    conns_.push_back(std::move(c));
  }
  std::size_t const senders = std::min(n, o_.senders == 0 ? room_count : o_.senders);
  // Sender j is the first connection at or after j * n / senders that is on url j % urls
  // (connection i is on url i % urls): the senders alternate between the urls whatever the
  // room size, and with one sender per room each is a member of its room (when room-size >=
  // urls).
  std::size_t const u = urls_.size();
  for (std::size_t j = 0; j < senders; ++j) {
    std::size_t const base = j * n / senders;
    std::size_t idx = base + (j % u + u - base % u) % u;
    while (idx >= n)
      idx -= u;  // n >= u: the last ones step back
    senders_.push_back(idx);
  }

  // The client holds one descriptor per connection: take the hard limit.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < n + 64)
    std::cerr << "chat_load: warning: open files limited to " << lim.rlim_cur << " for " << n
              << " connections (ulimit -n)\n";

  run_start_ = Clock::now();
  bench_util::run_coro(ioc_, [this] { return main_coro(); });
  run_end_ = Clock::now();
  client_at_exit_ = self_cpu();
  report();
  return held_ > 0 ? 0 : 2;
}

template <class Pred>
asio::awaitable<bool> Load::wait_until(Pred pred, std::optional<Clock::time_point> deadline) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!pred()) {
    if (deadline && Clock::now() >= *deadline) co_return false;
    t.expires_after(std::chrono::milliseconds(2));
    co_await t.async_wait(use_awaitable);
  }
  co_return true;
}

asio::awaitable<void> Load::main_coro() {
  std::size_t const n = o_.connections;
  for (int pid : o_.server_pids)
    rss_before_.push_back(read_rss_kib(pid));

  // ---- setup: connect, log in, enter the rooms ------------------------------------------------
  client_at_setup_start_ = self_cpu();
  setup_start_ = Clock::now();
  launch_more();
  // A last resort against a connection stuck in a way its own timeout does not cover.
  auto const setup_deadline =
      setup_start_ + to_duration(o_.setup_timeout * 4 + static_cast<double>(n) / 20);
  if (!co_await wait_until([this, n] { return setup_done_ == n; }, setup_deadline)) {
    setup_deadline_hit_ = true;
    next_ = n;  // launch nothing more
    for (auto& c : conns_)
      if (c->phase == Phase::setup && c->ws) beast::get_lowest_layer(*c->ws).close();
    for (auto& r : rooms_)  // wake the members waiting for a creator
      if (r.state == Room::State::pending) {
        r.state = Room::State::failed;
        r.ready->cancel();
      }
    co_await wait_until([this] { return in_flight_ == 0; }, std::nullopt);
    for (auto& c : conns_)
      if (c->phase == Phase::waiting) {
        c->phase = Phase::failed;
        setup_failures_.add("not started: setup deadline");
      }
  }
  setup_end_ = Clock::now();
  client_at_setup_end_ = self_cpu();

  open_on_url_.assign(urls_.size(), 0);
  for (auto& c : conns_)
    if (c->phase == Phase::open) ++open_on_url_[c->url];
  for (int pid : o_.server_pids)
    rss_after_.push_back(read_rss_kib(pid));

  if (std::none_of(conns_.begin(), conns_.end(),
                   [](auto const& c) { return c->phase == Phase::open; }))
    co_return;  // nothing to measure: report() says so

  // ---- warm-up, measured window, drain ----------------------------------------------------------
  auto const warm_start = Clock::now();
  auto const measure_start = warm_start + to_duration(o_.warmup);
  auto const measure_end = measure_start + to_duration(o_.seconds);
  measure_start_ns_ =
      std::chrono::duration_cast<std::chrono::nanoseconds>(measure_start.time_since_epoch())
          .count();
  measure_end_ns_ =
      std::chrono::duration_cast<std::chrono::nanoseconds>(measure_end.time_since_epoch()).count();
  latency_ns_.reserve(static_cast<std::size_t>(o_.rate * o_.seconds) * o_.room_size + 1024);

  co_await send_loop(warm_start, measure_end);

  auto const drain_deadline = Clock::now() + to_duration(o_.drain);
  co_await wait_until([this] { return delivered_measured_ >= expected_; }, drain_deadline);
  drain_s_ = seconds_between(measure_end, Clock::now());

  events_before_close_ = other_events_;  // not the `member` (left) events the closes cause

  // ---- close every socket with a close frame ----------------------------------------------------
  for (auto& c : conns_)
    if (c->phase == Phase::open) ++held_;
  co_await wait_until([this] { return writers_ == 0; }, Clock::now() + std::chrono::seconds(2));
  for (auto& c : conns_)
    if (c->phase == Phase::open && !c->writing) spawn_checked(ioc_, close_one(*c));
  bool const closed =
      co_await wait_until([this] { return readers_ == 0 && closers_ == 0 && writers_ == 0; },
                          Clock::now() + std::chrono::seconds(10));
  if (!closed) {
    for (auto& c : conns_)
      if (c->ws && beast::get_lowest_layer(*c->ws).socket().is_open())
        beast::get_lowest_layer(*c->ws).close();
    co_await wait_until([this] { return readers_ == 0 && closers_ == 0 && writers_ == 0; },
                        std::nullopt);
  }
}

void Load::launch_more() {
  while (in_flight_ < o_.connect_concurrency && next_ < conns_.size()) {
    Conn& c = *conns_[next_++];
    ++in_flight_;
    c.phase = Phase::setup;
    spawn_checked(ioc_, conn_main(c));
  }
}

void Load::setup_finished(Conn& c, std::optional<std::string> failure) {
  Room& room = rooms_[c.room];
  if (failure) {
    c.phase = Phase::failed;
    setup_failures_.add(*failure);
    if (c.ws) {
      beast::error_code ignored;
      beast::get_lowest_layer(*c.ws).socket().close(ignored);
    }
    if (c.index == room.creator && room.state == Room::State::pending) {
      room.state = Room::State::failed;
      room.ready->cancel();
    }
  } else {
    c.phase = Phase::open;
    ++room.open;
    beast::get_lowest_layer(*c.ws).expires_never();
    c.buffer.shrink_to_fit();
  }
  ++setup_done_;
  --in_flight_;
  launch_more();
}

asio::awaitable<void> Load::conn_main(Conn& c) {
  Url const& u = urls_[c.url];
  c.ws.emplace(ioc_);
  auto& layer = beast::get_lowest_layer(*c.ws);
  layer.expires_after(to_duration(o_.setup_timeout));
  std::string where = "connect";
  std::optional<std::string> failure;
  try {
    co_await layer.async_connect(u.endpoint, use_awaitable);
    where = "handshake";
    c.ws->set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    co_await c.ws->async_handshake(u.host_header, u.target, use_awaitable);
    c.ws->text(true);
    where = "login";
    std::string const login = R"({"op":"login","name":"load-)" + run_id_ + "-" +
                              std::to_string(c.index) + R"(","lobby":false,"req":)" + next_req(c) +
                              "}";
    std::string const code = co_await request(c, login, "welcome");
    if (!code.empty()) throw SetupError("login: error " + code);
    ++logged_in_;
    last_welcome_ = Clock::now();
    where = "room";
    co_await enter_room(c);
    last_joined_ = Clock::now();
  } catch (boost::system::system_error const& e) {
    failure = where + ": " + e.code().message();
  } catch (SetupError const& e) {
    failure = e.what();
  }
  setup_finished(c, failure);
  if (failure) co_return;

  // ---- the connection's read loop, until it closes ----------------------------------------------
  ++readers_;
  for (;;) {
    beast::error_code ec;
    co_await c.ws->async_read(c.buffer, asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (!c.closing && c.phase == Phase::open) {
        c.phase = Phase::dropped;
        --rooms_[c.room].open;
        drops_.add(ec.message());
      }
      break;
    }
    on_frame(buffer_view(c.buffer));
    c.buffer.consume(c.buffer.size());
  }
  --readers_;
}

asio::awaitable<void> Load::enter_room(Conn& c) {
  Room& room = rooms_[c.room];
  bool const creator = c.index == room.creator;
  while (!creator && room.state == Room::State::pending) {
    beast::error_code ignored;  // cancelled when the creator is done
    co_await room.ready->async_wait(asio::redirect_error(use_awaitable, ignored));
  }
  if (creator || room.state == Room::State::failed) {
    std::string const create = R"({"op":"create_room","room":")" + room.id + R"(","name":")" +
                               room.id + R"(","req":)" + next_req(c) + "}";
    std::string const code = co_await request(c, create, "joined");
    if (code.empty()) {
      if (creator) {
        room.state = Room::State::ready;
        room.ready->cancel();
      }
      co_return;
    }
    if (code != "room_exists") throw SetupError("create_room: error " + code);
    ++room_exists_;
  }
  std::string const join = R"({"op":"join","room":")" + room.id + R"(","req":)" + next_req(c) + "}";
  std::string const code = co_await request(c, join, "joined");
  if (!code.empty()) throw SetupError("join: error " + code);
  if (creator) {
    room.state = Room::State::ready;
    room.ready->cancel();
  }
}

// Writes `frame` (setup only: nothing else writes then) and reads until the event `wanted` or
// an `error`; returns the error's code, empty for `wanted`.
asio::awaitable<std::string> Load::request(Conn& c, std::string const& frame,
                                           std::string_view wanted) {
  co_await c.ws->async_write(asio::buffer(frame), use_awaitable);
  json::value const answer = co_await read_answer(c, wanted);
  auto const& o = answer.get_object();
  if (string_field(o, "ev") == wanted) co_return std::string();
  std::string code(string_field(o, "code"));
  co_return code.empty() ? std::string("(no code)") : code;
}

asio::awaitable<json::value> Load::read_answer(Conn& c, std::string_view wanted) {
  for (;;) {
    co_await c.ws->async_read(c.buffer, use_awaitable);
    json::error_code ec;
    json::value v = json::parse(buffer_view(c.buffer), ec);
    c.buffer.consume(c.buffer.size());
    if (ec || !v.is_object()) throw SetupError("unparsable frame during setup");
    auto const ev = string_field(v.get_object(), "ev");
    if (ev == wanted || ev == "error") co_return v;
    ++setup_events_ignored_;  // `member` of the others joining, mostly
  }
}

void Load::on_frame(std::string_view text) {
  alignas(std::max_align_t) unsigned char storage[4096];
  json::monotonic_resource mr(storage, sizeof storage);
  json::error_code ec;
  json::value const v = json::parse(text, ec, &mr);
  if (ec || !v.is_object()) {
    ++bad_frames_;
    return;
  }
  auto const& o = v.get_object();
  auto const ev = string_field(o, "ev");
  if (ev == "message") {
    auto const* m = o.if_contains("message");
    std::string_view const t = m && m->is_object() ? string_field(m->get_object(), "text") : "";
    std::int64_t sent_ns = 0;
    if (t.substr(0, 2) != "t=" ||
        std::from_chars(t.data() + 2, t.data() + t.size(), sent_ns).ec != std::errc()) {
      ++foreign_messages_;
      return;
    }
    std::int64_t const now = now_ns();
    ++deliveries_total_;
    if (now >= measure_start_ns_ && now < measure_end_ns_) ++delivered_in_window_;
    if (sent_ns >= measure_start_ns_ && sent_ns < measure_end_ns_) {
      ++delivered_measured_;
      latency_ns_.push_back(now - sent_ns);
      latency_bucket_.push_back(
          static_cast<std::uint32_t>((sent_ns - measure_start_ns_) / (o_.bucket_ms * 1'000'000)));
    }
  } else if (ev == "sent") {
    ++acks_;
  } else if (ev == "error") {
    auto const code = string_field(o, "code");
    if (code == "rate_limited")
      ++rate_limited_;
    else
      ++error_codes_[code.empty() ? std::string("(no code)") : std::string(code)];
  } else {
    ++other_events_[std::string(ev)];
  }
}

// One message per tick's due share, round-robin over the senders still open.
asio::awaitable<void> Load::send_loop(Clock::time_point start, Clock::time_point stop) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto next_tick = start;
  auto const tick = std::chrono::milliseconds(1);
  std::uint64_t sent = 0;
  bool measuring = false;
  for (;;) {
    auto const now = Clock::now();
    if (now >= stop) break;
    if (!measuring && now.time_since_epoch() >= std::chrono::nanoseconds(measure_start_ns_)) {
      measuring = true;
      sample_cpu(client_start_, cpu_pid_start_, window_start_);
    }
    auto const now_n =
        std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
    if (now_n >= measure_start_ns_)
      tick_lag_ms_.push_back(std::chrono::duration<double, std::milli>(now - next_tick).count());
    auto const due = static_cast<std::uint64_t>(o_.rate * seconds_between(start, now));
    while (sent < due) {
      Conn* c = nullptr;
      for (std::size_t tries = 0; tries < senders_.size() && !c; ++tries) {
        Conn& candidate = *conns_[senders_[next_sender_]];
        next_sender_ = (next_sender_ + 1) % senders_.size();
        if (candidate.phase == Phase::open) c = &candidate;
      }
      if (!c) break;  // no sender left
      send_message(*c);
      ++sent;
    }
    if (sent < due) break;
    next_tick += tick;
    if (next_tick < now) next_tick = now;  // late: do not fire a burst of catch-up ticks
    timer.expires_at(next_tick);
    co_await timer.async_wait(use_awaitable);
  }
  sample_cpu(client_end_, cpu_pid_end_, window_end_);
}

void Load::send_message(Conn& c) {
  Room const& room = rooms_[c.room];
  std::int64_t const t = now_ns();
  ++sent_total_;
  if (t >= measure_start_ns_ && t < measure_end_ns_) {
    ++sent_measured_;
    expected_ += room.open;
  }
  std::string frame;
  frame.reserve(128);
  frame += R"({"op":"send","room":")";
  frame += room.id;
  frame += R"(","text":"t=)";
  frame += std::to_string(t);
  frame += " s=";
  frame += std::to_string(c.index);
  frame += R"(","cid":")";
  frame += std::to_string(sent_total_);
  frame += "\"}";
  c.out.push_back(std::move(frame));
  if (!c.writing) {
    c.writing = true;
    ++writers_;
    spawn_checked(ioc_, write_loop(c));
  }
}

asio::awaitable<void> Load::write_loop(Conn& c) {
  while (!c.out.empty() && c.phase == Phase::open) {
    beast::error_code ec;
    co_await c.ws->async_write(asio::buffer(c.out.front()),
                               asio::redirect_error(use_awaitable, ec));
    c.out.pop_front();
    if (ec) {
      write_errors_.add(ec.message());
      break;
    }
  }
  c.out.clear();
  c.writing = false;
  --writers_;
}

asio::awaitable<void> Load::close_one(Conn& c) {
  ++closers_;
  c.closing = true;
  beast::error_code ec;
  co_await c.ws->async_close(websocket::close_code::normal,
                             asio::redirect_error(use_awaitable, ec));
  if (ec)
    close_errors_.add(ec.message());
  else
    ++closed_clean_;
  --closers_;
}

// ---- the report ---------------------------------------------------------------------------------

void Load::report() {
  std::size_t const n = o_.connections;
  std::size_t failed = 0, dropped = 0, open_after_setup = 0;
  for (auto const& c : conns_) {
    if (c->phase == Phase::failed) ++failed;
    if (c->phase == Phase::dropped) ++dropped;
  }
  for (auto k : open_on_url_)
    open_after_setup += k;

  std::vector<double> lat;
  lat.reserve(latency_ns_.size());
  for (auto ns : latency_ns_)
    lat.push_back(static_cast<double>(ns) / 1e6);
  std::sort(lat.begin(), lat.end());
  // p50 and p99 per second of the window (by send time): a rising p99 is a backlog
  std::vector<std::vector<double>> by_second;
  for (std::size_t k = 0; k < latency_ns_.size(); ++k) {
    if (latency_bucket_[k] >= by_second.size()) by_second.resize(latency_bucket_[k] + 1);
    by_second[latency_bucket_[k]].push_back(static_cast<double>(latency_ns_[k]) / 1e6);
  }
  std::string seconds_text;
  json::array seconds_json;
  for (auto& v : by_second) {
    std::sort(v.begin(), v.end());
    char item[48];
    std::snprintf(item, sizeof item, "%s%.0f/%.0f", seconds_text.empty() ? "" : " ", pct(v, 50),
                  pct(v, 99));
    seconds_text += item;
    seconds_json.push_back(json::array{pct(v, 50), pct(v, 99)});
  }
  std::vector<double> lag = tick_lag_ms_;
  std::sort(lag.begin(), lag.end());

  double const window = o_.seconds;
  double const window_wall = std::max(1e-9, seconds_between(window_start_, window_end_));
  double const client_cpu = client_end_.total() - client_start_.total();
  double const lost =
      expected_ > delivered_measured_ ? static_cast<double>(expected_ - delivered_measured_) : 0;
  auto const since_setup = [this](Clock::time_point t) {
    return t == Clock::time_point{} ? 0.0 : seconds_between(setup_start_, t);
  };

  // CPU of the k-th pid (--server-pid, then --cpu-pid) in % of a core over the window, -1
  // when unknown.
  auto const pid_cpu_pct = [&](std::size_t k) {
    if (k >= cpu_pid_start_.size() || k >= cpu_pid_end_.size() || cpu_pid_start_[k] < 0 ||
        cpu_pid_end_[k] < 0)
      return -1.0;
    return 100 * (cpu_pid_end_[k] - cpu_pid_start_[k]) / window_wall;
  };

  // memory per connection
  bool const pid_per_url = o_.server_pids.size() == urls_.size();
  json::array servers;
  double delta_sum = 0;
  bool memory_ok = !o_.server_pids.empty() && open_after_setup > 0;
  std::ostringstream mem_text;
  for (std::size_t k = 0; k < o_.server_pids.size(); ++k) {
    long const before = rss_before_.at(k), after = rss_after_.at(k);
    double const conns = pid_per_url ? static_cast<double>(open_on_url_[k])
                                     : static_cast<double>(open_after_setup) /
                                           static_cast<double>(o_.server_pids.size());
    bool const ok = before >= 0 && after >= 0 && conns > 0;
    memory_ok = memory_ok && ok;
    double const per = ok ? static_cast<double>(after - before) / conns : 0;
    if (ok) delta_sum += static_cast<double>(after - before);
    double const cpu_pct = pid_cpu_pct(k);
    char line[256];
    std::snprintf(line, sizeof line,
                  "  server %zu (pid %d%s%s): RSS %.1f -> %.1f MiB over %.0f connections: "
                  "%.2f KiB per connection; CPU %.0f %% of a core in the window\n",
                  k + 1, o_.server_pids[k], pid_per_url ? ", " : "",
                  pid_per_url ? urls_[k].text.c_str() : "", static_cast<double>(before) / 1024,
                  static_cast<double>(after) / 1024, conns, per, cpu_pct);
    mem_text << line;
    json::object s;
    s["pid"] = o_.server_pids[k];
    if (pid_per_url) s["url"] = urls_[k].text;
    s["connections"] = conns;
    s["rss_before_kib"] = before;
    s["rss_after_kib"] = after;
    s["kib_per_connection"] = per;
    s["cpu_pct"] = cpu_pct;
    servers.push_back(std::move(s));
  }
  double const kib_per_conn = memory_ok ? delta_sum / static_cast<double>(open_after_setup) : 0;
  json::array others;
  for (std::size_t k = 0; k < o_.cpu_pids.size(); ++k) {
    std::size_t const at = o_.server_pids.size() + k;
    double const cpu_pct = pid_cpu_pct(at);
    char line[160];
    std::snprintf(line, sizeof line, "  pid %d (--cpu-pid): CPU %.0f %% of a core in the window\n",
                  o_.cpu_pids[k], cpu_pct);
    mem_text << line;
    json::object s;
    s["pid"] = o_.cpu_pids[k];
    s["cpu_pct"] = cpu_pct;
    others.push_back(std::move(s));
  }

  auto const reasons_text = [](Reasons const& r) {
    std::string s;
    for (auto const& [k, count] : r.counts) {
      if (!s.empty()) s += "; ";
      s += k + " (" + std::to_string(count) + ")";
    }
    return s;
  };

  std::string url_list;
  for (auto const& u : urls_)
    url_list += (url_list.empty() ? "" : " ") + u.text;
  std::printf(
      "chat_load%s%s: %zu connections over %zu URL(s) (%s), rooms of %zu, %zu senders, "
      "%.0f msg/s target, %.1f s measured after %.1f s warm-up, run id %s\n",
      o_.label.empty() ? "" : " ", o_.label.c_str(), n, urls_.size(), url_list.c_str(),
      o_.room_size, senders_.size(), o_.rate, window, o_.warmup, run_id_.c_str());
  std::printf(
      "connections: attempted %zu, held %zu (set up and open at the end), failed %zu, "
      "dropped after setup %zu\n",
      n, held_, failed, dropped);
  if (setup_failures_.total)
    std::printf("  setup failures: %s\n", reasons_text(setup_failures_).c_str());
  for (auto const& r : setup_failures_.first)
    std::printf("  first failure of this kind: %s\n", r.c_str());
  if (drops_.total) std::printf("  drops: %s\n", reasons_text(drops_).c_str());
  if (setup_deadline_hit_) std::printf("  the setup deadline was hit\n");
  std::printf(
      "setup (%zu in flight at most): %zu logged in, the last welcome %.2f s after the "
      "first connect, the last joined %.2f s; %zu room_exists; client CPU %.2f s\n",
      o_.connect_concurrency, logged_in_, since_setup(last_welcome_), since_setup(last_joined_),
      room_exists_, client_at_setup_end_.total() - client_at_setup_start_.total());
  if (window_end_ == Clock::time_point{}) {  // nothing was measured
    std::printf("no connection held after the setup: nothing sent\n");
    json::object r;
    r["label"] = o_.label;
    r["connections"] = n;
    r["held"] = held_;
    r["failed"] = failed;
    r["setup_failures"] = setup_failures_.to_json();
    std::printf("RESULT %s\n", json::serialize(r).c_str());
    std::fflush(stdout);
    return;
  }
  std::printf(
      "sent: %llu in the window (%.0f msg/s), %llu in all; %llu sent acks; rate_limited "
      "%llu",
      static_cast<unsigned long long>(sent_measured_), static_cast<double>(sent_measured_) / window,
      static_cast<unsigned long long>(sent_total_), static_cast<unsigned long long>(acks_),
      static_cast<unsigned long long>(rate_limited_));
  for (auto const& [code, count] : error_codes_)
    std::printf(", error %s %llu", code.c_str(), static_cast<unsigned long long>(count));
  if (write_errors_.total) std::printf(", write errors: %s", reasons_text(write_errors_).c_str());
  std::printf("\n");
  std::printf(
      "deliveries: %llu of %llu expected (lost %.0f, %.3f %%) after a %.2f s drain; "
      "%.0f deliveries/s end to end (received in the window)\n",
      static_cast<unsigned long long>(delivered_measured_),
      static_cast<unsigned long long>(expected_), lost,
      expected_ ? 100 * lost / static_cast<double>(expected_) : 0.0, drain_s_,
      static_cast<double>(delivered_in_window_) / window);
  std::printf(
      "latency, send to message event (ms, %zu samples): p50 %.2f  p90 %.2f  p99 %.2f  "
      "max %.2f\n",
      lat.size(), pct(lat, 50), pct(lat, 90), pct(lat, 99), lat.empty() ? 0 : lat.back());
  std::printf("latency p50/p99 (ms) by %lld ms of the window (send time): %s\n",
              static_cast<long long>(o_.bucket_ms), seconds_text.c_str());
  if (memory_ok)
    std::printf(
        "memory per connection: %.2f KiB overall (server RSS growth over the setup / "
        "connections held)\n",
        kib_per_conn);
  else
    std::printf("memory per connection: not measured (--server-pid)\n");
  std::printf("%s", mem_text.str().c_str());
  std::printf(
      "client: CPU %.0f %% of a core in the window (user %.2f s, sys %.2f s); send timer "
      "late p99 %.2f ms, max %.2f ms; %.1f s of CPU over a %.1f s run\n",
      100 * client_cpu / window_wall, client_end_.user - client_start_.user,
      client_end_.sys - client_start_.sys, pct(lag, 99), lag.empty() ? 0 : lag.back(),
      client_at_exit_.total(), seconds_between(run_start_, run_end_));
  // The machine over the window: all busy time, and what the processes measured here do not
  // account for (other jobs on a shared machine, kernel work of other processes).
  double measured_pct = 100 * client_cpu / window_wall;
  for (std::size_t k = 0; k < o_.server_pids.size() + o_.cpu_pids.size(); ++k)
    measured_pct += std::max(0.0, pid_cpu_pct(k));
  double const machine_pct = machine_start_ >= 0 && machine_end_ >= 0
                                 ? 100 * (machine_end_ - machine_start_) / window_wall
                                 : -1;
  double const others_pct = machine_pct >= 0 ? std::max(0.0, machine_pct - measured_pct) : -1;
  long const cores = sysconf(_SC_NPROCESSORS_ONLN);
  std::printf(
      "machine: %ld cores, busy %.0f %% of a core in the window (of %ld00 %%); processes not "
      "measured here: %.0f %% of a core\n",
      cores, machine_pct, cores, others_pct);
  std::printf("close: %zu closed with a close handshake", closed_clean_);
  if (close_errors_.total) std::printf(", errors: %s", reasons_text(close_errors_).c_str());
  std::printf("; other events before the close: ");
  bool first = true;
  for (auto const& [ev, count] : events_before_close_) {
    std::printf("%s%s %llu", first ? "" : ", ", ev.c_str(), static_cast<unsigned long long>(count));
    first = false;
  }
  if (first) std::printf("none");
  if (foreign_messages_ || bad_frames_)
    std::printf("; messages not from this run %llu, unparsable frames %llu",
                static_cast<unsigned long long>(foreign_messages_),
                static_cast<unsigned long long>(bad_frames_));
  std::printf("\n");

  json::object r;
  r["label"] = o_.label;
  r["run_id"] = run_id_;
  r["urls"] = urls_.size();
  r["connections"] = n;
  r["room_size"] = o_.room_size;
  r["senders"] = senders_.size();
  r["rate_target"] = o_.rate;
  r["seconds"] = window;
  r["held"] = held_;
  r["failed"] = failed;
  r["dropped"] = dropped;
  r["setup_failures"] = setup_failures_.to_json();
  r["login_all_s"] = since_setup(last_welcome_);
  r["joined_all_s"] = since_setup(last_joined_);
  r["sent"] = sent_measured_;
  r["sent_per_s"] = static_cast<double>(sent_measured_) / window;
  r["acks"] = acks_;
  r["rate_limited"] = rate_limited_;
  json::object errs;
  for (auto const& [code, count] : error_codes_)
    errs[code] = count;
  r["errors"] = std::move(errs);
  r["expected"] = expected_;
  r["delivered"] = delivered_measured_;
  r["lost"] = lost;
  r["deliveries_per_s"] = static_cast<double>(delivered_in_window_) / window;
  r["latency_samples"] = lat.size();
  r["p50_ms"] = pct(lat, 50);
  r["p90_ms"] = pct(lat, 90);
  r["p99_ms"] = pct(lat, 99);
  r["max_ms"] = lat.empty() ? 0.0 : lat.back();
  r["bucket_ms"] = o_.bucket_ms;
  r["by_bucket_p50_p99_ms"] = std::move(seconds_json);
  r["kib_per_connection"] = kib_per_conn;
  r["servers"] = std::move(servers);
  r["cpu_pids"] = std::move(others);
  r["client_cpu_pct"] = 100 * client_cpu / window_wall;
  r["client_timer_late_p99_ms"] = pct(lag, 99);
  r["machine_busy_pct"] = machine_pct;
  r["others_cpu_pct"] = others_pct;
  r["closed_clean"] = closed_clean_;
  json::object events;
  for (auto const& [ev, count] : events_before_close_)
    events[ev] = count;
  r["other_events"] = std::move(events);
  std::printf("RESULT %s\n", json::serialize(r).c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  auto const count = [](std::string const& v) {
    auto const x = std::stoll(v);
    if (x < 0) throw std::invalid_argument("negative: " + v);
    return static_cast<std::size_t>(x);
  };
  bench_util::parse_pairs(
      argc, argv,
      [&](std::string const& name, std::string const& v) {
        if (name == "--url")
          o.urls.push_back(v);
        else if (name == "--connections")
          o.connections = count(v);
        else if (name == "--room-size")
          o.room_size = count(v);
        else if (name == "--senders")
          o.senders = count(v);
        else if (name == "--rate")
          o.rate = std::stod(v);
        else if (name == "--seconds")
          o.seconds = std::stod(v);
        else if (name == "--warmup")
          o.warmup = std::stod(v);
        else if (name == "--drain")
          o.drain = std::stod(v);
        else if (name == "--connect-concurrency")
          o.connect_concurrency = count(v);
        else if (name == "--setup-timeout")
          o.setup_timeout = std::stod(v);
        else if (name == "--server-pid")
          o.server_pids.push_back(std::stoi(v));
        else if (name == "--cpu-pid")
          o.cpu_pids.push_back(std::stoi(v));
        else if (name == "--label")
          o.label = v;
        else if (name == "--bucket-ms")
          o.bucket_ms = std::stoll(v);
        else
          return false;
        return true;
      },
      usage);
  if (o.urls.empty() || o.connections == 0 || o.room_size == 0 || o.rate <= 0 || o.seconds <= 0 ||
      o.warmup < 0 || o.drain < 0 || o.connect_concurrency == 0 || o.setup_timeout <= 0 ||
      o.bucket_ms <= 0)
    usage();
  asio::io_context ioc(1);
  Load load(ioc, std::move(o));
  return load.run();
} catch (std::exception const& e) {
  std::cerr << "chat_load: " << e.what() << "\n";
  return 1;
}
