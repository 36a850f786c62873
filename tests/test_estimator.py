"""Baselines (nigt_hpc.estimator): unbiased against an exactly computed gradient, lower
variance, fitted before use, ``none`` bitwise the estimator without a baseline."""

import functools
import math

import numpy as np
import pytest
from nigt_hpc.kernels import batched as KB

from nigt_hpc import config, kernels, run
from nigt_hpc.estimator import LinearBaseline, TimeBaseline, make_baseline
from nigt_hpc.policy import PolicySpec
from nigt_hpc.rollout import Sampler, make_sampler

# --------------------------------------------------------------------------- a tiny MDP
# Three states seen one-hot, two actions, horizon 4.  Rewards carry a large constant (as
# Hopper's alive bonus does), moves are random, and (state 2, action 1) ends the episode,
# so trajectories have different lengths.  J_H(theta) is a finite sum over trajectories.
S, H, GAMMA = 3, 4, 0.9
P0 = np.array([0.6, 0.4, 0.0])
P_MOVE = 0.8


def reward(s, a):
    return 1.0 + 0.5 * (a == s % 2) - 0.25 * s


def successors(s, a):
    """Return [(probability, next state)]."""
    return [(P_MOVE, (s + 1 + a) % S), (1.0 - P_MOVE, s)]


def terminal(s, a):
    return s == 2 and a == 1


class ChainEnv:
    """The MDP above with gymnasium's reset/step calls."""

    def reset(self, seed=None):
        self.rng = np.random.default_rng(seed)
        self.s = int(self.rng.choice(S, p=P0))
        return self._obs(), {}

    def _obs(self):
        o = np.zeros(S)
        o[self.s] = 1.0
        return o

    def step(self, a):
        r = reward(self.s, a)
        done = terminal(self.s, a)
        probs, nxt = zip(*successors(self.s, a))
        self.s = nxt[0] if self.rng.random() < probs[0] else nxt[1]
        return self._obs(), r, done, False, {}


SPEC = PolicySpec(sizes=np.array([S, 2], dtype=np.int64), head=kernels.HEAD_SOFTMAX,
                  act_dim=1, a_center=np.zeros(1), a_scale=np.ones(1), squash=True)
INFO = {"obs_dim": S, "discrete": True}
THETA = np.array([0.3, -0.2, -0.4, 0.5, 0.1, 0.2, 0.05, -0.05])  # W (3 x 2), then b
BETA = THETA + np.array([0.1, -0.15, 0.05, 0.1, -0.1, 0.0, 0.1, 0.05])  # behaviour of g_IS


def pi(theta, s):
    z = theta[2 * s : 2 * s + 2] + theta[6:8]
    e = np.exp(z - z.max())
    return e / e.sum()


def exact_J(theta):
    """Return J_H(theta) = E[sum_{t<H} gamma^t r_t], summed over every trajectory."""
    @functools.cache
    def v(s, t):
        if t == H:
            return 0.0
        p = pi(theta, s)
        out = 0.0
        for a in (0, 1):
            tail = 0.0 if terminal(s, a) else sum(q * v(s2, t + 1) for q, s2 in successors(s, a))
            out += p[a] * (GAMMA ** t * reward(s, a) + tail)
        return out

    return sum(P0[s] * v(s, 0) for s in range(S))


def exact_grad(theta, h=1e-6):
    """Return grad J_H by central differences of the exact J (error about 1e-10)."""
    g = np.empty_like(theta)
    for i in range(len(theta)):
        e = np.zeros_like(theta)
        e[i] = h
        g[i] = (exact_J(theta + e) - exact_J(theta - e)) / (2 * h)
    return g


def chain_cfg(baseline):
    return config.load(None, [f"estimator.baseline={baseline}", f"env.horizon={H}",
                              f"env.gamma={GAMMA}", "run.seed=3"])


WARMUP, N = 500, 20_000


@functools.cache
def estimates(baseline, importance):
    """Return the (N x d) gradient estimates of one sampler after WARMUP trajectories:
    g_H at THETA, or (``importance``) g_IS at THETA from trajectories sampled at BETA."""
    smp = make_sampler(chain_cfg(baseline), ChainEnv(), SPEC, INFO, 0)
    at = BETA if importance else THETA
    out = np.zeros((N, len(THETA)))
    for i in range(WARMUP + N):
        traj = smp.rollout(at)
        g = out[i - WARMUP] if i >= WARMUP else np.zeros(len(THETA))
        if importance:
            smp.add_grad_is(THETA, traj, math.inf, 1.0, g)
        else:
            smp.add_grad(THETA, traj, 1.0, g)
    return out


CASES = [(b, imp) for imp in (False, True) for b in ("none", "time", "linear")]


@pytest.mark.parametrize("baseline,importance", CASES)
def test_mean_of_estimates_is_the_exact_gradient(baseline, importance):
    """Within 4 standard errors in every coordinate (seeded: the same numbers every run)."""
    G = estimates(baseline, importance)
    exact = exact_grad(THETA)
    mean = G.mean(axis=0)
    se = G.std(axis=0, ddof=1) / math.sqrt(N)
    z = (mean - exact) / se
    name = ("g_IS" if importance else "g_H") + f" baseline={baseline}"
    print(f"\n{name}: exact  {np.array2string(exact, precision=4)}"
          f"\n{name}: mean   {np.array2string(mean, precision=4)}"
          f"\n{name}: max |z| {np.abs(z).max():.2f}, trace cov {np.trace(np.cov(G.T)):.4f}")
    assert np.all(np.abs(z) < 4.0), z


@pytest.mark.parametrize("importance", [False, True])
def test_baselines_reduce_the_variance(importance):
    tr = {b: float(np.trace(np.cov(estimates(b, importance).T))) for b in
          ("none", "time", "linear")}
    print(f"\ntrace of covariance ({'g_IS' if importance else 'g_H'}): {tr}")
    assert tr["time"] < 0.5 * tr["none"]
    assert tr["linear"] < 0.5 * tr["none"]


def test_exact_gradient_is_the_expected_gpomdp_estimate():
    """The finite-difference gradient against E[g_H] summed exactly over trajectories:
    the oracle above is the gradient of the estimator's own objective."""
    theta = THETA
    total = np.zeros_like(theta)

    def walk(s, t, prob, scores):
        # scores: grad log pi of the steps before t on this branch
        if t == H:
            return
        p = pi(theta, s)
        for a in (0, 1):
            sc = np.zeros_like(theta)
            d = np.eye(2)[a] - p
            sc[2 * s : 2 * s + 2] = d
            sc[6:8] = d
            r = GAMMA ** t * reward(s, a)
            # every earlier step's G includes r: add prob * r * (sum of scores up to t)
            total[:] += prob * p[a] * r * (sum(scores, np.zeros_like(theta)) + sc)
            if not terminal(s, a):
                for q, s2 in successors(s, a):
                    walk(s2, t + 1, prob * p[a] * q, scores + [sc])

    for s in range(S):
        if P0[s] > 0:
            walk(s, 0, P0[s], [])
    np.testing.assert_allclose(total, exact_grad(theta), rtol=1e-7, atol=1e-9)


# --------------------------------------------------------------------------- none is today's


def _trajs(sets, n=6, worker=1):
    cfg = config.load(None, list(sets))
    env, info, spec = run.build(cfg, worker)
    old = Sampler(env, spec, cfg["env"]["horizon"], cfg["env"]["gamma"], cfg["run"]["seed"],
                  worker, info["obs_dim"], info["discrete"])
    env2, _, _ = run.build(cfg, worker)
    new = make_sampler(cfg, env2, spec, info, worker)
    theta = kernels.aligned_copy(spec.init_theta(0, -0.5))
    return old, new, theta, spec, n


@pytest.mark.parametrize("sets", [
    [],  # CartPole, compiled, linear softmax
    ["env.id=Pendulum-v1", "policy.kind=mlp", "env.horizon=60"],  # gymnasium, per-step MLP
    ["env.id=Pendulum-v1", "policy.kind=mlp", "policy.hidden=[256, 256]",
     "env.horizon=40"],  # long enough and large enough for the matrix-form kernels
])
def test_none_is_bitwise_the_estimator_without_baseline(sets):
    old, new, theta, spec, n = _trajs(sets)
    assert new.baseline is None
    for _ in range(n):
        a, b = old.rollout(theta), new.rollout(theta)
        assert b.base is None
        ga, gb, gk = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
        old.add_grad(theta, a, 0.5, ga)
        new.add_grad(theta, b, 0.5, gb)
        kern = KB if KB.use_batched(b.T, len(theta)) else kernels
        kern.grad_gpomdp(theta, spec.sizes, spec.head, b.obs, b.acts, b.rew, new.gamma, 0.5,
                         gk)
        assert ga.tobytes() == gb.tobytes() == gk.tobytes()
        ia, ib = np.zeros_like(theta), np.zeros_like(theta)
        old.add_grad_is(theta * 1.01, a, 1.0, 0.5, ia)
        new.add_grad_is(theta * 1.01, b, 1.0, 0.5, ib)
        assert ia.tobytes() == ib.tobytes()


@pytest.mark.parametrize("sets", [
    [], ["env.id=Pendulum-v1", "policy.kind=mlp", "env.horizon=60"],
    ["env.id=Pendulum-v1", "policy.kind=mlp", "policy.hidden=[256, 256]", "env.horizon=40"]])
def test_zero_baseline_gives_the_same_bits(sets):
    """The baseline kernels with b = 0 write the bits of the kernels without one."""
    old, _, theta, spec, n = _trajs(sets, n=3)
    for _ in range(n):
        tr = old.rollout(theta)
        zero = np.zeros(tr.T)
        for kern in (kernels, KB):
            g0, g1 = np.zeros_like(theta), np.zeros_like(theta)
            kern.grad_gpomdp(theta, spec.sizes, spec.head, tr.obs, tr.acts, tr.rew, 0.97, 0.5,
                             g0)
            kern.grad_gpomdp_baseline(theta, spec.sizes, spec.head, tr.obs, tr.acts, tr.rew,
                                      zero, 0.97, 0.5, g1)
            assert g0.tobytes() == g1.tobytes()
            g0[:], g1[:] = 0.0, 0.0
            lp_b = tr.logp - 0.01
            kern.grad_is(theta, spec.sizes, spec.head, tr.obs, tr.acts, tr.rew, lp_b, 0.97, 1.5,
                         0.5, g0)
            kern.grad_is_baseline(theta, spec.sizes, spec.head, tr.obs, tr.acts, tr.rew, lp_b,
                                  zero, 0.97, 1.5, 0.5, g1)
            assert g0.tobytes() == g1.tobytes()
        c0, c1 = np.empty(tr.T), np.empty(tr.T)
        kernels.reward_to_go(tr.rew, 0.97, 0.5, c0)
        kernels.gpomdp_coefficients(tr.rew, 0.97, zero, 0.5, c1)
        assert c0.tobytes() == c1.tobytes()


def test_importance_weighted_with_beta_theta_is_g_h():
    """g_IS at the behaviour theta equals g_H with the same baseline (the ratios are 1)."""
    smp = make_sampler(chain_cfg("time"), ChainEnv(), SPEC, INFO, 0)
    for _ in range(50):
        tr = smp.rollout(THETA)
        a, b = np.zeros(8), np.zeros(8)
        smp.add_grad(THETA, tr, 1.0, a)
        smp.add_grad_is(THETA, tr, 1.0, 1.0, b)
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    assert np.any(tr.base != 0.0)


def test_coefficients_are_return_minus_baseline():
    rew = np.array([1.0, 2.0, -0.5, 3.0])
    base = np.array([0.5, 0.25, 1.0, -2.0])
    G = np.array([sum(0.9 ** h * rew[h] for h in range(t, 4)) for t in range(4)])
    c = np.empty(4)
    kernels.gpomdp_coefficients(rew, 0.9, base, 2.0, c)
    np.testing.assert_allclose(c, 2.0 * (G - base), rtol=1e-14)
    lp_t, lp_b = np.array([-0.1, -0.5, -0.2, -0.9]), np.array([-0.3, -0.4, -0.2, -0.6])
    W = np.cumprod(np.minimum(1.2, np.exp(lp_t - lp_b)))
    want = [sum(0.9 ** h * rew[h] * W[h] for h in range(t, 4)) - base[t] * W[t]
            for t in range(4)]
    kernels.is_coefficients_baseline(lp_t, lp_b, rew, 0.9, 1.2, base, 2.0, c)
    np.testing.assert_allclose(c, 2.0 * np.array(want), rtol=1e-13)


# --------------------------------------------------------------------------- fit before use


@pytest.mark.parametrize("baseline", ["time", "linear"])
def test_a_trajectory_gets_the_baseline_of_earlier_ones(baseline):
    """b of each trajectory is what the baseline's state before it gives, whatever the
    trajectory itself holds."""
    smp = make_sampler(chain_cfg(baseline), ChainEnv(), SPEC, INFO, 0)
    bl = smp.baseline
    for i in range(40):
        before = bl.state()
        tr = smp.rollout(THETA)
        if baseline == "time":
            want = before["mean"][: tr.T]
        else:
            want = LinearBaseline(H, S).features(tr.obs) @ before["w"]
        assert np.array_equal(tr.base, want)
        if i == 0:
            assert np.all(tr.base == 0.0)  # nothing earlier: b = 0
    assert np.any(tr.base != 0.0)


def test_time_baseline_is_the_running_mean_per_step():
    bl = TimeBaseline(4, rate=0.0)
    b = np.empty(4)
    bl.observe(None, np.array([1.0, 2.0, 3.0, 4.0]), b)
    bl.observe(None, np.array([3.0, 4.0]), b[:2])
    assert b[:2].tolist() == [1.0, 2.0]  # the first trajectory's G
    np.testing.assert_array_equal(bl.mean, [2.0, 3.0, 3.0, 4.0])
    np.testing.assert_array_equal(bl.count, [2, 2, 1, 1])
    fast = TimeBaseline(2, rate=0.5)
    for G in ([0.0, 0.0], [4.0, 4.0], [8.0, 8.0]):
        fast.observe(None, np.array(G), np.empty(2))
    np.testing.assert_array_equal(fast.mean, [5.0, 5.0])  # 0, then 2 (1/2), then 5 (1/2)


def test_linear_baseline_fits_a_linear_target():
    """A return that is exactly linear in the features is recovered by one fit."""
    rng = np.random.default_rng(0)
    bl = LinearBaseline(horizon=20, obs_dim=3, reg=1e-9, every=0)
    w_true = rng.standard_normal(10)
    for _ in range(5):
        obs = rng.uniform(-2, 2, size=(20, 3))
        bl.observe(obs, bl.features(obs) @ w_true, np.empty(20))
    assert bl.fits == 0 and np.all(bl.w == 0.0)  # every = 0: only at a round boundary
    bl.end_round()
    assert bl.fits == 1 and bl.pending[0] == 0
    np.testing.assert_allclose(bl.w, w_true, rtol=1e-6, atol=1e-6)
    obs = np.full((3, 3), 50.0)
    phi = bl.features(obs)
    assert np.all(phi[:, :3] == 10.0) and np.all(phi[:, 3:6] == 100.0)  # clipped
    np.testing.assert_array_equal(phi[:, 6], np.arange(3) / 20)
    np.testing.assert_array_equal(phi[:, 9], 1.0)


def test_linear_refits_every_k_trajectories_and_at_round_end():
    cfg = config.load(None, ["estimator.baseline=linear", "estimator.linear_every=3",
                             f"env.horizon={H}"])
    smp = make_sampler(cfg, ChainEnv(), SPEC, INFO, 0)
    for _ in range(7):
        smp.rollout(THETA)
    assert smp.baseline.fits == 2 and smp.baseline.pending[0] == 1
    smp.end_round()
    assert smp.baseline.fits == 3 and smp.baseline.pending[0] == 0
    smp.end_round()  # nothing new: no fit
    assert smp.baseline.fits == 3


@pytest.mark.parametrize("baseline", ["none", "time", "linear"])
def test_state_and_restore_continue_the_same_gradients(baseline):
    """A sampler restored from ``state()`` (plain arrays) gives the gradients the original
    gives from there on."""
    a = make_sampler(chain_cfg(baseline), ChainEnv(), SPEC, INFO, 0)
    for _ in range(25):
        a.rollout(THETA)
    st = a.state()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in st.values())
    assert (st == {}) == (baseline == "none")
    b = make_sampler(chain_cfg(baseline), ChainEnv(), SPEC, INFO, 0)
    b.restore({k: v.copy() for k, v in st.items()})
    b.episode = a.episode
    for _ in range(25):
        ga, gb = np.zeros(8), np.zeros(8)
        a.add_grad(THETA, a.rollout(THETA), 1.0, ga)
        b.add_grad(THETA, b.rollout(THETA), 1.0, gb)
        assert ga.tobytes() == gb.tobytes()
    if baseline != "none":
        with pytest.raises(ValueError, match="shape"):
            b.restore({k: np.zeros(1) for k in st})


def test_trajectory_copy_keeps_its_baseline():
    smp = make_sampler(chain_cfg("time"), ChainEnv(), SPEC, INFO, 0)
    smp.rollout(THETA)
    tr = smp.rollout(THETA)
    cp = tr.copy()
    assert np.array_equal(cp.base, tr.base) and cp.base is not tr.base


def test_make_baseline_and_config_table():
    cfg = config.defaults()
    assert cfg["estimator"]["baseline"] == "none"
    assert make_baseline(cfg["estimator"], 10, 3) is None
    with pytest.raises(config.ConfigError, match="estimator.baseline"):
        config.load(None, ["estimator.baseline=critic"])
    with pytest.raises(config.ConfigError, match="estimator.linear_reg"):
        config.load(None, ["estimator.linear_reg=-1"])


@pytest.mark.parametrize("baseline", ["time", "linear"])
def test_simulate_with_a_baseline(tmp_path, baseline):
    """The virtual-clock engine trains with either baseline through ``make_sampler``."""
    cfg = config.load(None, ["env.id=Pendulum-v1", "env.horizon=30", "sim.workers=2",
                             "run.max_rounds=3", "algo.M=4", "algo.M_init=4",
                             "delays.compute=const",
                             f"estimator.baseline={baseline}", "estimator.linear_every=2"])
    assert run.simulate(cfg, out=str(tmp_path / "r"), quiet=True) == 0
    assert (tmp_path / "r" / "theta.npy").exists()
