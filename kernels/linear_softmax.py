"""Fast paths for a linear softmax policy (the classic-control policies)."""

import math

import numpy as np

from .heads import HEAD_SOFTMAX, _sample_index, _softmax_exps
from .jit import CACHE, njit

# The classic-control policy (CartPole 4 -> 2, Acrobot 6 -> 3): a linear layer and a
# softmax head.  The generic kernels spend most of a step on layer bookkeeping (views,
# reshapes, a call per layer) for 10-21 parameters: the rollout ran 3.1M steps/s and the
# gradient 5.1M (measured).  These write the same numbers: logits summed in the order of
# ``_forward_row``, exps as in ``_softmax_exps``, scores as in ``_head_score``, so the
# trajectories and gradients are bitwise those of the generic path (tests pin it).


@njit(cache=CACHE, inline="always")
def _is_linear_softmax(sizes, head):
    return head == HEAD_SOFTMAX and sizes.shape[0] == 2


@njit(cache=CACHE, inline="always")
def _linear_softmax_row(theta, n_in, n_out, obs, t, z, e):
    """Write the logits of row ``obs[t]`` into ``z`` and exp(z - max) into ``e``; return
    (max, sum of e)."""
    pb = n_in * n_out
    for o in range(n_out):
        z[o] = theta[pb + o]
    for i in range(n_in):
        xi = obs[t, i]
        for o in range(n_out):
            z[o] += theta[i * n_out + o] * xi
    return _softmax_exps(z, n_out, e)


@njit(cache=CACHE, inline="always")
def act_linear_softmax(theta, n_in, n_out, obs, t, u, z, e):
    """``act_noise`` for a linear softmax policy on row ``t`` of ``obs`` with uniform ``u``:
    return (action index, log pi, sum of the exps left in ``e``)."""
    m, s = _linear_softmax_row(theta, n_in, n_out, obs, t, z, e)
    ai = _sample_index(e, n_out, u * s)
    return ai, z[ai] - m - math.log(s), s


@njit(cache=CACHE, inline="always")
def _linear_softmax_score(theta, n_in, n_out, obs, t, a_t, c, e, s, dz, out):
    """Add ``c * grad log pi(a_t | obs[t])`` to ``out``, from the row's exps ``e`` and their
    sum ``s``: the arithmetic of ``_head_score`` and ``_backward_row``."""
    for k in range(n_out):
        dz[k] = -c * e[k] / s
    dz[a_t] += c
    pb = n_in * n_out
    for o in range(n_out):
        out[pb + o] += dz[o]
    for i in range(n_in):
        xi = obs[t, i]
        for o in range(n_out):
            out[i * n_out + o] += xi * dz[o]


@njit(cache=CACHE)
def _score_sum_linear_softmax(theta, obs, acts, coef, out):
    """``score_sum`` for a linear softmax policy."""
    n_in = obs.shape[1]
    n_out = theta.shape[0] // (n_in + 1)
    z = np.empty(n_out)
    e = np.empty(n_out)
    if n_out == 2:  # the exps first, then the register-accumulating two-action pass
        kept = np.empty((obs.shape[0], 3))
        for t in range(obs.shape[0]):
            m, s = _linear_softmax_row(theta, n_in, 2, obs, t, z, e)
            kept[t, 0] = e[0]
            kept[t, 1] = e[1]
            kept[t, 2] = s
        _score_sum_softmax2_kept(obs, acts, kept, coef, out)
        return
    dz = np.empty(n_out)
    for t in range(obs.shape[0]):
        c = coef[t]
        if c == 0.0:
            continue
        m, s = _linear_softmax_row(theta, n_in, n_out, obs, t, z, e)
        _linear_softmax_score(theta, n_in, n_out, obs, t, int(acts[t, 0]), c, e, s, dz, out)


@njit(cache=CACHE, inline="always")
def _softmax2_dz(c, e0, e1, s, a_is_0):
    """``dz`` of ``_linear_softmax_score`` for two actions, without a branch on the action
    (random actions made that branch mispredict half the time): both sums are formed and
    one is selected, so the numbers are those of ``dz[a_t] += c``."""
    d0 = -c * e0 / s
    d1 = -c * e1 / s
    d0c = d0 + c
    d1c = d1 + c
    return (d0c if a_is_0 else d0), (d1 if a_is_0 else d1c)


@njit(cache=CACHE)
def _score_sum_softmax2_kept(obs, acts, kept, coef, out):
    """``score_sum_linear_softmax_kept`` for two actions: the same numbers, 2x faster.

    The gains (measured on CartPole, 9.8 -> 4.4 ns per step): the accumulators of the bias
    and of four inputs at a time live in registers (an ``out[k] +=`` loop kept them in
    memory, since ``out`` may alias ``obs``), and no branch on the action.  Each entry of
    ``out`` still adds its terms in step order, starting from its old value: same bits.
    The first four inputs go in the pass that forms ``dz``; any further ones in passes of
    four (then one) over the stored ``dz``.
    """
    n_in = obs.shape[1]
    T = obs.shape[0]
    pb = 2 * n_in
    first4 = n_in >= 4
    dz = np.empty((T, 2))
    b0 = out[pb]
    b1 = out[pb + 1]
    acc = _load8(out, 0) if first4 else (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for t in range(T):
        c = coef[t]
        d0, d1 = _softmax2_dz(c, kept[t, 0], kept[t, 1], kept[t, 2], acts[t, 0] == 0.0)
        dz[t, 0] = d0
        dz[t, 1] = d1
        if c != 0.0:  # a zero coefficient adds nothing (as in ``_score_sum``)
            b0 += d0
            b1 += d1
            if first4:
                acc = _add4x2(acc, obs, t, 0, d0, d1)
    out[pb] = b0
    out[pb + 1] = b1
    i = 0
    if first4:
        _store8(out, 0, acc)
        i = 4
    while i + 4 <= n_in:
        acc = _load8(out, 2 * i)
        for t in range(T):
            if coef[t] != 0.0:
                acc = _add4x2(acc, obs, t, i, dz[t, 0], dz[t, 1])
        _store8(out, 2 * i, acc)
        i += 4
    while i < n_in:
        k = 2 * i
        a0 = out[k]
        a1 = out[k + 1]
        for t in range(T):
            if coef[t] == 0.0:
                continue
            xi = obs[t, i]
            a0 += xi * dz[t, 0]
            a1 += xi * dz[t, 1]
        out[k] = a0
        out[k + 1] = a1
        i += 1


@njit(cache=CACHE, inline="always")
def _load8(out, k):
    return (out[k], out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6],
            out[k + 7])


@njit(cache=CACHE, inline="always")
def _store8(out, k, a):
    out[k], out[k + 1], out[k + 2], out[k + 3] = a[0], a[1], a[2], a[3]
    out[k + 4], out[k + 5], out[k + 6], out[k + 7] = a[4], a[5], a[6], a[7]


@njit(cache=CACHE, inline="always")
def _add4x2(a, obs, t, i, d0, d1):
    """Return the eight sums ``a`` (inputs ``i .. i+3`` by the two actions) with step ``t``'s
    terms added: a tuple, so LLVM keeps them in registers across the loop over steps."""
    x0, x1, x2, x3 = obs[t, i], obs[t, i + 1], obs[t, i + 2], obs[t, i + 3]
    return (a[0] + x0 * d0, a[1] + x0 * d1, a[2] + x1 * d0, a[3] + x1 * d1,
            a[4] + x2 * d0, a[5] + x2 * d1, a[6] + x3 * d0, a[7] + x3 * d1)


@njit(cache=CACHE)
def score_sum_linear_softmax_kept(theta, obs, acts, kept, coef, out):
    """``score_sum`` for a linear softmax policy from the exps the rollout kept: row ``t`` of
    ``kept`` holds the step's ``exp(z - max z)`` then their sum (see
    ``kernels.envs.rollout_grad``).  No forward pass, no exp: the same numbers."""
    n_in = obs.shape[1]
    n_out = theta.shape[0] // (n_in + 1)
    if n_out == 2:
        _score_sum_softmax2_kept(obs, acts, kept, coef, out)
        return
    dz = np.empty(n_out)
    for t in range(obs.shape[0]):
        c = coef[t]
        if c == 0.0:
            continue
        _linear_softmax_score(theta, n_in, n_out, obs, t, int(acts[t, 0]), c, kept[t],
                              kept[t, n_out], dz, out)


@njit(cache=CACHE)
def _logp_batch_linear_softmax(theta, obs, acts, out):
    """``logp_batch`` for a linear softmax policy."""
    n_in = obs.shape[1]
    n_out = theta.shape[0] // (n_in + 1)
    z = np.empty(n_out)
    e = np.empty(n_out)
    for t in range(obs.shape[0]):
        m, s = _linear_softmax_row(theta, n_in, n_out, obs, t, z, e)
        out[t] = z[int(acts[t, 0])] - m - math.log(s)
