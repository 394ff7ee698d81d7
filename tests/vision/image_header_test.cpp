// The header inspector: what it reads from every accepted format and depth (checked against what
// OpenCV then decodes), the headers it refuses (other formats, truncated, junk), the decode cost
// against the budget, and the EXIF / TIFF orientation applied as viewers show it.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "support/image_test_support.hpp"
#include "sluice/vision/decode.hpp"
#include "sluice/vision/image_header.hpp"
#include "sluice/vision/preprocess.hpp"

namespace sv = sluice::vision;

namespace {

using sluice::vision::testing::bytes_of;
using sluice::vision::testing::encode;
using sluice::vision::testing::pattern;

std::string inspect_error(std::span<const std::uint8_t> bytes, const sv::DecodeOptions& o = {}) {
  return sluice::vision::testing::refusal([](auto b, const auto& opt) { sv::inspect_image(b, opt); }, bytes, o);
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void put(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v, int n, bool little) {
  for (int i = 0; i < n; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * (little ? i : n - 1 - i)));
}

/// A little-endian TIFF holding only a directory of SHORT/LONG tags (no pixel data).
std::vector<std::uint8_t> tiff_directory(const std::vector<std::pair<std::uint16_t, std::uint32_t>>& tags) {
  std::vector<std::uint8_t> b(8 + 2 + 12 * tags.size() + 4, 0);
  b[0] = 'I', b[1] = 'I', b[2] = 42;
  put(b, 4, 8, 4, true);
  put(b, 8, static_cast<std::uint32_t>(tags.size()), 2, true);
  for (std::size_t i = 0; i < tags.size(); ++i) {
    const std::size_t e = 10 + 12 * i;
    put(b, e, tags[i].first, 2, true);
    put(b, e + 2, 4, 2, true);  // LONG
    put(b, e + 4, 1, 4, true);
    put(b, e + 8, tags[i].second, 4, true);
  }
  return b;
}

/// Sets the Orientation of an OpenCV-written little-endian TIFF by turning its PlanarConfiguration
/// entry (1, the default anyway) into an Orientation entry.
std::vector<std::uint8_t> with_tiff_orientation(std::vector<std::uint8_t> b, int orientation) {
  const std::size_t ifd = b[4] | (b[5] << 8) | (b[6] << 16) | (static_cast<std::size_t>(b[7]) << 24);
  const std::size_t n = b[ifd] | (b[ifd + 1] << 8);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t e = ifd + 2 + 12 * i;
    if ((b[e] | (b[e + 1] << 8)) == 284) {
      put(b, e, 274, 2, true);
      put(b, e + 2, 3, 2, true);
      put(b, e + 4, 1, 4, true);
      put(b, e + 8, static_cast<std::uint32_t>(orientation), 4, true);
      return b;
    }
  }
  ADD_FAILURE() << "no PlanarConfiguration entry";
  return b;
}

/// Inserts an APP1 Exif segment holding one Orientation entry right after the JPEG's SOI.
std::vector<std::uint8_t> with_exif_orientation(std::vector<std::uint8_t> jpg, int orientation, bool big_endian) {
  std::vector<std::uint8_t> tiff(8 + 2 + 12 + 4, 0);
  const bool le = !big_endian;
  tiff[0] = tiff[1] = le ? 'I' : 'M';
  put(tiff, 2, 42, 2, le);
  put(tiff, 4, 8, 4, le);
  put(tiff, 8, 1, 2, le);
  put(tiff, 10, 274, 2, le);
  put(tiff, 12, 3, 2, le);
  put(tiff, 14, 1, 4, le);
  put(tiff, 18, static_cast<std::uint32_t>(orientation), 2, le);
  std::vector<std::uint8_t> app1 = {0xFF, 0xE1, 0, 0, 'E', 'x', 'i', 'f', 0, 0};
  app1.insert(app1.end(), tiff.begin(), tiff.end());
  put(app1, 2, static_cast<std::uint32_t>(app1.size() - 2), 2, false);
  jpg.insert(jpg.begin() + 2, app1.begin(), app1.end());
  return jpg;
}

/// The stored pixel that EXIF orientation `o` shows at (y, x) of the upright image, written out
/// index by index (independently of the cv::flip / cv::rotate calls of the decoder).
cv::Point stored_of(int o, int y, int x, int w, int h) {
  switch (o) {
    case 2: return {w - 1 - x, y};
    case 3: return {w - 1 - x, h - 1 - y};
    case 4: return {x, h - 1 - y};
    case 5: return {y, x};
    case 6: return {y, h - 1 - x};
    case 7: return {w - 1 - y, h - 1 - x};
    case 8: return {w - 1 - y, x};
    default: return {x, y};
  }
}

void expect_upright(const cv::Mat& stored, const cv::Mat& got, int o, const std::string& what) {
  const bool turned = o >= 5;
  ASSERT_EQ(got.cols, turned ? stored.rows : stored.cols) << what;
  ASSERT_EQ(got.rows, turned ? stored.cols : stored.rows) << what;
  ASSERT_EQ(got.type(), stored.type()) << what;
  const std::size_t px = stored.elemSize();
  int wrong = 0;
  for (int y = 0; y < got.rows; ++y)
    for (int x = 0; x < got.cols; ++x) {
      const cv::Point s = stored_of(o, y, x, stored.cols, stored.rows);
      wrong += std::memcmp(got.ptr(y) + x * px, stored.ptr(s.y) + s.x * px, px) != 0;
    }
  EXPECT_EQ(wrong, 0) << what;
}

}  // namespace

TEST(ImageHeader, ReadsFormatSizeChannelsAndDepthOfEveryAcceptedKind) {
  struct Case {
    std::string ext;
    int type;
    std::vector<int> params;
  };
  const std::vector<Case> cases = {
      {".png", CV_8UC1, {}},  {".png", CV_8UC3, {}},  {".png", CV_8UC4, {}},  {".png", CV_16UC1, {}},
      {".png", CV_16UC3, {}}, {".png", CV_16UC4, {}}, {".png", CV_8UC1, {cv::IMWRITE_PNG_BILEVEL, 1}},
      {".jpg", CV_8UC1, {}},  {".jpg", CV_8UC3, {}},  {".jpg", CV_8UC3, {cv::IMWRITE_JPEG_PROGRESSIVE, 1}},
      {".tif", CV_8UC1, {}},  {".tif", CV_8UC3, {}},  {".tif", CV_8UC4, {}},  {".tif", CV_16UC1, {}},
      {".tif", CV_16UC3, {}}, {".tif", CV_16UC4, {}}, {".bmp", CV_8UC1, {}},  {".bmp", CV_8UC3, {}},
      {".bmp", CV_8UC4, {}},
  };
  for (const auto& c : cases) {
    const std::string what = c.ext + " type " + std::to_string(c.type);
    const auto bytes = encode(pattern(37, 53, c.type), c.ext, c.params);
    const sv::ImageHeader h = sv::inspect_image(bytes);
    EXPECT_EQ(h.width, 53) << what;
    EXPECT_EQ(h.height, 37) << what;
    EXPECT_EQ(h.orientation, 1) << what;
    const sv::DecodedImage d = sv::decode_image(bytes);
    EXPECT_EQ(d.width(), 53) << what;
    EXPECT_EQ(d.height(), 37) << what;
    // The header's channels bound what is decoded; its depth is what is decoded.
    EXPECT_GE(h.channels, d.pixels.channels()) << what;
    EXPECT_EQ(h.decoded_depth, d.source_depth == CV_16U ? 16 : 8) << what;
    EXPECT_EQ(h.progressive, c.params.size() == 2 && c.params[0] == cv::IMWRITE_JPEG_PROGRESSIVE) << what;
    // The cost covers at least the decoded pixels, and the float copy of 16-bit ones.
    const std::int64_t decoded = static_cast<std::int64_t>(d.pixels.total() * d.pixels.elemSize());
    EXPECT_GE(h.decode_bytes, decoded) << what;
  }
  EXPECT_EQ(sv::inspect_image(encode(pattern(8, 8, CV_8UC3), ".png")).format, sv::ImageFormat::png);
  EXPECT_EQ(sv::inspect_image(encode(pattern(8, 8, CV_8UC3), ".jpg")).format, sv::ImageFormat::jpeg);
  EXPECT_EQ(sv::inspect_image(encode(pattern(8, 8, CV_8UC3), ".tif")).format, sv::ImageFormat::tiff);
  EXPECT_EQ(sv::inspect_image(encode(pattern(8, 8, CV_8UC3), ".bmp")).format, sv::ImageFormat::bmp);
}

TEST(ImageHeader, OtherFormatsAreRefusedUndecoded) {
  // Signatures (and enough of a header) of what OpenCV would otherwise decode.
  const std::vector<std::pair<std::string, std::vector<std::uint8_t>>> others = {
      {"webp", bytes_of(std::string("RIFF\x1e\0\0\0WEBPVP8L\x11\0\0\0\x2f\xff\xff\xff\x0f\0\0\0\0\0\0\0\0\0\0\0\0\0", 38))},
      {"gif", bytes_of("GIF89a\x40\x1f\x40\x1f")},
      {"pgm", bytes_of("P5\n8000 8000\n255\n")},
      {"pbm", bytes_of("P4\n8000 8000\n")},
      {"pam", bytes_of("P7\nWIDTH 8000\nHEIGHT 8000\nDEPTH 4\nMAXVAL 65535\nTUPLTYPE RGB_ALPHA\nENDHDR\n")},
      {"pfm", bytes_of("PF\n8000 8000\n-1.0\n")},
      {"jpeg 2000", bytes_of(std::string("\0\0\0\x0cjP  \r\n\x87\n", 12))},
      {"j2k codestream", bytes_of(std::string("\xff\x4f\xff\x51\0\x29", 6))},
      {"openexr", bytes_of(std::string("\x76\x2f\x31\x01\x02\0\0\0", 8))},
      {"radiance hdr", bytes_of("#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 8000 +X 8000\n")},
      {"sun raster", bytes_of(std::string("\x59\xa6\x6a\x95\0\0\x1f\x40\0\0\x1f\x40", 12))},
      {"text", bytes_of("hello world")},
      {"one byte", bytes_of("B")},
  };
  for (const auto& [name, bytes] : others) {
    const std::string why = inspect_error(bytes);
    EXPECT_TRUE(has(why, "unsupported format") || has(why, "truncated")) << name << ": " << why;
    std::string decode_why;
    try {
      sv::decode_image(bytes);
    } catch (const sluice::Error& e) {
      decode_why = e.what();
    }
    EXPECT_EQ(decode_why, why) << name;  // refused by the same check, before any decoder ran
  }
  EXPECT_TRUE(has(inspect_error({}), "empty file"));
}

TEST(ImageHeader, UnreadableHeadersAreRefused) {
  // Truncated anywhere inside the header.
  for (const std::string ext : {".png", ".jpg", ".tif", ".bmp"}) {
    const auto full = encode(pattern(20, 20, CV_8UC3), ext);
    for (const std::size_t keep : {3, 10, 17, 25}) {
      if (ext == ".tif" && keep < 8) continue;
      const std::vector<std::uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(keep));
      EXPECT_FALSE(inspect_error(cut).empty()) << ext << " cut at " << keep;
    }
  }
  // A JPEG that loses marker sync before its frame header: refused, not searched.
  auto jpg = encode(pattern(16, 16, CV_8UC3), ".jpg");
  jpg.insert(jpg.begin() + 2, {0x12, 0x34});
  EXPECT_TRUE(has(inspect_error(jpg), "junk")) << inspect_error(jpg);
  // 12-bit and lossless JPEG frames; a scan before the frame header.
  auto j12 = encode(pattern(16, 16, CV_8UC1), ".jpg");
  std::size_t sof = 2;
  while (!(j12[sof] == 0xFF && j12[sof + 1] == 0xC0)) ++sof;
  j12[sof + 4] = 12;
  EXPECT_TRUE(has(inspect_error(j12), "12-bit")) << inspect_error(j12);
  j12[sof + 4] = 8;
  j12[sof + 1] = 0xC3;
  EXPECT_TRUE(has(inspect_error(j12), "SOF3")) << inspect_error(j12);
  const std::vector<std::uint8_t> scan_first = {0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0};
  EXPECT_TRUE(has(inspect_error(scan_first), "scan before")) << inspect_error(scan_first);
  // A JPEG whose height comes later (DNL): an empty size.
  auto dnl = encode(pattern(16, 16, CV_8UC1), ".jpg");
  dnl[sof + 5] = dnl[sof + 6] = 0;
  EXPECT_TRUE(has(inspect_error(dnl), "empty size")) << inspect_error(dnl);
  // TIFF: float samples, 32-bit samples, BigTIFF, a directory beyond the end.
  EXPECT_TRUE(has(inspect_error(tiff_directory({{256, 64}, {257, 64}, {258, 32}})), "32-bit"));
  EXPECT_TRUE(has(inspect_error(tiff_directory({{256, 64}, {257, 64}, {258, 16}, {339, 3}})), "sample format"));
  EXPECT_TRUE(has(inspect_error(bytes_of(std::string("II\x2b\0\x08\0\0\0", 8))), "BigTIFF"));
  EXPECT_TRUE(has(inspect_error(bytes_of(std::string("II\x2a\0\xff\xff\0\0", 8))), "truncated"));
  // BMP: an info header size no decoder knows, 2 bits per pixel.
  auto bmp = encode(pattern(16, 16, CV_8UC3), ".bmp");
  put(bmp, 14, 77, 4, true);
  EXPECT_TRUE(has(inspect_error(bmp), "info header")) << inspect_error(bmp);
  bmp = encode(pattern(16, 16, CV_8UC3), ".bmp");
  put(bmp, 28, 2, 2, true);
  EXPECT_TRUE(has(inspect_error(bmp), "bits per pixel")) << inspect_error(bmp);
  // PNG: a colour type with a depth it cannot have.
  auto png = encode(pattern(16, 16, CV_8UC3), ".png");
  png[24] = 4;  // RGB at 4 bits
  EXPECT_TRUE(has(inspect_error(png), "colour type")) << inspect_error(png);
}

TEST(ImageHeader, APngChunkThatRunsPastTheEndIsRefusedBeforeLibpngSeesIt) {
  // Found by fuzz_image: 100 bytes whose second chunk (tEXt) declares 1951526483 bytes; libpng
  // reserved that much before it found the data missing.
  const std::vector<std::uint8_t> hostile = {
      0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
      0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x0a, 0x08, 0x06, 0x00, 0x00, 0x00, 0x66, 0x05, 0x74, 0xbe, 0x74,
      0x52, 0x4e, 0x53, 0x74, 0x45, 0x58, 0x74, 0x6b, 0x00, 0x00, 0x00, 0xee, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x6c, 0x93, 0x34, 0x0f, 0xff, 0xe1, 0xe1, 0x00, 0x22, 0x45, 0x78, 0x69,
      0x66, 0x35, 0x66, 0x5e, 0xbc, 0x00, 0x00, 0x49, 0x49, 0x2a, 0x00};
  EXPECT_TRUE(has(inspect_error(hostile), "past the end")) << inspect_error(hostile);
  // The same for a chunk after the image data, and for image data cut short; a whole file passes.
  const auto whole = encode(pattern(16, 16, CV_8UC3), ".png");
  EXPECT_TRUE(inspect_error(whole).empty()) << inspect_error(whole);
  auto late = whole;
  late.insert(late.end() - 12, {0x10, 0x00, 0x00, 0x00, 't', 'E', 'X', 't', 'k', 0});
  EXPECT_TRUE(has(inspect_error(late), "past the end")) << inspect_error(late);
  const std::vector<std::uint8_t> cut(whole.begin(), whole.end() - 20);
  EXPECT_TRUE(has(inspect_error(cut), "past the end")) << inspect_error(cut);
}

TEST(ImageHeader, BombsAreRefusedFromTheHeaderByTheDefaultLimits) {
  const sv::DecodeOptions defaults;
  // PNG whose IHDR claims 20000 x 20000: the pixel limit.
  auto png = encode(pattern(10, 10, CV_8UC1), ".png");
  put(png, 16, 20000, 4, false);
  put(png, 20, 20000, 4, false);
  EXPECT_TRUE(has(inspect_error(png), "20000 x 20000")) << inspect_error(png);
  EXPECT_TRUE(has(inspect_error(png), "limit")) << inspect_error(png);
  // 16-bit RGBA PNG 9000 x 9000: under the pixel limit, 8 bytes + 16 of float per pixel.
  png = encode(pattern(10, 10, CV_16UC4), ".png");
  put(png, 16, 9000, 4, false);
  put(png, 20, 9000, 4, false);
  EXPECT_TRUE(has(inspect_error(png), "budget")) << inspect_error(png);
  // The reported 16-bit RGBA TIFF, 8000 x 8000 in one strip: pixels, strip buffer, float copy.
  const auto tif = tiff_directory({{256, 8000}, {257, 8000}, {258, 16}, {262, 2}, {277, 4}});
  const sv::ImageHeader th = sv::read_image_header(tif);
  EXPECT_EQ(th.channels, 4);
  EXPECT_EQ(th.decoded_depth, 16);
  EXPECT_EQ(th.tile_height, 8000);
  EXPECT_GT(th.decode_bytes, std::int64_t{8000} * 8000 * 4 * (2 + 2 + 4) - 1);
  const std::string tiff_why = inspect_error(tif, defaults);
  EXPECT_TRUE(has(tiff_why, "8000 x 8000")) << tiff_why;
  EXPECT_TRUE(has(tiff_why, std::to_string(th.decode_bytes) + " bytes")) << tiff_why;
  EXPECT_TRUE(has(tiff_why, std::to_string(defaults.max_decode_bytes))) << tiff_why;
  // A small TIFF whose tiles are absurd: libtiff would allocate one tile's worth.
  const auto tiles = tiff_directory({{256, 64}, {257, 64}, {258, 8}, {277, 3}, {322, 1 << 20}, {323, 1 << 20}});
  EXPECT_TRUE(has(inspect_error(tiles), "budget")) << inspect_error(tiles);
  const auto huge_tile = tiff_directory({{256, 64}, {257, 64}, {258, 8}, {322, 1u << 30}, {323, 16}});
  EXPECT_TRUE(has(inspect_error(huge_tile), "tile")) << inspect_error(huge_tile);
  const auto half_tile = tiff_directory({{256, 64}, {257, 64}, {258, 8}, {322, 16}});
  EXPECT_TRUE(has(inspect_error(half_tile), "tile")) << inspect_error(half_tile);
  // A progressive JPEG: the coefficients count, two bytes a sample (4:2:0, as OpenCV writes: a
  // full-size luma plane and two quarter-size chroma planes).
  const auto prog = encode(pattern(64, 64, CV_8UC3), ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  const auto base = encode(pattern(64, 64, CV_8UC3), ".jpg");
  EXPECT_EQ(sv::read_image_header(prog).decode_bytes - sv::read_image_header(base).decode_bytes,
            2 * (64 * 64 + 2 * 32 * 32));
  EXPECT_TRUE(has(inspect_error(prog, {.max_decode_bytes = 64 * 64 * 4}), "progressive"));
  EXPECT_NO_THROW(sv::inspect_image(base, {.max_decode_bytes = 64 * 64 * 4}));
  // BMP: sides over the pixel limit; sides beyond anything OpenCV decodes.
  auto bmp = encode(pattern(16, 16, CV_8UC3), ".bmp");
  put(bmp, 18, 30000, 4, true);
  put(bmp, 22, 30000, 4, true);
  EXPECT_TRUE(has(inspect_error(bmp), "limit")) << inspect_error(bmp);
  put(bmp, 18, 0x7fffffff, 4, true);
  EXPECT_TRUE(has(inspect_error(bmp), "side above")) << inspect_error(bmp);
  put(bmp, 18, 0x80000000u, 4, true);  // negative width
  EXPECT_TRUE(has(inspect_error(bmp), "empty size")) << inspect_error(bmp);
}

TEST(ImageHeader, BudgetIsCheckedBeforeDecodingAndNamesCostAndBudget) {
  const auto png = encode(pattern(40, 40, CV_16UC3), ".png");
  const sv::ImageHeader h = sv::inspect_image(png);
  EXPECT_EQ(h.decode_bytes, 40 * 40 * 3 * (2 + 4) + 40 * static_cast<std::int64_t>(sizeof(void*)));
  sv::DecodeOptions tight;
  tight.max_decode_bytes = h.decode_bytes - 1;
  std::string why;
  try {
    sv::decode_image(png, tight);
  } catch (const sluice::Error& e) {
    why = e.what();
  }
  EXPECT_TRUE(has(why, std::to_string(h.decode_bytes))) << why;
  EXPECT_TRUE(has(why, std::to_string(tight.max_decode_bytes))) << why;
  tight.max_decode_bytes = h.decode_bytes;
  EXPECT_NO_THROW(sv::decode_image(png, tight));
}

TEST(Orientation, JpegExifOrientationIsAppliedLikeAViewer) {
  // The reference is the same JPEG without the Exif block, decoded by OpenCV: same compressed
  // data, so the same stored pixels exactly.
  const auto plain = encode(pattern(24, 40, CV_8UC3), ".jpg", {cv::IMWRITE_JPEG_QUALITY, 100});
  const cv::Mat stored = cv::imdecode(plain, cv::IMREAD_UNCHANGED);
  for (const bool big_endian : {false, true})
    for (int o = 1; o <= 8; ++o) {
      const auto bytes = with_exif_orientation(plain, o, big_endian);
      const sv::ImageHeader h = sv::inspect_image(bytes);
      EXPECT_EQ(h.orientation, o);
      EXPECT_EQ(h.upright_width(), o >= 5 ? 24 : 40);
      expect_upright(stored, sv::decode_image(bytes).pixels, o,
                     "jpeg orientation " + std::to_string(o) + (big_endian ? " MM" : " II"));
    }
  // Gray JPEGs too; out-of-range values are ignored.
  const auto gray = encode(pattern(16, 24, CV_8UC1), ".jpg", {cv::IMWRITE_JPEG_QUALITY, 100});
  const cv::Mat gray_stored = cv::imdecode(gray, cv::IMREAD_UNCHANGED);
  expect_upright(gray_stored, sv::decode_image(with_exif_orientation(gray, 6, false)).pixels, 6, "gray 6");
  expect_upright(gray_stored, sv::decode_image(with_exif_orientation(gray, 9, false)).pixels, 1, "gray 9");
}

TEST(Orientation, TiffOrientationIsAppliedAtEveryDepth) {
  for (const int type : {CV_8UC1, CV_8UC3, CV_8UC4, CV_16UC1, CV_16UC3, CV_16UC4}) {
    const cv::Mat stored = pattern(12, 20, type);
    const auto plain = encode(stored, ".tif");
    for (int o = 1; o <= 8; ++o) {
      const auto bytes = with_tiff_orientation(plain, o);
      const sv::ImageHeader h = sv::inspect_image(bytes);
      EXPECT_EQ(h.orientation, o);
      const sv::DecodedImage d = sv::decode_image(bytes, {.uint16_scaling = sv::Uint16Scaling::full_range});
      const std::string what = "tiff type " + std::to_string(type) + " orientation " + std::to_string(o);
      if (stored.depth() == CV_8U) {
        expect_upright(stored, d.pixels, o, what);
      } else {
        EXPECT_EQ(d.source_depth, CV_16U) << what;  // 16-bit stays 16-bit
        cv::Mat as_float;
        stored.convertTo(as_float, CV_MAKETYPE(CV_32F, stored.channels()), 1.0 / 65535.0);
        expect_upright(as_float, d.pixels, o, what);
      }
    }
  }
}

TEST(Orientation, SizeLimitsApplyToTheUprightImage) {
  // 8 x 40 stored, shown 40 x 8: a min_side of 10 refuses it either way, the message names the
  // upright size.
  const auto plain = encode(pattern(8, 40, CV_8UC3), ".jpg");
  const auto turned = with_exif_orientation(plain, 6, false);
  const std::string why = inspect_error(turned, {.min_side = 10});
  EXPECT_TRUE(has(why, "8 x 40")) << why;
  EXPECT_EQ(sv::decode_image(turned).size(), cv::Size(8, 40));
}

namespace {

/// A bright disk on a dark gradient: smooth, so a reduced decode and a full one then shrunk agree.
cv::Mat spheroid(int rows, int cols) {
  cv::Mat m(rows, cols, CV_8UC3);
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x)
      m.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>(20 + 40 * x / cols), static_cast<uchar>(30 + 30 * y / rows), 40);
  cv::circle(m, {cols / 3, rows / 2}, rows / 4, cv::Scalar(200, 210, 220), cv::FILLED, cv::LINE_AA);
  return m;
}

}  // namespace

TEST(ReducedDecode, ALargeJpegDecodesReducedUprightAndKnowsItsOriginalSize) {
  const auto plain = encode(spheroid(600, 800), ".jpg", {cv::IMWRITE_JPEG_QUALITY, 95});
  sv::DecodeOptions opts;
  opts.min_output = cv::Size(100, 150);  // upright width x height the network needs
  for (int o = 1; o <= 8; ++o) {
    const auto bytes = with_exif_orientation(plain, o, false);
    const bool transposed = o >= 5;
    const sv::ImageHeader h = sv::inspect_image(bytes, opts);
    // Upright 800 x 600 (or 600 x 800): 1/4 keeps both sides >= 100 x 150, 1/8 would not.
    const int expected = 4;
    EXPECT_EQ(h.reduction, expected) << o;
    EXPECT_EQ(h.decode_bytes, sv::decode_cost(h, expected));
    EXPECT_LT(h.decode_bytes, sv::read_image_header(bytes).decode_bytes / 10);
    const sv::DecodedImage d = sv::decode_image(bytes, opts);
    EXPECT_EQ(d.original, cv::Size(transposed ? 600 : 800, transposed ? 800 : 600)) << o;
    EXPECT_EQ(d.size(), cv::Size(transposed ? 150 : 200, transposed ? 200 : 150)) << o;
    // Exactly OpenCV's reduced decode of the stored pixels, turned like a viewer.
    const cv::Mat stored = cv::imdecode(plain, cv::IMREAD_REDUCED_COLOR_4 | cv::IMREAD_IGNORE_ORIENTATION);
    expect_upright(stored, d.pixels, o, "reduced jpeg orientation " + std::to_string(o));
    // What the network sees: the same as a full decode shrunk, and the same bright region.
    const sv::DecodedImage full = sv::decode_image(bytes);
    EXPECT_EQ(full.original, d.original);
    sv::PreprocessOptions net;
    net.input_width = 96;
    net.input_height = 96;
    const cv::Mat a = sv::resize_to_input(d, net).pixels, b = sv::resize_to_input(full, net).pixels;
    cv::Mat diff;
    cv::absdiff(a, b, diff);
    EXPECT_LT(cv::mean(diff)[0], 2.0) << o;
    cv::Mat ga, gb, ma, mb;
    cv::cvtColor(a, ga, cv::COLOR_BGR2GRAY);
    cv::cvtColor(b, gb, cv::COLOR_BGR2GRAY);
    cv::threshold(ga, ma, 120, 255, cv::THRESH_BINARY);
    cv::threshold(gb, mb, 120, 255, cv::THRESH_BINARY);
    cv::Mat both, either;
    cv::bitwise_and(ma, mb, both);
    cv::bitwise_or(ma, mb, either);
    EXPECT_GT(static_cast<double>(cv::countNonZero(both)) / cv::countNonZero(either), 0.97) << o;
  }
}

TEST(ReducedDecode, TheLargestReductionThatKeepsTheInputSizeIsChosen) {
  const auto jpg = encode(spheroid(1000, 1700), ".jpg");
  auto reduction = [&](int w, int h) {
    sv::DecodeOptions opts;
    opts.min_output = cv::Size(w, h);
    return sv::inspect_image(jpg, opts).reduction;
  };
  EXPECT_EQ(reduction(0, 0), 1);        // no size asked for: full size
  EXPECT_EQ(reduction(1024, 1024), 1);  // 1/2 would be 850 x 500
  EXPECT_EQ(reduction(850, 500), 2);
  EXPECT_EQ(reduction(425, 250), 4);
  EXPECT_EQ(reduction(213, 125), 8);    // libjpeg rounds up: 1700 / 8 -> 213
  EXPECT_EQ(reduction(214, 125), 4);
  // Gray JPEGs decode reduced and gray.
  cv::Mat gray;
  cv::cvtColor(spheroid(400, 400), gray, cv::COLOR_BGR2GRAY);
  sv::DecodeOptions opts;
  opts.min_output = cv::Size(100, 100);
  const sv::DecodedImage g = sv::decode_image(encode(gray, ".jpg"), opts);
  EXPECT_EQ(g.pixels.channels(), 1);
  EXPECT_EQ(g.size(), cv::Size(100, 100));
  EXPECT_EQ(g.original, cv::Size(400, 400));
}

TEST(ReducedDecode, FormatsWithoutScaleOnDecodeDecodeWhole) {
  sv::DecodeOptions opts;
  opts.min_output = cv::Size(50, 50);
  for (const std::string ext : {".png", ".tif", ".bmp"}) {
    const auto bytes = encode(spheroid(400, 600), ext);
    const sv::ImageHeader h = sv::inspect_image(bytes, opts);
    EXPECT_EQ(h.reduction, 1) << ext;
    EXPECT_EQ(h.decode_bytes, sv::read_image_header(bytes).decode_bytes) << ext;
    const sv::DecodedImage d = sv::decode_image(bytes, opts);
    EXPECT_EQ(d.size(), cv::Size(600, 400)) << ext;
    EXPECT_EQ(d.original, cv::Size(600, 400)) << ext;
  }
}
