// examples/common/backend_lanes.hpp: the execution lanes of the example programs (segment,
// sluice_serve), on the backend a user names at run time: "cpu" (one CpuBackend with its own thread
// pool per lane) or "cuda" (one CudaBackend, i.e. one stream, per lane; only in builds that have the
// sluice::cuda target, which defines SLUICE_EXAMPLES_WITH_CUDA). with_lanes() hands the lanes to a
// generic callable, so a program's code is written once and instantiated per backend.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sluice/backends/cpu/cpu_backend.hpp"
#include "sluice/core/error.hpp"
#ifdef SLUICE_EXAMPLES_WITH_CUDA
#include "sluice/backends/cuda/cuda_backend.hpp"
#endif

namespace sluice::examples {

/// What the user asked for; each backend reads its own fields.
struct LaneSettings {
  std::string backend = "cpu";  ///< cpu or cuda
  std::size_t lanes = 1;
  std::size_t cpu_threads = 0;  ///< threads per CPU lane; 0: the cores divided among the lanes
  cpu::BatchSplit cpu_batch_split = cpu::BatchSplit::automatic;  ///< CpuOptions::batch_split
  std::string cpu_precision = "fp32";  ///< CpuOptions::precision: fp32, bf16 (fp32 where the CPU lacks AVX512_BF16)
  int cuda_device = 0;
  std::string cuda_precision = "fp32";  ///< fp32, tf32, fp16, bf16
};

/// Backends owned together, with the raw pointers a Segmenter takes and a line for logs.
template <class B>
struct Lanes {
  std::vector<std::unique_ptr<B>> owned;
  std::vector<B*> ptrs;
  std::string description;  ///< e.g. "cpu fp32 (1 lane x 2 threads)", "cpu bf16 amx (...)"

  B& front() { return *ptrs.front(); }
  void add(std::unique_ptr<B> b) {
    ptrs.push_back(b.get());
    owned.push_back(std::move(b));
  }
};

inline Lanes<cpu::CpuBackend> make_cpu_lanes(const LaneSettings& s) {
  const std::size_t n = std::max<std::size_t>(1, s.lanes);
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t threads = s.cpu_threads ? s.cpu_threads : std::max<std::size_t>(1, cores / n);
  const cpu::Precision precision = cpu::parse_precision(s.cpu_precision);
  Lanes<cpu::CpuBackend> lanes;
  for (std::size_t i = 0; i < n; ++i)
    lanes.add(std::make_unique<cpu::CpuBackend>(
        cpu::CpuOptions{.threads = threads, .batch_split = s.cpu_batch_split, .precision = precision}));
  const std::string& note = lanes.front().precision_note();
  lanes.description = std::string("cpu ") + lanes.front().gemm_kernel() +
                      (note.empty() ? "" : " [" + note + "]") + " (" + std::to_string(n) + (n > 1 ? " lanes" : " lane") + " x " + std::to_string(threads) +
                      (threads > 1 ? std::string(" threads, batch split ") + cpu::to_string(s.cpu_batch_split)
                                   : std::string(" thread")) +
                      ")";
  return lanes;
}

#ifdef SLUICE_EXAMPLES_WITH_CUDA
/// Throws sluice::Error(invalid_argument) with CUDA's own reason when the device is not usable.
inline Lanes<cuda::CudaBackend> make_cuda_lanes(const LaneSettings& s) {
  if (cuda::CudaBackend::device_count() == 0)
    throw Error(errc::invalid_argument, "--backend cuda: no usable CUDA device (" +
                                            cuda::CudaBackend::unavailable_reason() + ")");
  const cuda::Precision precision = cuda::parse_precision(s.cuda_precision);
  const std::size_t n = std::max<std::size_t>(1, s.lanes);
  Lanes<cuda::CudaBackend> lanes;
  for (std::size_t i = 0; i < n; ++i)
    lanes.add(std::make_unique<cuda::CudaBackend>(cuda::CudaOptions{.device = s.cuda_device, .precision = precision}));
  lanes.description = "cuda:" + std::to_string(s.cuda_device) + " " + cuda::to_string(precision) + " (" +
                      std::to_string(n) + (n > 1 ? " lanes)" : " lane)");
  return lanes;
}
#endif

/// Calls f(Lanes<B>&&) with the lanes of the backend `s` names and returns its result.
/// Throws sluice::Error(invalid_argument) for an unknown backend or one this build lacks.
template <class F>
decltype(auto) with_lanes(const LaneSettings& s, F&& f) {
  if (s.backend == "cpu") return f(make_cpu_lanes(s));
  if (s.backend == "cuda") {
#ifdef SLUICE_EXAMPLES_WITH_CUDA
    return f(make_cuda_lanes(s));
#else
    throw Error(errc::invalid_argument,
                "--backend cuda: this build has no CUDA backend (it needs nvcc and cuDNN at build time, "
                "SLUICE_WITH_CUDA=ON)");
#endif
  }
  throw Error(errc::invalid_argument, "unknown backend '" + s.backend + "' (cpu or cuda)");
}

}  // namespace sluice::examples
