"""Checkpoint and resume: a run killed by a signal and resumed ends bit for bit where an
uninterrupted run ends, with every round in metrics.jsonl exactly once."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.test_mpi_cli import launch, mpiexec

RUN = ["--set", "algo.name=sync_nigt", "--set", "run.max_rounds=120", "--set",
       "run.target_return=inf", "--set", "env.id=Pendulum-v1", "--set", "env.horizon=100",
       "--set", "policy.kind=mlp", "--set", "policy.hidden=[16]", "--set", "algo.M=8",
       "--quiet"]


def rounds(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def start(n, out, cwd):
    env = dict(os.environ, MPIEXEC_TIMEOUT="120",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "nigt_hpc", "train", *RUN, "--out", str(out)]
    if n > 1:
        cmd = [mpiexec(), "-n", str(n)] + cmd
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("n,sig", [(1, signal.SIGTERM), (2, signal.SIGTERM),
                                   (2, signal.SIGUSR1)])
def test_killed_and_resumed_run_matches_uninterrupted(tmp_path, n, sig):
    if n > 1 and mpiexec() is None:
        pytest.skip("no mpiexec")
    full, cut = tmp_path / "full", tmp_path / "cut"
    p = start(n, full, tmp_path)
    assert p.wait(timeout=120) == 0, p.stderr.read()
    p = start(n, cut, tmp_path)
    metrics = cut / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 30:
            break
        time.sleep(0.02)
    p.send_signal(sig)
    assert p.wait(timeout=60) == 128 + sig, p.stderr.read()
    assert (cut / "checkpoint.npz").exists()
    stopped_at = len(rounds(cut))
    assert stopped_at < 121
    r = launch(n, "train", "--resume", str(cut), "--quiet", cwd=tmp_path) if n > 1 else \
        subprocess.run([sys.executable, "-m", "nigt_hpc", "train", "--resume", str(cut),
                        "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    a, b = rounds(full), rounds(cut)
    assert [x["round"] for x in b] == list(range(121))  # none missing, none repeated
    assert [x["theta_norm"] for x in a] == [x["theta_norm"] for x in b]
    assert [x["env_steps"] for x in a] == [x["env_steps"] for x in b]
    np.testing.assert_array_equal(np.load(full / "theta.npy"), np.load(cut / "theta.npy"))
    assert "resumed_from_round" in (cut / "config.toml").read_text()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("done")
    out = d / "run"
    p = subprocess.run([sys.executable, "-m", "nigt_hpc", "train", "--out", str(out), "--quiet",
                        "--set", "run.max_rounds=3"], cwd=d, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == 0, p.stderr
    return out


def test_resume_can_raise_a_limit(cli, finished_run, tmp_path):
    p = cli("train", "--resume", finished_run, "--set", "run.max_rounds=5", "--quiet",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert [r["round"] for r in rounds(finished_run)] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("how,needle", [
    ("changed_algo_key", "algo.M differs"),
    ("corrupt", "corrupt"),
    ("missing", "no checkpoint.npz"),
    ("with_out", "takes no --out"),
    ("not_a_run", "no config.toml"),
])
def test_bad_resume_is_refused_and_touches_nothing(cli, finished_run, tmp_path, how, needle):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    args = ["train", "--resume", run]
    if how == "changed_algo_key":
        args += ["--set", "algo.M=3"]
    elif how == "corrupt":
        (run / "checkpoint.npz").write_bytes(b"not a zip file")
    elif how == "missing":
        (run / "checkpoint.npz").unlink()
    elif how == "with_out":
        args += ["--out", tmp_path / "elsewhere"]
    elif how == "not_a_run":
        (run / "config.toml").unlink()
    before = {f: (run / f).read_bytes() for f in os.listdir(run)}
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ") and needle in p.stderr
    assert {f: (run / f).read_bytes() for f in os.listdir(run)} == before


def test_resume_with_another_rank_count_is_refused(finished_run, tmp_path):
    if mpiexec() is None:
        pytest.skip("no mpiexec")
    p = launch(2, "train", "--resume", str(finished_run), cwd=tmp_path)
    assert p.returncode == 2
    assert "written by 1 ranks" in p.stderr and p.stderr.count("error:") == 1


def test_afedpg_run_can_be_extended_by_resume(tmp_path):
    if mpiexec() is None:
        pytest.skip("no mpiexec")
    out = tmp_path / "af"
    p = launch(2, "train", "--set", "algo.name=afedpg", "--set", "run.max_rounds=20",
               "--out", str(out), "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = launch(2, "train", "--resume", str(out), "--set", "run.max_rounds=40", "--quiet",
               cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = rounds(out)
    assert [r["round"] for r in rows] == list(range(41))
    steps = [r["env_steps"] for r in rows]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


def check_rule(algo, rows, M, n_workers):
    """Assert each round's counts obey ``algo``'s rule (round 0 is M_init = M here)."""
    for r in rows:
        g = r["grads_per_worker"]
        assert r["grads"] == sum(g)
        if algo in ("rennala_nigt", "rennala_pg"):
            assert sum(g) == M, r  # exactly M, from whoever finished first
        elif algo in ("sync_nigt", "sync_pg"):
            assert g == [-(-M // n_workers)] * n_workers, r
        elif algo == "malenia_nigt":
            assert min(g) >= 1 and n_workers / sum(1 / x for x in g) >= M / n_workers - 1e-9
        else:  # afedpg: one gradient per server update
            assert sum(g) == 1, r


KR = ["--set", "env.id=tests.envs_fixture:NigtFaulty-v0", "--set",
      'env.kwargs={how = "slow", slow_s = 0.0005}', "--set", "run.target_return=inf",
      "--set", "algo.M=6", "--set", "algo.M_init=6", "--set", "run.checkpoint_every_s=0.2",
      "--quiet"]


@pytest.mark.skipif(mpiexec() is None, reason="no mpiexec")
@pytest.mark.parametrize("algo", ["rennala_nigt", "malenia_nigt", "sync_nigt", "rennala_pg",
                                  "sync_pg", "afedpg"])
def test_kill_and_resume_keeps_every_rule(tmp_path, algo):
    """SIGTERM mid-run, then resume to the limit: every round exactly once, and after the
    resume as before it each round obeys the rule (a resumed Rennala job once accepted 347
    gradients a round: its RMA counter restarted at 0 while the restored base did not)."""
    n = 3 if algo == "afedpg" else 2
    limit = 60 if algo == "afedpg" else 16
    out = tmp_path / "r"
    env = dict(os.environ, MPIEXEC_TIMEOUT="200",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    args = [mpiexec(), "-n", str(n), sys.executable, "-m", "nigt_hpc", "train", *KR,
            "--set", f"algo.name={algo}", "--set", f"run.max_rounds={limit}",
            "--out", str(out)]
    p = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 150
    while time.time() < deadline and p.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= limit // 3:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=120) == 143, p.stderr.read()
    cut = len(rounds(out))
    assert 0 < cut <= limit
    r = launch(n, "train", "--resume", str(out), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = rounds(out)
    assert [x["round"] for x in rows] == list(range(limit + 1))
    steps = [x["env_steps"] for x in rows]
    assert steps == sorted(steps)
    check_rule(algo, rows, 6, n - 1 if algo == "afedpg" else n)
    assert "resumed_from_round" in (out / "config.toml").read_text()
