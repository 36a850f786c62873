#!/usr/bin/env python3
"""Figure and time-to-target table of one scenario's runs (from jobs/paper/run.py).

    python jobs/paper/plot.py runs/paper/2_reacher [--target auto|VALUE] [--title ...] [--logx]

Return against virtual time: the median over seeds with a 20-80% band, one line per
method, like the paper's figures.  Homogeneous scenarios plot the window mean (last 20
episodes), counted once the window is full.  The heterogeneous scenario (directory name
contains "hetero") plots the objective (1/n) sum_i J_i: the mean over workers of each
worker's mean over its last 20 episodes, counted once every worker has 20.

Time to target: the first virtual time at which a run's curve reaches the target; a
method's figure is the median over seeds (none if it misses on more than half of them).
The table also gives each method's median env steps to target (sample efficiency) and its
virtual seconds per 1k env steps (the time model's price of a sample), whose product is
roughly the time to target.  Below it, each method's final return (the last point of
each run's curve: median, range, per seed) and, for a heterogeneous scenario, each
worker's own final return (its last-20-episode mean) and gradient count per seed, which
the objective alone hides.  Writes figure.png and table.md.

``--target auto`` (the default) fixes the target by one rule for every scenario, blind to
which method is which: 75% of the way from the median initial return (first recorded
window, all runs) to the lowest final median among the methods, so every method can reach
it and the table compares how soon.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics

import numpy as np

WINDOW = 20  # episodes, as run.target_window

def curve(run_dir: str, hetero: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(virtual time, curve, env steps) at each record of one run."""
    rows = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
    t = np.array([r["time_s"] for r in rows])
    steps = np.array([r["env_steps"] for r in rows], dtype=float)
    if not hetero:  # counted once the window is full: early windows of 1-2 episodes are noise
        seen = np.cumsum([r["episodes"] for r in rows])
        y = np.array([np.nan if r.get("return_window") is None or k < WINDOW
                      else r["return_window"] for r, k in zip(rows, seen)])
        return t, y, steps
    ys = [np.mean(m) if all(v is not None for v in m) else np.nan
          for m, _ in worker_windows(rows)]
    return t, np.array(ys), steps


def worker_windows(rows: list[dict]):
    """After each record: (each worker's mean over its last WINDOW episodes, None while it
    has fewer; each worker's gradients so far).  A round's per-worker mean is weighted by
    the worker's gradients in it.  The mean over workers is the heterogeneous objective,
    with the same 20-episode smoothing as the homogeneous window."""
    n = len(rows[0]["return_per_worker"])
    hist: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    grads = [0] * n
    for r in rows:
        for i, v in enumerate(r["return_per_worker"]):
            grads[i] += r["grads_per_worker"][i]
            if v is not None:
                hist[i].append((v, float(max(1, r["grads_per_worker"][i]))))
                while sum(w for _, w in hist[i][1:]) >= WINDOW:
                    hist[i].pop(0)
        yield ([sum(v * w for v, w in h) / sum(w for _, w in h)
                if sum(w for _, w in h) >= WINDOW else None for h in hist], list(grads))


def final_workers(run_dir: str) -> tuple[list, list[int]]:
    """A heterogeneous run's last per-worker window means and gradient counts."""
    rows = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
    return list(worker_windows(rows))[-1]


def spread(xs: list[float]) -> str:
    """'median [min, max]' of a few finite values, as the RESULTS tables quote them."""
    return f"{statistics.median(xs):.4g} [{min(xs):.4g}, {max(xs):.4g}]"


def time_to(t: np.ndarray, y: np.ndarray, target: float) -> float:
    """The first value of ``t`` (a time or an env-step count) where ``y`` reaches target."""
    hit = np.nonzero(y >= target)[0]
    return float(t[hit[0]]) if len(hit) else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--target", default="auto")
    ap.add_argument("--title", default=None)
    ap.add_argument("--logx", action="store_true",
                    help="log time axis (when one method's run spans 10x the others')")
    args = ap.parse_args()
    hetero = "hetero" in os.path.basename(os.path.normpath(args.out))
    runs: dict[str, list] = {}
    dirs: dict[str, list[str]] = {}
    for d in sorted(glob.glob(os.path.join(args.out, "*-s*"))):
        if os.path.exists(os.path.join(d, "metrics.jsonl")):
            method = os.path.basename(d).rsplit("-s", 1)[0]
            runs.setdefault(method, []).append(curve(d, hetero))
            dirs.setdefault(method, []).append(d)
    if args.target == "auto":
        first = [y[~np.isnan(y)][0] for rs in runs.values() for _, y, _ in rs]
        finals = [statistics.median(y[~np.isnan(y)][-1] for _, y, _ in rs)
                  for rs in runs.values()]
        start = statistics.median(first)
        args.target = start + 0.75 * (min(finals) - start)
        print(f"target (auto): {args.target:.4g} (initial {start:.4g}, lowest final median "
              f"{min(finals):.4g})")
    else:
        args.target = float(args.target)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.2))
    t_max = max(float(t[-1]) for rs in runs.values() for t, _, _ in rs)
    if args.logx:
        t_min = min(float(t[0]) for rs in runs.values() for t, _, _ in rs if t[0] > 0)
        grid = np.geomspace(t_min, t_max, 400)
    else:
        grid = np.linspace(0, t_max, 300)
    # time to target = env steps to target x virtual s per env step: the two last columns
    # say whether a method is first by sample efficiency or by time per sample
    lines = ["| method | seeds | reached | median virtual s to target | per seed "
             "| median env steps to target | virtual s per 1k env steps |",
             "|---|---|---|---|---|---|---|"]
    ttt = {}
    for k, (m, rs) in enumerate(sorted(runs.items())):
        ys = np.full((len(rs), len(grid)), np.nan)
        for j, (t, y, _) in enumerate(rs):
            idx = np.searchsorted(t, grid, side="right") - 1
            ok = (idx >= 0) & (grid <= t[-1])
            ys[j, ok] = y[idx[ok]]
        enough = np.sum(~np.isnan(ys), axis=0) >= max(1, (len(rs) + 1) // 2)
        med = np.where(enough, np.nanmedian(np.where(enough, ys, 0.0), axis=0), np.nan)
        lo = np.where(enough, np.nanpercentile(np.where(enough, ys, 0.0), 20, axis=0), np.nan)
        hi = np.where(enough, np.nanpercentile(np.where(enough, ys, 0.0), 80, axis=0), np.nan)
        ax.plot(grid, med, color=f"C{k}", label=m)
        ax.fill_between(grid, lo, hi, color=f"C{k}", alpha=0.2)
        times = [time_to(t, y, args.target) for t, y, _ in rs]
        steps = [time_to(st, y, args.target) for _, y, st in rs]
        reached = [x for x in times if np.isfinite(x)]
        half = len(reached) * 2 > len(times)
        med_t = statistics.median(times) if half else float("inf")
        med_s = statistics.median(steps) if half else float("inf")
        rate = statistics.median(1000.0 * t[-1] / st[-1] for t, _, st in rs)
        ttt[m] = med_t
        lines.append(f"| {m} | {len(rs)} | {len(reached)}/{len(rs)} | "
                     f"{med_t:.4g} | " + ", ".join(f"{x:.4g}" for x in times)
                     + f" | {med_s:.4g} | {rate:.4g} |")
    ax.axhline(args.target, color="gray", ls=":", lw=1)
    if args.logx:
        ax.set_xscale("log")
        # matplotlib labels minor ticks when the axis spans under about a decade, and
        # those labels overlap: label 1, 2 and 5 of each decade as plain numbers instead
        lo, hi = ax.get_xlim()
        if hi / lo < 100:
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("virtual time (s)" + (", log scale" if args.logx else ""))
    ax.set_ylabel("return" + (" (mean over workers)" if hetero else " (window mean)"))
    ax.set_title(args.title or os.path.basename(os.path.normpath(args.out)))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "figure.png"), dpi=110)
    ref = "malenia_nigt" if hetero else "rennala_nigt"
    lines.append("")
    for m, v in ttt.items():
        if m != ref and np.isfinite(ttt.get(ref, np.inf)):
            ratio = v / ttt[ref]
            lines.append(f"- {m} / {ref} time to {args.target:g}: "
                         + ("not reached" if not np.isfinite(ratio) else f"{ratio:.2f}x"))
    # where each run ended: the last point of its curve (the window, or the objective)
    lines += ["", "| method | final return, median [range] | per seed |", "|---|---|---|"]
    for m, rs in sorted(runs.items()):
        fin = [float(y[~np.isnan(y)][-1]) for _, y, _ in rs if np.any(~np.isnan(y))]
        if fin:
            lines.append(f"| {m} | {spread(fin)} | " + ", ".join(f"{x:.4g}" for x in fin) + " |")
    if hetero:  # the objective hides who learns: each worker's own last-20-episode return
        n = len(final_workers(dirs[next(iter(dirs))][0])[0])
        lines += ["", "| method | " + " | ".join(f"worker {i}: final return, per seed "
                                                   "(median)" for i in range(n))
                  + " | gradients per worker, per seed |",
                  "|---|" + "---|" * (n + 1)]
        for m, ds in sorted(dirs.items()):
            ends = [final_workers(d) for d in ds]
            cells = []
            for i in range(n):
                vals = [e[0][i] for e in ends if e[0][i] is not None]
                cells.append(", ".join(f"{v:.4g}" for v in vals)
                             + (f" ({statistics.median(vals):.4g})" if vals else "none"))
            lines.append(f"| {m} | " + " | ".join(cells) + " | "
                         + "; ".join(":".join(str(g) for g in e[1]) for e in ends) + " |")
    text = "\n".join(lines)
    open(os.path.join(args.out, "table.md"), "w").write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
