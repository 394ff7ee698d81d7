// tests/support/model_runner.hpp: a model runner that honours the calibrated sizes, over any batch callable
// `Fn(std::span<const Input>) -> std::vector<Output>`: predict one item, or predict_batch many in
// chunks of the optimal size (or a requested size), never above the memory-safe size. It never
// drops an item: a chunk that runs out of memory is split in halves and retried, and a callable
// that returns the wrong number of outputs is an error, not a silent loss.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sluice/core/error.hpp"

namespace sluice::calibrate {

template <class Input, class Fn>
  requires std::is_invocable_v<Fn&, std::span<const Input>>
class ModelRunner {
 public:
  using Output = typename std::invoke_result_t<Fn&, std::span<const Input>>::value_type;

  ModelRunner(Fn fn, std::size_t optimal_batch_size, std::size_t max_safe_batch_size)
      : fn_(std::move(fn)), optimal_(optimal_batch_size), max_safe_(max_safe_batch_size) {
    if (optimal_ == 0 || max_safe_ == 0 || optimal_ > max_safe_)
      throw Error(errc::invalid_argument, "model runner: need 1 <= optimal_batch_size <= max_safe_batch_size");
  }

  std::size_t get_optimal_batch_size() const { return optimal_; }
  /// May drop below the calibrated value after an out-of-memory run.
  std::size_t get_max_safe_batch_size() const { return max_safe_; }

  Output predict(const Input& x) {
    auto out = run_chunk(std::span<const Input>(&x, 1));
    return std::move(out.front());
  }

  /// Outputs in input order. `batch_size` (capped at the safe size) overrides the optimal one.
  std::vector<Output> predict_batch(std::span<const Input> inputs, std::optional<std::size_t> batch_size = {}) {
    if (batch_size && *batch_size == 0) throw Error(errc::invalid_argument, "model runner: batch_size must be >= 1");
    std::vector<Output> out;
    out.reserve(inputs.size());
    std::size_t i = 0;
    while (i < inputs.size()) {
      const std::size_t chunk = std::min({batch_size.value_or(optimal_), max_safe_, inputs.size() - i});
      for (auto& y : run_chunk(inputs.subspan(i, chunk))) out.push_back(std::move(y));
      i += chunk;
    }
    return out;
  }

 private:
  std::vector<Output> run_chunk(std::span<const Input> chunk) {
    std::vector<Output> out;
    try {
      out = fn_(chunk);
    } catch (const Error& e) {
      if (e.code() != make_error_code(errc::out_of_memory) || chunk.size() == 1) throw;
      // Split and retry; remember that this size does not fit.
      max_safe_ = std::max<std::size_t>(1, std::min(max_safe_, chunk.size() - 1));
      optimal_ = std::min(optimal_, max_safe_);
      const std::size_t half = chunk.size() / 2;
      out = run_chunk(chunk.first(half));
      for (auto& y : run_chunk(chunk.subspan(half))) out.push_back(std::move(y));
      return out;
    }
    if (out.size() != chunk.size())
      throw Error(errc::model_failed, "model runner: the model returned " + std::to_string(out.size()) +
                                          " outputs for a batch of " + std::to_string(chunk.size()));
    return out;
  }

  Fn fn_;
  std::size_t optimal_;
  std::size_t max_safe_;
};

}  // namespace sluice::calibrate
