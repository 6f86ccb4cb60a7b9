"""The CrowdSelect score (paper eqs. 6-9): each metric is z-scored (eq. 6), min-max scaled to [0, 1] (eq. 7) and
mapped to a uniform [0, 1] by its empirical quantiles (eq. 8); the score is sum_j w_j rho_j (eq. 9).

Eqs. 6 and 7 are increasing affine maps, so eq. 8 sees the same order and the same ties as the raw metric: rho_j
is the metric's percentile rank ((rank - 1) / (n - 1) for untied values and n <= 1000; within half a step of the
average rank for tied ones, and ties with the minimum or maximum map to 0 or 1; a piecewise-linear fit of it
through 1000 quantiles above n = 1000), and the score is a weighted sum of percentile ranks (`percentile_ranks` shows it).

The official code calls scikit-learn's ``QuantileTransformer(output_distribution="uniform", n_quantiles=...)``
with the default ``subsample``: in current scikit-learn (>= 1.5, default 10,000) the quantiles are then fitted on
a random 10k-row subsample (``random_state=None``: a different fit each run) once the zoo has more than 10k rows,
so the official selection on the 100k Magpie zoo is not reproducible run to run. We fit on every row
(``subsample=None``), deterministically; `tests/test_selection.py` checks equality with scikit-learn's.

Order invariance: each column is normalised on its sorted copy (means and quantiles of a sorted array do not
depend on row order) and the weighted sum is formed elementwise, in a fixed metric order (no BLAS).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..metrics import METRICS
from ..runs import threads


def check_weights(weights) -> tuple[list[str], np.ndarray]:
    """(metric names, weights) from a sequence in the order (difficulty, separability, stability) or a mapping
    metric -> weight; NaN/inf or all-zero weights are errors."""
    if isinstance(weights, dict):
        unknown = sorted(set(weights) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) in weights: {unknown}")
        names, w = list(weights), np.array(list(weights.values()), dtype=float)
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(METRICS),):
            raise ValueError(f"weights must have {len(METRICS)} entries {METRICS}, got {list(weights)}")
        names = list(METRICS)
    if not np.isfinite(w).all():
        raise ValueError(f"weights must be finite numbers, got {list(w)}")
    if not w.any():
        raise ValueError(f"weights are all zero ({list(w)}): every instruction would score the same")
    return names, w


def percentile_sorted(xs: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.percentile(xs, 100 * q)`` (method "linear") for an already sorted 1-D `xs`, bit for bit, in O(len(q))
    instead of a partition of all of `xs` per call (the crowd-size study calls eq. 8 thousands of times)."""
    n = len(xs)
    q = np.true_divide(q * 100, 100)                 # what np.percentile does to its argument
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    gamma = virtual - prev
    prev = prev.astype(np.intp)
    nxt = prev + 1
    top = virtual >= n - 1
    prev[top], nxt[top] = -1, -1
    a, b = xs[prev], xs[nxt]
    d = b - a
    out = a + d * gamma
    upper = gamma >= 0.5                             # numpy's lerp from the upper end for t >= 0.5
    out[upper] = (b - d * (1 - gamma))[upper]
    return out


def _quantile_uniform_sorted(xs: np.ndarray, n_quantiles: int) -> np.ndarray:
    """scikit-learn's `QuantileTransformer(output_distribution="uniform", subsample=None)` fit+transform on one
    column, given sorted (np.interp's search is fastest on sorted input)."""
    refs = np.linspace(0, 1, n_quantiles)
    quantiles = np.maximum.accumulate(percentile_sorted(xs, refs))
    # average of the forward and the reversed interpolation handles repeated quantiles, as sklearn does
    ys = 0.5 * (np.interp(xs, quantiles, refs) - np.interp(-xs[::-1], -quantiles[::-1], -refs[::-1])[::-1])
    ys[xs + 1e-7 > quantiles[-1]] = 1.0
    ys[xs - 1e-7 < quantiles[0]] = 0.0
    return ys


def normalize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Three-stage normalisation per metric, fitted on all rows as the official code does: z-score (eq. 6,
    StandardScaler) -> min-max to [0, 1] (eq. 7, MinMaxScaler) -> empirical quantiles to a uniform [0, 1] (eq. 8,
    QuantileTransformer(n_quantiles=min(n, 1000)) fitted on every row)."""
    values = metrics.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        bad = metrics.columns[~np.isfinite(values).all(axis=0)].tolist()
        raise ValueError(f"NaN or infinite value in metric column(s) {bad}")
    out = {}

    def column(j: int) -> None:
        x = np.ascontiguousarray(values[:, j])       # a contiguous column sorts faster than a strided one
        order = np.argsort(x)                        # any tie order: tied values get equal outputs (SIMD sort)
        xs = x[order]
        xs = np.ldexp(xs, -int(np.frexp(max(abs(xs[0]), abs(xs[-1])))[1]))   # exact power-of-2 scale: no overflow
        std = xs.std()
        z = (xs - xs.mean()) / (std if std > 0 else 1.0)                       # eq. 6
        span = z[-1] - z[0]
        mm = (z - z[0]) / (span if span > 0 else 1.0)                          # eq. 7
        y = np.empty(len(xs))
        y[order] = _quantile_uniform_sorted(mm, min(len(xs), 1000))           # eq. 8
        out[metrics.columns[j]] = y

    # one thread per column, even past the core count: numpy sorts release the GIL, and three sorts on two cores
    # finish sooner time-sliced than in two rounds (3M rows: 0.58 s against 0.75 s)
    threads(column, range(len(metrics.columns)), workers=len(metrics.columns))
    out = {c: out[c] for c in metrics.columns}
    return pd.DataFrame(out, index=metrics.index)


def combine(metrics: pd.DataFrame, weights) -> pd.Series:
    """CrowdSelect score (eq. 9): sum_j w_j * rho_j over the normalised metrics (eqs. 6-8).

    weights: a sequence in the order (difficulty, separability, stability) — paper default (1, 1, 2) —
    or a mapping metric -> weight.
    """
    names, w = check_weights(weights)
    missing = [m for m in names if m not in metrics.columns]
    if missing:
        raise KeyError(f"metrics table lacks column(s) {missing}")
    rho = normalize(metrics[names])
    score = np.zeros(len(metrics))
    for name, wj in zip(names, w):
        score += wj * rho[name].to_numpy()
    return pd.Series(score, index=metrics.index, name="crowdselect")


def percentile_ranks(metrics: pd.DataFrame) -> pd.DataFrame:
    """(average rank - 1) / (n - 1) of each metric: what eq. 8 computes after the increasing maps of eqs. 6-7
    (see the module docstring for how close)."""
    n = len(metrics)
    return pd.DataFrame({c: (rankdata(metrics[c].to_numpy(), method="average") - 1) / max(n - 1, 1)
                         for c in metrics.columns}, index=metrics.index)


def score_parts(metrics: pd.DataFrame, weights) -> pd.DataFrame:
    """Per instruction: each metric, its rho (eq. 8), its weighted part w_j rho_j and the score (eq. 9), best first."""
    names, w = check_weights(weights)
    rho = normalize(metrics[names])
    parts = pd.DataFrame({f"{wj:g} x rho_{n}": wj * rho[n] for n, wj in zip(names, w)})
    out = pd.concat([metrics[names], rho.add_prefix("rho_"), parts], axis=1)
    out["score"] = combine(metrics, weights)
    return out.sort_values("score", ascending=False, kind="stable")
