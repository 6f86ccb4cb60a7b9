"""What the student trains on (appendix B.2, Table 17): chat rows for SFT, preference pairs for DPO / SimPO / ORPO,
the held-out split, the end-of-turn token, and the loss mask shown in chapter 07.

- SFT rows are conversational prompt/completion rows: the prompt (system + user turn in the student's chat
  template) gets label -100, the loss covers the answer and the template's end-of-turn token.
- Preference pairs (the paper does not say how it built them; our reading): *chosen* = THE best answer of eq. 2
  (`selection.best_responses`), *rejected* = the lowest-scored answer of the same instruction (same reward model).
  An instruction whose answers all score the same has no preference and is an error, never silently dropped.
- End of turn (LLaMA-Factory's ``replace_eos``): a base student keeps its base end-of-text token as EOS, so after
  learning the chat template it never stops at the end of a turn. `end_of_turn_token` reads the template's own
  end-of-turn token (``<|eot_id|>`` for Llama 3, ``<|im_end|>`` for ChatML) and training and generation use it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..selection import best_responses

SFT_METHODS = ("sft_full", "sft_lora")
PREFERENCE_METHODS = ("dpo", "simpo", "orpo")
METHODS = SFT_METHODS + PREFERENCE_METHODS
PAIR_COLUMNS = ["uuid", "instruction", "chosen_model", "chosen", "chosen_score",
                "rejected_model", "rejected", "rejected_score"]
_MARK = "\u2063ANSWER\u2063"      # a probe text no template contains


def _check_message(m, where: str, role: str) -> None:
    if not isinstance(m, dict) or m.get("role") != role or not isinstance(m.get("content"), str) \
            or not m["content"].strip():
        raise ValueError(f"{where}: expected a {{'role': '{role}', 'content': <non-empty str>}} message, got {m!r:.120}")


def sft_rows(rows) -> list[dict]:
    """Chat rows ``{"messages": [..., user, assistant]}`` -> prompt/completion rows (loss on the last answer only).
    Plain-text rows ``{"prompt": str, "completion": str}`` (IFD's Alpaca-format pre-experience) pass as they are."""
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, dict) and isinstance(row.get("prompt"), str) and "messages" not in row:
            if not isinstance(row.get("completion"), str) or not row["completion"].strip():
                raise ValueError(f"SFT row {i}: a text row needs a non-empty 'completion' string, got {row!r:.120}")
            out.append({"prompt": row["prompt"], "completion": row["completion"]})
            continue
        msgs = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(msgs, list) or len(msgs) < 2:
            raise ValueError(f"SFT row {i}: needs 'messages' with a user turn and an assistant answer, got {row!r:.120}")
        _check_message(msgs[-1], f"SFT row {i} last message", "assistant")
        _check_message(msgs[-2], f"SFT row {i} second-to-last message", "user")
        out.append({"prompt": msgs[:-1], "completion": msgs[-1:]})
    if not out:
        raise ValueError("no SFT rows to train on")
    return out


def check_preference_rows(rows) -> list[dict]:
    """Validate conversational preference rows ``{"prompt": [user], "chosen": [assistant], "rejected": [assistant]}``."""
    rows = list(rows)
    for i, row in enumerate(rows):
        for key, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
            msgs = row.get(key) if isinstance(row, dict) else None
            if not isinstance(msgs, list) or not msgs:
                raise ValueError(f"preference row {i}: missing {key!r} messages, got {row!r:.120}")
            _check_message(msgs[-1], f"preference row {i} {key}", role)
    if not rows:
        raise ValueError("no preference rows to train on")
    return rows


def preference_pairs(zoo, uuids, reward_model: str | None = None) -> pd.DataFrame:
    """One (chosen = eq. 2 best answer, rejected = lowest-scored answer) pair per uuid, in the order of `uuids`.

    Returns `PAIR_COLUMNS`. Ties are broken by model name, as `selection.best_responses` does. Raises KeyError for
    a uuid not in the zoo, ValueError for a duplicate uuid or an instruction whose answers all score the same."""
    uuids = pd.Index(list(uuids), name="uuid")
    if uuids.has_duplicates:
        raise ValueError(f"duplicate uuid {uuids[uuids.duplicated()][0]!r} in the preference subset")
    best = best_responses(zoo, uuids, reward_model)                 # (n,) rows: uuid, instruction, model, response, score
    scores = zoo.scores(reward_model).loc[uuids]
    scores = scores[sorted(scores.columns)]
    mat = scores.to_numpy(dtype=float)                              # (n_instructions, n_models)
    worst = mat.argmin(axis=1)
    worst_score = mat[np.arange(len(mat)), worst]
    tied = best["score"].to_numpy(dtype=float) == worst_score
    if tied.any():
        raise ValueError(f"{int(tied.sum())} instruction(s) have equal scores for every answer, so no preference "
                         f"pair, e.g. uuid {uuids[np.flatnonzero(tied)[0]]!r}")
    worst_model = scores.columns.to_numpy()[worst]
    text = zoo.responses.set_index(["uuid", "model"])["response"]
    rejected = text.loc[pd.MultiIndex.from_arrays([uuids, worst_model])].to_numpy()
    return pd.DataFrame({"uuid": uuids.to_numpy(), "instruction": best["instruction"].astype(str).to_numpy(),
                         "chosen_model": best["model"].to_numpy(), "chosen": best["response"].astype(str).to_numpy(),
                         "chosen_score": best["score"].to_numpy(dtype=float), "rejected_model": worst_model,
                         "rejected": rejected.astype(str), "rejected_score": worst_score})[PAIR_COLUMNS]


def preference_rows(pairs: pd.DataFrame) -> list[dict]:
    """Conversational preference rows (TRL format) from `preference_pairs` output, in order."""
    missing = [c for c in ("instruction", "chosen", "rejected") if c not in pairs.columns]
    if missing:
        raise ValueError(f"preference pairs lack column(s) {missing}")
    return [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]}
            for q, c, r in zip(pairs["instruction"].tolist(), pairs["chosen"].tolist(), pairs["rejected"].tolist())]


def split_rows(rows: list, eval_fraction: float, seed: int) -> tuple[list, list]:
    """(train, eval): round(n x eval_fraction) rows (at least 1 when > 0) held out at random, order kept.
    0 = train on every row (the paper's 1,000)."""
    n = len(rows)
    n_eval = 0 if eval_fraction <= 0 else max(1, int(round(n * eval_fraction)))
    if n_eval >= n:
        raise ValueError(f"eval_fraction={eval_fraction} leaves no training rows out of {n}")
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).permutation(n)[:n_eval]] = True
    return [r for r, h in zip(rows, held) if not h], [r for r, h in zip(rows, held) if h]


# ----------------------------------------------------------------------------- end of turn

def end_of_turn_token(tok) -> str | None:
    """The special token the chat template writes right after an assistant answer (``<|eot_id|>``,
    ``<|im_end|>``), None when the template writes none."""
    text = tok.apply_chat_template([{"role": "user", "content": "Q"}, {"role": "assistant", "content": _MARK}],
                                   tokenize=False)
    tail = text[text.rindex(_MARK) + len(_MARK):]
    special = {t.content for t in tok.added_tokens_decoder.values() if t.special} | set(tok.all_special_tokens)
    hits = [(tail.find(s), s) for s in special if s and s in tail]
    return min(hits)[1] if hits else None


def use_end_of_turn(tok) -> dict:
    """LLaMA-Factory's ``replace_eos``: make the template's end-of-turn token the tokenizer's EOS (in place; the
    pad token stays as it was). Returns ``{"eos": new, "base_eos": old}``."""
    old = tok.eos_token
    eot = end_of_turn_token(tok)
    if eot is None:
        raise ValueError(f"the chat template of {tok.name_or_path!r} writes no special end-of-turn token after an "
                         "answer; set training.replace_eos: false to keep its EOS")
    if tok.pad_token is None:
        tok.pad_token = old
    tok.eos_token = eot
    return {"eos": eot, "base_eos": old}


def rendered_preference_rows(tok, rows: list[dict]) -> list[dict]:
    """Preference rows rendered to text for SimPO / ORPO (TRL's CPO/ORPO trainers append the EOS id unless an
    answer already ends with it; the ChatML template ends answers with ``<|im_end|>\\n``, so they would end with
    the end token twice). Each answer is cut right after its end-of-turn token, which is the EOS
    (`use_end_of_turn`), so it ends with exactly one."""
    eot = tok.eos_token
    out = []
    for i, r in enumerate(rows):
        prompt = tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        answers = {}
        for key in ("chosen", "rejected"):
            full = tok.apply_chat_template(r["prompt"] + r[key], tokenize=False)
            if not full.startswith(prompt):
                raise ValueError(f"preference row {i}: the chat template renders the prompt differently alone")
            ans = full[len(prompt):]
            cut = ans.rfind(eot)
            answers[key] = ans[:cut + len(eot)] if cut >= 0 else ans
        out.append({"prompt": prompt, **answers})
    return out


def end_of_turn_positions(tok, rows: list[dict]) -> np.ndarray:
    """(n,) token position of the end-of-turn token (``tok.eos_token`` after `use_end_of_turn`) that closes the
    answer of each SFT chat row ``{"messages": [..., user, assistant]}``, as the chat template renders the row. The
    loss trains the student to stop only when this position is inside ``training.max_length`` (< max_length)."""
    eot = tok.convert_tokens_to_ids(tok.eos_token)
    out = np.empty(len(rows), dtype=int)
    for i, row in enumerate(rows):
        ids = tok(tok.apply_chat_template(row["messages"], tokenize=False), add_special_tokens=False)["input_ids"]
        hits = np.flatnonzero(np.asarray(ids) == eot)
        if not len(hits):
            raise ValueError(f"SFT row {i}: the rendered row holds no end-of-turn token {tok.eos_token!r}")
        out[i] = hits[-1]
    return out


def loss_mask_table(tok, example: dict) -> pd.DataFrame:
    """One tokenized training example as a table: ``position, token, label`` (-100 = not in the loss) and
    ``in_loss``. `example` has ``input_ids`` and either ``labels`` or TRL's ``completion_mask``."""
    ids = list(example["input_ids"])
    if "labels" in example:
        labels = list(example["labels"])
    else:
        labels = [t if m else -100 for t, m in zip(ids, example["completion_mask"])]
    text = [tok.decode([i]).replace("\n", "\\n") for i in ids]        # readable: "\n", " answer"
    return pd.DataFrame({"position": range(len(ids)), "token": text, "label": labels,
                         "in_loss": [lab != -100 for lab in labels]})


def mask_boundary(table: pd.DataFrame, width: int = 6) -> pd.DataFrame:
    """The rows of `loss_mask_table` around the first trained token (`width` before, `width` from it) and the
    last `width` tokens: where the prompt ends, where the answer starts, and how the answer ends."""
    first = int(np.argmax(table["in_loss"].to_numpy()))
    rows = sorted(set(range(max(0, first - width), min(len(table), first + width)))
                  | set(range(max(0, len(table) - width), len(table))))
    return table.iloc[rows].reset_index(drop=True)
