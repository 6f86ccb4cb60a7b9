"""Issue 21: each official mode (A-G) and each reading, pinned to a case computed BY THE REFERENCE'S RULE (the
official CrowdSelect scripts, Cherry_LLM), written out here; plus the settings, their defaults and table notes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib import baselines as B
from crowdselect_lib import fidelity
from crowdselect_lib.baselines import ifd
from crowdselect_lib.metrics import base_metrics
from crowdselect_lib.zoo import Zoo

REPO = Path(__file__).resolve().parents[1]


def tags_of(items):
    return pd.Series({u: t for u, _, t in items}), pd.Series({u: q for u, q, _ in items})


# ------------------------------------------------------------------ C: the official Tags rule (choose_by_tag.py)

def test_official_tags_rule_matches_choose_by_tag():
    # 5 toy items (uuid, instruction, tags). Tags in order of first appearance: x, y, z; k = 3 -> k // 3 = 1 per tag.
    # choose_by_tag.py: x's group by words [e(7), b(4), a(2)] -> e, total 1 >= 1: stop; y [c(6), b(4)] -> c, stop;
    # z [d(1)] -> d. The official pick is [e, c, d]. (InsTag's Algorithm 1 gives [b, d, a]; the 3 longest are e, c, b.)
    items = [("a", "w w", ["x"]), ("b", "w w w w", ["x", "y"]), ("c", "w w w w w w", ["y"]), ("d", "w", ["z"]),
             ("e", "w w w w w w w", ["x"])]
    tags, inst = tags_of(items)
    assert list(B.instag_official_order(tags, inst, 3).index) == ["e", "c", "d"]
    assert list(B.instag_order(tags, 3).index) == ["b", "d", "a"]


def test_official_tags_loop_stops_on_the_total_then_fills_with_the_longest():
    # 2 tags, k = 4 -> k // 2 = 2. x's group [q(5), r(4), p(3)]: q (total 1), r (total 2 >= 2: stop); y's group
    # [t(6), s(2)]: t (total 3 >= 2: stop, ONE from y). Fill with the longest not taken: [t, q, r, p, s] -> p.
    # The official pick is [q, r, t, p] (a per-tag quota of 2 would take s instead of p).
    items = [("p", "w w w", ["x"]), ("q", "w w w w w", ["x"]), ("r", "w w w w", ["x"]), ("s", "w w", ["y"]),
             ("t", "w w w w w w", ["y"])]
    tags, inst = tags_of(items)
    assert list(B.instag_official_order(tags, inst, 4).index) == ["q", "r", "t", "p"]


# ------------------------------------------------------------------ Random (random_choose_1k.py)

def test_official_random_is_python_random_sample_over_the_zoo_order():
    # random_choose_1k.py: random.seed(1); random.sample(rows, 4) over rows u0..u9 gives [u2, u1, u4, u0]
    # (seed 2: [u0, u1, u8, u2]).
    n = 10
    rows = pd.DataFrame([{"uuid": f"u{i}", "instruction": f"q{i}", "model": "m0", "response": "a", "rm": 1.0}
                         for i in range(n)])
    zoo = Zoo(rows, pd.DataFrame({"model": ["m0"], "family": ["f"], "size_b": [1.0]}), ["rm"], "t", "rm")
    assert list(B.random_pick(zoo, 4, seed=1, draw="python").score.index) == ["u2", "u1", "u4", "u0"]
    assert list(B.random_pick(zoo, 4, seed=2, draw="python").score.index) == ["u0", "u1", "u8", "u2"]
    assert len(set(B.random_pick(zoo, 4, seed=1, draw="numpy").score.index)) == 4


# ------------------------------------------------------------------ Stability ties (get_stability_score.py)

def test_stability_official_ties_follow_the_official_argsort():
    # One family, columns named out of size order: a-big (27B), b-small (2B), c-mid (9B). Official: columns small
    # to large, ranks = argsort(argsort(s)[::-1]) + 1, Spearman against base_rank [3, 2, 1].
    # Row 1, constant (5, 5, 5): ranks [3, 2, 1] -> +1 (average ranks: 0).
    # Row 2, small 5, mid 5, big 3: argsort [2, 0, 1] -> reversed [1, 0, 2] -> ranks [2, 1, 3]; d = [-1, -1, 2],
    # rho = 1 - 6 * 6 / 24 = -0.5 (average ranks (1.5, 1.5, 3): -sqrt(3) / 2).
    fam = {"a-big": ("f", 27.0), "b-small": ("f", 2.0), "c-mid": ("f", 9.0)}
    s = pd.DataFrame({"a-big": [5.0, 3.0], "b-small": [5.0, 5.0], "c-mid": [5.0, 5.0]}, index=["r1", "r2"])
    assert base_metrics(s, fam, ties="official")["stability"].tolist() == [1.0, -0.5]
    avg = base_metrics(s, fam, ties="average")["stability"].to_numpy()
    assert avg[0] == 0.0 and avg[1] == pytest.approx(-np.sqrt(3) / 2)


# ------------------------------------------------------------------ G: Tables 7/8 (get_difficulty_series.py)

def test_size_tables_take_the_official_bottom_k():
    # get_difficulty_series.py: sorted(difficulty) ascending, the first N. Difficulty u0 0.3, u1 -1, u2 2, u3 0.5:
    # the official 2 are [u1, u0].
    for t in ("07", "08"):
        spec = cs.load_config(REPO / "params" / f"table{t}.yaml").selection.subsets
        assert [(s.name, s.metric, s.direction) for s in spec] == [("difficulty_size", "difficulty", "bottom")]
    score = pd.Series([0.3, -1.0, 2.0, 0.5], index=["u0", "u1", "u2", "u3"])
    assert list(cs.selection.top_k(score, 2, "bottom").index) == ["u1", "u0"]


# ------------------------------------------------------------------ E: Cherry's skip (data_by_IFD.py)

class WordTokenizer:
    """Whitespace tokens; `bos` adds one BOS with special tokens (a Llama-like tokenizer), none without (Qwen)."""

    def __init__(self, bos: bool):
        self.bos = bos

    def __call__(self, texts, add_special_tokens=True):
        pre = [0] if self.bos and add_special_tokens else []
        return {"input_ids": [pre + [1] * len(t.split()) for t in texts]}


def test_cherry_skips_cut_answers_without_bos():
    # data_by_IFD.py: the answer alone is cut at max_length - prompt + 4 tokens (prefix included), and a pair with
    # prompt + len_1 > max_length is skipped. prompt 8, max_length 12:
    # no BOS, prefix "### Response:" = 2 tokens: window 8 -> 6 answer tokens; 8 + 6 = 14 > 12: skipped;
    #   a 4-token answer: 8 + 4 = 12: kept.  BOS + 2 = 3-token prefix: window 8 -> 5; 13 > 12: skipped.
    # Llama-3's 4-token prefix (BOS + 3): window 8 -> 4 answer tokens; 12: kept.
    assert ifd.cherry_cut(8, 2, 6, 12) and not ifd.cherry_cut(8, 2, 4, 12)
    assert ifd.cherry_cut(8, 3, 6, 12) and not ifd.cherry_cut(8, 4, 6, 12)
    q = "one two"       # the Alpaca prompt around it: 22 whitespace tokens
    enc = ifd.encode_pairs(WordTokenizer(bos=False), [q, q], ["a " * 30, "a " * 3], max_length=26,
                           cut_answers="skip")
    assert [e["cut_skipped"] for e in enc] == [True, False] and enc[0]["skipped"]
    scored = ifd.encode_pairs(WordTokenizer(bos=False), [q], ["a " * 30], max_length=26, cut_answers="score")
    assert scored[0]["truncated"] and not scored[0]["skipped"] and scored[0]["n"] == 4


# ------------------------------------------------------------------ D: Alpaca-format pre-experience

def test_pre_experience_rows_use_cherrys_alpaca_prompt():
    pairs = pd.DataFrame({"instruction": ["Name a colour."], "response": ["Blue."]})
    rows = ifd.pre_experience_rows(pairs, "alpaca")
    assert rows == [{"prompt": "Below is an instruction that describes a task. Write a response that appropriately "
                               "completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:",
                     "completion": "Blue."}]
    assert cs.training.data.sft_rows(rows) == rows
    assert ifd.pre_experience_rows(pairs, "chat")[0]["messages"][0] == {"role": "user", "content": "Name a colour."}


# ------------------------------------------------------------------ A: official pooling (utils/get_embedding.py)

def test_official_pooling_averages_pad_positions_unnormalised():
    torch = pytest.importorskip("torch")
    # outputs.last_hidden_state.mean(dim=1): batch of 2, 3 positions, the 2nd text padded at position 3.
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[2.0, 0.0], [4.0, 0.0], [9.0, 3.0]]])
    assert cs.clustering.official_pooling(h).tolist() == [[3.0, 4.0], [5.0, 1.0]]


# ------------------------------------------------------------------ F, B, the quota, the readings: settings

def test_direct_score_keys_follow_the_response_strategy(tmp_path):
    cfg = {r: cs.load_config(REPO / "tests" / "smoke.yaml", {"run.root": str(tmp_path), "selection.response": r})
           for r in ("best", "random", "top5_random")}
    run = cs.Run.from_config(cfg["best"])
    keys = {r: B.baseline_step(run, c, "direct_score").key for r, c in cfg.items()}
    assert len(set(keys.values())) == 3


def test_tables_10_and_12_build_direct_score_both_ways():
    for t in ("10", "12"):
        cfg = cs.load_config(REPO / "params" / f"table{t}.yaml")
        assert {"direct_score", "direct_score_bottom"} <= set(cfg.tables.rows) & set(cfg.baselines.methods)


def test_official_quota_takes_a_constant_per_cluster():
    # multi_choose.py: num_samples_per_split rows from every cluster (100 hard-coded; here 2 of 3 clusters -> 6).
    n = 12
    rows = pd.DataFrame([{"uuid": f"u{i:02d}", "instruction": f"q{i}", "model": "m0", "response": "a", "rm": 1.0}
                         for i in range(n)])
    zoo = Zoo(rows, pd.DataFrame({"model": ["m0"], "family": ["f"], "size_b": [1.0]}), ["rm"], "t", "rm")
    x = np.arange(n, dtype=float)          # every metric increases with i: the score order is u11, u10, ...
    metrics = pd.DataFrame({"difficulty": x, "separability": x, "stability": x}, index=zoo.scores("rm").index)
    clusters = pd.Series(np.arange(n) % 3, index=metrics.index)
    spec = cs.config.schema.SubsetSpec("crowdselect", "crowdselect", clustered=True)
    table, _ = cs.selection.select_subset(zoo, metrics, spec, k=3, weights=[1, 1, 2], clusters=clusters,
                                          cluster_quota=2, reward_model="rm")
    assert sorted(table["uuid"]) == ["u06", "u07", "u08", "u09", "u10", "u11"]   # the top 2 of each cluster


def test_every_mode_and_reading_is_a_setting_with_its_default_in_the_paper_params():
    cfg = cs.load_config(REPO / "params" / "paper.yaml")
    assert (cfg.embedding.pooling, cfg.baselines.instag_rule, cfg.baselines.ifd_pre_format,
            cfg.baselines.ifd_cut_answers, cfg.baselines.random_draw, cfg.metrics.stability_ties) == (
        "official", "official", "alpaca", "skip", "python", "official")
    assert (cfg.judge.anchor_reading, cfg.training.global_batch_size, cfg.training.simpo_beta,
            cfg.selection.response_reward_model, cfg.selection.cluster_quota) == ("reanchor", 16, 2.0, None, None)
    for c in fidelity.MODES + fidelity.READINGS:
        assert c.default and c.reason and c.tables, c
    notes = fidelity.reading_notes(cs.load_config(REPO / "params" / "table07.yaml"), "7")
    assert "reading: G Tables 7/8 direction = bottom" in " ".join(notes)
    assert any("Arena-Hard anchor = reanchor" in n for n in notes)


def test_global_batch_readings_give_the_papers_step_counts():
    # 1,000 rows, 3 epochs. 8 GPUs x 1 x accumulation 2: ceil(1000 / 8) = 125 batches, ceil(125 / 2) = 63 steps per
    # epoch -> 189 (warmup 150 covers 79%). One GPU at global batch 2 (1 x 2): 500 per epoch -> 1,500.
    from crowdselect_lib.preflight.plan import train_steps

    cfg = cs.load_config(REPO / "params" / "paper.yaml")
    assert train_steps(cfg, "sft_full", world_size=8) == 189 and cfg.training.accumulation(8) == 2
    one = cs.load_config(REPO / "params" / "paper.yaml", {"training.global_batch_size": 2})
    assert train_steps(one, "sft_full", world_size=1) == 1500


def test_table18_response_reading_picks_whose_best_answer():
    # two scorers: "a" prefers m0's answer, "b" prefers m1's. Metrics by "b": eq. 2 pairs m1 (own best); the
    # official choose_best_answer.py always takes the Skywork-Llama best ("a" here): m0.
    rows = pd.DataFrame([{"uuid": "u0", "instruction": "q", "model": m, "response": f"by {m}", "a": sa, "b": sb}
                         for m, sa, sb in (("m0", 2.0, 1.0), ("m1", 1.0, 2.0))])
    zoo = Zoo(rows, pd.DataFrame({"model": ["m0", "m1"], "family": ["f", "f"], "size_b": [1.0, 2.0]}), ["a", "b"],
              "t", "a")
    metrics = pd.DataFrame({"difficulty": [1.0], "separability": [1.0], "stability": [1.0]}, index=["u0"])
    spec = cs.config.schema.SubsetSpec("difficulty_top", "difficulty")
    own, _ = cs.selection.select_subset(zoo, metrics, spec, k=1, weights=[1, 1, 2], reward_model="b")
    official, _ = cs.selection.select_subset(zoo, metrics, spec, k=1, weights=[1, 1, 2], reward_model="b",
                                             response_reward_model="a")
    assert (own["model"].tolist(), official["model"].tolist()) == (["m1"], ["m0"])


@pytest.mark.parametrize("beta", [2.0, 0.1])   # the SimPO paper's 2.0 (default) | LLaMA-Factory's pref_beta 0.1
def test_simpo_beta_reading_reaches_the_trainer(beta, tmp_path):
    from crowdselect_lib.training.trainers import precision_settings, trl_args

    t = cs.load_config(REPO / "params" / "paper.yaml", {"training.simpo_beta": beta}).training
    args = trl_args(t, "simpo", tmp_path, 0, 5, False, precision_settings(t, cuda=False))
    assert (args.beta, args.loss_type, args.cpo_alpha, args.simpo_gamma) == (beta, "simpo", 0.0, 0.5)


def test_official_pooling_of_a_real_encoder_matches_get_embedding_py(tmp_path):
    # utils/get_embedding.py on one batch (< 32 texts): tokenizer(batch, padding=True, truncation=True), the model,
    # last_hidden_state.mean(dim=1): pad positions averaged in, no normalisation. Computed here with transformers.
    torch = pytest.importorskip("torch")
    from transformers import AutoModel, AutoTokenizer

    from crowdselect_lib.config import EmbeddingConfig
    from crowdselect_lib.models.remote import resolve_embedder

    texts = ["Hi.", "Write a limerick about a cat who learns to play the violin in Paris.", "Sort a list."]
    path = resolve_embedder("all-MiniLM-L6-v2")
    tok, net = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        ref = net(**tok(texts, return_tensors="pt", padding=True, truncation=True)).last_hidden_state.mean(dim=1)
    e = EmbeddingConfig(model="all-MiniLM-L6-v2", task=None, pooling="official", device="cpu")
    got = cs.clustering.embed(texts, e, tmp_path)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)                     # unnormalised
    alone = cs.clustering.embed(texts[:1], e, tmp_path)                           # no padding in a batch of one
    assert not np.allclose(alone[0], got[0], atol=1e-3)                           # its batch's padding moves it
