// sluice/core/utf8.hpp: text from outside (file names, query keys, headers, decoder messages) made
// safe for JSON. nlohmann::json throws on invalid UTF-8 when it serialises, so every string that a
// stranger controls passes through sanitize_utf8 (or clip_utf8, which also bounds its length) before
// it is put into a JSON value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice {

namespace detail {

/// Length of the well-formed UTF-8 sequence at s[i] (1-4), or 0 when it is not one (overlong
/// forms, surrogates, code points above U+10FFFF and truncated sequences included).
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(s[k]); };
  const std::uint8_t b0 = byte(i);
  if (b0 < 0x80) return 1;
  std::size_t n;
  std::uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) n = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // UTF-16 surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return n;
}

}  // namespace detail

/// True when `s` is well-formed UTF-8.
inline bool is_valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = detail::utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

/// `s` with every byte that does not start a well-formed sequence replaced by U+FFFD, and control
/// characters other than tab kept (JSON escapes them). A valid string comes back unchanged.
inline std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = detail::utf8_sequence_length(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

/// sanitize_utf8(s), cut to at most `max_bytes` bytes (plus "..." when cut) at a character boundary:
/// a cut never splits a multi-byte character.
inline std::string clip_utf8(std::string_view s, std::size_t max_bytes) {
  std::string clean = sanitize_utf8(s);
  if (clean.size() <= max_bytes) return clean;
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<std::uint8_t>(clean[end]) & 0xC0) == 0x80) --end;  // continuation byte
  clean.resize(end);
  clean += "...";
  return clean;
}

}  // namespace sluice
