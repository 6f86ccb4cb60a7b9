"""Scoring a crowd built from instructions alone (`zoo.build`, chapter 02): each answer graded by each reward model
of `scoring.reward_models` (paper §3.1), through the same resumable score cache as every zoo (`cache`)."""
from __future__ import annotations

import pandas as pd

from ..runs import Step
from .cache import ScoreCache, collect, score_rows
from .registry import resolve_spec
from .scorer import RewardScorer

CROWD_SCORES_VERSION = "1"


def score_crowd(run, cfg, answers: pd.DataFrame) -> pd.DataFrame:
    """`answers` (``uuid, instruction, model, response``, as `zoo.generate_answers` returns) with one score column
    per `scoring.reward_models`; a refused (None) answer keeps a NaN score (the zoo drops and counts it). Answers
    from `zoo.generate_answers` carry their step's key (``attrs["key"]``): the scored table is then a keyed step
    ``crowd/scored``, reused when done; other tables are scored through the score cache alone."""
    specs = [resolve_spec(rm, cfg.scoring) for rm in cfg.scoring.reward_models]
    answers_key = answers.attrs.get("key")
    st = None
    if answers_key is not None:
        st = Step(run.dir, "crowd", "scored", {"reward_models": [s.settings() for s in specs],
                                               "dtype": cfg.scoring.dtype}, {"answers": answers_key},
                  CROWD_SCORES_VERSION).announce()
        if st.done:
            return pd.read_parquet(st.dir / "crowd.parquet")
    out = answers.copy()
    rows = answers[answers["response"].notna()]
    for spec in specs:
        cache = ScoreCache(run.dir / "cache" / "rewards", spec, cfg.scoring.dtype)
        score_rows(rows, spec, cache, lambda spec=spec: RewardScorer(spec, device=cfg.scoring.device,
                                                                     dtype=cfg.scoring.dtype),
                   shard_size=cfg.scoring.shard_size)
        got = collect(rows, cache).set_index(["uuid", "model"])["score"]
        out[spec.name] = got.reindex(pd.MultiIndex.from_frame(out[["uuid", "model"]])).to_numpy()
    if st is not None:
        from ..runs import write_parquet

        write_parquet(out, st.path("crowd.parquet"))
        st.finish(rows=len(out), unscored=int(answers["response"].isna().sum()))
    return out
