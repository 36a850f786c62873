"""AFedPG baseline (ALGORITHMS section 4): a parameter-server loop with no Allreduce.

Rank 0 is the server and samples nothing; ranks 1..n-1 are workers (global worker index
``rank - 1``).  A worker samples one trajectory at its lookahead point
``theta_tilde = theta_k + ((1-eta)/eta)(theta_k - theta_{k-1})``, sends ``g_H`` (d floats)
to the server, and waits for fresh parameters.  On every arrival the server updates at once,
``d <- (1-eta) d + eta g``, ``theta_{k+1} = theta_k + alpha d/||d||``, and sends
``(theta_{k+1}, theta_k)`` (2d floats) back to that worker only.  The per-gradient traffic
is the point of the comparison: it is not batched.  One metrics record per server update.

Choices (inferred): constant eta and alpha (the delay-dependent schedule is unpublished);
the first arrival is the initial direction ``d_0`` (round 0).
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from .. import kernels as K
from ..delays import Delay, comm_factors, compute_factors
from ..nigt import NIGT, extrapolate
from ..rollout import Sampler
from ..timers import Timers
from .common import RoundBook, one_gradient_stats

TAG_GRAD = 21
TAG_PARAMS = 22
HDR = 4  # worker -> server header: version, env steps, episodes (1), return


class AFedPGEngine:
    """Server on rank 0, workers on every other rank of ``comm``."""

    def __init__(self, cfg: dict, comm: MPI.Comm, sampler: Sampler | None,
                 theta0: np.ndarray, timers: Timers, on_round=None, stop_flag=None,
                 on_checkpoint=None):
        self.cfg, self.comm, self.timers, self.on_round = cfg, comm, timers, on_round
        self.stop_flag, self.on_checkpoint = stop_flag, on_checkpoint
        self.k0 = 0  # server updates done by the runs this one resumes
        self.t_offset = 0.0
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.n = self.size - 1
        self.sampler = sampler
        self.d = len(theta0)
        self.eta = cfg["algo"]["eta"]
        # the server's update is the NIGT step: d <- (1-eta) d + eta g, normalised step alpha
        self.opt = NIGT(theta0, self.eta, cfg["algo"]["alpha"])
        self.book = RoundBook(cfg, self.n)
        self.window = cfg["run"]["target_window"]
        h = compute_factors(cfg, self.n)
        kappa = comm_factors(cfg, self.n, self.d)
        w = max(self.rank - 1, 0)
        self.delay = Delay(h[w] * cfg["delays"]["compute_unit_s"])
        self.comm_delay_s = kappa[w] * cfg["delays"]["comm_unit_s"]
        self.staleness: list[int] = []

    # ------------------------------------------------------------------ server

    def _serve(self) -> dict:
        d, n, opt = self.d, self.n, self.opt
        params = np.empty(2 + 2 * d)
        msg = np.empty(HDR + d)
        status = MPI.Status()
        t_start = time.perf_counter()

        def send_params(dest: int, go: bool, k: int) -> None:
            params[0], params[1] = (1.0 if go else 0.0), k
            params[2 : 2 + d], params[2 + d :] = opt.theta, opt.theta_prev
            self.comm.Send(params, dest=dest, tag=TAG_PARAMS)

        k = self.k0
        for j in range(1, self.size):
            send_params(j, True, k)
        outstanding = n  # workers that have not yet been told to stop
        stopping = False
        while outstanding:
            t0 = time.perf_counter()
            self.comm.Recv(msg, source=MPI.ANY_SOURCE, tag=TAG_GRAD, status=status)
            self.timers.add("wait", time.perf_counter() - t0)
            j = status.Get_source()
            if stopping:
                send_params(j, False, k)
                outstanding -= 1
                continue
            version, steps, _, ret = msg[:HDR]  # one episode per gradient
            g = msg[HDR:]
            self.staleness.append(k - int(version))
            if k == 0:
                opt.initialise(g)  # d_0 (inferred: the first arrival)
            else:
                opt.step(g)
            self.book.comm_bytes += 8 * d + 16 * d  # g up, (theta, theta_prev) down
            elapsed = self.t_offset + time.perf_counter() - t_start
            rets = [[] for _ in range(n)]
            rets[j - 1] = [ret]
            record = self.book.record(k, elapsed, one_gradient_stats(n, j - 1, steps, ret), rets,
                                      opt.theta)
            record["staleness"] = self.staleness[-1]
            if self.on_round is not None:
                self.on_round(record)
            signalled = self.stop_flag is not None and self.stop_flag.requested
            stop = self.book.should_stop(k, elapsed, int(signalled))
            k += 1
            if stop:
                stopping = True
                send_params(j, False, k)
                outstanding -= 1
            else:
                send_params(j, True, k)
        self.rounds = k - 1
        self.wall = time.perf_counter() - t_start
        self.final = {"k": k, "time_s": self.t_offset + self.wall}
        return opt.theta

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        d = self.d
        params = np.empty(2 + 2 * d)
        msg = np.empty(HDR + d)
        # theta_tilde in one buffer on a cache line, as the kernels want theta (the outer
        # steps' arrays are; the sampler would otherwise copy a fresh array each time)
        theta_tilde = K.aligned_empty(d)
        on_step = (lambda: self.delay.step(None)) if self.delay.active else None
        t0 = time.perf_counter()
        self.comm.Recv(params, source=0, tag=TAG_PARAMS)
        self.timers.add("wait", time.perf_counter() - t0)
        while params[0] == 1.0:
            theta, theta_prev = params[2 : 2 + d], params[2 + d :]
            extrapolate(theta, theta_prev, self.eta, theta_tilde)
            steps0 = self.sampler.steps
            traj = self.sampler.rollout(theta_tilde, on_step=on_step)
            msg[HDR:] = 0.0
            t0 = time.perf_counter()
            self.sampler.add_grad(theta_tilde, traj, 1.0, msg[HDR:])
            self.timers.add("grad", time.perf_counter() - t0)
            msg[:HDR] = (params[1], self.sampler.steps - steps0, 1.0, traj.ret)
            if self.comm_delay_s > 0.0:
                self.delay.sleep(self.comm_delay_s)
            t0 = time.perf_counter()
            self.comm.Send(msg, dest=0, tag=TAG_GRAD)
            self.comm.Recv(params, source=0, tag=TAG_PARAMS)
            self.timers.add("wait", time.perf_counter() - t0)

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self) -> None:
        """Write the end-of-run checkpoint: server state plus every worker's episode index
        (collective).  AFedPG is checkpointed when it stops (by a limit or a signal)."""
        mine = None
        if self.sampler is not None:
            mine = {"episode": self.sampler.episode, "steps": self.sampler.steps}
        per_rank = self.comm.gather(mine, root=0)
        if self.rank == 0 and self.on_checkpoint is not None:
            f = self.final
            arrays = {"theta": self.opt.theta, "theta_prev": self.opt.theta_prev,
                      "direction": self.opt.d}
            state = {"round": f["k"] - 1, "k": f["k"], "time_s": f["time_s"],
                     "ranks": self.size, "algo": "afedpg", "book": self.book.state(),
                     "per_rank": per_rank, "staleness": self.staleness}
            self.on_checkpoint(arrays, state)

    def restore(self, arrays: dict, state: dict) -> None:
        """Continue from a checkpoint: the server resumes at update ``state['k']``."""
        self.opt.theta[:] = arrays["theta"]
        self.opt.theta_prev[:] = arrays["theta_prev"]
        self.opt.d[:] = arrays["direction"]
        self.k0 = state["k"]
        self.t_offset = state["time_s"]
        self.book.restore(state["book"])
        self.staleness = list(state["staleness"])
        mine = state["per_rank"][self.rank]
        if self.sampler is not None and mine is not None:
            self.sampler.episode, self.sampler.steps = mine["episode"], mine["steps"]

    # ------------------------------------------------------------------ both

    def run(self) -> dict:
        """Run until the server's stop rule holds; return a summary (theta from the server)."""
        self.comm.Barrier()
        t_start = time.perf_counter()
        theta = None
        if self.rank == 0:
            theta = self._serve()
        else:
            self._work()
        wall = time.perf_counter() - t_start
        summary = None
        if self.rank == 0:
            summary = {**self.book.summary(self.rounds, self.wall),
                       "staleness_mean": float(np.mean(self.staleness)) if self.staleness
                       else 0.0}
        summary = self.comm.bcast(summary, root=0)
        theta = self.comm.bcast(theta, root=0)
        summary["theta"] = theta
        summary["trace"] = None
        self._checkpoint()
        t = self.timers
        if self.sampler is not None:
            t.add("env_step", self.sampler.t_env, 0)
            t.add("policy", self.sampler.t_policy, 0)
        t.add("delay", self.delay.slept, 0)
        t.extra["wall_s"] = wall
        return summary
