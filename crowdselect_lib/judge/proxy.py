"""The offline proxy judge: "proxy judge (offline demo), not MT-Bench/Arena-Hard".

No network and no LLM: it embeds texts with a sentence encoder (offline: all-MiniLM-L6-v2, through
`clustering.embed` and its (model, text) cache) and writes judge-reply TEXT in the official output formats, so
the demo goes through exactly the parsing and scoring code of a real judge.

What it measures: how close an answer's wording is to the reference answer (MT-Bench format), or to the prompt
(Arena-Hard format). What it does not measure: correctness, helpfulness, instruction following. A fluent wrong
answer on the right topic scores high, and an answer that repeats the question wins a pairwise game
(`failure_examples` shows both).

- single-answer grading: similarity s of the answer to the reference answer (or to the question when there is
  none) -> ``Rating: [[r]]``, r = clip(1 + 9 * max(s, 0), 1, 10) to one decimal (FastChat's parser reads decimal
  ratings; whole numbers would floor every weak answer at 1); an empty answer gets 1.
- pairwise: d = cos(answer A, prompt) - cos(answer B, prompt) -> ``[[A=B]]`` if |d| < `tie_margin`,
  ``[[A>B]]`` / ``[[B>A]]`` if |d| < `strong_margin`, else ``[[A>>B]]`` / ``[[B>>A]]``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..clustering import embed
from ..config import EmbeddingConfig
from .verdicts import parse_rating, parse_verdict

LABEL = "proxy judge (offline demo), not MT-Bench/Arena-Hard"


def proxy_rating(similarity: float) -> float:
    """The MT-Bench-format rating of a cosine similarity: clip(1 + 9 * max(s, 0), 1, 10), to one decimal."""
    return round(float(np.clip(1 + 9 * max(float(similarity), 0.0), 1, 10)), 1)


class ProxyJudge:
    """Reads the structured fields of judge jobs (`prompts.mt_bench_jobs`, `prompts.arena_jobs`)."""

    kind = "proxy"

    def __init__(self, embedding_model: str = "all-MiniLM-L6-v2", cache_dir=None, tie_margin: float = 0.02,
                 strong_margin: float = 0.10):
        if cache_dir is None:
            raise ValueError("the proxy judge needs an embedding cache folder (e.g. <run>/cache/embeddings)")
        self.embedding_model, self.cache_dir = embedding_model, cache_dir
        self.embedding = EmbeddingConfig(model=embedding_model, task=None, batch_size=64, max_seq_length=256,
                                         pooling="model")
        self.tie_margin, self.strong_margin = tie_margin, strong_margin
        self.name = f"proxy-judge-{embedding_model}"
        self.calls = 0

    def identity(self) -> dict:
        return {"backend": "proxy", "model": self.embedding_model, "tie_margin": self.tie_margin,
                "strong_margin": self.strong_margin}

    def _embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised embeddings, shape (len(texts), dim)."""
        return embed([t if t.strip() else " " for t in texts], self.embedding, self.cache_dir)

    def prepare(self, jobs: list[dict]) -> None:
        """Embed every text of `jobs` at once (one encoder load; later calls read the cache)."""
        texts = {t for j in jobs for k in ("question", "answer", "reference", "answer_a", "answer_b")
                 if isinstance(t := j.get(k), str)}
        if texts:
            self._embed(sorted(texts))

    def _cos(self, xs: list[str], ys: list[str]) -> np.ndarray:
        e = self._embed(xs + ys)
        return np.sum(e[:len(xs)] * e[len(xs):], axis=1)

    def rating_replies(self, jobs: list[dict]) -> list[str]:
        targets = [j["reference"] if j.get("reference") else j["question"] for j in jobs]
        sims = self._cos([j["answer"] for j in jobs], targets)
        out = []
        for j, s in zip(jobs, sims):
            r = 1.0 if not j["answer"].strip() else proxy_rating(s)
            what = "reference answer" if j.get("reference") else "question"
            out.append(f"[{LABEL}] cosine similarity of the answer to the {what}: {s:.3f}. Rating: [[{r}]]")
        return out

    def verdict_replies(self, jobs: list[dict]) -> list[str]:
        qs = [j["question"] for j in jobs]
        d = self._cos([j["answer_a"] for j in jobs], qs) - self._cos([j["answer_b"] for j in jobs], qs)
        labels = np.where(np.abs(d) < self.tie_margin, "A=B",
                          np.where(np.abs(d) < self.strong_margin, np.where(d > 0, "A>B", "B>A"),
                                   np.where(d > 0, "A>>B", "B>>A")))
        return [f"[{LABEL}] relevance to the prompt, A minus B: {x:+.3f}. My final verdict is: [[{lab}]]"
                for x, lab in zip(d, labels)]

    def judge_jobs(self, jobs: list[dict]) -> list[str]:
        """One reply per job, in order (jobs of kind 'single' and 'pair' may be mixed)."""
        self.calls += len(jobs)
        out: list[str | None] = [None] * len(jobs)
        for kind, fn in (("single", self.rating_replies), ("pair", self.verdict_replies)):
            idx = [i for i, j in enumerate(jobs) if j["kind"] == kind]
            for i, reply in zip(idx, fn([jobs[i] for i in idx]) if idx else []):
                out[i] = reply
        unknown = sorted({jobs[i]["kind"] for i, r in enumerate(out) if r is None})
        if unknown:
            raise ValueError(f"proxy judge: unknown job kind(s) {unknown}")
        return out

    def info(self) -> dict:
        return {"backend": "proxy", "model": self.name, "label": LABEL, "embedding_model": self.embedding_model,
                "calls": self.calls}


# A question with a reference answer, a right and a wrong answer, and an answer that only repeats the question.
FAILURE_CASE = {
    "question": "Who is Larry Page?",
    "reference": "Larry Page is an American computer scientist who co-founded Google with Sergey Brin in 1998.",
    "right": "Larry Page co-founded Google with Sergey Brin and was its first CEO.",
    "wrong": "Larry Page is a social media pioneer who founded Facebook in his Harvard dorm room.",
    "parrot": "Who is Larry Page? You are asking who Larry Page is.",
}


def failure_examples(judge: ProxyJudge, case: dict = FAILURE_CASE) -> pd.DataFrame:
    """Where the proxy judge is wrong: the MT-Bench-format rating of a right and of a wrong answer, and the
    Arena-Hard-format verdict of (A = the right answer, B = an answer that repeats the question)."""
    single = [{"kind": "single", "question": case["question"], "answer": case[k], "reference": case["reference"]}
              for k in ("right", "wrong")]
    pair = [{"kind": "pair", "question": case["question"], "answer_a": case["right"], "answer_b": case["parrot"]}]
    replies = judge.judge_jobs(single + pair)
    return pd.DataFrame({"test": ["rating: right answer", "rating: wrong answer",
                                  "pair: A = right answer, B = repeats the question"],
                         "answer": [case["right"], case["wrong"], f"A: {case['right']} | B: {case['parrot']}"],
                         "proxy says": [f"{parse_rating(replies[0]):g}/10", f"{parse_rating(replies[1]):g}/10",
                                        parse_verdict(replies[2], r"\[\[([AB<>=]+)\]\]")]})
