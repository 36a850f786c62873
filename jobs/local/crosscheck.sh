#!/bin/bash
# Benchmark: the same model on real ranks (emulated delays) and on the virtual clock, round
# lengths and gradients per worker side by side, and their ratio.
#   bash jobs/local/crosscheck.sh [ALGO] [OUT_DIR] [PER] [UNIT_S]
# PER = trajectory (default; the paper's model: worker i spends h_i per gradient, rollout and
# gradient included) or step (h_i per env step).  AFedPG runs 1 worker + the server on its 2
# ranks.  UNIT_S: seconds per unit of h for PER = trajectory (default 0.05, so h = [1, 3]
# is 50 and 150 ms per gradient).  A real round also pays a fixed cost the virtual clock
# does not model (a sleeping rank notices the round's end within its 1-ms slice, the
# boundary meeting naps, the Allreduce, the NIGT step): 1.4-15 ms a round measured here,
# 4-15% of a round at UNIT_S = 0.01 and 1-5% at 0.05 (jobs/local/RESULTS.md).  The script
# prints it per round.
# mpiexec: the one next to `python`, else the first on PATH (printed; MPIEXEC=/path
# overrides, MPIEXEC_ARGS adds options).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
nigt_launcher
ALGO=${1:-rennala_nigt}
OUT=${2:-runs/crosscheck}
PER=${3:-trajectory}
UNIT_S=${4:-0.05}
if [ "$PER" = trajectory ]; then
  UNIT=(--set delays.compute_unit_s="$UNIT_S")
else
  UNIT=(--set delays.compute_unit_s=5e-4 --set mpi.poll_every_steps=4)
fi
WORKERS=2
[ "$ALGO" = afedpg ] && WORKERS=1
COMMON=(--set env.id=Pendulum-v1 --set env.horizon=20 --set run.target_return=inf
        --set run.max_rounds=40 --set algo.name="$ALGO" --set algo.M=6 --set algo.M_init=6
        --set delays.compute=from_list --set "delays.compute_list=[1.0, 3.0]"
        --set delays.per="$PER" "${UNIT[@]}" --quiet --force)
"${NIGT_LAUNCH[@]}" ${MPIEXEC_ARGS:-} -n 2 nigt-hpc train "${COMMON[@]}" --out "$OUT/mpi-$ALGO-$PER"
nigt-hpc simulate "${COMMON[@]}" --workers "$WORKERS" --set sim.time_model="$PER" \
  --out "$OUT/sim-$ALGO-$PER"
python - "$OUT/mpi-$ALGO-$PER" "$OUT/sim-$ALGO-$PER" <<'PY'
import json, sys
import numpy as np
med = []
for d in sys.argv[1:]:
    rows = [json.loads(x) for x in open(f"{d}/metrics.jsonl")]
    t = np.diff([r["time_s"] for r in rows])  # round 0 includes start-up
    g = np.mean([r["grads_per_worker"] for r in rows[1:]], axis=0)
    med.append(np.median(t))
    print(f"{d}: median round {1e3 * np.median(t):.2f} ms (mean {1e3 * t.mean():.2f}), "
          f"gradients per worker per round {np.round(g, 2).tolist()}")
print(f"real / virtual median round: {med[0] / med[1]:.3f} "
      f"(real - virtual: {1e3 * (med[0] - med[1]):.2f} ms a round)")
PY
