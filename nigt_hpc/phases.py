"""Where each rank's time went, read from a run's ``profile.json``: shared by ``report``
(the text table) and ``plots`` (the bar chart), so neither imports the other."""

from __future__ import annotations

import numpy as np

from .timers import PHASES


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


def per_rank_phases(prof: dict) -> tuple[list[str], list[dict]]:
    """Return the phase names and, per rank, seconds per phase (``other`` = the rest)."""
    phases = [p for p in PHASES if p != "other"] + ["other"]
    out = []
    for r in prof["ranks"]:
        secs = {p: r["seconds"].get(p, 0.0) for p in phases if p != "other"}
        wall = r.get("wall_s", prof.get("wall_s", 0.0))
        secs["other"] = max(wall - sum(secs.values()), 0.0)
        out.append(secs)
    return phases, out
