"""Checkpoints: one ``checkpoint.npz`` per run directory, written atomically by rank 0.

It holds the outer-step arrays, every counter the engines keep, each rank's sampler state
(its next episode index: every episode's env seed and policy noise derive from
``(run.seed, worker, episode)``, so that index *is* the generator state), and the byte
offset of ``metrics.jsonl`` at the checkpoint, so a resumed run neither misses nor repeats
a round.  Written to a temporary file, then ``os.replace``: a kill mid-write leaves the
previous checkpoint intact.  A resume validates it against the run (its id, every key the
engine restores, shapes, ``metrics.jsonl``) before anything is written.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from . import registry, rundir
from .config import ConfigError

FILE = "checkpoint.npz"
FORMAT = 2  # 2: the run id (config.toml's [meta] run_id) is in every checkpoint
# config keys a resumed run may change: limits and reporting, nothing that alters the maths
RESUMABLE_KEYS = {"run.max_rounds", "run.max_env_steps", "run.max_time_s",
                  "run.target_return", "run.checkpoint_every_s", "run.progress_every_s",
                  "run.out"}


def save(run_dir: str, arrays: dict[str, np.ndarray], state: dict) -> str:
    """Write the checkpoint atomically, following no symlink; return its path.

    A write error (a full disk) removes the temp file and propagates: the previous
    checkpoint stays intact and no partial file is left.
    """
    payload = {f"a_{k}": np.asarray(v) for k, v in arrays.items()}
    payload["state_json"] = np.array(json.dumps({"format": FORMAT, **state}))
    return rundir.write_atomic(os.path.join(run_dir, FILE), lambda fh: np.savez(fh, **payload))


def load(run_dir: str) -> tuple[dict[str, np.ndarray], dict]:
    """Return (arrays, state) of ``run_dir``'s checkpoint; ConfigError if missing or corrupt."""
    path = os.path.join(run_dir, FILE)
    if os.path.islink(path):
        raise ConfigError(f"--resume {run_dir!r}: {FILE} is a symbolic link; refusing it")
    if not os.path.isfile(path):
        raise ConfigError(f"--resume {run_dir!r}: no {FILE} in it (was a checkpoint written?)")
    try:
        with rundir.open_nofollow(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            arrays = {k[2:]: z[k] for k in z.files if k.startswith("a_")}
            state = json.loads(str(z["state_json"]))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(f"--resume {run_dir!r}: {FILE} is corrupt ({type(e).__name__})") \
            from None
    if not isinstance(state, dict):
        raise ConfigError(f"--resume {run_dir!r}: {FILE} is corrupt (its state is not a table)")
    if state.get("format") != FORMAT:
        raise ConfigError(f"--resume {run_dir!r}: {FILE} has format {state.get('format')!r}, "
                          f"this version reads {FORMAT}")
    return arrays, state


# What a checkpoint's state must hold, by engine kind (registry.py; "*": every engine), as
# key -> kind (see _KINDS): checked before a resume writes anything, so a restore() never
# meets a missing key or a wrong type.  An engine that saves a new key adds it here.
STATE_KEYS = {
    "*": {"format": "int", "round": "round", "time_s": "seconds", "ranks": "int",
          "algo": "str", "run_id": "str", "metrics_offset": "count", "book": "dict",
          "per_rank": "list"},
    "allreduce": {"t": "count"},
    "server": {"t": "count", "k": "count", "staleness": "list_int"},
}
BOOK_KEYS = {"env_steps": "count", "collectives": "count", "comm_bytes": "count",
             "episodes_total": "count", "best_window": "num_or_none", "window": "list_num",
             "nonfinite": "count"}
PER_RANK_KEYS = {"episode": "count", "steps": "count"}
# the arrays each outer step (registry.py: outer) restores, all of shape (d,)
ARRAYS = {"nigt": ("theta", "theta_prev", "d"), "pg": ("theta",)}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


_KINDS = {
    "int": (_is_int, "an integer"),
    "count": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    # the last completed round; -1 when a stop came before round 0 ended (a fresh start)
    "round": (lambda v: _is_int(v) and v >= -1, "an integer >= -1"),
    "seconds": (lambda v: _is_num(v) and v >= 0, "a finite number >= 0"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "dict": (lambda v: isinstance(v, dict), "a table"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "list_int": (lambda v: isinstance(v, list) and all(map(_is_int, v)), "a list of integers"),
    "list_num": (lambda v: isinstance(v, list) and all(map(_is_num, v)),
                 "a list of finite numbers"),
    "num_or_none": (lambda v: v is None or _is_num(v), "a finite number or null"),
}


def _check_keys(table: dict, keys: dict, where: str) -> None:
    for key, kind in keys.items():
        ok, what = _KINDS[kind]
        if key not in table:
            raise ValueError(f"{where}{key} is missing")
        if not ok(table[key]):
            raise ValueError(f"{where}{key} = {str(table[key])[:40]} is not {what}")


def _check_obs_norm(state: dict, obs_dim: int | None) -> None:
    """The observation statistics (policy.obs_norm) are there exactly when the config
    asks for them, and restore (nigt_hpc.obsnorm.ObsNorm.restore checks their values)."""
    from .obsnorm import ObsNorm

    if obs_dim is None:
        if "obs_norm" in state:
            raise ValueError("obs_norm holds observation statistics, but policy.obs_norm is "
                             "off in this config")
        return
    st = state.get("obs_norm")
    if not isinstance(st, dict) or not {"count", "mean", "var"} <= set(st):
        raise ValueError("obs_norm is missing (policy.obs_norm is on in this config; was the "
                         "run started with it off?)")
    try:
        ObsNorm(obs_dim).restore(st)
    except (TypeError, ValueError) as e:
        raise ValueError(str(e)) from None


def engine_of(algo: str) -> str:
    """Return which engine runs ``algo`` (the STATE_KEYS group)."""
    return registry.lookup(algo).engine


def validate(arrays: dict, state: dict, *, algo: str, ranks: int, d: int, run_id: str | None,
             window: int, run_dir: str, obs_dim: int | None = None) -> None:
    """Raise ConfigError naming checkpoint.npz and what is wrong, unless it is a checkpoint
    of this run (same run id) that this job can restore: every key the engine reads, of the
    right type, the same algorithm and rank count, and arrays of the policy's d."""
    def bad(what: str) -> ConfigError:
        return ConfigError(f"--resume {run_dir!r}: {FILE}: {what}")

    if run_id is None:
        raise bad("the run's config.toml has no [meta] run_id (not written by this version)")
    if state.get("run_id") != run_id:
        raise bad(f"run id {str(state.get('run_id'))[:32]!r} is not this run's ({run_id}); "
                  "was it copied from another run directory?")
    if state.get("ranks") != ranks:
        raise bad(f"written by {state.get('ranks')} ranks; run it with mpiexec -n "
                  f"{state.get('ranks')} (this job has {ranks})")
    if state.get("algo") != algo:
        raise bad(f"checkpoint of algo.name = {state.get('algo')!r}, config says {algo!r}")
    engine = engine_of(algo)
    try:
        _check_keys(state, {**STATE_KEYS["*"], **STATE_KEYS[engine]}, "")
        _check_keys(state["book"], BOOK_KEYS, "book.")
        if len(state["book"]["window"]) > window:
            raise ValueError(f"book.window holds {len(state['book']['window'])} returns, "
                             f"more than run.target_window = {window}")
        if len(state["per_rank"]) != ranks:
            raise ValueError(f"per_rank has {len(state['per_rank'])} entries for {ranks} ranks")
        for r, mine in enumerate(state["per_rank"]):
            if engine == "server" and r == 0 and mine is None:
                continue  # the server samples nothing
            if not isinstance(mine, dict):
                raise ValueError(f"per_rank[{r}] is not a table")
            _check_keys(mine, PER_RANK_KEYS, f"per_rank[{r}].")
        if engine == "server" and state["k"] != state["round"] + 1:
            raise ValueError(f"k = {state['k']} does not follow round = {state['round']}")
        _check_obs_norm(state, obs_dim)
    except ValueError as e:
        raise bad(str(e)) from None
    group = registry.lookup(algo).outer
    if sorted(arrays) != sorted(ARRAYS[group]):
        raise bad(f"holds arrays {sorted(arrays)}, {algo} needs {sorted(ARRAYS[group])}")
    for name, a in arrays.items():
        if a.dtype != np.float64 or a.shape != (d,):
            raise bad(f"array {name} is {a.dtype} {a.shape}; the policy needs float64 "
                      f"({d},) (d = {d})")
        if not np.isfinite(a).all():
            raise bad(f"array {name} holds nan or inf")


def check_metrics(run_dir: str, state: dict) -> None:
    """Raise ConfigError unless metrics.jsonl holds exactly the rounds up to the checkpoint
    before its offset (whole lines, ``round + 1`` of them); what follows is cut on resume."""
    path = os.path.join(run_dir, "metrics.jsonl")
    offset, rnd = state["metrics_offset"], state["round"]

    def bad(what: str) -> ConfigError:
        return ConfigError(f"--resume {run_dir!r}: metrics.jsonl {what}")

    if os.path.islink(path):
        raise bad("is a symbolic link; refusing it")
    if not os.path.isfile(path):
        raise bad("is missing (the checkpoint's rounds cannot be kept)")
    size = os.path.getsize(path)
    if size < offset:
        raise bad(f"is {size:,} bytes, shorter than the {offset:,} the checkpoint recorded "
                  "(cut or replaced after the checkpoint)")
    lines, line, cur = 0, b"", b""  # complete lines, the last of them, the partial one
    with rundir.open_nofollow(path, "rb") as fh:
        left = offset
        while left:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
            parts = chunk.split(b"\n")
            if len(parts) > 1:
                line = cur + parts[0] if len(parts) == 2 else parts[-2]
                cur = parts[-1]
                lines += len(parts) - 1
            elif len(cur) > 1 << 26:
                raise bad("holds a line longer than 64 MiB (not written by this package)")
            else:
                cur += chunk
    if cur:
        raise bad(f"offset {offset:,} from the checkpoint is not at a line boundary")
    if lines != rnd + 1:
        raise bad(f"holds {lines} rounds before the checkpoint's offset; the checkpoint is "
                  f"after round {rnd} (expects {rnd + 1})")
    try:
        rec = json.loads(line)
        ok = isinstance(rec, dict) and rec.get("round") == rnd
    except ValueError:
        ok = False
    if not ok:
        raise bad(f"line {lines} is not the record of round {rnd}")


def finished(state: dict, cfg: dict) -> str | None:
    """Return the stop rule a checkpointed run already meets under ``cfg`` (the same rules,
    in the same order, as ``RoundBook.should_stop``), or None if it can go on."""
    r, book = cfg["run"], state["book"]
    window = book["window"]
    if window and len(window) == r["target_window"] and \
            sum(window) / len(window) >= r["target_return"]:
        return "target return reached"
    if r["max_rounds"] and state["round"] >= r["max_rounds"]:
        return "max_rounds reached"
    if r["max_env_steps"] and book["env_steps"] >= r["max_env_steps"]:
        return "max_env_steps reached"
    if r["max_time_s"] and state["time_s"] >= r["max_time_s"]:
        return "max_time_s reached"
    return None


def config_differences(old: dict, new: dict) -> list[str]:
    """Return the dotted keys whose values differ between two resolved configs."""
    diffs = []
    for section, body in old.items():
        for key, value in body.items():
            if new.get(section, {}).get(key) != value:
                diffs.append(f"{section}.{key}")
    return diffs
