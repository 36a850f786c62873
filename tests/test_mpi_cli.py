"""The real command line under ``mpiexec -n 2``, launched from serial pytest."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


pytestmark = pytest.mark.skipif(mpiexec() is None, reason="no mpiexec")


def launch(n, *args, cwd):
    env = dict(os.environ, MPIEXEC_TIMEOUT="120",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([mpiexec(), "-n", str(n), sys.executable, "-m", "nigt_hpc", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_two_ranks_train_and_split_the_batch(tmp_path):
    out = tmp_path / "run"
    p = launch(2, "train", "--out", str(out), "--set", "run.max_rounds=3", "--set",
               "algo.M=6", "--set", "algo.name=sync_nigt", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("nigt-hpc train:") == 1  # only rank 0 talks
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    assert all(r["grads_per_worker"] == [3, 3] for r in rows[1:])
    assert "ranks = 2" in (out / "config.toml").read_text()
    prof = json.loads((out / "profile.json").read_text())
    assert [r["rank"] for r in prof["ranks"]] == [0, 1]
    assert all(30 < r["max_rss_mb"] < 4096 for r in prof["ranks"])  # each rank's own peak


def test_bad_input_under_mpi_prints_one_line_and_exits_2(tmp_path):
    p = launch(2, "train", "--set", "algo.eta=2", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.count("error:") == 1 and "algo.eta" in p.stderr
    assert not (tmp_path / "r").exists()


def test_two_ranks_rennala_accepts_exactly_M_and_report_reads_the_run(tmp_path):
    out = tmp_path / "run"
    p = launch(2, "train", "--out", str(out), "--set", "run.max_rounds=5", "--set",
               "algo.M=7", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(sum(r["grads_per_worker"]) == 7 == r["grads"] for r in rows[1:])
    rep = subprocess.run([sys.executable, "-m", "nigt_hpc", "report", str(out)],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert rep.returncode == 0, rep.stderr
    assert "rennala_nigt on CartPole-v1, 2 rank(s)" in rep.stdout
    for phase in ("env_step", "policy", "grad", "wait", "collective", "idle", "other"):
        assert phase in rep.stdout
    assert "idle fraction" in rep.stdout


def test_trace_has_one_track_per_rank_and_progress_shows_idle(tmp_path):
    out = tmp_path / "run"
    p = launch(2, "train", "--out", str(out), "--set", "run.max_rounds=4", "--set",
               "run.trace=true", "--set", "run.progress_every_s=0", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    status = [x for x in p.stdout.splitlines() if x.startswith("round ")]
    assert len(status) == 5 and all("idle" in x and "k/s" in x for x in status)
    trace = json.loads((out / "trace.json").read_text())["traceEvents"]
    names = {e["args"]["name"] for e in trace if e["ph"] == "M"}
    assert names == {"rank 0", "rank 1"}
    for rank in (0, 1):
        mine = [e for e in trace if e["ph"] == "X" and e["tid"] == rank]
        assert [e["name"] for e in mine].count("allreduce") == 5
        assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in mine)


@pytest.mark.parametrize("algo", ["rennala_nigt", "malenia_nigt", "sync_nigt"])
def test_real_rounds_keep_the_rule_and_are_never_shorter_than_the_virtual_clock(tmp_path,
                                                                              algo):
    """The same model on 2 real ranks (emulated per-step delays h = [1, 3] x 0.5 ms) and on
    the virtual clock (per-step time model).  Only what load cannot change is asserted: each
    rule's counts, and that a real round is never shorter than the virtual one (emulated
    delays are a floor; load only lengthens rounds).  How closely the two agree on an idle
    machine is a benchmark: jobs/local/crosscheck.sh."""
    common = ["--set", "env.id=Pendulum-v1", "--set", "env.horizon=20", "--set",
              "run.target_return=inf", "--set", "run.max_rounds=25", "--set",
              f"algo.name={algo}", "--set", "algo.M=6", "--set", "algo.M_init=6", "--set",
              "delays.compute=from_list", "--set", "delays.compute_list=[1.0, 3.0]", "--set",
              "delays.compute_unit_s=5e-4", "--set", "mpi.poll_every_steps=4", "--quiet"]
    p = launch(2, "train", *common, "--out", str(tmp_path / "mpi"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    q = subprocess.run([sys.executable, "-m", "nigt_hpc", "simulate", *common, "--workers", "2",
                        "--set", "sim.time_model=step", "--out", str(tmp_path / "sim")],
                       cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert q.returncode == 0, q.stderr
    import numpy as np

    def rows(d):
        return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]

    real, virtual = rows(tmp_path / "mpi"), rows(tmp_path / "sim")
    for rs in (real, virtual):
        assert [r["round"] for r in rs] == list(range(26))
        for r in rs[1:]:
            g = r["grads_per_worker"]
            if algo == "rennala_nigt":
                assert sum(g) == 6
            elif algo == "sync_nigt":
                assert g == [3, 3]
            else:  # Malenia: every worker, harmonic mean of the counts >= M / n
                assert min(g) >= 1 and 2 / sum(1 / x for x in g) >= 3 - 1e-9
    t_real = float(np.median(np.diff([r["time_s"] for r in real])))
    t_virtual = float(np.median(np.diff([r["time_s"] for r in virtual])))
    assert t_real >= 0.85 * t_virtual, (t_real, t_virtual)


def test_bench_comm_rows_and_json(tmp_path):
    p = launch(2, "bench", "comm", "--repeat", "1", "--json", str(tmp_path / "c.json"),
               cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("comm, 2 ranks") == 1  # rank 0 prints
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert [r["row"] for r in rows][-1] == "rma counter fetch_add"
    assert {r["row"] for r in rows} >= {"allreduce d=100", "allreduce d=1000000"}
    for r in rows:
        assert r["ours_us"] > 0 and r["reference_us"] > 0
        assert r["ratio"] == pytest.approx(r["ours_us"] / r["reference_us"])


def test_afedpg_on_real_ranks_pays_the_shared_server_link(tmp_path):
    """Two workers, h = 20 ms per gradient, kappa = 40 ms: the server's one link carries
    each exchange (upload 20 ms, download 20 ms) in turn, so updates come every 40 ms on the
    virtual clock (parallel links: pairs every 60 ms, a median of 30 ms).  Emulated time is
    a floor that load cannot lower, so only the lower bound is asserted."""
    import numpy as np

    common = ["--set", "algo.name=afedpg", "--set", "run.max_rounds=30", "--set",
              "env.id=Pendulum-v1", "--set", "env.horizon=20", "--set", "delays.compute=const",
              "--set", "delays.compute_unit_s=0.02", "--set", "delays.per=trajectory", "--set",
              "delays.comm=const", "--set", "delays.comm_unit_s=0.04", "--quiet"]
    p = launch(3, "train", *common, "--out", str(tmp_path / "mpi"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    q = subprocess.run([sys.executable, "-m", "nigt_hpc", "simulate", *common, "--workers", "2",
                        "--out", str(tmp_path / "sim")], cwd=tmp_path, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert q.returncode == 0, q.stderr

    def per_update(d):
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        return float(np.median(np.diff([r["time_s"] for r in rows])))

    virtual = per_update(tmp_path / "sim")
    assert virtual == pytest.approx(0.04)
    assert per_update(tmp_path / "mpi") >= 0.85 * virtual
