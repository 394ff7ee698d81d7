// sluice/serve/query.hpp: splitting a request target into its path and its decoded query
// parameters (application/x-www-form-urlencoded: '&'-separated, '+' is a space, %XX escapes).
// Malformed escapes are a sluice::Error(errc::invalid_argument).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/core/error.hpp"

namespace sluice::serve {

using QueryParams = std::vector<std::pair<std::string, std::string>>;

/// Decodes %XX escapes and, when `plus_is_space`, '+' into ' '.
inline std::string percent_decode(std::string_view s, bool plus_is_space = true) {
  auto hex = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      const int hi = i + 1 < s.size() ? hex(s[i + 1]) : -1;
      const int lo = i + 2 < s.size() ? hex(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) throw Error(errc::invalid_argument, "bad percent escape in '" + std::string(s.substr(0, 200)) + "'");
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

/// A request target split at '?': the decoded path and the decoded query parameters in order.
struct Target {
  std::string path;
  QueryParams query;
};

/// At most `max_params` parameters (more is an error: bounded work per request).
inline Target parse_target(std::string_view target, std::size_t max_params = 64) {
  Target out;
  const std::size_t q = target.find('?');
  out.path = percent_decode(target.substr(0, q), false);
  if (q == std::string_view::npos) return out;
  std::string_view rest = target.substr(q + 1);
  if (const std::size_t hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  while (!rest.empty()) {
    const std::size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (pair.empty()) continue;
    if (out.query.size() >= max_params)
      throw Error(errc::invalid_argument, "more than " + std::to_string(max_params) + " query parameters");
    const std::size_t eq = pair.find('=');
    out.query.emplace_back(percent_decode(pair.substr(0, eq)),
                           eq == std::string_view::npos ? std::string{} : percent_decode(pair.substr(eq + 1)));
  }
  return out;
}

}  // namespace sluice::serve
