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


# ---------------------------------------------------------------- issue 25: inputs the loader must refuse

def _bomb(levels: int = 9) -> str:
    """A "billion laughs" params file: 9 aliases of 9 give 9**9 values once written out (about 600 bytes)."""
    lines = ["judge:", "  judge_extra_body:", '    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_naming_the_file_within_seconds(tmp_path):
    import time

    (tmp_path / "bomb.yaml").write_text(_bomb())
    assert 500 <= (tmp_path / "bomb.yaml").stat().st_size <= 700
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml: line 8, column \d+: its aliases expand past 100,000 values"):
        load_config(tmp_path / "bomb.yaml")
    assert time.perf_counter() - t0 < 5


def test_shared_lists_in_python_overrides_are_bounded_too():
    x: list = ["lol"] * 9
    for _ in range(8):
        x = [x] * 9                        # 9**9 values once written out, 80 objects in memory
    with pytest.raises(ConfigError, match=r"judge \(with overrides\): expands past 100,000 values"):
        load_config(None, {"judge.judge_extra_body": {"x": x}})
    loop: list = []
    loop.append(loop)
    with pytest.raises(ConfigError, match="contains itself"):
        load_config(None, {"judge.judge_extra_body": {"x": loop}})


@pytest.mark.parametrize("text", ["x: " + "[" * 5000 + "]" * 5000 + "\n",
                                  "x:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 3000)) + " " * 3000 + "v\n",
                                  "x: [*nope]\n", "x: &a [*a]\n"], ids=["flow-5000", "block-3000", "undefined", "self"])
def test_deep_or_self_referring_yaml_is_a_config_error_not_a_recursion_error(tmp_path, text):
    (tmp_path / "deep.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"deep.yaml: (line \d+, column \d+: nested deeper than 64 levels|"
                                          r"not valid YAML|line 1, column \d+: alias \*a refers to a list)"):
        load_config(tmp_path / "deep.yaml")


@pytest.mark.parametrize("text, message", [
    ("selection:\n  k: 5\n  k: 6\n", r"p.yaml: line 3, column 3: key 'k' appears twice in one mapping \(lines 2 and 3\)"),
    ("selection: {k: 5}\nselection: {k: 6}\n", r"p.yaml: line 2, column 1: key 'selection' appears twice"),
    ("selection:\n  k: 010\n", r"p.yaml: line 2, column 6: 010 reads as octal 8 in YAML 1.1"),
    ("run:\n  name: 1:30\n", r"p.yaml: line 2, column 9: 1:30 reads as a base-60 number in YAML 1.1 \(90\)"),
    ("training:\n  mixed_precision: no\n", r"p.yaml, line 2: training.mixed_precision: 'no' is a YAML 1.1 boolean, "
                                           r"not a string: quote it"),
    ("embedding:\n  device: off\n", r"p.yaml, line 2: embedding.device: 'off' is a YAML 1.1 boolean"),
    ("run:\n  name: yes\n", r"p.yaml, line 2: run.name: 'yes' is a YAML 1.1 boolean, not a string"),
    ("llm:\n  backoff_max_s: .inf\n", r"p.yaml: llm.backoff_max_s: inf must be a finite number"),
    ("judge:\n  price_per_mtok_in: .nan\n", r"p.yaml: judge.price_per_mtok_in: nan must be a finite number"),
    ("judge:\n  price_per_mtok_out: -0.5\n", r"judge.price_per_mtok_out: -0.5 must be a finite number >= 0"),
    ("training:\n  dpo_beta: .nan\n", r"training.dpo_beta: nan must be a finite number"),
    ("training:\n  weight_decay: -1e9\n", r"p.yaml: training.weight_decay: -1000000000.0 must be a finite number >= 0"),
    ("training:\n  simpo_beta: 0\n", r"training.simpo_beta: 0.0 must be a finite number > 0"),
    ("training:\n  seeds: [42, -1]\n", r"training.seeds: \[42, -1\] must be within 0 .. 2\*\*32 - 1"),
    ("clustering:\n  seed: -3\n", r"clustering.seed: -3 must be within 0"),
    ("run:\n  seed: -1\n", r"run.seed: -1 must be within 0"),
    ("run:\n  name: \"demo\\n\"\n", r"run.name 'demo\\n' is not a plain name"),
    ("selection:\n  weights: [1, .nan, 2]\n", r"selection.weights\[1\]: nan must be a finite number"),
    ("1: x\n", r"p.yaml: RunConfig: key 1 \(int\) is not a name"),
    ("demo: [1]\n", r"p.yaml: demo: must be a mapping"),
], ids=["dup", "dup-section", "octal", "base-60", "no", "off", "yes-name", "inf", "nan-price", "negative-price",
        "nan-beta", "weight-decay", "zero-beta", "seeds", "cluster-seed", "run-seed", "newline-name", "nan-weight",
        "int-key", "demo-list"])
def test_yaml_surprises_and_impossible_numbers_name_file_and_key(tmp_path, text, message):
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "p.yaml")


def test_what_yaml_1_1_gets_right_still_loads(tmp_path):
    (tmp_path / "p.yaml").write_text("training:\n  gradient_checkpointing: yes\n  learning_rate: 2e-5\n"
                                     "  preference_learning_rate: 5.0e6\nselection:\n  k: 1_000\n"
                                     "judge:\n  judge_extra_body: {thinking: {type: off}}\nrun:\n  root: ~/x\n")
    cfg = load_config(tmp_path / "p.yaml")
    t = cfg.training
    assert (t.gradient_checkpointing, t.learning_rate, t.preference_learning_rate) == (True, 2e-5, 5.0e6)
    assert cfg.selection.k == 1000 and cfg.judge.judge_extra_body == {"thinking": {"type": False}}
    from pathlib import Path
    assert cfg.run.root == str(Path.home() / "x") and "~" not in cfg.to_yaml()
    # what the run writes (config.yaml, a cell's params) reads back as itself: "1e-5" stays a string there
    (tmp_path / "back.yaml").write_text(load_config(None, {"run.name": "1e-5", "description": "no"}).to_yaml())
    assert load_config(tmp_path / "back.yaml").run.name == "1e-5"
    # papermill's -y reads 1e-5 as a string (YAML 1.1): a float field takes it
    assert load_config(None, {"training.learning_rate": "1e-5"}).training.learning_rate == 1e-5
    with pytest.raises(ConfigError, match=r"training.learning_rate: expected a number, got str 'fast'"):
        load_config(None, {"training.learning_rate": "fast"})


def test_non_utf8_params_file_is_named(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("description: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9 at offset 16\)"):
        load_config(tmp_path / "latin1.yaml")


@pytest.mark.parametrize("overrides, message", [
    ("selection.k=5", r"overrides: expected a mapping of dotted keys .* got str 'selection.k=5'"),
    (["selection.k", 5], r"overrides: expected a mapping .* got list"),
    ({3: 5}, r"overrides: key 3 is not a dotted key"),
    ({"selection..k": 5}, r"overrides: key 'selection..k' is not a dotted key"),
])
def test_wrong_overrides_types_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_set_value_is_one_line_not_a_yaml_traceback(tmp_path, capsys):
    from crowdselect_lib.config import parse_sets
    from crowdselect_lib.pipeline import main

    with pytest.raises(ConfigError, match=r"^--set x=\[1,1,2: not valid YAML: line 1, column \d+: expected ',' or "
                                          r"'\]', but got '<stream end>' \(while parsing a flow sequence at line 1\)$"):
        parse_sets(["x=[1,1,2"])
    assert main(["demo", "--only", "download", "--set", f"run.root={tmp_path}", "--set", "selection.k=010"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --set selection.k=010: line 1, column 1: 010 reads as octal 8 in YAML 1.1; write it "
                   "without the leading 0, or quote it for a string"]


def test_check_name_refuses_a_trailing_newline():
    from crowdselect_lib.runs import check_name

    assert check_name("demo") == "demo"
    for bad in ("demo\n", "demo\r\n", "\ndemo", "de\nmo"):
        with pytest.raises(ValueError, match="is not a plain name"):
            check_name(bad)
