// tests/support/cuda_test_support.hpp: what the CUDA tests share -- a fixture that skips (GTEST_SKIP,
// with the CUDA error text) when the machine has no usable GPU, and per-precision tolerances.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "sluice/backends/cuda/cuda_backend.hpp"

namespace sluice::cuda::test {

inline bool have_gpu() { return CudaBackend::device_count() > 0; }

#define SLUICE_SKIP_WITHOUT_GPU()                                                                     \
  do {                                                                                                \
    if (!::sluice::cuda::test::have_gpu())                                                            \
      GTEST_SKIP() << "no CUDA device on this machine (" << ::sluice::cuda::CudaBackend::unavailable_reason() \
                   << "): CUDA backend test skipped";                                                 \
  } while (0)

/// Tolerance on max |got - want| relative to max(1, max |want|).
///  - fp32: float arithmetic; convolutions 1e-4 (cuDNN may pick FFT or Winograd algorithms)
///  - tf32: 10-bit mantissa products in convolutions; the other ops are float
///  - fp16 / bf16: every stored value is rounded to 11 / 8 significant bits
inline double tolerance(Precision p, bool convolution) {
  switch (p) {
    case Precision::fp32: return convolution ? 1e-4 : 1e-5;
    case Precision::tf32: return convolution ? 1e-2 : 1e-5;
    case Precision::fp16: return convolution ? 2e-2 : 1e-2;
    case Precision::bf16: return convolution ? 6e-2 : 5e-2;
  }
  return 0;
}

}  // namespace sluice::cuda::test
