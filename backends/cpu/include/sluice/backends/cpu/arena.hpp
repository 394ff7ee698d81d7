// sluice/backends/cpu/arena.hpp: the CPU backend's memory: 64-byte aligned float buffers recycled
// through a size-bucketed free list, with exact accounting of the bytes in use (activations,
// scratch and packed weights), a high-water mark, and an optional limit that throws
// sluice::Error(errc::out_of_memory) -- what the Batcher's OOM split and the calibrator rely on.
//
// Accounting counts the bytes each live buffer was asked for (numel * 4), not the bucket it sits in,
// so that "peak bytes of a forward pass" is a property of the network and batch size alone.
// reserved_bytes() tells what the process really holds (buckets in use plus the free list).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sluice/core/error.hpp"
#include "sluice/core/memory_stats.hpp"

namespace sluice::cpu {

class Arena {
 public:
  static constexpr std::size_t alignment = 64;

  /// `limit_bytes` == 0: no limit. `cache_limit_bytes`: the most the free list keeps (0: no bound);
  /// buffers released beyond it go back to the system (inputs of ever-changing sizes).
  explicit Arena(std::size_t limit_bytes = 0, std::size_t cache_limit_bytes = 0)
      : limit_(limit_bytes), cache_limit_(cache_limit_bytes) {}
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() { trim(); }

  /// The capacity (in floats) of the bucket that serves a request of `count` floats: quarter-octave
  /// buckets (at most 25% slack), at least 16 floats.
  static std::size_t bucket_floats(std::size_t count) {
    if (count <= 16) return 16;
    std::size_t top = std::bit_floor(count);  // 2^k <= count
    if (top == count) return count;
    std::size_t quarter = top / 4;
    return (count + quarter - 1) / quarter * quarter;  // next multiple of 2^k / 4
  }

  /// A buffer of `count` floats (uninitialised). Throws out_of_memory past the limit.
  float* allocate(std::size_t count) {
    const std::size_t bytes = count * sizeof(float);
    charge(bytes);
    const std::size_t cap = bucket_floats(count);
    {
      std::lock_guard lock(mutex_);
      auto it = free_.find(cap);
      if (it != free_.end() && !it->second.empty()) {
        float* p = it->second.back();
        it->second.pop_back();
        cached_ -= cap * sizeof(float);
        return p;
      }
    }
    float* p = nullptr;
    try {
      p = static_cast<float*>(::operator new(cap * sizeof(float), std::align_val_t{alignment}));
    } catch (const std::bad_alloc&) {
      uncharge(bytes);
      throw Error(errc::out_of_memory, "cpu arena: the system refused " + std::to_string(cap * 4) + " bytes");
    }
    reserved_.fetch_add(cap * sizeof(float), std::memory_order_relaxed);
    return p;
  }

  /// Returns a buffer from allocate(count) to the free list.
  void release(float* p, std::size_t count) noexcept {
    if (p == nullptr) return;
    const std::size_t cap = bucket_floats(count);
    bool cached = false;
    try {
      std::lock_guard lock(mutex_);
      const std::size_t bound = cache_limit_.load(std::memory_order_relaxed);
      if (bound == 0 || cached_ + cap * sizeof(float) <= bound) {
        free_[cap].push_back(p);
        cached_ += cap * sizeof(float);
        cached = true;
      }
    } catch (...) {  // the free list could not grow
    }
    if (!cached) {
      ::operator delete(p, std::align_val_t{alignment});
      reserved_.fetch_sub(cap * sizeof(float), std::memory_order_relaxed);
    }
    uncharge(count * sizeof(float));
  }

  /// Accounts bytes held elsewhere (packed weights) as weights; the limit applies to them too.
  void charge_weights(std::size_t bytes) {
    charge(bytes);
    weights_.fetch_add(bytes, std::memory_order_relaxed);
  }
  void uncharge_weights(std::size_t bytes) noexcept {
    weights_.fetch_sub(bytes, std::memory_order_relaxed);
    uncharge(bytes);
  }

  MemoryStats stats() const {
    return {current_.load(std::memory_order_relaxed), peak_.load(std::memory_order_relaxed),
            weights_.load(std::memory_order_relaxed)};
  }
  /// Starts a new high-water mark at the bytes in use now.
  void reset_peak() { peak_.store(current_.load(std::memory_order_relaxed), std::memory_order_relaxed); }

  std::size_t limit() const { return limit_.load(std::memory_order_relaxed); }
  void set_limit(std::size_t bytes) { limit_.store(bytes, std::memory_order_relaxed); }

  /// Bytes the arena holds from the system: buffers in use (bucket capacity) plus the free list.
  std::size_t reserved_bytes() const { return reserved_.load(std::memory_order_relaxed); }
  /// Bytes in the free list.
  std::size_t cached_bytes() const {
    std::lock_guard lock(mutex_);
    return cached_;
  }
  void set_cache_limit(std::size_t bytes) { cache_limit_.store(bytes, std::memory_order_relaxed); }

  /// Gives every free buffer back to the system.
  void trim() noexcept {
    std::lock_guard lock(mutex_);
    for (auto& [cap, list] : free_) {
      for (float* p : list) ::operator delete(p, std::align_val_t{alignment});
      reserved_.fetch_sub(cap * sizeof(float) * list.size(), std::memory_order_relaxed);
    }
    free_.clear();
    cached_ = 0;
  }

 private:
  void charge(std::size_t bytes) {
    const std::size_t lim = limit_.load(std::memory_order_relaxed);
    std::size_t now = current_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    if (lim != 0 && now > lim) {
      current_.fetch_sub(bytes, std::memory_order_relaxed);
      throw Error(errc::out_of_memory, "cpu arena: " + std::to_string(bytes) + " more bytes would exceed the limit of " +
                                           std::to_string(lim) + " (in use: " + std::to_string(now - bytes) + ")");
    }
    std::size_t peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  void uncharge(std::size_t bytes) noexcept { current_.fetch_sub(bytes, std::memory_order_relaxed); }

  std::atomic<std::size_t> limit_, cache_limit_;
  std::atomic<std::size_t> current_{0}, peak_{0}, weights_{0}, reserved_{0};
  mutable std::mutex mutex_;
  std::size_t cached_ = 0;  // bytes in free_, under mutex_
  std::unordered_map<std::size_t, std::vector<float*>> free_;
};

/// An RAII float buffer from an Arena (movable, not copyable). Keeps its arena alive.
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::shared_ptr<Arena> arena, std::size_t count)
      : arena_(std::move(arena)), data_(count ? arena_->allocate(count) : nullptr), count_(count) {}
  Buffer(Buffer&& o) noexcept
      : arena_(std::move(o.arena_)), data_(std::exchange(o.data_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      arena_ = std::move(o.arena_);
      data_ = std::exchange(o.data_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  void reset() noexcept {
    if (data_) arena_->release(data_, count_);
    data_ = nullptr;
    count_ = 0;
  }
  float* data() const { return data_; }
  std::size_t size() const { return count_; }

 private:
  std::shared_ptr<Arena> arena_;
  float* data_ = nullptr;
  std::size_t count_ = 0;
};

/// Keeps `bytes` of packed weights accounted in an arena for as long as it lives.
class WeightLease {
 public:
  WeightLease(std::shared_ptr<Arena> arena, std::size_t bytes) : arena_(std::move(arena)), bytes_(bytes) {
    arena_->charge_weights(bytes_);
  }
  WeightLease(const WeightLease&) = delete;
  WeightLease& operator=(const WeightLease&) = delete;
  ~WeightLease() { arena_->uncharge_weights(bytes_); }

 private:
  std::shared_ptr<Arena> arena_;
  std::size_t bytes_;
};

}  // namespace sluice::cpu
