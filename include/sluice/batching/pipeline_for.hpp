// sluice/batching/pipeline_for.hpp: which pipeline runs a model's batches, chosen by the model's
// concept. Both pipelines offer the same face to the engine:
//   Job                                   the formed batch's state (ops, records, lane)
//   static slots(config)                  batches that may be in flight at once
//   prepare_later(job, ready) -> bool     true: preparing off the lanes, ready(job) follows
//   run(job)                              on a lane, without the engine's lock
//   finish_later(job, done) -> bool       under the lock, after run(): true: finishing off the
//                                         lanes, done(job) follows; false: the job is final
//   join()                                waits for work off the lanes
#pragma once

#include "sluice/batching/direct_pipeline.hpp"
#include "sluice/batching/staged_pipeline.hpp"
#include "sluice/core/batch_model.hpp"

namespace sluice::batching {

/// A model that can run directly does, even if it could also be staged.
template <BatchModel Model>
struct PipelineFor;

template <BatchModel Model>
  requires DirectBatchModel<Model>
struct PipelineFor<Model> {
  using type = DirectPipeline<Model>;
};

template <BatchModel Model>
  requires(StagedBatchModel<Model> && !DirectBatchModel<Model>)
struct PipelineFor<Model> {
  using type = StagedPipeline<Model>;
};

}  // namespace sluice::batching
