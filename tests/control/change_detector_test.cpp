// The change detector on latency-model residuals, alone and inside the LatencyModel.
#include "sluice/control/change_detector.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "sluice/control/latency_model.hpp"
#include "support/control_test_util.hpp"

namespace sluice::control {
namespace {
using namespace test;

TEST(ChangeDetector, FindsAThirtyPercentStepWithinAFewSamplesAndSizesIt) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0.0, 0.03);
  ChangeDetector d;
  for (int i = 0; i < 500; ++i) ASSERT_FALSE(d.add(noise(rng))) << "false alarm at sample " << i;
  std::optional<ChangeDetector::Change> change;
  int after = 0;
  while (!change && after < 50) change = d.add(std::log(1.3) + noise(rng)), ++after;
  ASSERT_TRUE(change);
  EXPECT_LE(after, 6);
  EXPECT_EQ(change->run, static_cast<std::size_t>(after));
  // The run's mean: it may begin with a sample or two from before the step that sat above k.
  EXPECT_NEAR(change->shift, std::log(1.3), 0.1);
  // Faster again: found the other way.
  std::optional<ChangeDetector::Change> back;
  for (int i = 0; i < 50 && !back; ++i) back = d.add(-std::log(1.3) + noise(rng));
  ASSERT_TRUE(back);
  EXPECT_LT(back->shift, -0.15);
}

TEST(ChangeDetector, ANoisyLaneRaisesItsAllowanceInsteadOfAlarms) {
  std::mt19937_64 rng(4);
  std::normal_distribution<double> noise(0.0, 0.2);  // a shared CPU: 20% spread per run
  ChangeDetector d;
  int alarms = 0;
  for (int i = 0; i < 3000; ++i) alarms += d.add(noise(rng)).has_value();
  EXPECT_LE(alarms, 1);
  EXPECT_GT(d.allowance(), 0.12);
  // With the fixed minimal allowance the same noise alarms again and again.
  ChangeDetector::Options o;
  o.spread_window = 2;  // too short to estimate a spread: allowance stays near the minimum
  ChangeDetector naive(o);
  int naive_alarms = 0;
  std::mt19937_64 rng2(4);
  for (int i = 0; i < 3000; ++i) naive_alarms += naive.add(noise(rng2)).has_value();
  EXPECT_GT(naive_alarms, alarms);
}

TEST(ChangeDetector, OneOutlierIsNotAChange) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> noise(0.0, 0.03);
  ChangeDetector d;
  for (int i = 0; i < 100; ++i) ASSERT_FALSE(d.add(noise(rng)));
  EXPECT_FALSE(d.add(std::log(10.0)));  // a run ten times slower: a hiccup, not a new level
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(d.add(noise(rng))) << i;
}

// A co-tenant makes the lane slower *and* noisier. The step is found once; afterwards the detector
// keeps the noise spread it had learnt (the run that crossed the threshold moved to the new level),
// so its allowance does not fall back to the minimum, where the next few residuals of a noisy lane
// would call change after change and make the model flap between levels.
TEST(ChangeDetector, KeepsItsNoiseSpreadAfterAChangeAndDoesNotFlap) {
  std::mt19937_64 rng(6);
  std::normal_distribution<double> noise(0.0, 0.25);
  ChangeDetector d;
  for (int i = 0; i < 300; ++i) d.add(noise(rng));
  const double before = d.allowance();
  ASSERT_GT(before, 0.2);
  std::optional<ChangeDetector::Change> step;
  int after = 0;
  while (!step && after < 100) step = d.add(std::log(2.0) + noise(rng)), ++after;
  ASSERT_TRUE(step);
  EXPECT_GT(step->shift, 0.4);
  // Right after the change: still the noise it knew, not the minimal allowance.
  EXPECT_GT(d.allowance(), 0.5 * before);
  // The new level, as noisy: at most a stray alarm or two in 1000 runs, each a small shift.
  int alarms = 0;
  for (int i = 0; i < 1000; ++i)
    if (const auto c = d.add(std::log(2.0) - step->shift + noise(rng))) ++alarms;
  EXPECT_LE(alarms, 2);
}

TEST(ChangeDetector, IgnoresNonFiniteInputAndRejectsBadOptions) {
  ChangeDetector d;
  EXPECT_FALSE(d.add(std::nan("")));
  EXPECT_FALSE(d.add(INFINITY));
  ChangeDetector::Options o;
  o.threshold = 0;
  EXPECT_THROW(ChangeDetector{o}, Error);
}

// A lane whose every size becomes 30% slower while only batches of one run: with detection the
// estimate for a size that has not run since follows at once; without it, the size's still-fresh
// window keeps answering the old latency.
TEST(LatencyModelChanges, RescalesEverySizeWhenTheLaneSlowsDown) {
  for (bool detect : {true, false}) {
    LatencyModel::Options o;
    o.detect_changes = detect;
    LatencyModel m(o);
    for (int i = 0; i < 40; ++i)
      for (std::size_t n = 1; n <= 4; ++n) m.observe(n, ms(10.0 + 5.0 * static_cast<double>(n)));
    for (int i = 0; i < 6; ++i) m.observe(1, ms(15.0 * 1.3));
    const double est4 = to_ms(*m.typical(4));
    if (detect) {
      EXPECT_NEAR(est4, 30.0 * 1.3, 30.0 * 0.05);
      EXPECT_EQ(m.changes_detected(), 1u);
    } else {
      EXPECT_NEAR(est4, 30.0, 0.5);
      EXPECT_EQ(m.changes_detected(), 0u);
    }
  }
}

// A calibration taken on a much faster machine: the first runs rescale it once, to the right level,
// without rescaling the fresh samples again (no runaway), and the table's shape survives.
TEST(LatencyModelChanges, ACalibrationTenTimesTooFastIsCorrectedOnceNotRepeatedly) {
  LatencyModel m;
  LatencyTable t;
  for (std::size_t n = 1; n <= 4; ++n) t.push_back({n, ms(10.0 * n), ms(10.0 * n), ms(10.0 * n)});
  m.seed(t);
  for (int i = 0; i < 20; ++i) m.observe(1, ms(100.0));
  EXPECT_NEAR(to_ms(*m.typical(1)), 100.0, 1.0);
  EXPECT_NEAR(to_ms(*m.typical(3)), 300.0, 30.0);
  EXPECT_LE(m.changes_detected(), 2u);
}

}  // namespace
}  // namespace sluice::control
