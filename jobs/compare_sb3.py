#!/usr/bin/env python3
"""nigt-hpc against Stable-Baselines3 PPO on the same machine, in one run.

Usage (after ``pip install ".[compare]"``, which adds torch and stable-baselines3):

    python jobs/compare_sb3.py [--config jobs/mujoco/hopper.toml] [--budget 900]
        [--ranks 2] [--returns 1000 2000 2500] [--eval-every-s 30] [--episodes 5]
        [--seed 0] [--out compare_out] [--set KEY=VALUE ...]

Each side gets the same cores for the same wall-clock budget, one after the other (so
neither slows the other): nigt-hpc trains on ``--ranks`` MPI ranks with the config; SB3
PPO trains with rl-baselines3-zoo's Hopper hyperparameters (VecNormalize, 256-256 ReLU,
lr 9.8e-5, n_steps 512, batch 32, 5 epochs, gamma 0.999, GAE 0.99, log_std_init -2) with
torch on one thread (``--sb3-threads``; PPO with one env does not use a second core).
Both are scored the same way: deterministic episodes (mean action) on seeds no training
episode uses, every ``--eval-every-s`` seconds of the side's own clock, evaluation time
included in that clock.  The script prints each side's time and env steps to each return
in ``--returns``, its evaluation return at equal wall-clock, and the ratios, all measured
in this run; ``OUT/compare.json`` keeps the curves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# rl-baselines3-zoo hyperparams/ppo.yml, Hopper-v3 entry (normalize: true, n_envs: 1)
ZOO_HOPPER = dict(n_steps=512, batch_size=32, gamma=0.999, learning_rate=9.80828e-05,
                  ent_coef=0.00229519, clip_range=0.2, n_epochs=5, gae_lambda=0.99,
                  max_grad_norm=0.7, vf_coef=0.835671)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(HERE, "mujoco", "hopper.toml"))
    ap.add_argument("--budget", type=float, default=900.0, help="seconds per side")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--returns", type=float, nargs="+", default=[1000.0, 2000.0, 2500.0])
    ap.add_argument("--eval-every-s", type=float, default=30.0)
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="compare_out")
    ap.add_argument("--set", action="append", default=[], help="extra nigt-hpc --set")
    ap.add_argument("--sb3-threads", type=int, default=1, help="torch threads for SB3")
    ap.add_argument("--skip-sb3", action="store_true", help="(for a dry run) nigt-hpc only")
    a = ap.parse_args(argv)
    if a.budget <= 0 or a.ranks < 1 or a.episodes < 1 or a.eval_every_s <= 0:
        ap.error("--budget, --ranks, --episodes and --eval-every-s must be positive")
    return a


def mpiexec() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else "mpiexec"


def run_nigt(a) -> dict:
    """Train nigt-hpc for the budget; return its curve [(seconds, env steps, eval return)]."""
    import numpy as np

    out = os.path.join(a.out, "nigt")
    cmd = [sys.executable, "-m", "nigt_hpc", "train", a.config, "--out", out, "--force",
           "--quiet", "--set", f"run.max_time_s={a.budget}", "--set", "run.max_rounds=0",
           "--set", "run.target_return=inf", "--set", f"run.seed={a.seed}",
           "--set", f"run.eval_episodes={a.episodes}"]
    for s in a.set:
        cmd += ["--set", s]
    if a.ranks > 1:
        cmd = [mpiexec(), "-n", str(a.ranks)] + cmd
    cmd += ["--set", f"run.eval_every_s={a.eval_every_s}", "--set", "run.eval_every_rounds=0"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"nigt-hpc failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    rows = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    curve = [(r["time_s"], r["env_steps"], r["eval_return"]) for r in rows
             if r.get("eval_return") is not None]
    with np.load(os.path.join(out, "policy.npz")) as z:
        doc = json.loads(str(z["policy_json"]))
    return {"curve": curve, "final_eval": doc.get("eval_return"), "wall_s": wall,
            "env_steps": rows[-1]["env_steps"]}


def run_sb3(a, env_id: str) -> dict:
    """Train SB3 PPO (zoo Hopper hyperparameters) for the budget; return its curve."""
    try:
        import gymnasium as gym
        import numpy as np
        import torch
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize
    except ImportError as e:
        sys.exit(f"error: {e.name} is missing: pip install \".[compare]\"")

    # zoo's Hopper PPO is one env in one process; torch's intra-op threads do not help its
    # 256-unit layers and spin against each other on a shared machine (measured here under
    # load: 17 env steps/s with 2 threads, 219 with 1), so one thread unless told otherwise
    torch.set_num_threads(a.sb3_threads)
    venv = VecNormalize(make_vec_env(env_id, n_envs=1, seed=a.seed), gamma=ZOO_HOPPER["gamma"])
    model = PPO("MlpPolicy", venv, seed=a.seed, device="cpu", verbose=0,
                policy_kwargs=dict(log_std_init=-2, ortho_init=False,
                                   activation_fn=torch.nn.ReLU,
                                   net_arch=dict(pi=[256, 256], vf=[256, 256])),
                **ZOO_HOPPER)
    eval_env = gym.make(env_id)
    curve = []
    t0 = time.perf_counter()

    def evaluate() -> float:
        rets = []
        for i in range(a.episodes):
            obs, _ = eval_env.reset(seed=10**9 + i)
            total, done = 0.0, False
            while not done:
                o = venv.normalize_obs(obs[None].astype(np.float32))
                act, _ = model.predict(o, deterministic=True)
                obs, r, term, trunc, _ = eval_env.step(act[0])
                total += r
                done = term or trunc
            rets.append(total)
        return float(np.mean(rets))

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.next = 0.0

        def _on_step(self) -> bool:
            now = time.perf_counter() - t0
            if now >= self.next:
                curve.append((now, self.num_timesteps, evaluate()))
                self.next = now + a.eval_every_s
            return now < a.budget

    model.learn(total_timesteps=10**9, callback=Clock())
    now = time.perf_counter() - t0
    curve.append((now, model.num_timesteps, evaluate()))
    return {"curve": curve, "final_eval": curve[-1][2], "wall_s": now,
            "env_steps": model.num_timesteps}


def first(curve, target):
    return next(((t, s) for t, s, e in curve if e >= target), None)


def at(curve, t_end):
    """Best evaluation return reached by ``t_end`` seconds (None before the first)."""
    vals = [e for t, _, e in curve if t <= t_end]
    return max(vals) if vals else None


def table(a, res: dict) -> str:
    lines = [f"budget {a.budget:.0f} s per side, {a.ranks} cores, seed {a.seed}; "
             "deterministic evaluation returns"]
    for name, r in res.items():
        lines.append(f"  {name:8s} final {r['final_eval']:8.1f}   best {at(r['curve'], 1e18):8.1f}"
                     f"   env steps {r['env_steps']:>11,}  ({r['env_steps'] / r['wall_s']:,.0f}/s)")
    lines.append("time (env steps) to a return:")
    for target in a.returns:
        cells = []
        hit = {n: first(r["curve"], target) for n, r in res.items()}
        for n in res:
            h = hit[n]
            cells.append(f"{n} {'-' if h is None else f'{h[0]:.0f} s ({h[1]:,})'}")
        ratio = ""
        if len(res) == 2 and all(hit.values()):
            (_, x), (_, y) = hit.items()
            ratio = f"   sb3/nigt = {y[0] / max(x[0], 1e-9):.2f}x"
        lines.append(f"  {target:7.0f}: " + "   ".join(cells) + ratio)
    if len(res) == 2:
        t_eq = min(r["wall_s"] for r in res.values())
        a_n, a_s = at(res["nigt"]["curve"], t_eq), at(res["sb3"]["curve"], t_eq)
        lines.append(f"at equal wall-clock ({t_eq:.0f} s): nigt {a_n:.1f}, sb3 {a_s:.1f}"
                     + (f", ratio {a_n / a_s:.2f}" if a_s and a_s > 0 else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    a = parse(argv)
    sys.path.insert(0, ROOT)
    from nigt_hpc import config

    cfg = config.load(a.config, a.set)
    os.makedirs(a.out, exist_ok=True)
    res = {"nigt": run_nigt(a)}
    if not a.skip_sb3:
        res["sb3"] = run_sb3(a, cfg["env"]["id"])
    text = table(a, res)
    print(text)
    with open(os.path.join(a.out, "compare.json"), "w") as f:
        json.dump({"args": vars(a), "results": res, "table": text}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
