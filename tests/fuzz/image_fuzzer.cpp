// libFuzzer target: arbitrary bytes through the header inspector and the decoder. Either may
// refuse with sluice::Error(invalid_argument); anything else -- another exception, a crash, a
// decode that inspect_image had refused, or a decoded size that differs from the header's -- is a
// finding. The small budget keeps every accepted decode well inside the fuzzer's memory limit.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "sluice/core/error.hpp"
#include "sluice/vision/decode.hpp"

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
  return 0;
}
