"""Content digests: of a file, of the files a step wrote, and of the source code that computes a step (issue 25).

- `file_sha256(path)`: SHA-256 of a file's bytes, read in 1 MiB blocks (a multi-GB checkpoint never sits in
  memory; one read at disk or single-core SHA-256 speed: 8.5 s per GB measured on a heavily loaded 2-core box).
  Memoised per process on the file's identity and status: device, inode, size, mtime and ctime. Any write, rename-over or `touch` changes ctime, which a user cannot set back, so an edit
  that restores size and mtime is hashed again. A file changed in the last `RACY_S` seconds is never memoised
  (timestamps tick coarsely: the "racily clean" rule of git).
- `tree_files(directory)`: ``{relative path: sha256}`` of the files a step wrote (not ``manifest.json``, ``checkpoints/`` folders, hidden or ``.lock`` files).
- `code_digest(*modules)`: digest of the source of modules and packages (a package: every ``.py`` below it), by
  content, so an edited line of code gives a new step key; no version string kept by hand.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import sys
import time
from pathlib import Path
from types import ModuleType

from .store import digest

RACY_S = 2.0
_MEMO: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes (streamed; memoised on device, inode, size, mtime and ctime)."""
    st = os.stat(path)
    ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if ident in _MEMO:
        return _MEMO[ident]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    out = h.hexdigest()
    if time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > RACY_S:
        _MEMO[ident] = out
    return out


def _recorded(rel: Path) -> bool:
    return not (str(rel) == "manifest.json" or "checkpoints" in rel.parts or any(p.startswith(".") for p in rel.parts)
                or rel.name.endswith(".lock"))


def tree_files(directory: str | Path) -> dict[str, str]:
    """``{path relative to directory: sha256}`` of every file below `directory` a step counts as its output:
    not ``manifest.json``, ``checkpoints/`` folders at any depth (resume scratch), hidden temporaries or ``.lock``
    files."""
    d = Path(directory)
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)
        if p.is_file() and not p.is_symlink() and _recorded(rel):
            out[rel.as_posix()] = file_sha256(p)
    return out


def _module(m: str | ModuleType) -> ModuleType:
    return m if isinstance(m, ModuleType) else sys.modules.get(m) or importlib.import_module(m)


def _sources(m: ModuleType) -> list[tuple[str, str]]:
    """(name, file) of the source of module `m`: its ``.py`` file, or every ``.py`` below a package."""
    paths = list(getattr(m, "__path__", []) or [])
    if paths:
        out = []
        for root in paths:
            for d, dirs, names in os.walk(root):
                dirs[:] = sorted(x for x in dirs if x != "__pycache__")
                rel = os.path.relpath(d, root)
                out += [(f"{m.__name__}/{n if rel == '.' else f'{rel}/{n}'}", os.path.join(d, n))
                        for n in sorted(names) if n.endswith(".py")]
        return out
    f = getattr(m, "__file__", None)
    return [(m.__name__, f)] if f and f.endswith(".py") else []


def code_digest(*modules: str | ModuleType) -> str:
    """Digest of the source of `modules` (dotted names or module objects; a package counts every ``.py`` below
    it). A module without a source file (``__main__`` of a notebook) counts by name only."""
    parts = {}
    for m in modules:
        mod = _module(m)
        parts[mod.__name__] = {name: file_sha256(p) for name, p in _sources(mod)} or "no source"
    return digest(parts)


def caller_code(depth: int) -> str:
    """The code a step names when it names none: the caller's top package inside ``crowdselect_lib`` (e.g.
    ``crowdselect_lib.judge`` for ``crowdselect_lib.judge.run``), else the caller's module."""
    name = sys._getframe(depth + 1).f_globals.get("__name__", "__main__")
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "crowdselect_lib" and len(parts) > 1 else name

