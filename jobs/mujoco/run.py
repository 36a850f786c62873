#!/usr/bin/env python3
"""Train the MuJoCo presets over seeds and write learning curves (median and band).

Usage:
    python jobs/mujoco/run.py [ENV ...] [--seeds 0 1 2] [--ranks 2] [--budget S]
        [--out runs/mujoco] [--data jobs/mujoco/data] [--plot-only] [--set KEY=VALUE ...]

ENV names a preset in this folder (hopper, walker2d, halfcheetah, ant, humanoid; default:
all).  Each run is ``mpiexec -n RANKS nigt-hpc train jobs/mujoco/ENV.toml`` with
``run.seed`` set, for the preset's ``run.max_time_s`` unless ``--budget`` overrides it.
Runs already finished in OUT are kept (delete the folder to redo one).  Then, per env,
``OUT/ENV_wallclock.png`` and ``OUT/ENV_steps.png`` plot the deterministic evaluation return
(median over seeds, band = min..max) against seconds and against env steps, and a table
prints each seed's final evaluation return and the time to 1000 / 2500.

Each finished run's evaluation curve and final return are also kept as a small CSV,
``DATA/ENV_sSEED.csv`` (default ``jobs/mujoco/data``, committed), so the figures and the
table in RESULTS.md can be rebuilt with ``--plot-only`` after the run folders are gone: a
seed whose run folder is missing is read from its CSV.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PRESETS = ["hopper", "walker2d", "halfcheetah", "ant", "humanoid"]


def mpiexec() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else "mpiexec"


def train(env: str, seed: int, a) -> str:
    out = os.path.join(a.out, f"{env}_s{seed}")
    if os.path.exists(os.path.join(out, "policy.npz")):
        return out
    cmd = [sys.executable, "-m", "nigt_hpc", "train", os.path.join(HERE, f"{env}.toml"),
           "--out", out, "--force", "--quiet", "--set", f"run.seed={seed}"]
    if a.budget:
        cmd += ["--set", f"run.max_time_s={a.budget}"]
    for s in a.set:
        cmd += ["--set", s]
    if a.ranks > 1:
        cmd = [mpiexec(), "-n", str(a.ranks)] + cmd
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return out


def curve(run_dir: str) -> np.ndarray:
    """Rows (seconds, env steps, evaluation return) of a run's evaluated rounds."""
    if run_dir.endswith(".csv"):
        return np.loadtxt(run_dir, delimiter=",", skiprows=2, ndmin=2)
    rows = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
    return np.array([(r["time_s"], r["env_steps"], r["eval_return"]) for r in rows
                     if r.get("eval_return") is not None])


def final_eval(run_dir: str) -> float:
    """The delivered policy's reported return (policy.npz, or the CSV's first line)."""
    if run_dir.endswith(".csv"):
        with open(run_dir) as f:
            return float(f.readline().split("final_eval_return=")[1].split()[0])
    with np.load(os.path.join(run_dir, "policy.npz")) as z:
        return float(json.loads(str(z["policy_json"]))["eval_return"])


def save_curve(run_dir: str, path: str) -> None:
    """Write a finished run's evaluation curve and final return to a small CSV."""
    c = curve(run_dir)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(f"# final_eval_return={final_eval(run_dir):.6g} from {run_dir}\n")
        f.write("time_s,env_steps,eval_return\n")
        for t, n, r in c:
            f.write(f"{t:.3f},{int(n)},{r:.6g}\n")


def source(env: str, seed: int, a) -> str | None:
    """The run folder if it finished (its CSV refreshed), else the kept CSV, else None."""
    run_dir = os.path.join(a.out, f"{env}_s{seed}")
    csv = os.path.join(a.data, f"{env}_s{seed}.csv")
    if os.path.exists(os.path.join(run_dir, "policy.npz")):
        if a.data:
            save_curve(run_dir, csv)
        return run_dir
    return csv if a.data and os.path.exists(csv) else None


def band(curves: list[np.ndarray], col: int, grid: np.ndarray) -> np.ndarray:
    """Each seed's best-so-far evaluation return on ``grid`` (step-wise), as rows."""
    out = []
    for c in curves:
        best = np.maximum.accumulate(c[:, 2])
        idx = np.searchsorted(c[:, col], grid, side="right") - 1
        out.append(np.where(idx >= 0, best[np.clip(idx, 0, None)], np.nan))
    return np.array(out)


def plot(env: str, runs: list[str], out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [curve(r) for r in runs]
    paths = []
    for col, label, name in ((0, "wall-clock seconds", "wallclock"), (1, "env steps", "steps")):
        # From the earliest first evaluation: before it no seed has a value to plot.
        grid = np.linspace(min(c[0, col] for c in curves), max(c[-1, col] for c in curves), 200)
        b = band(curves, col, grid)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(grid, np.nanmedian(b, axis=0), label=f"median of {len(runs)} seeds")
        ax.fill_between(grid, np.nanmin(b, axis=0), np.nanmax(b, axis=0), alpha=0.25,
                        label="min..max")
        ax.set_xlabel(label)
        ax.set_ylabel("deterministic evaluation return (best so far)")
        ax.set_title(f"{env}: nigt-hpc preset")
        ax.legend()
        ax.grid(alpha=0.3)
        path = os.path.join(out, f"{env}_{name}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def first_time(c: np.ndarray, target: float):
    hit = np.nonzero(c[:, 2] >= target)[0]
    return None if len(hit) == 0 else float(c[hit[0], 0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("envs", nargs="*", default=PRESETS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--budget", type=float, default=0.0)
    ap.add_argument("--out", default="runs/mujoco")
    ap.add_argument("--data", default=os.path.join(HERE, "data"),
                    help="folder of the kept per-seed curve CSVs ('' to keep none)")
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args(argv)
    bad = [e for e in a.envs if e not in PRESETS]
    if bad:
        ap.error(f"unknown preset(s) {bad}; choose from {PRESETS}")
    os.makedirs(a.out, exist_ok=True)
    for env in a.envs:
        if not a.plot_only:
            for s in a.seeds:
                train(env, s, a)
        found = [(s, source(env, s, a)) for s in a.seeds]
        seeds = [s for s, r in found if r is not None]
        runs = [r for _, r in found if r is not None]
        if not runs:
            continue
        paths = plot(env, runs, a.out)
        finals = [final_eval(r) for r in runs]
        cs = [curve(r) for r in runs]
        t1k = [first_time(c, 1000) for c in cs]
        t25 = [first_time(c, 2500) for c in cs]
        fmt = lambda ts: ", ".join("-" if t is None else f"{t:.0f}" for t in ts)  # noqa: E731
        print(f"{env}: final deterministic eval median {np.median(finals):.0f} "
              f"(range {min(finals):.0f}..{max(finals):.0f}) over seeds {seeds}; "
              f"s to 1000: {fmt(t1k)}; s to 2500: {fmt(t25)}; env steps "
              f"{', '.join(f'{int(c[-1, 1]):,}' for c in cs)}; plots {', '.join(paths)}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
