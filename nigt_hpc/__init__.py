"""nigt_hpc: asynchronous policy-gradient aggregation (Rennala/Malenia NIGT) over MPI."""

import os as _os

__version__ = "0.3.1"
__all__ = ["ConfigError", "RunResult", "load", "simulate", "train", "__version__"]


def load(run_dir: str):
    """Return the policy a run delivered (``RUN_DIR/policy.npz``), ready to ``act``; no MPI."""
    from .trained import load as _load

    return _load(run_dir)


def train(config=None, **kw):
    """Train on every rank of ``comm``; return a RunResult (see :func:`nigt_hpc.api.train`)."""
    from .api import train as _train

    return _train(config, **kw)


def simulate(config=None, **kw):
    """Run on the virtual clock; return a RunResult (see :func:`nigt_hpc.api.simulate`)."""
    from .api import simulate as _simulate

    return _simulate(config, **kw)


def __getattr__(name):  # ConfigError and RunResult without importing them eagerly
    if name == "ConfigError":
        from .config import ConfigError

        return ConfigError
    if name == "RunResult":
        from .api import RunResult

        return RunResult
    raise AttributeError(f"module 'nigt_hpc' has no attribute {name!r}")

# When installed, setup.py maps the repository's top-level ``kernels/`` folder to
# ``nigt_hpc.kernels``.  When this package is imported straight from a source checkout
# (``python -m pytest`` or ``python -m nigt_hpc`` in the repository root puts the root on
# sys.path first), that mapping does not exist; adding the root to the package path makes
# ``nigt_hpc.kernels`` resolve to the same ``kernels/`` folder.
_here = _os.path.dirname(_os.path.abspath(__file__))
_root = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "kernels")) and _os.path.isfile(
    _os.path.join(_root, "kernels", "policy.py")
):
    __path__.append(_root)  # noqa: F821  (``__path__`` is defined for packages)
