#!/usr/bin/env bash
# Copies what the GPU check needs and a bare GPU machine lacks -- the nlohmann_json and Eigen
# headers with their CMake package files, and GoogleTest's sources -- from this Debian machine into
# build-gpu-deps/ (git-ignored), laid out as a prefix (usr/include, usr/share) that
# CMAKE_PREFIX_PATH can point at:
#   bench/gpu/prepare_deps.sh            # here, once
#   then carry build-gpu-deps to the GPU machine and run bench/gpu/check.sh there
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=build-gpu-deps
rm -rf "$dest"
mkdir -p "$dest/usr/include" "$dest/usr/share/cmake" "$dest/usr/share/eigen3"
cp -r /usr/src/googletest "$dest/googletest"
cp -r /usr/include/nlohmann "$dest/usr/include/nlohmann"
cp -r /usr/share/cmake/nlohmann_json "$dest/usr/share/cmake/nlohmann_json"
cp -r /usr/include/eigen3 "$dest/usr/include/eigen3"
cp -r /usr/share/eigen3/cmake "$dest/usr/share/eigen3/cmake"
du -sh "$dest"
