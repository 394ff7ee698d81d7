// sluice/backends/cpu/intrinsics.hpp: <immintrin.h>, included first by every CPU backend header that
// uses SIMD (directly or through Eigen).
//
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_ps(), a deliberate self-initialisation
// that -Wuninitialized / -Wmaybe-uninitialized report wherever Eigen's AVX-512 packets inline them
// (GCC bug 105593, fixed in GCC 13): hundreds of false positives in a -march=native build. The
// diagnostics are silenced for the lines of the intrinsic headers only -- GCC checks a warning's
// pragma state at the warning's own location -- so sluice's and Eigen's code keep every warning.
// It works when this is the translation unit's first <immintrin.h>: a program that includes OpenCV
// or Eigen before the CPU backend includes this header first (examples/segment, examples/serve).
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif
