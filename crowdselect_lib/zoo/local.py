"""Your own crowd (``zoo.source: local``, paper §3.1's zoo in a documented file format).

A folder `zoo.data_dir` holds

- ``models.csv``: ``model, family, size_b`` (billions of parameters; empty = unknown: the model counts in
  Difficulty and Separability but not in Stability, eq. 5; a family with one known size is outside Stability);
- the answers, a long table with one row per (instruction, model): ``instruction``, ``model``, ``response`` and
  one numeric column per reward model (any names: every other column is a score column); ``uuid`` is optional,
  and when it is missing each instruction gets a stable one, the first 16 hex digits of its text's SHA-1;
- as parquet, JSONL or CSV: one file, or shards in the folder and its subfolders (one format per crowd; hidden
  files such as a writer's ``.tmp`` are ignored).

Example (``crowd/answers.jsonl`` beside ``crowd/models.csv``)::

    {"instruction": "Name a prime.", "model": "qwen-0.5b", "response": "7", "my-rm": 0.8}
    {"instruction": "Name a prime.", "model": "qwen-7b", "response": "2, the only even one.", "my-rm": 1.3}

Problems are `ZooError`s naming the file: a model missing from models.csv, shards with different columns, a file
that does not parse (a half-written parquet, JSONL or CSV), no score column. Everything else goes through the
same `model.validate` as every source (blank texts, non-numeric scores, duplicates, counted drops).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..runs import read_jsonl, text_digest
from .model import Zoo, ZooError, check_models

MODELS_FILE = "models.csv"
TEXT_COLUMNS = ["uuid", "instruction", "model", "response"]
REQUIRED = ["instruction", "model", "response"]
FORMATS = (".parquet", ".jsonl", ".csv")
_NA = ["", "NA", "NaN", "nan", "null", "None"]


def crowd_files(data_dir: str | Path) -> list[Path]:
    """The answer files of a local crowd: every parquet / JSONL / CSV file under `data_dir` but models.csv."""
    d = Path(data_dir)
    if not d.is_dir():
        raise ZooError(f"zoo.data_dir {d} is not a folder (a local crowd is a folder with models.csv and the answers)")
    found = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in FORMATS and p.name != MODELS_FILE
                   and not any(part.startswith(".") for part in p.relative_to(d).parts))
    if not found:
        raise ZooError(f"no answer file (*.parquet, *.jsonl, *.csv besides {MODELS_FILE}) under {d}")
    kinds = sorted({p.suffix for p in found})
    if len(kinds) > 1:
        raise ZooError(f"the crowd under {d} mixes formats {kinds}: keep one format for all shards")
    return found


def local_input_files(data_dir: str | Path) -> list[Path]:
    """What keys a local zoo: the answer files and models.csv."""
    return [*crowd_files(data_dir), Path(data_dir) / MODELS_FILE]


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return True
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


def file_columns(path: Path) -> list[str]:
    """The column names of one answer file (reads no rows; pandas' stored parquet index is not a column)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except Exception as e:   # pyarrow raises ArrowInvalid / OSError on a cut file
            raise ZooError(f"{path} is not a readable parquet file (half written?): {e}") from None
        index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        return [n for n in schema.names if n not in index]     # pandas' stored index is not a column of the crowd
    if path.suffix == ".csv":
        return list(pd.read_csv(path, nrows=0).columns)
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    try:
        return list(json.loads(first)) if first.strip() else []
    except json.JSONDecodeError as e:
        raise ZooError(f"{path}: line 1 is not valid JSON ({e.msg})") from None


def read_crowd_file(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """One answer file as a DataFrame (text columns as Python strings); a file that does not parse, or a CSV /
    JSONL whose last line was cut, is a `ZooError` naming it."""
    p = Path(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(p, columns=columns).to_pandas()
        except Exception as e:
            raise ZooError(f"{p} is not a readable parquet file (half written?): {e}") from None
    if p.suffix == ".jsonl":
        try:
            df = pd.DataFrame(read_jsonl(p))
        except ValueError as e:
            raise ZooError(f"{e} (half-written file?)") from None
    else:
        head = file_columns(p)
        na = {c: _NA for c in head if c not in TEXT_COLUMNS}   # texts stay as written ("NA" is a text)
        try:
            df = pd.read_csv(p, keep_default_na=False, na_values=na, dtype={c: str for c in TEXT_COLUMNS if c in head})
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise ZooError(f"{p} is not a readable CSV file (half written?): {e}") from None
        if len(df) and not _ends_with_newline(p):
            last = df.iloc[-1]
            if last.isna().any() or (last.astype(str) == "").any():
                raise ZooError(f"{p}: the last row is cut short (no final newline, empty field): half-written file?")
    return df[columns] if columns is not None else df


def local_reward_models(data_dir: str | Path) -> list[str]:
    """The score columns of a local crowd, from the first file's header (reads no rows)."""
    return [c for c in file_columns(crowd_files(data_dir)[0]) if c not in TEXT_COLUMNS]


def read_local_models(data_dir: str | Path) -> pd.DataFrame:
    p = Path(data_dir) / MODELS_FILE
    if not p.exists():
        raise ZooError(f"{p} is missing: a local crowd needs models.csv with columns model, family, size_b")
    return check_models(pd.read_csv(p, comment="#", dtype={"model": str, "family": str}))


def instruction_uuids(instructions: pd.Series) -> np.ndarray:
    """A stable uuid per row: the first 16 hex digits of the SHA-1 of its instruction (hashed once per text)."""
    codes, uniq = pd.factorize(instructions, use_na_sentinel=True)
    bad = [i for i, t in enumerate(uniq) if not isinstance(t, str)]
    if (codes < 0).any() or bad:
        raise ZooError(f"{int((codes < 0).sum())} row(s) have no instruction text (needed for their uuid)"
                       if (codes < 0).any() else f"instruction {uniq[bad[0]]!r} is not a text")
    return np.asarray(text_digest(list(uniq), 16), dtype=object)[codes]


def load_local(data_dir: str | Path | None, limit: int | None) -> Zoo:
    """The local crowd in `data_dir` (see the module docstring), before `validate`."""
    if data_dir is None:
        raise ZooError("zoo.source local needs zoo.data_dir: a folder with models.csv and the answer file(s)")
    d = Path(data_dir)
    files = crowd_files(d)
    models = read_local_models(d)
    frames, first = [], None
    for p in files:
        df = read_crowd_file(p)
        miss = [c for c in REQUIRED if c not in df.columns]
        if miss:
            raise ZooError(f"{p} lacks column(s) {miss} (a crowd file has instruction, model, response and scores)")
        cols = sorted(df.columns)
        if first is None:
            first = (p, cols)
        elif cols != first[1]:
            raise ZooError(f"{p} has columns {cols}, but {first[0]} has {first[1]}: every shard needs the same columns")
        frames.append(df)
    long = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    scores = [c for c in long.columns if c not in TEXT_COLUMNS]
    if not scores:
        raise ZooError(f"the crowd under {d} has no score column: add one numeric column per reward model, or score "
                       "the answers with a reward model first (chapter 02)")
    known = set(models["model"])
    unknown = sorted({str(m) for m in pd.unique(long["model"]) if m not in known})
    if unknown:
        raise ZooError(f"{d / MODELS_FILE} lacks {len(unknown)} model(s) of the crowd: {unknown[:5]}; add a row "
                       "(model, family, size_b) for each")
    uuid_from = "given" if "uuid" in long.columns else "sha1 of the instruction"
    if "uuid" not in long.columns:
        long.insert(0, "uuid", instruction_uuids(long["instruction"]))
    if limit is not None:
        keep = pd.unique(long["uuid"])[:limit]
        long = long[long["uuid"].isin(keep)].reset_index(drop=True)
    long = long[TEXT_COLUMNS + scores]
    return Zoo(long, models, scores, "local", scores[0],
               info={"data_version": f"local:{d}", "files": len(files), "uuid": uuid_from})


def write_crowd(directory: str | Path, answers: pd.DataFrame, models: pd.DataFrame) -> Path:
    """Write a crowd in the local format: ``answers.parquet`` (uuid, instruction, model, response and every score
    column of `answers`, i.e. every column but ``finish_reason`` / ``error``) and ``models.csv``; atomic writes."""
    from ..runs import atomic_write, write_parquet

    d = Path(directory)
    keep = [c for c in answers.columns if c not in ("finish_reason", "error")]
    write_parquet(answers[keep].reset_index(drop=True), d / "answers.parquet")
    table = models[["model", "family", "size_b"]]
    atomic_write(d / MODELS_FILE, lambda p: table.to_csv(p, index=False))
    return d
