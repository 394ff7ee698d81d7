// sluice/backends/cpu/phase_times.hpp: sluice::cpu::PhaseTimes, the thread time a kernel spends in
// each of its phases (a conv's im2col or transforms, its GEMMs), summed over the workers. Kernels
// take a PhaseTimes* that is null unless the backend's op profile is on (op_profile.hpp); null, a
// phase costs one test of the pointer.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace sluice::cpu {

struct PhaseTimes {
  static constexpr std::size_t kMaxPhases = 3;
  std::array<std::atomic<std::int64_t>, kMaxPhases> ns{};

  /// Runs fn() and, when `times` is not null, adds its duration x `workers` to phase `phase`:
  /// `workers` > 1 for a call that itself spreads over the pool, whose workers all take part.
  template <class F>
  static void time(PhaseTimes* times, std::size_t phase, F&& fn, std::size_t workers = 1) {
    if (times == nullptr) {
      std::forward<F>(fn)();
      return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::forward<F>(fn)();
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0);
    times->ns[phase].fetch_add(ns.count() * static_cast<std::int64_t>(workers), std::memory_order_relaxed);
  }
};

}  // namespace sluice::cpu
