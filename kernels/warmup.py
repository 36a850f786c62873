"""Compile (or load from the on-disk cache) every kernel with the production dtypes."""

import time

import numpy as np

from . import _cache
from . import envs as KE
from . import estimators as KS
from . import mujoco as KM
from . import obsnorm as KN
from . import policy as P


def _probes():
    """The cached kernels :func:`warmup` calls from Python, first to last (the ones they
    call are compiled into them)."""
    return (P.act, P.act_noise, P.act_row, P.grad_gpomdp, P.grad_is, KS.gpomdp_coefficients,
            KS.is_coefficients_baseline, KE.rollout, KE.observe, KE.step, KM.post_step)


def cache_is_cold() -> bool:
    """Return whether :func:`warmup` will compile rather than load: some kernel has no entry
    for this CPU and these sources in the on-disk cache (a fresh cache, another CPU type, a
    changed kernel).  Where the cache cannot be read, True: better a needless notice than
    tens of seconds of silence."""
    return not all(_cache.is_cached(f) for f in _probes())


def cache_dir() -> str | None:
    """Return the folder the kernels' compiled code is cached in (None: unknown)."""
    return _cache.cache_dir(P.act)


def warmup() -> float:
    """Return the seconds spent compiling or loading every kernel signature used in training.

    Call it before any timer starts (PITFALLS N3): dtypes here are the ones the sampler and
    engines use (float64 arrays, int64 sizes, Python int head/flags, float scalars), so
    nothing recompiles silently later.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    for head, out in ((P.HEAD_SOFTMAX, 2), (P.HEAD_GAUSS_SOFTPLUS, 2), (P.HEAD_GAUSS_LOGSTD, 1)):
        sizes = np.array([3, 4, out], dtype=np.int64)
        theta = P.init_theta(sizes, head, rng, -0.5)
        k = P.act_dim_of(sizes, head)
        obs = np.zeros((2, 3))
        acts = np.zeros((2, k))
        rew = np.ones(2)
        work = np.empty(P.work_size(sizes))
        u = np.empty(k)
        a = np.empty(k)
        lp = P.act(theta, sizes, head, obs[0], rng, np.zeros(k), np.ones(k), True, work, u, a)
        lp = P.act_noise(theta, sizes, head, obs[0], np.zeros(k), np.zeros(k), np.ones(k), True,
                         work, u, a)
        acts[:] = u
        plan, mem, _ = P.row_buffers(sizes, head, True, np.zeros(k), np.ones(k), 2, 3, k)
        for s in (obs[1], obs[1].astype(np.float32)):  # gymnasium's obs: float64 or float32
            P.act_row(theta, plan, mem, s, 0)
            for active in (True, False):  # policy.obs_norm's step (nigt_hpc.obsnorm)
                KN.normalise_observe(s, np.zeros(3), np.ones(3), 10.0, active, np.zeros(7),
                                     np.empty(3))
        g = np.zeros_like(theta)
        P.grad_gpomdp(theta, sizes, head, obs, acts, rew, 0.99, 1.0, g)
        P.grad_is(theta, sizes, head, obs, acts, rew, np.full(2, lp), 0.99, 1.0, 1.0, g)
        base = np.zeros(2)  # the estimator's baselines (nigt_hpc.estimator)
        KS.grad_gpomdp_baseline(theta, sizes, head, obs, acts, rew, base, 0.99, 1.0, g)
        KS.grad_is_baseline(theta, sizes, head, obs, acts, rew, np.full(2, lp), base, 0.99, 1.0,
                            1.0, g)
        coef = np.empty(2)  # the matrix-form kernels call these two from Python
        KS.gpomdp_coefficients(rew, 0.99, base, 1.0, coef)
        KS.is_coefficients_baseline(np.zeros(2), np.zeros(2), rew, 0.99, 1.0, base, 1.0, coef)
    _warm_envs()
    return time.perf_counter() - t0


def _warm_envs() -> None:
    """The env kernels, with the argument types the sampler and the env classes pass."""
    state = np.zeros(KE.STATE_LEN)
    params = np.zeros(1)
    H = 3
    for sizes, head in ((np.array([4, 2], dtype=np.int64), P.HEAD_SOFTMAX),  # linear path
                        (np.array([4, 3, 2], dtype=np.int64), P.HEAD_SOFTMAX),
                        (np.array([4, 3, 1], dtype=np.int64), P.HEAD_GAUSS_LOGSTD)):
        theta = P.init_theta(sizes, head, np.random.default_rng(0), -0.5)
        k = P.act_dim_of(sizes, head)
        obs, acts = np.zeros((H, 4)), np.zeros((H, k))
        rew, logp, a = np.zeros(H), np.zeros(H), np.zeros(k)
        noise = np.full((H, k), 0.5)
        work = np.empty(P.work_size(sizes))
        state[:] = 0.0
        KE.rollout(KE.CARTPOLE, state, params, 0, 1, theta, sizes, head, noise, np.zeros(k),
                   np.ones(k), True, work, obs, acts, rew, logp, a, np.empty((0, 0)))
    o6 = np.zeros(6)
    KE.observe(KE.CARTPOLE, state, o6)
    KE.step(KE.CARTPOLE, state, params, np.zeros(1), np.bool_(False), o6)
    p = np.zeros(KM.P_LEN)
    p[KM.P_DT] = 0.008
    q = np.zeros(6)
    KM.post_step(KM.HOPPER, q, q, np.zeros(3), np.float64(0.0), p, np.zeros(12))
