"""The registry of baselines and their keyed steps (issue 10): ``runs/<run>/baselines/<method>/<key>/``.

`baseline_step(run, cfg, method)` is the pure key of a baseline's selection table: its name, the config values it
reads, `selection.k`, the reward model, and the keys of its inputs (zoo, metrics and clusters for the table's
metric columns, and for LLM / IFD baselines the step of their costly per-item work, whose key holds the LLM's
identity — backend, base_url, model, generation settings, prompt digest — or the IFD model). `load_run_baseline`
reads a finished one; a rule-based or embedding baseline is computed on demand, an LLM / IFD baseline only when its
costly work is done (else it raises naming chapter 06). `run_baseline` (chapter 06) computes whatever is missing.
The table, its report and its exports (chat JSONL, LLaMA-Factory JSON) are written into the step's folder.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from .. import clustering
from ..models import quiet
from ..metrics import load_run_metrics, metrics_step
from ..runs import Step, check_name, check_unique
from ..selection import publish_selection, read_selection, write_selection
from ..zoo import default_reward_model, load_run_zoo, zoo_step
from . import coreset, ifd, llm_rated, rule_based, selectllm
from .asking import client
from .common import BASELINE_CODE, Baseline, Context, build_table

VERSION = "1"
REGISTRY: dict[str, Baseline] = {b.name: b for mod in (rule_based, llm_rated, ifd, selectllm, coreset)
                                 for b in mod.BASELINES}
METHODS = tuple(REGISTRY)


def resolve(method: str) -> Baseline:
    """The spec of `method` (``random_s<N>`` is Random with seed N)."""
    check_name(method, "baseline name")
    if rule_based.RANDOM_SEED_NAME.match(method):
        base = REGISTRY["random"]
        return dataclasses.replace(base, name=method, label=f"{base.label} (seed {method[8:]})")
    if method not in REGISTRY:
        raise ValueError(f"unknown baseline {method!r}; choose from {list(METHODS)} or random_s<seed>")
    return REGISTRY[method]


def methods_table() -> pd.DataFrame:
    """One row per registered baseline: its table label, whether the paper has it, its kind and rule."""
    return pd.DataFrame([{"method": b.name, "label": b.label, "in_paper": b.paper, "kind": b.kind, "rule": b.rule}
                         for b in REGISTRY.values()]).set_index("method")


def baseline_step(run, cfg, method: str) -> Step:
    """The key of one baseline's selection table (pure: the config and the upstream keys; loads nothing)."""
    spec = resolve(method)
    settings = {"k": cfg.selection.k, "reward_model": default_reward_model(cfg), **spec.settings(cfg, method)}
    inputs = {"zoo": zoo_step(run, cfg), "metrics": metrics_step(run, cfg),
              "clusters": clustering.clusters_step(run, cfg)}
    if spec.work is not None:
        inputs["work"] = spec.work(run, cfg, method)
    return Step(run.dir, "baselines", method, settings, inputs, VERSION, BASELINE_CODE)


class _Inputs:
    """Zoo, metrics, clusters and the LLM client, each made once and only when a baseline is computed."""

    def __init__(self, run, cfg, llm=None):
        self.run, self.cfg, self._llm, self._cache = run, cfg, llm, {}

    def get(self, what: str):
        if what not in self._cache:
            load = {"zoo": load_run_zoo, "metrics": load_run_metrics, "clusters": clustering.load_run_clusters}[what]
            self._cache[what] = load(self.run, self.cfg)
        return self._cache[what]

    def llm(self):
        if self._llm is None:
            self._llm = client(self.run, self.cfg)
        return self._llm


def _load(run, cfg, method: str, inputs: _Inputs, costly: bool) -> tuple[pd.DataFrame, dict]:
    spec = resolve(method)
    st = baseline_step(run, cfg, method).announce()
    if st.done:
        publish_selection(run, st, method)
        return read_selection(st)
    if spec.work is not None and not costly:
        work = spec.work(run, cfg, method)
        if not work.done:
            raise FileNotFoundError(f"baseline {method!r} needs step {work.label} ({work.key}), which is not "
                                    "computed for this config: run chapter 06 (notebook 06_baselines) first")
    ctx = Context(run, cfg, method, inputs.get("zoo"), inputs.llm)
    with quiet():                      # model loading / generation noise stays out of the notebooks
        picked = spec.select(ctx)
    table = build_table(ctx, picked, inputs.get("metrics"), inputs.get("clusters"))
    report = {"method": method, "label": spec.label, "in_paper": spec.paper, "kind": spec.kind,
              "k": int(len(table)), **picked.report, "rows": int(len(table)), "settings": st.settings}
    report.setdefault("shortfall", 0)
    write_selection(run, st, table, method, report)       # no key in the file: early cutoff (runs.step)
    return table, {**report, "key": st.key}


def load_run_baseline(run, cfg, method: str) -> pd.DataFrame:
    """The selection table of baseline `method` for `cfg` (what training reads). Rule-based and embedding
    baselines are computed on demand; an LLM / IFD baseline whose costly step is missing raises."""
    return _load(run, cfg, method, _Inputs(run, cfg), costly=False)[0]


def run_baseline(run, cfg, method: str, llm=None) -> tuple[pd.DataFrame, dict]:
    """Chapter 06: baseline `method` -> (selection table, report), computing what is missing (LLM calls go
    through the reply cache; `llm` replaces the configured client, e.g. in tests)."""
    return _load(run, cfg, method, _Inputs(run, cfg, llm), costly=True)


def run_baselines(run, cfg, methods: list[str] | None = None, llm=None) -> tuple[dict[str, pd.DataFrame], dict]:
    """Every baseline of `methods` (default `baselines.methods`) -> ({name: table}, {name: report})."""
    names = check_unique(list(methods if methods is not None else cfg.baselines.methods), "baseline name")
    inputs = _Inputs(run, cfg, llm)
    out = {m: _load(run, cfg, m, inputs, costly=True) for m in names}
    return {m: t for m, (t, _) in out.items()}, {m: r for m, (_, r) in out.items()}


def methods_of(cfg, *kinds: str) -> list[str]:
    """The baselines of `baselines.methods` whose kind is one of `kinds` (rule, embedding, llm, ifd), in order."""
    return [m for m in cfg.baselines.methods if resolve(m).kind in kinds]


def reply_examples(run, cfg, n: int = 3) -> pd.DataFrame:
    """The first `n` recorded LLM replies of each LLM baseline step that is done (chapter 06 shows them)."""
    steps = {"direct_score": llm_rated.work_step(run, cfg, "direct_score"),
             "instag": llm_rated.work_step(run, cfg, "instag"), "selectllm": selectllm.work_step(run, cfg)}
    cols = ["reply", "attempts", "truncated", "error"]
    parts = {m: pd.read_parquet(st.dir / ("queries.parquet" if m == "selectllm" else "items.parquet"))[cols].head(n)
             for m, st in steps.items() if st.done}
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, names=["method", "item"])
    out["error"] = out["error"].astype(object).where(out["error"].notna(), None)   # valid: None in every step
    return out


REPORT_COLUMNS = ["label", "in_paper", "k", "rows", "candidates", "asked", "failed", "retried", "truncated",
                  "shortfall"]


def baseline_reports(reports: dict[str, dict], extra: list[str] = ()) -> pd.DataFrame:
    """One row per baseline: its label, whether the paper has it, the k it was asked for, candidates scored, LLM
    requests / failures / retries / cut-off replies, shortfall (rows it could not supply), plus `extra` fields."""
    cols = [*REPORT_COLUMNS, *extra]
    out = pd.DataFrame([{c: r.get(c) for c in cols} for r in reports.values()],
                       index=pd.Index(list(reports), name="method"), columns=cols)
    return out.drop(columns=[c for c in extra if out[c].isna().all()])   # an extra field no baseline here has
