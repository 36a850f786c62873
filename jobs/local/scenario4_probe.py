#!/usr/bin/env python3
"""Why a worker's return collapses in a heterogeneous run: probe a finished run's policy on
each worker's own environment.

    python jobs/local/scenario4_probe.py RUN_DIR [RUN_DIR ...] [--episodes 20] [--grads 200]

Per worker it prints the delivered policy's stochastic return (mean ± std over episodes)
and, for a softmax policy, the mean probability of the likelier action over the visited
states and the share of action 1 (a saturated policy pushes one way: share near 0 or 1,
probability near 1); then, at the run's final theta, the norm of the mean of ``--grads``
g_H estimates (the gradient's signal) and the mean norm of one estimate.  A worker whose
mean gradient is orders of magnitude below the other's contributes nothing to the
normalised NIGT step, whatever weight its aggregation rule gives it.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import nigt_hpc
from nigt_hpc import envs, obsnorm, policy, rollout, trained


def behaviour(pol, worker: int, episodes: int, seed: int) -> str:
    env = trained.make_eval_env(pol, worker)
    horizon = int(pol.doc["env"]["horizon"])
    rng = np.random.default_rng(seed)
    rets, top, ones = [], [], []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            total = 0.0
            for _ in range(horizon):
                if pol.discrete:
                    x = np.atleast_2d(np.asarray(obs, dtype=np.float64))
                    if pol.obs_norm is not None:
                        x = obsnorm.apply(x, *pol.obs_norm)
                    z = pol._logits(x)[0]
                    p = np.exp(z - z.max())
                    p /= p.sum()
                    a = int(min(np.searchsorted(np.cumsum(p), rng.random()), len(p) - 1))
                    top.append(p.max())
                    ones.append(a == 1)
                else:
                    a = pol.act(obs, deterministic=False, rng=rng)
                obs, r, term, trunc, _ = env.step(a)
                total += float(r)
                if term or trunc:
                    break
            rets.append(total)
    finally:
        env.close()
    s = f"return {np.mean(rets):7.1f} ± {np.std(rets):5.1f}"
    if top:
        s += f", likelier action p {np.mean(top):.3f}, action-1 share {np.mean(ones):.2f}"
    return s


def gradients(cfg: dict, theta: np.ndarray, worker: int, n: int) -> str:
    env = envs.make_env(cfg, worker)
    try:
        info = envs.describe(env)
        spec = policy.make_spec(cfg, info)
        sampler = rollout.make_sampler(cfg, env, spec, info, worker)
        gs = np.zeros((n, len(theta)))
        for k in range(n):
            traj = sampler.rollout(theta)
            sampler.add_grad(theta, traj, 1.0, gs[k])
            sampler.end_round()
    finally:
        env.close()
    return (f"|mean g| {np.linalg.norm(gs.mean(axis=0)):9.3g}, "
            f"mean |g| {np.linalg.norm(gs, axis=1).mean():9.3g}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--grads", type=int, default=200)
    ap.add_argument("--seed", type=int, default=100)
    a = ap.parse_args(argv)
    for d in a.runs:
        if not os.path.exists(os.path.join(d, "policy.npz")):
            print(f"error: {d}: no policy.npz (not a finished run)", file=sys.stderr)
            return 2
        with open(os.path.join(d, "config.toml"), "rb") as f:
            cfg = tomllib.load(f)
        pol = nigt_hpc.load(d)
        theta = np.load(os.path.join(d, "theta.npy"))
        workers = 2 if cfg["env"].get("heterogeneity", "none") != "none" else 1
        print(d)
        for w in range(workers):
            print(f"  worker {w}: {behaviour(pol, w, a.episodes, a.seed)}; "
                  f"{gradients(cfg, theta, w, a.grads)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
