// The libdeflate PNG path against OpenCV's libpng path. The PNGs are written here, chunk by chunk,
// so that every row filter, IDAT split and ancillary chunk is chosen, not left to an encoder's
// heuristics; each decodes to the pixels it was made from, exactly as cv::imdecode gives them.
// Whatever the fast path does not cover, or finds damaged, must come back empty, and decode_image
// must then give OpenCV's answer (the same pixels, or an error where OpenCV has none).
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <libdeflate.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "sluice/core/error.hpp"
#include "sluice/vision/decode.hpp"
#include "sluice/vision/png_fast_decode.hpp"

namespace sv = sluice::vision;

namespace {

using Bytes = std::vector<std::uint8_t>;

void put32(Bytes& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
}

void chunk(Bytes& out, const char* type, const Bytes& data) {
  put32(out, static_cast<std::uint32_t>(data.size()));
  const std::size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put32(out, libdeflate_crc32(0, out.data() + start, out.size() - start));
}

// The forward filter of the PNG specification (section 9) for one row: `raw` and `prior` (zeros
// for the first row) in file byte order.
Bytes filter_row(int type, const std::uint8_t* raw, const std::uint8_t* prior, std::size_t n, std::size_t bpp) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const int a = i >= bpp ? raw[i - bpp] : 0, b = prior[i], c = i >= bpp ? prior[i - bpp] : 0;
    int predictor = 0;
    if (type == 1) predictor = a;
    if (type == 2) predictor = b;
    if (type == 3) predictor = (a + b) / 2;
    if (type == 4) {
      const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
      predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
    out[i] = static_cast<std::uint8_t>(raw[i] - predictor);
  }
  return out;
}

struct PngPlan {
  int colour = 0;                   // PNG colour type: 0 grey, 2 RGB, 6 RGBA (others: header only)
  int depth = 8;
  int interlace = 0;
  std::vector<int> filters{0, 1, 2, 3, 4};  // per row, cycled
  int idat_chunks = 1;
  std::vector<std::pair<std::string, Bytes>> before_data, after_data;  // ancillary chunks
};

int channels_of(int colour) { return colour == 0 ? 1 : colour == 2 ? 3 : colour == 6 ? 4 : colour == 4 ? 2 : 1; }

// Random pixels with smooth stretches (so that the filters' predictions matter), in file order.
Bytes make_pixels(int w, int h, int channels, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes px(static_cast<std::size_t>(w) * h * channels);
  for (std::size_t i = 0; i < px.size(); ++i)
    px[i] = (rng() % 3 == 0) ? static_cast<std::uint8_t>(rng()) : static_cast<std::uint8_t>(i * 7 / 5 + (rng() % 4));
  return px;
}

Bytes write_png(int w, int h, const Bytes& pixels, const PngPlan& plan) {
  const std::size_t bpp = static_cast<std::size_t>(channels_of(plan.colour)) * (plan.depth == 16 ? 2 : 1);
  const std::size_t row = static_cast<std::size_t>(w) * bpp;
  Bytes filtered;
  const Bytes zeros(row, 0);
  for (int y = 0; y < h; ++y) {
    const int type = plan.filters[static_cast<std::size_t>(y) % plan.filters.size()];
    const std::uint8_t* prior = y == 0 ? zeros.data() : pixels.data() + (y - 1) * row;
    filtered.push_back(static_cast<std::uint8_t>(type));
    const Bytes f = filter_row(type, pixels.data() + y * row, prior, row, bpp);
    filtered.insert(filtered.end(), f.begin(), f.end());
  }
  libdeflate_compressor* c = libdeflate_alloc_compressor(6);
  Bytes z(libdeflate_zlib_compress_bound(c, filtered.size()));
  z.resize(libdeflate_zlib_compress(c, filtered.data(), filtered.size(), z.data(), z.size()));
  libdeflate_free_compressor(c);

  Bytes out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes ihdr;
  put32(ihdr, static_cast<std::uint32_t>(w));
  put32(ihdr, static_cast<std::uint32_t>(h));
  ihdr.insert(ihdr.end(), {static_cast<std::uint8_t>(plan.depth), static_cast<std::uint8_t>(plan.colour), 0, 0,
                           static_cast<std::uint8_t>(plan.interlace)});
  chunk(out, "IHDR", ihdr);
  for (const auto& [type, data] : plan.before_data) chunk(out, type.c_str(), data);
  const std::size_t parts = static_cast<std::size_t>(plan.idat_chunks);
  for (std::size_t k = 0; k < parts; ++k)
    chunk(out, "IDAT", Bytes(z.begin() + static_cast<std::ptrdiff_t>(z.size() * k / parts),
                             z.begin() + static_cast<std::ptrdiff_t>(z.size() * (k + 1) / parts)));
  for (const auto& [type, data] : plan.after_data) chunk(out, type.c_str(), data);
  chunk(out, "IEND", {});
  return out;
}

// The pixels in OpenCV's order: grey as is, RGB(A) as BGR(A).
cv::Mat as_opencv(const Bytes& pixels, int w, int h, int colour) {
  const int ch = channels_of(colour);
  cv::Mat m(h, w, CV_8UC(ch), const_cast<std::uint8_t*>(pixels.data()));
  cv::Mat out;
  if (ch == 3) cv::cvtColor(m, out, cv::COLOR_RGB2BGR);
  else if (ch == 4) cv::cvtColor(m, out, cv::COLOR_RGBA2BGRA);
  else out = m.clone();
  return out;
}

cv::Mat opencv_decode(const Bytes& png) {
  return cv::imdecode(cv::Mat(1, static_cast<int>(png.size()), CV_8UC1, const_cast<std::uint8_t*>(png.data())),
                      cv::IMREAD_UNCHANGED);
}

bool same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

// decode_image gives OpenCV's answer: the pixels of the OpenCV path (fast_png off), or an
// invalid_argument error exactly where that path refuses the file.
void expect_opencv_answer(const Bytes& png, const std::string& what) {
  sv::DecodeOptions options;
  options.min_side = 1;  // the paths are compared here, not the size rules
  sv::DecodeOptions opencv_only = options;
  opencv_only.fast_png = false;
  const auto decode = [&](const sv::DecodeOptions& o) -> std::optional<cv::Mat> {
    try {
      return sv::decode_image(png, o).pixels;
    } catch (const sluice::Error& e) {
      EXPECT_EQ(e.code(), sluice::errc::invalid_argument) << what;
      return std::nullopt;
    }
  };
  const auto want = decode(opencv_only), got = decode(options);
  ASSERT_EQ(got.has_value(), want.has_value()) << what << (want ? ": refused what OpenCV decodes" : ": decoded what OpenCV refuses");
  if (!want) return;
  EXPECT_TRUE(same(*got, *want)) << what;
  if (want->depth() == CV_8U) {
    EXPECT_TRUE(same(*want, opencv_decode(png))) << what;
  }
}

}  // namespace

TEST(PngFastDecode, EveryFilterOnEveryCoveredColourTypeGivesOpenCvsPixels) {
  for (const int colour : {0, 2, 6})
    for (const auto& [w, h] : {std::pair{1, 1}, {1, 7}, {2, 5}, {5, 2}, {67, 23}, {130, 9}})
      for (const std::vector<int>& filters : {std::vector<int>{0}, {1}, {2}, {3}, {4}, {4, 3, 2, 1, 0}, {2, 4, 4, 1, 3}}) {
        PngPlan plan;
        plan.colour = colour;
        plan.filters = filters;
        const Bytes px = make_pixels(w, h, channels_of(colour), static_cast<std::uint32_t>(w * 131 + h + colour));
        const Bytes png = write_png(w, h, px, plan);
        const std::string what = "colour " + std::to_string(colour) + ", " + std::to_string(w) + " x " +
                                 std::to_string(h) + ", first filter " + std::to_string(filters[0]);
        const cv::Mat fast = sv::decode_png_fast(png);
        ASSERT_FALSE(fast.empty()) << what;
        EXPECT_TRUE(same(fast, as_opencv(px, w, h, colour))) << what << ": not the pixels written";
        EXPECT_TRUE(same(fast, opencv_decode(png))) << what << ": not OpenCV's pixels";
      }
}

TEST(PngFastDecode, SplitDataAndAncillaryChunksChangeNothing) {
  const int w = 41, h = 17;
  for (const int colour : {0, 2, 6}) {
    PngPlan plan;
    plan.colour = colour;
    plan.idat_chunks = 4;
    plan.before_data = {{"gAMA", {0, 0, 0xb1, 0x8f}},
                        {"sBIT", Bytes(static_cast<std::size_t>(channels_of(colour)), 5)},
                        {"pHYs", {0, 0, 0x0b, 0x13, 0, 0, 0x0b, 0x13, 1}},
                        {"tEXt", {'C', 'o', 'm', 'm', 'e', 'n', 't', 0, 'h', 'i'}}};
    if (colour != 0) plan.before_data.push_back({"PLTE", {1, 2, 3, 4, 5, 6}});  // a suggested palette
    plan.after_data = {{"tIME", {0x07, 0xea, 12, 5, 10, 0, 0}}, {"zzZz", {9, 9, 9}}};  // unknown ancillary: skipped
    const Bytes px = make_pixels(w, h, channels_of(colour), 99u + static_cast<std::uint32_t>(colour));
    const Bytes png = write_png(w, h, px, plan);
    const cv::Mat fast = sv::decode_png_fast(png);
    ASSERT_FALSE(fast.empty()) << "colour " << colour;
    EXPECT_TRUE(same(fast, as_opencv(px, w, h, colour))) << "colour " << colour;
    EXPECT_TRUE(same(fast, opencv_decode(png))) << "colour " << colour;
  }
}

TEST(PngFastDecode, LeavesToOpenCvWhatItDoesNotCover) {
  struct Case {
    std::string what;
    PngPlan plan;
  };
  const auto plan = [](int colour, int depth, int interlace, std::vector<std::pair<std::string, Bytes>> before) {
    PngPlan p;
    p.colour = colour;
    p.depth = depth;
    p.interlace = interlace;
    p.before_data = std::move(before);
    return p;
  };
  const std::vector<Case> cases = {
      {"16-bit grey", plan(0, 16, 0, {})},
      {"16-bit RGB", plan(2, 16, 0, {})},
      {"grey + alpha", plan(4, 8, 0, {})},
      {"palette", plan(3, 8, 0, {})},
      {"interlaced", plan(0, 8, 1, {})},
      {"grey with tRNS", plan(0, 8, 0, {{"tRNS", {0, 7}}})},
      {"RGB with tRNS", plan(2, 8, 0, {{"tRNS", {0, 7, 0, 8, 0, 9}}})},
  };
  const int w = 12, h = 6;
  for (const Case& c : cases) {
    // Palette images get one palette entry per pixel value used (all pixels 0..3) and a PLTE.
    PngPlan plan = c.plan;
    Bytes px = make_pixels(w, h, channels_of(plan.colour) * (plan.depth == 16 ? 2 : 1), 5);
    if (plan.colour == 3) {
      for (auto& v : px) v %= 4;
      plan.before_data.push_back({"PLTE", Bytes(12, 200)});
    }
    const Bytes png = write_png(w, h, px, plan);
    EXPECT_TRUE(sv::decode_png_fast(png).empty()) << c.what;
    expect_opencv_answer(png, c.what);
  }
}

TEST(PngFastDecode, DamagedFilesGoToOpenCvWhichDecides) {
  const int w = 23, h = 11;
  const Bytes px = make_pixels(w, h, 3, 17);
  PngPlan plan;
  plan.colour = 2;
  plan.idat_chunks = 2;
  const Bytes good = write_png(w, h, px, plan);
  ASSERT_FALSE(sv::decode_png_fast(good).empty());

  // Offsets of the chunks in `good`: IHDR at 8, then the IDATs, then IEND.
  std::vector<std::size_t> at;
  for (std::size_t p = 8; p + 8 <= good.size();) {
    at.push_back(p);
    p += 12 + ((std::size_t{good[p]} << 24) | (std::size_t{good[p + 1]} << 16) | (std::size_t{good[p + 2]} << 8) | good[p + 3]);
  }
  ASSERT_EQ(at.size(), 4u);  // IHDR, IDAT, IDAT, IEND
  const std::size_t idat1 = at[1], idat2 = at[2], iend = at[3];

  std::vector<std::pair<std::string, Bytes>> damaged;
  auto flip = [&](std::size_t offset, const std::string& what) {
    Bytes b = good;
    b[offset] ^= 0x40;
    damaged.push_back({what, b});
  };
  flip(idat1 + 8 + 5, "a flipped bit in the IDAT data (CRC mismatch)");
  flip(idat2 - 1, "a flipped bit in the first IDAT's CRC");
  flip(8 + 8 + 3, "a flipped bit in the width (IHDR CRC mismatch)");
  flip(idat1 + 5, "an IDAT type that is not letters");
  damaged.push_back({"cut in the middle of the data", Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(idat2 + 10))});
  damaged.push_back({"no IEND", Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(iend))});
  {
    PngPlan p = plan;
    p.filters = {0, 1, 2};
    Bytes b = write_png(w, h, px, p);
    damaged.push_back({"an unknown critical chunk", [&] {
                         Bytes out(b.begin(), b.begin() + 33);  // signature + IHDR
                         chunk(out, "ABCD", {1, 2});
                         out.insert(out.end(), b.begin() + 33, b.end());
                         return out;
                       }()});
  }
  // Valid chunks around a zlib stream that does not hold the image: one row short, one row more,
  // and a filter type 5.
  for (const int extra_rows : {-1, 1}) {
    const Bytes more = make_pixels(w, h + extra_rows, 3, 17);
    Bytes b = write_png(w, h + extra_rows, more, plan);
    Bytes ihdr_h;
    put32(ihdr_h, static_cast<std::uint32_t>(h));
    std::copy(ihdr_h.begin(), ihdr_h.end(), b.begin() + 20);  // claim h rows; fix the IHDR CRC
    const std::uint32_t crc = libdeflate_crc32(0, b.data() + 12, 17);
    Bytes crc_bytes;
    put32(crc_bytes, crc);
    std::copy(crc_bytes.begin(), crc_bytes.end(), b.begin() + 29);
    damaged.push_back({extra_rows < 0 ? "a row short" : "a row too many", b});
  }
  {
    PngPlan p = plan;
    p.filters = {0, 1, 5};  // filter_row treats 5 as none; the row keeps the byte 5
    damaged.push_back({"filter type 5", write_png(w, h, px, p)});
  }
  for (const auto& [what, bytes] : damaged) {
    EXPECT_TRUE(sv::decode_png_fast(bytes).empty()) << what;
    expect_opencv_answer(bytes, what);
  }
}

TEST(PngFastDecode, RespectsItsMemoryBound) {
  const Bytes px = make_pixels(40, 30, 1, 3);
  const Bytes png = write_png(40, 30, px, {});
  EXPECT_FALSE(sv::decode_png_fast(png, 2 * 40 * 30 + 30).empty());
  EXPECT_TRUE(sv::decode_png_fast(png, 2 * 40 * 30 + 29).empty());
}

TEST(PngFastDecode, TheBundledSamplesTakeTheFastPathWithOpenCvsPixels) {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(SLUICE_SAMPLES_DIR)) {
    if (e.path().extension() != ".png") continue;
    const Bytes bytes = sv::read_file_bytes(e.path());
    const cv::Mat fast = sv::decode_png_fast(bytes);
    ASSERT_FALSE(fast.empty()) << e.path();
    EXPECT_TRUE(same(fast, opencv_decode(bytes))) << e.path();
    sv::DecodeOptions no_fast;
    no_fast.fast_png = false;
    EXPECT_TRUE(same(sv::decode_image(bytes).pixels, sv::decode_image(bytes, no_fast).pixels)) << e.path();
    ++n;
  }
  EXPECT_GE(n, 6u);
}
