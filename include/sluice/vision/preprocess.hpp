// sluice/vision/preprocess.hpp: decoded pixels -> one normalised 3 x H x W float slot of the batch
// tensor: resize to the model's input size (no aspect preservation, no padding), RGB order, [0, 1],
// then (x - mean) / std per channel, written straight into the caller's buffer.
//
// The resize: an 8-bit image at least as large as the input in both directions shrinks as the
// spheroid service shrinks it -- Pillow's Image.resize(size, LANCZOS), anti-aliased
// (backend/segmentation/ml/model_loader.py, `preprocess_image`; pil_resample.hpp), or with
// `shrink_filter` = bilinear Pillow's BILINEAR. Any other case (an enlargement, a mixed one, float
// pixels) is OpenCV's bilinear (cv::INTER_LINEAR), as before.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "sluice/core/error.hpp"
#include "sluice/vision/decode.hpp"
#include "sluice/vision/pil_resample.hpp"

namespace sluice::vision {

struct PreprocessOptions {
  int input_height = 1024;
  int input_width = 1024;
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};  ///< ImageNet, RGB order
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
  /// Pillow's filter for shrinking 8-bit images (the service's model_loader.py uses LANCZOS).
  PilFilter shrink_filter = PilFilter::lanczos;

  std::size_t slot_floats() const { return 3 * static_cast<std::size_t>(input_height) * input_width; }

  void validate() const {
    if (input_height <= 0 || input_width <= 0)
      throw Error(errc::invalid_argument, "model input size must be positive, got " +
                                              std::to_string(input_height) + " x " + std::to_string(input_width));
    for (float s : std)
      if (!(s > 0.0f)) throw Error(errc::invalid_argument, "normalisation std must be positive");
  }
};

namespace detail {

/// One row of native-order pixels -> the three RGB planes of the slot. `Src` is uint8 or float.
template <class Src, int Channels>
void normalise_row(const Src* src, int width, const std::array<float, 3>& a, const std::array<float, 3>& b,
                   float* r, float* g, float* bl) {
  for (int x = 0; x < width; ++x) {
    const Src* p = src + static_cast<std::ptrdiff_t>(x) * Channels;
    if constexpr (Channels == 1) {
      const float v = static_cast<float>(p[0]);
      r[x] = v * a[0] + b[0];
      g[x] = v * a[1] + b[1];
      bl[x] = v * a[2] + b[2];
    } else {  // BGR or BGRA: OpenCV's order; the networks take RGB
      r[x] = static_cast<float>(p[2]) * a[0] + b[0];
      g[x] = static_cast<float>(p[1]) * a[1] + b[1];
      bl[x] = static_cast<float>(p[0]) * a[2] + b[2];
    }
  }
}

template <class Src>
void normalise_into(const cv::Mat& img, float scale, const PreprocessOptions& o, std::span<float> slot) {
  // out = (v * scale - mean) / std = v * a + b, folded once per channel.
  std::array<float, 3> a{}, b{};
  for (int c = 0; c < 3; ++c) {
    a[c] = scale / o.std[c];
    b[c] = -o.mean[c] / o.std[c];
  }
  const std::size_t plane = static_cast<std::size_t>(img.rows) * img.cols;
  float* r = slot.data();
  float* g = r + plane;
  float* bl = g + plane;
  for (int y = 0; y < img.rows; ++y) {
    const Src* row = img.ptr<Src>(y);
    const std::size_t off = static_cast<std::size_t>(y) * img.cols;
    switch (img.channels()) {
      case 1: normalise_row<Src, 1>(row, img.cols, a, b, r + off, g + off, bl + off); break;
      case 3: normalise_row<Src, 3>(row, img.cols, a, b, r + off, g + off, bl + off); break;
      default: normalise_row<Src, 4>(row, img.cols, a, b, r + off, g + off, bl + off); break;
    }
  }
}

}  // namespace detail

/// `image` at the network's input size, resized exactly as preprocess_into resizes it: a server can
/// resize right after decoding (and free the full-size pixels) and normalise later, bit for bit the
/// same. An image already at that size is shared, not copied.
inline DecodedImage resize_to_input(const DecodedImage& image, const PreprocessOptions& options) {
  const cv::Size target(options.input_width, options.input_height);
  if (image.pixels.size() == target) return image;
  DecodedImage out = image;
  const bool shrinks = target.width <= image.pixels.cols && target.height <= image.pixels.rows;
  if (shrinks && image.pixels.depth() == CV_8U) {
    // Without anti-aliasing a shrink samples a few source pixels per output pixel: up to 18 grey
    // levels away from the service's input on large frames.
    out.pixels = pil_resize(image.pixels, target, options.shrink_filter);
    return out;
  }
  // Bilinear on the native type (uint8 stays uint8, as the reference pipeline resized 8-bit images).
  cv::resize(image.pixels, out.pixels, target, 0.0, 0.0, cv::INTER_LINEAR);
  return out;
}

/// Resizes and normalises `image` into `slot` (exactly options.slot_floats() floats, planes R, G, B).
inline void preprocess_into(const DecodedImage& image, const PreprocessOptions& options, std::span<float> slot) {
  if (slot.size() != options.slot_floats())
    throw Error(errc::invalid_argument, "preprocess slot holds " + std::to_string(slot.size()) + " floats, expected " +
                                            std::to_string(options.slot_floats()));
  const cv::Mat resized = resize_to_input(image, options).pixels;
  if (resized.depth() == CV_8U) {
    detail::normalise_into<std::uint8_t>(resized, image.scale, options, slot);
  } else if (resized.depth() == CV_32F) {
    detail::normalise_into<float>(resized, image.scale, options, slot);
  } else {
    throw Error(errc::invalid_argument, "preprocess expects 8-bit or float pixels");
  }
}

}  // namespace sluice::vision
