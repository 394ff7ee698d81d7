// sluice/batching/staged_pipeline.hpp: how the Batcher runs a batch of a StagedBatchModel. With a
// CPU pool, prepare and finish run there, so that they overlap other batches' device runs:
// formed batch -> prepare (pool) -> run (lane) -> finish (pool) -> complete. Without one, all
// three stages run on the lane. After any failure the batch (or its halves, when out of memory)
// is retried with all three stages on the current thread.
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "sluice/batching/batch_job.hpp"
#include "sluice/batching/batcher_config.hpp"
#include "sluice/batching/metrics.hpp"
#include "sluice/batching/oom_split.hpp"
#include "sluice/core/batch_model.hpp"
#include "sluice/core/clock.hpp"

namespace sluice::batching {

template <StagedBatchModel Model>
class StagedPipeline {
 public:
  using request_type = typename Model::request_type;
  using response_type = typename Model::response_type;

  struct Job : detail::BatchJob<request_type, response_type> {
    std::optional<typename Model::batch_type> staged;  ///< prepared, awaiting run or finish
    std::exception_ptr stage_error;                    ///< what prepare threw
    bool finished = false;                             ///< results are final (no finish stage pending)

    void clear() {
      detail::BatchJob<request_type, response_type>::clear();
      staged.reset();
      stage_error = nullptr;
      finished = false;
    }
  };

  /// Batches in flight at once: with a CPU pool, one preparing per lane while another runs.
  static std::size_t slots(const BatcherConfig& c) { return c.cpu_threads > 0 ? 2 * c.lanes : c.lanes; }

  StagedPipeline(Model& model, BatcherMetrics& metrics, const BatcherConfig& c)
      : model_(&model), metrics_(&metrics) {
    if (c.cpu_threads > 0) cpu_pool_.emplace(c.cpu_threads);
  }

  /// With a CPU pool: prepares the batch there and then calls `ready(job)` (true). Without one,
  /// the batch is ready for a lane now (false).
  template <class Ready>
  bool prepare_later(Job* job, Ready&& ready) {
    if (!cpu_pool_) return false;
    boost::asio::post(*cpu_pool_, [this, job, ready = std::forward<Ready>(ready)]() mutable {
      prepare(*job);
      ready(job);
    });
    return true;
  }

  /// On a lane: the device stage (and, without a CPU pool, the other two).
  void run(Job& job) {
    run_stage(job);
    if (job.finished) {  // free the batch's data before the lane takes the Batcher's lock
      job.requests.clear();
      job.responses.clear();
    }
  }

  /// After run(): when a finish stage is pending, runs it on the CPU pool and then calls
  /// `done(job)` (true); false when the results are already final.
  template <class Done>
  bool finish_later(Job* job, Done&& done) {
    if (job->finished) return false;
    boost::asio::post(*cpu_pool_, [this, job, done = std::forward<Done>(done)]() mutable {
      finish(*job);
      done(job);
    });
    return true;
  }

  /// Waits for the CPU pool's tasks (once no more are posted).
  void join() {
    if (cpu_pool_) cpu_pool_->join();
  }

 private:
  /// On the CPU pool: moves the requests in and prepares the whole batch.
  void prepare(Job& job) {
    job.take_requests();
    try {
      job.staged.emplace(model_->prepare(std::span<const request_type>(job.requests)));
    } catch (...) {
      job.stage_error = std::current_exception();
    }
  }

  void run_stage(Job& job) {
    const ItemRange all{0, job.ops.size()};
    job.finished = true;  // unless the run below succeeds with a finish stage to come
    if (!cpu_pool_) {
      job.take_requests();
      sync(job, all);
      return;
    }
    if (job.stage_error) {
      settle_failure(job, all, job.stage_error, *metrics_, [&](ItemRange r) { return try_sync(job, r); });
      return;
    }
    const TimePoint start = Clock::now();
    std::exception_ptr error;
    try {
      run_staged(*model_, *job.staged, RunContext{job.lane});
    } catch (...) {
      error = std::current_exception();
    }
    const TimePoint end = Clock::now();
    if (error) {
      job.record(*metrics_, all.size(), start, end, false, detail::out_of_memory(error));
      job.staged.reset();
      settle_failure(job, all, error, *metrics_, [&](ItemRange r) { return try_sync(job, r); });
      return;
    }
    job.record(*metrics_, all.size(), start, end, true, false);
    job.finished = false;
  }

  /// On the CPU pool: postprocesses into responses.
  void finish(Job& job) {
    const ItemRange all{0, job.ops.size()};
    job.responses.clear();
    job.responses.resize(all.size());
    std::exception_ptr error;
    try {
      model_->finish(*job.staged, std::span<response_type>(job.responses));
    } catch (...) {
      error = std::current_exception();
    }
    if (!error) {
      job.succeed(all, std::span<response_type>(job.responses));
    } else {
      job.staged.reset();
      settle_failure(job, all, error, *metrics_, [&](ItemRange r) { return try_sync(job, r); });
    }
    job.staged.reset();  // free the batch's data before the Batcher's lock is taken, not under it
    job.requests.clear();
    job.responses.clear();
  }

  /// All three stages of ops `r` on this thread, failures settled.
  void sync(Job& job, ItemRange r) {
    if (auto error = try_sync(job, r)) {
      settle_failure(job, r, error, *metrics_, [&](ItemRange h) { return try_sync(job, h); });
    }
  }

  /// prepare -> run -> finish of ops `r` on this thread: their results, or what was thrown.
  std::exception_ptr try_sync(Job& job, ItemRange r) {
    TimePoint start{}, end{};
    bool ran = false;
    std::vector<response_type> out(r.size());
    std::exception_ptr error;
    try {
      auto batch = model_->prepare(std::span<const request_type>(job.requests.data() + r.begin, r.size()));
      start = Clock::now();
      try {
        run_staged(*model_, batch, RunContext{job.lane});
      } catch (...) {
        end = Clock::now();
        throw;
      }
      end = Clock::now();
      ran = true;
      model_->finish(batch, std::span<response_type>(out));
    } catch (...) {
      error = std::current_exception();
    }
    if (!error) {
      job.record(*metrics_, r.size(), start, end, true, false);
      job.succeed(r, std::span<response_type>(out));
      return nullptr;
    }
    // Only a failed run is a batch for the controller: a try that failed in prepare or finish is not.
    if (!ran && start != TimePoint{}) {
      job.record(*metrics_, r.size(), start, end, false, detail::out_of_memory(error));
    }
    return error;
  }

  Model* model_;
  BatcherMetrics* metrics_;
  std::optional<boost::asio::thread_pool> cpu_pool_;
};

}  // namespace sluice::batching
