"""The synchronous MPI engine on real ranks (run with mpiexec -n 2 ... pytest --only-mpi).

Every check computes a local verdict, agrees on it with an allreduce, then asserts on all
ranks, so one rank's failure never leaves the others waiting in a collective (PITFALLS P2).
"""

import hashlib

import numpy as np
import pytest

from tests.mpi.helpers import all_ok, engine_for


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo", ["sync_nigt", "sync_pg"])
def test_theta_is_bitwise_identical_on_every_rank(algo):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = []
    eng = engine_for(comm, [f"algo.name={algo}", "run.max_rounds=25", "algo.M=6",
                            "run.target_return=inf", "env.id=Pendulum-v1",
                            "policy.kind=mlp", "policy.hidden=[8]", "env.horizon=50"],
                     rows.append)[0]
    s = eng.run()
    digest = hashlib.sha256(s["theta"].tobytes()).hexdigest()
    digests = comm.allgather(digest)
    ok = len(set(digests)) == 1 and s["rounds"] == 25
    n = comm.Get_size()
    B = -(-6 // n)
    ok = ok and all(r["grads_per_worker"] == [B] * n for r in rows[1:])
    assert all_ok(comm, ok), (digests, s["rounds"])


@pytest.mark.mpi(min_size=2)
def test_one_allreduce_per_round_and_shared_stop_decision():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = []
    eng = engine_for(comm, ["run.max_rounds=0", "run.max_env_steps=3000", "algo.M=4",
                            "algo.name=sync_nigt"], rows.append)[0]
    s = eng.run()
    rounds = comm.allgather(s["rounds"])
    ok = len(set(rounds)) == 1 and s["stop_reason"] == "max_env_steps reached"
    ok = ok and [r["collectives"] for r in rows] == list(range(1, len(rows) + 1))
    ok = ok and np.isfinite(s["theta"]).all()
    assert all_ok(comm, ok), rounds
