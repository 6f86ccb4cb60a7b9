"""Trust the cache (issue 25): keys follow the code, early cutoff on what upstream wrote, verified files, `latest`
and the exports follow the current settings, corrupt bookkeeping named, writes kept inside the run folder."""
from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import sys
import time

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib.runs import (BadFileError, Run, Step, UnsafePathError, append_jsonl, code_digest, fingerprint,
                                  steps_computed)
from crowdselect_lib.runs import content
from tests.conftest import REPO

pytestmark = pytest.mark.faults


@pytest.fixture
def run(tmp_path):
    return Run.from_config(cs.load_config(None, {"run.root": str(tmp_path), "run.name": "t"}))


def _chain(tmp_path, **overrides):
    """Chapters 01 -> 03 -> 05 for one unclustered subset of the smoke config."""
    cfg = cs.load_config(REPO / "tests" / "smoke.yaml", {"run.root": str(tmp_path), "run.name": "c", **overrides})
    run = Run.from_config(cfg)
    name = next(s.name for s in cfg.selection.subsets if not s.clustered)
    return cfg, run, name, cs.selection.load_run_selection(run, cfg, name)


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    """A module of its own whose source a test edits (its code digest follows the file)."""
    (tmp_path / "mods").mkdir()
    path = tmp_path / "mods" / "tinystage.py"
    path.write_text('"""Tiny stage."""\nVALUE = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    yield importlib.import_module("tinystage"), path
    sys.modules.pop("tinystage", None)


# ------------------------------------------------------------------ keys follow the code; early cutoff

def test_one_line_edit_of_the_metrics_module_changes_the_metrics_key(tmp_path, monkeypatch):
    cfg = cs.load_config(REPO / "tests" / "smoke.yaml", {"run.root": str(tmp_path)})
    run = Run.from_config(cfg)
    key = cs.metrics.metrics_step(run, cfg).key
    copy = tmp_path / "metrics.py"
    src = (REPO / "crowdselect_lib" / "metrics.py").read_text()
    copy.write_text(src.replace("import math\n", "import math  # one edited line\n", 1))
    monkeypatch.setattr(cs.metrics, "__file__", str(copy))
    assert cs.metrics.metrics_step(run, cfg).key != key
    copy.write_text(src)
    assert cs.metrics.metrics_step(run, cfg).key == key        # by content: the same bytes, the same key


def test_package_version_is_not_in_the_key(run, monkeypatch):
    key = run.step("s", "a", settings={}).key
    monkeypatch.setattr("crowdselect_lib.runs.step.__version__", "99.0")
    assert run.step("s", "a", settings={}).key == key


def test_pending_upstream_then_early_cutoff(run, tiny_module):
    mod, path = tiny_module
    here = "tests.test_faults_cache"
    up = Step(run.dir, "up", "a", {"n": 1}, code=mod)
    down = Step(run.dir, "down", "b", {}, {"a": up}, code=here)
    assert not down.done and down.pending == ["a"]              # upstream not computed: downstream not done
    up.table(lambda: pd.DataFrame({"x": [1, 2]}))
    assert down.pending == [] and not down.done                   # its real key is known now
    down.table(lambda: pd.DataFrame({"y": [3]}))
    path.write_text('"""Tiny stage, its docstring edited."""\nVALUE = 1\n')   # an edit of the upstream's code
    up2 = Step(run.dir, "up", "a", {"n": 1}, code=mod)
    assert up2.key != up.key and not up2.done
    up2.table(lambda: pd.DataFrame({"x": [1, 2]}))                # recomputed: byte-identical output
    assert up2.manifest()["outputs"] == up.manifest()["outputs"]
    below = Step(run.dir, "down", "b", {}, {"a": up2}, code=here)
    assert below.key == down.key and below.done                    # reused: early cutoff
    up3 = Step(run.dir, "up", "a", {"n": 2}, code=mod)
    up3.table(lambda: pd.DataFrame({"x": [1, 3]}))                # different bytes ...
    assert not Step(run.dir, "down", "b", {}, {"a": up3}, code=here).done   # ... recompute below


def test_docstring_edit_in_selection_recomputes_it_and_reuses_every_step_below(tmp_path, monkeypatch):
    cfg, run, name, table = _chain(tmp_path)
    sel = cs.selection.selection_step(run, cfg, name)
    sel_key, sel_outputs = sel.key, sel.manifest()["outputs"]
    train = cs.training.train_step(run, cfg, name, "tiny-llama", "sft_lora", 42)
    train.path("model", "weights.bin").write_bytes(b"weights")     # a finished training (no GPU-hours here)
    train.finish()
    pkg = tmp_path / "selection_copy"
    shutil.copytree(REPO / "crowdselect_lib" / "selection", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    pick = pkg / "pick.py"
    pick.write_text(pick.read_text().replace('"""', '"""Edited docstring. ', 1))
    monkeypatch.setattr(cs.selection, "__path__", [str(pkg)])
    edited = cs.selection.selection_step(run, cfg, name)
    assert edited.key != sel_key and not edited.done
    before = steps_computed()
    again = cs.selection.load_run_selection(run, cfg, name)
    assert steps_computed() == before + 1                          # the selection was recomputed ...
    pd.testing.assert_frame_equal(again, table)
    assert edited.manifest()["outputs"] == sel_outputs             # ... byte-identical
    below = cs.training.train_step(run, cfg, name, "tiny-llama", "sft_lora", 42)
    assert below.key == train.key and below.done                   # so the training below is reused


def test_k_31_then_back_to_30_points_latest_and_dataset_info_at_30_rows(tmp_path):
    for k in (30, 31, 30):
        cfg, run, name, table = _chain(tmp_path, **{"selection.k": k})
        assert len(table) == k
    latest = run.dir / "selections" / name / "latest"
    assert len(pd.read_parquet(latest / "selection.parquet")) == 30
    entry = json.loads((run.dir / "dataset_info.json").read_text())[name]
    assert len(json.loads((run.dir / entry["file_name"]).read_text())) == 30
    index = json.loads((run.dir / "selections" / "index.json").read_text())
    assert index[name]["key"] == cs.selection.selection_step(run, cfg, name).key == latest.resolve().name


# ------------------------------------------------------------------ integrity

@pytest.mark.parametrize("stage", ["selections", "metrics"])
def test_a_hand_edited_artifact_is_never_served(tmp_path, caplog, stage):
    cfg, run, name, table = _chain(tmp_path)
    st = (cs.selection.selection_step(run, cfg, name) if stage == "selections" else cs.metrics.metrics_step(run, cfg))
    path = st.dir / ("selection.parquet" if stage == "selections" else "metrics.parquet")
    good = pd.read_parquet(path)
    good.iloc[1:].to_parquet(path)                                   # hand-edited: one row dropped
    with caplog.at_level(logging.WARNING, logger="crowdselect"):
        if stage == "selections":
            served = cs.selection.load_run_selection(run, cfg, name)
        else:
            served = cs.metrics.load_run_metrics(run, cfg)
    assert f"{path} differs from the hash its manifest recorded" in caplog.text and "recomputed" in caplog.text
    pd.testing.assert_frame_equal(served, good)
    pd.testing.assert_frame_equal(pd.read_parquet(path), good)       # the recomputed file replaced it
    assert st.done


def test_input_edited_with_same_size_and_mtime_changes_its_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setattr(content, "RACY_S", -1.0)     # memoise even fresh files: the memo must still notice
    f = tmp_path / "data.jsonl"
    f.write_text("aaaa")
    os.utime(f, ns=(10**18, 10**18))
    first = fingerprint([f])
    assert fingerprint([f]) == first
    time.sleep(0.05)                                 # past the file system's timestamp tick
    f.write_text("bbbb")
    os.utime(f, ns=(10**18, 10**18))                 # same size, same mtime
    assert fingerprint([f]) != first


def test_code_digest_follows_the_source(tiny_module):
    mod, path = tiny_module
    d = code_digest(mod)
    path.write_text('"""Tiny stage."""\nVALUE = 2\n')
    assert code_digest("tinystage") != d and code_digest(cs.selection) != code_digest(cs.metrics)


# ------------------------------------------------------------------ corrupt bookkeeping

def test_corrupt_manifest_is_recomputed_saying_so(run, caplog):
    st = run.step("s", "a", settings={})
    st.table(lambda: pd.DataFrame({"x": [1]}))
    (st.dir / "manifest.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="crowdselect"):
        again = run.step("s", "a", settings={}, log=None)
        assert not again.done
    assert f"{st.dir / 'manifest.json'} is not valid JSON" in caplog.text and "recomputed" in caplog.text
    again.table(lambda: pd.DataFrame({"x": [1]}))
    assert again.done


def test_a_bad_index_never_blocks_its_stage(run, caplog):
    (run.dir / "s").mkdir()
    (run.dir / "s" / "index.json").write_text("[1, 2")
    with caplog.at_level(logging.WARNING, logger="crowdselect"):
        st = run.step("s", "a", settings={})
        st.table(lambda: pd.DataFrame({"x": [1]}))
    assert "index.json is not valid JSON" in caplog.text and "started afresh" in caplog.text
    assert json.loads((run.dir / "s" / "index.json").read_text())["a"]["key"] == st.key


@pytest.mark.parametrize("text", ["", "[]"])
def test_bad_meta_json_is_named_with_a_way_out(run, text):
    (run.dir / "meta.json").write_text(text)
    with pytest.raises(BadFileError, match=r"meta\.json .*(is empty|not a mapping).*delete it"):
        run.update_meta(x=1)


def test_zoo_json_that_is_a_list_is_named_with_a_way_out(tmp_path):
    (tmp_path / "zoo.json").write_text("[]")
    with pytest.raises(cs.zoo.ZooError, match=r"zoo\.json is not a saved zoo's description.*rerun chapter 01"):
        cs.zoo.Zoo.load(tmp_path)
    (tmp_path / "zoo.json").write_text('{"source": ')
    with pytest.raises(cs.zoo.ZooError, match=r"zoo\.json is not valid JSON.*rerun chapter 01"):
        cs.zoo.Zoo.load(tmp_path)


def test_truncated_embedding_part_is_embedded_again(tmp_path, caplog):
    e = cs.load_config(None).embedding
    cache = cs.clustering.EmbeddingCache(tmp_path, e)
    part = cache.add(np.array(["k1", "k2"]), np.ones((2, 3)))
    part.write_bytes(part.read_bytes()[:40])
    with caplog.at_level(logging.WARNING, logger="crowdselect"):
        keys, vecs = cache.read()
    assert len(keys) == 0 and vecs is None and not part.exists()
    assert f"{part}: damaged embedding cache part" in caplog.text and "embedded again" in caplog.text


# ------------------------------------------------------------------ files stay inside the run folder

def test_writes_never_follow_a_symlink_out_of_the_run(run, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (run.dir / "selections").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match=r"refusing to write .*selections.*outside the run"):
        run.step("selections", "x", settings={}).table(lambda: pd.DataFrame({"x": [1]}))
    (run.dir / "cache").mkdir()
    (run.dir / "cache" / "replies.jsonl").symlink_to(outside / "replies.jsonl")
    with pytest.raises(UnsafePathError, match="replies.jsonl"):
        append_jsonl(run.dir / "cache" / "replies.jsonl", [{"a": 1}])
    assert list(outside.iterdir()) == []


def test_run_log_symlinked_out_of_the_run_is_refused(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.log").symlink_to(tmp_path / "elsewhere.log")
    with pytest.raises(UnsafePathError, match="run.log"):
        Run.from_config(cs.load_config(None, {"run.root": str(tmp_path), "run.name": "r"}))
    assert not (tmp_path / "elsewhere.log").exists()


@pytest.mark.parametrize("name", ["..", ".", "a/b", "x\n"])
def test_a_step_name_never_leaves_its_stage_folder(run, name):
    with pytest.raises(ValueError, match="not a plain"):
        Step(run.dir, "metrics", name, {})
    with pytest.raises(ValueError, match="not a plain"):
        Step(run.dir, name, "a", {})
