// sluice/serve/image_probe.hpp: the width and height of a PNG, JPEG, BMP or TIFF image read from its
// header alone, so that the server can refuse an image over its pixel limit before anything decodes
// it (a small compressed file can expand to gigabytes). Bounded work; never reads out of range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::serve {

struct ImageDims {
  std::uint64_t width = 0;
  std::uint64_t height = 0;
  std::uint64_t pixels() const { return width * height; }
};

namespace detail {
inline std::uint32_t be16(std::string_view s, std::size_t i) {
  return (std::uint32_t(std::uint8_t(s[i])) << 8) | std::uint8_t(s[i + 1]);
}
inline std::uint32_t be32(std::string_view s, std::size_t i) { return (be16(s, i) << 16) | be16(s, i + 2); }
inline std::uint32_t le16(std::string_view s, std::size_t i) {
  return std::uint8_t(s[i]) | (std::uint32_t(std::uint8_t(s[i + 1])) << 8);
}
inline std::uint32_t le32(std::string_view s, std::size_t i) { return le16(s, i) | (le16(s, i + 2) << 16); }

inline std::optional<ImageDims> probe_jpeg(std::string_view s) {
  std::size_t i = 2;
  for (int guard = 0; guard < 4096 && i + 4 <= s.size(); ++guard) {
    if (std::uint8_t(s[i]) != 0xFF) return std::nullopt;
    const std::uint8_t marker = std::uint8_t(s[i + 1]);
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
      i += 2;
      continue;
    }
    const std::uint32_t len = be16(s, i + 2);
    if (len < 2) return std::nullopt;
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (i + 9 > s.size()) return std::nullopt;
      return ImageDims{be16(s, i + 7), be16(s, i + 5)};
    }
    i += 2 + len;
  }
  return std::nullopt;
}

inline std::optional<ImageDims> probe_tiff(std::string_view s) {
  const bool le = s[0] == 'I';
  auto u16 = [&](std::size_t i) { return le ? le16(s, i) : be16(s, i); };
  auto u32 = [&](std::size_t i) { return le ? le32(s, i) : be32(s, i); };
  const std::uint64_t ifd = u32(4);
  if (ifd + 2 > s.size()) return std::nullopt;
  const std::uint32_t entries = u16(ifd);
  std::uint64_t width = 0, height = 0;
  for (std::uint32_t e = 0; e < entries && e < 1024; ++e) {
    const std::uint64_t at = ifd + 2 + 12ull * e;
    if (at + 12 > s.size()) return std::nullopt;
    const std::uint32_t tag = u16(at), type = u16(at + 2);
    const std::uint32_t value = type == 3 ? u16(at + 8) : u32(at + 8);  // SHORT or LONG
    if (tag == 256) width = value;
    if (tag == 257) height = value;
  }
  if (width == 0 || height == 0) return std::nullopt;
  return ImageDims{width, height};
}
}  // namespace detail

/// The dimensions in the header, or nullopt when the format is unknown or the header is truncated.
inline std::optional<ImageDims> probe_image(std::string_view s) {
  using namespace detail;
  if (s.size() >= 24 && s.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8) && s.substr(12, 4) == "IHDR")
    return ImageDims{be32(s, 16), be32(s, 20)};
  if (s.size() >= 4 && std::uint8_t(s[0]) == 0xFF && std::uint8_t(s[1]) == 0xD8) return probe_jpeg(s);
  if (s.size() >= 26 && s.substr(0, 2) == "BM") {
    const std::int32_t w = static_cast<std::int32_t>(le32(s, 18));
    const std::int32_t h = static_cast<std::int32_t>(le32(s, 22));  // negative: top-down rows
    const std::int64_t aw = w < 0 ? -std::int64_t(w) : w, ah = h < 0 ? -std::int64_t(h) : h;
    return ImageDims{static_cast<std::uint64_t>(aw), static_cast<std::uint64_t>(ah)};
  }
  if (s.size() >= 8 && (s.substr(0, 4) == std::string_view("II*\0", 4) || s.substr(0, 4) == std::string_view("MM\0*", 4)))
    return probe_tiff(s);
  return std::nullopt;
}

}  // namespace sluice::serve
