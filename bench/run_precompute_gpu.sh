#!/usr/bin/env bash
# Cone scoring (pprecompute) vs naive twin scoring (promoterai, two full windows per SNV) at the
# published geometry (24 blocks, L 20480, O 4096, 498 tracks) on one TSS of a synthetic genome,
# in one run, and the largest difference of their raw scores. Needs only the C programs (for the
# GPU machine): the model is `pmodel init`'s fresh initialisation, the genome `psynth`'s.
#   bash bench/run_precompute_gpu.sh BIN_DIR [device cuda] [precision bf16] [naive SNVs 8]
#                                    [batch 16] [flank 500] [model_dim 1024]
set -euo pipefail
bin=${1:?usage: run_precompute_gpu.sh BIN_DIR [device] [precision] [naive] [batch] [flank] [D]}
device=${2:-cuda}
prec=${3:-bf16}
naive=${4:-8}
batch=${5:-16}
flank=${6:-500}
D=${7:-1024}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "# $(date -u +%F) pprecompute vs promoterai: device $device, precision $prec, D $D, flank $flank, batch $batch"
"$bin/pmodel" init --model_folder "$work/m" --model_dim "$D" --seed 1 > /dev/null
"$bin/psynth" --out "$work/s" --n_chroms 1 --chrom_length 60000 --n_tss 1 --n_tracks 1 > /dev/null
"$bin/cone_flops" 24 "$D" 20480 4096 498 "$flank" | sed -n 2,4p
t0=$(date +%s.%N)
"$bin/pprecompute" --tss_file "$work/s/tss.tsv" --fasta_file "$work/s/genome.fa" \
  --model_folder "$work/m" --out "$work/cone.tsv.gz" --flank "$flank" --raw --device "$device" \
  --precision "$prec" --batch_size "$batch" --quiet
t1=$(date +%s.%N)
gzip -dc "$work/cone.tsv.gz" | awk -v n="$naive" 'NR == 1 {print "chrom\tpos\tref\talt\tstrand\traw_cone"; next}
  NR <= n + 1 {print $2 "\t" $3 "\t" $4 "\t" $5 "\t" $6 "\t" $12}' > "$work/v.tsv"
t2=$(date +%s.%N)
"$bin/promoterai" --model_folder "$work/m" --var_file "$work/v.tsv" --fasta_file "$work/s/genome.fa" \
  --input_length 20480 --raw --device "$device" --precision "$prec" --output "$work/naive.tsv" --quiet
t3=$(date +%s.%N)
rows=$(($(gzip -dc "$work/cone.tsv.gz" | wc -l) - 1))
awk -v rows="$rows" -v naive="$naive" -v tc="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
  -v tn="$(awk -v a="$t2" -v b="$t3" 'BEGIN {print b - a}')" '
  NR > 1 { d = $6 - $8; if (d < 0) d = -d; if (d > worst) worst = d; s = $8 < 0 ? -$8 : $8; if (s > scale) scale = s }
  END {
    printf "cone  (pprecompute): %d SNVs in %.1f s = %.2f SNVs/s (reference pass included)\n", rows, tc, rows / tc
    printf "naive (promoterai):  %d SNVs in %.1f s = %.3f SNVs/s\n", naive, tn, naive / tn
    printf "speed-up: %.1fx; max |raw cone - raw naive| over those %d SNVs: %.2g (largest |raw| %.2g)\n", (rows / tc) / (naive / tn), naive, worst, scale
  }' "$work/naive.tsv"
