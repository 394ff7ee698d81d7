// examples/calibrate/synthetic_model.hpp: a CPU stand-in model for the calibrator's tests and demo.
// It really computes (a per-batch fixed stage plus `layers` dense layers per item, so its cost has
// the a + b*n shape of a real network), holds its activations in buffers it accounts for exactly,
// and reports the true peak of each run. Inputs are uniform in [0.1, 1): never zero, new per seed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "sluice/calibrate/calibration_model.hpp"
#include "sluice/core/error.hpp"

namespace sluice::calibrate {

class SyntheticModel {
 public:
  struct Options {
    std::size_t features = 128;        ///< per-item width of each dense layer
    std::size_t layers = 4;
    std::size_t fixed_work = 64;       ///< size of the per-batch fixed stage (fixed_work^2 * features MACs)
    std::size_t device_bytes = 0;      ///< runs needing more than this throw out_of_memory (0: no limit)
  };

  explicit SyntheticModel(Options o) : o_(o) {
    if (o_.features == 0 || o_.layers == 0) throw Error(errc::invalid_argument, "synthetic model: empty layers");
    std::mt19937_64 rng(12345);
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    weights_.resize(o_.layers * o_.features * o_.features);
    for (auto& w : weights_) w = u(rng);
  }

  void prepare(std::size_t n, std::uint64_t seed) {
    if (n == 0) throw Error(errc::invalid_argument, "synthetic model: batch of 0");
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(0.1f, 1.0f);
    inputs_.resize(n * o_.features);
    for (auto& x : inputs_) x = u(rng);
    n_ = n;
  }

  /// Bytes one run of n items holds at its peak: weights, input, two activation buffers, scratch.
  std::size_t bytes_for(std::size_t n) const {
    return sizeof(float) * (weights_.size() + 3 * n * o_.features + o_.fixed_work * o_.features);
  }

  RunReport run() {
    if (n_ == 0) throw Error(errc::invalid_argument, "synthetic model: run() before prepare()");
    const std::size_t peak = bytes_for(n_);
    if (o_.device_bytes > 0 && peak > o_.device_bytes)
      throw Error(errc::out_of_memory, "synthetic model: batch of " + std::to_string(n_) + " does not fit");
    const std::size_t f = o_.features;
    // The per-batch fixed stage (like a launch / planning cost): independent of n.
    std::vector<float> scratch(o_.fixed_work * f, 0.5f);
    for (std::size_t r = 0; r < o_.fixed_work; ++r)
      for (std::size_t c = 0; c < f; ++c) {
        float acc = 0;
        for (std::size_t k = 0; k < o_.fixed_work; ++k) acc += scratch[k * f + c] * 0.001f;
        scratch[r * f + c] = std::tanh(acc + 0.5f);
      }
    std::vector<float> a(inputs_), b(n_ * f);
    for (std::size_t l = 0; l < o_.layers; ++l) {
      const float* w = &weights_[l * f * f];
      for (std::size_t i = 0; i < n_; ++i)
        for (std::size_t o = 0; o < f; ++o) {
          float acc = 0;
          for (std::size_t k = 0; k < f; ++k) acc += a[i * f + k] * w[o * f + k];
          b[i * f + o] = std::tanh(acc);
        }
      std::swap(a, b);
    }
    checksum_ = a[0] + scratch[0];
    return {peak, std::nullopt};
  }

  std::span<const float> inputs() const { return inputs_; }
  float checksum() const { return checksum_; }

 private:
  Options o_;
  std::vector<float> weights_, inputs_;
  std::size_t n_ = 0;
  float checksum_ = 0;
};

static_assert(CalibrationModel<SyntheticModel>);

}  // namespace sluice::calibrate
