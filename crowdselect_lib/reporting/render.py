"""Rendering a table as the paper prints it, with our numbers beside the paper's (markdown, LaTeX, HTML).

The columns are the paper's; each paper row becomes up to five lines: ``ours``, ``vs Random`` and ``vs base`` (our
gain over Random and over the untouched student, its 95% paired-bootstrap interval and the verdict, when the RESULTS
carry them: `versus.add_verdicts`), ``paper`` and ``Δ`` (ours - paper, only where both exist). Arena-Hard cells carry their 95% interval as signed offsets, ``85.5 (-0.8, +1.1)``;
tables that print average answer tokens (7, 8, 14-16) add ``· 301 tok``. Best is bold and second underlined by
the paper's own rule for that table (`TableSpec.marking`), among ours and among the paper's values separately;
an anchor that is 50.0 by construction is never marked; tables whose marks the text lost are not marked. The
notes under each table list the paper's own notes for it (marking, anchors, inconsistencies, captions), the
values arXiv v1 prints differently, and what stands in for the paper's models and judge. Every text (labels,
captions, notes, cells) goes through the format's `escaping` helper, so names from params or data are inert.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..escaping import ESCAPE
from ..runs import write_text
from .grid import cell_labels, paper_groups
from .registry import TRAIN_METHOD_LABELS, demo_caption, TableSpec, table_caption, table_spec
from ..fidelity import reading_notes
from .results import gains, paper_notes

MISSING = "—"
VERSUS = {"vs_random": "vs Random", "vs_base": "vs base"}   # optional RESULTS columns (`versus.add_verdicts`)
DECIMALS = {"MT-Bench": 3, "Arena-Hard": 1}   # as the paper prints them
FORMATS = {"markdown": "md", "latex": "tex", "html": "html"}
_MARKUP = {"markdown": ("**{}**", "<u>{}</u>"), "latex": ("\\textbf{{{}}}", "\\underline{{{}}}"),
           "html": ("<b>{}</b>", "<u>{}</u>")}


def _mark_groups(c: pd.DataFrame, marking: str) -> pd.Series:
    """The group each cell is ranked in under the paper's rule (`TableSpec.marking`)."""
    if marking == "row":
        return c["row"]
    if marking == "column":
        return c["column"]
    bench = c["row"].str.rsplit(" / ", n=1).str[-1]           # block: one benchmark x one metric's ↓/↑ columns
    return bench + "|" + c["column"].str.replace(r" [↓↑]", "", regex=True)


def marks(values: pd.Series, groups: pd.Series, exclude: pd.Series) -> pd.Series:
    """1 = best, 2 = second (ties share a mark), 0 = neither, within each group; `exclude`d cells (anchors) are
    never ranked, and a group whose values are all equal marks nothing (no best among equals)."""
    v = values.where(~exclude.astype(bool))
    by = v.groupby(groups.to_numpy())
    rank = by.rank(ascending=False, method="dense").where(by.transform("nunique") > 1)
    return rank.where(rank <= 2, 0).fillna(0).astype(int)


def comparison(results: pd.DataFrame, paper: pd.DataFrame | None, spec: TableSpec,
               paper_groups: dict[str, str] | None = None) -> pd.DataFrame:
    """Long frame over the union of our and the paper's cells of `spec` (the paper's order first): row, column,
    ours/paper value, interval offsets (``*_lo``, ``*_hi``), tokens, anchor, mark, and ``diff`` = ours - paper.
    `paper_groups` maps one of our group labels to the paper's group it sits beside (the paper's row is then
    shown under our label, e.g. "SmolLM2-135M-Instruct ≙ Llama-3.2-3B-Instruct")."""
    cols = ["value", "ci_low", "ci_high", "avg_tokens", "anchor"]
    names = {"value": "", "ci_low": "_lo", "ci_high": "_hi", "avg_tokens": "_tok", "anchor": "_anchor"}
    p = paper[paper["table"] == spec.id] if paper is not None else None
    if p is None or p.empty:
        p = pd.DataFrame({c: pd.Series(dtype=float) for c in ["row", "column"] + cols}).astype({"row": str,
                                                                                               "column": str})
    p = p[["row", "column"] + cols].copy()
    ours = results[["row", "column"] + cols + [c for c in VERSUS if c in results.columns]].copy()
    for ours_group, paper_group in (paper_groups or {}).items():
        if ours_group == paper_group:
            continue
        joined = f"{ours_group} ≙ {paper_group}"
        for frame, g in ((p, paper_group), (ours, ours_group)):
            hit = frame["row"].str.startswith(g + " / ") | (frame["row"] == g)
            frame.loc[hit, "row"] = joined + frame.loc[hit, "row"].str[len(g):]
    p = p.rename(columns={c: "paper" + names[c] for c in cols})
    ours = ours.rename(columns={c: "ours" + names[c] for c in cols})
    r = p.merge(ours, on=["row", "column"], how="outer", sort=False)
    r["row"] = pd.Categorical(r["row"], list(dict.fromkeys(list(p["row"]) + list(ours["row"]))))
    r["column"] = pd.Categorical(r["column"], list(dict.fromkeys(list(p["column"]) + list(ours["column"]))))
    r = r.sort_values(["row", "column"]).astype({"row": str, "column": str}).reset_index(drop=True)
    for who in ("ours", "paper"):
        r[f"{who}_anchor"] = r[f"{who}_anchor"].astype("boolean").fillna(False).astype(bool)
        r[f"{who}_mark"] = (marks(r[who], _mark_groups(r, spec.marking), r[f"{who}_anchor"]) if spec.marking
                            else 0)
    r["diff"] = r["ours"] - r["paper"]
    for c in VERSUS:
        r[c] = r[c].fillna("") if c in r else ""
    return r


def _decimals(row: str, col: str) -> int:
    return next((d for name, d in DECIMALS.items() if name in row or name in col), 2)


def _cell_text(v, lo, hi, tok, decimals: int, tokens: bool) -> str:
    if pd.isna(v):
        return MISSING
    text = f"{v:.{decimals}f}"
    if not pd.isna(lo) and not pd.isna(hi):
        text += f" ({lo:+.1f}, {hi:+.1f})"
    if tokens and not pd.isna(tok):
        text += f" · {tok:.0f} tok"
    return text


def _lines(c: pd.DataFrame, spec: TableSpec, ours_name: str, fmt: str, paper_only: bool = True,
           diff: bool = True) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Header columns and body lines ``(label, cells)``: per paper row its ours / paper / Δ lines (rows only the
    paper has are left out when not `paper_only`, e.g. the demo's; no Δ line when not `diff`: ours and the
    paper's on different scales, such as the proxy judge's)."""
    if not paper_only and c["ours"].notna().any():
        c = c[c.groupby("row")["ours"].transform(lambda x: x.notna().any())]
    best, second = _MARKUP[fmt]
    esc = ESCAPE[fmt]
    columns = list(dict.fromkeys(c["column"]))
    cell = {(x.row, x.column): x for x in c.itertuples()}
    body = []
    for row in dict.fromkeys(c["row"]):
        got = [cell.get((row, col)) for col in columns]
        lines = [("ours", ours_name), *VERSUS.items(), ("paper", "paper")] + ([("diff", "Δ")] if diff else [])
        for who, label in lines:
            if who in VERSUS:                             # the row against Random / base: gain [95%] verdict
                texts = [getattr(x, who) or MISSING if x is not None else MISSING for x in got]
                if any(t != MISSING for t in texts):
                    body.append((f"{row} · {label}", texts))
                continue
            vals = [getattr(x, who) if x is not None else np.nan for x in got]
            if all(pd.isna(v) for v in vals) and who != "ours":
                continue
            if who == "ours" and all(pd.isna(v) for v in vals) and any(
                    x is not None and not pd.isna(x.paper) for x in got):
                continue                                  # a paper-only row: show its paper line alone
            texts = []
            for x, col, v in zip(got, columns, vals):
                d = _decimals(row, col)
                if who == "diff":
                    texts.append(esc(MISSING if pd.isna(v) else f"{v:+.{d}f}"))
                    continue
                t = esc(_cell_text(v, getattr(x, f"{who}_lo", np.nan) if x is not None else np.nan,
                               getattr(x, f"{who}_hi", np.nan) if x is not None else np.nan,
                               getattr(x, f"{who}_tok", np.nan) if x is not None else np.nan, d, spec.tokens))
                m = getattr(x, f"{who}_mark", 0) if x is not None else 0
                texts.append(best.format(t) if m == 1 else second.format(t) if m == 2 else t)
            body.append((f"{row} · {label}", texts))
    return columns, body


def notes_text(spec: TableSpec, paper_v1: pd.DataFrame | None = None, *, offline_demo: str | None = None,
               paper_groups: dict[str, str] | None = None) -> list[str]:
    """The notes printed under a table: the paper's own (``paper_notes.csv``), arXiv v1's differing values, and
    the stand-ins of this run (`offline_demo`: the demo's caption, `registry.demo_caption`)."""
    out = []
    if offline_demo:
        out.append(f"ours: {offline_demo}; the proxy judge scores embedding similarity to reference answers, so "
                   "'MT-Bench'/'Arena-Hard' here are stand-ins, comparable only within this table.")
    for ours_group, paper_group in (paper_groups or {}).items():
        if ours_group != paper_group:
            out.append(f"rows '{ours_group} ≙ {paper_group}': our {ours_group} set beside the paper's "
                       f"{paper_group} (a stand-in, not the same model).")
    for n in paper_notes(spec.id).itertuples():
        out.append(f"{n.kind}: {n.note}")
    if paper_v1 is not None:
        v1 = paper_v1[(paper_v1["table"] == spec.id) & (paper_v1["version"] == "v1")]
        for x in v1.itertuples():
            out.append(f"arXiv v1 prints {x.value:g} for {x.row} / {x.column} (this text: see the paper line).")
    return out


def render(results: pd.DataFrame, paper: pd.DataFrame | None, spec: TableSpec, *, fmt: str = "markdown",
           caption_text: str = "", notes: list[str] | None = None, paper_groups: dict[str, str] | None = None,
           ours_name: str = "ours", paper_only: bool = True, diff: bool = True) -> str:
    """One table in `fmt` (markdown | latex | html), laid out as the module docstring says (`diff`: the Δ lines)."""
    if fmt not in _MARKUP:
        raise ValueError(f"unknown format {fmt!r}; choose markdown, latex or html")
    c = comparison(results, paper, spec, paper_groups)
    columns, body = _lines(c, spec, ours_name, fmt, paper_only, diff) if len(c) else ([], [])
    notes = notes or []
    if not body:
        body_note = "No judged scores and no paper numbers for this table."
        notes = [body_note] + notes
    esc = ESCAPE[fmt]
    if fmt == "markdown":
        lines = [f"**{esc(caption_text)}**", ""] if caption_text else []
        if body:
            lines += ["| | " + " | ".join(esc(x) for x in columns) + " |", "|---|" + "---:|" * len(columns)]
            lines += ["| " + esc(label) + " | " + " | ".join(v) + " |" for label, v in body]
        lines += [""] + [f"- {esc(n)}" for n in notes] if notes else []
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        lines = ["\\begin{table}[t]", "\\centering"] + ([f"\\caption{{{esc(caption_text)}}}"] if caption_text else [])
        if body:
            lines += ["\\begin{tabular}{l" + "r" * len(columns) + "}", "\\toprule",
                      " & " + " & ".join(esc(x) for x in columns) + " \\\\", "\\midrule"]
            lines += [esc(label) + " & " + " & ".join(vals) + " \\\\" for label, vals in body]
            lines += ["\\bottomrule", "\\end{tabular}"]
        lines += ["\\end{table}"] + [f"% {esc(n)}" for n in notes]
        return "\n".join(lines) + "\n"
    lines = ["<table>"] + ([f"<caption>{esc(caption_text)}</caption>"] if caption_text else [])
    if body:
        lines.append("<tr><th></th>" + "".join(f"<th>{esc(x)}</th>" for x in columns) + "</tr>")
        lines += ["<tr><td>" + esc(label) + "</td>" + "".join(f"<td>{v}</td>" for v in vals) + "</tr>"
                  for label, vals in body]
    lines.append("</table>")
    lines += ["<ul>"] + [f"<li>{esc(n)}</li>" for n in notes] + ["</ul>"] if notes else []
    return "\n".join(lines) + "\n"


def save_table(results: pd.DataFrame, paper: pd.DataFrame | None, spec: TableSpec, directory: str | Path,
               formats=("markdown", "latex", "html"), **kwargs) -> list[Path]:
    """Write ``tableNN.md/.tex/.html`` and the RESULTS as ``tableNN.csv`` under `directory`."""
    d = Path(directory)
    out = []
    for f in formats:
        out.append(write_text(render(results, paper, spec, fmt=f, **kwargs), d / f"{spec.params_name}.{FORMATS[f]}"))
    out.append(write_text(results.to_csv(index=False), d / f"{spec.params_name}.csv"))
    return out


def _groups(cfg, spec: TableSpec) -> dict[str, str]:
    """Our group label -> the paper's group it sits beside (only where they differ)."""
    if spec.group_by == "train_method":
        return {}
    method = cfg.tables.train_method or spec.train_method
    suffix = "" if method == spec.train_method else f" · {TRAIN_METHOD_LABELS.get(method, method)}"
    labels, paper = cell_labels(cfg), paper_groups(cfg)
    return {labels[c] + suffix: paper[c] for c in labels if labels[c] + suffix != paper[c]}


def table_options(cfg, table: str, paper_v1: pd.DataFrame | None = None, results: pd.DataFrame | None = None) -> dict:
    """Caption, notes, group pairing and the name of our line for `render` / `save_table` of one table; a
    stand-in benchmark (packaged prompts instead of MT-Bench/Arena-Hard) names our line and gets a note."""
    spec = table_spec(table)
    groups = _groups(cfg, spec)
    standin = results is not None and results["source"].astype(str).str.contains("stand-in").any()
    notes = notes_text(spec, paper_v1, offline_demo=demo_caption(cfg) if cfg.run.offline_demo else None,
                       paper_groups=groups)
    if standin:
        notes.insert(0, "ours: stand-in benchmark prompts (packaged, not the MT-Bench/Arena-Hard question sets).")
    notes += reading_notes(cfg, spec.id)
    proxy = cfg.judge.judge == "proxy"
    if proxy or standin:
        notes.insert(0, "no Δ line: ours and the paper's are on different scales (proxy judge or stand-in prompts), "
                        "so they sit side by side and are never subtracted.")
    tags = [t for t, on in (("demo", cfg.run.offline_demo), ("proxy judge", proxy)) if on]
    ours = f"ours ({', '.join(tags)})" if tags else "ours"
    return {"caption_text": table_caption(cfg, table), "paper_groups": groups, "notes": notes, "ours_name": ours,
            "paper_only": not cfg.run.offline_demo, "diff": not (proxy or standin)}


def show_table(cfg, table: str, results: pd.DataFrame, paper: pd.DataFrame, paper_v1: pd.DataFrame | None = None):
    """The table as markdown for a notebook (IPython `Markdown`; plain text outside IPython)."""
    text = render(results, paper, table_spec(table), **table_options(cfg, table, paper_v1, results))
    try:
        from IPython.display import Markdown
    except ImportError:   # pragma: no cover - IPython is installed with the notebooks
        return text
    return Markdown(text)


def write_tables(run, cfg, results: dict[str, pd.DataFrame], paper: pd.DataFrame,
                 paper_v1: pd.DataFrame | None = None) -> list[Path]:
    """Every table in `cfg.tables.formats` plus its CSV under ``<run>/tables/``."""
    out = []
    for table, res in results.items():
        out += save_table(res, paper, table_spec(table), run.dir / "tables", cfg.tables.formats,
                          **table_options(cfg, table, paper_v1, res))
    return out


def show_tables(cfg, results: dict[str, pd.DataFrame], paper: pd.DataFrame, paper_v1: pd.DataFrame | None = None):
    """Every rendered table as one markdown block for a notebook."""
    text = "\n\n".join(render(res, paper, table_spec(t), **table_options(cfg, t, paper_v1, res))
                         for t, res in results.items())
    try:
        from IPython.display import Markdown
    except ImportError:   # pragma: no cover
        return text
    return Markdown(text)


def claim_check(cfg, results: dict[str, pd.DataFrame], paper: pd.DataFrame, over: str = "Random") -> pd.DataFrame:
    """`gains` of the first rendered group-layout table (Table 2 in the demo), our rows beside the paper's."""
    table = next((t for t in results if table_spec(t).layout == "group" and table_spec(t).group_by == "cell"), None)
    if table is None:
        return pd.DataFrame(columns=["row", f"selection (minus {over})", "ours_gain", "paper_gain", "same direction"])
    c = comparison(results[table], paper, table_spec(table), table_options(cfg, table)["paper_groups"])
    return gains(c, over)
