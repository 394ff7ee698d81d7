#!/usr/bin/env bash
# bench/gpu/serve_check.sh: the HTTP server on the GPU -- sluice_serve --backend cuda under
# bench/serve/load.py's closed-loop clients (32 by default), batching on (max batch 32) versus off
# (max batch 1), within a time budget (SLUICE_SERVE_BUDGET_S, default 60 s). Runs from the repository
# root on the GPU machine, after bench/gpu/check.sh or alone:
#   here:          bench/gpu/serve_package.sh        (builds build-gpu-serve/serve.tar.xz)
#   device tool:   run(command="bash bench/gpu/serve_check.sh", carry=["build-gpu-serve"], timeout_s=120)
#   both checks:   run(command="bash bench/gpu/check.sh; bash bench/gpu/serve_check.sh",
#                      carry=["build-gpu-deps", "build-gpu-serve"], timeout_s=600)
#
# Why a prepared package: the GPU machines' image has CUDA, cuDNN (in PyTorch's wheel) and python3,
# but neither Boost nor OpenCV's C++ libraries, so the server cannot be built there.
# serve_package.sh builds it here and packs the binary with the libraries the image lacks.
#
# Steps: unpack the archive to a temporary folder; find cuDNN (PyTorch's nvidia-cudnn wheel, else the
# system's); check with ldd -r that every library and symbol resolves -- where only the C++
# runtime's versions are missing (a machine older than assumed), with the package's fallback/ copy
# of it; otherwise print the missing ones, write {"status": "missing libraries"} and exit 3, having
# started nothing. Then for each model one load.py run with the package's PNG images: both servers
# (on, off) load at once, then each is measured in turn for SLUICE_SERVE_SECONDS after
# SLUICE_SERVE_WARMUP seconds of load. Models:
#   demo           examples/data/demo/model.json (CBAM-ResUNet, widths 8..64, 128 x 128): small, so
#                  the HTTP, decode and pre/post-processing path dominates;
#   resunet_small  ResUNetSmall at SLUICE_SERVE_BIG_SIZE (512) with random weights: the network
#                  dominates. Weights from SLUICE_SERVE_RESUNET_WEIGHTS, else bench/gpu/check.sh's
#                  export (build-gpu-check/data/resunet_small.safetensors), else written here with
#                  PyTorch (tools/reference, as bench/gpu/peer_torch.py does); skipped without either.
# A model is skipped when the budget left cannot hold its run (about 2 x (warm-up + seconds) +
# SLUICE_SERVE_STARTUP_MIN_S, 10, + 5 s); a run is stopped at the budget. Results: $OUT/serve.json
# (else build-gpu-serve/out/serve.json; "not_measured" says why a model has no rows), the servers'
# and load.py's logs in logs/, and a summary on stdout. Exit status: 0 when every run that started
# finished without a failed request and at least one model was measured, 1 otherwise, 3 when the
# package cannot run on this machine.
#
# Knobs (environment): SLUICE_SERVE_BUDGET_S (60), SLUICE_SERVE_BACKEND (cuda; cpu exercises the whole
# script on a machine without a GPU), SLUICE_SERVE_PRECISION (fp16 on CUDA, fp32 on the CPU),
# SLUICE_SERVE_CLIENTS (32), SLUICE_SERVE_MAX_BATCH (32), SLUICE_SERVE_SECONDS (4),
# SLUICE_SERVE_WARMUP (1), SLUICE_SERVE_MODELS (demo,resunet_small), SLUICE_SERVE_BIG_SIZE (512),
# SLUICE_SERVE_RESUNET_WEIGHTS, SLUICE_SERVE_FLAGS (more server flags; default: 4 I/O, 4 decode and
# 4 pre/post-processing threads), SLUICE_SERVE_PACKAGE (the archive), SLUICE_CUDNN_LIB_DIR (the
# folder of libcudnn.so.9, found by itself otherwise).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
T0=$(date +%s)
BUDGET=${SLUICE_SERVE_BUDGET_S:-60}
BACKEND=${SLUICE_SERVE_BACKEND:-cuda}
if [[ $BACKEND == cuda ]]; then PRECISION=${SLUICE_SERVE_PRECISION:-fp16}; else PRECISION=${SLUICE_SERVE_PRECISION:-fp32}; fi
CLIENTS=${SLUICE_SERVE_CLIENTS:-32}
MAX_BATCH=${SLUICE_SERVE_MAX_BATCH:-32}
SECONDS_PER_POINT=${SLUICE_SERVE_SECONDS:-4}
WARMUP=${SLUICE_SERVE_WARMUP:-1}
MODELS=${SLUICE_SERVE_MODELS:-demo,resunet_small}
BIG_SIZE=${SLUICE_SERVE_BIG_SIZE:-512}
EXTRA_FLAGS=${SLUICE_SERVE_FLAGS:---io-threads 4 --decode-threads 4 --cpu-threads 4}
PACKAGE=${SLUICE_SERVE_PACKAGE:-$ROOT/build-gpu-serve/serve.tar.xz}
RESULTS="${OUT:-$ROOT/build-gpu-serve/out}"
mkdir -p "$RESULTS/logs"
rm -f "$RESULTS"/logs/*.why

elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((BUDGET - $(elapsed))); }
say() { echo "== [serve $(elapsed)s] $*"; }
status_json() {  # a serve.json that says why nothing was measured
  printf '{"status": "%s", "detail": "%s", "backend": "%s"}\n' "$1" "$2" "$BACKEND" >"$RESULTS/serve.json"
}

[[ -f "$PACKAGE" ]] || { say "FAIL: $PACKAGE is missing (bench/gpu/serve_package.sh, carry build-gpu-serve)"; status_json "no package" "$PACKAGE"; exit 3; }
PYTHON=""
for p in python3 /usr/bin/python3 /opt/torch/.venv/bin/python3; do
  command -v "$p" >/dev/null 2>&1 && { PYTHON="$p"; break; }
done
[[ -n "$PYTHON" ]] || { say "FAIL: no python3"; status_json "no python3" ""; exit 3; }

# ---- the package ----
DIR=$(mktemp -d /tmp/sluice-serve.XXXXXX)
# Python's tarfile where tar cannot call xz (an image without xz-utils).
if ! tar -xJf "$PACKAGE" -C "$DIR" 2>/dev/null &&
   ! "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$PACKAGE" "$DIR"; then
  say "FAIL: cannot unpack $PACKAGE"
  status_json "bad package" "$PACKAGE"
  exit 3
fi
BIN="$DIR/bin/sluice_serve"
say "unpacked to $DIR: $(head -1 "$DIR/MANIFEST")"
if [[ $BACKEND == cuda ]] && command -v nvidia-smi >/dev/null 2>&1; then
  say "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
fi

# ---- cuDNN: PyTorch's wheel (nvidia/cudnn/lib), else the system's ----
CUDNN_DIR=${SLUICE_CUDNN_LIB_DIR:-}
NVIDIA_DIRS=""
for p in "$PYTHON" /opt/torch/.venv/bin/python3 python3; do
  nvidia=$("$p" -c "import nvidia; print(list(nvidia.__path__)[0])" 2>/dev/null) || continue
  [[ -n "$nvidia" && -d "$nvidia" ]] || continue
  if [[ -z "$CUDNN_DIR" ]]; then
    lib=$(find "$nvidia" -name "libcudnn.so.9*" 2>/dev/null | head -1)
    [[ -n "$lib" ]] && CUDNN_DIR=$(dirname "$lib")
  fi
  # The wheel's other libraries (NVRTC, cuBLAS) after ours: what cuDNN may open at run time.
  NVIDIA_DIRS=$(find "$nvidia" -mindepth 2 -maxdepth 2 -type d -name lib 2>/dev/null | sort | tr '\n' ':')
  break
done
if [[ -z "$CUDNN_DIR" ]]; then
  for d in /opt/torch/.venv /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu; do
    lib=$(find "$d" -name "libcudnn.so.9*" 2>/dev/null | head -1)
    [[ -n "$lib" ]] && { CUDNN_DIR=$(dirname "$lib"); break; }
  done
fi
say "cuDNN: ${CUDNN_DIR:-not found}"
export LD_LIBRARY_PATH="$DIR/lib${CUDNN_DIR:+:$CUDNN_DIR}${NVIDIA_DIRS:+:${NVIDIA_DIRS%:}}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# ---- every library resolves ----
ldd -r "$BIN" >"$RESULTS/serve-ldd.txt" 2>&1
if grep "not found" "$RESULTS/serve-ldd.txt" | grep -qE "(GLIBCXX|CXXABI|GCC)_[0-9.]+' not found"; then
  # The machine's C++ runtime is older than the build's: the package's copy (serve_package.sh).
  say "the machine's libstdc++/libgcc_s are too old for this build: using the package's (fallback/)"
  export LD_LIBRARY_PATH="$DIR/lib:$DIR/fallback:${LD_LIBRARY_PATH#"$DIR/lib:"}"
  ldd -r "$BIN" >"$RESULTS/serve-ldd.txt" 2>&1
fi
if grep -q -E "not found|undefined symbol" "$RESULTS/serve-ldd.txt"; then
  say "FAIL: libraries or symbols missing for sluice_serve (LD_LIBRARY_PATH=$LD_LIBRARY_PATH):"
  grep -E "not found|undefined symbol" "$RESULTS/serve-ldd.txt" | head -20 | sed 's/^/   /'
  missing=$(grep -E "not found|undefined symbol" "$RESULTS/serve-ldd.txt" | head -20 | sed 's/^[[:space:]]*//; s/"//g' | tr '\t\n' ' ;')
  status_json "missing libraries" "$missing"
  rm -rf "$DIR"
  exit 3
fi
say "from the machine, not the package: $(grep "=>" "$RESULTS/serve-ldd.txt" | grep -v "=> $DIR/lib/" | awk '{print $3}' | tr '\n' ' ')"

# ---- the models ----
model_json() {  # name -> path of its model.json, or empty (with a message) when it cannot be made
  case "$1" in
    demo) echo "$ROOT/examples/data/demo/model.json" ;;
    resunet_small)
      local w=${SLUICE_SERVE_RESUNET_WEIGHTS:-}
      [[ -z "$w" && -f "$ROOT/build-gpu-check/data/resunet_small.safetensors" ]] && w="$ROOT/build-gpu-check/data/resunet_small.safetensors"
      if [[ -z "$w" ]]; then
        w="$DIR/resunet_small.safetensors"
        for p in /opt/torch/.venv/bin/python3 "$PYTHON"; do
          "$p" - "$w" >"$RESULTS/logs/resunet_small-weights.log" 2>&1 <<'EOF' && break
import json, sys
sys.path.insert(0, "bench/gpu")
import torch
import peer_torch  # the same random network bench_gpu and the PyTorch peer time
model = peer_torch.build("resunet_small")
peer_torch.safetensors.write(sys.argv[1], {k: v.to(torch.float16) for k, v in model.state_dict().items()},
                             {"network": "resunet_small", "config": json.dumps(peer_torch.CONFIGS["resunet_small"])})
EOF
        done
        [[ -f "$w" ]] || { echo "resunet_small: no weights (no PyTorch, see logs/resunet_small-weights.log)" >&2; return; }
      fi
      printf '{"network": "resunet_small", "weights": "%s", "input_size": {"height": %d, "width": %d}}\n' \
        "$(cd "$(dirname "$w")" && pwd)/$(basename "$w")" "$BIG_SIZE" "$BIG_SIZE" >"$DIR/resunet_small.json"
      echo "$DIR/resunet_small.json" ;;
    *) echo "unknown model '$1' (demo, resunet_small)" >&2 ;;
  esac
}

# A run: both servers load (model, CUDA context, warm-up) at once, then 2 x (warm-up + measured).
# Needed: about 2 x (WARMUP + SECONDS) plus the load; the load is bounded by what is left.
STARTUP_MIN=${SLUICE_SERVE_STARTUP_MIN_S:-10}
run_ok=1
measured=()
for name in ${MODELS//,/ }; do
  need=$((2 * (WARMUP + SECONDS_PER_POINT) + STARTUP_MIN + 5))
  if (( $(left) < need )); then
    say "skip $name: $(left)s left, a run needs about ${need}s"
    echo "skipped: $(left)s of the budget left, a run needs about ${need}s" >"$RESULTS/logs/$name.why"
    continue
  fi
  model=$(model_json "$name" 2>"$RESULTS/logs/$name-model.err")
  if [[ -z "$model" ]]; then
    say "skip $name: $(cat "$RESULTS/logs/$name-model.err")"
    echo "skipped: $(cat "$RESULTS/logs/$name-model.err")" >"$RESULTS/logs/$name.why"
    continue
  fi
  ready_timeout=$(( $(left) - 2 * (WARMUP + SECONDS_PER_POINT) - 5 ))
  say "$name: $CLIENTS clients, batching on (max $MAX_BATCH) vs off, $BACKEND $PRECISION, ${WARMUP}+${SECONDS_PER_POINT}s per point (load within ${ready_timeout}s)"
  mkdir -p "$RESULTS/logs/$name"
  # SIGINT at the limit: load.py stops both servers on its way out.
  timeout -s INT -k 15 "$(( $(left) - 2 ))" "$PYTHON" bench/serve/load.py --server "$BIN" --model "$model" \
    --images "$DIR/data/images" --clients "$CLIENTS" --seconds "$SECONDS_PER_POINT" --warmup "$WARMUP" \
    --max-batch-size "$MAX_BATCH" --ready-timeout "$ready_timeout" --log-dir "$RESULTS/logs/$name" \
    --server-flags "--backend $BACKEND --precision $PRECISION --warmup-runs 1 $EXTRA_FLAGS" \
    --json "$RESULTS/serve-$name.json" >"$RESULTS/logs/$name/load.log" 2>&1
  rc=$?
  grep -E "^batching|^clients" "$RESULTS/logs/$name/load.log" | sed 's/^/   /'
  if [[ $rc != 0 ]]; then
    run_ok=0
    say "$name: load.py exit status $rc (log: logs/$name/load.log)"
    tail -5 "$RESULTS/logs/$name/load.log" | sed 's/^/   /'
    { grep -h "failed" "$RESULTS/logs/$name"/sluice-bench-serve-*.log 2>/dev/null || tail -1 "$RESULTS/logs/$name/load.log"; } |
      head -1 >"$RESULTS/logs/$name.why"
    for log in "$RESULTS/logs/$name"/sluice-bench-serve-*.log; do
      [[ -f "$log" ]] && { echo "   $(basename "$log"):"; tail -3 "$log" | sed 's/^/     /'; }
    done
  fi
  [[ -f "$RESULTS/serve-$name.json" ]] && measured+=("$name")
done

# Servers left behind by a load.py stopped at the limit: ours only (this run's unpacked binary).
for pid_dir in /proc/[0-9]*; do
  [[ "$(readlink "$pid_dir/exe" 2>/dev/null)" == "$BIN" ]] && kill -TERM "${pid_dir#/proc/}" 2>/dev/null
done

# ---- serve.json and the summary ----
SERVE_MODELS=$MODELS "$PYTHON" - "$RESULTS" "$BACKEND" "$PRECISION" "$CLIENTS" "$MAX_BATCH" "$BUDGET" "$(elapsed)" "$DIR/MANIFEST" \
  "${measured[@]}" <<'EOF'
import json, os, sys
results, backend, precision, clients, max_batch, budget, elapsed, manifest = sys.argv[1:9]
out = {"status": "measured" if sys.argv[9:] else "nothing measured", "backend": backend, "precision": precision,
       "clients": int(clients), "max_batch_size_on": int(max_batch), "budget_s": int(budget),
       "package": open(manifest).read().splitlines()[0], "models": {}}
for name in sys.argv[9:]:
    path = os.path.join(results, "serve-%s.json" % name)
    rows = json.load(open(path))
    os.remove(path)
    by = {r["mode"]: r for r in rows if r["clients"] == int(clients)}
    entry = {"rows": rows}
    on, off = by.get("on"), by.get("off")
    if on and off and off["images_per_s"] > 0:
        entry["throughput_on_over_off"] = on["images_per_s"] / off["images_per_s"]
        print("   %-14s on %8.1f images/s (p50 %7.1f, p99 %7.1f ms, mean batch %5.2f) | off %8.1f images/s "
              "(p50 %7.1f, p99 %7.1f ms) | on/off %.2fx | errors %d/%d | client cpu %.2f/%.2f" %
              (name, on["images_per_s"], on["p50_ms"], on["p99_ms"], on["mean_batch"], off["images_per_s"],
               off["p50_ms"], off["p99_ms"], entry["throughput_on_over_off"], on["errors"], off["errors"],
               on["client_cpu_cores"], off["client_cpu_cores"]))
    out["models"][name] = entry
for name in os.environ["SERVE_MODELS"].split(","):
    why = os.path.join(results, "logs", name + ".why")
    if name not in out["models"] and os.path.exists(why):
        out.setdefault("not_measured", {})[name] = open(why).read().strip()
        print("   %-14s not measured: %s" % (name, out["not_measured"][name]))
out["elapsed_s"] = int(elapsed)
json.dump(out, open(os.path.join(results, "serve.json"), "w"), indent=1)
EOF
rm -rf "$DIR"
say "done in $(elapsed)s (budget ${BUDGET}s); results in $RESULTS/serve.json"
[[ $run_ok == 1 && ${#measured[@]} -gt 0 ]]
