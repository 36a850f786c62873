"""The policy a run delivers: one self-describing file, a loader, and evaluation episodes.

``policy.npz`` in a run directory holds ``theta`` (the delivered point: the outer step's
``theta``, not the sampling point ``theta_tilde``), and in one JSON document everything
needed to act with it and to rebuild its environment: layer sizes, head, squash, the action
centre and scale, the env id, kwargs, heterogeneity and horizon, the algorithm, round and
versions.  :func:`load` reads it into a :class:`Policy`, which acts on one observation or a
batch with numpy alone: no MPI, no numba compilation, nothing from the run but the file.
"""

from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np

from . import obsnorm
from .config import ConfigError

FILE = "policy.npz"
BEST_FILE = "best.npz"  # run.deliver = "best": the best periodically evaluated point so far
BEST_KEYS = ("round", "time_s", "eval_return", "eval_point")  # the ``best`` record of a file
FORMAT = 1
SIGMA_MIN = 1e-6  # as the kernels' Gaussian heads (kernels.SIGMA_MIN)
HEAD_NAMES = {0: "softmax", 1: "gaussian_softplus", 2: "gaussian_logstd"}


EVAL_SEED = 10**9  # evaluation episodes use env seeds far from any training episode's


def describe(spec, cfg: dict, meta: dict, norm=None) -> dict:
    """Return the JSON document of a policy file (everything but ``theta``); ``norm``: the
    run's ObsNorm (``policy.obs_norm``), whose statistics the policy applies to its input."""
    if norm is not None and not isinstance(norm, dict):
        norm = norm.state()  # an ObsNorm; a dict is a state() kept earlier (the best point)
    return {"format": FORMAT, "obs_norm": norm,
            "sizes": [int(x) for x in spec.sizes],
            "head": HEAD_NAMES[int(spec.head)], "squash": bool(spec.squash),
            "act_dim": int(spec.act_dim), "a_center": np.asarray(spec.a_center).tolist(),
            "a_scale": np.asarray(spec.a_scale).tolist(), "point": "theta",
            "env": {k: cfg["env"][k] for k in ("id", "kwargs", "heterogeneity", "per_worker",
                                               "horizon", "gamma", "wrappers")},
            "algo": cfg["algo"]["name"], **meta}


def save(run_dir: str, theta: np.ndarray, spec, cfg: dict, meta: dict, norm=None,
         name: str = FILE) -> str:
    """Write ``run_dir/NAME`` (policy.npz) atomically (no symlink followed); return its path."""
    from . import rundir

    doc = describe(spec, cfg, meta, norm)
    path = os.path.join(run_dir, name)

    def write(fh) -> None:
        np.savez(fh, theta=np.asarray(theta, dtype=np.float64), policy_json=np.array(
            json.dumps(doc)))

    rundir.write_atomic(path, write)
    return path


class Policy:
    """A trained policy: ``act(obs)`` for one observation or a batch (numpy only)."""

    def __init__(self, theta: np.ndarray, doc: dict):
        self.theta = np.asarray(theta, dtype=np.float64)
        self.doc = doc
        self.sizes = [int(x) for x in doc["sizes"]]
        self.head = doc["head"]
        self.squash = bool(doc["squash"])
        self.a_center = np.asarray(doc["a_center"], dtype=np.float64)
        self.a_scale = np.asarray(doc["a_scale"], dtype=np.float64)
        self.discrete = self.head == "softmax"
        self.obs_dim = self.sizes[0]
        # observation normalisation of training (nigt_hpc.obsnorm), frozen at delivery
        on = doc.get("obs_norm")
        self.obs_norm = None
        if on is not None:
            self.obs_norm = (np.asarray(on["mean"], dtype=np.float64),
                             np.asarray(on["var"], dtype=np.float64), float(on["count"]),
                             float(on["clip"]))
            if self.obs_norm[0].shape != (self.obs_dim,) or \
                    self.obs_norm[1].shape != (self.obs_dim,):
                raise ConfigError(f"{FILE}: obs_norm statistics do not match the policy's "
                                  f"{self.obs_dim} inputs")
        n = sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        if self.head == "gaussian_logstd":
            n += self.sizes[-1]
        if self.theta.shape != (n,):
            raise ConfigError(f"{FILE}: theta has {self.theta.size} entries, the layout "
                              f"{self.sizes} with a {self.head} head needs {n}")

    @property
    def env_id(self) -> str:
        """Return the gymnasium id of the environment the policy was trained on."""
        return self.doc["env"]["id"]

    def _logits(self, x: np.ndarray) -> np.ndarray:
        """Return the network's last affine layer for a batch ``x`` of shape (B, obs_dim)."""
        return forward(self.theta, self.sizes, x)

    def act(self, obs, deterministic: bool = True, rng: np.random.Generator | None = None):
        """Return the env action for ``obs`` (shape (obs_dim,) or (B, obs_dim)).

        Deterministic: the most likely action (argmax for softmax, the squashed mean for a
        Gaussian).  Stochastic: a sample, as in training, from ``rng``.
        """
        x = np.asarray(obs, dtype=np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.shape[1] != self.obs_dim:
            raise ValueError(f"observation has {x.shape[1]} entries, the policy takes "
                             f"{self.obs_dim}")
        if self.obs_norm is not None:
            x = obsnorm.apply(x, *self.obs_norm)
        z = self._logits(x)
        rng = rng if rng is not None else np.random.default_rng()
        if self.discrete:
            if deterministic:
                a = np.argmax(z, axis=1)
            else:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                cdf = np.cumsum(e / e.sum(axis=1, keepdims=True), axis=1)
                a = np.minimum((cdf < rng.random((len(z), 1))).sum(axis=1), z.shape[1] - 1)
            return int(a[0]) if single else a
        k = len(self.a_center)
        u = z[:, :k].copy()
        if not deterministic:
            if self.head == "gaussian_softplus":
                sig = np.logaddexp(0.0, z[:, k : 2 * k]) + SIGMA_MIN
            else:
                sig = np.exp(self.theta[-self.sizes[-1] :][:k])
            u = u + sig * rng.standard_normal(u.shape)
        if self.squash:
            a = self.a_center + self.a_scale * np.tanh(u)
        else:
            a = np.clip(u, self.a_center - self.a_scale, self.a_center + self.a_scale)
        return a[0] if single else a


def forward(theta: np.ndarray, sizes: list[int], x: np.ndarray) -> np.ndarray:
    """Return the last affine layer of the network ``sizes`` (tanh between layers) at
    ``theta`` for a batch ``x`` of shape (B, sizes[0]), with numpy alone."""
    p = 0
    L = len(sizes) - 1
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = theta[p : p + n_in * n_out].reshape(n_in, n_out)
        b = theta[p + n_in * n_out : p + n_in * n_out + n_out]
        x = x @ W + b
        if i < L - 1:
            x = np.tanh(x)
        p += n_in * n_out + n_out
    return x


def load(run_dir: str) -> Policy:
    """Return the policy a run delivered (``RUN_DIR/policy.npz``); ConfigError if absent."""
    path = run_dir if run_dir.endswith(".npz") else os.path.join(run_dir, FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"{run_dir!r}: no {FILE} (is it a run directory of nigt_hpc "
                          ">= 0.4 that finished or was stopped?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            theta = z["theta"]
            doc = json.loads(str(z["policy_json"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise ConfigError(f"{path!r}: not a readable policy file ({type(e).__name__})") \
            from None
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{path!r}: policy format {doc.get('format')!r}, this version reads "
                          f"{FORMAT}")
    return Policy(theta, doc)


def make_eval_env(policy: Policy, worker: int = 0, render_mode: str | None = None,
                  video_dir: str | None = None):
    """Return the policy's environment (as worker ``worker`` saw it) through gymnasium.

    With ``video_dir`` it renders rgb_array frames (ConfigError if it cannot) and records
    every episode there as ``ENV-worker-W-episode-K.mp4``; closing it writes the last one.
    Call :func:`nigt_hpc.video.select_gl` first: MuJoCo's GL backend is fixed at import.
    """
    from . import config, envs

    if video_dir is not None:
        render_mode = "rgb_array"

    cfg = config.defaults()
    for k, v in policy.doc["env"].items():
        cfg["env"][k] = v
    cfg["env"]["backend"] = "gymnasium"  # the compiled fast paths match it bit for bit
    if render_mode is not None:
        cfg["env"]["kwargs"] = {**cfg["env"]["kwargs"], "render_mode": render_mode}
    if video_dir is None:
        return envs.make_env(cfg, worker)
    from . import video

    try:
        env = envs.make_env(cfg, worker)
    except ConfigError as e:  # training made it without render_mode, so that is the cause
        raise ConfigError(f"--video: {policy.env_id!r} cannot be made with render_mode = "
                          f"'rgb_array', so it cannot render ({e})") from None
    try:
        video.check_renders(env, policy.env_id)
        return video.record(env, video_dir, video.prefix(policy.env_id, worker))
    except ConfigError:
        env.close()
        raise


def evaluate(policy: Policy, episodes: int = 10, deterministic: bool = True, seed: int = 0,
             worker: int = 0, env=None) -> dict:
    """Return evaluation statistics of ``episodes`` episodes (seeds ``seed``, ``seed+1``...),
    each cut at the training horizon H, as the training returns are."""
    own = env is None
    env = env if env is not None else make_eval_env(policy, worker)
    horizon = int(policy.doc["env"]["horizon"])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7A1]))
    returns, lengths = [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            total, t = 0.0, 0
            while t < horizon:
                obs, r, term, trunc, _ = env.step(policy.act(obs, deterministic, rng))
                total += float(r)
                t += 1
                if term or trunc:
                    break
            returns.append(total)
            lengths.append(t)
    finally:
        if own:
            env.close()
    r = np.asarray(returns)
    return {"episodes": episodes, "deterministic": deterministic, "seed": seed,
            "worker": worker, "env_id": policy.env_id, "mean_return": float(r.mean()),
            "std_return": float(r.std()), "min_return": float(r.min()),
            "max_return": float(r.max()), "returns": returns, "lengths": lengths,
            "mean_length": float(np.mean(lengths)) if lengths else math.nan}


def choose(opt, spec, cfg: dict, workers: int, norm=None,
           evaluator: Evaluator | None = None) -> tuple[np.ndarray, dict | None, dict]:
    """Return (the point to deliver, its observation statistics, what its choice measured).

    Training returns are measured at the sampling point ``theta_tilde``, extrapolated
    ``(1-eta)/eta`` steps past ``theta``; the outer step's ``theta`` is a different policy,
    and on CartPole it evaluated far below the training window.  So both are evaluated
    (``run.eval_episodes`` deterministic episodes each, on seeds no training episode used,
    on every worker's env when the workers' envs differ), and the better mean is delivered;
    a tie keeps ``theta``.  Plain PG has one point.  ``run.eval_episodes = 0`` delivers
    ``theta`` unevaluated.  ``norm``: the run's ObsNorm, delivered with the policy.

    ``run.deliver = "best"`` adds a third candidate, the point that scored best in the
    periodic evaluations (``evaluator.best``, with the observation statistics it had then).
    That score was the maximum of many noisy ones, so all candidates are scored again on
    ``run.eval_episodes`` episodes none of the periodic evaluations used
    (``Evaluator.delivery_seed``), and that fresh score is the one reported.
    """
    points = candidate_points(opt)
    state = None if norm is None else norm.state()
    if cfg["run"]["eval_episodes"] == 0:
        return points["theta"], state, {"point": "theta", "evaluated": False}
    own = evaluator is None
    ev = Evaluator(spec, cfg, workers) if own else evaluator
    try:
        best = ev.best if cfg["run"]["deliver"] == "best" else None
        if best is None:
            res = ev(points, norm)
            return points[res["eval_point"]], state, {"point": res["eval_point"],
                                                      "evaluated": True, **res}
        docs = {k: describe(spec, cfg, {}, state) for k in points}
        points["best"], docs["best"] = best["theta"], best["doc"]
        res = ev(points, docs=docs, seed=ev.delivery_seed)
        pick = res["eval_point"]
        about = {k: best[k] for k in BEST_KEYS}
        return points[pick], docs[pick]["obs_norm"], {"point": pick, "evaluated": True,
                                                      "best": about, **res}
    finally:
        if own:
            ev.close()


def write_best(run_dir: str, best: dict, spec, cfg: dict) -> str:
    """Write ``RUN_DIR/best.npz``: a policy file (``load`` reads it) of the best point."""
    meta = {"point": "best", "best": {k: best[k] for k in BEST_KEYS}}
    return save(run_dir, best["theta"], spec, cfg, meta, best["doc"]["obs_norm"], BEST_FILE)


def read_best(run_dir: str) -> dict | None:
    """Return the best point ``write_best`` left in ``run_dir``, or None (none, or unreadable:
    the periodic evaluations then start over)."""
    path = os.path.join(run_dir, BEST_FILE)
    if not os.path.isfile(path):
        return None
    try:
        pol = load(path)
        about = pol.doc["best"]
    except (ConfigError, KeyError):
        return None
    doc = {k: v for k, v in pol.doc.items() if k != "best"}
    return {"theta": pol.theta, "doc": doc, **about}


def candidate_points(opt) -> dict[str, np.ndarray]:
    """Return the points a run could deliver: ``theta`` and, for NIGT, ``theta_tilde``."""
    from .nigt import extrapolate

    points = {"theta": np.array(opt.theta)}
    if hasattr(opt, "theta_prev"):
        points["theta_tilde"] = extrapolate(opt.theta, opt.theta_prev, opt.eta,
                                            np.empty_like(opt.theta))
    return points


class Evaluator:
    """Deterministic evaluation of candidate points on fixed seeds (rank 0 only).

    The same seeds every call (``EVAL_SEED + 10000 * run.seed``), so an evaluation curve
    compares policies, not episodes; the environments are made once and kept.

    With ``run.deliver = "best"`` it keeps the point of the best periodic evaluation so far
    (``best``: theta, the policy document with the observation statistics of that moment,
    round, clock, score) and, given ``run_dir``, writes it to ``RUN_DIR/best.npz`` each
    time it improves (atomically), so a killed run keeps it; ``resume`` reads it back.
    """

    def __init__(self, spec, cfg: dict, workers: int, run_dir: str | None = None,
                 resume: bool = False):
        self.spec, self.cfg = spec, cfg
        self.episodes = cfg["run"]["eval_episodes"]
        self.envs_of = list(range(workers)) if cfg["env"]["heterogeneity"] != "none" else [0]
        self.seed = EVAL_SEED + 10_000 * cfg["run"]["seed"]
        # the final choice under run.deliver = "best": the episodes right after the periodic
        # ones, which no periodic evaluation (hence no choice of the best point) has seen
        self.delivery_seed = self.seed + self.episodes
        self.envs: dict = {}
        self._next_s = 0.0  # run.eval_every_s: the clock reading the next one waits for
        self.keep_best = cfg["run"]["deliver"] == "best"
        self.run_dir = run_dir
        self.best: dict | None = None
        # best.npz waits for the run directory's first files (run.py: begin), so a run that
        # fails before its first round ends leaves nothing, and --force cannot remove it
        self._writable, self._unsaved = False, False
        if self.keep_best and resume and run_dir is not None:
            self.best = read_best(run_dir)

    def __call__(self, points: dict, norm=None, docs: dict | None = None,
                 seed: int | None = None) -> dict:
        """Return ``eval_return`` (the best point's mean), ``eval_point`` and every mean.

        Every point acts with ``norm``'s statistics, or with its own policy document from
        ``docs``; ``seed``: the first episode's env seed (default ``self.seed``)."""
        seed = self.seed if seed is None else seed
        doc = describe(self.spec, self.cfg, {}, norm) if docs is None else None
        scores = {}
        for name, theta in points.items():
            pol = Policy(theta, doc if docs is None else docs[name])
            means = []
            for w in self.envs_of:
                if w not in self.envs:
                    self.envs[w] = make_eval_env(pol, w)
                means.append(evaluate(pol, self.episodes, True, seed, w,
                                      env=self.envs[w])["mean_return"])
            scores[name] = float(np.mean(means))
        best = max(scores, key=lambda k: (scores[k], k == "theta"))
        return {"eval_return": scores[best], "eval_point": best,
                "eval_episodes": self.episodes, "eval_seed": seed,
                "eval_workers": self.envs_of, "eval_returns": scores}

    @staticmethod
    def wanted(cfg: dict) -> bool:
        """Return whether the config asks for evaluation during the run."""
        r = cfg["run"]
        return bool(r["eval_every_rounds"] or r["eval_every_s"]) and r["eval_episodes"] > 0

    def periodic(self, opt, norm, rnd: int, time_s: float, last: bool) -> dict:
        """The metrics fields of round ``rnd`` ending at ``time_s`` (the run's clock:
        rank 0's seconds, or virtual seconds in simulate): an evaluation every
        ``run.eval_every_rounds`` rounds, once ``run.eval_every_s`` seconds have passed
        since the last one, and at the ``last`` round; nulls otherwise."""
        r = self.cfg["run"]
        k, s = r["eval_every_rounds"], r["eval_every_s"]
        due = last or (k and rnd % k == 0) or (s and time_s >= self._next_s)
        if not due or self.episodes == 0:
            return {"eval_return": None, "eval_point": None}
        if s:
            self._next_s = time_s + s
        points = candidate_points(opt)
        res = self(points, norm)
        if self.keep_best and (self.best is None or res["eval_return"] > self.best["eval_return"]):
            self.best = {"theta": points[res["eval_point"]].copy(),
                         "doc": describe(self.spec, self.cfg, {}, norm), "round": int(rnd),
                         "time_s": float(time_s), "eval_return": res["eval_return"],
                         "eval_point": res["eval_point"]}
            self._unsaved = True
            self._save()
        return {"eval_return": res["eval_return"], "eval_point": res["eval_point"]}

    def begin_writing(self) -> None:
        """The run directory is prepared (run.py calls it after config.toml is written):
        write best.npz from now on, the one found before included."""
        self._writable = True
        self._save()

    def _save(self) -> None:
        if self._unsaved and self._writable and self.run_dir is not None:
            write_best(self.run_dir, self.best, self.spec, self.cfg)
            self._unsaved = False

    def close(self) -> None:
        """Close the environments."""
        for env in self.envs.values():
            env.close()
        self.envs.clear()
