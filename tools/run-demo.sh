#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds the release examples and runs the
# main job on the CPU: sluice_demo segments the sample images (examples/data/samples) with the shipped
# demo model (examples/data/demo), lists the polygons per image and the throughput, end to end and
# network only. Extra arguments go to sluice_demo, which takes the options of `segment --help`
# (e.g. tools/run-demo.sh --batch-size 8 --overlay /tmp/overlays).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake --preset release -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCH=OFF
cmake --build --preset release -j "$(nproc)" --target sluice_demo
./build/release/examples/sluice_demo "$@"
