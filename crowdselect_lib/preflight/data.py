"""Checks of what a run reads and what it may spend, before any GPU work (`make preflight`):

- `check_zoo_dir`: ``zoo.data_dir`` exists, is readable and holds what its loader expects (Magpie: parquet shards
  with ``uuid``, ``instruction`` and model struct columns carrying ``content``; AlpacaEval: ``instructions.parquet``
  and ``responses.parquet`` with their columns), read from the parquet footers only; returns the zoo's real size.
- `check_bench_dir`: ``judge.data_dir`` holds every benchmark file, each loaded by its own loader.
- `cost_gates`: the judge's gate (``judge.confirm_cost`` / ``max_calls_without_confirm``) and the LLM baselines'
  (``baselines.confirm_cost`` / ``max_calls_without_confirm``) against the plan's calls: a closed gate is a FAIL
  line with the exact ``--set`` that opens it. `pipeline` runs them before any chapter.
- `check_prices`: ``judge.price_per_mtok_*`` not negative.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import RunConfig
from .checks import Check

MAGPIE_COLUMNS = ("uuid", "instruction")
ALPACAEVAL_FILES = {"instructions.parquet": ("instruction",),
                    "responses.parquet": ("instruction", "model", "output", "preference")}


def _folder_problem(path: str) -> str | None:
    d = Path(path).expanduser()
    if not d.exists():
        return f"folder {d} does not exist"
    if not d.is_dir():
        return f"{d} is not a folder"
    if not os.access(d, os.R_OK | os.X_OK):
        return f"folder {d} is not readable"
    return None


def _magpie(d: Path) -> tuple[Check, tuple[int, int] | None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    what = "zoo.data_dir"
    shards = sorted(d.glob("**/*.parquet"))
    if not shards:
        return Check("FAIL", what, f"{d} holds no parquet shards (the Magpie loader reads **/*.parquet)"), None
    rows, models = 0, set()
    for s in shards:
        try:
            meta = pq.ParquetFile(s)
        except Exception as e:   # unreadable or not parquet
            return Check("FAIL", what, f"{s} is not readable parquet: {type(e).__name__}: {str(e)[:120]}"), None
        schema = meta.schema_arrow
        miss = [c for c in MAGPIE_COLUMNS if c not in schema.names]
        structs = [f for f in schema if pa.types.is_struct(f.type)]
        if miss or not structs:
            return Check("FAIL", what, f"{s} lacks the Magpie schema: " + (f"no column(s) {miss}" if miss else
                         "no model struct columns")), None
        bad = [f.name for f in structs if "content" not in {x.name for x in f.type}]
        if bad:
            return Check("FAIL", what, f"{s}: model column(s) {bad[:3]} have no 'content' field"), None
        rows += meta.metadata.num_rows
        models |= {f.name.split("/")[-1] for f in structs}
    return Check("OK", what, f"{d}: {len(shards)} Magpie shard(s), {rows:,} instructions x {len(models)} "
                 "models"), (rows, len(models))


def _local(d: Path) -> tuple[Check, tuple[int, int] | None]:
    """Your own crowd (`zoo.local`): its files and models.csv parse, the answer files have the required columns;
    size = rows / models (parquet footers; JSONL / CSV lines counted)."""
    import pyarrow.parquet as pq

    from ..zoo import ZooError
    from ..zoo.local import REQUIRED, crowd_files, local_reward_models, read_local_models

    what = "zoo.data_dir"
    try:
        files, models = crowd_files(d), read_local_models(d)
        scores = local_reward_models(d)
        rows = 0
        for f in files:
            if f.suffix == ".parquet":
                meta = pq.ParquetFile(f)
                names, n = meta.schema_arrow.names, meta.metadata.num_rows
            else:
                with open(f, encoding="utf-8") as fh:
                    first = fh.readline()
                    n = sum(1 for line in fh if line.strip()) + (f.suffix == ".jsonl")
                names = (list(json.loads(first)) if f.suffix == ".jsonl"
                         else [c.strip().strip('"') for c in first.split(",")])
            miss = [c for c in REQUIRED if c not in names]
            if miss:
                return Check("FAIL", what, f"{f} lacks column(s) {miss}"), None
            rows += n
    except (ZooError, OSError, ValueError) as e:
        return Check("FAIL", what, str(e)[:300]), None
    if not scores:
        return Check("FAIL", what, f"the crowd under {d} has no score column (score it first: chapter 02)"), None
    m = len(models)
    return Check("OK", what, f"{d}: your crowd, {len(files)} file(s), ~{rows // m:,} instructions x {m} models, "
                 f"scores {scores}"), (rows // m, m)


def _alpacaeval(d: Path) -> tuple[Check, tuple[int, int] | None]:
    import pyarrow.parquet as pq

    what = "zoo.data_dir"
    tables = {}
    for name, cols in ALPACAEVAL_FILES.items():
        f = d / name
        if not f.exists():
            return Check("FAIL", what, f"{d} lacks {name} (the AlpacaEval loader reads {list(ALPACAEVAL_FILES)})"), None
        try:
            names = pq.ParquetFile(f).schema_arrow.names
            miss = [c for c in cols if c not in names]
            if miss:
                return Check("FAIL", what, f"{f} lacks column(s) {miss}"), None
            tables[name] = pq.read_table(f, columns=["instruction", "model"][: 1 if name.startswith("instr") else 2])
        except Exception as e:
            return Check("FAIL", what, f"{f} is not readable parquet: {type(e).__name__}: {str(e)[:120]}"), None
    n = len(set(tables["instructions.parquet"].column("instruction").to_pylist()))
    m = len(set(tables["responses.parquet"].column("model").to_pylist()))
    return Check("OK", what, f"{d}: AlpacaEval, {n:,} instructions x {m} models"), (n, m)


def check_zoo_dir(cfg: RunConfig) -> tuple[Check | None, tuple[int, int] | None]:
    """(check, (instructions, models)) of ``zoo.data_dir`` against its source's schema; (None, None) when the zoo
    is simulated or downloaded (no folder to check)."""
    z = cfg.zoo
    if z.data_dir is None or z.source == "demo":
        return None, None
    problem = _folder_problem(z.data_dir)
    if problem:
        return Check("FAIL", "zoo.data_dir", problem), None
    d = Path(z.data_dir).expanduser()
    check, size = {"magpie": _magpie, "alpacaeval": _alpacaeval, "local": _local}[z.source](d)
    if size is not None and z.limit:
        size = (min(size[0], z.limit), size[1])
    return check, size


def check_bench_dir(cfg: RunConfig) -> list[Check]:
    """``judge.data_dir`` holds each benchmark of ``judge.benchmarks``, every file loaded by its loader."""
    from ..judge.benchmarks import FILES, FOLDERS, BenchmarkError, load_benchmark

    j = cfg.judge
    if j.data_dir is None:
        return []
    problem = _folder_problem(j.data_dir)
    if problem:
        return [Check("FAIL", "judge.data_dir", problem)]
    out = []
    for name in j.benchmarks:
        folder = Path(j.data_dir).expanduser() / FOLDERS[name]
        missing = [f for f in FILES[name] if not (folder / f).exists()]
        if missing:
            out.append(Check("FAIL", "judge.data_dir", f"{folder} lacks benchmark file(s) {missing}"))
            continue
        try:
            bench = load_benchmark(name, j.data_dir)
        except (BenchmarkError, OSError, ValueError, KeyError) as e:
            out.append(Check("FAIL", "judge.data_dir", f"{folder}: {str(e)[:200]}"))
            continue
        out.append(Check("OK", "judge.data_dir", f"{folder}: {len(bench.questions)} {name} questions"))
    return out


def check_prices(cfg: RunConfig) -> list[Check]:
    j = cfg.judge
    return [Check("FAIL", f"judge.{k}", f"{getattr(j, k)} USD per million tokens is negative")
            for k in ("price_per_mtok_in", "price_per_mtok_out") if (getattr(j, k) or 0) < 0]


def cost_gates(configs: dict[str, RunConfig], p) -> list[Check]:
    """The judge's and the LLM baselines' cost gates against the plan `p` (`plan.plan`): FAIL with the ``--set``
    that opens a closed one, OK when open or under its limit."""
    out = []
    cfg = next(iter(configs.values()))
    judge_calls = sum(r.llm_calls for r in p.rows if r.step.startswith("judge "))
    llm_calls = sum(r.llm_calls for r in p.rows if r.step.startswith("LLM baseline "))
    for what, calls, section in (("judge cost gate", judge_calls, cfg.judge),
                                 ("LLM baselines cost gate", llm_calls, cfg.baselines)):
        key = "judge" if section is cfg.judge else "baselines"
        if not calls:
            continue
        if section.confirm_cost or calls <= section.max_calls_without_confirm:
            out.append(Check("OK", what, f"{calls:,} paid requests planned; {key}.confirm_cost="
                             f"{str(section.confirm_cost).lower()}, limit {section.max_calls_without_confirm}"))
        else:
            out.append(Check("FAIL", what, f"{calls:,} paid requests planned, more than "
                             f"{key}.max_calls_without_confirm={section.max_calls_without_confirm}: the run would "
                             f"stop there; open it with --set {key}.confirm_cost=true"))
    return out
