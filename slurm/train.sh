#!/usr/bin/env bash
# Training: `ptrain`, data-parallel over MPI ranks (REFERENCE.md section 5, docs/training.md),
# on ppreprocess shards (slurm/preprocess.sh). After each epoch MODEL_FOLDER gets model.h5 (best
# validation loss), logs.csv and train_state.h5.
#
#   sbatch slurm/train.sh                        # from the repository root
#   bash slurm/train.sh                          # without Slurm: mpirun -np ${NP:-2}
#
# ptrain runs on a GPU per rank when the ranks see GPUs (--device auto; docs/gpu.md), e.g.
#   sbatch --nodes=2 --ntasks-per-node=4 --gpus-per-task=1 --cpus-per-task=8 --time=48:00:00 slurm/train.sh
# and on the CPUs otherwise. GPUs are requested at submission: this file asks for none, so that
# it is accepted on CPU-only clusters (with EnforcePartLimits a --gpus request on a partition
# without GPUs is rejected). The global batch (--batch_size, in
# CONFIG or EXTRA_ARGS) must be a multiple of the rank count. Command-line sbatch options
# override the #SBATCH lines below.
#
# Inputs (environment; sbatch passes the submitting shell's environment on). Relative paths are
# taken from the repository root. Defaults are those of scripts/demo.sh:
#   MODEL_FOLDER         output model folder                      (default demo-out/demo_model)
#   H5_HUMAN_FOLDER      ppreprocess folder of the human shards   (default demo-out/shards)
#   H5_NONHUMAN_FOLDERS  space-separated folders of other species (heads 1..) (default none)
#   CONFIG               config file with a [ptrain] section; empty for none (default:
#                        config/demo.conf, the demo's small model, when H5_HUMAN_FOLDER and
#                        H5_NONHUMAN_FOLDERS are the demo's; none, i.e. ptrain's published
#                        defaults, as soon as either is set)
#   SEED                 initial weights, data order, augmentation (default 7)
#   THREADS              CPU threads per rank          (default SLURM_CPUS_PER_TASK, else 1)
#   EXTRA_ARGS           more ptrain options, e.g. "--epochs 100 --stop_after_epochs 10"
#   NP                   ranks: mpirun -np NP without Slurm (default 2); inside an allocation
#                        srun starts one rank per task unless NP asks for fewer
#   BIN                  folder of the programs (default build)
#   REPO                 the repository (default: this script's folder/.., or under sbatch, where
#                        the script is a copy in the spool folder, the submission folder)
#
# Preemption: the job is requeueable (--requeue) and appends to its log (--open-mode=append).
# When MODEL_FOLDER already holds train_state.h5 the script passes --resume, so a requeued job
# (or the same sbatch again) continues from the last finished epoch; a finished run ends at once.
# Resuming needs the same --batch_size and --seed (ptrain refuses others); with the same rank and
# thread counts the result is bit-identical to an uninterrupted run.
#
#SBATCH --job-name=pai-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=1
#SBATCH --time=48:00:00
#SBATCH --output=%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
set -euo pipefail

PAI_SCRIPT=train.sh
# Under sbatch this file runs as a copy in Slurm's spool folder, without common.sh beside it:
# the repository is then the submission folder (or REPO).
here=$(dirname "${BASH_SOURCE[0]}")
if [ -f "$here/common.sh" ]; then REPO=${REPO:-$here/..}; else REPO=${REPO:-${SLURM_SUBMIT_DIR:-.}}; fi
# shellcheck source=slurm/common.sh
. "$REPO/slurm/common.sh" 2>/dev/null ||
    { echo "$PAI_SCRIPT: cannot find the repository: submit from its root or set REPO" >&2; exit 1; }

# the demo's config goes with the demo's shards only: never with a user's own data
if [ -z "${H5_HUMAN_FOLDER:-}${H5_NONHUMAN_FOLDERS:-}" ]; then
    CONFIG=${CONFIG-config/demo.conf}
else
    CONFIG=${CONFIG-}
fi
MODEL_FOLDER=${MODEL_FOLDER:-demo-out/demo_model}
H5_HUMAN_FOLDER=${H5_HUMAN_FOLDER:-demo-out/shards}
SEED=${SEED:-7}
THREADS=${THREADS:-${SLURM_CPUS_PER_TASK:-1}}
BIN=${BIN:-build}
read -r -a nonhuman <<<"${H5_NONHUMAN_FOLDERS:-}"
read -r -a extra <<<"${EXTRA_ARGS:-}"

pai_banner
[ -x "$BIN/ptrain" ] || pai_die "$BIN/ptrain not found (build first: scripts/build.sh)"
if [ ! -f "$H5_HUMAN_FOLDER/manifest.tsv" ]; then
    [ "$H5_HUMAN_FOLDER" != demo-out/shards ] ||
        pai_die "$H5_HUMAN_FOLDER not found: run slurm/preprocess.sh (or scripts/demo.sh) first"
    pai_die "H5_HUMAN_FOLDER $(pai_abs "$H5_HUMAN_FOLDER") has no manifest.tsv (a ppreprocess folder?)"
fi

args=()
if [ -n "$CONFIG" ]; then
    echo "$PAI_SCRIPT: options from $CONFIG (CONFIG= for none)"
    args+=(--config "$CONFIG")
else
    echo "$PAI_SCRIPT: no config file: ptrain's defaults and EXTRA_ARGS"
fi
args+=(--model_folder "$MODEL_FOLDER" --h5_human_folder "$H5_HUMAN_FOLDER")
[ ${#nonhuman[@]} -eq 0 ] || args+=(--h5_nonhuman_folders "${nonhuman[@]}")
args+=(--seed "$SEED" --threads "$THREADS")
if [ -f "$MODEL_FOLDER/train_state.h5" ]; then
    echo "$PAI_SCRIPT: $MODEL_FOLDER/train_state.h5 exists: resuming that run"
    args+=(--resume)
fi
export OMP_NUM_THREADS=$THREADS
pai_mpi "$BIN/ptrain" "${args[@]}" "${extra[@]}"
echo "$PAI_SCRIPT: model in $MODEL_FOLDER (logs.csv, model.h5, train_state.h5)"
