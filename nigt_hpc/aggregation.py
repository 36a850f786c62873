"""Aggregation rules as transport-free state machines (docs/ARCHITECTURE.md).

A rule decides, as gradients finish on workers, which ones count (``on_finished``), when
the round is over (``done``), whether a worker should start another trajectory
(``wants_more``) and with what factor each worker's local sum enters the average
(``local_weight``, of which ``weights`` is the vector).  Both engines drive the same
objects, so a rule is tested once: the virtual clock calls them for every event, the MPI
engine takes every rank's weight from ``local_weight`` and its control planes take
acceptance and the stop from the rule (Rennala's counter planes through ``accepts_at`` and
``done_at``, which read only the round's accepted total).  ``for_round(n, M, B)`` builds
the rule of one round; ``nigt_hpc/registry.py`` says which rule an ``algo.name`` uses.
"""

from __future__ import annotations

import numpy as np


class AggregateSync:
    """Synchronous rule: every worker computes exactly ``B`` gradients; g = sum / (n B)."""

    def __init__(self, n: int, B: int):
        self.n, self.B = int(n), int(B)
        self.start_round()

    @classmethod
    def for_round(cls, n: int, M: int, B: int) -> AggregateSync:
        """Return the rule of a round of ``B`` per worker (``M`` is not used)."""
        return cls(n, B)

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

    def local_weight(self, worker: int, count: int) -> float:
        """Return the factor of a local sum of ``count`` gradients: 1/(n B) whatever it is."""
        return 1.0 / (self.n * self.B)

    def weights(self) -> np.ndarray:
        """Return the factor of each worker's local sum (``local_weight`` per worker)."""
        return _weights(self)


class AggregateRennala:
    """AggregateRennala (docs/ALGORITHMS.md §2): exactly ``M`` accepted, whoever finishes first.

    Ties are broken by arrival order: the M-th arrival closes the round and later arrivals
    are refused (accept exactly M).
    """

    def __init__(self, n: int, M: int):
        self.n, self.M = int(n), int(M)
        self.start_round()

    @classmethod
    def for_round(cls, n: int, M: int, B: int) -> AggregateRennala:
        """Return the rule of a round of ``M`` gradients (``B`` is not used)."""
        return cls(n, M)

    def start_round(self) -> None:
        """Reset ``M_i`` and the accepted total ``m``."""
        self.M_i = np.zeros(self.n, dtype=np.int64)
        self.m = 0

    def accepts_at(self, m: int) -> bool:
        """Return whether a gradient finishing when ``m`` have finished before it this
        round is accepted (lines 4-5: while m < M).  The RMA counter plane asks this with
        the value its Fetch_and_op returns: the counter holds only that total."""
        return m < self.M

    def done_at(self, m: int) -> bool:
        """Return whether a round with ``m`` finished so far is over (m >= M)."""
        return m >= self.M

    def on_finished(self, worker: int) -> bool:
        """Return whether the gradient is accepted (``accepts_at`` the accepted total)."""
        if not self.accepts_at(self.m):
            return False
        self.M_i[worker] += 1
        self.m += 1
        return True

    def wants_more(self, worker: int) -> bool:
        """Return whether ``worker`` should start another trajectory: until the round ends."""
        return not self.done()

    def done(self) -> bool:
        """Return True once m = M."""
        return self.done_at(self.m)

    def local_weight(self, worker: int, count: int) -> float:
        """Return 1/M whatever ``count`` is (line 8: g = AllReduce_sum(g_i) / M)."""
        return 1.0 / self.M

    def weights(self) -> np.ndarray:
        """Return the factor of each worker's local sum (``local_weight`` per worker)."""
        return _weights(self)


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

    @classmethod
    def for_round(cls, n: int, M: int, B: int) -> AggregateMalenia:
        """Return the rule of a round with target ``M`` (``B`` is not used)."""
        return cls(n, M)

    def start_round(self) -> None:
        """Reset ``M_i``."""
        self.M_i = np.zeros(self.n, dtype=np.int64)

    def on_finished(self, worker: int) -> bool:
        """Return whether the gradient is accepted (every one, until ``done``)."""
        if self.done():
            return False
        self.M_i[worker] += 1
        return True

    def wants_more(self, worker: int) -> bool:
        """Return whether ``worker`` should start another trajectory: until the round ends."""
        return not self.done()

    def done(self) -> bool:
        """Return True at the first instant every M_i >= 1 and HM(M_i) >= M/n."""
        if np.any(self.M_i <= 0):
            return False
        # HM >= M/n  <=>  n^2 >= M * sum(1/M_i); the relative slack absorbs rounding in the
        # sum so that equal counts M_i = M/n stop the round exactly when the paper says.
        return self.n * self.n >= self.M * float(np.sum(1.0 / self.M_i)) * (1.0 - 1e-12)

    def local_weight(self, worker: int, count: int) -> float:
        """Return 1/(n M_i) for a local sum of ``count`` = M_i gradients (line 8), and 0 for
        an empty one (a rank that contributed nothing adds zeros, not 0 * inf = NaN)."""
        return 1.0 / (self.n * count) if count else 0.0

    def weights(self) -> np.ndarray:
        """Return the factor of each worker's local sum (``local_weight`` per worker)."""
        return _weights(self)


def _weights(rule) -> np.ndarray:
    """Return ``rule.local_weight(i, M_i)`` for every worker i, the vector the virtual clock
    multiplies the local sums by: the same arithmetic as each MPI rank's own factor."""
    return np.array([rule.local_weight(i, int(c)) for i, c in enumerate(rule.M_i)],
                    dtype=np.float64)
