// Helpers shared by the server tests over BrightnessService (brightness_service.hpp): a dark image
// with a bright disc, which that model segments as the disc, and an image's PNG bytes as a client sends them.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace sluice::serve::testing {

/// A dark image (BGR, as OpenCV holds it) with a bright disc, tinted so that a channel swap shows.
inline cv::Mat disc_image(cv::Size size, cv::Point c, int r) {
  cv::Mat m(size, CV_8UC3, cv::Scalar(10, 30, 50));
  cv::circle(m, c, r, cv::Scalar(200, 230, 250), cv::FILLED);
  return m;
}

inline std::string png_of(const cv::Mat& bgr) {
  std::vector<uchar> out;
  EXPECT_TRUE(cv::imencode(".png", bgr, out));
  return std::string(out.begin(), out.end());
}

}  // namespace sluice::serve::testing
