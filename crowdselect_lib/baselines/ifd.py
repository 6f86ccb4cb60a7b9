"""Instruction-Following Difficulty (IFD, Cherry_LLM; Li et al. 2023), the ``ifd_no_pre`` / ``ifd_pre`` baselines
of Tables 2, 10, 12 (the paper says it uses Cherry_LLM's code).

IFD(Q, A) = L(A | Q) / L(A): the MEAN TOKEN LOSS of the answer tokens with the instruction as context, over the
mean token loss of the same answer tokens without it (Cherry's ``mean_rate = mean_2 / mean_1``; not a ratio of
perplexities, whose exponentials reorder the top-k). Cherry's texts (`prompt: alpaca`, default):
- conditioned:   the Alpaca prompt with the instruction (ends ``### Response:``) + the answer;
- unconditioned: ``### Response:`` + the answer;
both tokenized whole with the tokenizer's own special tokens, the answer scored from the first token after its
prefix — so a tokenizer without BOS is treated symmetrically (both answers have a context before them). The same
number of answer tokens is scored in both: inputs longer than `max_length` cut the answer and are counted
(``truncated``); a prompt that leaves no room for the answer is skipped (counted, ``skipped``). With
`ifd_cut_answers: skip` (default, Cherry's rule, `cherry_cut`) a cut answer is skipped when Cherry's ``+4`` window
would skip it (every cut answer for a tokenizer without BOS, e.g. Qwen), counted as ``cut_skipped``.
`prompt: chat` (our variant) uses the model's chat template instead, with the template's text that follows the
instruction (the assistant header) as the unconditioned prefix.
Selection (`ifd_pick`): keep IFD <= 1, take the top-k.

``ifd_pre`` scores with a "pre-experienced" model: the student first fine-tuned (SFT, full weights, the training
package; in the Alpaca prompt it scores with, as Cherry's trainer, `ifd_pre_format: alpaca`) on Cherry's
pre-experience sample — K-means (`ifd_pre_clusters`, 100) on the model's own instruction
embeddings (mean of the last hidden states), then from each cluster `ifd_pre_per_cluster` (10) instructions evenly
spaced among those inside the `ifd_pre_percentiles` (25th-75th) band of instruction perplexity.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..runs import Step, read_json, write_json, write_parquet
from ..zoo import default_reward_model, zoo_step
from .common import (BASELINE_CODE, Baseline, Context, Picked, best_pairs, candidate_settings, candidates, subset_k,
                     top_available)

VERSION = "1"
ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                 "request.\n\n### Instruction:\n{instruction}\n\n### Response:")
RESPONSE_PREFIX = "### Response:"
IFD_COLUMNS = ["uuid", "loss_conditioned", "loss_answer", "ifd", "answer_tokens", "truncated", "skipped",
               "cut_skipped"]


def prefixes(tokenizer, instruction: str, prompt: str = "alpaca") -> tuple[str, str]:
    """(conditioned prefix, unconditioned prefix) texts of one instruction."""
    if prompt == "alpaca":
        return ALPACA_PROMPT.format(instruction=instruction), RESPONSE_PREFIX
    if prompt != "chat":
        raise ValueError(f"unknown IFD prompt {prompt!r} (alpaca | chat)")
    text = tokenizer.apply_chat_template([{"role": "user", "content": str(instruction)}], tokenize=False,
                                         add_generation_prompt=True)
    return text, text[text.rfind(str(instruction)) + len(str(instruction)):]


def cherry_cut(prompt_tokens: int, prefix_tokens: int, answer_tokens: int, max_length: int) -> bool:
    """Cherry_LLM's skip (`data_by_IFD.py`): the answer alone is cut at ``max_length - prompt + 4`` tokens (its
    ``### Response:`` prefix included), and a pair with ``prompt + answer-alone tokens > max_length`` is skipped.
    With a prefix of fewer than 4 tokens (no BOS, e.g. Qwen) every answer cut at max_length is skipped."""
    alone = min(answer_tokens, max_length - prompt_tokens + 4 - prefix_tokens)
    return prompt_tokens + alone > max_length


def encode_pairs(tokenizer, instructions, answers, max_length: int = 512, prompt: str = "alpaca",
                 cut_answers: str = "score") -> list[dict]:
    """Per pair: {"cond", "cond_start", "answer", "answer_start", "n", "truncated", "skipped", "cut_skipped"}:
    token ids of both texts, the first answer position of each, and n = answer tokens scored in both.
    `cut_answers` "skip": Cherry's rule (`cherry_cut`) skips the pair (``cut_skipped``, counted); "score": ours,
    the cut answer is scored (``truncated``)."""
    if cut_answers not in ("skip", "score"):
        raise ValueError(f"unknown IFD cut-answer rule {cut_answers!r} (skip | score)")
    special = prompt == "alpaca"            # a chat template already holds its special tokens
    out = []
    for q, a in zip(instructions, answers):
        pc, pu = prefixes(tokenizer, str(q), prompt)
        ids = tokenizer([pc + str(a), pc, pu + str(a), pu], add_special_tokens=special)["input_ids"]
        cond, sc, unc, su = ids[0], len(ids[1]), ids[2], len(ids[3])
        full = min(len(cond) - sc, len(unc) - su)
        n = max(0, min(full, max_length - sc))
        cut = cut_answers == "skip" and n >= 1 and cherry_cut(sc, su, len(unc) - su, max_length)
        out.append({"cond": cond[: sc + n], "cond_start": sc, "answer": unc[: su + n], "answer_start": su, "n": n,
                    "truncated": n < full, "skipped": n < 1 or cut, "cut_skipped": cut})
    return out


def mean_token_losses(model, seqs: list[list[int]], starts: list[int], pad_id: int, batch_size: int = 8,
                      hidden: bool = False):
    """Mean next-token loss over the tokens at positions start..end of each sequence (right padding, batches
    sorted by length). Returns (N,) float64 in input order; with `hidden`, also (N, d) mean last hidden states."""
    import torch

    device = next(model.parameters()).device
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out, emb = np.full(len(seqs), np.nan), None
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            labels = torch.full((len(idx), width), -100, dtype=torch.long)
            for r, i in enumerate(idx):
                s = torch.tensor(seqs[i], dtype=torch.long)
                ids[r, : len(s)], mask[r, : len(s)] = s, 1
                labels[r, starts[i]: len(s)] = s[starts[i]:]
            res = model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=hidden)
            logits, target = res.logits.float()[:, :-1], labels[:, 1:].to(device)     # position t predicts t+1
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100,
                                                     reduction="none")                 # (B, T-1)
            out[idx] = (loss.sum(1) / (target != -100).sum(1).clamp(min=1)).double().cpu().numpy()
            if hidden:
                h = res.hidden_states[-1].float()                                       # (B, T, d)
                m = mask.to(device).unsqueeze(-1).float()
                e = ((h * m).sum(1) / m.sum(1)).cpu().numpy()
                emb = np.empty((len(seqs), e.shape[1])) if emb is None else emb
                emb[idx] = e
    return (out, emb) if hidden else out


def ifd_scores(tokenizer, model, uuids, instructions, answers, *, batch_size: int = 8, max_length: int = 512,
               prompt: str = "alpaca", cut_answers: str = "score") -> pd.DataFrame:
    """IFD per pair (`IFD_COLUMNS`), one row per uuid in input order; skipped pairs have NaN losses."""
    enc = encode_pairs(tokenizer, instructions, answers, max_length, prompt, cut_answers)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    keep = [i for i, e in enumerate(enc) if not e["skipped"]]
    lc, la = np.full(len(enc), np.nan), np.full(len(enc), np.nan)
    if keep:
        lc[keep] = mean_token_losses(model, [enc[i]["cond"] for i in keep], [enc[i]["cond_start"] for i in keep],
                                     pad, batch_size)
        la[keep] = mean_token_losses(model, [enc[i]["answer"] for i in keep], [enc[i]["answer_start"] for i in keep],
                                     pad, batch_size)
    return pd.DataFrame({"uuid": list(uuids), "loss_conditioned": lc, "loss_answer": la, "ifd": lc / la,
                         "answer_tokens": [e["n"] for e in enc], "truncated": [e["truncated"] for e in enc],
                         "skipped": [e["skipped"] for e in enc], "cut_skipped": [e["cut_skipped"] for e in enc]})


def score_pairs_resumable(directory, pairs: pd.DataFrame, load_model, *, batch_size: int = 8, max_length: int = 512,
                          prompt: str = "alpaca", shard_size: int = 256, cut_answers: str = "score") -> pd.DataFrame:
    """IFD of `pairs` [uuid, instruction, response] in shards ``<directory>/ifd-00000.parquet``: a killed run
    resumes at the first missing shard; `load_model()` -> (tokenizer, model) is called only if one is missing."""
    d = Path(directory)
    parts, tok_model = [], None
    for s in range(max(1, math.ceil(len(pairs) / shard_size))):
        path, chunk = d / f"ifd-{s:05d}.parquet", pairs.iloc[s * shard_size:(s + 1) * shard_size]
        if path.exists():
            part = pd.read_parquet(path)
            if part["uuid"].tolist() != chunk["uuid"].tolist():
                raise ValueError(f"{path} holds other pairs than this step asks for; delete {d} to rescore")
        else:
            tok_model = tok_model or load_model()
            part = ifd_scores(*tok_model, chunk["uuid"], chunk["instruction"], chunk["response"],
                              batch_size=batch_size, max_length=max_length, prompt=prompt, cut_answers=cut_answers)
            write_parquet(part, path)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def ifd_pick(scores: pd.DataFrame, k: int) -> Picked:
    """Cherry_LLM's rule: keep IFD <= 1 (skipped pairs out), the top-k IFD (fewer left: all, shortfall reported)."""
    ok = scores[~scores["skipped"] & scores["ifd"].notna()]
    keep = ok[ok["ifd"] <= 1]
    cut = int(scores["cut_skipped"].sum()) if "cut_skipped" in scores else 0
    report = {"scored": int(len(ok)), "skipped": int(scores["skipped"].sum()), "cut_skipped": cut,
              "ifd_at_most_1": int(len(keep)),
              "truncated": int(scores["truncated"].sum()), "k": k, "mean_ifd": float(ok["ifd"].mean())}
    if keep.empty:
        raise ValueError(f"none of the {len(ok)} scored pairs has IFD <= 1; nothing to select")
    return Picked(top_available(pd.Series(keep["ifd"].to_numpy(), index=pd.Index(keep["uuid"])), k, report), report)


# ------------------------------------------------------------------ pre-experience (Cherry's data_by_cluster)

def instruction_stats(tokenizer, model, instructions, *, max_length: int = 512, prompt: str = "alpaca",
                      batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(perplexity (N,), embedding (N, d)) of each instruction's prompt text alone: exp of the mean loss over its
    tokens and the mean of the model's last hidden states (Cherry's ``pre`` analysis)."""
    texts = [prefixes(tokenizer, str(q), prompt)[0] for q in instructions]
    ids = [x[:max_length] for x in tokenizer(texts, add_special_tokens=prompt == "alpaca")["input_ids"]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    loss, emb = mean_token_losses(model, ids, [0] * len(ids), pad, batch_size, hidden=True)
    return np.exp(loss), emb


def pre_experience_sample(embeddings: np.ndarray, ppl: np.ndarray, n_clusters: int = 100, per_cluster: int = 10,
                          percentiles=(25.0, 75.0), seed: int = 0) -> np.ndarray:
    """Cherry's sample: K-means (seeded) on the embeddings; per cluster, the rows whose perplexity lies inside the
    cluster's percentile band, `per_cluster` of them evenly spaced (all, in a small cluster). Row indices, sorted."""
    from sklearn.cluster import KMeans   # heavy

    if n_clusters > len(ppl):
        raise ValueError(f"baselines.ifd_pre_clusters={n_clusters} exceeds the {len(ppl)} IFD candidates")
    labels = KMeans(n_clusters=n_clusters, random_state=seed, n_init=10).fit_predict(embeddings)
    out = []
    for c in range(n_clusters):
        rows = np.flatnonzero(labels == c)
        if len(rows) >= per_cluster:
            lo, hi = np.percentile(ppl[rows], percentiles)
            rows = rows[(ppl[rows] >= lo) & (ppl[rows] <= hi)]
            if len(rows) >= per_cluster:
                rows = rows[:: len(rows) // per_cluster][:per_cluster]
        out.append(rows)
    return np.sort(np.concatenate(out))


# ------------------------------------------------------------------ steps

def pre_experience_rows(pairs: pd.DataFrame, fmt: str = "alpaca") -> list[dict]:
    """Training rows of the pre-experience sample. "alpaca" (Cherry_LLM, whose Stanford-Alpaca trainer uses the
    prompt it scores with): ``{"prompt": ALPACA_PROMPT(instruction), "completion": answer}`` as plain text;
    "chat": the student's chat template (``{"messages": [user, assistant]}``)."""
    if fmt == "alpaca":
        return [{"prompt": ALPACA_PROMPT.format(instruction=q), "completion": str(a)}
                for q, a in zip(pairs["instruction"].astype(str), pairs["response"])]
    if fmt != "chat":
        raise ValueError(f"unknown pre-experience format {fmt!r} (alpaca | chat)")
    from ..selection import to_chat_messages

    return to_chat_messages(pairs)


def model_name(cfg) -> str:
    return cfg.baselines.ifd_model or cfg.training.student


def _pre_training(cfg):
    return dataclasses.replace(cfg.training, **cfg.baselines.ifd_pre_training)


def pre_model_step(run, cfg) -> Step:
    """The pre-experienced model (its folder ``model/`` inside the step), keyed by what changes that model only:
    the training fields a training folder is keyed by (`training.fit.RUN_ONLY` left out: logging, seeds, methods,
    subsets...) and the model's pinned revision."""
    from ..training.fit import RUN_ONLY

    b = cfg.baselines
    settings = {"model": model_name(cfg), "prompt": b.ifd_prompt, "max_length": b.ifd_max_length,
                "reward_model": default_reward_model(cfg), **candidate_settings(cfg, b.ifd_subset),
                "clusters": b.ifd_pre_clusters, "per_cluster": b.ifd_pre_per_cluster,
                "percentiles": list(b.ifd_pre_percentiles), "steps": b.ifd_pre_steps, "seed": cfg.run.seed,
                "revision": cfg.training.student_revisions.get(model_name(cfg)), "format": b.ifd_pre_format,
                "training": {k: v for k, v in dataclasses.asdict(_pre_training(cfg)).items() if k not in RUN_ONLY}}
    return Step(run.dir, "baselines", "ifd-pre_model", settings, {"zoo": zoo_step(run, cfg)}, VERSION, BASELINE_CODE)


def work_step(run, cfg, name: str) -> Step:
    """The IFD scores of ``ifd_no_pre`` (the untouched model) or ``ifd_pre`` (the pre-experienced one)."""
    b = cfg.baselines
    inputs = {"zoo": zoo_step(run, cfg)}
    if name == "ifd_pre":
        inputs["pre_model"] = pre_model_step(run, cfg)
    settings = {"model": model_name(cfg), "prompt": b.ifd_prompt, "max_length": b.ifd_max_length,
                "reward_model": default_reward_model(cfg), "cut_answers": b.ifd_cut_answers,
                **candidate_settings(cfg, b.ifd_subset)}
    return Step(run.dir, "baselines", f"{name}-scores", settings, inputs, VERSION, BASELINE_CODE)


def _pre_model(ctx: Context, pairs: pd.DataFrame) -> str:
    from ..models import shared_causal_lm   # torch: heavy
    from ..training.fit import train   # the low-level loop (training.run imports baselines)

    st = pre_model_step(ctx.run, ctx.cfg).announce()
    if not st.done:
        b = ctx.cfg.baselines
        pin = ctx.cfg.training.student_revisions.get(model_name(ctx.cfg))
        ppl, emb = instruction_stats(*shared_causal_lm(model_name(ctx.cfg), revision=pin), pairs["instruction"],
                                     max_length=b.ifd_max_length, prompt=b.ifd_prompt, batch_size=b.ifd_batch_size)
        rows = pre_experience_sample(emb, ppl, b.ifd_pre_clusters, b.ifd_pre_per_cluster, b.ifd_pre_percentiles)
        res = train(_pre_training(ctx.cfg), "sft_full", pre_experience_rows(pairs.iloc[rows], b.ifd_pre_format),
                    st.dir / "train",
                    model_name=model_name(ctx.cfg), seed=ctx.cfg.run.seed, max_steps=b.ifd_pre_steps)
        write_parquet(pairs.iloc[rows][["uuid"]].assign(perplexity=ppl[rows]), st.path("sample.parquet"))
        st.finish(sample=len(rows), steps=res.steps, train_loss=res.train_loss)
    return str(st.dir / "train" / "model")


def _select(ctx: Context) -> Picked:
    from ..models import shared_causal_lm   # torch: heavy

    b = ctx.cfg.baselines
    st = work_step(ctx.run, ctx.cfg, ctx.name).announce()
    n_all = len(ctx.zoo.instructions())
    if st.done:
        scores = pd.read_parquet(st.dir / "scores.parquet")
    else:
        pairs = best_pairs(ctx.zoo, candidates(ctx.zoo, b.ifd_subset, ctx.cfg.run.seed), ctx.reward_model)
        name = _pre_model(ctx, pairs) if ctx.name == "ifd_pre" else model_name(ctx.cfg)
        scores = score_pairs_resumable(st.dir / "shards", pairs, lambda: shared_causal_lm(name),
                                       batch_size=b.ifd_batch_size, max_length=b.ifd_max_length, prompt=b.ifd_prompt,
                                       cut_answers=b.ifd_cut_answers)
        write_parquet(scores, st.path("scores.parquet"))
        st.finish(rows=len(scores), model=name)
    picked = ifd_pick(scores, subset_k(ctx.cfg, len(scores), n_all))
    picked.report.update(method=ctx.name, candidates=int(len(scores)), model=st.manifest().get("model"))
    return picked


def load_run_ifd(run, cfg, name: str) -> pd.DataFrame:
    """The IFD scores behind `name` ("ifd_no_pre" | "ifd_pre"); raises naming chapter 06 when not computed."""
    st = work_step(run, cfg, name)
    if not st.done:
        raise FileNotFoundError(f"IFD scores {st.label} ({st.key}) are not computed: run chapter 06 (baselines)")
    return pd.read_parquet(st.dir / "scores.parquet")


BASELINES = [
    Baseline("ifd_no_pre", "IFD (no_pre)", True, "ifd", "Cherry IFD = L(A|Q)/L(A) under the student; IFD <= 1, top-k",
             lambda cfg, name: {"subset_k": cfg.baselines.subset_k}, _select, work_step),
    Baseline("ifd_pre", "IFD (pre)", True, "ifd", "Cherry IFD under the pre-experienced student; IFD <= 1, top-k",
             lambda cfg, name: {"subset_k": cfg.baselines.subset_k}, _select, work_step),
]
