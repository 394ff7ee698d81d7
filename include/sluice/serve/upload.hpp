// sluice/serve/upload.hpp: what a segmentation request uploads -- its options and its images, read
// from multipart/form-data or from a raw image/* body (options then in the query string) -- and the
// checks one image must pass before it is queued (name, emptiness, pixels in its header). Files are
// views into the request's body; every client string is made valid UTF-8 and clipped.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http.hpp>

#include "sluice/core/error.hpp"
#include "sluice/core/utf8.hpp"
#include "sluice/serve/api_error.hpp"
#include "sluice/serve/header_params.hpp"
#include "sluice/serve/multipart.hpp"
#include "sluice/serve/query.hpp"
#include "sluice/serve/segment_options.hpp"
#include "sluice/vision/image_header.hpp"

namespace sluice::serve {

/// The parsed request: options and the images (views into the request's body).
struct Upload {
  SegmentOptions options;
  std::vector<std::pair<std::string, std::string_view>> files;  ///< filename (valid UTF-8), bytes
};

/// The image formats the service accepts, by file name.
inline bool allowed_extension(const std::string& filename) {
  const std::size_t dot = filename.rfind('.');
  if (dot == std::string::npos) return false;
  const std::string ext = detail::to_lower(std::string_view(filename).substr(dot));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".tif" || ext == ".tiff" || ext == ".bmp";
}

/// Reads options and files from multipart/form-data (file field `file_field`) or from a raw
/// image/* body with options in the query string. `body` is the request's body, wherever it is held.
/// Throws ApiError (400 or 415) for what the client got wrong.
template <class Fields>
Upload read_upload(const boost::beast::http::header<true, Fields>& req, std::string_view body, const Target& target,
                   std::string_view file_field, const MultipartLimits& limits) {
  namespace http = boost::beast::http;
  Upload up;
  for (const auto& [k, v] : target.query)
    if (k != "filename" && !apply_option(up.options, k, v))
      throw ApiError::bad_request("unknown query parameter '" + clip_utf8(k, 64) + "'");
  const auto ct_it = req.find(http::field::content_type);
  if (ct_it == req.end())
    throw ApiError{415, "unsupported_media_type", "missing Content-Type: send multipart/form-data or image/*",
                   std::nullopt};
  const std::string_view content_type = ct_it->value();
  HeaderValue ct;
  try {
    ct = parse_header_value(content_type, true);
  } catch (const Error& e) {
    throw ApiError::bad_request("bad Content-Type: " + message_of(e));
  }
  if (ct.value.rfind("image/", 0) == 0) {
    std::string name = "upload";
    for (const auto& [k, v] : target.query)
      if (k == "filename") name = clip_utf8(v, 255);
    up.files.emplace_back(name, body);
    return up;
  }
  if (ct.value != "multipart/form-data")
    throw ApiError{415, "unsupported_media_type",
                   "Content-Type must be multipart/form-data or image/*, got " + ct.value, std::nullopt};
  const std::string boundary = multipart_boundary(content_type);
  const auto parts = parse_multipart(body, boundary, limits);
  for (const auto& part : parts) {
    if (part.name == file_field) {
      if (!part.filename)
        throw ApiError::bad_request("field '" + clip_utf8(part.name, 64) + "' must be a file upload (with a filename)");
      up.files.emplace_back(clip_utf8(*part.filename, 255), part.content);
    } else if (!apply_option(up.options, part.name, part.content)) {
      throw ApiError::bad_request("unknown field '" + clip_utf8(part.name, 64) + "'");
    }
  }
  return up;
}

/// Why one image cannot be queued (name, emptiness, size in its header), or nullopt when it can.
inline std::optional<ApiError> image_problem(const std::string& filename, std::string_view bytes, bool check_name,
                                             std::uint64_t max_pixels) {
  if (check_name && !allowed_extension(filename))
    return ApiError::bad_request("file '" + filename + "' must end in .jpg, .jpeg, .png, .tif, .tiff or .bmp");
  if (bytes.empty()) return ApiError::bad_request("file '" + filename + "' is empty");
  const std::span<const std::uint8_t> data(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  if (const auto e = vision::peek_image_extent(data);
      e && static_cast<std::uint64_t>(e->width) * static_cast<std::uint64_t>(e->height) > max_pixels)
    return ApiError{413, "image_too_large",
                    "image '" + filename + "' has " + std::to_string(e->width) + " x " + std::to_string(e->height) +
                        " pixels, more than the limit of " + std::to_string(max_pixels),
                    std::nullopt};
  return std::nullopt;
}

}  // namespace sluice::serve
