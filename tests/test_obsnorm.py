"""Observation normalisation (policy.obs_norm): exact running statistics, the policy's
input as the kernels see it, checkpoints and the delivered policy."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nigt_hpc import config, obsnorm, run, trained
from nigt_hpc.obsnorm import ObsNorm
from nigt_hpc.rollout import make_sampler
from tests.conftest import ROOT


def _feed(norm, xs):
    for x in xs:
        norm.step(x)


def test_step_is_bitwise_the_numpy_formula_and_raw_before_statistics():
    rng = np.random.default_rng(0)
    norm = ObsNorm(4, clip=2.0)
    x = rng.normal(size=4) * 5
    np.testing.assert_array_equal(norm.step(x), x)  # no statistics yet: unchanged, unclipped
    norm.merge_moments(norm.moments)
    for x in rng.normal(3.0, 4.0, size=(50, 4)):
        got = norm.step(x).copy()
        want = obsnorm.apply(x, norm.mean, norm.var, norm.count, norm.clip)
        np.testing.assert_array_equal(got, want)
        assert np.abs(got).max() <= 2.0
    # float32 observations (many gymnasium envs) give the float64 value's result
    x32 = rng.normal(size=4).astype(np.float32)
    np.testing.assert_array_equal(norm.step(x32).copy(),
                                  obsnorm.apply(x32.astype(np.float64), norm.mean, norm.var,
                                                norm.count, norm.clip))


@pytest.mark.parametrize("splits", [[1000], [1, 999], [10, 300, 690], [500, 500]])
def test_round_merges_equal_the_statistics_of_all_observations(splits):
    """Chan's merge over any split into rounds equals mean/var of everything, with a mean
    200 spreads from zero (after the first round the sums are taken about the frozen mean;
    the first round's about 0)."""
    rng = np.random.default_rng(1)
    data = rng.normal(100.0, 0.5, size=(sum(splits), 3))
    norm = ObsNorm(3)
    i = 0
    for k in splits:
        _feed(norm, data[i : i + k])
        norm.merge_moments(norm.moments)  # the round boundary
        i += k
    assert norm.count == len(data)
    np.testing.assert_allclose(norm.mean, data.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(norm.var, data.var(axis=0), rtol=1e-9)


def test_summed_moments_of_many_workers_are_one_merge():
    """What the Allreduce does: workers' moments (same frozen shift) added, merged once;
    and what AFedPG's server does: each worker's batch merged in turn.  Same statistics."""
    rng = np.random.default_rng(2)
    start = rng.normal(2.0, 3.0, size=(40, 5))
    workers = [rng.normal(2.0, 3.0, size=(n, 5)) for n in (7, 30, 1)]
    base = ObsNorm(5)
    _feed(base, start)
    base.merge_moments(base.moments)
    pooled = ObsNorm(5)
    pooled.unpack(base.pack())
    total = np.zeros_like(base.moments)
    for w in workers:
        one = ObsNorm(5)
        one.unpack(base.pack())
        _feed(one, w)
        total += one.take_moments()
    pooled.merge_moments(total)
    served = ObsNorm(5)
    served.unpack(base.pack())
    for w in workers:
        one = ObsNorm(5)
        one.unpack(base.pack())
        _feed(one, w)
        served.merge_packed_batch(one.batch_of(one.take_moments()))
    everything = np.concatenate([start] + workers)
    for n in (pooled, served):
        assert n.count == len(everything)
        np.testing.assert_allclose(n.mean, everything.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(n.var, everything.var(axis=0), rtol=1e-10)


def test_sampler_feeds_every_step_and_stores_the_policys_input():
    cfg = config.load(None, ["env.id=Pendulum-v1", "env.horizon=30", "policy.obs_norm=true",
                             "policy.obs_norm_clip=0.5"])
    env, info, spec = run.build(cfg, 0)
    assert run.envs.backend_of(cfg) == "gymnasium"  # the compiled loop has no normaliser
    s = make_sampler(cfg, env, spec, info, 0)
    theta = spec.init_theta(0, -0.5)
    t = s.rollout(theta)
    assert s.norm.moments[0] == t.T == 30
    assert np.abs(t.obs).max() > 0.5  # round 0: raw observations
    s.norm.merge_moments(s.norm.moments)
    t = s.rollout(theta)
    assert np.abs(t.obs).max() <= 0.5  # normalised and clipped: what the kernels score
    env.close()


def test_compiled_backend_refuses_obs_norm(cli, tmp_path):
    r = cli("train", "--set", "env.backend=compiled", "--set", "policy.obs_norm=true",
            "--out", str(tmp_path / "r"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "obs_norm" in r.stderr
    assert not (tmp_path / "r").exists()


def _train(tmp_path, name, *sets, resume=None):
    args = [sys.executable, "-m", "nigt_hpc", "train", "--quiet"]
    args += ["--resume", str(resume)] if resume else ["--out", str(tmp_path / name)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))


NORM = ["env.id=Pendulum-v1", "env.horizon=50", "policy.obs_norm=true", "algo.M=4",
        "algo.M_init=4", "run.target_return=inf", "run.eval_episodes=3"]


def test_evaluation_curve_and_the_delivered_policy_are_the_same_thing(tmp_path):
    r = _train(tmp_path, "r", *NORM, "run.max_rounds=7", "run.eval_every_rounds=3")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [x["round"] for x in rows if x["eval_return"] is not None]
    assert evaluated == [0, 3, 6, 7]  # every 3 rounds and the last
    pol = trained.load(str(tmp_path / "r"))
    assert pol.obs_norm is not None and pol.obs_norm[2] == rows[-1]["env_steps"]  # cumulative
    doc = pol.doc
    # the saved policy (with its statistics) evaluates to the return the run reported
    again = trained.evaluate(pol, 3, True, doc["eval_seed"])["mean_return"]
    assert again == doc["eval_return"] == rows[-1]["eval_return"]
    from nigt_hpc.report import report_text

    assert (f"deterministic evaluation: last {rows[-1]['eval_return']:.2f} (round 7)"
            in report_text(str(tmp_path / "r")))
    # without its statistics the same theta is another policy
    raw = trained.Policy(pol.theta, {**doc, "obs_norm": None})
    assert trained.evaluate(raw, 3, True, doc["eval_seed"])["mean_return"] != again


def test_resume_restores_the_statistics_bit_for_bit(tmp_path):
    full = _train(tmp_path, "full", *NORM, "run.max_rounds=8", "algo.name=sync_nigt")
    assert full.returncode == 0, full.stderr
    cut = _train(tmp_path, "cut", *NORM, "run.max_rounds=4", "algo.name=sync_nigt")
    assert cut.returncode == 0, cut.stderr
    more = _train(tmp_path, None, "run.max_rounds=8", resume=tmp_path / "cut")
    assert more.returncode == 0, more.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "full" / "theta.npy"),
                                  np.load(tmp_path / "cut" / "theta.npy"))
    a, b = trained.load(str(tmp_path / "full")), trained.load(str(tmp_path / "cut"))
    assert a.doc["obs_norm"] == b.doc["obs_norm"]


def test_resume_with_obs_norm_switched_is_refused(tmp_path):
    r = _train(tmp_path, "r", *NORM, "run.max_rounds=2")
    assert r.returncode == 0, r.stderr
    bad = _train(tmp_path, None, "run.max_rounds=4", "policy.obs_norm=false",
                 resume=tmp_path / "r")
    assert bad.returncode == 2 and "obs_norm" in bad.stderr, bad.stderr


@pytest.mark.parametrize("algo", ["rennala_nigt", "afedpg"])
def test_simulate_shares_one_set_of_statistics(tmp_path, algo):
    cfg = config.load(None, NORM + [f"algo.name={algo}", "run.max_rounds=5", "sim.workers=3",
                                    "delays.compute=sqrt", "delays.compute_unit_s=1.0"])
    res = {}
    assert run.simulate(cfg, out=str(tmp_path / "s"), quiet=True, result=res) == 0
    rows = [json.loads(x) for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    pol = trained.load(str(tmp_path / "s"))
    # every observation any worker fed the policy, once (AFedPG: those of applied updates)
    assert pol.obs_norm[2] == rows[-1]["env_steps"]  # cumulative


def test_eval_every_s_follows_the_runs_clock(tmp_path):
    """Evaluated rounds: the first, then each first round whose clock reading is at least
    eval_every_s past the last evaluated one, and the last (virtual seconds here)."""
    cfg = config.load(None, NORM + ["run.max_rounds=12", "sim.workers=2",
                                    "delays.compute=sqrt", "delays.compute_unit_s=1.0",
                                    "run.eval_every_s=7.5"])
    assert run.simulate(cfg, out=str(tmp_path / "s"), quiet=True) == 0
    rows = [json.loads(x) for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    want, nxt = [], 0.0
    for r in rows:
        if r["time_s"] >= nxt or r is rows[-1]:
            want.append(r["round"])
            nxt = r["time_s"] + 7.5
    got = [r["round"] for r in rows if r["eval_return"] is not None]
    assert got == want and 2 < len(got) < len(rows)


def test_paper_configs_keep_the_papers_estimator_and_presets_the_extensions():
    import glob

    paper = sorted(glob.glob(os.path.join(ROOT, "jobs", "paper", "*.toml")))
    presets = sorted(glob.glob(os.path.join(ROOT, "jobs", "mujoco", "*.toml")))
    assert len(paper) >= 9 and len(presets) == 5
    for path in paper:
        text = open(path).read()  # written out in the file, not left to the defaults
        assert "obs_norm = false" in text and 'baseline = "none"' in text, path
    for path in presets:
        cfg = config.load(path, [])
        assert cfg["policy"]["obs_norm"] and cfg["estimator"]["baseline"] == "time", path
        assert cfg["policy"]["head"] == "gaussian_logstd" and cfg["run"]["eval_every_s"] > 0
