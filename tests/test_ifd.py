"""IFD (Cherry_LLM): the ratio of MEAN TOKEN LOSSES computed by hand from a tiny model's own loss on Cherry's two
texts, symmetric prefixes for a tokenizer without BOS, truncation and skips, the <= 1 rule, resume, Cherry's
pre-experience sample, the chat-template variant, and the two keyed steps."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib import baselines as B

torch = pytest.importorskip("torch")

Q = ["Name three primary colours.", "What is two plus two? Answer briefly, please."]
A = ["Red, yellow and blue are the three primary colours of paint.", "Four."]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    return cs.models.load_causal_lm("tiny-llama", device="cpu")


def hf_mean_loss(model, ids: list[int], start: int) -> float:
    """The model's own mean loss over tokens start.. (labels -100 before; HF shifts labels internally)."""
    x = torch.tensor([ids])
    labels = x.clone()
    labels[0, :start] = -100
    with torch.no_grad():
        return model(input_ids=x, labels=labels).loss.item()


def test_ifd_is_cherrys_ratio_of_mean_token_losses(tiny):
    tok, model = tiny
    got = B.ifd_scores(tok, model, ["a", "b"], Q, A)
    for i in range(2):
        prompt = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                  f"request.\n\n### Instruction:\n{Q[i]}\n\n### Response:")
        cond, pc = tok(prompt + A[i])["input_ids"], len(tok(prompt)["input_ids"])
        alone, pa = tok("### Response:" + A[i])["input_ids"], len(tok("### Response:")["input_ids"])
        lc, la = hf_mean_loss(model, cond, pc), hf_mean_loss(model, alone, pa)
        row = got.iloc[i]
        assert row["loss_conditioned"] == pytest.approx(lc, rel=1e-5)
        assert row["loss_answer"] == pytest.approx(la, rel=1e-5)
        assert row["ifd"] == pytest.approx(lc / la, rel=1e-5)          # not exp(lc) / exp(la)
        assert row["ifd"] != pytest.approx(math.exp(lc) / math.exp(la), rel=1e-3)
        assert row["answer_tokens"] == len(cond) - pc == len(alone) - pa and not row["truncated"]
        assert pa >= 1                                                   # no BOS: "### Response:" is the context


def test_padding_and_batching_do_not_change_scores(tiny):
    tok, model = tiny
    one = B.ifd_scores(tok, model, list("abcdef"), Q * 3, A * 3, batch_size=1)
    many = B.ifd_scores(tok, model, list("abcdef"), Q * 3, A * 3, batch_size=4)
    np.testing.assert_allclose(one["ifd"], many["ifd"], rtol=1e-4)


def test_truncation_scores_the_same_answer_tokens_and_long_prompts_are_skipped(tiny):
    tok, model = tiny
    prompt_len = len(tok(B.ALPACA_PROMPT.format(instruction=Q[0]))["input_ids"])
    out = B.ifd_scores(tok, model, ["a", "b"], [Q[0], Q[0]], [A[0] * 20, A[1]], max_length=prompt_len + 10)
    assert out["truncated"].tolist() == [True, False] and out["answer_tokens"].iloc[0] == 10
    skipped = B.ifd_scores(tok, model, ["a"], Q[:1], A[:1], max_length=prompt_len)
    assert skipped["skipped"].tolist() == [True] and skipped["ifd"].isna().all()


def test_chat_variant_uses_the_template_and_its_assistant_header(tiny):
    tok, _ = tiny
    pc, pu = B.ifd.prefixes(tok, Q[0], "chat")
    assert pc.endswith(pu) and Q[0] in pc and pu.strip().endswith("assistant")


def test_ifd_pick_keeps_at_most_one_and_takes_top_k():
    scores = pd.DataFrame({"uuid": list("abcdef"), "ifd": [0.5, 1.2, 0.9, 0.95, 1.0, np.nan],
                           "truncated": [False] * 6, "skipped": [False] * 5 + [True]})
    picked = B.ifd_pick(scores, 2)
    assert list(picked.score.index) == ["e", "d"] and picked.report["ifd_at_most_1"] == 4   # 1.0 kept (Cherry)
    picked = B.ifd_pick(scores, 5)
    assert list(picked.score.index) == ["e", "d", "c", "a"] and picked.report["shortfall"] == 1
    assert picked.report["skipped"] == 1
    with pytest.raises(ValueError, match="none of the 1 scored pairs has IFD <= 1"):
        B.ifd_pick(scores.iloc[[1]], 1)


def test_sharded_scoring_resumes_without_reloading(tiny, tmp_path):
    pairs = pd.DataFrame({"uuid": list("abcde"), "instruction": (Q * 3)[:5], "response": (A * 3)[:5]})
    loads = []

    def load():
        loads.append(1)
        return tiny

    full = B.score_pairs_resumable(tmp_path, pairs, load, shard_size=2)
    (tmp_path / "ifd-00001.parquet").unlink()            # killed before its second shard was written
    pd.testing.assert_frame_equal(full, B.score_pairs_resumable(tmp_path, pairs, load, shard_size=2))
    B.score_pairs_resumable(tmp_path, pairs, load, shard_size=2)
    assert len(loads) == 2
    with pytest.raises(ValueError, match="holds other pairs"):
        B.score_pairs_resumable(tmp_path, pairs.iloc[::-1], load, shard_size=2)


def test_pre_experience_sample_is_cherrys_cluster_percentile_band():
    # two well separated clusters of 8; perplexities 1..8 in each; band 25-75 -> values 2.75..6.25 -> 3, 4, 5, 6
    emb = np.vstack([np.zeros((8, 2)), np.full((8, 2), 100.0)]) + np.arange(16)[:, None] * 1e-3
    ppl = np.tile(np.arange(1.0, 9.0), 2)
    rows = B.pre_experience_sample(emb, ppl, n_clusters=2, per_cluster=2, percentiles=(25, 75))
    # band rows (3,4,5,6) -> step 4 // 2 = 2 -> 3 and 5 in each cluster
    assert sorted(ppl[rows].tolist()) == [3.0, 3.0, 5.0, 5.0] and len(rows) == 4
    with pytest.raises(ValueError, match="ifd_pre_clusters=20 exceeds the 16"):
        B.pre_experience_sample(emb, ppl, n_clusters=20)


def test_instruction_stats_perplexity_matches_the_models_loss(tiny):
    tok, model = tiny
    ppl, emb = B.instruction_stats(tok, model, Q[:1])
    ids = tok(B.ALPACA_PROMPT.format(instruction=Q[0]))["input_ids"]
    assert ppl[0] == pytest.approx(math.exp(hf_mean_loss(model, ids, 0)), rel=1e-5) and emb.shape == (1, 64)


def test_ifd_steps_key_the_model_and_the_pre_experience(tmp_path):
    over = {"run.root": str(tmp_path), "run.name": "i"}
    cfg = cs.load_config(REPO / "tests" / "smoke.yaml", over)
    run = cs.Run.from_config(cfg)
    no_pre, pre = B.ifd.work_step(run, cfg, "ifd_no_pre"), B.ifd.work_step(run, cfg, "ifd_pre")
    assert "pre_model" in pre.inputs and "pre_model" not in no_pre.inputs
    other = cs.load_config(REPO / "tests" / "smoke.yaml", {**over, "baselines.ifd_model": "tiny-llama"})
    assert B.ifd.work_step(run, other, "ifd_no_pre").key != no_pre.key
    steps = cs.load_config(REPO / "tests" / "smoke.yaml", {**over, "baselines.ifd_pre_per_cluster": 5})
    assert B.ifd.work_step(run, steps, "ifd_pre").key != pre.key
    assert B.ifd.work_step(run, steps, "ifd_no_pre").key == no_pre.key


def test_ifd_no_pre_baseline_end_to_end_and_try_this_model(tmp_path):
    over = {"run.root": str(tmp_path), "run.name": "i", "zoo.n_instructions": 120, "selection.k": 12,
            "clustering.n_clusters": 3, "clustering.n_init": 1, "baselines.ifd_subset": 8,
            "baselines.subset_k": 3, "baselines.ifd_max_length": 96,
            "baselines.ifd_model": "smollm2-135m-instruct"}   # a random tiny model has IFD > 1 everywhere
    cfg = cs.load_config(REPO / "tests" / "smoke.yaml", over)
    run = cs.Run.from_config(cfg)
    table, rep = B.run_baseline(run, cfg, "ifd_no_pre")
    assert rep["candidates"] == 8 and len(table) == rep["k"] - rep["shortfall"] and (table["score"] <= 1).all()
    scores = B.load_run_ifd(run, cfg, "ifd_no_pre")
    assert len(scores) == 8 and set(table["uuid"]) <= set(scores["uuid"])
    # Try this: baselines.ifd_prompt chat -> other losses for the same pairs
    chat = cs.load_config(REPO / "tests" / "smoke.yaml", {**over, "baselines.ifd_prompt": "chat"})
    B.run_baseline(run, chat, "ifd_no_pre")
    other = B.load_run_ifd(run, chat, "ifd_no_pre")
    assert list(other["uuid"]) == list(scores["uuid"]) and not np.allclose(other["loss_conditioned"],
                                                                           scores["loss_conditioned"])
