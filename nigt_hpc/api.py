"""The Python API: ``nigt_hpc.train`` and ``nigt_hpc.simulate`` return a result instead of
an exit status, and raise :class:`~nigt_hpc.config.ConfigError` (the one-line message the
command line prints) for bad input.  ``train`` runs on every rank of ``comm``: in a notebook
that is one rank; under ``mpiexec -n N python script.py`` every rank calls it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from . import config as _config


@dataclass
class RunResult:
    """What a run left: its directory, exit status, last metrics record and summary."""

    run_dir: str | None
    status: int
    summary: dict | None = None
    metrics: dict | None = None
    finished_already: str | None = None
    _policy: object = field(default=None, repr=False)

    @property
    def policy(self):
        """Return the delivered policy (``RUN_DIR/policy.npz``), loaded on first use."""
        if self._policy is None:
            from .trained import load

            self._policy = load(self.run_dir)
        return self._policy


def resolve(cfg=None, sets: list[str] | tuple = ()) -> dict:
    """Return a resolved config from None (the built-in preset), a TOML path or a nested
    dict laid out like the TOML file, then ``sets`` (``"section.key=value"`` strings)."""
    if cfg is None or isinstance(cfg, (str, os.PathLike)):
        return _config.load(None if cfg is None else os.fspath(cfg), list(sets))
    if not isinstance(cfg, dict):
        raise _config.ConfigError(f"config must be a dict, a TOML path or None, not "
                                  f"{type(cfg).__name__}")
    out = _config.defaults()
    _config.merge(out, cfg)
    for item in sets:
        _config.merge(out, _config.parse_set(item))
    _config.check_consistency(out)
    return out


def _last_record(run_dir: str | None) -> dict | None:
    path = os.path.join(run_dir, "metrics.jsonl") if run_dir else ""
    if not path or not os.path.isfile(path):
        return None
    last = None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                last = line
    return json.loads(last) if last else None


def train(config=None, *, sets=(), comm=None, out: str | None = None, force: bool = False,
          resume: str | None = None, quiet: bool = True) -> RunResult:
    """Train on every rank of ``comm`` (default: ``MPI.COMM_WORLD``); return a RunResult.

    ``config`` is None (the built-in CartPole-v1 preset), a TOML path, or a dict such as
    ``{"env": {"id": "Hopper-v4"}, "algo": {"name": "rennala_nigt"}}``; ``sets`` are
    ``--set``-style overrides.  Raises ConfigError for bad input, on every rank.
    """
    from mpi4py import MPI

    from . import run

    comm = MPI.COMM_WORLD if comm is None else comm
    err, cfg = None, None
    try:
        if resume:
            if config is not None and not isinstance(config, (str, os.PathLike)):
                raise _config.ConfigError("resume=...: give the config as a TOML path or None "
                                          "(the run's own config.toml is used)")
            cfg = run.resolve_resume(resume, None if config is None else os.fspath(config),
                                     list(sets))
        else:
            cfg = resolve(config, sets)
    except _config.ConfigError as e:
        err = str(e)
    err = run.agree(comm, err)
    if err is not None:
        raise _config.ConfigError(err)
    info: dict = {}
    status = run.train(cfg, comm, out=out, force=force, quiet=quiet, resume=resume,
                       raise_errors=True, result=info)
    run_dir = info.get("run_dir")
    return RunResult(run_dir, status, info.get("summary"),
                     _last_record(run_dir) if comm.Get_rank() == 0 else None,
                     info.get("finished_already"))


def simulate(config=None, *, sets=(), workers: int | None = None, out: str | None = None,
             force: bool = False, quiet: bool = True) -> RunResult:
    """Run the algorithms on the virtual clock in this process; return a RunResult."""
    from . import run

    sets = list(sets) + ([f"sim.workers={workers}"] if workers is not None else [])
    if config is None and not any(x.split("=", 1)[0].strip() == "delays.compute"
                                  for x in sets):
        sets.insert(0, "delays.compute=sqrt")  # as the command line: the preset has no model
    cfg = resolve(config, sets)
    info: dict = {}
    status = run.simulate(cfg, out=out, force=force, quiet=quiet, result=info)
    return RunResult(info.get("run_dir"), status, info.get("summary"),
                     _last_record(info.get("run_dir")))
