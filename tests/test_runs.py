"""The step cache and safe files (issue 10): keys follow settings, reruns reuse, writers never lose updates."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import stat

import pandas as pd
import pytest

from crowdselect_lib import load_config
from crowdselect_lib.runs import (Run, append_jsonl, check_name, check_unique, digest, read_jsonl, steps_computed,
                                  update_json, write_json)


@pytest.fixture
def run(tmp_path):
    cfg = load_config(None, {"run.root": str(tmp_path), "run.name": "t"})
    return Run.from_config(cfg)


def test_digest_is_canonical():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert len(digest("x")) == 12


def test_step_reuses_equal_key_and_recomputes_changed_setting(run, capsys):
    calls = []

    def compute(k):
        calls.append(k)
        return pd.DataFrame({"x": range(k)})

    a = run.step("sel", "crowdselect", settings={"k": 3}).table(lambda: compute(3))
    again = run.step("sel", "crowdselect", settings={"k": 3}).table(lambda: compute(3))
    changed = run.step("sel", "crowdselect", settings={"k": 5}).table(lambda: compute(5))
    assert calls == [3, 5] and len(a) == len(again) == 3 and len(changed) == 5
    out = capsys.readouterr().out.splitlines()             # quiet by default: a reused step prints nothing
    assert len(out) == 2 and all(line.startswith("computing sel/crowdselect (") for line in out)
    Run.from_config(load_config(None, {"run.root": str(run.dir.parent), "run.name": "t", "run.verbose": True}))
    run.step("sel", "crowdselect", settings={"k": 3}).table(lambda: compute(3))
    assert capsys.readouterr().out.startswith("reused sel/crowdselect (")            # run.verbose: every line
    Run.from_config(load_config(None, {"run.root": str(run.dir.parent), "run.name": "t"}))


def test_upstream_key_change_recomputes_downstream(run):
    up1 = run.step("zoo", "demo", settings={"n": 100})
    up2 = run.step("zoo", "demo", settings={"n": 200})
    d1 = run.step("metrics", "m", settings={}, inputs={"zoo": up1.key})
    d2 = run.step("metrics", "m", settings={}, inputs={"zoo": up2.key})
    assert d1.key != d2.key and d1.dir != d2.dir


def test_a_file_that_exists_is_not_done(run):
    st = run.step("sel", "x", settings={"k": 1})
    pd.DataFrame({"x": [1]}).to_parquet(st.path("table.parquet"))   # a stray file, no manifest
    assert not st.done
    write_json({"key": "someone-else"}, st.path("manifest.json"))
    assert not st.done


def test_manifest_latest_pointer_and_index(run):
    st = run.step("sel", "crowdselect", settings={"k": 2}, inputs={"metrics": "abc"}, version="3")
    st.table(lambda: pd.DataFrame({"x": [1, 2]}))
    m = json.loads((st.dir / "manifest.json").read_text())
    assert m["key"] == st.key and m["settings"] == {"k": 2} and m["inputs"] == {"metrics": "abc"}
    assert m["version"] == "3" and m["rows"] == 2 and "package" in m and "finished" in m
    latest = run.dir / "sel" / "crowdselect" / "latest"
    assert latest.is_symlink() and (latest / "table.parquet").exists()
    assert json.loads((run.dir / "sel" / "index.json").read_text())["crowdselect"]["key"] == st.key


def test_unchanged_rerun_computes_nothing(run):
    for _ in range(2):
        before = steps_computed()
        for k in (1, 2, 3):
            run.step("s", f"n{k}", settings={"k": k}).table(lambda: pd.DataFrame({"x": [k]}))
    assert steps_computed() == before


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "..", ".hidden", "a b", None, "x/../../y"])
def test_names_are_plain(bad):
    with pytest.raises(ValueError, match="not a plain name"):
        check_name(bad, "subset name")


def test_duplicate_names_rejected():
    with pytest.raises(ValueError, match="'a' appears twice"):
        check_unique(["a", "b", "a"], "subset name")


def test_run_name_outside_the_root_is_rejected(tmp_path):
    # refused when the config loads, and again by Run for a config changed after loading
    with pytest.raises(ValueError, match="run.name '../../../x' is not a plain name"):
        load_config(None, {"run.root": str(tmp_path), "run.name": "../../../x"})
    cfg = load_config(None, {"run.root": str(tmp_path)})
    cfg.run.name = "../../../x"
    with pytest.raises(ValueError, match="run.name '../../../x' is not a plain name"):
        Run.from_config(cfg)


def _bump(path, key, n):
    for i in range(n):
        update_json(path, lambda d: d.__setitem__(f"{key}{i}", i))


def test_two_processes_updating_one_json_lose_nothing(tmp_path):
    path = tmp_path / "meta.json"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(path, key, 40)) for key in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    data = json.loads(path.read_text())
    assert len(data) == 80 and data["a39"] == 39 and data["b0"] == 0


def test_torn_jsonl_line_never_swallows_the_next_record(tmp_path):
    path = tmp_path / "replies.jsonl"
    append_jsonl(path, [{"id": 1}])
    with open(path, "a") as fh:          # a kill in the middle of a write
        fh.write('{"id": 2, "text": "half')
    append_jsonl(path, [{"id": 3}])
    assert read_jsonl(path, tolerate_torn=True) == [{"id": 1}, {"id": 3}]
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_jsonl(path)


def test_artifacts_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "x.json").stat().st_mode)
    assert mode == 0o644


def test_relative_run_root_resolves_against_the_params_files_checkout(tmp_path):
    """Two checkouts sharing one environment keep their own runs; a notebook says when the library is another's."""
    from crowdselect_lib.runs import library_checkout_warning

    other = tmp_path / "other"
    for d in ("params", "notebooks/sub"):
        (other / d).mkdir(parents=True)
    (other / "params" / "p.yaml").write_text("run: {name: x, root: myruns}\n")
    assert load_config(other / "params" / "p.yaml").run.root == str(other.resolve() / "myruns")
    (tmp_path / "loose.yaml").write_text("run: {name: x, root: myruns}\n")            # outside a checkout: as is
    assert load_config(tmp_path / "loose.yaml").run.root == "myruns"
    warning = library_checkout_warning(other / "notebooks" / "sub")
    assert warning.startswith("warning: this notebook's checkout is") and str(other.resolve()) in warning
    assert library_checkout_warning(tmp_path) is None                                  # not in a checkout: silent
