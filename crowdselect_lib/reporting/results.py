"""Numbers of a table, ours and the paper's, in one tidy shape.

- SCORES (`SCORE_COLUMNS`): one row per judged system, benchmark and repetition of a grid cell, from
  `judge.judged_scores(run, cell_cfg)` (the judge computes the keys of the cell's judgments from its config):
  ``cell, subset, student, method, seed, benchmark, repetition, score, ci_low, ci_high, avg_tokens, judge``.
  ``ci_low``/``ci_high`` are the Arena-Hard interval's bounds; the untouched student has ``subset == "base"``;
  an anchor judged only as the anchor (``kind == "anchor"``, another student's base) is left out of the table.
- RESULTS (`RESULT_COLUMNS`): one row per printed cell: ``table, row, column, value, ci_low, ci_high,
  avg_tokens, n, anchor, source``; ``ci_low``/``ci_high`` are signed offsets from ``value`` as the paper prints
  them; ``n`` counts the repetitions x seeds averaged (the paper reports the mean of 3 runs); ``anchor`` marks
  the Arena-Hard anchor (50.0 by construction). The paper's numbers (`paper_numbers`) have the same names.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .grid import cell_configs, cell_labels, cell_overrides, paper_groups
from .registry import BENCHMARK_LABELS, TRAIN_METHOD_LABELS, TableSpec, table_spec

SCORE_COLUMNS = ["cell", "subset", "student", "method", "seed", "kind", "benchmark", "standin", "repetition", "score",
                 "ci_low", "ci_high", "avg_tokens", "judge"]
RESULT_COLUMNS = ["table", "row", "column", "value", "ci_low", "ci_high", "avg_tokens", "n", "anchor", "source"]
PAPER_COLUMNS = ["table", "row", "column", "value", "source", "note", "version", "ci_low", "ci_high", "avg_tokens"]
BASE = "base"


def _data(name: str, path: str | Path | None):
    return Path(path) if path else resources.files("crowdselect_lib") / "data" / name


# ------------------------------------------------------------------ the paper's numbers and notes

def paper_numbers(path: str | Path | None = None, version: str = "acl") -> pd.DataFrame:
    """The paper's printed numbers (``data/paper_numbers.csv``, `PAPER_COLUMNS`), one version: ``acl`` = the paper
    text we reproduce (default), ``v1`` = arXiv v1 (its values where it differs, the ACL values elsewhere, and its
    appendix table ``v1-17``). Unique on (table, row, column) after the choice; ``anchor`` added."""
    src = _data("paper_numbers.csv", path)
    df = pd.read_csv(src, dtype={c: str for c in ("table", "row", "column", "source", "note", "version")},
                     keep_default_na=False, na_values={c: [""] for c in ("value", "ci_low", "ci_high", "avg_tokens")})
    missing = [c for c in PAPER_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{src}: missing column(s) {missing}")
    if df["value"].isna().any() or (df["source"] == "").any():
        raise ValueError(f"{src}: every number needs a value and a source")
    if version not in ("acl", "v1"):
        raise ValueError(f"paper_numbers: version {version!r} is not 'acl' or 'v1'")
    if version == "acl":
        df = df[df["version"] == "acl"]
    else:   # v1 rows replace the acl rows of the same cell
        df = df.sort_values("version", key=lambda v: v.eq("v1")).drop_duplicates(["table", "row", "column"],
                                                                                 keep="last")
    dup = df.duplicated(["table", "row", "column"], keep=False)
    if dup.any():
        raise ValueError(f"{src}: duplicate (table, row, column) in version {version!r}: "
                         f"{df.loc[dup, ['table', 'row', 'column']].head(3).to_dict('records')}")
    anchors = paper_anchors()
    df = df.assign(anchor=[(t, r, c) in anchors for t, r, c in zip(df["table"], df["row"], df["column"])])
    return df.reset_index(drop=True)


def paper_notes(table: str | None = None, path: str | Path | None = None) -> pd.DataFrame:
    """The paper's notes (``data/paper_notes.csv``): ``table, kind, note``; kind is encoding | marking | anchor |
    inconsistency | caption. `table` keeps that table's notes only."""
    notes = pd.read_csv(_data("paper_notes.csv", path), dtype=str, keep_default_na=False)
    parts = notes["note"].str.extract(r"^(\w+):\s*(.*)$", flags=0)
    notes = pd.DataFrame({"table": notes["table"], "kind": parts[0], "note": parts[1]})
    return notes[notes["table"] == str(table)].reset_index(drop=True) if table is not None else notes


def paper_anchors() -> set[tuple[str, str, str]]:
    """(table, row, column) of the cells that are 50.0 by construction (notes of kind ``anchor``)."""
    notes = paper_notes()
    a = notes[notes["kind"] == "anchor"]
    found = a["note"].str.extract(r"row '([^']+)', column '([^']+)'")
    return {(t, r, c) for t, r, c in zip(a["table"], found[0], found[1])}


# ------------------------------------------------------------------ our scores -> a table's results

def check_scores(scores: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("cell", "subset", "student", "method", "benchmark", "score") if c not in scores]
    if missing:
        raise ValueError(f"scores lack column(s) {missing}; expected {SCORE_COLUMNS}")
    if scores["score"].isna().any():
        bad = scores.loc[scores["score"].isna(), ["cell", "subset", "benchmark"]].head(3).to_dict("records")
        raise ValueError(f"NaN score for {bad}")
    out = scores.copy()
    for c in SCORE_COLUMNS:
        if c not in out:
            out[c] = (np.nan if c in ("ci_low", "ci_high", "avg_tokens", "seed", "repetition")
                      else False if c == "standin" else "")
    out = out[out["kind"].fillna("") != "anchor"]
    out["method"] = out["method"].fillna("").astype(str)
    out["subset"] = out["subset"].fillna(BASE).astype(str).replace("", BASE)
    out.loc[out["method"].isin(["", BASE]), "subset"] = BASE
    out.loc[out["subset"] == BASE, "method"] = ""
    return out[SCORE_COLUMNS]


def _ordered(values, preferred) -> list:
    values = list(dict.fromkeys(values))
    first = [v for v in dict.fromkeys(preferred) if v in values]
    return first + [v for v in values if v not in first]


def _aggregate(s: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean over seeds and repetitions; the interval as offsets from the mean (mean of the bounds minus it)."""
    g = s.groupby(keys, sort=False)
    out = g.agg(value=("score", "mean"), lo=("ci_low", "mean"), hi=("ci_high", "mean"),
                avg_tokens=("avg_tokens", "mean"), n=("score", "size"), judge=("judge", "first"),
                standin=("standin", "any")).reset_index()
    out["ci_low"], out["ci_high"] = out["lo"] - out["value"], out["hi"] - out["value"]
    return out.drop(columns=["lo", "hi"])


def table_results(scores: pd.DataFrame, spec: TableSpec, cells: dict[str, str], *, rows: list[str] | None = None,
                  train_method: str | None = None, benchmarks=("mt_bench", "arena_hard")) -> pd.DataFrame:
    """RESULTS of `spec` from SCORES in the paper's layout. `cells`: cell name -> group label (order kept).

    Rows are labelled by what produced them: only students trained with the table's method (`train_method`,
    default the paper's, `spec.train_method`) fill it, and a group trained with another method than the paper's
    says so ("SmolLM2 · SFT (LoRA)"); the untouched student is the "Base" column. Table 17 groups by method.
    """
    s = check_scores(scores)
    s = s[s["benchmark"].isin(benchmarks) & s["cell"].isin(list(cells))]
    if rows is not None:
        s = s[s["subset"].isin(rows)]
    if spec.group_by == "train_method":
        methods = [m for m in TRAIN_METHOD_LABELS if m != "sft_lora"]     # Table 17's SFT is full fine-tuning
        s = s[s["method"].isin(methods)]
        group, groups = s["method"].map(TRAIN_METHOD_LABELS), [TRAIN_METHOD_LABELS[m] for m in methods]
    else:
        method = train_method or spec.train_method
        s = s[(s["method"] == "") | (s["method"] == method)]
        suffix = "" if method == spec.train_method else f" · {TRAIN_METHOD_LABELS.get(method, method)}"
        labels = {c: lab + suffix for c, lab in cells.items()}
        group, groups = s["cell"].map(labels), list(labels.values())
    if s.empty:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("value", "ci_low", "ci_high", "avg_tokens", "n")
                                          else bool if c == "anchor" else str) for c in RESULT_COLUMNS})
    s = s.assign(group=group.to_numpy(), bench=s["benchmark"].map(BENCHMARK_LABELS).to_numpy(),
                 label=s["subset"].map(spec.label).to_numpy())
    bench_order = [BENCHMARK_LABELS[b] for b in benchmarks]
    subsets = [spec.label(x) for x in (rows or [])]
    if spec.layout == "group":
        s["row"], s["column"] = s["group"] + " / " + s["bench"], s["label"]
        row_order, col_order = [f"{g} / {b}" for g in groups for b in bench_order], subsets
    elif spec.layout == "sweep":              # one row per weight vector: the untouched student is no row
        s = s[s["subset"] != BASE]
        several = s["group"].nunique() > 1
        s["row"] = s["label"]
        s["column"] = (s["group"] + " / " + s["bench"]) if several else s["bench"]
        row_order, col_order = subsets, bench_order
    else:
        s["row"], s["column"] = s["group"], s["bench"]
        row_order, col_order = groups, bench_order
    out = _aggregate(s, ["row", "column", "subset", "benchmark"])
    out["anchor"] = (out["benchmark"] == "arena_hard") & (out["subset"] == BASE) & (out["value"] == 50.0) & \
        (out["ci_low"].fillna(0) == 0) & (out["ci_high"].fillna(0) == 0)
    out["source"] = "judge " + out["judge"].fillna("").astype(str) + np.where(out["standin"], ", stand-in prompts", "")
    out["row"] = pd.Categorical(out["row"], _ordered(out["row"], row_order))
    out["column"] = pd.Categorical(out["column"], _ordered(out["column"], col_order))
    out = out.sort_values(["row", "column"]).astype({"row": str, "column": str})
    out.insert(0, "table", spec.id)
    return out[RESULT_COLUMNS].reset_index(drop=True)


def collect_scores(run, cfg, cells: dict | None = None) -> pd.DataFrame:
    """SCORES of every grid cell of `cfg` (`grid.cell_configs`), each read by `judge.judged_scores(run, cell_cfg)`,
    which computes the cell's judgment keys from its config (no folder scanning); a cell whose judgments are not
    all done is named in one printed line and left out."""
    from .. import judge   # the judge stack loads only when scores are read

    frames = []
    for name, ccfg in (cells or cell_configs(cfg)).items():
        try:
            df = judge.judged_scores(run, ccfg)
        except judge.JudgeNotRun as e:   # a cell not judged yet renders as "—"
            print(f"cell {name}: not judged yet ({e})")
            continue
        if len(df):
            frames.append(df.assign(cell=name))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("score", "ci_low", "ci_high", "avg_tokens")
                                          else str) for c in SCORE_COLUMNS})
    return check_scores(pd.concat(frames, ignore_index=True))


# ------------------------------------------------------------------ a params file's tables

def tables_to_render(cfg) -> list[str]:
    """`tables.table` of a table's params file, else `tables.single_run_tables` (the one-run demo)."""
    return [str(cfg.tables.table)] if cfg.tables.table else [str(t) for t in cfg.tables.single_run_tables]


def build_table(cfg, table: str, scores: pd.DataFrame) -> pd.DataFrame:
    """RESULTS of `table` from the grid's SCORES with the params' rows, training method and benchmarks."""
    return table_results(scores, table_spec(table), cell_labels(cfg), rows=cfg.tables.rows,
                         train_method=cfg.tables.train_method, benchmarks=cfg.tables.benchmarks)


# ------------------------------------------------------------------ short views for the chapter

def grid_summary(cfg, scores: pd.DataFrame) -> pd.DataFrame:
    """One line per grid cell: label, the paper group it sits beside, its overrides, systems judged (each trained
    (subset, method) and each untouched model: chapter 08's systems)."""
    labels, groups, over = cell_labels(cfg), paper_groups(cfg), cell_overrides(cfg)
    judged = scores.drop_duplicates(["cell", "subset", "method"]).groupby("cell").size() if len(scores) else \
        pd.Series(dtype=int)
    return pd.DataFrame({"cell": list(labels), "label": list(labels.values()),
                         "paper group": [groups[c] for c in labels], "overrides": [over.get(c, {}) for c in labels],
                         "systems judged": [int(judged.get(c, 0)) for c in labels]}).set_index("cell")


def scores_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Judged systems, one line each: cell, subset, method, then the mean score per benchmark and ``runs`` (the
    runs averaged per benchmark: training seeds x judge samples; 1 = one run, no spread)."""
    if scores.empty:
        return pd.DataFrame(columns=["cell", "subset", "method", "runs"])
    s = scores.assign(method=scores["method"].replace("", "(untouched)"),
                      benchmark=scores["benchmark"].map(BENCHMARK_LABELS).fillna(scores["benchmark"]))
    wide = s.pivot_table(index=["cell", "subset", "method"], columns="benchmark", values="score", aggfunc="mean")
    wide["runs"] = s.groupby(["cell", "subset", "method", "benchmark"]).size().groupby(level=[0, 1, 2]).max()
    return wide.round(3)


def paper_summary(paper: pd.DataFrame) -> str:
    """One line about the paper's numbers shown (count, tables, intervals, tokens, notes)."""
    res = paper[paper["table"] != "abstract"]
    notes = paper_notes()
    return (f"{len(res)} printed cells of {res['table'].nunique()} tables (version {', '.join(sorted(set(paper['version'])))}),"
            f" {int(res['ci_low'].notna().sum())} with an Arena-Hard 95% interval, {int(res['avg_tokens'].notna().sum())}"
            f" with average answer tokens; {int((notes['kind'] == 'inconsistency').sum())} inconsistencies of the paper"
            f" noted under their tables")


def gains(c: pd.DataFrame, over: str = "Random") -> pd.DataFrame:
    """The paper's claims as differences within a row: every column minus `over` (e.g. Multi - Random), ours and
    the paper's, and whether they point the same way (`render.comparison` frame in, rows with both sides out)."""
    ref = c[c["column"] == over][["row", "ours", "paper"]].rename(columns={"ours": "ours_ref", "paper": "paper_ref"})
    g = c[c["column"] != over].merge(ref, on="row", how="left")
    g = g.assign(ours_gain=g["ours"] - g["ours_ref"], paper_gain=g["paper"] - g["paper_ref"])
    g = g[g["ours_gain"].notna() & g["paper_gain"].notna()]
    g["same direction"] = np.sign(g["ours_gain"]) == np.sign(g["paper_gain"])
    return g[["row", "column", "ours_gain", "paper_gain", "same direction"]].rename(
        columns={"column": f"selection (minus {over})"}).reset_index(drop=True).round(3)

