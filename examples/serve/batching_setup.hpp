// examples/serve/batching_setup.hpp: how sluice_serve batches one model -- the Batcher's settings and
// the SloController's starting point (memory-safe size, latency table) -- from the server's
// configuration and, when it names one, batch_sizes.json. Kept apart from main.cpp so that tests can
// check what a calibration file does to a model without loading a network.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include "serve_config.hpp"
#include "sluice/batching/batcher_config.hpp"
#include "sluice/calibrate/batch_sizes_json.hpp"
#include "sluice/control/slo_controller.hpp"

namespace sluice::serve_app {

struct BatchingSetup {
  BatcherConfig batcher;
  control::SloController::Options slo;     ///< used when the controller is "slo"
  std::optional<std::string> calibration;  ///< the batch_sizes.json entry applied; nullopt: none
};

/// One model's batching on `lanes` lanes, the model running at input_height x input_width. Throws
/// Error(invalid_argument) naming the file and the key when batch_sizes.json is malformed or was
/// calibrated at another input size; a file without an entry for the model leaves the defaults.
inline BatchingSetup batching_setup(const ModelConfig& m, const ServeConfig& c, std::size_t lanes,
                                    int input_height, int input_width) {
  auto ms = [](double v) {
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(v));
  };
  BatchingSetup s;
  s.batcher.max_batch_size = std::max<std::size_t>(1, c.max_batch_size);
  s.batcher.max_queue_delay = ms(c.max_queue_delay_ms);
  s.batcher.max_queue_size = c.max_queue_size;
  s.batcher.lanes = lanes;
  s.batcher.cpu_threads = c.cpu_threads;
  if (!c.batch_sizes.empty()) {
    const calibrate::BatchSizesQuery q{
        .model = m.name, .network = m.network, .input_height = input_height, .input_width = input_width};
    if (const auto e = calibrate::load_model_batch_sizes(c.batch_sizes, q)) {
      s.calibration = e->key;
      s.batcher.max_batch_size = std::min(s.batcher.max_batch_size, e->max_safe_batch_size);
      if (e->max_queue_delay_ms) s.batcher.max_queue_delay = ms(*e->max_queue_delay_ms);
      if (!e->latency_table.empty()) s.slo.calibration = e->latency_table;
    }
  }
  s.slo.max_batch_size = s.batcher.max_batch_size;
  return s;
}

}  // namespace sluice::serve_app
