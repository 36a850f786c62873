"""The example configs in examples/ train as written: a Dict-observation user env flattened
by FlattenObservation, and MiniGrid through its own ImgObsWrapper (the examples extra)."""

import json
import os

import pytest

from .conftest import ROOT


def _train(cli, tmp_path, name):
    out = tmp_path / name
    p = cli("train", os.path.join(ROOT, "examples", f"{name}.toml"), "--out", out,
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rounds = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return p.stdout, rounds, out


def test_dict_observation_env_learns_through_flatten(cli, tmp_path):
    stdout, rounds, out = _train(cli, tmp_path, "goal_chain")
    assert "done: target return reached" in stdout  # 0.7: the goal within a few steps
    assert rounds[-1]["return_window"] >= 0.7 > rounds[0]["return_mean"]
    e = cli("eval", out, "--episodes", "5", cwd=tmp_path)
    assert e.returncode == 0 and "examples.goal_chain:GoalChain-v0: 5 deterministic" in e.stdout


def test_minigrid_learns_through_its_wrappers(cli, tmp_path):
    pytest.importorskip("minigrid", reason="the examples extra: pip install 'nigt_hpc[examples]'")
    stdout, rounds, out = _train(cli, tmp_path, "minigrid")
    assert "done: target return reached" in stdout
    assert rounds[-1]["return_window"] >= 0.9 > rounds[0]["return_mean"]
    # a linear argmax policy repeats its action where the view repeats (facing a wall), so
    # the sampled policy is the one that reaches the goal
    e = cli("eval", out, "--episodes", "5", "--stochastic", cwd=tmp_path)
    assert e.returncode == 0 and "MiniGrid-Empty-5x5-v0: 5 stochastic" in e.stdout
