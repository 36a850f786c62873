"""docs/CONFIG.md, generated from the schema in ``nigt_hpc/config.py`` so it cannot drift.

    python -m nigt_hpc.docgen > docs/CONFIG.md

``tests/test_docs.py`` regenerates the text and fails when the file differs, so a key added
to ``SCHEMA`` without regenerating is caught by the test suite.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from .config import SCHEMA

# One line per section, said once here rather than in every key's help text.
SECTION_NOTES = {
    "run": "Limits, seeds, output and checkpoints of one run. A run stops at the first limit "
           "reached.",
    "env": "The environment every worker samples from, and how workers may differ.",
    "policy": "The policy network and its action head (docs/ALGORITHMS.md §0).",
    "algo": "The method and its hyperparameters (docs/ALGORITHMS.md §1-§4).",
    "delays": "Emulated compute and communication times of worker i = 1..n, the paper's time "
              "model (docs/ALGORITHMS.md §7). On real ranks a unit of seconds is slept; on "
              "the virtual clock a unit of 0 counts as 1 virtual second.",
    "mpi": "The MPI engine's control plane.",
    "sim": "`nigt-hpc simulate`, the virtual clock.",
}

# Meanings for keys whose ``Field`` has no ``help`` yet.  The schema's own help wins where it
# has one; tests/test_docs.py requires one of the two for every key.
HELP = {
    "env.backend": "auto: compiled classic-control or direct MuJoCo where they exist, else "
                   "gymnasium; compiled / direct insist and say why not; gymnasium forces it",
    "env.gamma": "discount of g_H, counted from step 0 (gamma^h, not gamma^(h-t))",
    "env.heterogeneity": "negate_obs: worker 0 sees (s, 0), the others (-s, 1); per_worker: "
                         "worker w gets env.kwargs updated by env.per_worker[w % len]",
    "policy.kind": "linear map, or an MLP with tanh hidden layers",
    "policy.hidden": "hidden layer sizes of the MLP",
    "policy.head": "auto picks by action space: softmax for Discrete, gaussian_softplus "
                   "(sigma = softplus(.) from the network, the paper's) or gaussian_logstd "
                   "(state-independent log-std) for Box",
    "policy.init_log_std": "initial log-std of a Gaussian head",
    "algo.name": "the method: Rennala / Malenia / synchronized NIGT, AFedPG, or the plain PG "
                 "baselines (docs/ALGORITHMS.md §1-§4)",
    "algo.reuse_stale": "finish a trajectory cut by the end of a round in the next one, with "
                        "the importance-weighted g_IS (docs/ALGORITHMS.md §6)",
    "delays.compute": "h_i of worker i = 1..n: const 1, sqrt sqrt(i), linear i, exp one "
                      "Exp(1) draw per worker from the run seed, from_list compute_list",
    "delays.compute_list": "h_i per worker for from_list, cycled when shorter than n",
    "delays.compute_unit_s": "seconds of one unit of h_i, per env step on real ranks",
    "delays.comm": "kappa_i of worker i: const, sqrt, sqrt_d14 = sqrt(i) * d^(1/4), "
                   "from_list comm_list",
    "delays.comm_list": "kappa_i per worker for from_list, cycled",
    "delays.comm_unit_s": "seconds of one unit of kappa_i, per d-vector exchange",
    "mpi.poll_every_steps": "env steps between a worker's checks for the end of a round",
}

KIND_NAMES = {"int": "int", "float": "float", "str": "string", "bool": "bool",
              "list_int": "list of int", "list_float": "list of float", "table": "table",
              "list_table": "list of tables"}


def toml_value(v: Any) -> str:
    """Return ``v`` written as a TOML value (``inf`` for infinity)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _num(x: float) -> str:
    return f"{x:g}"


def allowed(f) -> str:
    """Return what a field accepts: its choices or its numeric bounds, or "" when anything
    of its type goes."""
    if getattr(f, "choices", None):
        return " \\| ".join(f"`{c}`" for c in f.choices)
    bounds = []
    if getattr(f, "ge", None) is not None:
        bounds.append(f"≥ {_num(f.ge)}")
    if getattr(f, "gt", None) is not None:
        bounds.append(f"> {_num(f.gt)}")
    if getattr(f, "le", None) is not None:
        bounds.append(f"≤ {_num(f.le)}")
    text = ", ".join(bounds)
    if text and str(f.kind).startswith("list_"):
        text = "each " + text
    return text


def meaning(section: str, key: str, f) -> str:
    """Return the key's help from the schema, else from ``HELP``, else ""."""
    return getattr(f, "help", "") or HELP.get(f"{section}.{key}", "")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def config_markdown(schema: dict | None = None) -> str:
    """Return the text of docs/CONFIG.md for ``schema`` (default: the live SCHEMA)."""
    schema = SCHEMA if schema is None else schema
    n_keys = sum(len(keys) for keys in schema.values())
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m nigt_hpc.docgen > docs/CONFIG.md` from the schema in",
        "     nigt_hpc/config.py. Do not edit by hand: tests/test_docs.py fails when this file",
        "     and the schema disagree. -->",
        "",
        f"Every key of a run's TOML file: {len(schema)} sections, {n_keys} keys. Every key is "
        "optional; a missing one takes its default. `nigt-hpc check [CONFIG.toml]` prints the "
        "resolved configuration, and `--set section.key=VALUE` overrides one key on the "
        "command line (VALUE is read as TOML, or as a bare string when it is not TOML). An "
        "unknown key, a wrong type or a value outside the allowed range is one `error:` line "
        "naming the key, and exit status 2.",
        "",
        "Without a config file, `nigt-hpc train` runs the built-in CartPole-v1 preset "
        "(`BUILTIN` in nigt_hpc/config.py, written out in jobs/local/cartpole.toml), and "
        "`nigt-hpc simulate` runs the same preset with `delays.compute = \"sqrt\"`.",
        "",
        "Sections: " + ", ".join(f"[`[{s}]`](#{s})" for s in schema) + ".",
        "",
    ]
    for section, keys in schema.items():
        out += [f"## [{section}]", ""]
        if section in SECTION_NOTES:
            out += [SECTION_NOTES[section], ""]
        out += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for key, f in keys.items():
            out.append(f"| `{section}.{key}` | {KIND_NAMES.get(f.kind, f.kind)} | "
                       f"`{_cell(toml_value(f.default))}` | {allowed(f)} | "
                       f"{_cell(meaning(section, key, f))} |")
        out.append("")
    out += ["## Every default, as one file", "", "```toml"]
    for section, keys in schema.items():
        out.append(f"[{section}]")
        out += [f"{key} = {toml_value(f.default)}" for key, f in keys.items()]
        out.append("")
    out[-1] = "```"
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print docs/CONFIG.md to stdout; return the exit status."""
    sys.stdout.write(config_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
