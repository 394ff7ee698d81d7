// sluice/batching/op_pool.hpp: recycled memory for the Batcher's per-request operation states, so
// that the hot path does not call malloc/free per request (an op is allocated by the submitting
// thread and freed by whichever thread completes it, which general-purpose allocators handle
// poorly). Frees push onto a lock-free stack; allocations take the whole stack at once under a
// small mutex. The pool outlives its Batcher while ops are still out (each holds a reference).
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <new>

namespace sluice::batching {

class OpPool {
 public:
  /// Bytes an op may use and still come from the pool (larger ones use operator new).
  static constexpr std::size_t kBlockBytes = 320;

  static OpPool* create() { return new OpPool(); }

  /// The owner is done with the pool; it is deleted once the last block is back.
  void detach() { unref(); }

  static void* allocate(OpPool* pool, std::size_t n) {
    if (pool == nullptr || n > kBlockBytes) {
      auto* h = static_cast<Header*>(::operator new(sizeof(Header) + n));
      h->pool = nullptr;
      return h + 1;
    }
    return pool->take() + 1;
  }

  static void release(void* p) noexcept {
    Header* h = static_cast<Header*>(p) - 1;
    if (h->pool == nullptr) {
      ::operator delete(h);
    } else {
      h->pool->give(h);
    }
  }

 private:
  struct alignas(16) Header {
    OpPool* pool;
    Header* next;
  };
  static_assert(sizeof(Header) == 16);

  OpPool() = default;
  ~OpPool() {
    free_chain(local_);
    free_chain(returned_.load(std::memory_order_acquire));
  }
  static void free_chain(Header* h) {
    while (h != nullptr) {
      Header* next = h->next;
      ::operator delete(h);
      h = next;
    }
  }

  Header* take() {
    refs_.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(take_mutex_);
      // Popping the whole stack with one exchange has no ABA problem; the private list is ours.
      if (local_ == nullptr) local_ = returned_.exchange(nullptr, std::memory_order_acquire);
      if (local_ != nullptr) {
        Header* h = local_;
        local_ = h->next;
        return h;
      }
    }
    auto* h = static_cast<Header*>(::operator new(sizeof(Header) + kBlockBytes));
    h->pool = this;
    return h;
  }

  void give(Header* h) noexcept {
    h->next = returned_.load(std::memory_order_relaxed);
    while (!returned_.compare_exchange_weak(h->next, h, std::memory_order_release, std::memory_order_relaxed)) {
    }
    unref();
  }

  void unref() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  std::atomic<std::size_t> refs_{1};  ///< the owner + blocks out
  std::atomic<Header*> returned_{nullptr};
  std::mutex take_mutex_;
  Header* local_ = nullptr;  ///< under take_mutex_
};

}  // namespace sluice::batching
