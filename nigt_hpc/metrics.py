"""Run-directory output on rank 0: metrics.jsonl line by line, progress lines, summary."""

from __future__ import annotations

import json
import math
import os
import sys
import time

from .rundir import open_nofollow, write_text


class RunOutput:
    """Writes one flushed JSON line per round (nothing is lost on a kill) and, unless
    ``quiet``, a status line every ``progress_every_s`` seconds.

    metrics.jsonl is opened (without following a symlink) at the first record, after
    ``before_open()`` (which writes config.toml): a run that fails before its first round
    leaves no run files behind, so a rerun needs no ``--force``.
    """

    def __init__(self, run_dir: str, quiet: bool, progress_every_s: float, stream=None,
                 before_open=None):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.fh = None
        self.before_open = before_open
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

    def close(self) -> None:
        """Flush and close metrics.jsonl (if a round was written)."""
        if self.fh is not None:
            self.fh.close()


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
