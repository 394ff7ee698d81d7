// SloController against synthetic latency on a manual clock.
#include "sluice/control/slo_controller.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "support/control_test_util.hpp"

namespace sluice::control {
namespace {
using namespace test;

// T(n) = 10 + 5n ms, exact (no noise) so that every quantile equals it.
double linear_ms(std::size_t n) { return 10.0 + 5.0 * static_cast<double>(n); }

LatencyTable table_of(const std::function<double(std::size_t)>& f, std::size_t max_n) {
  LatencyTable t;
  for (std::size_t n = 1; n <= max_n; ++n) t.push_back({n, ms(f(n)), ms(f(n)), ms(f(n))});
  return t;
}

SloController with_table(const std::function<double(std::size_t)>& f, std::size_t max_n = 16,
                         std::size_t mem_cap = 0) {
  SloController::Options o;
  o.calibration = table_of(f, max_n);
  o.max_batch_size = mem_cap;
  return SloController(o);
}

// The largest k whose batch latency fits in `budget_ms` (the reference the controller must match).
std::size_t largest_fitting(const std::function<double(std::size_t)>& f, double budget_ms, std::size_t cap) {
  std::size_t best = 0;
  for (std::size_t k = 1; k <= cap; ++k)
    if (f(k) <= budget_ms) best = k;
  return best;
}

TEST(SloController, TakesTheLargestBatchThatMeetsTheEarliestDeadlines) {
  for (double budget : {16.0, 27.0, 40.0, 49.0}) {
    auto c = with_table(linear_ms);
    Queue q;
    q.deadlines.assign(8, at_ms(budget));
    const auto d = c.decide(q.state(), t0());
    EXPECT_EQ(d.dispatch, largest_fitting(linear_ms, budget, 8)) << "budget " << budget;
    EXPECT_EQ(d.shed_deadline_before, TimePoint::min());
  }
}

TEST(SloController, StartsFromTheCalibrationTable) {
  // Without a table nothing is known: it serves what is queued. With one it plans at once.
  SloController cold;
  Queue q;
  q.deadlines.assign(8, at_ms(40));
  EXPECT_EQ(cold.decide(q.state(), t0()).dispatch, 8u);
  auto warm = with_table(linear_ms);
  EXPECT_EQ(warm.decide(q.state(), t0()).dispatch, 6u);
}

TEST(SloController, PrefersTheMoreEfficientSplit) {
  // Batch 4 is slower than two batches of 2 (like CBAM-ResUNet on the A5000): take 2.
  auto f = [](std::size_t n) { return n == 1 ? 270.0 : n == 2 ? 395.0 : n == 3 ? 666.0 : 938.0; };
  auto c = with_table(f, 4);
  Queue q;
  q.deadlines.assign(4, at_ms(5000));
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, 2u);
}

// Builds an arrival-rate estimate of 100/s: ten arrivals 10 ms apart while the lane is busy.
void feed_arrivals(SloController& c, Queue& q) {
  q.idle_lanes = 0;
  q.busy_lanes = 1;
  for (int i = 1; i <= 10; ++i) {
    q.deadlines.push_back(at_ms(10.0 * i + 1000));
    c.decide(q.state(), at_ms(10.0 * i));
  }
  q.idle_lanes = 1;
  q.busy_lanes = 0;
}

TEST(SloController, WaitsWhenBatchingPaysAndArrivalsAreNear) {
  auto gain = [](std::size_t n) { return 100.0 + 10.0 * static_cast<double>(n - 1); };
  auto c = with_table(gain);
  Queue q;
  feed_arrivals(c, q);
  EXPECT_NEAR(c.arrival_rate(at_ms(100)), 100.0, 12.0);
  q.deadlines = {at_ms(100 + 1000)};
  const auto d = c.decide(q.state(), at_ms(100));
  EXPECT_EQ(d.dispatch, 0u);
  EXPECT_GT(d.wait_until, at_ms(100));
  EXPECT_LE(d.wait_until, at_ms(1100 - gain(1)));
}

TEST(SloController, DoesNotWaitWhenBatchingGainsNothing) {
  auto proportional = [](std::size_t n) { return 50.0 * static_cast<double>(n); };
  auto c = with_table(proportional);
  Queue q;
  feed_arrivals(c, q);
  q.deadlines = {at_ms(100 + 1000)};
  EXPECT_EQ(c.decide(q.state(), at_ms(100)).dispatch, 1u);
}

TEST(SloController, DispatchesBeforeTheLastSafeMomentWhenNothingArrives) {
  auto gain = [](std::size_t n) { return 100.0 + 10.0 * static_cast<double>(n - 1); };
  auto c = with_table(gain);
  Queue q;
  feed_arrivals(c, q);
  const TimePoint deadline = at_ms(100 + 150);
  q.deadlines = {deadline};
  TimePoint t = at_ms(100);
  Decision d = c.decide(q.state(), t);
  int steps = 0;
  while (d.dispatch == 0 && steps++ < 1000) {
    ASSERT_GT(d.wait_until, t);  // always progresses
    ASSERT_NE(d.wait_until, kNever);
    t = d.wait_until;
    d = c.decide(q.state(), t);
  }
  ASSERT_EQ(d.dispatch, 1u);
  EXPECT_GT(t, at_ms(100 + 20));           // it did wait while a second item could still fit
  EXPECT_LE(t + ms(gain(1)), deadline);     // and the head still made it
}

TEST(SloController, AdaptsAfterALatencyStep) {
  SloController c;
  auto feed = [&](double factor) {
    for (int rep = 0; rep < 20; ++rep)
      for (std::size_t n = 1; n <= 8; ++n) c.observe(record(n, t0(), ms(factor * linear_ms(n))));
  };
  Queue q;
  q.deadlines.assign(8, at_ms(42));
  feed(1.0);
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, largest_fitting(linear_ms, 42, 8));  // 6
  feed(1.3);  // the device becomes 30% slower
  auto slow = [](std::size_t n) { return 1.3 * linear_ms(n); };
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, largest_fitting(slow, 42, 8));  // 4
  feed(1.0);  // and recovers
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, largest_fitting(linear_ms, 42, 8));
}

TEST(SloController, NeverExceedsTheMemorySafeSize) {
  auto c = with_table(linear_ms, 16, /*mem_cap=*/4);
  Queue q;
  q.deadlines.assign(20, at_ms(10000));
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, 4u);
  q.max_batch_size = 3;  // the Batcher's own cap is lower
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, 3u);
  q.max_batch_size = 64;
  BatchRecord oom = record(4, t0(), ms(5));
  oom.ok = false;
  oom.out_of_memory = true;
  c.observe(oom);
  EXPECT_EQ(c.memory_cap(), 3u);
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, 3u);
}

TEST(SloController, ShedsOnlyHopelessRequests) {
  auto c = with_table(linear_ms);  // a batch of one takes 15 ms
  Queue q;
  q.deadlines = {at_ms(5), at_ms(12), at_ms(16), at_ms(100), at_ms(100)};
  const auto d = c.decide(q.state(), t0());
  EXPECT_GT(d.shed_deadline_before, at_ms(12));
  EXPECT_LE(d.shed_deadline_before, at_ms(16));
  EXPECT_GE(d.dispatch, 1u);

  Queue fine;
  fine.deadlines = {at_ms(16), at_ms(100)};
  EXPECT_EQ(c.decide(fine.state(), t0()).shed_deadline_before, TimePoint::min());
}

class SloControllerRandom : public ::testing::TestWithParam<bool> {};

TEST_P(SloControllerRandom, RandomStatesKeepTheInvariants) {
  const bool early_drop = GetParam();
  std::mt19937 rng(42);
  std::uniform_int_distribution<std::size_t> count(0, 40), cap(1, 16), lanes(0, 1);
  std::uniform_real_distribution<double> slack(-20.0, 200.0);
  SloController::Options o;
  o.calibration = table_of(linear_ms, 16);
  o.max_batch_size = 12;
  o.early_drop = early_drop;
  SloController c(o);
  for (int i = 0; i < 2000; ++i) {
    Queue q;
    q.max_batch_size = cap(rng);
    q.idle_lanes = lanes(rng);
    q.busy_lanes = 1 - q.idle_lanes;
    const TimePoint now = at_ms(i * 1000.0);
    double d = slack(rng);
    for (std::size_t k = count(rng); k > 0; --k) q.deadlines.push_back(now + ms(d += slack(rng) / 20 + 10));
    const auto decision = c.decide(q.state(), now);
    EXPECT_LE(decision.dispatch, std::min({q.deadlines.size(), q.max_batch_size, std::size_t{12}}));
    if (q.idle_lanes == 0) {
      EXPECT_EQ(decision.dispatch, 0u);
    }
    if (!q.deadlines.empty() && decision.dispatch == 0) {
      EXPECT_GE(decision.wait_until, now);
    }
    const TimePoint alone = now + ms(linear_ms(1)) + ms(1e-3);
    if (!early_drop || q.deadlines.size() <= 1 || q.idle_lanes == 0) {
      // Shedding never touches a request that a batch of one would still serve in time.
      EXPECT_LE(decision.shed_deadline_before, alone);
    } else {
      // An early drop gives up requests at the head for those behind it, never the last one when
      // it could still be served in time alone.
      const auto visible = q.state().deadlines;  // what the controller saw
      EXPECT_LE(decision.shed_deadline_before, std::max(alone, visible.back()));
    }
    if (decision.dispatch > 0) c.observe(record(decision.dispatch, now, ms(linear_ms(decision.dispatch))));
  }
}

INSTANTIATE_TEST_SUITE_P(EarlyDrop, SloControllerRandom, ::testing::Bool());

TEST(SloController, AdmissionRejectsWhatCannotBeServedBehindTheQueue) {
  auto c = with_table(linear_ms, 16, 16);  // best throughput: batches of 16 in 90 ms
  Queue q;
  EXPECT_TRUE(c.admit(q.state(), at_ms(20), t0()));
  EXPECT_FALSE(c.admit(q.state(), at_ms(10), t0()));  // even alone it needs 15 ms
  q.deadlines.assign(100, kNever);
  // 101 items: six batches of 16 (540 ms) and one of 5 (35 ms).
  EXPECT_FALSE(c.admit(q.state(), at_ms(560), t0()));
  EXPECT_TRUE(c.admit(q.state(), at_ms(580), t0()));
  SloController::Options o;
  o.calibration = table_of(linear_ms, 16);
  o.admission = false;
  SloController open(o);
  EXPECT_TRUE(open.admit(q.state(), at_ms(1), t0()));
}

TEST(SloController, RejectsBadOptions) {
  SloController::Options o;
  o.rate_window = 1;
  EXPECT_THROW(SloController{o}, Error);
  o = {};
  o.calibration = LatencyTable{{3, ms(5), ms(4), ms(6)}};
  EXPECT_THROW(SloController{o}, Error);
}

}  // namespace
}  // namespace sluice::control
