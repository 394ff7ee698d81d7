// Replays the image fuzzer's seed corpus through the fuzz target in the ordinary test build (no
// libFuzzer needed), so the target keeps compiling and no seed input trips it; and checks that the
// seeds are what they are for: valid images that decode.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "sluice/vision/decode.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

TEST(ImageFuzzTarget, SeedCorpusReplaysAndDecodes) {
  const std::filesystem::path dir = std::filesystem::path(SLUICE_TEST_DATA_DIR) / ".." / "fuzz" / "corpus" / "image";
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    const std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::vector<std::uint8_t> bytes(chars.begin(), chars.end());
    EXPECT_EQ(LLVMFuzzerTestOneInput(bytes.data(), bytes.size()), 0) << e.path();
    EXPECT_NO_THROW(sluice::vision::decode_image(bytes, {.min_side = 1})) << e.path();
    ++files;
  }
  EXPECT_GE(files, 4);
}

}  // namespace
