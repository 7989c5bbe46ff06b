#!/usr/bin/env bash
# The main job on the bundled inputs, from a fresh Debian 12 clone: install, build, then
#   1. psynth        a synthetic training set (genome, TSSs, bigWig tracks) -> demo-out/synth/
#   2. ppreprocess   its HDF5 training shards, 2 MPI ranks              -> demo-out/shards/
#   3. pmodel init   a small model (config/demo.conf, fixed seed)   -> demo-out/demo_model/
#   4. promoterai    score data/demo/variants.tsv on data/demo/genome.fa
#                    -> demo-out/variants.demo_model.tsv (the published output naming)
# The demo model is freshly initialised, not trained: its scores show the pipeline working, not
# biology (training arrives with the training issue).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bin=${BUILD_DIR:-build}
out=demo-out
mkdir -p "$out"
"$bin/psynth" --out "$out/synth" --n_chroms 3 --chrom_length 60000 --n_tss 40 --n_tracks 4
# mpirun refuses root unless told; the demo runs as root on a fresh machine
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe -np 2 "$bin/ppreprocess" --config config/demo.conf --h5_folder "$out/shards" \
  --tss_file "$out/synth/tss.tsv" --fasta_file "$out/synth/genome.fa" \
  --bigwig_files "$out/synth/tracks.tsv"
echo
echo "== $out/shards/manifest.tsv (tail)"
tail -n 4 "$out/shards/manifest.tsv"
echo
cp data/demo/genome.fa "$out/genome.fa"          # the .fai index is written next to the FASTA
cp data/demo/variants.tsv "$out/variants.tsv"
"$bin/pmodel" init --config config/demo.conf --model_folder "$out/demo_model" --seed 7 --force
"$bin/pmodel" info --model_folder "$out/demo_model"
"$bin/promoterai" --config config/demo.conf --model_folder "$out/demo_model" \
  --var_file "$out/variants.tsv" --fasta_file "$out/genome.fa" --input_length 512
echo
echo "== $out/variants.demo_model.tsv"
cat "$out/variants.demo_model.tsv"
