"""env.wrappers: gymnasium wrappers from the config make other spaces trainable."""

import pytest

from nigt_hpc import config, envs
from nigt_hpc.config import ConfigError


def test_wrappers_normalise_to_name_and_kwargs():
    cfg = config.load(None, ['env.wrappers=["FlattenObservation", {name = "TimeLimit", '
                             'kwargs = {max_episode_steps = 7}}]'])
    assert cfg["env"]["wrappers"] == [{"name": "FlattenObservation", "kwargs": {}},
                                      {"name": "TimeLimit",
                                       "kwargs": {"max_episode_steps": 7}}]
    assert envs.backend_of(cfg) == "gymnasium"  # the compiled CartPole takes no wrappers


@pytest.mark.parametrize("sets,needle", [
    (['env.wrappers=[{nme = "x"}]'], "env.wrappers[0] must be a wrapper name"),
    (['env.wrappers=[{name = "TimeLimit", args = 1}]'], "unknown config key"),
    (['env.wrappers=["FlattenObservation"]', "env.backend=compiled"], "cannot take env."),
])
def test_bad_wrapper_config_is_a_config_error(sets, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace(".", r"\.")):
        cfg = config.load(None, sets)
        envs.backend_of(cfg)


def test_dict_observations_need_flatten_and_say_so(cli, tmp_path):
    p = cli("train", "--set", "env.id=tests.envs_fixture:NigtDictChain-v0", "--out",
            tmp_path / "r", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert 'env.wrappers = ["FlattenObservation"]' in p.stderr
    assert not (tmp_path / "r").exists()


def test_dict_and_discrete_observations_train_with_flatten(cli, tmp_path):
    for env_id in ("tests.envs_fixture:NigtDictChain-v0", "FrozenLake-v1"):
        out = tmp_path / env_id.split(":")[-1]
        p = cli("train", "--set", f"env.id={env_id}", "--set",
                'env.wrappers=["FlattenObservation"]', "--set", "run.max_rounds=3",
                "--set", "env.horizon=50", "--out", out, "--quiet", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        e = cli("eval", out, "--episodes", "2", cwd=tmp_path)
        assert e.returncode == 0 and "mean return" in e.stdout, e.stderr


def test_an_unknown_wrapper_is_named(cli, tmp_path):
    p = cli("train", "--set", 'env.wrappers=["NoSuchWrapper"]', "--out", tmp_path / "r",
            cwd=tmp_path)
    assert p.returncode == 2
    assert "env.wrappers[0] = 'NoSuchWrapper' is not in gymnasium.wrappers" in p.stderr
