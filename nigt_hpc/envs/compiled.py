"""Compiled classic-control environments with gymnasium's interface and numbers.

``CompiledEnv`` behaves like ``gymnasium.make(env_id)`` for CartPole-v1, Acrobot-v1,
Pendulum-v1 and MountainCarContinuous-v0: the same spaces, the same reset distribution
(the same seeded ``numpy.random.Generator`` that gymnasium builds), the same observations,
rewards, ``terminated`` and the time-limit ``truncated``.  The sampler does not call
``step`` on it: it runs the dynamics and the policy together in one compiled loop
(``kernels.envs.rollout``).  ``step`` exists for tests and for users who want the env alone.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import ConfigError
from ..kernels import envs as KE

# id -> (kind, TimeLimit max_episode_steps, keyword arguments with their defaults)
SUPPORTED: dict[str, tuple[int, int, dict[str, float]]] = {
    "CartPole-v1": (KE.CARTPOLE, 500, {}),
    "Acrobot-v1": (KE.ACROBOT, 500, {}),
    "Pendulum-v1": (KE.PENDULUM, 200, {"g": 10.0}),
    "MountainCarContinuous-v0": (KE.MOUNTAINCAR_CONTINUOUS, 999, {"goal_velocity": 0.0}),
}


def unsupported_reason(env_id: str, kwargs: dict) -> str | None:
    """Return why ``env_id`` with ``kwargs`` has no compiled version, or None if it has."""
    if env_id not in SUPPORTED:
        return (f"no compiled version of {env_id!r} (compiled: "
                f"{', '.join(sorted(SUPPORTED))})")
    allowed = set(SUPPORTED[env_id][2]) | {"max_episode_steps"}
    extra = sorted(set(kwargs) - allowed)
    if extra:
        return (f"the compiled {env_id} does not take env.kwargs {extra} "
                f"(it takes {sorted(allowed)})")
    return None


class CompiledEnv:
    """One compiled classic-control environment, TimeLimit included."""

    def __init__(self, env_id: str, kwargs: dict | None = None):
        import gymnasium as gym

        kwargs = dict(kwargs or {})
        why = unsupported_reason(env_id, kwargs)
        if why:
            raise ConfigError(f"env.backend = 'compiled': {why}")
        kind, max_steps, defaults = SUPPORTED[env_id]
        self.kind = kind
        self.env_id = env_id
        self.max_episode_steps = int(kwargs.pop("max_episode_steps", max_steps))
        if self.max_episode_steps < 1:
            raise ConfigError(f"env.kwargs.max_episode_steps must be >= 1, "
                              f"got {self.max_episode_steps}")
        values = {**defaults, **kwargs}
        self.params = np.array([float(values[k]) for k in defaults] or [0.0])
        self.spec = gym.spec(env_id)
        f32 = np.float32
        if kind == KE.CARTPOLE:
            high = np.array([2.4 * 2, np.finfo(f32).max, 12 * 2 * math.pi / 360 * 2,
                             np.finfo(f32).max], dtype=f32)
            self.observation_space = gym.spaces.Box(-high, high, dtype=f32)
            self.action_space = gym.spaces.Discrete(2)
        elif kind == KE.ACROBOT:
            high = np.array([1.0, 1.0, 1.0, 1.0, 4 * math.pi, 9 * math.pi], dtype=f32)
            self.observation_space = gym.spaces.Box(-high, high, dtype=f32)
            self.action_space = gym.spaces.Discrete(3)
        elif kind == KE.PENDULUM:
            high = np.array([1.0, 1.0, 8.0], dtype=f32)
            self.observation_space = gym.spaces.Box(-high, high, dtype=f32)
            self.action_space = gym.spaces.Box(-2.0, 2.0, shape=(1,), dtype=f32)
        else:
            self.observation_space = gym.spaces.Box(np.array([-1.2, -0.07], dtype=f32),
                                                    np.array([0.6, 0.07], dtype=f32),
                                                    dtype=f32)
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=f32)
        self.obs_dim = KE.OBS_DIM[kind]
        self.state = np.zeros(KE.STATE_LEN)
        self.elapsed = 0
        self.np_random: np.random.Generator | None = None
        self._obs = np.empty(self.obs_dim)
        self._a = np.empty(1)

    @property
    def unwrapped(self) -> CompiledEnv:
        """Return self (gymnasium's attribute, for code that reaches for it)."""
        return self

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Return ``(obs, {})`` as gymnasium's reset does, seeded the way gymnasium seeds."""
        if options:
            raise ValueError("CompiledEnv.reset does not take options")
        if seed is not None:  # gymnasium.utils.seeding.np_random
            self.np_random = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
        elif self.np_random is None:
            self.np_random = np.random.Generator(np.random.PCG64(np.random.SeedSequence()))
        rng = self.np_random
        st = self.state
        st[:] = 0.0
        self.elapsed = 0
        if self.kind == KE.CARTPOLE:
            st[:4] = rng.uniform(low=-0.05, high=0.05, size=(4,))
            obs = np.array(st[:4], dtype=np.float32)
        elif self.kind == KE.ACROBOT:
            s = rng.uniform(low=-0.1, high=0.1, size=(4,)).astype(np.float32)
            st[:4] = s
            # float32 cos/sin, as numpy computes them on the float32 reset state
            obs = np.array([np.cos(s[0]), np.sin(s[0]), np.cos(s[1]), np.sin(s[1]), s[2], s[3]],
                           dtype=np.float32)
        elif self.kind == KE.PENDULUM:
            st[:2] = rng.uniform(low=-np.array([np.pi, 1.0]), high=np.array([np.pi, 1.0]))
            obs = np.array([np.cos(st[0]), np.sin(st[0]), st[1]], dtype=np.float32)
        else:
            st[0] = rng.uniform(low=-0.6, high=-0.4)
            obs = np.array(st[:2], dtype=np.float32)
        return obs, {}

    def step(self, action):
        """Return ``(obs, reward, terminated, truncated, {})`` with gymnasium's types."""
        if self.np_random is None:
            raise RuntimeError("call reset before step")
        arr = np.asarray(action)
        a = self._a
        a[0] = float(arr.reshape(-1)[0])
        r, term = KE.step(self.kind, self.state, self.params, a, arr.dtype == np.float32,
                          self._obs)
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps
        reward = np.float64(r) if self.kind == KE.PENDULUM else float(r)
        return self._obs.astype(np.float32), reward, bool(term), truncated, {}

    def close(self) -> None:
        """Nothing to release."""
