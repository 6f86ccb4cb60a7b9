"""The paper's figures, drawn from a table's `render.comparison` frame (ours and the paper's values side by side)
and saved as PNG and PDF under ``figures/<run name>/`` (`save`; index in ``figures/README.md``).

- `figure3_bars`   Figure 3: per benchmark, bars of every selection for each student; ours and the paper's in
                   separate panels, Arena-Hard 95% intervals as error bars
- `figure4_sizes`  Figure 4 / Tables 7-8: score against the number of selected examples, ours and the paper's
- `weight_heatmap` the weight sweep of Tables 3, 14-16 (eq. 9) as a heatmap
- `paper_vs_ours`  every reproduced number against the paper's for the same cell, with the y = x line
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..escaping import literal_figure_text
from ..runs import repo_root
from . import plots
from .grid import cell_configs, cell_labels
from .registry import caption, table_spec
from .render import comparison, table_options


SCALE_TOP = {"MT-Bench": 10.0, "Arena-Hard": 100.0}   # the top of each benchmark's scale (a bar's axis)


def _split(c: pd.DataFrame) -> pd.DataFrame:
    """Add ``group`` and ``bench`` from rows named "<group> / <benchmark>"."""
    parts = c["row"].str.rsplit(" / ", n=1)
    return c.assign(group=parts.str[0], bench=parts.str[-1])


def figure3_bars(c: pd.DataFrame, title: str, benchmarks=("MT-Bench", "Arena-Hard")):
    """Figure 3 from a group-layout comparison (Tables 2, 9-13): one row of panels per benchmark, left ours,
    right the paper's; x = student (group), one bar per selection, error bars = the Arena-Hard interval."""
    plt = plots.pyplot()
    c = _split(c)
    sides = [s for s in ("ours", "paper") if c[s].notna().any()] or ["ours"]
    fig, axes = plt.subplots(len(benchmarks), len(sides), figsize=(6.5 * len(sides), 3.6 * len(benchmarks)),
                             squeeze=False)
    for i, bench in enumerate(benchmarks):
        for j, side in enumerate(sides):
            ax = axes[i][j]
            m = c[(c["bench"] == bench) & c[side].notna()]
            if m.empty:
                plots.no_data(ax, f"no {bench} scores ({side})")
                continue
            groups, methods = list(dict.fromkeys(m["group"])), list(dict.fromkeys(m["column"]))
            width = 0.8 / len(methods)
            for k, method in enumerate(methods):
                mm = m[m["column"] == method].set_index("group").reindex(groups)
                x = np.arange(len(groups)) + k * width - 0.4 + width / 2
                err = None
                if mm[f"{side}_lo"].notna().any():
                    err = np.vstack([-mm[f"{side}_lo"].fillna(0), mm[f"{side}_hi"].fillna(0)]).clip(min=0)
                ax.bar(x, mm[side].to_numpy(), width, yerr=err, capsize=2, label=method,
                       color=plots.color(method, k), edgecolor="white", linewidth=0.5)
            ax.set_xticks(range(len(groups)), [g.replace(" ≙ ", "\n≙ ") for g in groups], fontsize=8)
            ax.set_ylabel(f"{bench} ({'proxy judge' if side == 'ours' and 'demo' in title else side})", fontsize=9)
            hi = np.nanmax(m[side] + m[f"{side}_hi"].fillna(0))    # room for the error bars
            ax.set_ylim(0, max(1.05 * hi, SCALE_TOP.get(bench, 0)))  # bars from 0, on the benchmark's whole scale
            ax.set_title(f"{bench} · {side}", fontsize=9)
    legend = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(8, len(legend)), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    literal_figure_text(fig).tight_layout(rect=(0, 0.06, 1, 0.97))
    return fig


def figure4_sizes(c: pd.DataFrame, title: str, sizes: dict[str, float]):
    """Score against data size (size-layout comparison, Tables 7/8): one panel per benchmark, our line and the
    paper's; `sizes` maps a row label to its number of selected examples."""
    plt = plots.pyplot()
    benchmarks = list(dict.fromkeys(c["column"]))
    fig, axes = plt.subplots(1, max(1, len(benchmarks)), figsize=(5 * max(1, len(benchmarks)), 3.5), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        m = c[c["column"] == bench].assign(k=lambda d: d["row"].map(sizes)).sort_values("k")
        for side, style in (("ours", "o-"), ("paper", "s--")):
            mm = m[m[side].notna() & m["k"].notna()]
            if len(mm):
                ax.plot(mm["k"], mm[side], style, label=side, color=plots.COLORS["Difficulty" if side == "ours"
                                                                                 else "paper"])
        ax.set_xscale("log")
        ax.set_xlabel("selected examples (log scale)")
        ax.set_ylabel(bench)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    literal_figure_text(fig).tight_layout()
    return fig


def weight_heatmap(results: pd.DataFrame, title: str):
    """Weight sweep (Tables 3, 14-16): rows = weights (Difficulty, Separability, Stability), columns = benchmark."""
    plt = plots.pyplot()
    if results.empty:
        fig, ax = plt.subplots(figsize=(5, 3))
        plots.no_data(ax, "no weight-sweep scores yet")
        ax.set_title(title, fontsize=9)
        return fig
    wide = results.pivot_table(index="row", columns="column", values="value", sort=False)
    return plots.matrix_heatmap(wide, title, fmt=".2f", label="per-column scale",
                                per_column=True)


def paper_vs_ours(c: pd.DataFrame, title: str):
    """Scatter of every cell with both a reproduced and a paper value (y = x dashed), one colour per benchmark."""
    plt = plots.pyplot()
    both = _split(c[c["ours"].notna() & c["paper"].notna()])
    bench = np.where(both["row"].str.contains(" / "), both["bench"], both["column"])
    fig, ax = plt.subplots(figsize=(5, 5))
    if both.empty:
        plots.no_data(ax, "no cell has both a reproduced and a paper value")
    for i, b in enumerate(dict.fromkeys(bench)):
        m = both[bench == b]
        ax.scatter(m["paper"], m["ours"], s=20, label=b, color=plots.color(b, i))
    if len(both):
        lo, hi = float(min(both["paper"].min(), both["ours"].min())), float(max(both["paper"].max(), both["ours"].max()))
        ax.plot([lo, hi], [lo, hi], color="gray", linestyle="--", linewidth=1)
        ax.legend(fontsize=8)
    ax.set_xlabel("paper")
    ax.set_ylabel("reproduced")
    ax.set_title(title, fontsize=9)
    return literal_figure_text(fig)


def figures_dir(cfg) -> Path:
    """``<tables.figures_dir>/<run name>/``; by default ``figures/`` beside the runs root (the repository's
    ``figures/`` for runs under ``runs/``)."""
    root = Path(cfg.run.root)
    root = root if root.is_absolute() else repo_root() / root
    d = Path(cfg.tables.figures_dir) if cfg.tables.figures_dir else root.parent / "figures"
    return (d if d.is_absolute() else repo_root() / d) / cfg.run.name


def save(fig, cfg, name: str) -> list[Path]:
    """Write `fig` as PNG and PDF under `figures_dir(cfg)` and close it (a notebook shows it once, inline)."""
    out = plots.save_figure(fig, figures_dir(cfg), name)
    return out


def table_figure(cfg, table: str, results: pd.DataFrame, paper: pd.DataFrame):
    """The figure of one rendered table, saved as PNG + PDF (``figures/<run>/table<NN>``): Figure 3 bars for a
    group table, the Figure 4 curve for a data-size table, the heatmap for a weight sweep. Closed after saving,
    so a notebook shows it once (as the cell's value)."""
    spec = table_spec(table)
    c = comparison(results, paper, spec, table_options(cfg, table)["paper_groups"])
    title = caption(cfg, f"Table {spec.id}: ours vs the paper")
    if spec.layout == "group":
        group = c["row"].str.rsplit(" / ", n=1).str[0]
        ours, cols = set(group[c["ours"].notna()]), set(c.loc[c["ours"].notna(), "column"])
        if ours:   # the students and selections we judged, on both sides
            c = c[group.isin(ours) & c["column"].isin(cols)]
        fig = figure3_bars(c, title)
    elif spec.layout == "size":
        labels = cell_labels(cfg)
        sizes = {labels[n]: cc.selection.k for n, cc in cell_configs(cfg).items()}
        sizes.update({r: float(r[:-1]) * 1000 for r in c["row"] if r.endswith("k") and r[:-1].replace(".", "").isdigit()})
        fig = figure4_sizes(c, title, sizes)
    else:
        fig = weight_heatmap(results, caption(cfg, f"Table {spec.id}: CrowdSelect weights (ours)"))
    save(fig, cfg, spec.params_name)
    plots.pyplot().close(fig)
    return literal_figure_text(fig)


def show_figures(cfg, results: dict[str, pd.DataFrame], paper: pd.DataFrame) -> list[Path]:
    """`table_figure` of every rendered table, each displayed once in a notebook; returns the saved PNG paths."""
    try:
        from IPython.display import display
    except ImportError:   # pragma: no cover
        display = None
    out = []
    for table, res in results.items():
        fig = table_figure(cfg, table, res, paper)
        if display is not None:
            display(fig)
        out.append(figures_dir(cfg) / f"{table_spec(table).params_name}.png")
    return out
