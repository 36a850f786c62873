"""The numba cache switch: NIGT_HPC_NUMBA_CACHE=0 writes nothing to NUMBA_CACHE_DIR."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # subprocesses that compile every kernel cold
@pytest.mark.parametrize("switch,expect_files", [("1", True), ("0", False)])
def test_cache_switch(tmp_path, switch, expect_files):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NIGT_HPC_NUMBA_CACHE=switch,
               PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-c", "import nigt_hpc.kernels as k; k.warmup()"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    files = [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith((".nbi", ".nbc"))]
    assert bool(files) == expect_files


def _printed_ints(script, env, cwd):
    """Run ``script`` in a fresh interpreter (in ``cwd``); return the ints on its last line."""
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                       text=True, timeout=300, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return [int(x) for x in p.stdout.splitlines()[-1].split()]


@pytest.mark.slow
def test_cache_stamp_covers_every_kernel_file(tmp_path):
    """A kernel cached from envs.py is recompiled when policy.py (which it inlines) changes,
    although envs.py itself did not (numba alone stamps a function's own file only)."""
    src = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "kernels"), src / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NIGT_HPC_NUMBA_CACHE="1",
               PYTHONPATH=str(src))
    script = ("import numpy as np\n"
              "from kernels import _cache, envs as KE\n"
              f"assert _cache.INSTALLED and KE.__file__.startswith({str(src)!r})\n"
              "z = np.zeros(5)\n"
              "KE.step_many(KE.CARTPOLE, z, np.zeros(2), np.ones((3, 1)), z.copy())\n"
              "print(len(KE.step_many.stats.cache_hits))\n")

    def hits():
        # cwd: not the repository, whose own kernels/ would shadow the copy
        return _printed_ints(script, env, tmp_path)[0]

    assert hits() == 0  # compiled and stored
    assert hits() == 1  # loaded
    with open(src / "kernels" / "policy.py", "a") as f:
        f.write("\n# an edit in another kernel file\n")
    assert hits() == 0  # stale: recompiled
    assert hits() == 1


def test_sources_hash_changes_with_any_kernel_file():
    from nigt_hpc.kernels import _cache

    assert _cache.INSTALLED
    assert _cache.STAMP[1] == _cache.sources_hash()
    assert len(_cache.STAMP[1]) == 64


@pytest.mark.slow
def test_warm_cache_serves_every_warmed_kernel(tmp_path):
    """From a warm cache, the warm-up compiles nothing: every kernel signature it touches
    loads from disk (an array default argument, for one, would miss on every run)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NIGT_HPC_NUMBA_CACHE="1",
               PYTHONPATH=ROOT)
    script = ("from numba.core.registry import CPUDispatcher\n"
              "import nigt_hpc.kernels as k\n"
              "from nigt_hpc.kernels import envs, mujoco, policy\n"
              "k.warmup()\n"
              "ds = [v for m in (policy, envs, mujoco) for v in vars(m).values()\n"
              "      if isinstance(v, CPUDispatcher)]\n"
              "print(sum(len(d.stats.cache_misses) for d in ds),\n"
              "      sum(len(d.stats.cache_hits) for d in ds))\n")

    def misses_hits():
        return tuple(_printed_ints(script, env, tmp_path))

    first = misses_hits()
    assert first[0] > 0
    misses, hits = misses_hits()
    assert misses == 0 and hits > 0  # (inner kernels load inside their callers)


@pytest.mark.slow  # two cold compiles in subprocesses
@pytest.mark.timeout(1200)
def test_a_cold_cache_is_announced_before_compiling_and_quiet_says_nothing(cli, tmp_path):
    train = ("train", "--set", "run.max_rounds=1", "--set", "run.eval_episodes=0")
    quiet = cli(*train, "--quiet", "--out", tmp_path / "q", cwd=tmp_path, timeout=900,
                env={"NUMBA_CACHE_DIR": str(tmp_path / "c1")})
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""
    cache = tmp_path / "c2"
    cold = cli(*train, "--out", tmp_path / "a", cwd=tmp_path, timeout=900,
               env={"NUMBA_CACHE_DIR": str(cache)})
    assert cold.returncode == 0, cold.stderr
    lines = cold.stdout.splitlines()
    # before anything else, and naming the folder the cache really went to
    assert lines[0].startswith("compiling kernels (first run on this machine only; usually ")
    assert f"cached in NUMBA_CACHE_DIR={cache}{os.sep}kernels" in lines[0]
    assert any(f.endswith(".nbi") for _, _, fs in os.walk(cache) for f in fs)
    assert lines[1].startswith("compiled in ") and lines[1].endswith(" s")
    warm = cli(*train, "--out", tmp_path / "b", cwd=tmp_path, env={"NUMBA_CACHE_DIR": str(cache)})
    assert warm.returncode == 0, warm.stderr
    assert "compil" not in warm.stdout and warm.stdout.startswith("nigt-hpc train: ")
