"""What a run says about the kernel warm-up: before a cold one, that it compiles and where
the result is cached; after it, how long it took.  Rank 0 only, and never under --quiet."""

from __future__ import annotations

import os

from . import kernels


def compile_notice() -> bool:
    """Print, before a cold warm-up, that the kernels are about to compile; return whether
    the cache was cold.  A cold start compiles for tens of seconds, which without a word
    looked like a hang; a warm one loads in about a second and needs none."""
    from .kernels import jit

    if not jit.CACHE:
        print("compiling kernels (NIGT_HPC_NUMBA_CACHE=0: no on-disk cache, so every run "
              "compiles; usually 20-60 s)", flush=True)
        return True
    if not kernels.cache_is_cold():
        return False
    where = kernels.cache_dir() or "numba's default cache folder"
    named = "NUMBA_CACHE_DIR=" if os.environ.get("NUMBA_CACHE_DIR") else ""
    print(f"compiling kernels (first run on this machine only; usually 20-60 s; cached in "
          f"{named}{where})", flush=True)
    return True


def compiled_notice(cold: bool, seconds: float) -> None:
    """Print how long a cold warm-up took (or that a warm-looking one compiled after all)."""
    if cold:
        print(f"compiled in {seconds:.0f} s", flush=True)
    elif seconds > 5.0:  # the cache check missed a kernel: still say where the time went
        print(f"kernels compiled in {seconds:.0f} s (the cache lacked some)", flush=True)
