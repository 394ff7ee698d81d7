// HRNet's measured median latency per batch size on an RTX A5000 at 1024x1024
// (bench/data/rtx-a5000-1024.json; batch 24 ran out of memory, so the curve stops at 16): the
// curve the tests of bench/control's simulator run against.
#pragma once

#include "control_sim.hpp"

namespace sluice::bench {

inline LatencyCurve hrnet() {
  LatencyCurve c;
  c.name = "hrnet";
  c.p50_ms = {{1, 63.3}, {2, 125.7}, {4, 232.6}, {8, 462.8}, {12, 684.3}, {16, 1271.0}};
  c.max_safe = 16;
  return c;
}

}  // namespace sluice::bench
