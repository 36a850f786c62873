#!/usr/bin/env python3
"""Run every algorithm side by side on 2 MPI ranks and print a time-to-target table.

Usage:
    python jobs/local/compare.py CONFIG.toml OUT_DIR [--seeds 0 1 2] [--slow 5]
           [--unit 2e-5] [--cap 120] [--algos ...] [--set KEY=VALUE ...]

The second worker is emulated ``--slow`` times slower (delays.compute = from_list
[1, slow] with compute_unit_s = --unit seconds per env step).  AFedPG's rank 0 is its
server, so on 2 ranks it has a single (fast) worker.  Each run stops at the config's
target return or after --cap seconds; the table shows the median over seeds of the
training seconds to the target ("-" where a run did not reach it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

from nigt_hpc.registry import ALGORITHMS as ALGOS  # every algo.name, in config's order


def mpiexec() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else (shutil.which("mpiexec") or "mpiexec")


def run_one(config, out, algo, seed, args) -> dict:
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "nigt_hpc", "train", config,
           "--out", out, "--force", "--quiet",
           "--set", f"algo.name={algo}", "--set", f"run.seed={seed}",
           "--set", "delays.compute=from_list",
           "--set", f"delays.compute_list=[1.0, {args.slow}]",
           "--set", f"delays.compute_unit_s={args.unit}",
           "--set", f"run.max_time_s={args.cap}"]
    for s in args.set:
        cmd += ["--set", s]
    for s in args.algo_set:
        name, kv = s.split(":", 1)
        if name == algo:
            cmd += ["--set", kv]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1:]}
    rows = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    last = rows[-1]
    target = None
    with open(os.path.join(out, "config.toml"), "rb") as fh:
        import tomllib

        target = tomllib.load(fh)["run"]["target_return"]
    reached = last.get("return_window") is not None and last["return_window"] >= target
    return {"time_s": last["time_s"], "env_steps": last["env_steps"],
            "rounds": last["round"], "reached": reached, "window": last["return_window"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--slow", type=float, default=5.0)
    ap.add_argument("--unit", type=float, default=2e-5)
    ap.add_argument("--cap", type=float, default=120.0)
    ap.add_argument("--algos", nargs="+", default=list(ALGOS))
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE for every run")
    ap.add_argument("--algo-set", action="append", default=[],
                    help="ALGO:KEY=VALUE for one algorithm, e.g. afedpg:algo.alpha=0.05")
    args = ap.parse_args()
    results = {}
    for algo in args.algos:
        for seed in args.seeds:
            out = os.path.join(args.out, f"{algo}-s{seed}")
            r = run_one(args.config, out, algo, seed, args)
            results[(algo, seed)] = r
            print(f"{algo:<14} seed {seed}: {r}", flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump({f"{a}-s{s}": r for (a, s), r in results.items()}, fh, indent=1)
    print()
    print("| algorithm | reached | median s to target | median env steps | per-seed s |")
    print("|---|---|---|---|---|")
    for algo in args.algos:
        rs = [results[(algo, s)] for s in args.seeds]
        ok = [r for r in rs if r.get("reached")]
        med = statistics.median([r["time_s"] for r in ok]) if len(ok) * 2 > len(rs) else None
        steps = statistics.median([r["env_steps"] for r in ok]) if ok else None
        per = ", ".join(f"{r['time_s']:.2f}" if r.get("reached") else "-" for r in rs)
        print(f"| {algo} | {len(ok)}/{len(rs)} | {'-' if med is None else f'{med:.2f}'} | "
              f"{'-' if steps is None else f'{steps:,.0f}'} | {per} |")


if __name__ == "__main__":
    main()
