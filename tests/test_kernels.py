"""Kernels against finite differences and the plain-numpy reference."""

import math

import numpy as np
import pytest
from nigt_hpc.kernels import policy as KP

from nigt_hpc import kernels as K
from tests import reference as R

HEADS = {
    "softmax": K.HEAD_SOFTMAX,
    "softplus": K.HEAD_GAUSS_SOFTPLUS,
    "logstd": K.HEAD_GAUSS_LOGSTD,
}
ARCHS = {"linear": [5], "mlp": [5, 7, 6]}


def make_case(head_name, arch, T=9, seed=0):
    head = HEADS[head_name]
    out = 3 if head == K.HEAD_SOFTMAX else K.net_out_dim(head, 2)
    sizes = np.array(ARCHS[arch] + [out], dtype=np.int64)
    rng = np.random.default_rng(seed)
    theta = K.init_theta(sizes, head, rng, -0.3, out_scale=1.0)
    X = rng.standard_normal((T, sizes[0]))
    k = K.act_dim_of(sizes, head)
    if head == K.HEAD_SOFTMAX:
        A = rng.integers(0, out, size=(T, 1)).astype(np.float64)
    else:
        A = rng.standard_normal((T, k))
    r = rng.standard_normal(T)
    return theta, sizes, head, X, A, r


@pytest.mark.parametrize("head_name", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_logp_matches_reference(head_name, arch):
    theta, sizes, head, X, A, _ = make_case(head_name, arch)
    out = np.empty(len(X))
    K.logp_batch(theta, sizes, head, X, A, out)
    np.testing.assert_allclose(out, R.logp(theta, sizes, head, X, A), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("head_name", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_score_matches_finite_differences(head_name, arch):
    theta, sizes, head, X, A, r = make_case(head_name, arch)
    coef = r.copy()
    g = np.zeros_like(theta)
    K.score_sum(theta, sizes, head, X, A, coef, g)

    def f(th):
        lp = np.empty(len(X))
        K.logp_batch(th, sizes, head, X, A, lp)
        return float(coef @ lp)

    eps = 1e-6
    fd = np.empty_like(theta)
    for i in range(len(theta)):
        e = np.zeros_like(theta)
        e[i] = eps
        fd[i] = (f(theta + e) - f(theta - e)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("head_name", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_grad_gpomdp_matches_reference(head_name, arch):
    theta, sizes, head, X, A, r = make_case(head_name, arch)
    g = np.zeros_like(theta)
    K.grad_gpomdp(theta, sizes, head, X, A, r, 0.9, 1.0, g)
    np.testing.assert_allclose(g, R.g_h(theta, sizes, head, X, A, r, 0.9), rtol=1e-10, atol=1e-12)


def test_gamma_counts_from_step_zero():
    # With one nonzero reward at step h, coefficient t<=h is gamma^h, not gamma^(h-t).
    r = np.zeros(6)
    r[4] = 1.0
    coef = np.empty(6)
    K.reward_to_go(r, 0.5, 1.0, coef)
    np.testing.assert_array_equal(coef, [0.0625] * 5 + [0.0])


def test_grad_accumulates_with_caller_weight():
    theta, sizes, head, X, A, r = make_case("softplus", "mlp")
    g1 = np.zeros_like(theta)
    K.grad_gpomdp(theta, sizes, head, X, A, r, 0.99, 1.0, g1)
    g = np.full_like(theta, 2.0)
    K.grad_gpomdp(theta, sizes, head, X, A, r, 0.99, 0.25, g)
    np.testing.assert_allclose(g, 2.0 + 0.25 * g1, rtol=1e-13)


@pytest.mark.parametrize("head_name", HEADS)
@pytest.mark.parametrize("clip", [1.0, np.inf])
def test_importance_weighted_equals_gh_when_behaviour_is_target(head_name, clip):
    theta, sizes, head, X, A, r = make_case(head_name, "mlp")
    lp = np.empty(len(X))
    K.logp_batch(theta, sizes, head, X, A, lp)
    g_is = np.zeros_like(theta)
    K.grad_is(theta, sizes, head, X, A, r, lp, 0.95, clip, 1.0, g_is)
    g_h = np.zeros_like(theta)
    K.grad_gpomdp(theta, sizes, head, X, A, r, 0.95, 1.0, g_h)
    np.testing.assert_array_equal(g_is, g_h)


@pytest.mark.parametrize("head_name", HEADS)
@pytest.mark.parametrize("clip", [0.8, 1.0, 3.0, np.inf])
def test_importance_weighted_matches_reference(head_name, clip):
    theta, sizes, head, X, A, r = make_case(head_name, "mlp")
    beta = theta + 0.05 * np.random.default_rng(5).standard_normal(len(theta))
    lp_b = np.empty(len(X))
    K.logp_batch(beta, sizes, head, X, A, lp_b)
    g = np.zeros_like(theta)
    K.grad_is(theta, sizes, head, X, A, r, lp_b, 0.95, clip, 1.0, g)
    ref = R.g_is(theta, sizes, head, X, A, r, lp_b, 0.95, clip)
    np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("head_name", HEADS)
def test_act_logp_agrees_with_batch_and_is_seeded(head_name):
    theta, sizes, head, X, _, _ = make_case(head_name, "mlp")
    k = K.act_dim_of(sizes, head)
    work = np.empty(K.work_size(sizes))

    def run(seed):
        rng = np.random.default_rng(seed)
        U, Aenv, lps = np.empty((len(X), k)), np.empty((len(X), k)), np.empty(len(X))
        for t in range(len(X)):
            lps[t] = K.act(theta, sizes, head, X[t], rng, np.zeros(k), np.full(k, 2.0), True,
                           work, U[t], Aenv[t])
        return U, Aenv, lps

    U, Aenv, lps = run(3)
    U2, Aenv2, lps2 = run(3)
    np.testing.assert_array_equal(U, U2)
    np.testing.assert_array_equal(lps, lps2)
    lp = np.empty(len(X))
    K.logp_batch(theta, sizes, head, X, U, lp)
    np.testing.assert_array_equal(lp, lps)  # bitwise: the IS ratio is exactly 1 on-policy
    if head == K.HEAD_SOFTMAX:
        np.testing.assert_array_equal(U, Aenv)
    else:
        np.testing.assert_allclose(Aenv, 2.0 * np.tanh(U), rtol=1e-15)
        assert np.abs(Aenv).max() <= 2.0


def test_softmax_sampling_follows_probabilities():
    sizes = np.array([1, 3], dtype=np.int64)
    theta = np.zeros(K.n_params(sizes, K.HEAD_SOFTMAX))
    theta[3:6] = np.log([0.2, 0.3, 0.5])  # biases
    rng = np.random.default_rng(0)
    work, u, a = np.empty(K.work_size(sizes)), np.empty(1), np.empty(1)
    counts = np.zeros(3)
    for _ in range(20000):
        K.act(theta, sizes, K.HEAD_SOFTMAX, np.zeros(1), rng, np.zeros(1), np.ones(1), False,
              work, u, a)
        counts[int(u[0])] += 1
    np.testing.assert_allclose(counts / counts.sum(), [0.2, 0.3, 0.5], atol=0.015)


def test_gaussian_sampling_follows_mean_and_std():
    sizes = np.array([1, 2], dtype=np.int64)
    head = K.HEAD_GAUSS_LOGSTD
    theta = np.zeros(K.n_params(sizes, head))
    theta[2:4] = [0.5, -1.0]  # biases = means
    theta[4:6] = np.log([0.3, 2.0])
    rng = np.random.default_rng(1)
    work, a = np.empty(K.work_size(sizes)), np.empty(2)
    U = np.empty((20000, 2))
    for t in range(len(U)):
        K.act(theta, sizes, head, np.zeros(1), rng, np.zeros(2), np.full(2, 100.0), False,
              work, U[t], a)
    np.testing.assert_allclose(U.mean(0), [0.5, -1.0], atol=0.04)
    np.testing.assert_allclose(U.std(0), [0.3, 2.0], rtol=0.03)


def test_init_theta_sets_initial_std():
    rng = np.random.default_rng(0)
    sizes = np.array([4, 8, 4], dtype=np.int64)
    theta = K.init_theta(sizes, K.HEAD_GAUSS_SOFTPLUS, rng, -0.5)
    b_out = theta[-4:]
    np.testing.assert_allclose(np.logaddexp(0, b_out[2:]), np.exp(-0.5), rtol=1e-12)
    theta = K.init_theta(sizes[:2].copy(), K.HEAD_GAUSS_LOGSTD, rng, -0.5)
    np.testing.assert_array_equal(theta[-8:], -0.5)


def test_kernels_are_deterministic():
    theta, sizes, head, X, A, r = make_case("softplus", "mlp", T=50)
    g1, g2 = np.zeros_like(theta), np.zeros_like(theta)
    K.grad_gpomdp(theta, sizes, head, X, A, r, 0.99, 1.0, g1)
    K.grad_gpomdp(theta, sizes, head, X, A, r, 0.99, 1.0, g2)
    np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("head_name", HEADS)
def test_act_with_generator_equals_act_with_its_noise(head_name):
    theta, sizes, head, X, _, _ = make_case(head_name, "mlp")
    k = K.act_dim_of(sizes, head)
    work = np.empty(K.work_size(sizes))
    u1, a1, u2, a2 = (np.empty(k) for _ in range(4))
    lp1 = K.act(theta, sizes, head, X[0], np.random.default_rng(9), np.zeros(k), np.ones(k),
                True, work, u1, a1)
    rng = np.random.default_rng(9)
    noise = rng.random(1) if head == K.HEAD_SOFTMAX else rng.standard_normal(k)
    lp2 = K.act_noise(theta, sizes, head, X[0], noise, np.zeros(k), np.ones(k), True, work,
                      u2, a2)
    assert lp1 == lp2
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(a1, a2)


@pytest.mark.parametrize("head_name", HEADS)
@pytest.mark.parametrize("squash", [True, False])
def test_act_row_is_act_noise_with_its_bookkeeping(head_name, squash):
    """The sampler's per-step call: the obs row copied in (float32 obs too), then exactly
    act_noise's stored action, env action and log pi, all in the one buffer; every region
    of it on a cache line; a wrong obs length is refused."""
    theta, sizes, head, X, _, _ = make_case(head_name, "mlp")
    k = K.act_dim_of(sizes, head)
    T, n = X.shape
    rng = np.random.default_rng(5)
    width = 1 if head == K.HEAD_SOFTMAX else k
    center, scale = rng.normal(size=k), rng.uniform(0.5, 2.0, size=k)
    plan, mem, v = K.row_buffers(sizes, head, squash, center, scale, T, n, width)
    assert v["obs"].shape == (T, n) and v["acts"].shape == (T, k)
    assert v["noise"].shape == (T, width) and v["logp"].shape == (T,)
    for name, view in v.items():
        assert K.is_aligned(view) and view.flags.c_contiguous, name
        assert np.shares_memory(view, mem), name
    v["noise"][:] = rng.random((T, 1)) if width == 1 else rng.standard_normal((T, k))
    work = np.empty(K.work_size(sizes))
    for dtype in (np.float64, np.float32):
        Xs = X.astype(dtype)
        for t in range(T):
            K.act_row(theta, plan, mem, Xs[t], t)
            u, a = np.empty(k), np.empty(k)
            lp = K.act_noise(theta, sizes, head, Xs[t].astype(np.float64), v["noise"][t],
                             center, scale, squash, work, u, a)
            assert v["logp"][t] == lp
            np.testing.assert_array_equal(v["acts"][t], u)
            np.testing.assert_array_equal(v["a"], a)
        np.testing.assert_array_equal(v["obs"], Xs.astype(np.float64))
    np.testing.assert_array_equal(v["center"], center)
    np.testing.assert_array_equal(v["scale"], scale)
    with pytest.raises(ValueError, match="input size"):
        K.act_row(theta, plan, mem, X[0][:-1], 0)


def test_vectorised_tanh_is_within_4_ulp_of_libm():
    # the hidden layers' tanh (kernels.policy._tanh) against math.tanh on 3M points:
    # wide, unit-scale and tiny magnitudes, and the edges of its range reduction
    from nigt_hpc.kernels import policy as P

    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.uniform(-25.0, 25.0, 1_000_000), rng.uniform(-1.0, 1.0, 1_000_000),
        np.sign(rng.standard_normal(1_000_000)) * 10.0 ** rng.uniform(-300, 0, 1_000_000),
        [0.0, 1e-310, 0.17328679513998632, 0.3465735902799726, 19.06, 20.0, 1e3, 1e308]])
    x = np.concatenate([x, -x])
    got = np.empty_like(x)
    P.tanh_array(x, got)
    ref = np.array([math.tanh(v) for v in x])
    ulp = np.abs(got - ref) / np.spacing(np.abs(ref))
    assert ulp.max() <= 4.0
    assert np.mean(got == ref) > 0.75  # most values are exactly libm's
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan])
    out = np.empty(5)
    P.tanh_array(special, out)
    assert out[0] == 0.0 and not np.signbit(out[0]) and np.signbit(out[1])
    assert out[2] == 1.0 and out[3] == -1.0 and np.isnan(out[4])


def _softmax_score_python(theta, X, A, coef, out):
    """The linear softmax score sum in plain Python floats, in the kernels' order (logits
    bias first then input by input, exps of z - max, dz = -c e / s, dz[a] += c); also
    return the exps and their sums, the ``kept`` rows the compiled rollout leaves."""
    n_in = X.shape[1]
    n_out = theta.shape[0] // (n_in + 1)
    pb = n_in * n_out
    kept = np.empty((len(X), n_out + 1))
    for t in range(len(X)):
        z = [float(theta[pb + o]) for o in range(n_out)]
        for i in range(n_in):
            for o in range(n_out):
                z[o] += float(theta[i * n_out + o]) * float(X[t, i])
        m = max(z)
        e = [math.exp(zk - m) for zk in z]
        s = 0.0
        for ek in e:
            s += ek
        kept[t, :n_out], kept[t, n_out] = e, s
        c = float(coef[t])
        if c == 0.0:
            continue
        dz = [-c * ek / s for ek in e]
        dz[int(A[t, 0])] += c
        for o in range(n_out):
            out[pb + o] += dz[o]
        for i in range(n_in):
            for o in range(n_out):
                out[i * n_out + o] += float(X[t, i]) * dz[o]
    return kept


@pytest.mark.parametrize("n_in", [1, 3, 4, 5, 8, 11])
@pytest.mark.parametrize("n_out", [2, 3])
def test_linear_softmax_score_sums_are_bitwise_the_per_step_arithmetic(n_in, n_out):
    """Both linear-softmax score kernels (from the kept exps, and with their own forward
    pass) give exactly the per-step arithmetic: the two-action kernel keeps its sums in
    registers and blocks inputs by four, which must not reorder any sum.  Zero
    coefficients (skipped), negative ones, and a non-zero starting ``out``."""
    rng = np.random.default_rng(n_in * 10 + n_out)
    T = 57
    theta = rng.normal(size=(n_in + 1) * n_out) * 3.0
    X = rng.normal(size=(T, n_in))
    A = rng.integers(0, n_out, size=(T, 1)).astype(np.float64)
    coef = rng.normal(size=T)
    coef[::5] = 0.0
    start = rng.normal(size=theta.shape[0])
    ref = start.copy()
    kept = _softmax_score_python(theta, X, A, coef, ref)
    sizes = np.array([n_in, n_out], dtype=np.int64)
    for fn in ("kept", "score_sum"):
        got = start.copy()
        if fn == "kept":
            KP.score_sum_linear_softmax_kept(theta, X, A, kept, coef, got)
        else:
            K.score_sum(theta, sizes, K.HEAD_SOFTMAX, X, A, coef, got)
        np.testing.assert_array_equal(got, ref, err_msg=fn)
