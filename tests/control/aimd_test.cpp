// Aimd: additive growth on full batches under the target, 10% multiplicative back-off over it.
#include "sluice/control/aimd.hpp"

#include <gtest/gtest.h>

#include "support/control_test_util.hpp"

namespace sluice::control {
namespace {
using namespace test;

Aimd::Options options(double initial = 1.0) {
  Aimd::Options o;
  o.latency_target = ms(100);
  o.initial_batch_size = initial;
  return o;
}

TEST(Aimd, GrowsByTheStepAfterFullBatchesUnderTheTarget) {
  Aimd c(options());
  for (std::size_t expect = 1; expect <= 5; ++expect) {
    EXPECT_EQ(c.batch_size(), expect);
    c.observe(record(expect, t0(), ms(50)));
  }
  EXPECT_EQ(c.batch_size(), 6u);
}

TEST(Aimd, BacksOffByTenPercentOverTheTarget) {
  Aimd c(options(20.0));
  c.observe(record(20, t0(), ms(150)));
  EXPECT_EQ(c.batch_size(), 18u);  // 20 * 0.9
  c.observe(record(18, t0(), ms(150)));
  EXPECT_EQ(c.batch_size(), 16u);  // floor(16.2)
}

TEST(Aimd, BackoffAndStepAreConfigurable) {
  auto o = options(10.0);
  o.backoff = 0.5;
  o.additive_step = 3.0;
  Aimd c(o);
  c.observe(record(10, t0(), ms(50)));
  EXPECT_EQ(c.batch_size(), 13u);
  c.observe(record(13, t0(), ms(101)));
  EXPECT_EQ(c.batch_size(), 6u);  // floor(6.5)
}

TEST(Aimd, NeverBacksOffBelowOne) {
  Aimd c(options());
  for (int i = 0; i < 5; ++i) c.observe(record(1, t0(), ms(500)));
  EXPECT_EQ(c.batch_size(), 1u);
}

TEST(Aimd, PartialBatchesDoNotInflateTheSize) {
  Aimd c(options(4.0));
  c.observe(record(2, t0(), ms(10)));
  EXPECT_EQ(c.batch_size(), 4u);
}

TEST(Aimd, DispatchesAtMostTheCurrentSizeWhenALaneIsIdle) {
  Aimd c(options(4.0));
  Queue q;
  q.deadlines.assign(10, kNever);
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, 4u);
  q.deadlines.assign(2, kNever);
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, 2u);  // no delay configured: no waiting
  q.idle_lanes = 0;
  q.busy_lanes = 1;
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, 0u);
  q.deadlines.clear();
  EXPECT_EQ(c.decide(q.state(), t0()).wait_until, kNever);
}

TEST(Aimd, WaitsForAFullBatchUpToTheQueueDelay) {
  auto o = options(4.0);
  o.max_queue_delay = ms(5);
  Aimd c(o);
  Queue q;
  q.deadlines.assign(2, kNever);
  const auto d = c.decide(q.state(), at_ms(1));
  EXPECT_EQ(d.dispatch, 0u);
  EXPECT_EQ(d.wait_until, at_ms(5));
  EXPECT_EQ(c.decide(q.state(), at_ms(5)).dispatch, 2u);
}

TEST(Aimd, NeverGrowsPastTheBatcherCap) {
  Aimd c(options(3.0));
  Queue q;
  q.max_batch_size = 3;
  q.deadlines.assign(10, kNever);
  for (int i = 0; i < 5; ++i) {
    const auto d = c.decide(q.state(), t0());
    EXPECT_EQ(d.dispatch, 3u);
    c.observe(record(d.dispatch, t0(), ms(10)));
  }
  EXPECT_EQ(c.batch_size(), 3u);
}

TEST(Aimd, OutOfMemoryShrinksBelowTheFailedSize) {
  Aimd c(options(8.0));
  BatchRecord r = record(8, t0(), ms(10));
  r.ok = false;
  r.out_of_memory = true;
  c.observe(r);
  EXPECT_EQ(c.batch_size(), 7u);
}

TEST(Aimd, RejectsBadOptions) {
  EXPECT_THROW(Aimd(Aimd::Options{}), Error);  // no target
  auto o = options();
  o.backoff = 1.0;
  EXPECT_THROW(Aimd{o}, Error);
  o = options();
  o.initial_batch_size = 0.5;
  EXPECT_THROW(Aimd{o}, Error);
}

}  // namespace
}  // namespace sluice::control
