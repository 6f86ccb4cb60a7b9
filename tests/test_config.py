import pytest

from crowdselect_lib.config import ConfigError, load_config
from tests.conftest import REPO


def test_every_params_file_validates():
    files = sorted((REPO / "params").glob("*.yaml"))
    assert (REPO / "params" / "demo.yaml") in files and (REPO / "params" / "paper.yaml") in files
    for f in files:
        load_config(f)
        load_config(f, demo=True)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key selection\.kk"):
        load_config(REPO / "params" / "demo.yaml", {"selection.kk": 3})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"selection\.k: expected an integer"):
        load_config(REPO / "params" / "demo.yaml", {"selection.k": "many"})
    with pytest.raises(ConfigError, match=r"zoo\.source: 'hub' is not one of"):
        load_config(None, {"zoo.source": "hub"})
    with pytest.raises(ConfigError, match=r"selection\.subsets\[0\]\.metric"):
        load_config(None, {"selection.subsets": [{"name": "x", "metric": "novelty"}]})


def test_base_inheritance_and_demo_overlay(tmp_path):
    (tmp_path / "demo.yaml").write_text("selection: {k: 5}\nrun: {name: demo}\n")
    (tmp_path / "a.yaml").write_text("selection: {k: 50, weights: [1, 1, 2]}\nrun: {name: a}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nselection: {k: 70}\ndemo: {selection: {k: 7}}\n")
    cfg = load_config(tmp_path / "b.yaml")
    assert (cfg.selection.k, cfg.selection.weights, cfg.run.name) == (70, [1.0, 1.0, 2.0], "a")
    small = load_config(tmp_path / "b.yaml", demo=True)
    assert (small.selection.k, small.run.name) == (7, "demo")
    assert load_config(tmp_path / "b.yaml", {"selection.k": 9}, demo=True).selection.k == 9


def test_demo_block_is_a_delta_over_demo_yaml_only(tmp_path):
    """A `demo:` block means one thing: demo.yaml (or the block's base:) plus the block. Nothing of the table's
    paper-scale part leaks into the demo, except the table id."""
    (tmp_path / "demo.yaml").write_text("zoo: {source: demo, n_instructions: 500}\nselection: {k: 30}\n")
    (tmp_path / "t.yaml").write_text("zoo: {source: magpie}\nselection: {k: 1000, weights: [1, -1, 1.5]}\n"
                                     "tables: {table: '3'}\ndemo: {selection: {k: 12}}\n")
    real, small = load_config(tmp_path / "t.yaml"), load_config(tmp_path / "t.yaml", demo=True)
    assert (real.zoo.source, real.selection.k) == ("magpie", 1000)
    assert (small.zoo.source, small.zoo.n_instructions, small.selection.k) == ("demo", 500, 12)
    assert small.selection.weights == [1.0, 1.0, 2.0]       # the paper default, not the table's paper-scale value
    assert small.tables.table == "3"
