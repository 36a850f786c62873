"""Baselines for the gradient estimators: ``b_t`` in ``g = sum_t (G_t - b_t) grad log pi``.

``G_t = sum_{h>=t} gamma^h r_h``, gamma counted from step 0 as in the truncated GPOMDP
estimator (ALGORITHMS section 0), so a baseline estimates that same ``G_t``.  Each worker
keeps its own baseline, and a trajectory's ``b`` is computed, when the trajectory finishes,
from trajectories that finished before it; only then does the baseline learn from it.  So
``b_t`` never depends on the actions of the trajectory it enters, ``E[g]`` is unchanged
(ALGORITHMS section 7b) and Rennala's and Malenia's weights hold as without it.

* ``none``: ``b = 0``; the sampler then calls today's kernels (same bits).
* ``time``: ``b_t`` = running mean of ``G_t`` at step index ``t`` over earlier trajectories
  that reached step ``t``; with ``time_rate > 0`` each new trajectory weighs at least that
  much (exponential forgetting, as the policy moves).
* ``linear``: ``b_t = phi(s_t, t) . w``, ``phi = [o, o^2, t/H, (t/H)^2, (t/H)^3, 1]`` with
  ``o`` the observation the policy saw, clipped to ``+-obs_clip`` (rllab/garage's
  LinearFeatureBaseline); ``w`` is a ridge least-squares fit of ``G_t`` on the trajectories
  finished since the previous fit, refitted every ``linear_every`` finished trajectories and
  at each round boundary (``Sampler.end_round``).  Before the first fit ``w = 0``.

``state()`` / ``restore()`` give a baseline's state as plain float64 arrays for checkpoints.
No MPI here.
"""

from __future__ import annotations

import numpy as np

BASELINES = ("none", "time", "linear")


class TimeBaseline:
    """``b_t``: the running mean of ``G_t`` at step index ``t`` over earlier trajectories."""

    name = "time"

    def __init__(self, horizon: int, rate: float = 0.0):
        self.rate = float(rate)
        self.mean = np.zeros(int(horizon))
        self.count = np.zeros(int(horizon))  # trajectories that reached step t

    def observe(self, obs: np.ndarray, G: np.ndarray, b: np.ndarray) -> None:
        """Write this trajectory's ``b`` (from earlier ones) into ``b``, then learn ``G``."""
        T = G.shape[0]
        m = self.mean[:T]
        b[:] = m
        c = self.count[:T]
        c += 1.0
        m += np.maximum(1.0 / c, self.rate) * (G - m)

    def end_round(self) -> None:
        """Nothing to do at a round boundary: the mean moves with every trajectory."""

    def state(self) -> dict[str, np.ndarray]:
        """Return the state as plain arrays (copies)."""
        return {"mean": self.mean.copy(), "count": self.count.copy()}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Set the state from ``state()``'s arrays."""
        _put(self.mean, state["mean"], "mean")
        _put(self.count, state["count"], "count")


class LinearBaseline:
    """``b_t = phi(s_t, t) . w``, ``w`` a ridge fit of ``G_t`` on earlier trajectories."""

    name = "linear"

    def __init__(self, horizon: int, obs_dim: int, reg: float = 1e-5, every: int = 10,
                 obs_clip: float = 10.0):
        self.horizon = int(horizon)
        self.obs_dim = int(obs_dim)
        self.reg = float(reg)
        self.every = int(every)
        self.obs_clip = float(obs_clip)
        p = 2 * self.obs_dim + 4
        self.w = np.zeros(p)
        # normal equations of the trajectories finished since the last fit: sum phi phi^T,
        # sum phi G, and how many trajectories they hold
        self.A = np.zeros((p, p))
        self.c = np.zeros(p)
        self.pending = np.zeros(1)
        self.fits = 0
        self._phi = np.empty((0, p))

    def features(self, obs: np.ndarray) -> np.ndarray:
        """Return ``phi`` of every row of ``obs`` (``T x (2 obs_dim + 4)``), a reused buffer."""
        T, n = obs.shape
        if self._phi.shape[0] < T:
            self._phi = np.empty((max(T, 2 * self._phi.shape[0]), 2 * n + 4))
        phi = self._phi[:T]
        o = phi[:, :n]
        np.clip(obs, -self.obs_clip, self.obs_clip, out=o)
        np.multiply(o, o, out=phi[:, n : 2 * n])
        tt = np.arange(T) / self.horizon
        phi[:, 2 * n] = tt
        phi[:, 2 * n + 1] = tt * tt
        phi[:, 2 * n + 2] = tt * tt * tt
        phi[:, 2 * n + 3] = 1.0
        return phi

    def observe(self, obs: np.ndarray, G: np.ndarray, b: np.ndarray) -> None:
        """Write this trajectory's ``b`` (the current fit) into ``b``, then add it to the data
        of the next fit; refit once ``every`` trajectories are in (``every = 0``: only at
        ``end_round``)."""
        phi = self.features(obs)
        np.matmul(phi, self.w, out=b)
        self.A += phi.T @ phi
        self.c += phi.T @ G
        self.pending += 1.0
        if self.every > 0 and self.pending[0] >= self.every:
            self.fit()

    def fit(self) -> None:
        """Refit ``w`` on the trajectories since the last fit (if any), then forget them.

        Ridge ``(A + reg I) w = c``; as garage does, the ridge grows tenfold (up to five
        times) while the solution is not finite, and the old ``w`` stays if none is.
        """
        if self.pending[0] == 0:
            return
        reg = self.reg
        eye = np.eye(self.A.shape[0])
        for _ in range(5):
            try:
                w = np.linalg.solve(self.A + reg * eye, self.c)
            except np.linalg.LinAlgError:
                w = None
            if w is not None and np.isfinite(w).all():
                self.w[:] = w
                break
            reg *= 10.0
        self.fits += 1
        self.A[:] = 0.0
        self.c[:] = 0.0
        self.pending[:] = 0.0

    def end_round(self) -> None:
        """Refit at a round boundary from the trajectories finished since the last fit."""
        self.fit()

    def state(self) -> dict[str, np.ndarray]:
        """Return the state as plain arrays (copies)."""
        return {"w": self.w.copy(), "A": self.A.copy(), "c": self.c.copy(),
                "pending": self.pending.copy()}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Set the state from ``state()``'s arrays."""
        for key in ("w", "A", "c", "pending"):
            _put(getattr(self, key), state[key], key)


def _put(dst: np.ndarray, src, name: str) -> None:
    src = np.asarray(src, dtype=np.float64)
    if src.shape != dst.shape:
        raise ValueError(f"baseline state {name!r} has shape {src.shape}, expected {dst.shape}")
    dst[...] = src


def make_baseline(est: dict, horizon: int, obs_dim: int):
    """Return the baseline the ``[estimator]`` table ``est`` asks for (None for ``none``)."""
    kind = est["baseline"]
    if kind == "none":
        return None
    if kind == "time":
        return TimeBaseline(horizon, est["time_rate"])
    if kind == "linear":
        return LinearBaseline(horizon, obs_dim, est["linear_reg"], est["linear_every"],
                              est["obs_clip"])
    raise ValueError(f"unknown baseline {kind!r}; choose one of {BASELINES}")
