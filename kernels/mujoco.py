"""The arithmetic of a gymnasium MuJoCo step after the physics: observation, reward and
termination of Hopper, Walker2d and InvertedPendulum (v4 and v5), in one compiled call.

``nigt_hpc.envs.mujoco_direct`` steps ``mujoco`` itself and calls ``post_step``; every
formula keeps gymnasium's order of operations so the numbers are the same bits:

* ``x_velocity = (qpos[0] after - qpos[0] before) / dt``; ``forward = w_f * x_velocity``;
* ``ctrl_cost = w_c * np.sum(np.square(a))``: NumPy sums fewer than 8 numbers left to right
  (checked against ``np.sum`` on 20,000 random actions of each size we use);
* Hopper's health: ``z``, angle and ``state_vector()[2:]`` strictly inside their ranges;
  Walker2d's: ``z`` and angle; any NaN is unhealthy, as NumPy's comparisons make it;
* v4's healthy reward is ``float(healthy or terminate_when_unhealthy) * r_h``, v5's
  ``healthy * r_h``; ``reward = (forward + healthy_reward) - ctrl_cost``;
* observation ``qpos[1:]`` (or all of ``qpos``) then ``clip(qvel, -10, 10)``;
  InvertedPendulum's is ``qpos, qvel``, terminated when not finite or ``|obs[1]| > 0.2``.

No fastmath (PITFALLS N6).  ``p`` holds the env's settings (see ``P_*``).
"""

import math

from .jit import CACHE, njit

HOPPER = 0
WALKER2D = 1
INVERTED_PENDULUM = 2

# slots of the settings array ``p``
P_DT = 0
P_FORWARD_W = 1
P_CTRL_W = 2
P_HEALTHY_R = 3
P_TERMINATE = 4  # terminate_when_unhealthy
P_STATE_LO = 5
P_STATE_HI = 6
P_Z_LO = 7
P_Z_HI = 8
P_ANGLE_LO = 9
P_ANGLE_HI = 10
P_V5 = 11
P_EXCLUDE_X = 12  # exclude_current_positions_from_observation
P_LEN = 13


@njit(cache=CACHE)
def post_step(kind, qpos, qvel, a, x_before, p, obs):
    """Write the observation into ``obs``; return ``(reward, terminated)``."""
    nq = qpos.shape[0]
    nv = qvel.shape[0]
    if kind == INVERTED_PENDULUM:
        finite = True
        for i in range(nq):
            obs[i] = qpos[i]
            finite = finite and math.isfinite(qpos[i])
        for i in range(nv):
            obs[nq + i] = qvel[i]
            finite = finite and math.isfinite(qvel[i])
        terminated = (not finite) or abs(obs[1]) > 0.2
        if p[P_V5] != 0.0:
            return (0.0 if terminated else 1.0), terminated
        return 1.0, terminated
    # Hopper, Walker2d
    x_velocity = (qpos[0] - x_before) / p[P_DT]
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * a[i]
    ctrl_cost = p[P_CTRL_W] * s
    forward = p[P_FORWARD_W] * x_velocity
    z = qpos[1]
    angle = qpos[2]
    healthy = p[P_Z_LO] < z < p[P_Z_HI] and p[P_ANGLE_LO] < angle < p[P_ANGLE_HI]
    if kind == HOPPER:
        lo = p[P_STATE_LO]
        hi = p[P_STATE_HI]
        for i in range(2, nq + nv):  # state_vector()[2:]
            v = qpos[i] if i < nq else qvel[i - nq]
            if not (lo < v and v < hi):
                healthy = False
    terminate = p[P_TERMINATE] != 0.0
    if p[P_V5] != 0.0:
        healthy_reward = (1.0 if healthy else 0.0) * p[P_HEALTHY_R]
    else:
        healthy_reward = (1.0 if (healthy or terminate) else 0.0) * p[P_HEALTHY_R]
    reward = (forward + healthy_reward) - ctrl_cost
    k = 0
    start = 1 if p[P_EXCLUDE_X] != 0.0 else 0
    for i in range(start, nq):
        obs[k] = qpos[i]
        k += 1
    for i in range(nv):
        v = qvel[i]  # np.clip(v, -10, 10); a NaN stays NaN
        if v < -10.0:
            v = -10.0
        if v > 10.0:
            v = 10.0
        obs[k] = v
        k += 1
    return reward, (not healthy) and terminate
