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


@njit(cache=CACHE, inline="always")
def _discounted(rew, gamma):
    """Return ``gamma^t r_t`` for every step (gamma counted from step 0)."""
    T = rew.shape[0]
    disc = np.empty(T)
    g = 1.0
    for t in range(T):
        disc[t] = g * rew[t]
        g *= gamma
    return disc


@njit(cache=CACHE)
def reward_to_go(rew, gamma, weight, coef):
    """Write ``weight * sum_{h>=t} gamma^h r_h`` (gamma counted from step 0) into ``coef``."""
    _weighted_tail_sums(_discounted(rew, gamma), weight, coef)


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


# --------------------------------------------------------------------------- with a baseline
# g = sum_t (G_t - b_t) grad log pi(a_t|s_t) (ALGORITHMS section 7b): ``base[t] = b_t`` comes
# from trajectories finished before this one, so E[g] is that of the estimator without it.
# With ``base`` all zeros these write the bits of the kernels above (x - 0.0 == x).


@njit(cache=CACHE)
def gpomdp_coefficients(rew, gamma, base, weight, coef):
    """Write ``weight * (G_t - base[t])``, ``G_t = sum_{h>=t} gamma^h r_h``, into ``coef``."""
    disc = _discounted(rew, gamma)
    acc = 0.0
    for t in range(rew.shape[0] - 1, -1, -1):
        acc += disc[t]
        coef[t] = weight * (acc - base[t])


@njit(cache=CACHE)
def is_coefficients_baseline(logp_target, logp_behaviour, rew, gamma, clip, base, weight,
                             coef):
    """Write ``weight * (sum_{h>=t} gamma^h r_h W_h - base[t] W_t)`` into ``coef``.

    ``W_t`` is ``is_coefficients``' truncated weight up to step t, the one the return term of
    step t carries, so the baseline cancels against it as in the unweighted estimator.  With
    ``clip = inf`` the baseline term has mean zero exactly (``E_beta[W_t grad log pi_theta]
    = E_theta[grad log pi_theta] = 0`` given the past); a finite clip biases it the way it
    already biases the return term.  With ``beta = theta`` this is ``gpomdp_coefficients``.
    """
    T = rew.shape[0]
    disc = np.empty(T)
    wts = np.empty(T)
    g = 1.0
    w = 1.0
    for t in range(T):
        rho = math.exp(logp_target[t] - logp_behaviour[t])
        w *= min(clip, rho)
        wts[t] = w
        disc[t] = g * rew[t] * w
        g *= gamma
    acc = 0.0
    for t in range(T - 1, -1, -1):
        acc += disc[t]
        coef[t] = weight * (acc - base[t] * wts[t])


# The two gradients with a baseline are plain Python calling the kernels: a kernel that
# calls ``score_sum`` links and re-optimises its whole code (2-3 s of compile per head,
# measured), while these reuse the compiled ``score_sum`` and ``logp_batch`` (the same bits
# as calling them from a kernel; a call from Python costs about a microsecond).


def grad_gpomdp_baseline(theta, sizes, head, obs, acts, rew, base, gamma, weight, out):
    """Add ``weight * sum_t (G_t - base[t]) grad log pi(a_t|s_t)`` to ``out``."""
    coef = np.empty(rew.shape[0])
    gpomdp_coefficients(rew, gamma, base, weight, coef)
    score_sum(theta, sizes, head, obs, acts, coef, out)


def grad_is_baseline(theta, sizes, head, obs, acts, rew, logp_behaviour, base, gamma, clip,
                     weight, out):
    """Add ``weight * g_IS`` with baseline ``base`` (``is_coefficients_baseline``) to ``out``."""
    T = rew.shape[0]
    lp = np.empty(T)
    logp_batch(theta, sizes, head, obs, acts, lp)
    coef = np.empty(T)
    is_coefficients_baseline(lp, logp_behaviour, rew, gamma, clip, base, weight, coef)
    score_sum(theta, sizes, head, obs, acts, coef, out)
