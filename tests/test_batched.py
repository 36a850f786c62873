"""Matrix-form gradient pass: the same gradients as the per-step kernels, to rounding."""

import numpy as np
import pytest
from nigt_hpc.kernels import batched as B

from nigt_hpc import kernels as K

CASES = [
    ([6, 16, 16, 3], K.HEAD_SOFTMAX),
    ([11, 32, 32, 6], K.HEAD_GAUSS_SOFTPLUS),
    ([17, 24, 5], K.HEAD_GAUSS_LOGSTD),
    ([9, 4], K.HEAD_GAUSS_LOGSTD),
]


def _data(sizes, head, T, seed=0):
    rng = np.random.default_rng(seed)
    sizes = np.array(sizes, dtype=np.int64)
    theta = K.init_theta(sizes, head, rng, -0.3, out_scale=0.7)
    k = K.act_dim_of(sizes, head)
    obs = rng.standard_normal((T, sizes[0]))
    if head == K.HEAD_SOFTMAX:
        acts = rng.integers(0, sizes[-1], (T, 1)).astype(np.float64)
    else:
        acts = rng.standard_normal((T, k))
    rew = rng.standard_normal(T)
    return sizes, theta, obs, acts, rew


def _close(a, b):
    return np.max(np.abs(a - b)) <= 1e-12 * max(1.0, np.max(np.abs(b)))


@pytest.mark.parametrize("sizes,head", CASES)
def test_gpomdp_matches_per_step(sizes, head):
    sizes, theta, obs, acts, rew = _data(sizes, head, 300)
    a, b = np.full_like(theta, 0.25), np.full_like(theta, 0.25)  # both add to out
    K.grad_gpomdp(theta, sizes, head, obs, acts, rew, 0.97, 0.5, a)
    B.grad_gpomdp(theta, sizes, head, obs, acts, rew, 0.97, 0.5, b)
    assert _close(b, a) and np.max(np.abs(a - 0.25)) > 1e-3


@pytest.mark.parametrize("sizes,head", CASES)
def test_is_matches_per_step(sizes, head):
    sizes, theta, obs, acts, rew = _data(sizes, head, 200, seed=1)
    lp = np.empty(200)
    K.logp_batch(theta, sizes, head, obs, acts, lp)
    hs, z = B.forward(theta, sizes, obs)
    assert _close(B.head_logp(theta, sizes, head, z, acts), lp)
    lpb = lp + np.random.default_rng(2).normal(0, 0.2, 200)  # another behaviour policy
    a, b = np.zeros_like(theta), np.zeros_like(theta)
    K.grad_is(theta, sizes, head, obs, acts, rew, lpb, 0.97, 1.5, 2.0, a)
    B.grad_is(theta, sizes, head, obs, acts, rew, lpb, 0.97, 1.5, 2.0, b)
    assert _close(b, a)


def test_workspace_grows_and_short_calls_after_long_ones_are_right():
    sizes, theta, obs, acts, rew = _data([5, 8, 2], K.HEAD_SOFTMAX, 400)
    for T in (10, 400, 3, 250):
        a, b = np.zeros_like(theta), np.zeros_like(theta)
        K.grad_gpomdp(theta, sizes, 0, obs[:T], acts[:T], rew[:T], 0.9, 1.0, a)
        B.grad_gpomdp(theta, sizes, 0, obs[:T], acts[:T], rew[:T], 0.9, 1.0, b)
        assert _close(b, a)
    assert B.workspace(sizes, 1).rows >= 400


def test_use_batched_threshold():
    assert not B.use_batched(500, 10)  # CartPole's linear softmax stays per-step
    assert B.use_batched(50, 5000)  # Hopper's MLP goes the matrix way
    T, W = B.BATCH_MIN_STEPS, B.BATCH_MIN_WORK
    assert B.use_batched(T, -(-W // T)) and not B.use_batched(T, -(-W // T) - 1)
    assert not B.use_batched(T - 1, W)  # short trajectories stay per-step whatever d
