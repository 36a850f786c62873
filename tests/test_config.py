"""Config loading: defaults, overrides, validation messages, TOML round trip."""

import math

import pytest

from nigt_hpc import config
from nigt_hpc.config import ConfigError


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return str(p)


def test_defaults_follow_the_interface():
    cfg = config.load(None)
    assert cfg["env"]["id"] == "CartPole-v1"
    assert cfg["mpi"]["poll_every_steps"] == 64 and cfg["run"]["target_window"] == 20
    assert cfg["run"]["target_return"] == 475.0  # built-in CartPole preset, no file given
    assert config.defaults()["algo"]["M"] == 30
    assert math.isinf(config.defaults()["run"]["target_return"])


def test_a_file_replaces_the_builtin_preset(tmp_path):
    cfg = config.load(write(tmp_path, "[env]\nid = 'Pendulum-v1'\n"))
    assert cfg["algo"] == config.defaults()["algo"]
    assert math.isinf(cfg["run"]["target_return"])


def test_file_then_set_overrides(tmp_path):
    path = write(tmp_path, "[algo]\nM = 12\neta = 0.5\n[env]\nid = 'Pendulum-v1'\n")
    cfg = config.load(path, ["algo.M=50", "env.id=Acrobot-v1", "policy.hidden=[8, 8]"])
    assert cfg["algo"]["M"] == 50 and cfg["algo"]["eta"] == 0.5
    assert cfg["env"]["id"] == "Acrobot-v1" and cfg["policy"]["hidden"] == [8, 8]


def test_int_is_accepted_for_float_and_converted():
    cfg = config.load(None, ["algo.alpha=1"])
    assert cfg["algo"]["alpha"] == 1.0 and isinstance(cfg["algo"]["alpha"], float)


@pytest.mark.parametrize("sets,needle", [
    (["algo.etaa=0.1"], "did you mean 'algo.eta'"),
    (["algo.eta=0"], "algo.eta"),
    (["algo.eta=1.5"], "algo.eta"),
    (["algo.M=0"], "algo.M"),
    (["algo.alpha=-1"], "algo.alpha"),
    (["algo.M=2.5"], "algo.M must be int"),
    (["algo.M=true"], "algo.M must be int"),
    (["delays.compute_unit_s=-0.1"], "delays.compute_unit_s"),
    (["delays.compute_list=[1.0, -2.0]"], "delays.compute_list[1]"),
    (["algo.name=renala_nigt"], "did you mean 'rennala_nigt'"),
    (["policy.kind=cnn"], "policy.kind"),
    (["envv.id=x"], "did you mean 'env'"),
    (["M=3"], "section.key"),
    (["algo.M"], "KEY=VALUE"),
    (["run.target_return=nan"], "run.target_return"),
    (["delays.compute=from_list"], "delays.compute_list"),
    (["delays.server_link=share"], "did you mean 'shared'"),
])
def test_bad_values_name_the_field(sets, needle):
    with pytest.raises(ConfigError) as e:
        config.load(None, sets)
    assert needle in str(e.value)


def test_unknown_key_in_file_suggests_nearest(tmp_path):
    path = write(tmp_path, "[algo]\nM_int = 5\n")
    with pytest.raises(ConfigError, match="did you mean 'algo.M_init'"):
        config.load(path)


def test_malformed_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[algo\nM = 3\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(str(tmp_path / "nope.toml"))


def test_dumps_round_trips_including_meta_and_infinity(tmp_path):
    cfg = config.load(None, ["env.kwargs={max_episode_steps = 10}",
                             "env.per_worker=[{kwargs = {a = 1.5}}]", "run.out='x \"y\"'"])
    cfg["run"]["target_return"] = -math.inf
    text = config.dumps(cfg, {"ranks": 2, "git": "abc"})
    again = config.load(write(tmp_path, text))
    assert again == cfg
