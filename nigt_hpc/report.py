"""``nigt-hpc report RUN_DIR``: what a run did and where each rank's time went."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from .config import ConfigError, tomllib
from .timers import PHASES


def _load(run_dir: str) -> tuple[dict, list[dict], dict | None]:
    if not os.path.isdir(run_dir):
        raise ConfigError(f"run directory {run_dir!r} does not exist")
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise ConfigError(f"{run_dir!r} is not a run directory: no metrics.jsonl")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut by a kill: report what came before it
    cfg = {}
    cpath = os.path.join(run_dir, "config.toml")
    if os.path.isfile(cpath):
        with open(cpath, "rb") as fh:
            cfg = tomllib.load(fh)
    prof = None
    ppath = os.path.join(run_dir, "profile.json")
    if os.path.isfile(ppath):
        with open(ppath, encoding="utf-8") as fh:
            prof = json.load(fh)
    return cfg, rows, prof


def phase_table(prof: dict) -> tuple[list[tuple], np.ndarray]:
    """Return rows (phase, min, median, max, share of median wall) and per-rank idle share.

    ``other`` is each rank's wall time not covered by a timed phase; the idle share is
    (idle + wait) / wall: time a rank spent waiting for others or for the control plane.
    """
    ranks = prof["ranks"]
    walls = np.array([r.get("wall_s", prof.get("wall_s", 0.0)) for r in ranks])
    secs = {p: np.array([r["seconds"].get(p, 0.0) for r in ranks]) for p in PHASES
            if p != "other"}
    covered = sum(secs.values())
    secs["other"] = np.maximum(walls - covered, 0.0)
    med_wall = float(np.median(walls)) if len(walls) else 0.0
    rows = [(p, float(v.min()), float(np.median(v)), float(v.max()),
             float(np.median(v)) / med_wall if med_wall > 0 else 0.0)
            for p, v in secs.items()]
    idle = (secs["idle"] + secs["wait"]) / np.where(walls > 0, walls, 1.0)
    return rows, idle


def report_text(run_dir: str) -> str:
    """Return the report of one run directory."""
    cfg, rows, prof = _load(run_dir)
    meta = cfg.get("meta", {})
    algo = cfg.get("algo", {}).get("name", "?")
    env = cfg.get("env", {}).get("id", "?")
    out = [f"run {run_dir}: {algo} on {env}, {meta.get('ranks', '?')} rank(s), "
           f"d = {meta.get('d', '?')}"]
    if not rows:
        out.append("no rounds recorded")
        return "\n".join(out)
    last = rows[-1]
    t = last["time_s"]
    wins = [r["return_window"] for r in rows if r.get("return_window") is not None]
    gpw = np.sum([r["grads_per_worker"] for r in rows], axis=0)
    out += [
        f"rounds {last['round']}, {t:.3f} s, {last['env_steps']:,} env steps "
        f"({last['env_steps'] / t if t > 0 else 0:,.0f}/s), "
        f"{sum(r['episodes'] for r in rows):,} episodes",
        f"return: last window {wins[-1] if wins else float('nan'):.2f}, best window "
        f"{max(wins) if wins else float('nan'):.2f}",
        f"gradients per worker (all rounds): {gpw.astype(int).tolist()}; discarded "
        f"{sum(r['discarded'] for r in rows):,}",
        f"data plane: {last['collectives']} collectives, {last['comm_bytes']:,} bytes",
    ]
    if prof is None:
        out.append("no profile.json (the run did not finish)")
        return "\n".join(out)
    table, idle = phase_table(prof)
    out.append("")
    out.append(f"{'phase':<12}{'min s':>10}{'median s':>10}{'max s':>10}{'share':>8}"
               "   (over ranks; share of the median rank's wall time)")
    for p, lo, med, hi, share in table:
        out.append(f"{p:<12}{lo:>10.4f}{med:>10.4f}{hi:>10.4f}{100 * share:>7.1f}%")
    out.append(f"idle fraction (idle + control-plane wait) / wall: min {100 * idle.min():.1f}%, "
               f"median {100 * np.median(idle):.1f}%, max {100 * idle.max():.1f}%")
    compile_s = max(r.get("compile_s", 0.0) for r in prof["ranks"])
    out.append(f"kernel warm-up (excluded from time): {compile_s:.2f} s")
    return "\n".join(out)


def main(run_dir: str) -> int:
    """Print the report; return the exit status."""
    sys.stdout.write(report_text(run_dir) + "\n")
    return 0
