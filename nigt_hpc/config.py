"""Configuration: the schema of INTERFACE.md, validation, ``--set`` overrides, TOML output.

Every error a user can cause raises :class:`ConfigError`, whose message names the field and
what is allowed; the CLI prints it as one ``error:`` line and exits with status 2.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import math
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["ConfigError", "load", "dumps", "defaults", "merge", "parse_set", "tomllib"]


from .schema import EXACT, INT64, SCHEMA, ConfigError, F, Field  # noqa: F401  (re-exported)

# Informational section written into a run directory's config.toml (rank count, version,
# git hash); accepted and ignored on input so a run's own config.toml can be re-used.
META_SECTION = "meta"


def defaults() -> dict:
    """Return a fresh nested dict holding every default."""
    return {s: {k: copy.deepcopy(f.default) for k, f in keys.items()} for s, keys in
            SCHEMA.items()}


def _all_keys() -> list[str]:
    return [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]


def _unknown(name: str) -> ConfigError:
    near = difflib.get_close_matches(name, _all_keys() + list(SCHEMA), n=1, cutoff=0.5)
    if not near:  # a bare key in the wrong section: suggest the same key elsewhere
        tail = name.split(".")[-1]
        near = [k for k in _all_keys() if k.split(".")[-1] == tail][:1]
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return ConfigError(f"unknown config key '{name}'{hint}")


def _type_name(v: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list",
            dict: "table"}.get(type(v), type(v).__name__)


def _check_number(name: str, v: Any, f: Field) -> None:
    if f.ge is not None and not v >= f.ge:
        raise ConfigError(f"{name} = {v!r} is out of range: must be >= {f.ge:g}")
    if f.gt is not None and not v > f.gt:
        raise ConfigError(f"{name} = {v!r} is out of range: must be > {f.gt:g}")
    if f.le is not None and not v <= f.le:
        raise ConfigError(f"{name} = {v!r} is out of range: must be <= {f.le:g}")


def _coerce(name: str, v: Any, f: Field) -> Any:
    """Return ``v`` converted to the field's type, or raise ConfigError naming the field."""
    want = f.kind
    bad = ConfigError(f"{name} must be {want.replace('_', ' of ')}, got {_type_name(v)} {v!r}")
    if want == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad
        _check_number(name, v, f)
    elif want == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad
        v = float(v)
        if math.isnan(v) or (f.finite and math.isinf(v)):
            raise ConfigError(f"{name} must be a finite number, got {v!r}")
        _check_number(name, v, f)
    elif want == "bool":
        if not isinstance(v, bool):
            raise bad
    elif want == "str":
        if not isinstance(v, str):
            raise bad
        _check_text(name, v)
        if f.choices and v not in f.choices:
            near = difflib.get_close_matches(v, f.choices, n=1, cutoff=0.5)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(f"{name} = {v!r} is not one of {', '.join(f.choices)}{hint}")
    elif want in ("list_int", "list_float"):
        if not isinstance(v, list):
            raise bad
        item = Field(None, want[5:], ge=f.ge, le=f.le)
        v = [_coerce(f"{name}[{i}]", x, item) for i, x in enumerate(v)]
    elif want == "list_str":
        if not isinstance(v, list):
            raise bad
        item = Field(None, "str", choices=f.choices)
        v = [_coerce(f"{name}[{i}]", x, item) for i, x in enumerate(v)]
        if len(set(v)) != len(v):
            raise ConfigError(f"{name} = {v!r} names a value twice")
    elif want == "table":
        if not isinstance(v, dict):
            raise bad
        check_plain(name, v)
    elif want == "list_table":
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise bad
        for i, x in enumerate(v):
            for k in x:
                if k != "kwargs":
                    raise _unknown(f"{name}[{i}].{k}")
            if not isinstance(x.get("kwargs", {}), dict):
                raise ConfigError(f"{name}[{i}].kwargs must be a table")
            check_plain(f"{name}[{i}].kwargs", x.get("kwargs", {}))
    elif want == "list_wrappers":
        if not isinstance(v, list):
            raise bad
        v = [{"name": x, "kwargs": {}} if isinstance(x, str) else x for x in v]
        for i, x in enumerate(v):
            if not isinstance(x, dict) or not isinstance(x.get("name"), str):
                raise ConfigError(f"{name}[{i}] must be a wrapper name or {{name = \"...\", "
                                  "kwargs = {...}}")
            for k in x:
                if k not in ("name", "kwargs"):
                    raise _unknown(f"{name}[{i}].{k}")
            x.setdefault("kwargs", {})
            if not isinstance(x["kwargs"], dict):
                raise ConfigError(f"{name}[{i}].kwargs must be a table")
            check_plain(f"{name}[{i}].kwargs", x["kwargs"])
    return v


MAX_DEPTH = 16  # levels of tables and arrays inside a table value such as env.kwargs


def _check_text(name: str, v: str) -> None:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{name} holds bytes that are not UTF-8 text (from the command "
                          "line?); config.toml could not hold it") from None


def check_plain(name: str, v: Any, depth: int = 0) -> None:
    """Raise ConfigError, naming the key, unless ``v`` is TOML data that config.toml can
    hold and read back unchanged: no dates or times, no nan, 64-bit integers, UTF-8 text,
    at most MAX_DEPTH levels of nesting."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{name} nests deeper than {MAX_DEPTH} levels of tables/arrays")
    if isinstance(v, dict):
        for k, x in v.items():
            _check_text(f"{name} key {k!r}", k)
            check_plain(f"{name}.{k}", x, depth + 1)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            check_plain(f"{name}[{i}]", x, depth + 1)
    elif isinstance(v, str):
        _check_text(name, v)
    elif isinstance(v, bool):
        pass
    elif isinstance(v, int):
        if not -(2**63) <= v < 2**63:
            raise ConfigError(f"{name} = {v} does not fit a 64-bit TOML integer")
    elif isinstance(v, float):
        if math.isnan(v):
            raise ConfigError(f"{name} must be a number, got nan")
    elif isinstance(v, (datetime.date, datetime.time)):
        raise ConfigError(f"{name} = {v.isoformat()} is a TOML date/time, which the run "
                          "cannot pass on or write back; quote it as a string")
    else:
        raise ConfigError(f"{name}: a {type(v).__name__} cannot be written to config.toml")


def merge(cfg: dict, overrides: dict, where: str = "") -> dict:
    """Validate ``overrides`` (nested dict) key by key and merge them into ``cfg``."""
    for section, body in overrides.items():
        if section == META_SECTION:
            continue
        if section not in SCHEMA:
            raise _unknown(f"{where}{section}")
        if not isinstance(body, dict):
            raise ConfigError(f"{section} must be a table like [{section}]")
        for key, value in body.items():
            name = f"{section}.{key}"
            if key not in SCHEMA[section]:
                raise _unknown(name)
            cfg[section][key] = _coerce(name, value, SCHEMA[section][key])
    return cfg


def parse_set(item: str) -> dict:
    """Return the nested dict for one ``--set KEY=VALUE`` (VALUE read as TOML, else a string)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set algo.M=50")
    key, raw = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: KEY must be section.key, e.g. algo.M")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words such as Hopper-v4 or rennala_nigt
    except RecursionError:
        raise ConfigError(f"--set {key}: the value nests too deeply") from None
    return {parts[0]: {parts[1]: value}}


# What ``nigt-hpc train`` runs without a config file: CartPole-v1 with a linear softmax
# policy, tuned so a first-time user sees it solve (mean of 20 >= 475).  alpha = 0.2 solved
# seeds 0-4 in 90k-500k env steps; alpha = 0.3 was faster but collapsed on seed 4.
BUILTIN = {
    "run": {"target_return": 475.0, "max_rounds": 2000},
    "algo": {"M": 10, "M_init": 10, "eta": 0.1, "alpha": 0.2},
}


def load(path: str | None, sets: list[str] = ()) -> dict:
    """Return the resolved config: defaults, then the TOML file, then each ``--set``.

    Without a file the built-in CartPole-v1 preset (``BUILTIN``) stands in for it.
    """
    cfg = defaults()
    if path is None:
        merge(cfg, BUILTIN)
    else:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path!r} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path!r} is a directory") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path!r} is not valid TOML: {e}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path!r} is not UTF-8 text") from None
        except RecursionError:
            raise ConfigError(f"config file {path!r} nests tables/arrays too deeply") from None
        merge(cfg, data)
    for item in sets:
        merge(cfg, parse_set(item))
    check_consistency(cfg)
    check_round_trip(cfg)
    return cfg


def load_meta(path: str) -> dict:
    """Return the ``[meta]`` section of a run's config.toml (empty if it has none)."""
    try:
        with open(path, "rb") as fh:
            meta = tomllib.load(fh).get(META_SECTION, {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{path}: cannot read its [meta] ({type(e).__name__})") from None
    return meta if isinstance(meta, dict) else {}


def check_round_trip(cfg: dict) -> None:
    """Raise ConfigError, naming the key, if config.toml could not hold ``cfg`` exactly."""
    try:
        back = tomllib.loads(dumps(cfg))
    except (tomllib.TOMLDecodeError, TypeError, RecursionError) as e:
        raise ConfigError(f"the config cannot be written to config.toml ({e})") from None
    for section, body in cfg.items():
        for key, value in body.items():
            if back.get(section, {}).get(key) != value:
                raise ConfigError(f"{section}.{key} = {value!r} would not read back from "
                                  "config.toml unchanged")


def check_consistency(cfg: dict) -> None:
    """Raise ConfigError for combinations of valid values that cannot work together."""
    d = cfg["delays"]
    if d["compute"] == "from_list" and not d["compute_list"]:
        raise ConfigError("delays.compute_list must not be empty when delays.compute = "
                          "'from_list'")
    if d["comm"] == "from_list" and not d["comm_list"]:
        raise ConfigError("delays.comm_list must not be empty when delays.comm = 'from_list'")
    e = cfg["env"]
    if e["heterogeneity"] == "per_worker" and not e["per_worker"]:
        raise ConfigError("env.per_worker must list at least one {kwargs = {...}} when "
                          "env.heterogeneity = 'per_worker'")
    if cfg["policy"]["kind"] == "mlp" and not cfg["policy"]["hidden"]:
        raise ConfigError("policy.hidden must list at least one layer size for kind = 'mlp'")
    from .trained import Evaluator  # here: trained imports this module

    if cfg["run"]["deliver"] == "best" and not Evaluator.wanted(cfg):
        raise ConfigError("run.deliver = 'best' needs periodic evaluation: set "
                          "run.eval_every_rounds or run.eval_every_s, and run.eval_episodes > 0")


# ------------------------------------------------------------------------------ TOML output


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
            "\f": "\\f", "\r": "\\r"}


def _toml_string(s: str) -> str:
    """Return ``s`` as a TOML basic string (JSON's escapes differ for DEL and non-BMP)."""
    return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " or c == "\x7f"
                                             else c) for c in s) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_string(str(k))} = {_toml_value(x)}"
                               for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(cfg: dict, meta: dict | None = None) -> str:
    """Return ``cfg`` (and an optional ``[meta]`` section) as TOML text."""
    lines = []
    for section, body in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
        lines.append("")
    if meta:
        lines.append(f"[{META_SECTION}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in meta.items()]
        lines.append("")
    return "\n".join(lines)
