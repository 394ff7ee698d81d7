// Helpers shared by the image tests: encoding, byte buffers, a deterministic test pattern, and the
// message of an expected invalid_argument refusal.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "sluice/core/error.hpp"
#include "sluice/vision/decode.hpp"

namespace sluice::vision::testing {

inline std::vector<std::uint8_t> encode(const cv::Mat& img, const std::string& ext, std::vector<int> params = {}) {
  std::vector<std::uint8_t> out;
  EXPECT_TRUE(cv::imencode(ext, img, out, params)) << ext;
  return out;
}

inline std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

/// A deterministic 8- or 16-bit image with distinct values per channel and position.
inline cv::Mat pattern(int rows, int cols, int type) {
  cv::Mat m(rows, cols, type);
  const int cn = m.channels();
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x)
      for (int c = 0; c < cn; ++c) {
        const int v = (x * 7 + y * 13 + c * 61) % 256;
        if (m.depth() == CV_16U) m.ptr<std::uint16_t>(y)[x * cn + c] = static_cast<std::uint16_t>(v * 257 + c);
        else m.ptr<std::uint8_t>(y)[x * cn + c] = static_cast<std::uint8_t>(v);
      }
  return m;
}

/// The message with which `step` (inspect_image or decode_image) refuses `bytes`; "" when it does not.
template <class Step>
std::string refusal(Step step, std::span<const std::uint8_t> bytes, const DecodeOptions& o = {}) {
  try {
    step(bytes, o);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), errc::invalid_argument);
    return e.what();
  }
  return "";
}

}  // namespace sluice::vision::testing
