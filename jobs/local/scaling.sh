#!/bin/bash
# Local strong-scaling study on a workstation: 1, 2, ... NMAX ranks (default: the core
# count; never more ranks than cores when timing), fixed total env steps.
#   bash jobs/local/scaling.sh jobs/local/hopper.toml runs/local-scaling 200000
# mpiexec: the one next to `python` (a venv's, e.g. the mpich wheel's), else the first on
# PATH; it is printed, and must belong to the MPI mpi4py loads.  MPIEXEC=/path overrides;
# MPIEXEC_ARGS adds options (e.g. "--mca osc ucx" for Open MPI).
set -euo pipefail
CONFIG=${1:-jobs/local/hopper.toml}
OUT=${2:-runs/local-scaling}
TOTAL=${3:-200000}
NMAX=${NMAX:-$(nproc)}
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
nigt_launcher
log_versions
warm_cache
runs=()
for ((k = 1; k <= NMAX; k++)); do
  "${NIGT_LAUNCH[@]}" ${MPIEXEC_ARGS:-} -n "$k" bash "$NIGT_ENV" nigt-hpc train "$CONFIG" \
    --out "$OUT/n$k" --force --quiet --set run.max_env_steps="$TOTAL" --set run.max_rounds=0 \
    --set run.max_time_s=0 --set run.target_return=inf
  runs+=("$OUT/n$k")
done
bash "$NIGT_ENV" nigt-hpc report --scaling "$OUT/study" "${runs[@]}"
