#!/usr/bin/env bash
# Preprocess benchmark (issue "Preprocess"): ppreprocess vs a re-creation of the published
# per-sample Python approach, on one synthetic genome of realistic size, in one run.
#   bash bench/run_preprocess.sh [build_dir] [work_dir]
# Data: psynth, 10 chromosomes x 20 Mb (200 Mb), 2,000 TSSs, 50 tracks (100 bigWigs); once
# sparse (motif signal only: ~1% of targets non-zero) and once with --background 9000 (dense
# noise on the 25 DNase-like tracks near every TSS: ~40% non-zero). Published sizes:
# input_length 32768, output_length 16384. The published approach runs on the first 100 TSSs
# (it is slow); ppreprocess on all 2,000 with 1 and 2 ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${1:-build}" && pwd)
work=${2:-/tmp/pai-bench-preprocess}
py=/usr/bin/python3
cores=$(nproc --all)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mkdir -p "$work"
echo "# $(date -u +%F) $(uname -m) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $cores cores"
for kind in sparse dense; do
  data=$work/syn_$kind
  bg=0; [ $kind = dense ] && bg=9000
  [ -f "$data/tracks.tsv" ] || "$bin/psynth" --out "$data" --n_chroms 10 --chrom_length 20000000 \
      --n_tss 2000 --n_tracks 50 --background $bg
  args=(--tss_file "$data/tss.tsv" --fasta_file "$data/genome.fa" --bigwig_files "$data/tracks.tsv"
        --input_length 32768 --output_length 16384)
  echo "## $kind targets"
  rm -rf "$work/pub_$kind"
  $py bench/preprocess_published.py "${args[@]}" --out "$work/pub_$kind" --max_samples 100
  for np in 1 2; do
    rm -rf "$work/out_${kind}_$np"
    mpirun --oversubscribe -np $np "$bin/ppreprocess" "${args[@]}" --h5_folder "$work/out_${kind}_$np" \
        2>&1 | grep "done:" | sed "s/^/ppreprocess -np $np: /"
  done
  echo "bytes/sample: $(du -sb "$work/out_${kind}_1" | awk '{print $1 / 2000}')"
  # chunking and deflate choices: build chr1 (200 samples) each way, then time crop reads
  for cfg in "2048 4" "512 4" "16384 4" "2048 1" "2048 6"; do
    set -- $cfg
    out=$work/chunk_${kind}_$1_$2
    rm -rf "$out"
    "$bin/ppreprocess" "${args[@]}" --chrom chr1 --chunk_positions $1 --deflate $2 --h5_folder "$out" \
        2>&1 | grep "done:" | sed "s/.*built in/chunk $1 deflate $2: built in/"
    $py bench/shard_read.py "$out"
  done
done
