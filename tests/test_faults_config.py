"""Bad params files (issue 14): every mistake is a ConfigError naming the file or the key, at load time."""
from __future__ import annotations

import pytest

from crowdselect_lib import ConfigError, load_config

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "base: a.yaml\nselection: {k: 10}\n"}, r"a.yaml: its base: chain loops \(a.yaml -> a.yaml\)"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, r"loops \(a.yaml -> b.yaml -> a.yaml\)"),
], ids=["itself", "cycle-of-two"])
def test_base_chain_that_loops(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "a.yaml")


def test_yaml_syntax_error_names_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("selection:\n  k: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_missing_base_names_both_files(tmp_path):
    (tmp_path / "a.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"params file not found: .*nowhere.yaml \(base: of .*a.yaml\)"):
        load_config(tmp_path / "a.yaml")


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "none.yaml")


def test_unknown_key_and_wrong_type_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key selection.kk"):
        load_config(None, {"selection.kk": 3})
    with pytest.raises(ConfigError, match="selection.k: expected an integer"):
        load_config(None, {"selection.k": "many"})


@pytest.mark.parametrize("key,value,match", [
    ("llm.max_concurrency", 0, "llm.max_concurrency"),
    ("llm.max_retries", -1, "llm.max_retries"),
    ("scoring.shard_size", 0, "scoring.shard_size"),
    ("selection.weights", [0, 0, 0], "selection.weights"),
    ("selection.weights", [1, float("nan"), 1], "selection.weights"),
])
def test_bad_values_rejected_at_load_time(key, value, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, {key: value})


def test_parse_sets_reads_yaml_values_and_rejects_a_bare_key():
    from crowdselect_lib.pipeline import parse_sets

    assert parse_sets(["selection.k=60", "selection.weights=[1, -1, 1.5]", "zoo.data_dir=/x"]) == {
        "selection.k": 60, "selection.weights": [1, -1, 1.5], "zoo.data_dir": "/x"}
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_sets(["selection.k"])


def test_bad_params_through_the_pipeline_end_on_one_error_line(tmp_path, capsys):
    from crowdselect_lib.pipeline import main

    assert main(["demo", "--only", "download", "--set", f"run.root={tmp_path}", "--set", "selection.k=0"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: selection.k: 0 must be >= 1"


@pytest.mark.smoke
def test_a_failing_chapter_ends_on_one_error_line(tmp_path, capsys):
    from crowdselect_lib.pipeline import main

    rc = main(["demo", "--only", "download", "--set", f"run.root={tmp_path}", "--set", "zoo.source=alpacaeval",
               "--set", f"zoo.data_dir={tmp_path / 'nowhere'}"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and last.startswith("error: 01_download.ipynb failed: FileNotFoundError: zoo.data_dir")
