"""Plain-numpy references for the compiled kernels; used only by tests."""

import math

import numpy as np
from nigt_hpc.kernels import HEAD_GAUSS_LOGSTD, HEAD_GAUSS_SOFTPLUS, HEAD_SOFTMAX, SIGMA_MIN


def unpack(theta, sizes, head):
    """Return ([(W, b), ...], log_std or None) as views of ``theta``."""
    layers, p = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W = theta[p : p + n_in * n_out].reshape(n_in, n_out).T  # stored as n_in x n_out
        p += n_out * n_in
        b = theta[p : p + n_out]
        p += n_out
        layers.append((W, b))
    log_std = theta[p:] if head == HEAD_GAUSS_LOGSTD else None
    return layers, log_std


def forward(theta, sizes, head, X):
    """Return the network output for a batch X (T, obs_dim), and all activations."""
    layers, _ = unpack(theta, sizes, head)
    acts = [X]
    h = X
    for l, (W, b) in enumerate(layers):
        z = h @ W.T + b
        h = np.tanh(z) if l < len(layers) - 1 else z
        acts.append(h)
    return h, acts


def logp(theta, sizes, head, X, A):
    """Return log pi(a_t | s_t) for each row."""
    z, _ = forward(theta, sizes, head, X)
    if head == HEAD_SOFTMAX:
        zmax = z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
        return z[np.arange(len(z)), A[:, 0].astype(int)] - lse
    if head == HEAD_GAUSS_SOFTPLUS:
        k = z.shape[1] // 2
        mu, sig = z[:, :k], np.logaddexp(0.0, z[:, k:]) + SIGMA_MIN
    else:
        _, log_std = unpack(theta, sizes, head)
        mu, sig = z, np.exp(log_std)[None, :]
    e = (A - mu) / sig
    return (-0.5 * e**2 - np.log(sig) - 0.5 * math.log(2 * math.pi)).sum(axis=1)


def score(theta, sizes, head, X, A):
    """Return the per-step gradients of log pi, shape (T, d), by explicit backprop."""
    layers, log_std = unpack(theta, sizes, head)
    z, acts = forward(theta, sizes, head, X)
    T = X.shape[0]
    if head == HEAD_SOFTMAX:
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        dz = -p
        dz[np.arange(T), A[:, 0].astype(int)] += 1.0
        dls = None
    elif head == HEAD_GAUSS_SOFTPLUS:
        k = z.shape[1] // 2
        mu, zs = z[:, :k], z[:, k:]
        sig = np.logaddexp(0.0, zs) + SIGMA_MIN
        dmu = (A - mu) / sig**2
        dsig = (A - mu) ** 2 / sig**3 - 1.0 / sig
        dz = np.concatenate([dmu, dsig / (1.0 + np.exp(-zs))], axis=1)
        dls = None
    else:
        sig = np.exp(log_std)[None, :]
        dz = (A - z) / sig**2
        dls = (A - z) ** 2 / sig**2 - 1.0
    grads = []
    delta = dz
    for l in range(len(layers) - 1, -1, -1):
        W, _ = layers[l]
        h_in = acts[l]
        grads.append((np.einsum("ti,to->tio", h_in, delta).reshape(T, -1), delta))
        if l > 0:
            delta = (delta @ W) * (1.0 - h_in**2)
    parts = []
    for gW, gb in reversed(grads):
        parts += [gW, gb]
    if dls is not None:
        parts.append(dls)
    return np.concatenate(parts, axis=1)


def g_h(theta, sizes, head, X, A, r, gamma):
    """Return the truncated GPOMDP estimate, written as ALGORITHMS section 0 writes it."""
    T = len(r)
    S = score(theta, sizes, head, X, A)
    g = np.zeros(len(theta))
    for t in range(T):
        ret = sum(gamma**h * r[h] for h in range(t, T))
        g += ret * S[t]
    return g


def g_is(theta, sizes, head, X, A, r, logp_b, gamma, clip):
    """Return the importance-weighted estimate of ALGORITHMS section 6."""
    T = len(r)
    S = score(theta, sizes, head, X, A)
    rho = np.exp(logp(theta, sizes, head, X, A) - logp_b)
    W = np.cumprod(np.minimum(clip, rho))
    g = np.zeros(len(theta))
    for t in range(T):
        g += sum(gamma**h * r[h] * W[h] for h in range(t, T)) * S[t]
    return g
