#!/bin/bash
# The paper's experiment 4 on real ranks: two workers with different environments (worker 1
# sees -s; jobs/local/negate_obs.toml) and the paper's per-trajectory time model, worker 1
# 10x slower (h = [1, 10] x UNIT s per gradient).  Malenia NIGT weighs each worker's mean 1/n,
# so the slow worker's environment should be learned too; Rennala NIGT and AFedPG weigh by
# speed.  Prints, per algorithm, the slow worker's mean training return over the last
# quarter of its rounds, median and range over seeds.
#   bash jobs/local/scenario4_real.sh [OUT_DIR] [SEEDS] [SECONDS] [UNIT]
set -euo pipefail
OUT=${1:-runs/scenario4}
SEEDS=${2:-"0 1 2 3 4"}
SECONDS_EACH=${3:-20}
UNIT=${4:-0.005}
PY=$(command -v python)
# The mpiexec next to `python` (a venv's: the mpich wheel's, matching the MPI mpi4py loads),
# else the first on PATH; MPIEXEC=/path overrides.  Printed, since a mismatched launcher
# starts N singletons instead of one N-rank job.
MPIEXEC=${MPIEXEC:-$(dirname "$PY")/mpiexec}
[ -x "$MPIEXEC" ] || MPIEXEC=$(command -v mpiexec)
echo "scenario4_real.sh: python $PY, mpiexec $MPIEXEC" >&2
HERE=$(cd "$(dirname "$0")" && pwd)
for algo in malenia_nigt rennala_nigt afedpg; do
  n=2; [ "$algo" = afedpg ] && n=3  # AFedPG: rank 0 is the server, 2 workers
  for s in $SEEDS; do
    "$MPIEXEC" -n $n "$PY" -m nigt_hpc train "$HERE/negate_obs.toml" --quiet --force \
      --out "$OUT/$algo-s$s" --set algo.name=$algo --set run.seed=$s \
      --set run.max_time_s=$SECONDS_EACH --set delays.per=trajectory \
      --set "delays.compute_list=[1.0, 10.0]" --set delays.compute_unit_s=$UNIT
  done
done
"$PY" - "$OUT" $SEEDS <<'PY'
import json, sys
import numpy as np
out, seeds = sys.argv[1], sys.argv[2:]
print(f"{'algorithm':<14} {'slow worker (-s) return':>24} {'fast worker (s) return':>24}"
      f" {'slow share of grads':>20}")
for algo in ("malenia_nigt", "rennala_nigt", "afedpg"):
    slow, fast, share = [], [], []
    for s in seeds:
        rows = [json.loads(x) for x in open(f"{out}/{algo}-s{s}/metrics.jsonl")]
        tail = rows[len(rows) * 3 // 4:]
        for w, acc in ((1, slow), (0, fast)):
            v = [r["return_per_worker"][w] for r in tail if r["return_per_worker"][w] is not None]
            acc.append(float(np.mean(v)) if v else float("nan"))
        g = np.sum([r["grads_per_worker"] for r in rows[1:]], axis=0)
        share.append(g[1] / g.sum())
    f = lambda a: f"{np.nanmedian(a):7.1f} [{np.nanmin(a):.0f}, {np.nanmax(a):.0f}]"
    print(f"{algo:<14} {f(slow):>24} {f(fast):>24} {np.median(share):>20.3f}")
PY
