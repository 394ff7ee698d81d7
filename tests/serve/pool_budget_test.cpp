// The decode stage's building blocks: the FairPool's turn-taking and the MemoryBudget's accounting.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sluice/serve/fair_pool.hpp"
#include "sluice/serve/memory_budget.hpp"

namespace {

using namespace sluice::serve;

TEST(FairPool, AGroupPostedLaterTakesTurnsInsteadOfWaitingForTheWholeEarlierGroup) {
  std::mutex m;
  std::vector<std::string> order;
  std::promise<void> release, blocking;
  std::shared_future<void> gate = release.get_future().share();
  {
    FairPool pool(1);
    // Block the only thread so that both groups are queued before anything runs.
    pool.post_group({[gate, &blocking] {
      blocking.set_value();
      gate.wait();
    }});
    blocking.get_future().wait();
    std::vector<FairPool::Task> big, small;
    for (int i = 0; i < 8; ++i)
      big.push_back([&, i] {
        std::lock_guard lock(m);
        order.push_back("big" + std::to_string(i));
      });
    small.push_back([&] {
      std::lock_guard lock(m);
      order.push_back("small");
    });
    pool.post_group(std::move(big));
    pool.post_group(std::move(small));
    EXPECT_EQ(pool.queued(), 9u);
    release.set_value();
  }  // the destructor runs what is queued
  ASSERT_EQ(order.size(), 9u);
  EXPECT_EQ(order[0], "big0");
  EXPECT_EQ(order[1], "small");  // not after all eight
  for (int i = 1; i < 8; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i) + 1], "big" + std::to_string(i));
}

TEST(FairPool, RunsEveryTaskOnAllThreads) {
  std::atomic<int> ran{0};
  {
    FairPool pool(3);
    for (int g = 0; g < 20; ++g) {
      std::vector<FairPool::Task> tasks(5, [&] { ++ran; });
      pool.post_group(std::move(tasks));
    }
  }
  EXPECT_EQ(ran.load(), 100);
}

TEST(MemoryBudget, LeasesFitTheLimitAndGiveTheirBytesBack) {
  auto budget = std::make_shared<MemoryBudget>(1000);
  auto a = MemoryBudget::try_acquire(budget, 600);
  ASSERT_TRUE(a);
  EXPECT_FALSE(MemoryBudget::try_acquire(budget, 401));
  auto b = MemoryBudget::try_acquire(budget, 400);
  ASSERT_TRUE(b);
  EXPECT_EQ(budget->in_use(), 1000u);
  EXPECT_EQ(budget->rejections(), 1u);
  a.shrink_to(100);
  EXPECT_EQ(budget->in_use(), 500u);
  MemoryBudget::Lease moved = std::move(b);
  EXPECT_FALSE(b);
  EXPECT_EQ(budget->in_use(), 500u);
  moved.release();
  a = {};
  EXPECT_EQ(budget->in_use(), 0u);
  EXPECT_FALSE(MemoryBudget::try_acquire(budget, 1001));  // more than the whole budget
  EXPECT_TRUE(MemoryBudget::try_acquire(budget, 0));
}

TEST(MemoryBudget, ConcurrentLeasesNeverOvercommit) {
  auto budget = std::make_shared<MemoryBudget>(10'000);
  std::atomic<std::size_t> peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 20'000; ++i) {
        auto lease = MemoryBudget::try_acquire(budget, 3000);
        if (!lease) continue;
        std::size_t seen = budget->in_use(), prev = peak.load();
        while (seen > prev && !peak.compare_exchange_weak(prev, seen)) {
        }
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_LE(peak.load(), 9000u);  // three leases of 3000 at most
  EXPECT_EQ(budget->in_use(), 0u);
}

TEST(MemoryBudget, TheDefaultFitsTheMachine) {
  EXPECT_GT(default_memory_budget_bytes(), 0u);
  EXPECT_LE(default_memory_budget_bytes(), available_memory_bytes() / 4);
}

}  // namespace
