"""The ``njit`` every kernel in this folder is compiled with, and the on-disk cache switch."""

import os

import numba

from . import _cache  # noqa: F401  (before any @njit: cache stamps cover every kernel file)


def njit(*args, **kw):
    """``numba.njit`` with numpy's error model, for every kernel in this folder.

    numba's default ("python") model tests every float division for a zero divisor so it can
    raise ZeroDivisionError.  The test is a branch, and a branch splits the basic block: it
    kept loops from vectorising, and it sat between CartPole's ``cos(th)`` and ``sin(th)`` so
    LLVM could not fuse them into one ``sincos`` call (seen in the assembly).  With numpy's model
    x / 0 gives inf or nan as IEEE 754 says; a non-zero divisor gives the same bits either way.
    The gradients' non-finite check (``run.max_nonfinite``) is where a bad division surfaces.
    """
    kw.setdefault("error_model", "numpy")
    return numba.njit(*args, **kw)


# The on-disk cache (PITFALLS N1): on by default; NIGT_HPC_NUMBA_CACHE=0 turns it off (numba
# has no global switch), e.g. on a filesystem where renames are not atomic.  Read at import.
CACHE = os.environ.get("NIGT_HPC_NUMBA_CACHE", "1") != "0"
