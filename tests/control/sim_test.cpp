// The simulator of bench/control: its latency curve and its determinism (the published table
// depends on both).
#include <gtest/gtest.h>

#include "control_sim.hpp"
#include "hrnet_latency_curve.hpp"
#include "sluice/control/fixed_batch.hpp"
#include "sluice/control/slo_controller.hpp"

namespace sluice::bench {
namespace {

TEST(ControlSim, CurveInterpolatesBetweenMeasuredSizes) {
  const auto c = hrnet();
  EXPECT_DOUBLE_EQ(c.at(4), 232.6);
  EXPECT_DOUBLE_EQ(c.at(3), (125.7 + 232.6) / 2);
  EXPECT_DOUBLE_EQ(c.at(10), (462.8 + 684.3) / 2);
  EXPECT_DOUBLE_EQ(c.at(20), 1271.0 + (1271.0 - 684.3));  // continues the last segment
  // Capacity: the best n / latency(n) over 1..16, searched independently here.
  double best = 0;
  std::size_t arg = 0;
  for (std::size_t n = 1; n <= 16; ++n)
    if (1000.0 * n / c.at(n) > best) best = 1000.0 * n / c.at(n), arg = n;
  EXPECT_DOUBLE_EQ(c.capacity(), best);
  EXPECT_EQ(c.best_size(), arg);
  EXPECT_EQ(arg, 12u);
}

TEST(ControlSim, SameSeedSameResult) {
  const auto c = hrnet();
  const Trace t = poisson_trace("p", 0.8 * c.capacity(), 300.0, 3);
  SimOptions o;
  o.slo_ms = 2000;
  auto run = [&] {
    control::SloController::Options so;
    so.max_batch_size = 16;
    control::SloController slo(so);
    return simulate(c, t, slo, o);
  };
  const SimResult a = run(), b = run();
  EXPECT_EQ(a.requests, t.arrivals_s.size());
  EXPECT_EQ(a.on_time, b.on_time);
  EXPECT_EQ(a.batches, b.batches);
  EXPECT_EQ(a.p99_ms, b.p99_ms);
  EXPECT_EQ(a.on_time + a.late + a.dropped, a.requests);  // every request is accounted for once
}

TEST(ControlSim, LightLoadIsServedAloneAndOnTime) {
  const auto c = hrnet();
  const Trace t = poisson_trace("p", 0.5, 600.0, 4);  // one request every two seconds
  SimOptions o;
  o.slo_ms = 500;
  control::FixedBatch fixed(control::FixedBatch::Options{16, std::chrono::milliseconds(0)});
  const SimResult r = simulate(c, t, fixed, o);
  EXPECT_EQ(r.on_time, r.requests);
  EXPECT_NEAR(r.mean_batch(), 1.0, 0.02);
  EXPECT_NEAR(r.p50_ms, 63.3, 63.3 * 0.05);  // the batch-1 latency, within the noise
}

}  // namespace
}  // namespace sluice::bench
