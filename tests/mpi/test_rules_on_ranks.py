"""The rule objects of aggregation.py, through registry.py, are what real ranks run: a rule
swapped in the registry changes the MPI engine's acceptance, stop and weights, and round 0
is sized by M_init there as on the virtual clock."""

import dataclasses

import numpy as np
import pytest

from nigt_hpc import registry
from nigt_hpc.aggregation import AggregateMalenia, AggregateRennala, AggregateSync
from tests.mpi.helpers import all_ok, engine_for, ones_everywhere

PENDULUM = ["env.id=Pendulum-v1", "env.horizon=40", "policy.kind=linear",
            "run.target_return=inf", "mpi.poll_every_steps=8"]


def world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


class RennalaOneShort(AggregateRennala):
    """Accepts M - 1 per round, each with weight 2/M: g of all-ones gradients is 2(M-1)/M."""

    def accepts_at(self, m: int) -> bool:
        return m < self.M - 1

    def done_at(self, m: int) -> bool:
        return m >= self.M - 1

    def local_weight(self, worker: int, count: int) -> float:
        return 2.0 / self.M


class MaleniaDoubled(AggregateMalenia):
    def local_weight(self, worker: int, count: int) -> float:
        return 2.0 * super().local_weight(worker, count)


class SyncDoubled(AggregateSync):
    def local_weight(self, worker: int, count: int) -> float:
        return 2.0 * super().local_weight(worker, count)



@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo,rule,plane", [
    ("rennala_nigt", RennalaOneShort, "rma"), ("rennala_nigt", RennalaOneShort, "p2p"),
    ("malenia_nigt", MaleniaDoubled, "auto"), ("sync_nigt", SyncDoubled, "auto")])
def test_a_rule_swapped_in_the_registry_is_what_the_ranks_run(monkeypatch, algo, rule, plane):
    """Exactly the swapped rule's count enters each round (RMA counter and p2p coordinator
    both ask it), and every rank's factor is its local_weight."""
    comm = world()
    entry = registry.lookup(algo)
    monkeypatch.setitem(registry.REGISTRY, algo, dataclasses.replace(entry, rule=rule))
    rows = []
    eng, _ = engine_for(comm, PENDULUM + [
        f"algo.name={algo}", "algo.M=6", "algo.M_init=4", "run.max_rounds=5",
        "algo.lr=0.001", f"mpi.control={plane}"], rows.append)
    seen = ones_everywhere(eng)
    eng.run()
    Ms = [4] + [6] * 5
    if rule is RennalaOneShort:
        want = [2.0 * (M - 1) / M for M in Ms]
    else:
        want = [2.0] * len(Ms)
    ok = len(seen) == len(Ms)
    ok = ok and all(np.allclose(g, w, rtol=1e-12, atol=0) for g, w in zip(seen, want))
    if comm.Get_rank() == 0 and rule is RennalaOneShort:
        ok = ok and [r["grads"] for r in rows] == [M - 1 for M in Ms]
    assert all_ok(comm, ok), ([float(g[0]) for g in seen], [r["grads"] for r in rows])


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo", ["malenia_nigt", "rennala_nigt", "sync_nigt"])
def test_round_0_takes_M_init_gradients_on_one_rank(algo):
    """On a one-rank communicator every rule is deterministic: round 0 holds M_init
    gradients and later rounds M, as the rule says (Malenia's MPI coordinator used to keep
    the target M for round 0)."""
    comm = world()
    sub = comm.Split(color=comm.Get_rank(), key=0)
    rows = []
    try:
        eng, _ = engine_for(sub, PENDULUM + [
            f"algo.name={algo}", "algo.M=6", "algo.M_init=4", "run.max_rounds=3"],
            rows.append)
        eng.run()
    finally:
        sub.Free()
    rule = registry.lookup(algo).make_rule(1, 4, 4)
    while not rule.done():  # the rule alone, fed one worker's finishes
        rule.on_finished(0)
    ok = rule.M_i[0] == 4
    ok = ok and [r["grads"] for r in rows] == [4, 6, 6, 6]
    assert all_ok(comm, ok), [r["grads"] for r in rows]
