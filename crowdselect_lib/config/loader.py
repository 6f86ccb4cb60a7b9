"""Loading params: `load_config(path, overrides)` reads a params file, applies dotted overrides such as
``{"selection.k": 200}``, and validates every key and type: an unknown key or a wrong type is a
`ConfigError` naming the key. A file may start with ``base: other.yaml`` to inherit from another
params file (paths relative to the file); its own keys then override the base's, section by section.
Files and ``--set`` values are read by `strict_yaml` (alias bombs, deep nesting, duplicate keys, octal ``010``
refused, naming the file and line); float fields take ``1e-5`` (also as a string, as papermill's ``-y`` passes
it) and refuse NaN and infinity.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

from ..runs.run import checkout_of
from .schema import ConfigError, RunConfig
from .strict_yaml import Yaml11Word, measure, read_yaml, read_yaml_file

_NUMBER = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?\Z")


def _word(value: Yaml11Word, key: str, wanted: str) -> ConfigError:
    return ConfigError(f"{value.origin}: {key}: {str(value)!r} is a YAML 1.1 boolean, not {wanted}: quote it "
                       f"(\"{value}\") for a string, or write true/false")


def _plain(value: Any, key: str) -> Any:
    """A free-form value (`Any` fields such as ``extra_body``) with YAML 1.1 words read as YAML 1.1 reads them."""
    if isinstance(value, Yaml11Word):
        return value.flag
    if isinstance(value, dict):
        return {k: _plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, f"{key}[{i}]") for i, v in enumerate(value))
    return value


def _check(value: Any, tp: Any, key: str) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return _plain(value, key)
    if isinstance(value, Yaml11Word):
        if tp is bool:
            return value.flag
        if origin not in (typing.Union, types.UnionType) or bool not in args:
            raise _word(value, key, "a string" if tp is str or origin is Literal else "a value of this key")
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
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            value = float(value.replace("_", ""))   # 1e-5: a string to YAML 1.1 (papermill -y)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: {value!r} must be a finite number (NaN and infinity are refused)")
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
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"{prefix or cls.__name__}: key {odd[0]!r} ({type(odd[0]).__name__}) is not a name "
                          "(quote it)")
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
    data = read_yaml_file(path)
    data = {} if data is None else data
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
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"overrides: expected a mapping of dotted keys such as {{\"selection.k\": 200}}, got "
                          f"{type(overrides).__name__} {str(overrides)[:60]!r}")
    for dotted, value in (overrides or {}).items():
        if not isinstance(dotted, str) or not all(dotted.split(".")):
            raise ConfigError(f"overrides: key {dotted!r} is not a dotted key such as \"selection.k\"")
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
    if overlay is not None and not isinstance(overlay, dict):
        raise ConfigError(f"{path}: demo: must be a mapping (the demo's delta over demo.yaml), got "
                          f"{type(overlay).__name__}")
    if demo and overlay:
        table = (data.get("tables") or {}).get("table")
        base = overlay.pop("base", "demo.yaml")
        data = _deep_merge(read_params(Path(path).parent / base), overlay)
        data.pop("demo", None)
        if table is not None:
            data.setdefault("tables", {}).setdefault("table", table)
    data = apply_overrides(data, overrides)
    for section, value in data.items():
        measure(value, f"{path or 'params'}: {section}" + (" (with overrides)" if overrides else ""))
    try:
        cfg = from_dict(RunConfig, data)
    except ConfigError as e:
        raise ConfigError(_in_file(str(e), path, overrides)) from None
    if path is not None:
        _root_in_checkout(cfg, Path(path))
    return cfg


def _in_file(message: str, path, overrides: dict | None) -> str:
    """`message` prefixed with the params file when the key it names came from the file, not from `overrides`."""
    key = re.match(r"(?:unknown key )?([\w.\[\]+=-]+)", message)
    if path is None or message.startswith(str(path)) or ", line " in message.split(":")[0] or key is None:
        return message
    k = key.group(1)
    if any(k == o or k.startswith((f"{o}.", f"{o}[")) for o in (overrides or {})):
        return message
    return f"{path}: {message}"


def parse_sets(items: list[str]) -> dict:
    """``--set key=value`` pairs as dotted overrides; values are read as YAML (``k=60``, ``w=[1,-1,1.5]``) by
    `strict_yaml`: a bad value is a one-line ConfigError naming the item."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. selection.k=60")
        out[key] = read_yaml(value, f"--set {item}")
    return out


def _root_in_checkout(cfg: RunConfig, path: Path) -> None:
    """A relative ``run.root`` resolves against the checkout the params file lies in (not where the package is
    installed: two checkouts sharing one environment keep their own runs); outside a checkout it is left as is."""
    root = Path(cfg.run.root).expanduser()
    home = checkout_of(path)
    if not root.is_absolute() and home is not None:
        cfg.run.root = str(home / root)
