#!/usr/bin/env bash
# bench/gpu/check.sh: the GPU check of the CUDA backend, in one command, in under 8 minutes
# on an H100 / H200 machine:
#   0. starts torch.compile's warm-up in the background (peer_torch.py --compile-warm-only, niced):
#      compiles the configurations that will be timed, filling Inductor's disk caches
#      (TORCHINDUCTOR_CACHE_DIR = build-gpu-check/inductor-cache) while nothing is being timed;
#   1. builds the CUDA backend, its tests and bench_gpu in release mode (the project with only the
#      layers they need: nvcc, cuDNN, CMake and the prepared headers; installs and downloads nothing);
#   2. runs every CUDA test; then waits (bounded) for the warm-up and stops it;
#   3. exports weights, inputs and fp32 reference outputs, measures the matmul peaks and times the
#      PyTorch networks (peer_torch.py: eager fp32, autocast fp16 channels_last, and torch.compile of
#      the latter where the warm-up compiled it, from the caches);
#   4. times sluice on the same files in fp16, bf16, tf32, fp32 (bench_gpu, with --profile: device
#      time per backend operation); then the cuDNN workspace comparison (--workspace-mib=8192, tag
#      ws8192) and the CUDA graphs comparison (--graphs=off, tag eager_launch) on a few configurations;
#   5. prints one table (report.py) and writes everything to $OUT when it is set;
#   6. runs bench/gpu/serve_check.sh where it exists and build-gpu-serve/ was carried along.
# Without a GPU it stops after the build and says so (a dry run).
#
# Time plan (SLUICE_GPU_BUDGET_S=450; every stage has a deadline and an outer `timeout`):
#     0-~40 s   build (nvcc on all cores); the compile warm-up runs beside it, niced
#   ~40-~100 s  CUDA tests (ctest -L cuda -j 3, 120 s per test at most)
#   until 140 s the warm-up's own deadline (SLUICE_GPU_COMPILE_WARM_S); killed 10 s after it at the latest
#   then the rest, less a tail kept at the end, is shared: PyTorch 50% (export + peaks ~25 s, eager
#       modes, then the warmed torch.compile configurations, up to 25 s each, SLUICE_GPU_COMPILE_RESERVE_S
#       at most), sluice's main run the other 50%
#   tail: workspace comparison 35 s, CUDA graphs comparison 25 s, report + margin 15 s, serve check 60 s
#       (each only when it runs: where bench_gpu lacks a flag the stage is left out and its time goes
#       to the main runs)
# With the defaults that leaves ~90 s to each main run: rows past a deadline are "skipped" (the
# networks run in the order given, so HRNet first); narrow SLUICE_GPU_NETWORKS for full tables.
#
# Needs: nvcc (CUDA 13) on the PATH or in /usr/local/cuda; cuDNN 9 (the system's, $CUDNN_ROOT, or
# PyTorch's nvidia-cudnn wheel); CMake; a python3 with torch (and Triton for torch.compile). Where
# GoogleTest, nlohmann_json or Eigen are missing (the GPU machines' image), build-gpu-deps/ from
# bench/gpu/prepare_deps.sh:
#   here:          bench/gpu/prepare_deps.sh
#   device tool:   run(command="bash bench/gpu/check.sh", carry=["build-gpu-deps"], timeout_s=600)
# Knobs (environment):
#   SLUICE_GPU_BUDGET_S (whole run, default 450), SLUICE_GPU_NETWORKS, SLUICE_GPU_SIZES (1024,512),
#   SLUICE_GPU_BATCHES (1,4,16), SLUICE_GPU_PRECISIONS (fp16,bf16,tf32,fp32), SLUICE_GPU_SEARCH
#   (exhaustive | heuristic), SLUICE_GPU_WORKSPACE_MIB (cuDNN workspace limit per convolution, default
#   the backend's 1024), SLUICE_GPU_FORCE_DEPS=1 (use build-gpu-deps even where the system has the
#   packages: what the GPU image sees), SLUICE_GPU_PROFILE (1: bench_gpu --profile in the main run);
#   torch.compile: SLUICE_GPU_COMPILE_CONFIGS (NET:SIZE:BATCH,... most wanted first; empty: none;
#   default peer_torch.py's), SLUICE_GPU_COMPILE_MODE (modes cheapest first, default
#   "default,max-autotune": each configuration is timed in the best mode the warm-up finished -- a cold
#   max-autotune compile of HRNet-W48 may not fit the warm-up alone), SLUICE_GPU_COMPILE_WARM_S (the
#   warm-up's deadline, 140), SLUICE_GPU_COMPILE_RESERVE_S (most of the PyTorch deadline kept for
#   compiled configurations, 50);
#   workspace comparison: SLUICE_GPU_WS_MIB (8192; empty: none), SLUICE_GPU_WS_NETWORKS
#   (resunet_small), SLUICE_GPU_WS_PRECISIONS (tf32,fp32), SLUICE_GPU_WS_SIZES (SLUICE_GPU_SIZES), SLUICE_GPU_WS_S (35);
#   CUDA graphs comparison: SLUICE_GPU_GRAPHS_COMPARE (1), SLUICE_GPU_GRAPHS_NETWORKS (hrnet),
#   SLUICE_GPU_GRAPHS_SIZES (1024,512), SLUICE_GPU_GRAPHS_BATCHES (1,4,16), SLUICE_GPU_GRAPHS_S (25);
#   serve check: SLUICE_GPU_SERVE (1), SLUICE_GPU_SERVE_S (60): bench/gpu/serve_check.sh gets
#   SLUICE_SERVE_BUDGET_S, SLUICE_GPU_DATA, SLUICE_GPU_RESULTS; its output goes to serve.log.
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
BATCHES=${SLUICE_GPU_BATCHES:-1,4,16}
PRECISIONS=${SLUICE_GPU_PRECISIONS:-fp16,bf16,tf32,fp32}
SEARCH=${SLUICE_GPU_SEARCH:-exhaustive}
WORKSPACE_MIB=${SLUICE_GPU_WORKSPACE_MIB:-1024}
PROFILE=${SLUICE_GPU_PROFILE:-1}
COMPILE_MODE=${SLUICE_GPU_COMPILE_MODE:-default,max-autotune}
WARM_S=${SLUICE_GPU_COMPILE_WARM_S:-140}
COMPILE_RESERVE_S=${SLUICE_GPU_COMPILE_RESERVE_S:-50}
WS_MIB=${SLUICE_GPU_WS_MIB-8192}
WS_NETWORKS=${SLUICE_GPU_WS_NETWORKS:-resunet_small}
WS_PRECISIONS=${SLUICE_GPU_WS_PRECISIONS:-tf32,fp32}
WS_SIZES=${SLUICE_GPU_WS_SIZES:-$SIZES}
WS_S=${SLUICE_GPU_WS_S:-35}
GRAPHS_COMPARE=${SLUICE_GPU_GRAPHS_COMPARE:-1}
GRAPHS_NETWORKS=${SLUICE_GPU_GRAPHS_NETWORKS:-hrnet}
GRAPHS_SIZES=${SLUICE_GPU_GRAPHS_SIZES:-1024,512}
GRAPHS_BATCHES=${SLUICE_GPU_GRAPHS_BATCHES:-1,4,16}
GRAPHS_S=${SLUICE_GPU_GRAPHS_S:-25}
SERVE=${SLUICE_GPU_SERVE:-1}
SERVE_S=${SLUICE_GPU_SERVE_S:-60}
mkdir -p "$RESULTS" "$DATA"
# Both PyTorch runs (warm-up and timing) share Inductor's disk caches here.
export TORCHINDUCTOR_CACHE_DIR="$BUILD/inductor-cache" TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1
mkdir -p "$TORCHINDUCTOR_CACHE_DIR"

elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((BUDGET - $(elapsed))); }
say() { echo "== [$(elapsed)s] $*"; }
# limit SECONDS CMD...: CMD (and what it started) killed after SECONDS, 10 s more for a clean end.
limit() {
  local s=$1
  shift
  (( s < 1 )) && s=1
  if command -v timeout >/dev/null 2>&1; then timeout -k 10 "$s" "$@"; else "$@"; fi
}
# bench_accepts FLAG...: bench_gpu parses these flags (no work: no networks).
bench_accepts() { "$BENCH" --data=/nonexistent --out=/dev/null --networks= "$@" >/dev/null 2>&1; }

# The torch.compile warm-up runs in its own session (process group), so that it and Inductor's
# compile workers can be stopped together.
WARM_PID=""
COMPILE_ARGS=(--compile-mode "$COMPILE_MODE")
[[ -n "${SLUICE_GPU_COMPILE_CONFIGS+set}" ]] && COMPILE_ARGS+=(--compile-configs "$SLUICE_GPU_COMPILE_CONFIGS")
# start_warmup SECONDS: the warm-up, ending itself after SECONDS (its clock starts once torch is imported).
start_warmup() {
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher+=(setsid)
  command -v nice >/dev/null 2>&1 && launcher+=(nice -n 10)
  PYTHONUNBUFFERED=1 ${launcher[@]+"${launcher[@]}"} "$PYTHON" bench/gpu/peer_torch.py --compile-warm-only \
    --out "$RESULTS/compile_warm.json" --networks "$NETWORKS" --sizes "$SIZES" "${COMPILE_ARGS[@]}" \
    --deadline-s "$1" >"$RESULTS/compile_warm.log" 2>&1 &
  WARM_PID=$!
}
# stop_warmup SECONDS: waits up to SECONDS for the warm-up to end, then stops its process group.
stop_warmup() {
  [[ -n "$WARM_PID" ]] || return 0
  local until=$(( $(date +%s) + $1 ))
  while kill -0 "$WARM_PID" 2>/dev/null && (( $(date +%s) < until )); do sleep 1; done
  if kill -0 "$WARM_PID" 2>/dev/null; then
    say "compile warm-up still running: stopped"
    kill -TERM -- "-$WARM_PID" 2>/dev/null || kill -TERM "$WARM_PID" 2>/dev/null
    sleep 3
    kill -KILL -- "-$WARM_PID" 2>/dev/null || kill -KILL "$WARM_PID" 2>/dev/null
  fi
  wait "$WARM_PID" 2>/dev/null
  WARM_PID=""
}
trap 'stop_warmup 0' EXIT
trap 'exit 143' TERM INT  # so that the EXIT trap runs when the check itself is stopped

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

for f in bench/gpu/peer_torch.py bench/gpu/report.py; do  # a syntax error found here, not after the build
  if ! "${PYTHON:-python3}" -c "import ast, sys; ast.parse(open(sys.argv[1]).read())" "$f"; then
    say "FAIL: $f does not parse"
    exit 1
  fi
done

# ---- 0. torch.compile warm-up, in the background ----
if [[ $HAVE_GPU == 1 && -n "$PYTHON" ]]; then
  start_warmup $(( WARM_S - $(elapsed) - 5 ))  # ends near WARM_S after the start of this script
  say "torch.compile warm-up started (modes $COMPILE_MODE, deadline ${WARM_S}s, log $RESULTS/compile_warm.log)"
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
# Label cuda: the CUDA tests (the build also registers tests of other layers, e.g. deploy, which need
# a network the GPU machines do not have).
(cd "$BUILD/build" && ctest -L cuda -j 3 --output-on-failure --timeout 120) >"$RESULTS/tests.log" 2>&1 || tests_ok=0
grep -E "tests passed|tests failed|Failed|\*\*\*|^\[  FAILED  \]" "$RESULTS/tests.log" | head -40 | sed 's/^/   /'

# The warm-up must be over before anything is timed: it loads the CPUs and, autotuning, the GPU.
if [[ -n "$WARM_PID" ]]; then
  warm_wait=$(( WARM_S + 10 - $(elapsed) ))
  (( warm_wait > 0 )) && kill -0 "$WARM_PID" 2>/dev/null && say "waiting for the compile warm-up (at most ${warm_wait}s)"
  stop_warmup "$(( warm_wait > 0 ? warm_wait : 0 ))"
  grep -E '"status"' "$RESULTS/compile_warm.log" | grep -v "not in this run" | sed 's/^/   /' | cut -c1-200
fi

# ---- 3. PyTorch: export, peak, timing ----
if [[ -z "$PYTHON" ]]; then
  say "FAIL: no python3 with torch: nothing to compare with"
  exit 1
fi
BENCH="$BUILD/build/bench/gpu/bench_gpu"
# Flags bench_gpu may lack (an older build): each stage that needs one is left out, and says so.
PROFILE_FLAG=""
if [[ $PROFILE == 1 ]]; then
  if bench_accepts --profile; then PROFILE_FLAG=--profile
  elif bench_accepts --profile=on; then PROFILE_FLAG=--profile=on
  else say "bench_gpu has no --profile: no per-operation profile"; fi
fi
TAG_OK=0
bench_accepts --tag=probe && TAG_OK=1
GRAPHS_OK=0
if [[ $GRAPHS_COMPARE == 1 ]]; then
  if bench_accepts --graphs=off --tag=probe; then GRAPHS_OK=1; else say "bench_gpu has no --graphs=off / --tag: no CUDA graphs comparison"; fi
fi
[[ -n "$WS_MIB" && "$WS_MIB" != "$WORKSPACE_MIB" && -n "$WS_NETWORKS" ]] && WS_ON=1 || WS_ON=0
SERVE_ON=0
[[ $SERVE == 1 && -f bench/gpu/serve_check.sh && -d "$ROOT/build-gpu-serve" ]] && SERVE_ON=1
TAIL=$(( 15 + WS_ON * WS_S + GRAPHS_OK * GRAPHS_S + SERVE_ON * SERVE_S ))
torch_deadline=$(( ($(left) - TAIL) * 50 / 100 ))
say "PyTorch peer (deadline ${torch_deadline}s; kept for the later stages: ${TAIL}s)"
PYTHONUNBUFFERED=1 limit $((torch_deadline + 30)) "$PYTHON" bench/gpu/peer_torch.py --data "$DATA" \
  --out "$RESULTS/torch.json" --networks "$NETWORKS" --sizes "$SIZES" --batches "$BATCHES" \
  --deadline-s "$torch_deadline" "${COMPILE_ARGS[@]}" --compile-warm-status "$RESULTS/compile_warm.json" \
  --compile-reserve-s "$COMPILE_RESERVE_S" >"$RESULTS/bench.log" 2>&1 || { tail -20 "$RESULTS/bench.log"; say "PyTorch peer failed"; }
grep -E "exported|matmul peaks|compile:|compiling|\"compile_fp16_cl\"" "$RESULTS/bench.log" | sed 's/^/   /' | cut -c1-240

# ---- 4. sluice ----
sluice_deadline=$(( $(left) - TAIL ))
say "sluice (deadline ${sluice_deadline}s, algorithm search $SEARCH, workspace ${WORKSPACE_MIB} MiB${PROFILE_FLAG:+, profiled})"
limit $((sluice_deadline + 30)) "$BENCH" --data="$DATA" --out="$RESULTS/sluice.jsonl" --networks="$NETWORKS" \
  --sizes="$SIZES" --batches="$BATCHES" --precisions="$PRECISIONS" --deadline-s="$sluice_deadline" \
  --search="$SEARCH" --workspace-mib="$WORKSPACE_MIB" ${PROFILE_FLAG:+"$PROFILE_FLAG"} \
  >>"$RESULTS/bench.log" 2>&1 || { tail -20 "$RESULTS/bench.log"; say "bench_gpu failed"; }

# extra_run NAME SECONDS FLAGS...: bench_gpu into sluice_NAME.jsonl, tagged NAME where it can be.
EXTRA_FILES=()
extra_run() {
  local name=$1 seconds=$2
  shift 2
  local tag=""
  [[ $TAG_OK == 1 ]] && tag="--tag=$name"
  local most=$(( $(left) - 15 - SERVE_ON * SERVE_S ))  # the report's and the serve check's time stays theirs
  (( seconds > most )) && seconds=$most
  if (( seconds < 8 )); then
    say "$name: no time left"
    return
  fi
  say "$name ($*; deadline ${seconds}s)"
  limit $((seconds + 20)) "$BENCH" --data="$DATA" --out="$RESULTS/sluice_$name.jsonl" \
    --deadline-s="$seconds" --search="$SEARCH" ${tag:+"$tag"} "$@" >>"$RESULTS/bench.log" 2>&1 \
    || { tail -5 "$RESULTS/bench.log"; say "bench_gpu ($name) failed"; }
  EXTRA_FILES+=(--sluice-extra "$RESULTS/sluice_$name.jsonl")
}

# The cuDNN workspace hypothesis (ResUNetSmall slower with the batch in tf32): the same rows with a
# larger limit. Where the main run did not measure all of them at the default limit, a run at the
# default limit goes first, so that both sides exist.
if [[ $WS_ON == 1 ]]; then
  # shellcheck disable=SC2016
  have_base=$("$PYTHON" -c '
import json, sys
path, nets, sizes, precs, batches = sys.argv[1:6]
want = {(n, int(s), p, int(b)) for n in nets.split(",") for s in sizes.split(",") for p in precs.split(",") for b in batches.split(",")}
try:
    rows = [json.loads(l) for l in open(path) if l.strip()]
except (OSError, ValueError):
    rows = []
have = {(r.get("network"), r.get("size"), r.get("precision"), r.get("batch")) for r in rows if r.get("status") == "ok"}
print(1 if want <= have else 0)' "$RESULTS/sluice.jsonl" "$WS_NETWORKS" "$WS_SIZES" "$WS_PRECISIONS" "$BATCHES" 2>/dev/null || echo 0)
  ws_time=$WS_S
  if [[ "$have_base" != 1 ]]; then
    extra_run "ws$WORKSPACE_MIB" $((WS_S * 45 / 100)) --networks="$WS_NETWORKS" --sizes="$WS_SIZES" \
      --precisions="$WS_PRECISIONS" --batches="$BATCHES" --workspace-mib="$WORKSPACE_MIB"
    ws_time=$((WS_S * 55 / 100))
  fi
  extra_run "ws$WS_MIB" "$ws_time" --networks="$WS_NETWORKS" --sizes="$WS_SIZES" --precisions="$WS_PRECISIONS" \
    --batches="$BATCHES" --workspace-mib="$WS_MIB"
fi

# CUDA graphs: the forward launched op by op, beside the main run's replayed graph.
if [[ $GRAPHS_OK == 1 ]]; then
  extra_run eager_launch "$GRAPHS_S" --networks="$GRAPHS_NETWORKS" --sizes="$GRAPHS_SIZES" --precisions=fp16 \
    --batches="$GRAPHS_BATCHES" --workspace-mib="$WORKSPACE_MIB" --graphs=off
fi

# ---- 5. the table ----
say "results"
"$PYTHON" bench/gpu/report.py --sluice "$RESULTS/sluice.jsonl" --torch "$RESULTS/torch.json" \
  ${EXTRA_FILES[@]+"${EXTRA_FILES[@]}"} --out-dir "$RESULTS"

# ---- 6. the server, where its check and build came along ----
if [[ $SERVE_ON == 1 ]]; then
  serve_budget=$(( $(left) - 10 ))
  (( serve_budget > SERVE_S )) && serve_budget=$SERVE_S
  if (( serve_budget >= 20 )); then
    say "serve check (bench/gpu/serve_check.sh, budget ${serve_budget}s, log $RESULTS/serve.log)"
    SLUICE_SERVE_BUDGET_S=$serve_budget SLUICE_GPU_DATA="$DATA" SLUICE_GPU_RESULTS="$RESULTS" \
      limit $((serve_budget + 15)) bash bench/gpu/serve_check.sh >"$RESULTS/serve.log" 2>&1
    serve_rc=$?
    grep -E "^==|PASS|FAIL|passed|failed|req/s|images/s|p50|p99|[Ee]rror" "$RESULTS/serve.log" | tail -20 | sed 's/^/   /' | cut -c1-240
    say "serve check: exit $serve_rc"
  else
    say "serve check: left out (${serve_budget}s left)"
  fi
fi
[[ $tests_ok == 1 ]] && say "CUDA tests: passed" || say "CUDA tests: FAILED (see $RESULTS/tests.log)"
say "done in $(elapsed)s; files in $RESULTS"
