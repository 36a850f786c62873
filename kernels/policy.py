"""Policy kernels: forward pass, per-step sampling, log-probabilities and score functions.

A policy is a flat float64 ``theta`` and an int64 ``sizes`` array
``[obs_dim, hidden_1, ..., hidden_k, n_out]``; ``k = 0`` is the linear policy.  Layer ``l``
stores ``W_l`` as ``n_in x n_out`` (row-major, i.e. the transpose of the usual
``n_out x n_in``) and then ``b_l``.  With that layout the inner loops run over independent
outputs, which LLVM vectorises without reassociating any sum, so results stay bitwise
deterministic whichever kernel computes them.  The log-std head appends
``act_dim`` state-independent log-stds at the end.  Hidden layers use tanh; the last layer
is affine.

Heads (``head`` argument):

* ``HEAD_SOFTMAX``: categorical softmax over ``n_out`` logits.  The "action" stored for a
  step is the index, as a float in column 0.
* ``HEAD_GAUSS_SOFTPLUS``: the paper's head.  ``n_out = 2 * act_dim``; ``mu`` is the first
  half, ``sigma = softplus(z) + SIGMA_MIN`` the second.
* ``HEAD_GAUSS_LOGSTD``: ``n_out = act_dim`` means and a state-independent ``log_std``.

For the Gaussian heads the stored "action" is the pre-squash sample ``u``; the action sent
to the environment is ``center + scale * tanh(u)`` (``squash``) or ``u`` clipped to the
bounds.  Because tanh is a fixed invertible map, ``grad log pi(a|s) = grad log N(u; mu,
sigma)`` (ALGORITHMS section 0), so every gradient here is taken on ``u``.

No MPI, gymnasium or configuration in this module: plain arrays in and out.
"""

import math
import os

import numba
import numpy as np

from . import _cache  # noqa: F401  (before any @njit: cache stamps cover every kernel file)


def njit(*args, **kw):
    """``numba.njit`` with numpy's error model, for every kernel in this folder.

    numba's default ("python") model tests every float division for a zero divisor so it can
    raise ZeroDivisionError.  The test is a branch, and a branch splits the basic block: it
    kept loops from vectorising, and it sat between CartPole's ``cos(th)`` and ``sin(th)`` so
    LLVM could not fuse them into one ``sincos`` call (seen in the assembly).  With numpy's model
    x / 0 gives inf or nan as IEEE 754 says; a non-zero divisor gives the same bits either way.
    The gradients' non-finite check (``run.max_nonfinite``) is where a bad division surfaces.
    """
    kw.setdefault("error_model", "numpy")
    return numba.njit(*args, **kw)


# The on-disk cache (PITFALLS N1): on by default; NIGT_HPC_NUMBA_CACHE=0 turns it off (numba
# has no global switch), e.g. on a filesystem where renames are not atomic.  Read at import.
CACHE = os.environ.get("NIGT_HPC_NUMBA_CACHE", "1") != "0"

HEAD_SOFTMAX = 0
HEAD_GAUSS_SOFTPLUS = 1
HEAD_GAUSS_LOGSTD = 2

# Added to softplus so sigma stays positive when softplus underflows; small enough that it
# never matters for a sensible policy.
SIGMA_MIN = 1e-6
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def net_out_dim(head: int, act_dim: int) -> int:
    """Return the width of the network's last layer for a head and action dimension."""
    if head == HEAD_GAUSS_SOFTPLUS:
        return 2 * act_dim
    return act_dim


def n_params(sizes: np.ndarray, head: int) -> int:
    """Return the length of ``theta`` for a layer-size array and head."""
    n = 0
    for l in range(len(sizes) - 1):
        n += int(sizes[l + 1]) * int(sizes[l]) + int(sizes[l + 1])
    if head == HEAD_GAUSS_LOGSTD:
        n += int(sizes[-1])
    return n


def act_dim_of(sizes: np.ndarray, head: int) -> int:
    """Return the width of a stored action row (1 for softmax: the index)."""
    if head == HEAD_SOFTMAX:
        return 1
    if head == HEAD_GAUSS_SOFTPLUS:
        return int(sizes[-1]) // 2
    return int(sizes[-1])


# --------------------------------------------------------------------------- building blocks


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


# tanh for the hidden layers, in plain arithmetic so LLVM vectorises it: libm's tanh is a
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


ALIGN = 64  # bytes: one cache line, one AVX-512 register


def aligned_empty(n: int) -> np.ndarray:
    """Return an uninitialised float64 array of length ``n`` whose data starts on a 64-byte
    boundary.

    numpy promises 16 bytes, and a large array from ``malloc`` (``mmap``) starts 16 bytes
    past a page: then every 64-byte load of a weight row straddles two cache lines.  The
    forward pass of an MLP 376-64-64-17 took 2.88 µs with ``theta`` so placed, 2.24-2.36
    with ``theta`` aligned (measured, same process).  ``theta`` is what matters: the
    kernels stream its weights every step.
    """
    buf = np.empty(n + ALIGN // 8)
    skip = (-buf.ctypes.data % ALIGN) // 8
    return buf[skip : skip + n]


def aligned_copy(x: np.ndarray) -> np.ndarray:
    """Return a float64 copy of the 1-d ``x`` on a 64-byte boundary."""
    out = aligned_empty(x.shape[0])
    out[:] = x
    return out


def is_aligned(a: np.ndarray) -> bool:
    """Return whether ``a``'s data starts on a 64-byte boundary."""
    return a.ctypes.data % ALIGN == 0


def work_size(sizes: np.ndarray) -> int:
    """Return the scratch length the per-step kernels need: every layer, plus one row."""
    return int(np.sum(sizes)) + int(np.max(sizes))


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


# --------------------------------------------------------------------------- linear softmax
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


# --------------------------------------------------------------------------- public kernels


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


# ``act_row``'s plan: head, squash, number of sizes, the sizes, then these fields
_ROW_FIELDS = ("work", "n_work", "center", "scale", "a", "k", "obs", "n_obs", "acts", "logp",
               "noise", "n_noise")


def row_buffers(sizes: np.ndarray, head: int, squash: bool, a_center: np.ndarray,
                a_scale: np.ndarray, horizon: int, obs_dim: int, noise_width: int):
    """Return ``(plan, mem, views)`` for ``act_row``: one sampler's buffers in one array.

    ``mem`` (float64, 64-byte aligned) holds the kernel scratch, the action centre and
    scale, the env action, and the episode's obs ``(H, obs_dim)``, stored actions
    ``(H, k)``, ``log pi`` ``(H,)`` and noise ``(H, noise_width)``; each region starts on a
    cache line.  ``views`` maps ``work, center, scale, a, obs, acts, logp, noise`` to
    C-contiguous views of it.  ``plan`` (int64) is what ``act_row`` reads to find them.
    """
    k = len(a_center)
    H, n = int(horizon), int(obs_dim)
    regions = (("work", work_size(sizes), None), ("center", k, None), ("scale", k, None),
               ("a", k, None), ("obs", H * n, (H, n)), ("acts", H * k, (H, k)),
               ("logp", H, None), ("noise", H * noise_width, (H, noise_width)))
    offsets, at = {}, 0
    for name, length, _ in regions:
        offsets[name] = at
        at += -(-length // 8) * 8  # the next region on the next cache line
    mem = aligned_empty(at)
    mem[:] = 0.0
    views = {}
    for name, length, shape in regions:
        v = mem[offsets[name] : offsets[name] + length]
        views[name] = v.reshape(shape) if shape else v
    views["center"][:] = a_center
    views["scale"][:] = a_scale
    fields = {"work": offsets["work"], "n_work": work_size(sizes), "center": offsets["center"],
              "scale": offsets["scale"], "a": offsets["a"], "k": k, "obs": offsets["obs"],
              "n_obs": n, "acts": offsets["acts"], "logp": offsets["logp"],
              "noise": offsets["noise"], "n_noise": int(noise_width)}
    plan = np.array([head, int(bool(squash)), len(sizes), *sizes,
                     *(fields[f] for f in _ROW_FIELDS)], dtype=np.int64)
    return plan, mem, views


@njit(cache=CACHE)
def act_row(theta, plan, mem, s, t):
    """``act_noise`` for step ``t`` of an episode, as the sampler calls it from Python once
    per env step: copy the env's observation ``s`` into obs row ``t``, act with noise row
    ``t``, write the stored action row, ``log pi`` and the env action (all in ``mem``, laid
    out by ``row_buffers``).

    Same numbers as ``act_noise``.  It exists for the call's cost: numba checks the type of
    every argument on each call from Python (about 40 ns per array, measured), and
    ``act_noise`` takes eleven, three of them views made per step.  Five here: an
    MLP 376-64-64-17 step went from 3.82-3.97 µs (nine arguments) to 3.55-3.70 (measured).
    """
    head = plan[0]
    squash = plan[1] != 0
    L1 = plan[2]
    sizes = plan[3 : 3 + L1]
    q = 3 + L1
    o_work, n_work, o_c, o_s, o_a, k = plan[q], plan[q + 1], plan[q + 2], plan[q + 3], \
        plan[q + 4], plan[q + 5]
    o_obs, n, o_acts, o_lp, o_nz, w = plan[q + 6], plan[q + 7], plan[q + 8], plan[q + 9], \
        plan[q + 10], plan[q + 11]
    if s.shape[0] != n:
        raise ValueError("act_row: the observation's length is not the policy's input size")
    ob = mem[o_obs + t * n : o_obs + (t + 1) * n]
    for i in range(n):
        ob[i] = s[i]
    mem[o_lp + t] = act_noise(theta, sizes, head, ob, mem[o_nz + t * w : o_nz + (t + 1) * w],
                              mem[o_c : o_c + k], mem[o_s : o_s + k], squash,
                              mem[o_work : o_work + n_work],
                              mem[o_acts + t * k : o_acts + (t + 1) * k], mem[o_a : o_a + k])


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


def init_theta(sizes: np.ndarray, head: int, rng: np.random.Generator, init_log_std: float,
               out_scale: float = 0.01) -> np.ndarray:
    """Return a fresh ``theta``: scaled-normal hidden weights, small output layer, zero biases.

    Hidden layers get ``N(0, 1/n_in)`` weights (keeps tanh units out of saturation); the
    last layer is scaled by ``out_scale`` so the first policy is close to uniform / zero
    mean.  The std part starts at ``exp(init_log_std)`` for both Gaussian heads.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    theta = np.zeros(n_params(sizes, head))
    L = len(sizes) - 1
    p = 0
    for l in range(L):
        n_in, n_out = int(sizes[l]), int(sizes[l + 1])
        scale = out_scale if l == L - 1 else 1.0
        theta[p : p + n_in * n_out] = rng.standard_normal(n_in * n_out) * scale / math.sqrt(n_in)
        p += n_out * n_in
        if l == L - 1 and head == HEAD_GAUSS_SOFTPLUS:
            k_dim = n_out // 2
            # softplus(b) = exp(init_log_std)  =>  b = log(expm1(exp(init_log_std)))
            theta[p + k_dim : p + n_out] = math.log(math.expm1(math.exp(init_log_std)))
        p += n_out
    if head == HEAD_GAUSS_LOGSTD:
        theta[p:] = init_log_std
    return theta
