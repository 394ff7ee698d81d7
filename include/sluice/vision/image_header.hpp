// sluice/vision/image_header.hpp: reads an image's width and height from its header (PNG, JPEG,
// TIFF, BMP) without decoding it, so that a huge image is refused before a byte of pixels is
// allocated. Anything it cannot read it reports as unknown; the decoder then decides.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace sluice::vision {

struct ImageExtent {
  std::int64_t width = 0;
  std::int64_t height = 0;
  friend bool operator==(const ImageExtent&, const ImageExtent&) = default;
};

namespace detail {

inline std::uint32_t read_be(std::span<const std::uint8_t> b, std::size_t at, int bytes) {
  std::uint32_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
  return v;
}

inline std::uint32_t read_le(std::span<const std::uint8_t> b, std::size_t at, int bytes) {
  std::uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
  return v;
}

inline std::optional<ImageExtent> png_extent(std::span<const std::uint8_t> b) {
  static constexpr std::uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (b.size() < 24) return std::nullopt;
  for (std::size_t i = 0; i < 8; ++i)
    if (b[i] != kSignature[i]) return std::nullopt;
  if (b[12] != 'I' || b[13] != 'H' || b[14] != 'D' || b[15] != 'R') return std::nullopt;
  return ImageExtent{read_be(b, 16, 4), read_be(b, 20, 4)};
}

inline std::optional<ImageExtent> jpeg_extent(std::span<const std::uint8_t> b) {
  if (b.size() < 4 || b[0] != 0xFF || b[1] != 0xD8) return std::nullopt;
  std::size_t at = 2;
  while (at + 4 <= b.size()) {
    if (b[at] != 0xFF) return std::nullopt;  // lost sync: not a JPEG we can walk
    std::uint8_t marker = b[at + 1];
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    at += 2;
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no length
    if (marker == 0xD9 || marker == 0xDA) return std::nullopt;  // end or scan before any frame header
    const std::size_t length = read_be(b, at, 2);
    if (length < 2) return std::nullopt;
    // SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
    if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
      if (at + 7 > b.size()) return std::nullopt;
      return ImageExtent{read_be(b, at + 5, 2), read_be(b, at + 3, 2)};
    }
    at += length;
  }
  return std::nullopt;
}

inline std::optional<ImageExtent> tiff_extent(std::span<const std::uint8_t> b) {
  if (b.size() < 8) return std::nullopt;
  bool little;
  if (b[0] == 'I' && b[1] == 'I' && b[2] == 42 && b[3] == 0) little = true;
  else if (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && b[3] == 42) little = false;
  else return std::nullopt;  // BigTIFF (43) and others: let the decoder judge
  auto read = [&](std::size_t at, int bytes) { return little ? read_le(b, at, bytes) : read_be(b, at, bytes); };
  const std::size_t ifd = read(4, 4);
  if (ifd + 2 > b.size()) return std::nullopt;
  const std::size_t entries = read(ifd, 2);
  std::optional<std::int64_t> width, height;
  for (std::size_t i = 0; i < entries; ++i) {
    const std::size_t e = ifd + 2 + 12 * i;
    if (e + 12 > b.size()) return std::nullopt;
    const std::uint32_t tag = read(e, 2), type = read(e + 2, 2);
    std::int64_t value;
    if (type == 3) value = read(e + 8, 2);       // SHORT, left-justified in the value field
    else if (type == 4) value = read(e + 8, 4);  // LONG
    else continue;
    if (tag == 256) width = value;
    if (tag == 257) height = value;
  }
  if (!width || !height) return std::nullopt;
  return ImageExtent{*width, *height};
}

inline std::optional<ImageExtent> bmp_extent(std::span<const std::uint8_t> b) {
  if (b.size() < 26 || b[0] != 'B' || b[1] != 'M') return std::nullopt;
  const std::uint32_t dib = read_le(b, 14, 4);
  if (dib == 12)  // OS/2 BITMAPCOREHEADER: 16-bit sizes
    return ImageExtent{read_le(b, 18, 2), read_le(b, 20, 2)};
  const auto w = static_cast<std::int32_t>(read_le(b, 18, 4));
  const auto h = static_cast<std::int32_t>(read_le(b, 22, 4));  // negative: rows stored top-down
  return ImageExtent{w < 0 ? -static_cast<std::int64_t>(w) : w, h < 0 ? -static_cast<std::int64_t>(h) : h};
}

}  // namespace detail

/// The size an image's header declares, or nullopt when the format is not one of PNG, JPEG, TIFF
/// and BMP or the header cannot be read. A header can lie: the decoder checks the decoded size again.
inline std::optional<ImageExtent> peek_image_extent(std::span<const std::uint8_t> bytes) {
  if (auto e = detail::png_extent(bytes)) return e;
  if (auto e = detail::jpeg_extent(bytes)) return e;
  if (auto e = detail::tiff_extent(bytes)) return e;
  if (auto e = detail::bmp_extent(bytes)) return e;
  return std::nullopt;
}

}  // namespace sluice::vision
