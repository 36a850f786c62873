"""The Python API: nigt_hpc.train / simulate return results and raise ConfigError."""

import subprocess
import sys

import pytest

import nigt_hpc
from tests.conftest import ROOT
from tests.test_mpi_cli import mpiexec


def test_train_in_process_returns_the_run_and_its_policy(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job, else Python's
    res = nigt_hpc.train({"run": {"max_rounds": 3}, "algo": {"M": 4, "M_init": 4}},
                         out=str(tmp_path / "r"))
    assert res.status == 0 and res.run_dir == str(tmp_path / "r")
    assert res.metrics["round"] == 3 and res.summary["rounds"] == 3
    assert res.policy.env_id == "CartPole-v1"
    assert res.policy.act([0.0, 0.0, 0.0, 0.0]) in (0, 1)
    assert signal.getsignal(signal.SIGINT) == before  # the stop handlers are given back


@pytest.mark.parametrize("config,sets,needle", [
    ({"algo": {"eta": 2.0}}, [], "algo.eta"),
    ({"algo": {"nam": "x"}}, [], "unknown config key 'algo.nam'"),
    (None, ["run.max_rounds=-1"], "run.max_rounds"),
])
def test_bad_config_raises_the_cli_message(tmp_path, config, sets, needle):
    with pytest.raises(nigt_hpc.ConfigError, match=needle.replace(".", r"\.")):
        nigt_hpc.train(config, sets=sets, out=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_an_existing_run_directory_raises(tmp_path):
    nigt_hpc.train(None, sets=["run.max_rounds=1"], out=str(tmp_path / "r"))
    with pytest.raises(nigt_hpc.ConfigError, match="already exists"):
        nigt_hpc.train(None, sets=["run.max_rounds=1"], out=str(tmp_path / "r"))


def test_simulate_returns_virtual_time(tmp_path):
    res = nigt_hpc.simulate(None, sets=["run.max_rounds=2"], workers=3,
                            out=str(tmp_path / "s"))
    assert res.status == 0 and res.summary["rounds"] == 2 and res.metrics["round"] == 2


@pytest.mark.skipif(mpiexec() is None, reason="no mpiexec")
def test_a_script_under_mpiexec_trains_on_every_rank(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import nigt_hpc\n"
        f"res = nigt_hpc.train(sets=['run.max_rounds=2'], out={str(tmp_path / 'r')!r})\n"
        "from mpi4py import MPI\n"
        "print('rank', MPI.COMM_WORLD.Get_rank(), 'status', res.status, res.run_dir)\n")
    p = subprocess.run([mpiexec(), "-n", "2", sys.executable, str(script)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=180,
                       env={**__import__("os").environ, "PYTHONPATH": ROOT,
                            "MPIEXEC_TIMEOUT": "150"})
    assert p.returncode == 0, p.stderr
    assert f"rank 0 status 0 {tmp_path / 'r'}" in p.stdout
    assert f"rank 1 status 0 {tmp_path / 'r'}" in p.stdout
