// libFuzzer target of the HTTP server's parsers: the first line of the input is a Content-Type
// header value, the rest a multipart/form-data body. Bad input must end in sluice::Error, never in
// a crash, a hang or a read out of range (ASan/UBSan); parsed parts must lie inside the body. The
// query-string parser gets the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sluice/core/error.hpp"
#include "sluice/serve/multipart.hpp"
#include "sluice/serve/query.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t nl = input.find('\n');
  const std::string_view content_type = input.substr(0, nl);
  const std::string_view body = nl == std::string_view::npos ? std::string_view{} : input.substr(nl + 1);

  sluice::serve::MultipartLimits limits;
  limits.max_parts = 64;
  limits.max_header_bytes = 512;
  try {
    const std::string boundary = sluice::serve::multipart_boundary(content_type);
    const auto parts = sluice::serve::parse_multipart(body, boundary, limits);
    if (parts.empty() || parts.size() > limits.max_parts) std::abort();
    for (const auto& p : parts) {
      if (p.content.data() < body.data() || p.content.data() + p.content.size() > body.data() + body.size())
        std::abort();
      if (p.content.find("\r\n--" + boundary) != std::string_view::npos) std::abort();
    }
  } catch (const sluice::Error&) {
  }
  try {
    (void)sluice::serve::parse_target(input);
  } catch (const sluice::Error&) {
  }
  return 0;
}
