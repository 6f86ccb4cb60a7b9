"""Chapter 05's figures (each returns a matplotlib Figure)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..escaping import literal_figure_text
from ..metrics import METRICS
from .score import normalize


def plot_normalisation(metrics: pd.DataFrame, title: str):
    """Each metric against its rho (eqs. 6-8): increasing curves from 0 to 1, i.e. percentile ranks."""
    import matplotlib.pyplot as plt

    rho = normalize(metrics[METRICS])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, m in zip(axes, METRICS):
        order = np.argsort(metrics[m].to_numpy(), kind="stable")
        ax.plot(metrics[m].to_numpy()[order], rho[m].to_numpy()[order], lw=1.5)
        ax.set_xlabel(f"{m} (raw)")
        ax.set_ylabel(f"rho_{m} (eq. 8)")
        ax.set_ylim(-0.03, 1.03)
    fig.suptitle(title, fontsize=11)
    literal_figure_text(fig).tight_layout()
    return fig


def plot_quotas(quotas: pd.DataFrame, title: str):
    """Per cluster: instructions taken by the top-k without quota vs with CrowdSelect's equal quota."""
    import matplotlib.pyplot as plt

    from ..reporting.plots import color

    x = np.arange(len(quotas))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(x - 0.2, quotas["top_k_without_quota"], 0.4, label="top-k by score, no quota", color="tab:gray")
    ax.bar(x + 0.2, quotas["taken"], 0.4, label="CrowdSelect (equal quota per cluster)", color=color("Multi"))
    ax.plot(x, quotas["quota"], "k_", ms=18, mew=2, label="quota k / C")
    ax.set_xticks(x, quotas.index.astype(str))
    ax.set_xlabel("cluster (chapter 04)")
    ax.set_ylabel("instructions selected")
    ax.set_ylim(0, 1.4 * max(quotas["top_k_without_quota"].max(), quotas["taken"].max()))
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    ax.set_title(title, fontsize=11)
    literal_figure_text(fig).tight_layout()
    return fig


def plot_profiles(profiles: pd.DataFrame, title: str):
    """Mean percentile rank of each metric inside each subset (0.5 = the zoo's median), bars from 0; with
    `subset_profiles`' ``attrs``, a 95% interval (± 1.96 standard errors) on each bar and n under each subset."""
    import matplotlib.pyplot as plt

    from ..reporting.plots import color   # each metric in its selection colour, as in every chapter

    x = np.arange(len(profiles))
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(profiles)), 3.8))
    se, n = profiles.attrs.get("se"), profiles.attrs.get("n", {})
    for i, m in enumerate(METRICS):
        err = None if se is None else 1.96 * se.loc[profiles.index, m].fillna(0).to_numpy()
        ax.bar(x + (i - 1) * 0.27, profiles[m], 0.27, label=m, color=color(m.capitalize()), yerr=err,
               error_kw={"lw": 0.8, "capsize": 2})
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, [f"{s}\n(n={n[s]})" if s in n else s for s in profiles.index], rotation=25, ha="right")
    ax.set_ylim(0, 1.15)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("mean percentile rank in the zoo")
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    ax.set_title(title, fontsize=11)
    literal_figure_text(fig).tight_layout()
    return fig


def plot_jaccard(jaccard: pd.DataFrame, title: str):
    """Pairwise Jaccard overlap of the subsets, annotated."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.8 * len(jaccard) + 3, 0.6 * len(jaccard) + 2))
    im = ax.imshow(jaccard.to_numpy(), vmin=0, vmax=1, cmap="viridis")
    for i in range(len(jaccard)):
        for j in range(len(jaccard)):
            v = jaccard.iat[i, j]
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="w" if v < 0.6 else "k")
    ax.set_xticks(range(len(jaccard)), jaccard.columns, rotation=35, ha="right")
    ax.set_yticks(range(len(jaccard)), jaccard.index)
    fig.colorbar(im, ax=ax, label="Jaccard overlap")
    ax.set_title(title, fontsize=11)
    literal_figure_text(fig).tight_layout()
    return fig
