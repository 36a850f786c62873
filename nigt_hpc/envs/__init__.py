"""Environment adapters: gymnasium creation with clear errors, per-worker heterogeneity.

No MPI here.  ``make_env(cfg, worker, n_workers)`` returns a gymnasium env for one global
worker index; every worker of a homogeneous run gets the same MDP.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np

from ..config import ConfigError

MUJOCO_HINT = "install MuJoCo with: pip install 'nigt_hpc[mujoco]'"


class NegateObs:
    """Worker 0 sees ``(s, 0)``; every other worker sees ``(-s, 1)`` (paper's experiment 4).

    The flag is appended to every observation, the one from ``reset`` included.
    """

    def __init__(self, env, negate: bool):
        import gymnasium as gym

        self.env = env
        self.sign = -1.0 if negate else 1.0
        self.flag = 1.0 if negate else 0.0
        low = env.observation_space.low.astype(np.float64)
        high = env.observation_space.high.astype(np.float64)
        lo, hi = (-high, -low) if negate else (low, high)
        self.observation_space = gym.spaces.Box(
            np.append(lo, 0.0), np.append(hi, 1.0), dtype=np.float64)
        self.action_space = env.action_space
        self.spec = env.spec

    def _obs(self, s):
        return np.append(self.sign * np.asarray(s, dtype=np.float64), self.flag)

    def reset(self, seed=None):
        s, info = self.env.reset(seed=seed)
        return self._obs(s), info

    def step(self, a):
        s, r, term, trunc, info = self.env.step(a)
        return self._obs(s), r, term, trunc, info

    def close(self):
        self.env.close()


def _import_module_of(env_id: str) -> None:
    if ":" in env_id:
        mod = env_id.split(":", 1)[0]
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError(f"env.id = {env_id!r}: cannot import module {mod!r} ({e})") from None


def _gym_make(env_id: str, kwargs: dict):
    import gymnasium as gym
    from gymnasium.error import DependencyNotInstalled, Error

    _import_module_of(env_id)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # v4 deprecation notices, once per worker
            return gym.make(env_id, **kwargs)
    except DependencyNotInstalled as e:
        hint = MUJOCO_HINT if "mujoco" in str(e).lower() else str(e).splitlines()[0]
        raise ConfigError(f"env.id = {env_id!r} needs a missing dependency: {hint}") from None
    except ModuleNotFoundError as e:
        hint = MUJOCO_HINT if "mujoco" in str(e).lower() else f"missing module {e.name!r}"
        raise ConfigError(f"env.id = {env_id!r} needs a missing dependency: {hint}") from None
    except Error as e:  # NameNotFound, VersionNotFound, DeprecatedEnv, ...
        msg = str(e).splitlines()[0]
        raise ConfigError(f"env.id = {env_id!r} is not a gymnasium environment: {msg}") from None
    except TypeError as e:
        raise ConfigError(f"env.kwargs do not fit {env_id!r}: {e}") from None


def worker_kwargs(cfg: dict, worker: int) -> dict:
    """Return the gymnasium.make kwargs of one global worker."""
    kwargs = dict(cfg["env"]["kwargs"])
    if cfg["env"]["heterogeneity"] == "per_worker":
        entries = cfg["env"]["per_worker"]
        kwargs.update(entries[worker % len(entries)].get("kwargs", {}))
    return kwargs


def backend_of(cfg: dict, worker: int = 0) -> str:
    """Return the implementation ``env.backend`` gives worker ``worker``: "compiled" (numba
    classic control), "direct" (MuJoCo stepped directly) or "gymnasium".

    ``auto`` picks the compiled or direct one where it exists for the id and kwargs (both
    give gymnasium's numbers bit for bit); ``compiled`` and ``direct`` insist (and say why
    not); ``gymnasium`` always takes the reference implementation.
    """
    from . import compiled, mujoco_direct

    backend = cfg["env"]["backend"]
    if cfg["env"]["wrappers"]:  # wrappers wrap gymnasium's env; the fast paths have none
        if backend in ("compiled", "direct"):
            raise ConfigError(f"env.backend = {backend!r} cannot take env.wrappers; use "
                              "'auto' or 'gymnasium'")
        return "gymnasium"
    if backend == "gymnasium":
        return "gymnasium"
    # the compiled classic-control loop computes the policy's input inside numba, where no
    # normalisation is applied: policy.obs_norm takes the gymnasium path (same dynamics)
    if cfg["policy"]["obs_norm"]:
        if backend == "compiled":
            raise ConfigError("env.backend = 'compiled' cannot take policy.obs_norm; use "
                              "'auto' or 'gymnasium'")
        if compiled.unsupported_reason(cfg["env"]["id"], worker_kwargs(cfg, worker)) is None:
            return "gymnasium"
    env_id, kwargs = cfg["env"]["id"], worker_kwargs(cfg, worker)
    why = {"compiled": compiled.unsupported_reason(env_id, kwargs),
           "direct": mujoco_direct.unsupported_reason(env_id, kwargs)}
    if backend in why:
        if why[backend]:
            raise ConfigError(f"env.backend = {backend!r}: {why[backend]}; "
                              f"use 'auto' or 'gymnasium'")
        return backend
    for name in ("compiled", "direct"):
        if why[name] is None:
            return name
    return "gymnasium"


def use_compiled(cfg: dict, worker: int = 0) -> bool:
    """Return whether worker ``worker`` gets the compiled classic-control env."""
    return backend_of(cfg, worker) == "compiled"


def make_env(cfg: dict, worker: int = 0):
    """Return the environment of global worker ``worker`` (0-based)."""
    backend = backend_of(cfg, worker)
    if backend == "compiled":
        from .compiled import CompiledEnv

        env = CompiledEnv(cfg["env"]["id"], worker_kwargs(cfg, worker))
    elif backend == "direct":
        from .mujoco_direct import DirectMujocoEnv

        env = DirectMujocoEnv(cfg["env"]["id"], worker_kwargs(cfg, worker))
    else:
        env = apply_wrappers(_gym_make(cfg["env"]["id"], worker_kwargs(cfg, worker)),
                             cfg["env"]["wrappers"])
    if cfg["env"]["heterogeneity"] == "negate_obs":
        env = NegateObs(env, negate=worker > 0)
    return env


def apply_wrappers(env, wrappers: list):
    """Return ``env`` inside each of ``env.wrappers``, first to last; ConfigError if one
    cannot be found or does not take its kwargs."""
    import gymnasium as gym

    for i, w in enumerate(wrappers):
        where = f"env.wrappers[{i}] = {w['name']!r}"
        name = w["name"]
        if ":" in name:
            mod, _, attr = name.partition(":")
            try:
                cls = getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError) as e:
                raise ConfigError(f"{where}: cannot import it ({e})") from None
        else:
            cls = getattr(gym.wrappers, name, None)
            if cls is None:
                raise ConfigError(f"{where} is not in gymnasium.wrappers (a module:Class "
                                  "name imports your own)")
        try:
            env = cls(env, **w["kwargs"])
        except (TypeError, ValueError, gym.error.Error) as e:
            raise ConfigError(f"{where} does not fit this env or its kwargs: "
                              f"{str(e).splitlines()[0]}") from None
    return env


def _space_hint(space) -> str:
    """Return which wrapper would make an unsupported observation space flat."""
    import gymnasium as gym

    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple, gym.spaces.Discrete,
                          gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return "; set env.wrappers = [\"FlattenObservation\"] to make it a flat Box"
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 3:
        return ("; for images set env.wrappers = [\"GrayscaleObservation\", "
                "{name = \"ResizeObservation\", kwargs = {shape = [16, 16]}}, "
                "\"FlattenObservation\"] (or FlattenObservation alone)")
    if isinstance(space, gym.spaces.Box):
        return "; set env.wrappers = [\"FlattenObservation\"] to make it flat"
    return ""


def describe(env) -> dict:
    """Return obs_dim, whether actions are discrete, and action size/bounds of ``env``."""
    import gymnasium as gym

    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ConfigError(f"env.id = {env.spec.id if env.spec else env!r}: observations must "
                          f"be a flat Box, got {obs_space}{_space_hint(obs_space)}")
    if isinstance(act_space, gym.spaces.Discrete):
        return {"obs_dim": int(obs_space.shape[0]), "discrete": True,
                "n_actions": int(act_space.n), "act_dim": 1,
                "low": np.zeros(1), "high": np.ones(1)}
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        low = act_space.low.astype(np.float64)
        high = act_space.high.astype(np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ConfigError("env: unbounded Box actions are not supported (need finite "
                              "bounds for a = center + scale * tanh(u))")
        return {"obs_dim": int(obs_space.shape[0]), "discrete": False,
                "act_dim": int(act_space.shape[0]), "low": low, "high": high}
    hint = ""
    if isinstance(act_space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        hint = ("; gymnasium has no wrapper that makes it Discrete: write one (an action "
                "wrapper indexing the combinations) and name it as module:Class in "
                "env.wrappers")
    elif isinstance(act_space, gym.spaces.Box):
        hint = "; a 2-D Box needs an action wrapper that reshapes a flat vector"
    raise ConfigError(f"env: action space {act_space} is not supported (Discrete or flat "
                      f"Box){hint}")
