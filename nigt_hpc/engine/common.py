"""Engine parts shared by every transport: round statistics, stop rules, metrics records.

No MPI here.  The MPI engine packs a round's d-vector and its small per-worker statistics
into one buffer (:class:`Exchange`), so one Allreduce per round carries both; every rank
then decodes the same numbers and takes the same stop decision without another message.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .. import registry

# per-worker statistics of a round; ``reports`` counts control-plane reports (Rennala's
# fetch_adds), from which every rank derives the next round's counter base
# ``episode_next`` and ``steps_total`` are the worker's sampler position at the boundary, so
# rank 0 can checkpoint every rank's state without another message
STATS = ("grads", "env_steps", "episodes", "return_sum", "discarded", "n_returns", "reports",
         "nonfinite", "episode_next", "steps_total")
_S = len(STATS)
# global slots after the d-vector: rank 0's elapsed seconds (so every rank sees the same
# clock), the number of ranks that asked to stop (signals), and rank 0's "a checkpoint is
# due" (its clock decides, so every rank checkpoints at the same round)
GLOBAL = ("time_s", "stop_requests", "checkpoint_due")


class NonFiniteGradients(RuntimeError):
    """Too many gradients with NaN or inf: the run cannot be trusted any further."""


def one_gradient_stats(n: int, worker: int, steps: float, ret: float) -> np.ndarray:
    """Return the per-worker statistics of an AFedPG server update: one gradient from
    ``worker``, one episode of ``steps`` env steps and return ``ret``."""
    stats = np.zeros((n, len(STATS)))
    row = {"grads": 1, "env_steps": steps, "episodes": 1, "return_sum": ret, "n_returns": 1,
           "reports": 1}
    stats[worker, :] = [row.get(name, 0) for name in STATS]
    return stats


def make_optimizer(cfg: dict, theta0: np.ndarray):
    """Return the outer step the registry gives ``algo.name`` (NIGT or plain PG)."""
    return registry.of(cfg).make_optimizer(cfg, theta0)


@dataclass
class LocalRound:
    """One worker's contribution to a round: the local gradient sum and counters."""

    d: int
    window: int
    g_sum: np.ndarray = field(init=False)
    grads: int = 0
    env_steps: int = 0
    episodes: int = 0
    return_sum: float = 0.0
    discarded: int = 0
    reports: int = 0
    nonfinite: int = 0
    episode_next: int = 0
    steps_total: int = 0
    returns: deque = field(init=False)

    def __post_init__(self):
        self.g_sum = np.zeros(self.d)
        self.returns = deque(maxlen=self.window)

    def reset(self) -> None:
        """Zero everything for the next round."""
        self.g_sum[:] = 0.0
        self.grads = self.env_steps = self.episodes = self.discarded = self.reports = 0
        self.nonfinite = 0
        self.return_sum = 0.0
        self.returns.clear()

    def episode_done(self, ret: float) -> None:
        """Record one completed episode's undiscounted return."""
        self.episodes += 1
        self.return_sum += ret
        self.returns.append(ret)


class Exchange:
    """The one buffer reduced per round:
    ``[g (d) | global | extra (summed, e.g. observation moments) | per-worker stats + returns]``.
    """

    def __init__(self, d: int, n_workers: int, window: int, extra: int = 0):
        self.d, self.n, self.window = d, n_workers, window
        self.per = _S + window
        self.n_extra = int(extra)
        self._x = d + len(GLOBAL)  # where the extra block starts
        self.buf = np.zeros(d + len(GLOBAL) + self.n_extra + n_workers * self.per)

    def pack(self, worker: int | None, local: LocalRound | None, weight: float,
             time_s: float, stop_request: bool, checkpoint_due: bool = False,
             extra: np.ndarray | None = None) -> np.ndarray:
        """Fill the buffer with this rank's share; ``worker=None`` for a rank that samples
        nothing.  ``time_s`` is counted only from rank 0 (others pass 0); ``extra`` (this
        rank's summands of the extra block) only where the buffer has one."""
        b = self.buf
        d = self.d
        b[d:] = 0.0  # the d-part is overwritten below (zeroing it too cost a pass over d)
        if local is not None:
            np.multiply(local.g_sum, weight, out=b[:d])
        else:
            b[:d] = 0.0
        b[d] = time_s
        b[d + 1] = 1.0 if stop_request else 0.0
        b[d + 2] = 1.0 if checkpoint_due else 0.0
        if extra is not None:
            b[self._x : self._x + self.n_extra] = extra
        if worker is not None and local is not None:
            o = self._x + self.n_extra + worker * self.per
            b[o : o + _S] = (local.grads, local.env_steps, local.episodes, local.return_sum,
                             local.discarded, len(local.returns), local.reports,
                             local.nonfinite, local.episode_next, local.steps_total)
            rs = list(local.returns)
            b[o + _S : o + _S + len(rs)] = rs
        return b

    def unpack(self) -> tuple[np.ndarray, float, int, bool, np.ndarray, list[list[float]]]:
        """Return (g, time_s, stop_requests, checkpoint_due, stats[n, S], recent returns).

        ``g`` is a view into the buffer, valid until the next ``pack`` (the outer step
        consumes it at once; copying d doubles each round cost up to 0.5 ms at d = 1e6).
        """
        b, d = self.buf, self.d
        per = b[self._x + self.n_extra :].reshape(self.n, self.per)
        stats = per[:, :_S].copy()
        rets = [list(per[i, _S : _S + int(stats[i, 5])]) for i in range(self.n)]
        return (b[:d], float(b[d]), int(round(b[d + 1])), bool(b[d + 2] > 0.0), stats,
                rets)

    def extra(self) -> np.ndarray:
        """Return the reduced extra block (a view, valid until the next ``pack``)."""
        return self.buf[self._x : self._x + self.n_extra]


class RoundBook:
    """Cumulative counters, the return window, and the stop decision (same on every rank)."""

    def __init__(self, cfg: dict, n_workers: int):
        r = cfg["run"]
        self.n = n_workers
        self.max_rounds = r["max_rounds"]
        self.max_env_steps = r["max_env_steps"]
        self.max_time_s = r["max_time_s"]
        self.target = r["target_return"]
        self.window: deque = deque(maxlen=r["target_window"])
        self.env_steps = 0
        self.collectives = 0
        self.comm_bytes = 0
        self.episodes_total = 0
        self.best_window = -math.inf
        self.nonfinite = 0
        self.max_nonfinite = r["max_nonfinite"]
        self.stop_reason: str | None = None
        self.signalled = False
        # theta -> the policy's mean std, for a head whose std is in theta (logs.py); set
        # by run.py, None otherwise
        self.std_fn = None

    def state(self) -> dict:
        """Return the counters a checkpoint must hold (JSON-ready)."""
        return {"env_steps": self.env_steps, "collectives": self.collectives,
                "comm_bytes": self.comm_bytes, "episodes_total": self.episodes_total,
                "best_window": self.best_window if self.best_window > -math.inf else None,
                "window": list(self.window), "nonfinite": self.nonfinite}

    def restore(self, st: dict) -> None:
        """Restore the counters of :meth:`state`."""
        self.env_steps, self.collectives = st["env_steps"], st["collectives"]
        self.comm_bytes, self.episodes_total = st["comm_bytes"], st["episodes_total"]
        self.best_window = -math.inf if st["best_window"] is None else st["best_window"]
        self.window.clear()
        self.window.extend(st["window"])
        self.nonfinite = st["nonfinite"]

    def summary(self, rounds: int, wall_s: float) -> dict:
        """Return the end-of-run summary every engine reports (engines add their own keys)."""
        return {
            "rounds": rounds, "env_steps": self.env_steps, "episodes": self.episodes_total,
            "wall_s": wall_s,
            "return_window": float(np.mean(self.window)) if self.window else None,
            "best_window": self.best_window if self.best_window > -math.inf else None,
            "stop_reason": self.stop_reason, "signalled": self.signalled,
        }

    def record(self, rnd: int, time_s: float, stats: np.ndarray, rets: list[list[float]],
               theta: np.ndarray, g: np.ndarray | None = None) -> dict:
        """Fold one round's reduced statistics in; return its metrics.jsonl record.

        ``g``: the aggregated gradient the outer step just consumed (its norm is recorded;
        None on ranks whose record nobody writes, to spare a pass over d).
        """
        grads = stats[:, 0].astype(int)
        steps = int(stats[:, 1].sum())
        episodes = stats[:, 2].astype(int)
        ret_sum = stats[:, 3]
        self.env_steps += steps
        self.episodes_total += int(episodes.sum())
        self.nonfinite += int(stats[:, 7].sum())
        if self.nonfinite > self.max_nonfinite:
            bad = [i for i in range(self.n) if stats[i, 7] > 0]
            raise NonFiniteGradients(
                f"{self.nonfinite} non-finite gradients so far (run.max_nonfinite = "
                f"{self.max_nonfinite}); in round {rnd} from worker(s) {bad}: check the "
                "environment's rewards/observations and lower algo.alpha / algo.lr")
        for rs in rets:  # worker order within a round (documented approximation)
            self.window.extend(rs)
        win = float(np.mean(self.window)) if self.window else None
        if win is not None and len(self.window) == self.window.maxlen:
            self.best_window = max(self.best_window, win)
        n_ep = int(episodes.sum())
        rec = {
            "round": rnd,
            "time_s": time_s,
            "env_steps": self.env_steps,
            "grads": int(grads.sum()),
            "grads_per_worker": grads.tolist(),
            "discarded": int(stats[:, 4].sum()),
            "episodes": n_ep,
            "return_mean": float(ret_sum.sum() / n_ep) if n_ep else None,
            "return_per_worker": [float(s / e) if e else None for s, e in
                                  zip(ret_sum, episodes)],
            "return_window": win,
            "collectives": self.collectives,
            "comm_bytes": self.comm_bytes,
            "theta_norm": float(np.linalg.norm(theta)),
        }
        if g is not None:
            rec["grad_norm"] = float(np.linalg.norm(g))
        if self.std_fn is not None:  # policy_std or policy_entropy (logs.policy_std_fn)
            rec.update(self.std_fn(theta))
        return rec

    def should_stop(self, rounds_done: int, time_s: float, stop_requests: int) -> bool:
        """Return True (and set ``stop_reason``) when any stop rule holds."""
        if stop_requests:
            self.stop_reason = "stopped by signal; checkpoint written"
            self.signalled = True
        elif (len(self.window) == self.window.maxlen
              and float(np.mean(self.window)) >= self.target):
            self.stop_reason = "target return reached"
        elif self.max_rounds and rounds_done >= self.max_rounds:
            self.stop_reason = "max_rounds reached"
        elif self.max_env_steps and self.env_steps >= self.max_env_steps:
            self.stop_reason = "max_env_steps reached"
        elif self.max_time_s and time_s >= self.max_time_s:
            self.stop_reason = "max_time_s reached"
        return self.stop_reason is not None
