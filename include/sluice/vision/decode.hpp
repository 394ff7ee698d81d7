// sluice/vision/decode.hpp: image bytes -> pixels. PNG, JPEG, TIFF (8 and 16 bit) and BMP through
// OpenCV, with the checks that turn bad input into a clear per-image error: empty, not one of those
// formats, an unreadable header, too small, above the pixel limit or the decode budget -- all from
// the header, before decoding. The EXIF orientation is applied, as viewers do. A JPEG larger than
// the caller needs is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg scale-on-decode), which
// costs a fraction of the memory; other formats have no such decode and are decoded whole.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "sluice/core/error.hpp"
#include "sluice/weights/safetensors_mapped_file.hpp"
#include "sluice/vision/image_header.hpp"
#include "sluice/vision/png_fast_decode.hpp"

namespace sluice::vision {

/// How 16-bit images become [0, 1]. The spec says "scaled to [0, 1] by its range"; sluice reads that
/// as the image's own range (min -> 0, max -> 1: microscopy cameras rarely fill 16 bits), and offers
/// the type's full range (/ 65535) as the alternative.
enum class Uint16Scaling { min_max, full_range };

struct DecodeOptions {
  std::int64_t max_pixels = 200'000'000;  ///< width x height above this is refused
  std::int64_t min_side = 8;              ///< a side below this is refused (a 1x1 image is no image)
  /// The most bytes one decode may allocate (ImageHeader::decode_bytes: pixels, JPEG coefficient
  /// and TIFF strip buffers, the turned copy, the float copy of 16-bit images), at the reduction
  /// chosen. 1 GiB lets 8-bit RGB images up to about 350 M pixels through at full size (a reduced
  /// JPEG far more; a progressive one keeps full-size coefficients, 3 bytes a pixel at 4:4:4) and
  /// bounds 16-bit colour, which costs 2 + 4 bytes per sample (RGB up to about 59 M pixels, RGBA 44 M).
  std::int64_t max_decode_bytes = std::int64_t{1} << 30;
  Uint16Scaling uint16_scaling = Uint16Scaling::min_max;
  /// The smallest upright size the caller needs (a network's input): a JPEG at least twice as large
  /// in both directions is decoded reduced, by the largest of 2, 4, 8 that keeps it at least this
  /// size. {0, 0}: always at full size.
  cv::Size min_output{0, 0};
  /// Decode 8-bit grey, RGB and RGBA PNGs (not interlaced, no tRNS) with libdeflate and sluice's
  /// own row filters (png_fast_decode.hpp): the same pixels, in about half the time. Every other
  /// PNG, and any that path finds damaged, goes to OpenCV as with false.
  bool fast_png = true;
};

/// Decoded pixels in their native channel order, ready for the preprocessor:
///  - 8-bit: CV_8UC1 (gray), CV_8UC3 (BGR) or CV_8UC4 (BGRA; alpha is ignored), values / 255 = [0, 1];
///  - 16-bit: CV_32FC1/3/4 already scaled to [0, 1].
/// Keeping gray as one channel until the normalisation writes it three times saves a copy.
struct DecodedImage {
  cv::Mat pixels;
  float scale = 1.0f;  ///< multiplies a pixel value to give [0, 1]
  int source_depth = CV_8U;
  /// The upright size of the encoded image; larger than pixels' when it was decoded reduced.
  cv::Size original{0, 0};

  int width() const { return pixels.cols; }
  int height() const { return pixels.rows; }
  cv::Size size() const { return pixels.size(); }
};

namespace detail {

inline void check_extent(std::int64_t width, std::int64_t height, const DecodeOptions& options) {
  if (width <= 0 || height <= 0)
    throw Error(errc::invalid_argument, "image declares an empty size " + std::to_string(width) + " x " +
                                            std::to_string(height));
  if (width * height > options.max_pixels)
    throw Error(errc::invalid_argument, "image is " + std::to_string(width) + " x " + std::to_string(height) +
                                            " = " + std::to_string(width * height) +
                                            " pixels, above the limit of " + std::to_string(options.max_pixels));
  if (width < options.min_side || height < options.min_side)
    throw Error(errc::invalid_argument, "image is " + std::to_string(width) + " x " + std::to_string(height) +
                                            ", smaller than the minimum side of " +
                                            std::to_string(options.min_side) + " px");
}

/// Turns stored pixels upright by the EXIF orientation (1..8), as viewers show them.
inline cv::Mat apply_orientation(cv::Mat m, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2: cv::flip(m, out, 1); break;                                 // mirrored left-right
    case 3: cv::rotate(m, out, cv::ROTATE_180); break;
    case 4: cv::flip(m, out, 0); break;                                 // mirrored top-bottom
    case 5: cv::transpose(m, out); break;                               // mirrored along the main diagonal
    case 6: cv::rotate(m, out, cv::ROTATE_90_CLOCKWISE); break;
    case 7: cv::transpose(m, out); cv::rotate(out, out, cv::ROTATE_180); break;  // along the other diagonal
    case 8: cv::rotate(m, out, cv::ROTATE_90_COUNTERCLOCKWISE); break;
    default: return m;
  }
  return out;
}

}  // namespace detail

/// The JPEG scale-on-decode for `h` under `options` (1, 2, 4 or 8): the largest that keeps the
/// upright decoded size at least options.min_output. Other formats: 1 (OpenCV decodes them whole
/// and resizes after, which saves nothing).
inline int decode_reduction(const ImageHeader& h, const DecodeOptions& options) {
  if (h.format != ImageFormat::jpeg || options.min_output.width <= 0 || options.min_output.height <= 0) return 1;
  int best = 1;
  for (const int r : {2, 4, 8}) {
    const std::int64_t w = reduced_side(h.width, r), ht = reduced_side(h.height, r);
    const std::int64_t upright_w = h.transposed() ? ht : w, upright_h = h.transposed() ? w : ht;
    if (upright_w >= options.min_output.width && upright_h >= options.min_output.height) best = r;
  }
  return best;
}

/// Everything decode_image would refuse from the header, checked without decoding: the format
/// (PNG, JPEG, TIFF or BMP), a readable header, the size after the orientation (min_side,
/// max_pixels) and the decode cost (max_decode_bytes) at the reduction decode_image will use
/// (ImageHeader::reduction, decode_bytes). Returns the header; throws
/// sluice::Error(errc::invalid_argument) with the reason otherwise. Cheap: call it before queueing.
inline ImageHeader inspect_image(std::span<const std::uint8_t> bytes, const DecodeOptions& options = {}) {
  if (bytes.empty()) throw Error(errc::invalid_argument, "empty file");
  ImageHeader h = read_image_header(bytes);
  detail::check_extent(h.upright_width(), h.upright_height(), options);
  if (h.format == ImageFormat::png) detail::check_png_chunks_fit(bytes);
  h.reduction = decode_reduction(h, options);
  h.decode_bytes = decode_cost(h, h.reduction);
  if (h.decode_bytes > options.max_decode_bytes)
    throw Error(errc::invalid_argument,
                std::string(format_name(h.format)) + " image " + std::to_string(h.width) + " x " +
                    std::to_string(h.height) + " with " + std::to_string(h.channels) + " channel(s) of " +
                    std::to_string(h.decoded_depth) + " bits" + (h.progressive ? ", progressive," : "") +
                    (h.reduction > 1 ? " decoded at 1/" + std::to_string(h.reduction) + "," : std::string()) +
                    " would take " + std::to_string(h.decode_bytes) + " bytes to decode, above the budget of " +
                    std::to_string(options.max_decode_bytes) + " bytes");
  return h;
}

/// Decodes one image, upright. Throws sluice::Error(errc::invalid_argument) with the reason on any
/// bad input; nothing is decoded that inspect_image refuses.
inline DecodedImage decode_image(std::span<const std::uint8_t> bytes, const DecodeOptions& options = {}) {
  const ImageHeader header = inspect_image(bytes, options);

  cv::Mat raw;
  if (options.fast_png && header.format == ImageFormat::png)
    raw = decode_png_fast(bytes, static_cast<std::size_t>(options.max_decode_bytes));
  if (raw.empty()) try {
    // imdecode takes a non-const Mat header but only reads it. IMREAD_UNCHANGED keeps the depth
    // and channels and ignores the JPEG's EXIF orientation, applied below; OpenCV's TIFF reader
    // applies the TIFF Orientation tag itself. A reduced decode is colour or grey (as the JPEG is),
    // always 8-bit; IMREAD_IGNORE_ORIENTATION keeps OpenCV from turning it, as UNCHANGED does.
    const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<std::uint8_t*>(bytes.data()));
    int flags = cv::IMREAD_UNCHANGED;
    if (header.reduction > 1) {
      const bool gray = header.channels == 1;
      switch (header.reduction) {
        case 2: flags = gray ? cv::IMREAD_REDUCED_GRAYSCALE_2 : cv::IMREAD_REDUCED_COLOR_2; break;
        case 4: flags = gray ? cv::IMREAD_REDUCED_GRAYSCALE_4 : cv::IMREAD_REDUCED_COLOR_4; break;
        default: flags = gray ? cv::IMREAD_REDUCED_GRAYSCALE_8 : cv::IMREAD_REDUCED_COLOR_8; break;
      }
      flags |= cv::IMREAD_IGNORE_ORIENTATION;
    }
    raw = cv::imdecode(buffer, flags);
  } catch (const cv::Exception& e) {
    throw Error(errc::invalid_argument, std::string("cannot decode image: ") + e.what());
  }
  if (raw.empty())
    throw Error(errc::invalid_argument, std::string("not a decodable image: the ") + format_name(header.format) +
                                            " data is corrupt or truncated");
  if (header.format == ImageFormat::jpeg) raw = detail::apply_orientation(std::move(raw), header.orientation);
  // What was decoded must be what the header promised, or the cost checked was not the cost paid.
  const std::int64_t w = reduced_side(header.width, header.reduction), h = reduced_side(header.height, header.reduction);
  if (raw.cols != (header.transposed() ? h : w) || raw.rows != (header.transposed() ? w : h) || raw.channels() > header.channels ||
      static_cast<int>(raw.elemSize1()) * 8 > header.decoded_depth)
    throw Error(errc::invalid_argument, "decoded image (" + std::to_string(raw.cols) + " x " + std::to_string(raw.rows) +
                                            ", " + std::to_string(raw.channels()) + " channels) differs from its header");
  const int channels = raw.channels();
  if (channels != 1 && channels != 3 && channels != 4)
    throw Error(errc::invalid_argument, "image has " + std::to_string(channels) + " channels; 1, 3 or 4 expected");

  DecodedImage out;
  out.original = cv::Size(static_cast<int>(header.upright_width()), static_cast<int>(header.upright_height()));
  out.source_depth = raw.depth();
  if (raw.depth() == CV_8U) {
    out.pixels = std::move(raw);
    out.scale = 1.0f / 255.0f;
  } else if (raw.depth() == CV_16U) {
    double lo = 0.0, hi = 65535.0;
    if (options.uint16_scaling == Uint16Scaling::min_max) {
      // minMaxLoc wants one channel: view all channels as one long row.
      cv::minMaxLoc(raw.reshape(1, 1), &lo, &hi);
    }
    const double range = hi - lo;
    // A constant image has no range: it maps to 0 rather than dividing by zero.
    const double alpha = range > 0 ? 1.0 / range : 0.0;
    raw.convertTo(out.pixels, CV_MAKETYPE(CV_32F, channels), alpha, -lo * alpha);
    out.scale = 1.0f;
  } else {
    throw Error(errc::invalid_argument, "unsupported pixel depth (8-bit or 16-bit unsigned expected)");
  }
  return out;
}

/// Reads a whole file. Throws sluice::Error(errc::invalid_argument) when it cannot, and for anything
/// but a regular file (a FIFO would block the reader forever; a directory or device is no image).
inline std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path) {
  const weights::MappedFile file(path);
  const auto b = file.bytes();
  const auto* first = reinterpret_cast<const std::uint8_t*>(b.data());
  return std::vector<std::uint8_t>(first, first + b.size());
}

}  // namespace sluice::vision
