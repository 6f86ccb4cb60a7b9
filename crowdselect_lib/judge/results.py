"""The judge stage's results: the tidy score table the reports read, its summary over repeated runs, and the
comparison figure (paper §4.1, Table 2's two benchmarks).

`judged_scores(run, cfg)` columns: ``system, subset, student, method, seed, kind, benchmark, benchmark_label,
standin, repetition, score, ci_low, ci_high, n_valid, n_failed, n_unanswered, n_length, avg_tokens, judge,
served_model, anchor, judged_at``. MT-Bench rows have no interval (NaN); Arena-Hard rows are win rates (percent)
against the anchor with the bootstrap 95% interval; the anchor reads 50.0 (50.0, 50.0).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import training
from ..escaping import literal_figure_text
from .answers import anchor_system, in_judging_pass, load_answers, systems_table
from .benchmarks import HELDOUT, HELDOUT_LABEL, benchmarks_for
from .heldout import heldout_mode, heldout_step, mean_with_interval
from .proxy import LABEL as PROXY_LABEL
from .run import (JudgeNotRun, judge_identity, judged_benchmark, judgments_step, run_all_answers,
                  run_all_judgments)
from .scores import arena_hard_scores, average_performance_rank, mt_bench_score

SCORE_COLUMNS = ["system", "subset", "student", "method", "seed", "kind", "benchmark", "benchmark_label", "standin",
                 "repetition", "score", "ci_low", "ci_high", "n_valid", "n_failed", "n_unanswered", "n_length",
                 "avg_tokens", "judge", "served_model", "anchor", "judged_at"]
log = logging.getLogger("crowdselect")
GROUP = ["subset", "student", "method", "kind", "benchmark"]


@in_judging_pass
def scores_step(run, cfg, benches: dict | None = None, log=print):
    systems = systems_table(run, cfg)["system"]
    inputs = {f"{b}:{s}": judgments_step(run, cfg, s, b, benches, log=None)
              for s in systems for b in cfg.judge.benchmarks}
    return run.step("judge", "scores", version="1", inputs=inputs, log=log, code="crowdselect_lib.judge",
                    settings={"anchor": anchor_system(cfg, list(systems)), "n_bootstrap": cfg.judge.n_bootstrap,
                              "interval": cfg.judge.interval, "seed": cfg.run.seed})


def _judgments(run, cfg, systems, benchmark, benches) -> pd.DataFrame:
    frames = []
    for s in systems:
        st = judgments_step(run, cfg, s, benchmark, benches, log=None)
        if not st.done:
            raise JudgeNotRun(f"system {s!r} has no judgments on {benchmark} yet (step {st.label} {st.key}): run "
                              "the judge stage first (cs.judge.run_judging(run, cfg))")
        frames.append(pd.read_parquet(st.dir / "judgments.parquet").assign(system=s))
    return pd.concat(frames, ignore_index=True)


def _arena_table(g: pd.DataFrame) -> pd.DataFrame:
    """Arena-Hard judgments (one row per game) -> ``question_id, model, game1, game2`` (`scores.battles`' input)."""
    wide = g.pivot_table(index=["system", "question_id"], columns="game", values="verdict", aggfunc="first")
    wide = wide.reindex(columns=[1, 2]).reset_index()
    table = pd.DataFrame({"question_id": wide["question_id"], "model": wide["system"],
                          "game1": wide[1].astype(object), "game2": wide[2].astype(object)})
    return table.where(table.notna(), None)


@in_judging_pass
def arena_anchor_readings(run, cfg, benches: dict | None = None) -> pd.DataFrame:
    """The Arena-Hard anchor reading side by side, from the SAME judgments (judge sample 0): each system's win rate
    against the anchor (the base student, ours and the paper's 50.0 row) and against the judge's baseline
    (gpt-4-0314 in v0.1: arena-hard-auto's own score). The Bradley-Terry fit is one; only the reference differs."""
    systems = systems_table(run, cfg)
    anchor = anchor_system(cfg, systems["system"].tolist())
    bench = judged_benchmark(run, cfg, "arena_hard", benches)
    g = _judgments(run, cfg, systems["system"], "arena_hard", benches)
    table = _arena_table(g[g["repetition"] == 0])
    table = table[table["model"].isin(set(g.loc[g["verdict"].notna(), "system"]))]
    kw = {"baseline": bench.baseline, "n_bootstrap": cfg.judge.n_bootstrap, "seed": cfg.run.seed}
    out = {}
    for label, ref in ((f"vs anchor ({anchor})", anchor), (f"vs baseline ({bench.baseline})", bench.baseline)):
        sc = arena_hard_scores(table, ref, **kw).set_index("model")
        out[label] = sc["score"]
    return pd.DataFrame(out).rename_axis("system").sort_values(next(iter(out)), ascending=False)


def _score_rows(run, cfg, systems: pd.DataFrame, benches) -> pd.DataFrame:
    anchor = anchor_system(cfg, systems["system"].tolist())
    rows = []
    for name, bench in benchmarks_for(run, cfg, benches).items():
        jt = _judgments(run, cfg, systems["system"], name, benches)
        for rep in range(cfg.judge.repetitions):
            g = jt[jt["repetition"] == rep]
            if name == "mt_bench":
                for s, gs in g.groupby("system"):
                    m = mt_bench_score(gs)
                    rows.append({"system": s, "benchmark": name, "repetition": rep, "score": m.overall,
                                 "n_valid": m.n_valid, "n_failed": m.n_failed})
                continue
            table = _arena_table(g)
            judged = set(g.loc[g["verdict"].notna(), "system"])
            baseline = judged_benchmark(run, cfg, name, benches).baseline   # the anchor itself under "baseline"
            if anchor in judged or anchor == baseline:
                scored = arena_hard_scores(table[table["model"].isin(judged)], anchor, baseline=baseline,
                                           n_bootstrap=cfg.judge.n_bootstrap, seed=cfg.run.seed + rep,
                                           interval=cfg.judge.interval).set_index("model")
            else:       # no verdict for the anchor: no win rate against it (the failures are counted below)
                log.warning("Arena-Hard sample %d: the anchor %s has no verdict; no win rates", rep, anchor)
                scored = pd.DataFrame(columns=["score", "lower", "upper"])
            failed = g.groupby("system")["failure"].apply(lambda x: int(x.notna().sum()))
            for s in systems["system"]:
                hit = scored.loc[s] if s in scored.index else None
                rows.append({"system": s, "benchmark": name, "repetition": rep,
                             "score": hit["score"] if hit is not None else np.nan,
                             "ci_low": hit["lower"] if hit is not None else np.nan,
                             "ci_high": hit["upper"] if hit is not None else np.nan,
                             "n_valid": int((g["system"] == s).sum() - failed.get(s, 0)),
                             "n_failed": int(failed.get(s, 0))})
        meta = jt.groupby("system").agg(served_model=("served_model", lambda x: ",".join(sorted(set(x.dropna())))),
                                        judged_at=("judged_at", "max"))
        for r in rows:
            if r["benchmark"] == name:
                ans = load_answers(run, cfg, r["system"], name, benches)
                toks = [n for t in ans["n_tokens"] for n in t]
                r.update(benchmark_label=bench.label, standin=bench.standin,
                         n_unanswered=int(ans["error"].notna().sum()),
                         n_length=int(sum(list(f).count("length") for f in ans["finish_reasons"])),
                         avg_tokens=float(np.mean(toks)) if toks else np.nan,
                         **meta.reindex([r["system"]]).iloc[0].to_dict())   # the anchor as baseline: not judged
    out = pd.DataFrame(rows).merge(systems.drop(columns=["key", "path"]), on="system", how="left")
    ident = judge_identity(cfg)
    return out.assign(judge=f"{ident['backend']}:{ident['model']}", anchor=anchor).reindex(columns=SCORE_COLUMNS)


@in_judging_pass
def heldout_losses(run, cfg) -> pd.DataFrame:
    """``system, uuid, loss`` of every system whose losses are measured (a missing one is an error naming it)."""
    frames = []
    for row in systems_table(run, cfg).to_dict("records"):
        st = heldout_step(run, cfg, row["system"], row)
        if not st.done:
            raise JudgeNotRun(f"system {row['system']!r} has no held-out losses yet (step {st.label} {st.key}): run "
                              "chapter 08 (cs.judge.run_all_judgments(run, cfg))")
        frames.append(pd.read_parquet(st.dir / "losses.parquet").assign(system=row["system"]))
    return pd.concat(frames, ignore_index=True)


@in_judging_pass
def judged_scores(run, cfg, benches: dict | None = None) -> pd.DataFrame:
    """The tidy score table (module docstring): reused when its step is done, else computed from finished
    judgments (a system not judged yet is a `JudgeNotRun` naming it)."""
    systems = systems_table(run, cfg)
    if heldout_mode(cfg):
        return _heldout_rows(run, cfg, systems)
    st = scores_step(run, cfg, benches)
    return st.table(lambda: _score_rows(run, cfg, systems, benches), "scores.parquet")


def _heldout_rows(run, cfg, systems: pd.DataFrame) -> pd.DataFrame:
    """The score table with the held-out loss: per system its mean loss and the 95% bootstrap interval over items."""
    losses = heldout_losses(run, cfg)
    rows = []
    for s, g in losses.groupby("system", sort=False):
        mean, lo, hi = mean_with_interval(g["loss"].to_numpy(), 1000, cfg.run.seed)
        rows.append({"system": s, "benchmark": HELDOUT, "benchmark_label": HELDOUT_LABEL, "standin": False,
                     "repetition": 0, "score": mean, "ci_low": lo, "ci_high": hi,
                     "n_valid": int(g["loss"].notna().sum()), "n_failed": int(g["loss"].isna().sum()),
                     "n_unanswered": 0, "n_length": int(g["truncated"].sum()),
                     "avg_tokens": float(g["answer_tokens"].mean()), "served_model": "local", "judged_at": ""})
    out = pd.DataFrame(rows).merge(systems.drop(columns=["key", "path"]), on="system", how="left")
    return out.assign(judge=HELDOUT, anchor=anchor_system(cfg, systems["system"].tolist())).reindex(
        columns=SCORE_COLUMNS)


ITEM_COLUMNS = ["system", "subset", "student", "method", "seed", "kind", "benchmark", "repetition", "question_id",
                "score", "game1", "game2", "anchor"]


@in_judging_pass
def item_scores(run, cfg, benches: dict | None = None) -> pd.DataFrame:
    """Per-item results of every judged system (`ITEM_COLUMNS`), what the paired bootstrap of chapter 09 resamples
    (`reporting.intervals`): MT-Bench: one row per (system, sample, question), ``score`` = the mean of its valid
    turn ratings (NaN when both failed); Arena-Hard: one row per (system, sample, question) with the verdict labels
    of ``game1`` / ``game2`` (None = no verdict); ``anchor`` = the Arena-Hard anchor's system. A system not judged yet is a `JudgeNotRun` naming it."""
    systems = systems_table(run, cfg)
    frames = []
    if heldout_mode(cfg):
        h = heldout_losses(run, cfg)
        frames.append(pd.DataFrame({"system": h["system"], "repetition": 0, "question_id": h["uuid"],
                                    "score": h["loss"], "game1": None, "game2": None, "benchmark": HELDOUT}))
    for name in ([] if heldout_mode(cfg) else benchmarks_for(run, cfg, benches)):
        jt = _judgments(run, cfg, systems["system"], name, benches)
        if name == "mt_bench":
            s = pd.to_numeric(jt["score"], errors="coerce").where(jt["failure"].isna())
            g = jt.assign(score=s).groupby(["system", "repetition", "question_id"], sort=True)["score"].mean()
            frames.append(g.reset_index().assign(benchmark=name, game1=None, game2=None))
            continue
        wide = jt.pivot_table(index=["system", "repetition", "question_id"], columns="game", values="verdict",
                              aggfunc="first").reindex(columns=[1, 2])
        wide = wide.astype(object).where(wide.notna(), None).reset_index()
        frames.append(pd.DataFrame({"system": wide["system"], "repetition": wide["repetition"],
                                    "question_id": wide["question_id"].astype(str), "score": np.nan,
                                    "game1": wide[1], "game2": wide[2], "benchmark": name}))
    out = pd.concat(frames, ignore_index=True).merge(systems.drop(columns=["key", "path"]), on="system", how="left")
    return out.assign(anchor=anchor_system(cfg, systems["system"].tolist())).reindex(columns=ITEM_COLUMNS)


@in_judging_pass
def run_judging(run, cfg) -> pd.DataFrame:
    """The whole stage headless: answers, cost gate, judgments, then the score table."""
    run_all_answers(run, cfg)
    run_all_judgments(run, cfg)
    return judged_scores(run, cfg)


def score_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per system (subset, student, method) and benchmark, over training seeds and judge samples: ``mean, median,
    std, min, max, n`` of the score and the mean interval; plus the AP rank (§4.1) of the means."""
    g = scores.groupby(GROUP, sort=False, dropna=False)
    out = g["score"].agg(mean="mean", median="median", std="std", min="min", max="max", n="count")
    out = out.join(g[["ci_low", "ci_high", "avg_tokens"]].mean()).reset_index()
    out["label"] = np.where(out["kind"] == "trained", out["subset"] + " / " + out["method"], "untouched " + out["student"])
    wide = out.pivot_table(index="label", columns="benchmark", values="mean", sort=False)
    present = [b for b in ("mt_bench", "arena_hard") if b in wide.columns]
    if present and not wide[present].isna().any().any():
        out = out.merge(average_performance_rank(wide, present)[["ap"]].reset_index(), on="label", how="left")
    return out


def plot_scores(summary: pd.DataFrame, title: str):
    """Two dot panels (MT-Bench, Arena-Hard), one dot per system in the same order in both, coloured by subset as in
    every chapter (`training.subset_colours`; untouched models grey, preference-trained students open), with the
    interval the summary carries (Arena-Hard: the bootstrap 95% interval; over repeated runs: min-max), on the
    benchmark's whole scale (MT-Bench 1-10, Arena-Hard 0-100%), so a small gap is not drawn as a big one. Returns the
    figure."""
    from ..reporting.plots import pyplot

    plt = pyplot()
    colours = training.subset_colours(summary.loc[summary["kind"] == "trained", "subset"])
    benches = [b for b in ("mt_bench", "arena_hard", HELDOUT) if b in set(summary["benchmark"])]
    order = list(dict.fromkeys(summary.sort_values("kind", key=lambda k: k == "trained", kind="stable")["label"]))
    fig, axes = plt.subplots(1, len(benches), figsize=(5.2 * len(benches), 3.8), squeeze=False)
    names = {"mt_bench": ("MT-Bench", "rating (1-10)", (0.5, 10.5)),
             "arena_hard": ("Arena-Hard", "win rate vs anchor (%)", (-3, 103)),
             HELDOUT: ("Held-out loss (lower is better)", "nats per reference token", (0, None))}
    for ax, b in zip(axes[0], benches):
        d = summary[summary["benchmark"] == b]
        d = d.iloc[np.argsort([order.index(x) for x in d["label"]], kind="stable")].reset_index(drop=True)
        lo = np.where(d["n"] > 1, d["min"], d["ci_low"].fillna(d["mean"]))
        hi = np.where(d["n"] > 1, d["max"], d["ci_high"].fillna(d["mean"]))
        err = np.vstack([d["mean"] - lo, hi - d["mean"]]).clip(min=0)
        for i, (kind, sub, method) in enumerate(zip(d["kind"], d["subset"], d["method"].fillna(""))):
            c = "0.5" if kind != "trained" else colours[sub]
            pref = method in ("dpo", "simpo", "orpo")
            ax.errorbar([i], [d["mean"].iloc[i]], yerr=err[:, i:i + 1], fmt="o", ms=7, color=c, ecolor="k",
                        capsize=4, lw=1, mfc="white" if pref else c, mec=c, mew=2)
        ax.set_xticks(range(len(d)), d["label"], rotation=25, ha="right", fontsize=8)
        ax.set_xlim(-0.6, max(len(d), 3) - 0.4)
        ax.set_title(names[b][0], fontsize=10)
        ax.set_ylabel(names[b][1])
        ax.set_ylim(*names[b][2])
        ax.grid(axis="y", alpha=0.3)
        if b == "arena_hard":
            ax.axhline(50, color="k", lw=0.8, ls="--")
        if len(d) > 1 and np.allclose(d["mean"], d["mean"].iloc[0]):
            ax.text(0.5, 0.85, "every system scores the same", transform=ax.transAxes, ha="center", va="center",
                    fontsize=9, bbox={"facecolor": "white", "edgecolor": "0.6"})
    fig.suptitle(title, fontsize=10)
    literal_figure_text(fig).tight_layout()
    return fig


def figure_title(cfg, scores: pd.DataFrame) -> str:
    """What the bars are: says plainly when the judge is the offline proxy or a benchmark is a stand-in."""
    who = PROXY_LABEL if cfg.judge.judge == "proxy" else "no judge: held-out loss on reference answers" \
        if heldout_mode(cfg) else f"judge {cfg.judge.judge_model}"
    standin = " · stand-in prompts" if scores["standin"].fillna(False).astype(bool).any() else ""
    return f"{who}{standin} · anchor {scores['anchor'].iloc[0]}"
