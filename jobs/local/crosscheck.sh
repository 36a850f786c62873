#!/bin/bash
# The same model on real ranks (emulated per-step delays) and on the virtual clock
# (per-step time model, same unit): round lengths and gradients per worker should agree.
#   bash jobs/local/crosscheck.sh [ALGO] [OUT_DIR]
# mpiexec: the one next to `python`, else the first on PATH (printed; MPIEXEC=/path
# overrides, MPIEXEC_ARGS adds options).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
nigt_launcher
ALGO=${1:-rennala_nigt}
OUT=${2:-runs/crosscheck}
COMMON=(--set env.id=Pendulum-v1 --set env.horizon=20 --set run.target_return=inf
        --set run.max_rounds=40 --set algo.name="$ALGO" --set algo.M=6 --set algo.M_init=6
        --set delays.compute=from_list --set "delays.compute_list=[1.0, 3.0]"
        --set delays.compute_unit_s=5e-4 --set mpi.poll_every_steps=4 --quiet --force)
"${NIGT_LAUNCH[@]}" ${MPIEXEC_ARGS:-} -n 2 nigt-hpc train "${COMMON[@]}" --out "$OUT/mpi-$ALGO"
nigt-hpc simulate "${COMMON[@]}" --workers 2 --set sim.time_model=step --out "$OUT/sim-$ALGO"
python - "$OUT/mpi-$ALGO" "$OUT/sim-$ALGO" <<'PY'
import json, sys
import numpy as np
for d in sys.argv[1:]:
    rows = [json.loads(x) for x in open(f"{d}/metrics.jsonl")]
    t = np.diff([0.0] + [r["time_s"] for r in rows])[1:]  # round 0 includes start-up
    g = np.mean([r["grads_per_worker"] for r in rows[1:]], axis=0)
    print(f"{d}: median round {1e3 * np.median(t):.2f} ms (mean {1e3 * t.mean():.2f}), "
          f"gradients per worker per round {np.round(g, 2).tolist()}")
PY
