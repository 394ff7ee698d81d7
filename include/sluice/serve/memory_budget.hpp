// sluice/serve/memory_budget.hpp: one budget for the bytes that requests hold in the server at once
// -- bodies held in memory while they are read and parsed, images while they are decoded and
// queued (the server keeps a second one for bodies spooled to disk, spooled_body.hpp). A request
// takes a Lease before it holds the bytes; when the budget has no room it is refused (503) instead
// of growing the process until the kernel kills it. Leases give their bytes back when destroyed.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include <unistd.h>

namespace sluice::serve {

class MemoryBudget {
 public:
  explicit MemoryBudget(std::size_t limit_bytes) : limit_(limit_bytes) {}
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  /// Bytes held for one request, returned to the budget on destruction. Move-only.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& o) noexcept : budget_(std::exchange(o.budget_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    Lease& operator=(Lease&& o) noexcept {
      if (this != &o) {
        release();
        budget_ = std::exchange(o.budget_, nullptr);
        bytes_ = std::exchange(o.bytes_, 0);
      }
      return *this;
    }
    ~Lease() { release(); }

    std::size_t bytes() const { return bytes_; }
    /// Gives back all but `bytes` (no-op when it holds no more than that).
    void shrink_to(std::size_t bytes) {
      if (!budget_ || bytes >= bytes_) return;
      budget_->in_use_.fetch_sub(bytes_ - bytes, std::memory_order_acq_rel);
      bytes_ = bytes;
    }
    explicit operator bool() const { return budget_ != nullptr; }
    void release() {
      if (budget_) budget_->in_use_.fetch_sub(bytes_, std::memory_order_acq_rel);
      budget_ = nullptr;
      bytes_ = 0;
    }

   private:
    friend class MemoryBudget;
    Lease(std::shared_ptr<MemoryBudget> budget, std::size_t bytes) : budget_(std::move(budget)), bytes_(bytes) {}
    std::shared_ptr<MemoryBudget> budget_;  // keeps the budget alive as long as a lease is out
    std::size_t bytes_ = 0;
  };

  /// Reserves `bytes` if they fit beside what is in use; an empty Lease (false) when they do not.
  /// A request of 0 bytes always succeeds.
  static Lease try_acquire(const std::shared_ptr<MemoryBudget>& budget, std::size_t bytes) {
    std::size_t used = budget->in_use_.load(std::memory_order_relaxed);
    do {
      if (bytes > budget->limit_ || used > budget->limit_ - bytes) {
        budget->rejections_.fetch_add(1, std::memory_order_relaxed);
        return {};
      }
    } while (!budget->in_use_.compare_exchange_weak(used, used + bytes, std::memory_order_acq_rel));
    return Lease(budget, bytes);
  }

  std::size_t limit() const { return limit_; }
  std::size_t in_use() const { return in_use_.load(std::memory_order_acquire); }
  std::uint64_t rejections() const { return rejections_.load(std::memory_order_relaxed); }

 private:
  std::size_t limit_;
  std::atomic<std::size_t> in_use_{0};
  std::atomic<std::uint64_t> rejections_{0};
};

/// The memory this process may count on: the cgroup's limit (containers) when there is one, else
/// the machine's physical memory.
inline std::size_t available_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  std::size_t bytes = pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page)
                                            : std::size_t{8} << 30;
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    std::string text;
    if (in >> text && !text.empty() && text != "max") {
      try {
        const unsigned long long cg = std::stoull(text);
        if (cg > 0 && cg < bytes) bytes = static_cast<std::size_t>(cg);
      } catch (const std::exception&) {
      }
    }
  }
  return bytes;
}

/// The default budget for request bytes: a quarter of available_memory_bytes(), so that the model's
/// weights, its working memory and the allocator's slack fit beside it, capped at 4 GiB.
inline std::size_t default_memory_budget_bytes() {
  const std::size_t quarter = available_memory_bytes() / 4;
  const std::size_t cap = std::size_t{4} << 30;
  return quarter < cap ? quarter : cap;
}

}  // namespace sluice::serve
