"""policy.obs_norm on real ranks: the round's moments ride in its one Allreduce, so every
rank holds the same statistics and the same theta, bit for bit."""

import hashlib

import numpy as np
import pytest

from tests.mpi.helpers import all_ok, engine_for
from tests.mpi.test_async_mpi import PENDULUM, straggler, theta_digests, world

NORM = PENDULUM + ["policy.obs_norm=true", "algo.M=6", "algo.M_init=6", "run.max_rounds=12",
                   "mpi.poll_every_steps=8"]


def digest(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo", ["rennala_nigt", "malenia_nigt", "sync_nigt"])
def test_statistics_and_theta_are_identical_on_every_rank(algo):
    comm = world()
    rows = []
    eng, _ = engine_for(comm, NORM + straggler(3) + [f"algo.name={algo}"], rows.append)
    s = eng.run()
    ok = len(set(theta_digests(comm, s["theta"]))) == 1
    ok = ok and len(set(comm.allgather(digest(eng.norm.pack())))) == 1
    # every observation any rank fed its policy counts once: the env steps of all rounds
    if comm.Get_rank() == 0:
        ok = ok and eng.norm.count == rows[-1]["env_steps"] > 0
    assert all_ok(comm, ok)


@pytest.mark.mpi(min_size=2)
def test_afedpg_server_merges_each_gradients_moments():
    comm = world()
    rows = []
    eng, _ = engine_for(comm, NORM + ["algo.name=afedpg"], rows.append)
    s = eng.run()
    ok = len(set(theta_digests(comm, s["theta"]))) == 1
    if comm.Get_rank() == 0:
        # the server's statistics hold the observations of every applied gradient
        ok = ok and eng.norm.count == rows[-1]["env_steps"] > 0
        ok = ok and np.isfinite(eng.norm.pack()).all()
    assert all_ok(comm, ok)
