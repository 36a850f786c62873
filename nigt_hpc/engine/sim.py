"""The virtual-clock engine: one process, a discrete-event queue, real rollouts and real
gradients, time advanced by the configured h_i and kappa_i (ALGORITHMS section 7).

It drives the same rule objects as the MPI engine (``aggregation.py``) and the same outer
step, so only the transport differs.  Time models (``sim.time_model``):

* ``trajectory`` (default): one g_H on worker i costs h_i virtual seconds.  A trajectory's
  cost does not depend on its content, so it is rolled out only when it is accepted
  (abandoned ones consume their episode index and their time, never CPU).
* ``step``: it costs h_i * (env steps actually taken); every started trajectory is rolled
  out at once to learn its length.

A round starts at T0 with every worker starting a trajectory at ``theta_tilde``; events pop
in (finish time, worker) order; the rule accepts or ends the round; partial work in flight
at the end is wasted; the round then pays the Allreduce, ``max_i kappa_i``.  Synchronized
rounds are ``max_i (B h_i) + max_i kappa_i``.  AFedPG: worker i computes (h_i), exchanges
with the server, and restarts with the freshest parameters; the server update takes no time.
``delays.server_link``:

* ``shared`` (default): the server has one link, a FIFO resource.  An exchange of worker i
  holds it for the gradient's upload, kappa_i / 2 (one d-vector; kappa_i is one d-vector
  sent and one received, the unit an Allreduce is charged in), then the download of its
  next theta_tilde, kappa_i / 2 (one d-vector), so an exchange holds it kappa_i, the
  paper's kappa per server update.  A worker whose gradient is ready waits
  for the link (FIFO by ready time, ties by worker index), the server updates when the
  upload ends, and the worker restarts when the download ends.
* ``parallel``: every exchange costs kappa_i and overlaps the others (the server's link is
  never busy); the worker restarts at the update.

``SimEngine.link_log`` holds (worker, ready, link start, update, restart) per server update.
"""

from __future__ import annotations

import heapq
import math
import time

import numpy as np

from .. import registry
from ..config import ConfigError
from ..delays import afedpg_transfer_times, comm_factors, compute_factors
from ..obsnorm import ObsNorm
from ..rollout import Sampler
from ..timers import Timers
from .common import STATS, RoundBook, make_optimizer, one_gradient_stats


def virtual_speeds(cfg: dict, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (h_i, kappa_i) in virtual seconds: the models' factors times the unit, where a
    unit of 0 (the default, meaning "no real sleep") counts as 1 virtual second."""
    dl = cfg["delays"]
    if dl["compute"] == "none":
        raise ConfigError("simulate needs a compute-time model: set delays.compute (const, "
                          "sqrt, linear, exp or from_list); 'none' would make time stand still")
    h = compute_factors(cfg, n) * (dl["compute_unit_s"] or 1.0)
    kappa = comm_factors(cfg, n, d) * (dl["comm_unit_s"] or 1.0)
    return h, kappa


class SimEngine:
    """Runs ``n`` workers on a virtual clock; the same metrics as the MPI engine."""

    def __init__(self, cfg: dict, samplers: list[Sampler], theta0: np.ndarray,
                 timers: Timers, on_round=None):
        self.cfg, self.samplers, self.timers, self.on_round = cfg, samplers, timers, on_round
        self.n = len(samplers)
        self.d = len(theta0)
        a = cfg["algo"]
        self.algo = registry.of(cfg)
        self.opt = make_optimizer(cfg, theta0)
        self.h, self.kappa = virtual_speeds(cfg, self.n, self.d)
        self.per_step = cfg["sim"]["time_model"] == "step"
        self.M, self.M_init = a["M"], a["M_init"]
        self.B = a["B"] or math.ceil(a["M"] / self.n)
        self.B_init = a["B"] or math.ceil(a["M_init"] / self.n)
        self.book = RoundBook(cfg, self.n)
        # policy.obs_norm: one set of statistics for every worker (what the MPI engine's
        # Allreduce gives each rank), merged from all workers' moments at round boundaries
        self.norm = samplers[0].norm
        for s in samplers:
            s.norm = self.norm
        self.evaluate = None  # run.py: trained.Evaluator.periodic, when asked for
        self.now = 0.0  # the virtual clock
        self.rounds = 0
        self.finish_log: list[tuple[float, int, bool]] = []  # (time, worker, accepted)
        self.staleness: list[int] = []
        # AFedPG, one per server update: (worker, ready, link start, update, restart)
        self.link_log: list[tuple[int, float, float, float, float]] = []

    # ------------------------------------------------------------------ helpers

    def _rollout(self, w: int, theta: np.ndarray):
        t0 = time.perf_counter()
        traj = self.samplers[w].rollout(theta)
        self.timers.add("env_step", time.perf_counter() - t0)
        return traj

    def _cost(self, w: int, traj) -> float:
        return self.h[w] * traj.T if self.per_step else self.h[w]

    def _start(self, queue: list, w: int, t: float, theta: np.ndarray, seq: list) -> None:
        """Start a trajectory on worker ``w`` at virtual time ``t``."""
        if self.per_step:
            traj = self._rollout(w, theta).copy()
            heapq.heappush(queue, (t + self._cost(w, traj), w, seq[0], traj))
        else:
            episode = self.samplers[w].episode
            self.samplers[w].episode += 1  # consumed now, rolled out only if accepted
            heapq.heappush(queue, (t + self.h[w], w, seq[0], episode))
        seq[0] += 1

    def _materialise(self, w: int, item, theta: np.ndarray):
        if self.per_step:
            return item
        s = self.samplers[w]
        keep = s.episode
        s.episode = item
        traj = self._rollout(w, theta)
        s.episode = keep
        return traj

    # ------------------------------------------------------------------ one round

    def _round(self, rnd: int) -> bool:
        M, B = (self.M_init, self.B_init) if rnd == 0 else (self.M, self.B)
        theta = self.opt.theta if rnd == 0 else self.opt.theta_tilde()
        rule = self.algo.make_rule(self.n, M, B)
        sums = np.zeros((self.n, self.d))
        stats = np.zeros((self.n, len(STATS)))
        rets: list[list[float]] = [[] for _ in range(self.n)]
        steps0 = [s.steps for s in self.samplers]
        T0 = self.now
        queue: list = []
        seq = [0]
        for w in range(self.n):
            self._start(queue, w, T0, theta, seq)
        end = T0
        while not rule.done():
            t, w, _, item = heapq.heappop(queue)
            accepted = rule.on_finished(w)
            self.finish_log.append((t, w, accepted))
            end = t
            if accepted:
                traj = self._materialise(w, item, theta)
                t0 = time.perf_counter()
                self.samplers[w].add_grad(theta, traj, 1.0, sums[w])
                self.timers.add("grad", time.perf_counter() - t0)
                stats[w, 0] += 1
                stats[w, 2] += 1
                stats[w, 3] += traj.ret
                rets[w].append(traj.ret)
            if rule.wants_more(w):  # false once the round is over, or w's quota is in
                self._start(queue, w, t, theta, seq)
        stats[:, 4] = [sum(1 for e in queue if e[1] == w) for w in range(self.n)]
        for w in range(self.n):
            stats[w, 1] = self.samplers[w].steps - steps0[w]
            stats[w, 5] = len(rets[w][-self.book.window.maxlen:])
            rets[w] = rets[w][-self.book.window.maxlen:]
        g = rule.weights() @ sums
        self.now = end + float(np.max(self.kappa))  # the round's Allreduce
        self.book.collectives += 1
        self.book.comm_bytes += 8 * self.d * self.n
        if rnd == 0:
            self.opt.initialise(g)
        else:
            self.opt.step(g)
        for sampler in self.samplers:  # a linear baseline refits at round boundaries
            sampler.end_round()
        if self.norm is not None:
            self.norm.merge_moments(self.norm.moments)
        self.rounds = rnd
        record = self.book.record(rnd, self.now, stats, rets, self.opt.theta, g=g)
        stop = self.book.should_stop(rnd, self.now, 0)
        self._evaluate(record, rnd, stop)
        if self.on_round is not None:
            self.on_round(record)
        return stop

    def _evaluate(self, record: dict, rnd: int, stop: bool) -> None:
        if self.evaluate is not None:  # no virtual time passes: evaluation is not training
            t0 = time.perf_counter()
            record.update(self.evaluate(self.opt, self.norm, rnd, self.now, stop))
            self.timers.add("eval", time.perf_counter() - t0)

    # ------------------------------------------------------------------ AFedPG

    def _afedpg(self) -> None:
        """AFedPG: the server's update is the NIGT step (``self.opt``) on each arrival.

        Worker w's gradient is ready h_w after it restarts.  ``shared``: exchanges hold the
        server's one link in turn, FIFO by ready time (ties: lower worker index), each for
        its upload then its download (``afedpg_transfer_times``); the server updates when
        the upload ends and the worker restarts when the download ends.  ``parallel``: the
        exchange costs kappa_w, overlaps every other, and the worker restarts at the update.
        """
        n, opt = self.n, self.opt
        # Why shared is the default: one server NIC carries every gradient up and every
        # parameter copy down, so n transfers cannot overlap there, while an Allreduce
        # spreads its bytes over every rank's link.
        shared = self.cfg["delays"]["server_link"] == "shared"
        if shared:
            up, down = afedpg_transfer_times(self.kappa)
        else:  # the download is folded into kappa_w, paid before the update
            up, down = self.kappa, np.zeros(n)
        k = 0
        link_free = 0.0  # when the server's link ends its current exchange (shared)
        queue = []  # (key, worker, ready): by ready time if shared, by update time if not

        def push(w: int, ready: float) -> None:
            heapq.heappush(queue, (ready if shared else ready + up[w], w, ready))

        # policy.obs_norm: the server's statistics (``server``); a worker samples with those
        # that came with its parameters (``held``) and its moments go up with its gradient
        norm = self.norm
        server = None
        if norm is not None:
            server = ObsNorm(norm.dim, norm.clip)
        # worker -> (theta_tilde, version, statistics) it works with: the point is the outer
        # step's own theta_tilde when the server replies, as the MPI server sends it
        held = {}
        for w in range(n):
            held[w] = (opt.theta_tilde(), 0, None if server is None else server.pack())
            push(w, self.h[w])  # theta_0 is on every worker at t = 0, free
        while True:
            _, w, ready = heapq.heappop(queue)
            start = max(ready, link_free) if shared else ready
            t = start + up[w]  # the server's update
            restart = t + down[w]
            if shared:
                link_free = restart
            self.link_log.append((w, ready, start, t, restart))
            theta_tilde, version, stats = held[w]
            if server is not None:
                norm.unpack(stats)
            traj = self._rollout(w, theta_tilde)
            g = np.zeros(self.d)
            self.samplers[w].add_grad(theta_tilde, traj, 1.0, g)
            self.staleness.append(k - version)
            if k == 0:
                opt.initialise(g)  # d_0: the first arrival (as the MPI engine's server)
            else:
                opt.step(g)
            if server is not None:  # after the update, as the MPI engine's server
                server.merge_packed_batch(norm.batch_of(norm.take_moments()))
            self.book.comm_bytes += 16 * self.d  # g up, theta_tilde down
            self.now = t
            record = self.book.record(k, t, one_gradient_stats(n, w, traj.T, traj.ret),
                                      [[traj.ret] if i == w else [] for i in range(n)],
                                      opt.theta, g=g)
            record["staleness"] = self.staleness[-1]
            stop = self.book.should_stop(k, t, 0)
            if server is not None:  # what the server would deliver now
                norm.unpack(server.pack())
            self._evaluate(record, k, stop)
            if self.on_round is not None:
                self.on_round(record)
            self.rounds = k
            k += 1
            if stop:
                break
            held[w] = (opt.theta_tilde(), k, None if server is None else server.pack())
            cost = self._cost(w, traj) if self.per_step else self.h[w]
            push(w, restart + cost)

    # ------------------------------------------------------------------ the loop

    def run(self) -> dict:
        """Run until a stop rule holds; return a summary like the MPI engine's."""
        t0 = time.perf_counter()
        if self.algo.engine == "server":
            self._afedpg()
        else:
            rnd = 0
            while not self._round(rnd):
                rnd += 1
        wall = time.perf_counter() - t0
        self.timers.extra["wall_s"] = wall
        return {**self.book.summary(self.rounds, wall), "virtual_s": self.now,
                "theta": self.opt.theta}
