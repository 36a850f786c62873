"""Observation normalisation shared by every worker (``policy.obs_norm``).

The policy sees ``clip((s - mean) / sqrt(var + EPS), +-policy.obs_norm_clip)``, where
``mean`` and ``var`` are running statistics of the raw observations of **all** workers.
They are frozen during a round and move only at round boundaries:

* every step adds the raw observation to the worker's round moments, shifted by the frozen
  mean: ``[n, sum(s - mean), sum((s - mean)^2)]`` (kernels.obsnorm);
* the MPI engine adds those moments to the round's one Allreduce (no extra message; all
  ranks share the shift, so the sums add), and every rank merges the same totals into the
  same statistics (``merge_moments``): bitwise-identical statistics, like theta;
* AFedPG's server merges each worker's trajectory moments as its gradient arrives and sends
  the statistics back with the parameters (``pack`` / ``unpack``).

Choices (inferred; the paper has no normalisation): the moments are pooled by observation
count over workers (so under Malenia a fast worker's states weigh more in the statistics,
though never in the gradient's weights); every observation a worker fed the policy during
the round counts, including those of trajectories the rule later discarded; the first round
(no statistics yet) sees raw observations, unclipped; a trajectory resumed across a boundary
(``algo.reuse_stale``) keeps, for its earlier steps, the normalisation it was sampled under,
and its importance weights are computed on those stored inputs.  Because the policy's input
is stored normalised in each trajectory, the gradient and importance-weight kernels and the
linear baseline's features all see exactly what the policy saw.

The statistics are merged with Chan et al.'s parallel update (exact for any split of the
data into batches).  No MPI here.
"""

from __future__ import annotations

import numpy as np

from .kernels import obsnorm as KN

EPS = 1e-8  # added to var before the square root, as gymnasium's NormalizeObservation


class ObsNorm:
    """Running observation statistics, frozen between ``update`` calls."""

    def __init__(self, dim: int, clip: float = 10.0):
        self.dim = int(dim)
        self.clip = float(clip)
        self.count = 0.0
        self.mean = np.zeros(self.dim)
        self.var = np.ones(self.dim)
        self.inv_std = np.ones(self.dim)
        self.moments = np.zeros(1 + 2 * self.dim)  # this round's, shifted by ``mean``
        self.out = np.empty(self.dim)  # the policy's input of the current step

    @property
    def active(self) -> bool:
        """Return whether statistics exist (before them, observations pass unchanged)."""
        return self.count > 0.0

    def step(self, s: np.ndarray) -> np.ndarray:
        """Add raw ``s`` to this round's moments; return the policy's input (a buffer
        reused by the next call)."""
        KN.normalise_observe(s, self.mean, self.inv_std, self.clip, self.count > 0.0,
                             self.moments, self.out)
        return self.out

    def apply(self, s: np.ndarray) -> np.ndarray:
        """Return the policy's input for raw ``s`` (one observation or a batch), adding
        nothing to the moments (evaluation)."""
        return apply(np.asarray(s, dtype=np.float64), self.mean, self.var, self.count,
                     self.clip)

    def take_moments(self) -> np.ndarray:
        """Return this round's moments (a copy) and start the next round's at zero."""
        m = self.moments.copy()
        self.moments[:] = 0.0
        return m

    def merge_moments(self, m: np.ndarray) -> None:
        """Merge summed moments ``m`` (shifted by this object's current mean) into the
        statistics and zero the local ones: the round-boundary update."""
        b = self.batch_of(m)  # read before the local moments (perhaps ``m``) are zeroed
        self.moments[:] = 0.0
        self.merge_packed_batch(b)

    def merge_batch(self, n: float, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        """Merge a batch of ``n`` observations with mean ``mean_b`` and summed squared
        deviations ``m2_b`` (Chan et al.)."""
        if n <= 0.0:
            return
        tot = self.count + n
        delta = mean_b - self.mean
        m2 = self.var * self.count + m2_b + delta * delta * (self.count * n / tot)
        self.mean = self.mean + delta * (n / tot)
        self.var = m2 / tot
        self.count = tot
        self.inv_std = 1.0 / np.sqrt(self.var + EPS)

    def batch_of(self, m: np.ndarray) -> np.ndarray:
        """Return ``[n, mean_b, m2_b]`` of moments ``m`` taken against this object's mean
        (what a worker sends a parameter server, whose mean may differ)."""
        n = float(m[0])
        d = self.dim
        out = np.zeros(1 + 2 * d)
        if n > 0.0:
            s1, s2 = m[1 : 1 + d], m[1 + d :]
            out[0] = n
            out[1 : 1 + d] = self.mean + s1 / n
            out[1 + d :] = np.maximum(s2 - s1 * s1 / n, 0.0)
        return out

    def merge_packed_batch(self, b: np.ndarray) -> None:
        """Merge ``batch_of``'s vector."""
        d = self.dim
        self.merge_batch(float(b[0]), b[1 : 1 + d], b[1 + d :])

    # the statistics as one vector [count, mean, var], for messages and checkpoints
    def pack(self, out: np.ndarray | None = None) -> np.ndarray:
        """Return ``[count, mean, var]`` (into ``out`` when given)."""
        d = self.dim
        out = np.empty(1 + 2 * d) if out is None else out
        out[0] = self.count
        out[1 : 1 + d] = self.mean
        out[1 + d :] = self.var
        return out

    def unpack(self, v: np.ndarray) -> None:
        """Set the statistics from ``pack``'s vector (the round moments are untouched)."""
        d = self.dim
        self.count = float(v[0])
        self.mean = np.array(v[1 : 1 + d], dtype=np.float64)
        self.var = np.array(v[1 + d : 1 + 2 * d], dtype=np.float64)
        self.inv_std = 1.0 / np.sqrt(self.var + EPS)

    def state(self) -> dict:
        """Return the statistics as plain JSON values (exact: floats round-trip by repr)."""
        return {"count": self.count, "mean": self.mean.tolist(), "var": self.var.tolist(),
                "clip": self.clip}

    def restore(self, st: dict) -> None:
        """Set the statistics from ``state()``; ValueError if they do not fit."""
        mean, var = np.asarray(st["mean"], dtype=np.float64), np.asarray(st["var"],
                                                                         dtype=np.float64)
        if mean.shape != (self.dim,) or var.shape != (self.dim,):
            raise ValueError(f"obs_norm holds {mean.size} means and {var.size} variances, the "
                             f"observation has {self.dim} entries")
        count = float(st["count"])
        if not (np.isfinite(mean).all() and np.isfinite(var).all() and np.isfinite(count)
                and count >= 0 and (var >= 0).all()):
            raise ValueError("obs_norm holds a negative or non-finite statistic")
        self.count, self.mean, self.var = count, mean, var
        self.inv_std = 1.0 / np.sqrt(self.var + EPS)
        self.moments[:] = 0.0


def apply(x: np.ndarray, mean: np.ndarray, var: np.ndarray, count: float,
          clip: float) -> np.ndarray:
    """Return the normalised, clipped ``x`` the way ``ObsNorm.step`` computes it."""
    if count <= 0.0:
        return x
    return np.clip((x - mean) * (1.0 / np.sqrt(var + EPS)), -clip, clip)


def make_obsnorm(cfg: dict, obs_dim: int) -> ObsNorm | None:
    """Return the ObsNorm ``policy.obs_norm`` asks for, or None."""
    p = cfg["policy"]
    return ObsNorm(obs_dim, p["obs_norm_clip"]) if p["obs_norm"] else None
