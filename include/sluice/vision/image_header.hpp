// sluice/vision/image_header.hpp: the image header inspector. Reads what a PNG, JPEG, TIFF or BMP
// header declares -- size, channels, bit depth, JPEG progression, TIFF tiles and strips, EXIF/TIFF
// orientation -- without decoding a pixel, and from it the bytes that decoding will allocate, so
// that a small file that expands to gigabytes is refused before a byte of pixels exists. Any other
// format, and any header it cannot read to the end, is an error: what is not understood is not
// decoded. Bounded work; never reads out of range.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "sluice/core/error.hpp"

namespace sluice::vision {

enum class ImageFormat { png, jpeg, tiff, bmp };

inline const char* format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::png: return "PNG";
    case ImageFormat::jpeg: return "JPEG";
    case ImageFormat::tiff: return "TIFF";
    case ImageFormat::bmp: return "BMP";
  }
  return "?";
}

/// What a header declares, and what decoding it costs.
struct ImageHeader {
  ImageFormat format = ImageFormat::png;
  std::int64_t width = 0;   ///< as stored, before the orientation
  std::int64_t height = 0;
  int channels = 0;         ///< of the decoded image (OpenCV, unchanged); an upper bound where the
                            ///< header cannot tell (a BMP palette may be gray, a PNG tRNS adds alpha)
  int bit_depth = 0;        ///< bits per sample in the file (PNG 1..16, JPEG 8, TIFF 1/8/16, BMP bpp/channels)
  int decoded_depth = 8;    ///< bits per sample of the decoded image: 8 or 16
  int orientation = 1;      ///< EXIF / TIFF Orientation 1..8 (1: stored upright)
  bool progressive = false; ///< JPEG: progressive (or multi-scan: whole-image coefficient buffers)
  std::int64_t tile_width = 0;   ///< TIFF: the tile or strip libtiff decodes at a time
  std::int64_t tile_height = 0;
  std::int64_t buffer_bytes = 0; ///< the decoder's own: JPEG coefficient, TIFF tile buffers
  std::int64_t decode_bytes = 0; ///< pixels, coefficient and tile buffers, rotation and float copies
  int reduction = 1;             ///< JPEG scale-on-decode (1, 2, 4, 8) that decode_bytes is for

  /// Orientations 5..8 swap the sides: the image as a viewer shows it.
  bool transposed() const { return orientation >= 5 && orientation <= 8; }
  std::int64_t upright_width() const { return transposed() ? height : width; }
  std::int64_t upright_height() const { return transposed() ? width : height; }
};

struct ImageExtent {
  std::int64_t width = 0;
  std::int64_t height = 0;
  friend bool operator==(const ImageExtent&, const ImageExtent&) = default;
};

namespace detail {

// One prefix for every refused header, the same as for data that does not decode.
[[noreturn]] inline void bad_header(const std::string& why) {
  throw Error(errc::invalid_argument, "not a decodable image: " + why);
}

/// Bounds-checked big/little-endian reads over the whole input.
class ByteReader {
 public:
  ByteReader(std::span<const std::uint8_t> b, bool little) : b_(b), little_(little) {}
  bool has(std::size_t at, std::size_t n) const { return at <= b_.size() && n <= b_.size() - at; }
  std::uint32_t u(std::size_t at, int bytes, const char* what) const {
    if (!has(at, static_cast<std::size_t>(bytes))) bad_header(std::string(what) + ": header is truncated");
    std::uint32_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      const int k = little_ ? bytes - 1 - i : i;
      v = (v << 8) | b_[at + static_cast<std::size_t>(k)];
    }
    return v;
  }
  std::size_t size() const { return b_.size(); }

 private:
  std::span<const std::uint8_t> b_;
  bool little_;
};

// A TIFF directory, shared by TIFF files and the Exif block of a JPEG. `base` is where the TIFF
// header starts (offsets are relative to it).
struct TiffDirectory {
  std::optional<std::uint32_t> width, height, samples, bits, photometric, orientation, sample_format,
      rows_per_strip, tile_width, tile_height;
};

inline TiffDirectory read_tiff_directory(std::span<const std::uint8_t> all, std::size_t base, const char* what) {
  const std::span<const std::uint8_t> b = all.subspan(base);
  if (b.size() < 8) bad_header(std::string(what) + ": header is truncated");
  bool little;
  if (b[0] == 'I' && b[1] == 'I') little = true;
  else if (b[0] == 'M' && b[1] == 'M') little = false;
  else bad_header(std::string(what) + ": bad byte order mark");
  const ByteReader r(b, little);
  const std::uint32_t magic = r.u(2, 2, what);
  if (magic == 43) bad_header(std::string(what) + ": BigTIFF is not supported");
  if (magic != 42) bad_header(std::string(what) + ": bad TIFF magic number");
  const std::size_t ifd = r.u(4, 4, what);
  const std::size_t entries = r.u(ifd, 2, what);
  if (entries == 0) bad_header(std::string(what) + ": empty TIFF directory");
  TiffDirectory d;
  for (std::size_t i = 0; i < entries; ++i) {
    const std::size_t e = ifd + 2 + 12 * i;
    const std::uint32_t tag = r.u(e, 2, what), type = r.u(e + 2, 2, what), count = r.u(e + 4, 4, what);
    std::optional<std::uint32_t>* field = nullptr;
    switch (tag) {
      case 256: field = &d.width; break;
      case 257: field = &d.height; break;
      case 258: field = &d.bits; break;
      case 262: field = &d.photometric; break;
      case 274: field = &d.orientation; break;
      case 277: field = &d.samples; break;
      case 278: field = &d.rows_per_strip; break;
      case 322: field = &d.tile_width; break;
      case 323: field = &d.tile_height; break;
      case 339: field = &d.sample_format; break;
      default: continue;
    }
    if (field->has_value()) continue;  // a repeated tag keeps its first value, as libtiff does
    int size;
    if (type == 3) size = 2;       // SHORT
    else if (type == 4) size = 4;  // LONG
    else continue;                 // no tag read here has another type
    if (count == 0) continue;
    // Values that do not fit the 4-byte field are stored at an offset. Per-sample tags
    // (BitsPerSample, SampleFormat) may differ per sample: keep the largest.
    const std::size_t at = static_cast<std::uint64_t>(count) * static_cast<std::uint64_t>(size) <= 4
                               ? e + 8
                               : static_cast<std::size_t>(r.u(e + 8, 4, what));
    std::uint32_t value = 0;
    const std::uint32_t n = std::min<std::uint32_t>(count, 16);
    for (std::uint32_t k = 0; k < n; ++k) value = std::max(value, r.u(at + k * static_cast<std::size_t>(size), size, what));
    *field = value;
  }
  return d;
}

inline void check_sides(const ImageHeader& h) {
  if (h.width <= 0 || h.height <= 0)
    bad_header(std::string(format_name(h.format)) + ": image declares an empty size " + std::to_string(h.width) +
               " x " + std::to_string(h.height));
  // OpenCV's own decoders refuse longer sides; the bound also keeps every cost product in 64 bits.
  constexpr std::int64_t kMaxSide = std::int64_t{1} << 20;
  if (h.width > kMaxSide || h.height > kMaxSide)
    bad_header(std::string(format_name(h.format)) + ": image declares " + std::to_string(h.width) + " x " +
               std::to_string(h.height) + ", a side above " + std::to_string(kMaxSide) + " px");
}

inline int checked_orientation(std::optional<std::uint32_t> o) {
  // Out-of-range values are ignored, as browsers do.
  return o && *o >= 1 && *o <= 8 ? static_cast<int>(*o) : 1;
}

inline ImageHeader png_header(std::span<const std::uint8_t> b) {
  const ByteReader r(b, false);
  if (r.u(12, 4, "PNG") != 0x49484452u) bad_header("PNG: the first chunk is not IHDR");
  ImageHeader h;
  h.format = ImageFormat::png;
  h.width = r.u(16, 4, "PNG");
  h.height = r.u(20, 4, "PNG");
  h.bit_depth = static_cast<int>(r.u(24, 1, "PNG"));
  const std::uint32_t colour = r.u(25, 1, "PNG");
  const int d = h.bit_depth;
  const bool depth_ok = colour == 0   ? (d == 1 || d == 2 || d == 4 || d == 8 || d == 16)
                        : colour == 3 ? (d == 1 || d == 2 || d == 4 || d == 8)
                        : (colour == 2 || colour == 4 || colour == 6) && (d == 8 || d == 16);
  if (!depth_ok)
    bad_header("PNG: colour type " + std::to_string(colour) + " with bit depth " + std::to_string(d) + " is invalid");
  // A tRNS chunk before IDAT turns RGB and palette images into BGRA.
  bool transparency = false;
  for (std::size_t at = 8; r.has(at, 8);) {
    const std::uint32_t length = r.u(at, 4, "PNG"), type = r.u(at + 4, 4, "PNG");
    if (type == 0x49444154u) break;  // IDAT
    if (type == 0x74524E53u) transparency = true;  // tRNS
    at += 12 + static_cast<std::size_t>(length);
  }
  h.channels = colour == 0 ? 1 : (colour == 4 || colour == 6 || transparency) ? 4 : 3;
  h.decoded_depth = d == 16 ? 16 : 8;
  return h;
}

/// Throws unless every chunk of a PNG up to IEND fits in the file: libpng may reserve a chunk's
/// declared size before it finds the data missing (a 100-byte file declaring a 1.9 GB text chunk
/// made it allocate that much). Checked before decoding, not by png_header: a header alone (the
/// first bytes of an upload) still tells the size.
inline void check_png_chunks_fit(std::span<const std::uint8_t> b) {
  const ByteReader r(b, false);
  for (std::size_t at = 8; r.has(at, 8);) {
    const std::uint32_t length = r.u(at, 4, "PNG"), type = r.u(at + 4, 4, "PNG");
    if (!r.has(at + 8, static_cast<std::size_t>(length) + 4))
      bad_header("PNG: a chunk declares " + std::to_string(length) + " bytes at offset " + std::to_string(at) +
                 ", past the end of the file (" + std::to_string(r.size()) + " bytes)");
    if (type == 0x49454E44u) return;  // IEND
    at += 12 + static_cast<std::size_t>(length);
  }
}

inline ImageHeader jpeg_header(std::span<const std::uint8_t> b) {
  const ByteReader r(b, false);
  ImageHeader h;
  h.format = ImageFormat::jpeg;
  bool frame = false;
  int hmax = 1, vmax = 1, components = 0;
  int sampling[4][2] = {};
  std::size_t at = 2;
  for (;;) {
    if (!r.has(at, 2)) bad_header("JPEG: header is truncated (no start of scan)");
    // Markers follow each other: a byte that is not 0xFF is junk, which libjpeg would skip in
    // search of a frame header the walk never saw.
    if (b[at] != 0xFF) bad_header("JPEG: junk bytes between markers at offset " + std::to_string(at));
    const std::uint8_t marker = b[at + 1];
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    at += 2;
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no length
    if (marker == 0xD8) bad_header("JPEG: a second start of image");
    if (marker == 0xD9) bad_header("JPEG: end of image before any scan");
    const std::size_t length = r.u(at, 2, "JPEG");
    if (length < 2) bad_header("JPEG: marker segment shorter than its length field");
    if (!r.has(at, length)) bad_header("JPEG: header is truncated");
    if (marker == 0xE1 && length >= 16 && b[at + 2] == 'E' && b[at + 3] == 'x' && b[at + 4] == 'i' &&
        b[at + 5] == 'f' && b[at + 6] == 0 && b[at + 7] == 0 && h.orientation == 1) {
      // An unreadable Exif block is ignored (as viewers do): it never reaches the decoder's memory.
      try {
        const std::span<const std::uint8_t> exif = b.subspan(at + 8, length - 8);
        h.orientation = checked_orientation(read_tiff_directory(exif, 0, "Exif").orientation);
      } catch (const Error&) {
      }
    }
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (frame) bad_header("JPEG: two frame headers");
      // Baseline, extended, progressive; arithmetic sequential and progressive. Lossless,
      // hierarchical and differential frames are refused.
      if (marker != 0xC0 && marker != 0xC1 && marker != 0xC2 && marker != 0xC9 && marker != 0xCA)
        bad_header("JPEG: unsupported coding process SOF" + std::to_string(marker - 0xC0) +
                   " (baseline, extended or progressive expected)");
      frame = true;
      h.progressive = marker == 0xC2 || marker == 0xCA;
      h.bit_depth = static_cast<int>(r.u(at + 2, 1, "JPEG"));
      h.height = r.u(at + 3, 2, "JPEG");
      h.width = r.u(at + 5, 2, "JPEG");
      components = static_cast<int>(r.u(at + 7, 1, "JPEG"));
      if (h.bit_depth != 8) bad_header("JPEG: " + std::to_string(h.bit_depth) + "-bit samples are not supported");
      if (components != 1 && components != 3 && components != 4)
        bad_header("JPEG: " + std::to_string(components) + " components; 1, 3 or 4 expected");
      if (length < 8 + 3 * static_cast<std::size_t>(components)) bad_header("JPEG: frame header is truncated");
      for (int c = 0; c < components; ++c) {
        const std::uint32_t s = r.u(at + 9 + 3 * static_cast<std::size_t>(c), 1, "JPEG");
        sampling[c][0] = static_cast<int>(s >> 4);
        sampling[c][1] = static_cast<int>(s & 15);
        if (sampling[c][0] < 1 || sampling[c][0] > 4 || sampling[c][1] < 1 || sampling[c][1] > 4)
          bad_header("JPEG: bad sampling factors");
        hmax = std::max(hmax, sampling[c][0]);
        vmax = std::max(vmax, sampling[c][1]);
      }
    }
    if (marker == 0xDA) {
      if (!frame) bad_header("JPEG: scan before any frame header");
      // A first scan that does not hold every component means several scans: libjpeg then
      // buffers the whole image's coefficients, as for a progressive one.
      if (static_cast<int>(r.u(at + 2, 1, "JPEG")) < components) h.progressive = true;
      break;
    }
    at += length;
  }
  h.channels = components == 1 ? 1 : 3;  // CMYK is converted to BGR
  h.decoded_depth = 8;
  if (h.progressive) {
    // Per component, 64 two-byte coefficients per 8x8 block, the block rows and columns padded
    // to whole MCUs (libjpeg's whole-image coefficient arrays).
    const std::int64_t mcu_cols = (h.width + 8 * hmax - 1) / (8 * hmax);
    const std::int64_t mcu_rows = (h.height + 8 * vmax - 1) / (8 * vmax);
    for (int c = 0; c < components; ++c) h.decode_bytes += mcu_cols * sampling[c][0] * mcu_rows * sampling[c][1] * 128;
  }
  return h;
}

inline ImageHeader tiff_header(std::span<const std::uint8_t> b) {
  const TiffDirectory d = read_tiff_directory(b, 0, "TIFF");
  if (!d.width || !d.height) bad_header("TIFF: no ImageWidth or ImageLength");
  ImageHeader h;
  h.format = ImageFormat::tiff;
  h.width = *d.width;
  h.height = *d.height;
  check_sides(h);
  const std::uint32_t samples = d.samples.value_or(1);
  h.bit_depth = static_cast<int>(d.bits.value_or(1));
  if (samples < 1 || samples > 4) bad_header("TIFF: " + std::to_string(samples) + " samples per pixel; 1 to 4 expected");
  if (h.bit_depth != 1 && h.bit_depth != 8 && h.bit_depth != 16)
    bad_header("TIFF: " + std::to_string(h.bit_depth) + "-bit samples are not supported (1, 8 or 16)");
  if (d.sample_format && *d.sample_format != 1)
    bad_header("TIFF: sample format " + std::to_string(*d.sample_format) + " is not supported (unsigned integers only)");
  h.orientation = checked_orientation(d.orientation);
  h.decoded_depth = h.bit_depth == 16 ? 16 : 8;
  // One sample with a colour interpretation (palette, RGB, YCbCr) decodes to BGR; gray with
  // alpha to at most BGRA.
  h.channels = samples == 1 ? (d.photometric.value_or(1) > 1 ? 3 : 1) : samples == 2 ? 4 : static_cast<int>(samples);
  // libtiff decodes a tile or a strip at a time into a buffer of its size: tiles, else strips of
  // RowsPerStrip rows (all rows when absent). OpenCV's 8-bit path reads them as RGBA.
  if (d.tile_width || d.tile_height) {
    if (!d.tile_width || !d.tile_height || *d.tile_width == 0 || *d.tile_height == 0)
      bad_header("TIFF: tile size is incomplete");
    h.tile_width = *d.tile_width;
    h.tile_height = *d.tile_height;
    if (h.tile_width > (1 << 24) || h.tile_height > (1 << 24))  // OpenCV's own bound; keeps the product in range
      bad_header("TIFF: tile of " + std::to_string(h.tile_width) + " x " + std::to_string(h.tile_height) + " is too large");
  } else {
    h.tile_width = h.width;
    h.tile_height = d.rows_per_strip && *d.rows_per_strip > 0 ? std::min<std::int64_t>(*d.rows_per_strip, h.height)
                                                               : h.height;
  }
  const std::int64_t tile_samples = h.decoded_depth == 8 ? 4 : std::max<std::int64_t>(samples, 1);
  h.decode_bytes = h.tile_width * h.tile_height * tile_samples * (h.decoded_depth / 8);
  return h;
}

inline ImageHeader bmp_header(std::span<const std::uint8_t> b) {
  const ByteReader r(b, true);
  ImageHeader h;
  h.format = ImageFormat::bmp;
  const std::uint32_t dib = r.u(14, 4, "BMP");
  int bpp;
  if (dib == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
    h.width = r.u(18, 2, "BMP");
    h.height = r.u(20, 2, "BMP");
    bpp = static_cast<int>(r.u(24, 2, "BMP"));
  } else if (dib == 40 || dib == 52 || dib == 56 || dib == 108 || dib == 124) {  // BITMAPINFOHEADER .. V5
    const auto w = static_cast<std::int32_t>(r.u(18, 4, "BMP"));
    const auto hh = static_cast<std::int32_t>(r.u(22, 4, "BMP"));  // negative: rows stored top-down
    h.width = w;
    h.height = hh < 0 ? -static_cast<std::int64_t>(hh) : hh;
    bpp = static_cast<int>(r.u(28, 2, "BMP"));
  } else {
    bad_header("BMP: unsupported info header size " + std::to_string(dib));
  }
  if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
    bad_header("BMP: " + std::to_string(bpp) + " bits per pixel is not supported");
  h.bit_depth = bpp;
  h.channels = bpp == 32 ? 4 : 3;
  h.decoded_depth = 8;
  return h;
}

}  // namespace detail

/// A side decoded at 1/`reduction` (libjpeg rounds up).
inline std::int64_t reduced_side(std::int64_t side, int reduction) { return (side + reduction - 1) / reduction; }

/// The bytes decoding `h` allocates when decoded at 1/`reduction` of its size (JPEG scale-on-decode;
/// 1 for any other format): the decoder's buffers (a progressive JPEG's coefficients stay full
/// size), the pixels, row pointers, the turned copy and the float copy of 16-bit images.
inline std::int64_t decode_cost(const ImageHeader& h, int reduction) {
  const std::int64_t width = reduced_side(h.width, reduction), height = reduced_side(h.height, reduction);
  const std::int64_t pixels = width * height;
  const std::int64_t image_bytes = pixels * h.channels * (h.decoded_depth / 8);
  std::int64_t bytes = h.buffer_bytes + image_bytes;             // the decoded Mat
  bytes += height * static_cast<std::int64_t>(sizeof(void*));     // row pointers
  if (h.orientation != 1) bytes += image_bytes;                  // the turned copy
  if (h.decoded_depth == 16) bytes += pixels * h.channels * 4;    // decode_image's float copy
  return bytes;
}

/// Reads the header of a PNG, JPEG, TIFF or BMP image and computes its decode cost. Throws
/// sluice::Error(errc::invalid_argument) with the reason for any other format and for a header it
/// cannot read to the end (truncated, junk, out-of-range fields). A header can lie about what
/// follows: the decoder checks what it got against it.
inline ImageHeader read_image_header(std::span<const std::uint8_t> b) {
  ImageHeader h;
  static constexpr std::uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (b.size() >= 8 && std::equal(kPng, kPng + 8, b.begin())) h = detail::png_header(b);
  else if (b.size() >= 2 && b[0] == 0xFF && b[1] == 0xD8) h = detail::jpeg_header(b);
  else if (b.size() >= 4 && ((b[0] == 'I' && b[1] == 'I') || (b[0] == 'M' && b[1] == 'M'))) h = detail::tiff_header(b);
  else if (b.size() >= 2 && b[0] == 'B' && b[1] == 'M') h = detail::bmp_header(b);
  else detail::bad_header("unsupported format (PNG, JPEG, TIFF or BMP expected)");
  detail::check_sides(h);
  h.buffer_bytes = h.decode_bytes;  // what the format's reader found; the pixels follow
  h.decode_bytes = decode_cost(h, 1);
  return h;
}

/// The size an image's header declares, or nullopt when read_image_header refuses it.
inline std::optional<ImageExtent> peek_image_extent(std::span<const std::uint8_t> bytes) {
  try {
    const ImageHeader h = read_image_header(bytes);
    return ImageExtent{h.width, h.height};
  } catch (const Error&) {
    return std::nullopt;
  }
}

}  // namespace sluice::vision
