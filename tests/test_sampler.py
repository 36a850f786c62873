"""The sampler: episode ends, seeding per (worker, episode), behaviour log-probs."""

import warnings

import numpy as np
import pytest

from nigt_hpc import config, envs, kernels, run
from nigt_hpc.rollout import Sampler, _Noise, episode_seeds
from tests.conftest import needs_mujoco


def make(sets=(), worker=0, horizon=None):
    cfg = config.load(None, list(sets))
    env, info, spec = run.build(cfg, worker)
    H = horizon or cfg["env"]["horizon"]
    s = Sampler(env, spec, H, cfg["env"]["gamma"], cfg["run"]["seed"], worker,
                info["obs_dim"], info["discrete"])
    return s, spec.init_theta(0, -0.5), spec


def test_pole_falling_is_terminated():
    s, theta, spec = make()
    theta[:] = 0.0
    theta[-2:] = [50.0, -50.0]  # always push left: the pole falls within a few dozen steps
    tr = s.rollout(theta)
    assert tr.terminated and not tr.truncated and tr.T < 100
    assert np.all(tr.acts == 0.0)


def test_horizon_and_time_limit_are_truncations():
    s, theta, _ = make(horizon=7)
    tr = s.rollout(theta)
    if tr.T == 7:
        assert tr.truncated and not tr.terminated
    s2, theta, _ = make(["env.kwargs={max_episode_steps = 6}"])
    lens = [s2.rollout(theta) for _ in range(5)]
    assert all(t.T <= 6 for t in lens)
    assert all(t.truncated != t.terminated for t in lens)
    assert any(t.T == 6 and t.truncated for t in lens)


def test_seeds_depend_only_on_seed_worker_and_episode():
    a, theta, _ = make()
    b, _, _ = make()
    b.episode = 3
    traj_b = b.rollout(theta).copy()
    for _ in range(3):
        a.rollout(theta)
    traj_a = a.rollout(theta)
    np.testing.assert_array_equal(traj_a.obs, traj_b.obs)
    np.testing.assert_array_equal(traj_a.acts, traj_b.acts)
    other, _, _ = make(worker=1)
    other.episode = 3
    assert not np.array_equal(other.rollout(theta).obs[0], traj_b.obs[0])
    assert episode_seeds(0, 1, 2)[0] == episode_seeds(0, 1, 2)[0]
    assert episode_seeds(0, 1, 2)[0] != episode_seeds(0, 2, 1)[0]


def test_episode_seeds_are_the_children_of_one_seed_sequence():
    # episode_seeds builds the two spawned children directly; the streams must be spawn's
    for seed, worker, episode in ((0, 0, 0), (7, 3, 12345), (2**40, 99, 1)):
        env_ss, pol_ss = np.random.SeedSequence([seed, worker, episode]).spawn(2)
        env_seed, rng = episode_seeds(seed, worker, episode)
        assert env_seed == int(env_ss.generate_state(1)[0])
        ref = np.random.Generator(np.random.PCG64(pol_ss))
        np.testing.assert_array_equal(rng.standard_normal(50), ref.standard_normal(50))


@pytest.mark.parametrize("discrete", [True, False])
def test_noise_drawn_in_chunks_is_the_one_shot_draw(discrete):
    # the sampler draws an episode's noise as the episode goes; the rows must be those of
    # one draw of the whole horizon from the same Generator
    H, width = 300, 1 if discrete else 3
    noise = _Noise(np.empty((H, width)), discrete)
    noise.start(np.random.default_rng(5))
    for t_end in (1, 2, 64, 65, 200, 130, 300):
        noise.upto(t_end)
        assert noise.n >= t_end
    ref = np.random.default_rng(5)
    one = ref.random((H, width)) if discrete else ref.standard_normal((H, width))
    np.testing.assert_array_equal(noise.buf, one)


def test_behaviour_logp_is_stored_per_step():
    s, theta, spec = make()
    tr = s.rollout(theta)
    lp = np.empty(tr.T)
    kernels.logp_batch(theta, spec.sizes, spec.head, tr.obs, tr.acts, lp)
    np.testing.assert_array_equal(lp, tr.logp)


def test_poll_abandons_and_still_consumes_the_episode_index():
    s, theta, _ = make(["env.id=Pendulum-v1"])
    calls = []
    assert s.rollout(theta, poll=lambda t: calls.append(t) or True, poll_every=16) is None
    assert calls == [16] and s.episode == 1 and s.steps == 16


def test_module_colon_env_id():
    s, theta, _ = make(["env.id=tests.envs_fixture:NigtChain-v0"])
    theta[:] = 0.0
    theta[-1] = 30.0  # always right
    tr = s.rollout(theta)
    assert tr.T == 5 and tr.terminated and tr.ret == 5.0


def test_list_observations_are_taken_as_arrays():
    """An env that returns Python lists (gymnasium warns but passes them on) samples the
    same trajectory as its array-returning twin."""
    out = []
    for env_id in ("NigtChain-v0", "NigtListChain-v0"):
        s, theta, _ = make([f"env.id=tests.envs_fixture:{env_id}"])
        theta[:] = 0.3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tr = s.rollout(theta)
        out.append((tr.obs.copy(), tr.acts.copy(), tr.logp.copy()))
    for x, y in zip(*out):
        np.testing.assert_array_equal(x, y)


def test_negate_obs_appends_flag_on_every_observation():
    cfg = config.load(None, ["env.heterogeneity=negate_obs"])
    e0, e1 = envs.make_env(cfg, 0), envs.make_env(cfg, 1)
    o0, _ = e0.reset(seed=5)
    o1, _ = e1.reset(seed=5)
    np.testing.assert_array_equal(o1[:-1], -o0[:-1])
    assert o0[-1] == 0.0 and o1[-1] == 1.0
    s0, *_ = e0.step(0)
    s1, *_ = e1.step(0)
    np.testing.assert_array_equal(s1[:-1], -s0[:-1])
    assert s0[-1] == 0.0 and s1[-1] == 1.0


@needs_mujoco
@pytest.mark.parametrize("env_id", ["InvertedPendulum-v4", "InvertedPendulum-v5"])
def test_mujoco_envs_sample_with_squashed_gaussian(env_id):
    s, theta, spec = make([f"env.id={env_id}", "policy.kind=mlp", "policy.hidden=[16]"])
    assert spec.head == kernels.HEAD_GAUSS_SOFTPLUS
    tr = s.rollout(theta)
    assert tr.T >= 1 and tr.obs.shape[1] == 4
    g = np.zeros_like(theta)
    s.add_grad(theta, tr, 1.0, g)
    assert np.all(np.isfinite(g)) and np.any(g != 0.0)


def _misaligned(theta):
    """A copy of ``theta`` whose data is not on a 64-byte boundary."""
    buf = np.empty(theta.shape[0] + 16)
    for skip in range(1, 9):
        view = buf[skip : skip + theta.shape[0]]
        if not kernels.is_aligned(view):
            view[:] = theta
            return view
    raise AssertionError("no misaligned offset found")


def test_kernels_get_an_aligned_theta_and_the_same_numbers(monkeypatch):
    """A theta (4 KB or more) off the 64-byte grid is copied onto it before the kernels see it
    (split cache-line loads); the trajectory and gradient are bit for bit the same."""
    sets = ["env.backend=gymnasium", "policy.kind=mlp", "policy.hidden=[64, 64]"]
    ref, theta, _ = make(sets)
    tr_ref = ref.rollout(theta)
    g_ref = np.zeros_like(theta)
    ref.add_grad(theta, tr_ref, 1.0, g_ref)

    s, _, _ = make(sets)
    seen = []
    act_row = kernels.act_row

    def spy(th, *args):
        seen.append(kernels.is_aligned(th))
        return act_row(th, *args)

    monkeypatch.setattr(kernels, "act_row", spy)
    odd = _misaligned(theta)
    tr = s.rollout(odd)
    g = np.zeros_like(theta)
    s.add_grad(odd, tr, 1.0, g)
    assert seen and all(seen)
    for x, y in ((tr.obs, tr_ref.obs), (tr.acts, tr_ref.acts), (tr.logp, tr_ref.logp)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(odd, theta)  # the caller's array is untouched
