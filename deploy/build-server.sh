#!/usr/bin/env bash
# Builds sluice_serve for a container image and installs it under PREFIX: the one script the
# Dockerfiles run (and the deploy test runs too, so the images' build cannot rot unnoticed).
#
#   deploy/build-server.sh PREFIX [--cuda] [--build-dir DIR]
#
# Installs the Debian/Ubuntu packages the build needs (only those missing; root or sudo), configures
# a Release build of the server alone (no tests, benchmarks or -march=native: the image runs on any
# x86-64), builds it, and installs into PREFIX:
#   bin/sluice_serve
#   share/sluice/models/demo/           the bundled demo model (model.json + weights)
#   share/sluice/runtime-packages.txt   the packages that hold the shared libraries sluice_serve
#                                       links (readelf NEEDED, ldd, dpkg -S): what the runtime
#                                       stage installs (apt adds their dependencies)
# --cuda builds the CUDA backend too (nvcc and cuDNN must be there: NVIDIA's cudnn-devel images).
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${1:?usage: deploy/build-server.sh PREFIX [--cuda] [--build-dir DIR]}
shift
cuda=OFF
build_dir=build/image
while (($#)); do
  case $1 in
    --cuda) cuda=ON ;;
    --build-dir) build_dir=$2; shift ;;
    *) echo "build-server.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# Boost 1.81 is Debian 12's newest; Ubuntu 24.04 (NVIDIA's images) has 1.83.
. /etc/os-release
boost=libboost1.81-dev
[[ ${ID:-} == ubuntu ]] && boost=libboost1.83-dev
packages=(build-essential cmake ninja-build pkg-config ccache "$boost" libeigen3-dev nlohmann-json3-dev libopencv-dev libdeflate-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache \
  -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCH=OFF -DSLUICE_BUILD_EXAMPLES=ON -DSLUICE_INSTALL=OFF \
  -DSLUICE_WITH_CUDA="$cuda"
cmake --build "$build_dir" --target sluice_serve -j "$(nproc)"

install -D -m 755 "$build_dir/examples/serve/sluice_serve" "$prefix/bin/sluice_serve"
# The CUDA backend is a shared library next to the server in the build tree.
find "$build_dir" -name 'libsluice_cuda.so*' -exec install -m 755 {} "$prefix/bin/" \;
install -D -m 644 examples/data/demo/model.json "$prefix/share/sluice/models/demo/model.json"
install -m 644 examples/data/demo/*.safetensors "$prefix/share/sluice/models/demo/"

# The packages of the shared libraries the server links directly (apt brings their own dependencies;
# CUDA's come with NVIDIA's base image): the NEEDED entries, located by ldd, owned per dpkg -S.
ldd_out=$(LD_LIBRARY_PATH="$prefix/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$prefix/bin/sluice_serve")
readelf -d "$prefix/bin/sluice_serve" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r name; do
    lib=$(awk -v n="$name" '$1 == n && $3 ~ /^\// {print $3}' <<< "$ldd_out")
    [[ -n $lib ]] || continue
    dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
  done | cut -d: -f1 | grep -v -E 'cuda|cudnn|nvidia' | sort -u > "$prefix/share/sluice/runtime-packages.txt"
echo "sluice_serve installed in $prefix; runtime packages: $(tr '\n' ' ' < "$prefix/share/sluice/runtime-packages.txt")"
