import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crowdselect_lib.zoo import MAGPIE_REWARD_MODELS, Zoo, ZooError, load_zoo, magpie_models, validate


def _tiny_zoo(**changes) -> Zoo:
    models = pd.DataFrame({"model": ["m1", "m2", "m3"], "family": ["f", "f", "g"], "size_b": [1.0, 2.0, np.nan]})
    rows = [(u, f"text {u}", m, f"answer {u} {m}", float(i + j)) for i, u in enumerate(["u1", "u2"])
            for j, m in enumerate(["m1", "m2", "m3"])]
    resp = pd.DataFrame(rows, columns=["uuid", "instruction", "model", "response", "rm"])
    zoo = Zoo(resp, models, ["rm"], "test", "rm")
    for k, v in changes.items():
        setattr(zoo, k, v)
    return zoo


def test_scores_matrix_and_families():
    zoo = validate(_tiny_zoo())
    s = zoo.scores()
    assert s.index.tolist() == ["u1", "u2"] and s.columns.tolist() == ["m1", "m2", "m3"]
    np.testing.assert_array_equal(s.to_numpy(), [[0, 1, 2], [1, 2, 3]])
    assert zoo.families()["m2"] == ("f", 2.0)
    assert np.isnan(zoo.families()["m3"][1])  # unknown size is valid


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.iloc[0:0], "empty zoo"),
    (lambda r: r.assign(rm=r["rm"].where(~((r.uuid == "u2") & (r.model == "m3")))), "uuid 'u2' \\(m3: NaN score\\)"),
    (lambda r: pd.concat([r, r.iloc[[1]]]), "duplicate \\(uuid, model\\).*uuid 'u1' model 'm2'"),
    (lambda r: r.assign(model=r["model"].replace("m3", "mystery")), "without a family entry: \\['mystery'\\]"),
    (lambda r: r.drop(columns=["response"]), "missing column.*response"),
    (lambda r: r[~((r.uuid == "u1") & (r.model == "m2"))], "uuid 'u1' \\(m2: no row\\)"),
])
def test_validation_errors_name_the_problem(mutate, message):
    zoo = _tiny_zoo()
    zoo.responses = mutate(zoo.responses)
    with pytest.raises(ZooError, match=message):
        validate(zoo)


def test_drop_incomplete_is_explicit_and_reported():
    zoo = _tiny_zoo()
    zoo.responses = zoo.responses[~((zoo.responses.uuid == "u1") & (zoo.responses.model == "m2"))]
    zoo = validate(zoo, drop_incomplete=True)
    assert zoo.info["dropped_incomplete"] == 1 and zoo.scores().index.tolist() == ["u2"]


def test_unknown_reward_model():
    with pytest.raises(ZooError, match="unknown reward model 'nope'"):
        validate(_tiny_zoo()).scores("nope")
    with pytest.raises(ZooError, match="unknown reward model"):
        load_zoo("demo", n_instructions=100, reward_models=["nope"])


def test_magpie_local_parquet_struct_columns(tmp_path):
    models = magpie_models()["model"].tolist()
    n = 4
    cols = {"uuid": [f"id{i}" for i in range(n)], "instruction": [f"question {i}" for i in range(n)]}
    for j, m in enumerate(models):
        cols[m] = [{"content": f"{m} says {i}", **{rm: float(i * 100 + j + k / 10)
                    for k, rm in enumerate(MAGPIE_REWARD_MODELS)}} for i in range(n)]
    table = pa.table(cols)
    pq.write_table(table.slice(0, 2), tmp_path / "train-00000.parquet")
    pq.write_table(table.slice(2, 2), tmp_path / "train-00001.parquet")
    zoo = load_zoo("magpie", tmp_path)
    assert len(zoo.responses) == n * 19 and zoo.reward_models == MAGPIE_REWARD_MODELS
    assert zoo.default_reward_model == "Skywork-Reward-Llama-3.1-8B"
    s = zoo.scores("ArmoRM-Llama3-8B-v0.1")
    assert s.loc["id3", models[5]] == pytest.approx(305.0)
    row = zoo.responses.query("uuid == 'id2' and model == @models[7]").iloc[0]
    assert row["response"] == f"{models[7]} says 2" and row["instruction"] == "question 2"


def test_alpacaeval_zoo_from_local_dir(shared_data):
    with pytest.raises(ZooError, match="lack some model's answer.*drop_incomplete=True"):
        load_zoo("alpacaeval", shared_data / "alpacaeval_zoo")
    zoo = load_zoo("alpacaeval", shared_data / "alpacaeval_zoo", drop_incomplete=True)
    s = zoo.scores()
    assert s.shape == (805 - zoo.info["dropped_incomplete"], 56) and zoo.info["dropped_incomplete"] > 0
    assert s.to_numpy().min() >= 1.0 and s.to_numpy().max() <= 2.0
    assert zoo.families()["claude-2"][0] == "claude" and np.isnan(zoo.families()["claude-2"][1])


def test_demo_zoo_is_deterministic_and_labelled():
    a, b = load_zoo("demo", n_instructions=150, seed=4), load_zoo("demo", n_instructions=150, seed=4)
    pd.testing.assert_frame_equal(a.responses, b.responses)
    assert a.label.startswith("offline demo") and a.truth.index.tolist() == a.scores().index.tolist()
    assert a.models["family"].nunique() == 6 and len(a.models) == 19 and len(a.reward_models) == 3
    with pytest.raises(ValueError, match="100 .. 3,000,000"):
        load_zoo("demo", n_instructions=50)


def test_save_load_round_trip(tmp_path, demo_zoo_small):
    demo_zoo_small.save(tmp_path / "zoo")
    back = Zoo.load(tmp_path / "zoo")
    pd.testing.assert_frame_equal(back.responses, demo_zoo_small.responses)
    pd.testing.assert_frame_equal(back.truth, demo_zoo_small.truth)
    assert back.reward_models == demo_zoo_small.reward_models and back.source == "demo"


def test_demo_zoo_plants_what_the_chapters_teach():
    """Issue 15: a size effect inside families, correlated planted properties, topics not trivially separable."""
    import time

    from crowdselect_lib.zoo import planted_correlations
    from crowdselect_lib.zoo.demo import PLANTED_CORRELATION

    t0 = time.perf_counter()
    zoo = load_zoo("demo", n_instructions=3000, seed=0)
    assert time.perf_counter() - t0 < 3.0                     # ~0.4 s on an idle core
    means = zoo.scores().mean()
    for fam, g in zoo.models.groupby("family"):
        ordered = means[g.sort_values("size_b")["model"]].to_numpy()
        assert (np.diff(ordered) > 0).all(), fam                 # bigger models score higher on average
    t = zoo.truth
    assert 0.3 < t["stability"].mean() < 0.5 and 0.15 < (t["stability"] < 0).mean() < 0.3
    corr = planted_correlations(t)
    assert abs(corr.loc["difficulty", "spread"] - PLANTED_CORRELATION[("difficulty", "spread")]) < 0.08
    assert abs(corr.loc["difficulty", "stability"] - PLANTED_CORRELATION[("difficulty", "stability")]) < 0.08
    shares = t["kind"].value_counts(normalize=True)
    assert abs(shares["generic"] - 0.35) < 0.05 and abs(shares["bridge"] - 0.15) < 0.05
    generic = zoo.instructions().set_index("uuid")["instruction"][t.index[t["kind"] == "generic"]]
    assert generic.str.startswith(("Give me three tips", "What are common", "Write a short blog", "Explain",
                                   "What should I know", "List the pros")).all()
    assert t["topic"].nunique() == 10
