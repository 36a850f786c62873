"""Aggregation rules as transport-free state machines (docs/ARCHITECTURE.md).

A rule decides, as gradients finish on workers, which ones count (``on_finished``), when
the round is over (``done``) and with what factor each worker's local sum enters the
average (``weights``).  Both engines drive the same objects, so a rule is tested once.
"""

from __future__ import annotations

import numpy as np


class AggregateSync:
    """Synchronous rule: every worker computes exactly ``B`` gradients; g = sum / (n B)."""

    def __init__(self, n: int, B: int):
        self.n, self.B = int(n), int(B)
        self.start_round()

    def start_round(self) -> None:
        """Reset the per-worker counts ``M_i``."""
        self.M_i = np.zeros(self.n, dtype=np.int64)

    def on_finished(self, worker: int) -> bool:
        """Return whether ``worker``'s finished gradient is accepted."""
        if self.M_i[worker] >= self.B:
            return False
        self.M_i[worker] += 1
        return True

    def wants_more(self, worker: int) -> bool:
        """Return whether ``worker`` still owes gradients this round."""
        return self.M_i[worker] < self.B

    def done(self) -> bool:
        """Return True once every worker has contributed B gradients."""
        return bool(np.all(self.M_i >= self.B))

    def weights(self) -> np.ndarray:
        """Return the factor of each worker's local sum: 1/(n B)."""
        return np.full(self.n, 1.0 / (self.n * self.B))


class AggregateRennala:
    """AggregateRennala (docs/ALGORITHMS.md §2): exactly ``M`` accepted, whoever finishes first.

    Ties are broken by arrival order: the M-th arrival closes the round and later arrivals
    are refused (accept exactly M).
    """

    def __init__(self, n: int, M: int):
        self.n, self.M = int(n), int(M)
        self.start_round()

    def start_round(self) -> None:
        """Reset ``M_i`` and the accepted total ``m``."""
        self.M_i = np.zeros(self.n, dtype=np.int64)
        self.m = 0

    def on_finished(self, worker: int) -> bool:
        """Return whether the gradient is accepted (lines 4-5: while m < M)."""
        if self.m >= self.M:
            return False
        self.M_i[worker] += 1
        self.m += 1
        return True

    def done(self) -> bool:
        """Return True once m = M."""
        return self.m >= self.M

    def weights(self) -> np.ndarray:
        """Return 1/M for every worker (line 8: g = AllReduce_sum(g_i) / M)."""
        return np.full(self.n, 1.0 / self.M)


def harmonic_mean(M_i: np.ndarray) -> float:
    """Return ((1/n) sum 1/M_i)^-1, with 1/0 = inf (so the mean is 0 until all M_i >= 1)."""
    if np.any(M_i <= 0):
        return 0.0
    return len(M_i) / float(np.sum(1.0 / M_i))


class AggregateMalenia:
    """AggregateMalenia (docs/ALGORITHMS.md §3): loop while some M_i = 0 or HM(M_i) < M/n.

    Every finished gradient is accepted until the condition holds; each worker's mean
    enters with weight 1/n, so each of its gradients gets 1/(n M_i).
    """

    def __init__(self, n: int, M: int):
        self.n, self.M = int(n), int(M)
        self.start_round()

    def start_round(self) -> None:
        """Reset ``M_i``."""
        self.M_i = np.zeros(self.n, dtype=np.int64)

    def on_finished(self, worker: int) -> bool:
        """Return whether the gradient is accepted (every one, until ``done``)."""
        if self.done():
            return False
        self.M_i[worker] += 1
        return True

    def done(self) -> bool:
        """Return True at the first instant every M_i >= 1 and HM(M_i) >= M/n."""
        if np.any(self.M_i <= 0):
            return False
        # HM >= M/n  <=>  n^2 >= M * sum(1/M_i); the relative slack absorbs rounding in the
        # sum so that equal counts M_i = M/n stop the round exactly when the paper says.
        return self.n * self.n >= self.M * float(np.sum(1.0 / self.M_i)) * (1.0 - 1e-12)

    def weights(self) -> np.ndarray:
        """Return 1/(n M_i) per worker (line 8)."""
        return 1.0 / (self.n * self.M_i.astype(np.float64))
