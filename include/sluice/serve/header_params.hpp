// sluice/serve/header_params.hpp: parsing of HTTP header values of the form
// `token [/ token] *( ";" name "=" (token | quoted-string) )` -- Content-Type (media type and its
// boundary) and Content-Disposition (form-data; name=...; filename=...). Sans-io, no allocation
// beyond the result, and every malformed input is a sluice::Error(errc::invalid_argument).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "sluice/core/error.hpp"

namespace sluice::serve {

/// A header value split into its leading value (lower-cased) and its parameters (names lower-cased,
/// values unquoted, case kept).
struct HeaderValue {
  std::string value;
  std::vector<std::pair<std::string, std::string>> params;

  /// The first parameter with this (lower-case) name.
  std::optional<std::string_view> param(std::string_view name) const {
    for (const auto& [k, v] : params)
      if (k == name) return std::string_view(v);
    return std::nullopt;
  }
};

namespace detail {

inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

/// RFC 9110 tchar.
inline bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

inline std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

[[noreturn]] inline void header_error(std::string_view what, std::string_view header) {
  throw Error(errc::invalid_argument, std::string(what) + " in header value '" +
                                          std::string(header.substr(0, 200)) + "'");
}

}  // namespace detail

/// `text` without the ": <message of ec>" that std::system_error appends to its what().
inline std::string without_code_suffix(std::string text, std::error_code ec) {
  const std::string suffix = ": " + ec.message();
  if (text.size() > suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0)
    text.resize(text.size() - suffix.size());
  return text;
}

/// An exception's text for a client: what() without the error code's message.
inline std::string message_of(const std::system_error& e) { return without_code_suffix(e.what(), e.code()); }

/// Parses `value *( ";" name "=" (token | quoted-string) )`. The leading value is a token, or
/// `token "/" token` when `media_type` is set. Limits: at most 32 parameters.
inline HeaderValue parse_header_value(std::string_view header, bool media_type) {
  using namespace detail;
  constexpr std::size_t kMaxParams = 32;
  HeaderValue out;
  std::size_t i = 0;
  const std::size_t n = header.size();
  auto skip_ows = [&] {
    while (i < n && is_ows(header[i])) ++i;
  };
  auto read_token = [&]() -> std::string_view {
    const std::size_t start = i;
    while (i < n && is_tchar(header[i])) ++i;
    return header.substr(start, i - start);
  };

  skip_ows();
  std::string_view type = read_token();
  if (type.empty()) header_error("missing value", header);
  out.value = to_lower(type);
  if (media_type) {
    if (i >= n || header[i] != '/') header_error("media type without '/'", header);
    ++i;
    std::string_view sub = read_token();
    if (sub.empty()) header_error("media type without subtype", header);
    out.value += '/';
    out.value += to_lower(sub);
  }
  skip_ows();
  while (i < n) {
    if (header[i] != ';') header_error("expected ';'", header);
    ++i;
    skip_ows();
    if (i == n) break;  // a trailing ';' is tolerated (some clients send it)
    std::string_view name = read_token();
    if (name.empty()) header_error("empty parameter name", header);
    skip_ows();
    if (i >= n || header[i] != '=') header_error("parameter without '='", header);
    ++i;
    skip_ows();
    std::string value;
    if (i < n && header[i] == '"') {
      ++i;
      bool closed = false;
      while (i < n) {
        const char c = header[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i >= n) break;
          value += header[i++];
        } else if (c == '\r' || c == '\n' || c == '\0') {
          header_error("control character in quoted string", header);
        } else {
          value += c;
        }
      }
      if (!closed) header_error("unterminated quoted string", header);
    } else {
      std::string_view token = read_token();
      if (token.empty()) header_error("empty parameter value", header);
      value = std::string(token);
    }
    if (out.params.size() >= kMaxParams) header_error("too many parameters", header);
    out.params.emplace_back(to_lower(name), std::move(value));
    skip_ows();
  }
  return out;
}

/// The boundary of a `multipart/form-data` Content-Type (RFC 2046: 1..70 characters).
inline std::string multipart_boundary(std::string_view content_type) {
  const HeaderValue v = parse_header_value(content_type, true);
  if (v.value != "multipart/form-data")
    throw Error(errc::invalid_argument, "expected Content-Type multipart/form-data, got '" + v.value + "'");
  const auto b = v.param("boundary");
  if (!b) throw Error(errc::invalid_argument, "multipart/form-data without a boundary parameter");
  if (b->empty() || b->size() > 70)
    throw Error(errc::invalid_argument, "multipart boundary must have 1 to 70 characters");
  for (char c : *b)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)
      throw Error(errc::invalid_argument, "multipart boundary has a non-printable character");
  return std::string(*b);
}

}  // namespace sluice::serve
