#!/usr/bin/env bash
# Installs every Debian 12 package that the build, the tests and the demo need.
# Idempotent: packages already present are left alone; run as root (or with sudo on PATH).
#
# The CUDA toolkit (nvcc, cuBLAS/cuBLASLt, cuDNN, NCCL) is optional and not installed here:
# CMake detects it where it is present and builds the GPU backend beside the CPU one.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git
  openmpi-bin libopenmpi-dev          # MPI ranks (mpirun, mpicc)
  libhdf5-dev                         # model folders and training shards
  libhts-dev tabix                    # FASTA/.fai/.gzi, bgzip + tabix output
  libbigwig-dev                       # bigWig tracks
  libopenblas-openmp-dev              # CPU sgemm, threaded with the same OpenMP runtime as ours
  zlib1g-dev
  python3 python3-numpy python3-h5py python3-torch   # independent reference for the tests
  python3-pyfaidx python3-pybigwig                   # independent preprocessing reference
  slurmctld slurmd slurm-client munge # a one-node Slurm cluster for tests/test_slurm.py
  libpmix2                            # srun --mpi=pmix starts Open MPI ranks through PMIx
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
$sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
