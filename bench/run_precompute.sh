#!/usr/bin/env bash
# Cone scoring (pprecompute) vs naive twin scoring (promoterai, two full windows per SNV) on the
# CPU at published geometry (24 blocks, L 20480, O 4096, 498 tracks) with a reduced model_dim,
# on the same SNVs of one TSS, in one run; also checks that the raw scores agree.
#   bash bench/run_precompute.sh [build_dir] [model_dim 64] [flank 50] [naive SNVs 24] [threads 2]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}
D=${2:-64}
flank=${3:-50}
naive=${4:-24}
threads=${5:-2}
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "# $(date -u +%F) $(uname -m) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads thread(s)"
$py - "$work" "$D" <<'PY'
import os, sys
sys.path.insert(0, "tests/ref")
import numpy as np
import harness as H
import promoterai_ref as R
work, D = sys.argv[1], int(sys.argv[2])
R.write_random_model(os.path.join(work, "m"), 24, D, [498], 20480, 4096, ["human"], seed=1,
                     head_scale=4.0)
H.write_fasta(os.path.join(work, "g.fa"), [("chr1", H.random_genome_seq(np.random.default_rng(2), 60000))])
with open(os.path.join(work, "tss.tsv"), "w") as f:
    f.write("chrom\ttss_pos\tstrand\tgene\n" "chr1\t30000\t1\tG\n")
PY
"$bin/cone_flops" 24 "$D" 20480 4096 498 "$flank" | sed -n 2,4p
t0=$(date +%s.%N)
"$bin/pprecompute" --tss_file "$work/tss.tsv" --fasta_file "$work/g.fa" --model_folder "$work/m" \
  --out "$work/cone.tsv.gz" --flank "$flank" --raw --threads "$threads" --quiet
t1=$(date +%s.%N)
zcat "$work/cone.tsv.gz" | awk -v n="$naive" 'NR == 1 {print "chrom\tpos\tref\talt\tstrand\traw_cone"; next}
  NR <= n + 1 {print $2 "\t" $3 "\t" $4 "\t" $5 "\t" $6 "\t" $12}' > "$work/v.tsv"
t2=$(date +%s.%N)
"$bin/promoterai" --model_folder "$work/m" --var_file "$work/v.tsv" --fasta_file "$work/g.fa" \
  --input_length 20480 --raw --threads "$threads" --output "$work/naive.tsv" --quiet
t3=$(date +%s.%N)
rows=$(($(zcat "$work/cone.tsv.gz" | wc -l) - 1))
awk -v rows="$rows" -v naive="$naive" -v tc="$(echo "$t1 - $t0" | bc)" -v tn="$(echo "$t3 - $t2" | bc)" '
  NR > 1 { d = $6 - $8; if (d < 0) d = -d; if (d > worst) worst = d }
  END {
    printf "cone  (pprecompute): %d SNVs in %.1f s = %.2f SNVs/s (reference pass included)\n", rows, tc, rows / tc
    printf "naive (promoterai):  %d SNVs in %.1f s = %.3f SNVs/s\n", naive, tn, naive / tn
    printf "speed-up: %.1fx; max |raw cone - raw naive| over those %d SNVs: %.2g\n", (rows / tc) / (naive / tn), naive, worst
  }' "$work/naive.tsv"
