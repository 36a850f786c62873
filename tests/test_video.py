"""``nigt-hpc eval --video DIR``: real runs, real MP4 files read back frame by frame, and the
bad inputs that must stop with one line before anything is written."""

import json
import os
import sys

import pytest

from nigt_hpc import cli as cli_mod
from nigt_hpc import config, envs, trained, video
from nigt_hpc.policy import make_spec

from .conftest import ROOT, needs_mujoco


def _frames(path) -> tuple[int, tuple]:
    """Return (frame count, frame shape) of an MP4, decoded to the last frame."""
    iio = pytest.importorskip("imageio.v2")
    reader = iio.get_reader(str(path), "ffmpeg")
    try:
        return reader.count_frames(), reader.get_data(0).shape
    finally:
        reader.close()


def _is_episode(n_frames: int, length: int) -> bool:
    """Return whether an MP4 of ``n_frames`` holds an episode of ``length`` steps.

    RecordVideo keeps the reset frame and one per step, ``length + 1``; moviepy, writing
    them at ``i / fps``, sometimes drops the last (12 recorded at 50 fps gave 11 decoded
    frames, 9 gave 9)."""
    return length <= n_frames <= length + 1


def _needs_video():
    pytest.importorskip("moviepy", reason="the video extra: pip install 'nigt_hpc[video]'")


def _train_and_record(cli, tmp_path, train_args, episodes):
    out, vids = tmp_path / "run", tmp_path / "videos"
    p = cli("train", *train_args, "--set", "run.max_rounds=3", "--out", out, "--quiet",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    e = cli("eval", out, "--episodes", episodes, "--video", vids, "--json", tmp_path / "e.json",
            cwd=tmp_path)
    assert e.returncode == 0, e.stderr
    stats = json.loads((tmp_path / "e.json").read_text())
    assert f"{episodes} videos in {vids}/" in e.stdout
    return stats, vids, e.stdout


def test_cartpole_eval_writes_one_mp4_per_episode(cli, tmp_path):
    _needs_video()
    pytest.importorskip("pygame", reason="CartPole draws with pygame: nigt_hpc[video]")
    stats, vids, _ = _train_and_record(cli, tmp_path, [], 2)
    for k, length in enumerate(stats["lengths"]):
        path = vids / f"CartPole-v1-worker-0-episode-{k}.mp4"
        assert path.stat().st_size > 0
        n, shape = _frames(path)
        assert _is_episode(n, length)
        assert shape == (400, 600, 3)


def _gl_or_skip():
    if os.environ.get("MUJOCO_GL"):
        return
    why = {b: video._probe(b, platform=b) for b in video.BACKENDS}
    if all(why.values()):
        pytest.skip(f"no headless OpenGL for MuJoCo here (egl: {why['egl']}; osmesa: "
                    f"{why['osmesa']}); {video.GL_HINT}")


@needs_mujoco
def test_mujoco_eval_renders_headless(cli, tmp_path):
    _needs_video()
    _gl_or_skip()
    iio = pytest.importorskip("imageio.v2")
    toml = os.path.join(ROOT, "jobs", "local", "inverted_pendulum.toml")
    stats, vids, stdout = _train_and_record(cli, tmp_path, [toml], 1)
    assert "MuJoCo rendered with MUJOCO_GL=" in stdout
    path = vids / "InvertedPendulum-v4-worker-0-episode-0.mp4"
    n, shape = _frames(path)
    assert _is_episode(n, stats["lengths"][0]) and shape == (480, 480, 3)
    frame = iio.get_reader(str(path), "ffmpeg").get_data(0)
    assert frame.std() > 10  # a scene, not a blank buffer


def _saved_policy(path, *sets):
    cfg = config.load(None, list(sets))
    env = envs.make_env(cfg, 0)
    spec = make_spec(cfg, envs.describe(env))
    env.close()
    path.mkdir()
    trained.save(str(path), spec.init_theta(0, -0.5), spec, cfg, {"rounds": 0})
    return path


@pytest.mark.parametrize("case,needle", [
    ("no_run", "no such run directory"),
    ("no_policy", "no policy.npz"),
    ("no_render", "cannot be made with render_mode = 'rgb_array'"),
    ("under_a_file", "is not a directory"),
])
def test_bad_video_input_is_one_line_exit_2(cli, tmp_path, case, needle):
    if case in ("no_render", "under_a_file"):
        _needs_video()  # checked after the run and before these; without it, it is the error
    if case == "no_render":  # a user env whose constructor takes no render_mode
        run = _saved_policy(tmp_path / "chain", "env.id=tests.envs_fixture:NigtChain-v0")
    elif case == "under_a_file":
        run = _saved_policy(tmp_path / "cp")
    else:
        run = tmp_path / "nowhere" if case == "no_run" else tmp_path
    (tmp_path / "file").write_text("x")
    vids = tmp_path / ("file/videos" if case == "under_a_file" else "videos")
    p = cli("eval", run, "--video", vids, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error:") and needle in p.stderr
    assert not (tmp_path / "videos").exists()


def test_missing_video_extra_is_named(tmp_path, monkeypatch, capsys):
    run = _saved_policy(tmp_path / "cp")
    monkeypatch.setitem(sys.modules, "moviepy", None)  # find_spec then finds nothing
    with pytest.raises(SystemExit) as ex:
        cli_mod.main(["eval", str(run), "--video", str(tmp_path / "videos")])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'nigt_hpc[video]'" in err
    assert not (tmp_path / "videos").exists()


def test_a_negate_obs_worker_is_recorded_inside_the_adapter(cli, tmp_path):
    """The negate_obs adapter is no gymnasium Env: the recorder goes inside it."""
    _needs_video()
    pytest.importorskip("pygame", reason="CartPole draws with pygame: nigt_hpc[video]")
    run = _saved_policy(tmp_path / "neg", "env.heterogeneity=negate_obs")
    e = cli("eval", run, "--episodes", "1", "--worker", "1", "--video", tmp_path / "v",
            "--json", tmp_path / "e.json", cwd=tmp_path)
    assert e.returncode == 0, e.stderr
    length = json.loads((tmp_path / "e.json").read_text())["lengths"][0]
    n, _ = _frames(tmp_path / "v" / "CartPole-v1-worker-1-episode-0.mp4")
    assert _is_episode(n, length)


@needs_mujoco
def test_a_mujoco_gl_that_cannot_open_a_context_is_one_line(cli, tmp_path):
    _needs_video()
    run = _saved_policy(tmp_path / "ip", "env.id=InvertedPendulum-v4")
    p = cli("eval", run, "--video", tmp_path / "videos", cwd=tmp_path,
            env={"MUJOCO_GL": "nosuchgl"})
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "MUJOCO_GL=nosuchgl cannot open" in p.stderr
    assert not (tmp_path / "videos").exists()
