"""``mpiexec -n N nigt-hpc bench comm``: the engine's per-round exchange beside a plain
Allreduce of the same d in the same run, and the control plane's latencies.

Rows (median µs over ``repeat`` x 200 calls, every rank timing its own calls, rank 0's
figures printed):

* ``allreduce d``: the engine's round exchange (pack the weighted sum and the round's
  statistics into one buffer, Allreduce, unpack), against ``Allreduce(IN_PLACE)`` of d
  doubles alone: the ratio is what carrying the statistics costs.
* ``rma counter``: Rennala's ``Fetch_and_op`` + ``Flush`` on the counter held by rank 0
  (the passive-target epoch is open), measured from the last rank; reference: an 8-byte
  ``Sendrecv`` ping-pong between the same ranks.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

SIZES = (100, 1_000, 10_000, 30_000, 100_000, 1_000_000)


def _median_us(fn, comm, calls: int, repeat: int) -> float:
    """Median µs per call of ``fn``; ``comm`` lines the ranks up before each batch (None:
    one rank times alone)."""
    for _ in range(10):
        fn()
    meds = []
    for _ in range(repeat):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        meds.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(meds)


def bench_comm(repeat: int = 5) -> list[dict] | None:
    """Return the rows on rank 0, [] on other ranks, None (after a message) on one rank."""
    from mpi4py import MPI

    from ..engine.common import Exchange, LocalRound

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if size < 2:
        print("error: bench comm needs at least 2 ranks: mpiexec -n 2 nigt-hpc bench comm",
              file=sys.stderr)
        return None
    rows = []
    for d in SIZES:
        calls = 200 if d <= 30_000 else (50 if d <= 100_000 else 10)
        plain = np.ones(d)

        def run_plain(buf=plain):
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

        ex = Exchange(d, size, window=20)
        local = LocalRound(d, 20)
        local.g_sum[:] = 1.0
        for k in range(5):
            local.episode_done(float(k))

        def run_ours(ex=ex, local=local):
            buf = ex.pack(rank, local, 0.5, 1.0, False, False)
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            ex.unpack()

        t_plain = _median_us(run_plain, comm, calls, repeat)
        t_ours = _median_us(run_ours, comm, calls, repeat)
        rows.append({"row": f"allreduce d={d}", "ours_us": t_ours, "reference_us": t_plain,
                     "ratio": t_ours / t_plain, "reference": "plain Allreduce of d doubles",
                     "ranks": size})
    from ..engine.control import RMACounter

    ctr = RMACounter(comm, root=0)
    last = size - 1
    comm.Barrier()
    t_rma = None
    if rank == last:
        t_rma = _median_us(lambda: ctr.fetch_add(1), None, 500, repeat)
    comm.Barrier()
    msg = np.zeros(1)

    def pingpong():
        if rank == 0:
            comm.Send(msg, dest=last, tag=7)
            comm.Recv(msg, source=last, tag=7)
        elif rank == last:
            comm.Recv(msg, source=0, tag=7)
            comm.Send(msg, dest=0, tag=7)

    t_pp = _median_us(pingpong, comm, 500, repeat) / 2.0  # one way
    t_rma = comm.bcast(t_rma, root=last)
    ctr.free()
    rows.append({"row": "rma counter fetch_add", "ours_us": t_rma, "reference_us": t_pp,
                 "ratio": t_rma / t_pp, "reference": "8-byte one-way Send/Recv",
                 "ranks": size})
    if rank != 0:
        return []
    print(f"comm, {size} ranks, µs per call (median); ratio = ours / the reference in this run")
    print(f"{'what':<26}{'ours':>10}{'reference':>11}{'ratio':>8}  reference")
    for r in rows:
        print(f"{r['row']:<26}{r['ours_us']:>10.1f}{r['reference_us']:>11.1f}"
              f"{r['ratio']:>7.2f}x  {r['reference']}")
    return rows

