"""The NIGT outer step, line by line (ALGORITHMS section 1)."""

import numpy as np
import pytest

from nigt_hpc.nigt import NIGT, PolicyGradient


def test_initial_step_has_length_alpha_along_d0():
    g0 = np.array([3.0, 4.0, 0.0])
    opt = NIGT(np.ones(3), eta=0.1, alpha=0.5)
    opt.initialise(g0)
    np.testing.assert_array_equal(opt.d, g0)
    np.testing.assert_allclose(opt.theta, np.ones(3) + 0.5 * g0 / 5.0, rtol=1e-15)
    np.testing.assert_array_equal(opt.theta_prev, np.ones(3))


def test_theta_tilde_extrapolates_by_one_minus_eta_over_eta():
    opt = NIGT(np.zeros(2), eta=0.25, alpha=1.0)
    opt.initialise(np.array([1.0, 0.0]))  # theta_1 = (1, 0), theta_0 = 0
    tt = opt.theta_tilde()
    np.testing.assert_allclose(tt, [1.0 + 3.0 * 1.0, 0.0])
    # the code form of line 4: (1/eta) theta_t + (1 - 1/eta) theta_{t-1}
    np.testing.assert_allclose(tt, 4.0 * opt.theta + (1 - 4.0) * opt.theta_prev)


def test_eta_one_means_no_extrapolation_and_no_momentum():
    opt = NIGT(np.zeros(2), eta=1.0, alpha=0.1)
    opt.initialise(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(opt.theta_tilde(), opt.theta)
    g = np.array([0.0, -2.0])
    opt.step(g)
    np.testing.assert_array_equal(opt.d, g)


def test_momentum_update_and_step_length():
    rng = np.random.default_rng(0)
    opt = NIGT(rng.standard_normal(5), eta=0.3, alpha=0.05)
    opt.initialise(rng.standard_normal(5))
    for _ in range(10):
        d_prev, theta_prev = opt.d.copy(), opt.theta.copy()
        g = rng.standard_normal(5)
        opt.step(g)
        np.testing.assert_allclose(opt.d, 0.7 * d_prev + 0.3 * g, rtol=1e-14)
        np.testing.assert_allclose(np.linalg.norm(opt.theta - theta_prev), 0.05, rtol=1e-12)
        np.testing.assert_array_equal(opt.theta_prev, theta_prev)
        np.testing.assert_allclose(opt.theta - theta_prev, 0.05 * opt.d / np.linalg.norm(opt.d))
    assert opt.t == 10


def test_zero_direction_leaves_theta_unchanged():
    opt = NIGT(np.ones(3), eta=1.0, alpha=0.1)
    opt.initialise(np.zeros(3))
    np.testing.assert_array_equal(opt.theta, np.ones(3))
    assert np.all(np.isfinite(opt.theta))


@pytest.mark.parametrize("eta,alpha", [(0.0, 0.1), (1.5, 0.1), (0.5, 0.0), (0.5, -1.0)])
def test_rejects_out_of_range_hyperparameters(eta, alpha):
    with pytest.raises(ValueError):
        NIGT(np.zeros(2), eta=eta, alpha=alpha)


def test_policy_gradient_is_plain_ascent():
    pg = PolicyGradient(np.zeros(2), lr=0.5)
    pg.initialise(np.array([2.0, 0.0]))
    pg.step(np.array([0.0, 4.0]))
    np.testing.assert_array_equal(pg.theta, [1.0, 2.0])
    np.testing.assert_array_equal(pg.theta_tilde(), pg.theta)


def test_outer_steps_hand_out_64_byte_aligned_arrays():
    """The kernels stream theta's weights every step: the outer steps' arrays start on a
    cache line, and theta_tilde has the bits of the plain formula."""
    from nigt_hpc import kernels as K

    rng = np.random.default_rng(3)
    theta0 = rng.normal(size=1001)[1:]  # a view 8 bytes off its buffer's start
    opt = NIGT(theta0, eta=0.3, alpha=0.1)
    opt.initialise(rng.normal(size=1000))
    opt.step(rng.normal(size=1000))
    tilde = opt.theta_tilde()
    assert all(K.is_aligned(a) for a in (opt.theta, opt.theta_prev, opt.d, tilde))
    plain = opt.theta + ((1.0 - opt.eta) / opt.eta) * (opt.theta - opt.theta_prev)
    np.testing.assert_array_equal(tilde, plain)
    pg = PolicyGradient(theta0, lr=0.1)
    assert K.is_aligned(pg.theta) and K.is_aligned(pg.theta_tilde())
