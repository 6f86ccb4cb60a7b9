"""Which answer represents an instruction (paper eq. 2, Table 1). `best_responses` is THE best answer of eq. 2:
the answer with the highest reward score; every stage that needs "the best answer" calls it.

Ties are broken by model name (the alphabetically first of the tied models), and the random strategies draw
over the models in name order, so the choice never depends on the order of the zoo's model columns.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

RESPONSE_STRATEGIES = ("best", "random", "top5_random", "longest")


def choose_responses(scores: pd.DataFrame, strategy: str = "best", seed: int = 0,
                     lengths: pd.DataFrame | None = None) -> pd.Series:
    """Model whose answer represents each instruction (index uuid -> model).

    best: highest reward score (eq. 2); random: uniform over all models; top5_random: uniform over the five
    best-scored answers; longest: the longest answer (`lengths`, same shape as `scores`; the official Length
    baseline's pairing). Columns are read in model-name order (ties -> first name; seeded draws alike).
    """
    if strategy not in RESPONSE_STRATEGIES:
        raise ValueError(f"unknown response strategy {strategy!r}; choose one of {RESPONSE_STRATEGIES}")
    scores = scores[sorted(scores.columns)]
    values = scores.to_numpy(dtype=float)
    n, m = values.shape
    rng = np.random.default_rng(seed)
    if strategy == "best":
        col = values.argmax(axis=1)
    elif strategy == "random":
        col = rng.integers(0, m, n)
    elif strategy == "top5_random":
        top = np.argsort(-values, axis=1, kind="stable")[:, : min(5, m)]
        col = top[np.arange(n), rng.integers(0, top.shape[1], n)]
    else:
        if lengths is None:
            raise ValueError("response strategy 'longest' needs the answer lengths")
        col = lengths.reindex(index=scores.index, columns=scores.columns).to_numpy().argmax(axis=1)
    return pd.Series(scores.columns.to_numpy()[col], index=scores.index, name="model")


def pair_responses(zoo, uuids=None, strategy: str = "best", seed: int = 0,
                   reward_model: str | None = None) -> pd.DataFrame:
    """``uuid, instruction, model, response, score`` for each uuid (zoo order if `uuids` is None, else its order):
    the answer `strategy` picks and its reward score."""
    scores = zoo.scores(reward_model)
    if uuids is not None:
        uuids = pd.Index(list(uuids))
        unknown = uuids.difference(scores.index)
        if len(unknown):
            raise KeyError(f"uuid {unknown[0]!r} is not in the zoo ({len(unknown)} unknown)")
        scores = scores.loc[uuids]
    lengths = None
    r = zoo.responses[zoo.responses["uuid"].isin(scores.index)]
    if strategy == "longest":
        lengths = r.assign(n=r["response"].str.len()).pivot(index="uuid", columns="model", values="n")
    model = choose_responses(scores, strategy, seed, lengths)
    text = r.set_index(["uuid", "model"]).loc[pd.MultiIndex.from_arrays([model.index, model.to_numpy()]),
                                              ["instruction", "response"]]
    rows = np.arange(len(scores))
    cols = scores.columns.get_indexer(model.to_numpy())
    return pd.DataFrame({"uuid": model.index.to_numpy(), "instruction": text["instruction"].to_numpy(),
                         "model": model.to_numpy(), "response": text["response"].to_numpy(),
                         "score": scores.to_numpy()[rows, cols]})


def best_responses(zoo, uuids=None, reward_model: str | None = None) -> pd.DataFrame:
    """THE best answer of eq. 2 for each uuid: ``uuid, instruction, model, response, score``."""
    return pair_responses(zoo, uuids, "best", reward_model=reward_model)
