"""jobs/mujoco/run.py keeps each finished run's evaluation curve as a CSV and rebuilds the
figures and the table from those CSVs once the run folders are gone (RESULTS.md's figures
must survive a cleaned ``runs/``)."""

import importlib.util
import json
import os

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "..", "jobs", "mujoco", "run.py")


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("mujoco_runner", RUNNER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_run(path, rows, final):
    """A run folder as `nigt-hpc train` leaves it, reduced to what the runner reads."""
    os.makedirs(path)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for t, n, r in rows:
            f.write(json.dumps({"time_s": t, "env_steps": n, "eval_return": r}) + "\n")
            f.write(json.dumps({"time_s": t + 0.5, "env_steps": n + 7, "eval_return": None}) + "\n")
    np.savez(os.path.join(path, "policy.npz"),
             policy_json=np.array(json.dumps({"eval_return": final})))


def test_curves_survive_the_run_folders(runner, tmp_path, capsys):
    out, data = tmp_path / "runs", tmp_path / "data"
    fake_run(str(out / "hopper_s0"), [(0.0, 0, 12.5), (30.2, 400_000, 1200.25)], 1190.5)
    fake_run(str(out / "hopper_s1"), [(0.0, 0, 10.0), (29.8, 380_000, 2600.0)], 2610.0)
    argv = ["hopper", "--seeds", "0", "1", "2", "--out", str(out), "--data", str(data),
            "--plot-only"]
    assert runner.main(argv) == 0
    first = capsys.readouterr().out
    assert "over seeds [0, 1]" in first and "median 1900" in first
    assert sorted(os.listdir(data)) == ["hopper_s0.csv", "hopper_s1.csv"]
    np.testing.assert_allclose(runner.curve(str(data / "hopper_s0.csv")),
                               [[0.0, 0, 12.5], [30.2, 400_000, 1200.25]])
    assert runner.final_eval(str(data / "hopper_s1.csv")) == 2610.0

    for name in os.listdir(out):  # the run folders are cleaned away ...
        if os.path.isdir(out / name):
            for f in os.listdir(out / name):
                os.remove(out / name / f)
            os.rmdir(out / name)
    os.remove(out / "hopper_wallclock.png")
    assert runner.main(argv) == 0  # ... and the same table and figures come back
    again = capsys.readouterr().out
    assert again.split("; plots")[0] == first.split("; plots")[0]
    assert os.path.exists(out / "hopper_wallclock.png")
    assert os.path.exists(out / "hopper_steps.png")
