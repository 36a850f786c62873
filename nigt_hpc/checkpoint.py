"""Checkpoints: one ``checkpoint.npz`` per run directory, written atomically by rank 0.

It holds the outer-step arrays, every counter the engines keep, each rank's sampler state
(its next episode index: every episode's env seed and policy noise derive from
``(run.seed, worker, episode)``, so that index *is* the generator state), and the byte
offset of ``metrics.jsonl`` at the checkpoint, so a resumed run neither misses nor repeats
a round.  Written to a temporary file, then ``os.replace``: a kill mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .config import ConfigError

FILE = "checkpoint.npz"
FORMAT = 1
# config keys a resumed run may change: limits and reporting, nothing that alters the maths
RESUMABLE_KEYS = {"run.max_rounds", "run.max_env_steps", "run.max_time_s",
                  "run.target_return", "run.checkpoint_every_s", "run.progress_every_s",
                  "run.out"}


def save(run_dir: str, arrays: dict[str, np.ndarray], state: dict) -> str:
    """Write the checkpoint atomically; return its path."""
    path = os.path.join(run_dir, FILE)
    tmp = path + ".tmp.npz"
    payload = {f"a_{k}": np.asarray(v) for k, v in arrays.items()}
    payload["state_json"] = np.array(json.dumps({"format": FORMAT, **state}))
    with open(tmp, "wb") as fh:
        np.savez(fh, **payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load(run_dir: str) -> tuple[dict[str, np.ndarray], dict]:
    """Return (arrays, state) of ``run_dir``'s checkpoint; ConfigError if missing or corrupt."""
    path = os.path.join(run_dir, FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"--resume {run_dir!r}: no {FILE} in it (was a checkpoint written?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k[2:]: z[k] for k in z.files if k.startswith("a_")}
            state = json.loads(str(z["state_json"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise ConfigError(f"--resume {run_dir!r}: {FILE} is corrupt ({type(e).__name__})") \
            from None
    if state.get("format") != FORMAT:
        raise ConfigError(f"--resume {run_dir!r}: {FILE} has format {state.get('format')!r}, "
                          f"this version reads {FORMAT}")
    return arrays, state


def check_compatible(state: dict, arrays: dict, ranks: int, d: int, algo: str,
                     run_dir: str) -> None:
    """Raise ConfigError unless the checkpoint fits this job (rank count, d, algorithm)."""
    if state.get("ranks") != ranks:
        raise ConfigError(f"--resume {run_dir!r}: the checkpoint was written by "
                          f"{state.get('ranks')} ranks; run it with mpiexec -n "
                          f"{state.get('ranks')} (this job has {ranks})")
    if state.get("algo") != algo:
        raise ConfigError(f"--resume {run_dir!r}: checkpoint of algo.name = "
                          f"{state.get('algo')!r}, config says {algo!r}")
    theta = arrays.get("theta")
    if theta is None or theta.shape != (d,):
        raise ConfigError(f"--resume {run_dir!r}: checkpoint theta does not match the "
                          f"policy (d = {d})")


def config_differences(old: dict, new: dict) -> list[str]:
    """Return the dotted keys whose values differ between two resolved configs."""
    diffs = []
    for section, body in old.items():
        for key, value in body.items():
            if new.get(section, {}).get(key) != value:
                diffs.append(f"{section}.{key}")
    return diffs
