// rediskit::detail::info_value: one field of an INFO reply's text, as a view into it.
//
//   info_value("# Stats\r\nevicted_keys:12\r\n", "evicted_keys")  -> "12"
//
// Used by CacheService::async_status (evicted_keys, expired_keys) and Worker's start-up check
// (maxmemory_policy).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace rediskit::detail {

/// The value of field `name` in INFO text (lines "name:value", "\r\n" or "\n" ended); empty
/// when there is no such line.
inline std::string_view info_value(std::string_view info, std::string_view name) {
  for (std::size_t at = 0; at < info.size();) {
    auto const end = std::min(info.find('\n', at), info.size());
    auto line = info.substr(at, end - at);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > name.size() && line.starts_with(name) && line[name.size()] == ':')
      return line.substr(name.size() + 1);
    at = end + 1;
  }
  return {};
}

}  // namespace rediskit::detail
