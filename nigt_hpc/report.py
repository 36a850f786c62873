"""``nigt-hpc report RUN_DIR``: what a run did and where each rank's time went."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from .config import ConfigError, tomllib
from .phases import phase_table
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


def _who(meta: dict) -> str:
    # simulate records workers, not ranks: its n workers share one process
    if meta.get("engine") == "sim":
        return f"{meta.get('workers', '?')} virtual workers"
    return f"{meta.get('ranks', '?')} rank(s)"


def run_labels(run_dirs: list[str], cfgs: list[dict]) -> list[str]:
    """Return one legend label per run: "algo seed S, N rank(s)" from its config.toml, or
    the directory's name where two runs would get the same label (its path if that clashes
    too)."""
    labels = [f"{c.get('algo', {}).get('name', '?')} seed {c.get('run', {}).get('seed', '?')}, "
              f"{_who(c.get('meta', {}))}" for c in cfgs]
    names = [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    out = []
    for i, lab in enumerate(labels):
        if labels.count(lab) > 1:
            lab = names[i] if names.count(names[i]) == 1 else os.path.normpath(run_dirs[i])
        out.append(lab)
    return out


def _check_out(path: str) -> str:
    if not path.lower().endswith(".png"):
        raise ConfigError(f"--out {path!r}: must name a .png file")
    if os.path.isdir(path) or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ConfigError(f"--out {path!r}: not a file in an existing directory")
    return path


def compare(run_dirs: list[str], path: str | None) -> tuple[str, list[str]]:
    """Write one PNG of every run's return against seconds and env steps; return (its path,
    the legend labels).  ``path`` None: plot_compare.png in the first run directory."""
    path = os.path.join(run_dirs[0], "plot_compare.png") if path is None else _check_out(path)
    loaded = [_load(d) for d in run_dirs]
    labels = run_labels(run_dirs, [c for c, _, _ in loaded])
    virtual = any(c.get("meta", {}).get("engine") == "sim" for c, _, _ in loaded)
    from .plots import plot_compare

    drawn = plot_compare(path, [(lab, rows) for lab, (_, rows, _) in zip(labels, loaded)],
                         virtual)
    return path, drawn


def _eval_line(rows: list[dict]) -> list[str]:
    """The deterministic evaluations (run.eval_every_rounds / eval_every_s), if any."""
    ev = [(r["round"], r["eval_return"]) for r in rows if r.get("eval_return") is not None]
    if not ev:
        return []
    best = max(ev, key=lambda x: x[1])
    return [f"deterministic evaluation: last {ev[-1][1]:.2f} (round {ev[-1][0]}), best "
            f"{best[1]:.2f} (round {best[0]}), {len(ev)} evaluations"]


def report_text(run_dir: str) -> str:
    """Return the report of one run directory."""
    cfg, rows, prof = _load(run_dir)
    meta = cfg.get("meta", {})
    algo = cfg.get("algo", {}).get("name", "?")
    env = cfg.get("env", {}).get("id", "?")
    out = [f"run {run_dir}: {algo} on {env}, {_who(meta)}, d = {meta.get('d', '?')}"]
    if not rows:
        out.append("no rounds recorded")
        return "\n".join(out)
    last = rows[-1]
    t = last["time_s"]
    unit = "virtual s" if meta.get("engine") == "sim" else "s"
    wins = [r["return_window"] for r in rows if r.get("return_window") is not None]
    gpw = np.sum([r["grads_per_worker"] for r in rows], axis=0)
    out += [
        f"rounds {last['round']}, {t:.3f} {unit}, {last['env_steps']:,} env steps "
        f"({last['env_steps'] / t if t > 0 else 0:,.0f}/{unit}), "
        f"{sum(r['episodes'] for r in rows):,} episodes",
        f"return: last window {wins[-1] if wins else float('nan'):.2f}, best window "
        f"{max(wins) if wins else float('nan'):.2f}",
        *_eval_line(rows),
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
    rss = [r["max_rss_mb"] for r in prof["ranks"] if "max_rss_mb" in r]
    if rss:
        out.append(f"peak RSS per rank: {', '.join(f'{x:.0f}' for x in rss)} MiB")
    return "\n".join(out)


def scaling(run_dirs: list[str], out_dir: str, plot: bool = True) -> list[dict]:
    """Write scaling.csv (and PNGs) for runs at several rank counts; return the rows.

    Rate = env steps / training seconds.  Efficiency compares each run's rate per rank with
    the smallest rank count's: ``(rate_n / n) / (rate_n0 / n0)``; for a strong-scaling study
    (fixed total work) that is speedup / (n / n0), for a weak-scaling one (fixed work per
    rank) it is the per-rank throughput kept.
    """
    rows = []
    for d in run_dirs:
        cfg, metrics, prof = _load(d)
        if not metrics or prof is None:
            raise ConfigError(f"{d!r} has no finished run (metrics.jsonl and profile.json)")
        last = metrics[-1]
        ranks = int(cfg.get("meta", {}).get("ranks", len(prof["ranks"])))
        table, idle = phase_table(prof)
        row = {"ranks": ranks, "run_dir": d, "algo": cfg.get("algo", {}).get("name"),
               "env_steps": last["env_steps"], "time_s": last["time_s"],
               "steps_per_s": last["env_steps"] / last["time_s"] if last["time_s"] > 0 else 0,
               "idle_median": float(np.median(idle))}
        row.update({f"share_{p}": share for p, _, _, _, share in table})
        rows.append(row)
    rows.sort(key=lambda r: r["ranks"])
    base = rows[0]
    for r in rows:
        r["speedup"] = r["steps_per_s"] / base["steps_per_s"]
        r["efficiency"] = r["speedup"] * base["ranks"] / r["ranks"]
    os.makedirs(out_dir, exist_ok=True)
    cols = list(rows[0].keys())
    with open(os.path.join(out_dir, "scaling.csv"), "w", encoding="utf-8") as fh:
        fh.write(",".join(cols) + "\n")
        for r in rows:
            fh.write(",".join(f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c])
                              for c in cols) + "\n")
    if plot:
        from .plots import plot_scaling

        plot_scaling(out_dir, rows, [p for p in PHASES])
    return rows


def scaling_text(rows: list[dict]) -> str:
    """Return the scaling rows as a markdown table."""
    out = ["| ranks | env steps | seconds | env steps/s | speedup | efficiency | idle |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['ranks']} | {r['env_steps']:,} | {r['time_s']:.2f} | "
                   f"{r['steps_per_s']:,.0f} | {r['speedup']:.2f} | {r['efficiency']:.2f} | "
                   f"{100 * r['idle_median']:.1f}% |")
    return "\n".join(out)


def main(run_dirs: list[str], plot: bool = False, scaling_out: str | None = None,
         out: str | None = None) -> int:
    """Print the report (or the scaling table); return the exit status.

    ``plot`` with several run directories (or with ``out``) also writes one comparison
    figure of all of them: ``out``, else plot_compare.png in the first run directory.
    """
    if out is not None and not plot:
        raise ConfigError("report --out FILE names the comparison figure: it needs --plot")
    if plot and (out is not None or len(run_dirs) > 1):
        for d in run_dirs:  # every bad input before any file is written
            _load(d)
        if out is not None:
            _check_out(out)
    if scaling_out is not None:
        rows = scaling(run_dirs, scaling_out, plot=True)
        sys.stdout.write(scaling_text(rows) + f"\nwrote {scaling_out}/scaling.csv and "
                         "scaling_{rate,efficiency,phases}.png\n")
        return 0
    for d in run_dirs:
        sys.stdout.write(report_text(d) + "\n")
        if plot:
            cfg, rows, prof = _load(d)
            table = phase_table(prof)[0] if prof else []
            from .plots import plot_run

            for path in plot_run(d, rows, table, prof):
                sys.stdout.write(f"wrote {path}\n")
    if plot and (out is not None or len(run_dirs) > 1):
        path, labels = compare(run_dirs, out)
        where = "--out" if out is not None else "default: the first run directory"
        sys.stdout.write(f"wrote {path} ({where}): return against seconds and env steps of "
                         f"{len(labels)} run(s): {'; '.join(labels)}\n")
    return 0
