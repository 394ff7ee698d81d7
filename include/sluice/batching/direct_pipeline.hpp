// sluice/batching/direct_pipeline.hpp: how the Batcher runs a batch of a DirectBatchModel -- the
// whole batch in one run() call on the lane that took it, with out-of-memory batches retried in
// halves. Everything happens on the lane: a direct batch is final when run() returns.
#pragma once

#include <cstddef>
#include <exception>
#include <span>

#include "sluice/batching/batch_job.hpp"
#include "sluice/batching/batcher_config.hpp"
#include "sluice/batching/metrics.hpp"
#include "sluice/batching/oom_split.hpp"
#include "sluice/core/batch_model.hpp"
#include "sluice/core/clock.hpp"

namespace sluice::batching {

template <DirectBatchModel Model>
class DirectPipeline {
 public:
  using request_type = typename Model::request_type;
  using response_type = typename Model::response_type;
  using Job = detail::BatchJob<request_type, response_type>;

  /// Batches in flight at once: one per lane.
  static std::size_t slots(const BatcherConfig& c) { return c.lanes; }

  DirectPipeline(Model& model, BatcherMetrics& metrics, const BatcherConfig&)
      : model_(&model), metrics_(&metrics) {}

  /// A direct batch needs no preparation: it is ready for a lane at once (false).
  template <class Ready>
  bool prepare_later(Job*, Ready&&) {
    return false;
  }

  /// On a lane: runs the batch; its ops hold their results when this returns.
  void run(Job& job) {
    job.take_requests();
    job.responses.clear();
    job.responses.resize(job.ops.size());
    const ItemRange all{0, job.ops.size()};
    if (auto error = try_range(job, all)) {
      settle_failure(job, all, error, *metrics_, [&](ItemRange r) { return try_range(job, r); });
    }
    job.requests.clear();  // free the batch's data before the lane takes the Batcher's lock
    job.responses.clear();
  }

  /// Nothing is left to do after run() (false: the caller retires the job now).
  template <class Done>
  bool finish_later(Job*, Done&&) {
    return false;
  }

  void join() {}

 private:
  /// One run of ops `r`: their results on success, else what the model threw.
  std::exception_ptr try_range(Job& job, ItemRange r) {
    const TimePoint start = Clock::now();
    std::exception_ptr error;
    try {
      run_direct(*model_, std::span<const request_type>(job.requests.data() + r.begin, r.size()),
                 std::span<response_type>(job.responses.data() + r.begin, r.size()), RunContext{job.lane});
    } catch (...) {
      error = std::current_exception();
    }
    const TimePoint end = Clock::now();
    if (error) {
      job.record(*metrics_, r.size(), start, end, false, detail::out_of_memory(error));
      return error;
    }
    job.record(*metrics_, r.size(), start, end, true, false);
    job.succeed(r, std::span<response_type>(job.responses.data() + r.begin, r.size()));
    return nullptr;
  }

  Model* model_;
  BatcherMetrics* metrics_;
};

}  // namespace sluice::batching
