#!/usr/bin/env bash
# Installs the Debian packages (scripts/install-deps.sh) and builds into ./build (or $BUILD_DIR).
# The CUDA backend is compiled too wherever the CUDA toolkit is found (PAI_CUDA=AUTO).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)"
