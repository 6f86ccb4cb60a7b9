"""Chapter 01's figure: the score distribution of every generator model, grouped by family, small to large."""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from ..escaping import literal_figure_text


def model_order(zoo) -> pd.DataFrame:
    """The model table ordered family by family (families by name, unknown-size models last), small to large."""
    m = zoo.models.assign(_unknown=zoo.models["size_b"].isna())
    return m.sort_values(["_unknown", "family", "size_b", "model"], kind="stable").drop(columns="_unknown")


def plot_scores_by_family(zoo, reward_model: str | None = None, title: str | None = None):
    """Box plot of S's columns (one reward model; white diamonds = means), families side by side, each family from
    its smallest model to its largest: a size effect inside families shows as boxes rising within a colour.
    More than 25 models are drawn horizontally, one labelled row per model."""
    import matplotlib.pyplot as plt

    rm = reward_model or zoo.default_reward_model
    s = zoo.scores(rm)
    order = model_order(zoo)
    fams = list(dict.fromkeys(order["family"]))
    colours = plt.get_cmap("tab10" if len(fams) <= 10 else "tab20")
    labels = [f"{m} ({x:g}B)" if x == x else f"{m} (size ?)" for m, x in zip(order["model"], order["size_b"])]
    horizontal = len(order) > 25
    size = (9.0, 0.24 * len(order) + 1.5) if horizontal else (max(8.0, 0.42 * len(order) + 2), 4.6)
    fig, ax = plt.subplots(figsize=size)
    box = ax.boxplot([s[m].to_numpy() for m in order["model"]], showfliers=False, patch_artist=True, widths=0.7,
                     orientation="horizontal" if horizontal else "vertical", showmeans=True,
                     medianprops={"color": "black"},
                     meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black", "markersize": 4})
    for patch, fam in zip(box["boxes"], order["family"]):
        patch.set_facecolor(colours(fams.index(fam) % colours.N))
        patch.set_alpha(0.75)
    ticks = np.arange(1, len(order) + 1)
    what, score = "generator model, grouped by family (small to large)", f"score: {rm}"
    if horizontal:
        ax.set_yticks(ticks, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_ylabel(what)
        ax.set_xlabel(score)
        ax.grid(axis="x", alpha=0.3)
    else:
        ax.set_xticks(ticks, labels, rotation=70, ha="right", fontsize=7)
        ax.set_xlabel(what)
        ax.set_ylabel(score, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    ax.set_title(textwrap.fill(title or f"{zoo.label}: scores per model", 70 if horizontal else 110), fontsize=10)
    literal_figure_text(fig).tight_layout()
    return fig
