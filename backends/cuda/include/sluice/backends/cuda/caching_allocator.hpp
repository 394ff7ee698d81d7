// sluice/backends/cuda/caching_allocator.hpp: the CUDA backend's device memory: blocks recycled
// through a best-fit free list, with exact accounting of the bytes in use (activations, scratch,
// cuDNN workspaces and packed weights), a high-water mark, and an optional limit.
//
// It is written against two plain functions (raw_alloc / raw_free) so that its logic is tested
// without a GPU; the backend passes cudaMalloc / cudaFree. When the raw allocation fails, every
// cached block is given back and the allocation is retried once; if it fails again the request is
// reported as sluice::Error(errc::out_of_memory), never as a crash.
//
// Accounting counts the bytes each live block was asked for, not the size of the block that serves
// it, so that "peak bytes of a forward pass" is a property of the network and batch size (as in the
// CPU backend). reserved_bytes() tells what the device really holds (blocks in use plus the cache).
// Blocks are reused in stream order: the backend frees and reallocates on its single stream only.
//
// A pool that serves CUDA graphs retains its cache (`retain_cache`): a captured graph keeps the
// addresses of the blocks it used, so they must stay reserved until the pool itself is destroyed --
// release_cached() does nothing then, and a failed raw allocation is reported without first giving
// the cache back.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "sluice/core/error.hpp"
#include "sluice/core/memory_stats.hpp"

namespace sluice::cuda {

class CachingAllocator {
 public:
  using RawAlloc = std::function<void*(std::size_t)>;  ///< nullptr when the device is out of memory
  using RawFree = std::function<void(void*)>;

  /// Blocks are multiples of this (and so aligned to it, given a raw allocator aligned to it).
  static constexpr std::size_t granularity = 512;

  /// `limit_bytes` == 0: no limit beyond the device's own.
  CachingAllocator(RawAlloc raw_alloc, RawFree raw_free, std::size_t limit_bytes = 0, bool retain_cache = false)
      : raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)), limit_(limit_bytes), retain_(retain_cache) {}
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  ~CachingAllocator() {
    std::lock_guard lock(mutex_);
    release_cached_locked();
  }

  /// The block size that serves a request: a multiple of `granularity`, at least one.
  static std::size_t block_size(std::size_t bytes) {
    if (bytes == 0) return granularity;
    return (bytes + granularity - 1) / granularity * granularity;
  }

  /// A block of at least `bytes` bytes (uninitialised). `weight`: accounted as packed weights too.
  /// Throws sluice::Error(errc::out_of_memory) past the limit or when the device has no memory.
  void* allocate(std::size_t bytes, bool weight = false) {
    const std::size_t size = block_size(bytes);
    std::lock_guard lock(mutex_);
    if (limit_ != 0 && current_ + bytes > limit_)
      throw Error(errc::out_of_memory, "cuda allocator: " + std::to_string(bytes) + " bytes would pass the limit of " +
                                           std::to_string(limit_) + " bytes (" + std::to_string(current_) +
                                           " in use)");
    auto [p, got] = take_cached(size);
    if (p == nullptr) {
      got = size;
      p = raw_alloc_(size);
      if (p == nullptr && !retain_) {  // give the cache back to the device and try once more
        release_cached_locked();
        p = raw_alloc_(size);
      }
      if (p == nullptr)
        throw Error(errc::out_of_memory, "cuda allocator: the device refused " + std::to_string(size) + " bytes (" +
                                             std::to_string(current_) + " in use, " + std::to_string(reserved_) +
                                             " reserved)");
      reserved_ += size;
    }
    live_.emplace(p, Live{got, bytes, weight});
    current_ += bytes;
    if (weight) weights_ += bytes;
    if (current_ > peak_) peak_ = current_;
    return p;
  }

  /// Returns a block from allocate() to the cache. Unknown pointers are ignored (and counted).
  void deallocate(void* p) noexcept {
    if (p == nullptr) return;
    std::lock_guard lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) {
      ++unknown_frees_;
      return;
    }
    current_ -= it->second.requested;
    if (it->second.weight) weights_ -= it->second.requested;
    try {
      free_.emplace(it->second.size, p);
    } catch (...) {  // the cache could not grow: give the block back to the device (a retaining
      if (!retain_) {  // pool keeps it reserved, unlisted: a graph may still use its address)
        raw_free_(p);
        reserved_ -= it->second.size;
      }
    }
    live_.erase(it);
  }

  /// Gives every cached (free) block back to the device (not in a pool that retains its cache).
  void release_cached() noexcept {
    std::lock_guard lock(mutex_);
    if (!retain_) release_cached_locked();
  }

  MemoryStats stats() const {
    std::lock_guard lock(mutex_);
    return {current_, peak_, weights_};
  }
  void reset_peak() {
    std::lock_guard lock(mutex_);
    peak_ = current_;
  }
  std::size_t reserved_bytes() const {
    std::lock_guard lock(mutex_);
    return reserved_;
  }
  std::size_t cached_blocks() const {
    std::lock_guard lock(mutex_);
    return free_.size();
  }
  std::size_t unknown_frees() const {
    std::lock_guard lock(mutex_);
    return unknown_frees_;
  }
  std::size_t limit_bytes() const { return limit_; }

 private:
  struct Live {
    std::size_t size = 0;       // block size
    std::size_t requested = 0;  // accounted bytes
    bool weight = false;
  };

  // Best fit among cached blocks, but never a block more than twice the size (plus one granule), so
  // that a small tensor does not pin a huge block.
  std::pair<void*, std::size_t> take_cached(std::size_t size) {
    auto it = free_.lower_bound(size);
    if (it == free_.end() || it->first > 2 * size + granularity) return {nullptr, 0};
    std::pair<void*, std::size_t> block{it->second, it->first};
    free_.erase(it);
    return block;
  }

  void release_cached_locked() noexcept {
    for (auto& [size, p] : free_) {
      raw_free_(p);
      reserved_ -= size;
    }
    free_.clear();
  }

  RawAlloc raw_alloc_;
  RawFree raw_free_;
  const std::size_t limit_;
  const bool retain_;
  mutable std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;  // block size -> block
  std::map<void*, Live> live_;
  std::size_t current_ = 0, peak_ = 0, weights_ = 0, reserved_ = 0, unknown_frees_ = 0;
};

}  // namespace sluice::cuda
