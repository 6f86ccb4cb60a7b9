"""The cost ledger (issue 24): what each selection method costs to select, to train on and to judge, beside its gain
over Random (chapter 09; "Compute-Constrained Data Selection" asks this of every method).

- `measured_costs(run, cfg)`: this run's wall seconds from the step manifests (`runs.Step.finish` records
  ``seconds``): selecting (the method's own step plus what it needs upstream: CrowdSelect the metrics, the
  embeddings and clusters; a metric subset the metrics; an LLM or IFD baseline its work step), training (every
  seed), judging (answers + judgments, or the held-out loss).
- `paper_costs(cfg)`: the same methods planned at paper scale by the preflight plan (`preflight.plan.plan` on
  ``params/paper.yaml``): LLM calls, tokens and dollars to select, optimizer steps to train, judge calls and
  dollars per system; plus CrowdSelect's hidden cost, its crowd (`crowd_cost`), "paid once by the zoo's authors".
- `ledger(measured, versus)`: one row per method, costs beside the gain and its interval; `plot_ledger` the
  cost-against-gain figure.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .intervals import is_random

MEASURED_COLUMNS = ["method", "select_s", "select_llm_calls", "select_forward_passes", "train_s", "judge_s"]
LEDGER_COLUMNS = ["method", "select_s", "select_llm_calls", "select_forward_passes", "train_s", "judge_s", "total_s", "benchmark", "gain", "gain_lower",
                  "gain_upper", "verdict", "basis"]
PAPER_LEDGER_COLUMNS = ["method", "select_llm_calls", "select_tokens", "select_usd", "select_forward_passes",
                        "train_steps", "judge_calls_per_system", "judge_usd_per_system", "note"]
CROWD = {"instructions": 100_000, "models": 19, "reward_models": 3, "answer_tokens": 450}   # paper §3.1, Magpie zoo
PAID_ONCE = "paid once by the zoo's authors"


def _seconds(step) -> float:
    """Wall seconds a done step recorded (0 when it did not record them, e.g. one finished by an older version)."""
    if not step.done:
        return np.nan
    return float(step.manifest().get("seconds") or 0.0)


def crowd_cost(instructions: int = CROWD["instructions"], models: int = CROWD["models"],
               reward_models: int = CROWD["reward_models"], answer_tokens: int = CROWD["answer_tokens"]) -> dict:
    """CrowdSelect's crowd at paper scale: every model answers every instruction, every reward model scores every
    answer (Magpie-100K-Generator-Zoo: 100k x 19 answers, 3 reward models)."""
    answers = instructions * models
    return {"answers": answers, "answer_tokens": answers * answer_tokens, "reward_model_passes": answers * reward_models,
            "note": PAID_ONCE}


def measured_costs(run, cfg) -> pd.DataFrame:
    """Per trained subset (`MEASURED_COLUMNS`): wall seconds of this run (`_seconds`) to select, train and judge, and
    the LLM requests (LLM-rated baselines, SelectLLM) or forward passes (IFD) its selection made."""
    from .. import baselines, clustering, metrics, selection, training

    rows = []
    systems = training.trained_systems(run, cfg)
    for subset, g in systems.groupby("subset", sort=False):
        llm_calls = passes = 0
        if training.subset_kind(cfg, subset) == "selection":
            spec = next(s for s in cfg.selection.subsets if s.name == subset)
            sel = _seconds(selection.selection_step(run, cfg, subset)) + _seconds(metrics.metrics_step(run, cfg))
            if spec.clustered:
                sel += _seconds(clustering.clusters_step(run, cfg))
        else:
            spec = baselines.resolve(subset)
            sel = _seconds(baselines.baseline_step(run, cfg, subset))
            if spec.work is not None:
                w = spec.work(run, cfg, subset)
                sel += _seconds(w)
                done = w.manifest() if w.done else {}
                if spec.kind == "llm":        # one request per rated instruction / per SelectLLM query
                    llm_calls = int(done.get("queries", done.get("rows", 0)))
                elif spec.kind == "ifd":      # two forward passes per scored pair
                    passes = 2 * int(done.get("rows", 0))
        train = sum(_seconds(training.train_step(run, cfg, r.subset, r.student, r.method, r.seed))
                    for r in g.itertuples())
        rows.append({"method": subset, "select_s": sel, "select_llm_calls": llm_calls, "select_forward_passes": passes,
                     "train_s": train, "judge_s": _judge_seconds(run, cfg, g["system"].tolist())})
    return pd.DataFrame(rows, columns=MEASURED_COLUMNS)


def _judge_seconds(run, cfg, systems: list[str]) -> float:
    from .. import judge

    total = 0.0
    with judge.judging_pass():            # the systems table once, not once per step
        for s in systems:
            if judge.heldout_mode(cfg):
                total += _seconds(judge.heldout_step(run, cfg, s))
                continue
            for b in cfg.judge.benchmarks:
                total += _seconds(judge.answers_step(run, cfg, s, b, log=None))
                total += _seconds(judge.judgments_step(run, cfg, s, b, log=None))
    return total


def ledger(measured: pd.DataFrame, versus: pd.DataFrame, benchmark: str | None = None) -> pd.DataFrame:
    """`LEDGER_COLUMNS`: each method's measured costs (Random's seeds pooled into one row: their mean) beside its
    gain over Random on `benchmark` (default: the first one compared) and the verdict; Random's gain is 0."""
    m = measured.assign(method=measured["method"].map(lambda s: "random" if is_random(s) else s))
    for c in ("select_llm_calls", "select_forward_passes"):
        m[c] = m[c] if c in m else 0
    m = m.groupby("method", sort=False)[MEASURED_COLUMNS[1:]].mean().reset_index()
    v = versus[versus["reference"] == "Random"]
    if benchmark is None and len(v):
        benchmark = v["benchmark"].iloc[0]
    v = v[v["benchmark"] == benchmark].groupby("subset").first()
    out = m.assign(total_s=m[["select_s", "train_s", "judge_s"]].sum(axis=1), benchmark=benchmark,
                   gain=[0.0 if x == "random" else v["estimate"].get(x, np.nan) for x in m["method"]],
                   gain_lower=[0.0 if x == "random" else v["lower"].get(x, np.nan) for x in m["method"]],
                   gain_upper=[0.0 if x == "random" else v["upper"].get(x, np.nan) for x in m["method"]],
                   verdict=["reference" if x == "random" else v["verdict"].get(x, "") for x in m["method"]],
                   basis="measured in this run (wall s)")
    return out[LEDGER_COLUMNS].round(3)


def paper_costs(paper_cfg, methods: list[str] | None = None) -> pd.DataFrame:
    """`PAPER_LEDGER_COLUMNS` planned at paper scale (`preflight.plan.plan`), one row per method of `methods`
    (default: CrowdSelect and the paper config's baselines); CrowdSelect's crowd is stated separately in `note`."""
    from ..preflight.plan import plan, train_steps

    p = plan({"paper": paper_cfg})
    rows = {r.step: r for r in p.rows}
    n_systems = max(1, sum(r.systems for r in p.rows if r.step.startswith("answer ")) //
                    max(1, len(paper_cfg.judge.benchmarks)))
    judge_calls = sum(r.llm_calls for s, r in rows.items() if s.startswith("judge "))
    judge_usd = sum(r.usd or 0.0 for s, r in rows.items() if s.startswith("judge "))
    steps = train_steps(paper_cfg, paper_cfg.training.methods[0]) * len(paper_cfg.training.seeds)
    crowd = crowd_cost()
    out = []
    for m in methods or ["crowdselect", *paper_cfg.baselines.methods]:
        r = rows.get(f"LLM baseline {m}")
        ifd = rows.get("IFD scoring") if m.startswith("ifd") else None
        note = (f"+ the crowd: {crowd['answers']:,} answers (~{crowd['answer_tokens'] / 1e6:,.0f}M tokens) and "
                f"{crowd['reward_model_passes']:,} reward-model passes, {PAID_ONCE}" if m == "crowdselect" else "")
        out.append({"method": m, "select_llm_calls": r.llm_calls if r else 0,
                    "select_tokens": (r.prompt_tokens + r.completion_tokens) if r else 0,
                    "select_usd": round(r.usd, 2) if r and r.usd is not None else 0.0,
                    "select_forward_passes": ifd.count // 2 if ifd else 0, "train_steps": steps,
                    "judge_calls_per_system": judge_calls // n_systems,
                    "judge_usd_per_system": round(judge_usd / n_systems, 2), "note": note})
    return pd.DataFrame(out, columns=PAPER_LEDGER_COLUMNS)


def plot_ledger(table: pd.DataFrame, title: str = ""):
    """Cost against gain: x = this run's total wall seconds per method (log scale when they span more than a factor
    of 10), y = its gain over Random with the 95% interval; Random sits at 0. Returns the figure."""
    import matplotlib.ticker

    from .plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    d = table.dropna(subset=["gain"])
    err = np.vstack([d["gain"] - d["gain_lower"], d["gain_upper"] - d["gain"]]).clip(min=0)
    ax.errorbar(d["total_s"].clip(lower=1e-2), d["gain"], yerr=err, fmt="o", color="k", ecolor="0.4", capsize=4)
    for x, y, name in zip(d["total_s"].clip(lower=1e-2), d["gain"], d["method"]):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axhline(0, color="k", lw=0.8, ls="--")
    ax.margins(x=0.12)                              # room for the rightmost method's name
    x = d["total_s"].clip(lower=1e-2)
    if len(x) and x.max() / x.min() > 10:        # a log axis only where costs span orders of magnitude
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.4g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("cost in this run: select + train + judge (wall seconds"
                  + (", log scale)" if ax.get_xscale() == "log" else ")"))
    bench = d["benchmark"].iloc[0] if len(d) else ""
    ax.set_ylabel(f"gain over Random ({bench}; 95%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
