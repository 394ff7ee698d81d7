// sluice/core/clock.hpp: the one clock of scheduling. All deadlines, arrival times and latencies
// are steady_clock values, so the sans-io state machines can be driven by a manual clock in tests.
#pragma once

#include <chrono>

namespace sluice {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

/// "No deadline" and "never".
inline constexpr TimePoint kNever = TimePoint::max();

}  // namespace sluice
