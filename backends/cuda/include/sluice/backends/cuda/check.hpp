// sluice/backends/cuda/check.hpp: SLUICE_CUDA_CHECK and SLUICE_CUDNN_CHECK, which turn a failed
// CUDA runtime or cuDNN call into a sluice::Error that names the call, the error, the file and the
// line. Running out of device memory becomes errc::out_of_memory (the Batcher splits the batch and
// retries); anything else becomes errc::model_failed. This header includes the CUDA runtime API and
// cuDNN headers: only the backend's sources and users who want the macros include it.
#pragma once

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <string>

#include "sluice/core/error.hpp"

namespace sluice::cuda::detail {

inline std::string where(const char* call, const char* file, int line) {
  return std::string(call) + " at " + file + ":" + std::to_string(line);
}

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // clear the (non-sticky) error so the next call does not see it
  const std::string what = "CUDA error " + std::string(cudaGetErrorName(status)) + " (" +
                           cudaGetErrorString(status) + ") in " + where(call, file, line);
  throw Error(status == cudaErrorMemoryAllocation ? errc::out_of_memory : errc::model_failed, what);
}

[[noreturn]] inline void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line) {
  const std::string what = "cuDNN error " + std::string(cudnnGetErrorString(status)) + " in " + where(call, file, line);
  throw Error(status == CUDNN_STATUS_ALLOC_FAILED ? errc::out_of_memory : errc::model_failed, what);
}

}  // namespace sluice::cuda::detail

/// Evaluates a CUDA runtime call once; throws sluice::Error when it does not return cudaSuccess.
#define SLUICE_CUDA_CHECK(call)                                                              \
  do {                                                                                       \
    const cudaError_t sluice_cuda_status_ = (call);                                          \
    if (sluice_cuda_status_ != cudaSuccess)                                                  \
      ::sluice::cuda::detail::throw_cuda_error(sluice_cuda_status_, #call, __FILE__, __LINE__); \
  } while (0)

/// Evaluates a cuDNN call once; throws sluice::Error when it does not return CUDNN_STATUS_SUCCESS.
#define SLUICE_CUDNN_CHECK(call)                                                               \
  do {                                                                                         \
    const cudnnStatus_t sluice_cudnn_status_ = (call);                                         \
    if (sluice_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                          \
      ::sluice::cuda::detail::throw_cudnn_error(sluice_cudnn_status_, #call, __FILE__, __LINE__); \
  } while (0)

/// After a kernel launch: reports a bad launch configuration (the launch itself returns nothing).
#define SLUICE_CUDA_CHECK_LAUNCH() SLUICE_CUDA_CHECK(cudaGetLastError())
