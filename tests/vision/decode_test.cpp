// Decoding and preprocessing: every format and pixel type the pipeline accepts, checked against
// independent per-pixel computations; and the bad inputs that must fail with a clear error.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
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

using sluice::vision::testing::encode;
using sluice::vision::testing::pattern;

cv::Mat pattern8(int rows, int cols, int channels) { return pattern(rows, cols, CV_8UC(channels)); }

std::string error_of(std::span<const std::uint8_t> bytes, const sv::DecodeOptions& o = {}) {
  return sluice::vision::testing::refusal([](auto b, const auto& opt) { sv::decode_image(b, opt); }, bytes, o);
}

}  // namespace

TEST(ImageHeader, ReadsTheSizeOfEveryFormatWithoutDecoding) {
  const cv::Mat img = pattern8(37, 53, 3);
  for (const std::string ext : {".png", ".jpg", ".tif", ".bmp"}) {
    const auto bytes = encode(img, ext);
    const auto extent = sv::peek_image_extent(bytes);
    ASSERT_TRUE(extent.has_value()) << ext;
    EXPECT_EQ(extent->width, 53) << ext;
    EXPECT_EQ(extent->height, 37) << ext;
  }
  cv::Mat wide(3, 4000, CV_16UC1, cv::Scalar(1));
  const auto tif16 = encode(wide, ".tif");
  ASSERT_TRUE(sv::peek_image_extent(tif16).has_value());
  EXPECT_EQ(sv::peek_image_extent(tif16)->width, wide.cols);
  const std::vector<std::uint8_t> junk = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'};
  EXPECT_FALSE(sv::peek_image_extent(junk).has_value());
  EXPECT_FALSE(sv::peek_image_extent({}).has_value());
}

TEST(Decode, EightBitFormatsKeepTheirPixels) {
  const cv::Mat img = pattern8(20, 24, 3);
  for (const std::string ext : {".png", ".tif", ".bmp"}) {  // lossless ones
    const auto d = sv::decode_image(encode(img, ext));
    ASSERT_EQ(d.pixels.type(), CV_8UC3) << ext;
    EXPECT_EQ(cv::norm(d.pixels, img, cv::NORM_INF), 0.0) << ext;
    EXPECT_FLOAT_EQ(d.scale, 1.0f / 255.0f);
  }
  const auto jpg = sv::decode_image(encode(img, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 100}));
  EXPECT_EQ(jpg.size(), img.size());
  EXPECT_EQ(jpg.pixels.channels(), 3);
}

TEST(Decode, GrayBecomesThreeEqualChannels) {
  const cv::Mat gray = pattern8(16, 16, 1);
  const auto d = sv::decode_image(encode(gray, ".png"));
  sv::PreprocessOptions o{.input_height = 16, .input_width = 16, .mean = {0, 0, 0}, .std = {1, 1, 1}};
  std::vector<float> slot(o.slot_floats());
  sv::preprocess_into(d, o, slot);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) {
      const float want = gray.at<std::uint8_t>(y, x) / 255.0f;
      for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(slot[c * 256 + y * 16 + x], want);
    }
}

TEST(Decode, RgbaDropsAlphaAndBgrBecomesRgb) {
  cv::Mat bgra = pattern8(12, 10, 4);
  const auto d = sv::decode_image(encode(bgra, ".png"));
  ASSERT_EQ(d.pixels.channels(), 4);
  sv::PreprocessOptions o{.input_height = 12, .input_width = 10, .mean = {0, 0, 0}, .std = {1, 1, 1}};
  std::vector<float> slot(o.slot_floats());
  sv::preprocess_into(d, o, slot);
  for (int y = 0; y < 12; ++y)
    for (int x = 0; x < 10; ++x) {
      const auto* p = bgra.ptr<std::uint8_t>(y) + 4 * x;  // B, G, R, A
      EXPECT_FLOAT_EQ(slot[0 * 120 + y * 10 + x], p[2] / 255.0f);
      EXPECT_FLOAT_EQ(slot[1 * 120 + y * 10 + x], p[1] / 255.0f);
      EXPECT_FLOAT_EQ(slot[2 * 120 + y * 10 + x], p[0] / 255.0f);
    }
}

TEST(Decode, SixteenBitTiffIsScaledByItsRange) {
  cv::Mat img(9, 11, CV_16UC1);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x) img.at<std::uint16_t>(y, x) = static_cast<std::uint16_t>(1000 + 150 * (x + y * 11));
  const double lo = 1000, hi = 1000 + 150 * 98;
  const auto bytes = encode(img, ".tif");
  const auto d = sv::decode_image(bytes);
  ASSERT_EQ(d.pixels.type(), CV_32FC1);
  EXPECT_EQ(d.source_depth, CV_16U);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x)
      EXPECT_NEAR(d.pixels.at<float>(y, x), (img.at<std::uint16_t>(y, x) - lo) / (hi - lo), 1e-6);

  const auto full = sv::decode_image(bytes, {.uint16_scaling = sv::Uint16Scaling::full_range});
  EXPECT_NEAR(full.pixels.at<float>(0, 0), 1000.0 / 65535.0, 1e-6);

  // 16-bit colour: one range over all channels; then through the preprocessor.
  cv::Mat rgb16(8, 8, CV_16UC3, cv::Scalar(100, 300, 500));
  rgb16.at<cv::Vec3w>(0, 0) = cv::Vec3w(100, 300, 900);
  const auto c = sv::decode_image(encode(rgb16, ".tif"));
  sv::PreprocessOptions o{.input_height = 8, .input_width = 8, .mean = {0, 0, 0}, .std = {1, 1, 1}};
  std::vector<float> slot(o.slot_floats());
  sv::preprocess_into(c, o, slot);
  EXPECT_NEAR(slot[0], 1.0f, 1e-6);           // R of (0,0) = 900 = max
  EXPECT_NEAR(slot[64 + 1], 0.25f, 1e-6);     // G elsewhere = 300 -> (300-100)/800
  EXPECT_NEAR(slot[128 + 5], 0.0f, 1e-6);     // B = 100 = min

  const cv::Mat flat(10, 10, CV_16UC1, cv::Scalar(777));
  const auto f = sv::decode_image(encode(flat, ".tif"));
  EXPECT_EQ(cv::countNonZero(f.pixels), 0);  // no range: zeros, not NaN
}

TEST(Preprocess, ShrinksLikePillowAndNormalisesIntoTheSlot) {
  const cv::Mat img = pattern8(40, 30, 3);
  const auto d = sv::decode_image(encode(img, ".png"));
  sv::PreprocessOptions o{.input_height = 16, .input_width = 24};
  // The slot sits inside a larger buffer: nothing outside it may change.
  std::vector<float> buffer(o.slot_floats() + 10, -123.0f);
  sv::preprocess_into(d, o, std::span<float>(buffer.data() + 5, o.slot_floats()));
  EXPECT_EQ(buffer[4], -123.0f);
  EXPECT_EQ(buffer[5 + o.slot_floats()], -123.0f);
  // A shrink is Pillow's Lanczos (pil_resample_test.cpp checks it against Pillow itself).
  const cv::Mat ref = sv::pil_resize(img, cv::Size(24, 16), sv::PilFilter::lanczos);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 24; ++x)
      for (int c = 0; c < 3; ++c) {
        const double v = ref.at<cv::Vec3b>(y, x)[2 - c] / 255.0;  // RGB plane c = BGR channel 2-c
        const double want = (v - o.mean[c]) / o.std[c];
        EXPECT_NEAR(buffer[5 + c * 384 + y * 24 + x], want, 1e-5);
      }
  std::vector<float> small(10);
  EXPECT_THROW(sv::preprocess_into(d, o, small), sluice::Error);
}

// A constant image is one value per plane in the slot, whatever the resize: no border artefact
// enters from the preprocessing (see Postprocess.ConstantMapsGiveNoBorderPolygons).
TEST(Preprocess, ConstantImagesGiveConstantPlanes) {
  sv::PreprocessOptions o{.input_height = 128, .input_width = 128};
  std::vector<float> slot(o.slot_floats());
  for (const cv::Size size : {cv::Size(256, 256), cv::Size(300, 200), cv::Size(97, 61), cv::Size(128, 128)})
    for (const int v : {0, 40, 255}) {
      const auto d = sv::decode_image(encode(cv::Mat(size, CV_8UC3, cv::Scalar::all(v)), ".png"));
      sv::preprocess_into(d, o, slot);
      for (int c = 0; c < 3; ++c) {
        const float want = (v / 255.0f - o.mean[c]) / o.std[c];
        const auto plane = std::span<const float>(slot).subspan(static_cast<std::size_t>(c) * 128 * 128, 128 * 128);
        const auto [lo, hi] = std::minmax_element(plane.begin(), plane.end());
        EXPECT_NEAR(*lo, want, 1e-5) << size << " value " << v << " plane " << c;
        EXPECT_NEAR(*hi, want, 1e-5) << size << " value " << v << " plane " << c;
      }
    }
}

TEST(Decode, BadInputsGiveClearErrors) {
  EXPECT_NE(error_of({}).find("empty file"), std::string::npos);
  const std::string text = "this is not an image at all";
  EXPECT_NE(error_of(std::vector<std::uint8_t>(text.begin(), text.end())).find("not a decodable image"),
            std::string::npos);
  auto png = encode(pattern8(30, 30, 3), ".png");
  png.resize(png.size() / 2);  // truncated
  EXPECT_FALSE(error_of(png).empty());

  const auto tiny = encode(cv::Mat(1, 1, CV_8UC3, cv::Scalar(1, 2, 3)), ".png");
  EXPECT_NE(error_of(tiny).find("1 x 1"), std::string::npos);

  // Above the pixel limit, told by the header alone: a PNG that claims 20000 x 20000 but holds no
  // pixel data is refused for its size, not for its missing data.
  auto huge = encode(pattern8(10, 10, 1), ".png");
  const std::uint32_t side = 20000;
  for (int i = 0; i < 4; ++i) {
    huge[16 + i] = static_cast<std::uint8_t>(side >> (24 - 8 * i));
    huge[20 + i] = static_cast<std::uint8_t>(side >> (24 - 8 * i));
  }
  const std::string msg = error_of(huge);
  EXPECT_NE(msg.find("20000 x 20000"), std::string::npos) << msg;
  EXPECT_NE(msg.find("limit"), std::string::npos) << msg;

  // A configured limit applies to every format.
  for (const std::string ext : {".png", ".jpg", ".tif", ".bmp"})
    EXPECT_NE(error_of(encode(pattern8(64, 64, 3), ext), {.max_pixels = 1000}).find("limit"), std::string::npos)
        << ext;
}

TEST(Decode, ReadFileReportsMissingFiles) {
  EXPECT_THROW(sv::read_file_bytes("/nonexistent/sluice/image.png"), sluice::Error);
  EXPECT_THROW(sv::read_file_bytes("/"), sluice::Error);
}

TEST(Decode, ReadFileRefusesAFifoWithoutWaitingForAWriter) {
  const auto dir = std::filesystem::temp_directory_path() / ("sluice_fifo_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto fifo = dir / "image.png";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto reading = std::async(std::launch::async, [&] {
    try {
      sv::read_file_bytes(fifo);
    } catch (const sluice::Error& e) {
      return std::string(e.what());
    }
    return std::string("read without error");
  });
  if (reading.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "reading a FIFO blocked";
    std::ofstream writer(fifo);  // lets the blocked reader go
  }
  EXPECT_NE(reading.get().find("not a regular file"), std::string::npos);
  std::filesystem::remove_all(dir);
}
