#!/usr/bin/env bash
# CPU training: the C trainer (1 rank, and 2 MPI ranks of one thread each) vs the PyTorch
# reference (1 and 2 threads), same shapes, in one run.
#   bash bench/run_cpu_train.sh [build_dir] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}
steps=${2:-2}
py=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
echo "# $(date -u +%F) $(uname -m) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
#          N  D    L     O    T  global batch
for shape in "12 64 512 256 4 8" "20 256 5120 1024 64 2"; do
  "$bin/bench_train" $shape "$steps" 1
  mpirun --oversubscribe -np 2 "$bin/bench_train" $shape "$steps" 1
  $py bench/torch_train.py $shape "$steps" 1
  OMP_NUM_THREADS=2 $py bench/torch_train.py $shape "$steps" 2
done
