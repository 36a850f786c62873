"""Compiled kernels (numba): plain arrays in and out; no MPI, gymnasium or config here.

Installed as ``nigt_hpc.kernels`` (``setup.py`` maps the top-level ``kernels/`` folder).
"""

from .policy import (
    HEAD_GAUSS_LOGSTD,
    HEAD_GAUSS_SOFTPLUS,
    HEAD_SOFTMAX,
    SIGMA_MIN,
    act,
    act_dim_of,
    act_noise,
    act_row,
    aligned_copy,
    aligned_empty,
    grad_gpomdp,
    grad_is,
    init_theta,
    is_aligned,
    is_coefficients,
    logp_batch,
    n_params,
    net_out_dim,
    reward_to_go,
    row_buffers,
    score_sum,
    work_size,
)
from .warmup import warmup

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
    "grad_gpomdp",
    "grad_is",
    "init_theta",
    "is_aligned",
    "is_coefficients",
    "logp_batch",
    "n_params",
    "net_out_dim",
    "reward_to_go",
    "row_buffers",
    "score_sum",
    "warmup",
    "work_size",
]
