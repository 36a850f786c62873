"""The outer steps: NIGT (docs/ALGORITHMS.md §1, whose line numbers the comments below cite)
and plain policy-gradient ascent.

Pure numpy: no MPI, no environment.  The state is replicated on every rank; every rank
applies the same step to the same aggregated ``g`` and so stays bitwise identical.  The
arrays start on 64-byte boundaries, as the kernels want ``theta``
(``kernels.aligned_empty``).
"""

import numpy as np

from . import kernels as K


def extrapolate(theta: np.ndarray, theta_prev: np.ndarray, eta: float,
                out: np.ndarray) -> np.ndarray:
    """Write line 4's ``theta + ((1-eta)/eta)(theta - theta_prev)`` into ``out``; return it.

    Evaluated in that order in place (IEEE + and * commute, so these are the bits of the
    plain expression), into an array the caller places (the kernels want it aligned).
    """
    np.subtract(theta, theta_prev, out=out)
    out *= (1.0 - eta) / eta
    out += theta
    return out


class NIGT:
    """NIGT state ``theta``, ``theta_prev`` and ``d``, with the paper's symbols.

    ``eta`` is the momentum in (0, 1]; ``alpha`` is the fixed length of every step.
    """

    def __init__(self, theta0: np.ndarray, eta: float, alpha: float):
        if not 0.0 < eta <= 1.0:
            raise ValueError("eta must lie in (0, 1]")
        if alpha <= 0.0:
            raise ValueError("alpha must be > 0")
        self.eta = float(eta)
        self.alpha = float(alpha)
        self.theta = K.aligned_copy(np.asarray(theta0, dtype=np.float64))
        self.theta_prev = K.aligned_copy(self.theta)
        self.d = K.aligned_copy(np.zeros_like(self.theta))
        self.t = 0  # outer iterations done after the initial step

    def _normalised_step(self) -> None:
        # lines 2 and 7: theta_{t+1} = theta_t + alpha d_t / ||d_t||
        norm = float(np.linalg.norm(self.d))
        self.theta_prev[:] = self.theta
        if norm > 0.0:  # a zero direction (e.g. all returns zero) leaves theta where it is
            self.theta += (self.alpha / norm) * self.d

    def initialise(self, g0: np.ndarray) -> None:
        """Apply lines 1-2: ``d_0`` is the M_init-gradient estimate at ``theta_0``."""
        self.d[:] = g0
        self._normalised_step()

    def theta_tilde(self) -> np.ndarray:
        """Return line 4's extrapolated point ``theta_t + ((1-eta)/eta)(theta_t - theta_{t-1})``."""
        return extrapolate(self.theta, self.theta_prev, self.eta,
                           K.aligned_empty(self.theta.shape[0]))

    def step(self, g: np.ndarray) -> None:
        """Apply lines 6-7 with the aggregated gradient ``g_t`` taken at ``theta_tilde``."""
        self.d *= 1.0 - self.eta
        self.d += self.eta * g
        self._normalised_step()
        self.t += 1

    def state(self) -> dict:
        """Return the arrays and counters a checkpoint needs."""
        return {"theta": self.theta, "theta_prev": self.theta_prev, "d": self.d, "t": self.t}


class PolicyGradient:
    """Plain ascent ``theta_{k+1} = theta_k + lr g_k`` (Rennala PG, synchronous PG)."""

    def __init__(self, theta0: np.ndarray, lr: float):
        if lr <= 0.0:
            raise ValueError("lr must be > 0")
        self.lr = float(lr)
        self.theta = K.aligned_copy(np.asarray(theta0, dtype=np.float64))
        self.t = 0

    def initialise(self, g0: np.ndarray) -> None:
        """Take the first step from the initial estimate, like any other."""
        self.step(g0)

    def theta_tilde(self) -> np.ndarray:
        """Return the point where gradients are sampled: ``theta`` itself (no extrapolation)."""
        return K.aligned_copy(self.theta)

    def step(self, g: np.ndarray) -> None:
        """Apply ``theta += lr * g``."""
        self.theta += self.lr * g
        self.t += 1

    def state(self) -> dict:
        """Return the arrays and counters a checkpoint needs."""
        return {"theta": self.theta, "t": self.t}
