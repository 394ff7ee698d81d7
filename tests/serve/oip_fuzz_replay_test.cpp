// Replays the whole-request HTTP fuzzer's seed corpus (tests/fuzz/corpus/http_request, /v2 requests
// included) through the fuzz target in the ordinary test build: each seed must be answered exactly
// once with a well-formed answer (the target aborts otherwise).
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

TEST(HttpFuzzCorpus, EverySeedIsAnswered) {
  const std::filesystem::path dir = std::filesystem::path(SLUICE_TEST_DATA_DIR) / ".." / "fuzz" / "corpus" / "http_request";
  std::size_t seeds = 0, v2 = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), 0) << entry.path();
    ++seeds;
    if (entry.path().filename().string().starts_with("v2_")) ++v2;
  }
  EXPECT_GE(seeds, 7u);
  EXPECT_GE(v2, 3u);
}
