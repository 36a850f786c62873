"""Rennala's control planes on this MPI: the probe's verdict, exact M, the fast rank's idle.

Run under the MPI to measure (2 or more ranks; the last rank is a 5x straggler):

    mpiexec -n 2 python -m mpi4py jobs/local/control_plane.py --label mpich
    mpiexec --mca osc ucx -n 2 python -m mpi4py jobs/local/control_plane.py --label ompi-ucx

For mpi.control = auto, rma and p2p it trains Rennala NIGT on Pendulum for ``--rounds``
rounds and prints one JSON line per plane (rank 0): which plane ran, whether every round
accepted exactly M, the gradients per worker, and rank 0's idle ('idle' + 'wait' timers, the
Barrier before the Allreduce and every control-plane call) as a fraction of its wall time.
"""

from __future__ import annotations

import argparse
import json
import os

from mpi4py import MPI

from nigt_hpc import config, run
from nigt_hpc.engine.mpi import MPIEngine
from nigt_hpc.engine.planes import probe_passive_progress
from nigt_hpc.rollout import Sampler
from nigt_hpc.timers import Timers


def bench_config(n: int, control: str, rounds: int, M: int, unit: float, factor: float,
                 extra: tuple = ()) -> dict:
    """Return the benchmark's config: n ranks, the last one ``factor`` times slower."""
    speeds = ", ".join(["1.0"] * (n - 1) + [str(factor)])
    return config.load(None, [
        "env.id=Pendulum-v1", "env.horizon=100", "policy.kind=linear", "run.target_return=inf",
        "algo.name=rennala_nigt", f"algo.M={M}", f"algo.M_init={M}",
        f"run.max_rounds={rounds - 1}", "delays.compute=from_list",
        f"delays.compute_list=[{speeds}]", f"delays.compute_unit_s={unit}",
        "mpi.poll_every_steps=16", f"mpi.control={control}", *extra])


def measure(comm, control: str, rounds: int, M: int, unit: float, factor: float) -> dict:
    """Return rank 0's figures of one run with ``mpi.control = control``."""
    n = comm.Get_size()
    cfg = bench_config(n, control, rounds, M, unit, factor)
    rank = comm.Get_rank()
    env, info, spec = run.build(cfg, rank)
    sampler = Sampler(env, spec, cfg["env"]["horizon"], cfg["env"]["gamma"], cfg["run"]["seed"],
                      rank, info["obs_dim"], info["discrete"])
    rows, timers = [], Timers()
    eng = MPIEngine(cfg, comm, sampler, spec.init_theta(0, -0.5), timers, on_round=rows.append)
    s = eng.run()
    sec = timers.seconds
    idles = comm.gather((sec["idle"] / s["wall_s"], sec["wait"] / s["wall_s"]), root=0)
    if rank != 0:
        return {}
    gpw = [sum(r["grads_per_worker"][j] for r in rows) for j in range(n)]
    return {"control": control, "ran": s["control"], "rounds": len(rows),
            "exact_M": all(r["grads"] == M for r in rows), "grads_per_worker": gpw,
            "round_ms": round(1e3 * s["wall_s"] / len(rows), 2),
            "idle_fast": round(sum(idles[0]), 5), "of_which_wait_fast": round(idles[0][1], 5),
            "idle_straggler": round(sum(idles[-1]), 5),
            "load": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default=MPI.Get_library_version().split(",")[0].strip("\0"))
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--M", type=int, default=30)
    ap.add_argument("--unit", type=float, default=1e-4, help="compute_unit_s, s per step")
    ap.add_argument("--factor", type=float, default=5.0, help="the straggler's slowdown")
    ap.add_argument("--planes", default="auto,rma,p2p")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    run.warmup_node_ordered(comm)
    probe = [probe_passive_progress(comm) for _ in range(3)]
    if comm.Get_rank() == 0:
        print(json.dumps({"label": args.label, "probe_ms": [round(1e3 * t, 3) for t in probe],
                          "mpi": MPI.Get_library_version().split("\n")[0].strip("\0")[:60],
                          "code": os.path.dirname(os.path.abspath(config.__file__))}),
              flush=True)
    for control in args.planes.split(","):
        out = measure(comm, control, args.rounds, args.M, args.unit, args.factor)
        if out:
            print(json.dumps({"label": args.label, **out}), flush=True)


if __name__ == "__main__":
    main()
