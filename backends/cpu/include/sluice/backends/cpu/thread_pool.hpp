// sluice/backends/cpu/thread_pool.hpp: a small fixed-size thread pool with a blocking parallel_for.
// Each CpuBackend (one lane) owns one pool of its own thread count, so several lanes never share
// or oversubscribe workers: give each lane threads = cores / lanes. The calling thread takes part
// in the work, so a pool of n threads starts n - 1 workers.
//
// A network's forward pass is a chain of short parallel_for calls (tens of microseconds each for
// small networks), and a futex wake-up costs about as much. So a worker that finished a job spins
// for a while (200 us unless told) before it sleeps, and so does the caller waiting for the workers:
// within one forward pass nobody sleeps; between passes the workers sleep and burn nothing. Where
// the pool's threads share their cores with other busy threads, a shorter spin (or none) may serve
// better: SLUICE_CPU_SPIN_US sets the default, as OMP_WAIT_POLICY does for OpenMP.
//
// Tasks are handed out by affinity: thread w of n first takes, in order, the tasks
// [w * count / n, (w + 1) * count / n) of each job, then takes from the back of the others' shares.
// Successive jobs over the same data (a network's layers, split the same way) therefore give each
// thread the same part of it while nobody is held up: data a core wrote stays in its cache, where
// handing out tasks first come, first served moved most of each layer's output from one core's
// cache to the other's. A thread that is late (no core, or still in a previous job) loses its share
// to the others, as before.
//
// A job waits only for the workers that joined it. Workers join while the caller still works on
// the job's tasks; once every task is taken the caller closes the job, and a worker that had no
// core in time (another busy thread on it: an image decoder, a co-tenant) stays out instead of
// holding everyone at the barrier: the caller has done its share, and the forward pass goes on.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include "sluice/backends/cpu/intrinsics.hpp"
#endif

namespace sluice::cpu {

class ThreadPool {
 public:
  static constexpr std::chrono::microseconds built_in_spin{200};
  static constexpr std::chrono::microseconds max_spin{1'000'000};

  /// How long an idle worker (or the waiting caller) spins before it sleeps: SLUICE_CPU_SPIN_US
  /// when it holds a whole number in [0, 1000000], else built_in_spin.
  static std::chrono::microseconds default_spin() {
    const char* text = std::getenv("SLUICE_CPU_SPIN_US");
    if (text == nullptr || *text == '\0') return built_in_spin;
    char* end = nullptr;
    const long long us = std::strtoll(text, &end, 10);
    if (*end != '\0' || us < 0 || us > max_spin.count()) return built_in_spin;
    return std::chrono::microseconds(us);
  }

  /// `threads` == 0 means std::thread::hardware_concurrency(). `spin`: see default_spin(); zero
  /// sleeps at once. Negative spins count as zero, spins past max_spin as max_spin.
  explicit ThreadPool(std::size_t threads = 0, std::chrono::microseconds spin = default_spin())
      : spin_(std::clamp(spin, std::chrono::microseconds{0}, max_spin)) {
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    size_ = threads;
    shares_ = std::make_unique<Share[]>(threads);
    workers_.reserve(threads - 1);
    for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_.store(true, std::memory_order_relaxed);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  /// Number of threads that run tasks (workers plus the caller).
  std::size_t size() const { return size_; }
  std::chrono::microseconds spin() const { return spin_; }

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
    // No worker is inside a job here, so the job's fields are ours until the release below.
    job_fn_ = const_cast<void*>(static_cast<const void*>(&fn));
    job_call_ = [](void* f, std::size_t t, std::size_t w) { (*static_cast<Fn*>(f))(t, w); };
    error_ = nullptr;
    // A share's bounds are 32 bits: more tasks than that run as several jobs, one after another.
    for (std::size_t first = 0; first < count && !error_; first += kMaxJobTasks)
      run_job(first, std::min(kMaxJobTasks, count - first));
    job_fn_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  // seats_: the job's generation above kGenerationShift, kOpen while workers may join, and below
  // it the number of workers that joined. One word, so a worker joins exactly the job it saw open.
  static constexpr unsigned kGenerationShift = 32;
  static constexpr std::uint64_t kOpen = std::uint64_t{1} << 31;
  static constexpr std::uint64_t kJoinedMask = kOpen - 1;

  static std::uint64_t generation_of(std::uint64_t seats) { return seats >> kGenerationShift; }

  static constexpr std::size_t kMaxJobTasks = 0xFFFF'FFFF;

  /// Posts the tasks [first, first + count) of the job set up by parallel_for, takes part, and
  /// returns when every worker that joined has finished.
  void run_job(std::size_t first, std::size_t count) {
    job_first_ = first;
    for (std::size_t w = 0; w < size_; ++w)
      shares_[w].set(static_cast<std::uint32_t>(w * count / size_), static_cast<std::uint32_t>((w + 1) * count / size_));
    left_.store(0, std::memory_order_relaxed);
    ++generation_;
    seats_.store(generation_ << kGenerationShift | kOpen, std::memory_order_release);
    // A sleeping worker tested the seats under the mutex: taking it here orders this notify after
    // that test, so no wake-up is lost.
    { std::lock_guard lock(mutex_); }
    wake_.notify_all();
    run_tasks(0);
    // Every task is taken: close the job and wait for the workers inside it only.
    const std::uint64_t joined = seats_.fetch_and(~kOpen, std::memory_order_acq_rel) & kJoinedMask;
    const auto finished = [this, joined] { return left_.load(std::memory_order_acquire) == joined; };
    if (!spin_until(finished)) {
      std::unique_lock lock(mutex_);
      done_.wait(lock, finished);
    }
  }

  /// One thread's share of a job: the tasks [first, end) not yet taken, in one word so that its
  /// owner (from the front) and the others (from the back) never take the same task. A cache line
  /// each: the owner claims from its share at every task.
  struct alignas(64) Share {
    std::atomic<std::uint64_t> bounds{0};  // first in the low 32 bits, end in the high

    void set(std::uint32_t first, std::uint32_t end) {
      bounds.store(std::uint64_t{end} << 32 | first, std::memory_order_relaxed);
    }
    /// The first task (`front`) or the last one, or false when none is left.
    bool take(bool front, std::size_t& task) {
      std::uint64_t b = bounds.load(std::memory_order_relaxed);
      for (;;) {
        const std::uint64_t first = b & 0xFFFF'FFFF, end = b >> 32;
        if (first >= end) return false;
        const std::uint64_t rest = front ? b + 1 : b - (std::uint64_t{1} << 32);
        if (bounds.compare_exchange_weak(b, rest, std::memory_order_relaxed)) {
          task = static_cast<std::size_t>(front ? first : end - 1);
          return true;
        }
      }
    }
    void clear() { bounds.store(0, std::memory_order_relaxed); }
  };

  /// The next task for `worker`: its own share first, then the others' from their backs.
  bool take(std::size_t worker, std::size_t& task) {
    if (shares_[worker].take(true, task)) return true;
    for (std::size_t i = 1; i < size_; ++i)
      if (shares_[(worker + i) % size_].take(false, task)) return true;
    return false;
  }

  /// Joins the open job; false when it is closed. `seen` becomes the generation of the job joined
  /// (or found closed).
  bool join(std::uint64_t& seen) {
    std::uint64_t seats = seats_.load(std::memory_order_acquire);
    for (;;) {
      seen = generation_of(seats);
      if (!(seats & kOpen)) return false;
      if (seats_.compare_exchange_weak(seats, seats + 1, std::memory_order_acquire, std::memory_order_acquire))
        return true;
    }
  }

  void run_tasks(std::size_t worker) {
    const ThreadPool* outer = std::exchange(running_pool_, this);
    std::size_t outer_worker = std::exchange(current_worker_, worker);
    std::size_t t = 0;
    while (take(worker, t)) {
      try {
        job_call_(job_fn_, job_first_ + t, worker);
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
        for (std::size_t w = 0; w < size_; ++w) shares_[w].clear();  // skip the remaining tasks
      }
    }
    running_pool_ = outer;
    current_worker_ = outer_worker;
  }

  /// Spins until ready() or spin_ has passed; returns ready().
  template <class Ready>
  bool spin_until(Ready&& ready) const {
    if (ready()) return true;
    if (spin_.count() == 0) return false;
    const auto until = std::chrono::steady_clock::now() + spin_;
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
        _mm_pause();
#endif
      }
      if (std::chrono::steady_clock::now() >= until) return ready();
      // Give the core away if another thread waits for it: maybe the very one we wait for.
      std::this_thread::yield();
    }
  }

  void worker_loop(std::size_t worker) {
    std::uint64_t seen = 0;  // the generation of the last job this worker saw
    const auto posted = [&] {
      return stopping_.load(std::memory_order_relaxed) ||
             generation_of(seats_.load(std::memory_order_acquire)) != seen;
    };
    for (;;) {
      if (!spin_until(posted)) {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, posted);
      }
      if (stopping_.load(std::memory_order_relaxed)) return;
      if (!join(seen)) continue;  // closed: the caller took every task
      run_tasks(worker);
      left_.fetch_add(1, std::memory_order_acq_rel);
      { std::lock_guard lock(mutex_); }  // as in parallel_for: order the notify after a waiter's test
      done_.notify_one();
    }
  }

  std::size_t size_ = 1;
  std::chrono::microseconds spin_;
  std::vector<std::thread> workers_;
  std::mutex call_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<bool> stopping_{false};
  std::uint64_t generation_ = 0;  // the caller's count of jobs (under call_mutex_)
  std::atomic<std::uint64_t> seats_{0};
  void* job_fn_ = nullptr;
  void (*job_call_)(void*, std::size_t, std::size_t) = nullptr;
  std::size_t job_first_ = 0;  // the task the current job's task 0 stands for
  std::unique_ptr<Share[]> shares_;  // one per thread, set by the caller for each job
  std::atomic<std::uint64_t> left_{0};  // workers of the current job that finished it
  std::exception_ptr error_;
  static inline thread_local const ThreadPool* running_pool_ = nullptr;
  static inline thread_local std::size_t current_worker_ = 0;
};

}  // namespace sluice::cpu
