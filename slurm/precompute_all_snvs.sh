#!/usr/bin/env bash
# The genome-wide SNV score table (REFERENCE.md section 6): every SNV within FLANK bp of each TSS,
# scored on the transcript's strand by one or two models, written by `pprecompute` as one bgzip +
# tabix table (rank 0 merges the ranks' parts at the end of the same command).
#
#   sbatch slurm/precompute_all_snvs.sh                   # from the repository root
#   bash slurm/precompute_all_snvs.sh                     # without Slurm: mpirun -np ${NP:-2}
#
# GPUs: request them at submission, together with DEVICE=cuda; this file asks for none, so that
# it is accepted on CPU-only clusters (with EnforcePartLimits a --gpus request on a partition
# without GPUs is rejected):
#   DEVICE=cuda sbatch --nodes=8 --ntasks-per-node=4 --gpus-per-task=1 --cpus-per-task=16 \
#       --time=12:00:00 slurm/precompute_all_snvs.sh
# (pprecompute --help says which devices this build has.) Command-line sbatch options override
# the #SBATCH lines below.
#
# Inputs (environment; sbatch passes the submitting shell's environment on). Relative paths are
# taken from the repository root. Defaults are the bundled demo inputs:
#   TSS_FILE       TSS table: chrom, tss_pos (or pos), strand [, gene, gene_id, transcript_id]
#                                                          (default data/demo/tss.tsv)
#   FASTA_FILE     genome FASTA, plain or bgzip            (default data/demo/genome.fa)
#   MODEL_FOLDERS  one or two model folders, space-separated; two give score_x score_y score
#                  (default demo-out/demo_model_finetune, made by scripts/demo.sh)
#   OUT            output table OUT (bgzip) + OUT.tbi      (default demo-out/demo_snvs.tsv.gz)
#   FLANK          bp each side of a TSS                   (default 500)
#   DEVICE         cpu or cuda                             (default: pprecompute's, cpu)
#   THREADS        CPU threads per rank                    (default SLURM_CPUS_PER_TASK, else 1)
#   OVERWRITE      1: rebuild an existing OUT (--overwrite); otherwise a finished OUT is kept and
#                  the job ends at once (so that a requeue after the end does no harm)
#   EXTRA_ARGS     more pprecompute options, e.g. "--raw --batch_size 32"
#   NP             ranks: mpirun -np NP without Slurm (default 2); inside an allocation srun
#                  starts one rank per task unless NP asks for fewer
#   BIN            folder of the programs (default build)
#   REPO           the repository (default: this script's folder/.., or under sbatch, where the
#                  script is a copy in the spool folder, the submission folder)
#
# Preemption: the job is requeueable (--requeue) and appends to its log (--open-mode=append).
# pprecompute keeps finished work in OUT.parts/ and a rerun of the same command resumes from it,
# so a requeued job (or `sbatch` again with the same inputs) continues where it stopped.
#
#SBATCH --job-name=pai-precompute
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=1
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
set -euo pipefail

PAI_SCRIPT=precompute_all_snvs.sh
# Under sbatch this file runs as a copy in Slurm's spool folder, without common.sh beside it:
# the repository is then the submission folder (or REPO).
here=$(dirname "${BASH_SOURCE[0]}")
if [ -f "$here/common.sh" ]; then REPO=${REPO:-$here/..}; else REPO=${REPO:-${SLURM_SUBMIT_DIR:-.}}; fi
# shellcheck source=slurm/common.sh
. "$REPO/slurm/common.sh" 2>/dev/null ||
    { echo "$PAI_SCRIPT: cannot find the repository: submit from its root or set REPO" >&2; exit 1; }

default_model=demo-out/demo_model_finetune
TSS_FILE=${TSS_FILE:-data/demo/tss.tsv}
FASTA_FILE=${FASTA_FILE:-data/demo/genome.fa}
MODEL_FOLDERS=${MODEL_FOLDERS:-$default_model}
OUT=${OUT:-demo-out/demo_snvs.tsv.gz}
FLANK=${FLANK:-500}
DEVICE=${DEVICE:-}
THREADS=${THREADS:-${SLURM_CPUS_PER_TASK:-1}}
BIN=${BIN:-build}
read -r -a models <<<"$MODEL_FOLDERS"
read -r -a extra <<<"${EXTRA_ARGS:-}"

pai_banner
[ -x "$BIN/pprecompute" ] || pai_die "$BIN/pprecompute not found (build first: scripts/build.sh)"
[ ${#models[@]} -ge 1 ] || pai_die "MODEL_FOLDERS is empty"
for m in "${models[@]}"; do
    if [ ! -f "$m/model.h5" ]; then
        [ "$m" != "$default_model" ] || pai_die "$m not found: run scripts/demo.sh first"
        pai_die "model folder $(pai_abs "$m") (MODEL_FOLDERS) has no model.h5"
    fi
done
[ -f "$TSS_FILE" ] || pai_die "TSS_FILE $(pai_abs "$TSS_FILE") not found"
[ -f "$FASTA_FILE" ] || pai_die "FASTA_FILE $(pai_abs "$FASTA_FILE") not found"

# Prints the row count of the finished table and one example query (on its first row). One
# pass that reads to the end: an awk that exits early would kill bgzip with SIGPIPE (pipefail).
summary() {
    local n chrom pos
    read -r n chrom pos < <(bgzip -dc -@ "$THREADS" "$OUT" | awk -F'\t' '
        $1 !~ /^#/ && $1 != "gene_id" { if (!n++) { c = $2; p = $3 } }
        END { print n + 0, c, p }')
    echo "$OUT: $n SNV rows (index $OUT.tbi)"
    [ -n "$pos" ] || return 0
    echo "example query: tabix \"$OUT\" $chrom:$pos-$((pos + 1))"
    tabix "$OUT" "$chrom:$pos-$((pos + 1))"
}

# pprecompute renames OUT into place only once it is complete (its index first): an OUT here is
# finished, even if the job stopped before removing OUT.parts.
if [ -f "$OUT" ] && [ "${OVERWRITE:-0}" != 1 ]; then
    echo "$PAI_SCRIPT: $OUT is finished; nothing to do (OVERWRITE=1 rebuilds it)"
    if [ -d "$OUT.parts" ]; then rm -rf "$OUT.parts"; fi
    summary
    exit 0
fi
mkdir -p "$(dirname "$OUT")"

args=(--tss_file "$TSS_FILE" --fasta_file "$FASTA_FILE" --model_folder "${models[@]}"
      --out "$OUT" --flank "$FLANK" --threads "$THREADS")
[ -z "$DEVICE" ] || args+=(--device "$DEVICE")
[ "${OVERWRITE:-0}" != 1 ] || args+=(--overwrite)
export OMP_NUM_THREADS=$THREADS
pai_mpi "$BIN/pprecompute" "${args[@]}" "${extra[@]}"
summary
