"""The ``nigt-hpc`` command (also ``python -m nigt_hpc``).

Exit status: 0 done; 2 bad input, with one ``error:`` line on stderr naming the field and no
traceback; 1 for a failure while running, after which the whole MPI job is aborted so no
rank is left hanging.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from . import __version__
from .config import ConfigError


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become ConfigError (one ``error:`` line, status 2)."""

    def error(self, message):
        raise ConfigError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every subcommand."""
    p = _Parser(prog="nigt-hpc", description="Distributed policy-gradient RL: Rennala/Malenia "
                "NIGT and baselines over MPI, with numba kernels.")
    p.add_argument("--version", action="version", version=f"nigt_hpc {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, required=True,
                           metavar="COMMAND")

    t = sub.add_parser("train", help="train (under mpiexec -n N: N ranks)")
    t.add_argument("config", nargs="?", help="TOML config; without it, the built-in "
                   "CartPole-v1 default")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set algo.M=50 (repeatable)")
    t.add_argument("--out", help="run directory (default: run.out, else runs/<timestamp>)")
    t.add_argument("--force", action="store_true",
                   help="reuse a non-empty run directory, replacing its run files")
    t.add_argument("--resume", metavar="RUN_DIR",
                   help="continue RUN_DIR from its checkpoint, under its own config.toml")
    t.add_argument("--quiet", action="store_true", help="no progress or summary lines")

    m = sub.add_parser("simulate", help="the same algorithms on a virtual clock, one process")
    m.add_argument("config", nargs="?")
    m.add_argument("--workers", type=int, help="number of virtual workers (sim.workers)")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    m.add_argument("--out")
    m.add_argument("--force", action="store_true")
    m.add_argument("--quiet", action="store_true")

    c = sub.add_parser("check", help="validate a config and print it resolved")
    c.add_argument("config", nargs="?")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    r = sub.add_parser("report", help="summary and per-rank timer table of run directories")
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    r.add_argument("--plot", action="store_true",
                   help="write plot_return.png and plot_timers.png into each run directory; "
                   "with several RUN_DIRs also one figure comparing them")
    r.add_argument("--out", metavar="FILE", help="with --plot: the comparison figure's "
                   "path (.png; default plot_compare.png in the first RUN_DIR)")
    r.add_argument("--scaling", metavar="OUT_DIR",
                   help="treat RUN_DIRs as one scaling study; write scaling.csv and PNGs "
                   "into OUT_DIR")

    e = sub.add_parser("eval", help="evaluation episodes of the policy a run delivered")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    g = e.add_mutually_exclusive_group()
    g.add_argument("--deterministic", dest="deterministic", action="store_true", default=True,
                   help="the most likely action (argmax, or the squashed mean; default)")
    g.add_argument("--stochastic", dest="deterministic", action="store_false",
                   help="sample actions as in training")
    e.add_argument("--seed", type=int, default=0, help="first episode's env seed")
    e.add_argument("--worker", type=int, default=0,
                   help="whose environment, for heterogeneous runs (default 0)")
    e.add_argument("--json", metavar="FILE", help="also write the statistics as JSON")
    e.add_argument("--video", metavar="DIR", help="record every episode as an MP4 in DIR "
                   "(needs nigt_hpc[video]; MuJoCo renders headless with EGL or OSMesa)")

    b = sub.add_parser("bench", help="micro-benchmarks with a same-run reference")
    b.add_argument("what", choices=["kernels", "envs", "comm"])
    b.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    b.add_argument("--repeat", type=int, default=5, help="repetitions (median is reported)")
    return p


def _train(args) -> int:
    import mpi4py

    mpi4py.rc.thread_level = "funneled"  # nothing here calls MPI from a second thread
    from mpi4py import MPI

    from . import config, run

    comm = MPI.COMM_WORLD
    err, cfg = None, None
    try:
        if args.resume and (args.out or args.force):
            raise ConfigError("--resume continues a run in place: it takes no --out or --force")
        if args.resume:
            cfg = run.resolve_resume(args.resume, args.config, args.set)
        else:
            cfg = config.load(args.config, args.set)
    except ConfigError as e:
        err = str(e)
    err = run.agree(comm, err)
    if err is not None:
        if comm.Get_rank() == 0:
            print(f"error: {err}", file=sys.stderr)
        return 2
    return run.train(cfg, comm, out=args.out, force=args.force, quiet=args.quiet,
                     resume=args.resume)


def _simulate(args) -> int:
    from . import config, run

    sets = list(args.set)
    if args.workers is not None:
        sets.append(f"sim.workers={args.workers}")
    # Without a config file the built-in preset has no time model, and a virtual clock
    # without one stands still.  sqrt (h_i = sqrt(i)) is the paper's heterogeneous compute
    # model (scenarios 1b and 2): the case the asynchronous rules are built for.  A --set of
    # delays.compute comes later in the list, so it still wins.
    default_model = args.config is None and not any(
        s.split("=", 1)[0].strip() == "delays.compute" for s in args.set)
    if default_model:
        sets.insert(0, "delays.compute=sqrt")
    cfg = config.load(args.config, sets)
    if default_model and not args.quiet:
        print("nigt-hpc simulate: no config file, so the built-in preset with delays.compute = "
              "'sqrt' (worker i takes sqrt(i) virtual s per gradient); set delays.compute "
              "to choose another", flush=True)
    return run.simulate(cfg, out=args.out, force=args.force, quiet=args.quiet)


def _check(args) -> int:
    from . import config, run

    cfg = config.load(args.config, args.set)
    env, info, spec = run.build(cfg, 0)
    env.close()
    print(config.dumps(cfg, {"d": spec.n_params}), end="")
    return 0


def _report(args) -> int:
    from . import report

    return report.main(args.run_dirs, plot=args.plot, scaling_out=args.scaling, out=args.out)


def _eval(args) -> int:
    import json

    from . import trained

    if args.episodes < 1:
        raise ConfigError(f"--episodes {args.episodes}: must be >= 1")
    if args.worker < 0:
        raise ConfigError(f"--worker {args.worker}: must be >= 0")
    if not os.path.exists(args.run_dir):
        raise ConfigError(f"{args.run_dir!r}: no such run directory")
    policy = trained.load(args.run_dir)
    env, gl = None, None
    if args.video is not None:
        from . import video

        video.check_extra()
        video.check_dir(args.video)
        gl = video.select_gl(policy.env_id)  # before anything imports mujoco
        env = trained.make_eval_env(policy, args.worker, video_dir=args.video)
    try:
        stats = trained.evaluate(policy, args.episodes, args.deterministic, args.seed,
                                 args.worker, env=env)
    finally:
        if env is not None:
            env.close()  # writes the last episode's video
    kind = "deterministic" if args.deterministic else "stochastic"
    print(f"{policy.env_id}: {stats['episodes']} {kind} episodes from seed {args.seed}: "
          f"mean return {stats['mean_return']:.2f} (std {stats['std_return']:.2f}, "
          f"min {stats['min_return']:.2f}, max {stats['max_return']:.2f}), mean length "
          f"{stats['mean_length']:.1f}")
    if args.video is not None:
        names = [f"{video.prefix(policy.env_id, args.worker)}-episode-{i}.mp4"
                 for i in range(args.episodes)]
        # the backend was chosen for any env that might use MuJoCo; name it if one did
        mj = f"; MuJoCo rendered with MUJOCO_GL={gl}" if gl and "mujoco" in sys.modules else ""
        sizes = [os.path.getsize(os.path.join(args.video, n)) for n in names
                 if os.path.isfile(os.path.join(args.video, n))]
        print(f"{len(sizes)} videos in {os.path.join(args.video, '')} ({names[0]} ...; "
              f"{sum(sizes) / 1e6:.2f} MB{mj})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(stats, fh, indent=1)
            fh.write("\n")
    return 0


def _bench(args) -> int:
    from . import bench

    return bench.main(args.what, args.json, args.repeat)


def _fatal(exc: BaseException, code: int = 1) -> None:
    """Report an unexpected failure naming the rank, then end the whole MPI job."""
    rank, size, mpi = 0, 1, None
    if "mpi4py.MPI" in sys.modules:
        mpi = sys.modules["mpi4py.MPI"]
        if mpi.Is_initialized() and not mpi.Is_finalized():
            rank, size = mpi.COMM_WORLD.Get_rank(), mpi.COMM_WORLD.Get_size()
    from . import rundir

    rundir.abandon()  # a run that wrote nothing yet leaves no directory behind
    if isinstance(exc, SystemExit):  # sys.exit() inside an env or callback: never success
        what = f"SystemExit({exc.code!r}) was raised while running (by the environment?)"
    elif isinstance(exc, KeyboardInterrupt):
        what = "KeyboardInterrupt was raised while running"
    else:
        what = f"{type(exc).__name__}: {exc}"
    # The one line first: MPI_Abort can end the job before the launcher has forwarded
    # everything a rank wrote, so the cause must not sit behind a long traceback.
    print(f"error: rank {rank}: {what}", file=sys.stderr, flush=True)
    if not isinstance(exc, (SystemExit, KeyboardInterrupt)):
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.flush()
    if mpi is not None and size > 1:
        time.sleep(0.5)  # let the launcher forward this rank's output before the abort
        mpi.COMM_WORLD.Abort(code)
    os._exit(code)


def _abandon() -> None:
    if "nigt_hpc.rundir" in sys.modules:
        sys.modules["nigt_hpc.rundir"].abandon()


def main(argv: list[str] | None = None) -> None:
    """Run the command line; exit with its status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        if not argv:  # list the commands, then the one error line
            parser.print_help()
            sys.stdout.flush()
            raise ConfigError("nigt-hpc: choose a COMMAND (train, simulate, check, report, "
                              "eval, bench); nigt-hpc COMMAND --help for its options")
        args = parser.parse_args(argv)
        code = {"train": _train, "simulate": _simulate, "check": _check,
                "report": _report, "eval": _eval, "bench": _bench}[args.command](args)
    except ConfigError as e:
        _abandon()
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt as e:  # a real Ctrl-C before the stop handlers are installed
        _fatal(e, 130)
    except SystemExit as e:
        if e.code in (0, None) and argv_is_info(argv):
            raise  # --help / --version
        _fatal(e, e.code if isinstance(e.code, int) and e.code else 1)
    except BaseException as e:  # noqa: BLE001 - any failure must end every rank, not hang them
        _fatal(e)
    sys.stdout.flush()
    sys.exit(code)


def argv_is_info(argv: list[str] | None) -> bool:
    """Return whether the command line only asks for help or the version."""
    words = sys.argv[1:] if argv is None else argv
    return any(w in ("-h", "--help", "--version") for w in words)
