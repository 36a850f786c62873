"""Compiled classic-control envs: the same numbers as gymnasium, step for step.

Exact equality everywhere (``np.array_equal`` on float32 observations, ``==`` and type on
rewards), with float32 actions (``action_space.sample()``) and with the float64 actions our
sampler sends, clipped ones included.
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from nigt_hpc.kernels import envs as KE

from nigt_hpc import config, envs, kernels, run
from nigt_hpc.config import ConfigError
from nigt_hpc.envs.compiled import SUPPORTED, CompiledEnv
from nigt_hpc.rollout import Sampler

IDS = sorted(SUPPORTED)


def _gym(env_id, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(env_id, **kw)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("f32", [True, False], ids=["f32-actions", "f64-actions"])
def test_steps_equal_gymnasium(env_id, f32):
    g, c = _gym(env_id), CompiledEnv(env_id)
    g.action_space.seed(3)
    steps = ends = 0
    for ep in range(12):
        o1, _ = g.reset(seed=100 + ep)
        o2, _ = c.reset(seed=100 + ep)
        assert o1.dtype == o2.dtype == np.float32 and np.array_equal(o1, o2)
        for _ in range(1000):
            a = g.action_space.sample()
            if not f32 and not isinstance(a, (int, np.integer)):
                a = a.astype(np.float64) * 1.3  # float64, and clipped now and then
            r1, r2 = g.step(a), c.step(a)
            steps += 1
            assert np.array_equal(r1[0], r2[0]), (env_id, ep, r1[0], r2[0])
            assert r1[1] == r2[1] and type(r1[1]) is type(r2[1])
            assert r1[2] == r2[2] and r1[3] == r2[3]
            if r1[2] or r1[3]:
                ends += 1
                break
    assert steps > 200 and ends >= 1


def test_terminations_and_time_limits_happen():
    """Each env's end conditions are exercised: a terminal step and a TimeLimit cut."""
    c = CompiledEnv("CartPole-v1")
    c.reset(seed=0)
    for _ in range(100):
        _, r, term, trunc, _ = c.step(1)
        if term:
            break
    assert term and not trunc and r == 1.0
    p = CompiledEnv("Pendulum-v1")
    p.reset(seed=0)
    outs = [p.step(np.zeros(1, np.float32)) for _ in range(200)]
    assert not any(o[2] for o in outs) and outs[-1][3] and not any(o[3] for o in outs[:-1])
    m = CompiledEnv("MountainCarContinuous-v0", {"max_episode_steps": 5})
    m.reset(seed=0)
    assert [m.step(np.ones(1))[3] for _ in range(5)] == [False] * 4 + [True]


def test_pendulum_g_kwarg_matches():
    g, c = _gym("Pendulum-v1", g=3.5), CompiledEnv("Pendulum-v1", {"g": 3.5})
    g.reset(seed=1)
    c.reset(seed=1)
    for k in range(50):
        a = np.array([np.sin(k)], dtype=np.float32)
        assert np.array_equal(g.step(a)[0], c.step(a)[0])


def _sampler(env_id, backend, sets=()):
    cfg = config.load(None, [f'env.id="{env_id}"', f'env.backend="{backend}"',
                             "env.horizon=120", *sets])
    env, info, spec = run.build(cfg, 0)
    s = Sampler(env, spec, 120, 0.99, 5, 0, info["obs_dim"], info["discrete"])
    theta = spec.init_theta(0, -0.5)
    theta *= 40.0  # a decisive policy, so episodes differ in length
    return s, theta


@pytest.mark.parametrize("env_id,sets", [
    ("CartPole-v1", []), ("Acrobot-v1", ['policy.kind="mlp"', "policy.hidden=[8]"]),
    ("Pendulum-v1", ['policy.kind="mlp"', "policy.hidden=[8]"]),
    ("MountainCarContinuous-v0", ['policy.head="gaussian_logstd"'])])
def test_sampler_backends_give_identical_trajectories(env_id, sets):
    """Same seeds: the compiled loop and the gymnasium loop give the same trajectories,
    behaviour log-probs and gradients, bit for bit, polled in chunks or not."""
    ref, theta = _sampler(env_id, "gymnasium", sets)
    fast, _ = _sampler(env_id, "compiled", sets)
    assert fast.compiled and not ref.compiled
    for k in range(6):
        poll = (lambda T: False) if k % 2 else None
        a = ref.rollout(theta, poll=poll, poll_every=7)
        b = fast.rollout(theta, poll=poll, poll_every=7)
        for x, y in ((a.obs, b.obs), (a.acts, b.acts), (a.rew, b.rew), (a.logp, b.logp)):
            assert np.array_equal(x, y)
        assert (a.terminated, a.truncated, a.episode) == (b.terminated, b.truncated, b.episode)
        ga, gb = np.zeros_like(theta), np.zeros_like(theta)
        ref.add_grad(theta, a, 0.5, ga)
        fast.add_grad(theta, b, 0.5, gb)
        assert np.array_equal(ga, gb)
    assert ref.steps == fast.steps


def test_interrupted_episode_resumes_identically():
    """Interrupt at a poll, keep it, resume at another theta: both backends agree."""
    res = []
    for backend in ("gymnasium", "compiled"):
        s, theta = _sampler("Pendulum-v1", backend)
        assert s.rollout(theta, poll=lambda T: T >= 14, poll_every=7, keep=True) is None
        assert s.has_pending
        tr = s.rollout(theta * 0.5)
        assert tr.resumed and tr.T == 120
        res.append((tr.obs.copy(), tr.logp.copy(), tr.rew.copy(), s.steps))
    for x, y in zip(*res):
        assert np.array_equal(x, y)


def test_on_step_is_called_after_every_step():
    s, theta = _sampler("CartPole-v1", "compiled")
    calls = []
    tr = s.rollout(theta, on_step=lambda: calls.append(1) or False)
    assert len(calls) == tr.T
    s2, _ = _sampler("CartPole-v1", "compiled")
    stop_after = []
    out = s2.rollout(theta, on_step=lambda: stop_after.append(1) or len(stop_after) == 3)
    assert out is None and s2.steps == 3


def test_rollout_grad_is_rollout_then_g_h():
    env = CompiledEnv("CartPole-v1")
    sizes = np.array([4, 2], dtype=np.int64)
    theta = np.array([0, 0, 0, 0, -20.0, 20.0, -20.0, 20.0, 0, 0])
    H = 200
    bufs = [np.zeros((H, 4)), np.zeros((H, 1)), np.zeros(H), np.zeros(H)]
    noise = np.random.default_rng(0).random((H, 1))
    o, _ = env.reset(seed=4)
    start = env.state.copy()
    bufs[0][0] = o
    out = np.zeros(10)
    work = np.empty(kernels.work_size(sizes))
    T, term = KE.rollout_grad(env.kind, env.state, env.params, H, theta, sizes, 0, noise,
                              np.zeros(1), np.ones(1), False, 0.99, 1.0, work, *bufs,
                              np.zeros(1), out)
    assert T > 20
    ref = np.zeros(10)
    kernels.grad_gpomdp(theta, sizes, 0, bufs[0][:T], bufs[1][:T], bufs[2][:T], 0.99, 1.0, ref)
    assert np.array_equal(out, ref) and np.any(ref != 0)
    env.state[:] = start  # same start again: same episode
    again = [np.zeros((H, 4)), np.zeros((H, 1)), np.zeros(H), np.zeros(H)]
    again[0][0] = o
    T2, _ = KE.rollout(env.kind, env.state, env.params, 0, H, theta, sizes, 0, noise,
                       np.zeros(1), np.ones(1), False, work, *again, np.zeros(1),
                       np.empty((0, 0)))
    assert T2 == T and np.array_equal(again[0][:T], bufs[0][:T])


def test_backend_selection():
    auto = config.load(None, [])
    assert envs.use_compiled(auto) and isinstance(envs.make_env(auto), CompiledEnv)
    ref = config.load(None, ['env.backend="gymnasium"'])
    assert not envs.use_compiled(ref)
    assert not isinstance(envs.make_env(ref), CompiledEnv)
    # auto falls back where there is no compiled version (an unsupported kwarg here)
    cp = config.load(None, ['env.kwargs={sutton_barto_reward = true}'])
    assert not envs.use_compiled(cp)
    forced = config.load(None, ['env.backend="compiled"', 'env.id="MountainCar-v0"'])
    with pytest.raises(ConfigError, match="no compiled version of 'MountainCar-v0'"):
        envs.make_env(forced)
    bad = config.load(None, ['env.backend="compiled"', 'env.kwargs={sutton_barto_reward = true}'])
    with pytest.raises(ConfigError, match="sutton_barto_reward"):
        envs.make_env(bad)


def test_negate_obs_wraps_the_compiled_env():
    cfg = config.load(None, ["env.heterogeneity=negate_obs"])
    e1 = envs.make_env(cfg, 1)
    assert isinstance(e1, envs.NegateObs) and isinstance(e1.env, CompiledEnv)
    o, _ = e1.reset(seed=0)
    assert o[-1] == 1.0 and o.shape == (5,)


@pytest.mark.parametrize("scale", [0.3, 40.0], ids=["random-ish", "decisive"])
def test_cartpole_rollout_is_bitwise_the_per_step_loop(scale):
    """The CartPole rollout computes both successors before it samples the action; it must
    give exactly what ``step`` after ``act_noise`` gives, step by step: observations,
    actions, rewards, log-probs, the end state, termination, in chunks (``t0`` > 0) too.
    A random-ish policy (both actions often) and a decisive one (long episodes)."""
    sizes = np.array([4, 2], dtype=np.int64)
    rng = np.random.default_rng(7)
    H = 300
    work = np.empty(kernels.work_size(sizes))
    lengths = []
    for ep in range(12):
        theta = rng.normal(size=10) * scale
        noise = rng.random((H, 1))
        env = CompiledEnv("CartPole-v1")
        o, _ = env.reset(seed=ep)
        start = env.state.copy()
        # the reference: one public step at a time
        ref_obs, ref = [np.asarray(o, dtype=np.float64)], []
        st = start.copy()
        for t in range(H):
            u, act = np.empty(1), np.empty(1)
            lp = kernels.act_noise(theta, sizes, kernels.HEAD_SOFTMAX, ref_obs[-1], noise[t],
                                   np.zeros(1), np.ones(1), False, work, u, act)
            ob = np.empty(4)
            r, term = KE.step(KE.CARTPOLE, st, env.params, act, False, ob)
            ref.append((u[0], r, lp))
            ref_obs.append(ob)
            if term:
                break
        T_ref = len(ref)
        # the compiled loop, in three chunks
        obs, acts, rew, logp = np.zeros((H, 4)), np.zeros((H, 1)), np.zeros(H), np.zeros(H)
        obs[0] = o
        a = np.zeros(1)
        t, term, cuts = 0, False, [5, 40, H]
        for cut in cuts:
            T, term = KE.rollout(env.kind, env.state, env.params, t, cut, theta, sizes,
                                 kernels.HEAD_SOFTMAX, noise, np.zeros(1), np.ones(1), False,
                                 work, obs, acts, rew, logp, a, np.empty((0, 0)))
            t = T
            if term:
                break
        assert t == T_ref and term == (T_ref < H)
        n = min(T_ref + 1, H)  # the terminal observation too
        assert np.array_equal(obs[:n], np.array(ref_obs[:n]))
        lengths.append(T_ref)
        assert np.array_equal(acts[:T_ref, 0], [x[0] for x in ref])
        assert np.array_equal(rew[:T_ref], [x[1] for x in ref])
        assert np.array_equal(logp[:T_ref], [x[2] for x in ref])
        assert np.array_equal(env.state, st) and a[0] == ref[-1][0]
    assert max(lengths) > 40  # the chunks were crossed


def test_cartpole_dynamics_equal_gymnasium_on_random_states():
    """The kernels use numpy's error model, so LLVM fuses ``cos(th)`` and ``sin(th)`` into
    one libm ``sincos`` call: pin that it gives gymnasium's ``math.cos`` / ``math.sin``
    bits, on 20,000 random states over the whole range, both actions."""
    g = _gym("CartPole-v1").unwrapped
    g.reset(seed=0)
    env = CompiledEnv("CartPole-v1")
    rng = np.random.default_rng(11)
    states = rng.uniform(-1, 1, size=(20000, 4)) * np.array([2.4, 5.0, 3.2, 10.0])
    ob = np.empty(4)
    for k, s0 in enumerate(states):
        a = k % 2
        g.state = s0.copy()
        g.steps_beyond_terminated = None
        g_obs, _, g_term, _, _ = g.step(a)
        env.state[:4] = s0
        _, term = KE.step(KE.CARTPOLE, env.state, env.params, np.array([float(a)]), False, ob)
        assert np.array_equal(env.state[:4], np.asarray(g.state, dtype=np.float64))
        assert np.array_equal(ob, g_obs) and term == g_term
