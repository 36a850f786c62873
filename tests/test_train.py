"""Single-rank training end to end through the real command line."""

import json
import math

import numpy as np

from nigt_hpc import config

FIELDS = {"round", "time_s", "env_steps", "grads", "grads_per_worker", "discarded",
          "episodes", "return_mean", "return_per_worker", "collectives", "comm_bytes",
          "theta_norm"}


def read_metrics(run_dir):
    with open(run_dir / "metrics.jsonl") as fh:
        return [json.loads(line) for line in fh]


def test_short_run_writes_every_file_and_field(cli, tmp_path):
    out = tmp_path / "run"
    p = cli("train", "--out", out, "--set", "run.max_rounds=4", "--set", "algo.M=4",
            "--set", "algo.M_init=6", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "done: max_rounds reached after 4 rounds" in p.stdout
    rows = read_metrics(out)
    assert [r["round"] for r in rows] == [0, 1, 2, 3, 4]
    assert all(FIELDS <= set(r) for r in rows)
    assert rows[0]["grads"] == 6 and all(r["grads"] == 4 for r in rows[1:])
    assert all(r["grads_per_worker"] == [r["grads"]] for r in rows)
    steps = [r["env_steps"] for r in rows]
    assert steps == sorted(steps) and steps[0] > 0
    assert [r["collectives"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["comm_bytes"] == 5 * 8 * 10
    theta = np.load(out / "theta.npy")
    assert rows[-1]["theta_norm"] == float(np.linalg.norm(theta))
    cfg = config.load(str(out / "config.toml"))  # the resolved config loads back as-is
    assert cfg["algo"]["M"] == 4
    prof = json.loads((out / "profile.json").read_text())
    assert prof["ranks"][0]["seconds"]["env_step"] > 0
    assert "compile_s" in prof["ranks"][0]


def test_same_seed_same_run(cli, tmp_path):
    norms = []
    for name in ("a", "b"):
        p = cli("train", "--out", tmp_path / name, "--quiet", "--set", "run.max_rounds=5",
                cwd=tmp_path)
        assert p.returncode == 0 and p.stdout == ""
        norms.append([r["theta_norm"] for r in read_metrics(tmp_path / name)])
    assert norms[0] == norms[1]


def test_force_reuses_directory(cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("old\n")
    (out / "notes.txt").write_text("mine\n")
    p = cli("train", "--out", out, "--force", "--quiet", "--set", "run.max_rounds=1",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "old" not in (out / "metrics.jsonl").read_text()
    assert (out / "notes.txt").read_text() == "mine\n"


def test_builtin_default_solves_cartpole(cli, tmp_path):
    out = tmp_path / "run"
    p = cli("train", "--out", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "target return reached" in p.stdout
    rows = read_metrics(out)
    assert rows[-1]["return_window"] >= 475.0
    assert not math.isnan(rows[-1]["theta_norm"])
