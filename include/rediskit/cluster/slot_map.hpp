// rediskit::cluster::SlotMap: which master serves each of the 16384 hash slots (and which
// replicas follow each master), read from a node's CLUSTER SLOTS reply and corrected by MOVED
// redirections.
//
//   auto map = cluster::SlotMap::parse(tree, "10.0.0.5", ec, &why);   // CLUSTER SLOTS reply
//   auto i = map.master_of(cluster::key_slot("user:1"));              // index into masters()
//   map.assign(slot, {"10.0.0.7", 7001});                              // after MOVED
//
// CLUSTER SLOTS (Redis 3 to 7) is used rather than CLUSTER SHARDS (Redis 7 only): both name
// the same masters. A node announced with an empty host (or "?") is reached at the host that
// was asked, as Redis documents.
#pragma once

#include <rediskit/cluster/slot.hpp>
#include <rediskit/error.hpp>
#include <rediskit/resp3/node.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rediskit::cluster {

/// A node's address, as the cluster announces it.
struct NodeAddress {
  std::string host;
  std::uint16_t port = 0;
  friend auto operator<=>(NodeAddress const&, NodeAddress const&) = default;
  std::string to_string() const { return host + ":" + std::to_string(port); }
};

/// Parses "host:port" (the form of a MOVED / ASK redirection; host may be an IPv6 address,
/// the port is after the last ':'). nullopt when malformed.
inline std::optional<NodeAddress> parse_address(std::string_view text) {
  auto const colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size()) return std::nullopt;
  std::uint16_t port = 0;
  auto const* end = text.data() + text.size();
  auto const r = std::from_chars(text.data() + colon + 1, end, port);
  if (r.ec != std::errc{} || r.ptr != end || port == 0) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return NodeAddress{std::string(host), port};
}

/// What a redirection error says: "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381".
struct Redirect {
  bool ask = false;  ///< ASK (one command, after ASKING) rather than MOVED (the map changed)
  std::uint16_t slot = 0;
  NodeAddress to{};
};

/// Parses a MOVED or ASK error text; nullopt for any other text.
inline std::optional<Redirect> parse_redirect(std::string_view error) {
  Redirect r;
  if (error.starts_with("MOVED "))
    error.remove_prefix(6);
  else if (error.starts_with("ASK "))
    error.remove_prefix(4), r.ask = true;
  else
    return std::nullopt;
  auto const space = error.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  auto const rs = std::from_chars(error.data(), error.data() + space, r.slot);
  if (rs.ec != std::errc{} || rs.ptr != error.data() + space || r.slot >= slot_count)
    return std::nullopt;
  auto to = parse_address(error.substr(space + 1));
  if (!to) return std::nullopt;
  r.to = std::move(*to);
  return r;
}

/// The owner of every slot (see the top of this file).
class SlotMap {
 public:
  static constexpr std::int16_t unassigned = -1;

  SlotMap() { owner_.fill(unassigned); }

  /// Reads a CLUSTER SLOTS reply: [[first, last, [host, port, id, ...], replicas...], ...].
  /// `asked_host` replaces an empty or "?" host. On a reply of another shape: ec =
  /// Error::unexpected_reply_type and `what` says what was wrong.
  static SlotMap parse(resp3::Tree const& t, std::string_view asked_host,
                       boost::system::error_code& ec, std::string* what = nullptr) {
    ec.clear();
    SlotMap m;
    auto fail = [&](std::string text) {
      ec = make_error_code(Error::unexpected_reply_type);
      if (what) *what = "CLUSTER SLOTS: " + std::move(text);
      return SlotMap{};
    };
    if (t.empty() || t[0].type != resp3::Type::array || t[0].depth != 0)
      return fail("the reply is not an array");
    std::size_t i = 1;
    auto number = [&](std::size_t at, std::int64_t& out) {
      if (at >= t.size() || t[at].type != resp3::Type::number) return false;
      auto const& v = t[at].value;
      return std::from_chars(v.data(), v.data() + v.size(), out).ec == std::errc{};
    };
    for (std::size_t range = 0; range < t[0].size; ++range) {
      if (i >= t.size() || t[i].depth != 1 || t[i].type != resp3::Type::array || t[i].size < 3)
        return fail("range " + std::to_string(range) + " is not [first, last, master, ...]");
      std::size_t const entries = t[i].size;
      std::int64_t first = 0, last = 0;
      std::int16_t master = unassigned;
      if (!number(i + 1, first) || !number(i + 2, last) || first < 0 || last < first ||
          last >= slot_count)
        return fail("range " + std::to_string(range) + " has no valid slot numbers");
      i += 3;
      for (std::size_t e = 2; e < entries; ++e) {
        // A node: [host, port, id, {hostname...}] at depth 2, its fields at depth 3 and below.
        if (i >= t.size() || t[i].depth != 2 || t[i].type != resp3::Type::array || t[i].size < 2)
          return fail("range " + std::to_string(range) + " has a malformed node entry");
        std::size_t const node_at = i;
        std::int64_t port = 0;
        if (!number(node_at + 2, port) || port <= 0 || port > 65535)
          return fail("range " + std::to_string(range) + " has a node without a valid port");
        std::string host = t[node_at + 1].value;
        if (host.empty() || host == "?") host.assign(asked_host);
        if (e == 2) {
          master = m.index_of(NodeAddress{std::move(host), std::uint16_t(port)});
          for (auto s = first; s <= last; ++s) m.owner_[std::size_t(s)] = master;
        } else {
          auto& rs = m.replicas_[std::size_t(master)];
          NodeAddress r{std::move(host), std::uint16_t(port)};
          if (std::find(rs.begin(), rs.end(), r) == rs.end()) rs.push_back(std::move(r));
        }
        // Skip the node's subtree.
        ++i;
        while (i < t.size() && t[i].depth > 2) ++i;
      }
    }
    return m;
  }

  /// Every master that owns at least one slot (and any named by assign()).
  std::vector<NodeAddress> const& masters() const noexcept { return masters_; }

  /// The replicas of masters()[index] that CLUSTER SLOTS named.
  std::vector<NodeAddress> const& replicas_of(std::int16_t index) const {
    return replicas_.at(std::size_t(index));
  }

  /// Index into masters() of the slot's owner, or `unassigned`.
  std::int16_t master_of(std::uint16_t slot) const noexcept {
    return slot < slot_count ? owner_[slot] : unassigned;
  }

  /// Records that `to` serves `slot` now (a MOVED redirection); returns its index.
  std::int16_t assign(std::uint16_t slot, NodeAddress const& to) {
    auto const idx = index_of(to);
    if (slot < slot_count) owner_[slot] = idx;
    return idx;
  }

  /// True when every slot has an owner (cluster_state:ok as this client sees it).
  bool covers_all_slots() const noexcept {
    for (auto o : owner_)
      if (o == unassigned) return false;
    return true;
  }

  /// Indices into masters() of the masters that own at least one slot now (a master that lost
  /// its last slot, or a demoted one named by an old MOVED, is not among them), in the order
  /// of the lowest slot each owns.
  std::vector<std::int16_t> owners() const {
    std::vector<std::uint16_t> lowest(masters_.size(), slot_count);
    for (std::size_t s = slot_count; s-- > 0;)
      if (owner_[s] != unassigned) lowest[std::size_t(owner_[s])] = std::uint16_t(s);
    std::vector<std::int16_t> out;
    for (std::size_t k = 0; k < masters_.size(); ++k)
      if (lowest[k] < slot_count) out.push_back(std::int16_t(k));
    std::sort(out.begin(), out.end(),
              [&](auto a, auto b) { return lowest[std::size_t(a)] < lowest[std::size_t(b)]; });
    return out;
  }

  /// The lowest slot that master `index` owns (slot_count when it owns none).
  std::uint16_t lowest_slot_of(std::int16_t index) const noexcept {
    for (std::size_t s = 0; s < slot_count; ++s)
      if (owner_[s] == index) return std::uint16_t(s);
    return slot_count;
  }

  /// For a cluster-wide SCAN: the lowest slot of the master that comes after the owner of
  /// `slot` in the order of their lowest slots; nullopt after the last one.
  std::optional<std::uint16_t> next_master_start(std::uint16_t slot) const {
    auto const here = master_of(slot);
    if (here == unassigned) return std::nullopt;
    std::uint16_t const from = lowest_slot_of(here);
    // The next slot above `from` whose owner's lowest slot is that slot: a master first met.
    std::vector<bool> met(masters_.size());
    for (std::size_t s = 0; s < slot_count; ++s) {
      auto const o = owner_[s];
      if (o == unassigned || met[std::size_t(o)]) continue;
      met[std::size_t(o)] = true;
      if (s > from) return std::uint16_t(s);
    }
    return std::nullopt;
  }

  /// The index of `a` in masters(), adding it when new.
  std::int16_t index_of(NodeAddress const& a) {
    for (std::size_t k = 0; k < masters_.size(); ++k)
      if (masters_[k] == a) return static_cast<std::int16_t>(k);
    masters_.push_back(a);
    replicas_.emplace_back();
    return static_cast<std::int16_t>(masters_.size() - 1);
  }

 private:
  std::vector<NodeAddress> masters_;
  std::vector<std::vector<NodeAddress>> replicas_;  // per master, in masters_' order
  std::array<std::int16_t, slot_count> owner_{};
};

}  // namespace rediskit::cluster
