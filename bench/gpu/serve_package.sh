#!/usr/bin/env bash
# bench/gpu/serve_package.sh: builds sluice_serve with the CUDA backend on this Debian machine and
# packs it, with the shared libraries it needs, into build-gpu-serve/serve.tar.xz for a GPU machine
# that has CUDA, cuDNN (PyTorch's wheel) and python3 but neither Boost nor OpenCV's C++ libraries;
# bench/gpu/serve_check.sh unpacks and measures it there:
#   here:                 bench/gpu/serve_package.sh
#   on the GPU machine:   bash bench/gpu/serve_check.sh   (with build-gpu-serve/ copied along: ignored
#                         by git, it holds only the archive, about 10 MiB; the build and the staging
#                         folder stay in build/gpu-serve and build/gpu-serve-stage)
#
# Why a package instead of a build there: the server needs Boost (Asio, Beast) and OpenCV, which the
# GPU image lacks; a binary linked here runs there because this machine's glibc (Debian 12, 2.36) is
# older than the image's (Ubuntu 24.04-like).
#
# The build (build/gpu-serve): Release, SLUICE_WITH_CUDA=ON for CMAKE_CUDA_ARCHITECTURES
# (default 90: H100/H200), -march=x86-64-v3 (AVX2 and FMA, which every GPU server has; not
# -march=native: the GPU machine's CPU may differ from this one), no tests, benchmarks or gRPC; only
# the sluice_serve target, with ccache as the presets use it.
#
# The archive: bin/sluice_serve; lib/, the libraries it needs (bench/gpu/pack_closure.py walks the
# DT_NEEDED graph); fallback/, this machine's C++ runtime (below); data/images/, PNG images for
# bench/serve/load.py, made here so that the GPU machine's python3 needs neither OpenCV nor numpy;
# MANIFEST (the build and the newest GLIBC / GLIBCXX versions it needs) and closure.txt. Not in lib/:
#   - glibc (libc, libm, libpthread, libdl, librt, ld-linux, ...): the GPU image's is newer and
#     backward compatible;
#   - libstdc++ and libgcc_s: assumed newer there (Ubuntu 24.04 ships the GCC 13/14 runtime; this
#     build needs GCC 12's), which cannot be verified from here. serve_check.sh puts fallback/ on the
#     library path only when ldd reports a GLIBCXX/CXXABI/GCC version missing (a newer runtime
#     serves older programs, an older one does not);
#   - libcuda (the driver's) and libcudnn* (serve_check.sh takes PyTorch's nvidia-cudnn wheel);
#   - GDAL, GDCM and OpenEXR, which Debian's OpenCV image codecs link for decoders sluice never
#     reaches (it decodes PNG, JPEG, TIFF and BMP only): small stubs with their sonames stand in for
#     them, which takes the archive from 46 MiB to about 10 MiB (pack_closure.py says why it is safe).
# libcudart (dynamic through CUDA::cudart) and libsluice_cuda are packed. The copies are stripped
# (--strip-unneeded): everything that goes to the GPU machine shares one size limit.
#
# Before packing, bench/gpu/serve_smoke.py runs the packed binary on this machine's CPU with only the
# package's libraries and cuDNN on LD_LIBRARY_PATH: a PNG, a JPEG, a TIFF and a BMP are segmented,
# NITF, DICOM and OpenEXR files are refused while it keeps serving. A failure stops the script.
#
# Knobs (environment): SLUICE_SERVE_CUDA_ARCHS (default 90), SLUICE_SERVE_JOBS (build jobs, default
# 2), SLUICE_SERVE_IMAGES (PNG images to pack, default 64), SLUICE_SERVE_IMAGE_SIZE (their size,
# default 128, the demo model's input), SLUICE_SERVE_STUB (regex of the library names replaced by
# stubs; empty: none).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
OUTDIR="$ROOT/build-gpu-serve"
BUILD="$ROOT/build/gpu-serve"        # not under OUTDIR: only the archive goes to the GPU machine
STAGE="$ROOT/build/gpu-serve-stage"
ARCHS=${SLUICE_SERVE_CUDA_ARCHS:-90}
JOBS=${SLUICE_SERVE_JOBS:-2}
NIMAGES=${SLUICE_SERVE_IMAGES:-64}
IMAGE_SIZE=${SLUICE_SERVE_IMAGE_SIZE:-128}
say() { echo "== $*"; }
mkdir -p "$OUTDIR" "$BUILD"

if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
export CUDACXX="$(command -v nvcc)"
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=true

# ---- build ----
cmake_args=(-S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$ARCHS"
            -DSLUICE_WITH_CUDA=ON -DSLUICE_WITH_GRPC=OFF -DSLUICE_CPU_NATIVE=OFF "-DCMAKE_CXX_FLAGS=-march=x86-64-v3"
            -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCH=OFF -DSLUICE_BUILD_EXAMPLES=ON -DSLUICE_INSTALL=OFF)
command -v ninja >/dev/null 2>&1 && [[ ! -f "$BUILD/CMakeCache.txt" || -f "$BUILD/build.ninja" ]] && cmake_args+=(-G Ninja)
command -v ccache >/dev/null 2>&1 && cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
say "configure (CUDA archs $ARCHS)"
cmake "${cmake_args[@]}" >"$BUILD/configure.log" 2>&1 || { tail -30 "$BUILD/configure.log"; exit 1; }
if ! grep -q "CUDA backend ON" "$BUILD/configure.log"; then
  grep "sluice:" "$BUILD/configure.log"
  say "FAIL: the CUDA backend is off (nvcc, cuDNN?)"
  exit 1
fi
say "build sluice_serve (-j$JOBS)"
cmake --build "$BUILD" --target sluice_serve -j "$JOBS"
BIN="$BUILD/examples/serve/sluice_serve"
[[ -x "$BIN" ]] || { say "FAIL: $BIN was not built"; exit 1; }

# ---- the closure of shared libraries ----
rm -rf "$STAGE"
mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/data/images" "$STAGE/stubs"
cp "$BIN" "$STAGE/bin/"
leave='^(libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libanl|libnsl|libBrokenLocale|ld-linux[^ ]*|libstdc\+\+|libgcc_s|libcuda|libcudnn[a-z_]*)\.so'
stub=${SLUICE_SERVE_STUB-'^(libgdal|libgdcm[A-Za-z]*|libOpenEXR[-0-9_]*)\.so'}
ldd "$BIN" >"$STAGE/ldd.txt"
/usr/bin/python3 bench/gpu/pack_closure.py --binary "$BIN" --lib-dir "$STAGE/lib" --leave "$leave" --stub "$stub" \
  --work "$STAGE/stubs" | tee "$STAGE/closure.txt"
# This machine's C++ runtime, used there only if the machine's is older than this build needs.
mkdir -p "$STAGE/fallback"
for n in libstdc++.so.6 libgcc_s.so.1; do cp -L "$(ldd "$BIN" | awk -v n="$n" '$1 == n {print $3}')" "$STAGE/fallback/$n"; done
chmod u+w "$STAGE/bin/"* "$STAGE/fallback/"*
strip --strip-unneeded "$STAGE/bin/sluice_serve" "$STAGE/lib/"* "$STAGE/fallback/"*
say "lib/: $(ls "$STAGE/lib" | wc -l) files, $(du -sh "$STAGE/lib" | cut -f1) stripped"

# ---- the images load.py posts (made here, where OpenCV and numpy are) ----
/usr/bin/python3 - "$STAGE/data/images" "$NIMAGES" "$IMAGE_SIZE" <<'EOF'
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "bench", "serve"))
import load
out, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i, ((w, h), png) in enumerate(load.make_images(count, size)):
    with open(os.path.join(out, "%03d_%dx%d.png" % (i, w, h)), "wb") as f:
        f.write(png)
EOF
say "images: $(ls "$STAGE/data/images" | wc -l) PNGs of about ${IMAGE_SIZE}x${IMAGE_SIZE}"

say "smoke test of the packed binary (CPU backend, only the package's libraries and cuDNN)"
LD_LIBRARY_PATH="$STAGE/lib:$(dirname "$(ldd "$BIN" | awk '/libcudnn.so/ {print $3}')")" \
  /usr/bin/python3 bench/gpu/serve_smoke.py --server "$STAGE/bin/sluice_serve" | sed 's/^/   /'
[[ ${PIPESTATUS[0]} == 0 ]] || { say "FAIL: the packed server does not serve"; exit 1; }

{
  echo "sluice_serve for CUDA archs $ARCHS, built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  tail -1 "$STAGE/closure.txt"
  echo "needs GLIBC up to: $(objdump -T "$STAGE/bin/sluice_serve" "$STAGE/lib/"* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
  echo "needs GLIBCXX up to: $(objdump -T "$STAGE/bin/sluice_serve" "$STAGE/lib/"* 2>/dev/null | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1)"
  echo "needs CXXABI up to: $(objdump -T "$STAGE/bin/sluice_serve" "$STAGE/lib/"* 2>/dev/null | grep -o 'CXXABI_[0-9.]*' | sort -uV | tail -1)"
} >"$STAGE/MANIFEST"
cat "$STAGE/MANIFEST"

say "archive"
tar -C "$STAGE" -cf - bin lib fallback data MANIFEST closure.txt | xz -9 -T2 >"$OUTDIR/serve.tar.xz.tmp"
mv "$OUTDIR/serve.tar.xz.tmp" "$OUTDIR/serve.tar.xz"
say "$OUTDIR/serve.tar.xz: $(du -h "$OUTDIR/serve.tar.xz" | cut -f1) ($(stat -c %s "$OUTDIR/serve.tar.xz") bytes)"
