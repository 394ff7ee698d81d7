// sluice/weights/safetensors_float.hpp: the 16-bit float formats of checkpoints (IEEE binary16 "F16"
// and bfloat16 "BF16") converted to and from float by bit arithmetic: exact on the way in
// (subnormals, infinities and NaN included), round-to-nearest-even on the way out.
#pragma once

#include <bit>
#include <cstdint>

namespace sluice::weights {

/// IEEE 754 binary16 -> binary32. Every half value is exactly representable as a float.
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu;
  std::uint32_t mantissa = h & 0x3FFu;
  std::uint32_t bits = 0;
  if (exponent == 0x1Fu) {
    // Infinity or NaN: keep the payload in the top mantissa bits.
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: value = mantissa * 2^-24. Shift the leading one up to the implicit bit;
    // a float has the range to hold it as a normal number.
    int e = -14;  // exponent of the subnormal range
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    mantissa &= 0x3FFu;
    bits = sign | (static_cast<std::uint32_t>(e + 127) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(bits);
}

/// binary32 -> binary16 with round to nearest, ties to even; overflow gives infinity, NaN stays
/// NaN (quiet), values below the subnormal range round to signed zero.
inline std::uint16_t float_to_half(float f) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t exponent = (bits >> 23) & 0xFFu;
  const std::uint32_t mantissa = bits & 0x7FFFFFu;
  if (exponent == 0xFFu) {
    if (mantissa == 0) return static_cast<std::uint16_t>(sign | 0x7C00u);
    return static_cast<std::uint16_t>(sign | 0x7E00u | (mantissa >> 13));  // quiet NaN
  }
  const int e = static_cast<int>(exponent) - 127;  // unbiased
  if (e > 15) return static_cast<std::uint16_t>(sign | 0x7C00u);
  if (e >= -14) {
    // Normal half. Round the 23-bit mantissa to 10 bits; a carry may ripple into the exponent
    // (and up to infinity), which the plain addition handles.
    std::uint32_t h = (static_cast<std::uint32_t>(e + 15) << 10) | (mantissa >> 13);
    const std::uint32_t rest = mantissa & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  if (e < -25) return sign;  // below half the smallest subnormal: rounds to zero
  // Subnormal half: value / 2^-24 with the implicit bit made explicit.
  const std::uint32_t full = mantissa | 0x800000u;  // 24 significant bits, value = full * 2^(e-23)
  const int shift = -e - 1;                          // 14..24: bits dropped to reach units of 2^-24
  std::uint32_t h = full >> shift;
  const std::uint32_t rest = full & ((1u << shift) - 1u);
  const std::uint32_t half_way = 1u << (shift - 1);
  if (rest > half_way || (rest == half_way && (h & 1u))) ++h;  // may become the smallest normal
  return static_cast<std::uint16_t>(sign | h);
}

/// bfloat16 -> binary32: bfloat16 is the top half of a float.
inline float bfloat16_to_float(std::uint16_t b) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// binary32 -> bfloat16 with round to nearest, ties to even; NaN stays NaN (quiet).
inline std::uint16_t float_to_bfloat16(float f) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x7FFFFFu) != 0)
    return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

}  // namespace sluice::weights
