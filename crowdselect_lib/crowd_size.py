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

Speed: the metrics of many crowds go through `base_metrics` in a few stacked calls (`sub_crowd_metrics`, bit for
bit the per-crowd values), eqs. 6-8 through one `selection.normalize` call per batch of crowds, and the top-k
through `selection.select`; the quantile step of eq. 8 (3 columns per crowd) dominates the cost.

The study table (`crowd_size_study`, `leave_one_family_out`) is tidy: one row per (crowd, metric) with
columns m, draw, metric (difficulty | separability | stability), spearman, jaccard, n_families.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .escaping import literal_figure_text
from .metrics import METRICS, base_metrics, stability_families
from .selection import combine, normalize, select

QUANTITIES = [*METRICS, "jaccard"]


def _scores_and_families(zoo_or_scores, families, reward_model, only=None) -> tuple[pd.DataFrame, dict]:
    """(S, model -> (family, size_b)) from a `Zoo` or from a score matrix plus its families mapping. `only`
    (`metrics.stability_families`): the families outside it get an unknown size, so they never enter Stability."""
    if isinstance(zoo_or_scores, pd.DataFrame):
        if families is None:
            raise ValueError("a score matrix needs its `families` mapping model -> (family, size_b)")
        scores, families = zoo_or_scores, dict(families)
    else:
        scores = zoo_or_scores.scores(reward_model)
        families = dict(families) if families is not None else zoo_or_scores.families()
    if only is not None:
        stability_families(families, list(scores.columns), only)          # an unknown family name is an error
        families = {m: (f, size if f in only else np.nan) for m, (f, size) in families.items()}
    return scores, families


def _positional(scores: pd.DataFrame, families: dict, clusters: pd.Series | None):
    """S and the cluster labels re-indexed by row position 0..n-1 (cheaper than string uuids in the inner loop)."""
    if clusters is not None:
        lab = clusters.reindex(scores.index)
        if lab.isna().any():
            raise ValueError(f"no cluster label for uuid {lab.index[lab.isna()][0]!r}")
        clusters = pd.Series(lab.to_numpy(), index=pd.RangeIndex(len(scores)))
    return scores.set_axis(pd.RangeIndex(len(scores)), axis=0), families, clusters


def crowd_metrics(scores: pd.DataFrame, families: dict, ties: str = "average") -> pd.DataFrame:
    """`metrics.base_metrics` (eqs. 3-5) of a crowd whose Stability may be undefined.

    Returns difficulty, separability, stability per instruction; ``attrs["n_families"]`` counts the families in
    Stability. With no family of >= 2 distinct sizes, base_metrics refuses; Difficulty and Separability do not
    depend on families, so they are taken from base_metrics with one placeholder family of distinct sizes, and
    Stability is set to NaN. ties: `metrics.stability_ties` ("average" or "official"), as in `base_metrics`.
    """
    n_fam = len(stability_families(families, list(scores.columns)))
    if n_fam:
        out = base_metrics(scores, families, ties=ties)
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


class _SubCrowds:
    """Metrics (eqs. 3-5) of many sub-crowds of one score matrix, batched through `metrics.base_metrics` itself,
    so that each sub-crowd's values are bit-identical to `crowd_metrics(S[crowd])` (tests check it):

    - Difficulty, Separability: one `base_metrics` call per batch on the crowds stacked along rows, (D * n, m),
      each crowd's columns in model-name order as base_metrics orders them (both metrics are row-wise and do not
      depend on families; a two-slot placeholder family keeps that call's Stability cheap);
    - Stability: `base_metrics` on the drawn members of the qualifying families only (no other model enters
      eq. 5), once per distinct member set; member sets whose families have the same sizes are stacked along rows
      into one call, their columns renamed to slots that keep base_metrics' family and model order.
    """

    BATCH_CELLS = 4_000_000          # D * n * m floats per stacked block (bounds memory on large zoos)

    def __init__(self, scores: pd.DataFrame, families: dict, ties: str = "average"):
        self.scores, self.families, self.ties = scores, families, ties
        self.values = scores.to_numpy(dtype=float)
        self.cols = list(scores.columns)
        self.col = {m: j for j, m in enumerate(self.cols)}
        self.name_rank = np.argsort(np.argsort(np.array(self.cols, dtype=object)))
        self.stab: dict[tuple, np.ndarray] = {(): np.full(len(scores), np.nan)}

    def key(self, crowd: np.ndarray) -> tuple:
        """The crowd's qualifying families' members ((model, ...) per family) in base_metrics' order; () = none."""
        return tuple(tuple(ms) for ms in stability_families(self.families, [self.cols[j] for j in crowd]).values())

    def fill_stability(self, keys) -> None:
        """Stability (eq. 5) of every new member set: one stacked `base_metrics` call per family-size signature."""
        by_sig: dict[tuple, list[tuple]] = {}
        for key in dict.fromkeys(keys):
            if key not in self.stab:
                by_sig.setdefault(tuple(tuple(self.families[m][1] for m in ms) for ms in key), []).append(key)
        n = len(self.values)
        for sig, group in by_sig.items():
            slots = {f"f{i:03d}m{j:03d}": (f"f{i:03d}", size) for i, sz in enumerate(sig) for j, size in enumerate(sz)}
            pos = np.array([[self.col[m] for ms in key for m in ms] for key in group])        # (G, slots)
            step = max(1, self.BATCH_CELLS // (n * pos.shape[1]))
            for lo in range(0, len(group), step):
                part = pos[lo:lo + step]
                block = np.asfortranarray(self.values[:, part].transpose(1, 0, 2).reshape(len(part) * n, -1))
                frame = pd.DataFrame(block, columns=list(slots))
                stab = base_metrics(frame, slots, ties=self.ties)["stability"].to_numpy()
                self.stab.update(zip(group[lo:lo + step], stab.reshape(len(part), n)))

    def metrics(self, crowds: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """crowds (D, m) column positions -> ({metric: (n, D)}, families in Stability (D,))."""
        d, m = crowds.shape
        n = len(self.values)
        by_name = np.take_along_axis(crowds, np.argsort(self.name_rank[crowds], axis=1), axis=1)
        block = np.asfortranarray(self.values[:, by_name].transpose(1, 0, 2).reshape(d * n, m))
        slots = [f"slot{j:04d}" for j in range(m)]
        holder = {s: ("(placeholder)", float(j)) if j < 2 else (f"(slot {j})", np.nan) for j, s in enumerate(slots)}
        ds = base_metrics(pd.DataFrame(block, columns=slots), holder)
        out = {name: ds[name].to_numpy().reshape(d, n).T for name in ("difficulty", "separability")}
        keys = [self.key(c) for c in crowds]
        self.fill_stability(keys)
        out["stability"] = np.column_stack([self.stab[key] for key in keys])
        return out, np.array([len(key) for key in keys])


def sub_crowd_metrics(scores: pd.DataFrame, families: dict, crowds: list[list[str]],
                      ties: str = "average") -> list[pd.DataFrame]:
    """`crowd_metrics` (eqs. 3-5) of each crowd (a list of model names, columns of `scores`), batched: the same
    numbers, bit for bit, at a fraction of the cost (`_SubCrowds`)."""
    unknown = sorted({m for c in crowds for m in c} - set(scores.columns))
    if unknown:
        raise KeyError(f"model(s) {unknown} are not columns of the score matrix")
    sub = _SubCrowds(scores, families, ties)
    out = []
    for c in crowds:
        met, n_fam = sub.metrics(np.array([[sub.col[m] for m in c]]))
        frame = pd.DataFrame({name: met[name][:, 0] for name in METRICS}, index=scores.index)
        frame.attrs["n_families"] = int(n_fam[0])
        out.append(frame)
    return out


def _weights(metrics_defined: list[str], weights) -> dict[str, float]:
    """eq. 9 weights of the metrics a crowd has (Stability dropped when no family qualifies), in METRICS order."""
    return {name: float(w) for name, w in zip(METRICS, weights) if name in metrics_defined}


def _eq9(rho: dict[str, np.ndarray], w: dict[str, float]) -> np.ndarray:
    """sum_j w_j rho_j (eq. 9) formed as `selection.combine` forms it; `_evaluate` checks the equality at run time."""
    score = np.zeros(len(next(iter(rho.values()))))
    for name, wj in w.items():
        score += wj * rho[name]
    return score


def _evaluate(scores, families, crowds: list[np.ndarray], k: int, weights, clusters, ties: str = "average"):
    """Spearman per metric vs the full crowd (D, 3), Jaccard of the top-k (D,), families in Stability (D,).

    Crowds of one size are batched: metrics through `_SubCrowds`, eqs. 6-8 through ONE `selection.normalize` call
    per batch (it normalises each column on its own), eq. 9 by `_eq9` and the top-k by `selection.select`. The
    full crowd's top-k comes from `crowdselect_top` (selection.combine); if `_eq9` on the full crowd is not bit
    for bit `combine`, every crowd falls back to `crowdselect_top` (slower, same numbers). A crowd drawn twice
    is computed once."""
    if not 0 < k <= len(scores):
        raise ValueError(f"k must be within 1 .. {len(scores)} instructions, got {k}")
    full = crowd_metrics(scores, families, ties)
    ref = np.zeros(len(scores), dtype=bool)
    ref[crowdselect_top(full, k, weights, clusters).to_numpy()] = True    # S has a RangeIndex: labels = positions
    w_full = _weights([c for c in METRICS if not full[c].isna().all()], weights)
    rho_full = normalize(full[list(w_full)])
    fast = np.array_equal(_eq9({c: rho_full[c].to_numpy() for c in w_full}, w_full),
                          combine(full, w_full).to_numpy())
    sub = _SubCrowds(scores, families, ties)
    sub.fill_stability([sub.key(c) for c in crowds])                     # every size at once: fewer, taller calls
    rho, jac, n_fam = np.empty((len(crowds), 3)), np.empty(len(crowds)), np.empty(len(crowds), dtype=np.int64)
    sizes = np.array([len(c) for c in crowds])
    for m in np.unique(sizes):
        idx = np.flatnonzero(sizes == m)
        uniq, inverse = np.unique(np.stack([crowds[i] for i in idx]), axis=0, return_inverse=True)
        u_rho, u_jac, u_fam = np.empty((len(uniq), 3)), np.empty(len(uniq)), np.empty(len(uniq), dtype=np.int64)
        step = max(1, sub.BATCH_CELLS // (len(scores) * m))
        for lo in range(0, len(uniq), step):
            met, nf = sub.metrics(uniq[lo:lo + step])
            u_fam[lo:lo + step] = nf
            u_rho[lo:lo + step] = np.column_stack([_spearman_columns(met[name], full[name].to_numpy())
                                                   for name in METRICS])
            cols = {(j, name): met[name][:, j] for j in range(len(nf)) for name in METRICS
                    if name != "stability" or nf[j]}
            rho_all = normalize(pd.DataFrame(cols)) if fast else None                 # eqs. 6-8
            for j in range(len(nf)):
                w = _weights(METRICS if nf[j] else METRICS[:2], weights)
                if fast:
                    score = pd.Series(_eq9({c: rho_all[(j, c)].to_numpy() for c in w}, w), index=scores.index)
                    top = select(score, k, "top", clusters, rule="equal")[0].index
                else:
                    top = crowdselect_top(pd.DataFrame({c: met[c][:, j] for c in METRICS}, index=scores.index),
                                          k, weights, clusters)
                both = np.count_nonzero(ref[top.to_numpy()])
                u_jac[lo + j] = both / (2 * k - both)
        inverse = inverse.ravel()
        rho[idx], jac[idx], n_fam[idx] = u_rho[inverse], u_jac[inverse], u_fam[inverse]
    return rho, jac, n_fam


def _tidy(rho: np.ndarray, jac: np.ndarray, n_fam: np.ndarray, keys: dict) -> pd.DataFrame:
    """One row per (crowd, metric): the crowd's key columns, metric, spearman, jaccard, n_families."""
    d = len(jac)
    out = {name: np.repeat(np.asarray(v), len(METRICS)) for name, v in keys.items()}
    out.update(metric=np.tile(METRICS, d), spearman=rho.ravel(), jaccard=np.repeat(jac, len(METRICS)),
               n_families=np.repeat(n_fam, len(METRICS)))
    return pd.DataFrame(out)


def crowd_size_study(zoo_or_scores, families: dict | None = None, *, reward_model: str | None = None,
                     sizes=None, draws: int = 50, seed: int = 0, k: int = 100, weights=(1.0, 1.0, 2.0),
                     clusters: pd.Series | None = None, stability_only: list[str] | None = None,
                     ties: str = "average") -> pd.DataFrame:
    """How well m random models reproduce the full crowd's metrics (eqs. 3-5) and CrowdSelect subset (eqs. 6-9).

    zoo_or_scores: a `Zoo` (scores of `reward_model`, default the zoo's) or a score matrix S (index uuid, one
    column per model, no NaN) with `families` (model -> (family, size_b)). sizes: crowd sizes m (default every m
    from 3 to N); draws: random crowds per m, drawn without replacement with `np.random.default_rng([seed, m])`,
    so a size's draws do not depend on the other sizes asked for. At m = N every draw is the full crowd: Spearman
    and Jaccard are exactly 1. k, weights, clusters: the CrowdSelect subset (eq. 9 weights in the order
    difficulty, separability, stability; clusters: index uuid -> label for equal per-cluster quotas).
    stability_only: `metrics.stability_families` (None = every family with two distinct sizes); ties:
    `metrics.stability_ties` (eq. 5's tie rule, `metrics.base_metrics`).

    Returns the tidy table m, draw, metric, spearman, jaccard, n_families (len(sizes) * draws * 3 rows).
    """
    scores, families, clusters = _positional(*_scores_and_families(zoo_or_scores, families, reward_model,
                                                                   stability_only), clusters)
    n_models = scores.shape[1]
    sizes = list(range(3, n_models + 1)) if sizes is None else [int(m) for m in sizes]
    bad = [m for m in sizes if not 2 <= m <= n_models]
    if bad:
        raise ValueError(f"crowd size(s) {bad} outside 2 .. {n_models} (the zoo's number of models)")
    if draws < 1:
        raise ValueError(f"draws must be positive, got {draws}")
    crowds, ms = [], []
    for m in sizes:   # (draws, m) sorted column positions: a random permutation's first m entries
        picks = np.random.default_rng([seed, m]).random((draws, n_models)).argsort(axis=1)[:, :m]
        crowds.extend(np.sort(picks, axis=1))
        ms.extend([m] * draws)
    rho, jac, n_fam = _evaluate(scores, families, crowds, k, weights, clusters, ties)
    return _tidy(rho, jac, n_fam, {"m": ms, "draw": np.tile(np.arange(draws), len(sizes))})


def leave_one_family_out(zoo_or_scores, families: dict | None = None, *, reward_model: str | None = None,
                         k: int = 100, weights=(1.0, 1.0, 2.0), clusters: pd.Series | None = None,
                         stability_only: list[str] | None = None, ties: str = "average") -> pd.DataFrame:
    """Drop each family's models in turn; compare metrics (eqs. 3-5) and the top-k subset (eqs. 6-9) with the full crowd.

    What to expect. Dropping a family that does not enter Stability leaves Stability bit-identical (Spearman 1;
    the families it averages over are untouched) but changes Difficulty and Separability, because their mean and
    variance run over every model. Dropping a Stability family changes Stability, and leaves Difficulty and
    Separability unchanged only when its models' scores do not move the per-instruction mean and variance (e.g.
    two models scoring mean +- std of the others). A family whose removal leaves < 2 models is skipped.

    stability_only: `metrics.stability_families` (None: all families of 2+ sizes); ties: `metrics.stability_ties`.

    Returns columns family, n_dropped, in_stability, metric, spearman, jaccard, n_families (3 rows per family).
    """
    scores, families, clusters = _positional(*_scores_and_families(zoo_or_scores, families, reward_model,
                                                                   stability_only), clusters)
    fam_of = np.array([families[m][0] for m in scores.columns])
    in_stab = set(stability_families(families, list(scores.columns)))
    names = [f for f in pd.unique(fam_of) if np.count_nonzero(fam_of != f) >= 2]
    crowds = [np.flatnonzero(fam_of != f) for f in names]
    rho, jac, n_fam = _evaluate(scores, families, crowds, k, weights, clusters, ties)
    return _tidy(rho, jac, n_fam, {"family": names, "n_dropped": [int(np.count_nonzero(fam_of == f)) for f in names],
                                   "in_stability": [f in in_stab for f in names]})


def family_effect_table(lofo: pd.DataFrame) -> pd.DataFrame:
    """One row per dropped family (from `leave_one_family_out`): whether it enters Stability, models dropped, each
    metric's Spearman with the full crowd and the subset's Jaccard; most disruptive family first."""
    wide = lofo.pivot_table(index="family", columns="metric", values="spearman")
    info = lofo.groupby("family")[["in_stability", "n_dropped", "jaccard"]].first()
    return info.join(wide).sort_values("jaccard")


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
    literal_figure_text(fig).tight_layout()
    return fig


def official_sort_overlap(zoo_or_scores, clusters: pd.Series, families: dict | None = None, *,
                          reward_model: str | None = None, k: int = 100, weights=(1.0, 1.0, 2.0),
                          ties: str = "average") -> pd.Series:
    """How far the official code's per-cluster uuid-string sort (method.md §4, `select(official_compat=True)`)
    lands from the CrowdSelect subset it means to pick (eqs. 6-9, equal per-cluster quotas).

    Returns jaccard (of the two top-k uuid sets), shared (uuids in both), and each subset's mean of every metric
    (eqs. 3-5): ``<metric>_crowdselect`` and ``<metric>_official``.
    """
    scores, families = _scores_and_families(zoo_or_scores, families, reward_model)
    met = crowd_metrics(scores, families, ties)
    score = combine(met, weights)
    ours = select(score, k, "top", clusters, rule="equal")[0].index
    official = select(score, k, "top", clusters, rule="equal", official_compat=True)[0].index
    shared = len(ours.intersection(official))
    out = {"k": k, "shared": shared, "jaccard": shared / (2 * k - shared)}
    for name in METRICS:
        out[f"{name}_crowdselect"] = met.loc[ours, name].mean()
        out[f"{name}_official"] = met.loc[official, name].mean()
    return pd.Series(out, name="official uuid sort vs CrowdSelect")
