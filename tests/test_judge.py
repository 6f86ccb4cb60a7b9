"""Judging (paper §4.1): parsers on real judge reply styles, MT-Bench means, Arena-Hard Bradley-Terry
scores against closed forms, prompts built from the benchmark files, benchmark loading with its offline
stand-in, and the proxy judge (and where it is wrong)."""
from __future__ import annotations

import urllib.error

import numpy as np
import pandas as pd
import pytest
import yaml

import crowdselect_lib as cs
from crowdselect_lib import judge
from crowdselect_lib.judge import (arena_hard_scores, average_performance_rank, benchmarks, mt_bench_score,
                                   parse_rating, parse_verdict, prompts)
from crowdselect_lib.judge.verdicts import VERDICTS, ask_again

ARENA_REGEX = r"\[\[([AB<>=]+)\]\]"


# ------------------------------------------------------------------ parsers

@pytest.mark.parametrize("reply, expected", [
    ("The answer is accurate and well organised.\n\nRating: [[8]]", 8.0),
    ("Rating: [[7.5]]", 7.5),
    ("Rating: [6]", 6.0),                                     # single brackets: FastChat's backup pattern
    ("First draft [[3]]; after reflection, Rating: [[9]]", 3.0),   # several ratings: the first one
    ("[5] is the step count; Rating: [[8]]", 8.0),            # double brackets win over an earlier [x]
    ("I would give it 7 out of 10.", None),                   # no rating: a failed judgment
    ("Rating: [[A]]", None),
    ("Rating: [[10]]", 10.0),
    ("Rating: [[0]]", None),                                  # outside 1-10 (a truncated reply): failed
    ("In [2023] the model ...", None),
    ("Rating: [[-3]]", None),                                 # signed: not a rating
    ("Rating: [[5/10]]", None),
])
def test_parse_rating_fastchat_styles_one_contract(reply, expected):
    assert parse_rating(reply) == expected


@pytest.mark.parametrize("reply, expected, again", [
    ('My own answer: ...\n\nMy final verdict is tie: [[A=B]]', "A=B", False),
    ("Assistant B is significantly better: [[B>>A]]", "B>>A", False),
    ("[[A>B]] because ... so again my final verdict is [[A>B]].", "A>B", False),   # repeated, consistent
    ("At first [[A>B]], but on reflection [[B>A]]", None, False),                  # contradictory: no retry
    ("My final verdict is A>B", None, True),                                       # no label: ask again
    ("Final verdict: [A>B]", None, True),                                          # v0.1 regex needs [[...]]
    ("[[A<<B]]", None, False),                                                     # a label, not a verdict
])
def test_parse_verdict_v01_regex(reply, expected, again):
    assert parse_verdict(reply, ARENA_REGEX) == expected
    assert ask_again(reply, ARENA_REGEX) is again


def test_verdict_regex_and_attempts_come_from_the_benchmark_config(shared_data):
    cfg = yaml.safe_load((shared_data / "arena_hard_v0.1" / "judge_config.yaml").read_text())
    bench = benchmarks.load_benchmark("arena_hard", shared_data)
    assert bench.judge["regex_pattern"] == cfg["regex_pattern"] == ARENA_REGEX
    assert bench.judge["system_prompt"] == cfg["system_prompt"]
    assert prompts.attempts(bench) == cfg["number_of_judgment_attempts"] == 2
    mt = benchmarks.load_benchmark("mt_bench", shared_data)
    assert prompts.judge_settings(mt).temperature == 0.0 and prompts.judge_settings(mt).max_new_tokens == 2048
    assert prompts.judge_settings(bench).max_new_tokens == 4096 and prompts.attempts(mt) == 1


# ------------------------------------------------------------------ MT-Bench score

def test_mt_bench_score_hand_computed():
    j = pd.DataFrame({"question_id": ["81", "81", "111", "111", "131", "131"],
                      "category": ["writing", "writing", "math", "math", "extraction", "extraction"],
                      "turn": [1, 2, 1, 2, 1, 2], "score": [8, 6, 3, -1, 10, 7]})
    s = mt_bench_score(j)
    assert s.overall == pytest.approx((8 + 6 + 3 + 10 + 7) / 5)
    assert s.by_turn == {1: pytest.approx(7.0), 2: pytest.approx(6.5)}
    assert s.by_category == {"writing": 7.0, "math": 3.0, "extraction": 8.5}
    assert (s.n_valid, s.n_failed) == (5, 1)


def test_mt_bench_out_of_range_ratings_are_counted_failures_named_by_question():
    j = pd.DataFrame({"question_id": ["1", "2", "3", "4"], "turn": [1, 1, 2, 1], "category": "writing",
                      "score": [0, 2023, np.nan, 6]})          # a truncated "[0]", "[2023]", no rating, a rating
    s = mt_bench_score(j)
    assert (s.overall, s.n_valid, s.n_failed) == (6.0, 1, 3)
    assert s.failed == [("1", 1), ("2", 1), ("3", 2)]
    none = mt_bench_score(j.iloc[:1])
    assert np.isnan(none.overall) and none.n_failed == 1
    with pytest.raises(ValueError, match="duplicated"):
        mt_bench_score(pd.DataFrame({"question_id": ["1", "1"], "turn": [1, 1], "score": [5, 6]}))
    with pytest.raises(ValueError, match="turn"):
        mt_bench_score(pd.DataFrame({"question_id": ["1"], "score": [5]}))


# ------------------------------------------------------------------ Arena-Hard score

def _random_judgments(models, n_q, seed, none_rate=True):
    rng = np.random.default_rng(seed)
    labels = list(VERDICTS) + ([None] if none_rate else [])
    return pd.DataFrame([{"question_id": f"q{q}", "model": m, "game1": labels[rng.integers(len(labels))],
                          "game2": labels[rng.integers(len(labels))]} for m in models for q in range(n_q)])


def _weighted_win_rate(j: pd.DataFrame, model: str) -> float:
    """Closed form: wins / ties / losses of `model` against the baseline, strong verdicts counted 3 times."""
    g1 = {"A>>B": ("L", 3), "A>B": ("L", 1), "A=B": ("T", 1), "B>A": ("W", 1), "B>>A": ("W", 3)}
    g2 = {"A>>B": ("W", 3), "A>B": ("W", 1), "A=B": ("T", 1), "B>A": ("L", 1), "B>>A": ("L", 3)}
    count = {"W": 0, "T": 0, "L": 0}
    for _, r in j[j["model"] == model].iterrows():
        for table, v in ((g1, r["game1"]), (g2, r["game2"])):
            if isinstance(v, str):                 # None / NaN = unparsed, dropped
                count[table[v][0]] += table[v][1]
    return 100 * (count["W"] + count["T"] / 2) / sum(count.values())


def test_arena_score_is_the_weighted_win_rate_when_the_anchor_is_the_baseline():
    j = _random_judgments(["m1", "m2", "m3"], 30, seed=1)
    out = arena_hard_scores(j, anchor="gpt-4-0314", n_bootstrap=20).set_index("model")
    for m in ["m1", "m2", "m3"]:
        assert out.loc[m, "score"] == pytest.approx(_weighted_win_rate(j, m), abs=1e-6)
        assert out.loc[m, "lower"] <= out.loc[m, "score"] <= out.loc[m, "upper"]


def test_arena_hand_example():
    # m wins game1 of q1 strongly (3), wins game2 of q1 (A>B with m as A: 1), ties q2 game1, loses q2 game2
    # (B>A: the baseline as B wins: 1), q3 game1 unparsed (dropped), q3 game2 B>>A (baseline wins strongly: 3).
    j = pd.DataFrame({"question_id": ["q1", "q2", "q3"], "model": "m",
                      "game1": ["B>>A", "A=B", None], "game2": ["A>B", "B>A", "B>>A"]})
    b = judge.battles(j)
    assert len(b) == 3 + 1 + 1 + 1 + 3
    assert (b["winner"] == "model_b").sum() == 4 and (b["winner"] == "tie").sum() == 1
    out = arena_hard_scores(j, "gpt-4-0314", n_bootstrap=10).set_index("model")
    assert out.loc["m", "score"] == pytest.approx(100 * 4.5 / 9, abs=1e-6)


def test_arena_any_anchor_matches_bradley_terry_closed_form():
    # every model meets only the baseline, so its Elo is the logit of its win rate p: the win rate of m1 against
    # the anchor m2 is p1 (1 - p2) / (p1 (1 - p2) + p2 (1 - p1)).
    j = _random_judgments(["m1", "m2"], 40, seed=2)
    p1, p2 = _weighted_win_rate(j, "m1") / 100, _weighted_win_rate(j, "m2") / 100
    out = arena_hard_scores(j, anchor="m2", n_bootstrap=10).set_index("model")
    assert out.loc["m1", "score"] == pytest.approx(100 * p1 * (1 - p2) / (p1 * (1 - p2) + p2 * (1 - p1)), abs=1e-6)
    assert out.loc["gpt-4-0314", "score"] == pytest.approx(100 * (1 - p2), abs=1e-6)


def test_arena_anchor_reads_50_with_zero_width_interval():
    j = _random_judgments(["base", "tuned"], 25, seed=3)
    for interval in ("percentile", "official_v0.1"):
        out = arena_hard_scores(j, anchor="base", n_bootstrap=30, interval=interval).set_index("model")
        assert tuple(out.loc["base", ["score", "lower", "upper"]]) == (50.0, 50.0, 50.0)
        assert judge.format_interval(*out.loc["base", ["score", "lower", "upper"]]) == "50.0 (0.0, 0.0)"


def test_arena_scores_deterministic_and_independent_of_row_order():
    j = _random_judgments(["a", "b", "c"], 20, seed=4)
    first = arena_hard_scores(j, "a", n_bootstrap=40, seed=7)
    shuffled = arena_hard_scores(j.sample(frac=1.0, random_state=0), "a", n_bootstrap=40, seed=7)
    pd.testing.assert_frame_equal(first, shuffled)
    other = arena_hard_scores(j, "a", n_bootstrap=40, seed=8)
    assert np.allclose(first["score"], other["score"])
    assert not np.allclose(first["lower"], other["lower"])


def test_percentile_interval_differs_from_official_v01():
    j = _random_judgments(["a", "b", "c"], 20, seed=5)
    p = arena_hard_scores(j, "a", n_bootstrap=50).set_index("model")
    o = arena_hard_scores(j, "a", n_bootstrap=50, interval="official_v0.1").set_index("model")
    assert np.allclose(p["score"], o["score"])
    assert ((p["lower"] <= p["score"]) & (p["score"] <= p["upper"])).all()
    assert not np.allclose(p[["lower", "upper"]], o[["lower", "upper"]])


def test_bradley_terry_matches_logistic_regression_of_the_official_design():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    models = ["w", "x", "y", "z"]
    rows = []
    for _ in range(300):
        a, b = rng.choice(4, 2, replace=False)
        rows.append({"model_a": models[a], "model_b": models[b],
                     "winner": rng.choice(["model_a", "model_b", "tie"], p=[0.5, 0.3, 0.2])})
    bt = pd.DataFrame(rows)
    ours = judge.bradley_terry(bt, reference="w")
    # the official fit: every battle twice, ties labelled a win in one copy and a loss in the other
    d = pd.concat([bt, bt], ignore_index=True)
    idx = {m: i for i, m in enumerate(models)}
    X = np.zeros((len(d), 4))
    X[np.arange(len(d)), d["model_a"].map(idx)] = np.log(10)
    X[np.arange(len(d)), d["model_b"].map(idx)] = -np.log(10)
    y = (d["winner"] == "model_a").to_numpy().astype(float)
    tie = (d["winner"] == "tie").to_numpy().copy()
    tie[len(tie) // 2:] = False
    y[tie] = 1.0
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000).fit(X, y)
    elo = 400 * lr.coef_[0]
    elo = elo - elo[0] + 1000
    assert np.allclose(ours.reindex(models).to_numpy(), elo, atol=1e-3)


@pytest.mark.parametrize("table, message", [
    (pd.DataFrame({"question_id": ["q"], "model": ["m"], "game1": ["A>B"]}), "game2"),
    (pd.DataFrame({"question_id": ["q"], "model": ["m"], "game1": ["A>>>B"], "game2": [None]}), "unknown verdict"),
    (pd.DataFrame({"question_id": ["q", "q"], "model": ["m", "m"], "game1": ["A>B"] * 2, "game2": ["A>B"] * 2}),
     "duplicated"),
    (pd.DataFrame({"question_id": ["q"], "model": ["m"], "game1": [None], "game2": [None]}), "no parsed verdict"),
])
def test_arena_rejects_bad_input(table, message):
    with pytest.raises(ValueError, match=message):
        arena_hard_scores(table, "gpt-4-0314", n_bootstrap=5)


def test_arena_unknown_anchor_is_an_error():
    with pytest.raises(ValueError, match="anchor 'nobody'"):
        arena_hard_scores(_random_judgments(["m"], 5, seed=0, none_rate=False), "nobody", n_bootstrap=5)


# ------------------------------------------------------------------ AP rank and repetitions

def test_average_performance_rank_hand_computed():
    s = pd.DataFrame({"mt_bench": [5.0, 6.0, 4.0], "arena_hard": [30.0, 20.0, 30.0]}, index=["a", "b", "c"])
    out = average_performance_rank(s)
    assert out.loc["a", "rank_mt_bench"] == 2 and out.loc["a", "rank_arena_hard"] == 1
    # a: ranks (2, 1); b: (1, 3); c: (3, 1) -- a and c tie for the best Arena-Hard rank
    assert out["ap"].to_dict() == {"a": 1.5, "b": 2.0, "c": 2.0}
    with pytest.raises(ValueError, match="missing benchmark"):
        average_performance_rank(s[["mt_bench"]])


def test_aggregate_repetitions():
    s = pd.DataFrame({"system": ["a"] * 3 + ["b"] * 3, "benchmark": "mt_bench", "repetition": [0, 1, 2] * 2,
                      "score": [5.0, 6.0, 7.0, 1.0, 1.0, 4.0]})
    out = judge.aggregate_repetitions(s).set_index("system")
    assert out.loc["a", "mean"] == 6.0 and out.loc["a", "std"] == pytest.approx(1.0)
    assert out.loc["b", "median"] == 1.0 and out.loc["b", "n"] == 3 and out.loc["b", "max"] == 4.0


# ------------------------------------------------------------------ prompts from the benchmark files

def _answers(bench, n_turns=2):
    q = bench.questions
    return pd.DataFrame({"question_id": q["question_id"], "category": q["category"],
                         "turns": [[f"ANSWER-{qid}-{t + 1}" for t in range(n_turns)] for qid in q["question_id"]]})


def test_mt_bench_jobs_use_the_official_prompts(shared_data):
    bench = benchmarks.load_benchmark("mt_bench", shared_data).head(8, "round_robin")
    official = {r["name"]: r for r in benchmarks.read_jsonl(shared_data / "mt_bench" / "judge_prompts.jsonl")}
    jobs = {j["id"]: j for j in prompts.mt_bench_jobs(bench, _answers(bench), "s")}
    assert len(jobs) == 16
    math_q = bench.questions.loc[bench.questions["category"] == "math", "question_id"].iloc[0]
    writing_q = bench.questions.loc[bench.questions["category"] == "writing", "question_id"].iloc[0]
    ref = bench.references[math_q]
    m1, m2, w1 = jobs[f"{math_q}:1"], jobs[f"{math_q}:2"], jobs[f"{writing_q}:1"]
    assert (m1["prompt_name"], m2["prompt_name"], w1["prompt_name"]) == (
        "single-math-v1", "single-math-v1-multi-turn", "single-v1")
    assert m1["messages"][0]["content"] == official["single-math-v1"]["system_prompt"]
    assert ref[0] in m1["messages"][1]["content"] and f"ANSWER-{math_q}-1" in m1["messages"][1]["content"]
    assert all(x in m2["messages"][1]["content"] for x in (ref[1], f"ANSWER-{math_q}-1", f"ANSWER-{math_q}-2"))
    assert w1["messages"][1]["content"].startswith(official["single-v1"]["prompt_template"][:60])


def test_arena_jobs_swap_positions(shared_data):
    bench = benchmarks.load_benchmark("arena_hard", shared_data).head(2, "round_robin")
    jobs = prompts.arena_jobs(bench, _answers(bench, 1), "s")
    qid = bench.questions["question_id"].iloc[0]
    g1, g2 = [j for j in jobs if j["question_id"] == qid]
    base = bench.references[qid][0]
    for j, first, second in ((g1, base, f"ANSWER-{qid}-1"), (g2, f"ANSWER-{qid}-1", base)):
        user = j["messages"][1]["content"]
        a = user.index("<|The Start of Assistant A's Answer|>")
        b = user.index("<|The Start of Assistant B's Answer|>")
        assert user.index(first) > a and user.index(second) > b and user.index(first) < b
        assert j["messages"][0]["content"] == bench.judge["system_prompt"]


def test_cost_guard():
    from crowdselect_lib.config import load_config

    est = {"to_send": 500, "prompt_tokens_approx": 10_000, "max_completion_tokens": 100_000}
    with pytest.raises(judge.CostNotConfirmed, match="confirm_cost"):
        judge.check_cost(est, load_config(None, {"judge.max_calls_without_confirm": 200}))
    assert judge.check_cost(est, load_config(None, {"judge.confirm_cost": True})) is est
    assert judge.check_cost(dict(est, to_send=10), load_config(None))["to_send"] == 10


# ------------------------------------------------------------------ benchmark files

def test_load_benchmarks_from_data_dir(shared_data):
    mt = benchmarks.load_benchmark("mt_bench", shared_data)
    ah = benchmarks.load_benchmark("arena_hard", shared_data)
    assert len(mt.questions) == 80 and mt.questions["category"].value_counts().eq(10).all()
    assert mt.questions["turns"].map(len).eq(2).all() and len(mt.references) == 30
    assert len(ah.questions) == 500 and ah.baseline == "gpt-4-0314" and not ah.standin
    assert set(ah.references) == set(ah.questions["question_id"])


def test_missing_file_and_bad_line_are_named(tmp_path, shared_data):
    (tmp_path / "mt_bench").mkdir()
    (tmp_path / "mt_bench" / "question.jsonl").write_text((shared_data / "mt_bench" / "question.jsonl").read_text())
    with pytest.raises(benchmarks.BenchmarkError, match="judge_prompts.jsonl"):
        benchmarks.load_benchmark("mt_bench", tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"b": \n')
    with pytest.raises(benchmarks.BenchmarkError, match="bad.jsonl: line 2"):
        benchmarks.read_jsonl(tmp_path / "bad.jsonl")


def test_standin_only_when_allowed(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(benchmarks, "download", offline)
    with pytest.raises(benchmarks.BenchmarkError, match="judge.data_dir"):
        benchmarks.load_benchmark("arena_hard", cache_dir=tmp_path)
    ah = benchmarks.load_benchmark("arena_hard", cache_dir=tmp_path, allow_standin=True)
    mt = benchmarks.load_benchmark("mt_bench", cache_dir=tmp_path, allow_standin=True)
    assert ah.standin and mt.standin and "stand-in" in ah.label and "stand-in" in mt.label
    assert "Arena-Hard v2.0" in ah.label and ah.baseline == "o3-mini-2025-01-31"
    assert "[[A>>B]]" in ah.judge["system_prompt"] and "{answer_2}" in ah.judge["prompt_template"]
    assert all(j["messages"] is None for j in prompts.mt_bench_jobs(mt.head(2), _answers(mt.head(2), 1), "s"))


def test_head_picks_round_robin_or_shortest(shared_data):
    mt = benchmarks.load_benchmark("mt_bench", shared_data)
    assert mt.head(8, "round_robin").questions["category"].nunique() == 8
    short = mt.head(3, "shortest").questions
    lengths = mt.questions["turns"].map(lambda t: sum(map(len, t)))
    assert sorted(short["turns"].map(lambda t: sum(map(len, t)))) == sorted(lengths.nsmallest(3))


# ------------------------------------------------------------------ proxy judge

def test_proxy_judge_replies_go_through_the_official_parsers(tmp_path):
    pj = judge.ProxyJudge(cache_dir=tmp_path)
    ref = "Paris is the capital of France."
    jobs = [{"kind": "single", "question": "What is the capital of France?", "answer": ref, "reference": ref},
            {"kind": "single", "question": "What is the capital of France?", "answer": "", "reference": ref},
            {"kind": "pair", "question": "How do I bake bread?",
             "answer_a": "Mix flour, water, yeast and salt, knead, let it rise, then bake at 230 C.",
             "answer_b": "The stock market closed higher today."}]
    replies = pj.judge_jobs(jobs)
    assert all(judge.PROXY_LABEL in r for r in replies)
    assert parse_rating(replies[0]) == 10.0 and parse_rating(replies[1]) == 1.0
    assert parse_verdict(replies[2], ARENA_REGEX) == "A>>B"
    swapped = pj.judge_jobs([dict(jobs[2], answer_a=jobs[2]["answer_b"], answer_b=jobs[2]["answer_a"])])
    assert parse_verdict(swapped[0], ARENA_REGEX) == "B>>A"


def test_proxy_rating_has_one_decimal_and_a_floor_of_one():
    from crowdselect_lib.judge.proxy import proxy_rating

    assert [proxy_rating(s) for s in (-0.3, 0.0, 0.1, 0.5, 1.0)] == [1.0, 1.0, 1.9, 5.5, 10.0]


def test_proxy_judge_is_wrong_where_the_chapter_says(tmp_path):
    """The teaching example of the judge chapter: a fluent wrong answer on the right topic scores high, and an
    answer that only repeats the question beats the right one."""
    out = judge.failure_examples(judge.ProxyJudge(cache_dir=tmp_path)).set_index("test")
    right, wrong = (float(out.loc[f"rating: {k} answer", "proxy says"].split("/")[0]) for k in ("right", "wrong"))
    assert wrong >= 7 and right - wrong <= 2
    assert out.loc["pair: A = right answer, B = repeats the question", "proxy says"] in ("B>A", "B>>A")


# ------------------------------------------------------------------ the stage: keyed steps, anchor, who judged

import logging  # noqa: E402

from crowdselect_lib.judge.verdicts import CONTINUE  # noqa: E402
from crowdselect_lib.runs import step as step_module  # noqa: E402
from fake_openai import TRAINED, FakeOpenAI, judge_config  # noqa: E402


def by_model(body):
    """Student answers that name the model that wrote them."""
    return f"{body['model']} says: " + body["messages"][-1]["content"][:30]


def picky_judge(body):
    """Prefers answers written by the trained system; rates them 9, others 5; a '[[2023]]' for one question."""
    user = body["messages"][-1]["content"]
    if "Assistant A" in body["messages"][0]["content"]:
        a = user.split("<|The Start of Assistant A's Answer|>")[1].split("<|The End of Assistant A's Answer|>")[0]
        b = user.split("<|The Start of Assistant B's Answer|>")[1]
        if "crowdselect" in b.split("<|The End")[0]:
            return "[[B>>A]]"
        return "[[A>>B]]" if "crowdselect" in a else "[[A=B]]"
    if "Compose an engaging travel blog post" in user:
        return "Rating: [[2023]]"
    return "Rating: [[9]]" if "crowdselect" in user else "Rating: [[5]]"


@pytest.fixture
def servers():
    with FakeOpenAI(replies=by_model) as students, FakeOpenAI(replies=picky_judge, model="DeepSeek-V3-served",
                                                               fingerprint="fp_judge") as judge_srv:
        yield students, judge_srv


def test_judged_scores_record_who_judged_and_count_failures(tmp_path, shared_data, monkeypatch, servers, caplog):
    students, judge_srv = servers
    cfg = judge_config(tmp_path, shared_data, students.base_url, judge_srv.base_url, monkeypatch=monkeypatch,
                       **{"judge.anchor": "meta-llama/Llama-3.2-3B"})
    run = cs_run(cfg)
    with caplog.at_level(logging.WARNING, "crowdselect"):
        scores = judge.run_judging(run, cfg)
    assert list(scores.columns) == judge.SCORE_COLUMNS
    s = scores.set_index(["system", "benchmark"])
    assert tuple(s.loc[("base-Llama-3.2-3B", "arena_hard"), ["score", "ci_low", "ci_high"]]) == (50.0, 50.0, 50.0)
    assert s.loc[("base-Llama-3.2-3B", "arena_hard"), "kind"] == "anchor"      # set up automatically
    assert s.loc[(TRAINED["system"], "arena_hard"), "score"] > 90
    assert s.loc[(TRAINED["system"], "mt_bench"), "score"] == 9.0
    # both turns of question 81 got "[[2023]]": counted failures, named in the log, not an abort
    assert s.loc[("base-smollm2-135m-instruct", "mt_bench"), ["n_valid", "n_failed"]].tolist() == [2, 2]
    assert any("81:1: no rating in 1-10" in r.message for r in caplog.records)
    assert set(scores["served_model"]) == {"DeepSeek-V3-served"} and scores["judged_at"].notna().all()
    assert (scores["avg_tokens"] > 0).all() and set(scores["judge"]) == {"openai:deepseek-ai/DeepSeek-V3"}
    log_rows = cs.runs.read_jsonl(run.dir / "judge" / "judging_log.jsonl")
    assert len(log_rows) == 6 and log_rows[0]["system_fingerprints"] == {"fp_judge": log_rows[0]["judgments"]}
    jt = judge.run_judgments(run, cfg, TRAINED["system"], "mt_bench")
    assert set(jt["finish_reason"]) == {"stop"} and set(jt["system_fingerprint"]) == {"fp_judge"}
    # the server served another model than judge.judge_model: a WARN in the run log, and the manifest's record
    assert any(r.message.endswith("WARN the judge server served ['DeepSeek-V3-served'] for judge.judge_model "
                                  "'deepseek-ai/DeepSeek-V3': the scores are that model's judgments (pin the exact "
                                  "model the provider serves)") for r in caplog.records)
    assert judge.served_judges(run, cfg) == ["DeepSeek-V3-served"]
    from crowdselect_lib.reporting.manifest import manifest
    m = manifest(cfg, {"c": cfg}, served={"c": judge.served_judges(run, cfg)})
    assert m["cells"]["c"]["judge"] == "deepseek-ai/DeepSeek-V3"
    assert m["cells"]["c"]["judge_served"] == ["DeepSeek-V3-served"]
    # the anchor readings from the same judgments: the base model ties gpt-4-0314 in every game (the picky judge's
    # [[A=B]]), so it reads 50 against either reference; the trained system wins everywhere against both
    both = judge.arena_anchor_readings(run, cfg)
    assert list(both.columns) == ["vs anchor (base-Llama-3.2-3B)", "vs baseline (gpt-4-0314)"]
    assert both.loc["base-Llama-3.2-3B"].tolist() == pytest.approx([50.0, 50.0])
    assert (both.loc[TRAINED["system"]] > 90).all()


def cs_run(cfg):
    return cs.Run.from_config(cfg)


def test_unchanged_rerun_sends_nothing_and_a_new_endpoint_is_a_new_judgment(tmp_path, shared_data, monkeypatch,
                                                                             servers):
    students, judge_srv = servers
    cfg = judge_config(tmp_path, shared_data, students.base_url, judge_srv.base_url, monkeypatch=monkeypatch)
    run = cs_run(cfg)
    first = judge.run_judging(run, cfg)
    counts = (students.count, judge_srv.count)
    before = len(step_module.STEP_LOG)
    again = judge.run_judging(run, cfg)
    assert (students.count, judge_srv.count) == counts
    assert all(status == "reused" for status, _, _ in step_module.STEP_LOG[before:])
    pd.testing.assert_frame_equal(first, again)
    with FakeOpenAI(replies=picky_judge, model="other-served") as other:
        moved = judge_config(tmp_path, shared_data, students.base_url, other.base_url, monkeypatch=monkeypatch)
        sys_ = "base-smollm2-135m-instruct"
        assert judge.judgments_step(run, moved, sys_, "mt_bench").key != judge.judgments_step(run, cfg, sys_, "mt_bench").key
        scores = judge.run_judging(run, moved)
        assert other.count == judge_srv.count and set(scores["served_model"]) == {"other-served"}
        assert students.count == counts[0]                          # answers are shared: not regenerated


def test_anchor_reading_baseline_judges_every_system_against_the_anchors_answers(tmp_path, shared_data, monkeypatch,
                                                                                servers):
    students, judge_srv = servers
    cfg = judge_config(tmp_path, shared_data, students.base_url, judge_srv.base_url, monkeypatch=monkeypatch,
                       **{"judge.anchor": "meta-llama/Llama-3.2-3B", "judge.anchor_reading": "baseline"})
    run = cs_run(cfg)
    scores = judge.run_judging(run, cfg).set_index(["system", "benchmark"])
    assert scores.loc[("base-Llama-3.2-3B", "arena_hard"), "score"] == 50.0
    assert scores.loc[(TRAINED["system"], "arena_hard"), "score"] > 90
    games = [r["body"]["messages"][-1]["content"] for r in judge_srv.requests
             if "Assistant A" in r["body"]["messages"][0]["content"]]
    # every game pits a system's answer against the anchor's ("<model> says: ..."), never gpt-4-0314's; the anchor
    # itself is not judged: 2 other systems x n questions x 2 games
    assert games and all("meta-llama/Llama-3.2-3B says:" in g for g in games)
    assert len(games) == 2 * 2 * cfg.judge.n_questions


def test_anchor_is_judged_once_and_shared_across_cells(tmp_path, shared_data, monkeypatch, servers):
    students, judge_srv = servers
    cfg = judge_config(tmp_path, shared_data, students.base_url, judge_srv.base_url, monkeypatch=monkeypatch)
    run = cs_run(cfg)
    judge.run_judging(run, cfg)
    anchor = "base-smollm2-135m-instruct"
    key = judge.judgments_step(run, cfg, anchor, "arena_hard").key
    monkeypatch.setitem(TRAINED, "system", "random-sft_lora-s42")   # another cell: another trained subset
    monkeypatch.setitem(TRAINED, "subset", "random")
    monkeypatch.setitem(TRAINED, "key", "randomkey")
    n = judge_srv.count
    scores = judge.run_judging(run, cfg)
    assert judge.judgments_step(run, cfg, anchor, "arena_hard").key == key
    new_jobs = 2 * 2 + 2 * 2                                         # the new system only: 4 MT turns + 4 games
    assert judge_srv.count - n == new_jobs
    assert scores.set_index(["system", "benchmark"]).loc[(anchor, "arena_hard"), "score"] == 50.0


def test_arena_asks_once_more_when_a_reply_has_no_verdict(tmp_path, shared_data, monkeypatch):
    def forgetful(body):
        if body["messages"][-1]["content"] == CONTINUE:
            return "So, finally: [[A=B]]"
        return "Both are fine." if "Assistant A" in body["messages"][0]["content"] else "Rating: [[6]]"

    with FakeOpenAI(replies=by_model) as students, FakeOpenAI(replies=forgetful) as judge_srv:
        cfg = judge_config(tmp_path, shared_data, students.base_url, judge_srv.base_url, monkeypatch=monkeypatch,
                           trained=False, **{"judge.benchmarks": ["arena_hard"]})
        run = cs_run(cfg)
        judge.run_all_answers(run, cfg)
        jt = judge.run_judgments(run, cfg, "base-smollm2-135m-instruct", "arena_hard")
        assert judge_srv.count == 8 and (jt["attempts"] == 2).all() and set(jt["verdict"]) == {"A=B"}
        second = [r["body"]["messages"] for r in judge_srv.requests if len(r["body"]["messages"]) == 4]
        assert len(second) == 4 and second[0][2] == {"role": "assistant", "content": "Both are fine."}


def test_a_judge_that_never_gives_a_verdict_is_a_counted_failure(tmp_path, shared_data, monkeypatch):
    with FakeOpenAI(replies=by_model) as students, FakeOpenAI(replies="no idea") as judge_srv:
        cfg = judge_config(tmp_path, shared_data, students.base_url, judge_srv.base_url, monkeypatch=monkeypatch,
                           trained=False)
        scores = judge.run_judging(cs_run(cfg), cfg).set_index("benchmark")
        assert scores.loc["arena_hard", "n_failed"] == 4 and scores.loc["arena_hard", "n_valid"] == 0
        assert np.isnan(scores.loc["mt_bench", "score"]) and scores.loc["mt_bench", "n_failed"] == 4
        assert judge_srv.count == 4 + 4 * 2                          # MT once, Arena twice (2 attempts)


def test_cost_gate_stops_before_any_judge_request(tmp_path, shared_data, monkeypatch, servers):
    students, judge_srv = servers
    cfg = judge_config(tmp_path, shared_data, students.base_url, judge_srv.base_url, monkeypatch=monkeypatch,
                       **{"judge.max_calls_without_confirm": 3, "judge.price_per_mtok_in": 1.0,
                          "judge.price_per_mtok_out": 2.0})
    run = cs_run(cfg)
    judge.run_all_answers(run, cfg)
    plan = judge.plan_judging(run, cfg)
    assert plan["to_send"] == plan["requests"] == 2 * (4 + 4) and plan["usd_max_approx"] > 0
    with pytest.raises(judge.CostNotConfirmed, match="16 requests"):
        judge.run_all_judgments(run, cfg)
    assert judge_srv.count == 0


# ------------------------------------------------------------------ "Try this" of the judge chapter

def _proxy_cfg(tmp_path, shared_data, monkeypatch, srv, **o):
    return judge_config(tmp_path, shared_data, srv.base_url, monkeypatch=monkeypatch, **{"judge.judge": "proxy", **o})


def test_try_more_questions_and_round_robin_pick(tmp_path, shared_data, monkeypatch):
    with FakeOpenAI(replies=by_model) as srv:
        cfg = _proxy_cfg(tmp_path, shared_data, monkeypatch, srv, **{"judge.pick": "shortest"})
        run = cs_run(cfg)
        few = judge.run_judging(run, cfg)
        more = judge.run_judging(run, _proxy_cfg(tmp_path, shared_data, monkeypatch, srv, **{"judge.n_questions": 4,
                                                                                            "judge.pick": "shortest"}))
        assert (more["n_valid"] > few["n_valid"]).all()
        rr = judge.run_all_answers(run, _proxy_cfg(tmp_path, shared_data, monkeypatch, srv))
        sh = judge.run_all_answers(run, cfg)
        assert set(rr["question_id"]) != set(sh["question_id"])


def test_try_anchor_interval_and_repetitions(tmp_path, shared_data, monkeypatch):
    with FakeOpenAI(replies=by_model) as srv:
        cfg = _proxy_cfg(tmp_path, shared_data, monkeypatch, srv, **{"judge.n_questions": 4})
        run = cs_run(cfg)
        base = judge.run_judging(run, cfg)
        anchored = judge.run_judging(run, _proxy_cfg(tmp_path, shared_data, monkeypatch, srv, **{
            "judge.n_questions": 4, "judge.anchor": TRAINED["system"]})).set_index(["system", "benchmark"])
        assert anchored.loc[(TRAINED["system"], "arena_hard"), "score"] == 50.0
        official = judge.run_judging(run, _proxy_cfg(tmp_path, shared_data, monkeypatch, srv, **{
            "judge.n_questions": 4, "judge.interval": "official_v0.1"}))
        a, o = (x[x["benchmark"] == "arena_hard"].set_index("system") for x in (base, official))
        assert np.allclose(a["score"], o["score"])
        reps = judge.run_judging(run, _proxy_cfg(tmp_path, shared_data, monkeypatch, srv, **{
            "judge.n_questions": 4, "judge.repetitions": 2}))
        summary = judge.score_summary(reps)
        assert set(reps["repetition"]) == {0, 1} and (summary["n"] == 2).all()
        assert {"mean", "median", "std", "ap"} <= set(summary.columns)


def test_a_judging_pass_derives_the_systems_table_once(tmp_path, shared_data, monkeypatch, servers):
    """Each answers / judgments step looks its system up; inside one judging pass the table (every training's key)
    is derived once, not once per step (quadratic in trainings before), and the scores are the same."""
    from crowdselect_lib.judge import answers as answers_module

    students, judge_srv = servers
    cfg = judge_config(tmp_path, shared_data, students.base_url, judge_srv.base_url, monkeypatch=monkeypatch)
    run = cs_run(cfg)
    calls = []
    derive = answers_module._systems_table
    monkeypatch.setattr(answers_module, "_systems_table", lambda r, c: calls.append(1) or derive(r, c))
    scores = judge.run_judging(run, cfg)
    assert len(calls) == 1 and len(scores) == 2 * len(judge.systems_table(run, cfg))
    assert len(calls) == 2                                   # outside a pass: derived anew (a training may finish)
    with judge.judging_pass():
        again = judge.judged_scores(run, cfg)
        mine = judge.systems_table(run, cfg)
        mine.loc[0, "system"] = "edited"                       # a copy: the caller cannot edit the memo
        assert judge.systems_table(run, cfg).loc[0, "system"] != "edited"
    assert len(calls) == 3
    pd.testing.assert_frame_equal(again.drop(columns="judged_at"), scores.drop(columns="judged_at"))


def test_stop_shares_count_turns_that_ended_on_the_end_of_turn_token():
    answers = pd.DataFrame({"system": ["a", "a", "b"], "finish_reasons": [["stop", "length"], ["stop"], ["length"]]})
    shares = judge.stop_shares(answers)
    assert shares.to_dict("index") == {"a": {"turns": 3, "stopped": 2, "share": 2 / 3},
                                       "b": {"turns": 1, "stopped": 0, "share": 0.0}}
    assert judge.stop_report(answers).splitlines()[0].startswith("share of answer turns that ended on the end-of-turn")
    assert judge.stop_report(answers.iloc[:0]).startswith("no answer turns here: the held-out loss")
