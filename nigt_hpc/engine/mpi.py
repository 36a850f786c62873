"""The MPI engine: real ranks, one worker per rank, one Allreduce of the d-vector per round.

A round (ALGORITHMS sections 2-4):

1. every rank computes ``theta_tilde`` from its replicated NIGT state (no broadcast);
2. it samples trajectories at ``theta_tilde`` and adds each accepted ``g_H`` to a local sum;
3. the rule decides acceptance and the end of the round through the control plane
   (Rennala: an RMA counter or messages to rank 0, ``mpi.control`` and planes.py;
   Malenia: Isend/Irecv counts to rank 0; sync: none);
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

from .. import registry
from ..delays import comm_factors, compute_factors, make_delay
from ..rollout import Sampler
from ..timers import Timers
from .common import Exchange, LocalRound, NonFiniteGradients, RoundBook, make_optimizer
from .control import MaleniaCoordinator, StopListener
from .guard import RoundGuard
from .planes import make_plane


class MPIEngine:
    """Runs the outer loop over ``comm``; rank r is global worker r."""

    def __init__(self, cfg: dict, comm: MPI.Comm, sampler: Sampler, theta0: np.ndarray,
                 timers: Timers, on_round=None, stop_flag=None, on_checkpoint=None):
        self.cfg = cfg
        self.stop_flag = stop_flag  # signals.StopFlag, or None
        self.on_checkpoint = on_checkpoint  # rank 0: (arrays, state) -> None
        self.checkpoint_every_s = cfg["run"]["checkpoint_every_s"]
        self.last_checkpoint = 0.0
        self.trace = [] if cfg["run"]["trace"] else None
        self.first_round = 0
        self.t_offset = 0.0  # seconds of earlier runs this one resumes
        self.comm = comm
        self.rank, self.n = comm.Get_rank(), comm.Get_size()
        self.sampler = sampler
        self.timers = timers
        self.on_round = on_round  # rank 0: writes metrics and progress
        self.opt = make_optimizer(cfg, theta0)
        self.d = len(theta0)
        a = cfg["algo"]
        self.algo = registry.of(cfg)
        self.kind = self.algo.control  # "none" (sync), "counter" (Rennala) or "malenia"
        self.agg = None  # this round's rule object (aggregation.py), made by _round
        self.M, self.M_init = a["M"], a["M_init"]
        self.B = a["B"] or math.ceil(a["M"] / self.n)
        self.B_init = a["B"] or math.ceil(a["M_init"] / self.n)
        self.reuse = bool(a["reuse_stale"]) and self.algo.reuse_stale
        self.is_clip = a["is_clip"]
        self.poll_every = cfg["mpi"]["poll_every_steps"]
        window = cfg["run"]["target_window"]
        self.local = LocalRound(self.d, window)
        self.g_one = np.zeros(self.d)  # one trajectory's gradient, checked before use
        # policy.obs_norm: the round's observation moments ride in the same Allreduce
        self.norm = sampler.norm
        self.exchange = Exchange(self.d, self.n, window,
                                 0 if self.norm is None else len(self.norm.moments))
        # rank 0: trained.Evaluator.periodic (run.py sets it when evaluation is asked for)
        self.evaluate = None
        self.book = RoundBook(cfg, self.n)
        self.h = compute_factors(cfg, self.n)
        self.kappa = comm_factors(cfg, self.n, self.d)
        dl = cfg["delays"]
        self.delay = make_delay(cfg, self.h[self.rank])
        self.comm_delay_s = self.kappa[self.rank] * dl["comm_unit_s"]
        self.plane, self.control_probe_s = None, None  # Rennala's control plane
        self.control_name = {"none": "none", "malenia": "malenia"}.get(self.kind)
        if self.kind == "counter":
            self.plane, self.control_probe_s = make_plane(cfg, comm, self.d)
            self.control_name = self.plane.name
        self.guard = RoundGuard(comm, stop_flag, cfg)
        # the state at the last round boundary, which a checkpoint holds: every rank's
        # sampler position (from the round's Allreduce), the round and its clock
        self.boundary_round = -1
        self.boundary_time = 0.0
        self.per_rank = [{"episode": 0, "steps": 0} for _ in range(self.n)]
        if self.kind == "malenia":
            self.ctl = (MaleniaCoordinator(comm, self.n, self.M) if self.rank == 0
                        else StopListener(comm))
        self.t_start = 0.0
        self.rounds = 0

    # ------------------------------------------------------------------ control plane

    def _round_over(self, M: int) -> bool:
        """Return whether this round has ended (one control-plane read)."""
        if self.guard.interrupted():
            return True
        t0 = time.perf_counter()
        if self.plane is not None:
            over = self.plane.poll()
        else:
            over = self.ctl.poll()
        self.timers.add("wait", time.perf_counter() - t0)
        return over

    def _accept(self, rnd: int, M: int) -> bool | None:
        """Report one finished gradient; return whether it enters this round's estimate
        (None: not known yet)."""
        t0 = time.perf_counter()
        if self.plane is not None:  # None: pending, the plane adds it once rank 0 answers
            accepted = self.plane.report(self.g_one)
            self.timers.add("wait", time.perf_counter() - t0)
            return accepted
        self.local.reports += 1
        if self.ctl.poll():
            accepted = False  # Malenia: the round already ended
        else:
            accepted = True
            self.ctl.report(rnd, self.local.grads + 1)
        self.timers.add("wait", time.perf_counter() - t0)
        return accepted

    # ------------------------------------------------------------------ sampling

    def _grad(self, theta: np.ndarray, traj) -> bool:
        """Compute one trajectory's gradient into ``g_one``; return False if not finite."""
        t0 = time.perf_counter()
        g = self.g_one
        g[:] = 0.0
        if traj.resumed:
            self.sampler.add_grad_is(theta, traj, self.is_clip, 1.0, g)
        else:
            self.sampler.add_grad(theta, traj, 1.0, g)
        ok = bool(np.isfinite(g).all())
        self.timers.add("grad", time.perf_counter() - t0)
        if not ok:
            self.local.nonfinite += 1
            if self.local.nonfinite > self.book.max_nonfinite:
                raise NonFiniteGradients(
                    f"worker {self.rank}: {self.local.nonfinite} non-finite gradients in one "
                    f"round (run.max_nonfinite = {self.book.max_nonfinite})")
        return ok

    def _add(self, traj) -> None:
        self.local.g_sum += self.g_one
        self.local.grads += 1
        self.local.episode_done(traj.ret)

    def _sample_sync(self, theta: np.ndarray) -> None:
        rule = self.agg  # this rank counts only its own quota: no messages
        stop = self.guard.interrupted
        on_step = (lambda: self.delay.step(stop)) if self.delay.active else None
        while rule.wants_more(self.rank) and not stop():
            self.delay.begin()
            traj = self.sampler.rollout(theta, poll=lambda _: stop(),
                                        poll_every=self.poll_every, on_step=on_step)
            # per-trajectory model: h_i covers the rollout and its gradient, so the sleep
            # (Delay.finish) comes after both and absorbs their real cost
            ok = traj is not None and self._grad(theta, traj)
            if traj is None or self.delay.finish(stop):  # a stop signal: round abandoned
                self.local.discarded += 1
                break
            if ok:  # a non-finite one is rejected and counted
                rule.on_finished(self.rank)
                self._add(traj)

    def _sample_async(self, rnd: int, theta: np.ndarray, M: int) -> None:
        sampler, local = self.sampler, self.local
        if self.kind == "malenia":
            self.ctl.start_round(rnd, self.agg)
        else:
            self.plane.start_round(rnd, self.agg, local)
        over = lambda *_: self._round_over(M)  # noqa: E731
        on_step = (lambda: self.delay.step(over)) if self.delay.active else None
        while not over():
            self.delay.begin()
            traj = sampler.rollout(theta, poll=over, poll_every=self.poll_every,
                                   on_step=on_step, keep=self.reuse)
            if traj is None:
                if not self.reuse:
                    local.discarded += 1
                break
            ok = self._grad(theta, traj)  # inside h_i: the sleep below absorbs its cost
            if self.delay.finish(over):  # the round ended while this one was "computing"
                local.discarded += 1
                local.episode_done(traj.ret)
                break
            if not ok:
                continue  # rejected before it is reported: exactly M finite ones enter
            accepted = self._accept(rnd, M)
            if accepted:
                self._add(traj)
            elif accepted is None:  # kept by the plane, added when accepted
                local.episode_done(traj.ret)
            else:  # finished after the M-th (Rennala) or after the stop (Malenia)
                local.discarded += 1
                local.episode_done(traj.ret)
                break

    # ------------------------------------------------------------------ one round

    def _reduce(self, rnd: int, weight: float) -> tuple:
        """Allreduce the weighted local sum and statistics; return the decoded round."""
        if self.comm_delay_s > 0.0:
            self.delay.sleep(self.comm_delay_s, self.guard.interrupted)
        if self.guard.aborting:  # an abandoned round still ends every rank's listener
            if self.kind == "malenia" and self.rank == 0:
                self.ctl.force_stop()
            elif self.plane is not None:
                self.plane.force_stop()
        t0 = time.perf_counter()
        self.guard.arrive(rnd)  # arrival skew, timed apart from the collective itself
        if self.kind == "malenia" and self.rank != 0:
            self.ctl.end_round()
        t1 = time.perf_counter()
        elapsed, due = 0.0, False
        if self.rank == 0:
            elapsed = self.t_offset + time.perf_counter() - self.t_start
            due = (self.checkpoint_every_s > 0
                   and elapsed - self.last_checkpoint >= self.checkpoint_every_s)
        stop = self.guard.aborting or (self.stop_flag is not None and self.stop_flag.requested)
        self.local.episode_next = self.sampler.episode
        self.local.steps_total = self.sampler.steps
        buf = self.exchange.pack(self.rank, self.local, weight, elapsed, stop, due,
                                 None if self.norm is None else self.norm.moments)
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        t2 = time.perf_counter()
        self.timers.add("idle", t1 - t0)
        self.timers.add("collective", t2 - t1)
        if self.trace is not None:
            self.trace.append(("idle", t0, t1))
            self.trace.append(("allreduce", t1, t2))
        self.book.collectives += 1
        self.book.comm_bytes += 8 * self.d * self.n  # d-vector payload of every rank
        return self.exchange.unpack()

    def _weight(self) -> float:
        """Return this rank's factor on its local sum: the rule's, for the count it holds
        (the virtual clock's ``weights()`` is the same ``local_weight`` per worker)."""
        return self.agg.local_weight(self.rank, self.local.grads)

    def _round(self, rnd: int) -> bool:
        """Run one round (``rnd = 0`` is the initial direction); return True to stop."""
        M, B = (self.M_init, self.B_init) if rnd == 0 else (self.M, self.B)
        theta_tilde = self.opt.theta if rnd == 0 else self.opt.theta_tilde()
        self.agg = self.algo.make_rule(self.n, M, B)
        self.local.reset()
        self.guard.start_round()
        steps0 = self.sampler.steps
        t0 = time.perf_counter()
        if self.kind == "none":
            self._sample_sync(theta_tilde)
        else:
            self._sample_async(rnd, theta_tilde, M)
        if self.trace is not None:
            self.trace.append(("sample", t0, time.perf_counter()))
        self.local.env_steps = self.sampler.steps - steps0
        g, time_s, stop_requests, due, stats, rets = self._reduce(rnd, self._weight())
        if self.plane is not None:
            self.plane.end_round(stats[:, 6].astype(np.int64))  # every report of the round
        if self.kind == "malenia" and self.rank == 0:
            self.ctl.end_round(stats[:, 0].astype(np.int64))
        if stop_requests:
            # A stop signal reached some rank during this round, and every rank abandoned
            # it: the round is discarded whole (every rank reads the same sum), and the
            # checkpoint is the previous boundary's state, which nothing has changed.
            self.book.should_stop(rnd, time_s, stop_requests)
            self.checkpoint()
            return True
        with self.guard.lock:  # the heartbeat thread may write the boundary checkpoint
            if rnd == 0:
                self.opt.initialise(g)
            else:
                self.opt.step(g)
            self.sampler.end_round()  # a linear baseline refits at round boundaries
            if self.norm is not None:  # every rank merges the same totals: same statistics
                self.norm.merge_moments(self.exchange.extra())
            self.rounds = rnd
            record = self.book.record(rnd, time_s, stats, rets, self.opt.theta,
                                      g=g if self.rank == 0 else None)  # rank 0 writes it
            stop = self.book.should_stop(rnd, time_s, 0)
            if self.evaluate is not None:  # rank 0; also at the last round, for the curve
                t_ev = time.perf_counter()
                record.update(self.evaluate(self.opt, self.norm, rnd, time_s, stop))
                self.timers.add("eval", time.perf_counter() - t_ev)
            if self.on_round is not None:
                self.on_round(record)
            self.boundary_round, self.boundary_time = rnd, time_s
            self.per_rank = [{"episode": int(e), "steps": int(s)}
                             for e, s in zip(stats[:, 8], stats[:, 9])]
        self.guard.end_round()
        if stop or due:  # every rank reads the same flags; rank 0 writes
            self.checkpoint()
        return stop

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> None:
        """Rank 0 writes the state at the last round boundary (no collective: every rank's
        sampler position came with the round's Allreduce)."""
        if self.rank != 0 or self.on_checkpoint is None:
            return
        with self.guard.lock:
            self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        """Write the boundary checkpoint (rank 0; the caller holds ``guard.lock``)."""
        self.last_checkpoint = self.boundary_time
        st = self.opt.state()
        arrays = {k: v for k, v in st.items() if isinstance(v, np.ndarray)}
        state = {"round": self.boundary_round, "time_s": self.boundary_time, "t": st["t"],
                 "ranks": self.n, "algo": self.cfg["algo"]["name"],
                 "book": self.book.state(), "per_rank": self.per_rank}
        if self.norm is not None:
            state["obs_norm"] = self.norm.state()
        self.on_checkpoint(arrays, state)

    def restore(self, arrays: dict, state: dict) -> None:
        """Continue from a checkpoint: the next round is ``state['round'] + 1``."""
        for k, v in arrays.items():
            getattr(self.opt, k)[:] = v
        self.opt.t = state["t"]
        self.book.restore(state["book"])
        if self.norm is not None:
            self.norm.restore(state["obs_norm"])
        self.per_rank = [dict(p) for p in state["per_rank"]]
        mine = self.per_rank[self.rank]
        self.sampler.episode, self.sampler.steps = mine["episode"], mine["steps"]
        self.first_round = state["round"] + 1
        self.rounds = self.boundary_round = state["round"]
        self.t_offset = self.last_checkpoint = self.boundary_time = state["time_s"]

    # ------------------------------------------------------------------ the loop

    def run(self) -> dict:
        """Run rounds until a stop rule holds; return a summary (same on every rank)."""
        if self.rank == 0 and self.on_checkpoint is not None:
            self.guard.write_checkpoint = self._write_checkpoint
        if self.kind == "malenia" and self.rank == 0:
            self.guard.silent = lambda: [j for j in range(self.n)
                                         if self.ctl.rule.M_i[j] == 0]
        self.guard.start()
        # every rank starts its clock together, after warm-up
        self.guard.arrive(-1, "the start of training")
        self.t_start = time.perf_counter()
        rnd = self.first_round
        try:
            stop = self._round(rnd)
            while not stop:
                rnd += 1
                stop = self._round(rnd)
        finally:
            wall = time.perf_counter() - self.t_start
            self.guard.close()
        if self.plane is not None:
            self.plane.free()
        if self.kind == "malenia" and self.rank == 0:
            self.ctl.free()
        t = self.timers
        t.add("env_step", self.sampler.t_env, 0)
        t.add("policy", self.sampler.t_policy, 0)
        t.add("delay", self.delay.slept, 0)
        t.extra["wall_s"] = wall
        return {**self.book.summary(self.rounds, wall), "theta": self.opt.theta,
                "control": self.control_name, "trace": self.trace_events()}

    def trace_events(self) -> list | None:
        """Return this rank's phases as Chrome trace events (µs since the run began)."""
        if self.trace is None:
            return None
        return [{"name": name, "ph": "X", "pid": 0, "tid": self.rank,
                 "ts": (a - self.t_start) * 1e6, "dur": (b - a) * 1e6}
                for name, a, b in self.trace]
