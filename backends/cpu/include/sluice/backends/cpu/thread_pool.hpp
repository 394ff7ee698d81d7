// sluice/backends/cpu/thread_pool.hpp: a small fixed-size thread pool with a blocking parallel_for.
// Each CpuBackend (one lane) owns one pool of its own thread count, so several lanes never share
// or oversubscribe workers: give each lane threads = cores / lanes. The calling thread takes part
// in the work, so a pool of n threads starts n - 1 workers.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace sluice::cpu {

class ThreadPool {
 public:
  /// `threads` == 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(std::size_t threads = 0) {
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    size_ = threads;
    workers_.reserve(threads - 1);
    for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  /// Number of threads that run tasks (workers plus the caller).
  std::size_t size() const { return size_; }

  /// Runs fn(task, worker) for task in [0, count), worker in [0, size()); returns when all ran.
  /// `worker` indexes per-thread scratch. The first exception a task throws is rethrown here.
  /// Called from inside a task (nested), it runs serially on the calling worker.
  template <class F>
  void parallel_for(std::size_t count, F&& fn) {
    if (count == 0) return;
    if (size_ == 1 || count == 1 || running_pool_ == this) {
      std::size_t worker = running_pool_ == this ? current_worker_ : 0;
      for (std::size_t t = 0; t < count; ++t) fn(t, worker);
      return;
    }
    using Fn = std::remove_reference_t<F>;
    std::lock_guard call_lock(call_mutex_);  // one job at a time per pool
    {
      std::lock_guard lock(mutex_);
      job_fn_ = const_cast<void*>(static_cast<const void*>(&fn));
      job_call_ = [](void* f, std::size_t t, std::size_t w) { (*static_cast<Fn*>(f))(t, w); };
      job_count_ = count;
      next_.store(0, std::memory_order_relaxed);
      active_ = workers_.size();
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_tasks(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return active_ == 0; });
    job_fn_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void run_tasks(std::size_t worker) {
    const ThreadPool* outer = std::exchange(running_pool_, this);
    std::size_t outer_worker = std::exchange(current_worker_, worker);
    for (;;) {
      std::size_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= job_count_) break;
      try {
        job_call_(job_fn_, t, worker);
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(job_count_, std::memory_order_relaxed);  // skip the remaining tasks
      }
    }
    running_pool_ = outer;
    current_worker_ = outer_worker;
  }

  void worker_loop(std::size_t worker) {
    std::size_t seen = 0;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      run_tasks(worker);
      {
        std::lock_guard lock(mutex_);
        if (--active_ == 0) done_.notify_one();
      }
    }
  }

  std::size_t size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex call_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  bool stopping_ = false;
  std::size_t generation_ = 0;
  void* job_fn_ = nullptr;
  void (*job_call_)(void*, std::size_t, std::size_t) = nullptr;
  std::size_t job_count_ = 0;
  std::atomic<std::size_t> next_{0};
  std::size_t active_ = 0;
  std::exception_ptr error_;
  static inline thread_local const ThreadPool* running_pool_ = nullptr;
  static inline thread_local std::size_t current_worker_ = 0;
};

}  // namespace sluice::cpu
