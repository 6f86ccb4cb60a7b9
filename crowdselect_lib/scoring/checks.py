"""Checks of reward scores (chapter 02): coverage of the shipped scores, agreement of re-scored rows with them,
agreement between reward models (Table 18 context), and attaching new scores to a zoo as a column."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .registry import ScoringError


def verify_scores(zoo) -> pd.DataFrame:
    """Per (reward_model, model): ``rows, nan, coverage`` (share of the zoo's instructions with a finite
    score), ``mean, std, min, max`` and ``ok`` (no NaN, full coverage). The zoo's `reward_models` columns."""
    r = zoo.responses
    n_instr = r["uuid"].nunique()
    frames = []
    for rm in zoo.reward_models:
        if rm not in r.columns:
            raise ScoringError(f"zoo lists reward model {rm!r} but has no such column")
        g = r.assign(_s=pd.to_numeric(r[rm], errors="coerce").astype(float)).groupby("model", sort=False)["_s"]
        t = pd.DataFrame({"rows": g.size(), "nan": (g.size() - g.count()).astype(int), "mean": g.mean(),
                          "std": g.std(ddof=0), "min": g.min(), "max": g.max()})
        t["coverage"] = g.count() / n_instr
        t.insert(0, "reward_model", rm)
        frames.append(t.reset_index())
    out = pd.concat(frames, ignore_index=True)
    out["ok"] = (out["nan"] == 0) & np.isclose(out["coverage"], 1.0)
    return out[["reward_model", "model", "rows", "nan", "coverage", "mean", "std", "min", "max", "ok"]]


def sample_rows(responses: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """`n` rows drawn uniformly without replacement (all rows if `n` >= the zoo's size)."""
    if n >= len(responses):
        return responses.reset_index(drop=True)
    return responses.sample(n=n, random_state=seed).reset_index(drop=True)


def agreement(shipped: pd.DataFrame, rescored: pd.DataFrame, reward_models: list[str]) -> pd.DataFrame:
    """Agreement of new scores with each shipped reward-model column over the same rows.

    `shipped`: rows with ``uuid, model`` and the `reward_models` columns; `rescored`: ``uuid, model, score``.
    Returns one row per shipped reward model: ``rows, spearman, pearson``.
    """
    m = shipped.merge(rescored[["uuid", "model", "score"]], on=["uuid", "model"], how="inner", validate="1:1")
    if len(m) != len(rescored):
        raise ScoringError(f"{len(rescored) - len(m)} re-scored row(s) are not in the shipped table")
    rows = []
    for rm in reward_models:
        rows.append({"reward_model": rm, "rows": len(m), "spearman": m[rm].corr(m["score"], method="spearman"),
                     "pearson": m[rm].corr(m["score"])})
    return pd.DataFrame(rows).set_index("reward_model")


def reward_model_agreement(zoo) -> pd.DataFrame:
    """Spearman correlation between every pair of the zoo's reward models over all rows (Table 18 context)."""
    return zoo.responses[zoo.reward_models].corr(method="spearman")


def attach_scores(zoo, scores: pd.DataFrame, column: str, *, replace_existing: bool = False):
    """A copy of `zoo` with `scores` (``uuid, model, score``) as reward-model column `column`.
    Every (uuid, model) of the zoo must have a score."""
    r = zoo.responses
    if column in r.columns and not replace_existing:
        raise ScoringError(f"zoo already has a column {column!r}; pass replace_existing=True to overwrite it")
    m = r.drop(columns=[column], errors="ignore").merge(
        scores[["uuid", "model", "score"]].rename(columns={"score": column}), on=["uuid", "model"], how="left",
        validate="1:1")
    miss = m[column].isna()
    if miss.any():
        x = m[miss].iloc[0]
        raise ScoringError(f"{int(miss.sum())} zoo row(s) have no {column!r} score, e.g. uuid {x['uuid']!r} "
                           f"model {x['model']!r}")
    rms = list(zoo.reward_models) + ([column] if column not in zoo.reward_models else [])
    return replace(zoo, responses=m, reward_models=rms)


