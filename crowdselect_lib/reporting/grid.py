"""A table's grid (issue 10.4): every cell is the table's config plus the cell's dotted overrides, run under the
table's ONE run directory. Cells differ only where their overrides differ, so every step whose settings are
equal (the zoo, metrics and clusters; the untouched students' answers and judgments; a subset trained for
several tables) has one key and is computed once for the whole batch. Results are read back per cell by
computing the cell's keys from its config, never by scanning folders.

`offline_problems(cfg)` lists every model or asset of a config that would need the Hugging Face Hub: the
demo scale of every table must name none (students, tokenizers, reward models, embedders, judges).
"""
from __future__ import annotations

import copy
import dataclasses

from ..config import RunConfig, apply_overrides, from_dict
from ..runs import check_unique

# Offline assets of the package (models.py / scoring): the CPU student and local LLM, the test model, the
# packaged sentence embedder, the random demo reward model, the proxy judge.
OFFLINE_MODELS = {"smollm2-135m-instruct", "tiny-llama", "all-MiniLM-L6-v2", "tiny-reward"}


def cell_configs(cfg: RunConfig) -> dict[str, RunConfig]:
    """Config of every grid cell: the table's config + the cell's overrides, same run name (one run directory).
    An empty grid gives one cell named ``run`` = the config itself. Cell names are plain and unique."""
    if not cfg.tables.grid:
        return {"run": cfg}
    check_unique([c.name for c in cfg.tables.grid], "tables.grid cell")
    out = {}
    for cell in cfg.tables.grid:
        data = apply_overrides(copy.deepcopy(cfg.to_dict()), cell.overrides)
        if data["run"]["name"] != cfg.run.name or data["run"]["root"] != cfg.run.root:
            raise ValueError(f"tables.grid cell {cell.name!r}: a cell cannot change run.name/run.root "
                             "(every cell of a table runs in the table's run directory)")
        data["tables"]["grid"] = []
        out[cell.name] = from_dict(RunConfig, data)
    return out


def cell_labels(cfg: RunConfig) -> dict[str, str]:
    """Cell name -> the group label printed in the table (default: the cell's name; the student without a grid)."""
    if not cfg.tables.grid:
        return {"run": cfg.training.student}
    return {c.name: c.label or c.name for c in cfg.tables.grid}


def paper_groups(cfg: RunConfig) -> dict[str, str]:
    """Cell name -> the paper's group its rows are set beside (``paper_group``, default its label): the demo's
    SmolLM2 student stands beside Llama-3.2-3B-Instruct so that ours and the paper's numbers share a row."""
    labels = cell_labels(cfg)
    if not cfg.tables.grid:
        return {"run": cfg.tables.paper_group or labels["run"]}
    return {c.name: c.paper_group or labels[c.name] for c in cfg.tables.grid}


MODEL_FIELDS = ["training.student", "training.students", "baselines.tokenizer", "baselines.ifd_model",
                "embedding.model", "judge.proxy_embedding", "judge.anchor", "scoring.reward_models"]


def _model_fields(cfg: RunConfig) -> dict[str, object]:
    """Every config value that names a model, tokenizer, embedder, reward model or judge (`MODEL_FIELDS`, the
    local LLM when it runs in-process)."""
    fields = {}
    for key in MODEL_FIELDS + (["llm.model"] if cfg.llm.backend == "local" else []):
        section, name = key.split(".")
        fields[key] = getattr(getattr(cfg, section), name, None)
    return fields


def offline_problems(cfg: RunConfig) -> list[str]:
    """``key=value`` of every asset `cfg` would fetch from the Hub or a remote service (empty = runs offline):
    a model field that is not an offline alias (`OFFLINE_MODELS`) or a local path, a non-demo zoo, an LLM judge,
    an OpenAI-compatible backend, a zoo reward model that is not one of the simulated zoo's."""
    bad = []
    for key, value in _model_fields(cfg).items():
        for v in value if isinstance(value, list) else [value]:
            if v is not None and v not in OFFLINE_MODELS and not str(v).startswith(("/", ".")):
                bad.append(f"{key}={v}")
    if cfg.zoo.source != "demo" and not cfg.zoo.data_dir:
        bad.append(f"zoo.source={cfg.zoo.source}")
    if cfg.judge.judge != "proxy":
        bad.append(f"judge.judge={cfg.judge.judge}")
    if cfg.llm.backend == "openai":
        bad.append("llm.backend=openai")
    if cfg.judge.student_backend != "local":
        bad.append(f"judge.student_backend={cfg.judge.student_backend}")
    if cfg.metrics.reward_model is not None and "/" in cfg.metrics.reward_model:
        bad.append(f"metrics.reward_model={cfg.metrics.reward_model}")
    return bad


def cell_overrides(cfg: RunConfig) -> dict[str, dict]:
    """Cell name -> its overrides (what makes it differ from the table's config)."""
    return {c.name: dict(c.overrides) for c in cfg.tables.grid} or {"run": {}}


def replace_tables(cfg: RunConfig, **changes) -> RunConfig:
    """A copy of `cfg` with some `tables` fields changed (e.g. the table id rendered from a shared run)."""
    return dataclasses.replace(cfg, tables=dataclasses.replace(cfg.tables, **changes))
