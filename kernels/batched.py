"""Gradient passes at matrix speed: the whole trajectory at once, as matrix products.

The per-step kernels in ``mlp.py`` run one observation at a time through the network
(matrix-vector work, a few GFLOP/s).  Here a trajectory's ``T`` observations go through
each layer as one ``T x n_in`` by ``n_in x n_out`` product (BLAS through numpy), and the
backward pass is two more products per layer: ``grad W_l = H_l^T Delta_l`` and
``Delta_{l-1} = (Delta_l W_l^T) * (1 - H_l^2)``.  Same layout, heads and results as the
per-step kernels (to rounding: the sums run in another order); ``tests/test_batched.py``
holds the two together.

``use_batched(T, d)`` says when the products win: the fixed cost of a dozen numpy calls
(about 40 µs) must be paid back, so tiny policies and short episodes stay per-step.
Run single-threaded BLAS per rank (``OMP_NUM_THREADS=1``, set by ``jobs/env.sh``).
"""

from __future__ import annotations

import numpy as np

from .estimators import (
    gpomdp_coefficients,
    is_coefficients,
    is_coefficients_baseline,
    reward_to_go,
)
from .heads import HEAD_GAUSS_SOFTPLUS, HEAD_SOFTMAX, LOG_SQRT_2PI, SIGMA_MIN

# Where the matrix form beats the per-step kernels: each numpy call costs about a
# microsecond, 45-110 µs per trajectory in all, so short trajectories stay per-step.
# Measured (median µs/step, per-step / matrix, this package's 2-core machine):
# MLP 11-64-64-3 T=20 1.84/2.62, T=50 1.82/1.56 (inside the Hopper sampler, trajectories
# of 24-55 steps took 3.4 µs/step the matrix way against 2.4 per-step);
# MLP 376-64-64-17 T=10 6.16/7.77, T=20 6.03/5.09; linear 376->17 T=20 1.92/1.62,
# T=50 1.88/1.06.  Both conditions depend only on (T, d), so every rank and every rerun
# picks the same kernel.
BATCH_MIN_STEPS = 16
BATCH_MIN_WORK = 250_000


def use_batched(T: int, d: int) -> bool:
    """Return whether a trajectory of ``T`` steps and ``d`` parameters goes the matrix way."""
    return T >= BATCH_MIN_STEPS and T * d >= BATCH_MIN_WORK


def _layers(theta, sizes):
    """Return [(W, b, offset)] views of every layer (W is n_in x n_out)."""
    out = []
    p = 0
    for l in range(len(sizes) - 1):
        n_in, n_out = int(sizes[l]), int(sizes[l + 1])
        W = theta[p : p + n_in * n_out].reshape(n_in, n_out)
        out.append((W, theta[p + n_in * n_out : p + n_in * n_out + n_out], p))
        p += n_in * n_out + n_out
    return out


class Workspace:
    """Buffers for trajectories of up to ``rows`` steps, kept between calls.

    Temporaries of T x 64 doubles are above glibc's mmap threshold, so fresh ones would
    cost page faults on every call (measured: a third of the pass for Humanoid's MLP).
    """

    def __init__(self, sizes, rows: int):
        self.sizes = tuple(int(n) for n in sizes)
        self.rows = int(rows)
        widths = self.sizes[1:]
        self.act = [np.empty((self.rows, n)) for n in widths]  # layer outputs
        self.delta = [np.empty((self.rows, n)) for n in widths]
        self.tmp = [np.empty((self.rows, n)) for n in widths]
        self.gW = [np.empty((a, b)) for a, b in zip(self.sizes[:-1], widths)]


_WS: dict = {}


def workspace(sizes, T: int) -> Workspace:
    """Return a cached Workspace that fits ``T`` rows for these sizes (grows as needed)."""
    key = tuple(int(n) for n in sizes)
    ws = _WS.get(key)
    if ws is None or ws.rows < T:
        ws = Workspace(sizes, max(T, ws.rows * 2 if ws else T))
        _WS[key] = ws
    return ws


def forward(theta, sizes, obs, ws=None):
    """Return the list of layer inputs ``[obs, h_1, ..., h_k]`` and the output ``z``."""
    T = obs.shape[0]
    ws = ws or workspace(sizes, T)
    layers = _layers(theta, sizes)
    hs = [obs]
    h = obs
    for l, (W, b, _) in enumerate(layers):
        z = ws.act[l][:T]
        np.matmul(h, W, out=z)
        z += b
        if l < len(layers) - 1:
            np.tanh(z, out=z)
            hs.append(z)
        h = z
    return hs, h


def _softplus(z):
    return np.where(z > 30.0, z, np.log1p(np.exp(np.minimum(z, 30.0))))


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def head_logp(theta, sizes, head, z, acts):
    """Return ``log pi(a_t | s_t)`` for every row of the network output ``z``."""
    n_out = int(sizes[-1])
    T = z.shape[0]
    if head == HEAD_SOFTMAX:
        m = z.max(axis=1)
        s = np.exp(z - m[:, None]).sum(axis=1)
        return z[np.arange(T), acts[:, 0].astype(np.int64)] - m - np.log(s)
    if head == HEAD_GAUSS_SOFTPLUS:
        k = n_out // 2
        sig = _softplus(z[:, k:]) + SIGMA_MIN
        e = (acts - z[:, :k]) / sig
        return (-0.5 * e * e - np.log(sig) - LOG_SQRT_2PI).sum(axis=1)
    ls = theta[theta.shape[0] - n_out :]
    e = (acts - z) * np.exp(-ls)
    return (-0.5 * e * e - ls - LOG_SQRT_2PI).sum(axis=1)


def head_score(theta, sizes, head, z, acts, coef, out):
    """Return ``dz`` (rows ``coef[t] * d log pi / d z``); add the log-std part to ``out``."""
    n_out = int(sizes[-1])
    T = z.shape[0]
    c = coef[:, None]
    if head == HEAD_SOFTMAX:
        m = z.max(axis=1, keepdims=True)
        e = np.exp(z - m)
        dz = -c * (e / e.sum(axis=1, keepdims=True))
        dz[np.arange(T), acts[:, 0].astype(np.int64)] += coef
        return dz
    if head == HEAD_GAUSS_SOFTPLUS:
        k = n_out // 2
        zs = z[:, k:]
        inv = 1.0 / (_softplus(zs) + SIGMA_MIN)
        diff = acts - z[:, :k]
        dz = np.empty_like(z)
        dz[:, :k] = c * diff * inv * inv
        dz[:, k:] = c * (diff * diff * inv * inv * inv - inv) * _sigmoid(zs)
        return dz
    base = theta.shape[0] - n_out
    inv = np.exp(-theta[base:])
    diff = acts - z
    out[base:] += (c * (diff * diff * inv * inv - 1.0)).sum(axis=0)
    return c * diff * inv * inv


def backward(theta, sizes, hs, dz, out, ws=None):
    """Add the gradient of ``sum_t dz_t . z_t(theta)`` to ``out``."""
    T = dz.shape[0]
    ws = ws or workspace(sizes, T)
    layers = _layers(theta, sizes)
    delta = dz
    for l in range(len(layers) - 1, -1, -1):
        W, b, p = layers[l]
        n_in, n_out = W.shape
        gW = ws.gW[l]
        np.matmul(hs[l].T, delta, out=gW)
        out[p : p + n_in * n_out].reshape(n_in, n_out).__iadd__(gW)
        out[p + n_in * n_out : p + n_in * n_out + n_out] += delta.sum(axis=0)
        if l > 0:
            h = hs[l]
            nxt = ws.delta[l - 1][:T]
            np.matmul(delta, W.T, out=nxt)
            tmp = ws.tmp[l - 1][:T]
            np.multiply(h, h, out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            nxt *= tmp
            delta = nxt


def score_sum(theta, sizes, head, obs, acts, coef, out):
    """Add ``sum_t coef[t] * grad log pi(a_t | s_t)`` to ``out`` (matrix form)."""
    ws = workspace(sizes, obs.shape[0])
    hs, z = forward(theta, sizes, obs, ws)
    dz = head_score(theta, sizes, head, z, acts, coef, out)
    backward(theta, sizes, hs, dz, out, ws)


def grad_gpomdp(theta, sizes, head, obs, acts, rew, gamma, weight, out):
    """Add ``weight * g_H`` to ``out``: ``estimators.grad_gpomdp`` in matrix form."""
    coef = np.empty(rew.shape[0])
    reward_to_go(rew, gamma, weight, coef)
    score_sum(theta, sizes, head, obs, acts, coef, out)


def grad_is(theta, sizes, head, obs, acts, rew, logp_behaviour, gamma, clip, weight, out):
    """Add ``weight * g_IS``: ``estimators.grad_is`` in matrix form (one forward pass for both
    the target log-probabilities and the gradient)."""
    ws = workspace(sizes, obs.shape[0])
    hs, z = forward(theta, sizes, obs, ws)
    lp = head_logp(theta, sizes, head, z, acts)
    coef = np.empty(rew.shape[0])
    is_coefficients(lp, logp_behaviour, rew, gamma, clip, weight, coef)
    dz = head_score(theta, sizes, head, z, acts, coef, out)
    backward(theta, sizes, hs, dz, out, ws)


def grad_gpomdp_baseline(theta, sizes, head, obs, acts, rew, base, gamma, weight, out):
    """Add ``weight * sum_t (G_t - base[t]) grad log pi``: ``estimators.grad_gpomdp_baseline``
    in matrix form."""
    coef = np.empty(rew.shape[0])
    gpomdp_coefficients(rew, gamma, base, weight, coef)
    score_sum(theta, sizes, head, obs, acts, coef, out)


def grad_is_baseline(theta, sizes, head, obs, acts, rew, logp_behaviour, base, gamma, clip,
                     weight, out):
    """Add ``weight * g_IS`` with baseline ``base``: ``estimators.grad_is_baseline`` in matrix
    form."""
    ws = workspace(sizes, obs.shape[0])
    hs, z = forward(theta, sizes, obs, ws)
    lp = head_logp(theta, sizes, head, z, acts)
    coef = np.empty(rew.shape[0])
    is_coefficients_baseline(lp, logp_behaviour, rew, gamma, clip, base, weight, coef)
    dz = head_score(theta, sizes, head, z, acts, coef, out)
    backward(theta, sizes, hs, dz, out, ws)
