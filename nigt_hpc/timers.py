"""Per-rank phase timers: seconds and call counts, cheap enough to leave on."""

from __future__ import annotations

import time

PHASES = ("env_step", "policy", "grad", "delay", "wait", "collective", "idle", "eval", "other")


class Timers:
    """Accumulates seconds and counts per phase; ``add`` is the hot-path entry."""

    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.calls = dict.fromkeys(PHASES, 0)
        self.extra: dict[str, float] = {}

    def add(self, phase: str, seconds: float, calls: int = 1) -> None:
        """Add ``seconds`` (and ``calls``) to ``phase``."""
        self.seconds[phase] += seconds
        self.calls[phase] += calls

    def time(self, phase: str) -> _Span:
        """Return a context manager that times its body into ``phase``."""
        return _Span(self, phase)

    def as_dict(self) -> dict:
        """Return a JSON-ready dict of every phase."""
        return {"seconds": dict(self.seconds), "calls": dict(self.calls), **self.extra}


class _Span:
    __slots__ = ("timers", "phase", "t0")

    def __init__(self, timers: Timers, phase: str):
        self.timers, self.phase = timers, phase

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.timers.add(self.phase, time.perf_counter() - self.t0)
        return False
