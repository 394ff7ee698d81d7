// The 16-bit float conversions of safetensors_float.hpp, checked exhaustively against the value
// each bit pattern denotes by the IEEE definitions (computed with ldexp in double, independently of
// the bit tricks under test), and the rounding on the way out against the midpoints between
// neighbouring representable values.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "sluice/weights/safetensors_float.hpp"

namespace {

using sluice::weights::bfloat16_to_float;
using sluice::weights::float_to_bfloat16;
using sluice::weights::float_to_half;
using sluice::weights::half_to_float;

// binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
double half_value(std::uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int e = (h >> 10) & 0x1F;
  const int m = h & 0x3FF;
  if (e == 0x1F) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(static_cast<double>(m), -24);
  return sign * std::ldexp(1.0 + m / 1024.0, e - 15);
}

// bfloat16: 1 sign, 8 exponent (bias 127), 7 mantissa bits.
double bfloat16_value(std::uint16_t b) {
  const int sign = (b >> 15) ? -1 : 1;
  const int e = (b >> 7) & 0xFF;
  const int m = b & 0x7F;
  if (e == 0xFF) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(static_cast<double>(m), -133);
  return sign * std::ldexp(1.0 + m / 128.0, e - 127);
}

TEST(HalfFloat, EveryBitPatternDecodesToItsValue) {
  for (std::uint32_t i = 0; i <= 0xFFFF; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const double expected = half_value(h);
    const float got = half_to_float(h);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << std::hex << i;
    } else {
      EXPECT_EQ(static_cast<double>(got), expected) << std::hex << i;
      EXPECT_EQ(std::signbit(got), (i & 0x8000u) != 0) << std::hex << i;  // -0 stays -0
    }
  }
}

TEST(HalfFloat, EveryFiniteValueRoundTrips) {
  for (std::uint32_t i = 0; i <= 0xFFFF; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    if (((h >> 10) & 0x1F) == 0x1F && (h & 0x3FF)) continue;  // NaN: checked below
    EXPECT_EQ(float_to_half(half_to_float(h)), h) << std::hex << i;
  }
}

TEST(HalfFloat, RoundsToNearestTiesToEven) {
  // For each pair of neighbouring non-negative finite halves, the midpoint rounds to the even one,
  // and the floats just beside the midpoint round to the nearer one.
  for (std::uint32_t i = 0; i < 0x7BFF; ++i) {
    const double lo = half_value(static_cast<std::uint16_t>(i));
    const double hi = half_value(static_cast<std::uint16_t>(i + 1));
    const float mid = static_cast<float>((lo + hi) / 2);  // exact: needs at most 12 bits
    ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2);
    const std::uint16_t even = (i % 2 == 0) ? static_cast<std::uint16_t>(i) : static_cast<std::uint16_t>(i + 1);
    EXPECT_EQ(float_to_half(mid), even) << std::hex << i;
    EXPECT_EQ(float_to_half(std::nextafter(mid, 0.0f)), i) << std::hex << i;
    EXPECT_EQ(float_to_half(std::nextafter(mid, INFINITY)), i + 1) << std::hex << i;
    EXPECT_EQ(float_to_half(-mid), even | 0x8000u) << std::hex << i;
  }
}

TEST(HalfFloat, OverflowUnderflowAndSpecials) {
  EXPECT_EQ(float_to_half(65504.0f), 0x7BFF);   // the largest half
  EXPECT_EQ(float_to_half(65519.99f), 0x7BFF);  // below the midpoint to 65536
  EXPECT_EQ(float_to_half(65520.0f), 0x7C00);   // the midpoint: ties to even = infinity
  EXPECT_EQ(float_to_half(1e10f), 0x7C00);
  EXPECT_EQ(float_to_half(-1e10f), 0xFC00);
  EXPECT_EQ(float_to_half(INFINITY), 0x7C00);
  EXPECT_EQ(float_to_half(-INFINITY), 0xFC00);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);                      // half of the smallest: tie -> 0
  EXPECT_EQ(float_to_half(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);  // just above: smallest
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(float_to_half(-std::ldexp(1.0f, -30)), 0x8000);
  EXPECT_EQ(float_to_half(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  const std::uint16_t nan = float_to_half(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(std::isnan(half_to_float(nan)));
  const std::uint16_t snan = float_to_half(std::bit_cast<float>(0x7F800001u));  // payload below half's
  EXPECT_TRUE(std::isnan(half_to_float(snan)));
}

TEST(BFloat16, EveryBitPatternDecodesToItsValue) {
  for (std::uint32_t i = 0; i <= 0xFFFF; ++i) {
    const auto b = static_cast<std::uint16_t>(i);
    const double expected = bfloat16_value(b);
    const float got = bfloat16_to_float(b);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << std::hex << i;
    } else {
      EXPECT_EQ(static_cast<double>(got), expected) << std::hex << i;
      EXPECT_EQ(float_to_bfloat16(got), b) << std::hex << i;
    }
  }
}

TEST(BFloat16, RoundsToNearestTiesToEven) {
  for (std::uint32_t i = 0; i < 0x7F7F; i += 7) {  // a stride keeps it quick; covers every exponent
    const double lo = bfloat16_value(static_cast<std::uint16_t>(i));
    const double hi = bfloat16_value(static_cast<std::uint16_t>(i + 1));
    const float mid = static_cast<float>((lo + hi) / 2);
    ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2);
    const std::uint32_t even = (i % 2 == 0) ? i : i + 1;
    EXPECT_EQ(float_to_bfloat16(mid), even) << std::hex << i;
    EXPECT_EQ(float_to_bfloat16(std::nextafter(mid, 0.0f)), i) << std::hex << i;
    EXPECT_EQ(float_to_bfloat16(std::nextafter(mid, INFINITY)), i + 1) << std::hex << i;
  }
  EXPECT_EQ(float_to_bfloat16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to infinity
  EXPECT_EQ(float_to_bfloat16(-INFINITY), 0xFF80);
  EXPECT_TRUE(std::isnan(bfloat16_to_float(float_to_bfloat16(std::bit_cast<float>(0x7F800001u)))));
}

}  // namespace
