"""Emulated heterogeneity (the paper's time model): compute time h_i per env step and
communication time kappa_i per d-vector exchange, slept for real by worker i; and what an
AFedPG exchange holds the server's one link for on the virtual clock.

Workers are numbered i = 1..n as in the paper; global worker w (0-based) is i = w + 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np


def _factors(model: str, lst: list, n: int, seed: int, d: int) -> np.ndarray:
    """Return the per-worker factor of ``model`` for workers i = 1..n."""
    i = np.arange(1, n + 1, dtype=np.float64)
    if model == "none":
        return np.zeros(n)
    if model == "const":
        return np.ones(n)
    if model == "sqrt":
        return np.sqrt(i)
    if model == "linear":
        return i
    if model == "sqrt_d14":
        return np.sqrt(i) * d**0.25
    if model == "exp":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDE1A]))
        return rng.exponential(1.0, size=n)
    return np.array([lst[w % len(lst)] for w in range(n)], dtype=np.float64)  # from_list


def compute_factors(cfg: dict, n: int) -> np.ndarray:
    """Return h_i for workers i = 1..n (multiples of ``delays.compute_unit_s``).

    ``exp`` draws one h_i ~ Exp(1) per worker from the run seed (inferred: fixed random
    speeds, following the fixed computation model of Tyurin & Richtarik).
    """
    dc = cfg["delays"]
    return _factors(dc["compute"], dc["compute_list"], n, cfg["run"]["seed"], 0)


def comm_factors(cfg: dict, n: int, d: int) -> np.ndarray:
    """Return kappa_i for workers i = 1..n (multiples of ``delays.comm_unit_s``);
    ``sqrt_d14`` is the paper's sqrt(i) * d^(1/4)."""
    dc = cfg["delays"]
    return _factors(dc["comm"], dc["comm_list"], n, cfg["run"]["seed"], d)


# What one AFedPG exchange moves, in d-vectors, as engine/afedpg.py sends it: g_H up, and
# the worker's next lookahead point theta_tilde down (the cheaper of the two downloads the
# method allows, rather than (theta_{k+1}, theta_k): the baseline gets the benefit of the
# doubt, and an exchange then holds the link kappa_i, the paper's kappa per server update).
AFEDPG_UP_VECTORS = 1
AFEDPG_DOWN_VECTORS = 1


def afedpg_transfer_times(kappa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (up_i, down_i): the time worker i's AFedPG upload and download each hold the
    server's link (``delays.server_link = "shared"``), in the units of ``kappa``.

    kappa_i is the time of one d-vector exchange, one d-vector sent and one received: what
    one Allreduce of a d-vector costs worker i (a round pays max_i kappa_i).  The server's
    link carries one transfer at a time, so one d-vector one way holds it kappa_i / 2; the
    upload moves AFEDPG_UP_VECTORS of them, the download AFEDPG_DOWN_VECTORS.
    """
    half = 0.5 * np.asarray(kappa, dtype=np.float64)
    return AFEDPG_UP_VECTORS * half, AFEDPG_DOWN_VECTORS * half


class Delay:
    """Emulates per-step compute time against a running deadline; sleeps in slices.

    Each env step moves the worker's deadline on by ``per_step_s``; the worker sleeps until
    the deadline once at least ``min_sleep_s`` is owed.  The real cost of a step and the
    overshoot of ``time.sleep`` (60-100 µs) are absorbed by later sleeps instead of adding
    up, so a worker's steps take ``h_i * compute_unit_s`` each on average, as in the paper's
    time model (a step whose real cost is larger takes its real time).  After an idle gap
    (the end of a round) the deadline restarts from now.  A sleep stops early, returning
    True, as soon as ``interrupted()`` says the round is over: a straggler told to stop
    mid-sleep stops within one slice.  ``interrupted()`` is asked after a slice only once
    ``poll_s`` has passed since this Delay last asked it: a fast worker sleeps a few hundred
    µs every other step, and asking after each of those sleeps polled 8x more often than
    ``mpi.poll_every_steps = 16`` does (each poll an MPI call under the message plane and on
    the RMA plane's workers, and run on a cache the OS gave to others meanwhile).
    """

    def __init__(self, per_step_s: float, slice_s: float = 1e-3, min_sleep_s: float = 2e-4,
                 per_trajectory_s: float = 0.0, poll_s: float = 1e-3):
        self.per_step_s = float(per_step_s)
        self.per_trajectory_s = float(per_trajectory_s)
        self._t_begin = 0.0
        self.slice_s = slice_s
        self.min_sleep_s = min_sleep_s
        self.deadline = -math.inf
        self.slept = 0.0
        self.poll_s = poll_s
        self._asked = -math.inf  # when interrupted() was last asked after a slice
        self.slices = 0  # sleeps taken (counted, for tests)
        self.polls = 0  # times interrupted() was asked after one

    @property
    def active(self) -> bool:
        """Return whether any per-step delay is configured."""
        return self.per_step_s > 0.0

    def begin(self) -> None:
        """Mark the start of a trajectory (the per-trajectory model counts from here)."""
        self._t_begin = time.perf_counter()

    def finish(self, interrupted: Callable[[], bool] | None) -> bool:
        """Per-trajectory model: sleep until ``per_trajectory_s`` after :meth:`begin`.

        The engines call it after the rollout *and* its gradient, so h_i is the time of one
        stochastic gradient as in the paper and the real cost of both is absorbed.  Return
        True if ``interrupted()`` cut it short, in which case the gradient was still being
        "computed" and is abandoned."""
        if self.per_trajectory_s <= 0.0:
            return False
        return self._sleep_until(self._t_begin + self.per_trajectory_s, interrupted)

    def step(self, interrupted: Callable[[], bool] | None) -> bool:
        """Account one env step; sleep to the deadline when due; return True if interrupted."""
        now = time.perf_counter()
        if self.deadline < now - self.per_step_s:  # behind by a step or more: idle gap
            self.deadline = now
        self.deadline += self.per_step_s
        if self.deadline - now < self.min_sleep_s:
            return False
        return self._sleep_until(self.deadline, interrupted)

    def sleep(self, seconds: float, interrupted: Callable[[], bool] | None = None) -> bool:
        """Sleep ``seconds`` in slices; return True if ``interrupted()`` cut it short."""
        return self._sleep_until(time.perf_counter() + seconds, interrupted)

    def _sleep_until(self, deadline: float, interrupted) -> bool:
        t0 = time.perf_counter()
        try:
            while True:
                left = deadline - time.perf_counter()
                if left <= 0.0:
                    return False
                time.sleep(min(left, self.slice_s))
                self.slices += 1
                if interrupted is None:
                    continue
                now = time.perf_counter()
                if now - self._asked >= self.poll_s:
                    self._asked = now
                    self.polls += 1
                    if interrupted():
                        return True
        finally:
            self.slept += time.perf_counter() - t0


def make_delay(cfg: dict, h_i: float) -> Delay:
    """Return worker i's emulated compute delay: ``h_i * delays.compute_unit_s`` seconds per
    env step (``delays.per = "step"``) or per trajectory (``"trajectory"``, the paper's
    model: one g_H costs h_i whatever the episode's length)."""
    seconds = h_i * cfg["delays"]["compute_unit_s"]
    if cfg["delays"]["per"] == "trajectory":
        return Delay(0.0, per_trajectory_s=seconds)
    return Delay(seconds)
