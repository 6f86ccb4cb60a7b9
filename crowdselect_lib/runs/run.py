"""Run directories: ``<root>/<run.name>/<stage>/<step>/<key>/`` (see `step`), plus

- ``meta.json``   what produced the run (merged under a lock by `Run.update_meta`)
- ``run.log``     the run's log: every step's status line, progress of long steps, warnings
- ``config.yaml`` the resolved config of the last chapter that ran (the full settings, one click away)
- ``cache/``      fine-grained caches (LLM replies, embeddings, reward scores), keyed by their own request
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .content import caller_code, file_sha256
from .step import Step, set_verbose
from .store import BadFileError, check_inside, digest, read_json, register_root, update_json, write_text

log = logging.getLogger("crowdselect")
_META_WAY_OUT = ("meta.json only records what produced the run: delete it, and the chapters write their entries "
                 "again as they run")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")   # whole name (fullmatch: "x\n" is refused)


def check_name(name: Any, what: str = "name") -> str:
    """A plain name for a folder (run, subset, cell): letters, digits, ``._+=-``; no ``/``, no ``..``, not empty."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} {name!r} is not a plain name: use letters, digits and ._+=- "
                         "(no '/', no '..', not empty)")
    return name


def check_unique(names: list[str], what: str) -> list[str]:
    """Every name plain and none repeated (two subsets named alike would share one folder)."""
    seen: set[str] = set()
    for n in names:
        check_name(n, what)
        if n in seen:
            raise ValueError(f"{what} {n!r} appears twice")
        seen.add(n)
    return names


def slug(name: str) -> str:
    """A file or folder name for a model, system or reward model: "/" becomes "__", any other character
    outside [A-Za-z0-9._-] becomes "_" (e.g. "Qwen/Qwen2.5-3B" -> "Qwen__Qwen2.5-3B")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__"))


def fingerprint(paths: list[str | Path]) -> str:
    """Digest of the contents of local input files (a changed file gives a new key downstream). Each file's
    SHA-256 is memoised per process on its inode, size, mtime and ctime (`content.file_sha256`): an edit that
    keeps size and mtime still changes ctime, so it is hashed again."""
    return digest([(p.name, file_sha256(p)) for p in sorted(Path(x) for x in paths)])


class CheckoutError(FileNotFoundError):
    """The package runs from an install without the repository checkout (`params/`, `notebooks/`)."""


def repo_root() -> Path:
    """The repository checkout holding `params/` and `notebooks/`. The library works from any install
    (``pip install .``); the pipeline (params files, notebooks, ``runs/`` beside them) needs the checkout, so
    outside one this raises `CheckoutError` saying so."""
    root = Path(__file__).resolve().parents[2]
    if not is_checkout(root):
        raise CheckoutError(
            f"crowdselect_lib is installed at {root / 'crowdselect_lib'} without the repository checkout: the "
            "pipeline needs the checkout's params/ and notebooks/ (git clone the repository, then "
            "pip install -e . from the clone). The library itself works from any install; give Run an absolute "
            "run.root and load params files by path.")
    return root


def is_checkout(path: Path) -> bool:
    """True for a folder holding ``params/`` and ``notebooks/``: a checkout of this repository."""
    return (path / "params").is_dir() and (path / "notebooks").is_dir()


def checkout_of(path) -> Path | None:
    """The checkout a file or folder lies in (its nearest folder that `is_checkout`), None outside one."""
    p = Path(path).expanduser().resolve()
    return next((d for d in [p, *p.parents] if is_checkout(d)), None)


def library_checkout_warning(cwd=None) -> str | None:
    """One line when the imported library is not the checkout of `cwd` (default: the working folder, a notebook's
    own folder under Jupyter and papermill): two checkouts sharing one environment would read each other's code."""
    here = checkout_of(Path.cwd() if cwd is None else cwd)
    lib = Path(__file__).resolve().parents[2]
    if here is None or here == lib:
        return None
    return (f"warning: this notebook's checkout is {here}, but crowdselect_lib is imported from {lib} "
            f"(pip install -e {here} in this environment to use its own code)")


def params_dir() -> Path:
    """``params/`` of the checkout (`CheckoutError` outside one)."""
    return repo_root() / "params"


def notebooks_dir() -> Path:
    """``notebooks/`` of the checkout (`CheckoutError` outside one)."""
    return repo_root() / "notebooks"


def _attach_log(path: Path) -> None:
    path = str(check_inside(path).resolve())
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == path for h in log.handlers):
        h = logging.FileHandler(path, encoding="utf-8")
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(h)
    log.setLevel(logging.INFO)


@dataclass(frozen=True)
class Run:
    """A run directory. `run.path("cache", "x.json")` -> <root>/<name>/cache/x.json (parents created)."""
    dir: Path

    def __post_init__(self):
        register_root(self.dir)     # no write below it may follow a symlink out of it

    @classmethod
    def from_config(cls, cfg) -> "Run":
        root = Path(cfg.run.root)
        if not root.is_absolute():
            root = repo_root() / root
        run = cls(root / check_name(cfg.run.name, "run.name"))
        run.dir.mkdir(parents=True, exist_ok=True)
        set_verbose(cfg.run.verbose)
        _attach_log(run.dir / "run.log")
        write_text(cfg.to_yaml(), run.dir / "config.yaml")
        return run

    def path(self, *parts: str) -> Path:
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def step(self, stage: str, name: str, *, settings: dict, inputs: dict | None = None, code=None,
             version: str = "1", log=print) -> Step:
        """The keyed step `stage/name` (see `runs.step`); prints ``reused``/``computing`` with its key.
        `inputs`: name -> upstream `Step` (keyed on what it wrote) or a fingerprint string; `code`: the modules or
        packages computing it (names or module objects; default the caller's package in crowdselect_lib)."""
        return Step(self.dir, check_name(stage, "stage"), check_name(name, f"{stage} step name"), settings,
                    dict(inputs or {}), version, code or (caller_code(1),)).announce(log)

    def update_meta(self, **entries) -> dict:
        """Merge `entries` into meta.json under a lock (two processes never lose each other's entries)."""
        return update_json(self.dir / "meta.json", lambda m: m.update(entries), way_out=_META_WAY_OUT)

    def meta(self) -> dict:
        p = self.dir / "meta.json"
        try:
            return read_json(p) if p.exists() else {}
        except BadFileError as e:
            raise BadFileError(f"{e}: {_META_WAY_OUT}") from None


__all__ = ["Run", "CheckoutError", "check_name", "check_unique", "slug", "fingerprint", "repo_root", "params_dir",
           "notebooks_dir", "digest", "log"]
