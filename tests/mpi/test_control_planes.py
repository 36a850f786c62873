"""Rennala's two control planes on real ranks: exactly M per round, bounded stop latency
(counted), identical theta, and the same bits when both accept the same gradients."""

import hashlib

import numpy as np
import pytest

from nigt_hpc.engine.planes import PENDING_MAX, probe_passive_progress
from tests.mpi.helpers import all_ok, engine_for

PENDULUM = ["env.id=Pendulum-v1", "env.horizon=40", "policy.kind=linear",
            "run.target_return=inf"]


def world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def digests(comm, theta):
    return comm.allgather(hashlib.sha256(np.ascontiguousarray(theta).tobytes()).hexdigest())


def straggler(n, factor, unit):
    lst = ", ".join(["1.0"] * (n - 1) + [str(float(factor))])
    return ["delays.compute=from_list", f"delays.compute_list=[{lst}]",
            f"delays.compute_unit_s={unit}"]


def count_reports(eng):
    """Return the list that gets each round's total report count (from the plane's
    end_round, which every rank calls with the reduced per-rank counts)."""
    totals = []
    end = eng.plane.end_round
    eng.plane.end_round = lambda reports: (totals.append(int(reports.sum())), end(reports))
    return totals


def late_bound(plane, n):
    """Return the most reports per round that may finish after the M-th acceptance: under
    RMA one per rank (its Fetch_and_op says so at once); under p2p rank 0 answers its own
    at once and a worker has at most PENDING_MAX un-answered reports."""
    return n if plane == "rma" else 1 + (n - 1) * PENDING_MAX


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("plane", ["rma", "p2p"])
@pytest.mark.parametrize("algo", ["rennala_nigt", "rennala_pg"])
def test_exactly_M_per_round_and_identical_theta(plane, algo):
    comm = world()
    rows = []
    eng, _ = engine_for(comm, PENDULUM + [
        f"algo.name={algo}", "algo.M=7", "algo.M_init=5", "run.max_rounds=40",
        "algo.lr=0.001", "mpi.poll_every_steps=8", f"mpi.control={plane}"], rows.append)
    reports = count_reports(eng)
    s = eng.run()
    ok = s["control"] == plane and eng.control_name == plane
    ok = ok and len(set(digests(comm, s["theta"]))) == 1 and s["rounds"] == 40
    if comm.Get_rank() == 0:
        n = comm.Get_size()
        for r, k in zip(rows, reports, strict=True):
            M = 5 if r["round"] == 0 else 7
            ok = ok and r["grads"] == M and sum(r["grads_per_worker"]) == M
            ok = ok and 0 <= k - M <= late_bound(plane, n)
    assert all_ok(comm, ok), rows[:3]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("plane", ["rma", "p2p"])
def test_straggler_leaves_the_work_to_the_fast_rank_with_exact_M(plane):
    """Rank n-1 takes 5x longer per step: the others do most of the work, every round
    still accepts exactly M, and the gradients finished after the M-th stay bounded."""
    comm = world()
    n = comm.Get_size()
    rows = []
    eng, _ = engine_for(comm, PENDULUM + straggler(n, 5, "2e-5") + [
        "algo.name=rennala_nigt", "algo.M=8", "algo.M_init=8", "run.max_rounds=25",
        "mpi.poll_every_steps=4", f"mpi.control={plane}"], rows.append)
    reports = count_reports(eng)
    s = eng.run()
    ok = len(set(digests(comm, s["theta"]))) == 1
    if comm.Get_rank() == 0:
        gpw = np.array([r["grads_per_worker"] for r in rows])
        ok = ok and all(r["grads"] == 8 for r in rows) and (gpw.sum(axis=1) == 8).all()
        # a fast rank does 5x the straggler's steps; ask for clearly more than half
        ok = ok and gpw[:, :-1].sum() > 0.6 * gpw.sum()
        ok = ok and len(reports) == len(rows) == 26
        ok = ok and all(0 <= k - 8 <= late_bound(plane, n) for k in reports)
    assert all_ok(comm, ok), [r["grads_per_worker"] for r in rows[:5]]


@pytest.mark.mpi(min_size=2)
def test_both_planes_give_the_same_bits_when_they_accept_the_same_gradients():
    """A straggler too slow to finish any trajectory leaves every accepted gradient to
    rank 0, in rank 0's order, under both planes: theta must come out bit for bit equal."""
    comm = world()
    n = comm.Get_size()
    out = {}
    for plane in ("rma", "p2p"):
        rows = []
        eng, _ = engine_for(comm, PENDULUM + [
            "delays.compute=from_list", "delays.compute_list=[1.0, 10000.0]",
            "delays.compute_unit_s=2e-5", "algo.name=rennala_nigt", "algo.M=4",
            "algo.M_init=4", "run.max_rounds=12", "mpi.poll_every_steps=4",
            f"mpi.control={plane}"], rows.append)
        out[plane] = (eng.run()["theta"], rows)
    ok = np.array_equal(out["rma"][0], out["p2p"][0])
    if comm.Get_rank() == 0:
        for plane in ("rma", "p2p"):
            ok = ok and all(r["grads_per_worker"] == [4] + [0] * (n - 1)
                            for r in out[plane][1])
    assert all_ok(comm, ok)


@pytest.mark.mpi(min_size=2)
def test_probe_agrees_on_every_rank_and_auto_picks_by_it():
    comm = world()
    t = probe_passive_progress(comm)
    eng, _ = engine_for(comm, PENDULUM + ["algo.name=rennala_nigt", "run.max_rounds=2",
                                          "algo.M=4", "algo.M_init=4"])
    s = eng.run()
    names = comm.allgather(s["control"])
    ok = len(set(comm.allgather(t))) == 1 and t >= 0.0 and len(set(names)) == 1
    ok = ok and names[0] in ("rma", "p2p") and eng.control_probe_s is not None
    assert all_ok(comm, ok), (t, names)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("plane", ["rma", "p2p"])
def test_a_resumed_run_still_accepts_exactly_M(plane):
    """A resumed run opens a new plane; no counter base is carried over into it (under RMA
    it used to be, and the first resumed round took base + M gradients)."""
    comm = world()
    sets = PENDULUM + ["algo.name=rennala_nigt", "algo.M=6", "algo.M_init=6",
                       "mpi.poll_every_steps=8", f"mpi.control={plane}"]
    eng, _ = engine_for(comm, sets + ["run.max_rounds=4"])
    saved = []
    eng.on_checkpoint = lambda arrays, state: saved.append((arrays, state))
    eng.run()
    ckpt = comm.bcast(saved[0] if saved else None, root=0)
    rows = []
    eng, _ = engine_for(comm, sets + ["run.max_rounds=8"], rows.append)
    eng.restore(*ckpt)
    s = eng.run()
    ok = len(set(digests(comm, s["theta"]))) == 1
    ok = ok and "base" not in ckpt[1]
    if comm.Get_rank() == 0:
        ok = ok and [r["round"] for r in rows] == [5, 6, 7, 8]
        ok = ok and all(r["grads"] == 6 for r in rows)
    assert all_ok(comm, ok), [r["grads"] for r in rows]


@pytest.mark.mpi(min_size=2)
def test_rank0_polls_the_rma_counter_by_a_load_where_the_probe_passed():
    """Rank 0 hosts the counter: where the others' Fetch_and_op progress without it, its
    polls read its window memory (counted), and every round still takes exactly M."""
    from nigt_hpc.engine.planes import PROBE_LIMIT_S

    comm = world()
    n = comm.Get_size()
    rows = []
    eng, timers = engine_for(comm, PENDULUM + straggler(n, 5, "2e-5") + [
        "algo.name=rennala_nigt", "algo.M=8", "algo.M_init=8", "run.max_rounds=10",
        "mpi.poll_every_steps=4", "mpi.control=rma"], rows.append)
    s = eng.run()
    passed = eng.control_probe_s is not None and eng.control_probe_s <= PROBE_LIMIT_S
    ok = s["control"] == "rma" and len(set(digests(comm, s["theta"]))) == 1
    if comm.Get_rank() == 0:
        ok = ok and (eng.plane.local_polls > 0) == passed
        ok = ok and all(r["grads"] == 8 for r in rows) and len(rows) == 11
    else:
        ok = ok and eng.plane.local_polls == 0  # a worker's read is a Fetch_and_op
    assert all_ok(comm, ok), (eng.control_probe_s, eng.plane.local_polls)


@pytest.mark.mpi(min_size=2)
def test_p2p_rank0_serves_at_most_once_per_interval_and_before_its_own_reports(monkeypatch):
    """With the serving interval made endless, rank 0 Tests for reports once at its first
    poll and then only before each of its own reports: exactly that many serves, and the
    rounds still end with exactly M (rank 0's own reports bring the stop)."""
    from nigt_hpc.engine import planes

    monkeypatch.setattr(planes, "SERVE_EVERY_S", 1e9)
    comm = world()
    n = comm.Get_size()
    rows = []
    eng, _ = engine_for(comm, PENDULUM + straggler(n, 3, "2e-5") + [
        "algo.name=rennala_nigt", "algo.M=6", "algo.M_init=6", "run.max_rounds=8",
        "mpi.poll_every_steps=4", "mpi.control=p2p"], rows.append)
    own = [0]
    if comm.Get_rank() == 0:
        report = eng.plane.report

        def counted(g):
            own[0] += not eng.plane.stopped  # a report after the stop serves nothing
            return report(g)
        eng.plane.report = counted
    s = eng.run()
    ok = s["control"] == "p2p" and len(set(digests(comm, s["theta"]))) == 1
    if comm.Get_rank() == 0:
        ok = ok and eng.plane.serves == 1 + own[0] and own[0] >= 6
        ok = ok and all(r["grads"] == 6 for r in rows) and len(rows) == 9
    assert all_ok(comm, ok), (getattr(eng.plane, "serves", None), own)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("every", [0.0, 1e9])
def test_the_abort_channel_is_tested_at_most_once_per_interval(monkeypatch, every):
    """Every poll Tests the abort Irecv when the interval is 0; with an endless one only the
    first poll of the run does (the 1 ms default sits between)."""
    from nigt_hpc.engine import guard

    monkeypatch.setattr(guard, "ABORT_TEST_S", every)
    comm = world()
    eng, _ = engine_for(comm, PENDULUM + [
        "algo.name=rennala_nigt", "algo.M=6", "algo.M_init=6", "run.max_rounds=4",
        "mpi.poll_every_steps=4", "mpi.control=p2p"])
    calls = [0]
    interrupted = eng.guard.interrupted

    def counted():
        calls[0] += 1
        return interrupted()
    eng.guard.interrupted = counted
    eng.run()
    want = calls[0] if every == 0.0 else 1
    ok = calls[0] > 10 and eng.guard.abort_tests == want
    assert all_ok(comm, ok), (calls, eng.guard.abort_tests)
