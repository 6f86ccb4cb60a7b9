"""The short settings summary every notebook prints under its parameters cell (issue 15): the run name, whether
it is the offline demo, and the key values of the sections the chapter reads. The full resolved config is one
click away in ``runs/<name>/config.yaml``; values that differ from the paper's defaults (the schema's defaults,
issue 10.5) are starred."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

from ..config.schema import RunConfig
from ..runs import checkout_of, library_checkout_warning

_WIDTH = 110
_MAX_LINES = 2        # per section; the rest is in config.yaml
# The values a reader checks first, per section; any other value is shown only when it differs from the paper's.
KEY_FIELDS = {
    "run": ["name", "seed"], "zoo": ["source", "n_instructions", "limit"],
    "metrics": ["reward_model", "stability_families"], "embedding": ["model"],
    "clustering": ["n_clusters", "seed", "n_init"], "selection": ["k", "response", "weights", "subsets"],
    "scoring": ["reward_models", "max_length"], "llm": ["backend", "model"], "baselines": ["methods", "tokenizer"],
    "training": ["student", "students", "methods", "subsets", "learning_rate", "epochs", "max_steps", "seeds"],
    "judge": ["judge", "judge_model", "benchmarks", "n_questions", "max_new_tokens", "repetitions", "anchor"],
    "tables": ["table", "grid", "rows", "train_method"],
}


class Summary(str):
    """A string that shows as plain text when it is the last expression of a notebook cell."""

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))


def _short(value: Any, n: int = 4) -> str:
    """A compact rendering: dataclass items by name, long lists cut to `n` items and a count."""
    if dataclasses.is_dataclass(value):
        return str(getattr(value, "name", type(value).__name__))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        items = [_short(v) for v in value]
        more = f", … ({len(items)})" if len(items) > n else ""
        return "[" + ", ".join(items[:n]) + more + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in list(value.items())[:n]) + \
            (f", … ({len(value)})" if len(value) > n else "") + "}"
    return str(value)


def _wrap(head: str, parts: list[str]) -> list[str]:
    lines, line = [], head
    for part in parts:
        if len(line) + len(part) + 2 > _WIDTH and line != head:
            lines.append(line.rstrip(","))
            line = " " * len(head)
        line += (" " if line.endswith(":") or line.strip() == "" else ", ") + part if line.strip() else part
    lines.append(line)
    if len(lines) > _MAX_LINES:
        rest = sum(len(x.split(", ")) for x in lines[_MAX_LINES:])
        lines = lines[:_MAX_LINES]
        lines[-1] += f", … +{rest} more in config.yaml"
    return lines


def settings_summary(cfg: RunConfig, sections: Iterable[str] = ()) -> Summary:
    """A few lines: ``run <name> · offline demo|paper-scale run``, where the full config is, then at most two
    lines per named section: its key values (`KEY_FIELDS`) and every other value that differs from the paper's
    default, starred (``*``); None and empty values are left out.

    >>> print(settings_summary(load_config("params/demo.yaml"), ["selection"]))  # doctest: +SKIP
    run demo · offline demo (simulated zoo, local models, proxy judge) · full config: runs/demo/config.yaml
    selection: k=300*, response=best, weights=[1, 1, 2], official_compat=False, subsets=[difficulty_top, …
    """
    defaults = RunConfig()
    mode = "offline demo (simulated zoo, local models, proxy judge)" if cfg.run.offline_demo else "paper-scale run"
    root, home = Path(cfg.run.root), checkout_of(Path.cwd())
    if home is not None and root.is_absolute() and root.is_relative_to(home):
        root = root.relative_to(home)                       # runs/demo/config.yaml, not the absolute path
    lines = [f"run {cfg.run.name} · {mode} · full config: {root}/{cfg.run.name}/config.yaml"]
    warning = library_checkout_warning()                    # one line when the library is another checkout's
    if warning:
        lines.insert(0, warning)
    for name in sections:
        if not hasattr(cfg, name) or not dataclasses.is_dataclass(getattr(cfg, name)):
            known = [f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))]
            raise KeyError(f"settings_summary: unknown section {name!r} (known: {known})")
        section, default = getattr(cfg, name), getattr(defaults, name)
        parts = []
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            changed = value != getattr(default, f.name)
            if value is None or (isinstance(value, (list, dict)) and not value) or \
                    not (changed or f.name in KEY_FIELDS.get(name, ())):
                continue
            star = "*" if changed else ""
            parts.append(f"{f.name}={_short(value)}{star}")
        lines += _wrap(f"{name}:", parts) if parts else [f"{name}: (paper defaults)"]
    return Summary("\n".join(lines))
