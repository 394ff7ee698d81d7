// sluice/control/change_detector.hpp: a two-sided CUSUM (Page's test) on the log residuals of a
// latency model (log of observed / predicted). A lane that becomes slower or faster for good (a
// co-tenant, a clock change, thermal throttling) shows as a run of residuals on one side; a sliding
// window notices it only after half its length, the CUSUM after a few samples. It answers the shift
// (the mean log residual of the run that crossed the threshold) so the model can rescale at once.
// The allowance k is at least `min_allowance` and at least the recent residual spread, so a noisy
// lane does not raise false alarms. Pure value type.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <vector>

#include "sluice/core/error.hpp"

namespace sluice::control {

class ChangeDetector {
 public:
  struct Options {
    double min_allowance = 0.05;  ///< k: drift per sample ignored (log units; 0.05 ~ 5%)
    double threshold = 5.0;       ///< h = threshold x k: the evidence needed to call a change
    std::size_t spread_window = 32;  ///< residuals used to estimate the noise spread
    std::size_t min_run = 3;      ///< samples on one side before a change is called (one outlier is not)
  };

  ChangeDetector() : ChangeDetector(Options{}) {}
  explicit ChangeDetector(Options o) : options_(o) {
    if (!(o.min_allowance > 0.0) || !(o.threshold > 0.0) || o.spread_window < 2 || o.min_run == 0)
      throw Error(errc::invalid_argument,
                  "change detector: need min_allowance > 0, threshold > 0, spread_window >= 2, min_run >= 1");
  }

  /// A detected change: the shift (mean log residual of the run that crossed the threshold) and
  /// how many samples that run had, this one included (they already show the new level).
  struct Change {
    double shift = 0.0;
    std::size_t run = 0;
  };

  /// Feeds one log residual; returns the change when one is detected, after which the detector
  /// starts over (the caller rescales what it knew from before the run by exp(shift)).
  std::optional<Change> add(double log_residual) {
    if (!std::isfinite(log_residual)) return std::nullopt;
    const double k = allowance();
    remember(log_residual);
    up_ = std::max(0.0, up_ + log_residual - k);
    down_ = std::max(0.0, down_ - log_residual - k);
    // The run since each side was last at zero: its mean is the size of the shift.
    if (up_ == 0.0) up_sum_ = 0.0, up_n_ = 0;
    else up_sum_ += log_residual, ++up_n_;
    if (down_ == 0.0) down_sum_ = 0.0, down_n_ = 0;
    else down_sum_ += log_residual, ++down_n_;
    const double h = options_.threshold * k;
    std::optional<Change> change;
    if (up_ > h && up_n_ >= options_.min_run) change = Change{up_sum_ / static_cast<double>(up_n_), up_n_};
    else if (down_ > h && down_n_ >= options_.min_run) change = Change{down_sum_ / static_cast<double>(down_n_), down_n_};
    if (change) restart(*change);
    return change;
  }

  /// The current allowance k (log units).
  double allowance() const {
    if (recent_.size() < 4) return options_.min_allowance;
    double mean = 0.0;
    for (double r : recent_) mean += r;
    mean /= static_cast<double>(recent_.size());
    double var = 0.0;
    for (double r : recent_) var += (r - mean) * (r - mean);
    const double sd = std::sqrt(var / static_cast<double>(recent_.size() - 1));
    return std::max(options_.min_allowance, sd);
  }

  /// Forgets everything, the noise spread included.
  void reset() {
    clear_sums();
    recent_.clear();
  }

 private:
  void clear_sums() {
    up_ = down_ = up_sum_ = down_sum_ = 0.0;
    up_n_ = down_n_ = 0;
  }

  // After a detected change the sums start over, but the noise spread is kept: with no spread the
  // allowance would fall to its minimum, and on a noisy lane (a co-tenant's preemptions) the next
  // few residuals would call a change again at once, and again -- the model would flap between
  // levels. The run that crossed the threshold measured the new level against the old one: moved
  // to the new level, it is noise like the rest.
  void restart(const Change& c) {
    clear_sums();
    const std::size_t n = std::min(c.run, recent_.size());
    for (std::size_t i = recent_.size() - n; i < recent_.size(); ++i) recent_[i] -= c.shift;
  }

  void remember(double r) {
    if (recent_.size() == options_.spread_window) recent_.erase(recent_.begin());
    recent_.push_back(r);
  }

  Options options_;
  double up_ = 0.0, down_ = 0.0, up_sum_ = 0.0, down_sum_ = 0.0;
  std::size_t up_n_ = 0, down_n_ = 0;
  std::vector<double> recent_;
};

}  // namespace sluice::control
