"""Failures end the job within seconds, never hang it; non-finite gradients are rejected."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.test_mpi_cli import mpiexec

EXPLODE = ["--set", "env.id=tests.envs_fixture:NigtExploding-v0",
           "--set", "env.heterogeneity=per_worker",
           "--set", "env.per_worker=[{kwargs = {}}, {kwargs = {explode_at = 30}}]",
           "--set", "run.max_rounds=1000", "--quiet"]


@pytest.mark.skipif(mpiexec() is None, reason="no mpiexec")
@pytest.mark.parametrize("launcher", ["nigt-hpc", "python -m nigt_hpc", "python -m mpi4py"])
def test_exception_in_a_user_env_on_one_rank_ends_the_job(tmp_path, launcher):
    exe = os.path.join(os.path.dirname(sys.executable), "nigt-hpc")
    if launcher == "nigt-hpc":
        if not os.path.exists(exe):
            pytest.skip("nigt-hpc not installed next to this interpreter")
        cmd = [exe]
    elif launcher == "python -m nigt_hpc":
        cmd = [sys.executable, "-m", "nigt_hpc"]
    else:
        cmd = [sys.executable, "-m", "mpi4py", "-m", "nigt_hpc"]
    env = dict(os.environ, MPIEXEC_TIMEOUT="120",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    t0 = time.time()
    p = subprocess.run([mpiexec(), "-n", "2", *cmd, "train", *EXPLODE, "--out",
                        str(tmp_path / "r")], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    elapsed = time.time() - t0
    assert p.returncode != 0
    assert "rank 1" in p.stderr and "boom from the environment" in p.stderr, p.stderr
    assert elapsed < 60  # it ends; measured in seconds (see the closing note)


def test_a_rare_non_finite_gradient_is_rejected_and_counted(cli, tmp_path):
    out = tmp_path / "r"
    p = cli("train", "--out", out, "--quiet", "--set",
            "env.id=tests.envs_fixture:NigtNanReward-v0", "--set", "env.kwargs={nan_every = 7}",
            "--set", "run.max_rounds=8", "--set", "algo.M=4", "--set", "run.max_nonfinite=100",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["grads"] == 4 for r in rows[1:])  # only finite ones counted
    assert all(isinstance(r["theta_norm"], float) and r["theta_norm"] == r["theta_norm"]
               for r in rows)


def test_repeated_non_finite_gradients_abort_with_a_clear_message(cli, tmp_path):
    p = cli("train", "--out", tmp_path / "r", "--quiet", "--set",
            "env.id=tests.envs_fixture:NigtNanReward-v0", "--set", "run.max_nonfinite=3",
            cwd=tmp_path)
    assert p.returncode == 1
    assert "non-finite gradients" in p.stderr and "run.max_nonfinite = 3" in p.stderr
