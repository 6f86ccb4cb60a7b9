"""Coreset (Sener & Savarese, k-center greedy) — an EXTRA baseline of this package (SelectLLM compares with it;
the CrowdSelect paper does not): start from a seeded random instruction, then repeatedly add the instruction
farthest from the chosen set, x_next = argmax_i min_{c in C} ||e_i - e_c||, on the instruction embeddings.

score = the covering radius right after the pick: the largest distance from any instruction to its nearest chosen
one. It shrinks with every pick, is finite from the first one (no "inf" for the start point) and equals the
distance at which the next pick is made.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .common import Baseline, Context, Picked


def k_center_greedy(x: np.ndarray, k: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Picks (k,) and covering radius after each pick (k,). x: (N, d). The min-distance vector is updated with
    the new center only, O(N d) per pick; ties go to the lowest index."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 0 < k <= n:
        raise ValueError(f"k={k} must be in 1..{n}")
    if not 0 <= start < n:
        raise ValueError(f"start={start} is not a row index of the {n} points")
    sq = np.einsum("ij,ij->i", x, x)                                  # (N,)
    min_d = np.full(n, np.inf)
    picks, radius = np.empty(k, dtype=np.int64), np.empty(k)
    nxt = start
    for i in range(k):
        picks[i] = nxt
        d_new = np.sqrt(np.maximum(sq - 2.0 * (x @ x[nxt]) + sq[nxt], 0.0))    # (N,) distances to the new center
        np.minimum(min_d, d_new, out=min_d)
        min_d[nxt] = 0.0
        nxt = int(np.argmax(min_d))
        radius[i] = float(min_d[nxt])
    return picks, radius


def coreset_pick(uuids, embeddings: np.ndarray, k: int, seed: int = 0) -> Picked:
    uuids = pd.Index(uuids)
    if len(uuids) != len(embeddings):
        raise ValueError(f"{len(uuids)} uuids but {len(embeddings)} embedding rows")
    start = int(np.random.default_rng(seed).integers(len(uuids)))
    picks, radius = k_center_greedy(embeddings, k, start)
    return Picked(pd.Series(radius, index=uuids[picks]),
                  {"start": str(uuids[start]), "final_radius": float(radius[-1])})


def _select(ctx: Context) -> Picked:
    from ..clustering import embed_instructions

    uuids, vecs = embed_instructions(ctx.run, ctx.cfg)
    return coreset_pick(uuids, vecs, ctx.k, ctx.cfg.run.seed)


def _settings(cfg, name):
    from ..clustering import embedding_settings

    return {"seed": cfg.run.seed, "embedding": embedding_settings(cfg.embedding)}


BASELINES = [Baseline("coreset", "Coreset", False, "embedding",
                      "k-center greedy on instruction embeddings (Sener & Savarese); extra, not in the paper",
                      _settings, _select)]
