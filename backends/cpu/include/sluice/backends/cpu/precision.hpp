// sluice/backends/cpu/precision.hpp: the CPU backend's arithmetic precision (CpuOptions::precision)
// and whether this processor runs the bf16 kernels.
//  - fp32: every op in float32 (the default);
//  - bf16: the conv GEMMs (im2col, in-place and Winograd) multiply bfloat16 operands and sum the
//    products in float32 (AVX512_BF16's vdpbf16ps); weights are rounded to bf16 once, at packing,
//    activations while the GEMM packs them. Everything else -- norm statistics, softmax, sigmoid,
//    the transforms, bias and activation -- stays float32.
// The bf16 kernels are chosen at run time from CPUID, not from the compiler flags, so one binary
// runs on any x86-64. Where the processor lacks AVX512_BF16 (or SLUICE_CPU_BF16=off is set, which
// the tests use to force it), bf16 falls back to the fp32 kernels: CpuBackend::precision() then
// says fp32 and CpuBackend::precision_note() says why. Where it also has AMX tiles
// (cpu_has_amx_bf16), the bf16 GEMMs run on them instead (gemm_amx.hpp; SLUICE_CPU_AMX=off keeps
// vdpbf16ps).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#define SLUICE_CPU_BF16_KERNELS 1  // the bf16 kernels are compiled (target attributes, gemm_bf16.hpp)
#endif
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#include <sys/syscall.h>
#include <unistd.h>
#define SLUICE_CPU_AMX_KERNELS 1  // the AMX kernel is compiled (gemm_amx.hpp)
#endif

#include "sluice/core/error.hpp"

namespace sluice::cpu {

enum class Precision { fp32, bf16 };

inline const char* to_string(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

/// "fp32" or "bf16"; anything else throws invalid_argument (the CUDA-only tf32 and fp16 too).
inline Precision parse_precision(std::string_view s) {
  if (s == "fp32") return Precision::fp32;
  if (s == "bf16") return Precision::bf16;
  throw Error(errc::invalid_argument,
              "CPU precision must be fp32 or bf16, got '" + std::string(s) + "' (tf32 and fp16 are CUDA only)");
}

/// Whether the processor and the operating system run AVX-512 code with the BF16 dot products:
/// CPUID.(EAX=7,ECX=0):EBX has AVX512F (bit 16), AVX512BW (30) and AVX512VL (31);
/// CPUID.(EAX=7,ECX=1):EAX has AVX512_BF16 (bit 5); XCR0 enables the SSE, AVX and AVX-512 state
/// (bits 1, 2, 5, 6, 7), without which the registers are not saved across context switches.
inline bool cpu_has_avx512_bf16() {
#ifdef SLUICE_CPU_BF16_KERNELS
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return false;  // OSXSAVE
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0xE6u) != 0xE6u) return false;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const unsigned need = (1u << 16) | (1u << 30) | (1u << 31);
  if ((ebx & need) != need) return false;
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  return (eax & (1u << 5)) != 0;
#else
  return false;
#endif
}

/// Whether the processor has AMX tiles with bf16 dot products and the process may use them:
/// AVX512_BF16 (the kernel rounds B with it); CPUID.(EAX=7,ECX=0):EDX has AMX-BF16 (bit 22) and
/// AMX-TILE (24); XCR0 enables the tile state (bits 17 and 18); and Linux granted this process the
/// tile data (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 18): without it the first tile
/// instruction faults). Asked once; the grant holds for every thread of the process.
inline bool cpu_has_amx_bf16() {
#ifdef SLUICE_CPU_AMX_KERNELS
  static const bool has = [] {
    if (!cpu_has_avx512_bf16()) return false;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const unsigned need = (1u << 22) | (1u << 24);
    if ((edx & need) != need) return false;
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & (3u << 17)) != (3u << 17)) return false;
    constexpr long kRequestPermission = 0x1023, kTileData = 18;  // <asm/prctl.h>, the XSAVE feature number
    return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
  }();
  return has;
#else
  return false;
#endif
}

/// Why a requested bf16 runs as fp32 here; empty when the bf16 kernels run.
inline std::string bf16_unavailable_reason() {
  if (const char* v = std::getenv("SLUICE_CPU_BF16"); v != nullptr && std::strcmp(v, "off") == 0)
    return "bf16 requested, SLUICE_CPU_BF16=off: running the fp32 kernels";
#ifndef SLUICE_CPU_BF16_KERNELS
  return "bf16 requested, but this build has no bf16 kernels (not x86-64 GCC/Clang): running the fp32 kernels";
#else
  if (!cpu_has_avx512_bf16()) return "bf16 requested, but this CPU lacks AVX512_BF16: running the fp32 kernels";
  return {};
#endif
}

}  // namespace sluice::cpu
