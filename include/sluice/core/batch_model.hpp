// sluice/core/batch_model.hpp: the BatchModel concept -- what the Batcher schedules -- and the
// small dispatch helpers that call a model's optional hooks only when it has them.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace sluice {

/// What a model learns about the batch it runs: which execution lane runs it.
struct RunContext {
  std::size_t lane = 0;
};

/// A model that runs a span of requests straight into a span of responses (same length, same order).
/// It reports failure by throwing: sluice::Error(errc::out_of_memory) or std::bad_alloc make the
/// Batcher split the batch and retry; anything else fails each request of the batch with model_failed.
template <class M>
concept DirectBatchModel =
    requires(M& m, std::span<const typename M::request_type> in, std::span<typename M::response_type> out) {
      m.run(in, out);
    } ||
    requires(M& m, std::span<const typename M::request_type> in, std::span<typename M::response_type> out,
             const RunContext& ctx) { m.run(in, out, ctx); };

/// A model in three stages: `prepare` (CPU: decode, preprocess, write the batch buffer), `run`
/// (the device), `finish` (CPU: postprocess into responses). The Batcher runs prepare and finish on
/// its CPU executor so that they overlap the run of other batches.
template <class M>
concept StagedBatchModel = requires { typename M::batch_type; } &&
    requires(M& m, std::span<const typename M::request_type> in, typename M::batch_type& batch,
             std::span<typename M::response_type> out) {
      { m.prepare(in) } -> std::same_as<typename M::batch_type>;
      m.finish(batch, out);
    } &&
    (requires(M& m, typename M::batch_type& batch) { m.run(batch); } ||
     requires(M& m, typename M::batch_type& batch, const RunContext& ctx) { m.run(batch, ctx); });

/// What the Batcher schedules: a request and response type, and a direct or staged run.
/// Optional hooks, detected with `requires`:
///  - `batch_key(const request_type&) -> integral`: requests with different keys (e.g. input shapes)
///    never share a batch;
///  - `memory_for(std::size_t batch_size) -> std::size_t` bytes, for a memory cap.
template <class M>
concept BatchModel = requires {
  typename M::request_type;
  typename M::response_type;
} && std::default_initializable<typename M::response_type> && std::movable<typename M::response_type> &&
                     (DirectBatchModel<M> || StagedBatchModel<M>);

template <class M>
concept KeyedBatchModel = BatchModel<M> && requires(const M& m, const typename M::request_type& r) {
  { m.batch_key(r) } -> std::convertible_to<std::uint64_t>;
};

template <class M>
concept MemoryAwareBatchModel = BatchModel<M> && requires(const M& m, std::size_t n) {
  { m.memory_for(n) } -> std::convertible_to<std::size_t>;
};

/// The batch key of a request: the model's, or 0 for models without one.
template <BatchModel M>
std::uint64_t batch_key_of(const M& model, const typename M::request_type& request) {
  if constexpr (KeyedBatchModel<M>) {
    return static_cast<std::uint64_t>(model.batch_key(request));
  } else {
    (void)model;
    (void)request;
    return 0;
  }
}

/// Runs a direct model with or without its lane context.
template <DirectBatchModel M>
void run_direct(M& model, std::span<const typename M::request_type> in, std::span<typename M::response_type> out,
                const RunContext& ctx) {
  if constexpr (requires { model.run(in, out, ctx); }) {
    model.run(in, out, ctx);
  } else {
    model.run(in, out);
  }
}

/// Runs the device stage of a staged model with or without its lane context.
template <StagedBatchModel M>
void run_staged(M& model, typename M::batch_type& batch, const RunContext& ctx) {
  if constexpr (requires { model.run(batch, ctx); }) {
    model.run(batch, ctx);
  } else {
    model.run(batch);
  }
}

}  // namespace sluice
