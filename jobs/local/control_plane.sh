#!/bin/bash
# Rennala's control planes under each MPI / one-sided component this machine has: the
# probe's verdict, exact M over 100 rounds, and the fast rank's idle with a 5x straggler.
#   bash jobs/local/control_plane.sh [OUT.jsonl]
# MPICH: the mpi4py + mpich wheels of $PY's venv.  Open MPI: $OMPI_PY, a venv whose mpi4py
# loads the system's libmpi (no mpich wheel), launched by mpiexec.openmpi.
set -uo pipefail
OUT=${1:-runs/control_plane.jsonl}
PY=${PY:-python}
OMPI_PY=${OMPI_PY:-.venv-ompi/bin/python}
ROUNDS=${ROUNDS:-100}
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1
bench=(jobs/local/control_plane.py --rounds "$ROUNDS")
status=0
"$(dirname "$(command -v "$PY")")/mpiexec" -n 2 "$PY" -m mpi4py "${bench[@]}" \
  --label mpich >> "$OUT" || status=1
if command -v mpiexec.openmpi > /dev/null && [ -x "$OMPI_PY" ]; then
  for osc in default sm ucx; do
    mca=(); [ "$osc" = default ] || mca=(--mca osc "$osc")
    mpiexec.openmpi --allow-run-as-root --oversubscribe "${mca[@]}" -n 2 \
      "$OMPI_PY" -m mpi4py "${bench[@]}" --label "ompi-osc-$osc" >> "$OUT" || status=1
  done
else
  echo "no Open MPI (mpiexec.openmpi and $OMPI_PY): measured MPICH only" >&2
fi
cat "$OUT"
exit $status
