"""Tables and figures (chapter 09, `crowdselect_lib.reporting`): params per table in the paper text's numbering,
demo blocks (a delta over demo.yaml, offline only), the paper's numbers and notes, the paper's marking rules,
the renderer on hand-computed numbers, and results built from planted judged scores."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

import crowdselect_lib as cs
from crowdselect_lib.config import ConfigError, load_config

R = cs.reporting
PAPER_TABLES = [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ params files

def test_registry_follows_the_paper_texts_numbering():
    assert R.RESULT_TABLES == [str(t) for t in PAPER_TABLES]
    assert sorted(p.name for p in (REPO / "params").glob("table*.yaml")) == sorted(
        [f"table{t:02d}.yaml" for t in PAPER_TABLES] + ["table_v1-17.yaml"])
    assert R.table_spec("v1-17").appendix and R.table_spec("v1-17").version == "v1"
    assert R.params_file("v1-17").name == "table_v1-17.yaml" and R.params_file(2).name == "table02.yaml"
    with pytest.raises(KeyError, match="no paper table 19;"):
        R.table_spec(19)
    assert [t for t, s in R.TABLES.items() if s.tokens] == ["7", "8", "14", "15", "16"]   # 'Avg. Tokens'


@pytest.mark.parametrize("table", PAPER_TABLES + ["v1-17"])
def test_every_table_has_a_paper_config_and_an_offline_demo(table):
    path = R.params_file(table)
    real, demo = load_config(path), load_config(path, demo=True)
    for cfg in (real, demo):
        assert cfg.tables.table == str(table)
        cells = R.cell_configs(cfg)
        assert cells and all(c.run.name == cfg.run.name for c in cells.values())   # one run directory
    assert real.zoo.source == "magpie" and not real.run.offline_demo and real.judge.judge == "llm"
    assert demo.zoo.source == "demo" and demo.run.offline_demo and demo.run.name == "demo"
    # the demo names only offline assets (issue 10.4), the paper config does need the Hub
    assert {p for c in R.cell_configs(demo).values() for p in R.offline_problems(c)} == set()
    assert "crowdselect" in {x.name for x in demo.selection.subsets}   # chapter 07's previews read it
    assert "training.student=" in " ".join(p for c in R.cell_configs(real).values() for p in R.offline_problems(c))


def test_grids_carry_the_papers_settings():
    cells = lambda t, demo=False: R.cell_configs(load_config(R.params_file(t), demo=demo))   # noqa: E731
    assert [c.training.student for c in cells(2).values()] == [
        "meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.2-3B-Instruct", "Qwen/Qwen2.5-3B", "Qwen/Qwen2.5-3B-Instruct"]
    assert [c.clustering.n_clusters for c in cells(4).values()] == [10, 20, 30]
    assert [c.selection.k for c in cells(7).values()] == [250, 500] + [1000 * i for i in range(1, 11)]
    assert [c.selection.response for c in cells(1).values()] == ["best", "random", "top5_random"]
    sweep = {s.name: s.weights for s in load_config(R.params_file(3)).selection.subsets}
    assert len(sweep) == 9 and sweep["crowdselect_1_-1_1.5"] == [1.0, -1.0, 1.5]
    assert load_config(R.params_file(17)).training.methods == ["sft_full", "dpo", "simpo", "orpo"]
    assert [c.metrics.reward_model for c in cells(18).values()] == [
        "ArmoRM-Llama3-8B-v0.1", "Skywork-Reward-Llama-3.1-8B", "Skywork-Reward-Gemma-2-27B"]
    assert [c.training.student for t in (14, 15, 16, "v1-17") for c in cells(t).values()] == [
        "meta-llama/Llama-3.2-3B-Instruct", "Qwen/Qwen2.5-3B-Instruct", "meta-llama/Llama-3.2-3B", "Qwen/Qwen2.5-3B"]
    assert {load_config(R.params_file(t)).run.name for t in (2, 11, 12)} == {"paper_full"}
    assert {load_config(R.params_file(t)).run.name for t in (3, 14, 15, 16)} == {"paper_weights"}
    # every row a params file asks for is a column the paper prints
    paper = R.paper_numbers()
    for t in (2, 9, 10, 11, 12, 13):
        cfg = load_config(R.params_file(t))
        printed = set(paper.loc[paper["table"] == str(t), "column"])
        assert {R.table_spec(t).label(r) for r in cfg.tables.rows} <= printed, t


def test_demo_block_is_a_delta_over_demo_yaml(tmp_path):
    """Nothing of the paper-scale part of a file reaches its demo (the Length tokenizer of issue 10.4)."""
    (tmp_path / "demo.yaml").write_text((REPO / "params" / "demo.yaml").read_text())
    (tmp_path / "paper.yaml").write_text((REPO / "params" / "paper.yaml").read_text())
    f = tmp_path / "t.yaml"
    f.write_text(yaml.safe_dump({"base": "paper.yaml", "baselines": {"tokenizer": "meta-llama/Llama-3.2-3B-Instruct"},
                                 "tables": {"table": "13"}, "selection": {"k": 1000},
                                 "demo": {"base": "demo.yaml", "selection": {"k": 20}}}))
    demo, plain = load_config(f, demo=True).to_dict(), load_config(tmp_path / "demo.yaml").to_dict()
    assert demo["selection"]["k"] == 20 and demo["tables"]["table"] == "13"
    demo["selection"]["k"], demo["tables"]["table"] = plain["selection"]["k"], plain["tables"]["table"]
    assert demo == plain                                   # exactly demo.yaml + the block
    assert load_config(f).baselines.tokenizer == "meta-llama/Llama-3.2-3B-Instruct"   # without demo: the paper's


def test_tables_section_errors_name_the_key():
    path = R.params_file(2)
    with pytest.raises(ConfigError, match=r"unknown key tables\.grid\[0\]\.overide"):
        load_config(path, {"tables.grid": [{"name": "a", "overide": {}}]})
    with pytest.raises(ConfigError, match=r"tables\.grid\[0\]\.name: expected str"):
        load_config(path, {"tables.grid": [{"name": 3}]})
    with pytest.raises(ConfigError, match=r"tables\.version: 'v2' is not one of"):
        load_config(path, {"tables.version": "v2"})
    with pytest.raises(ConfigError, match="cannot change run.name"):
        load_config(path, {"tables.grid": [{"name": "a", "overrides": {"run.name": "x"}}]})
    with pytest.raises(ValueError, match="tables.grid cell 'a' appears twice"):
        R.cell_configs(load_config(path, {"tables.grid": [{"name": "a"}, {"name": "a"}]}))
    with pytest.raises(ValueError, match="not a plain name"):
        R.cell_configs(load_config(path, {"tables.grid": [{"name": "../x"}]}))


def test_settings_summary_is_short_and_stars_what_differs_from_the_paper():
    text = R.settings_summary(load_config(REPO / "params" / "demo.yaml"), ["selection", "judge"])
    lines = text.splitlines()
    assert lines[0].startswith("run demo · offline demo") and len(lines) <= 5
    assert "k=300*" in text and "judge=proxy*" in text                      # demo values differ from the paper's
    assert "weights=[1, 1, 2]" in text and "weights=[1, 1, 2]*" not in text   # the paper's w is not starred
    with pytest.raises(KeyError, match="unknown section 'tabels'"):
        R.settings_summary(load_config(), ["tabels"])


# ------------------------------------------------------------------ the paper's numbers and marks

def test_paper_numbers_default_to_the_paper_text_and_offer_v1(tmp_path):
    acl, v1 = R.paper_numbers(), R.paper_numbers(version="v1")
    key = ["table", "row", "column"]
    assert not acl.duplicated(key).any() and len(acl[acl["table"].isin(R.RESULT_TABLES)]) == 664
    a, b = acl.set_index(key)["value"], v1.set_index(key)["value"]
    assert a[("1", "Random / Arena-Hard", "Multi")] == 82.3 and b[("1", "Random / Arena-Hard", "Multi")] == 71.9
    assert "v1-17" not in set(acl["table"]) and (v1["table"] == "v1-17").sum() == 18
    assert acl.set_index(key).loc[("2", "Llama-3.2-3B-Instruct / Arena-Hard", "Multi"), ["ci_low", "ci_high"]].tolist() \
        == [-0.8, 1.1]
    assert set(acl.loc[acl["anchor"], "table"]) == {"2", "9", "11", "13"} and (acl.loc[acl["anchor"], "value"] == 50).all()
    bad = tmp_path / "p.csv"
    bad.write_text("table,row,column,value,source,note,version,ci_low,ci_high,avg_tokens\n"
                   "2,a,b,1.0,s,,acl,,,\n2,a,b,2.0,s,,acl,,,\n")
    with pytest.raises(ValueError, match=r"duplicate \(table, row, column\) in version 'acl'"):
        R.paper_numbers(bad)
    with pytest.raises(ValueError, match="version 'v2'"):
        R.paper_numbers(version="v2")
    notes = R.paper_notes()
    assert (notes["kind"] == "inconsistency").sum() == 21 and set(notes["kind"]) == {
        "encoding", "marking", "anchor", "inconsistency", "caption"}


@pytest.mark.parametrize("table", ["1", "2"])
def test_the_papers_marking_rule_reproduces_its_underlines(table):
    """Table 1: second best within one benchmark over the response choices for one metric's ↓/↑ columns;
    Table 2: second best in its row. Our marks on the paper's values equal the text's <u> exactly."""
    from tests.test_paper_numbers import parse_table, paper_text, table_regions

    printed = parse_table(table, table_regions(paper_text())[table])
    underlined = set(map(tuple, printed.loc[printed["underlined"], ["row", "column"]].to_numpy()))
    paper = R.paper_numbers()
    empty = paper.iloc[:0].reindex(columns=R.RESULT_COLUMNS)
    c = R.comparison(empty, paper, R.table_spec(table))
    assert set(map(tuple, c.loc[c["paper_mark"] == 2, ["row", "column"]].to_numpy())) == underlined
    assert len(underlined) == {"1": 10, "2": 8}[table]


def test_an_anchor_is_never_marked_and_unknown_rules_mark_nothing():
    res = pd.DataFrame({"table": "2", "row": "S / Arena-Hard", "column": ["Base", "Random", "Multi"],
                        "value": [50.0, 40.0, 45.0], "ci_low": [0.0, -1.0, -2.0], "ci_high": [0.0, 1.0, 2.0],
                        "avg_tokens": float("nan"), "n": 1, "anchor": [True, False, False], "source": "hand"})
    c = R.comparison(res, None, R.table_spec(2)).set_index("column")["ours_mark"]
    assert c.to_dict() == {"Base": 0, "Random": 2, "Multi": 1}
    assert (R.comparison(res.assign(table="11"), None, R.table_spec(11))["ours_mark"] == 0).all()


# ------------------------------------------------------------------ renderer on hand-made numbers

def test_renderer_shows_ours_paper_delta_intervals_and_tokens():
    spec = R.TableSpec("x", "toy", layout="size", tokens=True, marking="column")
    res = pd.DataFrame({"table": "x", "row": ["1k", "2k"], "column": "Arena-Hard", "value": [80.0, 82.5],
                        "ci_low": [-1.0, -0.5], "ci_high": [1.25, 0.5], "avg_tokens": [250.0, 260.0], "n": 1,
                        "anchor": False, "source": "hand"})
    paper = pd.DataFrame({"table": "x", "row": ["1k", "4k"], "column": "Arena-Hard", "value": [82.6, 82.4],
                          "ci_low": [-1.5, -1.1], "ci_high": [1.2, 1.7], "avg_tokens": [273.0, 268.0], "anchor": False})
    md = R.render(res, paper, spec, caption_text="toy", notes=["a note"])
    assert md == ("**toy**\n\n| | Arena-Hard |\n|---|---:|\n"
                  "| 1k · ours | <u>80.0 (-1.0, +1.2) · 250 tok</u> |\n"
                  "| 1k · paper | **82.6 (-1.5, +1.2) · 273 tok** |\n"
                  "| 1k · Δ | -2.6 |\n"
                  "| 4k · paper | <u>82.4 (-1.1, +1.7) · 268 tok</u> |\n"
                  "| 2k · ours | **82.5 (-0.5, +0.5) · 260 tok** |\n"
                  "\n- a note\n")
    assert "· Δ" not in R.render(res, paper, spec, diff=False)           # incomparable scales: side by side only
    tex = R.render(res, paper, spec, fmt="latex")
    assert "1k $\\cdot$ $\\Delta$ & -2.6 \\\\" in tex and "\\textbf{82.6 (-1.5, +1.2) $\\cdot$ 273 tok}" in tex
    assert "<tr><td>2k · ours</td><td><b>82.5 (-0.5, +0.5) · 260 tok</b></td></tr>" in R.render(res, None, spec, fmt="html")
    with pytest.raises(ValueError, match="unknown format"):
        R.render(res, paper, spec, fmt="rtf")


def test_notes_carry_the_papers_inconsistencies_and_stand_ins():
    notes = R.notes_text(R.table_spec(1), R.paper_numbers(version="v1"), offline_demo="offline demo",
                         paper_groups={"SmolLM2": "Llama-3.2-3B-Instruct"})
    text = "\n".join(notes)
    assert "proxy judge" in text and "'SmolLM2 ≙ Llama-3.2-3B-Instruct'" in text
    assert sum(n.startswith("inconsistency:") for n in notes) == 4
    assert "arXiv v1 prints 71.9 for Random / Arena-Hard / Multi" in text


# ------------------------------------------------------------------ results from planted judged scores

def _scores():
    rows = []
    for cell, off in [("a", 0.0), ("b", 1.0)]:
        for subset, method, mt, ah in [("base", "", 4.0, 50.0), ("random", "sft_full", 5.0, 55.0),
                                       ("crowdselect", "sft_full", 6.0, 54.0), ("crowdselect", "dpo", 9.0, 90.0)]:
            for rep in (-0.5, 0.5):                  # two repetitions average to the given value
                rows += [dict(cell=cell, subset=subset, student="s", method=method, benchmark="mt_bench",
                              repetition=int(rep > 0), score=mt + off + rep, judge="proxy"),
                         dict(cell=cell, subset=subset, student="s", method=method, benchmark="arena_hard",
                              repetition=int(rep > 0), score=ah + off, ci_low=ah + off - (ah != 50),
                              ci_high=ah + off + 2 * (ah != 50), judge="proxy")]
    return pd.DataFrame(rows)


def test_results_follow_the_paper_layout_and_label_rows_by_what_produced_them():
    scores = _scores()
    res = R.table_results(scores, R.table_spec(2), {"a": "A", "b": "B"})
    v = res.set_index(["row", "column"])
    assert v.loc[("A / MT-Bench", "Random"), "value"] == 5.0 and v.loc[("B / MT-Bench", "Multi"), "value"] == 7.0
    assert v.loc[("B / Arena-Hard", "Multi"), ["value", "ci_low", "ci_high", "n"]].tolist() == [55.0, -1.0, 2.0, 2]
    assert v.loc[("A / Arena-Hard", "Base"), "anchor"] and not v.loc[("B / Arena-Hard", "Base"), "anchor"]
    assert 9.0 not in set(res["value"]) and 9.5 not in set(res["value"])       # the DPO model is not in Table 2
    assert list(dict.fromkeys(res["row"])) == ["A / MT-Bench", "A / Arena-Hard", "B / MT-Bench", "B / Arena-Hard"]
    lora = R.table_results(scores.replace({"sft_full": "sft_lora"}), R.table_spec(2), {"a": "A"},
                           train_method="sft_lora")
    assert set(lora["row"]) == {"A · SFT (LoRA) / MT-Bench", "A · SFT (LoRA) / Arena-Hard"}   # says what it is
    by_method = R.table_results(scores, R.table_spec(17), {"a": "A"}).set_index(["row", "column"])["value"]
    assert by_method[("SFT / MT-Bench", "Multi")] == 6.0 and by_method[("DPO / MT-Bench", "Multi")] == 9.0
    assert "Base" not in set(by_method.index.get_level_values(1))
    sweep = R.table_results(scores.replace({"crowdselect": "crowdselect_1_1_2"}), R.table_spec(3), {"a": "A"})
    assert set(sweep["column"]) == {"MT-Bench", "Arena-Hard"} and "w=(1, 1, 2)" in set(sweep["row"])
    size = R.table_results(scores[scores["subset"] == "random"], R.table_spec(7), {"a": "1k", "b": "2k"})
    assert size.set_index(["row", "column"]).loc[("2k", "MT-Bench"), "value"] == 6.0
    mt_only = R.table_results(scores, R.table_spec(2), {"a": "A"}, benchmarks=("mt_bench",))   # a Try-this bullet
    assert set(mt_only["row"]) == {"A / MT-Bench"}
    with pytest.raises(ValueError, match="NaN score"):
        R.table_results(scores.assign(score=float("nan")), R.table_spec(2), {"a": "A"})


def test_a_demo_row_sits_beside_the_paper_group_it_stands_in_for():
    res = R.table_results(_scores(), R.table_spec(2), {"a": "SmolLM2"})
    c = R.comparison(res, R.paper_numbers(), R.table_spec(2), {"SmolLM2": "Llama-3.2-3B-Instruct"})
    row = c.set_index(["row", "column"]).loc[("SmolLM2 ≙ Llama-3.2-3B-Instruct / MT-Bench", "Multi")]
    assert (row["ours"], row["paper"]) == (6.0, 7.103) and row["diff"] == pytest.approx(-1.103)
    assert ("Qwen2.5-3B / MT-Bench", "Multi") in set(zip(c["row"], c["column"]))      # paper-only rows kept
    v1 = R.comparison(R.table_results(_scores(), R.table_spec(1), {"a": "Random"}), R.paper_numbers(version="v1"),
                      R.table_spec(1)).set_index(["row", "column"])
    assert v1.loc[("Random / Arena-Hard", "Multi"), "paper"] == 71.9                 # tables.version: v1


# ------------------------------------------------------------------ the papermill chain knows stages by name

def test_stages_are_named_from_the_notebooks_present():
    from crowdselect_lib import pipeline

    st = pipeline.stages()
    assert pipeline.REPORT_STAGE in st and list(st) == [p.stem.split("_", 1)[1] for p in sorted(
        (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline.notebooks(["no_such_stage"])
    real = load_config(R.params_file(3))
    assert pipeline.BASELINES_STAGE not in pipeline.cell_stages(real, R.table_spec(3))
    assert pipeline.BASELINES_STAGE in pipeline.cell_stages(real, R.table_spec(2))
    assert pipeline.cell_stages(load_config(R.params_file(3), demo=True), R.table_spec(3)) == ["finetune", "judge"]


def test_tables_figures_and_manifest_are_written_from_planted_scores(tmp_path):
    cfg = load_config(REPO / "params" / "demo.yaml", {"run.root": str(tmp_path / "runs")})
    run = cs.Run.from_config(cfg)
    scores = R.check_scores(_scores().assign(cell="run", kind="trained"))
    results = {t: R.build_table(cfg, t, scores) for t in R.tables_to_render(cfg)}
    assert list(results) == ["2", "17"]
    files = {p.name for p in R.write_tables(run, cfg, results, R.paper_numbers(), R.paper_numbers(version="v1"))}
    assert {"table02.md", "table02.tex", "table02.html", "table02.csv", "table17.md"} <= files
    md = (run.dir / "tables" / "table02.md").read_text()
    assert f"| {cfg.training.student} ≙ Llama-3.2-3B-Instruct / MT-Bench · ours (demo, proxy judge) |" in md
    assert " · Δ |" not in md and "no Δ line: ours and the paper's are on different scales" in md   # never subtracted
    assert "Qwen2.5-3B / MT-Bench" not in md                  # the demo keeps only the rows it reproduces
    assert "inconsistency: Table 2's Llama-3.2-3B base 'Multi'" in md
    line = R.write_manifest(run, cfg, "params/demo.yaml")
    assert line.startswith("manifest tables/manifest_2_17.json: commit ")
    fig = R.table_figure(cfg, "2", results["2"], R.paper_numbers())
    assert [ax.get_title() for ax in fig.axes] == ["MT-Bench · ours", "MT-Bench · paper", "Arena-Hard · ours",
                                                   "Arena-Hard · paper"]
    assert {"table02.png", "table02.pdf"} <= {p.name for p in R.figures_dir(cfg).iterdir()}
    gains = R.claim_check(cfg, results, R.paper_numbers()).set_index("selection (minus Random)")
    assert gains.loc["Multi", "ours_gain"].tolist() == [1.0, -1.0]    # 6 - 5 on MT-Bench, 54 - 55 on Arena-Hard
    assert gains.loc["Multi", "paper_gain"].tolist() == pytest.approx([7.103 - 6.356, 85.5 - 74.8])
