"""Fault catalogue, engine side: no fault on any rank can hang a job or make it look
successful.  Each case runs the real command line on real ranks and asserts the exit
status, the one ``error:`` line naming the rank, and what is left on disk.  Only bounds
that no machine load can break are asserted on time (the job ends at all, well inside the
subprocess timeout); measured seconds are in the README's fault table."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.test_mpi_cli import mpiexec

pytestmark = pytest.mark.skipif(mpiexec() is None, reason="no mpiexec")

FAULTY = ["--set", "env.id=tests.envs_fixture:NigtFaulty-v0", "--quiet",
          "--set", "run.max_rounds=100000", "--set", "algo.M=4", "--set", "algo.M_init=4",
          "--set", "run.watchdog_s=3", "--set", "run.stop_grace_s=2"]


def faulty_on_rank1(how, at=200, marker=""):
    return ["--set", "env.heterogeneity=per_worker", "--set",
            f'env.per_worker=[{{kwargs = {{}}}}, {{kwargs = {{at = {at}, how = "{how}", '
            f'marker = "{marker}"}}}}]']


def wait_file(path, p, timeout=150):
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None and not path.exists():
        time.sleep(0.05)
    assert path.exists(), "the fault never began"


def popen(n, args, out, cwd):
    env = dict(os.environ, MPIEXEC_TIMEOUT="200",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "nigt_hpc", "train", *args, "--out", str(out)]
    if n > 1:
        cmd = [mpiexec(), "-n", str(n)] + cmd
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(p, timeout=200):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("the job did not end by itself")
    return p.returncode, err


def wait_rounds(out, k, p, timeout=150):
    """Block until ``out``'s metrics.jsonl has ``k`` rounds (or the job has ended)."""
    metrics = out / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= k:
            return
        time.sleep(0.05)


def rows(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def ckpt_round(out):
    with np.load(out / "checkpoint.npz") as z:
        return json.loads(str(z["state_json"]))["round"]


def error_lines(err):
    return [x for x in err.splitlines() if x.startswith("error:")]


@pytest.mark.parametrize("how", ["hang", "spin", "stop"])
def test_a_rank_that_never_reaches_the_boundary_ends_the_job_naming_it(tmp_path, how):
    out = tmp_path / "r"
    p = popen(2, FAULTY + faulty_on_rank1(how), out, tmp_path)
    code, err = finish(p)
    assert code == 1, err
    assert "rank(s) 1 did not reach the end of round" in error_lines(err)[0], err
    assert (out / "checkpoint.npz").exists()  # the last boundary's state is kept
    assert ckpt_round(out) == len(rows(out)) - 1


@pytest.mark.parametrize("how,code,text", [("exit0", 1, "os._exit(0) was called"),
                                           ("sysexit", 1, "SystemExit(0) was raised"),
                                           ("kbint", 130, "KeyboardInterrupt was raised")])
def test_an_env_that_exits_or_interrupts_ends_the_job_non_zero(tmp_path, how, code, text):
    p = popen(2, FAULTY + faulty_on_rank1(how), tmp_path / "r", tmp_path)
    got, err = finish(p)
    assert got == code, err
    assert any(x.startswith("error: rank 1:") and text in x for x in error_lines(err)), err


def test_sigterm_while_a_rank_is_stuck_exits_143_with_the_boundary_checkpoint(tmp_path):
    out = tmp_path / "r"
    marker = tmp_path / "stuck"
    p = popen(2, FAULTY + faulty_on_rank1("hang", at=1000, marker=marker)
              + ["--set", "run.watchdog_s=600"], out, tmp_path)
    wait_file(marker, p)
    os.killpg(p.pid, signal.SIGTERM)
    code, err = finish(p)
    assert code == 143, err
    assert "rank(s) 1 did not reach" in err
    assert ckpt_round(out) == len(rows(out)) - 1


def test_one_rank_stuck_in_an_env_step_still_honours_sigterm(tmp_path):
    out = tmp_path / "r"
    marker = tmp_path / "stuck"
    p = popen(1, FAULTY + ["--set", f'env.kwargs={{at = 1000, how = "hang", marker = "{marker}"}}',
                           "--set", "run.watchdog_s=600"], out, tmp_path)
    wait_file(marker, p)
    p.send_signal(signal.SIGTERM)
    code, err = finish(p)
    assert code == 143, err
    assert "rank 0: no progress" in error_lines(err)[0] and "after a stop signal" in err
    assert ckpt_round(out) == len(rows(out)) - 1


SLOW = ["--set", "env.id=tests.envs_fixture:NigtFaulty-v0", "--set",
        'env.kwargs={how = "slow", slow_s = 0.003}', "--set", "run.max_rounds=100000",
        "--set", "algo.M=200", "--set", "algo.M_init=4", "--quiet"]


def rank_pid(out, rank):
    """Return the pid of the rank process of the job writing to ``out`` (from /proc)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().split(b"\0")
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = dict(x.split(b"=", 1) for x in fh.read().split(b"\0") if b"=" in x)
        except OSError:
            continue
        if str(out).encode() in cmd and b"nigt_hpc" in cmd and b"-n" not in cmd:
            r = env.get(b"PMI_RANK", env.get(b"OMPI_COMM_WORLD_RANK"))
            if r is not None and int(r) == rank:
                return int(pid)
    raise AssertionError(f"no rank {rank} process found for {out}")


@pytest.mark.parametrize("algo,n,target", [("rennala_nigt", 2, 1), ("malenia_nigt", 2, 1),
                                           ("sync_nigt", 2, 0), ("afedpg", 3, 2)])
def test_a_signal_to_one_rank_is_honoured_mid_round(tmp_path, algo, n, target):
    """Rounds of 200 episodes (tens of seconds): a SIGTERM to a single rank ends the job
    long before the round could end, with 143 and the previous boundary's checkpoint."""
    out = tmp_path / "r"
    p = popen(n, SLOW + ["--set", f"algo.name={algo}"], out, tmp_path)
    wait_rounds(out, 1 if algo != "afedpg" else 5, p)
    assert p.poll() is None
    os.kill(rank_pid(out, target), signal.SIGTERM)
    code, err = finish(p)
    assert code == 143, err
    done = rows(out)
    assert ckpt_round(out) == len(done) - 1
    if algo != "afedpg":
        assert len(done) == 1  # round 1 (200 episodes) was abandoned, not finished


def test_afedpg_rejects_and_counts_non_finite_gradients(tmp_path):
    nan = ["--set", "algo.name=afedpg", "--set", "env.id=tests.envs_fixture:NigtNanReward-v0",
           "--set", "env.heterogeneity=per_worker", "--set",
           "env.per_worker=[{kwargs = {nan_every = 1000000}}, {kwargs = {nan_every = 1}}]",
           "--quiet"]
    out = tmp_path / "ok"
    code, err = finish(popen(3, nan + ["--set", "run.max_rounds=40", "--set",
                                       "run.max_nonfinite=100000"], out, tmp_path))
    assert code == 0, err
    done = rows(out)
    assert len(done) == 41 and all(r["grads_per_worker"] == [1, 0] for r in done)
    assert all(r["theta_norm"] == r["theta_norm"] for r in done)  # never NaN
    code, err = finish(popen(3, nan + ["--set", "run.max_rounds=100000", "--set",
                                       "run.max_nonfinite=3"], tmp_path / "bad", tmp_path))
    assert code == 1
    assert "4 non-finite gradients so far (run.max_nonfinite = 3)" in err
    assert "worker 1 (rank 2)" in err


def test_afedpg_prints_status_lines(tmp_path):
    p = popen(3, ["--set", "algo.name=afedpg", "--set", "run.max_rounds=30",
                  "--set", "run.progress_every_s=0"], tmp_path / "r", tmp_path)
    out, err = p.communicate(timeout=200)
    assert p.returncode == 0, err
    assert sum(x.startswith("round ") for x in out.splitlines()) == 31


def test_a_huge_emulated_transfer_still_honours_sigterm(tmp_path):
    out = tmp_path / "r"
    p = popen(2, ["--set", "delays.comm=const", "--set", "delays.comm_unit_s=3600",
                  "--set", "run.max_rounds=100000", "--quiet"], out, tmp_path)
    wait_file(out / ".lock", p)  # the job claimed its directory; handlers come next
    time.sleep(1.0)  # round 0 is soon under way: its first transfer is an hour long
    os.killpg(p.pid, signal.SIGTERM)
    code, err = finish(p, timeout=120)
    assert code == 143, err
    assert ckpt_round(out) == -1 and rows(out) == []  # nothing was completed


def test_two_sigterms_in_quick_succession_exit_143(tmp_path):
    out = tmp_path / "r"
    p = popen(2, ["--set", "run.max_rounds=1000000", "--set", "run.target_return=inf",
                  "--quiet"], out, tmp_path)
    wait_rounds(out, 5, p)
    os.killpg(p.pid, signal.SIGTERM)
    time.sleep(0.05)
    os.killpg(p.pid, signal.SIGTERM)
    code, err = finish(p)
    assert code == 143, err
    assert ckpt_round(out) == len(rows(out)) - 1
