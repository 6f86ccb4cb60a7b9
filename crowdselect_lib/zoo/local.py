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
from .model import BLANK_CHARS, Zoo, ZooError, blank_texts, check_models

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


def _header(path: Path) -> list[str]:
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
        head = _header(p)
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
    return [c for c in _header(crowd_files(data_dir)[0]) if c not in TEXT_COLUMNS]


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


def plain_columns(batch):
    """`batch` (an Arrow RecordBatch or Table) with dictionary-encoded columns decoded to their values and no pandas
    metadata: pandas categoricals carry the whole dictionary (every instruction of the file) in each record batch, so
    converting it batch by batch would cost the file's size per batch (quadratic)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = [pc.cast(c, c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    make = pa.Table.from_arrays if isinstance(batch, pa.Table) else pa.RecordBatch.from_arrays
    return make(cols, names=batch.schema.names)


def arrow_blank(col):
    """`validate`'s blank rule (missing, not a text, or only whitespace, zero-width characters, BOM, NUL) on an Arrow
    array, without making Python strings; a dictionary-encoded column (pandas categoricals) is checked on its
    dictionary. Returns a boolean Arrow array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(col.type):
        return pc.fill_null(pc.take(arrow_blank(col.dictionary), col.indices), True)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return pc.fill_null(pc.equal(pc.utf8_trim(col, characters=BLANK_CHARS), ""), True)
    return pa.array(np.ones(len(col), dtype=bool))          # not text at all (e.g. a column of nulls): no answer


def read_rows(data_dir: str | Path, uuids, *, batch_rows: int = 1 << 16) -> pd.DataFrame:
    """Every row (``uuid, instruction, model, response`` and the score columns) of the given instructions, read batch
    by batch (Arrow record batches for parquet): the answers of k picked instructions without loading the crowd."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def tables(p: Path):
        if p.suffix != ".parquet":                    # JSONL / CSV: read whole (one file at a time)
            yield pa.Table.from_pandas(read_crowd_file(p), preserve_index=False)
            return
        try:
            for b in pq.ParquetFile(p).iter_batches(batch_rows):
                yield pa.Table.from_batches([b])
        except OSError as e:
            raise ZooError(f"{p} is not a readable parquet file (half written?): {e}") from None

    wanted = pa.array(sorted({str(u) for u in uuids}), type=pa.string())
    parts = []
    for p in crowd_files(data_dir):
        has_uuid = "uuid" in _header(p)
        for t in tables(p):
            if has_uuid:
                key = pc.cast(t.column("uuid"), pa.string())
            else:      # the uuid is the instruction's digest: hash each distinct text of the batch once
                text = pc.cast(t.column("instruction"), pa.string())
                key = pa.array(instruction_uuids(text.to_pandas()), type=pa.string())
            hit = t.filter(pc.is_in(key, value_set=wanted))
            if hit.num_rows:
                df = plain_columns(hit).to_pandas()
                if not has_uuid:
                    df.insert(0, "uuid", instruction_uuids(df["instruction"]))
                parts.append(df)
    if not parts:
        return pd.DataFrame(columns=TEXT_COLUMNS)
    long = pd.concat(parts, ignore_index=True)
    return long[TEXT_COLUMNS + [c for c in long.columns if c not in TEXT_COLUMNS]]


class ScoreStream:
    """A crowd larger than memory, read for the metrics (eqs. 3-5 need one instruction's row of S at a time):
    iterating yields dense score blocks (index uuid, one column per models.csv model, in its order) of one reward
    model, read batch by batch (Arrow record batches of `batch_rows` rows for parquet, pandas chunks for JSONL/CSV;
    only uuid, instruction, model, response and that score column). An instruction leaves the buffer once all its
    models' rows have arrived, so memory holds one batch plus the instructions still open (rows grouped by
    instruction, as writers write them, keep that to a few). An instruction with a NaN score, a blank answer or a
    missing row is incomplete: a `ZooError`, or with `drop_incomplete` dropped and counted in `stats`, as
    `validate` does. `stats`: rows, instructions, dropped_incomplete, max_buffered_rows. After a pass,
    `instructions()` gives every kept instruction's text in the in-memory zoo's order (first appearance)."""

    def __init__(self, data_dir: str | Path, reward_model: str, *, batch_rows: int = 1 << 16,
                 drop_incomplete: bool = False):
        self.files, self.models = crowd_files(data_dir), read_local_models(data_dir)
        self.reward_model, self.batch_rows, self.drop_incomplete = reward_model, batch_rows, drop_incomplete
        self.score_columns = local_reward_models(data_dir)
        if reward_model not in self.score_columns:
            raise ZooError(f"unknown reward model {reward_model!r}; this crowd has {self.score_columns}")
        self.stats = {"rows": 0, "instructions": 0, "dropped_incomplete": 0, "max_buffered_rows": 0,
                      "dropped_reasons": {"no_answer": 0, "nan_score": 0, "missing_rows": 0}}
        self._kept: list[pd.DataFrame] = []      # (uuid, instruction, first row) of each kept instruction

    def instructions(self) -> pd.DataFrame:
        """``uuid, instruction`` of every instruction the last pass kept, in order of first appearance in the files
        (the order `load_zoo` keeps, which clustering reads: the official pooling batches instructions in it)."""
        if not self._kept:
            return pd.DataFrame({"uuid": pd.Series(dtype=object), "instruction": pd.Series(dtype=object)})
        kept = pd.concat(self._kept, ignore_index=True).sort_values("row", kind="stable")
        return kept[["uuid", "instruction"]].reset_index(drop=True)

    def families(self) -> dict[str, tuple[str, float]]:
        """model -> (family, size_b) from models.csv, the second input of `metrics.streamed_metrics`."""
        return dict(zip(self.models["model"], zip(self.models["family"], self.models["size_b"].astype(float))))

    def _present_models(self) -> set:
        """The models with at least one row (a models.csv model without rows leaves the crowd, as in `validate`):
        one pass over the model column only."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        present: set = set()
        for p in self.files:
            if p.suffix != ".parquet":
                present.update(pd.unique(read_crowd_file(p)["model"]))
                continue
            try:
                for b in pq.ParquetFile(p).iter_batches(self.batch_rows, columns=["model"]):
                    present.update(pc.unique(b.column("model")).to_pylist())
            except OSError as e:
                raise ZooError(f"{p} is not a readable parquet file (half written?): {e}") from None
        return present

    def _batches(self):
        cols = [c for c in TEXT_COLUMNS if c != "uuid"] + self.score_columns
        for p in self.files:
            has_uuid = "uuid" in _header(p)
            if p.suffix == ".parquet":
                import pyarrow.parquet as pq

                try:
                    batches = pq.ParquetFile(p).iter_batches(self.batch_rows, columns=cols + ["uuid"] * has_uuid)
                    for b in batches:     # blank answers found in Arrow: the texts never become Python objects
                        blank = arrow_blank(b.column("response"))
                        cut = plain_columns(b.drop_columns(["response"])).to_pandas()
                        yield p, cut.assign(blank=blank.to_numpy(zero_copy_only=False)), has_uuid
                except OSError as e:
                    raise ZooError(f"{p} is not a readable parquet file (half written?): {e}") from None
            else:
                df = read_crowd_file(p)   # JSONL / CSV: read whole, then cut into batches
                for a in range(0, len(df), self.batch_rows):
                    part = df.iloc[a:a + self.batch_rows]
                    yield p, part.drop(columns=["response"]).assign(blank=blank_texts(part["response"])), has_uuid

    def __iter__(self):
        present = self._present_models()
        names = [x for x in self.models["model"] if x in present]
        m = len(names)
        pending, self._kept = None, []
        reasons = dict.fromkeys(self.stats["dropped_reasons"], 0)
        self.stats = {**dict.fromkeys(self.stats, 0), "dropped_reasons": reasons}
        for path, df, has_uuid in self._batches():
            unknown = sorted({str(x) for x in pd.unique(df["model"]) if x not in present})
            if unknown:
                raise ZooError(f"{MODELS_FILE} lacks model(s) {unknown[:5]} of {path}")
            if not has_uuid:
                df.insert(0, "uuid", instruction_uuids(df["instruction"]))
            numeric = {}
            for c in self.score_columns:
                try:
                    numeric[c] = pd.to_numeric(df[c], errors="raise")
                except (ValueError, TypeError) as e:
                    raise ZooError(f"non-numeric score in column {c!r} of {path}: {e}") from None
            score = numeric[self.reward_model]
            nan_any = pd.DataFrame(numeric).isna().any(axis=1).to_numpy()    # NaN for any scorer: incomplete
            reasons = self.stats["dropped_reasons"]
            reasons["no_answer"] += int(df["blank"].sum())
            reasons["nan_score"] += int(nan_any.sum())
            df = df.assign(blank=df["blank"].to_numpy() | nan_any)   # a bad cell: the instruction is incomplete
            row = np.arange(self.stats["rows"], self.stats["rows"] + len(df))       # position in the whole crowd
            df = df.assign(score=score, row=row)[["uuid", "instruction", "model", "score", "blank", "row"]]
            self.stats["rows"] += len(df)
            buf = df if pending is None else pd.concat([pending, df], ignore_index=True)
            self.stats["max_buffered_rows"] = max(self.stats["max_buffered_rows"], len(buf))
            size = buf.groupby("uuid", sort=False)["model"].transform("size").to_numpy()
            if (size > m).any():
                raise ZooError(f"uuid {buf['uuid'][size > m].iloc[0]!r} has more rows than models: a duplicate row")
            done = buf[size == m]
            pending = buf[size < m]
            if len(done):
                yield from self._block(done, names)
        if pending is not None and len(pending):
            n = pending["uuid"].nunique()
            self.stats["dropped_reasons"]["missing_rows"] += n * m - len(pending)
            self._incomplete(n, pending["uuid"].iloc[0])

    def _incomplete(self, n: int, example) -> None:
        if not self.drop_incomplete:
            raise ZooError(f"{n} instruction(s) lack some model's answer or score, e.g. uuid {example!r}; "
                           "drop_incomplete=True drops them (counted)")
        self.stats["dropped_incomplete"] += n

    def _block(self, done: pd.DataFrame, names: list[str]):
        bad = done.groupby("uuid", sort=False)["blank"].any()        # a blank answer or a NaN score
        if bad.any():
            self._incomplete(int(bad.sum()), bad.index[bad.to_numpy()][0])
            done = done[~done["uuid"].isin(bad.index[bad.to_numpy()])]
        if not len(done):
            return
        text = done.groupby("uuid", sort=False).agg(instruction=("instruction", "first"),
                                                    texts=("instruction", "nunique"), row=("row", "min"))
        if (text["texts"] > 1).any():
            raise ZooError(f"uuid {text.index[text['texts'].to_numpy() > 1][0]!r} has two instruction texts")
        self._kept.append(text.drop(columns="texts").reset_index())
        u_codes, uuids = pd.factorize(done["uuid"])
        mat = np.full((len(uuids), len(names)), np.nan)
        mat[u_codes, pd.Categorical(done["model"], categories=names).codes] = done["score"].to_numpy(dtype=float)
        hole = np.isnan(mat).any(axis=1)
        if hole.any():
            raise ZooError(f"uuid {uuids[np.flatnonzero(hole)[0]]!r} has a duplicate (uuid, model) row")
        self.stats["instructions"] += len(uuids)
        yield pd.DataFrame(mat, index=pd.Index(np.asarray(uuids, dtype=object), name="uuid"),
                           columns=pd.Index(names, name="model"))
