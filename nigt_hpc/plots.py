"""PNG plots for ``nigt-hpc report --plot`` and ``--scaling`` (needs the ``plot`` extra)."""

from __future__ import annotations

import os

import numpy as np

from .config import ConfigError
from .phases import per_rank_phases


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'nigt_hpc[plot]'") from None
    return plt


def _save(plt, fig, path: str, paths: list[str]) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)


def plot_run(run_dir: str, rows: list[dict], table: list[tuple], prof: dict | None) -> list[str]:
    """Write plot_return.png and plot_timers.png into ``run_dir``; return their paths."""
    plt = _plt()
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    t = [r["time_s"] for r in rows]
    ax.scatter(t, [np.nan if r["return_mean"] is None else r["return_mean"] for r in rows],
               s=6, alpha=0.4, label="round mean")
    ax.plot(t, [np.nan if r.get("return_window") is None else r["return_window"] for r in rows],
            color="C3", label="window mean (stop criterion)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("episode return")
    ax.set_title(os.path.basename(os.path.normpath(run_dir)))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    _save(plt, fig, os.path.join(run_dir, "plot_return.png"), paths)
    if prof is not None:
        phases, per_rank = per_rank_phases(prof)
        fig, ax = plt.subplots(figsize=(8, 1.6 + 0.45 * len(per_rank)))
        left = np.zeros(len(per_rank))
        for k, p in enumerate(phases):
            vals = np.array([r[p] for r in per_rank])
            ax.barh(range(len(per_rank)), vals, left=left, label=p, color=f"C{k}")
            left += vals
        ax.set_yticks(range(len(per_rank)), [f"rank {i}" for i in range(len(per_rank))])
        ax.invert_yaxis()
        ax.set_xlabel("seconds")
        ax.set_title("where each rank's time went")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        _save(plt, fig, os.path.join(run_dir, "plot_timers.png"), paths)
    return paths


def plot_scaling(out_dir: str, rows: list[dict], phases: list[str]) -> list[str]:
    """Write scaling_rate.png, scaling_efficiency.png and scaling_phases.png."""
    plt = _plt()
    ranks = np.array([r["ranks"] for r in rows])
    paths = []
    fig, ax = plt.subplots(figsize=(5.5, 4))
    rate = np.array([r["steps_per_s"] for r in rows])
    ax.plot(ranks, rate, "o-", label="measured")
    ax.plot(ranks, rate[0] * ranks / ranks[0], "--", color="gray", label="ideal")
    ax.set_xticks(ranks)
    ax.set_xlabel("MPI ranks")
    ax.set_ylabel("env steps / s")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(plt, fig, os.path.join(out_dir, "scaling_rate.png"), paths)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(ranks, [r["efficiency"] for r in rows], "o-")
    ax.axhline(1.0, color="gray", ls="--")
    ax.set_ylim(0, 1.15)
    ax.set_xticks(ranks)
    ax.set_xlabel("MPI ranks")
    ax.set_ylabel("parallel efficiency")
    ax.grid(alpha=0.3)
    _save(plt, fig, os.path.join(out_dir, "scaling_efficiency.png"), paths)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    bottom = np.zeros(len(rows))
    x = np.arange(len(rows))
    for k, p in enumerate(phases):
        vals = np.array([r[f"share_{p}"] for r in rows])
        ax.bar(x, vals, bottom=bottom, label=p, color=f"C{k}")
        bottom += vals
    ax.set_xticks(x, [str(r["ranks"]) for r in rows])
    ax.set_xlabel("MPI ranks")
    ax.set_ylabel("share of wall time (median rank)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(plt, fig, os.path.join(out_dir, "scaling_phases.png"), paths)
    return paths


def plot_compare(path: str, series: list[tuple[str, list[dict]]], virtual: bool) -> list[str]:
    """Write one figure of several runs to ``path``: the windowed mean return against
    seconds (left) and env steps (right), one line per ``(label, rows)``; return the legend
    labels as drawn (read back from the figure)."""
    plt = _plt()
    fig, (a_t, a_s) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for k, (label, rows) in enumerate(series):
        y = [np.nan if r.get("return_window") is None else r["return_window"] for r in rows]
        a_t.plot([r["time_s"] for r in rows], y, color=f"C{k % 10}", label=label)
        a_s.plot([r["env_steps"] for r in rows], y, color=f"C{k % 10}", label=label)
        ev = [r for r in rows if r.get("eval_return") is not None]
        if ev:  # deterministic evaluations: dots of the same colour, not in the legend
            a_t.plot([r["time_s"] for r in ev], [r["eval_return"] for r in ev], ".",
                     color=f"C{k % 10}")
            a_s.plot([r["env_steps"] for r in ev], [r["eval_return"] for r in ev], ".",
                     color=f"C{k % 10}")
    a_t.set_xlabel("time (s; virtual s for simulate runs)" if virtual else "time (s)")
    a_s.set_xlabel("env steps")
    a_t.set_ylabel("return (lines: training window mean; dots: deterministic evaluation)")
    for ax in (a_t, a_s):
        ax.grid(alpha=0.3)
    a_s.legend(fontsize=8, loc="best")
    drawn = [t.get_text() for t in a_s.get_legend().get_texts()]
    _save(plt, fig, path, [])
    return drawn
