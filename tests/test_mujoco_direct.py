"""The direct MuJoCo path against gymnasium's own env, step by step, bit for bit."""

import warnings

import numpy as np
import pytest

from nigt_hpc import config, envs, run
from nigt_hpc.config import ConfigError
from nigt_hpc.rollout import Sampler
from tests.conftest import needs_mujoco

pytestmark = needs_mujoco


def _pair(env_id, kwargs=None):
    import gymnasium as gym

    from nigt_hpc.envs.mujoco_direct import DirectMujocoEnv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(env_id, **(kwargs or {})), DirectMujocoEnv(env_id, kwargs)


def _same_steps(env_id, kwargs=None, steps=1500, scale=1.5, seed=3):
    """Random actions (partly beyond the bounds) on both; reseed on every episode end."""
    ref, ours = _pair(env_id, kwargs)
    rng = np.random.default_rng(seed)
    lo = ref.action_space.low.astype(np.float64)
    hi = ref.action_space.high.astype(np.float64)
    o1, _ = ref.reset(seed=seed)
    o2, _ = ours.reset(seed=seed)
    np.testing.assert_array_equal(o1, o2)
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(steps):
        a = rng.uniform(scale * lo, scale * hi)
        s1, r1, te1, tr1, _ = ref.step(a)
        s2, r2, te2, tr2, _ = ours.step(a)
        np.testing.assert_array_equal(s1, s2)
        assert r1 == r2 and te1 == te2 and tr1 == tr2
        if te1 or tr1:
            ends["terminated" if te1 else "truncated"] += 1
            s = int(rng.integers(1 << 30))
            o1, _ = ref.reset(seed=s)
            o2, _ = ours.reset(seed=s)
            np.testing.assert_array_equal(o1, o2)
    return ends


@pytest.mark.parametrize("env_id", ["Hopper-v4", "Hopper-v5", "Walker2d-v4", "Walker2d-v5",
                                    "InvertedPendulum-v4", "InvertedPendulum-v5"])
def test_direct_step_equals_gymnasium(env_id):
    ends = _same_steps(env_id)
    assert ends["terminated"] > 5  # the health checks were exercised


@pytest.mark.parametrize("env_id,kwargs", [
    ("Reacher-v4", None), ("Reacher-v5", None),
    ("Reacher-v5", {"reward_dist_weight": 0.7, "reward_control_weight": 0.3}),
    ("Reacher-v4", {"max_episode_steps": 20})])
def test_direct_reacher_equals_gymnasium(env_id, kwargs):
    """Reacher never terminates: episodes end at the time limit, every one compared."""
    ends = _same_steps(env_id, kwargs, steps=1200)
    assert ends["terminated"] == 0 and ends["truncated"] >= 20


def test_direct_reacher_float32_actions_give_gymnasium_rewards():
    """The control cost squares the action as given, as gymnasium does (float32 in, a
    float32 cost out); observations are the same either way."""
    ref, ours = _pair("Reacher-v4")
    ref.reset(seed=1)
    ours.reset(seed=1)
    rng = np.random.default_rng(2)
    for _ in range(60):
        a = rng.uniform(-1.0, 1.0, size=2).astype(np.float32)
        s1, r1, _, tr1, _ = ref.step(a)
        s2, r2, _, tr2, _ = ours.step(a)
        np.testing.assert_array_equal(s1, s2)
        assert r1 == r2 and type(r1) is type(r2) and tr1 == tr2
        if tr1:
            ref.reset(seed=3)
            ours.reset(seed=3)


@pytest.mark.parametrize("env_id,kwargs", [
    ("Hopper-v4", {"terminate_when_unhealthy": False, "max_episode_steps": 60}),
    ("Hopper-v5", {"healthy_reward": 2.5, "ctrl_cost_weight": 0.1,
                   "exclude_current_positions_from_observation": False}),
    ("Walker2d-v4", {"healthy_z_range": (0.9, 1.8), "forward_reward_weight": 2.0}),
    ("Walker2d-v5", {"terminate_when_unhealthy": False, "max_episode_steps": 50}),
])
def test_direct_step_honours_env_kwargs(env_id, kwargs):
    ends = _same_steps(env_id, kwargs, steps=400)
    if "max_episode_steps" in kwargs:
        assert ends["truncated"] > 0


def test_direct_rejects_a_wrong_action_shape():
    _, ours = _pair("Hopper-v4")
    ours.reset(seed=0)
    with pytest.raises(ValueError, match="Action dimension mismatch"):
        ours.step(np.zeros(2))


def test_backend_selection_for_mujoco():
    from nigt_hpc.envs.mujoco_direct import DirectMujocoEnv

    auto = config.load(None, ['env.id="Hopper-v4"'])
    assert envs.backend_of(auto) == "direct"
    assert isinstance(envs.make_env(auto), DirectMujocoEnv)
    ref = config.load(None, ['env.id="Hopper-v4"', 'env.backend="gymnasium"'])
    assert envs.backend_of(ref) == "gymnasium"
    # auto falls back where the direct path does not know a kwarg or an env
    odd = config.load(None, ['env.id="Hopper-v4"', 'env.kwargs={frame_skip = 2}'])
    assert envs.backend_of(odd) == "gymnasium"
    assert envs.backend_of(config.load(None, ['env.id="Reacher-v5"'])) == "direct"
    assert envs.backend_of(config.load(None, ['env.id="Humanoid-v4"'])) == "gymnasium"
    forced = config.load(None, ['env.id="Humanoid-v4"', 'env.backend="direct"'])
    with pytest.raises(ConfigError, match="no direct MuJoCo path for 'Humanoid-v4'"):
        envs.make_env(forced)
    forced = config.load(None, ['env.id="Hopper-v4"', 'env.backend="direct"',
                                'env.kwargs={frame_skip = 2}'])
    with pytest.raises(ConfigError, match="frame_skip"):
        envs.make_env(forced)
    # the compiled backend stays classic-control only
    with pytest.raises(ConfigError, match="no compiled version"):
        envs.make_env(config.load(None, ['env.id="Hopper-v4"', 'env.backend="compiled"']))


@pytest.mark.parametrize("env_id", ["Hopper-v4", "Reacher-v5"])
def test_sampler_gives_the_same_trajectories_on_both_backends(env_id):
    def sampler(backend):
        cfg = config.load(None, [f'env.id="{env_id}"', f'env.backend="{backend}"',
                                 'policy.kind="mlp"', "policy.hidden=[16]"])
        env, info, spec = run.build(cfg, 0)
        return Sampler(env, spec, 200, 0.99, 4, 1, info["obs_dim"], info["discrete"]), spec

    a, spec = sampler("gymnasium")
    b, _ = sampler("direct")
    theta = spec.init_theta(0, -0.5)
    for _ in range(4):
        ta, tb = a.rollout(theta), b.rollout(theta)
        for x, y in ((ta.obs, tb.obs), (ta.acts, tb.acts), (ta.rew, tb.rew), (ta.logp, tb.logp)):
            np.testing.assert_array_equal(x, y)
        assert (ta.terminated, ta.truncated) == (tb.terminated, tb.truncated)
