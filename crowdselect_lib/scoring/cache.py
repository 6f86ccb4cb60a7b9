"""The fine-grained reward-score cache (issue 10): scores keyed by (model settings, max_length, text).

``<run>/cache/rewards/<model>-<digest of its settings>/part-<digest>.parquet`` (key, score, n_tokens, truncated):
the settings digest covers source, revision, kind, BOS rule, attention, max_length and dtype (not the batch size:
right padding makes scores batch-independent), so a changed `max_length` is a different folder and recomputes;
the key is the SHA-1 of ``instruction \\0 response``. `score_rows` scores what the cache lacks in shards of
`shard_size` rows, each written atomically as one part file as soon as it is done: a killed run resumes after
the last finished shard, and two processes never mix or lose parts. Under ``accelerate launch`` every process
takes the shards ``i % world_size == rank`` of the whole row list (the split does not depend on the cache).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..runs import Progress, digest, slug, text_digest, write_json, write_parquet
from .registry import RewardModelSpec, ScoringError

ROW_COLUMNS = ["uuid", "model", "instruction", "response"]
SCORE_COLUMNS = ["uuid", "model", "score", "n_tokens", "truncated"]


def cache_settings(spec: RewardModelSpec, dtype: str) -> dict:
    """What determines a score besides the text."""
    s = spec.settings()
    for k in ("name", "batch_size", "trust_remote_code"):
        s.pop(k)
    return {**s, "dtype": dtype}


class ScoreCache:
    """Reward scores of one model setting; `read()` -> (key, score, n_tokens, truncated), one row per key."""

    def __init__(self, root: str | Path, spec: RewardModelSpec, dtype: str):
        self.settings = cache_settings(spec, dtype)
        self.dir = Path(root) / f"{slug(spec.name)}-{digest(self.settings)}"
        if not (self.dir / "settings.json").exists():
            write_json(self.settings, self.dir / "settings.json")

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet"))   # temporary files of a killed write start with "."

    def read(self) -> pd.DataFrame:
        frames = [pd.read_parquet(p) for p in self.parts()]
        if not frames:
            return pd.DataFrame({"key": pd.Series(dtype=str), "score": pd.Series(dtype=float),
                                 "n_tokens": pd.Series(dtype=int), "truncated": pd.Series(dtype=bool)})
        return pd.concat(frames, ignore_index=True).drop_duplicates("key").reset_index(drop=True)

    def add(self, part: pd.DataFrame) -> Path:
        """Write one part (keys and scores together, atomically)."""
        return write_parquet(part.reset_index(drop=True), self.dir / f"part-{digest(part['key'].tolist())}.parquet")


def check_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows to score, sorted by (uuid, model): columns ``uuid, model, instruction, response``."""
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ScoringError(f"rows to score lack column(s) {missing}; need {ROW_COLUMNS}")
    bad = rows[ROW_COLUMNS].isna().any(axis=1)
    if bad.any():
        r = rows[bad].iloc[0]
        raise ScoringError(f"{int(bad.sum())} row(s) with a missing value, e.g. uuid {r['uuid']!r} model {r['model']!r}")
    dup = rows.duplicated(["uuid", "model"])
    if dup.any():
        r = rows[dup].iloc[0]
        raise ScoringError(f"duplicate (uuid, model) row: {r['uuid']!r}, {r['model']!r}")
    return rows[ROW_COLUMNS].sort_values(["uuid", "model"], kind="stable").reset_index(drop=True)


def pair_keys(rows: pd.DataFrame) -> np.ndarray:
    """Cache key of each row: SHA-1 of ``instruction \\0 response``."""
    return np.array(text_digest((rows["instruction"].astype(str) + "\x00" + rows["response"].astype(str)).tolist()))


def score_rows(rows: pd.DataFrame, spec: RewardModelSpec, cache: ScoreCache, load_scorer: Callable, *,
               shard_size: int, rank: int = 0, world_size: int = 1) -> dict:
    """Score the rows of this process's shards that `cache` lacks; the model is loaded (`load_scorer()`) only when
    there is something to score. Returns ``{rows, shards, shards_scored, rows_scored, loaded_model}``."""
    rows = check_rows(rows)
    keys = pair_keys(rows)
    known = set(cache.read()["key"])
    n_shards = -(-len(rows) // shard_size)
    todo = {}
    for i in range(rank, n_shards, world_size):
        lo, hi = i * shard_size, min((i + 1) * shard_size, len(rows))
        new = ~pd.Series(keys[lo:hi]).isin(known).to_numpy() & ~pd.Series(keys[lo:hi]).duplicated().to_numpy()
        if new.any():
            todo[i] = lo + np.flatnonzero(new)
    stats = {"rows": len(rows), "shards": n_shards, "shards_scored": 0, "rows_scored": 0, "loaded_model": False}
    total = int(sum(len(v) for v in todo.values()))
    if not total:
        return stats
    scorer = load_scorer()
    stats["loaded_model"] = True
    desc = f"scoring {spec.name}" + (f" [{rank}/{world_size}]" if world_size > 1 else "")
    with Progress(total, desc, unit="row") as bar:
        for idx in todo.values():
            shard = rows.iloc[idx]
            ids, n_tokens = scorer.encode(shard["instruction"].tolist(), shard["response"].tolist())
            order = np.argsort(-n_tokens, kind="stable")        # longest first: similar lengths share a batch
            scores = np.empty(len(shard))
            for b in range(0, len(order), spec.batch_size):
                j = order[b:b + spec.batch_size]
                scores[j] = scorer.score([ids[k] for k in j])
                bar.update(len(j))
            bad = np.flatnonzero(~np.isfinite(scores))
            if len(bad):
                r = shard.iloc[bad[0]]
                raise ScoringError(f"reward model {spec.name} returned a non-finite score ({scores[bad[0]]}) for "
                                   f"uuid {r['uuid']!r} model {r['model']!r} ({len(bad)} such row(s) in this shard)")
            cache.add(pd.DataFrame({"key": keys[idx], "score": scores, "n_tokens": n_tokens,
                                    "truncated": n_tokens > spec.max_length}))
            stats["shards_scored"] += 1
            stats["rows_scored"] += len(shard)
    return stats


def collect(rows: pd.DataFrame, cache: ScoreCache) -> pd.DataFrame:
    """``uuid, model, score, n_tokens, truncated`` of every row (sorted by uuid, model), from the cache."""
    rows = check_rows(rows)
    got = pd.DataFrame({"uuid": rows["uuid"], "model": rows["model"], "key": pair_keys(rows)}).merge(
        cache.read(), on="key", how="left")
    miss = got["score"].isna()
    if miss.any():
        r = got[miss].iloc[0]
        raise ScoringError(f"{int(miss.sum())} of {len(got)} rows not scored yet in {cache.dir} (e.g. uuid "
                           f"{r['uuid']!r} model {r['model']!r}); run the scoring again to finish")
    return got.assign(n_tokens=got["n_tokens"].astype(int), truncated=got["truncated"].astype(bool))[SCORE_COLUMNS]
