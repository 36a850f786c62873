"""Where the fast rank's idle goes: one Rennala run with a straggler, every round's end taken
apart by mechanism.

    mpiexec -n 2 python -m mpi4py jobs/local/idle_trace.py --control rma

The run is control_plane.py's (Pendulum, M = 30, the last rank ``--factor`` times slower).
Every rank's engine is wrapped, not changed: the wrappers record when the round's M-th
gradient was accepted (the RMA ``Fetch_and_op`` that returned ``base + M - 1``, or rank 0 of
the message plane taking the M-th), when each rank's first poll said "over" and what it was
doing then (the last ``time.sleep`` of an emulated delay: its start, the time asked, its
end), and when it entered and left the boundary's ``guard.arrive``.  All ranks share one
host, so ``time.perf_counter`` (CLOCK_MONOTONIC) is one clock for all of them.

Rank 0's time in ``arrive`` (its ``idle`` timer) is, per round,

    straggler's lateness = (its notice - end) + (its notice -> arrive)
                           - (rank 0's notice - end) - (rank 0's notice -> arrive)
    + barrier lag        = rank 0 leaves arrive - the later of the two arrivals

and the straggler's notice latency splits into the rest of the delay slice it was sleeping
in when the round ended, the sleep's overshoot (the OS waking it late), the slices slept
after the end before one was followed by a poll that saw it (a Delay asks at most every
``Delay.poll_s``), and the poll call itself.  Rank 0's ``wait`` timer (every control-plane
call) is given as polls per round and µs per poll; the guard's own poll (abort channel) and
the heartbeat thread's work are timed the same way.  Prints one JSON line (rank 0).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time

from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from control_plane import bench_config  # noqa: E402

from nigt_hpc import delays, run  # noqa: E402
from nigt_hpc.engine import guard as guard_mod  # noqa: E402
from nigt_hpc.engine.mpi import MPIEngine  # noqa: E402
from nigt_hpc.rollout import Sampler  # noqa: E402
from nigt_hpc.timers import Timers  # noqa: E402

clock = time.perf_counter


class SleepLog:
    """Stands in for the ``time`` module inside delays.py: remembers the last sleep."""

    perf_counter = staticmethod(time.perf_counter)
    monotonic = staticmethod(time.monotonic)

    def __init__(self):
        self.last = None  # (start, asked, end) of the latest time.sleep

    def sleep(self, s: float) -> None:
        t0 = clock()
        time.sleep(s)
        self.last = (t0, s, clock())


class SelectLog:
    """Stands in for ``select`` inside guard.py: the heartbeat thread's work between waits."""

    def __init__(self):
        self.busy = 0.0
        self.wakes = 0
        self._back = None

    def select(self, *a):
        if self._back is not None:
            self.busy += clock() - self._back
        out = select.select(*a)
        self._back = clock()
        self.wakes += 1
        return out


def instrument(eng: MPIEngine, sleeps: SleepLog, nap: float | None = None) -> dict:
    """Wrap the engine's control-plane calls; return the record they fill."""
    rec = {"end": {}, "notice": {}, "arrive": {}, "guard_s": 0.0, "guard_calls": 0,
           "barrier_done": {}, "arrive_sleeps": 0, "report_s": 0.0, "reports": 0}
    st = {"rnd": -1, "M": 0, "noticed": False}
    plane = eng.plane

    start = plane.start_round

    def start_round(rnd, M, local):
        st.update(rnd=rnd, M=M, noticed=False)
        start(rnd, M, local)
    plane.start_round = start_round

    def notice(ctx: str, t0: float, t1: float) -> None:
        st["noticed"] = True
        sl = sleeps.last if ctx == "sleep" else None
        rec["notice"][st["rnd"]] = (ctx, t0, t1, sl)

    over0 = eng._round_over

    sleep0 = eng.delay._sleep_until

    def sleep_until(deadline, interrupted):
        st["in_sleep"] = True
        try:
            return sleep0(deadline, interrupted)
        finally:
            st["in_sleep"] = False
    eng.delay._sleep_until = sleep_until

    def round_over(M):
        t0 = clock()
        out = over0(M)
        t1 = clock()
        if out and not st["noticed"]:
            notice("sleep" if st.get("in_sleep") else "step", t0, t1)
        return out
    eng._round_over = round_over

    accept0 = eng._accept

    def accept(rnd, M):
        t0 = clock()
        out = accept0(rnd, M)
        rec["report_s"] += clock() - t0
        rec["reports"] += 1
        if out is False and not st["noticed"]:
            notice("report", t0, clock())
        return out
    eng._accept = accept

    if plane.name == "rma":
        fetch_add = plane.counter.fetch_add

        def fetch_add_logged(k=1):
            v = fetch_add(k)
            if v - plane.base == st["M"] - 1:  # the M-th acceptance of the round
                rec["end"][st["rnd"]] = clock()
            return v
        plane.counter.fetch_add = fetch_add_logged
    elif eng.rank == 0:
        accept_j = plane._accept

        def accept_logged(j):
            accept_j(j)
            if plane.count == plane.M:
                rec["end"][st["rnd"]] = clock()
        plane._accept = accept_logged

    arrive0 = eng.guard.arrive

    proxy = eng.guard.comm = CommProxy(eng.guard.comm, rec)
    guard_mod.time = GuardTime(rec, proxy, nap)

    def arrive(rnd, what=None):
        proxy.rnd = rnd
        t0 = clock()
        arrive0(rnd, what)
        if what is None:
            rec["arrive"][rnd] = (t0, clock())
    eng.guard.arrive = arrive

    interrupted0 = eng.guard.interrupted

    def interrupted():
        t0 = clock()
        out = interrupted0()
        rec["guard_s"] += clock() - t0
        rec["guard_calls"] += 1
        return out
    eng.guard.interrupted = interrupted
    return rec


def quantiles(xs: list) -> list:
    """Return the median, 90th percentile and maximum of ``xs`` in µs."""
    if not xs:
        return []
    xs = sorted(xs)
    return [round(1e6 * xs[int(q * (len(xs) - 1))], 1) for q in (0.5, 0.9, 1.0)]


class CommProxy:
    """Stands in for the guard's communicator: times when each Ibarrier's Test first said
    done, and counts the guard's sleeps while it waited."""

    def __init__(self, comm, rec: dict):
        self._comm, self._rec = comm, rec
        self.rnd = -1

    def __getattr__(self, name):
        return getattr(self._comm, name)

    def Ibarrier(self):  # noqa: N802 - mpi4py's name
        req, rec, rnd = self._comm.Ibarrier(), self._rec, self.rnd

        class Req:
            def Test(self):  # noqa: N802
                done = req.Test()
                if done:
                    rec["barrier_done"][rnd] = clock()
                return done
        return Req()


class GuardTime:
    """Stands in for ``time`` inside guard.py: counts the boundary loop's sleeps."""

    monotonic = staticmethod(time.monotonic)
    perf_counter = staticmethod(time.perf_counter)

    def __init__(self, rec: dict, proxy: CommProxy, nap: float | None):
        self.rec, self.proxy, self.nap = rec, proxy, nap

    def sleep(self, s: float) -> None:
        if self.proxy.rnd >= 0:  # round boundaries only, not the start of training
            self.rec["arrive_sleeps"] += 1
            if self.nap is not None:  # --arrive-nap: what a shorter nap would change
                s = self.nap
        time.sleep(s)


def account(recs: list, walls: list, timers0: dict, n: int) -> dict:
    """Rank 0's barrier time per round, taken apart (ms summed over rounds, and % of wall)."""
    r0, r1 = recs[0], recs[n - 1]
    parts = dict.fromkeys(("rest_of_slice", "sleep_overshoot", "slices_before", "poll_call",
                           "steps_to_poll", "abandon_path", "minus_fast_notice",
                           "barrier_lag", "barrier_test_lag", "straggler_first"), 0.0)
    overshoots: list = []
    lags: list = []
    ctx_count: dict = {}
    rounds = sorted(r0["arrive"])
    idle_total = 0.0
    for rnd in rounds:
        end = next((r["end"][rnd] for r in recs if rnd in r["end"]), None)
        (e0, x0), (e1, _) = r0["arrive"][rnd], r1["arrive"][rnd]
        idle_total += x0 - e0
        parts["barrier_lag"] += x0 - max(e0, e1)
        lags.append(x0 - max(e0, e1))
        if rnd in r0["barrier_done"]:
            parts["barrier_test_lag"] += max(0.0, r0["barrier_done"][rnd] - max(e0, e1))
        if e1 <= e0 or end is None or rnd not in r1["notice"] or rnd not in r0["notice"]:
            parts["straggler_first"] += max(0.0, e1 - e0)  # not taken apart
            continue
        ctx, _, t1, sl = r1["notice"][rnd]
        ctx_count[ctx] = ctx_count.get(ctx, 0) + 1
        n0 = r0["notice"][rnd][2]
        parts["minus_fast_notice"] -= (n0 - end) + (e0 - n0)
        parts["abandon_path"] += e1 - t1
        if ctx == "sleep":
            s0, asked, s1 = sl
            if end < s0:
                parts["slices_before"] += s0 - end
            parts["rest_of_slice"] += max(0.0, s0 + asked - max(end, s0))
            over = s1 - max(end, s0 + asked)  # the OS woke it this late after the end
            parts["sleep_overshoot"] += over
            overshoots.append(over)
            parts["poll_call"] += t1 - s1
        else:
            parts["steps_to_poll"] += t1 - end
    wall = walls[0]
    ms = {k: round(1e3 * v, 2) for k, v in parts.items()}
    pct = {k: round(100 * v / wall, 3) for k, v in parts.items()}
    sec, calls = timers0["seconds"], timers0["calls"]
    return {"rounds": len(rounds), "wall_s": round(wall, 3),
            "round_ms": round(1e3 * wall / len(rounds), 1),
            "idle_ms": round(1e3 * idle_total, 2), "idle_pct": round(100 * idle_total / wall, 3),
            "parts_ms": ms, "parts_pct": pct, "straggler_notice_ctx": ctx_count,
            "overshoot_us_p50_p90_max": quantiles(overshoots),
            "barrier_lag_us_p50_p90_max": quantiles(lags),
            "arrive_sleeps_per_round": round(r0["arrive_sleeps"] / len(rounds), 2),
            "wait_pct": round(100 * sec["wait"] / wall, 3),
            "polls_per_round": round(calls["wait"] / len(rounds), 1),
            "us_per_wait_call": round(1e6 * sec["wait"] / max(1, calls["wait"]), 2),
            "reports_per_round": round(r0["reports"] / len(rounds), 1),
            "us_per_report": round(1e6 * r0["report_s"] / max(1, r0["reports"]), 2),
            "report_pct": round(100 * r0["report_s"] / wall, 3),
            "guard_polls_per_round": round(r0["guard_calls"] / len(rounds), 1),
            "us_per_guard_poll": round(1e6 * r0["guard_s"] / max(1, r0["guard_calls"]), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--control", default="rma", choices=("auto", "rma", "p2p"))
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--M", type=int, default=30)
    ap.add_argument("--unit", type=float, default=1e-4)
    ap.add_argument("--factor", type=float, default=5.0)
    ap.add_argument("--label", default="")
    ap.add_argument("--arrive-nap", type=float, default=None,
                    help="replace the boundary loop's nap (guard.arrive) by this many s")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank, n = comm.Get_rank(), comm.Get_size()
    run.warmup_node_ordered(comm)
    cfg = bench_config(n, args.control, args.rounds, args.M, args.unit, args.factor)
    sleeps, selects = SleepLog(), SelectLog()
    delays.time = sleeps
    guard_mod.select = selects
    env, info, spec = run.build(cfg, rank)
    sampler = Sampler(env, spec, cfg["env"]["horizon"], cfg["env"]["gamma"], cfg["run"]["seed"],
                      rank, info["obs_dim"], info["discrete"])
    timers = Timers()
    rows: list = []
    eng = MPIEngine(cfg, comm, sampler, spec.init_theta(0, -0.5), timers, on_round=rows.append)
    rec = instrument(eng, sleeps, args.arrive_nap)
    s = eng.run()
    rec["thread_busy_s"], rec["thread_wakes"] = selects.busy, selects.wakes
    rec["counts"] = {"local_polls": getattr(eng.plane, "local_polls", None),
                     "serves": getattr(eng.plane, "serves", None),
                     "abort_tests": getattr(eng.guard, "abort_tests", None)}
    recs = comm.gather(rec, root=0)
    walls = comm.gather(s["wall_s"], root=0)
    t_all = comm.gather(timers.as_dict(), root=0)
    if rank == 0:
        out = {"label": args.label or MPI.Get_library_version().split("\n")[0][:30].strip(),
               "control": s["control"], "arrive_nap": args.arrive_nap,
               "exact_M": all(r["grads"] == args.M for r in rows),
               **account(recs, walls, t_all[0], n),
               "straggler_wait_pct": round(100 * t_all[-1]["seconds"]["wait"] / walls[-1], 3),
               "thread_busy_ms": [round(1e3 * r["thread_busy_s"], 2) for r in recs],
               "thread_wakes": [r["thread_wakes"] for r in recs],
               "counts_rank0": recs[0]["counts"],
               "load": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
