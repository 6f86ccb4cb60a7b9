"""Picking k instructions by a score (paper §3.3): the top-k (or bottom-k), or equal per-cluster quotas.

Ties in the score are broken by uuid (ascending), so the pick never depends on the order of the rows.
Speed (issue 22): a pick of k = 1,000 from 3M rows sorts only each cluster's shortlist, the rows at or above its
quota-th score found by an O(n) partition; a full sort of every row is left to the cases that need one (the official
uuid-string order, a cluster too small for its quota).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def _sort_key(score: pd.Series, direction: str) -> np.ndarray:
    """The ascending sort key of `score` (negated for "top"); NaN and unknown directions are errors."""
    if direction not in ("top", "bottom"):
        raise ValueError(f"direction must be 'top' or 'bottom', got {direction!r}")
    v = score.to_numpy(dtype=float)
    if np.isnan(v).any():
        raise ValueError(f"NaN selection score for uuid {score.index[np.isnan(v)][0]!r}")
    return -v if direction == "top" else v


def rank_order(score: pd.Series, direction: str = "top") -> np.ndarray:
    """Row positions from best to worst: by score (descending for "top"), ties by uuid ascending.

    One native sort of the scores (O(n log n), SIMD), then the uuid order only inside runs of tied scores: sorting
    every uuid as a Python object is what made 3M rows cost 42x 100k (issue 22)."""
    key = _sort_key(score, direction)
    order = np.argsort(key)
    sk = key[order]
    same = sk[1:] == sk[:-1]
    if not same.any():
        return order
    tied = np.zeros(len(key), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    at = np.flatnonzero(tied)                                  # sorted positions inside a run of ties
    run = np.cumsum(np.r_[True, ~same][at])                   # run id: a new run where the score changes
    rows = order[at]
    uuids = score.index.to_numpy()[rows]
    if uuids.dtype.kind not in "iuf":
        uuids = uuids.astype(object)
    by_uuid = np.empty(len(rows), dtype=np.int64)
    by_uuid[np.argsort(uuids, kind="stable")] = np.arange(len(rows))
    order[at] = rows[np.lexsort((by_uuid, run))]
    return order


def _shortlist(key: np.ndarray, quota: int) -> np.ndarray:
    """Positions (ascending) of every row whose key is <= the `quota`-th smallest: a superset of the best `quota`
    rows under any tie rule, found by one O(n) partition instead of a full sort (k = 1,000 of 3M rows, issue 22)."""
    if quota <= 0:
        return np.arange(0)
    if quota >= len(key):
        return np.arange(len(key))
    return np.flatnonzero(key <= np.partition(key, quota - 1)[quota - 1])


def top_k(score: pd.Series, k: int, direction: str = "top") -> pd.Series:
    """THE top-k (bottom-k): the k best rows of `score` in rank order (ties by uuid)."""
    _check_k(k, len(score))
    rows = _shortlist(_sort_key(score, direction), k)           # the k best lie in the shortlist
    return score.iloc[rows[rank_order(score.iloc[rows], direction)[:k]]]


def _check_k(k: int, n: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if k > n:
        raise ValueError(f"asked for k={k} rows but only {n} exist")


def cluster_quotas(sizes: pd.Series, k: int) -> pd.Series:
    """Equal quotas k // C per cluster, the remainder to the lowest cluster labels (official: k/C each)."""
    c = len(sizes)
    q = pd.Series(k // c, index=sizes.index.sort_values())
    q.iloc[: k % c] += 1
    return q


def select(score: pd.Series, k: int, direction: str = "top", clusters: pd.Series | None = None,
           rule: str = "equal", official_compat: bool = False) -> tuple[pd.Series, dict]:
    """Pick k uuids by `score`; returns (selected scores in rank order, report).

    Without clusters: the top-k (or bottom-k). With clusters (index uuid -> label):
    - rule "equal" (official multi-metric code): exactly the cluster quota from each cluster;
    - rule "union" (official single-metric code): the best ceil(k/C) of each cluster, then the best
      k of that union.
    A cluster smaller than its quota gives all its rows; the shortfall is filled with the next best rows
    of the other clusters and reported. `official_compat=True` reproduces the official multi-metric bug:
    inside each cluster rows are ordered by the uuid string (largest first), not by score.
    The report holds k, direction, clustered, shortfall, filled and, with clusters, per cluster: size, quota, taken.
    """
    _check_k(k, len(score))
    report = {"k": k, "direction": direction, "clustered": clusters is not None, "shortfall": 0, "filled": 0}
    if clusters is None:
        return top_k(score, k, direction), report
    key = _sort_key(score, direction)                       # checks NaN and the direction
    lab = clusters.reindex(score.index)
    if lab.isna().any():
        raise ValueError(f"no cluster label for uuid {lab.index[lab.isna()][0]!r}")
    lab = lab.to_numpy().astype(int)
    sizes = pd.Series(lab).value_counts().sort_index()
    if rule == "equal":
        quota = cluster_quotas(sizes, k)
    elif rule == "union":
        quota = pd.Series(math.ceil(k / len(sizes)), index=sizes.index)
    else:
        raise ValueError(f"unknown quota rule {rule!r}; choose 'equal' or 'union'")
    quota_of = np.zeros(lab.max() + 1, dtype=np.int64)
    quota_of[quota.index.to_numpy()] = quota.to_numpy()
    small = lab.astype(np.int16) if 0 <= lab.min() and lab.max() < 2 ** 15 else lab
    full = official_compat or bool((sizes < quota).any())
    if full:     # the uuid-string order, or a shortfall to fill from the rest: rank every row
        rows = np.arange(len(score))
    else:        # each cluster's quota lies in its shortlist: rank only those rows (3M -> ~k rows)
        grouped = np.argsort(small, kind="stable")           # rows grouped by cluster (radix sort)
        ends = np.cumsum(np.bincount(small - small.min()))
        parts = [seg[_shortlist(key[seg], int(quota_of[lab[seg[0]]]))]
                 for seg in np.split(grouped, ends[:-1]) if len(seg)]
        rows = np.sort(np.concatenate(parts))
    best = rows[rank_order(score.iloc[rows], direction)]
    order = best
    if official_compat:  # sort by uuid string, largest first, inside each cluster
        order = np.argsort(score.index.to_numpy().astype(str), kind="stable")[::-1]
    ranked_lab = lab[order]
    small = small[order]
    by_cluster = np.argsort(small, kind="stable")            # rows grouped by cluster, rank order kept (radix sort)
    counts = np.bincount(small - small.min())
    starts = np.repeat(np.cumsum(counts) - counts, counts)   # first sorted position of each row's cluster
    pos = np.empty(len(order), dtype=np.int64)
    pos[by_cluster] = np.arange(len(order)) - starts         # position of each row inside its cluster
    picked = order[pos < quota_of[ranked_lab]]   # still in `order`, so for "union" the first k are the union's best
    if rule == "union":
        picked = picked[:k]
    short = k - len(picked)
    report.update(shortfall=int(max(short, 0)),
                  short_clusters={int(c): int(sizes[c]) for c in sizes.index if sizes[c] < quota[c]})
    if short > 0:  # fill from the next best rows elsewhere (score order, also in compat mode)
        rest = best[~np.isin(best, picked)][:short]
        picked = np.concatenate([picked, rest])
        report["filled"] = int(len(rest))
    taken = pd.Series(lab[picked]).value_counts()
    report["clusters"] = {int(c): {"size": int(sizes[c]), "quota": int(quota[c]), "taken": int(taken.get(c, 0))}
                          for c in sizes.index}
    report["quota"] = {int(c): int(q) for c, q in quota.items()}
    chosen = picked[rank_order(score.iloc[picked], direction)]
    return score.iloc[chosen], report
