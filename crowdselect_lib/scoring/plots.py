"""Chapter 02's figures (each returns a matplotlib Figure)."""
from __future__ import annotations

import pandas as pd

from ..escaping import literal_figure_text


def score_matrix(S: pd.DataFrame, title: str, n_rows: int = 40):
    """The score matrix S (instructions x models) of one reward model: its first `n_rows` instructions."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8))
    im = ax.imshow(S.iloc[:n_rows].T.to_numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="reward score")
    ax.set(xlabel=f"instruction (first {min(n_rows, len(S))})", ylabel="generator model", title=title)
    ax.set_yticks(range(S.shape[1]), S.columns, fontsize=6)
    literal_figure_text(fig).tight_layout()
    return fig


def rescored_vs_shipped(rows: pd.DataFrame, shipped: str, rescored_name: str, title: str):
    """Scatter of re-scored vs shipped scores over the verification sample (`steps.sample_check` rows), with the
    Spearman correlation in the legend."""
    import matplotlib.pyplot as plt

    rho = rows[shipped].corr(rows["rescored"], method="spearman")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(rows[shipped], rows["rescored"], s=14, alpha=0.8, label=f"{len(rows)} rows, Spearman {rho:.2f}")
    ax.set(xlabel=f"shipped score: {shipped}", ylabel=f"re-scored: {rescored_name}", title=title)
    ax.legend(loc="best", fontsize=8)
    literal_figure_text(fig).tight_layout()
    return fig
