# shellcheck shell=bash
# Sourced by the slurm/*.sh job scripts (after they have set REPO to the repository and PAI_SCRIPT
# to their own name, since under sbatch $0 is a copy in the spool directory): moves to REPO (the
# scripts' relative paths start there), the MPI launcher and the printing of each command. Not a
# job script itself.
#
#   pai_mpi PROGRAM ARGS...   run PROGRAM as an MPI job:
#       inside a Slurm allocation (SLURM_JOB_ID set): srun --mpi=pmix [-n $NP] [-c CPUS_PER_TASK],
#           one rank per task of the allocation (NP, when set, asks for fewer);
#       elsewhere: mpirun --oversubscribe -np ${NP:-2}, with Open MPI's run-as-root switches
#           when run as root (mpirun refuses root otherwise).
#   pai_run ARGS...           print the command line, then run it.
#   pai_die MESSAGE           print "$PAI_SCRIPT: MESSAGE" on stderr and exit 1.
#   pai_abs PATH              PATH as the scripts read it: relative to the repository root.

cd "$REPO" || { echo "$PAI_SCRIPT: cannot enter the repository $REPO" >&2; exit 1; }

pai_abs() {
    case $1 in
        /*) printf '%s' "$1" ;;
        *) printf '%s/%s' "$PWD" "$1" ;;
    esac
}

pai_die() {
    printf '%s: %s\n' "$PAI_SCRIPT" "$*" >&2
    exit 1
}

pai_run() {
    local a line="+"
    for a in "$@"; do line+=" $(printf '%q' "$a")"; done
    printf '%s\n' "$line"
    "$@"
}

pai_mpi() {
    local launch
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        # srun since Slurm 22.05 no longer inherits --cpus-per-task from the batch job, so it is
        # passed on; without it each rank would get one CPU for its threads.
        launch=(srun --mpi=pmix)
        [ -z "${NP:-}" ] || launch+=(-n "$NP")
        [ -z "${SLURM_CPUS_PER_TASK:-}" ] || launch+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
    else
        launch=(mpirun --oversubscribe -np "${NP:-2}")
        if [ "$(id -u)" = 0 ]; then
            export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        fi
    fi
    pai_run "${launch[@]}" "$@"
}

# Where this runs, for the job log: the allocation (or none), and a requeue's restart count.
pai_banner() {
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        printf '%s: Slurm job %s (%s task(s) on %s, %s CPU(s) per task, restart %s), in %s\n' \
            "$PAI_SCRIPT" "$SLURM_JOB_ID" "${SLURM_NTASKS:-?}" "${SLURM_JOB_NODELIST:-?}" \
            "${SLURM_CPUS_PER_TASK:-1}" "${SLURM_RESTART_COUNT:-0}" "$PWD"
    else
        printf '%s: no Slurm allocation: mpirun with %s rank(s), in %s\n' \
            "$PAI_SCRIPT" "${NP:-2}" "$PWD"
    fi
}
