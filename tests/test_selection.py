import json

import numpy as np
import pandas as pd
import pytest

from crowdselect_lib.config import SubsetSpec
from crowdselect_lib.metrics import base_metrics
from crowdselect_lib.selection import (SELECTION_COLUMNS, best_responses, choose_responses, cluster_quotas, combine,
                                       export_chat_jsonl, export_llamafactory, normalize, percentile_ranks, select,
                                       select_subset, selection_table, to_chat_messages, to_dataset, top_k)


def test_choose_responses_strategies():
    s = pd.DataFrame([[1, 9, 5, 7, 3, 2], [8, 1, 2, 3, 4, 5]], index=["a", "b"], columns=list("pqrstu"), dtype=float)
    assert choose_responses(s, "best").tolist() == ["q", "p"]
    top5 = choose_responses(s, "top5_random", seed=1)
    assert top5["a"] != "p" and top5["b"] != "q"             # never the worst answer
    many = pd.concat([choose_responses(s, "top5_random", seed=i) for i in range(200)])
    assert set(many[many.index == "a"]) == {"q", "s", "r", "t", "u"}
    pd.testing.assert_series_equal(choose_responses(s, "random", seed=3), choose_responses(s, "random", seed=3))
    lengths = pd.DataFrame([[1, 1, 1, 1, 1, 50], [1, 60, 1, 1, 1, 1]], index=["a", "b"], columns=list("pqrstu"))
    assert choose_responses(s, "longest", lengths=lengths).tolist() == ["u", "q"]
    with pytest.raises(ValueError, match="unknown response strategy 'worst'"):
        choose_responses(s, "worst")


def test_normalization_is_uniform_and_monotone():
    rng = np.random.default_rng(0)
    m = pd.DataFrame({"difficulty": rng.normal(size=500), "separability": rng.exponential(size=500),
                      "stability": rng.uniform(-1, 1, 500)})
    rho = normalize(m)
    assert rho.min().min() >= 0 and rho.max().max() <= 1
    for c in m:  # eqs. 6-7 are monotone: the quantile step alone fixes the order
        assert (np.argsort(rho[c].to_numpy(), kind="stable") == np.argsort(m[c].to_numpy(), kind="stable")).all()
        assert abs(rho[c].mean() - 0.5) < 0.01
    s = combine(m, [1, 1, 2])
    np.testing.assert_allclose(s, rho["difficulty"] + rho["separability"] + 2 * rho["stability"])
    np.testing.assert_allclose(combine(m, {"stability": -1.0}), -rho["stability"], atol=1e-12)
    with pytest.raises(ValueError, match="weights must have 3 entries"):
        combine(m, [1, 2])
    with pytest.raises(ValueError, match="NaN or infinite value in metric"):
        normalize(m.assign(stability=np.nan))


def test_select_top_bottom_and_errors():
    score = pd.Series([5.0, 1.0, 3.0, 4.0, 2.0], index=list("abcde"))
    ranked, rep = select(score, 3)
    assert ranked.index.tolist() == ["a", "d", "c"] and rep["shortfall"] == 0
    assert select(score, 2, "bottom")[0].index.tolist() == ["b", "e"]
    with pytest.raises(ValueError, match="asked for k=6 rows but only 5 exist"):
        select(score, 6)


def test_cluster_quotas_and_shortfall_fill():
    assert cluster_quotas(pd.Series({0: 5, 1: 5, 2: 5}), 8).tolist() == [3, 3, 2]
    score = pd.Series([9, 8, 7, 6, 5, 1.0], index=list("abcdef"))
    clusters = pd.Series([0, 0, 0, 0, 0, 1], index=list("abcdef"))
    ranked, rep = select(score, 4, clusters=clusters, rule="equal")
    # cluster 1 has one row (quota 2): it gives 'f', cluster 0 gives a,b, shortfall 1 filled by 'c'
    assert set(ranked.index) == {"a", "b", "c", "f"} and rep["shortfall"] == 1 and rep["filled"] == 1
    assert rep["short_clusters"] == {1: 1}
    assert ranked.index.tolist() == ["a", "b", "c", "f"]   # rank order is score order


def test_union_rule_official_single_metric():
    # C=2, k=3 -> each cluster offers its best ceil(3/2)=2, then the best 3 of those 4
    score = pd.Series([10, 9, 8, 1, 2, 3.0], index=list("abcdef"))
    clusters = pd.Series([0, 0, 0, 1, 1, 1], index=list("abcdef"))
    ranked, _ = select(score, 3, clusters=clusters, rule="union")
    assert ranked.index.tolist() == ["a", "b", "f"]


def test_official_compat_uuid_sort_bug_differs():
    # within each cluster the official code keeps the largest uuid strings, whatever their score
    score = pd.Series([0.9, 0.8, 0.1, 0.2, 0.95, 0.05], index=["u1", "u2", "u9", "u3", "u4", "u8"])
    clusters = pd.Series([0, 0, 0, 1, 1, 1], index=score.index)
    ours, _ = select(score, 4, clusters=clusters, rule="equal")
    bug, _ = select(score, 4, clusters=clusters, rule="equal", official_compat=True)
    assert set(ours.index) == {"u1", "u2", "u4", "u3"}
    assert set(bug.index) == {"u9", "u2", "u8", "u4"}


def test_selection_table_and_exports_round_trip(tmp_path, demo_zoo_small):
    zoo = demo_zoo_small
    metrics = base_metrics(zoo.scores(), zoo.families())
    clusters = pd.Series(np.arange(len(metrics)) % 4, index=metrics.index)
    table, rep = select_subset(zoo, metrics, SubsetSpec("cs", "crowdselect", clustered=True), k=40,
                               weights=[1, 1, 2], clusters=clusters)
    assert list(table.columns) == SELECTION_COLUMNS and len(table) == 40 and rep["shortfall"] == 0
    assert table["rank"].tolist() == list(range(1, 41)) and table["score"].is_monotonic_decreasing
    assert table["cluster"].value_counts().tolist() == [10, 10, 10, 10]
    best = zoo.scores().loc[table["uuid"]].idxmax(axis=1).tolist()
    assert table["model"].tolist() == best
    r = zoo.responses.set_index(["uuid", "model"])["response"]
    assert table["response"].tolist() == r.loc[list(zip(table["uuid"], table["model"]))].tolist()

    path = export_chat_jsonl(table, tmp_path / "cs.jsonl")
    back = [json.loads(line) for line in path.read_text().split("\n") if line]
    assert back == to_chat_messages(table) and back[0]["messages"][1]["content"] == table["response"].iloc[0]
    export_llamafactory(table, tmp_path / "lf", "cs")
    export_llamafactory(table.head(3), tmp_path / "lf", "other")
    rows = json.loads((tmp_path / "lf" / "cs.json").read_text())
    assert rows[5] == {"instruction": table["instruction"].iloc[5], "input": "", "output": table["response"].iloc[5]}
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert set(info) == {"cs", "other"} and info["cs"]["file_name"] == "cs.json"
    ds = to_dataset(table)
    assert len(ds) == 40 and ds[3]["uuid"] == table["uuid"].iloc[3] and ds[3]["messages"][0]["role"] == "user"


def test_selection_table_rejects_bad_uuids(demo_zoo_small):
    with pytest.raises(KeyError, match="uuid 'nope' is not in the zoo"):
        selection_table(demo_zoo_small, pd.Series([1.0], index=["nope"]), method="x")
    u = demo_zoo_small.scores().index[0]
    with pytest.raises(ValueError, match="duplicate uuid"):
        selection_table(demo_zoo_small, pd.Series([1.0, 2.0], index=[u, u]), method="x")


def test_fast_normalization_equals_scikit_learn_pipeline():
    from sklearn.preprocessing import MinMaxScaler, QuantileTransformer, StandardScaler

    rng = np.random.default_rng(5)
    for n in (50, 3000):
        m = pd.DataFrame({"difficulty": rng.normal(size=n), "separability": rng.exponential(size=n),
                          "stability": rng.choice([-1, -0.5, 0, 0.5, 1.0], size=n)})   # many ties
        x = StandardScaler().fit_transform(m.to_numpy())
        x = MinMaxScaler().fit_transform(x)
        x = QuantileTransformer(output_distribution="uniform", n_quantiles=min(n, 1000),
                                subsample=None).fit_transform(x)
        np.testing.assert_allclose(normalize(m).to_numpy(), x, atol=1e-12)


def test_crowdselect_score_and_top_k_do_not_depend_on_row_or_column_order(demo_zoo_small):
    """Issue 12: permuting the zoo's model columns or its rows leaves the score bit-identical and the top-k equal."""
    zoo = demo_zoo_small
    s = zoo.scores()
    base = combine(base_metrics(s, zoo.families()), [1, 1, 2])
    rng = np.random.default_rng(11)
    for _ in range(3):
        p = s.iloc[rng.permutation(len(s)), rng.permutation(s.shape[1])]
        score = combine(base_metrics(p, zoo.families()), [1, 1, 2])
        assert np.array_equal(score.reindex(base.index).to_numpy(), base.to_numpy())
        assert top_k(score, 60).index.tolist() == top_k(base, 60).index.tolist()
        clusters = pd.Series(np.arange(len(s)) % 4, index=s.index)
        assert select(score, 40, clusters=clusters)[0].index.tolist() == select(base, 40, clusters=clusters)[0].index.tolist()


def test_ties_in_the_score_are_broken_by_uuid():
    score = pd.Series([1.0, 2.0, 2.0, 1.0], index=["d", "c", "a", "b"])
    assert top_k(score, 3).index.tolist() == ["a", "c", "b"]
    assert top_k(score, 3, "bottom").index.tolist() == ["b", "d", "a"]
    assert top_k(score.iloc[::-1], 3).index.tolist() == ["a", "c", "b"]


def test_shortlisted_selection_equals_the_rule_on_every_row_with_heavy_ties():
    """Issue 22: `select` ranks only each cluster's shortlist (rows at or above its quota-th score); on integer
    scores full of ties the pick must still equal the rule read directly: every row sorted by (-score, uuid), each
    cluster's first quota rows, then all of them in that order."""
    rng = np.random.default_rng(3)
    for trial in range(60):
        n, c = int(rng.integers(20, 300)), int(rng.integers(1, 8))
        uuids = [f"u{i:04d}" for i in rng.permutation(n)]
        score = pd.Series(rng.integers(0, 6, n).astype(float), index=uuids)
        clusters = pd.Series(rng.integers(0, c, n), index=uuids)
        sizes = clusters.value_counts()
        k = int(rng.integers(1, len(sizes) * sizes.min() + 1))       # no shortfall: the shortlist path
        for direction in ("top", "bottom"):
            sign = -1 if direction == "top" else 1
            full = sorted(uuids, key=lambda u: (sign * score[u], u))
            quota = cluster_quotas(sizes.sort_index(), k)
            want, taken = [], dict.fromkeys(quota.index, 0)
            for u in full:
                if taken[clusters[u]] < quota[clusters[u]]:
                    taken[clusters[u]] += 1
                    want.append(u)
            assert select(score, k, direction, clusters)[0].index.tolist() == want, (trial, direction)
            assert top_k(score, k, direction).index.tolist() == full[:k]


def test_after_eq8_the_score_is_a_weighted_sum_of_percentile_ranks():
    rng = np.random.default_rng(2)
    m = pd.DataFrame({"difficulty": rng.normal(size=400), "separability": rng.exponential(size=400),
                      "stability": np.r_[-2.0, rng.choice([-1, -0.5, 0, 0.5, 1.0], size=398), 2.0]})  # interior ties
    pct, rho = percentile_ranks(m), normalize(m)
    untied = ["difficulty", "separability"]
    np.testing.assert_allclose(rho[untied].to_numpy(), pct[untied].to_numpy(), atol=1e-12)   # n <= 1000: exact
    assert np.abs(rho["stability"] - pct["stability"]).max() <= 0.5 / 399 + 1e-12         # ties: within half a step
    np.testing.assert_allclose(combine(m, [1, -1, 0]), pct["difficulty"] - pct["separability"], atol=1e-12)
    big = pd.DataFrame({"difficulty": rng.normal(size=5000)})
    assert np.abs(normalize(big) - percentile_ranks(big)).max().max() < 2e-3             # 1000 quantiles: close
    ends = pd.DataFrame({"stability": [0.0, 0.0, 0.5, 1.0, 1.0]})                         # ties at the ends: 0 and 1
    assert normalize(ends)["stability"].tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_best_responses_is_eq2_with_ties_broken_by_model_name(demo_zoo_small):
    zoo = demo_zoo_small
    best = best_responses(zoo, zoo.scores().index[:5])
    s = zoo.scores()
    assert best["model"].tolist() == s.iloc[:5].idxmax(axis=1).tolist()
    assert best["score"].tolist() == s.iloc[:5].max(axis=1).tolist()
    tied = pd.DataFrame([[1.0, 3.0, 3.0]], index=["u"], columns=["zeta", "beta", "alpha"])
    assert choose_responses(tied, "best").tolist() == ["alpha"]
    assert choose_responses(tied[["alpha", "beta", "zeta"]], "random", seed=4).tolist() == \
        choose_responses(tied, "random", seed=4).tolist()


def test_percentile_on_sorted_column_is_numpy_bit_for_bit():
    """The O(n_quantiles) percentile of eq. 8 equals np.percentile exactly (random and heavily tied columns)."""
    from crowdselect_lib.selection.score import percentile_sorted

    rng = np.random.default_rng(0)
    for n in (2, 3, 776, 1000, 3001):
        for xs in (rng.random(n) * 1e3, np.round(rng.random(n), 2)):
            xs = np.sort(xs)
            refs = np.linspace(0, 1, min(n, 1000))
            assert np.array_equal(percentile_sorted(xs, refs), np.percentile(xs, refs * 100))
