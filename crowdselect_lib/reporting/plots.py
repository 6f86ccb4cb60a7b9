"""Shared plot helpers: the one place that imports matplotlib (`pyplot`), saves figures (`save_figure`, PNG + PDF)
and fixes the look (colours per selection, readable ticks). Chapter figures that several notebooks draw live here
too; the paper's figures are in `reporting.figures`. Every function returns a matplotlib Figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..escaping import literal_figure_text

# One colour per kind of selection, the same in every chapter (Tableau 10).
COLORS = {"Base": "#7f7f7f", "Random": "#bcbd22", "Multi": "#d62728", "Difficulty": "#1f77b4",
          "Separability": "#ff7f0e", "Stability": "#2ca02c", "paper": "#9467bd"}
_CYCLE = ["#17becf", "#8c564b", "#e377c2", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5"]


def pyplot():
    """matplotlib.pyplot, imported on first use (inline in notebooks; matplotlib falls back to Agg headless)."""
    import matplotlib.pyplot as plt

    return plt


def color(label: str, i: int = 0) -> str:
    """Colour of a selection label ("Difficulty ↑" -> the Difficulty colour, "Difficulty ↓" a lighter shade of
    it); other labels cycle through the rest of the palette."""
    from matplotlib.colors import to_hex, to_rgb

    base = next((c for key, c in COLORS.items() if label.startswith(key)), _CYCLE[i % len(_CYCLE)])
    if "↓" in label:
        base = to_hex([0.45 * x + 0.55 for x in to_rgb(base)])
    return base


def save_figure(fig, directory: str | Path, name: str) -> list[Path]:
    """Save `fig` as <directory>/<name>.png (150 dpi) and .pdf; returns both paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = [d / f"{name}.png", d / f"{name}.pdf"]
    literal_figure_text(fig)   # names with "$" (models, students) print as written, whoever drew the figure
    for p in out:
        fig.savefig(p, bbox_inches="tight", dpi=150)
    return out


def no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def cluster_map(coords: np.ndarray, labels, title: str):
    """2-D t-SNE map coloured by label (cluster or topic)."""
    plt = pyplot()
    labels = pd.Series(np.asarray(labels)).astype(str)
    fig, ax = plt.subplots(figsize=(6, 5))
    for lab in sorted(labels.unique()):
        m = (labels == lab).to_numpy()
        ax.scatter(coords[m, 0], coords[m, 1], s=4, label=lab)
    ax.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title, fontsize=10)
    return literal_figure_text(fig)


def matrix_heatmap(mat: pd.DataFrame, title: str, fmt: str = ".2f", cmap: str = "viridis", label: str = "",
                   per_column: bool = False):
    """A labelled heatmap of a small matrix (Jaccard overlaps, weight sweeps). `per_column` colours each column
    on its own min-max scale (benchmarks with different ranges) while the cells show the raw values."""
    plt = pyplot()
    import seaborn as sns

    colours = mat
    if per_column:
        span = (mat.max() - mat.min()).replace(0, 1.0)
        colours = (mat - mat.min()) / span
    fig, ax = plt.subplots(figsize=(1.2 * mat.shape[1] + 4, 0.5 * mat.shape[0] + 2))
    sns.heatmap(colours, annot=mat.to_numpy(), fmt=fmt, cmap=cmap, ax=ax,
                cbar_kws={"label": label} if label else None)
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(title, fontsize=9, wrap=True)
    ax.set_xlabel("")
    ax.set_ylabel("")
    return literal_figure_text(fig)
