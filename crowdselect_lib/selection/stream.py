"""``select --stream``: CrowdSelect on a local crowd larger than memory (issue 22), the same subset as ``select``.

The in-memory path loads the whole crowd, answers included, into a `Zoo`. This one reads the crowd's files by
batches, twice, and holds only what the method needs:

1. `zoo.ScoreStream` gives the metrics (eqs. 3-5, `metrics.streamed_metrics`) and each kept instruction's text in the
   zoo's order. An incomplete instruction (a missing row, a NaN score, a blank answer) is dropped and counted, as
   ``zoo.drop_incomplete: true`` does.
2. The clusters (K-means over the instructions' embeddings, §3.3) and the pick (eqs. 6-9, `pick.select`) need
   nothing else.
3. `zoo.read_rows` reads back only the picked instructions' rows, to pair each with its answer (eq. 2).

The steps are keyed under ``<run>/stream/`` (metrics, clusters, subset) on the crowd files' content and the settings,
so a second call reuses them. The training file equals the in-memory command's byte for byte
(`tests/test_local_crowd.py`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import clustering
from ..metrics import streamed_metrics
from ..runs import Step, check_name, slug, write_parquet
from ..zoo import (ScoreStream, Zoo, ZooError, data_fingerprint, default_reward_model, local_reward_models,
                   read_local_models, read_rows)
from ..zoo.local import TEXT_COLUMNS
from .run import pick_subset, subset_settings, subset_spec
from .table import publish_selection, read_selection, selection_table, write_selection

STREAM_VERSION = "1"
BATCH_ROWS = 1 << 16        # rows per Arrow record batch read (memory: one batch plus the instructions still open)


def _crowd(cfg) -> tuple[Path, str]:
    """(crowd folder, the reward model the metrics read: `metrics.reward_model`, else the crowd's first score
    column)."""
    if cfg.zoo.source != "local" or cfg.zoo.data_dir is None:
        raise ZooError("a streamed selection reads a local crowd: zoo.source local with zoo.data_dir")
    d = Path(cfg.zoo.data_dir)
    have, rm = local_reward_models(d), default_reward_model(cfg)
    if rm not in have:
        raise ZooError(f"reward model {rm!r} is not a score column of the crowd; it has {have}")
    return d, rm


def metrics_step(run, cfg) -> Step:
    """The key of the streamed metrics (pure: the crowd files' content and the metric settings)."""
    d, rm = _crowd(cfg)
    settings = {"reward_model": rm, "stability_families": cfg.metrics.stability_families,
                "stability_ties": cfg.metrics.stability_ties, "drop_incomplete": True}
    return Step(run.dir, "stream", check_name(f"metrics-{slug(rm)}", "stream step"), settings,
                {"crowd": data_fingerprint("local", d)}, STREAM_VERSION,
                ("crowdselect_lib.selection", "crowdselect_lib.metrics", "crowdselect_lib.zoo"))


def load_metrics(run, cfg) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(metrics indexed by uuid in the zoo's order, ``uuid, instruction`` of the kept instructions, the stream's
    counts) from one pass over the crowd; read back when done."""
    st = metrics_step(run, cfg).announce()
    if not st.done:
        d, rm = _crowd(cfg)
        stream = ScoreStream(d, rm, batch_rows=BATCH_ROWS, drop_incomplete=True)
        met = streamed_metrics(stream, stream.families(), cfg.metrics.stability_families, cfg.metrics.stability_ties)
        inst = stream.instructions()
        families = met.attrs["stability_families"]
        met = met.reindex(pd.Index(inst["uuid"], name="uuid"))      # the in-memory zoo's order
        write_parquet(met, st.path("metrics.parquet"))
        write_parquet(inst, st.path("instructions.parquet"))
        st.finish(stability_families=families, models=stream.models_present,
                  **stream.stats)                                 # rows: the crowd's; instructions: kept
    m = st.manifest()
    met = pd.read_parquet(st.dir / "metrics.parquet")
    met.attrs.update(stability_families=m["stability_families"], reward_model=st.settings["reward_model"])
    counts = {k: m[k] for k in ("rows", "instructions", "dropped_incomplete", "max_buffered_rows")}
    counts["dropped_reasons"] = {k: m["dropped_reasons"][k] for k in ("no_answer", "nan_score", "missing_rows")}
    counts["models"] = m["models"]
    return met, pd.read_parquet(st.dir / "instructions.parquet"), counts


def clusters_step(run, cfg) -> Step:
    """The key of the clusters of the streamed instructions (the settings of `clustering.clusters_step`)."""
    return Step(run.dir, "stream", f"clusters-k{cfg.clustering.n_clusters}", clustering.clusters_settings(cfg),
                {"metrics": metrics_step(run, cfg)}, STREAM_VERSION, "crowdselect_lib.clustering")


def load_clusters(run, cfg, instructions: pd.DataFrame) -> pd.Series:
    """Cluster label per uuid: K-means over the embeddings of `instructions` (in the zoo's order, so the official
    batch-of-32 pooling sees the batches the in-memory path sees)."""
    st = clusters_step(run, cfg).announce()
    if st.done:
        return clustering.read_clusters(st)
    vecs = clustering.embed(instructions["instruction"].tolist(), cfg.embedding, run.dir / "cache" / "embeddings")
    return clustering.fit_clusters(st, instructions["uuid"].to_numpy(), vecs, cfg.clustering)


def selection_step(run, cfg, name: str) -> Step:
    """The key of one streamed subset (the settings of `run.selection_step`, on the streamed inputs)."""
    spec = subset_spec(cfg, name)
    inputs = {"metrics": metrics_step(run, cfg)}
    if spec.clustered:
        inputs["clusters"] = clusters_step(run, cfg)
    return Step(run.dir, "stream", check_name(f"selection-{spec.name}", "stream step"), subset_settings(cfg, spec),
                inputs, STREAM_VERSION, "crowdselect_lib.selection")


def picked_zoo(cfg, uuids, counts: dict) -> Zoo:
    """A `Zoo` of the given instructions' rows only, read back from the crowd's files (none: the crowd's models and
    counts only, what `command.explain` prints). `counts`: `load_metrics`'s, with the models that have rows."""
    d, rm = _crowd(cfg)
    scores = local_reward_models(d)
    rows = read_rows(d, uuids, batch_rows=BATCH_ROWS) if len(uuids) else pd.DataFrame(columns=TEXT_COLUMNS + scores)
    rows[scores] = rows[scores].apply(pd.to_numeric)
    models = read_local_models(d)
    models = models[models["model"].isin(counts["models"])].reset_index(drop=True)    # as `validate` keeps them
    info = {"data_version": f"local:{d}", **{k: v for k, v in counts.items() if k != "models"}}
    return Zoo(rows, models, scores, "local", rm, info=info)


def streamed_selection(run, cfg, name: str) -> tuple[pd.DataFrame, dict, Zoo, pd.DataFrame]:
    """(selection table, report, the picked instructions' zoo, the metrics) of subset `name` on the streamed crowd."""
    metrics, instructions, counts = load_metrics(run, cfg)
    spec = subset_spec(cfg, name)
    st = selection_step(run, cfg, name).announce()
    if st.done:
        publish_selection(run, st, spec.name)                    # dataset_info.json serves this subset again
        table, report = read_selection(st)                       # reused: no pass over the crowd
        return table, report, picked_zoo(cfg, [], counts), metrics
    clusters = load_clusters(run, cfg, instructions) if spec.clustered else None
    s = cfg.selection
    ranked, report = pick_subset(metrics, spec, k=s.k, weights=s.weights, clusters=clusters,
                                 official_compat=s.official_compat, cluster_quota=s.cluster_quota)
    zoo = picked_zoo(cfg, ranked.index, counts)
    table = selection_table(zoo, ranked, method=spec.name,
                            reward_model=s.response_reward_model or st.settings["reward_model"],
                            response=spec.response or s.response, seed=cfg.run.seed, metrics=metrics,
                            clusters=clusters)
    report.update(name=spec.name, settings=st.settings)
    write_selection(run, st, table, spec.name, report)
    return table, {**report, "key": st.key}, zoo, metrics
