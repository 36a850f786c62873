#!/usr/bin/env python3
"""Run one paper scenario on the virtual clock: every method x seeds (and a tuning sweep).

    python jobs/paper/run.py jobs/paper/2_reacher.toml runs/paper/2_reacher --tune
    python jobs/paper/run.py jobs/paper/2_reacher.toml runs/paper/2_reacher
    python jobs/paper/plot.py runs/paper/2_reacher

``--tune`` runs seed 0 of each method over the alpha grid (every other power of two from
2^-13 to 2^-3: the paper's grid {2^-10, ..., 2^-1} thinned, and widened downward because
AFedPG's best sat at the old grid's smallest value; eta = 0.1 and M = M_init = 20 as the
paper chose) on a quarter of the env-step budget and writes ``tuned.json``: per method, the
alpha with the best mean window return over the last quarter of its run.  The main run
then uses those alphas.

Methods: ``rennala_nigt``, ``sync_nigt`` (B = ceil(M/n) gradients per worker a round),
``sync_nigt_B1`` (Synchronized NIGT with B = 1, a batch of n a round: docs/ALGORITHMS.md §4
reads the paper's baseline either way, so both run) and ``afedpg``; the heterogeneous
scenario runs ``malenia_nigt`` and ``afedpg``.  The server link model is the config's
(``delays.server_link``, default shared); ``--set delays.server_link=parallel`` into
another OUT gives the older model for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

METHODS = ["rennala_nigt", "sync_nigt", "sync_nigt_B1", "afedpg"]
HETERO_METHODS = ["malenia_nigt", "afedpg"]
# a method name of this script -> the algorithm and the settings it adds
VARIANTS = {"sync_nigt_B1": ("sync_nigt", ["algo.B=1"])}
ALPHAS = [2.0**-13, 2.0**-11, 2.0**-9, 2.0**-7, 2.0**-5, 2.0**-3]


def method_sets(m: str) -> list[str]:
    """The --set lines that make method ``m``."""
    algo, extra = VARIANTS.get(m, (m, []))
    return [f"algo.name={algo}"] + extra


def simulate(config: str, out: str, sets: list[str]) -> tuple[str, int, str]:
    cmd = [sys.executable, "-m", "nigt_hpc", "simulate", config, "--out", out, "--force",
           "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return out, p.returncode, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""


def tail_score(run_dir: str) -> float:
    rows = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
    vals = [r["return_window"] for r in rows[3 * len(rows) // 4 :]
            if r.get("return_window") is not None]
    return sum(vals) / len(vals) if vals else float("-inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--methods", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    hetero = "hetero" in os.path.basename(args.config)
    methods = args.methods or (HETERO_METHODS if hetero else METHODS)
    from nigt_hpc.registry import ALGORITHMS

    unknown = [m for m in methods if m not in ALGORITHMS and m not in VARIANTS]
    if unknown:
        ap.error(f"unknown method(s) {unknown}: choose from "
                 f"{sorted(set(ALGORITHMS) | set(VARIANTS))}")
    os.makedirs(args.out, exist_ok=True)
    tuned_path = os.path.join(args.out, "tuned.json")
    with ThreadPoolExecutor(args.jobs) as pool:
        if args.tune:
            import tomllib

            with open(args.config, "rb") as fh:
                budget = tomllib.load(fh)["run"]["max_env_steps"]
            for s in args.set:  # a --set of the budget counts, as for the main runs
                if s.startswith("run.max_env_steps="):
                    budget = int(s.split("=", 1)[1])
            budget //= 4
            jobs = {}
            for m in methods:
                for a in ALPHAS:
                    out = os.path.join(args.out, "tune", f"{m}-a{a:g}")
                    sets = args.set + method_sets(m) + [f"algo.alpha={a}", "run.seed=0",
                                                        f"run.max_env_steps={budget}"]
                    jobs[(m, a)] = pool.submit(simulate, args.config, out, sets)
            tuned, scores = {}, {}
            for (m, a), f in jobs.items():
                out, rc, err = f.result()
                scores[f"{m} alpha={a:g}"] = tail_score(out) if rc == 0 else None
                print(f"tune {m} alpha={a:g}: rc={rc} score={scores[f'{m} alpha={a:g}']} {err}",
                      flush=True)
            for m in methods:
                best = max(ALPHAS, key=lambda a: scores[f"{m} alpha={a:g}"] or float("-inf"))
                tuned[m] = best
            with open(tuned_path, "w") as fh:
                json.dump({"alpha": tuned, "scores": scores, "budget": budget}, fh, indent=1)
            print("tuned:", tuned)
            return
        tuned = {}
        if os.path.exists(tuned_path):
            tuned = json.load(open(tuned_path))["alpha"]
        futures = []
        for m in methods:
            for s in args.seeds:
                sets = args.set + method_sets(m) + [f"run.seed={s}"]
                if m in tuned:
                    sets.append(f"algo.alpha={tuned[m]}")
                futures.append(pool.submit(simulate, args.config,
                                           os.path.join(args.out, f"{m}-s{s}"), sets))
        for f in futures:
            out, rc, err = f.result()
            print(f"{out}: rc={rc} {err}", flush=True)


if __name__ == "__main__":
    main()
