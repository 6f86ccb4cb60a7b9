"""Does a row beat Random, and the untouched student? Paired bootstrap intervals and a verdict per comparison
(issue 24; the paper prints no MT-Bench interval and compares means of 3 runs).

THE bootstrap of the package resamples ITEMS (MT-Bench questions, Arena-Hard questions with both their games, held-out
instructions) with replacement, the same draw for both sides of a comparison (paired). Runs are pooled: a row's
value on an item is the mean over its runs (training seeds x judge samples), Random's the mean over Random's
selection seeds x training seeds, so the estimate equals the difference of the table's means.

- `bootstrap_counts(n_items, n_boot, seed)`: (n_boot, n_items) resampling counts, THE resampling.
- `paired_gain(a, b, ...)`: a: (n_items, n_runs_a), b: (n_items, n_runs_b); gain = mean(a) - mean(b) (or b - a
  for a loss, `higher_is_better=False`), with its percentile interval.
- `arena_gain(judgments, rows, refs, anchor, ...)`: Arena-Hard: the questions' battles resampled together, the
  Bradley-Terry fit redone each round, gain = mean win rate (vs the anchor) of `rows` minus that of `refs`.
- `verdict(lower, upper, reference)`: "above Random (95%)", "no evidence", "below Random (95%)".
"""
from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

LEVEL = 0.95
N_BOOT = 2000
RANDOM = re.compile(r"^random(_s\d+)?$")          # Random and its seeds (`random_s<N>`), pooled as one row


@dataclass(frozen=True)
class Gain:
    """A row's gain over a reference (positive = better), its `LEVEL` interval and the verdict."""
    estimate: float
    lower: float
    upper: float
    n_items: int
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_counts(n_items: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """How often each item is drawn in each of `n_boot` resamples of `n_items` items: (n_boot, n_items), rows sum
    to n_items. Deterministic for a seed."""
    if n_items < 1:
        raise ValueError("bootstrap: no item to resample")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=n_boot)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The (1 - level) / 2 and (1 + level) / 2 percentiles of bootstrap `samples`."""
    tail = 100 * (1 - level) / 2
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def verdict(lower: float, upper: float, reference: str = "Random", level: float = LEVEL) -> str:
    """"above <reference> (95%)" when the whole interval of the gain is above 0, "below <reference> (95%)" when it
    is below, else "no evidence"."""
    if np.isnan(lower) or np.isnan(upper):
        return "no evidence"
    pct = f"{100 * level:g}%"
    if lower > 0:
        return f"above {reference} ({pct})"
    if upper < 0:
        return f"below {reference} ({pct})"
    return "no evidence"


def _item_means(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"paired_gain: {name} must be (n_items, n_runs) with at least one run, got {x.shape}")
    with warnings.catch_warnings():          # an item without any run is NaN here, and an error below
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=1)


def paired_gain(a, b, *, higher_is_better: bool = True, reference: str = "Random", n_boot: int = N_BOOT,
                seed: int = 0, level: float = LEVEL) -> Gain:
    """Paired bootstrap of mean(a) - mean(b) over items (rows); the sign is flipped for a loss.

    a, b: (n_items, n_runs) values of the same items, one column per run (a run's missing item = NaN); each
    item's value is its mean over the runs. An item missing on either side in every run is an error naming it."""
    ma, mb = _item_means(a, "a"), _item_means(b, "b")
    if len(ma) != len(mb):
        raise ValueError(f"paired_gain: a has {len(ma)} items, b {len(mb)}; a paired comparison needs the same items")
    missing = np.flatnonzero(np.isnan(ma) | np.isnan(mb))
    if len(missing):
        raise ValueError(f"paired_gain: item(s) {missing[:5].tolist()} have no value on one side")
    d = (ma - mb) if higher_is_better else (mb - ma)
    counts = bootstrap_counts(len(d), n_boot, seed)
    boot = counts @ d / len(d)
    lo, hi = percentile_interval(boot, level)
    return Gain(float(d.mean()), lo, hi, len(d), verdict(lo, hi, reference, level))


def arena_gain(judgments: pd.DataFrame, rows: list[str], refs: list[str], anchor: str, *,
               baseline: str = "gpt-4-0314", reference: str = "Random", n_boot: int = 200, seed: int = 0,
               level: float = LEVEL) -> Gain:
    """Arena-Hard (§4.1): gain in win rate (percent points, against `anchor`) of the mean of `rows` over the mean
    of `refs`. judgments: ``question_id, model, game1, game2`` as `judge.scores.arena_hard_scores` reads them.
    Each round resamples questions (a question's games and every system's battles on it move together) and
    refits Bradley-Terry with those counts as battle weights."""
    from ..judge.scores import battles, bradley_terry, win_rate

    bt = battles(judgments, baseline)
    known = set(bt["model_b"]) | {baseline}
    lost = [s for s in [*rows, *refs, anchor] if s not in known]
    if lost:
        raise ValueError(f"arena_gain: no parsed battle for system(s) {lost}")
    questions = np.array(sorted(set(bt["question_id"])))
    q_of = np.searchsorted(questions, bt["question_id"].to_numpy())

    def gain(weights=None) -> float:
        wr = win_rate(bradley_terry(bt, weights, reference=baseline), anchor)
        return float(wr[rows].mean() - wr[refs].mean())

    est = gain()
    counts = bootstrap_counts(len(questions), n_boot, seed)
    boot = np.array([gain(c[q_of]) for c in counts])
    lo, hi = percentile_interval(boot, level)
    return Gain(est, lo, hi, len(questions), verdict(lo, hi, reference, level))


def is_random(subset: str) -> bool:
    """Random or one of its seeds (``random_s<N>``)."""
    return bool(RANDOM.match(str(subset)))
