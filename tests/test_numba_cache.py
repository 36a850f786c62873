"""The numba cache switch: NIGT_HPC_NUMBA_CACHE=0 writes nothing to NUMBA_CACHE_DIR."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("switch,expect_files", [("1", True), ("0", False)])
def test_cache_switch(tmp_path, switch, expect_files):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NIGT_HPC_NUMBA_CACHE=switch,
               PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-c", "import nigt_hpc.kernels as k; k.warmup()"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    files = [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith((".nbi", ".nbc"))]
    assert bool(files) == expect_files
