"""Policy kernels, by the names they had when they all lived in this one file.

The kernels are split by job: ``heads`` (the distributions on the network's output),
``mlp`` (forward and backward passes, per-step sampling, log-probabilities, score sums),
``linear_softmax`` (the classic-control fast paths), ``layout`` (theta's and the sampler's
memory layout, parameter initialisation) and ``estimators`` (return coefficients and
gradients).  This module keeps ``kernels.policy.<name>`` working for every public name.
No MPI, gymnasium or configuration here: plain arrays in and out.
"""

from .estimators import (
    grad_gpomdp,
    grad_is,
    is_coefficients,
    reward_to_go,
)
from .heads import (
    HEAD_GAUSS_LOGSTD,
    HEAD_GAUSS_SOFTPLUS,
    HEAD_SOFTMAX,
    LOG_SQRT_2PI,
    SIGMA_MIN,
)
from .jit import CACHE, njit
from .layout import (
    ALIGN,
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
from .linear_softmax import act_linear_softmax, score_sum_linear_softmax_kept
from .mlp import act, act_noise, logp_batch, score_sum, tanh_array

__all__ = [
    "ALIGN", "CACHE", "HEAD_GAUSS_LOGSTD", "HEAD_GAUSS_SOFTPLUS", "HEAD_SOFTMAX",
    "LOG_SQRT_2PI", "SIGMA_MIN", "act", "act_dim_of", "act_linear_softmax", "act_noise",
    "act_row", "aligned_copy", "aligned_empty", "grad_gpomdp", "grad_is", "init_theta",
    "is_aligned", "is_coefficients", "logp_batch", "n_params", "net_out_dim", "njit",
    "reward_to_go", "row_buffers", "score_sum", "score_sum_linear_softmax_kept", "tanh_array",
    "work_size",
]
