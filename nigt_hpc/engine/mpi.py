"""The MPI engine: real ranks, one worker per rank, one Allreduce of the d-vector per round.

This version drives the synchronous rule (``sync_nigt``, ``sync_pg``): every rank samples
``B`` trajectories at ``theta_tilde``, weights its local sum by the rule's factor, and one
``Allreduce`` (which also carries the round's small statistics) yields ``g`` on every rank.
Every rank then applies the same outer step to the same bits, so ``theta`` stays identical.
"""

from __future__ import annotations

import math
import time

import numpy as np
from mpi4py import MPI

from ..aggregation import AggregateSync
from ..rollout import Sampler
from ..timers import Timers
from .common import Exchange, LocalRound, RoundBook, make_optimizer


class MPIEngine:
    """Runs the outer loop over ``comm``; rank r is global worker r."""

    def __init__(self, cfg: dict, comm: MPI.Comm, sampler: Sampler, theta0: np.ndarray,
                 timers: Timers, on_round=None):
        self.cfg = cfg
        self.comm = comm
        self.rank, self.n = comm.Get_rank(), comm.Get_size()
        self.sampler = sampler
        self.timers = timers
        self.on_round = on_round  # rank 0: writes metrics and progress
        self.opt = make_optimizer(cfg, theta0)
        self.d = len(theta0)
        window = cfg["run"]["target_window"]
        self.local = LocalRound(self.d, window)
        self.exchange = Exchange(self.d, self.n, window)
        self.book = RoundBook(cfg, self.n)
        a = cfg["algo"]
        self.B = a["B"] or math.ceil(a["M"] / self.n)
        self.B_init = a["B"] or math.ceil(a["M_init"] / self.n)
        self.t_start = 0.0
        self.rounds = 0

    # ------------------------------------------------------------------ one round

    def _sample_sync(self, theta: np.ndarray, B: int) -> AggregateSync:
        """Sample this rank's B gradients at ``theta`` into the local sum."""
        rule = AggregateSync(self.n, B)
        local, sampler = self.local, self.sampler
        local.reset()
        steps0 = sampler.steps
        while rule.wants_more(self.rank):
            traj = sampler.rollout(theta)
            t0 = time.perf_counter()
            sampler.add_grad(theta, traj, 1.0, local.g_sum)
            self.timers.add("grad", time.perf_counter() - t0)
            rule.on_finished(self.rank)
            local.grads += 1
            local.episode_done(traj.ret)
        local.env_steps = sampler.steps - steps0
        return rule

    def _reduce(self, weight: float) -> tuple:
        """Allreduce the weighted local sum and statistics; return the decoded round."""
        elapsed = time.perf_counter() - self.t_start if self.rank == 0 else 0.0
        buf = self.exchange.pack(self.rank, self.local, weight, elapsed, False)
        t0 = time.perf_counter()
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        self.timers.add("collective", time.perf_counter() - t0)
        self.book.collectives += 1
        self.book.comm_bytes += 8 * self.d * self.n  # d-vector payload of every rank
        return self.exchange.unpack()

    def _round(self, rnd: int, B: int) -> bool:
        """Run one round (``rnd = 0`` is the initial direction); return True to stop."""
        theta_tilde = self.opt.theta if rnd == 0 else self.opt.theta_tilde()
        rule = self._sample_sync(theta_tilde, B)
        g, time_s, stop_requests, stats, rets = self._reduce(float(rule.weights()[self.rank]))
        if rnd == 0:
            self.opt.initialise(g)
        else:
            self.opt.step(g)
        self.rounds = rnd
        record = self.book.record(rnd, time_s, stats, rets, self.opt.theta)
        stop = self.book.should_stop(rnd, time_s, stop_requests)
        if self.on_round is not None:
            self.on_round(record)
        return stop

    # ------------------------------------------------------------------ the loop

    def run(self) -> dict:
        """Run rounds until a stop rule holds; return a summary (same on every rank)."""
        self.comm.Barrier()  # every rank starts its clock together, after warm-up
        self.t_start = time.perf_counter()
        rnd = 0
        stop = self._round(0, self.B_init)
        while not stop:
            rnd += 1
            stop = self._round(rnd, self.B)
        wall = time.perf_counter() - self.t_start
        self.timers.add("env_step", self.sampler.t_env, 0)
        self.timers.add("policy", self.sampler.t_policy, 0)
        return {
            "rounds": self.rounds,
            "env_steps": self.book.env_steps,
            "episodes": self.book.episodes_total,
            "wall_s": wall,
            "return_window": float(np.mean(self.book.window)) if self.book.window else None,
            "best_window": self.book.best_window if self.book.best_window > -math.inf
            else None,
            "stop_reason": self.book.stop_reason,
            "theta": self.opt.theta,
        }
