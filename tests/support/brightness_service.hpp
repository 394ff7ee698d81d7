// A real served model for the server tests, small enough for sanitizers: BatcherService over a
// Segmenter whose "network" is one 1x1 convolution on the CPU backend (logit = 10 * mean(RGB) - 5 on
// [0, 1] pixels, mean 0 / std 1), so bright regions are the object and every answer is predictable.
// Its Batcher waits `max_queue_delay` for company, so concurrent requests share batches.
#pragma once

// The CPU backend first: its intrinsics header must be the first to include <immintrin.h>.
#include "sluice/backends/cpu/cpu_backend.hpp"

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "sluice/control/fixed_batch.hpp"
#include "sluice/serve/batcher_service.hpp"
#include "sluice/vision/segmenter.hpp"
#include "sluice/weights/host_tensor.hpp"

namespace sluice::serve::testing {

struct BrightnessNet {
  explicit BrightnessNet(cpu::CpuBackend& b) {
    weights::HostTensor w{{1, 3, 1, 1}, {10.0f / 3, 10.0f / 3, 10.0f / 3}};
    weights::HostTensor bias{{1}, {-5.0f}};
    const WeightView bias_view = bias;
    conv = std::make_shared<cpu::CpuBackend::conv_type>(b.make_conv(w, &bias_view, ConvSpec{}));
  }
  cpu::CpuBackend::tensor_type forward(cpu::CpuBackend& b, const cpu::CpuBackend::tensor_type& x) const {
    return b.conv2d(x, *conv, Activation::none);
  }
  std::int64_t in_channels() const { return 3; }
  std::int64_t out_channels() const { return 1; }
  std::int64_t min_input_size() const { return 1; }
  std::shared_ptr<const cpu::CpuBackend::conv_type> conv;
};

using BrightnessSegmenter = vision::Segmenter<BrightnessNet, cpu::CpuBackend>;
using BrightnessService = BatcherService<BrightnessSegmenter, control::FixedBatch>;

/// An io_context on its own threads, for the Batcher's completions.
struct Executor {
  boost::asio::io_context ioc;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard{ioc.get_executor()};
  std::vector<std::thread> threads;
  explicit Executor(int n = 2) {
    for (int i = 0; i < n; ++i) threads.emplace_back([this] { ioc.run(); });
  }
  ~Executor() {
    guard.reset();
    for (auto& t : threads) t.join();
  }
};

struct BrightnessOptions {
  int input_size = 32;
  std::size_t max_batch_size = 8;
  Duration max_queue_delay = std::chrono::milliseconds(5);
  Decoding decoding{};  ///< the server's decode stage, when set
};

/// A BatcherService named `name` over BrightnessNet; `executor` must outlive it.
inline std::shared_ptr<BrightnessService> make_brightness_service(std::string name, Executor& executor,
                                                                  BrightnessOptions o = {}) {
  auto backend = std::make_shared<cpu::CpuBackend>(cpu::CpuOptions{.threads = 1});
  vision::SegmenterConfig config;
  config.model_name = name;
  config.preprocess = {.input_height = o.input_size, .input_width = o.input_size, .mean = {0, 0, 0}, .std = {1, 1, 1}};
  auto segmenter = std::make_unique<BrightnessSegmenter>(BrightnessNet(*backend), std::vector<cpu::CpuBackend*>{backend.get()},
                                                         config);
  BatcherConfig batcher;
  batcher.max_batch_size = o.max_batch_size;
  batcher.max_queue_delay = o.max_queue_delay;
  Json info{{"network", "brightness"},
            {"backend", "cpu"},
            {"input_size", {{"height", o.input_size}, {"width", o.input_size}}}};
  return std::make_shared<BrightnessService>(std::move(name), std::move(info), backend, std::move(segmenter),
                                             executor.ioc.get_executor(), batcher, control::FixedBatch{},
                                             std::move(o.decoding));
}

}  // namespace sluice::serve::testing
