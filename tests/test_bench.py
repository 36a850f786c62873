"""``nigt-hpc bench``: every family prints its table and writes the same rows as JSON."""

import json
import os
import platform
import subprocess
import sys

import pytest

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
        assert r["openblas_coretype_env"] == os.environ.get("OPENBLAS_CORETYPE")
        # torch is a reference only: its columns are figures where installed, else None
        for key in ("torch", "torch_dist"):
            t = r[f"{key}_act_us_per_step"]
            assert (t is None) == (not _has_torch())
            if t is not None:
                assert t > 0 and r[f"act_speedup_vs_{key}"] == t / r["act_us_per_step"]
    assert "BLAS: OpenBLAS " in p.stdout


def _has_torch():
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def test_torch_reference_runs_the_same_policy():
    # the torch column times the same network: its log-probs match our kernel's
    import numpy as np
    import pytest

    torch = pytest.importorskip("torch")
    from nigt_hpc import kernels as K
    from nigt_hpc.bench import kernels as bench

    sizes = [5, 8, 3]
    theta = K.init_theta(np.array(sizes), K.HEAD_GAUSS_LOGSTD, np.random.default_rng(0), -0.5,
                         out_scale=1.0)
    X = np.random.default_rng(1).standard_normal((4, 5))
    noise = np.random.default_rng(2).standard_normal((4, 3))
    assert bench.torch_act(theta, sizes, K.HEAD_GAUSS_LOGSTD, X, noise) is not None
    seen = []
    orig = torch.Tensor.numpy

    def spy(t, *a, **k):
        seen.append(orig(t, *a, **k).copy())
        return seen[-1]

    torch.Tensor.numpy = spy
    try:
        bench.torch_act(theta, sizes, K.HEAD_GAUSS_LOGSTD, X, noise)()
    finally:
        torch.Tensor.numpy = orig
    work, u, a = np.empty(K.work_size(np.array(sizes))), np.empty(3), np.empty(3)
    for t in range(4):
        K.act_noise(theta, np.array(sizes), K.HEAD_GAUSS_LOGSTD, X[t], noise[t], np.zeros(3),
                    np.ones(3), True, work, u, a)
        # per step: the stored action row, then the env action
        np.testing.assert_allclose(seen[2 * t], u, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(seen[2 * t + 1], a, rtol=1e-12, atol=1e-14)
    assert len(seen) == 8


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
        for env_id in ("Hopper-v4", "Walker2d-v4", "InvertedPendulum-v4"):
            r = rows[f"{env_id} direct step"]
            assert r["ratio"] == r["steps_per_s"] / r["reference_steps_per_s"] > 0
        assert "Hopper-v4 sampler rollout+g_H, MLP, direct" in rows
    assert "gymnasium env.step" in p.stdout


def test_bench_comm_on_one_rank_says_how(tmp_path):
    p = run_cli("bench", "comm", "--repeat", "1")
    assert p.returncode == 2 and "mpiexec -n 2" in p.stderr


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 OpenBLAS core names")
@pytest.mark.parametrize("core", ["Sandybridge", "Haswell"])
def test_bench_reports_the_blas_core_that_runs(core):
    """The matrix gradient's speed is OpenBLAS's kernel set: the bench names the one loaded,
    read from OpenBLAS itself (it follows OPENBLAS_CORETYPE), and says who chose it."""
    import numpy as np

    if "openblas" not in str(np.show_config(mode="dicts")).lower():
        pytest.skip("numpy is not built on OpenBLAS here")
    code = "from nigt_hpc import bench; print(bench.blas_line())"
    env = {**os.environ, "OPENBLAS_CORETYPE": core}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == f"BLAS: OpenBLAS {core} (OPENBLAS_CORETYPE={core} set in the environment)"
