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


BEST = ["run.eval_every_rounds=5", "run.deliver=best", "run.eval_episodes=3",
        "sim.workers=2", "run.max_rounds=30"]


def test_deliver_best_keeps_the_best_evaluated_point_and_scores_it_again(tmp_path):
    """run.deliver = "best": best.npz holds the point of the best periodic evaluation (with
    its round and score); policy.npz is the best of it, theta and theta_tilde on episodes
    no periodic evaluation used, and evaluates to the return it reports."""
    from nigt_hpc import run

    out = tmp_path / "b"
    cfg = config.load(None, BEST + ["delays.compute=const"])
    assert run.simulate(cfg, out=str(out), quiet=True) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    ev = [(r["round"], r["eval_return"]) for r in rows if r["eval_return"] is not None]
    assert [k for k, _ in ev] == [0, 5, 10, 15, 20, 25, 30]
    top = max(v for _, v in ev)
    best = nigt_hpc.load(str(out / trained.BEST_FILE))
    assert best.doc["point"] == "best"
    assert best.doc["best"]["eval_return"] == top
    assert best.doc["best"]["round"] == next(k for k, v in ev if v == top)  # the first
    pol = nigt_hpc.load(str(out))
    doc = pol.doc
    assert set(doc["eval_returns"]) == {"theta", "theta_tilde", "best"}
    assert doc["eval_return"] == max(doc["eval_returns"].values())
    assert doc["point"] == max(doc["eval_returns"], key=lambda k: (doc["eval_returns"][k],
                                                                   k == "theta"))
    assert doc["best"]["eval_return"] == top
    seed = trained.EVAL_SEED + 3  # run.seed 0; the 3 periodic episodes' seeds come first
    assert doc["eval_seed"] == seed
    assert trained.evaluate(pol, 3, True, seed, 0)["mean_return"] == doc["eval_return"]
    # the reported score of the best point is its score on the fresh episodes
    again = trained.evaluate(best, 3, True, seed, 0)["mean_return"]
    assert again == doc["eval_returns"]["best"]
    if doc["point"] == "best":
        np.testing.assert_array_equal(pol.theta, best.theta)


def _good_cartpole_theta() -> np.ndarray:
    """A linear softmax CartPole policy that balances (500 on these seeds)."""
    theta = np.zeros(10)
    theta[:8].reshape(4, 2)[:, 1] = [0.1, 0.5, 10.0, 2.0]
    return theta


def test_deliver_best_returns_an_earlier_better_point_with_its_statistics(tmp_path):
    """A good point evaluated early beats worse final points, and is delivered with the
    observation statistics it acted with then, not the run's last ones; a resumed run's
    Evaluator reads it back from best.npz."""
    from types import SimpleNamespace

    from nigt_hpc.obsnorm import ObsNorm

    cfg, info, spec = spec_for("env.id=CartPole-v1", "policy.kind=linear", *BEST[:3])
    norm = ObsNorm(4)
    norm.restore({"count": 100.0, "mean": [0.0] * 4, "var": [1.0] * 4, "clip": 10.0})
    ev = trained.Evaluator(spec, cfg, 1, str(tmp_path))
    good = _good_cartpole_theta()
    ev.periodic(SimpleNamespace(theta=good, theta_prev=good, eta=0.1), norm, 5, 1.0, False)
    assert ev.best["eval_return"] == 500.0 and ev.best["round"] == 5
    # nothing is written before the run directory is prepared (run.py's begin), then at once
    assert not (tmp_path / trained.BEST_FILE).exists()
    ev.begin_writing()
    assert nigt_hpc.load(str(tmp_path / trained.BEST_FILE)).doc["best"]["round"] == 5
    norm.restore({"count": 200.0, "mean": [0.0, 0.0, 1.0, 0.0], "var": [4.0] * 4, "clip": 3.0})
    bad = SimpleNamespace(theta=np.zeros(10), theta_prev=np.zeros(10), eta=0.1)
    ev.periodic(bad, norm, 10, 2.0, True)
    assert ev.best["round"] == 5  # a worse evaluation keeps the best
    theta, state, choice = trained.choose(bad, spec, cfg, 1, norm, ev)
    assert choice["point"] == "best" and choice["best"]["round"] == 5
    np.testing.assert_array_equal(theta, good)
    assert state["count"] == 100.0 and state["var"] == [1.0] * 4
    assert choice["eval_returns"]["best"] == 500.0 > choice["eval_returns"]["theta"]
    back = trained.Evaluator(spec, cfg, 1, str(tmp_path), resume=True).best
    np.testing.assert_array_equal(back["theta"], good)
    assert back["round"] == 5 and back["doc"]["obs_norm"]["count"] == 100.0
    assert trained.Evaluator(spec, cfg, 1, str(tmp_path)).best is None  # a new run: none
    ev.close()


def test_deliver_best_without_periodic_evaluation_is_refused(cli, tmp_path):
    p = cli("simulate", "--out", tmp_path / "x", "--set", "run.deliver=best", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "run.deliver = 'best' needs periodic evaluation" in p.stderr
    assert not (tmp_path / "x").exists()


def test_train_keeps_best_npz_through_a_resume(cli, tmp_path):
    """train writes best.npz as it evaluates; a resumed run starts from it, so a best point
    found before the resume can still be delivered after it."""
    out = tmp_path / "r"
    sets = ["--set", "run.eval_every_rounds=2", "--set", "run.deliver=best",
            "--set", "run.eval_episodes=3"]
    p = cli("train", "--out", out, "--quiet", "--set", "run.max_rounds=6", *sets, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    first = nigt_hpc.load(str(out / trained.BEST_FILE)).doc["best"]
    assert first["round"] <= 6
    p = cli("train", "--resume", out, "--quiet", "--set", "run.max_rounds=10", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    after = nigt_hpc.load(str(out / trained.BEST_FILE)).doc["best"]
    assert after["eval_return"] >= first["eval_return"]  # kept, or beaten after the resume
    if after["round"] <= 6:
        assert after == first
    doc = nigt_hpc.load(str(out)).doc
    assert doc["best"] == after and set(doc["eval_returns"]) == {"theta", "theta_tilde", "best"}
