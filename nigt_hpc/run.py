"""Wiring for ``nigt-hpc train``: validation agreed by all ranks, the run directory, warm-up,
the engine, and the files it leaves behind."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

import numpy as np

from . import __version__, config, envs, kernels
from .config import ConfigError
from .policy import make_spec
from .rollout import make_sampler
from .timers import Timers

RUN_FILES = ("config.toml", "metrics.jsonl", "profile.json", "checkpoint.npz", "trace.json",
             "theta.npy")
DEFAULT_RUNS = "runs"


def max_rss_mb() -> float:
    """Return this process's peak resident set size in MiB (Linux reports KiB)."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / 2**20


def check_rank_count(cfg: dict, n_ranks: int) -> None:
    """Raise ConfigError if ``algo.name`` cannot use ``n_ranks`` ranks."""
    if cfg["algo"]["name"] == "afedpg" and n_ranks < 2:
        raise ConfigError("algo.name = 'afedpg' needs at least 2 ranks (rank 0 is the "
                          "parameter server): run it under mpiexec -n N with N >= 2")


def n_workers(cfg: dict, n_ranks: int) -> int:
    """Return how many ranks sample (all but the AFedPG server)."""
    return n_ranks - 1 if cfg["algo"]["name"] == "afedpg" else n_ranks


def build(cfg: dict, worker: int):
    """Return (env, env description, PolicySpec) for one global worker; ConfigError if bad."""
    env = envs.make_env(cfg, worker)
    info = envs.describe(env)
    spec = make_spec(cfg, info)
    return env, info, spec


def resolve_run_dir(cfg: dict, out: str | None) -> str:
    """Return the run directory: --out, then run.out, then runs/<time>-<algo>-<env>."""
    path = out or cfg["run"]["out"]
    if not path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        env_tag = cfg["env"]["id"].split(":")[-1].replace("/", "_")
        path = os.path.join(DEFAULT_RUNS, f"{stamp}-{cfg['algo']['name']}-{env_tag}")
    return path


def check_run_dir(path: str, force: bool) -> None:
    """Raise ConfigError if ``path`` holds anything and ``force`` is not given."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"run directory {path!r} exists and is not a directory")
    if os.path.isdir(path) and os.listdir(path) and not force:
        raise ConfigError(f"run directory {path!r} already exists and is not empty; "
                          "choose another --out, or pass --force to overwrite its run files")


def prepare_run_dir(path: str, force: bool) -> None:
    """Create ``path``; with ``force`` remove only this package's own run files in it."""
    os.makedirs(path, exist_ok=True)
    if force:
        for name in os.listdir(path):
            if name in RUN_FILES or (name.endswith(".png") and name.startswith("plot_")):
                os.remove(os.path.join(path, name))


def _git_hash() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict:
    """Return the versions and machine facts a run records for reproducibility."""
    import gymnasium
    import numba
    from mpi4py import MPI

    v = {"nigt_hpc": __version__, "python": platform.python_version(),
         "numpy": np.__version__, "numba": numba.__version__,
         "gymnasium": gymnasium.__version__,
         "mpi": MPI.Get_library_version().splitlines()[0].strip(),
         "machine": platform.machine(), "processor": platform.processor() or "",
         "git": _git_hash()}
    try:
        import mujoco

        v["mujoco"] = mujoco.__version__
    except ImportError:
        pass
    return v


def warmup_node_ordered(comm) -> float:
    """Compile or load every kernel, one rank per node first (PITFALLS N1); return seconds.

    The first rank of each node fills the on-disk cache while the others wait; they then
    load it instead of compiling the same files at the same time.  The wait is an Ibarrier
    tested with short sleeps, so waiting ranks leave the CPU to the one compiling.
    """
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        if node.Get_rank() == 0:
            seconds = kernels.warmup()
            node.Ibarrier().Wait()
        else:
            req = node.Ibarrier()
            while not req.Test():
                time.sleep(0.005)
            seconds = kernels.warmup()
    finally:
        node.Free()
    return seconds


def agree(comm, err: str | None) -> str | None:
    """Return the first error message of any rank (in rank order), or None if all are fine."""
    errs = comm.allgather(err)
    return next((e for e in errs if e is not None), None)


def resolve_resume(run_dir: str, config_path: str | None, sets: list[str]) -> dict:
    """Return the config of a resumed run: the run's own, with only limits changed."""
    from . import checkpoint

    own = os.path.join(run_dir, "config.toml")
    if not os.path.isfile(own):
        raise ConfigError(f"--resume {run_dir!r}: no config.toml in it (not a run directory?)")
    old = config.load(own)
    new = config.load(config_path or own, sets)
    bad = [k for k in checkpoint.config_differences(old, new)
           if k not in checkpoint.RESUMABLE_KEYS]
    if bad:
        raise ConfigError(f"--resume {run_dir!r}: {bad[0]} differs from the run's config.toml; "
                          "a resumed run may change only limits ("
                          + ", ".join(sorted(checkpoint.RESUMABLE_KEYS)) + ")")
    return new


def train(cfg: dict, comm, out: str | None = None, force: bool = False,
          quiet: bool = False, resume: str | None = None) -> int:
    """Run ``nigt-hpc train`` on every rank of ``comm``; return the exit status."""
    from . import checkpoint
    from .engine.afedpg import AFedPGEngine
    from .engine.mpi import MPIEngine
    from .metrics import RunOutput, write_json
    from .signals import StopFlag

    rank, size = comm.Get_rank(), comm.Get_size()
    afedpg = cfg["algo"]["name"] == "afedpg"
    worker = rank - 1 if afedpg else rank  # AFedPG: rank 0 is the server
    err = None
    env = info = spec = None
    try:
        check_rank_count(cfg, size)
        env, info, spec = build(cfg, max(worker, 0))
    except ConfigError as e:
        err = str(e)
    err = agree(comm, err)
    run_dir, ckpt = None, None
    if err is None and rank == 0:
        try:
            if resume:
                run_dir = resume
                arrays, state = checkpoint.load(run_dir)
                checkpoint.check_compatible(state, arrays, size, spec.n_params,
                                            cfg["algo"]["name"], run_dir)
                ckpt = (arrays, state)
            else:
                run_dir = resolve_run_dir(cfg, out)
                check_run_dir(run_dir, force)
        except ConfigError as e:
            err = str(e)
    err, run_dir, ckpt = comm.bcast((err, run_dir, ckpt) if rank == 0 else None, root=0)
    if err is not None:
        if rank == 0:
            print(f"error: {err}", file=sys.stderr)
        return 2

    stop_flag = StopFlag().install()
    timers = Timers()
    timers.extra["compile_s"] = warmup_node_ordered(comm)
    theta0 = spec.init_theta(cfg["policy"]["init_seed"] if cfg["policy"]["init_seed"] >= 0
                             else cfg["run"]["seed"], cfg["policy"]["init_log_std"])
    output = None
    if rank == 0:
        if resume:
            _truncate(os.path.join(run_dir, "metrics.jsonl"), ckpt[1]["metrics_offset"])
        else:
            prepare_run_dir(run_dir, force)
        meta = {"ranks": size, "workers": n_workers(cfg, size), "d": len(theta0),
                **versions()}
        if resume:
            meta["resumed_from_round"] = ckpt[1]["round"]
        with open(os.path.join(run_dir, "config.toml"), "w", encoding="utf-8") as fh:
            fh.write(config.dumps(cfg, meta))
        output = RunOutput(run_dir, quiet, cfg["run"]["progress_every_s"])
        if not quiet:
            what = f"resuming after round {ckpt[1]['round']}" if resume else "run directory"
            print(f"nigt-hpc train: {cfg['algo']['name']} on {cfg['env']['id']}, {size} "
                  f"rank(s), d = {len(theta0)}, {what} {run_dir}", flush=True)

    def on_checkpoint(arrays: dict, state: dict) -> None:
        output.fh.flush()
        state["metrics_offset"] = output.fh.tell()
        checkpoint.save(run_dir, arrays, state)

    sampler = None
    if worker >= 0:
        sampler = make_sampler(cfg, env, spec, info, worker)
    kw = {"on_round": output.on_round if output else None, "stop_flag": stop_flag,
          "on_checkpoint": on_checkpoint if rank == 0 else None}
    cls = AFedPGEngine if afedpg else MPIEngine
    engine = cls(cfg, comm, sampler, theta0, timers, **kw)
    if ckpt is not None:
        engine.restore(*ckpt)
    if output is not None:
        output.idle_fn = lambda: ((timers.seconds["idle"] + timers.seconds["wait"])
                                  / max(1e-9, time.perf_counter() - engine.t_start))
    summary = engine.run()
    profiles = comm.gather({"rank": rank, **timers.as_dict(), "max_rss_mb": max_rss_mb()},
                           root=0)
    traces = comm.gather(summary.pop("trace", None), root=0)
    if rank == 0:
        output.close()
        write_json(os.path.join(run_dir, "profile.json"),
                   {"ranks": profiles, "wall_s": summary["wall_s"]})
        np.save(os.path.join(run_dir, "theta.npy"), summary["theta"])
        if cfg["run"]["trace"]:
            write_json(os.path.join(run_dir, "trace.json"), trace_document(traces))
        if not quiet:
            print(summary_text(summary, run_dir, profiles), flush=True)
    if env is not None:
        env.close()
    return stop_flag.exit_status() if summary.get("signalled") else 0


def simulate(cfg: dict, out: str | None = None, force: bool = False,
             quiet: bool = False) -> int:
    """Run ``nigt-hpc simulate``: ``sim.workers`` workers on the virtual clock, one process."""
    from .engine.sim import SimEngine, virtual_speeds
    from .metrics import RunOutput, write_json

    n = cfg["sim"]["workers"]
    if cfg["algo"]["name"] == "afedpg" and cfg["sim"]["time_model"] == "step":
        raise ConfigError("sim.time_model = 'step' is not available for afedpg; use "
                          "'trajectory'")
    built = [build(cfg, w) for w in range(n)]
    spec = built[0][2]
    virtual_speeds(cfg, n, spec.n_params)  # ConfigError before anything is written
    run_dir = resolve_run_dir(cfg, out)
    check_run_dir(run_dir, force)
    timers = Timers()
    timers.extra["compile_s"] = kernels.warmup()
    theta0 = spec.init_theta(cfg["policy"]["init_seed"] if cfg["policy"]["init_seed"] >= 0
                             else cfg["run"]["seed"], cfg["policy"]["init_log_std"])
    prepare_run_dir(run_dir, force)
    meta = {"engine": "sim", "workers": n, "d": len(theta0), **versions()}
    with open(os.path.join(run_dir, "config.toml"), "w", encoding="utf-8") as fh:
        fh.write(config.dumps(cfg, meta))
    output = RunOutput(run_dir, quiet, cfg["run"]["progress_every_s"])
    if not quiet:
        print(f"nigt-hpc simulate: {cfg['algo']['name']} on {cfg['env']['id']}, {n} virtual "
              f"workers, d = {len(theta0)}, run directory {run_dir}", flush=True)
    samplers = [make_sampler(cfg, env, sp, info, w) for w, (env, info, sp) in enumerate(built)]
    engine = SimEngine(cfg, samplers, theta0, timers, on_round=output.on_round)
    summary = engine.run()
    output.close()
    write_json(os.path.join(run_dir, "profile.json"),
               {"ranks": [{"rank": 0, **timers.as_dict(), "max_rss_mb": max_rss_mb()}],
                "wall_s": summary["wall_s"],
                "virtual_s": summary["virtual_s"]})
    np.save(os.path.join(run_dir, "theta.npy"), summary["theta"])
    if not quiet:
        print(f"done: {summary['stop_reason']} after {summary['rounds']} rounds, "
              f"{summary['virtual_s']:.4g} virtual s, {summary['env_steps']:,} env steps in "
              f"{summary['wall_s']:.2f} s of real time\n      run directory: {run_dir}",
              flush=True)
    for env, _, _ in built:
        env.close()
    return 0


def _truncate(path: str, offset: int) -> None:
    """Cut ``path`` back to ``offset`` bytes: rounds after the checkpoint are redone."""
    with open(path, "r+b") as fh:
        fh.truncate(offset)


def trace_document(traces: list) -> dict:
    """Return a Chrome/Perfetto trace with one track per rank."""
    events = []
    for rank, evs in enumerate(traces):
        events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": rank,
                       "args": {"name": f"rank {rank}"}})
        events.extend(evs or [])
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def summary_text(s: dict, run_dir: str, profiles: list) -> str:
    """Return the final summary printed by rank 0."""
    rate = s["env_steps"] / s["wall_s"] if s["wall_s"] > 0 else 0.0
    win = "-" if s["return_window"] is None else f"{s['return_window']:.1f}"
    compile_s = max(p.get("compile_s", 0.0) for p in profiles)
    return (f"{'stopped' if s.get('signalled') else 'done'}: {s['stop_reason']} after "
            f"{s['rounds']} rounds, {s['env_steps']:,} env "
            f"steps, {s['episodes']:,} episodes in {s['wall_s']:.2f} s of training "
            f"({rate:,.0f} steps/s; kernel warm-up {compile_s:.2f} s excluded)\n"
            f"      mean return of the last episodes: {win}\n"
            f"      run directory: {run_dir}"
            + (f"\n      resume with: nigt-hpc train --resume {run_dir}"
               if s.get("signalled") else ""))
