"""``nigt-hpc bench envs``: env steps per second beside gymnasium's own env in the same run.

Rows:

* every compiled classic-control env, random actions: ``kernels.envs.step_many`` against
  ``gymnasium.make(id).step`` (with gymnasium's wrappers, as users get it);
* T3: CartPole with a linear softmax policy and ``g_H`` in one compiled call per episode
  (``kernels.envs.rollout_grad``), and the whole sampler (seeding, reset, rollout,
  gradient) with the compiled backend against the same sampler on gymnasium's CartPole;
* T4 (MuJoCo installed): the sampler on Hopper-v4 with an MLP 64-64, overhead =
  (sampler wall - time inside ``env.step``) / time inside ``env.step``;
* T5 (MuJoCo installed): the direct MuJoCo path (``envs.mujoco_direct``) against
  ``gymnasium.make(id).step`` under the same random actions, resets included in both.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .. import config, run
from .. import kernels as K
from ..envs.compiled import SUPPORTED, CompiledEnv
from ..kernels import envs as KE
from ..rollout import Sampler


def _gym(env_id):
    import gymnasium as gym

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(env_id)


def _random_actions(env_id, n, rng):
    if env_id == "CartPole-v1":
        return rng.integers(0, 2, n)
    if env_id == "Acrobot-v1":
        return rng.integers(0, 3, n)
    hi = 2.0 if env_id == "Pendulum-v1" else 1.0
    return rng.uniform(-hi, hi, (n, 1))


def gym_steps_per_s(env_id, n, repeat, acts=None, env=None):
    """Return the median steps/s of gymnasium's env (or ``env``, with its API) under random
    actions (``acts``: one row per step; default: the classic-control draw of
    ``_random_actions``)."""
    env = env or _gym(env_id)
    if acts is None:
        acts = _random_actions(env_id, n, np.random.default_rng(0))
    discrete = acts.ndim == 1
    rates = []
    for r in range(repeat):
        env.reset(seed=r)
        step = env.step
        t0 = time.perf_counter()
        for i in range(n):
            a = int(acts[i]) if discrete else acts[i]
            _, _, term, trunc, _ = step(a)
            if term or trunc:
                env.reset()
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates))


def compiled_steps_per_s(env_id, n, repeat):
    """Return the median steps/s of the compiled dynamics under random actions."""
    env = CompiledEnv(env_id)
    env.reset(seed=0)
    start = env.state.copy()
    acts = np.asarray(_random_actions(env_id, n, np.random.default_rng(0)), dtype=np.float64)
    acts = acts.reshape(n, 1)
    KE.step_many(env.kind, env.state, env.params, acts[:10], start)
    rates = []
    for _ in range(repeat):
        env.state[:] = start
        t0 = time.perf_counter()
        KE.step_many(env.kind, env.state, env.params, acts, start)
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates))


# A balancing linear softmax policy for CartPole (push towards the falling side): long
# episodes, so the benchmark measures steps rather than per-episode overhead.
CARTPOLE_THETA = np.array([0.0, 0.0, -0.5, 0.5, -20.0, 20.0, -20.0, 20.0, 0.0, 0.0])


def rollout_grad_steps_per_s(n_episodes, repeat):
    """Return (steps/s, mean episode length) of CartPole env + policy + g_H in one call."""
    env = CompiledEnv("CartPole-v1")
    sizes = np.array([4, 2], dtype=np.int64)
    H = 500
    bufs = [np.zeros((H, 4)), np.zeros((H, 1)), np.zeros(H), np.zeros(H)]
    work, a, out = np.empty(K.work_size(sizes)), np.zeros(1), np.zeros(10)
    rng = np.random.default_rng(0)
    noise = rng.random((n_episodes, H, 1))
    starts = []
    for e in range(n_episodes):
        o, _ = env.reset(seed=e)
        starts.append((o.astype(np.float64), env.state.copy()))
    c, s = np.zeros(1), np.ones(1)

    def run_all():
        steps = 0
        for e in range(n_episodes):
            bufs[0][0], env.state[:] = starts[e]
            T, _ = KE.rollout_grad(env.kind, env.state, env.params, H, CARTPOLE_THETA, sizes,
                                   K.HEAD_SOFTMAX, noise[e], c, s, False, 0.99, 1.0, work,
                                   *bufs, a, out)
            steps += T
        return steps

    run_all()
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        steps = run_all()
        rates.append(steps / (time.perf_counter() - t0))
    return float(np.median(rates)), steps / n_episodes


def sampler_steps_per_s(backend, env_id, sets, theta_fn, n_episodes, repeat):
    """Return (steps/s, overhead share) of the sampler's rollout + g_H with ``backend``.

    overhead = (wall - time inside env.step) / time inside env.step (the gymnasium backend;
    with the compiled backend policy time is inside the compiled loop and is counted as env).
    """
    cfg = config.load(None, [f'env.id="{env_id}"', f'env.backend="{backend}"', *sets])
    env, info, spec = run.build(cfg, 0)
    H = cfg["env"]["horizon"]
    theta = theta_fn(spec)
    rates, overheads = [], []
    for r in range(repeat + 1):
        smp = Sampler(env, spec, H, 0.99, r, 0, info["obs_dim"], info["discrete"])
        g = np.zeros_like(theta)
        t0 = time.perf_counter()
        for _ in range(n_episodes):
            tr = smp.rollout(theta)
            smp.add_grad(theta, tr, 1.0, g)
        wall = time.perf_counter() - t0
        if r:  # the first pass warms up
            rates.append(smp.steps / wall)
            overheads.append((wall - smp.t_env) / smp.t_env)
    return float(np.median(rates)), float(np.median(overheads))


def bench_envs(repeat: int = 5) -> list[dict]:
    """Return the env rows (see the module docstring)."""
    K.warmup()
    rows = []
    for env_id in sorted(SUPPORTED):
        ref = gym_steps_per_s(env_id, 20_000, repeat)
        ours = compiled_steps_per_s(env_id, 1_000_000, repeat)
        rows.append({"row": f"{env_id} step", "steps_per_s": ours,
                     "reference": "gymnasium env.step", "reference_steps_per_s": ref,
                     "ratio": ours / ref})
    ref_cp = next(r["reference_steps_per_s"] for r in rows if r["row"].startswith("CartPole"))
    rate, mean_len = rollout_grad_steps_per_s(200, repeat)
    rows.append({"row": "CartPole env+policy+g_H (one call/episode)", "steps_per_s": rate,
                 "reference": "gymnasium env.step", "reference_steps_per_s": ref_cp,
                 "ratio": rate / ref_cp, "mean_episode_len": mean_len})

    def balancing(spec):
        return CARTPOLE_THETA.copy()

    ours, _ = sampler_steps_per_s("compiled", "CartPole-v1", [], balancing, 100, repeat)
    ref, _ = sampler_steps_per_s("gymnasium", "CartPole-v1", [], balancing, 20, repeat)
    rows.append({"row": "CartPole sampler rollout+g_H", "steps_per_s": ours,
                 "reference": "same sampler, gymnasium backend", "reference_steps_per_s": ref,
                 "ratio": ours / ref})
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return rows

    def hopper_theta(spec):
        return spec.init_theta(0, -0.5)

    from ..envs.mujoco_direct import DIRECT, DirectMujocoEnv

    refs = {}
    for env_id in sorted(i for i in DIRECT if i.endswith("-v4")):
        box = _gym(env_id).action_space
        acts = np.random.default_rng(0).uniform(box.low.astype(np.float64),
                                                box.high.astype(np.float64),
                                                (5000, box.shape[0]))
        refs[env_id] = ref = gym_steps_per_s(env_id, 5000, repeat, acts)
        ours = gym_steps_per_s(env_id, 5000, repeat, acts, DirectMujocoEnv(env_id))
        rows.append({"row": f"{env_id} direct step", "steps_per_s": ours,
                     "reference": "gymnasium env.step", "reference_steps_per_s": ref,
                     "ratio": ours / ref})
    ref = refs["Hopper-v4"]
    for sets, label in ((['policy.kind="mlp"', "policy.hidden=[64, 64]"], "MLP 64-64"),
                        (['policy.kind="linear"'], "linear")):
        rate, over = sampler_steps_per_s("gymnasium", "Hopper-v4", [*sets, "env.horizon=1000"],
                                         hopper_theta, 20, repeat)
        rows.append({"row": f"Hopper-v4 sampler rollout+g_H, {label}", "steps_per_s": rate,
                     "reference": "gymnasium env.step", "reference_steps_per_s": ref,
                     "ratio": rate / ref, "overhead_vs_env_step": over})
    mlp = ['policy.kind="mlp"', "policy.hidden=[64, 64]", "env.horizon=1000"]
    rate, over = sampler_steps_per_s("direct", "Hopper-v4", mlp, hopper_theta, 20, repeat)
    rows.append({"row": "Hopper-v4 sampler rollout+g_H, MLP, direct", "steps_per_s": rate,
                 "reference": "gymnasium env.step", "reference_steps_per_s": ref,
                 "ratio": rate / ref, "overhead_vs_env_step": over})
    return rows


def print_envs(rows: list[dict]) -> None:
    """Print the env rows."""
    print("envs, steps per second (median); ratio = ours / the reference in this run")
    print(f"{'what':<46}{'steps/s':>12}{'reference':>12}{'ratio':>9}  reference")
    for r in rows:
        extra = ""
        if "overhead_vs_env_step" in r:
            extra = f"  (policy+bookkeeping = {100 * r['overhead_vs_env_step']:.1f}% of env.step)"
        if "mean_episode_len" in r:
            extra = f"  (mean episode {r['mean_episode_len']:.0f} steps)"
        print(f"{r['row']:<46}{r['steps_per_s']:>12,.0f}{r['reference_steps_per_s']:>12,.0f}"
              f"{r['ratio']:>8.2f}x  {r['reference']}{extra}")
