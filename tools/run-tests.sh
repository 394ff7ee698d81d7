#!/usr/bin/env bash
# The README's test command: installs what is missing, builds the library, tests and examples (the
# CUDA backend too where nvcc exists) and runs the whole test suite with ctest. Benchmarks are built
# by the release preset (docs/performance.md). Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake --preset dev -DSLUICE_BUILD_BENCH=OFF
cmake --build --preset dev -j "$(nproc)"
ctest --preset dev "$@"
