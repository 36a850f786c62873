"""Helpers for tests that run on real ranks: agree before asserting (PITFALLS P2)."""

from nigt_hpc import config, registry, run
from nigt_hpc.engine.afedpg import AFedPGEngine
from nigt_hpc.engine.mpi import MPIEngine
from nigt_hpc.rollout import make_sampler
from nigt_hpc.timers import Timers


def all_ok(comm, ok: bool) -> bool:
    """Return True on every rank iff ``ok`` holds on every rank."""
    from mpi4py import MPI

    return bool(comm.allreduce(int(bool(ok)), op=MPI.MIN))


def engine_for(comm, sets, collect=None):
    """Return (engine, timers) for the config ``sets`` on ``comm``."""
    cfg = config.load(None, list(sets))
    afedpg = registry.of(cfg).engine == "server"
    worker = comm.Get_rank() - 1 if afedpg else comm.Get_rank()
    env, info, spec = run.build(cfg, max(worker, 0))
    sampler = None
    if worker >= 0:
        sampler = make_sampler(cfg, env, spec, info, worker)
    theta0 = spec.init_theta(cfg["run"]["seed"], cfg["policy"]["init_log_std"])
    timers = Timers()
    if afedpg:
        return AFedPGEngine(cfg, comm, sampler, theta0, timers, on_round=collect,
                            obs_dim=info["obs_dim"]), timers
    return MPIEngine(cfg, comm, sampler, theta0, timers, on_round=collect), timers


def ones_everywhere(eng):
    """Make every gradient the vector of ones; return the list of the g the step gets."""
    def ones(theta, traj, weight, out, *args):
        out += weight

    eng.sampler.add_grad = ones
    eng.sampler.add_grad_is = lambda theta, traj, clip, weight, out: ones(theta, traj,
                                                                         weight, out)
    seen = []
    step, init = eng.opt.step, eng.opt.initialise
    eng.opt.step = lambda g: (seen.append(g.copy()), step(g))
    eng.opt.initialise = lambda g: (seen.append(g.copy()), init(g))
    return seen
