"""The bad-input catalogue: each case exits 2 with one ``error:`` line, no traceback, and
touches nothing on disk."""

import os

import pytest

BAD = {
    "malformed_toml": ("[algo\nM = 3\n", [], "not valid TOML"),
    "unknown_key": ("[algo]\netaa = 0.1\n", [], "did you mean 'algo.eta'"),
    "wrong_type": ("[algo]\nM = \"ten\"\n", [], "algo.M must be int"),
    "M_below_one": ("", ["algo.M=0"], "algo.M"),
    "eta_out_of_range": ("", ["algo.eta=1.5"], "algo.eta"),
    "alpha_not_positive": ("", ["algo.alpha=0"], "algo.alpha"),
    "negative_delay": ("", ["delays.comm_unit_s=-1"], "delays.comm_unit_s"),
    "unknown_algorithm": ("", ["algo.name=adam"], "algo.name"),
    "unknown_policy": ("", ["policy.kind=transformer"], "policy.kind"),
    "unknown_env": ("", ["env.id=NoSuchEnv-v0"], "env.id"),
    "unknown_env_module": ("", ["env.id=no_such_module:Foo-v0"], "env.id"),
    "policy_does_not_fit_actions": ("", ["env.id=Pendulum-v1", "policy.head=softmax"],
                                    "policy.head"),
    "bad_set_syntax": ("", ["algo.M"], "KEY=VALUE"),
    "afedpg_on_one_rank": ("", ["algo.name=afedpg"], "at least 2 ranks"),
    "empty_mlp": ("", ["policy.kind=mlp", "policy.hidden=[]"], "policy.hidden"),
    "unbounded_delay_list": ("", ["delays.comm=from_list"], "delays.comm_list"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_one_error_line(cli, tmp_path, case):
    text, sets, needle = BAD[case]
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    out = tmp_path / "run"
    args = ["train", cfg, "--out", out] + [x for s in sets for x in ("--set", s)]
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert needle in lines[0]
    assert "Traceback" not in p.stderr
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["c.toml"]


def test_existing_run_directory_is_refused_and_left_alone(cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("precious\n")
    p = cli("train", "--out", out, "--set", "run.max_rounds=1", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: run directory") and "--force" in p.stderr
    assert os.listdir(out) == ["metrics.jsonl"]
    assert (out / "metrics.jsonl").read_text() == "precious\n"


def test_missing_mujoco_is_a_clear_error(cli, tmp_path):
    fake = tmp_path / "fake"
    (fake / "mujoco").mkdir(parents=True)
    (fake / "mujoco" / "__init__.py").write_text("raise ImportError('No module named mujoco')\n")
    p = cli("train", "--set", "env.id=Hopper-v4", "--out", tmp_path / "run", cwd=tmp_path,
            env={"PYTHONPATH": str(fake)})
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "nigt_hpc[mujoco]" in p.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_command_line_option_is_one_line(cli, tmp_path):
    p = cli("train", "--no-such-flag", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ")


def test_check_prints_resolved_config(cli, tmp_path):
    p = cli("check", "--set", "algo.M=7", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "M = 7" in p.stdout and "[meta]" in p.stdout and "d = 10" in p.stdout


def test_cartpole_job_file_is_the_builtin_default():
    # jobs/local/cartpole.toml says it is the built-in preset written out: keep that true
    import os

    from nigt_hpc import config
    from tests.conftest import ROOT

    path = os.path.join(ROOT, "jobs", "local", "cartpole.toml")
    assert "built-in default" in open(path, encoding="utf-8").readline()
    assert config.load(path) == config.load(None)
