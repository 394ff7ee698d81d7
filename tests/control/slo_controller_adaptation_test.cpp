// The SloController's mechanisms for tight SLOs: per-key latency models, hopeless judged at an
// optimistic quantile, admission that skips requests which will be shed, and the batch key the
// BatchFormer hands to controllers.
#include <gtest/gtest.h>

#include <random>

#include "sluice/batching/batch_former.hpp"
#include "sluice/control/slo_controller.hpp"
#include "support/control_test_util.hpp"

namespace sluice::control {
namespace {
using namespace test;

LatencyTable flat_table(double ms_per_batch, std::size_t max_n) {
  LatencyTable t;
  for (std::size_t n = 1; n <= max_n; ++n) t.push_back({n, ms(ms_per_batch * n), ms(ms_per_batch * n), ms(ms_per_batch * n)});
  return t;
}

SloController make(bool per_key, double hopeless_q = 0.05) {
  SloController::Options o;
  o.calibration = flat_table(10.0, 4);
  o.per_key_models = per_key;
  o.hopeless_quantile = hopeless_q;
  return SloController(o);
}

BatchRecord keyed(std::size_t n, TimePoint start, double run_ms, std::uint64_t key) {
  BatchRecord r = record(n, start, ms(run_ms));
  r.key = key;
  return r;
}

TEST(SloControllerPerKey, EachBatchKeyHasItsOwnLatency) {
  for (bool per_key : {true, false}) {
    auto c = make(per_key);
    // Key 7 (a larger input) runs twice as long as the table says; key 0 runs as the table says.
    for (int i = 0; i < 30; ++i) {
      c.observe(keyed(1, at_ms(i * 100.0), 20.0, 7));
      c.observe(keyed(1, at_ms(i * 100.0 + 50), 10.0, 0));
    }
    // A key-0 request due in 15 ms: it makes it alone (10 ms) unless key 7's latency blurs in.
    Queue q;
    q.deadlines = {at_ms(3000 + 15)};
    const auto d = c.decide(q.state(), at_ms(3000));
    if (per_key) {
      EXPECT_NEAR(to_ms(*c.model().typical(1)), 10.0, 0.5);
      ASSERT_NE(c.model(7), nullptr);
      EXPECT_NEAR(to_ms(*c.model(7)->typical(1)), 20.0, 1.0);
      EXPECT_EQ(d.dispatch, 1u);
      EXPECT_EQ(d.shed_deadline_before, TimePoint::min());
      // The same deadline under key 7 cannot be met: shed (a request queued behind it is kept).
      Queue q7;
      q7.deadlines = {at_ms(3000 + 15), at_ms(3000 + 500)};
      QueueState s = q7.state();
      s.key = 7;
      const auto d7 = c.decide(s, at_ms(3000));
      EXPECT_GT(d7.shed_deadline_before, at_ms(3000 + 15));
      EXPECT_LE(d7.shed_deadline_before, at_ms(3000 + 500));
    } else {  // one model answers for both keys: it cannot hold 10 ms and 20 ms at once
      EXPECT_EQ(c.model(7), &c.model());
      QueueState s = q.state();
      s.key = 7;
      const auto d7 = c.decide(s, at_ms(3000));
      EXPECT_EQ(d7.dispatch, d.dispatch);
      EXPECT_EQ(d7.shed_deadline_before, d.shed_deadline_before);
    }
  }
}

TEST(SloControllerPerKey, AStrangerSendingEverNewKeysCannotGrowIt) {
  auto c = make(true);
  for (std::uint64_t k = 1; k <= 10000; ++k) c.observe(keyed(1, at_ms(static_cast<double>(k)), 10.0, k));
  std::size_t models = 0;
  for (std::uint64_t k = 0; k <= 10000; ++k) models += c.model(k) != nullptr;
  EXPECT_LE(models, 64u);
  EXPECT_GE(models, 2u);
}

TEST(SloControllerHopeless, ARequestWithAFairChanceIsServedNotShed) {
  // Batches of one take 80..120 ms (uniform): median 100, 5th percentile ~82.
  for (double q : {0.05, 0.5}) {
    auto c = make(true, q);
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> run(80.0, 120.0);
    for (int i = 0; i < 16; ++i) c.observe(record(1, at_ms(i * 200.0), ms(run(rng))));
    Queue queue;
    const TimePoint now = at_ms(10000);
    // The head is in time unless its run is slower than ~the 40th percentile; one more is behind it.
    queue.deadlines = {now + ms(95), now + ms(1000)};
    const auto d = c.decide(queue.state(), now);
    if (q == 0.05) {
      EXPECT_EQ(d.shed_deadline_before, TimePoint::min());
      EXPECT_GE(d.dispatch, 1u);
    } else {  // judged at the median it is dropped
      EXPECT_GT(d.shed_deadline_before, now + ms(95));
    }
  }
}

TEST(SloControllerAdmission, RequestsThatWillBeShedDoNotCountAhead) {
  SloController::Options o;
  o.calibration = flat_table(10.0, 1);  // batches of one only, 10 ms each
  o.max_batch_size = 1;
  SloController c(o);
  Queue q;
  q.max_batch_size = 1;
  const TimePoint now = at_ms(1000);
  // A queued request whose deadline is already too close to be served: it will be shed.
  q.deadlines.assign(1, now + ms(3));
  QueueState s = q.state();
  s.total_queued = 1;
  EXPECT_TRUE(c.admit(s, now + ms(15), now));  // served right after the hopeless one is dropped
  // The same queue but servable: the new request must wait 10 ms behind it and misses 15 ms.
  q.deadlines.assign(1, now + ms(50));
  EXPECT_FALSE(c.admit(q.state(), now + ms(15), now));
}

// A model that judges every request hopeless would never see another batch and never learn it was
// wrong: after eight decisions in a row that shed everything, an idle lane with nothing else queued
// serves the last request instead of shedding it.
TEST(SloControllerHopeless, AnIdleLaneServesTheLastRequestSoTheModelKeepsLearning) {
  auto c = make(true);  // the table says 10 ms per item
  for (int i = 0; i < 16; ++i) c.observe(record(1, at_ms(i * 100.0), ms(50.0)));  // the lane says 50
  Queue q;
  const TimePoint now = at_ms(5000);
  q.deadlines = {now + ms(20), now + ms(30)};  // both hopeless at 50 ms
  // A few hopeless requests are simply shed ...
  for (int i = 0; i < 8; ++i) {
    const auto early = c.decide(q.state(), now);
    EXPECT_GT(early.shed_deadline_before, now + ms(30));
  }
  // ... but once everything has been shed eight times in a row, the last one is served.
  const auto d = c.decide(q.state(), now);
  EXPECT_GT(d.shed_deadline_before, now + ms(20));   // the first is shed
  EXPECT_LE(d.shed_deadline_before, now + ms(30));   // the last is kept
  EXPECT_EQ(d.dispatch, 1u);
  // Busy lane: nothing is kept for it.
  q.idle_lanes = 0;
  q.busy_lanes = 1;
  EXPECT_GT(c.decide(q.state(), now).shed_deadline_before, now + ms(30));
}

// The BatchFormer tells the controller which key it decides for and admits under.
struct KeyRecorder {
  std::vector<std::uint64_t> decided, admitted;
  Decision decide(const QueueState& q, TimePoint) {
    decided.push_back(q.key);
    return Decision::now(q.queued);
  }
  bool admit(const QueueState& q, TimePoint, TimePoint) {
    admitted.push_back(q.key);
    return true;
  }
  void observe(const BatchRecord&) {}
};

TEST(BatchFormerKeys, TheControllerSeesTheKeyOfTheHead) {
  KeyRecorder rec;
  batching::FormerConfig cfg;
  cfg.max_batch_size = 4;
  batching::BatchFormer<int, KeyRecorder> former(cfg, rec);
  int p = 0;
  ASSERT_TRUE(former.push(p, 42, 0, kNever, t0()));
  ASSERT_TRUE(former.push(p, 9, 0, kNever, t0()));
  EXPECT_EQ(rec.admitted, (std::vector<std::uint64_t>{42, 9}));
  batching::FormedBatch<int> batch;
  std::vector<batching::QueuedItem<int>> shed;
  ASSERT_TRUE(former.next_batch(t0(), batch, shed));
  EXPECT_EQ(batch.key, 42u);
  former.release_slot();
  ASSERT_TRUE(former.next_batch(t0(), batch, shed));
  EXPECT_EQ(batch.key, 9u);
  EXPECT_EQ(rec.decided, (std::vector<std::uint64_t>{42, 9}));
}

}  // namespace
}  // namespace sluice::control
