"""Files on disk: atomic writes, one digest, one JSONL reader, one lock (house rule 7).

- Writes go to a temporary file in the same folder, then `os.replace` onto the target, so a killed step never
  leaves a half-written artifact. Files get the process's umask (a shared results folder stays readable).
- `digest(obj)`: the one short hash of the package (12 hex characters of SHA-256 over canonical JSON).
- `read_jsonl(path, tolerate_torn=...)`: strict by default (names the bad line of a downloaded file);
  tolerant of lines torn by a kill for the append-only logs this package writes.
- `append_jsonl(path, rows)`: appends whole lines and flushes them to disk; a torn tail left by a kill is
  terminated first, so it can never swallow the next record.
- `locked(path)`: an exclusive advisory lock (``fcntl.flock``) on ``<path>.lock`` for read-modify-write updates.
- `check_inside(path)`: every write under a run folder (`register_root`) must land inside it: a symlink inside the
  run folder that leads out of it is an `UnsafePathError` naming the path (issue 25), never followed.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import uuid as _uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

log = logging.getLogger("crowdselect")
_ROOTS: set[str] = set()   # absolute paths of the run folders this process writes into


class UnsafePathError(OSError):
    """A write that a symlink would carry out of its run folder."""


def register_root(directory: str | Path) -> None:
    """Writes below `directory` (a run folder) must resolve inside it (`check_inside`)."""
    _ROOTS.add(os.path.abspath(directory))


def check_inside(path: str | Path) -> Path:
    """`path` unchanged, or `UnsafePathError` when it lies in a registered run folder but resolves (through a
    symlink at any level below that folder) outside it."""
    ap = os.path.abspath(path)
    for root in _ROOTS:
        if ap == root or ap.startswith(root + os.sep):
            real_root, real = os.path.realpath(root), os.path.realpath(ap)
            if real != real_root and not real.startswith(real_root + os.sep):
                raise UnsafePathError(f"refusing to write {ap}: a symlink inside the run folder {root} leads it to "
                                      f"{real}, outside the run. Remove the symlink (or the run folder) and rerun.")
    return Path(path)


def digest(obj: Any, n: int = 12) -> str:
    """Short SHA-256 of `obj` as canonical JSON (sorted keys; non-JSON values through `str`)."""
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:n]


def text_digest(texts, n: int = 40) -> list[str]:
    """SHA-1 hex digest (first `n` characters) of each text: keys of per-text caches (embeddings, rewards)."""
    return [hashlib.sha1(t.encode("utf-8")).hexdigest()[:n] for t in texts]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary path beside `path`, then rename it onto `path` (atomic on POSIX)."""
    path = check_inside(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p))


def write_json(obj: Any, path: str | Path) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


class BadFileError(ValueError):
    """A bookkeeping or artifact file that cannot be read as what it should be; the message names the file."""


def read_json(path: str | Path) -> Any:
    """The JSON in `path`; a file that is empty, not UTF-8 or not JSON is a `BadFileError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise BadFileError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        why = "it is empty" if not e.doc.strip() else f"{e.msg} at line {e.lineno} column {e.colno}"
        raise BadFileError(f"{path} is not valid JSON ({why})") from None


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (blocks until free). Guards read-modify-write of shared files."""
    lock = check_inside(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def update_json(path: str | Path, update: Callable[[dict], dict | None], *, way_out: str | None = None) -> dict:
    """Read-modify-write a JSON mapping under `locked(path)`; `update` edits the dict in place or returns a new one.
    Two processes updating one file never lose each other's entries. A file that is not a JSON mapping is a
    `BadFileError` naming it and `way_out`; with ``way_out="rewrite"`` (indexes whose entries come back when
    their steps run again) it is started afresh with one warning instead."""
    path = Path(path)
    with locked(path):
        try:
            data = read_json(path) if path.exists() else {}
            if not isinstance(data, dict):
                raise BadFileError(f"{path} holds a JSON {type(data).__name__}, not a mapping")
        except BadFileError as e:
            if way_out != "rewrite":
                raise BadFileError(f"{e}: {way_out or 'move it aside and rerun'}") from None
            log.warning("%s; started afresh (its entries come back as their steps run again)", e)
            data = {}
        new = update(data)
        data = data if new is None else new
        write_json(data, path)
    return data


def read_jsonl(path: str | Path, *, tolerate_torn: bool = False) -> list[dict]:
    """Rows of a JSON-lines file. Strict (default, for downloaded files): a line that is not JSON raises
    ValueError naming the file and line. With `tolerate_torn` (append-only logs this package writes with
    `append_jsonl`), a line that does not parse is the fragment of a write cut by a kill: it is skipped and
    counted in the log; the record it began was never finished and is redone by its caller."""
    path = Path(path)
    if not path.exists():
        return []
    rows, torn = [], 0
    for i, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if not tolerate_torn:
                raise ValueError(f"{path}: line {i} is not valid JSON ({e.msg})") from None
            torn += 1
    if torn:
        log.warning("%s: skipped %d torn line(s) left by an interrupted write", path, torn)
    return rows


def append_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Append `rows` as whole lines, flushed and fsynced. If the file ends in a torn line (a kill mid-write), a
    newline is written first so the torn fragment stays on its own line and the new rows parse."""
    path = check_inside(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    with locked(path):
        with open(path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write(payload.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
