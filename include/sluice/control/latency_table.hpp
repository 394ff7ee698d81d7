// sluice/control/latency_table.hpp: a measured per-batch-size latency table (what the calibrator
// writes and the SloController starts from), as a plain value with validation.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"

namespace sluice::control {

/// Latency quantiles of one batch size.
struct LatencyPoint {
  std::size_t batch_size = 0;
  Duration p50{};
  Duration p95{};
  Duration p99{};
};

/// Ascending by batch size, one point per size.
using LatencyTable = std::vector<LatencyPoint>;

/// Throws Error(invalid_argument) unless every size is > 0, sizes are strictly ascending and
/// 0 < p50 <= p95 <= p99.
inline void validate(const LatencyTable& table) {
  std::size_t previous = 0;
  for (const auto& p : table) {
    if (p.batch_size == 0) throw Error(errc::invalid_argument, "latency table: batch size 0");
    if (p.batch_size <= previous)
      throw Error(errc::invalid_argument, "latency table: batch sizes must be strictly ascending");
    if (p.p50 <= Duration::zero() || p.p95 < p.p50 || p.p99 < p.p95)
      throw Error(errc::invalid_argument, "latency table: need 0 < p50 <= p95 <= p99 at batch size " +
                                              std::to_string(p.batch_size));
    previous = p.batch_size;
  }
}

}  // namespace sluice::control
