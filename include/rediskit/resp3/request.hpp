// rediskit::resp3::Request: commands written as RESP3 wire bytes, ready to send.
#pragma once

#include <rediskit/resp3/detail/serialize.hpp>

#include <cstddef>
#include <ranges>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace rediskit::resp3 {

/// One or more commands, serialized as they are pushed into a single payload string: the
/// writing half of the Connection (seed 000's Redis clients), which sends payload() as it is,
/// in one write, and reads expected_replies() replies. One request = one round trip.
///
/// Each command is a RESP array of bulk strings. Arguments may be:
///  - anything convertible to std::string_view (binary-safe: NUL bytes are kept);
///  - integers (decimal, std::to_chars); bool and plain char are refused at compile time;
///  - floating-point numbers (shortest round-trip form, locale-free; "inf", "-inf", "nan");
///  - a user type T with `X rediskit_to_bulk(T const&)` declared in T's namespace (found by
///    ADL), where X converts to std::string_view; it takes precedence over the rules above.
/// Nothing is allocated per argument beyond the payload's own growth. Not thread-safe.
class Request {
 public:
  struct Config {
    /// Fail with Error::not_connected instead of waiting for a reconnection.
    bool fail_if_not_connected = false;
    /// May be re-sent when the link drops after it was written (GET, SET without side
    /// effects on retry, ...); otherwise such a request fails with Error::connection_lost.
    bool idempotent = false;
    /// No reply within this: Error::timeout. Empty: the connection's command_timeout; 0: none.
    std::optional<std::chrono::milliseconds> timeout{};
  };

  Config config{};

  Request() = default;
  explicit Request(Config cfg) : config(cfg) {}

  /// Appends `command` with `args`, one bulk string each: push("SET", "key", 42).
  template <class... Args>
  void push(std::string_view command, Args const&... args) {
    detail::append_header(payload_, '*', 1 + sizeof...(Args));
    detail::append_bulk(payload_, command);
    (detail::append_arg(payload_, args), ...);
    count(command);
  }

  /// Appends `command` with every element of `range` (a sized or forward range) as arguments:
  /// push_range("MSET", pairs). pair / tuple elements are flattened (k1 v1 k2 v2). An empty
  /// range still writes the bare command (whose reply is then the server's error).
  template <class Range>
  void push_range(std::string_view command, Range const& range) {
    using Element = std::remove_cvref_t<std::ranges::range_reference_t<Range const>>;
    std::size_t const n = detail::range_size(range);
    detail::append_header(payload_, '*', 1 + n * detail::bulks_per_element<Element>());
    detail::append_bulk(payload_, command);
    for (auto const& e : range)
      detail::append_element(payload_, e);
    count(command);
  }

  /// Appends `command`, then `key`, then every element of `range`, flattening pair / tuple
  /// elements: push_range("HSET", "user:1", fields) writes HSET user:1 f1 v1 f2 v2.
  template <class Range>
  void push_range(std::string_view command, std::string_view key, Range const& range) {
    using Element = std::remove_cvref_t<std::ranges::range_reference_t<Range const>>;
    std::size_t const n = detail::range_size(range);
    detail::append_header(payload_, '*', 2 + n * detail::bulks_per_element<Element>());
    detail::append_bulk(payload_, command);
    detail::append_bulk(payload_, key);
    for (auto const& e : range)
      detail::append_element(payload_, e);
    count(command);
  }

  /// Appends one command of `nargs` bulk strings (its name included) produced by
  /// `gen(bulk)`, which must call bulk(std::string_view) exactly `nargs` times. For typed
  /// commands (rediskit::push_command), whose argument count is known before they are written.
  template <class Gen>
  void push_generated(std::size_t nargs, Gen&& gen) {
    detail::append_header(payload_, '*', nargs);
    bool first = true, push_only = false;
    gen([&](std::string_view s) {
      if (first) push_only = detail::is_push_only_command(s);
      first = false;
      detail::append_bulk(payload_, s);
    });
    ++commands_;
    if (!push_only) ++expected_replies_;
  }

  /// The wire bytes of every command pushed so far.
  std::string_view payload() const noexcept { return payload_; }

  /// Number of commands pushed.
  std::size_t commands() const noexcept { return commands_; }

  /// Number of commands that get a regular reply: all but SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE,
  /// UNSUBSCRIBE, PUNSUBSCRIBE and SUNSUBSCRIBE (any case), which RESP3 answers with pushes.
  std::size_t expected_replies() const noexcept { return expected_replies_; }

  /// True when no command was pushed.
  bool empty() const noexcept { return commands_ == 0; }

  /// Removes every command (keeps the capacity and the config).
  void clear() noexcept {
    payload_.clear();
    commands_ = 0;
    expected_replies_ = 0;
  }

  /// Appends `bytes`, whole commands in RESP form (a request's payload, or part of one), which
  /// hold `commands` commands of which `replies` get a regular reply: to send part of a
  /// request again, or elsewhere.
  void append_raw(std::string_view bytes, std::size_t commands, std::size_t replies) {
    payload_.append(bytes);
    commands_ += commands;
    expected_replies_ += replies;
  }

  /// Reserves payload capacity, in bytes.
  void reserve(std::size_t bytes) { payload_.reserve(bytes); }

 private:
  void count(std::string_view command) noexcept {
    ++commands_;
    if (!detail::is_push_only_command(command)) ++expected_replies_;
  }

  std::string payload_;
  std::size_t commands_ = 0;
  std::size_t expected_replies_ = 0;
};

}  // namespace rediskit::resp3
