// sluice/batching/batch_job.hpp: what the direct and the staged pipeline share -- the job a formed
// batch travels in, and what one try of a range of its requests does to their ops: results on
// success; on failure model_failed with the model's message, or out of memory, which is followed
// up by halving (oom_split.hpp).
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sluice/batching/metrics.hpp"
#include "sluice/batching/oom_split.hpp"
#include "sluice/batching/ops.hpp"
#include "sluice/core/batch_controller.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"

namespace sluice::batching::detail {

/// A formed batch on its way through the pipeline: its ops, the requests moved out of them and
/// the responses the model writes, and the batch records the controller is shown afterwards.
template <class Request, class Response>
struct BatchJob {
  using Op = OpBase<Request, Response>;

  std::vector<Op*> ops;
  std::vector<Request> requests;
  std::vector<Response> responses;
  std::vector<BatchRecord> records;
  std::size_t lane = 0;
  std::uint64_t key = 0;  ///< the batch key, reported to the controller with each record

  /// Moves the requests out of the ops, into one contiguous span for the model.
  void take_requests() {
    requests.clear();
    for (Op* op : ops) requests.push_back(std::move(op->request));
  }

  /// Notes one run of the model, for the controller (records) and the metrics.
  void record(BatcherMetrics& metrics, std::size_t size, TimePoint start, TimePoint end, bool ok, bool oom) {
    records.push_back(BatchRecord{size, lane, start, end, ok, oom, key});
    metrics.record_batch(size, end - start);
  }

  /// Ops `r` succeeded: `out` holds their responses, in order.
  void succeed(ItemRange r, std::span<Response> out) {
    for (std::size_t i = r.begin; i < r.end; ++i) {
      ops[i]->response = std::move(out[i - r.begin]);
      ops[i]->ec = {};
    }
  }

  /// Clears everything but the capacity, for the next batch.
  void clear() {
    ops.clear();
    requests.clear();
    responses.clear();
    records.clear();
  }
};

/// Whether a model's exception means it ran out of memory (sluice::Error(out_of_memory) or
/// std::bad_alloc); `message` receives its text either way.
inline bool out_of_memory(const std::exception_ptr& e, std::string& message) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    message = err.what();
    return err.code() == errc::out_of_memory;
  } catch (const std::bad_alloc& err) {
    message = err.what();
    return true;
  } catch (const std::exception& err) {
    message = err.what();
    return false;
  } catch (...) {
    message = "unknown exception";
    return false;
  }
}

inline bool out_of_memory(const std::exception_ptr& e) {
  std::string ignored;
  return out_of_memory(e, ignored);
}

/// Ops `r` of `job` failed with `error`. Out of memory: retried in halves with `retry(range)`,
/// which tries a range and returns what it threw (null when it succeeded), down to single
/// requests that fail with out_of_memory. Anything else: every op of the failed range completes
/// with model_failed and the model's message.
template <class Job, class Retry>
void settle_failure(Job& job, ItemRange r, const std::exception_ptr& error, BatcherMetrics& metrics,
                    Retry&& retry) {
  std::string oom_message;  // of the latest try that ran out of memory
  auto judge = [&](ItemRange range, const std::exception_ptr& e) {
    if (!e) return TryOutcome::ok;
    std::string message;
    if (out_of_memory(e, message)) {
      oom_message = std::move(message);
      return TryOutcome::out_of_memory;
    }
    metrics.record_model_failure(message);
    auto shared = std::make_shared<const std::string>(std::move(message));
    for (std::size_t i = range.begin; i < range.end; ++i) {
      job.ops[i]->ec = make_error_code(errc::model_failed);
      job.ops[i]->message = shared;
    }
    return TryOutcome::failed;
  };
  follow_up_oom(
      r, judge(r, error), [&](ItemRange half) { return judge(half, retry(half)); },
      [&](ItemRange) { metrics.record_oom_split(); },
      [&](ItemRange one) {
        job.ops[one.begin]->ec = make_error_code(errc::out_of_memory);
        job.ops[one.begin]->message = std::make_shared<const std::string>(std::move(oom_message));
      });
}

}  // namespace sluice::batching::detail
