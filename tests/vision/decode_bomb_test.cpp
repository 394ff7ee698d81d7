// Decompression bombs: small files that decode to far more memory than they take. Each must be
// refused from its header, before anything is decoded: each decode runs in a forked child whose
// peak resident memory is measured, so a bomb that got decoded shows as growth.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "support/image_test_support.hpp"
#include "sluice/vision/decode.hpp"

namespace sv = sluice::vision;

namespace {

using sluice::vision::testing::bytes_of;
using sluice::vision::testing::encode;

void put_le(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v, int n) {
  for (int i = 0; i < n; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
}

/// The peak resident memory of this process (VmHWM), in KiB.
long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

/// Decodes in a forked child; returns the growth of its peak resident memory in MiB (capped at
/// 250), or -1 when it could not be measured. The child's outcome (refused or decoded) does not
/// matter here: what it cost does.
int decode_growth_mib(const std::vector<std::uint8_t>& bytes, const sv::DecodeOptions& options) {
  const pid_t pid = fork();
  if (pid == 0) {
    // Reset the peak to the current resident set so only the decode's growth counts.
    if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
      std::fputs("5", f);
      std::fclose(f);
    }
    const long before = peak_rss_kib();
    try {
      (void)sv::decode_image(bytes, options);
    } catch (const std::exception&) {
    }
    const long after = peak_rss_kib();
    if (before < 0 || after < 0) _exit(255);
    _exit(static_cast<int>(std::min<long>(250, (after - before) / 1024)));
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  const int code = WEXITSTATUS(status);
  return code == 255 ? -1 : code;
}

/// A small budget, so that each bomb stays cheap for the test machine even if it were decoded.
sv::DecodeOptions small_budget() {
  sv::DecodeOptions o;
  o.max_decode_bytes = 16 << 20;
  return o;
}

struct Bomb {
  std::string name;
  std::vector<std::uint8_t> bytes;
};

std::vector<Bomb> bombs() {
  std::vector<Bomb> out;
  // 16-bit RGBA compresses to almost nothing when flat; decoded: 32 MiB, plus 64 MiB as float.
  out.push_back({"png 16-bit RGBA 2048^2", encode(cv::Mat(2048, 2048, CV_16UC4, cv::Scalar::all(7)), ".png")});
  out.push_back({"tiff 16-bit RGBA 2048^2", encode(cv::Mat(2048, 2048, CV_16UC4, cv::Scalar::all(7)), ".tif")});
  // Progressive: the whole image's coefficients on top of the pixels.
  out.push_back({"progressive jpeg 3000^2",
                 encode(cv::Mat(3000, 3000, CV_8UC3, cv::Scalar::all(90)), ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1})});
  {
    // Junk before the frame header: a header walk loses sync; libjpeg skips the junk and decodes
    // a frame that claims 4000 x 4000 from a few hundred bytes.
    auto jpg = encode(cv::Mat(16, 16, CV_8UC3, cv::Scalar::all(50)), ".jpg");
    std::size_t sof = 2;
    while (sof + 4 < jpg.size() && !(jpg[sof] == 0xFF && jpg[sof + 1] == 0xC0)) ++sof;
    jpg[sof + 5] = 4000 >> 8, jpg[sof + 6] = 4000 & 255, jpg[sof + 7] = 4000 >> 8, jpg[sof + 8] = 4000 & 255;
    jpg.insert(jpg.begin() + static_cast<std::ptrdiff_t>(sof), {0x00, 0x13, 0x37});
    out.push_back({"jpeg with junk before SOF", jpg});
  }
  {
    // RLE8 BMP: an end-of-bitmap code right away; the decoder fills 4000 x 4000 x 3 bytes.
    std::vector<std::uint8_t> bmp(14 + 40 + 256 * 4, 0);
    bmp[0] = 'B', bmp[1] = 'M';
    put_le(bmp, 10, static_cast<std::uint32_t>(bmp.size()), 4);
    put_le(bmp, 14, 40, 4);
    put_le(bmp, 18, 4000, 4);
    put_le(bmp, 22, 4000, 4);
    put_le(bmp, 26, 1, 2);
    put_le(bmp, 28, 8, 2);
    put_le(bmp, 30, 1, 4);  // BI_RLE8
    for (int i = 0; i < 256; ++i) bmp[54 + 4 * i + 1] = static_cast<std::uint8_t>(i);  // green ramp
    for (std::uint8_t c : {0x00, 0x00, 0x00, 0x01}) bmp.push_back(c);                  // end of line, of bitmap
    put_le(bmp, 2, static_cast<std::uint32_t>(bmp.size()), 4);
    out.push_back({"rle8 bmp 4000^2", bmp});
  }
  {
    // Formats whose header the pipeline does not read: refused whatever they hold.
    std::vector<std::uint8_t> pbm = bytes_of("P4\n8192 8192\n");
    pbm.resize(pbm.size() + 8192 / 8 * 8192, 0x55);
    out.push_back({"pbm 8192^2", pbm});
  }
  return out;
}

}  // namespace

TEST(DecodeBomb, EveryBombIsRefusedBeforeItIsDecoded) {
  // The same measurement must see a decode that does happen: an image under the budget.
  const auto fine = encode(cv::Mat(2048, 2048, CV_8UC3, cv::Scalar::all(3)), ".png");  // 12 MiB decoded
  const int fine_growth = decode_growth_mib(fine, small_budget());
  ASSERT_GE(fine_growth, 0) << "peak memory could not be measured";
  EXPECT_GE(fine_growth, 10) << "the measurement does not see a decode";

  // Measured first: a decode in this process would leave freed heap pages that hide the next one.
  const auto all = bombs();
  for (const auto& bomb : all) {
    const int growth = decode_growth_mib(bomb.bytes, small_budget());
    EXPECT_GE(growth, 0) << bomb.name;
    EXPECT_LT(growth, 4) << bomb.name << " grew the peak resident memory by " << growth << " MiB";
  }
  for (const auto& bomb : all) {
    try {
      (void)sv::decode_image(bomb.bytes, small_budget());
      ADD_FAILURE() << bomb.name << " was decoded";
    } catch (const sluice::Error& e) {
      EXPECT_EQ(e.code(), sluice::errc::invalid_argument) << bomb.name;
    }
  }
}
