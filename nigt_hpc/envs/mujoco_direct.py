"""The direct MuJoCo path: gymnasium's model and reset, our own step (``env.backend``).

For Hopper, Walker2d and InvertedPendulum (v4 and v5) ``DirectMujocoEnv`` steps
``mujoco.mj_step`` on the model and data of ``gymnasium.make(env_id)`` itself and computes
observation, reward and termination in one compiled call (``kernels.mujoco.post_step``).
What it leaves out is gymnasium's Python around the physics: three wrappers, the action
check, a ``state_vector`` concatenation and an ``info`` dict per step, and
``mj_rnePostConstraint``, which only fills ``cacc``/``cfrc_*`` (outputs these envs never
read; the next ``mj_step`` recomputes them).  Resets go through gymnasium's own
``reset`` (same seeding, same noise), the time limit is the env spec's.  Observations,
rewards, ``terminated`` and ``truncated`` are gymnasium's, bit for bit (tested step by step).

Reacher (v4 and v5) is stepped the same way, but its observation and reward are computed
in Python with the numpy calls gymnasium makes (``np.cos``/``np.sin`` are NumPy's own SIMD
functions and ``np.linalg.norm`` goes through BLAS, neither of which a compiled step would
reproduce bit for bit); the body positions are read by index instead of by name.  Reacher's
physics is most of its step, so the gain is smaller (1.19-1.24x, measured).
"""

from __future__ import annotations

import numpy as np

from ..config import ConfigError
from ..kernels import mujoco as KM

REACHER = -1  # stepped here in Python, not by kernels.mujoco.post_step

# id -> kind; the version picks the healthy-reward formula
DIRECT = {
    "Hopper-v4": KM.HOPPER, "Hopper-v5": KM.HOPPER,
    "Walker2d-v4": KM.WALKER2D, "Walker2d-v5": KM.WALKER2D,
    "InvertedPendulum-v4": KM.INVERTED_PENDULUM, "InvertedPendulum-v5": KM.INVERTED_PENDULUM,
    "Reacher-v4": REACHER, "Reacher-v5": REACHER,
}
# env.kwargs the direct step reads back from gymnasium's env (anything else it would ignore)
_KWARGS = {
    KM.HOPPER: {"forward_reward_weight", "ctrl_cost_weight", "healthy_reward",
                "terminate_when_unhealthy", "healthy_state_range", "healthy_z_range",
                "healthy_angle_range", "reset_noise_scale",
                "exclude_current_positions_from_observation"},
    KM.WALKER2D: {"forward_reward_weight", "ctrl_cost_weight", "healthy_reward",
                  "terminate_when_unhealthy", "healthy_z_range", "healthy_angle_range",
                  "reset_noise_scale", "exclude_current_positions_from_observation"},
    KM.INVERTED_PENDULUM: {"reset_noise_scale"},
    REACHER: {"reward_dist_weight", "reward_control_weight"},  # v5's; v4 takes none
}


def unsupported_reason(env_id: str, kwargs: dict) -> str | None:
    """Return why ``env_id`` with ``kwargs`` has no direct MuJoCo path, or None if it has."""
    if env_id not in DIRECT:
        return f"no direct MuJoCo path for {env_id!r} (direct: {', '.join(sorted(DIRECT))})"
    allowed = _KWARGS[DIRECT[env_id]] | {"max_episode_steps"}
    extra = sorted(set(kwargs) - allowed)
    if extra:
        return f"the direct {env_id} does not take env.kwargs {extra} (it takes {sorted(allowed)})"
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return "MuJoCo is not installed"
    return None


class DirectMujocoEnv:
    """One gymnasium MuJoCo env stepped directly; the gym API the sampler uses."""

    def __init__(self, env_id: str, kwargs: dict | None = None):
        import mujoco

        from . import _gym_make

        kwargs = dict(kwargs or {})
        why = unsupported_reason(env_id, kwargs)
        if why:
            raise ConfigError(f"env.backend = 'direct': {why}")
        self._gym = _gym_make(env_id, kwargs)
        u = self._gym.unwrapped
        self.kind = DIRECT[env_id]
        self.env_id = env_id
        self.spec = self._gym.spec
        self.observation_space = self._gym.observation_space
        self.action_space = self._gym.action_space
        self.max_episode_steps = self.spec.max_episode_steps
        self._u = u
        self._mj_step = mujoco.mj_step
        self._model, self._data = u.model, u.data
        self._frame_skip = int(u.frame_skip)
        # MjData's arrays are views of its memory: take them once
        self._qpos, self._qvel, self._ctrl = u.data.qpos, u.data.qvel, u.data.ctrl
        self._t = 0
        self._v5 = env_id.endswith("-v5")
        if self.kind == REACHER:
            self._init_reacher(u)
            return
        p = np.zeros(KM.P_LEN)
        p[KM.P_DT] = u.dt
        p[KM.P_V5] = 1.0 if self._v5 else 0.0
        if self.kind != KM.INVERTED_PENDULUM:
            p[KM.P_FORWARD_W] = u._forward_reward_weight
            p[KM.P_CTRL_W] = u._ctrl_cost_weight
            p[KM.P_HEALTHY_R] = u._healthy_reward
            p[KM.P_TERMINATE] = float(bool(u._terminate_when_unhealthy))
            p[KM.P_Z_LO], p[KM.P_Z_HI] = u._healthy_z_range
            p[KM.P_ANGLE_LO], p[KM.P_ANGLE_HI] = u._healthy_angle_range
            p[KM.P_EXCLUDE_X] = float(bool(u._exclude_current_positions_from_observation))
            if self.kind == KM.HOPPER:
                p[KM.P_STATE_LO], p[KM.P_STATE_HI] = u._healthy_state_range
        self._p = p
        self._obs_dim = int(self.observation_space.shape[0])
        nq, nv = self._qpos.shape[0], self._qvel.shape[0]
        expect = nq + nv - int(p[KM.P_EXCLUDE_X])
        if self._obs_dim != expect:  # post_step writes exactly this many values
            raise ConfigError(f"env.backend = 'direct': {env_id} observes {self._obs_dim} "
                              f"values, the direct step would write {expect}; use 'gymnasium'")

    def _init_reacher(self, u):
        self._xpos = u.data.xpos
        self._finger = u.model.body("fingertip").id
        self._target = u.model.body("target").id
        self._w_dist = float(getattr(u, "_reward_dist_weight", 1.0))
        self._w_ctrl = float(getattr(u, "_reward_control_weight", 1.0))

    def reset(self, seed=None):
        """Reset through gymnasium (its seeding and reset noise); return (obs, info)."""
        self._t = 0
        return self._u.reset(seed=seed)

    def step(self, action):
        """One step: ``(obs, reward, terminated, truncated, info)`` as gymnasium gives them
        (``info`` is empty)."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self._ctrl.shape:
            raise ValueError(f"Action dimension mismatch. Expected {self._ctrl.shape}, "
                             f"found {a.shape}")
        if self.kind == REACHER:
            obs, r = self._step_reacher(a, action)
            terminated = False
        else:
            x_before = self._qpos[0]
            self._ctrl[:] = a
            self._mj_step(self._model, self._data, nstep=self._frame_skip)
            obs = np.empty(self._obs_dim)
            r, terminated = KM.post_step(self.kind, self._qpos, self._qvel, a, x_before,
                                         self._p, obs)
        self._t += 1
        truncated = self.max_episode_steps is not None and self._t >= self.max_episode_steps
        return obs, r, terminated, truncated, {}

    def _step_reacher(self, a, action):
        """Reacher's step as gymnasium writes it: v4 rewards the distance before the step,
        v5 after it, with weights; v5 observes only the x, y of the fingertip offset.  The
        control cost squares ``action`` as given (a float32 action makes a float32 cost in
        gymnasium too)."""
        qpos, qvel, xpos = self._qpos, self._qvel, self._xpos
        if not self._v5:
            vec = xpos[self._finger] - xpos[self._target]
            r = -np.linalg.norm(vec) + -np.square(action).sum()
        self._ctrl[:] = a
        self._mj_step(self._model, self._data, nstep=self._frame_skip)
        vec = xpos[self._finger] - xpos[self._target]
        if self._v5:
            r = (-np.linalg.norm(vec) * self._w_dist) + (-np.square(action).sum() * self._w_ctrl)
            vec = vec[:2]
        theta = qpos[:2]
        obs = np.concatenate([np.cos(theta), np.sin(theta), qpos[2:], qvel[:2], vec])
        return obs, r

    def close(self):
        self._gym.close()
