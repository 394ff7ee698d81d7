// Which input sizes the networks run: exactly those where the PyTorch reference runs. Instance norm
// over a single value is undefined and PyTorch raises there, so sluice must refuse the same sizes
// (before any compute) instead of returning a plane of betas. The table is written by
// tools/reference/make_input_sizes.py from the reference networks.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/golden.hpp"
#include "sluice/backends/cpu/cpu_backend.hpp"
#include "sluice/weights/safetensors.hpp"
#include "sluice/models/registry.hpp"

namespace {

using sluice::Shape;
using sluice::cpu::CpuBackend;
using sluice::test::GoldenCase;
namespace weights = sluice::weights;
namespace models = sluice::models;

struct SizeCase {
  std::int64_t h, w;
  bool runs;  // the PyTorch reference runs at this size
};

nlohmann::json size_table() {
  std::ifstream in(std::filesystem::path(SLUICE_TEST_DATA_DIR) / "models" / "input_sizes.json");
  if (!in) throw std::runtime_error("tests/data/models/input_sizes.json is missing");
  return nlohmann::json::parse(in);
}

std::vector<SizeCase> sizes_of(const std::string& network) {
  const nlohmann::json table = size_table();
  std::vector<SizeCase> out;
  for (const auto& row : table.at(network))
    out.push_back({row[0].get<std::int64_t>(), row[1].get<std::int64_t>(), row[2].get<bool>()});
  return out;
}

class InputSize : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(InputSize, RefusesExactlyTheSizesThePyTorchReferenceRefuses) {
  const weights::TensorDict weights = weights::load_checkpoint(GetParam().weights);
  const std::string network = models::detect_network(weights);
  sluice::cpu::CpuOptions options;
  options.threads = 2;
  CpuBackend cpu(options);
  const auto net = models::load_network(network, cpu, weights);
  const auto sizes = sizes_of(network);
  ASSERT_FALSE(sizes.empty()) << network;

  // The smallest square the reference runs is the one the error names and min_input_size() gives.
  std::int64_t smallest = 0;
  for (const auto& s : sizes)
    if (s.h == s.w && s.runs && (smallest == 0 || s.h < smallest)) smallest = s.h;
  EXPECT_EQ(net.min_input_size(), smallest) << network;
  const std::string named = std::to_string(smallest) + "x" + std::to_string(smallest);

  for (const auto& s : sizes) {
    SCOPED_TRACE(network + " at " + std::to_string(s.h) + "x" + std::to_string(s.w));
    const Shape shape{1, 3, s.h, s.w};
    const std::vector<float> data(static_cast<std::size_t>(shape.numel()), 0.25f);
    try {
      const auto y = net.forward(cpu, cpu.upload(data, shape));
      EXPECT_TRUE(s.runs) << "PyTorch refuses this size; sluice ran it";
      EXPECT_EQ(cpu.shape_of(y), (Shape{1, 1, s.h, s.w}));
    } catch (const sluice::Error& e) {
      EXPECT_FALSE(s.runs) << "PyTorch runs this size; sluice refused it: " << e.what();
      EXPECT_EQ(e.code(), sluice::errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(named), std::string::npos) << e.what();
    }
  }
}

std::string case_name(const ::testing::TestParamInfo<GoldenCase>& info) { return info.param.stem; }

INSTANTIATE_TEST_SUITE_P(Networks, InputSize, ::testing::ValuesIn(sluice::test::golden_cases()), case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(InputSize);

}  // namespace
