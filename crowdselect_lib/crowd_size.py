"""How many models does a crowd need? Sub-sampling the crowd behind CrowdSelect (§3.2-3.3, eqs. 3-9).

CrowdSelect reads every instruction through the scores of N models. For a crowd size m this module draws m of
the N models at random (seeded, `draws` times), recomputes Difficulty, Separability and Stability on the drawn
columns with `metrics.base_metrics` (eqs. 3-5) and the CrowdSelect top-k subset with `selection.combine`
(normalisation eqs. 6-8, weighted sum eq. 9) and `selection.select` (equal per-cluster quotas when cluster
labels are given, as notebook 05 does), and compares each with the full crowd's:

- ``spearman``: Spearman correlation over instructions between a draw's metric and the full crowd's;
- ``jaccard``:  |A & B| / |A | B| of the draw's top-k uuids A and the full crowd's top-k uuids B.

Family structure (eq. 5). A drawn model keeps its family and size, so a draw's Stability averages over the
families that still have >= 2 distinct known sizes among the *drawn* models (exactly `base_metrics` on the drawn
columns). When no family qualifies (most draws at small m: on the AlpacaEval zoo 13 of 56 models sit in 6 such
families), Stability is undefined for that draw: its row has ``spearman`` NaN, and that draw's CrowdSelect
score (eq. 9) uses the remaining metrics with their own weights (w_D rho_D + w_S rho_S); ``n_families`` = 0
marks such draws. Summaries skip NaN and count the valid draws (`crowd_size_summary`, column ``n``).

The study table (`crowd_size_study`, `leave_one_family_out`) is tidy: one row per (crowd, metric) with
columns m, draw, metric (difficulty | separability | stability), spearman, jaccard, n_families.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .metrics import METRICS, base_metrics, stability_families
from .selection import combine, select

QUANTITIES = [*METRICS, "jaccard"]


def _scores_and_families(zoo_or_scores, families, reward_model) -> tuple[pd.DataFrame, dict]:
    """(S, model -> (family, size_b)) from a `Zoo` or from a score matrix plus its families mapping."""
    if isinstance(zoo_or_scores, pd.DataFrame):
        if families is None:
            raise ValueError("a score matrix needs its `families` mapping model -> (family, size_b)")
        return zoo_or_scores, dict(families)
    zoo = zoo_or_scores
    return zoo.scores(reward_model), dict(families) if families is not None else zoo.families()


def _positional(scores: pd.DataFrame, families: dict, clusters: pd.Series | None):
    """S and the cluster labels re-indexed by row position 0..n-1 (cheaper than string uuids in the inner loop)."""
    if clusters is not None:
        lab = clusters.reindex(scores.index)
        if lab.isna().any():
            raise ValueError(f"no cluster label for uuid {lab.index[lab.isna()][0]!r}")
        clusters = pd.Series(lab.to_numpy(), index=pd.RangeIndex(len(scores)))
    return scores.set_axis(pd.RangeIndex(len(scores)), axis=0), families, clusters


def crowd_metrics(scores: pd.DataFrame, families: dict) -> pd.DataFrame:
    """`metrics.base_metrics` (eqs. 3-5) of a crowd whose Stability may be undefined.

    Returns difficulty, separability, stability per instruction; ``attrs["n_families"]`` counts the families in
    Stability. With no family of >= 2 distinct sizes, base_metrics refuses; Difficulty and Separability do not
    depend on families, so they are taken from base_metrics with one placeholder family of distinct sizes, and
    Stability is set to NaN.
    """
    n_fam = len(stability_families(families, list(scores.columns)))
    if n_fam:
        out = base_metrics(scores, families)
    else:
        placeholder = {m: ("(placeholder)", float(j)) for j, m in enumerate(scores.columns)}
        out = base_metrics(scores, placeholder)
        out["stability"] = np.nan
    out.attrs["n_families"] = n_fam
    return out


def crowdselect_top(metrics: pd.DataFrame, k: int, weights=(1.0, 1.0, 2.0),
                    clusters: pd.Series | None = None) -> pd.Index:
    """The top-k uuids by the CrowdSelect score (eqs. 6-9), per-cluster quotas if `clusters` is given.

    A metric that is all NaN (Stability without a qualifying family) is left out of eq. 9 with its weight.
    """
    w = dict(zip(METRICS, np.asarray(weights, dtype=float)))
    w = {name: v for name, v in w.items() if not metrics[name].isna().all()}
    ranked, _ = select(combine(metrics, w), k, "top", clusters, rule="equal")
    return ranked.index


def _spearman_columns(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Spearman of every column of x (n, D) with ref (n,): Pearson of average ranks; NaN column or constant -> NaN."""
    rx = rankdata(x, axis=0) - (x.shape[0] + 1) / 2.0
    rr = rankdata(ref) - (x.shape[0] + 1) / 2.0
    num = rr @ rx
    den = np.sqrt((rr @ rr) * np.einsum("ij,ij->j", rx, rx))   # sqrt(a*a) == a exactly: identical ranks give 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, num / den, np.nan)
    return np.clip(rho, -1.0, 1.0)


def _compare_crowds(scores: pd.DataFrame, families: dict, crowds: list[np.ndarray], k: int, weights,
                    clusters, full: pd.DataFrame, full_top: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each crowd (column positions of S): Spearman per metric (D, 3), Jaccard (D,), families in Stability (D,)."""
    n, d = len(scores), len(crowds)
    values = {name: np.empty((n, d)) for name in METRICS}
    jac, n_fam = np.empty(d), np.empty(d, dtype=np.int64)
    ref_top = np.zeros(n, dtype=bool)
    ref_top[full_top.to_numpy()] = True                  # S carries a RangeIndex here: labels are positions
    for j, cols in enumerate(crowds):
        met = crowd_metrics(scores.iloc[:, cols], families)
        for name in METRICS:
            values[name][:, j] = met[name].to_numpy()
        both = np.count_nonzero(ref_top[crowdselect_top(met, k, weights, clusters).to_numpy()])
        jac[j] = both / (2 * k - both)
        n_fam[j] = met.attrs["n_families"]
    rho = np.column_stack([_spearman_columns(values[name], full[name].to_numpy()) for name in METRICS])
    return rho, jac, n_fam


def _tidy(rho: np.ndarray, jac: np.ndarray, n_fam: np.ndarray, keys: dict) -> pd.DataFrame:
    """One row per (crowd, metric): the crowd's key columns, metric, spearman, jaccard, n_families."""
    d = len(jac)
    out = {name: np.repeat(np.asarray(v), len(METRICS)) for name, v in keys.items()}
    out.update(metric=np.tile(METRICS, d), spearman=rho.ravel(), jaccard=np.repeat(jac, len(METRICS)),
               n_families=np.repeat(n_fam, len(METRICS)))
    return pd.DataFrame(out)


def _full_crowd(scores, families, k, clusters, weights):
    if not 0 < k <= len(scores):
        raise ValueError(f"k must be within 1 .. {len(scores)} instructions, got {k}")
    full = crowd_metrics(scores, families)
    return full, crowdselect_top(full, k, weights, clusters)


def crowd_size_study(zoo_or_scores, families: dict | None = None, *, reward_model: str | None = None,
                     sizes=None, draws: int = 50, seed: int = 0, k: int = 100, weights=(1.0, 1.0, 2.0),
                     clusters: pd.Series | None = None) -> pd.DataFrame:
    """How well m random models reproduce the full crowd's metrics (eqs. 3-5) and CrowdSelect subset (eqs. 6-9).

    zoo_or_scores: a `Zoo` (scores of `reward_model`, default the zoo's) or a score matrix S (index uuid, one
    column per model, no NaN) with `families` (model -> (family, size_b)). sizes: crowd sizes m (default every m
    from 3 to N); draws: random crowds per m, drawn without replacement with `np.random.default_rng([seed, m])`,
    so a size's draws do not depend on the other sizes asked for. At m = N every draw is the full crowd: Spearman
    and Jaccard are exactly 1. k, weights, clusters: the CrowdSelect subset (eq. 9 weights in the order
    difficulty, separability, stability; clusters: index uuid -> label for equal per-cluster quotas).

    Returns the tidy table m, draw, metric, spearman, jaccard, n_families (len(sizes) * draws * 3 rows).
    """
    scores, families, clusters = _positional(*_scores_and_families(zoo_or_scores, families, reward_model), clusters)
    n_models = scores.shape[1]
    sizes = list(range(3, n_models + 1)) if sizes is None else [int(m) for m in sizes]
    bad = [m for m in sizes if not 2 <= m <= n_models]
    if bad:
        raise ValueError(f"crowd size(s) {bad} outside 2 .. {n_models} (the zoo's number of models)")
    if draws < 1:
        raise ValueError(f"draws must be positive, got {draws}")
    full, full_top = _full_crowd(scores, families, k, clusters, weights)
    crowds, ms = [], []
    for m in sizes:   # (draws, m) sorted column positions: a random permutation's first m entries
        picks = np.random.default_rng([seed, m]).random((draws, n_models)).argsort(axis=1)[:, :m]
        crowds.extend(np.sort(picks, axis=1))
        ms.extend([m] * draws)
    rho, jac, n_fam = _compare_crowds(scores, families, crowds, k, weights, clusters, full, full_top)
    return _tidy(rho, jac, n_fam, {"m": ms, "draw": np.tile(np.arange(draws), len(sizes))})


def leave_one_family_out(zoo_or_scores, families: dict | None = None, *, reward_model: str | None = None,
                         k: int = 100, weights=(1.0, 1.0, 2.0), clusters: pd.Series | None = None) -> pd.DataFrame:
    """Drop each family's models in turn; compare metrics (eqs. 3-5) and the top-k subset (eqs. 6-9) with the full crowd.

    What to expect. Dropping a family that does not enter Stability leaves Stability bit-identical (Spearman 1;
    the families it averages over are untouched) but changes Difficulty and Separability, because their mean and
    variance run over every model. Dropping a Stability family changes Stability, and leaves Difficulty and
    Separability unchanged only when its models' scores do not move the per-instruction mean and variance (e.g.
    two models scoring mean +- std of the others). A family whose removal leaves < 2 models is skipped.

    Returns columns family, n_dropped, in_stability, metric, spearman, jaccard, n_families (3 rows per family).
    """
    scores, families, clusters = _positional(*_scores_and_families(zoo_or_scores, families, reward_model), clusters)
    full, full_top = _full_crowd(scores, families, k, clusters, weights)
    fam_of = np.array([families[m][0] for m in scores.columns])
    in_stab = set(stability_families(families, list(scores.columns)))
    names = [f for f in pd.unique(fam_of) if np.count_nonzero(fam_of != f) >= 2]
    crowds = [np.flatnonzero(fam_of != f) for f in names]
    rho, jac, n_fam = _compare_crowds(scores, families, crowds, k, weights, clusters, full, full_top)
    return _tidy(rho, jac, n_fam, {"family": names, "n_dropped": [int(np.count_nonzero(fam_of == f)) for f in names],
                                   "in_stability": [f in in_stab for f in names]})


def crowd_size_summary(study: pd.DataFrame, low: float = 0.1, high: float = 0.9) -> pd.DataFrame:
    """Median and the `low`-`high` quantile spread per crowd size m of each metric's Spearman and of the Jaccard.

    Returns columns m, quantity (difficulty | separability | stability | jaccard), median, q_low, q_high, n
    (valid draws: Stability counts only draws with a qualifying family).
    """
    spear = study[["m", "draw", "metric", "spearman"]].rename(columns={"metric": "quantity", "spearman": "value"})
    jac = (study.drop_duplicates(["m", "draw"])[["m", "draw", "jaccard"]]
           .assign(quantity="jaccard").rename(columns={"jaccard": "value"}))
    g = pd.concat([spear, jac], ignore_index=True).groupby(["m", "quantity"])["value"]
    out = pd.DataFrame({"median": g.median(), "q_low": g.quantile(low), "q_high": g.quantile(high), "n": g.count()})
    out = out.reset_index()
    out["quantity"] = pd.Categorical(out["quantity"], QUANTITIES)
    return out.sort_values(["quantity", "m"]).reset_index(drop=True)


def agreement_size(study: pd.DataFrame, level: float = 0.9) -> pd.Series:
    """The smallest crowd size m from which on the median reaches `level` (at m and every larger m studied).

    One entry per quantity (each metric's Spearman, the subset Jaccard) and ``all``: the m from which every one of
    them does. <NA> where the level is never reached to the end.
    """
    s = crowd_size_summary(study)
    out = {}
    for q in QUANTITIES:
        part = s[s["quantity"] == q].sort_values("m")
        ok = (part["median"] >= level).to_numpy()
        tail = np.logical_and.accumulate(ok[::-1])[::-1]      # True where it holds from here to the largest m
        out[q] = int(part["m"].to_numpy()[tail.argmax()]) if tail.any() else pd.NA
    out["all"] = pd.NA if any(v is pd.NA for v in out.values()) else max(out.values())
    return pd.Series(out, dtype="Int64", name=f"m at median >= {level}")


def plot_crowd_size(study: pd.DataFrame, title: str | None = None, level: float = 0.9):
    """Two panels: median Spearman vs the full crowd per metric (eqs. 3-5) and median Jaccard of the CrowdSelect
    top-k (eqs. 6-9) against crowd size m, each with its 10-90% band and a `level` reference line."""
    import matplotlib.pyplot as plt

    s = crowd_size_summary(study)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, quantities, ylabel in ((left, METRICS, "Spearman vs full crowd"),
                                   (right, ["jaccard"], "Jaccard of top-k vs full crowd")):
        for q in quantities:
            part = s[s["quantity"] == q]
            line, = ax.plot(part["m"], part["median"], marker=".", label=f"{q} (median)")
            ax.fill_between(part["m"], part["q_low"], part["q_high"], color=line.get_color(), alpha=0.2,
                            label=f"{q} 10-90%")
        ax.axhline(level, color="grey", ls="--", lw=1, label=f"{level:g} reference")
        ax.set(xlabel="crowd size m (models drawn)", ylabel=ylabel)
        ax.legend(fontsize=8, loc="lower right")
    left.set_title("base metrics (eqs. 3-5)")
    right.set_title("CrowdSelect subset (eqs. 6-9)")
    fig.suptitle(title or "How many models does a crowd need?")
    fig.tight_layout()
    return fig
