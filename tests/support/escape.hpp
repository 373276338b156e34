// Test helper: shows control bytes of wire data in test messages.
#pragma once

#include <string>
#include <string_view>

namespace rediskit::test {

inline std::string escape(std::string_view s) {
  std::string out;
  for (char const c : s) {
    if (c == '\r')
      out += "\\r";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\0')
      out += "\\0";
    else
      out += c;
  }
  return out;
}

}  // namespace rediskit::test
