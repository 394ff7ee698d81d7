// Test doubles for the Batcher: a model whose latency, failures and out-of-memory the test
// controls (a gate holds runs; rules decide what throws), and a staged variant.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sluice/core/batch_model.hpp"
#include "sluice/core/error.hpp"

namespace sluice_test {

/// Holds threads until opened; counts who arrived.
class Gate {
 public:
  explicit Gate(bool open = true) : open_(open) {}
  void pass() {
    std::unique_lock lock(mutex_);
    ++arrived_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  void close() {
    std::lock_guard lock(mutex_);
    open_ = false;
  }
  /// Waits until `n` threads have arrived in total (returns false after a generous time).
  bool wait_arrived(int n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [&] { return arrived_ >= n; });
  }
  int arrived() {
    std::lock_guard lock(mutex_);
    return arrived_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_;
  int arrived_ = 0;
};

struct Req {
  int value = 0;
  std::uint64_t key = 0;
  bool fail = false;     ///< the batch holding it throws a runtime_error
  bool oom = false;      ///< the batch holding it throws out_of_memory (even alone)
};

/// Doubles the value. Throws out_of_memory for batches larger than `oom_above`, or holding an
/// `oom` request; throws std::runtime_error("bad input <v>") for a batch holding a `fail` one.
struct FakeModel {
  using request_type = Req;
  using response_type = int;

  Gate gate{true};
  std::size_t oom_above = SIZE_MAX;
  bool use_bad_alloc = false;
  std::atomic<int> concurrent{0};
  std::atomic<int> max_concurrent{0};
  int wait_for_concurrency = 0;  ///< a run waits (bounded) until this many runs are in progress

  std::mutex mutex;
  std::vector<std::vector<int>> batches;  ///< values of every attempted batch, in run order
  std::vector<std::vector<std::uint64_t>> batch_keys;

  std::uint64_t batch_key(const Req& r) const { return r.key; }

  void run(std::span<const Req> in, std::span<int> out, const sluice::RunContext&) {
    {
      std::lock_guard lock(mutex);
      std::vector<int> values;
      std::vector<std::uint64_t> keys;
      for (const Req& r : in) {
        values.push_back(r.value);
        keys.push_back(r.key);
      }
      batches.push_back(std::move(values));
      batch_keys.push_back(std::move(keys));
    }
    const int now = concurrent.fetch_add(1) + 1;
    int seen = max_concurrent.load();
    while (now > seen && !max_concurrent.compare_exchange_weak(seen, now)) {
    }
    if (wait_for_concurrency > 0) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (max_concurrent.load() < wait_for_concurrency && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    gate.pass();
    concurrent.fetch_sub(1);
    const bool any_oom = std::any_of(in.begin(), in.end(), [](const Req& r) { return r.oom; });
    if (in.size() > oom_above || any_oom) {
      if (use_bad_alloc) throw std::bad_alloc();
      throw sluice::Error(sluice::errc::out_of_memory, "fake arena exhausted");
    }
    for (const Req& r : in)
      if (r.fail) throw std::runtime_error("bad input " + std::to_string(r.value));
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = 2 * in[i].value;
  }

  std::vector<std::vector<int>> batches_copy() {
    std::lock_guard lock(mutex);
    return batches;
  }
};
static_assert(sluice::KeyedBatchModel<FakeModel>);

/// A staged model that notes whether a prepare ran while another batch was inside run().
struct StagedModel {
  using request_type = int;
  using response_type = int;
  using batch_type = std::vector<int>;

  std::atomic<int> running{0};
  std::atomic<bool> prepare_during_run{false};
  std::atomic<bool> finish_during_run{false};
  std::atomic<int> prepares{0};
  std::atomic<int> finishes{0};

  batch_type prepare(std::span<const int> in) {
    if (running.load() > 0) prepare_during_run = true;
    ++prepares;
    return {in.begin(), in.end()};
  }
  void run(batch_type& b) {
    ++running;
    // Hold the device stage until another batch's prepare has overlapped it (bounded wait).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!prepare_during_run.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    for (int& x : b) x += 1000;
    --running;
  }
  void finish(batch_type& b, std::span<int> out) {
    if (running.load() > 0) finish_during_run = true;
    ++finishes;
    std::copy(b.begin(), b.end(), out.begin());
  }
};
static_assert(sluice::StagedBatchModel<StagedModel>);

}  // namespace sluice_test
