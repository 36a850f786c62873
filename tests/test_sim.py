"""The virtual-clock engine against oracles (ALGORITHMS section 7)."""

import heapq
import json

import numpy as np
import pytest

from nigt_hpc import config, kernels, run
from nigt_hpc.engine.sim import SimEngine
from nigt_hpc.rollout import make_sampler
from nigt_hpc.timers import Timers

PENDULUM = ["env.id=Pendulum-v1", "env.horizon=20", "run.target_return=inf"]


def sim(n, sets, rows=None):
    cfg = config.load(None, PENDULUM + list(sets) + [f"sim.workers={n}"])
    built = [run.build(cfg, w) for w in range(n)]
    samplers = [make_sampler(cfg, e, sp, i, w) for w, (e, i, sp) in enumerate(built)]
    theta0 = built[0][2].init_theta(0, -0.5)
    eng = SimEngine(cfg, samplers, theta0, Timers(),
                    on_round=rows.append if rows is not None else None)
    return eng


def speeds(h, kappa=None):
    out = ["delays.compute=from_list", f"delays.compute_list={list(map(float, h))}"]
    if kappa is not None:
        out += ["delays.comm=from_list", f"delays.comm_list={list(map(float, kappa))}"]
    return out


def test_rennala_finish_sequence_for_deterministic_speeds():
    eng = sim(3, speeds([1, 2, 3]) + ["algo.name=rennala_nigt", "algo.M_init=5", "algo.M=5",
                                      "run.max_rounds=0", "run.max_env_steps=1"])
    eng.run()
    first = eng.finish_log[:5]
    assert first == [(1.0, 0, True), (2.0, 0, True), (2.0, 1, True), (3.0, 0, True),
                     (3.0, 2, True)]
    assert eng.now == 3.0  # kappa = 0: the round ends at the 5th finish


def test_round_pays_the_slowest_allreduce_and_abandons_in_flight_work():
    rows = []
    eng = sim(3, speeds([1, 2, 3], kappa=[0.5, 0.25, 2.0]) + [
        "algo.name=rennala_nigt", "algo.M_init=2", "algo.M=2", "run.max_rounds=3"], rows)
    eng.run()
    # each round: 2 finishes by t0+1 (w0) and t0+2 (w0 and w1 tie; w0 first), then kappa 2
    assert [r["time_s"] for r in rows] == [4.0, 8.0, 12.0, 16.0]
    assert all(r["grads_per_worker"] == [2, 0, 0] for r in rows)
    # in flight at the end: w1 (its finish ties with the round end; lower index goes first)
    # and w2; w0 does not start another once the round is done
    assert all(r["discarded"] == 2 for r in rows)


@pytest.mark.parametrize("seed", range(4))
def test_rennala_round_length_bound(seed):
    rng = np.random.default_rng(seed)
    h = np.round(rng.uniform(0.5, 5.0, size=6), 3)
    M = 7
    rows = []
    sim(6, speeds(h) + ["algo.name=rennala_nigt", f"algo.M={M}", f"algo.M_init={M}",
                        "run.max_rounds=5"], rows).run()
    hs = np.sort(h)
    bound = min((M + m) / np.sum(1.0 / hs[:m]) for m in range(1, 7))
    lengths = np.diff([0.0] + [r["time_s"] for r in rows])
    assert np.all(lengths <= bound + 1e-9), (lengths, bound)


def test_malenia_stops_at_the_first_instant_the_condition_holds():
    rows = []
    eng = sim(2, speeds([1, 10]) + ["algo.name=malenia_nigt", "algo.M=4", "algo.M_init=4",
                                    "run.max_rounds=0", "run.max_env_steps=1"], rows)
    eng.run()
    # HM(M_1, M_2) >= 2 first holds after worker 1's 2nd gradient at t = 20 (with M_1 = 20)
    assert eng.now == 20.0
    assert rows[0]["grads_per_worker"] == [20, 2]
    length_bound = 2 * max(10.0, np.mean([1, 10]) * 4 / 2)
    assert eng.now <= length_bound


def test_sync_round_is_the_slowest_workers_batch_plus_kappa():
    rows = []
    sim(3, speeds([1, 2, 3], kappa=[1, 1, 1]) + ["algo.name=sync_nigt", "algo.B=2",
                                                 "run.max_rounds=2"], rows).run()
    assert [r["time_s"] for r in rows] == [7.0, 14.0, 21.0]
    assert all(r["grads_per_worker"] == [2, 2, 2] for r in rows)


def afedpg_oracle(h, kappa, updates):
    """Staleness of each server update, by direct bookkeeping of the stated rules."""
    q = [(h[w] + kappa[w], w) for w in range(len(h))]
    heapq.heapify(q)
    version = [0] * len(h)
    out = []
    for k in range(updates):
        t, w = heapq.heappop(q)
        out.append(k - version[w])
        version[w] = k + 1
        heapq.heappush(q, (t + h[w] + kappa[w], w))
    return out


def test_afedpg_staleness_matches_the_oracle():
    rows = []
    h, kappa = [1.0, 3.0, 4.0], [0.0, 0.5, 0.0]
    sim(3, speeds(h, kappa) + ["algo.name=afedpg", "run.max_rounds=40"], rows).run()
    assert [r["staleness"] for r in rows] == afedpg_oracle(h, kappa, 41)
    assert all(r["grads"] == 1 for r in rows)


def test_deterministic_for_a_seed():
    a, b = [], []
    for rows in (a, b):
        sim(4, ["delays.compute=exp", "algo.name=malenia_nigt", "run.max_rounds=6",
                "sim.time_model=step"], rows).run()
    assert json.dumps(a) == json.dumps(b)


def test_simulate_command_writes_a_run_directory(cli, tmp_path):
    out = tmp_path / "s"
    p = cli("simulate", "--workers", "1000", "--set", "delays.compute=sqrt", "--set",
            "run.max_rounds=2", "--out", out, "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len(rows[0]["grads_per_worker"]) == 1000
    assert rows[-1]["time_s"] > rows[0]["time_s"] > 0
    assert "engine = \"sim\"" in (out / "config.toml").read_text()


def test_simulate_without_a_time_model_is_refused(cli, tmp_path):
    p = cli("simulate", "--out", tmp_path / "s", cwd=tmp_path)
    assert p.returncode == 2 and "delays.compute" in p.stderr and p.stderr.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_warmup_compiles_kernels_used_by_sim():
    assert kernels.warmup() >= 0.0
