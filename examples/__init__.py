"""Example environments and configs for ``nigt-hpc train`` (see README, "Train on your own
env"); importable as ``examples.NAME`` from the repository root."""
