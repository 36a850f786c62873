"""Observation normalisation, one env step at a time (``nigt_hpc.obsnorm``).

One call per step does both jobs, so the Python loop pays one dispatch: it adds the raw
observation to the round's moments (shifted by the frozen mean, so sums of squares keep
their precision when the mean is large against the spread) and writes the normalised,
clipped observation the policy sees.
"""

import numpy as np

from .jit import CACHE, njit


@njit(cache=CACHE)
def normalise_observe(s, mean, inv_std, clip, active, mom, out):
    """Add ``s`` to ``mom = [n, sum(s - mean), sum((s - mean)^2)]``; write the policy's input.

    ``active``: ``out = clip((s - mean) * inv_std, -clip, clip)``; else ``out = s`` (before
    any statistics exist the observation passes unchanged).
    """
    d = out.shape[0]
    mom[0] += 1.0
    for i in range(d):
        x = np.float64(s[i])
        dx = x - mean[i]
        mom[1 + i] += dx
        mom[1 + d + i] += dx * dx
        if active:
            y = dx * inv_std[i]
            if y > clip:
                y = clip
            elif y < -clip:
                y = -clip
            out[i] = y
        else:
            out[i] = x
