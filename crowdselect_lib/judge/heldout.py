"""The held-out loss: a measure with no judge, for the real crowd on a CPU (issue 24; `judge.judge: heldout_loss`).

A fixed share of the zoo's instructions is held out and never selectable (`zoo.holdout_fraction`,
`zoo.holdout`). For each held-out instruction x with its reference answer y (AlpacaEval: GPT-4-turbo's,
gpt4_1106_preview), a system's loss is the mean next-token loss of y after x in the student's chat template,

    L(y | x) = -1/|y| sum_t log p(y_t | x, y_<t)        (nats per answer token; lower = closer to the strong model)

with `judge.heldout_max_length` tokens of prompt + answer (the answer is cut at the same token for every system
of one tokenizer, so item losses are paired; an item whose prompt alone fills them is skipped and counted). It is IFD's conditioned loss with the chat prompt
(`baselines.ifd.encode_pairs` / `mean_token_losses`, one implementation). The untouched student is measured
the same way: "before training". Each system's losses are a keyed step (the trained model's key + the items'
digest + max_length), ``runs/<run>/heldout/<system>/<key>/losses.parquet``.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import training
from ..models import load_causal_lm
from ..runs import Progress, Step, check_name, digest, write_parquet
from ..zoo import heldout_items
from .answers import in_judging_pass, systems_table

from .benchmarks import HELDOUT

log = logging.getLogger("crowdselect")

LOSS_COLUMNS = ["uuid", "loss", "answer_tokens", "truncated", "skipped"]


def heldout_mode(cfg) -> bool:
    """True when the held-out loss replaces the judge (`judge.judge: heldout_loss`)."""
    return cfg.judge.judge == HELDOUT


def answer_losses(tok, model, instructions, answers, *, max_length: int = 256, batch_size: int = 8) -> pd.DataFrame:
    """``loss, answer_tokens, truncated, skipped`` per (instruction, answer): L(answer | instruction) in the chat
    template. An item whose prompt leaves no room for the answer within `max_length` is skipped: NaN loss, counted
    (the same items for every system of one tokenizer, so the comparison stays paired)."""
    from ..baselines.ifd import encode_pairs, mean_token_losses

    enc = encode_pairs(tok, instructions, answers, max_length, prompt="chat")
    keep = [i for i, e in enumerate(enc) if not e["skipped"]]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    loss = np.full(len(enc), np.nan)
    if keep:
        loss[keep] = mean_token_losses(model, [enc[i]["cond"] for i in keep], [enc[i]["cond_start"] for i in keep],
                                       pad, batch_size)
    return pd.DataFrame({"loss": loss, "answer_tokens": [e["n"] for e in enc],
                         "truncated": [e["truncated"] for e in enc], "skipped": [e["skipped"] for e in enc]})


@in_judging_pass
def heldout_step(run, cfg, system: str, row: dict | None = None) -> Step:
    """The key of one system's held-out losses (pure: nothing announced or loaded): its model (the training step,
    keyed on what it wrote, or the untouched student's name), the items and max_length."""
    row = row or systems_table(run, cfg).set_index("system").loc[system].to_dict()
    model = (training.train_step(run, cfg, row["subset"], row["student"], row["method"], int(row["seed"]))
             if row["kind"] == "trained" else f"untouched:{row['student']}")
    items = heldout_items(run, cfg)
    return Step(run.dir, "heldout", check_name(system, "heldout step name"),
                {"items": digest([items["uuid"].tolist(), items["reference"].tolist()]), "n_items": len(items),
                 "max_length": cfg.judge.heldout_max_length}, {"model": model}, "1")


def run_heldout(run, cfg, system: str, row: dict) -> pd.DataFrame:
    """One system's per-item losses (`LOSS_COLUMNS`): reused when its step is done, else measured (one forward
    pass per item, batches of `judge.batch_size`)."""
    st = heldout_step(run, cfg, system, row).announce()
    if st.done:
        return pd.read_parquet(st.dir / "losses.parquet")
    items = heldout_items(run, cfg)
    if row["kind"] == "trained":
        tok, model = training.load_trained(row["path"], device=cfg.judge.student_device)
    else:
        tok, model = load_causal_lm(row["student"], device=cfg.judge.student_device)
    with Progress(len(items), f"held-out loss {system}", "item") as p:
        out = answer_losses(tok, model, items["instruction"].tolist(), items["reference"].tolist(),
                            max_length=cfg.judge.heldout_max_length, batch_size=cfg.judge.batch_size)
        p.update(len(items))
    out.insert(0, "uuid", items["uuid"].to_numpy())
    write_parquet(out, st.path("losses.parquet"))
    if out["skipped"].any():
        log.warning("held-out loss %s: %d item(s) skipped, the prompt alone fills max_length %d: %s", system,
                    int(out["skipped"].sum()), cfg.judge.heldout_max_length, out.loc[out["skipped"], "uuid"].tolist()[:5])
    st.finish(system=system, items=len(out), mean_loss=float(out["loss"].mean()),
              truncated=int(out["truncated"].sum()), skipped=int(out["skipped"].sum()))
    return out


@in_judging_pass
def run_all_heldout(run, cfg) -> pd.DataFrame:
    """Every system's per-item losses, one long table shaped like the judgments of chapter 08 (``system,
    benchmark, id, score`` = the loss, ...)."""
    frames = []
    for row in systems_table(run, cfg).to_dict("records"):
        frames.append(run_heldout(run, cfg, row["system"], row).assign(system=row["system"]))
    out = pd.concat(frames, ignore_index=True)
    return out.assign(benchmark=HELDOUT, id=out["uuid"], question_id=out["uuid"], turn=1, repetition=0,
                      score=out["loss"], verdict=None, failure=None, served_model="local")


@in_judging_pass
def heldout_plan(run, cfg) -> dict:
    """What measuring the losses costs: forward passes still to run (no judge, no request, no dollar)."""
    systems = systems_table(run, cfg)
    n = len(heldout_items(run, cfg))
    todo = sum(not heldout_step(run, cfg, r["system"], r).done for r in systems.to_dict("records"))
    return {"requests": 0, "to_send": 0, "forward_passes": todo * n, "systems_to_measure": todo, "items": n}


def mean_with_interval(losses: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean loss and its 95% bootstrap interval over items (`reporting.intervals`, THE bootstrap)."""
    from ..reporting.intervals import bootstrap_counts, percentile_interval

    x = np.asarray(losses, float)
    x = x[np.isfinite(x)]                     # skipped items (NaN) are counted by the caller
    lo, hi = percentile_interval(bootstrap_counts(len(x), n_boot, seed) @ x / len(x))
    return float(x.mean()), lo, hi
