#!/usr/bin/env bash
# Copies the header-only and source dependencies that bench/gpu/standalone needs and the GPU
# machines' image lacks (GoogleTest's sources, nlohmann_json and Eigen headers) from this Debian
# machine into build-gpu-deps/ (git-ignored), so that a device run can carry them:
#   bench/gpu/prepare_deps.sh            # here, once
#   device run, carry ["build-gpu-deps"]: bench/gpu/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=build-gpu-deps
rm -rf "$dest"
mkdir -p "$dest/include/eigen3"
cp -r /usr/src/googletest "$dest/googletest"
cp -r /usr/include/nlohmann "$dest/include/nlohmann"
cp -r /usr/include/eigen3/Eigen "$dest/include/eigen3/Eigen"
du -sh "$dest"
