"""Loading params: `load_config(path, overrides)` reads a params file, applies dotted overrides such as
``{"selection.k": 200}``, and validates every key and type: an unknown key or a wrong type is a
`ConfigError` naming the key. A file may start with ``base: other.yaml`` to inherit from another
params file (paths relative to the file); its own keys then override the base's, section by section.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from .schema import ConfigError, RunConfig

def _check(value: Any, tp: Any, key: str) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_check(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return {k: _check(v, args[1], f"{key}.{k}") for k, v in value.items()} if args else dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool or tp is str:
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {sorted(names)})")
    kwargs = {k: _check(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from None


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_params(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """Read a params YAML, resolving its `base:` chain, and return the merged mapping. A missing file, a YAML
    syntax error or a `base:` chain that comes back to a file already in it is a ConfigError naming the file."""
    path = Path(path)
    here = path.resolve()
    if here in _chain:
        loop = " -> ".join(p.name for p in (*_chain, here))
        raise ConfigError(f"{path}: its base: chain loops ({loop})")
    if not path.is_file():
        via = f" (base: of {_chain[-1]})" if _chain else ""
        raise ConfigError(f"params file not found: {path}{via}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: base: must be a file name, got {base!r}")
        data = _deep_merge(read_params(path.parent / base, (*_chain, here)), data)
    return data


def apply_overrides(data: dict, overrides: dict | None) -> dict:
    """Apply dotted overrides, e.g. {"selection.k": 200, "zoo": {"n_instructions": 500}}."""
    for dotted, value in (overrides or {}).items():
        parts = dotted.split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted}: {p} is not a section")
        last = parts[-1]
        node[last] = _deep_merge(node[last], value) if isinstance(value, dict) and isinstance(node.get(last), dict) else value
    return data


def load_config(path: str | Path | None = None, overrides: dict | None = None,
                demo: bool = False) -> RunConfig:
    """Load and validate a params file (house rules 1-2). `path=None` gives the defaults.

    A table's params file may carry a `demo:` block: its offline demo. The block means one thing, a delta over
    ``demo.yaml``: with `demo=True` the config is ``demo.yaml`` (or the block's own ``base:``) merged with the
    block, then `overrides`; nothing of the paper-scale part of the file applies except the table id
    (``tables.table``), so no paper model or dataset can leak into the demo. Without `demo` the block is ignored;
    a file without a block loads as it is either way.
    """
    data = read_params(path) if path is not None else {}
    overlay = data.pop("demo", None)
    if demo and overlay:
        table = (data.get("tables") or {}).get("table")
        base = overlay.pop("base", "demo.yaml")
        data = _deep_merge(read_params(Path(path).parent / base), overlay)
        data.pop("demo", None)
        if table is not None:
            data.setdefault("tables", {}).setdefault("table", table)
    data = apply_overrides(data, overrides)
    return from_dict(RunConfig, data)
