// sluice/models/network.hpp: the Network concept -- what a segmentation network offers to the
// code that runs it (Segmenter, CLI, server): a const forward() over a lane's backend, taking
// N x 3 x H x W and returning N x 1 x H x W logits; weights are shared read-only by all lanes.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/core/error.hpp"
#include "sluice/core/shape.hpp"
#include "sluice/models/input_size.hpp"

namespace sluice::models {

template <class N, class B>
concept Network = Backend<B> && requires(const N& net, B& backend, const typename B::tensor_type& x) {
  { net.forward(backend, x) } -> std::same_as<typename B::tensor_type>;
  { net.in_channels() } -> std::convertible_to<std::int64_t>;
  { net.out_channels() } -> std::convertible_to<std::int64_t>;
  { net.min_input_size() } -> std::convertible_to<std::int64_t>;
};

/// net.forward(backend, x), or, on a backend that may split a batch into samples (SampleSplitting:
/// the CPU backend), whatever way it picks: one forward pass of the batch, or one per sample, each
/// on a thread's own backend; on a backend that records forward passes (ForwardRecording: the CUDA
/// backend's graphs), a replay of the recording for this network and input shape. The values are
/// the same either way; what runs a network for a batch (Segmenter, calibrator, benchmarks) calls this.
template <class Net, Backend B>
  requires Network<Net, B>
typename B::tensor_type run_forward(const Net& net, B& backend, const typename B::tensor_type& x) {
  if constexpr (SampleSplitting<B>) {
    return backend.run_batch(x, [&net](B& b, const typename B::tensor_type& batch) { return net.forward(b, batch); });
  } else if constexpr (ForwardRecording<B>) {
    return backend.run_recorded(&net, x, [&net](B& b, const typename B::tensor_type& in) { return net.forward(b, in); });
  } else {
    return net.forward(backend, x);
  }
}

/// The input check every network runs first, before any compute: channels as bound, and a size at
/// which its deepest instance norm sees more than one value (see input_size.hpp).
inline void check_input(const char* network, const Shape& s, std::int64_t channels, const DeepestNormPlane& plane) {
  if (s.n < 1 || s.c != channels)
    throw Error(errc::invalid_argument, std::string(network) + ": input " + s.to_string() + " must be N x " +
                                            std::to_string(channels) + " x H x W with N >= 1");
  plane.check(network, s);
}

}  // namespace sluice::models
