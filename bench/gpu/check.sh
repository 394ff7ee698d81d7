#!/usr/bin/env bash
# bench/gpu/check.sh: the GPU check of the CUDA backend, in one command, in under 8 minutes
# on an H100 / H200 machine:
#   1. builds the CUDA backend, its tests and bench_gpu in release mode (the project with only the
#      layers they need: nvcc, cuDNN, CMake and the prepared headers; installs and downloads nothing);
#   2. runs every CUDA test;
#   3. exports weights, inputs and fp32 reference outputs, measures the matmul peaks and times the
#      PyTorch networks (peer_torch.py: eager fp32, autocast fp16 channels_last);
#   4. times sluice on the same files in fp16, bf16, tf32, fp32 (bench_gpu);
#   5. prints one table (report.py) and writes everything to $OUT when it is set.
# Without a GPU it stops after the build and says so (a dry run).
#
# Needs: nvcc (CUDA 13) on the PATH or in /usr/local/cuda; cuDNN 9 (the system's, $CUDNN_ROOT, or
# PyTorch's nvidia-cudnn wheel); CMake; a python3 with torch. Where GoogleTest, nlohmann_json or
# Eigen are missing (the GPU machines' image), build-gpu-deps/ from bench/gpu/prepare_deps.sh:
#   here:          bench/gpu/prepare_deps.sh
#   device tool:   run(command="bash bench/gpu/check.sh", carry=["build-gpu-deps"], timeout_s=600)
# Knobs (environment): SLUICE_GPU_BUDGET_S (whole run, default 450), SLUICE_GPU_NETWORKS,
# SLUICE_GPU_SIZES (1024,512), SLUICE_GPU_BATCHES (1,2,4,8,16), SLUICE_GPU_PRECISIONS
# (fp16,bf16,tf32,fp32), SLUICE_GPU_SEARCH (exhaustive | heuristic), SLUICE_GPU_WORKSPACE_MIB (cuDNN
# workspace limit per convolution, default the backend's 1024), SLUICE_GPU_FORCE_DEPS=1 (use
# build-gpu-deps even where the system has the packages: what the GPU image sees), SLUICE_GPU_PEER
# (full | export: only export weights, inputs and references, no PyTorch timing), SLUICE_GPU_BENCH_ARGS
# (more bench_gpu flags, e.g. "--profile --graphs=off").
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
T0=$(date +%s)
BUDGET=${SLUICE_GPU_BUDGET_S:-450}
BUILD="$ROOT/build-gpu-check"
RESULTS="${OUT:-$BUILD/out}"
DATA="$BUILD/data"
NETWORKS=${SLUICE_GPU_NETWORKS:-hrnet,resunet_small,advanced_resunet,cbam_resunet}
SIZES=${SLUICE_GPU_SIZES:-1024,512}
BATCHES=${SLUICE_GPU_BATCHES:-1,2,4,8,16}
PRECISIONS=${SLUICE_GPU_PRECISIONS:-fp16,bf16,tf32,fp32}
SEARCH=${SLUICE_GPU_SEARCH:-exhaustive}
WORKSPACE_MIB=${SLUICE_GPU_WORKSPACE_MIB:-1024}
mkdir -p "$RESULTS" "$DATA"

elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((BUDGET - $(elapsed))); }
say() { echo "== [$(elapsed)s] $*"; }

# ---- the machine ----
HAVE_GPU=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  HAVE_GPU=1
  say "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
else
  say "no NVIDIA GPU on this machine (nvidia-smi absent or finds no device): dry run, build only"
fi
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
if ! command -v nvcc >/dev/null 2>&1; then
  say "FAIL: nvcc not found (PATH, /usr/local/cuda/bin)"
  exit 1
fi
export CUDACXX="$(command -v nvcc)"
PYTHON=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c "import torch" >/dev/null 2>&1; then PYTHON="$p"; break; fi
done
[[ -n "$PYTHON" ]] && say "python: $PYTHON (torch $("$PYTHON" -c 'import torch; print(torch.__version__)'))"
system_cudnn=0
for d in /usr/include /usr/local/include /usr/local/cuda/include /usr/include/x86_64-linux-gnu; do
  [[ -f "$d/cudnn.h" ]] && system_cudnn=1
done
if [[ -z "${CUDNN_ROOT:-}" && $system_cudnn == 0 && -n "$PYTHON" ]]; then
  # PyTorch's cuDNN wheel (nvidia-cudnn-cu13): the folder that holds include/cudnn.h
  nvidia=$("$PYTHON" -c "import nvidia; print(list(nvidia.__path__)[0])" 2>/dev/null || true)
  header=$([[ -n "$nvidia" ]] && find "$nvidia" -name cudnn.h -path "*include*" 2>/dev/null | head -1)
  if [[ -n "$header" ]]; then
    export CUDNN_ROOT="$(dirname "$(dirname "$header")")"
  fi
fi
if [[ -n "${CUDNN_ROOT:-}" ]]; then
  lib=$(find "$CUDNN_ROOT" -name "libcudnn.so*" 2>/dev/null | head -1)
  [[ -n "$lib" ]] && export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "cuDNN: $CUDNN_ROOT (library ${lib:-not found})"
fi

# ---- 1. build ----
ARCHS="80;90"
if [[ $HAVE_GPU == 1 ]]; then
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  [[ "$cc" =~ ^[0-9]+$ ]] && ARCHS="$cc"
fi
# Only the layers the CUDA check needs (core, weights, models, cpu as the reference, cuda): no Boost,
# OpenCV or Google Benchmark. Packages the machine lacks come from build-gpu-deps (prepare_deps.sh).
DEPS="$ROOT/build-gpu-deps"
cmake_args=(-S . -B "$BUILD/build" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$ARCHS"
            -DSLUICE_WITH_BATCHING=OFF -DSLUICE_WITH_VISION=OFF -DSLUICE_WITH_SERVE=OFF
            -DSLUICE_BUILD_EXAMPLES=OFF -DSLUICE_BUILD_TESTS=ON -DSLUICE_BUILD_BENCH=ON -DSLUICE_INSTALL=OFF
            "-DCMAKE_PREFIX_PATH=$DEPS/usr" "-DSLUICE_GTEST_SOURCE_DIR=$DEPS/googletest")
command -v ninja >/dev/null 2>&1 && cmake_args+=(-G Ninja)
if [[ -n "${CUDNN_ROOT:-}" && -n "${lib:-}" ]]; then
  cmake_args+=("-DSLUICE_CUDNN_INCLUDE_DIR=$CUDNN_ROOT/include" "-DSLUICE_CUDNN_LIBRARY=$lib")
fi
if command -v ccache >/dev/null 2>&1; then
  cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
if [[ "${SLUICE_GPU_FORCE_DEPS:-0}" == 1 ]]; then
  # Packages only from build-gpu-deps, as on the GPU machines' image.
  cmake_args+=("-DCMAKE_FIND_ROOT_PATH=$DEPS" -DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON)
fi
say "configure (archs $ARCHS)"
if ! cmake "${cmake_args[@]}" >"$RESULTS/build.log" 2>&1; then
  tail -30 "$RESULTS/build.log"
  say "FAIL: configure (log: $RESULTS/build.log)"
  exit 1
fi
grep -E "sluice:|WARNING" "$RESULTS/build.log" | sed 's/^/   /'
say "build"
if ! cmake --build "$BUILD/build" -j "$(nproc)" >>"$RESULTS/build.log" 2>&1; then
  grep -E "error|Error" "$RESULTS/build.log" | head -30
  say "FAIL: build (log: $RESULTS/build.log)"
  exit 1
fi
say "built: $(ls "$BUILD/build/bench/gpu/bench_gpu" "$BUILD"/build/tests/cuda/test_* 2>/dev/null | xargs -n1 basename | tr '\n' ' ')"

if [[ $HAVE_GPU == 0 ]]; then
  say "dry run: the build works; the tests would skip and there is nothing to time without a GPU."
  "$BUILD/build/tests/cuda/test_cuda_backend" --gtest_brief=1 2>&1 | tail -3 | sed 's/^/   /'
  exit 0
fi

# ---- 2. tests ----
say "CUDA tests"
tests_ok=1
(cd "$BUILD/build" && ctest -j 3 --output-on-failure --timeout 240) >"$RESULTS/tests.log" 2>&1 || tests_ok=0
grep -E "tests passed|tests failed|Failed|\*\*\*|^\[  FAILED  \]" "$RESULTS/tests.log" | head -40 | sed 's/^/   /'

# ---- 3. PyTorch: export, peak, timing ----
if [[ -z "$PYTHON" ]]; then
  say "FAIL: no python3 with torch: nothing to compare with"
  exit 1
fi
torch_deadline=$(( ($(left) - 40) * 45 / 100 ))
say "PyTorch peer (deadline ${torch_deadline}s)"
peer_args=()
[[ "${SLUICE_GPU_PEER:-full}" == export ]] && peer_args+=(--export-only)
PYTHONUNBUFFERED=1 "$PYTHON" bench/gpu/peer_torch.py --data "$DATA" --out "$RESULTS/torch.json" "${peer_args[@]}" \
  --networks "$NETWORKS" --sizes "$SIZES" --batches "$BATCHES" --deadline-s "$torch_deadline" \
  >"$RESULTS/bench.log" 2>&1 || { tail -20 "$RESULTS/bench.log"; say "PyTorch peer failed"; }
grep -E "exported|matmul peaks" "$RESULTS/bench.log" | sed 's/^/   /'

# ---- 4. sluice ----
sluice_deadline=$(( $(left) - 25 ))
say "sluice (deadline ${sluice_deadline}s, algorithm search $SEARCH, workspace ${WORKSPACE_MIB} MiB)"
"$BUILD/build/bench/gpu/bench_gpu" --data="$DATA" --out="$RESULTS/sluice.jsonl" --networks="$NETWORKS" \
  --sizes="$SIZES" --batches="$BATCHES" --precisions="$PRECISIONS" --deadline-s="$sluice_deadline" \
  --search="$SEARCH" --workspace-mib="$WORKSPACE_MIB" ${SLUICE_GPU_BENCH_ARGS:-} >>"$RESULTS/bench.log" 2>&1 || { tail -20 "$RESULTS/bench.log"; say "bench_gpu failed"; }

# ---- 5. the table ----
say "results"
"$PYTHON" bench/gpu/report.py --sluice "$RESULTS/sluice.jsonl" --torch "$RESULTS/torch.json" --out-dir "$RESULTS"
[[ $tests_ok == 1 ]] && say "CUDA tests: passed" || say "CUDA tests: FAILED (see $RESULTS/tests.log)"
say "done in $(elapsed)s; files in $RESULTS"
