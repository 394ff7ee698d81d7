// sluice/vision/sigmoid.hpp: the logistic function over a run of floats, in plain arithmetic that
// the compiler vectorises. 1 / (1 + std::exp(-x)) calls libm once per element, which made the
// sigmoid of a 128 x 128 logit map the largest part of an image's postprocessing.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace sluice::vision {

/// out[i] = 1 / (1 + e^-in[i]) for i < n, within 1e-7 absolute and 5e-7 relative of the exact value
/// (tests/vision/sigmoid_test.cpp). e^y = 2^k * e^r with y = k ln 2 + r, |r| <= ln 2 / 2, and e^r
/// from its Taylor polynomial of degree 6 (truncation below r^7 / 7! = 1.2e-7 relative). y is clamped
/// to [-87, 88], where 2^k stays a normal float: beyond, the sigmoid is 0 or 1 to float precision
/// anyway (at most 1.7e-38 off). NaN stays NaN. `in` and `out` may be the same.
/// The clamp and the NaN test work on the bit patterns with integer operations: a float comparison
/// may trap on NaN, and under the default -ftrapping-math that keeps GCC from vectorising the loop.
inline void sigmoid(const float* in, float* out, std::size_t n) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;         // ln 2 in 15 significant bits: k * kLn2Hi is exact
  constexpr float kLn2Lo = 1.42860682030941723212e-6f;  // ln 2 - kLn2Hi
  constexpr float kRound = 12582912.0f;                 // 1.5 * 2^23: adding it rounds to an integer
  constexpr std::int32_t kHigh = std::bit_cast<std::int32_t>(88.0f);  // positive floats order as their bits
  constexpr std::int32_t kLowMagnitude = std::bit_cast<std::int32_t>(87.0f);
  constexpr std::int32_t kSign = std::numeric_limits<std::int32_t>::min();
  constexpr std::int32_t kInfinity = 0x7f800000, kQuietNaN = 0x7fc00000;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int32_t bits = std::bit_cast<std::int32_t>(-in[i]);
    const std::int32_t magnitude = bits & ~kSign;
    const std::int32_t limit = kHigh + ((bits >> 31) & (kLowMagnitude - kHigh));  // 87 for negative y
    const float y = std::bit_cast<float>((bits & kSign) | std::min(magnitude, limit));
    const float shifted = y * kLog2e + kRound;
    const float k = shifted - kRound;
    const std::uint32_t ki = std::bit_cast<std::uint32_t>(shifted) - std::bit_cast<std::uint32_t>(kRound);
    const float r = (y - k * kLn2Hi) - k * kLn2Lo;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const float s = 1.0f / (1.0f + p * std::bit_cast<float>((ki + 127u) << 23));
    const std::int32_t nan = -static_cast<std::int32_t>(magnitude > kInfinity);  // all ones for NaN
    out[i] = std::bit_cast<float>((std::bit_cast<std::int32_t>(s) & ~nan) | (kQuietNaN & nan));
  }
}

}  // namespace sluice::vision
