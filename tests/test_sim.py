"""The virtual-clock engine against oracles (ALGORITHMS section 7)."""

import heapq
import json

import numpy as np
import pytest

from nigt_hpc import config, kernels, run
from nigt_hpc.engine.common import one_gradient_stats
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


def afedpg(h, kappa, link, updates, rows=None):
    eng = sim(len(h), speeds(h, kappa) + ["algo.name=afedpg", f"run.max_rounds={updates - 1}",
                                          f"delays.server_link={link}"], rows)
    eng.run()
    return eng


def test_afedpg_staleness_matches_the_oracle():
    rows = []
    h, kappa = [1.0, 3.0, 4.0], [0.0, 0.5, 0.0]
    afedpg(h, kappa, "parallel", 41, rows)
    assert [r["staleness"] for r in rows] == afedpg_oracle(h, kappa, 41)
    assert all(r["grads"] == 1 for r in rows)


# (worker, ready, link start, server update, restart) of server updates 0..9, by hand, for
# h = [1, 2, 3].  Shared: the upload (g) and the download (theta_tilde) each hold the link
# kappa_i / 2.
SHARED_EQUAL = [  # kappa = 0.5 each: upload 0.25, download 0.25
    (0, 1.0, 1.0, 1.25, 1.5),
    (1, 2.0, 2.0, 2.25, 2.5),
    (0, 2.5, 2.5, 2.75, 3.0),     # w0 (ready 2.5) before w2 (ready 3)
    (2, 3.0, 3.0, 3.25, 3.5),     # the link frees exactly as w2 is ready
    (0, 4.0, 4.0, 4.25, 4.5),
    (1, 4.5, 4.5, 4.75, 5.0),
    (0, 5.5, 5.5, 5.75, 6.0),
    (2, 6.5, 6.5, 6.75, 7.0),
    (0, 7.0, 7.0, 7.25, 7.5),     # w0 and w1 both ready at 7: lower index first
    (1, 7.0, 7.5, 7.75, 8.0),     # w1 waits 0.5 for w0's exchange
]
SHARED_UNEQUAL = [  # kappa = [0.5, 1, 2]: uploads and downloads [0.25, 0.5, 1]
    (0, 1.0, 1.0, 1.25, 1.5),
    (1, 2.0, 2.0, 2.5, 3.0),
    (0, 2.5, 3.0, 3.25, 3.5),     # w0 (ready 2.5) waits for w1's download
    (2, 3.0, 3.5, 4.5, 5.5),      # w2 (ready 3) queues behind w0
    (0, 4.5, 5.5, 5.75, 6.0),     # w0 waits 1 for w2's long exchange
    (1, 5.0, 6.0, 6.5, 7.0),
    (0, 7.0, 7.0, 7.25, 7.5),
    (0, 8.5, 8.5, 8.75, 9.0),     # w0 and w2 both ready at 8.5: lower index first
    (2, 8.5, 9.0, 10.0, 11.0),
    (1, 9.0, 11.0, 11.5, 12.0),   # FIFO by ready time: w1 waits 2 for w2
]
# Parallel (today's model): the update is at ready + kappa_i, the worker restarts then, and
# updates are served in update-time order.
PARALLEL_EQUAL = [
    (0, 1.0, 1.0, 1.5, 1.5), (1, 2.0, 2.0, 2.5, 2.5), (0, 2.5, 2.5, 3.0, 3.0),
    (2, 3.0, 3.0, 3.5, 3.5), (0, 4.0, 4.0, 4.5, 4.5), (1, 4.5, 4.5, 5.0, 5.0),
    (0, 5.5, 5.5, 6.0, 6.0), (2, 6.5, 6.5, 7.0, 7.0), (0, 7.0, 7.0, 7.5, 7.5),
    (1, 7.0, 7.0, 7.5, 7.5),
]
PARALLEL_UNEQUAL = [
    (0, 1.0, 1.0, 1.5, 1.5), (0, 2.5, 2.5, 3.0, 3.0), (1, 2.0, 2.0, 3.0, 3.0),
    (0, 4.0, 4.0, 4.5, 4.5), (2, 3.0, 3.0, 5.0, 5.0), (0, 5.5, 5.5, 6.0, 6.0),
    (1, 5.0, 5.0, 6.0, 6.0), (0, 7.0, 7.0, 7.5, 7.5), (0, 8.5, 8.5, 9.0, 9.0),
    (1, 8.0, 8.0, 9.0, 9.0),
]


@pytest.mark.parametrize("kappa,link,expected", [
    ([0.5, 0.5, 0.5], "shared", SHARED_EQUAL), ([0.5, 1.0, 2.0], "shared", SHARED_UNEQUAL),
    ([0.5, 0.5, 0.5], "parallel", PARALLEL_EQUAL),
    ([0.5, 1.0, 2.0], "parallel", PARALLEL_UNEQUAL)])
def test_afedpg_link_sequence_by_hand(kappa, link, expected):
    rows = []
    eng = afedpg([1, 2, 3], kappa, link, 10, rows)
    assert eng.link_log == expected
    assert [r["time_s"] for r in rows] == [e[3] for e in expected]  # metrics at the update
    assert [r["grads_per_worker"].index(1) for r in rows] == [e[0] for e in expected]
    # staleness: updates since the worker's download (version k + 1 once update k is sent)
    version, stale = [0, 0, 0], []
    for k, e in enumerate(expected):
        stale.append(k - version[e[0]])
        version[e[0]] = k + 1
    assert [r["staleness"] for r in rows] == stale
    assert eng.now == expected[-1][3]


def test_shared_link_is_the_default():
    assert config.load(None)["delays"]["server_link"] == "shared"
    eng = sim(3, speeds([1, 2, 3], [0.5, 0.5, 0.5]) + ["algo.name=afedpg",
                                                      "run.max_rounds=9"])
    eng.run()
    assert eng.link_log == SHARED_EQUAL


@pytest.mark.parametrize("seed", range(3))
def test_shared_link_is_one_fifo_resource(seed):
    rng = np.random.default_rng(seed)
    h = np.round(rng.uniform(0.5, 4.0, size=5), 3)
    kappa = np.round(rng.uniform(0.0, 3.0, size=5), 3)
    log = afedpg(h, kappa, "shared", 60).link_log
    free = 0.0
    for w, ready, start, update, restart in log:
        assert start == max(ready, free)  # waits only while the link is busy
        assert update == start + kappa[w] / 2 and restart == update + kappa[w] / 2
        free = restart
    # FIFO by ready time, ties by worker index (every ready time is known in advance here)
    assert [(r, w) for w, r, *_ in log] == sorted((r, w) for w, r, *_ in log)
    # each worker's next gradient is ready h_w after its download
    for w in range(5):
        mine = [e for e in log if e[0] == w]
        assert all(b[1] == a[4] + h[w] for a, b in zip(mine, mine[1:]))


def old_afedpg(eng):
    """The AFedPG loop of the virtual clock before delays.server_link: each exchange costs
    kappa_i in parallel, the update takes no time (kept verbatim as the oracle)."""
    n, opt, eta = eng.n, eng.opt, eng.cfg["algo"]["eta"]
    k, queue, held = 0, [], {}
    for w in range(n):
        held[w] = (opt.theta.copy(), opt.theta_prev.copy(), 0)
        heapq.heappush(queue, (eng.h[w] + eng.kappa[w], w))
    while True:
        t, w = heapq.heappop(queue)
        th, thp, version = held[w]
        theta_tilde = th + ((1.0 - eta) / eta) * (th - thp)
        traj = eng._rollout(w, theta_tilde)
        g = np.zeros(eng.d)
        eng.samplers[w].add_grad(theta_tilde, traj, 1.0, g)
        eng.staleness.append(k - version)
        opt.initialise(g) if k == 0 else opt.step(g)
        eng.book.comm_bytes += 16 * eng.d  # the one change: theta_tilde goes down, not 2d
        record = eng.book.record(k, t, one_gradient_stats(n, w, traj.T, traj.ret),
                                 [[traj.ret] if i == w else [] for i in range(n)], opt.theta,
                                 g=g)  # grad_norm, recorded since (not part of the time model)
        record["staleness"] = eng.staleness[-1]
        eng.on_round(record)
        k += 1
        if eng.book.should_stop(k - 1, t, 0):
            return
        held[w] = (opt.theta.copy(), opt.theta_prev.copy(), k)
        cost = eng._cost(w, traj) if eng.per_step else eng.h[w]
        heapq.heappush(queue, (t + cost + eng.kappa[w], w))


@pytest.mark.parametrize("time_model", ["trajectory", "step"])
def test_parallel_link_is_the_old_model_bit_for_bit(time_model):
    sets = speeds([1.0, 2.5, 0.7], [0.3, 1.1, 2.0]) + [
        "algo.name=afedpg", "run.max_rounds=30", "delays.server_link=parallel",
        f"sim.time_model={time_model}"]
    new, old = [], []
    a = sim(3, sets, new)
    a.run()
    b = sim(3, sets, old)
    old_afedpg(b)
    assert len(new) == 31 and json.dumps(new) == json.dumps(old)
    assert a.opt.theta.tobytes() == b.opt.theta.tobytes()


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
    cfg = tmp_path / "c.toml"
    cfg.write_text("[algo]\nM = 4\n")  # a config file of the user's: no model is made up
    p = cli("simulate", cfg, "--out", tmp_path / "s", cwd=tmp_path)
    assert p.returncode == 2 and "delays.compute" in p.stderr and p.stderr.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_simulate_without_a_config_uses_sqrt_and_says_so(cli, tmp_path):
    out = tmp_path / "s"
    p = cli("simulate", "--workers", "3", "--set", "run.max_rounds=1", "--out", out,
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "delays.compute = 'sqrt'" in p.stdout.splitlines()[0]
    assert 'compute = "sqrt"' in (out / "config.toml").read_text()
    # the user's own choice wins, and then nothing is announced
    out2 = tmp_path / "s2"
    p = cli("simulate", "--workers", "3", "--set", "run.max_rounds=1", "--set",
            "delays.compute=linear", "--out", out2, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "sqrt" not in p.stdout and 'compute = "linear"' in (out2 / "config.toml").read_text()


def test_warmup_compiles_kernels_used_by_sim():
    assert kernels.warmup() >= 0.0
