"""Chapter 05's subsets as keyed steps (issue 10): ``runs/<run>/selections/<subset>/<key>/``.

A subset's key holds every setting it reads (its spec, `selection.k`, the resolved weights and response strategy,
`run.seed` for random answers, `official_compat` for clustered CrowdSelect, the reward model) and the keys of
its inputs (zoo, metrics, and clusters when clustered), so any change recomputes it and an unchanged rerun
reads it back.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import clustering
from ..metrics import load_run_metrics, metrics_step
from ..runs import Step, check_name, check_unique
from ..zoo import default_reward_model, load_run_zoo, zoo_step
from .pick import select, top_k
from .score import combine, percentile_ranks
from .table import compare_selections, publish_selection, read_selection, selection_table, write_selection

SELECTION_VERSION = "2"


def pick_subset(metrics: pd.DataFrame, spec, *, k: int, weights, clusters: pd.Series | None = None,
                official_compat: bool = False, cluster_quota: int | None = None) -> tuple[pd.Series, dict]:
    """The pick of one subset from a `config.SubsetSpec` -> (score per uuid in rank order, report). CrowdSelect
    takes equal per-cluster quotas (official multi-metric rule: k / C each, or `cluster_quota` each, the official
    file's hard-coded 100, giving quota x C rows), a single metric the official single-metric "union" rule."""
    if spec.metric == "crowdselect":
        score, rule = combine(metrics, spec.weights or weights), "equal"
    else:
        score, rule = metrics[spec.metric], "union"
    if spec.clustered and clusters is None:
        raise ValueError(f"subset {spec.name!r} is clustered but no cluster labels were given")
    use = clusters if spec.clustered else None
    if use is not None and spec.metric == "crowdselect" and cluster_quota is not None:
        k = cluster_quota * clusters.nunique()
    return select(score, k, spec.direction, use, rule, official_compat and spec.metric == "crowdselect")


def select_subset(zoo, metrics: pd.DataFrame, spec, *, k: int, weights, response: str = "best",
                  clusters: pd.Series | None = None, official_compat: bool = False, reward_model: str | None = None,
                  seed: int = 0, cluster_quota: int | None = None,
                  response_reward_model: str | None = None) -> tuple[pd.DataFrame, dict]:
    """One subset (`pick_subset`) with its answers -> (selection table, report). The answer is `response`'s,
    scored by `response_reward_model` (default: `reward_model`, eq. 2)."""
    ranked, report = pick_subset(metrics, spec, k=k, weights=weights, clusters=clusters,
                                 official_compat=official_compat, cluster_quota=cluster_quota)
    table = selection_table(zoo, ranked, method=spec.name, reward_model=response_reward_model or reward_model,
                            response=spec.response or response, seed=seed, metrics=metrics,
                            clusters=clusters if spec.clustered else None)
    return table, report


def subset_spec(cfg, name: str):
    for spec in cfg.selection.subsets:
        if spec.name == name:
            return spec
    raise KeyError(f"no subset {name!r} in selection.subsets (have: {[s.name for s in cfg.selection.subsets]})")


def subset_settings(cfg, spec) -> dict:
    """Exactly the config values the subset reads, resolved (so equal meaning gives an equal key)."""
    s = cfg.selection
    response = spec.response or s.response
    out = {"metric": spec.metric, "direction": spec.direction, "clustered": spec.clustered, "k": s.k,
           "response": response, "reward_model": default_reward_model(cfg)}
    if spec.metric == "crowdselect":
        out["weights"] = [float(w) for w in (spec.weights or s.weights)]
        if spec.clustered:
            out["official_compat"] = s.official_compat
            out["cluster_quota"] = s.cluster_quota
    if s.response_reward_model is not None:
        out["response_reward_model"] = s.response_reward_model
    if response in ("random", "top5_random"):
        out["seed"] = cfg.run.seed
    return out


def selection_step(run, cfg, subset_name: str) -> Step:
    """The key of one subset of `selection.subsets` (pure: the config and the upstream keys)."""
    spec = subset_spec(cfg, subset_name)
    inputs = {"zoo": zoo_step(run, cfg), "metrics": metrics_step(run, cfg)}
    if spec.clustered:
        inputs["clusters"] = clustering.clusters_step(run, cfg)
    return Step(run.dir, "selections", check_name(spec.name, "subset name"), subset_settings(cfg, spec), inputs,
                SELECTION_VERSION, "crowdselect_lib.selection")


class _Inputs:
    """Zoo, metrics and clusters of a run, each loaded once and only when a subset has to be computed."""

    def __init__(self, run, cfg):
        self.run, self.cfg, self._cache = run, cfg, {}

    def get(self, what: str):
        if what not in self._cache:
            load = {"zoo": load_run_zoo, "metrics": load_run_metrics, "clusters": clustering.load_run_clusters}[what]
            self._cache[what] = load(self.run, self.cfg)
        return self._cache[what]


def _compute(run, cfg, st: Step, spec, inputs: _Inputs) -> tuple[pd.DataFrame, dict]:
    s = cfg.selection
    table, report = select_subset(
        inputs.get("zoo"), inputs.get("metrics"), spec, k=s.k, weights=s.weights, response=s.response,
        clusters=inputs.get("clusters") if spec.clustered else None, official_compat=s.official_compat,
        reward_model=st.settings["reward_model"], seed=cfg.run.seed, cluster_quota=s.cluster_quota,
        response_reward_model=s.response_reward_model)
    report.update(name=spec.name, settings=st.settings)     # no key: equal bytes across code edits (early cutoff)
    write_selection(run, st, table, spec.name, report)
    return table, {**report, "key": st.key}


def load_run_selection(run, cfg, name: str) -> pd.DataFrame:
    """The selection table of subset `name` for `cfg`: read when its step is done, else computed (chapter 05)."""
    return _load(run, cfg, name, _Inputs(run, cfg))[0]


def _load(run, cfg, name: str, inputs: _Inputs) -> tuple[pd.DataFrame, dict]:
    st = selection_step(run, cfg, name).announce()
    if st.done:
        publish_selection(run, st, name)
        return read_selection(st)
    return _compute(run, cfg, st, subset_spec(cfg, name), inputs)


def run_selections(run, cfg) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Every subset of `selection.subsets` -> ({name: table}, one summary row per subset)."""
    check_unique([s.name for s in cfg.selection.subsets], "subset name")
    inputs = _Inputs(run, cfg)
    tables, reports = {}, {}
    for spec in cfg.selection.subsets:
        tables[spec.name], reports[spec.name] = _load(run, cfg, spec.name, inputs)
    summary = pd.DataFrame({n: {"metric": r["settings"]["metric"], "direction": r["direction"], "k": r["k"],
                                "clustered": r["clustered"], "shortfall_filled": r["filled"], "key": r["key"]}
                            for n, r in reports.items()}).T
    return tables, summary


def selection_reports(run, cfg) -> dict[str, dict]:
    """The report of every subset (after `run_selections`)."""
    return {s.name: read_selection(selection_step(run, cfg, s.name))[1] for s in cfg.selection.subsets}


# ------------------------------------------------------------------ what chapter 05 shows

def _crowdselect_spec(cfg, name: str | None):
    specs = [s for s in cfg.selection.subsets if s.metric == "crowdselect" and (name is None or s.name == name)]
    if not specs:
        raise KeyError("no CrowdSelect subset in selection.subsets")
    return specs[0]


def quota_table(run, cfg, name: str | None = None) -> pd.DataFrame:
    """Per cluster: its size, the quota the clustered CrowdSelect subset enforces, what it took, and what the plain
    top-k by the same score (no quota) would have taken."""
    spec = _crowdselect_spec(cfg, name)
    _, report = _load(run, cfg, spec.name, _Inputs(run, cfg))
    if not report["clustered"]:
        raise ValueError(f"subset {spec.name!r} is not clustered: it has no quota")
    metrics, clusters = load_run_metrics(run, cfg), clustering.load_run_clusters(run, cfg)
    plain = top_k(combine(metrics, spec.weights or cfg.selection.weights), cfg.selection.k)
    out = pd.DataFrame(report["clusters"]).T.rename_axis("cluster")
    out.index = out.index.astype(int)
    out["top_k_without_quota"] = clusters.reindex(plain.index).value_counts().reindex(out.index, fill_value=0)
    return out.sort_index()


def official_sort_comparison(run, cfg, name: str | None = None) -> pd.DataFrame:
    """The clustered CrowdSelect subset ordered by score inside each cluster (the paper's intent) against the
    official code's uuid-string sort (`selection.official_compat`): metric means and Jaccard overlap."""
    spec = _crowdselect_spec(cfg, name)
    inputs, s = _Inputs(run, cfg), cfg.selection
    both = {label: select_subset(inputs.get("zoo"), inputs.get("metrics"), spec, k=s.k, weights=s.weights,
                                 response=s.response, clusters=inputs.get("clusters"), official_compat=compat,
                                 reward_model=default_reward_model(cfg), seed=cfg.run.seed)[0]
            for label, compat in (("by score", False), ("official uuid sort", True))}
    return compare_selections(both, reference="by score")


def subset_profiles(tables: dict[str, pd.DataFrame], metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean percentile rank (0..1, 0.5 = the zoo's median) of each metric inside each subset; ``attrs["n"]`` the
    subset sizes and ``attrs["se"]`` the standard errors of the means (sd / sqrt(n)): a 6-row subset's mean is
    far less certain than a 300-row one's."""
    pct = percentile_ranks(metrics)
    parts = {n: pct.reindex(t["uuid"]) for n, t in tables.items()}
    out = pd.DataFrame({n: p.mean() for n, p in parts.items()}).T
    out.attrs["n"] = {n: len(p) for n, p in parts.items()}
    out.attrs["se"] = pd.DataFrame({n: p.std(ddof=1) / np.sqrt(len(p)) for n, p in parts.items()}).T
    return out
