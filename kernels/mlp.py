"""MLP passes, one observation at a time: the forward pass, backpropagation, and the
per-step kernels built on them (sampling an action, ``log pi`` of stored steps, the score
sum ``sum_t coef[t] grad log pi``).

Layer ``l`` of ``theta`` stores ``W_l`` as ``n_in x n_out`` (row-major, the transpose of the
usual ``n_out x n_in``) and then ``b_l`` (``kernels.layout``).  With that layout the inner
loops run over independent outputs, which LLVM vectorises without reassociating any sum, so
results stay bitwise deterministic whichever kernel computes them.  Hidden layers use tanh;
the last layer is affine.  A linear softmax policy takes the fast paths of
``kernels.linear_softmax`` (the same numbers).
"""

import math

import numpy as np

from .heads import (
    HEAD_GAUSS_LOGSTD,
    HEAD_GAUSS_SOFTPLUS,
    HEAD_SOFTMAX,
    SIGMA_MIN,
    _head_logp,
    _head_score,
    _sample_index,
    _softmax_exps,
    _softplus,
)
from .jit import CACHE, njit
from .linear_softmax import (
    _is_linear_softmax,
    _logp_batch_linear_softmax,
    _score_sum_linear_softmax,
)

# scalar call of 8-14 ns, 1.0-1.8 µs of a 64-64 MLP's forward pass; this one is 0.13 µs
# for 128 units (AVX-512, measured).  tanh(x) = e / (e + 2) with e = expm1(2|x|), the sign
# put back; expm1(y) = 2^k (expm1(r) + 1) - 1 with y = k ln2 + r, |r| <= ln2 / 2 (ln2 in two
# parts, Cody-Waite) and expm1(r) as its Taylor series to r^14 (truncation < 1e-17).  For
# |x| >= 20, tanh(x) rounds to +-1 in float64 and so does this.  Within 4 ulp of libm's
# tanh (tests/test_kernels.py checks 3M points); the batched kernels keep numpy's tanh,
# so per-step and matrix gradients agree to rounding, as before.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_F2, _F3, _F4, _F5, _F6, _F7, _F8, _F9, _F10, _F11, _F12, _F13, _F14 = (
    1.0 / math.factorial(n) for n in range(2, 15))


@njit(cache=CACHE, inline="always")
def _tanh(x):
    y = 2.0 * abs(x)
    if y > 40.0:  # a NaN fails this test and comes out NaN, as from libm
        y = 40.0
    kf = math.floor(y * _INV_LN2 + 0.5)
    r = (y - kf * _LN2_HI) - kf * _LN2_LO
    p = _F14
    p = p * r + _F13
    p = p * r + _F12
    p = p * r + _F11
    p = p * r + _F10
    p = p * r + _F9
    p = p * r + _F8
    p = p * r + _F7
    p = p * r + _F6
    p = p * r + _F5
    p = p * r + _F4
    p = p * r + _F3
    p = p * r + _F2
    em = r + r * r * p  # expm1(r)
    sc = float(1 << int(kf))  # 2^k, k <= 58
    em = sc * em + (sc - 1.0)  # expm1(y)
    return math.copysign(em / (em + 2.0), x)


@njit(cache=CACHE)
def tanh_array(x, out):
    """Write ``tanh(x)`` (the kernels' vectorised tanh) into ``out``; 1-d arrays."""
    for i in range(x.shape[0]):
        out[i] = _tanh(x[i])


@njit(cache=CACHE)
def _forward_row(theta, sizes, x, work):
    """Forward one observation into ``work`` (length ``work_size(sizes)``).

    ``work[:sum(sizes)]`` holds every layer's output side by side: the input, each hidden
    layer's tanh output, then the last layer's affine output.  The tail of ``work`` is the
    accumulator of the layer being computed: a separate buffer lets LLVM keep the sums in
    registers and vectorise over outputs (measured 2-3x faster than accumulating in place).
    """
    L = sizes.shape[0] - 1
    total = 0
    for l in range(L + 1):
        total += sizes[l]
    act = work[:total]
    acc = work[total:]
    n0 = sizes[0]
    for i in range(n0):
        act[i] = x[i]
    p = 0
    col_in = 0
    for l in range(L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        col_out = col_in + n_in
        pb = p + n_in * n_out
        W = theta[p:pb].reshape((n_in, n_out))
        for o in range(n_out):
            acc[o] = theta[pb + o]
        # Four input rows per pass over the accumulator: a quarter of the loads and stores
        # of ``acc`` (measured 2.1 -> 1.55 µs for 376x64).  The sum is written left to right,
        # so every output is added up in exactly the order of the one-row loop: bitwise the
        # same result, no reassociation.
        i = 0
        while i + 4 <= n_in:
            x0 = act[col_in + i]
            x1 = act[col_in + i + 1]
            x2 = act[col_in + i + 2]
            x3 = act[col_in + i + 3]
            for o in range(n_out):
                acc[o] = (acc[o] + W[i, o] * x0 + W[i + 1, o] * x1 + W[i + 2, o] * x2
                          + W[i + 3, o] * x3)
            i += 4
        while i < n_in:
            xi = act[col_in + i]
            for o in range(n_out):
                acc[o] += W[i, o] * xi
            i += 1
        if l < L - 1:
            h = act[col_out : col_out + n_out]
            for o in range(n_out):
                h[o] = _tanh(acc[o])
        else:
            for o in range(n_out):
                act[col_out + o] = acc[o]
        p = pb + n_out
        col_in = col_out


@njit(cache=CACHE)
def _transpose_weights(theta, sizes, wt):
    """Write the ``W`` of every layer but the first transposed (``n_out x n_in``) into
    ``wt``, at the layer's offset in ``theta`` (the first layer's delta is never needed).
    Done once per gradient call, so that backpropagating through ``W`` runs along
    contiguous rows (see ``_backward_row``)."""
    p = 0
    for l in range(sizes.shape[0] - 1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        pb = p + n_in * n_out
        if l == 0:
            p = pb + n_out
            continue
        W = theta[p:pb].reshape((n_in, n_out))
        WT = wt[p:pb].reshape((n_out, n_in))
        for o in range(n_out):
            for i in range(n_in):
                WT[o, i] = W[i, o]
        p = pb + n_out


@njit(cache=CACHE)
def _backward_row(theta, sizes, wt, act, dz, delta, out):
    """Add the gradient of ``dz . z(theta)`` to ``out``; ``delta`` is scratch like ``act``;
    ``wt`` holds the transposed weights (``_transpose_weights``).

    Each layer works on 2-d views and slices: indexed as ``out[row + o]`` the loops were
    not vectorised (a computed index carries numba's negative-index check), as views they
    are: 3.1 -> 0.8 µs for the weight gradients of a 64-64 MLP (measured).
    """
    L = sizes.shape[0] - 1
    total = 0
    for l in range(L + 1):
        total += sizes[l]
    col_out = total - sizes[L]
    for o in range(sizes[L]):
        delta[col_out + o] = dz[o]
    # parameter offset of the end of the network's weights
    p_end = 0
    for l in range(L):
        p_end += sizes[l + 1] * sizes[l] + sizes[l + 1]
    for l in range(L - 1, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        col_in = col_out - n_in
        pb = p_end - n_out
        pw = pb - n_out * n_in
        d = delta[col_out : col_out + n_out]
        h = act[col_in : col_in + n_in]
        G = out[pw:pb].reshape((n_in, n_out))
        gb = out[pb : pb + n_out]
        for o in range(n_out):
            gb[o] += d[o]
        for i in range(n_in):
            hi = h[i]
            for o in range(n_out):
                G[i, o] += hi * d[o]
        if l > 0:
            # delta_in[i] = (sum_o W[i, o] d[o]) * tanh'(.), vectorised over i along rows
            # of W^T, four outputs per sweep; each sum still runs o = 0, 1, ... from 0.0
            WT = wt[pw:pb].reshape((n_out, n_in))
            din = delta[col_in : col_in + n_in]
            for i in range(n_in):
                din[i] = 0.0
            o = 0
            while o + 4 <= n_out:
                d0 = d[o]
                d1 = d[o + 1]
                d2 = d[o + 2]
                d3 = d[o + 3]
                for i in range(n_in):
                    din[i] = (din[i] + WT[o, i] * d0 + WT[o + 1, i] * d1 + WT[o + 2, i] * d2
                              + WT[o + 3, i] * d3)
                o += 4
            while o < n_out:
                dv = d[o]
                for i in range(n_in):
                    din[i] += WT[o, i] * dv
                o += 1
            for i in range(n_in):
                din[i] *= 1.0 - h[i] * h[i]
        p_end = pw
        col_out = col_in


@njit(cache=CACHE)
def act_noise(theta, sizes, head, obs, noise, a_center, a_scale, squash, work, u_out, a_out):
    """Return ``log pi`` of the action made from pre-drawn ``noise``; write u and env action.

    ``noise`` is one row of standard normals (Gaussian heads, length act_dim) or one
    uniform in [0, 1) (softmax, length >= 1).  The sampler draws a whole episode's noise
    from its Generator in one vectorised call: a Generator crossing into numba costs about
    7.5 µs per call (measured), far more than the step itself.  ``work`` is scratch of
    length ``sum(sizes)``.
    """
    _forward_row(theta, sizes, obs, work)
    n_out = sizes[-1]
    total = work.shape[0] - np.max(sizes)
    z = work[total - n_out : total]
    if head == HEAD_SOFTMAX:
        e = work[total:]  # the accumulator row is free once the forward pass is done
        m, s = _softmax_exps(z, n_out, e)
        ai = _sample_index(e, n_out, noise[0] * s)
        u_out[0] = ai
        a_out[0] = ai
        return z[ai] - m - math.log(s)
    k_dim = u_out.shape[0]
    for j in range(k_dim):
        if head == HEAD_GAUSS_SOFTPLUS:
            sig = _softplus(z[k_dim + j]) + SIGMA_MIN
        else:
            sig = math.exp(theta[theta.shape[0] - n_out + j])
        u_out[j] = z[j] + sig * noise[j]
    if squash:
        # the env action through the kernels' vectorised tanh (within 4 ulp of libm's; see
        # _tanh): 17 libm calls were 0.24 µs of a Humanoid-size step (measured).  Only the
        # env sees this value; log pi and the gradients are of u.
        for j in range(k_dim):
            a_out[j] = a_center[j] + a_scale[j] * _tanh(u_out[j])
    else:
        for j in range(k_dim):
            lo = a_center[j] - a_scale[j]
            hi = a_center[j] + a_scale[j]
            a_out[j] = min(max(u_out[j], lo), hi)
    return _head_logp(theta, sizes, head, z, u_out)


@njit(cache=CACHE)
def act(theta, sizes, head, obs, rng, a_center, a_scale, squash, work, u_out, a_out):
    """Sample one action with ``rng``; return ``log pi``; write the stored row to ``u_out``
    and the env action to ``a_out``.

    ``rng`` is a ``numpy.random.Generator`` whose state advances (shared with the Python
    object).  Convenient for one-off calls; the sampler uses :func:`act_noise`.
    """
    k_dim = u_out.shape[0]
    noise = np.empty(k_dim)
    if head == HEAD_SOFTMAX:
        noise[0] = rng.random()
    else:
        for j in range(k_dim):
            noise[j] = rng.standard_normal()
    return act_noise(theta, sizes, head, obs, noise, a_center, a_scale, squash, work, u_out,
                     a_out)


@njit(cache=CACHE)
def logp_batch(theta, sizes, head, obs, acts, out):
    """Write ``log pi_theta(a_t | s_t)`` for every stored step into ``out``; return nothing."""
    if _is_linear_softmax(sizes, head):
        _logp_batch_linear_softmax(theta, obs, acts, out)
        return
    T = obs.shape[0]
    total = 0
    for l in range(sizes.shape[0]):
        total += sizes[l]
    work = np.empty(total + np.max(sizes))
    n_out = sizes[-1]
    for t in range(T):
        _forward_row(theta, sizes, obs[t], work)
        out[t] = _head_logp(theta, sizes, head, work[total - n_out :], acts[t])


@njit(cache=CACHE)
def score_sum(theta, sizes, head, obs, acts, coef, out):
    """Add ``sum_t coef[t] * grad log pi_theta(a_t | s_t)`` to ``out``; return nothing."""
    if _is_linear_softmax(sizes, head):
        _score_sum_linear_softmax(theta, obs, acts, coef, out)
        return
    T = obs.shape[0]
    total = 0
    for l in range(sizes.shape[0]):
        total += sizes[l]
    n_out = sizes[-1]
    work = np.empty(total + np.max(sizes))
    delta = np.empty(total)
    dz = np.empty(n_out)
    glogstd = np.zeros(n_out)
    wt = np.empty(theta.shape[0])
    _transpose_weights(theta, sizes, wt)
    for t in range(T):
        c = coef[t]
        if c == 0.0:
            continue
        _forward_row(theta, sizes, obs[t], work)
        _head_score(theta, sizes, head, work[total - n_out :], acts[t], c, dz, glogstd)
        _backward_row(theta, sizes, wt, work, dz, delta, out)
    if head == HEAD_GAUSS_LOGSTD:
        base = theta.shape[0] - n_out
        for j in range(n_out):
            out[base + j] += glogstd[j]
