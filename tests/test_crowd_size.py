"""Crowd-size study (`crowdselect_lib.crowd_size`): sub-crowds vs the full crowd, eqs. 3-9."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from crowdselect_lib import crowd_size as C
from crowdselect_lib.metrics import METRICS, base_metrics
from crowdselect_lib.selection import combine, select
from crowdselect_lib.zoo import Zoo

# model -> (family, size_b): two Stability families (a: 3 sizes, b: 2 sizes) and three that never enter Stability
# (c: one model; d: unknown sizes; e: two models of one size)
FAMILIES = {"a1": ("a", 1.0), "a2": ("a", 2.0), "a3": ("a", 3.0), "b1": ("b", 1.0), "b2": ("b", 7.0),
            "c1": ("c", 7.0), "d1": ("d", np.nan), "d2": ("d", np.nan), "e1": ("e", 7.0), "e2": ("e", 7.0)}


def _scores(n=80, seed=0, families=FAMILIES) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, len(families))), columns=list(families),
                        index=pd.Index([f"u{i:03d}" for i in range(n)], name="uuid"))


def _zoo(scores: pd.DataFrame, families=FAMILIES) -> Zoo:
    long = scores.stack().rename("rm").reset_index().rename(columns={"level_1": "model"})
    long = long.assign(instruction="q " + long["uuid"], response="a")[["uuid", "instruction", "model", "response", "rm"]]
    models = pd.DataFrame([(m, f, s) for m, (f, s) in families.items()], columns=["model", "family", "size_b"])
    return Zoo(long, models, ["rm"], "test", "rm")


def test_full_crowd_gives_exactly_one_and_tidy_shape():
    s = _scores()
    study = C.crowd_size_study(s, FAMILIES, sizes=[3, 6, 10], draws=7, k=12)
    assert list(study.columns) == ["m", "draw", "metric", "spearman", "jaccard", "n_families"]
    assert len(study) == 3 * 7 * 3 and set(study["metric"]) == set(METRICS)
    full = study[study["m"] == 10]
    assert (full["spearman"] == 1.0).all() and (full["jaccard"] == 1.0).all() and (full["n_families"] == 2).all()
    ok = study["spearman"].dropna()
    assert ok.between(-1, 1).all() and study["jaccard"].between(0, 1).all()
    # a Zoo gives the same study as its score matrix
    pd.testing.assert_frame_equal(C.crowd_size_study(_zoo(s), sizes=[3, 6, 10], draws=7, k=12), study)


def test_no_family_draw_has_nan_stability_and_uses_the_other_metrics():
    s = _scores()
    study = C.crowd_size_study(s, FAMILIES, sizes=[3], draws=40, k=12)
    none = study[study["n_families"] == 0]
    assert len(none) > 0, "some 3-model draws must miss every Stability family"
    assert none.loc[none["metric"] == "stability", "spearman"].isna().all()
    assert none.loc[none["metric"] != "stability", "spearman"].notna().all()
    # the library's path for one such crowd: eq. 9 over Difficulty and Separability only
    crowd = ["c1", "d1", "e1"]
    met = C.crowd_metrics(s[crowd], FAMILIES)
    assert met["stability"].isna().all() and met.attrs["n_families"] == 0
    np.testing.assert_allclose(met["difficulty"], -s[crowd].mean(axis=1), rtol=1e-14)          # eq. 3
    np.testing.assert_allclose(met["separability"], s[crowd].var(axis=1, ddof=0), rtol=1e-14)  # eq. 4
    top = C.crowdselect_top(met, 12)
    expected = select(combine(met[["difficulty", "separability"]], {"difficulty": 1, "separability": 1}), 12)[0]
    assert list(top) == list(expected.index)


def test_deterministic_for_a_seed_and_independent_of_other_sizes():
    s = _scores()
    a = C.crowd_size_study(s, FAMILIES, sizes=[4, 7], draws=6, k=10, seed=3)
    pd.testing.assert_frame_equal(a, C.crowd_size_study(s, FAMILIES, sizes=[4, 7], draws=6, k=10, seed=3))
    only7 = C.crowd_size_study(s, FAMILIES, sizes=[7], draws=6, k=10, seed=3)
    pd.testing.assert_frame_equal(a[a["m"] == 7].reset_index(drop=True), only7)
    other = C.crowd_size_study(s, FAMILIES, sizes=[4, 7], draws=6, k=10, seed=4)
    assert not np.allclose(a["jaccard"], other["jaccard"])


def test_sub_crowd_metrics_are_bit_identical_to_base_metrics():
    s = _scores(n=90, seed=5).round(1)                       # rounded: tied scores inside families too
    rng = np.random.default_rng(0)
    crowds = [list(rng.choice(s.columns, size=m, replace=False)) for m in (2, 3, 4, 6, 8, 10) for _ in range(4)]
    crowds += [["a1", "a3", "b1", "b2", "c1"], ["a2", "a3", "b2", "e1", "e2"], ["c1", "d1"], list(s.columns)]
    for ties in ("average", "official"):                  # `metrics.stability_ties`: both rules go through
        for crowd, got in zip(crowds, C.sub_crowd_metrics(s, FAMILIES, crowds, ties)):
            want = C.crowd_metrics(s[crowd], FAMILIES, ties)
            pd.testing.assert_frame_equal(got, want, check_exact=True, obj=f"{ties} {crowd}")
            if want.attrs["n_families"]:
                pd.testing.assert_series_equal(want["stability"], base_metrics(s[crowd], FAMILIES, ties=ties)["stability"])
            assert got.attrs["n_families"] == want.attrs["n_families"]
    with pytest.raises(KeyError, match=r"model\(s\) \['zz'\] are not columns"):
        C.sub_crowd_metrics(s, FAMILIES, [["a1", "zz"]])


def test_fast_eq9_path_equals_the_crowdselect_top_fallback(monkeypatch):
    """The batched eqs. 6-9 give the same study as `crowdselect_top` (selection.combine) per crowd, with clusters."""
    s = _scores(n=100, seed=3)
    clusters = pd.Series(np.arange(100) % 4, index=s.index)
    fast = C.crowd_size_study(s, FAMILIES, sizes=[3, 5, 8], draws=8, k=20, clusters=clusters)
    exact = C._eq9
    monkeypatch.setattr(C, "_eq9", lambda rho, w: exact(rho, w) * (1 + 1e-15))    # breaks the run-time check
    slow = C.crowd_size_study(s, FAMILIES, sizes=[3, 5, 8], draws=8, k=20, clusters=clusters)
    pd.testing.assert_frame_equal(fast, slow)
    assert fast["jaccard"].nunique() > 3


def test_batched_values_equal_the_library_per_crowd():
    """Each leave-one-family-out row equals base_metrics + combine + select on that crowd (scipy Spearman)."""
    s = _scores(n=120, seed=1)
    lofo = C.leave_one_family_out(s, FAMILIES, k=15)
    full = base_metrics(s, FAMILIES)
    ref = set(select(combine(full, (1, 1, 2)), 15)[0].index)
    for fam, rows in lofo.groupby("family", sort=False):
        crowd = s[[m for m in s.columns if FAMILIES[m][0] != fam]]
        met = base_metrics(crowd, FAMILIES)
        for name in METRICS:
            got = rows.loc[rows["metric"] == name, "spearman"].item()
            assert got == pytest.approx(spearmanr(met[name], full[name])[0], abs=1e-12), (fam, name)
        picked = set(select(combine(met, (1, 1, 2)), 15)[0].index)
        assert rows["jaccard"].iloc[0] == len(picked & ref) / len(picked | ref), fam
    assert lofo.groupby("family")["n_dropped"].first().to_dict() == {"a": 3, "b": 2, "c": 1, "d": 2, "e": 2}
    assert lofo.groupby("family")["in_stability"].first().to_dict() == {
        "a": True, "b": True, "c": False, "d": False, "e": False}


def test_leave_one_family_out_what_changes():
    """Dropping a family outside Stability leaves Stability bit-identical but moves Difficulty/Separability;
    dropping a Stability family whose two models score mean +- std of the others (per instruction) leaves
    Difficulty and Separability unchanged and changes only Stability."""
    rng = np.random.default_rng(2)
    s = _scores(n=150, seed=2)
    mu, sd = s.mean(axis=1), s.std(axis=1, ddof=0)
    sign = rng.choice([-1.0, 1.0], len(s))                     # which of the two sizes scores higher
    fams = {**FAMILIES, "p_small": ("p", 1.0), "p_big": ("p", 9.0)}
    s = s.assign(p_small=mu - sign * sd, p_big=mu + sign * sd)
    lofo = C.leave_one_family_out(s, fams, k=20).set_index(["family", "metric"])["spearman"]
    full = base_metrics(s, fams)
    for outside in ("c", "d", "e"):
        assert lofo[(outside, "stability")] == 1.0
        assert lofo[(outside, "difficulty")] < 0.999 and lofo[(outside, "separability")] < 0.999
        kept = s[[m for m in s.columns if fams[m][0] != outside]]
        np.testing.assert_array_equal(base_metrics(kept, fams)["stability"], full["stability"])
    without_p = base_metrics(s[list(FAMILIES)], fams)
    np.testing.assert_allclose(without_p[["difficulty", "separability"]], full[["difficulty", "separability"]],
                               rtol=1e-12, atol=1e-12)
    assert lofo[("p", "difficulty")] == pytest.approx(1.0, abs=1e-12)
    assert lofo[("p", "separability")] == pytest.approx(1.0, abs=1e-12)
    assert lofo[("p", "stability")] < 0.95


def test_summary_and_agreement_size_on_a_hand_built_study():
    rows = []
    jac = {3: [0.95, 0.85], 4: [0.8, 0.8], 5: [0.9, 1.0], 6: [1.0, 1.0]}          # medians 0.9, 0.8, 0.95, 1
    sp = {3: [0.5, np.nan], 4: [0.92, 0.96], 5: [0.91, 0.99], 6: [1.0, 1.0]}       # stability medians .5 .94 .95 1
    for m in jac:
        for d in range(2):
            for name in METRICS:
                rows.append({"m": m, "draw": d, "metric": name, "jaccard": jac[m][d],
                             "spearman": sp[m][d] if name == "stability" else 1.0, "n_families": 1})
    study = pd.DataFrame(rows)
    s = C.crowd_size_summary(study).set_index(["quantity", "m"])
    assert s.loc[("jaccard", 4), "median"] == 0.8 and s.loc[("jaccard", 3), "median"] == pytest.approx(0.9)
    assert s.loc[("stability", 3), "n"] == 1 and s.loc[("stability", 3), "median"] == 0.5
    assert s.loc[("jaccard", 5), "q_low"] == pytest.approx(0.91) and s.loc[("jaccard", 5), "q_high"] == pytest.approx(0.99)
    got = C.agreement_size(study, 0.9).to_dict()
    # jaccard reaches 0.9 at m=3 but drops at m=4: it holds from m=5 on
    assert got == {"difficulty": 3, "separability": 3, "stability": 4, "jaccard": 5, "all": 5}
    assert C.agreement_size(study, 0.99)["jaccard"] == 6
    study.loc[study["m"] == 6, "jaccard"] = 0.5
    assert C.agreement_size(study, 0.9)["jaccard"] is pd.NA and C.agreement_size(study, 0.9)["all"] is pd.NA


def test_plot_has_two_labelled_panels_and_the_reference_line():
    import matplotlib
    matplotlib.use("Agg")
    study = C.crowd_size_study(_scores(), FAMILIES, sizes=[3, 5, 10], draws=4, k=10)
    fig = C.plot_crowd_size(study, title="planted")
    left, right = fig.axes
    assert left.get_ylabel() == "Spearman vs full crowd" and right.get_ylabel().startswith("Jaccard")
    assert left.get_xlabel() == right.get_xlabel() == "crowd size m (models drawn)"
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert "stability (median)" in labels and "0.9 reference" in labels
    assert any(np.allclose(line.get_ydata(), 0.9) for line in right.get_lines())
    assert fig._suptitle.get_text() == "planted"


def test_errors_name_the_problem():
    s = _scores()
    with pytest.raises(ValueError, match=r"crowd size\(s\) \[11\] outside 2 .. 10"):
        C.crowd_size_study(s, FAMILIES, sizes=[3, 11])
    with pytest.raises(ValueError, match="needs its `families` mapping"):
        C.crowd_size_study(s)
    with pytest.raises(ValueError, match="k must be within 1 .. 80"):
        C.crowd_size_study(s, FAMILIES, k=81)
    with pytest.raises(ValueError, match="no cluster label for uuid 'u079'"):
        C.crowd_size_study(s, FAMILIES, clusters=pd.Series(0, index=s.index[:-1]))


# ------------------------------------------------------------------ the real AlpacaEval zoo (reference data)

@pytest.fixture(scope="module")
def alpacaeval(shared_data):
    from crowdselect_lib.zoo import load_zoo

    d = shared_data / "alpacaeval_zoo"
    if not (d / "responses.parquet").exists():
        pytest.skip(f"no AlpacaEval zoo at {d}")
    zoo = load_zoo("alpacaeval", d, drop_incomplete=True)
    inst = pd.read_parquet(d / "instructions.parquet", columns=["instruction", "dataset"])
    subsets = zoo.instructions().merge(inst, on="instruction", how="left").set_index("uuid")["dataset"]
    return zoo, pd.Series(pd.Categorical(subsets).codes, index=subsets.index)   # 5 AlpacaEval subsets as clusters


def test_alpacaeval_study(alpacaeval):
    zoo, _ = alpacaeval
    n_models = len(zoo.model_names)
    assert n_models == 56
    study = C.crowd_size_study(zoo, sizes=[3, 10, 30, n_models], draws=6, k=100)
    assert len(study) == 4 * 6 * 3
    assert study["spearman"].dropna().between(-1, 1).all() and study["jaccard"].between(0, 1).all()
    full = study[study["m"] == n_models]
    assert (full["spearman"] == 1.0).all() and (full["jaccard"] == 1.0).all() and (full["n_families"] == 6).all()
    med = C.crowd_size_summary(study).query("quantity == 'jaccard'").sort_values("m")["median"].to_numpy()
    assert (np.diff(med) >= -0.05).all(), med
    assert med[0] < 0.2                      # 3 random models: near chance overlap (k/n = 0.13 -> Jaccard ~0.07)


def test_alpacaeval_official_uuid_sort_misses_the_crowdselect_subset(alpacaeval):
    zoo, subsets = alpacaeval
    gap = C.official_sort_overlap(zoo, subsets, k=100)
    assert gap["jaccard"] < 0.2
    assert gap["jaccard"] == pytest.approx(0.047, abs=0.02)               # measured: 9 of 100 shared
    assert gap["stability_crowdselect"] > 0.8 and gap["stability_official"] < 0.4


def test_family_effect_table_one_row_per_family():
    lofo = pd.DataFrame({"family": ["a"] * 3 + ["b"] * 3, "metric": ["difficulty", "separability", "stability"] * 2,
                         "spearman": [0.9, 0.8, 1.0, 0.95, 0.9, 0.5], "jaccard": [0.99] * 3 + [0.6] * 3,
                         "in_stability": [False] * 3 + [True] * 3, "n_dropped": [1] * 3 + [2] * 3})
    from crowdselect_lib.crowd_size import family_effect_table

    t = family_effect_table(lofo)
    assert list(t.index) == ["b", "a"] and t.loc["b", "stability"] == 0.5 and t.loc["a", "jaccard"] == 0.99


def test_stability_only_honours_metrics_stability_families():
    """`stability_only` (= metrics.stability_families) keeps family b out of Stability: dropping b then leaves
    Stability bit-identical, and the full crowd's Stability equals base_metrics with the same `only`."""
    s = _scores(n=60, seed=4)
    lofo = C.leave_one_family_out(s, FAMILIES, k=10, stability_only=["a"]).set_index(["family", "metric"])
    assert not lofo.loc[("b", "stability"), "in_stability"] and lofo.loc[("b", "stability"), "spearman"] == 1.0
    assert lofo.loc[("c", "stability"), "n_families"] == 1                    # only a enters Stability
    study = C.crowd_size_study(s, FAMILIES, sizes=[len(FAMILIES)], draws=1, k=10, stability_only=["a"])
    assert (study["spearman"] == 1.0).all()
    with pytest.raises(ValueError, match="unknown family"):
        C.leave_one_family_out(s, FAMILIES, stability_only=["zz"])


def test_the_study_follows_the_stability_tie_rule():
    """On coarse scores a constant family reads +1 under the official rule and 0 under average ranks (eq. 5), so the
    full crowd's Stability, and the study measured against it, depend on `metrics.stability_ties`."""
    s = _scores(n=120, seed=2).round(0)                      # integer scores: many constant families
    study = {t: C.crowd_size_study(s, FAMILIES, sizes=[6, 8], draws=6, k=12, ties=t) for t in ("average", "official")}
    stab = {t: d[d["metric"] == "stability"].reset_index(drop=True) for t, d in study.items()}
    assert not stab["average"]["spearman"].equals(stab["official"]["spearman"])
    for t, rows in stab.items():                             # each row is the library's value under that rule
        row = rows.iloc[0]
        crowd = sorted(np.random.default_rng([0, 6]).random((6, 10)).argsort(axis=1)[0, :6])
        met, full = (base_metrics(x, FAMILIES, ties=t)["stability"] for x in (s.iloc[:, crowd], s))
        assert row["spearman"] == pytest.approx(spearmanr(met, full)[0], abs=1e-12), t
