"""A loaded reward model: `RewardScorer(spec).encode(instructions, responses)` -> token ids, `.score(ids)` -> floats.

Sequence-classification heads (Skywork, any one-label model) give ``logits[:, 0]``; ArmoRM (remote code) gives its
preference score ``output.score``. Inputs are right-padded (the head reads the last real token, so a score does
not depend on the batch), and truncated to `spec.max_length` tokens (counted by the caller). Device and dtype
follow `models.device_and_dtype` (bf16 on CUDA, float32 on CPU), with ``device_map="auto"`` across the GPUs of a
single process. Remote code runs only when the spec says ``trust_remote_code`` (`models.check_remote_code`).
"""
from __future__ import annotations

import numpy as np

from ..models import check_remote_code, device_and_dtype, quiet, remote_code_compat
from .registry import RewardModelSpec, ScoringError, model_path, resolve_attn


class RewardScorer:
    """`spec` (a resolved `RewardModelSpec`) loaded on `device` with `dtype` (see the module docstring)."""

    def __init__(self, spec: RewardModelSpec, *, device: str | None = None, dtype: str = "auto",
                 device_map: bool | None = None):
        with quiet():   # importing transformers warns in notebooks without ipywidgets (tqdm.auto)
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.spec, self.path = spec, model_path(spec)
        self.max_length = spec.max_length
        device, torch_dtype = device_and_dtype(device, dtype)
        if device_map is None:   # spread one big model over all GPUs of a single process
            device_map = device == "cuda" and torch.cuda.device_count() > 1
        self.remote_code = check_remote_code(self.path, spec.revision, spec.trust_remote_code,
                                             f"scoring.models.{spec.name}.trust_remote_code")
        if self.remote_code:
            remote_code_compat()
        self.attn_implementation = resolve_attn(spec, device)
        kw = {"dtype": torch_dtype, "trust_remote_code": spec.trust_remote_code,
              "attn_implementation": self.attn_implementation}
        if spec.revision:
            kw["revision"] = spec.revision
        if device_map:
            kw["device_map"] = "auto"
        with quiet():
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, revision=spec.revision)
            self.model = AutoModelForSequenceClassification.from_pretrained(self.path, **kw)
        if not device_map:
            self.model.to(device)
        self.model.eval()
        self.device, self.dtype = device, str(torch_dtype).replace("torch.", "")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        if spec.kind == "sequence_classification" and self.model.config.num_labels != 1:
            raise ScoringError(f"{self.path} has num_labels={self.model.config.num_labels}; a reward model has one")

    @property
    def name(self) -> str:
        return self.spec.name

    def encode(self, instructions: list[str], responses: list[str]) -> tuple[list[list[int]], np.ndarray]:
        """Chat-formatted token ids of each (instruction, response) under the spec's BOS rule, cut to
        `max_length`; returns (ids, n_tokens before truncation)."""
        ids = encode_chats(self.tokenizer, instructions, responses, self.spec.bos)
        lengths = np.array([len(x) for x in ids])
        return [x[: self.max_length] for x in ids], lengths

    def score(self, ids: list[list[int]]) -> np.ndarray:
        """Rewards of a batch of token-id lists, shape (B,), float64. Right padding + attention mask."""
        import torch

        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        dev = self.model.device
        with torch.no_grad():
            out = self.model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev))
        values = out.score if self.spec.kind == "armorm" else out.logits[:, 0]
        return values.float().cpu().numpy().reshape(-1).astype(np.float64)


def encode_chats(tok, instructions: list[str], responses: list[str], bos: str) -> list[list[int]]:
    """Token ids of the one-turn chats (user: instruction, assistant: response).

    ``template``: the ids of the chat template (its own BOS, no tokenizer special tokens added).
    ``single`` (Skywork card): render the template as text, remove a leading BOS text, tokenize with special
    tokens, and make the sequence start with exactly one BOS (prepend it when the tokenizer adds none, drop a
    duplicate when template and tokenizer both add one)."""
    chats = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in zip(instructions, responses)]
    texts = [tok.apply_chat_template(c, tokenize=False) for c in chats]
    if bos == "template":
        return tok(texts, add_special_tokens=False)["input_ids"]
    if bos != "single":
        raise ScoringError(f"unknown BOS rule {bos!r}; use 'single' or 'template'")
    b, b_id = tok.bos_token, tok.bos_token_id
    if b:
        texts = [t[len(b):] if t.startswith(b) else t for t in texts]
    ids = tok(texts, add_special_tokens=True)["input_ids"]
    if b_id is None:
        return ids
    out = []
    for x in ids:
        x = list(x)
        while len(x) > 1 and x[0] == b_id and x[1] == b_id:
            x = x[1:]
        out.append(x if x and x[0] == b_id else [b_id, *x])
    return out
