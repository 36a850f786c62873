"""Shared helpers: run the real command line in a subprocess, as a user would."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=None, env=None, timeout=240):
    """Run ``python -m nigt_hpc ARGS``; return the CompletedProcess (text output)."""
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    full_env["PYTHONPATH"] = os.pathsep.join(
        [p for p in [(env or {}).get("PYTHONPATH"), ROOT, full_env.get("PYTHONPATH")] if p])
    if env:
        full_env.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    return subprocess.run([sys.executable, "-m", "nigt_hpc", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


def has_mujoco() -> bool:
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return False
    return True


needs_mujoco = pytest.mark.skipif(not has_mujoco(), reason="MuJoCo not installed")


def pytest_sessionstart(session):
    """Fill the numba cache once before the first test, outside any test's timeout: a cold
    compile takes 20-60 s on an idle core and minutes on a loaded machine, and whichever test
    came first used to pay it inside its own 300 s (or its subprocess's 240 s).  Subprocess
    tests then load the cache.  Not under mpiexec, where ranks would race on the cache
    files (each MPI test run warms up through the engines, node rank 0 first)."""
    if os.environ.get("PMI_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK"):
        return
    from nigt_hpc import kernels

    kernels.warmup()
