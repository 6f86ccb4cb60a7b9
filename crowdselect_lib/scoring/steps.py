"""Reward scoring as keyed steps of a run (issue 10; chapter 02).

- `scores_step(run, cfg, reward_model, sample=False)`: the key, from the config alone: the resolved model settings
  (`registry.resolve_spec`: source, revision, kind, BOS rule, attention, max_length), `scoring.dtype`, which rows
  (all, or the `scoring.verify_sample` sample drawn with `run.seed`) and the zoo's key (`zoo.zoo_step`).
- `run_scores(...)`: reuses a done step; else scores what the fine-grained cache (`cache.ScoreCache`) lacks, with
  one `runs.Progress` bar, writes ``scores.parquet`` (uuid, model, score, n_tokens, truncated) and finishes the
  step, recording batch size, `trust_remote_code`, the attention and dtype used. Expensive: chapter 02 (or the
  command line below) runs it; `load_run_scores` raises, naming the chapter and the step, when it is not done.
- `score_zoo(run, cfg)`: the zoo with a column per `scoring.reward_models` scored on every row (`score_all`).

Command line (the paper run, on GPUs)::

    accelerate launch -m crowdselect_lib.scoring --params params/paper.yaml     # or python -m ...
"""
from __future__ import annotations

import argparse

import pandas as pd

from ..config import load_config, parse_sets
from ..runs import Run, Step, check_name, slug, write_parquet
from ..zoo import load_run_zoo, zoo_step
from .cache import ScoreCache, collect, score_rows
from .checks import agreement, attach_scores, sample_rows
from .registry import ScoringError, dist, resolve_spec
from .scorer import RewardScorer

SCORES_VERSION = "2"


def scores_step(run, cfg, reward_model: str, sample: bool = False) -> Step:
    """The key of `reward_model`'s scores of the run's zoo (all rows, or the verification sample); pure."""
    spec = resolve_spec(reward_model, cfg.scoring)
    model = {k: v for k, v in spec.settings().items() if k not in ("batch_size", "trust_remote_code")}
    rows = {"sample": cfg.scoring.verify_sample, "seed": cfg.run.seed} if sample else "all"
    return Step(run.dir, "scores", check_name(slug(spec.name) + ("-sample" if sample else ""), "reward model"),
                {"reward_model": model, "dtype": cfg.scoring.dtype, "rows": rows},
                {"zoo": zoo_step(run, cfg)}, SCORES_VERSION, ("crowdselect_lib.scoring", "crowdselect_lib.models"))


def run_scores(run, cfg, reward_model: str, sample: bool = False, *, scorer=None) -> tuple[pd.DataFrame, dict]:
    """(scores, manifest) of `scores_step`; computes what is missing (see the module docstring). `scorer` replaces
    the model loaded from the spec (tests). Under ``accelerate launch`` only rank 0 returns the table."""
    st = scores_step(run, cfg, reward_model, sample).announce()
    if st.done:
        return pd.read_parquet(st.dir / "scores.parquet"), st.manifest()
    zoo = load_run_zoo(run, cfg)
    rows = sample_rows(zoo.responses, cfg.scoring.verify_sample, cfg.run.seed) if sample else zoo.responses
    spec = resolve_spec(reward_model, cfg.scoring)
    cache = ScoreCache(run.dir / "cache" / "rewards", spec, cfg.scoring.dtype)
    rank, world = dist()
    state = None
    if world > 1:   # accelerate launch / torchrun: one model copy per process, on its own device
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())   # gloo on CPU (tests), nccl on GPUs
    loaded = {}

    def load():
        loaded["scorer"] = scorer or RewardScorer(spec, device=str(state.device) if state else cfg.scoring.device,
                                                  dtype=cfg.scoring.dtype, device_map=False if state else None)
        return loaded["scorer"]

    stats = score_rows(rows, spec, cache, load, shard_size=cfg.scoring.shard_size, rank=rank, world_size=world)
    if state is not None:
        state.wait_for_everyone()
        if rank != 0:
            return pd.DataFrame(), stats
    scores = collect(rows, cache)
    write_parquet(scores, st.path("scores.parquet"))
    used = loaded.get("scorer")
    manifest = st.finish(rows=len(scores), truncated=int(scores["truncated"].sum()), rows_scored=stats["rows_scored"],
                         batch_size=spec.batch_size, trust_remote_code=spec.trust_remote_code,
                         remote_code=getattr(used, "remote_code", None),
                         attn_implementation=getattr(used, "attn_implementation", None),
                         torch_dtype=getattr(used, "dtype", None), cache=str(cache.dir.relative_to(run.dir)))
    return scores, manifest


def load_run_scores(run, cfg, reward_model: str, sample: bool = False) -> pd.DataFrame:
    """The finished scores of `scores_step`; raises naming chapter 02 and the step when they are not computed."""
    st = scores_step(run, cfg, reward_model, sample)
    if not st.done:
        what = "scoring.verify_sample" if sample else "scoring.score_all: true"
        raise ScoringError(f"scores of {reward_model} for this zoo are not computed (step {st.label}, key {st.key}): "
                           f"run chapter 02 (notebooks/02_reward_scoring.ipynb, {what}) or "
                           "`python -m crowdselect_lib.scoring --params ...` with the same params first")
    return pd.read_parquet(st.dir / "scores.parquet")


def sample_check(run, cfg, reward_model: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Re-score the verification sample with `reward_model` (default: the first of `scoring.reward_models`) and
    compare with the zoo's shipped scores: (rows: uuid, model, the shipped reward-model columns, ``rescored``,
    ``n_tokens``, ``truncated``; agreement: `checks.agreement` per shipped reward model). Recorded in meta.json."""
    rm = reward_model or cfg.scoring.reward_models[0]
    zoo = load_run_zoo(run, cfg)
    scores, info = run_scores(run, cfg, rm, sample=True)
    sample = sample_rows(zoo.responses, cfg.scoring.verify_sample, cfg.run.seed)
    agree = agreement(sample, scores, zoo.reward_models)
    rows = sample[["uuid", "model", *zoo.reward_models]].merge(
        scores.rename(columns={"score": "rescored"}), on=["uuid", "model"], validate="1:1")
    name = resolve_spec(rm, cfg.scoring).name
    run.update_meta(scoring_check={"reward_model": name, "rows": len(rows), "key": info["key"],
                                   "spearman": {k: round(float(v), 4) for k, v in agree["spearman"].items()}})
    return rows, agree


def score_zoo(run, cfg, zoo=None):
    """The run's zoo with one column per `scoring.reward_models`, scored on every row (replacing a shipped one)."""
    zoo = zoo if zoo is not None else load_run_zoo(run, cfg)
    for rm in cfg.scoring.reward_models:
        scores, _ = run_scores(run, cfg, rm)
        zoo = attach_scores(zoo, scores, resolve_spec(rm, cfg.scoring).name, replace_existing=True)
    return zoo


def main(argv: list[str] | None = None) -> int:
    """Score every row of a run's zoo (or the verification sample) with each `scoring.reward_models` (GPU;
    `accelerate launch` for many GPUs)."""
    ap = argparse.ArgumentParser(prog="python -m crowdselect_lib.scoring")
    ap.add_argument("--params", required=True)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="overrides, e.g. scoring.batch_size=16")
    ap.add_argument("--sample", action="store_true", help="score only the scoring.verify_sample rows (a quick check)")
    args = ap.parse_args(argv)
    overrides = parse_sets(args.set)
    cfg = load_config(args.params, overrides)
    run = Run.from_config(cfg)
    for rm in cfg.scoring.reward_models:
        scores, info = run_scores(run, cfg, rm, sample=args.sample)
        if dist()[0] == 0:
            print(f"{rm}: {len(scores)} rows, {info.get('truncated', 0)} truncated to "
                  f"{resolve_spec(rm, cfg.scoring).max_length} tokens")
    return 0
