"""Fault catalogue, files half: the run directory's lock, symlinks, resume validation, late
validation and the smaller promises.  Each case runs the real command line (1 rank, or 2
under mpiexec) and asserts the exit status, the one ``error:`` line and what is on disk."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli
from tests.test_mpi_cli import launch, mpiexec

needs_mpi = pytest.mark.skipif(mpiexec() is None, reason="no mpiexec")
QUICK = ["--set", "run.max_rounds=3", "--quiet"]
LONG = ["--set", "run.max_rounds=1000000", "--set", "run.target_return=inf", "--quiet"]


def one_error(p) -> str:
    """Return the one ``error:`` line of a failed command (and check there is nothing else)."""
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def snapshot(d) -> dict:
    """Return every entry of ``d`` (hidden ones too): file bytes, a symlink's target, or
    "dir" for a folder."""
    def entry(p):
        if os.path.islink(p):
            return ("->", os.readlink(p))
        return "dir" if p.is_dir() else p.read_bytes()

    return {n: entry(d / n) for n in sorted(os.listdir(d))}


def rows(d) -> list:
    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]


def edit_checkpoint(run, state_fn=None, arrays_fn=None):
    with np.load(run / "checkpoint.npz") as z:
        files = {k: z[k] for k in z.files}
    state = json.loads(str(files.pop("state_json")))
    arrays = {k[2:]: v for k, v in files.items()}
    if state_fn:
        state_fn(state)
    if arrays_fn:
        arrays_fn(arrays)
    np.savez(run / "checkpoint.npz", state_json=np.array(json.dumps(state)),
             **{f"a_{k}": v for k, v in arrays.items()})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Two finished 1-rank runs (3 rounds each) to copy from."""
    d = tmp_path_factory.mktemp("finished")
    for name in ("a", "b"):
        p = run_cli("train", "--out", d / name, *QUICK, cwd=d)
        assert p.returncode == 0, p.stderr
    return d


@pytest.fixture
def run(finished, tmp_path):
    shutil.copytree(finished / "a", tmp_path / "run")
    return tmp_path / "run"


def start(n, out, *args, cwd):
    """Start a long run in the background; return it once metrics.jsonl has rounds."""
    env = dict(os.environ, MPIEXEC_TIMEOUT="120",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "nigt_hpc", "train", "--out", str(out), *LONG, *args]
    if n > 1:
        cmd = [mpiexec(), "-n", str(n)] + cmd
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240  # a cold numba cache compiles for a minute or more
    while time.time() < deadline and p.poll() is None:
        m = out / "metrics.jsonl"
        if m.exists() and m.read_text().count("\n") >= 3:
            return p
        time.sleep(0.05)
    p.kill()
    raise AssertionError(f"the background run did not start: {p.communicate()}")


def stop(p) -> int:
    p.send_signal(signal.SIGTERM)
    return p.wait(timeout=60)


# ---------------------------------------------------------------- 5. the run directory lock


@pytest.mark.parametrize("n", [1, pytest.param(2, marks=needs_mpi)])
def test_second_job_and_concurrent_resume_are_refused_while_a_run_holds_the_lock(tmp_path, n):
    out = tmp_path / "r"
    p = start(n, out, cwd=tmp_path)
    try:
        holder = (out / ".lock").read_text()
        assert holder.startswith(f"pid={p.pid if n == 1 else ''}")
        cli = (lambda *a: run_cli(*a, cwd=tmp_path)) if n == 1 else \
            (lambda *a: launch(2, *a, cwd=tmp_path))
        for args in (["train", "--out", out, "--force", *QUICK], ["train", "--resume", out]):
            q = cli(*map(str, args))
            assert q.returncode == 2
            line = one_error(q)
            assert f"run directory '{out}' is in use by pid" in line and "on host" in line
    finally:
        code = stop(p)
    assert code == 143, p.stderr.read()
    got = [r["round"] for r in rows(out)]
    assert got == list(range(len(got)))  # one writer: no interleaved or repeated rounds
    assert not (out / ".lock").exists()  # released at the end of the job
    assert {"checkpoint.npz", "config.toml", "profile.json"} <= set(os.listdir(out))


def test_stale_lock_of_a_dead_job_is_taken_over(run, tmp_path):
    (run / ".lock").write_text("pid=999999 host=gone started=2026-01-01T00:00:00\n")
    p = run_cli("train", "--resume", run, "--set", "run.max_rounds=4", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert [r["round"] for r in rows(run)] == [0, 1, 2, 3, 4]
    assert not (run / ".lock").exists()
    fresh = tmp_path / "fresh"  # a directory holding only a stale lock is not "in use"
    fresh.mkdir()
    (fresh / ".lock").write_text("pid=999999 host=gone\n")
    p = run_cli("train", "--out", fresh, *QUICK, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(fresh)) == ["checkpoint.npz", "config.toml", "metrics.jsonl",
                                         "policy.npz", "profile.json", "theta.npy"]


@pytest.fixture
def planted(run, tmp_path):
    """A finished run whose profile.json and theta.npy, and the old temp names, are
    symlinks to files outside it."""
    victims = []
    for name in ("checkpoint.npz.tmp.npz", "profile.json.tmp", "profile.json", "theta.npy",
                 "config.toml.tmp", "policy.npz"):
        v = tmp_path / f"victim_{name}"
        v.write_text("precious\n")
        victims.append(v)
        if (run / name).exists():
            (run / name).unlink()
        (run / name).symlink_to(v)
    return run, victims


def test_resume_replaces_symlinked_run_files_instead_of_writing_through(planted, tmp_path):
    run, victims = planted
    p = run_cli("train", "--resume", run, "--set", "run.max_rounds=4", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert all(v.read_text() == "precious\n" for v in victims)
    for name in ("profile.json", "theta.npy", "checkpoint.npz", "config.toml", "policy.npz"):
        assert os.path.isfile(run / name) and not os.path.islink(run / name)
    assert not [n for n in os.listdir(run) if n.startswith(".")]  # no temp file, no lock


def test_force_into_a_directory_with_planted_symlinks_writes_nothing_outside(planted, tmp_path):
    run, victims = planted
    p = run_cli("train", "--out", run, "--force", *QUICK, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert all(v.read_text() == "precious\n" for v in victims)
    assert len(rows(run)) == 4


# ------------------------------------------------- 6. resume validates before it writes


def _cut_metrics(run):
    m = run / "metrics.jsonl"
    m.write_bytes(m.read_bytes()[:40])


def _offset(value):
    return lambda st: st.update(metrics_offset=value(st["metrics_offset"]))


BAD_RESUME = {
    # case: (how to break the copied run, words of the error line)
    "metrics_shorter_than_offset": (_cut_metrics, "shorter than the"),
    "metrics_missing": (lambda r: (r / "metrics.jsonl").unlink(), "metrics.jsonl is missing"),
    "metrics_symlink": (lambda r: (shutil.move(r / "metrics.jsonl", r.parent / "m.jsonl"),
                                   (r / "metrics.jsonl").symlink_to(r.parent / "m.jsonl")),
                        "metrics.jsonl is a symbolic link"),
    "offset_100GB": (lambda r: edit_checkpoint(r, _offset(lambda o: 10**11)), "shorter than"),
    "offset_mid_line": (lambda r: edit_checkpoint(r, _offset(lambda o: o - 5)),
                        "not at a line boundary"),
    "offset_a_line_early": (lambda r: edit_checkpoint(
        r, _offset(lambda o: len(b"".join((r / "metrics.jsonl").read_bytes()
                                          .splitlines(True)[:3])))), "holds 3 rounds"),
    "checkpoint_empty": (lambda r: (r / "checkpoint.npz").write_bytes(b""), "corrupt"),
    "checkpoint_symlink": (lambda r: (shutil.move(r / "checkpoint.npz", r.parent / "c.npz"),
                                      (r / "checkpoint.npz").symlink_to(r.parent / "c.npz")),
                           "checkpoint.npz is a symbolic link"),
    "checkpoint_of_another_run": (None, "is not this run's"),  # copied in the test
    "book_key_missing": (lambda r: edit_checkpoint(r, lambda s: s["book"].pop("env_steps")),
                         "book.env_steps is missing"),
    "book_wrong_type": (lambda r: edit_checkpoint(r, lambda s: s["book"].update(window="x")),
                        "book.window"),
    "round_not_an_int": (lambda r: edit_checkpoint(r, lambda s: s.update(round="3")),
                         "round = 3 is not an integer >= -1"),
    "per_rank_wrong_length": (lambda r: edit_checkpoint(r, lambda s: s.update(per_rank=[])),
                              "per_rank has 0 entries for 1 ranks"),
    "run_id_missing": (lambda r: edit_checkpoint(r, lambda s: s.pop("run_id")), "run id"),
    "theta_wrong_shape": (lambda r: edit_checkpoint(
        r, arrays_fn=lambda a: a.update(theta=np.zeros(3))), "array theta is float64 (3,)"),
    "theta_nan": (lambda r: edit_checkpoint(
        r, arrays_fn=lambda a: a.update(theta=np.full(10, np.nan))), "nan or inf"),
    "unknown_array": (lambda r: edit_checkpoint(
        r, arrays_fn=lambda a: a.update(bogus=np.zeros(10))), "holds arrays"),
    "config_symlink": (lambda r: (shutil.move(r / "config.toml", r.parent / "c.toml"),
                                  (r / "config.toml").symlink_to(r.parent / "c.toml")),
                       "config.toml is a symbolic link"),
    "lock_symlink": (lambda r: (r / ".lock").symlink_to(r.parent / "victim"),
                     ".lock is a symbolic link"),
}


@pytest.mark.parametrize("case", sorted(BAD_RESUME))
def test_bad_resume_exits_2_naming_the_file_and_writes_nothing(run, finished, tmp_path, case):
    how, needle = BAD_RESUME[case]
    if case == "checkpoint_of_another_run":
        shutil.copy(finished / "b" / "checkpoint.npz", run / "checkpoint.npz")
    else:
        how(run)
    (tmp_path / "victim").write_text("precious\n")
    before, outside = snapshot(run), snapshot(tmp_path)
    p = run_cli("train", "--resume", run, "--set", "run.max_rounds=5", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    line = one_error(p)
    assert needle in line and str(run) in line, line
    assert snapshot(run) == before  # config.toml, metrics.jsonl, checkpoint: all untouched
    assert snapshot(tmp_path).keys() == outside.keys()
    assert (tmp_path / "victim").read_text() == "precious\n"


@needs_mpi
def test_two_rank_resume_of_a_malformed_checkpoint_is_refused(tmp_path):
    out = tmp_path / "r"
    p = launch(2, "train", "--out", str(out), *QUICK, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    edit_checkpoint(out, lambda s: s["per_rank"][1].pop("episode"))
    before = snapshot(out)
    p = launch(2, "train", "--resume", str(out), "--set", "run.max_rounds=5", cwd=tmp_path)
    assert p.returncode == 2
    assert "per_rank[1].episode is missing" in one_error(p)
    assert snapshot(out) == before


# -------------------------------------------- 7. validation before any file is written

BIG_MLP = ["policy.kind=mlp", "policy.hidden=[1024]"]
LATE = {
    "date_in_env_kwargs": ("[env]\nkwargs = {start = 1979-05-27}\n", [],
                           "env.kwargs.start = 1979-05-27 is a TOML date/time"),
    "time_in_per_worker": ("[env]\nheterogeneity = 'per_worker'\n"
                           "per_worker = [{kwargs = {t = 07:32:00}}]\n", [],
                           "env.per_worker[0].kwargs.t = 07:32:00"),
    "horizon_beyond_memory": ("", ["env.horizon=400000000", *BIG_MLP], "GiB of memory"),
    "hidden_beyond_memory": ("", ["policy.kind=mlp", "policy.hidden=[1048576, 1048576]"],
                             "lower the policy size d"),
    "horizon_1e12": ("", ["env.horizon=1000000000000"], "env.horizon = 1000000000000 is out"),
    "target_window_1e11": ("", ["run.target_window=100000000000"], "run.target_window"),
    "init_log_std_inf": ("", ["policy.init_log_std=inf"], "policy.init_log_std must be a "
                         "finite number, got inf"),
    "init_log_std_minus_inf": ("", ["policy.init_log_std=-inf"], "got -inf"),
    "compute_unit_inf": ("", ["delays.compute_unit_s=inf"], "delays.compute_unit_s must be"),
    "compute_list_inf": ("", ["delays.compute=from_list", "delays.compute_list=[1.0, inf]"],
                         "delays.compute_list[1]"),
    "M_2_to_62": ("", ["algo.M=4611686018427387904"], "algo.M = 4611686018427387904 is out"),
    "max_time_inf": ("", ["run.max_time_s=inf"], "run.max_time_s"),
    "toml_2000_deep": ("[env]\nkwargs = {a = " + "[" * 2000 + "]" * 2000 + "}\n", [],
                       "nests tables/arrays too deeply"),
    "kwargs_20_deep": ("[env]\nkwargs = {a = " + "[" * 20 + "]" * 20 + "}\n", [],
                       "nests deeper than 16 levels"),
    "set_2000_deep": ("", ["env.kwargs={a = " + "[" * 2000 + "]" * 2000 + "}"],
                      "--set env.kwargs: the value nests too deeply"),
    "kwargs_int_beyond_64_bit": ("[env]\nkwargs = {n = 99999999999999999999}\n", [],
                                 "does not fit a 64-bit TOML integer"),
}


@pytest.mark.parametrize("case", sorted(LATE))
def test_late_validation_now_comes_before_any_file(tmp_path, case):
    text, sets, needle = LATE[case]
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    p = run_cli("train", cfg, "--out", tmp_path / "run",
                *[x for s in sets for x in ("--set", s)], cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert needle in one_error(p)
    assert sorted(os.listdir(tmp_path)) == ["c.toml"]


@pytest.mark.parametrize("out,needle", [("x" * 600, "600 bytes long; the limit is 255"),
                                        ("/".join(["y" * 200] * 25), "limit is 4096")])
def test_out_path_too_long_is_one_line(tmp_path, out, needle):
    p = run_cli("train", "--out", out, *QUICK, cwd=tmp_path)
    assert p.returncode == 2
    assert needle in one_error(p)
    assert os.listdir(tmp_path) == []


@needs_mpi
def test_two_rank_bad_sizes_exit_2_before_anything_is_written(tmp_path):
    p = launch(2, "train", "--out", str(tmp_path / "r"), "--set", "env.horizon=400000000",
               *[x for s in BIG_MLP for x in ("--set", s)], cwd=tmp_path)
    assert p.returncode == 2
    line = one_error(p)
    assert "GiB of memory" in line and "2 process(es)" in line
    assert os.listdir(tmp_path) == []


def test_config_toml_reads_back_what_was_run(tmp_path):
    """DEL, a non-BMP character, a backslash, a quote and a tab: JSON's escapes (the old
    writer) give a surrogate pair that TOML rejects."""
    from nigt_hpc import config

    cfg = tmp_path / "c.toml"
    cfg.write_text('[env]\nkwargs = {s = "x\\u007fy\\U0001F600\\\\\\"\\t", "odd key" = 1}\n')
    resolved = config.load(str(cfg))
    assert resolved["env"]["kwargs"] == {"s": 'x\u007fy\U0001F600\\"\t', "odd key": 1}
    assert config.tomllib.loads(config.dumps(resolved, {"run_id": "x"}))["env"] == \
        resolved["env"]


# ----------------------------------------------------------------- 8. smaller promises


def test_resume_summary_counts_this_jobs_steps_over_this_jobs_time(run, tmp_path):
    steps_before = rows(run)[-1]["env_steps"]
    p = run_cli("train", "--resume", run, "--set", "run.max_rounds=6", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    total = rows(run)[-1]["env_steps"]
    done = next(x for x in p.stdout.splitlines() if x.startswith("done:"))
    assert f"{total:,} env steps ({total - steps_before:,} of them in this job)" in done
    assert "s of training in this job (" in done


@pytest.mark.parametrize("limit,reason", [
    (["--set", "run.max_rounds=3"], "max_rounds reached after round 3"),
    (["--set", "run.max_rounds=0", "--set", "run.max_env_steps=300"], "max_env_steps reached"),
    (["--set", "run.max_rounds=0", "--set", "run.target_return=15", "--set",
      "run.target_window=5"], "target return reached"),
])
def test_resuming_a_finished_run_runs_no_round(tmp_path, limit, reason):
    out = tmp_path / "r"
    p = run_cli("train", "--out", out, "--quiet", *limit, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    before = snapshot(out)
    p = run_cli("train", "--resume", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert p.stdout.splitlines() == [
        f"nigt-hpc train: {out} is already finished ({reason}"
        + ("" if "after round" in reason else f" after round {rows(out)[-1]['round']}")
        + "); nothing to do: raise that limit to continue"]
    assert snapshot(out) == before


def test_env_failing_in_the_first_round_leaves_no_directory(tmp_path):
    out = tmp_path / "r"
    bad = ["--set", "env.id=tests.envs_fixture:NigtExploding-v0", "--set",
           "env.kwargs={explode_at = 1}", "--quiet"]
    p = run_cli("train", "--out", out, *bad, cwd=tmp_path)
    assert p.returncode == 1
    assert "error: rank 0: RuntimeError: boom from the environment" in p.stderr
    assert not out.exists()
    p = run_cli("train", "--out", out, *QUICK, cwd=tmp_path)  # the rerun needs no --force
    assert p.returncode == 0, p.stderr


def test_env_failing_while_built_writes_nothing(tmp_path):
    (tmp_path / "brokenenv.py").write_text(
        "import gymnasium as gym\n\nclass Broken(gym.Env):\n    def __init__(self):\n"
        "        raise RuntimeError('cannot build')\n\n"
        "gym.register('Broken-v0', entry_point=Broken)\n")
    p = run_cli("train", "--out", tmp_path / "r", "--set", "env.id=brokenenv:Broken-v0",
                cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert p.returncode == 1
    assert "error: rank 0: RuntimeError: cannot build" in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["__pycache__", "brokenenv.py"] or \
        sorted(os.listdir(tmp_path)) == ["brokenenv.py"]


@needs_mpi
def test_two_rank_failure_before_the_first_round_leaves_no_config(tmp_path):
    out = tmp_path / "r"
    p = launch(2, "train", "--out", str(out), "--set",
               "env.id=tests.envs_fixture:NigtExploding-v0", "--set",
               "env.heterogeneity=per_worker", "--set",
               "env.per_worker=[{kwargs = {}}, {kwargs = {explode_at = 1}}]", "--quiet",
               cwd=tmp_path)
    assert p.returncode != 0
    assert "rank 1" in p.stderr and "boom from the environment" in p.stderr
    # rank 0 is aborted by MPI: the directory may stay, holding nothing but a dead lock
    assert not out.exists() or set(os.listdir(out)) <= {".lock"}
    p = launch(2, "train", "--out", str(out), *QUICK, cwd=tmp_path)
    assert p.returncode == 0, p.stderr


def test_nigt_hpc_alone_lists_the_commands(tmp_path):
    p = run_cli(cwd=tmp_path)
    assert p.returncode == 2
    assert "choose a COMMAND" in one_error(p)
    for cmd in ("train", "simulate", "check", "report", "bench"):
        assert f"\n    {cmd} " in p.stdout


def _enospc(*_, **__):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_enospc_while_checkpointing_leaves_no_partial_file(run, monkeypatch):
    from nigt_hpc import checkpoint
    from nigt_hpc.metrics import write_json

    before = snapshot(run)
    arrays, state = checkpoint.load(run)

    def partial_savez(fh, **_):
        fh.write(b"PK\x03\x04 half a checkpoint")
        fh.flush()
        _enospc()

    monkeypatch.setattr(np, "savez", partial_savez)
    with pytest.raises(OSError) as e:
        checkpoint.save(str(run), arrays, state)
    assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(OSError):
        write_json(str(run / "profile.json"), {"x": 1})
    assert snapshot(run) == before  # the old checkpoint and profile intact, no temp file


def test_enospc_at_the_final_checkpoint_through_the_cli(tmp_path):
    out = tmp_path / "r"
    code = ("import errno, os, numpy as np\n"
            "def full(fh, **_):\n    fh.write(b'PK partial')\n"
            "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
            "np.savez = full\nfrom nigt_hpc.cli import main\n"
            f"main(['train', '--out', {str(out)!r}, '--set', 'run.max_rounds=2', '--quiet'])\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=240, env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == 1
    assert p.stderr.splitlines()[0] == "error: rank 0: OSError: [Errno 28] No space left on " \
        "device"
    assert sorted(os.listdir(out)) == ["config.toml", "metrics.jsonl"]  # no temp, no lock
    assert len(rows(out)) == 3


def test_metrics_check_reads_long_lines_across_chunks(tmp_path):
    """Records longer than the 1 MiB read chunk (many workers) still count as whole lines."""
    from nigt_hpc import checkpoint
    from nigt_hpc.config import ConfigError

    recs = [json.dumps({"round": r, "pad": "x" * 1_500_000}) + "\n" for r in range(3)]
    (tmp_path / "metrics.jsonl").write_text("".join(recs) + '{"round": 3}\n')
    offset = sum(map(len, recs))
    checkpoint.check_metrics(str(tmp_path), {"metrics_offset": offset, "round": 2})
    with pytest.raises(ConfigError, match="holds 3 rounds"):
        checkpoint.check_metrics(str(tmp_path), {"metrics_offset": offset, "round": 3})
    with pytest.raises(ConfigError, match="line boundary"):
        checkpoint.check_metrics(str(tmp_path), {"metrics_offset": offset - 1, "round": 2})
