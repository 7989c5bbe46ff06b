#!/usr/bin/env bash
# One command from a fresh Debian 12 clone to a passing test suite: install, build, ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
