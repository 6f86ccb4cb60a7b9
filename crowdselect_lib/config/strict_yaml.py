"""Reading params YAML strictly: `read_yaml(text, where)` is `yaml.safe_load` that refuses, naming `where` (the file
or the ``--set`` item) and the line, what would otherwise be read silently as something else or blow up later:

- aliases that expand past `MAX_VALUES` values (a 600-byte "billion laughs" file) and nesting deeper than
  `MAX_DEPTH` levels (checked on the event stream, before anything is built);
- a key repeated in one mapping (YAML keeps the last one without a word);
- YAML 1.1 integers that are not what they look like: ``010`` (octal 8), ``1:30`` (base 60: 90).

It also reads ``1e-5`` as a float (YAML 1.2; YAML 1.1 reads it as a string), and reads the YAML 1.1 booleans
``yes/no/on/off`` as `Yaml11Word`: a string that remembers where it came from, so the loader takes it for a
true/false field but refuses it, naming file and key, where a string is expected (``mixed_precision: no``).
`measure` bounds the size and depth of data that did not come through here (overrides from Python or papermill).
"""
from __future__ import annotations

import re
from typing import Any

import yaml
from yaml import events as ev

from .base import ConfigError

MAX_DEPTH = 64          # nesting levels of mappings/lists (params files use 4)
MAX_VALUES = 100_000    # values after alias expansion (params files hold a few hundred)
_FLOAT_12 = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+\Z")
_OCTAL = re.compile(r"[-+]?0[0-9_]+\Z")
_TRUE_FALSE = ("true", "false")


class Yaml11Word(str):
    """``yes/no/on/off`` as written (YAML 1.1 would read a boolean); `.origin` is ``file, line N``."""
    origin = ""

    def __repr__(self) -> str:
        return repr(str(self))

    @property
    def flag(self) -> bool:
        return self.lower() in ("yes", "on")


class _Refused(Exception):
    def __init__(self, message: str, mark) -> None:
        super().__init__(message)
        self.mark = mark


class _StrictLoader(yaml.SafeLoader):
    where = ""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise _Refused(f"key {str(key)!r} appears twice in one mapping (lines {seen[key]} and "
                                   f"{key_node.start_mark.line + 1}); YAML would keep the last silently",
                                   key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        mapping = super().construct_mapping(node, deep=deep)
        return {str(k) if isinstance(k, Yaml11Word) else k: v for k, v in mapping.items()}

    def construct_yaml_bool(self, node):
        text = self.construct_scalar(node)
        if text.lower() in _TRUE_FALSE:
            return text.lower() == "true"
        word = Yaml11Word(text)
        word.origin = f"{self.where}, line {node.start_mark.line + 1}"
        return word

    def construct_yaml_int(self, node):
        text = str(self.construct_scalar(node))
        if ":" in text:
            raise _Refused(f"{text} reads as a base-60 number in YAML 1.1 ({super().construct_yaml_int(node)}); "
                           "quote it for a string", node.start_mark)
        if _OCTAL.match(text) and text.strip("+-_0"):
            raise _Refused(f"{text} reads as octal {super().construct_yaml_int(node)} in YAML 1.1; write it without "
                           "the leading 0, or quote it for a string", node.start_mark)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node):
        text = str(self.construct_scalar(node))
        if ":" in text:
            raise _Refused(f"{text} reads as a base-60 number in YAML 1.1; quote it for a string", node.start_mark)
        return super().construct_yaml_float(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:bool", _StrictLoader.construct_yaml_bool)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _StrictLoader.construct_yaml_float)
_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_yaml_map)
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


class _Dumper(yaml.SafeDumper):
    """Quotes a string that `read_yaml` would read as something else (``"1e-5"``), so a dump reads back as itself."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def dump_yaml(data: Any) -> str:
    """`data` as YAML that `read_yaml` reads back unchanged (``yaml.safe_dump`` quotes ``"1e-5"`` too)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def _line(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _one_line(e: yaml.YAMLError) -> str:
    """A YAML error on one line: where, the problem and its context (no source snippet)."""
    if isinstance(e, yaml.MarkedYAMLError):
        context = f" ({e.context} at line {e.context_mark.line + 1})" if e.context and e.context_mark else ""
        return f"{_line(e.problem_mark)}{e.problem}{context}"
    return " ".join(str(e).split())


def _scan(text: str, where: str) -> None:
    """Refuse nesting past `MAX_DEPTH` and aliases expanding past `MAX_VALUES`, on the event stream (nothing
    is built, so neither recursion nor memory can run away)."""
    stack: list[list] = []      # open collections: [anchor, values inside so far]
    sizes: dict[str, int] = {}  # anchor -> values it stands for
    total = 0
    for e in yaml.parse(text, Loader=yaml.SafeLoader):
        n = 0
        if isinstance(e, (ev.MappingStartEvent, ev.SequenceStartEvent)):
            stack.append([e.anchor, 1])
            if len(stack) > MAX_DEPTH:
                raise ConfigError(f"{where}: {_line(e.start_mark)}nested deeper than {MAX_DEPTH} levels")
            continue
        if isinstance(e, (ev.MappingEndEvent, ev.SequenceEndEvent)):
            anchor, n = stack.pop()
        elif isinstance(e, ev.ScalarEvent):
            anchor, n = e.anchor, 1
        elif isinstance(e, ev.AliasEvent):
            if any(a == e.anchor for a, _ in stack):
                raise ConfigError(f"{where}: {_line(e.start_mark)}alias *{e.anchor} refers to a list or mapping "
                                  "that holds it (a value that contains itself)")
            anchor, n = None, sizes.get(e.anchor, 1)
        else:
            continue
        if anchor is not None:
            sizes[anchor] = n
        if stack:
            stack[-1][1] += n
        else:
            total += n
        if total > MAX_VALUES or (stack and stack[-1][1] > MAX_VALUES):
            raise ConfigError(f"{where}: {_line(e.start_mark)}its aliases expand past {MAX_VALUES:,} values "
                              f"(an alias bomb?); params files need no more than a few hundred")


def read_yaml(text: str, where: str) -> Any:
    """`text` parsed as described in the module docstring; any problem is a one-line `ConfigError` naming `where`."""
    try:
        _scan(text, where)
        loader = _StrictLoader(text)
        loader.where = where
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except _Refused as e:
        raise ConfigError(f"{where}: {_line(e.mark)}{e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {_one_line(e)}") from None


def read_yaml_file(path) -> Any:
    """`read_yaml` of a file that must be UTF-8 (a ConfigError naming the file and the first bad byte if not)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save it as "
                          "UTF-8") from None
    return read_yaml(text, str(path))


def measure(value: Any, where: str) -> None:
    """Refuse data nested deeper than `MAX_DEPTH` or holding more than `MAX_VALUES` values once shared parts are
    counted every time they appear (what writing it out would expand), or that contains itself."""
    sizes: dict[int, tuple[int, int]] = {}   # id -> (values, depth), for containers done
    open_: set[int] = set()
    todo: list[tuple[Any, bool]] = [(value, False)]
    while todo:
        x, done = todo.pop()
        if not isinstance(x, (dict, list, tuple)) or (not done and id(x) in sizes):
            continue
        kids = list(x.values()) if isinstance(x, dict) else list(x)
        if done:
            open_.discard(id(x))
            sub = [sizes.get(id(k), (1, 0)) for k in kids]
            n = 1 + sum(s for s, _ in sub)
            depth = 1 + max((d for _, d in sub), default=0)
            if n > MAX_VALUES or depth > MAX_DEPTH:
                what = (f"nested deeper than {MAX_DEPTH} levels" if depth > MAX_DEPTH
                        else f"expands past {MAX_VALUES:,} values (shared parts counted each time)")
                raise ConfigError(f"{where}: {what}")
            sizes[id(x)] = (n, depth)
            continue
        if id(x) in open_:
            raise ConfigError(f"{where}: contains itself (a value that refers back to a list or mapping holding it)")
        if len(open_) >= MAX_DEPTH:
            raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        open_.add(id(x))
        todo.append((x, True))
        todo.extend((k, False) for k in kids)
