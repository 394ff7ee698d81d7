// bench_batcher: what the Batcher itself costs. A no-op model, so every microsecond measured is
// scheduling: requests/s through the Batcher with callbacks (completions on an io_context, and
// bound to the system executor so they run on the lane), and the added latency (p50, p99) of a
// lone request at zero queue delay. In the same run, the same load through a naive batcher (one
// mutex, one condition variable, one worker thread, callbacks called by the worker) as a baseline.
#include <benchmark/benchmark.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/system_executor.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "sluice/batching/batcher.hpp"
#include "sluice/control/fixed_batch.hpp"

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct NoopModel {
  using request_type = std::uint32_t;
  using response_type = std::uint32_t;
  void run(std::span<const std::uint32_t> in, std::span<std::uint32_t> out) {
    std::copy(in.begin(), in.end(), out.begin());
  }
};

constexpr std::size_t kMaxBatch = 64;
constexpr std::size_t kWindow = 8192;        // requests in flight at most (below the queue bound)
constexpr std::uint32_t kPerIteration = 200'000;

/// The baseline: what one writes first. A deque under a mutex, a worker woken by a condition
/// variable, batches of up to kMaxBatch, callbacks invoked by the worker.
class NaiveBatcher {
 public:
  using Callback = std::function<void(std::error_code, std::uint32_t)>;
  NaiveBatcher() : worker_([this] { loop(); }) {}
  ~NaiveBatcher() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    worker_.join();
  }
  void submit(std::uint32_t request, Callback cb) {
    {
      std::lock_guard lock(mutex_);
      queue_.emplace_back(request, std::move(cb));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    std::vector<std::pair<std::uint32_t, Callback>> batch;
    std::vector<std::uint32_t> in, out;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        while (!queue_.empty() && batch.size() < kMaxBatch) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      in.clear();
      for (auto& [r, cb] : batch) in.push_back(r);
      out.resize(in.size());
      model_.run(in, out);
      for (std::size_t i = 0; i < batch.size(); ++i) batch[i].second({}, out[i]);
      batch.clear();
    }
  }
  NoopModel model_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<std::uint32_t, Callback>> queue_;
  bool stop_ = false;
  std::thread worker_;
};

struct IoThread {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::thread thread{[this] { io.run(); }};
  ~IoThread() {
    guard.reset();
    thread.join();
  }
};

sluice::BatcherConfig config() {
  sluice::BatcherConfig c;
  c.max_batch_size = kMaxBatch;
  c.max_queue_delay = std::chrono::microseconds(0);
  c.max_queue_size = 1 << 16;
  c.lanes = 1;
  return c;
}

/// CPU seconds of the whole process (every thread), user + system.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

/// Pushes kPerIteration requests (at most kWindow in flight) and waits for every completion.
/// Besides requests/s (wall clock, hostage to a shared machine's load) it reports the CPU time
/// of all threads per request, which other processes' load does not inflate as much.
template <class Submit>
void pump(benchmark::State& state, Submit&& submit, std::atomic<std::uint64_t>& done) {
  std::uint64_t issued = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    for (std::uint32_t i = 0; i < kPerIteration; ++i) {
      while (issued - done.load(std::memory_order_acquire) >= kWindow) std::this_thread::yield();
      submit(i);
      ++issued;
    }
    while (done.load(std::memory_order_acquire) < issued) std::this_thread::yield();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kPerIteration);
  state.counters["cpu_ns_per_req"] =
      (process_cpu_seconds() - cpu0) * 1e9 / (double(state.iterations()) * double(kPerIteration));
}

// Completions through the io_context (the default: a callback's associated executor is the
// Batcher's executor).
void BM_Batcher_Callbacks_IoContext(benchmark::State& state) {
  IoThread io;
  NoopModel model;
  sluice::Batcher<NoopModel, sluice::control::FixedBatch> batcher(io.io.get_executor(), model, config());
  std::atomic<std::uint64_t> done{0};
  pump(
      state,
      [&](std::uint32_t i) {
        batcher.async_submit(i, sluice::SubmitOptions{}, [&done](std::error_code, std::uint32_t) {
          done.fetch_add(1, std::memory_order_release);
        });
      },
      done);
  state.counters["mean_batch"] =
      double(batcher.metrics().batch_size().sum()) / double(std::max<std::uint64_t>(1, batcher.metrics().batch_size().count()));
}
BENCHMARK(BM_Batcher_Callbacks_IoContext)->Unit(benchmark::kMillisecond)->UseRealTime();

// Callbacks bound to the system executor: they run on the lane thread that finished the batch.
void BM_Batcher_Callbacks_Inline(benchmark::State& state) {
  IoThread io;
  NoopModel model;
  sluice::Batcher<NoopModel, sluice::control::FixedBatch> batcher(io.io.get_executor(), model, config());
  std::atomic<std::uint64_t> done{0};
  pump(
      state,
      [&](std::uint32_t i) {
        batcher.async_submit(i, sluice::SubmitOptions{},
                             asio::bind_executor(asio::system_executor(), [&done](std::error_code, std::uint32_t) {
                               done.fetch_add(1, std::memory_order_release);
                             }));
      },
      done);
  state.counters["mean_batch"] =
      double(batcher.metrics().batch_size().sum()) / double(std::max<std::uint64_t>(1, batcher.metrics().batch_size().count()));
}
BENCHMARK(BM_Batcher_Callbacks_Inline)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Naive_Callbacks(benchmark::State& state) {
  NaiveBatcher naive;
  std::atomic<std::uint64_t> done{0};
  pump(
      state,
      [&](std::uint32_t i) {
        naive.submit(i, [&done](std::error_code, std::uint32_t) { done.fetch_add(1, std::memory_order_release); });
      },
      done);
}
BENCHMARK(BM_Naive_Callbacks)->Unit(benchmark::kMillisecond)->UseRealTime();

/// One request at a time (light load): submit, spin until the callback ran, record the round trip.
template <class Submit>
void latency(benchmark::State& state, Submit&& submit) {
  std::vector<double> samples;
  samples.reserve(1 << 16);
  std::atomic<bool> flag{false};
  for (auto _ : state) {
    flag.store(false, std::memory_order_relaxed);
    const auto t0 = Clock::now();
    submit(flag);
    while (!flag.load(std::memory_order_acquire)) {
    }
    samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) { return samples[static_cast<std::size_t>(q * double(samples.size() - 1))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
}

void BM_Batcher_Latency_IoContext(benchmark::State& state) {
  IoThread io;
  NoopModel model;
  sluice::Batcher<NoopModel, sluice::control::FixedBatch> batcher(io.io.get_executor(), model, config());
  latency(state, [&](std::atomic<bool>& flag) {
    batcher.async_submit(1, sluice::SubmitOptions{}, [&flag](std::error_code, std::uint32_t) {
      flag.store(true, std::memory_order_release);
    });
  });
}
BENCHMARK(BM_Batcher_Latency_IoContext)->Iterations(20000)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Batcher_Latency_Inline(benchmark::State& state) {
  IoThread io;
  NoopModel model;
  sluice::Batcher<NoopModel, sluice::control::FixedBatch> batcher(io.io.get_executor(), model, config());
  latency(state, [&](std::atomic<bool>& flag) {
    batcher.async_submit(1, sluice::SubmitOptions{},
                         asio::bind_executor(asio::system_executor(), [&flag](std::error_code, std::uint32_t) {
                           flag.store(true, std::memory_order_release);
                         }));
  });
}
BENCHMARK(BM_Batcher_Latency_Inline)->Iterations(20000)->Unit(benchmark::kMicrosecond)->UseRealTime();

// The same with lanes that spin 50 us before sleeping (BatcherConfig::lane_spin).
void BM_Batcher_Latency_Inline_Spin(benchmark::State& state) {
  IoThread io;
  NoopModel model;
  auto cfg = config();
  cfg.lane_spin = std::chrono::microseconds(50);
  sluice::Batcher<NoopModel, sluice::control::FixedBatch> batcher(io.io.get_executor(), model, cfg);
  latency(state, [&](std::atomic<bool>& flag) {
    batcher.async_submit(1, sluice::SubmitOptions{},
                         asio::bind_executor(asio::system_executor(), [&flag](std::error_code, std::uint32_t) {
                           flag.store(true, std::memory_order_release);
                         }));
  });
}
BENCHMARK(BM_Batcher_Latency_Inline_Spin)->Iterations(20000)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Naive_Latency(benchmark::State& state) {
  NaiveBatcher naive;
  latency(state, [&](std::atomic<bool>& flag) {
    naive.submit(1, [&flag](std::error_code, std::uint32_t) { flag.store(true, std::memory_order_release); });
  });
}
BENCHMARK(BM_Naive_Latency)->Iterations(20000)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
