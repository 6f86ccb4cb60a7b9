"""The step cache: every artifact is keyed by what produced it (house rule 7; DVC / ZenML, Bazel / Shake style).

A step's key is a digest of its stage and name, the settings it reads, the **source of the code** that computes it
(`content.code_digest` of the modules it names, e.g. ``crowdselect_lib.metrics`` or the whole
``crowdselect_lib.selection`` package) and the **content** of its inputs: an input that is an upstream `Step`
counts by the ``outputs`` digest its manifest recorded (the SHA-256 of every file it wrote), not by its key. So an
edit of code gives new keys to the steps that code computes, and the steps below them are recomputed only if those
wrote different bytes (early cutoff): a docstring edit that recomputes a byte-identical subset retrains nothing.
An upstream step that is not computed yet counts as ``pending:<its key>``: the step below is simply not done, and
its real key is known once the upstream finished (keys are recomputed until no input is pending).

Files live in ``<run>/<stage>/<name>/<key>/`` beside ``manifest.json`` (key, settings, inputs, code, the sha256 of
each file written, their ``outputs`` digest, package version, time). A step is *done* when its manifest carries
its key and every recorded file still has its recorded hash (streamed, memoised per process; see
`content.file_sha256`). **A file that differs (edited by hand, damaged) is never served**: the step is recomputed,
with one warning naming the file. We recompute rather than stop because the key says exactly what the files must
hold and the cache can rebuild them itself; stopping would only ask the user to delete the folder by hand. A
``manifest.json`` that does not parse is handled the same way.

``<stage>/<name>/latest`` and the stage's ``index.json`` point at the key the current settings resolved, re-pointed
whenever a run reuses or computes the step (`announce` / `finish`), so going back to an earlier setting points them
back. ``index.json`` is informational: one that does not parse is rewritten with a warning, never blocking a step.
Every step prints one line, ``reused <stage>/<name> (<key>)`` or ``computing <stage>/<name> (<key>)``.

    st = run.step("metrics", "sim-skywork", settings={...}, inputs={"zoo": zoo_step}, code="crowdselect_lib.metrics")
    table = st.table(lambda: compute_metrics(...))      # read if done, else compute, write, finish

The package version is recorded in manifests but is not part of keys: the code digest replaces it, so a version
bump alone invalidates nothing. Fine-grained caches (embeddings by text, LLM replies by request, reward scores by
text) live beside steps and have their own keys; a step only records which of them it used.
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
from .content import caller_code, code_digest, file_sha256, tree_files
from .store import BadFileError, check_inside, digest, read_json, update_json, write_json, write_parquet

log = logging.getLogger("crowdselect")
STEP_LOG: list[tuple[str, str, str]] = []   # (status, stage/name, key) of every step this process resolved
_SAY_REUSED = [False]                          # `run.verbose`: also print the "reused ..." lines (run.log has them all)


def set_verbose(on: bool) -> None:
    """`run.verbose`: print every step's status line; off (the default), only ``computing ...`` lines are printed,
    at most one line per step, so a chapter reads without a ``reused ...`` line under nearly every cell."""
    _SAY_REUSED[0] = bool(on)
_BAD_PART = ("", ".", "..")


def _check_part(value: Any, what: str) -> str:
    """A stage or step name is one folder name that stays inside its parent (a name like ``..`` would escape)."""
    if (not isinstance(value, str) or value in _BAD_PART or any(c in value for c in "/\\\0")
            or any(ord(c) < 32 for c in value)):
        raise ValueError(f"{what} {value!r} is not a plain folder name: no '/', '\\', control characters, "
                         "and not '', '.' or '..' (it would leave its stage folder)")
    return value


@dataclass
class Step:
    """One keyed artifact of a run. `dir` holds its files; `done` is true once `finish()` wrote its manifest and
    its files still hash to what it recorded. `inputs`: name -> upstream `Step` (keyed on what it wrote) or a
    string (an input fingerprint, used as is). `code`: the modules or packages that compute it (default: the
    caller's package inside crowdselect_lib). `version` is kept for old call sites; the code digest replaces it."""
    root: Path                       # the run directory
    stage: str
    name: str
    settings: dict
    inputs: dict[str, Any] = field(default_factory=dict)
    version: str = "1"
    code: Any = ()
    _key: str | None = field(default=None, init=False, repr=False, compare=False)
    started: float | None = field(default=None, init=False, repr=False, compare=False)   # set by `announce`

    def __post_init__(self):
        _check_part(self.stage, "stage")
        _check_part(self.name, f"{self.stage} step name")
        code = (self.code,) if isinstance(self.code, str) or hasattr(self.code, "__name__") else tuple(self.code)
        self.code = tuple(getattr(m, "__name__", m) for m in code) or (caller_code(2),)
        self.inputs = dict(self.inputs or {})

    # ------------------------------------------------------------------ keys
    def resolved_inputs(self) -> dict[str, str]:
        """Each input as it enters the key: an upstream step's ``outputs`` digest, ``pending:<key>`` while it is
        not done, a string input as given."""
        out = {}
        for k, v in sorted(self.inputs.items()):
            if isinstance(v, Step):
                o = v.outputs()
                out[k] = o if o is not None else f"pending:{v.key}"
            elif isinstance(v, str):
                out[k] = v
            else:
                raise TypeError(f"input {k!r} of step {self.label} is a {type(v).__name__}: give the upstream Step "
                                "(keyed on what it wrote) or a fingerprint string")
        return out

    @property
    def pending(self) -> list[str]:
        """Names of the upstream inputs not computed yet (the key is provisional while any is)."""
        if self._key is not None:
            return []
        return [k for k, v in self.resolved_inputs().items() if v.startswith("pending:")]

    @property
    def key(self) -> str:
        if self._key is not None:
            return self._key
        inputs = self.resolved_inputs()
        key = digest({"stage": self.stage, "name": self.name, "version": self.version,
                      "code": code_digest(*self.code), "settings": self.settings, "inputs": inputs})
        if not any(v.startswith("pending:") for v in inputs.values()):
            self._key = key            # final once no input is pending
        return key

    @property
    def dir(self) -> Path:
        return self.root / self.stage / self.name / self.key

    @property
    def label(self) -> str:
        return f"{self.stage}/{self.name}"

    # ------------------------------------------------------------------ done, verified
    def _manifest_if_valid(self) -> dict | None:
        m = self.dir / "manifest.json"
        if not m.exists():
            return None
        try:
            manifest = read_json(m)
            if not isinstance(manifest, dict):
                raise BadFileError(f"{m} holds a JSON {type(manifest).__name__}, not a mapping")
        except BadFileError as e:
            return self._invalid(m, f"{e}")
        if manifest.get("key") != self.key:
            return None
        files = manifest.get("files")
        if not isinstance(files, dict):
            return self._invalid(m, f"{m} records no file hashes")
        for rel, sha in files.items():
            p = self.dir / rel
            if not p.is_file():
                return self._invalid(p, f"{p} is missing")
            if file_sha256(p) != sha:
                return self._invalid(p, f"{p} differs from the hash its manifest recorded (edited or damaged)")
        return manifest

    def _invalid(self, path: Path, why: str) -> None:
        """Integrity policy: warn once, drop the manifest, so the step is recomputed (see the module docstring)."""
        log.warning("%s: step %s (%s) is not served and will be recomputed", why, self.label, self.key)
        m = self.dir / "manifest.json"
        if m.exists():
            m.unlink()
        return None

    @property
    def done(self) -> bool:
        return self._manifest_if_valid() is not None

    def outputs(self) -> str | None:
        """The content digest of what the step wrote (None while it is not done)."""
        m = self._manifest_if_valid()
        return None if m is None else m.get("outputs")

    def path(self, *parts: str) -> Path:
        p = check_inside(self.dir.joinpath(*parts))
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def announce(self, say: Callable[[str], None] | None = print) -> "Step":
        """Print (a reused step only with `set_verbose`) and log whether the step is reused or computed; a reused
        step becomes ``latest``."""
        done = self.done
        status = "reused" if done else "computing"
        pending = self.pending if not done else []
        wait = f"; its key is final once its inputs {', '.join(pending)} are computed" if pending else ""
        if not done and self.started is None:
            self.started = time.perf_counter()        # `finish` records the wall seconds since (the cost ledger)
        STEP_LOG.append((status, self.label, self.key))
        if say is not None and (not done or _SAY_REUSED[0]):
            say(f"{status} {self.label} ({self.key}{wait})")
        log.info("%s %s (%s%s)", status, self.label, self.key, wait)
        if done:
            self._point(self.manifest()["finished"])
        else:
            check_inside(self.dir)
        return self

    def finish(self, **info: Any) -> dict:
        """Record the sha256 of each file written and their ``outputs`` digest in the manifest (the step is done),
        and point ``latest`` and the stage index at this key. The manifest records ``seconds``, the wall time since
        `announce` said "computing" (the cost ledger reads it), unless `info` gives its own."""
        files = tree_files(self.dir)
        timing = {"seconds": round(time.perf_counter() - self.started, 2)} if self.started is not None else {}
        manifest = {"key": self.key, "stage": self.stage, "name": self.name, "version": self.version,
                    "code": {m: code_digest(m) for m in self.code}, "package": __version__,
                    "settings": self.settings, "inputs": self.resolved_inputs(),
                    "input_keys": {k: v.key for k, v in self.inputs.items() if isinstance(v, Step)},
                    "files": files, "outputs": digest(files),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **timing, **info}
        write_json(manifest, self.path("manifest.json"))
        self._point(manifest["finished"])
        return manifest

    def _point(self, finished: str) -> None:
        _point_latest(self.dir)
        update_json(self.root / self.stage / "index.json", way_out="rewrite",
                    update=lambda idx: idx.__setitem__(self.name, {"key": self.key, "finished": finished}))

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
    link = check_inside(target.parent / "latest")
    tmp = check_inside(target.parent / f".latest.{os.getpid()}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp, target_is_directory=True)
    os.replace(tmp, link)


def steps_computed() -> int:
    """Number of steps this process computed (an unchanged rerun computes none)."""
    return sum(1 for status, _, _ in STEP_LOG if status == "computing")
