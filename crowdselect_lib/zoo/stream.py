"""A crowd larger than memory (issue 22): its files read by batches, never whole (`select --stream`).

- `ScoreStream`: one reward model's dense score blocks for the metrics (eqs. 3-5), the kept instructions' texts in
  the zoo's order, and the drops `validate` would make, counted the same way;
- `read_rows`: every row of a few given instructions (the k picked ones), batch by batch;
- `arrow_blank`, `plain_columns`: validation's blank rule and per-batch decoding, on Arrow data.

Parquet is read by Arrow record batches; a JSONL or CSV shard is read whole, one file at a time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .local import (MODELS_FILE, TEXT_COLUMNS, crowd_files, file_columns, instruction_uuids, local_reward_models,
                    read_crowd_file, read_local_models)
from .model import BLANK_CHARS, ZooError, blank_texts, model_families


def parquet_batches(path: Path, batch_rows: int, columns: list[str] | None = None):
    """The record batches of one parquet answer file (`columns` only); a cut file is a `ZooError` naming it."""
    import pyarrow.parquet as pq

    try:
        yield from pq.ParquetFile(path).iter_batches(batch_rows, columns=columns)
    except OSError as e:
        raise ZooError(f"{path} is not a readable parquet file (half written?): {e}") from None


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

    def tables(p: Path):
        if p.suffix != ".parquet":                    # JSONL / CSV: read whole (one file at a time)
            yield pa.Table.from_pandas(read_crowd_file(p), preserve_index=False)
            return
        for b in parquet_batches(p, batch_rows):
            yield pa.Table.from_batches([b])

    wanted = pa.array(sorted({str(u) for u in uuids}), type=pa.string())
    parts = []
    for p in crowd_files(data_dir):
        has_uuid = "uuid" in file_columns(p)
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
    only uuid, instruction, model, response and the score columns). An instruction leaves the buffer once all its
    models' rows have arrived, so memory holds one batch plus the instructions still open (rows grouped by
    instruction, as writers write them, keep that to a few). An instruction with a NaN score, a blank answer or a
    missing row is incomplete (a NaN of any scorer, as `validate` has it): a `ZooError`, or with `drop_incomplete`
    dropped and counted in `stats`, as `validate` does. `stats`: rows, instructions, dropped_incomplete,
    max_buffered_rows, dropped_reasons (`validate`'s: no_answer, nan_score, missing_rows). After a pass,
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
        self.models_present: list[str] = []      # models.csv models with rows (set by a pass), as `validate` keeps

    def instructions(self) -> pd.DataFrame:
        """``uuid, instruction`` of every instruction the last pass kept, in order of first appearance in the files
        (the order `load_zoo` keeps, which clustering reads: the official pooling batches instructions in it)."""
        if not self._kept:
            return pd.DataFrame({"uuid": pd.Series(dtype=object), "instruction": pd.Series(dtype=object)})
        kept = pd.concat(self._kept, ignore_index=True).sort_values("row", kind="stable")
        return kept[["uuid", "instruction"]].reset_index(drop=True)

    def families(self) -> dict[str, tuple[str, float]]:
        """model -> (family, size_b) from models.csv, the second input of `metrics.streamed_metrics`."""
        return model_families(self.models)

    def _present_models(self) -> set:
        """The models with at least one row (a models.csv model without rows leaves the crowd, as in `validate`):
        one pass over the model column only."""
        import pyarrow.compute as pc

        present: set = set()
        for p in self.files:
            if p.suffix != ".parquet":
                present.update(pd.unique(read_crowd_file(p)["model"]))
                continue
            for b in parquet_batches(p, self.batch_rows, ["model"]):
                present.update(pc.unique(b.column("model")).to_pylist())
        unknown = sorted(str(x) for x in present - set(self.models["model"]))
        if unknown:
            raise ZooError(f"{MODELS_FILE} lacks {len(unknown)} model(s) of the crowd: {unknown[:5]}; add a row "
                           "(model, family, size_b) for each")
        return present

    def _batches(self):
        cols = [c for c in TEXT_COLUMNS if c != "uuid"] + self.score_columns
        first = sorted(file_columns(self.files[0]))
        for p in self.files:
            head = file_columns(p)
            if sorted(head) != first:
                raise ZooError(f"{p} has columns {sorted(head)}, but {self.files[0]} has {first}: every shard needs "
                               "the same columns")
            has_uuid = "uuid" in head
            if p.suffix == ".parquet":   # blank answers found in Arrow: the texts never become Python objects
                for b in parquet_batches(p, self.batch_rows, cols + ["uuid"] * has_uuid):
                    blank = arrow_blank(b.column("response"))
                    cut = plain_columns(b.drop_columns(["response"])).to_pandas()
                    yield p, cut.assign(blank=blank.to_numpy(zero_copy_only=False)), has_uuid
            else:
                df = read_crowd_file(p)   # JSONL / CSV: read whole, then cut into batches
                for a in range(0, len(df), self.batch_rows):
                    part = df.iloc[a:a + self.batch_rows]
                    yield p, part.drop(columns=["response"]).assign(blank=blank_texts(part["response"])), has_uuid

    def __iter__(self):
        present = self._present_models()
        names = [x for x in self.models["model"] if x in present]
        self.models_present, m = names, len(names)
        pending, self._kept = None, []
        reasons = dict.fromkeys(self.stats["dropped_reasons"], 0)
        self.stats = {**dict.fromkeys(self.stats, 0), "dropped_reasons": reasons}
        for path, df, has_uuid in self._batches():
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
