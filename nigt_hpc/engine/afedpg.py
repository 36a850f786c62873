"""AFedPG baseline (ALGORITHMS section 4): a parameter-server loop with no Allreduce.

Rank 0 is the server and samples nothing; ranks 1..n-1 are workers (global worker index
``rank - 1``).  A worker samples one trajectory at its lookahead point
``theta_tilde = theta_k + ((1-eta)/eta)(theta_k - theta_{k-1})``, sends ``g_H`` (d floats)
to the server, and waits for fresh parameters.  On every arrival the server updates at once,
``d <- (1-eta) d + eta g``, ``theta_{k+1} = theta_k + alpha d/||d||``, and sends that
worker's next lookahead point ``theta_tilde`` (d floats; computed on the server with the
same ``extrapolate``, so the bits are the worker's own) back to that worker only.  The
per-gradient traffic is the point of the comparison: it is not batched.  One metrics record
per server update.

Choices (inferred): constant eta and alpha (the delay-dependent schedule is unpublished);
the first arrival is the initial direction ``d_0`` (round 0).

The protocol, which no fault can hang: every worker message carries a header
``[kind, version, env steps, return, next episode, total steps, non-finite]``; ``kind`` is a
gradient, a stop request (this worker got a stop signal) or a goodbye.  The server keeps one
``Irecv`` posted per worker and tests them, watching how long each worker has been silent;
it answers each gradient with parameters, and when it stops (a limit, its own signal, a
worker's stop request) it sends each worker one short stop message.  A worker keeps one
``Irecv`` for the server's next message posted and tests it at every poll of its rollout, so
a stop ends its trajectory within a poll; it then says goodbye, and the server ends when
every worker has.  A non-finite gradient is rejected and counted (``run.max_nonfinite``);
the worker gets the unchanged parameters back.  The server checkpoints every
``run.checkpoint_every_s`` from its own state and each worker's position in its last
header, with no collective.
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from .. import kernels as K
from ..delays import afedpg_transfer_times, comm_factors, compute_factors, make_delay
from ..nigt import extrapolate
from ..obsnorm import make_obsnorm
from ..rollout import Sampler
from ..timers import Timers
from .common import NonFiniteGradients, RoundBook, make_optimizer, one_gradient_stats
from .guard import RoundGuard

TAG_GRAD = 21
TAG_PARAMS = 22
HDR = 7  # worker -> server header (see the module docstring)
GRAD, STOP_REQUEST, BYE = 0, 1, 2


class AFedPGEngine:
    """Server on rank 0, workers on every other rank of ``comm``."""

    def __init__(self, cfg: dict, comm: MPI.Comm, sampler: Sampler | None,
                 theta0: np.ndarray, timers: Timers, on_round=None, stop_flag=None,
                 on_checkpoint=None, obs_dim: int = 0):
        self.cfg, self.comm, self.timers, self.on_round = cfg, comm, timers, on_round
        self.stop_flag, self.on_checkpoint = stop_flag, on_checkpoint
        self.checkpoint_every_s = cfg["run"]["checkpoint_every_s"]
        self.poll_every = cfg["mpi"]["poll_every_steps"]
        self.k0 = 0  # server updates done by the runs this one resumes
        self.t_offset = 0.0
        self.t_start = 0.0
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.n = self.size - 1
        self.sampler = sampler
        self.d = len(theta0)
        # policy.obs_norm: the server's statistics merge each gradient's observation moments
        # and travel down with the parameters; a worker's moments come up with its gradient
        self.norm = (sampler.norm if sampler is not None
                     else make_obsnorm(cfg, obs_dim) if obs_dim else None)
        self.k_norm = 0 if self.norm is None else 1 + 2 * self.norm.dim
        self.evaluate = None  # rank 0: trained.Evaluator.periodic (run.py), when asked for
        self.eta = cfg["algo"]["eta"]
        # the server's update is the registry's outer step for afedpg, NIGT: d <- (1-eta) d
        # + eta g, normalised step alpha (the lookahead below needs its theta_prev)
        self.opt = make_optimizer(cfg, theta0)
        self.book = RoundBook(cfg, self.n)
        h = compute_factors(cfg, self.n)
        kappa = comm_factors(cfg, self.n, self.d)
        w = max(self.rank - 1, 0)
        self.delay = make_delay(cfg, h[w])
        # Emulated transfers are paid where the real cost is.  shared: on the server, whose
        # one link serialises them (the gradient's upload before the update, the download
        # of (theta, theta_prev) before the reply; the times of the virtual clock's model);
        # parallel: by each worker before its send, overlapping the others.
        kappa_s = kappa * cfg["delays"]["comm_unit_s"]
        self.shared_link = cfg["delays"]["server_link"] == "shared"
        self.up_s, self.down_s = afedpg_transfer_times(kappa_s)
        self.comm_delay_s = 0.0 if self.shared_link else kappa_s[w]
        self.staleness_sum = 0
        self.staleness_n = 0
        self.last_staleness = 0
        self.guard = RoundGuard(comm, stop_flag, cfg)
        # rank r's sampler position as of its last message (rank 0 samples nothing)
        self.per_rank: list = [None] + [{"episode": 0, "steps": 0} for _ in range(self.n)]
        self.k = 0
        self.rounds = 0
        self.last_checkpoint = 0.0

    # ------------------------------------------------------------------ server

    def _wait_any(self, reqs: list, silent_since: list, alive: set, signals: bool) -> int:
        """Return the index of a completed receive, or -1 for a stop signal (when
        ``signals``), watching how long each live worker has been silent."""
        spins = 0
        while True:
            idx, flag = MPI.Request.Testany(reqs)
            if flag and idx != MPI.UNDEFINED:
                return idx
            now = self.guard.beat = time.monotonic()
            if signals and self.stop_flag is not None and self.stop_flag.requested:
                return -1
            bound = self.guard.bound()
            for j in alive:
                # a message that arrived while the server was busy is not silence
                if now - silent_since[j] > bound and not reqs[j - 1].Get_status():
                    self.guard.fatal(f"rank {j} (an AFedPG worker) sent nothing for "
                                     f"{now - silent_since[j]:.0f} s (stuck in an env step, "
                                     "stopped, or gone?)", self.guard._code(), name_self=False)
            spins += 1
            if spins > 200:
                time.sleep(0.0002)

    def _serve(self) -> None:
        d, opt, comm = self.d, self.opt, self.comm
        kn = self.k_norm
        params = [np.empty(2 + d + kn) for _ in range(self.size)]
        stop_msg = [np.zeros(2) for _ in range(self.size)]
        sends: list = [MPI.REQUEST_NULL] * self.size
        msgs = [np.empty(HDR + d + kn) for _ in range(self.size)]
        reqs = [comm.Irecv(msgs[j], source=j, tag=TAG_GRAD) for j in range(1, self.size)]
        alive = set(range(1, self.size))
        told = set()
        now = time.monotonic()
        silent_since = [now] * self.size
        last_msg = [now] * self.size
        stopping = False

        def transfer(seconds: float) -> None:
            if seconds > 0.0:
                self.delay.sleep(seconds, self._beat)

        def send_params(j: int, charge: bool = True) -> None:
            transfer(self.down_s[j - 1] if self.shared_link and charge else 0.0)
            sends[j].Wait()  # the previous copy was received before this worker answered
            p = params[j]
            p[0], p[1] = 1.0, self.k
            extrapolate(opt.theta, opt.theta_prev, self.eta, p[2 : 2 + d])
            if kn:
                self.norm.pack(p[2 + d :])
            sends[j] = comm.Isend(p, dest=j, tag=TAG_PARAMS)

        def stop_all(signalled: bool) -> None:
            nonlocal stopping
            if not stopping and signalled:
                self.book.should_stop(self.k, self._elapsed(), 1)
            stopping = True
            self.guard.aborting = True  # every worker now owes a goodbye within the grace
            for j in alive:
                silent_since[j] = time.monotonic()
            for j in sorted(alive - told):
                sends[j].Wait()
                stop_msg[j][:] = (0.0, self.k)
                sends[j] = comm.Isend(stop_msg[j], dest=j, tag=TAG_PARAMS)
                told.add(j)

        self.k = self.k0
        for j in range(1, self.size):
            send_params(j, charge=False)  # theta_0 is on every worker at the start, free
        while alive:
            t0 = time.perf_counter()
            idx = self._wait_any(reqs, silent_since, alive, not stopping)
            self.timers.add("wait", time.perf_counter() - t0)
            if idx < 0:  # a stop signal on the server
                stop_all(True)
                continue
            j = idx + 1
            now = time.monotonic()
            self.guard.longest = max(self.guard.longest, now - last_msg[j])
            silent_since[j] = last_msg[j] = now
            hdr = msgs[j][:HDR]
            kind = int(hdr[0])
            self.per_rank[j] = {"episode": int(hdr[4]), "steps": int(hdr[5])}
            if kind == BYE:
                alive.discard(j)
                reqs[idx] = MPI.REQUEST_NULL
                continue
            version, steps, ret, nonfinite = int(hdr[1]), hdr[2], float(hdr[3]), hdr[6] > 0
            g = msgs[j][HDR : HDR + d].copy() if kind == GRAD and not stopping else None
            moments = msgs[j][HDR + d :].copy() if kn and g is not None else None
            reqs[idx] = comm.Irecv(msgs[j], source=j, tag=TAG_GRAD)
            if kind == STOP_REQUEST:
                stop_all(True)
                continue
            if stopping:
                continue  # this worker has its stop message, or gets it next
            if self.shared_link:
                transfer(self.up_s[j - 1])  # the upload holds the link before the update
            if nonfinite:
                self._reject(j)
                self._merge(moments)
                send_params(j)
                continue
            if self._update(j, g, version, steps, ret, moments):
                stop_all(False)
            else:
                send_params(j)
        MPI.Request.Waitall(sends)
        self.rounds = self.k - 1
        self.checkpoint()

    def _beat(self) -> bool:
        """Leave a heartbeat during an emulated transfer; never cut it short."""
        self.guard.beat = time.monotonic()
        return False

    def _elapsed(self) -> float:
        return self.t_offset + time.perf_counter() - self.t_start

    def _reject(self, j: int) -> None:
        """Count worker ``j``'s non-finite gradient; end the run past the tolerance."""
        book = self.book
        book.nonfinite += 1
        if book.nonfinite > book.max_nonfinite:
            raise NonFiniteGradients(
                f"{book.nonfinite} non-finite gradients so far (run.max_nonfinite = "
                f"{book.max_nonfinite}); the last from worker {j - 1} (rank {j}): check the "
                "environment's rewards/observations and lower algo.alpha")

    def _merge(self, moments: np.ndarray | None) -> None:
        """Merge one trajectory's observation moments into the server's statistics."""
        if moments is not None:
            with self.guard.lock:
                self.norm.merge_packed_batch(moments)

    def _update(self, j: int, g: np.ndarray, version: int, steps: float, ret: float,
                moments: np.ndarray | None = None) -> bool:
        """Apply one gradient (a server update) and then its observation moments; return
        whether a stop rule now holds."""
        with self.guard.lock:
            staleness = self.k - version
            self.staleness_sum += staleness
            self.staleness_n += 1
            self.last_staleness = staleness
            if self.k == 0:
                self.opt.initialise(g)  # d_0 (inferred: the first arrival)
            else:
                self.opt.step(g)
            if moments is not None:
                self.norm.merge_packed_batch(moments)
            self.book.comm_bytes += 16 * self.d  # g up, theta_tilde down
            elapsed = self._elapsed()
            n = self.n
            rets = [[] for _ in range(n)]
            rets[j - 1] = [ret]
            record = self.book.record(self.k, elapsed,
                                      one_gradient_stats(n, j - 1, steps, ret), rets,
                                      self.opt.theta, g=g)
            record["staleness"] = staleness
            stop = self.book.should_stop(self.k, elapsed, 0)
            if self.evaluate is not None:  # it decides whether this update is due
                t_ev = time.perf_counter()
                record.update(self.evaluate(self.opt, self.norm, self.k, elapsed, stop))
                self.timers.add("eval", time.perf_counter() - t_ev)
            if self.on_round is not None:
                self.on_round(record)
            self.k += 1
        due = (self.checkpoint_every_s > 0
               and elapsed - self.last_checkpoint >= self.checkpoint_every_s)
        if due and not stop:
            self.checkpoint()
        return stop

    # ------------------------------------------------------------------ worker

    def _wait(self, req: MPI.Request, what: str) -> None:
        """Complete ``req`` while watching the server's silence."""
        t0 = time.monotonic()
        spins = 0
        while not req.Test():
            now = self.guard.beat = time.monotonic()
            if self.stop_flag is not None and self.stop_flag.requested:
                self._request_stop()
            if now - t0 > 2.0 * self.guard.bound() + 5.0:
                self.guard.fatal(f"rank 0 (the AFedPG server) did not {what} for "
                                 f"{now - t0:.0f} s", self.guard._code())
            spins += 1
            if spins > 200:
                time.sleep(0.0002)

    def _request_stop(self) -> None:
        """Tell the server once that this worker got a stop signal."""
        if self._stop_sent:
            return
        self._stop_sent = True
        self._send(STOP_REQUEST, 0, 0, 0.0, False)

    def _send(self, kind: int, version: float, steps: float, ret: float,
              nonfinite: bool) -> None:
        msg = self._msg
        msg[:HDR] = (kind, version, steps, ret, self.sampler.episode, self.sampler.steps,
                     1.0 if nonfinite else 0.0)
        if kind == GRAD and self.k_norm:  # the moments since the last gradient went up
            msg[HDR + self.d :] = self.norm.batch_of(self.norm.take_moments())
        buf = msg if kind == GRAD else msg[:HDR]
        req = self.comm.Isend(buf, dest=0, tag=TAG_GRAD)
        self._wait(req, "take a message")

    def _work(self) -> None:
        d = self.d
        params = np.empty(2 + d + self.k_norm)
        self._msg = np.empty(HDR + d + self.k_norm)
        self._stop_sent = False
        # theta_tilde in one buffer on a cache line, as the kernels want theta (the outer
        # steps' arrays are; the sampler would otherwise copy a fresh array each time)
        theta_tilde = K.aligned_empty(d)
        reply = self.comm.Irecv(params, source=0, tag=TAG_PARAMS)

        def stop_now(*_) -> bool:
            self.guard.beat = time.monotonic()
            if self.stop_flag is not None and self.stop_flag.requested:
                self._request_stop()
                return True
            return bool(reply.Test())  # mid-rollout the server's only message is a stop

        on_step = (lambda: self.delay.step(stop_now)) if self.delay.active else None
        t0 = time.perf_counter()
        self._wait(reply, "send the first parameters")
        self.timers.add("wait", time.perf_counter() - t0)
        while params[0] == 1.0:
            version = params[1]
            theta_tilde[:] = params[2 : 2 + d]
            if self.k_norm:  # the statistics of the parameters' server update
                self.norm.unpack(params[2 + d :])
            reply = self.comm.Irecv(params, source=0, tag=TAG_PARAMS)
            steps0 = self.sampler.steps
            self.delay.begin()
            traj = self.sampler.rollout(theta_tilde, poll=stop_now, poll_every=self.poll_every,
                                        on_step=on_step)
            if traj is None:
                break
            g = self._msg[HDR : HDR + d]
            g[:] = 0.0
            t0 = time.perf_counter()
            self.sampler.add_grad(theta_tilde, traj, 1.0, g)
            finite = bool(np.isfinite(g).all())
            self.timers.add("grad", time.perf_counter() - t0)
            if self.delay.finish(stop_now):  # h_i covers the rollout and the gradient
                break
            if self.comm_delay_s > 0.0:
                self.delay.sleep(self.comm_delay_s, stop_now)
            t0 = time.perf_counter()
            self._send(GRAD, version, self.sampler.steps - steps0, traj.ret, not finite)
            self._wait(reply, "answer a gradient")
            self.timers.add("wait", time.perf_counter() - t0)
        if self.stop_flag is not None and self.stop_flag.requested:
            self._request_stop()
        self._wait(reply, "send its stop")  # the stop message (params[0] == 0) settles it
        self._send(BYE, 0, 0, 0.0, False)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> None:
        """Rank 0 writes the server's state and each worker's last position (no collective)."""
        if self.rank != 0 or self.on_checkpoint is None:
            return
        with self.guard.lock:
            self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        elapsed = self._elapsed()
        self.last_checkpoint = elapsed
        st = self.opt.state()
        arrays = {k: v for k, v in st.items() if isinstance(v, np.ndarray)}
        state = {"round": self.k - 1, "k": self.k, "t": st["t"], "time_s": elapsed,
                 "ranks": self.size, "algo": self.cfg["algo"]["name"], "book": self.book.state(),
                 "per_rank": self.per_rank,
                 "staleness": [self.staleness_sum, self.staleness_n]}
        if self.norm is not None:
            state["obs_norm"] = self.norm.state()
        self.on_checkpoint(arrays, state)

    def restore(self, arrays: dict, state: dict) -> None:
        """Continue from a checkpoint: the server resumes at update ``state['k']``."""
        for k, v in arrays.items():
            getattr(self.opt, k)[:] = v
        self.opt.t = state["t"]
        self.k0 = self.k = state["k"]
        self.rounds = self.k - 1
        self.t_offset = self.last_checkpoint = state["time_s"]
        self.book.restore(state["book"])
        if self.norm is not None and self.rank == 0:
            self.norm.restore(state["obs_norm"])
        self.staleness_sum, self.staleness_n = state["staleness"]
        self.per_rank = [None if p is None else dict(p) for p in state["per_rank"]]
        mine = self.per_rank[self.rank]
        if self.sampler is not None and mine is not None:
            self.sampler.episode, self.sampler.steps = mine["episode"], mine["steps"]

    # ------------------------------------------------------------------ both

    def run(self) -> dict:
        """Run until the server's stop rule holds; return a summary (theta from the server)."""
        if self.rank == 0 and self.on_checkpoint is not None:
            self.guard.write_checkpoint = self._write_checkpoint
        self.guard.start()
        try:
            self.guard.arrive(-1, "the start of training")
            self.t_start = time.perf_counter()
            if self.rank == 0:
                self._serve()
            else:
                self._work()
        finally:
            self.guard.close()
        wall = time.perf_counter() - self.t_start
        summary = None
        if self.rank == 0:
            summary = {**self.book.summary(self.rounds, wall),
                       "staleness_mean": self.staleness_sum / max(1, self.staleness_n)}
        summary = self.comm.bcast(summary, root=0)
        theta = self.comm.bcast(self.opt.theta if self.rank == 0 else None, root=0)
        summary["theta"] = theta
        summary["trace"] = None
        t = self.timers
        if self.sampler is not None:
            t.add("env_step", self.sampler.t_env, 0)
            t.add("policy", self.sampler.t_policy, 0)
        t.add("delay", self.delay.slept, 0)
        t.extra["wall_s"] = wall
        return summary
