// sluice/core/memory_stats.hpp: exact memory accounting as every backend reports it. The calibrator
// reads `peak_bytes` per batch size to predict the largest batch that fits.
#pragma once

#include <cstddef>

namespace sluice {

struct MemoryStats {
  std::size_t current_bytes = 0;  ///< bytes held now (activations + weights + scratch)
  std::size_t peak_bytes = 0;     ///< high-water mark since the last reset_peak()
  std::size_t weight_bytes = 0;   ///< of current_bytes, packed weights
};

}  // namespace sluice
