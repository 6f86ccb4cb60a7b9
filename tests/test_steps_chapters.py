"""Chapters 01, 03, 05 as keyed steps (issue 10): every "Try this" override and the README's papermill example change
the output they say they change under the same run name; an unchanged rerun computes nothing.

Clusters come from chapter 04 (`clustering.clusters_step` / `load_run_clusters`); here a fast stand-in keyed by
`clustering.n_clusters` replaces them, so these tests need no embedding model."""
import json

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib.runs import Run, Step, steps_computed
from tests.conftest import REPO


@pytest.fixture
def fake_clusters(monkeypatch):
    def clusters_step(run, cfg):
        return Step(run.dir, "clusters", "fake", {"n_clusters": cfg.clustering.n_clusters},
                    {"zoo": cs.zoo.zoo_step(run, cfg).key}, "1")

    def load_run_clusters(run, cfg):
        st = clusters_step(run, cfg).announce()
        u = cs.zoo.load_run_zoo(run, cfg).instructions()["uuid"]
        if not st.done:
            st.finish()
        return pd.Series(np.arange(len(u)) % cfg.clustering.n_clusters, index=pd.Index(u, name="uuid"), name="cluster")

    monkeypatch.setattr(cs.clustering, "clusters_step", clusters_step, raising=False)
    monkeypatch.setattr(cs.clustering, "load_run_clusters", load_run_clusters)


def _setup(tmp_path, **overrides):
    cfg = cs.load_config(REPO / "tests" / "smoke.yaml", {"run.root": str(tmp_path), "run.name": "ch", **overrides})
    return cfg, Run.from_config(cfg)


def _chain(tmp_path, **overrides):
    """01 -> 03 -> 05 through their library entry points."""
    cfg, run = _setup(tmp_path, **overrides)
    zoo = cs.zoo.load_run_zoo(run, cfg)
    metrics = {rm: cs.metrics.load_run_metrics(run, cfg, rm) for rm in zoo.reward_models}
    tables, _ = cs.selection.run_selections(run, cfg)
    return zoo, metrics, tables


def test_unchanged_rerun_computes_nothing(tmp_path, fake_clusters):
    before = steps_computed()
    _chain(tmp_path)
    first = steps_computed() - before
    assert first == 1 + 3 + 1 + 7          # zoo, 3 reward models' metrics, clusters, 7 subsets
    again = steps_computed()
    zoo, metrics, tables = _chain(tmp_path)
    assert steps_computed() == again and len(tables) == 7


def test_readme_papermill_example_changes_the_saved_selection(tmp_path, fake_clusters):
    _, _, first = _chain(tmp_path)
    override = {"selection.weights": [1, -1, 1.5], "selection.k": 60}
    cfg, run = _setup(tmp_path, **override)
    second = cs.selection.load_run_selection(run, cfg, "crowdselect")
    assert len(first["crowdselect"]) == 40 and len(second) == 60
    assert set(second["uuid"]) != set(first["crowdselect"]["uuid"])
    latest = pd.read_parquet(run.dir / "selections" / "crowdselect" / "latest" / "selection.parquet")
    pd.testing.assert_frame_equal(latest, second)
    # the weights alone change the subset too (same k)
    cfg1, run1 = _setup(tmp_path, **{"selection.weights": [1, -1, 1.5]})
    alone = cs.selection.load_run_selection(run1, cfg1, "crowdselect")
    assert set(alone["uuid"]) != set(first["crowdselect"]["uuid"])
    assert set(first["difficulty_top"]["uuid"]) == set(cs.selection.load_run_selection(run1, cfg1, "difficulty_top")["uuid"])


@pytest.mark.parametrize("override, subset, column", [
    ({"selection.response": "top5_random"}, "crowdselect", "model"),              # 05 Try this (Table 1)
    ({"clustering.n_clusters": 20, "selection.official_compat": True}, "crowdselect", "uuid"),   # 05 Try this
    ({"selection.k": 60}, "difficulty_top", "uuid"),
    ({"metrics.reward_model": "sim-ArmoRM-Llama3-8B-v0.1"}, "separability_top", "uuid"),   # 03 Try this
])
def test_chapter05_try_this_changes_the_subset(tmp_path, fake_clusters, override, subset, column):
    _, _, first = _chain(tmp_path)
    cfg, run = _setup(tmp_path, **override)
    second = cs.selection.load_run_selection(run, cfg, subset)
    assert first[subset][column].tolist() != second[column].tolist()


def test_chapter03_stability_families_changes_only_stability(tmp_path):
    cfg, run = _setup(tmp_path)
    a = cs.metrics.load_run_metrics(run, cfg)
    five = ["qwen2.5", "llama-3.1", "gemma-2", "phi-3", "qwen2"]           # 03 Try this: the paper's "five families"
    cfg5, run5 = _setup(tmp_path, **{"metrics.stability_families": five})
    b = cs.metrics.load_run_metrics(run5, cfg5)
    assert b.attrs["stability_families"] == sorted(five) and len(a.attrs["stability_families"]) == 6
    assert (a["stability"] != b["stability"]).any()
    pd.testing.assert_frame_equal(a[["difficulty", "separability"]], b[["difficulty", "separability"]])


def test_chapter01_try_this_changes_the_zoo(tmp_path, shared_data):
    cfg, run = _setup(tmp_path)
    base = cs.zoo.load_run_zoo(run, cfg)
    bigger = cs.zoo.load_run_zoo(*reversed(_setup(tmp_path, **{"zoo.n_instructions": 600})))
    reseeded = cs.zoo.load_run_zoo(*reversed(_setup(tmp_path, **{"run.seed": 1})))
    real = cs.zoo.load_run_zoo(*reversed(_setup(tmp_path, **{"zoo.source": "alpacaeval", "zoo.drop_incomplete": True,
                                                              "zoo.data_dir": str(shared_data / "alpacaeval_zoo")})))
    assert len(base.instructions()) == 400 and len(bigger.instructions()) == 600
    assert not np.array_equal(base.scores().to_numpy(), reseeded.scores().to_numpy())
    assert real.source == "alpacaeval" and real.scores().shape[1] == 56
    assert {p.name for p in (run.dir / "zoo").iterdir()} >= {"demo", "alpacaeval", "index.json"}


def test_changed_local_input_file_changes_the_zoo_key(tmp_path, shared_data):
    src = shared_data / "alpacaeval_zoo"
    data = tmp_path / "data"
    data.mkdir()
    for f in ("instructions.parquet", "responses.parquet"):
        (data / f).write_bytes((src / f).read_bytes())
    over = {"zoo.source": "alpacaeval", "zoo.drop_incomplete": True, "zoo.data_dir": str(data), "zoo.limit": 30}
    cfg, run = _setup(tmp_path, **over)
    key = cs.zoo.zoo_step(run, cfg).key
    a = cs.zoo.load_run_zoo(run, cfg)
    resp = pd.read_parquet(data / "responses.parquet")
    resp.loc[resp["instruction"] == a.instructions()["instruction"].iloc[0], "preference"] = 1.0
    resp.to_parquet(data / "responses.parquet")
    assert cs.zoo.zoo_step(run, cfg).key != key
    b = cs.zoo.load_run_zoo(run, cfg)
    assert (b.scores().iloc[0] == 1.0).all() and not (a.scores().iloc[0] == 1.0).all()


def test_exports_live_in_the_step_and_dataset_info_is_merged(tmp_path, fake_clusters):
    cfg, run = _setup(tmp_path)
    tables, summary = cs.selection.run_selections(run, cfg)
    st = cs.selection.selection_step(run, cfg, "crowdselect")
    chat = [json.loads(line) for line in (st.dir / "crowdselect.jsonl").read_text().splitlines()]
    assert chat == cs.selection.to_chat_messages(tables["crowdselect"])
    info = json.loads((run.dir / "dataset_info.json").read_text())
    assert set(info) == {s.name for s in cfg.selection.subsets}
    rows = json.loads((run.dir / info["crowdselect"]["file_name"]).read_text())
    assert rows[0]["output"] == tables["crowdselect"]["response"].iloc[0]
    assert summary.loc["crowdselect", "key"] == st.key and st.manifest()["inputs"]["clusters"]
    quotas = cs.selection.quota_table(run, cfg)
    assert quotas["quota"].tolist() == [4] * 10 and quotas["taken"].tolist() == [4] * 10
    assert quotas["top_k_without_quota"].sum() == 40


def test_official_sort_comparison_and_profiles(tmp_path, fake_clusters):
    cfg, run = _setup(tmp_path)
    tables, _ = cs.selection.run_selections(run, cfg)
    cmp = cs.selection.official_sort_comparison(run, cfg)
    assert cmp.loc["by score", "jaccard_vs_by score"] == 1.0 and cmp.loc["official uuid sort", "jaccard_vs_by score"] < 0.5
    prof = cs.selection.subset_profiles(tables, cs.metrics.load_run_metrics(run, cfg))
    assert prof.loc["difficulty_top", "difficulty"] > 0.9 and prof.loc["difficulty_bottom", "difficulty"] < 0.1
