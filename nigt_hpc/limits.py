"""Memory a run would need, estimated from its sizes before anything is allocated, checked
against the machine's memory: a horizon, return window or layer size that cannot fit is a
ConfigError (exit 2) instead of a MemoryError mid-run or the kernel's OOM killer."""

from __future__ import annotations

import os

from .config import ConfigError

# copies of a d-vector one process holds: theta, theta_prev and d of the outer step, their
# aligned copies in the sampler, g_one, the local sum, the Allreduce buffer (and MPI's own
# copy of it), theta_tilde, the checkpoint's copies and theta.npy's
D_COPIES = 14


def _step_words(sizes, act_dim: int) -> int:
    """Return the 64-bit words one env step of the horizon may occupy: the episode's obs,
    stored actions, log pi, noise and reward rows, and the matrix-form gradient's per-step
    activations and their derivatives (about three rows of every layer)."""
    return int(sizes[0]) + 3 * act_dim + 3 + 3 * int(sum(int(s) for s in sizes))


def physical_bytes() -> int | None:
    """Return the machine's physical memory in bytes, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_bytes(cfg: dict, sizes, act_dim: int, d: int, workers: int,
                   samplers: int = 1) -> int:
    """Return the bytes one process needs for a run's big arrays: ``samplers`` samplers of
    horizon H, the d-vectors, and the per-round exchange of ``workers`` return windows."""
    H = cfg["env"]["horizon"]
    W = cfg["run"]["target_window"]
    per_sampler = 8 * H * _step_words(sizes, act_dim)
    exchange = 2 * 8 * workers * (8 + W)  # the reduced buffer and MPI's copy of it
    window = 64 * W * (1 + workers)  # Python floats in the return windows and round lists
    return samplers * per_sampler + 8 * d * D_COPIES + exchange + window


def check_memory(cfg: dict, sizes, act_dim: int, d: int, workers: int, procs: int = 1,
                 samplers: int = 1) -> None:
    """Raise ConfigError if ``procs`` such processes would not fit in physical memory."""
    total = physical_bytes()
    need = procs * estimate_bytes(cfg, sizes, act_dim, d, workers, samplers)
    if total is None or need <= 0.8 * total:
        return
    big = max((("env.horizon", 8 * cfg["env"]["horizon"] * _step_words(sizes, act_dim)),
               ("the policy size d", 8 * d * D_COPIES),
               ("run.target_window", 80 * cfg["run"]["target_window"] * (1 + workers))),
              key=lambda kv: kv[1])[0]
    raise ConfigError(f"this run would need about {need / 2**30:,.1f} GiB of memory "
                      f"({procs} process(es) on this machine, d = {d:,}, env.horizon = "
                      f"{cfg['env']['horizon']:,}, run.target_window = "
                      f"{cfg['run']['target_window']:,}); the machine has "
                      f"{total / 2**30:,.1f} GiB: lower {big}")
