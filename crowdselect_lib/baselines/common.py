"""What every baseline shares (CrowdSelect Tables 2, 10, 12; appendix B.3): the method spec, the candidates a
costly baseline scores, top-k with a reported shortfall, and the selection table with a chosen answer per row.

A baseline is a `Baseline` spec: `settings(cfg, name)` returns exactly the config values it reads (its step key),
`select(ctx)` returns a `Picked` (selection score per uuid in rank order, a report, and optionally the answer each
row is paired with), `work(run, cfg, name)` the step of its costly per-item work (LLM replies, IFD scores) or None.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..selection import best_responses, selection_table
from ..selection import top_k as selection_top_k
from ..zoo import default_reward_model

# the code a baseline step's key follows (issue 25): this package and the selection table it writes
BASELINE_CODE = ("crowdselect_lib.baselines", "crowdselect_lib.selection")


@dataclass(frozen=True)
class Baseline:
    name: str
    label: str                        # the paper's column header (Tables 2, 10, 12)
    paper: bool                       # a baseline of the paper, or an extra of this package
    kind: str                         # rule | embedding | llm | ifd
    rule: str                         # one line: what it ranks by and which answer it pairs
    settings: Callable[[Any, str], dict]
    select: Callable[["Context"], "Picked"]
    work: Callable[[Any, Any, str], Any] | None = None   # (run, cfg, name) -> Step of the costly part


@dataclass
class Picked:
    score: pd.Series                  # selection score per uuid, in rank order
    report: dict = field(default_factory=dict)
    models: pd.Series | None = None   # uuid -> model whose answer is paired; None = `response` strategy
    response: str = "best"            # selection.selection_table strategy (best = eq. 2)
    seed: int = 0


@dataclass
class Context:
    """What a baseline's `select` may read; loaded once per chapter and only when something is computed."""
    run: Any
    cfg: Any
    name: str
    zoo: Any
    llm_factory: Callable[[], Any] | None = None
    _llm: Any = None

    @property
    def reward_model(self) -> str:
        return default_reward_model(self.cfg)

    @property
    def k(self) -> int:
        return self.cfg.selection.k

    @property
    def llm(self):
        if self._llm is None:
            if self.llm_factory is None:
                raise ValueError(f"baseline {self.name!r} needs an LLM client")
            self._llm = self.llm_factory()
        return self._llm


def top_k(score: pd.Series, k: int, direction: str = "top", seed: int | None = None) -> pd.Series:
    """The k best of `score` (index uuid) in rank order: `selection.top_k` (ties by uuid, so the pick never
    depends on row order), or with `seed` ties in a seeded random order (coarse LLM grades; the official Direct
    score script shuffles with a seed before a stable sort)."""
    if seed is None:
        return selection_top_k(score, k, direction)
    if direction not in ("top", "bottom"):
        raise ValueError(f"direction must be 'top' or 'bottom', got {direction!r}")
    if not 0 < k <= len(score):
        raise ValueError(f"asked for k={k} rows but {len(score)} candidates exist")
    v = score.to_numpy(dtype=float)
    if np.isnan(v).any():
        raise ValueError(f"NaN selection score for uuid {score.index[np.isnan(v)][0]!r}")
    tie = np.random.default_rng(seed).permutation(len(v))
    return score.iloc[np.lexsort((tie, -v if direction == "top" else v))[:k]]


def top_available(score: pd.Series, k: int, report: dict, direction: str = "top",
                  seed: int | None = None) -> pd.Series:
    """`top_k` of the valid candidates; fewer than k valid ones are all taken and the missing rows recorded as
    ``report["shortfall"]`` (never filled by guessing)."""
    if len(score) == 0:
        raise ValueError(f"{report.get('method', 'baseline')}: no valid candidate left to select from")
    report["shortfall"] = int(max(k - len(score), 0))
    return top_k(score, min(k, len(score)), direction, seed)


def candidates(zoo, n: int | None, seed: int) -> pd.Index:
    """`n` instruction uuids drawn at random (seeded), in zoo order; None = every instruction."""
    uuids = pd.Index(zoo.instructions()["uuid"])
    if n is None or n >= len(uuids):
        return uuids
    return uuids[np.sort(np.random.default_rng(seed).choice(len(uuids), size=n, replace=False))]


def subset_k(cfg, n_candidates: int, n_total: int) -> int:
    """k of a baseline that scores `n_candidates` of the zoo's `n_total` instructions: `baselines.subset_k`, else
    `selection.k` scaled to the candidates' share (the whole zoo: `selection.k` itself); at most the candidates."""
    k = cfg.baselines.subset_k if n_candidates < n_total and cfg.baselines.subset_k else \
        round(cfg.selection.k * n_candidates / n_total)
    return max(1, min(n_candidates, k))


def candidate_settings(cfg, n: int | None) -> dict:
    """Key part of a candidate subset: its size and seed (None = every instruction, no seed)."""
    return {"candidates": n} if n is None else {"candidates": n, "candidates_seed": cfg.run.seed}


def best_pairs(zoo, uuids, reward_model: str) -> pd.DataFrame:
    """``uuid, instruction, model, response, score`` with THE best answer (eq. 2) of each uuid."""
    return best_responses(zoo, uuids, reward_model)


def build_table(ctx: Context, picked: Picked, metrics: pd.DataFrame | None,
                clusters: pd.Series | None) -> pd.DataFrame:
    """The selection table of `picked`; rows whose answer the method chose (`picked.models`) get that answer."""
    table = selection_table(ctx.zoo, picked.score, method=ctx.name, reward_model=ctx.reward_model,
                            response=picked.response, seed=picked.seed, metrics=metrics, clusters=clusters)
    if picked.models is not None:
        model = picked.models.reindex(table["uuid"]).to_numpy()
        text = ctx.zoo.responses.set_index(["uuid", "model"])["response"]
        table["model"] = model
        table["response"] = text.loc[pd.MultiIndex.from_arrays([table["uuid"], model])].to_numpy()
    return table
