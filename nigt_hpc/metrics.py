"""Run-directory output on rank 0: metrics.jsonl line by line (and the writers of
``run.log``, logs.py), progress lines, the trace and the final summary."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

from . import __version__
from .rundir import open_nofollow, write_text


class RunOutput:
    """Writes one flushed JSON line per round (nothing is lost on a kill) and, unless
    ``quiet``, a status line every ``progress_every_s`` seconds.

    metrics.jsonl is opened (without following a symlink) at the first record, after
    ``before_open()`` (which writes config.toml): a run that fails before its first round
    leaves no run files behind, so a rerun needs no ``--force``.  ``cfg`` (its
    ``run.log``) chooses the other writers, opened right after; ``resume_round`` is the
    checkpoint's round on a resume (metrics.jsonl is cut back to it in ``before_open``).
    """

    def __init__(self, run_dir: str, quiet: bool, progress_every_s: float, stream=None,
                 before_open=None, cfg: dict | None = None, resume_round: int | None = None):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.fh = None
        self.before_open = before_open
        self.cfg, self.resume_round = cfg, resume_round
        self.writers: list = []
        self.quiet = quiet
        self.every = progress_every_s
        self.stream = stream or sys.stdout
        self.last_print = -math.inf
        self.last = None
        self.idle_fn = None  # rank 0's (idle + wait) / elapsed, for the status line

    def on_round(self, record: dict) -> None:
        """Append ``record`` to metrics.jsonl; print a status line when one is due."""
        self.open()
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()
        for w in self.writers:
            w.write(record)
        self.last = record
        now = time.monotonic()
        if not self.quiet and now - self.last_print >= self.every:
            self.last_print = now
            shown = record if self.idle_fn is None else {**record, "idle_frac": self.idle_fn()}
            self.stream.write(status_line(shown) + "\n")
            self.stream.flush()

    def open(self) -> None:
        """Write the run's first files (``before_open``) and open metrics.jsonl, once."""
        if self.fh is None:
            if self.before_open is not None:
                self.before_open()
            self.fh = open_nofollow(self.path, "a")
            if self.cfg is not None:
                from .logs import make_writers

                self.writers = make_writers(self.cfg, self.run_dir, self.resume_round)

    def flush(self) -> int:
        """Flush every writer (a checkpoint is due); return metrics.jsonl's byte offset."""
        self.open()
        self.fh.flush()
        for w in self.writers:
            if hasattr(w, "flush"):
                w.flush()
        return self.fh.tell()

    def close(self) -> None:
        """Flush and close metrics.jsonl and the other writers (if a round was written)."""
        if self.fh is not None:
            self.fh.close()
        for w in self.writers:
            w.close()


def _fmt(x, spec=".1f") -> str:
    return "-" if x is None else format(x, spec)


def status_line(rec: dict) -> str:
    """Return one human-readable line for a metrics record."""
    t = rec["time_s"]
    rate = rec["env_steps"] / t if t > 0 else 0.0
    line = (f"round {rec['round']:>5}  t {t:8.2f}s  steps {rec['env_steps']:>10,}"
            f"  ({rate / 1e3:7.1f}k/s)  return {_fmt(rec['return_mean']):>8}"
            f"  window {_fmt(rec.get('return_window')):>8}")
    if rec.get("idle_frac") is not None:
        line += f"  idle {100 * rec['idle_frac']:4.1f}%"
    return line


def write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON atomically, following no symlink (rundir.write_atomic)."""
    write_text(path, json.dumps(obj, indent=1) + "\n")


def max_rss_mb() -> float:
    """Return this process's peak resident set size in MiB (Linux reports KiB)."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / 2**20


def truncate(path: str, offset: int) -> None:
    """Cut ``path`` back to ``offset`` bytes (never more than its size, checked on resume):
    rounds after the checkpoint are redone."""
    with open_nofollow(path, "r+b") as fh:
        fh.truncate(offset)


def trace_document(traces: list) -> dict:
    """Return a Chrome/Perfetto trace with one track per rank."""
    events = []
    for rank, evs in enumerate(traces):
        events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": rank,
                       "args": {"name": f"rank {rank}"}})
        events.extend(evs or [])
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def summary_text(s: dict, run_dir: str, profiles: list, steps_before: int | None = None) -> str:
    """Return the final summary printed by rank 0.

    After a resume (``steps_before``: the checkpoint's env steps) the totals are the run's,
    the seconds and the rate this job's own: its steps over its time.
    """
    own = s["env_steps"] - (steps_before or 0)
    rate = own / s["wall_s"] if s["wall_s"] > 0 else 0.0
    win = "-" if s["return_window"] is None else f"{s['return_window']:.1f}"
    compile_s = max(p.get("compile_s", 0.0) for p in profiles)
    job = "" if steps_before is None else f" ({own:,} of them in this job)"
    return (f"{'stopped' if s.get('signalled') else 'done'}: {s['stop_reason']} after "
            f"{s['rounds']} rounds, {s['env_steps']:,} env "
            f"steps{job}, {s['episodes']:,} episodes in {s['wall_s']:.2f} s of training"
            f"{' in this job' if job else ''} "
            f"({rate:,.0f} steps/s; kernel warm-up {compile_s:.2f} s excluded)\n"
            f"      mean return of the last episodes: {win}\n"
            f"      run directory: {run_dir}"
            + (f"\n      resume with: nigt-hpc train --resume {run_dir}"
               if s.get("signalled") else ""))


def _git_hash() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict:
    """Return the versions and machine facts a run records for reproducibility."""
    import gymnasium
    import numba
    from mpi4py import MPI

    v = {"nigt_hpc": __version__, "python": platform.python_version(),
         "numpy": np.__version__, "numba": numba.__version__,
         "gymnasium": gymnasium.__version__,
         "mpi": MPI.Get_library_version().splitlines()[0].strip(),
         "machine": platform.machine(), "processor": platform.processor() or "",
         "git": _git_hash()}
    try:
        import mujoco

        v["mujoco"] = mujoco.__version__
    except ImportError:
        pass
    return v
