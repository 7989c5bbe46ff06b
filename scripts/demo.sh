#!/usr/bin/env bash
# The main job on the bundled inputs, from a fresh Debian 12 clone: install, build, then
#   1. psynth        a synthetic training set (genome, TSSs, bigWig tracks, an outlier variant
#                    table with planted effects)                        -> demo-out/synth/
#   2. ppreprocess   its HDF5 training shards, 2 MPI ranks              -> demo-out/shards/
#   3. ptrain        a small model (config/demo.conf) trained on them, 2 MPI ranks
#                                                                   -> demo-out/demo_model/
#   4. pfinetune     head 0 fine-tuned on the outlier table, 2 MPI ranks
#                                                                   -> demo-out/demo_model_finetune/
#   5. promoterai    score data/demo/variants.tsv on data/demo/genome.fa with the fine-tuned model
#                    -> demo-out/variants.demo_model_finetune.tsv (the published output naming)
#   6. pprecompute   every SNV within 500 bp of each TSS of data/demo/tss.tsv, scored by the
#                    fine-tuned model, 2 MPI ranks, through slurm/precompute_all_snvs.sh (run
#                    with bash: no Slurm needed) -> demo-out/demo_snvs.tsv.gz (+ .tbi), then
#                    a tabix query of it
# The demo model learns the synthetic tracks for about a minute on 2 cores: its scores show the
# pipeline working, not biology.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bin=${BUILD_DIR:-build}
out=demo-out
mkdir -p "$out"
"$bin/psynth" --out "$out/synth" --n_chroms 4 --chrom_length 300000 --n_tss 800 --n_tracks 4
# mpirun refuses root unless told; the demo runs as root on a fresh machine
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe -np 2 "$bin/ppreprocess" --config config/demo.conf --h5_folder "$out/shards" \
  --tss_file "$out/synth/tss.tsv" --fasta_file "$out/synth/genome.fa" \
  --bigwig_files "$out/synth/tracks.tsv"
echo
echo "== $out/shards/manifest.tsv (tail)"
tail -n 4 "$out/shards/manifest.tsv"
echo
rm -f "$out/genome.fa.fai"                       # rebuilt next to the fresh copy
cp data/demo/genome.fa "$out/genome.fa"
cp data/demo/variants.tsv "$out/variants.tsv"
# a fresh run each time (ptrain and pfinetune refuse to overwrite a run; --resume continues one)
rm -rf "$out/demo_model" "$out/demo_model_finetune"
mpirun --oversubscribe -np 2 "$bin/ptrain" --config config/demo.conf --model_folder "$out/demo_model" \
  --h5_human_folder "$out/shards" --threads 1 --seed 7
echo
echo "== $out/demo_model/logs.csv"
cat "$out/demo_model/logs.csv"
mpirun --oversubscribe -np 2 "$bin/pfinetune" --config config/demo.conf \
  --model_folder "$out/demo_model" --var_file "$out/synth/outliers.tsv" \
  --fasta_file "$out/synth/genome.fa" --input_length 512 --threads 1
echo
echo "== $out/demo_model_finetune/logs.csv"
cat "$out/demo_model_finetune/logs.csv"
"$bin/pmodel" info --model_folder "$out/demo_model_finetune"
"$bin/promoterai" --config config/demo.conf --model_folder "$out/demo_model_finetune" \
  --var_file "$out/variants.tsv" --fasta_file "$out/genome.fa" --input_length 512
echo
echo "== $out/variants.demo_model_finetune.tsv"
cat "$out/variants.demo_model_finetune.tsv"
echo
rm -rf "$out/demo_snvs.tsv.gz" "$out/demo_snvs.tsv.gz.tbi" "$out/demo_snvs.tsv.gz.parts"
BIN="$bin" bash slurm/precompute_all_snvs.sh
echo
echo "== tabix $out/demo_snvs.tsv.gz chr1:2195-2196 (columns: the first line of the table)"
bgzip -dc "$out/demo_snvs.tsv.gz" | head -n 1 || true
tabix "$out/demo_snvs.tsv.gz" chr1:2195-2196
