// tests/support/golden.hpp: the PyTorch golden files of tests/data/goldens (written by
// tools/reference) and the helpers the network tests share: run a network on host data, compare.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "sluice/weights/safetensors.hpp"
#include "sluice/models/registry.hpp"

namespace sluice::test {

/// tests/data/goldens, or the folder named by SLUICE_GOLDEN_DIR (to try freshly written goldens).
inline std::filesystem::path golden_dir() {
  if (const char* dir = std::getenv("SLUICE_GOLDEN_DIR"); dir && *dir) return dir;
  return std::filesystem::path(SLUICE_TEST_DATA_DIR) / "goldens";
}

/// One golden case: <stem>.safetensors (weights) and <stem>_io.safetensors (input, output,
/// input_odd, output_odd; the configuration in the metadata).
struct GoldenCase {
  std::string stem;
  std::filesystem::path weights, io;
};

/// GoogleTest prints a case by its stem.
inline void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.stem; }

inline std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> cases;
  if (!std::filesystem::is_directory(golden_dir())) return cases;
  for (const auto& entry : std::filesystem::directory_iterator(golden_dir())) {
    const std::string name = entry.path().filename().string();
    const std::string suffix = "_io.safetensors";
    if (name.size() <= suffix.size() || name.substr(name.size() - suffix.size()) != suffix) continue;
    const std::string stem = name.substr(0, name.size() - suffix.size());
    const auto weights = golden_dir() / (stem + ".safetensors");
    if (std::filesystem::exists(weights)) cases.push_back({stem, weights, entry.path()});
  }
  std::sort(cases.begin(), cases.end(), [](const auto& a, const auto& b) { return a.stem < b.stem; });
  return cases;
}

inline Shape shape4(const weights::HostTensor& t) {
  return t.shape.size() == 4 ? Shape{t.shape[0], t.shape[1], t.shape[2], t.shape[3]} : Shape{};
}

/// The relative L2 error a forward in `precision` ("fp32", "tf32", "fp16", "bf16") may show
/// against the golden `output` ("output" or "output_odd"): twice the error of PyTorch's own forward
/// in that arithmetic against the same float64 golden, and never below 1e-4 (the float32 bound of
/// tests/data/goldens/README.md). Two
/// roundings of the same kind differ from each other by about sqrt(2) times either's error.
/// make_goldens.py records PyTorch's errors in the metadata: torch_fp32_rel_l2 (its float32
/// forward) and torch_rounded_rel_l2 (float32 with tf32, fp16 or bf16 rounding emulated).
inline double golden_tolerance(const weights::SafetensorsData& golden, const std::string& output,
                               const std::string& precision = "fp32") {
  constexpr double kFloor = 1e-4;
  const std::string key = precision == "fp32" ? "torch_fp32_rel_l2" : "torch_rounded_rel_l2";
  const auto it = golden.metadata.find(key);
  nlohmann::json errors;
  if (it != golden.metadata.end()) errors = nlohmann::json::parse(it->second, nullptr, false);
  if (precision != "fp32" && errors.is_object())
    errors = errors.contains(precision) ? errors[precision] : nlohmann::json();
  if (errors.is_object() && errors.contains(output) && errors[output].is_number())
    return std::max(kFloor, 2.0 * errors[output].get<double>());
  if (precision == "fp32") return kFloor;  // goldens written before the error was recorded
  throw std::runtime_error("golden metadata lacks " + key + "[" + precision + "][" + output +
                           "]: rewrite the goldens with tools/reference/make_goldens.py");
}

/// sqrt(sum (a - ref)^2 / sum ref^2).
inline double relative_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < std::min(a.size(), ref.size()); ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

/// Runs `net` on host NCHW data of shape `shape` and returns the output on the host.
template <class B>
std::vector<float> run_host(const models::AnyNetwork<B>& net, B& backend, const std::vector<float>& data,
                            const Shape& shape, Shape* out_shape = nullptr) {
  const auto x = backend.upload(data, shape);
  const auto y = net.forward(backend, x);
  const Shape s = backend.shape_of(y);
  if (out_shape) *out_shape = s;
  std::vector<float> out(static_cast<std::size_t>(s.numel()));
  backend.download(y, out);
  return out;
}

}  // namespace sluice::test
