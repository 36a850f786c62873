"""The configuration schema: every key of every section, its default, type and range.

``nigt_hpc.config`` validates against it; ``python -m nigt_hpc.docgen`` writes
docs/CONFIG.md from it, so the reference never drifts from the code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .registry import ALGORITHMS


class ConfigError(ValueError):
    """A user-caused error: bad config, CLI argument, env id or rank count."""


@dataclass(frozen=True)
class Field:
    """One config key: its default, type and allowed range."""

    default: Any
    kind: str  # int | float | str | bool | list_int | list_float | list_str | table | list_table
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple | None = None
    help: str = ""
    finite: bool = True  # inf rejected too (nan always is)


F = Field
# Upper bounds: counters stay below 2**53 so metrics.jsonl (JSON numbers, read as doubles)
# holds them exactly; seeds stay within int64 so any TOML reader can hold config.toml.
EXACT = 2**53
INT64 = 2**63 - 1
SCHEMA: dict[str, dict[str, Field]] = {
    "run": {
        "seed": F(0, "int", ge=0, le=INT64,
                  help="base seed; every worker and episode derives its own"),
        "out": F("", "str", help="run directory; empty = runs/<timestamp>"),
        "max_rounds": F(500, "int", ge=0, le=EXACT,
                        help="stop after this many rounds (0 = no limit)"),
        "max_env_steps": F(0, "int", ge=0, le=EXACT,
                           help="stop after this many env steps (0 = none)"),
        # 1e9 s is 31 years: any larger value (or inf) only hides a typo
        "max_time_s": F(0.0, "float", ge=0, le=1e9, help="stop after this many seconds "
                        "(0 = none)"),
        "target_return": F(math.inf, "float", finite=False,
                           help="stop once the windowed mean reaches it (inf = never)"),
        # the window of every worker rides in each round's Allreduce (also checked against
        # the machine's memory, limits.py)
        "target_window": F(20, "int", ge=1, le=10**7, help="episodes in the target mean"),
        "checkpoint_every_s": F(60.0, "float", ge=0, le=1e9,
                                help="seconds between checkpoints"),
        "progress_every_s": F(2.0, "float", ge=0, le=1e9, help="seconds between status lines"),
        "max_nonfinite": F(10, "int", ge=0, le=EXACT,
                           help="non-finite gradients tolerated per run"),
        "trace": F(False, "bool", help="write trace.json (Chrome/Perfetto timeline)"),
        # metrics.jsonl is written whatever this says: resume and report read it
        "log": F(["jsonl"], "list_str", choices=("jsonl", "csv", "tensorboard"),
                 help="metrics writers: jsonl (metrics.jsonl, always written), csv "
                 "(metrics.csv), tensorboard (event files in tb/; needs the tensorboard "
                 "extra)"),
        "eval_episodes": F(10, "int", ge=0, le=10**6,
                           help="deterministic episodes that choose the delivered policy "
                           "(theta or theta_tilde); 0 = deliver theta unevaluated"),
        "deliver": F("final", "str", choices=("final", "best"),
                     help="policy.npz: final = the better of the last theta and theta_tilde; "
                     "best = also the best periodically evaluated point (best.npz), all "
                     "scored again on fresh episodes"),
        "eval_every_rounds": F(0, "int", ge=0, le=EXACT,
                               help="every this many rounds, rank 0 runs run.eval_episodes "
                               "deterministic episodes (metrics field eval_return); 0 = off"),
        "eval_every_s": F(0.0, "float", ge=0, le=1e9,
                          help="also evaluate once this many seconds of the run's clock "
                          "(virtual in simulate) have passed since the last; 0 = off"),
        "watchdog_s": F(0.0, "float", ge=0, le=7 * 86400.0,
                        help="end the job when a rank has not reached a round's end for this "
                        "long; 0 = automatic (max(120 s, 10 x the longest round))"),
        "stop_grace_s": F(20.0, "float", gt=0, le=3600.0,
                          help="after a stop signal, seconds a rank may take to answer before "
                          "the job ends without it"),
    },
    "env": {
        "id": F("CartPole-v1", "str", help="gymnasium id, or module:Env-v0"),
        "backend": F("auto", "str", choices=("auto", "compiled", "direct", "gymnasium")),
        # H rows of buffers are allocated up front (also checked against memory, limits.py)
        "horizon": F(500, "int", ge=1, le=10**9, help="H, the truncation horizon of g_H"),
        "gamma": F(0.99, "float", gt=0, le=1),
        "kwargs": F({}, "table", help="passed to gymnasium.make"),
        "heterogeneity": F("none", "str", choices=("none", "negate_obs", "per_worker")),
        "per_worker": F([], "list_table", help="one {kwargs = {...}} per worker, cycled"),
        "wrappers": F([], "list_wrappers",
                      help="gymnasium wrappers applied in order, by name (gymnasium.wrappers."
                      "NAME or module:Class), each a string or {name = ..., kwargs = {...}}"),
    },
    "policy": {
        "kind": F("linear", "str", choices=("linear", "mlp")),
        # units per layer; d follows from them (checked against memory, limits.py)
        "hidden": F([64, 64], "list_int", ge=1, le=2**20),
        "head": F("auto", "str", choices=("auto", "softmax", "gaussian_softplus",
                                          "gaussian_logstd")),
        "squash": F(True, "bool", help="a = center + scale * tanh(u) (paper); else clip"),
        # std = exp(log_std): beyond +-20 the noise is 2e-9 or 5e8 times the action scale
        "init_log_std": F(-0.5, "float", ge=-20, le=20),
        "init_seed": F(-1, "int", ge=-1, le=INT64, help="seed of theta_0; -1 = run.seed"),
        "obs_norm": F(False, "bool", help="normalise observations by running statistics of "
                      "all workers, updated at round boundaries (nigt_hpc/obsnorm.py)"),
        "obs_norm_clip": F(10.0, "float", gt=0, le=1e6,
                           help="obs_norm: clip the normalised observation to +-this"),
    },
    "algo": {
        "name": F("rennala_nigt", "str", choices=ALGORITHMS),
        # a round ends only once M gradients are in: 1e7 trajectories is already days
        "M": F(30, "int", ge=1, le=10**7, help="gradients per round"),
        "M_init": F(30, "int", ge=1, le=10**7, help="gradients for the initial direction d_0"),
        "eta": F(0.1, "float", gt=0, le=1, help="NIGT momentum"),
        # step sizes beyond 1e6 only overflow theta
        "alpha": F(0.01, "float", gt=0, le=1e6, help="NIGT step length"),
        "lr": F(0.01, "float", gt=0, le=1e6, help="step size of the plain PG baselines"),
        "B": F(0, "int", ge=0, le=10**7,
               help="sync: gradients per worker per round; 0 = ceil(M/n)"),
        "reuse_stale": F(False, "bool"),
        "is_clip": F(1.0, "float", gt=0, le=1e6, help="c-bar, truncation of importance ratios"),
    },
    "estimator": {
        "baseline": F("none", "str", choices=("none", "time", "linear"),
                      help="b_t subtracted from G_t, fitted on earlier trajectories only"),
        "time_rate": F(0.05, "float", ge=0, le=1,
                       help="time: least weight of a new trajectory in the mean (0 = plain)"),
        "linear_reg": F(1e-5, "float", ge=0, help="linear: ridge coefficient of the fit"),
        "linear_every": F(10, "int", ge=0,
                          help="linear: refit after this many trajectories (0 = per round)"),
        "obs_clip": F(10.0, "float", gt=0, help="linear: features clip the observation"),
    },
    "delays": {
        "compute": F("none", "str", choices=("none", "const", "sqrt", "linear", "exp",
                                             "from_list")),
        # factors times a unit of at most an hour: larger emulated delays only hang a job
        "compute_list": F([], "list_float", ge=0, le=1e6),
        "compute_unit_s": F(0.0, "float", ge=0, le=3600),
        "comm": F("none", "str", choices=("none", "const", "sqrt", "sqrt_d14", "from_list")),
        "comm_list": F([], "list_float", ge=0, le=1e6),
        "comm_unit_s": F(0.0, "float", ge=0, le=3600),
        "per": F("step", "str", choices=("step", "trajectory"),
                 help="real ranks: h_i * compute_unit_s is slept per env step, or per "
                 "gradient (trajectory: rollout and gradient together take h_i, the paper's "
                 "model; what simulate's default charges)"),
        "server_link": F("shared", "str", choices=("shared", "parallel"),
                         help="AFedPG: transfers queue on the server's one link, or each "
                              "worker pays kappa_i in parallel"),
    },
    "mpi": {
        "poll_every_steps": F(64, "int", ge=1, le=10**9),
        "control": F("auto", "str", choices=("auto", "rma", "p2p"),
                     help="Rennala's control plane: RMA counter, messages to rank 0, or auto "
                          "(a start-up probe: RMA where it progresses while rank 0 computes)"),
    },
    "sim": {
        # one env and sampler per worker in one process (also checked against memory)
        "workers": F(10, "int", ge=1, le=10**5,
                     help="n for nigt-hpc simulate (--workers overrides)"),
        "time_model": F("trajectory", "str", choices=("trajectory", "step"),
                        help="a g_H costs h_i, or h_i per env step taken"),
    },
}
