// sluice/batching/metrics.hpp: the per-model counters and histograms of a Batcher (queue time,
// batch size, run time, end-to-end latency, rejections, deadline misses, completions by error),
// cheap enough for the hot path (relaxed atomics only) and rendered in the Prometheus text format,
// with the Batcher's load now (queue depth, batches and requests in flight: what an autoscaler
// scales on).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "sluice/batching/histogram.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"

namespace sluice::batching {

/// Why a request was turned away at submission.
enum class Rejection : std::size_t { queue_full = 0, admission, shutting_down, invalid_argument, count };

/// What a Batcher holds at one moment, read under its lock (so the three agree).
struct BatcherLoad {
  std::size_t queued_requests = 0;    ///< waiting in the queue for a batch
  std::size_t running_requests = 0;   ///< in batches formed and not yet completed
  std::size_t batches_in_flight = 0;  ///< batches formed and not yet completed (prepare, run, finish)
};

class BatcherMetrics {
 public:
  static constexpr std::size_t kErrcSlots = 8;  ///< 0 = success, 1..7 = sluice::errc values

  using TimeHistogram = Histogram<34>;   ///< nanoseconds, 1 ns .. ~8.6 s, then +Inf
  using SizeHistogram = Histogram<16>;   ///< items, 1 .. 32768, then +Inf

  void record_queue_time(Duration d) noexcept { queue_time_ns_.record(to_ns(d)); }
  void record_latency(Duration d) noexcept { latency_ns_.record(to_ns(d)); }
  void record_batch(std::size_t size, Duration run_time) noexcept {
    batch_size_.record(size);
    run_time_ns_.record(to_ns(run_time));
  }
  void record_rejection(Rejection r) noexcept {
    rejections_[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  }
  /// One request completed with `ec` (success when !ec). deadline_exceeded also counts a miss.
  void record_completion(std::error_code ec) noexcept {
    std::size_t slot = 0;
    if (ec) {
      slot = (ec.category() == sluice::error_category() && ec.value() > 0 && ec.value() < int(kErrcSlots))
                 ? static_cast<std::size_t>(ec.value())
                 : 0;
      if (slot == 0) {
        other_errors_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
    completions_[slot].fetch_add(1, std::memory_order_relaxed);
  }
  void record_oom_split() noexcept { oom_splits_.fetch_add(1, std::memory_order_relaxed); }
  void record_model_failure(std::string_view message) {
    model_failures_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(message_mutex_);
    last_failure_.assign(message);
  }

  const TimeHistogram& queue_time_ns() const noexcept { return queue_time_ns_; }
  const TimeHistogram& latency_ns() const noexcept { return latency_ns_; }
  const TimeHistogram& run_time_ns() const noexcept { return run_time_ns_; }
  const SizeHistogram& batch_size() const noexcept { return batch_size_; }
  std::uint64_t rejections(Rejection r) const noexcept {
    return rejections_[static_cast<std::size_t>(r)].load(std::memory_order_relaxed);
  }
  /// Completions with success (errc 0) or with one sluice::errc.
  std::uint64_t completions(std::size_t errc_value) const noexcept {
    return completions_[errc_value].load(std::memory_order_relaxed);
  }
  std::uint64_t completions_ok() const noexcept { return completions(0); }
  std::uint64_t completions(errc e) const noexcept { return completions(static_cast<std::size_t>(e)); }
  std::uint64_t deadline_misses() const noexcept { return completions(errc::deadline_exceeded); }
  std::uint64_t oom_splits() const noexcept { return oom_splits_.load(std::memory_order_relaxed); }
  std::uint64_t model_failures() const noexcept { return model_failures_.load(std::memory_order_relaxed); }
  /// The message of the latest model failure (empty if none): std::error_code cannot carry it.
  std::string last_failure_message() const {
    std::lock_guard lock(message_mutex_);
    return last_failure_;
  }

  /// The Prometheus text exposition of every metric, labelled model="<model>"; with `load`, also
  /// the gauges of what the Batcher holds now.
  std::string render_prometheus(std::string_view model, std::optional<BatcherLoad> load = std::nullopt) const {
    std::string out;
    const std::string label = "model=\"" + escape(model) + "\"";
    auto header = [&](std::string_view name, std::string_view type, std::string_view help) {
      out.append("# HELP ").append(name).append(" ").append(help).append("\n");
      out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
    };
    auto gauge = [&](std::string_view name, std::string_view help, std::size_t value) {
      header(name, "gauge", help);
      out.append(name).append("{").append(label).append("} ").append(std::to_string(value)).append("\n");
    };
    if (load) {
      gauge("sluice_queue_depth", "Requests waiting in the queue for a batch now.", load->queued_requests);
      gauge("sluice_batches_in_flight", "Batches formed and not yet completed now.", load->batches_in_flight);
      gauge("sluice_requests_in_flight", "Requests submitted and not yet completed now (queued or running).",
            load->queued_requests + load->running_requests);
    }
    header("sluice_queue_time_seconds", "histogram", "Time a request waited in the queue before its batch formed.");
    queue_time_ns_.render(out, "sluice_queue_time_seconds", label, 1e-9);
    header("sluice_batch_size", "histogram", "Requests per batch run by the model.");
    batch_size_.render(out, "sluice_batch_size", label, 1.0);
    header("sluice_run_time_seconds", "histogram", "Time the model took to run one batch.");
    run_time_ns_.render(out, "sluice_run_time_seconds", label, 1e-9);
    header("sluice_request_latency_seconds", "histogram", "Submission to completion, every request.");
    latency_ns_.render(out, "sluice_request_latency_seconds", label, 1e-9);

    header("sluice_rejections_total", "counter", "Requests turned away at submission, by reason.");
    static constexpr std::array<std::string_view, 4> reasons{"queue_full", "admission", "shutting_down",
                                                             "invalid_argument"};
    for (std::size_t i = 0; i < reasons.size(); ++i)
      out.append("sluice_rejections_total{").append(label).append(",reason=\"").append(reasons[i]).append("\"} ")
          .append(std::to_string(rejections(static_cast<Rejection>(i)))).append("\n");

    header("sluice_deadline_misses_total", "counter", "Requests completed with deadline_exceeded.");
    out.append("sluice_deadline_misses_total{").append(label).append("} ").append(std::to_string(deadline_misses())).append("\n");

    header("sluice_completions_total", "counter", "Completed requests, by result.");
    for (std::size_t i = 0; i < kErrcSlots; ++i)
      out.append("sluice_completions_total{").append(label).append(",result=\"").append(result_name(i)).append("\"} ")
          .append(std::to_string(completions(i))).append("\n");
    out.append("sluice_completions_total{").append(label).append(",result=\"other\"} ")
        .append(std::to_string(other_errors_.load(std::memory_order_relaxed))).append("\n");

    header("sluice_oom_splits_total", "counter", "Batches split in halves after the model ran out of memory.");
    out.append("sluice_oom_splits_total{").append(label).append("} ").append(std::to_string(oom_splits())).append("\n");
    header("sluice_model_failures_total", "counter", "Batches the model failed (not out of memory).");
    out.append("sluice_model_failures_total{").append(label).append("} ").append(std::to_string(model_failures())).append("\n");
    return out;
  }

 private:
  static std::uint64_t to_ns(Duration d) noexcept {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return ns < 0 ? 0 : static_cast<std::uint64_t>(ns);
  }
  static std::string_view result_name(std::size_t i) {
    static constexpr std::array<std::string_view, kErrcSlots> names{
        "ok", "queue_full", "deadline_exceeded", "cancelled", "shutting_down", "out_of_memory",
        "invalid_argument", "model_failed"};
    return names[i];
  }
  static std::string escape(std::string_view s) {
    std::string r;
    for (char c : s) {
      if (c == '\\' || c == '"') r.push_back('\\');
      if (c == '\n') {
        r.append("\\n");
        continue;
      }
      r.push_back(c);
    }
    return r;
  }

  TimeHistogram queue_time_ns_;
  TimeHistogram latency_ns_;
  TimeHistogram run_time_ns_;
  SizeHistogram batch_size_;
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(Rejection::count)> rejections_{};
  std::array<std::atomic<std::uint64_t>, kErrcSlots> completions_{};
  std::atomic<std::uint64_t> other_errors_{0};
  std::atomic<std::uint64_t> oom_splits_{0};
  std::atomic<std::uint64_t> model_failures_{0};
  mutable std::mutex message_mutex_;
  std::string last_failure_;
};

}  // namespace sluice::batching
