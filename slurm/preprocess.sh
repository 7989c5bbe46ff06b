#!/usr/bin/env bash
# Training shards: `ppreprocess` turns TSSs + genome + bigWig tracks into one HDF5 shard per
# chromosome (MPI ranks split the chromosomes; rank 0 writes H5_FOLDER/manifest.tsv).
# docs/preprocess.md has the formats.
#
#   sbatch slurm/preprocess.sh                   # from the repository root
#   bash slurm/preprocess.sh                     # without Slurm: mpirun -np ${NP:-2}
#
# CPU only (the time goes to deflate). More ranks for a whole genome, e.g.
#   sbatch --nodes=2 --ntasks-per-node=12 --time=02:00:00 slurm/preprocess.sh
# (at most one busy rank per chromosome). Command-line sbatch options override the #SBATCH lines.
#
# Inputs (environment; sbatch passes the submitting shell's environment on). Relative paths are
# taken from the repository root. Defaults are the demo's psynth set (scripts/demo.sh, or
# build/psynth --out demo-out/synth --n_chroms 4 --chrom_length 300000 --n_tss 800 --n_tracks 4):
#   TSS_FILE       TSS table: chrom, pos (or tss_pos), strand   (default demo-out/synth/tss.tsv)
#   FASTA_FILE     genome FASTA, plain or bgzip                 (default demo-out/synth/genome.fa)
#   BIGWIG_FILES   track table: fwd, rev, xform                 (default demo-out/synth/tracks.tsv)
#   H5_FOLDER      output folder of the shards                  (default demo-out/shards)
#   CONFIG         config file with a [ppreprocess] section; empty for none (default:
#                  config/demo.conf, the demo's small windows, when TSS_FILE, FASTA_FILE and
#                  BIGWIG_FILES are all the demo's; none, i.e. ppreprocess's published
#                  defaults, as soon as one of them is set)
#   EXTRA_ARGS     more ppreprocess options, e.g. "--input_length 32768 --output_length 16384"
#   NP             ranks: mpirun -np NP without Slurm (default 2); inside an allocation srun
#                  starts one rank per task unless NP asks for fewer
#   BIN            folder of the programs (default build)
#   REPO           the repository (default: this script's folder/.., or under sbatch, where the
#                  script is a copy in the spool folder, the submission folder)
#
# Preemption: the job is requeueable (--requeue) and appends to its log (--open-mode=append); a
# rerun keeps the shards that are finished and up to date and rebuilds only the others.
#
#SBATCH --job-name=pai-preprocess
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
set -euo pipefail

PAI_SCRIPT=preprocess.sh
# Under sbatch this file runs as a copy in Slurm's spool folder, without common.sh beside it:
# the repository is then the submission folder (or REPO).
here=$(dirname "${BASH_SOURCE[0]}")
if [ -f "$here/common.sh" ]; then REPO=${REPO:-$here/..}; else REPO=${REPO:-${SLURM_SUBMIT_DIR:-.}}; fi
# shellcheck source=slurm/common.sh
. "$REPO/slurm/common.sh" 2>/dev/null ||
    { echo "$PAI_SCRIPT: cannot find the repository: submit from its root or set REPO" >&2; exit 1; }

synth=demo-out/synth
# the demo's config goes with the demo's inputs only: never with a user's own data
if [ -z "${TSS_FILE:-}${FASTA_FILE:-}${BIGWIG_FILES:-}" ]; then
    CONFIG=${CONFIG-config/demo.conf}
else
    CONFIG=${CONFIG-}
fi
TSS_FILE=${TSS_FILE:-$synth/tss.tsv}
FASTA_FILE=${FASTA_FILE:-$synth/genome.fa}
BIGWIG_FILES=${BIGWIG_FILES:-$synth/tracks.tsv}
H5_FOLDER=${H5_FOLDER:-demo-out/shards}
BIN=${BIN:-build}
read -r -a extra <<<"${EXTRA_ARGS:-}"

pai_banner
[ -x "$BIN/ppreprocess" ] || pai_die "$BIN/ppreprocess not found (build first: scripts/build.sh)"
for f in "$TSS_FILE" "$FASTA_FILE" "$BIGWIG_FILES"; do
    if [ ! -f "$f" ]; then
        case "$f" in
            "$synth"/*) pai_die "$f not found: run scripts/demo.sh first, or $BIN/psynth --out" \
                "$synth --n_chroms 4 --chrom_length 300000 --n_tss 800 --n_tracks 4" ;;
            *) pai_die "$(pai_abs "$f") not found" ;;
        esac
    fi
done

args=()
if [ -n "$CONFIG" ]; then
    echo "$PAI_SCRIPT: options from $CONFIG (CONFIG= for none)"
    args+=(--config "$CONFIG")
else
    echo "$PAI_SCRIPT: no config file: ppreprocess's defaults and EXTRA_ARGS"
fi
args+=(--h5_folder "$H5_FOLDER" --tss_file "$TSS_FILE" --fasta_file "$FASTA_FILE"
       --bigwig_files "$BIGWIG_FILES")
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
pai_mpi "$BIN/ppreprocess" "${args[@]}" "${extra[@]}"
echo "$PAI_SCRIPT: shards in $H5_FOLDER (manifest $H5_FOLDER/manifest.tsv)"
