// Replays the safetensors fuzzer's seed corpus through the fuzz target in the ordinary test build
// (no libFuzzer needed), so the target keeps compiling and no seed input crashes it.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

TEST(SafetensorsFuzzTarget, SeedCorpusReplays) {
  const std::filesystem::path dir = std::filesystem::path(SLUICE_TEST_DATA_DIR) / ".." / "fuzz" / "corpus" / "safetensors";
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), 0)
        << e.path();
    ++files;
  }
  EXPECT_GE(files, 5);
}

}  // namespace
