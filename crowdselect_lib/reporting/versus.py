"""Every row of every table against Random and against the untouched student, with an interval and a verdict
(chapter 09; the bootstrap is `intervals`).

- `collect_items(run, cfg)`: per-item results of every grid cell (`judge.item_scores`, plus ``cell``).
- `comparisons(items, cfg)`: VERSUS (`VERSUS_COLUMNS`): one row per (cell, subset, training method, benchmark,
  reference) with the gain (positive = better: higher MT-Bench / Arena-Hard, lower held-out loss), its 95%
  interval and the verdict. References: ``Random`` (every ``random`` / ``random_s<N>`` subset of the cell trained
  with the same method, pooled) and ``base`` (the untouched student).
- `add_verdicts(cfg, results, versus)`: the gains laid out like a table's RESULTS (the table's own layout code,
  `results.table_results`), as extra columns ``vs_random`` / ``vs_base`` that `render` prints under our line.
- `headline_claims(cfg, versus, items)`: the paper's headline claims (CrowdSelect +11.1% MT-Bench, +4.81%
  Arena-Hard over the best baseline, Llama-3.2-3B-Instruct) beside our relative gain and its interval.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .grid import cell_configs, cell_labels
from .intervals import N_BOOT, Gain, arena_gain, is_random, paired_gain, verdict
from .results import build_table

VERSUS_COLUMNS = ["cell", "subset", "method", "benchmark", "reference", "estimate", "lower", "upper", "n_items",
                  "n_runs", "n_ref_runs", "verdict"]
HIGHER_IS_BETTER = {"mt_bench": True, "arena_hard": True, "heldout_loss": False}
# The paper's headline (abstract, §4.2): CrowdSelect over the best baseline, Llama-3.2-3B-Instruct, full fine-tuning
HEADLINE = {"mt_bench": 11.1, "arena_hard": 4.81}


def collect_items(run, cfg, cells: dict | None = None) -> pd.DataFrame:
    """`judge.item_scores` of every grid cell, with a ``cell`` column; a cell not judged yet is left out."""
    from .. import judge

    frames = []
    for name, ccfg in (cells or cell_configs(cfg)).items():
        try:
            frames.append(judge.item_scores(run, ccfg).assign(cell=name))
        except judge.JudgeNotRun:
            continue
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*judge.ITEM_COLUMNS, "cell"])


def _runs(items: pd.DataFrame) -> pd.DataFrame:
    """(question, run) matrix of scores: one column per (system, judge sample)."""
    return items.pivot_table(index="question_id", columns=["system", "repetition"], values="score", aggfunc="first",
                             dropna=False)


def _gain(items: pd.DataFrame, benchmark: str, rows: pd.DataFrame, refs: pd.DataFrame, reference: str,
          n_boot: int, seed: int) -> Gain:
    if benchmark == "arena_hard":          # systems x judge samples are the Bradley-Terry fit's models
        anchor = items["anchor"].iloc[0]
        t = items[items["system"].isin(set(rows["system"]) | set(refs["system"]) | {anchor})]
        t = t.assign(model=t["system"] + "#" + t["repetition"].astype(str))

        def models(x):
            return sorted(set(x["system"] + "#" + x["repetition"].astype(str)))
        return arena_gain(t[["question_id", "model", "game1", "game2"]], models(rows), models(refs),
                          f"{anchor}#{int(t['repetition'].min())}", reference=reference, n_boot=min(n_boot, 200),
                          seed=seed)
    a, b = _runs(rows), _runs(refs)
    q = a.index.union(b.index)
    a, b = a.reindex(q), b.reindex(q)
    # an item without any value on one side (a failed judgment, a held-out prompt longer than max_length: counted
    # upstream) leaves the pairs; `n_items` counts those compared
    scored = a.notna().any(axis=1) & b.notna().any(axis=1)
    a, b = a[scored], b[scored]
    return paired_gain(a.to_numpy(), b.to_numpy(), higher_is_better=HIGHER_IS_BETTER[benchmark],
                       reference=reference, n_boot=n_boot, seed=seed)


def comparisons(items: pd.DataFrame, cfg=None, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """VERSUS (module docstring) from `collect_items`. Arena-Hard gains are win-rate points against the cell's
    anchor (its system ``anchor`` kind or base); MT-Bench gains rating points; held-out loss gains nats per token
    (Random's loss minus the row's)."""
    out = []
    items = items[items["kind"].isin(["trained", "base", "anchor"])]
    for (cell, bench), g in items.groupby(["cell", "benchmark"], sort=False):
        base = g[g["kind"] == "base"]
        trained = g[g["kind"] == "trained"]
        for (subset, method), rows in trained.groupby(["subset", "method"], sort=False):
            rand = trained[trained["subset"].map(is_random) & (trained["method"] == method)]
            refs = [("base", base)] + ([] if is_random(subset) or rand.empty else [("Random", rand)])
            for name, ref in refs:
                if ref.empty:
                    continue
                try:
                    gain = _gain(g, bench, rows, ref, name, n_boot, seed)
                except ValueError as e:      # e.g. a system without any parsed Arena-Hard verdict: said, not dropped
                    gain = Gain(np.nan, np.nan, np.nan, 0, f"not computed: {e}")
                out.append({"cell": cell, "subset": "random" if is_random(subset) else subset, "method": method,
                            "benchmark": bench, "reference": name, **gain.to_dict(),
                            "n_runs": rows[["system", "repetition"]].drop_duplicates().shape[0],
                            "n_ref_runs": ref[["system", "repetition"]].drop_duplicates().shape[0]})
    df = pd.DataFrame(out, columns=VERSUS_COLUMNS)
    # Random's seeds are one row: keep one comparison of the pooled Random against the base
    return df.drop_duplicates(["cell", "subset", "method", "benchmark", "reference"]).reset_index(drop=True)


def _as_scores(versus: pd.DataFrame, reference: str) -> pd.DataFrame:
    v = versus[versus["reference"] == reference]
    return pd.DataFrame({"cell": v["cell"], "subset": v["subset"], "student": "", "method": v["method"],
                         "kind": "trained", "benchmark": v["benchmark"], "score": v["estimate"],
                         "ci_low": v["lower"], "ci_high": v["upper"], "judge": v["verdict"]})


def add_verdicts(cfg, results: dict[str, pd.DataFrame], versus: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each table's RESULTS with ``vs_random`` and ``vs_base``: ``"+0.12 [+0.03, +0.21] above Random (95%)"`` per
    cell (the gain, its interval, the verdict), laid out by the table's own layout; "" where there is none."""
    out = {}
    for table, res in results.items():
        res = res.copy()
        for ref, col in (("Random", "vs_random"), ("base", "vs_base")):
            s = _as_scores(versus, ref)
            res[col] = ""
            if s.empty or res.empty:
                continue
            lay = build_table(cfg, table, s)
            text = {(r.row, r.column): f"{r.value:+.3g} [{r.value + r.ci_low:+.3g}, {r.value + r.ci_high:+.3g}] "
                    + verdict(r.value + r.ci_low, r.value + r.ci_high, ref)
                    for r in lay.itertuples()}
            res[col] = [text.get((r, c), "") for r, c in zip(res["row"], res["column"])]
        out[table] = res
    return out


def verdict_counts(versus: pd.DataFrame) -> pd.DataFrame:
    """How many comparisons fall each way, per benchmark and reference."""
    if versus.empty:
        return pd.DataFrame(columns=["benchmark", "reference", "verdict", "n"])
    return versus.groupby(["benchmark", "reference", "verdict"]).size().rename("n").reset_index()


def headline_claims(cfg, versus: pd.DataFrame, scores: pd.DataFrame, subset: str = "crowdselect") -> pd.DataFrame:
    """The paper's headline claims (`HEADLINE`, relative gain of CrowdSelect over the best baseline) set against our
    run: our relative gain of `subset` over Random, and over base, with the interval, per cell and benchmark
    (relative to the reference's mean; `scores` = `collect_scores`). Empty where no run judged `subset`."""
    rows = []
    v = versus[(versus["subset"] == subset) & versus["benchmark"].isin(list(HEADLINE))]
    for r in v.itertuples():
        s = scores[(scores["cell"] == r.cell) & (scores["benchmark"] == r.benchmark)]
        ref = s[s["subset"].map(is_random) & (s["method"] == r.method)] if r.reference == "Random" else \
            s[s["subset"] == "base"]
        base = float(ref["score"].mean()) if len(ref) else np.nan
        if r.benchmark == "arena_hard":
            base = 50.0 if r.reference == "base" else base
        rel = 100 * np.array([r.estimate, r.lower, r.upper]) / base if base else np.full(3, np.nan)
        inside = rel[1] <= HEADLINE[r.benchmark] <= rel[2]
        rows.append({"cell": cell_labels(cfg).get(r.cell, r.cell), "benchmark": r.benchmark,
                     "against": r.reference, "paper: over best baseline (%)": HEADLINE[r.benchmark],
                     "ours (%)": round(rel[0], 2), "95% interval (%)": f"[{rel[1]:+.2f}, {rel[2]:+.2f}]",
                     "paper's claim inside ours": bool(inside), "verdict": r.verdict})
    return pd.DataFrame(rows, columns=["cell", "benchmark", "against", "paper: over best baseline (%)", "ours (%)",
                                       "95% interval (%)", "paper's claim inside ours", "verdict"])


def _text(r) -> str:
    return f"{r.estimate:+.3g} [{r.lower:+.3g}, {r.upper:+.3g}] {r.verdict}"


def versus_table(scores: pd.DataFrame, versus: pd.DataFrame) -> pd.DataFrame:
    """One line per (cell, subset, training method, benchmark): the mean score over its runs (``n`` runs), and its
    gain over Random and over the untouched student as ``gain [95% interval] verdict``; Random's seeds pooled."""
    s = scores.assign(subset=scores["subset"].map(lambda x: "random" if is_random(x) else x))
    mean = s.groupby(["cell", "subset", "method", "benchmark"], sort=False)["score"].agg(["mean", "count"])
    mean = mean.rename(columns={"count": "n"}).reset_index()
    for ref, col in (("Random", "vs Random"), ("base", "vs base")):
        v = versus[versus["reference"] == ref]
        txt = {(r.cell, r.subset, r.method, r.benchmark): _text(r) for r in v.itertuples()}
        mean[col] = [txt.get(k, "") for k in zip(mean["cell"], mean["subset"], mean["method"], mean["benchmark"])]
    return mean.round({"mean": 4})


def write_comparisons(run, frames: dict[str, pd.DataFrame]) -> list:
    """Each frame (e.g. ``versus``, ``ledger``) as ``runs/<run>/tables/<name>.csv`` and ``.md``."""
    from ..runs import write_text

    out = []
    for name, df in frames.items():
        out.append(write_text(df.to_csv(index=False), run.dir / "tables" / f"{name}.csv"))
        lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
        lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
        out.append(write_text("\n".join(lines) + "\n", run.dir / "tables" / f"{name}.md"))
    return out
