// sluice/weights/finite_weights.hpp: the check that a checkpoint holds only finite numbers. A NaN or an
// infinity in one weight makes every output NaN (the service then reports no polygons at
// confidence -inf), so a checkpoint is refused at load, naming the tensor, instead.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>

#include "sluice/core/error.hpp"
#include "sluice/weights/host_tensor.hpp"

namespace sluice::weights {

/// Throws sluice::Error(invalid_argument, "<source>: tensor '<name>' holds NaN at index i ...")
/// for the first tensor (in name order) with a non-finite value, counting that tensor's.
inline void require_finite(const TensorDict& tensors, std::string_view source) {
  for (const auto& [name, t] : tensors) {
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < t.data.size(); ++i)
      if (!std::isfinite(t.data[i]) && bad++ == 0) first = i;
    if (bad == 0) continue;
    const float v = t.data[first];
    const char* what = std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
    throw Error(errc::invalid_argument, std::string(source) + ": tensor '" + name + "' holds " + what + " at index " +
                                            std::to_string(first) + " (" + std::to_string(bad) + " of its " +
                                            std::to_string(t.data.size()) +
                                            " values are not finite); weights must be finite numbers");
  }
}

}  // namespace sluice::weights
