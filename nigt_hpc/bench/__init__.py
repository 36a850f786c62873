"""``nigt-hpc bench kernels|envs|comm``: our figures beside a reference measured in the
same run -- a numpy reference for kernels (``bench.kernels``), gymnasium's own env for envs
(``bench.envs``), a plain Allreduce of the same size for comm (``bench.comm``).  Absolute
numbers drift between machines; the ratios travel.  Reference figures and targets:
docs/BENCHMARKS.md."""

from __future__ import annotations

import json

# jobs/env.sh logs the BLAS kernel set with ``from nigt_hpc import bench; bench.blas_line()``
from .kernels import blas_core, blas_line

__all__ = ["main", "blas_core", "blas_line"]


def main(what: str, json_path: str | None, repeat: int) -> int:
    """Run one benchmark family, print it, optionally write JSON; return the exit status."""
    if what == "envs":
        from .envs import bench_envs, print_envs

        rows = bench_envs(repeat)
        print_envs(rows)
    elif what == "comm":
        from .comm import bench_comm

        rows = bench_comm(repeat)
        if rows is None:
            return 2
        if not rows:  # not rank 0
            return 0
    else:
        from .kernels import bench_kernels, print_table

        rows = bench_kernels(repeat)
        print_table(rows)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump({"bench": what, "rows": rows}, fh, indent=1)
    return 0
