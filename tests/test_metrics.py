import numpy as np
import pandas as pd
import pytest

from crowdselect_lib.metrics import base_metrics, base_metrics_reference, truth_recovery

FAMILIES = {"a1": ("A", 1.0), "a2": ("A", 2.0), "b1": ("B", 1.0), "b2": ("B", 2.0), "b3": ("B", 3.0)}


def test_hand_computed_3x5():
    scores = pd.DataFrame([[1, 2, 3, 4, 5], [10, 8, 6, 4, 2], [2, 1, 5, 3, 4]], index=["u1", "u2", "u3"],
                          columns=list(FAMILIES), dtype=float)
    m = base_metrics(scores, FAMILIES)
    assert m.index.tolist() == ["u1", "u2", "u3"]
    np.testing.assert_allclose(m["difficulty"], [-3, -6, -3])
    np.testing.assert_allclose(m["separability"], [2, 8, 2])
    # u3: A: smaller model better -> -1; B: score ranks (1,3,2) vs size ranks (3,2,1): 1 - 6*6/24 = -0.5
    np.testing.assert_allclose(m["stability"], [1, -1, -0.75])
    assert m.attrs["stability_families"] == ["A", "B"]


def test_equals_official_per_row_semantics_on_untied_data():
    from crowdselect_lib.zoo import magpie_models

    models = magpie_models()
    fam = dict(zip(models["model"], zip(models["family"], models["size_b"])))
    rng = np.random.default_rng(3)
    scores = pd.DataFrame(rng.normal(size=(300, len(models))), columns=models["model"],
                          index=[f"u{i}" for i in range(300)])
    fast = base_metrics(scores, fam)
    ref = base_metrics_reference(scores, fam)
    np.testing.assert_allclose(fast.to_numpy(), ref.to_numpy(), atol=1e-9, rtol=0)


def test_ties_average_ranks_and_constant_family_counts_as_zero():
    scores = pd.DataFrame([[1, 2, 7, 7, 7], [1, 2, 3, 5, 5]], columns=list(FAMILIES), dtype=float)
    m = base_metrics(scores, FAMILIES)
    # row 0: A -> +1, B all tied -> 0 (counted): (1 + 0) / 2
    # row 1: B score ranks (3, 1.5, 1.5) vs size ranks (3, 2, 1): Pearson of ranks = sqrt(3)/2
    np.testing.assert_allclose(m["stability"], [0.5, (1 + np.sqrt(3) / 2) / 2])


def test_unknown_size_counts_in_difficulty_not_stability():
    fam = {**FAMILIES, "closed": ("X", np.nan)}
    scores = pd.DataFrame([[1, 2, 3, 4, 5, 100.0]], columns=list(fam))
    m = base_metrics(scores, fam)
    assert m["difficulty"].iloc[0] == pytest.approx(-115 / 6)
    assert m["stability"].iloc[0] == pytest.approx(1.0)
    assert "X" not in m.attrs["stability_families"]


def test_family_with_one_size_does_not_enter():
    fam = {**FAMILIES, "c1": ("C", 7.0), "c2": ("C", 7.0)}
    scores = pd.DataFrame([[1, 2, 3, 4, 5, 9, 0]], columns=list(fam), dtype=float)
    assert base_metrics(scores, fam).attrs["stability_families"] == ["A", "B"]
    only = base_metrics(scores, fam, stability_families_only=["B"])
    assert only.attrs["stability_families"] == ["B"] and only["stability"].iloc[0] == pytest.approx(1.0)


def test_bad_input_errors():
    scores = pd.DataFrame([[1, 2, 3, 4, np.nan]], index=["u9"], columns=list(FAMILIES))
    with pytest.raises(ValueError, match="NaN score for uuid 'u9' model 'b3'"):
        base_metrics(scores, FAMILIES)
    with pytest.raises(KeyError, match="without a family entry"):
        base_metrics(scores.fillna(1).rename(columns={"b3": "zz"}), FAMILIES)
    with pytest.raises(ValueError, match="unknown family"):
        base_metrics(scores.fillna(1), FAMILIES, stability_families_only=["Q"])


def test_planted_truth_recovered_on_demo_zoo(demo_zoo_small):
    zoo = demo_zoo_small
    for rm in zoo.reward_models:
        rec = truth_recovery(base_metrics(zoo.scores(rm), zoo.families()), zoo.truth)
        assert (rec["spearman"] >= 0.8).all(), (rm, rec)


def _scores_with_spearman(rho: float) -> list[float]:
    """Scores for 5 models of sizes 1..5 whose Spearman with size is exactly `rho` (1 - sum d^2 / 20)."""
    from itertools import permutations

    for perm in permutations(range(1, 6)):               # perm[j] = score rank of the model with size rank j+1
        if sum((p - (j + 1)) ** 2 for j, p in enumerate(perm)) == round(20 * (1 - rho)):
            return [float(-perm[4 - i]) for i in range(5)]   # model i has size i+1, size rank 5-i
    raise AssertionError(rho)


def test_stability_ties_are_exact_whatever_the_order_of_families_and_columns():
    fam = {f"{f}{i}": (f, float(i)) for f in "BC" for i in range(1, 6)}
    rows = {"r1": (0.1, 0.2), "r2": (0.3, 0.0), "r3": (0.2, 0.1)}     # every row's mean is 0.15
    scores = pd.DataFrame({u: _scores_with_spearman(b) + _scores_with_spearman(c) for u, (b, c) in rows.items()},
                          index=list(fam)).T
    m = base_metrics(scores, fam)
    assert (0.1 + 0.2) / 2 != 0.15                                       # the float sum would differ in the last bit
    assert m["stability"].tolist() == [0.15, 0.15, 0.15]
    shuffled = scores[list(reversed(scores.columns))].iloc[::-1]
    assert base_metrics(shuffled, fam).reindex(m.index).equals(m)


def test_metrics_are_bit_identical_under_row_and_column_permutations(demo_zoo_small):
    s = demo_zoo_small.scores()
    rng = np.random.default_rng(7)
    m = base_metrics(s, demo_zoo_small.families())
    p = base_metrics(s.iloc[rng.permutation(len(s)), rng.permutation(s.shape[1])], demo_zoo_small.families())
    assert np.array_equal(p.reindex(m.index).to_numpy(), m.to_numpy())
    assert m["stability"].nunique() < 200                                # few distinct values: ties matter (eq. 8)
