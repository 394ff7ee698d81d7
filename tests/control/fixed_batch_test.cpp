// FixedBatch: full batch at once, preferred sizes, otherwise whatever is queued after the delay.
#include "sluice/control/fixed_batch.hpp"

#include <gtest/gtest.h>

#include "support/control_test_util.hpp"

namespace sluice::control {
namespace {
using namespace test;

TEST(FixedBatch, DispatchesFullBatchesAtOnceAndPartialOnesAfterTheDelay) {
  FixedBatch c(FixedBatch::Options{8, ms(5)});
  Queue q;
  q.oldest = at_ms(10);
  q.deadlines.assign(9, kNever);
  EXPECT_EQ(c.decide(q.state(), at_ms(10)).dispatch, 8u);
  q.deadlines.assign(3, kNever);
  const auto d = c.decide(q.state(), at_ms(11));
  EXPECT_EQ(d.dispatch, 0u);
  EXPECT_EQ(d.wait_until, at_ms(15));
  EXPECT_EQ(c.decide(q.state(), at_ms(15)).dispatch, 3u);
}

TEST(FixedBatch, TakesAPreferredSizeAsSoonAsItIsQueued) {
  FixedBatch c(FixedBatch::Options{16, ms(100)});
  Queue q;
  const std::size_t preferred[] = {4, 8};
  q.deadlines.assign(5, kNever);
  auto s = q.state();
  s.preferred_batch_sizes = preferred;
  EXPECT_EQ(c.decide(s, t0()).dispatch, 4u);
}

TEST(FixedBatch, NeverAboveTheBatcherCap) {
  FixedBatch c(FixedBatch::Options{32, ms(1)});
  Queue q;
  q.max_batch_size = 6;
  q.deadlines.assign(40, kNever);
  EXPECT_EQ(c.decide(q.state(), t0()).dispatch, 6u);
}

}  // namespace
}  // namespace sluice::control
