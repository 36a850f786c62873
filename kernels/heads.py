"""Policy heads: the distribution on the network's output row, its log-probability, its
score with respect to that row, and sampling from it.

* ``HEAD_SOFTMAX``: categorical softmax over ``n_out`` logits.  The "action" stored for a
  step is the index, as a float in column 0.
* ``HEAD_GAUSS_SOFTPLUS``: the paper's head.  ``n_out = 2 * act_dim``; ``mu`` is the first
  half, ``sigma = softplus(z) + SIGMA_MIN`` the second.
* ``HEAD_GAUSS_LOGSTD``: ``n_out = act_dim`` means and a state-independent ``log_std``,
  stored at the end of ``theta``.

For the Gaussian heads the stored "action" is the pre-squash sample ``u``; because tanh is a
fixed invertible map, ``grad log pi(a|s) = grad log N(u; mu, sigma)`` (ALGORITHMS section
0), so every log-probability and score here is of ``u``.
"""

import math

from .jit import CACHE, njit

HEAD_SOFTMAX = 0
HEAD_GAUSS_SOFTPLUS = 1
HEAD_GAUSS_LOGSTD = 2

# Added to softplus so sigma stays positive when softplus underflows; small enough that it
# never matters for a sensible policy.
SIGMA_MIN = 1e-6
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@njit(cache=CACHE, inline="always")
def _softplus(z):
    if z > 30.0:
        return z
    return math.log1p(math.exp(z))


@njit(cache=CACHE, inline="always")
def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=CACHE, inline="always")
def _sample_index(e, n_out, r):
    """Return the first ``k`` with ``r < e[0] + ... + e[k]`` (the last index if none):
    inverse-CDF sampling on the unnormalised exps, ``r = u * sum(e)`` for a uniform ``u``."""
    acc = 0.0
    for k in range(n_out):
        acc += e[k]
        if r < acc:
            return k
    return n_out - 1


@njit(cache=CACHE, inline="always")
def _exp0(d):
    """Return exp(d), skipping the libm call at d == 0 (exp(0) is exactly 1: same bits).

    The largest logit always has d == 0, so a 2-action softmax makes one exp call, not two.
    """
    if d == 0.0:
        return 1.0
    return math.exp(d)


@njit(cache=CACHE, inline="always")
def _max_and_sumexp(z, n_out):
    """Return (max z, sum exp(z - max z)): a softmax without overflow."""
    m = z[0]
    for k in range(1, n_out):
        if z[k] > m:
            m = z[k]
    s = 0.0
    for k in range(n_out):
        s += _exp0(z[k] - m)
    return m, s


@njit(cache=CACHE, inline="always")
def _softmax_exps(z, n_out, e):
    """Write exp(z - max z) into ``e``; return (max z, their sum).  Same values, in the same
    order, as ``_max_and_sumexp``, kept for the sampling loop instead of recomputed."""
    m = z[0]
    for k in range(1, n_out):
        if z[k] > m:
            m = z[k]
    s = 0.0
    for k in range(n_out):
        ek = _exp0(z[k] - m)
        e[k] = ek
        s += ek
    return m, s


@njit(cache=CACHE)
def _head_logp(theta, sizes, head, z, a):
    """Return log pi(a | z) for one step, ``z`` the network output row, ``a`` the stored row."""
    n_out = sizes[-1]
    if head == HEAD_SOFTMAX:
        m, s = _max_and_sumexp(z, n_out)
        return z[int(a[0])] - m - math.log(s)
    lp = 0.0
    if head == HEAD_GAUSS_SOFTPLUS:
        k_dim = n_out // 2
        for j in range(k_dim):
            sig = _softplus(z[k_dim + j]) + SIGMA_MIN
            e = (a[j] - z[j]) / sig
            lp += -0.5 * e * e - math.log(sig) - LOG_SQRT_2PI
        return lp
    base = theta.shape[0] - n_out
    for j in range(n_out):
        ls = theta[base + j]
        e = (a[j] - z[j]) * math.exp(-ls)
        lp += -0.5 * e * e - ls - LOG_SQRT_2PI
    return lp


@njit(cache=CACHE)
def _head_score(theta, sizes, head, z, a, c, dz, glogstd):
    """Write ``c * d log pi / d z`` into ``dz``; add ``c * d log pi / d log_std`` to ``glogstd``."""
    n_out = sizes[-1]
    if head == HEAD_SOFTMAX:
        m, s = _softmax_exps(z, n_out, dz)  # each exp once, kept in dz
        for k in range(n_out):
            dz[k] = -c * dz[k] / s
        dz[int(a[0])] += c
    elif head == HEAD_GAUSS_SOFTPLUS:
        k_dim = n_out // 2
        for j in range(k_dim):
            zs = z[k_dim + j]
            sig = _softplus(zs) + SIGMA_MIN
            diff = a[j] - z[j]
            inv = 1.0 / sig
            dz[j] = c * diff * inv * inv
            dsig = diff * diff * inv * inv * inv - inv
            dz[k_dim + j] = c * dsig * _sigmoid(zs)
    else:
        base = theta.shape[0] - n_out
        for j in range(n_out):
            ls = theta[base + j]
            inv = math.exp(-ls)
            diff = a[j] - z[j]
            dz[j] = c * diff * inv * inv
            glogstd[j] += c * (diff * diff * inv * inv - 1.0)
