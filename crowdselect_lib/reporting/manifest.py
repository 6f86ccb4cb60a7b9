"""What produced each number of a table: git commit and dirty flag, params hash, package versions, and per grid
cell its overrides, config digest, student, training methods, judge and the offline-demo flag. The one place
in the package that calls git."""
from __future__ import annotations

import importlib.metadata
import subprocess
import time
from pathlib import Path

from ..runs import repo_root, write_json
from .grid import cell_configs, cell_overrides
from .results import tables_to_render

PACKAGES = ["crowdselect-lib", "numpy", "pandas", "scikit-learn", "scipy", "torch", "transformers", "trl",
            "peft", "datasets", "sentence-transformers", "openai", "papermill"]


def git(*args: str) -> str:
    """Output of ``git -C <repo> <args>`` ("" without git or outside a checkout)."""
    try:
        return subprocess.run(["git", "-C", str(repo_root()), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def package_versions() -> dict[str, str | None]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = None
    return out


def manifest(cfg, cells: dict, params_path: str | Path | None = None, overrides: dict | None = None,
             served: dict | None = None) -> dict:
    """The manifest of one rendered table (`cells` = `grid.cell_configs(cfg)`); `served`: cell -> the models the
    judge server said it served (`judge.served_judges`), beside the judge the cell asked for."""
    per_cell = {name: {"overrides": (overrides or {}).get(name, {}), "config_digest": c.digest(),
                       "student": c.training.student, "train_methods": c.training.methods,
                       "selection": {"k": c.selection.k, "response": c.selection.response,
                                     "weights": c.selection.weights, "n_clusters": c.clustering.n_clusters},
                       "reward_model": c.metrics.reward_model,
                       "judge": c.judge.judge_model if c.judge.judge == "llm" else f"proxy ({c.judge.proxy_embedding})",
                       "judge_served": (served or {}).get(name, []),
                       "offline_demo": c.run.offline_demo}
                for name, c in cells.items()}
    return {"table": cfg.tables.table, "run": cfg.run.name, "params_file": str(params_path) if params_path else None,
            "params_hash": cfg.digest(), "paper_version": cfg.tables.version,
            "git_commit": git("rev-parse", "HEAD") or None, "git_dirty": bool(git("status", "--porcelain")),
            "offline_demo": cfg.run.offline_demo, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "packages": package_versions(), "cells": per_cell}


def write_manifest(run, cfg, params_path: str | Path | None = None) -> str:
    """Write ``<run>/tables/manifest_<tables>.json``; returns a one-line summary (path, commit, cells)."""
    from ..judge import served_judges

    cells = cell_configs(cfg)
    served = {name: served_judges(run, c) for name, c in cells.items()}
    m = manifest(cfg, cells, params_path, cell_overrides(cfg), served)
    path = write_json(m, run.dir / "tables" / f"manifest_{'_'.join(tables_to_render(cfg))}.json")
    commit = (m["git_commit"] or "no git")[:10] + (" (uncommitted changes)" if m["git_dirty"] else "")
    judges = sorted({x for v in served.values() for x in v})
    return (f"manifest {path.relative_to(run.dir)}: commit {commit}, {len(m['cells'])} cell(s), params "
            f"{m['params_hash']}" + (f", judge served {', '.join(judges)}" if judges else ""))
