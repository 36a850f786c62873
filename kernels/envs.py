"""Compiled classic-control dynamics: CartPole-v1, Acrobot-v1, Pendulum-v1,
MountainCarContinuous-v0, step for step the same numbers as gymnasium 1.x.

Every formula keeps gymnasium's order of operations and its float32 steps (PITFALLS G4):

* CartPole: Euler, float64 state, float32 observation; reward 1 including the last step.
* Acrobot: "book" dynamics, one RK4 step over [0, 0.2]; the reset state is float32, later
  states float64; angles wrapped, velocities bounded; reward -1, 0 on the terminal step.
* Pendulum: the cost uses the pre-update state; with a float32 action (what
  ``action_space.sample()`` gives) the ``0.001 u^2`` and ``3 u`` terms are float32 under
  NumPy 2's promotion rules, with a float64 action (what our sampler sends) float64.
* MountainCarContinuous: the state is re-stored as float32 after every step (the reset
  state is float64), so ``3 * position`` is a float32 product from the second step on; the
  reward uses the unclipped action.

No fastmath anywhere here (PITFALLS N6).  A state is a float64 array of length
``STATE_LEN``; slot 4 is a flag "the state came from a step" (MountainCar's float32
re-store).  ``params`` holds the env's keyword arguments (Pendulum ``g``, MountainCar
``goal_velocity``).  Random resets stay in Python (``nigt_hpc.envs.compiled``): they draw
from the same ``numpy.random.Generator`` gymnasium seeds, which is what makes resets equal.
"""

import math

import llvmlite.binding as llvm
import numpy as np
from numba import types

from .estimators import grad_gpomdp, reward_to_go
from .heads import HEAD_SOFTMAX
from .jit import CACHE, njit
from .linear_softmax import act_linear_softmax, score_sum_linear_softmax_kept
from .mlp import act_noise

# gymnasium squares np.float64 scalars with ``x**2``, which NumPy and CPython compute with
# libm's pow(); pow(x, 2) differs from x*x in about 1 of 1200 inputs (measured).  LLVM
# rewrites a call to "pow" with exponent 2 into x*x, so we call glibc's aliases powf64 /
# powf32 (glibc >= 2.27), which it does not recognise.  Older libcs fall back to pow and may
# differ from gymnasium by one ulp there.
_HAVE_ALIASES = bool(llvm.address_of_symbol("powf64")) and bool(llvm.address_of_symbol("powf32"))
_pow64 = types.ExternalFunction("powf64" if _HAVE_ALIASES else "pow",
                                types.float64(types.float64, types.float64))
_pow32 = types.ExternalFunction("powf32" if _HAVE_ALIASES else "powf",
                                types.float32(types.float32, types.float32))


@njit(cache=CACHE, inline="always")
def _sq(x):
    """``x**2`` for a numpy float64 scalar, as numpy computes it (libm pow)."""
    return _pow64(x, 2.0)


@njit(cache=CACHE, inline="always")
def _sq32(x):
    """``x**2`` for a numpy float32 scalar (libm powf), returned as float64."""
    return np.float64(_pow32(np.float32(x), np.float32(2.0)))


@njit(cache=CACHE, inline="always")
def _pymod(x, y):
    """Python's / numpy's floored ``x % y`` for floats (fmod, then the sign fix)."""
    m = np.fmod(x, y)
    if m != 0.0:
        if (y < 0.0) != (m < 0.0):
            m += y
    else:
        m = math.copysign(0.0, y)
    return m


_PY = 0  # type tags for MountainCar's mixed float32 / float64 arithmetic (NEP 50)
_F64 = 1
_F32 = 2


@njit(cache=CACHE, inline="always")
def _f32(x):
    return np.float64(np.float32(x))


@njit(cache=CACHE, inline="always")
def _gt(x, tx, c):
    """``x > c`` for a Python float ``c``: a float32 ``x`` compares in float32 (NEP 50)."""
    if tx == _F32:
        return x > _f32(c)
    return x > c


@njit(cache=CACHE, inline="always")
def _lt(x, tx, c):
    if tx == _F32:
        return x < _f32(c)
    return x < c


@njit(cache=CACHE, inline="always")
def _ge(x, tx, c):
    if tx == _F32:
        return x >= _f32(c)
    return x >= c


@njit(cache=CACHE, inline="always")
def _eq(x, tx, c):
    if tx == _F32:
        return x == _f32(c)
    return x == c


@njit(cache=CACHE, inline="always")
def _add(x, tx, y, ty):
    """``x + y`` with NumPy 2 promotion; return (value, type)."""
    if tx == _F32 and ty != _F64:
        return _f32(x + _f32(y)), _F32
    if ty == _F32 and tx != _F64:
        return _f32(_f32(x) + y), _F32
    if tx == _PY and ty == _PY:
        return x + y, _PY
    return x + y, _F64

CARTPOLE = 0
ACROBOT = 1
PENDULUM = 2
MOUNTAINCAR_CONTINUOUS = 3
STATE_LEN = 5
OBS_DIM = (4, 6, 3, 2)

# CartPole constants, computed as gymnasium computes its attributes
_CP_GRAVITY = 9.8
_CP_MASSCART = 1.0
_CP_MASSPOLE = 0.1
_CP_TOTAL_MASS = _CP_MASSPOLE + _CP_MASSCART
_CP_LENGTH = 0.5
_CP_POLEMASS_LENGTH = _CP_MASSPOLE * _CP_LENGTH
_CP_FORCE_MAG = 10.0
_CP_TAU = 0.02
_CP_THETA_THRESHOLD = 12 * 2 * math.pi / 360
_CP_X_THRESHOLD = 2.4

# Acrobot constants
_AC_DT = 0.2
_AC_L1 = 1.0
_AC_M1 = 1.0
_AC_M2 = 1.0
_AC_LC1 = 0.5
_AC_LC2 = 0.5
_AC_MOI = 1.0
_AC_MAX_VEL_1 = 4 * math.pi
_AC_MAX_VEL_2 = 9 * math.pi
_AC_G = 9.8

# Pendulum constants
_PE_MAX_SPEED = 8
_PE_MAX_TORQUE = 2.0
_PE_DT = 0.05
_PE_M = 1.0
_PE_L = 1.0

# MountainCarContinuous constants
_MC_MIN_ACTION = -1.0
_MC_MAX_ACTION = 1.0
_MC_MIN_POSITION = -1.2
_MC_MAX_POSITION = 0.6
_MC_MAX_SPEED = 0.07
_MC_GOAL_POSITION = 0.45
_MC_POWER = 0.0015


@njit(cache=CACHE, inline="always")
def _observe_row(kind, state, obs, row):
    """Write the float32-rounded observation of ``state`` into row ``row`` of the 2-d
    ``obs`` (float64); a row past the end is dropped.  Rows are written by index: a view
    per step (``obs[t + 1]``) cost the CartPole rollout 15% of its speed (measured)."""
    if row >= obs.shape[0]:
        return
    if kind == CARTPOLE:
        for i in range(4):
            obs[row, i] = np.float32(state[i])
    elif kind == ACROBOT:
        obs[row, 0] = np.float32(math.cos(state[0]))
        obs[row, 1] = np.float32(math.sin(state[0]))
        obs[row, 2] = np.float32(math.cos(state[1]))
        obs[row, 3] = np.float32(math.sin(state[1]))
        obs[row, 4] = np.float32(state[2])
        obs[row, 5] = np.float32(state[3])
    elif kind == PENDULUM:
        obs[row, 0] = np.float32(math.cos(state[0]))
        obs[row, 1] = np.float32(math.sin(state[0]))
        obs[row, 2] = np.float32(state[1])
    else:
        obs[row, 0] = np.float32(state[0])
        obs[row, 1] = np.float32(state[1])


@njit(cache=CACHE)
def observe(kind, state, obs):
    """Write the float32-rounded observation of ``state`` into ``obs`` (float64, 1-d)."""
    _observe_row(kind, state, obs.reshape((1, obs.shape[0])), 0)


@njit(cache=CACHE, inline="always")
def _acrobot_dsdt(th1, th2, dth1, dth2, a):
    """Return (dtheta1, dtheta2, ddtheta1, ddtheta2), the "book" equations."""
    m1 = _AC_M1
    m2 = _AC_M2
    l1 = _AC_L1
    lc1 = _AC_LC1
    lc2 = _AC_LC2
    I1 = _AC_MOI
    I2 = _AC_MOI
    g = _AC_G
    pi = math.pi
    c2 = math.cos(th2)
    s2 = math.sin(th2)
    # the constants' squares are exact; the states' squares go through pow (see _sq)
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * c2) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * c2) + I2
    phi2 = m2 * lc2 * g * math.cos(th1 + th2 - pi / 2.0)
    phi1 = (-m2 * l1 * lc2 * _sq(dth2) * s2
            - 2 * m2 * l1 * lc2 * dth2 * dth1 * s2
            + (m1 * lc1 + m2 * l1) * g * math.cos(th1 - pi / 2)
            + phi2)
    ddth2 = ((a + d2 / d1 * phi1 - m2 * l1 * lc2 * _sq(dth1) * s2 - phi2)
             / (m2 * lc2**2 + I2 - _sq(d2) / d1))
    ddth1 = -(d2 * ddth2 + phi1) / d1
    return dth1, dth2, ddth1, ddth2


@njit(cache=CACHE, inline="always")
def _wrap(x, m, M):
    diff = M - m
    while x > M:
        x = x - diff
    while x < m:
        x = x + diff
    return x


@njit(cache=CACHE, inline="always")
def _bound(x, m, M):
    # Python's min(max(x, m), M): max keeps x unless m > x; min keeps it unless M < it
    if m > x:
        x = m
    if M < x:
        x = M
    return x


@njit(cache=CACHE, inline="always")
def _cartpole_velocities(x_dot, th_dot, costh, sinth, force):
    """Return CartPole's next (x_dot, th_dot) under ``force``: gymnasium's Euler step."""
    temp = (force + _CP_POLEMASS_LENGTH * (th_dot * th_dot) * sinth) / _CP_TOTAL_MASS
    thacc = (_CP_GRAVITY * sinth - costh * temp) / (
        _CP_LENGTH * (4.0 / 3.0 - _CP_MASSPOLE * (costh * costh) / _CP_TOTAL_MASS))
    xacc = temp - _CP_POLEMASS_LENGTH * thacc * costh / _CP_TOTAL_MASS
    return x_dot + _CP_TAU * xacc, th_dot + _CP_TAU * thacc


@njit(cache=CACHE, inline="always")
def _cartpole_out(x, th):
    """Return whether CartPole's cart or pole is past its threshold."""
    return (x < -_CP_X_THRESHOLD or x > _CP_X_THRESHOLD
            or th < -_CP_THETA_THRESHOLD or th > _CP_THETA_THRESHOLD)


@njit(cache=CACHE, inline="always")
def _set_cartpole(state, x, x_dot, th, th_dot):
    state[0] = x
    state[1] = x_dot
    state[2] = th
    state[3] = th_dot
    state[4] = 1.0


@njit(cache=CACHE)
def _step_cartpole(state, params, a, a_is_f32, obs, row):
    """CartPole-v1: one Euler step."""
    x = state[0]
    x_dot = state[1]
    th = state[2]
    th_dot = state[3]
    force = _CP_FORCE_MAG if int(a[0]) == 1 else -_CP_FORCE_MAG
    x_dot_next, th_dot_next = _cartpole_velocities(x_dot, th_dot, math.cos(th), math.sin(th),
                                                   force)
    x = x + _CP_TAU * x_dot
    th = th + _CP_TAU * th_dot
    _set_cartpole(state, x, x_dot_next, th, th_dot_next)
    _observe_row(CARTPOLE, state, obs, row)
    return 1.0, _cartpole_out(x, th)


@njit(cache=CACHE, error_model="python")
def _step_acrobot(state, params, a, a_is_f32, obs, row):
    """Acrobot-v1: one RK4 step of the "book" dynamics.

    The one kernel left on numba's "python" error model (``jit.njit``): with numpy's,
    this step ran 9% slower (3.18M -> 2.90M steps/s, three runs each; the cause was not
    traced).  Its divisors stay above 0.5 for every state, so the checks never fire.
    """
    ai = int(a[0])
    torque = -1.0 if ai == 0 else (0.0 if ai == 1 else 1.0)
    y0 = state[0]
    y1 = state[1]
    y2 = state[2]
    y3 = state[3]
    dt = _AC_DT - 0
    dt2 = dt / 2.0
    k1a, k1b, k1c, k1d = _acrobot_dsdt(y0, y1, y2, y3, torque)
    k2a, k2b, k2c, k2d = _acrobot_dsdt(y0 + dt2 * k1a, y1 + dt2 * k1b, y2 + dt2 * k1c,
                                       y3 + dt2 * k1d, torque)
    k3a, k3b, k3c, k3d = _acrobot_dsdt(y0 + dt2 * k2a, y1 + dt2 * k2b, y2 + dt2 * k2c,
                                       y3 + dt2 * k2d, torque)
    k4a, k4b, k4c, k4d = _acrobot_dsdt(y0 + dt * k3a, y1 + dt * k3b, y2 + dt * k3c,
                                       y3 + dt * k3d, torque)
    h = dt / 6.0
    n0 = y0 + h * (k1a + 2 * k2a + 2 * k3a + k4a)
    n1 = y1 + h * (k1b + 2 * k2b + 2 * k3b + k4b)
    n2 = y2 + h * (k1c + 2 * k2c + 2 * k3c + k4c)
    n3 = y3 + h * (k1d + 2 * k2d + 2 * k3d + k4d)
    state[0] = _wrap(n0, -math.pi, math.pi)
    state[1] = _wrap(n1, -math.pi, math.pi)
    state[2] = _bound(n2, -_AC_MAX_VEL_1, _AC_MAX_VEL_1)
    state[3] = _bound(n3, -_AC_MAX_VEL_2, _AC_MAX_VEL_2)
    state[4] = 1.0
    terminated = -math.cos(state[0]) - math.cos(state[1] + state[0]) > 1.0
    _observe_row(ACROBOT, state, obs, row)
    return (0.0 if terminated else -1.0), terminated


@njit(cache=CACHE)
def _step_pendulum(state, params, a, a_is_f32, obs, row):
    """Pendulum-v1: one step; the cost uses the pre-update state."""
    th = state[0]
    thdot = state[1]
    g = params[0]
    u = a[0]
    if u < -_PE_MAX_TORQUE:
        u = -_PE_MAX_TORQUE
    if u > _PE_MAX_TORQUE:
        u = _PE_MAX_TORQUE
    an = _pymod(th + math.pi, 2 * math.pi) - math.pi
    if a_is_f32:
        ucost = _f32(np.float32(0.001) * np.float32(_sq32(u)))
        uterm = _f32(np.float32(3.0 / (_PE_M * _PE_L**2)) * np.float32(u))
    else:
        ucost = 0.001 * _sq(u)
        uterm = 3.0 / (_PE_M * _PE_L**2) * u
    costs = _sq(an) + 0.1 * _sq(thdot) + ucost
    newthdot = thdot + (3 * g / (2 * _PE_L) * math.sin(th) + uterm) * _PE_DT
    if newthdot < -_PE_MAX_SPEED:
        newthdot = -_PE_MAX_SPEED
    if newthdot > _PE_MAX_SPEED:
        newthdot = _PE_MAX_SPEED
    state[0] = th + newthdot * _PE_DT
    state[1] = newthdot
    state[4] = 1.0
    _observe_row(PENDULUM, state, obs, row)
    return -costs, False


@njit(cache=CACHE)
def _step_mountaincar(state, params, a, a_is_f32, obs, row):
    """MountainCarContinuous-v0: one step with NumPy 2 type tags."""
    # MountainCarContinuous: gymnasium mixes np.float32 state, np.float64 / float32 actions
    # and Python floats, so every value carries its NumPy 2 type (_PY, _F64, _F32).
    first = state[4] == 0.0  # the reset state is float64; later ones were re-stored as f32
    position = state[0]
    velocity = state[1]
    tp = _F64 if first else _F32
    tv = tp
    a0 = a[0]
    ta = _F64
    if a_is_f32:
        a0 = _f32(a0)
        ta = _F32
    force = a0  # min(max(a, -1.0), 1.0): a Python float where it clips
    tf = ta
    if _MC_MIN_ACTION > force:
        force = _MC_MIN_ACTION
        tf = _PY
    if _MC_MAX_ACTION < force:
        force = _MC_MAX_ACTION
        tf = _PY
    if tf == _F32:
        fp = _f32(force * _f32(_MC_POWER))
    else:
        fp = force * _MC_POWER
    x3 = 3 * position
    if tp == _F32:
        x3 = _f32(x3)
    cterm = 0.0025 * math.cos(x3)
    if tf == _F32:
        rhs = _f32(fp - _f32(cterm))
    else:
        rhs = fp - cterm
    velocity, tv = _add(velocity, tv, rhs, tf)
    if _gt(velocity, tv, _MC_MAX_SPEED):
        velocity = _MC_MAX_SPEED
        tv = _PY
    if _lt(velocity, tv, -_MC_MAX_SPEED):
        velocity = -_MC_MAX_SPEED
        tv = _PY
    position, tp = _add(position, tp, velocity, tv)
    if _gt(position, tp, _MC_MAX_POSITION):
        position = _MC_MAX_POSITION
        tp = _PY
    if _lt(position, tp, _MC_MIN_POSITION):
        position = _MC_MIN_POSITION
        tp = _PY
    if _eq(position, tp, _MC_MIN_POSITION) and _lt(velocity, tv, 0.0):
        velocity = 0.0
        tv = _PY
    terminated = _ge(position, tp, _MC_GOAL_POSITION) and _ge(velocity, tv, params[0])
    reward = 0.0
    if terminated:
        reward = 100.0
    reward -= _sq(a0) * 0.1
    state[0] = _f32(position)
    state[1] = _f32(velocity)
    state[4] = 1.0
    _observe_row(MOUNTAINCAR_CONTINUOUS, state, obs, row)
    return reward, terminated


@njit(cache=CACHE)
def step(kind, state, params, a, a_is_f32, obs):
    """Advance ``state`` by one step of action row ``a``; write the observation to ``obs``.

    Return ``(reward, terminated)``.  ``a[0]`` is the index for the discrete envs.
    ``a_is_f32``: the caller's action was float32 (see the module docstring).

    Compiled loops below call the per-kind functions directly in the loop body instead:
    through this dispatcher (a call, or numba-level inlining) CartPole ran at 18M steps/s,
    with the direct calls (which LLVM inlines) at 37M (measured).
    """
    o2 = obs.reshape((1, obs.shape[0]))
    if kind == CARTPOLE:
        return _step_cartpole(state, params, a, a_is_f32, o2, 0)
    if kind == ACROBOT:
        return _step_acrobot(state, params, a, a_is_f32, o2, 0)
    if kind == PENDULUM:
        return _step_pendulum(state, params, a, a_is_f32, o2, 0)
    return _step_mountaincar(state, params, a, a_is_f32, o2, 0)


@njit(cache=CACHE)
def _rollout_cartpole_softmax2(state, t0, t_end, theta, noise, obs, acts, rew, logp, a, kept):
    """``rollout`` for CartPole with a linear softmax policy: the same numbers, faster.

    The loop is bound by latency, not by work: each step's action feeds the next step's
    observation through three divisions.  But CartPole has two actions, and everything
    that depends on the action is the force in ``temp``; so both successors are computed
    from the state alone, in parallel with the policy, and the sampled action then only
    picks one.  Each candidate goes through ``_cartpole_velocities``, as ``_step_cartpole``
    does: same bits.  Positions and the termination test do not depend on the action.
    """
    keep = kept.shape[0] > 0
    z = np.empty(2)
    e = np.empty(2)
    x = state[0]
    x_dot = state[1]
    th = state[2]
    th_dot = state[3]
    for t in range(t0, t_end):
        costh = math.cos(th)
        sinth = math.sin(th)
        x_dot1, th_dot1 = _cartpole_velocities(x_dot, th_dot, costh, sinth, _CP_FORCE_MAG)
        x_dot0, th_dot0 = _cartpole_velocities(x_dot, th_dot, costh, sinth, -_CP_FORCE_MAG)
        x = x + _CP_TAU * x_dot
        th = th + _CP_TAU * th_dot
        ai, lp, s = act_linear_softmax(theta, 4, 2, obs, t, noise[t, 0], z, e)
        acts[t, 0] = ai
        logp[t] = lp
        if keep:
            kept[t, 0] = e[0]
            kept[t, 1] = e[1]
            kept[t, 2] = s
        if ai == 1:
            x_dot = x_dot1
            th_dot = th_dot1
        else:
            x_dot = x_dot0
            th_dot = th_dot0
        if t + 1 < obs.shape[0]:
            obs[t + 1, 0] = np.float32(x)
            obs[t + 1, 1] = np.float32(x_dot)
            obs[t + 1, 2] = np.float32(th)
            obs[t + 1, 3] = np.float32(th_dot)
        rew[t] = 1.0
        if _cartpole_out(x, th):
            a[0] = ai
            _set_cartpole(state, x, x_dot, th, th_dot)
            return t + 1, True
        a[0] = ai
    _set_cartpole(state, x, x_dot, th, th_dot)
    return t_end, False


@njit(cache=CACHE)
def rollout(kind, state, params, t0, t_end, theta, sizes, head, noise, a_center, a_scale,
            squash, work, obs, acts, rew, logp, a, kept):
    """Run steps ``t0 .. t_end - 1`` of an episode with the policy inside: env and policy in
    one compiled loop.  ``obs[t0]`` must hold the current observation.

    Writes ``obs[t + 1]`` (while there is room), ``acts[t]``, ``rew[t]``, ``logp[t]``.
    Return ``(steps done, terminated)``; it stops early on termination.  Callers cut the
    episode at the time limit / horizon through ``t_end`` and may resume by calling again
    with ``t0`` = steps done (the sampler polls MPI between chunks).

    A linear softmax policy goes through ``linear_softmax.act_linear_softmax`` (the same numbers
    as ``act_noise``, several times faster); with a non-empty ``kept`` ((H, n_out + 1)),
    row ``t`` then keeps the step's exps and their sum, so a gradient pass needs no second
    forward pass (``rollout_grad``); pass ``np.empty((0, 0))`` otherwise.  (Not a default
    argument: numba's cache cannot key an array default, measured as a miss every run.)
    """
    n_in = obs.shape[1]
    linear_softmax = head == HEAD_SOFTMAX and sizes.shape[0] == 2
    n_out = sizes[-1]
    z = np.empty(n_out)
    e = np.empty(n_out)
    keep = kept.shape[0] > 0
    if kind == CARTPOLE and linear_softmax and n_out == 2 and n_in == 4:
        return _rollout_cartpole_softmax2(state, t0, t_end, theta, noise, obs, acts, rew,
                                          logp, a, kept)
    for t in range(t0, t_end):
        if linear_softmax:
            if n_out == 2:  # a constant width lets LLVM unroll the softmax (16.5M vs 10M/s)
                ai, lp, s = act_linear_softmax(theta, n_in, 2, obs, t, noise[t, 0], z, e)
            else:
                ai, lp, s = act_linear_softmax(theta, n_in, n_out, obs, t, noise[t, 0], z, e)
            acts[t, 0] = ai
            a[0] = ai
            logp[t] = lp
            if keep:
                for k in range(n_out):
                    kept[t, k] = e[k]
                kept[t, n_out] = s
        else:
            logp[t] = act_noise(theta, sizes, head, obs[t], noise[t], a_center, a_scale,
                                squash, work, acts[t], a)
        # the next observation goes straight into row t + 1; past the buffer it is dropped
        if kind == CARTPOLE:  # direct calls: see ``step``
            r, term = _step_cartpole(state, params, a, False, obs, t + 1)
        elif kind == ACROBOT:
            r, term = _step_acrobot(state, params, a, False, obs, t + 1)
        elif kind == PENDULUM:
            r, term = _step_pendulum(state, params, a, False, obs, t + 1)
        else:
            r, term = _step_mountaincar(state, params, a, False, obs, t + 1)
        rew[t] = r
        if term:
            return t + 1, True
    return t_end, False


@njit(cache=CACHE)
def rollout_grad(kind, state, params, t_limit, theta, sizes, head, noise, a_center, a_scale,
                 squash, gamma, weight, work, obs, acts, rew, logp, a, out):
    """One whole episode and its gradient in one call: run ``rollout`` from ``obs[0]`` for at
    most ``t_limit`` steps, then add ``weight * g_H`` to ``out``.

    Return ``(T, terminated)``.  The sampler uses ``rollout`` (it must poll MPI between
    chunks); this is the single-call form for batch use and the benchmark.
    """
    if head == HEAD_SOFTMAX and sizes.shape[0] == 2:
        # the rollout keeps each step's exps; the gradient pass re-uses them (same numbers)
        kept = np.empty((min(t_limit, obs.shape[0]), sizes[1] + 1))
        T, term = rollout(kind, state, params, 0, t_limit, theta, sizes, head, noise,
                          a_center, a_scale, squash, work, obs, acts, rew, logp, a, kept)
        coef = np.empty(T)
        reward_to_go(rew[:T], gamma, weight, coef)
        score_sum_linear_softmax_kept(theta, obs[:T], acts[:T], kept, coef, out)
        return T, term
    T, term = rollout(kind, state, params, 0, t_limit, theta, sizes, head, noise, a_center,
                      a_scale, squash, work, obs, acts, rew, logp, a, np.empty((0, 0)))
    grad_gpomdp(theta, sizes, head, obs[:T], acts[:T], rew[:T], gamma, weight, out)
    return T, term


@njit(cache=CACHE)
def step_many(kind, state, params, actions, reset_state):
    """Step through every row of ``actions``, restarting from ``reset_state`` after each
    termination (benchmarks); return the number of terminations."""
    obs = np.empty((1, 6))
    dones = 0
    for t in range(actions.shape[0]):
        a = actions[t]
        if kind == CARTPOLE:  # direct calls: see ``step``
            r, term = _step_cartpole(state, params, a, False, obs, 0)
        elif kind == ACROBOT:
            r, term = _step_acrobot(state, params, a, False, obs, 0)
        elif kind == PENDULUM:
            r, term = _step_pendulum(state, params, a, False, obs, 0)
        else:
            r, term = _step_mountaincar(state, params, a, False, obs, 0)
        if term:
            dones += 1
            state[:] = reset_state
    return dones
