"""Does it beat Random, and at what cost (issue 24): the paired bootstrap, the verdict marker, the held-out loss and
the cost ledger, each on a case computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib.reporting import costs, intervals, versus


def test_bootstrap_interval_is_the_hand_computed_one():
    # d = (0, 0, 0, 1): a resample's mean is Binomial(4, 1/4) / 4, so P(mean <= 0) = 81/256 = 0.316 (> 2.5%) and
    # P(mean <= 0.5) = (81 + 108 + 54) / 256 = 0.949 < 97.5% < P(mean <= 0.75) = 255/256: the interval is [0, 0.75]
    g = intervals.paired_gain([0, 0, 0, 1], [0, 0, 0, 0], n_boot=20000, seed=3)
    assert (g.estimate, g.lower, g.upper, g.n_items, g.verdict) == (0.25, 0.0, 0.75, 4, "no evidence")
    counts = intervals.bootstrap_counts(4, 20000, seed=3)
    assert counts.shape == (20000, 4) and (counts.sum(axis=1) == 4).all()
    assert abs((counts[:, 3] == 0).mean() - 81 / 256) < 0.01          # the last item left out: (3/4)^4


def test_runs_are_pooled_per_item_and_a_loss_is_signed_so_that_better_is_positive():
    a = [[1, 3], [2, 4], [3, 5]]            # two runs; item means 2, 3, 4
    b = [[0], [1], [2]]                     # Random: 0, 1, 2 -> every item difference is 2
    g = intervals.paired_gain(a, b, n_boot=500)
    assert (g.estimate, g.lower, g.upper, g.verdict) == (2.0, 2.0, 2.0, "above Random (95%)")
    loss = intervals.paired_gain(a, b, higher_is_better=False, reference="base", n_boot=500)
    assert (loss.estimate, loss.verdict) == (-2.0, "below base (95%)")
    with pytest.raises(ValueError, match=r"item\(s\) \[1\] have no value on one side"):
        intervals.paired_gain([[1], [np.nan], [2]], b)


def test_verdict_marker():
    assert intervals.verdict(0.1, 0.3) == "above Random (95%)"
    assert intervals.verdict(-0.3, -0.01) == "below Random (95%)"
    assert intervals.verdict(-0.1, 0.3) == "no evidence" == intervals.verdict(0.0, 0.2)
    assert intervals.verdict(float("nan"), 1.0) == "no evidence"


def test_arena_gain_refits_bradley_terry_on_question_resamples():
    # m beats the baseline 3 times of 4 (odds 3); r wins 1, loses 1, ties 2 (odds 1). Fitted against the baseline
    # only, each rating is its own odds, so m's win rate against the anchor r is 3 / (3 + 1) = 75%: gain 25 points.
    j = pd.DataFrame({"question_id": ["q1", "q2", "q1", "q2"], "model": ["m", "m", "r", "r"],
                      "game1": ["B>A", "B>A", "A>B", "A=B"], "game2": ["A>B", "B>A", "A>B", "A=B"]})
    g = intervals.arena_gain(j, ["m"], ["r"], "r", n_boot=20)
    assert g.estimate == pytest.approx(25.0, abs=1e-4) and g.n_items == 2
    assert g.lower <= 25.0 + 1e-6 and g.upper >= 25.0 - 1e-6


def test_comparisons_pool_random_seeds_and_render_the_marker():
    items = []
    for system, subset, vals in (("cs", "crowdselect", [7, 8, 9, 8]), ("r1", "random", [5, 6, 5, 6]),
                                 ("r2", "random_s2", [5, 5, 6, 6]), ("b", "base", [5, 5, 5, 5])):
        for q, v in enumerate(vals):
            items.append({"cell": "run", "system": system, "subset": subset, "method": "" if subset == "base"
                          else "sft_full", "kind": "base" if subset == "base" else "trained", "benchmark": "mt_bench",
                          "repetition": 0, "question_id": str(q), "score": float(v), "anchor": "b"})
    v = versus.comparisons(pd.DataFrame(items), n_boot=400)
    cs_random = v[(v["subset"] == "crowdselect") & (v["reference"] == "Random")].iloc[0]
    # item means of Random's two seeds: 5, 5.5, 5.5, 6 -> differences 2, 2.5, 3.5, 2: mean 2.5, every resample > 0
    assert cs_random["estimate"] == 2.5 and cs_random["n_ref_runs"] == 2
    assert cs_random["verdict"] == "above Random (95%)"
    assert set(v.loc[v["subset"] == "random", "reference"]) == {"base"}     # Random is one row, against base only
    res = pd.DataFrame({"table": "2", "row": ["SmolLM2 / MT-Bench"], "column": ["Multi"], "value": [8.0],
                        "ci_low": [np.nan], "ci_high": [np.nan], "avg_tokens": [np.nan], "n": [1], "anchor": [False],
                        "source": ["judge x"], "vs_random": ["+2.5 [+2, +3] above Random (95%)"]})
    text = cs.reporting.render(res, None, cs.reporting.table_spec("2"))
    assert "| SmolLM2 / MT-Bench · vs Random | +2.5 [+2, +3] above Random (95%) |" in text


def test_heldout_loss_matches_a_hand_computed_token_loss():
    import torch

    tok, model = cs.models.load_causal_lm("tiny-llama")
    q, a = "Name a colour.", "Blue is a colour."
    got = cs.judge.answer_losses(tok, model, [q, "word " * 80], [a, a], max_length=64)
    prompt = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = tok(prompt + a, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    by_hand = -np.mean([logp[t - 1, ids[t]].item() for t in range(len(p_ids), len(ids))])
    assert got["answer_tokens"].iloc[0] == len(ids) - len(p_ids)
    assert got["loss"].iloc[0] == pytest.approx(by_hand, rel=1e-5)
    assert not got["truncated"].iloc[0]
    assert got["skipped"].tolist() == [False, True] and np.isnan(got["loss"].iloc[1])   # no room left: counted


def test_holdout_split_is_fixed_and_never_selectable():
    uuids = [f"u{i:03d}" for i in range(200)]
    held = cs.zoo.heldout_uuids(uuids, 0.3, seed=0)
    assert len(held) == 60 and held == cs.zoo.heldout_uuids(list(reversed(uuids)), 0.3, seed=0)
    assert held != cs.zoo.heldout_uuids(uuids, 0.3, seed=1)
    zoo = cs.zoo.load_zoo("demo", n_instructions=100)
    out = cs.zoo.hold_out(zoo, 0.3)
    assert out.info["heldout"] == 30 and not set(out.info["heldout_uuids"]) & set(out.responses["uuid"])
    assert out.responses["uuid"].nunique() == 70


def test_ledger_figure_uses_a_log_axis_only_across_orders_of_magnitude():
    def book(totals):
        return pd.DataFrame({"method": ["a", "b"], "total_s": totals, "gain": [0.0, 0.1], "gain_lower": [0.0, 0.0],
                             "gain_upper": [0.0, 0.2], "benchmark": "mt_bench"})

    narrow = costs.plot_ledger(book([4.6, 6.2])).axes[0]       # the demo: every method costs 4-7 s
    assert narrow.get_xscale() == "linear" and narrow.get_xlabel().endswith("(wall seconds)")
    wide = costs.plot_ledger(book([5.0, 5000.0])).axes[0]
    assert wide.get_xscale() == "log" and wide.get_xlabel().endswith("log scale)")
    assert wide.xaxis.get_major_formatter()(1000.0, 0) == "1,000"         # plain numbers, no 10^3 TeX


def test_ledger_arithmetic_and_the_paper_scale_plan():
    measured = pd.DataFrame({"method": ["crowdselect", "random", "random_s2"], "select_s": [50.0, 0.2, 0.4],
                             "train_s": [100.0, 90.0, 110.0], "judge_s": [20.0, 20.0, 20.0]})
    v = pd.DataFrame({"cell": "run", "subset": ["crowdselect"], "method": "sft_full", "benchmark": "heldout_loss",
                      "reference": "Random", "estimate": [0.05], "lower": [0.01], "upper": [0.09], "n_items": 100,
                      "n_runs": 2, "n_ref_runs": 6, "verdict": ["above Random (95%)"]})
    book = costs.ledger(measured, v).set_index("method")
    assert book.loc["crowdselect", "total_s"] == 170.0
    assert book.loc["random", ["select_s", "train_s", "total_s"]].tolist() == [0.3, 100.0, 120.3]   # seeds: mean
    assert book.loc["random", "gain"] == 0.0 and book.loc["crowdselect", "verdict"] == "above Random (95%)"
    crowd = costs.crowd_cost()
    assert crowd == {"answers": 1_900_000, "answer_tokens": 855_000_000, "reward_model_passes": 5_700_000,
                     "note": "paid once by the zoo's authors"}
    paper = cs.load_config(cs.runs.repo_root() / "params" / "paper.yaml")
    p = costs.paper_costs(paper, ["crowdselect", "random", "direct_score"]).set_index("method")
    # Table 6: 1,000 rows, global batch 16 -> ceil(1000 / 16) = 63 steps per epoch x 3 epochs x 3 seeds
    assert p["train_steps"].tolist() == [3 * 63 * 3] * 3
    assert p.loc["random", "select_llm_calls"] == 0 and p.loc["direct_score", "select_llm_calls"] == 100_000
    assert "paid once by the zoo's authors" in p.loc["crowdselect", "note"]
    assert math.isclose(p.loc["crowdselect", "judge_usd_per_system"], p.loc["random", "judge_usd_per_system"])
