// sluice/calibrate/calibration_model.hpp: what the calibrator measures. Any model that can prepare a
// batch of n fresh random inputs (untimed) and then run it, reporting the true peak memory of the
// run, plugs in: a CPU or CUDA network behind a small adapter, or a synthetic model in tests.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "sluice/core/clock.hpp"

namespace sluice::calibrate {

/// What one run of a batch reports.
struct RunReport {
  std::size_t peak_bytes = 0;           ///< high-water mark of memory during this run (not after it)
  std::optional<Duration> device_time;  ///< the device's own timing, if it has one (else wall time)
};

/// `prepare(n, seed)` fills a batch of n inputs from `seed` (random, never all zeros; a new seed
/// means new data), outside the timed region. `run()` runs the prepared batch and reports its peak.
/// Either may throw sluice::Error (errc::out_of_memory for a batch that does not fit).
template <class M>
concept CalibrationModel = requires(M& m, std::size_t n, std::uint64_t seed) {
  m.prepare(n, seed);
  { m.run() } -> std::convertible_to<RunReport>;
};

}  // namespace sluice::calibrate
