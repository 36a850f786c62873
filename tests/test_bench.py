"""``nigt-hpc bench``: every family prints its table and writes the same rows as JSON."""

import json

from tests.conftest import has_mujoco, run_cli


def test_bench_kernels_json(tmp_path):
    p = run_cli("bench", "kernels", "--repeat", "1", "--json", tmp_path / "k.json")
    assert p.returncode == 0, p.stderr
    rows = json.loads((tmp_path / "k.json").read_text())["rows"]
    assert [r["kernel"] for r in rows][1] == "mlp 376->64->64->17"
    for r in rows:
        assert r["max_rel_diff_vs_numpy"] < 1e-10 and r["matrix_max_rel_diff_vs_numpy"] < 1e-10
        assert r["matrix_speedup_vs_numpy"] > 0 and r["sampler_uses"] in ("matrix", "per-step")
        assert r["kernel"] in p.stdout


def test_bench_envs_json(tmp_path):
    p = run_cli("bench", "envs", "--repeat", "1", "--json", tmp_path / "e.json", timeout=400)
    assert p.returncode == 0, p.stderr
    rows = {r["row"]: r for r in json.loads((tmp_path / "e.json").read_text())["rows"]}
    for env_id in ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0"):
        r = rows[f"{env_id} step"]
        assert r["steps_per_s"] > 0 and r["reference_steps_per_s"] > 0
        assert r["ratio"] == r["steps_per_s"] / r["reference_steps_per_s"]
    assert rows["CartPole env+policy+g_H (one call/episode)"]["mean_episode_len"] > 100
    assert "CartPole sampler rollout+g_H" in rows
    if has_mujoco():
        assert rows["Hopper-v4 sampler rollout+g_H, MLP 64-64"]["overhead_vs_env_step"] > 0
    assert "gymnasium env.step" in p.stdout


def test_bench_comm_on_one_rank_says_how(tmp_path):
    p = run_cli("bench", "comm", "--repeat", "1")
    assert p.returncode == 2 and "mpiexec -n 2" in p.stderr
