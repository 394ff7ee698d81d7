// sluice_minimal_backend: runs ResUNetSmall on MinimalBackend (minimal_backend.hpp) and compares the
// result with PyTorch's output for the same weights and input.
//
//   sluice_minimal_backend [WEIGHTS IO]
//
// WEIGHTS: a ResUNetSmall checkpoint (safetensors); IO: a safetensors file holding "input"
// (N x 3 x H x W) and "output" (N x 1 x H x W). Defaults: the reduced-width test goldens in
// tests/data/goldens (resunet_small.safetensors, resunet_small_io.safetensors).
#include <cmath>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "minimal_backend.hpp"
#include "sluice/models/registry.hpp"
#include "sluice/weights/safetensors.hpp"

#ifndef SLUICE_GOLDEN_DIR
#define SLUICE_GOLDEN_DIR "tests/data/goldens"
#endif

int main(int argc, char** argv) try {
  const std::string dir = SLUICE_GOLDEN_DIR;
  const std::string weights_path = argc > 2 ? argv[1] : dir + "/resunet_small.safetensors";
  const std::string io_path = argc > 2 ? argv[2] : dir + "/resunet_small_io.safetensors";

  // Weights are bound once: the network copies what it needs into the backend's weight objects.
  minimal::MinimalBackend backend;
  const sluice::weights::TensorDict checkpoint = sluice::weights::load_checkpoint(weights_path);
  const auto net = sluice::models::load_network("resunet_small", backend, checkpoint);

  const sluice::weights::TensorDict io = sluice::weights::load_checkpoint(io_path);
  const auto& input = io.at("input");
  const auto& expected = io.at("output");
  const sluice::Shape shape{input.shape[0], input.shape[1], input.shape[2], input.shape[3]};

  // Upload (host NCHW -> backend tensor), forward, download (backend tensor -> host NCHW).
  const auto x = backend.upload(input.data, shape);
  const auto y = sluice::models::run_forward(net, backend, x);
  std::vector<float> logits(static_cast<std::size_t>(backend.shape_of(y).numel()));
  backend.download(y, logits);

  if (logits.size() != expected.data.size()) throw std::runtime_error("output size differs from the expected one");
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    diff += (double(logits[i]) - expected.data[i]) * (double(logits[i]) - expected.data[i]);
    norm += double(expected.data[i]) * expected.data[i];
  }
  const double rel_l2 = std::sqrt(diff / norm);
  std::printf("resunet_small on MinimalBackend: input %s -> output %s, relative L2 against PyTorch %.2e\n",
              shape.to_string().c_str(), backend.shape_of(y).to_string().c_str(), rel_l2);
  return rel_l2 < 1e-4 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "sluice_minimal_backend: %s\n", e.what());
  return 2;
}
