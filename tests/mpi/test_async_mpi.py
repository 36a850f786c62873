"""Rennala, Malenia and AFedPG on real ranks (mpiexec -n 2..4 ... pytest --only-mpi)."""

import hashlib

import numpy as np
import pytest

from nigt_hpc.aggregation import harmonic_mean
from tests.mpi.helpers import all_ok, engine_for, ones_everywhere

# Pendulum never terminates: every trajectory is exactly `horizon` steps, so per-worker
# speeds come from the emulated delays alone.
PENDULUM = ["env.id=Pendulum-v1", "env.horizon=40", "policy.kind=linear",
            "run.target_return=inf"]


def world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def straggler(factor, unit="2e-5"):
    """Delays where the last rank is ``factor`` times slower than the others."""
    n = world().Get_size()
    lst = ", ".join(["1.0"] * (n - 1) + [str(float(factor))])
    return ["delays.compute=from_list", f"delays.compute_list=[{lst}]",
            f"delays.compute_unit_s={unit}"]


def theta_digests(comm, theta):
    return comm.allgather(hashlib.sha256(np.ascontiguousarray(theta).tobytes()).hexdigest())


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo", ["rennala_nigt", "malenia_nigt", "rennala_pg"])
def test_uneven_work_keeps_theta_identical_and_counts_exact(algo):
    comm = world()
    rows = []
    eng, _ = engine_for(comm, PENDULUM + straggler(3) + [
        f"algo.name={algo}", "algo.M=7", "algo.M_init=5", "run.max_rounds=30",
        "algo.lr=0.001", "mpi.poll_every_steps=8"], rows.append)
    s = eng.run()
    ok = len(set(theta_digests(comm, s["theta"]))) == 1 and s["rounds"] == 30
    if comm.Get_rank() == 0:
        n = comm.Get_size()
        for r in rows:
            M = 5 if r["round"] == 0 else 7
            gpw = np.array(r["grads_per_worker"])
            if algo == "malenia_nigt":
                ok = ok and gpw.min() >= 1 and harmonic_mean(gpw) >= M / n - 1e-12
            else:
                ok = ok and r["grads"] == M and gpw.sum() == M
    assert all_ok(comm, ok)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo,expect", [("rennala_nigt", "one"), ("malenia_nigt", "one"),
                                         ("sync_nigt", "one")])
def test_weights_make_a_constant_gradient_come_out_unchanged(algo, expect):
    """Every accepted gradient is the vector of ones: with the rule's weights (1/M for
    Rennala, 1/(n M_i) for Malenia, 1/(n B) for sync) the aggregate must be ones too."""
    comm = world()
    eng, _ = engine_for(comm, PENDULUM + straggler(4) + [
        f"algo.name={algo}", "algo.M=6", "run.max_rounds=8", "mpi.poll_every_steps=8"])
    seen = ones_everywhere(eng)
    eng.run()
    ok = len(seen) == 9 and all(np.allclose(g, 1.0, rtol=1e-12, atol=0) for g in seen)
    assert all_ok(comm, ok), [float(g[0]) for g in seen]


@pytest.mark.mpi(min_size=2)
def test_straggler_does_not_lengthen_rennala_but_sync_and_malenia_wait():
    comm = world()
    n = comm.Get_size()
    out = {}
    for algo in ("rennala_nigt", "sync_nigt", "malenia_nigt"):
        rows = []
        # emulated time dominates: 0.25 ms per step (fast) and 5 ms (straggler) against a
        # real Pendulum step of ~20 us, so machine load cannot reorder who finishes first
        eng, timers = engine_for(comm, PENDULUM + straggler(20, unit="2.5e-4") + [
            f"algo.name={algo}", "algo.M=8", "algo.M_init=8", "run.max_rounds=6",
            "mpi.poll_every_steps=4"], rows.append)
        eng.run()
        out[algo] = (rows, timers.seconds["idle"] / 7)
    ok = True
    if comm.Get_rank() == 0:
        ren, sync, mal = out["rennala_nigt"][0], out["sync_nigt"][0], out["malenia_nigt"][0]
        dt = lambda rows: np.median(np.diff([r["time_s"] for r in rows]))  # noqa: E731
        # Rennala: the straggler (20x) contributes at most one gradient per round ...
        ok = ok and all(r["grads_per_worker"][-1] <= 1 for r in ren)
        # ... while sync rounds wait for its full share, and Malenia for at least one
        ok = ok and all(r["grads_per_worker"][-1] == -(-8 // n) for r in sync)
        ok = ok and all(r["grads_per_worker"][-1] >= 1 for r in mal)
        # wide margin: theory says sync rounds are about 20*B/M*n/(n-1) ~ 10x longer; the
        # sync round's floor is emulated (load can only lengthen Rennala's, up to ~3x here)
        ok = ok and dt(sync) > 3.0 * dt(ren)
        out["ratio"] = dt(sync) / dt(ren)
    # stop latency: the fast rank waits for the straggler to notice the end of a Rennala
    # round; the straggler checks every 1 ms sleep slice, and one of its trajectories takes
    # 200 ms, so a wait under 100 ms a round means it did not finish its trajectory first
    # (scheduling on a loaded machine adds milliseconds, never a trajectory).
    idle = out["rennala_nigt"][1]
    ok = ok and (comm.Get_rank() == n - 1 or idle < 0.1)
    assert all_ok(comm, ok), (out.get("ratio"), idle)


@pytest.mark.mpi(min_size=2)
def test_afedpg_moves_d_floats_up_and_d_down_per_gradient():
    comm = world()
    rows = []
    eng, _ = engine_for(comm, PENDULUM + ["algo.name=afedpg", "run.max_rounds=15"],
                        rows.append)
    s = eng.run()
    ok = len(set(theta_digests(comm, s["theta"]))) == 1
    if comm.Get_rank() == 0:
        d = eng.d
        ok = ok and [r["round"] for r in rows] == list(range(16))
        ok = ok and all(r["grads"] == 1 and r["collectives"] == 0 for r in rows)
        # g up, theta_tilde down: d floats each way
        ok = ok and [r["comm_bytes"] for r in rows] == [16 * d * (k + 1) for k in range(16)]
        ok = ok and len(rows[0]["grads_per_worker"]) == comm.Get_size() - 1
        ok = ok and all(r["staleness"] >= 0 for r in rows)
    assert all_ok(comm, ok)


@pytest.mark.mpi(min_size=2)
def test_reuse_stale_changes_nothing_without_abandoned_work():
    """On a one-rank communicator nothing is ever in flight when a round ends."""
    from mpi4py import MPI

    comm = world()
    thetas = []
    for reuse in ("false", "true"):
        eng, _ = engine_for(MPI.COMM_SELF, PENDULUM + [
            "algo.name=rennala_nigt", "algo.M=4", "run.max_rounds=10",
            f"algo.reuse_stale={reuse}"])
        thetas.append(eng.run()["theta"])
    assert all_ok(comm, np.array_equal(thetas[0], thetas[1]))


@pytest.mark.mpi(min_size=2)
def test_reuse_stale_keeps_interrupted_trajectories():
    comm = world()
    rows = {}
    for reuse in ("false", "true"):
        r = []
        eng, _ = engine_for(comm, PENDULUM + straggler(10) + [
            "algo.name=rennala_nigt", "algo.M=6", "run.max_rounds=10",
            "mpi.poll_every_steps=4", f"algo.reuse_stale={reuse}"], r.append)
        s = eng.run()
        rows[reuse] = (r, s)
    ok = len(set(theta_digests(comm, rows["true"][1]["theta"]))) == 1
    if comm.Get_rank() == 0:
        abandoned_off = sum(r["discarded"] for r in rows["false"][0])
        abandoned_on = sum(r["discarded"] for r in rows["true"][0])
        ok = ok and abandoned_off > 0 and abandoned_on < abandoned_off
        ok = ok and all(r["grads"] == 6 for r in rows["true"][0][1:])
    assert all_ok(comm, ok)


@pytest.mark.mpi(min_size=2)
def test_rennala_exact_M_with_the_per_trajectory_time_model():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = []
    engine, _ = engine_for(comm, ["run.max_rounds=6", "algo.M=5", "algo.M_init=5",
                                  "delays.compute=from_list", "delays.compute_list=[1, 4]",
                                  "delays.compute_unit_s=0.002", "delays.per=trajectory",
                                  "run.target_return=inf"], collect=rows.append)
    engine.run()
    ok = all(sum(r["grads_per_worker"]) == 5 for r in rows)
    assert all_ok(comm, ok)
