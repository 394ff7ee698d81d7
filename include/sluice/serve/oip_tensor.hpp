// sluice/serve/oip_tensor.hpp: checks and conversions of the Open Inference Protocol's raw tensor
// form (inference_protocol.hpp) shared by the service and the transports: a shape's element count
// without overflow, a tensor's byte size, BYTES elements split out of (and appended to) raw data.
// Every size here comes from a stranger: nothing is trusted before it is checked.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/serve/inference_protocol.hpp"

namespace sluice::serve::oip {

// The raw form is little-endian; the server copies native floats and lengths as they are.
static_assert(std::endian::native == std::endian::little, "the Open Inference Protocol's raw form is little-endian");

/// Elements in `shape`: none when a dimension is negative or the product exceeds `cap`
/// (which keeps every later multiplication by an element size far from overflow).
inline std::optional<std::uint64_t> element_count(const std::vector<std::int64_t>& shape,
                                                  std::uint64_t cap = std::uint64_t{1} << 48) {
  std::uint64_t n = 1;
  for (const std::int64_t d : shape) {
    if (d < 0) return std::nullopt;
    const auto u = static_cast<std::uint64_t>(d);
    if (u != 0 && n > cap / u) return std::nullopt;
    n *= u;
  }
  return n <= cap ? std::optional<std::uint64_t>(n) : std::nullopt;
}

/// "[1, 2, 3]" for messages.
inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// Any count of elements: split_bytes' `count` for callers that take what the data holds.
inline constexpr std::uint64_t kAnyCount = std::numeric_limits<std::uint64_t>::max();

/// The BYTES elements of raw `data`, each a view into it; none when a length prefix overruns the
/// data, or when the data holds other than `count` elements (bytes left over count as one more).
inline std::optional<std::vector<std::string_view>> split_bytes(std::string_view data, std::uint64_t count) {
  std::vector<std::string_view> out;
  std::size_t at = 0;
  while (at < data.size()) {
    if (out.size() >= count) return std::nullopt;
    if (data.size() - at < 4) return std::nullopt;
    std::uint32_t length = 0;
    std::memcpy(&length, data.data() + at, 4);
    at += 4;
    if (length > data.size() - at) return std::nullopt;
    out.push_back(data.substr(at, length));
    at += length;
  }
  if (count != kAnyCount && out.size() != count) return std::nullopt;
  return out;
}

/// Appends one BYTES element (4-byte little-endian length, then the bytes) to raw `data`.
inline void append_bytes_element(std::string& data, std::string_view element) {
  const auto length = static_cast<std::uint32_t>(element.size());
  char prefix[4];
  std::memcpy(prefix, &length, 4);
  data.append(prefix, 4);
  data.append(element);
}

}  // namespace sluice::serve::oip
