"""Estimators: the per-step return coefficients of each gradient estimator, and the
gradients they make with the score sum (ALGORITHMS sections 0 and 6)."""

import math

import numpy as np

from .jit import CACHE, njit
from .mlp import logp_batch, score_sum


@njit(cache=CACHE, inline="always")
def _weighted_tail_sums(disc, weight, coef):
    """Write ``weight * sum_{h>=t} disc[h]`` into ``coef`` (summed from the end)."""
    acc = 0.0
    for t in range(disc.shape[0] - 1, -1, -1):
        acc += disc[t]
        coef[t] = weight * acc


@njit(cache=CACHE)
def reward_to_go(rew, gamma, weight, coef):
    """Write ``weight * sum_{h>=t} gamma^h r_h`` (gamma counted from step 0) into ``coef``."""
    T = rew.shape[0]
    disc = np.empty(T)
    g = 1.0
    for t in range(T):
        disc[t] = g * rew[t]
        g *= gamma
    _weighted_tail_sums(disc, weight, coef)


@njit(cache=CACHE)
def grad_gpomdp(theta, sizes, head, obs, acts, rew, gamma, weight, out):
    """Add ``weight * g_H(tau, theta)`` (truncated GPOMDP, ALGORITHMS section 0) to ``out``."""
    coef = np.empty(rew.shape[0])
    reward_to_go(rew, gamma, weight, coef)
    score_sum(theta, sizes, head, obs, acts, coef, out)


@njit(cache=CACHE)
def is_coefficients(logp_target, logp_behaviour, rew, gamma, clip, weight, coef):
    """Write the importance-weighted return coefficients of ALGORITHMS section 6 into ``coef``.

    ``coef[t] = weight * sum_{h>=t} gamma^h r_h W_h`` with
    ``W_h = prod_{j<=h} min(clip, pi_theta(a_j|s_j) / pi_beta(a_j|s_j))``.
    """
    T = rew.shape[0]
    disc = np.empty(T)
    g = 1.0
    w = 1.0
    for t in range(T):
        rho = math.exp(logp_target[t] - logp_behaviour[t])
        w *= min(clip, rho)
        disc[t] = g * rew[t] * w
        g *= gamma
    _weighted_tail_sums(disc, weight, coef)


@njit(cache=CACHE)
def grad_is(theta, sizes, head, obs, acts, rew, logp_behaviour, gamma, clip, weight, out):
    """Add ``weight * g_IS(tau; theta, beta)`` to ``out``, beta given by its stored ``log pi``."""
    T = rew.shape[0]
    lp = np.empty(T)
    logp_batch(theta, sizes, head, obs, acts, lp)
    coef = np.empty(T)
    is_coefficients(lp, logp_behaviour, rew, gamma, clip, weight, coef)
    score_sum(theta, sizes, head, obs, acts, coef, out)
