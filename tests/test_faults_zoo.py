"""Bad zoo data and bad selection params (issue 14): a clear error naming the problem, or a counted, recorded drop."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import crowdselect_lib as cs
from crowdselect_lib.config import ConfigError, load_config
from crowdselect_lib.metrics import base_metrics
from crowdselect_lib.selection import combine, normalize
from crowdselect_lib.zoo import Zoo, ZooError, load_zoo, validate
from crowdselect_lib.zoo.sources import magpie_long
from tests.conftest import REPO

pytestmark = pytest.mark.faults


def _zoo(resp_change=None, models_change=None) -> Zoo:
    models = pd.DataFrame({"model": ["m1", "m2", "m3"], "family": ["f", "f", "g"], "size_b": [1.0, 2.0, np.nan]})
    rows = [(u, f"text {u}", m, f"answer {u} {m}", float(i + j)) for i, u in enumerate(["u1", "u2", "u3"])
            for j, m in enumerate(["m1", "m2", "m3"])]
    resp = pd.DataFrame(rows, columns=["uuid", "instruction", "model", "response", "rm"])
    if resp_change:
        resp = resp_change(resp)
    if models_change:
        models = models_change(models)
    return Zoo(resp, models, ["rm"], "test", "rm")


def _set(col, value, uuid="u2", model="m3"):
    def change(r):
        r = r.astype({col: object}) if not isinstance(value, float) else r.copy()
        r.loc[(r.uuid == uuid) & (r.model == model), col] = value
        return r
    return change


@pytest.mark.parametrize("change, message", [
    (_set("uuid", np.nan), r"1 row\(s\) have no uuid .*model 'm3'"),
    (_set("rm", np.inf), r"infinite or huge score\(s\) in column 'rm', e.g. inf for uuid 'u2' model 'm3'"),
    (_set("rm", -np.inf), r"infinite or huge.*-inf for uuid 'u2' model 'm3'"),
    (_set("rm", 1e300), r"infinite or huge.*1e\+300 for uuid 'u2' model 'm3'"),
    (_set("rm", "n/a"), r"non-numeric score\(s\) in column 'rm', e.g. 'n/a' for uuid 'u2' model 'm3'"),
    (_set("instruction", None), r"no instruction text .*uuid 'u2' model 'm3'"),
    (_set("instruction", "   "), r"no instruction text .*uuid 'u2' model 'm3'"),
    (_set("instruction", "another text"), r"uuid 'u2': 'text u2' vs 'another text'"),
    (_set("uuid", 7, uuid="u1", model="m1"), r"uuid column mixes types \['int', 'str'\]"),
])
def test_bad_zoo_rows_are_named(change, message):
    with pytest.raises(ZooError, match=message):
        validate(_zoo(change))


@pytest.mark.parametrize("change, message", [
    (lambda m: m.assign(size_b=[1.0, -2.0, np.nan]), r"model 'm2': size_b -2.0 must be a positive"),
    (lambda m: m.assign(size_b=[1.0, "big", np.nan]), r"model 'm2': size_b 'big' is not a number"),
    (lambda m: m.assign(family=["f", np.nan, "g"]), r"model 'm2' has no family"),
    (lambda m: m.assign(family=["f", " ", "g"]), r"model 'm2' has no family"),
])
def test_bad_model_table_is_named(change, message):
    with pytest.raises(ZooError, match=message):
        validate(_zoo(models_change=change))


@pytest.mark.parametrize("value, reason", [(None, "missing or blank answer"), ("", "missing or blank answer"),
                                           ("  \n", "missing or blank answer"), (np.nan, "NaN score")])
def test_missing_answer_or_score_is_incomplete_then_dropped_and_counted(value, reason):
    col = "rm" if reason == "NaN score" else "response"
    with pytest.raises(ZooError, match=rf"uuid 'u2' \(m3: {reason}\).*drop_incomplete=True"):
        validate(_zoo(_set(col, value)))
    zoo = validate(_zoo(_set(col, value)), drop_incomplete=True)
    assert zoo.info["dropped_incomplete"] == 1 and zoo.info["dropped_uuids"] == ["u2"]
    key = "nan_score" if reason == "NaN score" else "no_answer"
    assert zoo.info["dropped_reasons"][key] == 1
    assert zoo.scores().index.tolist() == ["u1", "u3"] and zoo.responses["response"].map(type).eq(str).all()


def test_integer_uuids_become_strings():
    zoo = validate(_zoo(lambda r: r.assign(uuid=r["uuid"].str[1:].astype(int))))
    assert zoo.scores().index.tolist() == ["1", "2", "3"]


def test_empty_reward_models_is_an_error_not_an_index_error():
    with pytest.raises(ZooError, match=r"reward_models=\[\] keeps no score column"):
        load_zoo("demo", n_instructions=100, reward_models=[])
    with pytest.raises(ZooError, match="no reward-model score column"):
        validate(Zoo(_zoo().responses, _zoo().models, [], "test", "rm"))
    with pytest.raises(ConfigError, match=r"zoo.reward_models: \[\] is empty"):
        load_config(REPO / "params" / "demo.yaml", {"zoo.reward_models": []})


def test_real_zoo_null_answer_and_nan_score_are_dropped_with_drop_incomplete(tmp_path, shared_data):
    src = shared_data / "alpacaeval_zoo"
    inst = pd.read_parquet(src / "instructions.parquet")
    resp = pd.read_parquet(src / "responses.parquet")
    resp.loc[0, "output"] = None                     # one null answer
    resp.loc[1, "preference"] = np.nan               # one NaN score (another instruction)
    inst.to_parquet(tmp_path / "instructions.parquet")
    resp.to_parquet(tmp_path / "responses.parquet")
    with pytest.raises(ZooError, match="lack some model's answer or score"):
        load_zoo("alpacaeval", tmp_path)
    full = load_zoo("alpacaeval", src, drop_incomplete=True)
    zoo = load_zoo("alpacaeval", tmp_path, drop_incomplete=True)
    assert zoo.info["dropped_incomplete"] == full.info["dropped_incomplete"] + 2
    assert not set(zoo.instructions()["instruction"]) & set(resp.loc[[0, 1], "instruction"])
    reasons, base = zoo.info["dropped_reasons"], full.info["dropped_reasons"]
    assert (reasons["no_answer"], reasons["nan_score"]) == (base["no_answer"] + 1, base["nan_score"] + 1)
    assert base["no_answer"] == 32       # the real zoo's blank answers (22 by gemma-2b-it; 8 are one zero-width space)


def test_magpie_text_columns_are_objects_not_fixed_width():
    n_models = 19
    from crowdselect_lib.zoo import magpie_models

    long_text = "x" * 50_000
    cols = {"uuid": [f"id{i}" for i in range(50)], "instruction": [long_text] + ["short"] * 49}
    for m in magpie_models()["model"][:n_models]:
        cols[m] = [{"content": "a", "Skywork-Reward-Llama-3.1-8B": 1.0}] * 50
    long = magpie_long(pa.table(cols))
    for col in ("uuid", "instruction", "response"):
        assert pd.api.types.is_string_dtype(long[col]) and long[col].to_numpy().dtype.kind != "U"
    # the text itself (19 copies of 50k characters), never 950 fixed-width rows of 200 kB each (190 MB)
    assert long["instruction"].memory_usage(deep=True, index=False) < 5e6


def test_huge_metric_values_do_not_overflow_normalisation():
    rng = np.random.default_rng(0)
    m = pd.DataFrame({"difficulty": rng.normal(size=50) * 1e200, "separability": rng.exponential(size=50) * 1e290,
                      "stability": rng.uniform(-1, 1, 50)})
    rho = normalize(m)
    assert np.isfinite(rho.to_numpy()).all()
    small = normalize(m / np.array([1e200, 1e290, 1.0]))
    np.testing.assert_allclose(rho.to_numpy(), small.to_numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="NaN or infinite value in metric column"):
        normalize(m.assign(stability=np.inf))


def test_scores_near_the_limit_give_finite_metrics():
    fam = {"a": ("A", 1.0), "b": ("A", 2.0)}
    m = base_metrics(pd.DataFrame([[1e150, -1e150], [1.0, 2.0]], columns=["a", "b"]), fam)
    assert np.isfinite(m.to_numpy()).all()
    with pytest.raises(ValueError, match="infinite score for uuid 0 model 'b'"):
        base_metrics(pd.DataFrame([[1.0, np.inf]], columns=["a", "b"]), fam)


@pytest.mark.parametrize("override, message", [
    ({"selection.weights": [float("nan"), 1, 2]}, r"selection.weights\[0\]: nan must be a finite number"),
    ({"selection.weights": [0, 0, 0]}, r"selection.weights \[0.0, 0.0, 0.0\] are all zero"),
    ({"selection.weights": [1, 2]}, r"selection.weights .* must have 3 entries"),
    ({"selection.k": 0}, r"selection.k: 0 must be >= 1"),
    ({"selection.subsets": [{"name": "cs", "metric": "crowdselect", "weights": [0, 0, 0]}]},
     r"selection.subsets\[cs\].weights \[0.0, 0.0, 0.0\] are all zero"),
    ({"selection.subsets": [{"name": "a", "metric": "difficulty"}, {"name": "a", "metric": "stability"}]},
     r"subset name 'a' appears twice"),
    ({"selection.subsets": [{"name": "../../x", "metric": "difficulty"}]}, r"subset name '../../x' is not a plain"),
    ({"selection.subsets": [{"name": "", "metric": "difficulty"}]}, r"subset name '' is not a plain"),
    ({"metrics.stability_families": []}, r"metrics.stability_families: \[\] is empty"),
])
def test_bad_selection_params_fail_at_load_time_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(REPO / "params" / "demo.yaml", override)


def test_combine_rejects_bad_weights_too():
    m = pd.DataFrame({"difficulty": [1.0, 2.0], "separability": [1.0, 3.0], "stability": [0.0, 1.0]})
    with pytest.raises(ValueError, match="all zero"):
        combine(m, [0, 0, 0])
    with pytest.raises(ValueError, match="finite"):
        combine(m, [np.nan, 1, 1])
    assert cs.selection.combine(m, [1, 1, 2]).tolist() == [0.0, 4.0]


# ---------------------------------------------------------------- issue 25: blank, empty, tied, repeated, orphan

@pytest.mark.parametrize("text", ["\u200b", "\ufeff", "\x00", " \u2060\u3000\u200d ", "\u00a0\n\u200c"],
                         ids=["zero-width-space", "bom", "nul", "joiners-and-ideographic-space", "nbsp-zwnj"])
def test_invisible_only_text_is_blank(text):
    with pytest.raises(ZooError, match=r"1 row\(s\) have no instruction text .*uuid 'u2' model 'm3'"):
        validate(_zoo(_set("instruction", text)))
    with pytest.raises(ZooError, match=r"uuid 'u2' \(m3: missing or blank answer\)"):
        validate(_zoo(_set("response", text)))
    assert validate(_zoo(_set("response", "\u200bok"))).info["dropped_incomplete"] == 0   # text after it counts


def test_drop_incomplete_that_drops_everything_is_an_error():
    with pytest.raises(ZooError, match=r"drop_incomplete dropped all 3 instruction\(s\): none has every model's answer "
                                       r"and score \(blank answers 3, NaN scores 0, missing rows 0\)"):
        validate(_zoo(lambda r: r.assign(response=np.where(r["model"] == "m2", "\ufeff", r["response"]))),
                 drop_incomplete=True)


def test_constant_scores_are_refused_and_ties_counted():
    with pytest.raises(ZooError, match=r"every score in column 'rm' is 1.0: .* a selection would just be uuid order"):
        validate(_zoo(lambda r: r.assign(rm=1.0)))
    zoo = validate(_zoo(lambda r: r.assign(rm=np.where(r["uuid"] == "u2", 7.0, r["rm"]))))
    assert zoo.info["tied_instructions"] == {"rm": 1}
    assert "all models scored alike (rm): 1 instruction(s); they rank among themselves by uuid" in \
        cs.zoo.validation_report(zoo)


def test_repeated_instruction_texts_are_counted_and_reported():
    four = _zoo(lambda r: pd.concat([r, r[r.uuid == "u1"].assign(uuid="u4"), r[r.uuid == "u1"].assign(uuid="u5"),
                                     r[r.uuid == "u1"].assign(uuid="u6")], ignore_index=True))
    zoo = validate(four)
    assert zoo.info["duplicate_texts"] == 3          # u4, u5, u6 repeat u1's text: each could enter a subset
    assert zoo.info["duplicate_text_example"] == {"uuids": ["u1", "u4", "u5", "u6"], "text": "'text u1'"}
    report = cs.zoo.validation_report(zoo)
    assert "uuids repeating an earlier uuid's text: 3 (each copy can be selected), e.g. ['u1', 'u4', 'u5', 'u6']" in report
    assert validate(_zoo()).info["duplicate_texts"] == 0


def test_alpacaeval_orphan_answers_are_counted(tmp_path, shared_data):
    src = shared_data / "alpacaeval_zoo"
    inst = pd.read_parquet(src / "instructions.parquet")
    inst.iloc[1:21].to_parquet(tmp_path / "instructions.parquet")    # the first one's 56 answers lose it
    resp = pd.read_parquet(src / "responses.parquet")
    resp[resp["instruction"].isin(inst["instruction"].iloc[:21])].to_parquet(tmp_path / "responses.parquet")
    zoo = load_zoo("alpacaeval", tmp_path, limit=20, drop_incomplete=True)
    assert zoo.info["orphan_answers"] == 56 and inst["instruction"].iloc[0] not in set(zoo.responses["instruction"])
    assert "answers without an instruction (not loaded): 56, e.g. model " in cs.zoo.validation_report(zoo)


@pytest.mark.parametrize("flag", [True, np.bool_(False)])
def test_size_b_must_be_a_number_not_a_flag(flag):
    with pytest.raises(ZooError, match=rf"model 'm2': size_b {flag!r} is not a number"):
        validate(_zoo(models_change=lambda m: m.assign(size_b=pd.Series([1.0, flag, np.nan], dtype=object))))


def test_model_names_with_dollars_draw_as_written():
    import matplotlib
    matplotlib.use("Agg")

    names = ["m$\\foo$", "a$x^2$b", "m3"]
    zoo = validate(_zoo(lambda r: r.assign(model=r["model"].map(dict(zip(["m1", "m2", "m3"], names)))),
                        lambda m: m.assign(model=names)))
    fig = cs.zoo.plot_scores_by_family(zoo, title="zoo $\\oops$")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["m$\\foo$ (1B)", "a$x^2$b (2B)", "m3 (size ?)"]
    fig.canvas.draw()                                   # mathtext would raise here: ParseFatalException
