"""The three base metrics of CrowdSelect (paper §3.2, eqs. 3-5), vectorised over instructions (chapter 03).

Input: the dense score matrix S (n_instructions x n_models, `Zoo.scores()`), and `families`, a mapping
model -> (family, size_b). Output: one row per instruction with

- ``difficulty``   = -mean_j S_ij                                   (eq. 3)
- ``separability`` = var_j S_ij, population variance (ddof=0)        (eq. 4)
- ``stability``    = mean over families f of Spearman(rank of S_i within f, rank of size within f)  (eq. 5)

Stability ranks scores with rank 1 = highest score and sizes with rank 1 = largest model, so +1 means
"bigger models of the family answered better". As in the official code, every family with at least two
distinct known sizes enters the mean (the paper's text says five families; the code uses all six);
`stability_families` restricts it. Models with unknown size (NaN, e.g. closed models) are left out of
Stability only: a family correlation needs known sizes.

Ties (`metrics.stability_ties`). "official" (the paper's params): the official code ranks by the reversed ascending
argsort over columns ordered small to large, so a tie goes to the larger model and a constant family scores +1.
"average" (ours): tied scores get their average rank, as `scipy.stats.rankdata(method="average")`, and Spearman
is the Pearson correlation of the ranks. A family whose scores are all equal for an instruction has an undefined
correlation; it is defined as 0 and still counted in the mean. On untied data both equal the official per-row
result: 1 - 6 sum d^2 / (m (m^2 - 1)).

Exactness: Stability takes few distinct values (rationals with denominator |F| lcm_f m_f(m_f^2 - 1)/3 on untied
rows), and eq. 8 maps ties to one quantile, so a last-bit difference between two equal values would move the
CrowdSelect score by up to ~0.03. Ranks are therefore computed in integers (doubled average ranks), an untied
row's mean is formed as one integer over the common denominator and divided once, and the columns are put in
model-name order first: every metric is bit-identical under any permutation of model columns or rows.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from .escaping import literal_figure_text
from .runs import Step, check_name, slug, threads, write_parquet
from .zoo import default_reward_model, load_run_zoo, zoo_reward_models, zoo_step

METRICS = ["difficulty", "separability", "stability"]
METRICS_VERSION = "2"
CHUNK_ROWS = 1 << 17   # rows per block of `base_metrics` (131,072 x 19 floats = 20 MB)


def stability_families(families: Mapping[str, tuple[str, float]], models: list[str] | None = None,
                       only: list[str] | None = None) -> dict[str, list[str]]:
    """family -> its models with known size, for families with >= 2 distinct sizes (in `only` if given);
    families in name order, models in name order."""
    models = sorted(families if models is None else models)
    groups: dict[str, list[str]] = {}
    for m in models:
        fam, size = families[m]
        if size is not None and not np.isnan(size):
            groups.setdefault(fam, []).append(m)
    if only is not None:
        unknown = sorted(set(only) - {families[m][0] for m in models})
        if unknown:
            raise ValueError(f"unknown family(ies) {unknown} in stability_families")
        groups = {f: ms for f, ms in groups.items() if f in only}
    return {f: groups[f] for f in sorted(groups) if len({families[m][1] for m in groups[f]}) >= 2}


def _centred_doubled_ranks(block: np.ndarray, sizes: np.ndarray | None = None) -> np.ndarray:
    """2 x average rank (1 = highest) minus (k + 1), per row, as small integers laid out (k, n): the doubled rank is
    2 + sum over the others of 2 [x_l > x_j] + [x_l = x_j]. With `sizes` (the official tie rule), a tie goes to the
    larger model (equal sizes: the later column), so the ranks are untied. Families are small (k <= ~10):
    k(k-1)/2 vectorised comparisons added as booleans into int16 rows (a quarter of int64's memory traffic)."""
    n, k = block.shape
    r = np.full((k, n), 1 - k, dtype=np.int16)                # 2 - (k + 1): centred, so a row sums to 0
    for j, m in combinations(range(k), 2):
        x, y = block[:, m], block[:, j]
        if sizes is None:
            gt, ge = x > y, x >= y                             # 2 [x > y] + [x = y] = [x > y] + [x >= y]
            lt, le = ~ge, ~gt
        else:                                                  # the larger model wins a tie
            gt = ge = (x >= y) if sizes[m] >= sizes[j] else (x > y)
            lt = le = ~gt
        r[j] += gt
        r[j] += ge
        r[m] += lt
        r[m] += le
    return r


def _family_terms(block: np.ndarray, sizes: np.ndarray, ties: str = "average"):
    """For one family (n, k): the integer numerator A of Spearman, the exact denominator d when the row is untied,
    the float correlation, and the untied-row mask. Spearman = A / sqrt(B C) on centred doubled ranks."""
    k = block.shape[1]
    r = _centred_doubled_ranks(block, sizes if ties == "official" else None)
    q = np.rint(2 * stats.rankdata(-sizes, method="average")).astype(np.int64) - (k + 1)   # 1 = largest model
    a, b = np.zeros(len(block), dtype=np.int64), np.zeros(len(block), dtype=np.int64)
    for rj, qj in zip(r, q):                                  # integer sums: exact
        rj = rj.astype(np.int32)
        a += rj * int(qj)
        b += rj * rj
    c = int(q @ q)
    rho = np.divide(a, np.sqrt(b.astype(float) * c), out=np.zeros(len(a)), where=b > 0)   # constant family -> 0
    d = k * (k * k - 1) // 3                                              # B = C = d without ties
    untied = (b == d) & (c == d)
    return a, d, rho, untied


def _stability(values: np.ndarray, groups: list[tuple[np.ndarray, np.ndarray]], ties: str = "average") -> np.ndarray:
    """Mean family Spearman per row; untied rows exactly (one integer over the common denominator)."""
    terms = [_family_terms(values[:, idx], sizes, ties) for idx, sizes in groups]
    lcm = math.lcm(*(d for _, d, _, _ in terms))
    num = sum(a * (lcm // d) for a, d, _, _ in terms)                    # int64: |num| <= |F| lcm
    exact = np.logical_and.reduce([u for _, _, _, u in terms])
    approx = sum(rho for _, _, rho, _ in terms)                          # families in name order
    return np.where(exact, num / (lcm * len(terms)), approx / len(terms))


def base_metrics(scores: pd.DataFrame, families: Mapping[str, tuple[str, float]],
                 stability_families_only: list[str] | None = None, ties: str = "average") -> pd.DataFrame:
    """Difficulty, Separability and Stability per instruction (eqs. 3-5).

    ties (`metrics.stability_ties`): "average" ranks (a constant family = 0) or "official" (the official
    argsort: a tie goes to the larger model, so a constant family = +1); equal on untied rows.

    scores: DataFrame (index uuid, columns = models), finite. families: model -> (family, size_b).
    Returns a DataFrame indexed like `scores` with columns difficulty, separability, stability;
    ``.attrs["stability_families"]`` lists the families that entered Stability.
    """
    missing = [m for m in scores.columns if m not in families]
    if missing:
        raise KeyError(f"model(s) without a family entry: {missing}")
    names = sorted(scores.columns)                                        # column order cannot matter
    perm = scores.columns.get_indexer(names)
    values = scores.to_numpy(dtype=float)                                 # a view: no copy of the whole matrix
    groups = stability_families(families, names, stability_families_only)
    if not groups:
        raise ValueError("no family has two or more distinct known sizes: Stability is undefined")
    if ties not in ("average", "official"):
        raise ValueError(f"unknown Stability tie rule {ties!r}; choose 'average' or 'official'")
    col = {m: j for j, m in enumerate(names)}
    fams = [(np.array([col[m] for m in ms]), np.array([families[m][1] for m in ms], dtype=float))
            for ms in groups.values()]
    n = len(values)
    out = {m: np.empty(n) for m in METRICS}

    def chunk(a: int) -> None:                   # rows are independent: chunks bound memory and stay in cache
        block = np.asfortranarray(values[a:a + CHUNK_ROWS][:, perm])      # model-name order, column-major
        bad = ~np.isfinite(block)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            what = "NaN" if np.isnan(block[i, j]) else "infinite"
            raise ValueError(f"{what} score for uuid {scores.index[a + i]!r} model {names[j]!r}")
        out["difficulty"][a:a + len(block)] = -block.mean(axis=1)
        out["separability"][a:a + len(block)] = block.var(axis=1)
        out["stability"][a:a + len(block)] = _stability(block, fams, ties)

    threads(chunk, range(0, max(n, 1), CHUNK_ROWS))
    out = pd.DataFrame(out, index=scores.index)
    if not np.isfinite(out["separability"]).all():
        u = out.index[~np.isfinite(out["separability"])][0]
        raise ValueError(f"the variance of uuid {u!r}'s scores overflows (eq. 4): rescale the scores")
    out.attrs["stability_families"] = sorted(groups)
    return out


def streamed_metrics(blocks, families: Mapping[str, tuple[str, float]],
                     stability_families_only: list[str] | None = None, ties: str = "average") -> pd.DataFrame:
    """`base_metrics` over an iterable of score blocks (a crowd larger than memory, `zoo.ScoreStream`): eqs. 3-5
    read one instruction's row of S at a time, so the result equals `base_metrics` of the whole matrix row for row."""
    parts = [base_metrics(b, families, stability_families_only, ties) for b in blocks]
    if not parts:
        raise ValueError("the crowd has no complete instruction: no metrics to compute")
    out = pd.concat(parts)
    if out.index.has_duplicates:
        raise ValueError(f"uuid {out.index[out.index.duplicated()][0]!r} appears in two blocks: a duplicate "
                         "(uuid, model) row")
    out.attrs["stability_families"] = parts[0].attrs["stability_families"]
    return out


def base_metrics_reference(scores: pd.DataFrame, families: Mapping[str, tuple[str, float]]) -> pd.DataFrame:
    """Slow per-row reference of the official code (a Python loop, `spearmanr` per family per row, ranks
    by argsort so ties are broken by position). For tests and `benchmarks/` only."""
    groups = stability_families(families, list(scores.columns))
    ordered = {f: sorted(ms, key=lambda m: families[m][1]) for f, ms in groups.items()}  # small -> large
    rows = []
    for _, row in scores.iterrows():
        corrs = []
        for ms in ordered.values():
            x = row[ms].to_numpy(dtype=float)
            score_rank = np.argsort(np.argsort(x)[::-1]) + 1      # 1 = highest score
            corrs.append(stats.spearmanr(score_rank, np.arange(len(ms), 0, -1))[0])   # 1 = largest model
        s = row.to_numpy(dtype=float)
        rows.append((-s.mean(), s.var(), float(np.mean(corrs))))
    return pd.DataFrame(rows, index=scores.index, columns=METRICS)


# ------------------------------------------------------------------ reading the metrics (chapter 03)

def metric_correlations(metrics: pd.DataFrame, method: str = "spearman") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Correlation matrix of the metrics and its p-values (the paper's correlation figure)."""
    cols = list(metrics.columns)
    corr = pd.DataFrame(np.eye(len(cols)), index=cols, columns=cols)
    pval = pd.DataFrame(np.zeros((len(cols), len(cols))), index=cols, columns=cols)
    test = stats.spearmanr if method == "spearman" else stats.pearsonr
    for a, b in combinations(range(len(cols)), 2):
        r, p = test(metrics[cols[a]], metrics[cols[b]])
        corr.iloc[a, b] = corr.iloc[b, a] = r
        pval.iloc[a, b] = pval.iloc[b, a] = p
    return corr, pval


PLANTED = {"difficulty": "difficulty", "separability": "spread", "stability": "stability"}


def truth_recovery(metrics: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Demo zoo only: Spearman between each metric and the planted value it should recover."""
    t = truth.reindex(metrics.index)
    rows = [{"metric": m, "planted": p, "spearman": stats.spearmanr(metrics[m], t[p])[0]} for m, p in PLANTED.items()]
    return pd.DataFrame(rows).set_index("metric")


def correlation_recovery(metrics: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Demo zoo only: each pair's Spearman correlation among the planted values and among the metrics."""
    t = truth.reindex(metrics.index)
    rows = [{"pair": f"{a} / {b}", "planted": stats.spearmanr(t[PLANTED[a]], t[PLANTED[b]])[0],
             "recovered": stats.spearmanr(metrics[a], metrics[b])[0]} for a, b in combinations(METRICS, 2)]
    return pd.DataFrame(rows).set_index("pair")


def extreme_examples(metrics: pd.DataFrame, instructions: pd.DataFrame, metric: str, n: int = 3) -> pd.DataFrame:
    """The `n` highest and `n` lowest instructions by `metric`, with their text."""
    text = instructions.set_index("uuid")["instruction"]
    ranked = metrics[metric].sort_values(ascending=False, kind="stable")
    picked = pd.concat([ranked.head(n), ranked.tail(n)])
    return pd.DataFrame({"end": ["top"] * n + ["bottom"] * n, metric: picked.to_numpy(),
                         "instruction": text.reindex(picked.index).to_numpy()}, index=picked.index)


def stability_readings(scores: pd.DataFrame, families: Mapping[str, tuple[str, float]],
                       only: list[str] | None = None, k: int = 100) -> pd.DataFrame:
    """Stability under both tie rules (`metrics.stability_ties`) side by side: the mean, the rows where the rules
    differ, and how many of the top-k by Stability the two share. On float scores ties are rare; on integer or
    coarse scores (a judge's grades) a constant family reads +1 (official) against 0 (average ranks)."""
    a, o = (base_metrics(scores, families, only, t)["stability"] for t in ("average", "official"))
    k = min(k, len(a))
    shared = len(set(a.nlargest(k).index) & set(o.nlargest(k).index))
    return pd.DataFrame({"mean stability": [a.mean(), o.mean()], "rows that differ": [int((a != o).sum())] * 2,
                         f"top-{k} shared": [shared] * 2}, index=pd.Index(["average (ours)", "official"], name="ties"))


def reward_model_agreement(by_rm: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Spearman agreement of each metric between every pair of reward models (cf. Table 18)."""
    rows = [{"pair": f"{a} vs {b}",
             **{m: stats.spearmanr(by_rm[a][m], by_rm[b][m].reindex(by_rm[a].index))[0] for m in METRICS}}
            for a, b in combinations(by_rm, 2)]
    return pd.DataFrame(rows, columns=["pair", *METRICS]).set_index("pair")


# ------------------------------------------------------------------ step cache

def metrics_step(run, cfg, reward_model: str | None = None) -> Step:
    """Key of the metrics of one reward model (default: `metrics.reward_model`, else the zoo's default).
    A reward model the zoo does not carry is read from chapter 02's scores (`scoring.scores_step`)."""
    rm = reward_model or default_reward_model(cfg)
    inputs = {"zoo": zoo_step(run, cfg)}
    if rm not in zoo_reward_models(cfg):
        from . import scoring   # only for re-scored zoos (chapter 02)

        inputs["scores"] = scoring.scores_step(run, cfg, rm)
    settings = {"reward_model": rm, "stability_families": cfg.metrics.stability_families,
                "stability_ties": cfg.metrics.stability_ties}
    return Step(run.dir, "metrics", check_name(slug(rm), "reward model"), settings, inputs, METRICS_VERSION,
                "crowdselect_lib.metrics")


def _scored_zoo(run, cfg, st: Step, rm: str):
    zoo = load_run_zoo(run, cfg)
    if "scores" not in st.inputs:
        return zoo
    from . import scoring

    sc = scoring.scores_step(run, cfg, rm)
    if not sc.done:
        raise FileNotFoundError(f"reward model {rm!r} is not a column of the zoo and its scores (step "
                                f"{sc.label} {sc.key}) are not done: run chapter 02 (reward scoring) first")
    return scoring.attach_scores(zoo, pd.read_parquet(sc.dir / "scores.parquet"), rm)


def load_run_metrics(run, cfg, reward_model: str | None = None) -> pd.DataFrame:
    """The base metrics of the run's zoo for one reward model: read when done, else computed (chapter 03)."""
    st = metrics_step(run, cfg, reward_model).announce()
    rm = st.settings["reward_model"]
    if st.done:
        out = pd.read_parquet(st.dir / "metrics.parquet")
    else:
        zoo = _scored_zoo(run, cfg, st, rm)
        out = base_metrics(zoo.scores(rm), zoo.families(), cfg.metrics.stability_families, cfg.metrics.stability_ties)
        write_parquet(out, st.path("metrics.parquet"))
        st.finish(rows=len(out), stability_families=out.attrs["stability_families"])
    out.attrs["stability_families"] = st.manifest()["stability_families"]
    out.attrs["reward_model"] = rm
    return out


# ------------------------------------------------------------------ figures (chapter 03)

def plot_distributions(metrics: pd.DataFrame, title: str):
    """Histogram of each metric (eqs. 3-5), labelled axes."""
    import matplotlib.pyplot as plt

    from .reporting.plots import color   # each metric in its selection colour, as in every chapter

    fig, axes = plt.subplots(1, len(METRICS), figsize=(12, 3.4))
    for ax, col, eq in zip(axes, METRICS, ("eq. 3", "eq. 4", "eq. 5")):
        ax.hist(metrics[col], bins=50, color=color(col.capitalize()), alpha=0.85)
        ax.set_title(f"{col} ({eq})", fontsize=10)
        ax.set_xlabel(col)
        ax.set_ylabel("instructions")
    fig.suptitle(title, fontsize=11)
    literal_figure_text(fig).tight_layout()
    return fig


def plot_correlations(metrics: pd.DataFrame, title: str, truth: pd.DataFrame | None = None):
    """Spearman matrix of the metrics (p-values under each coefficient); with a demo `truth`, the planted values'
    matrix beside it, so the recovered correlations can be read against what was planted."""
    import matplotlib.pyplot as plt

    corr, pval = metric_correlations(metrics[METRICS])
    panels = [("recovered: metrics", corr, pval)]
    if truth is not None:
        t = truth.reindex(metrics.index)[[PLANTED[m] for m in METRICS]].set_axis(METRICS, axis=1)
        panels.insert(0, ("planted: truth table", *metric_correlations(t)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for n, (ax, (name, c, p)) in enumerate(zip(axes[0], panels)):
        im = ax.imshow(c.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
        for i in range(3):
            for j in range(3):
                text = f"{c.iat[i, j]:.2f}" + ("" if i == j else f"\n(p={p.iat[i, j]:.0e})")
                ax.text(j, i, text, ha="center", va="center", fontsize=9,
                        color="white" if abs(c.iat[i, j]) > 0.6 else "black")
        ax.set_xticks(range(3), METRICS, rotation=20)
        ax.set_yticks(range(3), METRICS if n == 0 else [])
        ax.set_title(name, fontsize=10)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="Spearman correlation")
    fig.suptitle(title, fontsize=11)
    return literal_figure_text(fig)


def plot_recovery(metrics: pd.DataFrame, truth: pd.DataFrame, title: str):
    """Demo zoo only: each metric against the planted value it should recover (a seeded sample of points)."""
    import matplotlib.pyplot as plt

    from .reporting.plots import color

    t = truth.reindex(metrics.index)
    rec = truth_recovery(metrics, truth)
    rows = np.random.default_rng(0).permutation(len(metrics))[:2000]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, m in zip(axes, METRICS):
        ax.scatter(t[PLANTED[m]].to_numpy()[rows], metrics[m].to_numpy()[rows], s=3, alpha=0.4,
                   color=color(m.capitalize()))
        ax.set_xlabel(f"planted {PLANTED[m]}")
        ax.set_ylabel(f"measured {m}")
        ax.set_title(f"Spearman {rec.loc[m, 'spearman']:.2f}", fontsize=10)
    fig.suptitle(title, fontsize=11)
    literal_figure_text(fig).tight_layout()
    return fig


def family_table(zoo, only: list[str] | None = None) -> pd.DataFrame:
    """One row per family: its models and sizes, and whether it enters Stability (eq. 5) and why not."""
    fam = zoo.families()
    enter = stability_families(fam, zoo.model_names, only)
    rows = []
    for f, g in zoo.models.groupby("family", sort=True):
        known = g["size_b"].dropna()
        why = ("enters" if f in enter else "not listed in metrics.stability_families" if only is not None and f not in only
               else "no known size" if known.empty else "one known size only" if known.nunique() < 2 else "")
        rows.append({"family": f, "models": len(g), "sizes_b": ", ".join(f"{x:g}" for x in sorted(known)) or "?",
                     "in_stability": f in enter, "why": why})
    return pd.DataFrame(rows).set_index("family").sort_values(["in_stability", "models"], ascending=[False, False])
