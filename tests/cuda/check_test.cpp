// The error macros, the no-GPU behaviour of the backend and the umbrella rule. These run on any
// machine: reporting a CUDA or cuDNN error needs the libraries, not a device.
#include <gtest/gtest.h>

#include <string>

#include "sluice/backends/cuda/cuda_backend.hpp"
#include "sluice/core/backend.hpp"
#include "sluice/sluice.hpp"

// The umbrella rule: the backend's public header brings no CUDA header with it.
#if defined(CUDART_VERSION) || defined(__CUDA_RUNTIME_API_H__) || defined(CUDNN_MAJOR)
#error "sluice/backends/cuda/cuda_backend.hpp (or the umbrella) leaked a CUDA header"
#endif

#include "support/cuda_test_support.hpp"
#include "sluice/backends/cuda/check.hpp"

namespace {

using sluice::cuda::CudaBackend;

static_assert(sluice::Backend<CudaBackend>);
static_assert(sluice::BackendBase<CudaBackend> && sluice::BackendWeights<CudaBackend> &&
              sluice::BackendOps<CudaBackend>);
static_assert(!std::is_copy_constructible_v<CudaBackend>, "a backend object is one lane: not copyable");
static_assert(std::is_move_constructible_v<CudaBackend>);

cudaError_t fails_with(cudaError_t e) { return e; }
cudnnStatus_t cudnn_fails_with(cudnnStatus_t s) { return s; }

TEST(CudaCheck, NamesTheCallTheErrorTheFileAndTheLine) {
  const int line = __LINE__ + 2;
  try {
    SLUICE_CUDA_CHECK(fails_with(cudaErrorInvalidValue));
    FAIL() << "must throw";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::model_failed);
    const std::string what = e.what();
    EXPECT_NE(what.find("fails_with(cudaErrorInvalidValue)"), std::string::npos) << what;
    EXPECT_NE(what.find("cudaErrorInvalidValue"), std::string::npos) << what;
    EXPECT_NE(what.find("check_test.cpp:" + std::to_string(line)), std::string::npos) << what;
  }
}

TEST(CudaCheck, OutOfMemoryBecomesTheOutOfMemoryCode) {
  try {
    SLUICE_CUDA_CHECK(fails_with(cudaErrorMemoryAllocation));
    FAIL() << "must throw";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::out_of_memory);
  }
  try {
    SLUICE_CUDNN_CHECK(cudnn_fails_with(CUDNN_STATUS_ALLOC_FAILED));
    FAIL() << "must throw";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::out_of_memory);
  }
}

TEST(CudaCheck, CudnnErrorsNameTheCallAndTheStatus) {
  const int line = __LINE__ + 2;
  try {
    SLUICE_CUDNN_CHECK(cudnn_fails_with(CUDNN_STATUS_BAD_PARAM));
    FAIL() << "must throw";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::model_failed);
    const std::string what = e.what();
    EXPECT_NE(what.find("cudnn_fails_with(CUDNN_STATUS_BAD_PARAM)"), std::string::npos) << what;
    EXPECT_NE(what.find("BAD_PARAM"), std::string::npos) << what;
    EXPECT_NE(what.find("check_test.cpp:" + std::to_string(line)), std::string::npos) << what;
  }
}

TEST(CudaCheck, SuccessDoesNotThrowAndEvaluatesOnce) {
  int calls = 0;
  auto ok = [&] {
    ++calls;
    return cudaSuccess;
  };
  EXPECT_NO_THROW(SLUICE_CUDA_CHECK(ok()));
  EXPECT_EQ(calls, 1);
}

TEST(CudaBackendWithoutGpu, ConstructionFailsWithAClearError) {
  if (sluice::cuda::test::have_gpu()) GTEST_SKIP() << "this machine has a GPU";
  EXPECT_EQ(CudaBackend::device_count(), 0);
  EXPECT_FALSE(CudaBackend::unavailable_reason().empty());
  try {
    CudaBackend backend;
    FAIL() << "a backend without a device must not construct";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("no usable CUDA device"), std::string::npos) << e.what();
  }
}

TEST(CudaPrecision, NamesRoundTripAndUnknownNamesAreRejected) {
  using sluice::cuda::Precision;
  for (Precision p : {Precision::fp32, Precision::tf32, Precision::fp16, Precision::bf16})
    EXPECT_EQ(sluice::cuda::parse_precision(sluice::cuda::to_string(p)), p);
  EXPECT_THROW((void)sluice::cuda::parse_precision("fp8"), sluice::Error);
}

}  // namespace
