// libFuzzer target: arbitrary bytes through the header inspector and the decoder. Either may
// refuse with sluice::Error(invalid_argument); anything else -- another exception, a crash, a
// decode that inspect_image had refused, or a decoded size that differs from the header's -- is a
// finding. The small budget keeps every accepted decode well inside the fuzzer's memory limit.
// Differential: whatever the libdeflate PNG path (png_fast_decode.hpp) decodes, OpenCV must decode
// to the same pixels -- it may decline a file, never disagree.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "sluice/core/error.hpp"
#include "sluice/vision/decode.hpp"
#include "sluice/vision/png_fast_decode.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sluice::vision::DecodeOptions options;
  options.max_decode_bytes = 64 << 20;
  options.max_pixels = 4'000'000;
  options.min_side = 1;
  const std::span<const std::uint8_t> bytes(data, size);

  std::optional<sluice::vision::ImageHeader> header;
  try {
    header = sluice::vision::inspect_image(bytes, options);
  } catch (const sluice::Error& e) {
    if (e.code() != sluice::errc::invalid_argument) __builtin_trap();
  }
  try {
    const auto image = sluice::vision::decode_image(bytes, options);
    if (!header) __builtin_trap();  // decoded what the inspector refused
    if (image.width() != header->upright_width() || image.height() != header->upright_height()) __builtin_trap();
  } catch (const sluice::Error& e) {
    if (e.code() != sluice::errc::invalid_argument) __builtin_trap();
  }
  if (const cv::Mat fast = sluice::vision::decode_png_fast(bytes, 64 << 20); !fast.empty()) {
    const cv::Mat buffer(1, static_cast<int>(size), CV_8UC1, const_cast<std::uint8_t*>(data));
    const cv::Mat reference = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
    if (reference.size() != fast.size() || reference.type() != fast.type() || cv::norm(reference, fast, cv::NORM_INF) != 0)
      __builtin_trap();
  }
  return 0;
}
