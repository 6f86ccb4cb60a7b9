"""SelectLLM (an extra baseline): Algorithm 2's diverse queries, the Figure 4 prompt against the published text,
the parser (the list the reply ends with), coverage when K < N / k, the whole loop with a fake LLM."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib import baselines as B
from test_baselines import FakeLLM  # tests/ is on sys.path (rootdir-relative imports)

PAPER = Path(__file__).resolve().parents[2] / "shared" / "docs" / "papers" / "selectllm.txt"


def test_diverse_queries_known_answer():
    d = np.array([[0.1, 0.0], [0.2, 0.3], [0.3, 0.1], [0.4, 0.2], [0.5, 0.8], [0.9, 0.05]])
    assert B.diverse_queries(d).tolist() == [[0, 5], [1, 2], [3, 4]]
    with pytest.raises(ValueError, match="allow 1..3 queries, asked for 4"):
        B.diverse_queries(d, 4)


def test_diverse_queries_matches_a_plain_scan():
    rng = np.random.default_rng(1)
    d = rng.random((103, 7))
    used, ref = np.zeros(103, bool), []
    for _ in range(103 // 7):
        q = []
        for c in range(7):
            i = int(np.argmin(np.where(used, np.inf, d[:, c])))
            used[i] = True
            q.append(i)
        ref.append(q)
    assert B.diverse_queries(d).tolist() == ref


def test_picks_per_query_and_query_size():
    assert B.picks_per_query(7, 3, 5).tolist() == [3, 2, 2]
    assert B.picks_per_query(2, 4, 10).tolist() == [1, 1, 0, 0]
    assert B.query_size(100_000, 1000, None) == 100 and B.query_size(60, 10, None) == 6 and B.query_size(5, 1, 9) == 5


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_prompt_is_figure_4_verbatim():
    if not PAPER.exists():
        pytest.skip("selectllm.txt not found")
    paper = PAPER.read_text(encoding="utf-8")
    figure = paper[paper.index("The following are {N} candidate"):paper.index("Figure 4: Designed input prompt")]
    figure = figure.rsplit("```", 1)[0]
    ours = B.figure4_prompt(["first task", "second\ntask"], 1)
    head, tail = figure.split("[1]", 1)[0], figure.split("### Input: {Example #N Input}", 1)[1]
    assert _flat(ours).startswith(_flat(head.replace("{N}", "2")))
    # the figure wraps lines at its column width ("instructions\n, each"): compare without line breaks
    assert _flat(ours).endswith(_flat(tail.replace("{N}", "2").replace("{num}", "1")).replace(" ,", ","))
    assert "[1]\n### Instruction: first task\n[2]\n### Instruction: second task\n" in ours


def test_parse_the_list_the_reply_ends_with():
    assert B.parse_indices("Item [1] is too simple, so my choice is [3]", 4, 1) == [2]
    assert B.parse_indices("My choice: [3, 1] because ...", 4, 2) == [2, 0]
    assert B.parse_indices("[3,1]", 4, 2) == [2, 0]


def test_selectllm_end_to_end_with_retry_and_failure():
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    emb = np.repeat(centers, 4, axis=0) + np.tile(np.arange(4)[:, None] * 0.1, (3, 2))
    inst = pd.Series([f"task {i}" for i in range(12)], index=[f"u{i}" for i in range(12)])

    def answer(conv):
        items = re.findall(r"^### Instruction: task (\d+)$", conv[0]["content"], flags=re.M)
        assert len(items) == 3
        if "0" in items:
            return "[1, 1]"                                   # the query holding u0 fails every time
        if "1" in items and len(conv) == 1:
            return "[7]"                                      # wrong first, fixed on retry
        return "I'd say [2] is weak; my choice is [3, 1]"

    llm = FakeLLM(answer)
    record, cov = B.selectllm_record(inst, emb, llm, 8, cs.llm.GenerationSettings(), n_clusters=3, seed=0,
                                     max_retries=1)
    assert len(record) == 4 and record["n_pick"].tolist() == [2, 2, 2, 2] and cov["unseen"] == 0
    assert len({x for u in record["uuids"] for x in u}) == 12
    assert record["error"].notna().sum() == 1 and record["attempts"].tolist().count(2) == 2
    picked = B.selectllm_pick(record, 8, cov)
    assert picked.report["failed"] == 1 and picked.report["picked"] == 6 and picked.report["shortfall"] == 2
    first = record.loc[record["error"].isna()].set_index("query")["uuids"]
    assert list(picked.score.index[:3]) == [first[q][2] for q in sorted(first.index)]   # "[3, 1]": 3rd first
