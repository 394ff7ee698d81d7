// The CUDA backend's caching allocator on a fake device (host memory with a capacity), so that its
// reuse, accounting, limit and out-of-memory retry are tested on any machine.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <vector>

#include "sluice/backends/cuda/caching_allocator.hpp"

namespace {

using sluice::cuda::CachingAllocator;

// A device with `capacity` bytes that records every raw call.
struct FakeDevice {
  explicit FakeDevice(std::size_t bytes) : capacity(bytes) {}
  std::size_t capacity = 0, used = 0;
  int allocs = 0, frees = 0;
  std::map<void*, std::size_t> live;  // pointer -> size

  CachingAllocator make(std::size_t limit = 0, bool retain_cache = false) {
    return CachingAllocator(
        [this](std::size_t n) -> void* {
          if (used + n > capacity) return nullptr;
          void* p = std::malloc(n);
          used += n;
          ++allocs;
          live.emplace(p, n);
          return p;
        },
        [this](void* p) {
          ++frees;
          used -= live.at(p);
          live.erase(p);
          std::free(p);
        },
        limit, retain_cache);
  }
};

TEST(CachingAllocator, CountsRequestedBytesAndTracksThePeak) {
  FakeDevice dev(1 << 20);
  {
    CachingAllocator a = dev.make();
    void* p = a.allocate(1000);
    void* q = a.allocate(3000, /*weight=*/true);
    EXPECT_EQ(a.stats().current_bytes, 4000u);
    EXPECT_EQ(a.stats().weight_bytes, 3000u);
    EXPECT_EQ(a.stats().peak_bytes, 4000u);
    a.deallocate(p);
    EXPECT_EQ(a.stats().current_bytes, 3000u);
    EXPECT_EQ(a.stats().peak_bytes, 4000u);
    a.reset_peak();
    EXPECT_EQ(a.stats().peak_bytes, 3000u);
    a.deallocate(q);
    EXPECT_EQ(a.stats().current_bytes, 0u);
    EXPECT_EQ(a.stats().weight_bytes, 0u);
    // block sizes: 1024 and 3072
    EXPECT_EQ(a.reserved_bytes(), 1024u + 3072u);
  }
  EXPECT_TRUE(dev.live.empty()) << "the destructor gives every cached block back";
}

TEST(CachingAllocator, ReusesAFreedBlockWithoutAskingTheDevice) {
  FakeDevice dev(1 << 20);
  CachingAllocator a = dev.make();
  void* p = a.allocate(5000);
  a.deallocate(p);
  void* q = a.allocate(4700);  // same 5120-byte block size class
  EXPECT_EQ(q, p);
  EXPECT_EQ(dev.allocs, 1);
  EXPECT_EQ(a.stats().current_bytes, 4700u);
  a.deallocate(q);
}

TEST(CachingAllocator, DoesNotPinAHugeBlockForASmallRequest) {
  FakeDevice dev(1 << 24);
  CachingAllocator a = dev.make();
  void* big = a.allocate(1 << 20);
  a.deallocate(big);
  void* small = a.allocate(1000);
  EXPECT_NE(small, big);
  EXPECT_EQ(dev.allocs, 2);
  EXPECT_EQ(a.cached_blocks(), 1u);
  a.deallocate(small);
}

TEST(CachingAllocator, BestFitPicksTheSmallestAdequateBlock) {
  FakeDevice dev(1 << 24);
  CachingAllocator a = dev.make();
  void* b8 = a.allocate(8192);
  void* b6 = a.allocate(6144);
  void* b12 = a.allocate(12288);
  a.deallocate(b8);
  a.deallocate(b6);
  a.deallocate(b12);
  void* p5 = a.allocate(5000);
  void* p7 = a.allocate(7000);
  void* p9 = a.allocate(9000);
  EXPECT_EQ(p5, b6);
  EXPECT_EQ(p7, b8);
  EXPECT_EQ(p9, b12);
  for (void* p : {p5, p7, p9}) a.deallocate(p);
}

TEST(CachingAllocator, ReleasesTheCacheAndRetriesWhenTheDeviceIsFull) {
  FakeDevice dev(10 * 1024);
  CachingAllocator a = dev.make();
  void* p = a.allocate(6 * 1024);
  a.deallocate(p);  // cached: 6 KiB of the 10 KiB device
  void* q = a.allocate(8 * 1024);  // does not fit beside the cached block, fits after releasing it
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(dev.frees, 1);
  EXPECT_EQ(a.reserved_bytes(), 8u * 1024u);
  a.deallocate(q);
}

// A pool that serves CUDA graphs: captured graphs hold its blocks' addresses, so nothing it has
// reserved goes back to the device before the pool itself is destroyed.
TEST(CachingAllocator, ARetainingPoolKeepsItsCacheUntilDestroyed) {
  FakeDevice dev(10 * 1024);
  {
    CachingAllocator a = dev.make(0, /*retain_cache=*/true);
    void* p = a.allocate(6 * 1024);
    a.deallocate(p);
    a.release_cached();
    EXPECT_EQ(dev.frees, 0);
    EXPECT_EQ(a.reserved_bytes(), 6u * 1024u);
    try {  // would fit only after giving the cached block back: refused instead
      (void)a.allocate(8 * 1024);
      ADD_FAILURE() << "expected out_of_memory";
    } catch (const sluice::Error& e) {
      EXPECT_EQ(e.code(), sluice::errc::out_of_memory);
    }
    EXPECT_EQ(dev.frees, 0);
    EXPECT_EQ(a.allocate(5 * 1024), p) << "the retained block still serves requests";
    a.deallocate(p);
  }
  EXPECT_EQ(dev.frees, 1) << "destroying the pool gives its blocks back";
  EXPECT_TRUE(dev.live.empty());
}

TEST(CachingAllocator, ReportsOutOfMemoryWhenTheDeviceRefusesEvenAfterRelease) {
  FakeDevice dev(4096);
  CachingAllocator a = dev.make();
  void* p = a.allocate(2048);
  try {
    (void)a.allocate(4096);
    FAIL() << "4 KiB beside a live 2 KiB block cannot fit a 4 KiB device";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::out_of_memory);
  }
  EXPECT_EQ(a.stats().current_bytes, 2048u) << "a failed request changes no accounting";
  a.deallocate(p);
}

TEST(CachingAllocator, EnforcesItsOwnLimitOnBytesInUse) {
  FakeDevice dev(1 << 24);
  CachingAllocator a = dev.make(/*limit=*/10000);
  void* p = a.allocate(6000);
  EXPECT_THROW((void)a.allocate(5000), sluice::Error);
  try {
    (void)a.allocate(5000);
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::out_of_memory);
  }
  void* q = a.allocate(4000);  // exactly at the limit
  EXPECT_EQ(a.stats().current_bytes, 10000u);
  a.deallocate(p);
  a.deallocate(q);
}

TEST(CachingAllocator, IgnoresUnknownAndNullPointers) {
  FakeDevice dev(1 << 20);
  CachingAllocator a = dev.make();
  int not_ours = 0;
  a.deallocate(nullptr);
  a.deallocate(&not_ours);
  EXPECT_EQ(a.unknown_frees(), 1u);
  EXPECT_EQ(a.stats().current_bytes, 0u);
}

TEST(CachingAllocator, BlockSizesAreGranularMultiples) {
  EXPECT_EQ(CachingAllocator::block_size(0), CachingAllocator::granularity);
  EXPECT_EQ(CachingAllocator::block_size(1), 512u);
  EXPECT_EQ(CachingAllocator::block_size(512), 512u);
  EXPECT_EQ(CachingAllocator::block_size(513), 1024u);
}

}  // namespace
