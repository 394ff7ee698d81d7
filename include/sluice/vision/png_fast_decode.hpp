// sluice/vision/png_fast_decode.hpp: the common PNG -- 8-bit grey, RGB or RGBA, not interlaced,
// without a tRNS chunk -- decoded with libdeflate (one call over the whole zlib stream) and sluice's
// own row unfiltering, about twice as fast as OpenCV's libpng path, where inflate takes most of the
// time. It returns exactly what cv::imdecode(IMREAD_UNCHANGED) returns for such a file (grey as one
// channel, colour in BGR / BGRA order). Anything else -- another colour type or depth, interlacing,
// transparency, and every file it finds damaged (a bad CRC, a zlib stream that does not hold exactly
// the image, a bad filter byte, no IEND) -- gives an empty Mat, and the caller decodes with OpenCV,
// which decides the pixels or the error as before. It accepts only what libpng accepts, with the same
// pixels: tests/vision/png_fast_decode_test.cpp and the fuzz_image target compare the two.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <span>
#include <vector>

#include <libdeflate.h>

#ifdef __SSSE3__
#include <immintrin.h>
#endif

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "sluice/vision/image_header.hpp"

namespace sluice::vision {

namespace detail::png {

constexpr std::uint32_t chunk_type(const char (&s)[5]) {
  return (std::uint32_t(std::uint8_t(s[0])) << 24) | (std::uint32_t(std::uint8_t(s[1])) << 16) |
         (std::uint32_t(std::uint8_t(s[2])) << 8) | std::uint32_t(std::uint8_t(s[3]));
}

struct Decompressor {
  libdeflate_decompressor* d = libdeflate_alloc_decompressor();
  Decompressor() = default;
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;
  ~Decompressor() {
    if (d) libdeflate_free_decompressor(d);
  }
};

/// One per thread: it is a few kilobytes of tables, rebuilt per stream, not worth allocating per image.
inline libdeflate_decompressor* decompressor() {
  thread_local Decompressor one;
  return one.d;
}

inline std::uint8_t paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return static_cast<std::uint8_t>(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

#ifdef __SSSE3__
/// Sub (filter 1) on the first whole 16-byte blocks of a row; returns the bytes done. In a block,
/// out is in's running sum with stride Bpp (shifted adds in log steps) plus a carry: each byte's
/// chain of left neighbours leaves the block at one of the previous block's last Bpp bytes.
template <int Bpp>
std::size_t unfilter_sub_blocks(const std::uint8_t* in, std::uint8_t* out, std::size_t n) {
  alignas(16) std::uint8_t from[16];
  for (int i = 0; i < 16; ++i) from[i] = static_cast<std::uint8_t>(16 - Bpp + i % Bpp);
  const __m128i carry_from = _mm_load_si128(reinterpret_cast<const __m128i*>(from));
  __m128i previous = _mm_setzero_si128();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    x = _mm_add_epi8(x, _mm_slli_si128(x, Bpp));
    x = _mm_add_epi8(x, _mm_slli_si128(x, 2 * Bpp));
    if constexpr (4 * Bpp < 16) x = _mm_add_epi8(x, _mm_slli_si128(x, 4 * Bpp));
    if constexpr (8 * Bpp < 16) x = _mm_add_epi8(x, _mm_slli_si128(x, 8 * Bpp));
    x = _mm_add_epi8(x, _mm_shuffle_epi8(previous, carry_from));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), x);
    previous = x;
  }
  return i;
}
#endif

/// Reverses one row's filter (PNG specification, section 9): `in` is the filtered row, `prior` the
/// previous row already unfiltered (all zeros for the first), `out` receives the row; `n` bytes,
/// `Bpp` bytes per pixel. False for a filter type other than 0..4. Sub, Average and Paeth depend
/// on the byte to the left just written: it is kept in a register (`left`), not read back from
/// `out`, which would put a store-to-load forwarding delay on every byte's path.
template <int Bpp>
bool unfilter_row(int filter, const std::uint8_t* in, const std::uint8_t* prior, std::uint8_t* out, std::size_t n) {
  std::uint8_t left[Bpp] = {};
  std::uint8_t upper_left[Bpp] = {};
  const std::size_t pixels = n / Bpp;
  switch (filter) {
    case 0:
      std::copy(in, in + n, out);
      return true;
    case 1: {
#ifdef __SSSE3__
      // Blocks, then the tail (under 16 bytes) reading its left neighbours back.
      for (std::size_t i = unfilter_sub_blocks<Bpp>(in, out, n); i < n; ++i)
        out[i] = static_cast<std::uint8_t>(in[i] + (i >= Bpp ? out[i - Bpp] : 0));
#else
      for (std::size_t p = 0; p < pixels; ++p)
        for (int k = 0; k < Bpp; ++k) out[p * Bpp + k] = left[k] = static_cast<std::uint8_t>(in[p * Bpp + k] + left[k]);
#endif
      return true;
    }
    case 2:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(in[i] + prior[i]);
      return true;
    case 3:
      for (std::size_t p = 0; p < pixels; ++p)
        for (int k = 0; k < Bpp; ++k) {
          const std::size_t i = p * Bpp + k;
          out[i] = left[k] = static_cast<std::uint8_t>(in[i] + ((left[k] + prior[i]) >> 1));
        }
      return true;
    case 4:
      for (std::size_t p = 0; p < pixels; ++p)
        for (int k = 0; k < Bpp; ++k) {
          const std::size_t i = p * Bpp + k;
          const std::uint8_t up = prior[i];
          out[i] = left[k] = static_cast<std::uint8_t>(in[i] + paeth(left[k], up, upper_left[k]));
          upper_left[k] = up;
        }
      return true;
    default:
      return false;
  }
}

template <int Bpp>
bool unfilter_image(const std::uint8_t* filtered, cv::Mat& out, std::size_t row_bytes) {
  const std::vector<std::uint8_t> zeros(row_bytes, 0);
  const std::uint8_t* prior = zeros.data();
  for (int y = 0; y < out.rows; ++y) {
    const std::uint8_t* in = filtered + static_cast<std::size_t>(y) * (row_bytes + 1);
    std::uint8_t* row = out.ptr<std::uint8_t>(y);
    if (!unfilter_row<Bpp>(in[0], in + 1, prior, row, row_bytes)) return false;
    prior = row;
  }
  return true;
}

}  // namespace detail::png

/// The pixels of a common PNG (see the file comment), or an empty Mat where OpenCV must decide.
/// `max_bytes` bounds what it allocates (the zlib stream's output and the pixels: about twice the
/// image); a larger image gives an empty Mat.
inline cv::Mat decode_png_fast(std::span<const std::uint8_t> bytes,
                               std::size_t max_bytes = std::numeric_limits<std::size_t>::max()) {
  using detail::png::chunk_type;
  static constexpr std::uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const std::size_t size = bytes.size();
  const std::uint8_t* b = bytes.data();
  const detail::ByteReader r(bytes, false);  // big-endian; every read below is inside the checked bounds
  if (size < 8 || !std::equal(kSignature, kSignature + 8, b)) return {};

  std::uint32_t width = 0, height = 0;
  int channels = 0;
  std::vector<std::span<const std::uint8_t>> idat;
  bool header = false, palette = false, idat_closed = false, end = false;
  for (std::size_t at = 8; !end;) {
    if (size - at < 12) return {};  // truncated before IEND
    const std::uint32_t length = r.u(at, 4, "PNG"), type = r.u(at + 4, 4, "PNG");
    if (length > 0x7fffffffu || size - at - 12 < length) return {};
    const std::uint8_t* data = b + at + 8;
    for (int i = 4; i < 8; ++i)  // a chunk type is four ASCII letters, or libpng refuses the file
      if (const auto c = b[at + i]; !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return {};
    const bool critical = (type & 0x20000000u) == 0;  // first letter upper case
    // Critical chunks are checked as libpng checks them; ancillary ones are skipped as it may.
    if (critical && libdeflate_crc32(0, b + at + 4, 4 + std::size_t{length}) != r.u(at + 8 + length, 4, "PNG")) return {};
    if (!header) {
      if (type != chunk_type("IHDR") || length != 13) return {};
      width = r.u(at + 8, 4, "PNG");
      height = r.u(at + 12, 4, "PNG");
      const int depth = data[8], colour = data[9];
      if (width == 0 || height == 0 || width > 0x7fffffffu || height > 0x7fffffffu) return {};
      if (depth != 8 || data[10] != 0 || data[11] != 0 || data[12] != 0) return {};  // compression, filter, interlace
      channels = colour == 0 ? 1 : colour == 2 ? 3 : colour == 6 ? 4 : 0;
      if (channels == 0) return {};
      header = true;
    } else if (type == chunk_type("IDAT")) {
      if (idat_closed) return {};  // IDAT chunks must follow each other
      idat.emplace_back(data, length);
    } else if (type == chunk_type("IEND")) {
      if (length != 0) return {};
      end = true;
    } else {
      if (!idat.empty()) idat_closed = true;
      // tRNS adds an alpha channel; a palette in a grey image and any other critical chunk are
      // errors or transformations for libpng to judge.
      if (type == chunk_type("tRNS")) return {};
      if (type == chunk_type("PLTE")) {  // a suggested palette for colour: once, before the data
        if (channels == 1 || palette || !idat.empty()) return {};
        palette = true;
      } else if (critical) {
        return {};
      }
    }
    at += 12 + std::size_t{length};
  }
  if (idat.empty()) return {};

  const std::uint64_t row_bytes = std::uint64_t{width} * static_cast<std::uint64_t>(channels);
  const std::uint64_t filtered_bytes = std::uint64_t{height} * (row_bytes + 1);
  if (row_bytes > static_cast<std::uint64_t>(std::numeric_limits<int>::max()) ||
      filtered_bytes + std::uint64_t{height} * row_bytes > max_bytes)
    return {};

  std::vector<std::uint8_t> joined;  // several IDAT chunks are one zlib stream
  std::span<const std::uint8_t> stream = idat.front();
  if (idat.size() > 1) {
    for (const auto& part : idat) joined.insert(joined.end(), part.begin(), part.end());
    stream = joined;
  }
  libdeflate_decompressor* const inflater = detail::png::decompressor();
  if (inflater == nullptr) return {};  // out of memory for its tables: OpenCV's way costs less
  const auto filtered = std::make_unique_for_overwrite<std::uint8_t[]>(static_cast<std::size_t>(filtered_bytes));
  // Exactly the image's bytes, or libpng must judge (too little data, too much, a bad stream).
  if (libdeflate_zlib_decompress(inflater, stream.data(), stream.size(), filtered.get(),
                                 static_cast<std::size_t>(filtered_bytes), nullptr) != LIBDEFLATE_SUCCESS)
    return {};

  cv::Mat out(static_cast<int>(height), static_cast<int>(width), CV_MAKETYPE(CV_8U, channels));
  const auto n = static_cast<std::size_t>(row_bytes);
  const bool ok = channels == 1   ? detail::png::unfilter_image<1>(filtered.get(), out, n)
                  : channels == 3 ? detail::png::unfilter_image<3>(filtered.get(), out, n)
                                  : detail::png::unfilter_image<4>(filtered.get(), out, n);
  if (!ok) return {};
  if (channels == 3) cv::cvtColor(out, out, cv::COLOR_RGB2BGR);
  if (channels == 4) cv::cvtColor(out, out, cv::COLOR_RGBA2BGRA);
  return out;
}

}  // namespace sluice::vision
