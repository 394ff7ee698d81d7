#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds the release examples and runs the
# main job on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake --preset release -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCH=OFF
cmake --build --preset release -j "$(nproc)" --target sluice_demo
./build/release/examples/sluice_demo "$@"
