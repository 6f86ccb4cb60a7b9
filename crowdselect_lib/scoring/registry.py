"""The reward models of the paper (§3.1, Table 18) and how each is loaded and called.

Every entry states the settings a GPU run needs, so none is a silent fallback (`registry_table()` shows them):

    name                          kind                      batch x length  attention              BOS       remote code
    Skywork-Reward-Llama-3.1-8B   sequence classification   16 x 4096       auto: flash, or sdpa   single    no
    Skywork-Reward-Gemma-2-27B    sequence classification    2 x 4096       auto: flash, or eager  single    no
    ArmoRM-Llama3-8B-v0.1         armorm (output.score)     16 x 4096       auto: flash, or sdpa   template  yes, opt in
    tiny-reward (offline demo)    sequence classification    8 x 4096       sdpa                   single    no

- attention ``auto``: ``flash_attention_2`` when the flash-attn package is installed and the model runs on CUDA,
  else the entry's fallback. Gemma-2 soft-caps its attention logits, which only eager attention and flash-attention
  (>= 2.6) compute; sdpa would drop the cap, so its fallback is ``eager``, whose (batch x heads x 4096²) score
  matrices cost ~2 GiB per sequence and layer: batch 2 keeps the 27B model (54 GB in bf16) inside an 80 GB GPU.
  With flash-attention installed a larger batch fits (``scoring.models.Skywork-Reward-Gemma-2-27B.batch_size``).
- BOS rule ``single`` (the Skywork cards): the chat template is rendered as a string, its leading BOS text removed,
  and the string tokenized with the tokenizer's special tokens, so the input starts with exactly one BOS.
  ``template`` (the ArmoRM card): the ids the chat template gives (``apply_chat_template(tokenize=True)``).
- remote code: ArmoRM's gating head lives in its repository's ``modeling_custom.py``; it runs only with
  ``scoring.models.ArmoRM-Llama3-8B-v0.1.trust_remote_code: true`` (recorded in the step's manifest).

`resolve_spec(name, scoring_cfg)` merges an entry with `scoring.models.<name>` and the global
`scoring.batch_size` / `scoring.max_length`; any other name is a sequence-classification model named by its last
path component (``org/My-RM`` -> column ``My-RM``).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..models import cache_root, load_tokenizer, publish, quiet

TINY_REWARD = "tiny-reward"


class ScoringError(ValueError):
    """Bad scoring input or state; the message names the rows, model or setting at fault."""


@dataclass(frozen=True)
class RewardModelSpec:
    name: str                          # the zoo column it fills, e.g. "Skywork-Reward-Llama-3.1-8B"
    source: str                        # hub id or local folder
    kind: str = "sequence_classification"   # | "armorm"
    bos: str = "single"                # | "template"
    attn_implementation: str = "auto"  # | "sdpa" | "eager" | "flash_attention_2"
    attn_fallback: str = "sdpa"        # what "auto" means without flash-attention
    batch_size: int = 16
    max_length: int = 4096
    revision: str | None = None
    trust_remote_code: bool = False

    def settings(self) -> dict:
        """What determines the scores (the step and cache keys)."""
        return dataclasses.asdict(self)


REWARD_MODELS = {s.name: s for s in [
    RewardModelSpec("Skywork-Reward-Llama-3.1-8B", "Skywork/Skywork-Reward-Llama-3.1-8B"),
    RewardModelSpec("Skywork-Reward-Gemma-2-27B", "Skywork/Skywork-Reward-Gemma-2-27B", attn_fallback="eager",
                    batch_size=2),
    RewardModelSpec("ArmoRM-Llama3-8B-v0.1", "RLHFlow/ArmoRM-Llama3-8B-v0.1", kind="armorm", bos="template"),
    RewardModelSpec(TINY_REWARD, TINY_REWARD, attn_implementation="sdpa", batch_size=8),
]}


def registry_table(scoring=None) -> pd.DataFrame:
    """The registry as a table (one row per reward model: source, kind, batch, length, attention, BOS rule, remote
    code), with `scoring`'s overrides applied when given to the models the run uses (`scoring.reward_models`):
    `scoring.model_dir` resolves only those; the others are shown as the registry has them."""
    used = set(scoring.reward_models) if scoring is not None else set()
    specs = [resolve_spec(n, scoring) if n in used or s.source in used else s for n, s in REWARD_MODELS.items()]
    return pd.DataFrame([{"reward model": s.name, "source": s.source, "kind": s.kind, "batch": s.batch_size,
                          "max length": s.max_length, "attention": s.attn_implementation if s.attn_implementation
                          != "auto" else f"auto (flash-attn, else {s.attn_fallback})", "BOS rule": s.bos,
                          "remote code allowed": s.trust_remote_code} for s in specs]).set_index("reward model")


def reward_model_spec(name: str) -> RewardModelSpec:
    """Registry entry by zoo column name or hub id; any other name is a sequence-classification model."""
    for spec in REWARD_MODELS.values():
        if name in (spec.name, spec.source):
            return spec
    return RewardModelSpec(Path(name.rstrip("/")).name, name)


def resolve_spec(name: str, scoring) -> RewardModelSpec:
    """`name`'s entry with the params applied (pure: no file is read except `scoring.model_dir`).
    Precedence: `scoring.models.<name>` > `scoring.batch_size` / `scoring.max_length` > the registry."""
    spec = reward_model_spec(name)
    over = scoring.models.get(spec.name) or scoring.models.get(name)
    changes = {k: getattr(scoring, k) for k in ("batch_size", "max_length") if getattr(scoring, k) is not None}
    if over is not None:
        changes.update({f.name: getattr(over, f.name) for f in dataclasses.fields(over)
                        if getattr(over, f.name) is not None})
    spec = dataclasses.replace(spec, **changes)
    if scoring.model_dir is not None:
        spec = dataclasses.replace(spec, source=_in_model_dir(spec, scoring.model_dir))
    return spec


def _in_model_dir(spec: RewardModelSpec, model_dir: str | Path) -> str:
    d = Path(model_dir)
    for cand in (d, d / spec.name):
        if (cand / "config.json").exists():
            return str(cand)
    raise ScoringError(f"scoring.model_dir {d} holds neither config.json nor {spec.name}/config.json")


def resolve_attn(spec: RewardModelSpec, device: str) -> str:
    """The attention implementation to load with (see the module docstring)."""
    if spec.attn_implementation != "auto":
        return spec.attn_implementation
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return spec.attn_fallback


def model_path(spec: RewardModelSpec) -> str:
    """Where to load `spec` from: the offline tiny model, a local folder or the hub id."""
    return str(tiny_reward_model()) if spec.source == TINY_REWARD else spec.source


def tiny_reward_model(path: str | Path | None = None, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """A randomly initialised `LlamaForSequenceClassification` (one label) on the SmolLM2 tokenizer, saved to
    `path` (default: the model cache). Its scores are meaningless: it exercises the mechanics offline."""
    out = Path(path) if path is not None else cache_root() / f"tiny-reward-{layers}x{hidden}-s{seed}"
    if (out / "config.json").exists():
        return out
    with quiet():   # transformers' import warns in notebooks without ipywidgets
        import torch
        from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = load_tokenizer("tiny-llama")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, num_labels=1,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(cfg)
    return publish(out, lambda tmp: (model.save_pretrained(tmp), tok.save_pretrained(tmp)))


def dist() -> tuple[int, int]:
    """(rank, world size) under `accelerate launch` / torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
