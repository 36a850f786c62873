"""Wiring for ``nigt-hpc train``: validation agreed by all ranks, the run directory, warm-up,
the engine, and the files it leaves behind."""

from __future__ import annotations

import os
import platform
import sys
import time
import uuid

import numpy as np

from . import config, envs, kernels, limits, logs, metrics, registry, rundir, trained
from .config import ConfigError
from .metrics import RunOutput, versions, write_json
from .policy import make_spec
from .rollout import make_sampler
from .timers import Timers
from .warmup import compile_notice, compiled_notice

# and what logs.clear removes (metrics.csv, tb/)
RUN_FILES = ("config.toml", "metrics.jsonl", "profile.json", "checkpoint.npz", "trace.json",
             "theta.npy", "policy.npz", "best.npz")
DEFAULT_RUNS = "runs"


def check_rank_count(cfg: dict, n_ranks: int) -> None:
    """Raise ConfigError if ``algo.name`` cannot use ``n_ranks`` ranks."""
    if registry.of(cfg).engine == "server" and n_ranks < 2:
        raise ConfigError(f"algo.name = {cfg['algo']['name']!r} needs at least 2 ranks (rank 0 "
                          "is the parameter server): run it under mpiexec -n N with N >= 2")


def n_workers(cfg: dict, n_ranks: int) -> int:
    """Return how many ranks sample (all but the AFedPG server)."""
    return n_ranks - 1 if registry.of(cfg).engine == "server" else n_ranks


def build(cfg: dict, worker: int):
    """Return (env, env description, PolicySpec) for one global worker; ConfigError if bad."""
    logs.check_writers(cfg)  # a missing writer package is a config error, before any file
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
    rundir.check_path(path, "run directory")
    return path


def check_run_dir(path: str, force: bool) -> None:
    """Raise ConfigError if ``path`` holds anything (a stale lock aside) and ``force`` is not
    given."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"run directory {path!r} exists and is not a directory")
    if os.path.isdir(path) and any(map(rundir.is_run_file, os.listdir(path))) and not force:
        raise ConfigError(f"run directory {path!r} already exists and is not empty; "
                          "choose another --out, or pass --force to overwrite its run files")


def prepare_run_dir(path: str, force: bool) -> None:
    """Create ``path``; with ``force`` remove only this package's own run files in it."""
    os.makedirs(path, exist_ok=True)
    if force:
        for name in os.listdir(path):
            if name in RUN_FILES or (name.endswith(".png") and name.startswith("plot_")):
                os.remove(os.path.join(path, name))
        logs.clear(path)


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

    rundir.check_path(run_dir, "--resume")
    own = os.path.join(run_dir, "config.toml")
    if os.path.islink(own):
        raise ConfigError(f"--resume {run_dir!r}: config.toml is a symbolic link; refusing it")
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


def claim_run_dir(cfg: dict, out: str | None, force: bool, resume: str | None, ranks: int,
                  d: int, obs_dim: int | None = None) -> tuple:
    """Return (run_dir, checkpoint or None, lock, run id, finished message or None), with
    the run directory locked for this job; on rank 0, before anything is written.

    A resume is validated here in full (run id, checkpoint structure, metrics.jsonl); a
    run already finished under the new limits holds the lock only to read it.
    """
    from . import checkpoint

    if resume:
        lock = rundir.RunLock(resume).acquire()
        try:
            arrays, state = checkpoint.load(resume)
            run_id = config.load_meta(os.path.join(resume, "config.toml")).get("run_id")
            checkpoint.validate(arrays, state, algo=cfg["algo"]["name"], ranks=ranks, d=d,
                                run_id=run_id, window=cfg["run"]["target_window"],
                                run_dir=resume, obs_dim=obs_dim)
            checkpoint.check_metrics(resume, state)
        except BaseException:
            lock.release()
            raise
        done = checkpoint.finished(state, cfg)
        if done:
            lock.release()
            done = (f"nigt-hpc train: {resume} is already finished ({done} after round "
                    f"{state['round']}); nothing to do: raise that limit to continue")
        return resume, (arrays, state), lock, run_id, done
    run_dir = resolve_run_dir(cfg, out)
    check_run_dir(run_dir, force)
    lock = rundir.RunLock(run_dir, create=True).acquire()
    try:  # again under the lock: a job that ended meanwhile may have filled it
        check_run_dir(run_dir, force)
    except ConfigError:
        lock.release(abandoned=True)
        raise
    return run_dir, None, lock, uuid.uuid4().hex, None


def train(cfg: dict, comm, out: str | None = None, force: bool = False,
          quiet: bool = False, resume: str | None = None, raise_errors: bool = False,
          result: dict | None = None) -> int:
    """Run ``nigt-hpc train`` on every rank of ``comm``; return the exit status.

    ``raise_errors``: a bad input raises ConfigError (same message, every rank) instead of
    printing one line and returning 2 (the Python API).  ``result`` receives the run
    directory and the summary.
    """
    from .signals import StopFlag

    rank, size = comm.Get_rank(), comm.Get_size()
    server = registry.of(cfg).engine == "server"
    worker = rank - 1 if server else rank  # AFedPG: rank 0 is the server
    err = None
    env = info = spec = None
    hosts = comm.allgather(platform.node())
    try:
        check_rank_count(cfg, size)
        env, info, spec = build(cfg, max(worker, 0))
        limits.check_memory(cfg, spec.sizes, spec.act_dim, spec.n_params,
                            n_workers(cfg, size), procs=hosts.count(hosts[rank]))
    except ConfigError as e:
        err = str(e)
    err = agree(comm, err)
    run_dir, ckpt, lock, run_id, done = None, None, None, None, None
    if err is None and rank == 0:
        try:
            run_dir, ckpt, lock, run_id, done = claim_run_dir(
                cfg, out, force, resume, size, spec.n_params,
                int(spec.sizes[0]) if cfg["policy"]["obs_norm"] else None)
        except ConfigError as e:
            err = str(e)
    err, run_dir, ckpt, done = comm.bcast((err, run_dir, ckpt, done) if rank == 0 else None,
                                          root=0)
    if err is not None or done is not None:
        if env is not None:
            env.close()
        if result is not None:
            result.update(run_dir=run_dir, summary=None, finished_already=done)
        if err is not None and raise_errors:
            raise ConfigError(err)
        if rank == 0 and (err is not None or not quiet):
            print(done if err is None else f"error: {err}", file=sys.stderr if err else
                  sys.stdout, flush=True)
        return 2 if err is not None else 0

    from . import checkpoint
    from .engine.afedpg import AFedPGEngine
    from .engine.mpi import MPIEngine

    stop_flag = StopFlag().install()
    try:  # the handlers are given back however the run ends (a notebook keeps its Ctrl-C)
        timers = Timers()
        cold = rank == 0 and not quiet and compile_notice()
        timers.extra["compile_s"] = warmup_node_ordered(comm)
        if rank == 0 and not quiet:
            compiled_notice(cold, timers.extra["compile_s"])
        theta0 = spec.init_theta(cfg["policy"]["init_seed"] if cfg["policy"]["init_seed"] >= 0
                                 else cfg["run"]["seed"], cfg["policy"]["init_log_std"])
        output = None
        if rank == 0:
            meta = {"run_id": run_id, "ranks": size, "workers": n_workers(cfg, size),
                    "d": len(theta0), **versions()}
            if resume:
                meta["resumed_from_round"] = ckpt[1]["round"]

            def begin() -> None:  # at the first round: a run failing before it leaves no files
                if resume:
                    metrics.truncate(os.path.join(run_dir, "metrics.jsonl"),
                                     ckpt[1]["metrics_offset"])
                else:
                    prepare_run_dir(run_dir, force)
                rundir.write_text(os.path.join(run_dir, "config.toml"), config.dumps(cfg, meta))
                if evaluator is not None:
                    evaluator.begin_writing()

            output = RunOutput(run_dir, quiet, cfg["run"]["progress_every_s"], before_open=begin,
                               cfg=cfg, resume_round=ckpt[1]["round"] if resume else None)
            if not quiet:
                what = f"resuming after round {ckpt[1]['round']}" if resume else "run directory"
                print(f"nigt-hpc train: {cfg['algo']['name']} on {cfg['env']['id']}, {size} "
                      f"rank(s), d = {len(theta0)}, {what} {run_dir}", flush=True)

        def on_checkpoint(arrays: dict, state: dict) -> None:
            state["metrics_offset"] = output.flush()
            state["run_id"] = run_id
            checkpoint.save(run_dir, arrays, state)

        sampler = None
        if worker >= 0:
            sampler = make_sampler(cfg, env, spec, info, worker)
        kw = {"on_round": output.on_round if output else None, "stop_flag": stop_flag,
              "on_checkpoint": on_checkpoint if rank == 0 else None}
        if server:  # the AFedPG server samples nothing but keeps the observation statistics
            engine = AFedPGEngine(cfg, comm, sampler, theta0, timers, obs_dim=info["obs_dim"],
                                  **kw)
        else:
            engine = MPIEngine(cfg, comm, sampler, theta0, timers, **kw)
        if rank == 0:  # only rank 0 writes the metrics record
            engine.book.std_fn = logs.policy_std_fn(
                spec, None if sampler is None else sampler.last_inputs)
        if ckpt is not None:
            engine.restore(*ckpt)
        evaluator = None
        if rank == 0 and trained.Evaluator.wanted(cfg):
            evaluator = trained.Evaluator(spec, cfg, n_workers(cfg, size), run_dir, resume)
            engine.evaluate = evaluator.periodic
        if output is not None:
            # which control plane ran (Rennala: rma or p2p, by mpi.control or its probe); the
            # config.toml that records it is written at the first round
            meta["control"] = getattr(engine, "control_name", None) or "parameter server"
            if not quiet and getattr(engine, "control_probe_s", None) is not None:
                print(f"      control plane: {engine.control_name} (probe: a Fetch_and_op took "
                      f"{1e3 * engine.control_probe_s:.2f} ms while rank 0 computed)", flush=True)
            output.idle_fn = lambda: ((timers.seconds["idle"] + timers.seconds["wait"])
                                      / max(1e-9, time.perf_counter() - engine.t_start))
        summary = engine.run()
        profiles = comm.gather({"rank": rank, **timers.as_dict(),
                                "max_rss_mb": metrics.max_rss_mb()}, root=0)
        traces = comm.gather(summary.pop("trace", None), root=0)
        if rank == 0:
            output.close()
            write_json(os.path.join(run_dir, "profile.json"),
                       {"ranks": profiles, "wall_s": summary["wall_s"]})
            rundir.write_atomic(os.path.join(run_dir, "theta.npy"),
                                lambda fh: np.save(fh, summary["theta"]))
            deliver(run_dir, engine.opt, spec, cfg, summary, n_workers(cfg, size), quiet,
                    engine.norm, evaluator)
            if cfg["run"]["trace"]:
                write_json(os.path.join(run_dir, "trace.json"), metrics.trace_document(traces))
            if not quiet:
                before = ckpt[1]["book"]["env_steps"] if ckpt else None
                print(metrics.summary_text(summary, run_dir, profiles, before), flush=True)
            lock.release()
        if evaluator is not None:
            evaluator.close()
        if env is not None:
            env.close()
        if result is not None:
            result.update(run_dir=run_dir, summary={k: v for k, v in summary.items()
                                                    if k != "theta"})
        return stop_flag.exit_status() if summary.get("signalled") else 0
    finally:
        stop_flag.uninstall()

def simulate(cfg: dict, out: str | None = None, force: bool = False,
             quiet: bool = False, result: dict | None = None) -> int:
    """Run ``nigt-hpc simulate``: ``sim.workers`` workers on the virtual clock, one process."""
    from .engine.sim import SimEngine, virtual_speeds
    n = cfg["sim"]["workers"]
    if registry.of(cfg).engine == "server" and cfg["sim"]["time_model"] == "step":
        raise ConfigError(f"sim.time_model = 'step' is not available for "
                          f"{cfg['algo']['name']}; use 'trajectory'")
    built = [build(cfg, w) for w in range(n)]
    spec = built[0][2]
    virtual_speeds(cfg, n, spec.n_params)  # ConfigError before anything is written
    limits.check_memory(cfg, spec.sizes, spec.act_dim, spec.n_params, n, samplers=n)
    run_dir = resolve_run_dir(cfg, out)
    check_run_dir(run_dir, force)
    lock = rundir.RunLock(run_dir, create=True).acquire()
    timers = Timers()
    cold = not quiet and compile_notice()
    timers.extra["compile_s"] = kernels.warmup()
    if not quiet:
        compiled_notice(cold, timers.extra["compile_s"])
    theta0 = spec.init_theta(cfg["policy"]["init_seed"] if cfg["policy"]["init_seed"] >= 0
                             else cfg["run"]["seed"], cfg["policy"]["init_log_std"])
    meta = {"run_id": uuid.uuid4().hex, "engine": "sim", "workers": n, "d": len(theta0),
            **versions()}

    def begin() -> None:  # at the first round: a run failing before it leaves no files
        prepare_run_dir(run_dir, force)
        rundir.write_text(os.path.join(run_dir, "config.toml"), config.dumps(cfg, meta))
        if evaluator is not None:
            evaluator.begin_writing()

    output = RunOutput(run_dir, quiet, cfg["run"]["progress_every_s"], before_open=begin,
                       cfg=cfg)
    if not quiet:
        print(f"nigt-hpc simulate: {cfg['algo']['name']} on {cfg['env']['id']}, {n} virtual "
              f"workers, d = {len(theta0)}, run directory {run_dir}", flush=True)
    samplers = [make_sampler(cfg, env, sp, info, w) for w, (env, info, sp) in enumerate(built)]
    engine = SimEngine(cfg, samplers, theta0, timers, on_round=output.on_round)
    engine.book.std_fn = logs.policy_std_fn(spec, samplers[0].last_inputs)
    evaluator = None
    if trained.Evaluator.wanted(cfg):
        evaluator = trained.Evaluator(spec, cfg, n, run_dir)
        engine.evaluate = evaluator.periodic
    summary = engine.run()
    output.close()
    write_json(os.path.join(run_dir, "profile.json"),
               {"ranks": [{"rank": 0, **timers.as_dict(), "max_rss_mb": metrics.max_rss_mb()}],
                "wall_s": summary["wall_s"],
                "virtual_s": summary["virtual_s"]})
    rundir.write_atomic(os.path.join(run_dir, "theta.npy"),
                        lambda fh: np.save(fh, summary["theta"]))
    deliver(run_dir, engine.opt, spec, cfg, summary, n, quiet, engine.norm, evaluator)
    if evaluator is not None:
        evaluator.close()
    lock.release()
    if not quiet:
        print(f"done: {summary['stop_reason']} after {summary['rounds']} rounds, "
              f"{summary['virtual_s']:.4g} virtual s, {summary['env_steps']:,} env steps in "
              f"{summary['wall_s']:.2f} s of real time\n      run directory: {run_dir}",
              flush=True)
    for env, _, _ in built:
        env.close()
    if result is not None:
        result.update(run_dir=run_dir, summary={k: v for k, v in summary.items()
                                                if k != "theta"})
    return 0


def deliver(run_dir: str, opt, spec, cfg: dict, summary: dict, workers: int,
            quiet: bool, norm=None, evaluator=None) -> None:
    """Write policy.npz: the better of theta and theta_tilde by evaluation (trained.choose),
    or with ``run.deliver = "best"`` the best of those and the best periodically evaluated
    point (``evaluator.best``), with the observation statistics that point acts with."""
    if summary.get("signalled"):  # a stop signal wants the job gone: no evaluation now
        theta, state = np.array(opt.theta), None if norm is None else norm.state()
        choice = {"point": "theta", "evaluated": False}
    else:
        theta, state, choice = trained.choose(opt, spec, cfg, workers, norm, evaluator)
    meta = {"rounds": summary["rounds"], "env_steps": summary["env_steps"],
            "return_window": summary["return_window"], "workers": workers,
            "versions": versions(), **choice}
    trained.save(run_dir, theta, spec, cfg, meta, state)
    if not quiet and choice["evaluated"]:
        others = ", ".join(f"{k} {v:.1f}" for k, v in choice["eval_returns"].items())
        what = choice["point"]
        if "best" in choice:
            b = choice["best"]
            what += (f"; the best periodic evaluation was {b['eval_return']:.1f} at round "
                     f"{b['round']}, scored again on fresh episodes")
        print(f"      delivered policy: {what} (deterministic evaluation, "
              f"{choice['eval_episodes']} episodes: {others}) -> {run_dir}/policy.npz",
              flush=True)
