// The out-of-memory follow-up on its own: which ranges it tries, splits and gives up on, in which
// order, for scripted outcomes (a memory cap, nothing fits, a half that fails otherwise).
#include <gtest/gtest.h>

#include <cstddef>
#include <functional>
#include <ostream>
#include <utility>
#include <vector>

#include "sluice/batching/oom_split.hpp"

namespace sluice::batching {
// Readable ranges in failure messages (found by argument-dependent lookup).
void PrintTo(const ItemRange& r, std::ostream* os) { *os << "[" << r.begin << ", " << r.end << ")"; }
}  // namespace sluice::batching

namespace {

using sluice::batching::follow_up_oom;
using sluice::batching::halves;
using sluice::batching::ItemRange;
using sluice::batching::TryOutcome;

/// Everything follow_up_oom did, in order.
struct Trace {
  std::vector<ItemRange> tries;
  std::vector<ItemRange> splits;
  std::vector<ItemRange> exhausted;

  std::vector<std::size_t> try_sizes() const {
    std::vector<std::size_t> sizes;
    for (const ItemRange& r : tries) sizes.push_back(r.size());
    return sizes;
  }
};

/// Follows up a first try of `r` that ended with `first`; later tries end as `outcome(range)` says.
Trace follow(ItemRange r, TryOutcome first, const std::function<TryOutcome(ItemRange)>& outcome) {
  Trace t;
  follow_up_oom(
      r, first,
      [&](ItemRange x) {
        t.tries.push_back(x);
        return outcome(x);
      },
      [&](ItemRange x) { t.splits.push_back(x); }, [&](ItemRange x) { t.exhausted.push_back(x); });
  return t;
}

/// Runs out of memory above `cap` requests.
std::function<TryOutcome(ItemRange)> fits_up_to(std::size_t cap) {
  return [cap](ItemRange r) { return r.size() > cap ? TryOutcome::out_of_memory : TryOutcome::ok; };
}

TryOutcome never_fits(ItemRange) { return TryOutcome::out_of_memory; }

TEST(OomSplit, HalvesGiveTheSmallerHalfFirst) {
  EXPECT_EQ(halves({0, 8}), std::make_pair(ItemRange{0, 4}, ItemRange{4, 8}));
  EXPECT_EQ(halves({0, 7}), std::make_pair(ItemRange{0, 3}, ItemRange{3, 7}));
  EXPECT_EQ(halves({0, 2}), std::make_pair(ItemRange{0, 1}, ItemRange{1, 2}));
  EXPECT_EQ(halves({0, 3}), std::make_pair(ItemRange{0, 1}, ItemRange{1, 3}));
  // Ranges deep inside a batch keep their offsets.
  EXPECT_EQ(halves({5, 10}), std::make_pair(ItemRange{5, 7}, ItemRange{7, 10}));
}

TEST(OomSplit, SuccessOrOtherFailureIsFinal) {
  for (TryOutcome first : {TryOutcome::ok, TryOutcome::failed}) {
    const Trace t = follow({0, 8}, first, never_fits);
    EXPECT_TRUE(t.tries.empty());
    EXPECT_TRUE(t.splits.empty());
    EXPECT_TRUE(t.exhausted.empty());
  }
}

TEST(OomSplit, SingleRequestOutOfMemoryIsExhaustedWithoutRetry) {
  const Trace t = follow({3, 4}, TryOutcome::out_of_memory, never_fits);
  EXPECT_TRUE(t.tries.empty());
  EXPECT_TRUE(t.splits.empty());
  ASSERT_EQ(t.exhausted.size(), 1u);
  EXPECT_EQ(t.exhausted[0], (ItemRange{3, 4}));
}

TEST(OomSplit, EmptyRangeDoesNothing) {
  const Trace t = follow({2, 2}, TryOutcome::out_of_memory, never_fits);
  EXPECT_TRUE(t.tries.empty());
  EXPECT_TRUE(t.splits.empty());
  EXPECT_TRUE(t.exhausted.empty());
}

TEST(OomSplit, PairSplitsIntoTwoSingles) {
  const Trace t = follow({0, 2}, TryOutcome::out_of_memory, fits_up_to(1));
  EXPECT_EQ(t.tries, (std::vector<ItemRange>{{0, 1}, {1, 2}}));
  EXPECT_EQ(t.splits, (std::vector<ItemRange>{{0, 2}}));
  EXPECT_TRUE(t.exhausted.empty());
}

TEST(OomSplit, EvenBatchHalvesUntilItFits) {
  // 8 with room for 2: 4 and 4 run out too, their halves of 2 fit.
  const Trace t = follow({0, 8}, TryOutcome::out_of_memory, fits_up_to(2));
  EXPECT_EQ(t.try_sizes(), (std::vector<std::size_t>{4, 2, 2, 4, 2, 2}));
  EXPECT_EQ(t.tries, (std::vector<ItemRange>{{0, 4}, {0, 2}, {2, 4}, {4, 8}, {4, 6}, {6, 8}}));
  EXPECT_EQ(t.splits, (std::vector<ItemRange>{{0, 8}, {0, 4}, {4, 8}}));
  EXPECT_TRUE(t.exhausted.empty());
}

TEST(OomSplit, OddBatchTriesEachHalfDepthFirst) {
  // 7 -> 3 + 4; 3 runs out -> 1 + 2 (both fit) before 4 is tried; 4 -> 2 + 2.
  const Trace t = follow({0, 7}, TryOutcome::out_of_memory, fits_up_to(2));
  EXPECT_EQ(t.try_sizes(), (std::vector<std::size_t>{3, 1, 2, 4, 2, 2}));
  EXPECT_EQ(t.tries, (std::vector<ItemRange>{{0, 3}, {0, 1}, {1, 3}, {3, 7}, {3, 5}, {5, 7}}));
  EXPECT_EQ(t.splits, (std::vector<ItemRange>{{0, 7}, {0, 3}, {3, 7}}));
  EXPECT_TRUE(t.exhausted.empty());
}

TEST(OomSplit, FirstHalfThatFitsIsNotSplitFurther) {
  // 5 with room for 2: the first half (2) fits at once, the second (3) is split.
  const Trace t = follow({10, 15}, TryOutcome::out_of_memory, fits_up_to(2));
  EXPECT_EQ(t.tries, (std::vector<ItemRange>{{10, 12}, {12, 15}, {12, 13}, {13, 15}}));
  EXPECT_EQ(t.splits, (std::vector<ItemRange>{{10, 15}, {12, 15}}));
}

TEST(OomSplit, NothingFitsExhaustsEveryRequestOnceInOrder) {
  const Trace t = follow({0, 5}, TryOutcome::out_of_memory, never_fits);
  EXPECT_EQ(t.try_sizes(), (std::vector<std::size_t>{2, 1, 1, 3, 1, 2, 1, 1}));
  EXPECT_EQ(t.splits, (std::vector<ItemRange>{{0, 5}, {0, 2}, {2, 5}, {3, 5}}));
  EXPECT_EQ(t.exhausted, (std::vector<ItemRange>{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}}));
}

TEST(OomSplit, HalfFailingOtherwiseIsNotRetried) {
  // The first half fails for another reason (its try recorded that); the second still runs.
  const Trace t = follow({0, 6}, TryOutcome::out_of_memory, [](ItemRange r) {
    return r.begin == 0 ? TryOutcome::failed : TryOutcome::ok;
  });
  EXPECT_EQ(t.tries, (std::vector<ItemRange>{{0, 3}, {3, 6}}));
  EXPECT_EQ(t.splits, (std::vector<ItemRange>{{0, 6}}));
  EXPECT_TRUE(t.exhausted.empty());
}

TEST(OomSplit, EveryBatchSizeCoversEachRequestExactlyOnce) {
  for (std::size_t n = 1; n <= 64; ++n) {
    SCOPED_TRACE(n);
    const Trace t = follow({0, n}, TryOutcome::out_of_memory, never_fits);
    // A binary tree over n leaves: n - 1 splits, two tries per split, every leaf given up on.
    EXPECT_EQ(t.splits.size(), n - 1);
    EXPECT_EQ(t.tries.size(), 2 * (n - 1));
    ASSERT_EQ(t.exhausted.size(), n);
    for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(t.exhausted[i], (ItemRange{i, i + 1}));
    // Halves never differ by more than one request.
    for (const ItemRange& s : t.splits) {
      const auto [a, b] = halves(s);
      EXPECT_LE(b.size() - a.size(), 1u);
      EXPECT_GE(a.size(), 1u);
    }
  }
}

TEST(OomSplit, RangesThatFitCoverTheBatchExactly) {
  // With room for `cap`: the tries that fit cover every request once, and only ranges above the
  // cap are split.
  for (std::size_t n = 2; n <= 40; ++n) {
    for (std::size_t cap = 1; cap < n; ++cap) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " cap=" << cap);
      const Trace t = follow({0, n}, TryOutcome::out_of_memory, fits_up_to(cap));
      std::size_t covered = 0;
      for (const ItemRange& r : t.tries) {
        if (r.size() <= cap) covered += r.size();
      }
      EXPECT_EQ(covered, n);  // the ranges that fit cover the batch exactly
      for (const ItemRange& s : t.splits) EXPECT_GT(s.size(), cap);
      EXPECT_TRUE(t.exhausted.empty());
    }
  }
}

}  // namespace
