// sluice/control/latency_model.hpp: an online model of a lane's batch latency, fed by every finished
// batch. Per batch size it keeps a sliding window of recent run times and answers a quantile of it
// (Clockwork's "p99 of the last few runs"); for sizes without fresh samples it extrapolates with a
// least-squares line a + b*n fitted with exponential forgetting (BentoML's T(n), but adaptive), scaled
// by the recent tail of the line's residuals. It can start from a calibration table. Shared by the
// SloController, the calibrator and the simulator. A size whose samples grew old answers from them
// scaled by the line's drift since, so a non-linear cost curve is not forgotten.
// A change detector (control/change_detector.hpp) watches the residuals against the model's own
// median of the same size: when the lane becomes slower or faster for good, every stored sample and the line are
// rescaled by the detected shift at once, instead of waiting for the windows to refill.
// A size's tail is at least as wide as the spread of every size around its own median over the
// last residual_window runs (pooled): the largest of three samples is no p99, and neither is the
// largest of a window of 16 runs that all fell between two spells of a co-tenant.
// Pure value type: no clock, no threads.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "sluice/control/change_detector.hpp"
#include "sluice/control/latency_table.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"

namespace sluice::control {

/// Linear-interpolated quantile (type 7) of unsorted values; `values` is reordered. Empty -> 0.
inline double quantile_of(std::vector<double>& values, double q) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (pos - static_cast<double>(lo));
}

class LatencyModel {
 public:
  struct Options {
    double quantile = 0.99;          ///< the tail the model answers for (the SLO's quantile)
    std::size_t window = 16;         ///< run times kept per batch size
    std::size_t min_samples = 3;     ///< a size's own window is trusted from this many samples
    std::size_t stale_after = 64;    ///< observations (of any size) after which old samples expire
    double forgetting = 0.95;        ///< weight kept per observation by the line fit (0 < f <= 1)
    std::size_t residual_window = 64;  ///< residual ratios kept to scale the line to the quantile
    std::size_t max_batch_size = 4096;  ///< sizes above this are rejected as bad input
    bool detect_changes = true;       ///< rescale at once when the residuals shift for good
    /// A size with fewer than `window` samples takes its tail from the spread of every size around
    /// its own median (pooled), not from its few samples alone: the largest of three samples is no p99.
    bool pooled_tail = true;
    /// A size with a full window too, when the pooled spread (over `residual_window` runs) puts its
    /// tail more than 10% further out than the window's own. A co-tenant's preemptions come in
    /// spells; a window of 16 runs sees one spell, and its p99 (p5) is then exceeded (undercut) far
    /// more often than 1% (5%).
    bool pooled_tail_always = true;
    ChangeDetector::Options change{};
  };

  /// a + b*n in nanoseconds.
  struct Line {
    double a = 0.0;
    double b = 0.0;
    double at(std::size_t n) const { return a + b * static_cast<double>(n); }
  };

  LatencyModel() : LatencyModel(Options{}) {}
  explicit LatencyModel(Options options) : options_(options), detector_(options.change) {
    if (!(options_.quantile > 0.0 && options_.quantile <= 1.0))
      throw Error(errc::invalid_argument, "latency model: quantile must be in (0, 1]");
    if (options_.window == 0 || options_.min_samples == 0 || options_.min_samples > options_.window)
      throw Error(errc::invalid_argument, "latency model: need 0 < min_samples <= window");
    if (!(options_.forgetting > 0.0 && options_.forgetting <= 1.0))
      throw Error(errc::invalid_argument, "latency model: forgetting must be in (0, 1]");
    if (options_.residual_window == 0 || options_.max_batch_size == 0)
      throw Error(errc::invalid_argument, "latency model: windows must be > 0");
  }

  const Options& options() const { return options_; }

  /// Starts from a calibration table: each size's window is filled from its p50, p95 and p99 (so its
  /// median is the p50 and its upper quantiles lie between p95 and p99), the line is fitted to the
  /// p50s and the tail ratios to p95/p50 and p99/p50.
  /// These priors expire like any sample once `stale_after` real observations have arrived.
  void seed(const LatencyTable& table) {
    validate(table);
    for (const auto& p : table) {
      if (p.batch_size > options_.max_batch_size)
        throw Error(errc::invalid_argument, "latency model: table batch size above max_batch_size");
      // window-2 medians, then the p95 and the p99: the window's quantiles reproduce the table.
      auto& w = slot(p.batch_size);
      for (std::size_t i = 0; i + 2 < options_.window; ++i) w.push(to_ns(p.p50), seq_, options_.window);
      w.push(to_ns(p.p95), seq_, options_.window);
      w.push(to_ns(p.p99), seq_, options_.window);
      add_to_line(p.batch_size, to_ns(p.p50));
      // The tail ratios in the same proportions: eight medians, then p95/p50 and p99/p50.
      for (int i = 0; i < 8; ++i) push_residual(1.0);
      push_residual(to_ns(p.p95) / to_ns(p.p50));
      push_residual(to_ns(p.p99) / to_ns(p.p50));
    }
    for (const auto& p : table) set_ref(sizes_[p.batch_size]);
  }

  /// One finished batch of `n` items that ran for `run_time`.
  void observe(std::size_t n, Duration run_time) {
    if (n == 0 || n > options_.max_batch_size)
      throw Error(errc::invalid_argument, "latency model: batch size out of range");
    if (run_time <= Duration::zero()) return;  // a clock glitch says nothing about the lane
    const double t = to_ns(run_time);
    // Only a size that answers from its own fresh samples is a fair reference: a residual against
    // the line's extrapolation measures the line's misfit, not a change of the lane.
    if (n < sizes_.size() && sizes_[n].fresh_count(seq_ + 1, options_.stale_after) >= options_.min_samples) {
      if (const auto predicted = estimate_q(n, 0.5)) {
        const double p = to_ns(*predicted);
        if (p > 0.0) {
          push_spread(t / p);
          if (options_.detect_changes)
            if (const auto change = detector_.add(std::log(t / p))) rescale(std::exp(change->shift), change->run);
        }
      }
    }
    ++seq_;
    // The residual against the line as it was *before* this sample: an honest out-of-sample error.
    if (const auto mean = line_mean(n)) push_residual(t / *mean);
    auto& w = slot(n);
    w.expire(seq_, options_.stale_after);
    w.push(t, seq_, options_.window);
    add_to_line(n, t);
    set_ref(w);
  }

  /// The `quantile` estimate for a batch of n, or nullopt when the model knows nothing yet.
  std::optional<Duration> estimate(std::size_t n) const { return estimate_q(n, options_.quantile); }
  /// The median estimate (used where optimism is the safe side, e.g. deciding what is hopeless).
  std::optional<Duration> typical(std::size_t n) const { return estimate_q(n, 0.5); }

  /// Any quantile q in [0, 1].
  std::optional<Duration> estimate_q(std::size_t n, double q) const {
    if (n == 0) return std::nullopt;
    const auto mean = line_mean(n);
    if (n < sizes_.size()) {
      const auto& w = sizes_[n];
      const std::size_t fresh = w.fresh_count(seq_, options_.stale_after);
      if (fresh >= options_.min_samples)
        return from_ns(with_pooled_tail(w, seq_, options_.stale_after, fresh, q, 1.0));
      // Old samples of this size still know its shape better than a line does (the cost of a
      // batch is rarely linear); the line only says how much the device drifted since then.
      // The drift is read where the line is best known: at the centre of its recent data.
      if (!w.samples.empty() && mean && w.has_ref) {
        const double x = sx_ / w_;
        const double then = w.line_ref.a + w.line_ref.b * x, now = line()->a + line()->b * x;
        const double drift = then > 0.0 && now > 0.0 ? std::clamp(now / then, 0.5, 2.0) : 1.0;
        return from_ns(
            with_pooled_tail(w, seq_, std::numeric_limits<std::size_t>::max(), w.samples.size(), q, drift));
      }
    }
    if (!mean) return std::nullopt;
    // Scale the mean line to the requested quantile with the recent residual ratios (>= 1 for a tail).
    double scale = residual_quantile(q);
    if (q >= 0.5) scale = std::max(scale, 1.0);
    return from_ns(*mean * scale);
  }

  /// The fitted line (nanoseconds), if at least one observation or table point was seen.
  std::optional<Line> line() const {
    if (w_ <= 0.0) return std::nullopt;
    const double mx = sx_ / w_, my = sy_ / w_;
    const double var = sxx_ / w_ - mx * mx;
    const double cov = sxy_ / w_ - mx * my;
    // Too little spread in n to fit a slope: assume latency proportional to n (no batching gain),
    // the pessimistic side for bigger batches.
    if (var < 1e-2 || cov <= 0.0) return Line{0.0, my / mx};
    Line l{my - (cov / var) * mx, cov / var};
    if (l.a < 0.0) l = Line{0.0, sxy_ / sxx_};  // convex data: a line through 0 that fits least squares
    return l;
  }

  bool empty() const { return w_ <= 0.0; }
  std::uint64_t observations() const { return seq_; }
  /// How many times the change detector rescaled the model.
  std::size_t changes_detected() const { return changes_; }

 private:
  struct Sample {
    double ns;
    std::uint64_t seq;
  };
  struct Window {
    std::vector<Sample> samples;  // oldest first; small (<= window)
    Line line_ref{};              // the line when the last sample came
    bool has_ref = false;
    void push(double ns, std::uint64_t seq, std::size_t cap) {
      if (samples.size() == cap) samples.erase(samples.begin());
      samples.push_back({ns, seq});
    }
    void expire(std::uint64_t now, std::size_t stale_after) {
      std::erase_if(samples, [&](const Sample& s) { return now - s.seq > stale_after; });
    }
    std::size_t fresh_count(std::uint64_t now, std::size_t stale_after) const {
      return static_cast<std::size_t>(std::count_if(
          samples.begin(), samples.end(), [&](const Sample& s) { return now - s.seq <= stale_after; }));
    }
    double quantile(std::uint64_t now, std::size_t stale_after, double q) const {
      std::vector<double> v;
      for (const auto& s : samples)
        if (now - s.seq <= stale_after) v.push_back(s.ns);
      return quantile_of(v, q);
    }
  };

  static double to_ns(Duration d) { return std::chrono::duration<double, std::nano>(d).count(); }
  static Duration from_ns(double ns) {
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::nano>(ns));
  }

  void set_ref(Window& w) const {
    if (const auto l = line()) {
      w.line_ref = *l;
      w.has_ref = true;
    }
  }

  Window& slot(std::size_t n) {
    if (n >= sizes_.size()) sizes_.resize(n + 1);
    return sizes_[n];
  }

  // The lane's speed changed by `factor` for every size alike: move what was known from before the
  // change with it. The last run-1 samples (and their residuals) already show the new level.
  void rescale(double factor, std::size_t run) {
    factor = std::clamp(factor, 1.0 / 64, 64.0);
    const std::uint64_t before = seq_ >= run - 1 ? seq_ - (run - 1) : 0;  // last seq of the old level
    for (auto& w : sizes_) {
      for (auto& smp : w.samples)
        if (smp.seq <= before) smp.ns *= factor;
      w.line_ref.a *= factor;
      w.line_ref.b *= factor;
    }
    sy_ *= factor;
    sxy_ *= factor;
    residuals_.resize(residuals_.size() - std::min(residuals_.size(), run - 1));
    // The run measured the new level against the old medians: not noise.
    spread_.resize(spread_.size() - std::min(spread_.size(), run));
    spread_cache_.clear();
    residual_cache_.clear();
    ++changes_;
  }

  void add_to_line(std::size_t n, double t) {
    const double f = options_.forgetting, x = static_cast<double>(n);
    w_ = w_ * f + 1.0;
    sx_ = sx_ * f + x;
    sy_ = sy_ * f + t;
    sxx_ = sxx_ * f + x * x;
    sxy_ = sxy_ * f + x * t;
  }

  std::optional<double> line_mean(std::size_t n) const {
    const auto l = line();
    if (!l) return std::nullopt;
    const double v = l->at(n);
    return v > 0.0 ? std::optional<double>(v) : std::nullopt;
  }

  // The q-quantile of a size's samples (times `drift`); the tail is at least the median times the
  // pooled spread's quantile (and the low side at most that) -- with a full window only when
  // pooled_tail_always.
  double with_pooled_tail(const Window& w, std::uint64_t now, std::size_t stale_after, std::size_t count, double q,
                          double drift) const {
    const double own = w.quantile(now, stale_after, q) * drift;
    if (!options_.pooled_tail || (count >= options_.window && !options_.pooled_tail_always) ||
        spread_.size() < kMinSpread || q == 0.5)
      return own;
    const double pooled = w.quantile(now, stale_after, 0.5) * drift * spread_quantile(q);
    // A full window yields only to a tail clearly wider than its own (a spell it did not see), not
    // to the few per cent by which two estimates of the same steady noise differ.
    if (count >= options_.window && (q > 0.5 ? pooled <= own * (1.0 + kWiderBy) : pooled >= own * (1.0 - kWiderBy)))
      return own;
    return q > 0.5 ? std::max(own, pooled) : std::min(own, pooled);
  }

  void push_spread(double ratio) {
    if (!std::isfinite(ratio) || ratio <= 0.0) return;
    if (spread_.size() == options_.residual_window) spread_.erase(spread_.begin());
    spread_.push_back(ratio);
    spread_cache_.clear();
  }

  double spread_quantile(double q) const {
    for (const auto& [cq, v] : spread_cache_)
      if (cq == q) return v;
    std::vector<double> r = spread_;
    const double v = quantile_of(r, q);
    spread_cache_.emplace_back(q, v);
    return v;
  }

  void push_residual(double ratio) {
    if (!std::isfinite(ratio) || ratio <= 0.0) return;
    if (residuals_.size() == options_.residual_window) residuals_.erase(residuals_.begin());
    residuals_.push_back(ratio);
    residual_cache_.clear();
  }

  // Controllers ask for the same one or two quantiles many times between observations: cache them.
  double residual_quantile(double q) const {
    if (residuals_.empty()) return 1.0;
    for (const auto& [cq, v] : residual_cache_)
      if (cq == q) return v;
    std::vector<double> r = residuals_;
    const double v = quantile_of(r, q);
    residual_cache_.emplace_back(q, v);
    return v;
  }

  Options options_;
  std::vector<Window> sizes_;    // indexed by batch size
  std::vector<double> residuals_;  // observed / line mean, oldest first
  mutable std::vector<std::pair<double, double>> residual_cache_;  // (quantile, value)
  // Observed / that size's own median, for sizes answered from their own fresh samples: the noise
  // around each size's level, pooled over the sizes (no line misfit in it).
  static constexpr std::size_t kMinSpread = 8;
  static constexpr double kWiderBy = 0.10;  // how much wider a pooled tail must be to override a full window
  std::vector<double> spread_;
  mutable std::vector<std::pair<double, double>> spread_cache_;
  std::uint64_t seq_ = 0;
  double w_ = 0, sx_ = 0, sy_ = 0, sxx_ = 0, sxy_ = 0;  // forgetting least-squares sums
  ChangeDetector detector_;
  std::size_t changes_ = 0;
};

}  // namespace sluice::control
