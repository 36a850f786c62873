# Sourced by every job script: one thread per rank, a node-local numba cache, and a log of
# what ran.  Override any variable before sourcing.
#   JOB_ID     a unique tag for this job (defaults to Slurm's / PBS's job id, else the PID)
#   PMI        for srun: the --mpi plugin (pmi2 suits MPICH and its derivatives)

export JOB_ID=${JOB_ID:-${SLURM_JOB_ID:-${PBS_JOBID:-$$}}}
export PMI=${PMI:-pmi2}

# One core per rank: no hidden thread pools (PITFALLS N4).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
# mpi4py: nothing here calls MPI from a second thread (PITFALLS M6).
export MPI4PY_RC_THREAD_LEVEL=${MPI4PY_RC_THREAD_LEVEL:-funneled}
# A node-local numba cache (PITFALLS N1/N2): never a shared filesystem, never shared
# between node types.  nigt-hpc warms it with one rank per node before the others load it;
# warm_cache below does the same as a separate step.
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-${TMPDIR:-/tmp}/nigt-numba-${USER:-user}-${JOB_ID}}
# NIGT_HPC_NUMBA_CACHE=0 turns the cache off altogether (every rank compiles for itself).
# Hung jobs end: Hydra aborts an mpiexec that runs past this many seconds.
export MPIEXEC_TIMEOUT=${MPIEXEC_TIMEOUT:-86400}

log_versions() {
    echo "== $(date -Is) job ${JOB_ID} on $(hostname)"
    nigt-hpc --version
    python - <<'PY'
import platform, numpy, numba, gymnasium
from mpi4py import MPI
print("python", platform.python_version(), "numpy", numpy.__version__, "numba",
      numba.__version__, "gymnasium", gymnasium.__version__)
print("MPI:", MPI.Get_library_version().splitlines()[0])
try:
    import mujoco
    print("mujoco", mujoco.__version__)
except ImportError:
    print("mujoco not installed")
from nigt_hpc import bench
print(bench.blas_line())  # the matrix gradient's speed is this kernel set's
PY
    env | grep -E '^(OMP|OPENBLAS|MKL|NUMBA|MPI4PY|MPIR_CVAR|SLURM_NTASKS|PBS_NP)' | sort
}

# Compile (or load) the kernels once: run it with one task per node before the training.
warm_cache() {
    python -c "import nigt_hpc.kernels as k; print('kernel warm-up %.2f s' % k.warmup())"
}
