"""Every ``algo.name`` and what it means, in one table: nothing else compares names.

An entry gives

* ``rule``: the aggregation rule class (``aggregation.py``), built per round with
  ``rule.for_round(n, M, B)``; ``None`` for AFedPG, whose server applies every gradient;
* ``control``: how the MPI engine moves the rule's counts between ranks --
  ``"none"`` (every rank owes its own quota: no messages), ``"counter"`` (one accepted
  total on rank 0, an RMA counter or messages, ``engine/planes.py``; the rule must answer
  ``accepts_at(m)`` and ``done_at(m)`` from that total), ``"malenia"`` (every rank's count
  to rank 0, which asks the rule's ``done()``, ``engine/control.py``) or ``"server"``
  (AFedPG's parameter server: no rounds);
* ``outer``: the outer step, ``"nigt"`` (``nigt.NIGT``) or ``"pg"`` (``nigt.PolicyGradient``);
* ``engine``: ``"allreduce"`` (``engine/mpi.MPIEngine`` and the virtual clock's rounds) or
  ``"server"`` (``engine/afedpg.AFedPGEngine`` and the virtual clock's AFedPG);
* ``reuse_stale``: whether ``algo.reuse_stale`` has anything to act on (a round can end
  with a trajectory in flight).  Whether ``algo.M`` or ``algo.B`` sizes a round is the
  rule's own ``for_round``.

Adding a rule: write its class in ``aggregation.py`` (``for_round``, ``start_round``,
``on_finished``, ``wants_more``, ``done``, ``local_weight``, ``weights``) and add an entry
here with one of the control kinds above.  ``config.py`` takes its choices from
:data:`ALGORITHMS`.  No MPI and no kernels are imported here: ``config`` reads this table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .aggregation import AggregateMalenia, AggregateRennala, AggregateSync

CONTROLS = ("none", "counter", "malenia", "server")
OUTERS = ("nigt", "pg")
ENGINES = ("allreduce", "server")


@dataclass(frozen=True)
class Algorithm:
    """One row of the table (see the module docstring for the fields)."""

    name: str
    rule: type | None
    control: str
    outer: str
    engine: str
    reuse_stale: bool

    def __post_init__(self):
        assert self.control in CONTROLS and self.outer in OUTERS and self.engine in ENGINES
        assert (self.rule is None) == (self.engine == "server")

    def make_rule(self, n: int, M: int, B: int):
        """Return this round's rule over ``n`` workers (target ``M``, or ``B`` per worker)."""
        return self.rule.for_round(n, M, B)

    def make_optimizer(self, cfg: dict, theta0: np.ndarray):
        """Return the outer step with the hyperparameters of ``cfg['algo']``."""
        from .nigt import NIGT, PolicyGradient  # the kernels load only when a run starts

        a = cfg["algo"]
        if self.outer == "pg":
            return PolicyGradient(theta0, a["lr"])
        return NIGT(theta0, a["eta"], a["alpha"])


def _row(name, rule, control, outer, engine="allreduce", reuse_stale=True):
    return Algorithm(name, rule, control, outer, engine, reuse_stale)


# In the order config.py lists the choices (docs/CONFIG.md shows them so).
_TABLE = (
    _row("rennala_nigt", AggregateRennala, "counter", "nigt"),
    _row("malenia_nigt", AggregateMalenia, "malenia", "nigt"),
    # a synchronous round waits for every quota: no trajectory is cut, nothing to reuse
    _row("sync_nigt", AggregateSync, "none", "nigt", reuse_stale=False),
    # the server's update is the NIGT step (docs/ALGORITHMS.md §4); a worker's trajectory
    # always finishes, so nothing is stale
    _row("afedpg", None, "server", "nigt", engine="server", reuse_stale=False),
    _row("rennala_pg", AggregateRennala, "counter", "pg"),
    _row("sync_pg", AggregateSync, "none", "pg", reuse_stale=False),
)
REGISTRY = {row.name: row for row in _TABLE}
ALGORITHMS = tuple(REGISTRY)


def lookup(name: str) -> Algorithm:
    """Return the entry of ``name`` (config.py has already checked it is one)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown algo.name {name!r}; one of {', '.join(ALGORITHMS)}") from None


def of(cfg: dict) -> Algorithm:
    """Return the entry of ``cfg['algo']['name']``."""
    return lookup(cfg["algo"]["name"])
