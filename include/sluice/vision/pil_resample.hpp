// sluice/vision/pil_resample.hpp: Pillow's Image.resize for 8-bit images (any channel count),
// bit for bit: a separable filter whose support widens with the scale factor when shrinking (so a
// downscale averages every source pixel instead of sampling a few: it is anti-aliased), horizontal
// pass first into an 8-bit intermediate, then vertical, in Pillow's 22-bit fixed point
// (Pillow's src/libImaging/Resample.c semantics: precompute_coeffs, normalize_coeffs_8bpc,
// ImagingResampleHorizontal_8bpc / ImagingResampleVertical_8bpc, box = the whole image).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include <opencv2/core.hpp>

#if defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif

#include "sluice/core/error.hpp"

namespace sluice::vision {

enum class PilFilter { bilinear, bicubic, lanczos };

namespace detail {

/// Pillow's fixed point for 8-bit resampling: weights scaled by 2^22, so a sum of 8-bit pixels
/// times weights that add up to 1 fits in 32 bits with two bits to spare.
inline constexpr int kPilPrecisionBits = 32 - 8 - 2;
/// Where a sum starts: one half in the fixed point, so that the shift by kPilPrecisionBits rounds.
inline constexpr std::int32_t kPilHalf = std::int32_t{1} << (kPilPrecisionBits - 1);

inline double pil_filter(PilFilter f, double x) {
  switch (f) {
    case PilFilter::bilinear:
      x = std::abs(x);
      return x < 1.0 ? 1.0 - x : 0.0;
    case PilFilter::bicubic: {  // a = -0.5
      constexpr double a = -0.5;
      x = std::abs(x);
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    }
    case PilFilter::lanczos: {
      auto sinc = [](double v) {
        if (v == 0.0) return 1.0;
        v *= std::numbers::pi;
        return std::sin(v) / v;
      };
      return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
    }
  }
  return 0.0;
}

inline double pil_support(PilFilter f) { return f == PilFilter::bilinear ? 1.0 : f == PilFilter::bicubic ? 2.0 : 3.0; }

/// Per output index: the first source index and the fixed-point weights of the sources it reads.
struct PilTaps {
  std::vector<int> first, count;
  std::vector<std::int32_t> weights;  // count[i] weights at i * ksize
  int ksize = 0;
  /// The weights as pil_pass_down's vpmaddwd takes them: a weight w is split as w = 2048 * high +
  /// low (low = its 11 low bits), both within 16 bits; per pair of taps (j, j + 1), the two lows'
  /// 16-bit words side by side, then the two highs'. pairs() pairs a row, at i * 2 * pairs().
  std::vector<std::int32_t> split;
  int pairs() const { return (ksize + 1) / 2; }
};

inline PilTaps pil_taps(int in_size, int out_size, PilFilter f) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = pil_support(f) * filterscale;
  PilTaps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(static_cast<std::size_t>(out_size) * t.ksize, 0);
  std::vector<double> k(t.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    // Pillow rounds by truncating (value + 0.5) toward zero, then clamps to the image.
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = pil_filter(f, (x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double w = ww != 0.0 ? k[x] / ww : k[x];
      const double fixed = w * (1 << kPilPrecisionBits);
      t.weights[static_cast<std::size_t>(xx) * t.ksize + x] =
          static_cast<std::int32_t>(w < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    t.first[xx] = xmin;
    t.count[xx] = std::max(xmax, 0);
  }
  // Weights past a row's count (and past ksize) are 0.
  auto part = [&](int xx, int j, bool high) -> std::uint32_t {
    if (j >= t.ksize) return 0;
    const std::int32_t w = t.weights[static_cast<std::size_t>(xx) * t.ksize + j];
    return static_cast<std::uint16_t>(high ? (w >> 11) : (w & 2047));
  };
  t.split.resize(static_cast<std::size_t>(out_size) * 2 * t.pairs());
  for (int xx = 0; xx < out_size; ++xx)
    for (int p = 0; p < t.pairs(); ++p)
      for (int high = 0; high < 2; ++high)
        t.split[(static_cast<std::size_t>(xx) * t.pairs() + p) * 2 + high] =
            static_cast<std::int32_t>(part(xx, 2 * p, high) | (part(xx, 2 * p + 1, high) << 16));
  return t;
}

/// The taps of the last 16 (in, out, filter) triples this thread resized with: a folder of images of
/// a few sizes computes each set once, not twice per image (the Lanczos window costs two sines a
/// tap, about a third of a small shrink's time). An entry holds out x ksize weights and their split,
/// as much again: 16 KB for 128 outputs from twice as many, 200 KB for 1024 from 4000.
inline const PilTaps& cached_pil_taps(int in_size, int out_size, PilFilter f) {
  struct Entry {
    int in = -1, out = -1;
    PilFilter filter = PilFilter::bilinear;
    PilTaps taps;
  };
  static thread_local std::array<Entry, 16> cache;
  static thread_local std::size_t next = 0;
  for (const Entry& e : cache)
    if (e.in == in_size && e.out == out_size && e.filter == f) return e.taps;
  Entry& e = cache[next++ % cache.size()];
  e = Entry{in_size, out_size, f, pil_taps(in_size, out_size, f)};
  return e.taps;
}

/// Pillow's clip of a fixed-point sum to 8 bits (an arithmetic shift: floor, as its clip lookup).
inline std::uint8_t pil_clip(std::int32_t sum) {
  return static_cast<std::uint8_t>(std::clamp<std::int32_t>(sum >> kPilPrecisionBits, 0, 255));
}

/// Bytes [x, end) of output row i of pil_pass_down, one sum at a time.
inline void pil_pass_down_scalar(const std::uint8_t* top, std::size_t step, const std::int32_t* k, int taps,
                                 std::size_t x, std::size_t end, std::uint8_t* dst) {
  for (; x < end; ++x) {
    std::int32_t acc = kPilHalf;
    for (int j = 0; j < taps; ++j) acc += static_cast<std::int32_t>(top[static_cast<std::size_t>(j) * step + x]) * k[j];
    dst[x] = pil_clip(acc);
  }
}

#ifdef __AVX2__
/// Bytes [0, 16 * blocks) of output row i of pil_pass_down, sixteen at a time, bit for bit the
/// scalar sums: with the weights split as in PilTaps::split, vpmaddwd multiplies pixels of two rows
/// (taps j and j + 1, interleaved) by two taps' weights and adds the products in one instruction;
/// sum = 2048 * (sum of highs) + (sum of lows) holds exactly in 32 bits. (The 32-bit multiply,
/// vpmulld, is among the slowest AVX2 instructions.) `split` is the row's, `taps` its count.
inline void pil_pass_down_avx2(const std::uint8_t* top, std::size_t step, const std::int32_t* split, int taps,
                               std::size_t blocks, std::uint8_t* dst) {
  const int pairs = (taps + 1) / 2;
  for (std::size_t b = 0; b < blocks; ++b) {
    __m256i lo0 = _mm256_set1_epi32(kPilHalf), lo1 = lo0;
    __m256i hi0 = _mm256_setzero_si256(), hi1 = hi0;
    const std::uint8_t* src = top + 16 * b;
    for (int p = 0; p < pairs; ++p) {
      const int j = 2 * p;
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + static_cast<std::size_t>(j) * step));
      // An odd count's last pair reads tap j again, with weight 0.
      const std::size_t next = static_cast<std::size_t>(j + 1 < taps ? j + 1 : j);
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + next * step));
      const __m256i first = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(a, c));  // (a, c) pairs of x 0..7
      const __m256i second = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(a, c));  // of x 8..15
      const __m256i wl = _mm256_set1_epi32(split[2 * p]), wh = _mm256_set1_epi32(split[2 * p + 1]);
      lo0 = _mm256_add_epi32(lo0, _mm256_madd_epi16(first, wl));
      hi0 = _mm256_add_epi32(hi0, _mm256_madd_epi16(first, wh));
      lo1 = _mm256_add_epi32(lo1, _mm256_madd_epi16(second, wl));
      hi1 = _mm256_add_epi32(hi1, _mm256_madd_epi16(second, wh));
    }
    const __m256i s0 = _mm256_srai_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi0, 11), lo0), kPilPrecisionBits);
    const __m256i s1 = _mm256_srai_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi1, 11), lo1), kPilPrecisionBits);
    // Saturating packs clamp to 0..255 as pil_clip; the permutes undo their per-128-bit-lane order.
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(s0, s1), 0xD8);  // x 0..15
    const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(words, words), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16 * b), _mm256_castsi256_si128(bytes));
  }
}
#endif

/// Row i of `out` = Pillow's fixed-point sum of taps.weights[i] x rows taps.first[i].. of `in`, clipped
/// to 8 bits: one pass of the separable filter down the rows, a whole row at a time (contiguous bytes,
/// so the sums vectorise). `out` has one row per tap set and `in`'s width and type.
inline void pil_pass_down(const cv::Mat& in, const PilTaps& t, cv::Mat& out) {
  // 32-bit sums as Pillow's: the weights sum to 1 << 22, so 8-bit pixels cannot overflow them.
  const int rows = static_cast<int>(t.first.size());
  out.create(rows, in.cols, in.type());
  const std::size_t row = static_cast<std::size_t>(in.cols) * in.channels();
  for (int i = 0; i < rows; ++i) {
    const std::int32_t* k = &t.weights[static_cast<std::size_t>(i) * t.ksize];
    const std::uint8_t* top = in.ptr<std::uint8_t>(t.first[i]);
    std::uint8_t* dst = out.ptr<std::uint8_t>(i);
    std::size_t x = 0;
#ifdef __AVX2__
    pil_pass_down_avx2(top, in.step, &t.split[static_cast<std::size_t>(i) * 2 * t.pairs()], t.count[i], row / 16, dst);
    x = row / 16 * 16;
#endif
    pil_pass_down_scalar(top, in.step, k, t.count[i], x, row, dst);
  }
}

#ifdef __SSE2__
/// cv::transpose of a CV_8UC1 image, 16 x 16 blocks in registers (four rounds of unpacks), the
/// edges byte by byte: OpenCV's byte transpose goes element by element.
inline void transpose_grey(const cv::Mat& in, cv::Mat& out) {
  out.create(in.cols, in.rows, CV_8UC1);
  const int rows = in.rows, cols = in.cols, full_rows = rows / 16 * 16, full_cols = cols / 16 * 16;
  for (int y0 = 0; y0 < full_rows; y0 += 16)
    for (int x0 = 0; x0 < full_cols; x0 += 16) {
      __m128i r[16], t[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in.ptr<std::uint8_t>(y0 + i) + x0));
      for (int k = 0; k < 8; ++k) {  // t[k]: rows 2k, 2k + 1 of columns 0..7 as words; t[k + 8]: columns 8..15
        t[k] = _mm_unpacklo_epi8(r[2 * k], r[2 * k + 1]);
        t[k + 8] = _mm_unpackhi_epi8(r[2 * k], r[2 * k + 1]);
      }
      for (int h = 0; h < 2; ++h)  // r[g + k]: rows 4k..4k + 3 of columns g..g + 3 (g = 0, 4, 8, 12) as dwords
        for (int k = 0; k < 4; ++k) {
          r[8 * h + k] = _mm_unpacklo_epi16(t[8 * h + 2 * k], t[8 * h + 2 * k + 1]);
          r[8 * h + k + 4] = _mm_unpackhi_epi16(t[8 * h + 2 * k], t[8 * h + 2 * k + 1]);
        }
      for (int g = 0; g < 16; g += 4)  // t[g], t[g + 1]: columns g, g + 1 in rows 0..7, 8..15; t[g + 2], t[g + 3]: g + 2, g + 3
        for (int k = 0; k < 2; ++k) {
          t[g + k] = _mm_unpacklo_epi32(r[g + 2 * k], r[g + 2 * k + 1]);
          t[g + k + 2] = _mm_unpackhi_epi32(r[g + 2 * k], r[g + 2 * k + 1]);
        }
      auto store = [&](int column, __m128i v) {  // column of the block = row x0 + column of out
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out.ptr<std::uint8_t>(x0 + column) + y0), v);
      };
      for (int g = 0; g < 16; g += 4) {
        store(g, _mm_unpacklo_epi64(t[g], t[g + 1]));
        store(g + 1, _mm_unpackhi_epi64(t[g], t[g + 1]));
        store(g + 2, _mm_unpacklo_epi64(t[g + 2], t[g + 3]));
        store(g + 3, _mm_unpackhi_epi64(t[g + 2], t[g + 3]));
      }
    }
  for (int y = 0; y < rows; ++y) {
    const std::uint8_t* src = in.ptr<std::uint8_t>(y);
    const int from = y < full_rows ? full_cols : 0;  // blocks did the rest of these rows
    for (int x = from; x < cols; ++x) out.ptr<std::uint8_t>(x)[y] = src[x];
  }
}
#endif

/// cv::transpose, by transpose_grey where it applies.
inline void transpose_image(const cv::Mat& in, cv::Mat& out) {
#ifdef __SSE2__
  if (in.type() == CV_8UC1) return transpose_grey(in, out);
#endif
  cv::transpose(in, out);
}

/// Pillow's horizontal pass: out(y, x) = the clipped sum over j of in(y, taps.first[x] + j) x
/// taps.weights[x][j], per channel, run down the rows of the transpose (the source's columns).
inline void pil_pass_across(const cv::Mat& in, const PilTaps& t, cv::Mat& out) {
  cv::Mat columns, filtered;
  transpose_image(in, columns);
  pil_pass_down(columns, t, filtered);
  transpose_image(filtered, out);
}

}  // namespace detail

/// `src` (CV_8UC1..4) resized to `size` as Pillow's Image.resize(size, filter) resizes it.
inline cv::Mat pil_resize(const cv::Mat& src, cv::Size size, PilFilter filter) {
  if (src.depth() != CV_8U || src.channels() > 4)
    throw Error(errc::invalid_argument, "pil_resize takes 8-bit images of 1 to 4 channels");
  if (size.width <= 0 || size.height <= 0 || src.empty())
    throw Error(errc::invalid_argument, "pil_resize needs a non-empty image and a positive size");
  cv::Mat cur = src;
  if (size.width != src.cols) {
    cv::Mat across;
    detail::pil_pass_across(src, detail::cached_pil_taps(src.cols, size.width, filter), across);
    cur = across;
  }
  if (size.height != src.rows) {
    cv::Mat out;
    detail::pil_pass_down(cur, detail::cached_pil_taps(src.rows, size.height, filter), out);
    cur = out;
  }
  return cur.data == src.data ? src.clone() : cur;
}

}  // namespace sluice::vision
