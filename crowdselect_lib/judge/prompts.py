"""Judge requests built from the benchmarks' own files (house rule 8; paper §4.1).

MT-Bench: one request per (question, turn) with FastChat's ``judge_prompts.jsonl``: ``single-v1`` for turn 1,
``single-math-v1`` (with the GPT-4 reference answer) for math / reasoning / coding, the ``-multi-turn``
versions for turn 2; judge settings temperature 0, 2048 tokens (FastChat single-answer grading).
Arena-Hard v0.1: two requests per question, game 1 with the baseline (gpt-4-0314) as assistant A, game 2
swapped; system prompt, template, temperature and max tokens from ``judge_config.yaml``.

A job: ``id, question_id, category, turn | game, kind ('single' | 'pair'), prompt_name, messages`` plus the
structured fields the offline proxy judge reads (``question, answer, reference`` / ``answer_a, answer_b``).
"""
from __future__ import annotations

import pandas as pd

from ..llm import GenerationSettings
from ..runs import digest

REFERENCE_CATEGORIES = ("math", "reasoning", "coding")            # FastChat NEED_REF_CATS
MT_BENCH_JUDGE = GenerationSettings(temperature=0.0, max_new_tokens=2048)


def mt_bench_jobs(bench, answers: pd.DataFrame, system: str) -> list[dict]:
    """One judge request per (question, turn) of `answers` (columns question_id, turns); a stand-in without
    judge prompts gets ``messages=None`` (the proxy judge only)."""
    questions = bench.questions.set_index("question_id")
    missing = sorted(set(answers["question_id"]) - set(questions.index))
    if missing:
        raise ValueError(f"answers of {system!r} name unknown question(s) {missing[:3]}")
    jobs = []
    for qid, turns in zip(answers["question_id"], answers["turns"]):
        q = questions.loc[qid]
        ref = bench.references.get(qid) if (q["category"] in REFERENCE_CATEGORIES or bench.standin) else None
        for t in range(len(q["turns"])):
            if t >= len(turns):
                raise ValueError(f"{system!r} answered {len(turns)} turn(s) of question {qid}, which has {len(q['turns'])}")
            name = ("single-math-v1" if ref else "single-v1") + ("-multi-turn" if t == 1 else "")
            messages = None
            if bench.judge:
                p = bench.judge[name]
                kw = ({"question_1": q["turns"][0], "question_2": q["turns"][1], "answer_1": turns[0],
                       "answer_2": turns[1]} if t == 1 else {"question": q["turns"][0], "answer": turns[0]})
                if ref:
                    kw.update({f"ref_answer_{i + 1}": r for i, r in enumerate(ref)})
                messages = [{"role": "system", "content": p["system_prompt"]},
                            {"role": "user", "content": p["prompt_template"].format(**kw)}]
            jobs.append({"id": f"{qid}:{t + 1}", "question_id": qid, "category": q["category"], "turn": t + 1,
                         "prompt_name": name if bench.judge else None, "messages": messages, "kind": "single",
                         "question": q["turns"][t], "answer": turns[t], "reference": ref[t] if ref else None})
    return jobs


def arena_jobs(bench, answers: pd.DataFrame, system: str) -> list[dict]:
    """Two judge requests per answered question: game 1 (baseline = assistant A), game 2 (system = A)."""
    cfg = bench.judge
    text = dict(zip(bench.questions["question_id"], bench.questions["turns"].str[0]))
    jobs = []
    for qid, turns, cat in zip(answers["question_id"], answers["turns"], answers["category"]):
        if qid not in bench.references or qid not in text:
            raise ValueError(f"{system!r} answered Arena-Hard question {qid}, which has no prompt or baseline answer")
        base, own = bench.references[qid][0], turns[0]
        for game, (a, b) in ((1, (base, own)), (2, (own, base))):
            user = cfg["prompt_template"].format(question_1=text[qid], answer_1=a, answer_2=b)
            jobs.append({"id": f"{qid}:g{game}", "question_id": qid, "category": cat, "game": game, "kind": "pair",
                         "prompt_name": "arena-hard-v0.1", "messages": [
                             {"role": "system", "content": cfg["system_prompt"]}, {"role": "user", "content": user}],
                         "question": text[qid], "answer_a": a, "answer_b": b})
    return jobs


def judge_jobs(bench, answers: pd.DataFrame, system: str) -> list[dict]:
    return (mt_bench_jobs if bench.name == "mt_bench" else arena_jobs)(bench, answers, system)


def judge_settings(bench) -> GenerationSettings:
    """FastChat's (0, 2048 tokens) for MT-Bench; the config's temperature and max tokens for Arena-Hard."""
    if bench.name == "mt_bench":
        return MT_BENCH_JUDGE
    return GenerationSettings(bench.judge["temperature"], bench.judge["max_tokens"])


def attempts(bench) -> int:
    """Judge calls per Arena-Hard game until a verdict appears (config ``number_of_judgment_attempts``)."""
    return int(bench.judge.get("number_of_judgment_attempts", 2)) if bench.name == "arena_hard" else 1


def prompt_digest(bench) -> str:
    """Digest of the judge prompts, verdict pattern and judge settings of a benchmark (part of the judgments key)."""
    return digest({"judge": bench.judge, "settings": judge_settings(bench).__dict__, "attempts": attempts(bench)})
