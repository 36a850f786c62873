"""The delivered policy: policy.npz, nigt_hpc.load, Policy.act and nigt-hpc eval."""

import json

import numpy as np
import pytest

import nigt_hpc
from nigt_hpc import config, trained
from nigt_hpc import kernels as K
from nigt_hpc.policy import make_spec


def spec_for(*sets):
    import gymnasium as gym

    from nigt_hpc import envs

    cfg = config.load(None, list(sets))
    env = envs.make_env(cfg, 0)
    info = envs.describe(env)
    env.close()
    assert isinstance(gym.__version__, str)
    return cfg, info, make_spec(cfg, info)


@pytest.mark.parametrize("sets", [
    ["env.id=Pendulum-v1", "policy.kind=mlp", "policy.hidden=[8, 5]"],
    ["env.id=Pendulum-v1", "policy.head=gaussian_logstd"],
    ["env.id=CartPole-v1", "policy.kind=mlp", "policy.hidden=[6]"],
])
def test_act_is_the_kernels_policy(tmp_path, sets):
    """Deterministic act equals the kernel's action at zero noise (Gaussian) or the most
    likely action (softmax); a batch gives the rows of single calls."""
    cfg, info, spec = spec_for(*sets)
    theta = spec.init_theta(3, -0.5)
    trained.save(str(tmp_path), theta, spec, cfg, {"rounds": 0})
    pol = nigt_hpc.load(str(tmp_path))
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(7, info["obs_dim"]))
    work = np.zeros(spec.work_size)
    batch = pol.act(obs)
    for i, o in enumerate(obs):
        u = np.zeros(max(spec.act_dim, 1))
        a = np.zeros(max(spec.act_dim, 1))
        if info["discrete"]:
            K.act_noise(theta, spec.sizes, spec.head, o, np.array([0.5]), spec.a_center,
                        spec.a_scale, spec.squash, work, u, a)
            z = work[int(np.sum(spec.sizes)) - spec.sizes[-1] : int(np.sum(spec.sizes))]
            assert pol.act(o) == int(np.argmax(z)) == batch[i]
        else:
            K.act_noise(theta, spec.sizes, spec.head, o, np.zeros(spec.act_dim),
                        spec.a_center, spec.a_scale, spec.squash, work, u, a)
            np.testing.assert_allclose(pol.act(o), a, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(batch[i], a, rtol=1e-12, atol=1e-12)
    sampled = pol.act(obs, deterministic=False, rng=np.random.default_rng(1))
    assert np.shape(sampled) == np.shape(batch)


def test_a_trained_run_delivers_a_policy_that_eval_reads(cli, tmp_path):
    out = tmp_path / "r"
    p = cli("train", "--out", out, "--quiet", "--set", "run.max_rounds=5", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    pol = nigt_hpc.load(str(out))
    doc = pol.doc
    assert doc["env"]["id"] == "CartPole-v1" and doc["point"] in ("theta", "theta_tilde")
    assert set(doc["eval_returns"]) == {"theta", "theta_tilde"}
    assert doc["eval_return"] == max(doc["eval_returns"].values())
    # the delivered policy evaluates to the return reported for it (same seeds: exactly)
    again = trained.evaluate(pol, doc["eval_episodes"], True, doc["eval_seed"], 0)
    assert again["mean_return"] == doc["eval_return"]
    if doc["point"] == "theta":
        np.testing.assert_array_equal(pol.theta, np.load(out / "theta.npy"))
    e = cli("eval", out, "--episodes", "3", "--seed", "7", "--json", tmp_path / "e.json",
            cwd=tmp_path)
    assert e.returncode == 0, e.stderr
    assert "CartPole-v1: 3 deterministic episodes from seed 7: mean return" in e.stdout
    stats = json.loads((tmp_path / "e.json").read_text())
    assert stats["episodes"] == 3 and len(stats["returns"]) == 3
    assert stats["min_return"] <= stats["mean_return"] <= stats["max_return"]
    again = cli("eval", out, "--episodes", "3", "--seed", "7", cwd=tmp_path)
    assert again.stdout == e.stdout  # deterministic policy, seeded episodes


@pytest.mark.parametrize("args,needle", [(["nowhere"], "no such run directory"),
                                         (["RUN"], "no policy.npz"),
                                         (["RUN", "--episodes", "0"], "--episodes 0")])
def test_eval_bad_input_is_one_line_exit_2(cli, tmp_path, args, needle):
    args = [str(tmp_path) if a == "RUN" else str(tmp_path / a) if a == "nowhere" else a
            for a in args]
    p = cli("eval", *args, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error:") and needle in p.stderr
