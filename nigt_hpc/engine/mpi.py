"""The MPI engine: real ranks, one worker per rank, one Allreduce of the d-vector per round.

A round (ALGORITHMS sections 2-4):

1. every rank computes ``theta_tilde`` from its replicated NIGT state (no broadcast);
2. it samples trajectories at ``theta_tilde`` and adds each accepted ``g_H`` to a local sum;
3. the rule decides acceptance and the end of the round through the control plane
   (Rennala: an RMA counter; Malenia: Isend/Irecv counts to rank 0; sync: none);
4. a rank learns of the end within one poll interval (``mpi.poll_every_steps`` env steps,
   or one slice of an emulated-delay sleep) and abandons, or with ``algo.reuse_stale``
   keeps, its in-flight trajectory;
5. one ``Allreduce`` of ``weight_i * local_sum_i`` (carrying the round's small statistics
   too) gives ``g`` on every rank; every rank applies the same outer step to the same bits.
"""

from __future__ import annotations

import math
import time

import numpy as np
from mpi4py import MPI

from ..aggregation import AggregateSync
from ..delays import Delay, comm_factors, compute_factors
from ..rollout import Sampler
from ..timers import Timers
from .common import Exchange, LocalRound, RoundBook, make_optimizer
from .control import MaleniaCoordinator, RMACounter, StopListener

RULES = {"sync_nigt": "sync", "sync_pg": "sync", "rennala_nigt": "rennala",
         "rennala_pg": "rennala", "malenia_nigt": "malenia"}


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
        a = cfg["algo"]
        self.rule = RULES[a["name"]]
        self.M, self.M_init = a["M"], a["M_init"]
        self.B = a["B"] or math.ceil(a["M"] / self.n)
        self.B_init = a["B"] or math.ceil(a["M_init"] / self.n)
        self.reuse = bool(a["reuse_stale"]) and self.rule != "sync"
        self.is_clip = a["is_clip"]
        self.poll_every = cfg["mpi"]["poll_every_steps"]
        window = cfg["run"]["target_window"]
        self.local = LocalRound(self.d, window)
        self.exchange = Exchange(self.d, self.n, window)
        self.book = RoundBook(cfg, self.n)
        self.h = compute_factors(cfg, self.n)
        self.kappa = comm_factors(cfg, self.n, self.d)
        dl = cfg["delays"]
        self.delay = Delay(self.h[self.rank] * dl["compute_unit_s"])
        self.comm_delay_s = self.kappa[self.rank] * dl["comm_unit_s"]
        self.counter = RMACounter(comm) if self.rule == "rennala" else None
        self.base = 0  # the Rennala counter's value when this round began
        if self.rule == "malenia":
            self.ctl = (MaleniaCoordinator(comm, self.n, self.M) if self.rank == 0
                        else StopListener(comm))
        self.t_start = 0.0
        self.rounds = 0

    # ------------------------------------------------------------------ control plane

    def _round_over(self, M: int) -> bool:
        """Return whether this round has ended (one control-plane read)."""
        t0 = time.perf_counter()
        if self.rule == "rennala":
            over = self.counter.read() - self.base >= M
        else:
            over = self.ctl.poll()
        self.timers.add("wait", time.perf_counter() - t0)
        return over

    def _accept(self, rnd: int, M: int) -> bool:
        """Report one finished gradient; return whether it enters this round's estimate."""
        t0 = time.perf_counter()
        self.local.reports += 1
        if self.rule == "rennala":
            accepted = self.counter.fetch_add(1) - self.base < M  # exactly M accepted
        elif self.ctl.poll():
            accepted = False  # Malenia: the round already ended
        else:
            accepted = True
            self.ctl.report(rnd, self.local.grads + 1)
        self.timers.add("wait", time.perf_counter() - t0)
        return accepted

    # ------------------------------------------------------------------ sampling

    def _add(self, theta: np.ndarray, traj) -> None:
        t0 = time.perf_counter()
        if traj.resumed:
            self.sampler.add_grad_is(theta, traj, self.is_clip, 1.0, self.local.g_sum)
        else:
            self.sampler.add_grad(theta, traj, 1.0, self.local.g_sum)
        self.timers.add("grad", time.perf_counter() - t0)
        self.local.grads += 1
        self.local.episode_done(traj.ret)

    def _sample_sync(self, theta: np.ndarray, B: int) -> None:
        rule = AggregateSync(self.n, B)
        on_step = (lambda: self.delay.step(None)) if self.delay.active else None
        while rule.wants_more(self.rank):
            traj = self.sampler.rollout(theta, on_step=on_step)
            rule.on_finished(self.rank)
            self._add(theta, traj)

    def _sample_async(self, rnd: int, theta: np.ndarray, M: int) -> None:
        sampler, local = self.sampler, self.local
        if self.rule == "malenia":
            self.ctl.start_round(rnd)
        over = lambda *_: self._round_over(M)  # noqa: E731
        on_step = (lambda: self.delay.step(over)) if self.delay.active else None
        while not over():
            traj = sampler.rollout(theta, poll=over, poll_every=self.poll_every,
                                   on_step=on_step, keep=self.reuse)
            if traj is None:
                if not self.reuse:
                    local.discarded += 1
                break
            if self._accept(rnd, M):
                self._add(theta, traj)
            else:  # finished after the M-th (Rennala) or after the stop (Malenia)
                local.discarded += 1
                local.episode_done(traj.ret)
                break

    # ------------------------------------------------------------------ one round

    def _reduce(self, weight: float) -> tuple:
        """Allreduce the weighted local sum and statistics; return the decoded round."""
        if self.comm_delay_s > 0.0:
            self.delay.sleep(self.comm_delay_s)
        if self.rule == "malenia" and self.rank != 0:
            self.ctl.end_round()
        elapsed = time.perf_counter() - self.t_start if self.rank == 0 else 0.0
        buf = self.exchange.pack(self.rank, self.local, weight, elapsed, False)
        t0 = time.perf_counter()
        self.comm.Barrier()  # arrival skew, timed apart from the collective itself
        t1 = time.perf_counter()
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        t2 = time.perf_counter()
        self.timers.add("idle", t1 - t0)
        self.timers.add("collective", t2 - t1)
        self.book.collectives += 1
        self.book.comm_bytes += 8 * self.d * self.n  # d-vector payload of every rank
        return self.exchange.unpack()

    def _weight(self, M: int, B: int) -> float:
        """Return this rank's factor on its local sum (ALGORITHMS sections 2-4)."""
        if self.rule == "sync":
            return 1.0 / (self.n * B)
        if self.rule == "rennala":
            return 1.0 / M
        return 1.0 / (self.n * self.local.grads) if self.local.grads else 0.0

    def _round(self, rnd: int) -> bool:
        """Run one round (``rnd = 0`` is the initial direction); return True to stop."""
        M, B = (self.M_init, self.B_init) if rnd == 0 else (self.M, self.B)
        theta_tilde = self.opt.theta if rnd == 0 else self.opt.theta_tilde()
        self.local.reset()
        steps0 = self.sampler.steps
        if self.rule == "sync":
            self._sample_sync(theta_tilde, B)
        else:
            self._sample_async(rnd, theta_tilde, M)
        self.local.env_steps = self.sampler.steps - steps0
        g, time_s, stop_requests, stats, rets = self._reduce(self._weight(M, B))
        if self.counter is not None:
            self.base += int(stats[:, 6].sum())  # every fetch_add of this round
        if self.rule == "malenia" and self.rank == 0:
            self.ctl.end_round(stats[:, 0].astype(np.int64))
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
        try:
            stop = self._round(0)
            while not stop:
                rnd += 1
                stop = self._round(rnd)
        finally:
            wall = time.perf_counter() - self.t_start
        if self.counter is not None:
            self.counter.free()
        if self.rule == "malenia" and self.rank == 0:
            self.ctl.free()
        t = self.timers
        t.add("env_step", self.sampler.t_env, 0)
        t.add("policy", self.sampler.t_policy, 0)
        t.add("delay", self.delay.slept, 0)
        t.extra["wall_s"] = wall
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
