"""Picking k instructions by a score (paper §3.3): the top-k (or bottom-k), or equal per-cluster quotas.

Ties in the score are broken by uuid (ascending), so the pick never depends on the order of the rows.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def rank_order(score: pd.Series, direction: str = "top") -> np.ndarray:
    """Row positions from best to worst: by score (descending for "top"), ties by uuid ascending."""
    if direction not in ("top", "bottom"):
        raise ValueError(f"direction must be 'top' or 'bottom', got {direction!r}")
    v = score.to_numpy(dtype=float)
    if np.isnan(v).any():
        raise ValueError(f"NaN selection score for uuid {score.index[np.isnan(v)][0]!r}")
    by_uuid = np.empty(len(v), dtype=np.int64)
    by_uuid[np.argsort(score.index.to_numpy().astype(object), kind="stable")] = np.arange(len(v))
    return np.lexsort((by_uuid, -v if direction == "top" else v))


def top_k(score: pd.Series, k: int, direction: str = "top") -> pd.Series:
    """THE top-k (bottom-k): the k best rows of `score` in rank order (ties by uuid)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if k > len(score):
        raise ValueError(f"asked for k={k} rows but only {len(score)} exist")
    return score.iloc[rank_order(score, direction)[:k]]


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
    n = len(score)
    ranked = top_k(score, k, direction)           # checks k and NaN
    report = {"k": k, "direction": direction, "clustered": clusters is not None, "shortfall": 0, "filled": 0}
    if clusters is None:
        return ranked, report
    lab = clusters.reindex(score.index)
    if lab.isna().any():
        raise ValueError(f"no cluster label for uuid {lab.index[lab.isna()][0]!r}")
    lab = lab.to_numpy().astype(int)
    order = rank_order(score, direction)
    if official_compat:  # sort by uuid string, largest first, inside each cluster
        order = np.argsort(score.index.to_numpy().astype(str), kind="stable")[::-1]
    ranked_lab = lab[order]
    by_cluster = np.argsort(ranked_lab, kind="stable")      # rows grouped by cluster, rank order kept
    starts = np.searchsorted(ranked_lab[by_cluster], ranked_lab[by_cluster], side="left")
    pos = np.empty(n, dtype=np.int64)
    pos[by_cluster] = np.arange(n) - starts                  # position of each row inside its cluster
    sizes = pd.Series(lab).value_counts().sort_index()
    if rule == "equal":
        quota = cluster_quotas(sizes, k)
    elif rule == "union":
        quota = pd.Series(math.ceil(k / len(sizes)), index=sizes.index)
    else:
        raise ValueError(f"unknown quota rule {rule!r}; choose 'equal' or 'union'")
    quota_of = np.zeros(lab.max() + 1, dtype=np.int64)
    quota_of[quota.index.to_numpy()] = quota.to_numpy()
    picked = order[pos < quota_of[ranked_lab]]   # still in `order`, so for "union" the first k are the union's best
    if rule == "union":
        picked = picked[:k]
    short = k - len(picked)
    report.update(shortfall=int(max(short, 0)),
                  short_clusters={int(c): int(sizes[c]) for c in sizes.index if sizes[c] < quota[c]})
    if short > 0:  # fill from the next best rows elsewhere (score order, also in compat mode)
        rest = rank_order(score, direction)
        rest = rest[~np.isin(rest, picked)][:short]
        picked = np.concatenate([picked, rest])
        report["filled"] = int(len(rest))
    taken = pd.Series(lab[picked]).value_counts()
    report["clusters"] = {int(c): {"size": int(sizes[c]), "quota": int(quota[c]), "taken": int(taken.get(c, 0))}
                          for c in sizes.index}
    report["quota"] = {int(c): int(q) for c, q in quota.items()}
    chosen = picked[rank_order(score.iloc[picked], direction)]
    return score.iloc[chosen], report
