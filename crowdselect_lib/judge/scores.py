"""Scores of paper §4.1: MT-Bench single-answer grading, Arena-Hard-Auto v0.1 Bradley-Terry win rates with
bootstrap intervals, Average Performance (AP) and the spread over repeated runs.

MT-Bench: the mean rating over every valid (question, turn) judgment; a failed judgment (no rating, or one
outside 1-10) is excluded and counted. Arena-Hard: every system's answer meets the baseline's (gpt-4-0314)
twice, game 1 with the baseline as assistant A, game 2 swapped; strong verdicts (``A>>B``, ``B>>A``) count as
3 battles, ties half a win to each side. Bradley-Terry by unpenalised logistic regression (Elo scale 400,
base 10); a system's score is its predicted win rate (percent) against the `anchor`, with a 95% interval
from bootstrap resamples of the battles.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .verdicts import RATING_RANGE, VERDICTS

STRONG_WEIGHT = 3                                    # arena-hard v0.1 WEIGHT


@dataclass(frozen=True)
class MTBenchScore:
    overall: float                  # mean over every valid (question, turn) rating
    by_category: dict[str, float]
    by_turn: dict[int, float]
    n_valid: int
    n_failed: int                   # failed judgments (no rating or one outside 1-10), excluded
    failed: list = field(default_factory=list)   # (question_id, turn) of each failed judgment


def mt_bench_score(judgments: pd.DataFrame) -> MTBenchScore:
    """MT-Bench score (§4.1) from a table ``question_id, turn, score`` (+ optional ``category``).

    A failed judgment is a NaN/None score, FastChat's -1, or a rating outside 1-10: excluded from every mean,
    counted in `n_failed` and listed in `failed`. A duplicated (question_id, turn) is an error."""
    missing = [c for c in ("question_id", "turn", "score") if c not in judgments.columns]
    if missing:
        raise ValueError(f"MT-Bench judgments lack column(s) {missing}")
    if judgments.duplicated(["question_id", "turn"]).any():
        raise ValueError("MT-Bench judgments: duplicated (question_id, turn) rows")
    s = pd.to_numeric(judgments["score"], errors="coerce").astype(float)
    ok = s.between(*RATING_RANGE)
    valid = judgments.assign(score=s)[ok]
    failed = list(zip(judgments.loc[~ok, "question_id"], judgments.loc[~ok, "turn"].astype(int)))
    if valid.empty:
        return MTBenchScore(float("nan"), {}, {}, 0, len(failed), failed)
    by_cat = valid.groupby("category")["score"].mean().to_dict() if "category" in valid else {}
    return MTBenchScore(float(valid["score"].mean()), {str(k): float(v) for k, v in by_cat.items()},
                        {int(k): float(v) for k, v in valid.groupby("turn")["score"].mean().items()},
                        int(len(valid)), len(failed), failed)


def battles(judgments: pd.DataFrame, baseline: str = "gpt-4-0314") -> pd.DataFrame:
    """Battles of arena-hard v0.1 from ``question_id, model, game1, game2`` (game 1: baseline = A).

    Columns ``question_id, model_a (= baseline), model_b, winner ('model_a'|'model_b'|'tie'), game``, one row
    per battle: a strong verdict gives `STRONG_WEIGHT` identical rows, None (unparsed) gives none. Rows are
    in a canonical order (model, question, game), so the result does not depend on the input's row order."""
    missing = [c for c in ("question_id", "model", "game1", "game2") if c not in judgments.columns]
    if missing:
        raise ValueError(f"Arena-Hard judgments lack column(s) {missing}")
    if judgments.duplicated(["question_id", "model"]).any():
        raise ValueError("Arena-Hard judgments: duplicated (question_id, model) rows")
    if (judgments["model"] == baseline).any():
        raise ValueError(f"Arena-Hard judgments: the baseline {baseline!r} cannot be judged against itself")
    # winner of each label in game 1 (baseline is A) and in game 2 (baseline is B); weight
    g1 = {"A>>B": ("model_a", 3), "A>B": ("model_a", 1), "A=B": ("tie", 1), "B>A": ("model_b", 1), "B>>A": ("model_b", 3)}
    g2 = {"A>>B": ("model_b", 3), "A>B": ("model_b", 1), "A=B": ("tie", 1), "B>A": ("model_a", 1), "B>>A": ("model_a", 3)}
    frames = []
    for game, table in ((1, g1), (2, g2)):
        v = judgments[f"game{game}"]
        bad = v[v.notna() & ~v.isin(VERDICTS)]
        if len(bad):
            raise ValueError(f"Arena-Hard judgments: unknown verdict label(s) {sorted(set(bad))[:3]} in game{game}")
        ok = judgments[v.notna()]
        lab = ok[f"game{game}"]
        frames.append(pd.DataFrame({"question_id": ok["question_id"].astype(str).to_numpy(), "model_a": baseline,
                                    "model_b": ok["model"].astype(str).to_numpy(),
                                    "winner": lab.map(lambda x: table[x][0]).to_numpy(),
                                    "w": lab.map(lambda x: table[x][1] if x in ("A>>B", "B>>A") else 1).to_numpy(),
                                    "game": game}))
    b = pd.concat(frames, ignore_index=True)
    b = b.loc[b.index.repeat(np.where(b["w"] > 1, STRONG_WEIGHT, 1))].drop(columns="w")
    return b.sort_values(["model_b", "question_id", "game"], kind="stable").reset_index(drop=True)


def _bt_fit(a_idx: np.ndarray, b_idx: np.ndarray, w_a: np.ndarray, w_b: np.ndarray, n_models: int,
            ref: int, max_iter: int = 100) -> np.ndarray:
    """Bradley-Terry MLE by unpenalised logistic regression: P(a beats b) = 1 / (1 + 10^(-(c_a - c_b))).

    One row per model pair; `w_a`, `w_b` are the weights of the observations "a won" and "b won" (a tie
    adds 0.5 to each: the official fit's duplicate-and-split of ties, up to a factor 2 that does not move
    the MLE). Coefficient `ref` is fixed at 0 (ratings are defined up to a shift). Newton's method with
    backtracking; a model that won or lost every battle drifts to |c| = 10 (Elo +-4000) and stops.
    Returns Elo-scale ratings 400 * c, shape (n_models,)."""
    ln10 = np.log(10.0)
    free = np.array([i for i in range(n_models) if i != ref], dtype=int)
    design = np.zeros((len(a_idx), n_models))
    rows = np.arange(len(a_idx))
    design[rows, a_idx] += ln10
    design[rows, b_idx] -= ln10
    design = design[:, free]                                   # (n_pairs, n_models - 1)
    total = w_a + w_b

    def loss(theta):
        z = design @ theta
        return float(np.sum(w_a * np.logaddexp(0, -z) + w_b * np.logaddexp(0, z)))

    theta = np.zeros(len(free))
    current = loss(theta)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        grad = design.T @ (total * p - w_a)
        if np.max(np.abs(grad), initial=0.0) < 1e-10 * max(total.sum(), 1.0):
            break
        hess = design.T @ (design * (total * p * (1 - p))[:, None])
        step = np.linalg.lstsq(hess + 1e-12 * np.eye(len(free)), grad, rcond=None)[0]
        t = 1.0
        while t > 1e-8:
            trial = np.clip(theta - t * step, -10.0, 10.0)
            new = loss(trial)
            if new <= current - 1e-4 * t * float(grad @ step) or new < current:
                break
            t /= 2
        if new >= current:
            break
        theta, current = trial, new
    c = np.zeros(n_models)
    c[free] = theta
    return 400.0 * c


def bradley_terry(battle_table: pd.DataFrame, weights: np.ndarray | None = None,
                  reference: str | None = None) -> pd.Series:
    """Elo ratings (index model) of a battle table (`battles`), optionally with per-battle weights (the
    bootstrap's resampling counts); `reference` (default: the first model_a) is rated 1000."""
    models = sorted(set(battle_table["model_a"]) | set(battle_table["model_b"]))
    idx = {m: i for i, m in enumerate(models)}
    w = np.ones(len(battle_table)) if weights is None else np.asarray(weights, float)
    a = battle_table["model_a"].map(idx).to_numpy()
    b = battle_table["model_b"].map(idx).to_numpy()
    win = battle_table["winner"].to_numpy()
    pair = a * len(models) + b
    keys, inv = np.unique(pair, return_inverse=True)
    w_a = np.bincount(inv, w * ((win == "model_a") + 0.5 * (win == "tie")), len(keys))
    w_b = np.bincount(inv, w * ((win == "model_b") + 0.5 * (win == "tie")), len(keys))
    ref = idx[reference if reference is not None else battle_table["model_a"].iloc[0]]
    elo = _bt_fit(keys // len(models), keys % len(models), w_a, w_b, len(models), ref)
    return pd.Series(elo + 1000.0, index=models)


def win_rate(elo: pd.Series, anchor: str) -> pd.Series:
    """Predicted win rate (percent) of every model against `anchor` from Elo ratings."""
    return 100.0 / (1.0 + 10.0 ** ((elo[anchor] - elo) / 400.0))


def arena_hard_scores(judgments: pd.DataFrame, anchor: str, baseline: str = "gpt-4-0314", n_bootstrap: int = 100,
                      seed: int = 0, interval: str = "percentile") -> pd.DataFrame:
    """Arena-Hard scores (§4.1): ``model, score, lower, upper`` in percent win rate against `anchor`.

    judgments: ``question_id, model, game1, game2`` (verdict labels or None; game 1 has `baseline` as A).
    score: win rate against the anchor from the Bradley-Terry fit on all battles. interval ``percentile``
    (default): 2.5 / 97.5 percentiles of the win rate against the anchor over `n_bootstrap` resamples of
    the battles; ``official_v0.1``: win rate of each model's 2.5th-percentile Elo against the anchor's
    2.5th-percentile Elo (likewise 97.5), as arena-hard-auto v0.1's show_result does. The anchor (any
    judged model or the baseline) reads exactly 50 with a zero-width interval. Deterministic for a seed,
    independent of the row order. Rows sorted by score, best first."""
    if interval not in ("percentile", "official_v0.1"):
        raise ValueError(f"interval must be 'percentile' or 'official_v0.1', got {interval!r}")
    bt = battles(judgments, baseline)
    if bt.empty:
        raise ValueError("Arena-Hard judgments contain no parsed verdict at all")
    models = sorted(set(bt["model_a"]) | set(bt["model_b"]))
    if anchor not in models:
        raise ValueError(f"anchor {anchor!r} is neither the baseline nor a judged model with a verdict "
                         f"(models: {models})")
    elo = bradley_terry(bt, reference=baseline)
    score = win_rate(elo, anchor)
    rng = np.random.default_rng(seed)
    n = len(bt)
    boot_elo = np.empty((n_bootstrap, len(models)))
    for r in range(n_bootstrap):
        counts = rng.multinomial(n, np.full(n, 1.0 / n))
        boot_elo[r] = bradley_terry(bt, counts, reference=baseline).reindex(models).to_numpy()
    boot = pd.DataFrame(boot_elo, columns=models)
    if interval == "percentile":
        rates = 100.0 / (1.0 + 10.0 ** ((boot[[anchor]].to_numpy() - boot.to_numpy()) / 400.0))
        lower, upper = np.percentile(rates, 2.5, axis=0), np.percentile(rates, 97.5, axis=0)
    else:
        lo, hi = boot.quantile(0.025), boot.quantile(0.975)
        lower, upper = win_rate(lo, anchor).to_numpy(), win_rate(hi, anchor).to_numpy()
    out = pd.DataFrame({"model": models, "score": score.reindex(models).to_numpy(), "lower": lower, "upper": upper})
    out.loc[out["model"] == anchor, ["score", "lower", "upper"]] = 50.0
    return out.sort_values(["score", "model"], ascending=[False, True]).reset_index(drop=True)


def format_interval(score: float, lower: float, upper: float) -> str:
    """The paper's display: ``"50.0 (0.0, 0.0)"`` = score (lower - score, upper - score)."""
    return f"{score:.1f} ({lower - score + 0.0:.1f}, {upper - score + 0.0:.1f})"


def average_performance_rank(scores: pd.DataFrame, benchmarks=("mt_bench", "arena_hard")) -> pd.DataFrame:
    """Average Performance (§4.1): each system's rank per benchmark (1 = best, ties share the best rank)
    and their mean ``ap``. `scores`: one row per system (index), one column per benchmark."""
    missing = [b for b in benchmarks if b not in scores.columns]
    if missing:
        raise ValueError(f"AP rank: missing benchmark column(s) {missing}")
    if scores[list(benchmarks)].isna().any().any():
        raise ValueError("AP rank: a system lacks a benchmark score (NaN)")
    ranks = scores[list(benchmarks)].rank(ascending=False, method="min").add_prefix("rank_")
    return scores.join(ranks).assign(ap=ranks.mean(axis=1)).sort_values("ap")


def aggregate_repetitions(scores: pd.DataFrame, keys=("system", "benchmark")) -> pd.DataFrame:
    """Repeated runs (3 in the paper) per system and benchmark: ``mean, median, std (ddof=1), min, max, n``
    of column ``score``."""
    missing = [c for c in (*keys, "score") if c not in scores.columns]
    if missing:
        raise ValueError(f"repetitions: missing column(s) {missing}")
    g = scores.groupby(list(keys), sort=True)["score"]
    return g.agg(mean="mean", median="median", std="std", min="min", max="max", n="count").reset_index()
