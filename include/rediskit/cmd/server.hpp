// rediskit typed commands: server and connection (PING, ECHO, TIME, DBSIZE, FLUSHDB, INFO).
// Each command is an aggregate of views: see rediskit/command.hpp for the rules.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace rediskit::cmd {

/// PING [message] -> "PONG", or the message.
struct ping {
  std::optional<std::string_view> message{};
  using reply_type = std::string;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    if (message)
      w("PING", *message);
    else
      w("PING");
  }
};

/// ECHO message -> message.
struct echo {
  std::string_view message;
  using reply_type = std::string;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("ECHO", message);
  }
};

/// TIME -> {unix seconds, microseconds}.
struct time {
  using reply_type = std::pair<std::int64_t, std::int64_t>;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("TIME");
  }
};

/// DBSIZE -> number of keys in the database.
struct dbsize {
  using reply_type = std::int64_t;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    w("DBSIZE");
  }
};

/// FLUSHDB -> deletes every key of the current database (SYNC).
struct flushdb {
  using reply_type = bool;
  using wire_type = std::string;  // OK
  static bool from_wire(std::string&&) noexcept { return true; }
  template <class W>
  void write(W& w) const {
    w("FLUSHDB", "SYNC");
  }
};

/// INFO [section] -> the server's INFO text ("# Section\r\nfield:value\r\n...").
struct info {
  std::optional<std::string_view> section{};
  using reply_type = std::string;
  static constexpr bool idempotent = true;
  template <class W>
  void write(W& w) const {
    if (section)
      w("INFO", *section);
    else
      w("INFO");
  }
};

}  // namespace rediskit::cmd
