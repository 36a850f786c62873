#!/bin/bash
# Local strong-scaling study on a workstation: 1, 2, ... NMAX ranks (default: the core
# count; never more ranks than cores when timing), fixed total env steps.
#   bash jobs/local/scaling.sh jobs/local/hopper.toml runs/local-scaling 200000
set -euo pipefail
CONFIG=${1:-jobs/local/hopper.toml}
OUT=${2:-runs/local-scaling}
TOTAL=${3:-200000}
NMAX=${NMAX:-$(nproc)}
source "$(dirname "$0")/../env.sh"
log_versions
warm_cache
runs=()
for ((k = 1; k <= NMAX; k++)); do
  mpiexec -n "$k" nigt-hpc train "$CONFIG" --out "$OUT/n$k" --force --quiet \
    --set run.max_env_steps="$TOTAL" --set run.max_rounds=0 --set run.max_time_s=0 \
    --set run.target_return=inf
  runs+=("$OUT/n$k")
done
nigt-hpc report --scaling "$OUT/study" "${runs[@]}"
