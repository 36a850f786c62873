"""PolicySpec: the layer sizes, head and action mapping chosen from config and env spaces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels as K
from .config import ConfigError

HEADS = {"softmax": K.HEAD_SOFTMAX, "gaussian_softplus": K.HEAD_GAUSS_SOFTPLUS,
         "gaussian_logstd": K.HEAD_GAUSS_LOGSTD}


@dataclass
class PolicySpec:
    """Everything a kernel needs besides ``theta``: sizes, head, action centre/scale."""

    sizes: np.ndarray
    head: int
    act_dim: int  # width of a stored action row (1 for softmax)
    a_center: np.ndarray
    a_scale: np.ndarray
    squash: bool

    @property
    def n_params(self) -> int:
        """Return d, the length of theta."""
        return K.n_params(self.sizes, self.head)

    @property
    def work_size(self) -> int:
        """Return the scratch length the act kernel needs."""
        return K.work_size(self.sizes)

    def init_theta(self, seed: int, init_log_std: float) -> np.ndarray:
        """Return theta_0, the same on every rank for the same seed."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E7A]))
        return K.init_theta(self.sizes, self.head, rng, init_log_std)


def make_spec(cfg: dict, info: dict) -> PolicySpec:
    """Return the PolicySpec for config ``cfg`` and an env description from ``envs.describe``."""
    pol = cfg["policy"]
    head_name = pol["head"]
    if head_name == "auto":
        head_name = "softmax" if info["discrete"] else "gaussian_softplus"
    if info["discrete"] and head_name != "softmax":
        raise ConfigError(f"policy.head = {head_name!r} does not fit a Discrete action space; "
                          "use 'softmax' (or 'auto')")
    if not info["discrete"] and head_name == "softmax":
        raise ConfigError("policy.head = 'softmax' does not fit a continuous (Box) action "
                          "space; use 'gaussian_softplus', 'gaussian_logstd' or 'auto'")
    head = HEADS[head_name]
    hidden = list(pol["hidden"]) if pol["kind"] == "mlp" else []
    n_out = info["n_actions"] if info["discrete"] else K.net_out_dim(head, info["act_dim"])
    sizes = np.array([info["obs_dim"], *hidden, n_out], dtype=np.int64)
    low, high = info["low"], info["high"]
    return PolicySpec(sizes=sizes, head=head, act_dim=info["act_dim"],
                      a_center=(high + low) / 2.0, a_scale=(high - low) / 2.0,
                      squash=bool(pol["squash"]))
