#!/usr/bin/env bash
# Installs the Debian packages sluice needs, only those that are missing. Needs root (or sudo).
# CUDA and cuDNN are not Debian packages: the CUDA backend is built only where nvcc is found.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libboost1.81-dev libeigen3-dev nlohmann-json3-dev libopencv-dev libdeflate-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc  # the gRPC transport
  python3-grpcio python3-protobuf  # its integration test's client (tests/grpc/serve_grpc_test.py)
  clang libclang-rt-14-dev curl
  python3-torch python3-numpy python3-opencv
  librsvg2-bin  # rsvg-convert: renders the calibrator's SVG charts to PNG for checking
  haproxy       # the load balancer in front of sluice_serve replicas (ctest scale_fault, bench/scale)
  python3-venv  # the virtual environments of the deploy and tritonclient tests and of the CPU peers benchmark
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "sluice: installing missing packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
