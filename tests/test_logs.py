"""``run.log`` writers (metrics.csv, TensorBoard), the grad_norm / policy_std fields, and
``report --plot`` over several runs: real runs through the command line, files read back."""

import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.test_mpi_cli import launch, mpiexec

SIM = ["simulate", "--workers", "3", "--set", "delays.compute=const", "--quiet"]


def rows_of(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def csv_rows(run_dir):
    """Return metrics.csv as records: empty cells are null, the others JSON values."""
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as fh:
        return [{k: (None if v == "" else json.loads(v)) for k, v in r.items()}
                for r in csv.DictReader(fh)]


def read_events(path):
    """Return the Event protos of one TFRecord event file, checking each length field."""
    from tensorboardX.proto import event_pb2

    out = []
    data = path.read_bytes()
    i = 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i : i + 8])
        i += 12  # length, its masked CRC
        ev = event_pb2.Event()
        ev.ParseFromString(data[i : i + n])
        out.append(ev)
        i += n + 4  # payload, its CRC
    assert i == len(data)  # whole records only
    return out


def tb_scalars(run_dir):
    """Return {tag: {step: value}} as TensorBoard shows it: event files in time order, a
    SessionLog START at step s (purge_step) dropping what earlier files had at steps >= s."""
    files = [read_events(p) for p in (run_dir / "tb").iterdir()]
    files.sort(key=lambda evs: evs[0].wall_time)
    seen = {}
    for evs in files:
        for ev in evs:
            if ev.HasField("session_log") and ev.session_log.status == ev.session_log.START:
                for tag in seen:
                    seen[tag] = {s: v for s, v in seen[tag].items() if s < ev.step}
            for v in ev.summary.value:
                seen.setdefault(v.tag, {})[ev.step] = v.simple_value
    return seen


def test_csv_holds_the_jsonl_rows(cli, tmp_path):
    out = tmp_path / "s"
    p = cli(*SIM, "--set", "run.max_rounds=4", "--set", 'run.log=["jsonl","csv"]',
            "--out", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    js = rows_of(out)
    assert len(js) == 5 and csv_rows(out) == js
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == list(js[0])
    assert not (out / "tb").exists()  # not asked for


def test_tensorboard_event_file_reads_back(cli, tmp_path):
    pytest.importorskip("tensorboardX")
    out = tmp_path / "s"
    p = cli(*SIM, "--set", "run.max_rounds=3", "--set", 'run.log=["tensorboard"]',
            "--out", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    js = rows_of(out)
    tags = tb_scalars(out)
    print({t: tags[t] for t in sorted(tags)})  # shown with pytest -s
    for key in ("return_window", "env_steps", "grad_norm", "theta_norm", "time_s"):
        assert tags[key] == {r["round"]: pytest.approx(r[key], rel=1e-6) for r in js}
    assert sorted(tags["grads_per_worker/2"]) == [0, 1, 2, 3]
    assert not (out / "metrics.csv").exists()
    p = cli(*SIM, "--set", "run.max_rounds=1", "--out", out, "--force", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not (out / "tb").exists()  # --force removes this package's event files too


def test_tensorboard_without_its_package_is_one_line_and_writes_nothing(cli, tmp_path):
    fake = tmp_path / "hide" / "tensorboardX"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named tensorboardX')\n")
    out = tmp_path / "s"
    p = cli(*SIM, "--set", 'run.log=["tensorboard"]', "--out", out, cwd=tmp_path,
            env={"PYTHONPATH": str(tmp_path / "hide")})
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "tensorboardX" in p.stderr
    assert "pip install 'nigt_hpc[tensorboard]'" in p.stderr
    assert not out.exists()


@pytest.mark.parametrize("value,needle", [('["csv","xml"]', "run.log[1] = 'xml'"),
                                          ('["csv","csv"]', "twice"),
                                          ('"csv"', "run.log must be list of str")])
def test_bad_run_log_is_one_error_line(cli, tmp_path, value, needle):
    p = cli("check", "--set", f"run.log={value}", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and needle in p.stderr, p.stderr


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))


def test_resume_keeps_csv_and_tensorboard_consistent(cli, tmp_path):
    """A 1-rank run to max_rounds, resumed to a larger one: every round once in all three."""
    pytest.importorskip("tensorboardX")
    out = tmp_path / "r"
    p = cli("train", "--quiet", "--set", "run.max_rounds=3", "--set",
            'run.log=["csv","tensorboard"]', "--out", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = cli("train", "--resume", out, "--quiet", "--set", "run.max_rounds=7", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    js = rows_of(out)
    assert [r["round"] for r in js] == list(range(8))
    assert csv_rows(out) == js
    assert tb_scalars(out)["env_steps"] == {r["round"]: r["env_steps"] for r in js}
    assert len(list((out / "tb").iterdir())) == 2  # the resumed job's own event file


def test_kill_and_resume_cuts_csv_with_jsonl(tmp_path):
    """SIGKILL between checkpoints leaves rounds (and maybe half a CSV line) after the last
    checkpoint; the resume redoes them, and metrics.csv matches metrics.jsonl row for row."""
    from nigt_hpc import checkpoint

    out = tmp_path / "k"
    cmd = [sys.executable, "-m", "nigt_hpc", "train", "--quiet", "--out", str(out),
           "--set", "run.max_rounds=100000", "--set", "run.target_return=inf",
           "--set", "run.checkpoint_every_s=0.3", "--set", 'run.log=["csv"]']
    p = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and p.poll() is None:
            if (out / "checkpoint.npz").exists() and len(rows_of(out)) >= 40:
                break
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    state = checkpoint.load(str(out))[1]
    before = len(rows_of(out))
    limit = state["round"] + 5
    r = subprocess.run([sys.executable, "-m", "nigt_hpc", "train", "--resume", str(out),
                        "--quiet", "--set", f"run.max_rounds={limit}"], cwd=tmp_path,
                       env=_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    js = rows_of(out)
    assert [x["round"] for x in js] == list(range(limit + 1))
    assert csv_rows(out) == js
    print(f"killed with {before} rounds in metrics.jsonl, checkpoint after round "
          f"{state['round']}; resumed to {limit}")


def test_grad_norm_and_policy_std_match_the_step(cli, tmp_path):
    """One round of plain PG (theta_1 = theta_0 + lr g_0) on 1 and 2 MPI ranks and on the
    virtual clock: grad_norm is ||theta_1 - theta_0|| / lr and policy_std the log-std
    head's."""
    from nigt_hpc import config, run

    sets = ["algo.name=sync_pg", "algo.lr=0.01", "env.id=Pendulum-v1", "env.horizon=50",
            "policy.head=gaussian_logstd", "policy.init_log_std=-0.3", "algo.M=4",
            "algo.M_init=4", "run.max_rounds=0", "run.max_env_steps=1",
            "run.eval_episodes=0", "run.target_return=inf", 'run.log=["csv"]']
    cfg = config.load(None, sets)
    spec = run.build(cfg, 0)[2]
    theta0 = spec.init_theta(cfg["run"]["seed"], -0.3)
    args = [a for s in sets for a in ("--set", s)]
    jobs = [(1, ["train", "--quiet"], tmp_path / "t"), (0, SIM, tmp_path / "s")]
    if mpiexec() is not None:  # g summed by a real 2-rank Allreduce
        jobs.append((2, ["train", "--quiet"], tmp_path / "t2"))
    for ranks, cmd, out in jobs:
        p = (launch(ranks, *cmd, *args, "--out", str(out), cwd=tmp_path) if ranks == 2
             else cli(*cmd, *args, "--out", out, cwd=tmp_path))
        assert p.returncode == 0, p.stderr
        (rec,) = rows_of(out)
        assert csv_rows(out) == [rec]  # rank 0 wrote it once
        theta1 = np.load(out / "theta.npy")
        assert rec["grad_norm"] > 0
        assert rec["grad_norm"] == pytest.approx(np.linalg.norm(theta1 - theta0) / 0.01,
                                                 rel=1e-9)
        assert rec["policy_std"] == pytest.approx(np.mean(np.exp(theta1[-spec.act_dim:])),
                                                  rel=1e-12)


def test_roundbook_record_grad_norm_and_no_policy_std_by_default():
    from nigt_hpc import config
    from nigt_hpc.engine.common import STATS, RoundBook

    book = RoundBook(config.defaults(), 2)
    stats = np.zeros((2, len(STATS)))
    stats[:, 0] = 1
    g = np.array([3.0, 4.0, 0.0])
    rec = book.record(0, 1.0, stats, [[], []], np.zeros(3), g=g)
    assert rec["grad_norm"] == 5.0 and "policy_std" not in rec
    assert "grad_norm" not in book.record(1, 2.0, stats, [[], []], np.zeros(3))


def test_report_plot_compares_runs_with_labels_from_the_data(cli, tmp_path):
    pytest.importorskip("matplotlib")
    from nigt_hpc import report

    runs = []
    for name, extra in (("a", ["--set", "run.seed=1"]), ("b", ["--set", "run.seed=1"]),
                        ("c", ["--set", "algo.name=sync_nigt"])):
        runs.append(tmp_path / name)
        p = cli(*SIM, "--set", "run.max_rounds=2", *extra, "--out", runs[-1], cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    fig = tmp_path / "cmp.png"
    p = cli("report", *runs, "--plot", "--out", fig, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = p.stdout.splitlines()[-1]
    assert line.startswith(f"wrote {fig} (--out)"), line
    path, labels = report.compare([str(r) for r in runs], str(tmp_path / "again.png"))
    # a and b are the same algorithm, seed and workers: their directory names tell them apart
    assert labels == ["a", "b", "sync_nigt seed 0, 3 virtual workers"]
    assert "; ".join(labels) in line
    p = cli("report", *runs[:2], "--plot", cwd=tmp_path)  # default: next to the first run
    assert p.returncode == 0, p.stderr
    assert (runs[0] / "plot_compare.png").exists()
    assert "(default: the first run directory)" in p.stdout


@pytest.mark.parametrize("args,needle", [(["--out", "x.png"], "needs --plot"),
                                         (["--plot", "--out", "x.txt"], ".png"),
                                         (["--plot", "--out", "no/x.png"], "existing")])
def test_report_out_errors_write_nothing(cli, tmp_path, args, needle):
    out = tmp_path / "s"
    p = cli(*SIM, "--set", "run.max_rounds=1", "--out", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    before = sorted(os.listdir(out))
    p = cli("report", out, out, *args, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and needle in p.stderr, p.stderr
    assert sorted(os.listdir(out)) == before and not (tmp_path / "x.png").exists()


def test_state_dependent_heads_report_std_and_entropy_over_rank0s_last_inputs():
    """softmax: policy_entropy; softplus: policy_std, both over the last trajectory's inputs
    (a zero theta gives the uniform policy, entropy ln(actions), sigma softplus(0))."""
    import math

    import numpy as np
    from nigt_hpc.kernels import SIGMA_MIN

    from nigt_hpc import config, logs, run
    from nigt_hpc.rollout import make_sampler

    for sets, field, want in (
            (["env.id=CartPole-v1"], "policy_entropy", math.log(2)),
            (["env.id=Pendulum-v1", "policy.kind=mlp", "policy.hidden=[8]"], "policy_std",
             math.log(2) + SIGMA_MIN)):
        cfg = config.load(None, sets)
        env, info, spec = run.build(cfg, 0)
        smp = make_sampler(cfg, env, spec, info, 0)
        theta = spec.init_theta(0, -0.5)
        f = logs.policy_std_fn(spec, smp.last_inputs)
        assert f(theta) == {field: None}  # nothing sampled yet
        smp.rollout(theta)
        assert 0 < len(smp.last_inputs()) <= 32
        got = f(theta)[field]
        assert got is not None and got > 0
        assert f(np.zeros_like(theta))[field] == pytest.approx(want, rel=1e-12)
        env.close()
