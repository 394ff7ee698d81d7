// The batch-formation state machine, driven by a manual clock: one test per rule.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "sluice/batching/batch_former.hpp"
#include "sluice/control/fixed_batch.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::Decision;
using sluice::Duration;
using sluice::errc;
using sluice::kNever;
using sluice::QueueState;
using sluice::TimePoint;
using sluice::batching::BatchFormer;
using sluice::batching::FormerConfig;

const TimePoint t0 = TimePoint{} + 1h;  // the manual clock's origin

/// A controller the test scripts: it records what it saw and answers what it is told.
struct ScriptedController {
  Decision answer = Decision::wait(kNever);
  std::vector<QueueState> seen;
  std::vector<std::vector<TimePoint>> seen_deadlines;
  Decision decide(const QueueState& q, TimePoint) {
    seen.push_back(q);
    seen_deadlines.emplace_back(q.deadlines.begin(), q.deadlines.end());
    return answer;
  }
  void observe(const sluice::BatchRecord&) {}
};

struct Refusing : ScriptedController {
  bool admit_answer = false;
  int admit_calls = 0;
  bool admit(const QueueState&, TimePoint, TimePoint) {
    ++admit_calls;
    return admit_answer;
  }
};
static_assert(sluice::AdmittingController<Refusing>);

FormerConfig config(std::size_t max_batch, Duration delay, std::size_t queue = 64, std::size_t levels = 1,
                    std::size_t slots = 1) {
  FormerConfig c;
  c.max_batch_size = max_batch;
  c.max_queue_delay = delay;
  c.max_queue_size = queue;
  c.priority_levels = levels;
  c.slots = slots;
  return c;
}

template <class Former>
sluice::batching::ItemId push(Former& f, int payload, std::uint64_t key, std::size_t prio, TimePoint now,
                              TimePoint deadline = kNever) {
  auto a = f.push(payload, key, prio, deadline, now);
  EXPECT_FALSE(a.ec) << a.ec.message();
  return a.id;
}

template <class Batch>
std::vector<int> payloads(const Batch& b) {
  std::vector<int> r;
  for (const auto& it : b.items) r.push_back(it.payload);
  return r;
}

using Fixed = sluice::control::FixedBatch;

TEST(BatchFormer, HigherPriorityFirstFifoWithinLevel) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 1s, 64, 3), c);
  push(f, 1, 0, 0, t0);
  push(f, 2, 0, 2, t0 + 1us);
  push(f, 3, 0, 1, t0 + 2us);
  push(f, 4, 0, 2, t0 + 3us);
  push(f, 5, 0, 0, t0 + 4us);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  EXPECT_FALSE(f.next_batch(t0 + 5us, b, shed));  // 5 < 8 and the delay has not passed
  ASSERT_TRUE(f.next_batch(t0 + 1s, b, shed));    // the oldest item has waited the delay
  EXPECT_EQ(payloads(b), (std::vector<int>{2, 4, 3, 1, 5}));
  EXPECT_TRUE(shed.empty());
}

TEST(BatchFormer, BatchTakesHighPriorityFirstWhenItCannotTakeAll) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(2, 0s, 64, 2), c);
  push(f, 1, 0, 0, t0);
  push(f, 2, 0, 0, t0);
  push(f, 3, 0, 1, t0);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(payloads(b), (std::vector<int>{3, 1}));
  f.release_slot();
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(payloads(b), (std::vector<int>{2}));
}

TEST(BatchFormer, KeysAreNeverMixedAndTheHeadKeyGoesFirst) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 0s, 64, 2, 1), c);
  push(f, 10, /*key*/ 7, 0, t0);        // oldest, low priority
  push(f, 20, /*key*/ 9, 0, t0 + 1us);
  push(f, 11, /*key*/ 7, 0, t0 + 2us);
  push(f, 21, /*key*/ 9, 1, t0 + 3us);  // the only high-priority item: its key goes first
  push(f, 22, /*key*/ 9, 0, t0 + 4us);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  ASSERT_TRUE(f.next_batch(t0 + 5us, b, shed));
  EXPECT_EQ(b.key, 9u);
  EXPECT_EQ(payloads(b), (std::vector<int>{21, 20, 22}));
  for (const auto& it : b.items) EXPECT_EQ(it.key, 9u);
  f.release_slot();
  ASSERT_TRUE(f.next_batch(t0 + 5us, b, shed));
  EXPECT_EQ(b.key, 7u);
  EXPECT_EQ(payloads(b), (std::vector<int>{10, 11}));
  EXPECT_TRUE(f.empty());
}

TEST(BatchFormer, SamePriorityPicksTheKeyOfTheOldestHead) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 0s), c);
  push(f, 1, 5, 0, t0);
  push(f, 2, 3, 0, t0 + 1us);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  ASSERT_TRUE(f.next_batch(t0 + 2us, b, shed));
  EXPECT_EQ(b.key, 5u);
}

TEST(BatchFormer, ControllerSeesTheHeadKeyOnly) {
  ScriptedController c;
  c.answer = Decision::wait(t0 + 1ms);
  BatchFormer<int, ScriptedController> f(config(4, 1ms, 64, 1, 2), c);
  push(f, 1, 1, 0, t0, t0 + 9ms);
  push(f, 2, 2, 0, t0 + 1us);
  push(f, 3, 1, 0, t0 + 2us, t0 + 7ms);
  push(f, 4, 1, 0, t0 + 3us);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  EXPECT_FALSE(f.next_batch(t0 + 4us, b, shed));
  ASSERT_EQ(c.seen.size(), 1u);
  const QueueState& q = c.seen[0];
  EXPECT_EQ(q.queued, 3u);
  EXPECT_EQ(q.total_queued, 4u);
  EXPECT_EQ(q.max_batch_size, 4u);
  EXPECT_EQ(q.oldest_arrival, t0);
  EXPECT_EQ(q.earliest_deadline, t0 + 7ms);
  EXPECT_EQ(c.seen_deadlines[0], (std::vector<TimePoint>{t0 + 9ms, t0 + 7ms, kNever}));
  EXPECT_EQ(q.idle_lanes, 2u);
  EXPECT_EQ(q.busy_lanes, 0u);
  EXPECT_EQ(q.max_queue_delay, 1ms);
}

TEST(BatchFormer, FullQueueRejectsAtOnce) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 1s, /*queue*/ 2), c);
  push(f, 1, 0, 0, t0);
  push(f, 2, 0, 0, t0);
  int p = 3;
  auto a = f.push(p, 0, 0, kNever, t0);
  EXPECT_EQ(a.ec, errc::queue_full);
  EXPECT_FALSE(a.by_controller);
  EXPECT_EQ(p, 3);  // left with the caller
  EXPECT_EQ(f.size(), 2u);
}

TEST(BatchFormer, AFullQueueCannotGrowSoItDispatchesWithoutWaiting) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 1s, /*queue*/ 3), c);
  push(f, 1, 0, 0, t0);
  push(f, 2, 0, 0, t0);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  EXPECT_FALSE(f.next_batch(t0, b, shed));
  EXPECT_EQ(f.next_wakeup(), t0 + 1s);
  push(f, 3, 0, 0, t0);
  ASSERT_TRUE(f.next_batch(t0, b, shed));  // nothing else can join: no point waiting 1 s
  EXPECT_EQ(b.items.size(), 3u);
}

TEST(BatchFormer, DispatchesAtOnceWhenMaxBatchSizeIsQueued) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(4, 1s), c);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  for (int i = 0; i < 3; ++i) {
    push(f, i, 0, 0, t0);
    EXPECT_FALSE(f.next_batch(t0, b, shed));
  }
  push(f, 3, 0, 0, t0);
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(payloads(b), (std::vector<int>{0, 1, 2, 3}));
}

TEST(BatchFormer, DispatchesAtMaxSizeEvenIfTheControllerWantsToWait) {
  ScriptedController c;
  c.answer = Decision::wait(t0 + 1h);
  BatchFormer<int, ScriptedController> f(config(2, 1s), c);
  push(f, 1, 0, 0, t0);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  EXPECT_FALSE(f.next_batch(t0, b, shed));
  EXPECT_EQ(f.next_wakeup(), t0 + 1h);
  push(f, 2, 0, 0, t0);
  push(f, 3, 0, 0, t0);
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(payloads(b), (std::vector<int>{1, 2}));
}

TEST(BatchFormer, WaitsTheDelayThenDispatchesWhatIsQueued) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 2ms), c);
  push(f, 1, 0, 0, t0);
  push(f, 2, 0, 0, t0 + 1ms);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  EXPECT_FALSE(f.next_batch(t0 + 1ms, b, shed));
  EXPECT_EQ(f.next_wakeup(), t0 + 2ms);  // the oldest item's delay, not the newest
  EXPECT_FALSE(f.next_batch(t0 + 2ms - 1ns, b, shed));
  ASSERT_TRUE(f.next_batch(t0 + 2ms, b, shed));
  EXPECT_EQ(b.items.size(), 2u);
}

TEST(BatchFormer, ZeroDelayDispatchesAlone) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 0s), c);
  push(f, 1, 0, 0, t0);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(b.items.size(), 1u);
}

TEST(BatchFormer, PreferredSizeDispatchesEarly) {
  Fixed c;
  auto cfg = config(8, 1s);
  cfg.preferred_batch_sizes = {2, 4};
  BatchFormer<int, Fixed> f(cfg, c);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  push(f, 1, 0, 0, t0);
  EXPECT_FALSE(f.next_batch(t0, b, shed));
  push(f, 2, 0, 0, t0);
  push(f, 3, 0, 0, t0);
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(b.items.size(), 2u);
}

TEST(BatchFormer, DoesNotWaitPastADeadline) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 10ms), c);
  push(f, 1, 0, 0, t0, t0 + 3ms);  // waiting 10 ms would make it miss its deadline
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(b.items.size(), 1u);
  // With a deadline after the wait, it waits.
  f.release_slot();
  push(f, 2, 0, 0, t0, t0 + 50ms);
  EXPECT_FALSE(f.next_batch(t0, b, shed));
  EXPECT_EQ(f.next_wakeup(), t0 + 10ms);
}

TEST(BatchFormer, FlushDispatchesWithoutWaiting) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 1s), c);
  push(f, 1, 0, 0, t0);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  EXPECT_FALSE(f.next_batch(t0, b, shed));
  f.set_flush(true);
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(b.items.size(), 1u);
}

TEST(BatchFormer, DeadlinesExpireExactlyAtTheirTime) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 1s), c);
  push(f, 1, 0, 0, t0, t0 + 5ms);
  push(f, 2, 0, 0, t0, t0 + 3ms);
  push(f, 3, 0, 0, t0);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed, expired;
  EXPECT_TRUE(f.next_batch(t0, b, shed));  // 3 ms deadline < 1 s delay: goes now
  f.release_slot();
  EXPECT_TRUE(f.empty());

  // Without dispatching, the wake-up is the earliest deadline and items leave exactly then.
  BatchFormer<int, Fixed> g(config(8, 1s), c);
  push(g, 4, 0, 0, t0, t0 + 5ms);
  push(g, 5, 0, 0, t0, t0 + 3ms);
  push(g, 6, 0, 0, t0);
  push(g, 7, 0, 0, t0, t0 + 3ms);
  EXPECT_EQ(g.next_wakeup(), t0 + 3ms);
  g.expire(t0 + 3ms - 1ns, expired);
  EXPECT_TRUE(expired.empty());
  g.expire(t0 + 3ms, expired);
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_EQ(expired[0].payload, 5);  // by deadline, then arrival
  EXPECT_EQ(expired[1].payload, 7);
  EXPECT_EQ(g.next_wakeup(), t0 + 5ms);
  g.expire(t0 + 5ms, expired);
  ASSERT_EQ(expired.size(), 3u);
  EXPECT_EQ(expired[2].payload, 4);
  EXPECT_EQ(g.size(), 1u);
  EXPECT_EQ(g.next_wakeup(), kNever);
}

TEST(BatchFormer, ADeadlineAlreadyPassedIsRefused) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 1s), c);
  int p = 1;
  EXPECT_EQ(f.push(p, 0, 0, t0, t0).ec, errc::deadline_exceeded);
  EXPECT_EQ(f.push(p, 0, 0, t0 - 1ns, t0).ec, errc::deadline_exceeded);
  EXPECT_TRUE(f.empty());
}

TEST(BatchFormer, PriorityOutOfRangeIsInvalid) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 1s, 64, 2), c);
  int p = 1;
  EXPECT_EQ(f.push(p, 0, 2, kNever, t0).ec, errc::invalid_argument);
  EXPECT_FALSE(f.push(p, 0, 1, kNever, t0).ec);
}

TEST(BatchFormer, OnlyDispatchesWhenASlotIsFree) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(2, 0s, 64, 1, /*slots*/ 2), c);
  for (int i = 0; i < 6; ++i) push(f, i, 0, 0, t0);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  EXPECT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_FALSE(f.next_batch(t0, b, shed));
  EXPECT_EQ(f.busy_slots(), 2u);
  EXPECT_EQ(f.next_wakeup(), kNever);  // a finished batch, not the clock, frees a slot
  f.release_slot();
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(payloads(b), (std::vector<int>{4, 5}));
}

TEST(BatchFormer, ShedsWhatTheControllerSaysCannotMakeIt) {
  ScriptedController c;
  c.answer = Decision{0, t0 + 1ms, t0 + 4ms};
  BatchFormer<int, ScriptedController> f(config(8, 1ms), c);
  push(f, 1, 0, 0, t0, t0 + 2ms);
  push(f, 2, 0, 0, t0, t0 + 6ms);
  push(f, 3, 0, 0, t0, t0 + 3ms);
  push(f, 4, 0, 0, t0);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  EXPECT_FALSE(f.next_batch(t0, b, shed));
  ASSERT_EQ(shed.size(), 2u);
  std::set<int> shed_ids{shed[0].payload, shed[1].payload};
  EXPECT_EQ(shed_ids, (std::set<int>{1, 3}));
  EXPECT_EQ(f.size(), 2u);
  // The controller was asked again after shedding and saw the smaller queue.
  ASSERT_GE(c.seen.size(), 2u);
  EXPECT_EQ(c.seen.back().queued, 2u);
}

TEST(BatchFormer, ControllerDispatchCountIsClamped) {
  ScriptedController c;
  c.answer = Decision::now(100);
  BatchFormer<int, ScriptedController> f(config(3, 1s), c);
  for (int i = 0; i < 5; ++i) push(f, i, 0, 0, t0);
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(b.items.size(), 3u);
  f.release_slot();
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(b.items.size(), 2u);
}

TEST(BatchFormer, CancelRemovesAQueuedItemOnce) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(8, 1s), c);
  const auto a = push(f, 1, 0, 0, t0, t0 + 5ms);
  const auto b_id = push(f, 2, 0, 0, t0, t0 + 4ms);
  const auto c_id = push(f, 3, 0, 0, t0);
  auto got = f.cancel(b_id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->payload, 2);
  EXPECT_FALSE(f.cancel(b_id));          // not twice
  EXPECT_FALSE(f.cancel(0));             // never an id
  EXPECT_FALSE(f.cancel(0xdead00000001));  // unknown
  EXPECT_EQ(f.next_wakeup(), t0 + 5ms);  // its deadline left the heap too
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  f.set_flush(true);
  ASSERT_TRUE(f.next_batch(t0, b, shed));
  EXPECT_EQ(payloads(b), (std::vector<int>{1, 3}));
  EXPECT_FALSE(f.cancel(a));  // dispatched: no longer cancellable here
  EXPECT_FALSE(f.cancel(c_id));
  // A recycled node does not answer to the old id.
  const auto d = push(f, 4, 0, 0, t0);
  EXPECT_NE(d, a);
  EXPECT_FALSE(f.cancel(a));
  EXPECT_TRUE(f.cancel(d));
}

TEST(BatchFormer, AdmissionControllerCanRefuse) {
  Refusing c;
  BatchFormer<int, Refusing> f(config(8, 1s), c);
  int p = 1;
  auto a = f.push(p, 0, 0, t0 + 1ms, t0);
  EXPECT_EQ(a.ec, errc::queue_full);
  EXPECT_TRUE(a.by_controller);
  c.admit_answer = true;
  EXPECT_FALSE(f.push(p, 0, 0, t0 + 1ms, t0).ec);
  EXPECT_EQ(c.admit_calls, 2);
}

TEST(BatchFormer, BadConfigurationIsRejected) {
  Fixed c;
  auto expect_invalid = [&](FormerConfig cfg) {
    try {
      BatchFormer<int, Fixed> f(cfg, c);
      ADD_FAILURE() << "accepted a bad configuration";
    } catch (const sluice::Error& e) {
      EXPECT_EQ(e.code(), errc::invalid_argument);
    }
  };
  expect_invalid(config(0, 1s));
  expect_invalid(config(8, 1s, 0));
  expect_invalid(config(8, 1s, 8, 0));
  expect_invalid(config(8, 1s, 8, 1, 0));
  expect_invalid(config(8, -1s));
  auto pref = config(8, 1s);
  pref.preferred_batch_sizes = {4, 2};
  expect_invalid(pref);
  pref.preferred_batch_sizes = {9};
  expect_invalid(pref);
}

TEST(BatchFormer, ManyDistinctKeysDoNotLoseItems) {
  Fixed c;
  BatchFormer<int, Fixed> f(config(4, 0s, 1000, 1, 1), c);
  for (int i = 0; i < 100; ++i) push(f, i, static_cast<std::uint64_t>(i % 37), 0, t0 + std::chrono::microseconds(i));
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> shed;
  std::vector<int> seen;
  while (f.next_batch(t0 + 1s, b, shed)) {
    for (const auto& it : b.items) {
      EXPECT_EQ(it.key, b.key);
      seen.push_back(it.payload);
    }
    f.release_slot();
  }
  std::sort(seen.begin(), seen.end());
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], i);
}

// Property: under a random mix of pushes, cancels, expiries and dispatches, every accepted item
// leaves exactly once, batches never mix keys, and priorities are respected within a batch.
TEST(BatchFormer, RandomOperationsAccountForEveryItem) {
  std::mt19937_64 rng(12345);
  Fixed c;
  BatchFormer<int, Fixed> f(config(5, 3us, 40, 3, 2), c);
  TimePoint now = t0;
  std::map<int, sluice::batching::ItemId> live;
  std::set<int> left;
  int next = 0, accepted = 0;
  decltype(f)::Batch b;
  std::vector<decltype(f)::Item> out;
  std::size_t running = 0;
  auto leave = [&](int p) {
    EXPECT_TRUE(live.erase(p)) << p;
    EXPECT_TRUE(left.insert(p).second) << p;
  };
  for (int step = 0; step < 20000; ++step) {
    now += std::chrono::nanoseconds(rng() % 2000);
    switch (rng() % 5) {
      case 0:
      case 1: {
        int p = next++;
        const TimePoint dl = rng() % 3 == 0 ? now + std::chrono::nanoseconds(1 + rng() % 10000) : kNever;
        auto a = f.push(p, rng() % 3, rng() % 3, dl, now);
        if (!a.ec) {
          live[p] = a.id;
          ++accepted;
        }
        break;
      }
      case 2:
        if (!live.empty()) {
          auto it = live.begin();
          std::advance(it, static_cast<long>(rng() % live.size()));
          const int p = it->first;
          if (auto item = f.cancel(it->second)) {
            EXPECT_EQ(item->payload, p);
            leave(p);
          }
        }
        break;
      case 3:
        out.clear();
        f.expire(now, out);
        for (auto& it : out) {
          EXPECT_LE(it.deadline, now);
          leave(it.payload);
        }
        break;
      default:
        if (running > 0 && rng() % 2) {
          f.release_slot();
          --running;
        }
        out.clear();
        while (f.next_batch(now, b, out)) {
          ++running;
          EXPECT_LE(b.items.size(), 5u);
          for (std::size_t i = 0; i < b.items.size(); ++i) {
            EXPECT_EQ(b.items[i].key, b.key);
            if (i > 0) {
              EXPECT_GE(b.items[i - 1].priority, b.items[i].priority);
            }
            leave(b.items[i].payload);
          }
        }
        for (auto& it : out) leave(it.payload);
    }
    // A dispatched item must never be found by its old id.
    EXPECT_EQ(f.size(), live.size());
  }
  EXPECT_EQ(left.size() + live.size(), static_cast<std::size_t>(accepted));
}

}  // namespace
