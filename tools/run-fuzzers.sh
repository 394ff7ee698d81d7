#!/usr/bin/env bash
# Builds the libFuzzer targets (`cmake --preset fuzz`, clang) and runs each for N seconds
# (default 60) on its seed corpus tests/fuzz/corpus/<name>/. New inputs go to a scratch corpus
# under the build folder, never into the source tree. Exits non-zero if any fuzzer finds a crash;
# the crashing input is left in build/fuzz/artifacts/<name>/. Every tests/fuzz/fuzz_<name> that
# was built runs (safetensors, multipart, and image where OpenCV is found).
#   tools/run-fuzzers.sh [seconds] [fuzzer-name ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true

# Only the fuzzers: the test suite is not needed (nor GTest under clang).
cmake --preset fuzz -DSLUICE_BUILD_TESTS=OFF >/dev/null
cmake --build --preset fuzz --target sluice_fuzzers -j "$(nproc)"

build=build/fuzz
names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
  for bin in "$build"/tests/fuzz/fuzz_*; do
    [[ -x "$bin" && -f "$bin" ]] && names+=("$(basename "$bin" | sed 's/^fuzz_//')")
  done
fi
if [[ ${#names[@]} -eq 0 ]]; then
  echo "no fuzzers were built" >&2
  exit 1
fi

status=0
for name in "${names[@]}"; do
  bin="$build/tests/fuzz/fuzz_$name"
  seeds="tests/fuzz/corpus/$name"
  work="$build/corpus/$name"
  artifacts="$build/artifacts/$name"
  mkdir -p "$work" "$artifacts"
  args=(-max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$artifacts/" -timeout=10 -rss_limit_mb=2048)
  [[ -f "tests/fuzz/$name.dict" ]] && args+=(-dict="tests/fuzz/$name.dict")
  corpora=("$work")
  [[ -d "$seeds" ]] && corpora+=("$seeds")
  echo "== fuzz_$name for ${seconds}s"
  if ! "$bin" "${args[@]}" "${corpora[@]}" 2>"$build/fuzz_$name.log"; then
    echo "fuzz_$name FAILED; log: $build/fuzz_$name.log, inputs: $artifacts/" >&2
    tail -40 "$build/fuzz_$name.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$build/fuzz_$name.log" || true
  fi
done
exit $status
