"""Rule-based baselines (CrowdSelect Table 2, 10, 12; appendix B.3): Random, Length, Reward score. Cheap: computed
on demand whenever a later chapter asks for them.

- Random: k instructions drawn uniformly (seeded; `baselines.random_draw`: Python's `random.sample`, as the
  official script, or numpy). Answer: by default the method's own strategy (`baselines.random_response: selection`
  = `selection.response`, eq. 2's best unless changed: the official `random_choose_1k.py` samples the best-answer
  file with seeds 1-6, and a Random answered like the method differs from it in its instructions only), or
  `random`, a random one of the zoo's answers (the paper's text, appendix B.3). ``random`` uses
  `baselines.random_seed`, ``random_s<N>`` seed N.
- Length: the instruction's token count under `baselines.tokenizer` (paper: Llama-3.2-3B-Instruct); top-k long or
  bottom-k short, ties by uuid (the official script keeps dataset order). Official pairing (`choose_long_1k.py`,
  `choose_short_1k.py`): a long instruction with its longest answer, a short one with its shortest NON-EMPTY answer,
  both counted in tokens; `length_pairing: best` pairs the best answer instead.
- Reward score: top-k by the instruction's best (max) score with that best answer (`rm_score/get_top.py`); the
  official bottom-k ranks by the MINIMUM score and pairs the worst answer (`rm_score/get_bottom.py`);
  `reward_bottom_rule: best` ranks bottom-k by the max score and pairs the best answer.
"""
from __future__ import annotations

import random
import re

import numpy as np
import pandas as pd

from .common import Baseline, Context, Picked, top_k

RANDOM_SEED_NAME = re.compile(r"^random_s(\d+)$")


def random_seed_of(cfg, name: str) -> int:
    m = RANDOM_SEED_NAME.match(name)
    return int(m.group(1)) if m else cfg.baselines.random_seed


def random_pick(zoo, k: int, seed: int, response: str = "best", draw: str = "python") -> Picked:
    """k instructions uniformly at random, in draw order; score = k - position (the first drawn ranks first).

    draw "python" (official `random_choose_1k.py`): ``random.seed(seed); random.sample(rows, k)`` over the
    instructions in zoo order (the official best-answer file's order), i.e. the same rows the official files
    hold for the same zoo; "numpy": ``numpy.random.default_rng(seed)``, the top k of one uniform draw per row."""
    uuids = pd.Index(zoo.instructions()["uuid"])
    if not 0 < k <= len(uuids):
        raise ValueError(f"asked for k={k} rows but {len(uuids)} exist")
    if draw == "python":
        idx = random.Random(seed).sample(range(len(uuids)), k)
    elif draw == "numpy":
        idx = np.argsort(-np.random.default_rng(seed).random(len(uuids)), kind="stable")[:k]
    else:
        raise ValueError(f"unknown random draw {draw!r}; choose 'python' or 'numpy'")
    score = pd.Series(np.arange(k, 0, -1, dtype=float), index=uuids[np.asarray(idx)])
    return Picked(score, {"seed": seed, "response": response, "draw": draw}, response=response, seed=seed)


def token_lengths(texts, tokenizer) -> np.ndarray:
    """Token count of each text without special tokens (the official `len(tokenizer.tokenize(text))`).
    `tokenizer`: a tokenizer object or a name for `models.load_tokenizer`."""
    if isinstance(tokenizer, str):
        from ..models import load_tokenizer   # transformers: heavy

        tokenizer = load_tokenizer(tokenizer)
    ids = tokenizer([str(t) for t in texts], add_special_tokens=False)["input_ids"]
    return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


def answer_by_length(zoo, uuids: pd.Index, tokenizer, longest: bool) -> pd.Series:
    """uuid -> model of its longest answer, or of its shortest non-empty answer, in tokens (official rule; ties go
    to the first model of the zoo's model table)."""
    r = zoo.responses[zoo.responses["uuid"].isin(uuids)]
    n = pd.Series(token_lengths(r["response"], tokenizer), index=pd.MultiIndex.from_arrays([r["uuid"], r["model"]]))
    mat = n.unstack("model").reindex(index=uuids, columns=zoo.model_names).to_numpy(dtype=float)
    if longest:
        col = np.nanargmax(np.where(np.isnan(mat), -1, mat), axis=1)
    else:
        masked = np.where((mat > 0) & ~np.isnan(mat), mat, np.inf)
        empty = np.isinf(masked).all(axis=1)
        if empty.any():
            raise ValueError(f"uuid {uuids[np.argmax(empty)]!r} has no non-empty answer to pair (Length bottom)")
        col = masked.argmin(axis=1)
    return pd.Series(np.asarray(zoo.model_names)[col], index=uuids, name="model")


def length_pick(zoo, k: int, direction: str, tokenizer, pairing: str = "official") -> Picked:
    """Length top/bottom: score = the instruction's token count."""
    inst = zoo.instructions()
    lengths = pd.Series(token_lengths(inst["instruction"], tokenizer), index=pd.Index(inst["uuid"]), dtype=float)
    ranked = top_k(lengths, k, direction)
    models = answer_by_length(zoo, ranked.index, tokenizer, direction == "top") if pairing == "official" else None
    return Picked(ranked, {"pairing": pairing}, models)


def reward_pick(zoo, k: int, direction: str, reward_model: str, rule: str = "official") -> Picked:
    """Reward score top/bottom: score = the max (top, or bottom with rule "best") or the min (official bottom)
    reward score of the instruction's answers; the answer paired is the one that score belongs to."""
    scores = zoo.scores(reward_model)
    worst = direction == "bottom" and rule == "official"
    score = scores.min(axis=1) if worst else scores.max(axis=1)
    ranked = top_k(score, k, direction)
    models = scores.loc[ranked.index].idxmin(axis=1) if worst else None
    return Picked(ranked, {"rule": "minimum score, worst answer" if worst else "maximum score, best answer"}, models)


def _random(ctx: Context) -> Picked:
    b = ctx.cfg.baselines
    return random_pick(ctx.zoo, ctx.k, random_seed_of(ctx.cfg, ctx.name), random_response_of(ctx.cfg), b.random_draw)


def _length(ctx: Context) -> Picked:
    b = ctx.cfg.baselines
    return length_pick(ctx.zoo, ctx.k, ctx.name.split("_")[1], b.tokenizer, b.length_pairing)


def _reward(ctx: Context) -> Picked:
    return reward_pick(ctx.zoo, ctx.k, ctx.name.split("_")[1], ctx.reward_model, ctx.cfg.baselines.reward_bottom_rule)


def random_response_of(cfg) -> str:
    """Random's answer strategy: `baselines.random_response`, where ``selection`` = the method's (`selection.response`)."""
    r = cfg.baselines.random_response
    return cfg.selection.response if r == "selection" else r


def _random_settings(cfg, name):
    b = cfg.baselines
    return {"seed": random_seed_of(cfg, name), "response": random_response_of(cfg), "draw": b.random_draw}


def _length_settings(cfg, name):
    b = cfg.baselines
    return {"tokenizer": b.tokenizer, "pairing": b.length_pairing}


def _reward_settings(cfg, name):
    return {"rule": cfg.baselines.reward_bottom_rule} if name == "reward_bottom" else {}


BASELINES = [
    Baseline("random", "Random", True, "rule", "k uniform draws; best answer (official) or a random one (paper text)",
             _random_settings, _random),
    Baseline("length_top", "Length ↑", True, "rule", "longest instructions in tokens; longest answer (official)",
             _length_settings, _length),
    Baseline("length_bottom", "Length ↓", True, "rule",
             "shortest instructions in tokens; shortest non-empty answer (official)", _length_settings, _length),
    Baseline("reward_top", "Reward-Score ↑", True, "rule", "highest best-answer reward; best answer",
             _reward_settings, _reward),
    Baseline("reward_bottom", "Reward-Score ↓", True, "rule", "lowest worst-answer reward; worst answer (official)",
             _reward_settings, _reward),
]
