#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything (the CUDA backend too where
# nvcc exists) and runs the whole test suite with ctest. Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake --preset dev
cmake --build --preset dev -j "$(nproc)"
ctest --preset dev "$@"
