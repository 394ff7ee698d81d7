// sluice/serve/multipart.hpp: a sans-io multipart/form-data parser (RFC 7578 over RFC 2046). It
// splits a complete body into parts whose contents are views into that body (no copy of image
// bytes), with strict limits on the number of parts and the size of each part's header block.
// Any malformed body is a sluice::Error(errc::invalid_argument) that says what is wrong and where.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/core/error.hpp"
#include "sluice/serve/header_params.hpp"

namespace sluice::serve {

struct MultipartLimits {
  std::size_t max_parts = 1024;             ///< parts per body
  std::size_t max_header_bytes = 8 * 1024;  ///< bytes of one part's header block
  std::size_t max_headers = 16;             ///< header lines of one part
};

/// One form field. `content` views into the parsed body: the body must outlive the part.
struct MultipartPart {
  std::string name;                     ///< Content-Disposition name
  std::optional<std::string> filename;  ///< Content-Disposition filename (file fields)
  std::string content_type = "text/plain";
  std::string_view content;
};

namespace detail {

[[noreturn]] inline void multipart_error(const std::string& what, std::size_t offset) {
  throw Error(errc::invalid_argument, "multipart body: " + what + " (at byte " + std::to_string(offset) + ")");
}

/// Decodes RFC 8187 `charset'lang'percent-encoded` (filename*=UTF-8''...); the charset is not converted.
inline std::string decode_ext_value(std::string_view v, std::size_t offset) {
  const std::size_t q1 = v.find('\'');
  const std::size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
  if (q2 == std::string_view::npos) multipart_error("malformed filename* parameter", offset);
  std::string out;
  auto hex = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    multipart_error("bad percent escape in filename*", offset);
  };
  for (std::size_t i = q2 + 1; i < v.size(); ++i) {
    if (v[i] == '%') {
      if (i + 2 >= v.size()) multipart_error("truncated percent escape in filename*", offset);
      out += static_cast<char>(hex(v[i + 1]) * 16 + hex(v[i + 2]));
      i += 2;
    } else {
      out += v[i];
    }
  }
  return out;
}

/// Parses one part's header block (lines without their CRLF, already split) into `part`.
inline void parse_part_header(std::string_view line, MultipartPart& part, bool& seen_disposition,
                              bool& seen_type, std::size_t offset) {
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) multipart_error("header line without a name and ':'", offset);
  const std::string_view name = line.substr(0, colon);
  for (char c : name)
    if (!is_tchar(c)) multipart_error("invalid character in a part header name", offset);
  const std::string_view value = trim_ows(line.substr(colon + 1));
  if (iequals(name, "content-disposition")) {
    if (seen_disposition) multipart_error("duplicate Content-Disposition", offset);
    seen_disposition = true;
    HeaderValue v;
    try {
      v = parse_header_value(value, false);
    } catch (const Error& e) {
      multipart_error("bad Content-Disposition: " + message_of(e), offset);
    }
    if (v.value != "form-data") multipart_error("Content-Disposition is not form-data", offset);
    const auto field = v.param("name");
    if (!field) multipart_error("Content-Disposition without a name", offset);
    part.name = std::string(*field);
    if (const auto ext = v.param("filename*")) {
      part.filename = decode_ext_value(*ext, offset);
    } else if (const auto fn = v.param("filename")) {
      part.filename = std::string(*fn);
    }
  } else if (iequals(name, "content-type")) {
    if (seen_type) multipart_error("duplicate Content-Type", offset);
    seen_type = true;
    try {
      part.content_type = parse_header_value(value, true).value;
    } catch (const Error& e) {
      multipart_error("bad Content-Type: " + message_of(e), offset);
    }
  }
  // Other headers (Content-Transfer-Encoding is deprecated by RFC 7578) are ignored.
}

}  // namespace detail

/// Splits a complete multipart/form-data body delimited by `boundary` into its parts.
/// Accepts a preamble before the first delimiter and an epilogue after the last; requires CRLF
/// line ends, a Content-Disposition: form-data with a name in every part, and the close delimiter.
inline std::vector<MultipartPart> parse_multipart(std::string_view body, std::string_view boundary,
                                                  const MultipartLimits& limits = {}) {
  using detail::multipart_error;
  if (boundary.empty() || boundary.size() > 70) multipart_error("boundary must have 1 to 70 characters", 0);
  const std::string delimiter = "--" + std::string(boundary);
  const std::string crlf_delimiter = "\r\n" + delimiter;

  // The first delimiter: at the very start, or after a preamble that ends in CRLF.
  std::size_t pos;
  if (body.substr(0, delimiter.size()) == delimiter) {
    pos = delimiter.size();
  } else {
    const std::size_t found = body.find(crlf_delimiter);
    if (found == std::string_view::npos) multipart_error("no boundary delimiter found", 0);
    pos = found + crlf_delimiter.size();
  }

  std::vector<MultipartPart> parts;
  for (;;) {
    // After a delimiter: "--" closes the body; otherwise transport padding then CRLF.
    if (body.substr(pos, 2) == "--") {
      if (parts.empty()) multipart_error("body has no parts", pos);
      return parts;  // the epilogue is ignored
    }
    while (pos < body.size() && detail::is_ows(body[pos])) ++pos;
    if (body.substr(pos, 2) != "\r\n") multipart_error("expected CRLF after boundary delimiter", pos);
    pos += 2;
    if (parts.size() >= limits.max_parts)
      multipart_error("more than " + std::to_string(limits.max_parts) + " parts", pos);

    // The header block ends with an empty line.
    MultipartPart part;
    bool seen_disposition = false, seen_type = false;
    std::size_t headers = 0;
    const std::size_t header_start = pos;
    for (;;) {
      const std::size_t eol = body.find("\r\n", pos);
      if (eol == std::string_view::npos || eol - header_start > limits.max_header_bytes) {
        if (eol == std::string_view::npos && body.size() - header_start <= limits.max_header_bytes)
          multipart_error("part header block is not terminated", pos);
        multipart_error("part header block longer than " + std::to_string(limits.max_header_bytes) + " bytes",
                        header_start);
      }
      const std::string_view line = body.substr(pos, eol - pos);
      const std::size_t line_at = pos;
      pos = eol + 2;
      if (line.empty()) break;
      if (detail::is_ows(line.front())) multipart_error("folded header lines are not allowed", line_at);
      if (++headers > limits.max_headers)
        multipart_error("more than " + std::to_string(limits.max_headers) + " headers in a part", line_at);
      detail::parse_part_header(line, part, seen_disposition, seen_type, line_at);
    }
    if (!seen_disposition) multipart_error("part without Content-Disposition", header_start);

    // The content runs to the next CRLF + delimiter.
    const std::size_t end = body.find(crlf_delimiter, pos);
    if (end == std::string_view::npos) multipart_error("missing closing boundary delimiter", pos);
    part.content = body.substr(pos, end - pos);
    parts.push_back(std::move(part));
    pos = end + crlf_delimiter.size();
  }
}

}  // namespace sluice::serve
