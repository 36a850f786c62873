# Shared by every job script.  Two ways in:
#
#   source "$NIGT_HPC_ROOT/jobs/env.sh"   in a job script (the batch shell): thread counts, the
#                                         launcher and its PMI, and the helpers below
#   bash jobs/env.sh CMD ARGS...          on each task (srun/mpiexec start it): sets this
#                                         node's numba cache directory, then runs CMD
#
# Job scripts find this file from $NIGT_HPC_ROOT (absolute), else $SLURM_SUBMIT_DIR /
# $PBS_O_WORKDIR: sbatch runs a spooled copy of the script, so "$(dirname "$0")" is the
# spool directory, not the project (PITFALLS C1).
#
# Variables read (all optional):
#   PMI                     srun --mpi= plugin; default: from the MPI library mpi4py loads
#                           (MPICH family: pmi2, Open MPI: pmix)
#   MPIEXEC                 the mpiexec for PBS and local scripts; default: the one next to
#                           `python`, else the first on PATH (it must match mpi4py's MPI)
#   NIGT_SET                extra "key=value ..." passed as --set to every training run
#                           (on a resume only limits may change: run.max_rounds, ...)
#   NIGT_STEP_TIME          srun --time= for every step (minutes, or [H:]M:S): a bound on a
#                           step, where MPIEXEC_TIMEOUT does nothing (srun ignores it)
#   NIGT_REQUEUE=1          after a preemption signal, `scontrol requeue` the job
#   NIGT_NUMBA_CACHE_ROOT   node-local folder that keeps numba caches across jobs
#                           (default /var/tmp/nigt-numba-$USER); one subfolder per CPU type

# The node-local numba cache: kept across jobs, one folder per CPU type (model name and
# flags, hashed), so nodes with different CPUs never load each other's machine code
# (PITFALLS N1/N2).  Evaluated on each node, never on the batch node for the others.
nigt_cpu_key() {
    { uname -m
      grep -m1 '^model name' /proc/cpuinfo
      grep -m1 -E '^(flags|Features)' /proc/cpuinfo
      grep -m1 '^CPU part' /proc/cpuinfo
    } 2>/dev/null | sha256sum | cut -c1-16
}

nigt_node_env() {
    local root=${NIGT_NUMBA_CACHE_ROOT:-/var/tmp/nigt-numba-${USER:-$(id -un)}}
    export NUMBA_CACHE_DIR="$root/$(nigt_cpu_key)"
    mkdir -p "$NUMBA_CACHE_DIR"
}

# One core per rank: no hidden thread pools (PITFALLS N4).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
# mpi4py: nothing here calls MPI from a second thread (PITFALLS M6).
export MPI4PY_RC_THREAD_LEVEL=${MPI4PY_RC_THREAD_LEVEL:-funneled}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then  # executed on a task: set the node, run CMD
    nigt_node_env
    exec "$@"
fi

NIGT_ENV=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh
export JOB_ID=${JOB_ID:-${SLURM_JOB_ID:-${PBS_JOBID:-$$}}}
# Read by mpiexec (Hydra and Open MPI) only; under srun use NIGT_STEP_TIME.
export MPIEXEC_TIMEOUT=${MPIEXEC_TIMEOUT:-86400}

nigt_die() { echo "error: $*" >&2; exit 2; }

# The MPI library mpi4py loads, first line, without the trailing NUL Open MPI adds; MPI is
# not initialised (a batch shell is not an MPI process).
nigt_mpi_library() {
    python - <<'PY'
import mpi4py
mpi4py.rc.initialize = False
from mpi4py import MPI
print(MPI.Get_library_version().replace("\0", "").strip().splitlines()[0])
PY
}

# The srun --mpi= plugin an MPI library needs (PITFALLS C2); empty if unknown.
nigt_pmi_for() {
    case "$1" in
        *"Open MPI"*) echo pmix ;;
        *MPICH*|*MVAPICH*|*"Intel(R) MPI"*) echo pmi2 ;;
    esac
}

# Sets NIGT_LAUNCH (an array): srun with the PMI that matches the MPI, or mpiexec.
nigt_launcher() {
    NIGT_MPI_LIB=$(nigt_mpi_library) || nigt_die "python cannot load mpi4py (python is $(command -v python))"
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        NIGT_PMI_FOR_LIB=$(nigt_pmi_for "$NIGT_MPI_LIB")
        if [ -z "${PMI:-}" ]; then
            PMI=$NIGT_PMI_FOR_LIB
            [ -n "$PMI" ] || nigt_die "no srun --mpi= known for '${NIGT_MPI_LIB%%,*}': export PMI=pmi2 (MPICH family) or PMI=pmix (Open MPI)"
        fi
        local plugins
        if plugins=$(srun --mpi=list 2>&1) && ! grep -qw -- "$PMI" <<<"$plugins"; then
            nigt_die "this Slurm has no srun --mpi=$PMI plugin (needed for ${NIGT_MPI_LIB%%,*}); it has: $(grep -oE '^\s*(none|pmi2|pmix[_a-z0-9]*|cray_shasta)\s*$' <<<"$plugins" | xargs)"
        fi
        # MPICH's default PMI-1 client works with srun --mpi=pmi2 (the plugin serves both);
        # MPIR_CVAR_PMI_VERSION=2 fails there ("MPIR_pmi_init: Internal MPI error", MPICH 5.0.2).
        export PMI
        # A rank that dies takes the step with it (PITFALLS C3): no rank spins forever.
        NIGT_LAUNCH=(srun --mpi="$PMI" --kill-on-bad-exit=1 ${NIGT_STEP_TIME:+--time="$NIGT_STEP_TIME"})
    else
        if [ -z "${MPIEXEC:-}" ]; then
            local here; here=$(dirname "$(command -v python)")
            if [ -x "$here/mpiexec" ]; then MPIEXEC=$here/mpiexec; else
                MPIEXEC=$(command -v mpiexec) || nigt_die "no mpiexec next to python or on PATH: export MPIEXEC=/path/to/mpiexec"
            fi
        fi
        local kind; kind=$("$MPIEXEC" --version 2>&1 | head -n 3) || true
        case "$NIGT_MPI_LIB/$kind" in
            *"Open MPI"*/*"Open MPI"*|*"Open MPI"*/*OpenRTE*) NIGT_LAUNCH=("$MPIEXEC")
                # Open MPI refuses root unless told (containers, CI): say so instead of failing.
                if [ "$(id -u)" = 0 ]; then NIGT_LAUNCH+=(--allow-run-as-root); fi ;;
            *"Open MPI"*/*|*/*"Open MPI"*|*/*OpenRTE*)
                nigt_die "$MPIEXEC is not the mpiexec of ${NIGT_MPI_LIB%%,*} (mpi4py's MPI): export MPIEXEC=/path/to/the/matching/mpiexec" ;;
            *) NIGT_LAUNCH=("$MPIEXEC") ;;
        esac
    fi
    echo "launcher: ${NIGT_LAUNCH[*]}  (MPI: ${NIGT_MPI_LIB%%,*})"
}

log_versions() {
    echo "== $(date -Is) job ${JOB_ID} on $(hostname)"
    nigt-hpc --version
    python - <<'PY'
import platform
import gymnasium, numba, numpy
import mpi4py
mpi4py.rc.initialize = False
from mpi4py import MPI
print("python", platform.python_version(), "numpy", numpy.__version__, "numba",
      numba.__version__, "gymnasium", gymnasium.__version__)
print("MPI:", MPI.Get_library_version().replace("\0", "").strip().splitlines()[0])
try:
    import mujoco
    print("mujoco", mujoco.__version__)
except ImportError:
    print("mujoco not installed")
from nigt_hpc import bench
print(bench.blas_line())  # the matrix gradient's speed is this kernel set's
PY
    env | grep -E '^(OMP|OPENBLAS|MKL|NUMBA|MPI4PY|MPIR_CVAR|PMI=|SLURM_NTASKS|SLURM_JOB_NUM_NODES|PBS_NP)' | sort
}

# Start N ranks and check they form one world of N (PITFALLS S1/C2): a PMI that does not
# match the MPI gives N separate one-rank worlds, or none.
nigt_check_world() {
    local n=$1 out sizes
    # Only each world's rank 0 prints, tagged: one world of n gives one "n"; n one-rank
    # worlds give n "1"s (the tag survives output from several ranks landing on one line).
    out=$("${NIGT_LAUNCH[@]}" -n "$n" python -c "from mpi4py import MPI
c = MPI.COMM_WORLD
if c.Get_rank() == 0: print('nigt-world-size=%d' % c.Get_size(), flush=True)" 2>&1) || true
    sizes=$(grep -oE 'nigt-world-size=[0-9]+' <<<"$out" | cut -d= -f2 | xargs) || true
    if [ "$sizes" != "$n" ]; then
        local fix="the mpiexec must belong to mpi4py's MPI: export MPIEXEC=/path/to/it"
        if [ -n "${SLURM_JOB_ID:-}" ]; then
            fix="MPICH: srun --mpi=pmi2, Open MPI: srun --mpi=pmix"
            [ -n "${NIGT_PMI_FOR_LIB:-}" ] && fix="${NIGT_MPI_LIB%%,*} needs srun --mpi=$NIGT_PMI_FOR_LIB: export PMI=$NIGT_PMI_FOR_LIB or unset PMI"
        fi
        # The MPI's own complaint says most; srun's closing lines say little.
        local why
        why=$(grep -m1 -E "PMI|OMPI|MPI_Init|MPIR_|not built" <<<"$out" || tail -n 1 <<<"$out")
        nigt_die "world size check failed: ${NIGT_LAUNCH[*]} -n $n started worlds of sizes [$sizes], not one of $n ($fix); it said: $why"
    fi
    echo "world size: $n ranks in one MPI_COMM_WORLD, as asked"
}

# Compile (or load) the kernels once per node, into that node's cache (PITFALLS C5:
# --ntasks-per-node=1 inside an allocation is overridden by SLURM_NTASKS; -N n -n n is not).
warm_cache() {
    local nodes=${SLURM_JOB_NUM_NODES:-1} cmd
    cmd='import socket, os, nigt_hpc.kernels as k; s = k.warmup(); '
    cmd+='print("%s: kernel warm-up %.2f s, cache %s" % (socket.gethostname(), s, os.environ["NUMBA_CACHE_DIR"]))'
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        "${NIGT_LAUNCH[@]}" -N "$nodes" -n "$nodes" bash "$NIGT_ENV" python -c "$cmd"
    else  # PBS and local: nigt-hpc's own start-up warms one rank per node first
        bash "$NIGT_ENV" python -c "$cmd"
    fi
}

# Preemption.  USR1 (Slurm: --signal=B:USR1@SECONDS) or TERM reaches this shell: forward it
# to the running step, whose ranks write a checkpoint and exit 128 + signal; start nothing
# after that.  `wait` returns as soon as a trapped signal arrives, so nigt_wait_step waits
# again until the step itself has ended.
NIGT_STOP=""
NIGT_STEP=""
NIGT_TRAPPED=0
NIGT_FAILED=()
NIGT_LEFT=0
nigt_on_signal() {
    NIGT_STOP=$1
    NIGT_TRAPPED=1
    echo "$(date -Is) got SIG$1: forwarding it to the running step, starting no new one"
    if [ -n "$NIGT_STEP" ]; then kill -s "$1" "$NIGT_STEP" 2>/dev/null || true; fi
}
trap 'nigt_on_signal USR1' USR1
trap 'nigt_on_signal TERM' TERM

nigt_wait_step() {
    local rc
    while :; do
        NIGT_TRAPPED=0
        wait "$NIGT_STEP" && rc=0 || rc=$?
        [ "$NIGT_TRAPPED" = 1 ] || break
    done
    NIGT_STEP=""
    return "$rc"
}

# A run is finished when it has DONE: this script writes it (atomically) only after
# `nigt-hpc train` exited 0, which it does only when a stop rule held (limit or target
# return) and profile.json and theta.npy are written; a run stopped by a signal exits
# 128 + signal and is resumed from its checkpoint instead.
nigt_finished() { [ -f "$1/DONE" ]; }

# nigt_train RUN_DIR NRANKS [fresh] CONFIG [--set ...]: skip a finished run, resume one with
# a checkpoint (unless "fresh": a timing study restarts it), else start it.  Returns 0; a
# failure is remembered in NIGT_FAILED for nigt_finish.
nigt_train() {
    local run=$1 n=$2 fresh=0 rc
    shift 2
    if [ "${1:-}" = fresh ]; then fresh=1; shift; fi
    if [ -n "$NIGT_STOP" ]; then NIGT_LEFT=$((NIGT_LEFT + 1)); return 0; fi
    if nigt_finished "$run"; then echo "skip $run: finished ($(cat "$run/DONE"))"; return 0; fi
    local args=()
    if [ -f "$run/checkpoint.npz" ] && [ "$fresh" = 0 ]; then
        args=(--resume "$run"); echo "resume $run"
    else
        args=("$@" --out "$run" --force); echo "start $run"
    fi
    local kv
    for kv in ${NIGT_SET:-}; do args+=(--set "$kv"); done
    "${NIGT_LAUNCH[@]}" -n "$n" bash "$NIGT_ENV" nigt-hpc train "${args[@]}" --quiet &
    NIGT_STEP=$!
    nigt_wait_step && rc=0 || rc=$?
    if [ "$rc" = 0 ]; then
        echo "exit 0 $(date -Is) job $JOB_ID, $n ranks" > "$run/DONE.tmp" && mv "$run/DONE.tmp" "$run/DONE"
        echo "done $run"
    elif [ -n "$NIGT_STOP" ]; then
        NIGT_LEFT=$((NIGT_LEFT + 1))
        echo "stopped $run (exit $rc): checkpoint kept, a resubmission resumes it"
    else
        NIGT_FAILED+=("$run (exit $rc)")
        echo "FAILED $run (exit $rc)"
    fi
    return 0
}

# The job's exit: preempted -> requeue or exit 128 + signal; any failed run -> 1.
nigt_finish() {
    if [ -n "$NIGT_STOP" ]; then
        echo "preempted (SIG$NIGT_STOP): $NIGT_LEFT run(s) unfinished; submit the same command again to continue"
        if [ "${NIGT_REQUEUE:-0}" = 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
            scontrol requeue "$SLURM_JOB_ID" && echo "requeued job $SLURM_JOB_ID"
        fi
        exit $((128 + $(kill -l "$NIGT_STOP")))
    fi
    if [ "${#NIGT_FAILED[@]}" -gt 0 ]; then
        echo "error: ${#NIGT_FAILED[@]} run(s) failed: ${NIGT_FAILED[*]}" >&2
        exit 1
    fi
    echo "all runs finished"
}
