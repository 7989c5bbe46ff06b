#!/usr/bin/env bash
# run_gpu.sh BUNDLE.tar.xz OUT_DIR PART... - the GPU checks and benchmarks, run from the
# repository root on a machine with a GPU (BUNDLE from scripts/gpu_bundle.sh; each PART fits a
# 10-minute slot):
#   tests    test_layers, test_comm, test_gpu_forward, test_gpu_train, test_gpu_precompute
#            (their real-GPU parts run)
#   bench    bench_forward (fp32, bf16; batch 1 and 4) and bench_train (bf16, batch 4 and 8) at the
#            published size: 24 blocks, D 1024, L 20480, O 4096, 498 tracks; bf16 batch 4 once
#            more with cuDNN's depthwise convolution (PAI_DWCONV=cudnn); then profiled runs
#            (PAI_GPU_PROFILE=1, the time per kernel and product), with each convolution
#   cone     bench/run_precompute_gpu.sh: pprecompute vs naive twin scoring at the published
#            size, one TSS, flank 500 (fp32; bf16 with cone batches of 16 and 64)
#   anchor   bench/torch_anchor.py at the published size (PyTorch eager and torch.compile)
#   sanitize compute-sanitizer's memcheck (out-of-bounds and misaligned accesses, API errors,
#            leaks) over small runs of every GPU path: layer_check fp32 and bf16, bench_forward,
#            bench_train with either convolution, pprecompute; each line "sanitize ... exit N"
# Logs go to OUT_DIR/<part>.log (and OUT_DIR/torch_anchor.json); the first lines of each name
# the GPU and the library versions.
set -uo pipefail
bundle=${1:?usage: run_gpu.sh BUNDLE.tar.xz OUT_DIR PART...}
out=${2:?usage: run_gpu.sh BUNDLE.tar.xz OUT_DIR PART...}
shift 2
mkdir -p "$out"
# Unpacked once per bundle: a warm machine given a rebuilt bundle unpacks the new one.
sum=$(sha256sum < "$bundle") || exit 1
if [ "$(cat /tmp/pai/.bundle 2>/dev/null)" != "$sum" ]; then
  rm -rf /tmp/pai && mkdir -p /tmp/pai && tar xf "$bundle" -C /tmp/pai || exit 1
  echo "$sum" > /tmp/pai/.bundle
fi
# shellcheck disable=SC1091
. /tmp/pai/env.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}   # one with torch, numpy and h5py

header() {
  date -u
  nvidia-smi -L 2>&1 || echo "(no nvidia-smi)"
  pmodel build 2>&1
  # where the libraries opened at run time come from, and anything the programs cannot find
  echo "PAI_BUNDLE_LIBS=$PAI_BUNDLE_LIBS"
  for so in libcublasLt.so.13 libcudnn.so.9 libnccl.so.2; do
    found=$(IFS=:; for d in $PAI_BUNDLE_LIBS; do [ -e "$d/$so" ] && echo "$d/$so"; done | head -1)
    [ -n "$found" ] || found=$(ldconfig -p | awk -v so="$so" '$1 == so {print $NF " (system)"; exit}')
    echo "$so: ${found:-NOT FOUND}"
  done
  LD_LIBRARY_PATH="$PAI_BUNDLE_LIBS" ldd "$PAI_BUNDLE"/libexec/* 2>&1 | grep "not found" | sort -u
  "$py" -m pip show nvidia-cublas nvidia-nccl-cu13 nvidia-cudnn-cu13 torch 2>/dev/null |
    grep -E '^(Name|Version)'
  # the tests need numpy, torch and h5py in this interpreter
  for mod in numpy torch h5py; do
    "$py" -c "import $mod; print('python module $mod', $mod.__version__)" 2>&1 | tail -1
  done
}

for part in "$@"; do
  log="$out/$part.log"
  header > "$log"
  case $part in
    tests)
      for t in layers comm gpu_forward gpu_train gpu_precompute; do
        echo "=== test_$t" >> "$log"
        "$py" "tests/test_$t.py" --bin /tmp/pai/bin >> "$log" 2>&1
        echo "=== test_$t exit $?" >> "$log"
      done ;;
    bench)
      for prec in fp32 bf16; do
        for b in 1 4; do
          PAI_DEVICE=cuda PAI_PRECISION=$prec bench_forward 24 1024 20480 4096 498 "$b" 3 >> "$log" 2>&1
        done
      done
      PAI_DEVICE=cuda PAI_PRECISION=bf16 bench_train 24 1024 20480 4096 498 4 3 >> "$log" 2>&1
      PAI_DEVICE=cuda PAI_PRECISION=bf16 bench_train 24 1024 20480 4096 498 8 2 >> "$log" 2>&1
      echo "=== PAI_DWCONV=cudnn" >> "$log"
      PAI_DWCONV=cudnn PAI_DEVICE=cuda PAI_PRECISION=bf16 bench_forward 24 1024 20480 4096 498 4 3 >> "$log" 2>&1
      PAI_DWCONV=cudnn PAI_DEVICE=cuda PAI_PRECISION=bf16 bench_train 24 1024 20480 4096 498 4 3 >> "$log" 2>&1
      echo "=== profiles (PAI_GPU_PROFILE=1: each call waited for; times are per call)" >> "$log"
      for conv in kernel cudnn; do
        echo "=== PAI_DWCONV=$conv" >> "$log"
        PAI_DWCONV=$conv PAI_GPU_PROFILE=1 PAI_DEVICE=cuda PAI_PRECISION=bf16 bench_forward 24 1024 20480 4096 498 4 3 >> "$log" 2>&1
        PAI_DWCONV=$conv PAI_GPU_PROFILE=1 PAI_DEVICE=cuda PAI_PRECISION=bf16 bench_train 24 1024 20480 4096 498 4 3 >> "$log" 2>&1
      done ;;
    cone)
      for args in "fp32 4 16" "bf16 8 16" "bf16 8 64"; do
        # shellcheck disable=SC2086
        bash bench/run_precompute_gpu.sh /tmp/pai/bin cuda $args >> "$log" 2>&1
      done ;;
    anchor)
      "$py" bench/torch_anchor.py --json "$out/torch_anchor.json" >> "$log" 2>&1 ;;
    sanitize)
      san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
      if [ -z "$san" ]; then echo "no compute-sanitizer on this machine" >> "$log"; continue; fi
      tmp=$(mktemp -d)
      # The real programs, not their wrappers, so that the sanitizer sees the process it starts.
      sanitize() {
        local env="${PAI_PRECISION:-}${PAI_DWCONV:+, PAI_DWCONV=$PAI_DWCONV}" rc
        local what="$*${env:+ ($env)}"
        echo "=== sanitize $what" >> "$log"
        LD_LIBRARY_PATH="$PAI_BUNDLE_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$san" \
          --tool memcheck --leak-check full --error-exitcode 99 "$PAI_BUNDLE/libexec/$1" "${@:2}" >> "$log" 2>&1
        rc=$?
        echo "=== sanitize exit $rc: ${what:0:100}" >> "$log"
      }
      sanitize layer_check fp32
      sanitize layer_check bf16
      small=(4 32 1024 256 5)     # N D L O T: 4 blocks, D 32, L 1024, O 256, 5 tracks
      for prec in fp32 bf16; do
        PAI_DEVICE=cuda PAI_PRECISION=$prec sanitize bench_forward "${small[@]}" 2 1
        PAI_DEVICE=cuda PAI_PRECISION=$prec sanitize bench_train "${small[@]}" 2 2
      done
      PAI_DWCONV=cudnn PAI_DEVICE=cuda PAI_PRECISION=bf16 sanitize bench_forward "${small[@]}" 2 1
      PAI_DWCONV=cudnn PAI_DEVICE=cuda PAI_PRECISION=bf16 sanitize bench_train "${small[@]}" 2 2
      # pprecompute on a small random model and genome, both precisions
      pmodel init --model_folder "$tmp/m" --num_blocks 4 --model_dim 32 --input_length 1024 \
        --output_length 256 --output_dims 5 --seed 3 >> "$log" 2>&1
      psynth --out "$tmp/g" --n_chroms 1 --chrom_length 4000 --n_tss 2 --seed 3 >> "$log" 2>&1
      for prec in fp32 bf16; do
        sanitize pprecompute --precision "$prec" --device cuda --flank 20 \
          --tss_file "$tmp/g/tss.tsv" --fasta_file "$tmp/g/genome.fa" --model_folder "$tmp/m" \
          --out "$tmp/snv_$prec.tsv.gz"
      done
      rm -rf "$tmp" ;;
    *) echo "run_gpu.sh: unknown part '$part' (tests, bench, cone, anchor, sanitize)" >&2; exit 2 ;;
  esac
  echo "=== $part done $(date -u)" >> "$log"
done
