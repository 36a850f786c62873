"""Compiled kernels (numba): plain arrays in and out; no MPI, gymnasium or config here.

Installed as ``nigt_hpc.kernels`` (``setup.py`` maps the top-level ``kernels/`` folder).
By job: ``heads``, ``mlp`` (per-step passes), ``linear_softmax`` (fast paths), ``layout``
(theta and buffer layout), ``estimators`` (return coefficients, gradients), ``batched``
(matrix-form gradients), ``envs`` and ``mujoco`` (compiled environments); ``policy`` keeps
the names these had when they shared one file.
"""

from .estimators import (
    gpomdp_coefficients,
    grad_gpomdp,
    grad_gpomdp_baseline,
    grad_is,
    grad_is_baseline,
    is_coefficients,
    is_coefficients_baseline,
    reward_to_go,
)
from .heads import HEAD_GAUSS_LOGSTD, HEAD_GAUSS_SOFTPLUS, HEAD_SOFTMAX, SIGMA_MIN
from .layout import (
    act_dim_of,
    act_row,
    aligned_copy,
    aligned_empty,
    init_theta,
    is_aligned,
    n_params,
    net_out_dim,
    row_buffers,
    work_size,
)
from .mlp import act, act_noise, logp_batch, score_sum
from .warmup import cache_dir, cache_is_cold, warmup

__all__ = [
    "HEAD_SOFTMAX",
    "HEAD_GAUSS_SOFTPLUS",
    "HEAD_GAUSS_LOGSTD",
    "SIGMA_MIN",
    "act",
    "act_dim_of",
    "act_noise",
    "act_row",
    "aligned_copy",
    "aligned_empty",
    "cache_dir",
    "cache_is_cold",
    "gpomdp_coefficients",
    "grad_gpomdp",
    "grad_gpomdp_baseline",
    "grad_is",
    "grad_is_baseline",
    "init_theta",
    "is_aligned",
    "is_coefficients",
    "is_coefficients_baseline",
    "logp_batch",
    "n_params",
    "net_out_dim",
    "reward_to_go",
    "row_buffers",
    "score_sum",
    "warmup",
    "work_size",
]
