#!/usr/bin/env bash
# CPU forward: C model vs the PyTorch reference, same shapes and thread count, in one run.
#   bash bench/run_cpu_forward.sh [build_dir] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}
threads=${2:-$(nproc)}
export OMP_NUM_THREADS=$threads
py=/usr/bin/python3
echo "# $(date -u +%F) $(uname -m) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads thread(s)"
#          N  D    L     O    T   batch reps
for shape in "12 64 512 256 4 8 3" "20 256 5120 1024 64 1 2"; do
  "$bin/bench_forward" $shape
  $py bench/torch_forward.py $shape "$threads"
done
