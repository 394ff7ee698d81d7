// sluice/backends/cpu/batch_split.hpp: how the CPU backend runs a batch of at least one sample per
// thread -- each op split across the pool's threads, or one single-threaded forward pass per sample
// and thread (CpuBackend::map_samples) -- and SplitTuner, which picks the faster way per input shape
// by timing both.
//
// Neither way wins everywhere. A small network's ops last tens of microseconds, so splitting each
// one costs a barrier per op, and per-sample passes run up to twice as fast; a large network's ops
// split well, and per-sample passes, each streaming a whole network's activations, run slower
// (measured in docs/performance.md). So by default the backend measures.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/core/error.hpp"
#include "sluice/core/shape.hpp"

namespace sluice::cpu {

enum class BatchSplit {
  never,      ///< every op of the batch split across the threads
  always,     ///< one forward pass per sample and thread
  automatic,  ///< per input shape, whichever of the two ran faster in its first batches
};

inline const char* to_string(BatchSplit s) {
  switch (s) {
    case BatchSplit::never: return "never";
    case BatchSplit::always: return "always";
    case BatchSplit::automatic: return "auto";
  }
  return "?";
}

/// "never", "always" or "auto"; anything else is invalid_argument.
inline BatchSplit parse_batch_split(std::string_view text) {
  if (text == "never") return BatchSplit::never;
  if (text == "always") return BatchSplit::always;
  if (text == "auto") return BatchSplit::automatic;
  throw Error(errc::invalid_argument, "batch split is never, always or auto, not '" + std::string(text) + "'");
}

/// Per input shape: the first 2 * trials_per_way batches alternate between the two ways (split
/// first), and from then on the way with the shorter best time runs. The best (least) time of a
/// way's trials discards its first-run costs and the machine's noise spikes. Thread-safe.
class SplitTuner {
 public:
  static constexpr int trials_per_way = 2;
  /// Shapes tuned at most; batches of further shapes run whole (no unbounded growth).
  static constexpr std::size_t max_shapes = 1024;

  /// Whether the next batch of shape s runs split.
  bool next_split(const Shape& s) {
    std::lock_guard lock(mutex_);
    auto it = shapes_.find(key(s));
    if (it == shapes_.end()) return shapes_.size() < max_shapes;  // a new shape's first trial: split
    const Trials& t = it->second;
    if (t.choice) return *t.choice;
    return t.runs[split_way] <= t.runs[whole_way];
  }

  /// Reports how long a batch of shape s took, run split or whole.
  void record(const Shape& s, bool split, double seconds) {
    std::lock_guard lock(mutex_);
    auto it = shapes_.find(key(s));
    if (it == shapes_.end()) {
      if (shapes_.size() >= max_shapes) return;
      it = shapes_.emplace(key(s), Trials{}).first;
    }
    Trials& t = it->second;
    if (t.choice) return;
    const int way = split ? split_way : whole_way;
    ++t.runs[way];
    if (seconds < t.best[way]) t.best[way] = seconds;
    if (t.runs[split_way] >= trials_per_way && t.runs[whole_way] >= trials_per_way)
      t.choice = t.best[split_way] < t.best[whole_way];
  }

  /// The way chosen for shape s (true: split), once its trials are done.
  std::optional<bool> choice(const Shape& s) const {
    std::lock_guard lock(mutex_);
    auto it = shapes_.find(key(s));
    return it == shapes_.end() ? std::nullopt : it->second.choice;
  }

 private:
  static constexpr int whole_way = 0, split_way = 1;
  struct Trials {
    std::array<int, 2> runs{};
    std::array<double, 2> best{std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
    std::optional<bool> choice;
  };
  static std::array<std::int64_t, 4> key(const Shape& s) { return {s.n, s.c, s.h, s.w}; }

  mutable std::mutex mutex_;
  std::map<std::array<std::int64_t, 4>, Trials> shapes_;
};

}  // namespace sluice::cpu
