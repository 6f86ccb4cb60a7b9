"""Baselines (Tables 2, 10, 12; appendix B.3): each rule on hand-made data with a known answer, the official code's
rules, the registry and the step cache (issue 10), the notebook's "Try this" overrides, offline demo assets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib import baselines as B
from crowdselect_lib.selection import SELECTION_COLUMNS
from crowdselect_lib.zoo import Zoo

RM = "rm"
REPO = Path(__file__).resolve().parents[1]


def make_zoo(instructions: list[str], scores: np.ndarray, responses: list[list[str]] | None = None) -> Zoo:
    """A zoo of len(instructions) x scores.shape[1] models m0, m1, ... (one family, sizes 1, 2, ...)."""
    n, m = scores.shape
    models = [f"m{j}" for j in range(m)]
    rows = [{"uuid": f"u{i}", "instruction": q, "model": models[j],
             "response": responses[i][j] if responses else f"answer {i} by {models[j]}", RM: float(scores[i, j])}
            for i, q in enumerate(instructions) for j in range(m)]
    table = pd.DataFrame({"model": models, "family": ["f"] * m, "size_b": np.arange(1.0, m + 1)})
    return Zoo(pd.DataFrame(rows), table, [RM], "test", RM)


class FakeLLM:
    """The LLM protocol (`chat`): replies come from `answer(conversation)`; every request is counted."""

    name = "fake"

    def __init__(self, answer):
        self.answer, self.calls, self.seen = answer, 0, []

    def chat(self, conversations, settings=None):
        self.calls += len(conversations)
        self.seen.extend(conversations)
        return [self.answer(c) for c in conversations]

    def info(self):
        return {"backend": "fake", "model": "fake", "calls": self.calls}


class WordTokenizer:
    """One token per whitespace-separated word."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [t.split() for t in texts]}


@pytest.fixture
def zoo():
    inst = ["short one", "a somewhat longer instruction here", "mid length text", "x",
            "the very longest instruction of them all, really"]
    scores = np.array([[1.0, 5.0], [2.0, 0.5], [9.0, 3.0], [-4.0, -1.0], [0.0, 0.2]])
    resp = [["a a a a", "b"], ["c c", "d d d d d d d"], ["e", "f f f f f f"], ["g g g g g g", ""], ["i", "j j"]]
    return make_zoo(inst, scores, resp)


def table_of(zoo, picked, name="t"):
    ctx = B.Context(None, cs.load_config(None, {"metrics.reward_model": RM}), name, zoo)
    return B.common.build_table(ctx, picked, None, None)


# ------------------------------------------------------------------ rule-based (official rules)

def test_random_is_seeded_and_pairs_best_or_random_answers(zoo):
    a, b = B.random_pick(zoo, 3, seed=1), B.random_pick(zoo, 3, seed=1)
    pd.testing.assert_series_equal(a.score, b.score)
    assert not B.random_pick(zoo, 5, seed=2).score.index.equals(B.random_pick(zoo, 5, seed=3).score.index)
    best = table_of(zoo, B.random_pick(zoo, 5, seed=1, response="best"))
    assert list(best.columns) == SELECTION_COLUMNS
    assert dict(zip(best["uuid"], best["model"])) == {"u0": "m1", "u1": "m0", "u2": "m0", "u3": "m1", "u4": "m1"}
    rand = table_of(zoo, B.random_pick(zoo, 5, seed=1, response="random"))
    pairs = set(zip(zoo.responses["uuid"], zoo.responses["model"], zoo.responses["response"]))
    assert all(t in pairs for t in zip(rand["uuid"], rand["model"], rand["response"]))


def test_length_official_pairing_counts_tokens_and_skips_empty_answers(zoo):
    top = B.length_pick(zoo, 2, "top", WordTokenizer())
    assert list(top.score.index) == ["u4", "u1"] and list(top.score) == [8.0, 5.0]
    t = table_of(zoo, top)
    assert list(t["response"]) == ["j j", "d d d d d d d"]           # longest in TOKENS (u4: 1 vs 2 words)
    bottom = table_of(zoo, B.length_pick(zoo, 2, "bottom", WordTokenizer()))
    assert list(bottom["uuid"]) == ["u3", "u0"]
    assert list(bottom["response"]) == ["g g g g g g", "b"]           # u3's shortest answer is empty: skipped
    best = table_of(zoo, B.length_pick(zoo, 2, "bottom", WordTokenizer(), pairing="best"))
    assert list(best["model"]) == ["m1", "m1"]                        # best-scored answers instead


def test_length_counts_tokens_of_a_real_tokenizer():
    tok = cs.models.load_tokenizer("smollm2-135m-instruct")
    n = B.token_lengths(["hello world", "hello"], tok)
    assert list(n) == [len(tok.tokenize("hello world")), 1]


def test_reward_bottom_official_ranks_by_minimum_and_pairs_the_worst(zoo):
    top = table_of(zoo, B.reward_pick(zoo, 2, "top", RM))
    assert list(top["uuid"]) == ["u2", "u0"] and list(top["score"]) == [9.0, 5.0] and list(top["model"]) == ["m0", "m1"]
    off = table_of(zoo, B.reward_pick(zoo, 2, "bottom", RM))          # minima: -4, 0.0 (u4), 0.5 (u1)
    assert list(off["uuid"]) == ["u3", "u4"] and list(off["score"]) == [-4.0, 0.0]
    assert list(off["model"]) == ["m0", "m0"] and list(off["response"]) == ["g g g g g g", "i"]
    best = table_of(zoo, B.reward_pick(zoo, 2, "bottom", RM, rule="best"))   # maxima: -1 (u3), 0.2 (u4)
    assert list(best["score"]) == [-1.0, 0.2] and list(best["model"]) == ["m1", "m1"]


# ------------------------------------------------------------------ Direct score (Alpagasus)

ALPAGASUS_USER = ("Please rate according to the accuracy of the response to the instruction and the input. Each "
                  "assistant receives a score on a scale of 0 to 5, where a higher score indicates higher level of "
                  "the accuracy. Please first output a single line containing value indicating the scores. In the "
                  "subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any "
                  "potential bias. \n\n")


def test_direct_score_prompt_is_alpagasus_verbatim():
    conv = B.direct_score_conversations(pd.DataFrame({"instruction": ["Q?"], "response": ["A."]}))[0]
    assert conv[0] == {"role": "system", "content": "We would like to request your feedback on the performance of "
                       "AI assistant in response to the instruction and the given input displayed following."}
    assert conv[1]["content"] == "###Instruction:\nQ?\n\n### Input:\n\n\n### Response:\nA.\n\n" + ALPAGASUS_USER
    assert len(conv) == 2                                             # no invented example turn by default
    assert len(B.direct_score_conversations(pd.DataFrame({"instruction": ["Q"], "response": ["A"]}),
                                            example=True)[0]) == 4


@pytest.mark.parametrize("reply, grade", [("4", 4.0), ("4.5\nThe answer ...", 4.5), ("**3**\nok", 3.0),
                                          ("4/5\nGood.", 4.0), ("Grade (0-5): 4", 4.0), ("Score: 2\nmeh", 2.0),
                                          ("The answer is fine.\nRating: 5", 5.0), ("0", 0.0)])
def test_parse_grade_alpagasus_rule(reply, grade):
    assert B.parse_grade(reply) == grade


def test_direct_score_ranks_both_directions_and_excludes_failures(zoo):
    grades = {"u0": "5", "u1": "2", "u2": "4", "u3": "no idea", "u4": "1"}
    inst = dict(zip(zoo.instructions()["instruction"], zoo.instructions()["uuid"]))

    def answer(conv):
        return grades[next(u for q, u in inst.items() if f"###Instruction:\n{q}\n" in conv[1]["content"])]

    llm = FakeLLM(answer)
    ratings = B.direct_score_ratings(zoo, llm, None, cs.llm.GenerationSettings(), reward_model=RM, max_retries=1)
    assert ratings.set_index("uuid").loc["u3", "error"].startswith("no grade on the first line")
    top = B.direct_score_pick(ratings, 3)
    assert list(top.score.index) == ["u0", "u2", "u1"] and top.report["failed"] == 1 and top.report["retried"] == 1
    bottom = B.direct_score_pick(ratings, 2, "bottom")
    assert list(bottom.score.index) == ["u4", "u1"]
    assert B.direct_score_pick(ratings, 5).report["shortfall"] == 1
    with pytest.raises(ValueError, match="no valid candidate"):
        B.direct_score_pick(ratings.assign(error="bad"), 2)


def test_ask_with_retries_reminds_then_records_failures():
    script = {"q1": ["oops", "3"], "q2": ["nope", "still no", "never"]}

    def answer(conv):
        return script[conv[0]["content"]][sum(m["role"] == "assistant" for m in conv)]

    llm = FakeLLM(answer)
    out = B.ask_with_retries(llm, [[{"role": "user", "content": q}] for q in script], B.parse_grade,
                             cs.llm.GenerationSettings(), max_retries=2)
    assert out["value"].tolist()[0] == 3.0 and out["value"].isna().tolist() == [False, True]
    assert out["attempts"].tolist() == [2, 3] and llm.calls == 5
    retry = [c for c in llm.seen if len(c) == 3][0]
    assert retry[1] == {"role": "assistant", "content": "oops"} and "invalid: no grade" in retry[2]["content"]


# ------------------------------------------------------------------ Instag (InsTag)

def test_instag_complexity_first_diverse_sampling():
    # sorted by tag count: a(3) b(2) e(2) c(1) d(1); pass 1: a {x,y,z}; b adds nothing; e adds nothing;
    # c adds nothing; d adds w -> [a, d]; pass 2 over b, e, c: b, then e adds z? no: covered {x,y} -> e adds z
    tags = pd.Series({"a": ["x", "y", "z"], "b": ["x", "y"], "c": ["x"], "d": ["w"], "e": ["x", "z"]})
    ranked = B.instag_order(tags, 5)
    assert list(ranked.index) == ["a", "d", "b", "e", "c"] and list(ranked) == [3.0, 1.0, 2.0, 2.0, 1.0]
    assert list(B.instag_order(tags, 2).index) == ["a", "d"]


def test_instag_long_tag_tail_picks_the_complex_instructions():
    # 40 instructions: 10 with 8 tags (shared pool), 30 with one rare tag each (the long tail)
    rich = {f"r{i}": [f"t{j}" for j in range(i % 3, i % 3 + 8)] for i in range(10)}
    tail = {f"s{i}": [f"rare{i}"] for i in range(30)}
    ranked = B.instag_order(pd.Series({**tail, **rich}), 10)
    # pass 1 takes the 8-tag instructions first (r0-r2 cover t0..t9), then every singleton adds a tag;
    # a rarest-tag-first order would have taken ten 1-tag instructions (mean 1.0)
    assert list(ranked.index) == ["r0", "r1", "r2", *[f"s{i}" for i in range(7)]] and ranked.mean() == 3.1


def test_parse_tags_normalises_and_keeps_every_item():
    assert B.parse_tags('Tags: ["Cooking", "step-by-step  Advice ", "cooking"]') == ["cooking", "step by step advice"]
    assert B.parse_tags('[{"tag": "Math", "explanation": "x"}, {"tag": "logic_puzzle", "explanation": "y"}]') == \
        ["math", "logic puzzle"]
    bare = '{"tag": "math", "explanation": "x"}\n{"tag": "proof", "explanation": "y"}'
    assert B.parse_tags(bare) == ["math", "proof"]


def test_instag_prompt_is_instags_and_the_official_labels_are_29():
    conv = B.instag_conversations(["Make a cake."])[0]
    assert conv[0]["content"] == "You are a helpful assistant."
    assert conv[1]["content"] == ("Please identify tags of user intentions in the following user query and provide "
                                  "an explanation for each tag. Please respond in the JSON format {\"tag\": str, "
                                  "\"explanation\": str}.\nQuery: Make a cake.")
    assert len(B.OFFICIAL_LABELS) == 29
    off = B.instag_conversations(["Make a cake."], "official_labels")[0]
    assert off[0]["content"].endswith("roleplay, humanities, STEM") and off[1]["content"] == "Make a cake."
    assert B.parse_official_labels("Writing, creative, STEM") == ["writing", "creative", "stem"]


def test_instag_pick_reports_failures_and_coverage(zoo):
    tagged = pd.DataFrame({"uuid": ["u0", "u1", "u2", "u3"], "value": [["a"], ["a", "b"], None, ["c"]],
                           "attempts": [1, 1, 2, 1], "truncated": [False, False, True, False],
                           "error": [None, None, "truncated: cut off", None]})
    picked = B.instag_pick(tagged, 3, rule="instag")   # InsTag's Algorithm 1 (test_fidelity pins the official rule)
    assert list(picked.score.index) == ["u1", "u3", "u0"]
    assert picked.report["failed"] == 1 and picked.report["truncated"] == 1 and picked.report["distinct_tags"] == 3


# ------------------------------------------------------------------ coreset, helpers

def test_k_center_greedy_known_answer_and_matches_brute_force():
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [20.0]])
    picks, radius = B.k_center_greedy(x, 4, start=0)
    # from 0: farthest 20; then 10 (d 10); then 2 (d 2, ties with none); radius after each pick: 20, 10, 2, 1
    assert picks.tolist() == [0, 5, 3, 2] and radius.tolist() == [20.0, 10.0, 2.0, 1.0]
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 5))
    chosen = [7]
    for _ in range(14):
        chosen.append(int(np.argmax(np.linalg.norm(pts[:, None] - pts[chosen][None], axis=2).min(axis=1))))
    assert B.k_center_greedy(pts, 15, start=7)[0].tolist() == chosen
    with pytest.raises(ValueError, match="k=7 must be in 1..6"):
        B.k_center_greedy(x, 7)


def test_subset_k():
    cfg = cs.load_config(None, {"selection.k": 300})
    assert B.subset_k(cfg, 40, 3000) == 4 and B.subset_k(cfg, 3000, 3000) == 300
    cfg = cs.load_config(None, {"selection.k": 300, "baselines.subset_k": 10})
    assert B.subset_k(cfg, 40, 3000) == 10 and B.subset_k(cfg, 3000, 3000) == 300 and B.subset_k(cfg, 6, 3000) == 6


def test_registry_names_paper_and_extra_baselines():
    t = B.methods_table()
    assert set(t.index[~t["in_paper"]]) == {"selectllm", "coreset"}
    assert B.resolve("random_s4").name == "random_s4" and "seed 4" in B.resolve("random_s4").label
    with pytest.raises(ValueError, match="unknown baseline 'magic'"):
        B.resolve("magic")
    with pytest.raises(ValueError, match="not a plain name"):
        B.resolve("../x")


# ------------------------------------------------------------------ step cache on a small demo run

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    over = {"run.root": str(root), "run.name": "b", "zoo.n_instructions": 120, "selection.k": 12,
            "clustering.n_clusters": 4, "clustering.n_init": 2, "baselines.llm_subset": 10,
            "baselines.subset_k": 4, "baselines.selectllm_subset": 24}
    return over


def cfg_of(over, **extra):
    return cs.load_config(REPO / "tests" / "smoke.yaml", {**over, **extra})


def test_rule_based_steps_compute_on_demand_and_follow_their_settings(small):
    cfg = cfg_of(small)
    run = cs.Run.from_config(cfg)
    st = B.baseline_step(run, cfg, "length_top")
    table = B.load_run_baseline(run, cfg, "length_top")
    assert st.done and len(table) == 12 and (st.dir / "length_top.jsonl").exists()
    assert (st.dir / "length_top.json").exists() and (run.dir / "dataset_info.json").exists()
    before = cs.runs.steps_computed()
    pd.testing.assert_frame_equal(B.load_run_baseline(run, cfg, "length_top"), table)
    assert cs.runs.steps_computed() == before                         # an unchanged rerun computes nothing
    # Try this: baselines.length_pairing best -> other models' answers, same instructions (demo answers name only
    # their quality tier, so the longest and the best answer often read alike: compare whose answer is paired)
    cfg2 = cfg_of(small, **{"baselines.length_pairing": "best"})
    other = B.load_run_baseline(run, cfg2, "length_top")
    assert B.baseline_step(run, cfg2, "length_top").key != st.key
    assert list(other["uuid"]) == list(table["uuid"]) and not other["model"].equals(table["model"])
    # an unrelated change (judge settings) keeps the key
    assert B.baseline_step(run, cfg_of(small, **{"judge.n_questions": 3}), "length_top").key == st.key


def test_try_this_random_seed_and_reward_model(small):
    cfg = cfg_of(small)
    run = cs.Run.from_config(cfg)
    a, b = B.load_run_baseline(run, cfg, "random"), B.load_run_baseline(run, cfg, "random_s2")
    assert set(a["uuid"]) != set(b["uuid"])
    other = cfg_of(small, **{"metrics.reward_model": "sim-ArmoRM-Llama3-8B-v0.1"})
    assert not B.load_run_baseline(run, other, "reward_top")["uuid"].equals(
        B.load_run_baseline(run, cfg, "reward_top")["uuid"])
    paper_text = B.load_run_baseline(run, cfg_of(small, **{"baselines.random_response": "random"}), "random")
    assert list(paper_text["uuid"]) == list(a["uuid"]) and not paper_text["model"].equals(a["model"])


def test_llm_baseline_step_reuses_replies_and_refuses_without_chapter_06(small):
    cfg = cfg_of(small)
    run = cs.Run.from_config(cfg)
    with pytest.raises(FileNotFoundError, match="run chapter 06"):
        B.load_run_baseline(run, cfg, "direct_score")
    llm = FakeLLM(lambda conv: str(len(conv[-1]["content"]) % 6))
    top, report = B.run_baseline(run, cfg, "direct_score", llm=llm)
    assert llm.calls == 10 and report["k"] == 4 and report["candidates"] == 10 and len(top) == 4
    bottom, _ = B.run_baseline(run, cfg, "direct_score_bottom", llm=llm)      # shares the ratings
    assert llm.calls == 10 and set(top["uuid"]).isdisjoint(bottom["uuid"])
    pd.testing.assert_frame_equal(B.load_run_baseline(run, cfg, "direct_score"), top)
    # another LLM identity (model) or prompt dimension is another key
    for extra in ({"llm.model": "other-model"}, {"baselines.direct_score_dimension": "helpfulness"},
                  {"llm.backend": "openai", "llm.base_url": "http://localhost:1/v1"}):
        assert B.baseline_step(run, cfg_of(small, **extra), "direct_score").key != B.baseline_step(
            run, cfg, "direct_score").key


def test_try_this_selectllm_clusters_and_llm_subset(small):
    cfg = cfg_of(small, **{"baselines.selectllm_clusters": 3})
    run = cs.Run.from_config(cfg)
    llm = FakeLLM(lambda conv: "My choice is [1]")
    _, rep = B.run_baseline(run, cfg, "selectllm", llm=llm)
    assert rep["query_size"] == 3 and rep["queries"] == 8 and rep["unasked_queries"] == 4 and rep["unseen"] == 12
    _, rep = B.run_baseline(run, cfg_of(small), "selectllm", llm=llm)       # K = ceil(24 / 4) = 6: all asked
    assert rep["query_size"] == 6 and rep["unasked_queries"] == 0 and rep["unseen"] == 0 and rep["picked"] == 4
    _, rep = B.run_baseline(run, cfg_of(small, **{"baselines.llm_subset": 20}), "instag",
                            llm=FakeLLM(lambda conv: '["a", "b"]'))
    assert rep["asked"] == 20


def test_demo_configs_name_only_offline_baseline_assets():
    for path in (REPO / "params" / "demo.yaml", REPO / "tests" / "smoke.yaml"):
        cfg = cs.load_config(path, {})
        names = [cfg.baselines.tokenizer, cfg.baselines.ifd_model or cfg.training.student]
        if cfg.llm.backend == "local":
            names.append(cfg.llm.model)
        for name in names:
            assert name in (cs.models.SMOLLM2_ALIAS, cs.models.TINY_ALIAS) or Path(name).exists(), (path, name)
    assert cs.load_config(None, {}).baselines.tokenizer == "meta-llama/Llama-3.2-3B-Instruct"   # paper default
    assert cs.load_config(None, {}).baselines.llm_subset is None
