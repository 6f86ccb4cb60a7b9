"""The step cache: every artifact is keyed by what produced it (house rule 7; DVC / ZenML style).

A step's key is a digest of its stage and name, its code version, the settings it reads and the keys of the
artifacts it consumes. Its files live in ``<run>/<stage>/<name>/<key>/`` beside a ``manifest.json`` (key,
settings, inputs, package version, time), and ``<run>/<stage>/<name>/latest`` points at the newest key, so a
reader can open ``runs/demo/selections/crowdselect/latest/selection.parquet``. A step is *done* only when its
manifest carries its key: an equal key is reused, a changed setting gives a new key (a new folder) that is
computed, and so is every step downstream, whose inputs include this key. Every step prints one line,
``reused <stage>/<name> (<key>)`` or ``computing <stage>/<name> (<key>)``.

    st = run.step("metrics", "sim-skywork", settings={...}, inputs={"zoo": zoo_step.key}, version="1")
    table = st.table(lambda: compute_metrics(...))      # read if done, else compute, write, finish

Fine-grained caches (embeddings by text, LLM replies by request, reward scores by text) live beside steps and
have their own keys; a step only records which of them it used.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..version import __version__
from .store import digest, read_json, update_json, write_json, write_parquet

log = logging.getLogger("crowdselect")
STEP_LOG: list[tuple[str, str, str]] = []   # (status, stage/name, key) of every step this process resolved


@dataclass
class Step:
    """One keyed artifact of a run. `dir` holds its files; `done` is true once `finish()` wrote its manifest."""
    root: Path                       # the run directory
    stage: str
    name: str
    settings: dict
    inputs: dict[str, str] = field(default_factory=dict)
    version: str = "1"

    @property
    def key(self) -> str:
        return digest({"stage": self.stage, "name": self.name, "version": self.version,
                       "package": __version__, "settings": self.settings, "inputs": self.inputs})

    @property
    def dir(self) -> Path:
        return self.root / self.stage / self.name / self.key

    @property
    def label(self) -> str:
        return f"{self.stage}/{self.name}"

    @property
    def done(self) -> bool:
        m = self.dir / "manifest.json"
        return m.exists() and read_json(m).get("key") == self.key

    def path(self, *parts: str) -> Path:
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def announce(self, say: Callable[[str], None] | None = print) -> "Step":
        status = "reused" if self.done else "computing"
        STEP_LOG.append((status, self.label, self.key))
        if say is not None:
            say(f"{status} {self.label} ({self.key})")
        log.info("%s %s (%s)", status, self.label, self.key)
        return self

    def finish(self, **info: Any) -> dict:
        """Write the manifest (the step is done) and point ``latest`` and the stage index at this key."""
        manifest = {"key": self.key, "stage": self.stage, "name": self.name, "version": self.version,
                    "package": __version__, "settings": self.settings, "inputs": self.inputs,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
        write_json(manifest, self.path("manifest.json"))
        _point_latest(self.dir)
        update_json(self.root / self.stage / "index.json",
                    lambda idx: idx.__setitem__(self.name, {"key": self.key, "finished": manifest["finished"]}))
        return manifest

    def manifest(self) -> dict:
        return read_json(self.dir / "manifest.json")

    def table(self, compute: Callable[[], pd.DataFrame], filename: str = "table.parquet", **info: Any) -> pd.DataFrame:
        """The step's one table: read it when done, else compute, write atomically and finish."""
        if self.done:
            return pd.read_parquet(self.dir / filename)
        df = compute()
        write_parquet(df, self.path(filename))
        self.finish(rows=len(df), **info)
        return df


def _point_latest(target: Path) -> None:
    """``<stage>/<name>/latest`` -> ``<key>`` (relative symlink, replaced atomically)."""
    link = target.parent / "latest"
    tmp = target.parent / f".latest.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp, target_is_directory=True)
    os.replace(tmp, link)


def steps_computed() -> int:
    """Number of steps this process computed (an unchanged rerun computes none)."""
    return sum(1 for status, _, _ in STEP_LOG if status == "computing")
