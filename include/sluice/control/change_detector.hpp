// sluice/control/change_detector.hpp: a two-sided CUSUM (Page's test) on the log residuals of a
// latency model (log of observed / predicted). A lane that becomes slower or faster for good (a
// co-tenant, a clock change, thermal throttling) shows as a run of residuals on one side; a sliding
// window notices it only after half its length, the CUSUM after a few samples. It answers the shift
// (the mean log residual of the run that crossed the threshold) so the model can rescale at once.
// The allowance k is at least `min_allowance` and at least the recent residual spread, so a noisy
// lane does not raise false alarms.
// A real CPU lane's noise is not symmetric: besides its steady jitter it has spells, a few to a few
// dozen runs ~50% slower while something else holds the core, that end by themselves. A CUSUM calls
// each spell a change and then its end another one (the model flaps up and down). So a change is
// called only when the shift is sustained: the median of the last `sustain` residuals lies beyond
// the allowance (not a few large outliers). `sustain` starts at min_run; a change undone by the
// opposite one within `max_sustain` samples was a spell, and `sustain` grows to twice its length
// (so spells that long no longer count), decaying back while no spell is seen. A step of a lane
// without spells (a clock change, a co-tenant that stays) is called as fast as before.
// Pure value type.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
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
    /// Learn the lane's spells (see above): 0 keeps `sustain` at min_run (a plain CUSUM + median check).
    std::size_t max_sustain = 32;
    std::size_t sustain_decay = 256;  ///< samples without a spell that halve the learnt excess of `sustain`
  };

  ChangeDetector() : ChangeDetector(Options{}) {}
  explicit ChangeDetector(Options o) : options_(o) {
    if (!(o.min_allowance > 0.0) || !(o.threshold > 0.0) || o.spread_window < 2 || o.min_run == 0 ||
        o.sustain_decay == 0)
      throw Error(errc::invalid_argument, "change detector: need min_allowance > 0, threshold > 0, "
                                          "spread_window >= 2, min_run >= 1, sustain_decay >= 1");
    sustain_ = o.min_run;
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
    ++seq_;
    decay_sustain();
    remember(log_residual);
    remember_last(log_residual);
    up_ = std::max(0.0, up_ + log_residual - k);
    down_ = std::max(0.0, down_ - log_residual - k);
    // The run since each side was last at zero: its mean is the size of the shift.
    if (up_ == 0.0) up_sum_ = 0.0, up_n_ = 0;
    else up_sum_ += log_residual, ++up_n_;
    if (down_ == 0.0) down_sum_ = 0.0, down_n_ = 0;
    else down_sum_ += log_residual, ++down_n_;
    const double h = options_.threshold * k;
    std::optional<Change> change;
    if (up_ > h && up_n_ >= options_.min_run && sustained(k)) change = Change{up_sum_ / static_cast<double>(up_n_), up_n_};
    else if (down_ > h && down_n_ >= options_.min_run && sustained(-k))
      change = Change{down_sum_ / static_cast<double>(down_n_), down_n_};
    if (change) {
      learn_spell(*change);
      restart(*change);
    } else if (up_ > h || down_ > h) {
      // Evidence past the threshold without a sustained shift is a spell's: not kept, or its end
      // would be followed by a change built on it. The spells still come: keep their length.
      up_ = std::min(up_, h);
      down_ = std::min(down_, h);
      last_spell_ = seq_;
    }
    return change;
  }

  /// How many recent residuals must mostly lie beyond the allowance for a change (min_run, or
  /// twice the longest recent spell).
  std::size_t sustain() const { return sustain_; }

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

  /// Forgets everything, the noise spread and the spells included.
  void reset() {
    clear_sums();
    recent_.clear();
    last_.clear();
    sustain_ = options_.min_run;
    have_last_change_ = false;
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

  // The last max(max_sustain, min_run) residuals as they came (never moved to a new level): the
  // median of the last `sustain` of them beyond `k` (on k's side) says the shift is sustained.
  void remember_last(double r) {
    if (last_.size() >= std::max<std::size_t>(options_.max_sustain, options_.min_run)) last_.erase(last_.begin());
    last_.push_back(r);
  }
  bool sustained(double k) const {
    if (last_.size() < sustain_) return false;
    std::vector<double> v(last_.end() - static_cast<std::ptrdiff_t>(sustain_), last_.end());
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    const double median = v[v.size() / 2];
    return k > 0.0 ? median > k : median < k;
  }

  // A change that the opposite one undoes (the shifts cancel to within half the smaller) within
  // max_sustain samples was a spell: from now on a shift must last twice as long to count.
  void learn_spell(const Change& c) {
    const std::uint64_t began = seq_ - (c.run - 1);
    if (have_last_change_ && options_.max_sustain > 0 && (c.shift > 0) != (last_shift_ > 0) &&
        std::abs(c.shift + last_shift_) < 0.5 * std::min(std::abs(c.shift), std::abs(last_shift_)) &&
        began > last_began_ && began - last_began_ <= options_.max_sustain) {
      const auto spell = static_cast<std::size_t>(began - last_began_);
      sustain_ = std::clamp<std::size_t>(2 * spell, sustain_, std::max(options_.max_sustain, options_.min_run));
      last_spell_ = seq_;
    }
    have_last_change_ = true;
    last_shift_ = c.shift;
    last_began_ = began;
  }
  // Spells that stopped coming (a neighbour that left): the learnt length fades.
  void decay_sustain() {
    if (sustain_ > options_.min_run && seq_ - last_spell_ >= options_.sustain_decay) {
      sustain_ = options_.min_run + (sustain_ - options_.min_run) / 2;
      last_spell_ = seq_;
    }
  }

  Options options_;
  double up_ = 0.0, down_ = 0.0, up_sum_ = 0.0, down_sum_ = 0.0;
  std::size_t up_n_ = 0, down_n_ = 0;
  std::vector<double> recent_;
  std::vector<double> last_;
  std::size_t sustain_ = 0;
  std::uint64_t seq_ = 0, last_spell_ = 0, last_began_ = 0;
  bool have_last_change_ = false;
  double last_shift_ = 0.0;
};

}  // namespace sluice::control
