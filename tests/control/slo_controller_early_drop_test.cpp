// The SloController's mechanisms for the latency step and the size mix: the pooled tail of sparse
// batch sizes, the median tie-break of the plan, the early drop of head requests that would make
// later ones miss, admission that skips requests which will be dropped early and costs other keys'
// queue at the cheapest key, and the re-convergence to the best batch size after a latency step.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "sluice/control/latency_model.hpp"
#include "sluice/control/slo_controller.hpp"
#include "support/control_test_util.hpp"

namespace sluice::control {
namespace {
using namespace test;

// ---- pooled tail ----

// Size 1 runs often with log-normal noise (sigma 0.1); size 4 ran three times at exactly 30 ms.
LatencyModel sparse_size_model(bool pooled) {
  LatencyModel::Options o;
  o.pooled_tail = pooled;
  LatencyModel m(o);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> noise(0.0, 0.1);
  for (int i = 0; i < 60; ++i) m.observe(1, ms(10.0 * std::exp(noise(rng))));
  for (int i = 0; i < 3; ++i) m.observe(4, ms(30.0));
  return m;
}

TEST(LatencyModelPooledTail, ASparseSizeTakesItsTailFromTheSpreadOfEverySize) {
  const LatencyModel pooled = sparse_size_model(true), own = sparse_size_model(false);
  // Its own three samples say p99 = median = 30 ms: no tail at all.
  EXPECT_NEAR(to_ms(*own.estimate(4)), 30.0, 1e-6);
  EXPECT_NEAR(to_ms(*own.estimate_q(4, 0.05)), 30.0, 1e-6);
  // Pooled: the median stays 30, the p99 is 30 x the p99 of a log-normal with sigma 0.1
  // (exp(2.326 x 0.1) = 1.26; from ~60 noisy ratios, so within 1.12..1.45) and the p5 below it.
  EXPECT_NEAR(to_ms(*pooled.typical(4)), 30.0, 1e-6);
  const double p99 = to_ms(*pooled.estimate(4)) / 30.0, p5 = to_ms(*pooled.estimate_q(4, 0.05)) / 30.0;
  EXPECT_GT(p99, 1.12);
  EXPECT_LT(p99, 1.45);
  EXPECT_LT(p5, 0.92);
  EXPECT_GT(p5, 0.75);
}

// With pooled_tail_always off a full window answers from its own samples; on (the default), its
// tail is at least the pooled spread's: the 40 wide runs of size 1 are in the pool of 64.
TEST(LatencyModelPooledTail, AFullWindowAnswersFromItsOwnSamplesOnlyWhenNotAlwaysPooled) {
  for (bool always : {false, true}) {
    LatencyModel::Options o;  // pooled_tail by default
    o.pooled_tail_always = always;
    LatencyModel m(o);
    std::mt19937_64 rng(3);
    std::normal_distribution<double> noise(0.0, 0.2);
    for (int i = 0; i < 40; ++i) m.observe(1, ms(10.0 * std::exp(noise(rng))));  // a wide spread
    for (int i = 0; i < 16; ++i) m.observe(2, ms(20.0));                         // a full, exact window
    EXPECT_NEAR(to_ms(*m.typical(2)), 20.0, 1e-6);
    if (!always) {
      EXPECT_NEAR(to_ms(*m.estimate(2)), 20.0, 1e-6);
      EXPECT_NEAR(to_ms(*m.estimate_q(2, 0.05)), 20.0, 1e-6);
    } else {
      EXPECT_GT(to_ms(*m.estimate(2)), 20.0 * 1.2);  // sigma 0.2 spread over ~56 ratios
      EXPECT_LT(to_ms(*m.estimate_q(2, 0.05)), 20.0 * 0.9);
    }
  }
}

// ---- the plan's median tie-break ----

// Batches of one: median 10, p99 11 ms; of two: median 18, p99 19 ms.
LatencyTable two_sizes() {
  return {{1, ms(10), ms(11), ms(11)}, {2, ms(18), ms(19), ms(19)}};
}

TEST(SloControllerPlan, DoesNotGiveUpTheHeadForABatchThatSavesNoMore) {
  // Deadlines in 13 and 20.5 ms. At the p99 both plans meet one: one by one (11, then 22) meets the
  // head; together (19) meets the second and serves the head late for certain. At the median one
  // by one meets both (10, 20), together only the second: one by one it is.
  for (bool tie_break_applies : {true, false}) {
    SloController::Options o;
    o.calibration = two_sizes();
    o.max_batch_size = 2;
    SloController c(o);
    Queue q;
    const TimePoint now = at_ms(1000);
    // Control: when the second's deadline is out of reach one by one even at the median (19.5),
    // the batch of two, with less work, is the plan.
    q.deadlines = {now + ms(13), now + ms(tie_break_applies ? 20.5 : 19.5)};
    const auto d = c.decide(q.state(), now);
    EXPECT_EQ(d.dispatch, tie_break_applies ? 1u : 2u);
  }
}

// ---- early drop ----

// Batches of one run 8..12 ms (uniform): p5 ~8.5, median ~10, p99 ~11.9; a batch of two takes
// twice as long (no gain), so batches of two are never worth it but the plan sees two requests.
SloController spread_lane(bool early_drop) {
  SloController::Options o;
  o.calibration = LatencyTable{{1, ms(10), ms(12), ms(12)}, {2, ms(20), ms(24), ms(24)}};
  o.max_batch_size = 2;
  o.early_drop = early_drop;
  SloController c(o);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> run(8.0, 12.0);
  for (int i = 0; i < 80; ++i) c.observe(record(1, at_ms(i * 100.0), ms(run(rng))));
  return c;
}

TEST(SloControllerEarlyDrop, TheLaneIsWhatTheseTestsAssume) {
  const auto c = spread_lane(true);
  EXPECT_NEAR(to_ms(*c.model().typical(1)), 10.0, 0.4);
  EXPECT_GT(to_ms(*c.model().estimate(1)), 11.2);
  EXPECT_LT(to_ms(*c.model().estimate_q(1, 0.05)), 9.0);
}

TEST(SloControllerEarlyDrop, DropsTheHeadWhenServingItWouldMakeTheNextMiss) {
  for (bool early : {true, false}) {
    auto c = spread_lane(early);
    Queue q;
    q.max_batch_size = 2;
    const TimePoint now = at_ms(20000);
    // The head (9.5 ms) is not hopeless (p5 ~8.2) but misses at the median; serving it first makes
    // the second (19.5 ms) miss too (one by one: ~10, ~20). Dropped early, the second makes it.
    q.deadlines = {now + ms(9.5), now + ms(19.5)};
    const auto d = c.decide(q.state(), now);
    if (early) {
      EXPECT_GT(d.shed_deadline_before, now + ms(9.5));
      EXPECT_LE(d.shed_deadline_before, now + ms(19.5));
    } else {
      EXPECT_EQ(d.shed_deadline_before, TimePoint::min());
      EXPECT_EQ(d.dispatch, 1u);
    }
  }
}

TEST(SloControllerEarlyDrop, KeepsAHeadWithAFairChance) {
  auto c = spread_lane(true);
  Queue q;
  q.max_batch_size = 2;
  const TimePoint now = at_ms(20000);
  // The head (11 ms) misses at the p99 but makes it at the median, and so does the second (21.5 ms)
  // behind it: dropping the head would meet fewer at the median.
  q.deadlines = {now + ms(11), now + ms(21.5)};
  const auto d = c.decide(q.state(), now);
  EXPECT_EQ(d.shed_deadline_before, TimePoint::min());
  EXPECT_EQ(d.dispatch, 1u);
  // Alone, a head that misses at the median is served too: its lane time costs nobody anything.
  Queue alone;
  alone.max_batch_size = 2;
  alone.deadlines = {now + ms(9.5)};
  const auto a = c.decide(alone.state(), now);
  EXPECT_EQ(a.shed_deadline_before, TimePoint::min());
  EXPECT_EQ(a.dispatch, 1u);
}

// The head (10.8 ms) makes it at the median alone (~10) but not at the p99 (~11.9); served first,
// it makes the second (19.5 ms) miss at the median (~20). Dropping it meets as many at the median
// (one) and one more at the p99 -- a tie that used to drop the head. But the head is a likely
// success and the second's miss behind it only likely: on a real CPU lane, whose p99 is wide, the
// trade lost more requests than it saved. A head that misses at the median is still dropped.
TEST(SloControllerEarlyDrop, DoesNotGiveUpALikelySuccessForTheTailOfAnother) {
  auto c = spread_lane(true);
  Queue q;
  q.max_batch_size = 2;
  const TimePoint now = at_ms(20000);
  ASSERT_LT(to_ms(*c.model().typical(1)), 10.8);
  ASSERT_GT(to_ms(*c.model().estimate(1)), 10.8);
  q.deadlines = {now + ms(10.8), now + ms(19.5)};
  const auto d = c.decide(q.state(), now);
  EXPECT_EQ(d.shed_deadline_before, TimePoint::min());
  EXPECT_EQ(d.dispatch, 1u);
  q.deadlines = {now + ms(9.5), now + ms(19.5)};  // control: the head misses at the median
  EXPECT_GT(c.decide(q.state(), now).shed_deadline_before, now + ms(9.5));
}

TEST(SloControllerEarlyDrop, OtherKeysWaitingDoNotPayForAHeadThatMissesAlone) {
  for (bool others : {true, false}) {
    auto c = spread_lane(true);
    Queue q;
    q.max_batch_size = 2;
    const TimePoint now = at_ms(20000);
    q.deadlines = {now + ms(9.5)};  // misses at the p99 (and the median), not hopeless at p5
    QueueState s = q.state();
    if (others) s.total_queued = 3;  // requests of other batch keys wait behind it
    EXPECT_EQ(s.deadlines.size(), 1u);
    const auto d = c.decide(s, now);
    if (others) {
      EXPECT_GT(d.shed_deadline_before, now + ms(9.5));
    } else {
      EXPECT_EQ(d.shed_deadline_before, TimePoint::min());
      EXPECT_EQ(d.dispatch, 1u);
    }
  }
}

// A lane slowed down until its p99 nears the SLO: every visible request misses alone at the p99,
// yet both make it at the median (~10 ms). Dropping all of them for the sake of the ones behind
// would serve nobody; only heads that miss alone at the median go.
TEST(SloControllerEarlyDrop, WhenNothingVisibleMakesItAtTheP99TheMedianDecidesWhatGoes) {
  auto c = spread_lane(true);
  const TimePoint now = at_ms(20000);
  Queue q;
  q.max_batch_size = 2;
  q.deadlines = {now + ms(10.6), now + ms(11.0)};  // between the median and the p99 (~11.9)
  QueueState s = q.state();
  s.queued = s.total_queued = 6;  // more of the same key wait beyond the visible two
  const auto d = c.decide(s, now);
  EXPECT_EQ(d.shed_deadline_before, TimePoint::min());
  EXPECT_EQ(d.dispatch, 1u);
  // Other keys waiting instead may be cheaper and make it: the p99 rule stays, both go.
  s.queued = 2;
  const auto o = c.decide(s, now);
  EXPECT_GT(o.shed_deadline_before, now + ms(11.0));
  // Back to this key alone: served again.
  s.queued = 6;
  const auto d2 = c.decide(s, now);
  EXPECT_EQ(d2.shed_deadline_before, TimePoint::min());
  EXPECT_EQ(d2.dispatch, 1u);
  // A head below the median still goes: only it, the one with a fair chance stays.
  q.deadlines = {now + ms(9.0), now + ms(11.0)};
  s = q.state();
  s.queued = s.total_queued = 6;
  const auto e = c.decide(s, now);
  EXPECT_GT(e.shed_deadline_before, now + ms(9.0));
  EXPECT_LE(e.shed_deadline_before, now + ms(11.0));
}

// A key whose model is too slow must still run now and then, or it never learns: after eight
// decisions in a row that dropped everything visible, the last request is served.
TEST(SloControllerEarlyDrop, AKeyIsNotStarvedByItsOwnPessimisticModel) {
  auto c = spread_lane(true);
  const TimePoint now = at_ms(20000);
  Queue q;
  q.max_batch_size = 2;
  q.deadlines = {now + ms(9.5)};  // misses alone at the p99; other keys wait behind it
  QueueState s = q.state();
  s.total_queued = 3;
  for (int i = 0; i < 8; ++i) EXPECT_GT(c.decide(s, now).shed_deadline_before, now + ms(9.5)) << i;
  const auto d = c.decide(s, now);
  EXPECT_EQ(d.shed_deadline_before, TimePoint::min());
  EXPECT_EQ(d.dispatch, 1u);
}

// ---- admission ----

TEST(SloControllerAdmission, ARequestThatWillBeDroppedEarlyDoesNotCountAhead) {
  for (bool early : {true, false}) {
    auto c = spread_lane(early);
    Queue q;
    q.max_batch_size = 2;
    const TimePoint now = at_ms(20000);
    // Queued: one that misses alone at the p99 (9.5 ms): the newcomer (due in 15 ms) is why it
    // would be dropped early. Counted ahead, the newcomer would finish at ~2 x 8.2 ms > 15.
    q.deadlines = {now + ms(9.5)};
    EXPECT_EQ(c.admit(q.state(), now + ms(15), now), early);
  }
}

TEST(SloControllerAdmission, OtherKeysQueueCostsTheCheapestKeysTime) {
  SloController::Options o;
  o.calibration = LatencyTable{{1, ms(10), ms(10), ms(10)}};
  o.max_batch_size = 1;
  SloController c(o);
  // Key 0 runs in 10 ms, key 2 in 30 ms (its model learns that).
  for (int i = 0; i < 40; ++i) {
    BatchRecord r0 = record(1, at_ms(i * 100.0), ms(10));
    BatchRecord r2 = record(1, at_ms(i * 100.0 + 50), ms(30));
    r2.key = 2;
    c.observe(r0);
    c.observe(r2);
  }
  const TimePoint now = at_ms(10000);
  // A key-2 request arrives behind three queued key-0 requests: ~3 x 10 + 30 = 60 ms. Costed at
  // key 2's own 30 ms each it would look like 120 ms and be rejected.
  Queue none;
  none.max_batch_size = 1;
  QueueState s = none.state();
  s.key = 2;
  s.total_queued = 3;
  EXPECT_TRUE(c.admit(s, now + ms(75), now));
  EXPECT_FALSE(c.admit(s, now + ms(50), now));  // behind them even at 10 ms each it cannot make it
}

// ---- re-convergence after a latency step ----

// A lane where batches of four are the most efficient (T(n) = 20 + 5n ms): after it becomes 30%
// slower, batches of four take 52 ms and no longer fit a 45 ms budget; the controller must move to
// the best size that fits (three: 45.5 > 45, so two: 39 ms) within a few batches of the step.
TEST(SloControllerStep, ReconvergesToTheNewBestBatchSizeWithinAFewBatches) {
  SloController::Options o;
  LatencyTable t;
  for (std::size_t n = 1; n <= 8; ++n) {
    const double v = 20.0 + 5.0 * static_cast<double>(n);
    t.push_back({n, ms(v), ms(v * 1.05), ms(v * 1.07)});
  }
  o.calibration = t;
  o.max_batch_size = 8;
  SloController c(o);
  std::mt19937_64 rng(5);
  std::normal_distribution<double> noise(0.0, 0.03);
  auto run_ms = [&](std::size_t n, bool slow) {
    return (20.0 + 5.0 * static_cast<double>(n)) * (slow ? 1.3 : 1.0) * std::exp(noise(rng));
  };
  double clock = 0.0;
  std::size_t batches_after_step = 0, converged_at = 0;
  for (int i = 0; i < 200; ++i) {
    const bool slow = i >= 100;
    Queue q;
    const TimePoint now = at_ms(clock);
    q.deadlines.assign(8, now + ms(45));  // eight queued, all due in 45 ms
    const auto d = c.decide(q.state(), now);
    const std::size_t n = d.dispatch;
    ASSERT_GE(n, 1u);
    if (!slow) {
      if (i >= 20) {
        EXPECT_EQ(n, 4u) << "batch " << i;  // 40 ms (p99 ~43) fits before the step
      }
    } else {
      ++batches_after_step;
      if (n <= 2 && converged_at == 0) converged_at = batches_after_step;
      if (converged_at > 0) {
        EXPECT_LE(n, 2u) << "batch " << i;  // stays converged
      }
    }
    const double ran = run_ms(n, slow);
    c.observe(record(n, now, ms(ran)));
    clock += ran + 100.0;
  }
  ASSERT_GT(converged_at, 0u);
  EXPECT_LE(converged_at, 6u);  // the change detector's few samples, not a window's refill
}

// ---- a lone request on an idle lane ----

// A real CPU lane in a slow spell: the model's window of batch-1 runs holds 15 at 5 ms and one at
// 3 ms (the lane's fast level, measured: bench/results/2026-12-04-control-quiet.md). Its p5 is
// ~4.5 ms. A request alone on the idle lane with 4 ms left still has a fair chance (the spell may be
// over) and its run takes lane time from nobody: it is served. With another request queued behind
// it, the hopeless rule stays (its run would be the other's wait), and one that misses even at the
// fastest recent run is shed alone too.
TEST(SloControllerLoneRequest, AloneOnAnIdleLaneItIsShedOnlyWhenEvenTheFastestRecentRunMisses) {
  for (bool serve_lone : {true, false}) {
    SloController::Options o;
    o.serve_lone_request = serve_lone;
    o.model.detect_changes = false;  // the window as it stands: no rescale of it
    SloController c(o);
    TimePoint t = t0();
    for (int i = 0; i < 15; ++i) c.observe(record(1, t, ms(5.0))), t += ms(5.0);
    c.observe(record(1, t, ms(3.0)));
    const TimePoint now = at_ms(1000);
    const double p5 = to_ms(*c.model().estimate_q(1, 0.05)), fastest = to_ms(*c.model().estimate_q(1, 0.0));
    ASSERT_GT(p5, 4.2);
    ASSERT_LT(fastest, 3.5);

    Queue alone;
    alone.deadlines = {now + ms(4.0)};
    const Decision d = c.decide(alone.state(), now);
    if (serve_lone) {
      EXPECT_EQ(d.dispatch, 1u);
      EXPECT_LE(d.shed_deadline_before, now);
    } else {
      EXPECT_GT(d.shed_deadline_before, now + ms(4.0));  // the old rule: hopeless at the p5
    }

    Queue two;
    two.deadlines = {now + ms(4.0), now + ms(12.0)};
    EXPECT_GT(c.decide(two.state(), now).shed_deadline_before, now + ms(4.0));

    Queue hopeless;
    hopeless.deadlines = {now + ms(2.5)};
    EXPECT_GT(c.decide(hopeless.state(), now).shed_deadline_before, now + ms(2.5));
  }
}

}  // namespace
}  // namespace sluice::control
